"""Read stage: one small test per mess. Workbooks are built in the test (xlsxwriter/openpyxl)."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import openpyxl
import xlsxwriter

from bulkcrm.errors import InputError
from bulkcrm.read import FORMULA_ESCAPE, FORMULA_TRIGGERS, read, restore_formula_escape
from bulkcrm.excel_formats import render_number, shown_date
from tests.conftest import DATA


def write(tmp_path, name: str, data: bytes | str):
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def rows(sheet) -> list[tuple]:
    return sheet.frame.rows()


# --- CSV: encodings ---------------------------------------------------------------------------

def test_latin1_bytes_detected_as_cp1252(tmp_path):
    sheet = read(write(tmp_path, "l.csv", "name,city\nCafé Zürich,Genève\n".encode("latin-1")))
    assert sheet.encoding == "cp1252"
    assert rows(sheet) == [(2, "Café Zürich", "Genève")]


def test_forced_encoding_wins(tmp_path):
    path = write(tmp_path, "f.csv", "name\nCafé\n".encode("latin-1"))
    assert read(path, encoding="latin-1").frame["name"].to_list() == ["Café"]
    assert read(path, encoding="latin-1").encoding == "iso8859-1"


def test_a_forced_encoding_that_fails_names_the_line_and_the_byte(tmp_path):
    path = write(tmp_path, "f.csv", "name\nA\nCaña\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"f\.csv: line 3: byte 0xF1 \(offset 9\) is not utf-8; "):
        read(path, encoding="utf-8")
    # classic-Mac line ends (CR alone) and CRLF count as line ends too (trial: 211.csv said line 1)
    for eol in ("\r", "\r\n"):
        path = write(tmp_path, "m.csv", eol.join(["name", "A", "Caña", ""]).encode("cp1252"))
        with pytest.raises(InputError, match=r"m\.csv: line 3: byte 0xF1"):
            read(path, encoding="utf-8")
    # counted in the codec's characters: UTF-16's CRLF is four bytes, č's low byte is 0x0D (review)
    path = write(tmp_path, "w.csv", "name\r\nA\r\nčč\r\n".encode("utf-16-le") + b"\x00\xd8" + "x\r\n".encode("utf-16-le"))
    with pytest.raises(InputError, match=r"w\.csv: line 4: "):
        read(path, encoding="utf-16-le")


def test_unknown_forced_encoding(tmp_path):
    with pytest.raises(InputError, match=r"f\.csv: unknown encoding 'klingon'; pass e\.g\. "
                                         r"--encoding utf-8"):
        read(write(tmp_path, "f.csv", "a\n1\n"), encoding="klingon")


def test_unsure_encoding_names_the_option(tmp_path):
    path = write(tmp_path, "u.csv", b"name,city\n\x81\x8d\x8f\x90\x9d,x\n")
    with pytest.raises(InputError, match=r"u\.csv: cannot tell the encoding \(looks like "
                                         r"mac-roman or latin-1.*\); pass --encoding mac-roman"):
        read(path)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom(tmp_path, codec):
    bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[codec]
    sheet = read(write(tmp_path, "w.csv", bom + "naam,stad\nŁódź,Kraków\n".encode(codec)))
    assert sheet.encoding in ("utf-16-le", "utf-16-be")
    assert sheet.frame.columns == ["row_number", "naam", "stad"]
    assert rows(sheet) == [(2, "Łódź", "Kraków")]


def test_utf16_without_bom(tmp_path):
    sheet = read(write(tmp_path, "w.csv", "naam,stad\nCafé,Gent\n".encode("utf-16-le")))
    assert (sheet.encoding, rows(sheet)) == ("utf-16-le", [(2, "Café", "Gent")])


def test_utf8_bom_stripped_from_unquoted_header(tmp_path):
    sheet = read(write(tmp_path, "b.csv", b"\xef\xbb\xbftitle,email\nA,a@x.example\n"))
    assert sheet.frame.columns == ["row_number", "title", "email"]


def test_utf8_preferred_when_it_decodes(tmp_path):
    assert read(write(tmp_path, "u.csv", "t\nâ€™\n")).frame["t"][0] == "â€™"


# --- CSV: line endings, quoting, blank lines --------------------------------------------------

@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_endings(tmp_path, eol):
    sheet = read(write(tmp_path, "e.csv", eol.join(["a,b", "1,2", "3,4"]) + eol))
    assert rows(sheet) == [(2, "1", "2"), (3, "3", "4")]


def test_mixed_line_endings(tmp_path):
    sheet = read(write(tmp_path, "m.csv", "a,b\r\n1,2\n3,4\r5,6"))
    assert rows(sheet) == [(2, "1", "2"), (3, "3", "4"), (4, "5", "6")]


def test_quoted_newlines_and_doubled_quotes_shift_row_numbers(tmp_path):
    text = 'a,b\r\n"line 1\r\nline 2",x\r\n"say ""hi""",y\r\nlast,z\r\n'
    sheet = read(write(tmp_path, "q.csv", text))
    assert rows(sheet) == [(2, "line 1\r\nline 2", "x"), (4, 'say "hi"', "y"), (5, "last", "z")]


def test_cr_inside_quotes_in_a_cr_file(tmp_path):
    sheet = read(write(tmp_path, "c.csv", 'a,b\r"x\ry",1\r2,3\r'))
    assert rows(sheet) == [(2, "x\ry", "1"), (4, "2", "3")]


def test_blank_lines_are_skipped_but_counted(tmp_path):
    sheet = read(write(tmp_path, "bl.csv", "a,b\n\n1,2\n,\n\n3,4\n"))
    assert rows(sheet) == [(3, "1", "2"), (6, "3", "4")]


def test_regular_file_read_in_one_pass(tmp_path):
    text = 'name,note,city\r\n"Smith, J","say ""hi""",Zürich\r\n"",x,"a,b"\r\n'
    sheet = read(write(tmp_path, "r.csv", text))
    assert (sheet.encoding, sheet.issues) == ("utf-8", [])
    assert rows(sheet) == [(2, "Smith, J", 'say "hi"', "Zürich"), (3, None, "x", "a,b")]


def test_polars_keeps_a_blank_line_as_a_row():
    """`read_csv._parse_regular` counts a file's lines by polars' rows: a blank line must stay a
    row (of nulls), so that its byte total finds it. A polars that dropped blank lines fails here."""
    df = pl.read_csv(b"a,b\n\nc,d\n\n", has_header=False, schema={"c0": pl.String, "c1": pl.String})
    assert df.rows() == [("a", "b"), (None, None), ("c", "d"), (None, None)]


_TOKENS = ["a", "bc", "", '""', '"x""y"', '"a,b"', '"l1\nl2"', 'a"b', '"a"b', " ", "é"]


@pytest.mark.parametrize("seed", range(4))
def test_every_csv_path_reads_a_file_as_the_csv_module_does(seed):
    """Random small files (quoted fields, doubled and stray quotes, line breaks in quotes, blank
    and short lines, LF and CRLF): whatever polars path accepts a file gives the csv module's
    grid (RFC 4180), an empty cell read as null or ""."""
    import random

    from bulkcrm.read_csv import _parse_fast, _parse_regular, _parse_slow

    def cells(df):
        return df.with_columns(pl.col(c).fill_null("") for c in df.columns if c.startswith("c")).rows()

    rng, accepted = random.Random(seed), 0
    for _ in range(400):
        width, eol = rng.randint(2, 4), rng.choice(["\n", "\r\n"])
        lines = ["" if rng.random() < 0.08 else ",".join(
            rng.choice(_TOKENS) for _ in range(width if rng.random() < 0.85 else rng.randint(1, width + 1)))
            for _ in range(rng.randint(1, 6))]
        text = eol.join(lines) + (eol if rng.random() < 0.7 else "")
        if not text.strip():
            continue
        slow = cells(_parse_slow(text, ","))
        for parse in (_parse_regular, _parse_fast):
            grid = parse(text.encode(), ",")
            if grid is not None:
                accepted += 1
                assert cells(grid) == slow, (parse.__name__, text)
    assert accepted > 50  # the polars paths were tried, not only declined


def test_stray_quotes_read_as_the_csv_module_does(tmp_path):
    sheet = read(write(tmp_path, "s.csv", 'a,b,c\n"x"y,2,3\nq "r",s,t\n'))
    assert rows(sheet) == [(2, "xy", "2", "3"), (3, 'q "r"', "s", "t")]


@pytest.mark.parametrize(("text", "short", "issues"), [
    ("a,b,c\n1,2\n3,4,5,", 2, [("warning", 2, None)]),  # extra empty field at the very end
    ("a,b,c\n1,2,3,x\n4,5\n", 3, [("error", 2, "x"), ("warning", 3, None)]),
])
def test_long_and_short_rows_that_balance_out(tmp_path, text, short, issues):
    # as many delimiters in all as regular rows would have: each row is still counted
    sheet = read(write(tmp_path, "l.csv", text))
    assert [r[0] for r in rows(sheet) if r[-1] is None] == [short]
    assert [(i.severity, i.row_number, i.value) for i in sheet.issues] == issues


def test_utf8_start_then_cp1252(tmp_path):
    data = ("a,b\n" + "x,y\n" * 40_000).encode() + "é,z\n".encode("cp1252")
    sheet = read(write(tmp_path, "c.csv", data))
    assert (sheet.encoding, sheet.frame.height, rows(sheet)[-1]) == ("cp1252", 40_001,
                                                                     (40_002, "é", "z"))


def test_null_byte_does_not_crash(tmp_path):
    assert rows(read(write(tmp_path, "n.csv", b"a,b,c\n\x00,2,3\n"))) == [(2, None, "2", "3")]


# --- CSV: delimiters -----------------------------------------------------------------------

@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_delimiter_detected(tmp_path, delim):
    text = "\n".join(delim.join(r) for r in [["a", "b", "c"], ["1, 5", "x", "y"], ["2", "z", "w"]])
    sheet = read(write(tmp_path, "d.txt", text.replace("1, 5", '"1, 5"') if delim == "," else text))
    assert sheet.delimiter == delim
    assert sheet.frame["a"].to_list() == ["1, 5", "2"]


def test_forced_delimiter(tmp_path):
    sheet = read(write(tmp_path, "f.csv", "a;b,c\n1;2,3\n"), delimiter=",")
    assert sheet.frame.columns == ["row_number", "a;b", "c"]


# --- header ----------------------------------------------------------------------------------

def test_header_not_on_line_1_detected(tmp_path):
    sheet = read(write(tmp_path, "t.csv", "Export of 2024-01-31,,\n\ntitle,email,city\nA,a@x,B\n"))
    assert sheet.header_row == 3
    assert rows(sheet) == [(4, "A", "a@x", "B")]


def test_a_title_block_over_a_sparse_table_yields_to_the_templates_column_names(tmp_path):
    """Trial 2026-12-02: a three-cell title over a table whose rows fill two cells was taken
    for the header (the cell count cannot tell them apart), and the import stopped on missing
    columns. Given the template's column names, a detected row naming none of them yields to
    the row naming most; one naming some stays (review: a later, wider header line below data
    rows took over and passed them over unseen)."""
    text = "Customer list,Region North,Q2 2024,,\n,,,,\nName,Email 1,Email 2,Phone 1,Phone 2\nA,a@x.com,,,\nB,b@x.com,,,\n"
    path = write(tmp_path, "t.csv", text)
    assert read(path).header_row == 1  # the cell count alone
    sheet = read(path, columns=["Name", "Email 1", "Email 2", "Phone 1", "Phone 2"])
    assert sheet.header_row == 3 and rows(sheet) == [(4, "A", "a@x.com", None, None, None),
                                                     (5, "B", "b@x.com", None, None, None)]
    assert read(path, columns=["Company"]).header_row == 1
    later = write(tmp_path, "l.csv", "Name,Email 1\nAlpha,a@x.com\nBeta,b@x.com\nName,Email 1,Email 2\nDelta,d@x.com,\n")
    sheet = read(later, columns=["Name", "Email 1", "Email 2"])
    assert sheet.header_row == 1 and sheet.frame["row_number"].to_list() == [2, 3, 4, 5]


def test_header_row_given(tmp_path):
    sheet = read(write(tmp_path, "t.csv", "x,y\nreal,head\n1,2\n"), header_row=2)
    assert sheet.frame.columns == ["row_number", "real", "head"]
    assert rows(sheet) == [(3, "1", "2")]


def test_header_row_past_the_end(tmp_path):
    with pytest.raises(InputError, match=r"t\.csv: header row 9 is empty or past the end of the "
                                         r"file; check --header-row"):
        read(write(tmp_path, "t.csv", "a\n1\n"), header_row=9)
    book = openpyxl.Workbook()
    book.active.title = "Klanten"
    book.active.append(["a"])
    book.save(tmp_path / "t.xlsx")
    with pytest.raises(InputError, match=r"t\.xlsx: header row 9 is empty or past the end of "
                                         r"the sheet 'Klanten'; check --header-row"):
        read(tmp_path / "t.xlsx", header_row=9)


def test_headers_trimmed(tmp_path):
    assert read(write(tmp_path, "h.csv", " title ,\temail \n1,2\n")).frame.columns == [
        "row_number", "title", "email"]


def test_duplicate_headers_are_read_apart_with_a_warning(tmp_path):
    """A header in two columns does not block a template that does not map it (a colleague's
    two `Opmerking` columns): each is read under its own name, with a warning per header."""
    sheet = read(write(tmp_path, "dup.csv", "email,title,email,phone,title\n1,2,3,4,5\n"))
    assert sheet.frame.columns == ["row_number", "email (column 1)", "title (column 2)", "email (column 3)",
                                   "phone", "title (column 5)"]
    assert sheet.frame.row(0) == (2, "1", "2", "3", "4", "5")
    assert [(i.type, i.severity, i.row_number, i.value) for i in sheet.issues] == [
        ("duplicate-header", "warning", 1, "email"), ("duplicate-header", "warning", 1, "title")]
    assert sheet.issues[0].message == (
        "dup.csv:1: the header 'email' heads column 1, column 3 (in the detected header row 1); read as "
        "'email (column 1)', 'email (column 3)': rename them in the sheet, or map one of these names")


def test_blank_header_over_data_is_read_under_a_placeholder_with_a_warning(tmp_path):
    """A template that does not use the column is not blocked by it; one that does can map it."""
    sheet = read(write(tmp_path, "bh.csv", "title,,email\nA,x,a@x\n"))
    assert sheet.frame.columns == ["row_number", "title", "(column 2)", "email"]
    assert sheet.frame.row(0) == (2, "A", "x", "a@x")
    (issue,) = sheet.issues
    assert (issue.type, issue.severity, issue.row_number, issue.column) == (
        "unnamed-column", "warning", 1, "(column 2)")
    assert issue.message == ("bh.csv:1: column 2 holds data but has no header text; it is read as "
                             "'(column 2)': name it in the sheet or map '(column 2)' (or pass "
                             "--header-row if the header is another row)")


def test_blank_header_over_empty_column_is_dropped(tmp_path):
    sheet = read(write(tmp_path, "bh.csv", "title,,email,\nA,,a@x,\nB,,b@x,\n"))
    assert sheet.frame.columns == ["row_number", "title", "email"]
    assert sheet.issues == []


def test_empty_file(tmp_path):
    for i, content in enumerate(["", "\n\n", ",,,\n,,\n"]):
        with pytest.raises(InputError, match=r"e\d\.csv: the file is empty \(no header row\)"):
            read(write(tmp_path, f"e{i}.csv", content))


def test_missing_file_and_unsupported_extension(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        read(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r"not a file"):
        read(tmp_path)
    with pytest.raises(InputError, match=r"x\.pdf: unsupported file type '\.pdf'"):
        read(write(tmp_path, "x.pdf", "a\n"))


def test_workbook_renamed_to_csv(tmp_path):
    path = tmp_path / "w.csv"
    path.write_bytes((DATA / "csvkit/test.xlsx").read_bytes())
    with pytest.raises(InputError, match=r"w\.csv: this is an Excel workbook"):
        read(path)


def test_excels_lock_file_is_told_apart_from_a_workbook(tmp_path):
    """`~$week.xlsx`: the few bytes Excel keeps beside a workbook it has open (its owner's name)."""
    path = tmp_path / "~$week.xlsx"
    path.write_bytes(b"\x05Alice" + b"\x00" * 48)
    with pytest.raises(InputError, match=r"this is the lock file Excel keeps beside a workbook it has open"):
        read(path)


# --- rows and values ---------------------------------------------------------------------------

def test_ragged_rows(tmp_path):
    text = "title,city,country\nA,Utrecht,NL\nB, 12 Rue X,Paris,FR\nC,Gent\n"
    sheet = read(write(tmp_path, "r.csv", text))
    assert rows(sheet) == [(2, "A", "Utrecht", "NL"), (3, "B", " 12 Rue X", "Paris"),
                           (4, "C", "Gent", None)]
    long, short = sheet.issues
    assert (long.type, long.severity, long.row_number, long.value) == ("ragged-row", "error", 3, "FR")
    assert long.message == ("r.csv:3: 1 value(s) past the last header column (3 columns): 'FR'; "
                            "quote values that contain the comma")
    assert (short.type, short.severity, short.row_number) == ("ragged-row", "warning", 4)
    assert short.message == ("r.csv:4: 2 field(s) but the header has 3; the missing cells read "
                             "as empty")


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_a_file_cut_off_while_it_was_written_holds_back_its_last_row(tmp_path, eol):
    """Trial 2026-12-03 (a nightly job reading an export still being written): a file that ends
    without a line end in a row short of the header, or inside a quoted cell, had its cut value
    sent (`DC Superior Co` over the record's whole title), exit 0, with a ragged-row warning
    only. That last row is an error; the rows before it go on."""
    head = eol.join(["title,city,country", "A,Utrecht,NL", "B,Gent,BE", ""])
    short = read(write(tmp_path, "s.csv", head + "DC Superior Co"))
    assert rows(short)[-1] == (4, "DC Superior Co", None, None)
    (issue,) = short.issues
    assert (issue.type, issue.severity, issue.row_number) == ("cut-off-row", "error", 4)
    assert issue.message.startswith("s.csv:4: the file ends in this row without a line end; the row has 1 "
                                    "of the header's 3 fields: was it read while it was still being written?")
    quoted = read(write(tmp_path, "q.csv", head + 'C,Gent,"Belg'))
    (issue,) = quoted.issues
    assert (issue.type, issue.row_number) == ("cut-off-row", 4)
    assert "without a line end, inside a quoted cell:" in issue.message
    # a whole last row without a line end is a complete file (many are written so); a short
    # row with its line end is a ragged row, a warning as before
    assert read(write(tmp_path, "w.csv", head + "C,Gent,BE")).issues == []
    # a stray quote earlier in the file is no quoted cell left open at its end (csvlint's
    # invalid_many_rows.csv: `"1","2","3" "` on row 4, no last line end)
    assert read(write(tmp_path, "x.csv", head.replace("Gent", 'Ge "nt') + '"C","Gent","BE"')).issues == []
    assert read(write(tmp_path, "e.csv", head + 'C,Gent,""')).issues == []  # a closed empty quoted cell
    assert read(write(tmp_path, "d.csv", head + "C,Gent,")).issues == []  # an empty last cell (211.csv)
    # a review: cut just after a line break inside a quoted cell
    for text, how in ((head + 'C,Gent,"Belg' + eol, "ends in this row, inside a quoted cell:"),
                      (head + 'C,"Gent' + eol, ", inside a quoted cell; the row has 2 of")):
        (issue,) = read(write(tmp_path, "c.csv", text)).issues
        assert (issue.type, issue.row_number) == ("cut-off-row", 4) and how in issue.message, (text, issue.message)
    (ragged,) = read(write(tmp_path, "r.csv", head + "C,Gent" + eol)).issues
    assert (ragged.type, ragged.severity) == ("ragged-row", "warning")


def test_no_null_tokens_no_type_inference(tmp_path):
    text = "code,name,kvk,zip,n\nNA,NULL,02012345,0800,1.50\n"
    assert rows(read(write(tmp_path, "v.csv", text))) == [
        (2, "NA", "NULL", "02012345", "0800", "1.50")]


def test_values_not_trimmed_and_empty_is_null(tmp_path):
    assert rows(read(write(tmp_path, "v.csv", 'a,b,c\n  x ,"",\n'))) == [(2, "  x ", None, None)]


def test_formula_escape_undone_on_csv(tmp_path):
    text = "a,b\n'=1+1,'+31 6 5550\n'-5,'@x\n''quoted,'plain\n\"'\t\",x\n"
    assert rows(read(write(tmp_path, "x.csv", text))) == [
        (2, "=1+1", "+31 6 5550"), (3, "-5", "@x"), (4, "'quoted", "'plain"), (5, "\t", "x")]


def test_restore_formula_escape_constants_and_frame():
    assert FORMULA_TRIGGERS == ("=", "+", "-", "@", "\t", "\r") and FORMULA_ESCAPE == "'"
    frame = pl.DataFrame({"row_number": [2, 3], "v": ["'\r1", "'a"]})
    assert restore_formula_escape(frame).rows() == [(2, "\r1"), (3, "'a")]


def test_formula_escape_not_applied_to_xlsx(tmp_path):
    path = tmp_path / "x.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet()
        ws.write_row(0, 0, ["a"])
        ws.write_string(1, 0, "'=kept")
    assert read(path).frame["a"].to_list() == ["'=kept"]


# --- XLSX ---------------------------------------------------------------------------------------

def test_xlsx_types_rendered_as_shown(tmp_path):
    path = tmp_path / "t.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet("Data")
        f = {c: wb.add_format({"num_format": c}) for c in
             ("yyyy-mm-dd", "dd/mm/yyyy hh:mm", "hh:mm:ss", "[h]:mm:ss", "0.00", "#,##0", "0%")}
        ws.write_row(0, 0, ["date", "datetime", "time", "duration", "int", "float", "fixed",
                            "thousands", "pct", "bool"])
        ws.write_datetime(1, 0, dt.datetime(2024, 1, 31), f["yyyy-mm-dd"])
        ws.write_datetime(1, 1, dt.datetime(2024, 1, 31, 10, 15), f["dd/mm/yyyy hh:mm"])
        ws.write_datetime(1, 2, dt.time(10, 15, 30), f["hh:mm:ss"])
        ws.write_number(1, 3, 1.5, f["[h]:mm:ss"])
        ws.write_number(1, 4, 42)
        ws.write_number(1, 5, 0.1 + 0.2)
        ws.write_number(1, 6, 29.020000000000003, f["0.00"])
        ws.write_number(1, 7, 1234567, f["#,##0"])
        ws.write_number(1, 8, 0.25, f["0%"])
        ws.write_boolean(1, 9, True)
    assert read(path).frame.rows() == [
        (2, "2024-01-31", "2024-01-31T10:15:00", "10:15:30", "36:00:00", "42", "0.3", "29.02",
         "1,234,567", "25%", "TRUE")]


def test_xlsx_date_cell_keeps_the_time_its_format_hides(tmp_path):
    """A date-time shown with a date-only format is read with its time (a trial's notes were
    written at midnight, and reformatting the column planned every note again)."""
    path = tmp_path / "d.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["when", "day"])
    ws.append([dt.datetime(2024, 3, 1, 9, 30), dt.datetime(2024, 3, 1)])
    ws["A2"].number_format = ws["B2"].number_format = "dd/mm/yyyy"
    wb.save(path)
    assert read(path).frame.rows() == [(2, "2024-03-01T09:30:00", "2024-03-01")]


@pytest.mark.parametrize(("x", "code", "shown"), [
    (31105550707, "+00 00 000 0000", "+31 10 555 0707"), (2012345, "00000000", "02012345"),
    (7, '"Nr. "000', "Nr. 007"), (-5, "#,##0;(#,##0)", "(5)"), (0.5, "#.00", ".50"),
    (1234.5, "[$€-413] #,##0.00", "€ 1,234.50"), (5551234, r"000\-0000", "555-1234"),
    (41333, "d mmm yyyy", "2013-02-28"), (1462, "yyyy-mm-dd", "1908-01-02"),
    # a date format hiding a time of day gives it; float noise and time formats do not
    (41333.5, "d mmm yyyy", "2013-02-28T12:00:00"), (45352.395833333336, "dd/mm/yyyy", "2024-03-01T09:30:00"),
    (45352.395833333336, "hh:mm", "09:30:00"), (0.395833333333, "hh:mm", "09:30:00"), (1.5, "h:mm", "12:00:00"),
    (45352.00001, "dd/mm/yyyy", "2024-03-01"), (0.5, "dd/mm/yyyy", "1899-12-31"),
    (12, "0.0E+00", None),
])
def test_render_number(x, code, shown):
    date1904 = code == "yyyy-mm-dd"
    assert render_number(x, code, date1904) == shown


@pytest.mark.parametrize(("x", "code", "shown"), [
    (2.5, "0", "3"), (-2.5, "0", "-3"), (1234.5, "#,##0", "1,235"), (0.125, "#,##0.00", "0.13"),
    (2.675, "0.00", "2.68"), (0.125, "0%", "13%"), (1.005, "0%", "101%"), (0.125, "0.0", "0.1"),
    (14.499999999999998, "#,##0", "15"),
])
def test_render_number_rounds_half_away_from_zero_as_excel(x, code, shown):
    """Excel rounds what it shows half away from zero on the value's 15 significant digits:
    2.5 under `0` shows 3 (Python's format gave 2, half to even), 2.675 under `0.00` shows 2.68
    (the binary value is 2.67499…)."""
    assert render_number(x, code) == shown


def test_a_fraction_under_zero_padding_shows_as_excel_rounds_it(tmp_path):
    path = tmp_path / "t.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet()
        pad, whole = wb.add_format({"num_format": "00000"}), wb.add_format({"num_format": "0"})
        ws.write_row(0, 0, ["padded", "whole"])
        ws.write_number(1, 0, 2137.5, pad)
        ws.write_number(1, 1, 2.5, whole)
        ws.write_number(2, 0, 14.499999999999998, pad)  # =0.145*100: 14.5 to 15 digits, as render_number
        ws.write_number(2, 1, 14.499999999999998, whole)
    assert read(path).frame.rows() == [(2, "02138", "3"), (3, "00015", "15")]


@pytest.mark.parametrize(("text", "code", "shown"), [
    ("2024-03-12", "d-mmm", "12-Mar"), ("1950-01-01", "mmm-yy", "Jan-50"), ("2005-03-02", "m/d/y", "3/2/05"),
    ("2024-03-12T09:05:07", "yyyy-mm-dd hh:mm:ss", "2024-03-12 09:05:07"), ("14:05:00", "h:mm a/p", "2:05 p"),
    ("2024-03-12", "[$-413]dd\\-mm;@", "12-03"), ("2024-03-12", '"week of "dddd mmmmm', "week of Tuesday M"),
    ("255:10:10", "[hh]:mm:ss", "255:10:10"),  # elapsed time: shown as read
])
def test_shown_date_is_what_excel_shows(text, code, shown):
    assert shown_date(text, code) == shown


def test_xlsx_numeric_cell_warning_rule(tmp_path):
    path = tmp_path / "n.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet("S")
        ws.write_row(0, 0, ["count", "phone", "id"])
        ws.write_column(1, 0, [1, 2, 3])           # ordinary numbers: no warning
        ws.write_column(1, 1, ["+31 6 1", "x"])    # text column ...
        ws.write_number(3, 1, 612345)              # ... with one number: warning
        ws.write_column(1, 2, [12345678, 7, 8])    # 8 digits: warning
    got = [(i.cell, i.column, i.value) for i in read(path).issues]
    assert got == [("C2", "id", "12345678"), ("B4", "phone", "612345")]


def test_an_integer_its_format_shows_with_separators_or_decimals_is_flagged(tmp_path):
    """Trial 2026-12-02: a KvK number under `#,##0` was sent as "12,345,678", and next week's
    plain 12345678 made a second organization. Such a cell is read as shown (what Excel shows
    is what is sent), with a numeric-cell warning naming the cell; `00000000` (leading zeros)
    and `"+"0` (a phone's plus) show only digits and are not flagged."""
    path = tmp_path / "f.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet("S")
        ws.write_row(0, 0, ["name", "kvk"])
        codes = ["#,##0", "0.00", '"$"#,##0.00', "0%", "00000000", '"+"0', "0"]
        for i, code in enumerate(codes, start=1):
            ws.write_string(i, 0, f"Firm {i}")
            ws.write_number(i, 1, 2138 if code != "00000000" else 2012345, wb.add_format({"num_format": code}))
    sheet = read(path)
    assert sheet.frame["kvk"].to_list() == ["2,138", "2138.00", "$2,138.00", "213800%", "02012345", "+2138", "2138"]
    got = [(i.type, i.severity, i.cell, i.value) for i in sheet.issues]
    assert got == [("numeric-cell", "warning", f"B{r}", v) for r, v in
                   ((2, "2,138"), (3, "2138.00"), (4, "$2,138.00"), (5, "213800%"))]
    assert sheet.issues[0].message.startswith('f.xlsx:2:kvk (S!B2): the cell is a number its format shows as "2,138"')


@pytest.mark.parametrize("code", ["General", "0"])
def test_an_integer_under_format_0_is_judged_as_a_general_one(tmp_path, code):
    """Trial 2026-12-02: a KvK number 1234569 and a zip 1068 stored as numbers under format `0`
    got no warning (General ones do): `0` shows an integer as General does, so the typed
    leading 0 is gone all the same. Such cells go to the template's judgement
    (`Sheet.numbers`), as General ones; a fraction under `0` is still read as Excel shows it
    (review: 2.4 is 2)."""
    path = tmp_path / "f.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet("S")
        ws.write_row(0, 0, ["name", "kvk", "zip"])
        ws.write_string(1, 0, "Firm")
        fmt = wb.add_format({"num_format": code}) if code != "General" else None
        ws.write_number(1, 1, 1234569, fmt)
        ws.write_number(1, 2, 1068, fmt)
        ws.write_row(2, 0, ["Half"])
        ws.write_number(2, 1, 2.4, fmt)
    sheet = read(path)
    assert sheet.frame.row(0)[1:] == ("Firm", "1234569", "1068")
    assert sheet.frame["kvk"][1] == ("2.4" if code == "General" else "2")
    assert sheet.numbers.select("column", "text", "cell").rows() == [("kvk", "1234569", "B2"), ("zip", "1068", "C2")]


def _book(path, rows: list[list], hide) -> None:
    """Save an openpyxl workbook of one sheet `S` holding `rows`, after `hide(sheet)`."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for r in rows:
        ws.append(r)
    hide(ws)
    wb.save(path)


@pytest.mark.parametrize("writer", ["xlsxwriter", "openpyxl"])
def test_xlsx_hidden_rows_are_read_and_warned(tmp_path, writer):
    """Rows hidden in Excel (Hide, or a filter that left them out) are read like any other,
    each with a `hidden-row` warning: someone who filtered the sheet to the rows to upload
    learns that the others are read too. A hidden blank row says nothing."""
    path = tmp_path / "h.xlsx"
    rows = [["title", "email"], ["Shown", "a@a.nl"], ["Filtered", "b@a.nl"], [], ["Hidden", "c@a.nl"]]
    if writer == "xlsxwriter":
        with xlsxwriter.Workbook(path) as wb:
            ws = wb.add_worksheet("S")
            for i, r in enumerate(rows):
                ws.write_row(i, 0, r)
            for i in (2, 3, 4):                    # 0-based: Excel rows 3, 4 and 5
                ws.set_row(i, None, None, {"hidden": True})
    else:
        _book(path, rows, lambda ws: [setattr(ws.row_dimensions[n], "hidden", True) for n in (3, 4, 5)])
    sheet = read(path)
    assert sheet.frame["title"].to_list() == ["Shown", "Filtered", "Hidden"]
    assert [(i.type, i.severity, i.row_number, i.message) for i in sheet.issues] == [
        ("hidden-row", "warning", n, f"h.xlsx:{n} (S!{n}:{n}): the row is hidden in Excel (Hide, or filtered out); "
         "it is read like any other row: delete it from the sheet to leave it out") for n in (3, 5)]


@pytest.mark.parametrize("writer", ["xlsxwriter", "openpyxl"])
def test_xlsx_hidden_columns_the_template_reads_are_warned(tmp_path, writer):
    """A column hidden in Excel is read like any other: one `hidden-column` warning per such
    column the template reads (its values are sent unseen); a hidden column it does not read
    says nothing."""
    path = tmp_path / "h.xlsx"
    rows = [["title", "email", "memo", "city"], ["A", "a@a.nl", "x", "Delft"]]
    if writer == "xlsxwriter":
        with xlsxwriter.Workbook(path) as wb:
            ws = wb.add_worksheet("S")
            for i, r in enumerate(rows):
                ws.write_row(i, 0, r)
            ws.set_column(1, 2, None, None, {"hidden": True})   # B:C
    else:
        _book(path, rows, lambda ws: [setattr(ws.column_dimensions[c], "hidden", True) for c in "BC"])
    sheet = read(path, columns={"title", "email", "city"})
    assert sheet.frame["email"].to_list() == ["a@a.nl"]
    assert [(i.type, i.severity, i.row_number, i.column, i.cell, i.message) for i in sheet.issues] == [
        ("hidden-column", "warning", 1, "email", "B1", "h.xlsx:1:email (S!B1): the column is hidden in Excel; the "
         "template reads it, so its values are sent like any other column's: unhide it to check them, or leave "
         "the column out of the template")]
    assert [i.column for i in read(path).issues] == ["email", "memo"]  # no template: every hidden column


def test_xlsx_merged_cells_warn_the_rows_that_read_empty(tmp_path):
    """A merged range's value is in its first cell only: each row whose cell of the range reads
    empty gets the warning (naming the range and the value), since those rows lose the value;
    the first cell's own row keeps it and gets none unless the range spans columns. A merge of
    empty cells, or one from the header down, loses nothing."""
    path = tmp_path / "m.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet("S")
        ws.write_row(0, 0, ["title", "city", "country", "region"])
        ws.merge_range("A2:A3", "Same Org BV")
        ws.write_column(1, 1, ["Delft", "Gouda", "Ede"])
        ws.write_string("A4", "Solo")
        ws.merge_range("C4:D4", "Nederland")
        ws.merge_range("C2:C3", "")
        ws.merge_range("E1:E2", "remarks")  # a header merge: no data row lost a value
    sheet = read(path)
    assert sheet.frame.rows() == [(2, "Same Org BV", "Delft", None, None, None), (3, None, "Gouda", None, None, None),
                                  (4, "Solo", "Ede", "Nederland", None, None)]
    assert [(i.type, i.severity, i.row_number, i.column, i.cell, i.value, i.message) for i in sheet.issues] == [
        ("merged-cell", "warning", 3, "title", "A3", None,
         'm.xlsx:3:title (S!A3): the cell reads as empty: it is in the merged range A2:A3, whose value '
         '"Same Org BV" only A2 holds; unmerge the range and fill each cell'),
        ("merged-cell", "warning", 4, "region", "D4", None,
         'm.xlsx:4:region (S!D4): the cell reads as empty: it is in the merged range C4:D4, whose value '
         '"Nederland" only C4 holds; unmerge the range and fill each cell')]


def test_xlsx_a_block_merge_warns_each_row_below_its_first_once(tmp_path):
    path = tmp_path / "b.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet("S")
        ws.write_row(0, 0, ["title", "note", "extra"])
        ws.write_column(1, 0, ["A", "B", "C"])
        ws.merge_range("B2:C4", "see contract")
    got = [(i.row_number, i.cell, i.message.split(": ", 1)[1]) for i in read(path).issues]
    tail = 'it is in the merged range B2:C4, whose value "see contract" only B2 holds; unmerge the range and fill each cell'
    assert got == [(2, "C2", f"the cell reads as empty: {tail}"), (3, "B3", f"the cells read as empty: {tail}"),
                   (4, "B4", f"the cells read as empty: {tail}")]
    assert "(S!B3:C3)" in read(path).issues[1].message


def test_xlsx_error_values(tmp_path):
    path = tmp_path / "e.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet("S")
        ws.write_row(0, 0, ["title", "n"])
        ws.write_row(1, 0, ["A", "B"])
        ws.write_formula("B2", "=1/0", None, "#DIV/0!")
        ws.write_formula("A3", "=NA()", None, "#N/A")
        ws.write_string("B3", "ok")
    sheet = read(path)
    assert sheet.frame.rows() == [(2, "A", None), (3, None, "ok")]
    assert [(i.type, i.severity, i.cell, i.value, i.column) for i in sheet.issues] == [
        ("excel-error", "error", "B2", "#DIV/0!", "n"), ("excel-error", "error", "A3", "#N/A", "title")]


def test_shared_error_files():
    issues = read(DATA / "xlsxwriter/formula_results01.xlsx").issues
    assert [(i.cell, i.value) for i in issues] == [
        ("A5", "#DIV/0!"), ("A6", "#N/A"), ("A7", "#NAME?"), ("A8", "#NULL!"), ("A9", "#NUM!"),
        ("A10", "#REF!"), ("A11", "#VALUE!"), ("A12", "#DIV/0!")]


def test_xlsx_offset_table_and_x000d_escape():
    sheet = read(DATA / "calamine/temperature-in-middle.xlsx")
    assert sheet.header_row == 4
    assert sheet.frame.rows() == [(5, "celsius", "22.2222"), (6, "fahrenheit", "72")]
    assert read(DATA / "calamine/has_x000D_.xlsx").frame.columns[1] == "ABC\r\nDEF"


def test_xlsx_duplicate_and_blank_headers():
    doubled = read(DATA / "fastexcel/fixture-single-sheet-duplicated-columns.xlsx")
    assert doubled.frame.columns[1:4] == ["col (column A)", "col (column B)", "col (column C)"]
    (issue,) = [i for i in doubled.issues if i.type == "duplicate-header"]
    assert "the header 'col' heads column A, column B, column C" in issue.message and issue.cell == "A1"
    assert f"({doubled.sheet_name}!A1): " in issue.message
    merged = read(DATA / "calamine/merge_cells.xlsx")  # a merged header cell leaves B blank
    assert merged.frame.columns == ["row_number", "Row Merge", "(column B)", "Not Merged"]
    (unnamed,) = [i for i in merged.issues if i.type == "unnamed-column"]
    assert unnamed.column == "(column B)" and f"merge_cells.xlsx:1 ({merged.sheet_name}!B1): " in unnamed.message


def test_password_protected():
    with pytest.raises(InputError, match=r"pass_protected\.xlsx: the workbook is "
                                         r"password-protected \(encrypted\)"):
        read(DATA / "calamine/pass_protected.xlsx")


def test_delimited_text_named_xlsx_says_rename_it(tmp_path):
    """The mirror of a workbook named .csv: text saved under an Excel name is named as such."""
    (tmp_path / "week.xlsx").write_text("title,email\nA,a@x.example\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"week\.xlsx: this is delimited text, not an Excel "
                                         r"workbook; rename it to \.csv"):
        read(tmp_path / "week.xlsx")
    page = "<html><table><tr><td>A</td></tr></table></html>"
    for name, data in (("export.xls", page.encode()), ("utf16.xls", page.encode("utf-16"))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=rf"{name}: this is an HTML or XML page"):
            read(tmp_path / name)
    (tmp_path / "empty.xlsx").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.xlsx: the file is empty \(0 bytes\)"):
        read(tmp_path / "empty.xlsx")


def _three_sheets(path):
    with xlsxwriter.Workbook(path) as wb:
        hidden = wb.add_worksheet("Hidden")
        hidden.write_row(0, 0, ["h"])
        for name in ("First", "Second"):
            ws = wb.add_worksheet(name)
            ws.write_row(0, 0, [name.lower()])
            ws.write_row(1, 0, [f"{name} value"])
        wb.worksheets()[1].activate()
        hidden.hide()
    return path


def test_sheet_selection(tmp_path):
    path = _three_sheets(tmp_path / "s.xlsx")
    assert read(path).sheet_name == "First"  # first visible
    assert read(path, sheet="Second").frame.rows() == [(2, "Second value")]
    # Excel's sheet names are unique whatever their case: `second` can only be that one
    assert read(path, sheet="second").sheet_name == read(path, sheet=" SECOND").sheet_name == "Second"
    assert read(path, sheet=0).sheet_name == "Hidden"
    assert read(path, sheet=2).frame.columns == ["row_number", "second"]
    with pytest.raises(InputError, match=r"no sheet named 'Third'; available sheets are 0: "
                                         r"'Hidden', 1: 'First', 2: 'Second'"):
        read(path, sheet="Third")
    with pytest.raises(InputError, match=r"no sheet with index 5"):
        read(path, sheet=5)


def test_shared_visibility_and_empty_first_sheet():
    assert read(DATA / "calamine/any_sheets.xlsx").sheet_name == "Visible"
    with pytest.raises(InputError, match=r"sheet 'not this one' is empty \(no header row\); pick "
                                         r"another with --sheet"):
        read(DATA / "csvkit/sheets.xlsx")
    assert read(DATA / "csvkit/sheets.xlsx", sheet="ʤ").frame.height == 1


def test_legacy_xls():
    sheet = read(DATA / "csvkit/test.xls")
    assert sheet.frame.columns[1:5] == ["text", "date", "integer", "boolean"]
    assert sheet.frame.row(0)[1:5] == ("Chicago Reader", "1971-01-01", "40", "TRUE")


def test_a_sheet_column_right_of_the_header_is_read_under_a_placeholder(tmp_path):
    """In a workbook, notes typed beside the table are a column, not a ragged row per line."""
    path = tmp_path / "t.xlsx"
    book = openpyxl.Workbook()
    for r in [["name", "email", None], ["A", "a@x.example", "note 1"], ["B", "b@x.example", None]]:
        book.active.append(r)
    book.save(path)
    sheet = read(path)
    assert sheet.frame.columns == ["row_number", "name", "email", "(column C)"]
    assert sheet.frame.rows() == [(2, "A", "a@x.example", "note 1"), (3, "B", "b@x.example", None)]
    (issue,) = sheet.issues
    assert (issue.type, issue.severity, issue.cell) == ("unnamed-column", "warning", "C1")


def test_a_utf8_file_with_a_cp1252_line_reads_each_line_in_its_own_code(tmp_path):
    """Rows pasted from a Windows export into a UTF-8 file: the UTF-8 rows keep their letters
    (not the mojibake of decoding the whole file as one legacy code), the cp1252 line is read
    as cp1252, and that row gets a warning naming it."""
    data = ("name,city\nKöniglich Essen,Köln\nTaquería,México\n".encode()
            + "Björk AB,Göteborg\n".encode("cp1252") + "Ñandú,Córdoba\n".encode())
    sheet = read(write(tmp_path, "mixed.csv", data))
    assert rows(sheet) == [(2, "Königlich Essen", "Köln"), (3, "Taquería", "México"),
                           (4, "Björk AB", "Göteborg"), (5, "Ñandú", "Córdoba")]
    assert [(i.type, i.severity, i.row_number) for i in sheet.issues] == [("encoding", "warning", 4)]
    assert "mixed.csv:4: this line is not UTF-8" in sheet.issues[0].message


def test_a_sheet_asked_of_a_csv_is_an_error(tmp_path):
    """`--sheet Foo` on a CSV (a scheduled job's misplaced option) is not ignored silently."""
    path = write(tmp_path, "orgs.csv", "a,b\n1,2\n")
    with pytest.raises(InputError, match=r"delimited text has no sheets \(sheet 'Foo' asked for\)"):
        read(path, sheet="Foo")
    assert rows(read(path)) == [(2, "1", "2")]


def test_a_csv_cell_holding_an_excel_error_text_reads_as_empty_with_an_issue(tmp_path):
    """Excel's Save as CSV writes a cell showing `#N/A` as that text: it is no one's city or
    title, so it reads as empty with an excel-error (error) naming file, row, column and cell,
    as a workbook's error cell does. Text merely holding `#N/A` is data."""
    path = tmp_path / "saved.csv"
    path.write_text("name,email,city\nAcme,info@acme.nl,#N/A\n#DIV/0!,x@y.nl,Delft\n"
                    "Beta, #REF! ,Utrecht\nGamma #N/A,g@g.nl,#1 street\n", encoding="utf-8")
    sheet = read(path)
    assert sheet.frame.rows() == [(2, "Acme", "info@acme.nl", None), (3, None, "x@y.nl", "Delft"),
                                  (4, "Beta", None, "Utrecht"), (5, "Gamma #N/A", "g@g.nl", "#1 street")]
    assert [(i.type, i.severity, i.row_number, i.column, i.cell, i.value) for i in sheet.issues] == [
        ("excel-error", "error", 2, "city", "C2", "#N/A"), ("excel-error", "error", 3, "name", "A3", "#DIV/0!"),
        ("excel-error", "error", 4, "email", "B4", "#REF!")]
    assert sheet.issues[0].message.startswith("saved.csv:2:city: the cell holds the Excel error #N/A")


def test_an_escaped_excel_error_text_is_text(tmp_path):
    """Export writes a value that is an Excel error's text (a title `#REF!`) as `'#REF!`, as it
    escapes formulas: read back it is the text, not an error, so export → import is stable."""
    from bulkcrm.workbook import neutralise_csv
    frame = pl.DataFrame({"title": ["#REF!", "#N/A x", "'#N/A"]})
    path = tmp_path / "e.csv"
    neutralise_csv(frame).write_csv(path)
    sheet = read(path)
    assert sheet.frame["title"].to_list() == ["#REF!", "#N/A x", "'#N/A"] and sheet.issues == []


def test_a_nul_byte_is_removed_with_a_warning_naming_its_row(tmp_path):
    """csvkit's null_byte.csv: a cell holding only a NUL byte read as empty, and a trial was
    told its row "has no a" without a word of the byte. Each row on a line that held one gets
    an `encoding` warning; UTF-16 text (NUL in every other byte) gets none."""
    sh = read(DATA / "csvkit" / "null_byte.csv")
    assert sh.frame["a"].to_list() == [None]
    (issue,) = sh.issues
    assert (issue.type, issue.row_number, issue.severity) == ("encoding", 2, "warning")
    assert "null_byte.csv:2: this line held a NUL character (a zero byte), which was removed" in issue.message
    p = tmp_path / "u16.csv"
    p.write_bytes("name,email\nA,a@b.nl\n".encode("utf-16"))
    assert read(p).issues == []


def test_a_header_row_given_wrong_names_the_row_that_is_the_header(tmp_path):
    """A trial passed --header-row 5 for a header on row 4 and was told "pass --header-row N if
    it is another row": the row naming the template's columns is named instead. A given row
    naming some of them, or no row naming half of them, reads as before."""
    p = tmp_path / "s.csv"
    p.write_text("Suppliers\n\nexported 2024\nname,email\nA,a@b.nl\nB,b@b.nl\n", encoding="utf-8")
    for given in (3, 5):
        with pytest.raises(InputError, match=f"--header-row {given} names none of the template's columns, while "
                                             "row 4 names 2 of them: pass --header-row 4, or leave the option out"):
            read(p, header_row=given, columns={"name", "email"})
    assert read(p, header_row=4, columns={"name", "email"}).frame.columns == ["row_number", "name", "email"]
    assert read(p, header_row=5, columns={"name", "email", "phone", "city", "zip"}).header_row == 5
    with pytest.raises(InputError, match="header row 100 is empty or past the end of the file"):  # a trial
        read(p, header_row=100, columns={"name", "email"})


def test_an_encoding_or_delimiter_given_for_a_workbook_is_refused(tmp_path):
    """A review: `--encoding latin-1` on an .xlsx was ignored silently, as `--sheet` of a CSV
    is not."""
    wb = openpyxl.Workbook()
    wb.active.append(["title"])
    wb.active.append(["A"])
    wb.save(tmp_path / "w.xlsx")
    with pytest.raises(InputError, match=r"a workbook has no encoding: --encoding is for delimited text; leave it out"):
        read(tmp_path / "w.xlsx", encoding="latin-1")
    with pytest.raises(InputError, match=r"a workbook has no encoding or delimiter: --encoding and --delimiter"):
        read(tmp_path / "w.xlsx", encoding="latin-1", delimiter=";")
    assert read(tmp_path / "w.xlsx").frame["title"].to_list() == ["A"]
