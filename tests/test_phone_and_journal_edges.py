"""Edges found in review: real numbers that look like placeholders stay numbers (and keep
matching and their place in a replace list), and the journal reads lines that hold U+2028 or end
inside a character. Against the sandbox as a real HTTP server."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from bulkcrm.apply import apply
from bulkcrm.client import Client
from bulkcrm.journal import Journal, journal_path
from bulkcrm.normalize import clean_phone
from bulkcrm.plan import Plan, plan
from bulkcrm.template import parse_template
from tests.conftest import TEST_KEY

A = "/organizations/00000000-0000-4000-8000-00000000000a"


def _client(crm, **kw) -> Client:
    return Client(crm.url, TEST_KEY, requests_per_minute=None, **kw)


def _sheet(tmp_path: Path, rows: list[list[str]], name: str = "s.csv") -> Path:
    path = tmp_path / name
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def _tpl(**doc):
    return parse_template({"resource": "organizations", **doc}, path="t.yaml", sha256="t")


# --- real phone numbers that look like placeholders ------------------------------------------------

# Each is a valid number (phonenumbers.is_valid_number), not a placeholder: a Kraków landline, an
# Italian (Lanzo Torinese) landline, a Bedford landline, a Turkish nationwide 444 number, a US
# toll-free vanity number, a Russian mobile, a Singapore landline, a Dubai landline.
REAL = ["+48 12 345 67 89", "+39 0123 456789", "+44 1234 567890", "+90 444 4 444", "+1 888 888 8888",
        "+7 999 999-99-99", "+65 6666 6666", "+971 4 444 4444"]


@pytest.mark.parametrize("number", REAL)
def test_a_real_number_that_looks_like_a_run_or_a_sequence_is_kept(number):
    """A value `normalize.PLACEHOLDER_PHONE` finds (a run of one digit, or 123456789) is a number
    when phonenumbers takes it as valid: cleaned to E.164 and sent."""
    got = pl.select(clean_phone(pl.lit(number))).item()
    assert got == "+" + "".join(c for c in number if c.isdigit()), f"{number} was cleaned to {got!r}"


@pytest.mark.parametrize("number", ["+48 12 345 67 89", "+90 444 4 444", "+1 888 888 8888"])
def test_a_row_matches_the_record_holding_its_real_phone_number_not_a_duplicate(crm, client, tmp_path, number):
    """With phoneNumbers the identifier, a row whose real number looks like a placeholder still
    matches the record holding it (unchanged), not a create: no duplicate organization."""
    e164 = "+" + "".join(c for c in number if c.isdigit())
    crm.seed({"organizations": [{"@id": A, "title": "Acme", "phoneNumbers": [{"phoneNumber": e164}]}]})
    t = _tpl(identifiers=["phoneNumbers"], fields={"title": "name", "phoneNumbers": "phone"})
    p = plan(_sheet(tmp_path, [["name", "phone"], ["Acme", number]]), t, client, strategy="scan")
    assert [(r["op"], r["iri"]) for r in p.rows] == [("unchanged", A)], \
        f"{[(r['op'], r['iri']) for r in p.rows]}; issues {[i['message'] for i in p.issues]}"


def _acme_phone_as_number(crm, tmp_path: Path, code: str, more: list[str] | None = None) -> Path:
    """Seed record A (Acme, +12234274047); return a workbook whose row 2 is Acme with its
    phone stored as the number 2234274047 under number format `code` (row 3: `more`)."""
    crm.seed({"organizations": [{"@id": A, "title": "Acme", "phoneNumbers": [{"phoneNumber": "+12234274047"}]}]})
    path = tmp_path / "p.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet("S")
        ws.write_row(0, 0, ["name", "phone"])
        ws.write_row(1, 0, ["Acme"])
        ws.write_number(1, 1, 2234274047, wb.add_format({"num_format": code}))
        if more:
            ws.write_row(2, 0, more)
    return path


@pytest.mark.parametrize("code", ["#,##0", "0.00", '"$"#,##0.00', "#,##0.000"])
def test_a_phone_cell_its_format_shows_with_separators_is_read_as_the_number_it_stores(crm, client, tmp_path, code):
    """Trial 2026-12-02: a phone stored as a number under `#,##0` was read as "2,234,274,047",
    which no region parses: a merge added it beside the record's +12234274047 as a second, junk
    number. It is the number 2234274047 (what a General-format cell gives): the row matches its
    record and changes nothing, and the warning names the cell and says what is read."""
    path = _acme_phone_as_number(crm, tmp_path, code)
    t = _tpl(identifiers=["phoneNumbers"], default_region="US",
             fields={"title": "name", "phoneNumbers": {"column": "phone", "policy": "merge"}})
    p = plan(path, t, client, strategy="scan")
    assert [(r["op"], r["iri"]) for r in p.rows] == [("unchanged", A)], p.rows
    warning = next(i for i in p.issues if i["type"] == "numeric-cell" and i["cell"] == "B2")
    assert "it is read as the number 2234274047" in warning["message"], warning["message"]


# --- journal lines ---------------------------------------------------------------------------------

def test_a_drift_detail_holding_a_unicode_line_separator_keeps_the_journal_readable(crm, client, tmp_path):
    """A drifted entry's detail quotes the record's value, written raw (ensure_ascii=False): a
    U+2028 in a value a colleague pasted stays inside its line, as the journal splits lines on
    LF only; the next apply of the plan reads it."""
    crm.seed({"organizations": [{"@id": A, "title": "A", "emailAddresses": [{"email": "a@a.nl"}],
                                 "website": "https://old.example", "createdAt": "2020-01-01T00:00:00+00:00"}]})
    t = _tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email", "website": "web"})
    p = plan(_sheet(tmp_path, [["name", "email", "web"], ["A", "a@a.nl", "https://new.example"]]), t, client)
    path = p.save(tmp_path / "plan.json")
    client.patch(A, {"website": "https://colleague.example/\u2028page"})  # pasted from a PDF
    first = apply(Plan.load(path), _client(crm), plan_path=path, reconcile=False)
    assert first.rows["outcome"].to_list() == ["drifted"]
    from bulkcrm.errors import JournalError
    try:
        again = apply(Plan.load(path), _client(crm), plan_path=path, reconcile=False)
    except JournalError as e:
        pytest.fail(f"the plan's journal is unreadable after a drift: {e}")
    assert again.rows["outcome"].to_list() == ["drifted"]


def test_a_torn_last_line_cut_inside_a_multibyte_character_is_cut_off(crm, client, tmp_path):
    """A crash that tore the last journal line inside a non-ASCII character (a title, a 422
    detail) leaves bytes that are no UTF-8: the line is cut off like any torn line."""
    t = _tpl(identifiers=["emailAddresses"], fields={"title": "name", "emailAddresses": "email"})
    p = plan(_sheet(tmp_path, [["name", "email"], ["Łódź Sp. z o.o.", "l@a.pl"]]), t, client)
    path = p.save(tmp_path / "plan.json")
    jpath = journal_path(path)
    Journal(jpath, p.sha256, p.target, p.created_at)  # the head line
    torn = json.dumps({"key": "row:2", "state": "failed", "status": 422, "detail": "title: Łódź"},
                      ensure_ascii=False).encode("utf-8")
    cut = torn.index("Ł".encode("utf-8")) + 1  # inside the two bytes of Ł
    with open(jpath, "ab") as f:
        f.write(torn[:cut])
    report = apply(Plan.load(path), _client(crm), plan_path=path, reconcile=False)
    assert report.counts()["created"] == 1



@pytest.mark.parametrize("kept", ["+48 12 345 67 89", "000-000-0000"])
def test_a_replace_policy_phone_list_keeps_a_number_the_sheet_lists(crm, client, tmp_path, kept):
    """phoneNumbers with `policy: replace`: the sheet lists the record's two numbers. A real
    number that looks like a placeholder is a number and stays; a placeholder the record holds
    already is not sent, and not removed from the record either: no number the sheet lists is
    deleted from the CRM."""
    e164 = "+" + "".join(c for c in kept if c.isdigit()) if kept.startswith("+") else kept
    crm.seed({"organizations": [{"@id": A, "title": "Acme", "emailAddresses": [{"email": "a@acme.pl"}],
                                 "phoneNumbers": [{"phoneNumber": e164}, {"phoneNumber": "+48221234567"}],
                                 "createdAt": "2020-01-01T00:00:00+00:00"}]})
    t = _tpl(identifiers=["emailAddresses"], default_region="PL",
             fields={"title": "name", "emailAddresses": "email",
                     "phoneNumbers": {"column": "phone", "split": ";", "policy": "replace"}})
    p = plan(_sheet(tmp_path, [["name", "email", "phone"], ["Acme", "a@acme.pl", f"{kept};+48 22 123 45 67"]]),
             t, client)
    report = apply(p, client, journal_file=tmp_path / "j.jsonl", fresh=True, reconcile=False)
    phones = [x["phoneNumber"] for x in client.get(A).get("phoneNumbers", [])]
    assert e164 in phones, f"{kept} deleted from the record: {phones}; outcome {report.rows['outcome'].to_list()}"


def test_a_rendered_phone_in_a_column_split_on_commas_is_one_number(crm, client, tmp_path):
    """Review 2026-12-02: with `split: ","` the rendered `2,234,274,047` was split into 2, 234,
    274 and 047 (four bogus numbers, conflicts between rows sharing "234") while the warning
    said the number 2234274047 was read. The cell is read as the number it stores first."""
    path = _acme_phone_as_number(crm, tmp_path, "#,##0", more=["Beta", "+1 212 555 0199, +1 212 555 0198"])
    t = _tpl(identifiers=["phoneNumbers"], default_region="US",
             fields={"title": "name", "phoneNumbers": {"column": "phone", "split": ",", "policy": "merge"}})
    p = plan(path, t, client, strategy="scan")
    assert [(r["op"], r["iri"]) for r in p.rows][0] == ("unchanged", A), p.rows
    create = next(o for o in p.operations if o.method == "POST")
    assert [n["phoneNumber"] for n in create.body["phoneNumbers"]] == ["+12125550199", "+12125550198"]


@pytest.mark.parametrize("typed", ["493512345678", "49 351 2345678"])
def test_a_german_number_that_may_have_lost_its_plus_is_sent_as_read_with_a_warning(crm, client, tmp_path, typed):
    """Trial 2026-12-02: `493512345678` on a German row was sent as +49493512345678 without a word.
    It may be +49 351 2345678 typed without its `+`, or a national number whose 0 a number cell
    dropped (`04935 12345678`; review: refusing it broke such numbers, and records made from
    the old reading would be created again). It is sent as before, with a warning naming both
    readings, the cell and the fix."""
    t = _tpl(identifiers=["phoneNumbers"], default_region="DE", fields={"title": "name", "phoneNumbers": "phone"})
    p = plan(_sheet(tmp_path, [["name", "phone"], ["Dresden GmbH", typed], ["Berlin GmbH", "030 1234567"]]), t,
             client, strategy="scan")
    bodies = [o.body["phoneNumbers"][0]["phoneNumber"] for o in p.operations]
    assert bodies == ["+49493512345678", "+49301234567"], bodies
    (warning,) = [i for i in p.issues if i["type"] == "ambiguous-phone"]
    assert (warning["row_number"], warning["cell"], warning["severity"]) == (2, "B2", "warning")
    assert "is sent as +49493512345678, a number of DE; if it begins with country code 49, it is +493512345678" \
        in warning["message"], warning["message"]


def test_a_phone_labelled_fax_is_not_taken_for_an_extension(crm, client, tmp_path):
    """Review 2026-12-02: leaving an extension out of a phone identifier took the `x` of
    `Fax 0205550102` for the mark of an extension `x 0205550102`: the record's number became no
    identifier, and its row a duplicate. Only an extension after the number's last digit goes."""
    crm.seed({"organizations": [{"@id": A, "title": "Acme", "address": {"country": "NL"},
                                 "phoneNumbers": [{"phoneNumber": "Fax 0205550102"}]}]})
    t = _tpl(identifiers=["phoneNumbers"], default_region="NL", fields={"title": "name", "phoneNumbers": "phone"})
    p = plan(_sheet(tmp_path, [["name", "phone"], ["Acme", "020 555 0102"]]), t, client, strategy="scan")
    assert [r["op"] for r in p.rows] != ["create"] and p.rows[0]["iri"] == A, p.rows


@pytest.mark.parametrize("typed, key", [("Fax 0205550102", "+31205550102"), ("020 555 0102 x3", "+31205550102"),
                                        ("x12", None), ("ext. 5", None)])
def test_a_phone_identifier_leaves_out_an_extension_but_not_a_label(typed, key):
    """The identifier a phone is matched by: an extension after the number is left out, a
    label's `x` (Fax) is not taken for one, and an extension alone is no identifier."""
    from bulkcrm.normalize import phone_identifier
    assert pl.select(phone_identifier(pl.lit(typed), default_region="NL")).item() == key


# --- a national number possible but not valid in its row's country --------------------------------

@pytest.mark.parametrize(("country", "typed", "sent", "valid", "valid_sent"), [
    ("AU", "555-8787", "+615558787", "(02) 9374 4000", "+61293744000"),
    ("GB", "555 8787", "+445558787", "020 7946 0018", "+442079460018"),
])
def test_a_local_number_without_its_area_code_is_sent_as_read_with_a_warning(
        crm, client, tmp_path, country, typed, sent, valid, valid_sent):
    """`555-8787` on an AU row is a possible number (phonenumbers checks its length) but no
    valid one (no AU range holds it): most likely a local number typed without its area code,
    sent as +615558787, another number, without a word. It is still sent (the metadata may lack
    a new range), with a warning naming the cell, the value, what it became and the fix. A valid
    national number and an E.164 one (even one of no range: the fast path) get none."""
    t = _tpl(identifiers=["phoneNumbers"],
             fields={"title": "name", "address.country": "country", "phoneNumbers": "phone"})
    plus, plus_valid = sent[:-1] + "9", valid_sent[:-1] + "9"  # other numbers: no duplicate rows
    rows = [["name", "country", "phone"], ["Local Pty", country, typed], ["Sydney Pty", country, valid],
            ["Plus Pty", country, plus], ["Spaced Pty", country, f"{plus_valid[:3]} {plus_valid[3:]}"],
            ["Dotted Pty", country, f"{plus[:3]}.{plus[3:-1]}1"]]  # the international fast path
    p = plan(_sheet(tmp_path, rows), t, client, strategy="scan")
    assert [r["op"] for r in p.rows] == ["create"] * 5, p.rows
    bodies = [o.body["phoneNumbers"][0]["phoneNumber"] for o in p.operations if o.method == "POST"]
    assert bodies == [sent, valid_sent, plus, plus_valid, plus[:-1] + "1"], bodies
    (warning,) = [i for i in p.issues if i["type"] == "unlikely-phone"]
    assert [i for i in p.issues if i["row_number"] == 2] == [warning], p.issues  # no other warning of the cell
    assert (warning["row_number"], warning["column"], warning["cell"], warning["value"], warning["severity"]) == (
        2, "phone", "C2", typed, "warning")
    assert f'"{typed}" is sent as {sent}, not a valid {country} number: is the area code missing' \
        in warning["message"], warning["message"]
    assert "phonenumbers' metadata" in warning["rule"] and "ITU-T E.164" in warning["rule"]
