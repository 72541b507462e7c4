"""Issue 5: ../shared/cases BR-07, BR-08, BR-11 (and BR-10's relation rules) through the planner,
against the sandbox over HTTP."""
from __future__ import annotations

import re

import json

import pytest

from bulkcrm.apply import apply
from bulkcrm.errors import TemplateError
from bulkcrm.plan import plan, render_plan
from bulkcrm.template import parse_template
from tests.conftest import CASES

CASES_TEMPLATE = {  # the column -> field table of ../shared/cases/README.md
    "resource": "organizations",
    "identifiers": ["emailAddresses", "phoneNumbers", "linkedinId"],
    "default_region": "NL",
    "fields": {
        "title": "title",
        "website": "website",
        "emailAddresses": {"column": "email", "split": ";"},
        "phoneNumbers": {"column": "phone", "type_column": "phone_type"},
        "chamberOfCommerceNumber": "kvk_number",
        "linkedinId": "linkedin",
        "address.street": "street", "address.postalCode": "postal_code",
        "address.city": "city", "address.country": "country",
        "owner": "owner",
        "tags": {"column": "tags", "split": ";"},
    },
}


BR11 = "/organizations/6f1c2a4e-0011-4000-8000-000000000303"


def template(**overrides):
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc.update(overrides)
    return parse_template(doc, path="cases.yaml", sha256="t")


def only_columns(csv_path, tmp_path):
    """The cases template maps every column of the README; give the sheet the missing ones empty."""
    import csv as _csv
    rows = list(_csv.reader(csv_path.open(encoding="utf-8-sig", newline="")))
    wanted = ["title", "website", "email", "phone", "phone_type", "kvk_number", "linkedin", "street",
              "postal_code", "city", "country", "owner", "tags"]
    header = rows[0]
    out = tmp_path / csv_path.name
    with out.open("w", encoding="utf-8", newline="") as f:
        w = _csv.writer(f)
        w.writerow(wanted)
        for r in rows[1:]:
            d = dict(zip(header, r))
            w.writerow([d.get(c, "") for c in wanted])
    return out


def load_existing(crm, name):
    crm.seed({"organizations": [json.loads((CASES / name).read_text())]})


def test_br07_identifiers_normalised_on_both_sides(crm, client, tmp_path):
    load_existing(crm, "BR-07.existing.json")
    p = plan(only_columns(CASES / "BR-07.csv", tmp_path), template(), client)
    (row,) = p.rows
    assert row["op"] in ("unchanged", "patch")
    assert row["iri"] == "/organizations/6f1c2a4e-0007-4000-8000-000000000101"
    assert p.counts()["create"] == 0
    assert row["op"] == "unchanged"  # every value equals the record after normalisation


def test_br07_matches_when_the_templates_email_transforms_end_with_another_step(crm, client, tmp_path):
    """Identifiers are compared trimmed and lower-cased even when the sheet's values are not
    (here upper-cased after the e-mail normaliser)."""
    load_existing(crm, "BR-07.existing.json")
    fields = {**CASES_TEMPLATE["fields"], "emailAddresses": {"column": "email", "split": ";",
                                                             "transforms": ["email", "upper"]}}
    for strategy in ("scan", "lookup"):
        p = plan(only_columns(CASES / "BR-07.csv", tmp_path),
                 template(fields=fields, identifiers=["emailAddresses"]), client,
                 strategy=strategy)
        assert [(r["iri"], r["op"]) for r in p.rows] == \
            [("/organizations/6f1c2a4e-0007-4000-8000-000000000101", "patch")]


def test_br08_duplicate_rows_conflict_before_any_write(crm, client, tmp_path):
    crm.clear_log()
    p = plan(only_columns(CASES / "BR-08.csv", tmp_path), template(), client)
    ops = {r["row_number"]: r["op"] for r in p.rows}
    assert ops == {2: "conflict", 3: "create", 4: "conflict"}
    issue = next(i for i in p.issues if i["row_number"] == 4)
    assert issue["type"] == "duplicate-row" and "info@vermeer-installatie.example" in issue["message"]
    assert "2, 4" in issue["message"]
    assert (issue["column"], issue["cell"], issue["value"]) == (  # the report's Issues sheet names the cell
        "email", "C4", "info@vermeer-installatie.example")
    assert [o.row_numbers for o in p.operations] == [[3]]
    assert all(r.method == "GET" for r in crm.requests)


def with_iri(path, iri):
    """BR-11's row shares no identifier with the record (its e-mail and phone are the new
    ones): ops staff match it through the IRI column of an export, as done here."""
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0] + ",crm_iri"] + [ln + "," + iri for ln in lines[1:]]) + "\n",
                    encoding="utf-8")
    return path


def test_br11_without_its_iri_warns_that_a_record_has_the_rows_title(crm, client, tmp_path):
    """BR-11 as shipped shares no identifier with the record: the row is a create (the API has
    no title filter, and a title identifies nothing), but a plan that listed every record says
    that one has the row's title and how to match it; a lookup plan cannot know, and says
    nothing."""
    load_existing(crm, "BR-11.existing.json")
    crm.seed({"tags": [{"@id": "/tags/9", "title": "Lease"}]})
    sheet = only_columns(CASES / "BR-11.csv", tmp_path)
    p = plan(sheet, template(), client, strategy="scan")
    assert p.counts()["create"] == 1
    (warning,) = [i for i in p.issues if i["type"] == "possible-duplicate"]
    assert warning["row_number"] == 2 and warning["column"] == "title" and warning["severity"] == "warning"
    assert f'this row creates "Autobedrijf Snel", but {BR11} has that title' in warning["message"]
    assert "give the row its IRI in a crm_iri column" in warning["message"]
    assert "possible-duplicate" not in {i["type"] for i in plan(sheet, template(), client, strategy="lookup").issues}
    # matched through its IRI, the row is no create and nothing is said
    assert not [i for i in plan(with_iri(sheet, BR11), template(), client, strategy="scan").issues
                if i["type"] == "possible-duplicate"]


def test_possible_duplicate_without_an_email_compares_the_website_host(crm, client, tmp_path):
    """Without an e-mail on either side, the domain is the website's host (scheme, `www.` and
    case aside); a title alone, or a title with another host, is no sign."""
    crm.seed({"organizations": [
        {"title": "Snel BV", "website": "https://www.snel.example/contact",
         "linkedinId": "snel-old"},
        {"title": "Traag BV", "website": "https://traag.example", "linkedinId": "traag-old"}]})
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,website,linkedin\nsnel bv ,WWW.Snel.Example,snel-new\n"
                     "Traag BV,https://other.example,traag-new\n", encoding="utf-8")
    tpl = template(fields={"title": "title", "website": "website", "linkedinId": "linkedin"},
                   identifiers=["linkedinId"])
    p = plan(sheet, tpl, client, strategy="scan")
    assert p.counts()["create"] == 2
    (warning,) = [i for i in p.issues if i["type"] == "possible-duplicate"]
    assert warning["row_number"] == 2 and 'this row creates "snel bv"' in warning["message"]


def test_the_plan_shows_a_possible_duplicate_on_its_create_line_first(crm, client, tmp_path):
    """Trial 2026-12-02: a create that may duplicate a record was warned about only in the plan
    file, its warning pushed out of the printed five by routine ones (phones kept as typed).
    The plan lists such creates right after the rows it will not write, says the warning
    under the row, and leaves it out of the warnings below (counting it as shown above)."""
    crm.seed({"organizations": [{"title": "Snel BV", "website": "https://snel.example", "linkedinId": "snel-old"}]})
    rows = "".join(f"Org {i},https://o{i}.example,org-{i},+31205550{i:03d},+31205550{i:03d}\n" for i in range(8))
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,website,linkedin,phone,fax\n" + rows + "Snel BV,https://snel.example,snel-new,,\n",
                     encoding="utf-8")
    tpl = template(fields={"title": "title", "website": "website", "linkedinId": "linkedin",
                           "phoneNumbers": [{"column": "phone"}, {"column": "fax", "type": "fax"}]},
                   identifiers=["linkedinId"])
    p = plan(sheet, tpl, client, strategy="scan")
    (doubt,) = [i["message"] for i in p.issues if i["type"] == "possible-duplicate"]
    assert sum(i["severity"] == "warning" for i in p.issues) == 9
    lines = render_plan(p).splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith("  + row"))
    assert lines[first] == '  + row 10 create "Snel BV"'
    assert f"      warning: {doubt}" in lines[first:first + 6]
    assert "  9 warning(s) (1 shown above); a warning alone stops no row:" in lines
    assert sum(doubt in line for line in lines) == 1


def test_a_conflicts_advice_names_an_iri_column_only_for_rows_that_matched_a_record(crm, client, tmp_path):
    """Trial 2026-12-02: two new rows sharing an e-mail were told to add a crm_iri column,
    which cannot help rows that have no record yet."""
    crm.seed({"organizations": [{"title": "Old", "emailAddresses": [{"email": "old@x.example"}]}]})
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,email\nA,new@x.example\nB,new@x.example\nC,old@x.example\nD,old@x.example\n",
                     encoding="utf-8")
    p = plan(sheet, template(fields={"title": "title", "emailAddresses": "email"}, identifiers=["emailAddresses"]),
             client, strategy="scan")
    advice = {i["row_number"]: i["message"][i["message"].index("keep one row"):] for i in p.issues
              if i["type"] == "duplicate-row"}
    fix = "keep one row per organization: if the rows are one organization, merge them into one; if they are several, correct the value they share"
    assert advice == {2: fix, 3: fix, 4: fix + ", or name each row's record by its IRI in a crm_iri column (an export has one)",
                      5: fix + ", or name each row's record by its IRI in a crm_iri column (an export has one)"}


def test_rows_sharing_two_identifiers_are_told_so_once(crm, client, tmp_path):
    """Trial 2026-12-03: a row pasted twice, matched on e-mails and phones, got the message
    twice over, once per shared value, each with "(the rows are the same in every field: keep
    one)". One message names every value the rows share."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,email,phone\nA,a@x.example,+31201234567\nB,b@x.example,+31201234568\n"
                     "A,a@x.example,+31201234567\n", encoding="utf-8")
    p = plan(sheet, template(fields={"title": "title", "emailAddresses": "email", "phoneNumbers": "phone"},
                             identifiers=["emailAddresses", "phoneNumbers"]), client, strategy="scan")
    notes = {r["row_number"]: r["note"] for r in p.rows if r["op"] == "conflict"}
    assert notes == dict.fromkeys((2, 4), "rows 2, 4 share emailAddresses a@x.example and phoneNumbers "
                                          "+31201234567 (the rows are the same in every column the template reads: keep one)")


def test_rows_sharing_an_identifier_are_told_the_fields_they_differ_in(crm, client, tmp_path):
    """A trial: rows 10 and 11 shared a customerId and an e-mail and differed in the phone only,
    and the message did not say so, nor which to keep. It names the sheet columns they differ
    in (a review: not the API fields)."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("Name,email,Telefon\nA,a@x.example,+31201234567\nA,a@x.example,+31201234568\n"
                     "C,c@x.example,+31201234569\nD,c@x.example,+31201234560\n", encoding="utf-8")
    p = plan(sheet, template(fields={"title": "Name", "emailAddresses": "email", "phoneNumbers": "Telefon"},
                             identifiers=["emailAddresses"]), client, strategy="scan")
    notes = {r["row_number"]: r["note"] for r in p.rows if r["op"] == "conflict"}
    assert notes == {**dict.fromkeys((2, 3), "rows 2, 3 share emailAddresses a@x.example (they differ in Telefon)"),
                     **dict.fromkeys((4, 5), "rows 4, 5 share emailAddresses c@x.example (they differ in Name, "
                                             "Telefon)")}


def test_rows_of_one_organization_with_different_notes_are_not_told_to_keep_one(crm, client, tmp_path):
    """Trial 2026-12-03 (a report export: the account repeated on each contact's row, a note
    per row): "the rows are the same in every field: keep one" would drop two of three notes.
    Rows alike in every organization field whose own notes differ are told where notes go."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,email,note\nA,a@x.example,CEO\nA,a@x.example,CTO\nB,b@x.example,x\n"
                     "B,b@x.example,x\n", encoding="utf-8")
    p = plan(sheet, template(fields={"title": "title", "emailAddresses": "email"}, identifiers=["emailAddresses"],
                             notes={"fields": {"description": "note", "category": {"value": "/note_categories/1"}}}),
             client, strategy="scan")
    notes = {r["row_number"]: r["note"] for r in p.rows if r["op"] == "conflict"}
    assert notes == {**dict.fromkeys((2, 3), "rows 2, 3 share emailAddresses a@x.example (the rows are the same in "
                                             "every organization field but hold different notes: keep one row per "
                                             "organization, and put the notes on a sheet of their own, one row each, "
                                             "with notes: {sheet: …} in the template)"),
                     **dict.fromkeys((4, 5), "rows 4, 5 share emailAddresses b@x.example (the rows are the same in "
                                             "every column the template reads: keep one)")}


def test_a_merge_says_which_items_left_out_of_the_sheet_stay(crm, client, tmp_path):
    """Trials 2026-12-03: a phone deleted from a cell, or a blanked phone cell, planned
    `unchanged` without a word: under `policy: merge` the record keeps it. A plan note says
    which items stay and how to remove them."""
    crm.seed({"organizations": [{"@id": "/organizations/a", "title": "A", "emailAddresses": [
        {"email": "a@x.example"}, {"email": "old@x.example"}], "phoneNumbers": [{"phoneNumber": "+31201234567"}]}]})
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,email,phone\nA,a@x.example,\n", encoding="utf-8")
    p = plan(sheet, template(fields={"title": "title", "emailAddresses": "email", "phoneNumbers": "phone"},
                             identifiers=["emailAddresses"]), client, strategy="scan")
    assert p.counts()["unchanged"] == 1 and p.operations == []
    (note,) = [n for n in p.notes if n.startswith("merge:")]
    assert note == ("merge: the sheet leaves out 2 list item(s) its records hold, which stay (row 2 emailAddresses "
                    "old@x.example, row 2 phoneNumbers +31201234567): a field with `policy: merge` adds the sheet's "
                    "items to the record's and removes none; to remove them, give the field `policy: replace`")
    assert f"  note: {note}" in render_plan(p).splitlines()


def test_a_merges_note_names_the_tags_it_keeps(crm, client, tmp_path):
    """Trial 2026-12-03: the merge note showed a kept tag as its IRI (`/tags/3c5e…`), which
    the sheet never holds; it shows the tag's name, as the sheet writes it."""
    crm.seed({"tags": [{"@id": "/tags/9", "title": "Lease"}, {"@id": "/tags/7", "title": "Partner"}],
              "organizations": [{"@id": "/organizations/a", "title": "A", "emailAddresses": [{"email": "a@x.example"}],
                                 "tags": ["/tags/9", "/tags/7"]}]})
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,email,tags\nA,a@x.example,Lease\n", encoding="utf-8")
    p = plan(sheet, template(fields={"title": "title", "emailAddresses": "email",
                                     "tags": {"column": "tags", "lookup": True}},
                             identifiers=["emailAddresses"]), client, strategy="scan")
    (note,) = [n for n in p.notes if n.startswith("merge:")]
    assert "(row 2 tags 'Partner')" in note, note


def test_a_value_many_rows_share_is_named_in_a_plan_note(crm, client, tmp_path):
    """Trial 2026-12-03 (211.csv matched on phones: 1,790 of 2,132 rows in conflict, one fax
    number on 60 of them): a note names the values most rows share and what to do."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,email,phone\n" + "".join(f"T{i},t{i}@x.example,+31201234567\n" for i in range(4))
                     + "U,u@x.example,+31201234568\nV,v@x.example,+31201234568\n", encoding="utf-8")
    p = plan(sheet, template(fields={"title": "title", "emailAddresses": "email", "phoneNumbers": "phone"},
                             identifiers=["emailAddresses", "phoneNumbers"]), client, strategy="scan")
    assert p.counts()["conflict"] == 6
    (note,) = [n for n in p.notes if n.startswith("conflicts:")]
    assert note.startswith("conflicts: 6 row(s) share identifier values with other rows; values 3 or more rows "
                           "share: phoneNumbers +31201234567 (4 rows): a number or address several organizations")
    assert f"  note: {note}" in render_plan(p).splitlines()
    # an e-mail no one can hold (`no email` on many rows: invalid rows) is no shared switchboard (trial)
    sheet.write_text("title,email,phone\n" + "".join(f"T{i},no email,+3120123456{i}\n" for i in range(4))
                     + "".join(f"U{i},u@x.example,+3120765432{i}\n" for i in range(3)), encoding="utf-8")
    (note,) = [n for n in plan(sheet, template(fields={"title": "title", "emailAddresses": "email",
                                                       "phoneNumbers": "phone"},
                                               identifiers=["emailAddresses", "phoneNumbers"]),
                               client, strategy="scan").notes if n.startswith("conflicts:")]
    assert "emailAddresses u@x.example (3 rows)" in note and "no email" not in note, note
    sheet.write_text("title,email,phone\nU,u@x.example,+31201234568\nV,v@x.example,+31201234568\n", encoding="utf-8")
    assert not [n for n in plan(sheet, template(fields={"title": "title", "emailAddresses": "email",
                                                        "phoneNumbers": "phone"},
                                                identifiers=["emailAddresses", "phoneNumbers"]),
                                client, strategy="scan").notes if n.startswith("conflicts:")]
    # an id on several rows (a trial: an invoice per line, its customer's id on each) is no
    # shared switchboard: the note says what such a sheet is
    sheet.write_text("title,id\n" + "".join(f"T{i},C1\n" for i in range(3)), encoding="utf-8")
    (note,) = [n for n in plan(sheet, template(fields={"title": "title", "customerId": "id"}, identifiers=["customerId"]),
                               client, strategy="scan").notes if n.startswith("conflicts:")]
    assert note.endswith("share: customerId C1 (3 rows): an id one organization holds, on several rows: a sheet of "
                         "one line per order or invoice? import a sheet with one row per organization"), note


def test_br11_merge_patch_keeps_existing_list_items(crm, client, tmp_path):
    load_existing(crm, "BR-11.existing.json")
    crm.seed({"tags": [{"@id": "/tags/9", "title": "Lease"},
                       {"@id": "/tags/6f1c2a4e-0000-4000-8000-000000000003", "title": "A"},
                       {"@id": "/tags/6f1c2a4e-0000-4000-8000-000000000008", "title": "B"}]})
    p = plan(with_iri(only_columns(CASES / "BR-11.csv", tmp_path), BR11), template(), client)
    (op,) = p.operations
    assert op.method == "PATCH" and op.path == "/organizations/6f1c2a4e-0011-4000-8000-000000000303"
    assert [e["email"] for e in op.body["emailAddresses"]] == [
        "info@snel.example", "werkplaats@snel.example", "verkoop@snel.example"]
    assert op.body["phoneNumbers"] == [
        {"phoneNumber": "+31405551212", "phoneType": "work"},
        {"phoneNumber": "+31655501313", "phoneType": "mobile"},
        {"phoneNumber": "+31405551414", "phoneType": "fax"}]
    assert op.body["tags"] == ["/tags/6f1c2a4e-0000-4000-8000-000000000003",
                               "/tags/6f1c2a4e-0000-4000-8000-000000000008", "/tags/9"]
    assert "title" not in op.body
    crm.clear_log()
    report = apply(p, client, journal_file=tmp_path / "j.jsonl")
    assert report.ok
    patch = [r for r in crm.requests if r.method == "PATCH"]
    assert len(patch) == 1
    rec = client.get(op.path)
    assert len(rec["emailAddresses"]) == 3 and len(rec["phoneNumbers"]) == 3 and len(rec["tags"]) == 3


def test_br11_replace_policy_replaces_lists(crm, client, tmp_path):
    load_existing(crm, "BR-11.existing.json")
    crm.seed({"tags": [{"@id": "/tags/9", "title": "Lease"}]})
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc["fields"]["emailAddresses"] = {"column": "email", "policy": "replace"}
    p = plan(with_iri(only_columns(CASES / "BR-11.csv", tmp_path), BR11), parse_template(doc, path="x"), client)
    (op,) = p.operations
    assert op.body["emailAddresses"] == [{"email": "verkoop@snel.example"}]


def test_br10_relations_must_be_iris_of_the_right_collection(crm, client, tmp_path):
    crm.seed({"users": [{"@id": "/users/7", "email": "u7@example.com", "familyName": "Z"}],
              "tags": [{"@id": "/tags/3", "title": "three"}, {"@id": "/tags/12", "title": "twelve"}]})
    p = plan(only_columns(CASES / "BR-10.csv", tmp_path), template(), client)
    errors = {(i["row_number"], i["column"], i["value"]) for i in p.issues if i["severity"] == "error"}
    assert (2, "owner", "7") in errors            # a bare id is not an IRI unless the template says so
    assert (3, "tags", "tags/12") in errors
    assert (4, "owner", "/api/users/7") in errors
    assert (5, "tags", "/users/5") in errors
    msgs = [i["message"] for i in p.issues if i["value"] == "/users/5"]
    assert "/tags/{id}" in msgs[0]
    assert {r["row_number"]: r["op"] for r in p.rows} == {2: "invalid", 3: "invalid", 4: "invalid", 5: "invalid"}


def test_br10_bare_ids_become_iris_where_the_template_says_so(crm, client, tmp_path):
    crm.seed({"users": [{"@id": "/users/7", "email": "u7@example.com", "familyName": "Z"}],
              "tags": [{"@id": "/tags/3", "title": "three"}, {"@id": "/tags/12", "title": "twelve"}]})
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc["fields"]["owner"] = {"column": "owner", "transforms": [{"iri": {"allow_bare_id": True}}]}
    doc["fields"]["tags"] = {"column": "tags", "transforms": [{"iri": {"allow_bare_id": True}}]}
    p = plan(only_columns(CASES / "BR-10.csv", tmp_path), parse_template(doc, path="x"), client)
    first = next(o for o in p.operations if o.row_numbers == [2])
    assert first.body["owner"] == "/users/7" and first.body["tags"] == ["/tags/3", "/tags/12"]
    bad = {(i["row_number"], i["value"]) for i in p.issues if i["severity"] == "error"}
    assert (4, "/api/users/7") in bad and (5, "/users/5") in bad and (3, "tags/12") in bad


def test_tag_names_resolve_and_unknown_names_are_issues(crm, client, tmp_path):
    crm.seed({"tags": [{"@id": "/tags/1", "title": "VIP"}]})
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc["fields"]["tags"] = {"column": "tags", "lookup": True}
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\nA,a@x.example,,,,,,,,,,,vip\nB,b@x.example,,,,,,,,,,,Nope\n", encoding="utf-8")
    p = plan(sheet, parse_template(doc, path="x"), client)
    assert p.operations[0].body["tags"] == ["/tags/1"]
    (issue,) = [i for i in p.issues if i["type"] == "unknown-lookup"]
    assert issue["row_number"] == 3 and issue["value"] == "Nope" and issue["cell"] == "M3"  # the tags column
    typo_sheet = tmp_path / "typo.csv"
    typo_sheet.write_text(sheet.read_text(encoding="utf-8").replace("Nope", "VIPP"), encoding="utf-8")
    (typo,) = [i for i in plan(typo_sheet, parse_template(doc, path="x"), client).issues
               if i["type"] == "unknown-lookup"]
    assert "\"VIPP\" matches no tags title (did you mean 'VIP'?); known: VIP; use" in typo["message"]
    doc["fields"]["tags"]["lookup"] = {"by": "titel"}  # a property no tag has: refused at load
    with pytest.raises(TemplateError, match=r"'titel' is no property of tags to look names up by \(did you mean 'title'\?\)"):
        parse_template(doc, path="x")
    doc["fields"]["tags"]["lookup"] = {"create_missing": True}
    p2 = plan(sheet, parse_template(doc, path="x"), client)
    assert [o.key for o in p2.operations] == ["tag:Nope", "row:2", "row:3"]
    report = apply(p2, client, journal_file=tmp_path / "j2.jsonl")
    assert report.ok
    created = {o["title"]: o for o in crm.store.all("organizations", tenant="tenant-a")}
    new_tag = created["B"]["tags"][0]
    assert client.get(new_tag)["title"] == "Nope"


@pytest.mark.parametrize("mode,expected", [("create-only", {2: "skip", 3: "create"}),
                                           ("update-only", {2: "patch", 3: "skip"})])
def test_modes(crm, client, tmp_path, mode, expected):
    crm.seed({"organizations": [{"title": "Old", "emailAddresses": [{"email": "a@x.example"}]}]})
    sheet = tmp_path / "m.csv"
    sheet.write_text("title,email\nNew name,a@x.example\nOther,b@x.example\n", encoding="utf-8")
    t = parse_template({"identifiers": ["emailAddresses"], "fields": {"title": "title", "emailAddresses": "email"}})
    assert {r["row_number"]: r["op"] for r in plan(sheet, t, client, mode=mode).rows} == expected


def test_replace_mode_puts_and_lists_cleared_fields(crm, client, tmp_path):
    from bulkcrm.plan import render_plan
    crm.seed({"organizations": [{"title": "Old", "emailAddresses": [{"email": "a@x.example"}],
                                 "website": "https://old.example", "description": "kept: unmapped",
                                 "address": {"street": "Oude Gracht 1", "city": "Utrecht"}}]})
    sheet = tmp_path / "r.csv"
    sheet.write_text("title,email,website,street,city\nNew,a@x.example,,,Utrecht\n", encoding="utf-8")
    t = parse_template({"mode": "replace", "identifiers": ["emailAddresses"],
                        "fields": {"title": "title", "emailAddresses": "email", "website": "website",
                                   "address.street": "street", "address.city": "city"}})
    p = plan(sheet, t, client)
    (op,) = p.operations
    assert op.method == "PUT" and op.cleared == ["address.street", "website"]
    assert op.body["description"] == "kept: unmapped" and op.body["title"] == "New"
    text = render_plan(p)  # each cleared field once: on its change line, or on a line of its own
    assert '      website: "https://old.example" → null (cleared)' in text
    assert "      address.street: cleared by PUT" in text and "website: cleared by PUT" not in text
    apply(p, client, journal_file=tmp_path / "j.jsonl")
    rec = client.get(op.path)
    assert rec["title"] == "New" and "website" not in rec and rec["description"] == "kept: unmapped"
    assert not rec["address"].get("street") and rec["address"]["city"] == "Utrecht"


def test_ambiguous_match_is_a_conflict(crm, client, tmp_path):
    crm.seed({"organizations": [{"title": "A", "emailAddresses": [{"email": "a@x.example"}]},
                                {"title": "B", "phoneNumbers": [{"phoneNumber": "+31205550101"}]}]})
    sheet = tmp_path / "a.csv"
    sheet.write_text("title,email,phone\nAB,a@x.example,+31 20 555 0101\n", encoding="utf-8")
    t = parse_template({"identifiers": ["emailAddresses", "phoneNumbers"],
                        "fields": {"title": "title", "emailAddresses": "email", "phoneNumbers": "phone"}})
    p = plan(sheet, t, client)
    assert p.rows[0]["op"] == "conflict" and "2 records" in p.rows[0]["note"]
    assert p.operations == []
    # each record named with its title, so the user sees which organizations they are
    assert re.search(r'emailAddresses a@x.example -> /organizations/\S+ "A"; '
                     r'phoneNumbers \+31205550101 -> /organizations/\S+ "B"', p.rows[0]["note"]), p.rows[0]["note"]
    (issue,) = p.issues  # names one identifier involved: its column, cell and value
    assert (issue["type"], issue["column"], issue["cell"], issue["value"]) == (
        "ambiguous-match", "email", "B2", "a@x.example")


def test_a_template_without_identifiers_refuses_to_upsert(crm, client, tmp_path):
    from bulkcrm.errors import TemplateError
    sheet = tmp_path / "n.csv"
    sheet.write_text("title\nA\n", encoding="utf-8")
    t = parse_template({"fields": {"title": "title"}}, path="n.yaml")
    with pytest.raises(TemplateError, match="every run would create every row again"):
        plan(sheet, t, client)
    assert plan(sheet, t, client, mode="create-only").counts()["create"] == 1


def test_plan_text_names_invalid_reasons_tag_creations_and_the_real_rate(crm, client, tmp_path):
    from bulkcrm.plan import render_plan
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc["fields"]["tags"] = {"column": "tags", "lookup": {"create_missing": True}}
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\nA,a@x.example,,,,,,,,,,,New tag\n,b@x.example,,,,,,,,,,,\n", encoding="utf-8")
    text = render_plan(plan(sheet, parse_template(doc, path="x"), client), requests_per_minute=None)
    assert '+ tag "New tag" (create_missing)' in text
    assert "2 write request(s) (1 of them for the new tag(s))" in text  # the row's POST and the tag's
    assert "✗ row 3 invalid" in text and "t.csv:3:title" in text
    assert "at 20/min on the real API (the embedded sandbox has no limit)" in text
    # a create shows what its POST sends (title on its own line above), tags by name
    lines = text.splitlines()
    at = lines.index('  + row 2 create "A"')
    assert lines[at + 1:at + 3] == ['      emailAddresses: [{"email":"a@x.example"}]',
                                    '      tags: ["New tag (new tag)"]']


def test_the_summary_counts_the_tags_the_run_created(crm, client, tmp_path):
    """`create_missing` tags have no input row: the summary (terminal, Summary sheet, JSON)
    counts them apart, so "created 2" is not read as all that was made."""
    from bulkcrm.report import render_summary, write_report
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc["fields"]["tags"] = {"column": "tags", "split": ";", "lookup": {"create_missing": True}}
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\nA,a@x.example,,,,,,,,,,,New;Newer\nB,b@x.example,,,,,,,,,,,New\n",
                     encoding="utf-8")
    report = apply(plan(sheet, parse_template(doc, path="x"), client), client,
                   journal_file=tmp_path / "j.jsonl", fresh=True)
    assert report.counts()["created"] == 2 and report.summary["tags_created"] == 2
    assert "created 2," in render_summary(report) and "\ntags created: 2\n" in render_summary(report)
    assert report.to_dict()["summary"]["tags_created"] == 2
    write_report(report, tmp_path / "out")
    from openpyxl import load_workbook
    items = {r[0]: r[1] for r in load_workbook(tmp_path / "out" / "report.xlsx")["Summary"].iter_rows(values_only=True)}
    assert items["tags_created"] == 2


def test_plan_names_the_sheets_columns_the_template_does_not_read(crm, client, tmp_path):
    """A column the user meant to load but did not map (`state`) is named in the plan, so its
    values are not dropped unseen; the columns a with-status copy adds are not."""
    from bulkcrm.plan import render_plan
    tpl = parse_template({"resource": "organizations", "identifiers": ["emailAddresses"],
                          "fields": {"title": "name", "emailAddresses": "email"}}, path="s.yaml", sha256="t")
    sheet = tmp_path / "s.csv"
    sheet.write_text("name,email,state,crm_iri,bulkcrm_status,bulkcrm_note\nA,a@x.example,NSW,,,\n",
                     encoding="utf-8")
    p = plan(sheet, tpl, client)
    (note,) = [n for n in p.notes if n.startswith("unmapped")]
    assert note.startswith("unmapped column 'state': the template does not read it, so nothing of it is sent")
    assert f"  note: {note}" in render_plan(p)
    sheet.write_text("name,email\nA,a@x.example\n", encoding="utf-8")
    assert not [n for n in plan(sheet, tpl, client).notes if n.startswith("unmapped")]


def test_create_missing_creates_no_tag_that_only_unwritten_rows_need(crm, client, tmp_path):
    """A new tag named only by rows in conflict (two rows share an e-mail) is not created:
    nothing would carry it."""
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc["fields"]["tags"] = {"column": "tags", "lookup": {"create_missing": True}}
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\nA,a@x.example,,,,,,,,,,,Kept\nB,b@x.example,,,,,,,,,,,Orphan\n"
                     "B2,b@x.example,,,,,,,,,,,\n", encoding="utf-8")
    p = plan(sheet, parse_template(doc, path="x"), client)
    assert [o.body["title"] for o in p.operations if o.path == "/tags"] == ["Kept"]
    assert p.counts()["conflict"] == 2


def test_a_sheet_without_rows_says_so_in_the_plan_text(crm, client, tmp_path):
    from bulkcrm.plan import render_plan
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\n", encoding="utf-8")
    text = render_plan(plan(sheet, template(), client))
    assert "note: the input has no rows under its header: nothing to do" in text


def test_rows_pasted_twice_are_named_as_the_same_in_every_field(crm, client, tmp_path):
    """Both copies of a row are a duplicate-row conflict (never guessed); when they are the same
    in every field the message says so, and that keeping one is the fix."""
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\nA,a@x.example,,,,,,,,,,,\nB,b@x.example,,,,,,,,,,,\nA,a@x.example,,,,,,,,,,,\n"
                     "C,b@x.example,,,,,,,,,,,\n", encoding="utf-8")
    p = plan(sheet, template(), client)
    notes = {r["row_number"]: r["note"] for r in p.rows}
    assert p.counts()["conflict"] == 4
    assert notes[2] == notes[4] == ("rows 2, 4 share emailAddresses a@x.example (the rows are the same in every "
                                    "column the template reads: keep one)")
    assert notes[3] == notes[5] == "rows 3, 5 share emailAddresses b@x.example (they differ in title)"


def test_plan_text_lists_rows_that_will_not_be_written_before_the_limit(crm, client, tmp_path):
    from bulkcrm.plan import render_plan
    lines = [f"Org {i},o{i}@x.example,,,,,,,,,,," for i in range(60)] + [",late@x.example,,,,,,,,,,,"]
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\n" + "\n".join(lines) + "\n", encoding="utf-8")
    text = render_plan(plan(sheet, template(), client), limit=5)
    shown = [ln for ln in text.splitlines() if ln.startswith(("  + row", "  ✗ row"))]
    assert shown[0] == "  ✗ row 62 invalid" and len(shown) == 5
    assert "t.csv:62:title" in text
    assert "  … 56 more: 56 create (see the plan file or the report)" in text  # what they are


def test_apply_of_a_file_that_is_not_a_plan_says_so(tmp_path):
    from bulkcrm.errors import PlanError
    from bulkcrm.plan import Plan
    sheet = tmp_path / "orgs.csv"
    sheet.write_text("title\nA\n", encoding="utf-8")
    with pytest.raises(PlanError, match=r"orgs.csv: not a bulkcrm plan file \(not JSON\); pass the file "
                                        r"`bulkcrm plan --out` wrote"):
        Plan.load(sheet)


def test_reconcile_estimate_is_what_apply_spends_for_records_without_searchable_identifiers(
        crm, client, tmp_path):
    crm.seed({"organizations": [{"title": f"Old {i}", "customerId": f"C{i}"} for i in range(10)]})
    sheet = tmp_path / "c.csv"
    sheet.write_text("name,cid\n" + "".join(f"New {i},N{i}\n" for i in range(40)), encoding="utf-8")
    tpl = parse_template({"resource": "organizations", "identifiers": ["customerId"],
                          "fields": {"title": "name", "customerId": "cid"}}, path="c.yaml", sha256="t")
    p = plan(sheet, tpl, client)
    assert p.strategy == "scan" and p.records_total == 10
    report = apply(p, client, journal_file=tmp_path / "c.journal.jsonl", fresh=True)  # as import does
    spent_reconciling = report.summary["requests"] - len(p.operations)
    assert p.estimate()["reconcile"] == spent_reconciling == 1 + 2  # a count, then 50 records in 2 pages


def test_estimate_counts_the_reads_apply_of_a_saved_plan_makes_before_writing(crm, client, tmp_path):
    """`apply PLAN` first counts the organizations created since the plan (it creates some)
    and re-reads the records it updates (drift check): the plan's estimate counts both, and
    the text of `bulkcrm plan` shows them; an import's fresh plan skips them."""
    from bulkcrm.plan import Plan
    old = "2026-01-01T00:00:00+00:00"  # seeded long before the plan: not "created since"
    crm.seed({"organizations": [{"title": f"Org {i}", "emailAddresses": [{"email": f"o{i}@x.example"}],
                                 "createdAt": old} for i in range(70)]})
    sheet = tmp_path / "s.csv"
    sheet.write_text("name,email\n" + "".join(f"Org {i} BV,o{i}@x.example\n" for i in range(65))
                     + "New A,a@new.example\nNew B,b@new.example\n", encoding="utf-8")
    tpl = parse_template({"resource": "organizations", "identifiers": ["emailAddresses"],
                          "fields": {"title": "name", "emailAddresses": "email"}}, path="s.yaml", sha256="t")
    p = plan(sheet, tpl, client, strategy="scan")
    assert p.counts()["patch"] == 65 and p.counts()["create"] == 2
    est = p.estimate()
    # the creates since the plan: a count; the drift check: a count (a listing may pay), then
    # 65 e-mails in 3 lookups (listing 70 records: 3 pages, no fewer)
    assert est["checks"] == 1 + 1 + 3
    path = p.save(tmp_path / "plan.json")
    before = len(crm.requests)
    apply(Plan.load(path), client, plan_path=path, reconcile=False)
    sent = crm.requests[before:]
    first_write = next(i for i, r in enumerate(sent) if r.method != "GET")
    assert first_write == est["checks"] and len(sent) == first_write + est["requests"]
    assert f"67 write request(s) + ≈5 to check the records first + ≈{est['reconcile']} to reconcile" in \
        render_plan(p, checks=True)
    assert "to check the records first" not in render_plan(p)  # import: a fresh plan


def test_lookup_is_refused_for_an_identifier_without_an_api_filter(crm, client, tmp_path):
    """customerId has no API filter (crm-api.md §8.3): `--match-strategy lookup` could not find
    the record holding it and would plan a duplicate; it is refused before any request, and
    auto's note says why it lists every record instead."""
    from bulkcrm.errors import TemplateError
    crm.seed({"organizations": [{"title": "Acme", "customerId": "ACME", "emailAddresses": [{"email": "old@acme.example"}]}]})
    sheet = tmp_path / "c.csv"
    sheet.write_text("name,cid,email\nAcme BV,ACME,new@acme.example\n", encoding="utf-8")
    tpl = parse_template({"resource": "organizations", "identifiers": ["customerId", "emailAddresses"],
                          "fields": {"title": "name", "customerId": "cid", "emailAddresses": "email"}},
                         path="c.yaml", sha256="t")
    sent = client.requests_sent
    with pytest.raises(TemplateError, match=r"--match-strategy lookup cannot match on customerId: the API has "
                                            r"no filter for it .* use --match-strategy scan, or auto"):
        plan(sheet, tpl, client, strategy="lookup")
    assert client.requests_sent == sent
    p = plan(sheet, tpl, client)  # auto
    assert p.strategy == "scan" and p.counts()["patch"] == 1 and p.counts()["create"] == 0
    assert any("a lookup cannot match on customerId: the API has no filter for it" in n for n in p.notes)


def test_a_value_that_lost_its_leading_zeros_leaves_the_record_as_it_is(crm, client, tmp_path):
    """A CSV saved by a spreadsheet holds 5021 for the postal code 05021 (BR-05): not a change
    (the record keeps 05021, with a warning naming the cell); another value is one. A code of
    zeros alone (00000) is a number cell's 0 (trial 2026-12-02: 46 records patched to "0")."""
    crm.seed({"organizations": [
        {"title": f"Org {i}", "customerId": f"C{i}", "address": {"postalCode": pc, "country": "US"}}
        for i, pc in enumerate(["05021", "05021", "0042", "12345", "00000", "00000"])]})
    sheet = tmp_path / "zips.csv"
    sheet.write_text("name,cid,zip\nOrg 0,C0,5021\nOrg 1,C1,5022\nOrg 2,C2,42\nOrg 3,C3,012345\n"
                     "Org 4,C4,0\nOrg 5,C5,00\n", encoding="utf-8")
    tpl = parse_template({"resource": "organizations", "identifiers": ["customerId"], "fields": {
        "title": "name", "customerId": "cid", "address.postalCode": "zip"}}, path="z.yaml", sha256="t")
    p = plan(sheet, tpl, client)
    assert [(r["row_number"], r["op"]) for r in p.rows] == [(2, "unchanged"), (3, "patch"), (4, "unchanged"),
                                                            (5, "patch"), (6, "unchanged"), (7, "patch")]
    warned = [(i["row_number"], i["column"], i["value"], i["cell"]) for i in p.issues if i["type"] == "leading-zero"]
    assert warned == [(2, "zip", "5021", "C2"), (4, "zip", "42", "C4"), (6, "zip", "0", "C6")]
    # a PUT (mode: replace) keeps them too (review: it sent "0" beside the warning)
    put = parse_template({"resource": "organizations", "mode": "replace", "identifiers": ["customerId"], "fields": {
        "title": "name", "customerId": "cid", "address.postalCode": "zip"}}, path="z.yaml", sha256="t")
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(sheet.read_text(encoding="utf-8").replace("Org ", "Firm "), encoding="utf-8")
    q = plan(renamed, put, client)
    bodies = {o.row_numbers[0]: o.body for o in q.operations}
    assert {rn: b["address"]["postalCode"] for rn, b in bodies.items()} == {
        2: "05021", 3: "5022", 4: "0042", 5: "012345", 6: "00000", 7: "00"}
    assert 'zips.csv:2:zip: "5021" is the record\'s "05021" without its leading zero(s)' in p.issues[0]["message"]


def test_a_blank_cell_that_leaves_a_value_as_stored_is_named_in_the_plan(crm, client, tmp_path):
    """Ops staff blank a cell to delete a value: under `empty: ignore` (patch mode's default)
    the record keeps it, so the plan says which rows and fields, and how to clear them; under
    `empty: clear` the same sheet patches them to null. A merge list keeps its items anyway."""
    crm.seed({"organizations": [
        {"title": f"Org {i}", "customerId": f"C{i}", "website": f"https://o{i}.example",
         "description": "kept", "emailAddresses": [{"email": f"o{i}@x.example"}]} for i in range(3)]})
    sheet = tmp_path / "week2.csv"
    sheet.write_text("name,cid,site,about,email\nOrg 0,C0,,kept,o0@x.example\n"
                     "Org 1,C1,https://o1.example,,\nOrg 2,C2,https://o2.example,kept,o2@x.example\n",
                     encoding="utf-8")
    fields = {"title": "name", "customerId": "cid", "website": "site", "description": "about",
              "emailAddresses": "email"}
    tpl = parse_template({"resource": "organizations", "identifiers": ["customerId"], "fields": fields},
                         path="w.yaml", sha256="t")
    p = plan(sheet, tpl, client)
    assert [r["op"] for r in p.rows] == ["unchanged"] * 3
    (note,) = [n for n in p.notes if n.startswith("blank")]
    assert note == ("blank cells leave 2 field value(s) as stored (row 2 website, row 3 description): the "
                    "template has `empty: ignore`; to clear a field from a blank cell, set `empty: clear` "
                    "(for the whole template: then every blank cell of a single-value field clears it)")
    assert f"  note: {note}" in render_plan(p)
    cleared = plan(sheet, parse_template({"resource": "organizations", "identifiers": ["customerId"],
                                          "empty": "clear", "fields": fields}, path="w.yaml", sha256="t"), client)
    assert [(r["row_number"], r["op"]) for r in cleared.rows if r["op"] == "patch"] == [(2, "patch"), (3, "patch")]
    assert not [n for n in cleared.notes if n.startswith("blank")]


def test_plan_text_and_report_sheets_show_tag_names_not_iris(crm, client, tmp_path):
    from bulkcrm.plan import Plan, render_plan
    from bulkcrm.report import write_report
    crm.seed({"tags": [{"@id": "/tags/1", "title": "VIP"}, {"@id": "/tags/2", "title": "Old"}],
              "organizations": [{"@id": "/organizations/00000000-0000-4000-8000-00000000000a", "title": "A",
                                 "emailAddresses": [{"email": "a@x.example"}], "tags": ["/tags/2"]}]})
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc["fields"]["tags"] = {"column": "tags", "split": ";", "policy": "replace",
                             "lookup": {"create_missing": True}}
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\nA,a@x.example,,,,,,,,,,,vip;Café neuf\n", encoding="utf-8")
    p = plan(sheet, parse_template(doc, path="x"), client)
    assert p.names == {"/tags/1": "VIP", "/tags/2": "Old", "$ref:tag:Café neuf": "Café neuf (new tag)"}
    assert 'tags: ["Old"] → ["VIP","Café neuf (new tag)"]' in render_plan(p)
    assert Plan.load(p.save(tmp_path / "plan.json")).names == p.names
    report = apply(p, client, journal_file=tmp_path / "j.jsonl")
    paths = write_report(report, tmp_path / "r")
    import csv as _csv
    (line,) = _csv.DictReader(paths["csv"].open(encoding="utf-8"))
    assert line["changes"] == 'tags: ["Old"] → ["VIP","Café neuf (new tag)"]'

    saved = json.loads(paths["json"].read_text(encoding="utf-8"))  # the machine-readable file keeps IRIs
    assert saved["rows"][0]["changes"][0]["before"] == ["/tags/2"]
    new_tag = next(t["@id"] for t in client.list_all("/tags") if t["title"] == "Café neuf")
    assert saved["rows"][0]["changes"][0]["after"] == ["/tags/1", new_tag]


def test_tags_to_create_come_in_the_order_the_sheet_first_uses_them(crm, client, tmp_path):
    """The same sheet plans the same operations in the same order, run after run."""
    doc = json.loads(json.dumps(CASES_TEMPLATE))
    doc["fields"]["tags"] = {"column": "tags", "split": ";", "lookup": {"create_missing": True}}
    names = [f"t{i}" for i in (7, 3, 9, 1, 5, 8, 2, 6, 4)]
    sheet = tmp_path / "t.csv"
    lines = [f"O{i},o{i}@x.example,,,,,,,,,,,{names[i]};{names[-1 - i]}" for i in range(len(names))]
    sheet.write_text("title,email,phone,phone_type,website,kvk_number,linkedin,street,postal_code,city,country,"
                     "owner,tags\n" + "\n".join(lines) + "\n", encoding="utf-8")
    p = plan(sheet, parse_template(doc, path="x"), client)
    first_use = dict.fromkeys(n for i in range(len(names)) for n in (names[i], names[-1 - i]))
    assert [o.key for o in p.operations if o.path == "/tags"] == [f"tag:{n}" for n in first_use]


def test_spaces_around_a_description_are_no_change(crm, client, tmp_path):
    """A description is trimmed like every other text field (its line breaks kept): spaces an
    editor left around it plan no write; a real edit does."""
    crm.seed({"organizations": [{"title": "A", "emailAddresses": [{"email": "a@x.example"}],
                                 "description": "multi\nline desc"}]})
    t = parse_template({"identifiers": ["emailAddresses"],
                        "fields": {"title": "title", "emailAddresses": "email", "description": "d"}})
    sheet = tmp_path / "d.csv"
    sheet.write_text('title,email,d\nA,a@x.example," multi\nline desc  "\n', encoding="utf-8")
    assert plan(sheet, t, client).counts()["unchanged"] == 1
    sheet.write_text('title,email,d\nA,a@x.example," multi\nline text "\n', encoding="utf-8")
    (op,) = plan(sheet, t, client).operations
    assert op.body == {"description": "multi\nline text"}


def test_an_optional_column_a_sheet_lacks_leaves_its_field_alone(crm, client, tmp_path):
    """`optional: true`: one template for sheets with and without a column; without it the
    field is neither compared nor sent, in any mode; with it, it is."""
    crm.seed({"organizations": [{"title": "A", "emailAddresses": [{"email": "a@x.example"}],
                                 "chamberOfCommerceNumber": "12345678", "website": "https://a.example"}]})
    doc = {"identifiers": ["emailAddresses"],
           "fields": {"title": "title", "emailAddresses": "email", "website": "web",
                      "chamberOfCommerceNumber": {"column": "kvk", "optional": True}}}
    for mode in ("patch", "replace"):
        t = parse_template({**doc, "mode": mode})
        without = tmp_path / f"without-{mode}.csv"
        without.write_text("title,email,web\nA,a@x.example,https://b.example\n", encoding="utf-8")
        p = plan(without, t, client)
        (op,) = p.operations
        assert "chamberOfCommerceNumber" not in [c["field"] for c in op.changes]
        if mode == "replace":  # the PUT keeps the record's value
            assert op.body["chamberOfCommerceNumber"] == "12345678" and op.cleared == []
        assert "optional column 'kvk' is not in the sheet: chamberOfCommerceNumber is left as it is" \
            in render_plan(p)
    with_col = tmp_path / "with.csv"
    with_col.write_text("title,email,web,kvk\nA,a@x.example,https://a.example,87654321\n", encoding="utf-8")
    (op,) = plan(with_col, parse_template(doc), client).operations
    assert op.body == {"chamberOfCommerceNumber": "87654321"}


def test_optional_is_refused_where_a_missing_column_would_lose_data():
    with pytest.raises(TemplateError, match="clear_unmapped"):
        parse_template({"mode": "replace", "clear_unmapped": True,
                        "fields": {"title": "t", "website": {"column": "w", "optional": True}}})
    with pytest.raises(TemplateError, match="title is required by the API"):
        parse_template({"fields": {"title": {"column": "t", "optional": True}}})
    note_fields = {"description": "Notes", "category": {"value": "Note", "lookup": True}}
    with pytest.raises(TemplateError, match="description is required by the API"):
        parse_template({"fields": {"title": "t", "emailAddresses": "e"}, "notes": {"fields": {
            **note_fields, "description": {"column": "Notes", "optional": True}}}})
    with pytest.raises(TemplateError, match="optional columns are for organization fields"):
        parse_template({"fields": {"title": "t", "emailAddresses": "e"}, "notes": {"fields": {
            **note_fields, "title": {"column": "Subject", "optional": True}}}})


def test_a_list_missing_an_optional_column_is_merged_not_replaced(crm, client, tmp_path):
    """A list the sheet replaces (mode replace, or policy replace) that loses an optional
    column is merged from the other columns: replaced, it would drop the missing one's items.
    It still serves as an identifier."""
    crm.seed({"organizations": [{"title": "A", "emailAddresses": [{"email": "a@x.example"}, {"email": "b@x.example"}],
                                 "phoneNumbers": [{"phoneNumber": "+31205550101", "phoneType": "work"},
                                                  {"phoneNumber": "+31612345678", "phoneType": "mobile"}]}]})
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,e1,p1\nA2,a@x.example,+31 20 555 0101\n", encoding="utf-8")
    fields = {"title": "title", "emailAddresses": [{"column": "e1"}, {"column": "e2", "optional": True}],
              "phoneNumbers": [{"column": "p1", "type": "work"}, {"column": "mob", "type": "mobile", "optional": True}]}
    p = plan(sheet, parse_template({"mode": "replace", "identifiers": ["emailAddresses"], "fields": fields}), client)
    (op,) = p.operations
    assert op.method == "PUT" and op.body["title"] == "A2" and op.cleared == []
    assert [e["email"] for e in op.body["emailAddresses"]] == ["a@x.example", "b@x.example"]
    assert len(op.body["phoneNumbers"]) == 2
    assert "emailAddresses comes from its other columns, merged with the record's" in render_plan(p)
    patch = plan(sheet, parse_template({"identifiers": ["emailAddresses"], "fields": {
        **fields, "phoneNumbers": [{"column": "p1", "type": "work", "policy": "replace"},
                                   {"column": "mob", "type": "mobile", "optional": True}]}}), client)
    assert patch.operations[0].body == {"title": "A2"}  # nothing new, nothing dropped


def test_an_optional_phone_sources_absent_type_column_leaves_its_numbers_untyped(client, tmp_path):
    from bulkcrm.plan import render_plan
    sheet = tmp_path / "s.csv"
    sheet.write_text("title,email,phone\nA,a@x.example,+31 20 123 4567\n", encoding="utf-8")
    t = parse_template({"identifiers": ["emailAddresses"], "fields": {
        "title": "title", "emailAddresses": "email",
        "phoneNumbers": {"column": "phone", "type_column": "phone_type", "optional": True}}})
    p = plan(sheet, t, client)
    assert p.operations[0].body["phoneNumbers"] == [{"phoneNumber": "+31201234567"}]
    assert "optional column 'phone_type' is not in the sheet: the phoneNumbers of column 'phone' go " \
           "without a type" in render_plan(p)


def test_a_sheet_missing_every_optional_identifier_column_is_told_so(client, tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("title\nA\n", encoding="utf-8")
    t = parse_template({"identifiers": ["emailAddresses"],
                        "fields": {"title": "title", "emailAddresses": {"column": "email", "optional": True},
                                   "website": {"column": "web", "optional": True}}})
    # only the identifiers' columns are named (the website's is absent too, but matches nothing)
    with pytest.raises(TemplateError, match="its identifiers' optional column\\(s\\) 'email' are not in s.csv"):
        plan(sheet, t, client)


def test_a_long_matching_step_says_what_it_will_spend(crm, tmp_path, caplog):
    """Planning at the real pace is silent while it looks records up: a log line (the CLI shows
    it on stderr) says first how many requests and minutes (a shorter window keeps this quick)."""
    import yaml

    from bulkcrm.client import Client
    from tests.conftest import REPO, TEST_KEY
    client = Client(crm.url, TEST_KEY, requests_per_minute=2, window_s=0.2)
    doc = yaml.safe_load((REPO / "templates" / "organizations.yaml").read_text(encoding="utf-8"))
    doc["identifiers"] = ["phoneNumbers"]  # customerId has no API filter: only a scan matches on it
    with caplog.at_level("INFO", logger="bulkcrm"):
        p = plan(REPO / "samples" / "organizations.csv", parse_template(doc, path="o.yaml", sha256="t"),
                 client, strategy="lookup")
    lookups = p.requests_spent
    assert lookups >= 2 and [r.getMessage() for r in caplog.records if r.name == "bulkcrm.match"] == [
        f"matching: {lookups} requests (lookup) ≈ {round(lookups / 2, 1)} min at 2/min …"]


def test_durations_of_90_minutes_and_more_are_given_in_hours():
    from bulkcrm.planfile import duration_text
    assert (duration_text(3.4), duration_text(89.9), duration_text(1066.2)) == ("3.4 min", "89.9 min", "17.8 h")


@pytest.mark.parametrize("typo", ["email", "country"])
def test_an_invalid_row_still_claims_its_record(crm, client, tmp_path, typo):
    """A row not written because a cell is invalid still claims the record its IRI and
    identifiers name: another row sharing one of them is a conflict, not a patch that takes
    the record over (a trial: an export's row with a typo, and a new row with one of its
    e-mails, renamed the exported organization)."""
    iri = "/organizations/6f1c2a4e-0011-4000-8000-000000000777"
    crm.seed({"organizations": [{"@id": iri, "title": "Crosby Inc", "emailAddresses": [
        {"email": "b@crosby.example"}, {"email": "hunter@crosby.example"}]}]})
    # (a website typo no longer serves: the API takes any text as a website, crm-api.md §8.1)
    bad = {"email": ("b@crosby; hunter@crosby.example", "NL"),
           "country": ("b@crosby.example; hunter@crosby.example", "Untied States")}[typo]
    sheet = tmp_path / "w.csv"
    sheet.write_text("crm_iri,title,email,country\n"
                     f'{iri},Crosby Inc,"{bad[0]}",{bad[1]}\n'
                     ",Dup Email Co,hunter@crosby.example,\n", encoding="utf-8")
    t = parse_template({"identifiers": ["emailAddresses"], "fields": {
        "title": "title", "emailAddresses": {"column": "email", "split": ";"}, "address.country": "country"}})
    p = plan(sheet, t, client)
    assert [r["op"] for r in p.rows] == ["invalid", "conflict"]
    assert p.operations == []
    assert "rows 2, 3" in p.rows[1]["note"] and "hunter@crosby.example" in p.rows[1]["note"]
    assert client.get(iri)["title"] == "Crosby Inc"


def test_an_exports_iri_column_does_not_inflate_the_lookup_estimate(crm, client, tmp_path):
    """A re-imported export names each row's record by IRI and by its identifiers: the lookup
    finds the records by their identifiers and sends no GET per IRI, so the cost model must not
    count one (a trial: "lookup would cost 98" for 91 rows, which took 7; it chose a scan)."""
    orgs = [{"@id": f"/organizations/6f1c2a4e-0011-4000-8000-{i:012d}", "title": f"Org {i}",
             "emailAddresses": [{"email": f"info@org{i}.example"}]} for i in range(100)]
    crm.seed({"organizations": orgs})
    sheet = tmp_path / "export.csv"
    sheet.write_text("crm_iri,title,email\n" + "".join(
        f"{o['@id']},Org {i},info@org{i}.example\n" for i, o in enumerate(orgs[:20])), encoding="utf-8")
    t = parse_template({"identifiers": ["emailAddresses"], "fields": {"title": "title", "emailAddresses": "email"}})
    crm.clear_log()
    p = plan(sheet, t, client)
    assert p.strategy == "lookup" and p.counts()["unchanged"] == 20
    assert len(crm.requests) == p.requests_spent == 1  # one identifiers[] request of 20 values


def test_create_missing_makes_one_tag_of_names_that_differ_in_case_or_spaces(crm, client, tmp_path):
    """Names are looked up ignoring case and runs of spaces, so they are created so too: one
    tag for `partnership`, `Partnership` and `partnership ` (a trial made two, and the next run
    found each name ambiguous), titled as first written, spaces squished."""
    doc = {"identifiers": ["emailAddresses"], "fields": {
        "title": "title", "emailAddresses": "email",
        "tags": [{"column": "kind", "lookup": {"create_missing": True}},
                 {"column": "category", "lookup": {"create_missing": True}}]}}
    sheet = tmp_path / "t.csv"
    sheet.write_text("title,email,kind,category\n"
                     "A,a@x.example,partnership,Architecture  Planning\n"
                     "B,b@x.example,Partnership,architecture planning\n"
                     "C,c@x.example,,PARTNERSHIP;partnership\n", encoding="utf-8")
    t = parse_template(doc, path="x")
    p = plan(sheet, t, client)
    assert p.operations[-1].body["tags"] == ["$ref:tag:partnership"]  # one name twice: listed once
    assert [o.key for o in p.operations if o.path == "/tags"] == ["tag:partnership", "tag:Architecture Planning"]
    assert apply(p, client, journal_file=tmp_path / "j.jsonl").ok
    assert sorted(tag["title"] for tag in client.list_all("/tags")) == ["Architecture Planning", "partnership"]
    again = plan(sheet, t, client)
    assert again.counts()["unchanged"] == 3 and not again.issues
    # a name no tag has is named in the column that holds it (tags come from two columns)
    for source in doc["fields"]["tags"]:  # a field's lookup, on each source alike
        source["lookup"] = True
    sheet.write_text("title,email,kind,category\nA,a@x.example,partnership,Nope\n", encoding="utf-8")
    (issue,) = plan(sheet, parse_template(doc, path="x"), client).issues
    assert (issue["column"], issue["cell"], issue["value"]) == ("category", "D2", "Nope")


@pytest.mark.parametrize("order", [[2, 5, 9, 11], [9, 2, 11, 5]])
def test_plan_rows_take_each_operation_by_row_number_in_either_row_order(order):
    """`_at_rows` spreads a frame of some rows over all rows, by row number: the rows it lacks
    get the blank values (empty lists), in sorted (search) and unsorted (join) row order."""
    import polars as pl

    from bulkcrm.plan import _at_rows
    rn = pl.Series("row_number", order, dtype=pl.Int64)
    some = pl.DataFrame({"row_number": [11, 5], "op": ["patch", "create"], "cleared": [["a"], []]},
                        schema={"row_number": pl.Int64, "op": pl.String, "cleared": pl.List(pl.String)})
    out = _at_rows(rn, some, {"cleared": []})
    by_row = dict(zip(order, out.iter_rows()))
    assert by_row == {2: (None, []), 5: ("create", []), 9: (None, []), 11: ("patch", ["a"])}


def test_repeated_finds_values_given_twice_also_64_bit_hashes():
    """`match._repeated` (the duplicate-row checks' first pass) on identifier hashes: UInt64
    values past Int64's range, where a `diff` would be null."""
    import polars as pl

    from bulkcrm.match import _repeated
    big = 18_446_744_073_709_551_000
    values = pl.Series([big, 5, None, big, 7, 5, 5], dtype=pl.UInt64)
    assert sorted(_repeated(values).to_list()) == [5, big]
    assert _repeated(pl.Series([1, 2, 3], dtype=pl.UInt32)).to_list() == []
