"""The copies of the input a run writes: `<input stem>.with-status.csv|xlsx` (the report's: each
row's IRI, outcome and what to fix) and `<input stem>.issues.xlsx` (validate's: the cells an
issue names marked and commented).

A copy keeps the input's layout (`workbook.sheet_layout`): the header on its row, each row on
the line of its row_number, each column in its letters, so a cell an issue names (`Klanten!E6`)
is the copy's; the workbook copies show the Excel errors (`#N/A`) it showed (`_copy_sheet`),
and the CSV copy their text.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl
from openpyxl.comments import Comment

from .errors import ISSUE_SCHEMA
from .read import Sheet
from .report import ROW_SCHEMA, STATUS_COLUMNS, Report, conform, report_table
from .workbook import (FILLS, RED, YELLOW, Book, Layout, Redactor, json_text, neutralise_csv,
                       sheet_layout, sheet_title, write_text)


def write_copies(report: Report, out: Path, input_sheet: Sheet, input_path: str | Path | None,
                 redact: Redactor, other_sheets: dict[str, Sheet | None] | None,
                 input_csv: tuple[str, bool] | None) -> dict[str, Path]:
    """The with-status copies of `report.write_report` (its docstring says what they hold):
    `with_status_csv` and, for a workbook input, `with_status_xlsx`."""
    others = {name: None if sh is None else
              (_redacted_noted(_with_status(_as_shown(sh), report, sheet=name), redact), sh)
              for name, sh in (other_sheets or {}).items()}
    first = _redacted_noted(_with_status(_as_shown(input_sheet), report), redact)
    return _write_back((first, input_sheet), out, input_path, report, redact, others, input_csv or (",", False))


REDACTED_NOTE = ("a cell of this row holds the API key's text, [redacted] in this copy: type it again "
                 "before importing this copy, or the record gets [redacted]")
"""`bulkcrm_note`'s words for a row of a with-status copy whose cells hold a secret (`Redactor`):
written as `[redacted]` (never a key in a file), it would be sent as such by an import of the
copy, which the README offers for fixing rows."""


def _redacted_noted(frame: pl.DataFrame, redact: Redactor) -> pl.DataFrame:
    """`frame` (a `_with_status` copy) with `REDACTED_NOTE` added to `bulkcrm_note` of the rows
    with a cell holding a secret, in any of its forms (`Redactor.forms`)."""
    cells = [c for c in frame.columns if c not in STATUS_COLUMNS]
    if not redact.forms or not cells:
        return frame
    held = pl.any_horizontal(pl.col(c).str.contains(f, literal=True) for c in cells for f in redact.forms)
    note = pl.concat_str([pl.col("bulkcrm_note"), pl.lit(REDACTED_NOTE)], separator="; ", ignore_nulls=True)
    return frame.with_columns(pl.when(held.fill_null(False)).then(note).otherwise("bulkcrm_note").alias("bulkcrm_note"))


def _with_status(input_frame: pl.DataFrame, report: Report, sheet: str | None = None) -> pl.DataFrame:
    """Return the input's columns (as text) plus `STATUS_COLUMNS`, joined on row_number.

    A `crm_iri` already in the input is kept where this run found no IRI; a row in conflict gets
    none from this run (its match is what is in doubt: the next import would take it as the
    row's own). `bulkcrm_note` says
    what to fix: the row's errors and warnings as the report gives them, else its note (why
    it was skipped or drifted). A row holding an organization and its note gets both outcomes
    (`created; note invalid`), both notes, and the organization's IRI. Only report rows of
    `sheet` count (default: the first report row's, the organizations', which come first): a
    notes sheet of the same workbook has rows of its own.
    """
    cols = [c for c in input_frame.columns if c != "row_number"]
    table = report_table(report)  # by row_number, each row's organization before its note
    sheet = sheet if sheet is not None else conform(report.rows, ROW_SCHEMA)["sheet"][0] if table.height else None
    both = (pl.len() > 1) & (pl.col("resource") == "organization_notes")
    said = pl.concat_str([pl.col("errors").replace("", None), pl.col("warnings").replace("", None)],
                         separator="; ", ignore_nulls=True).replace("", None)
    said = pl.coalesce(said, pl.col("note"))
    status = (table.filter(pl.col("sheet").eq_missing(pl.lit(sheet, pl.String)))
              .group_by("row_number", maintain_order=True)
              # a conflict's record is disputed: its IRI in the copy would end the dispute unseen
              .agg(pl.col("iri").filter(pl.col("outcome") != "conflict").first().alias("_iri"),
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


def _stem(input_path: str | Path | None) -> str:
    return Path(input_path).stem if input_path else "input"


def _is_xlsx(input_path: str | Path | None) -> bool:
    return bool(input_path) and Path(input_path).suffix.lower() in (".xlsx", ".xlsm")


def _write_back(first: tuple[pl.DataFrame, Sheet], out: Path, input_path, report: Report,
                redact: Redactor, others: dict[str, tuple[pl.DataFrame, Sheet] | None],
                csv_format: tuple[str, bool] = (",", False)) -> dict[str, Path]:
    """The with-status copies of `first` (the copy's frame, the input `Sheet`), each table where
    its input has it (`sheet_layout`); the workbook's copy also gets `others` (sheet name -> (frame,
    Sheet), or None for a blank sheet) after it, and then is the only copy: a CSV of the first
    sheet alone would not import again."""
    stem = _stem(input_path)
    frame, sheet = first
    layout = sheet_layout(sheet, frame.columns)
    separator, bom = csv_format
    paths = {} if others and _is_xlsx(input_path) else {"with_status_csv": write_text(
        out / f"{stem}.with-status.csv", _csv_records(neutralise_csv(frame, errors=False), layout).write_csv(
            separator=separator, include_header=False), redact, bom=bom)}
    if _is_xlsx(input_path):
        sheets = conform(report.rows, ROW_SCHEMA)["sheet"].drop_nulls()
        book = Book(max([frame.height, *(o[0].height for o in others.values() if o)]), redact, text=True)
        _copy_sheet(book, sheets[0] if len(sheets) else "Sheet1", frame, sheet, layout)
        for name, other in others.items():
            if other is None:  # blank in the input (a week without notes): blank in the copy
                book.wb.create_sheet(sheet_title(name))
            else:
                _copy_sheet(book, name, other[0], other[1], sheet_layout(other[1], other[0].columns))
        paths["with_status_xlsx"] = book.save(out / f"{stem}.with-status.xlsx")
    return paths


def _copy_sheet(book: Book, title: str, frame: pl.DataFrame, sheet: Sheet, layout: Layout,
                mark: Callable[[int, list], None] | None = None) -> None:
    """Write `frame` (text: `sheet`'s columns, maybe more after them) as a sheet of a copy of
    `sheet`, where `layout` puts it, each cell that showed an Excel error showing it again as an
    error value (`_error_cells`: as in the input, so an import of the copy flags it again
    rather than sending the text), and each date or integer cell of the input a date or number
    again (`_typed_cells`: an import of the copy warns of it again, and does not send a date
    as text); `mark(line, cells)` may style a line's cells."""
    errors = _error_cells(sheet, frame.columns, layout)
    typed = _typed_cells(sheet, frame.columns, layout)

    def decorate(line: int, _values: tuple, cells: list) -> None:
        for col, error in errors.get(line, {}).items():  # a formula: Excel computes it on opening
            cells[col].value, cells[col].data_type = error, "f" if error.startswith("=") else "e"
        for col, (value, code) in typed.get(line, {}).items():
            cells[col].value, cells[col].number_format = value, code
        if mark:
            mark(line, cells)
    book.sheet(title, frame, layout=layout, decorate=decorate)


_UNREAD = ("excel-error", "formula-without-result")
"""The issues of cells the reader read as empty though they are not: a copy that left them
empty would, imported, clear the field under `empty: clear` or a PUT, or go through unflagged."""


def _shown_error(issue) -> str:
    """The error value a copy's cell of an `_UNREAD` issue shows: the Excel error it showed, or
    `#N/A` for a formula without a stored result (a workbook copy writes the formula itself,
    `_error_cells`; a CSV has no formulas, and its `=…` text would be sent)."""
    return issue.value if issue.type == "excel-error" else "#N/A"


def _as_shown(sheet: Sheet) -> pl.DataFrame:
    """`sheet`'s frame with the Excel error values it read as empty (its `excel-error` issues:
    `#N/A` cells of a workbook, or their text in a CSV) back in their cells, as the input showed
    them, and `#N/A` in a formula cell without a stored result: a copy must not lose what the
    user sees, nor leave the cell empty (a workbook copy makes them error or formula cells
    again, `_error_cells`)."""
    by_col: dict[str, dict[int, str]] = {}
    for i in sheet.issues:
        if i.type in _UNREAD and i.column in sheet.frame.columns and (i.value or i.type != "excel-error"):
            by_col.setdefault(i.column, {})[i.row_number] = _shown_error(i)
    return sheet.frame.with_columns(
        pl.coalesce(pl.col("row_number").replace_strict(cells, default=None, return_dtype=pl.String),
                    pl.col(c)).alias(c) for c, cells in by_col.items())


def _error_cells(sheet: Sheet, columns: list[str], layout: Layout) -> dict[int, dict[int, str]]:
    """`{line: {column index 0-based: error or formula}}` of `sheet`'s cells that showed an
    Excel error (its `excel-error` issues: `#N/A`, `#DIV/0!`) or held a formula without a stored
    result (`=SUM(A1)`, or `#N/A` when its text is not in the cell: a shared formula), which it
    reads as empty."""
    line_of = dict(zip(sheet.frame["row_number"].to_list(), layout.lines))
    index = {name: i for i, name in enumerate(columns)}
    out: dict[int, dict[int, str]] = {}
    for issue in sheet.issues:
        if issue.type in _UNREAD and issue.column in index and issue.row_number in line_of:
            formula = issue.type == "formula-without-result" and (issue.value or "").startswith("=")
            out.setdefault(line_of[issue.row_number], {})[index[issue.column]] = \
                issue.value if formula else _shown_error(issue)
    return out


def _typed_cells(sheet: Sheet, columns: list[str], layout: Layout) -> dict[int, dict[int, tuple]]:
    """`{line: {column index 0-based: (value, number format)}}` of `sheet`'s typed cells
    (`Sheet.numbers`: date/time cells under their format, General integer cells) and of the
    integer cells its reader flagged (`numeric-cell` issues of plain digits): a copy that
    turned them into text would lose their warnings, and send a date as text."""
    if sheet.numbers is None or not sheet.numbers.height:
        cells = []
    else:
        cells = sheet.numbers.select("row_number", "column", "text", "format").rows()
    cells += [(i.row_number, i.column, i.value, None) for i in sheet.issues
              if i.type == "numeric-cell" and i.value and i.value.isdigit() and len(i.value) < 16]
    line_of = dict(zip(sheet.frame["row_number"].to_list(), layout.lines))
    index = {name: i for i, name in enumerate(columns)}
    out: dict[int, dict[int, tuple]] = {}
    for rn, column, text, code in cells:
        if column in index and rn in line_of:
            value = int(text) if code is None else _datetime(text)
            if value is not None:
                out.setdefault(line_of[rn], {})[index[column]] = (value, code or "General")
    return out


def _datetime(text: str) -> dt.datetime | dt.time | None:
    """An ISO 8601 date/time as the reader writes a date cell, or None."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return dt.time.fromisoformat(text)
        except ValueError:
            return None


def _csv_records(frame: pl.DataFrame, layout: Layout) -> pl.DataFrame:
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
    has it (`sheet_layout`: the header on its row, each data row on the line of its `row_number`,
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
    redact = Redactor(secrets)
    issues = conform(issues, ISSUE_SCHEMA)
    n_errors = issues.filter(pl.col("severity").fill_null("error") == "error").height
    doc = {"valid": n_errors == 0, "errors": n_errors, "warnings": issues.height - n_errors,
           "issues": issues.to_dicts()}
    paths = {
        "csv": write_text(out / "issues.csv", neutralise_csv(issues).write_csv(), redact),
        "json": write_text(out / "issues.json", json_text(doc), redact),
    }
    if input_sheet is not None:
        others = other_sheets or {}
        book = Book(max([input_sheet.frame.height, *(sh.frame.height for sh in others.values())]), redact,
                     text=True)
        mine = pl.col("sheet").is_null() | ~pl.col("sheet").is_in(list(others))
        _marked_sheet(book, input_sheet.sheet_name or issues["sheet"].drop_nulls().first() or "Sheet1",
                      input_sheet, issues.filter(mine) if others else issues, redact)
        for name, sh in others.items():
            _marked_sheet(book, name, sh, issues.filter(pl.col("sheet") == name), redact)
        paths["xlsx"] = book.save(out / f"{_stem(input_path)}.issues.xlsx")
    return paths


def _marked_sheet(book: Book, title: str, sheet: Sheet, issues: pl.DataFrame,
                  redact: Redactor) -> None:
    """One sheet of `<input>.issues.xlsx`: the input as text, its cells marked (`write_issues`)."""
    frame = sheet.frame.select(pl.exclude("row_number").cast(pl.String))
    layout = sheet_layout(sheet, frame.columns)
    marks = _issue_marks(issues, frame.columns, sheet.frame["row_number"], layout)
    _copy_sheet(book, title, frame, sheet, layout, lambda line, cells: _mark(line, cells, marks, redact))


def _issue_marks(issues: pl.DataFrame, columns: list[str], row_numbers: pl.Series,
                 layout: Layout) -> dict[tuple[int, int], tuple[bool, str]]:
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
          redact: Redactor) -> None:
    for col, cell in enumerate(cells):
        if (line, col) in marks:
            error, text = marks[line, col]
            cell.fill = FILLS[RED if error else YELLOW]
            cell.comment = Comment(redact(text), "bulkcrm", width=320, height=120)
