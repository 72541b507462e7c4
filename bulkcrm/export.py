"""Export stage: CRM organizations -> a CSV or XLSX sheet through a template in reverse.

Input: a `Client`, a loaded `Template` (resource `organizations`) and optional `ExportFilters`.
Output: one sheet file whose columns are `crm_iri` (the record IRI, so a re-import matches on it
first) then every column the template reads, in template order; one line per record.

Records are read page by page from `GET /organizations` (itemsPerPage=30, following `view.next`,
crm-api.md §6) and each page is rendered and appended to the file before the next is fetched, so
memory does not grow with the number of records. Each value goes back through its mapping in
reverse (django-import-export widgets' `render`): lookup IRIs become names (the template's static
table first, then the collection listed once), then the field normaliser's and the template
transforms' `render` run in reverse order; lists are joined with the source's `split` separator.
`clean(render(x)) == x` (transforms.py) makes export-then-import a no-op.

Formula injection (OWASP CSV injection): a CSV cell starting with `= + - @ TAB CR` or `'` gets a
`'` prefix (`workbook.neutralise_csv`), which `read.restore_formula_escape` removes again; XLSX cells
are inline strings (`t="inlineStr"`, never `<f>`), with Excel's quotePrefix on such cells
(`workbook.text_cell`, as the report's copies of the input).

Null tokens: a value the template's `null_tokens` would read as no value (a title `NULL`, a
city ` n/a `), or one that is such a token behind `'`s, gets one more `'` in CSV (after the
formula escape: `-` with token `-` is `''-`) and XLSX alike (`'NULL`; `workbook.escape_cells`,
`mapping.null_token_pattern`), which the mapping's null step removes again
(`mapping.without_null_tokens`): read back as empty, under `mode: replace` it would be cleared.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from .client import Client
from .diff import field_value, record_schema
from .errors import InputError, PermanentApiError, TemplateError
from .lookups import LookupCache
from .mapping import chain, constant, null_token_pattern
from .workbook import XLSX_MAX_CHARS, escape_cells, neutralise_csv, text_cell
from .template import Lookup, Mapping, Source, Template
from .transforms import apply_transforms

COLLECTION = "/organizations"
PAGE_SIZE = 30
"""itemsPerPage asked for (crm-api.md §6: max 30)."""
IRI_COLUMN = "crm_iri"
"""Column of the record IRI when the template names none."""
FORMATS = {".csv": "csv", ".xlsx": "xlsx"}
Progress = Callable[[int, int | None, Client], None]
"""`progress(pages_done, pages_total or None, client)`, called after each page is written."""


@dataclass(frozen=True)
class ExportFilters:
    """Which organizations to export; each maps onto a filter of `GET /organizations` (§8.3).

    Attributes:
        q: free text (`q`).
        owner: user e-mail (looked up in /users), IRI `/users/{id}` or bare id (`owner.id`).
        tags: tag titles, IRIs or ids (`tags.id[]`: records with any of them).
        segments: segment titles, IRIs or ids (`segments.uuid[]`: any of them).
        archived: True only archived, False only not archived (`exists[archivedAt]`), None both.
        created_after: ISO 8601 date or date-time, inclusive (`createdAt[after]`).
        created_before: ISO 8601 date-time, inclusive (`createdAt[before]`); a bare date means
            "on or before that day" (`createdAt[strictly_before]` the next day).
    """

    q: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    archived: bool | None = None
    created_after: str | dt.date | None = None
    created_before: str | dt.date | None = None


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote.

    Attributes:
        path: the file written. records: data lines written (records exported).
        requests: HTTP requests sent (pages, lookups, filter resolution; retries included).
        pages: collection pages read.
        left_out: records read but not written because their constant fields differ from the
            template's (`all_records=False`).
        phones_left_out: phone numbers of the written records that no phone column takes (their
            phoneType has no typed column and the template has no untyped one).
        notes: notes written to the notes sheet of a workbook (`export`: a template whose
            `notes:` have a sheet of their own).
        kept: where the file `path` held before was moved (`kept_name`), or None.
        disagreeing: {(column, field it holds, another field it feeds): [records whose other
            field a re-import of the export would change (a conflict when it is an identifier),
            records whose empty other field it would fill]} (`_count_disagreeing`).
    """

    path: Path
    records: int
    requests: int
    pages: int
    left_out: int = 0
    phones_left_out: int = 0
    notes: int = 0
    kept: Path | None = None
    disagreeing: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)


def export(client: Client, template: Template, out_path: str | Path, *,
           filters: ExportFilters | dict | None = None,
           progress: Progress | None = None, all_records: bool = False) -> ExportResult:
    """Export organizations to `out_path` (.csv or .xlsx) through `template` in reverse.

    Args:
        client: API client (every request is paced and retried by it).
        template: a template of resource `organizations`.
        out_path: `.csv` (UTF-8, no BOM, `,`-separated) or `.xlsx`. Written to `<name>.part`
            first and renamed when complete, so a failed export leaves no partial file.
        filters: `ExportFilters` or a dict of its fields; None exports every organization.
        progress: callback, see `Progress`.
        all_records: also export records whose constant fields (`value:` in the template, e.g.
            `externalSource: northwind`) differ from the template's; by default they are left
            out, since re-importing them through this template would overwrite those fields.

    Returns:
        `ExportResult(path, records, requests, pages, left_out)`.

    Raises:
        InputError: `out_path` is not .csv/.xlsx, a filter value is malformed or names no
            record (unknown tag, segment or owner e-mail).
        TemplateError: the template's resource is not `organizations`, or a transform option
            is wrong (see `transforms.apply_transforms`).
        ApiError: a page or lookup failed after the client's retries.

    Example:
        >>> export(client, load_template("templates/organizations.yaml"), "out.csv")
        ExportResult(path=PosixPath('out.csv'), records=91, requests=4, pages=4, left_out=0)
    """
    out, kind = output_kind(out_path)
    if template.resource == "organization_notes" and template.notes is not None:  # issue 8
        from .notes_export import export_notes
        return export_notes(client, template, out, filters=filters, progress=progress)
    if template.resource != "organizations":
        raise TemplateError(f"export reads organizations; this template's resource is "
                            f"{template.resource!r}", path=template.path, key="resource")
    start = client.requests_sent
    params = filter_params(client, filters, template)
    names = NameCache()
    keep = (lambda members: members) if all_records else _constants_filter(template)
    left_out, counts = 0, {"phones_left_out": 0}

    def render(members: list[dict]) -> pl.DataFrame:
        nonlocal left_out
        kept = keep(members)
        left_out += len(members) - len(kept)
        return render_records(kept, template, client, names, counts)

    result = stream_pages(client, out, kind, export_columns(template), params, render, progress,
                          start=start, more=_notes_sheet(template, kind, client, names, keep),
                          null_tokens=template.null_tokens)
    return replace(result, left_out=left_out, **counts)


def exports_notes(template: Template, kind: str) -> bool:
    """Whether an export through `template` to a `kind` file also writes the notes: an .xlsx,
    and `notes:` on a sheet of their own that name their organization (`organization:`), so
    the workbook imports again through the same template."""
    spec = template.notes
    return (kind == "xlsx" and template.resource == "organizations" and spec is not None
            and spec.sheet is not None and spec.template.notes.organization is not None)


def _notes_sheet(template: Template, kind: str, client: Client, names: NameCache,
                 keep: Callable[[list[dict]], list[dict]]) -> tuple | None:
    """`stream_pages`' `more` for `exports_notes`: the notes sheet of a page's records that
    `keep` exports."""
    if not exports_notes(template, kind):
        return None
    from .notes_export import notes_columns, render_notes
    nt = template.notes.template
    return template.notes.sheet, notes_columns(nt), lambda members: render_notes(keep(members), nt, client, names)


def _constants_filter(template: Template) -> Callable[[list[dict]], list[dict]]:
    """Keep the records whose constant fields hold the template's constants (the records this
    template imported); the API cannot filter on them (crm-api.md §8.3), so this is local."""
    constants = [(m.field, constant(m, template)) for m in template.mappings
                 if m.kind in ("scalar", "bool") and m.sources[0].column is None]
    return lambda members: [r for r in members
                            if all(field_value(r, f) == want for f, want in constants)]


def output_kind(out_path: str | Path) -> tuple[Path, str]:
    """(path, "csv" | "xlsx") for an export file. Raises InputError for another extension."""
    out = Path(out_path)
    kind = FORMATS.get(out.suffix.lower())
    if kind is None:
        raise InputError(f"cannot export to {out.suffix or 'a file without extension'!r}; "
                         "name the file .csv or .xlsx", path=str(out))
    return out, kind


def check_out_path(out_path: str | Path, template: Template) -> None:
    """Refuse to export over an existing file that is no export: its first column is not the
    one an export of `template` starts with (`crm_iri`, `export_columns`); `--out week48.xlsx`
    would replace the sheet ops staff keep with the CRM's records. An earlier export is moved
    aside when the new one is complete (`kept_name`: it may hold edits not imported yet); an
    empty file is overwritten. Its folder is made when missing (as `plan --out` does), before
    any request: an export found it missing after reading every page (a review).

    Raises:
        InputError: naming the file, what its first column is, and what to do.
        OSError: the folder cannot be made (a file in its place, no permission).
    """
    out, kind = output_kind(out_path)
    if not out.parent.exists():  # not a file in its place: the write's own error names the file
        out.parent.mkdir(parents=True)
    if not out.is_file() or not out.stat().st_size:
        return
    if template.resource == "organization_notes" and template.notes is not None:
        from .notes_export import notes_columns
        first = notes_columns(template)[0]
    else:
        first = export_columns(template)[0]
    found = _first_header(out, kind)
    if found != first:
        what = f"its first column is {found!r}" if found else "it has no header an export writes"
        raise InputError(f"the file exists and is no export ({what}, not {first!r}), so it is not "
                         "overwritten; export to another file, or delete it first", path=str(out))


def _first_header(out: Path, kind: str) -> str | None:
    """The first header cell of an existing .csv or .xlsx (None when it cannot be read)."""
    try:
        if kind == "csv":
            with out.open("rb") as f:
                line = f.readline(65536).decode("utf-8-sig", "replace")
            return next(csv.reader([line]), [None])[0]
        from openpyxl import load_workbook  # as `_write_xlsx`: only when a workbook is there
        wb = load_workbook(out, read_only=True)
        try:
            value = wb.worksheets[0].cell(1, 1).value if wb.worksheets else None
        finally:
            wb.close()
        return None if value is None else str(value)
    except Exception:  # noqa: BLE001 - not a readable CSV or workbook: no export
        return None


def stream_pages(client: Client, out: Path, kind: str, columns: list[str], params: dict,
                 render: Callable[[list[dict]], pl.DataFrame],
                 progress: Progress | None = None, *, start: int | None = None,
                 sheet: str = "organizations", more: tuple | None = None,
                 null_tokens: tuple[str, ...] = ()) -> ExportResult:
    """Read `/organizations` page by page (30 a request, following `view.next`), turn each page
    into sheet rows with `render`, and append them to `out` (via `<name>.part`, renamed when
    complete), so memory does not grow with the number of records. Cells the template's
    `null_tokens` would not read as they are get a `'` (module docstring).

    Returns:
        `ExportResult(path, records = rows written, requests since `start` (default: since this
        call), pages)`. An XLSX holds a sheet named `sheet`, and with `more` = (name, columns,
        render) a second sheet, whose rows `render` makes of each page's records too
        (`ExportResult.notes` counts them).
    """
    start = client.requests_sent if start is None else start
    part = out.with_name(out.name + ".part")
    tokens = null_token_pattern(null_tokens)
    try:  # before any request
        sink = _CsvSink(part, columns, tokens) if kind == "csv" else \
            _XlsxSink(part, columns, sheet, {more[0]: more[1]} if more else None, tokens)
    except OSError as e:  # name the file the user asked for, not its `.part`
        raise OSError(e.errno, e.strerror, str(out)) from None
    pages, written, total, extra = 0, 0, None, 0
    try:
        for page in client.iter_pages(COLLECTION, {"itemsPerPage": PAGE_SIZE, **params}):
            if total is None and "totalItems" in page:
                total = max(1, math.ceil(int(page["totalItems"]) / PAGE_SIZE))
            members = page.get("member") or []
            frame = render(members) if members else None
            if frame is not None and frame.height:
                sink.write(frame.select(columns))
                written += frame.height
                if more:
                    rows = more[2](members)
                    sink.write(rows.select(more[1]), more[0])
                    extra += rows.height
            pages += 1
            if progress is not None:
                progress(pages, max(total or pages, pages), client)
        sink.close()
        kept = kept_name(out) if out.is_file() and out.stat().st_size else None
        if kept is not None:  # an earlier export, maybe edited and not imported yet: kept
            os.replace(out, kept)
        os.replace(part, out)
    finally:
        sink.abort()
        part.unlink(missing_ok=True)
    return ExportResult(out, written, client.requests_sent - start, pages, notes=extra, kept=kept)


def kept_name(out: Path) -> Path:
    """Where an export moves the file it replaces: `<stem>.<its last write, UTC><suffix>` beside
    it (`orgs.20261203T141502.xlsx`), as a new plan keeps its predecessor's journal."""
    stamp = dt.datetime.fromtimestamp(out.stat().st_mtime, dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    kept, n = out.with_name(f"{out.stem}.{stamp}{out.suffix}"), 1
    while kept.exists():  # two in one second: neither replaces the other
        kept, n = out.with_name(f"{out.stem}.{stamp}-{n}{out.suffix}"), n + 1
    return kept


class ProgressBar:
    """A `Progress` callback: on a terminal a tqdm bar on stderr (pages read of the total, known
    from the first page's totalItems; requests sent; ETA); in a log (stderr not a terminal:
    cron, nohup) a plain line after the first page, at most every `LOG_EVERY_S` seconds, and
    after the last. Call `close()` when done."""

    LOG_EVERY_S = 30.0

    def __init__(self) -> None:
        from tqdm import tqdm

        self.log = not sys.stderr.isatty()
        self.bar = tqdm(total=None, unit="page", desc="export", leave=True, disable=True if self.log else None)
        self.started = time.monotonic()
        self.logged: float | None = None

    def __call__(self, pages: int, total: int | None, client: Client) -> None:
        if self.log:
            now = time.monotonic()
            if self.logged is None or pages == total or now - self.logged >= self.LOG_EVERY_S:
                self.logged = now
                print(f"export: {pages}/{total or '?'} pages, {client.requests_sent} requests, "
                      f"{(now - self.started) / 60:.1f} min", file=sys.stderr, flush=True)
            return
        self.bar.total = total
        self.bar.n = pages
        self.bar.set_postfix(requests=client.requests_sent, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


# --- filters ---------------------------------------------------------------------------------

def filter_params(client: Client, filters: ExportFilters | dict | None, template: Template | None = None,
                  ) -> dict[str, Any]:
    """Return the `GET /organizations` query parameters for `filters` (crm-api.md §7, §8.3;
    a dict holds `ExportFilters` fields, None: no filter).

    Names (owner e-mail, tag and segment titles) become IRIs through the template's static
    lookup table when it has one, else the API (`/users?email[]=`, `/tags`, `/segments` listed
    once); relation filters accept an IRI (§7). Keys: `q`, `owner.id`, `tags.id[]`,
    `segments.uuid[]`, `exists[archivedAt]`, `createdAt[after]`, `createdAt[before]` or
    `createdAt[strictly_before]`.

    Raises:
        InputError: a name matches no record or several, or a date is not ISO 8601.
    """
    f = ExportFilters(**filters) if isinstance(filters, dict) else filters or ExportFilters()
    cache, params = LookupCache(), {}
    if f.q:
        params["q"] = f.q
    if f.owner:
        params["owner.id"] = _to_iri(client, cache, template, "owner", "users", "email", f.owner)
    if f.tags:
        params["tags.id[]"] = [_to_iri(client, cache, template, "tags", "tags", "title", t)
                               for t in f.tags]
    if f.segments:
        params["segments.uuid[]"] = [_to_iri(client, cache, template, "segments", "segments",
                                             "title", s) for s in f.segments]
    if f.archived is not None:
        params["exists[archivedAt]"] = "true" if f.archived else "false"
    if f.created_after:
        params["createdAt[after]"] = _iso(f.created_after, "--created-after").isoformat()
    if f.created_before:
        moment = _iso(f.created_before, "--created-before")
        if isinstance(moment, dt.datetime):
            params["createdAt[before]"] = moment.isoformat()
        else:
            params["createdAt[strictly_before]"] = (moment + dt.timedelta(days=1)).isoformat()
    return params


def _to_iri(client: Client, cache: LookupCache, template: Template | None, field_name: str,
            collection: str, by: str, value: str) -> str:
    """A filter value as an IRI: an IRI as is, else the one record named `value`, else a bare
    id as is (relation filters accept both, crm-api.md §7)."""
    value = value.strip()
    if value.startswith("/"):
        return value
    bare = "@" not in value if by == "email" else bool(re.fullmatch(_BARE_ID, value))
    m = template.mapping(field_name) if template else None
    lookup = m.lookup if m and m.lookup else Lookup(collection=collection, by=by)
    key, static = value.lower(), dict(lookup.table)
    if key in static:
        return static[key]
    found = [] if by == "email" and bare else cache.names(client, lookup, [key]).get(key, [])
    if len(found) == 1 or (bare and not found):
        return found[0] if found else value
    option = {"owner": "--owner", "tags": "--tag", "segments": "--segment"}[field_name]
    what = f"names {len(found)} {collection}: {', '.join(found)}" if found else \
        f"matches no {collection} {by}"
    raise InputError(f"{option} {value!r} {what}; use its IRI /{collection}/{{id}}")


_BARE_ID = r"\d+|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"


def _iso(value: str | dt.date, name: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value) if len(value.strip()) == 10 else \
            dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{name} {value!r} is not an ISO 8601 date such as 2024-01-31 or "
                         "2024-01-31T12:00:00+00:00") from None


# --- rendering -------------------------------------------------------------------------------

def export_columns(template: Template) -> list[str]:
    """Return the sheet's header: the IRI column, then each column the template reads, in order.

    A `notes:` section on the same sheet adds its columns, left empty: notes are exported with
    a notes template (one line per note); an empty note cell re-imports as "no note"."""
    iri = template.iri_column or IRI_COLUMN
    cols = [iri, *(c for c in template.columns if c != iri)]
    if template.notes is not None and template.notes.sheet is None and template.notes.template:
        cols += [c for c in template.notes.template.columns if c not in cols]
    return cols


class NameCache:
    """Per-export cache of IRI -> name for lookup fields (the reverse of `lookups.LookupCache`).

    The static table reversed comes first; then the collection is listed once (⌈n/30⌉ requests,
    crm-api.md §10). A name is used only when importing it gives the same IRI back: unique among
    the listed records (case-insensitive, trimmed, as lookups compare), not claimed by the static
    table for another IRI, not starting with `/`. Otherwise the IRI itself is exported (the
    importer accepts IRIs). A collection the API does not serve (404/405, e.g. `/users` on the
    real API) gives no names.
    """

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], dict[str, str]] = {}

    def names(self, client: Client, lookup: Lookup, iris: list[str]) -> dict[str, str]:
        """Return {IRI: name} for those of `iris` that have a safe name."""
        static: dict[str, str] = {}
        for name, iri in lookup.table:
            static.setdefault(iri, name)
        key = (lookup.collection, lookup.by)
        if key not in self.tables and any(i not in static for i in iris):
            self.tables[key] = self._listing(client, lookup)
        remote = self.tables.get(key, {})
        taken = {name: iri for name, iri in lookup.table}
        remote = {i: n for i, n in remote.items() if taken.get(n.lower(), i) == i}
        return {i: n for i in iris if (n := static.get(i) or remote.get(i))
                and not n.startswith("/")}

    @staticmethod
    def _listing(client: Client, lookup: Lookup) -> dict[str, str]:
        try:
            records = client.list_all(f"/{lookup.collection}")
        except PermanentApiError as e:
            if e.status in (404, 405):
                return {}
            raise
        pairs = [(r.get("@id"), str(r.get(lookup.by) or "").strip()) for r in records]
        counts = Counter(n.lower() for _, n in pairs if n)
        return {i: n for i, n in pairs if i and n and counts[n.lower()] == 1}


def render_records(records: list[dict], template: Template, client: Client | None = None,
                   names: NameCache | None = None, counts: dict | None = None) -> pl.DataFrame:
    """Render API records (one page) as sheet rows.

    Args:
        records: organizations as the API returns them (crm-api.md §8.1).
        template: the template to run in reverse.
        client: for lookup names (None: lookup fields keep their IRIs).
        names: cache shared across pages.
        counts: when given, `counts["phones_left_out"]` grows by the phone numbers no column
            takes (see `_phones`).

    Returns:
        frame with the `export_columns(template)` columns, all pl.String; an empty field or
        list is null (an empty cell, which the importer reads as no value).

    Raises:
        TemplateError: a transform or render option is wrong.
    """
    names = names or NameCache()
    schema = record_schema(template)
    raw = pl.DataFrame(records, schema=schema, strict=False)
    columns: dict[str, pl.Expr] = {}
    owner: dict[str, str] = {}  # column -> the field whose value it holds
    shared: list[tuple[str, str, pl.Expr]] = []  # (column, its field, what a re-import sends another field: below)
    for m in template.mappings:
        if m.lookup is not None and client is not None:
            raw = _names_for(raw, m, client, names)
        if m.kind == "phones":
            raw = _phones(raw, m, template, columns, counts)
            continue
        srcs = [s for s in m.sources if s.column]
        if not srcs:
            continue  # constants (`value:`) have no column
        value = _field(m)
        if m.kind in ("list", "emails"):
            items = value.list.eval(pl.element().struct.field("email")) if m.kind == "emails" \
                else value
            items = items.list.eval(_render(pl.element(), m, srcs[0], template)).list.drop_nulls()
            for i, src in enumerate(srcs):  # several columns (Email 1, Email 2): one value each,
                part = items.list.slice(i, None if i == len(srcs) - 1 else 1)  # the last the rest
                joined = part.list.join(src.split or ";")
                columns.setdefault(src.column, pl.when(joined == "").then(None).otherwise(joined))
        else:
            expr, col = _render(value.cast(pl.String), m, srcs[0], template), srcs[0].column
            if col in columns and col in owner:  # a re-import sends this field the column's value, cleaned
                specs = chain(m, srcs[0], template)
                sent = apply_transforms(columns[col], specs, direction="clean") if specs else columns[col]
                shared.append((col, owner[col], m.field, sent, value.cast(pl.String)))
            columns.setdefault(col, expr)
            owner.setdefault(col, m.field)
    iri = template.iri_column or IRI_COLUMN
    columns[iri] = pl.col("@id")
    out = raw.select([columns.get(c, pl.lit(None)).cast(pl.String).alias(c)
                      for c in export_columns(template)])
    if counts is not None and shared:
        _count_disagreeing(raw, shared, counts)
    return out.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                            for c in out.columns)


def _count_disagreeing(raw: pl.DataFrame, shared: list, counts: dict) -> None:
    """Count in `counts["disagreeing"]` ({(column, field, other field): [records whose other
    field a re-import changes, records it fills]}) the records where two fields read from one
    column (`title` and a prefixed `customerId` from `Account Name`) do not agree: the column
    holds the first field's value, and a re-import sends the other field that value cleaned
    (its transforms and normaliser), which differs from what the record holds (a trial: a title
    renamed in the CRM alone made the untouched export's row an iri-mismatch) or fills a field
    the record has not (a review: only those, not every rendered difference, such as `upper`)."""
    found = raw.select(pl.struct((stored.is_not_null() & sent.is_not_null() & (sent != stored)).sum().alias("d"),
                                 (stored.is_null() & sent.is_not_null()).sum().alias("f")).alias(str(i))
                       for i, (_, _, _, sent, stored) in enumerate(shared)).row(0)
    for (col, first, other, _, _), n in zip(shared, found):
        if n["d"] or n["f"]:
            seen = counts.setdefault("disagreeing", {}).setdefault((col, first, other), [0, 0])
            seen[0], seen[1] = seen[0] + n["d"], seen[1] + n["f"]


def _field(m: Mapping) -> pl.Expr:
    top, _, sub = m.field.partition(".")
    return pl.col(top).struct.field(sub) if sub else pl.col(top)


def _render(expr: pl.Expr, m: Mapping, source: Source, template: Template) -> pl.Expr:
    """The field's clean chain (source transforms, then its normaliser) run as `render`."""
    specs = chain(m, source, template)
    options = dict(m.render)
    for i, spec in enumerate(specs):
        name, opts = next(iter(spec.items())) if isinstance(spec, dict) else (spec, {})
        if name in options:
            specs[i] = {name: {**(opts or {}), "render": options.pop(name)}}
    if options:
        raise TemplateError(f"render option(s) for {', '.join(options)} but the field has no "
                            "such transform", path=template.path, key=f"fields.{m.field}.render")
    return apply_transforms(expr, specs, direction="render") if specs else expr


def _names_for(raw: pl.DataFrame, m: Mapping, client: Client, names: NameCache) -> pl.DataFrame:
    """Replace the IRIs of a lookup field by names (see `NameCache`)."""
    top = m.field.split(".")[0]
    is_list = isinstance(raw.schema[top], pl.List)
    col = raw[top].explode() if is_list else raw[top]
    iris = col.drop_nulls().unique().to_list()
    sep = (m.sources[0].split or ";") if is_list else None
    table = {i: n for i, n in names.names(client, m.lookup, iris).items()
             if sep is None or sep not in n}
    if not table:
        return raw
    old, new = list(table), list(table.values())
    expr = pl.col(top).list.eval(pl.element().replace(old, new)) if is_list \
        else pl.col(top).replace(old, new)
    return raw.with_columns(expr.alias(top))


def _phones(raw: pl.DataFrame, m: Mapping, template: Template,
            columns: dict[str, pl.Expr], counts: dict | None = None) -> pl.DataFrame:
    """Spread `phoneNumbers` over the phone sources; add `__phone.<column>` columns to `raw`.

    Sources with `type` first take the numbers of that phoneType (several of one type: one
    number each, the last the rest, as below); then each `type_column`
    source takes the numbers of one type (the first typed number's, else untyped ones) and
    writes that type in its type column; then the other sources take what is left, in template
    order: each one number (Phone 1, Phone 2, as e-mail columns), the last every number left,
    joined with its `split` (`;` by default; without `split` only the first). Typed sources
    take all their numbers so joined. Numbers no source takes are not exported (with
    `policy: merge` a re-import keeps them); they are counted in `counts["phones_left_out"]`.
    """
    rec = raw.with_row_index("__rec")
    long = (rec.select("__rec", pl.col(m.field).alias("__p"))
            .explode("__p").drop_nulls("__p").unnest("__p").with_row_index("__pos")
            .with_columns(pl.lit(False).alias("__taken")))
    sources = [s for s in m.sources if s.column]
    ordered = [s for s in sources if s.phone_type] + \
        [s for s in sources if not s.phone_type and s.type_column] + \
        [s for s in sources if not s.phone_type and not s.type_column]
    plain = [s for s in ordered if not s.phone_type and not s.type_column]
    one_each = {id(s) for s in plain[:-1]}  # the last plain source takes the rest
    for t in {s.phone_type for s in ordered if s.phone_type}:  # so do columns of one type (Phone1..5: work)
        one_each |= {id(s) for s in [s for s in ordered if s.phone_type == t][:-1]}
    for s in ordered:
        free = long.filter(~pl.col("__taken"))
        if s.phone_type:
            free = free.filter(pl.col("phoneType") == s.phone_type)
        elif s.type_column:  # the first typed number's type (else untyped), and its numbers
            first = pl.col("phoneType").sort_by(pl.col("phoneType").is_null(), "__pos").first()
            free = free.filter(pl.col("phoneType").eq_missing(first.over("__rec")))
        if not s.split or id(s) in one_each:
            free = free.filter(pl.col("__pos") == pl.col("__pos").min().over("__rec"))
        long = long.with_columns(pl.col("__taken") | pl.col("__pos").is_in(free["__pos"].implode()))
        number = _render(pl.col("phoneNumber"), m, s, template)
        got = free.sort("__pos").group_by("__rec", maintain_order=True).agg(
            number.str.join(s.split or ";").alias(f"__phone.{s.column}"),
            pl.col("phoneType").first().alias(f"__type.{s.column}"))
        rec = rec.join(got, on="__rec", how="left", maintain_order="left")
        columns.setdefault(s.column, pl.col(f"__phone.{s.column}"))
        if s.type_column:
            columns.setdefault(s.type_column, pl.col(f"__type.{s.column}"))
    if counts is not None:
        counts["phones_left_out"] += long.filter(~pl.col("__taken")).height
    return rec.drop("__rec")


# --- writing ---------------------------------------------------------------------------------

class _CsvSink:
    """UTF-8 CSV (RFC 4180, `,`, no BOM), one page appended at a time; cells neutralised, then
    those matching `tokens` (`mapping.null_token_pattern`) escaped (module docstring)."""

    def __init__(self, path: Path, columns: list[str], tokens: str | None = None):
        self.file, self.tokens = path.open("wb"), tokens
        pl.DataFrame(schema=dict.fromkeys(columns, pl.String)).write_csv(self.file)

    def write(self, frame: pl.DataFrame) -> None:
        escape_cells(neutralise_csv(frame), self.tokens).write_csv(self.file, include_header=False)

    def close(self) -> None:
        self.file.close()

    def abort(self) -> None:
        self.file.close()


_WIDTHS = {IRI_COLUMN: 48, "description": 60, "note": 60, "website": 32, "email": 32}
"""Column widths (characters) of an XLSX export for columns whose values run long."""


def _check_cell_lengths(frame: pl.DataFrame) -> None:
    """Raise InputError naming the first record (`crm_iri` or the row's first column) and the
    column of a text value longer than `XLSX_MAX_CHARS`."""
    texts = [c for c, t in frame.schema.items() if t == pl.String]
    if not texts:
        return
    long = frame.select(pl.any_horizontal(pl.col(texts).str.len_chars() > XLSX_MAX_CHARS)).to_series()
    if not long.any():
        return
    row = frame.filter(long).row(0, named=True)
    col = next(c for c in texts if row[c] is not None and len(row[c]) > XLSX_MAX_CHARS)
    who = row.get(IRI_COLUMN) or next(iter(row.values()))
    raise InputError(f"{who}: column {col!r} holds {len(row[col]):,} characters; an Excel cell holds at most "
                     f"{XLSX_MAX_CHARS:,}, so the XLSX would cut it and a re-import would write the cut text; "
                     "export to .csv instead")


class _XlsxSink:
    """XLSX through openpyxl's write-only workbook: rows go to a temp file, memory stays flat.

    Every cell is a `workbook.text_cell`: a string (never a formula) in the Text number format
    (`@`), so a value typed over it in Excel stays text (`01001`, `+31…`, `=…`), and so are the
    columns, for the rows a person adds below the export; a cell starting
    with a formula trigger also gets Excel's quotePrefix, and one matching `tokens`
    (`mapping.null_token_pattern`) a `'` (module docstring). Columns get a width from their
    header (the rows stream, so their lengths are not known up front).
    """

    def __init__(self, path: Path, columns: list[str], sheet: str = "organizations",
                 more: dict[str, list[str]] | None = None, tokens: str | None = None):
        from openpyxl import Workbook

        self.path, self.wb, self.saved, self.tokens = path, Workbook(write_only=True), False, tokens
        self.sheets = {name: self._sheet(name, cols) for name, cols in {sheet: columns, **(more or {})}.items()}
        self.ws = self.sheets[sheet]

    def _sheet(self, name: str, columns: list[str]):
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        ws = self.wb.create_sheet(name)
        ws.freeze_panes = "A2"
        for i, col in enumerate(columns, 1):  # Text (`@`) also for the rows a person adds below
            dim = ws.column_dimensions[get_column_letter(i)]
            dim.width, dim.number_format = _WIDTHS.get(col, max(14, len(col) + 4)), "@"
        bold = Font(bold=True)
        ws.append([text_cell(ws, c, font=bold) for c in columns])
        return ws

    def write(self, frame: pl.DataFrame, sheet: str | None = None) -> None:
        """Append `frame`'s rows. Raises InputError for a value longer than an Excel cell holds
        (`XLSX_MAX_CHARS`): openpyxl would cut it, and a re-import would write the cut value."""
        ws = self.sheets[sheet] if sheet else self.ws
        frame = escape_cells(frame, self.tokens)
        _check_cell_lengths(frame)
        for row in frame.iter_rows():
            ws.append([text_cell(ws, v) for v in row])

    def close(self) -> None:
        self.wb.save(self.path)
        self.saved = True

    def abort(self) -> None:
        """Drop the workbook; an unsaved sheet's row stream is finished now (Ctrl-C mid-export),
        not when Python collects it after its temp file is gone (a `ValueError` it printed)."""
        if self.wb is not None and not self.saved:
            for ws in self.sheets.values():
                with contextlib.suppress(Exception):  # a stream cut mid-row: closed as far as it goes
                    ws.close()
        self.wb = None
