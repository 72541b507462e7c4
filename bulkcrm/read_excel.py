"""Excel part of the read stage: a worksheet -> a grid of the text the person sees.

Values come from fastexcel (calamine: fast, resolves shared/rich/inline strings, phonetic runs
and `_xHHHH_` escapes). calamine does not expose number formats, cell types or formulas, so for
`.xlsx` one vectorised regex pass over the sheet XML (ECMA-376 Part 1, §18.3.1.4 `c`) finds the
cells that are not plain text: numbers (rendered with their number format, §18.8.31, by
`excel_formats`), booleans,
error values, formulas without a cached value, plus the merged ranges (§18.3.1.55).

Legacy `.xls` (BIFF) cells are read as calamine renders them (dates ISO, booleans TRUE/FALSE,
floats at 15 digits) but without number-format rendering or formula/merge/error detection
(error cells read as empty).
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from xml.etree import ElementTree as ET

import polars as pl

from bulkcrm.errors import InputError, Issue, place
from bulkcrm.excel_formats import shown_date, shown_numbers

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
       "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
       "rel": "http://schemas.openxmlformats.org/package/2006/relationships"}
_BUILTIN_FORMATS = {  # ECMA-376 Part 1 §18.8.30 (ids without a format code in styles.xml)
    0: "General", 1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00", 9: "0%", 10: "0.00%",
    11: "0.00E+00", 12: "# ?/?", 13: "# ??/??", 14: "yyyy-mm-dd", 15: "d-mmm-yy", 16: "d-mmm",
    17: "mmm-yy", 18: "h:mm AM/PM", 19: "h:mm:ss AM/PM", 20: "h:mm", 21: "h:mm:ss",
    22: "yyyy-mm-dd h:mm", 37: "#,##0 ;(#,##0)", 38: "#,##0 ;(#,##0)", 39: "#,##0.00;(#,##0.00)",
    40: "#,##0.00;(#,##0.00)", 45: "mm:ss", 46: "[h]:mm:ss", 47: "mm:ss.0", 48: "##0.0E+0",
    49: "@",
}
_CELL = r"(?s)<c\s[^>]*[^/]>.*?</c>"
NUMERIC_RULE = "numbers stored as numeric cells lose leading + and 0 (ECMA-376 §18.3.1.4)"
"""The rule of a numeric-cell warning (`plan.HELD_WARNINGS` leaves it out where nothing is sent)."""
_OLE = b"\xd0\xcf\x11\xe0"
"""The first bytes of an OLE2 compound file: a legacy .xls, or an encrypted .xlsx."""
_DATE_RULE = "a date/time number format (ECMA-376 §18.8.31) on a field that is not a date-time"


@dataclass
class ExcelGrid:
    """A worksheet as a grid plus what the XML scan found.

    Attributes:
        grid: `row_number` (Int64, Excel row) and `c0..cN` (String, N = absolute 0-based column).
        sheet_name: the worksheet read.
        cells: typed cells from the scan: row_number (Int64), col (Int64, 0-based), kind
            (`number`|`bool`|`error`|`no-result`), text (String: shown text, error code; a
            date ISO 8601; a no-result cell's formula, `=SUM(A1)`, when the cell holds its
            text), id_like (Boolean: General-format integer), format (String: the number
            format code of a date/time cell, else null). Empty for `.xls`.
        merges: merged ranges as (first_row, first_col, last_row, last_col), 1-based rows,
            0-based cols.
        sheet_names: every sheet of the workbook, in order.
        hidden: the Excel rows (1-based) hidden by Hide or a filter (`<row hidden="1">`,
            ECMA-376 §18.3.1.73). Empty for `.xls`.
        visible_names: the sheets not hidden (every sheet of a `.xls`), in order.
        hidden_columns: the 0-based columns Excel hides (`<col hidden="1">`, ECMA-376
            §18.3.1.13). Empty for `.xls`.
    """

    grid: pl.DataFrame
    sheet_name: str
    cells: pl.DataFrame
    merges: list[tuple[int, int, int, int]] = field(default_factory=list)
    sheet_names: list[str] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    visible_names: list[str] = field(default_factory=list)
    hidden_columns: list[int] = field(default_factory=list)


def load_excel(path: Path, sheet: str | int | None) -> ExcelGrid:
    """Load one worksheet of `path` as an `ExcelGrid`.

    Raises:
        InputError: unreadable or password-protected workbook, missing sheet, chart sheet.
    """
    import fastexcel

    where = str(path)
    try:
        reader = fastexcel.read_excel(path)
    except Exception as e:  # noqa: BLE001 - fastexcel/calamine raise their own tree
        with path.open("rb") as fh:
            head = fh.read(4096)
        ole = head[:4] == _OLE  # an encrypted .xlsx is an OLE container
        if "password" in str(e).lower() or (ole and path.suffix.lower() != ".xls"):
            raise InputError("the workbook is password-protected (encrypted); remove the "
                             "password in Excel and save again, or export the sheet as CSV",
                             path=where) from None
        if path.name.startswith("~$"):  # Office's owner file of an open workbook
            raise InputError("this is the lock file Excel keeps beside a workbook it has open (a name "
                             "beginning with ~$), not a workbook; pass the workbook itself", path=where) from None
        if (what := _not_a_workbook(head)) is not None:
            raise InputError(what, path=where) from None
        raise InputError(f"cannot open as an Excel workbook ({str(e).splitlines()[0]}); check "
                         "the file or save it again from Excel", path=where) from None
    names = list(reader.sheet_names)
    shown = _visible_from_xml(path)
    idx = _sheet_index(reader, names, sheet, path, shown)
    try:
        xs = reader.load_sheet(idx, header_row=None, dtypes="string", skip_rows=0)
        df = xs.to_polars()
        abs_cols = [c.absolute_index for c in xs.available_columns()]
    except Exception as e:  # noqa: BLE001
        raise InputError(f"sheet {names[idx]!r} cannot be read as a worksheet ({e}); pick "
                         f"another with --sheet (available: {', '.join(names)})",
                         path=where) from None
    grid = df.rename(dict(zip(df.columns, (f"c{i}" for i in abs_cols)))).with_row_index(
        "row_number", 1).with_columns(pl.col("row_number").cast(pl.Int64))
    cells, merges, hidden, hidden_cols = _empty_cells(), [], [], []
    try:
        if path.suffix.lower() == ".xls" or not zipfile.is_zipfile(path):
            raise KeyError("not an OOXML package")
        with zipfile.ZipFile(path) as zf:
            cells, merges, hidden, hidden_cols = _scan(zf, idx)
        grid = _apply(grid, cells)
    except (KeyError, IndexError, StopIteration, ET.ParseError, zipfile.BadZipFile):
        grid = _xls_fixups(grid)  # no readable sheet XML: keep calamine's rendering
    visible = [names[i] for i in shown if i < len(names)] if shown is not None else names
    return ExcelGrid(_pad_columns(grid), names[idx], cells, merges, names, hidden, visible, hidden_cols)


def _not_a_workbook(head: bytes) -> str | None:
    """What a file under an Excel name holds instead, from its first bytes: nothing, a web page
    or delimited text (UTF-8, or UTF-16 with its BOM); None when it may be a damaged workbook
    (a ZIP or OLE container, or binary)."""
    if not head:
        return "the file is empty (0 bytes), not an Excel workbook"
    if head[:2] == b"PK" or head[:4] == _OLE:
        return None
    text = head.decode("utf-16", "replace").encode() if head[:2] in (b"\xff\xfe", b"\xfe\xff") else head
    if b"\x00" in text:  # binary: a workbook's bytes have NULs, text has none
        return None
    if text.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):  # a web app's "Excel" download
        return ("this is an HTML or XML page, not an Excel workbook: a table to open in Excel and "
                "save as .xlsx, or a web page (an error or login page) saved instead of the file")
    return "this is delimited text, not an Excel workbook; rename it to .csv"


def _sheet_index(reader, names: list[str], sheet: str | int | None, path: Path,
                 visible: list[int] | None) -> int:
    """The index of the sheet to read: `sheet` by index or name (any case), else the first
    of `visible` (`_visible_from_xml`; None: not xlsx, each sheet is loaded to ask)."""
    where = str(path)
    avail = ", ".join(f"{i}: {n!r}" for i, n in enumerate(names))
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        if 0 <= sheet < len(names):
            return sheet
        raise InputError(f"no sheet with index {sheet}; available sheets are {avail}", path=where)
    if sheet is not None:
        if str(sheet) in names:
            return names.index(str(sheet))
        # Excel's sheet names are unique regardless of case, so `organizations` can mean one only
        folded = [i for i, n in enumerate(names) if n.casefold() == str(sheet).strip().casefold()]
        if len(folded) == 1:
            return folded[0]
        raise InputError(f"no sheet named {sheet!r}; available sheets are {avail}", path=where)
    if visible is not None:
        if visible:
            return visible[0]
    else:
        for i in range(len(names)):
            try:
                if reader.load_sheet(i, header_row=None, n_rows=1,
                                     dtypes="string").visible == "visible":
                    return i
            except Exception:  # noqa: BLE001 - chart sheets cannot be loaded
                continue
    raise InputError(f"the workbook has no visible worksheet; pass --sheet ({avail})", path=where)


def _visible_from_xml(path: Path) -> list[int] | None:
    """Indexes of visible worksheets (not chart sheets) from xl/workbook.xml; None if not xlsx."""
    if path.suffix.lower() == ".xls" or not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            sheets = _sheet_targets(zf)
    except (KeyError, ET.ParseError, StopIteration):
        return None
    return [i for i, (state, target) in enumerate(sheets)
            if state == "visible" and "chartsheets/" not in target]


# --- sheet XML scan -------------------------------------------------------------------------

def _empty_cells() -> pl.DataFrame:
    return pl.DataFrame(schema={"row_number": pl.Int64, "col": pl.Int64, "kind": pl.String,
                                "text": pl.String, "id_like": pl.Boolean, "format": pl.String,
                                "styled": pl.Boolean})


def _sheet_targets(zf: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(state, part path) of every sheet in workbook order, from xl/workbook.xml and its rels
    (each read once). Raises KeyError for a missing part or relationship."""
    sheets = ET.fromstring(zf.read("xl/workbook.xml")).findall("m:sheets/m:sheet", _NS)
    rels = {r.get("Id"): r.get("Target") for r in ET.fromstring(
        zf.read("xl/_rels/workbook.xml.rels")).findall("rel:Relationship", _NS)}
    out = []
    for sh in sheets:
        target = rels.get(sh.get(f"{{{_NS['r']}}}id"))
        if target is None:
            raise KeyError("no relationship for a sheet")
        out.append((sh.get("state", "visible"), target.lstrip("/") if target.startswith("/") else f"xl/{target}"))
    return out


def _sheet_xml_path(zf: zipfile.ZipFile, idx: int) -> str:
    return _sheet_targets(zf)[idx][1]


def _formats(zf: zipfile.ZipFile) -> tuple[list[str], bool]:
    """Return (number-format code per cellXfs index, workbook uses the 1904 date system)."""
    wb = zf.read("xl/workbook.xml").decode("utf-8", "replace")
    date1904 = re.search(r"<(?:\w+:)?workbookPr\b[^>]*\bdate1904=\"(1|true)\"", wb) is not None
    if "xl/styles.xml" not in zf.namelist():
        return [], date1904
    st = ET.fromstring(zf.read("xl/styles.xml"))
    custom = {int(f.get("numFmtId")): f.get("formatCode", "")
              for f in st.findall("m:numFmts/m:numFmt", _NS)}
    codes = [custom.get(int(x.get("numFmtId", 0)), _BUILTIN_FORMATS.get(
        int(x.get("numFmtId", 0)), "General")) for x in st.findall("m:cellXfs/m:xf", _NS)]
    return codes, date1904


def _scan(zf: zipfile.ZipFile, idx: int
          ) -> tuple[pl.DataFrame, list[tuple[int, int, int, int]], list[int], list[int]]:
    """(`ExcelGrid.cells`, merges, hidden rows, hidden columns) of sheet `idx`'s XML."""
    xml = zf.read(_sheet_xml_path(zf, idx)).decode("utf-8", "replace")
    merges = [_range(a, b) for a, b in re.findall(
        r"<(?:\w+:)?mergeCell\s[^>]*ref=\"([A-Z]+\d+):([A-Z]+\d+)\"", xml)] \
        if "mergeCell " in xml else []
    hidden = _hidden_rows(xml) if "hidden=" in xml else []
    hidden_cols = _hidden_columns(xml) if "hidden=" in xml else []
    tag = pl.col("tag")
    raw = (pl.DataFrame({"x": [xml]}).select(pl.col("x").str.extract_all(_CELL)).explode("x")
           .drop_nulls().with_columns(pl.col("x").str.extract(r"^(<c[^>]*>)").alias("tag"))
           .filter(~tag.str.contains(r'\st="(?:s|inlineStr|d)"'))
           .select(tag.str.extract(r'\sr="([A-Z]{1,3}\d+)"').alias("ref"),
                   tag.str.extract(r'\ss="(\d+)"').cast(pl.Int64).fill_null(0).alias("s"),
                   tag.str.extract(r'\st="(\w+)"').fill_null("n").alias("t"),
                   pl.col("x").str.extract(r"<v>([^<]*)</v>").alias("v"),
                   pl.col("x").str.contains(r"<f[\s>/]").alias("f"),
                   _unescaped(pl.col("x").str.extract(r"<f(?:\s[^>]*)?>([^<]+)</f>")).alias("fx"))
           .filter(pl.col("ref").is_not_null(), pl.col("v").is_not_null() | pl.col("f")))
    if raw.height == 0:
        return _empty_cells(), merges, hidden, hidden_cols
    codes, date1904 = _formats(zf)
    letters = raw["ref"].str.extract(r"^([A-Z]+)").unique().to_list()
    raw = raw.with_columns(
        pl.col("ref").str.extract(r"(\d+)$").cast(pl.Int64).alias("row_number"),
        pl.col("ref").str.extract(r"^([A-Z]+)").replace_strict(
            {s: _col_index(s) for s in letters}, return_dtype=pl.Int64).alias("col"))
    no_result = pl.col("f") & (pl.col("v").is_null() | ((pl.col("v") == "") & (pl.col("t") != "str")))
    kind = (pl.when(no_result).then(pl.lit("no-result"))
            .when(pl.col("t") == "e").then(pl.lit("error"))
            .when(pl.col("t") == "b").then(pl.lit("bool"))
            .when(pl.col("t") == "n").then(pl.lit("number")))
    raw = raw.with_columns(kind.alias("kind")).drop_nulls("kind")
    nums = shown_numbers(raw.filter(pl.col("kind") == "number").select("v", "s").unique(),
                          codes, date1904)
    raw = raw.join(nums.with_columns(pl.lit("number").alias("kind")), on=["v", "s", "kind"],
                   how="left")
    text = (pl.when(pl.col("kind") == "number").then(pl.col("shown"))
            .when(pl.col("kind") == "bool").then(pl.when(pl.col("v") == "1").then(pl.lit("TRUE"))
                                                 .otherwise(pl.lit("FALSE")))
            .when(pl.col("kind") == "error").then(pl.col("v"))
            .when(pl.col("kind") == "no-result").then(pl.lit("=") + pl.col("fx")))  # its formula, when written out
    cells = raw.select("row_number", "col", "kind", text.alias("text"),
                       pl.col("id_like").fill_null(False), "format", pl.col("styled").fill_null(False))
    return cells, merges, hidden, hidden_cols


def _unescaped(xml_text: pl.Expr) -> pl.Expr:
    """XML text with its five predefined entities (XML 1.0 §4.6) as characters; `&amp;` last."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        xml_text = xml_text.str.replace_all(entity, char, literal=True)
    return xml_text


_HIDDEN = re.compile(r'\shidden="(?:1|true)"')
"""A `<row>` or `<col>` tag's hidden attribute set (xsd:boolean `1`/`true`)."""


def _hidden_columns(xml: str) -> list[int]:
    """The 0-based columns of every `<col>` whose `hidden` is true (`min`..`max`, 1-based,
    ECMA-376 §18.3.1.13): columns Hide hides (a collapsed outline group too)."""
    out: list[int] = []
    for t in re.findall(r"<(?:\w+:)?col\s[^>]*>", xml):
        lo, hi = re.search(r'\smin="(\d+)"', t), re.search(r'\smax="(\d+)"', t)
        if lo and hi and _HIDDEN.search(t):
            out += range(int(lo.group(1)) - 1, min(int(hi.group(1)), 16384))
    return out


def _hidden_rows(xml: str) -> list[int]:
    """The `r` of every `<row>` whose `hidden` is true (xsd:boolean `1`/`true`, ECMA-376
    §18.3.1.73): rows Hide or a filter hides; attributes in any order."""
    tags = re.findall(r"<(?:\w+:)?row\s[^>]*>", xml)
    return [int(m.group(1)) for t in tags if _HIDDEN.search(t)
            and (m := re.search(r'\sr="(\d+)"', t))]


def _col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _range(a: str, b: str) -> tuple[int, int, int, int]:
    (ca, ra), (cb, rb) = (re.match(r"([A-Z]+)(\d+)", x).groups() for x in (a, b))
    return int(ra), _col_index(ca), int(rb), _col_index(cb)


def _apply(grid: pl.DataFrame, cells: pl.DataFrame) -> pl.DataFrame:
    """Overwrite the scanned cells' values in the grid (errors and no-result cells -> null)."""
    if cells.height == 0:
        return grid
    need = int(cells["row_number"].max()) - grid.height
    if need > 0:
        grid = pl.concat([grid, pl.DataFrame({"row_number": range(grid.height + 1,
                                                                  grid.height + need + 1)},
                                             schema={"row_number": pl.Int64})],
                         how="diagonal")
    shown = cells.with_columns(pl.when(pl.col("kind").is_in(["number", "bool"]))
                               .then(pl.col("text")).alias("text"))
    for (col,), part in shown.partition_by("col", as_dict=True).items():
        name = f"c{col}"
        base = grid[name] if name in grid.columns else pl.Series(name, [None] * grid.height,
                                                                 pl.String)
        idx = (part["row_number"] - 1).to_list()
        grid = grid.with_columns(base.scatter(idx, part["text"]).alias(name))
    return grid


def _pad_columns(grid: pl.DataFrame) -> pl.DataFrame:
    """Columns c0..cN in order (leading empty columns as nulls), so positions are absolute."""
    idx = [int(c[1:]) for c in grid.columns if c != "row_number"]
    names = [f"c{i}" for i in range(max(idx) + 1)] if idx else []
    return grid.select("row_number", *(pl.col(n) if n in grid.columns
                                       else pl.lit(None, pl.String).alias(n) for n in names))


def _xls_fixups(grid: pl.DataFrame) -> pl.DataFrame:
    """`.xls`: calamine's text -> what Excel shows: datetimes `YYYY-MM-DD HH:MM:SS` -> ISO 8601
    (date only at midnight), `true/false` -> TRUE/FALSE (Excel turns typed true/false into
    booleans), floats at Excel's 15 significant digits (`41800000.009999998` -> `41800000.01`)."""
    long_float = r"^-?\d*\.\d+$"
    return grid.with_columns(
        pl.when(pl.col(c).str.contains(long_float) & (pl.col(c).str.len_chars() > 16))
        .then(pl.col(c).cast(pl.Float64, strict=False).round_sig_figs(15).cast(pl.String))
        .otherwise(pl.col(c).str.replace(r"^(\d{4}-\d\d-\d\d) 00:00:00$", "${1}")
                   .str.replace(r"^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)", "${1}T${2}")
                   .replace({"true": "TRUE", "false": "FALSE"}))
        for c in grid.columns if c != "row_number")


# --- issues ------------------------------------------------------------------------------------

NUMBERS_SCHEMA = {"row_number": pl.Int64, "column": pl.String, "text": pl.String, "cell": pl.String,
                  "format": pl.String}
"""`excel_issues`' typed cells that only the template can judge (`read.Sheet.numbers`): the other
General-format integer cells (`format` null) and the date/time cells (`format`: their number
format code; `text` ISO 8601)."""


def numeric_cell_issue(rn: int, column: str | None, text: str, file: str, sheet: str | None,
                       ref: str) -> Issue:
    """The numeric-cell warning of one cell (`B4`): its + or leading 0 may be lost."""
    return Issue("numeric-cell", rn, column, text, NUMERIC_RULE,
                 f"{_at(file, rn, column, sheet, ref)}: the cell was stored as a number; a "
                 "leading + or 0 may have been lost; format the column as Text", "warning", file, sheet, ref)


def styled_cell_issue(rn: int, column: str | None, text: str, file: str, sheet: str | None, ref: str,
                      stored: str | None = None) -> Issue:
    """The numeric-cell warning of an integer cell (`B4`) whose number format shows it as
    `text` (`2,234,274,047`, `2138.00`, `$12`): that text is read. `stored`: the column is a
    phone number's, which is read as the digits the cell stores (`normalize.as_stored`)."""
    what = (f"it is read as the number {stored}, whose leading + or 0 may have been lost"
            if stored else "that text is what is read and sent (an id or zip code with separators, "
            "decimals or a currency sign is another value)")
    return Issue("numeric-cell", rn, column, text, NUMERIC_RULE,
                 f'{_at(file, rn, column, sheet, ref)}: the cell is a number its format shows as "{text}"; '
                 f"{what}: format the column as Text and type the value as it should be sent",
                 "warning", file, sheet, ref)


def date_cell_issue(rn: int, column: str | None, text: str, code: str, file: str,
                    sheet: str | None, ref: str, not_sent: str | None = None) -> Issue:
    """The date-cell warning of one cell (`H2`) Excel stored as a date/time, read as ISO `text`,
    under number format `code`: what Excel shows (`shown_date`: `12-Mar`) is how Excel turned a
    typed `3-12` or `1-50` into a date; the typed value is lost (ECMA-376 §18.8.31).
    `not_sent`: the cell is a `phone` number's, which a date is not, or a `text` field's, whose
    value it is not: either way it is not sent (a record keeps what it holds). An `identifier`'s
    date names no record, so the row is an error: matched by its other identifiers it would
    write the date over the record's value, matched by none it would create a duplicate."""
    nothing = {"phone": ", which is no phone number, so it is not sent",
               "text": ", not what was typed, so it is not sent (a record keeps what it holds)",
               "identifier": ", not what was typed, so it names no record and the row is not written "
                             "(it would create a duplicate or overwrite the record's value)"}.get(not_sent, "")
    return Issue("date-cell", rn, column, text, _DATE_RULE,
                 f'{_at(file, rn, column, sheet, ref)}: the cell was stored as a date: Excel shows '
                 f'"{shown_date(text, code)}", read as "{text}"{nothing}; Excel turns a typed value such as 3-12 '
                 "or 1-50 into a date: format the column as Text and type the value again",
                 "error" if not_sent == "identifier" else "warning", file, sheet, ref)


def _at(file: str, rn: int, column: str | None, sheet: str | None, ref: str) -> str:
    """Where a cell issue is: `file:row:column (Sheet!B4)` (a range `B4:B5` for a merge)."""
    return f"{place(file, rn, column)} ({sheet}!{ref})"


def excel_issues(g: ExcelGrid, header_row: int, names: dict[str, str], file: str
                 ) -> tuple[list[Issue], pl.DataFrame]:
    """Issues for cells below the header: excel-error and formula-without-result (errors),
    numeric-cell and merged-cell (warnings); and the typed cells only a template can judge
    (`NUMBERS_SCHEMA`): the other General-format integer cells, which `validate` flags where
    the template maps a text field whose leading 0 matters (a zip code, a KvK number), and the
    date/time cells, which it flags where the field is not a date-time.

    numeric-cell rule here: a General-format integer cell is flagged when it has 8 or more
    digits (phone, KvK, account numbers) or its column also holds text cells below the header;
    ordinary numbers in an all-numeric column are not flagged by the reader alone. An integer
    whose format shows it with separators, decimals, a currency or percent sign (`styled`:
    `12,345,678`, `2138.00`) is always flagged: that text is sent.
    """
    sheet, out = g.sheet_name, []
    cells = g.cells.filter(pl.col("row_number") > header_row)
    text_cols = _text_columns(g.grid.filter(pl.col("row_number") > header_row), cells)
    flag = pl.col("kind").is_in(["error", "no-result"]) | pl.col("id_like") & (
        (pl.col("text").str.len_chars() >= 8) | pl.col("col").is_in([int(c[1:]) for c in text_cols]))
    flag = flag | pl.col("styled")
    flagged = cells.filter(flag)
    numbers = cells.filter((pl.col("id_like") | pl.col("format").is_not_null()) & ~flag)
    cols = numbers["col"].unique().to_list()  # per column, not per cell: its header and letters
    numbers = numbers.select(
        pl.col("row_number").cast(pl.Int64),
        pl.col("col").replace_strict({c: names.get(f"c{c}") for c in cols}, return_dtype=pl.String)
        .alias("column"),
        pl.col("text").cast(pl.String),
        pl.concat_str(pl.col("col").replace_strict({c: _letters(c) for c in cols}, return_dtype=pl.String),
                      pl.col("row_number").cast(pl.String)).alias("cell"),
        "format",
    ).cast(NUMBERS_SCHEMA).drop_nulls("column")
    for rn, col, kind, text, _, _, styled in flagged.iter_rows():
        ref, column = f"{_letters(col)}{rn}", names.get(f"c{col}")
        at = _at(file, rn, column, sheet, ref)  # as every issue: file:row:column
        if styled:
            out.append(styled_cell_issue(rn, column, text, file, sheet, ref))
        elif kind == "error":
            out.append(Issue("excel-error", rn, column, text, "Excel error value",
                             f"{at}: the cell shows the Excel error {text}; fix the "
                             "formula or type the value", "error", file, sheet, ref))
        elif kind == "no-result":
            out.append(Issue("formula-without-result", rn, column, text,
                             "formula cells need a cached value (ECMA-376 §18.3.1.96)",
                             f"{at}: formula {f'{text} ' if text else ''}without a stored result; open and "
                             "save the file in Excel or LibreOffice, or paste values", "error", file,
                             sheet, ref))
        else:
            out.append(numeric_cell_issue(rn, column, text, file, sheet, ref))
    return out + _merged_cells(g, header_row, names, file), numbers


def hidden_row_issues(frame: pl.DataFrame, hidden: list[int], file: str, sheet: str) -> list[Issue]:
    """A `hidden-row` warning per data row of `frame` (`read`'s, blank rows gone) that Excel
    hides (`ExcelGrid.hidden`: Hide, or a filter that left it out, ECMA-376 §18.3.1.73): it is
    read like any other row, which someone who filtered the sheet to the rows to upload does
    not expect."""
    if not hidden:
        return []
    rows = frame.filter(pl.col("row_number").is_in(hidden))["row_number"].to_list()
    return [Issue("hidden-row", rn, None, None, "every row of the sheet is read, hidden or not",
                  f"{place(file, rn, None)} ({sheet}!{rn}:{rn}): the row is hidden in Excel (Hide, or filtered "
                  "out); it is read like any other row: delete it from the sheet to leave it out", "warning",
                  file, sheet)
            for rn in rows]


def hidden_column_issues(names: dict[str, str], hidden: list[int], read_cols: Collection[str],
                         header_row: int, file: str, sheet: str) -> list[Issue]:
    """A `hidden-column` warning per column Excel hides (`ExcelGrid.hidden_columns`) that the
    template reads (`read_cols`; every named one when it is empty): its values are read and
    sent like any other column's, which someone who hid it to leave it out does not expect.
    `names`: {grid column `c2`: header}, as `read._finish` gives it."""
    out, hidden = [], set(hidden)  # a set: `<col min="5" max="16384" hidden="1">` hides all to the right
    for c, name in names.items():
        if int(c[1:]) in hidden and (not read_cols or name in read_cols):
            ref = f"{_letters(int(c[1:]))}{header_row}"
            out.append(Issue("hidden-column", header_row, name, None, "every column of the sheet is read, hidden or not",
                             f"{place(file, header_row, name)} ({sheet}!{ref}): the column is hidden in Excel; "
                             "the template reads it, so its values are sent like any other column's: unhide it "
                             "to check them, or leave the column out of the template", "warning", file, sheet, ref))
    return out


def _merged_cells(g: ExcelGrid, header_row: int, names: dict[str, str], file: str) -> list[Issue]:
    """A merged-cell warning per data row whose cells of a merged range read empty (only the
    range's first cell holds its value, ECMA-376 §18.3.1.55): the rows under the first cell, and
    the first cell's own row when the range spans columns. Each names the row's empty cells, the
    range and the value. Not named: a range of empty cells (it loses nothing) and one that starts
    in the header or above (its value is a header or title, which no data row should repeat).

    Args:
        names: {grid column `c<0-based index>`: header}, to name each issue's column.
    """
    out = []
    for r1, c1, r2, c2 in g.merges:
        first = f"c{c1}"
        value = g.grid[first][r1 - 1] if first in g.grid.columns and r1 <= g.grid.height else None
        if value is None or r1 <= header_row:
            continue
        rng = f"{_letters(c1)}{r1}:{_letters(c2)}{r2}"
        for rn in range(r1, r2 + 1):
            left = c1 + 1 if rn == r1 else c1  # the first cell's own row keeps its value
            if left > c2:
                continue
            ref, column = f"{_letters(left)}{rn}", names.get(f"c{left}")
            cells = ref if left == c2 else f"{ref}:{_letters(c2)}{rn}"
            out.append(Issue("merged-cell", rn, column, None, "merged cells (ECMA-376 §18.3.1.55)",
                             f"{_at(file, rn, column, g.sheet_name, cells)}: the "
                             f"{'cell reads' if left == c2 else 'cells read'} as empty: it is in the merged "
                             f'range {rng}, whose value "{value}" only {_letters(c1)}{r1} holds; unmerge the '
                             "range and fill each cell", "warning", file, g.sheet_name, ref))
    return out


def _text_columns(data: pl.DataFrame, cells: pl.DataFrame) -> set[str]:
    """Grid columns holding at least one non-empty cell that the scan did not type (text)."""
    cols = [c for c in data.columns if c != "row_number"]
    if not cols or data.height == 0:
        return set()
    filled = data.select(pl.col(cols).is_not_null().sum()).row(0, named=True)
    shown = cells.filter(pl.col("kind").is_in(["number", "bool"]))
    typed = dict(shown.group_by("col").len().iter_rows())
    return {c for c in cols if filled[c] > typed.get(int(c[1:]), 0)}


@lru_cache(maxsize=4096)
def _letters(col: int) -> str:
    from bulkcrm.read import column_letter

    return column_letter(col)
