"""Issue 6: apply executes exactly the plan, survives kill -9 and fault storms, never duplicates."""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openpyxl
import pytest

from bulkcrm.apply import apply
from bulkcrm.client import Client
from bulkcrm.errors import PlanError
from bulkcrm.journal import journal_path
from bulkcrm.plan import Plan, plan
from bulkcrm.template import parse_template
from tests.conftest import TEST_KEY

TEMPLATE = {
    "resource": "organizations",
    "identifiers": ["emailAddresses"],
    "fields": {"title": "title", "emailAddresses": "email", "website": "website",
               "phoneNumbers": {"column": "phone"}},
    "default_region": "NL",
}
N_EXISTING, N_NEW = 100, 200


def _sheet(tmp_path: Path) -> Path:
    """300 rows: 100 change the website of an existing record, 200 are new."""
    lines = ["title,email,website,phone"]
    for i in range(N_EXISTING + N_NEW):
        lines.append(f"Firma {i:03d} B.V.,info{i:03d}@firma.example,https://firma{i:03d}.example/new,"
                     f"+31 20 555 {i:04d}")
    path = tmp_path / "orgs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _seed(crm) -> None:
    crm.seed({"organizations": [
        {"title": f"Firma {i:03d} B.V.", "emailAddresses": [{"email": f"info{i:03d}@firma.example"}],
         "website": f"https://firma{i:03d}.example/old",
         "phoneNumbers": [{"phoneNumber": f"+3120555{i:04d}"}]} for i in range(N_EXISTING)]})


def _plan(crm, tmp_path) -> tuple[Plan, Path]:
    _seed(crm)
    template = parse_template(TEMPLATE, path="t.yaml", sha256="x")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    p = plan(_sheet(tmp_path), template, client)
    assert p.counts()["create"] == N_NEW and p.counts()["patch"] == N_EXISTING
    path = p.save(tmp_path / "plan.json")
    return p, path


def _assert_state_equals_plan(crm) -> None:
    orgs = crm.store.all("organizations", tenant="tenant-a")
    emails = [e["email"] for o in orgs for e in o.get("emailAddresses", [])]
    assert len(orgs) == N_EXISTING + N_NEW, "an organization exists twice or is missing"
    assert len(set(emails)) == len(emails) == N_EXISTING + N_NEW
    assert all(o["website"].endswith("/new") for o in orgs)


def _journal_lines(path: Path) -> int:
    try:
        return path.read_text(encoding="utf-8").count("\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_kill9_at_20_moments_then_resume(crm, tmp_path):
    p, path = _plan(crm, tmp_path)
    crm.set_faults(latency_ms=3)
    jpath = journal_path(path)
    cmd = [sys.executable, "-m", "bulkcrm", "apply", str(path), "--base-url", crm.url, "--api-key", TEST_KEY,
           "--max-rate", "60000", "--no-reconcile", "--json", "--report", str(tmp_path / "report")]
    rng = random.Random(20261130)
    kills = 0
    env = {**os.environ, "BULKCRM_TIMEOUT": "1"}  # a killed run's create settles in 2 s
    for _ in range(20):
        target = _journal_lines(jpath) + rng.randint(1, 25)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, env=env)
        deadline = time.monotonic() + 60
        while proc.poll() is None and _journal_lines(jpath) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    final = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert final.returncode == 0, final.stderr
    assert kills >= 10, "most runs should have been killed mid-way"
    _assert_state_equals_plan(crm)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert sorted(r["row_number"] for r in report["rows"]) == list(range(2, N_EXISTING + N_NEW + 2))
    assert {r["outcome"] for r in report["rows"]} <= {"created", "patched"}
    assert report["summary"]["counts"]["created"] == N_NEW and report["summary"]["counts"]["patched"] == N_EXISTING


@pytest.mark.slow
def test_fault_storm(crm, tmp_path):
    p, path = _plan(crm, tmp_path)
    crm.set_faults(error_rate=0.05, drop_rate=0.02, burst_429=3, seed=7)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None, backoff_base_s=0.01, backoff_max_s=0.05,
                    max_attempts=8)
    report = apply(p, client, plan_path=path, reconcile=False)
    crm.clear_faults()
    if not report.ok:  # a row that ran out of retries is failed, not lost: a re-run completes it
        report = apply(p, Client(crm.url, TEST_KEY, requests_per_minute=None), plan_path=path, reconcile=False)
    assert report.ok, report.rows.filter(report.rows["outcome"] == "failed").to_dicts()
    _assert_state_equals_plan(crm)
    assert report.counts()["created"] == N_NEW and report.counts()["patched"] == N_EXISTING
    statuses = {r.status for r in crm.requests}
    assert 429 in statuses and statuses & {500, 502, 503}


def test_resume_skips_done_operations(crm, tmp_path):
    p, path = _plan(crm, tmp_path)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    apply(p, client, plan_path=path, reconcile=False)
    crm.clear_log()
    again = apply(Plan.load(path), Client(crm.url, TEST_KEY, requests_per_minute=None), plan_path=path,
                  reconcile=False)
    assert crm.requests == [] and again.ok
    assert again.counts()["created"] == N_NEW


def test_a_journal_of_an_earlier_plan_with_the_same_operations_is_refused(crm, tmp_path):
    """The same sheet planned again (the CRM restored meanwhile, so the same creates) and applied
    with the earlier run's journal: its "done" would be reported as this plan's creates while
    nothing is written. It is refused, as a journal of another plan is."""
    from bulkcrm.errors import JournalError
    from bulkcrm.planfile import now_utc
    p, path = _plan(crm, tmp_path)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    journal = tmp_path / "j.jsonl"
    apply(p, client, journal_file=journal, reconcile=False)
    again = Plan.load(path)
    time.sleep(1.1)
    again.created_at = now_utc()  # planned again: the same operations, another planning run
    with pytest.raises(JournalError, match=r"belongs to another plan with the same operations \(made at .*"
                                           r"move it away"):
        apply(again, client, journal_file=journal, reconcile=False)
    assert apply(Plan.load(path), client, journal_file=journal, reconcile=False).ok  # its own plan: resumes


def test_reconcile_rereads_in_batches(crm, tmp_path):
    p, path = _plan(crm, tmp_path)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    report = apply(p, client, plan_path=path, reconcile=True, fresh=True)  # as import applies it
    lookups = [r for r in crm.requests if r.method == "GET" and "identifiers" in r.query]
    assert len(lookups) == -(-(N_EXISTING + N_NEW) // 30)
    assert report.summary["mismatches"] == 0 and report.ok


def test_a_saved_plans_updates_of_records_changed_since_are_not_sent(crm, tmp_path, caplog):
    """Someone edits a record a saved plan patches (its website, a field the patch sends):
    without --verify, apply re-reads the records it updates together (identifiers[] lookups,
    not a GET each) and holds that patch back (drifted); the other patches and the creates
    go ahead."""
    p, path = _plan(crm, tmp_path)
    victim = next(o for o in p.operations if o.op == "patch")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    client.patch(victim.iri, {"website": "https://someone-else.example"})
    crm.clear_log()
    with caplog.at_level("WARNING", logger="bulkcrm"):
        report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    reads = [r for r in crm.requests if r.method == "GET" and r.path.startswith("/organizations/")]
    assert reads == [] and sum("identifiers" in r.query for r in crm.requests) == -(-N_EXISTING // 30)
    assert "1 record(s) the plan updates were changed by others since it was made" in caplog.text
    row = report.rows.filter(report.rows["row_number"] == victim.row_numbers[0]).to_dicts()[0]
    assert row["outcome"] == "drifted" and "someone-else" in row["note"] and "plan again" in row["note"]
    assert client.get(victim.iri)["website"] == "https://someone-else.example"
    assert report.counts()["patched"] == N_EXISTING - 1 and report.counts()["created"] == N_NEW


def test_drifted_record_is_not_overwritten(crm, tmp_path):
    p, path = _plan(crm, tmp_path)
    victim = next(o for o in p.operations if o.op == "patch")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    client.patch(victim.iri, {"website": "https://someone-else.example"})
    report = apply(p, client, plan_path=path, verify=True, reconcile=False)
    row = report.rows.filter(report.rows["row_number"] == victim.row_numbers[0]).to_dicts()[0]
    assert row["outcome"] == "drifted" and "someone-else" in row["note"]
    assert row["note"].endswith(": someone changed it since the plan; plan again")
    assert client.get(victim.iri)["website"] == "https://someone-else.example"
    assert not report.ok
    # the same plan applied again without --verify (as a resume is): the drifted write stays
    # drifted, not sent over the other's edit; planning again is the way on
    crm.clear_log()
    again = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert [r.method for r in crm.requests if r.path == victim.iri] == []
    assert again.rows.filter(again.rows["row_number"] == victim.row_numbers[0])["outcome"].to_list() == ["drifted"]
    assert client.get(victim.iri)["website"] == "https://someone-else.example" and not again.ok


@pytest.mark.parametrize("verify", [False, True], ids=["saved-plan", "verify"])
def test_an_update_whose_record_holds_its_values_already_is_not_sent(crm, tmp_path, verify):
    """Someone (another plan of the same sheet, a person) made a saved plan's change since it
    was made: its patches would change nothing, so they are not sent and report `unchanged`
    (a trial saw them sent again and counted `patched`); the other patches go as planned."""
    p, path = _plan(crm, tmp_path)
    patches = [o for o in p.operations if o.op == "patch"]
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    for o in patches[:2]:  # the plan's own change, made by someone else
        client.patch(o.iri, o.body)
    crm.clear_log()
    report = apply(p, client, plan_path=path, reconcile=False, verify=verify)
    sent = {r.path for r in crm.requests if r.method == "PATCH"}
    assert sent == {o.iri for o in patches[2:]}
    outcome = dict(report.rows.select("row_number", "outcome").iter_rows())
    assert [outcome[o.row_numbers[0]] for o in patches[:2]] == ["unchanged", "unchanged"]
    assert all(outcome[o.row_numbers[0]] == "patched" for o in patches[2:]) and report.ok
    note = report.rows.filter(report.rows["row_number"] == patches[0].row_numbers[0])["note"][0]
    assert note.startswith("the record already holds what the plan sends")
    _assert_state_equals_plan(crm)


def test_creates_whose_records_others_made_since_the_plan_are_not_sent(crm, tmp_path, caplog, monkeypatch):
    """Another import created three of a saved plan's organizations after it was made: apply
    lists the organizations created since (one request to count, one to list), sends none of
    those three creates (drifted: plan again) and the rest as planned; nothing is duplicated.
    When the listing would cost too much, it refuses the plan before any write instead."""
    p, path = _plan(crm, tmp_path)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    time.sleep(1.1)  # a later second than the plan's (times are to the second)
    early = [o for o in p.operations if o.op == "create"][:3]
    for o in early:
        client.post("/organizations", {**o.body, "emailAddresses": [{"email": e["email"].upper()}
                                                                    for e in o.body["emailAddresses"]]})
    monkeypatch.setattr(sys.modules["bulkcrm.apply"], "RECENT_MAX_REQUESTS", 0)
    crm.clear_log()
    with pytest.raises(PlanError, match=r"3 organization\(s\) were created since \S+Z \(a minute before this "
                                        r"plan.s matching began\).*; finding them among the 103 created since \(the "
                                        r"plan.s own 0 included\) would take 4 requests: "
                                        r"plan again .* or apply with --verify"):
        apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert [r.method for r in crm.requests] == ["GET"]  # the count, nothing sent
    monkeypatch.setattr(sys.modules["bulkcrm.apply"], "RECENT_MAX_REQUESTS", 100)
    crm.clear_log()
    with caplog.at_level("WARNING", logger="bulkcrm"):
        report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert "3 of them hold an identifier of 3 of the plan's creates, which are not sent" in caplog.text
    drifted = report.rows.filter(report.rows["outcome"] == "drifted")
    assert sorted(drifted["row_number"].to_list()) == sorted(o.row_numbers[0] for o in early)
    assert "created since the plan" in drifted["note"][0]
    assert [r.method for r in crm.requests][:2] == ["GET", "GET"]  # the count, the listing
    assert sum(r.method == "POST" for r in crm.requests) == N_NEW - 3
    _assert_state_equals_plan(crm)  # no organization twice


def test_a_resumed_migration_is_not_refused_for_its_own_creates(crm, tmp_path, monkeypatch):
    """Trial 2026-12-03: a migration stopped after 4,000 creates; someone made one organization;
    the resume was refused (exit 2: "1 organization(s) were created since"), as listing the
    organizations created since (its own 4,000 among them) cost over 100 requests. Such a
    listing costs far less than the creates still to do: the resume lists them and goes on."""
    sheet = tmp_path / "m.csv"
    sheet.write_text("title,id\n" + "".join(f"Org {i},L{i}\n" for i in range(100)), encoding="utf-8")
    t = parse_template({"resource": "organizations", "identifiers": ["customerId"],
                        "fields": {"title": "title", "customerId": "id"}}, path="t.yaml", sha256="x")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    path = plan(sheet, t, client).save(tmp_path / "m.json")
    assert apply(Plan.load(path), client, plan_path=path, limit=70, reconcile=False).counts()["created"] == 70
    client.post("/organizations", {"title": "Someone else's", "customerId": "X1"})
    apply_module = sys.modules["bulkcrm.apply"]
    monkeypatch.setattr(apply_module, "RECENT_MAX_REQUESTS", 1)  # 71 made since: 3 pages, 3 of them its own
    report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert report.counts()["created"] == 100 and report.summary["already_done"] == 70
    ids = [o.get("customerId") for o in crm.store.all("organizations", tenant="tenant-a")]
    assert len(ids) == 101 == len(set(ids))


def test_many_records_made_near_the_plan_do_not_stop_a_plan_with_few_creates(crm, tmp_path, monkeypatch):
    """Records seeded just before planning (a rehearsal) are all "created since" it: listing
    them all would cost more than the limit, but the plan's two creates are checked by looking
    their identifiers up instead (one request): the one another import made meanwhile is
    drifted, the other is sent."""
    _seed(crm)  # 100 records, made within the minute before the plan's matching
    sheet = tmp_path / "few.csv"
    sheet.write_text("title,email,website,phone\nNew A,new-a@firma.example,,\nNew B,new-b@firma.example,,\n",
                     encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    p = plan(sheet, parse_template(TEMPLATE, path="t.yaml", sha256="x"), client)
    path = p.save(tmp_path / "few.json")
    time.sleep(1.1)
    client.post("/organizations", {"title": "A elsewhere", "emailAddresses": [{"email": "new-a@firma.example"}]})
    monkeypatch.setattr(sys.modules["bulkcrm.apply"], "RECENT_MAX_REQUESTS", 1)  # 30 records
    crm.clear_log()
    report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert [(r["row_number"], r["outcome"]) for r in report.rows.to_dicts()] == [(2, "drifted"), (3, "created")]
    assert sum("identifiers" in r.query for r in crm.requests) == 1 and sum(r.method == "POST" for r in crm.requests) == 1


def test_a_record_made_while_the_plan_was_made_is_not_created_again(crm, tmp_path):
    """Someone creates one of the plan's organizations after matching looked it up but before
    planning ended (a long lookup on the real API): apply looks from when matching began, so
    that create is drifted, not a duplicate."""
    from bulkcrm.planfile import now_utc
    p, path = _plan(crm, tmp_path)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    late = next(o for o in p.operations if o.op == "create")
    time.sleep(1.1)
    client.post("/organizations", late.body)  # while the plan was still being made...
    time.sleep(1.1)
    p.created_at = now_utc()                  # ...which ended after it
    p.save(path)
    report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert report.rows.filter(report.rows["outcome"] == "drifted")["row_number"].to_list() == late.row_numbers
    _assert_state_equals_plan(crm)


def test_a_copy_of_an_applied_plan_does_not_make_its_creates_without_identifiers_again(crm, tmp_path, caplog,
                                                                                       monkeypatch):
    """Trial 2026-12-03: a copy of a plan applied already (its journal is another file) made
    the rows without an identifier again: their records were listed among those created since
    the plan but only identifiers were compared. A create whose every field a record made since
    holds is drifted; one whose title alone a record holds is sent."""
    import shutil
    sheet = tmp_path / "bare.csv"
    sheet.write_text("title,email,website,phone\nNew A,new-a@firma.example,,\nNo Id,,https://no-id.example,\n"
                     "Same Name,,https://one.example,\n", encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    path = plan(sheet, parse_template(TEMPLATE, path="t.yaml", sha256="x"), client).save(tmp_path / "p.json")
    time.sleep(1.1)
    assert apply(Plan.load(path), client, plan_path=path, reconcile=False).counts()["created"] == 3
    client.patch(next(r["@id"] for r in crm.store.all("organizations", tenant="tenant-a")
                      if r["title"] == "Same Name"), {"website": "https://two.example"})
    copy = Path(shutil.copy(path, tmp_path / "copy.json"))
    crm.clear_log()
    # applied on another machine (another cache folder): this one refuses the copy (`_check_copy`)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-2"))
    with caplog.at_level("WARNING", logger="bulkcrm"):
        report = apply(Plan.load(copy), client, plan_path=copy, reconcile=False)
    assert [(r["row_number"], r["outcome"]) for r in report.rows.to_dicts()] == [
        (2, "drifted"), (3, "drifted"), (4, "created")]
    assert "made already (by an earlier apply of this plan or of a copy of it)" in report.rows["note"][1]
    first = {r["title"]: r["@id"] for r in crm.store.all("organizations", tenant="tenant-a")}
    assert report.rows["iri"].to_list()[:2] == [first["New A"], first["No Id"]]  # the record each found
    assert "1 of its creates without identifiers matches a record that holds every field it sends" in caplog.text
    assert sum(r.method == "POST" for r in crm.requests) == 1
    # with --verify (which looks identifiers up one create at a time) it is drifted as well
    again = Path(shutil.copy(path, tmp_path / "again.json"))
    crm.clear_log()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-3"))
    report = apply(Plan.load(again), client, plan_path=again, reconcile=False, verify=True)
    assert [r["outcome"] for r in report.rows.to_dicts()] == ["drifted"] * 3  # the third: the copy's record
    assert sum(r.method == "POST" for r in crm.requests) == 0


def test_creates_without_identifiers_do_not_make_a_plan_refused(crm, tmp_path, caplog, monkeypatch):
    """From a review: a create without identifiers needs the organizations created since listed
    to be checked; when that listing costs more than `RECENT_MAX_REQUESTS`, the plan is not
    refused (the identified creates are looked up as before): those creates are sent, and a
    warning says they could not be checked."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,email,website,phone\nHas Mail,has@x.example,,\nNo Id,,https://noid.example,\n",
                     encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    path = plan(sheet, parse_template(TEMPLATE, path="t.yaml", sha256="x"), client).save(tmp_path / "p.json")
    time.sleep(1.1)
    for i in range(40):  # another import made 40 organizations since
        client.post("/organizations", {"title": f"Other {i}", "emailAddresses": [{"email": f"o{i}@y.example"}]})
    monkeypatch.setattr(sys.modules["bulkcrm.apply"], "RECENT_MAX_REQUESTS", 1)  # 30 records
    with caplog.at_level("WARNING", logger="bulkcrm"):
        report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert report.counts()["created"] == 2
    assert "1 of them without identifiers cannot be checked" in caplog.text


def test_a_stale_plan_warns_and_verify_skips_creates_whose_records_exist_now(crm, tmp_path, caplog):
    """A plan made before another import created its records: with --verify apply warns and
    each create looks its identifiers up first and is `drifted` instead of a duplicate."""
    p, path = _plan(crm, tmp_path)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    early = [o for o in p.operations if o.op == "create"][:3]
    time.sleep(1.1)  # a later second than the plan's (times are to the second)
    for o in early:  # another import created three of the plan's organizations meanwhile
        client.post("/organizations", o.body)
    with caplog.at_level("WARNING", logger="bulkcrm"):
        report = apply(Plan.load(path), client, plan_path=path, verify=True, reconcile=False)
    assert "3 organization(s) were created since " in caplog.text
    drifted = report.rows.filter(report.rows["outcome"] == "drifted")
    assert sorted(drifted["row_number"].to_list()) == sorted(o.row_numbers[0] for o in early)
    assert "exists now" in drifted["note"][0]
    _assert_state_equals_plan(crm)  # no organization twice


def test_an_api_that_is_down_stops_the_run_at_its_first_operation(crm, tmp_path):
    """Connection refused after the retries: the run stops (resume later) instead of failing
    every row, each after its own retries; the operation stays `sent` for the resume."""
    from bulkcrm.errors import TransientApiError
    p, path = _plan(crm, tmp_path)
    with socket.socket() as s:  # a port nobody listens on: the API is down
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = Client(down, TEST_KEY, requests_per_minute=None, max_attempts=2, sleep=lambda s: None)
    p.target = down
    with pytest.raises(TransientApiError, match="is the server at .* running"):  # fresh: no check
        apply(p, client, plan_path=path, reconcile=False, fresh=True)  # request first, as import's
    states = [json.loads(line).get("state") for line in journal_path(path).read_text().splitlines()[1:]]
    assert states == ["sent", "sent"] and client.requests_sent == 2  # one line an attempt: a resume
    # gives the server its time from the last


def test_plan_for_another_target_is_refused(crm, tmp_path):
    from bulkcrm.errors import PlanError
    p, path = _plan(crm, tmp_path)
    with pytest.raises(PlanError, match="made for"):
        apply(p, Client("http://127.0.0.1:9", TEST_KEY), plan_path=path)


def test_key_never_written(crm, tmp_path):
    p, path = _plan(crm, tmp_path)
    from bulkcrm.report import write_report
    report = apply(p, Client(crm.url, TEST_KEY, requests_per_minute=None), plan_path=path)
    write_report(report, tmp_path / "r")
    for f in [path, journal_path(path), *(tmp_path / "r").iterdir()]:
        assert TEST_KEY.encode() not in Path(f).read_bytes(), f


def _slow_apply(crm, tmp_path, path: Path, latency_ms: int, lines: int,
                extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, list[str]]:
    """Start `bulkcrm apply` of `path` (options `extra` too) in a process against a sandbox
    slowed by `latency_ms`; return it, and its command, once its journal has `lines` lines."""
    crm.set_faults(latency_ms=latency_ms)
    cmd = [sys.executable, "-m", "bulkcrm", "apply", str(path), "--base-url", crm.url, "--api-key", TEST_KEY,
           "--max-rate", "60000", "--no-reconcile", *extra, "--report", str(tmp_path / "report")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while _journal_lines(journal_path(path)) < lines and time.monotonic() < deadline:
        time.sleep(0.005)
    return proc, cmd


def test_ctrl_c_pressed_again_while_stopping_still_ends_in_one_json_object(crm, tmp_path):
    """Trial 2026-12-02: Ctrl-C pressed three times left `--json` without its JSON object when a
    later one landed while the first was being handled. Whatever the timing: exit 130, no
    traceback, and stdout's last line is the JSON error; the journal still resumes."""
    p, path = _plan(crm, tmp_path)
    proc, cmd = _slow_apply(crm, tmp_path, path, latency_ms=5, lines=20, extra=("--json",))
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    stopped = json.loads(out.strip().splitlines()[-1])
    assert (stopped["ok"], stopped["error"], stopped["exit_code"]) == (False, "interrupted", 130)
    crm.clear_faults()
    final = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert final.returncode == 0, final.stderr
    _assert_state_equals_plan(crm)


def test_ctrl_c_prints_the_resume_command_and_resume_completes(crm, tmp_path):
    p, path = _plan(crm, tmp_path)
    proc, cmd = _slow_apply(crm, tmp_path, path, latency_ms=5, lines=20, extra=("--json",))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"resume with:\n  bulkcrm apply {path}" in err and "Traceback" not in err
    stopped = json.loads(out.strip().splitlines()[-1])  # a script reading stdout learns it too
    assert stopped["error"] == "interrupted" and stopped["resume"].startswith(f"bulkcrm apply {path}")
    # same target, pace and choices (the run's --no-reconcile); no key
    assert f"--base-url {crm.url} --max-rate 60000 --no-reconcile --api-key <your key>" in err
    assert TEST_KEY not in out + err
    # the report folder holds this run's report, not an earlier one's: what it did, the rest planned
    stopped_report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    outcomes = [r["outcome"] for r in stopped_report["rows"]]
    done = sum(o in ("created", "patched") for o in outcomes)
    assert stopped_report["summary"]["stopped"] is True and "The run stopped; its report so far" in err
    assert stopped_report["summary"]["ok"] is False and stopped_report["summary"]["plan"] == str(path)
    summary_sheet = dict(openpyxl.load_workbook(tmp_path / "report" / "report.xlsx")["Summary"].iter_rows(
        min_row=2, values_only=True))
    assert summary_sheet["stopped"] is True and summary_sheet["ok"] is False and summary_sheet["left"] > 0
    # the write in flight at Ctrl-C (if any) is `unconfirmed`: sent, answer not seen
    assert 0 < done < len(outcomes) and set(outcomes) <= {"created", "patched", "planned", "unchanged", "unconfirmed"}
    assert outcomes.count("unconfirmed") <= 1
    assert stopped_report["summary"]["left"] == outcomes.count("planned") == \
        len(outcomes) - done - outcomes.count("unconfirmed")
    # --json names that report and gives its summary, so a scheduled job has the counts so far
    assert stopped["report"] == str(tmp_path / "report" / "report.json")
    assert stopped["summary"] == stopped_report["summary"]
    crm.clear_faults()
    final = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert final.returncode == 0, final.stderr
    _assert_state_equals_plan(crm)
    final_report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert "stopped" not in final_report["summary"] and "planned" not in {r["outcome"] for r in final_report["rows"]}


_INTERRUPT_ON_IMPORT = """
import os, signal, sys
class Interrupt:  # Ctrl-C (or SIGTERM) as the command's modules load (they take about a second)
    def find_spec(self, name, path, target=None):
        if name == "bulkcrm.apply":
            os.kill(os.getpid(), getattr(signal, os.environ.get("BULKCRM_TEST_SIGNAL", "SIGINT")))
sys.meta_path.insert(0, Interrupt())
"""


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_ctrl_c_while_the_command_starts_is_one_line_not_a_traceback(tmp_path, how):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_INTERRUPT_ON_IMPORT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    cmd = [str(Path(sys.executable).with_name("bulkcrm"))] if how == "console script" else \
        [sys.executable, "-m", "bulkcrm"]
    out = subprocess.run([*cmd, "validate", "in.csv", "-t", "t.yaml"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert (out.returncode, out.stderr.strip()) == (130, "Stopped (interrupted) while starting; nothing was done.")
    assert not (tmp_path / ".bulkcrm").exists() and not (tmp_path / "reports").exists()
    # with --json, a scheduled job reading stdout gets the JSON error too (trial 2026-12-02)
    out = subprocess.run([*cmd, "validate", "in.csv", "-t", "t.yaml", "--json"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 130 and json.loads(out.stdout) == {
        "ok": False, "error": "interrupted", "message": "interrupted while starting; nothing was done", "exit_code": 130}
    # a scheduler's SIGTERM then (review 2026-12-02): exit 143, the same one line and JSON object
    out = subprocess.run([*cmd, "validate", "in.csv", "-t", "t.yaml", "--json"], capture_output=True, text=True,
                         cwd=tmp_path, env={**env, "BULKCRM_TEST_SIGNAL": "SIGTERM"}, timeout=120)
    assert (out.returncode, out.stderr.strip()) == (143, "Stopped (terminated (SIGTERM)) while starting; nothing was done.")
    assert json.loads(out.stdout)["exit_code"] == 143


def test_lost_create_is_found_when_identifiers_have_no_filter(crm, tmp_path):
    """A create left in `sent` whose record exists is found among the records created since it
    was sent, although its only identifier (customerId) has no API filter: no duplicate."""
    from bulkcrm.journal import Journal
    template = parse_template({"resource": "organizations", "identifiers": ["customerId"],
                               "fields": {"title": "name", "customerId": "id"}}, path="t.yaml", sha256="x")
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("id,name\nC1,Alpha B.V.\nC2,Alpha B.V.\nC3,Gamma B.V.\n", encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None, timeout_s=0.5)  # settles in 1 s
    crm.seed({"organizations": [{"title": "Old", "customerId": "C9", "createdAt": "2020-01-01T00:00:00Z"}]})
    p = plan(sheet, template, client)
    path = p.save(tmp_path / "plan.json")
    lost = p.operations[1]  # C2: same title as C1, told apart by its customerId only
    assert lost.body["customerId"] == "C2"
    # the crash: the journal says sent, the server has the record, the answer never came
    Journal(journal_path(path), p.sha256, p.target).record(lost.key, "sent")
    client.post("/organizations", lost.body)
    crm.clear_log()
    report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert report.ok and report.counts()["created"] == 3
    orgs = crm.store.all("organizations", tenant="tenant-a")
    assert sorted(o["customerId"] for o in orgs) == ["C1", "C2", "C3", "C9"]
    posts = [r for r in crm.requests if r.method == "POST"]
    assert len(posts) == 2  # C1 and C3; C2 was found, not resent
    listing = [r for r in crm.requests if r.method == "GET" and "createdAt%5Bafter%5D" in r.query
               and "itemsPerPage=1" not in r.query]  # not the count of records created since the plan
    assert len(listing) == 1
    entries = [json.loads(line) for line in journal_path(path).read_text().splitlines()]
    assert [e.get("detail") for e in entries if e.get("key") == lost.key][-1] == "resolved after a lost answer"


def test_many_lost_creates_list_the_recent_organizations_once(crm, tmp_path):
    """Review 2026-12-02: every create whose answer was lost listed all organizations made in
    the last ten minutes again (608 listing requests for 30 creates in doubt, with customerId
    among the identifiers): the listing is made once a run, then only from the newest
    `createdAt` it saw. Each create is still found, none sent twice."""
    template = parse_template({"resource": "organizations", "identifiers": ["customerId"],
                               "fields": {"title": "name", "customerId": "id"}}, path="t.yaml", sha256="x")
    made = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # within the ten minutes looked at
    crm.seed({"organizations": [{"title": f"Recent {i}", "customerId": f"R{i}", "createdAt": (
        made + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")} for i in range(95)]  # 4 pages
        # another writer's record stamped ahead (a node whose clock runs fast) hides none of ours
        + [{"title": "Ahead", "customerId": "A1", "createdAt": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(
            seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")}]})
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("id,name\n" + "".join(f"C{i},Firma {i}\n" for i in range(12)), encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None, timeout_s=0.5, max_attempts=1)
    p = plan(sheet, template, client)
    path = p.save(tmp_path / "plan.json")
    crm.set_faults(drop_rate=1.0, seed=1)  # every write is made, its answer lost
    crm.clear_log()
    report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    crm.clear_faults()
    assert report.ok and report.counts()["created"] == 12, report.rows.to_dicts()
    orgs = crm.store.all("organizations", tenant="tenant-a")
    assert sorted(o["customerId"] for o in orgs if o["customerId"].startswith("C")) == sorted(f"C{i}" for i in range(12))
    listing = [r for r in crm.requests if r.method == "GET" and "createdAt%5Bafter%5D" in r.query
               and "itemsPerPage=1" not in r.query]
    assert len(listing) <= 2 * 4 + 12, "\n".join(r.query for r in listing)  # the check of records made since
    # the plan and one full listing (4 pages each), then a page a lookup (was 12 full listings)


def test_lost_creates_that_were_never_made_list_the_window_once(crm, tmp_path):
    """Review 2026-12-02: creates a stopped run left `sent` whose requests never reached the
    server are found by no lookup, so no record of the run's own bounds the next listing; each
    listed the whole ten minutes again (96 listing requests for 12). Later listings start from
    the server's `Date` at the last one, less a minute: one page each. All 12 are sent once."""
    from bulkcrm.journal import Journal
    template = parse_template({"resource": "organizations", "identifiers": ["customerId"],
                               "fields": {"title": "name", "customerId": "id"}}, path="t.yaml", sha256="x")
    made = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # within the ten minutes looked at
    crm.seed({"organizations": [{"title": f"Recent {i}", "customerId": f"R{i}", "createdAt": (
        made + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")} for i in range(95)]})  # 4 pages
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("id,name\n" + "".join(f"C{i},Firma {i}\n" for i in range(12)), encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None, timeout_s=0.5)  # settles in 1 s
    p = plan(sheet, template, client)
    path = p.save(tmp_path / "plan.json")
    journal = Journal(journal_path(path), p.sha256, p.target)
    for op in p.operations:  # the crash: journaled as sent, never reached the server
        journal.record(op.key, "sent")
    crm.clear_log()
    report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert report.ok and report.counts()["created"] == 12, report.rows.to_dicts()
    orgs = crm.store.all("organizations", tenant="tenant-a")
    assert sorted(o["customerId"] for o in orgs if o["customerId"].startswith("C")) == sorted(f"C{i}" for i in range(12))
    assert len([r for r in crm.requests if r.method == "POST"]) == 12
    listing = [r for r in crm.requests if r.method == "GET" and "createdAt%5Bafter%5D" in r.query
               and "itemsPerPage=1" not in r.query]
    assert len(listing) <= 2 * 4 + 11, "\n".join(r.query for r in listing)  # was 12 full listings


def test_apply_after_a_separate_plan_counts_the_plans_requests(crm, tmp_path):
    """`bulkcrm plan` then `bulkcrm apply` are two processes: apply's window starts with the
    plan's requests in it (the tenant's still holds them), so its first writes meet no 429."""
    crm.set_rate_limit(4, 2.0)
    try:
        planner = Client(crm.url, TEST_KEY, requests_per_minute=4, window_s=2.0)
        template = parse_template(TEMPLATE, path="t.yaml", sha256="x")
        sheet = tmp_path / "orgs.csv"
        sheet.write_text("title,email,website,phone\n" + "".join(
            f"Nieuw {i} B.V.,nieuw{i}@firma.example,,\n" for i in range(4)), encoding="utf-8")
        p = plan(sheet, template, planner, strategy="lookup")
        assert p.requests_spent >= 1 and p.counts()["create"] == 4
        path = p.save(tmp_path / "plan.json")
        applier = Client(crm.url, TEST_KEY, requests_per_minute=4, window_s=2.0)  # a new process's
        report = apply(Plan.load(path), applier, plan_path=path, reconcile=False)
        assert report.ok and report.counts()["created"] == 4
        assert applier.throttled == 0 and 429 not in {r.status for r in crm.requests}
    finally:
        crm.set_rate_limit(None)


def test_a_lost_create_is_not_taken_for_another_rows_record(crm, tmp_path):
    """Row 3 shares row 2's title but has no identifier: the record row 2 created (the journal
    has it) is not row 3's lost create, so row 3 is sent and both organizations exist."""
    from bulkcrm.journal import Journal
    template = parse_template({"resource": "organizations", "identifiers": ["emailAddresses", "customerId"],
                               "fields": {"title": "name", "customerId": "id", "emailAddresses": "email"}},
                              path="t.yaml", sha256="x")
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("id,name,email\nC1,Alpha B.V.,a@alpha.example\n,Alpha B.V.,\n", encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None, timeout_s=0.5)  # settles in 1 s
    p = plan(sheet, template, client, mode="create-only")
    path = p.save(tmp_path / "plan.json")
    first, second = p.operations
    journal = Journal(journal_path(path), p.sha256, p.target)
    journal.record(first.key, "sent")
    journal.record(first.key, "done", iri=client.post("/organizations", first.body).iri)
    journal.record(second.key, "sent")  # the crash: its request never reached the server
    report = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert report.ok and report.counts()["created"] == 2
    orgs = crm.store.all("organizations", tenant="tenant-a")
    assert sorted((o["title"], o.get("customerId") or "") for o in orgs) == [("Alpha B.V.", ""), ("Alpha B.V.", "C1")]
    assert len({r["iri"] for r in report.rows.to_dicts()}) == 2


def test_a_finished_plan_applied_again_sends_nothing(crm, tmp_path):
    """Every operation done: a second apply writes nothing and re-reads nothing (re-reading
    every record would cost requests and report later edits by others as mismatches); its
    report comes from the journal, the first run's reconciliation with it (it re-read them all)."""
    p, path = _plan(crm, tmp_path)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    assert apply(p, client, plan_path=path).ok
    client.patch(next(o.iri for o in p.operations if o.op == "patch"), {"website": "https://later.example"})
    crm.clear_log()
    again = apply(Plan.load(path), client, plan_path=path)
    assert crm.requests == [] and again.summary["requests"] == 0 and again.summary["already_done"] == len(p.operations)
    assert again.ok and again.counts()["created"] == N_NEW
    assert (again.summary["reconciled"], again.summary["mismatches"]) == (True, 0)


def _stopped_after_first_batch(crm, tmp_path, rows: int, batch: int):
    """Plan `rows` creates at 4 requests / 2 s, save the plan, wait until its lookup leaves
    the window, then apply it and stop it with Ctrl-C after its first batch of `batch` writes.
    Returns (plan path, the stopped run's client)."""
    template = parse_template(TEMPLATE, path="t.yaml", sha256="x")
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("title,email,website,phone\n" + "".join(
        f"Nieuw {i} B.V.,nieuw{i}@firma.example,,\n" for i in range(rows)), encoding="utf-8")
    p = plan(sheet, template, Client(crm.url, TEST_KEY, requests_per_minute=4, window_s=2.0))
    path = p.save(tmp_path / "plan.json")
    time.sleep(2.1)  # the plan's lookup leaves the window

    def ctrl_c(done, total, client):
        if done:  # after the first batch (the first call, 0, comes before any write)
            raise KeyboardInterrupt

    first = Client(crm.url, TEST_KEY, requests_per_minute=4, window_s=2.0)
    with pytest.raises(KeyboardInterrupt):
        apply(p, first, plan_path=path, reconcile=False, batch_size=batch, progress=ctrl_c)
    return path, first


@pytest.mark.parametrize(("rows", "batch"), [(8, 4), (6, 2)])
def test_a_resume_right_after_ctrl_c_counts_the_stopped_runs_requests(crm, tmp_path, rows, batch):
    """The journal's send times fill the new process's window: its first requests wait instead
    of meeting a 429 the stopped run's requests would cause. Those are its writes and the reads
    a saved plan's apply sends before its first write (the organizations created since), which
    the journal counts too (a trial's resume 6 s after a stop)."""
    crm.set_rate_limit(4, 2.0)
    try:
        path, first = _stopped_after_first_batch(crm, tmp_path, rows=rows, batch=batch)
        assert first.requests_sent == 1 + batch  # the check and the first batch's writes
        resumed = Client(crm.url, TEST_KEY, requests_per_minute=4, window_s=2.0)  # a new process's
        report = apply(Plan.load(path), resumed, plan_path=path, reconcile=False)
        assert report.ok and report.counts()["created"] == rows and report.summary["already_done"] == batch
        assert resumed.throttled == 0 and 429 not in {r.status for r in crm.requests}
    finally:
        crm.set_rate_limit(None)


def test_each_runs_checks_stay_in_the_journal_for_the_next_windows(crm, tmp_path):
    """Chaos review: every run recorded its reads before the first write under one journal key,
    so a second stopped run's replaced the first's, and a third run's window forgot them (a 429
    was seen once). Each run's are kept, and all count."""
    from bulkcrm.journal import Journal
    p, path = _plan(crm, tmp_path)
    for _ in range(2):  # two runs of the saved plan, one write each (--limit 1)
        apply(Plan.load(path), Client(crm.url, TEST_KEY, requests_per_minute=None), plan_path=path,
              reconcile=False, limit=1)
    journal = Journal(journal_path(path), p.sha256, p.target, p.created_at)
    checks = {k: e["requests"] for k, e in journal.entries.items() if k.startswith("checks")}
    assert len(checks) == 2 and all(n >= 1 for n in checks.values()), checks
    assert len(journal.send_times()) == sum(checks.values()) + 2  # and the two writes


def test_sigterm_stops_like_ctrl_c_and_the_resume_completes(crm, tmp_path):
    """A scheduler's timeout sends SIGTERM: the run stops with the resume command (exit 143,
    `--json` says so on stdout), and the resume ends with every record once; its JSON gives
    how many operations the stopped run had done."""
    p, path = _plan(crm, tmp_path)
    proc, cmd = _slow_apply(crm, tmp_path, path, latency_ms=5, lines=20, extra=("--json",))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Stopped (terminated (SIGTERM)). The journal is saved; resume with:" in err and "Traceback" not in err
    stopped = json.loads(out.strip().splitlines()[-1])
    assert (stopped["exit_code"], stopped["resume"].split()[:3]) == (143, ["bulkcrm", "apply", str(path)])
    # the log's last progress line says how far the stopped run got
    last = [line for line in err.splitlines() if line.startswith("apply: ")][-1]
    done_when_stopped = int(last.split()[1].split("/")[0])
    crm.clear_faults()
    final = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout.strip().splitlines()[-1])["already_done"] == done_when_stopped >= 1
    assert "apply: " in final.stderr  # progress lines go to stderr with --json too
    _assert_state_equals_plan(crm)


def test_two_imports_of_one_sheet_at_once_from_two_folders_create_each_organization_once(crm, tmp_path):
    """An overlapping run from another folder (its own plan and journal) would plan the same
    creates before the first run wrote them: the target's lock stops it before it plans, with
    exit 75 (try again later), and its next run finds them all made."""
    _seed(crm)
    (tmp_path / "t.yaml").write_text(json.dumps(TEMPLATE), encoding="utf-8")
    sheet = _sheet(tmp_path)
    folders = [tmp_path / "a", tmp_path / "b"]
    cmd = [sys.executable, "-m", "bulkcrm", "import", str(sheet), "-t", str(tmp_path / "t.yaml"),
           "--base-url", crm.url, "--api-key", TEST_KEY, "--max-rate", "60000", "--no-reconcile", "--json"]
    for f in folders:
        f.mkdir()
    crm.set_faults(latency_ms=20)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folders[0])
    journal = folders[0] / "reports" / "orgs" / "plan.journal.jsonl"
    deadline = time.monotonic() + 60
    while _journal_lines(journal) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    writes = sum(r.method != "GET" for r in crm.requests)
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=folders[1], timeout=120)
    assert second.returncode == 75, second.stderr
    assert "another bulkcrm run on this machine is writing to" in second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1])["error"] == "busy"
    assert first.poll() is None, "the first import should still be running"
    crm.clear_faults()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert writes > 0 and not (folders[1] / "reports" / "orgs" / "plan.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=folders[1], timeout=120)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert (summary["created"], summary["unchanged"]) == (0, N_EXISTING + N_NEW)
    _assert_state_equals_plan(crm)


def test_a_second_apply_of_the_same_plan_at_once_is_refused(crm, tmp_path):
    """Two applies of one plan at the same time (a second terminal, a suspended job, an
    overlapping cron run) would each send every write: the second one stops before any."""
    p, path = _plan(crm, tmp_path)
    first, cmd = _slow_apply(crm, tmp_path, path, latency_ms=20, lines=5)
    second = subprocess.run([*cmd[:-1], str(tmp_path / "report2")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert second.returncode == 75 and "another bulkcrm apply of this plan is still running" in second.stderr
    # nor may a new plan be saved over it (its journal would be moved away mid-run)
    (tmp_path / "t.yaml").write_text(json.dumps(TEMPLATE), encoding="utf-8")
    saved = path.read_bytes()
    replan = subprocess.run([sys.executable, "-m", "bulkcrm", "plan", str(tmp_path / "orgs.csv"), "-t",
                             str(tmp_path / "t.yaml"), "--out", str(path), *cmd[5:9]],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert replan.returncode == 75 and "is in use" in replan.stderr and path.read_bytes() == saved
    assert first.poll() is None, "the first apply should still be running"
    crm.clear_faults()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    # stderr is no terminal here: progress comes as plain lines (a log, nohup), the first before
    # any write, the last at the end
    lines = [x for x in err.splitlines() if x.startswith("apply: ")]
    assert lines[0].startswith(f"apply: 0/{N_EXISTING + N_NEW} operations, ")
    assert err.splitlines()[-1].startswith(f"apply: {N_EXISTING + N_NEW}/{N_EXISTING + N_NEW} operations, ")
    _assert_state_equals_plan(crm)


def test_progress_comes_before_the_first_write_and_every_few_seconds(crm, tmp_path, monkeypatch):
    """At 20 requests a minute a batch of 25 takes over a minute: progress also comes every
    `PROGRESS_EVERY_S` seconds (here 0: after each operation), and once before any write."""
    import importlib
    monkeypatch.setattr(importlib.import_module("bulkcrm.apply"), "PROGRESS_EVERY_S", 0.0)
    p, path = _plan(crm, tmp_path)
    calls = []
    apply(p, Client(crm.url, TEST_KEY, requests_per_minute=None), plan_path=path, reconcile=False,
          batch_size=1000, progress=lambda done, total, client: calls.append(done))
    assert calls == list(range(len(p.operations) + 1))


def test_the_time_left_is_at_least_what_the_rate_allows():
    """The first window's writes go out at once: 20 of 60 done in 6 s does not mean 12 s left
    at 20 a minute, but 2 minutes."""
    from types import SimpleNamespace
    from bulkcrm.pipeline import _progress_line
    client = SimpleNamespace(requests_per_minute=20, requests_sent=21, throttled=0)
    assert _progress_line(20, 60, client, 6.0, per_op_s=0.3) == \
        "apply: 20/60 operations, 21 requests (0 throttled), 0.1 min, about 2.0 min left"
    # the line before the first write says what the rate allows
    assert _progress_line(0, 60, client, 0.0) == \
        "apply: 0/60 operations, 21 requests (0 throttled), 0.0 min, about 3.0 min at 20/min"
    # a slower pace than the rate's (6 s an operation) sets the time left
    assert _progress_line(50, 60, client, 60.0, per_op_s=6.0).endswith("1.0 min, about 1.0 min left")
    # a first write that waited a minute for planning's requests to leave the window sets no
    # pace (a trial: "1/40 operations, 1.0 min, about 37.4 min left" of a 2-minute run)
    assert _progress_line(1, 41, client, 60.0).endswith("1.0 min, about 2.0 min at 20/min")


@pytest.fixture
def log_clock(monkeypatch) -> list[float]:
    """The progress bar as a log (no terminal) on a clock the test sets: `now[0]` seconds."""
    from bulkcrm import pipeline
    now = [0.0]
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(pipeline.sys.stderr, "isatty", lambda: False)
    return now


def _updates(now: list[float], bar, client, steps: list[tuple[float, int]]) -> None:
    """Feed `bar` its (time, operations done) updates on the `log_clock`."""
    for t, done in steps:
        now[0] = t
        bar(done, bar.total, client)


def test_the_log_lines_pace_counts_from_the_runs_first_operation(log_clock, capsys):
    """The log's time left counts the pace from this run's first operation on: neither the
    operations an earlier run did nor the wait before the first write count."""
    from types import SimpleNamespace
    from bulkcrm import pipeline
    now = log_clock
    bar = pipeline._progress_bar(41)
    client = SimpleNamespace(requests_per_minute=20, requests_sent=0, throttled=0)
    _updates(now, bar, client, [(0.0, 0), (60.0, 1), (63.0, 2), (120.0, 21)])
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("about 2.0 min at 20/min")          # the start: what the rate allows
    assert lines[-1].endswith("2.0 min, about 1.0 min left")      # 20 in 60 s since the first: 3 s each
    done = pipeline._progress_bar(5)  # a plan an earlier run did: its one line, not two (a trial)
    done(5, 5, client)
    done(5, 5, client)
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_stopped_runs_last_log_line_says_what_is_left_not_a_time(log_clock, capsys):
    """The last line of a stopped run (Ctrl-C, `--limit`) is as of its last operation and
    counts what the next run does: a trial's "26/60 operations, 0.5 min, about 16.8 min left"
    took the time spent stopping for one operation's pace."""
    from types import SimpleNamespace
    from bulkcrm import pipeline
    now = log_clock
    bar = pipeline._progress_bar(60)
    client = SimpleNamespace(requests_per_minute=30, requests_sent=30, throttled=0)
    _updates(now, bar, client, [(0.0, 0), (2.0, 25), (30.0, 26), (40.0, 27)])
    now[0] = 70.0  # stopping: the journal, the report so far
    bar.last_line()
    assert capsys.readouterr().err.splitlines()[-2:] == [
        # one operation after the first window's burst is no pace: what the rate allows
        "apply: 26/60 operations, 30 requests (0 throttled), 0.5 min, about 1.1 min at 30/min",
        "apply: 27/60 operations, 30 requests (0 throttled), 0.7 min, 33 left for the next run"]
    bar.last_line()  # once only (the stop and the exception that follows both ask)
    assert capsys.readouterr().err == ""
    # the stopped report's count: drifted operations are not left for the next run; said even
    # when the last periodic line had the same count
    now[0] = 0.0
    bar = pipeline._progress_bar(6)
    _updates(now, bar, client, [(0.0, 0), (31.0, 2)])
    bar.last_line(2)
    assert capsys.readouterr().err.splitlines()[-1].endswith("0.5 min, 2 left for the next run")


def test_a_stopped_runs_last_line_counts_what_is_neither_done_nor_left(log_clock, capsys):
    """A write sent without an answer when the run stopped (a 429 waited out, a lost answer)
    and a failed one are neither done nor left to start: the last line says so, so its
    counts add up to the total (a trial: "25/299 operations, ... 267 left" of a stopped run)."""
    from types import SimpleNamespace
    from bulkcrm import pipeline
    report = SimpleNamespace(summary={"left": 281, "failed_to_retry": 0, "unconfirmed_to_check": 1})
    assert pipeline._unsettled(report) == {"unconfirmed": 1}
    bar = pipeline._progress_bar(299)
    client = SimpleNamespace(requests_per_minute=20, requests_sent=19, throttled=1)
    _updates(log_clock, bar, client, [(0.0, 0), (12.0, 17)])
    bar.last_line(281, unsettled=pipeline._unsettled(report))
    assert capsys.readouterr().err.splitlines()[-1] == (
        "apply: 17/299 operations, 19 requests (1 throttled), 0.2 min, 281 left for the next run; "
        "1 sent but not confirmed, which the next run checks")
    bar = pipeline._progress_bar(5)
    _updates(log_clock, bar, client, [(0.0, 0), (12.0, 1)])
    bar.last_line(None, unsettled={"unconfirmed": 1, "failed": 1})  # left: all the others
    assert capsys.readouterr().err.splitlines()[-1] == (
        "apply: 1/5 operations, 19 requests (1 throttled), 0.0 min, 2 left for the next run; "
        "1 sent but not confirmed, which the next run checks and 1 failed, which the next run sends again")


def test_a_stop_while_waiting_for_the_rate_limit_leaves_the_operation_unsent(crm, tmp_path):
    """An operation is journaled `sent` once its request can leave, not before its wait for a
    slot of the window: stopped during that wait (Ctrl-C), it was never sent, and the resume
    sends it without first looking for it (a trial saw `sent` 58 s before `done`)."""
    from tests.conftest import FakeClock

    template = parse_template(TEMPLATE, path="t.yaml", sha256="x")
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("title,email,website,phone\n" + "".join(
        f"Nieuw {i} B.V.,nieuw{i}@firma.example,,\n" for i in range(3)), encoding="utf-8")
    p = plan(sheet, template, Client(crm.url, TEST_KEY))
    path = p.save(tmp_path / "plan.json")
    clock = FakeClock()

    def ctrl_c(seconds):  # the third write must wait a window: the user stops it meanwhile
        raise KeyboardInterrupt

    limited = Client(crm.url, TEST_KEY, requests_per_minute=2, clock=clock, sleep=ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        apply(p, limited, plan_path=path, reconcile=False, fresh=True)
    lines = [json.loads(x) for x in journal_path(path).read_text().splitlines()[1:]]
    states = {}
    for e in lines:
        states[e["key"]] = e["state"]
    done = list(states.values()).count("done")
    assert done and set(states.values()) == {"done"}   # the one that waited: not journaled at all
    crm.clear_log()
    report = apply(Plan.load(path), Client(crm.url, TEST_KEY), plan_path=path, reconcile=False, fresh=True)
    assert report.ok and report.summary["already_done"] == done
    assert [r.method for r in crm.requests] == ["POST"] * (3 - done)  # no lookup of one never sent


def test_a_stopped_run_reports_what_earlier_runs_did_apart(crm, tmp_path):
    """`apply --limit 2`, then a resume stopped (Ctrl-C) after its next write: the stopped
    run's report says 2 were done by the earlier run (`already_done`), as a finished one does."""
    p, path = _plan(crm, tmp_path)
    first = apply(p, Client(crm.url, TEST_KEY, requests_per_minute=None), plan_path=path, limit=2)
    assert first.summary["already_done"] == 0 and first.summary["left"] == N_EXISTING + N_NEW - 2
    calls = []

    def progress(done, total, client):  # after each operation (batch_size=1), done ones too
        calls.append(done)
        if done == 3:  # the first write of this run
            raise KeyboardInterrupt
    reports = []
    with pytest.raises(KeyboardInterrupt):
        apply(p, Client(crm.url, TEST_KEY, requests_per_minute=None), plan_path=path, batch_size=1,
              progress=progress, on_stop=reports.append)
    (report,) = reports
    assert report.summary["stopped"] and report.summary["already_done"] == 2
    assert report.summary["left"] == N_EXISTING + N_NEW - 3


def test_a_run_stopped_during_its_checks_still_reports_so(crm, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM while a saved plan's checks wait for the rate limit (before the first
    write): the report so far (all planned) replaces the folder's previous one too."""
    import importlib

    apply_module = importlib.import_module("bulkcrm.apply")  # the package exports apply()
    p, path = _plan(crm, tmp_path)

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt
    monkeypatch.setattr(apply_module, "_check_created_since", interrupted)
    reports = []
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    with pytest.raises(KeyboardInterrupt):
        apply(p, client, plan_path=path, on_stop=reports.append)
    (report,) = reports
    assert report.summary["stopped"] and not report.ok
    assert report.summary["left"] == N_EXISTING + N_NEW == report.counts()["planned"]


def _kill_at_first_send(cmd: list[str], journal: Path, cwd: Path, env: dict) -> None:
    """Run `cmd` and SIGKILL it as soon as its journal says a write was sent."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env, text=True)
    deadline = time.monotonic() + 60
    while '"state": "sent"' not in (journal.read_text(encoding="utf-8") if journal.exists() else "") \
            and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("again", ["apply", "import"])
def test_a_run_right_after_a_kill_waits_for_the_create_the_server_is_still_making(crm, tmp_path, again):
    """Review 2026-12-02: a run killed while the server took 8 s over a POST; the resume looked
    2 s later, missed the record, sent it again (a duplicate) and reported all well; an import
    run again planned it as new. Both now wait `apply.settle_seconds` from the send (two read
    timeouts; `BULKCRM_TIMEOUT` here 4 s), then find the record: each organization once."""
    (tmp_path / "t.yaml").write_text(json.dumps(TEMPLATE), encoding="utf-8")
    sheet = tmp_path / "new.csv"
    sheet.write_text("title,email,website,phone\n" + "".join(
        f"Nieuw {i} B.V.,nieuw{i}@firma.example,https://nieuw{i}.example,\n" for i in range(3)), encoding="utf-8")
    env = {**os.environ, "BULKCRM_TIMEOUT": "4", "BULKCRM_API_KEY": TEST_KEY}
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "bulkcrm", "import", str(sheet), "-t", str(tmp_path / "t.yaml"), "--base-url",
           crm.url, "--max-rate", "60000", "--no-reconcile", "--json", "--report", str(report)]
    crm.set_faults(latency_ms=3500)  # the server commits each POST 3.5 s after it came in
    _kill_at_first_send(cmd, journal_path(report / "plan.json"), tmp_path, env)
    crm.clear_faults()  # the POST in flight keeps its 3.5 s
    if again == "apply":
        cmd = [sys.executable, "-m", "bulkcrm", "apply", str(report / "plan.json"), "--base-url", crm.url,
               "--max-rate", "60000", "--no-reconcile", "--json", "--report", str(report)]
    final = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert final.returncode == 0, final.stderr
    waited = re.search(r"waiting (\d+) s for the server to finish it", final.stderr)
    assert waited and int(waited[1]) >= 4, final.stderr  # 8 s from the send, not 2
    emails = sorted(e["email"] for o in crm.store.all("organizations", tenant="tenant-a")
                    for e in o.get("emailAddresses", []))
    assert emails == [f"nieuw{i}@firma.example" for i in range(3)], "an organization was created twice"


def test_a_write_retried_after_a_429_is_journaled_sent_at_each_attempt(crm, tmp_path):
    """Review 2026-12-02: `sent` was journaled before the first attempt only; a POST answered 429
    and sent again up to minutes later was then looked up by a resume as if sent at the first
    attempt (no wait), while the server still made it: a duplicate. Each attempt is journaled,
    so a resume gives the server its time from the last one."""
    template = parse_template(TEMPLATE, path="t.yaml", sha256="x")
    sheet = tmp_path / "new.csv"
    sheet.write_text("title,email,website,phone\nNieuw B.V.,nieuw@firma.example,,\n", encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    p = plan(sheet, template, client)
    path = p.save(tmp_path / "plan.json")
    crm.set_faults(burst_429=2)  # the next two requests: 429 with Retry-After: 1
    report = apply(Plan.load(path), client, plan_path=path, reconcile=False, fresh=True)
    assert report.ok and report.summary["throttled"] == 2
    sent = [json.loads(line)["t"] for line in journal_path(path).read_text().splitlines()[1:]
            if json.loads(line).get("state") == "sent"]
    assert len(sent) == 3 and sent[-1] - sent[0] >= 1.5, sent  # one per attempt, the last after the waits


def test_a_report_so_far_cut_short_leaves_no_earlier_report_as_this_runs(crm, tmp_path, monkeypatch):
    """Trial 2026-12-03: Ctrl-C pressed again while a stopped run wrote its report so far (as
    `timeout -s INT` does: it signals the process and its group) cut the writing short, and
    the folder kept the previous stop's report as if it were this run's. It is set aside to
    `earlier/`, the output says so, and the resume writes the report. (A second signal at the
    right instant cannot be timed against a server: the report writer raises it here.)"""
    import importlib

    from bulkcrm.pipeline import run_apply
    from bulkcrm.target import Target

    apply_module, pipeline = importlib.import_module("bulkcrm.apply"), importlib.import_module("bulkcrm.pipeline")
    p, path = _plan(crm, tmp_path)
    target = Target(client=Client(crm.url, TEST_KEY, requests_per_minute=None), label=crm.url)
    out, lines = tmp_path / "rep", []

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt
    writer = pipeline.write_report

    def cut_after_json(report, folder, **kw):  # Ctrl-C again once report.json is written
        writer(report, folder, **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(apply_module, "_check_created_since", interrupted)
    monkeypatch.setattr(pipeline, "write_report", cut_after_json)
    with pytest.raises(KeyboardInterrupt):  # the very first stop, cut short: nothing to set aside
        run_apply(path, target, report_dir=str(out), progress=False, echo=lines.append, plan=p)
    assert not any(out.iterdir()) and lines[-1].startswith(f"The run stopped before its report so far was "
                                                          f"written, so {out} holds none;")
    monkeypatch.setattr(pipeline, "write_report", writer)
    with pytest.raises(KeyboardInterrupt):  # a stop: its report so far is written
        run_apply(path, target, report_dir=str(out), progress=False, echo=lines.append, plan=p)
    first = json.loads((out / "report.json").read_text(encoding="utf-8"))["summary"]
    assert first["stopped"] and "The run stopped; its report so far" in lines[-1]

    monkeypatch.setattr(pipeline, "write_report", cut_after_json)  # the next: Ctrl-C again while writing
    with pytest.raises(KeyboardInterrupt):
        run_apply(path, target, report_dir=str(out), progress=False, echo=lines.append, plan=p)
    (earlier,) = (out / "earlier").iterdir()  # the earlier stop's report, whole, under its own time
    assert not list(out.glob("report.*")) and sorted(f.name for f in out.iterdir()) == ["earlier"]
    assert json.loads((earlier / "report.json").read_text(encoding="utf-8"))["summary"] == first
    assert f"so {out} holds none (the earlier one is in {earlier})" in lines[-1]

    monkeypatch.undo()  # the resume does it all and writes its report
    run_apply(path, target, report_dir=str(out), progress=False, echo=lines.append, plan=p)
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["summary"]["ok"] is True
    _assert_state_equals_plan(crm)


def test_ctrl_c_waits_for_the_report_so_far_to_be_moved_in(tmp_path):
    """Review 2026-12-03: blocking SIGINT on the main thread held nothing once polars had
    started its workers (the OS gives the signal to a thread that does not block it). While
    `_signals_held` runs, a Ctrl-C is noted; it is raised when the block ends."""
    import importlib

    import polars as pl

    pipeline = importlib.import_module("bulkcrm.pipeline")
    pl.DataFrame({"a": range(100_000)}).select(pl.col("a").sum())  # polars' worker threads exist
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with pipeline._signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the signal lands meanwhile
            steps.append("block done")
    assert steps == ["block done"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_log_lines_pace_forgets_a_one_off_wait_after_a_window(log_clock, capsys):
    """A resume waits 52 s for a stopped write before looking it up: a pace since the run's
    first operation took that wait for the rate (a trial: "about 11.3 min left" of a run that
    ended 6.0 min later). The pace is over the last window's worth of operations (20 at 20/min),
    so a window after the wait it is the rate's 3 s an operation again."""
    from types import SimpleNamespace
    from bulkcrm import pipeline
    now = log_clock
    bar = pipeline._progress_bar(246)
    client = SimpleNamespace(requests_per_minute=20, requests_sent=0, throttled=0)
    steps = [(0.0, 102), (1.0, 103), (53.0, 104)]  # the wait, after the first operation
    steps += [(53.0 + 3 * i, 104 + i) for i in range(1, 41)]  # then 3 s each: 40 more
    _updates(now, bar, client, steps)
    line = capsys.readouterr().err.splitlines()[-1]  # the last update's (done: no 30 s to wait)
    # 102 left at 3 s each: 5.1 min (a pace since the first operation, the wait in it, said 7.1)
    assert line == "apply: 144/246 operations, 0 requests (0 throttled), 2.9 min, about 5.1 min left", line


def test_the_log_lines_pace_comes_after_a_window_of_time_when_operations_are_slow(log_clock, capsys):
    """A trial at `--max-rate 1000` against a slow server was told "about 0.3 min at 1000/min"
    through a 7.5-minute run: a pace needed 1,000 operations. When the operations come slower
    than the rate allows, a window's time (60 s) of them sets the pace too."""
    from types import SimpleNamespace
    from bulkcrm import pipeline
    now = log_clock
    bar = pipeline._progress_bar(300)
    client = SimpleNamespace(requests_per_minute=1000, window_s=60.0, requests_sent=0, throttled=0)
    _updates(now, bar, client, [(0.0, 0)] + [(1.5 * i, i) for i in range(1, 61)])  # 1.5 s each, 90 s
    line = capsys.readouterr().err.splitlines()[-1]
    assert line == "apply: 60/300 operations, 0 requests (0 throttled), 1.5 min, about 6.0 min left", line


def test_a_long_reconciliation_logs_its_progress_every_minute(crm, caplog):
    """After a big migration's last write, reconciling re-reads its records (~1,000 requests,
    ≈ 50 min at 20/min) and a trial saw one line all that while; the minute's progress line
    (`Client.progress`) now says how far it is, as planning's matching does."""
    import importlib
    apply_mod = importlib.import_module("bulkcrm.apply")  # the package exports the function `apply`
    from bulkcrm.planfile import Operation
    crm.seed({"organizations": [{"title": f"O{i}", "emailAddresses": [{"email": f"o{i}@x.nl"}]}
                                for i in range(800)]})  # a listing (27 pages) costs more than lookups
    ops = [Operation(key=f"row:{i}", op="create", method="POST", path="/organizations", body={},
                     row_numbers=[i], identifiers={"emailAddresses": [f"o{i}@x.nl"]}) for i in range(700)]
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s
    client = Client(crm.url, TEST_KEY, requests_per_minute=20, clock=lambda: now[0], sleep=sleep)
    with caplog.at_level("INFO", logger="bulkcrm.client"):
        records = apply_mod._reread(client, ops, [None] * 700, "reconciling")
    assert len(records) == 700
    lines = [r.getMessage() for r in caplog.records if r.name == "bulkcrm.client" and "sent" in r.getMessage()]
    assert lines == ["reconciling: 20 of 24 requests sent, ≈ 0.2 min left …"]  # the count, then 24 lookups


def test_a_copy_of_a_plan_applied_on_this_machine_is_refused(crm, tmp_path):
    """A trial: a plan patched a website, a later import set it back, and a copy of the plan (a
    journal of its own) patched it again, undoing the import: the fields it sends held what
    the plan saw, so no drift was seen. The first run of a copy of a plan another file of it
    applied on this machine is refused before any request, naming that file; the plan itself
    resumes as before (a copy applied elsewhere: `test_a_copy_of_an_applied_plan_does_not_make_…`)."""
    p, path = _plan(crm, tmp_path)
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    victim = next(o for o in p.operations if o.op == "patch")
    before = client.get(victim.iri)["website"]
    assert apply(Plan.load(path), client, plan_path=path, reconcile=False).ok
    client.patch(victim.iri, {"website": before})  # a later import setting it back
    copy = tmp_path / "copy.json"
    copy.write_bytes(path.read_bytes())
    crm.clear_log()
    with pytest.raises(PlanError, match=r"was applied before as .*plan\.json \(journal .*plan\.journal\.jsonl\); "
                                         r"this copy would send its writes again"):
        apply(Plan.load(copy), client, plan_path=copy, reconcile=False)
    assert crm.requests == [] and client.get(victim.iri)["website"] == before
    assert apply(Plan.load(path), client, plan_path=path, reconcile=False).ok  # a resume: nothing to send
    assert not [r for r in crm.requests if r.method != "GET"]


def test_a_tag_the_plan_creates_that_exists_by_now_is_used_not_made_again(crm, tmp_path):
    """A trial: a copy of a plan applied on another machine made every `create_missing` tag a
    second time, and every row of the next upload then `names 2 tags`. A tag create whose
    title a tag holds by now takes that tag (one listing of the tags per run)."""
    t = parse_template({**TEMPLATE, "fields": {**TEMPLATE["fields"],
                                                "tags": {"column": "tags", "lookup": {"create_missing": True}}}},
                       path="t.yaml", sha256="x")
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,website,phone,tags\nA,a@x.example,,,VIP\nB,b@x.example,,,New\n", encoding="utf-8")
    client = Client(crm.url, TEST_KEY, requests_per_minute=None)
    p = plan(sheet, t, client)
    assert sorted(o.body["title"] for o in p.tag_creates()) == ["New", "VIP"]
    made = client.post("/tags", {"title": "vip"}).iri  # by a copy of the plan, elsewhere
    report = apply(p, client, journal_file=tmp_path / "j.jsonl", reconcile=False)
    tags = crm.store.all("tags", tenant="tenant-a")
    assert sorted(x["title"] for x in tags) == ["New", "vip"] and report.summary["tags_created"] == 1
    orgs = {o["title"]: o for o in crm.store.all("organizations", tenant="tenant-a")}
    assert orgs["A"]["tags"] == [made]
