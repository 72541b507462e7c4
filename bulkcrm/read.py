"""Read stage: a CSV/XLSX/XLS file -> a polars frame of text, exactly what the person sees.

Stage: first stage of every import (`read` -> validate -> plan -> apply). No type inference and
no null tokens: every cell is text (`NA`, `NULL`, `02012345` stay as typed), an empty cell is
null. Cell and row problems come back as `Issue` records; only a file that cannot be read at all
raises `InputError`. Excel specifics (number formats, formulas, merged cells, error values) live
in `bulkcrm.read_excel`; decoding, delimiter detection and CSV parsing in `bulkcrm.read_csv`.

Header detection (when `header_row` is not given): among the first 50 non-blank rows, the header
is the first row with more than half as many non-empty cells as the wide rows below it (the 90th
percentile of the next 20 non-blank rows). Title/preamble rows (one or two cells over a wide
table) are skipped; a header with a few blank cells, or over sparse or ragged data, still wins.
Given the template's column names (`columns`), when that row names none of them, the row
naming most of them is the header instead (a title block over a sparse table); a row naming
one of them stays the header, so no data row is passed over unseen. Pass `header_row` to
override. A column holding data under a blank header cell is read as `(column 2)` (Excel:
`(column B)`) with an `unnamed-column` warning: in a CSV between named columns (values past
the last header are a ragged row), in a sheet anywhere.
"""
from __future__ import annotations

import codecs
import hashlib
import math
import re
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bulkcrm.errors import EmptyInputError, InputError, Issue
from bulkcrm.read_csv import (
    MIXED, _parse_irregular, _parse_regular, _utf8_sample, decode, detect_delimiter, parse_csv)

FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these is a formula to a spreadsheet app (OWASP CSV injection)."""
FORMULA_ESCAPE = "'"
"""Prefix bulkcrm's CSV export puts before such cells (and before cells starting with `'`)."""

CSV_EXTENSIONS = (".csv", ".tsv", ".psv", ".ssv", ".txt")
EXCEL_EXTENSIONS = (".xlsx", ".xlsm", ".xls")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_HEADER_SCAN_ROWS = 50
_RFC4180_RULE = "RFC 4180 section 2.4: each record has the same number of fields"
_CUT_RULE = "RFC 4180 sections 2.4-2.5: a whole record, its quoted field closed (the file ends in a record)"


@dataclass(frozen=True)
class Sheet:
    """One table read from a file.

    Attributes:
        frame: `row_number` (pl.Int64, 1-based as the sheet shows it: the Excel row, or for CSV
            the physical line where the record starts) then one pl.String column per header
            (header text trimmed, sheet order). Empty cell -> null; no other value is changed.
        issues: cell/row problems found while reading (`ragged-row`, `excel-error`,
            `formula-without-result`, `merged-cell`, `numeric-cell`), each with file, sheet,
            row_number, column, cell (XLSX ref such as `B2`) and value.
        path: the path as given. sheet_name: worksheet read (None for CSV).
        encoding: Python codec name used for CSV (`utf-8`, `utf-8-sig`: with a BOM, `utf-16-le`, `cp1252`, `mac-roman`...),
            None for Excel. delimiter: CSV delimiter, None for Excel.
        header_row: 1-based line (CSV) or row (Excel) number of the header.
        sha256: hex SHA-256 of the file's bytes as read (the plan records it).
        letters: header -> the column's letters as a spreadsheet shows them (`B`; for CSV the
            field's position), so an issue can name its cell (`B4`).
        numbers: Excel only: the General-format integer cells the reader did not flag and the
            date/time cells (`read_excel.NUMBERS_SCHEMA`: row_number, column, text, cell,
            format); `validate` warns on integers the template maps to a text field whose
            leading 0 matters, and on dates it maps to a field that is not a date-time. None for CSV.
        other_sheets: Excel only, when no sheet was asked for (the first visible one was read):
            the workbook's other visible sheets, which a missing column's error names.
    """

    frame: pl.DataFrame
    issues: list[Issue] = field(default_factory=list)
    path: str = ""
    sheet_name: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header_row: int = 1
    sha256: str = ""
    letters: dict[str, str] = field(default_factory=dict)
    numbers: pl.DataFrame | None = None
    other_sheets: tuple[str, ...] = ()


def read(path: str | Path, *, sheet: str | int | None = None, encoding: str | None = None,
         delimiter: str | None = None, header_row: int | None = None,
         columns: Collection[str] = ()) -> Sheet:
    """Read a CSV/TSV or Excel file into a `Sheet` of text cells.

    Args:
        path: `.csv .tsv .psv .ssv .txt` (delimited text), `.xlsx .xlsm` or `.xls`.
        sheet: Excel only (a CSV with a sheet raises): sheet name or 0-based index; default the
            first visible sheet.
        encoding: CSV only: force a codec; default detect (BOM, then UTF-8, then
            charset-normalizer with cp1252/Mac Roman checks, see `bulkcrm.read_csv.decode`).
        delimiter: CSV only: force one; default detect among `, ; TAB |`.
        header_row: 1-based line/row of the header; default detect (see module docstring).
        columns: the column names the caller expects (a template's): when the detected
            header names none of them, the row naming most of them is the header (a title block
            over a sparse table fools the cell count).

    Returns:
        A `Sheet`; see its attributes for the frame's shape.

    Raises:
        InputError: the file is missing, not a supported type, empty, password-protected,
            undecodable, or its header is unusable (a doubled header whose column names
            `<header> (column C)` are taken too), or the sheet does not exist (or was asked of a
            CSV, or an encoding or delimiter of a workbook). Row problems are never raised: see
            `Sheet.issues`.
    """
    p, where = Path(path), str(path)
    check_input_path(path)
    if header_row is not None and header_row < 1:
        raise InputError(f"--header-row must be 1 or more, not {header_row}", path=where)
    ext = p.suffix.lower()
    if ext in EXCEL_EXTENSIONS:
        given = [o for o, v in (("--encoding", encoding), ("--delimiter", delimiter)) if v is not None]
        if given:  # as --sheet of a CSV: a misplaced option is not ignored silently (a review)
            raise InputError(f"a workbook has no {' or '.join(o.removeprefix('--') for o in given)}: "
                             f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for delimited text; leave "
                             f"{'it' if len(given) == 1 else 'them'} out", path=where)
        return _read_excel(p, where, sheet, header_row, columns)
    if ext not in CSV_EXTENSIONS:
        raise InputError(f"unsupported file type {ext or '(none)'!r}; use one of "
                         f"{', '.join(CSV_EXTENSIONS + EXCEL_EXTENSIONS)}", path=where)
    if sheet is not None:  # a scheduled job's misplaced --sheet is not ignored silently
        raise InputError(f"delimited text has no sheets (sheet {sheet!r} asked for): --sheet and a "
                         "template's notes sheet (notes: {sheet: …}) need an .xlsx workbook", path=where)
    return _read_csv(p, where, encoding, delimiter, header_row, columns)


_LEGACY_NAMES = {"cp1252": "Windows-1252 (cp1252)", "mac-roman": "Mac Roman", "iso8859-1": "Latin-1"}


def open_notes(sh: Sheet) -> list[str]:
    """A note when the input may be open in a spreadsheet program: Excel's owner file `~$name`
    (`~$` over the first two characters of a long name) or LibreOffice's `.~lock.name#` beside
    it. Edits not saved yet are not in the file, so they are not read."""
    p = Path(sh.path)
    held = lock_file(p)
    if held is None:
        return []
    return [f"open: {p.name} may be open in a spreadsheet program ({held.name} is beside it): what is not "
            "saved yet is not read; save the file first (a lock file a crashed program left can be deleted)"]


def lock_file(p: Path) -> Path | None:
    """The file beside `p` showing a spreadsheet program has it open (`open_notes`), or None."""
    owners = [p.with_name(f"~${p.name}"), p.with_name(f"~${p.name[2:]}"), p.with_name(f".~lock.{p.name}#")]
    return next((o for o in owners if o.name != p.name and o.exists()), None)


def encoding_notes(sh: Sheet) -> list[str]:
    """A note naming the single-byte encoding a CSV was read in (cp1252, Mac Roman, Big5, …),
    where a wrong guess shows only as wrong accented letters: none for UTF-8 (BOM or not),
    UTF-16/32, a file mixing UTF-8 with cp1252 lines (each such line gets a warning), or Excel."""
    enc = sh.encoding
    if enc is None or enc == MIXED or enc.startswith(("utf-8", "utf-16", "utf-32")):
        return []
    return [f"encoding: the file is not UTF-8 and was read as {_LEGACY_NAMES.get(enc, enc)}: check its accented "
            "letters (--encoding reads it as another)"]


def _check_given_encoding(data: bytes, enc: str, given: str, where: str) -> None:
    """Refuse an `--encoding` other than UTF-8 (Latin-1, cp1252, Shift JIS, …) for a file that
    is valid UTF-8 and not plain ASCII: each accented letter would be read as other characters
    (ö as Ã¶ in Latin-1), and a plan would patch them over the records' good text (a trial).

    Raises:
        InputError: naming the encoding given and what to pass instead.
    """
    if enc.startswith("utf-") or data.isascii():  # `enc`: the codec `given` names
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    raise InputError(f"the file is UTF-8, and --encoding {given} would read each of its accented letters as other "
                     "characters (ö as Ã¶ in Latin-1), which the plan would write over the records' text; leave "
                     "--encoding out (or pass --encoding utf-8)", path=where)


def check_input_path(path: str | Path) -> None:
    """Raise InputError (naming `path`) unless it is an existing file: what `read` checks
    first, and the CLI before it opens any target."""
    p = Path(path)
    if not p.exists():
        raise InputError("file not found; check the path", path=str(path))
    if not p.is_file():
        raise InputError("not a file; pass the path of a CSV or Excel file", path=str(path))


def _read_excel(p: Path, where: str, sheet: str | int | None, header_row: int | None,
                columns: Collection[str] = ()) -> Sheet:
    from bulkcrm.read_excel import excel_issues, hidden_column_issues, hidden_row_issues, load_excel

    grid = load_excel(p, sheet)
    errors = grid.cells.filter(pl.col("kind") == "error") if grid.cells.height else grid.cells
    held = (f"holds only Excel error values ({', '.join(errors['text'].unique(maintain_order=True).head(4))}"
            f", e.g. in {column_letter(int(errors['col'][0]))}{errors['row_number'][0]}), no header row"
            if errors.height else "is empty (no header row)")
    empty = (f"sheet {grid.sheet_name!r} {held}; pick another with --sheet "
             f"(sheets: {', '.join(map(repr, grid.sheet_names))})")
    frame, hdr, issues, names = _finish(grid.grid, where, header_row, grid.sheet_name,
                                        empty=empty, columns=columns)
    found, numbers = excel_issues(grid, hdr, names, p.name)
    issues += found + hidden_row_issues(frame, grid.hidden, p.name, grid.sheet_name) + hidden_column_issues(
        names, grid.hidden_columns, columns, hdr, p.name, grid.sheet_name)
    issues.sort(key=lambda i: (i.row_number or 0, i.cell or ""))
    others = tuple(n for n in grid.visible_names if n != grid.sheet_name) if sheet is None else ()
    return Sheet(frame, issues, where, grid.sheet_name, None, None, hdr, file_sha256(p), _letters(names),
                 numbers, others)


def _read_csv(p: Path, where: str, encoding: str | None, delimiter: str | None,
              header_row: int | None, columns: Collection[str] = ()) -> Sheet:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read the file ({e.strerror})", path=where) from None
    # hashed on another thread while polars parses (hashlib releases the GIL on big inputs)
    hashing = ThreadPoolExecutor(1)
    sha = hashing.submit(lambda: hashlib.sha256(data).hexdigest())
    hashing.shutdown(wait=False)
    if data[:4] in (b"PK\x03\x04", b"\xd0\xcf\x11\xe0"):
        raise InputError("this is an Excel workbook, not delimited text; rename it to .xlsx "
                         "(or .xls)", path=where)
    grid = tried = None
    legacy: list[int] = []
    nul_lines: list[int] = []
    sample = _utf8_sample(data) if encoding is None else None
    if sample is not None and (delimiter is None or len(delimiter) == 1):
        # plain UTF-8 as `decode` would return it: polars' reads check the rest of the file
        tried = delimiter or detect_delimiter(sample)
        grid = _parse_regular(data, tried)
    if grid is not None:
        text, enc, delimiter = None, "utf-8", tried
    else:
        text, enc, legacy = decode(data, encoding, where)
        if encoding is not None:
            _check_given_encoding(data, enc, encoding, where)
        if b"\x00" in data and not enc.startswith(("utf-16", "utf-32")):  # `decode` removed them
            nul_lines = _nul_lines(data)
        if delimiter is None:
            delimiter = detect_delimiter(text)
        elif len(delimiter) != 1:
            raise InputError(f"--delimiter must be one character (or tab, comma, semicolon, pipe), not {delimiter!r}",
                             path=where)
    cut = _cut_off(text if text is not None else data)
    # when decoding changed nothing, the file's bytes are the UTF-8 of `text`: keep only them
    if text is None or (enc == "utf-8" and not data.startswith(codecs.BOM_UTF8)
                        and b"\x00" not in data):
        del text
        if grid is None:
            grid = (_parse_irregular(None, delimiter, data) if delimiter == tried
                    else parse_csv(None, delimiter, raw=data))
        escaped, hashes = FORMULA_ESCAPE.encode() in data, b"#" in data
    else:
        del data
        grid = parse_csv(text, delimiter)
        escaped, hashes = FORMULA_ESCAPE in text, "#" in text
    frame, hdr, issues, names = _finish(grid, where, header_row, None, delimiter, columns=columns, cut=cut)
    if hashes:  # no `#` anywhere: no Excel error value (before the escape goes: `'#N/A` is text)
        frame, errors = _error_texts(frame, where, names)
        issues = sorted(issues + errors, key=lambda i: i.row_number or 0)
    frame = restore_formula_escape(frame) if escaped else frame  # no `'` anywhere: no-op
    if enc == MIXED:
        issues = sorted(issues + _legacy_line_issues(legacy, frame, where), key=lambda i: i.row_number or 0)
    if nul_lines:
        issues = sorted(issues + _nul_line_issues(nul_lines, frame, where), key=lambda i: i.row_number or 0)
    return Sheet(frame, issues, where, None, enc, delimiter, hdr, sha.result(), _letters(names))


EXCEL_ERRORS = ("#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NUM!", "#NAME?", "#NULL!", "#SPILL!",
                "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!", "#GETTING_DATA")
"""Excel's error values: a CSV saved from a workbook holds the text of a cell that shows one."""


def _error_texts(frame: pl.DataFrame, where: str, names: dict[str, str]) -> tuple[pl.DataFrame, list[Issue]]:
    """A CSV's cells holding exactly an Excel error value (`EXCEL_ERRORS`, outer spaces aside)
    read as empty, each with an `excel-error` issue (error: its row is not written), as a
    workbook's error cells are (`read_excel.excel_issues`): `#N/A` is no one's title or e-mail."""
    hit = frame.select(pl.col(c).str.strip_chars().is_in(EXCEL_ERRORS).any() for c in frame.columns[1:])
    cols = [c for c, h in zip(hit.columns, hit.row(0)) if h]
    if not cols:
        return frame, []
    file, letters = Path(where).name, _letters(names)
    long = frame.select("row_number", *cols).unpivot(index="row_number", variable_name="column").filter(
        pl.col("value").str.strip_chars().is_in(EXCEL_ERRORS))
    issues = [Issue("excel-error", rn, col, value.strip(), "Excel error value",
                    f"{file}:{rn}:{col}: the cell holds the Excel error {value.strip()}, saved as text in "
                    "this CSV; fix the formula in the workbook, or type the value", "error", file, None,
                    f"{letters[col]}{rn}" if col in letters else None)
              for rn, col, value in long.iter_rows()]
    cleared = frame.with_columns(pl.when(pl.col(c).str.strip_chars().is_in(EXCEL_ERRORS)).then(None)
                                 .otherwise(pl.col(c)).alias(c) for c in cols)
    return cleared, issues


def _legacy_line_issues(lines: list[int], frame: pl.DataFrame, where: str) -> list[Issue]:
    """A warning per data row that starts on a line of a UTF-8 file that is not UTF-8 and was
    read as cp1252 (`read_csv.decode_mixed`): its accented letters may be wrong."""
    return _line_warnings(lines, frame, where, "one text encoding per file (UTF-8)",
                          "this line is not UTF-8 like the rest of the file; it was read as cp1252 "
                          "(Windows-1252): check its accented letters, and save the file as UTF-8")


def _line_warnings(lines: list[int], frame: pl.DataFrame, where: str, rule: str, why: str) -> list[Issue]:
    """An `encoding` warning (`rule`, message `<file>:<row>: why`) per data row of `frame` that
    starts on one of the file's `lines`."""
    file = Path(where).name
    rows = frame.filter(pl.col("row_number").is_in(lines))["row_number"].to_list()
    return [Issue("encoding", rn, None, None, rule, f"{file}:{rn}: {why}", "warning", file) for rn in rows]


def _nul_lines(data: bytes, most: int = 1000) -> list[int]:
    """The lines (1-based) of the first `most` NUL bytes of a CSV that is no UTF-16/32 (where
    NUL is half of every character), which `read_csv.decode` removes."""
    end = b"\n" if b"\n" in data else b"\r"  # a classic-Mac file ends its lines with CR alone
    lines, line, prev = set(), 1, 0
    for _, m in zip(range(most), re.finditer(b"\x00", data)):
        line += data.count(end, prev, m.start())  # the file is read once, whatever the count
        lines.add(line)
        prev = m.start()
    return sorted(lines)


def _nul_line_issues(lines: list[int], frame: pl.DataFrame, where: str) -> list[Issue]:
    """A warning per data row starting on a line that held a NUL character (a zero byte),
    which reading removed: a cell that held only one reads as empty, and a trial was told the
    row "has no a" with no word of the byte (a damaged file, or one a program padded)."""
    return _line_warnings(lines, frame, where, "text without NUL characters",
                          "this line held a NUL character (a zero byte), which was removed: a damaged file, "
                          "or one another program padded? check the row's values")


def file_sha256(p: Path) -> str:
    """SHA-256 (hex) of the file's bytes, as `Sheet.sha256` and `Plan.input_sha256` hold it;
    "" when it cannot be read."""
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return ""


def restore_formula_escape(frame: pl.DataFrame) -> pl.DataFrame:
    """Undo bulkcrm's CSV formula escape: drop one leading `'` when the next character is one
    of `FORMULA_TRIGGERS` or `'` itself (OWASP CSV injection defence, reversed), or when the
    rest of the cell is an Excel error value's text (`'#N/A`: text, as export wrote it).

    The `'` export puts before a template's null token (`'NULL`: the text, not "no value") stays:
    the reader knows no tokens, and mapping's null step removes it
    (`mapping.without_null_tokens`); that escape comes outside this one, so `''-` (a value `-`
    with token `-`) reads here as `'-`, there as `-`.

    Args:
        frame: any frame; only pl.String columns change.

    Returns:
        The frame with the same columns and dtypes.
    """
    chars = re.escape("".join(FORMULA_TRIGGERS) + FORMULA_ESCAPE)
    errors = "|".join(map(re.escape, EXCEL_ERRORS))
    pattern = f"^{re.escape(FORMULA_ESCAPE)}([{chars}]|\\s*(?:{errors})\\s*$)"  # as `_error_texts`: outer spaces aside
    escaped = frame.select(pl.col(pl.String).str.starts_with(FORMULA_ESCAPE).any())
    cols = [c for c, hit in zip(escaped.columns, escaped.row(0) if escaped.width else ()) if hit]
    return frame.with_columns(pl.col(cols).str.replace(pattern, "${1}")) if cols else frame


# --- shared: header detection, header checks, ragged rows ---------------------------------

def _letters(names: dict[str, str]) -> dict[str, str]:
    """{header: letters} from `_finish`'s {grid column `c<0-based index>`: header}."""
    return {header: column_letter(int(c[1:])) for c, header in names.items()}


def column_letter(index: int) -> str:
    """0-based column index -> Excel letters (0 -> A, 26 -> AA)."""
    s, n = "", index + 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def _blank(c: str) -> pl.Expr:
    # no non-whitespace character (as `strip_chars() == ""`, without a stripped copy)
    return pl.col(c).is_null() | ~pl.col(c).str.contains(r"\S")


def detect_header(counts: list[int]) -> int:
    """Return the index into `counts` (non-empty cells per non-blank row) of the header row;
    rule in the module docstring."""
    for i, n in enumerate(counts[:_HEADER_SCAN_ROWS]):
        nxt = sorted(counts[i + 1:i + 21])
        if not nxt or n > 0.5 * nxt[math.ceil(0.9 * len(nxt)) - 1]:
            return i
    return 0


def _finish(grid: pl.DataFrame, where: str, header_row: int | None, sheet: str | None,
            delimiter: str | None = None, empty: str = "the file is empty (no header row)",
            columns: Collection[str] = (), cut: str | None = None) -> tuple[pl.DataFrame, int, list[Issue], dict]:
    """Grid -> (frame, header_row, issues, {grid column: header name}). `cut`: `_cut_off`'s."""
    cells = [c for c in grid.columns if c not in ("row_number", "n_fields")]
    # columns are only rewritten (copied) where there is something to change
    has_empty = grid.select((pl.col(c) == "").any() for c in cells).row(0) if cells else ()
    grid = grid.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                             for c, e in zip(cells, has_empty) if e)
    rows = _drop_blank_rows(grid, cells)
    if rows.height == 0:
        raise EmptyInputError(empty, path=where)
    how = "given"
    if header_row is None:
        head = rows.head(_HEADER_SCAN_ROWS + 20)
        filled = head.select(pl.sum_horizontal([~_blank(c) for c in cells])).to_series()
        at = detect_header(filled.to_list())
        if columns:  # a detected row naming none of the expected columns: the one naming most
            named = _named_counts(head, cells, columns)
            at = at if named[at] or not named.max() else named.arg_max()
        header_row = int(head["row_number"][at])
        how = "detected"
    elif columns:
        _check_given_header(rows, cells, header_row, columns, where)
    hdr = rows.filter(pl.col("row_number") == header_row)
    if hdr.height == 0:
        raise InputError(f"header row {header_row} is empty or past the end of the "
                         f"{f'sheet {sheet!r}' if sheet else 'file'}; check --header-row", path=where)
    texts = [(v or "").strip() for v in hdr.select(cells).row(0)]
    width = max(i for i, t in enumerate(texts) if t) + 1
    data = (rows.slice(rows["row_number"].search_sorted(header_row, side="right"))
            if rows["row_number"].is_sorted() else rows.filter(pl.col("row_number") > header_row))
    if sheet is not None and cells[width:]:  # Excel: data right of the last header is a column
        # too (in a CSV it is a ragged row: a delimiter that should have been quoted)
        filled = data.select((~_blank(c)).any() for c in cells[width:]).row(0)
        width += max((j + 1 for j, f in enumerate(filled) if f), default=0)
    named, unnamed, doubled = _check_header(texts[:width], cells[:width], data, where, header_row, how, sheet)
    # one chunk per column: later stages run per chunk (e.g. a transform's Python batch)
    frame = data.select(pl.col("row_number"), *(pl.col(c).alias(n) for c, n in named.items())).rechunk()
    issues = _unnamed(unnamed, where, header_row, how, sheet) + doubled + _ragged(
        data, cells[width:], width, where, sheet, delimiter, cut)
    return frame, header_row, issues, named


def _cut_off(content: str | bytes) -> str:
    """The end of a delimited file's text (or of its UTF-8 bytes), for `_cut_off_issue`: up to
    `_TAIL` characters."""
    tail = content[-_TAIL:]
    return tail if isinstance(tail, str) else tail.decode("utf-8", "replace")


_TAIL = 1 << 16
"""Characters of a file's end `_cut_off` keeps: a last value longer than that is not seen open."""


def _open_quote(tail: str, value: str | None, delimiter: str) -> bool:
    """Whether the file's end (`tail`) is inside a quoted cell whose text so far reads `value`
    (the last field as parsed): the text ends with the quote that opened it and the value,
    its quotes doubled (RFC 4180 section 2.7), right after a delimiter or a line start."""
    opened = '"' + (value or "").replace('"', '""')
    return tail.endswith(opened) and (len(tail) == len(opened) or tail[-len(opened) - 1] in (delimiter, "\n", "\r"))


def _cut_off_issue(data: pl.DataFrame, width: int, tail: str, delimiter: str, file: str) -> Issue | None:
    """The `cut-off-row` error of a file's last row (`data`'s) when the file seems cut off
    while it was written (a scheduled job reading an export still being written): it ends
    inside a quoted cell (line end or not), or without a line end in a row short of the header.
    Its last value may be cut short too, and sent so it would overwrite the record's whole one.
    Many a complete file lacks the last line end, also right after a delimiter (an empty last
    cell: 211.csv, spanish_chars.csv of ../shared/data): a whole last row is no sign, so a cut
    right after a delimiter goes unseen. `tail`: `_cut_off`'s."""
    if not data.height or "n_fields" not in data.columns:
        return None
    n, rn = data["n_fields"][-1], data["row_number"][-1]
    cells = [c for c in data.columns if c not in ("row_number", "n_fields")]
    quote = 0 < n <= len(cells) and _open_quote(tail, data[cells[n - 1]][-1], delimiter)
    open_end = tail[-1:] not in ("\n", "\r")
    if not (quote or open_end and n < width):
        return None
    how = (" without a line end" if open_end else "") + (", inside a quoted cell" if quote else "")
    short = f"; the row has {n} of the header's {width} fields" if n < width else ""
    return Issue("cut-off-row", rn, None, None, _CUT_RULE,
                 f"{file}:{rn}: the file ends in this row{how}{short}: was it read while it was still being "
                 "written? The row is not sent, as its last value may be cut short too; check the file is "
                 "whole (a scheduled job: wait until the export has finished)", "error", file, None, None)


def _named_counts(head: pl.DataFrame, cells: list[str], columns: Collection[str]) -> pl.Series:
    """Per row of `head`, how many of its cells (`cells`, trimmed) name one of `columns`."""
    return head.select(pl.sum_horizontal(pl.col(c).str.strip_chars().is_in(list(columns)).fill_null(False)
                                         for c in cells)).to_series()


def _check_given_header(rows: pl.DataFrame, cells: list[str], header_row: int, columns: Collection[str],
                        where: str) -> None:
    """Raise InputError when the given header row (`--header-row`) names none of `columns` (the
    template's) while one of the first rows names half of them or more: that one is the
    header (a trial passed 5 for a header on row 4, and was told to pass --header-row)."""
    head = rows.head(_HEADER_SCAN_ROWS + 20)
    if not head.height or header_row > rows["row_number"].max():  # past the end: `_finish` says so
        return
    named = _named_counts(head, cells, columns)
    given = head["row_number"] == header_row
    if not named.len() or named.filter(given).sum() or named.max() * 2 < len(set(columns)):
        return
    best = int(head["row_number"][named.arg_max()])
    raise InputError(f"--header-row {header_row} names none of the template's columns, while row {best} names "
                     f"{named.max()} of them: pass --header-row {best}, or leave the option out to find the header",
                     path=where, row_number=header_row)


def _drop_blank_rows(grid: pl.DataFrame, cells: list[str]) -> pl.DataFrame:
    """The rows with a non-blank cell. Columns are checked one at a time, each only on the rows
    blank in all columns before it (usually none after the first)."""
    todo = None  # positions of the rows blank so far (None: all rows)
    for c in cells:
        col = grid[c] if todo is None else grid[c].gather(todo)
        blank = col.is_null() | ~col.str.contains(r"\S")
        todo = blank.arg_true() if todo is None else todo.filter(blank)
        if todo.is_empty():
            return grid
    if todo is None:
        return grid.clear()
    return grid.filter(~pl.int_range(pl.len(), dtype=pl.UInt32).is_in(todo.implode()))


def _check_header(texts: list[str], cells: list[str], data: pl.DataFrame, where: str,
                  header_row: int, how: str, sheet: str | None
                  ) -> tuple[dict[str, str], dict[str, str], list[Issue]]:
    """Return ({grid column: header}, {grid column: name} of the unnamed columns read under a
    placeholder, the duplicate-header warnings). A blank header over an all-empty column is
    dropped; over data, the column is read as `(column 2)` (CSV: its position; Excel:
    `(column B)`), which a template may map. A header text in several columns (or the
    reserved `row_number`) is read as `email (column 3)` in each, with a warning: a template
    that does not map it is not blocked; one that does maps one of those names."""
    def pos(i: int) -> str:
        return f"column {column_letter(int(cells[i][1:]))}" if sheet is not None \
            else f"column {i + 1}"
    unnamed = [c for c, t in zip(cells, texts) if not t]
    has_data = dict(zip(unnamed, data.select((~_blank(c)).any() for c in unnamed).row(0))
                    if unnamed else ())
    texts = [t or (f"({pos(i)})" if has_data[cells[i]] else "") for i, t in enumerate(texts)]
    placeholders = {c: t for c, t in zip(cells, texts) if c in has_data and t}
    where_hdr = f"the {how} header row {header_row}"
    seen: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        if t:
            seen.setdefault(t, []).append(i)
    dups = {t: ix for t, ix in seen.items() if len(ix) > 1 or t == "row_number"}
    doubled = []
    for t, ix in dups.items():
        names = [f"{t} ({pos(i)})" for i in ix]
        if any(n in seen for n in names):  # the new names are taken too: ask for a rename
            raise InputError(f"duplicate headers in {where_hdr}: {t!r} in {', '.join(pos(i) for i in ix)}; "
                             "rename them so each header is unique", path=where)
        for i, n in zip(ix, names):
            texts[i] = n
        what = ("the reserved header 'row_number'" if t == "row_number" and len(ix) == 1
                else f"the header {t!r} heads {', '.join(pos(i) for i in ix)}")
        cell = _header_cell(sheet, cells[ix[0]], header_row)
        doubled.append(Issue(
            "duplicate-header", header_row, None, t, "each column has a header of its own",
            f"{Path(where).name}:{header_row}{_at(sheet, cell)}: {what} (in {where_hdr}); read as "
            f"{', '.join(map(repr, names))}: rename them in the sheet, or map one of these names",
            "warning", Path(where).name, sheet, cell))
    return {cells[i]: t for i, t in enumerate(texts) if t}, placeholders, doubled


def _unnamed(names: dict[str, str], where: str, header_row: int, how: str,
             sheet: str | None) -> list[Issue]:
    """One warning per column read under a placeholder name ({grid column: name},
    `_check_header`); in a sheet it names the blank header cell (`B1`)."""
    tip = "" if how == "given" else " (or pass --header-row if the header is another row)"
    return [Issue("unnamed-column", header_row, name, None, "every column that holds data has a header",
                  f"{Path(where).name}:{header_row}{_at(sheet, cell)}: {name[1:-1]} holds data but "
                  f"has no header text; it is read as {name!r}: name it in the sheet or map {name!r}{tip}",
                  "warning", Path(where).name, sheet, cell)
            for c, name in names.items() for cell in [_header_cell(sheet, c, header_row)]]


def _header_cell(sheet: str | None, grid_column: str, row: int) -> str | None:
    """The header cell (`B1`) of `grid_column` (`c2`) in a workbook; None for a CSV."""
    return f"{column_letter(int(grid_column[1:]))}{row}" if sheet is not None else None


def _at(sheet: str | None, cell: str | None) -> str:
    """` (Sheet!B1)`: where a header issue is in a workbook; nothing for a CSV."""
    return f" ({sheet}!{cell})" if cell else ""


def _ragged(data: pl.DataFrame, extra: list[str], width: int, where: str,
            sheet: str | None, delimiter: str | None, cut: str | None = None) -> list[Issue]:
    """ragged-row issues of a CSV: values past the last header (error), rows short of it
    (warning), and the last row of a file that seems cut off (`_cut_off_issue`; `cut`: the
    file's end, `_cut_off`). (A sheet's columns right of the header are
    columns: `_finish`.)"""
    file, issues = Path(where).name, []
    cut_issue = _cut_off_issue(data, width, cut, delimiter or ",", file) if cut is not None else None
    if cut_issue is not None:
        issues.append(cut_issue)
        data = data.head(-1)  # not also a ragged row
    if extra:
        cond = pl.any_horizontal([~_blank(c) for c in extra])
        tip = f"quote values that contain the {_DELIMITER_NAMES.get(delimiter, 'delimiter')}"
        for row in data.filter(cond).select("row_number", *extra).iter_rows():
            vals = [v for v in row[1:] if v is not None and v.strip()]
            issues.append(Issue(
                "ragged-row", row[0], None, " | ".join(vals), _RFC4180_RULE,
                f"{file}:{row[0]}: {len(vals)} value(s) past the last header column ({width} "
                f"columns): {', '.join(map(repr, vals))}; {tip}", "error", file, sheet, None))
    if "n_fields" in data.columns and delimiter is not None:
        short = data.filter(pl.col("n_fields") < width).select("row_number", "n_fields")
        for rn, n in short.iter_rows():
            issues.append(Issue(
                "ragged-row", rn, None, None, _RFC4180_RULE,
                f"{file}:{rn}: {n} field(s) but the header has {width}; the missing cells "
                "read as empty", "warning", file, None, None))
    return sorted(issues, key=lambda i: i.row_number or 0)
