"""The commands' library functions: import (plan + apply + report), plan, apply, validate.

Each returns plain data for the CLI to render; none prints except through the `echo` it is given.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import glob
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import polars as pl

from .apply import apply, dry_run_report, wait_for_stopped_writes
from .client import redact
from .errors import BulkcrmError, EmptyInputError, Issue, TemplateError, about, issues_frame
from .journal import journal_lock, journal_path, target_lock
from .mapping import check_optional_columns, map_rows
from .plan import Plan, check_matchable, column_notes, plan, render_plan
from .read import Sheet, file_sha256, read
from .copies import copy_format, write_issues
from .report import (Report, counts_by_resource, install_report, keep_earlier_report, render_summary,
                     set_aside_report, write_report)
from .target import Target
from .template import load_template, read_columns
from .validate import validate

Echo = Callable[[str], None]


def run_plan(file, template_path, target: Target, *, mode="upsert", strategy="auto", sheet=None,
             encoding=None, delimiter=None, header_row=None,
             mirror_notes=False) -> tuple[Plan, str]:
    """Plan FILE against the target; returns the plan (target label set) and its text.
    `mirror_notes` plans deletes of notes absent from the sheet (issue 8)."""
    template = load_template(template_path)
    sh = read(file, sheet=sheet, encoding=encoding, delimiter=delimiter, header_row=header_row,
              columns=read_columns(template))
    return _plan_sheet(sh, template, target, mode=mode, strategy=strategy, mirror_notes=mirror_notes,
                       checks=True)  # applied later (`apply PLAN`): it checks the records first


def _plan_sheet(sh: Sheet, template, target: Target, *, reconcile: bool = True, checks: bool = False,
                **kw) -> tuple[Plan, str]:
    p = plan(sh, template, target.client, **kw)
    p.target = target.label
    text = render_plan(p, requests_per_minute=target.client.requests_per_minute, reconcile=reconcile,
                       checks=checks)
    return p, redact(text, target.secrets)  # a cell holding the key is shown masked


def run_import(file, template_path, target: Target, *, report_dir: str, dry_run=False, reconcile=True,
               progress=True, echo: Echo = print, stops: list[dict] | None = None, **plan_kw) -> dict:
    """Plan and (unless dry run) apply FILE, write the report; returns {ok, json, report, dir}.

    The plan is saved as `<report_dir>/plan.json` before anything is written, so an interrupted
    import resumes with `bulkcrm apply <report_dir>/plan.json`. A run that stops after its
    checks writes its report so far and appends `{"report": path, "summary": …}` to `stops`.
    """
    template = load_template(template_path)
    read_kw = {k: plan_kw.pop(k, None) for k in ("sheet", "encoding", "delimiter", "header_row")}
    sh = read(file, **read_kw, columns=read_columns(template))  # once: the plan and the with-status copy use its cells
    out = Path(report_dir)
    # a run that writes plans under the target's lock: an overlapping run's creates are done
    # (and seen by this plan) or not begun, never both runs creating the same organizations
    with contextlib.nullcontext() if dry_run else target_lock(target.label):
        if not dry_run:  # a stopped run's unanswered create: made by now, so this plan matches it
            wait_for_stopped_writes(out / "plan.json", target.client, target.label)
        p, text = _plan_sheet(sh, template, target, reconcile=reconcile, **plan_kw)
        echo(text)
        if dry_run:
            report = dry_run_report(p)
        else:
            plan_path = out / "plan.json"
            with journal_lock(journal_path(plan_path)):  # no other import of this plan file meanwhile
                archive_journal(plan_path)
                p.save(plan_path)
                report = _apply(p, target, plan_path, reconcile=reconcile, progress=progress, batch_size=25,
                                echo=echo, fresh=True, on_stop=_on_stop(out, file, target, echo, stops, input_sheet=sh,
                                                                        notes_header_row=p.notes_header_row))
    return _finish(report, out, file, target, echo, input_sheet=sh, notes_header_row=p.notes_header_row,
                   plan_path=None if dry_run else out / "plan.json", remarks=p.notes)


def archive_journal(plan_path: str | Path) -> Path | None:
    """A new plan saved where an earlier one was: keep that plan's journal under a dated name
    (`plan.journal.<UTC time>.jsonl`, its last write), so the new plan applies from the start.

    Returns:
        The archived journal's new path, or None when there was none.

    Raises:
        JournalError: an apply of the earlier plan is still running (`journal.journal_lock`).
    """
    j = journal_path(Path(plan_path))
    if not j.exists():
        return None
    with journal_lock(j):  # not while an apply of that plan still writes to it
        stamp = dt.datetime.fromtimestamp(j.stat().st_mtime, dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        return j.rename(j.with_name(f"{j.stem}.{stamp}.jsonl"))


def run_apply(plan_file, target: Target, *, report_dir: str, batch_size=25, verify=False, reconcile=True,
              progress=True, echo: Echo = print, plan: Plan | None = None, limit: int | None = None,
              stops: list[dict] | None = None) -> dict:
    """Apply a saved plan (resuming from its journal) and write the report; `plan`: the file
    already loaded; `limit`: at most this many operations this run (`apply.apply`); `stops`:
    as `run_import`'s."""
    p = plan or Plan.load(plan_file)
    _say_input_changed(p, echo)
    report = _apply(p, target, plan_file, reconcile=reconcile, progress=progress, batch_size=batch_size,
                    verify=verify, echo=echo, limit=limit,
                    on_stop=_on_stop(Path(report_dir), p.input, target, echo, stops, sheet=p.sheet,
                                     planned_sha256=p.input_sha256, header_row=p.header_row,
                                     notes_header_row=p.notes_header_row))
    return _finish(report, Path(report_dir), p.input, target, echo, sheet=p.sheet, planned_sha256=p.input_sha256,
                   plan_path=plan_file, header_row=p.header_row, notes_header_row=p.notes_header_row)


def _apply(p: Plan, target: Target, plan_path, *, reconcile, progress, batch_size, verify=False,
           echo: Echo | None = None, fresh: bool = False, limit: int | None = None,
           on_stop: Callable[[Report], None] | None = None) -> Report:
    """`apply.apply` with a progress bar; a `fresh` plan (an import's) counts the requests its
    planning spent in the report's, whether the run ends or stops."""
    planning = p.requests_spent if fresh else 0
    throttled = target.client.throttled if fresh else 0  # the 429 answers planning got

    def counted(report: Report) -> Report:
        report.summary["requests"] += planning
        report.summary["throttled"] = report.summary.get("throttled", 0) + throttled
        return report

    def stopped(report: Report) -> None:
        if bar is not None:  # where it stopped, before the lines about the report so far
            bar.last_line(report.summary.get("left"), unsettled=_unsettled(report))
        on_stop(counted(report))
    bar = _progress_bar(len(p.operations)) if progress and p.operations else None
    try:
        report = apply(p, target.client, plan_path=plan_path, batch_size=batch_size, verify=verify,
                       reconcile=reconcile, target=target.label, progress=bar,
                       notify=echo if progress else None, fresh=fresh, limit=limit,
                       on_stop=stopped if on_stop else None)
    except BaseException:  # Ctrl-C, SIGTERM, an API that is down: a log shows where it stopped
        if bar is not None:
            bar.last_line()
        raise
    finally:
        if bar is not None:
            bar.close()
    if bar is not None:  # a run `limit` ended before the last operation: where it stopped
        bar.last_line(report.summary.get("left") or None)
    return counted(report)


class _progress_bar:
    """tqdm bar on stderr: done/total operations, requests, 429s seen, ETA. Drawn at the first
    update (apply's `0` before its first write), so a run refused before any operation (e.g. a
    plan for another target) shows none; closed at the last, so what follows starts on its own
    line. When stderr is not a terminal (a log, nohup, cron), a plain line instead: at the
    start, at most every `LOG_EVERY_S` seconds, and at the end."""

    LOG_EVERY_S = 30.0

    def __init__(self, total: int):
        self.total, self.bar = total, None
        self.log, self.first, self.start = not sys.stderr.isatty(), True, 0
        self.started = self.logged = time.monotonic()
        self.seen: tuple | None = None   # the last update (done, total, client)
        self.seen_at = self.started      # and when it came
        self.ended = False               # the stopped line is printed
        self.printed: int | None = None  # `done` of the last line printed
        self.samples: list[tuple[int, float]] = []   # (done, time) from this run's first operation

    def __call__(self, done: int, total: int, client) -> None:
        self.seen, self.seen_at = (done, total, client), time.monotonic()
        if self.log:
            now = self.seen_at
            if self.first:  # the operations an earlier run did: not this run's pace
                self.start = done
            elif done > (self.samples[-1][0] if self.samples else self.start):  # the pace counts from the
                self.samples.append((done, now))  # first operation: it may wait for planning's requests
            if done == total and self.printed == total:  # said already (a plan an earlier run did)
                return
            if self.first or done == total or now - self.logged >= self.LOG_EVERY_S:
                self.logged, self.first = now, False
                self._print(done, total, client)
            return
        if self.bar is None:  # started at the first batch: its rate counts from there
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, initial=done, unit="op", desc="apply", leave=True)
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix(requests=client.requests_sent, throttled=client.throttled)
        if done == total:
            self.close()

    def _print(self, done: int, total: int, client, *, last: bool = False, left: int | None = None,
               unsettled: dict[str, int] | None = None) -> None:
        self.printed, now = done, self.seen_at if last else time.monotonic()
        # a pace over a window's worth of operations, or of time when they come slower than
        # the rate allows (a trial's slow server at --max-rate 1000 never got one): right after
        # the first window's burst, one operation's wait for a slot is no pace (a trial: 28 s an
        # operation); over the last such stretch only, so a one-off wait (a resume's for a
        # stopped write) is soon forgotten (without a rate limit, since the first operation)
        rate, window_s = getattr(client, "requests_per_minute", None), getattr(client, "window_s", 60.0)
        back = range(len(self.samples) - 1, -1, -1) if rate else range(min(len(self.samples), 1))
        i = next((i for i in back if done - self.samples[i][0] >= (rate or 1)
                  or (rate and now - self.samples[i][1] >= window_s)), None)
        per_op = None
        if i is not None:
            del self.samples[:i]  # older ones are never needed again
            per_op = (now - self.samples[0][1]) / (done - self.samples[0][0])
        print(_progress_line(done, total, client, now - self.started, per_op, stopped=last, left=left,
                             unsettled=unsettled), file=sys.stderr, flush=True)

    def last_line(self, left: int | None = None, unsettled: dict[str, int] | None = None) -> None:
        """A log's line of the last update (a stopped run's count; apply gives one as it stops),
        as of that update, with what is left for the next run instead of a time (`left`: the
        stopped report's count, which leaves out what drifted or failed; `unsettled`:
        `_unsettled`'s, neither done nor left): nothing runs any more.
        Once only; not when the run's last line said it all. A terminal's bar shows it already."""
        if not self.log or self.seen is None or self.ended:
            return
        if self.seen[0] != self.printed or left or unsettled:
            self.ended = True
            self._print(*self.seen, last=True, left=left, unsettled=unsettled)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _unsettled(report: Report) -> dict[str, int]:
    """A stopped run's operations that are neither done nor left for the next run to start:
    `unconfirmed` (sent, no answer yet: the next run checks whether they took effect) and
    `failed` (the next run sends them again), by count, those that are not zero."""
    return {k: n for k, n in (("unconfirmed", report.summary.get("unconfirmed_to_check", 0)),
                              ("failed", report.summary.get("failed_to_retry", 0))) if n}


_UNSETTLED = {"unconfirmed": "sent but not confirmed, which the next run checks",
              "failed": "failed, which the next run sends again"}


def _progress_line(done: int, total: int, client, elapsed_s: float, per_op_s: float | None = None,
                   stopped: bool = False, left: int | None = None,
                   unsettled: dict[str, int] | None = None) -> str:
    """`apply: 25/200 operations, 27 requests (0 throttled), 1.3 min, about 9.1 min left`; the
    time left at this run's pace (`per_op_s`: seconds per operation over its last window's worth
    of operations, `_progress_bar._print`; None before there is one), and at least what the client's rate allows (the first
    window's requests go out at once); without a pace, what the rate allows. A `stopped` run
    (Ctrl-C, `--limit`) says how many operations it leaves for the next run instead (`left`,
    else all not done), and those `unsettled` (`_unsettled`: done + left + these + the drifted
    ones = total)."""
    rate = getattr(client, "requests_per_minute", None)
    if stopped:
        n = total - done - sum((unsettled or {}).values()) if left is None else left
        left_text = f", {n} left for the next run" if n else ""
        also = [f"{count} {_UNSETTLED[what]}" for what, count in (unsettled or {}).items()]
        if also:
            left_text += ("; " if n else ", ") + " and ".join(also)
        return (f"apply: {done}/{total} operations, {client.requests_sent} requests "
                f"({client.throttled} throttled), {elapsed_s / 60:.1f} min{left_text}")
    at_rate = (total - done) / rate if rate else 0.0
    paced = per_op_s * (total - done) / 60 if per_op_s is not None else 0.0
    left = (f", about {max(paced, at_rate):.1f} min left" if per_op_s is not None and done < total
            else f", about {at_rate:.1f} min at {rate:g}/min" if done < total and rate else "")
    return (f"apply: {done}/{total} operations, {client.requests_sent} requests "
            f"({client.throttled} throttled), {elapsed_s / 60:.1f} min{left}")


def _write(report: Report, out: Path, input_path, target: Target, echo: Echo, *,
           input_sheet: Sheet | None = None, sheet=None, planned_sha256: str | None = None,
           header_row: int | None = None, notes_header_row: int | None = None) -> None:
    """Write `report` and the input's with-status copy into `out` (`report.write_report`).

    Raises:
        OSError: a file could not be written."""
    if input_sheet is None:  # apply of a saved plan: its input again, for the write-back copy
        input_sheet = _planned_input(input_path, sheet, planned_sha256, echo, header_row)
    if input_sheet is None and input_path:  # an earlier run's copy would not match this report
        for old in out.glob(f"{glob.escape(Path(input_path).stem)}.with-status.*"):
            old.unlink()
    write_report(report, out, input_sheet=input_sheet, input_path=input_path, secrets=target.secrets,
                 other_sheets=_other_sheets(report, input_path, notes_header_row) if input_sheet is not None else None,
                 input_csv=copy_format(input_sheet.encoding, input_sheet.delimiter) if input_sheet else None)


def _on_stop(out: Path, input_path, target: Target, echo: Echo, stops: list[dict] | None,
             **input_kw) -> Callable[[Report], None]:
    """apply's `on_stop`: the stopped run's report replaces the previous run's in `out`, so the
    folder never shows an earlier run's outcome for this one; `stops` (when given) gets its
    path and summary (the CLI's `--json` gives them).

    The report is written into `out/.report-so-far/` first and then moved in (a few renames,
    which Ctrl-C waits for: `_signals_held`). Ctrl-C pressed again while it is written (or a
    file that cannot be written) leaves `out` as it was; its report, an earlier run's, is then
    set aside to `earlier/` (`report.set_aside_report`) and the output says so."""
    def write(report: Report) -> None:
        staging = out / STAGING
        try:
            shutil.rmtree(staging, ignore_errors=True)  # a cut run's
            _write(report, staging, input_path, target, echo, **input_kw)
        except BaseException:
            with _signals_held():
                shutil.rmtree(staging, ignore_errors=True)
                moved = set_aside_report(out) if out.is_dir() else None
                echo(f"The run stopped before its report so far was written, so {out} holds none"
                     + (f" (the earlier one is in {moved})" if moved else "")
                     + "; the journal keeps what the run did, and the resume writes the report.")
            raise
        with _signals_held():
            keep_earlier_report(out, report.summary)  # another plan's: kept in earlier/
            install_report(staging, out)
        echo(f"The run stopped; its report so far (done, and planned: not yet applied) is in {out}.")
        if stops is not None:
            stops.append({"report": str(out / "report.json"), "summary": report.full_summary()})
    return write


STAGING = ".report-so-far"
"""The folder inside the report folder where a stopped run's report is written before it is
moved in (`_on_stop`)."""


@contextlib.contextmanager
def _signals_held():
    """Defer Ctrl-C and SIGTERM for the block: meanwhile their handlers only note them, and the
    first one noted is raised again when it ends (main thread only, where Python runs signal
    handlers; elsewhere a no-op). Blocking the signal would not do: the OS gives it to any
    thread that does not block it, such as polars' workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    before = {s: signal.signal(s, lambda n, _frame: noted.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if noted:
            signal.raise_signal(noted[0])


def _finish(report: Report, out: Path, input_path, target: Target, echo: Echo, *,
            input_sheet: Sheet | None = None, sheet=None, planned_sha256: str | None = None,
            plan_path=None, header_row: int | None = None, notes_header_row: int | None = None,
            remarks: list[str] | None = None) -> dict:
    """Write the report, say its summary; `{ok, json, report, dir}`, the JSON holding the counts,
    requests and the plan's `remarks` (an import's: a scheduled job's `--json` sees its notes)."""
    try:
        _write(report, out, input_path, target, echo, input_sheet=input_sheet, sheet=sheet,
               planned_sha256=planned_sha256, header_row=header_row, notes_header_row=notes_header_row)
    except OSError as e:  # the writes are done: say what they did, and how to get the report
        echo(render_summary(report))
        if report.summary.get("dry_run") or plan_path is None:
            raise
        raise OSError(e.errno, f"{e.strerror}; the run is done (the counts above) but its report could not "
                      f"be written: `bulkcrm apply {plan_path} --report <another folder>` writes it and "
                      "sends nothing", e.filename) from None
    echo(render_summary(report, out_dir=out))
    done = report.summary.get("already_done")  # by an earlier, stopped run of the plan
    if done:
        echo(f"({done} operation(s) had been done by an earlier run of this plan and were skipped; "
             "the counts are the plan's, not this run's)")
    payload = report.counts()  # every COUNT_KEYS key, then the other outcomes seen
    if parts := counts_by_resource(report):
        payload["by_resource"] = parts
    if report.summary.get("tags_created"):
        payload["tags_created"] = report.summary["tags_created"]
    payload["requests"] = report.summary.get("requests", 0)
    if report.summary.get("throttled"):  # 429 answers, each waited out and sent again
        payload["throttled"] = report.summary["throttled"]
    if "left" in report.summary:  # apply --limit: operations the next run does
        payload["left"] = report.summary["left"]
    payload["report"] = str(out)
    if remarks:
        payload["remarks"] = remarks
    if done:
        payload["already_done"] = done
    return {"ok": report.ok, "json": payload, "report": report, "dir": out}


def _say_input_changed(p: Plan, echo: Echo) -> None:
    """Say before any write when the plan's input has changed since it was planned (same path,
    other bytes): the plan's rows are what is applied, not the file's now (a trial learnt it
    only from the note after the writes)."""
    path = Path(p.input) if p.input else None
    if path is None or not p.input_sha256 or not path.is_file():
        return
    if file_sha256(path) not in ("", p.input_sha256):
        echo(f"note: {path.name} has changed since it was planned; the plan is applied as it was made "
             "(its rows, not the file's now); plan the file again to apply what it holds now")


def _planned_input(input_path, sheet, planned_sha256: str | None, echo: Echo,
                   header_row: int | None = None) -> Sheet | None:
    """The plan's input as read again (its sheet, from the header row planning read) for the
    with-status copy, or None: gone,
    unreadable, or changed since planning (rows sorted, added or fixed meanwhile: its row N
    need no longer be the plan's row N, and the copy would give rows other rows' IRIs)."""
    if not input_path:
        return None
    if not Path(input_path).exists():
        echo(f"note: the plan's input {input_path} is not found from here, so no with-status copy is written")
        return None
    try:
        sh = read(input_path, sheet=sheet, header_row=header_row)
    except BulkcrmError:  # the write-back copy is a convenience; the report must be written
        return None
    if planned_sha256 and sh.sha256 != planned_sha256:
        echo(f"note: {Path(input_path).name} has changed since it was planned, so no with-status "
             "copy is written (its rows need no longer be the plan's rows); the report's row numbers "
             "are those of the file as planned; plan the file again for a copy of it")
        return None
    return sh


def _other_sheets(report: Report, input_path, header_row: int | None = None) -> dict[str, Sheet | None]:
    """The workbook's other sheets the run read (a notes sheet beside the organizations'), as
    read (from `header_row`, planning's: `Plan.notes_header_row`), for the with-status copy:
    None for a blank one (a week without notes: the copy keeps it blank, so it imports again);
    a sheet that cannot be read again is left out."""
    names = report.rows["sheet"].drop_nulls().unique(maintain_order=True).to_list() if report.rows.height else []
    names = names[1:]  # the first is the input sheet's (the organizations come first)
    notes = report.summary.get("notes_sheet")
    names += [notes] if notes and not any(n.casefold() == notes.casefold() for n in names) else []
    out: dict[str, Sheet | None] = {}
    for name in names:
        try:
            out[name] = read(input_path, sheet=name, header_row=header_row)
        except EmptyInputError:
            out[name] = None
        except BulkcrmError:
            continue
    return out


def _with_notes(issues: pl.DataFrame, sh: Sheet, notes, file) -> tuple[pl.DataFrame, dict, dict, str]:
    """`run_validate`'s notes part (`Template.notes`): the organizations' `issues` (ISSUE_SCHEMA)
    with the notes' after them, naming their resource; the notes sheet when it is another
    sheet ({name: Sheet}, for the issues copy); the notes' `rows` and `invalid_rows`; the line
    the text shows."""
    from .notes import empty_notes_sheet, read_notes_sheet, validate_notes
    notes_sheet = sh if notes.sheet is None else read_notes_sheet(
        file, notes.sheet, notes.template.path if notes.template else None, columns=read_columns(notes.template))
    if notes_sheet is None:
        return issues, {}, {"rows": 0, "invalid_rows": 0}, f"notes: {empty_notes_sheet(notes.sheet)}"
    _, mapped, _, checked = validate_notes(notes_sheet, notes.template, same_rows=notes.sheet is None)
    mine = checked.issues.with_columns(pl.lit("organization_notes").alias("resource"))
    issues = pl.concat([issues, mine]).sort(  # the organizations' sheet first, then by row
        pl.col("sheet").ne_missing(pl.lit(sh.sheet_name, pl.String)), "row_number", "column",
        nulls_last=True, maintain_order=True)
    own_sheet = notes.sheet is not None
    line = (f"notes: {mapped.height} note row(s), {len(checked.invalid_rows)} invalid"
            + (f" (sheet {notes_sheet.sheet_name})" if own_sheet else ""))
    return (issues, {notes_sheet.sheet_name: notes_sheet} if own_sheet else {},
            {"rows": mapped.height, "invalid_rows": len(checked.invalid_rows)}, line)


def run_validate(file, template_path, *, sheet=None, encoding=None, delimiter=None, header_row=None,
                 report_dir=None, secrets=()) -> dict:
    """Validate FILE offline (no lookups): {summary: {valid, rows, errors, warnings, issues}, text}.
    An organizations template's `notes:` are validated too, from the same rows or their own
    sheet (`summary["notes"]`: that sheet's `rows` and `invalid_rows`). `secrets`: API keys
    the report's files mask (the caller masks the summary and text it shows)."""
    template = load_template(template_path)
    sh = read(file, sheet=sheet, encoding=encoding, delimiter=delimiter, header_row=header_row,
              columns=read_columns(template))
    notes, full = template.notes, template
    template, absent = template.for_columns(sh.frame.columns)  # optional columns the sheet lacks
    check_optional_columns(sh.frame.columns, absent, full, sh.path, sh.header_row)
    refused = None  # what `plan` would refuse in its default mode (upsert), said here already
    try:
        if template.resource == "organizations":
            check_matchable(full, template, absent, sh, "upsert")
    except TemplateError as e:
        refused = f"template warning: {e} (plan and import refuse it unless --mode create-only)"
    name = Path(file).name
    where = f"{name}!{sh.sheet_name}" if sh.sheet_name else name
    result = validate(map_rows(sh.frame, template, path=where, header_row=sh.header_row,
                               other_sheets=sh.other_sheets), template, sheet=sh.frame,
                      read_issues=sh.issues, file=name, sheet_name=sh.sheet_name, letters=sh.letters,
                      numbers=sh.numbers)
    # each issue names its resource, except what the reader found (about the whole row)
    issues = issues_frame(about(template.resource, [Issue(**r) for r in result.issues.to_dicts()], sh.issues))
    others, lines = {}, []
    summary = {"rows": sh.frame.height, "invalid_rows": len(result.invalid_rows)}
    if notes is not None and notes.template is not None:  # an organizations template's `notes:`
        issues, others, summary["notes"], line = _with_notes(issues, sh, notes, file)
        lines.append(line)
    errors = issues.filter(issues["severity"] == "error").height
    if report_dir:
        write_issues(issues, report_dir, input_sheet=sh, input_path=file, other_sheets=others, secrets=secrets)
    lines.insert(0, f"{name}: {sh.frame.height} rows, {len(result.invalid_rows)} invalid, "
                    f"{errors} error(s), {issues.height - errors} warning(s), each row checked on its own "
                    "(rows sharing an identifier or a record are found by plan, which reads the CRM)")
    columns = column_notes(sh, full, template, absent)
    lines[1:1] = [refused] * bool(refused) + [f"  note: {n}" for n in columns]
    # errors first: a big sheet's many warnings must not push the rows that block out of sight
    shown = issues.sort(pl.col("severity") != "error", maintain_order=True).head(100)
    lines += [f"  {r['severity']}: {r['message']}" for r in shown.iter_rows(named=True)]
    if issues.height > 100:
        lines.append(f"  … {issues.height - 100} more" + (f" in {report_dir}" if report_dir else
                                                              " (--report DIR writes them all)"))
    if report_dir:
        lines.append(f"Issues written to {report_dir}")
    summary = {"valid": errors == 0, **summary, "errors": errors, "warnings": issues.height - errors,
               "issues": issues.to_dicts(), "column_notes": columns,
               **({"template_warning": refused} if refused else {})}
    return {"summary": summary, "text": "\n".join(lines)}


__all__ = ["run_import", "run_plan", "run_apply", "run_validate"]
