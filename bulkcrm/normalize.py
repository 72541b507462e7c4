"""Phone, country, e-mail and date-time helpers and the validator checks behind
`bulkcrm.transforms` (polars expressions; import them from there).

Stage: shared by transforms (clean/render), the validator (`CHECKS`) and the planner (identifier
normalisers). Input: `pl.Expr` over `pl.String` columns; output: `pl.Expr` (nulls stay null).

Expensive per-value work (phonenumbers, email-validator) runs once per UNIQUE value through
`_per_unique`, and only for the values a vectorised fast path cannot settle:
E.164 and plain international numbers (`clean_phone`) and plain ASCII addresses
(`check_email`) never reach Python. Country names are keyed by a vectorised polars expression
(once per distinct spelling, `on_unique`) and looked up in a prebuilt table, so no Python code
runs per row.
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from datetime import date
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import email_validator
import phonenumbers
import polars as pl
import pycountry
from phonenumbers import CountryCodeSource, PhoneNumberFormat, ValidationResult

from bulkcrm.errors import TemplateError
from bulkcrm.vocab import IRI_ID

# ---------------------------------------------------------------------------------------- utils


def trimmed(expr: pl.Expr) -> pl.Expr:
    """Return `expr` as text with surrounding whitespace stripped; empty text becomes null."""
    # one reference to `expr`: polars does not share repeated sub-expressions inside when/then
    return expr.cast(pl.String).str.strip_chars().replace("", None)


_CHUNK = 50_000
"""Values handed to Python at a time by `_per_unique` (bounds the Python objects alive)."""


def _per_unique(values: pl.Series, fn: Callable[[str], object], return_dtype: pl.DataType) -> pl.Series:
    """`fn` of every value of `values`, in order, as a Series of `return_dtype`, calling `fn`
    once per distinct value; those go to Python `_CHUNK` at a time, so a million distinct
    values never exist as Python strings at once."""
    uniq = values.unique()
    parts = [pl.Series([fn(v) for v in uniq.slice(i, _CHUNK).to_list()], dtype=return_dtype)
             for i in range(0, len(uniq), _CHUNK)]
    out = pl.concat(parts) if parts else pl.Series([], dtype=return_dtype)
    return values.replace_strict(uniq, out, default=None, return_dtype=return_dtype)


def on_unique(expr: pl.Expr, fn: Callable[[pl.Expr], pl.Expr], return_dtype: pl.DataType) -> pl.Expr:
    """Evaluate the polars expression `fn(pl.col(...))` once per distinct non-null value of
    `expr` and put the results back with a hash lookup (for costly expressions over columns
    with few distinct values, such as country names). Nulls stay null."""

    def batch(s: pl.Series) -> pl.Series:
        uniq = s.drop_nulls().unique()
        out = uniq.to_frame("v").select(fn(pl.col("v")).cast(return_dtype)).to_series()
        return s.replace_strict(uniq, out, default=None, return_dtype=return_dtype)

    return expr.map_batches(batch, return_dtype=return_dtype, is_elementwise=True)


# -------------------------------------------------------------------------------------- country

COUNTRY_ALIASES: dict[str, str] = {
    # United Kingdom and United States (Northwind `UK`/`USA`, punctuated and informal spellings)
    "UK": "GB", "U.K.": "GB", "England": "GB", "Scotland": "GB", "Wales": "GB",
    "Northern Ireland": "GB", "Great Britain": "GB", "Britain": "GB",
    "U.S.A.": "US", "U.S.": "US", "United States of America": "US",
    # former and informal English names
    "Holland": "NL", "Russia": "RU", "Ivory Coast": "CI", "Macau": "MO", "Brunei": "BN",
    "Cape Verde": "CV", "Swaziland": "SZ", "Burma": "MM", "East Timor": "TL", "Vatican": "VA",
    "Vatican City": "VA", "Micronesia": "FM", "Palestine": "PS", "Palestinian Territory": "PS",
    "Palestinian Territories": "PS", "Turkey": "TR", "Macedonia": "MK", "Bosnia": "BA",
    "UAE": "AE", "DR Congo": "CD", "Congo-Kinshasa": "CD",
    "Democratic Republic of the Congo": "CD", "Congo-Brazzaville": "CG",
    "Falkland Islands": "FK", "Sint Maarten": "SX", "Libyan Arab Jamahiriya": "LY",
    "Slovak Republic": "SK", "Kyrgyz Republic": "KG", "US Virgin Islands": "VI",
    "United States Virgin Islands": "VI", "Pitcairn Islands": "PN", "Saint Helena": "SH",
    # Faker's country list (datablist sample files)
    "Antarctica (the territory South of 60 deg S)": "AQ", "Bouvet Island (Bouvetoya)": "BV",
    "British Indian Ocean Territory (Chagos Archipelago)": "IO",
    "Slovakia (Slovak Republic)": "SK", "Svalbard & Jan Mayen Islands": "SJ",
    # local names common in Dutch/German sheets
    "Nederland": "NL", "Deutschland": "DE", "Belgie": "BE",
    # European countries' own names (accents and case are folded by `country_key`)
    "Österreich": "AT", "Schweiz": "CH", "Suisse": "CH", "Svizzera": "CH", "España": "ES",
    "Italia": "IT", "Belgique": "BE", "Polska": "PL", "Česko": "CZ", "Česká republika": "CZ",
    "Slovensko": "SK", "Magyarország": "HU", "Sverige": "SE", "Norge": "NO", "Danmark": "DK",
    "Suomi": "FI", "Éire": "IE", "Eesti": "EE", "Latvija": "LV", "Lietuva": "LT",
    "Hrvatska": "HR", "Slovenija": "SI", "Srbija": "RS", "România": "RO", "Hellas": "GR",
    "Ελλάδα": "GR", "Ísland": "IS",
    # neighbours' names in Dutch and German
    "Duitsland": "DE", "Frankrijk": "FR", "Engeland": "GB", "Spanje": "ES", "Italië": "IT",
    "Oostenrijk": "AT", "Zwitserland": "CH", "Denemarken": "DK", "Zweden": "SE",
    "Noorwegen": "NO", "Verenigd Koninkrijk": "GB", "Verenigde Staten": "US", "Tsjechië": "CZ",
    "Luxemburg": "LU", "Lëtzebuerg": "LU", "Oesterreich": "AT",
    "Frankreich": "FR", "Spanien": "ES", "Italien": "IT", "Niederlande": "NL", "Belgien": "BE",
    "Dänemark": "DK", "Schweden": "SE", "Norwegen": "NO", "Polen": "PL", "Tschechien": "CZ",
    "Vereinigtes Königreich": "GB", "Vereinigte Staaten": "US",
}
"""Extra names accepted by the `country` transform (name -> ISO 3166-1 alpha-2). Deliberately
absent: ambiguous names (`Korea`, `Saint Martin`, `Congo` alone maps to CG as pycountry says) and
any fuzzy matching: a wrong guess is worse than an `invalid-country` issue. Templates extend it
with the `aliases` option."""

ALPHA2: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)
"""The ISO 3166-1 alpha-2 codes known to pycountry (officially assigned, 249)."""


NO_VALUE = r"(?i)^\s*(?:#?n/?a|n\.a\.?|<na>|nan|none|null|nil|unknown|n\.?v\.?t\.?|tbd|-+|\?+)\s*$"
"""A cell text people type for "no value": pandas' default `na_values` (`N/A`, `NA`, `NULL`,
`None`, `NaN`, `<NA>`, `#N/A`), plus `n.a.`, `nil`, `unknown`, `tbd`, Dutch `n.v.t.`, dashes and
question marks. bulkcrm reads none of them as empty unless the template lists it in
`null_tokens`; `clean_country` reads none but a plain `NA` (Namibia) as a country."""


def country_key(expr: pl.Expr) -> pl.Expr:
    """Return the lookup key of a country spelling: accents folded, case folded, `.`/`'`
    dropped, `&` read as `and`, `St` as `Saint`, other punctuation as one space, a leading
    `the` removed. `Côte d'Ivoire`, `cote divoire` and `COTE D'IVOIRE` share one key."""
    s = expr.cast(pl.String).str.normalize("NFKD").str.replace_all(r"\p{M}", "")
    s = s.str.to_lowercase().str.replace_all(r"[.'’]", "").str.replace_all("&", " and ")
    s = s.str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()
    return s.str.replace_all(r"\bst\b", "saint").str.replace(r"^the ", "")


def _keys(names: list[str]) -> list[str]:
    return pl.select(country_key(pl.lit(pl.Series(names, dtype=pl.String)))).to_series().to_list()


@cache
def _base_country_table() -> tuple[tuple[str, str], ...]:
    names, codes = [], []
    for c in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            if value := getattr(c, attr, None):
                names.append(value)
                codes.append(c.alpha_2)
    names += list(COUNTRY_ALIASES)
    codes += list(COUNTRY_ALIASES.values())
    return tuple(zip(_keys(names), codes))


def word_order_key(key: pl.Expr) -> pl.Expr:
    """A `country_key` with its words sorted and `the` left out: the key of every order of the
    same words (`korea republic of`, `republic of korea`; `south korea`, `korea south`)."""
    words = key.str.split(" ").list.eval(pl.element().filter(pl.element() != "the"))
    return words.list.sort().list.join(" ")


def _word_order_table(table: dict[str, str]) -> dict[str, str]:
    """`{word_order_key: alpha-2}` of `table`'s keys, leaving out a word set two codes share."""
    return dict(_word_order_items(tuple(table.items())))


@cache  # the same table for every template without aliases
def _word_order_items(items: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    keys = pl.select(word_order_key(pl.lit(pl.Series([k for k, _ in items], dtype=pl.String)))).to_series()
    out: dict[str, str | None] = {}
    for k, (_, code) in zip(keys.to_list(), items):
        out[k] = code if out.get(k, code) == code else None
    return tuple((k, c) for k, c in out.items() if c)


def country_table(aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the lookup table `{country_key(name): alpha-2}` (pycountry names + aliases).

    Args:
        aliases: extra `{name: code}` pairs from the template; they win over built-in names.

    Raises:
        TemplateError: an alias maps to a code that is not ISO 3166-1 alpha-2.
    """
    table = dict(_base_country_table())
    if aliases is not None and not isinstance(aliases, Mapping):
        raise TemplateError("country aliases are a mapping of name: ISO 3166-1 alpha-2 code, e.g. "
                            f"{{aliases: {{Holland: NL}}}}, not {aliases!r}", key="aliases")
    if aliases:
        bad = {k: v for k, v in aliases.items() if str(v).upper() not in ALPHA2}
        if bad:
            raise TemplateError(f"country aliases must map to ISO 3166-1 alpha-2 codes: {bad}",
                                key="aliases")
        codes = [str(v).upper() for v in aliases.values()]
        table.update(zip(_keys([str(k) for k in aliases]), codes))
    return table


def clean_country(expr: pl.Expr, *, aliases: Mapping[str, str] | None = None) -> pl.Expr:
    """Return the ISO 3166-1 alpha-2 code (upper case) for a code or English name.

    Accepts alpha-2 in any case (`us`; `NA` is Namibia), alpha-3, pycountry's name,
    official_name and common_name, and `COUNTRY_ALIASES` (+ `aliases`), each also with its
    words in another order (`word_order_key`): ISO 3166-1 inverts names at a comma (`Korea,
    Republic of`), sheets write `Republic of Korea` or `Korea, South`. Anything else comes
    back trimmed and unchanged, for the `country` check to flag, as does a no-value word
    (`NO_VALUE`: `n.a.`, `<NA>`) whose letters spell the code NA (Namibia: `NA` itself is it).
    """
    table = country_table(aliases)
    words = _word_order_table(table)

    def clean(e: pl.Expr) -> pl.Expr:
        v, key = trimmed(e), country_key(trimmed(e))
        code = pl.coalesce(key.replace_strict(table, default=None, return_dtype=pl.String),
                           word_order_key(key).replace_strict(words, default=None, return_dtype=pl.String))
        # `n.a.`, `<NA>`: no value, not Namibia (whose code is NA, written so)
        blank = v.str.contains(NO_VALUE) & ~v.str.contains(r"(?i)^na$")
        return pl.when(blank).then(v).otherwise(pl.coalesce(code, v))

    return on_unique(expr.cast(pl.String), clean, pl.String)


@cache
def country_guesses(value: str, n: int = 3) -> tuple[tuple[str, str], ...]:
    """Up to `n` (alpha-2, name) countries a spelling the table does not know may mean: names
    holding it as a word (`Korea`: both Koreas), then close spellings, closest first
    (`Untied States`, difflib; also in any word order, `Rep. of Korea`), for the `country`
    check's hint. Longer names only: a two-letter code guesses nothing."""
    key = pl.select(country_key(pl.lit(value, pl.String))).item() or ""
    if len(key) < 4:
        return ()
    table = dict(_base_country_table())
    words = [k for k in table if len(k) > 3 and re.search(rf"\b{re.escape(key)}\b", k)]
    # close spellings, in the words' order and in any order (`rep of korea`: `korea, republic of`)
    ordered, by_words = pl.select(word_order_key(pl.lit(key, pl.String))).item(), _word_order_table(table)
    scored = [(difflib.SequenceMatcher(None, k, key).ratio(), k) for k in
              difflib.get_close_matches(key, [k for k in table if len(k) > 3], n=n, cutoff=0.8)]
    scored += [(difflib.SequenceMatcher(None, k, ordered).ratio(), k) for k in
               difflib.get_close_matches(ordered, list(by_words), n=n, cutoff=0.8)]
    close = [k for _, k in sorted(scored, key=lambda sk: -sk[0])]
    table |= {k: c for k, c in by_words.items() if k not in table}
    codes = list(dict.fromkeys(table[k] for k in words + close))[:n]
    return tuple((c, _country_names()[c]) for c in codes)


@cache
def _country_names() -> dict[str, str]:
    return {c.alpha_2: getattr(c, "common_name", None) or c.name for c in pycountry.countries}


def render_country(expr: pl.Expr, *, render: str = "alpha_2") -> pl.Expr:
    """Render an alpha-2 code as `alpha_2` (as is), `alpha_3` or `name` (pycountry common name,
    else name: `DE` -> `Germany`, `TW` -> `Taiwan`); `clean_country` reads each back.
    Unknown codes pass through.

    Raises:
        TemplateError: `render` is not one of alpha_2, alpha_3, name.
    """
    if render == "alpha_2":
        return expr
    if render == "alpha_3":
        table = {c.alpha_2: c.alpha_3 for c in pycountry.countries}
    elif render == "name":
        table = _country_names()
    else:
        raise TemplateError(f"country render must be alpha_2, alpha_3 or name, not {render!r}",
                            key="render")
    return expr.replace_strict(table, default=expr, return_dtype=pl.String)


def region_code(region: pl.Expr | None, default_region: str | None) -> pl.Expr:
    """Return the row's phone region: `region` read as a country (code or name) when it is
    ISO 3166-1 alpha-2, else `default_region`, else null.

    Raises:
        TemplateError: `default_region` is given but is not an alpha-2 code.
    """
    if default_region is not None and default_region.upper() not in ALPHA2:
        raise TemplateError(f"default_region must be an ISO 3166-1 alpha-2 code such as NL, "
                            f"not {default_region!r}", key="default_region")
    default = pl.lit(default_region.upper() if default_region else None, dtype=pl.String)
    if region is None:
        return default
    code = clean_country(region)
    return pl.when(code.is_in(sorted(ALPHA2))).then(code).otherwise(default)


# ---------------------------------------------------------------------------------------- phone

INTERNATIONAL = r"^\+[\d\s().\-/]{7,}$"
"""Numbers already written in international form take the vectorised fast path."""

_S = r"[\s\-./()]*"  # the separators people type between digits
PLACEHOLDER_PHONE = (r"^\s*\+?" + _S + r"(?:\d" + _S + r"){0,3}?(?:"
                     + "|".join(f"(?:{d}{_S}){{6,}}" for d in range(10))
                     + "|(?:0" + _S + ")?" + "".join(f"{d}{_S}" for d in "123456789") + "(?:0" + _S + r")?)$")
"""A placeholder typed where a phone number belongs: after at most 3 digits (a country code, a
trunk 0), six or more of one digit (`0000000000`, `000-000-0000`, `+31 0000000000`) or the
run 123456789 (`(123) 456-7890`, `0123456789`). phonenumbers takes many of these as possible
numbers (it checks lengths), so they would be sent, and match each other's records; those it does
not take as valid (`not_a_number`) `clean_phone` makes null (not sent, never an identifier) and
`validate` warns of."""
DATE_TEXT = r"^\s*\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*$"
"""An ISO 8601 date (and time) where a phone number belongs: a workbook's date cell as read (Excel
turned a typed `1-31` into a date), never a number; `clean_phone` makes it null, `validate` warns."""
RENDERED_NUMBER = (r"^\s*(?:[$€£¥]\s*(\d{1,3}(?:,\d{3})+|\d{6,})(?:\.0{1,4})?"
                   r"|(\d{1,3}(?:,\d{3})+)(?:\.0{1,4})?|(\d{6,})\.0{1,4})\s*$")
"""A number as a spreadsheet shows it under a number format, where a phone number belongs: an
integer Excel stores, shown with thousands separators (`#,##0`: `2,234,274,047`), one to four
zero decimals (`0.00`: `2234274047.00`) or a currency sign; plain digits do not match. Its
digits (the one group that matched, without the commas) are the number the cell holds, which
`clean_phone` reads as the phone number a General-format cell gives; a leading + or 0 may
have been lost (`validate` warns). Dotted phones (`020.555.0101`, `555.0000`) do not match."""
FEW_DIGITS = r"^(?:\s*[^\d\s]\D*|\D*\d\D*(?:\d\D*)?)$"
"""A phone cell with fewer than three digits, not blank (`(2  )    -`, `n/a`, `see notes`,
`x12`): no number, not even a short code (112, 711 are three), so it is not sent."""
NO_PHONE = f"(?:{PLACEHOLDER_PHONE})|(?:{DATE_TEXT})|(?:{FEW_DIGITS})"
"""What `clean_phone` looks at before it makes a value null (`not_a_number`): a placeholder
(`PLACEHOLDER_PHONE`), a date (`DATE_TEXT`) or fewer than three digits (`FEW_DIGITS`)."""
NO_NUMBER_CANDIDATE = f"{NO_PHONE}|(?:{RENDERED_NUMBER})"
"""A phone item that may be no number (`NO_PHONE`) once read as the cell stores it
(`RENDERED_NUMBER`, `as_stored`): one regex pass finds the few to look at."""
_SEP = "\x1f"


def parse_phone(value: str, region: str | None) -> str | None:
    """Return the E.164 form (ITU-T E.164) of one number, or None when it cannot be trusted.

    Uses `phonenumbers.parse` and `is_possible_number_with_reason` (a number possible only as a
    local number, without its area code, is not trusted). A negative number (`-2237`,
    `FORMULA_RESULT`) is none. An extension (`x123`, `ext. 12`) is
    dropped: E.164 has no place for it; the number must then be valid (`is_valid_number`), so
    a typo such as `020-62312x9` is not read as `020-62312` ext. 9. A letter after the first
    digit is refused: phonenumbers would drop it (`020-623l298`, an l for a 1) or read a
    vanity spelling (`010-41CALL9`), either way another number than the one meant; a label
    before the number (`Tel: 020 …`) is fine. A number whose country code phonenumbers found
    only by reading leading digits without `+`/IDD (`31612345678` with region NL) is refused:
    the `+` may have been lost (BR-05), and the country must not be guessed silently; except
    where the region's own national prefix is its country code (`1-800-942-2677`, region US).
    A possible number that is not valid (`555-8787` in AU, read as `+615558787`) is sent, as
    phonenumbers' metadata may lack a new range; `validate` warns (`unlikely_phone`).
    """
    num = _trusted_number(value, region)
    return None if num is None else phonenumbers.format_number(num, PhoneNumberFormat.E164)


def _trusted_number(value: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """`parse_phone`'s reading of `value` (its rules), or None when it cannot be trusted."""
    if _LETTER.search(value) and _LETTER_AMONG_DIGITS.search(_EXTENSION.sub("", value)):
        return None
    if re.match(FORMULA_RESULT, value.strip()):  # -2237: a sum, no number (validate: row invalid)
        return None
    try:
        num = phonenumbers.parse(value, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return None
    if num.country_code_source == CountryCodeSource.FROM_NUMBER_WITHOUT_PLUS_SIGN and \
            not _trunk_is_country_code(num, region):
        return None
    # a local number (no area code, `555-8787`) has no E.164 form: one would be another number
    if phonenumbers.is_possible_number_with_reason(num) != ValidationResult.IS_POSSIBLE or \
            (num.extension and not phonenumbers.is_valid_number(num)):
        return None
    return num


def unlikely_phone(value: str, region: str | None) -> str | None:
    """The E.164 form `parse_phone` sends for `value` when `value` is written in national form
    (read with `region`, ISO 3166-1 alpha-2, as default; no `+` or international prefix) and
    is a possible number but not a valid one (phonenumbers' metadata: `is_valid_number`, ITU-T
    E.164 numbering plans): `555-8787` in AU becomes `+615558787`, a number of no AU range, most
    likely a local number typed without its area code (`validate` warns, `unlikely-phone`).
    None otherwise, also for a number `parse_phone` does not send as E.164. Not an error:
    phonenumbers' metadata may lack a range newly in use, so such a number is still sent."""
    num = _trusted_number(value, region)
    if num is None or num.country_code_source in (CountryCodeSource.FROM_NUMBER_WITH_PLUS_SIGN,
                                                   CountryCodeSource.FROM_NUMBER_WITH_IDD):
        return None
    return None if _valid_in(num, region) else phonenumbers.format_number(num, PhoneNumberFormat.E164)


def _valid_in(num: phonenumbers.PhoneNumber, region: str | None) -> bool:
    """Whether `num` is a valid number (phonenumbers' metadata): of `region` first (one region's
    patterns), then of any region of its country code (a Jersey number 01534 … read in GB)."""
    return phonenumbers.is_valid_number_for_region(num, region) or phonenumbers.is_valid_number(num)


UNLIKELY_PHONE_RULE = "a valid number of its country (ITU-T E.164 numbering plan, phonenumbers' metadata)"
"""The rule an `unlikely-phone` warning names."""


def unlikely_hint(region: str | None) -> str:
    """The fix an `unlikely-phone` warning suggests for a number read in `region` (ISO 3166-1
    alpha-2), with that region's example number (phonenumbers' metadata)."""
    return (f"not a valid {region} number: is the area code missing (or a digit)? write the number in full, such as "
            f"{_example_phone(region)} (if the number is right, in a range newer than phonenumbers' metadata, "
            "ignore this warning)")


def unlikely_e164(number: str, region: str) -> bool:
    """Whether `number`, the E.164 form (`+615558787`) a national number of `region` (ISO 3166-1
    alpha-2) became, is no valid number (phonenumbers' `is_valid_number`, read from its digits
    without a second parse; the row's own region first, then any of its country code's)."""
    code = phonenumbers.country_code_for_region(region)
    nsn = number[1 + len(str(code)):]
    zeros = len(nsn) - len(nsn.lstrip("0"))  # an Italian-style leading 0 is part of the number
    num = phonenumbers.PhoneNumber(country_code=code, national_number=int(nsn or 0),
                                   italian_leading_zero=True if zeros else None,
                                   number_of_leading_zeros=zeros if zeros > 1 else None)
    return not _valid_in(num, region)


def _unlikely_e164_key(key: str) -> bool:
    region, number = key.split(_SEP, 1)
    return unlikely_e164(number, region)


def _unlikely_key(key: str) -> str | None:
    """`unlikely_phone` of a `region` + `_SEP` + `value` key (`_per_unique`)."""
    region, value = key.split(_SEP, 1)
    return unlikely_phone(value, region or None)


def unlikely_phones(values: pl.Series, regions: pl.Series) -> pl.Series:
    """`unlikely_phone` of each (value, region) pair (pl.String Series of one length), as a
    pl.String Series (null: no warning), called once per unique pair (`_per_unique`)."""
    keys = pl.select(pl.concat_str([pl.lit(regions).fill_null(""), pl.lit(_SEP), pl.lit(values)])).to_series()
    return _per_unique(keys, _unlikely_key, pl.String)


def unlikely_sent(numbers: pl.Series, regions: pl.Series) -> pl.Series:
    """`unlikely_e164` of each (E.164 number, region) pair (pl.String Series of one length,
    no nulls), as a pl.Boolean Series, called once per unique pair (`_per_unique`)."""
    keys = pl.select(pl.concat_str([pl.lit(regions), pl.lit(_SEP), pl.lit(numbers)])).to_series()
    return _per_unique(keys, _unlikely_e164_key, pl.Boolean)


EXTENSION_MARK = r"(?i)(?:ext(?:ension)?\.?|x|#)\s*\d"
"""An extension's mark and first digit, anywhere in a cell: what every cell holding an
`EXTENSION` holds (a cheap first pass over a whole column)."""
EXTENSION = r"(?i)[\s,;]*(?:ext(?:ension)?\.?|x|#)\s*\d+#?\s*$"
"""A trailing extension of a number (`x123`, `ext. 12`, `#5`): E.164 has none, so
`parse_phone` drops it (validate warns, `phone-extension`)."""
_EXTENSION = re.compile(EXTENSION)
NUMBER_EXTENSION = r"(?i)(\d[\s\-.)]*)[\s,;]*(?:ext(?:ension)?\.?|x|#)\s*\d+#?\s*$"
"""An `EXTENSION` right after a number's last digit (group 1: that digit and what separates
it): what an identifier leaves out (replace with group 1). Never the `x` of a label such as
`Fax 020 555 0102`, whose number it would take for the extension."""
_LETTER = re.compile(r"[^\W\d_]")
_LETTER_AMONG_DIGITS = re.compile(r"\d.*[^\W\d_]")
"""A letter (any script) after the first digit."""


def code_without_plus(value: str, region: str | None) -> tuple[str, str, int] | None:
    """(the number read as a national one of `region`, read with a `+`, the country code) when
    `value` is digits without `+` or `region`'s national prefix that begin with its country code
    and both readings are numbers: `493512345678` in DE is +49 4935 12345678 (what
    `parse_phone` sends: a German national number may be that long, and a numeric cell loses
    the 0 of `04961 …`), or +49 351 2345678 typed without its `+`. Only the person can tell
    (`validate` warns, `ambiguous-phone`); None otherwise."""
    prefix, typed = _national_prefix(region), value.strip()
    if not prefix or typed.startswith((prefix, "+")) or not re.fullmatch(r"[\d\s.\-]{8,}", typed):
        return None
    digits, code = re.sub(r"\D", "", typed), phonenumbers.country_code_for_region(region)
    national = parse_phone(typed, region) if code and digits.startswith(str(code)) else None
    if national is None:
        return None
    try:
        plus = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    return (national, phonenumbers.format_number(plus, PhoneNumberFormat.E164), code) \
        if phonenumbers.is_valid_number(plus) else None


@cache
def _national_prefix(region: str | None) -> str | None:
    """The national (trunk) prefix of `region` (ISO 3166-1 alpha-2; phonenumbers' metadata):
    `0` in DE and NL, `1` in US; None when it has none or is unknown."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region) if region else None
    return meta.national_prefix if meta is not None else None


def _trunk_is_country_code(num: phonenumbers.PhoneNumber, region: str | None) -> bool:
    """True where the row's own national prefix is its country code (the North American `1`:
    `1-800-942-2677` is the US national form, not a guessed country)."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region) if region else None
    return bool(meta and meta.country_code == num.country_code
                and meta.national_prefix == str(num.country_code))


def _parse_key(key: str) -> str | None:
    region, value = key.split(_SEP, 1)
    return parse_phone(value, region or None)


def clean_phone(expr: pl.Expr, *, region: pl.Expr | None = None,
                default_region: str | None = None) -> pl.Expr:
    """Return phone numbers as E.164 `+<digits>` where possible, else trimmed and unchanged;
    null for a placeholder phonenumbers does not take as valid (`PLACEHOLDER_PHONE`:
    `000-000-0000`) or a date (`DATE_TEXT`), which are no numbers (`not_a_number`). A number
    a spreadsheet's format rendered (`RENDERED_NUMBER`: `2,234,274,047`) is read as the digits
    the cell stores (`as_stored`), as a General-format cell gives them.

    Fast path (vectorised): a value matching `^\\+[\\d\\s().\\-/]{7,}$` without a `(0)` trunk
    prefix becomes `+` and its digits when those are 8..15 digits and do not start with 0
    (so E.164 values, checked first, stay as they are).
    The rest goes to `parse_phone` once per unique (value, region) pair.

    Args:
        expr: the phone column (pl.String).
        region: expr giving each row's country (alpha-2 or a name `clean_country` reads);
            rows without a valid one use `default_region`.
        default_region: ISO 3166-1 alpha-2 used when the row has no region (e.g. "NL").

    Raises:
        TemplateError: `default_region` is not an alpha-2 code (at expression build time).
    """
    row_region = pl.lit(None, pl.String) if region is None else region.cast(pl.String)
    batch = _clean_phones(region_code(pl.col("r"), default_region))
    return pl.struct(expr.cast(pl.String).alias("v"), row_region.alias("r")).map_batches(
        batch, return_dtype=pl.String, is_elementwise=True)


def e164_pattern(min_digits: int) -> str:
    """Regex of a number in E.164 form (ITU-T E.164): `+`, a country code in use (phonenumbers'
    metadata, non-geographic ones such as 800 included), `min_digits` to 15 digits in all."""
    by_length: dict[int, list[str]] = {}
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        by_length.setdefault(len(str(code)), []).append(str(code))
    parts = [rf"(?:{'|'.join(codes)})\d{{{min_digits - n},{15 - n}}}" for n, codes in sorted(by_length.items())]
    return rf"^\+(?:{'|'.join(parts)})$"


E164 = e164_pattern(8)
"""A number already in E.164 form with 8 or more digits: what the cleaning's fast paths keep
as it is (`+999 …`, a country code not in use, goes to phonenumbers, which keeps it as typed)."""


def _clean_phones(region: pl.Expr) -> Callable[[pl.Series], pl.Series]:
    """`clean_phone`'s batch function over a struct {v: number, r: row region}, eager so each
    step only touches the rows still open: values that are E.164 once their ASCII spaces go
    are done; the rest are trimmed; E.164 values are kept; the fast path turns the other
    `INTERNATIONAL` ones into `+digits`; only the rest gets its region (`region`, an expr
    over `r`) and goes to `parse_phone`, once per unique (region, number) pair."""

    def batch(s: pl.Series) -> pl.Series:
        # E.164 once ASCII spaces are dropped (`+44 20 7946 0958`, or E.164 already): what the
        # trimmed value gives too, sooner; the fast path's `+digits` for the spaced ones; a
        # placeholder is no number (null)
        v = pl.col("v")
        rows = _without_non_numbers(s.struct.unnest().with_row_index("__i"), region).with_columns(
            v.str.replace_all(" ", "", literal=True).alias("__x"))
        todo = rows.filter(~pl.col("__x").str.contains(E164))  # nulls drop
        if not todo.height:
            return rows["__x"]
        todo = todo.select("__i", trimmed(pl.col("v")).alias("v"), "r").with_columns(
            pl.col("v").str.contains(E164).alias("__ok"))  # blank: null
        done = pl.concat([todo.filter(pl.col("__ok").fill_null(True)).select("__i", "v"),
                          _fast_or_parsed(todo.filter(~pl.col("__ok")), region)])
        return rows["__x"].scatter(done["__i"], done["v"])

    return batch


def as_stored(expr: pl.Expr) -> pl.Expr:
    """Phone cells (pl.String) with a number a format rendered (`RENDERED_NUMBER`:
    `2,234,274,047`, `2234274047.00`) as the digits the cell stores (`2234274047`); the rest
    unchanged."""
    digits = pl.coalesce(expr.str.extract(RENDERED_NUMBER, g) for g in (1, 2, 3))
    return pl.coalesce(digits.str.replace_all(",", "", literal=True), expr)


def _without_non_numbers(rows: pl.DataFrame, region: pl.Expr) -> pl.DataFrame:
    """`rows` (`__i`: 0.., `v`, `r`) with `v` as the cell stores it where a number format
    rendered it (`RENDERED_NUMBER`: `2,234,274,047` -> `2234274047`), then null where it is
    no number (`not_a_number`): one regex finds the few candidates, phonenumbers decides each
    once per (region, value)."""
    v = pl.col("v")
    cand = rows.filter(v.str.contains(NO_NUMBER_CANDIDATE))
    if not cand.height:
        return rows
    cand = cand.with_columns(as_stored(v).alias("v"))
    no = cand.filter(v.str.contains(NO_PHONE))
    if no.height:
        keys = no.select(pl.concat_str([region.fill_null(""), pl.lit(_SEP), v]).alias("k"))["k"]
        drop = no["__i"].filter(_per_unique(keys, _not_a_number_key, pl.Boolean))
        cand = cand.with_columns(pl.when(pl.col("__i").is_in(drop.implode())).then(None).otherwise(v).alias("v"))
    return rows.with_columns(rows["v"].clone().scatter(cand["__i"], cand["v"]))


def _not_a_number_key(key: str) -> bool:
    region, value = key.split(_SEP, 1)
    return not_a_number(value, region or None)


def not_a_number(value: str, region: str | None) -> bool:
    """Whether a phone cell holds no number: a date (`DATE_TEXT`), fewer than three digits
    (`FEW_DIGITS`), or a placeholder
    (`PLACEHOLDER_PHONE`: `000-000-0000`) that phonenumbers does not take as a valid number of
    `region` (ISO 3166-1 alpha-2; or of its own country code): `+48 12 345 67 89`, a Kraków
    number, and `+1 888 888 8888`, a toll-free one, are numbers."""
    if re.match(DATE_TEXT, value) or re.match(FEW_DIGITS, value):
        return True
    if not re.match(PLACEHOLDER_PHONE, value):
        return False
    try:
        return not phonenumbers.is_valid_number(phonenumbers.parse(value, region))
    except phonenumbers.NumberParseException:
        return True


def _fast_or_parsed(todo: pl.DataFrame, region: pl.Expr) -> pl.DataFrame:
    """`__i` and the clean `v` of the numbers (`__i`, `v`, `r`) not yet settled: the fast path
    for `INTERNATIONAL` ones, `parse_phone` once per unique (region, number) for the rest."""
    v, digits = pl.col("v"), pl.col("v").str.replace_all(r"\D", "")
    fast = v.str.contains(INTERNATIONAL) & ~v.str.contains(r"\(0\)") & (pl.lit("+") + digits).str.contains(E164)
    todo = todo.with_columns(fast.alias("__fast"), (pl.lit("+") + digits).alias("__e164"))
    slow = todo.filter(~pl.col("__fast"))
    done = todo.filter("__fast").select("__i", pl.col("__e164").alias("v"))
    if slow.height:
        keys = slow.select(pl.concat_str([region.fill_null(""), pl.lit(_SEP), v]).alias("k"))["k"]
        parsed = _per_unique(keys, _parse_key, pl.String)
        done = pl.concat([done, slow.select("__i", pl.coalesce(parsed, v).alias("v"))])
    return done


def phone_identifier(expr: pl.Expr, *, region: pl.Expr | None = None,
                     default_region: str | None = None) -> pl.Expr:
    """Return the phone identifier: E.164 when `clean_phone` succeeds, else the digits with a
    leading `+` kept (so `06-1234` and `06 1234` still compare equal); null without digits.
    A trailing extension (`NUMBER_EXTENSION`: `x90482`) is no part of the number compared: it
    is left out first, so `(899) 254-7369 x90482` is the `(899) 254-7369` a record holds."""
    cleaned = clean_phone(expr.str.replace(NUMBER_EXTENSION, "${1}"), region=region, default_region=default_region)
    return cleaned.map_batches(_phone_key, return_dtype=pl.String, is_elementwise=True)


def _phone_key(s: pl.Series) -> pl.Series:
    """`phone_identifier` of cleaned numbers (an extension after a number already left out):
    E.164 values (digits after one `+`, nearly all) as they are; of the rest (kept as typed)
    the digits and a leading `+`; null without a digit, or for an extension alone (`x12`)."""
    odd = s.str.contains(r"[^\d+]|.\+") | (s.str.len_bytes() < 2)
    if not odd.any():
        return s
    kept = s.filter(odd).str.replace(f"^{EXTENSION}", "")
    kept = kept.str.replace_all(r"[^\d+]", "").str.replace_all(r"(.)\++", "${1}")  # one leading + only
    return s.scatter(odd.arg_true(), kept.replace(["", "+"], None))


# ---------------------------------------------------------------------------------------- email


def _email_ok(value: str) -> bool:
    try:
        email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_EMAIL_FAST = (rf"^[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@"
               r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
"""Plain ASCII addresses email-validator always accepts: a dot-atom local part (RFC 5322
§3.2.3), hostname labels of letters, digits and inner hyphens of at most 63 characters
(RFC 1035 §2.3.1) and a top-level domain of letters. Together with `_email_fast`'s extra
conditions (no `--` in the domain: Punycode and R-LDH labels need IDNA; no special-use
domain; at most 254 octets, RFC 5321 §4.5.3.1.3) every such address passes
`email_validator.validate_email(..., check_deliverability=False)`."""


def _email_fast(expr: pl.Expr) -> pl.Expr:
    """True where `expr` is an address the vectorised fast path accepts (see `_EMAIL_FAST`)."""
    special = "|".join(re.escape(d) for d in email_validator.SPECIAL_USE_DOMAIN_NAMES)
    dashes = pl.when(expr.str.contains("--", literal=True)).then(expr)  # the regex only for these
    return (expr.str.contains(_EMAIL_FAST) & (expr.str.len_bytes() <= 254)
            & ~dashes.str.contains("@.*--").fill_null(False)
            & ~expr.str.contains(rf"(?i)[.@](?:{special})$"))


def check_email(expr: pl.Expr) -> pl.Expr:
    """Return True where the address passes email-validator's syntax check (RFC 5321/5322, no
    DNS lookup: `check_deliverability=False`); null -> True.

    Plain ASCII addresses (`_EMAIL_FAST`) are accepted by a vectorised regex; only the rest
    (international, quoted, Punycode or malformed) goes to email-validator, once per unique
    value."""
    return expr.map_batches(_check_emails, return_dtype=pl.Boolean, is_elementwise=True)


def _check_emails(s: pl.Series) -> pl.Series:
    """`check_email` of a batch: the fast path once over all values, `_email_ok` once per
    unique value it leaves open."""
    rows = s.cast(pl.String).to_frame("v").select(_email_fast(pl.col("v")).alias("ok"), "v")
    ok = rows["ok"]
    slow = rows.with_row_index("__i").filter(~pl.col("ok"))  # nulls drop
    if slow.height:
        ok = ok.scatter(slow["__i"], _per_unique(slow["v"], _email_ok, pl.Boolean))
    return ok.fill_null(True)


# ------------------------------------------------------------------------------------ date-time

_AWARE = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z")
_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
"""RFC 3339 `date-time` (crm-api.md §1); the date itself is checked by parsing."""


def clean_datetime(expr: pl.Expr, *, dayfirst: bool = False, time_zone: str = "UTC") -> pl.Expr:
    """Return RFC 3339 `YYYY-MM-DDTHH:MM:SS+00:00` in UTC (crm-api.md §1), vectorised.

    Reads ISO 8601 dates and date-times: `2024-01-31`, `2024-01-31 10:15`,
    `2024-01-31T10:15:00Z`, `...+02:00`/`+0200`, fractions (dropped). With `dayfirst`, also
    `DD-MM-YYYY`, `DD/MM/YYYY`, `DD.MM.YYYY` (+ time). A value without offset is read in
    `time_zone` (IANA name, default UTC; a time skipped by DST stays unchanged). Anything else
    comes back trimmed and unchanged for the `datetime` check to flag.

    Raises:
        TemplateError: `time_zone` is not an IANA time zone name.
    """
    _check_zone(time_zone)
    v = trimmed(expr)
    s = v
    if dayfirst:
        s = s.str.replace(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\b", "${3}-${2}-${1}")
    s = s.str.replace(r"^(\d{4}-\d{1,2}-\d{1,2})[ T]+", "${1}T").str.replace(r"[Zz]$", "+00:00")
    s = s.str.replace(r"\s+([+-]\d{2}:?\d{2})$", "${1}")
    parsed = [s.str.to_datetime(f, time_unit="us", strict=False) for f in _AWARE]
    parsed += [s.str.to_datetime(f, time_unit="us", strict=False)
               .dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
               .dt.convert_time_zone("UTC") for f in _NAIVE]
    return pl.coalesce(pl.coalesce(parsed).dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"), v)


def _check_zone(time_zone: str) -> None:
    """Raise TemplateError unless `time_zone` is an IANA time zone name (zoneinfo)."""
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise TemplateError(f"unknown time_zone {time_zone!r}; use an IANA name such as "
                            "Europe/Amsterdam", key="time_zone") from None


def render_datetime(expr: pl.Expr, *, time_zone: str = "UTC") -> pl.Expr:
    """Render an RFC 3339 date-time as the API gives it (crm-api.md §1) in `time_zone`, with
    its offset (`2026-11-02T23:00:00+00:00` -> `2026-11-03T00:00:00+01:00` for
    Europe/Amsterdam), so an export shows the template's local dates; `clean_datetime` reads
    it back to the same instant. UTC (the default) and values that do not parse stay as they are.

    Raises:
        TemplateError: `time_zone` is not an IANA time zone name.
    """
    if time_zone == "UTC":
        return expr
    _check_zone(time_zone)
    parsed = expr.str.replace(r"[Zz]$", "+00:00").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%z", time_unit="us", strict=False)
    return pl.coalesce(parsed.dt.convert_time_zone(time_zone).dt.strftime("%Y-%m-%dT%H:%M:%S%:z"), expr)


def check_datetime(expr: pl.Expr) -> pl.Expr:
    """Return True where the value is an RFC 3339 date-time with a real date; null -> True."""
    s = expr.str.replace(r"[Zz]$", "+00:00")
    parsed = s.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", time_unit="us", strict=False)
    return (expr.str.contains(RFC3339) & parsed.is_not_null()).fill_null(False) | expr.is_null()


# --------------------------------------------------------------------------------- checks

TRUE_WORDS: tuple[str, ...] = ("true", "yes", "y", "1", "ja", "j", "x", "t")
FALSE_WORDS: tuple[str, ...] = ("false", "no", "n", "0", "nee", "f")
"""Cell texts the `boolean` transform reads as True / False (case-insensitive).
`j`, `t`, `f` are extras beyond the usual list (Dutch `j`, SQL exports `t`/`f`)."""

PHONE_TYPES: tuple[str, ...] = ("fax", "mobile", "landline", "work", "home", "other")
"""`phoneNumbers[].phoneType` values the sandbox accepts (crm-api.md §8.2, [SANDBOX])."""

_LABEL = r"[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?"
_HOST = rf"(?:localhost|{_LABEL}(?:\.{_LABEL})+\.?|\[[0-9A-Fa-f:.]+\])"  # name with a dot, IPv6
BARE_HOST = rf"^{_HOST}(?::\d{{1,5}})?(?:[/?#]|$)"
"""A website without its scheme (`www.example.com`, `example.com:8443/path`): what the `url`
transform gives its default scheme; any other text it leaves as typed."""
_URL_OK = rf"^(?i:https?)://{_HOST}(?::\d{{1,5}})?(?:[/?#]\S*)?$"
"""A website: http(s), a host, an optional port, path, query and fragment. No user part
(`user@host`, RFC 3986 §3.2.1): in a website column it is an e-mail address, or a credential.
Other schemes (`ftp://`, `javascript:`) and other text fail it, but only with a warning
(`CHECK_SEVERITY`): the API takes any text as a website (crm-api.md §8.1: a string, its URL
validation undocumented; §5: the sandbox checks none), so a record may hold any, and its
export must import again (a plan leaves out the warning of a value the record holds already,
`plan._held_warnings`)."""


def _ok(expr: pl.Expr, cond: pl.Expr) -> pl.Expr:
    """True where `expr` is null, else `cond` (null counts as failed)."""
    return cond.fill_null(False) | expr.is_null()


def _check_iri(expr: pl.Expr, *, collection: str) -> pl.Expr:
    return _ok(expr, expr.str.contains(rf"^/{pl.escape_regex(collection)}/{IRI_ID}$"))


_E164_ANY = e164_pattern(7)
"""E.164 with 7 or more digits (`+290 1234`, St Helena): what the `phone_e164` check accepts."""
FORMULA_RESULT = r"^-\d[\d\s]*$"
"""A negative number in a phone cell: what a spreadsheet makes of `+1-555-2237` when it reads
it as a sum (`-2237`, leads-100.excel-roundtrip.csv); no phone number, so the row is invalid
(`validate`, rule and hint `CHECK_RULES["phone_formula"]`)."""

CHECKS: dict[str, Callable[..., pl.Expr]] = {
    "email": check_email,
    "url": lambda e: _ok(e, e.str.contains(_URL_OK)),
    "country": lambda e: _ok(e, e.is_in(sorted(ALPHA2))),
    "phone_e164": lambda e: _ok(e, e.str.contains(_E164_ANY)),
    # validate applies it to the numbers that broke E.164 only (`validate._formula_phone`)
    "phone_formula": lambda e: _ok(e, ~e.str.contains(FORMULA_RESULT)),
    "phone_type": lambda e: _ok(e, e.is_in(PHONE_TYPES)),
    "iri": _check_iri,
    "datetime": check_datetime,
    "max_length": lambda e, *, n: _ok(e, e.str.len_chars() <= n),
    "boolean": lambda e: _ok(e, e.cast(pl.String).str.strip_chars().str.to_lowercase()
                             .is_in(TRUE_WORDS + FALSE_WORDS)),
    # no template check: validate applies it to the id and code fields (`validate._line_breaks`)
    "one_line": lambda e: _ok(e, ~e.str.contains(r"[\n\r]")),  # one pass (two literal ones cost twice)
}
"""Validator checks by name: `check(expr, **options) -> pl.Boolean expr`, True where the
value is fine and for null. Run them on cleaned values (`boolean` on the raw text)."""

CHECK_RULES: dict[str, tuple[str, str]] = {
    "email": ("e-mail address syntax (RFC 5322, email-validator)",
              "use an address such as info@example.com"),
    "url": ("http(s) URL with a host and no user part (RFC 3986)",
            "it is kept as typed (the API takes any text as a website, crm-api.md §8.1); for a "
            "website, write a full address such as https://example.com"),
    "country": ("ISO 3166-1 alpha-2", "use a two-letter code such as US, or name it in the transform's aliases "
                "({country: {aliases: {\"Saint Martin\": MF}}})"),
    "phone_e164": ("E.164 phone number (ITU-T E.164)",
                   "write it with + and the country code, such as {example} (the number is "
                   "kept as typed meanwhile; a record keeps the numbers it has unless the field's "
                   "policy is replace)"),
    "phone_formula": ("phone number, not a negative number (a spreadsheet formula's result)",
                      "a spreadsheet read a number such as +1-555-2237 as a sum; restore the number from "
                      "the source, or format the column as Text before typing it"),
    "phone_type": ("phone type (crm-api.md §8.2)", f"use one of {', '.join(PHONE_TYPES)}"),
    "iri": ("IRI /{collection}/{id} (crm-api.md §1)", "use the IRI form /{collection}/{id}"),
    "datetime": ("RFC 3339 date-time (crm-api.md §1)",
                 "use a date such as 2024-01-31 or 2024-01-31T10:15:00+00:00"),
    "max_length": ("maximum length", "shorten it to at most {n} characters"),
    "boolean": ("boolean", f"use one of {', '.join(TRUE_WORDS + FALSE_WORDS)}"),
    "one_line": ("one-line text (an id or code holds no line break)",
                 "remove the line break (Alt+Enter in a spreadsheet cell?); a record would be stored, "
                 "and matched, with it"),
}
"""`(rule, hint)` texts per check. The placeholders `{collection}` (iri), `{n}` (max_length)
and `{example}` (phone_e164) are filled by `check_rule`; `{id}` stays literal (it shows the IRI
form)."""

PHONE_CODE_HINT = ("check its country code and digits: no number is written so (a digit too many or "
                   "too few, or a country code or range not in use); write it such as {example} (the "
                   "number is kept as typed meanwhile; a record keeps the numbers it has unless the "
                   "field's policy is replace)")
"""`phone_e164`'s hint for a value written with `+` (it has a country code already)."""

CHECK_ISSUE_TYPES: dict[str, str] = {
    "email": "invalid-email", "url": "invalid-url", "country": "invalid-country",
    "phone_e164": "invalid-phone", "phone_formula": "invalid-phone", "phone_type": "invalid-phone-type",
    "iri": "invalid-iri",
    "datetime": "invalid-datetime", "max_length": "too-long", "boolean": "invalid-boolean",
    "one_line": "line-break",
}
"""Issue type slug (`vocab.IssueType`) each failed check becomes."""

CHECK_SEVERITY: dict[str, str] = {"url": "warning"}
"""Checks whose failure is a warning, the row valid and the value sent as it is (the API
takes it: `_URL_OK`); every other check's failure is an error."""


def check_rule(name: str, *, region: str | None = None, value: str | None = None,
               **options: object) -> tuple[str, str]:
    """Return `(rule, hint)` of check `name` with its options filled in, e.g.
    `check_rule("iri", collection="users")` -> `("IRI /users/{id} (crm-api.md §1)",
    "use the IRI form /users/{id}")`. Options the texts do not use are ignored. `region`
    (ISO 3166-1 alpha-2, e.g. the template's default_region) picks the example phone number
    (phonenumbers' example for that region; NL's without one). `value`: the failing value; a
    phone number written with `+` gets `PHONE_CODE_HINT` and an example of its country code's
    region (E.164 country codes, phonenumbers' metadata) when it names one.

    Raises:
        KeyError: unknown check name.
    """
    rule, hint = CHECK_RULES[name]
    if name == "phone_e164" and value and value.strip().startswith("+"):
        hint, region = PHONE_CODE_HINT, _code_region(value.strip()) or region
    elif name == "phone_e164" and value and (lost := _lost_plus(value)):
        hint = hint.replace(", such as {example}", f": {lost[0]} if it begins with country code {lost[1]}")
    elif name == "phone_e164" and value and re.search(r"[A-Z]{3}", value):  # 1-800-FLOWERS: a word in capitals
        digits = _vanity_e164(value, region)
        hint = hint.replace("write it with + and the country code, such as {example}",
                            "its letters stand for the keypad's digits: write it in digits with + and the "
                            f"country code{f', {digits}' if digits else ', such as {example}'}")
    elif name == "phone_e164" and value and (ext := _EXTENSION.search(value)) and \
            not _TYPED_LETTER.search(value[:ext.start()]):  # x5610: a mark, no typo
        hint = hint.replace("write it with", f"without its extension ({ext.group(0).strip(' ,;')}) it is no "
                            "valid number either: write it with")
    elif name == "phone_e164" and value and _TYPED_LETTER.search(value):  # 020-623l298
        hint = hint.replace("write it with", "a letter among its digits (l for 1, O for 0?): write it in digits with")
    if name == "url" and value and "@" in value.split("//", 1)[-1].split("/", 1)[0]:
        hint = ("an e-mail address or a user part (user@) is no website: put e-mail addresses in the "
                "e-mail column, and write the site as https://example.com (it is kept as typed: the API "
                "takes any text as a website, crm-api.md §8.1)")
    if name == "country" and value and (kind := _misplaced(value)):  # another column's value
        hint = (f"{kind} is no country: is it in the right column? write the country's name or "
                "two-letter code, such as US")
    elif name == "country" and value and len(value.strip()) > 2:  # a name: an alias example of it
        hint = _country_hint(value.strip())
    if name == "phone_e164" and region is None and "{example}" in hint and value and \
            not value.strip().startswith("+"):  # a national number read in no country
        hint = ("the row has no country (and the template no default_region) to read a national "
                "number in: give the row its country, or " + hint.replace(
                    "{example}", f"{_example_phone(None)} for a Dutch number"))
    if "{example}" in hint:
        hint = hint.replace("{example}", _example_phone(region))
    if name == "datetime" and options.get("dayfirst"):  # the template reads DD-MM-YYYY
        hint = "use a date that exists, day first, such as 31-01-2024 or 31-01-2024 10:15"
    elif name == "datetime" and value:
        hint = _numeric_date_hint(hint, value)
    for key in ("collection", "n"):
        if key in options:
            rule = rule.replace(f"{{{key}}}", str(options[key]))
            hint = hint.replace(f"{{{key}}}", str(options[key]))
    return rule, hint


_TYPED_LETTER = re.compile(r"\d[A-Za-z]|[A-Za-z]\d")
"""A letter beside a digit in a phone cell (`020-623l298`: an l typed for a 1)."""


def _numeric_date_hint(hint: str, value: str) -> str:
    """The `datetime` check's `hint` for `value` written `NN/NN/YYYY` (any of `-/.`), else `hint`:
    the `dayfirst` option when the day-first reading exists, "no such day" when neither
    reading does (31/02/2024), else (12/31/2024) its ISO form, the time of day kept."""
    dmy = re.match(r"\s*(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\b", value)
    if dmy is None:
        return hint
    if _real_date(int(dmy[3]), int(dmy[2]), int(dmy[1])):
        return hint + ("; if the column writes dates day first (31/01/2024), give its datetime transform "
                       "dayfirst: true ({datetime: {dayfirst: true}})")
    if not _real_date(int(dmy[3]), int(dmy[1]), int(dmy[2])):
        return f"no such day, day or month first: {hint}"
    iso = f"{int(dmy[3]):04d}-{int(dmy[1]):02d}-{int(dmy[2]):02d}"  # month first: no transform reads it
    rest = value[dmy.end():].strip()
    clock = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?", rest)
    if clock:  # the time goes with it (12/31/2024 10:15 -> 2024-12-31T10:15:00)
        iso += f"T{int(clock[1]):02d}:{clock[2]}:{clock[3] or '00'}"
    return hint + f"; if it is month first, write it as {iso}" if clock or not rest else hint


def _real_date(year: int, month: int, day: int) -> bool:
    """Whether the Gregorian calendar has that day (`datetime.date`)."""
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _vanity_e164(value: str, region: str | None) -> str | None:
    """A vanity number (`1-800-FLOWERS`) in E.164 with its letters as the keypad's digits
    (phonenumbers' `convert_alpha_characters_in_number`), when that is a possible number of
    `region`; else None."""
    try:
        num = phonenumbers.parse(phonenumbers.convert_alpha_characters_in_number(value), region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164) \
        if phonenumbers.is_possible_number(num) else None


def check_list(check_expr_fn: Callable[[pl.Expr], pl.Expr], expr: pl.Expr) -> pl.Expr:
    """Return True where every item of the list `expr` passes `check_expr_fn` (null or empty
    list -> True), e.g. `check_list(partial(CHECKS["iri"], collection="tags"), pl.col("tags"))`."""
    return expr.list.eval(check_expr_fn(pl.element())).list.all().fill_null(True)


def _misplaced(value: str) -> str | None:
    """What a country cell holds when it is plainly another column's value: "an e-mail
    address", "a website", or "a number" (a phone number, a postal code: no letter in it)."""
    v = value.strip()
    if "@" in v:
        return "an e-mail address"
    if "://" in v or v.lower().startswith("www."):
        return "a website"
    return "a number" if not re.search(r"[^\W\d_]", v) else None


def _country_hint(name: str) -> str:
    """The `country` check's hint for a country name no table knows: the codes it may mean
    (`country_guesses`), and an alias of that very spelling in the template."""
    guesses = country_guesses(name)
    alias = f"{json.dumps(name, ensure_ascii=False)}: {guesses[0][0] if guesses else '<its code>'}"
    said = " or ".join(f"{c} ({n})" for c, n in guesses)
    start = (f"did you mean {said}? write the code, or name it" if guesses else
             "use a two-letter code such as US, or name its code")
    return f"{start} in the transform's aliases ({{country: {{aliases: {{{alias}}}}}}})"


def _lost_plus(value: str) -> tuple[str, int] | None:
    """(`+digits`, its country code) when `value` is only digits (and spaces, dots, dashes)
    that with a `+` form a valid number (phonenumbers' metadata): `31201234567` whose `+`
    Excel dropped (BR-05)."""
    if not re.fullmatch(r"[\d\s.\-]{8,}", value.strip()):
        return None
    plus = "+" + re.sub(r"\D", "", value)
    try:
        num = phonenumbers.parse(plus, None)
    except phonenumbers.NumberParseException:
        return None
    return (plus, num.country_code) if phonenumbers.is_valid_number(num) else None


def _code_region(number: str) -> str | None:
    """The main region (ISO 3166-1 alpha-2) of the E.164 country code `number` starts with
    (`+44 20 …` -> GB), or None when no code of 1-3 digits is in use."""
    digits = re.sub(r"\D", "", number)[:3]
    for n in (1, 2, 3):
        region = phonenumbers.region_code_for_country_code(int(digits[:n])) if len(digits) >= n else "ZZ"
        if region != "ZZ":
            return region
    return None


def code_regions(e164: pl.Expr) -> pl.Expr:
    """`_code_region` of each E.164 number in `e164` (pl.String), vectorised: the main region of
    its country code (`+61…` AU, `+1…` US), null for none or a non-geographic code (`+800…`)."""
    main = {str(cc): regions[0] for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
            if regions and regions[0] != "001"}
    return pl.coalesce([e164.str.slice(1, k).replace_strict(main, default=None, return_dtype=pl.String)
                        for k in (1, 2, 3)])


def impossible_numbers(numbers: pl.Series) -> pl.DataFrame:
    """The E.164 numbers among `numbers` (pl.String, `+…`) whose national significant number
    has a length no number of their country calling code has (phonenumbers' metadata
    `possible_length`, ITU-T E.164 numbering plans): `+3391244540` (8 digits after +33; French
    numbers have 9). A number of an unknown code is not judged here.

    Judged on the distinct (first four characters, length) pairs, a few dozen however many
    numbers there are (`+33 1…` and a length tell the code and its digits after it), in
    Python; only the numbers of a failing pair are looked at one by one. The metadata is read
    only for the country codes present.

    Returns:
        frame `number`, `code` (String: the country calling code), `length` (Int64: the
        digits after it), `lengths` (String: the possible ones, `9` or `7, 10`), one row per
        such number.
    """
    out = pl.DataFrame(schema={"number": pl.String, "code": pl.String, "length": pl.Int64, "lengths": pl.String})
    head, size = pl.col("number").str.head(4).alias("p"), pl.col("number").str.len_bytes().alias("n")
    frame = numbers.to_frame("number")
    pairs = frame.lazy().select(head, size).unique().collect()
    bad = [(p, n) for p, n in pairs.iter_rows() if p and _impossible(p, n)]
    if not bad:
        return out
    hits = frame.filter(pl.struct(head, size).is_in(
        pl.DataFrame(bad, schema={"p": pl.String, "n": pairs.schema["n"]}, orient="row").to_struct().implode()))
    rows = []
    for number in hits.filter(pl.col("number").str.contains(r"^\+\d+$"))["number"].unique(maintain_order=True):
        code = _calling_code(number)
        rows.append((number, code, len(number) - 1 - len(code), ", ".join(map(str, _possible_lengths(code)))))
    return pl.DataFrame(rows, schema=out.schema, orient="row") if rows else out


def _calling_code(number: str) -> str | None:
    """The country calling code `+…` begins with (codes are prefix-free, ITU-T E.164), else None."""
    return next((number[1:k + 1] for k in (1, 2, 3) if number[1:k + 1].isdigit()
                 and int(number[1:k + 1]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE), None)


def _impossible(head: str, size: int) -> bool:
    """Whether a number `+…` of `size` characters beginning with `head` (four characters) has
    a length its country code's numbers have not (`impossible_numbers`)."""
    if not head.startswith("+") or not head[1:].isdigit():
        return False
    code = _calling_code(head)
    lengths = _possible_lengths(code) if code else []
    return bool(lengths) and size - 1 - len(code) not in lengths


def region_of_code(code: str) -> str:
    """`+33 (FR)`: a country calling code and its main region (phonenumbers), for messages."""
    region = phonenumbers.region_code_for_country_code(int(code))
    return f"+{code}" + (f" ({region})" if region and region not in ("ZZ", "001") else "")


@cache  # per country calling code: its regions' metadata are read once
def _possible_lengths(code: str) -> list[int]:
    """The national significant number lengths a number of country calling `code` may have
    (union over its regions' `general_desc.possible_length`, phonenumbers' metadata)."""
    out: set[int] = set()
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(code), ()):
        md = (phonenumbers.PhoneMetadata.metadata_for_nongeo_region(int(code)) if region == "001"
              else phonenumbers.PhoneMetadata.metadata_for_region(region))
        if md is not None and md.general_desc is not None:
            out |= set(md.general_desc.possible_length or ())
    return sorted(out)


@cache  # a hint per warning: one lookup per region
def _example_phone(region: str | None) -> str:
    """An E.164 example number of `region` (phonenumbers' metadata), else a Dutch one."""
    number = phonenumbers.example_number(region.upper()) if region else None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164) if number else "+31201234567"
