"""Report files: report.json/csv/xlsx, the write-back copy, the validation workbook (no server)."""
from __future__ import annotations

import csv
import json
import zipfile

import openpyxl
from openpyxl.utils import get_column_letter
import polars as pl
import pytest

from bulkcrm.errors import Issue, issues_frame
from bulkcrm.read import Sheet, read
from bulkcrm.copies import REDACTED_NOTE, write_issues
from bulkcrm.report import CHANGE_DTYPE, ROW_SCHEMA, Report, render_summary, report_table, write_report
from bulkcrm.workbook import neutralise_csv, safe_cell_csv

SECRET = "sk-live-9f8e7d6c5b4a"
FORMULA = '=HYPERLINK("http://x.example","y")'
PHONE = "+31 20 555 0101"
AT = "@SUM(A1)"


def change(field, before, after):
    return {"field": field, "before": None if before is None else json.dumps(before),
            "after": None if after is None else json.dumps(after)}


def row(n, op, outcome, iri, title, changes=(), status=None, note=None):
    return {"row_number": n, "file": "orgs.xlsx", "sheet": "Orgs", "op": op, "outcome": outcome,
            "iri": iri, "title": title, "changes": list(changes), "http_status": status, "note": note}


def issue(n, column, type_, message, severity="error", value=None):
    return Issue(type=type_, row_number=n, column=column, value=value, rule="rule", message=message,
                 severity=severity, file="orgs.xlsx", sheet="Orgs")


ISSUES = [
    issue(2, "phone", "numeric-cell", "orgs.xlsx:2:phone: numeric cell", "warning", PHONE),
    issue(5, None, "ambiguous-match", "orgs.xlsx:5: matches 2 records"),
    issue(6, "email", "invalid-email", "orgs.xlsx:6:email: not an e-mail", value=AT),
    issue(6, "country", "invalid-country", "orgs.xlsx:6:country: not ISO 3166-1", value="Untied"),
]


@pytest.fixture
def report() -> Report:
    rows = pl.DataFrame([
        row(2, "create", "created", "/organizations/a1", "Acme", [change("title", None, "Acme")],
            201),
        row(3, "patch", "patched", "/organizations/b2", "b",
            [change("title", "a", "b"), change("website", None, "https://b.example")], 200),
        row(4, "unchanged", "unchanged", "/organizations/c3", FORMULA),
        row(5, "conflict", "conflict", None, "Dup"),
        row(6, "invalid", "invalid", None, "Bad", note=f"key {SECRET} leaked"),
        row(7, "create", "failed", None, AT, status=500, note="throttled 2x; gave up"),
    ], schema=ROW_SCHEMA)
    summary = {"requests": 9, "target": "http://127.0.0.1:1", "template": "t.yaml",
               "input": "orgs.xlsx", "dry_run": False, "started_at": "2024-05-01T10:00:00Z",
               "finished_at": "2024-05-01T10:00:05Z", "plan": None, "reconciled": True,
               "mismatches": 0}
    return Report(rows=rows, issues=issues_frame(ISSUES), summary=summary)


@pytest.fixture
def input_frame() -> pl.DataFrame:
    return pl.DataFrame({
        "row_number": [2, 3, 4, 5, 6, 7],
        "title": ["Acme", "b", FORMULA, "Dup", "Bad", AT],
        "email": ["a@x.example", "b@x.example", None, "d@x.example", AT, "f@x.example"],
        "phone": [PHONE, None, None, None, None, None],
        "country": ["NL", "NL", "NL", "BE", "Untied", "DE"],
    }, schema_overrides={"row_number": pl.Int64})


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_counts_ok_and_to_dict(report):
    assert report.counts() == {"created": 1, "patched": 1, "replaced": 0, "unchanged": 1,
                               "conflict": 1, "invalid": 1, "failed": 1}
    assert not report.ok
    assert Report(rows=report.rows.filter(pl.col("outcome").is_in(["created", "unchanged"]))).ok
    drifted = report.rows.head(1).with_columns(outcome=pl.lit("drifted"))
    assert Report(rows=drifted).counts()["drifted"] == 1 and not Report(rows=drifted).ok


def test_write_report_files_and_json_round_trip(report, tmp_path):
    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"json", "csv", "xlsx"} and all(p.exists() for p in paths.values())
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["summary"]["counts"] == report.counts() and doc["summary"]["requests"] == 9
    assert doc["summary"]["ok"] is False
    assert [r["outcome"] for r in doc["rows"]] == ["created", "patched", "unchanged", "conflict",
                                                   "invalid", "failed"]
    assert doc["rows"][1]["changes"] == [  # JSON values, not JSON texts
        {"field": "title", "before": "a", "after": "b"},
        {"field": "website", "before": None, "after": "https://b.example"}]
    assert doc["rows"][2]["changes"] == [] and doc["rows"][2]["title"] == FORMULA
    assert len(doc["issues"]) == 4 and doc["issues"][2]["column"] == "email"
    invalid, created = doc["rows"][4], doc["rows"][0]  # each row's messages, as report.csv's
    assert invalid["errors"] == ["orgs.xlsx:6:email: not an e-mail", "orgs.xlsx:6:country: not ISO 3166-1"]
    assert invalid["columns"] == ["email", "country"] and invalid["warnings"] == []
    assert (created["errors"], created["warnings"]) == ([], ["orgs.xlsx:2:phone: numeric cell"])
    back = pl.DataFrame(doc["rows"], schema={k: v for k, v in ROW_SCHEMA.items() if k != "changes"})
    assert back.select("row_number", "outcome", "http_status").equals(
        report.rows.select("row_number", "outcome", "http_status"))


def test_report_json_holds_a_row_a_line(report, tmp_path):
    """report.json is written column-wise: the summary indented, then each row and each issue
    as one compact object a line (a 50k-row report in well under a second)."""
    text = write_report(report, tmp_path)["json"].read_text(encoding="utf-8")
    lines = text.splitlines()
    row_lines = [line for line in lines if line.startswith('{"row_number":')]
    issue_lines = [line for line in lines if line.startswith('{"type":')]
    assert [json.loads(line.rstrip(","))["outcome"] for line in row_lines] == report.rows["outcome"].to_list()
    assert [json.loads(line.rstrip(","))["message"] for line in issue_lines] == [i.message for i in ISSUES]
    assert json.loads(text) == report.to_dict() and lines[1] == '"summary": {'


def test_report_csv_one_line_per_row(report, tmp_path):
    lines = read_csv(write_report(report, tmp_path)["csv"])
    assert [(r["row_number"], r["outcome"], r["op"]) for r in lines] == [
        ("2", "created", "create"), ("3", "patched", "patch"), ("4", "unchanged", "unchanged"),
        ("5", "conflict", "conflict"), ("6", "invalid", "invalid"), ("7", "failed", "create")]
    assert lines[1]["changes"] == 'title: "a" → "b"; website: null → "https://b.example"'
    assert lines[0]["warnings"] == "orgs.xlsx:2:phone: numeric cell" and lines[0]["errors"] == ""
    assert lines[4]["errors"] == ("orgs.xlsx:6:email: not an e-mail; "
                                  "orgs.xlsx:6:country: not ISO 3166-1")
    assert lines[3]["errors"] == "orgs.xlsx:5: matches 2 records"
    assert lines[5]["http_status"] == "500" and lines[5]["note"] == "throttled 2x; gave up"
    assert lines[0]["iri"] == "/organizations/a1" and lines[3]["iri"] == ""
    assert [r["columns"] for r in lines] == ["phone", "", "", "", "email; country", ""]


def fill_of(cell) -> str:
    return cell.fill.fgColor.rgb[-6:] if cell.fill.fill_type == "solid" else ""


@pytest.mark.parametrize("n_extra", [0, 10_001], ids=["normal", "write-only"])
def test_report_xlsx(report, tmp_path, n_extra):
    if n_extra:  # beyond WRITE_ONLY_ROWS the workbook is streamed; same result expected
        extra = pl.DataFrame(
            [row(100 + i, "unchanged", "unchanged", None, "x") for i in range(n_extra)],
            schema=ROW_SCHEMA)
        report = Report(rows=pl.concat([report.rows, extra]), issues=report.issues,
                        summary=report.summary)
    wb = openpyxl.load_workbook(write_report(report, tmp_path)["xlsx"])
    assert wb.sheetnames == ["Summary", "Rows", "Issues"]
    summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["created"] == 1 and summary["requests"] == 9 and summary["ok"] is False
    assert summary["target"] == "http://127.0.0.1:1" and summary["finished_at"].endswith("05Z")
    assert "already_done" not in summary  # only after a resume
    resumed = Report(rows=report.rows, issues=report.issues, summary={**report.summary, "already_done": 4})
    book = openpyxl.load_workbook(write_report(resumed, tmp_path / "resumed")["xlsx"])
    assert {r[0]: r[1] for r in book["Summary"].iter_rows(min_row=2, values_only=True)}["already_done"] == 4
    ws = wb["Rows"]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref.startswith("A1:M")
    header = [c.value for c in ws[1]]
    assert header == ["row_number", "outcome", "op", "iri", "title", "changes", "errors",
                      "warnings", "columns", "http_status", "note", "resource", "sheet"]
    assert {ws.cell(r, 12).value for r in range(2, 8)} == {"organizations"}
    assert all(c.font.bold for c in ws[1])
    assert ws.column_dimensions["D"].width > ws.column_dimensions["A"].width
    fills = {ws.cell(r, 2).value: fill_of(ws.cell(r, 2)) for r in range(2, 8)}
    assert fills == {"created": "C6EFCE", "patched": "C6EFCE", "unchanged": "D9D9D9",
                     "conflict": "FFD966", "invalid": "FFC7CE", "failed": "FFC7CE"}
    assert ws.cell(3, 6).value == 'title: "a" → "b"; website: null → "https://b.example"'
    errors = list(wb["Issues"].iter_rows(values_only=True))
    assert len(errors) == 1 + len(ISSUES)
    assert errors[0][:11] == ("file", "sheet", "row_number", "resource", "column", "cell", "severity",
                              "type", "value", "rule", "message")
    assert errors[3][2:5] == (6, None, "email") and errors[3][-1] == "row 6, column email"
    assert errors[2][-1] == "row 5"
    link = wb["Issues"].cell(4, len(errors[0])).hyperlink
    assert link.location == "'Rows'!A6"  # row 6 is the 5th data line of Rows


def test_write_back_copy(report, input_frame, tmp_path):
    input_frame = input_frame.with_columns(  # a crm_iri from an earlier run is kept
        crm_iri=pl.Series([None, None, None, None, "/organizations/old", None], dtype=pl.String))
    paths = write_report(report, tmp_path, input_sheet=Sheet(input_frame), input_path="data/orgs.xlsx")
    lines = read_csv(paths["with_status_csv"])
    assert paths["with_status_csv"].name == "orgs.with-status.csv"
    assert list(lines[0]) == ["title", "email", "phone", "country", "crm_iri", "bulkcrm_status",
                              "bulkcrm_note"]
    assert [(r["crm_iri"], r["bulkcrm_status"]) for r in lines] == [
        ("/organizations/a1", "created"), ("/organizations/b2", "patched"),
        ("/organizations/c3", "unchanged"), ("", "conflict"), ("/organizations/old", "invalid"),
        ("", "failed")]
    # what to fix: the row's errors and warnings, else its note (a failed write's reason)
    assert [r["bulkcrm_note"] for r in lines] == [
        "orgs.xlsx:2:phone: numeric cell", "", "", "orgs.xlsx:5: matches 2 records",
        "orgs.xlsx:6:email: not an e-mail; orgs.xlsx:6:country: not ISO 3166-1", "throttled 2x; gave up"]
    ws = openpyxl.load_workbook(paths["with_status_xlsx"]).active
    assert ws.title == "Orgs"
    assert [c.value for c in ws[1]] == ["title", "email", "phone", "country", "crm_iri",
                                        "bulkcrm_status", "bulkcrm_note"]
    assert ws["E2"].value == "/organizations/a1" and ws["F7"].value == "failed"
    assert ws["G7"].value == "throttled 2x; gave up"
    assert "with_status_xlsx" not in write_report(report, tmp_path / "c", input_sheet=Sheet(input_frame),
                                                  input_path="orgs.csv")


def shifted(report: Report, by: int) -> Report:
    """`report` with every row and issue `by` rows further down the sheet."""
    down = pl.col("row_number") + by
    return Report(rows=report.rows.with_columns(down), issues=report.issues.with_columns(down),
                  summary=report.summary)


def test_copies_keep_the_tables_place_in_the_sheet(report, input_frame, tmp_path):
    """A table whose header is C4 (a title above it, an empty column E dropped by the reader):
    both copies put each cell at its address in the input, so a cell a note or comment names
    (`Orgs!D9`) is that cell in the copy; the status columns follow the table, and the CSV
    copy keeps the same lines and fields."""
    letters = {"title": "C", "email": "D", "phone": "F", "country": "G"}
    sheet = Sheet(input_frame.with_columns(pl.col("row_number") + 3), sheet_name="Orgs", header_row=4,
                  letters=letters)
    paths = write_report(shifted(report, 3), tmp_path, input_sheet=sheet, input_path="orgs.xlsx")
    header = [None, None, "title", "email", None, "phone", "country", "crm_iri", "bulkcrm_status", "bulkcrm_note"]
    ws = openpyxl.load_workbook(paths["with_status_xlsx"])["Orgs"]
    assert [[c.value for c in line] for line in ws.iter_rows(max_row=4, max_col=10)] == [[None] * 10] * 3 + [header]
    assert (ws["C5"].value, ws["F5"].value, ws["H5"].value) == ("Acme", PHONE, "/organizations/a1")
    assert (ws["D9"].value, ws["G9"].value, ws["I9"].value) == (AT, "Untied", "invalid")
    assert ws["J10"].value == "throttled 2x; gave up" and ws.max_row == 10
    assert (ws.freeze_panes, ws.auto_filter.ref) == ("A5", "C4:J10")
    with open(paths["with_status_csv"], newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    assert lines[:4] == [[""] * 10] * 3 + [[h or "" for h in header]]
    assert lines[4][2:4] == ["Acme", "a@x.example"] and lines[9][7:9] == ["", "failed"]
    checked = write_issues(shifted(report, 3).issues.with_columns(pl.lit("Orgs").alias("sheet")),
                           tmp_path / "v", input_sheet=sheet)
    ws = openpyxl.load_workbook(checked["xlsx"])["Orgs"]
    assert [c.value for c in ws[4]] == header[:7] and ws["C5"].value == "Acme"
    assert [c.coordinate for line in ws.iter_rows() for c in line if c.comment] == ["F5", "C8", "D9", "G9"]
    assert (ws.freeze_panes, ws.auto_filter.ref) == ("A5", "C4:G10")


def test_formulas_are_inert(report, input_frame, tmp_path):
    assert safe_cell_csv(FORMULA) == "'" + FORMULA and safe_cell_csv("'x") == "''x"
    assert safe_cell_csv("Acme") == "Acme" and safe_cell_csv(5) == 5
    frame = neutralise_csv(pl.DataFrame({"a": [PHONE, "\tx", "ok", None], "n": [-1, 2, 3, 4]}))
    assert frame["a"].to_list() == ["'" + PHONE, "'\tx", "ok", None] and frame["n"][0] == -1
    paths = write_report(report, tmp_path, input_sheet=Sheet(input_frame), input_path="orgs.xlsx")
    lines = read_csv(paths["csv"])
    assert lines[2]["title"] == "'" + FORMULA and lines[5]["title"] == "'" + AT
    back = read_csv(paths["with_status_csv"])
    assert back[0]["phone"] == "'" + PHONE and back[4]["email"] == "'" + AT
    rows = openpyxl.load_workbook(paths["xlsx"])["Rows"]
    for ref, value in (("E4", FORMULA), ("E7", AT)):
        assert rows[ref].value == value and rows[ref].data_type == "s"
    copy = openpyxl.load_workbook(paths["with_status_xlsx"]).active
    assert copy["C2"].value == PHONE and copy["C2"].data_type == "s"
    assert copy["A4"].value == FORMULA and copy["A4"].data_type == "s"
    with zipfile.ZipFile(paths["xlsx"]) as z:
        assert not any(b"<f>" in z.read(n) for n in z.namelist() if n.startswith("xl/worksheets"))


def test_the_copies_cells_are_text_in_the_text_format(report, input_frame, tmp_path):
    """A cell of a copy edited in Excel stays text: every cell of the table, empty ones too, has
    the Text format `@` (a phone typed over keeps its 0, a typed `=…` is no formula); a
    formula-like text has Excel's quote prefix, and a control character survives (`_x0001_`):
    the copy reads back as the input."""
    frame = input_frame.with_columns(phone=pl.Series(["0201234567", "a\x01b", None, None, None, None]))
    sheet = Sheet(frame, sheet_name="Orgs")
    paths = write_report(report, tmp_path, input_sheet=sheet, input_path="orgs.xlsx")
    checked = write_issues(report.issues, tmp_path / "v", input_sheet=sheet)
    for path, width in ((paths["with_status_xlsx"], 7), (checked["xlsx"], 4)):
        ws = openpyxl.load_workbook(path)["Orgs"]
        table = list(ws.iter_rows(max_row=7, max_col=width))
        assert {c.number_format for line in table for c in line} == {"@"}
        assert {c.data_type for line in table for c in line if c.value is not None} == {"s"}
        assert (ws["A4"].value, ws["A4"].quotePrefix, ws["A2"].quotePrefix) == (FORMULA, True, False)
        assert ws["B6"].quotePrefix and ws["C2"].value == "0201234567"
        # a row a person adds below the table is text too: the columns have the Text format
        assert {ws.column_dimensions[get_column_letter(c)].number_format for c in range(1, width + 1)} == {"@"}
        again = read(path).frame
        assert again.select(frame.columns).equals(frame), path.name


def test_the_copies_show_the_excel_errors_the_input_showed(report, input_frame, tmp_path):
    """A cell showing `#N/A` reads as empty with an excel-error issue; the workbook copies show
    it again where it was, as an error value (as the input: imported again, it is flagged
    again rather than sent as the text "#N/A"); the CSV copy writes its text, which a CSV
    read flags as an Excel error too."""
    error = Issue("excel-error", 9, "country", "#N/A", "Excel error value",
                  "orgs.xlsx:9:country (Orgs!G9): the cell shows the Excel error #N/A", "error",
                  "orgs.xlsx", "Orgs", "G9")
    frame = input_frame.with_columns(pl.col("row_number") + 3, country=pl.col("country").replace("Untied", None))
    sheet = Sheet(frame, [error], sheet_name="Orgs", header_row=4,
                  letters={"title": "C", "email": "D", "phone": "F", "country": "G"})
    paths = write_report(shifted(report, 3), tmp_path, input_sheet=sheet, input_path="orgs.xlsx")
    checked = write_issues(issues_frame([error]), tmp_path / "v", input_sheet=sheet)
    for path in (paths["with_status_xlsx"], checked["xlsx"]):
        ws = openpyxl.load_workbook(path)["Orgs"]
        assert (ws["G9"].value, ws["G9"].data_type, ws["G8"].value) == ("#N/A", "e", "BE")
        assert [(i.type, i.cell, i.value) for i in read(path).issues] == [("excel-error", "G9", "#N/A")]
    assert "#N/A" in ws["G9"].comment.text
    with open(paths["with_status_csv"], newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[8][6] == "#N/A"
    assert [(i.type, i.row_number, i.column) for i in read(paths["with_status_csv"]).issues] == [
        ("excel-error", 9, "country")]


def all_text(paths) -> str:
    text = ""
    for path in paths.values():
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                text += "".join(z.read(n).decode("utf-8") for n in z.namelist())
        else:
            text += path.read_text(encoding="utf-8")
    return text


def test_secrets_are_redacted(report, input_frame, tmp_path):
    issues = issues_frame(ISSUES + [issue(7, None, "request-failed", f'auth "{SECRET}" refused')])
    report = Report(rows=report.rows, issues=issues, summary=report.summary)
    frame = input_frame.with_columns(title=pl.lit(SECRET))
    paths = write_report(report, tmp_path, input_sheet=Sheet(frame), input_path="orgs.xlsx",
                         secrets=[SECRET, ""])
    validated = write_issues(issues, tmp_path / "v", input_sheet=Sheet(frame), input_path="orgs.xlsx",
                             secrets=[SECRET])
    text = all_text(paths) + all_text(validated)
    assert len(paths) + len(validated) == 8
    assert SECRET not in text and "[redacted]" in text
    assert json.loads(paths["json"].read_text())["rows"][4]["note"] == "key [redacted] leaked"
    # a local sandbox's one-letter key masks nothing: the data and the file's keys stay as they are
    short = write_report(report, tmp_path / "short", input_sheet=Sheet(frame), input_path="orgs.xlsx", secrets=["k"])
    assert "[redacted]" not in all_text(short) and '"ok"' in short["json"].read_text()


def test_a_with_status_row_whose_cell_held_the_key_says_so(report, input_frame, tmp_path):
    """Trial 2026-12-03: a description holding the API key's text is `[redacted]` in the
    with-status copy (never a key in a file), and importing that copy, as the README offers for
    fixing rows, sent `see [redacted] here` without a word. Its note says so; others' do not."""
    frame = input_frame.with_columns(title=pl.when(pl.col("row_number") == 3).then(pl.lit(f"see {SECRET} here"))
                                     .otherwise(pl.col("title")))
    paths = write_report(report, tmp_path, input_sheet=Sheet(frame), input_path="orgs.csv", secrets=[SECRET])
    notes = {line: r["bulkcrm_note"] for line, r in enumerate(read_csv(paths["with_status_csv"]), start=2)}
    assert [rn for rn, note in notes.items() if REDACTED_NOTE in note] == [3]
    assert "see [redacted] here" in paths["with_status_csv"].read_text(encoding="utf-8")


def test_write_issues(input_frame, tmp_path):
    issues = issues_frame(ISSUES + [issue(None, None, "encoding", "orgs.xlsx: file-level"),
                                    issue(6, "email", "too-long", "second on email", "warning")])
    paths = write_issues(issues, tmp_path, input_sheet=Sheet(input_frame), input_path="in/orgs.xlsx")
    assert paths["xlsx"].name == "orgs.issues.xlsx"
    assert len(read_csv(paths["csv"])) == 6 and read_csv(paths["csv"])[2]["value"] == "'" + AT
    doc = json.loads(paths["json"].read_text())
    assert (doc["valid"], doc["errors"], doc["warnings"], len(doc["issues"])) == (False, 4, 2, 6)
    ws = openpyxl.load_workbook(paths["xlsx"])["Orgs"]
    assert [c.value for c in ws[1]] == ["title", "email", "phone", "country"]
    assert ws["A2"].value == "Acme" and ws["C2"].value == PHONE and ws["C2"].data_type == "s"
    marked = {c.coordinate: (fill_of(c), c.comment.text)
              for line in ws.iter_rows() for c in line if c.comment or fill_of(c)}
    assert marked == {
        "A1": ("FFC7CE", "orgs.xlsx: file-level"),
        "C2": ("FFFF99", "orgs.xlsx:2:phone: numeric cell"),
        "A5": ("FFC7CE", "orgs.xlsx:5: matches 2 records"),
        "B6": ("FFC7CE", "orgs.xlsx:6:email: not an e-mail\nsecond on email"),
        "D6": ("FFC7CE", "orgs.xlsx:6:country: not ISO 3166-1"),
    }
    assert ws["B6"].value == AT and ws["B6"].data_type == "s"


def test_write_issues_keeps_sheet_lines(tmp_path):
    """Row numbers with gaps (blank rows skipped by the reader) land on the same sheet lines."""
    frame = pl.DataFrame({"row_number": [2, 5], "title": ["a", ""]})
    issues = issues_frame([issue(5, "title", "missing-required", "missing title")])
    ws = openpyxl.load_workbook(write_issues(issues, tmp_path, input_sheet=Sheet(frame, sheet_name="S"))["xlsx"])["S"]
    assert ws["A2"].value == "a" and ws["A3"].value is None
    assert ws["A5"].comment.text == "missing title" and fill_of(ws["A5"]) == "FFC7CE"
    assert set(write_issues(issues_frame(), tmp_path / "none")) == {"csv", "json"}


def test_write_issues_streamed(tmp_path):
    """Beyond WRITE_ONLY_ROWS the copy is streamed; fills and comments still land on the cell."""
    n = 10_050
    frame = pl.DataFrame({"row_number": range(2, n + 2), "title": ["x"] * n}).with_columns(
        pl.col("row_number").cast(pl.Int64))
    issues = issues_frame([issue(n, "title", "too-long", "long", "warning", FORMULA)])
    ws = openpyxl.load_workbook(write_issues(issues, tmp_path, input_sheet=Sheet(frame))["xlsx"]).active
    assert ws.max_row == n + 1 and ws.freeze_panes == "A2"
    assert ws[f"A{n}"].comment.text == "long" and fill_of(ws[f"A{n}"]) == "FFFF99"


def test_report_table_and_summary(report, tmp_path):
    table = report_table(Report(rows=report.rows.drop("note", "http_status").reverse()))
    assert table["row_number"].to_list() == [2, 3, 4, 5, 6, 7] and table["note"].null_count() == 6
    text = render_summary(report, out_dir=tmp_path)
    assert text.splitlines()[0] == ("created 1, patched 1, replaced 0, unchanged 1, conflict 1, "
                                    "invalid 1, failed 1")
    assert "requests: 9" in text and "reconciled: 0 mismatch(es)" in text
    assert f"3 row(s) need attention; see {tmp_path / 'report.xlsx'}" in text
    empty = Report(rows=pl.DataFrame(schema=ROW_SCHEMA), summary={"requests": 0, "dry_run": True})
    assert empty.ok and render_summary(empty).splitlines() == [
        "created 0, patched 0, replaced 0, unchanged 0, conflict 0, invalid 0, failed 0",
        "requests: 0 (dry run: nothing written)"]
    assert write_report(empty, tmp_path / "e")["csv"].read_text().startswith("row_number,outcome")
    assert CHANGE_DTYPE == ROW_SCHEMA["changes"]


def test_issues_go_to_their_own_record_and_sheet():
    """Organizations on sheet Orgs, notes on sheet Notes, each numbering its rows: an issue naming
    its resource marks only that record's line; one the reader found (no resource) every line of
    its row on its own sheet, and the Issues sheet links each to that line."""
    def r(n, sheet, resource, outcome):
        return {**row(n, "create", outcome, None, f"{resource} {n}"), "sheet": sheet, "resource": resource}

    rows = pl.DataFrame([r(3, "Orgs", "organizations", "created"), r(3, "Notes", "organization_notes", "invalid"),
                         r(4, "Orgs", "organizations", "created")], schema=ROW_SCHEMA)
    found = [Issue("invalid-datetime", 3, "date", "x", "rule", "note date", "error", "o.xlsx", "Notes",
                   resource="organization_notes"),
             Issue("numeric-cell", 3, "phone", "1", "rule", "numeric phone", "warning", "o.xlsx", "Orgs")]
    report = Report(rows=rows, issues=issues_frame(found))
    table = report_table(report)
    assert table.select("sheet", "errors", "warnings").rows() == [
        ("Orgs", "", "numeric phone"), ("Notes", "note date", ""), ("Orgs", "", "")]
    from bulkcrm.report import _errors_frame
    assert _errors_frame(report.issues, table)["_line"].to_list() == [3, 2]  # Rows lines of Notes 3, Orgs 3


def test_a_formula_without_a_stored_result_stays_a_formula_in_the_copies(tmp_path, monkeypatch):
    """A trial: the with-status copy left a formula cell without a stored result empty, so
    the copy, imported again under `empty: clear`, planned to clear the record's description
    (and under `empty: ignore` the row went through unflagged). The workbook copy writes the
    formula back (Excel computes it on opening; imported unsaved, it is flagged again), the
    CSV copy `#N/A` (a CSV has no formulas, and `=…` text would be sent); the issue shows the
    formula."""
    from click.testing import CliRunner

    from bulkcrm.cli import cli
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text(
        "resource: organizations\nmode: patch\nempty: clear\nidentifiers: [customerId]\niri_column: crm_iri\n"
        "fields: {title: name, customerId: id, description: about}\n", encoding="utf-8")
    (tmp_path / "seed.csv").write_text("id,name,about\nfx-co,FX Co,Keep this description\n", encoding="utf-8")
    book = openpyxl.Workbook()
    book.active.append(["id", "name", "about"])
    book.active.append(["fx-co", "FX Co", '=A1&" text"'])  # openpyxl stores no result
    book.save(tmp_path / "fx.xlsx")
    runner = CliRunner()
    assert runner.invoke(cli, ["import", "seed.csv", "-t", "t.yaml"]).exit_code == 0
    first = runner.invoke(cli, ["import", "fx.xlsx", "-t", "t.yaml"])
    assert first.exit_code == 1 and 'formula =A1&" text" without a stored result' in first.output, first.output
    copies = tmp_path / "reports" / "fx"
    cell = openpyxl.load_workbook(copies / "fx.with-status.xlsx").active["C2"]
    assert (cell.value, cell.data_type) == ('=A1&" text"', "f")
    for copy in ("fx.with-status.xlsx", "fx.with-status.csv"):
        again = runner.invoke(cli, ["plan", str(copies / copy), "-t", "t.yaml", "--out", "p.json", "--json"])
        planned = json.loads(again.output.strip().splitlines()[-1])
        assert planned["invalid"] == 1 and planned["patch"] == 0, (copy, again.output)
    with open(copies / "fx.with-status.csv", newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[1][2] == "#N/A"
