"""Synthetic organizations for the benchmarks: API records and the spreadsheet rows describing them.

Deterministic: the same `seed` gives byte-identical records and CSV files. Records are in API
shape (crm-api.md §8: `@id`, `title`, `emailAddresses[{email}]`, `phoneNumbers[{phoneNumber,
phoneType}]` in E.164, `address{street, postalCode, city, country}` with ISO 3166-1 alpha-2),
ready for `Sandbox.seed` or for the planner's in-memory snapshot. Sheet rows are what people
type: national and international phone spellings, country names or codes, `www.` websites,
the odd capitalised e-mail address and stray spaces, all of which normalise back to the record.

    >>> recs = make_records(5, seed=1)
    >>> rows, kinds = make_sheet(recs, changed=1, new=1, seed=2)
    >>> sorted(set(kinds))
    ['changed', 'new', 'unchanged']
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl

COLUMNS = ("customer_id", "name", "email", "phone", "mobile", "street", "postal_code", "city",
           "country", "website")
"""Sheet columns, in order (all text)."""

TEMPLATE_EMAIL = {
    "resource": "organizations",
    "mode": "patch",
    "identifiers": ["emailAddresses"],
    "fields": {
        "title": {"column": "name"},
        "customerId": {"column": "customer_id"},
        "emailAddresses": {"column": "email"},
        "phoneNumbers": [{"column": "phone"}, {"column": "mobile", "type": "mobile"}],
        "address.street": {"column": "street"},
        "address.postalCode": {"column": "postal_code"},
        "address.city": {"column": "city"},
        "address.country": {"column": "country"},
        "website": {"column": "website"},
    },
}
"""Template matching on e-mail addresses only; phones are data (so the lower bound is exact)."""

TEMPLATE_EMAIL_PHONE = {**TEMPLATE_EMAIL, "identifiers": ["emailAddresses", "phoneNumbers"]}
"""The same template matching on e-mail addresses and phone numbers."""


@dataclass(frozen=True)
class Country:
    code: str                      # ISO 3166-1 alpha-2 (what the API stores)
    names: tuple[str, ...]         # how sheets write it (code, English and local names)
    cc: str                        # ITU country calling code
    areas: tuple[tuple[str, int], ...]   # (area code, subscriber digits) for landlines
    mobile: tuple[str, int]        # (mobile prefix, digits after it)
    trunk: str                     # national trunk prefix ("0", or "" for NANP)
    legal: tuple[str, ...]
    cities: tuple[str, ...]
    surnames: tuple[str, ...]
    street: str                    # format with {name} {n}
    postal: str                    # "NNNN LL" style: N digit, L letter
    tld: str


COUNTRIES = (
    Country("NL", ("NL", "Netherlands", "Nederland", "the Netherlands"), "31",
            (("20", 7), ("10", 7), ("30", 7), ("70", 7)), ("6", 8), "0", ("B.V.", "N.V.", "V.O.F."),
            ("Amsterdam", "Rotterdam", "Utrecht", "Den Haag", "Eindhoven", "Groningen"),
            ("de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder",
             "de Groot", "Bos", "Vos", "Peters", "Hendriks", "Dijkstra"),
            "{name}straat {n}", "NNNN LL", "nl"),
    Country("DE", ("DE", "Germany", "Deutschland"), "49",
            (("30", 8), ("89", 8), ("40", 8), ("221", 7)), ("151", 8), "0", ("GmbH", "AG", "KG"),
            ("Berlin", "München", "Hamburg", "Köln", "Frankfurt am Main", "Stuttgart"),
            ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
             "Schulz", "Hoffmann", "Koch", "Richter"),
            "{name}straße {n}", "NNNNN", "de"),
    Country("GB", ("GB", "UK", "United Kingdom", "England"), "44",
            (("20", 8), ("161", 7), ("121", 7), ("131", 7)), ("7", 9), "0", ("Ltd", "PLC", "LLP"),
            ("London", "Manchester", "Birmingham", "Edinburgh", "Leeds", "Bristol"),
            ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
             "Robinson", "Wright", "Thompson", "Evans"),
            "{n} {name} Road", "LLN NLL", "co.uk"),
    Country("FR", ("FR", "France"), "33",
            (("1", 8), ("4", 8), ("3", 8), ("5", 8)), ("6", 8), "0", ("SARL", "SAS", "SA"),
            ("Paris", "Marseille", "Lyon", "Toulouse", "Nice", "Nantes"),
            ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
             "Leroy", "Moreau", "Simon", "Laurent"),
            "{n} rue {name}", "NNNNN", "fr"),
    Country("BE", ("BE", "Belgium", "Belgie", "België"), "32",
            (("2", 7), ("3", 7), ("9", 7)), ("47", 7), "0", ("BV", "NV", "CommV"),
            ("Brussel", "Antwerpen", "Gent", "Leuven", "Brugge", "Namur"),
            ("Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens",
             "Wouters", "De Smet"),
            "{name}laan {n}", "NNNN", "be"),
    Country("US", ("US", "USA", "United States"), "1",
            (("212", 7), ("415", 7), ("312", 7), ("617", 7)), ("646", 7), "", ("Inc.", "LLC", "Corp."),
            ("New York", "San Francisco", "Chicago", "Boston", "Austin", "Seattle"),
            ("Miller", "Davis", "Garcia", "Rodriguez", "Martinez", "Anderson", "Clark", "Lewis",
             "Walker", "Hall", "Young", "King"),
            "{n} {name} Street", "NNNNN", "com"),
)
SECTORS = ("Bouw", "Logistics", "Consulting", "Software", "Foods", "Engineering", "Design",
           "Installatie", "Trading", "Media", "Health", "Energy", "Retail", "Finance", "Robotics")
MAILBOXES = ("info", "sales", "contact", "office", "hello", "admin", "support")


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randrange(10 ** (n - 1), 10 ** n))


def _postal(rng: random.Random, fmt: str) -> str:
    return "".join(str(rng.randrange(10)) if c == "N" else chr(65 + rng.randrange(26)) if c == "L"
                   else c for c in fmt)


def _phone(rng: random.Random, c: Country, mobile: bool) -> str:
    """E.164 form of a possible number of country `c` (ITU-T E.164)."""
    area, n = c.mobile if mobile else rng.choice(c.areas)
    sub = _digits(rng, n)
    return f"+{c.cc}{area}{sub}"


def _split_area(e164: str, c: Country) -> tuple[str, str]:
    """(area or mobile prefix, subscriber digits) of a number made by `_phone`."""
    nsn = e164[1 + len(c.cc):]
    area = next(a for a, _ in (c.mobile, *c.areas) if nsn.startswith(a))
    return area, nsn[len(area):]


def _group(sub: str) -> str:
    return f"{sub[:3]} {sub[3:]}" if len(sub) > 6 else sub


def _national(e164: str, c: Country) -> str:
    area, sub = _split_area(e164, c)
    return f"({area}) {sub[:3]}-{sub[3:]}" if c.code == "US" else f"{c.trunk}{area} {_group(sub)}"


def _spaced_international(e164: str, c: Country) -> str:
    area, sub = _split_area(e164, c)
    return f"+{c.cc} {area} {_group(sub)}"


def _slug(text: str) -> str:
    keep = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    for a, b in (("ü", "u"), ("ö", "o"), ("ä", "a"), ("ß", "ss"), ("é", "e"), ("ë", "e")):
        keep = keep.replace(a, b)
    return "-".join(p for p in keep.split("-") if p)


def make_records(n: int, *, seed: int = 1, id_offset: int = 0) -> list[dict]:
    """`n` organizations in API shape, unique e-mails, phones and websites.

    Each has 1 (70 %) or 2 e-mail addresses, a landline (`phoneType` absent) and in 40 % a
    mobile (`phoneType: mobile`), an address and a website. IRIs are deterministic UUIDs.

    Returns:
        list of dicts with keys `@id`, `@type`, `id`, `title`, `customerId`, `emailAddresses`,
        `phoneNumbers`, `address`, `website`.
    """
    rng = random.Random(seed)
    out = []
    for i in range(id_offset, id_offset + n):
        c = COUNTRIES[rng.randrange(len(COUNTRIES))]
        surname = rng.choice(c.surnames)
        title = f"{surname} {rng.choice(SECTORS)} {rng.choice(c.legal)}"
        domain = f"{_slug(surname)}-{i:x}.{c.tld}"
        boxes = rng.sample(MAILBOXES, 2 if rng.random() < 0.3 else 1)
        phones = [{"phoneNumber": _phone(rng, c, False)}]
        if rng.random() < 0.4:
            phones.append({"phoneNumber": _phone(rng, c, True), "phoneType": "mobile"})
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        out.append({
            "@id": f"/organizations/{rid}", "@type": "Organization", "id": rid, "title": title,
            "customerId": f"C{i:07d}",
            "emailAddresses": [{"email": f"{b}@{domain}"} for b in boxes],
            "phoneNumbers": phones,
            "address": {"street": c.street.format(name=rng.choice(c.surnames), n=rng.randrange(1, 300)),
                        "postalCode": _postal(rng, c.postal), "city": rng.choice(c.cities),
                        "country": c.code},
            "website": f"https://www.{domain}",
        })
    return out


_BY_CODE = {c.code: c for c in COUNTRIES}


def sheet_row(rec: dict, rng: random.Random, *, national_share: float = 0.5,
              mixed_case_share: float = 0.05) -> dict[str, str]:
    """A sheet row that describes `rec` exactly (after normalisation), spelt as people do."""
    c = _BY_CODE[rec["address"]["country"]]
    emails = [e["email"] for e in rec["emailAddresses"]]
    if rng.random() < mixed_case_share:
        emails = [e.capitalize() for e in emails]
    cells = {"phone": "", "mobile": ""}
    for p in rec["phoneNumbers"]:
        e164 = p["phoneNumber"]
        if rng.random() < national_share:
            spelt = _national(e164, c)
        else:
            spelt = _spaced_international(e164, c) if rng.random() < 0.5 else e164
        cells["mobile" if p.get("phoneType") == "mobile" else "phone"] = spelt
    site = rec["website"]
    return {
        "customer_id": rec["customerId"],
        "name": rec["title"] if rng.random() < 0.9 else f" {rec['title']}  ",
        "email": "; ".join(emails),
        "phone": cells["phone"], "mobile": cells["mobile"],
        "street": rec["address"]["street"], "postal_code": rec["address"]["postalCode"],
        "city": rec["address"]["city"], "country": rng.choice(c.names),
        "website": site if rng.random() < 0.5 else site.removeprefix("https://"),
    }


def _change(row: dict[str, str], rng: random.Random) -> dict[str, str]:
    """Change exactly one data field (never an identifier)."""
    field = rng.choice(("name", "street", "city", "postal_code", "website"))
    new = dict(row)
    new[field] = {"name": lambda v: v.strip() + " Holding", "street": lambda v: v + "A",
                  "city": lambda v: v + " Noord", "postal_code": lambda v: v[:-1] + ("1" if v[-1] != "1" else "2"),
                  "website": lambda v: v.rstrip("/") + "/nl"}[field](row[field])
    return new


def make_sheet(records: list[dict], *, changed: int, new: int, unchanged: int | None = None,
               seed: int = 2, national_share: float = 0.5,
               mixed_case_share: float = 0.05) -> tuple[list[dict[str, str]], list[str]]:
    """Rows for a sheet: `unchanged` rows equal to records, `changed` with one changed field,
    `new` describing organizations that do not exist; shuffled.

    Args:
        records: the existing records (the sheet's rows are drawn from them without repeats).
        unchanged: default `len(records) - changed` (every record appears once).
        national_share: share of phone cells in national spelling (the slow parse path).
        mixed_case_share: share of rows whose e-mails are capitalised (`Info@...`).

    Returns:
        (rows, kinds): rows as {column: text}; kinds[i] is unchanged | changed | new.
    """
    rng = random.Random(seed)
    unchanged = len(records) - changed if unchanged is None else unchanged
    picked = rng.sample(range(len(records)), unchanged + changed)
    fresh = make_records(new, seed=seed + 10_000, id_offset=len(records) + 10_000_000)
    kw = {"national_share": national_share, "mixed_case_share": mixed_case_share}
    rows = [(sheet_row(records[i], rng, **kw), "unchanged") for i in picked[:unchanged]]
    rows += [(_change(sheet_row(records[i], rng, **kw), rng), "changed") for i in picked[unchanged:]]
    rows += [(sheet_row(r, rng, **kw), "new") for r in fresh]
    rng.shuffle(rows)
    return [r for r, _ in rows], [k for _, k in rows]


def write_csv(rows: list[dict[str, str]], path: str | Path) -> Path:
    """Write rows as UTF-8 CSV with the `COLUMNS` header (empty cells stay empty)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema={c: pl.String for c in COLUMNS}).write_csv(p)
    return p


def write_big_csv(n: int, path: str | Path, *, seed: int = 3, chunk: int = 100_000) -> Path:
    """`n` unchanged-style rows (no snapshot kept), written in chunks to bound memory."""
    p = Path(path)
    rng = random.Random(seed)
    with p.open("w", encoding="utf-8", newline="") as fh:
        for start in range(0, n, chunk):
            recs = make_records(min(chunk, n - start), seed=seed + start, id_offset=start)
            df = pl.DataFrame([sheet_row(r, rng) for r in recs], schema={c: pl.String for c in COLUMNS})
            df.write_csv(fh, include_header=start == 0)
    return p
