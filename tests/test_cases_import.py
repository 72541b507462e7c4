"""Issue 4: ../shared/cases BR-01, BR-02, BR-03, BR-05, BR-06 end to end (read → validate → plan
→ apply against the sandbox), asserting what reaches the API. BR-10 is in test_plan_cases.py."""
from __future__ import annotations

import json
import uuid

from bulkcrm.apply import apply
from bulkcrm.plan import plan, render_plan
from bulkcrm.template import parse_template
from tests.conftest import CASES
from tests.test_read_cases import _br05, br06_workbook_a, br06_workbook_b


def t(fields, identifiers=("emailAddresses",), **kw):
    return parse_template({"identifiers": list(identifiers), "fields": fields, **kw}, path="case.yaml")


def run(crm, client, source, template, tmp_path):
    p = plan(source, template, client)
    report = apply(p, client, journal_file=tmp_path / f"{uuid.uuid4().hex}.jsonl")
    return p, report, crm.store.all("organizations", tenant="tenant-a")


def test_br01_bom_glued_header_both_rows_import(crm, client, tmp_path):
    template = t({"title": "title", "website": "website", "emailAddresses": "email",
                  "phoneNumbers": "phone", "address.country": "country"})
    p, report, orgs = run(crm, client, CASES / "BR-01.csv", template, tmp_path)
    assert report.counts()["created"] == 2 and report.ok
    assert sorted(o["title"] for o in orgs) == ["Bakkerij Zonneveld B.V.", "Houtbouw Meijer"]
    assert {o["phoneNumbers"][0]["phoneNumber"] for o in orgs} == {"+31205550101", "+31655500202"}


def test_br02_semicolons_detected_comma_kept(crm, client, tmp_path):
    template = t({"title": "title", "website": "website", "emailAddresses": "email", "phoneNumbers": "phone",
                  "address.street": "street", "address.postalCode": "postal_code", "address.city": "city",
                  "address.country": "country"})
    p, report, orgs = run(crm, client, CASES / "BR-02.csv", template, tmp_path)
    assert report.ok and report.counts()["created"] == 2
    titles = {o["title"]: o for o in orgs}
    assert "Drukkerij De Vries, Noord" in titles
    # the national 050- number gets its region from the row's country
    assert titles["Tuinarchitectuur Bos"]["phoneNumbers"][0]["phoneNumber"] == "+31505550404"


def test_br03_utf8_and_cp1252_never_mojibake(crm, client, tmp_path):
    template = t({"title": "title", "emailAddresses": "email", "address.city": "city",
                  "address.country": "country"})
    run(crm, client, CASES / "BR-03.csv", template, tmp_path)
    crm.reset()
    p, report, orgs = run(crm, client, CASES / "BR-03-cp1252.csv", template, tmp_path)
    assert [o["title"] for o in orgs] == ["Café Brouwerij ’t Hoekje"]
    crm.reset()
    p, report, orgs = run(crm, client, CASES / "BR-03.csv", template, tmp_path)
    assert sorted(o["title"] for o in orgs) == ["Café Brouwerij ’t Hoekje", "Łódź Meble Sp. z o.o."]
    assert "Ã" not in json.dumps(orgs, ensure_ascii=False)


def test_br05_numeric_cells_sent_as_displayed(crm, client, tmp_path):
    # "office" is no phoneType of crm-api.md §8.2: the template maps it (type_map) so the row imports
    template = t({"title": "title", "phoneNumbers": {"column": "phone", "type_column": "phone_type",
                                                     "type_map": {"office": "work"}},
                  "chamberOfCommerceNumber": "kvk_number"}, identifiers=("phoneNumbers",), default_region="NL")
    p, report, orgs = run(crm, client, _br05(tmp_path / "BR-05.xlsx"), template, tmp_path)
    by_title = {o["title"]: o for o in orgs}
    haven = by_title["Havenbedrijf Voorbeeld B.V."]
    assert haven["phoneNumbers"][0]["phoneNumber"] == "+31105550707"
    assert haven["chamberOfCommerceNumber"] == "02012345"
    assert by_title["Mobiel Advies"]["phoneNumbers"][0]["phoneNumber"] == "+31655500808"
    assert "chamberOfCommerceNumber" not in by_title["Mobiel Advies"]
    grote = by_title["Grote Getallen BV"]
    assert grote["phoneNumbers"][0]["phoneNumber"] == "31612345678" and grote["chamberOfCommerceNumber"] == "12345678"
    warnings = {(i["row_number"], i["type"]) for i in report.issues.to_dicts() if i["severity"] == "warning"}
    assert (4, "numeric-cell") in warnings            # leading + or 0 may have been lost
    assert (4, "invalid-phone") in warnings           # not E.164: sent as typed, not guessed
    text = render_plan(p)  # the plan text shows them too, not only the report
    assert f"  {len(warnings)} warning(s); a warning alone stops no row:" in text
    assert text.endswith(f"planning used {p.requests_spent} request(s) ({p.strategy}).")  # < 1 min: no time
    p.requests_spent = 668  # a scan of 20k records: the time it took is worth saying
    assert render_plan(p).endswith(f"planning used 668 request(s) ({p.strategy}, ≈ 33.4 min).")
    assert "BR-05.xlsx:4:phone (Organisaties!B4): the cell was stored as a number" in text
    assert haven["phoneNumbers"][0]["phoneType"] == "work"
    dumped = json.dumps(orgs)
    for bad in ("31105550707.0", "E10", "e+10", "2012345.0", '"2012345"', '"655500808"'):
        assert bad not in dumped


def test_br06_stored_formula_results_import(crm, client, tmp_path):
    path = br06_workbook_a(tmp_path / "BR-06-A.xlsx")
    template = t({"title": "title", "emailAddresses": "email", "website": "website"})
    p, report, orgs = run(crm, client, path, template, tmp_path)
    by_title = {o["title"]: o for o in orgs}
    assert by_title["Windmolen Energie B.V."]["emailAddresses"][0]["email"] == "info@windmolen-energie.example"
    assert by_title["Windmolen Energie B.V."]["website"] == "https://windmolen-energie.example"
    assert "Polderkaas B.V." in by_title
    assert "=" not in json.dumps(orgs)


def test_br06_formulas_without_results_are_not_imported(crm, client, tmp_path):
    path = br06_workbook_b(tmp_path / "BR-06-B.xlsx")
    template = t({"title": "title", "emailAddresses": "email", "website": "website"})
    crm.clear_log()
    p, report, orgs = run(crm, client, path, template, tmp_path)
    assert orgs == [] and not [r for r in crm.requests if r.method == "POST"]
    issues = [i for i in report.issues.to_dicts() if i["severity"] == "error"]
    assert {(i["type"], i["cell"]) for i in issues} == {("formula-without-result", "B2"),
                                                        ("formula-without-result", "C2"),
                                                        ("formula-without-result", "A3")}
    assert all("Organisaties" in i["message"] for i in issues)
    assert not any(i["type"] == "missing-required" for i in issues)  # row 3 is not "title missing"
    assert {r["row_number"]: r["outcome"] for r in report.rows.to_dicts()} == {2: "invalid", 3: "invalid"}


def test_unknown_phone_type_is_a_row_error_naming_the_valid_values(crm, client, tmp_path):
    template = t({"title": "title", "phoneNumbers": {"column": "phone", "type_column": "phone_type"}},
                 identifiers=("phoneNumbers",), default_region="NL")
    p, report, orgs = run(crm, client, _br05(tmp_path / "BR-05.xlsx"), template, tmp_path)
    (issue,) = [i for i in report.issues.to_dicts() if i["type"] == "invalid-phone-type"]
    assert issue["row_number"] == 2 and issue["column"] == "phone_type" and issue["value"] == "office"
    assert "mobile" in issue["message"] and "fax" in issue["message"]
    assert sorted(o["title"] for o in orgs) == ["Grote Getallen BV", "Mobiel Advies"]
