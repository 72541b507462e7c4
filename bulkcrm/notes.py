"""Stage 4 (notes): plan organization notes, alone or with their organizations (issue 8).

Input: a read sheet of notes, the notes template (`template.notes_template`) and, per note row,
its organization: an IRI, a `$ref:row:<n>` for an organization created by the same plan, or
why it has none. Output: `NotesPart` (plan rows, operations, issues) that `plan.plan` adds to
its `Plan`.

Rules (crm-api.md §9):
- notes have no identifiers filter: the planner lists the notes of the organizations involved
  (one paged listing `/organizations/{id}/notes` per organization, ⌈n/30⌉ requests each) and
  matches a row to a note on the template's content key (default organization + createdAt +
  description; descriptions compared trimmed with whitespace collapsed, dates as RFC 3339 UTC).
  A row without createdAt keys on the other fields only (it matches a note of any date). A
  row whose createdAt is an Excel cell hiding its time under a date-only format (`hidden_times`)
  that matches no note matches the one note with its other key fields dated midnight of the
  row's day (in the template's time zone), when no other row claims it: an earlier bulkcrm read
  such a cell as the date alone (`midnight_pairs`); the note keeps its date, and the plan says
  how many rows did so. A
  row whose `crm_iri` cell holds a listed note's IRI (`/organizations/{id}/notes/{id}`, as a
  notes export writes it) is that note, whatever its content: editing the text of an exported
  note patches it instead of adding a second note;
- a key matched by several rows is a `duplicate-row` conflict, by several notes an
  `ambiguous-match` conflict; a match is unchanged, patch (changed non-key fields, merge patch)
  or replace (template `mode: replace`, PUT of the whole note);
- mirror mode (run option, never the default) deletes the listed notes of an involved
  organization that no row matches; an organization with an invalid or conflicting note row
  is left alone;
- a note of an organization created in the same plan is posted to `$ref:row:<n>/notes` and
  depends on `row:<n>`: if that create fails, the note is failed, never sent elsewhere.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import diff
from .client import Client
from .errors import EmptyInputError, InputError, Issue, first_few, with_cell
from .export import IRI_COLUMN  # where a notes export names each note
from .lookups import REF_PREFIX, LookupCache, resolve_lookups
from .mapping import chain, map_rows
from .normalize import clean_datetime
from .notes_orgs import is_note_iri, note_owner, targets_by_reference, targets_same_rows
from .plan import Operation
from .planfile import duration_text
from .read import Sheet
from .template import Template, read_columns
from .validate import Validation, validate
from .vocab import MODE_SKIPS

log = logging.getLogger(__name__)

RESOURCE = "organization_notes"
NOTE_WRITABLE = ("createdAt", "title", "description", "flagged", "isPrivate", "author", "category")
"""OrganizationNote fields a PUT sends (crm-api.md §9.1; `organizationId` comes from the URL)."""
PREVIEW = 60
"""Characters of a description shown as a row's title when the note has none."""
_SEP, _NULL = "\x1f", "\x00"


@dataclass
class NotesPart:
    """The notes half of a plan.

    Attributes:
        rows: plan row dicts (`resource` = organization_notes; `row_number` None for deletes).
        operations: note writes in send order (creates/updates in row order, then deletes).
        issues: validation, lookup, organization and conflict issues of note rows.
        requests: requests spent planning the notes; `listings`: (those of them that listed
            existing notes, the organizations listed: one paged listing each). notes: remarks
            for the plan text.
        strategy: how organizations were matched (`lookup`/`scan`), when the notes sheet did.
        names: IRI -> name of the lookups' IRIs the changes show (categories), `Plan.names`.
        header_row: a separate notes sheet's header row as read (`Plan.notes_header_row`).
    """

    rows: list[dict] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    requests: int = 0
    listings: tuple[int, int] = (0, 0)
    notes: list[str] = field(default_factory=list)
    strategy: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    header_row: int | None = None


def plan_with_orgs(org_rows: list[dict], org_mapped: pl.DataFrame, sheet: Sheet, template: Template,
                   client: Client, *, mode: str, strategy: str, mirror: bool) -> NotesPart:
    """Plan the notes of an organizations template's `notes:` section.

    Args:
        org_rows: the organization plan's row dicts (op, iri, key per row).
        org_mapped: the organizations' mapped frame (to find a separate sheet's organizations).
        sheet: the organizations' sheet (its workbook holds a separate notes sheet).
        template: the organizations template (with `notes`). client: lookups only.
        mode, strategy, mirror: as `plan.plan`.

    Raises:
        InputError: the notes sheet cannot be read or lacks a column. ApiError: a lookup failed.
    """
    spec = template.notes
    nt = spec.template
    if spec.sheet is None:
        return plan_notes(sheet, nt, client, mode=mode, strategy=strategy, mirror=mirror,
                          targets=targets_same_rows(org_rows), same_rows=True)
    org_targets = targets_same_rows(org_rows, sheet=sheet.sheet_name)
    notes_sheet = read_notes_sheet(sheet.path, spec.sheet, template.path, columns=read_columns(nt))
    if notes_sheet is None:  # nothing involves an organization: no delete, also in mirror mode
        return NotesPart(notes=[empty_notes_sheet(spec.sheet)])
    part = plan_notes(notes_sheet, nt, client, mode=mode, strategy=strategy, mirror=mirror,
                      org_side=(org_mapped, org_targets, sheet.sheet_name),
                      key_prefix=f"note:{notes_sheet.sheet_name or spec.sheet}:")
    part.header_row = notes_sheet.header_row
    return part


def read_notes_sheet(path: str, sheet: str, template_path: str | None, *,
                     columns: Collection[str] = (), header_row: int | None = None) -> Sheet | None:
    """The workbook's notes `sheet` that an organizations template names (`notes: {sheet: …}`),
    or None when it is blank (a run without notes: `empty_notes_sheet`). `columns`: the notes
    template's (`read.read`: they find a header under a title block), or the `header_row`
    planning read.

    Raises:
        InputError: it cannot be read (no such sheet, a CSV, ...); the message says the
            template asked for it, and how a run without notes keeps the sheet."""
    from .read import EXCEL_EXTENSIONS, read
    try:
        return read(path, sheet=sheet, columns=columns, header_row=header_row)
    except EmptyInputError:
        return None
    except InputError as e:
        hint = "; for a run without notes: keep the sheet, left blank" \
            if Path(path).suffix.lower() in EXCEL_EXTENSIONS else ""
        raise InputError(f"{e} (the notes sheet of template {template_path}: notes: {{sheet: {sheet}}}{hint})") from None


def empty_notes_sheet(sheet: str) -> str:
    """The remark of a blank notes sheet (`read_notes_sheet` None)."""
    return f"sheet {sheet!r} is empty: no notes this run"


def plan_notes(sh: Sheet, nt: Template, client: Client, *, mode: str = "upsert",
               strategy: str = "auto", mirror: bool = False, targets: pl.DataFrame | None = None,
               same_rows: bool = False, org_side: tuple | None = None,
               key_prefix: str = "note:") -> NotesPart:
    """Plan one sheet of notes (see module docstring).

    Args:
        sh: the read notes sheet. nt: the notes template (resource organization_notes).
        targets: `TARGET_SCHEMA` frame per row (one sheet: from the organization plan); None
            = find each row's organization through `nt.notes.organization`.
        same_rows: the notes share the organizations' rows: a row with no note cell is no note.
        org_side: (organizations' mapped frame, their targets, sheet name) of a two-sheet run.
        key_prefix: operation keys are `<prefix><row_number>`.

    Raises:
        InputError: a column the template needs is missing. ApiError: a lookup failed.
    """
    start, file = client.requests_sent, Path(sh.path).name
    part = NotesPart()
    sheet_name = sh.sheet_name if not same_rows else None
    nt, mapped, frame, checked = validate_notes(sh, nt, same_rows=same_rows)
    cache = LookupCache()
    resolved = resolve_lookups(checked.valid, nt, client, cache=cache, file=file, frame=sh.frame, sheet=sh.sheet_name,
                               letters=sh.letters)
    part.issues += [Issue(**r) for r in checked.issues.iter_rows(named=True)] + resolved.issues
    named = _note_iris(frame)
    if targets is None:
        found = targets_by_reference(frame, nt.notes.organization, client, strategy=strategy,
                                     org_side=org_side, file=file, sheet=sh.sheet_name, note_iris=named)
        targets, part.strategy = found.targets, found.strategy
        part.issues += [with_cell(i, sh.letters, sh.sheet_name) for i in found.issues]
        part.notes += found.notes
    bad = {i.row_number for i in part.issues if i.severity == "error"}
    _decide(part, mapped, resolved.rows, targets, bad, nt, client, mode=mode, mirror=mirror,
            file=file, sheet_name=sheet_name, key_prefix=key_prefix, named=named, hidden=hidden_times(sh, nt))
    part.names = cache.names_in(pl.Series([c.get(side) for o in part.operations for c in o.changes
                                           for side in ("before", "after")], dtype=pl.String))
    part.requests = client.requests_sent - start
    return part


def _note_iris(frame: pl.DataFrame) -> pl.DataFrame:
    """`row_number`, `iri` of the rows whose `crm_iri` cell holds a note IRI."""
    if IRI_COLUMN not in frame.columns:
        return pl.DataFrame(schema={"row_number": pl.Int64, "iri": pl.String})
    col = pl.col(IRI_COLUMN)
    return frame.filter(is_note_iri(col)).select("row_number", col.str.strip_chars().alias("iri"))


def validate_notes(sh: Sheet, nt: Template, *, same_rows: bool = False
                   ) -> tuple[Template, pl.DataFrame, pl.DataFrame, Validation]:
    """Map and validate a sheet's notes offline (no lookups): `nt` as it applies to the sheet's
    columns (`Template.for_columns`), the mapped note rows, the sheet's note rows and the
    `validate.Validation`. `same_rows`: the notes share the organizations' rows, so a row with
    no note cell is no note, and what the reader found is the organizations' to report."""
    file = Path(sh.path).name
    frame = sh.frame
    nt, _ = nt.for_columns(frame.columns)
    mapped = map_rows(frame, nt, path=f"{file}!{sh.sheet_name}" if sh.sheet_name else file,
                      header_row=sh.header_row, other_sheets=sh.other_sheets)
    if same_rows:
        mapped = _with_a_note(mapped, nt)
        frame = frame.filter(pl.col("row_number").is_in(mapped["row_number"].implode()))
    checked = validate(mapped, nt, sheet=frame, read_issues=[] if same_rows else sh.issues,
                       file=file, sheet_name=sh.sheet_name, letters=sh.letters,
                       numbers=None if same_rows else sh.numbers)
    return nt, mapped, frame, checked


NOTE_TEXT_FIELDS = ("description", "title")
"""The note fields whose cells make a row of an organizations sheet hold a note (`_with_a_note`)."""


def _with_a_note(mapped: pl.DataFrame, nt: Template) -> pl.DataFrame:
    """One sheet: only rows where a note's text column (`NOTE_TEXT_FIELDS`) holds something
    are notes, or where any note column does when the template reads no note text from a
    column. A date, flag or category cell alone makes no note: a sheet's `last_updated` column
    read as each note's date is filled on every row, and a row without note text would be an
    invalid note every week (a trial)."""
    cols = [m.field for m in nt.mappings if any(s.column for s in m.sources)]
    cols = [c for c in cols if c in NOTE_TEXT_FIELDS] or cols
    if not cols:
        return mapped
    return mapped.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in cols))


# --- deciding ------------------------------------------------------------------------------

def _decide(part: NotesPart, mapped: pl.DataFrame, rows: pl.DataFrame, targets: pl.DataFrame,
            bad: set, nt: Template, client: Client, *, mode: str, mirror: bool, file: str,
            sheet_name: str | None, key_prefix: str, named: pl.DataFrame | None = None,
            hidden: frozenset[int] = frozenset()) -> None:
    """Match rows to existing notes, then write the plan rows and operations into `part`.

    `rows`: the valid, looked-up note rows; `targets`: `TARGET_SCHEMA` for every row;
    `named`: `row_number`, `iri` of rows naming their note (`_note_iris`): matched by it;
    `hidden`: rows whose createdAt cell's format hides its time (`hidden_times`)."""
    spec = nt.notes
    key = [k for k in spec.content_key if k != "organization"
           and (k != "createdAt" or nt.mapping("createdAt") is not None)]
    good = rows.join(targets, on="row_number", how="left").filter(
        ~pl.col("row_number").is_in(list(bad)) & pl.col("org").is_not_null())
    orgs = sorted({o for o in good["org"].to_list() if not o.startswith(REF_PREFIX)})
    before = client.requests_sent
    existing, by_iri = _existing_notes(client, orgs, nt)
    part.listings = (client.requests_sent - before, len(orgs))
    good = good.with_columns(_kind_and_key(key, good.schema))
    by_name = _named_hits(named, good, existing)  # the other rows match on the content key
    moved = _moved(named, good)
    gone = _gone(named, good, by_name, moved)
    keyed = good.filter(~pl.col("row_number").is_in([*by_name["row_number"], *moved]))
    pairs = pl.concat([keyed.select("row_number", "kind", "key").join(
        _existing_keys(existing, key), on=["kind", "key"]).select("row_number", "iri"), by_name])
    late, late_conflicts = midnight_pairs(keyed.filter(pl.col("row_number").is_in(list(hidden))), pairs, existing,
                                          key, time_zone(nt))
    pairs = pl.concat([pairs, late.select("row_number", "iri")])
    if late.height:  # the row takes its note's date: equal for the diff, a PUT keeps it too
        good = good.join(late.select("row_number", pl.col("createdAt").alias("__midnight")),
                         on="row_number", how="left", maintain_order="left").with_columns(
            pl.coalesce("__midnight", "createdAt").alias("createdAt")).drop("__midnight")
    conflicts = _conflicts(keyed, pairs, ", ".join(["organization", *key]))
    for rn, why in late_conflicts.items():
        conflicts.setdefault(rn, why)
    if late.height:
        n, which = late.height, first_few(map(str, late["row_number"].sort()))
        part.notes.append(f"{MIDNIGHT}{n} {'row' if n == 1 else 'rows'} matched a note dated midnight of "
                          "the row's day (an earlier bulkcrm read a date-formatted cell without its "
                          f"time); left as stored (row(s) {which})")
    # rows naming one note by its IRI: a row copied with its crm_iri, most likely (a trial)
    copied = {rn: (iri, sorted(rns)) for iri, rns in by_name.group_by("iri").agg("row_number").iter_rows()
              if len(rns) > 1 for rn in rns}
    part.issues += [Issue(t, rn, IRI_COLUMN, copied[rn][0], "one row per note",
                          f"{file}:{rn}:{IRI_COLUMN}: {msg}; rows {_join(copied[rn][1])} name it in {IRI_COLUMN}: if "
                          f"a row is another note (a row copied with its {IRI_COLUMN}?), clear its {IRI_COLUMN} so it "
                          "is created; if the rows are one note, keep one row", "error", file, sheet_name)
                    if t == "duplicate-row" and rn in copied else
                    Issue(t, rn, None, None, "one row per note",
                          f"{file}:{rn}: {msg}; keep one row per note, or change the template's "
                          "content_key", "error", file, sheet_name)
                    for rn, (t, msg) in conflicts.items()]
    part.issues += [Issue(t, rn, IRI_COLUMN, None, "a note belongs to one organization (crm-api.md §9)",
                          f"{file}:{rn}:{IRI_COLUMN}: {msg}", "error", file, sheet_name)
                    for rn, (t, msg) in (moved | gone).items()]
    conflicts |= moved | gone
    hits = pairs.filter(~pl.col("row_number").is_in(list(conflicts)))
    changed = _changed(good.join(hits, on="row_number"), existing, nt, key,
                       set(by_name["row_number"].to_list()))
    ops: dict[int, Operation] = {}
    hit_iri = dict(hits.iter_rows())
    for row in _write_rows(good, conflicts, hit_iri, changed, mode):
        rn = row["row_number"]
        iri = hit_iri.get(rn)
        ops[rn] = (_create_op(row, nt, key_prefix) if iri is None else
                   _update_op(row, by_iri[iri], changed[rn], nt, key_prefix))
    part.operations += [ops[rn] for rn in sorted(ops)]
    part.rows += _row_records(mapped, targets, bad, conflicts, hit_iri, changed, ops, mode,
                              sheet_name)
    named_iris = set(named["iri"].to_list()) if named is not None else set()
    kept = set(hit_iri.values()) | named_iris
    if mirror:  # a note some row names is never deleted, whatever became of that row
        _mirror(part, targets, bad | set(conflicts), by_iri, kept, sorted(gone))
        return
    new_for = set(targets.filter(pl.col("row_number").is_in(
        [rn for rn, op in ops.items() if op.op == "create"]))["org"].drop_nulls().to_list())
    left = sum(iri not in kept and note["__org"] in new_for for iri, note in by_iri.items())
    if left:
        part.notes.append(f"mirror: off; {left} note(s) of the organizations this sheet adds notes "
                          "to match no row (a note whose text or date was edited in the sheet is "
                          "planned as a new note, and the old one stays); --mirror-notes deletes them")
    if spec.mirror:
        part.notes.append("the template allows mirror mode; notes absent from the sheet are "
                          "deleted only with --mirror-notes")


def _named_hits(named: pl.DataFrame | None, good: pl.DataFrame, existing: pl.DataFrame) -> pl.DataFrame:
    """`row_number`, `iri` of the rows in `named` whose IRI is a listed note of the row's own
    organization (`good`: rows with `org`; `existing`: `_existing_notes`' frame)."""
    if named is None or not named.height:
        return pl.DataFrame(schema={"row_number": pl.Int64, "iri": pl.String})
    return (named.join(good.select("row_number", "org"), on="row_number")
            .join(existing.select("iri", pl.col("org").alias("__note_org")), on="iri")
            .filter(pl.col("org") == pl.col("__note_org")).select("row_number", "iri"))


def _gone(named: pl.DataFrame | None, good: pl.DataFrame, by_name: pl.DataFrame,
          moved: dict) -> dict[int, tuple[str, str]]:
    """row_number -> (issue type, message) of rows naming a note that is none of their
    organization's listed notes and did not move (`_moved`): deleted since, or its IRI
    mistyped. Not written (as an organization row naming no record): a new note would stand in
    for one the CRM no longer has, or for another one."""
    if named is None or not named.height:
        return {}
    rows = named.join(good.select("row_number"), on="row_number").filter(
        ~pl.col("row_number").is_in([*by_name["row_number"], *moved]))
    return {rn: ("not-found", f"no note {iri}: it was deleted, or its IRI is mistyped; clear "
                              f"{IRI_COLUMN} to add the row as a new note")
            for rn, iri in rows.select("row_number", "iri").iter_rows()}


def _moved(named: pl.DataFrame | None, good: pl.DataFrame) -> dict[int, tuple[str, str]]:
    """row_number -> (issue type, message) of rows naming a note of another organization than
    the one their organization columns give (a note cannot move: its IRI holds its owner's)."""
    if named is None or not named.height:
        return {}
    rows = named.join(good.select("row_number", "org"), on="row_number").with_columns(
        note_owner(pl.col("iri")).alias("owner")).filter(
        pl.col("org") != pl.col("owner"))
    return {rn: ("moved-note", f"the row names note {iri} of {owner}, but its organization columns "
                             f"point at {org}; a note cannot move to another organization: clear "
                             f"{IRI_COLUMN} to add it to {org} as a new note, or restore the "
                             "organization columns")
            for rn, iri, org, owner in rows.select("row_number", "iri", "org", "owner").iter_rows()}


def list_notes(client: Client, orgs: list[str]) -> tuple[list[dict], list[str]]:
    """The notes of the organizations `orgs` (IRIs; one listing each, crm-api.md §9.2) and,
    for each note, its organization's IRI."""
    rate = client.requests_per_minute
    if rate and len(orgs) >= rate:  # silent meanwhile: say first what it spends, as matching does
        log.info("notes: listing the notes of %s organization(s): %s requests or more ≈ %s at %g/min …",
                 len(orgs), len(orgs), duration_text(round(len(orgs) / rate, 1)), rate)
    notes, owners = [], []
    with client.progress("notes: listing", len(orgs)):  # one request each, more for 30+ notes
        for org in orgs:
            for note in client.list_all(f"{org}/notes"):
                notes.append(note)
                owners.append(org)
    return notes, owners


def _existing_notes(client: Client, orgs: list[str], nt: Template) -> tuple[pl.DataFrame, dict]:
    """The notes of `orgs` (one listing each): frame `iri`, `org`, mapped fields normalised as
    `diff.records_frame`, plus IRI -> note JSON."""
    records, owners = list_notes(client, orgs)
    frame = diff.records_frame(records, nt).with_columns(pl.Series("org", owners, dtype=pl.String))
    return frame, {r["@id"]: {**r, "__org": o} for r, o in zip(records, owners)}


def _norm(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A key part: text trimmed with whitespace collapsed (dates are RFC 3339 already)."""
    if dtype == pl.String:
        col = col.str.strip_chars().str.replace_all(r"\s+", " ")
    return col.cast(pl.String).fill_null(_NULL)


def _key_expr(fields: list[str], schema) -> pl.Expr:
    return pl.concat_str([pl.col("org")] + [_norm(pl.col(f), schema[f]) for f in fields],
                         separator=_SEP)


def _kind_and_key(key: list[str], schema) -> list[pl.Expr]:
    """`kind` (full | nodate) and `key` of each row: a row without createdAt keys without it."""
    if "createdAt" not in key:
        return [pl.lit("full").alias("kind"), _key_expr(key, schema).alias("key")]
    nodate = [k for k in key if k != "createdAt"]
    dated = pl.col("createdAt").is_not_null()
    return [pl.when(dated).then(pl.lit("full")).otherwise(pl.lit("nodate")).alias("kind"),
            pl.when(dated).then(_key_expr(key, schema)).otherwise(_key_expr(nodate, schema)).alias("key")]


def _existing_keys(existing: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """Long frame `iri`, `kind`, `key`: each note under its full key and its key without date."""
    full = existing.select("iri", pl.lit("full").alias("kind"),
                           _key_expr(key, existing.schema).alias("key"))
    if "createdAt" not in key:
        return full
    nodate = [k for k in key if k != "createdAt"]
    return pl.concat([full, existing.select("iri", pl.lit("nodate").alias("kind"),
                                            _key_expr(nodate, existing.schema).alias("key"))])


MIDNIGHT = "midnight: "
"""`NotesPart.notes` prefix of the remark counting rows matched by `midnight_pairs`."""
_UTC_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%z"
_EARLIER = ("an earlier bulkcrm read a date-formatted cell without its time, as midnight of its "
            "day in the template's time zone")


def time_zone(nt: Template) -> str:
    """The IANA zone the template reads createdAt's naive dates in: the `time_zone` option of
    the `datetime` transform in its clean chain (`mapping.chain`), default UTC (crm-api.md §1,
    `normalize.clean_datetime`)."""
    m = nt.mapping("createdAt")
    if m is None or not m.sources:
        return "UTC"
    for spec in chain(m, m.sources[0], nt):
        if isinstance(spec, dict) and "datetime" in spec:
            return (spec["datetime"] or {}).get("time_zone", "UTC")
    return "UTC"


def midnight_of_day(col: pl.Expr, zone: str) -> pl.Expr:
    """Midnight in `zone` of the day (in `zone`) of each RFC 3339 instant in `col`, as RFC
    3339 UTC: what the date alone reads as (`normalize.clean_datetime`, `2024-03-05` in
    Europe/Amsterdam -> `2024-03-04T23:00:00+00:00`). Null where the instant is that midnight
    already, or does not parse."""
    local = col.str.replace(r"[Zz]$", "+00:00").str.to_datetime(
        _UTC_FORMAT, time_unit="us", strict=False).dt.convert_time_zone(zone)
    day = clean_datetime(local.dt.strftime("%Y-%m-%d"), time_zone=zone)
    return pl.when(local.dt.time() != pl.time(0)).then(day)


def hidden_times(sh: Sheet, nt: Template) -> frozenset[int]:
    """The rows whose createdAt cell is an Excel date cell holding a time of day that its
    date-only format hides (`Sheet.numbers`: ISO text with a time, a format code without `h`
    or `s` outside quotes): the only cells an earlier bulkcrm read as midnight
    (`midnight_pairs`). None in a CSV, where a typed time is what it says."""
    m = nt.mapping("createdAt")
    cols = [s.column for s in m.sources if s.column] if m else []
    if sh.numbers is None or not cols:
        return frozenset()
    shown = pl.col("format").str.replace_all(r'"[^"]*"', "").str.to_lowercase()
    return frozenset(sh.numbers.filter(pl.col("column").is_in(cols) & pl.col("format").is_not_null()
                                       & pl.col("text").str.contains("T", literal=True)
                                       & ~shown.str.contains("[hs]"))["row_number"].to_list())


def midnight_pairs(keyed: pl.DataFrame, pairs: pl.DataFrame, existing: pl.DataFrame,
                   key: list[str], zone: str) -> tuple[pl.DataFrame, dict[int, tuple[str, str]]]:
    """Match dated rows that matched no note to a note dated midnight of their day.

    An Excel cell under a date-only format that holds a time of day (09:30) was read by
    earlier bulkcrm versions as the date alone, i.e. midnight in the template's time zone
    (`time_zone`); now it reads with its time (`excel_formats._render_date`), so the note that
    an earlier import created no longer matches on its content key, and a second note would be
    created. Such a row matches the note with its other key fields (organization, description,
    ...) dated `midnight_of_day` of the row's createdAt, when that note is the only one and no
    other row claims it. `_decide` then gives the row its note's date: no write re-dates it
    (a PATCH leaves it out, a PUT sends it as stored); other changed fields are written.

    Args:
        keyed: the rows matched on the content key: `row_number` (Int64), `kind` (full |
            nodate), `key` (`_kind_and_key`), `org` and the key fields (String; createdAt RFC
            3339 UTC). pairs: `row_number`, `iri` of the matches so far: those rows and notes
            are taken. existing: `_existing_notes`' frame (`iri`, `org`, the mapped fields).
        key: the content key fields without organization. zone: `time_zone(template)`.

    Returns:
        (frame `row_number` Int64, `iri` String, `createdAt` String (the note's, RFC 3339 UTC)
        of the rows matched this way; row_number -> (issue type, message) of the rows left
        unguessed, as conflicts: a midnight note two rows could each be (`duplicate-row`, one
        of them would be a second copy), or a row several midnight notes could be
        (`ambiguous-match`)). Rows dated midnight themselves are not looked at.
    """
    none = pl.DataFrame(schema={"row_number": pl.Int64, "iri": pl.String, "createdAt": pl.String})
    if "createdAt" not in key or not keyed.height or not existing.height:
        return none, {}
    free = (pl.col("kind") == "full") & ~pl.col("row_number").is_in(pairs["row_number"].implode())
    rows = keyed.filter(free).with_columns(midnight_of_day(pl.col("createdAt"), zone).alias("createdAt")
                                           ).filter(pl.col("createdAt").is_not_null())
    if not rows.height:
        return none, {}
    notes = existing.filter(~pl.col("iri").is_in(pairs["iri"].implode())).select(
        "iri", _key_expr(key, existing.schema).alias("key"))
    found = rows.select("row_number", "createdAt", _key_expr(key, rows.schema).alias("key")).join(
        notes, on="key")
    found = found.with_columns(pl.len().over("row_number").alias("__notes"),
                               pl.len().over("iri").alias("__rows"))
    single = (pl.col("__notes") == 1) & (pl.col("__rows") == 1)
    out: dict[int, tuple[str, str]] = {}  # a few rows at most: loops over the doubtful ones only
    several = found.filter(pl.col("__notes") > 1).group_by("row_number").agg(pl.col("iri").sort())
    for rn, iris in several.iter_rows():
        out[rn] = ("ambiguous-match", f"no note has its date, and {len(iris)} notes dated midnight of "
                                      f"its day could be it ({_EARLIER}): {', '.join(iris)}")
    shared = found.filter(~single & (pl.col("__notes") == 1)).group_by("iri").agg(
        pl.col("row_number").sort())
    for iri, rns in shared.iter_rows():
        out |= {rn: ("duplicate-row", f"rows {_join(rns)} could each be {iri}, dated midnight of their "
                                      f"day ({_EARLIER})") for rn in rns}
    return found.filter(single).select("row_number", "iri", "createdAt"), out


def _conflicts(good: pl.DataFrame, pairs: pl.DataFrame, what: str) -> dict[int, tuple[str, str]]:
    """row_number -> (issue type, message): rows sharing a key, a row matching several notes,
    several rows matching one note (a few rows: plain loops over the conflicts only)."""
    out: dict[int, tuple[str, str]] = {}
    dups = good.group_by("kind", "key").agg(pl.col("row_number").sort()).filter(
        pl.col("row_number").list.len() > 1)
    for rns in dups["row_number"].to_list():
        out |= {rn: ("duplicate-row", f"rows {_join(rns)} hold the same note ({what})") for rn in rns}
    per_row = pairs.group_by("row_number").agg(pl.col("iri").unique().sort())
    for rn, iris in per_row.filter(pl.col("iri").list.len() > 1).iter_rows():
        out.setdefault(rn, ("ambiguous-match", f"the note matches {len(iris)} existing notes "
                                               f"({what}): {', '.join(iris)}"))
    claimed = pairs.filter(~pl.col("row_number").is_in(list(out))).group_by("iri").agg(
        pl.col("row_number").unique().sort()).filter(pl.col("row_number").list.len() > 1)
    for iri, rns in claimed.iter_rows():
        out |= {rn: ("duplicate-row", f"rows {_join(rns)} all match {iri}") for rn in rns}
    return out


def _join(numbers) -> str:
    return ", ".join(str(n) for n in numbers)


def _changed(matched: pl.DataFrame, existing: pl.DataFrame, nt: Template,
             key: list[str], named: set[int]) -> dict[int, list[str]]:
    """row_number -> fields to write for matched rows (key fields only for the rows in `named`,
    matched by their note's IRI: for the others they are equal)."""
    if not matched.height:
        return {}
    fields = [m.field for m in nt.mappings]
    ch = diff.changed_fields(matched.select("row_number", "iri", *fields),
                             existing.select("iri", *fields), nt)
    return {rn: [f for f in c if rn in named or f not in key] for rn, _iri, c in ch.iter_rows()}


def _write_rows(good: pl.DataFrame, conflicts: dict, hit_iri: dict, changed: dict, mode: str):
    """Row dicts needing a write: new notes (not update-only), changed ones (not create-only)."""
    free = good.filter(~pl.col("row_number").is_in(list(conflicts)))
    new = [] if mode == "update-only" else \
        free.filter(~pl.col("row_number").is_in(list(hit_iri)))["row_number"].to_list()
    upd = [] if mode == "create-only" else [rn for rn, c in changed.items() if c]
    return free.filter(pl.col("row_number").is_in(new + upd)).sort("row_number").iter_rows(named=True)


def _preview(title: str | None, description: str | None) -> str | None:
    """A row's title in plans and reports: the note's title, else its description, shortened."""
    if title:
        return title
    text = re.sub(r"\s+", " ", description or "").strip()
    return text if len(text) <= PREVIEW else text[:PREVIEW - 1] + "…"


def _create_op(row: dict, nt: Template, key_prefix: str) -> Operation:
    """POST /organizations/{id}/notes; the organization may be a `$ref:row:<n>` of this plan."""
    body = diff.create_body(row, nt)
    dep = row.get("dep")
    return Operation(key=f"{key_prefix}{row['row_number']}", op="create", method="POST",
                     path=f"{row['org']}/notes", body=body, row_numbers=[row["row_number"]],
                     title=_preview(body.get("title"), body.get("description")),
                     changes=[{"field": k, "before": None, "after": json.dumps(v, ensure_ascii=False)}
                              for k, v in body.items()],
                     depends_on=[dep] if dep else [], resource=RESOURCE,
                     content_key=list(nt.notes.content_key))


def _update_op(row: dict, note: dict, changed: list[str], nt: Template, key_prefix: str) -> Operation:
    """PATCH the changed fields, or PUT the whole note (`mode: replace`, crm-api.md §8.3)."""
    body, changes, _ = diff.update(row, note, changed, nt)
    replace = nt.mode == "replace"
    if replace:  # the note as it is, the template's fields as the sheet says
        body = {k: note[k] for k in NOTE_WRITABLE if note.get(k) is not None} | body
        changes = [c for c in changes if c["field"] in changed]
    return Operation(key=f"{key_prefix}{row['row_number']}", op="replace" if replace else "patch",
                     method="PUT" if replace else "PATCH", path=note["@id"], body=body,
                     row_numbers=[row["row_number"]], iri=note["@id"],
                     title=_preview(note.get("title"), note.get("description")),
                     snapshot=diff.snapshot(note, changed), changes=changes, resource=RESOURCE,
                     content_key=list(nt.notes.content_key))


def _row_records(mapped: pl.DataFrame, targets: pl.DataFrame, bad: set, conflicts: dict,
                 hit_iri: dict, changed: dict, ops: dict, mode: str,
                 sheet_name: str | None) -> list[dict]:
    """One plan row per note row, in sheet order."""
    title = pl.col("title") if "title" in mapped.columns else pl.lit(None, pl.String)
    titles = {rn: _preview(t, d) for rn, t, d in
              mapped.select("row_number", title, "description").iter_rows()}
    target = {r["row_number"]: r for r in
              targets.select("row_number", "org", "why", "why_op").iter_rows(named=True)}
    out = []
    for rn in mapped["row_number"].to_list():
        t = target.get(rn) or {}
        rec = {"row_number": rn, "op": "unchanged", "iri": hit_iri.get(rn), "title": titles.get(rn),
               "changes": [], "cleared": [], "note": None, "key": None, "resource": RESOURCE,
               "sheet": sheet_name, "organization": t.get("org")}
        if rn in ops:
            op = ops[rn]
            rec.update(op=op.op, changes=op.changes, key=op.key, iri=op.iri)
        elif t.get("why_op") in ("invalid", "conflict"):
            rec.update(op=t["why_op"], note=t.get("why"))
        elif rn in bad:
            rec.update(op="invalid")
        elif t.get("org") is None:
            rec.update(op="skip", note=t.get("why"))
        elif rn in conflicts:
            rec.update(op="conflict", note=conflicts[rn][1])
        elif rn not in hit_iri and mode == "update-only":
            rec.update(op="skip", note=MODE_SKIPS[2])
        elif changed.get(rn) and mode == "create-only":
            rec.update(op="skip", note=MODE_SKIPS[3])
        out.append(rec)
    return out


MIRROR_SCOPE = ("mirror: only organizations with a note row in this sheet lose notes it lacks; an "
                "organization without one (its last note row removed) keeps all its notes")
"""The remark of every mirror run: what it does not delete, which the plan cannot list."""


def _mirror(part: NotesPart, targets: pl.DataFrame, not_ok: set, by_iri: dict, kept: set,
            gone: list[int] = ()) -> None:
    """Mirror mode: a DELETE for each listed note that no row matches, per involved organization
    whose note rows are all fine (crm-api.md §8.3: DELETE a note, 204); none at all while a
    row names no organization that exists (a typo in its reference), or a note that does not
    (`_gone`: a typo in its IRI): it may be one of theirs."""
    orphans = sorted(set(targets.filter(pl.col("org").is_null())["row_number"].to_list()) | set(gone))
    if orphans:
        part.notes.append(f"mirror: no note deleted: note row(s) {first_few(map(str, orphans))} name no "
                          "organization or note that exists, so the organization they belong to is not "
                          "known; fix them, then mirror again")
        return
    part.notes.append(MIRROR_SCOPE)
    known = targets.filter(pl.col("org").is_not_null() & ~pl.col("org").str.starts_with(REF_PREFIX))
    unsafe = set(known.filter(pl.col("row_number").is_in(list(not_ok)))["org"].to_list())
    if unsafe:
        part.notes.append(f"mirror: no note deleted for {len(unsafe)} organization(s) with invalid "
                          f"or conflicting note rows: {', '.join(sorted(unsafe))}")
    for iri, note in sorted(by_iri.items()):
        if iri in kept or note["__org"] in unsafe:
            continue
        title = _preview(note.get("title"), note.get("description"))
        # every field it holds, so the plan shows what goes and the report keeps what restores it
        changes = [{"field": f, "before": json.dumps(note[f], ensure_ascii=False), "after": None}
                   for f in NOTE_WRITABLE if note.get(f) is not None]
        part.operations.append(Operation(
            key=f"delete:{iri}", op="delete", method="DELETE", path=iri, body={}, row_numbers=[],
            iri=iri, title=title, changes=changes, resource=RESOURCE,
            snapshot={f: note.get(f) for f in NOTE_WRITABLE}))  # a note edited since is not deleted
        part.rows.append({"row_number": None, "op": "delete", "iri": iri, "title": title,
                          "changes": changes, "cleared": [], "key": f"delete:{iri}",
                          "note": f"not in the sheet (mirror mode); organization {note['__org']}",
                          "resource": RESOURCE, "sheet": None, "organization": note["__org"]})


# --- apply side ----------------------------------------------------------------------------

def note_key(note: dict, fields: list[str], *, with_date: bool) -> tuple:
    """A note's content key in Python (apply's lost-answer lookup), normalised like the
    planner's: text trimmed with whitespace collapsed, createdAt as a UTC instant."""
    out = []
    for f in fields:
        if f == "organization" or (f == "createdAt" and not with_date):
            continue
        v = note.get(f)
        if f == "createdAt" and isinstance(v, str):
            v = _instant(v)
        elif isinstance(v, str):
            v = re.sub(r"\s+", " ", v.strip()) or None
        out.append(v)
    return tuple(out)


def _instant(text: str) -> str:
    """RFC 3339 UTC form of an ISO 8601 date-time (naive = UTC), else the text trimmed."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return text.strip()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()


def find_created_note(client: Client, notes_path: str, body: dict,
                      content_key: list[str]) -> str | None:
    """IRI of a note holding `body`'s content key among an organization's notes (one listing
    of `notes_path`), else None. Used when a POST's answer was lost (issue 6): the planner saw
    no such note, so one found now is the lost create (or a copy made meanwhile)."""
    with_date = body.get("createdAt") is not None
    want = note_key(body, content_key, with_date=with_date)
    hits = [n["@id"] for n in client.list_all(notes_path)
            if note_key(n, content_key, with_date=with_date) == want]
    return hits[0] if hits else None
