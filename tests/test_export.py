"""Issue 7: `bulkcrm.export` against a real sandbox over HTTP: the template in reverse, so a
re-import of the export plans nothing; inert formula cells; filters; page-by-page streaming."""
from __future__ import annotations

import csv
import dataclasses
import zipfile
from urllib.parse import parse_qsl

import openpyxl
from openpyxl.utils import get_column_letter
import polars as pl
import pytest

from bulkcrm.errors import InputError, TemplateError
from bulkcrm.export import ExportFilters, ExportResult, export, filter_params
from bulkcrm.pipeline import run_import
from bulkcrm.plan import plan
from bulkcrm.read import read
from bulkcrm.workbook import xlsx_text
from bulkcrm.target import Target
from bulkcrm.template import load_template, parse_template
from tests.conftest import DATA, REPO

US = DATA / "opendata500-govlab" / "us_companies.csv"
US_TEMPLATE = REPO / "templates" / "us_companies.yaml"
ORG_TEMPLATE = REPO / "templates" / "organizations.yaml"
HYPERLINK = '=HYPERLINK("http://x.example","y")'
TRICKY = "line 1\r\nline 2 _x0041_ \ttab\x01 end "  # CR, a literal OOXML escape, a control char

RICH = {
    "resource": "organizations", "identifiers": ["emailAddresses"],
    "fields": {
        "title": "name",
        "emailAddresses": {"column": "emails"},
        "phoneNumbers": [{"column": "phone", "split": ";"}, {"column": "fax", "type": "fax"},
                         {"column": "other", "type_column": "other_type"}],
        "tags": {"column": "tags", "lookup": True},
        "segments": {"column": "lists", "split": "|",
                     "lookup": {"table": {"Key accounts": "/segments/s1"}}},
        "owner": {"column": "owner", "lookup": True},
        "address.country": {"column": "country", "render": {"country": "alpha_3"}},
        "description": "notes",
        "externalSource": {"value": "crm"},
    },
}
SEED = {
    "users": [{"@id": "/users/u1", "email": "ann@example.com"}],
    "tags": [{"@id": "/tags/t1", "title": "VIP"}, {"@id": "/tags/t2", "title": "Lead"},
             {"@id": "/tags/t3", "title": "dup"}, {"@id": "/tags/t4", "title": "Dup"},
             {"@id": "/tags/t5", "title": "a;b"}],
    "segments": [{"@id": "/segments/s1", "title": "Key", "icon": "star"},
                 {"@id": "/segments/s2", "title": "Prospects", "icon": "star"}],
    "organizations": [
        {"@id": "/organizations/o1", "title": HYPERLINK,
         "emailAddresses": [{"email": "a@x.example"}, {"email": "b@x.example"}],
         "phoneNumbers": [{"phoneNumber": "+31201234567"},
                          {"phoneNumber": "+31201234568", "phoneType": "fax"},
                          {"phoneNumber": "+31612345678", "phoneType": "mobile"},
                          {"phoneNumber": "+31201234569"}],
         "tags": ["/tags/t1", "/tags/t3", "/tags/t5"], "segments": ["/segments/s1", "/segments/s2"],
         "owner": "/users/u1", "address": {"country": "NL"}, "description": TRICKY, "externalSource": "crm",
         "createdAt": "2024-03-01T10:00:00+00:00"},
        {"@id": "/organizations/o2", "title": "'t Hoekje", "emailAddresses": [{"email": "c@x.example"}],
         "owner": "/users/u9", "tags": ["/tags/t2"], "description": "-1", "externalSource": "crm",
         "archivedAt": "2024-01-01T00:00:00+00:00", "createdAt": "2023-06-01T10:00:00+00:00"},
    ],
}


def _import(path, template, client, tmp_path):
    target = Target(client=client, label="test")
    result = run_import(str(path), str(template), target, report_dir=str(tmp_path / "import"),
                        reconcile=False, progress=False, echo=lambda _: None)
    assert result["ok"], result["json"]
    return result["json"]


def _replan(path, template, client) -> dict:
    p = plan(path, template, client)
    assert p.operations == [], [r for r in p.rows if r["op"] != "unchanged"][:3]
    return p.counts()


def _rich(tmp_path):
    path = tmp_path / "rich.yaml"
    import yaml
    path.write_text(yaml.safe_dump(RICH, sort_keys=False), encoding="utf-8")
    return load_template(path)


def test_us_companies_round_trip_csv_and_xlsx(crm, client, tmp_path):
    counts = _import(US, US_TEMPLATE, client, tmp_path)
    assert counts["created"] == 529
    template = load_template(US_TEMPLATE)
    for ext in ("csv", "xlsx"):
        result = export(client, template, tmp_path / f"us.{ext}")
        assert result == ExportResult(tmp_path / f"us.{ext}", 529, 18, 18)  # ⌈529/30⌉ pages
        assert _replan(result.path, template, client)["unchanged"] == 529
        rows = {r["company_name_id"]: r for r in read(result.path).frame.iter_rows(named=True)}
        assert list(read(result.path).frame.columns[1:3]) == ["crm_iri", "company_name"]
        assert rows["abt-associates"]["url"] == "https://abtassoc.com"           # scheme added
        assert rows["3-round-stones-inc"]["url"] == "http://3roundstones.com"    # host lower-cased
        assert rows["48-factoring-inc"]["city"] == "Philadelphia"                 # " Philadelphia"
        assert rows["abt-associates"]["zip_code"] == "02138"                      # leading zero kept
        assert rows["abt-associates"]["country"] == "US"
        assert rows["abt-associates"]["crm_iri"].startswith("/organizations/")
        assert "state" not in rows["abt-associates"]


def test_formula_title_is_inert_text_in_csv_and_xlsx(crm, client, tmp_path):
    crm.seed(SEED)
    template = _rich(tmp_path)
    csv_path = export(client, template, tmp_path / "out.csv").path
    with csv_path.open(encoding="utf-8", newline="") as f:
        lines = {r["crm_iri"]: r for r in csv.DictReader(f)}
    assert lines["/organizations/o1"]["name"] == "'" + HYPERLINK
    assert lines["/organizations/o1"]["phone"] == "'+31201234567;+31201234569"
    assert lines["/organizations/o2"]["name"] == "''t Hoekje"   # a leading ' is escaped too
    assert lines["/organizations/o2"]["notes"] == "'-1"
    assert lines["/organizations/o1"]["notes"] == TRICKY         # CR kept inside quotes
    assert csv_path.read_bytes()[:3] != b"\xef\xbb\xbf"          # no BOM

    xlsx_path = export(client, template, tmp_path / "out.xlsx").path
    sheet_xml = zipfile.ZipFile(xlsx_path).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml
    ws = openpyxl.load_workbook(xlsx_path)["organizations"]
    header = [c.value for c in ws[1]]
    cell = ws.cell(row=2, column=header.index("name") + 1)
    assert (cell.value, cell.data_type, cell.quotePrefix) == (HYPERLINK, "s", True)
    phone = ws.cell(row=2, column=header.index("phone") + 1)
    assert (phone.value, phone.data_type) == ("+31201234567;+31201234569", "s")
    assert all(c.data_type == "s" for row in ws.iter_rows(min_row=2) for c in row if c.value)
    # Text format: what a user types over a cell in Excel stays text (01001, +31..., =...)
    assert {c.number_format for row in ws.iter_rows(min_row=2) for c in row} == {"@"}
    assert ws.column_dimensions["A"].width == 48  # crm_iri: an IRI fits
    # the columns too: a row a user adds below the export keeps what is typed (trial 2026-12-02)
    assert {ws.column_dimensions[get_column_letter(c)].number_format for c in range(1, ws.max_column + 1)} == {"@"}

    for path in (csv_path, xlsx_path):
        frame = read(path).frame
        by_iri = {r["crm_iri"]: r for r in frame.iter_rows(named=True)}
        assert by_iri["/organizations/o1"]["name"] == HYPERLINK
        assert by_iri["/organizations/o1"]["notes"] == TRICKY
        assert by_iri["/organizations/o2"]["name"] == "'t Hoekje"
        assert _replan(path, template, client)["unchanged"] == 2


NULLS = {
    "resource": "organizations", "mode": "replace", "identifiers": ["emailAddresses"],
    "null_tokens": ["NULL", "n/a"],
    "fields": {"title": "name", "emailAddresses": "email", "address.city": "city",
               "description": "notes", "tags": {"column": "tags", "lookup": True}},
}
NULL_SEED = {
    "tags": [{"@id": "/tags/t1", "title": "n/a"}],
    "organizations": [
        {"@id": "/organizations/o1", "title": "NULL", "emailAddresses": [{"email": "a@x.example"}],
         "address": {"city": "n/a"}, "description": "'NULL", "tags": ["/tags/t1"]},
        {"@id": "/organizations/o2", "title": "n/a;NULL", "emailAddresses": [{"email": "b@x.example"}],
         "address": {"city": "Utrecht"}, "description": "-"}],
}


def test_a_value_that_is_a_null_token_is_escaped_and_re_imports_unchanged(crm, client, tmp_path):
    """A title `NULL` and a city `n/a` under null_tokens ["NULL", "n/a"] are written `'NULL`,
    `'n/a` (a value `'NULL` one `'` more), so the re-import reads them as themselves, not as
    empty: under `mode: replace` it would clear them (data loss)."""
    crm.seed(NULL_SEED)
    template = parse_template(NULLS, path=str(tmp_path / "nulls.yaml"))
    for ext in ("csv", "xlsx"):
        path = export(client, template, tmp_path / f"out.{ext}").path
        if ext == "csv":
            with path.open(encoding="utf-8", newline="") as f:
                lines = {r["crm_iri"]: r for r in csv.DictReader(f)}
            formula = "''NULL"  # the formula escape of `'NULL`, then this one
        else:
            ws = openpyxl.load_workbook(path)["organizations"]
            rows = ws.iter_rows(values_only=True)
            header = next(rows)
            lines = {r[0]: dict(zip(header, r)) for r in rows}
            formula = "'NULL"
        o1, o2 = lines["/organizations/o1"], lines["/organizations/o2"]
        assert (o1["name"], o1["city"], o1["tags"]) == ("'NULL", "'n/a", "'n/a")
        assert o1["notes"] == "'" + formula
        assert (o2["name"], o2["notes"]) == ("n/a;NULL", "'-" if ext == "csv" else "-")  # no token
        assert _replan(path, template, client)["unchanged"] == 2


def test_a_null_token_in_a_users_sheet_still_reads_as_empty(crm, client, tmp_path):
    """`NULL` typed in a cell is no value (a PUT clears the city); `'NULL` is the text."""
    crm.seed(NULL_SEED)
    template = parse_template(NULLS, path=str(tmp_path / "nulls.yaml"))
    sheet = tmp_path / "weekly.csv"
    sheet.write_text("name,email,city,notes,tags\nAcme,a@x.example, NULL ,'n/a,NULL\n", encoding="utf-8")
    (op,) = plan(sheet, template, client).operations
    assert op.method == "PUT" and op.body["title"] == "Acme" and op.body["description"] == "n/a"
    assert "address.city" in op.cleared and not op.body.get("tags")


def test_fields_render_through_lookups_lists_and_phone_sources(crm, client, tmp_path):
    crm.seed(SEED)
    template = _rich(tmp_path)
    frame = read(export(client, template, tmp_path / "out.csv").path).frame
    assert frame.columns == ["row_number", "crm_iri", "name", "emails", "phone", "fax", "other",
                             "other_type", "tags", "lists", "owner", "country", "notes"]
    o1, o2 = frame.sort("crm_iri").drop("row_number").iter_rows(named=True)
    assert o1 == {
        "crm_iri": "/organizations/o1", "name": HYPERLINK, "emails": "a@x.example;b@x.example",
        "phone": "+31201234567;+31201234569", "fax": "+31201234568", "other": "+31612345678",
        "other_type": "mobile",
        "tags": "VIP;/tags/t3;/tags/t5",       # "dup" is ambiguous, "a;b" holds the separator
        "lists": "key accounts|Prospects",      # the static table first, then the listing
        "owner": "ann@example.com", "country": "NLD", "notes": TRICKY}
    assert (o2["owner"], o2["tags"], o2["phone"], o2["country"]) == ("/users/u9", "Lead", None, None)


def test_phone_numbers_no_column_takes_are_counted(crm, client, tmp_path):
    """Typed columns only (fax, mobile): o1's two untyped numbers have nowhere to go."""
    crm.seed(SEED)
    doc = {"resource": "organizations", "identifiers": ["emailAddresses"],
           "fields": {"title": "name", "emailAddresses": "emails",
                      "phoneNumbers": [{"column": "fax", "type": "fax"}, {"column": "gsm", "type": "mobile"}]}}
    result = export(client, parse_template(doc, path="typed.yaml"), tmp_path / "out.csv")
    assert (result.records, result.phones_left_out) == (2, 2)
    frame = read(result.path).frame.sort("crm_iri")
    assert frame.select("fax", "gsm").row(0) == ("+31201234568", "+31612345678")


def test_untyped_phone_columns_take_one_number_each_the_last_the_rest(crm, client, tmp_path):
    """Phone 1, Phone 2, Phone 3 (untyped): one number each, as e-mail columns, the last the
    rest; the export re-imports with no change."""
    crm.seed({"organizations": [
        {"@id": "/organizations/o1", "title": "A", "emailAddresses": [{"email": "a@x.example"}],
         "phoneNumbers": [{"phoneNumber": n} for n in ("+31201234567", "+31201234568", "+31201234569",
                                                        "+31201234570")]},
        {"@id": "/organizations/o2", "title": "B", "emailAddresses": [{"email": "b@x.example"}],
         "phoneNumbers": [{"phoneNumber": "+31201234571"}]}]})
    doc = {"resource": "organizations", "identifiers": ["emailAddresses"],
           "fields": {"title": "name", "emailAddresses": "email",
                      "phoneNumbers": [{"column": "Phone 1"}, {"column": "Phone 2"}, {"column": "Phone 3"}]}}
    template = parse_template(doc, path=str(tmp_path / "p.yaml"))
    result = export(client, template, tmp_path / "out.csv")
    assert result.phones_left_out == 0
    frame = read(result.path).frame.sort("crm_iri")
    assert frame.select("Phone 1", "Phone 2", "Phone 3").rows() == [
        ("+31201234567", "+31201234568", "+31201234569;+31201234570"), ("+31201234571", None, None)]
    assert _replan(result.path, template, client)["unchanged"] == 2


def test_phone_columns_of_one_type_take_one_number_each_the_last_the_rest(crm, client, tmp_path):
    """Trial 2026-12-03 (211.csv: Phone1..Phone5 all `type: work`): the first column of a type
    took every number of it and the others stayed empty; like untyped columns, each takes one
    and the last the rest. A number of a type typed by a later column is that column's."""
    crm.seed({"organizations": [
        {"@id": "/organizations/o1", "title": "A", "emailAddresses": [{"email": "a@x.example"}],
         "phoneNumbers": [{"phoneNumber": "+31201234567", "phoneType": "work"},
                          {"phoneNumber": "+31201234568", "phoneType": "fax"},
                          *({"phoneNumber": n, "phoneType": "work"} for n in ("+31201234569", "+31201234570",
                                                                              "+31201234571"))]}]})
    doc = {"resource": "organizations", "identifiers": ["emailAddresses"],
           "fields": {"title": "name", "emailAddresses": "email",
                      "phoneNumbers": [{"column": "Phone 1", "type": "work"}, {"column": "Phone 2", "type": "work"},
                                       {"column": "Fax", "type": "fax"}, {"column": "Phone 3", "type": "work"}]}}
    template = parse_template(doc, path=str(tmp_path / "p.yaml"))
    result = export(client, template, tmp_path / "out.csv")
    assert result.phones_left_out == 0
    assert read(result.path).frame.select("Phone 1", "Phone 2", "Fax", "Phone 3").rows() == [
        ("+31201234567", "+31201234569", "+31201234568", "+31201234570;+31201234571")]
    assert _replan(result.path, template, client)["unchanged"] == 1


def test_filters_become_api_parameters(crm, client, tmp_path):
    crm.seed(SEED)
    template = _rich(tmp_path)
    f = ExportFilters(q="hoek", owner="ann@example.com", tags=("VIP", "/tags/t2", "42"),
                      segments=("Prospects",), archived=False, created_after="2024-01-01",
                      created_before="2024-03-01")
    assert filter_params(client, f, template) == {
        "q": "hoek", "owner.id": "/users/u1", "tags.id[]": ["/tags/t1", "/tags/t2", "42"],
        "segments.uuid[]": ["/segments/s2"], "exists[archivedAt]": "false",
        "createdAt[after]": "2024-01-01", "createdAt[strictly_before]": "2024-03-02"}
    assert filter_params(client, ExportFilters(created_before="2024-03-01T10:00:00+00:00")) == {
        "createdAt[before]": "2024-03-01T10:00:00+00:00"}
    cases = [({"archived": True}, ["/organizations/o2"]), ({"archived": False}, ["/organizations/o1"]),
             ({"tags": ("Lead", "VIP")}, ["/organizations/o1", "/organizations/o2"]),
             ({"owner": "ann@example.com"}, ["/organizations/o1"]), ({"q": "hoek"}, ["/organizations/o2"]),
             ({"segments": ("Key accounts",)}, ["/organizations/o1"]),
             ({"created_before": "2024-02-29"}, ["/organizations/o2"]),
             ({"created_after": "2024-03-01"}, ["/organizations/o1"])]
    for filters, iris in cases:
        crm.clear_log()
        path = export(client, template, tmp_path / "f.csv", filters=filters).path
        assert sorted(read(path).frame["crm_iri"].to_list()) == iris, filters
        pages = [r for r in crm.requests if r.path == "/organizations"]
        assert len(pages) == 1 and ("itemsPerPage", "30") in parse_qsl(pages[0].query)


def test_bad_filters_and_outputs_raise_before_writing(crm, client, tmp_path):
    crm.seed(SEED)
    template = _rich(tmp_path)
    out = tmp_path / "out.csv"
    with pytest.raises(InputError, match=r"--tag 'nope' matches no tags title; use its IRI /tags/\{id\}"):
        export(client, template, out, filters={"tags": ("nope",)})
    with pytest.raises(InputError, match=r"--tag 'dup' names 2 tags: /tags/t3, /tags/t4"):
        export(client, template, out, filters={"tags": ("dup",)})
    with pytest.raises(InputError, match="--owner 'zed@example.com' matches no users email"):
        export(client, template, out, filters={"owner": "zed@example.com"})
    with pytest.raises(InputError, match="--created-after '31-01-2024' is not an ISO 8601 date"):
        export(client, template, out, filters={"created_after": "31-01-2024"})
    with pytest.raises(InputError, match="name the file .csv or .xlsx"):
        export(client, template, tmp_path / "out.json")
    notes = dataclasses.replace(template, resource="organization_notes")
    with pytest.raises(TemplateError, match="export reads organizations"):
        export(client, notes, out)
    assert list(tmp_path.glob("out*")) == []


def test_pages_are_written_one_at_a_time(crm, client, tmp_path):
    crm.seed({"organizations": [{"title": f"Org {i:03d}", "customerId": f"C{i:03d}"} for i in range(95)]})
    template = parse_template({"fields": {"title": "name", "customerId": "id"}})
    part = tmp_path / "big.csv.part"
    seen = []

    def progress(done, total, c):
        lines = part.read_bytes().count(b"\n") if part.exists() else None
        seen.append((done, total, c.requests_sent, lines))

    start = client.requests_sent
    result = export(client, template, tmp_path / "big.csv", progress=progress)
    assert (result.records, result.pages, result.requests) == (95, 4, 4)
    # the file holds the header plus each page as soon as that page is rendered
    assert seen == [(1, 4, start + 1, 31), (2, 4, start + 2, 61), (3, 4, start + 3, 91),
                    (4, 4, start + 4, 96)]
    assert not part.exists()
    frame = read(result.path).frame
    assert frame.height == 95 and frame["id"].n_unique() == 95


def test_empty_fields_export_as_empty_cells(crm, client, tmp_path):
    crm.seed({"organizations": [{"@id": "/organizations/e1", "title": "Empty", "externalSource": "northwind"}]})
    result = export(client, load_template(ORG_TEMPLATE), tmp_path / "e.csv")
    assert result.path.read_text(encoding="utf-8").splitlines() == [
        "crm_iri,companyName,customerID,address,city,postalCode,country,phone,fax",
        "/organizations/e1,Empty,,,,,,,"]
    assert _replan(result.path, load_template(ORG_TEMPLATE), client)["unchanged"] == 1


def test_xlsx_text_escapes_what_xml_would_lose():
    assert xlsx_text("a\r\nb") == "a_x000D_\nb"
    assert xlsx_text("keep _x0041_ literal") == "keep _x005F_x0041_ literal"
    assert xlsx_text("ctl\x01") == "ctl_x0001_"
    assert xlsx_text("tab\tand _xyz_") == "tab\tand _xyz_"
    assert pl.Series([xlsx_text(HYPERLINK)]).to_list() == [HYPERLINK]


def test_null_token_escape_composes_with_the_formula_escape(tmp_path):
    """Whatever the value and the tokens (one that is a formula trigger, an Excel error, regex
    characters), the sheet a sink writes reads back through the null step as the value; a
    user's cells keep their meaning: a token is no value, a token behind `'` the token's text."""
    from bulkcrm.export import _CsvSink, _XlsxSink
    from bulkcrm.mapping import null_token_pattern, without_null_tokens
    t = parse_template({"null_tokens": ["NULL", " n/a ", "-", "#N/A", "(none)"], "fields": {"title": "v"}},
                       path="t.yaml")
    values = ["NULL", " n/a ", "-", "#N/A", "(none)", "'NULL", "''NULL", "'-", " NULL", "  'NULL",
              "'t Hoekje", "=1+2", "NULLx", "n/a;NULL", "(none)x"]
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    for sink in (_CsvSink, _XlsxSink):
        path = tmp_path / f"v.{'csv' if sink is _CsvSink else 'xlsx'}"
        out = sink(path, ["v"], tokens=null_token_pattern(t.null_tokens))
        out.write(frame)
        out.close()
        assert without_null_tokens(read(path).frame, t)["v"].to_list() == values, path
    user = pl.DataFrame({"row_number": range(2, 9),
                         "v": ["NULL", " n/a", "'NULL", "'(none)", "''NULL", "'x", "-"]})
    assert without_null_tokens(user, t)["v"].to_list() == [None, None, "NULL", "(none)", "'NULL", "'x", None]


def test_an_xlsx_export_stopped_mid_way_leaves_nothing_and_prints_nothing(crm, client, tmp_path, monkeypatch):
    """Trial 2026-12-02: Ctrl-C during an XLSX export printed "Exception ignored in: <generator
    WriteOnlyWorksheet._write_rows> … ValueError: I/O operation on closed file" when Python later
    collected the unfinished sheet. The stopped export finishes its streams at once: no file,
    no part file, no error left for the collector."""
    import gc
    import sys
    crm.seed({"organizations": [{"title": f"Org {i}", "emailAddresses": [{"email": f"o{i}@x.example"}]}
                                for i in range(70)]})
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(repr(u.exc_value)))

    def progress(done, total, c):  # Ctrl-C after the first page is written
        raise KeyboardInterrupt
    out = tmp_path / "stopped.xlsx"
    with pytest.raises(KeyboardInterrupt):
        export(client, load_template(REPO / "templates" / "organizations.yaml"), out, progress=progress)
    gc.collect()
    assert unraisable == [] and not out.exists() and not list(tmp_path.glob("stopped.xlsx*"))


def test_an_owner_stored_with_capitals_is_found_by_export_and_re_import(crm, client, tmp_path):
    """Review 2026-12-02: a user stored as `Alice.Owner@Example.com` (the sandbox's `email[]`
    filter compares exactly) was asked for lower-cased only: the untouched export's row was
    invalid and `--owner` found no one. A miss now lists the users and compares lower-cased."""
    seed = {**SEED, "users": [*SEED["users"], {"@id": "/users/u7", "email": "Alice.Owner@Example.com"}]}
    seed["organizations"] = [{**seed["organizations"][0], "owner": "/users/u7"}]
    crm.seed(seed)
    template = _rich(tmp_path)
    for spelling in ("Alice.Owner@Example.com", "alice.owner@example.com"):
        result = export(client, template, tmp_path / "out.csv", filters={"owner": spelling})
        assert result.records == 1
    assert read(result.path).frame["owner"].to_list() == ["Alice.Owner@Example.com"]
    assert _replan(result.path, template, client)["unchanged"] == 1


SWITCHBOARD = "+31201234567"


def test_a_phone_two_records_share_re_imports_unchanged(crm, client, tmp_path):
    """Review 2026-12-03: two organizations list one switchboard number; matching on phones
    with the export's crm_iri, each row's number also named the other record, so both rows
    were `iri-mismatch` conflicts. A value the IRI's own record holds cannot contradict it;
    a number only another record holds still does."""
    crm.seed({"organizations": [
        {"@id": "/organizations/a", "title": "A", "customerId": "A1", "address": {"country": "NL"},
         "phoneNumbers": [{"phoneNumber": SWITCHBOARD}], "externalSource": "northwind"},
        {"@id": "/organizations/b", "title": "B", "customerId": "B1", "address": {"country": "NL"},
         "phoneNumbers": [{"phoneNumber": SWITCHBOARD}, {"phoneNumber": "+31207654321"}],
         "externalSource": "northwind"}]}, tenant="tenant-a")
    template = load_template(ORG_TEMPLATE)
    assert template.identifiers == ("customerId", "phoneNumbers") and template.iri_column == "crm_iri"
    for ext in ("csv", "xlsx"):
        path = export(client, template, tmp_path / f"out.{ext}").path
        assert _replan(path, template, client)["unchanged"] == 2
    # B's own number typed into A's row names B alone: A's row is still the conflict, B's is not
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    a = next(r for r in rows if r["crm_iri"] == "/organizations/a")
    a["phone"] = f"'{SWITCHBOARD};+31207654321"
    with (tmp_path / "moved.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    p = plan(tmp_path / "moved.csv", template, client)
    assert sorted((r["iri"], r["op"]) for r in p.rows) == [("/organizations/a", "conflict"),
                                                           ("/organizations/b", "unchanged")]
    assert [(i["type"], i["value"]) for i in p.issues] == [("iri-mismatch", "+31207654321")]


def test_a_shared_phone_claims_no_other_record_for_a_row_with_its_iri(crm, client, tmp_path):
    """Review 2026-12-03: A and B share a switchboard number P, C has its own. A row naming A
    by IRI with P claimed B too, so a new row with P held A's row back ("rows 2, 3 all match
    /organizations/b"), and a row naming C with P (C does not hold it: an iri-mismatch) held
    back the row naming A. P is A's for the row naming A; the other rows are the conflicts."""
    other = "+31207654321"
    crm.seed({"organizations": [
        {"@id": f"/organizations/{k}", "title": k.upper(), "phoneNumbers": [{"phoneNumber": n} for n in phones]}
        for k, phones in (("a", [SWITCHBOARD]), ("b", [SWITCHBOARD]), ("c", [other]))]}, tenant="tenant-a")
    template = parse_template({"resource": "organizations", "iri_column": "crm_iri", "identifiers": ["phoneNumbers"],
                               "default_region": "NL", "fields": {"title": "name", "phoneNumbers": "phone"}},
                              path=str(tmp_path / "t.yaml"))

    def decided(*lines: str) -> list[tuple]:
        sheet = tmp_path / "s.csv"
        sheet.write_text("crm_iri,name,phone\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")
        p = plan(sheet, template, client)
        return [(r["row_number"], r["op"], r["note"]) for r in p.rows]

    (a, new) = decided(f"/organizations/a,A2,{SWITCHBOARD}", f",New,{SWITCHBOARD}")
    assert a == (2, "patch", None) and new[:2] == (3, "conflict") and "/organizations/b" not in (a[2] or "")
    (c, a) = decided(f"/organizations/c,C2,{SWITCHBOARD}", f"/organizations/a,A2,{SWITCHBOARD}")
    assert c[:2] == (2, "conflict") and a == (3, "patch", None)


WEBSITES = ["https://example.com:8443/path", "ftp://files.example.com", "HTTP://Example.COM:8080/A",
            "www.example.org", "info@firm.example", "not a url"]


def test_websites_the_api_takes_re_import_unchanged(crm, client, tmp_path):
    """Review 2026-12-03: the API takes any text as a website (crm-api.md §8.1: a string, its
    URL validation undocumented; the sandbox checks none, §5), but a port or another scheme
    than http(s) made the exported row invalid. Every website the API took re-imports with no
    change and no error; what is no http(s) URL with a host gets a warning only, left out of the
    plan while the record holds it."""
    for i, website in enumerate(WEBSITES):
        client.post("/organizations", {"title": f"Org {i}", "customerId": f"C{i}", "website": website})
    template = parse_template({"resource": "organizations", "iri_column": "crm_iri", "identifiers": ["customerId"],
                               "fields": {"title": "name", "customerId": "id", "website": "web"}},
                              path=str(tmp_path / "web.yaml"))
    for ext in ("csv", "xlsx"):
        path = export(client, template, tmp_path / f"web.{ext}").path
        assert _replan(path, template, client)["unchanged"] == len(WEBSITES)
        p = plan(path, template, client)  # warned of, but the records hold them: left out
        assert p.issues == [] and "3 invalid-url warning(s) left out" in " ".join(p.notes)
    edited = tmp_path / "edited.csv"  # a row that sends its website again keeps its warning
    edited.write_text((tmp_path / "web.csv").read_text(encoding="utf-8").replace("not a url", "still no url"),
                      encoding="utf-8")
    p = plan(edited, template, client)
    assert [(i["severity"], i["value"]) for i in p.issues] == [("warning", "still no url")]
    assert "2 invalid-url warning(s) left out" in " ".join(p.notes)
