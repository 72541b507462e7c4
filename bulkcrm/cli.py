"""The `bulkcrm` command line: a thin click layer over the library stages.

Each command parses its options, calls one library function, renders the result and maps
errors to exit codes: 0 every row fine; 1 some rows invalid, conflicted, drifted, failed or
unconfirmed (the report is written), or the API refused a request; 2 usage errors (bad option,
unreadable input or template); 74 a file could not be written; 75 the API is unavailable (run
again later); 77 the API refused the key.
No traceback unless `--debug`.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import shlex
import signal
import sys
import traceback
from pathlib import Path

import click

from .errors import (ApiError, AuthError, BulkcrmError, BusyError, ConfigError, InputError, JournalError, PlanError,
                     TemplateError, TransientApiError)
from .client import redact
from .target import EMBEDDED_DB, Target, open_target


_ERROR_KINDS = ((InputError, "input"), (TemplateError, "template"), (PlanError, "plan"),
                (ConfigError, "config"), (BusyError, "busy"), (JournalError, "journal"), (AuthError, "auth"),
                (TransientApiError, "api-unavailable"), (ApiError, "api"), (OSError, "file"),
                (click.ClickException, "usage"))
"""`--json`'s `error` of each failure (the first class that matches), so a scheduled job can
tell a bad file from an API that is down without parsing the message."""


EX_TEMPFAIL = 75
"""Exit code of a run the API stopped (no answer, or 429/5xx after the retries) or another run
held a lock it needs (`BusyError`): sysexits.h's "temporary failure, try again later", so a
scheduler can retry it and alert on 1 (rows need a person) and 2 (the command must change)."""


EX_IOERR = 74
"""Exit code of a file or folder that could not be written or read (`--report` under a file, a
full disk): sysexits.h's "input/output error"."""
EX_NOPERM = 77
"""Exit code of a key the API rejected (401/403, crm-api.md §3): sysexits.h's "permission
denied", so a scheduled job tells a revoked key from rows that need a person (1)."""


def _exit_code(e: BaseException) -> int:
    """2: nothing was sent and the user must change something first; 75 (`EX_TEMPFAIL`): the
    API is unavailable or another run is writing, run again later; 77 (`EX_NOPERM`): the API
    rejected the key; 74 (`EX_IOERR`): a file could not be written or read; else 1 (README,
    exit codes)."""
    if isinstance(e, (TransientApiError, BusyError)):
        return EX_TEMPFAIL
    if isinstance(e, (InputError, TemplateError, PlanError, ConfigError, JournalError)):
        return 2
    if isinstance(e, AuthError):
        return EX_NOPERM
    if isinstance(e, OSError):
        return EX_IOERR
    return 1


def _keys() -> list[str]:
    """The API keys this command may hold (environment, `--api-key`), as given and without the
    spaces around them (`target._checked_key`), for `redact`."""
    ctx = click.get_current_context(silent=True)
    given = [os.environ.get("BULKCRM_API_KEY"), (ctx.params.get("api_key") if ctx else None)]
    return [form for k in given if k for form in {k, k.strip()}]


def _traceback(e: BaseException) -> None:
    """`--debug`: the exception's traceback on stderr (keys redacted), before the usual message,
    `--json` object and exit code, which a scheduler reads alike with or without it."""
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    click.echo(redact(text.rstrip("\n"), _keys()), err=True)


def _fail(e: Exception, debug: bool, as_json: bool = False) -> None:
    if debug:
        _traceback(e)
    code = _exit_code(e)
    if isinstance(e, OSError):  # e.g. `--report /proc/x`: the file the OS refused, and why
        e = OSError(f"cannot write or read {e.filename}: {e.strerror}" if e.filename else str(e))
    click.echo(redact(f"Error: {e}", _keys()), err=True)  # a header or cell quoted may hold the key
    if as_json:
        _json_error(e, code)
    sys.exit(code)


def _json_error(e: BaseException, code: int, resume: str | None = None, report: dict | None = None) -> None:
    """`{"ok": false, "error": kind, "message", "exit_code"}` on stdout (`--json`), plus
    `resume` (the command that resumes the run) when its journal can, and `report` (its path)
    and `summary` (counts so far, as report.json's) when the stopped run wrote its report."""
    stop = _interruption(e)
    kind = next((k for cls, k in _ERROR_KINDS if isinstance(e, cls)), "interrupted" if stop else "error")
    message = (stop[0] if stop else e.format_message() if isinstance(e, click.ClickException) else str(e))
    payload = {"ok": False, "error": kind, "message": redact(message, _keys()), "exit_code": code}
    click.echo(json.dumps(payload | ({"resume": resume} if resume else {}) | (report or {}), ensure_ascii=False))


def handle_errors(fn):
    """Turn BulkcrmError and OSError (a report folder that cannot be written...) into a clear
    message and exit code (`_exit_code`: 2 for input/template/plan/target options, 75 for an
    API that is down, 77 for a rejected key, 74 for a file, else 1), Ctrl-C into 130;
    with `--json` also a JSON object on stdout (`_json_error`)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        obj = ctx.obj or {}
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:  # stdout's reader left (`| head`): no "Error" to write to it
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at exit's flush
            sys.exit(141)  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
        except (BulkcrmError, OSError) as e:
            _fail(e, obj.get("debug", False), obj.get("json", False))
        except KeyboardInterrupt as e:  # a command without a journal to resume
            _stopped(e, "", resumable=False)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - a bug of ours: one line, not a traceback
            _internal(e, obj.get("debug", False), obj.get("json", False))
    return wrapper


EX_SOFTWARE = 70
"""Exit code of an error bulkcrm did not foresee (sysexits.h: internal software error)."""


def _internal(e: Exception, debug: bool, as_json: bool) -> None:
    """An unforeseen exception: a short message (`--debug` shows its traceback first), exit
    `EX_SOFTWARE`. What was journaled stays so: apply's resume picks up from it."""
    if debug:
        _traceback(e)
    detail = redact(f"{type(e).__name__}: {e}", _keys())  # never the key (`redact` skips None)
    click.echo(f"Error: internal error ({detail}); this is a bug in bulkcrm: please report it "
               "with the command; run it again with --debug to see where it happened", err=True)
    if as_json:
        payload = {"ok": False, "error": "internal", "message": detail, "exit_code": EX_SOFTWARE}
        click.echo(json.dumps(payload, ensure_ascii=False))
    sys.exit(EX_SOFTWARE)


def _finite(ctx, param, value):
    """Refuse nan (which passes a FloatRange: no comparison with it holds)."""
    if value is not None and value != value:
        raise click.BadParameter("a number of requests per minute, not nan")
    return value


def target_options(fn):
    """`--base-url`/`--api-key` (env BULKCRM_BASE_URL/BULKCRM_API_KEY) and pacing options."""
    fn = click.option("--max-rate", type=click.FloatRange(min=0.1, max=1e6), default=None,
                      callback=_finite,
                      help="Requests per minute for this run (default 20, the tenant limit; "
                           "lower leaves room for other integrations).")(fn)
    fn = click.option("--api-key", envvar="BULKCRM_API_KEY", default=None, show_envvar=True,
                      help="API key (X-API-KEY). Never printed. Without one the embedded sandbox is used.")(fn)
    fn = click.option("--base-url", envvar="BULKCRM_BASE_URL", default=None, show_envvar=True,
                      help="API base URL (default https://api.rogerroger.io when a key is set).")(fn)
    return fn


DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
"""`--delimiter` by name, for a shell where a tab is awkward to type (`$'\\t'`)."""


def _delimiter(ctx, param, value: str | None) -> str | None:
    return DELIMITER_NAMES.get(value.strip().lower(), value) if value else value


def read_options(fn):
    fn = click.option("--header-row", type=click.IntRange(min=1), default=None,
                      help="Line/row number of the header (default: detected).")(fn)
    fn = click.option("--delimiter", default=None, callback=_delimiter,
                      help="CSV delimiter: one character, or tab, comma, semicolon, pipe (also \\t) "
                           "(default: detected among , ; tab |).")(fn)
    fn = click.option("--encoding", default=None, help="CSV encoding (default: detected).")(fn)
    fn = click.option("--sheet", default=None, help="Worksheet name or 0-based index (default: first visible).")(fn)
    return fn


def plan_options(fn):
    fn = click.option("--mirror-notes", is_flag=True,
                      help="Notes templates: also delete the notes of the organizations involved "
                           "that no row matches (each delete is listed in the plan).")(fn)
    fn = click.option("--match-strategy", type=click.Choice(["auto", "lookup", "scan"]), default="auto",
                      show_default=True, help="Find records by identifiers[] lookups, a full listing, or "
                      "whichever costs fewer requests.")(fn)
    fn = click.option("--mode", type=click.Choice(["upsert", "create-only", "update-only"]), default="upsert",
                      show_default=True, help="Which operations may be planned.")(fn)
    fn = click.option("--template", "-t", "template_path", required=True, type=click.Path(dir_okay=False),
                      help="Template YAML (see README, Template format).")(fn)
    return fn


def _sheet_arg(sheet):
    return int(sheet) if sheet is not None and sheet.isdigit() else sheet


def _notes_not_exported(template) -> str:
    """What an export of organizations says of the notes it left out (`notes:` of the template)."""
    if template.notes.sheet:
        from .export import exports_notes
        how = ("export to .xlsx to write them on that sheet too" if exports_notes(template, "xlsx") else
               "export them with a template of resource organization_notes")
        return f"The notes (sheet {template.notes.sheet}) are not exported to a .csv; {how}."
    return ("The template's notes section is not exported (its note columns stay empty); export notes "
            "with a template of resource organization_notes.")


def _check_input(file: str, template_path: str | None = None, strategy: str | None = None) -> None:
    """A missing input, a template that does not load, or a `--match-strategy` the template's
    (always present) identifiers cannot use, is named before any target is opened (an embedded
    sandbox would be created for nothing, and a `Target:` line would suggest one was used)."""
    from .read import check_input_path
    from .template import load_template
    check_input_path(file)
    template = load_template(template_path) if template_path else None
    if template is not None and strategy == "lookup":
        from .match import check_strategy
        check_strategy(template.for_columns(())[0], strategy)  # optional ones: later


def _open(ctx, base_url, api_key, max_rate, embedded_db=EMBEDDED_DB, read_only: bool = False) -> Target:
    if api_key is None and os.environ.get("BULKCRM_API_KEY") == "":  # click reads it as unset
        api_key = ""  # a scheduled job's secret that arrived empty must not write to a local sandbox
    target = open_target(base_url, api_key, max_rate=max_rate, embedded_db=embedded_db, read_only=read_only)
    ctx.call_on_close(target.close)
    click.echo(target.describe(), err=ctx.obj.get("json", False))
    return target


@click.group()
@click.option("--debug", is_flag=True, help="Show tracebacks, and log each request on stderr.")
@click.version_option(package_name="bulkcrm")
@click.pass_context
def cli(ctx, debug):
    """Move organizations and their notes between spreadsheets and the RogerRoger CRM.

    Without --api-key/BULKCRM_API_KEY every command works against the embedded sandbox
    (a local emulator of the API, state in ./.bulkcrm/sandbox.sqlite).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _log_to_stderr(logging.DEBUG if debug else logging.INFO)


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever `sys.stderr` is when a record comes (click's test runner
    swaps it per invocation)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_stderr(level: int) -> None:
    """bulkcrm's log records (e.g. what a long matching step will spend) as plain lines on
    stderr; `--debug` adds every request."""
    logger = logging.getLogger("bulkcrm")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@plan_options
@read_options
@target_options
@click.option("--dry-run", is_flag=True, help="Read, validate and plan; send no write request.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.json/.csv/.xlsx here (default: reports/<file stem>; with --dry-run "
                   "reports/<file stem>/dry-run, beside a real run's report).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with counts and requests.")
@click.option("--no-reconcile", is_flag=True, help="Do not re-read the written records afterwards.")
@click.pass_context
@handle_errors
def import_cmd(ctx, file, template_path, mode, match_strategy, mirror_notes, sheet, encoding, delimiter,
               header_row, base_url, api_key, max_rate, dry_run, report_dir, as_json, no_reconcile):
    """Upsert FILE (CSV/XLSX) into the CRM: plan, then apply, then write a report."""
    from .pipeline import run_import
    ctx.obj["json"] = as_json
    _check_input(file, template_path, match_strategy)
    target = _open(ctx, base_url, api_key, max_rate, read_only=dry_run)
    # a dry run's report never replaces a real run's: that one records what was written
    report_dir = report_dir or str(Path("reports", Path(file).stem, *(["dry-run"] if dry_run else [])))
    saved = Path(report_dir, "plan.json")
    before = saved.stat().st_mtime_ns if saved.exists() else None  # an earlier run's plan
    stops: list[dict] = []  # the report a stopped run wrote
    try:
        result = run_import(file, template_path, target, mode=mode, strategy=match_strategy,
                            mirror_notes=mirror_notes, sheet=_sheet_arg(sheet), encoding=encoding, delimiter=delimiter,
                            header_row=header_row, dry_run=dry_run, report_dir=report_dir,
                            reconcile=not no_reconcile, progress=True, stops=stops,
                            echo=lambda s: click.echo(s, err=as_json))
    except (KeyboardInterrupt, AuthError, TransientApiError) as e:
        # resumable only when this run saved its plan (it stopped while applying it)
        _stopped(e, _resume(ctx, saved, report_dir, base_url),
                 saved.exists() and saved.stat().st_mtime_ns != before, stops)
    _finish(result, as_json)


@cli.command("plan")
@click.argument("file", type=click.Path(dir_okay=False))
@plan_options
@read_options
@target_options
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Plan file to write (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts and the request estimate as JSON.")
@click.pass_context
@handle_errors
def plan_cmd(ctx, file, template_path, mode, match_strategy, mirror_notes, sheet, encoding, delimiter,
             header_row, base_url, api_key, max_rate, out, as_json):
    """Plan the import of FILE and save the plan; nothing is written to the CRM."""
    from .apply import wait_for_stopped_writes
    from .journal import journal_lock, journal_path
    from .pipeline import archive_journal, run_plan
    from .planfile import check_out_path
    ctx.obj["json"] = as_json
    _check_input(file, template_path, match_strategy)
    check_out_path(out, file, template_path)
    target = _open(ctx, base_url, api_key, max_rate, read_only=True)
    with journal_lock(journal_path(out), if_used=True):  # not over a plan whose apply still runs: checked first
        wait_for_stopped_writes(out, target.client, target.label)  # its creates made: matched, not planned again
        p, text = run_plan(file, template_path, target, mode=mode, strategy=match_strategy,
                           mirror_notes=mirror_notes, sheet=_sheet_arg(sheet), encoding=encoding,
                           delimiter=delimiter, header_row=header_row)
        kept = archive_journal(out)  # it belongs to the plan this file held before
        p.save(out, target.client.requests_per_minute)  # its estimate at this run's pace
    counts = p.counts()
    ok = not (counts["invalid"] or counts["conflict"])  # exit codes as for import
    kept_line = f"Kept the journal of the plan {out} held before as {kept}." if kept else None
    if as_json:  # the lines for people on stderr, the JSON object alone on stdout (README)
        click.echo(text, err=True)
        if kept_line:
            click.echo(kept_line, err=True)
        click.echo(f"Saved plan to {out}. Apply it with: bulkcrm apply {out}", err=True)
        both = p.row_frame()["resource"].fill_null("organizations").n_unique() > 1  # orgs and notes
        parts = {"by_resource": {"organizations": p.counts("organizations"),
                                 "notes": p.counts("organization_notes")}} if both else {}
        est = p.estimate(target.client.requests_per_minute)  # as `bulkcrm apply PLAN` spends them
        click.echo(json.dumps({"ok": ok, **counts, **parts, "requests": p.requests_spent,
                               "writes": len(p.operations), "estimate": est,
                               **({"remarks": p.notes} if p.notes else {})}, ensure_ascii=False))
    else:
        click.echo(text)
        if kept_line:
            click.echo(kept_line)
        click.echo(f"Saved plan to {out}. Apply it with: bulkcrm apply {out}")
    sys.exit(0 if ok else 1)


@cli.command("apply")
@click.argument("plan_file", type=click.Path(dir_okay=False))  # missing: Plan.load says so
@target_options
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Report directory (default: reports/<input stem>, the plan's input file).")
@click.option("--progress-every", "--batch-size", "batch_size", type=click.IntRange(min=1), default=25,
              show_default=True, metavar="N",
              help="Operations between progress updates of a terminal's bar (one also comes every 5 s; a log "
                   "gets a line at most every 30 s). Writes are sent one request each whatever N is "
                   "(--batch-size is the old name).")
@click.option("--verify", is_flag=True, help="Re-read each record before writing, and look each create's "
              "identifiers up first; skip drifted ones.")
@click.option("--no-reconcile", is_flag=True, help="Do not re-read the written records afterwards.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Send at most N of the operations still to do (a pilot); run apply again for the rest.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with counts and requests.")
@click.pass_context
@handle_errors
def apply_cmd(ctx, plan_file, base_url, api_key, max_rate, report_dir, batch_size, verify, no_reconcile, limit,
              as_json):
    """Execute exactly the saved PLAN_FILE; re-run the same command to resume after a crash."""
    from .pipeline import run_apply
    from .plan import Plan
    from .target import embedded_db_of
    ctx.obj["json"] = as_json
    plan = Plan.load(plan_file)
    # a plan made against the embedded sandbox is applied to that same sandbox file
    db = None if (api_key or base_url) else embedded_db_of(plan.target)
    if not (api_key or base_url) and db is None:  # made for an API: no embedded sandbox for it
        raise PlanError(f"the plan was made for {plan.target}: pass --base-url {plan.target} and its "
                        "key (--api-key or BULKCRM_API_KEY) to apply it there")
    target = _open(ctx, base_url, api_key, max_rate, embedded_db=db or EMBEDDED_DB)
    # where `import` of the plan's input writes its report
    report_dir = report_dir or str(Path("reports") / Path(plan.input or plan_file).stem)
    resume = _resume(ctx, plan_file, report_dir, base_url)
    stops: list[dict] = []  # the report a stopped run wrote
    try:
        result = run_apply(plan_file, target, plan=plan, report_dir=report_dir, batch_size=batch_size, verify=verify,
                           reconcile=not no_reconcile, progress=True, limit=limit, stops=stops,
                           echo=lambda s: click.echo(s, err=as_json))
    except (KeyboardInterrupt, AuthError, TransientApiError) as e:
        _stopped(e, resume, True, stops)
    _finish(result, as_json)


@cli.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--template", "-t", "template_path", required=True, type=click.Path(dir_okay=False),
              help="Template YAML (see README, Template format).")
@read_options
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write issues.csv, issues.json and an annotated XLSX copy here.")
@click.option("--json", "as_json", is_flag=True, help="Print the issues as JSON.")
@click.pass_context
@handle_errors
def validate_cmd(ctx, file, template_path, sheet, encoding, delimiter, header_row, report_dir, as_json):
    """Check FILE against the template offline; exit 1 when any row has an error."""
    from .pipeline import run_validate
    ctx.obj["json"] = as_json
    result = run_validate(file, template_path, sheet=_sheet_arg(sheet), encoding=encoding,
                          delimiter=delimiter, header_row=header_row, report_dir=report_dir, secrets=_keys())
    if as_json:  # a cell holding the key (BULKCRM_API_KEY) is shown masked, as plan shows it
        click.echo(redact(json.dumps({"ok": result["summary"]["valid"], **result["summary"]}, ensure_ascii=False),
                          _keys()))
    else:
        click.echo(redact(result["text"], _keys()))
    sys.exit(0 if result["summary"]["valid"] else 1)


@cli.command("export")
@click.option("--template", "-t", "template_path", required=True, type=click.Path(dir_okay=False),
              help="Template YAML; the export is its reverse, so re-importing changes nothing.")
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False),
              help="File to write: .csv (UTF-8) or .xlsx.")
@click.option("--q", default=None, help="Free-text filter (the API's q).")
@click.option("--owner", default=None, help="Owner e-mail, IRI /users/{id} or id.")
@click.option("--tag", "tags", multiple=True, help="Tag title, IRI or id (repeatable: any of them).")
@click.option("--segment", "segments", multiple=True, help="Segment title, IRI or id (repeatable: any of them).")
@click.option("--archived/--not-archived", default=None, help="Only archived / only not archived records.")
@click.option("--created-after", default=None, help="ISO 8601 date or date-time (inclusive).")
@click.option("--created-before", default=None, help="ISO 8601 date (that day included) or date-time.")
@click.option("--all", "all_records", is_flag=True,
              help="Also export records whose constant fields (e.g. externalSource) differ from the template's.")
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with path, records, pages, requests.")
@click.pass_context
@handle_errors
def export_cmd(ctx, template_path, out, q, owner, tags, segments, archived, created_after, created_before,
               all_records, base_url, api_key, max_rate, as_json):
    """Write organizations to a CSV/XLSX sheet through a template (crm_iri column first)."""
    from .export import ExportFilters, ProgressBar, check_out_path, export, exports_notes, output_kind
    from .template import load_template
    ctx.obj["json"] = as_json
    template = load_template(template_path)
    check_out_path(out, template)  # before any request
    target = _open(ctx, base_url, api_key, max_rate, read_only=True)
    filters = ExportFilters(q=q, owner=owner, tags=tuple(tags), segments=tuple(segments), archived=archived,
                            created_after=created_after, created_before=created_before)
    bar = ProgressBar()  # on stderr, also with --json: a scheduled job's log shows it (README)
    from .read import lock_file
    held = lock_file(Path(out))  # before the export moves the file aside
    try:
        result = export(target.client, template, out, filters=filters, progress=bar, all_records=all_records)
    finally:
        bar.close()
    skipped_notes = (template.resource == "organizations" and template.notes is not None
                     and not exports_notes(template, output_kind(out)[1]))
    payload = {"ok": True, "path": str(result.path), "records": result.records, "pages": result.pages,
               "requests": result.requests, "left_out": result.left_out,
               **({"phones_left_out": result.phones_left_out} if template.mapping("phoneNumbers") else {}),
               **({"notes": result.notes} if result.notes else {}),
               **({"disagreeing": [{"column": c, "field": a, "other_field": b, "records": n, "filled": f}
                                   for (c, a, b), (n, f) in result.disagreeing.items()]} if result.disagreeing else {}),
               **({"kept": str(result.kept)} if result.kept else {}),
               **({"notes_not_exported": True} if skipped_notes else {})}
    left_out = (f"; left out {result.left_out} whose constant fields differ from the template's "
                "(--all exports them too)") if result.left_out else ""
    if result.phones_left_out:
        left_out += (f"; {result.phones_left_out} phone number(s) not written: no phone column of "
                     "the template takes their type (add a column without `type` to take them)")
    for (col, holds, other), (differ, fill) in result.disagreeing.items():
        does = (f"their rows are conflicts ({other} is an identifier)" if other in template.identifiers
                else f"it changes their {other}")
        if differ:
            left_out += (f"; {differ} record(s) whose {other} is not what column {col!r}, which holds their {holds}, "
                         f"gives it: when the file is imported again {does}; make the two agree in the CRM")
        if fill:
            left_out += (f"; {fill} record(s) without a {other}: when the file is imported again it is set from "
                         f"column {col!r} (their {holds})")
    notes = f" and their {result.notes} note(s) (sheet {template.notes.sheet})" if result.notes else ""
    what = "note(s)" if template.resource == "organization_notes" else "record(s)"
    if skipped_notes:
        click.echo(_notes_not_exported(template), err=True)
    if held is not None:
        click.echo(f"open: {result.path.name} may be open in a spreadsheet program ({held.name} is beside it): "
                   "saving it there would write over this export; close it without saving, or save it under "
                   "another name", err=True)
    click.echo(json.dumps(payload) if as_json else
               f"Exported {result.records} {what}{notes} to {result.path} ({result.pages} page(s), "
               f"{result.requests} request(s)){left_out}"
               + (f"\nKept the file it held before as {result.kept}." if result.kept else ""))


@cli.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port.")
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="SQLite file (default: in memory).")
@click.option("--api-key", "api_keys", multiple=True, help="Accepted key (repeatable). Default: 'sandbox'.")
@click.option("--tenant", default="default", show_default=True, help="Tenant of the keys.")
@click.option("--rate-limit", default="20/60", show_default=True,
              help="N/SECONDS per tenant (N alone: per 60 s), or 'off'.")
@click.option("--latency-ms", type=int, default=0, help="Added latency per request.")
@click.option("--error-rate", type=float, default=0.0, help="Share of requests answered 500/502/503.")
@click.option("--drop-rate", type=float, default=0.0, help="Share of writes committed, then dropped.")
@click.option("--burst-429", type=int, default=0, help="Answer the next N requests 429 (a throttling burst).")
@click.option("--retry-after-http-date", is_flag=True, help="Send Retry-After as an HTTP-date, not seconds.")
@click.option("--seed", "seed_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="JSON/YAML with users, tags, segments, note_categories, people, organizations, notes.")
@click.option("--control", is_flag=True, help="Enable the /_sandbox/ control interface (tests).")
@click.option("--log", "access_log", is_flag=True,
              help="Print a line per API request on stderr (method, path, status: 429s show).")
def sandbox_cmd(host, port, db, api_keys, tenant, rate_limit, latency_ms, error_rate, drop_rate, burst_429,
                retry_after_http_date, seed_file, control, access_log):
    """Run the local emulator of the RogerRoger API on 127.0.0.1 until Ctrl-C."""
    from .sandbox.server import check_loopback, parse_rate_limit, run
    try:
        limit = parse_rate_limit(rate_limit)
    except ValueError:
        raise click.BadParameter("use N/SECONDS, e.g. 20/60, or off", param_hint="--rate-limit") from None
    try:
        check_loopback(host)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--host") from None
    try:
        run(host=host, port=port, db_path=db, api_keys={k: tenant for k in (api_keys or ("sandbox",))},
            rate_limit=limit, latency_ms=latency_ms, seed_file=seed_file, control=control,
            error_rate=error_rate, drop_rate=drop_rate, burst_429=burst_429,
            retry_after_http_date=retry_after_http_date, access_log=sys.stderr if access_log else None)
    except ValueError as e:  # a --db or --seed it cannot use (the message names the file)
        raise click.UsageError(str(e)) from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise click.BadParameter(f"{host}:{port} is in use (another sandbox, or another program): "
                                     "choose another --port, or --port 0 for a free one",
                                     param_hint="--port") from None
        raise click.UsageError(f"cannot serve the sandbox: {e.strerror or e}") from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's timeout, `kill`): the run stops as on Ctrl-C, exit 143."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _interruption(e: BaseException) -> tuple[str, int] | None:
    """(why, exit code) of a run stopped by a signal: SIGTERM (143) or Ctrl-C (130); None for
    anything else."""
    if isinstance(e, Terminated):
        return "terminated (SIGTERM)", 143
    return ("interrupted", 130) if isinstance(e, KeyboardInterrupt) else None


def _stopped(e: BaseException, resume: str, resumable: bool, stops: list[dict] | None = None) -> None:
    """Ctrl-C, SIGTERM, a rejected key or an API that is down mid-run: say so and, when a fsynced journal can resume
    the run (`resumable`), how; exit 130 (Ctrl-C), 143 (SIGTERM), 75 (the API is down) or 77 (the
    key was rejected), with `--json` also the JSON error (and the report the run wrote, `stops`)."""
    _no_more_interrupts()
    why, code = _interruption(e) or (str(e), _exit_code(e))
    fix = "with the right key, " if isinstance(e, AuthError) else ""
    tail = (f" The journal is saved; {fix}resume with:\n  {resume}" if resumable else
            " Nothing was written to the CRM.")  # no journal: stopped before any write
    click.echo(f"\nStopped ({why}).{tail}", err=True)
    if click.get_current_context().obj.get("json"):
        _json_error(e, code, resume if resumable else None, stops[-1] if stops else None)
    sys.exit(code)


def _resume(ctx, plan_file, report_dir: str, base_url: str | None) -> str:
    """The command that resumes a stopped run against the same target; the key is never
    printed, so a key given with --api-key is asked for again."""
    from click.core import ParameterSource
    cmd = f"bulkcrm apply {shlex.quote(str(plan_file))} --report {shlex.quote(str(report_dir))}"
    if base_url and ctx.get_parameter_source("base_url") is not ParameterSource.ENVIRONMENT:
        cmd += f" --base-url {shlex.quote(base_url)}"
    if ctx.params.get("max_rate"):
        cmd += f" --max-rate {ctx.params['max_rate']:g}"
    for flag in ("verify", "no_reconcile"):  # the stopped run's choices
        if ctx.params.get(flag):
            cmd += f" --{flag.replace('_', '-')}"
    if ctx.get_parameter_source("api_key") is ParameterSource.COMMANDLINE:
        cmd += " --api-key <your key>"
    return cmd


def _finish(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": result["ok"], **result["json"]}, ensure_ascii=False))
    sys.exit(0 if result["ok"] else 1)


def _placed(e: click.NoSuchOption) -> None:
    """An option given on the wrong side of the command name (`import F --debug`, `--dry-run
    import F`): say where it goes instead of guessing a look-alike (`Did you mean --mode?`)."""
    name = e.option_name
    on_group = any(name in p.opts for p in cli.params)
    commands = [c for c_name, c in sorted(cli.commands.items()) if any(name in p.opts for p in c.params)]
    where = e.ctx.command if e.ctx else None
    if where is not cli and on_group:
        e.message = f"{name} goes before the command: bulkcrm {name} {where.name if where else 'COMMAND'} …"
    elif where is cli and commands:
        typed = next((c for a in sys.argv[1:] for c in commands if c.name == a), None)
        e.message = (f"{name} belongs after the command name: bulkcrm {typed.name} … {name}" if typed else
                     f"{name} belongs after the command name (an option of "
                     f"{', '.join(c.name for c in commands)}): bulkcrm {commands[0].name} … {name}")
    else:
        return
    e.possibilities = []


def main() -> None:
    """Console entry point. With `--json`, a usage error (unknown option, missing file) is
    also one JSON object on stdout, as every other failure. SIGTERM stops a run as Ctrl-C does."""
    global _STANDALONE
    _STANDALONE = True
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here Ctrl-C is handled below
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(prog_name="bulkcrm", standalone_mode=False)
    except click.ClickException as e:
        if isinstance(e, click.NoSuchOption):
            _placed(e)
        e.show()
        if "--json" in sys.argv[1:]:
            _json_error(e, e.exit_code)
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as e:  # Ctrl-C outside a command's handling
        _no_more_interrupts()
        why, code = _interruption(e) or ("interrupted", 130)  # click's Abort: Ctrl-C at a prompt
        click.echo(f"\nStopped ({why}).", err=True)
        if "--json" in sys.argv[1:]:  # one JSON object, as for every other failure
            _json_error(e if _interruption(e) else KeyboardInterrupt(), code)
        sys.exit(code)


def _no_more_interrupts() -> None:
    """Ignore Ctrl-C and SIGTERM from here: the run is stopping, and one pressed again must not
    cut its last words (the message, the `--json` object; Python would end the process by the
    signal, exit -2, with neither). A second Ctrl-C while apply writes its report so far
    still cuts that short: it comes before this (the folder's earlier report is then set
    aside, `pipeline._on_stop`)."""
    if not _STANDALONE:  # called in another program's process (tests: CliRunner): its signals
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(sig, signal.SIG_IGN)


_STANDALONE = False
"""Set by `main`: the process is bulkcrm's own, so its signal handling is bulkcrm's to change."""
