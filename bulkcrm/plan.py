"""Stage 4: plan. Read, map, validate, look up and diff a sheet; decide one operation per row.

Input: a spreadsheet, a template and a `Client` (lookups only: a plan never writes).
Output: a `Plan`, saved as JSON with `Plan.save` and executed exactly by `apply.apply`.

Per row the plan says create, patch, replace, unchanged, skip (mode create-only/update-only),
conflict (ambiguous match, duplicate rows: never written) or invalid (validation issues).
Notes (template resource `organization_notes`, or an organizations template's `notes:`
section) are planned by `notes.py` into the same plan: their rows carry
`resource: organization_notes`, and mirror mode adds `delete` rows (issue 8).
"""
from __future__ import annotations

import datetime as dt
import gc
import os
import re
import time
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from . import diff
from .bodies import write_ops
from .client import Client
from .errors import Issue, TemplateError, about, did_you_mean, first_few, with_cell
from .lookups import REF_PREFIX, LookupCache, resolve_lookups
from .mapping import check_optional_columns, map_rows
from .match import KEPT, check_strategy, fetch_records, identifier_frame, match_fetched
from .normalize import CHECK_RULES, UNLIKELY_PHONE_RULE
from .read_excel import NUMERIC_RULE
from .planfile import (CONFLICT_TYPES, HELD_NOTE, NOTE_LISTINGS, ROW_SCHEMA, SCHEMA_VERSION, WRITE_OPS, Operation,
                       Plan, now_utc, ops_frame, render_plan)
from .read import Sheet, encoding_notes, open_notes, read
from .report import STATUS_COLUMNS
from .template import IDENTIFIER_KINDS, Template, read_columns
from .transforms import normalize_identifier
from .validate import sheet_rows, validate
from .vocab import MODE_SKIPS

__all__ = ["plan", "Plan", "Operation", "render_plan", "SCHEMA_VERSION", "WRITE_OPS", "CONFLICT_TYPES"]


def plan(source: str | Path | Sheet, template: Template, client: Client, *, mode: str = "upsert",
         strategy: str = "auto", sheet: str | int | None = None, encoding: str | None = None,
         delimiter: str | None = None, header_row: int | None = None,
         mirror_notes: bool = False) -> Plan:
    """Plan the import of one sheet.

    Args:
        source: input file (CSV/XLSX/XLS) or an already read `Sheet`.
        template: the loaded template. client: the API client (used for lookups only).
        mode: upsert (default), create-only or update-only.
        strategy: how records are found: auto (cost model), lookup (`identifiers[]`) or scan.
        sheet, encoding, delimiter, header_row: passed to `read.read`.
        mirror_notes: also delete the notes of the organizations involved that no row matches
            (issue 8; listed in the plan as `delete` rows). Off by default.

    Returns:
        A `Plan`. Row problems are in `Plan.issues` and rows' `op` (`invalid`, `conflict`).

    Raises:
        InputError: the file cannot be read or lacks a column the template needs.
        TemplateError: `mirror_notes` with a template without notes; a template the sheet
            cannot be matched with (`check_matchable`).
        ApiError: a lookup failed after its retries (AuthError for a rejected key).

    Example:
        >>> p = plan("samples/organizations.csv", load_template("templates/organizations.yaml"), client)
        >>> p.counts()["create"]
        91
    """
    if mirror_notes and template.resource != "organization_notes" and template.notes is None:
        raise TemplateError("--mirror-notes deletes the notes a sheet no longer holds, and this template has no "
                            "notes (a notes: section, or resource: organization_notes); leave the option out",
                            path=template.path)
    with _gc_paused(), _in_memory_engine():
        return _plan(source, template, client, mode=mode, strategy=strategy, sheet=sheet,
                     encoding=encoding, delimiter=delimiter, header_row=header_row,
                     mirror_notes=mirror_notes)


@contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector while planning (restored afterwards).

    The fetched records are JSON dicts (~10 objects a record, a million for 100k records);
    every full collection during planning would walk all of them (bench/README.md). They are
    acyclic and freed by reference counting, so nothing piles up meanwhile."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def _in_memory_engine():
    """Run planning's polars calls on the in-memory engine, unless the user chose an engine;
    the engine setting (only it) is restored afterwards.

    Planning makes some 200 eager polars calls on frames of 10k-100k rows. Polars 2 runs them
    on its streaming engine by default, which costs more per call than it saves at that
    size: the diff stage takes ~10 % less time in memory (bench/README.md). The setting is
    process-wide: other threads using polars meanwhile run in memory too."""
    if _engine_chosen():
        yield
        return
    before = os.environ.get("POLARS_ENGINE_AFFINITY")
    pl.Config.set_engine_affinity("in-memory")
    try:
        yield
    finally:
        pl.Config.set_engine_affinity(before)


def _engine_chosen() -> bool:
    """Whether the user set a polars engine: by name (`POLARS_ENGINE_AFFINITY`,
    `pl.Config.set_engine_affinity("streaming")`) or as an object (`pl.GPUEngine()`, which only
    polars' engine_config module shows; if that moves, assume the user chose)."""
    if os.environ.get("POLARS_ENGINE_AFFINITY", "auto") != "auto":
        return True
    try:
        from polars.lazyframe.engine_config import get_engine_affinity_override
    except ImportError:
        return True
    return get_engine_affinity_override() is not None


class _Clock:
    """Seconds per planning stage (`Plan.timings`)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._t, 4)
        self._t = now


def _plan(source: str | Path | Sheet, template: Template, client: Client, *, mode: str,
          strategy: str, sheet: str | int | None, encoding: str | None, delimiter: str | None,
          header_row: int | None, mirror_notes: bool) -> Plan:
    clock = _Clock()
    sh = source if isinstance(source, Sheet) else read(source, sheet=sheet, encoding=encoding, delimiter=delimiter,
                                                       header_row=header_row, columns=read_columns(template))
    clock.lap("read")
    if template.resource == "organization_notes":
        return _notes_plan(sh, template, client, mode=mode, strategy=strategy, mirror=mirror_notes)
    full = template
    template, absent = template.for_columns(sh.frame.columns)
    check_optional_columns(sh.frame.columns, absent, full, sh.path, sh.header_row)
    check_matchable(full, template, absent, sh, mode)
    check_strategy(template, strategy)  # before any request
    start = client.requests_sent
    file = Path(sh.path).name
    mapped = map_rows(sh.frame, template, path=f"{file}!{sh.sheet_name}" if sh.sheet_name else file,
                      header_row=sh.header_row, other_sheets=sh.other_sheets)
    clock.lap("map")
    matched_at = now_utc()  # records created from here on may be missing from what matching sees
    # every row claims the records its IRI and identifiers name, also a row that is not written
    # (invalid): another row naming such a record is a conflict, never a takeover of it
    fetched = fetch_records(mapped, template, client, strategy=strategy)
    own_notes = _own_notes(sh, template)
    with ThreadPoolExecutor(1) as pool:  # two local stages side by side: neither needs the other
        checking = pool.submit(validate, mapped, template, sheet=sh.frame, read_issues=sh.issues,
                               file=file, sheet_name=sh.sheet_name, letters=sh.letters,
                               numbers=sh.numbers)
        matches = match_fetched(mapped, template, fetched, notes=own_notes)
        checked = checking.result()
    clock.seconds["fetch"] = round(fetched.fetch_seconds, 4)
    clock.lap("validate+match")
    clock.seconds["validate+match"] = round(clock.seconds["validate+match"] - fetched.fetch_seconds, 4)
    del fetched
    cache = LookupCache()
    resolved = resolve_lookups(checked.valid, template, client, cache=cache, file=file, frame=sh.frame,
                               sheet=sh.sheet_name, letters=sh.letters)
    clock.lap("lookups")
    bad = {i.row_number for i in resolved.issues}
    rows = resolved.rows.filter(~pl.col("row_number").is_in(list(bad))) if bad else resolved.rows
    issues = [*_frame_issues(checked.issues), *resolved.issues,
              *_conflict_issues(matches.conflicts, template, sh, file, mapped, matches.iri),
              *_not_found_issues(matches.not_found, template, file, sh.sheet_name, matches.forbidden)]
    issues += _same_title_issues(rows, matches, template, file, sh.sheet_name)
    issues += _lost_zero_ids(rows, matches, template, file, sh) + _typed_phone_twins(rows, matches, template, file, sh)
    issues += _unmatchable_issues(rows, matches, template, mode, file, sh.sheet_name)
    out_rows, ops, zeros, blanks, merged, stamps, taken = _decide(mapped, rows, matches, template, mode, issues,
                                           resolved.tags_to_create)
    issues, quiet = _held_warnings(issues, out_rows, {c: m.field for m in template.mappings for c in m.columns})
    issues += _kept_zero_issues(zeros, template, file, sh)
    clock.lap("diff")
    p = Plan(template=str(template.path), template_sha256=template.sha256, input=_input_path(sh),
             input_sha256=sh.sha256, target=client.base_url, mode=mode,
             strategy=matches.strategy, created_at=now_utc(), rows=out_rows, operations=ops,
             issues=[i.to_dict() for i in about("organizations", issues, _whole_row(sh, own_notes))],
             requests_spent=client.requests_sent - start,
             sheet=sh.sheet_name, notes=column_notes(sh, full, template, absent)
             + _kept_blank_notes(_not_dated(blanks, checked.dated)) + _kept_item_notes(merged, display=cache.display)
             + _held_in_full_notes(taken)
             + _avatar_notes(template, ops) + _edited_since_notes(ops, stamps, sh)
             + matches.notes + quiet + _widely_shared_notes(mapped, template, matches.conflicts),
             timings=clock.seconds,
             records_total=matches.total, matched_at=matched_at,
             names=_names(cache, resolved.tags_to_create, ops), default_region=template.default_region,
             header_row=sh.header_row)
    if template.notes is not None:
        from .notes import plan_with_orgs
        p.notes_sheet = template.notes.sheet
        part = plan_with_orgs(p.rows, mapped, sh, template, client, mode=mode, strategy=strategy,
                              mirror=mirror_notes)
        _add_part(p, part)
        p.notes_header_row = part.header_row
        p.created_at = now_utc()  # when planning's last request was sent (apply counts them)
    return p


def _whole_row(sh: Sheet, own: pl.DataFrame | None) -> list[Issue]:
    """What the reader found that is about every record of its row (`errors.about`): only with
    the rows' own notes (`own`: `_own_notes`), and then only a cell of a note column, which is
    also the note's; a phone stored as a number, or the row itself (hidden), is said once, as
    the organization's (a trial's with-status copy said each twice, once after "note:").
    Without them the row is one organization's, and so are its issues (a trial's report named
    no resource for a numeric cell, `organizations` for a date cell)."""
    if own is None:
        return []
    return [i for i in sh.issues if i.column is not None and i.column in own.columns]


def _own_notes(sh: Sheet, template: Template) -> pl.DataFrame | None:
    """`row_number` and the sheet columns of each row's own note (a `notes:` section without a
    sheet of its own: `match_fetched`'s `notes`), else None."""
    if template.notes is None or template.notes.sheet is not None:
        return None
    cols = [c for c in template.notes.template.columns if c in sh.frame.columns]
    return sh.frame.select("row_number", *cols) if cols else None


def _input_path(sh: Sheet) -> str:
    """The plan's input: the sheet's file as an absolute path, so `apply PLAN` run from another
    folder finds it (for the with-status copy); as given when it is no file (a test's sheet)."""
    p = Path(sh.path)
    return str(p.resolve()) if p.exists() else str(sh.path)


def check_matchable(full: Template, template: Template, absent: list[str], sh: Sheet, mode: str) -> None:
    """Refuse an upsert that could match no row to a record: no identifiers (or none of their
    columns in the sheet: `template`, `absent` are `full.for_columns`'s) and no IRI column,
    so every run would create every row again (issue 5: identifiers match rows to records).

    Raises:
        TemplateError: naming what is missing and the ways out.
    """
    if template.identifiers or mode != "upsert" or template.iri_column in sh.frame.columns:
        return
    gone = [c for c in absent if any(s.column == c for f in full.identifiers if full.mapping(f)
                                     for s in full.mapping(f).sources)]
    what = (f"its identifiers' optional column(s) {', '.join(map(repr, gone))} are not in "
            f"{Path(sh.path).name}, which has no {template.iri_column} column either"
            if full.identifiers else
            f"declares no identifiers and {Path(sh.path).name} has no {template.iri_column} column")
    raise TemplateError(
        f"{what}, so every run would create every row again; add `identifiers:` (e.g. "
        "[emailAddresses]) or a crm_iri column; or, for a one-off load of new organizations "
        "only, pass --mode create-only (a second run creates them all again)",
        path=template.path, key="identifiers")


def column_notes(sh: Sheet, full: Template, used: Template, absent: list[str]) -> list[str]:
    """The notes on the sheet's columns that `plan` and `validate` print: a file open in a
    spreadsheet program (`read.open_notes`), the legacy encoding a
    CSV was read in (`read.encoding_notes`), the optional columns `absent` from the sheet
    (`Template.for_columns`; `full` as loaded, `used` as it applies to the sheet) and the
    columns the template does not read."""
    return open_notes(sh) + encoding_notes(sh) + _absent_notes(absent, full, used, sh.frame.columns) \
        + _unmapped_notes(sh, full)


def _absent_notes(columns: list[str], full: Template, used: Template, headers: list[str] = ()) -> list[str]:
    """Plan notes for optional columns the sheet lacks (`Template.for_columns`: `full` is the
    template as loaded, `used` as it applies to the sheet); one whose name is close to a
    header the template does not read (`emial`, of `headers`) says so first (a trial read two
    notes apart and missed the typo)."""
    unread = [h for h in headers if h != "row_number" and h not in read_columns(full) and not h.startswith("(column ")]
    notes = []
    for c in columns:
        guess = did_you_mean(c, unread)
        near = (f" (but the sheet has {guess.removeprefix(' (did you mean ')[:-2]}, which the template does not "
                "read: if it is this column misspelt, rename the header to load it)") if guess else ""
        field_name = next(m.field for m in full.mappings for s in m.sources if c in (s.column, s.type_column))
        typed = next((s.column for m in full.mappings for s in m.sources if s.type_column == c), None)
        if typed:
            notes.append(f"optional column {c!r} is not in the sheet{near}: the {field_name} of column "
                         f"{typed!r} go without a type, merged with the record's (nothing is removed)")
            continue
        notes.append(f"optional column {c!r} is not in the sheet{near}: " + (
            f"{field_name} comes from its other columns, merged with the record's (nothing is "
            "removed)" if used.mapping(field_name) else
            f"{field_name} is left as it is"))
    return notes


def _unmapped_notes(sh: Sheet, template: Template, shown: int = 8) -> list[str]:
    """A plan note naming the sheet's columns the template does not read (a column the user
    meant to load and forgot to map: its values are not sent). Not the columns a with-status
    copy adds (`report.STATUS_COLUMNS`), nor a blank header's `(column C)` (the reader warns).
    A notes sheet of its own (`notes: {sheet: …}`) is read apart: its columns are not this one's."""
    apart = template.notes is not None and template.notes.sheet is not None
    read_ = (set(template.columns) if apart else read_columns(template)) | set(STATUS_COLUMNS)
    left = [c for c in sh.frame.columns if c != "row_number" and c not in read_ and not c.startswith("(column ")]
    if not left:
        return []
    one = len(left) == 1
    return [f"unmapped column{'' if one else 's'} {first_few(map(repr, left), shown)}: the template does not read "
            f"{'it' if one else 'them'}, so nothing of {'it' if one else 'them'} is sent (map a column in the "
            "template to load it)"]


def _avatar_notes(template: Template, ops: pl.DataFrame) -> list[str]:
    """A plan note when PUTs reset avatars: a PUT resets the writable fields it leaves out
    (crm-api.md §8, PUT semantics), and `avatar` is write-only, never returned, so a PUT built
    from the record cannot keep it."""
    puts = ops.filter(pl.col("method") == "PUT").height
    if not puts or template.mapping("avatar") is not None:
        return []
    return [f"mode: replace: {puts} PUT(s) reset the avatar of their organizations (write-only: the API "
            "never returns it, so a PUT cannot send it back); map avatar, or use mode: patch to keep them"]


PHONE_RULE = CHECK_RULES["phone_e164"][0]
"""The rule of an invalid-phone warning of a number kept as typed (not E.164)."""


HELD_WARNINGS = {"invalid-phone": ("phoneNumbers", PHONE_RULE, "numbers not in E.164 form"),
                 "unlikely-phone": ("phoneNumbers", UNLIKELY_PHONE_RULE, "numbers no range of their country holds"),
                 "phone-extension": ("phoneNumbers", PHONE_RULE, "numbers whose extension is not sent (E.164 has none)"),
                 "invalid-url": ("website", CHECK_RULES["url"][0], "websites that are no http(s) URL"),
                 "numeric-cell": (None, NUMERIC_RULE, "values stored as number cells")}
"""Warnings of values kept as typed, by issue type: (field, rule, what they are) for
`_held_warnings`; field None: the field the issue's column feeds (a zip code a workbook stores
as a number, warned of every week: a trial)."""


def _held_warnings(issues: list[Issue], rows: pl.DataFrame,
                   fields_of: dict[str, str] | None = None) -> tuple[list[Issue], list[str]]:
    """`issues` without the warnings of values kept as typed (`HELD_WARNINGS`: a phone number
    not in E.164 form or of no range, or its extension left out; a website that is no URL; an
    integer a workbook stores as a number, not one its format shows otherwise, `2,234,274,047`,
    whose warning says what is read) on rows that do not send that field: unchanged rows,
    and patches that leave it alone. Their records hold those values as the sheet has them
    already, so nothing is sent, and a weekly upload of an export would repeat them every week
    (`bulkcrm validate` still lists them). `fields_of`: sheet column -> the field it feeds.
    Returns the issues kept and a plan note per kind counting those left out."""
    kept, notes, op = issues, [], pl.col("op")
    for kind, (field_name, rule, what) in HELD_WARNINGS.items():
        held = [i for i in kept if i.type == kind and i.severity == "warning" and i.rule == rule
                and (kind != "numeric-cell" or (i.value or "").isdigit())]  # a styled cell's says what is read
        by_field: dict[str | None, list[Issue]] = {}
        for i in held:
            by_field.setdefault(field_name or (fields_of or {}).get(i.column or ""), []).append(i)
        drop = set()
        for f, of_field in by_field.items():
            if f is None:  # a column no field reads: the reader's, not this
                continue
            touches = pl.col("changes").list.eval(pl.element().struct.field("field") == f).list.any()
            sends_none = rows.filter(pl.col("row_number").is_in([i.row_number for i in of_field]),
                                     (op == "unchanged") | ((op == "patch") & ~touches.fill_null(False)))
            quiet = set(sends_none["row_number"].to_list())
            drop |= {id(i) for i in of_field if i.row_number in quiet}
        if drop:
            kept = [i for i in kept if id(i) not in drop]
            notes.append(f"{len(drop)} {kind}{HELD_NOTE}{what} that their records hold as the "
                         "sheet has them already, so nothing is sent (bulkcrm validate lists them)")
    return kept, notes


def _not_dated(blanks: pl.DataFrame, dated: frozenset[tuple[int, str]]) -> pl.DataFrame:
    """`blanks` (`diff.kept_blanks`) without the fields a date cell left empty (`Validation.dated`):
    their cells are not blank, and their warning says why they are not sent."""
    if not dated or not blanks.height:
        return blanks
    return blanks.filter(~pl.struct("row_number", "field").is_in(
        pl.DataFrame(list(dated), schema=["row_number", "field"], orient="row").to_struct().implode()))


def _kept_blank_notes(blanks: pl.DataFrame, shown: int = 5) -> list[str]:
    """A plan note on the fields blank cells left as stored (`diff.kept_blanks`): who blanks a
    cell to delete a value sees that it stays, and how to clear it."""
    if not blanks.height:
        return []
    where = first_few((f"row {rn} {f}" for rn, f in blanks.head(shown).iter_rows()), shown, blanks.height)
    return [f"blank cells leave {blanks.height} field value(s) as stored ({where}): the template "
            "has `empty: ignore`; to clear a field from a blank cell, set `empty: clear` (for the "
            "whole template: then every blank cell of a single-value field clears it)"]


WIDELY_SHARED = 3
"""Rows sharing one identifier value from which a plan note names it (`_widely_shared_notes`)."""


def _widely_shared_notes(mapped: pl.DataFrame, template: Template, conflicts: pl.DataFrame,
                         shown: int = 3) -> list[str]:
    """A plan note naming the identifier values most rows share, when rows are duplicate-row
    conflicts over values `WIDELY_SHARED` or more rows hold: a switchboard, fax or hotline
    number, a head office's e-mail, names no one organization (a trial: 1,790 of 2,132 rows in
    conflict, one fax number on 60 of them); an id (customerId) on several rows is a sheet of
    one line per order or invoice. Counted only when there are such conflicts."""
    dup = conflicts.filter(pl.col("type") == "duplicate-row") if conflicts.height else conflicts
    if dup.height < WIDELY_SHARED:
        return []
    kind, value = pl.col("kind"), pl.col("value")
    # not a value no identifier can hold (`no email`, `x@`: its rows are invalid anyway; a trial)
    usable = (pl.when(kind == "emailAddresses").then(value.str.contains(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))
              .when(kind == "phoneNumbers").then(value.str.starts_with("+")).otherwise(True))
    counts = (identifier_frame(mapped, template).filter(usable).group_by("kind", "value").agg(pl.len().alias("n"))
              .filter(pl.col("n") >= WIDELY_SHARED).sort("n", "kind", "value", descending=[True, False, False]))
    if not counts.height:
        return []
    top = ", ".join(f"{k} {v} ({n} rows)" for k, v, n in counts.head(shown).iter_rows())
    more = f" and {counts.height - shown} more" if counts.height > shown else ""
    contact = counts.head(shown)["kind"].is_in(["emailAddresses", "phoneNumbers"]).any()
    why = ("a number or address several organizations share (a switchboard, a fax, a hotline, a head office) names "
           "none of them; match on identifiers they do not share (the template's `identifiers:`), or give each row "
           "its record's IRI in a crm_iri column" if contact else
           "an id one organization holds, on several rows: a sheet of one line per order or invoice? import a "
           "sheet with one row per organization")
    return [f"conflicts: {dup.height} row(s) share identifier values with other rows; values {WIDELY_SHARED} or "
            f"more rows share: {top}{more}: {why}"]


def _kept_item_notes(merged: pl.DataFrame, shown: int = 3, display: dict[str, str] | None = None) -> list[str]:
    """A plan note on the list items `policy: merge` keeps though the sheet leaves them out
    (`diff.kept_items`): who deletes a phone from a cell to remove it sees that it stays.
    `display`: IRI -> name (`LookupCache.display`), so a tag shows by its name, as a sheet has it."""
    if not merged.height:
        return []
    n = merged["items"].list.len().sum()
    names = display or {}
    where = first_few((f"row {rn} {f} {', '.join(repr(names[i]) if i in names else i for i in items)}"
                       for rn, f, items in merged.head(shown).iter_rows()), shown, merged.height)
    return [f"merge: the sheet leaves out {n} list item(s) its records hold, which stay ({where}): a field "
            "with `policy: merge` adds the sheet's items to the record's and removes none; to remove them, "
            "give the field `policy: replace`"]


def _held_in_full_notes(taken: pl.DataFrame, shown: int = 3) -> list[str]:
    """A plan note on the sheet's phone numbers held as typed that were taken as the full
    number their record holds (`diff.held_in_full`: `308-7104` for `+15553087104`), so
    nothing was added beside it nor replaced."""
    if not taken.height:
        return []
    where = first_few((f"row {rn} {typed!r} as {number}" for rn, typed, number in taken.head(shown).iter_rows()),
                      shown, taken.height)
    return [f"phone: {taken.height} number(s) the sheet writes without country or area code end a number "
            f"their record holds in full, and are taken as it ({where}): nothing is added beside it; write "
            "the number in full (with + and the country code) to change it"]


def _edited_since_notes(ops: pl.DataFrame, stamps: pl.DataFrame, sh: Sheet, shown: int = 3) -> list[str]:
    """A plan note on the updates (patch, replace) of records edited after the input file was
    last saved: the record's `updatedAt` (crm-api.md §8.1, read-only, set by every write) later
    than the file's modification time. Such a sheet may be older than the edit, and its update
    would put the old values back (ops uploading last week's file again). A record not written
    since it was made (`updatedAt` within half a second of `createdAt`; stamps of whole
    seconds differ by one at least) is no edit: another source's load in a migration. `ops`:
    `OP_SCHEMA`; `stamps`: `row_number`, `updatedAt`, `createdAt` (String) of the matched rows
    (`_update_ops`). Empty when the input is no file or no updated record says when it was
    edited (or its `updatedAt` is no ISO 8601 date-time). Notes have no `updatedAt`
    (crm-api.md §9): only organizations."""
    updates = ops.filter(pl.col("op").is_in(["patch", "replace"]) & pl.col("iri").is_not_null())
    try:
        saved = Path(sh.path).stat().st_mtime if updates.height and stamps.height else None
    except (OSError, TypeError):
        saved = None
    if saved is None:
        return []
    at = dt.datetime.fromtimestamp(saved, dt.timezone.utc)  # to the microsecond: an edit just before is none
    when = {c: pl.col(c).str.to_datetime(time_zone="UTC", strict=False) for c in ("updatedAt", "createdAt")}
    edited = (when["updatedAt"] > at) & (  # a record not written since it was made is unedited (a
        # two-source migration: the first source's load is no edit of the second's older file)
        when["createdAt"].is_null() | (when["updatedAt"] - when["createdAt"] > pl.duration(milliseconds=500)))
    late = updates.with_columns(pl.col("row_numbers").list.first().alias("row_number")).join(
        stamps.filter(edited).with_columns(when["updatedAt"].alias("__edited")),
        on="row_number", how="inner", maintain_order="left")
    if not late.height:
        return []
    where = first_few((f"row {rn} ({', '.join(c['field'] for c in changes)}; edited {e:%Y-%m-%d %H:%M} UTC)"
                       for rn, changes, e in late.head(shown).select("row_number", "changes", "__edited")
                       .iter_rows()), shown, late.height)
    return [f"edited: {late.height} record(s) this plan updates were edited after {Path(sh.path).name} was last "
            f"saved ({at:%Y-%m-%d %H:%M} UTC): {where}; if the sheet is older than those edits, applying puts "
            "its values back over them: compare, or export the records again and make the changes there"]


def _names(cache: LookupCache, tags: list[str], ops: pl.DataFrame) -> dict[str, str]:
    """`Plan.names`: the names of the IRIs the operations' changes show (those the lookups
    listed: tags, owners, ...) and of the tags the plan creates."""
    names = {f"{REF_PREFIX}tag:{t}": f"{t} (new tag)" for t in tags}
    if not cache.display or not ops.height:
        return names
    sides = ops.select(pl.col("changes").explode().struct.field("before", "after"))
    return names | cache.names_in(pl.concat([sides["before"], sides["after"]]))


def _notes_plan(sh: Sheet, template: Template, client: Client, *, mode: str, strategy: str,
                mirror: bool) -> Plan:
    """The plan of a notes template (resource organization_notes, issue 8)."""
    from .notes import plan_notes
    part = plan_notes(sh, template, client, mode=mode, strategy=strategy, mirror=mirror)
    p = Plan(template=str(template.path), template_sha256=template.sha256, input=_input_path(sh),
             input_sha256=sh.sha256, target=client.base_url, mode=mode,
             strategy=part.strategy or strategy, created_at=now_utc(), rows=[], operations=[],
             issues=[], requests_spent=0, sheet=sh.sheet_name, header_row=sh.header_row)
    _add_part(p, part)
    return p


def _add_part(p: Plan, part) -> None:
    """Append a `notes.NotesPart` after the organizations: their operations run first."""
    p.rows = p.rows + part.rows
    p.operations = p.operations + part.operations
    p.issues += [i.to_dict() for i in about("organization_notes", part.issues)]  # a notes sheet's own rows
    p.requests_spent += part.requests
    p.notes += part.notes
    if part.listings[0]:  # the plan text says what the requests were for
        n, orgs = part.listings  # one paged listing per organization (crm-api.md §9.2)
        p.notes.append(f"{NOTE_LISTINGS}{n} of them listed the existing notes of {orgs} "
                       f"organization{'s' if orgs != 1 else ''}, one listing each")
    p.names = {**p.names, **part.names}


def _decide(mapped: pl.DataFrame, rows: pl.DataFrame, matches, template: Template, mode: str,
            issues: list[Issue], tags: list[str]) -> tuple[pl.DataFrame, ...]:
    """The rows frame (`ROW_SCHEMA`, one per mapped row, input order), the operations frame
    (`OP_SCHEMA`: tag creates, then one write per row in row order), the fields left as
    stored because the sheet lost their leading zeros (`diff.kept_zeros`), those a blank
    cell left as stored (`diff.kept_blanks`), the list items a merge keeps (`diff.kept_items`)
    `row_number`, `updatedAt` (String) of the matched rows that change something, and the
    typed phone numbers taken as their record's (`diff.held_in_full`)."""
    errors = {i.row_number for i in issues if i.severity == "error" and i.type not in CONFLICT_TYPES}
    conflict_rows = set(matches.conflicts["row_number"].to_list())
    raw_ids = [c for c in rows.columns if c.startswith("__raw.")]  # matching's; not needed here
    joined = rows.drop(raw_ids).hstack(_of_rows(matches.iri, rows).select("iri", "rec"))  # in order
    skip = conflict_rows | errors
    ok = joined.filter(~pl.col("row_number").is_in(list(skip))) if skip else joined
    with ThreadPoolExecutor(1) as pool:  # creates need no record: built beside the patches
        creates = pool.submit(_create_ops, ok, mode, template, tags)
        changed, patches, zeros, blanks, merged, stamps, taken = _update_ops(ok, matches, mode, template, tags)
        org_ops = pl.concat([creates.result(), patches]).sort(pl.col("row_numbers").list.first())
    used = set(org_ops["depends_on"].explode().drop_nulls().to_list()) if tags else set()
    tags = [t for t in tags if f"tag:{t}" in used]  # not for rows that are invalid or conflict
    ops = pl.concat([ops_frame([_tag_op(t) for t in tags]), org_ops]) if tags else org_ops
    return (_row_frame(mapped, matches.iri, changed, matches.conflicts, errors, mode, template, org_ops), ops,
            zeros, blanks, merged, stamps, taken)


def _of_rows(iri: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The lines of `Matches.iri` (one per mapped row, in order) of `rows` (a subset of the
    mapped rows, in order), one per row of `rows`."""
    if iri.height == rows.height:
        return iri
    return iri.filter(pl.col("row_number").is_in(rows["row_number"].implode()))


def _create_ops(ok: pl.DataFrame, mode: str, template: Template, tags: list[str]) -> pl.DataFrame:
    """The POSTs of the rows no record matched (none in update-only mode)."""
    w = ok.filter(pl.col("iri").is_null()) if mode != "update-only" else ok.clear()
    return write_ops(w.select(_write_columns(w, template)), template, tags)


def _update_ops(ok: pl.DataFrame, matches, mode: str, template: Template,
                tags: list[str]) -> tuple[pl.DataFrame, ...]:
    """(`row_number`, `changed` of the matched rows that change something; their PATCHes or
    PUTs, none in create-only mode; `diff.kept_zeros`; `diff.kept_blanks` and `diff.kept_items`,
    none in create-only mode; `row_number`, `updatedAt`, `createdAt` of their records, for `_edited_since_notes`;
    `diff.held_in_full`'s typed phone numbers taken as their record's)."""
    at = ok.select(pl.arg_where(pl.col("iri").is_not_null())).to_series()  # the matched rows
    records, rec = matches.frame.drop("@id"), ok["rec"].gather(at)  # each one's record, in row order
    matches.frame = None  # not needed any more
    equal = diff.same_as_record(ok.select(m.field for m in template.mappings)[at], records[rec], template)
    differs = ~equal.select(pl.all_horizontal(pl.all())).to_series()  # only these can change anything
    unmapped = _holds_unmapped(ok["iri"].gather(at), matches.records, template)
    differs = differs | unmapped if unmapped is not None else differs
    # gathered whole only now: most matched rows of a re-upload change nothing
    at, rec, equal = at.filter(differs), rec.filter(differs), equal.filter(differs)
    matched, raw = ok[at], records[rec]
    matched, taken = diff.held_in_full(matched, raw)  # `308-7104` for the record's +15553087104
    alike = frozenset(f for f, ok in equal.select(pl.all().all()).row(0, named=True).items() if ok)
    existing = diff.existing_values(matched, raw, template, equal=alike)
    # `compare: stored`: a value not in its normalised form is a change too (a hygiene run)
    compared = existing if template.compare != "stored" else diff.without_repeats(
        diff.existing_values(matched, raw, template, equal=alike, as_stored=True), existing, template)
    changed = diff.changed_fields(matched, compared, template, on="row_number", phones_normalised=True,
                                  equal=alike) if matched.height else \
        pl.DataFrame(schema={"row_number": pl.Int64, "iri": pl.String, "changed": pl.List(pl.String)})
    if unmapped is not None and matched.height:  # a PUT clears what the record holds unmapped
        held = unmapped.filter(differs)
        changed = changed.with_columns(pl.when(held).then(pl.concat_list("changed", pl.lit([UNMAPPED])))
                                       .otherwise("changed").alias("changed"))
    zeros = diff.kept_zeros(matched, existing, template)
    updated = matched if mode != "create-only" else matched.clear()  # rows an update may leave as stored
    blanks, merged = diff.kept_blanks(updated, existing, template), diff.kept_items(updated, existing, template)
    changed = changed.select("row_number", "changed").filter(pl.col("changed").list.len() > 0)
    w = matched.join(changed.rename({"changed": "__changed"}), on="row_number", how="inner",
                     maintain_order="left") if mode != "create-only" else matched.clear()
    w = w.select(_write_columns(w, template))
    if template.mode != "replace":  # a PUT starts from the whole record instead
        w = _with_records(w, raw.with_columns(matched["row_number"]), existing)
    stamps = matched.select("row_number").with_columns(
        raw.select(pl.col(c) if c in raw.columns else pl.lit(None, pl.String).alias(c) for c in ("updatedAt", "createdAt")))
    taken = taken.filter(pl.col("row_number").is_in(changed["row_number"].implode()))  # said where it is written
    return changed, write_ops(w, template, tags, matches.records), zeros, blanks, merged, stamps, taken


UNMAPPED = "(unmapped)"
"""The changed-field name of a PUT that clears fields the template does not map
(`clear_unmapped: true`), which the record holds."""


def _holds_unmapped(iris: pl.Series, records: dict[str, dict], template: Template) -> pl.Series | None:
    """Per matched record (`iris`), whether it holds a value in a field the template does not
    map, which a `clear_unmapped` PUT clears (None for other templates): such a record changes
    although every mapped field is equal (the sheet is the whole record)."""
    if template.mode != "replace" or not template.clear_unmapped:
        return None
    mapped = {m.field.split(".")[0] for m in template.mappings}
    fields = [f for f in diff.PUT_FIELDS if f not in mapped]
    subs = [m.field.split(".", 1)[1] for m in template.mappings if m.field.startswith("address.")]
    parts = [k for k in diff.ADDRESS_KEYS if k not in subs] if subs else []  # address mapped in part

    def holds(record: dict) -> bool:
        address = record.get("address") or {}
        return any(record.get(f) not in (None, "", [], {}) for f in fields) or \
            any(address.get(k) not in (None, "") for k in parts)
    return pl.Series([holds(records[i]) for i in iris.to_list()], dtype=pl.Boolean)


def _write_columns(w: pl.DataFrame, template: Template) -> list[str]:
    """The columns `bodies.write_ops` reads: `row_number`, `iri`, `__changed` and the fields."""
    fields = [m.field for m in template.mappings]
    cols = dict.fromkeys(["row_number", "iri", "__changed", *fields, *template.identifiers])
    return [c for c in cols if c in w.columns]


def _with_records(w: pl.DataFrame, raw: pl.DataFrame, existing: pl.DataFrame) -> pl.DataFrame:
    """`w` plus the matched record's raw (`<top>#r`) and normalised (`<field>#e`,
    `diff.existing_values`) values; `raw` and `existing` have one row per matched row."""
    r = raw.drop("@id", strict=False).rename(lambda c: c if c == "row_number" else f"{c}#r")
    e = existing.drop("iri").rename(lambda c: c if c == "row_number" else f"{c}#e")
    return w.join(r, on="row_number", how="left", maintain_order="left").join(
        e, on="row_number", how="left", maintain_order="left")


def _row_frame(mapped: pl.DataFrame, matched: pl.DataFrame, changed: pl.DataFrame,
               conflicts: pl.DataFrame, errors: set, mode: str, template: Template,
               ops: pl.DataFrame) -> pl.DataFrame:
    """The plan's rows (`ROW_SCHEMA`), one per mapped row in input order: decided by polars
    expressions, then the rows that got an operation take its op, key and changes. `matched`:
    `Matches.iri`, so an invalid row names the record it matched too (the report and the
    with-status copy show it; the next run finds the row by it), unless it is in conflict as
    well (a record in doubt, which the copy's IRI would settle unseen)."""
    rn = mapped["row_number"]
    written = ops.select(pl.col("row_numbers").list.first().alias("row_number"), pl.col("op").alias("__op"),
                         "changes", "cleared", "key")  # an operation's IRI is its row's
    base = pl.concat([mapped.select("row_number", _title(template)),
                      _at_rows(rn, matched.select("row_number", "iri")),
                      _at_rows(rn, conflicts.select("row_number", pl.col("message").alias("__msg"))),
                      _at_rows(rn, changed.select("row_number", pl.lit(True).alias("__changed"))),
                      _at_rows(rn, written, {"changes": [], "cleared": []})], how="horizontal")
    rn, iri, op_ = pl.col("row_number"), pl.col("iri"), pl.col("__op")
    invalid, conflict = rn.is_in(list(errors)), pl.col("__msg").is_not_null()  # every conflict has one
    exists = pl.lit(mode == "create-only") & pl.col("__changed").fill_null(False)
    op = (pl.when(op_.is_not_null()).then(op_).when(invalid).then(pl.lit("invalid"))
          .when(conflict).then(pl.lit("conflict"))
          .when(iri.is_null() | exists).then(pl.lit("skip")).otherwise(pl.lit("unchanged")))
    note = (pl.when(op_.is_not_null() | invalid).then(None).when(conflict).then(pl.col("__msg"))
            .when(iri.is_null()).then(pl.lit(MODE_SKIPS[0]))
            .when(exists).then(pl.lit(MODE_SKIPS[1])).otherwise(None))
    disputed = invalid & conflict & op_.is_null()  # its record is in doubt: no IRI for the copy
    return base.select(rn, op.alias("op"), pl.when(disputed).then(None).otherwise(iri).alias("iri"),
                       pl.col("title"), "changes", "cleared",
                       note.alias("note"), pl.col("key"),
                       pl.lit("organizations").alias("resource")).cast(ROW_SCHEMA)


def _at_rows(rn: pl.Series, frame: pl.DataFrame, blank: dict | None = None) -> pl.DataFrame:
    """`frame`'s columns but `row_number`, one line per value of `rn` (unique row numbers) in
    its order: `frame`'s line of that row (its `row_number`s are some of `rn`'s, each once),
    else `blank`'s values (null where it names none). A gather by position, not a join: a
    left join fills the rows it lacks with null, and filling 100k list cells costs more."""
    cols = frame.drop("row_number")
    if frame["row_number"].equals(rn):  # one line per row, in order (e.g. every row valid)
        return cols
    keys = frame["row_number"]
    pos = rn.search_sorted(keys) if rn.is_sorted() else pl.DataFrame({"row_number": rn}).with_row_index(
        "__i").join(keys.to_frame(), on="row_number", how="right", maintain_order="right")["__i"]
    at = pl.repeat(frame.height, len(rn), dtype=pl.UInt32, eager=True).scatter(
        pos, pl.int_range(frame.height, dtype=pl.UInt32, eager=True))
    fill = pl.DataFrame({c: [(blank or {}).get(c)] for c in cols.columns}, schema=cols.schema)
    # one chunk: a gather of nested values from several chunks is many times slower
    return pl.concat([cols, fill]).rechunk().select(pl.all().gather(at))


def _kept_zero_issues(zeros: pl.DataFrame, template: Template, file: str, sh: Sheet) -> list[Issue]:
    """A `leading-zero` warning per field left as stored because the sheet's value is the
    record's without its leading zeros (`diff.kept_zeros`; BR-05: a spreadsheet's number)."""
    out = []
    for rn, field_name, value, record in zeros.iter_rows():
        col = template.column_of(field_name)
        out.append(with_cell(Issue(
            "leading-zero", rn, col, value, "a leading 0 is part of the value (BR-05)",
            f"{file}:{rn}:{col}: \"{value}\" is the record's \"{record}\" without its leading zero(s), as a "
            f"spreadsheet stores a number: {field_name} stays \"{record}\"; format the column as Text to "
            "keep the zeros", "warning", file, sh.sheet_name),
            sh.letters, sh.sheet_name))
    return out


def _tag_op(title: str) -> Operation:
    return Operation(key=f"tag:{title}", op="create", method="POST", path="/tags", body={"title": title},
                     row_numbers=[], title=title)


def _title(template: Template) -> pl.Expr:
    field_name = "title" if template.mapping("title") else "description"
    return (pl.col(field_name) if template.mapping(field_name) else pl.lit(None, pl.String)).alias("title")


def _frame_issues(frame: pl.DataFrame) -> list[Issue]:
    return [Issue(**r) for r in frame.iter_rows(named=True)]


def _conflict_issues(conflicts: pl.DataFrame, template: Template, sh: Sheet, file: str,
                     mapped: pl.DataFrame, matched: pl.DataFrame) -> list[Issue]:
    """One error per row in conflict, naming the sheet column of the identifier involved
    (the alphabetically first when several are), its cell and its (normalised) value, and
    what fixes it: an IRI column only helps a row that matched a record (`matched`:
    `Matches.iri`), not two new rows sharing a value."""
    iri_col = template.iri_column or "crm_iri"
    fix = {"iri-mismatch": f"if the row is not that organization (sorted beside its IRI, or another organization "
                           f"typed over its row), clear its {template.iri_column}: its identifiers then decide; "
                           "if it is, and its id changed, change the id in the CRM first (a sheet never changes "
                           "the id of the record its IRI names)",
           "identifier-mismatch": "another organization sharing that identifier? fix the row; if it is that "
                                  "organization, correct the record's value in the CRM first",
           "ambiguous-match": "fix its identifiers so they point at one record, or name its record's IRI "
                              f"in a {iri_col} column"}
    new = ("keep one row per organization: if the rows are one organization, merge them into one; if they "
           "are several, correct the value they share")
    known = set(matched.drop_nulls("iri")["row_number"].to_list()) if conflicts.height else set()
    originals = sheet_rows(sh.frame, conflicts["row_number"]) if conflicts.height else {}
    normalised = _normalised_cells(conflicts, template, originals, mapped)
    copied = (f"if a row is another organization (a row copied with its {iri_col}?), clear its {iri_col} so it "
              "is created; if the rows are one organization, keep one row")
    # a row that keeps the record (its identifiers name it) is the one to keep: deleting it
    # would leave the other row alone naming the record, to write its values over it (a review)
    kept = (f"if this row is another organization (a row copied with its {iri_col}?), clear its {iri_col} so it "
            "is created; if it is that organization, delete this row, not the one that keeps it")
    return [with_cell(Issue(t, rn, template.iri_column if field_name == "@id" else
                            _column_holding(template, field_name, value, originals.get(rn, {}), normalised),
                            value, "one row per record", f"{file}:{rn}: {msg}; " + (
                                (kept if KEPT in msg else copied)
                                if field_name == "@id" else fix.get(
                                t, new + (f", or name each row's record by its IRI in a {iri_col} column (an export "
                                          "has one)" if rn in known else ""))), "error", file, sh.sheet_name),
                      sh.letters, sh.sheet_name)
            for rn, t, msg, field_name, value in conflicts.iter_rows()]


def _items(cell: str | None, split: str | None) -> list[str]:
    """A cell's items as a source reads them (split, trimmed, blanks left out)."""
    parts = (cell or "").split(split) if split else [cell or ""]
    return [p.strip() for p in parts if p.strip()]


def _normalised_cells(conflicts: pl.DataFrame, template: Template, originals: dict[int, dict],
                      mapped: pl.DataFrame) -> dict[tuple[int, str, str], str | None]:
    """(row_number, column, item) -> the item as matching compared it
    (`transforms.normalize_identifier` in the row's region, `match.identifier_frame`), for
    the items of the conflict rows' identifier columns: one polars pass per column."""
    country = pl.col("address.country") if "address.country" in mapped.columns else pl.lit(None, pl.String)
    regions = dict(mapped.filter(pl.col("row_number").is_in(list(originals))).select("row_number", country).rows())
    out: dict[tuple[int, str, str], str | None] = {}
    for field_name in {f for f in conflicts["field"].drop_nulls().to_list() if f in IDENTIFIER_KINDS}:
        m = template.mapping(field_name)
        for s in (s for s in (m.sources if m else ()) if s.column):
            items = [(rn, i) for rn, row in originals.items() for i in _items(row.get(s.column), s.split)]
            if items:
                cells = pl.DataFrame({"v": [i for _, i in items], "r": [regions.get(rn) for rn, _ in items]},
                                     schema={"v": pl.String, "r": pl.String})
                got = cells.select(normalize_identifier(IDENTIFIER_KINDS[field_name], pl.col("v"), region=pl.col("r"),
                                                        default_region=template.default_region)).to_series()
                out |= {(rn, s.column, i): g for (rn, i), g in zip(items, got.to_list())}
    return out


def _column_holding(template: Template, field_name: str | None, value: str | None, row: dict,
                    normalised: dict) -> str | None:
    """The sheet column of `field_name` whose cell in `row` (a `validate.sheet_rows` row) holds
    the identifier `value` as compared (an e-mail in lower case, a phone in E.164): `Email 2`,
    not the field's first column, when the shared address is the second one; else the first.
    Tried in order over every column, so a looser test never beats a stricter one elsewhere:
    the same text (case aside), the same as matching compared it (`normalised`:
    `_normalised_cells`), then a cell holding the value (an id in a LinkedIn URL)."""
    m = template.mapping(field_name) if field_name else None
    if m is None:
        return None
    rn = row.get("row_number")
    cells = [(s.column, _items(row.get(s.column), s.split)) for s in m.sources if s.column]
    tests = (lambda c, i: i.lower() == value.lower(), lambda c, i: normalised.get((rn, c, i)) == value,
             lambda c, i: value.lower() in i.lower())
    for test in tests if value else ():
        for column, items in cells:
            if any(test(column, i) for i in items):
                return column
    return m.columns[0] if m.columns else None


def _same_title_issues(rows: pl.DataFrame, matches, template: Template, file: str,
                       sheet: str | None) -> list[Issue]:
    """A `possible-duplicate` warning per row that matched no record although a record no row
    matched has its title (case and outer spaces aside) and its domain (the first e-mail's,
    else the website's host): perhaps the same organization under other identifiers (BR-11
    without its IRI: a new e-mail at the same domain). A title alone is no sign (many firms
    share a name). Only when planning listed every record (scan): the API has no title filter
    (crm-api.md §8.3)."""
    m = template.mapping("title")
    if matches.total is None or matches.frame is None or m is None or "title" not in rows.columns:
        return []
    other = [c for c in ("emailAddresses", "website") if c in rows.columns and c in matches.frame.columns]
    if not other:
        return []
    skip = matches.conflicts["row_number"].implode()
    new = rows.select("row_number", "title", *other).hstack(_of_rows(matches.iri, rows).select("iri")).filter(
        pl.col("iri").is_null() & pl.col("title").is_not_null() & ~pl.col("row_number").is_in(skip))
    if not new.height:
        return []
    free = pl.repeat(True, matches.frame.height, eager=True).scatter(matches.iri["rec"].drop_nulls(), False)
    keys = matches.frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("__rec"), "title").filter(
        free).select("__rec", _title_key())
    # the same title and the same domain: the first e-mail's, else the website's host (the
    # records' other fields and the domains only of the pairs that share a title: few)
    pairs = new.with_columns(_title_key()).join(keys, on="__k")
    pairs = pairs.hstack(matches.frame.select("@id", *(pl.col(c).alias(f"{c}#r") for c in other))[pairs["__rec"]])
    hits = pairs.filter(_domains(pairs, other, api=False) == _domains(pairs, [f"{c}#r" for c in other], api=True)) \
        .group_by("row_number", "title").agg(pl.col("@id").unique().sort()) \
        .select("row_number", "@id", "title").sort("row_number")
    col, iri_col = m.sources[0].column, template.iri_column or "crm_iri"
    return [Issue("possible-duplicate", rn, col, title, "one record per organization",
                  f'{file}:{rn}:{col}: this row creates "{title}", but {", ".join(iris[:3])} '
                  f"{'has' if len(iris) == 1 else 'have'} that title and an e-mail domain or website "
                  f"of the row's, and no row matches {'it' if len(iris) == 1 else 'them'}; if it is the "
                  f"same organization, give the row its IRI in a {iri_col} column (or an identifier the "
                  "record holds)", "warning", file, sheet)
            for rn, iris, title in hits.iter_rows()]


def _unmatchable_issues(rows: pl.DataFrame, matches, template: Template, mode: str, file: str,
                        sheet: str | None) -> list[Issue]:
    """A `no-identifier` warning per row that creates a record although none of the template's
    identifiers has a value in it (and it has no IRI): no later run can match it to that
    record, so each run creates it again (a trial: a blanked customerId cell, a copy a week)."""
    fields = [f for f in template.identifiers if f in rows.columns]
    if not fields or mode == "update-only":
        return []
    empty = [pl.col(f).list.len().fill_null(0) == 0 if isinstance(rows.schema[f], pl.List)
             else pl.col(f).cast(pl.String).str.strip_chars().fill_null("") == "" for f in fields]
    skip = matches.conflicts["row_number"].implode()
    new = rows.select("row_number", *fields).hstack(_of_rows(matches.iri, rows).select("iri")).filter(
        pl.col("iri").is_null() & pl.all_horizontal(empty) & ~pl.col("row_number").is_in(skip))
    cols = [c for f in fields for c in (s.column for s in template.mapping(f).sources) if c]
    col = cols[0] if cols else fields[0]
    iri_col = template.iri_column or "crm_iri"
    return [Issue("no-identifier", rn, col, None, "a row is matched by the template's identifiers",
                  f"{file}:{rn}:{col}: this row creates a record but has no {', '.join(cols or fields)}, so no "
                  f"later run can match it to that record: each run creates it again; fill one in (or give the "
                  f"row the record's IRI in a {iri_col} column, as the with-status copy does)", "warning", file, sheet)
            for rn in new["row_number"].to_list()]


def _lost_zero_ids(rows: pl.DataFrame, matches, template: Template, file: str, sh: Sheet) -> list[Issue]:
    """A `possible-duplicate` warning per row that matched no record although its customerId or
    KvK number, all digits, is a record's without its leading zeros (`2012345` for `02012345`:
    a spreadsheet drops them, BR-05). Not matched on it: `0123` and `123` may be two ids.
    Only when planning listed every record (as these identifiers need: no API filter)."""
    fields = [f for f in ("customerId", "chamberOfCommerceNumber") if f in template.identifiers
              and f in rows.columns]
    if matches.total is None or matches.frame is None or not fields:
        return []
    new = rows.hstack(_of_rows(matches.iri, rows).select("iri")).filter(pl.col("iri").is_null())
    out = []
    for f in fields:
        digits = pl.col(f).str.strip_chars()
        key = digits.str.strip_chars_start("0")
        mine = new.filter(digits.str.contains(r"^[1-9][0-9]*$")).select("row_number", digits.alias("v"))
        theirs = matches.frame.filter(pl.col(f).str.strip_chars().str.contains(r"^0+[0-9]+$")).select(
            "@id", pl.col(f).str.strip_chars().alias("held"), key.alias("v"))
        col = template.column_of(f)
        out += [with_cell(Issue("possible-duplicate", rn, col, v, "a leading 0 is part of the value (BR-05)",
                                f"{file}:{rn}:{col}: this row creates {f} {v}, but {iri} holds {held}: a "
                                "spreadsheet drops leading zeros; if it is that organization, type the zeros "
                                "(format the column as Text) or give the row its IRI", "warning", file,
                                sh.sheet_name), sh.letters, sh.sheet_name)
                for rn, v, iri, held in mine.join(theirs, on="v").sort("row_number").select(
                    "row_number", "v", "@id", "held").iter_rows()]
    return out


def _typed_phone_twins(rows: pl.DataFrame, matches, template: Template, file: str, sh: Sheet) -> list[Issue]:
    """A `possible-duplicate` warning per number of a row that matched no record whose digits
    end with those of a number a record holds as typed (no E.164: `91.24.45.40`, which an
    earlier load could not read; seven or more digits, the trunk prefix 0 aside): a trial's
    second source wrote `+33 91 24 45 40` for it and made a second organization. Not matched
    on it: a number without its country code is no identifier. Only when planning listed
    every record (a scan); a lookup cannot find a record by a number it holds as typed."""
    if matches.total is None or matches.frame is None or "phoneNumbers" not in rows.columns \
            or "phoneNumbers" not in matches.frame.columns or not template.mapping("phoneNumbers"):
        return []
    held = matches.frame["phoneNumbers"].explode().struct.field("phoneNumber")
    if held.str.starts_with("+").fill_null(True).all():  # every number held in E.164 (as a bulkcrm load leaves them)
        return []
    last7 = pl.col("__d").str.slice(-7)
    held_back = matches.conflicts["row_number"].implode()  # rows in conflict create nothing
    new = rows.hstack(_of_rows(matches.iri, rows).select("iri")).filter(
        pl.col("iri").is_null() & ~pl.col("row_number").is_in(held_back)).select(
        "row_number", diff.phone_numbers(pl.col("phoneNumbers")).alias("number")).explode("number").filter(
        pl.col("number").str.starts_with("+")).with_columns(pl.col("number").str.slice(1).alias("__d"))
    typed = matches.frame.select("@id", diff.phone_numbers(pl.col("phoneNumbers")).alias("held")).explode(
        "held").filter(~pl.col("held").str.starts_with("+")).with_columns(
        pl.col("held").str.replace_all(r"\D", "").str.strip_chars_start("0").alias("__t")).filter(
        pl.col("__t").str.len_chars() >= 7)
    if not new.height or not typed.height:
        return []
    pairs = new.with_columns(last7.alias("__k")).join(typed.with_columns(pl.col("__t").str.slice(-7).alias("__k")),
                                                      on="__k").filter(pl.col("__d").str.ends_with(pl.col("__t")))
    col = template.column_of("phoneNumbers")
    return [with_cell(Issue("possible-duplicate", rn, col, number, "one organization, one record (issue 5)",
                            f"{file}:{rn}:{col}: this row creates an organization with {number}, but {iri} holds "
                            f"\"{held}\", the same digits without the country code: if it is that organization, "
                            "give the row its IRI (or write the record's number in full in the CRM first)",
                            "warning", file, sh.sheet_name), sh.letters, sh.sheet_name)
            for rn, number, iri, held in pairs.sort("row_number").unique(["row_number", "@id"], keep="first",
                                                                         maintain_order=True)
            .select("row_number", "number", "@id", "held").iter_rows()]


def _title_key() -> pl.Expr:
    """`__k`: the title in lower case, trimmed (a sheet's titles are squished by the `title`
    normaliser; a record's as stored)."""
    return pl.col("title").str.to_lowercase().str.strip_chars().alias("__k")


def _domains(frame: pl.DataFrame, fields: list[str], *, api: bool) -> pl.Series:
    """Per row of `frame`, the domain of the first e-mail address (after its `@`), else the
    website's host (lower case, `www.` dropped), from `fields` (`emailAddresses`/`website`
    columns, possibly with a suffix such as `#r`); `api`: e-mails in API shape ([{email}]).
    The host (a regex with a capture: slow) is worked out only for rows without an e-mail."""
    email = next((f for f in fields if f.startswith("emailAddresses")), None)
    website = next((f for f in fields if f.startswith("website")), None)
    out = pl.repeat(None, frame.height, dtype=pl.String, eager=True)
    if email:
        first = pl.col(email).list.first()
        first = first.struct.field("email") if api else first
        out = frame.select(first.str.split("@").list.get(1, null_on_oob=True).str.strip_chars()).to_series()
    if website and out.has_nulls():
        at = out.is_null().arg_true()
        host = frame[at].select(pl.col(website).str.extract(
            r"^(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:www\.)?([^/:?#\s]+)")).to_series()
        out = out.scatter(at, host)
    return out.str.to_lowercase()


ORG_IRI = re.compile(r"/organizations/[^/\s]+")
"""An organization's IRI (crm-api.md §1, §8), as an export writes it in the IRI column."""


def _not_found_issues(nf: pl.DataFrame, template: Template, file: str, sheet: str | None,
                      forbidden: frozenset[str] = frozenset()) -> list[Issue]:
    """An error per row whose IRI column names no record: `not-found` (deleted since, or
    `forbidden`: one the key may not read, another tenant's, crm-api.md §2), or `invalid-iri`
    when the cell is no organization IRI at all (`1`, a bare id: the IRI column set to a column
    of one's own IDs, which would never match)."""
    col = template.iri_column
    return [Issue("not-found", rn, col, iri, "IRI of an existing record (crm-api.md §1)",
                  f"{file}:{rn}:{col}: " + (
                      f"{iri} is not this API key's to read (403: another tenant's record?); check the "
                      "IRI, or remove it to create a new organization" if iri in forbidden else
                      f"no record {iri}; remove the IRI to create a new organization"),
                  "error", file, sheet) if ORG_IRI.fullmatch(iri) else
            Issue("invalid-iri", rn, col, iri, "IRI /organizations/{id} (crm-api.md §1)",
                  f"{file}:{rn}:{col}: {iri!r} is not an organization IRI (/organizations/{{id}}, as an export "
                  "writes it); " + ("write its path alone, without host or trailing /" if "/organizations/" in iri
                                    else f"the template's iri_column {col!r} must hold such IRIs (a column of "
                                    "your own IDs maps to customerId instead)"), "error", file, sheet)
            for rn, iri in nf.iter_rows()]
