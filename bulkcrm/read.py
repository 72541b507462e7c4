"""Read stage: a CSV/XLSX/XLS file -> a polars frame of text, exactly what the person sees.

Stage: first stage of every import (`read` -> validate -> plan -> apply). No type inference and
no null tokens: every cell is text (`NA`, `NULL`, `02012345` stay as typed), an empty cell is
null. Cell and row problems come back as `Issue` records; only a file that cannot be read at all
raises `InputError`. Excel specifics (number formats, formulas, merged cells, error values) live
in `bulkcrm.read_excel`.

Header detection (when `header_row` is not given): among the first 50 non-blank rows, the header
is the first row with more than half as many non-empty cells as the wide rows below it (the 90th
percentile of the next 20 non-blank rows). Title/preamble rows (one or two cells over a wide
table) are skipped; a header with a few blank cells, or over sparse or ragged data, still wins.
Pass `header_row` to override.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bulkcrm.errors import InputError, Issue

FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these is a formula to a spreadsheet app (OWASP CSV injection)."""
FORMULA_ESCAPE = "'"
"""Prefix bulkcrm's CSV export puts before such cells (and before cells starting with `'`)."""

CSV_EXTENSIONS = (".csv", ".tsv", ".psv", ".ssv", ".txt")
EXCEL_EXTENSIONS = (".xlsx", ".xlsm", ".xls")
DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SAMPLE_CHARS = 32_768
_HEADER_SCAN_ROWS = 50
_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE BOM
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_RFC4180_RULE = "RFC 4180 section 2.4: each record has the same number of fields"


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
        encoding: Python codec name used for CSV (`utf-8`, `utf-16-le`, `cp1252`, `mac-roman`...),
            None for Excel. delimiter: CSV delimiter, None for Excel.
        header_row: 1-based line (CSV) or row (Excel) number of the header.
        sha256: hex SHA-256 of the file's bytes as read (the plan records it).
    """

    frame: pl.DataFrame
    issues: list[Issue] = field(default_factory=list)
    path: str = ""
    sheet_name: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header_row: int = 1
    sha256: str = ""


def read(path: str | Path, *, sheet: str | int | None = None, encoding: str | None = None,
         delimiter: str | None = None, header_row: int | None = None) -> Sheet:
    """Read a CSV/TSV or Excel file into a `Sheet` of text cells.

    Args:
        path: `.csv .tsv .psv .ssv .txt` (delimited text), `.xlsx .xlsm` or `.xls`.
        sheet: Excel only: sheet name or 0-based index; default the first visible sheet.
        encoding: CSV only: force a codec; default detect (BOM, then UTF-8, then
            charset-normalizer with cp1252/Mac Roman checks, see `bulkcrm.read.decode`).
        delimiter: CSV only: force one; default detect among `, ; TAB |`.
        header_row: 1-based line/row of the header; default detect (see module docstring).

    Returns:
        A `Sheet`; see its attributes for the frame's shape.

    Raises:
        InputError: the file is missing, not a supported type, empty, password-protected,
            undecodable, or its header is unusable (duplicate or blank header cells over data),
            or the sheet does not exist. Row problems are never raised: see `Sheet.issues`.
    """
    p, where = Path(path), str(path)
    if not p.exists():
        raise InputError("file not found; check the path", path=where)
    if not p.is_file():
        raise InputError("not a file; pass the path of a CSV or Excel file", path=where)
    if header_row is not None and header_row < 1:
        raise InputError(f"--header-row must be 1 or more, not {header_row}", path=where)
    ext = p.suffix.lower()
    if ext in EXCEL_EXTENSIONS:
        return _read_excel(p, where, sheet, header_row)
    if ext not in CSV_EXTENSIONS:
        raise InputError(f"unsupported file type {ext or '(none)'!r}; use one of "
                         f"{', '.join(CSV_EXTENSIONS + EXCEL_EXTENSIONS)}", path=where)
    return _read_csv(p, where, encoding, delimiter, header_row)


def _read_excel(p: Path, where: str, sheet: str | int | None, header_row: int | None) -> Sheet:
    from bulkcrm.read_excel import excel_issues, load_excel

    grid = load_excel(p, sheet)
    empty = (f"sheet {grid.sheet_name!r} is empty (no header row); pick another with --sheet "
             f"(sheets: {', '.join(map(repr, grid.sheet_names))})")
    frame, hdr, issues, names = _finish(grid.grid, where, header_row, grid.sheet_name,
                                        empty=empty)
    issues += excel_issues(grid, hdr, names, p.name)
    issues.sort(key=lambda i: (i.row_number or 0, i.cell or ""))
    return Sheet(frame, issues, where, grid.sheet_name, None, None, hdr, _file_sha256(p))


def _read_csv(p: Path, where: str, encoding: str | None, delimiter: str | None,
              header_row: int | None) -> Sheet:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read the file ({e.strerror})", path=where) from None
    sha = hashlib.sha256(data).hexdigest()
    if data[:4] in (b"PK\x03\x04", b"\xd0\xcf\x11\xe0"):
        raise InputError("this is an Excel workbook, not delimited text; rename it to .xlsx "
                         "(or .xls)", path=where)
    grid = tried = None
    sample = _utf8_sample(data) if encoding is None else None
    if sample is not None and (delimiter is None or len(delimiter) == 1):
        # plain UTF-8 as `decode` would return it: polars' reads check the rest of the file
        tried = delimiter or detect_delimiter(sample)
        grid = _parse_regular(data, tried)
    if grid is not None:
        text, enc, delimiter = None, "utf-8", tried
    else:
        text, enc = decode(data, encoding, where)
        if delimiter is None:
            delimiter = detect_delimiter(text)
        elif len(delimiter) != 1:
            raise InputError(f"--delimiter must be one character, not {delimiter!r}",
                             path=where)
    # when decoding changed nothing, the file's bytes are the UTF-8 of `text`: keep only them
    if text is None or (enc == "utf-8" and not data.startswith(codecs.BOM_UTF8)
                        and b"\x00" not in data):
        del text
        if grid is None:
            grid = (_parse_irregular(None, delimiter, data) if delimiter == tried
                    else parse_csv(None, delimiter, raw=data))
        escaped = FORMULA_ESCAPE.encode() in data
    else:
        del data
        grid = parse_csv(text, delimiter)
        escaped = FORMULA_ESCAPE in text
    frame, hdr, issues, _ = _finish(grid, where, header_row, None, delimiter)
    frame = restore_formula_escape(frame) if escaped else frame  # no `'` anywhere: no-op
    return Sheet(frame, issues, where, None, enc, delimiter, hdr, sha)


def _file_sha256(p: Path) -> str:
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return ""


def _utf8_sample(data: bytes) -> str | None:
    """The start of `data` decoded (`_SAMPLE_CHARS` + 1 characters or more, or all of it) when
    `decode` would return the file unchanged as UTF-8 as far as the sample shows (not blank, no
    BOM, no NUL, valid UTF-8); else None."""
    if not data or data.isspace() or data.startswith(codecs.BOM_UTF8) or b"\x00" in data:
        return None
    head = data[:4 * _SAMPLE_CHARS + 8]
    for cut in range(4 if len(head) < len(data) else 1):  # a character cut in two at the end
        try:
            return head[:len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def restore_formula_escape(frame: pl.DataFrame) -> pl.DataFrame:
    """Undo bulkcrm's CSV formula escape: drop one leading `'` when the next character is one
    of `FORMULA_TRIGGERS` or `'` itself (OWASP CSV injection defence, reversed).

    Args:
        frame: any frame; only pl.String columns change.

    Returns:
        The frame with the same columns and dtypes.
    """
    chars = re.escape("".join(FORMULA_TRIGGERS) + FORMULA_ESCAPE)
    pattern = f"^{re.escape(FORMULA_ESCAPE)}([{chars}])"
    escaped = frame.select(pl.col(pl.String).str.starts_with(FORMULA_ESCAPE).any())
    cols = [c for c, hit in zip(escaped.columns, escaped.row(0) if escaped.width else ()) if hit]
    return frame.with_columns(pl.col(cols).str.replace(pattern, "${1}")) if cols else frame


# --- decoding ------------------------------------------------------------------------------

def decode(data: bytes, encoding: str | None, where: str) -> tuple[str, str]:
    """Decode CSV bytes; return `(text, codec name)`. BOM and NUL characters are removed.

    Order: forced `encoding`; a BOM (UTF-8/16/32); NUL-heavy UTF-16 without BOM; strict UTF-8;
    then single-byte Western text
    (Mac Roman when the file has classic-Mac CR-only line ends, else cp1252, a superset of the
    printable latin-1 range), accepted only when charset-normalizer's mess ratio is ~0; then
    charset-normalizer's best guess (Big5, cp1251...) when it is coherent.

    Raises:
        InputError: empty file, forced codec unknown/failing, or no confident guess (names
            `--encoding`).
    """
    if not data or data.isspace():  # as `not data.strip()`, without copying the file
        raise InputError("the file is empty (no header row)", path=where)
    if encoding:
        try:
            name = codecs.lookup(encoding).name
            text = data.decode(name)
        except LookupError:
            raise InputError(f"unknown encoding {encoding!r}; pass e.g. --encoding utf-8 "
                             "or --encoding cp1252", path=where) from None
        except UnicodeDecodeError as e:
            raise InputError(f"cannot decode byte {e.start} as {encoding}; check --encoding",
                             path=where) from None
        return _clean_text(text), name
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return _clean_text(data[len(bom):].decode(name)), name
            except UnicodeDecodeError:
                break
    head = data[:4096]
    if head.count(0) > len(head) // 4:  # UTF-16 without BOM: every other byte of ASCII is NUL
        name = "utf-16-le" if head[1::2].count(0) > head[::2].count(0) else "utf-16-be"
        try:
            return _clean_text(data.decode(name)), name
        except UnicodeDecodeError:
            pass
    try:
        return _clean_text(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    return _guess_legacy(data, where)


def _guess_legacy(data: bytes, where: str) -> tuple[str, str]:
    from charset_normalizer import from_bytes
    from charset_normalizer.md import mess_ratio

    mess: dict[str, tuple[float, str]] = {}
    for name in ("cp1252", "mac-roman"):
        try:
            text = data.decode(name)
        except UnicodeDecodeError:
            continue
        mess[name] = (mess_ratio(text[:200_000], 1.0), text)
    cr_only = b"\r" in data and b"\n" not in data
    low = min((m for m, _ in mess.values()), default=1.0)
    if cr_only and "mac-roman" in mess and mess["mac-roman"][0] <= min(low, 0.02):
        return _clean_text(mess["mac-roman"][1]), "mac-roman"
    if "cp1252" in mess and mess["cp1252"][0] <= 0.02:
        return _clean_text(mess["cp1252"][1]), "cp1252"
    best = from_bytes(data[:500_000]).best()
    if best is not None and best.chaos <= 0.1 and best.coherence >= 0.1:
        name = codecs.lookup(best.encoding).name
        try:
            return _clean_text(data.decode(name)), name
        except UnicodeDecodeError:
            pass
    guesses = [*mess, *([] if "cp1252" in mess else ["latin-1"]),
               *([codecs.lookup(best.encoding).name] if best else [])]
    guesses = list(dict.fromkeys(guesses))
    raise InputError(f"cannot tell the encoding (looks like {' or '.join(guesses[:3])}); "
                     f"pass --encoding {guesses[0]}", path=where)


def _clean_text(text: str) -> str:
    return text.removeprefix("\ufeff").replace("\x00", "")


# --- delimiter and parsing ---------------------------------------------------------------

def detect_delimiter(text: str) -> str:
    """Return the delimiter among `, ; TAB |`: csv.Sniffer restricted to those, checked against
    (and overruled by) the candidate giving the most consistent field count > 1 on a sample.
    Default `,` (a one-column file)."""
    sample = text[:_SAMPLE_CHARS]
    if len(text) > _SAMPLE_CHARS:
        sample = sample[:max(sample.rfind("\n"), sample.rfind("\r"), 1)]
    scores = {d: _consistency(sample, d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: scores[d])
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        sniffed = None
    if sniffed in scores and scores[sniffed][0] and scores[sniffed][1] >= scores[best][1]:
        return sniffed
    return best if scores[best][0] else ","


def _consistency(sample: str, delimiter: str) -> tuple[bool, float, int]:
    counts = [len(r) for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
              if any(c.strip() for c in r)]
    if not counts:
        return (False, 0.0, 0)
    mode, n = max(Counter(counts).items(), key=lambda kv: (kv[1], kv[0]))
    return (mode > 1, n / len(counts), mode)


def parse_csv(text: str | None, delimiter: str, *, raw: bytes | None = None) -> pl.DataFrame:
    """Parse decoded CSV text into a grid: `row_number` (Int64, line where the record starts),
    `n_fields` (Int64) and `c0..cN` (String; "" for an empty field, null past a short row's end).

    Simple files (no lone CR, every quoted field within one line, same field count on every
    line) go through polars' CSV reader; anything else through Python's csv module (RFC 4180:
    quoted newlines, doubled quotes, CR/LF/CRLF mixed, ragged rows).

    Args:
        text: the decoded text; may be None when `raw` is given.
        delimiter: one character.
        raw: the text's UTF-8 bytes (e.g. the file as read, when decoding changed nothing):
            polars reads them as they are, and only one copy of a big file is held.
    """
    raw = text.encode() if raw is None else raw
    grid = _parse_regular(raw, delimiter)
    return grid if grid is not None else _parse_irregular(text, delimiter, raw)


def _parse_irregular(text: str | None, d: str, raw: bytes) -> pl.DataFrame:
    """`parse_csv` for a file `_parse_regular` declined."""
    grid = _parse_fast(raw, d)
    if grid is not None:
        return grid
    return _parse_slow(text if text is not None else raw.decode("utf-8"), d)


_QUOTED = '"(?:[^"]|"")*"'
"""A quoted CSV field (RFC 4180 §2.5-2.7: doubled quotes inside)."""
_MARK = "\x00"  # stands for a quoted field while lines are checked (`decode` removes NULs)
_CHECK_ROWS = 250_000


def _parse_regular(raw: bytes, d: str) -> pl.DataFrame | None:
    """One polars pass over a regular file, or None (then `_parse_fast`, which checks per line).

    Regular: what `_parse_fast` accepts, with no blank line and two or more fields, checked
    without a pass per line: quotes by `_quote_counts`; field counts as polars raises on a row
    longer than the first line, and the delimiters outside quotes (file bytes - cell bytes -
    quotes not in cells - line ends) must number (fields - 1) per line, so no row is shorter.
    """
    db = d.encode()
    if len(db) != 1 or db in b'"\r\n' or b"\x00" in raw or raw.endswith(db):
        return None  # polars accepts one extra empty field at the end of a file without EOL
    n_cr = raw.count(b"\r") if b"\r" in raw else 0
    if n_cr and re.search(rb"\r(?!\n)", raw):  # a CR outside CRLF (faster than counting CRLF)
        return None
    n_nl = raw.count(b"\n")
    n_lines = n_nl + (not raw.endswith(b"\n"))
    end = raw.find(b"\n")
    first = (raw if end < 0 else raw[:end]).decode("utf-8", "replace").removesuffix("\r")
    try:
        width = len(next(csv.reader([first], delimiter=d), []))
    except csv.Error:  # a field over csv.field_size_limit()
        return None
    if width < 2:
        return None
    try:
        counts = _quote_counts(raw, d) if b'"' in raw else (0, 0)
        if counts is None:
            return None
        df = pl.read_csv(raw, has_header=False, separator=d, quote_char='"',
                         schema=dict.fromkeys(_cols(width), pl.String))
    except Exception:  # noqa: BLE001 - a row longer than the first...: the checking paths
        return None
    cell_bytes = sum(df.select(pl.all().str.len_bytes().sum()).row(0))
    outside = len(raw) - cell_bytes - (counts[0] - counts[1]) - n_nl - n_cr
    if df.height != n_lines or outside != (width - 1) * n_lines:
        return None
    return df.select(pl.int_range(1, n_lines + 1, dtype=pl.Int64).alias("row_number"),
                     pl.lit(width, pl.Int64).alias("n_fields"), pl.all())


def _quote_counts(raw: bytes, d: str) -> tuple[int, int] | None:
    """(quote characters, escaped `""` pairs) when every quote is part of a whole quoted field
    on one line (RFC 4180 section 2.5-2.7), else None. `raw`: UTF-8 without NUL or lone CR.

    The text split at `"` alternates outside and inside parts. No inside part may hold a line
    break; a non-empty outside part must end where a field starts (delimiter, line end; not
    checked for the last part) and start where one ends (delimiter, CR, LF; not checked for the
    first part). An empty outside part between two inside ones is an escaped quote.
    """
    # polars splits fastest with `"` as its line end: one row per part (null when empty; no
    # row for an empty last part); the byte total proves the split
    parts = pl.read_csv(raw, has_header=False, separator=_MARK, quote_char=None, eol_char='"',
                        schema={"s": pl.String}).with_row_index("k")
    quotes = parts.height - 1 + raw.endswith(b'"')
    s, k = pl.col("s"), pl.col("k")
    if quotes % 2 or parts.select(s.str.len_bytes().sum()).item() + quotes != len(raw) or \
            parts.filter(k % 2 == 1).select(s.str.contains("\n", literal=True).any()).item():
        return None
    closes = (k == 0) | s.str.head(1).is_in([d, "\r", "\n"])  # the quote before this part
    opens = (k == quotes) | s.str.tail(1).is_in([d, "\n"])  # the quote after it
    bad, escapes = parts.filter(k % 2 == 0).select(  # null (empty) parts: never bad
        (s.is_not_null() & ~(opens & closes)).any().alias("bad"),
        (s.is_null() & (k > 0) & (k < quotes)).sum().alias("escapes")).row(0)
    return None if bad else (quotes, escapes)


def _parse_fast(raw: bytes, d: str) -> pl.DataFrame | None:
    """polars' CSV reader over the whole text, or None when the file is not simple.

    Simple: no NUL, no CR outside CRLF, every line with the same number of fields, and every
    quote part of a whole quoted field on one line (so record i starts on line i). The lines are
    checked as a polars column (no Python per line); blank lines become null rows in polars'
    output and are dropped here, so `row_number` is the physical line number.
    """
    if b"\x00" in raw or (b"\r" in raw and raw.count(b"\r") != raw.count(b"\r\n")):
        return None
    n_lines = raw.count(b"\n") + (not raw.endswith(b"\n"))
    try:
        lines = pl.read_csv(raw, has_header=False, separator=_MARK, quote_char=None,
                            schema={"l": pl.String})
    except Exception:  # noqa: BLE001 - any polars problem -> the exact slow path
        return None
    if lines.height != n_lines:
        return None
    lines = lines.with_row_index("i", 1).with_columns(pl.col("l").fill_null(""))
    nonblank = lines.filter(pl.col("l") != "")
    if nonblank.height == 0:
        return None
    width = _width(nonblank, d)
    if width is None:
        return None
    lead = int(nonblank["i"][0]) - 1  # blank lines before the first record
    keep, row_number = lines["l"].slice(lead) != "", nonblank["i"].cast(pl.Int64)
    del lines, nonblank  # a copy of the whole text: free it before polars parses
    try:
        df = pl.read_csv(raw, has_header=False, separator=d, quote_char='"', skip_lines=lead,
                         schema=dict.fromkeys(_cols(width), pl.String))
    except Exception:  # noqa: BLE001
        return None
    if df.height != n_lines - lead:
        return None
    if not keep.all():
        df = df.filter(keep)
    return df.select(row_number.alias("row_number"), pl.lit(width, pl.Int64).alias("n_fields"), pl.all())


def _width(lines: pl.DataFrame, d: str) -> int | None:
    """The field count shared by every line (column `l`), or None when the counts differ or a
    quote does not open or close a whole quoted field (`^field(d field)*$` with field =
    `"(?:[^"]|"")*"` or `[^"d]*`): after the quoted fields are marked, no quote may be left and
    each mark must have `d` (or the line's end) on both sides."""
    has_quote = pl.col("l").str.contains('"', literal=True)
    m = pl.col("m")
    framed = pl.concat_str([pl.lit(d), m, pl.lit(d)])
    marks = m.str.count_matches(_MARK, literal=True)
    counts = []
    for part in lines.iter_slices(_CHECK_ROWS):  # bounds the marked copy of a big file
        plain = part.filter(~has_quote).select(pl.col("l").str.count_matches(d, literal=True).alias("n"))
        quoted = part.filter(has_quote).select(pl.col("l").str.replace_all(_QUOTED, _MARK).alias("m"))
        quoted = quoted.select(m.str.count_matches(d, literal=True).alias("n"), (
            ~m.str.contains('"', literal=True) & (framed.str.count_matches(d + _MARK, literal=True) == marks)
            & (framed.str.count_matches(_MARK + d, literal=True) == marks)).alias("ok"))
        if not quoted["ok"].all():
            return None
        counts += [plain["n"].min(), plain["n"].max(), quoted["n"].min(), quoted["n"].max()]
    counts = [c for c in counts if c is not None]
    return int(counts[0]) + 1 if min(counts) == max(counts) else None


def _parse_slow(text: str, d: str) -> pl.DataFrame:
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=d, strict=False)
    records, starts, prev = [], [], 0
    for rec in reader:  # strict=False: the csv module reads any text
        if rec:
            records.append(rec)
            starts.append(prev + 1)
        prev = reader.line_num
    width = max((len(r) for r in records), default=0)
    padded = [r + [None] * (width - len(r)) if len(r) < width else r for r in records]
    cols = list(zip(*padded)) if padded else [[] for _ in range(width)]
    data = {"row_number": pl.Series(starts, dtype=pl.Int64),
            "n_fields": pl.Series([len(r) for r in records], dtype=pl.Int64)}
    data |= {c: pl.Series(c, v, dtype=pl.String) for c, v in zip(_cols(width), cols)}
    return pl.DataFrame(data, schema={k: (pl.Int64 if k in ("row_number", "n_fields")
                                         else pl.String) for k in data})


def _cols(width: int) -> list[str]:
    return [f"c{i}" for i in range(width)]


# --- shared: header detection, header checks, ragged rows ---------------------------------

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
            ) -> tuple[pl.DataFrame, int, list[Issue], dict]:
    """Grid -> (frame, header_row, issues, {grid column: header name})."""
    cells = [c for c in grid.columns if c not in ("row_number", "n_fields")]
    # columns are only rewritten (copied) where there is something to change
    has_empty = grid.select((pl.col(c) == "").any() for c in cells).row(0) if cells else ()
    grid = grid.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                             for c, e in zip(cells, has_empty) if e)
    rows = _drop_blank_rows(grid, cells)
    if rows.height == 0:
        raise InputError(empty, path=where)
    how = "given"
    if header_row is None:
        head = rows.head(_HEADER_SCAN_ROWS + 20)
        filled = head.select(pl.sum_horizontal([~_blank(c) for c in cells])).to_series()
        header_row = int(head["row_number"][detect_header(filled.to_list())])
        how = "detected"
    hdr = rows.filter(pl.col("row_number") == header_row)
    if hdr.height == 0:
        raise InputError(f"header row {header_row} is empty or past the end of the "
                         f"{'sheet' if sheet else 'file'}; check --header-row", path=where)
    texts = [(v or "").strip() for v in hdr.select(cells).row(0)]
    width = max(i for i, t in enumerate(texts) if t) + 1
    data = (rows.slice(rows["row_number"].search_sorted(header_row, side="right"))
            if rows["row_number"].is_sorted() else rows.filter(pl.col("row_number") > header_row))
    named = _check_header(texts[:width], cells[:width], data, where, header_row, how, sheet)
    frame = data.select(pl.col("row_number"), *(pl.col(c).alias(n) for c, n in named.items()))
    issues = _ragged(data, cells[width:], width, where, sheet, delimiter)
    return frame, header_row, issues, named


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
                  header_row: int, how: str, sheet: str | None) -> dict[str, str]:
    """Return {grid column: header} for named columns; raise on blank headers over data or
    duplicate headers. A blank header over an all-empty column is dropped."""
    def pos(i: int) -> str:
        return f"column {column_letter(int(cells[i][1:]))}" if sheet is not None \
            else f"column {i + 1}"
    unnamed = [c for c, t in zip(cells, texts) if not t]
    has_data = dict(zip(unnamed, data.select((~_blank(c)).any() for c in unnamed).row(0))
                    if unnamed else ())
    blank = [pos(i) for i, t in enumerate(texts) if not t and has_data[cells[i]]]
    where_hdr = f"header row {header_row} ({how})"
    if blank:
        raise InputError(f"{where_hdr} has no header text in {', '.join(blank)} although the "
                         "column holds data; name the column or delete it"
                         + ("" if how == "given" else ", or pass --header-row"), path=where)
    seen: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        if t:
            seen.setdefault(t, []).append(i)
    dups = {t: ix for t, ix in seen.items() if len(ix) > 1 or t == "row_number"}
    if dups:
        desc = "; ".join(f"{t!r} in {', '.join(pos(i) for i in ix)}" for t, ix in dups.items())
        note = " (`row_number` is reserved)" if "row_number" in dups else ""
        raise InputError(f"duplicate headers in {where_hdr}: {desc}{note}; rename them so each "
                         "header is unique", path=where)
    return {cells[i]: t for i, t in enumerate(texts) if t}


def _ragged(data: pl.DataFrame, extra: list[str], width: int, where: str,
            sheet: str | None, delimiter: str | None) -> list[Issue]:
    """ragged-row issues: values past the last header (error), CSV rows short of it (warning)."""
    file, issues = Path(where).name, []
    if extra:
        cond = pl.any_horizontal([~_blank(c) for c in extra])
        for row in data.filter(cond).select("row_number", *extra).iter_rows():
            vals = [v for v in row[1:] if v is not None and v.strip()]
            cols = [column_letter(int(c[1:])) for c, v in zip(extra, row[1:]) if v and v.strip()]
            tip = (f"quote values that contain the {_DELIMITER_NAMES.get(delimiter, 'delimiter')}"
                   if delimiter else f"give column {cols[0]} a header or clear it")
            issues.append(Issue(
                "ragged-row", row[0], None, " | ".join(vals), _RFC4180_RULE,
                f"row {row[0]} has {len(vals)} value(s) past the last header column ({width} "
                f"columns): {', '.join(map(repr, vals))}; {tip}", "error", file, sheet,
                f"{cols[0]}{row[0]}" if sheet else None))
    if "n_fields" in data.columns and delimiter is not None:
        short = data.filter(pl.col("n_fields") < width).select("row_number", "n_fields")
        for rn, n in short.iter_rows():
            issues.append(Issue(
                "ragged-row", rn, None, None, _RFC4180_RULE,
                f"row {rn} has {n} field(s) but the header has {width}; the missing cells "
                "read as empty", "warning", file, None, None))
    return sorted(issues, key=lambda i: i.row_number or 0)
