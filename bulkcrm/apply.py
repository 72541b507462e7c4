"""Stage 5: apply exactly a saved plan, journalled and resumable; then reconcile.

Input: a `Plan` and a `Client`. Output: a `report.Report` (one row per input row).

- Every write is journalled (sent, then done/failed/drifted) and fsynced; re-running apply on
  the same plan skips done operations and resolves one left in `sent` by a lookup on its
  identifiers, or among the records created since it was sent that no other operation
  claimed, before resending, so a create is never duplicated (issue 6).
- Pacing and retries live in the client (crm-api.md §4); a row whose write fails after its
  retries is `failed` and the run goes on. 401/403 stop the run (AuthError).
- `verify=True` re-reads a record before writing; a record whose touched fields changed since
  planning is not overwritten (`drifted`).
- A saved plan with organization creates is checked first (one request) for organizations
  others created since it was made (another import, the CRM's own screens); those are listed
  and a create that has an identifier of one of them is `drifted`, not sent (a duplicate);
  the other creates go ahead. When that check would cost more than `RECENT_MAX_REQUESTS`,
  the plan is refused (PlanError) unless `verify` looks each create's identifiers up. Its
  updates are checked too: the records they write are re-read together, and one whose record
  changed since in a field it sends is `drifted`. `bulkcrm import` applies the plan it has just
  made (`fresh`) without these checks.
- Reconciliation re-reads the touched records (`identifiers[]` 30 at a time, else one GET each)
  and notes every field the server holds differently from what was sent. Notes are checked
  against the server's answer to their write (no extra request).
- Notes (issue 8): a note of an organization created by this plan has the path
  `$ref:row:<n>/notes`, filled from the journal; it depends on `row:<n>` and fails, never
  posted elsewhere, when that create failed. A lost create answer is resolved by listing the
  organization's notes and matching the content key. Mirror deletes send DELETE; a 404 means
  the note is gone already.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import re
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import polars as pl

from .client import Client
from .diff import WRITE_ONLY, canon, raw_records_frame
from .errors import ApiError, AuthError, ISSUE_SCHEMA, PermanentApiError, PlanError, TransientApiError, \
    UncertainWriteError
from .journal import Journal, journal_lock, journal_path, lock_dir, peek, target_key, target_lock
from .lookups import REF_PREFIX
from .match import BATCH, count_records, identifiers_schema, lookup_records, record_identifiers
from .plan import Operation, Plan
from .planfile import (NOTE_CHECKS_MAX, copy_checked, drift_checked, note_owner_iri, now_utc, quoted_names,
                       replace_quoted, searchable_values, without_searchable)
from .report import ROW_SCHEMA, Report
from .template import IDENTIFIER_KINDS, SEARCHABLE_IDENTIFIERS
from .transforms import normalize_identifier
from .vocab import OP_OUTCOME

ProgressFn = Callable[[int, int, Client], None]
log = logging.getLogger(__name__)


def apply(plan: Plan, client: Client, *, plan_path: str | Path | None = None,
          journal_file: str | Path | None = None, batch_size: int = 25, verify: bool = False,
          reconcile: bool = True, progress: ProgressFn | None = None, target: str | None = None,
          notify: Callable[[str], None] | None = None, fresh: bool = False,
          limit: int | None = None, on_stop: Callable[[Report], None] | None = None) -> Report:
    """Execute the plan's operations in order and report per input row.

    Args:
        plan: the plan (as saved by `bulkcrm plan`). client: target API client.
        plan_path: where the plan file is; the journal defaults to `<plan>.journal.jsonl`.
        journal_file: explicit journal path (an in-memory plan without a file needs one).
        batch_size: operations between progress callbacks (the journal is fsynced per line).
        verify: re-read each record before writing it (drift check; one GET per update), and
            look each organization create's identifiers up first (`_exists_now`).
        reconcile: re-read touched records after the run and report mismatches (not when an
            earlier run of the plan did every operation: this one writes nothing).
        progress: callback(done, total, client): before the first write (done: the operations
            an earlier run of the plan did), then every `batch_size` operations or
            `PROGRESS_EVERY_S` seconds, whichever comes first, and at the end; a run that
            stops (Ctrl-C, an exception) gives one more with the operations done by then.
        target: the target label the plan must name (default `client.base_url`).
        notify: callback(text) for phase messages (e.g. reconciliation starting).
        fresh: the plan was made moments ago by this process (`bulkcrm import`): it is not
            checked for organizations created since (`_check_created_since`), nor its
            updates for records changed since (`_check_changed_since`; without `verify`,
            which checks each update as it is sent).
        limit: send at most this many of the operations still to do (a pilot of a big plan);
            the rest are `planned` in the report (`Report.summary["left"]`) and the next run
            of the plan does them, as it resumes a stopped one (the journal).
        on_stop: callback(report) when the run stops (Ctrl-C, SIGTERM, an API that is down,
            a rejected key) after its checks: the report so far (done, failed and drifted as
            the journal says, the write in flight `unconfirmed`, every operation not tried yet
            `planned`; `Report.summary["stopped"]`), so the folder's report is this run's, not
            the previous one's; then the stop propagates.

    Returns:
        `Report`; rows that failed, drifted, conflicted or were invalid make `Report.ok` False.

    Raises:
        PlanError: the plan was made for another target, or is a copy of a plan applied
            before on this machine (`_check_copy`), or (without `verify`) it has
            organization creates to do and checking them against the organizations others
            created since it was made would take more than `RECENT_MAX_REQUESTS` requests.
        JournalError: the journal belongs to another plan. BusyError (a JournalError):
            another process is applying this plan (`journal.journal_lock`) or writing to
            this target from this machine (`journal.target_lock`); nothing was sent.
        AuthError: the key was rejected (401/403); the journal keeps what was done.
        TransientApiError: the API is down (no answer, or 502/503/504 after the client's
            retries); the journal keeps what was done, and the operation stays `sent`.
        KeyboardInterrupt: passes through after the journal is flushed (it is, per line).
    """
    target = target or client.base_url
    if target_key(plan.target) != target_key(target):  # `localhost` is 127.0.0.1 (a review)
        from .target import EMBEDDED_PREFIX
        to_it = ("run apply without --base-url and a key (BULKCRM_API_KEY) to use that sandbox"
                 if plan.target.startswith(EMBEDDED_PREFIX) else
                 f"pass --base-url {plan.target} and its key (BULKCRM_API_KEY) to apply it there")
        raise PlanError(f"the plan was made for {plan.target}, not {target}: {to_it}, or plan "
                        "again against this target")
    if client.requests_sent == 0 and plan.requests_spent:  # a plan made by another process:
        # its requests still fill the tenant's window; taken as sent at the end of planning
        made = dt.datetime.fromisoformat(plan.created_at).timestamp() + 1  # to the second
        client.count_earlier(plan.requests_spent, made)
    jpath = journal_file or (journal_path(plan_path) if plan_path else None)
    if jpath is None:
        raise PlanError("apply needs plan_path or journal_file to keep its journal")
    # one apply per plan (a second would send it all again), one writer per target on this
    # machine (an overlapping run would create the same organizations)
    with journal_lock(jpath), target_lock(target):
        journal = Journal(jpath, plan.sha256, plan.target, plan.created_at)
        if plan_path is not None:
            if not journal.entries:  # its first run: is it a copy of a plan applied before?
                _check_copy(plan, Path(jpath))
            _remember_applied(plan, Path(plan_path), Path(jpath))
        return _apply(plan, client, journal, plan_path=plan_path,
                      batch_size=batch_size, verify=verify, reconcile=reconcile, progress=progress,
                      notify=notify, fresh=fresh, limit=limit, on_stop=on_stop)


def _applied_file(plan: Plan) -> Path:
    """Where this machine notes which plan file and journal applied `plan` (`Plan.plan_id`):
    the user's cache folder (`journal.lock_dir`'s), a small JSON file per plan."""
    return lock_dir().parent / "applied" / f"{plan.plan_id}.json"


def _check_copy(plan: Plan, jpath: Path) -> None:
    """Refuse the first run of a copy of a plan another file of it has applied on this machine
    (its journal holds writes): the copy's journal is new, so it would send every write again,
    and an update would undo what was changed since, its fields holding what the plan saw (a
    trial: a copy undid a later import that had set a website back). Copies on another
    machine are not seen; their creates and notes are still checked against the server
    (`_check_created_since`, `_check_notes_created_since`).

    Raises:
        PlanError: naming the plan file and journal that applied it.
    """
    try:
        seen = json.loads(_applied_file(plan).read_text(encoding="utf-8"))
        other = Path(seen["journal"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    keys = {o.key for o in plan.operations}  # not the journal's own entries (checks, reconciliation)
    if other == jpath.resolve() or not any(e.get("state") in ("sent", "done") for k, e in peek(other)[1].items()
                                           if k in keys):
        return
    raise PlanError(f"this plan (made {plan.created_at}) was applied before as {seen.get('plan')} (journal {other}); "
                    "this copy would send its writes again, over what was changed since: apply that file to "
                    "resume it, or plan again")


def _remember_applied(plan: Plan, plan_path: Path, jpath: Path) -> None:
    """Note which plan file and journal apply `plan` (`_check_copy`); a cache that cannot be
    written only loses that check."""
    f = _applied_file(plan)
    with contextlib.suppress(OSError):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"plan": str(plan_path.resolve()), "journal": str(jpath.resolve())}), encoding="utf-8")


def _apply(plan: Plan, client: Client, journal: Journal, *, plan_path: str | Path | None,
           batch_size: int, verify: bool, reconcile: bool, progress: ProgressFn | None,
           notify: Callable[[str], None] | None, fresh: bool = False, limit: int | None = None,
           on_stop: Callable[[Report], None] | None = None) -> Report:
    """`apply` once it holds the journal."""
    for t in journal.send_times():  # an interrupted run's last writes still fill the window
        client.count_earlier(1, t, exact=True)
    start_requests, start_throttled, started = client.requests_sent, client.throttled, now_utc()
    earlier = _done(plan, journal)  # by an earlier, stopped run of the plan

    def stopped() -> None:  # the report so far replaces the folder's previous one (`on_stop`)
        if on_stop:
            with contextlib.suppress(BaseException):  # the stop itself is what propagates
                report = _stopped_report(plan, journal, client.requests_sent - start_requests, started,
                                         plan_path, earlier)
                report.summary["throttled"] = client.throttled - start_throttled
                on_stop(report)
    try:  # stopped during the checks (Ctrl-C, SIGTERM, the API): nothing of this run written yet
        made: dict[str, str] = {}  # a drifted create's record, when one alone holds what it names
        taken = {} if fresh else _check_created_since(plan, journal, client, verify, made) | \
            _check_notes_created_since(plan, journal, client, verify)
        held: set[str] = set()  # updates whose record holds what they send already: not sent
        if not fresh and not verify:  # a saved plan: records others changed since are not overwritten
            drifted, held = _check_changed_since(plan, journal, client)
            taken |= drifted
    except (KeyboardInterrupt, ApiError):
        stopped()
        raise
    if client.requests_sent > start_requests:  # the checks' reads fill the window of a resume too,
        # each run's under a key of its own (one key: a later run's replaced an earlier one's)
        journal.record(f"{CHECKS_KEY}@{time.time():.6f}", "read", requests=client.requests_sent - start_requests)
    results: dict[str, Any] = {}  # key -> the server's answer to a write of this run
    total = len(plan.operations)
    already = _done(plan, journal)
    # an earlier run wrote all it could (done, or drifted: a drift stays): nothing left to write
    settled = all(journal.state(o.key) in ("done", "drifted") for o in plan.operations)
    if progress and total:  # shown before the first write, which may wait for the rate limit
        progress(already, total, client)
    shown = time.monotonic()
    left: list[str] = []  # operations `limit` leaves for the next run
    doubtful: list[Operation] = []  # creates whose POST got no answer: looked up once more at the end
    try:
        for n, op in enumerate(plan.operations, start=1):
            todo = journal.state(op.key) not in ("done", "drifted")
            if todo and limit is not None and len(results) >= limit:
                left.append(op.key)
            elif op.key in taken and journal.state(op.key) != "done":  # its record exists now
                journal.record(op.key, "drifted", detail=taken[op.key], iri=made.get(op.key))
            elif op.key in held and todo:
                _record_held(op, journal)
            elif todo:
                results[op.key] = _run_op(op, journal, client, verify)
                if results[op.key] is IN_DOUBT:
                    doubtful.append(op)
            if progress and (n % batch_size == 0 or n == total or time.monotonic() - shown >= PROGRESS_EVERY_S):
                progress(n - len(left), total, client)  # what `limit` leaves is not done
                shown = time.monotonic()
        if doubtful:
            _settle(plan, doubtful, journal, client, verify, results)
    except BaseException:  # stopped (Ctrl-C, SIGTERM, an API that is down): how far it got
        if progress and total:
            with contextlib.suppress(BaseException):  # the stop itself is what propagates
                progress(_done(plan, journal), total, client)
        stopped()
        raise
    finished = journal.state(RECONCILED_KEY) in ("done", "skipped")  # an earlier run's end
    # an earlier run did it all and re-read it: its reconciliation stands (a run again neither
    # re-reads nor forgets it: a torture test's report lost the earlier mismatches)
    earlier_check = journal.get(RECONCILED_KEY) if finished and settled else None
    if reconcile and total and settled and finished:  # an earlier run did it all: nothing
        reconcile = False  # to re-read (it would also report later edits by others as mismatches)
        if notify:
            notify("Every operation was done (or drifted) by an earlier run of this plan: nothing written, "
                   "nothing re-read; its report is rebuilt from the journal.")
    if reconcile and notify and _done(plan, journal):  # nothing written (all drifted): nothing to re-read
        notify(_reconciling(plan))
    mismatches: dict[str, str] = {}
    if reconcile:
        before = client.requests_sent
        journal.record(RECONCILED_KEY, "pending", requests=0)  # a stop while re-reading leaves it
        try:  # the writes are done: a stop writes the report so far, and a resume re-reads
            mismatches = {**_reconcile(plan, journal, client), **_reconcile_notes(plan, results)}
        except BaseException:
            stopped()
            raise
        journal.record(RECONCILED_KEY, "done", requests=client.requests_sent - before,
                       mismatches=mismatches or None)
    elif not left and earlier_check is None:  # --no-reconcile: a later run of the finished plan
        journal.record(RECONCILED_KEY, "skipped", requests=0)  # re-reads nothing either
    reconciled = reconcile
    if earlier_check is not None and earlier_check.get("state") == "done":
        reconciled, mismatches = True, earlier_check.get("mismatches") or {}
    report = _report(plan, journal, mismatches, client.requests_sent - start_requests, started, reconciled,
                     left=set(left))
    report.summary["already_done"] = already
    report.summary["throttled"] = client.throttled - start_throttled  # 429 answers, each waited out
    if limit is not None:
        report.summary["left"] = len(left)
    report.summary["plan"] = str(plan_path) if plan_path else None  # the Summary sheet names it
    return report


def _stopped_report(plan: Plan, journal: Journal, requests: int, started: str,
                    plan_path: str | Path | None, earlier: int = 0) -> Report:
    """The report of a run that stopped: what the journal says is done, drifted or failed, an
    operation left `sent` `unconfirmed` (the resume settles it), every one not tried yet `planned`;
    `earlier`: operations done by earlier runs of the plan (`already_done`, as a finished
    run's report says); `failed_to_retry`: the failed ones, which the next run sends again;
    `unconfirmed_to_check`: those sent without an answer, which the next run looks up first."""
    left = {o.key for o in plan.operations if journal.state(o.key) in (None, "pending")}
    failed = sum(journal.state(o.key) == "failed" for o in plan.operations)  # the next run tries them again
    sent = sum(journal.state(o.key) == "sent" for o in plan.operations)  # the next run looks them up
    report = _report(plan, journal, {}, requests, started, False, left=left,
                     left_note="not applied yet: the run stopped; apply the plan again to do it")
    report.summary |= {"stopped": True, "left": len(left), "plan": str(plan_path) if plan_path else None,
                       "already_done": earlier, "failed_to_retry": failed, "unconfirmed_to_check": sent}
    return report


def _reconciling(plan: Plan) -> str:
    """What reconciling does for this plan: organizations are re-read (`_reconcile`), notes
    compared with the server's answers to their writes (`_reconcile_notes`)."""
    resources = {o.resource for o in plan.operations if o.path != "/tags"}
    orgs = "re-reading the written organizations" if "organizations" in resources else ""
    notes = ("comparing the written notes with the server's answers to their writes"
             if "organization_notes" in resources else "")
    return f"Reconciling: {'; '.join(filter(None, (orgs, notes))) or 'nothing written'} (--no-reconcile skips this) …"


def _done(plan: Plan, journal: Journal) -> int:
    """Operations of `plan` the journal has done (by this run or an earlier one)."""
    return sum(journal.state(o.key) == "done" for o in plan.operations)


PROGRESS_EVERY_S = 5.0
"""Seconds between progress callbacks at the most, whatever the batch size: at 20 requests a
minute a batch of 25 takes over a minute."""


NOT_MADE = "an earlier POST got no answer or failed, and no record holds what it sent: to send"
"""Journal detail of a create `_check_created_since` looked up and did not find (`pending`)."""
RECENT_SKEW_S = 60
"""Seconds before a plan's matching began from which `_check_created_since` lists the
organizations created (the server's clock may be behind ours)."""
RECENT_MAX_REQUESTS = 100
"""Most requests `_check_created_since` spends listing the organizations others created since a
plan (3,000 records), beyond the pages of the plan's own creates done so far, which the listing
holds too (a resume of a long migration: a trial's 4,000 made 134 requests of a listing of one
other record); beyond, the plan is refused: planning again costs no more."""


def _check_created_since(plan: Plan, journal: Journal, client: Client, verify: bool,
                         made: dict[str, str] | None = None) -> dict[str, str]:
    """key -> why, of the organization creates that organizations created since the plan
    already hold (one of the create's identifiers, compared normalised as planning does):
    sending them would make duplicates. One request (`createdAt[after]`, a one-item
    page, crm-api.md §6-7) when creates are still to do; when others created organizations
    since, ⌈those / 30⌉ more to list them, or, when fewer, `identifiers[]` lookups of the
    creates' identifiers (⌈values / 30⌉, crm-api.md §8.3; identifiers with an API filter
    only). "Since" is from `RECENT_SKEW_S` before the plan's matching began (`Plan.matched_at`), so a record made while the plan was made counts too.
    With `verify` nothing is listed: each create looks its identifiers up before it is sent
    (`_exists_now`). Creates a stopped run left `sent` are looked up first (`_resolve_sent`):
    only the plan's creates known done are subtracted from the organizations created since, so
    one that never reached the server cannot hide a record someone else made.

    `made` (when given) gets key -> IRI of a drifted create whose one record was found: the
    report gives it as the row's record, so the with-status copy names it.

    Raises:
        PlanError: without `verify`, when finding them would take more than
            `RECENT_MAX_REQUESTS` requests beyond the pages of the plan's own creates.
    """
    since = dt.datetime.fromisoformat(plan.matched_at or plan.created_at).astimezone(dt.timezone.utc)
    todo = [o for o in plan.operations if _is_org_create(o) and journal.state(o.key) != "done"]
    for o in [o for o in todo if _maybe_made(journal.get(o.key))]:  # an earlier run's, in doubt:
        if not _resolve_sent(o, journal, client):  # the plan's own record, or never made: then
            journal.record(o.key, "pending", detail=NOT_MADE)  # checked below and sent as any other
    todo = [o for o in todo if journal.state(o.key) != "done"]
    if not todo:
        return {}
    ours = sum(_is_org_create(o) and journal.state(o.key) == "done" for o in plan.operations)
    # from before matching began (`createdAt` is the server's clock): records the plan saw may
    # be listed too, and cost a request; only a create's own identifiers make it drifted
    start = (since - dt.timedelta(seconds=RECENT_SKEW_S)).strftime("%Y-%m-%dT%H:%M:%SZ")
    after = {"createdAt[after]": start}
    total = int(client.get("/organizations", {**after, "itemsPerPage": 1}).get("totalItems", 0))
    if total - ours <= 0:
        return {}
    said = (f"{total - ours} organization(s) were created since {start} (a minute before this plan's "
            f"matching began); its {len(todo)} create(s) may duplicate them")
    claimed = set(journal.iris().values())
    # the listing holds the plan's own creates done so far too (a resume of a long migration:
    # a trial's 4,000 made the listing of 1 other record 134 requests): their pages are extra
    pages = math.ceil(total / BATCH)
    affordable = pages <= RECENT_MAX_REQUESTS + math.ceil(ours / BATCH)
    # a create without identifiers (but more than a title) is found by what it sends, in a listing
    bare = [o for o in todo if not any(o.identifiers.values()) and any(k != "title" for k in o.body)]
    listed = client.list_all("/organizations", after) if bare and affordable else None
    if bare and listed is None:
        log.warning("%s: %s of them without identifiers cannot be checked (listing the organizations created "
                    "since would take %s requests, over %s beyond the plan's own) and are sent", said, len(bare),
                    pages, RECENT_MAX_REQUESTS)
    alike = _made_alike(bare, [r for r in listed or [] if r.get("@id") not in claimed])
    if alike:
        log.warning("%s: %s of its creates without identifiers %s every field it sends, so %s not "
                    "sent (drifted): most likely an earlier apply of this plan, or of a copy of it, made %s", said,
                    len(alike), "matches a record that holds" if len(alike) == 1 else "match records that hold",
                    "it is" if len(alike) == 1 else "they are", "it" if len(alike) == 1 else "them")
    if verify:
        log.warning("%s: --verify looks each one's identifiers up first", said)
        taken: dict[str, list[str]] = {}
    else:
        values = sorted(searchable_values(todo))
        by_lookup = all(set(o.identifiers) <= set(SEARCHABLE_IDENTIFIERS) for o in todo) and \
            math.ceil(len(values) / BATCH) < math.ceil(total / BATCH)
        if listed is None and not by_lookup and not affordable:
            raise PlanError(f"{said}; finding them among the {total} created since (the plan's own {ours} "
                            f"included) would take {pages} requests: plan again (the new plan matches them), "
                            "or apply with --verify to look each create's identifiers up first (one request "
                            "each) and skip those that match a record now; nothing was sent")
        # the records holding the creates' identifiers now (fewer requests), or every recent one
        found = listed if listed is not None else list(lookup_records(client, values).values()) if by_lookup \
            else client.list_all("/organizations", after)
        recent = [r for r in found if r.get("@id") not in claimed]
        taken = _held_by(todo, recent, plan.default_region)
    if made is not None:
        made.update({k: iris[0] for k, iris in (taken | alike).items() if len(iris) == 1})
    if taken:
        held = len(set().union(*taken.values()))
        log.warning("%s: %s of them %s an identifier of %s of the plan's creates, which %s not sent "
                    "(drifted); plan again to update %s instead", said, held, "holds" if held == 1 else "hold",
                    len(taken), "is" if len(taken) == 1 else "are", "it" if held == 1 else "them")
    return {k: f"a record with its identifiers was created since the plan ({', '.join(iris[:3])}): "
               "plan again" for k, iris in taken.items()} | {
        k: f"a record holding every field it sends was created since the plan ({', '.join(iris[:3])}): most "
           "likely this one, made already (by an earlier apply of this plan or of a copy of it); to make "
           "another, plan again"
        for k, iris in alike.items()}


def _check_notes_created_since(plan: Plan, journal: Journal, client: Client, verify: bool) -> dict[str, str]:
    """key -> why, of the note creates still to do on organizations that existed when the plan
    was made, whose organization holds a note of the same content key now (`notes.note_key`,
    the template's `content_key`): the plan saw none, so it was made since, most likely by an
    earlier apply of this plan or of a copy of it (or of the plan after its journal was
    deleted: a torture test's notes were posted three times). Sending them would make
    duplicates; they are drifted instead. One listing per such organization (⌈its notes / 30⌉
    requests, crm-api.md §9.2: notes have no filter); beyond `planfile.NOTE_CHECKS_MAX`
    organizations nothing is listed, unless `verify`, and a log line says so. Only on a plan's
    first run (no operation in its journal yet): a resume's journal says what it wrote (notes of organizations this plan
    creates need no check: their organization is made by this run)."""
    from .notes import note_key
    if any(journal.state(o.key) is not None for o in plan.operations):  # a resume: its own journal
        return {}  # says what it wrote (a review: 100+ listings before every resume's first write)
    todo = [o for o in plan.operations if copy_checked(o) and journal.state(o.key) not in ("done", "drifted")
            and not _maybe_made(journal.get(o.key))]  # the run looks those up as its own (`_resolve_sent`)
    by_org: dict[str, list[Operation]] = {}
    for o in todo:
        by_org.setdefault(o.path, []).append(o)
    if not by_org:
        return {}
    if len(by_org) > NOTE_CHECKS_MAX and not verify:
        log.info("%s note create(s) on %s organizations are not checked for copies made since the plan "
                 "(a listing each, over %s): if a copy of this plan was applied already, --verify checks "
                 "them", len(todo), len(by_org), NOTE_CHECKS_MAX)
        return {}
    claimed = set(journal.iris().values())
    out: dict[str, str] = {}
    for path, ops in by_org.items():
        with contextlib.suppress(PermanentApiError):  # the organization gone: the POST says so
            notes = [n for n in client.list_all(path) if n.get("@id") not in claimed]
            for o in ops:
                body = _fill_refs(o.body, journal.iris())
                with_date = body.get("createdAt") is not None
                want = note_key(body, o.content_key, with_date=with_date)
                hits = [n["@id"] for n in notes if note_key(n, o.content_key, with_date=with_date) == want]
                if hits:
                    out[o.key] = (f"a note of the same content was created since the plan ({hits[0]}): most "
                                  "likely this one, made already (by an earlier apply of this plan or of a "
                                  "copy of it); to make another, plan again")
    if out:
        log.warning("%s of the plan's note creates match notes created since it was made, so they are not "
                    "sent (drifted)", len(out))
    return out


def _made_alike(creates: list[Operation], records: list[dict]) -> dict[str, list[str]]:
    """key -> IRIs of the `records` that hold every field a create without identifiers sends
    (`_holds`; a value naming another operation's IRI aside): nothing else can tell that its
    record was made already, e.g. by an apply of a copy of the plan, whose journal is another
    file."""
    by_title: dict[Any, list[dict]] = {}
    for r in records:
        by_title.setdefault(r.get("title"), []).append(r)
    out: dict[str, list[str]] = {}
    for o in creates:
        sent = {k: v for k, v in o.body.items() if not _is_ref(v)}
        alike = [r["@id"] for r in by_title.get(o.body.get("title"), []) if _holds(r, sent)]
        if alike:
            out[o.key] = sorted(alike)
    return out


def _is_ref(value: Any) -> bool:
    """Whether a body value names another operation's IRI (`$ref:`), which a record holds as the
    IRI that operation made: not compared."""
    return "$ref:" in json.dumps(value) if isinstance(value, (str, list, dict)) else False


def _check_changed_since(plan: Plan, journal: Journal, client: Client) -> tuple[dict[str, str], set[str]]:
    """(key -> why, of the updates (PATCH, PUT) still to do whose record no longer holds, in a
    field the update sends, what the plan saw (`Operation.snapshot`; issue 5's drift check):
    sent, they would overwrite what someone changed since (an address goes whole, lists
    complete, crm-api.md §8.2); the keys of those whose record holds what they send already
    (`_holds`: another run or a person made the change since), which need no request). The
    records are re-read together (`_reread`: identifiers[] 30 values a request, or a full
    listing when cheaper), not one GET each as `--verify` does; a record whose identifiers
    changed is read by its IRI. Note updates and mirror deletes are checked the same way
    against their notes (`_reread_notes`)."""
    todo = [o for o in plan.operations if drift_checked(o) and journal.state(o.key) not in ("done", "drifted")]
    if not todo:
        return {}, set()
    orgs = [o for o in todo if o.resource == "organizations"]
    records = _reread(client, orgs, [o.iri for o in orgs], "checking the records to update") if orgs else {}
    for o in orgs:  # identifiers changed since (rare): its record by its IRI
        if o.iri not in records:
            with contextlib.suppress(PermanentApiError):  # gone: the write itself will say so
                records[o.iri] = client.get(o.iri)
    records |= _reread_notes(client, [o for o in todo if o.resource == "organization_notes"])
    made = journal.iris()
    out = {o.key: why for o in todo
           if o.iri in records and (why := _changed(o, records[o.iri], _fill_refs(o.body, made)))}
    if out:
        log.warning("%s record(s) the plan updates were changed by others since it was made: those "
                    "updates are not sent (drifted); plan again to update them", len(out))
    held = {o.key for o in todo if o.key not in out and o.method == "PATCH" and o.iri in records
            and _holds(records[o.iri], _fill_refs(o.body, made))}
    return out, held


def _reread_notes(client: Client, ops: list[Operation]) -> dict[str, dict]:
    """IRI -> note, re-reading the notes of `ops` (note updates and deletes): one GET for an
    organization with one of them, else one listing of that organization's notes (⌈its notes /
    30⌉ requests, crm-api.md §9.2). A note or organization gone since is left out: the write
    itself finds that (a DELETE's 404 is done)."""
    by_org: dict[str, list[str]] = {}
    for o in ops:
        by_org.setdefault(note_owner_iri(o.iri), []).append(o.iri)
    out: dict[str, dict] = {}
    for org, iris in by_org.items():
        with contextlib.suppress(PermanentApiError):
            if len(iris) == 1:
                out[iris[0]] = client.get(iris[0])
            else:
                out |= {n["@id"]: n for n in client.list_all(f"{org}/notes")}
    return out


def _held_by(creates: list[Operation], records: list[dict], default_region: str | None = None) -> dict[str, list[str]]:
    """key -> IRIs of the `records` that hold one of the create's identifiers (its
    `identifiers`, and the records' own, normalised as planning compares them)."""
    fields = sorted({f for o in creates for f in o.identifiers if f in IDENTIFIER_KINDS})
    if not records or not fields:
        return {}
    frame = raw_records_frame(records, identifiers_schema(fields))
    held = record_identifiers(frame, fields, default_region=default_region).join(
        frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("rec"), "@id"), on="rec")
    wanted = pl.DataFrame([(o.key, f, str(v)) for o in creates for f, vals in o.identifiers.items()
                           if f in IDENTIFIER_KINDS for v in vals],
                          schema={"key": pl.String, "kind": pl.String, "value": pl.String}, orient="row")
    wanted = pl.concat([wanted.filter(pl.col("kind") == f).with_columns(
        normalize_identifier(IDENTIFIER_KINDS[f], pl.col("value")).alias("value")) for f in fields])
    hits = wanted.join(held.select("kind", "value", "@id"), on=["kind", "value"]).unique(["key", "@id"])
    return {k: sorted(iris) for k, iris in hits.group_by("key").agg("@id").iter_rows()}


def _run_op(op: Operation, journal: Journal, client: Client, verify: bool) -> Any:
    """Send one operation unless the journal has it done; the server's answer body, if any, or
    `IN_DOUBT` for a create whose POST got no answer and that no lookup found (left `sent`)."""
    state = journal.state(op.key)
    if state in ("done", "drifted"):  # drifted (an earlier --verify, or a record made since the
        return None  # plan) stays so: sending it now would overwrite what others did; plan again
    missing = [d for d in op.depends_on if journal.state(d) != "done"]
    if missing:
        states = {journal.state(d) for d in missing}
        journal.record(op.key, "failed", detail=f"depends on {', '.join(missing)}, " + (
            "whose write got no answer (not known yet whether it was done); apply the plan again"
            if "sent" in states else "which was not sent (drifted: its record exists already, made since the "
            "plan); plan again to write this one to it" if "drifted" in states else "which failed"))
        return None
    if op.method == "POST" and _maybe_made(journal.get(op.key)) and _resolve_sent(op, journal, client):
        return None
    if op.path == "/tags" and (made := _existing_tag(client, journal, str(op.body.get("title", "")))):
        journal.record(op.key, "done", iri=made, held=True, detail=TAG_EXISTS)
        return None
    path = _fill_path(op.path, journal.iris())
    body = _fill_refs(op.body, journal.iris())
    if verify and (op.iri or _is_org_create(op)):
        try:
            now = client.get(op.iri) if op.iri else None
        except PermanentApiError as e:
            if e.status != 404:
                raise
            _record_gone(op, journal)
            return None
        drift = _changed(op, now, body) if op.iri else _exists_now(op, client, journal)
        if drift:
            journal.record(op.key, "drifted", detail=drift)
            return None
        if now is not None and op.method == "PATCH" and _holds(now, body):
            _record_held(op, journal)
            return None
    for _ in range(3):  # a create whose 5xx answer left it in doubt: looked up, resent at most twice
        try:  # journaled `sent` once it can leave: a stop while it waits for the window left it unsent
            resp = _send(client, op, path, body, lambda: journal.record(op.key, "sent"))
        except UncertainWriteError as e:  # a POST (the other verbs are retried by the client)
            found = _find_created(op, body, client, path, journal)
            if found:
                journal.record(op.key, "done", iri=found, detail=LOST_ANSWER)
                return None
            if e.status in _MAYBE_IN_FLIGHT:  # the server may still be writing it: never resent by this
                journal.record(op.key, "sent", detail=NO_ANSWER)  # run (`_settle` looks it up
                return IN_DOUBT  # again, when the server has had time; the next run first of all)
            last: ApiError = e
            continue
        except AuthError:
            raise
        except TransientApiError as e:
            if e.status is None or e.status in _DOWN:  # the API is down: stop, resume later
                raise
            journal.record(op.key, "failed", status=e.status, detail=_problem(e, body))
            return None
        except PermanentApiError as e:
            if op.method == "DELETE" and e.status == 404:  # gone already (a lost answer, or by hand)
                _record_gone(op, journal)
                return None
            journal.record(op.key, "failed", status=e.status, detail=_problem(e, body))
            return None
        iri = resp.iri or op.iri
        if iri is None and op.method == "POST":  # created, but the answer names no IRI (no `@id`,
            iri = _find_created(op, body, client, path, journal)  # no Location): find the record
        journal.record(op.key, "done", iri=iri, status=resp.status,
                       detail=f"throttled {resp.throttled}x" if resp.throttled else
                       None if iri else "created, but the server's answer named no IRI and no lookup found it")
        return resp.body
    journal.record(op.key, "failed", status=last.status, detail=_problem(last, body))
    return None


def _record_gone(op: Operation, journal: Journal) -> None:
    """Journal an operation whose record answered 404: a DELETE is done (gone already: a lost
    answer, or by hand), any other write failed (the record was deleted since the plan)."""
    deleting = op.method == "DELETE"
    journal.record(op.key, "done" if deleting else "failed", iri=op.iri, status=404,
                   detail="already deleted" if deleting else "deleted since the plan")


IN_DOUBT = object()
"""`_run_op`'s result for a create whose POST got no answer and that a lookup did not find: it
stays `sent` (`_settle`)."""
LOST_ANSWER = "resolved after a lost answer"
"""Journal detail of a create whose answer was lost and whose record a lookup found."""
IN_DOUBT_NOTE = ("the write got no answer and no record holding it was found: not sent again, so "
                 "as not to make it twice; apply the plan again: it looks the record up first and "
                 "sends it only if it is still missing")
"""Report note of a create left `sent` after its POST got no answer (`_settle`)."""
THROTTLED_NOTE = ("the API's rate limit (429) held it back past the retries; run the same apply again "
                  "to send it")
"""Report note of a write that failed on 429 answers alone (its row only, BR-13)."""
STOPPED_NOTE = ("sent when the run stopped, before its answer came: apply the plan again to settle "
                "it (a create is looked up first and sent only if it is missing)")
"""Report note of an operation a stopped run left `sent`."""
_MAYBE_IN_FLIGHT = (None, 504)
"""Statuses of an `UncertainWriteError` after which the server may still be writing the record:
no answer at all (a timeout, a reset), or a gateway's timeout."""
NO_ANSWER = "no answer"
"""Journal detail of a `sent` create whose POST got no answer in time (`IN_DOUBT`)."""
SETTLE_TIMEOUTS = 2
"""Read timeouts (`Client.timeout_s`) a server gets to finish a POST that got no answer, in this
run (`NO_ANSWER`) or in a stopped one (killed or interrupted while it waited for the answer),
before a lookup decides whether it made the record (`_wait_settled`, `wait_for_stopped_writes`):
the server goes on with a request whose client is gone (review: a resume 2 s after a kill
looked before an 8 s POST was done, and sent it again)."""


def settle_seconds(client: Client) -> float:
    """How long a server gets to finish a POST that got no answer (`SETTLE_TIMEOUTS`)."""
    return SETTLE_TIMEOUTS * float(getattr(client, "timeout_s", 30.0))


def _settle_left(client: Client, sent_at: float) -> float:
    """Seconds the server still gets to finish a write sent at `sent_at` (Unix seconds):
    `settle_seconds` from then, none when the server that got it is gone
    (`Client.settled_before`: the embedded sandbox of a run that ended)."""
    gone = getattr(client, "settled_before", None)
    if gone is not None and sent_at < gone:
        return 0.0
    return sent_at + settle_seconds(client) - time.time()


def wait_for_stopped_writes(plan_file: str | Path, client: Client, target: str) -> None:
    """Before a new plan replaces plan file `plan_file` (`import`, `plan --out`): wait until
    the creates a stopped run of it left `sent` (its journal) to `target` (a plan's target
    label) have had `settle_seconds` since their last attempt. Planned sooner, the new plan's
    matching could miss a record the server is still making and create the organization again
    (review). No wait when none was sent that recently, for updates (the new plan compares
    them again), or for a journal of another target."""
    head, entries = peek(journal_path(plan_file))
    recent = {k: float(e.get("t") or 0) for k, e in entries.items()
              if e.get("state") == "sent" and _settle_left(client, float(e.get("t") or 0)) > 0}
    if not recent or target_key(str(head.get("target") or "")) != target_key(target):  # one spelling a target
        return
    posts = _post_keys(Path(plan_file))
    last = max((t for k, t in recent.items() if posts is None or k in posts), default=None)
    wait = _settle_left(client, last) if last is not None else 0.0
    if wait > 0:
        log.warning("a stopped run of this plan sent a create and got no answer; waiting %.0f s for "
                    "the server to finish it before planning again", wait)
        time.sleep(wait)


def _post_keys(plan_file: Path) -> set[str] | None:
    """The keys of the creates (POST) of the plan file a journal belongs to; None when it
    cannot be read (then every write left `sent` counts)."""
    try:
        ops = json.loads(plan_file.read_text(encoding="utf-8")).get("operations") or []
        return {o["key"] for o in ops if o.get("method") == "POST"}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def _maybe_made(entry: dict) -> bool:
    """Whether an earlier POST of an operation may have made its record: it is `sent` (no
    answer, or the run stopped), or it failed with a 5xx (the server may fail after committing)."""
    return entry.get("state") == "sent" or (entry.get("state") == "failed" and (entry.get("status") or 0) >= 500)


def _resolve_sent(op: Operation, journal: Journal, client: Client) -> bool:
    """Look up the record an earlier POST of `op` may have made (`_maybe_made`), once the
    server has had time to finish it (`_wait_settled`), and journal `op` done when it is found
    (True); else it is sent as any other (False)."""
    if journal.state(op.key) == "sent":
        _wait_settled(op, journal, client)
    iris = journal.iris()
    found = _find_created(op, _fill_refs(op.body, iris), client, _fill_path(op.path, iris), journal)
    if found:
        journal.record(op.key, "done", iri=found, detail=LOST_ANSWER)
    return bool(found)


def _wait_settled(op: Operation, journal: Journal, client: Client) -> None:
    """Sleep until the server has had time to finish the POST of `op` (journaled `sent`): a
    POST that got no answer may still be in its hands, and a lookup before it finishes would
    miss the record and let it be sent twice. `settle_seconds` after it was sent, whether it
    got no answer in time (`NO_ANSWER`: the server was slow) or a stopped run had it in flight
    (none when that run's server is gone: `_settle_left`)."""
    entry = journal.get(op.key)
    wait = _settle_left(client, float(entry.get("t", 0)))
    if wait > 0:
        why = "its write got no answer" if entry.get("detail") == NO_ANSWER else \
            "the stopped run sent its write and stopped before the answer"
        log.warning("%s: %s; waiting %.0f s for the server to finish it before looking it up",
                    op.key.replace(":", " ", 1), why, wait)  # `row 12`, `tag VIP`
        time.sleep(wait)


def _settle(plan: Plan, ops: list[Operation], journal: Journal, client: Client, verify: bool,
            results: dict[str, Any]) -> None:
    """The creates of this run whose POST got no answer (`IN_DOUBT`), looked up once more when
    the server has had time to finish them: found, they are done, and the operations that
    failed only because they were in doubt (a note of that organization) are sent now; not
    found, they stay `sent`, never resent by the run that sent them (the server may still be
    writing them). The report says so (`IN_DOUBT_NOTE`), and the next run looks each up first
    and sends it only if it is still missing."""
    settled = {op.key for op in ops if journal.state(op.key) == "sent" and _resolve_sent(op, journal, client)}
    for op in plan.operations:
        if settled & set(op.depends_on) and journal.state(op.key) == "failed" \
                and all(journal.state(d) == "done" for d in op.depends_on):
            results[op.key] = _run_op(op, journal, client, verify)


def _send(client: Client, op: Operation, path: str, body: dict, before_send: Callable[[], None]):
    if op.method == "DELETE":
        return client.delete(path, before_send=before_send)
    return {"POST": client.post, "PATCH": client.patch, "PUT": client.put}[op.method](
        path, body, before_send=before_send)


def _problem(e: ApiError, body: dict | None = None) -> str:
    """What the API said of a refused write: its violations (`field: message`), else its detail,
    prefixed with the field of `body` holding the IRI a 400 `Item not found for "…"` names
    (crm-api.md §3: an owner or tag IRI, e.g. a template lookup table's, that does not exist)."""
    if e.violations:
        return "; ".join(f"{v.get('propertyPath')}: {v.get('message')}" for v in e.violations)
    detail = e.detail or str(e)
    missing = re.fullmatch(r'Item not found for "(.+)"\.?', detail)
    held = next((k for k, v in (body or {}).items() if missing and missing[1] in (v if isinstance(v, list) else [v])),
                None)
    return f"{held}: {detail}" if held else detail


def _fill_refs(body: Any, iris: dict[str, str]) -> Any:
    if isinstance(body, str) and body.startswith(REF_PREFIX):
        return iris.get(body[len(REF_PREFIX):], body)
    if isinstance(body, list):
        return [_fill_refs(v, iris) for v in body]
    if isinstance(body, dict):
        return {k: _fill_refs(v, iris) for k, v in body.items()}
    return body


def _fill_path(path: str, iris: dict[str, str]) -> str:
    """`$ref:<key>/rest` -> `<IRI of key>/rest` (a note of an organization this plan created)."""
    if not path.startswith(REF_PREFIX):
        return path
    key, sep, rest = path[len(REF_PREFIX):].partition("/")
    return iris[key] + sep + rest if key in iris else path


CLOCK_SKEW_S = 600
"""Seconds subtracted from the time a lost create was sent before listing the records created
since (`createdAt[after]`): `createdAt` is the server's clock, the journal's time ours."""


def _find_created(op: Operation, body: dict, client: Client, path: str, journal: Journal) -> str | None:
    """Look for the record the POST of `op` may have created (its answer was lost; `body`: what
    was sent, references filled), among records no other operation of the plan has claimed.

    An organization is looked up by the searchable identifiers of its body (`identifiers[]`,
    crm-api.md §8.3). When some identifier field has no filter (customerId) or there is none,
    it is looked for among the organizations created since the POST was sent, minus
    `CLOCK_SKEW_S` (`createdAt[after]`, §7: ⌈records created since / 30⌉ requests). A record
    counts when it holds the body's title, every scalar field and exactly its e-mail addresses
    and phone numbers."""
    if op.resource == "organization_notes":
        from .notes import find_created_note
        return find_created_note(client, path, body, op.content_key)
    if op.path == "/tags":
        hits = [t for t in client.list_all("/tags") if str(t.get("title", "")).strip() == body["title"]]
        return hits[0]["@id"] if hits else None
    claimed = _claimed_by_others(op, journal)
    values = sorted(searchable_values([op]))
    same = [r for r in _found_by_identifiers(values, client, claimed) if _same_record(r, body)]
    if not same and (not values or set(op.identifiers) - set(SEARCHABLE_IDENTIFIERS)):
        recent = _created_since(client, journal, journal.get(op.key).get("t") or time.time())
        same = [r for r in recent if r["@id"] not in claimed and _same_record(r, body)]
        if same:
            _own_record(journal, same[0])
    return same[0]["@id"] if same else None


_RECENT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per run (its `Journal`): the organizations `_created_since` listed (`records`), the earliest
time asked for (`since`, epoch seconds), the newest `createdAt` of a record a lookup found
to be this run's own (`mark`) and the server's `Date` at the start of the last listing
(`listed`): the server's clock both, never another writer's stamp."""

_TAGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # journal -> {title: IRI}, listed once a run
TAG_EXISTS = "a tag of this title exists already (made since the plan: a copy of it applied before?): used, not made again"


def _existing_tag(client: Client, journal: Journal, title: str) -> str | None:
    """The IRI of a tag titled `title` (trimmed, case aside, as lookups match names) the target
    holds now, else None: a tag create (`create_missing`) whose tag was made since the plan, by
    a copy of it applied on another machine (a trial: every tag made twice, then every row of
    the next upload `names 2 tags`), or another run. One listing of the tags per run
    (⌈tags/30⌉ requests, crm-api.md §10.2: no filter by title)."""
    if journal not in _TAGS:
        _TAGS[journal] = {}
        for t in client.list_all("/tags"):
            _TAGS[journal].setdefault(str(t.get("title") or "").strip().casefold(), t["@id"])
    return _TAGS[journal].get(title.strip().casefold())


MARK_MARGIN_S = 60
"""Seconds before `mark` or `listed` a later listing starts: records stamped by a server node
whose clock is behind, or stamped when their POST arrived and committed after the listing."""


def _created_since(client: Client, journal: Journal, sent_at: float) -> list[dict]:
    """The organizations created since `sent_at` − `CLOCK_SKEW_S` (`createdAt[after]`,
    crm-api.md §7). The whole window is listed once per run; a later lookup lists from the
    server's clock at the last listing (`Date`), or the `createdAt` of the newest record of the
    run's own a lookup found, less `MARK_MARGIN_S`: a record another writer stamped ahead moves
    nothing (reviews: 608 listing requests for 30 POSTs in doubt; then 96 for 12 not made)."""
    since = sent_at - CLOCK_SKEW_S
    cache = _RECENT.get(journal)
    if cache is None or since < cache["since"]:
        cache = _RECENT[journal] = {"since": since, "records": {}, "mark": None, "listed": None}
    start = dt.datetime.fromtimestamp(cache["since"], dt.timezone.utc)
    for seen in (cache["mark"], cache["listed"]):
        if seen is not None:
            start = max(start, seen - dt.timedelta(seconds=MARK_MARGIN_S))
    listed = None
    for page in client.iter_pages("/organizations", {"createdAt[after]": start.strftime("%Y-%m-%dT%H:%M:%SZ")}):
        if listed is None and (date := getattr(client, "server_date", None)) is not None:
            listed = dt.datetime.fromtimestamp(date, dt.timezone.utc)  # the first page's answer
        for r in page.get("member") or []:
            cache["records"][r["@id"]] = r
    if listed is not None:
        cache["listed"] = listed if cache["listed"] is None else max(cache["listed"], listed)
    return [r for r in cache["records"].values()
            if (made := _instant(r.get("createdAt"))) is None or made.timestamp() >= since]


def _own_record(journal: Journal, record: dict) -> None:
    """Note that `record` is one this run made (a lost create found): its `createdAt` is the
    mark later listings start from (`_created_since`)."""
    cache, made = _RECENT.get(journal), _instant(record.get("createdAt"))
    if cache is not None and made is not None and (cache["mark"] is None or made > cache["mark"]):
        cache["mark"] = made


def _instant(text: str | None) -> dt.datetime | None:
    """An RFC 3339 `createdAt` as an aware datetime (None when absent or unreadable)."""
    try:
        made = dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
    return made.replace(tzinfo=dt.timezone.utc) if made is not None and made.tzinfo is None else made


_DOWN = (502, 503, 504)
"""Statuses that, after the client's retries, mean the API is unavailable rather than that one
operation is wrong: apply stops (the operation stays `sent`; a resume looks it up first). Not
429: a write throttled past the client's cap marks only its row failed (BR-13's outcome,
../shared/cases/README.md), and a re-run sends it."""


def _is_org_create(op: Operation) -> bool:
    return op.method == "POST" and op.path == "/organizations"


def _exists_now(op: Operation, client: Client, journal: Journal) -> str | None:
    """`--verify` for a create: a record that holds one of its searchable identifiers now
    (created since the plan, e.g. by another import) makes it drifted instead of a duplicate.
    ⌈identifier values / 30⌉ lookups (`identifiers[]`, crm-api.md §8.3); none without any."""
    found = _found_by_identifiers(sorted(searchable_values([op])), client, _claimed_by_others(op, journal))
    hits = [r["@id"] for r in found]
    if hits:
        return (f"a record with its identifiers exists now ({', '.join(sorted(hits)[:3])}), created "
                "since the plan: plan again")
    return None


def _claimed_by_others(op: Operation, journal: Journal) -> set[str]:
    """IRIs the journal has for the plan's other operations (records they created or wrote)."""
    return {iri for key, iri in journal.iris().items() if key != op.key}


def _found_by_identifiers(values: list[str], client: Client, claimed: set[str]) -> list[dict]:
    """Records holding one of the identifier `values` (`identifiers[]` lookups, ⌈values / 30⌉
    requests, crm-api.md §8.3; none without values), leaving out the `claimed` IRIs."""
    found = lookup_records(client, values).values() if values else []
    return [r for r in found if r["@id"] not in claimed]


def _same_record(record: dict, body: dict) -> bool:
    """A record holds what a create sent: the body's title and other scalar fields (but the
    write-only ones, `diff.WRITE_ONLY`, never returned), and exactly its e-mail addresses (case
    ignored) and phone numbers."""
    emails = {e.get("email", "").lower() for e in record.get("emailAddresses") or []}
    phones = {p.get("phoneNumber") for p in record.get("phoneNumbers") or []}
    return emails == {e["email"].lower() for e in body.get("emailAddresses") or []} and \
        phones == {p["phoneNumber"] for p in body.get("phoneNumbers") or []} and \
        all(record.get(k) == v for k, v in body.items() if not isinstance(v, (list, dict)) and k not in WRITE_ONLY)


RECONCILED_KEY = "reconciled"
"""Journal key of the re-reading after the writes: `pending` while it runs, `done` (its reads
as `requests`) or `skipped` (--no-reconcile) after; a later run of a finished plan re-reads
only when it is `pending` or missing (the run that ended the plan stopped while re-reading)."""
CHECKS_KEY = "checks"
"""Journal key prefix of the reads a run made before its first write (`checks@<Unix time>`,
`Journal.send_times` counts them); never an operation's key (`row:…`, `tag:…`, `note:…`,
`delete:…`)."""

HELD = "the record already holds what the plan sends (changed so since the plan): nothing sent"
"""Report note of an update `_holds` found done already."""


def _record_held(op: Operation, journal: Journal) -> None:
    """Journal an update whose record holds what it sends already as done without a request:
    `unchanged` in the report (`HELD`), unless this plan's own write of it, interrupted before
    its answer was journaled (`sent`), made it so: then it was patched."""
    if journal.state(op.key) == "sent":
        journal.record(op.key, "done", iri=op.iri, detail="resolved after a lost answer (the record holds it)")
    else:
        journal.record(op.key, "done", iri=op.iri, held=True, detail=HELD)


def _holds(now: dict, body: dict) -> bool:
    """Whether record `now` holds every field a merge patch `body` sends (RFC 7396: the
    fields it names), so sending it changes nothing."""
    return all(_holds_value(now.get(k), v) for k, v in body.items())


def _holds_value(actual: Any, sent: Any) -> bool:
    """Whether a record's value `actual` holds what a write sent as `sent`: embedded objects
    compared key by key on the keys sent (`_subset`), null ≡ missing."""
    return canon(_subset(actual, sent), drop_null=True) == canon(sent, drop_null=True)


def _changed(op: Operation, now: dict, body: dict) -> str | None:
    """What of the fields `op` sends `now` (the record) holds otherwise than the plan saw,
    and otherwise than `body` (the op's body, refs filled) would make it: a write of an
    interrupted run whose answer was lost is not someone else's change. A PUT makes a field it
    leaves out empty (crm-api.md §8, PUT semantics; e.g. an unmapped field it clears)."""
    changed = [k for k, v in (op.snapshot or {}).items()  # null ≡ missing inside objects
               if canon(now.get(k), drop_null=True) != canon(v, drop_null=True)
               and not ((k in body or op.method == "PUT") and _holds_value(now.get(k), body.get(k)))]
    if not changed:
        return None
    return "; ".join(f"{k}: planned from {json.dumps(op.snapshot[k], ensure_ascii=False)}, now "
                     f"{json.dumps(now.get(k), ensure_ascii=False)}" for k in changed) + \
        ": someone changed it since the plan; plan again"


def _reconcile(plan: Plan, journal: Journal, client: Client) -> dict[str, str]:
    """key -> mismatch text, comparing what was sent with what the server now holds.

    Records are re-read with `identifiers[]` (30 values a request) where the operation has
    searchable identifiers; the rest one GET each. A full listing (a count, then
    ⌈records/30⌉ requests, crm-api.md §6) replaces either when it costs fewer requests (a big
    migration's creates hold more identifier values than the CRM holds pages of records).
    """
    done = [o for o in plan.operations if journal.state(o.key) == "done" and o.path != "/tags"
            and o.resource == "organizations"]
    iris = {o.key: journal.get(o.key).get("iri") or o.iri for o in done}
    records = _reread(client, done, list(iris.values()), "reconciling")
    out = {}
    for o in done:
        iri = iris[o.key]
        if not iri:
            out[o.key] = "not re-read: the server's answer named no IRI"
            continue
        if iri not in records:
            try:
                records[iri] = client.get(iri)
            except ApiError:
                out[o.key] = f"{iri} could not be re-read"
                continue
        diffs = [k for k, v in _fill_refs(o.body, journal.iris()).items()
                 if k not in WRITE_ONLY and (k in records[iri] or v not in (None, [], {}))
                 if not _holds_value(records[iri].get(k), v)]
        if diffs:
            out[o.key] = "server holds other values for " + ", ".join(
                f"{k} ({json.dumps(records[iri].get(k), ensure_ascii=False)})" for k in diffs)
    return out


def _reread(client: Client, ops: list[Operation], iris: list[str | None], what: str) -> dict[str, dict]:
    """IRI -> record, re-reading the records of `ops` (`iris`: theirs) with the fewest
    requests: `identifiers[]` lookups of their searchable identifiers (30 values a request),
    or, when cheaper, a count and a full listing (⌈records/30⌉, crm-api.md §6), which also
    replaces the GETs of several records the lookups missed (the caller GETs the rest).
    `what` names the phase in the minute's progress line (`Client.progress`): a big
    migration's reconciliation is ~1,000 requests, ≈ 50 min at 20/min, after its last write."""
    values = sorted(searchable_values(ops))
    bare = without_searchable(ops)
    cost = math.ceil(len(values) / BATCH) + bare  # at most: a bare one may be found by a lookup
    total = count_records(client) if cost > 2 else None  # one request, when a listing may pay
    if total is not None and math.ceil(total / BATCH) < cost:
        with client.progress(what, math.ceil(total / BATCH)):
            return {r["@id"]: r for r in client.list_all("/organizations")}
    with client.progress(what, math.ceil(len(values) / BATCH)):
        records = lookup_records(client, values) if values else {}
    missing = [i for i in iris if i and i not in records]
    if len(missing) > 1:
        total = count_records(client) if total is None else total
        if math.ceil(total / BATCH) < len(missing):
            with client.progress(what, math.ceil(total / BATCH)):
                records.update({r["@id"]: r for r in client.list_all("/organizations")})
    return records


def _reconcile_notes(plan: Plan, results: dict) -> dict[str, str]:
    """key -> mismatch text for notes, from the server's answer to each write of this run."""
    out = {}
    for o in plan.operations:
        answer = results.get(o.key)
        if o.resource != "organization_notes" or o.method == "DELETE" or not isinstance(answer, dict):
            continue
        diffs = [k for k, v in o.body.items() if _note_value(k, answer.get(k)) != _note_value(k, v)]
        if diffs:
            out[o.key] = "server holds other values for " + ", ".join(
                f"{k} ({json.dumps(answer.get(k), ensure_ascii=False)})" for k in diffs)
    return out


def _note_value(field: str, value: Any) -> Any:
    if field == "createdAt" and isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return value
    return None if value in ("", None) else value


def _subset(actual: Any, sent: Any) -> Any:
    """The part of `actual` that `sent` speaks about (embedded objects compared key by key)."""
    if isinstance(actual, dict) and isinstance(sent, dict):
        return {k: actual.get(k) for k in sent}
    if isinstance(actual, list) and isinstance(sent, list) and all(isinstance(s, dict) for s in sent):
        return [{k: a.get(k) for k in s} for a, s in zip(actual, sent)] if len(actual) == len(sent) else actual
    return actual


_NOT_WRITTEN = {"unchanged": "unchanged", "skip": "skipped", "conflict": "conflict", "invalid": "invalid"}
"""Report outcome of a planned row that has no write."""


def _row(plan: Plan, r: dict, outcome: str, iri: str | None, changes: list, status: int | None,
         note: str | None) -> dict:
    """One report row (`report.ROW_SCHEMA`) of plan row `r`."""
    return {"row_number": r["row_number"], "file": Path(plan.input).name, "sheet": r.get("sheet") or plan.sheet,
            "op": r["op"], "outcome": outcome, "iri": iri, "title": r.get("title"), "changes": changes,
            "http_status": status, "note": note, "resource": r.get("resource", "organizations")}


_LEFT_NOTE = "not applied yet (--limit): apply the plan again to do it"


def _report(plan: Plan, journal: Journal, mismatches: dict, requests: int, started: str,
            reconciled: bool, left: set[str] = frozenset(), left_note: str = _LEFT_NOTE) -> Report:
    """The report of a run: per plan row its outcome from the journal (`left`: the operations
    a `limit` left for the next run, or a stopped run did not do, `planned` with `left_note`)."""
    rows = []
    by_key = {o.key: o for o in plan.operations}
    for r in plan.rows:
        key, note = r.get("key"), r.get("note")
        entry = journal.get(key) if key else {}
        outcome = _NOT_WRITTEN.get(r["op"])
        if outcome is None and key in left:
            outcome, note = "planned", left_note
        elif outcome is None:
            state = entry.get("state")
            outcome = ("unchanged" if entry.get("held") else OP_OUTCOME[r["op"]]) if state == "done" else \
                "drifted" if state == "drifted" else "unconfirmed" if state == "sent" else "failed"
            detail = entry.get("detail") if state != "sent" else \
                IN_DOUBT_NOTE if entry.get("detail") == NO_ANSWER else STOPPED_NOTE
            if state == "failed" and entry.get("status") == 429:  # BR-13: only this row, sent next run
                detail = f"{detail or 'Too Many Requests'}: {THROTTLED_NOTE}"
            note = "; ".join(x for x in (detail, mismatches.get(key)) if x) or None
        changes = r.get("changes") or (by_key[key].changes if key in by_key else [])
        rows.append(_row(plan, r, outcome, entry.get("iri") or r.get("iri"), changes, entry.get("status"), note))
    summary = {"requests": requests, "target": plan.target, "template": plan.template,
               "input": plan.input, "dry_run": False, "started_at": started, "finished_at": now_utc(),
               "reconciled": reconciled, "mismatches": len(mismatches),
               "planning_requests": plan.requests_spent, "notes_sheet": plan.notes_sheet,
               "plan_created_at": plan.created_at}
    tags = sum(o.path == "/tags" and journal.state(o.key) == "done" and not journal.get(o.key).get("held")
               for o in plan.operations)  # not one found made already (`TAG_EXISTS`)
    if tags:  # `create_missing` tags: no input row of their own, so no count above shows them
        summary["tags_created"] = tags
    refs = _made(plan, journal)
    if refs:  # a tag the run created: its IRI, shown by its name as in the plan
        quoted = quoted_names(refs)
        rows = [{**row, "changes": [{**c, "after": replace_quoted(c.get("after"), quoted)}
                                    for c in row["changes"]]} for row in rows]
    names = plan.names | {iri: plan.names[ref] for ref, iri in refs.items() if ref in plan.names}
    return Report(rows=pl.DataFrame(rows, schema=ROW_SCHEMA), issues=_issues(plan, rows), summary=summary,
                  names=names)


def _made(plan: Plan, journal: Journal) -> dict[str, str]:
    """`$ref:<key>` -> IRI of each record the plan created that changes refer to (new tags)."""
    iris = journal.iris()
    return {f"{REF_PREFIX}{o.key}": iris[o.key] for o in plan.operations
            if o.key.startswith("tag:") and o.key in iris}


_OUTCOME_ISSUES = {"failed": ("request-failed", "API accepted the write (crm-api.md §5)"),
                   "unconfirmed": ("write-unconfirmed", "the API answered the write (crm-api.md §5)"),
                   "drifted": ("drifted", "record unchanged since planning")}
"""Outcome of a written row -> the (issue type, rule) of the error the report adds for it."""


def _issues(plan: Plan, rows: list[dict]) -> pl.DataFrame:
    extra = []
    for r in rows:
        if r["outcome"] in _OUTCOME_ISSUES:
            kind, rule = _OUTCOME_ISSUES[r["outcome"]]
            extra.append({"type": kind, "severity": "error", "file": r["file"], "sheet": r["sheet"],
                          "row_number": r["row_number"], "column": None, "cell": None, "value": None,
                          "rule": rule,
                          "message": f"{r['file']}:{r['row_number']}: "
                                     f"{'note ' if r['resource'] == 'organization_notes' else ''}"
                                     f"{r['outcome']}: {r['note'] or ''}",
                          "resource": r["resource"]})
    return pl.DataFrame(plan.issues + extra, schema=ISSUE_SCHEMA)


def dry_run_report(plan: Plan) -> Report:
    """The report of a plan that was not applied: every write row's outcome is `planned`."""
    rows = [_row(plan, r, _NOT_WRITTEN.get(r["op"], "planned"), r.get("iri"), r.get("changes") or [], None,
                 r.get("note")) for r in plan.rows]
    summary = {"requests": plan.requests_spent, "target": plan.target, "template": plan.template,
               "input": plan.input, "dry_run": True, "started_at": plan.created_at, "finished_at": now_utc(),
               "reconciled": False, "mismatches": 0, "notes_sheet": plan.notes_sheet}
    return Report(rows=pl.DataFrame(rows, schema=ROW_SCHEMA), issues=pl.DataFrame(plan.issues, schema=ISSUE_SCHEMA),
                  summary=summary, names=plan.names)
