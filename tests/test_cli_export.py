"""Issue 7, end to end: `bulkcrm import` the Northwind sample, `bulkcrm export` it to CSV and XLSX
with the same template, `bulkcrm plan` each export: nothing to do."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from bulkcrm.cli import cli
from bulkcrm.read import read
from tests.conftest import REPO, TEST_KEY

SAMPLE = REPO / "samples" / "organizations.csv"
TEMPLATE = REPO / "templates" / "organizations.yaml"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def run(runner, crm, *args, as_json=True):
    """Invoke the CLI against the `crm` sandbox; return (exit code, last output line as JSON)."""
    extra = ["--json"] if as_json else []
    result = runner.invoke(cli, [*args, "--base-url", crm.url, "--api-key", TEST_KEY,
                                 "--max-rate", "60000", *extra])
    lines = result.output.strip().splitlines()
    if not as_json:
        return result.exit_code, result.output
    try:
        return result.exit_code, json.loads(lines[-1])
    except (IndexError, ValueError):
        pytest.fail(f"no JSON line in output:\n{result.output}")


def test_sample_round_trip_through_csv_and_xlsx_plans_nothing(runner, crm, tmp_path):
    code, imported = run(runner, crm, "import", str(SAMPLE), "-t", str(TEMPLATE),
                         "--report", str(tmp_path / "r"), "--no-reconcile")
    assert code == 0 and imported["created"] == 91
    for ext in ("csv", "xlsx"):
        out = tmp_path / f"organizations.export.{ext}"
        crm.clear_log()
        code, exported = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(out))
        assert code == 0, exported
        assert exported == {"ok": True, "path": str(out), "records": 91, "pages": 4, "requests": 4, "left_out": 0,
                            "phones_left_out": 0}
        assert [(r.method, r.path) for r in crm.requests] == [("GET", "/organizations")] * 4
        frame = read(out).frame
        assert frame.columns[1:] == ["crm_iri", "companyName", "customerID", "address", "city",
                                     "postalCode", "country", "phone", "fax"]
        alfki = next(frame.filter(frame["customerID"] == "ALFKI").iter_rows(named=True))
        assert (alfki["country"], alfki["phone"], alfki["fax"]) == ("Germany", "+49300074321",
                                                                      "+49300076545")
        crm.clear_log()
        code, planned = run(runner, crm, "plan", str(out), "-t", str(TEMPLATE),
                            "--out", str(tmp_path / f"plan.{ext}.json"))
        assert code == 0, planned
        assert planned["ok"] is True and planned["unchanged"] == 91 and planned["writes"] == 0
        assert planned["create"] == planned["patch"] == planned["invalid"] == planned["conflict"] == 0
        assert not [r for r in crm.requests if r.method in WRITES]


def test_export_prints_a_summary_and_filters(runner, crm, tmp_path):
    crm.seed({"tags": [{"@id": "/tags/t1", "title": "VIP"}],
              "organizations": [
                  {"@id": "/organizations/a", "title": "Archived VIP", "tags": ["/tags/t1"],
                   "archivedAt": "2024-01-01T00:00:00+00:00", "externalSource": "northwind"},
                  {"@id": "/organizations/b", "title": "Active VIP", "tags": ["/tags/t1"],
                   "externalSource": "northwind"},
                  {"@id": "/organizations/c", "title": "Active", "externalSource": "northwind"},
                  {"@id": "/organizations/d", "title": "Other VIP", "tags": ["/tags/t1"],
                   "externalSource": "another-system"}]})
    out = tmp_path / "vip.csv"
    code, text = run(runner, crm, "export", "-t", str(TEMPLATE), "-o", str(out), "--tag", "VIP",
                     "--not-archived", as_json=False)
    assert code == 0, text
    assert "export: 1/1 pages, 2 requests, 0.0 min" in text  # a log's progress line (no terminal)
    assert "Exported 1 record(s) to " + str(out) + " (1 page(s), 2 request(s)); left out 1 whose " \
        "constant fields differ from the template's (--all exports them too)" in text
    assert read(out).frame["crm_iri"].to_list() == ["/organizations/b"]
    page = [r for r in crm.requests if r.path == "/organizations"][-1]
    assert parse_qsl(page.query) == [("itemsPerPage", "30"), ("tags.id[]", "/tags/t1"),
                                     ("exists[archivedAt]", "false")]
    # the template's constant externalSource scopes the export to its own records; --all lifts it
    code, text = run(runner, crm, "export", "-t", str(TEMPLATE), "-o", str(out), "--tag", "VIP",
                     "--not-archived", "--all", as_json=False)
    assert read(out).frame["crm_iri"].to_list() == ["/organizations/b", "/organizations/d"]
    assert "left out" not in text


def test_export_usage_errors_exit_2(runner, crm, tmp_path):
    code, text = run(runner, crm, "export", "-t", str(TEMPLATE), "-o", str(tmp_path / "x.json"),
                     as_json=False)
    assert code == 2 and "name the file .csv or .xlsx" in text
    code, text = run(runner, crm, "export", "-t", str(TEMPLATE), "-o", str(tmp_path / "x.csv"),
                     "--tag", "nope", as_json=False)
    assert code == 2 and "--tag 'nope' matches no tags title" in text
    assert not list(tmp_path.iterdir())


def test_an_unwritable_export_path_names_that_path_before_any_request(runner, crm, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be", encoding="utf-8")
    crm.clear_log()
    code, out = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(blocked / "x.csv"))
    assert code == 74 and out["error"] == "file"
    assert f"cannot write or read {blocked / 'x.csv'}: Not a directory" in out["message"]
    assert not crm.requests


def test_export_json_keeps_its_progress_lines_on_stderr(runner, crm, tmp_path):
    """With --json, stdout holds the JSON alone and the progress lines still go to stderr (a
    scheduled job's log), as the README says; a trial's --json export logged none."""
    assert runner.invoke(cli, ["import", str(REPO / "samples" / "organizations.csv"), "-t", str(TEMPLATE),
                               "--base-url", crm.url, "--api-key", TEST_KEY, "--max-rate", "60000"]).exit_code == 0
    result = runner.invoke(cli, ["export", "-t", str(TEMPLATE), "--out", str(tmp_path / "x.csv"), "--json",
                                 "--base-url", crm.url, "--api-key", TEST_KEY, "--max-rate", "60000"])
    assert result.exit_code == 0 and json.loads(result.stdout.strip())["records"] == 91
    assert "export: 4/4 pages" in result.stderr


US_TEMPLATE = REPO / "templates" / "us_companies.yaml"


def test_a_text_longer_than_an_excel_cell_is_refused_for_xlsx_and_round_trips_in_csv(runner, crm, tmp_path):
    """Review 2026-12-02: openpyxl cut a description of 40,000 characters to Excel's 32,767
    without a word, and a re-import of the export planned writing the cut text. The XLSX export
    now stops naming the record and column; the CSV export keeps the whole text."""
    long = "Lorem ipsum dolor sit amet. " * 1500  # 42,000 characters
    crm.seed({"organizations": [{"@id": "/organizations/o1", "title": "Long Text Inc", "customerId": "long-text",
                                 "description": long, "externalSource": "opendata500"}]}, tenant="tenant-a")
    code, out = run(runner, crm, "export", "-t", str(US_TEMPLATE), "--out", str(tmp_path / "x.xlsx"), as_json=False)
    assert code != 0 and "/organizations/o1: column 'description' holds 42,000 characters" in out, out
    assert "export to .csv instead" in out and "Traceback" not in out
    code, exported = run(runner, crm, "export", "-t", str(US_TEMPLATE), "--out", str(tmp_path / "x.csv"))
    assert code == 0 and exported["records"] == 1
    code, planned = run(runner, crm, "plan", str(tmp_path / "x.csv"), "-t", str(US_TEMPLATE),
                        "--out", str(tmp_path / "p.json"))
    assert code == 0 and planned["unchanged"] == 1 and planned["writes"] == 0, planned


def test_a_value_that_reads_as_an_excel_error_once_trimmed_round_trips_in_csv(runner, crm, tmp_path):
    """Review 2026-12-02: a description ` #N/A ` was exported as it is, and the CSV read (which trims
    before it looks for Excel error texts) took it for the error: the row was invalid. The
    export escapes what the read would take for one."""
    crm.seed({"organizations": [{"@id": "/organizations/o1", "title": "Spaced Error Inc", "customerId": "spaced",
                                 "description": " #N/A ", "externalSource": "opendata500"}]}, tenant="tenant-a")
    code, exported = run(runner, crm, "export", "-t", str(US_TEMPLATE), "--out", str(tmp_path / "x.csv"))
    assert code == 0 and exported["records"] == 1
    code, planned = run(runner, crm, "plan", str(tmp_path / "x.csv"), "-t", str(US_TEMPLATE),
                        "--out", str(tmp_path / "p.json"))
    assert code == 0 and planned["unchanged"] == 1 and planned["invalid"] == 0, planned


def test_export_never_overwrites_a_sheet_that_is_no_export(runner, crm, tmp_path):
    """`--out` naming the ops sheet itself (`week48.csv`, a workbook) would replace it with the
    CRM's records: refused before any request, naming the file and its first column; an earlier
    export (first column crm_iri) is overwritten, as next week's export replaces last week's."""
    import shutil

    import openpyxl
    code, _ = run(runner, crm, "import", str(SAMPLE), "-t", str(TEMPLATE), "--report", str(tmp_path / "r"),
                  "--no-reconcile")
    sheet = tmp_path / "week48.csv"
    shutil.copy(SAMPLE, sheet)
    book = tmp_path / "week48.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["Company", "Email"])
    wb.save(book)
    for out, first in ((sheet, "customerID"), (book, "Company")):
        before = out.read_bytes()
        crm.clear_log()
        code, err = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(out))
        assert code == 2 and f"the file exists and is no export (its first column is {first!r}, not 'crm_iri')" \
            in err["message"], err
        assert out.read_bytes() == before and crm.requests == []
    # an earlier export may hold edits not imported yet (a review): moved aside, not replaced
    earlier = tmp_path / "export.xlsx"
    code, exported = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(earlier))
    assert code == 0 and "kept" not in exported
    wb = openpyxl.load_workbook(earlier)
    wb.active["B2"] = "edited by hand"
    wb.save(earlier)
    code, exported = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(earlier))
    kept = tmp_path / exported["kept"]
    assert code == 0 and exported["records"] == 91 and kept.parent == tmp_path
    assert kept.name.startswith("export.20") and kept.suffix == ".xlsx"
    assert openpyxl.load_workbook(kept).active["B2"].value == "edited by hand"
    code, text = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(earlier), as_json=False)
    assert code == 0 and "Kept the file it held before as " in text


def test_an_export_says_which_records_disagree_in_a_column_that_feeds_two_fields(runner, crm, tmp_path):
    """README's name-keyed sheet: `title` and a prefixed `customerId` from one column. A trial
    renamed a title in the CRM alone; the export wrote the new title and said nothing, and its
    untouched re-import was an iri-mismatch conflict. The export counts the records whose other
    field a re-import would change (here: conflict) and those it would fill; a review: not a
    record whose fields agree once cleaned (`upper`)."""
    (tmp_path / "t.yaml").write_text(
        "resource: organizations\nidentifiers: [customerId]\nfields:\n  title: {column: Account Name}\n"
        "  customerId: {column: Account Name, transforms: [{prefix: {value: 'ebikes:'}}]}\n", encoding="utf-8")
    crm.seed({"organizations": [{"title": "Wheelworks Bikes", "customerId": "ebikes:Wheelworks"},
                                {"title": "Spoke", "customerId": "ebikes:Spoke"}, {"title": "Manual Co"}]})
    code, out = run(runner, crm, "export", "-t", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "e.csv"))
    assert code == 0 and out["disagreeing"] == [
        {"column": "Account Name", "field": "title", "other_field": "customerId", "records": 1, "filled": 1}]
    code, text = run(runner, crm, "export", "-t", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "e2.csv"),
                     as_json=False)
    assert ("1 record(s) whose customerId is not what column 'Account Name', which holds their title, gives it: "
            "when the file is imported again their rows are conflicts (customerId is an identifier); make the two "
            "agree in the CRM; 1 record(s) without a customerId: when the file is imported again it is set from "
            "column 'Account Name' (their title)") in " ".join(text.split())
    code, planned = run(runner, crm, "plan", str(tmp_path / "e.csv"), "-t", str(tmp_path / "t.yaml"),
                        "--out", str(tmp_path / "p.json"))
    assert (planned["conflict"], planned["patch"], planned["unchanged"]) == (1, 1, 1)
    (tmp_path / "u.yaml").write_text(
        "resource: organizations\nidentifiers: [customerId]\nfields:\n  title: {column: Account Name}\n"
        "  customerId: {column: Account Name, transforms: [upper]}\n", encoding="utf-8")
    crm.reset()
    crm.seed({"organizations": [{"title": "Wheelworks", "customerId": "WHEELWORKS"}]})
    code, out = run(runner, crm, "export", "-t", str(tmp_path / "u.yaml"), "--out", str(tmp_path / "u.csv"))
    assert code == 0 and "disagreeing" not in out


def test_an_export_over_a_file_open_in_a_spreadsheet_program_says_so(runner, crm, tmp_path):
    """A trial exported over `exp.xlsx` with Excel's `~$exp.xlsx` beside it: the old file was
    kept aside and nothing else said, though saving the open workbook writes over the export."""
    crm.seed({"organizations": [{"title": "A", "customerId": "A1"}]})
    out = tmp_path / "exp.xlsx"
    assert run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(out))[0] == 0
    (tmp_path / "~$exp.xlsx").write_bytes(b"owner")
    code, text = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(out), as_json=False)
    assert code == 0 and ("open: exp.xlsx may be open in a spreadsheet program (~$exp.xlsx is beside it): saving "
                          "it there would write over this export") in " ".join(text.split())


def test_an_export_into_a_missing_folder_makes_it(runner, crm, tmp_path):
    """A review: `--out nodir/deep/x.xlsx` read every page, then failed on `x.xlsx.part`; under
    a file it fails before any request (also `test_an_unwritable_export_path_…`)."""
    crm.seed({"organizations": [{"title": "A", "customerId": "A1"}]})
    code, out = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(tmp_path / "nodir" / "deep" / "x.xlsx"))
    assert code == 0 and out["records"] + out["left_out"] == 1 and (tmp_path / "nodir" / "deep" / "x.xlsx").is_file()
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    crm.clear_log()
    code, out = run(runner, crm, "export", "-t", str(TEMPLATE), "--out", str(tmp_path / "afile" / "deep" / "x.csv"))
    assert code == 74 and "afile" in out["message"] and ".part" not in out["message"] and crm.requests == []
