"""Issue 8, end to end through the CLI against a real sandbox over HTTP: leads-100 imported as
organizations plus notes in one run, then nothing to do; notes export -> re-import plans nothing;
`--mirror-notes` lists its deletes in the plan."""
from __future__ import annotations

import csv
import json

import openpyxl
import pytest

from bulkcrm.cli import cli
from tests.conftest import DATA, REPO, TEST_KEY

LEADS = DATA / "datablist-sample-csv" / "leads-100.csv"   # "unclear" licence: read, never copied
LEADS_TEMPLATE = REPO / "templates" / "leads.yaml"
ORGS = REPO / "samples" / "organizations.csv"
NOTES = REPO / "samples" / "organization_notes.csv"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def run(runner, crm, *args, json_out=True):
    """Invoke the CLI against the `crm` sandbox; return (exit code, last JSON line or output)."""
    extra = ["--base-url", crm.url, "--api-key", TEST_KEY, "--max-rate", "60000"]
    result = runner.invoke(cli, [*args, *extra, *(["--json"] if json_out else [])])
    if not json_out:
        return result.exit_code, result.output
    last = result.output.strip().splitlines()[-1] if result.output.strip() else "{}"
    try:
        return result.exit_code, json.loads(last)
    except ValueError:
        pytest.fail(f"no JSON line in output:\n{result.output}")


@pytest.fixture
def categories(crm):
    crm.seed({"note_categories": [{"@id": f"/note_categories/{t.lower()}", "title": t}
                                  for t in ("Call", "Meeting", "E-mail", "Note")]})
    return crm


def test_leads_100_organizations_and_notes_in_one_run_then_nothing(runner, categories, tmp_path):
    crm = categories
    code, first = run(runner, crm, "import", str(LEADS), "-t", str(LEADS_TEMPLATE),
                      "--report", str(tmp_path / "r1"))
    assert code == 0, first
    assert first["created"] == 200 and first["conflict"] == 0 and first["invalid"] == 0
    assert first["by_resource"]["organizations"]["created"] == 100
    assert first["by_resource"]["notes"]["created"] == 100
    orgs = {o["@id"]: o for o in crm.store.all("organizations", tenant="tenant-a")}
    notes = crm.store.all("notes", tenant="tenant-a")
    assert len(orgs) == 100 and len(notes) == 100      # no two leads share a company or e-mail
    lead_of = {r["Notes"]: r for r in csv.DictReader(LEADS.open(encoding="utf-8", newline=""))}
    for note in notes:                                   # each note on its own lead's organization
        org = orgs[note["@id"].split("/notes/")[0]]
        lead = lead_of[note["description"]]
        assert org["title"] == lead["Company"]
        assert lead["Email 1"].lower() in {e["email"] for e in org["emailAddresses"]}
        assert note["category"] == "/note_categories/note"
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    resources = [r["resource"] for r in report["rows"]]
    assert resources.count("organizations") == 100 and resources.count("organization_notes") == 100
    assert report["summary"]["by_resource"] == first["by_resource"]
    summary = dict(openpyxl.load_workbook(tmp_path / "r1" / "report.xlsx")["Summary"].iter_rows(values_only=True))
    assert (summary["organizations: created"], summary["notes: created"]) == (100, 100)
    crm.clear_log()
    code, second = run(runner, crm, "import", str(LEADS), "-t", str(LEADS_TEMPLATE),
                       "--report", str(tmp_path / "r2"))
    assert code == 0
    assert second["unchanged"] == 200 and second["created"] == 0 and second["patched"] == 0
    text = runner.invoke(cli, ["import", str(LEADS), "-t", str(LEADS_TEMPLATE), "--report", str(tmp_path / "r3"),
                               "--base-url", crm.url, "--api-key", TEST_KEY, "--max-rate", "60000"]).output
    assert "organizations: created 0, patched 0, replaced 0, unchanged 100," in text
    assert "notes: created 0, patched 0, replaced 0, unchanged 100," in text
    assert [r for r in crm.requests if r.method in WRITES] == []
    # the planning requests say what most of them were for: one notes listing per organization
    # (the two runs since `clear_log` listed the same ones)
    listings = [r for r in crm.requests if r.method == "GET" and r.path.endswith("/notes")]
    assert f"; {len(listings) // 2} of them listed the existing notes of 100 organizations, one listing each)" \
        in text, text


def test_notes_export_then_reimport_is_zero_operations(runner, categories, tmp_path):
    crm = categories
    assert run(runner, crm, "import", str(ORGS), "-t", str(REPO / "templates" / "organizations.yaml"),
               "--report", str(tmp_path / "o"))[0] == 0
    template = str(REPO / "templates" / "organization_notes.yaml")
    code, first = run(runner, crm, "import", str(NOTES), "-t", template, "--report", str(tmp_path / "n1"))
    assert code == 0 and first["created"] == 153
    out = tmp_path / "notes.csv"
    code, exported = run(runner, crm, "export", "--template", template, "--out", str(out))
    assert code == 0 and exported["records"] == 153
    assert "phones_left_out" not in exported  # a notes template maps no phone numbers
    code, text = run(runner, crm, "plan", str(out), "-t", template, "--out", str(tmp_path / "p.json"),
                     json_out=False)
    assert code == 0, text
    assert "Plan: notes: 0 to create, 0 to patch, 0 to replace, 153 unchanged" in text
    assert json.loads((tmp_path / "p.json").read_text())["operations"] == []
    # edit one exported note's text and another's date (both in the content key): each row
    # names its note by crm_iri, so both are patched, none added beside the old one
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    rows[0]["note"] += " Called back on Monday."
    rows[1]["note_date"] = "2025-02-03T10:00:00Z"
    edited = tmp_path / "notes-edited.csv"
    with edited.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    code, applied = run(runner, crm, "import", str(edited), "-t", template, "--report", str(tmp_path / "n2"))
    assert code == 0 and applied["patched"] == 2 and applied["created"] == 0
    notes = {n["@id"]: n for n in crm.store.all("notes", tenant="tenant-a")}
    assert len(notes) == 153
    assert notes[rows[0]["crm_iri"]]["description"].endswith("Called back on Monday.")
    assert notes[rows[1]["crm_iri"]]["createdAt"].startswith("2025-02-03T10:00:00")


def test_mirror_notes_flag_lists_every_delete(runner, categories, tmp_path):
    crm = categories
    crm.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "ALFKI"}],
              "notes": [{"@id": "/organizations/o1/notes/n1", "description": "Old note.",
                         "category": "/note_categories/call"}]})
    sheet = tmp_path / "n.csv"
    sheet.write_text("customerID,note_date,title,note,category,flagged\n"
                     "ALFKI,2024-01-01,,New note.,Call,no\n", encoding="utf-8")
    template = str(REPO / "templates" / "organization_notes.yaml")
    code, text = run(runner, crm, "plan", str(sheet), "-t", template, "--out", str(tmp_path / "p.json"),
                     "--mirror-notes", json_out=False)
    assert code == 0, text
    assert "1 to delete." in text and "- note delete /organizations/o1/notes/n1" in text
    code, without = run(runner, crm, "plan", str(sheet), "-t", template, "--out", str(tmp_path / "q.json"))
    assert without["writes"] == 1 and "delete" not in without
    code, done = run(runner, crm, "apply", str(tmp_path / "p.json"), "--report", str(tmp_path / "r"))
    assert code == 0 and done["created"] == 1 and done["deleted"] == 1
    assert [n["description"] for n in crm.store.all("notes", tenant="tenant-a")] == ["New note."]


def test_a_row_naming_another_organizations_note_is_a_conflict_and_never_deleted(runner, categories, tmp_path):
    """A notes export row moved to another customer keeps its note's IRI: the row is a
    conflict (a note cannot move), and mirror mode does not delete the note it names."""
    crm = categories
    crm.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "ALFKI"},
                                {"@id": "/organizations/o2", "title": "B", "customerId": "AROUT"}],
              "notes": [{"@id": "/organizations/o1/notes/n1", "description": "Old note.",
                         "createdAt": "2024-01-01T00:00:00Z", "category": "/note_categories/call"},
                        {"@id": "/organizations/o1/notes/n2", "description": "Other note.",
                         "createdAt": "2024-01-02T00:00:00Z", "category": "/note_categories/call"}]})
    sheet = tmp_path / "n.csv"
    sheet.write_text("crm_iri,customerID,note_date,title,note,category,flagged\n"
                     "/organizations/o1/notes/n1,AROUT,2024-01-01,,Old note. Edited.,Call,no\n"
                     "/organizations/o1/notes/n2,ALFKI,2024-01-02,,Other note.,Call,no\n", encoding="utf-8")
    template = str(REPO / "templates" / "organization_notes.yaml")
    code, text = run(runner, crm, "plan", str(sheet), "-t", template, "--out", str(tmp_path / "p.json"),
                     "--mirror-notes", json_out=False)
    assert code == 1, text
    assert ("the row names note /organizations/o1/notes/n1 of /organizations/o1, but its organization "
            "columns point at /organizations/o2; a note cannot move") in text
    saved = json.loads((tmp_path / "p.json").read_text())
    (issue,) = [i for i in saved["issues"] if i["type"] == "moved-note"]
    assert issue["message"].startswith("n.csv:2:crm_iri: the row names note /organizations/o1/notes/n1")
    assert [o for o in saved["operations"]] == []  # no create under AROUT, no delete of n1
    assert {r["row_number"]: r["op"] for r in saved["rows"]} == {2: "conflict", 3: "unchanged"}


def test_exporting_with_an_organizations_template_says_its_notes_are_not_exported(runner, categories, tmp_path):
    out = tmp_path / "leads.csv"
    result = runner.invoke(cli, ["export", "-t", str(LEADS_TEMPLATE), "--out", str(out), "--base-url",
                                 categories.url, "--api-key", TEST_KEY])
    assert result.exit_code == 0, result.output
    assert "notes section is not exported" in result.output and "organization_notes" in result.output


def test_a_rows_organization_and_note_each_show_only_their_own_errors(runner, categories, tmp_path):
    """One sheet row holds an organization and its note: an error of the note does not mark the
    organization (Rows sheet, report.csv), and the with-status copy gives both outcomes."""
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\nidentifiers: [emailAddresses]\nfields:\n"
                        "  title: {column: Company}\n  emailAddresses: {column: Email}\n"
                        "notes:\n  fields:\n    description: {column: Notes}\n"
                        "    createdAt: {column: NoteDate}\n    category: {value: Note, lookup: true}\n")
    sheet = tmp_path / "s.csv"
    sheet.write_text("Company,Email,Notes,NoteDate\nDuo BV,bad-mail,Hi,bad date\n", encoding="utf-8")
    code, text = run(runner, categories, "plan", str(sheet), "-t", str(template), "--out",
                     str(tmp_path / "p.json"), json_out=False)
    lines = text.splitlines()  # each invalid line of the plan is followed by its own error
    org, note = lines.index('  ✗ row 2 invalid "Duo BV"'), lines.index('  ✗ note row 2 invalid "Hi"')
    assert "s.csv:2:Email:" in lines[org + 1] and "s.csv:2:NoteDate:" in lines[note + 1]
    sheet.write_text("Company,Email,Notes,NoteDate\n"
                     "Acme BV,info@acme.example,Called them,2024-01-05\n"
                     "Bolt BV,info@bolt.example,Sent offer,not a date\n"
                     "Crux BV,not-an-email,Met at fair,2024-02-01\n", encoding="utf-8")
    code, planned = run(runner, categories, "plan", str(sheet), "-t", str(template), "--out",
                        str(tmp_path / "p2.json"))
    assert code == 1 and planned["by_resource"]["notes"] == {**planned["by_resource"]["notes"],
                                                             "create": 1, "invalid": 1, "skip": 1}
    code, out = run(runner, categories, "import", str(sheet), "-t", str(template),
                    "--report", str(tmp_path / "r"))
    assert code == 1 and out["by_resource"]["organizations"]["created"] == 2
    assert list(out["by_resource"]) == ["organizations", "notes"]  # in the order they are written
    with (tmp_path / "r" / "report.csv").open(encoding="utf-8", newline="") as f:
        rows = {(int(r["row_number"]), r["resource"]): r for r in csv.DictReader(f)}
    assert rows[3, "organizations"]["outcome"] == "created" and rows[3, "organizations"]["errors"] == ""
    assert rows[3, "organization_notes"]["outcome"] == "invalid"
    assert "NoteDate" in rows[3, "organization_notes"]["errors"]
    assert rows[3, "organization_notes"]["columns"] == "NoteDate"
    assert "Email" in rows[4, "organizations"]["errors"] and rows[4, "organization_notes"]["errors"] == ""
    assert rows[4, "organization_notes"]["note"] == "its organization (row 4) is not imported: invalid"
    with (tmp_path / "r" / "s.with-status.csv").open(encoding="utf-8", newline="") as f:
        status = [r["bulkcrm_status"] for r in csv.DictReader(f)]
    assert status == ["created; note created", "created; note invalid", "invalid; note skipped"]
    wb = openpyxl.load_workbook(tmp_path / "r" / "report.xlsx")
    assert next(wb["Summary"].iter_rows(min_row=2, values_only=True))[0] == "organizations: created"
    lines = {(r[0], r[11]): i for i, r in enumerate(wb["Rows"].iter_rows(min_row=2, values_only=True), 2)}
    errors = wb["Issues"]
    found = {(c[2].value, c[3].value): c[-1].hyperlink.location for c in errors.iter_rows(min_row=2)}
    assert found == {(4, "organizations"): f"'Rows'!A{lines[4, 'organizations']}",
                     (3, "organization_notes"): f"'Rows'!A{lines[3, 'organization_notes']}"}


def test_a_cell_only_the_organization_reads_warns_the_organization_once(runner, categories, tmp_path):
    """A phone stored as a number warns its organization; the row's note, which does not read
    that column, does not repeat it (a trial's bulkcrm_note said it twice, once as the note's);
    nor does a hidden row, which the organization's line says."""
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\ndefault_region: US\nidentifiers: [emailAddresses]\nfields:\n"
                        "  title: {column: Company}\n  emailAddresses: {column: Email}\n"
                        "  phoneNumbers: [{column: Phone}]\n"
                        "notes:\n  fields:\n    description: {column: Notes}\n    category: {value: Note, lookup: true}\n")
    book = openpyxl.Workbook()
    book.active.append(["Company", "Email", "Phone", "Notes"])
    book.active.append(["Acme", "a@acme.example", 2125550123, "Called"])
    book.active.row_dimensions[2].hidden = True
    book.save(tmp_path / "w.xlsx")
    code, out = run(runner, categories, "import", str(tmp_path / "w.xlsx"), "-t", str(template),
                    "--report", str(tmp_path / "r"))
    assert code == 0 and out["by_resource"]["notes"]["created"] == 1
    with (tmp_path / "r" / "report.csv").open(encoding="utf-8", newline="") as f:
        rows = {r["resource"]: r["warnings"] for r in csv.DictReader(f)}
    assert "stored as a number" in rows["organizations"] and "stored as a number" not in rows["organization_notes"]
    assert "hidden in Excel" in rows["organizations"] and "hidden in Excel" not in rows["organization_notes"]
    note = next(openpyxl.load_workbook(tmp_path / "r" / "w.with-status.xlsx").active.iter_rows(
        min_row=2, values_only=True))[-1]
    assert note.count("stored as a number") == 1 and note.count("hidden in Excel") == 1 and "note:" not in note


def _two_sheets(path, orgs: list[list], notes: list[list]) -> None:
    """Save a workbook of sheets Orgs and Notes holding these lines."""
    book = openpyxl.Workbook()
    book.active.title = "Orgs"
    for r in orgs:
        book.active.append(r)
    sheet = book.create_sheet("Notes")
    for r in notes:
        sheet.append(r)
    book.save(path)


def test_a_notes_sheet_under_a_title_block_is_found_by_the_notes_columns(runner, categories, tmp_path):
    """Review 2026-12-02: both sheets with a title over a sparse table: the organizations' header
    was found by the template's columns, the notes sheet's was not (and the error told of a
    --header-row that does not reach it). Both are found; the plan records the notes sheet's
    header row, and `apply`'s with-status copy puts each note's status on its own row."""
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\nidentifiers: [emailAddresses]\nfields:\n"
                        "  title: {column: Company}\n  emailAddresses: {column: Email}\n"
                        "notes:\n  sheet: Notes\n  organization: {identifiers: {emailAddresses: Email}}\n"
                        "  fields:\n    description: {column: Notes}\n    category: {value: Note, lookup: true}\n")
    title = ["Weekly export", "Region North", "Q2"]
    _two_sheets(tmp_path / "w.xlsx", [title, [], ["Company", "Email"], ["Echo BV", "info@echo.example"]],
                [title, [], ["Email", "Notes"], ["info@echo.example", "n1"], ["info@echo.example", "n2"]])
    code, planned = run(runner, categories, "plan", str(tmp_path / "w.xlsx"), "-t", str(template),
                        "--out", str(tmp_path / "p.json"))
    assert code == 0 and planned["by_resource"]["notes"]["create"] == 2, planned
    saved = json.loads((tmp_path / "p.json").read_text())
    assert (saved["header_row"], saved["notes_header_row"]) == (3, 3)
    code, out = run(runner, categories, "apply", str(tmp_path / "p.json"), "--report", str(tmp_path / "r"))
    assert code == 0 and out["by_resource"]["notes"]["created"] == 2, out
    copy = openpyxl.load_workbook(tmp_path / "r" / "w.with-status.xlsx")
    status = [r[-2] for r in copy["Notes"].iter_rows(min_row=4, values_only=True)]
    assert status == ["created", "created"], list(copy["Notes"].iter_rows(values_only=True))


def test_a_workbooks_notes_sheet_is_in_the_with_status_copy_which_imports_again(runner, categories, tmp_path):
    """Organizations and notes on two sheets of one workbook: the with-status copy holds both
    sheets, each row with its own status, so fixing the flagged rows there and importing the
    copy writes only those rows."""
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\nidentifiers: [emailAddresses]\nfields:\n"
                        "  title: {column: Company}\n  emailAddresses: {column: Email}\n"
                        "notes:\n  sheet: Notes\n  organization: {identifiers: {emailAddresses: Email}}\n"
                        "  fields:\n    description: {column: Notes}\n    createdAt: {column: NoteDate}\n"
                        "    category: {value: Note, lookup: true}\n")
    _two_sheets(tmp_path / "w.xlsx", [["Company", "Email"], ["Echo BV", "info@echo.example"], ["Gale BV", "bad"]],
                [["Email", "Notes", "NoteDate"], ["info@echo.example", "n1", "2024-01-01"],
                 ["info@echo.example", "n2", "bad date"], ["info@gale.example", "n3", "2024-01-01"]])
    code, out = run(runner, categories, "import", str(tmp_path / "w.xlsx"), "-t", str(template),
                    "--report", str(tmp_path / "r1"))
    assert code == 1 and out["by_resource"]["notes"]["created"] == 1
    copy = openpyxl.load_workbook(tmp_path / "r1" / "w.with-status.xlsx")
    assert copy.sheetnames == ["Orgs", "Notes"]
    assert not (tmp_path / "r1" / "w.with-status.csv").exists()  # one sheet alone would not import
    report = list(csv.DictReader((tmp_path / "r1" / "report.csv").open(encoding="utf-8", newline="")))
    assert {(r["resource"], r["sheet"]) for r in report} == {("organizations", "Orgs"), ("organization_notes", "Notes")}
    status = {ws.title: [r[-2] for r in ws.iter_rows(min_row=2, values_only=True)] for ws in copy}
    assert status == {"Orgs": ["created", "invalid"], "Notes": ["created", "invalid", "invalid"]}
    fix = {ws.title: [r[-1] for r in ws.iter_rows(min_row=2, values_only=True)] for ws in copy}
    assert fix["Orgs"][0] is None and "Email (Orgs!B3)" in fix["Orgs"][1]  # bulkcrm_note: what to fix
    assert "NoteDate (Notes!C3)" in fix["Notes"][1] and "no organization matches" in fix["Notes"][2]
    assert copy["Notes"]["D2"].value.startswith("/organizations/")  # the note's IRI
    copy["Orgs"]["B3"], copy["Notes"]["C3"] = "info@gale.example", "2024-01-02"  # the fixes
    copy.save(tmp_path / "fixed.xlsx")
    code, out = run(runner, categories, "import", str(tmp_path / "fixed.xlsx"), "-t", str(template),
                    "--report", str(tmp_path / "r2"))
    assert code == 0, out
    assert out["by_resource"]["organizations"] == {**out["by_resource"]["organizations"], "created": 1, "unchanged": 1}
    assert out["by_resource"]["notes"] == {**out["by_resource"]["notes"], "created": 2, "unchanged": 1}
    assert len(categories.store.all("notes", tenant="tenant-a")) == 3
    # the export writes both sheets, and imports again through the same template with no change
    code, exported = run(runner, categories, "export", "-t", str(template), "--out", str(tmp_path / "x.xlsx"))
    assert code == 0 and (exported["records"], exported["notes"]) == (2, 3)
    assert openpyxl.load_workbook(tmp_path / "x.xlsx", read_only=True).sheetnames == ["organizations", "Notes"]
    code, planned = run(runner, categories, "plan", str(tmp_path / "x.xlsx"), "-t", str(template), "--out",
                        str(tmp_path / "x.json"))
    assert code == 0 and planned["writes"] == 0
    assert (planned["by_resource"]["organizations"]["unchanged"], planned["by_resource"]["notes"]["unchanged"]) == (2, 3)
    code, text = run(runner, categories, "export", "-t", str(template), "--out", str(tmp_path / "x.csv"),
                     json_out=False)
    assert code == 0 and "The notes (sheet Notes) are not exported to a .csv; export to .xlsx" in text
    code, out = run(runner, categories, "export", "-t", str(template), "--out", str(tmp_path / "y.csv"))
    assert code == 0 and out["notes_not_exported"] is True


def test_a_note_edited_in_an_export_of_both_sheets_is_patched(runner, categories, tmp_path):
    """A notes sheet without `organization:` finds organizations by the organizations' own
    columns, `crm_iri` among them. Its export writes each note's IRI there (it names the
    organization too), so a note edited in the exported workbook is patched, not added again."""
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\nidentifiers: [emailAddresses]\nfields:\n"
                        "  title: {column: Company}\n  emailAddresses: {column: Email}\n"
                        "notes:\n  sheet: Notes\n"
                        "  fields:\n    description: {column: Notes}\n    createdAt: {column: NoteDate}\n"
                        "    category: {value: Note, lookup: true}\n")
    _two_sheets(tmp_path / "w.xlsx",
                [["Company", "Email"], ["Echo BV", "info@echo.example"], ["Gale BV", "info@gale.example"]],
                [["Email", "Notes", "NoteDate"], ["info@echo.example", "n1", "2024-01-01"],
                 ["info@gale.example", "n2", "2024-01-02"], ["info@echo.example", "n3", "2024-01-03"]])
    code, out = run(runner, categories, "import", str(tmp_path / "w.xlsx"), "-t", str(template),
                    "--report", str(tmp_path / "r1"))
    assert code == 0 and out["by_resource"]["notes"]["created"] == 3
    code, _ = run(runner, categories, "export", "-t", str(template), "--out", str(tmp_path / "x.xlsx"))
    assert code == 0
    book = openpyxl.load_workbook(tmp_path / "x.xlsx")
    sheet = book["Notes"]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, (c.value for c in r))) for r in sheet.iter_rows(min_row=2)]
    notes_by_text = {n["description"]: n["@id"] for n in categories.store.all("notes", tenant="tenant-a")}
    assert sorted(r["crm_iri"] for r in rows) == sorted(notes_by_text.values())  # each note's own IRI
    at = next(i for i, r in enumerate(rows, 2) if r["Notes"] == "n1")
    sheet.cell(at, header.index("Notes") + 1).value = "n1 (done)"
    book.save(tmp_path / "edited.xlsx")
    code, out = run(runner, categories, "import", str(tmp_path / "edited.xlsx"), "-t", str(template),
                    "--report", str(tmp_path / "r2"))
    assert code == 0, out
    assert out["by_resource"]["notes"] == {**out["by_resource"]["notes"], "patched": 1, "unchanged": 2}
    after = {n["@id"]: n["description"] for n in categories.store.all("notes", tenant="tenant-a")}
    assert after == {notes_by_text["n1"]: "n1 (done)", notes_by_text["n2"]: "n2", notes_by_text["n3"]: "n3"}
    # a note cannot move: its row's organization columns naming another organization, or
    # another organization's IRI pasted into crm_iri, make the row a conflict (mirror or not)
    gale = next(o["@id"] for o in categories.store.all("organizations", tenant="tenant-a")
                if o["title"] == "Gale BV")
    # (n3, another row of Echo's, shares its e-mail: the row's own conflict is the one shown), and
    # a note IRI that names no note (deleted since, or mistyped) is not-found; mirror deletes none
    mistyped = notes_by_text["n1"][:-1] + ("0" if notes_by_text["n1"][-1] != "0" else "1")
    for column, value, kind in (("Email", "info@gale.example", "moved-note"), ("crm_iri", gale, "iri-mismatch"),
                                ("crm_iri", mistyped, "not-found")):
        book = openpyxl.load_workbook(tmp_path / "x.xlsx")
        sheet = book["Notes"]
        sheet.cell(at, header.index(column) + 1).value = value
        book.save(tmp_path / "moved.xlsx")
        code, out = run(runner, categories, "plan", str(tmp_path / "moved.xlsx"), "-t", str(template),
                        "--mirror-notes", "--out", str(tmp_path / "m.json"))
        assert code == 1 and out["by_resource"]["notes"]["conflict"] == 1, (column, out)
        assert out["writes"] == 0 and out["by_resource"]["notes"].get("delete", 0) == 0, (column, out)
        issues = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))["issues"]
        assert [i["type"] for i in issues if i["row_number"] == at and i["severity"] == "error"] == [kind]


def test_a_note_edited_in_the_weekly_sheet_says_the_old_note_stays(runner, categories, tmp_path):
    """Without note IRIs a note is matched on its content key: an edited text is a new note, and
    the plan says the old one stays (and how to delete it) instead of leaving it unsaid."""
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\nidentifiers: [emailAddresses]\nfields:\n"
                        "  title: {column: Company}\n  emailAddresses: {column: Email}\n"
                        "notes:\n  fields:\n    description: {column: Notes}\n"
                        "    category: {value: Note, lookup: true}\n")
    sheet = tmp_path / "s.csv"
    sheet.write_text("Company,Email,Notes\nAcme BV,info@acme.example,Call in December\n"
                     "Bolt BV,info@bolt.example,Sent offer\n", encoding="utf-8")
    code, _ = run(runner, categories, "import", str(sheet), "-t", str(template), "--report", str(tmp_path / "r"))
    assert code == 0
    code, text = run(runner, categories, "plan", str(sheet), "-t", str(template), "--out",
                     str(tmp_path / "same.json"), json_out=False)
    assert code == 0 and "mirror: off" not in text  # nothing edited: nothing to say
    sheet.write_text(sheet.read_text(encoding="utf-8").replace("December", "January"), encoding="utf-8")
    code, text = run(runner, categories, "plan", str(sheet), "-t", str(template), "--out",
                     str(tmp_path / "p.json"), json_out=False)
    assert code == 0 and '+ note row 2 create "Call in January"' in text
    assert "note: mirror: off; 1 note(s) of the organizations this sheet adds notes to match no row" in text
    assert "--mirror-notes deletes them" in text
    code, out = run(runner, categories, "plan", str(sheet), "-t", str(template), "--out", str(tmp_path / "q.json"))
    assert any(r.startswith("mirror: off; 1 note(s)") for r in out["remarks"])  # a scheduled job sees it too


def test_notes_export_writes_dates_in_the_templates_time_zone_and_reimports_unchanged(runner, categories,
                                                                                      tmp_path):
    """A template reading dates in Europe/Amsterdam exports them there too (with the offset),
    so the sheet shows the day the user typed, and the export imports again with no change."""
    crm = categories
    assert run(runner, crm, "import", str(ORGS), "-t", str(REPO / "templates" / "organizations.yaml"),
               "--report", str(tmp_path / "o"))[0] == 0
    text = (REPO / "templates" / "organization_notes.yaml").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.strip().startswith("column: note_date"))
    template = tmp_path / "notes.yaml"
    template.write_text(text.replace(line, "    column: note_date\n    transforms: "
                                           "[{datetime: {time_zone: Europe/Amsterdam}}]"), encoding="utf-8")
    assert run(runner, crm, "import", str(NOTES), "-t", str(template), "--report", str(tmp_path / "n"))[0] == 0
    stored = {n["@id"]: n["createdAt"] for n in crm.store.all("notes", tenant="tenant-a")}
    out = tmp_path / "notes.csv"
    assert run(runner, crm, "export", "--template", str(template), "--out", str(out))[0] == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    summer = next(r for r in rows if stored[r["crm_iri"]].startswith("2024-07-05T13:30"))
    assert summer["note_date"] == "2024-07-05T15:30:00+02:00"  # 13:30 UTC is 15:30 in Amsterdam
    assert all(r["note_date"].endswith(("+01:00", "+02:00")) for r in rows if r["note_date"])
    code, text = run(runner, crm, "plan", str(out), "-t", str(template), "--out", str(tmp_path / "p.json"),
                     json_out=False)
    assert code == 0 and "153 unchanged" in text, text
    book = tmp_path / "notes.xlsx"  # a workbook's sheet is named for what it holds
    assert run(runner, crm, "export", "--template", str(template), "--out", str(book))[0] == 0
    assert openpyxl.load_workbook(book, read_only=True).sheetnames == ["notes"]


def test_exported_notes_of_organizations_without_the_reference_import_unchanged(runner, categories, tmp_path):
    """organization_notes.yaml finds a note's organization by customerID; the leads have none.
    An exported row names its note by crm_iri (`/organizations/{id}/notes/{id}`), and so its
    organization: the export re-imports with no change, and an edited text patches that note."""
    crm = categories
    assert run(runner, crm, "import", str(LEADS), "-t", str(LEADS_TEMPLATE), "--report", str(tmp_path / "r"))[0] == 0
    template = str(REPO / "templates" / "organization_notes.yaml")
    out = tmp_path / "notes.csv"
    code, exported = run(runner, crm, "export", "--template", template, "--out", str(out))
    assert code == 0 and exported["records"] == 100
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert {r["customerID"] for r in rows} == {""}
    code, planned = run(runner, crm, "plan", str(out), "-t", template, "--out", str(tmp_path / "p.json"))
    assert code == 0 and planned["unchanged"] == 100 and planned["invalid"] == 0, planned
    rows[0]["note"] += " Called back."
    rows[1]["crm_iri"] = ""          # no reference left at all: still an error naming the cells
    edited = tmp_path / "edited.csv"
    with edited.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    crm.clear_log()
    code, applied = run(runner, crm, "import", str(edited), "-t", template, "--report", str(tmp_path / "n"))
    assert code == 1 and applied["patched"] == 1 and applied["invalid"] == 1 and applied["created"] == 0
    assert [r.method for r in crm.requests if r.method in WRITES] == ["PATCH"]
    note = next(n for n in crm.store.all("notes", tenant="tenant-a") if n["@id"] == rows[0]["crm_iri"])
    assert note["description"].endswith(" Called back.")
    report = json.loads((tmp_path / "n" / "report.json").read_text())
    (bad,) = [i for i in report["issues"] if i["severity"] == "error"]
    assert bad["row_number"] == 3 and "no organization reference; fill in customerID" in bad["message"]


def _one_organization() -> openpyxl.Workbook:
    """A workbook whose sheet Orgs holds one organization (title, email)."""
    wb = openpyxl.Workbook()
    wb.active.title = "Orgs"
    wb.active.append(["title", "email"])
    wb.active.append(["A", "a@x.example"])
    return wb


def _notes_sheet_template(tmp_path) -> str:
    """An organizations template whose notes are on sheet Notes (no `organization:` block)."""
    path = tmp_path / "t.yaml"
    path.write_text(
        "resource: organizations\nidentifiers: [emailAddresses]\nfields: {title: title, emailAddresses: email}\n"
        "notes:\n  sheet: Notes\n  fields: {description: note, category: {value: /note_categories/note}}\n",
        encoding="utf-8")
    return str(path)


def test_a_missing_notes_sheet_says_the_template_asked_for_it(runner, categories, tmp_path):
    """The workbook lacks the sheet the template's `notes: {sheet: Notes}` names: the error says
    where the name comes from (validate and plan alike), before any write."""
    wb = _one_organization()
    wb.save(tmp_path / "orgs.xlsx")
    book, template = str(tmp_path / "orgs.xlsx"), _notes_sheet_template(tmp_path)
    checked = runner.invoke(cli, ["validate", book, "-t", template])
    planned = run(runner, categories, "plan", book, "-t", template, "--out", str(tmp_path / "p.json"),
                  json_out=False)
    for code, out in ((checked.exit_code, checked.output), planned):
        assert code == 2 and "no sheet named 'Notes'" in out
        assert "(the notes sheet of template" in out and "notes: {sheet: Notes}; for a run" in out


def test_an_empty_notes_sheet_means_no_notes_this_run(runner, categories, tmp_path):
    """A week without notes: the workbook keeps the template's notes sheet, left blank. That
    plans no note (and deletes none, also with --mirror-notes), says so, and imports the
    organizations; a missing sheet stays an error, which says how to send a week without notes."""
    wb = _one_organization()
    wb.save(tmp_path / "missing.xlsx")
    notes = wb.create_sheet("Notes")
    wb.save(tmp_path / "orgs.xlsx")
    notes.append(["email", "note"])
    notes.append(["a@x.example", "last week's note"])
    wb.save(tmp_path / "last_week.xlsx")
    book, template = str(tmp_path / "orgs.xlsx"), _notes_sheet_template(tmp_path)
    code, out = run(runner, categories, "import", str(tmp_path / "last_week.xlsx"), "-t", template)
    assert code == 0 and out["created"] == 2, out
    checked = runner.invoke(cli, ["validate", book, "-t", template])
    assert checked.exit_code == 0 and "notes: sheet 'Notes' is empty: no notes" in checked.output, checked.output
    code, out = run(runner, categories, "plan", book, "-t", template, "--mirror-notes",
                    "--out", str(tmp_path / "e.json"))
    assert code == 0 and "sheet 'Notes' is empty: no notes this run" in out["remarks"], out
    code, out = run(runner, categories, "import", book, "-t", template, "--mirror-notes",
                    "--report", str(tmp_path / "r"))
    assert code == 0 and out["unchanged"] == 1 and out.get("deleted", 0) == 0, out
    assert [n["description"] for n in categories.store.all("notes", tenant="tenant-a")] == ["last week's note"]
    # the with-status copy keeps the blank notes sheet, so it imports again as it is
    copy = tmp_path / "r" / "orgs.with-status.xlsx"
    assert openpyxl.load_workbook(copy).sheetnames == ["Orgs", "Notes"]
    code, out = run(runner, categories, "plan", str(copy), "-t", template, "--out", str(tmp_path / "c.json"))
    assert code == 0 and out["writes"] == 0, out
    notes.delete_rows(2)  # a notes sheet with its header only: the same
    wb.save(tmp_path / "header_only.xlsx")
    code, out = run(runner, categories, "import", str(tmp_path / "header_only.xlsx"), "-t", template,
                    "--report", str(tmp_path / "h"))
    copy = tmp_path / "h" / "header_only.with-status.xlsx"
    assert code == 0 and openpyxl.load_workbook(copy).sheetnames == ["Orgs", "Notes"], out
    code, out = run(runner, categories, "plan", str(copy), "-t", template, "--out", str(tmp_path / "h.json"))
    assert code == 0 and out["writes"] == 0, out
    code, text = run(runner, categories, "plan", str(tmp_path / "missing.xlsx"), "-t", template,
                     "--out", str(tmp_path / "p.json"), json_out=False)
    assert code == 2 and "no sheet named 'Notes'" in text
    assert "a run without notes: keep the sheet, left blank" in text


def test_a_notes_sheets_missing_column_names_that_sheet(runner, categories, tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "Orgs"
    wb.active.append(["title", "email"])
    wb.active.append(["A", "a@x.example"])
    notes = wb.create_sheet("Notes")
    notes.append(["email", "Notes"])  # the template reads `note`
    notes.append(["a@x.example", "hello"])
    wb.save(tmp_path / "orgs.xlsx")
    (tmp_path / "t.yaml").write_text(
        "resource: organizations\nidentifiers: [emailAddresses]\nfields: {title: title, emailAddresses: email}\n"
        "notes:\n  sheet: Notes\n  organization: {identifiers: {emailAddresses: email}}\n"
        "  fields: {description: note, category: {value: /note_categories/note}}\n", encoding="utf-8")
    book, template = str(tmp_path / "orgs.xlsx"), str(tmp_path / "t.yaml")
    checked = runner.invoke(cli, ["validate", book, "-t", template])
    planned = run(runner, categories, "plan", book, "-t", template, "--out", str(tmp_path / "p.json"),
                  json_out=False)
    for code, out in ((checked.exit_code, checked.output), planned):
        assert code == 2 and "orgs.xlsx!Notes:1: column(s) 'note' (did you mean 'Notes'?) required by" in out, out


def test_reconciling_says_what_it_does_for_notes(runner, categories, tmp_path):
    """Notes are reconciled against the server's answers to their writes, organizations by
    re-reading them: the line says which (it said "re-reading the written records" for a
    notes-only run that re-read nothing, a trial)."""
    common = ["--base-url", categories.url, "--api-key", TEST_KEY, "--max-rate", "60000"]
    orgs = runner.invoke(cli, ["import", str(ORGS), "-t", str(REPO / "templates" / "organizations.yaml"),
                               "--report", str(tmp_path / "r1"), *common])
    assert orgs.exit_code == 0 and "Reconciling: re-reading the written organizations (" in orgs.output
    notes = runner.invoke(cli, ["import", str(NOTES), "-t", str(REPO / "templates" / "organization_notes.yaml"),
                                "--report", str(tmp_path / "r2"), *common])
    assert notes.exit_code == 0, notes.output
    assert ("Reconciling: comparing the written notes with the server's answers to their writes ("
            in notes.output) and "re-reading" not in notes.output


def test_a_notes_sheet_reads_the_organizations_columns_with_their_transforms(runner, categories, tmp_path):
    """A notes sheet without `organization:` finds organizations by the organizations' own
    columns under the same names; the customerId `1` that the template prefixes `SUP-` on the
    organizations sheet is `1` on the notes sheet too (it was read raw: no organization matched
    `1`, every note was invalid), and export writes it as `1` on both sheets."""
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\nidentifiers: [customerId]\nfields:\n"
                        "  title: {column: Company}\n"
                        "  customerId: {column: supplierID, transforms: [{prefix: {value: SUP-}}]}\n"
                        "notes:\n  sheet: Notes\n"
                        "  fields:\n    description: {column: Notes}\n    category: {value: Note, lookup: true}\n")
    _two_sheets(tmp_path / "w.xlsx", [["Company", "supplierID"], ["Echo BV", "1"], ["Gale BV", "2"]],
                [["supplierID", "Notes"], ["1", "n1"], ["2", "n2"]])
    code, out = run(runner, categories, "import", str(tmp_path / "w.xlsx"), "-t", str(template),
                    "--report", str(tmp_path / "r1"))
    assert code == 0, out
    assert out["by_resource"]["notes"]["created"] == 2
    owner = {o["@id"]: o["customerId"] for o in categories.store.all("organizations", tenant="tenant-a")}
    assert sorted((owner[n["@id"].rsplit("/notes/", 1)[0]], n["description"])
                  for n in categories.store.all("notes", tenant="tenant-a")) == [("SUP-1", "n1"), ("SUP-2", "n2")]
    code, _ = run(runner, categories, "export", "-t", str(template), "--out", str(tmp_path / "x.xlsx"))
    book = openpyxl.load_workbook(tmp_path / "x.xlsx")
    written = {ws.title: sorted(str(c.value) for c in ws[_column(ws, "supplierID")][1:]) for ws in book}
    assert code == 0 and written == {book.sheetnames[0]: ["1", "2"], "Notes": ["1", "2"]}


def _column(ws, name: str) -> str:
    """The letters of the column headed `name` on the first row."""
    return next(c.column_letter for c in ws[1] if c.value == name)


def test_reimporting_a_workbook_whose_date_cells_hide_a_time_duplicates_no_note(runner, categories, tmp_path):
    """Upgrade path: an earlier bulkcrm read a 09:30 cell under dd/mm/yyyy as its date alone
    (the CSV below imports what it read: midnight). Importing the workbook now reads 09:30:
    the row still is that note, left as stored, and the plan says so; another day is a new note."""
    import datetime as dt
    crm = categories
    crm.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "A1"}]})
    template = str(REPO / "templates" / "organization_notes.yaml")
    header = ["customerID", "note_date", "title", "note", "category", "flagged"]
    old = tmp_path / "as_read_before.csv"
    old.write_text(",".join(header) + "\nA1,2024-03-05,,Called about the invoice.,Call,\n", encoding="utf-8")
    assert run(runner, crm, "import", str(old), "-t", template, "--report", str(tmp_path / "r0"))[0] == 0
    (note,) = crm.store.all("notes", tenant="tenant-a")
    assert note["createdAt"] == "2024-03-05T00:00:00+00:00"
    book = tmp_path / "notes.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    ws.append(["A1", dt.datetime(2024, 3, 5, 9, 30), None, "Called about the invoice.", "Call", None])
    ws["B2"].number_format = "dd/mm/yyyy"
    wb.save(book)
    code, text = run(runner, crm, "plan", str(book), "-t", template, "--out", str(tmp_path / "p.json"),
                     json_out=False)
    assert code == 0 and "notes: 0 to create, 0 to patch, 0 to replace, 1 unchanged," in text, text
    assert ("note: midnight: 1 row matched a note dated midnight of the row's day (an earlier bulkcrm "
            "read a date-formatted cell without its time); left as stored (row(s) 2)") in text
    crm.clear_log()
    code, out = run(runner, crm, "import", str(book), "-t", template, "--report", str(tmp_path / "r1"))
    assert code == 0 and out["created"] == 0 and out["unchanged"] == 1, out
    assert [r for r in crm.requests if r.method in WRITES] == []
    assert crm.store.all("notes", tenant="tenant-a") == [note]
    ws["B2"] = dt.datetime(2024, 3, 6, 9, 30)  # another day: a note of its own
    wb.save(book)
    code, out = run(runner, crm, "import", str(book), "-t", template, "--report", str(tmp_path / "r2"))
    assert code == 0 and out["created"] == 1, out
    assert len(crm.store.all("notes", tenant="tenant-a")) == 2


def test_a_note_whose_organization_rows_share_a_value_is_told_to_fix_those_rows(runner, categories, tmp_path):
    """Trial 2026-12-03: a phone pasted into another organization's row made that row's note
    match two organization rows; the note was told to "fix the reference", which was right.
    It names the value those rows share and sends the fix to them."""
    template = tmp_path / "t.yaml"
    template.write_text("resource: organizations\nidentifiers: [phoneNumbers]\nfields:\n"
                        "  title: {column: Company}\n  phoneNumbers: {column: Phone}\n"
                        "notes:\n  sheet: Notes\n  organization: {identifiers: {phoneNumbers: Phone}}\n"
                        "  fields:\n    description: {column: Notes}\n    category: {value: Note, lookup: true}\n")
    _two_sheets(tmp_path / "w.xlsx", [["Company", "Phone"], ["Echo BV", "+31 20 123 4567"],
                                      ["Gale BV", "+31 20 123 4567"]],
                [["Phone", "Notes"], ["+31 20 123 4567", "n1"]])
    code, planned = run(runner, categories, "plan", str(tmp_path / "w.xlsx"), "-t", str(template),
                        "--out", str(tmp_path / "p.json"))
    assert code == 1, planned
    (issue,) = [i for i in json.loads((tmp_path / "p.json").read_text())["issues"]
                if i["resource"] == "organization_notes"]
    assert issue["type"] == "ambiguous-match"
    assert issue["message"].endswith("the organization reference matches rows 2, 3 of sheet Orgs by phoneNumbers "
                                     "+31201234567, which those rows share: fix the row of them that holds "
                                     "another organization's value (or this reference)"), issue["message"]
    # a note whose own reference names another organization too (its e-mail) is told to fix it
    _two_sheets(tmp_path / "w2.xlsx", [["Company", "Phone", "Email"], ["Echo BV", "+31 20 123 4567", "e@e.nl"],
                                       ["Gale BV", "+31 20 123 4567", "g@g.nl"], ["Hale BV", "+31 20 765 4321", "h@h.nl"]],
                [["Phone", "Email", "Notes"], ["+31 20 123 4567", "h@h.nl", "n1"]])
    both = tmp_path / "t2.yaml"
    both.write_text(template.read_text().replace("identifiers: [phoneNumbers]", "identifiers: [phoneNumbers, emailAddresses]")
                    .replace("  phoneNumbers: {column: Phone}\n", "  phoneNumbers: {column: Phone}\n  emailAddresses: {column: Email}\n")
                    .replace("{phoneNumbers: Phone}", "{phoneNumbers: Phone, emailAddresses: Email}"))
    code, _ = run(runner, categories, "plan", str(tmp_path / "w2.xlsx"), "-t", str(both), "--out", str(tmp_path / "p2.json"))
    (issue,) = [i for i in json.loads((tmp_path / "p2.json").read_text())["issues"]
                if i["resource"] == "organization_notes"]
    assert issue["message"].endswith("matches rows 2, 3, 4 of sheet Orgs: fix the reference so it names one "
                                     "organization"), issue["message"]
