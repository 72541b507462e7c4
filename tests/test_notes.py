"""Issue 8: organization notes, alone or in one run with their organizations, against the
sandbox over HTTP: exactly once, on the right organization, with their original dates."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bulkcrm.apply import apply
from bulkcrm.client import Client
from bulkcrm.journal import journal_path
from bulkcrm.errors import TemplateError
from bulkcrm.notes_export import export_notes
from bulkcrm.plan import Plan, plan, render_plan
from bulkcrm.template import load_template, parse_template
from tests.conftest import REPO

ORGS = REPO / "samples" / "organizations.csv"
NOTES = REPO / "samples" / "organization_notes.csv"
ORG_TEMPLATE = REPO / "templates" / "organizations.yaml"
NOTES_TEMPLATE = REPO / "templates" / "organization_notes.yaml"
CATEGORIES = {"Call": "/note_categories/c1", "Meeting": "/note_categories/c2",
              "E-mail": "/note_categories/c3", "Note": "/note_categories/c4"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
NOTE_FIELDS = {"description": "note", "createdAt": "note_date", "title": "title",
               "category": {"column": "category", "lookup": True}, "flagged": "flagged"}


@pytest.fixture
def crm_cats(crm):
    crm.seed({"note_categories": [{"@id": iri, "title": t} for t, iri in CATEGORIES.items()]})
    return crm


def notes_of(crm) -> list[dict]:
    return crm.store.all("notes", tenant="tenant-a")


def org_of(note: dict) -> str:
    return note["@id"].split("/notes/")[0]


def writes(crm) -> list:
    return [r for r in crm.requests if r.method in WRITES]


def run(p: Plan, client: Client, tmp_path: Path, name: str = "j.jsonl"):
    return apply(p, client, journal_file=tmp_path / name)


def northwind(crm, client, tmp_path) -> dict[str, str]:
    """Import the 91 Northwind customers; customerId -> IRI."""
    run(plan(ORGS, load_template(ORG_TEMPLATE), client), client, tmp_path, "orgs.jsonl")
    return {o["customerId"]: o["@id"] for o in crm.store.all("organizations", tenant="tenant-a")}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def notes_template(**overrides):
    doc = {"resource": "organization_notes", "organization": {"customer_id_column": "customerID"},
           "fields": dict(NOTE_FIELDS), **overrides}
    return parse_template(doc, path="notes.yaml", sha256="n")


def test_notes_sample_imported_once_with_original_dates(crm_cats, client, tmp_path):
    ids = northwind(crm_cats, client, tmp_path)
    template = load_template(NOTES_TEMPLATE)
    first = plan(NOTES, template, client)
    assert first.counts()["create"] == 153 and first.counts()["invalid"] == 0
    report = run(first, client, tmp_path)
    assert report.ok and report.counts()["created"] == 153
    notes = notes_of(crm_cats)
    assert len(notes) == 153
    by_text = {n["description"]: n for n in notes}
    alfki = by_text["Maria Anders called about invoice 10289: paid twice by mistake. Credit note "
                    "requested from accounting."]
    assert org_of(alfki) == ids["ALFKI"]
    assert alfki["createdAt"] == "2023-07-30T00:00:00+00:00"       # a date alone: midnight UTC
    assert alfki["title"] == "Payment" and alfki["flagged"] is True
    assert alfki["category"] == CATEGORIES["Call"]
    tasting = next(n for n in notes if n["description"].startswith("Tasting session with Laurence"))
    assert tasting["createdAt"] == "2023-11-01T07:00:00+00:00"    # 09:00+02:00 kept as that instant
    assert org_of(tasting) == ids["BONAP"]
    crm_cats.clear_log()
    second = plan(NOTES, template, client)
    assert second.operations == [] and second.counts()["unchanged"] == 153
    assert writes(crm_cats) == []
    listings = [r for r in crm_cats.requests if r.path.endswith("/notes")]
    assert len(listings) == 60                      # one listing per organization with notes


def test_changed_title_patches_only_that_note(crm_cats, client, tmp_path):
    northwind(crm_cats, client, tmp_path)
    run(plan(NOTES, load_template(NOTES_TEMPLATE), client), client, tmp_path)
    rows = list(csv.reader(NOTES.open(encoding="utf-8", newline="")))
    rows[1][2], rows[1][3] = "Payment (solved)", "  Maria Anders called about invoice 10289:\n paid " \
        "twice by mistake.  Credit note requested from accounting. "   # same text, other spacing
    changed = write_csv(tmp_path / "notes.csv", rows[0], rows[1:])
    p = plan(changed, load_template(NOTES_TEMPLATE), client)
    (op,) = p.operations
    assert (op.method, op.body) == ("PATCH", {"title": "Payment (solved)"})
    assert op.changes == [{"field": "title", "before": '"Payment"', "after": '"Payment (solved)"'}]
    replace = notes_template(mode="replace")
    (put,) = plan(changed, replace, client).operations
    assert put.method == "PUT" and put.body["title"] == "Payment (solved)"
    assert put.body["createdAt"] == "2023-07-30T00:00:00+00:00" and put.body["category"] == CATEGORIES["Call"]
    assert run(plan(changed, replace, client), client, tmp_path, "put.jsonl").ok
    assert client.get(put.path)["title"] == "Payment (solved)"


def test_one_sheet_note_follows_its_new_organization(crm_cats, client, tmp_path):
    sheet = write_csv(tmp_path / "leads.csv", ["company", "email", "notes"],
                      [["Acme", "info@acme.example", "First contact at the fair."],
                       ["Globex", "hello@globex.example", ""],
                       ["Initech", "it@initech.example", "Wants a quote."]])
    crm_cats.seed({"organizations": [{"@id": "/organizations/init", "title": "Initech",
                                      "emailAddresses": [{"email": "it@initech.example"}]}]})
    t = parse_template({"identifiers": ["emailAddresses"],
                        "fields": {"title": "company", "emailAddresses": "email"},
                        "notes": {"fields": {"description": "notes",
                                             "category": {"value": "Note", "lookup": True}}}})
    p = plan(sheet, t, client)
    notes = [o for o in p.operations if o.resource == "organization_notes"]
    assert [(o.key, o.path, o.depends_on) for o in notes] == [
        ("note:2", "$ref:row:2/notes", ["row:2"]), ("note:4", "/organizations/init/notes", [])]
    assert [o.key for o in p.operations] == ["row:2", "row:3", "note:2", "note:4"]
    assert p.counts("organization_notes") == {**dict.fromkeys(p.counts(), 0), "create": 2}
    assert p.names == {"/note_categories/c4": "Note"}  # the report shows the category by name
    report = run(p, client, tmp_path)
    assert report.ok
    acme = next(o for o in crm_cats.store.all("organizations", tenant="tenant-a") if o["title"] == "Acme")
    by_text = {n["description"]: org_of(n) for n in notes_of(crm_cats)}
    assert by_text == {"First contact at the fair.": acme["@id"], "Wants a quote.": "/organizations/init"}
    rows = report.rows.filter(report.rows["resource"] == "organization_notes").to_dicts()
    assert [(r["row_number"], r["outcome"]) for r in rows] == [(2, "created"), (4, "created")]
    assert rows[0]["iri"].startswith(acme["@id"] + "/notes/")
    again = plan(sheet, t, client)
    assert again.operations == [] and again.counts()["unchanged"] == 5


def test_one_sheet_row_with_a_date_but_no_note_text_has_no_note(crm_cats, client, tmp_path):
    """A trial read each note's createdAt from a `last_updated` column filled on every row: the
    rows without note text were invalid notes ("description is required") every week, and the
    job exited 1. A date cell alone makes no note; a title without a description is still an
    invalid note (someone wrote one and left out its text)."""
    sheet = write_csv(tmp_path / "s.csv", ["company", "email", "updated", "subject", "notes"],
                      [["Acme", "info@acme.example", "2024-05-01", "", "Met at the fair."],
                       ["Globex", "hello@globex.example", "2024-05-02", "", ""],
                       ["Initech", "it@initech.example", "2024-05-03", "Quote", ""]])
    t = parse_template({"identifiers": ["emailAddresses"],
                        "fields": {"title": "company", "emailAddresses": "email"},
                        "notes": {"fields": {"description": "notes", "title": "subject", "createdAt": "updated",
                                             "category": {"value": "Note", "lookup": True}}}})
    p = plan(sheet, t, client)
    notes = [r for r in p.rows if r["resource"] == "organization_notes"]
    assert [(r["row_number"], r["op"]) for r in notes] == [(2, "create"), (4, "invalid")]
    assert [(i["row_number"], i["type"]) for i in p.issues] == [(4, "missing-required")]


def test_plan_text_names_the_organization_a_note_goes_to(crm_cats, client, tmp_path):
    """A trial matched notes by e-mail and phone and could not see in the plan which
    organization each note would be added to: each written note says it."""
    sheet = write_csv(tmp_path / "leads.csv", ["company", "email", "notes"],
                      [["Acme", "info@acme.example", "First contact."], ["Initech", "it@initech.example", "Quote."]])
    crm_cats.seed({"organizations": [{"@id": "/organizations/init", "title": "Initech",
                                      "emailAddresses": [{"email": "it@initech.example"}]}]})
    t = parse_template({"identifiers": ["emailAddresses"], "fields": {"title": "company", "emailAddresses": "email"},
                        "notes": {"fields": {"description": "notes", "category": {"value": "Note", "lookup": True}}}})
    text = render_plan(plan(sheet, t, client))
    assert '  + note row 2 create "First contact."\n' in text, text and "      of organization: the one row 2 creates\n" in text
    assert "      of organization: /organizations/init\n" in text


def test_plan_text_lists_a_note_skipped_with_its_organization_but_not_mode_skips(crm_cats, client, tmp_path):
    sheet = write_csv(tmp_path / "s.csv", ["company", "email", "notes"],
                      [["Acme", "info@acme.example", "Hello."], ["Acme B", "info@acme.example", ""],
                       ["Globex", "hello@globex.example", "Call back."]])
    t = parse_template({"identifiers": ["emailAddresses"],
                        "fields": {"title": "company", "emailAddresses": "email"},
                        "notes": {"fields": {"description": "notes",
                                             "category": {"value": "/note_categories/c4"}}}})
    text = render_plan(plan(sheet, t, client))
    assert '  ⊘ note row 2 skip "Hello."\n      its organization (row 2) is not imported: conflict' in text
    assert "note row 4" not in render_plan(plan(sheet, t, client, mode="update-only"))  # the mode's skip


def test_note_of_a_failed_organization_is_never_posted(crm_cats, client, tmp_path):
    sheet = write_csv(tmp_path / "s.csv", ["company", "email", "notes"],
                      [["Acme", "info@acme.example", "Hello."]])
    t = parse_template({"identifiers": ["emailAddresses"],
                        "fields": {"title": "company", "emailAddresses": "email"},
                        "notes": {"fields": {"description": "notes",
                                             "category": {"value": "/note_categories/c4"}}}})
    p = plan(sheet, t, client)
    p.operations[0].body["title"] = ""     # the server will refuse the organization (422)
    report = run(p, client, tmp_path)
    rows = {r["resource"]: r for r in report.rows.to_dicts()}
    assert rows["organizations"]["outcome"] == "failed"
    assert rows["organization_notes"]["outcome"] == "failed"
    assert rows["organization_notes"]["note"] == "depends on row:2, which failed"
    assert notes_of(crm_cats) == [] and [r.method for r in writes(crm_cats)] == ["POST"]


def test_the_note_of_an_organization_made_since_the_plan_says_so(crm_cats, client, tmp_path):
    """Torture test 2026-12-03: an organization create drifted (the organization was made since
    the plan) left its note `failed: depends on row:2, which failed`; it did not fail. The note
    says what happened and to plan again, which adds it to that organization."""
    sheet = write_csv(tmp_path / "s.csv", ["company", "email", "notes"], [["Acme", "info@acme.example", "Hello."]])
    t = parse_template({"identifiers": ["emailAddresses"], "fields": {"title": "company", "emailAddresses": "email"},
                        "notes": {"fields": {"description": "notes", "category": {"value": "/note_categories/c4"}}}})
    path = plan(sheet, t, client).save(tmp_path / "p.json")
    client.post("/organizations", {"title": "Acme", "emailAddresses": [{"email": "info@acme.example"}]})
    report = apply(Plan.load(path), client, plan_path=path)
    rows = {r["resource"]: r for r in report.rows.to_dicts()}
    assert rows["organizations"]["outcome"] == "drifted"
    assert rows["organization_notes"]["note"].startswith(
        "depends on row:2, which was not sent (drifted: its record exists already, made since the plan); plan again")
    assert notes_of(crm_cats) == []
    again = plan(sheet, t, client)
    assert [o.method for o in again.operations] == ["POST"] and "/notes" in again.operations[0].path


def test_lost_answer_is_resolved_by_lookup_never_posted_twice(crm_cats, client, tmp_path):
    crm_cats.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "A1"}]})
    sheet = write_csv(tmp_path / "n.csv", ["customerID", "note_date", "title", "note", "category", "flagged"],
                      [["A1", "2024-02-01 10:00", "", "Called about the order.", "Call", "no"]])
    p = plan(sheet, notes_template(), client)
    path = p.save(tmp_path / "plan.json")
    crm_cats.set_faults(drop_rate=1.0)   # the POST is committed, its answer never arrives
    report = apply(p, client, plan_path=path, reconcile=False)
    crm_cats.clear_faults()
    assert report.ok and report.counts()["created"] == 1
    (note,) = notes_of(crm_cats)
    assert report.rows["iri"][0] == note["@id"]
    journal = [json.loads(x) for x in (tmp_path / "plan.journal.jsonl").read_text().splitlines()[1:]]
    ops = [e for e in journal if e["key"] != "reconciled"]  # (the run's end is journalled after)
    assert ops[-1]["detail"] == "resolved after a lost answer"
    assert [r.method for r in writes(crm_cats)] == ["POST"]
    crm_cats.clear_log()      # a crash after "sent": the next apply looks the note up, sends nothing
    lines = (tmp_path / "plan.journal.jsonl").read_text().splitlines()
    cut = next(i for i, x in enumerate(lines) if '"state": "sent"' in x) + 1  # after the checks' reads
    (tmp_path / "plan.journal.jsonl").write_text("\n".join(lines[:cut]) + "\n")
    again = apply(Plan.load(path), client, plan_path=path, reconcile=False)
    assert again.ok and writes(crm_cats) == [] and len(notes_of(crm_cats)) == 1


def _mirror_setup(crm, tmp_path):
    crm.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "A1"},
                                {"@id": "/organizations/o2", "title": "B", "customerId": "B1"},
                                {"@id": "/organizations/o3", "title": "C", "customerId": "C1"}],
              "notes": [{"@id": f"/organizations/{o}/notes/{n}", "description": d, "category": "/note_categories/c1",
                         "createdAt": "2024-01-0%sT00:00:00+00:00" % n[-1]}
                        for o, n, d in [("o1", "n1", "kept"), ("o1", "n2", "gone"), ("o1", "n3", "gone too"),
                                        ("o2", "n4", "other org"), ("o3", "n5", "c stays")]]})
    return write_csv(tmp_path / "m.csv", ["customerID", "note_date", "title", "note", "category", "flagged"],
                     [["A1", "2024-01-01", "", "kept", "Call", ""],
                      ["A1", "2024-03-01", "", "new", "Call", ""],
                      ["C1", "2024-03-01", "", "bad row", "Lunch", ""],   # unknown category: invalid
                      ["C1", "2024-01-05", "", "c stays", "Call", ""]])


def test_mirror_mode_deletes_exactly_the_listed_notes(crm_cats, client, tmp_path):
    sheet = _mirror_setup(crm_cats, tmp_path)
    plain = plan(sheet, notes_template(), client)
    assert [o.op for o in plain.operations] == ["create"]
    p = plan(sheet, notes_template(), client, mirror_notes=True)
    deletes = [r for r in p.rows if r["op"] == "delete"]
    assert [r["iri"] for r in deletes] == ["/organizations/o1/notes/n2", "/organizations/o1/notes/n3"]
    assert all(r["row_number"] is None and "mirror" in r["note"] for r in deletes)
    assert [(o.method, o.path) for o in p.operations] == [
        ("POST", "/organizations/o1/notes"), ("DELETE", "/organizations/o1/notes/n2"),
        ("DELETE", "/organizations/o1/notes/n3")]
    assert any("/organizations/o3" in n for n in p.notes)     # o3 has an invalid row: untouched
    # o2 has no row in the sheet: its note stays, and the plan says mirror leaves such ones
    assert "/organizations/o2/notes/n4" not in [r["iri"] for r in deletes]
    assert any(n.startswith("mirror: only organizations with a note row") for n in p.notes)
    # each delete keeps every field of the note: the plan shows it, the report can restore it
    assert {c["field"]: c["before"] for c in deletes[0]["changes"]} == {
        "createdAt": '"2024-01-02T00:00:00+00:00"', "description": '"gone"', "flagged": "false",
        "isPrivate": "false", "category": '"/note_categories/c1"'}
    text = render_plan(p)
    assert '  - note delete /organizations/o1/notes/n2 "gone"\n      createdAt: "2024-01-02T00:00:00+00:00" → (deleted)' in text
    crm_cats.clear_log()
    report = run(p, client, tmp_path)
    assert report.counts()["deleted"] == 2 and report.counts()["created"] == 1
    left = sorted(n["description"] for n in notes_of(crm_cats))
    assert left == ["c stays", "kept", "new", "other org"]
    assert [r.method for r in writes(crm_cats)] == ["POST", "DELETE", "DELETE"]


def test_mirror_mode_deletes_nothing_while_a_row_names_no_known_organization(crm_cats, client, tmp_path):
    """A note row whose organization reference has a typo belongs to an organization nobody
    can name, perhaps one whose notes mirror mode would delete: it deletes none (a trial: a
    mistyped customer id lost its organization's note)."""
    sheet = _mirror_setup(crm_cats, tmp_path)
    rows = sheet.read_text(encoding="utf-8").splitlines()
    sheet.write_text("\n".join(rows[:2] + [rows[2].replace("A1", "A9")] + rows[3:]) + "\n", encoding="utf-8")
    p = plan(sheet, notes_template(), client, mirror_notes=True)
    assert [r["op"] for r in p.rows if r["row_number"] == 3] == ["invalid"]
    assert not [o for o in p.operations if o.method == "DELETE"]
    assert any("no note deleted: note row(s) 3 name no organization" in n for n in p.notes)


def test_duplicates_and_ambiguous_matches_are_conflicts(crm_cats, client, tmp_path):
    crm_cats.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "A1"}],
                   "notes": [{"@id": f"/organizations/o1/notes/{n}", "description": "twice",
                              "category": "/note_categories/c1", "createdAt": "2024-01-01T00:00:00+00:00"}
                             for n in ("n1", "n2")]})
    sheet = write_csv(tmp_path / "d.csv", ["customerID", "note_date", "title", "note", "category", "flagged"],
                      [["A1", "2024-01-01", "", "twice", "Call", ""],
                       ["A1", "2024-02-01", "", "same  text", "Call", ""],
                       ["A1", "2024-02-01 00:00", "", "same text", "Call", ""],
                       ["A1", "", "", "no date", "Call", ""]])
    p = plan(sheet, notes_template(), client)
    ops = {r["row_number"]: r["op"] for r in p.rows}
    assert ops == {2: "conflict", 3: "conflict", 4: "conflict", 5: "create"}
    types = {i["row_number"]: i["type"] for i in p.issues}
    assert types == {2: "ambiguous-match", 3: "duplicate-row", 4: "duplicate-row"}
    assert "rows 3, 4 hold the same note" in next(i["message"] for i in p.issues if i["row_number"] == 3)
    (op,) = p.operations
    assert "createdAt" not in op.body       # no date in the sheet: the CRM dates the note


def test_row_issues_name_the_column(crm_cats, client, tmp_path):
    crm_cats.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "A1"}]})
    sheet = write_csv(tmp_path / "i.csv", ["customerID", "note_date", "title", "note", "category", "flagged"],
                      [["A1", "2024-01-01", "", "", "Call", ""],
                       ["A1", "2024-01-01", "", "text", "Lunch", ""],
                       ["A1", "2024-13-01", "", "text", "Call", "yes"],
                       ["ZZ", "2024-01-01", "", "text", "Call", ""],
                       ["", "2024-01-01", "", "text", "", ""]])
    p = plan(sheet, notes_template(), client)
    got = {(i["row_number"], i["type"], i["column"]) for i in p.issues}
    assert got == {(2, "missing-required", "note"), (3, "unknown-lookup", "category"),
                   (4, "invalid-datetime", "note_date"),
                   (5, "not-found", "customerID"), (6, "missing-required", "category"),
                   (6, "missing-required", "customerID")}
    assert "no organization matches customerID 'ZZ'" in next(i["message"] for i in p.issues if i["row_number"] == 5)
    # an unknown name lists the known ones (a short collection) and the closest
    assert '"Lunch" matches no note_categories title; known: Call, E-mail, Meeting, Note; use' in next(
        i["message"] for i in p.issues if i["row_number"] == 3)
    assert {(i["type"], i["cell"]) for i in p.issues if i["row_number"] == 5} == {("not-found", "A5")}
    assert p.operations == [] and {r["op"] for r in p.rows} == {"invalid"}
    with pytest.raises(TemplateError, match=r"notes.yaml:fields: the API requires 'category'"):
        parse_template({"resource": "organization_notes", "organization": {"customer_id_column": "c"},
                        "fields": {"description": "d"}}, path="notes.yaml")
    with pytest.raises(TemplateError, match=r"x.yaml:notes.content_key\[0\]: 'colour' cannot be part"):
        parse_template({"fields": {"title": "t"}, "notes": {"fields": {"description": "d", "category": "c"},
                                                             "content_key": ["colour"]}}, path="x.yaml")
    with pytest.raises(TemplateError, match=r"x.yaml:organization: a notes template needs 'organization'"):
        parse_template({"resource": "organization_notes", "fields": {"description": "d", "category": "c"}},
                       path="x.yaml")


def test_export_then_reimport_plans_nothing(crm_cats, client, tmp_path):
    northwind(crm_cats, client, tmp_path)
    template = load_template(NOTES_TEMPLATE)
    run(plan(NOTES, template, client), client, tmp_path)
    for name in ("notes.csv", "notes.xlsx"):
        result = export_notes(client, template, tmp_path / name)
        assert result.records == 153 and result.pages == 4
        p = plan(tmp_path / name, template, client)
        assert p.operations == [] and p.counts()["unchanged"] == 153, name
    header = (tmp_path / "notes.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "crm_iri,customerID,note_date,title,note,category,flagged"
    line = next(r for r in csv.DictReader((tmp_path / "notes.csv").open(encoding="utf-8"))
                if r["title"] == "Payment" and r["customerID"] == "ALFKI")
    assert (line["note_date"], line["category"], line["flagged"]) == ("2023-07-30T00:00:00+00:00", "Call", "true")


def test_organizations_and_notes_from_two_sheets_of_one_workbook(crm_cats, client, tmp_path):
    import xlsxwriter
    book = tmp_path / "crm.xlsx"
    wb = xlsxwriter.Workbook(book)
    for name, rows in (("Customers", [["customerID", "companyName", "phone"], ["N1", "New One", "+31201111111"],
                                      ["N2", "New Two", "+31202222222"]]),
                       ("Notes", [["customerID", "note_date", "note"], ["N2", "2024-05-01", "About two."],
                                  ["N1", "2024-05-02", "About one."], ["OLD", "2024-05-03", "About old."],
                                  ["N9", "2024-05-04", "Nobody."]])):
        ws = wb.add_worksheet(name)
        for r, row in enumerate(rows):
            ws.write_row(r, 0, row)
    wb.close()
    crm_cats.seed({"organizations": [{"@id": "/organizations/old", "title": "Old", "customerId": "OLD"}]})
    t = parse_template({"identifiers": ["phoneNumbers"], "default_region": "NL",
                        "fields": {"title": "companyName", "customerId": "customerID", "phoneNumbers": "phone"},
                        "notes": {"sheet": "Notes", "fields": {"description": "note", "createdAt": "note_date",
                                                               "category": {"value": "/note_categories/c4"}}}})
    p = plan(book, t, client)
    notes = {o.row_numbers[0]: (o.key, o.path, o.depends_on) for o in p.operations if o.resource != "organizations"}
    assert notes == {2: ("note:Notes:2", "$ref:row:3/notes", ["row:3"]),
                     3: ("note:Notes:3", "$ref:row:2/notes", ["row:2"]),
                     4: ("note:Notes:4", "/organizations/old/notes", [])}
    (missing,) = [i for i in p.issues if i["sheet"] == "Notes"]
    assert (missing["row_number"], missing["type"], missing["column"]) == (5, "not-found", "customerID")
    report = run(p, client, tmp_path)
    orgs = {o["customerId"]: o["@id"] for o in crm_cats.store.all("organizations", tenant="tenant-a")}
    assert {n["description"]: org_of(n) for n in notes_of(crm_cats)} == {
        "About two.": orgs["N2"], "About one.": orgs["N1"], "About old.": "/organizations/old"}
    note_rows = report.rows.filter(report.rows["resource"] == "organization_notes")
    assert set(note_rows["sheet"].to_list()) == {"Notes"}
    again = plan(book, t, client)
    assert again.operations == []


def test_new_embedded_sandbox_knows_the_default_note_categories(tmp_path):
    from bulkcrm.target import DEFAULT_NOTE_CATEGORIES, open_target
    for _ in range(2):     # seeded when the database is new only
        target = open_target(None, None, embedded_db=tmp_path / "sb.sqlite")
        try:
            titles = [c["title"] for c in target.client.list_all("/note_categories")]
        finally:
            target.close()
        assert titles == list(DEFAULT_NOTE_CATEGORIES)


def test_a_note_field_follows_the_note_rules_not_the_organization_field_of_the_same_name():
    from bulkcrm.mapping import chain
    notes = load_template(REPO / "templates" / "organization_notes.yaml")
    orgs = load_template(REPO / "templates" / "organizations.yaml")
    note_title, org_title = notes.mapping("title"), orgs.mapping("title")
    assert note_title.rules == {"kind": "scalar", "normalise": "trim"}  # crm-api.md §9.1: text, trimmed
    assert chain(note_title, note_title.sources[0], notes) == ["trim"]  # inner spaces kept
    assert chain(org_title, org_title.sources[0], orgs) == ["squish"]
    assert notes.mapping("description").required  # a note needs a description (§9.1)


def test_a_notes_text_is_sent_trimmed_as_the_plan_shows_it(crm_cats, client, tmp_path):
    """Outer spaces of a description or title are not sent (inner line breaks are kept), and a
    note stored with them is the same note, left unchanged."""
    crm_cats.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "A1"}],
                   "notes": [{"@id": "/organizations/o1/notes/n1", "description": "  stored  ",
                              "createdAt": "2024-01-01T00:00:00+00:00", "category": "/note_categories/c1"}]})
    sheet = write_csv(tmp_path / "t.csv", ["customerID", "note_date", "title", "note", "category", "flagged"],
                      [["A1", "2024-02-01", "  Call  ", "  two\nlines  ", "Call", ""],
                       ["A1", "2024-01-01", "", "  stored ", "Call", ""]])
    p = plan(sheet, notes_template(), client)
    assert {r["row_number"]: r["op"] for r in p.rows} == {2: "create", 4: "unchanged"}  # line 4: 2 spans two
    (op,) = p.operations
    assert op.body["description"] == "two\nlines" and op.body["title"] == "Call"


def test_a_note_waiting_on_a_create_in_doubt_is_sent_once_the_create_is_found(crm_cats, tmp_path):
    """The organization's POST gets no answer in time (the server takes 1 s, the client waits
    0.4 s), so its note cannot go yet (depends on it). At the end of the run the create is
    looked up again and found: the note is sent then, in the same run, to that organization."""
    import threading
    from tests.conftest import TEST_KEY
    sheet = write_csv(tmp_path / "leads.csv", ["company", "email", "notes"],
                      [["Acme", "info@acme.example", "First contact at the fair."]])
    t = parse_template({"identifiers": ["emailAddresses"],
                        "fields": {"title": "company", "emailAddresses": "email"},
                        "notes": {"fields": {"description": "notes",
                                             "category": {"value": "Note", "lookup": True}}}})
    client = Client(crm_cats.url, TEST_KEY, requests_per_minute=None, timeout_s=0.4)
    p = plan(sheet, t, client)

    def slow_first_write(done, total, _client):
        if done == 0:
            crm_cats.set_faults(latency_ms=1000)
            threading.Timer(0.2, crm_cats.clear_faults).start()

    report = apply(p, client, journal_file=tmp_path / "j.jsonl", reconcile=False, fresh=True,
                   progress=slow_first_write)
    outcomes = sorted((r["resource"], r["outcome"]) for r in report.rows.to_dicts())
    assert outcomes == [("organization_notes", "created"), ("organizations", "created")], report.rows.to_dicts()
    (acme,) = crm_cats.store.all("organizations", tenant="tenant-a")
    assert {n["description"]: org_of(n) for n in notes_of(crm_cats)} == {"First contact at the fair.": acme["@id"]}


def test_a_long_notes_listing_says_what_it_will_spend(crm_cats, client, tmp_path, caplog):
    """Planning notes lists each involved organization's notes, one request each (crm-api.md
    §9: no filter across organizations): at the real pace that is silent for minutes, so a log
    line (the CLI shows it on stderr) says first how many (a short window keeps this quick)."""
    from tests.conftest import TEST_KEY
    northwind(crm_cats, client, tmp_path)
    paced = Client(crm_cats.url, TEST_KEY, requests_per_minute=60, window_s=0.05)
    with caplog.at_level("INFO", logger="bulkcrm"):
        p = plan(NOTES, load_template(NOTES_TEMPLATE), paced)
    assert p.counts()["create"] == 153
    assert [r.getMessage() for r in caplog.records if r.name == "bulkcrm.notes"] == [
        "notes: listing the notes of 60 organization(s): 60 requests or more ≈ 1.0 min at 60/min …"]


MIDNIGHT_NOTE = "midnight: 1 row matched a note dated midnight of the row's day (an earlier bulkcrm read " \
                "a date-formatted cell without its time); left as stored (row(s) 2)"


def date_formatted_book(path: Path, rows: list[list]) -> Path:
    """A workbook of note rows whose note_date cells show dd/mm/yyyy whatever time they hold."""
    import openpyxl
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["customerID", "note_date", "title", "note", "category", "flagged"])
    for row in rows:
        ws.append(row)
    for (cell,) in ws.iter_rows(min_row=2, min_col=2, max_col=2):
        cell.number_format = "dd/mm/yyyy"
    wb.save(path)
    return path


def seed_midnight_note(crm, created_at: str = "2024-03-05T00:00:00+00:00") -> str:
    """An organization with the note an earlier bulkcrm made of a 09:30 cell under dd/mm/yyyy."""
    crm.seed({"organizations": [{"@id": "/organizations/o1", "title": "A", "customerId": "A1"}],
              "notes": [{"@id": "/organizations/o1/notes/n1", "description": "Called about the invoice.",
                         "category": CATEGORIES["Call"], "createdAt": created_at}]})
    return "/organizations/o1/notes/n1"


def test_a_time_the_date_format_hid_matches_the_note_an_earlier_version_dated_midnight(crm_cats, client, tmp_path):
    """Earlier versions read a 2024-03-05 09:30 cell under dd/mm/yyyy as the date alone
    (midnight); now it reads 09:30. The row is that midnight note, left as stored (no write to
    re-date it): re-importing the workbook duplicates nothing. Another day or another text of
    the same organization is still a new note."""
    import datetime as dt
    iri = seed_midnight_note(crm_cats)
    book = date_formatted_book(tmp_path / "notes.xlsx", [
        ["A1", dt.datetime(2024, 3, 5, 9, 30), "", "Called about the invoice.", "Call", ""],
        ["A1", dt.datetime(2024, 3, 6, 9, 30), "", "Called about the invoice.", "Call", ""],
        ["A1", dt.datetime(2024, 3, 5, 9, 30), "", "Sent the credit note.", "Call", ""]])
    p = plan(book, load_template(NOTES_TEMPLATE), client)
    rows = {r["row_number"]: (r["op"], r["iri"]) for r in p.rows}
    assert rows == {2: ("unchanged", iri), 3: ("create", None), 4: ("create", None)}
    assert [o.row_numbers for o in p.operations] == [[3], [4]]
    assert p.operations[0].body["createdAt"] == "2024-03-06T09:30:00+00:00"
    assert MIDNIGHT_NOTE in p.notes
    assert f"note: {MIDNIGHT_NOTE}" in render_plan(p)
    assert run(p, client, tmp_path).ok
    notes = notes_of(crm_cats)
    assert len(notes) == 3 and sum(n["description"] == "Called about the invoice." for n in notes) == 2
    assert next(n for n in notes if n["@id"] == iri)["createdAt"] == "2024-03-05T00:00:00+00:00"
    crm_cats.clear_log()
    again = plan(book, load_template(NOTES_TEMPLATE), client)
    assert again.operations == [] and again.counts()["unchanged"] == 3 and MIDNIGHT_NOTE in again.notes
    assert writes(crm_cats) == []


def test_a_midnight_note_matched_by_its_day_in_the_templates_time_zone_gets_other_changes(crm_cats, client,
                                                                                         tmp_path):
    """Midnight is the template's: in Europe/Amsterdam the date alone of 5 March is 23:00 UTC
    the day before. A changed title is patched as usual; createdAt is not sent."""
    import datetime as dt
    iri = seed_midnight_note(crm_cats, "2024-03-04T23:00:00+00:00")
    book = date_formatted_book(tmp_path / "notes.xlsx", [
        ["A1", dt.datetime(2024, 3, 5, 9, 30), "Invoice", "Called about the invoice.", "Call", ""]])
    amsterdam = {"column": "note_date", "transforms": [{"datetime": {"time_zone": "Europe/Amsterdam"}}]}
    (op,) = plan(book, notes_template(fields={**NOTE_FIELDS, "createdAt": amsterdam}), client).operations
    assert (op.method, op.path, op.body) == ("PATCH", iri, {"title": "Invoice"})
    (put,) = plan(book, notes_template(mode="replace", fields={**NOTE_FIELDS, "createdAt": amsterdam}),
                  client).operations
    assert put.method == "PUT" and put.body["createdAt"] == "2024-03-04T23:00:00+00:00"
    p = plan(book, notes_template(), client)  # in UTC, 5 March starts an hour later: no such note
    assert [r["op"] for r in p.rows] == ["create"] and not any(n.startswith("midnight:") for n in p.notes)


def test_a_midnight_note_two_rows_could_be_is_no_guess(crm_cats, client, tmp_path):
    """Two rows of the midnight note's day, at other times, could each be it: a conflict each,
    never a create (one of them would be a second copy). A row dated midnight itself is the
    note, and the 09:30 row beside it a new note."""
    import datetime as dt
    iri = seed_midnight_note(crm_cats)
    text = "Called about the invoice."
    book = date_formatted_book(tmp_path / "two.xlsx", [["A1", dt.datetime(2024, 3, 5, 9, 30), "", text, "Call", ""],
                                                       ["A1", dt.datetime(2024, 3, 5, 14, 0), "", text, "Call", ""]])
    p = plan(book, load_template(NOTES_TEMPLATE), client)
    assert [r["op"] for r in p.rows] == ["conflict", "conflict"] and p.operations == []
    assert {i["type"] for i in p.issues} == {"duplicate-row"}
    assert f"rows 2, 3 could each be {iri}, dated midnight of their day" in p.issues[0]["message"]
    book = date_formatted_book(tmp_path / "own.xlsx", [["A1", dt.datetime(2024, 3, 5), "", text, "Call", ""],
                                                       ["A1", dt.datetime(2024, 3, 5, 9, 30), "", text, "Call", ""]])
    p = plan(book, load_template(NOTES_TEMPLATE), client)
    assert [(r["op"], r["iri"]) for r in p.rows] == [("unchanged", iri), ("create", None)]
    assert not any(n.startswith("midnight:") for n in p.notes)


def test_a_typed_time_in_a_csv_is_no_midnight_note(crm_cats, client, tmp_path):
    """From a review: a CSV row typed `2024-03-05T15:00:00Z` (a second call, same text) was taken
    for the note of that day dated midnight and never created. Only an Excel cell whose format
    hides its time is one an earlier version read as midnight; a CSV's time is what it says,
    and a workbook cell whose format shows the time is, too."""
    seed_midnight_note(crm_cats)
    src = tmp_path / "calls.csv"
    src.write_text("customerID,note_date,title,note,category,flagged\n"
                   "A1,2024-03-05T15:00:00Z,,Called about the invoice.,Call,\n", encoding="utf-8")
    p = plan(src, load_template(NOTES_TEMPLATE), client)
    assert [r["op"] for r in p.rows] == ["create"] and not [n for n in p.notes if n.startswith("midnight:")]
    import openpyxl
    import datetime as dt
    book = date_formatted_book(tmp_path / "shown.xlsx", [["A1", dt.datetime(2024, 3, 5, 9, 30), None,
                                                          "Called about the invoice.", "Call", None]])
    wb = openpyxl.load_workbook(book)
    wb.active["B2"].number_format = "dd/mm/yyyy hh:mm"  # the time shows: no earlier version misread it
    wb.save(book)
    assert [r["op"] for r in plan(book, load_template(NOTES_TEMPLATE), client).rows] == ["create"]


def test_a_note_row_copied_with_its_iri_is_told_to_clear_the_iri(crm_cats, client, tmp_path):
    """Trial 3 copied an exported note row, crm_iri included, to add a note: both rows were
    conflicts told to "keep one row per note, or change the template's content_key", with no
    column. They name the crm_iri column and the note's IRI, and say to clear the copy's."""
    note = seed_midnight_note(crm_cats)
    src = tmp_path / "notes.csv"
    src.write_text("crm_iri,customerID,note_date,title,note,category,flagged\n"
                   f"{note},A1,2024-03-05,,Called about the invoice.,Call,\n"
                   f"{note},A1,2024-03-06,,Called back.,Call,\n", encoding="utf-8")
    p = plan(src, load_template(NOTES_TEMPLATE), client)
    assert [r["op"] for r in p.rows] == ["conflict", "conflict"] and p.operations == []
    for i in p.issues:
        assert (i["type"], i["column"], i["value"]) == ("duplicate-row", "crm_iri", note), i
        assert f"rows 2, 3 all match {note}; rows 2, 3 name it in crm_iri: if a row is another note (a row copied " \
               "with its crm_iri?), clear its crm_iri so it is created" in i["message"], i["message"]


def test_a_copy_of_a_plan_applied_again_makes_no_second_note(crm_cats, client, tmp_path, monkeypatch):
    """Torture test 2026-12-03: a plan and its copy applied one after the other (or the plan
    again after its journal was deleted) posted the notes on existing organizations again, as
    only organization creates were checked for copies made since the plan. The second apply
    finds them (a listing per organization) and reports them drifted."""
    northwind(crm_cats, client, tmp_path)
    rows = list(csv.reader(NOTES.open(encoding="utf-8", newline="")))
    some = write_csv(tmp_path / "some.csv", rows[0], rows[1:9])
    p = plan(some, load_template(NOTES_TEMPLATE), client)
    assert p.counts()["create"] == 8
    orgs = {o.path for o in p.operations}
    assert p.estimate()["checks"] == len(orgs)  # a listing per organization that gets a note
    first, copy = p.save(tmp_path / "p.json"), p.save(tmp_path / "copy.json")
    assert apply(Plan.load(first), client, plan_path=first).counts()["created"] == 8
    crm_cats.clear_log()
    apply(Plan.load(first), client, plan_path=first)  # the plan's own journal says it all: no listing
    assert crm_cats.requests == []
    # applied on another machine (another cache folder): this one refuses the copy (`apply._check_copy`)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-2"))
    again = apply(Plan.load(copy), client, plan_path=copy)
    assert again.counts()["created"] == 0 and again.counts().get("drifted") == 8, again.counts()
    assert "a note of the same content was created since the plan" in again.rows["note"][0]
    assert len(notes_of(crm_cats)) == 8 and writes(crm_cats) == []
    assert sorted(r.path for r in crm_cats.requests) == sorted(orgs)  # a listing each, nothing else
    # the plan again after its journal was deleted: the same
    journal_path(first).unlink()
    assert apply(Plan.load(first), client, plan_path=first).counts()["created"] == 0 and len(notes_of(crm_cats)) == 8


def test_notes_on_more_organizations_than_the_check_lists_are_checked_with_verify(crm_cats, client, tmp_path,
                                                                                 monkeypatch, caplog):
    """Over `NOTE_CHECKS_MAX` organizations the check lists none and says so, naming --verify
    (a trial found the line alarming and without a way out); --verify lists them all."""
    import importlib
    northwind(crm_cats, client, tmp_path)
    rows = list(csv.reader(NOTES.open(encoding="utf-8", newline="")))
    p = plan(write_csv(tmp_path / "some.csv", rows[0], rows[1:9]), load_template(NOTES_TEMPLATE), client)
    first, copy = p.save(tmp_path / "p.json"), p.save(tmp_path / "copy.json")
    apply(Plan.load(first), client, plan_path=first)
    monkeypatch.setattr(importlib.import_module("bulkcrm.apply"), "NOTE_CHECKS_MAX", 1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-2"))  # the copy on another machine
    with caplog.at_level("INFO", logger="bulkcrm"):
        again = apply(Plan.load(copy), client, plan_path=copy, verify=True)
    assert again.counts()["created"] == 0 and len(notes_of(crm_cats)) == 8
    assert "not checked" not in caplog.text
    journal_path(copy).unlink()
    with caplog.at_level("INFO", logger="bulkcrm"):
        apply(Plan.load(copy), client, plan_path=copy, reconcile=False)
    assert "are not checked for copies made since the plan" in caplog.text and "--verify checks them" in caplog.text
