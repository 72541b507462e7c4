"""bulkcrm benchmarks: every performance figure side by side, from one run (issue 9).

Usage::

    .venv/bin/python bench/run.py [--quick] [--json] [--only requests,window,local,rss,export]

Runs against the sandbox started in this process and counts requests from its request log.
Figures are exact request counts and ratios measured in the same run (the machine is shared and
noisy: absolute times are printed but only ratios are compared). Progress goes to stderr; the
table (and with `--json`, as the very last line, one JSON object) to stdout.
What each figure means and how it is defined: bench/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from bench import data as gen  # noqa: E402
from bench.naive import run_naive  # noqa: E402
from bulkcrm.apply import apply  # noqa: E402
from bulkcrm.client import Client  # noqa: E402
from bulkcrm.export import export  # noqa: E402
from bulkcrm.mapping import map_rows  # noqa: E402
from bulkcrm.match import BATCH, identifier_frame  # noqa: E402
from bulkcrm.plan import plan  # noqa: E402
from bulkcrm.read import read  # noqa: E402
from bulkcrm.sandbox import Sandbox  # noqa: E402
from bulkcrm.sandbox.runtime import WRITE_METHODS as WRITES  # noqa: E402
from bulkcrm.template import parse_template  # noqa: E402
from bulkcrm.validate import validate  # noqa: E402

KEY = "bench-key"
"""Sandbox API key of the benchmark tenant (a local sandbox only; not a secret)."""
BENCHES = ("requests", "window", "local", "rss", "export")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@contextmanager
def sandbox(records: list[dict] | None = None, rate_limit: tuple[int, float] | None = None):
    """A fresh in-process sandbox (in-memory store) seeded with `records`, stopped afterwards."""
    sb = Sandbox(api_keys={KEY: "bench"}, rate_limit=rate_limit)
    sb.start()
    try:
        if records:
            sb.seed({"organizations": records})
        yield sb
    finally:
        sb.stop()
        sb.store.close()


def _values_sent(reqs) -> int:
    """`identifiers[]` values carried by the logged lookups."""
    return sum(len(v) for r in reqs if r.method == "GET"
               for k, v in parse_qs(r.query).items() if k.startswith("identifiers"))


# --------------------------------------------------------------------------- request economy

def bench_requests(quick: bool, tmp: Path) -> dict:
    """Issue 5: 1,000 rows vs 5,000 records (85 % unchanged, 10 % changed, 5 % new)."""
    records = gen.make_records(5_000, seed=1)
    rows, kinds = gen.make_sheet(records, changed=100, new=50, unchanged=850, seed=2)
    csv = gen.write_csv(rows, tmp / "economy.csv")
    out = {"rows": len(rows), "records": len(records)}
    for name, doc in (("email", gen.TEMPLATE_EMAIL), ("email+phone", gen.TEMPLATE_EMAIL_PHONE)):
        template = parse_template(doc, path=f"<bench {name}>")
        out[name] = _economy(csv, template, records, kinds, tmp / name)
    return out


def _economy(csv: Path, template, records: list[dict], kinds: list[str], tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    sheet = read(csv)
    ids = identifier_frame(map_rows(sheet.frame, template), template)
    distinct = ids.select("kind", "value").unique().height
    with sandbox(records) as sb:
        client = Client(sb.url, KEY, requests_per_minute=None)
        sb.clear_log()
        t0 = time.perf_counter()
        p = plan(csv, template, client)
        t_plan = time.perf_counter() - t0
        plan_log = sb.requests
        sb.clear_log()
        report = apply(p, client, journal_file=tmp / "economy.journal.jsonl", reconcile=True,
                       fresh=True)  # applied at once, as `bulkcrm import` does
        apply_log = sb.requests
    counts = p.counts()
    writes_needed = counts["create"] + counts["patch"] + counts["replace"]
    expected = Counter(kinds)
    assert (counts["unchanged"], counts["patch"], counts["create"]) == \
        (expected["unchanged"], expected["changed"], expected["new"]), f"plan counts {counts}"
    writes = sum(r.method in WRITES for r in apply_log)
    lookups = len(plan_log)
    reconcile = sum(r.method == "GET" for r in apply_log)
    lower = writes_needed + math.ceil(distinct / BATCH)
    log(f"  {template.identifiers}: plan {lookups} lookups ({t_plan:.2f}s), {writes} writes, "
        f"{reconcile} reconcile GETs; naive client...")
    with sandbox(records) as sb:
        naive = run_naive(sheet.frame, template, Client(sb.url, KEY, requests_per_minute=None))
        naive_logged = len(sb.requests)
    assert naive == naive_logged == 2 * sheet.frame.height, (naive, naive_logged)
    spent = lookups + writes
    return {"identifiers": list(template.identifiers), "distinct_identifiers": distinct,
            "values_sent": _values_sent(plan_log), "lookups": lookups, "writes": writes,
            "writes_needed": writes_needed, "reconcile_requests": reconcile, "spent": spent,
            "lower_bound": lower, "naive": naive, "ratio_vs_lower_bound": spent / lower,
            "ratio_vs_naive": spent / naive, "strategy": p.strategy,
            "report_ok": bool(report.ok), "outcomes": report.counts()}


# --------------------------------------------------------------------------------- window use

def bench_window(quick: bool, tmp: Path) -> dict:
    """Issue 6: plan + apply 120 creates through the sandbox's own (scaled) limit."""
    limit, window = (20, 6.0) if quick else (20, 60.0)
    records = gen.make_records(500, seed=21)
    rows, _ = gen.make_sheet(records, changed=0, new=120, unchanged=0, seed=22)
    csv = gen.write_csv(rows, tmp / "window.csv")
    template = parse_template(gen.TEMPLATE_EMAIL, path="<bench email>")
    with sandbox(records, rate_limit=(limit, window)) as sb:
        client = Client(sb.url, KEY, requests_per_minute=limit, window_s=window)
        sb.clear_log()
        p = plan(csv, template, client)
        report = apply(p, client, journal_file=tmp / "window.journal.jsonl", reconcile=True,
                       fresh=True)  # applied at once, as `bulkcrm import` does
        reqs = sb.requests
    ok = [r for r in reqs if r.status != 429]
    n, span = len(ok), ok[-1].time - ok[0].time
    t_min = window * (math.ceil(n / limit) - 1)
    times = [r.time for r in ok]
    peak = max(sum(1 for t in times[i:i + limit + 1] if t - times[i] < window)
               for i in range(len(times)))
    return {"limit": limit, "window_s": window, "requests": n,
            "writes": sum(r.method in WRITES for r in ok), "elapsed_s": span,
            "min_elapsed_s": t_min, "window_use": t_min / span if span else 0.0,
            "self_inflicted_429": sum(r.status == 429 for r in reqs),
            "client_throttled": client.throttled, "peak_window_fill": peak / limit,
            "report_ok": bool(report.ok)}


# -------------------------------------------------------------------------------- local speed

class MemoryClient:
    """Stands in for `Client` with the snapshot in memory: `plan(strategy="scan")` lists the
    collection once (`list_all`) and sends nothing else. That listing and the decoding of the
    records into a frame are `Plan.timings["fetch"]`, which `_local` subtracts."""

    requests_per_minute = None

    def __init__(self, records: list[dict]):
        self.records, self.base_url, self.requests_sent = records, "memory://snapshot", 0

    def list_all(self, path: str, params=None) -> list[dict]:
        return self.records

    def progress(self, what: str, total: int | None):
        return contextlib.nullcontext()


LOCAL_RUNS = 5
"""Interleaved runs of the local-speed figure; its median drops the first run's one-time costs
(imports, regex caches) and one run slowed by another process."""


def bench_local(quick: bool, tmp: Path) -> dict:
    """Issue 5: plan 100k rows vs a 100k-record snapshot, network excluded, vs `pl.read_csv`.

    Timed: `plan()` from the CSV path to the finished `Plan` (read, map, validate, match,
    diff, the rows and the request bodies), minus `Plan.timings["fetch"]`: getting the
    records (here a list in memory; on the API ⌈records/30⌉ requests at 20 a minute) and
    decoding them into a frame, which is reported apart.

    The main figure uses phones in international form, as an export of the CRM writes them
    (E.164, or spaced `+31 20 …` after an edit in Excel). The second, `national`, writes half
    of the phones in national form (`020 555 0101`), which phonenumbers must parse one by one."""
    out = _local(tmp, "local", national_share=0.0)
    out["national"] = _local(tmp, "local_national", national_share=0.5)
    return out


def _local(tmp: Path, name: str, *, national_share: float) -> dict:
    n = 100_000
    records = gen.make_records(n, seed=11)
    rows, kinds = gen.make_sheet(records, changed=n // 10, new=n // 20, unchanged=n * 85 // 100, seed=12,
                                 national_share=national_share)
    csv = gen.write_csv(rows, tmp / f"{name}.csv")
    del rows
    template = parse_template(gen.TEMPLATE_EMAIL, path="<bench email>")
    client = MemoryClient(records)
    polars_s, local_s, runs = [], [], []
    log(f"  {name}: {national_share:.0%} of the phones in national form")
    for i in range(LOCAL_RUNS):  # interleaved, so drift of a noisy machine hits both alike
        # an untimed read first: the first allocations after a plan pay for returning the
        # plan's memory (~15 ms more, 26 -> 43 ms median), which the read must not be charged
        pl.read_csv(csv, infer_schema=False)
        t0 = time.perf_counter()
        pl.read_csv(csv, infer_schema=False)
        polars_s.append(time.perf_counter() - t0)
        p = None            # the previous run's plan is freed before the clock starts
        t0 = time.perf_counter()
        p = plan(csv, template, client, strategy="scan")
        total = time.perf_counter() - t0
        fetch = p.timings["fetch"]
        local_s.append(total - fetch)
        runs.append(p.timings)
        log(f"  run {i + 1}/{LOCAL_RUNS}: polars read {polars_s[-1] * 1000:.0f} ms, plan {local_s[-1]:.2f} s "
            f"(+ fetch {fetch:.2f} s)")
    counts = p.counts()
    assert counts["unchanged"] == kinds.count("unchanged") and counts["create"] == kinds.count("new"), counts
    pr, pp = statistics.median(polars_s), statistics.median(local_s)
    best = runs[local_s.index(pp)]
    return {"rows": n, "records": n, "national_share": national_share, "polars_read_s": pr,
            "plan_s": pp, "ratio": pp / pr, "polars_runs_s": polars_s, "plan_runs_s": local_s,
            "fetch_s": best["fetch"], "stages_s": {k: v for k, v in best.items() if k != "fetch"},
            "operations": p.n_operations()}


# -------------------------------------------------------------------------------- peak memory

def bench_rss(quick: bool, tmp: Path, local: dict | None) -> dict:
    """Peak RSS of read + map + validate of 1M rows in a child process (ru_maxrss)."""
    n, extrapolated = 1_000_000, False
    if quick and local:
        est = 10 * sum(local["stages_s"][s] for s in ("read", "map", "validate+match"))
        if est > 100:       # keep --quick within its budget: measure 250k and scale linearly
            n, extrapolated = 250_000, True
    log(f"  writing {n:,} rows...")
    csv = gen.write_big_csv(n, tmp / f"rss_{n}.csv")
    child = _child(["rss", str(csv)])
    out = {"rows": n, "extrapolated": extrapolated, "child": child}
    peak, base = child["peak_rss_mib"], child["baseline_rss_mib"]
    out["peak_rss_mib_1m"] = base + (peak - base) * 1_000_000 / n if extrapolated else peak
    if not quick:
        log("  full plan (in-memory snapshot) of 1M rows...")
        out["plan_child"] = _child(["plan", str(csv)])
    csv.unlink()
    return out


def _child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _peak_rss_mib() -> float:
    """This process's peak resident set (MiB): `VmHWM` of /proc/self/status on Linux, which is
    per address space; `ru_maxrss` survives exec on Linux, so after a (v)fork from a big parent
    it reports the parent's peak. `ru_maxrss` is the fallback elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024    # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def child_main(kind: str, csv: str) -> None:
    """Runs in the child: the stages of one pipeline, each stage's time and the peak RSS (MiB)
    reached by its end (the peak only grows, so the stage that raised it shows), as JSON."""
    template = parse_template(gen.TEMPLATE_EMAIL, path="<bench email>")
    base, t, peaks = _peak_rss_mib(), {}, {}

    def stage(name, fn):
        t0 = time.perf_counter()
        out = fn()
        t[name], peaks[name] = time.perf_counter() - t0, _peak_rss_mib()
        return out

    if kind == "plan":
        n = sum(1 for _ in open(csv, encoding="utf-8")) - 1
        recs = stage("snapshot", lambda: [r for s in range(0, n, 100_000) for r in
                                          gen.make_records(min(100_000, n - s), seed=3 + s, id_offset=s)])
        p = stage("plan", lambda: plan(csv, template, MemoryClient(recs), strategy="scan"))
        extra = {"counts": p.counts()}
    else:
        sh = stage("read", lambda: read(csv))
        mapped = stage("map", lambda: map_rows(sh.frame, template))
        v = stage("validate", lambda: validate(mapped, template, sheet=sh.frame, read_issues=sh.issues))
        extra = {"valid_rows": v.valid.height, "issues": v.issues.height}
    print(json.dumps({"baseline_rss_mib": base, "peak_rss_mib": _peak_rss_mib(), "stages_s": t,
                      "peak_after_stage_mib": peaks, **extra}))


# ------------------------------------------------------------------------------------ export

def bench_export(quick: bool, tmp: Path) -> dict:
    """Records per request of an export of 3,000 records (page size 30 → 30 expected)."""
    records = gen.make_records(3_000, seed=31)
    template = parse_template(gen.TEMPLATE_EMAIL, path="<bench email>")
    with sandbox(records) as sb:
        client = Client(sb.url, KEY, requests_per_minute=None)
        sb.clear_log()
        got = export(client, template, tmp / "export.csv").records
        assert pl.read_csv(tmp / "export.csv", infer_schema=False).height == len(records)
        reqs = len(sb.requests)
    return {"records": got, "requests": reqs, "records_per_request": got / reqs,
            "measured_with": "bulkcrm.export.export"}


# ------------------------------------------------------------------------------------ output

def summary(res: dict, quick: bool) -> dict:
    """The JSON object (required keys first, then details)."""
    out: dict = {"mode": "quick" if quick else "full"}
    eco = res.get("requests", {}).get("email")
    if eco:
        out |= {"request_ratio_vs_lower_bound": round(eco["ratio_vs_lower_bound"], 4),
                "request_ratio_vs_naive": round(eco["ratio_vs_naive"], 4)}
    w = res.get("window")
    if w:
        out |= {"window_use": round(w["window_use"], 4), "self_inflicted_429": w["self_inflicted_429"]}
    loc = res.get("local")
    if loc:
        out["local_ratio_vs_polars_read"] = round(loc["ratio"], 1)
        out["local_ratio_vs_polars_read_national"] = round(loc["national"]["ratio"], 1)
    rss = res.get("rss")
    if rss:
        out["peak_rss_mib_1m"] = round(rss["peak_rss_mib_1m"])
        out["peak_rss_extrapolated"] = rss["extrapolated"]
        out["peak_rss_after_stage_mib"] = {k: round(v) for k, v in rss["child"]["peak_after_stage_mib"].items()}
    exp = res.get("export")
    if exp:
        out["export_records_per_request"] = round(exp["records_per_request"], 2)
    if eco:
        ep = res["requests"]["email+phone"]
        out |= {"requests_spent": eco["spent"], "requests_lower_bound": eco["lower_bound"],
                "requests_naive": eco["naive"],
                "request_ratio_vs_lower_bound_email_phone": round(ep["ratio_vs_lower_bound"], 4),
                "request_ratio_vs_naive_email_phone": round(ep["ratio_vs_naive"], 4)}
    if w:
        out |= {"window_requests": w["requests"], "window_elapsed_s": round(w["elapsed_s"], 2),
                "window_limit": f"{w['limit']}/{w['window_s']:g}s"}
    if loc:
        nat = loc["national"]
        out |= {"polars_read_100k_ms": round(loc["polars_read_s"] * 1000, 1),
                "plan_100k_s": round(loc["plan_s"], 3), "fetch_100k_s": round(loc["fetch_s"], 3),
                "stages_100k_s": {k: round(v, 3) for k, v in loc["stages_s"].items()},
                "polars_read_100k_national_ms": round(nat["polars_read_s"] * 1000, 1),
                "plan_100k_national_s": round(nat["plan_s"], 3),
                "stages_100k_national_s": {k: round(v, 3) for k, v in nat["stages_s"].items()}}
    if rss and "plan_child" in rss:
        out["peak_rss_mib_1m_plan"] = round(rss["plan_child"]["peak_rss_mib"])
    return out


def table(res: dict) -> str:
    lines: list[tuple[str, str, str, str]] = []
    for name in ("email", "email+phone"):
        e = res.get("requests", {}).get(name)
        if not e:
            continue
        tag = f"requests [{', '.join(e['identifiers'])}]"
        lines += [
            (f"{tag}: planner+apply", f"{e['spent']}", "",
             f"{e['lookups']} lookups ({e['values_sent']} values sent for {e['distinct_identifiers']} "
             f"distinct) + {e['writes']} writes; +{e['reconcile_requests']} reconcile GETs not counted"),
            (f"{tag}: lower bound", f"{e['lower_bound']}", "",
             f"{e['writes_needed']} writes + ceil({e['distinct_identifiers']}/{BATCH})"),
            (f"{tag}: naive client", f"{e['naive']}", "", "measured: 1 lookup + 1 write per row"),
            (f"{tag}: ratio vs lower bound", f"{e['ratio_vs_lower_bound']:.3f}", "<= 1.05", ""),
            (f"{tag}: ratio vs naive", f"{e['ratio_vs_naive']:.3f}", "<= 0.10", ""),
        ]
    w = res.get("window")
    if w:
        lines += [
            ("window use (apply)", f"{w['window_use']:.3f}", ">= 0.95",
             f"{w['requests']} requests ({w['writes']} writes) in {w['elapsed_s']:.1f}s; fastest "
             f"possible {w['min_elapsed_s']:.0f}s at {w['limit']}/{w['window_s']:g}s; peak window "
             f"fill {w['peak_window_fill']:.2f}"),
            ("429s caused by our traffic", f"{w['self_inflicted_429']}", "0",
             f"client saw {w['client_throttled']}"),
        ]
    loc = res.get("local")
    if loc:
        for tag, d, goal in (("local", loc, "<= 10x"), ("local, national phones", loc["national"], "")):
            st = ", ".join(f"{k} {v:.3f}" for k, v in d["stages_s"].items())
            lines += [
                (f"{tag}: plan 100k / polars read", f"{d['ratio']:.1f}x", goal,
                 f"median of {len(d['plan_runs_s'])}: plan {d['plan_s']:.3f}s vs read_csv {d['polars_read_s'] * 1000:.0f}ms; "
                 f"{d['national_share']:.0%} of phones in national form"),
                (f"{tag}: stages (s, the median run)", "", "",
                 f"{st}; not counted: fetch {d['fetch_s']:.3f} (snapshot to frame)"),
            ]
    rss = res.get("rss")
    if rss:
        c = rss["child"]
        how = (f"extrapolated from {rss['rows']:,} rows ({c['peak_rss_mib']:.0f} MiB)"
               if rss["extrapolated"] else f"measured at {rss['rows']:,} rows")
        lines.append(("peak RSS 1M rows (MiB)", f"{rss['peak_rss_mib_1m']:.0f}", "",
                      f"read+map+validate, {how}; baseline {c['baseline_rss_mib']:.0f} MiB; "
                      + ", ".join(f"{k} {v:.1f}s (peak {c['peak_after_stage_mib'][k]:.0f})"
                                  for k, v in c["stages_s"].items())))
        if "plan_child" in rss:
            pc = rss["plan_child"]
            lines.append(("peak RSS 1M plan (MiB)", f"{pc['peak_rss_mib']:.0f}", "",
                          "full plan() vs an in-memory 1M snapshot; "
                          + ", ".join(f"{k} {v:.1f}s (peak {pc['peak_after_stage_mib'][k]:.0f})"
                                      for k, v in pc["stages_s"].items())))
    exp = res.get("export")
    if exp:
        lines.append(("export records per request", f"{exp['records_per_request']:.2f}", "30",
                      f"{exp['records']} records / {exp['requests']} requests ({exp['measured_with']})"))
    w1 = max(len(a) for a, *_ in lines)
    w2 = max(len(b) for _, b, *_ in lines)
    head = f"{'figure':<{w1}}  {'value':>{w2}}  {'goal':<8}  detail"
    return "\n".join([head, "-" * len(head)] + [f"{a:<{w1}}  {b:>{w2}}  {c:<8}  {d}" for a, b, c, d in lines])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="bulkcrm benchmarks (issue 9); see bench/README.md")
    ap.add_argument("--quick", action="store_true", help="scaled window 20/6s; within 10 min on 2 cores")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object, last line")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child_main(*a.child)
        return 0
    todo = [b.strip() for b in a.only.split(",") if b.strip()]
    unknown = set(todo) - set(BENCHES)
    if unknown:
        ap.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHES)}")
    res: dict = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bulkcrm-bench-") as d:
        tmp = Path(d)
        for name in BENCHES:
            if name not in todo:
                continue
            log(f"{name}...")
            t0 = time.perf_counter()
            if name == "rss":
                res[name] = bench_rss(a.quick, tmp, res.get("local"))
            else:
                res[name] = globals()[f"bench_{name}"](a.quick, tmp)
            log(f"{name} done in {time.perf_counter() - t0:.1f}s")
    log(f"all done in {time.perf_counter() - started:.1f}s")
    print(table(res))
    if a.json:
        print(json.dumps(summary(res, a.quick), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
