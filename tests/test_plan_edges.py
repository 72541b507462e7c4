"""Planner and template edge cases from a review of matching, the diff and the request bodies,
and from a first-time user's trial (2026-12-01): each test gives the documented outcome (README,
crm-api.md) of a case the other tests did not cover."""
from __future__ import annotations

import csv

import pytest

from bulkcrm import diff
from bulkcrm.apply import apply
from bulkcrm.plan import Plan, plan
from bulkcrm.template import parse_template

A = "/organizations/00000000-0000-4000-8000-00000000000a"
B = "/organizations/00000000-0000-4000-8000-00000000000b"


def sheet(tmp_path, rows):
    p = tmp_path / "s.csv"
    with p.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return p


def tpl(**doc):
    return parse_template({"resource": "organizations", **doc}, path="t.yaml", sha256="t")


def test_a_put_is_drifted_when_an_unmapped_field_changed_after_the_plan(crm, client, tmp_path):
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}],
                                 "description": "v1", "createdAt": "2020-01-01T00:00:00+00:00"}]})
    t = tpl(mode="replace", identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["name", "email"], ["A2", "a@a.nl"]]), t, client)
    client.patch(A, {"description": "v2 (a colleague, after the plan)"})
    report = apply(p, client, journal_file=tmp_path / "j.jsonl")
    # the PUT would set description back to v1: the row is drifted, v2 stays
    assert client.get(A)["description"] == "v2 (a colleague, after the plan)", report.counts()
    assert report.counts()["drifted"] == 1 and "description" in report.rows["note"][0]


def test_a_records_national_phone_without_a_country_matches_in_the_default_region(crm, client, tmp_path):
    crm.seed({"organizations": [{"@id": A, "title": "A", "phoneNumbers": [{"phoneNumber": "020 123 4567"}]}]})
    t = tpl(identifiers=["phoneNumbers"], default_region="NL", fields={"title": "name", "phoneNumbers": "phone"})
    p = plan(sheet(tmp_path, [["name", "phone"], ["A", "020 123 4567"]]), t, client, strategy="scan")
    assert [(r["op"], r["iri"]) for r in p.rows] == [("unchanged", A)]


def test_an_identifier_that_lost_its_leading_zero_is_a_possible_duplicate(crm, client, tmp_path):
    """A KvK number typed into a spreadsheet loses its leading 0: the row creates a new
    organization (`0123` and `123` may be two ids, so it is not matched on it), with a
    `possible-duplicate` warning naming the record that holds the number with its zero."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "chamberOfCommerceNumber": "02012345"},
                                {"@id": B, "title": "B", "chamberOfCommerceNumber": "123"}]})
    t = tpl(identifiers=["chamberOfCommerceNumber"], fields={"title": "name", "chamberOfCommerceNumber": "kvk"})
    p = plan(sheet(tmp_path, [["name", "kvk"], ["A", "2012345"], ["B", "123"], ["C", "0123"]]), t, client)
    assert [(r["op"], r["iri"]) for r in p.rows] == [("create", None), ("unchanged", B), ("create", None)]
    (warning,) = p.issues
    assert (warning["type"], warning["row_number"], warning["column"]) == ("possible-duplicate", 2, "kvk")
    assert f"this row creates chamberOfCommerceNumber 2012345, but {A} holds 02012345" in warning["message"]


def test_record_phones_are_compared_in_the_records_country_when_it_is_not_mapped(crm, client, tmp_path):
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.be"}],
                                 "phoneNumbers": [{"phoneNumber": "02 123 45 67"}],
                                 "address": {"city": "Brussel", "country": "BE"}}]})
    t = tpl(identifiers=["emailAddresses"], default_region="NL",
            fields={"title": "name", "emailAddresses": "email", "phoneNumbers": "phone"})
    p = plan(sheet(tmp_path, [["name", "email", "phone"], ["A", "a@a.be", "+32 2 123 45 67"]]), t, client)
  
    assert [r["op"] for r in p.rows] == ["unchanged"], [o.body for o in p.operations]


def test_a_put_keeps_the_leading_zero_the_plan_says_stays(crm, client, tmp_path):
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}],
                                 "customerId": "05021"}]})
    t = tpl(mode="replace", identifiers=["emailAddresses"],
            fields={"title": "name", "emailAddresses": "email", "customerId": "cid"})
    p = plan(sheet(tmp_path, [["name", "email", "cid"], ["A2", "a@a.nl", "5021"]]), t, client)
    assert any(i["type"] == "leading-zero" for i in p.issues)  # "customerId stays 05021"
    assert p.operations[0].body["customerId"] == "05021"


def test_a_row_cannot_take_over_a_record_an_ambiguous_row_names(crm, client, tmp_path):
    crm.seed({"organizations": [
        {"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}, {"email": "a2@a.nl"}]},
        {"@id": B, "title": "B", "emailAddresses": [{"email": "b@b.nl"}]}]})
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["name", "email"], ["AB", "a@a.nl; b@b.nl"], ["A-new", "a2@a.nl"]]), t, client)
    assert [r["op"] for r in p.rows] == ["conflict", "conflict"]


def test_a_row_cannot_take_over_a_record_an_iri_mismatch_row_names(crm, client, tmp_path):
    crm.seed({"organizations": [
        {"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}]},
        {"@id": B, "title": "B", "emailAddresses": [{"email": "b@b.nl"}, {"email": "b2@b.nl"}]}]})
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["name", "email", "crm_iri"], ["X", "b@b.nl", A], ["B-new", "b2@b.nl", ""]]),
             t, client)
    assert [r["op"] for r in p.rows] == ["conflict", "conflict"]
    assert f"its crm_iri names {A}, but its emailAddresses b@b.nl belongs to {B}" in p.issues[0]["message"]


def test_a_field_option_on_a_later_source_is_refused():
    """`policy` (and lookup, required, max_length, render) belong to the whole field and are read
    from its first source: on a later source they were silently ignored (an e-mail list merged
    although the template said replace); now the template is refused, naming the key."""
    import pytest
    from bulkcrm.errors import TemplateError
    with pytest.raises(TemplateError, match=r"fields\.emailAddresses\[1\]\.policy: policy applies to the whole field"):
        tpl(identifiers=["emailAddresses"], fields={
            "title": "name", "emailAddresses": [{"column": "e1"}, {"column": "e2", "policy": "replace"}]})
    with pytest.raises(TemplateError, match=r"phoneNumbers\[1\]\.policy"):
        tpl(fields={"title": "name", "phoneNumbers": [{"column": "p1"}, {"column": "p2", "policy": "bogus"}]})
    same = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": [
        {"column": "e1", "policy": "replace"}, {"column": "e2", "policy": "replace"}]})
    assert same.mapping("emailAddresses").policy == "replace"  # repeated alike: fine


def test_a_put_that_resets_the_write_only_avatar_says_so(crm, client, tmp_path):
    """A PUT resets the fields it leaves out, and `avatar` is write-only (never returned), so a
    PUT built from the record resets it: the plan says so before anything is sent."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}],
                                 "avatar": "/media_objects/1"}]})
    t = tpl(mode="replace", identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["name", "email"], ["A2", "a@a.nl"]]), t, client)
    assert any(n.startswith("mode: replace: 1 PUT(s) reset the avatar") for n in p.notes), p.notes
    from bulkcrm.plan import render_plan
    assert "  note: mode: replace: 1 PUT(s) reset the avatar" in render_plan(p)  # shown, not only saved
    patch = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    assert not any("avatar" in n for n in plan(sheet(tmp_path, [["name", "email"], ["A2", "a@a.nl"]]), patch, client).notes)


def test_a_put_body_never_carries_json_ld_keys_of_an_unmapped_address():
    t = tpl(mode="replace", identifiers=["emailAddresses"], fields={"title": "title", "emailAddresses": "email"})
    record = {"@id": "/organizations/1", "title": "A", "emailAddresses": [{"email": "a@x.example"}],
              "address": {"@context": "/contexts/Address", "@id": "/.well-known/genid/9", "@type": "Address",
                          "street": "Oude Gracht 1"}}
    body, _, _ = diff.update({"title": "B", "emailAddresses": ["a@x.example"]}, record, ["title"], t)
    assert not any(k.startswith("@") for k in body["address"])


def test_fill_if_empty_fills_a_blank_record_value_under_put(crm, client, tmp_path):
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}],
                                 "website": "   "}]})
    t = tpl(mode="replace", identifiers=["emailAddresses"],
            fields={"title": "name", "emailAddresses": "email", "website": {"column": "w", "policy": "fill_if_empty"}})
    p = plan(sheet(tmp_path, [["name", "email", "w"], ["A", "a@a.nl", "https://a.nl"]]), t, client)
    (op,) = p.operations  # planned: a PUT (website is "empty" when compared) ...
    assert op.body["website"] == "https://a.nl", op.changes


def test_a_row_matched_by_a_shared_phone_with_another_customer_id_is_a_conflict(crm, client, tmp_path):
    """Identifiers customerId and phone: a new row (customerId 99) sharing a switchboard number
    with a record of customerId 1 was planned as a patch rewriting that record's title and
    customerId. A record holds one customerId (chamberOfCommerceNumber, linkedinId): another
    value is another organization, so the row is an `identifier-mismatch` conflict, never
    written; a record without one is filled."""
    crm.seed({"organizations": [
        {"@id": A, "title": "Exotic Liquids", "customerId": "SUP-1", "phoneNumbers": [{"phoneNumber": "+441715552222"}]},
        {"@id": B, "title": "Bare", "phoneNumbers": [{"phoneNumber": "+441715553333"}]}]})
    t = tpl(identifiers=["customerId", "phoneNumbers"], default_region="GB",
            fields={"title": "name", "customerId": "id", "phoneNumbers": "phone"})
    p = plan(sheet(tmp_path, [["name", "id", "phone"], ["Acme Foods", "SUP-99", "(171) 555-2222"],
                              ["Bare", "SUP-7", "(171) 555-3333"]]), t, client)
    assert [(r["op"], r["iri"]) for r in p.rows] == [("conflict", A), ("patch", B)]
    # (171) is London's code before 2000: the number also gets an unlikely-phone warning
    (issue,) = [i for i in p.issues if i["row_number"] == 2 and i["type"] != "unlikely-phone"]
    assert issue["type"] == "identifier-mismatch" and issue["column"] == "id" and issue["value"] == "SUP-99"
    assert f"it matches {A} by phoneNumbers +441715552222, but its customerId SUP-99 is not the record's SUP-1" \
        in issue["message"]
    assert [o.body for o in p.operations] == [{"customerId": "SUP-7"}]
    # the with-status copy leaves the conflict's crm_iri empty: imported again, the row is
    # still in conflict (with the record's IRI filled in it would have patched that record)
    from bulkcrm.read import read
    from bulkcrm.report import write_report
    src = tmp_path / "s.csv"
    write_report(apply(p, client, journal_file=tmp_path / "j.jsonl"), tmp_path / "r", input_sheet=read(src),
                 input_path=src)
    with (tmp_path / "r" / "s.with-status.csv").open(encoding="utf-8", newline="") as f:
        copy = list(csv.DictReader(f))
    assert [(r["id"], r["crm_iri"], r["bulkcrm_status"]) for r in copy] == [("SUP-99", "", "conflict"),
                                                                           ("SUP-7", B, "patched")]
    again = plan(tmp_path / "r" / "s.with-status.csv", t, client)
    assert [(r["op"], r["iri"]) for r in again.rows] == [("conflict", A), ("unchanged", B)]
    same = plan(sheet(tmp_path, [["name", "id", "phone"], ["Exotic Liquids", "SUP-1", "(171) 555-2222"]]), t, client)
    assert [(r["op"], r["iri"]) for r in same.rows] == [("unchanged", A)]


def test_an_iri_column_of_own_ids_says_it_holds_no_iris(crm, client, tmp_path):
    """`iri_column` set to a column of the sheet's own IDs (`1`): each row was `not-found` with
    the advice to remove the IRI "to create a new organization" (a duplicate, as its
    identifiers matched one); it is an `invalid-iri` error saying what the column must hold."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}]}]})
    t = tpl(identifiers=["emailAddresses"], iri_column="id", fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["id", "name", "email"], ["1", "A", "a@a.nl"], [A[:-1] + "f", "B", "b@b.nl"]]), t, client)
    assert [(i["row_number"], i["type"]) for i in p.issues] == [(2, "invalid-iri"), (3, "not-found")]
    assert "'1' is not an organization IRI (/organizations/{id}, as an export writes it)" in p.issues[0]["message"]
    assert p.n_operations() == 0
    url = plan(sheet(tmp_path, [["id", "name", "email"], [f"https://crm.example{A}/", "A", "a@a.nl"]]), t, client)
    assert url.issues[0]["message"].endswith("write its path alone, without host or trailing /")


def test_a_relations_constant_name_without_lookup_is_refused_when_the_template_loads():
    """`tags: {value: Supplier}` was sent as it is and failed on every row (29 errors); a
    relation's constant must be its IRI, or a name with `lookup: true`, said once, at load."""
    import pytest
    from bulkcrm.errors import TemplateError
    with pytest.raises(TemplateError, match=r"fields\.tags\.value: the value 'Supplier' is not an IRI /tags/\{id\}; "
                                            r"to give its title instead, add lookup: true"):
        tpl(fields={"title": "name", "tags": {"value": "Supplier"}})
    with pytest.raises(TemplateError, match=r"fields\.owner\.value: .* to give its email instead"):
        tpl(fields={"title": "name", "owner": {"value": "anna@example.com"}})
    assert tpl(fields={"title": "name", "tags": {"value": "Supplier", "lookup": True}}).mapping("tags").lookup
    assert tpl(fields={"title": "name", "tags": {"value": ["/tags/1"]}}).mapping("tags").sources[0].value


def test_clear_unmapped_clears_a_record_whose_mapped_fields_are_equal(crm, client, tmp_path):
    """`clear_unmapped: true` makes the sheet the whole record: a record equal in every mapped
    field but holding an unmapped one (a description) gets the PUT that clears it, as a record
    that changes does; one holding nothing unmapped is unchanged."""
    crm.seed({"organizations": [
        {"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}], "description": "old"},
        {"@id": B, "title": "B", "emailAddresses": [{"email": "b@b.nl"}]}]})
    t = tpl(mode="replace", clear_unmapped=True, identifiers=["emailAddresses"],
            fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["name", "email"], ["A", "a@a.nl"], ["B", "b@b.nl"]]), t, client)
    assert [(r["op"], r["iri"]) for r in p.rows] == [("replace", A), ("unchanged", B)]
    (op,) = p.operations
    assert op.cleared == ["description"] and "description" not in op.body
    apply(p, client, journal_file=tmp_path / "j.jsonl")
    assert client.get(A).get("description") in (None, "")
    assert plan(sheet(tmp_path, [["name", "email"], ["A", "a@a.nl"], ["B", "b@b.nl"]]), t, client).counts()["unchanged"] == 2


def test_every_wrong_identifier_is_named_at_once():
    """A template with two wrong identifiers said only the first; a fix then met the next."""
    import pytest
    from bulkcrm.errors import TemplateError
    with pytest.raises(TemplateError) as e:
        tpl(identifiers=["customerID", "phone", "emailAddresses"], fields={"title": "name"})
    assert str(e.value).startswith("t.yaml:identifiers: [0] 'customerID' cannot identify a record (did you mean "
                                   "'customerId'?)")
    assert "; [1] 'phone' cannot identify a record" in str(e.value)
    assert "; [2] identifier 'emailAddresses' is not mapped under fields" in str(e.value)


def test_a_write_refused_for_a_missing_iri_names_the_field_holding_it(crm, client, tmp_path):
    """An owner IRI from the template's static lookup table that names no user is only found
    by the API (the table is for what the API cannot list); the failure said `Item not found
    for "/users/…"` and no field: it now starts with the field, `owner: …`."""
    t = tpl(identifiers=["emailAddresses"], fields={
        "title": "name", "emailAddresses": "email",
        "owner": {"column": "owner", "lookup": {"table": {"anna@example.com": "/users/1111"}}}})
    p = plan(sheet(tmp_path, [["name", "email", "owner"], ["A", "a@a.nl", "anna@example.com"]]), t, client)
    report = apply(p, client, journal_file=tmp_path / "j.jsonl")
    assert report.counts()["failed"] == 1
    assert report.rows["note"][0] == 'owner: Item not found for "/users/1111".'


def test_apply_finds_a_record_created_since_with_a_national_phone_and_no_country(crm, client, tmp_path):
    """A colleague creates the organization after the plan, typing its phone in national form
    without a country: planning again matches it in the template's default region, so apply's
    check of records created since the plan must too (it created a duplicate)."""
    t = tpl(identifiers=["phoneNumbers"], default_region="NL", fields={"title": "name", "phoneNumbers": "phone"})
    p = plan(sheet(tmp_path, [["name", "phone"], ["NewCo", "020 123 4567"]]), t, client)
    assert [o.op for o in p.operations] == ["create"] and p.default_region == "NL"
    client.post("/organizations", {"title": "NewCo (typed by a colleague)",
                                   "phoneNumbers": [{"phoneNumber": "020-1234567"}]})
    saved = Plan.load(p.save(tmp_path / "p.json"))  # as `bulkcrm apply p.json` reads it
    report = apply(saved, client, journal_file=tmp_path / "j.jsonl")
    assert report.counts()["created"] == 0 and report.counts()["drifted"] == 1
    assert len(client.list_all("/organizations")) == 1


def test_an_email_moved_between_two_exported_rows_converges(crm, client, tmp_path):
    """Export, then move b2 from Beta's row to Acme's (`policy: replace`): Acme's row names its
    IRI but holds Beta's b2 (`iri-mismatch`, not written); Beta's row, naming its own IRI, is
    not blocked by that claim, so it drops b2, and the next run adds b2 to Acme."""
    crm.seed({"organizations": [
        {"@id": A, "title": "Acme", "emailAddresses": [{"email": "a@x.com"}]},
        {"@id": B, "title": "Beta", "emailAddresses": [{"email": "b@x.com"}, {"email": "b2@x.com"}]}]})
    t = tpl(identifiers=["emailAddresses"], iri_column="crm_iri",
            fields={"title": "name", "emailAddresses": {"column": "email", "policy": "replace"}})
    rows = [["name", "email", "crm_iri"], ["Acme", "a@x.com; b2@x.com", A], ["Beta", "b@x.com", B]]
    first = plan(sheet(tmp_path, rows), t, client)
    assert [r["op"] for r in first.rows] == ["conflict", "patch"]
    assert [i["type"] for i in first.issues] == ["iri-mismatch"]
    apply(first, client, journal_file=tmp_path / "j1.jsonl")
    second = plan(sheet(tmp_path, rows), t, client)
    assert [r["op"] for r in second.rows] == ["patch", "unchanged"]
    apply(second, client, journal_file=tmp_path / "j2.jsonl")
    assert [e["email"] for e in client.get(A)["emailAddresses"]] == ["a@x.com", "b2@x.com"]


def test_a_value_typed_into_a_second_row_holds_back_that_row_only(crm, client, tmp_path):
    """From a trial: Acme's exported row (its IRI) is untouched; Acme's e-mail was typed into
    Beta's row, whose phone is Beta's. Beta's row is the conflict (ambiguous); Acme's row,
    decided by its IRI, is not held back by the value it shares, also when Beta's row names
    Beta by IRI (trial 2026-12-02: both were conflicts): the value is the record Acme's row
    names. Beta's row is held back (its IRI and its e-mail name two records)."""
    crm.seed({"organizations": [
        {"@id": A, "title": "Acme", "emailAddresses": [{"email": "a@x.com"}],
         "phoneNumbers": [{"phoneNumber": "+31201111111"}]},
        {"@id": B, "title": "Beta", "emailAddresses": [{"email": "b@x.com"}],
         "phoneNumbers": [{"phoneNumber": "+31202222222"}]}]})
    t = tpl(identifiers=["emailAddresses", "phoneNumbers"], iri_column="crm_iri", default_region="NL",
            fields={"title": "name", "emailAddresses": "email", "phoneNumbers": "phone"})
    head = ["name", "email", "phone", "crm_iri"]
    acme = ["Acme", "a@x.com", "+31201111111", A]
    p = plan(sheet(tmp_path, [head, acme, ["Beta", "a@x.com", "+31202222222", ""]]), t, client)
    assert [(r["op"], r["iri"]) for r in p.rows] == [("unchanged", A), ("conflict", None)]
    assert [(i["row_number"], i["type"]) for i in p.issues] == [(3, "ambiguous-match")]
    both = plan(sheet(tmp_path, [head, ["Acme NV", *acme[1:]], ["Beta", "a@x.com", "+31202222222", B]]), t, client)
    assert [r["op"] for r in both.rows] == ["patch", "conflict"], both.issues
    assert [(i["row_number"], i["type"]) for i in both.issues] == [(3, "iri-mismatch")]
    # the row without an IRI that claims Acme by the e-mail typed into it is held back alone
    one = plan(sheet(tmp_path, [head, ["Acme NV", *acme[1:]], ["Beta", "a@x.com", "", ""]]), t, client)
    assert [r["op"] for r in one.rows] == ["patch", "conflict"]
    assert [(i["row_number"], i["type"]) for i in one.issues] == [(3, "duplicate-row")]
    # two rows naming one record by IRI: which is right cannot be told
    two = plan(sheet(tmp_path, [head, acme, ["Acme NV", "a@x.com", "", A]]), t, client)
    assert [r["op"] for r in two.rows] == ["conflict", "conflict"]
    # an IRI row none of whose identifiers the record holds (pasted beside another row's IRI)
    # wins nothing: with the row that holds the record's identifiers, both are held (review)
    pasted = plan(sheet(tmp_path, [head, ["Newco", "n@x.com", "+31209999999", A], ["Acme", "a@x.com", "", ""]]),
                  t, client)
    assert [r["op"] for r in pasted.rows] == ["conflict", "conflict"], pasted.issues
    # also when that row is invalid (it still claims the record)
    bad = plan(sheet(tmp_path, [head, ["Newco", "n@x.com", "+31209999999", A], ["Acme", "a@x.com; bad@", "", ""]]),
               t, client)
    assert [r["op"] for r in bad.rows] == ["conflict", "invalid"], bad.issues
    assert bad.operations == []


def test_an_invalid_row_names_the_record_it_matched(crm, client, tmp_path):
    """From a trial: an invalid row is not written, but the plan (and so the report and the
    with-status copy) names the record its identifiers matched, so the fixed row is found by
    its IRI next time; an invalid row that matched nothing has none."""
    crm.seed({"organizations": [{"@id": A, "title": "Acme", "emailAddresses": [{"email": "a@x.com"}]}]})
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["name", "email"], ["Acme", "a@x.com; info@"], ["New", "n@x.com; sales@"]]),
             t, client)
    assert [(r["op"], r["iri"]) for r in p.rows] == [("invalid", A), ("invalid", None)]
    assert p.operations == []


def test_an_invalid_row_in_conflict_names_no_record(crm, client, tmp_path):
    """From a review: an invalid row whose match is also in doubt (another customerId than the
    record's: `identifier-mismatch`) gets no IRI: the with-status copy would carry it, and the
    next run would then take the record as the row's own and overwrite it."""
    crm.seed({"organizations": [{"@id": A, "title": "Acme", "emailAddresses": [{"email": "info@x.com"}],
                                 "customerId": "C1"}]})
    t = tpl(identifiers=["emailAddresses", "customerId"], iri_column="crm_iri",
            fields={"title": "name", "emailAddresses": "email", "customerId": "cid"})
    p = plan(sheet(tmp_path, [["name", "email", "cid", "crm_iri"], ["Other BV", "info@x.com; bad@", "C2", ""]]),
             t, client)
    assert [(r["op"], r["iri"]) for r in p.rows] == [("invalid", None)]
    assert {i["type"] for i in p.issues} >= {"identifier-mismatch"}


def test_an_excel_error_the_template_lists_as_a_null_token_is_an_empty_cell(crm, client, tmp_path):
    """`null_tokens: ["#N/A"]` says what a `#N/A` cell means: empty, not an error."""
    t = tpl(identifiers=["emailAddresses"], null_tokens=["#N/A"],
            fields={"title": "name", "emailAddresses": "email", "website": "web"})
    p = plan(sheet(tmp_path, [["name", "email", "web"], ["A", "a@a.nl", "#N/A"]]), t, client)
    assert [r["op"] for r in p.rows] == ["create"] and p.issues == []
    assert p.operations[0].body == {"title": "A", "emailAddresses": [{"email": "a@a.nl"}]}


def test_an_id_typed_otherwise_is_no_identifier_mismatch(crm, client, tmp_path):
    """`CD34` or `cd 34` for the record's `CD 34`, `55556666` for `5555 6666`: one id typed
    otherwise, not another organization (the row is matched and patched, no conflict)."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "customerId": "CD 34", "chamberOfCommerceNumber": "5555 6666",
                                 "emailAddresses": [{"email": "a@a.nl"}]}]})
    t = tpl(identifiers=["emailAddresses", "customerId", "chamberOfCommerceNumber"],
            fields={"title": "name", "emailAddresses": "email", "customerId": "cid", "chamberOfCommerceNumber": "kvk"})
    p = plan(sheet(tmp_path, [["name", "email", "cid", "kvk"], ["A", "a@a.nl", "cd34", "55556666"]]), t, client)
    assert [(r["op"], r["iri"]) for r in p.rows] == [("patch", A)] and p.issues == []


def test_clear_unmapped_clears_the_unmapped_parts_of_a_mapped_address(crm, client, tmp_path):
    """Only `address.city` mapped: a record equal in it but holding a street gets the PUT that
    clears the street, as a changed record's PUT does."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}],
                                 "address": {"street": "Main 1", "city": "Delft", "country": "NL"}}]})
    t = tpl(mode="replace", clear_unmapped=True, identifiers=["emailAddresses"],
            fields={"title": "name", "emailAddresses": "email", "address.city": "city"})
    p = plan(sheet(tmp_path, [["name", "email", "city"], ["A", "a@a.nl", "Delft"]]), t, client)
    assert [r["op"] for r in p.rows] == ["replace"]
    assert p.operations[0].cleared == ["address.country", "address.street"]


def test_a_relations_constant_is_a_whole_iri_or_read_by_its_iri_transform():
    """`/tags/1;VIP` or `/segments/` passed the prefix check and failed on every row; a
    constant its own `iri` transform reads (`allow_bare_id`) was refused although a cell with
    it passes; a later source may repeat a field option's default (`required: false`)."""
    import pytest
    from bulkcrm.errors import TemplateError
    for value in ("/tags/1;VIP", "/tags/", "/tags/1/x"):
        with pytest.raises(TemplateError, match="is not an IRI /tags/"):
            tpl(fields={"title": "name", "tags": {"value": value}})
    assert tpl(fields={"title": "name", "owner": {"value": "5", "transforms": [{"iri": {"allow_bare_id": True}}]}})
    assert tpl(fields={"title": "name", "emailAddresses": [{"column": "a"}, {"column": "b", "required": False}]})


def test_a_stop_while_re_reading_writes_the_report_and_the_resume_re_reads(crm, client, tmp_path, monkeypatch):
    """Ctrl-C after the last write, while reconciling: the folder kept an earlier run's report
    and the resume said every operation was done, nothing re-read, so the check never ran.
    Now the stop writes the report (all written, not reconciled) and the resume re-reads; a
    run after that one re-reads nothing. (The stop is raised inside the re-reading: no server
    can time a Ctrl-C there.)"""
    import importlib
    apply_mod = importlib.import_module("bulkcrm.apply")  # the module (bulkcrm.apply is also its function)
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["name", "email"], ["A", "a@a.nl"], ["B", "b@b.nl"]]), t, client)
    real, seen = apply_mod._reconcile, []

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(apply_mod, "_reconcile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        apply(p, client, journal_file=tmp_path / "j.jsonl", on_stop=seen.append)
    (stopped,) = seen
    assert stopped.counts()["created"] == 2 and stopped.summary["stopped"] and not stopped.summary["reconciled"]
    monkeypatch.setattr(apply_mod, "_reconcile", real)
    resumed = apply(p, client, journal_file=tmp_path / "j.jsonl")
    assert resumed.summary["reconciled"] is True and resumed.summary["mismatches"] == 0
    monkeypatch.setattr(apply_mod, "_reconcile", lambda *a, **k: pytest.fail("re-read again"))
    third = apply(p, client, journal_file=tmp_path / "j.jsonl")  # re-reads nothing; the resume's stands
    assert (third.summary["reconciled"], third.summary["requests"]) == (True, 0)


@pytest.mark.parametrize("typed", ["000-000-0000", "0000000000", "(123) 456-7890"])
def test_a_placeholder_phone_is_not_sent_and_matches_no_record(crm, client, tmp_path, typed):
    """Trial 2026-12-02: `000-000-0000` passed phonenumbers' length check as +310000000000, so a
    row for Beta matched (and renamed) Alpha, whose row had the same placeholder. A
    placeholder is no number: it is not sent, matches nothing, and its cell gets a warning."""
    crm.seed({"organizations": [{"@id": A, "title": "Alpha BV", "phoneNumbers": [{"phoneNumber": "+310000000000"}]}]})
    t = tpl(identifiers=["phoneNumbers"], default_region="NL", fields={"title": "name", "phoneNumbers": "phone"})
    p = plan(sheet(tmp_path, [["name", "phone"], ["Beta BV", typed], ["Gamma BV", "020 555 0101 / 000"]]), t,
             client, strategy="scan")
    assert [r["op"] for r in p.rows] == ["create", "create"]
    (beta, _gamma) = p.operations
    assert "phoneNumbers" not in beta.body and beta.body["title"] == "Beta BV"
    (warning, unmatchable) = [i for i in p.issues if i["row_number"] == 2]
    assert unmatchable["type"] == "no-identifier"  # its one identifier is no number: each run creates it
    assert (warning["type"], warning["severity"], warning["column"], warning["value"]) == \
        ("invalid-phone", "warning", "phone", typed)
    assert "placeholder" in warning["message"] and "not sent" in warning["message"]


def test_a_date_in_a_phone_column_is_not_sent_as_a_number(crm, client, tmp_path):
    """Trial 2026-12-02: a workbook's date cell in the phone column, read as `2024-01-31`, was
    sent as +3120240131 and matched the next row with the same junk. A date is no number: not
    sent, no identifier, and a warning that says so."""
    t = tpl(identifiers=["phoneNumbers"], default_region="NL", fields={"title": "name", "phoneNumbers": "phone"})
    p = plan(sheet(tmp_path, [["name", "phone"], ["Dates Inc", "2024-01-31"], ["Other BV", "2024-01-31"]]), t,
             client, strategy="scan")
    assert [r["op"] for r in p.rows] == ["create", "create"]  # no shared identifier, no conflict
    assert all("phoneNumbers" not in o.body for o in p.operations)
    assert [(i["row_number"], i["type"]) for i in p.issues] == [
        (2, "invalid-phone"), (3, "invalid-phone"), (2, "no-identifier"), (3, "no-identifier")]
    assert '"2024-01-31" is a date, not a phone number: it is not sent' in p.issues[0]["message"]


def test_a_number_kept_as_typed_that_the_record_holds_is_not_warned_about_every_week(crm, client, tmp_path):
    """Trial 2026-12-02: re-planning the tool's own export repeated an invalid-phone warning for
    every number kept as typed (`(5) 555-4729`) that the record holds as it is: nothing is
    sent, so the plan leaves them out with a note counting them. A row that sends its phones
    keeps the warning; `validate` lists them all."""
    crm.seed({"organizations": [
        {"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}], "phoneNumbers": [{"phoneNumber": "(5) 555-4729"}]},
        {"@id": B, "title": "B", "emailAddresses": [{"email": "b@a.nl"}], "phoneNumbers": [{"phoneNumber": "(5) 555-4729"}]}]})
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email", "phoneNumbers": "phone"})
    rows = [["name", "email", "phone"], ["A", "a@a.nl", "(5) 555-4729"], ["B2", "b@a.nl", "(5) 555-4729"],
            ["C", "c@a.nl", "(5) 555-4729"]]
    p = plan(sheet(tmp_path, rows), t, client)
    assert [r["op"] for r in p.rows] == ["unchanged", "patch", "create"]
    assert [(i["row_number"], i["type"]) for i in p.issues] == [(4, "invalid-phone")]  # the create sends it
    assert "2 invalid-phone warning(s) left out" in " ".join(p.notes)


def test_a_duplicate_row_conflict_names_the_column_that_holds_the_shared_value(crm, client, tmp_path):
    """Trial 2026-12-02: rows sharing an address typed in Email 2 of the second row named its
    Email 1 (cell B3), and the report's `columns` left Email 2 out. Each row names the column
    holding the value (a phone as typed, its extension aside), and a phone with an extension is
    compared by its number, not with the extension's digits glued on (`+18992547369`, not
    `899254736990482`; review: nor `8992547369`, which the same number without one is not)."""
    t = tpl(identifiers=["emailAddresses", "phoneNumbers"], default_region="US",
            fields={"title": "Name", "emailAddresses": [{"column": "Email 1"}, {"column": "Email 2"}],
                    "phoneNumbers": [{"column": "Phone 1"}, {"column": "Phone 2"}]})
    rows = [["Name", "Email 1", "Email 2", "Phone 1", "Phone 2"], ["A", "a@x.com", "", "", ""],
            ["B", "b@x.com", "A@x.com", "", ""], ["C", "", "", "(212) 254-7369", ""],
            ["D", "", "", "", "212.254.7369 x90482"], ["E", "", "", "", "899.254.7369 x90482"],
            ["F", "", "", "899-254-7369 x1", ""]]
    p = plan(sheet(tmp_path, rows), t, client, strategy="scan")
    got = [(i["row_number"], i["cell"], i["value"]) for i in p.issues if i["type"] == "duplicate-row"]
    assert got == [(2, "B2", "a@x.com"), (3, "C3", "a@x.com"), (4, "D4", "+12122547369"),
                   (5, "E5", "+12122547369"), (6, "E6", "+18992547369"), (7, "D7", "+18992547369")], got


def test_a_conflicts_column_is_the_one_holding_the_value_not_one_holding_a_part_of_it(crm, client, tmp_path):
    """Review 2026-12-02: `a@x.com` was found inside Email 1's `ba@x.com` (cell C2, not D2); a
    local `555 0102` in Phone 1 beat Phone 2's `020 555 0102`; a spelling only the normaliser
    reads (`+31 (0)20 555 0101`) fell back to the first column."""
    t = tpl(identifiers=["emailAddresses", "phoneNumbers"], default_region="NL",
            fields={"title": "Name", "emailAddresses": [{"column": "Email 1"}, {"column": "Email 2"}],
                    "phoneNumbers": [{"column": "Phone 1"}, {"column": "Phone 2"}]})
    rows = [["Name", "Email 1", "Email 2", "Phone 1", "Phone 2"],
            ["A", "ba@x.com", "a@x.com", "", ""], ["B", "a@x.com", "", "", ""],
            ["C", "", "", "555 0102", "020 555 0102"], ["D", "", "", "+31 20 555 0102", ""],
            ["E", "", "", "", "+31 (0)20 555 0101"], ["F", "", "", "020-5550101", ""]]
    p = plan(sheet(tmp_path, rows), t, client, strategy="scan")
    got = [(i["row_number"], i["cell"], i["value"]) for i in p.issues if i["type"] == "duplicate-row"]
    assert got == [(2, "C2", "a@x.com"), (3, "B3", "a@x.com"), (4, "E4", "+31205550102"),
                   (5, "D5", "+31205550102"), (6, "E6", "+31205550101"), (7, "D7", "+31205550101")], got


def test_a_missing_column_is_not_guessed_as_one_the_template_reads_already(crm, client, tmp_path):
    """Trial 2026-12-02: a week without the "E-mail 2" column was told "'E-mail 2' (did you
    mean 'E-mail'?)", a column the template maps itself; a guess comes from the others only."""
    from bulkcrm.errors import InputError
    t = tpl(identifiers=["emailAddresses"], fields={"title": "Name", "emailAddresses": [
        {"column": "E-mail"}, {"column": "E-mail 2"}]})
    with pytest.raises(InputError) as e:
        plan(sheet(tmp_path, [["Name", "E-mail", "E-mail 3"], ["A", "a@x.com", ""]]), t, client)
    assert "column(s) 'E-mail 2' (did you mean 'E-mail 3'?) required by template" in str(e.value), str(e.value)


def test_a_conflicts_phone_column_is_found_in_the_rows_own_country(crm, client, tmp_path):
    """A row of another country than the template's default: its phone is read in its own
    region, as matching read it, so the conflict names the column holding `030 1234567`
    (Berlin), not the row's first phone column."""
    t = tpl(identifiers=["phoneNumbers"], default_region="NL",
            fields={"title": "Name", "address.country": "Country",
                    "phoneNumbers": [{"column": "Phone 1"}, {"column": "Phone 2"}]})
    rows = [["Name", "Country", "Phone 1", "Phone 2"], ["A", "DE", "0171 2345678", "030 1234567"],
            ["B", "DE", "+49 30 1234567", ""]]
    p = plan(sheet(tmp_path, rows), t, client, strategy="scan")
    got = [(i["row_number"], i["cell"], i["value"]) for i in p.issues if i["type"] == "duplicate-row"]
    assert got == [(2, "D2", "+49301234567"), (3, "C3", "+49301234567")], got


def test_a_phone_cell_of_fewer_than_three_digits_is_no_number(crm, client, tmp_path):
    """Trial 2026-12-02: `(2  )    -` and `n/a` were sent as typed. A cell with fewer than three
    digits is no number: not sent, one warning; a blank item of a split cell is nothing (no
    warning); a short code (711) is a number kept as typed. Under `policy: replace` a record's
    such item, sent by an older version, is removed like any number the sheet lacks (review)."""
    crm.seed({"organizations": [{"@id": A, "title": "Acme", "emailAddresses": [{"email": "a@x.com"}],
                                 "phoneNumbers": [{"phoneNumber": "+31201111111"}, {"phoneNumber": "n/a"}]}]})
    fields = {"title": "name", "emailAddresses": "email", "phoneNumbers": {"column": "phone", "split": ";"}}
    rows = [["name", "email", "phone"], ["New", "n@x.com", "(2  )    -;711; ;+31202222222;"],
            ["Acme", "a@x.com", "+31201111111"]]
    p = plan(sheet(tmp_path, rows), tpl(identifiers=["emailAddresses"], default_region="US", fields=fields), client)
    (create,) = [o for o in p.operations if o.method == "POST"]
    assert create.body["phoneNumbers"] == [{"phoneNumber": "711"}, {"phoneNumber": "+31202222222"}]
    assert sorted((i["row_number"], i["value"]) for i in p.issues if i["type"] == "invalid-phone") == [
        (2, "(2  )    -"), (2, "711")]  # the placeholder, and the short code kept as typed
    assert [r["op"] for r in p.rows] == ["create", "unchanged"]  # merge keeps the record's n/a
    fields["phoneNumbers"]["policy"] = "replace"
    q = plan(sheet(tmp_path, rows), tpl(identifiers=["emailAddresses"], default_region="US", fields=fields), client)
    (patch,) = [o for o in q.operations if o.method == "PATCH"]
    assert patch.body == {"phoneNumbers": [{"phoneNumber": "+31201111111"}]}


def test_a_flood_of_one_warning_does_not_hide_the_others():
    """Trial 2026-12-03: 54 numeric-cell warnings of a zip-code column filled the plan's five
    warning lines, and the one e-mail typed as a website (row 50) was never shown. One warning
    of each kind (type, column) is shown before a second of any; the rest are counted by type."""
    from bulkcrm.planfile import _WARNINGS_SHOWN, _warning_lines

    def warning(rn, type_, column):
        return {"row_number": rn, "type": type_, "column": column, "severity": "warning",
                "message": f"orgs.xlsx:{rn}:{column}: {type_}"}
    issues = [warning(rn, "numeric-cell", "zip") for rn in range(2, 12)] + [warning(50, "invalid-url", "web")]
    lines = _warning_lines(issues)
    assert lines[0] == "  11 warning(s); a warning alone stops no row:"
    assert lines[1:3] == ["    orgs.xlsx:2:zip: numeric-cell", "    orgs.xlsx:50:web: invalid-url"]
    assert len(lines) == _WARNINGS_SHOWN + 2
    assert lines[-1] == f"    … {11 - _WARNINGS_SHOWN} more: {11 - _WARNINGS_SHOWN} numeric-cell (see the plan file or the report)"


def test_compare_stored_writes_records_values_in_their_normalised_form(crm, client, tmp_path):
    """Trial 2026-12-03 (a nightly hygiene job): an export of messy records re-imported planned
    nothing, as values are compared once normalised. With `compare: stored` a record value not
    in the template's form is written in it (a merge keeps the record's items, normalised, not
    a second spelling); the next run plans nothing."""
    from bulkcrm.errors import TemplateError
    from bulkcrm.export import export
    crm.seed({"organizations": [{
        "@id": "/organizations/h", "title": "48 Factoring Inc.", "website": "www.48factoring.com",
        "address": {"city": " Philadelphia", "country": "United States"},
        "emailAddresses": [{"email": "Info@48FACTORING.COM"}, {"email": "sales@48factoring.com"}],
        "phoneNumbers": [{"phoneNumber": "420.555.0614", "phoneType": "work"}]}]})
    doc = {"resource": "organizations", "default_region": "US", "identifiers": ["emailAddresses"],
           "fields": {"title": "name", "website": "web", "address.city": "city", "address.country": "country",
                      "emailAddresses": "email", "phoneNumbers": [{"column": "phone", "type": "work"}]}}
    sheet = tmp_path / "e.csv"
    export(client, parse_template(doc, path="h.yaml"), sheet)
    assert plan(sheet, parse_template(doc, path="h.yaml"), client).counts()["unchanged"] == 1
    stored = parse_template({**doc, "compare": "stored"}, path="h.yaml")
    p = plan(sheet, stored, client)
    (op,) = p.operations
    assert op.method == "PATCH" and op.body == {
        "website": "https://www.48factoring.com", "address": {"city": "Philadelphia", "country": "US"},
        "emailAddresses": [{"email": "info@48factoring.com"}, {"email": "sales@48factoring.com"}],
        "phoneNumbers": [{"phoneNumber": "+14205550614", "phoneType": "work"}]}
    assert apply(p, client, journal_file=tmp_path / "j.jsonl").ok
    export(client, stored, sheet)
    assert plan(sheet, stored, client).operations == []
    with pytest.raises(TemplateError, match="compare must be 'normalised'"):
        parse_template({**doc, "compare": "raw"}, path="h.yaml")


def test_compare_stored_writes_an_item_stored_in_two_spellings_once(crm, client, tmp_path):
    """Trial 2026-12-03: under `compare: stored` a record holding one address or number in two
    spellings (`INFO@X.COM`, `info@x.com`; `(212) 200-1234` typed work, `212-200-1234`) got
    the normalised item twice, and kept it so. It is written once, with the type one of its
    entries has, and the next run plans nothing."""
    from bulkcrm.export import export
    crm.seed({"organizations": [{
        "@id": "/organizations/d", "title": "3 Round Stones", "address": {"country": "US"},
        "emailAddresses": [{"email": "INFO@3ROUNDSTONES.COM"}, {"email": "info@3roundstones.com"}],
        "phoneNumbers": [{"phoneNumber": "212-200-1234"}, {"phoneNumber": "(212) 200-1234", "phoneType": "work"}]}]})
    doc = {"resource": "organizations", "default_region": "US", "identifiers": ["emailAddresses"], "compare": "stored",
           "fields": {"title": "name", "address.country": "country", "emailAddresses": "email",
                      "phoneNumbers": [{"column": "phone"}, {"column": "work", "type": "work"}]}}
    t = parse_template(doc, path="h.yaml")
    sheet = tmp_path / "e.csv"
    export(client, t, sheet)
    (op,) = plan(sheet, t, client).operations
    assert op.body["emailAddresses"] == [{"email": "info@3roundstones.com"}]
    assert op.body["phoneNumbers"] == [{"phoneNumber": "+12122001234", "phoneType": "work"}]
    assert apply(plan(sheet, t, client), client, journal_file=tmp_path / "j.jsonl").ok
    export(client, t, sheet)
    assert plan(sheet, t, client).operations == []


def test_a_record_edited_after_the_sheet_was_saved_is_named_by_a_plan_note(crm, client, tmp_path):
    """Ops upload last week's file again: the patch would put its old website back over an
    edit made since. The plan says so (the record's updatedAt is later than the file's
    modification time); a sheet saved after the edit, or a record not updated, is not named;
    nor is a record not written since it was made (a trial's two-source migration: the first
    source's load is no edit the second's older file would undo)."""
    import datetime
    import os
    import time

    from bulkcrm.planfile import render_plan
    yesterday = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).isoformat()
    crm.seed({"organizations": [
        {"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}], "website": "https://a.example/new",
         "createdAt": "2020-01-01T00:00:00+00:00", "updatedAt": yesterday},
        {"@id": B, "title": "B", "emailAddresses": [{"email": "b@b.nl"}], "website": "https://b.example"},
        {"title": "C", "emailAddresses": [{"email": "c@c.nl"}], "website": "https://c.example/new"}]})
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email", "website": "site"})
    path = sheet(tmp_path, [["name", "email", "site"], ["A", "a@a.nl", "https://a.example/old"],
                            ["B", "b@b.nl", "https://b.example"], ["C", "c@c.nl", "https://c.example/old"]])
    week_ago = time.time() - 7 * 86400
    os.utime(path, (week_ago, week_ago))
    p = plan(path, t, client)
    (note,) = [n for n in p.notes if n.startswith("edited:")]
    assert note.startswith("edited: 1 record(s) this plan updates were edited after s.csv was last saved (")
    assert "row 2 (website; edited " in note and "puts its values back" in note
    assert f"note: {note}" in render_plan(p)
    os.utime(path, None)  # saved now: after the edit
    assert not [n for n in plan(path, t, client).notes if n.startswith("edited:")]


def test_a_number_the_record_holds_as_typed_is_corrected_by_the_sheet_not_doubled(crm, client, tmp_path):
    """A trial: the report flags `555-8787` (no E.164; sent as typed); the ops user writes it
    in full, `+65 555 8787`, as the hint says. Under `policy: merge` (patch mode's default) the
    corrected number takes the typed one's place, with its type, rather than being added beside
    it; the next plan is unchanged. A number whose digits do not end with the typed ones is
    another number: added, the typed one kept (and named by the merge note)."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.sg"}],
                                 "address": {"country": "SG"},
                                 "phoneNumbers": [{"phoneNumber": "555-8787", "phoneType": "work"},
                                                  {"phoneNumber": "+6561234567"}]}]})
    t = tpl(identifiers=["emailAddresses"],
            fields={"title": "name", "emailAddresses": "email", "address.country": "country", "phoneNumbers": "phone"})
    other = plan(sheet(tmp_path, [["name", "email", "country", "phone"], ["A", "a@a.sg", "SG", "+65 6999 8787"]]),
                 t, client)
    assert [o.body["phoneNumbers"] for o in other.operations] == [[
        {"phoneNumber": "555-8787", "phoneType": "work"}, {"phoneNumber": "+6561234567"},
        {"phoneNumber": "+6569998787"}]]
    assert [n for n in other.notes if n.startswith("merge:") and "555-8787" in n]
    p = plan(sheet(tmp_path, [["name", "email", "country", "phone"], ["A", "a@a.sg", "SG", "+65 555 8787"]]), t, client)
    assert [o.body["phoneNumbers"] for o in p.operations] == [[
        {"phoneNumber": "+655558787", "phoneType": "work"}, {"phoneNumber": "+6561234567"}]]
    assert not [n for n in p.notes if "555-8787" in n], p.notes  # not said to stay
    apply(p, client, journal_file=tmp_path / "j.jsonl")
    assert client.get(A)["phoneNumbers"] == [{"phoneNumber": "+655558787", "phoneType": "work"},
                                             {"phoneNumber": "+6561234567"}]
    assert plan(tmp_path / "s.csv", t, client).counts()["unchanged"] == 1


def test_a_row_copied_with_its_iri_is_told_to_clear_the_iri(crm, client, tmp_path):
    """A trial copied an exported row to start a new organization, IRI included: the copy is a
    conflict (two rows name one record by IRI), and the fix named is to clear the copy's IRI
    column (not to add an IRI, which both have); the issue names that column and the IRI. The
    original row, whose own e-mail names the record, keeps it (trial 2026-12-03: it was held
    too, and its note with it)."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}]}]})
    t = tpl(identifiers=["emailAddresses"], iri_column="crm_iri", fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["crm_iri", "name", "email"], [A, "A2", "a@a.nl"], [A, "New B", "b@b.nl"]]), t, client)
    assert [r["op"] for r in p.rows] == ["patch", "conflict"]
    (i,) = p.issues
    assert (i["row_number"], i["type"], i["column"], i["value"]) == (3, "duplicate-row", "crm_iri", A)
    assert f"rows 2, 3 all match {A} (rows 2, 3 name it by its IRI); row 2 keeps it, as its own identifiers " \
           "name it too; if this row is another organization (a row copied with its crm_iri?), clear its crm_iri " \
           "so it is created; if it is that organization, delete this row, not the one that keeps it" \
           in i["message"], i["message"]
    assert "or name each row's record by its IRI" not in i["message"]
    # a third row claiming it by its e-mail, without an IRI, is not told to clear one (a review)
    p = plan(sheet(tmp_path, [["crm_iri", "name", "email"], [A, "A", "a@a.nl"], [A, "New B", "b@b.nl"],
                              ["", "A again", "a@a.nl"]]), t, client)
    (row4,) = [i for i in p.issues if i["row_number"] == 4]
    assert row4["column"] == "email" and "clear its crm_iri" not in row4["message"], row4
    assert [(i["row_number"], i["column"]) for i in p.issues if i["row_number"] in (2, 3)] == [(3, "crm_iri")]
    # both copies keep the record's e-mail: nothing tells which row is the record, both wait
    p = plan(sheet(tmp_path, [["crm_iri", "name", "email"], [A, "A", "a@a.nl"], [A, "New B", "a@a.nl"]]), t, client)
    assert [r["op"] for r in p.rows] == ["conflict", "conflict"]


def test_one_typed_number_is_corrected_by_one_sheet_number_only(crm, client, tmp_path):
    """From a review: two sheet numbers ending in a typed item's digits each took its place, so
    the first was never sent. The first takes it (keeping its type), the second is added; and
    one number written twice in a cell is sent once."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.sg"}],
                                 "address": {"country": "SG"},
                                 "phoneNumbers": [{"phoneNumber": "555-8787", "phoneType": "work"}]}]})
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email",
                                                    "address.country": "country",
                                                    "phoneNumbers": {"column": "phone", "split": ";"}})
    for cell, sent in (("+65 6555 8787; +65 8555 8787", [{"phoneNumber": "+6565558787", "phoneType": "work"},
                                                         {"phoneNumber": "+6585558787"}]),
                       ("+65 6555 8787; 6555 8787", [{"phoneNumber": "+6565558787", "phoneType": "work"}])):
        p = plan(sheet(tmp_path, [["name", "email", "country", "phone"], ["A", "a@a.sg", "SG", cell]]), t, client)
        assert [o.body["phoneNumbers"] for o in p.operations] == [sent], cell
        assert not [n for n in p.notes if "555-8787" in n], p.notes
    m = t.mapping("phoneNumbers")  # the same number twice in the sheet's list: its last type
    assert diff.desired_phones(m, [{"phoneNumber": "+6565558787", "phoneType": None},
                                   {"phoneNumber": "+6565558787", "phoneType": "mobile"}],
                               [{"phoneNumber": "555-8787", "phoneType": "work"}], ["555-8787"], t) == [
        {"phoneNumber": "+6565558787", "phoneType": "mobile"}]


def test_a_new_customer_typed_over_another_rows_iri_is_a_conflict(crm, client, tmp_path):
    """A trial typed a new customer over ANTON's row of an export, its crm_iri kept: the plan
    renamed ANTON and gave it the new customerId. A row whose record's single-valued identifier
    (customerId) is not the row's is an iri-mismatch conflict, as a row matched by an e-mail
    is; the same customerId with a new title is a patch."""
    crm.seed({"organizations": [{"@id": A, "title": "Antonio Moreno", "customerId": "ANTON"}]})
    t = tpl(identifiers=["customerId"], iri_column="crm_iri", fields={"title": "name", "customerId": "id"})
    p = plan(sheet(tmp_path, [["crm_iri", "name", "id"], [A, "Second New Co", "NEWC2"]]), t, client)
    assert [r["op"] for r in p.rows] == ["conflict"] and p.operations == []
    (issue,) = p.issues
    assert (issue["type"], issue["column"], issue["value"]) == ("iri-mismatch", "id", "NEWC2"), issue
    assert f"its crm_iri names {A}, whose customerId is ANTON, not the row's NEWC2; if the row is not that " \
        "organization" in issue["message"], issue["message"]
    # a rename of a name-keyed record (a trial) is told how, rather than to clear the IRI only
    assert "if it is, and its id changed, change the id in the CRM first" in issue["message"]
    # the plan text says so on the row's line too, not only the report (trial 2026-12-03)
    from bulkcrm.planfile import render_plan
    text = render_plan(p)
    assert f"  ! row 2 conflict {A} \"Second New Co\"\n      s.csv:2: its crm_iri names {A}" in text, text
    assert "change the id in the CRM first" in text
    p = plan(sheet(tmp_path, [["crm_iri", "name", "id"], [A, "Antonio Moreno Taquería", "ANTON"]]), t, client)
    assert [o.body for o in p.operations] == [{"title": "Antonio Moreno Taquería"}]


def test_an_unlikely_phone_the_record_holds_already_is_not_warned_every_week(crm, client, tmp_path):
    """`555-8787` on an AU row is sent as +615558787 with an `unlikely-phone` warning; the next
    week's upload of the same sheet sends nothing, and its warning is left out with a plan note
    (as for a number kept as typed), not repeated every week."""
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email",
                                                    "address.country": "country", "phoneNumbers": "phone"})
    path = sheet(tmp_path, [["name", "email", "country", "phone"], ["Local Pty", "l@l.au", "AU", "555-8787"]])
    first = plan(path, t, client)
    assert [i["type"] for i in first.issues] == ["unlikely-phone"]
    apply(first, client, journal_file=tmp_path / "j.jsonl")
    again = plan(path, t, client)
    assert again.counts()["unchanged"] == 1 and again.issues == []
    (held,) = [n for n in again.notes if n.startswith("1 unlikely-phone warning(s) left out: numbers no range")]
    from bulkcrm.planfile import render_plan
    assert f"  note: {held}" in render_plan(again).splitlines()  # on screen too, as the README says (a trial)


def test_an_unlikely_number_written_in_full_replaces_the_record_s_short_one(crm, client, tmp_path):
    """Two trials followed the `unlikely-phone` hint ("is the area code missing?") and wrote the
    number in full: the record kept its short number beside the full one, and the merge note
    said so every night. A record's E.164 number of no range whose national digits a valid
    sheet number ends with is replaced by it (its type kept); another number is added."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.au"}],
                                 "address": {"country": "AU"},
                                 "phoneNumbers": [{"phoneNumber": "+6193744412", "phoneType": "work"},
                                                  {"phoneNumber": "+61293744000"}]}]})
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email",
                                                    "address.country": "country", "phoneNumbers": "phone"})
    p = plan(sheet(tmp_path, [["name", "email", "country", "phone"], ["A", "a@a.au", "AU", "(08) 9374 4412"]]),
             t, client)
    assert [o.body["phoneNumbers"] for o in p.operations] == [[
        {"phoneNumber": "+61893744412", "phoneType": "work"}, {"phoneNumber": "+61293744000"}]]
    assert not [n for n in p.notes if "+6193744412" in n], p.notes
    # a valid number is no short one: (08) 9374 4000 is added beside +61293744000
    p = plan(sheet(tmp_path, [["name", "email", "country", "phone"], ["A", "a@a.au", "AU", "(08) 9374 4000"]]),
             t, client)
    assert [len(o.body["phoneNumbers"]) for o in p.operations] == [3]


@pytest.mark.parametrize("policy", ["merge", "replace"])
def test_a_short_typed_number_of_a_number_the_record_holds_adds_nothing(crm, client, tmp_path, policy):
    """A trial's older sheet wrote `308-7104` (no area code: not E.164, kept as typed) for a
    record holding +1 555 308 7104: the plan added the typed text beside the full number. Its
    digits end exactly one number the record holds: taken as that number (merge adds nothing,
    replace does not swap the full number for the short one), with a `phone:` note. A number
    ending no record number is still sent as typed; nor is a short number taken when two
    record numbers end in it."""
    crm.seed({"organizations": [
        {"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.us"}], "address": {"country": "US"},
         "phoneNumbers": [{"phoneNumber": "+15553087104", "phoneType": "work"}]},
        {"@id": B, "title": "B", "emailAddresses": [{"email": "b@b.us"}], "address": {"country": "US"},
         "phoneNumbers": [{"phoneNumber": "+15553087104"}, {"phoneNumber": "+16463087104"}]}]})
    t = tpl(identifiers=["emailAddresses"], fields={
        "title": "name", "emailAddresses": "email", "address.country": "country",
        "phoneNumbers": {"column": "phone", "split": ";", "policy": policy}})
    head = ["name", "email", "country", "phone"]
    p = plan(sheet(tmp_path, [head, ["A", "a@a.us", "US", "308-7104"]]), t, client)
    assert [r["op"] for r in p.rows] == ["unchanged"], p.rows
    assert not [n for n in p.notes if n.startswith("phone:")]  # nothing written: nothing to say every week
    p = plan(sheet(tmp_path, [head, ["A2", "a@a.us", "US", "308-7104; 308-7105"]]), t, client)
    assert [o.body for o in p.operations] == [{"title": "A2", "phoneNumbers": [
        {"phoneNumber": "+15553087104", "phoneType": "work"}, {"phoneNumber": "308-7105"}]}]
    (note,) = [n for n in p.notes if n.startswith("phone:")]  # a row written: said
    assert "row 2 '308-7104' as +15553087104" in note
    p = plan(sheet(tmp_path, [head, ["B", "b@b.us", "US", "308-7104"]]), t, client)  # two numbers end in it
    assert [r["op"] for r in p.rows] == ["patch"]
    assert "308-7104" in [i["phoneNumber"] for i in p.operations[0].body["phoneNumbers"]]
    assert not [n for n in p.notes if n.startswith("phone:")]


def test_a_line_break_inside_an_id_is_a_row_error(crm, client, tmp_path):
    """A trial's customerId held an Alt+Enter (`C\\n2`) and was sent as it was: a record no
    later sheet (`C2`) matches by its id. Ids and codes are one line: a `line-break` error
    naming the cell, shown as `\\n` in the one-line message; the other rows go through, and a
    title's line break is still collapsed to a space."""
    t = tpl(identifiers=["customerId"], fields={"title": "name", "customerId": "id",
                                                "address.postalCode": "zip"})
    p = plan(sheet(tmp_path, [["name", "id", "zip"], ["Acme\nCorp", "C1", "1011 AB"], ["Beta", "C\n2", "2000"],
                              ["Gamma", "C3", "3000\r\nXY"]]), t, client)
    assert [r["op"] for r in p.rows] == ["create", "invalid", "invalid"]
    assert p.operations[0].body["title"] == "Acme Corp"
    errors = [(i["type"], i["row_number"], i["column"], i["value"]) for i in p.issues]
    # row numbers are the lines a record starts on: row 2's title spans two
    assert errors == [("line-break", 4, "id", "C\n2"), ("line-break", 6, "zip", "3000\r\nXY")]
    assert 's.csv:4:id: "C\\n2" breaks one-line text' in p.issues[0]["message"]


def test_a_phone_extension_warning_is_not_repeated_once_the_record_holds_the_number(crm, client, tmp_path):
    """A nightly hygiene run warned every night that `x12` of a number is not sent, although
    the record held the number and nothing was sent. As with `invalid-phone`: the warning is
    left out of rows that send no phones, with a plan note counting it; a row that sends the
    number gets it."""
    t = tpl(identifiers=["emailAddresses"], default_region="NL",
            fields={"title": "name", "emailAddresses": "email", "phoneNumbers": "phone"})
    rows = [["name", "email", "phone"], ["A", "a@a.nl", "020 123 4567 x12"]]
    first = plan(sheet(tmp_path, rows), t, client)
    assert [i["type"] for i in first.issues] == ["phone-extension"]
    apply(first, client, journal_file=tmp_path / "j.jsonl")
    again = plan(sheet(tmp_path, rows), t, client)
    assert [r["op"] for r in again.rows] == ["unchanged"] and again.issues == []
    assert [n for n in again.notes if n.startswith("1 phone-extension warning(s) left out: ")]


def test_an_optional_column_headed_in_another_case_is_refused(crm, client, tmp_path):
    """A trial's sheet headed `Email` and `Phone` the template's optional `email` and `phone`:
    both were left out as absent, the week's new e-mails and phones never sent, and the run
    exited 0 (a required column gets a did-you-mean and exit 2). Refused, naming the headers;
    a column the template reads itself in that case is no mistake."""
    from bulkcrm.errors import InputError
    t = tpl(identifiers=["emailAddresses"], fields={
        "title": "name", "emailAddresses": {"column": "email", "optional": True},
        "phoneNumbers": {"column": "phone", "optional": True}, "description": {"column": "Phone"}})
    with pytest.raises(InputError, match=r"optional column\(s\) 'email' \(the sheet has 'Email'\) of template "
                                         r"t.yaml not found: headers are matched exactly"):
        plan(sheet(tmp_path, [["name", "Email", "Phone"], ["A", "a@a.nl", "+31201234567"]]), t, client)
    p = plan(sheet(tmp_path, [["name", "email", "Phone"], ["A", "a@a.nl", "x"]]), t, client)
    assert [r["op"] for r in p.rows] == ["create"] and p.operations[0].body["description"] == "x"


def test_an_international_number_of_a_length_its_country_has_not_is_warned(crm, client, tmp_path):
    """A trial's second source wrote `+33 91 24 45 40` (a digit short: French numbers have 9
    after +33): sent without a word, it matched nothing and made a duplicate. An
    international-form number whose length its country code has not gets an `unlikely-phone`
    warning naming both lengths; it is still sent (a warning), a right one is not warned of,
    and one kept as typed keeps its own `invalid-phone` warning only."""
    t = tpl(identifiers=["phoneNumbers"], fields={"title": "name", "phoneNumbers": {"column": "phone", "split": ";"},
                                                  "address.country": "country"})
    p = plan(sheet(tmp_path, [["name", "phone", "country"], ["Short", "+33 91 24 45 40", "FR"],
                              ["Long", "+33 1 23 45 67 89 01 23; +1 202 555 0123", "FR"],
                              ["Right", "+33 1 23 45 67 89", "FR"], ["Typed", "+33 1 23", "FR"]]), t, client)
    assert [r["op"] for r in p.rows] == ["create"] * 4
    assert [(i["type"], i["row_number"], i["value"]) for i in p.issues] == [
        ("unlikely-phone", 2, "+33 91 24 45 40"), ("unlikely-phone", 3, "+33 1 23 45 67 89 01 23"),
        ("invalid-phone", 5, "+33 1 23")]
    assert 'is sent as +3391244540: 8 digits after +33, where numbers of +33 (FR) have 9' in p.issues[0]["message"]
    assert p.operations[0].body["phoneNumbers"] == [{"phoneNumber": "+3391244540"}]


def test_a_new_number_whose_digits_a_record_holds_as_typed_is_a_possible_duplicate(crm, client, tmp_path):
    """A trial's first source stored BONAP's phone as typed, `91.24.45.40` (no E.164: a digit
    short); the second source's `+33 91 24 45 40` matched nothing and made a second
    organization without a word. A scan warns (`possible-duplicate`, naming the record); the
    row is still created (a number without its country code is no identifier), and a number
    ending otherwise is no sign."""
    crm.seed({"organizations": [{"@id": A, "title": "Bon app'", "customerId": "BONAP",
                                 "phoneNumbers": [{"phoneNumber": "91.24.45.40"}]}]})
    t = tpl(identifiers=["phoneNumbers"], fields={"title": "name", "phoneNumbers": "phone", "address.country": "country"})
    rows = [["name", "phone", "country"], ["Bon app'", "+33 91 24 45 40", "FR"], ["Other", "+33 91 24 45 41", "FR"]]
    p = plan(sheet(tmp_path, rows), t, client, strategy="scan")
    assert [r["op"] for r in p.rows] == ["create", "create"]
    twins = [i for i in p.issues if i["type"] == "possible-duplicate"]
    assert [(i["row_number"], i["column"], i["value"]) for i in twins] == [(2, "phone", "+3391244540")]
    assert f'this row creates an organization with +3391244540, but {A} holds "91.24.45.40"' in twins[0]["message"]
    # rows in conflict (two rows sharing the number) create nothing: no such warning (a review)
    p = plan(sheet(tmp_path, [rows[0], rows[1], rows[1]]), t, client, strategy="scan")
    assert [r["op"] for r in p.rows] == ["conflict", "conflict"]
    assert not [i for i in p.issues if i["type"] == "possible-duplicate"]


@pytest.mark.parametrize("stored", ["+1 555 308 7104", "+1 (555) 308-7104"])
@pytest.mark.parametrize("policy", ["merge", "replace"])
def test_a_short_typed_number_of_a_record_number_stored_with_spaces_settles(crm, client, tmp_path, stored, policy):
    """A review: the record stored its number with spaces; the short sheet number was taken as
    that text, which the comparison (E.164) did not find, so every run added another copy
    (merge) or sent the same patch (replace). It is taken as the number's E.164 key: nothing
    changes. And a fax column repeating the phone's number keeps the phone's type."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.us"}],
                                 "address": {"country": "US"}, "phoneNumbers": [{"phoneNumber": stored,
                                                                                 "phoneType": "work"}]}]})
    t = tpl(identifiers=["emailAddresses"], fields={
        "title": "name", "emailAddresses": "email", "address.country": "country",
        "phoneNumbers": [{"column": "phone", "type": "work", "policy": policy}, {"column": "fax", "type": "fax"}]})
    head = ["name", "email", "country", "phone", "fax"]
    for row in (["A", "a@a.us", "US", "308-7104", ""], ["A", "a@a.us", "US", "+1 555 308 7104", "308-7104"]):
        p = plan(sheet(tmp_path, [head, row]), t, client)
        assert [r["op"] for r in p.rows] == ["unchanged"], (row, p.rows)


def test_a_notes_section_column_is_no_optional_column_in_another_case(crm, client, tmp_path):
    """A review: an optional `notes` column of the organizations' description and a `notes:`
    section reading `Notes` were refused as one column headed in another case; `Notes` is
    read."""
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email",
                                                    "description": {"column": "notes", "optional": True}},
            notes={"fields": {"description": "Notes", "category": {"value": "/note_categories/c4"}}})
    p = plan(sheet(tmp_path, [["name", "email", "Notes"], ["A", "a@a.nl", "Met."]]), t, client)
    assert [r["op"] for r in p.rows] == ["create", "create"]


def test_a_numeric_cell_warning_is_not_repeated_once_the_record_holds_the_value(crm, client, tmp_path):
    """A trial's weekly workbook stores its postcodes (`2539`, `3000`) and KvK numbers as number
    cells: a numeric-cell warning on every row, every week, though nothing was sent. As with
    a phone kept as typed: left out of rows that do not send that field, with a plan note; a
    row whose postcode changes still gets it."""
    import openpyxl
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email",
                                                    "address.postalCode": "zip"})
    book = openpyxl.Workbook()
    for row in (["name", "email", "zip"], ["A", "a@a.nl", 2539], ["B", "b@b.nl", 3000], ["C", "c@c.nl", 4000]):
        book.active.append(row)
    path = tmp_path / "w.xlsx"
    book.save(path)
    first = plan(path, t, client)
    assert sorted(i["row_number"] for i in first.issues if i["type"] == "numeric-cell") == [2, 3, 4]
    apply(first, client, journal_file=tmp_path / "j.jsonl")
    book.active["C4"] = 4001  # C moved
    book.save(path)
    again = plan(path, t, client)
    assert [(r["row_number"], r["op"]) for r in again.rows] == [(2, "unchanged"), (3, "unchanged"), (4, "patch")]
    assert [(i["type"], i["row_number"]) for i in again.issues] == [("numeric-cell", 4)]
    assert [n for n in again.notes if n.startswith("2 numeric-cell warning(s) left out: values stored as number cells")]


def test_the_readers_issues_of_an_organizations_row_name_that_resource(client, tmp_path):
    """Trial 2026-12-03: the report's Issues sheet named no resource for a numeric-cell warning
    and `organizations` for a date-cell one, so filtering by resource lost rows. A row that is
    one organization's (no notes on the same row) gives its reader's issues that resource."""
    import datetime as dt

    import openpyxl
    wb = openpyxl.Workbook()
    wb.active.append(["name", "email", "zip", "kvk", "city"])
    wb.active.append(["A", "a@a.nl", 2138, dt.datetime(1950, 1, 1), '=UPPER("x")'])  # openpyxl stores no result
    wb.active["D2"].number_format = "mmm-yy"
    wb.save(tmp_path / "w.xlsx")
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email", "address.city": "city",
                                                    "address.postalCode": "zip", "chamberOfCommerceNumber": "kvk"})
    p = plan(tmp_path / "w.xlsx", t, client)
    assert sorted((i["type"], i["resource"]) for i in p.issues) == [
        ("date-cell", "organizations"), ("formula-without-result", "organizations"),
        ("numeric-cell", "organizations")], p.issues


def test_an_iri_of_another_tenants_record_is_that_rows_error_not_a_rejected_key(crm, client, tmp_path):
    """A crm_iri naming a record the key may not see (another tenant's: 403, crm-api.md §2)
    stopped planning with "the API key was rejected (403)", exit 77, for one row's cell; it is
    that row's `not-found` error, and the other rows are planned."""
    crm.seed({"organizations": [{"@id": B, "title": "Theirs", "emailAddresses": [{"email": "b@b.nl"}]}]},
             tenant="tenant-b")
    t = tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    p = plan(sheet(tmp_path, [["crm_iri", "name", "email"], [B, "Theirs", "x@x.nl"], ["", "Ours", "o@o.nl"]]), t, client)
    assert [(i["row_number"], i["type"], i["column"]) for i in p.issues] == [(2, "not-found", "crm_iri")]
    assert "is not this API key's to read (403: another tenant's record?)" in p.issues[0]["message"]
    assert [(r["row_number"], r["op"]) for r in p.rows] == [(2, "invalid"), (3, "create")]


def test_an_optional_column_misspelt_in_the_header_is_named_in_its_note(crm, client, tmp_path):
    """A trial's sheet headed `emial` the template's optional `email`: exit 0 and two notes
    apart (absent, unmapped), the typo missed. The absent column's note names the near miss.
    Not refused: a review showed `County` for an absent `Country`, `Phone 2` for `Phone 3`."""
    t = tpl(identifiers=["customerId"], fields={
        "title": "name", "customerId": "id", "emailAddresses": {"column": "email", "optional": True},
        "address.country": {"column": "Country", "optional": True}})
    p = plan(sheet(tmp_path, [["id", "name", "emial", "County"], ["A1", "A", "a@a.nl", "Kent"]]), t, client)
    assert [r["op"] for r in p.rows] == ["create"]
    assert ("optional column 'email' is not in the sheet (but the sheet has 'emial', which the template does not "
            "read: if it is this column misspelt, rename the header to load it): emailAddresses is left as it is") in p.notes
    assert any(n.startswith("optional column 'Country' is not in the sheet (but the sheet has 'County'") for n in p.notes)


def test_a_column_read_twice_for_one_field_is_refused_when_the_template_loads():
    """A review: `phoneNumbers: [{column: phone}, {column: phone, type: fax}]` crashed planning
    (exit 70, a duplicate output name) and export wrote the column with the fax alone."""
    from bulkcrm.errors import TemplateError
    with pytest.raises(TemplateError, match=r"fields\.phoneNumbers\[1\]\.column: column 'phone' is already a "
                                            r"source of phoneNumbers"):
        tpl(fields={"title": "name", "phoneNumbers": [{"column": "phone"}, {"column": "phone", "type": "fax"}]})
    with pytest.raises(TemplateError, match=r"fields\.emailAddresses\[2\]\.column: column 'a'"):
        tpl(fields={"title": "name", "emailAddresses": [{"column": "a"}, {"column": "b"}, {"column": "a"}]})
    assert len(tpl(fields={"title": "name", "phoneNumbers": [{"column": "phone"}, {"column": "fax", "type": "fax"}]})
               .mapping("phoneNumbers").sources) == 2


def test_a_lookup_by_no_property_of_its_collection_is_refused_when_the_template_loads():
    """A review: `lookup: {by: nonexistent}` loaded, and every row was then invalid (`matches no
    tags nonexistent`); `collection: users` on tags was ignored; people were looked up by a
    title they have not."""
    from bulkcrm.errors import TemplateError
    with pytest.raises(TemplateError, match=r"fields\.tags\.lookup\.by: 'nonexistent' is no property of tags to "
                                            r"look names up by; one of title, id, description"):
        tpl(fields={"title": "name", "tags": {"column": "t", "lookup": {"by": "nonexistent"}}})
    with pytest.raises(TemplateError, match=r"fields\.tags\.lookup\.collection: this field's IRIs are /tags/\{id\}"):
        tpl(fields={"title": "name", "tags": {"column": "t", "lookup": {"collection": "users"}}})
    with pytest.raises(TemplateError, match=r"fields\.people\.lookup\.by: people have no name to look up by default"):
        tpl(fields={"title": "name", "people": {"column": "p", "lookup": True}})
    assert tpl(fields={"title": "name", "people": {"column": "p", "lookup": {"by": "customerId"}}}).mapping("people").lookup.by == "customerId"
    assert tpl(fields={"title": "name", "tags": {"column": "t", "lookup": True}}).mapping("tags").lookup.by == "title"
