"""Transforms (clean/render), identifier normalisers and validator checks: exact values, fast,
no server. Real inputs: Northwind customers, cases BR-05/BR-07/BR-10."""
from __future__ import annotations

import json
from functools import partial

import phonenumbers
import polars as pl
import pycountry
import pytest

from bulkcrm.errors import TemplateError
from bulkcrm.mapping import PHONE_DTYPE, map_rows
from bulkcrm.template import parse_template
from bulkcrm.transforms import (CHECK_ISSUE_TYPES, CHECK_RULES, CHECKS, TRANSFORMS,
                                apply_transforms, check_list, check_rule, normalize_identifier,
                                split_clean)
from bulkcrm.vocab import ISSUE_TYPES
from tests.conftest import CASES, DATA

T = TRANSFORMS


def run(values, expr_fn, **columns):
    """Evaluate `expr_fn(pl.col("v"))` over `values` (+ extra String columns); return a list."""
    df = pl.DataFrame({"v": values, **columns}, schema={"v": pl.String, **{k: pl.String for k in columns}})
    return df.select(expr_fn(pl.col("v")).alias("out"))["out"].to_list()


# ------------------------------------------------------------------------------- phones

NORTHWIND = [  # (phone, country as in the sheet, E.164 or unchanged)
    ("030-0074321", "Germany", "+49300074321"),
    ("(5) 555-4729", "Mexico", "(5) 555-4729"),  # Mexico City before 2019's 10 digits: local only today
    ("(171) 555-7788", "UK", "+441715557788"),
    ("(1) 42.34.22.66", "France", "+33142342266"),
    ("0921-12 34 65", "Sweden", "+46921123465"),
    ("(503) 555-6874", "USA", "+15035556874"),
    ("88.60.15.31", "France", "88.60.15.31"),  # old 8-digit French number: not possible today
    ("(071) 23 67 22 20", "Belgium", "(071) 23 67 22 20"),
]


def test_squish_finds_what_its_regex_finds():
    """`squish` looks for its work with literals (`_SQUISH_FIND`): they must flag exactly the
    values the regex `_SQUISH` changes, over every character `\\s` knows, alone and in pairs."""
    from bulkcrm.transforms import _SQUISH, _SQUISH_FIND

    chars = [chr(c) for c in range(0x3100)]
    ws = pl.Series(chars).str.contains(r"^\s$")
    assert sorted(pl.Series(chars).filter(ws).to_list()) == sorted(set("".join(_SQUISH_FIND)))
    spaces = [c for c, w in zip(chars, ws) if w]
    values = pl.Series([f"a{x}b" for x in spaces] + [f"a{x}{y}b" for x in spaces for y in spaces] + ["a b", "ab"])
    assert values.str.contains_any(_SQUISH_FIND).to_list() == values.str.contains(_SQUISH).to_list()
    assert run(["a\u00a0b", "a \u2003 b", "a b"], TRANSFORMS["squish"].clean) == ["a b", "a b", "a b"]


def test_phone_northwind_with_row_country():
    phones, countries, expected = zip(*NORTHWIND)
    out = run(list(phones), lambda e: T["phone"].clean(e, region=pl.col("c")), c=list(countries))
    assert out == list(expected)
    ok = run(out, CHECKS["phone_e164"])
    assert ok == [True, False] + [True] * 4 + [False, False]


@pytest.mark.parametrize("value, region", [("-1862", "GB"), ("-1862", "DE"), ("-2237", "US"),
                                           ("555-8787", "US"), ("1862", "GB")])
def test_a_negative_or_local_only_number_is_kept_as_typed(value, region):
    """`-1862` in a GB or DE row became +441862 / +491862, a number nobody typed, and slipped
    past the negative-number rule (a trial); a number without its area code (`555-8787`,
    phonenumbers: possible as a local number only) has no E.164 form either: both are kept as
    typed for validate to flag."""
    assert run([value], lambda e: T["phone"].clean(e, region=pl.col("c")), c=[region]) == [value]


def test_phone_northwind_file():
    df = pl.read_csv(DATA / "northwind-graphql-compose-examples/customers.csv", infer_schema=False)
    out = df.select("customerID", T["phone"].clean(pl.col("phone"), region=pl.col("country")))
    got = dict(out.filter(pl.col("customerID").is_in(["ALFKI", "AROUT", "PARIS", "WOLZA"])).iter_rows())
    assert got == {"ALFKI": "+49300074321", "AROUT": "+441715557788", "PARIS": "+33142342266",
                   "WOLZA": "+48266427012"}


def test_phone_br07_and_br05():
    assert run(["050 - 555 09 09"], partial(T["phone"].clean, default_region="NL")) == ["+31505550909"]
    values = ["31612345678", "+31 10 555 0707", "0655500808", " ", None]
    out = run(values, partial(T["phone"].clean, default_region="NL"))
    # BR-05: digits without + are not given a country silently; the check flags them
    assert out == ["31612345678", "+31105550707", "+31655500808", None, None]
    assert run(out, CHECKS["phone_e164"]) == [False, True, True, True, True]


def test_phone_region_falls_back_to_default_and_extension_dropped():
    out = run(["020 555 1234", "020 555 1234", "+31 (0)20 555 1234", "+31 20 555 1234 x123"],
              lambda e: T["phone"].clean(e, region=pl.col("c"), default_region="NL"),
              c=[None, "Untied States", "DE", "DE"])
    assert out == ["+31205551234"] * 4


def test_phone_with_a_letter_among_its_digits_or_a_doubtful_extension_is_kept_as_typed():
    """`020-623l298` (an l for a 1) would lose a digit, `010-41CALL9` would be read as a vanity
    number, and `020-62312x9` as 020-62312 ext. 9: each stays as typed, for the check to flag."""
    values = ["020-623l298", "010-41CALL9", "020-62312x9", "Tel: 020 623 1298", "020 623 1298 ext. 12"]
    out = run(values, partial(T["phone"].clean, default_region="NL"))
    assert out == ["020-623l298", "010-41CALL9", "020-62312x9", "+31206231298", "+31206231298"]
    assert run(out, CHECKS["phone_e164"]) == [False, False, False, True, True]


def test_phone_fast_path_and_bad_default_region():
    assert run(["+1 (212) 555-0100", "+0 123 4567", "+123"], T["phone"].clean) == \
        ["+12125550100", "+0 123 4567", "+123"]
    # fewer than three digits is no number, not even a short code (trial: `(2  )    -` was sent)
    assert run(["+12", "(2  )    -", "n/a", "711"], T["phone"].clean) == [None, None, None, "711"]
    # E.164 once the spaces go (also around it, or a no-break space at the end)
    assert run([" +44 20 7946 0958 ", "+31 20 555 1234\u00a0"], T["phone"].clean) == \
        ["+442079460958", "+31205551234"]
    with pytest.raises(TemplateError, match="default_region"):
        T["phone"].clean(pl.col("v"), default_region="Holland")


def test_phone_parses_each_unique_value_once(monkeypatch):
    calls = []
    real = phonenumbers.parse

    def counting(number, region=None, **kw):
        calls.append((number, region))
        return real(number, region, **kw)

    monkeypatch.setattr(phonenumbers, "parse", counting)
    values = ["020 555 1234", "+31 6 1234 5678", "020 555 1234", "06 1234 5678", None] * 200
    out = run(values, partial(T["phone"].clean, default_region="NL"))
    assert out[:5] == ["+31205551234", "+31612345678", "+31205551234", "+31612345678", None]
    assert sorted(calls) == [("020 555 1234", "NL"), ("06 1234 5678", "NL")]  # + form: fast path
    calls.clear()
    split = run(["020 555 1234; 06 1234 5678", "06 1234 5678"] * 50,
                lambda e: split_clean(e, ";", [{"phone": {"default_region": "NL"}}]))
    assert split[0] == ["+31205551234", "+31612345678"] and len(calls) == 2


def test_phone_items_use_row_region_after_split():
    out = run(["050 - 555 09 09; 030-0074321", None, " ; "],
              lambda e: apply_transforms(e, ["split", {"phone": {"region": "country"}}],
                                         context={"country": pl.col("c")}),
              c=["NL", "DE", "NL"])
    assert out == [["+31505550909", "+31300074321"], None, None]
    out = run(["030-0074321"], lambda e: apply_transforms(e, ["phone"], context={"region": pl.col("c")}),
              c=["Germany"])
    assert out == ["+49300074321"]
    assert run(["030-0074321"], lambda e: apply_transforms(e, [{"phone": {"region": "de"}}])) == \
        ["+49300074321"]


# ------------------------------------------------------------------------- BR-07 identifiers


def test_br07_identifiers_match_existing_record():
    row = pl.read_csv(CASES / "BR-07.csv", infer_schema=False)
    existing = json.loads((CASES / "BR-07.existing.json").read_text())
    cleaned = row.select(
        T["email"].clean(pl.col("email")), T["phone"].clean(pl.col("phone"), default_region="NL"),
        T["linkedin"].clean(pl.col("linkedin"))).row(0)
    assert cleaned == ("info@dijkstra-bouw.example", "+31505550909", "dijkstra-bouw")
    sheet = row.select(
        normalize_identifier("email", pl.col("email")),
        normalize_identifier("phone", pl.col("phone"), default_region="NL"),
        normalize_identifier("linkedin", pl.col("linkedin"))).row(0)
    api = pl.DataFrame({"email": [existing["emailAddresses"][0]["email"]],
                        "phone": [existing["phoneNumbers"][0]["phoneNumber"]],
                        "linkedin": [existing["linkedinId"]]}).select(
        normalize_identifier("email", pl.col("email")),
        normalize_identifier("phone", pl.col("phone"), default_region="NL"),
        normalize_identifier("linkedin", pl.col("linkedin"))).row(0)
    assert sheet == api


def test_normalize_identifier_kinds():
    assert run(["https://nl.linkedin.com/company/Dijkstra-Bouw?trk=x", "Dijkstra-Bouw"],
               partial(normalize_identifier, "linkedin")) == ["dijkstra-bouw", "dijkstra-bouw"]
    # unparsable numbers still compare equal across spellings; the + is kept
    assert run(["12-34", "12 34", "+12 34", "n/a"], partial(normalize_identifier, "phone")) == \
        ["1234", "1234", "+1234", None]
    assert run([" 02012345 ", ""], partial(normalize_identifier, "text")) == ["02012345", None]
    assert run([" /users/7 "], partial(normalize_identifier, "iri")) == ["/users/7"]
    with pytest.raises(TemplateError, match="unknown identifier kind 'fax'; known: email, phone"):
        normalize_identifier("fax", pl.col("v"))


# ---------------------------------------------------------------------------------- country


def test_country_codes_names_and_aliases():
    values = ["UK", "USA", "Germany", "us", "NA", "mx", "U.S.A.", "United States of America",
              "Great Britain", "England", "Holland", "The Netherlands", "deu", "Côte d'Ivoire",
              "Untied States", "  ", None]
    out = run(values, T["country"].clean)
    assert out == ["GB", "US", "DE", "US", "NA", "MX", "US", "US", "GB", "GB", "NL", "NL", "DE", "CI",
                   "Untied States", None, None]
    assert run(out, CHECKS["country"])[-3:] == [False, True, True]


def test_country_local_names():
    """European countries' own names, and their neighbours' Dutch and German names."""
    values = ["Schweiz", "ÖSTERREICH", "España", "Ελλάδα", "Česká republika", "Italië", "Frankreich",
              "Vereinigtes Königreich", "Verenigde Staten", "Tsjechië", "Luxemburg", "Oesterreich", "Korea"]
    assert run(values, T["country"].clean) == ["CH", "AT", "ES", "GR", "CZ", "IT", "FR", "GB", "US", "CZ", "LU",
                                               "AT", "Korea"]


def test_country_names_in_another_word_order():
    """Trial 2026-12-03: `Republic of Korea` (ISO 3166-1 writes `Korea, Republic of`) was no
    country, and its hint proposed KP (North Korea) for it. The same words in any order are the
    same name; other words stay unread (`Korea` is two countries)."""
    values = ["Republic of Korea", "Korea, South", "Korea (South)", "Democratic People's Republic of Korea",
              "Democratic Republic of the Congo", "British Virgin Islands", "U.S. Virgin Islands",
              "Islamic Republic of Iran", "Republic of Moldova", "Korea", "Rep. of Korea"]
    assert run(values, T["country"].clean) == ["KR", "KR", "KR", "KP", "CD", "VG", "VI", "IR", "MD", "Korea",
                                               "Rep. of Korea"]
    assert check_rule("country", value="Rep. of Korea")[1].startswith("did you mean KR (South Korea)?")


def test_a_no_value_word_is_no_country():
    """Review 2026-12-03: `n.a.` and `<NA>` (not applicable, pandas' NA) read as NA, Namibia,
    without a word; `NA` and `na` written plainly still are Namibia's code."""
    values = ["n.a.", "N.A.", "<NA>", "NA", " na ", "Namibia"]
    out = run(values, T["country"].clean)
    assert out == ["n.a.", "N.A.", "<NA>", "NA", "NA", "NA"]
    assert run(out, CHECKS["country"]) == [False, False, False, True, True, True]


def test_country_template_aliases():
    assert run(["Korea", "Zuid-Korea"], partial(T["country"].clean, aliases={"Zuid-Korea": "kr"})) == \
        ["Korea", "KR"]
    with pytest.raises(TemplateError, match="ISO 3166-1 alpha-2"):
        T["country"].clean(pl.col("v"), aliases={"Atlantis": "AT-L"})


@pytest.mark.parametrize("form", ["alpha_2", "alpha_3", "name"])
def test_country_render_round_trip_all_codes(form):
    codes = sorted(c.alpha_2 for c in pycountry.countries)
    rendered = run(codes, partial(T["country"].render, render=form))
    assert run(rendered, T["country"].clean) == codes
    assert run(["DE", "TW"], partial(T["country"].render, render=form)) == \
        {"alpha_2": ["DE", "TW"], "alpha_3": ["DEU", "TWN"], "name": ["Germany", "Taiwan"]}[form]


# --------------------------------------------------------------------------- url, email, text


def test_url():
    out = run(["3RoundStones.com", "http://3RoundStones.com/Path?Q=1", " HTTPS://WWW.Ex.COM/A ",
               "www.example.org", "", None], T["url"].clean)
    assert out == ["https://3roundstones.com", "http://3roundstones.com/Path?Q=1",
                   "https://www.ex.com/A", "https://www.example.org", None, None]
    assert run(["example.org"], partial(T["url"].clean, default_scheme="http")) == ["http://example.org"]
    # http(s) with a port passes; another scheme fails, which is only a warning (the API takes
    # any text, crm-api.md §8.1), as `javascript:` should not pass unremarked
    assert run(["https://localhost:8080/x", "https://intranet", "ftp://example.org", "https://a b.com",
                "https://example.com:8443/path", "javascript://example.com/%0Aalert(1)"],
               CHECKS["url"]) == [True, False, False, False, True, False]
    # a scheme goes to a bare host only: other text stays as typed (no e-mail made a user part)
    assert run(["example.com:8443/path", "//cdn.example.com", "info@firm.example", "urn:isbn:123", "not a url"],
               T["url"].clean) == ["https://example.com:8443/path", "https://cdn.example.com", "info@firm.example",
                                   "urn:isbn:123", "not a url"]


def test_email_and_text():
    assert run([" INFO@Dijkstra-Bouw.example "], T["email"].clean) == ["info@dijkstra-bouw.example"]
    assert run(["info@dijkstra-bouw.example", "a@b", "no-at.example", None], CHECKS["email"]) == \
        [True, False, False, True]
    # `--` in the domain and special-use names leave the fast path for email-validator
    assert run(["x@xn--bcher-kva.example", "a--b@x.example", "x@mail.test", "x@x.LOCAL"],
               CHECKS["email"]) == [True, True, False, False]
    assert run(["  a \t b  ", "   "], T["squish"].clean) == ["a b", None]
    assert run([" aBc "], T["upper"].clean) == ["ABC"]
    assert run(["de vries bv"], T["title"].clean) == ["De Vries Bv"]


def test_linkedin():
    assert run(["https://www.linkedin.com/company/dijkstra-bouw/",
                "http://nl.linkedin.com/company/dijkstra-bouw?trk=abc",
                "linkedin.com/company/dijkstra-bouw/about/", "dijkstra-bouw",
                "https://example.com/company/x"], T["linkedin"].clean) == \
        ["dijkstra-bouw"] * 4 + ["https://example.com/company/x"]


# ------------------------------------------------------------------------------ BR-10 IRIs


def test_br10_iri_cases():
    df = pl.read_csv(CASES / "BR-10.csv", infer_schema=False)
    owner = df.select(T["iri"].clean(pl.col("owner"), collection="users", allow_bare_id=True))
    assert owner.to_series().to_list() == ["/users/7", "/users/7", "/api/users/7", None]
    assert run(["7"], partial(T["iri"].clean, collection="users")) == ["7"]  # not allowed
    assert run(owner.to_series().to_list(), partial(CHECKS["iri"], collection="users")) == \
        [True, True, False, True]
    tags = df.select(apply_transforms(pl.col("tags"), ["split", {"iri": {"collection": "tags"}}]))
    assert tags.to_series().to_list() == [["3", "12"], ["/tags/3", "tags/12"], ["/tags/3"], ["/users/5"]]
    ok = tags.select(check_list(partial(CHECKS["iri"], collection="tags"), pl.col("tags")))
    assert ok.to_series().to_list() == [False, False, True, False]
    assert check_rule("iri", collection="tags") == ("IRI /tags/{id} (crm-api.md §1)",
                                                    "use the IRI form /tags/{id}")


def test_iri_bare_uuid_only():
    out = run(["3fa85f64-5717-4562-b3fc-2c963f66afa6", "alice"],
              partial(T["iri"].clean, collection="users", allow_bare_id=True))
    assert out == ["/users/3fa85f64-5717-4562-b3fc-2c963f66afa6", "alice"]


# ------------------------------------------------------------------- split, boolean, datetime


def test_split_and_item_transforms():
    out = run(["a@X.example; B@y.example ;;", " ; ", None],
              lambda e: split_clean(e, ";", ["email"]))
    assert out == [["a@x.example", "b@y.example"], None, None]
    assert run(["Germany|UK"], lambda e: apply_transforms(e, [{"split": {"sep": "|"}}, "country"])) == \
        [["DE", "GB"]]
    back = pl.DataFrame({"v": [["DE", "GB"], []]}).select(apply_transforms(
        pl.col("v"), [{"split": {"sep": "|"}}, "country"], direction="render"))
    assert back.to_series().to_list() == ["DE|GB", None]


def test_boolean():
    values = ["Ja", "nee", "X", "0", "TRUE", " y ", "maybe", None]
    assert run(values, T["boolean"].clean) == [True, False, True, False, True, True, None, None]
    assert run(values, CHECKS["boolean"]) == [True] * 6 + [False, True]
    assert run(values, T["boolean"].render) == ["true", "false", "true", "false", "true", "true",
                                                None, None]


def test_datetime():
    values = ["2024-01-31", "2024-01-31 10:15", "2024-01-31T10:15:00Z", "2024-01-31T10:15:00+02:00",
              "2024-01-31 10:15:00.25 +0200", "31-01-2024", "2024-02-30", "junk"]
    assert run(values, T["datetime"].clean) == [
        "2024-01-31T00:00:00+00:00", "2024-01-31T10:15:00+00:00", "2024-01-31T10:15:00+00:00",
        "2024-01-31T08:15:00+00:00", "2024-01-31T08:15:00+00:00", "31-01-2024", "2024-02-30", "junk"]
    assert run(["31-01-2024", "31/01/2024 10:15", "1.2.2024"],
               partial(T["datetime"].clean, dayfirst=True, time_zone="Europe/Amsterdam")) == \
        ["2024-01-30T23:00:00+00:00", "2024-01-31T09:15:00+00:00", "2024-01-31T23:00:00+00:00"]
    assert run(["2024-01-31T10:15:00+00:00", "2025-01-31T10:15:00.5Z", "2024-02-30T00:00:00+00:00",
                "2024-01-31", None], CHECKS["datetime"]) == [True, True, False, False, True]
    with pytest.raises(TemplateError, match="time_zone"):
        T["datetime"].clean(pl.col("v"), time_zone="Mars/Olympus")
    with pytest.raises(TemplateError, match="time_zone"):
        T["datetime"].render(pl.col("v"), time_zone="Mars/Olympus")
    # export writes the API's UTC instants in the template's time zone, with the offset
    assert run(["2026-11-02T23:00:00+00:00", "2024-06-30T22:00:00Z", "junk", None],
               partial(T["datetime"].render, time_zone="Europe/Amsterdam")) == [
        "2026-11-03T00:00:00+01:00", "2024-07-01T00:00:00+02:00", "junk", None]
    assert run(["2026-11-02T23:00:00+00:00"], T["datetime"].render) == ["2026-11-02T23:00:00+00:00"]


# ------------------------------------------------------------------------------ round trip

ROUND_TRIP = [
    (["trim"], [" a ", "", None]),
    (["squish"], [" a  b "]),
    (["lower"], ["AbC"]), (["upper"], ["AbC"]), (["title"], ["de vries"]),
    (["email"], [" INFO@Dijkstra-Bouw.example "]),
    (["url"], ["3RoundStones.com", "http://x.example/Path"]),
    ([{"country": {"render": "name"}}], ["UK", "Germany", "us", "Untied States"]),
    ([{"country": {"render": "alpha_3"}}], ["NL", "Côte d'Ivoire"]),
    ([{"phone": {"default_region": "NL"}}], ["050 - 555 09 09", "31612345678", "+1 212 555 0100"]),
    (["linkedin"], ["https://www.linkedin.com/company/dijkstra-bouw/", "acme"]),
    (["boolean"], ["ja", "nee", None]),
    (["datetime"], ["2024-01-31 10:15", "2024-01-31T10:15:00+02:00"]),
    ([{"datetime": {"time_zone": "Europe/Amsterdam"}}], ["2024-01-31", "2024-07-01 00:30", "31-01-2024"]),
    ([{"iri": {"collection": "users", "allow_bare_id": True}}], ["7", "/users/7", "/api/users/7"]),
    ([{"prefix": {"value": "C-"}}], ["123", "C-9"]),
    ([{"suffix": {"value": " B.V."}}], ["Acme"]),
    ([{"replace": {"map": {"kantoor": "work", "mobiel": "mobile"}}}], ["kantoor", "mobiel", "fax"]),
    ([{"extract": {"pattern": "#(https?://[^#]+)#"}}, "url"], ["Home#http://A.example/x#", "b.example"]),
    ([{"split": {"sep": ";"}}, "email"], ["A@x.example; b@y.example", "c@z.example"]),
    (["squish", {"split": {"sep": ","}}, {"iri": {"collection": "tags", "allow_bare_id": True}}],
     ["3, /tags/12"]),
]


@pytest.mark.parametrize("specs,values", ROUND_TRIP, ids=lambda x: str(x)[:40])
def test_round_trip_clean_render_clean(specs, values):
    df = pl.DataFrame({"v": values}, schema={"v": pl.String})
    cleaned = df.select(apply_transforms(pl.col("v"), specs))
    rendered = cleaned.select(apply_transforms(pl.col("v"), specs, direction="render"))
    again = rendered.select(apply_transforms(pl.col("v"), specs))
    assert again.to_series().to_list() == cleaned.to_series().to_list()


def test_every_transform_has_a_round_trip_case():
    named = {next(iter(s)) if isinstance(s, dict) else s for specs, _ in ROUND_TRIP for s in specs}
    assert named == set(TRANSFORMS)
    assert all(t.doc and t.name == name for name, t in TRANSFORMS.items())


# ------------------------------------------------------------------------- chains and errors


def test_chain_order_and_errors():
    specs = [{"prefix": {"value": "C-"}}, "upper"]
    assert run([" c-1 "], partial(apply_transforms, specs=specs)) == ["C-C-1"]
    assert run(["C-ABC"], partial(apply_transforms, specs=specs, direction="render")) == ["ABC"]
    with pytest.raises(TemplateError) as err:
        apply_transforms(pl.col("v"), ["trim", "phonee"])
    assert str(err.value) == ("unknown transform 'phonee' (did you mean 'phone'?); known: boolean, country, "
                              "datetime, email, extract, iri, linkedin, lower, phone, prefix, replace, split, "
                              "squish, suffix, title, trim, upper, url")
    with pytest.raises(TemplateError, match="transform 'phone' has no option regoin; options: "
                                            "default_region, region"):
        apply_transforms(pl.col("v"), [{"phone": {"regoin": "NL"}}])
    with pytest.raises(TemplateError, match="transform 'iri' needs option collection"):
        apply_transforms(pl.col("v"), ["iri"])
    # an option's value has the type of its default: a quoted "false" is no false (a trial's
    # dates were read day first with `dayfirst: "false"`)
    for value in ("false", "yes please", 0):
        with pytest.raises(TemplateError, match="option dayfirst of transform 'datetime' is true or false, not"):
            apply_transforms(pl.col("v"), [{"datetime": {"dayfirst": value}}])
    with pytest.raises(TemplateError, match="option time_zone of transform 'datetime' is text, not 5"):
        apply_transforms(pl.col("v"), [{"datetime": {"time_zone": 5}}])
    with pytest.raises(TemplateError, match="only once"):
        apply_transforms(pl.col("v"), ["split", "split"])
    with pytest.raises(TemplateError, match="one-key mapping"):
        apply_transforms(pl.col("v"), [{"trim": None, "upper": None}])
    with pytest.raises(TemplateError, match="one-to-one"):
        apply_transforms(pl.col("v"), [{"replace": {"map": {"a": "x", "b": "x"}}}], direction="render")
    with pytest.raises(ValueError, match="direction"):
        apply_transforms(pl.col("v"), ["trim"], direction="export")


# ----------------------------------------------------------------------------------- checks


def test_checks_simple_and_null_passes():
    assert run(["work", "office", "Mobile", None], CHECKS["phone_type"]) == [True, False, False, True]
    assert run(["abcd", "abcdef", None], partial(CHECKS["max_length"], n=5)) == [True, False, True]
    assert run(["+31505550909", "+0123456789", "0505550909"], CHECKS["phone_e164"]) == [True, False, False]
    assert check_rule("country") == ("ISO 3166-1 alpha-2", "use a two-letter code such as US, or name it in "
                                     "the transform's aliases ({country: {aliases: {\"Saint Martin\": MF}}})")
    assert check_rule("max_length", n=80) == ("maximum length", "shorten it to at most 80 characters")


def test_a_country_name_no_table_knows_gets_the_codes_it_may_mean():
    """`Korea` is two countries, `Untied States` a typo: the hint names the codes it may mean
    and an alias of that very spelling; a name nothing resembles gets an alias example of it."""
    assert check_rule("country", value="Korea")[1] == (
        "did you mean KR (South Korea) or KP (North Korea)? write the code, or name it in the transform's "
        "aliases ({country: {aliases: {\"Korea\": KR}}})")
    assert check_rule("country", value="Untied States")[1].startswith("did you mean US (United States)?")
    assert check_rule("country", value="Netherlands Antilles")[1] == (
        "use a two-letter code such as US, or name its code in the transform's aliases "
        "({country: {aliases: {\"Netherlands Antilles\": <its code>}}})")
    assert check_rule("country", value="XX") == check_rule("country")  # a code: no spelling to guess from


@pytest.mark.parametrize("value, kind", [("+31 20 123 4567", "a number"), ("1012 AB", None),
                                         ("info@firm.example", "an e-mail address"),
                                         ("www.firm.example", "a website"), ("2512", "a number")])
def test_another_columns_value_in_the_country_column_is_named_not_aliased(value, kind):
    """A phone number pasted into the country column got 'name its code in the transform's
    aliases ({"+31 20 123 4567": <its code>})' (a trial): a value that is plainly a number, an
    e-mail address or a website is said to be one instead."""
    hint = check_rule("country", value=value)[1]
    if kind:
        assert hint.startswith(f"{kind} is no country: is it in the right column?") and "aliases" not in hint
    else:  # letters in it: perhaps a name after all
        assert "aliases" in hint


def test_check_list_on_lists():
    df = pl.DataFrame({"v": [["a@x.example", "bad"], ["a@x.example"], [], None]})
    assert df.select(check_list(CHECKS["email"], pl.col("v"))).to_series().to_list() == \
        [False, True, True, True]


def test_check_tables_agree():
    assert set(CHECK_RULES) == set(CHECKS) == set(CHECK_ISSUE_TYPES)
    assert set(CHECK_ISSUE_TYPES.values()) <= set(ISSUE_TYPES)


def test_north_american_national_form_with_leading_1_is_e164():
    out = run(["1-800-942-2677", "1 202 767 0450", "31612345678"], lambda e: T["phone"].clean(
        e, region=pl.col("r")), r=["US", "US", "NL"])
    assert out == ["+18009422677", "+12027670450", "31612345678"]


# ------------------------------------------------------------------------ map_rows (mapping)


def _map(fields, rows, **doc):
    """`map_rows` of `rows` (dicts of cell text) through a template with `fields`."""
    t = parse_template({"fields": fields, **doc}, path="t.yaml")
    cols = list(rows[0])
    sheet = pl.DataFrame({"row_number": list(range(2, len(rows) + 2)),
                          **{c: [r[c] for r in rows] for c in cols}},
                         schema={"row_number": pl.Int64, **{c: pl.String for c in cols}})
    return map_rows(sheet, t)


def test_map_rows_phones_emails_and_raw_identifiers():
    rows = [{"n": " Acme  BV ", "c": "NL", "p": " 020 555 1234 ", "m": "+31 20 555 1234",
             "e": "A@X.example; a@x.example", "e2": "b@y.example"},
            {"n": "B", "c": "UK", "p": "+44 20 7946 0958", "m": "  ", "e": "  ", "e2": None},
            {"n": "C", "c": None, "p": None, "m": "06 1234 5678", "e": None, "e2": "c@z.example"}]
    out = _map({"title": "n", "address.country": "c",
                "phoneNumbers": [{"column": "p"}, {"column": "m", "type": "mobile"}],
                "emailAddresses": [{"column": "e"}, {"column": "e2"}]}, rows,
               identifiers=["emailAddresses", "phoneNumbers"], default_region="DE")
    assert out.schema == pl.Schema({
        "row_number": pl.Int64, "title": pl.String, "address.country": pl.String,
        "__repeated.m": pl.Boolean, "phoneNumbers": PHONE_DTYPE, "emailAddresses": pl.List(pl.String),
        "__raw.emailAddresses": pl.List(pl.String), "__raw.phoneNumbers": pl.List(pl.String)})
    assert out["title"].to_list() == ["Acme BV", "B", "C"]
    # the same number in both columns is listed once, with the first column's type (flagged)
    assert out["__repeated.m"].to_list() == [True, False, False]
    assert out["phoneNumbers"].to_list() == [
        [{"phoneNumber": "+31205551234", "phoneType": None}],
        [{"phoneNumber": "+442079460958", "phoneType": None}],
        [{"phoneNumber": "+49612345678", "phoneType": "mobile"}]]  # no country: default_region
    assert out["emailAddresses"].to_list() == [["a@x.example", "b@y.example"], [], ["c@z.example"]]
    assert out["__raw.emailAddresses"].to_list() == [["A@X.example", "a@x.example", "b@y.example"],
                                                     [], ["c@z.example"]]
    assert out["__raw.phoneNumbers"].to_list() == [["020 555 1234", "+31 20 555 1234"],
                                                   ["+44 20 7946 0958"], ["06 1234 5678"]]


def test_map_rows_split_phones_type_column_and_blank_cells():
    rows = [{"n": "A", "d": "  ", "p": "020 555 1234 / +31 20 555 1234 /", "m": "0612345678",
             "t": " Cell ", "i": " /organizations/3 "},
            {"n": " ", "d": " x ", "p": " ", "m": "NULL", "t": "fax", "i": "  "}]
    out = _map({"title": "n", "description": "d",
                "phoneNumbers": [{"column": "p", "split": "/"},
                                 {"column": "m", "type_column": "t", "type_map": {"cell": "mobile"}}]},
               rows, identifiers=["phoneNumbers"], default_region="NL", iri_column="i")
    assert out["phoneNumbers"].to_list() == [
        [{"phoneNumber": "+31205551234", "phoneType": None},
         {"phoneNumber": "+31612345678", "phoneType": "mobile"}],
        []]  # not a null token here, but no digits: no number, not sent (validate warns)
    assert out["__raw.phoneNumbers"].to_list() == [
        ["020 555 1234", "+31 20 555 1234", "0612345678"], ["NULL"]]
    # blank cells are empty; a description is trimmed (its normaliser), nothing more
    assert out.select("title", "description", "__iri").rows() == [
        ("A", None, "/organizations/3"), (None, "x", None)]
    tokens = _map({"phoneNumbers": [{"column": "m", "type_column": "t"}], "title": "n"}, rows,
                  null_tokens=["NULL"], default_region="NL")
    assert tokens["phoneNumbers"].to_list() == [
        [{"phoneNumber": "+31612345678", "phoneType": "cell"}], []]


def test_extract_keeps_what_the_pattern_captures_and_leaves_other_values():
    """Access writes a hyperlink cell as `text#address#` (Northwind suppliers' homePage): the
    address is what a template extracts; a plain value passes; a bad pattern or a group the
    pattern lacks is a template error naming the pattern."""
    cells = ["G'day Mate (on the World Wide Web)#http://www.microsoft.com/gdaymate.htm#",
             " https://plain.example ", "#CAJUN.HTM#", None]
    link = partial(T["extract"].clean, pattern="#(https?://[^#]+)#")
    assert run(cells, link) == ["http://www.microsoft.com/gdaymate.htm", "https://plain.example",
                                "#CAJUN.HTM#", None]
    assert run(["id: 42 (old)"], partial(T["extract"].clean, pattern=r"\d+", group=0)) == ["42"]
    with pytest.raises(TemplateError, match=r"extract's pattern '#\(unclosed' is no regex \(error: unclosed group\)"):
        T["extract"].clean(pl.col("v"), pattern="#(unclosed")
    with pytest.raises(TemplateError, match="has 0 group"):
        T["extract"].clean(pl.col("v"), pattern="#[^#]+#")
    with pytest.raises(TemplateError, match="no regex"):  # when the template loads
        parse_template({"fields": {"title": "companyName", "website": {
            "column": "homePage", "transforms": [{"extract": {"pattern": "#(https?://"}}]}}}, path="s.yaml")


def test_a_constant_phone_number_is_sent_beside_the_columns():
    """`phoneNumbers: [{column: phone}, {value: "+31 20 123 4567", type: work}]`: the constant
    is cleaned to E.164 and listed after the row's own (a trial's constant was dropped silently)."""
    t = parse_template({"default_region": "NL", "fields": {"title": "t", "phoneNumbers": [
        {"column": "p"}, {"value": "+31 20 123 4567", "type": "work"}]}}, path="t.yaml")
    sheet = pl.DataFrame({"row_number": [2, 3], "t": ["A", "B"], "p": ["020 555 0101", None]})
    phones = map_rows(sheet, t)["phoneNumbers"].to_list()
    assert phones == [[{"phoneNumber": "+31205550101", "phoneType": None},
                       {"phoneNumber": "+31201234567", "phoneType": "work"}],
                      [{"phoneNumber": "+31201234567", "phoneType": "work"}]]
