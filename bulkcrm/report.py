"""Reconciliation and validation reports: what was planned and what happened, per input row.

Stage: report (last). Input: a `Report` (rows, issues, summary) built by plan/apply, or an issues
frame from validate. Output files: `report.json`, `report.csv`, `report.xlsx`, the write-back copy
`<input stem>.with-status.csv|xlsx`; for validate `issues.csv`, `issues.json` and
`<input stem>.issues.xlsx`. Modelled on frictionless' `Report` and django-import-export's `Result`.
The copies of the input keep its layout (`_layout`): the header on its row, each row on the line of
its row_number, each column in its letters, so a cell an issue names (`Klanten!E6`) is the copy's;
the workbook copies show the Excel errors (`#N/A`) it showed (`_copy_sheet`).

Every text cell is made inert (OWASP "CSV injection"): CSV cells that start with `= + - @ TAB CR`
or `'` get a `'` prefix; XLSX cells are written as strings (`data_type "s"`), never formulas, in
the Text number format `@` (`text_cell`, as export's), so what a person types over a cell of a
copy stays text too.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.comments import Comment
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.worksheet.hyperlink import Hyperlink

from .client import secret_forms
from .errors import ISSUE_SCHEMA
from .planfile import CHANGE_DTYPE, quoted_names
from .read import FORMULA_ESCAPE, FORMULA_TRIGGERS, Sheet
from .vocab import COUNT_KEYS, OUTCOMES

ROW_SCHEMA: dict[str, pl.DataType] = {
    "row_number": pl.Int64, "file": pl.String, "sheet": pl.String, "op": pl.String,
    "outcome": pl.String, "iri": pl.String, "title": pl.String, "changes": CHANGE_DTYPE,
    "status": pl.Int64, "note": pl.String, "resource": pl.String,
}
"""Columns and dtypes of `Report.rows` (one row per input row, and per note of a row when a
template imports organizations with their notes; `resource` says which: `organizations` or
`organization_notes`, null read as organizations)."""
REPORT_COLUMNS = ("row_number", "outcome", "op", "iri", "title", "changes", "errors", "warnings",
                  "columns", "status", "note", "resource", "sheet")
"""Columns of `report.csv` and of the `Rows` sheet; `columns` names the sheet columns the row's
errors and warnings are about (the cells to fix); `sheet` the workbook sheet of the row (a
notes sheet numbers its rows apart)."""
ERROR_COLUMNS = ("file", "sheet", "row_number", "resource", "column", "cell", "severity", "type",
                 "value", "rule", "message", "reference")
"""Columns of the `Errors` sheet (one line per issue)."""
NOT_OK = ("invalid", "conflict", "failed", "drifted")
"""Outcomes that make a run not ok (CLI exit 1)."""
STATUS_COLUMNS = ("crm_iri", "bulkcrm_status", "bulkcrm_note")
"""Columns added to the write-back copy of the input; the next run matches on `crm_iri`, and
`bulkcrm_note` says what to fix in the row."""
CSV_ESCAPE_CHARS = (*FORMULA_TRIGGERS, FORMULA_ESCAPE)
"""A CSV cell starting with one of these gets a `'` prefix (`'` itself, so readers can undo)."""
WRITE_ONLY_ROWS = 10_000
"""Above this many lines an XLSX is streamed (openpyxl write-only mode)."""
GREEN, GREY, AMBER, RED, YELLOW = "C6EFCE", "D9D9D9", "FFD966", "FFC7CE", "FFFF99"
OUTCOME_COLOURS = {"created": GREEN, "patched": GREEN, "replaced": GREEN, "unchanged": GREY,
                   "conflict": AMBER, "drifted": AMBER, "invalid": RED, "failed": RED}
"""RGB fill of the outcome cell in the `Rows` sheet, per outcome (others: no fill)."""
_FILLS = {rgb: PatternFill(fill_type="solid", fgColor=rgb)
          for rgb in (GREEN, GREY, AMBER, RED, YELLOW)}
_BOLD = Font(bold=True)
_ESCAPE_RE = f"^[{re.escape(''.join(CSV_ESCAPE_CHARS))}]"


_XLSX_ESCAPE = re.compile(r"_x(?=[0-9A-Fa-f]{4}_)|[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ufffe\uffff]")
"""Text Excel cannot hold literally: a literal `_xHHHH_` and control characters (CR included,
which XML would turn into LF) are written as `_xHHHH_` escapes (ECMA-376 Part 1 §22.9.2.19)."""


def xlsx_text(value: str) -> str:
    """Return `value` escaped for an XLSX string cell; readers (calamine) decode it back."""
    return _XLSX_ESCAPE.sub(lambda mo: "_x005F_x" if mo.group() == "_x"
                            else f"_x{ord(mo.group()):04X}_", value)


def text_cell(ws, value: str | None, font: Font | None = None):
    """Return a write-only cell of `ws` holding `value` as text in the Text number format `@`, so
    a value typed over it in Excel stays text (`01001`, `+31…`, `=…`): a string (data_type `s`,
    never a formula; `xlsx_text`), with Excel's quotePrefix when it starts with one of
    `FORMULA_TRIGGERS` (OWASP CSV injection); None leaves the cell empty, still `@`."""
    cell = WriteOnlyCell(ws)
    cell.number_format = "@"
    if value is not None:
        cell.value = xlsx_text(value)
        cell.data_type = "s"
        cell.quotePrefix = value.startswith(FORMULA_TRIGGERS)
    if font is not None:
        cell.font = font
    return cell


def safe_cell_csv(value: Any) -> Any:
    """Return `value` made inert for CSV: a string starting with `CSV_ESCAPE_CHARS` gets a `'`.

    Non-strings pass through. `"=1+2"` -> `"'=1+2"`, `"'x"` -> `"''x"` (OWASP CSV injection).
    """
    if isinstance(value, str) and value.startswith(CSV_ESCAPE_CHARS):
        return "'" + value
    return value


def neutralise_csv(frame: pl.DataFrame) -> pl.DataFrame:
    """Return `frame` with every String column passed through `safe_cell_csv` (vectorised)."""
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(_ESCAPE_RE)).then(pl.lit(FORMULA_ESCAPE) + pl.col(name))
        .otherwise(pl.col(name)).alias(name)
        for name, dtype in frame.schema.items() if dtype == pl.String
    )


@dataclass
class Report:
    """What was planned and what happened for every input row (frictionless `Report`).

    Attributes:
        rows: one row per input row, columns `ROW_SCHEMA` (missing columns read as null).
        issues: `errors.ISSUE_SCHEMA` columns, one row per issue.
        summary: keys `counts`, `requests` (int), `target` (base URL, never a key), `template`,
            `input`, `dry_run`, `started_at`, `finished_at` (ISO 8601), `plan`, `reconciled`,
            `mismatches`. `to_dict` replaces `counts` by `counts()` (every row) and adds `ok`,
            and `by_resource` (`counts_by_resource`) for organizations imported with notes.
        names: IRI -> name (`Plan.names`): report.csv and the Rows sheet show the name;
            report.json keeps the IRIs.
    """

    rows: pl.DataFrame
    issues: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ISSUE_SCHEMA))
    summary: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no row is invalid, conflict, failed or drifted, and the run did not stop
        before its end (`summary["stopped"]`)."""
        if self.summary.get("stopped"):
            return False
        return not self.rows.height or not self.rows["outcome"].is_in(NOT_OK).any()

    def counts(self) -> dict[str, int]:
        """Return rows per outcome: every `COUNT_KEYS` key (0 when none) plus any other seen."""
        seen = dict(self.rows["outcome"].value_counts().iter_rows()) if self.rows.height else {}
        counts = {key: int(seen.pop(key, 0)) for key in COUNT_KEYS}
        extra = sorted(seen, key=lambda k: (OUTCOMES.index(k) if k in OUTCOMES else 99, str(k)))
        return counts | {str(k): int(seen[k]) for k in extra}

    def to_dict(self) -> dict[str, Any]:
        """Return `{"summary", "rows", "issues"}`, JSON-able; rows' `changes` as lists of
        `{field, before, after}` with the values as JSON values (`"b"`, `["/tags/2"]`, null),
        not the JSON texts `Report.rows` holds; each row also has its `errors` and `warnings`
        (messages) and the `columns` they name, as report.csv (lists, empty when none)."""
        rows = _conform(self.rows, ROW_SCHEMA).with_columns(
            pl.col("changes").fill_null(pl.lit([], dtype=CHANGE_DTYPE)))
        keyed = rows.with_columns(pl.col("resource").fill_null("organizations"))
        messages = _row_messages(_conform(self.issues, ISSUE_SCHEMA), keyed).rename({"resource": "__res"})
        none = pl.lit([], dtype=pl.List(pl.String))
        rows = (rows.with_columns(keyed["resource"].alias("__res"))
                .join(messages, on=["row_number", "__res"], how="left", maintain_order="left", nulls_equal=True)
                .with_columns(pl.col("errors", "warnings", "columns").fill_null(none)).drop("__res").to_dicts())
        for row in rows:
            row["changes"] = [{**c, "before": _value(c["before"]), "after": _value(c["after"])}
                              for c in row["changes"]]
        summary = {**self.summary, "counts": self.counts(), "ok": self.ok}
        if parts := counts_by_resource(self):  # organizations with their notes, counted apart
            summary["by_resource"] = parts
        return {"summary": summary, "rows": rows,
                "issues": _conform(self.issues, ISSUE_SCHEMA).to_dicts()}


def _value(text: str | None) -> Any:
    """A change's JSON text as its value (null stays None)."""
    return None if text is None else json.loads(text)


def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Return `frame` with exactly `schema`'s columns (missing ones null), cast to its dtypes."""
    return frame.select(
        (pl.col(n) if n in frame.columns else pl.lit(None)).cast(dtype).alias(n)
        for n, dtype in schema.items())


def _row_messages(issues: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Return `row_number, resource, errors, warnings` (messages, List(String)) and `columns`
    (the distinct columns named, in order) per report row with issues (`rows`: `row_number`,
    `resource`, `sheet`). An issue naming its resource goes to that row only; one without
    (what the reader found) to every row of its row_number on its sheet."""
    is_error = pl.col("severity").fill_null("error") == "error"
    issues = issues.filter(pl.col("row_number").is_not_null()).with_row_index("_i")
    whole = issues.filter(pl.col("resource").is_null()).drop("resource").join(
        rows.select("row_number", "sheet", "resource").unique(), on=["row_number", "sheet"], nulls_equal=True)
    return (pl.concat([issues.filter(pl.col("resource").is_not_null()), whole], how="diagonal")
            .sort("_i").group_by("row_number", "resource", maintain_order=True)
            .agg(errors=pl.col("message").filter(is_error),
                 warnings=pl.col("message").filter(~is_error),
                 columns=pl.col("column").drop_nulls().unique(maintain_order=True)))


def report_table(report: Report) -> pl.DataFrame:
    """Return the flat per-row table of `report.csv` / the `Rows` sheet (`REPORT_COLUMNS`).

    `changes` becomes `field: before → after; …` (JSON texts, `null` when absent); `errors` and
    `warnings` join that row's issue messages with `; `. Rows are sorted by `row_number`.
    """
    rows = _conform(report.rows, ROW_SCHEMA).sort("row_number", nulls_last=True,
                                                  maintain_order=True)
    item = pl.element().struct
    changes = pl.col("changes").list.eval(pl.concat_str(
        item.field("field"), pl.lit(": "), _named(item.field("before"), report.names).fill_null("null"),
        pl.lit(" → "), _named(item.field("after"), report.names).fill_null("null"))).list.join("; ")
    rows = rows.with_columns(pl.col("resource").fill_null("organizations"))
    messages = _row_messages(_conform(report.issues, ISSUE_SCHEMA), rows)
    return (rows.join(messages, on=["row_number", "resource"], how="left", maintain_order="left")
            .with_columns(changes.fill_null(""),
                          pl.col("errors", "warnings", "columns").list.join("; ").fill_null(""))
            .select(REPORT_COLUMNS))


def _named(text: pl.Expr, names: dict[str, str]) -> pl.Expr:
    """JSON `text` with the IRIs of `names` shown as names (`planfile.quoted_names`)."""
    if not names:
        return text
    quoted = quoted_names(names)
    return text.str.replace_many(list(quoted), list(quoted.values()))


class _Redactor:
    """Replace every secret, in any of its `client.secret_forms`, by `[redacted]` (style 6.4);
    the forms are worked out once, as it runs per cell."""

    def __init__(self, secrets: Iterable[str] | None):
        self.forms = secret_forms(secrets)

    def __call__(self, text: str) -> str:
        for form in self.forms:
            text = text.replace(form, "[redacted]")
        return text


def _json(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def _write_text(path: Path, text: str, redact: _Redactor, *, bom: bool = False) -> Path:
    path.write_text(redact(text), encoding="utf-8-sig" if bom else "utf-8", newline="")
    return path


@dataclass(frozen=True)
class _Layout:
    """Where a sheet's table goes: the header's line, each data row's line (ascending, below the
    header; the lines between stay empty) and each column's 1-based sheet column (ascending;
    the columns between stay empty)."""

    header_line: int
    lines: list[int]
    columns: list[int]

    @classmethod
    def plain(cls, frame: pl.DataFrame) -> _Layout:
        """The header on line 1, the rows below it, the columns from A on."""
        return cls(1, list(range(2, frame.height + 2)), list(range(1, frame.width + 1)))


def _layout(sheet: Sheet, columns: list[str]) -> _Layout:
    """Where a copy of `sheet` puts its table of `columns` (the input's, then any it adds): the
    input's own header row, row numbers and column letters (`Sheet.header_row`, `row_number`,
    `Sheet.letters`), so every address a note or comment quotes (`Klanten!E6`) is the copy's
    too; added columns follow the table. Row numbers that do not ascend, repeat, or do not lie
    below the header go under a header on line 1, one a line."""
    numbers = sheet.frame["row_number"]
    aligned = (not numbers.null_count() and numbers.is_unique().all() and numbers.is_sorted()
               and (numbers.is_empty() or numbers.min() > sheet.header_row))
    header, lines = (sheet.header_row, numbers.to_list()) if aligned else (1, list(range(2, len(numbers) + 2)))
    return _Layout(header, lines, _sheet_columns(columns, sheet.letters))


def _sheet_columns(columns: list[str], letters: dict[str, str]) -> list[int]:
    """1-based sheet column of each of `columns`: its letters in the input (`Sheet.letters`), else
    the one right of the column before it; 1, 2, … when those would not ascend."""
    out, last = [], 0
    for name in columns:
        last = column_index_from_string(letters[name]) if name in letters else last + 1
        out.append(last)
    return out if all(a < b for a, b in zip(out, out[1:])) else list(range(1, len(columns) + 1))


def _spread(cells: list, columns: list[int]) -> list:
    """`cells` at their 1-based sheet `columns`, with None in the columns between."""
    row = [None] * (columns[-1] if columns else 0)
    for column, cell in zip(columns, cells):
        row[column - 1] = cell
    return row


class _Book:
    """An openpyxl workbook, streamed (write-only) when it will hold more than `WRITE_ONLY_ROWS`."""

    def __init__(self, n_rows: int, redact: _Redactor, *, text: bool = False):
        self.write_only = n_rows > WRITE_ONLY_ROWS
        self.wb = Workbook(write_only=self.write_only)
        if not self.write_only:
            self.wb.remove(self.wb.active)
        self.redact = redact
        self.text = text
        """A copy of the input, which people edit and import again: its empty cells are Text
        (`@`) too, so what is typed into them stays text."""

    def cell(self, ws, value: Any, *, bold: bool = False):
        """Return a cell for `value`: a number or boolean as it is; text redacted, as a
        `text_cell` (never a formula); an empty cell plain, or a `text_cell` in a `text` book."""
        font = _BOLD if bold else None
        if isinstance(value, (bool, int, float)) or (value is None and not self.text):
            cell = WriteOnlyCell(ws, value)
            if font:
                cell.font = font
            return cell
        return text_cell(ws, None if value is None else self.redact(str(value))[:32767], font)

    def sheet(self, title: str, frame: pl.DataFrame, *, layout: _Layout | None = None,
              decorate: Callable[[int, tuple, list], None] | None = None):
        """Write `frame` as a sheet where `layout` puts it (default `_Layout.plain`): bold header,
        frozen with the lines above it, auto-filter, widths from the data.

        `decorate(line, values, cells)` may style a line's cells (one per frame column) before
        they are written; the header's line too, with the column names as values.
        """
        layout = layout or _Layout.plain(frame)
        ws = self.wb.create_sheet(_sheet_title(title))
        self._widths(ws, frame, layout.columns)
        for column in layout.columns if self.text else ():  # rows a person adds below are text too
            ws.column_dimensions[get_column_letter(column)].number_format = "@"
        ws.freeze_panes = f"A{layout.header_line + 1}"
        last = 0
        for line, values, bold in [(layout.header_line, tuple(frame.columns), True),
                                   *((n, v, False) for n, v in zip(layout.lines, frame.iter_rows()))]:
            for _ in range(last + 1, line):
                ws.append([])
            cells = [self.cell(ws, v, bold=bold) for v in values]
            if decorate:
                decorate(line, values, cells)
            self._append(ws, _spread(cells, layout.columns))
            last = line
        if frame.width:
            first, end = (get_column_letter(c) for c in (layout.columns[0], layout.columns[-1]))
            ws.auto_filter.ref = f"{first}{layout.header_line}:{end}{last}"
        return ws

    @staticmethod
    def _widths(ws, frame: pl.DataFrame, columns: list[int]) -> None:
        """Each of `frame`'s sheet `columns` as wide as its name or longest value (at most 60)."""
        widths = frame.select(pl.all().cast(pl.String).str.len_chars().max()).row(0) \
            if frame.width else ()
        for column, name, width in zip(columns, frame.columns, widths):
            ws.column_dimensions[get_column_letter(column)].width = min(max(len(name), width or 0) + 2, 60)

    def _append(self, ws, cells: list) -> None:
        ws.append(cells)
        if not self.write_only:  # write-only mode sets the hyperlink ref itself
            for cell in cells:
                if cell is not None and cell.hyperlink is not None:
                    cell.hyperlink.ref = cell.coordinate

    def save(self, path: Path) -> Path:
        self.wb.save(path)
        return path


def _sheet_title(name: str | None) -> str:
    """Return an Excel-legal sheet title (no `[]:*?/\\`, at most 31 characters)."""
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in (name or "Sheet1")).strip("'")
    return clean[:31] or "Sheet1"


def _summary_sheet(book: _Book, report: Report) -> None:
    ws = book.wb.create_sheet("Summary")
    ws.column_dimensions["A"].width, ws.column_dimensions["B"].width = 16, 60
    s = report.summary
    # organizations with their notes: each resource's counts apart ("notes: created"), as the
    # terminal shows them
    items = [(f"{kind}: {k}" if kind else k, n) for kind, counts in _count_parts(report).items()
             for k, n in counts.items()]
    items += [("tags_created", s["tags_created"])] if s.get("tags_created") else []
    items += [("requests", s.get("requests")), ("ok", report.ok)]
    if s.get("already_done"):  # done by an earlier, stopped run of the plan (not this run's writes)
        items.append(("already_done", s["already_done"]))
    items += [(k, s[k]) for k in ("stopped", "left") if s.get(k)]  # a stopped or --limit run
    items += [(k, s.get(k)) for k in ("dry_run", "target", "template", "input", "plan",
                                      "reconciled", "mismatches", "started_at", "finished_at")]
    ws.append([book.cell(ws, "item", bold=True), book.cell(ws, "value", bold=True)])
    for key, value in items:
        ws.append([book.cell(ws, key), book.cell(ws, value)])


def _errors_frame(issues: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """Return `ERROR_COLUMNS` plus `_line` (the `Rows` sheet line of the issue's row, or null)."""
    where = pl.concat_str(
        pl.when(pl.col("row_number").is_not_null()).then(pl.format("row {}", "row_number")),
        pl.when(pl.col("column").is_not_null()).then(pl.format("column {}", "column")),
        separator=", ", ignore_nulls=True)
    lines = table.select("row_number", "resource", "sheet").with_row_index("_line", offset=2).filter(
        pl.col("row_number").is_not_null())
    first = lines.unique(["row_number", "sheet"], keep="first").select(
        "row_number", "sheet", pl.col("_line").alias("_first"))
    return (_conform(issues, ISSUE_SCHEMA)
            .join(lines.drop("sheet"), on=["row_number", "resource"], how="left", maintain_order="left")
            .join(first, on=["row_number", "sheet"], how="left", maintain_order="left", nulls_equal=True)
            .with_columns(pl.coalesce("_line", "_first").alias("_line"))  # whole-row: its first line
            .with_columns(reference=pl.when(where == "").then(pl.lit("file")).otherwise(where))
            .select(*ERROR_COLUMNS, "_line"))


def _with_status(input_frame: pl.DataFrame, report: Report, sheet: str | None = None) -> pl.DataFrame:
    """Return the input's columns (as text) plus `STATUS_COLUMNS`, joined on row_number.

    A `crm_iri` already in the input is kept where this run found no IRI. `bulkcrm_note` says
    what to fix: the row's errors and warnings as the report gives them, else its note (why
    it was skipped or drifted). A row holding an organization and its note gets both outcomes
    (`created; note invalid`), both notes, and the organization's IRI. Only report rows of
    `sheet` count (default: the first report row's, the organizations', which come first): a
    notes sheet of the same workbook has rows of its own.
    """
    cols = [c for c in input_frame.columns if c != "row_number"]
    table = report_table(report)  # by row_number, each row's organization before its note
    sheet = sheet if sheet is not None else _conform(report.rows, ROW_SCHEMA)["sheet"][0] if table.height else None
    both = (pl.len() > 1) & (pl.col("resource") == "organization_notes")
    said = pl.concat_str([pl.col("errors").replace("", None), pl.col("warnings").replace("", None)],
                         separator="; ", ignore_nulls=True).replace("", None)
    said = pl.coalesce(said, pl.col("note"))
    status = (table.filter(pl.col("sheet").eq_missing(pl.lit(sheet, pl.String)))
              .group_by("row_number", maintain_order=True)
              .agg(pl.col("iri").first().alias("_iri"),
                   pl.when(both).then(pl.format("note {}", "outcome")).otherwise("outcome")
                   .str.join("; ").alias("_out"),
                   pl.when(both).then(pl.format("note: {}", said)).otherwise(said)
                   .drop_nulls().str.join("; ").replace("", None).alias("_note")))
    old_iri = pl.col("crm_iri").cast(pl.String) if "crm_iri" in cols else pl.lit(None, pl.String)
    return (input_frame.join(status, on="row_number", how="left", maintain_order="left")
            .with_columns(crm_iri=pl.coalesce("_iri", old_iri), bulkcrm_status=pl.col("_out"),
                          bulkcrm_note=pl.col("_note"))
            .select(pl.col(c).cast(pl.String)
                    for c in [*cols, *(c for c in STATUS_COLUMNS if c not in cols)]))


def copy_format(encoding: str | None, delimiter: str | None) -> tuple[str, bool]:
    """(separator, UTF-8 BOM) of the with-status CSV copy of an input read with `encoding` and
    `delimiter` (`read.Sheet`'s): the input's own delimiter, so a European Excel that wrote
    `;` splits it again, and a BOM unless the input was plain UTF-8 (without one): Excel reads
    a CSV as UTF-8 only with one (a cp1252 or UTF-16 input came from a Windows program; a
    UTF-8 one with a BOM, `utf-8-sig`, from Excel's "CSV UTF-8")."""
    return (delimiter or ","), encoding not in (None, "utf-8")


def write_report(report: Report, out_dir: str | Path, *, input_sheet: Sheet | None = None,
                 input_path: str | Path | None = None, secrets: Iterable[str] | None = None,
                 other_sheets: dict[str, Sheet | None] | None = None,
                 input_csv: tuple[str, bool] | None = None) -> dict[str, Path]:
    """Write the reconciliation report into `out_dir` (created if needed).

    Files: `report.json` (`Report.to_dict`, indent 2), `report.csv` (`REPORT_COLUMNS`, one line per
    input row, cells neutralised by `neutralise_csv`), `report.xlsx` (sheets `Summary`, `Rows` with
    the outcome cell coloured per `OUTCOME_COLOURS`, `Errors` one line per issue whose `reference`
    links to the row in `Rows`). With `input_sheet` also `<input stem>.with-status.csv` (and
    `.xlsx` when `input_path` is .xlsx/.xlsm): the input plus `STATUS_COLUMNS` (the IRI, the
    outcome, what to fix), joined on `row_number`, the table where the input has it (`_layout`:
    its header row, each row on the line of its `row_number`, each column in its letters, the
    status columns after them), so the cells the notes name are the copy's. A workbook's copy
    also holds `other_sheets` (a notes sheet of the same workbook), each with its own rows' status.

    Args:
        report: the run's `Report`.
        out_dir: directory for the files.
        input_sheet: the input as read (`read.Sheet`: frame, header row, letters), for the
            write-back copy.
        input_path: the input file; its stem and suffix name the write-back copy.
        secrets: strings (API keys) replaced by `[redacted]` wherever they would be written.
        other_sheets: sheet name -> `Sheet` of the workbook's other sheets the run read (None:
            a blank sheet, copied blank).
        input_csv: (separator, BOM) of the with-status CSV copy (`copy_format`); default
            `,` without a BOM.

    Returns:
        Paths by key: `json`, `csv`, `xlsx`, plus `with_status_csv` / `with_status_xlsx`.

    Raises:
        OSError: a file cannot be written. Row problems never raise; they are in the report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    redact = _Redactor(secrets)
    table = report_table(report)
    paths = {
        "json": _write_text(out / "report.json", _json(report.to_dict()), redact),
        "csv": _write_text(out / "report.csv", neutralise_csv(table).write_csv(), redact),
    }
    errors = _errors_frame(report.issues, table)
    book = _Book(max(table.height, errors.height), redact)
    _summary_sheet(book, report)
    book.sheet("Rows", table, decorate=_colour_outcome)
    links = errors["_line"].to_list()
    book.sheet("Errors", errors.drop("_line"), decorate=lambda line, _v, cells: _link(
        cells[-1], links[line - 2] if line > 1 else None))
    paths["xlsx"] = book.save(out / "report.xlsx")
    if input_sheet is not None:
        others = {name: None if sh is None else (_with_status(_as_shown(sh), report, sheet=name), sh)
                  for name, sh in (other_sheets or {}).items()}
        paths |= _write_back((_with_status(_as_shown(input_sheet), report), input_sheet), out, input_path,
                             report, redact, others, input_csv or (",", False))
    return paths


def _colour_outcome(line: int, values: tuple, cells: list) -> None:
    rgb = OUTCOME_COLOURS.get(values[1]) if line > 1 else None
    if rgb:
        cells[1].fill = _FILLS[rgb]


def _link(cell, line: int | None) -> None:
    if line is not None:
        cell.hyperlink = Hyperlink(ref="", location=f"'Rows'!A{line}", display=str(cell.value))


def _stem(input_path: str | Path | None) -> str:
    return Path(input_path).stem if input_path else "input"


def _is_xlsx(input_path: str | Path | None) -> bool:
    return bool(input_path) and Path(input_path).suffix.lower() in (".xlsx", ".xlsm")


def _write_back(first: tuple[pl.DataFrame, Sheet], out: Path, input_path, report: Report,
                redact: _Redactor, others: dict[str, tuple[pl.DataFrame, Sheet] | None],
                csv_format: tuple[str, bool] = (",", False)) -> dict[str, Path]:
    """The with-status copies of `first` (the copy's frame, the input `Sheet`), each table where
    its input has it (`_layout`); the workbook's copy also gets `others` (sheet name -> (frame,
    Sheet), or None for a blank sheet) after it, and then is the only copy: a CSV of the first
    sheet alone would not import again."""
    stem = _stem(input_path)
    frame, sheet = first
    layout = _layout(sheet, frame.columns)
    separator, bom = csv_format
    paths = {} if others and _is_xlsx(input_path) else {"with_status_csv": _write_text(
        out / f"{stem}.with-status.csv", _csv_records(neutralise_csv(frame), layout).write_csv(
            separator=separator, include_header=False), redact, bom=bom)}
    if _is_xlsx(input_path):
        sheets = _conform(report.rows, ROW_SCHEMA)["sheet"].drop_nulls()
        book = _Book(max([frame.height, *(o[0].height for o in others.values() if o)]), redact, text=True)
        _copy_sheet(book, sheets[0] if len(sheets) else "Sheet1", frame, sheet, layout)
        for name, other in others.items():
            if other is None:  # blank in the input (a week without notes): blank in the copy
                book.wb.create_sheet(_sheet_title(name))
            else:
                _copy_sheet(book, name, other[0], other[1], _layout(other[1], other[0].columns))
        paths["with_status_xlsx"] = book.save(out / f"{stem}.with-status.xlsx")
    return paths


def _copy_sheet(book: _Book, title: str, frame: pl.DataFrame, sheet: Sheet, layout: _Layout,
                mark: Callable[[int, list], None] | None = None) -> None:
    """Write `frame` (text: `sheet`'s columns, maybe more after them) as a sheet of a copy of
    `sheet`, where `layout` puts it, each cell that showed an Excel error showing it again as an
    error value (`_error_cells`: as in the input, so an import of the copy flags it again
    rather than sending the text); `mark(line, cells)` may style a line's cells."""
    errors = _error_cells(sheet, frame.columns, layout)

    def decorate(line: int, _values: tuple, cells: list) -> None:
        for col, error in errors.get(line, {}).items():
            cells[col].value, cells[col].data_type = error, "e"
        if mark:
            mark(line, cells)
    book.sheet(title, frame, layout=layout, decorate=decorate)


def _as_shown(sheet: Sheet) -> pl.DataFrame:
    """`sheet`'s frame with the Excel error values it read as empty (its `excel-error` issues:
    `#N/A` cells of a workbook, or their text in a CSV) back in their cells, as the input showed
    them: a copy must not lose what the user sees (a workbook copy makes them error cells again)."""
    by_col: dict[str, dict[int, str]] = {}
    for i in sheet.issues:
        if i.type == "excel-error" and i.value and i.column in sheet.frame.columns:
            by_col.setdefault(i.column, {})[i.row_number] = i.value
    return sheet.frame.with_columns(
        pl.coalesce(pl.col("row_number").replace_strict(cells, default=None, return_dtype=pl.String),
                    pl.col(c)).alias(c) for c, cells in by_col.items())


def _error_cells(sheet: Sheet, columns: list[str], layout: _Layout) -> dict[int, dict[int, str]]:
    """`{line: {column index 0-based: error}}` of `sheet`'s cells that showed an Excel error
    (its `excel-error` issues: `#N/A`, `#DIV/0!`), which it reads as empty."""
    line_of = dict(zip(sheet.frame["row_number"].to_list(), layout.lines))
    index = {name: i for i, name in enumerate(columns)}
    out: dict[int, dict[int, str]] = {}
    for issue in sheet.issues:
        if issue.type == "excel-error" and issue.column in index and issue.row_number in line_of:
            out.setdefault(line_of[issue.row_number], {})[index[issue.column]] = issue.value
    return out


def _csv_records(frame: pl.DataFrame, layout: _Layout) -> pl.DataFrame:
    """`frame` (text) as the records of a CSV copy, to write without polars' header: its header
    first, each field in its sheet column (`layout.columns`, the fields between empty), each
    record on its line (`_padded`)."""
    names = [f"c{i}" for i in range(1, (layout.columns[-1] if layout.columns else 0) + 1)]
    at = dict(zip(layout.columns, frame.columns))
    header = pl.DataFrame([[at.get(i) for i in range(1, len(names) + 1)]], schema=dict.fromkeys(names, pl.String),
                          orient="row")
    body = frame.select(pl.col(at[i]).cast(pl.String).alias(name) if i in at else pl.lit(None, pl.String).alias(name)
                        for i, name in enumerate(names, 1))
    return _padded(pl.concat([header, body]), pl.Series([layout.header_line, *layout.lines]))


def _padded(frame: pl.DataFrame, lines: pl.Series) -> pl.DataFrame:
    """`frame` with empty rows before its rows, so that written as CSV (without a header) row i
    starts on line `lines[i]` (ascending, >= 1), or as soon after as the line breaks inside
    the cells above it allow."""
    if not frame.height:
        return frame
    breaks = frame.select(pl.sum_horizontal(pl.col(c).cast(pl.String).str.count_matches("\n").fill_null(0)
                                            for c in frame.columns)).to_series()
    start = (breaks + 1).cum_sum().shift(1, fill_value=0) + 1  # line of row i with no padding
    padding_so_far = (lines.cast(pl.Int64) - start).clip(lower_bound=0).cum_max()
    pos = pl.int_range(frame.height, eager=True) + padding_so_far  # row i's place among rows
    full = pl.DataFrame({"__pos": pl.int_range(int(pos[-1]) + 1, eager=True)})
    return full.join(frame.with_columns(pos.alias("__pos")), on="__pos", how="left").drop("__pos")


def write_issues(issues: pl.DataFrame, out_dir: str | Path, *,
                 input_sheet: Sheet | None = None, input_path: str | Path | None = None,
                 secrets: Iterable[str] | None = None,
                 other_sheets: dict[str, Sheet] | None = None) -> dict[str, Path]:
    """Write the validation report of `bulkcrm validate` into `out_dir` (created if needed).

    Files: `issues.csv` (`ISSUE_SCHEMA` columns, neutralised), `issues.json`
    (`{"valid": bool, "errors": int, "warnings": int, "issues": [...]}`) and, with `input_sheet`
    (`read.Sheet`), `<input stem>.issues.xlsx`: the input as text, its table where the input
    has it (`_layout`: the header on its row, each data row on the line of its `row_number`,
    each column in its letters), so cell references match the original. Each cell named by an
    issue is filled red (any error) or yellow (warnings only) and carries a comment with the
    message(s), one per line. A row-level issue (column null or not in the sheet) marks the
    row's first cell; a file-level one (row_number null or not in the frame) marks the header's
    first cell. `other_sheets` (sheet name -> `Sheet`: a notes sheet of the same workbook) follow
    as sheets of their own; each sheet is marked with its own issues (`sheet`).

    Returns:
        Paths by key: `csv`, `json`, and `xlsx` when written.

    Raises:
        OSError: a file cannot be written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    redact = _Redactor(secrets)
    issues = _conform(issues, ISSUE_SCHEMA)
    n_errors = issues.filter(pl.col("severity").fill_null("error") == "error").height
    doc = {"valid": n_errors == 0, "errors": n_errors, "warnings": issues.height - n_errors,
           "issues": issues.to_dicts()}
    paths = {
        "csv": _write_text(out / "issues.csv", neutralise_csv(issues).write_csv(), redact),
        "json": _write_text(out / "issues.json", _json(doc), redact),
    }
    if input_sheet is not None:
        others = other_sheets or {}
        book = _Book(max([input_sheet.frame.height, *(sh.frame.height for sh in others.values())]), redact,
                     text=True)
        mine = pl.col("sheet").is_null() | ~pl.col("sheet").is_in(list(others))
        _marked_sheet(book, input_sheet.sheet_name or issues["sheet"].drop_nulls().first() or "Sheet1",
                      input_sheet, issues.filter(mine) if others else issues, redact)
        for name, sh in others.items():
            _marked_sheet(book, name, sh, issues.filter(pl.col("sheet") == name), redact)
        paths["xlsx"] = book.save(out / f"{_stem(input_path)}.issues.xlsx")
    return paths


def _marked_sheet(book: _Book, title: str, sheet: Sheet, issues: pl.DataFrame,
                  redact: _Redactor) -> None:
    """One sheet of `<input>.issues.xlsx`: the input as text, its cells marked (`write_issues`)."""
    frame = sheet.frame.select(pl.exclude("row_number").cast(pl.String))
    layout = _layout(sheet, frame.columns)
    marks = _issue_marks(issues, frame.columns, sheet.frame["row_number"], layout)
    _copy_sheet(book, title, frame, sheet, layout, lambda line, cells: _mark(line, cells, marks, redact))


def _issue_marks(issues: pl.DataFrame, columns: list[str], row_numbers: pl.Series,
                 layout: _Layout) -> dict[tuple[int, int], tuple[bool, str]]:
    """Return `{(line, column index 0-based): (has_error, messages)}` for the flagged cells."""
    where = pl.DataFrame({"row_number": row_numbers.cast(pl.Int64),
                          "_line": pl.Series(layout.lines, dtype=pl.Int64)}).unique("row_number", keep="first")
    index = {name: i for i, name in enumerate(columns)}
    marked = (issues.join(where, on="row_number", how="left", maintain_order="left")
              .with_columns(pl.col("_line").fill_null(layout.header_line),
                            _col=pl.col("column").replace_strict(
                                index, default=0, return_dtype=pl.Int64).fill_null(0))
              .group_by("_line", "_col", maintain_order=True)
              .agg((pl.col("severity").fill_null("error") == "error").any().alias("error"),
                   pl.col("message").fill_null("").str.join("\n").alias("text")))
    return {(line, col): (error, text) for line, col, error, text in marked.iter_rows()}


def _mark(line: int, cells: list, marks: dict[tuple[int, int], tuple[bool, str]],
          redact: _Redactor) -> None:
    for col, cell in enumerate(cells):
        if (line, col) in marks:
            error, text = marks[line, col]
            cell.fill = _FILLS[RED if error else YELLOW]
            cell.comment = Comment(redact(text), "bulkcrm", width=320, height=120)


_KIND_NAMES = {"organization_notes": "notes"}


def counts_by_resource(report: Report) -> dict[str, dict[str, int]]:
    """`{"organizations": counts, "notes": counts}` (`Report.counts` of each resource's rows)
    when the report holds organizations and their notes; `{}` when it holds one resource."""
    if "resource" not in report.rows.columns or not report.rows.height:
        return {}
    kinds = sorted(report.rows["resource"].fill_null("organizations").unique().to_list(),
                   key=lambda k: (k != "organizations", k))  # organizations first, as planned
    if len(kinds) < 2:
        return {}
    return {_KIND_NAMES.get(k, k): Report(rows=report.rows.filter(
        pl.col("resource").fill_null("organizations") == k)).counts() for k in kinds}


def _count_parts(report: Report) -> dict[str, dict[str, int]]:
    """`counts_by_resource`, or `{"": report.counts()}` when the report holds one resource."""
    return counts_by_resource(report) or {"": report.counts()}


def render_summary(report: Report, *, out_dir: str | Path | None = None) -> str:
    """Return terminal lines: counts in `COUNT_KEYS` order (then others), one line per resource
    when the run wrote organizations and their notes, requests, report path.

    Example::

        created 1, patched 1, replaced 0, unchanged 1, conflict 1, invalid 1, failed 1
        tags created: 2
        requests: 7
        3 rows need attention; see out/report.xlsx (also report.csv, report.json)
    """
    s = report.summary
    # organizations with their notes are counted apart, one line each
    lines = [(f"{kind}: " if kind else "") + ", ".join(f"{k} {n}" for k, n in counts.items())
             for kind, counts in _count_parts(report).items()]
    if s.get("tags_created"):  # the template's `create_missing` tags the plan made
        lines.append(f"tags created: {s['tags_created']}")
    dry = " (dry run: nothing written)" if s.get("dry_run") else ""
    lines.append(f"requests: {s.get('requests', 0)}{dry}")
    if s.get("reconciled"):
        lines.append(f"reconciled: {s.get('mismatches', 0)} mismatch(es)")
    if s.get("left") and s.get("stopped"):
        lines.append(f"the run stopped: {s['left']} operation(s) not applied yet; run the same apply "
                     "again to do them")
    elif s.get("left"):  # apply --limit
        lines.append(f"{s['left']} operation(s) not applied yet (--limit): run the same apply again "
                     "(with or without --limit) to do them")
    bad = report.rows.height and int(report.rows["outcome"].is_in(NOT_OK).sum())
    head = f"{bad} row(s) need attention; see" if bad else "report:"
    if out_dir is not None:
        lines.append(f"{head} {Path(out_dir) / 'report.xlsx'} (also report.csv, report.json)")
    elif bad:
        lines.append(f"{bad} row(s) need attention")
    return "\n".join(lines)
