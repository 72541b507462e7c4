"""Contract test driven by /work/shared/crm-api.yaml: every documented endpoint the sandbox serves
answers its success status and each documented error status a server can produce, and every
documented list query parameter is accepted (and filters as crm-api.md says, where its meaning
is clear). Tests are generated from the YAML, so a newly documented endpoint or parameter shows
up here as a test."""
from __future__ import annotations

import json
import re

import pytest
import requests
import yaml

from tests.conftest import SHARED, TEST_KEY

SPEC = yaml.safe_load((SHARED / "crm-api.yaml").read_text(encoding="utf-8"))
ENDPOINTS = SPEC["endpoints"]
FOREIGN_KEY = "foreign-key"
LD, MERGE = "application/ld+json", "application/merge-patch+json"
SERVED = ("organizations", "notes", "people", "tags", "segments", "users", "note_categories")

UNSERVED: dict[str, str] = {}
"""Documented endpoint ids the sandbox cannot serve, with the reason (none today)."""
SKIPPED_ERRORS = {
    (403, "collection"): "403 needs another tenant's record; a tenant's own collection is never "
                         "forbidden (crm-api.md §2)",
    (403, "notes-list"): "a note list under another tenant's organization is 200 and empty: the "
                         "parent is not checked (crm-api.md §9.2 [AP])",
    (500, "any"): "500 only happens through injected faults (test_sandbox_faults.py)",
}

WORLD = {
    "users": [{"id": "u1", "email": "zed@x.example", "givenName": "Zed", "familyName": "Zeta"},
              {"id": "u2", "email": "amy@x.example", "familyName": "Alpha"}],
    "note_categories": [{"id": "c1", "title": "Call"}, {"id": "c2", "title": "Meeting"}],
    "tags": [{"id": "t1", "title": "Gold"}, {"id": "t2", "title": "Silver"}],
    "segments": [{"id": "s1", "title": "Leads", "icon": "star"},
                 {"id": "s2", "title": "Customers", "icon": "heart"}],
    "organizations": [
        {"id": "o1", "title": "Éclair BV", "owner": "/users/u1", "tags": ["/tags/t1"],
         "segments": ["/segments/s1"], "emailAddresses": [{"email": "info@one.example"}],
         "phoneNumbers": [{"phoneNumber": "+31 20 555 0101", "phoneType": "work"}],
         "linkedinId": "one-li", "customerId": "C-1", "chamberOfCommerceNumber": "12345678",
         "createdAt": "2024-01-01T00:00:00+00:00", "updatedAt": "2024-02-01T00:00:00+00:00",
         "archivedAt": "2024-06-01T00:00:00+00:00"},
        {"id": "o2", "title": "apple", "owner": "/users/u2", "tags": ["/tags/t2"],
         "segments": ["/segments/s2"], "emailAddresses": [{"email": "sales@two.example"}],
         "createdAt": "2025-01-01T00:00:00+00:00"},
        {"id": "o3", "title": "Banana", "createdAt": "2025-06-01T00:00:00+00:00"}],
    "notes": [
        {"id": "n1", "organization": "/organizations/o1", "title": "Kickoff",
         "description": "first meeting", "flagged": True, "category": "/note_categories/c1",
         "author": "/users/u1", "createdAt": "2024-02-01T00:00:00+00:00"},
        {"id": "n2", "organization": "/organizations/o1", "description": "follow up",
         "category": "/note_categories/c2", "author": "/users/u2",
         "createdAt": "2024-03-01T00:00:00+00:00"},
        {"id": "n3", "organization": "/organizations/o2", "description": "elsewhere",
         "category": "/note_categories/c1", "createdAt": "2024-01-15T00:00:00+00:00"}],
    "people": [
        {"id": "p1", "familyName": "Jansen", "owner": "/users/u1", "tags": ["/tags/t1"],
         "segments": ["/segments/s1"], "emailAddresses": [{"email": "jan@p.example"}],
         "createdAt": "2024-01-01T00:00:00+00:00"},
        {"id": "p2", "familyName": "de Vries", "owner": "/users/u2", "tags": ["/tags/t2"],
         "segments": ["/segments/s2"], "createdAt": "2025-01-01T00:00:00+00:00",
         "archivedAt": "2025-02-01T00:00:00+00:00"},
        {"id": "p3", "familyName": "Bakker", "createdAt": "2025-06-01T00:00:00+00:00"}],
}
FOREIGN = {"users": [{"id": "fu1", "email": "f@x"}], "note_categories": [{"id": "fc1", "title": "F"}],
           "tags": [{"id": "ft1", "title": "F"}], "segments": [{"id": "fs1", "title": "F", "icon": "i"}],
           "organizations": [{"id": "f1", "title": "Foreign"}], "people": [{"id": "fp1", "familyName": "F"}],
           "notes": [{"id": "fn1", "organization": "/organizations/f1", "description": "F"}]}
OWN_ID = {"organizations": "o1", "notes": "n1", "people": "p1", "tags": "t1", "segments": "s1",
          "users": "u1", "note_categories": "c1"}
FOREIGN_ID = {"organizations": "f1", "notes": "fn1", "people": "fp1", "tags": "ft1",
              "segments": "fs1", "users": "fu1", "note_categories": "fc1"}
VALID = {"organizations": {"title": "Written"}, "people": {"familyName": "Written"},
         "tags": {"title": "Written"}, "segments": {"title": "Written", "icon": "star"},
         "notes": {"description": "Written", "category": "/note_categories/c2"}}
INVALID = {"organizations": {"website": "x"}, "people": {"givenName": "x"}, "tags": {},
           "segments": {"sequence": 1}, "notes": {"title": "x"}}
INVALID_PATCH = {"organizations": {"title": ""}, "people": {"familyName": ""},
                 "tags": {"title": ""}, "segments": {"icon": ""}, "notes": {"description": ""}}
NAME = {"organizations": "title", "people": "familyName", "tags": "title", "segments": "title",
        "notes": "description"}


def coll_of(path: str) -> str:
    return "notes" if "/notes" in path else path.strip("/").split("/")[0]


def is_item(path: str) -> bool:
    return path.rstrip("/").endswith("{id}")


@pytest.fixture
def world(crm):
    crm.seed(WORLD)
    crm.seed(FOREIGN, tenant="tenant-b")
    return crm


def url_of(ep: dict, which: str = "own") -> str:
    """The endpoint path with ids of the seeded world: own, foreign (tenant-b) or missing."""
    coll, path = coll_of(ep["path"]), ep["path"]
    ids = OWN_ID if which != "foreign" else FOREIGN_ID
    org = ids["organizations"]
    if which == "missing":
        path = path.replace("{id}", "missing-id")
        org = "missing-org" if not is_item(path) and coll == "notes" else org
    return path.replace("{organizationId}", org).replace("{id}", ids[coll])


def send(crm, ep: dict, *, which: str = "own", key: str | None = TEST_KEY, body=None,
         ctype: str | None = None, params=None) -> requests.Response:
    headers = {"X-API-KEY": key} if key else {}
    data = None
    if ep["method"] in ("POST", "PUT", "PATCH"):
        if body is None:
            body = VALID[coll_of(ep["path"])] if ep["method"] != "PATCH" else {
                NAME[coll_of(ep["path"])]: "Patched"}
        headers["Content-Type"] = ctype or (ep.get("request") or {}).get(
            "content_type", MERGE if ep["method"] == "PATCH" else LD)
        data = body if isinstance(body, str) else json.dumps(body)
    return requests.request(ep["method"], crm.url + url_of(ep, which), data=data,
                            headers=headers, params=params, timeout=10)


def _served(ep: dict) -> bool:
    return coll_of(ep["path"]) in SERVED and ep["id"] not in UNSERVED


def _endpoint_params():
    for ep in ENDPOINTS:
        marks = () if _served(ep) else (pytest.mark.skip(reason=UNSERVED.get(
            ep["id"], "not served by the sandbox")),)
        yield pytest.param(ep, id=ep["id"], marks=marks)


def _error_params():
    for ep in ENDPOINTS:
        for status in ep.get("errors", []):
            yield pytest.param(ep, status, id=f"{ep['id']}-{status}")


# -- success ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ep", list(_endpoint_params()))
def test_success_status(world, ep):
    coll, method = coll_of(ep["path"]), ep["method"]
    expected = ep.get("success", ep.get("sandbox_status"))
    resp = send(world, ep)
    assert resp.status_code == expected, resp.text
    if expected == 405:
        assert resp.headers["Allow"] and world.store.get(coll, OWN_ID[coll]) is not None
        return
    if method == "DELETE":
        assert resp.content == b"" and world.store.get(coll, OWN_ID[coll]) is None
        return
    doc = resp.json()
    if method == "GET" and not is_item(ep["path"]):
        own = [r for r in WORLD[coll] if coll != "notes" or r["organization"].endswith("/o1")]
        assert doc["@type"] == "Collection" and doc["totalItems"] == len(own)
        return
    assert doc["@type"] == SPEC["resources"][_resource_name(coll)]["jsonld_type"]
    if method == "POST":
        assert resp.headers["Location"] == doc["@id"] and world.store.get(coll, doc["id"])
    if method in ("PUT", "PATCH"):
        fetched = requests.get(world.url + doc["@id"], headers={"X-API-KEY": TEST_KEY}).json()
        assert fetched[NAME[coll]] == ("Patched" if method == "PATCH" else "Written")
    if method == "GET":
        assert doc["@id"] == url_of(ep) and doc["id"] == OWN_ID[coll]


def _resource_name(coll: str) -> str:
    return next(name for name, r in SPEC["resources"].items()
                if r.get("collection_path") in (f"/{coll}",) or
                (isinstance(r.get("collection_path"), dict) and
                 r["collection_path"]["value"].endswith(f"/{coll}")))


# -- documented errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("ep, status", list(_error_params()))
def test_error_status(world, ep, status):
    if not _served(ep):
        pytest.skip(UNSERVED.get(ep["id"], "not served by the sandbox"))
    coll, method, item = coll_of(ep["path"]), ep["method"], is_item(ep["path"])
    before = world.store.count(coll)
    if status == 400:
        if method == "GET":
            resp = send(world, ep, params={"page": 0})
            assert resp.json()["detail"] == "Page should not be less than 1"
        else:
            resp = send(world, ep, body='{"broken": ')
            assert resp.json()["detail"] == "Syntax error"
    elif status == 401:
        resp = send(world, ep, key=None)
        assert resp.json() == {"code": 401, "message": "API key not found."}
    elif status == 403:
        if not item and coll != "notes":
            pytest.skip(SKIPPED_ERRORS[(403, "collection")])
        if not item and method == "GET":
            pytest.skip(SKIPPED_ERRORS[(403, "notes-list")])
        resp = send(world, ep, which="foreign")
        assert resp.json()["detail"] == "Access Denied."
    elif status == 404:
        resp = send(world, ep, which="missing")
        assert resp.json()["detail"] == "Not Found"
    elif status == 415:
        resp = send(world, ep, ctype="text/plain")
        assert resp.json()["detail"].startswith('The content-type "text/plain" is not supported.')
    elif status == 422:
        resp = send(world, ep, body=(INVALID_PATCH if method == "PATCH" else INVALID)[coll])
        paths = {v["propertyPath"] for v in resp.json()["violations"]}
        required = set((ep.get("request") or {}).get("required") or [])
        assert paths and required <= paths
    elif status == 429:
        world.set_rate_limit(1, 60.0)
        try:
            assert requests.get(world.url + "/users", headers={"X-API-KEY": TEST_KEY}).ok
            resp = send(world, ep)
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
        finally:
            world.set_rate_limit(None)
    else:
        pytest.skip(SKIPPED_ERRORS.get((status, "any"), f"no generic way to provoke {status}"))
    assert resp.status_code == status, resp.text
    if status != 401:
        assert resp.headers["Content-Type"] == "application/problem+json; charset=utf-8"
        assert resp.json()["status"] == status
    assert world.store.count(coll) == before                         # nothing written


# -- documented list parameters ------------------------------------------------------------------------

_NO_FILTER = "crm-api.md §8.3 [DOC]: no filter on customerId, chamberOfCommerceNumber, title, updatedAt"
_UNLISTED = "not among the organization filters of crm-api.md §8.3 [DOC]"
NOT_FILTERS: dict[tuple[str, str], tuple[str, str]] = {
    ("organizations", "title"): ("apple", _NO_FILTER),
    ("organizations", "customerId"): ("C-1", _NO_FILTER),
    ("organizations", "chamberOfCommerceNumber"): ("12345678", _NO_FILTER),
    **{("organizations", f"updatedAt[{op}]"): ("2024-06-01", _NO_FILTER)
       for op in ("before", "strictly_before", "after", "strictly_after")},
    ("organizations", "order[updatedAt]"): ("desc", _NO_FILTER),
    ("organizations", "phoneNumbers.phoneNumber"): ("+31 20 555 0101", _UNLISTED),
    ("organizations", "linkedinId"): ("one-li", _UNLISTED),
    ("organizations", "segments.id"): ("s1", _UNLISTED),
    ("organizations", "order[title]"): ("desc", _UNLISTED),
    ("organizations", "order[createdAt]"): ("desc", _UNLISTED),
}
"""Parameters the YAML's endpoint list names but crm-api.md says the API does not have:
(value that would filter if they existed, reason). The sandbox ignores them like any unknown
parameter (§7); a client relying on them would match everything on the real API."""
DECOY = "no-such-value"
DATES = {"after": "2025-01-01", "before": "2025-01-01T00:00:00Z",
         "strictly_after": "2025-01-01T00:00:00+00:00", "strictly_before": "2025-01-01"}
CHECKS: dict[tuple[str, str], tuple[object, list]] = {
    ("organizations", "q"): ("ONE.example", ["o1"]),
    ("organizations", "owner.id"): ("u1", ["o1"]),
    ("organizations", "emailAddresses.email"): ("sales@two.example", ["o2"]),
    ("organizations", "tags.id"): ("/tags/t1", ["o1"]),
    ("organizations", "segments.uuid"): ("s2", ["o2"]),
    ("organizations", "exists[archivedAt]"): ("true", ["o1"]),
    ("organizations", "order[title.sort]"): ("asc", ["o2", "o3", "o1"]),
    ("organizations", "order[owner.lastName]"): ("desc", ["o1", "o2", "o3"]),
    ("organizations", "identifiers"): ("+31205550101", ["o1"]),
    ("notes", "q"): ("KICKOFF", ["n1"]),
    ("notes", "organization"): ("/organizations/o1", ["n1", "n2"]),
    ("notes", "category.id"): ("c2", ["n2"]),
    ("notes", "author.id"): ("/users/u1", ["n1"]),
    ("notes", "flagged"): ("false", ["n2"]),
    ("notes", "order[flagged]"): ("desc", ["n1", "n2"]),
    ("notes", "order[createdAt]"): ("desc", ["n2", "n1"]),
    ("people", "q"): ("vries", ["p2"]),
    ("people", "owner.id"): ("u2", ["p2"]),
    ("people", "emailAddresses.email"): ("jan@p.example", ["p1"]),
    ("people", "tags.id"): ("t2", ["p2"]),
    ("people", "segments.uuid"): ("/segments/s1", ["p1"]),
    ("people", "exists[archivedAt]"): ("0", ["p1", "p3"]),
    ("people", "order[familyName]"): ("asc", ["p3", "p2", "p1"]),
    ("people", "order[createdAt]"): ("desc", ["p3", "p2", "p1"]),
    ("tags", "id"): ("t2", ["t2"]),
    ("users", "email"): ("amy@x.example", ["u2"]),
    ("note_categories", "title"): ("Meeting", ["c2"]),
}
"""(collection, parameter) -> (value, expected member ids in order), over the seeded world."""


def _list_params():
    """(list endpoint, parameter name) for every documented parameter, `[]` forms included."""
    by_path: dict[str, set[str]] = {}
    for ep in ENDPOINTS:
        if ep["method"] == "GET" and not is_item(ep["path"]) and "filters" in ep:
            by_path.setdefault(ep["path"], set()).update(_expand(f["name"], f.get("multi"), None)
                                                         for f in ep["filters"])
    for res in SPEC["resources"].values():
        path = res.get("collection_path")
        path = path["value"] if isinstance(path, dict) else path
        for name, f in (res.get("filters") or {}).items():
            by_path.setdefault(path, set()).add(_expand(name, f.get("multi"), f.get("operators")))
    for ep in ENDPOINTS:
        if ep["path"] in by_path and ep["method"] == "GET":
            names = sorted({n for group in by_path.pop(ep["path"]) for n in group})
            for name in names:
                yield pytest.param(ep, name, id=f"{ep['id']}:{name}")


def _expand(name: str, multi: bool | None, operators: list | None) -> frozenset[str]:
    m = re.match(r"^(.+)\[(.+\|.+)\]$", name)
    names = [f"{m.group(1)}[{op}]" for op in m.group(2).split("|")] if m else [name]
    if operators:
        names = [f"{name}[{op}]" for op in operators]
    return frozenset(names + ([f"{n}[]" for n in names] if multi else []))


def _ids(world, ep: dict, params: dict) -> tuple[dict, list]:
    resp = send(world, ep, params=params)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    return doc, [m if isinstance(m, str) else m["id"] for m in doc["member"]]


@pytest.mark.parametrize("ep, name", list(_list_params()))
def test_list_parameter(world, ep, name):
    coll = coll_of(ep["path"])
    base = name[:-2] if name.endswith("[]") else name
    everything = _ids(world, ep, {})[1]
    date = re.match(r"^createdAt\[(\w+)\]$", base)
    if (coll, base) in NOT_FILTERS:
        value, reason = NOT_FILTERS[(coll, base)]
        value = [DECOY, value] if name.endswith("[]") else value
        assert _ids(world, ep, {name: value})[1] == everything, reason
    elif base == "page":
        assert _ids(world, ep, {"page": 2, "itemsPerPage": 1})[1] == everything[1:2]
    elif base == "itemsPerPage":
        doc, ids = _ids(world, ep, {"itemsPerPage": 1})
        assert ids == everything[:1] and doc["totalItems"] == len(everything)
        assert doc["view"]["last"].endswith(f"page={len(everything)}")
    elif base == "view":
        assert _ids(world, ep, {"view": "idx"})[1] == everything
        assert all(isinstance(m, str) for m in _ids(world, ep, {"view": "idx"})[0]["member"])
    elif date:
        op = date.group(1)
        stamps = {r["id"]: r["createdAt"] for r in WORLD[coll] if r["id"] in everything}
        cut = "2025-01-01T00:00:00+00:00" if coll != "notes" else "2024-02-01T00:00:00+00:00"
        value = DATES[op] if coll != "notes" else cut
        keep = {"after": lambda s: s >= cut, "before": lambda s: s <= cut,
                "strictly_after": lambda s: s > cut, "strictly_before": lambda s: s < cut}[op]
        assert _ids(world, ep, {name: value})[1] == [i for i in everything if keep(stamps[i])]
    elif (coll, base) in CHECKS:
        value, expected = CHECKS[(coll, base)]
        if name.endswith("[]"):
            value = [DECOY, value]
        assert _ids(world, ep, {name: value})[1] == expected
    else:
        _ids(world, ep, {name: "x"})                                   # accepted: 200
