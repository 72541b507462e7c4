"""Read stage against the real public files in shared/data (see its PROVENANCE.md)."""
from __future__ import annotations

import json

import pytest

from bulkcrm.errors import InputError
from bulkcrm.read import Sheet, read
from tests.conftest import DATA

SPECTRUM = DATA / "csv-spectrum"
READABLE = ("csv", "tsv", "psv", "ssv", "xlsx", "xls")
ALL_FILES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix[1:].lower() in READABLE)


def _records(sheet: Sheet) -> list[dict[str, str]]:
    """Frame -> list of dicts of strings, empty cells as "" (csv-spectrum's JSON convention)."""
    return [{k: ("" if v is None else v) for k, v in row.items() if k != "row_number"}
            for row in sheet.frame.iter_rows(named=True)]


@pytest.mark.parametrize("name", sorted(
    p.stem for p in (SPECTRUM / "csvs").glob("*.csv") if p.stem != "location_coordinates"))
def test_csv_spectrum(name):
    expected = json.loads((SPECTRUM / "json" / f"{name}.json").read_text("utf-8"))
    assert _records(read(SPECTRUM / "csvs" / f"{name}.csv")) == expected


def test_csv_spectrum_location_coordinates_follows_the_csv_not_the_broken_json():
    # Upstream's json/location_coordinates.json is a bare object (not a list) and carries the
    # phone 1234567890, while the CSV holds 2095257564. We trust the CSV: the expectation is
    # wrapped in a list and its phone replaced; everything else (bare " and ' inside an
    # unquoted field, U+FFFD characters) must match as given.
    expected = json.loads((SPECTRUM / "json" / "location_coordinates.json").read_text("utf-8"))
    assert isinstance(expected, dict) and expected["Contact Phone Number"] == "1234567890"
    expected = [expected | {"Contact Phone Number": "2095257564"}]
    assert _records(read(SPECTRUM / "csvs" / "location_coordinates.csv")) == expected


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_every_shared_file_reads_or_fails_cleanly(path):
    try:
        sheet = read(path)
    except InputError as e:
        assert str(e).strip() and path.name in str(e)
        return
    assert isinstance(sheet, Sheet)
    assert sheet.frame.columns[0] == "row_number"
    assert all(str(dt) == "String" for dt in sheet.frame.dtypes[1:])
    rows = sheet.frame["row_number"]
    assert rows.n_unique() == rows.len() and rows.is_sorted()
    assert rows.len() == 0 or rows.min() > sheet.header_row


@pytest.mark.parametrize(("rel", "rows", "cols"), [
    ("northwind-graphql-compose-examples/customers.csv", 91, 11),
    ("northwind-graphql-compose-examples/suppliers.csv", 29, 12),
    ("northwind-bensonkiokoh-eda/Customers.csv", 91, 11),  # cp1252, CRLF
    ("northwind-tmcnab-northwind-mongo/customers.csv", 91, 11),  # ragged
    ("sp500-datasets/constituents.csv", 503, 8),
    ("opendata500-govlab/us_companies.csv", 529, 22),  # multi-line quoted fields
    ("datablist-sample-csv/organizations-1000.csv", 1000, 9),
    ("messytables/211.csv", 2132, 96),  # Mac Roman, CR only
    ("messytables/utf-16le_encoded.csv", 327, 19),
    ("messytables/characters.csv", 382, 18),  # Big5
    ("salesforce-lwc-recipes/Accounts-Contacts.csv", 14, 9),  # BOM, short rows
    ("country-codes-datasets/country-codes.csv", 249, 56),
])
def test_row_and_column_counts_match_provenance(rel, rows, cols):
    sheet = read(DATA / rel)
    assert sheet.frame.height == rows
    assert sheet.frame.width - 1 == cols


def test_northwind_customers_text_stays_text():
    f = read(DATA / "northwind-graphql-compose-examples/customers.csv").frame
    assert f["customerID"][0] == "ALFKI"
    assert f["region"][0] == "NULL"  # no null tokens
    assert "05021" in f["postalCode"].to_list()  # leading zero kept
    assert f["row_number"][0] == 2 and f["row_number"][-1] == 92


def test_namibia_na_is_not_null():
    f = read(DATA / "country-codes-datasets/country-codes.csv").frame
    assert "NA" in f["ISO3166-1-Alpha-2"].to_list()


def test_ragged_tmcnab_customers_reports_24_long_rows():
    sheet = read(DATA / "northwind-tmcnab-northwind-mongo/customers.csv")
    long_rows = [i for i in sheet.issues if i.type == "ragged-row" and i.severity == "error"]
    assert len(long_rows) == 24 and len(sheet.issues) == 24
    assert all(i.file == "customers.csv" and i.value for i in long_rows)


def test_encodings_detected():
    assert read(DATA / "northwind-bensonkiokoh-eda/Customers.csv").encoding == "cp1252"
    assert read(DATA / "messytables/211.csv").encoding == "mac-roman"
    assert read(DATA / "messytables/characters.csv").encoding == "big5"
    spanish = read(DATA / "messytables/spanish_chars.csv")
    assert "Descripción" in spanish.frame.columns


def test_us_companies_row_numbers_jump_over_multiline_records():
    f = read(DATA / "opendata500-govlab/us_companies.csv").frame
    assert f["row_number"][0] == 2
    assert f["row_number"][-1] > f.height + 1  # 1041 physical lines for 529 records


def test_header_rows_detected_in_shared_files():
    assert read(DATA / "csvlint/title-row.csv").header_row == 2
    assert read(DATA / "csvkit/test_skip_lines.csv").header_row == 4
    assert read(DATA / "messytables/excel_pasting.csv").header_row == 4
    assert read(DATA / "calamine/header-row.xlsx").header_row == 9
    # begrotingsanalyse: header detected on line 4; its first two columns have data but no
    # header text (read as placeholders), and 'provincie' heads twelve columns, each read apart
    begroting = read(DATA / "messytables/begrotingsanalyse-2011.csv")
    assert begroting.header_row == 4 and "provincie (column 3)" in begroting.frame.columns
    (doubled,) = [i for i in begroting.issues if i.type == "duplicate-header"]
    assert doubled.value == "provincie" and "heads column 3, column 4," in doubled.message
    # weird_head_padding: the header on line 12 leaves column 1 (the row labels) unnamed
    padded = read(DATA / "messytables/weird_head_padding.csv", header_row=12)
    assert padded.frame.columns[:3] == ["row_number", "(column 1)", "1985"]
    assert [i.column for i in padded.issues if i.type == "unnamed-column"] == ["(column 1)"]


def test_pass_protected_workbook():
    with pytest.raises(InputError, match=r"pass_protected\.xlsx: the workbook is password-protected"):
        read(DATA / "calamine/pass_protected.xlsx")


def test_a_ragged_rows_shifted_values_get_no_second_error(tmp_path):
    """tmcnab customers: a row with a value past the last header (an unquoted comma) is one
    error, not also a bad country for the postal code that slid into the Country column."""
    from bulkcrm.pipeline import run_validate
    template = tmp_path / "t.yaml"
    template.write_text("null_tokens: [\"NULL\"]\nfields:\n  title: {column: CompanyName}\n"
                        "  customerId: {column: CustomerID}\n  address.country: {column: Country}\n",
                        encoding="utf-8")
    out = run_validate(DATA / "northwind-tmcnab-northwind-mongo/customers.csv", template)["summary"]
    ragged = {i["row_number"] for i in out["issues"] if i["type"] == "ragged-row"}
    assert len(ragged) == 24 and out["invalid_rows"] == 24
    assert not [i for i in out["issues"] if i["row_number"] in ragged and i["type"] != "ragged-row"]
