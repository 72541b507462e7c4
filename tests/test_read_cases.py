"""Read stage against the bug-report cases BR-01, BR-02, BR-03, BR-05, BR-06 (shared/cases).

BR-05 and BR-06 are recipes: the workbooks are built here exactly as the recipe describes.
"""
from __future__ import annotations

import openpyxl
import pytest
import xlsxwriter

from bulkcrm.errors import InputError
from bulkcrm.read import read
from tests.conftest import CASES


def test_br01_bom_glued_to_quoted_first_header():
    sheet = read(CASES / "BR-01.csv")
    assert sheet.frame.columns == ["row_number", "title", "website", "email", "phone", "country"]
    assert sheet.frame["title"].to_list() == ["Bakkerij Zonneveld B.V.", "Houtbouw Meijer"]
    assert sheet.frame["row_number"].to_list() == [2, 3]
    assert sheet.encoding == "utf-8-sig" and sheet.issues == []


def test_br02_semicolon_detected_and_comma_stays_in_value():
    sheet = read(CASES / "BR-02.csv")
    assert sheet.delimiter == ";"
    assert sheet.frame["title"].to_list() == ["Drukkerij De Vries, Noord", "Tuinarchitectuur Bos"]
    assert sheet.frame["postal_code"].to_list() == ["9711 LV", "9725 AA"]
    assert sheet.frame["website"][1] is None  # the empty field between ;; is an empty cell


def test_br03_utf8_read_exactly():
    sheet = read(CASES / "BR-03.csv")
    assert sheet.frame["title"].to_list() == ["Łódź Meble Sp. z o.o.", "Café Brouwerij ’t Hoekje"]
    assert sheet.frame["city"][0] == "Łódź"


def test_br03_cp1252_detected_never_mojibake():
    sheet = read(CASES / "BR-03-cp1252.csv")
    assert sheet.encoding == "cp1252"
    assert sheet.frame["title"].to_list() == ["Café Brouwerij ’t Hoekje"]
    assert not any("Ã" in v or "\ufffd" in v for v in sheet.frame["title"].to_list())


def test_br03_cp1252_forced_wrong_encoding_is_an_input_error():
    with pytest.raises(InputError, match=r"BR-03-cp1252\.csv.*--encoding"):
        read(CASES / "BR-03-cp1252.csv", encoding="utf-8")


def _br05(path):
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("Organisaties")
    fmt = {code: wb.add_format({"num_format": code})
           for code in ("+00 00 000 0000", "00000000", "0000000000", "@")}
    ws.write_row(0, 0, ["title", "phone", "phone_type", "kvk_number"])
    ws.write_string("A2", "Havenbedrijf Voorbeeld B.V.")
    ws.write_number("B2", 31105550707, fmt["+00 00 000 0000"])
    ws.write_string("C2", "office")
    ws.write_number("D2", 2012345, fmt["00000000"])
    ws.write_string("A3", "Mobiel Advies")
    ws.write_number("B3", 655500808, fmt["0000000000"])
    ws.write_string("C3", "mobile")  # D3 stays truly empty (no cell)
    ws.write_string("A4", "Grote Getallen BV")
    ws.write_number("B4", 31612345678)  # General
    ws.write_string("C4", "mobile")
    ws.write_string("D4", "12345678", fmt["@"])
    wb.close()
    return path


def test_br05_numeric_cells_read_as_displayed(tmp_path):
    sheet = read(_br05(tmp_path / "BR-05.xlsx"))
    f = sheet.frame
    assert sheet.sheet_name == "Organisaties"
    assert f["row_number"].to_list() == [2, 3, 4]
    assert f["phone"].to_list() == ["+31 10 555 0707", "0655500808", "31612345678"]
    assert f["kvk_number"].to_list() == ["02012345", None, "12345678"]
    for value in f["phone"].to_list() + f["kvk_number"].drop_nulls().to_list():
        assert ".0" not in value and "E" not in value.upper()


def test_br05_warns_only_for_the_general_numeric_phone(tmp_path):
    issues = read(_br05(tmp_path / "BR-05.xlsx")).issues
    assert [(i.type, i.severity, i.cell, i.row_number, i.column, i.value) for i in issues] == [
        ("numeric-cell", "warning", "B4", 4, "phone", "31612345678")]
    assert issues[0].message == ("BR-05.xlsx:4:phone (Organisaties!B4): the cell was stored as a number; "
                                 "a leading + or 0 may have "
                                 "been lost; format the column as Text")
    assert issues[0].sheet == "Organisaties" and issues[0].file == "BR-05.xlsx"


FORMULAS = {"B2": '=LOWER("INFO@WINDMOLEN-ENERGIE.EXAMPLE")',
            "C2": '="https://"&"windmolen-energie.example"',
            "A3": '=CONCATENATE("Polder","kaas B.V.")'}
RESULTS = {"B2": "info@windmolen-energie.example", "C2": "https://windmolen-energie.example",
           "A3": "Polderkaas B.V."}


def br06_workbook_a(path):
    """BR-06 workbook A: formulas with their stored results (as a spreadsheet app saves them)."""
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("Organisaties")
    ws.write_row(0, 0, ["title", "email", "website"])
    ws.write_string("A2", "Windmolen Energie B.V.")
    ws.write_string("B3", "verkoop@polderkaas.example")
    for ref, formula in FORMULAS.items():
        ws.write_formula(ref, formula, None, RESULTS[ref])
    wb.close()
    return path


def br06_workbook_b(path):
    """BR-06 workbook B: the same formulas with no stored result (as openpyxl writes them)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Organisaties"
    ws.append(["title", "email", "website"])
    ws["A2"] = "Windmolen Energie B.V."
    ws["B3"] = "verkoop@polderkaas.example"
    for ref, formula in FORMULAS.items():
        ws[ref] = formula
    wb.save(path)
    return path


def test_br06_workbook_a_stored_results_are_used(tmp_path):
    sheet = read(br06_workbook_a(tmp_path / "BR-06-A.xlsx"))
    assert sheet.frame.rows(named=True) == [
        {"row_number": 2, "title": "Windmolen Energie B.V.",
         "email": "info@windmolen-energie.example", "website": "https://windmolen-energie.example"},
        {"row_number": 3, "title": "Polderkaas B.V.", "email": "verkoop@polderkaas.example",
         "website": None}]
    assert sheet.issues == []


def test_br06_workbook_b_formulas_without_results_are_cell_errors(tmp_path):
    sheet = read(br06_workbook_b(tmp_path / "BR-06-B.xlsx"))
    errors = [(i.type, i.severity, i.sheet, i.cell, i.row_number, i.column) for i in sheet.issues]
    assert errors == [
        ("formula-without-result", "error", "Organisaties", "B2", 2, "email"),
        ("formula-without-result", "error", "Organisaties", "C2", 2, "website"),
        ("formula-without-result", "error", "Organisaties", "A3", 3, "title")]
    assert sheet.issues[0].message == (
        "BR-06-B.xlsx:2:email (Organisaties!B2): formula =LOWER(\"INFO@WINDMOLEN-ENERGIE.EXAMPLE\") without a stored "
        "result; open and save the file in Excel or LibreOffice, or paste values")
    assert sheet.issues[0].value == '=LOWER("INFO@WINDMOLEN-ENERGIE.EXAMPLE")'  # the formula, as the report shows it
    # the cells are null, never the formula text; both rows are still there to be rejected
    assert sheet.frame["row_number"].to_list() == [2, 3]
    assert sheet.frame["email"].to_list() == [None, "verkoop@polderkaas.example"]
    assert sheet.frame["website"].to_list() == [None, None]
    assert sheet.frame["title"].to_list() == ["Windmolen Energie B.V.", None]
    assert all(i.value.startswith("=") for i in sheet.issues)  # each its formula, never read as its value


@pytest.mark.parametrize("given", ["latin-1", "cp1252", "mac_roman"])
def test_a_utf8_file_read_with_a_one_byte_encoding_given_is_refused(tmp_path, given):
    """A trial passed `--encoding latin-1` for a UTF-8 file: the plan patched `Luleå` to
    `LuleÃ¥` and said the file was not UTF-8. A file that is valid UTF-8 (not plain ASCII) read
    with a one-byte encoding is refused, naming the encoding given; the same text in that
    encoding, and an ASCII file, read as asked."""
    utf8 = tmp_path / "u.csv"
    utf8.write_text("name,city\nBerglunds,Luleå\n", encoding="utf-8")
    with pytest.raises(InputError, match=f"the file is UTF-8, and --encoding {given} would read"):
        read(utf8, encoding=given)
    legacy = tmp_path / "l.csv"
    legacy.write_text("name,city\nBerglunds,Luleå\n", encoding=given)
    assert read(legacy, encoding=given).frame["city"].to_list() == ["Luleå"]
    (tmp_path / "a.csv").write_text("name,city\nAcme,Lulea\n", encoding="ascii")
    assert read(tmp_path / "a.csv", encoding=given).frame["city"].to_list() == ["Lulea"]
