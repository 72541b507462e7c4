"""The sandbox over real HTTP (fixture `crm`): auth, resources, errors, collections, filters,
identifiers, request log, control interface, persistence (crm-api.md §2-§10)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from bulkcrm.sandbox import Sandbox, run
from tests.conftest import OTHER_KEY, TEST_KEY

LD, MERGE = "application/ld+json", "application/merge-patch+json"
NOT_BLANK = "c1051bb4-d103-4f74-8988-acbcafc7fdc3"


def call(crm, method: str, path: str, body=None, *, key: str | None = TEST_KEY,
         ctype: str | None = None, params=None) -> requests.Response:
    headers = {"X-API-KEY": key} if key is not None else {}
    data = None
    if body is not None:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        headers["Content-Type"] = ctype or (MERGE if method == "PATCH" else LD)
    return requests.request(method, crm.url + path, data=data, headers=headers, params=params,
                            timeout=10)


def post(crm, path: str, body: dict, **kw) -> dict:
    resp = call(crm, "POST", path, body, **kw)
    assert resp.status_code == 201, resp.text
    return resp.json()


# -- binding and auth (crm-api.md §2) --------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_refuses_non_loopback_host(host):
    with pytest.raises(ValueError, match="only loopback addresses"):
        Sandbox(host=host, api_keys={"k": "t"})
    with pytest.raises(ValueError, match="only loopback addresses"):
        run(host=host, port=0, api_keys=["k"])


def test_run_needs_a_key():
    with pytest.raises(ValueError, match="at least one API key"):
        run(port=0)


def test_stop_closes_kept_alive_connections():
    sb = Sandbox(api_keys={"k": "t"}).start()
    with requests.Session() as s:
        assert s.get(sb.url + "/users", headers={"X-API-KEY": "k"}).status_code == 200
        sb.stop()
        with pytest.raises(requests.ConnectionError):
            s.get(sb.url + "/users", headers={"X-API-KEY": "k"})


def test_loopback_variants_are_accepted():
    with Sandbox(host="localhost", api_keys={"k": "t"}) as sb:
        assert sb.url.startswith("http://127.0.0.1:")
        assert requests.get(sb.url + "/users", headers={"X-API-KEY": "k"}).status_code == 200
    Sandbox(host="127.0.0.2", api_keys={"k": "t"})
    Sandbox(host="::1", api_keys={"k": "t"})


def test_missing_and_wrong_key_are_401(crm):
    missing = call(crm, "GET", "/organizations", key=None)
    assert missing.status_code == 401
    assert missing.headers["Content-Type"] == "application/json"
    assert missing.json() == {"code": 401, "message": "API key not found."}
    wrong = call(crm, "GET", "/organizations", key="nope")
    assert wrong.status_code == 401 and wrong.json() == {"code": 401, "message": "Invalid API key."}
    assert [(r.status, r.tenant) for r in crm.requests] == [(401, None), (401, None)]


def test_other_tenant_record_is_403_and_invisible(crm):
    org = post(crm, "/organizations", {"title": "Mine"})
    for method, body in (("GET", None), ("PUT", {"title": "x"}), ("PATCH", {"title": "x"}),
                         ("DELETE", None)):
        resp = call(crm, method, f"/organizations/{org['id']}", body, key="foreign-key")
        assert resp.status_code == 403 and resp.json()["detail"] == "Access Denied."
    assert call(crm, "GET", "/organizations", key="foreign-key").json()["totalItems"] == 0
    assert call(crm, "GET", "/organizations", key=OTHER_KEY).json()["totalItems"] == 1
    assert crm.store.all("organizations", tenant="tenant-a")[0]["title"] == "Mine"


# -- organizations: create, replace, merge patch (crm-api.md §8) ------------------------------

def test_post_201_shape_headers_and_read_only_fields(crm):
    resp = call(crm, "POST", "/organizations", {
        "title": "Acme", "id": "chosen", "createdAt": "2000-01-01T00:00:00+00:00",
        "avatarUrl": "http://x", "avatar": "/media_objects/9", "description": None,
        "emailAddresses": [{"email": "info@acme.example", "@type": "EmailAddress"}],
        "address": {"city": "Utrecht", "street": None}, "unknownKey": 1})
    assert resp.status_code == 201
    org = resp.json()
    assert org["id"] != "chosen" and len(org["id"]) == 36
    assert resp.headers["Location"] == f"/organizations/{org['id']}"
    assert resp.headers["Content-Location"] == f"/organizations/{org['id']}.jsonld"
    assert resp.headers["Content-Type"] == "application/ld+json; charset=utf-8"
    assert org["@context"] == "/contexts/Organization" and org["@type"] == "Organization"
    assert org["@id"] == f"/organizations/{org['id']}"
    assert org["createdAt"] == org["updatedAt"] and org["createdAt"].endswith("+00:00")
    assert not org["createdAt"].startswith("2000")
    for absent in ("avatar", "avatarUrl", "description", "unknownKey"):
        assert absent not in org
    assert org["emailAddresses"] == [{"email": "info@acme.example"}]
    assert org["address"] == {"city": "Utrecht"}
    assert org["tags"] == org["segments"] == org["people"] == org["phoneNumbers"] == []
    assert call(crm, "GET", f"/organizations/{org['id']}.jsonld").json() == org


def test_put_replaces_all_writable_fields(crm):
    crm.seed({"tags": [{"id": "t1", "title": "VIP"}]})
    org = post(crm, "/organizations", {"title": "A", "website": "https://a.example",
                                       "tags": ["/tags/t1"], "address": {"city": "X"}})
    resp = call(crm, "PUT", f"/organizations/{org['id']}", {"title": "B", "@id": org["@id"]})
    assert resp.status_code == 200
    new = resp.json()
    assert new["title"] == "B" and "website" not in new and "address" not in new
    assert new["tags"] == [] and new["createdAt"] == org["createdAt"]
    assert call(crm, "PUT", "/organizations/unknown", {"title": "B"}).status_code == 404
    mismatch = call(crm, "PUT", f"/organizations/{org['id']}", {"title": "B", "id": "other"})
    assert mismatch.status_code == 400
    missing = call(crm, "PUT", f"/organizations/{org['id']}", {"website": "x"})
    assert missing.status_code == 422 and missing.json()["violations"][0]["propertyPath"] == "title"


def test_patch_merge_semantics(crm):
    crm.seed({"tags": [{"id": "t1", "title": "a"}, {"id": "t2", "title": "b"}]})
    org = post(crm, "/organizations", {
        "title": "A", "website": "https://a.example", "tags": ["/tags/t1"],
        "emailAddresses": [{"email": "a@a.example"}, {"email": "b@a.example"}],
        "address": {"street": "Main 1", "city": "Utrecht", "country": "NL"}})
    resp = call(crm, "PATCH", f"/organizations/{org['id']}", {
        "website": None, "tags": ["/tags/t2"], "emailAddresses": [{"email": "c@a.example"}],
        "address": {"city": "Amsterdam", "street": None}, "updatedAt": "1999-01-01"})
    assert resp.status_code == 200
    new = resp.json()
    assert "website" not in new and new["title"] == "A"
    assert new["tags"] == ["/tags/t2"] and new["emailAddresses"] == [{"email": "c@a.example"}]
    assert new["address"] == {"city": "Amsterdam", "country": "NL"}
    assert not new["updatedAt"].startswith("1999")
    blank = call(crm, "PATCH", f"/organizations/{org['id']}", {"title": None})
    assert blank.status_code == 422 and blank.json()["violations"][0]["propertyPath"] == "title"


def test_patch_as_json_is_415(crm):
    org = post(crm, "/organizations", {"title": "A"})
    resp = call(crm, "PATCH", f"/organizations/{org['id']}", {"title": "B"},
                ctype="application/json")
    assert resp.status_code == 415
    assert resp.headers["Content-Type"] == "application/problem+json; charset=utf-8"
    assert resp.json()["detail"] == ('The content-type "application/json" is not supported. '
                                     'Supported MIME types are "application/merge-patch+json".')
    post_text = call(crm, "POST", "/organizations", "{}", ctype="text/csv")
    assert post_text.json()["detail"] == ('The content-type "text/csv" is not supported. Supported '
                                          'MIME types are "application/ld+json", "application/json".')
    assert call(crm, "POST", "/organizations", {"title": "J"}, ctype="application/json"
                ).status_code == 201


def test_post_without_title_is_422_exact_body(crm):
    resp = call(crm, "POST", "/organizations", {"website": "https://x.example"})
    assert resp.status_code == 422
    assert resp.headers["Link"] == ('<http://www.w3.org/ns/hydra/error>; '
                                    'rel="http://www.w3.org/ns/json-ld#error"')
    assert resp.json() == {
        "@context": "/contexts/ConstraintViolation", "@id": f"/validation_errors/{NOT_BLANK}",
        "@type": "ConstraintViolation", "type": f"/validation_errors/{NOT_BLANK}",
        "title": "An error occurred", "detail": "title: This value should not be blank.",
        "description": "title: This value should not be blank.", "status": 422,
        "violations": [{"propertyPath": "title", "message": "This value should not be blank.",
                        "code": NOT_BLANK}]}
    assert crm.store.count("organizations") == 0


def test_phone_type_choice_and_detail_lines(crm):
    resp = call(crm, "POST", "/organizations", {"title": "", "phoneNumbers": [
        {"phoneNumber": "1", "phoneType": "work"}, {"phoneNumber": "2", "phoneType": "office"}]})
    body = resp.json()
    assert [v["propertyPath"] for v in body["violations"]] == ["title", "phoneNumbers[1].phoneType"]
    assert body["violations"][1] == {"propertyPath": "phoneNumbers[1].phoneType",
                                     "message": "The value you selected is not a valid choice.",
                                     "code": "8e179f1b-97aa-4560-a02f-2a8b42e49df7"}
    assert body["detail"] == ("title: This value should not be blank.\n"
                              "phoneNumbers[1].phoneType: The value you selected is not a valid choice.")


@pytest.mark.parametrize("body, detail", [
    ('{"title": "x",', "Syntax error"),
    ({"title": 5}, 'The type of the "title" attribute must be "string", "int" given.'),
    ({"title": "x", "emailAddresses": "a@b"},
     'The type of the "emailAddresses" attribute must be "array", "string" given.'),
    ({"title": "x", "tags": ["abc"]}, 'Invalid IRI "abc".'),
    ({"title": "x", "tags": ["/api/tags/1"]}, 'Invalid IRI "/api/tags/1".'),
    ({"title": "x", "tags": ["/tags/missing"]}, 'Item not found for "/tags/missing".'),
    ({"title": "x", "tags": ["/users/u1"]}, 'Item not found for "/users/u1".'),
    ({"title": "x", "owner": "/users/nobody"}, 'Item not found for "/users/nobody".'),
    ({"title": "x", "tags": [{"title": "VIP"}]},
     'Nested documents for attribute "tags" are not allowed. Use IRIs instead.'),
    ({"title": "x", "archivedAt": "yesterday-ish"}, "Failed to parse time string (yesterday-ish)."),
])
def test_bad_bodies_are_400(crm, body, detail):
    crm.seed({"users": [{"id": "u1", "email": "u@x.example"}]})
    resp = call(crm, "POST", "/organizations", body)
    assert resp.status_code == 400 and resp.json()["detail"] == detail
    assert resp.json()["@type"] == "Error" and resp.json()["status"] == 400
    assert crm.store.count("organizations") == 0


def test_relations_stored_and_unchecked_fields_kept(crm):
    crm.seed({"users": [{"id": "u1", "email": "u@x.example"}], "segments": [
        {"id": "s1", "title": "S", "icon": "star"}]})
    person = post(crm, "/people", {"familyName": "Jansen"})
    org = post(crm, "/organizations", {
        "title": "A", "owner": "/users/u1", "segments": ["/segments/s1", "/segments/s1"],
        "people": [person["@id"]], "integrationParticipants": ["https://anything/1"],
        "avatar": "not-even-an-iri"})
    assert org["owner"] == "/users/u1" and org["segments"] == ["/segments/s1"]
    assert org["integrationParticipants"] == ["https://anything/1"] and "avatar" not in org
    assert call(crm, "GET", person["@id"]).json()["organizations"] == [org["@id"]]
    assert call(crm, "DELETE", "/segments/s1").status_code == 204
    assert call(crm, "GET", org["@id"]).json()["segments"] == []


def test_unknown_route_id_and_verbs(crm):
    assert call(crm, "GET", "/nothing").json()["detail"] == "Not Found"
    assert call(crm, "GET", "/organizations/nope").status_code == 404
    crm.seed({"tags": [{"id": "t1", "title": "a"}]})
    resp = call(crm, "DELETE", "/tags/t1")
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, PUT, PATCH"
    assert call(crm, "POST", "/users", {"email": "x"}).status_code == 405
    assert call(crm, "GET", "/tags/t1").status_code == 200


# -- notes (crm-api.md §9) --------------------------------------------------------------------

def test_notes_lifecycle(crm):
    crm.seed({"users": [{"id": "u1", "email": "me@x.example"}, {"id": "u2", "email": "b@x"}],
              "note_categories": [{"id": "c1", "title": "Call"}]})
    org = post(crm, "/organizations", {"title": "A"})
    base = f"/organizations/{org['id']}/notes"
    late = post(crm, base, {"description": "late", "category": "/note_categories/c1",
                            "createdAt": "2024-05-01T12:00:00+02:00"})
    early = post(crm, base, {"description": "early", "category": "/note_categories/c1",
                             "createdAt": "2024-01-01T00:00:00Z", "author": "/users/u2",
                             "flagged": True})
    assert late["@id"] == f"{base}/{late['id']}" and late["@type"] == "OrganizationNote"
    assert late["createdAt"] == "2024-05-01T10:00:00+00:00" and "updatedAt" not in late
    assert (late["flagged"], late["isPrivate"], late["author"]) == (False, False, "/users/u1")
    listed = call(crm, "GET", base).json()
    assert [m["id"] for m in listed["member"]] == [early["id"], late["id"]]
    assert listed["@context"] == "/contexts/OrganizationNote" and listed["@id"] == base
    bad = call(crm, "POST", base, {"description": " ", "title": "t"})
    assert [v["propertyPath"] for v in bad.json()["violations"]] == ["category"]
    assert call(crm, "POST", "/organizations/nope/notes", {"description": "d"}).status_code == 404
    assert call(crm, "GET", "/organizations/nope/notes").json()["totalItems"] == 0
    patched = call(crm, "PATCH", late["@id"], {"title": "T", "flagged": True}).json()
    assert patched["title"] == "T" and patched["createdAt"] == late["createdAt"]
    put = call(crm, "PUT", late["@id"], {"description": "new", "category": "/note_categories/c1"})
    assert put.status_code == 200 and "title" not in put.json()
    assert put.json()["createdAt"] == late["createdAt"]
    other = post(crm, "/organizations", {"title": "B"})
    assert call(crm, "GET", f"/organizations/{other['id']}/notes/{late['id']}").status_code == 404
    assert call(crm, "DELETE", late["@id"]).status_code == 204
    assert call(crm, "GET", late["@id"]).status_code == 404


# -- collections (crm-api.md §6) ---------------------------------------------------------------

def test_items_per_page_clamped_and_view_links(crm):
    crm.seed({"organizations": [{"title": f"Org {i:02d}"} for i in range(47)]})
    resp = call(crm, "GET", "/organizations", params={"itemsPerPage": 100, "q": "org"}).json()
    assert len(resp["member"]) == 30 and resp["totalItems"] == 47
    assert resp["view"] == {
        "@id": "/organizations?itemsPerPage=100&q=org&page=1", "@type": "PartialCollectionView",
        "first": "/organizations?itemsPerPage=100&q=org&page=1",
        "last": "/organizations?itemsPerPage=100&q=org&page=2",
        "next": "/organizations?itemsPerPage=100&q=org&page=2"}
    page2 = requests.get(crm.url + resp["view"]["next"], headers={"X-API-KEY": TEST_KEY}).json()
    assert len(page2["member"]) == 17 and "next" not in page2["view"]
    assert page2["view"]["previous"] == "/organizations?itemsPerPage=100&q=org&page=1"
    default = call(crm, "GET", "/organizations").json()
    assert len(default["member"]) == 15 and default["view"]["last"] == "/organizations?page=4"
    assert default["@type"] == "Collection" and default["@id"] == "/organizations"
    assert default["search"]["@type"] == "IriTemplate"
    assert "identifiers[]" in [m["variable"] for m in default["search"]["mapping"]]


def test_view_omitted_only_without_params_on_one_page(crm):
    crm.seed({"tags": [{"title": "a"}, {"title": "b"}]})
    assert "view" not in call(crm, "GET", "/tags").json()
    assert call(crm, "GET", "/tags", params={"itemsPerPage": 30}).json()["view"] == {
        "@id": "/tags?itemsPerPage=30", "@type": "PartialCollectionView"}
    past = call(crm, "GET", "/tags", params={"page": 9})
    assert past.status_code == 200 and past.json()["member"] == []
    zero = call(crm, "GET", "/tags", params={"itemsPerPage": 0}).json()
    assert zero["member"] == [] and zero["totalItems"] == 2
    for bad in (0, -1, "abc"):
        resp = call(crm, "GET", "/tags", params={"page": bad})
        assert resp.status_code == 400 and resp.json()["detail"] == "Page should not be less than 1"


def test_array_links_are_php_encoded_and_followable(crm):
    crm.seed({"organizations": [{"title": f"O{i}", "emailAddresses": [{"email": f"{i}@x.example"}]}
                                for i in range(40)]})
    emails = [f"{i}@x.example" for i in range(35)]
    first = call(crm, "GET", "/organizations",
                 params={"identifiers[]": emails, "itemsPerPage": 30}).json()
    assert first["totalItems"] == 35
    assert first["view"]["next"].startswith("/organizations?identifiers%5B0%5D=0%40x.example&")
    second = requests.get(crm.url + first["view"]["next"], headers={"X-API-KEY": TEST_KEY}).json()
    assert len(second["member"]) == 5


# -- filters (crm-api.md §7, §8.3) ---------------------------------------------------------------

def test_identifiers_match_emails_and_phones(crm):
    crm.seed({"organizations": [
        {"@id": "/organizations/a", "title": "A", "emailAddresses": [{"email": "info@x.example"}]},
        {"@id": "/organizations/b", "title": "B", "phoneNumbers": [
            {"phoneNumber": "+31 20 555 0101", "phoneType": "work"}]},
        {"@id": "/organizations/c", "title": "C", "phoneNumbers": [{"phoneNumber": "020 555 0101"}],
         "linkedinId": "Acme-BV"},
        {"@id": "/organizations/d", "title": "D", "emailAddresses": [{"email": "other@x.example"}]},
    ]})
    url = f"{crm.url}/organizations?identifiers[]=Info@X.example&identifiers[]=%2B31205550101"
    found = requests.get(url, headers={"X-API-KEY": TEST_KEY}).json()
    assert sorted(m["id"] for m in found["member"]) == ["a", "b"]

    def ids(*values):
        resp = call(crm, "GET", "/organizations", params={"identifiers[]": list(values)}).json()
        return sorted(m["id"] for m in resp["member"])

    assert ids("0031205550101") == ids("+31 (20) 555-0101") == ["b"]
    assert ids("020 555 0101") == ["c"] and ids("  INFO@x.example ") == ["a"]
    assert ids("Acme-BV") == ["c"] and ids("acme-bv") == []
    single = call(crm, "GET", "/organizations", params={"identifiers": "other@x.example"}).json()
    assert [m["id"] for m in single["member"]] == ["d"]
    assert call(crm, "GET", "/organizations", key="foreign-key",
                params={"identifiers": "info@x.example"}).json()["totalItems"] == 0


def test_organization_filters_and_orders(crm):
    crm.seed({"users": [{"id": "u1", "email": "z@x", "familyName": "Zeta"},
                        {"id": "u2", "email": "a@x", "familyName": "Alpha"}],
              "tags": [{"id": "t1", "title": "a"}], "segments": [{"id": "s1", "title": "s", "icon": "i"}],
              "organizations": [
                  {"id": "o1", "title": "Éclair", "owner": "/users/u1", "tags": ["/tags/t1"],
                   "createdAt": "2024-01-01T00:00:00+00:00", "archivedAt": "2024-06-01T00:00:00Z",
                   "customerId": "CUST-9"},
                  {"id": "o2", "title": "apple", "owner": "/users/u2", "segments": ["/segments/s1"],
                   "createdAt": "2025-01-01T00:00:00+00:00",
                   "emailAddresses": [{"email": "Sales@two.example"}]},
                  {"id": "o3", "title": "Banana", "createdAt": "2025-06-01T00:00:00+00:00"}]})

    def ids(**params):
        resp = call(crm, "GET", "/organizations", params=params)
        assert resp.status_code == 200
        return [m["id"] for m in resp.json()["member"]]

    assert ids(**{"order[title.sort]": "asc"}) == ["o2", "o3", "o1"]
    assert ids(**{"order[title.sort]": "DESC"}) == ["o1", "o3", "o2"]
    assert ids(**{"order[owner.lastName]": "asc"}) == ["o3", "o2", "o1"]
    assert ids(**{"order[title.sort]": "sideways"}) == ["o1", "o2", "o3"]
    assert ids(**{"owner.id": "u1"}) == ["o1"] == ids(**{"owner.id[]": ["/users/u1", "zz"]})
    assert ids(**{"tags.id": "/tags/t1"}) == ["o1"] and ids(**{"segments.uuid[]": ["s1"]}) == ["o2"]
    assert ids(**{"emailAddresses.email": "Sales@two.example"}) == ["o2"]
    assert ids(**{"exists[archivedAt]": "true"}) == ["o1"]
    assert ids(**{"exists[archivedAt]": "0"}) == ["o2", "o3"]
    assert ids(**{"exists[archivedAt]": "maybe"}) == ["o1", "o2", "o3"]
    assert ids(**{"createdAt[after]": "2025-01-01"}) == ["o2", "o3"]
    assert ids(**{"createdAt[strictly_after]": "2025-01-01T00:00:00Z"}) == ["o3"]
    assert ids(**{"createdAt[before]": "2025-01-01T00:00:00+00:00"}) == ["o1", "o2"]
    assert ids(**{"createdAt[strictly_before]": "2025-01-01"}) == ["o1"]
    assert ids(**{"createdAt[before]": "not a date"}) == ["o1", "o2", "o3"]
    assert ids(q="ÉCLAIR") == ["o1"] and ids(q="cust-9") == ["o1"] and ids(q="two.EX") == ["o2"]
    assert ids(customerId="CUST-9", whatever="1") == ["o1", "o2", "o3"]   # no such filter (§8.3)


# -- request log, control interface, persistence ------------------------------------------------

def test_request_log_is_exact(crm):
    call(crm, "GET", "/organizations", params={"q": "a b", "itemsPerPage": 5})
    call(crm, "POST", "/organizations", {"title": "A"})
    call(crm, "GET", "/tags", key=None)
    call(crm, "GET", "/tags", key="foreign-key")
    requests.get(crm.url + "/_sandbox/requests")                     # control: not logged
    log = crm.requests
    assert [(r.method, r.path, r.query, r.status, r.tenant) for r in log] == [
        ("GET", "/organizations", "q=a+b&itemsPerPage=5", 200, "tenant-a"),
        ("POST", "/organizations", "", 201, "tenant-a"),
        ("GET", "/tags", "", 401, None),
        ("GET", "/tags", "", 200, "tenant-b")]
    assert all(isinstance(r.time, float) for r in log) and log[0].time <= log[-1].time
    crm.clear_log()
    assert crm.requests == []


def test_control_interface(crm):
    base = crm.url + "/_sandbox"
    seed = {"organizations": [{"@id": "/organizations/x1", "title": "Seeded"}]}
    assert requests.post(base + "/seed", json=seed).json()["seeded"]["organizations"] == 1
    call(crm, "GET", "/organizations/x1")
    assert [r["status"] for r in requests.get(base + "/requests").json()] == [200]
    assert requests.delete(base + "/requests").status_code == 204 and crm.requests == []
    state = requests.get(base + "/state/organizations").json()
    assert [o["title"] for o in state] == ["Seeded"]
    faults = requests.put(base + "/faults", json={"burst_429": 1}).json()
    assert faults["burst_429"] == 1 and crm.faults.burst_429 == 1
    assert call(crm, "GET", "/tags").status_code == 429
    assert requests.put(base + "/rate-limit", json={"limit": 1, "window_s": 30}).status_code == 204
    assert [call(crm, "GET", "/tags").status_code for _ in range(2)] == [200, 429]
    requests.put(base + "/rate-limit", data="null")
    assert call(crm, "GET", "/tags").status_code == 200
    assert requests.post(base + "/reset").status_code == 204
    assert crm.store.count("organizations") == 0 and crm.requests == []


def test_control_off_is_404():
    with Sandbox(api_keys={"k": "t"}) as sb:
        assert requests.post(sb.url + "/_sandbox/reset").status_code == 404
        assert requests.get(sb.url + "/_sandbox/state/organizations",
                            headers={"X-API-KEY": "k"}).status_code == 404


def test_persistence_across_instances_and_processes(tmp_path):
    db = tmp_path / "crm.sqlite"
    with Sandbox(db_path=db, api_keys={"k": "t"}, rate_limit=None) as first:
        org = requests.post(first.url + "/organizations", json={"title": "Kept"},
                            headers={"X-API-KEY": "k"}).json()
    with Sandbox(db_path=db, api_keys={"k": "t"}, rate_limit=None) as second:
        got = requests.get(second.url + org["@id"], headers={"X-API-KEY": "k"})
        assert got.status_code == 200 and got.json()["title"] == "Kept"
    code = ("from bulkcrm.sandbox import Sandbox; import sys; "
            "print([o['title'] for o in Sandbox(db_path=sys.argv[1]).store.all('organizations')])")
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['Kept']"


def test_seed_file_yaml_and_existing_case(tmp_path, crm):
    from tests.conftest import CASES

    crm.load_seed_file(CASES / "BR-07.existing.json")
    seed = tmp_path / "seed.yaml"
    seed.write_text("users:\n  - {id: u9, email: owner@x.example, familyName: Smit}\n"
                    "notes:\n  - {organization: /organizations/6f1c2a4e-0007-4000-8000-000000000101,"
                    " description: hello, category: /note_categories/c}\n")
    assert crm.load_seed_file(seed)["notes"] == 1
    assert crm.requests == []                                          # seeding is not a request
    org = call(crm, "GET", "/organizations/6f1c2a4e-0007-4000-8000-000000000101").json()
    assert org["title"] == "Dijkstra Bouw B.V." and org["linkedinId"] == "dijkstra-bouw"
    notes = call(crm, "GET", org["@id"] + "/notes").json()["member"]
    assert [n["description"] for n in notes] == ["hello"] and notes[0]["flagged"] is False
    assert call(crm, "GET", "/users", params={"email": "owner@x.example"}).json()["totalItems"] == 1
    with pytest.raises(ValueError, match="unknown seed keys"):
        crm.seed({"organisations": []})
