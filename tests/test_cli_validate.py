"""Issue 4: `bulkcrm validate` reports every problem at once and never crashes, on every real file."""
from __future__ import annotations

import datetime as dt
import json

import openpyxl
import pytest
import xlsxwriter
import yaml

from bulkcrm.cli import cli
from bulkcrm.errors import InputError
from bulkcrm.read import read
from tests.conftest import CASES, DATA, REPO
from tests.test_read_shared_data import ALL_FILES


def _template_for(path, tmp_path):
    """A template mapping the file's own columns: title = first column, plus any e-mail, web,
    phone and country columns, so validation (not only the column check) runs."""
    try:
        cols = [c for c in read(path).frame.columns if c != "row_number"]
    except InputError:
        cols = ["title"]
    fields = {"title": cols[0]}
    pick = {"emailAddresses": ("mail",), "website": ("url", "web"), "phoneNumbers": ("phone", "tel"),
            "address.country": ("country",)}
    for field, words in pick.items():
        hit = next((c for c in cols[1:] if any(w in c.lower() for w in words)), None)
        if hit and hit not in fields.values():
            fields[field] = hit
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"fields": fields, "null_tokens": ["NULL"]}), encoding="utf-8")
    return t


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_validate_every_shared_file_exits_0_1_or_2(path, runner, tmp_path):
    result = runner.invoke(cli, ["validate", str(path), "-t", str(_template_for(path, tmp_path)), "--json"])
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.startswith("Error: ") and path.name in result.output
    else:
        summary = json.loads(result.output.strip().splitlines()[-1])
        assert summary["valid"] == summary["ok"] == (result.exit_code == 0)


def test_validate_reports_every_problem_with_an_annotated_copy(runner, tmp_path):
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("name,email,web,country\n"
                     "Good BV,info@good.example,good.example,NL\n"
                     ",broken@,https://ok.example,Untied States\n"
                     "Third,a@b.example,not a url,XX\n", encoding="utf-8")
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"fields": {"title": "name", "emailAddresses": "email", "website": "web",
                                            "address.country": "country"}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(sheet), "-t", str(t), "--report", str(tmp_path / "out")])
    assert result.exit_code == 1
    issues = json.loads((tmp_path / "out" / "issues.json").read_text())["issues"]
    found = {(i["row_number"], i["column"], i["type"], i["value"]) for i in issues}
    assert found == {(3, "name", "missing-required", None), (3, "email", "invalid-email", "broken@"),
                     (3, "country", "invalid-country", "Untied States"), (4, "web", "invalid-url", "not a url"),
                     (4, "country", "invalid-country", "XX")}
    assert {i["resource"] for i in issues} == {"organizations"}  # as a plan's issues name it
    msg = next(i["message"] for i in issues if i["value"] == "Untied States")
    assert msg.startswith("orgs.csv:3:country:") and "ISO 3166-1" in msg
    book = openpyxl.load_workbook(tmp_path / "out" / "orgs.issues.xlsx")
    ws = book.active
    assert ws["D3"].comment is not None and "ISO 3166-1" in ws["D3"].comment.text
    assert ws["B2"].comment is None
    assert (tmp_path / "out" / "issues.csv").exists()


def offset_workbook(tmp_path):
    """(workbook, template) as an ops user keeps them: a title in A1, the header at C4, data from
    C5, a bad country in E6 and a bad e-mail in F7 (sheet Klanten)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title, ws["A1"] = "Klanten", "Klantenlijst week 48"
    for line, values in ((4, ("customerID", "companyName", "country", "email", "phone")),
                         (5, ("K1", "Acme BV", "NL", "info@acme.example", "0201234567")),
                         (6, ("K2", "Beta BV", "Untied States", "sales@beta.example", "0209876543")),
                         (7, ("K3", "Gamma BV", "BE", "not-an-email", "0301112233"))):
        for col, value in enumerate(values, 3):
            ws.cell(line, col, value)
    wb.save(tmp_path / "klanten.xlsx")
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"identifiers": ["emailAddresses"], "fields": {
        "title": "companyName", "customerId": "customerID", "address.country": "country",
        "emailAddresses": "email", "phoneNumbers": "phone"}}), encoding="utf-8")
    return tmp_path / "klanten.xlsx", t


def test_the_issues_copy_keeps_the_tables_place_so_each_comment_names_its_own_cell(runner, tmp_path):
    """A table at C4: the copy puts the header at C4 and each cell where it was, so the cell a
    comment quotes (`Klanten!E6`) is the highlighted cell holding the value it talks about."""
    sheet, t = offset_workbook(tmp_path)
    result = runner.invoke(cli, ["validate", str(sheet), "-t", str(t), "--report", str(tmp_path / "r")])
    assert result.exit_code == 1
    ws = openpyxl.load_workbook(tmp_path / "r" / "klanten.issues.xlsx")["Klanten"]
    assert [c.value for c in ws[4]][2:] == ["customerID", "companyName", "country", "email", "phone"]
    commented = {c.coordinate: c.comment.text for line in ws.iter_rows() for c in line if c.comment}
    assert {ref: text.split("(Klanten!")[1].split(")")[0] for ref, text in commented.items()} == {
        "E6": "E6", "F7": "F7", "G6": "G6",  # G6: a phone without a valid country to go by
        "G7": "G7"}  # G7: 030 111 22 33 is no valid BE number (unlikely-phone)
    assert (ws["E6"].value, ws["F7"].value, ws["G6"].value) == ("Untied States", "not-an-email", "0209876543")


def test_a_cell_showing_an_excel_error_shows_it_in_the_issues_copy(runner, tmp_path):
    """A cell showing #N/A: the copy's cell, whose comment says so, shows #N/A too (an error
    value, as in the input, so the copy imported again is flagged again)."""
    with xlsxwriter.Workbook(tmp_path / "e.xlsx") as wb:
        ws = wb.add_worksheet("S")
        ws.write_row(0, 0, ["name", "email"])
        ws.write_row(1, 0, ["Acme", "info@acme.example"])
        ws.write_string(2, 0, "Bolt")
        ws.write_formula("B3", "=NA()", None, "#N/A")
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"fields": {"title": "name", "emailAddresses": "email"}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(tmp_path / "e.xlsx"), "-t", str(t), "--report", str(tmp_path / "r")])
    assert result.exit_code == 1 and "e.xlsx:3:email (S!B3): the cell shows the Excel error #N/A" in result.output
    ws = openpyxl.load_workbook(tmp_path / "r" / "e.issues.xlsx")["S"]
    assert (ws["B3"].value, ws["B3"].data_type) == ("#N/A", "e") and "(S!B3)" in ws["B3"].comment.text


def test_validate_clean_file_exits_0(runner):
    result = runner.invoke(cli, ["validate", str(REPO / "samples" / "organizations.csv"),
                                 "-t", str(REPO / "templates" / "organizations.yaml")])
    assert result.exit_code == 0, result.output
    assert "91 rows, 0 invalid" in result.output
    # a trial took 0 invalid for an all-clear, and plan found rows sharing an identifier
    assert "each row checked on its own (rows sharing an identifier or a record are found by plan" in result.output


def test_missing_column_and_bad_template_are_usage_errors(runner, tmp_path):
    t = tmp_path / "t.yaml"
    t.write_text("fields:\n  title: nope\n", encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(CASES / "BR-01.csv"), "-t", str(t)])
    assert result.exit_code == 2 and "'nope'" in result.output and "'title'" in result.output
    t.write_text("fields:\n  titel: title\n", encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(CASES / "BR-01.csv"), "-t", str(t)])
    assert result.exit_code == 2 and "fields.titel" in result.output and "unknown field" in result.output


@pytest.mark.parametrize("doc, says", [
    ("fields:\n  titel: title\n", "fields.titel: unknown field for this resource (did you mean 'title'?)"),
    ("identifiers: [customerID]\nfields:\n  title: title\n  customerId: kvk_number\n",
     "identifiers[0]: 'customerID' cannot identify a record (did you mean 'customerId'?)"),
    ("identifer: [customerId]\nfields:\n  title: title\n", "identifer: unknown key for resource "
                                                               "organizations (did you mean 'identifiers'?)"),
    ("fields:\n  title: {colum: title}\n", "fields.title.colum: unknown key (did you mean 'column'?)"),
    ("fields:\n  owner: {column: o, lookup: {create_missng: true}}\n  title: title\n",
     "unknown key (did you mean 'create_missing'?)"),
    ("fields:\n  zzz: title\n", "fields.zzz: unknown field for this resource; known fields: title"),
])
def test_a_template_typo_is_told_the_name_it_resembles(runner, tmp_path, doc, says):
    """Two trials typed `titel` and `identifiers: [customerID]`: the message names the key
    they meant, as a missing column's does; a name like none gets the list alone."""
    t = tmp_path / "t.yaml"
    t.write_text(doc, encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(CASES / "BR-01.csv"), "-t", str(t)])
    assert result.exit_code == 2 and says in result.output, result.output


def test_every_wrong_field_of_a_template_is_told_at_once(runner, tmp_path):
    """A trial fixed a template with two typos in two runs: the errors of every field are
    said together, each under its key, one a line."""
    t = tmp_path / "t.yaml"
    t.write_text("fields:\n  title: title\n  adress.city: city\n  website: {column: web, polcy: merge}\n",
                 encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(CASES / "BR-01.csv"), "-t", str(t)])
    assert result.exit_code == 2, result.output
    assert "t.yaml: 2 fields are wrong:\n  fields.adress.city: unknown field for this resource (did you mean " \
           "'address.city'?)" in result.output
    assert "\n  fields.website.polcy: unknown key (did you mean 'policy'?)" in result.output


@pytest.mark.parametrize("doc, says", [
    ("fields:\n  title: title\n  address.country: {column: country, transforms: [{country: {aliases: [us]}}]}\n",
     "country aliases are a mapping of name: ISO 3166-1 alpha-2 code"),
    ("fields:\n  title: title\n  emailAddresses: {column: email, split: 5}\n",
     "fields.emailAddresses.split: a separator is text"),
    ("fields:\n  title: title\n  emailAddresses: {column: email, split: true}\n",
     "fields.emailAddresses.split: a separator is text"),
    ("fields:\n  title: title\n  website: {column: website, split: ','}\n",
     "fields.website.split: only list fields are split"),
    ("fields:\n  title: {column: title, max_length: five}\n",
     "fields.title.max_length: a whole number of characters, 1 or more"),
    ("fields:\n  title: {column: title, required: maybe}\n", "fields.title.required: true or false"),
    ("fields:\n  title: title\n  externalSource: {value: [x]}\n",
     "fields.externalSource.value: one value (text, number or true/false)"),
    ("fields:\n  title: title\n  website: {column: website, transforms: [{url: default_scheme}]}\n",
     "transform 'url' takes its options as a mapping, e.g. {url: {option: value}}"),
    ("fields:\n  title: {column: title, transforms: [{squish: true}]}\n",
     "transform 'squish' takes its options as a mapping"),
    ("fields:\n  title: title\n  phoneNumbers: {column: phone, type: Faks}\n",
     "fields.phoneNumbers.type: 'Faks' is no phoneType; use one of fax, mobile"),
    ("fields:\n  title: title\n  phoneNumbers: {column: phone, type_map: {x: faxx}}\n",
     "fields.phoneNumbers.type_map: 'faxx' is no phoneType"),
    ("fields:\n  title: title\n  title: website\n", "the key title is given twice in one mapping (keep one)"),
    ("fields:\ntitle: title\n", "t.yaml:title: title is a field: indent it under `fields:` (two spaces)"),
    ("mode: replace\nclear_unmapped: 'false'\nfields:\n  title: title\n", "clear_unmapped: true or false, not 'false'"),
    ("fields:\n  title: title\n  tags: {column: email, lookup: {create_missing: 'false'}}\n",
     "fields.tags.lookup.create_missing: true or false, not 'false'"),
    ("fields:\n  title: title\n  tags: {column: email, lookup: {by: 5}}\n", "fields.tags.lookup.by: the record property"),
    ("fields:\n  title: title\n  address.country: {value: NO}\n",
     "fields.address.country.value: YAML reads this value as false: quote it"),
    ("fields:\n  title: {column: title, transforms: [{replace: {map: {yes: Ja}}}]}\n",
     "YAML reads the key yes as true: quote it ('yes')"),
    ("fields:\n  title: {column: title, transforms: [{replace: {map: [a, b]}}]}\n",
     "option map of transform 'replace' is a mapping, not ['a', 'b']"),
    ("fields:\n  title: {column: title, transforms: [{replace: {map: {}}}]}\n",
     "replace's map is a mapping of sheet text: API text"),
    ("fields:\n  title: title\n  ? [a, b]\n  : website\n", "a key is a name (text), not a list or mapping"),
    ("fields:\n  title: title\n  description: ''\n", "fields.description.column: expected a column name (text, not empty)"),
    ("fields:\n  title: {column: title, transforms: [{prefix: {value: 5}}]}\n",
     "option value of transform 'prefix' is text, not 5"),
    ("fields:\n  title: title\n  phoneNumbers: {column: phone, transforms: [{phone: {region: XX}}]}\n",
     "region 'XX' is no ISO 3166-1 alpha-2 country code"),
    ("fields:\n  title: {column: title, render: 5}\n", "fields.title.render: a mapping of transform"),
    ("resource: [organizations]\nfields:\n  title: title\n", "resource: unknown resource"),
    ("fields:\n  title: title\n  phoneNumbers: {column: phone, transforms: [{phone: {region: Land}}]}\n",
     "BR-01.csv: a transform of the template reads column 'Land', which the sheet lacks"),
])
def test_a_template_mistake_is_an_error_naming_its_key_never_a_traceback(runner, tmp_path, doc, says):
    """A trial's template mistakes that crashed with a traceback, were read as something else
    (`required: maybe` as true, a second `title:` over the first) or blamed the data."""
    t = tmp_path / "t.yaml"
    t.write_text(doc, encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(CASES / "BR-01.csv"), "-t", str(t)])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output, result.output


def test_a_yaml_syntax_error_is_one_line_naming_the_templates_line(runner, tmp_path):
    t = tmp_path / "t.yaml"
    t.write_text("resource: organizations\nfields: [\n", encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(CASES / "BR-01.csv"), "-t", str(t)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line == (f"Error: {t}:3:1: cannot read YAML: while parsing a flow node; expected the node "
                    "content, but found '<stream end>'")
    # an unclosed list is found a line later: the message says where it starts
    t.write_text("resource: organizations\nfields:\n  title:\n    column: name\n    transforms: [trim, squish\n"
                 "  website: {column: w}\n", encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(CASES / "BR-01.csv"), "-t", str(t)])
    assert result.output.strip() == (f"Error: {t}:6:10: cannot read YAML: while parsing a flow sequence (which "
                                     "starts at line 5); expected ',' or ']', but got ':'")


def test_an_unexpected_error_is_a_short_message_not_a_traceback(runner, monkeypatch):
    """A bug of bulkcrm's own still ends in one clear line (exit 70, EX_SOFTWARE), and `--json`
    gets its object; `--debug` shows the traceback."""
    import bulkcrm.pipeline as pipeline

    def broken(*a, **k):
        raise TypeError("'<' not supported between instances of 'NoneType' and 'int'")
    monkeypatch.setattr(pipeline, "read", broken)
    args = ["validate", str(CASES / "BR-01.csv"), "-t", str(REPO / "templates" / "organizations.yaml")]
    result = runner.invoke(cli, args)
    assert result.exit_code == 70 and "Traceback" not in result.output
    assert "internal error (TypeError: '<' not supported" in result.output and "--debug" in result.output
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 70 and json.loads(result.stdout.strip().splitlines()[-1])["error"] == "internal"
    result = runner.invoke(cli, ["--debug", *args, "--json"])  # the traceback, and the rest as without it
    assert result.exit_code == 70 and "Traceback" in result.stderr and "in broken" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["error"] == "internal"


def test_debug_adds_the_traceback_and_keeps_exit_code_and_json(runner, tmp_path, monkeypatch):
    """A scheduled job run with `--debug` reads the same exit code (2: the input must change)
    and `--json` object as without it; the traceback goes to stderr, the API key redacted."""
    monkeypatch.setenv("BULKCRM_API_KEY", "sk-secret-123")
    missing = tmp_path / "nosuch.csv"
    args = ["validate", str(missing), "-t", str(REPO / "templates" / "organizations.yaml"), "--json"]
    plain, debug = runner.invoke(cli, args), runner.invoke(cli, ["--debug", *args])
    assert plain.exit_code == debug.exit_code == 2
    assert json.loads(debug.stdout) == json.loads(plain.stdout) and json.loads(debug.stdout)["error"] == "input"
    assert "Traceback" in debug.stderr and "InputError: " in debug.stderr and "Traceback" not in plain.stderr
    assert "sk-secret-123" not in debug.output


def test_a_misspelt_column_names_the_sheets_closest_header(runner, tmp_path):
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("name,E-mail,web\nGood BV,info@good.example,good.example\n", encoding="utf-8")
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"fields": {"title": "Name ", "emailAddresses": "email",
                                            "website": "homepage"}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(sheet), "-t", str(t)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("column(s) 'email' (did you mean 'E-mail'?), 'Name ' (did you mean 'name'?), 'homepage' "
            "required by template") in result.output
    assert "the sheet has: 'name', 'E-mail', 'web'" in result.output
    assert "orgs.csv:1: column(s)" in result.output  # the header row
    assert "(the header read from row 1; pass --header-row N if it is another row)" in result.output


def test_a_csv_read_with_another_delimiter_than_its_own_is_told_which(runner, tmp_path):
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("name,email,web\nGood BV,info@good.example,good.example\n", encoding="utf-8")
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"fields": {"title": "name", "emailAddresses": "email"}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(sheet), "-t", str(t), "--delimiter", ";"])
    assert result.exit_code == 2
    assert ("the sheet has: 'name,email,web' (one column whose header holds 3 names split by ',': pass "
            "--delimiter ',')") in result.output


@pytest.mark.parametrize("workbook, says", [
    # the header is on row 9: the error points there, not at row 1
    ("header-row.xlsx", ["header-row.xlsx!Sheet1:9: column(s) 'Name' required by template"]),
    # only error cells (#DIV/0!, ...): not called empty
    ("errors.xlsx", ["sheet 'Feuil1' holds only Excel error values (#DIV/0!",
                     "e.g. in A1), no header row; pick another with --sheet"]),
])
def test_a_workbook_the_template_cannot_use_says_where(runner, tmp_path, workbook, says):
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"fields": {"title": "Name"}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(DATA / "calamine" / workbook), "-t", str(t)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert all(part in result.output for part in says), result.output


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_issues_name_the_cell_to_fix(runner, tmp_path, suffix):
    rows = [["name", "email", "web"], ["Good", "a@b.example", "x.example"], ["Bad", "not-an-email", "not a url"]]
    sheet = tmp_path / f"orgs{suffix}"
    if suffix == ".csv":
        sheet.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
        expected = {"email": "B3", "web": "C3"}
    else:  # the table starts in column B, row 2: cells are named as Excel shows them
        wb = openpyxl.Workbook()
        for i, r in enumerate(rows):
            for j, v in enumerate(r):
                wb.active.cell(i + 2, j + 2, v)
        wb.save(sheet)
        expected = {"email": "C4", "web": "D4"}
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"fields": {"title": "name", "emailAddresses": "email", "website": "web"}}),
                 encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(sheet), "-t", str(t), "--report", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    issues = json.loads((tmp_path / "out" / "issues.json").read_text())["issues"]
    assert {i["column"]: i["cell"] for i in issues} == expected
    # a workbook's messages name the cell as the reader's own issues do; a CSV's do not
    at = "orgs.csv:3:email: " if suffix == ".csv" else "orgs.xlsx:4:email (Sheet!C4): "
    assert f'{at}"not-an-email" breaks e-mail address syntax' in result.output


def test_a_sheet_may_lack_an_optional_column(runner, tmp_path):
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("name,email\nGood BV,info@good.example\n", encoding="utf-8")
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"fields": {"title": "name", "emailAddresses": "email",
                                            "website": {"column": "web", "optional": True}}}),
                 encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(sheet), "-t", str(t)])
    assert result.exit_code == 0 and "1 rows, 0 invalid" in result.output, result.output


NOTES_SECTION = ("notes:\n{sheet}  fields:\n    description: {{column: Notes}}\n"
                 "    createdAt: {{column: NoteDate}}\n    category: {{value: Note, lookup: true}}\n")


def test_validate_checks_the_notes_of_an_organizations_template(runner, tmp_path):
    """A template's `notes:` are validated offline too: from the same rows, or from their own
    sheet of the workbook, whose issues mark that sheet of the issues copy."""
    head = "resource: organizations\nfields:\n  title: {column: Company}\n  emailAddresses: {column: Email}\n"
    same = tmp_path / "same.yaml"
    same.write_text(head + NOTES_SECTION.format(sheet=""), encoding="utf-8")
    sheet = tmp_path / "s.csv"
    sheet.write_text("Company,Email,Notes,NoteDate\nAcme BV,info@acme.example,Called,2024-01-05\n"
                     "Bolt BV,info@bolt.example,Offer,31/11/2026\nCrux BV,info@crux.example,,\n", encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(sheet), "-t", str(same), "--json"])
    out = json.loads(result.output.strip().splitlines()[-1])
    assert result.exit_code == 1 and out["notes"] == {"rows": 2, "invalid_rows": 1}  # row 4: no note
    assert [(i["row_number"], i["column"], i["resource"]) for i in out["issues"]] == [
        (3, "NoteDate", "organization_notes")]
    sheet.write_text(sheet.read_text(encoding="utf-8").replace("info@crux.example", "crux"), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(sheet), "-t", str(same), "--json"])
    out = json.loads(result.output.strip().splitlines()[-1])
    assert {(i["row_number"], i["resource"]) for i in out["issues"]} == {(3, "organization_notes"),
                                                                        (4, "organizations")}
    book = openpyxl.Workbook()
    book.active.title = "Orgs"
    book.active.append(["Company", "Email"])
    book.active.append(["Acme BV", "info@acme.example"])
    notes = book.create_sheet("Notes")
    for r in [["Email", "Notes", "NoteDate"], ["info@acme.example", "Called", "2024-01-05"],
              ["info@acme.example", "", "2024-01-06"]]:
        notes.append(r)
    book.save(tmp_path / "w.xlsx")
    two = tmp_path / "two.yaml"
    two.write_text(head + NOTES_SECTION.format(sheet="  sheet: Notes\n  organization: {identifiers: "
                                                     "{emailAddresses: Email}}\n"), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(tmp_path / "w.xlsx"), "-t", str(two), "--report",
                                 str(tmp_path / "r")])
    assert result.exit_code == 1 and "notes: 2 note row(s), 1 invalid (sheet Notes)" in result.output
    assert "w.xlsx:3:Notes (Notes!B3)" in result.output  # the missing description
    copy = openpyxl.load_workbook(tmp_path / "r" / "w.issues.xlsx")
    marked = {ws.title: [c.coordinate for row in ws.iter_rows() for c in row if c.comment] for ws in copy}
    assert marked == {"Orgs": [], "Notes": ["B3"]}


def test_short_numbers_in_a_text_columns_numeric_cells_are_flagged(runner, tmp_path):
    """A zip code or KvK number typed as a number in an all-number column lost its leading 0
    unseen (02138 -> 2138): every such cell of a column mapped to a text field gets the
    numeric-cell warning (BR-05), not only 8-digit ones; numeric columns the template does
    not map get none, not even those the reader flags alone (8 digits: trial 2026-12-02, 270
    warnings for an unmapped column)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["name", "zip", "kvk", "employees", "vip", "revenue"])
    ws.append(["Acme", 2138, 2012345, 12, 1, 123456789])
    ws.append(["Bolt", 10001, 12345678, 250, 0, 987654321])
    wb.save(tmp_path / "orgs.xlsx")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "resource": "organizations", "identifiers": ["chamberOfCommerceNumber"],
        "fields": {"title": "name", "address.postalCode": "zip", "chamberOfCommerceNumber": "kvk"}}),
        encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(tmp_path / "orgs.xlsx"), "-t", str(tmp_path / "t.yaml"), "--json"])
    issues = json.loads(result.output.strip().splitlines()[-1])["issues"]
    flagged = sorted((i["row_number"], i["column"], i["value"]) for i in issues if i["type"] == "numeric-cell")
    assert flagged == [(2, "kvk", "2012345"), (2, "zip", "2138"), (3, "kvk", "12345678"), (3, "zip", "10001")]
    assert any("(Sheet!B2): the cell was stored as a number; a leading + or 0 may have been lost" in i["message"]
               for i in issues)


def test_a_number_in_a_title_or_description_is_no_lost_zero(runner, tmp_path):
    """Trial 2026-12-03: `2024` typed into Description was told "a leading + or 0 may have been
    lost", advice for codes; a title or description is prose, where a number is a number."""
    wb = openpyxl.Workbook()
    wb.active.append(["name", "email", "about", "zip"])
    wb.active.append([1800, "a@x.example", 2024, 2138])
    wb.save(tmp_path / "orgs.xlsx")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "resource": "organizations", "identifiers": ["emailAddresses"],
        "fields": {"title": "name", "emailAddresses": "email", "description": "about",
                   "address.postalCode": "zip"}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(tmp_path / "orgs.xlsx"), "-t", str(tmp_path / "t.yaml"), "--json"])
    issues = json.loads(result.output.strip().splitlines()[-1])["issues"]
    assert [(i["column"], i["value"]) for i in issues if i["type"] == "numeric-cell"] == [("zip", "2138")]


def test_a_date_cell_is_flagged_only_in_a_field_that_is_no_date_time(runner, tmp_path):
    """Excel turns a typed `1-50` into a date (PROVENANCE.md: kr_companies.csv, `Jan-50`): a date
    cell in a column the template maps to a field that is not a date-time (an id, a phone, a
    zip) gets a date-cell warning; in archivedAt (a date-time) or an unmapped column it is silent.
    In an identifier (customerId) it is an error: the date names no record, so the row would
    be created again, or write the date over the record's id."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["name", "id", "phone", "zip", "archived", "founded"])
    ws.append(["Acme", dt.datetime(1950, 1, 1), dt.datetime(2024, 3, 12, 14, 5), "2138",
               dt.datetime(2024, 5, 1), dt.datetime(1999, 1, 1)])
    for cell, fmt in (("B2", "mmm-yy"), ("C2", "dddd d mmmm yyyy h:mm AM/PM"), ("E2", "d-mmm"),
                      ("F2", "d-mmm")):
        ws[cell].number_format = fmt
    wb.save(tmp_path / "orgs.xlsx")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "resource": "organizations", "identifiers": ["customerId"],
        "fields": {"title": "name", "customerId": "id", "phoneNumbers": "phone",
                   "address.postalCode": "zip", "archivedAt": "archived"}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(tmp_path / "orgs.xlsx"), "-t", str(tmp_path / "t.yaml"), "--json"])
    issues = json.loads(result.output.strip().splitlines()[-1])["issues"]
    dated = [(i["cell"], i["value"], i["severity"], i["message"].split(": ", 1)[1]) for i in issues
             if i["type"] == "date-cell"]
    fix = "Excel turns a typed value such as 3-12 or 1-50 into a date: format the column as Text and type the value again"
    assert dated == [
        ("B2", "1950-01-01", "error", 'the cell was stored as a date: Excel shows "Jan-50", read as "1950-01-01", '
         "not what was typed, so it names no record and the row is not written (it would create a duplicate "
         f"or overwrite the record's value); {fix}"),
        ("C2", "2024-03-12T14:05:00", "warning", 'the cell was stored as a date: Excel shows "Tuesday 12 March 2024 '
         f'2:05 PM", read as "2024-03-12T14:05:00", which is no phone number, so it is not sent; {fix}')]
    assert not [i for i in issues if i["cell"] == "C2" and i["type"] != "date-cell"]  # one warning a cell
    assert result.exit_code == 1  # the identifier's date
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "resource": "organizations", "identifiers": ["phoneNumbers"],
        "fields": {"title": "name", "customerId": "id", "phoneNumbers": "phone"}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(tmp_path / "orgs.xlsx"), "-t", str(tmp_path / "t.yaml"), "--json"])
    issues = json.loads(result.output.strip().splitlines()[-1])["issues"]
    assert [(i["cell"], i["severity"]) for i in issues if i["type"] == "date-cell"] == [
        ("B2", "warning"), ("C2", "warning")]  # customerId as data: not sent (a text field)
    assert result.exit_code == 0


def test_a_header_in_two_columns_blocks_only_a_template_that_maps_it(runner, tmp_path):
    """Two unmapped `Opmerking` columns do not stop the import (a warning); a template mapping
    the doubled header is told which names to map, and may map them."""
    (tmp_path / "orgs.csv").write_text("title,email,Opmerking,Opmerking\nA,a@x.example,x,y\n", encoding="utf-8")
    fields = {"title": "title", "emailAddresses": "email"}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"resource": "organizations", "identifiers": ["emailAddresses"],
                                                     "fields": fields}), encoding="utf-8")
    ok = runner.invoke(cli, ["validate", str(tmp_path / "orgs.csv"), "-t", str(tmp_path / "t.yaml"), "--json"])
    out = json.loads(ok.output.strip().splitlines()[-1])
    assert ok.exit_code == 0 and [i["type"] for i in out["issues"]] == ["duplicate-header"]
    (tmp_path / "t2.yaml").write_text(yaml.safe_dump({"resource": "organizations", "identifiers": ["emailAddresses"],
                                                      "fields": {**fields, "description": "Opmerking"}}),
                                      encoding="utf-8")
    bad = runner.invoke(cli, ["validate", str(tmp_path / "orgs.csv"), "-t", str(tmp_path / "t2.yaml")])
    assert bad.exit_code == 2 and ("'Opmerking' (it heads several columns, read as 'Opmerking (column 3)', "
                                   "'Opmerking (column 4)': map one)") in bad.output


def test_validate_says_where_the_issues_it_does_not_print_go(runner, tmp_path):
    rows = "".join(f"Org {i},bad{i}@\n" for i in range(105))
    (tmp_path / "orgs.csv").write_text("title,email\n" + rows, encoding="utf-8")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"resource": "organizations", "identifiers": ["emailAddresses"],
                                                     "fields": {"title": "title", "emailAddresses": "email"}}),
                                     encoding="utf-8")
    out = runner.invoke(cli, ["validate", str(tmp_path / "orgs.csv"), "-t", str(tmp_path / "t.yaml")]).output
    assert "  … 5 more (--report DIR writes them all)" in out
    out = runner.invoke(cli, ["validate", str(tmp_path / "orgs.csv"), "-t", str(tmp_path / "t.yaml"),
                              "--report", str(tmp_path / "r")]).output
    assert f"  … 5 more in {tmp_path / 'r'}" in out


def test_validate_prints_errors_before_warnings(runner, tmp_path):
    """A 50k-row trial's 1,083 warnings hid its 289 errors from the 100 lines printed: the
    errors (rows that will not be sent) come first, each kind in row order."""
    rows = "".join(f"Org {i},+31 20 555 {i:04d} x12\n" for i in range(120)) + "Bad,\n,+31 20 555 0000\n"
    (tmp_path / "orgs.csv").write_text("title,phone\n" + rows, encoding="utf-8")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"fields": {"title": "title", "phoneNumbers": "phone"}}),
                                     encoding="utf-8")
    out = runner.invoke(cli, ["validate", str(tmp_path / "orgs.csv"), "-t", str(tmp_path / "t.yaml")]).output
    lines = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert lines[0].startswith("error: orgs.csv:123:") and lines[1].startswith("warning: orgs.csv:2:phone")
    assert "  … 21 more (--report DIR writes them all)" in out


def test_phones_a_spreadsheet_turned_into_sums_make_their_rows_invalid(runner):
    """leads-100.excel-roundtrip.csv: Excel read `+1-555-2237`-like cells as sums (`-2237`). Such
    a value is no number to keep as typed: the row is invalid (not sent), its cell named."""
    path = DATA / "datablist-sample-csv" / "leads-100.excel-roundtrip.csv"
    result = runner.invoke(cli, ["validate", str(path), "-t", str(REPO / "templates" / "leads.yaml"), "--json"])
    issues = json.loads(result.output.strip().splitlines()[-1])["issues"]
    sums = [(i["row_number"], i["column"], i["value"], i["severity"]) for i in issues
            if i["value"] and i["value"].startswith("-")]
    assert sums == [(2, "Phone 1", "-2237", "error"), (7, "Phone 1", "-6989", "error"),
                    (9, "Phone 2", "-976", "error"), (12, "Phone 2", "-8653", "error")]
    assert all("a spreadsheet read a number such as +1-555-2237 as a sum" in i["message"]
               for i in issues if i["value"] in ("-2237", "-976"))
    assert result.exit_code == 1


@pytest.mark.parametrize("args, says", [
    (["validate", "x.csv", "-t", "t.yaml", "--debug"], "Error: --debug goes before the command: bulkcrm --debug validate …"),
    (["--json", "validate", "x.csv"], "Error: --json belongs after the command name: bulkcrm validate … --json"),
    (["--dry-run", "import", "x.csv"], "Error: --dry-run belongs after the command name: bulkcrm import … --dry-run"),
    (["validate", "x.csv", "--nope"], "Error: No such option '--nope'"),  # no placement to suggest
])
def test_an_option_on_the_wrong_side_of_the_command_is_told_where_it_goes(tmp_path, args, says):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "bulkcrm", *args], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60)
    assert out.returncode == 2 and says in out.stderr and "Did you mean '--mode'" not in out.stderr


def test_a_reader_that_leaves_the_pipe_gets_no_broken_pipe_error(tmp_path):
    """`bulkcrm validate … | head -1`: the reader leaves after one line; the command stops
    quietly with the shell's code for it (141), not `Error: [Errno 32] Broken pipe`."""
    import subprocess
    import sys
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("name,email\n" + "".join(f",bad{i}\n" for i in range(500)), encoding="utf-8")
    t = tmp_path / "t.yaml"
    t.write_text("fields: {title: name, emailAddresses: email}\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "bulkcrm", "validate", str(sheet), "-t", str(t)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Broken pipe" not in err and "Traceback" not in err


def test_validate_checks_a_notes_template_sheet(runner, tmp_path):
    """`validate` of a sheet of notes with its own template (resource organization_notes, as
    samples/organization_notes.csv): its rows are checked, not a traceback (a trial's)."""
    sample = REPO / "samples" / "organization_notes.csv"
    template = REPO / "templates" / "organization_notes.yaml"
    result = runner.invoke(cli, ["validate", str(sample), "-t", str(template), "--json"])
    out = json.loads(result.stdout)
    assert result.exit_code == 0 and out["ok"] is True and out["rows"] == 153 and out["errors"] == 0
    bad = tmp_path / "notes.csv"
    lines = sample.read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join([lines[0], lines[1].replace("2023-07-30", "31/12/2024"),
                              lines[2].replace(",no", ",maybe")]) + "\n", encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(bad), "-t", str(template), "--json"])
    out = json.loads(result.stdout)
    assert result.exit_code == 1 and (out["rows"], out["invalid_rows"]) == (2, 2)
    assert {(i["row_number"], i["column"]) for i in out["issues"]} == {(2, "note_date"), (3, "flagged")}


def test_validate_warns_of_a_template_plan_would_refuse(runner, tmp_path):
    """A template without identifiers passed validate and then stopped at plan (a trial): validate
    says so up front, and the way out it names says that create-only creates them again on
    every run."""
    t = tmp_path / "t.yaml"
    t.write_text("identifiers: []\nfields:\n  title: title\n", encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(CASES / "BR-01.csv"), "-t", str(t)])
    assert result.exit_code == 0
    assert "\ntemplate warning: " in result.output and "every run would create every row again" in result.output
    assert "a second run creates them all again" in result.output
    assert "(plan and import refuse it unless --mode create-only)" in result.output


def test_validate_names_the_columns_the_template_does_not_read(runner, tmp_path):
    """Trial 2026-12-02: only `plan` said which columns are not loaded; an ops user running
    `validate` first saw a clean sheet whose `Opmerking` column was silently left out. Columns a
    notes template reads to find the organization (customer_id_column) are read, not unmapped."""
    (tmp_path / "o.csv").write_text("title,email,Opmerking,Extra\nA,a@x.example,x,y\n", encoding="utf-8")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "resource": "organizations", "identifiers": ["emailAddresses"],
        "fields": {"title": "title", "emailAddresses": "email",
                   "website": {"column": "Site", "optional": True}}}), encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(tmp_path / "o.csv"), "-t", str(tmp_path / "t.yaml")])
    assert result.exit_code == 0
    assert result.output.splitlines()[1:] == [
        "  note: optional column 'Site' is not in the sheet: website is left as it is",
        "  note: unmapped columns 'Opmerking', 'Extra': the template does not read them, so nothing of them "
        "is sent (map a column in the template to load it)"]
    out = runner.invoke(cli, ["validate", str(tmp_path / "o.csv"), "-t", str(tmp_path / "t.yaml"), "--json"])
    assert [n.split(":")[0] for n in json.loads(out.output)["column_notes"]] == [
        "optional column 'Site' is not in the sheet", "unmapped columns 'Opmerking', 'Extra'"]
    notes = runner.invoke(cli, ["validate", str(REPO / "samples" / "organization_notes.csv"), "-t",
                                str(REPO / "templates" / "organization_notes.yaml"), "--json"])
    assert json.loads(notes.output)["column_notes"] == [], notes.output


def test_a_first_sheet_without_the_columns_names_the_other_sheets(runner, tmp_path):
    """Trial 2026-12-02: a workbook whose first sheet is a Readme got a missing-column error that
    did not say the data is on another sheet; it names the visible others and --sheet (not
    when --sheet chose the sheet, nor a hidden sheet)."""
    wb = openpyxl.Workbook()
    wb.active.title = "Readme"
    wb.active.append(["this sheet is notes"])
    data = wb.create_sheet("Agencies")
    data.append(["title", "email"])
    data.append(["A", "a@x.example"])
    wb.create_sheet("Old").sheet_state = "hidden"
    wb.save(tmp_path / "w.xlsx")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"resource": "organizations", "identifiers": ["emailAddresses"],
                                                     "fields": {"title": "title", "emailAddresses": "email"}}),
                                     encoding="utf-8")
    args = ["validate", str(tmp_path / "w.xlsx"), "-t", str(tmp_path / "t.yaml")]
    first = runner.invoke(cli, args)
    assert first.exit_code == 2
    assert "; the first sheet was read, and the workbook has another ('Agencies'): pass --sheet NAME;" in first.output
    chosen = runner.invoke(cli, [*args, "--sheet", "Readme"])
    assert chosen.exit_code == 2 and "--sheet NAME" not in chosen.output
    assert runner.invoke(cli, [*args, "--sheet", "Agencies"]).exit_code == 0
    # trial 2026-12-03: the first sheet held some of the columns (a notes sheet moved first)
    wb.active.delete_rows(1)
    wb.active.append(["title", "note"])
    wb.save(tmp_path / "w.xlsx")
    shared = runner.invoke(cli, args)
    assert shared.exit_code == 2 and "column(s) 'email' required" in shared.output
    assert "the workbook has another ('Agencies'): pass --sheet NAME" in shared.output
    # the template's own notes sheet is no other place for them (a review: a typo on the right sheet)
    (tmp_path / "n.yaml").write_text(yaml.safe_dump({
        "resource": "organizations", "identifiers": ["emailAddresses"],
        "fields": {"title": "title", "emailAddresses": "e-mail"},
        "notes": {"sheet": "Agencies", "fields": {"description": "note", "category": {"value": "/note_categories/1"}}}}),
        encoding="utf-8")
    typo = runner.invoke(cli, ["validate", str(tmp_path / "w.xlsx"), "-t", str(tmp_path / "n.yaml")])
    assert typo.exit_code == 2 and "'e-mail'" in typo.output and "--sheet NAME" not in typo.output, typo.output


def test_a_legacy_encoding_is_named_so_its_accents_can_be_checked(runner, tmp_path):
    """Trial 2026-12-02: a Mac Roman file was read right, but nothing said which encoding was
    taken, and a wrong guess shows only as wrong accented letters."""
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"resource": "organizations", "identifiers": ["emailAddresses"],
                                                     "fields": {"title": "title", "emailAddresses": "email"}}),
                                     encoding="utf-8")
    for name, data, said in (("l.csv", "title,email\nCafé Noir,a@x.example\n".encode("cp1252"), "Windows-1252 (cp1252)"),
                             ("m.csv", "title,email\rCafé Noir,a@x.example\r".encode("mac-roman"), "Mac Roman")):
        (tmp_path / name).write_bytes(data)
        out = runner.invoke(cli, ["validate", str(tmp_path / name), "-t", str(tmp_path / "t.yaml")]).output
        assert (f"  note: encoding: the file is not UTF-8 and was read as {said}: check its accented letters "
                "(--encoding reads it as another)") in out.splitlines(), out
    (tmp_path / "u.csv").write_text("title,email\nCafé Noir,a@x.example\n", encoding="utf-8")
    assert "encoding" not in runner.invoke(cli, ["validate", str(tmp_path / "u.csv"), "-t", str(tmp_path / "t.yaml")]).output


def test_a_delimiter_may_be_given_by_name(runner, tmp_path):
    """Trial 2026-12-03: `--delimiter '\\t'` and `--delimiter tab` were refused ("must be one
    character"); a tab is awkward to type in a shell."""
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"resource": "organizations", "identifiers": ["emailAddresses"],
                                                     "fields": {"title": "title", "emailAddresses": "email"}}),
                                     encoding="utf-8")
    (tmp_path / "s.tsv").write_text("title\temail\nA;B\ta@x.example\n", encoding="utf-8")
    for name in ("tab", "TAB", "\\t", "\t"):
        out = runner.invoke(cli, ["validate", str(tmp_path / "s.tsv"), "-t", str(tmp_path / "t.yaml"),
                                  "--delimiter", name, "--json"])
        assert out.exit_code == 0 and json.loads(out.output.splitlines()[-1])["rows"] == 1, (name, out.output)


def test_a_file_open_in_a_spreadsheet_program_is_said_to_be(runner, tmp_path):
    """Trial 2026-12-03: a workbook open in Excel (its owner file `~$…` beside it) may hold
    edits not saved yet, which are not read: validate (and plan) say so."""
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"resource": "organizations", "identifiers": ["emailAddresses"],
                                                     "fields": {"title": "title", "emailAddresses": "email"}}),
                                     encoding="utf-8")
    (tmp_path / "leads-week2.csv").write_text("title,email\nA,a@x.example\n", encoding="utf-8")
    args = ["validate", str(tmp_path / "leads-week2.csv"), "-t", str(tmp_path / "t.yaml")]
    assert "open" not in runner.invoke(cli, args).output
    for owner in ("~$ads-week2.csv", ".~lock.leads-week2.csv#"):  # Excel's for a long name; LibreOffice's
        (tmp_path / owner).write_bytes(b"")
        assert (f"  note: open: leads-week2.csv may be open in a spreadsheet program ({owner} is beside it): what "
                "is not saved yet is not read; save the file first (a lock file a crashed program left can be "
                "deleted)") in runner.invoke(cli, args).output.splitlines()
        (tmp_path / owner).unlink()


def test_a_null_token_in_a_phone_column_is_an_empty_cell_not_a_placeholder(runner, tmp_path):
    """Trial 2026-12-02: `null_tokens: ["NULL"]` emptied the phone cell for mapping, but the
    phone checks read the raw cell and called `NULL` a placeholder (22 warnings on the shipped
    sample, again every week). They read the cells as mapping does; `n/a`, no token here, is
    still one."""
    (tmp_path / "o.csv").write_text("title,email,phone,fax\nA,a@x.example,NULL, NULL \nB,b@x.example,n/a,\n",
                                    encoding="utf-8")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "resource": "organizations", "identifiers": ["emailAddresses"], "null_tokens": ["NULL"],
        "fields": {"title": "title", "emailAddresses": "email",
                   "phoneNumbers": [{"column": "phone"}, {"column": "fax", "type": "fax"}]}}), encoding="utf-8")
    out = json.loads(runner.invoke(cli, ["validate", str(tmp_path / "o.csv"), "-t", str(tmp_path / "t.yaml"),
                                         "--json"]).output)
    assert [(i["row_number"], i["column"], i["value"]) for i in out["issues"]] == [(3, "phone", "n/a")]
    sample = json.loads(runner.invoke(cli, ["validate", str(REPO / "samples" / "organizations.csv"), "-t",
                                            str(REPO / "templates" / "organizations.yaml"), "--json"]).output)
    assert not [i for i in sample["issues"] if i["value"] == "NULL"]


def test_a_no_value_word_that_fails_a_check_points_at_null_tokens(runner, tmp_path):
    """Trial 2026-12-02: `N/A` in a country column got a hint about country aliases, and `NONE`
    in an e-mail column one about e-mail syntax; the fix is the template's `null_tokens`. A
    real bad value keeps its own hint, and a listed token is no issue at all."""
    (tmp_path / "o.csv").write_text("title,email,country,phone\nA,NONE,N/A,n/a\nB,b@x.example,Untied States,\n"
                                    "C,c@x.example,NULL,000-000-0000\n", encoding="utf-8")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "resource": "organizations", "identifiers": ["emailAddresses"], "null_tokens": ["NULL"],
        "fields": {"title": "title", "emailAddresses": "email", "address.country": "country",
                   "phoneNumbers": "phone"}}), encoding="utf-8")
    out = json.loads(runner.invoke(cli, ["validate", str(tmp_path / "o.csv"), "-t", str(tmp_path / "t.yaml"),
                                         "--json"]).output)
    by_cell = {(i["row_number"], i["column"]): i["message"] for i in out["issues"]}
    assert set(by_cell) == {(2, "email"), (2, "country"), (2, "phone"), (3, "country"), (4, "phone")}
    for cell, word in (((2, "email"), "NONE"), ((2, "country"), "N/A")):
        assert f'if "{word}" means no value, add it to the template\'s null_tokens' in by_cell[cell]
    assert "or add it to the template's null_tokens" in by_cell[(2, "phone")]
    assert "null_tokens" not in by_cell[(3, "country")] + by_cell[(4, "phone")]
