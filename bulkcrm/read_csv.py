"""Delimited-text part of the read stage: CSV/TSV bytes -> decoded text -> a grid of text cells.

Stage: used by `bulkcrm.read` (`_read_csv`), which adds header detection, blank-row and
ragged-row handling and the formula-escape undo. Input: the file's bytes. Output: `decode` gives
`(text, codec name)`, `detect_delimiter` one of `, ; TAB |`, `parse_csv` a grid frame:
`row_number` (Int64, physical line where the record starts), `n_fields` (Int64, fields in the
record) and `c0..cN` (pl.String; "" for an empty field, null past a short record's end).

Rules:
- Decoding: forced codec; else a byte order mark (U+FEFF as UTF-8/16/32); NUL-heavy UTF-16
  without BOM; strict UTF-8; UTF-8 with some lines in cp1252, each line decoded on its own
  (the reader warns per such line); then cp1252 / Mac Roman (classic-Mac CR-only line ends) when
  charset-normalizer's mess ratio is ~0; then charset-normalizer's coherent best guess. BOM and
  NUL characters are removed. No confident guess -> `InputError` naming `--encoding`.
- Delimiter: csv.Sniffer restricted to `, ; TAB |`, overruled by the candidate with the most
  consistent field count > 1 on the first 32k characters; default `,` (one column).
- Parsing follows RFC 4180 (section 2.5-2.7: quoted fields, doubled quotes, line breaks inside
  quotes) and tolerates CR/LF/CRLF mixed, blank lines (dropped) and ragged records. Regular
  files go through polars' CSV reader in one pass (`_parse_regular`), files with a regular line
  structure through a per-line polars check (`_parse_fast`); anything else through Python's csv
  module (`_parse_slow`). Every path gives the same grid; cell text is never altered.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter

import polars as pl

from bulkcrm.errors import InputError

DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_CHARS = 32_768
_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE BOM
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


# --- decoding ------------------------------------------------------------------------------

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

def decode(data: bytes, encoding: str | None, where: str) -> tuple[str, str, list[int]]:
    """Decode CSV bytes; return `(text, codec name, lines read as cp1252 in a UTF-8 file)`.
    BOM and NUL characters are removed; UTF-8 with a BOM is named `utf-8-sig` (Python's codec
    name), so that what is written back for the same reader (a with-status copy) gets one too.

    Order: forced `encoding`; a BOM (UTF-8/16/32); NUL-heavy UTF-16 without BOM; strict UTF-8;
    UTF-8 with some lines in cp1252 (`decode_mixed`, codec name `MIXED`);
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
            head = data[:e.start].decode(name, "replace")  # lines end in LF, CRLF or a lone CR
            line = head.count("\n") + head.count("\r") - head.count("\r\n") + 1
            raise InputError(f"line {line}: byte 0x{data[e.start]:02X} (offset {e.start}) is not "
                             f"{encoding}; check --encoding, or leave it out to detect the encoding",
                             path=where) from None
        return _clean_text(text), name, []
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return _clean_text(data[len(bom):].decode(name)), name, []
            except UnicodeDecodeError:
                break
    head = data[:4096]
    if head.count(0) > len(head) // 4:  # UTF-16 without BOM: every other byte of ASCII is NUL
        name = "utf-16-le" if head[1::2].count(0) > head[::2].count(0) else "utf-16-be"
        try:
            return _clean_text(data.decode(name)), name, []
        except UnicodeDecodeError:
            pass
    try:
        return _clean_text(data.decode("utf-8")), "utf-8", []
    except UnicodeDecodeError:
        pass
    mixed = decode_mixed(data)
    if mixed is not None:
        return _clean_text(mixed[0]), MIXED, mixed[1]
    return (*_guess_legacy(data, where), [])


MIXED = "utf-8+cp1252"
"""`decode`'s codec name for a UTF-8 file with some lines in cp1252 (`decode_mixed`)."""
_UTF8_MULTIBYTE = re.compile(rb"[\xC2-\xF4][\x80-\xBF]")


def decode_mixed(data: bytes) -> tuple[str, list[int]] | None:
    """A UTF-8 file with some lines in a single-byte code (rows pasted from a Windows export):
    `(text, the 1-based lines not UTF-8)`, each line decoded on its own: UTF-8 where it is,
    else cp1252 (Latin-1 for the 5 bytes cp1252 leaves unused). None when no line holds
    UTF-8 beyond ASCII or every line is UTF-8: the file is in one code, which decoding the
    whole of it finds (`decode`)."""
    if not _UTF8_MULTIBYTE.search(data):
        return None
    lines, legacy, utf8 = data.split(b"\n"), [], False
    for i, line in enumerate(lines):
        try:
            text = line.decode("utf-8")
            utf8 = utf8 or not text.isascii()
        except UnicodeDecodeError:
            try:
                text = line.decode("cp1252")
            except UnicodeDecodeError:
                text = line.decode("latin-1")
            legacy.append(i + 1)
        lines[i] = text
    return ("\n".join(lines), legacy) if utf8 and legacy else None


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
    rivals = [d for d in DELIMITERS if d != best and scores[d][0] and scores[d][1] >= scores[best][1]]
    if scores[best][0] and not rivals:  # the Sniffer could only agree: its answer must tie
        return best
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        sniffed = None
    if sniffed in scores and scores[sniffed][0] and scores[sniffed][1] >= scores[best][1]:
        return sniffed
    return best if scores[best][0] else ","


def _consistency(sample: str, delimiter: str) -> tuple[bool, float, int]:
    if delimiter not in sample:  # one field per row: what the reader below would count
        return (False, 1.0, 1) if sample.strip() else (False, 0.0, 0)
    counts = [len(r) for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
              if any(c.strip() for c in r)]
    if not counts:
        return (False, 0.0, 0)
    mode, n = max(Counter(counts).items(), key=lambda kv: (kv[1], kv[0]))
    return (mode > 1, n / len(counts), mode)


def parse_csv(text: str | None, delimiter: str, *, raw: bytes | None = None) -> pl.DataFrame:
    """Parse decoded CSV text into a grid: `row_number` (Int64, line where the record starts),
    `n_fields` (Int64) and `c0..cN` (String; "" or null for an empty field, null past a short
    row's end).

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
        # an empty field read as null, as `read` makes it anyway (and polars reads faster)
        df = pl.read_csv(raw, has_header=False, separator=d, quote_char='"', null_values=[""],
                         schema=dict.fromkeys(_cols(width), pl.String))
    except Exception:  # noqa: BLE001 - a row longer than the first...: the checking paths
        return None
    # one row per line: no record spans lines (quotes checked above) and polars gives a blank
    # line a row of its own (test_read: test_polars_keeps_a_blank_line_as_a_row), so the line
    # ends need no count of their own; the byte total below fails for a blank or short line
    n_lines = df.height
    n_nl = n_lines - (not raw.endswith(b"\n"))
    cell_bytes = sum(df.select(pl.all().str.len_bytes().sum()).row(0))
    outside = len(raw) - cell_bytes - (counts[0] - counts[1]) - n_nl - n_cr
    if outside != (width - 1) * n_lines:
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
    # the quote before this part closes a field, the one after it opens one (prefix and suffix
    # tests: no string is cut out)
    closes = (k == 0) | s.str.starts_with(d) | s.str.starts_with("\r") | s.str.starts_with("\n")
    opens = (k == quotes) | s.str.ends_with(d) | s.str.ends_with("\n")
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
