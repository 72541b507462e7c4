"""Writing cells and sheets for the report, the copies of the input and export: text made inert
(OWASP "CSV injection"), XLSX string cells in the Text format, secrets redacted, and a table laid
out where its input had it (`Layout`).

Every text cell is made inert: CSV cells that start with `= + - @ TAB CR` or `'` get a `'`
prefix; XLSX cells are written as strings (`data_type "s"`), never formulas, in the Text number
format `@` (`text_cell`), so what a person types over a cell stays text too. An export also
puts a `'` before a value its template's null tokens would read as no value (`escape_cells`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import column_index_from_string, get_column_letter

from .client import secret_forms
from .read import EXCEL_ERRORS, FORMULA_ESCAPE, FORMULA_TRIGGERS, Sheet

CSV_ESCAPE_CHARS = (*FORMULA_TRIGGERS, FORMULA_ESCAPE)
"""A CSV cell starting with one of these gets a `'` prefix (`'` itself, so readers can undo)."""
WRITE_ONLY_ROWS = 10_000
"""Above this many lines an XLSX is streamed (openpyxl write-only mode)."""
GREEN, GREY, AMBER, RED, YELLOW = "C6EFCE", "D9D9D9", "FFD966", "FFC7CE", "FFFF99"
"""RGB fills: done, unchanged, to look at, error, warning."""
FILLS = {rgb: PatternFill(fill_type="solid", fgColor=rgb) for rgb in (GREEN, GREY, AMBER, RED, YELLOW)}
BOLD = Font(bold=True)
_ESCAPE_RE = f"^[{re.escape(''.join(CSV_ESCAPE_CHARS))}]"
_ERROR_RE = rf"^\s*(?:{'|'.join(map(re.escape, EXCEL_ERRORS))})\s*$"  # as `read` tests: stripped
_XLSX_ESCAPE = re.compile(r"_x(?=[0-9A-Fa-f]{4}_)|[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ufffe\uffff]")
"""Text Excel cannot hold literally: a literal `_xHHHH_` and control characters (CR included,
which XML would turn into LF) are written as `_xHHHH_` escapes (ECMA-376 Part 1 §22.9.2.19)."""


XLSX_MAX_CHARS = 32_767
"""Characters an Excel cell holds (Excel specifications and limits); openpyxl cuts a longer one."""


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
    """Return `value` made inert for CSV: a string starting with `CSV_ESCAPE_CHARS`, or one that
    is an Excel error value's text (`#N/A`, which a CSV read takes for the error), gets a `'`.

    Non-strings pass through. `"=1+2"` -> `"'=1+2"`, `"'x"` -> `"''x"` (OWASP CSV injection).
    """
    if isinstance(value, str) and (value.startswith(CSV_ESCAPE_CHARS) or value.strip() in EXCEL_ERRORS):
        return "'" + value
    return value


def neutralise_csv(frame: pl.DataFrame, *, errors: bool = True) -> pl.DataFrame:
    """Return `frame` with every String column passed through `safe_cell_csv` (vectorised);
    `errors=False` leaves Excel error texts as they are (a copy of the input, whose `#N/A`
    cells are to read as errors again)."""
    return escape_cells(frame, f"{_ESCAPE_RE}|{_ERROR_RE}" if errors else _ESCAPE_RE)


def escape_cells(frame: pl.DataFrame, pattern: str | None) -> pl.DataFrame:
    """Return `frame` with a `'` (`FORMULA_ESCAPE`) before every String cell that matches the
    regex `pattern` (None: `frame` as it is).

    Export also escapes so the cells a template's null tokens would read as something else
    (`mapping.null_token_pattern`: `NULL`, `'NULL`), after the formula escape of a CSV: the
    mapping's null step reads `'NULL` as the text `NULL` (`mapping.without_null_tokens`)."""
    if pattern is None:
        return frame
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(pattern)).then(pl.lit(FORMULA_ESCAPE) + pl.col(name))
        .otherwise(pl.col(name)).alias(name)
        for name, dtype in frame.schema.items() if dtype == pl.String
    )


class Redactor:
    """Replace every secret, in any of its `client.secret_forms`, by `[redacted]` (style 6.4);
    the forms are worked out once, as it runs per cell."""

    def __init__(self, secrets: Iterable[str] | None):
        self.forms = secret_forms(secrets)

    def __call__(self, text: str) -> str:
        for form in self.forms:
            text = text.replace(form, "[redacted]")
        return text


def json_text(doc: dict) -> str:
    """`doc` as the report's JSON files hold it: indented, UTF-8 text, a line end at the end."""
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def write_text(path: Path, text: str, redact: Redactor, *, bom: bool = False) -> Path:
    """Write `text` to `path` as UTF-8 (with a BOM: `bom`), every secret redacted; return `path`.

    Raises:
        OSError: the file cannot be written."""
    path.write_text(redact(text), encoding="utf-8-sig" if bom else "utf-8", newline="")
    return path


@dataclass(frozen=True)
class Layout:
    """Where a sheet's table goes: the header's line, each data row's line (ascending, below the
    header; the lines between stay empty) and each column's 1-based sheet column (ascending;
    the columns between stay empty)."""

    header_line: int
    lines: list[int]
    columns: list[int]

    @classmethod
    def plain(cls, frame: pl.DataFrame) -> Layout:
        """The header on line 1, the rows below it, the columns from A on."""
        return cls(1, list(range(2, frame.height + 2)), list(range(1, frame.width + 1)))


def sheet_layout(sheet: Sheet, columns: list[str]) -> Layout:
    """Where a copy of `sheet` puts its table of `columns` (the input's, then any it adds): the
    input's own header row, row numbers and column letters (`Sheet.header_row`, `row_number`,
    `Sheet.letters`), so every address a note or comment quotes (`Klanten!E6`) is the copy's
    too; added columns follow the table. Row numbers that do not ascend, repeat, or do not lie
    below the header go under a header on line 1, one a line."""
    numbers = sheet.frame["row_number"]
    aligned = (not numbers.null_count() and numbers.is_unique().all() and numbers.is_sorted()
               and (numbers.is_empty() or numbers.min() > sheet.header_row))
    header, lines = (sheet.header_row, numbers.to_list()) if aligned else (1, list(range(2, len(numbers) + 2)))
    return Layout(header, lines, _sheet_columns(columns, sheet.letters))


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


class Book:
    """An openpyxl workbook, streamed (write-only) when it will hold more than `WRITE_ONLY_ROWS`."""

    def __init__(self, n_rows: int, redact: Redactor, *, text: bool = False):
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
        font = BOLD if bold else None
        if isinstance(value, (bool, int, float)) or (value is None and not self.text):
            cell = WriteOnlyCell(ws, value)
            if font:
                cell.font = font
            return cell
        return text_cell(ws, None if value is None else self.redact(str(value))[:XLSX_MAX_CHARS], font)

    def sheet(self, title: str, frame: pl.DataFrame, *, layout: Layout | None = None,
              decorate: Callable[[int, tuple, list], None] | None = None):
        """Write `frame` as a sheet where `layout` puts it (default `Layout.plain`): bold header,
        frozen with the lines above it, auto-filter, widths from the data.

        `decorate(line, values, cells)` may style a line's cells (one per frame column) before
        they are written; the header's line too, with the column names as values.
        """
        layout = layout or Layout.plain(frame)
        ws = self.wb.create_sheet(sheet_title(title))
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


def sheet_title(name: str | None) -> str:
    """Return an Excel-legal sheet title (no `[]:*?/\\`, at most 31 characters)."""
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in (name or "Sheet1")).strip("'")
    return clean[:31] or "Sheet1"
