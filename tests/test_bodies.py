"""The column-wise request bodies (bodies.py) against the per-row reference (diff.create_body,
diff.update), and the plan's frame-backed views (planfile.Plan), on records served by the sandbox."""
from __future__ import annotations

import csv
import json

import polars as pl
import pytest

from bulkcrm import diff
from bulkcrm.mapping import map_rows
from bulkcrm.plan import Plan, plan
from bulkcrm.read import read
from bulkcrm.template import parse_template

RECORDS = [
    {"@id": "/organizations/00000000-0000-4000-8000-00000000000a", "title": "Alpha BV",
     "emailAddresses": [{"email": "info@alpha.nl"}],
     "phoneNumbers": [{"phoneNumber": "+31201234567", "phoneType": "landline"}],
     "address": {"street": "Main 1", "postalCode": "1011 AA", "city": "Amsterdam", "country": "NL"},
     "website": "https://alpha.nl"},
    {"@id": "/organizations/00000000-0000-4000-8000-00000000000b", "title": "Beta GmbH",
     "emailAddresses": [{"email": "Sales@Beta.de"}, {"email": "extra@beta.de"}],
     "phoneNumbers": [{"phoneNumber": "+4930123456"}],
     "address": {"street": "Hauptstr. 2", "city": "Berlin", "country": "DE"}},
    {"@id": "/organizations/00000000-0000-4000-8000-00000000000c", "title": "Gamma SA",
     "emailAddresses": [{"email": "c@gamma.fr"}], "website": "https://gamma.fr"},
]
COLUMNS = ["name", "email", "phone", "mobile", "street", "postal_code", "city", "country", "website"]
ROWS = [
    ["Alpha BV", "info@alpha.nl", "+31 20 123 4567", "", "Main 1", "1011 AA", "Amsterdam", "NL", "alpha.nl"],
    ["Beta GmbH", "sales@beta.de", "+49 30 123456", "+49 151 12345678", "Hauptstr. 2", "", "Berlin-Mitte",
     "Germany", ""],
    ["Gamma SAS", "c@gamma.fr; new@gamma.fr", "+33 1 23 45 67 89", "", "", "", "", "", ""],
    ["Delta Ltd", "hello@delta.co.uk", "", "+44 7700 900123", "1 High St", "SW1A 1AA", "London", "GB",
     "https://delta.co.uk"],
    ["Epsilon", "e@epsilon.io", "", "", "", "", "", "", ""],
]
TEMPLATE = {
    "resource": "organizations", "identifiers": ["emailAddresses"], "default_region": "NL",
    "fields": {
        "title": {"column": "name"},
        "emailAddresses": {"column": "email", "split": ";"},
        "phoneNumbers": [{"column": "phone"}, {"column": "mobile", "type": "mobile"}],
        "address.street": {"column": "street"}, "address.postalCode": {"column": "postal_code"},
        "address.city": {"column": "city"}, "address.country": {"column": "country"},
        "website": {"column": "website"},
    },
}
VARIANTS = {
    "merge": {},
    "clear": {"empty": "clear"},
    "policies": {"fields": {**TEMPLATE["fields"], "title": {"column": "name", "policy": "fill_if_empty"},
                            "website": {"column": "website", "policy": "never"},
                            "emailAddresses": {"column": "email", "split": ";", "policy": "replace"},
                            "phoneNumbers": [{"column": "phone", "policy": "replace"},
                                             {"column": "mobile", "type": "mobile"}]}},
}


def _setup(crm, tmp_path, variant):
    crm.seed({"organizations": RECORDS})
    path = tmp_path / "orgs.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([COLUMNS, *ROWS])
    return path, parse_template({**TEMPLATE, **VARIANTS[variant]}, path="t.yaml", sha256="t")


def _canon(v):
    """JSON-LD keys and nulls inside objects left out (crm-api.md §8.2: clients ignore them)."""
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items() if not k.startswith("@") and x is not None}
    if isinstance(v, list):
        return [_canon(x) for x in v]
    return v


def _changes(changes):
    return [(c["field"], c["before"] and json.loads(c["before"]), c["after"] and json.loads(c["after"]))
            for c in changes]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bodies_equal_the_per_row_reference(crm, client, tmp_path, variant):
    path, tpl = _setup(crm, tmp_path, variant)
    p = plan(path, tpl, client)
    mapped = {r["row_number"]: r for r in map_rows(read(path).frame, tpl).iter_rows(named=True)}
    ops = [o for o in p.operations if o.path != "/tags"]
    assert {o.op for o in ops} == {"create", "patch"} and len(ops) >= 4
    for o in ops:
        row = mapped[o.row_numbers[0]]
        if o.op == "create":
            assert o.body == diff.create_body(row, tpl)
            assert _changes(o.changes) == [(k, None, v) for k, v in o.body.items()]
            continue
        record = client.get(o.iri)
        changed = [c["field"] for c in o.changes]
        body, changes, _ = diff.update(row, record, changed, tpl)
        assert o.body == body, o.key
        assert _changes(o.changes) == [(c["field"], c["before"] and _canon(json.loads(c["before"])),
                                        c["after"] and json.loads(c["after"])) for c in changes]
        assert _canon(o.snapshot) == _canon({top: record.get(top) for top in o.snapshot})
        assert sorted(o.snapshot) == sorted({f.split(".")[0] for f in changed})


def test_patch_sends_changed_fields_only_with_the_address_and_lists_complete(crm, client, tmp_path):
    path, tpl = _setup(crm, tmp_path, "merge")
    ops = {o.title: o for o in plan(path, tpl, client).operations}
    beta = ops["Beta GmbH"]
    assert beta.method == "PATCH"
    assert beta.body == {
        "phoneNumbers": [{"phoneNumber": "+4930123456"}, {"phoneNumber": "+4915112345678", "phoneType": "mobile"}],
        "address": {"street": "Hauptstr. 2", "city": "Berlin-Mitte", "country": "DE"}}
    gamma = ops["Gamma SA"]  # a patch names the record by its current title
    assert gamma.body["title"] == "Gamma SAS"
    assert gamma.body["emailAddresses"] == [{"email": "c@gamma.fr"}, {"email": "new@gamma.fr"}]
    assert "website" not in gamma.body  # an empty cell leaves the field alone (empty: ignore)
    assert "Alpha BV" not in ops  # unchanged: no request
    assert ops["Epsilon"].body == {"title": "Epsilon", "emailAddresses": [{"email": "e@epsilon.io"}]}


def test_clear_sends_null_and_the_plan_file_round_trips(crm, client, tmp_path):
    path, tpl = _setup(crm, tmp_path, "clear")
    p = plan(path, tpl, client)
    gamma = next(o for o in p.operations if o.title == "Gamma SA")
    assert gamma.body["website"] is None  # RFC 7396: null removes the field
    assert ("website", "https://gamma.fr", None) in _changes(gamma.changes)
    frame = p.row_frame()
    assert frame["op"].to_list() == [r["op"] for r in p.rows]
    assert p.counts() == {"create": 2, "patch": 2, "replace": 0, "unchanged": 1, "skip": 0,
                          "conflict": 0, "invalid": 0}
    saved = Plan.load(p.save(tmp_path / "plan.json"))
    assert saved.rows == p.rows and saved.operations == p.operations and saved.sha256 == p.sha256
    assert set(saved.timings) >= {"read", "map", "fetch", "validate+match", "diff"}
    # the file: a key a line, each row and each operation on a line of its own (greppable)
    lines = (tmp_path / "plan.json").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith('{"row_number": ') for line in lines) == len(p.rows) == 5
    assert sum(line.startswith('{"key": ') for line in lines) == len(p.operations) == 4
    assert '"mode": "upsert",' in lines


def test_a_plan_saved_from_its_frames_is_the_plan_saved_from_its_objects(crm, client, tmp_path):
    """A fresh plan writes its rows and operations column-wise (polars JSON, bodies spliced in
    as values); the same plan once its Python views exist writes them through `json`: the two
    files hold the same document, a line per row and per operation, and load to equal plans."""
    path, tpl = _setup(crm, tmp_path, "merge")
    p = plan(path, tpl, client)
    fresh = p.save(tmp_path / "fresh.json")
    assert p.counts() == {"create": 2, "patch": 2, "replace": 0, "unchanged": 1, "skip": 0,
                          "conflict": 0, "invalid": 0}
    p.rows, p.operations  # the Python views: from here on the plan holds lists
    viewed = p.save(tmp_path / "viewed.json")
    assert json.loads(fresh.read_text(encoding="utf-8")) == json.loads(viewed.read_text(encoding="utf-8"))
    lines = fresh.read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith('{"row_number":') for line in lines) == 5
    assert sum(line.startswith('{"key":') for line in lines) == 4
    assert Plan.load(fresh).sha256 == Plan.load(viewed).sha256 == p.sha256


def test_only_rows_equal_to_their_record_as_stored_skip_the_full_comparison(tmp_path):
    from bulkcrm.match import records_schema
    tpl = parse_template(TEMPLATE, path="t.yaml", sha256="t")
    path = tmp_path / "orgs.csv"
    alpha = ROWS[0][:8] + ["https://alpha.nl"]  # the sheet spelling of RECORDS[0] exactly
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([COLUMNS, *[alpha] * 6])
    rows = map_rows(read(path).frame, tpl).with_columns(iri=pl.lit(RECORDS[0]["@id"]))
    a = {**RECORDS[0], "phoneNumbers": [{"phoneNumber": "+31201234567"}]}  # no type, as the sheet
    records = [
        a,                                                                    # equal as stored
        {**a, "emailAddresses": [{"email": "Info@Alpha.nl"}]},                # equal once normalised
        {**a, "phoneNumbers": [{"phoneNumber": "+31 20 1234567"}]},          # equal once normalised
        {**a, "emailAddresses": [{"email": "info@alpha.nl"}, {"email": "x@alpha.nl"}]},  # one more item
        {**a, "phoneNumbers": [{"phoneNumber": "+31201234568"}]},            # another number
        {**a, "address": {**a["address"], "city": None}},                     # sheet fills a field
    ]
    raw = diff.raw_records_frame(records, records_schema(tpl))
    equal = diff.same_as_record(rows, raw, tpl)
    assert equal.select(pl.all_horizontal(pl.all())).to_series().to_list() == \
        [True, False, False, False, False, False]
    unequal = [[f for f, ok in row.items() if not ok] for row in equal.iter_rows(named=True)]
    assert unequal == [[], ["emailAddresses"], ["phoneNumbers"], ["emailAddresses"], ["phoneNumbers"],
                       ["address.city"]]
    existing = diff.existing_values(rows, raw, tpl)
    changed = diff.changed_fields(rows, existing, tpl, on="row_number", phones_normalised=True)
    assert changed["changed"].to_list() == [[], [], [], [], ["phoneNumbers"], ["address.city"]]
    # fields equal on every row are taken from the sheet and never changed: the same answer
    alike = frozenset(f for f, ok in equal.select(pl.all().all()).row(0, named=True).items() if ok)
    assert alike == {"title", "address.street", "address.postalCode", "address.country", "website"}
    existing = diff.existing_values(rows, raw, tpl, equal=alike)
    changed = diff.changed_fields(rows, existing, tpl, on="row_number", phones_normalised=True,
                                  equal=alike)
    # the full comparison: equal once normalised (e-mail case, phone spelling), a merge list
    # that already holds the sheet's items: nothing to send; a new number, an empty city: a patch
    assert changed["changed"].to_list() == [[], [], [], [], ["phoneNumbers"], ["address.city"]]


@pytest.mark.parametrize("chosen", [None, "streaming", "object"])
def test_planning_leaves_the_users_polars_engine_as_it_was(crm, client, tmp_path, monkeypatch, chosen):
    import os

    from polars.lazyframe.engine_config import get_engine_affinity_override
    monkeypatch.delenv("POLARS_ENGINE_AFFINITY", raising=False)
    engine = pl.StreamingEngine() if chosen == "object" else chosen
    pl.Config.set_engine_affinity(engine)
    try:
        path, tpl = _setup(crm, tmp_path, "merge")
        assert plan(path, tpl, client).counts()["create"] == 2
        assert os.environ.get("POLARS_ENGINE_AFFINITY") == (chosen if chosen != "object" else None)
        assert get_engine_affinity_override() is (engine if chosen == "object" else None)
    finally:
        pl.Config.set_engine_affinity(None)


@pytest.mark.parametrize("case", ["e-mails upper-cased after the normaliser", "a number no region parses"])
def test_a_list_the_record_holds_exactly_as_the_sheet_has_it_is_left_alone(crm, client, tmp_path, case):
    """Equal as stored means nothing to send, whatever normalising would make of either side:
    comparing normalised values here used to plan a patch that listed the item twice."""
    iri = "/organizations/00000000-0000-4000-8000-00000000000a"
    if case.startswith("e-mails"):
        fields = {"title": {"column": "name"},
                  "emailAddresses": {"column": "email", "transforms": ["email", "upper"]}}
        record = {"@id": iri, "title": "Alpha", "emailAddresses": [{"email": "INFO@ALPHA.NL"}]}
        rows, expected = [["name", "email"], ["Alpha", "info@alpha.nl"]], ("unchanged", None)
    else:
        fields = {"title": {"column": "name"}, "emailAddresses": {"column": "email"},
                  "phoneNumbers": {"column": "phone"}, "address.country": {"column": "country"}}
        record = {"@id": iri, "title": "Alpha", "emailAddresses": [{"email": "info@alpha.nl"}],
                  "phoneNumbers": [{"phoneNumber": "12345"}], "address": {"country": "NL"}}
        rows = [["name", "email", "phone", "country"], ["Alpha", "info@alpha.nl", "12345", "US"]]
        expected = ("patch", {"address": {"country": "US"}})
    crm.seed({"organizations": [record]})
    path = tmp_path / "orgs.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    tpl = parse_template({"resource": "organizations", "identifiers": ["emailAddresses"],
                          "default_region": "US", "fields": fields}, path="t.yaml", sha256="t")
    p = plan(path, tpl, client)
    assert [(r["iri"], r["op"]) for r in p.rows] == [(iri, expected[0])]
    assert [o.body for o in p.operations] == ([expected[1]] if expected[1] else [])


def test_a_put_lists_the_object_keys_it_clears_not_json_ld_keys():
    """The API answers `address` with `@context`, `@id`, `@type` (crm-api.md §8.2): a PUT body
    never carries them, and they are not "cleared"; a street the sheet empties is."""
    t = parse_template({"mode": "replace", "identifiers": ["emailAddresses"],
                        "fields": {"title": "title", "emailAddresses": "email",
                                   "address.street": "street", "address.city": "city"}})
    record = {"@id": "/organizations/1", "title": "A", "emailAddresses": [{"email": "a@x.example"}],
              "address": {"@context": "/contexts/Address", "@id": "/addresses/9", "@type": "Address",
                          "street": "Oude Gracht 1", "city": "Utrecht"}}
    row = {"title": "A", "emailAddresses": ["a@x.example"], "address.street": None, "address.city": "Utrecht"}
    body, changes, cleared = diff.update(row, record, ["address.street"], t)
    assert cleared == ["address.street"]
    assert body["address"]["city"] == "Utrecht" and not body["address"].get("street")
