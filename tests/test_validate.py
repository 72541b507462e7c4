"""Validation rules on mapped rows (pandera, polars backend), offline."""
from __future__ import annotations

import polars as pl

from bulkcrm.mapping import map_rows
from bulkcrm.template import parse_template
from bulkcrm.validate import validate


def _check(fields, rows, **doc):
    t = parse_template({"fields": fields, **doc}, path="t.yaml")
    cols = list(rows[0])
    sheet = pl.DataFrame({"row_number": list(range(2, len(rows) + 2)),
                          **{c: [r[c] for r in rows] for c in cols}},
                         schema={"row_number": pl.Int64, **{c: pl.String for c in cols}})
    return validate(map_rows(sheet, t), t, sheet=sheet, file="x.csv")


def test_unknown_boolean_word_is_an_issue_not_a_silent_null():
    v = _check({"description": "d", "flagged": "f", "category": {"value": "/note_categories/1"}},
               [{"d": "a", "f": "yes"}, {"d": "b", "f": "maybe"}, {"d": "c", "f": None}],
               resource="organization_notes",
               organization={"iri_column": "org"})
    issues = v.issues.to_dicts()
    assert [(i["row_number"], i["column"], i["value"], i["type"]) for i in issues] == [
        (3, "f", "maybe", "invalid-boolean")]
    assert v.invalid_rows == {3}


def test_max_length_and_every_failure_at_once():
    v = _check({"title": {"column": "t", "max_length": 5}, "website": "w", "emailAddresses": "e"},
               [{"t": "Short", "w": "ok.example", "e": "a@b.example"},
                {"t": "Far too long", "w": "not a url", "e": "x@;y@z.example"}])
    found = {(i["row_number"], i["column"], i["type"], i["value"]) for i in v.issues.to_dicts()}
    assert found == {(3, "t", "too-long", "Far too long"), (3, "w", "invalid-url", "not a url"),
                     (3, "e", "invalid-email", "x@")}
    assert v.valid["row_number"].to_list() == [2]


def test_a_bad_list_item_is_quoted_as_the_cell_has_it():
    """A bad e-mail is named as typed, not in the lower case it is compared in: the user looks
    for that text in the sheet (a trial: `Mary Smith <mary@smith.com>` was quoted lower-cased)."""
    v = _check({"title": "t", "emailAddresses": {"column": "e", "split": ";"}},
               [{"t": "A", "e": "Info@A.example; Mary Smith <Mary@Smith.com>"}])
    (issue,) = v.issues.to_dicts()
    assert (issue["column"], issue["value"]) == ("e", "Mary Smith <Mary@Smith.com>")
    assert '"Mary Smith <Mary@Smith.com>" breaks' in issue["message"]


def test_a_constant_goes_through_its_fields_transforms():
    """`value: UK` for address.country is normalised like a cell (GB), and a constant's own
    transforms run (a trial's `{value: UK}` made every row invalid, quoted as "None"); a bad
    constant is quoted as the template has it."""
    v = _check({"title": "t", "address.country": {"value": "UK"},
                "externalSource": {"value": " nhs ", "transforms": ["upper"]}}, [{"t": "A"}])
    assert v.issues.height == 0
    assert v.valid.select("address.country", "externalSource").row(0) == ("GB", "NHS")
    words = _check({"title": "t", "description": {"column": "t", "transforms": [{"replace": {"map": {
        "A": None, 5: "five"}}}]}}, [{"t": "A"}, {"t": "5"}])
    assert words.valid["description"].to_list() == [None, "five"]  # null: made empty; a number key
    note = _check({"description": "d", "category": {"value": "/note_categories/1"}, "flagged": {"value": "ja"}},
                  [{"d": "a"}], resource="organization_notes", organization={"iri_column": "org"})
    assert note.issues.height == 0 and note.valid["flagged"].to_list() == [True]
    tags = _check({"title": "t", "tags": [{"column": "t"}, {"value": ["/tags/1", "/tags/2"]}]}, [{"t": "/tags/3"}])
    assert tags.valid["tags"].to_list() == [["/tags/3", "/tags/1", "/tags/2"]]  # a list of constants
    bad = _check({"title": "t", "address.country": {"value": "Atlantis"}}, [{"t": "A"}])
    (issue,) = bad.issues.to_dicts()
    assert issue["value"] == "Atlantis" and '"Atlantis" (the template\'s value of address.country) breaks' in issue["message"]


def test_an_email_address_in_the_website_column_is_no_website():
    """An e-mail address in a website column is no URL, nor is one with a user part
    (`https://user:pw@host`, RFC 3986 §3.2.1): a warning with a hint; an `@` in the path is a
    path. Only a warning: the API takes any text as a website (crm-api.md §8.1), so the row is
    written, and the url transform gives the address no scheme (it would make `info` a user
    part of host firm.example)."""
    v = _check({"title": "t", "website": "w"},
               [{"t": "A", "w": "almightygodblessing2015@gmail.com"}, {"t": "B", "w": "https://me:pw@firm.example/x"},
                {"t": "C", "w": "https://social.example/@firm"}, {"t": "D", "w": "www.firm.example"}])
    issues = {i["row_number"]: i for i in v.issues.to_dicts()}
    assert sorted(issues) == [2, 3] and {i["type"] for i in issues.values()} == {"invalid-url"}
    assert issues[2]["value"] == "almightygodblessing2015@gmail.com"
    assert "put e-mail addresses in the e-mail column" in issues[2]["message"]
    assert {i["severity"] for i in issues.values()} == {"warning"}
    assert v.valid["row_number"].to_list() == [2, 3, 4, 5]
    assert v.valid["website"].to_list() == ["almightygodblessing2015@gmail.com", "https://me:pw@firm.example/x",
                                            "https://social.example/@firm", "https://www.firm.example"]


def test_lookup_names_pass_but_malformed_iris_in_lookup_fields_fail():
    v = _check({"title": "t", "tags": {"column": "g", "lookup": True}},
               [{"t": "A", "g": "VIP; Partner"}, {"t": "B", "g": "/users/5"}])
    assert [(i["row_number"], i["type"], i["value"]) for i in v.issues.to_dicts()] == [
        (3, "invalid-iri", "/users/5")]


def test_clean_sheet_and_constant_boolean_give_no_issues():
    v = _check({"description": "d", "flagged": "f", "isPrivate": {"value": True},
                "category": {"value": "/note_categories/1"}},
               [{"d": "a", "f": "yes"}, {"d": "b", "f": None}],
               resource="organization_notes", organization={"iri_column": "org"})
    assert v.issues.height == 0 and v.invalid_rows == frozenset()
    assert v.valid.select("row_number", "flagged", "isPrivate").rows() == [(2, True, True), (3, None, True)]


def test_phone_hint_shows_a_number_of_the_templates_region():
    """A US sheet's bad phone gets a US example (phonenumbers' example number), not a Dutch one."""
    v = _check({"title": "t", "phoneNumbers": {"column": "p"}}, [{"t": "A", "p": "555-01"}],
               default_region="US")
    (issue,) = v.issues.to_dicts()
    assert issue["type"] == "invalid-phone" and issue["severity"] == "warning"
    assert "write it with + and the country code, such as +12015550123 (the number is kept" in issue["message"]
    # a row with a country of its own gets an example of that country
    v = _check({"title": "t", "address.country": "c", "phoneNumbers": {"column": "p"}},
               [{"t": "A", "c": "Deutschland", "p": "030-1234abc"}, {"t": "B", "c": "Atlantis", "p": "020-623l298"}],
               default_region="NL")
    hints = {i["row_number"]: i["message"] for i in v.issues.to_dicts() if i["type"] == "invalid-phone"}
    assert "such as +4930123456 (" in hints[2] and "such as +31101234567 (" in hints[3]


def test_phone_hint_of_a_number_with_a_country_code_asks_to_check_it():
    """A number that has + and a country code but is no number there (a digit too many, a
    country code not in use) is not told to add one; its example is of that country code's
    region when there is one, else of the row's."""
    v = _check({"title": "t", "address.country": "c", "phoneNumbers": {"column": "p"}},
               [{"t": "A", "c": "NL", "p": "+44 20 7946 09581234"}, {"t": "B", "c": "NL", "p": "+999 1234 5678 9012 345"}],
               default_region="NL")
    hints = {i["row_number"]: i["message"] for i in v.issues.to_dicts() if i["type"] == "invalid-phone"}
    assert "write it with +" not in hints[2] and "write it with +" not in hints[3]
    assert "check its country code and digits" in hints[2] and "such as +441212345678 (" in hints[2]
    assert "such as +31101234567 (" in hints[3]


def test_a_number_with_a_country_code_not_in_use_is_a_warning():
    """E.164 numbers begin with an assigned country code: `+999 …` (none) is kept as typed with
    a warning, spelled in E.164 form or not; a non-geographic code (+800) and +1 pass."""
    v = _check({"title": "t", "phoneNumbers": {"column": "p"}},
               [{"t": "A", "p": "+999 12-3456"}, {"t": "B", "p": "+9991234567"},
                {"t": "C", "p": "+800 1234 5678"}, {"t": "D", "p": "+1 (212) 555-0100"}], default_region="NL")
    assert [(i["row_number"], i["type"]) for i in v.issues.to_dicts()] == [(2, "invalid-phone"), (3, "invalid-phone")]
    assert v.valid["phoneNumbers"].list.eval(pl.element().struct.field("phoneNumber")).to_list() == [
        ["+999 12-3456"], ["+9991234567"], ["+80012345678"], ["+12125550100"]]


def test_a_number_whose_plus_was_lost_gets_that_number_as_its_hint():
    """`31201234567` (Excel dropped the +) is not guessed silently (BR-05), but the hint names
    the number it would be with a +; digits that form no number get the usual example."""
    v = _check({"title": "t", "phoneNumbers": {"column": "p"}},
               [{"t": "A", "p": "31201234567"}, {"t": "B", "p": "1234"}], default_region="NL")
    hints = {i["row_number"]: i["message"] for i in v.issues.to_dicts()}
    assert "write it with + and the country code: +31201234567 if it begins with country code 31 (" in hints[2]
    assert "such as +31101234567 (" in hints[3]


def test_a_phone_with_letters_gets_a_hint_in_digits():
    """Trial 2026-12-02: `(800) TAX-1040` was told to use + and a country code, such as a made-up
    number. A vanity number's letters are the keypad's digits: the hint gives it in E.164; a
    letter among digits is likely a typo (l for 1); both are kept as typed meanwhile."""
    v = _check({"title": "t", "phoneNumbers": {"column": "p"}},
               [{"t": "A", "p": "(800) TAX-1040"}, {"t": "B", "p": "1-800-FLOWERS"}, {"t": "C", "p": "020-623l298"}],
               default_region="US")
    hints = {i["row_number"]: i["message"] for i in v.issues.to_dicts()}
    assert "its letters stand for the keypad's digits: write it in digits with + and the country code, +18008291040 (" in hints[2]
    assert "the country code, +18003569377 (" in hints[3]
    assert "a letter among its digits (l for 1, O for 0?): write it in digits with + and the country code" in hints[4]
    assert v.valid["phoneNumbers"].to_list()[0] == [{"phoneNumber": "(800) TAX-1040", "phoneType": None}]


def test_a_phone_cell_is_split_on_semicolons_like_an_email_cell():
    """README: `split` defaults to `;` for phones too; a sheet without one keeps the per-cell path."""
    fields = {"title": "t", "phoneNumbers": [{"column": "p"}, {"column": "f", "type": "fax"}]}
    v = _check(fields, [{"t": "A", "p": "020-6231234; 06 1234 5678", "f": "020-6231235"},
                        {"t": "B", "p": "020 623 1236", "f": None}], default_region="NL")
    assert v.issues.height == 0
    assert v.valid["phoneNumbers"].to_list() == [
        [{"phoneNumber": "+31206231234", "phoneType": None}, {"phoneNumber": "+31612345678", "phoneType": None},
         {"phoneNumber": "+31206231235", "phoneType": "fax"}],
        [{"phoneNumber": "+31206231236", "phoneType": None}]]
    plain = _check(fields, [{"t": "B", "p": "020 623 1236", "f": None}], default_region="NL")
    assert plain.valid["phoneNumbers"].to_list() == v.valid["phoneNumbers"].to_list()[1:]


def test_a_bad_date_of_a_day_first_column_gets_a_day_first_example():
    """A template reading DD-MM-YYYY (`dayfirst`) shows a day-first example for a date that
    does not exist, not only the API's RFC 3339 form."""
    fields = {"description": "d", "createdAt": {"column": "c", "transforms": [{"datetime": {"dayfirst": True}}]},
              "category": {"value": "/note_categories/1"}}
    v = _check(fields, [{"d": "a", "c": "31-02-2024"}, {"d": "b", "c": "31-01-2024"}],
               resource="organization_notes", organization={"iri_column": "org"})
    (issue,) = v.issues.to_dicts()
    assert issue["row_number"] == 2 and issue["message"].endswith("day first, such as 31-01-2024 or 31-01-2024 10:15")
    v = _check({**fields, "createdAt": "c"}, [{"d": "a", "c": "2024-02-31"}, {"d": "b", "c": "03/04/2026"}],
               resource="organization_notes", organization={"iri_column": "org"})
    first, second = v.issues.to_dicts()
    assert first["message"].endswith("use a date such as 2024-01-31 or 2024-01-31T10:15:00+00:00")
    # a date written day or month first without `dayfirst`: the hint names the option
    assert second["message"].endswith("use a date such as 2024-01-31 or 2024-01-31T10:15:00+00:00; if the "
                                      "column writes dates day first (31/01/2024), give its datetime "
                                      "transform dayfirst: true ({datetime: {dayfirst: true}})")
    # a day that exists neither way gets no dayfirst hint: the option would not help
    v = _check({**fields, "createdAt": "c"}, [{"d": "a", "c": "31/02/2024"}, {"d": "b", "c": "12/31/2024"}],
               resource="organization_notes", organization={"iri_column": "org"})
    first, second = v.issues.to_dicts()
    assert first["message"].endswith("no such day, day or month first: use a date such as 2024-01-31 or "
                                     "2024-01-31T10:15:00+00:00")
    assert second["message"].endswith("use a date such as 2024-01-31 or 2024-01-31T10:15:00+00:00; if it is "
                                      "month first, write it as 2024-12-31")


def test_a_dropped_phone_extension_is_a_warning():
    """E.164 has no extension: a number that becomes E.164 without its `x2641` says so; one
    kept as typed (not valid, so not parsed) keeps its extension and only has `invalid-phone`."""
    v = _check({"title": "t", "phoneNumbers": [{"column": "p"}, {"column": "q", "type": "work"}]},
               [{"t": "A", "p": "985.939.5411x2641", "q": "(240)452-2332 ext. 46; 020 623 1234"},
                {"t": "B", "p": "+1-887-577-1205x5686", "q": None}, {"t": "C", "p": "985.939.5411", "q": None}],
               default_region="US")
    got = {(i["row_number"], i["column"], i["type"], i["value"]) for i in v.issues.to_dicts()}
    assert {x for x in got if x[2] == "phone-extension"} == {
        (2, "p", "phone-extension", "985.939.5411x2641"), (2, "q", "phone-extension", "(240)452-2332 ext. 46")}
    assert (3, "p", "invalid-phone", "+1-887-577-1205x5686") in got and not any(x[0] == 4 for x in got)
    assert v.invalid_rows == frozenset()  # warnings: the rows go ahead


def test_the_phone_checks_read_a_null_token_and_its_escape_as_mapping_does():
    """`n/a` (a null token) is an empty cell, no warning; `'n/a` (escaped, as export writes a
    value `n/a`) is the text n/a, no number: the invalid-phone warning quotes that text."""
    v = _check({"title": "t", "phoneNumbers": [{"column": "p"}]},
               [{"t": "A", "p": "n/a"}, {"t": "B", "p": "'n/a"}], null_tokens=["n/a"], default_region="NL")
    assert [(i["row_number"], i["type"], i["value"]) for i in v.issues.to_dicts()] == [(3, "invalid-phone", "n/a")]


def test_a_readers_error_in_a_column_the_template_does_not_read_holds_no_row_back():
    """An Excel error in a helper column (a VLOOKUP beside the data) is about a cell nothing
    is sent from: a warning, and the row proceeds; in a column the template reads it stays an
    error (the row is not written)."""
    from bulkcrm.errors import Issue
    t = parse_template({"resource": "organizations", "fields": {"title": {"column": "name"}}}, path="t.yaml")
    frame = pl.DataFrame({"row_number": [2, 3], "name": ["A", None], "helper": [None, "x"]})
    found = [Issue("excel-error", 2, "helper", "#N/A", "Excel error value", "x.csv:2:helper: #N/A"),
             Issue("excel-error", 3, "name", "#N/A", "Excel error value", "x.csv:3:name: #N/A")]
    v = validate(map_rows(frame, t), t, sheet=frame, read_issues=found, file="x.csv")
    assert v.valid["row_number"].to_list() == [2] and v.invalid_rows == {3}
    assert v.issues.select("row_number", "column", "severity").rows() == [(2, "helper", "warning"), (3, "name", "error")]
    assert v.issues["message"][0].endswith("(the template does not read this column: the row is not held back)")


def test_a_fax_typed_as_the_phone_number_is_a_warning():
    """Northwind's WARTH has phone and fax `981-443655`: the record lists the number once, as
    the phone (the fax type is not sent), and an edit making a fax the phone changes nothing;
    a warning on the fax cell says so, also when the fax is typed otherwise."""
    t = parse_template({"resource": "organizations", "default_region": "FI", "fields": {
        "title": {"column": "name"},
        "phoneNumbers": [{"column": "phone"}, {"column": "fax", "type": "fax"}]}}, path="t.yaml")
    frame = pl.DataFrame({"row_number": [2, 3, 4], "name": ["Wartian", "Other", "Spelt"],
                          "phone": ["981-443655", "981-443655", "981-443655"],
                          "fax": [" 981-443655", "981-443656", "(981) 44 36 55"]})
    mapped = map_rows(frame, t)
    assert mapped["phoneNumbers"].to_list()[0] == [{"phoneNumber": "+358981443655", "phoneType": None}]
    v = validate(mapped, t, sheet=frame, file="w.csv", letters={"name": "A", "phone": "B", "fax": "C"})
    assert v.issues.select("row_number", "column", "cell", "type", "severity").rows() == [
        (2, "fax", "C2", "repeated-phone", "warning"), (4, "fax", "C4", "repeated-phone", "warning")]
    assert v.issues["message"][0].startswith(
        'w.csv:2:fax: "981-443655" is a number an earlier phone column of the row holds: the record lists it '
        'once, with that column\'s type, so this fax (fax) entry is not sent')
    assert v.valid.height == 3


def test_a_readers_error_in_a_note_or_reference_column_still_holds_the_row_back():
    """The notes section's columns and those a note names its organization by are read too:
    an Excel error there stays an error (it was a warning, and the note was dropped unseen)."""
    from bulkcrm.errors import Issue
    t = parse_template({"resource": "organizations", "identifiers": ["emailAddresses"],
                        "fields": {"title": "name", "emailAddresses": "email"},
                        "notes": {"fields": {"description": "note", "category": {"value": "/note_categories/1"}}}},
                       path="t.yaml")
    frame = pl.DataFrame({"row_number": [2], "name": ["A"], "email": ["a@a.nl"], "note": [None]})
    found = [Issue("excel-error", 2, "note", "#N/A", "Excel error value", "x.csv:2:note: #N/A")]
    v = validate(map_rows(frame, t), t, sheet=frame, read_issues=found, file="x.csv")
    assert v.issues.select("column", "severity").rows() == [("note", "error")] and v.invalid_rows == {2}
    nt = parse_template({"resource": "organization_notes", "organization": {"customer_id_column": "cid"},
                         "fields": {"description": "note", "category": {"value": "/note_categories/1"}}},
                        path="n.yaml")
    frame = pl.DataFrame({"row_number": [2], "cid": [None], "note": ["hello"]})
    found = [Issue("excel-error", 2, "cid", "#N/A", "Excel error value", "x.csv:2:cid: #N/A")]
    v = validate(map_rows(frame, nt), nt, sheet=frame, read_issues=found, file="x.csv")
    assert v.issues.select("column", "severity").rows() == [("cid", "error")]


def test_a_national_number_without_a_country_says_the_country_is_missing():
    """A national number on a row without a country (and no default_region) cannot be read:
    the hint says what is missing; a row with its country gets an example of that country."""
    fields = {"title": "t", "phoneNumbers": [{"column": "p"}], "address.country": "c"}
    v = _check(fields, [{"t": "A", "p": "020 623 1234", "c": None}, {"t": "B", "p": "030 1", "c": "DE"}])
    first, second = v.issues.to_dicts()
    assert first["row_number"] == 2 and "the row has no country (and the template no default_region) to read " \
        "a national number in: give the row its country, or write it with + and the country code" in first["message"]
    assert second["row_number"] == 3 and "no country" not in second["message"] and "+49" in second["message"]


def test_an_invalid_number_with_an_extension_is_not_called_a_typo():
    """The `x` of an extension is no letter typed for a digit: the hint says the number is not
    valid without its extension either (the trial's `(944)350-3408x68054`: no such area code)."""
    v = _check({"title": "t", "phoneNumbers": [{"column": "p"}]},
               [{"t": "A", "p": "(944)350-3408x68054"}, {"t": "B", "p": "020-623l298"}], default_region="US")
    first, second = v.issues.to_dicts()
    assert "without its extension (x68054) it is no valid number either: write it with + and the country code" \
        in first["message"] and "letter" not in first["message"]
    assert "a letter among its digits (l for 1, O for 0?)" in second["message"]


def test_review_hints_keep_the_time_and_the_typo():
    """From a review: the month-first hint keeps the time of day (none when the time is what
    is wrong), and a letter among the digits is still named when an extension follows."""
    from bulkcrm.normalize import check_rule
    assert check_rule("datetime", value="12/31/2024 10:15")[1].endswith("write it as 2024-12-31T10:15:00")
    assert "month first" not in check_rule("datetime", value="12/31/2024 25:00")[1]
    assert "a letter among its digits" in check_rule("phone_e164", region="NL", value="020-623l298 x12")[1]


def test_a_national_number_no_range_of_its_country_holds_is_a_warning():
    """`555-8787` is possible in AU and GB (phonenumbers checks its length) but valid in neither:
    an `unlikely-phone` warning per such item, also in a split cell and by the template's
    default_region; the row stays valid and the number is sent as it reads. None for a valid
    national number, an E.164 or international one, a number read in another region of its
    country code (a Jersey number on a GB row), a row without a country to read it in, nor
    a US local number (possible only locally: kept as typed, its own invalid-phone warning)."""
    fields = {"title": "t", "address.country": "c", "phoneNumbers": [{"column": "p"}, {"column": "f", "type": "fax"}]}
    v = _check(fields, [
        {"t": "A", "c": "AU", "p": "(02) 9374 4000; 555-8787", "f": "555 8788"},
        {"t": "B", "c": "GB", "p": "020 7946 0018", "f": "01534 123456"},
        {"t": "C", "c": None, "p": "555-8787", "f": "+61 2 9374 4000"},
        {"t": "D", "c": "US", "p": "555-8787", "f": "011 61 2 9374 4001"},
        {"t": "E", "c": "", "p": "+61 555 8787", "f": None},
    ], default_region="GB")
    got = [(i["row_number"], i["column"], i["value"], i["type"], i["severity"]) for i in v.issues.to_dicts()]
    assert got == [(2, "f", "555 8788", "unlikely-phone", "warning"), (2, "p", "555-8787", "unlikely-phone", "warning"),
                   (4, "p", "555-8787", "unlikely-phone", "warning"), (5, "p", "555-8787", "invalid-phone", "warning")]
    assert v.invalid_rows == frozenset()
    assert v.valid["phoneNumbers"].to_list()[0] == [
        {"phoneNumber": "+61293744000", "phoneType": None}, {"phoneNumber": "+615558787", "phoneType": None},
        {"phoneNumber": "+615558788", "phoneType": "fax"}]
    (au,) = [i for i in v.issues.to_dicts() if i["column"] == "p" and i["row_number"] == 2]
    assert au["message"].startswith('x.csv:2:p: "555-8787" is sent as +615558787, not a valid AU number: '
                                    "is the area code missing (or a digit)? write the number in full, such as +61")
    (gb,) = [i for i in v.issues.to_dicts() if i["row_number"] == 4]
    assert "is sent as +445558787, not a valid GB number" in gb["message"]  # the template's default_region


def test_unlikely_phone_reads_national_numbers_only():
    """`normalize.unlikely_phone`: the E.164 form of a possible but invalid national number."""
    from bulkcrm.normalize import unlikely_phone
    assert unlikely_phone("555-8787", "AU") == "+615558787"
    assert unlikely_phone("020 7946 0018", "GB") is None  # valid
    assert unlikely_phone("+61 555 8787", "AU") is None  # written with its country code
    assert unlikely_phone("0011 61 555 8787", "AU") is None  # AU's international prefix
    assert unlikely_phone("555-8787", None) is None  # no region: no national reading
    assert unlikely_phone("555-8787", "US") is None  # possible only locally: not sent as E.164
    assert unlikely_phone("555-878l", "AU") is None  # a letter among the digits: not sent as E.164


def test_an_unlikely_phone_is_judged_in_the_region_the_phone_transform_read_it_in():
    """From a review: a template reading its phones in BE (`{phone: {region: BE}}`) under a
    template default of NL got "not a valid NL number" for a valid Belgian one. The number a cell
    became names its country; a number its own transform region makes invalid names that region."""
    fields = {"title": "t", "phoneNumbers": {"column": "p", "transforms": [{"phone": {"region": "BE"}}]}}
    v = _check(fields, [{"t": "A", "p": "012 34 56 78"}, {"t": "B", "p": "02 123 45 67"}], default_region="NL")
    assert v.valid["phoneNumbers"].to_list() == [[{"phoneNumber": "+3212345678", "phoneType": None}],
                                                 [{"phoneNumber": "+3221234567", "phoneType": None}]]
    got = [(i["row_number"], i["type"], i["message"]) for i in v.issues.to_dicts()]
    assert len(got) == 1 and got[0][:2] == (3, "unlikely-phone"), got
    assert "is sent as +3221234567, not a valid BE number" in got[0][2]
