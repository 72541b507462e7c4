"""Stage 4b: compare matched rows with their records; build create, merge patch and PUT bodies.

Input: valid mapped rows with an `iri` column (null = create) and the records fetched by
`match.match_rows`. Output: per row the changed fields and the request body.

Rules (issue 5):
- both sides are normalised the same way before comparing; empty ≡ null ≡ missing;
  lists are compared as sets; read-only fields are never sent (crm-api.md §8.1);
- scalar policies: `overwrite` (default), `fill_if_empty`, `never`; an empty cell leaves the
  field alone unless the template says `empty: clear`;
- list policies: `merge` (union with what exists, the default in patch mode) or `replace`;
  PATCH bodies hold only changed fields, lists complete (RFC 7396 replaces arrays) and the
  `address` object complete (crm-api.md §8.2, §12);
- a PUT (template `mode: replace`) body is built from the existing record so unmapped fields
  survive (unless `clear_unmapped`), and every field it clears is listed.
"""
from __future__ import annotations

import json
import re
from functools import reduce
from operator import iadd
from typing import Any

import phonenumbers
import polars as pl

from .mapping import PHONE_DTYPE
from .normalize import FEW_DIGITS, parse_phone
from .template import LIST_KINDS, ORG_FIELDS, Mapping, Template
from .transforms import apply_transforms

READ_ONLY = {"@context", "@id", "@type", "id", "createdAt", "updatedAt", "importedAt", "avatarUrl",
             "linkedinPublicIdentifier", "linkedinInternalId", "companyEnrichment",
             "linkedinCompanyEnrichment", "_organizations"}
"""Organization fields ignored on write (crm-api.md §8.1 R/O column)."""
ADDRESS_KEYS = ("street", "postalCode", "city", "country")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_JSON_SORTED = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
"""`json.dumps(value, ensure_ascii=False[, sort_keys=True])` without an encoder per call."""
compact_json = _JSON.encode
"""`value` as compact JSON text (no spaces, characters kept): request bodies and `changes`."""


def record_schema(template: Template) -> dict[str, pl.DataType]:
    """Polars schema of the record fields the template maps (API shape, crm-api.md §8.1)."""
    schema: dict[str, pl.DataType] = {"@id": pl.String}
    for m in template.mappings:
        top = m.field.split(".")[0]
        if top == "address":
            schema["address"] = pl.Struct({k: pl.String for k in ADDRESS_KEYS})
        elif m.kind == "emails":
            schema[top] = pl.List(pl.Struct({"email": pl.String}))
        elif m.kind == "phones":
            schema[top] = PHONE_DTYPE
        elif m.kind == "list":
            schema[top] = pl.List(pl.String)
        else:
            schema[top] = pl.Boolean if m.kind == "bool" else pl.String
    if "phoneNumbers" in schema and "address" not in schema:
        schema["address"] = pl.Struct({k: pl.String for k in ADDRESS_KEYS})
    return schema


def raw_records_frame(records: list[dict], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Records (API JSON objects) as a frame of `schema`, one row per record, in order.

    Args:
        records: the records as the API returns them (crm-api.md §8).
        schema: top-level key -> dtype (objects as `pl.Struct`, arrays as `pl.List`), e.g.
            `record_schema(template)`. Missing keys and other keys' values are left out/null.

    Returns:
        frame with exactly the `schema` columns. List columns are null where the key is absent
        or null, `[]` where the array is empty.

    Arrays are gathered from their flattened items (one pass each), several times cheaper than
    polars' row-wise conversion of nested lists; records of another shape (an array that is not
    a JSON array, items that are not objects) take that row-wise conversion instead.
    """
    if not records:
        return pl.DataFrame(schema=schema)
    try:
        return _fast_records_frame(records, schema).rechunk()  # one chunk: fast gathers later
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return pl.DataFrame(records, schema=schema, strict=False)


def _fast_records_frame(records: list[dict], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    scalars = {k: t for k, t in schema.items() if not isinstance(t, pl.List)}
    out = pl.from_dicts(records, schema=scalars, strict=False) if scalars else \
        pl.DataFrame({"__n": pl.repeat(None, len(records), dtype=pl.Null, eager=True)})
    lists = [_list_column(records, k, t) for k, t in schema.items() if isinstance(t, pl.List)]
    return out.with_columns(lists).select(list(schema))


def _list_column(records: list[dict], key: str, dtype: pl.List) -> pl.Series:
    """One array-valued key of every record as a list Series (see `raw_records_frame`)."""
    values = [r.get(key) for r in records]
    types = set(map(type, values))
    if not types <= {list, type(None)}:
        raise TypeError(f"{key} is not an array in every record")
    lens = pl.Series([-1 if v is None else len(v) for v in values] if type(None) in types
                     else list(map(len, values)), dtype=pl.Int64)
    items = reduce(iadd, filter(None, values), [])  # all items in order (list.extend in C)
    inner = dtype.inner
    if isinstance(inner, pl.Struct):
        fields = {f.name: f.dtype for f in inner.fields}
        flat = pl.from_dicts(items, schema=fields, strict=False) if items else pl.DataFrame(schema=fields)
        flat = flat.select(pl.struct(list(fields)).alias(key))
    else:
        flat = pl.Series(key, items, dtype=inner, strict=False).to_frame()
    owner = pl.select(pl.int_range(len(values), dtype=pl.UInt32).repeat_by(lens.clip(0)).explode()).to_series()
    grouped = flat.with_columns(owner.alias("__r")).group_by("__r", maintain_order=True).agg(pl.col(key))
    full = pl.DataFrame({"__r": pl.int_range(len(values), dtype=pl.UInt32, eager=True), "__len": lens})
    full = full.join(grouped, on="__r", how="left", maintain_order="left")
    return full.select(pl.when(pl.col("__len") >= 0).then(pl.col(key).fill_null(pl.lit([], dtype=dtype)))
                       .cast(dtype).alias(key)).to_series()


def records_frame(records: list[dict] | pl.DataFrame, template: Template) -> pl.DataFrame:
    """Records as a frame shaped like the mapped rows: `iri` + one normalised column per field.

    Args:
        records: the records (API JSON), or their `raw_records_frame` with (at least) the
            `record_schema(template)` columns.
    """
    raw = records if isinstance(records, pl.DataFrame) else raw_records_frame(records, record_schema(template))
    region = pl.col("address").struct.field("country") if "address" in raw.columns else pl.lit(None, pl.String)
    cols = [pl.col("@id").alias("iri")]
    for m in template.mappings:
        cols.append(_existing_expr(m, template, region).alias(m.field))
    return raw.select(cols)


def _existing_expr(m: Mapping, template: Template, region: pl.Expr, col: pl.Expr | None = None, *,
                   as_stored: bool = False) -> pl.Expr:
    top, _, sub = m.field.partition(".")
    if col is None:
        col = pl.col(top).struct.field(sub) if sub else pl.col(top)
    norm = None if as_stored else m.rules.get("normalise")
    if m.kind == "emails" and as_stored:
        return col.list.eval(pl.element().struct.field("email")).fill_null([])
    if m.kind == "emails":
        return col.list.eval(pl.element().struct.field("email").str.strip_chars().str.to_lowercase()).fill_null([])
    if m.kind == "phones":
        return col.fill_null(pl.lit([], dtype=PHONE_DTYPE))  # normalised in `normalise_existing_phones`
    if m.kind == "list":
        return col.fill_null(pl.lit([], dtype=pl.List(pl.String)))
    if norm and m.kind == "scalar":
        spec = {"phone": {"default_region": template.default_region}} if norm == "phone" else norm
        col = apply_transforms(col, [spec], direction="clean")
    return col if m.kind == "bool" else pl.when(col.str.strip_chars() == "").then(None).otherwise(col)


def stored(field: str) -> pl.Expr:
    """A record's value of `field` (`title`, `address.city`: into the embedded object) in a
    frame that holds the record's top-level fields as `<top>#r` columns (`_beside`)."""
    top, _, sub = field.partition(".")
    col = pl.col(f"{top}#r")
    return col.struct.field(sub) if sub else col


def _beside(rows: pl.DataFrame, raw: pl.DataFrame) -> pl.DataFrame:
    """`rows` with their records' top-level fields beside them as `<top>#r` columns (`raw`:
    `raw_records_frame` of each row's record, in the order of `rows`)."""
    return pl.concat([rows, raw.drop("@id", strict=False).rename(lambda c: f"{c}#r")], how="horizontal")


def same_as_record(rows: pl.DataFrame, raw: pl.DataFrame, template: Template) -> pl.DataFrame:
    """Per row and mapped field, whether the row's value equals its record's exactly as stored.

    A row equal in every field changes nothing under any policy: its (normalised) sheet values
    are what the record holds, and normalising them again gives them back. Planning skips the
    normalising and comparing of such rows (most rows of a weekly re-upload), and of a field
    equal on every row it compares (`existing_values`, `changed_fields`: `equal`).

    Args:
        rows: mapped rows (`mapping.map_rows` columns).
        raw: `raw_records_frame` of each row's record, in the order of `rows`.

    Returns:
        frame of one Boolean column per mapped field (never null), a row per row of `rows`.
        Lists are equal when their items are equal in order; a difference in order or spelling
        only sends the value through the full comparison, never past it.
    """
    r = _beside(rows.select([m.field for m in template.mappings]), raw)
    scalars, lists = [], []
    for m in template.mappings:
        value = stored(m.field)
        if m.kind == "emails":
            lists.append((m.field, value.list.eval(pl.element().struct.field("email"))))
        elif m.kind in ("phones", "list"):
            lists.append((m.field, value))
        else:
            scalars.append(pl.col(m.field).eq_missing(value).fill_null(False).alias(m.field))
    equal = r.select(scalars)
    # list equality in polars is slow; items compared flat instead
    equal = equal.with_columns(_lists_equal(r, pl.col(f), value).alias(f) for f, value in lists)
    return equal.select([m.field for m in template.mappings])


def _lists_equal(r: pl.DataFrame, a: pl.Expr, b: pl.Expr) -> pl.Series:
    """Per row of `r`, whether list columns `a` and `b` hold equal items in equal order (null
    equals null only)."""
    pair = r.select(a.alias("a"), b.alias("b"))
    ok = pair.select(pl.col("a").list.len().eq_missing(pl.col("b").list.len())).to_series()
    if not ok.all():  # rows of unequal length are unequal; compare the others' items
        pair = pair.select(pl.when(ok).then(pl.col(c)).alias(c) for c in ("a", "b"))
    flat = pair.with_row_index("i").explode("a", "b")
    bad = flat.filter(~pl.col("a").eq_missing(pl.col("b")))["i"]
    return ok.scatter(bad, False) if bad.len() else ok


def existing_values(rows: pl.DataFrame, raw: pl.DataFrame, template: Template, *,
                    equal: frozenset[str] = frozenset(), as_stored: bool = False) -> pl.DataFrame:
    """The matched records' values normalised as `records_frame` does, one row per row of `rows`;
    a record value equal to the row's already holds what the row asks for and is taken as it is.

    Args:
        rows: mapped rows with `row_number`, `iri` (non-null) and the field columns.
        raw: `raw_records_frame` of each row's record, in the order of `rows`.
        equal: fields whose record value equals the row's on every row (`same_as_record`):
            taken from the row without looking at the record.
        as_stored: the values as stored, not normalised (e-mails, phones and normalised
            scalars as the record holds them: template `compare: stored`), for the comparison only.

    Returns:
        frame `row_number`, `iri` and one column per mapped field, phone numbers in E.164.
    """
    r = _beside(rows, raw)
    cols = []
    for m in template.mappings:
        if m.field in equal:
            cols.append(pl.col(m.field))
            continue
        raw_col = stored(m.field)
        full = _existing_expr(m, template, pl.lit(None, pl.String), raw_col, as_stored=as_stored)
        if m.kind in ("scalar", "bool"):  # lists: comparing them costs more than normalising
            full = pl.when(raw_col.eq_missing(pl.col(m.field)) & raw_col.is_not_null()).then(
                pl.col(m.field)).otherwise(full)
        cols.append(full.alias(m.field))
    frame = r.select("row_number", "iri", *cols)  # one polars call: the fields side by side
    if template.mapping("phoneNumbers") and "phoneNumbers" not in equal and not as_stored:  # all: cheaper
        # than finding those that differ
        part = frame.rename(lambda c: c if c in ("row_number", "iri") else f"{c}#e")
        if "address.country#e" not in part.columns and "address#r" in r.columns:  # the record's own
            # country is its phones' region, mapped or not (as matching reads them)
            part = part.with_columns(r.select(stored("address.country").alias("address.country#e")).to_series())
        frame = frame.with_columns(normalise_existing_phones(part, template)["phoneNumbers#e"].alias("phoneNumbers"))
    return frame


def changed_fields(rows: pl.DataFrame, existing: pl.DataFrame, template: Template, *,
                   on: str = "iri", phones_normalised: bool = False,
                   equal: frozenset[str] = frozenset()) -> pl.DataFrame:
    """Per matched row, the list of fields whose desired value differs from the record.

    Args:
        rows: mapped rows with `row_number`, `iri` (non-null) and field columns.
        existing: `records_frame(...)` of the matched records (joined `on="iri"`), or
            `existing_values(...)` (joined `on="row_number"`, `phones_normalised=True`).
        equal: fields equal to the record's on every row (`same_as_record`): never changed.

    Returns:
        frame `row_number` (Int64), `iri` (String), `changed` (List(String)).
    """
    ex = existing.rename({c: f"{c}#e" for c in existing.columns if c not in ("iri", "row_number")})
    ex = ex.drop("iri" if on == "row_number" else "row_number", strict=False)
    if on == "row_number" and rows["row_number"].equals(ex["row_number"]):  # aligned already
        joined = pl.concat([rows, ex.drop("row_number")], how="horizontal")
    else:
        joined = rows.join(ex, on=on, how="left")
    if "phoneNumbers" in rows.columns and not phones_normalised:
        joined = normalise_existing_phones(joined, template)
    zeros = zero_candidates(joined, template, suffix="#e")
    flags = [(pl.lit(False) if m.field in equal else _changed_expr(m, template, m.field in zeros)).alias(m.field)
             for m in template.mappings]
    if not flags:
        return joined.select("row_number", "iri", pl.lit([]).alias("changed"))
    if len(flags) > 62:
        return joined.select("row_number", "iri", pl.concat_list(
            [pl.when(f).then(pl.lit(m.field)).otherwise(None) for f, m in zip(flags, template.mappings)]
        ).list.drop_nulls().alias("changed"))
    # one bit per field; the few distinct bit masks are turned into field lists by a join
    mask = pl.sum_horizontal([pl.when(f).then(pl.lit(1 << i, pl.Int64)).otherwise(pl.lit(0, pl.Int64))
                              for i, f in enumerate(flags)]).alias("__mask")
    out = joined.select("row_number", "iri", mask)
    masks = out["__mask"].unique().to_list()
    names = [[m.field for i, m in enumerate(template.mappings) if k >> i & 1] for k in masks]
    table = pl.DataFrame({"__mask": masks, "changed": names},
                         schema={"__mask": pl.Int64, "changed": pl.List(pl.String)})
    return out.join(table, on="__mask", how="left", maintain_order="left").drop("__mask")


def normalise_existing_phones(joined: pl.DataFrame, template: Template) -> pl.DataFrame:
    """Existing phone numbers to E.164 with the record's country as region (unique values only)."""
    idx = joined.with_row_index("__r")
    region = (pl.col("address.country#e") if "address.country#e" in joined.columns else pl.lit(None, pl.String))
    long = idx.select("__r", region.alias("__region"), pl.col("phoneNumbers#e")).explode("phoneNumbers#e")
    long = long.drop_nulls("phoneNumbers#e").unnest("phoneNumbers#e")
    spec = {"phone": {"default_region": template.default_region}}
    typed = pl.col("phoneNumber")
    clean = apply_transforms(typed, [spec], direction="clean", context={"region": pl.col("__region")})
    # a record's item with fewer than three digits (`n/a`, sent as typed by an older version)
    # is compared as it is, so `policy: replace` removes it; other no-numbers (placeholders,
    # dates) read as null and are kept: the sheet's own such cell is dropped
    long = long.with_columns(pl.coalesce(clean, pl.when(typed.str.contains(FEW_DIGITS)).then(typed))
                             .alias("phoneNumber"))
    back = long.group_by("__r").agg(pl.struct("phoneNumber", "phoneType").alias("phoneNumbers#e"))
    phones = idx.select("__r").join(back, on="__r", how="left", maintain_order="left")["phoneNumbers#e"]
    return joined.with_columns(phones.fill_null(pl.lit([], dtype=PHONE_DTYPE)))


def lost_zeros(m: Mapping) -> pl.Expr | None:
    """True where the sheet's text value is the record's without its leading zeros (`5021` for
    `05021`, `0` for `00000`: a number cell shows zero as one 0): digits a spreadsheet stored as
    a number, not a change (BR-05). None for a field that is not text. Over the mapped column
    and its record's value as `<field>#e`."""
    if m.kind != "scalar":
        return None
    s, e = pl.col(m.field).cast(pl.String), pl.col(f"{m.field}#e").cast(pl.String)
    digits = s.str.strip_chars("0123456789") == ""  # no regex: cheaper
    rest = e.str.strip_chars_start("0")
    same = (~s.str.starts_with("0") & (rest == s)) | ((s == "0") & (rest == ""))
    return (e.str.starts_with("0") & digits & same).fill_null(False)


def zero_candidates(frame: pl.DataFrame, template: Template, *, suffix: str = "") -> set[str]:
    """The text fields (`lost_zeros`) whose record values (`<field><suffix>` columns of
    `frame`) hold one starting with 0: the only ones where a sheet can have lost zeros. One
    cheap pass (literal prefix tests)."""
    cols = {m.field: f"{m.field}{suffix}" for m in template.mappings
            if m.kind == "scalar" and f"{m.field}{suffix}" in frame.columns}
    if not cols or not frame.height:
        return set()
    hit = frame.select(pl.col(c).cast(pl.String).str.starts_with("0").any().alias(f) for f, c in cols.items())
    return {f for f, yes in hit.row(0, named=True).items() if yes}


def kept_zeros(rows: pl.DataFrame, existing: pl.DataFrame, template: Template) -> pl.DataFrame:
    """The fields `changed_fields` leaves as they are because the sheet lost their leading
    zeros (`lost_zeros`): `row_number`, `field`, `value` (the sheet's), `record` (the record's).
    `rows` and `existing` (`existing_values`) are aligned row by row."""
    empty = pl.DataFrame(schema={"row_number": pl.Int64, "field": pl.String, "value": pl.String,
                                 "record": pl.String})
    zeros = zero_candidates(existing, template)
    ms = [m for m in template.mappings if m.field in zeros and m.policy != "never" and m.field in rows.columns]
    if not ms or not rows.height:
        return empty
    r = pl.concat([rows.select("row_number", *(m.field for m in ms)),
                   existing.select(pl.col(m.field).alias(f"{m.field}#e") for m in ms)], how="horizontal")
    flags = r.select(lost_zeros(m).alias(m.field) for m in ms)  # one pass; usually all false
    hit = [m for m, any_ in zip(ms, flags.select(pl.all().any()).row(0)) if any_]
    parts = [r.filter(flags[m.field]).select("row_number", pl.lit(m.field).alias("field"),
                                             pl.col(m.field).cast(pl.String).alias("value"),
                                             pl.col(f"{m.field}#e").cast(pl.String).alias("record"))
             for m in hit]
    return pl.concat(parts).sort("row_number", maintain_order=True) if parts else empty


def kept_blanks(rows: pl.DataFrame, existing: pl.DataFrame, template: Template) -> pl.DataFrame:
    """The fields a blank cell leaves as stored under `empty: ignore` (template format): the
    sheet has no value, the record has one that `empty: clear` would clear. `row_number`,
    `field`, one row each, by row; `rows` and `existing` (`existing_values`) are aligned row by
    row. Nothing under `empty: clear`, nor for `never`, `fill_if_empty` or `merge` fields."""
    out = pl.DataFrame(schema={"row_number": pl.Int64, "field": pl.String})
    ms = [m for m in template.mappings if m.field in rows.columns and m.field in existing.columns
          and m.policy in ("overwrite", "replace") and m.sources and any(src.column for src in m.sources)]
    if template.empty != "ignore" or not ms or not rows.height:
        return out

    def blank(c: pl.Expr, m: Mapping) -> pl.Expr:
        return c.list.len().fill_null(0) == 0 if m.kind in LIST_KINDS else c.is_null()

    r = pl.concat([rows.select("row_number", *(m.field for m in ms)),
                   existing.select(pl.col(m.field).alias(f"{m.field}#e") for m in ms)], how="horizontal")
    parts = [r.filter(blank(pl.col(m.field), m) & ~blank(pl.col(f"{m.field}#e"), m))
             .select("row_number", pl.lit(m.field).alias("field")) for m in ms]
    return pl.concat(parts).sort("row_number", maintain_order=True)


def phone_numbers(phones: pl.Expr) -> pl.Expr:
    """The numbers of a phone list (`PHONE_DTYPE`: items {phoneNumber, phoneType}), as strings."""
    return phones.list.eval(pl.element().struct.field("phoneNumber"))


def without_repeats(compared: pl.DataFrame, existing: pl.DataFrame, template: Template) -> pl.DataFrame:
    """`compared` (`existing_values(..., as_stored=True)`) with an empty list where a record's
    list holds one item twice once normalised (`Info@X.COM` and `info@x.com`, two spellings
    of one phone number): under `compare: stored` the row then changes that field, and its
    patch sends the list with each item once. Aligned row by row with `existing`."""
    cols = []
    for m in template.mappings:
        if m.kind not in (*LIST_KINDS, "phones") or m.field not in compared.columns:
            continue
        items = pl.col(m.field)
        if m.kind == "phones":
            items = phone_numbers(items)
        repeats = existing.select((items.list.len() != items.list.unique().list.len()).fill_null(False)).to_series()
        if repeats.any():
            cols.append(pl.when(repeats).then(pl.lit([], compared.schema[m.field])).otherwise(pl.col(m.field))
                        .alias(m.field))
    return compared.with_columns(cols) if cols else compared


def kept_items(rows: pl.DataFrame, existing: pl.DataFrame, template: Template) -> pl.DataFrame:
    """The list items a `policy: merge` field keeps although the sheet leaves them out (RFC
    7396 replaces a list whole, so a merge sends the union: nothing the record holds goes):
    `row_number`, `field`, `items` (List(String): e-mails, phone numbers, IRIs), by row;
    `rows` and `existing` (`existing_values`) aligned row by row."""
    out = pl.DataFrame(schema={"row_number": pl.Int64, "field": pl.String, "items": pl.List(pl.String)})
    ms = [m for m in template.mappings if m.policy == "merge" and m.kind in (*LIST_KINDS, "phones")
          and m.field in rows.columns and m.field in existing.columns]
    if not ms or not rows.height:
        return out

    def items(c: pl.Expr, m: Mapping) -> pl.Expr:
        c = phone_numbers(c) if m.kind == "phones" else c
        return c.fill_null(pl.lit([], pl.List(pl.String))).list.drop_nulls()

    r = pl.concat([rows.select("row_number", *(m.field for m in ms)),
                   existing.select(pl.col(m.field).alias(f"{m.field}#e") for m in ms)], how="horizontal")
    parts = [r.select("row_number", pl.lit(m.field).alias("field"), items(pl.col(f"{m.field}#e"), m)
                      .list.set_difference(items(pl.col(m.field), m)).alias("items"))
             .filter(pl.col("items").list.len() > 0) for m in ms]
    parts = [_not_superseded(part, r, items(pl.col(m.field), m).list.set_difference(items(pl.col(f"{m.field}#e"), m)))
             if m.kind == "phones" else part for m, part in zip(ms, parts)]
    return pl.concat(parts).sort("row_number", maintain_order=True)


def _unpaired(items: list[str], sheet: list[str]) -> list[str]:
    """`items` (a record's, kept by a merge) but those a number of `sheet` (the row's numbers
    the record lacks) supersedes, paired as `desired_phones` pairs them (`_supersedes`)."""
    taken = set(_supersedes([(i, i) for i in items], sheet).values())
    return [i for j, i in enumerate(items) if j not in taken]


def held_in_full(rows: pl.DataFrame, raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`rows` with each phone number the sheet holds as typed (no E.164: it did not parse, e.g.
    `308-7104`, an `invalid-phone` warning) that is part of a number its record holds in full
    replaced by that number, the sheet's type kept; a number the row then holds twice is kept
    once. Part of: its digits, trunk prefix 0 aside, six or more, end exactly one of the
    record's E.164 numbers (`+1 555 308 7104`), and the record does not hold the typed text
    itself. So an older sheet's short spelling neither adds a second item beside the full
    number (`policy: merge`) nor replaces it (`policy: replace`): the reverse of `superseded`.

    Args:
        rows: mapped rows (`row_number`, `phoneNumbers` as `PHONE_DTYPE`), the matched ones.
        raw: `raw_records_frame` of each row's record, aligned with `rows`.

    Returns:
        (rows, taken): `taken` has `row_number` (Int64), `typed`, `number` (String), one line
        per number replaced, for the plan's note. Only rows holding a typed number (a few)
        are looked at in Python.
    """
    taken = pl.DataFrame(schema={"row_number": pl.Int64, "typed": pl.String, "number": pl.String})
    if "phoneNumbers" not in rows.columns or "phoneNumbers" not in raw.columns or not rows.height:
        return rows, taken
    typed = phone_numbers(pl.col("phoneNumbers")).list.eval(~pl.element().str.starts_with("+")).list.any()
    at = rows.select(typed.fill_null(False)).to_series().arg_true()
    if not at.len():
        return rows, taken
    lines, fixed = [], []
    for rn, items, record in zip(rows["row_number"].gather(at).to_list(), rows["phoneNumbers"].gather(at).to_list(),
                                 raw["phoneNumbers"].gather(at).to_list()):
        held = [p.get("phoneNumber") for p in record or [] if p.get("phoneNumber")]
        out: list[dict] = []
        for p in items:
            full = _full_number(p["phoneNumber"], held)
            if full:
                lines.append((rn, p["phoneNumber"], full))
                p = {**p, "phoneNumber": full}
            same = next((q for q in out if q["phoneNumber"] == p["phoneNumber"]), None)
            if same is None:
                out.append(p)
            elif not same["phoneType"]:  # one number twice: the earlier column's type, as mapping's
                same["phoneType"] = p["phoneType"]  # repeated phones keep it
        fixed.append(out)
    if not lines:
        return rows, taken
    new = pl.DataFrame({"__i": at, "__p": pl.Series(fixed, dtype=PHONE_DTYPE)})
    rows = rows.with_row_index("__i").join(new, on="__i", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("__i").is_in(at.implode())).then(pl.col("__p")).otherwise(pl.col("phoneNumbers"))
        .alias("phoneNumbers")).drop("__i", "__p")
    return rows, pl.DataFrame(lines, schema=taken.schema, orient="row")


def _full_number(typed: str | None, held: list[str]) -> str | None:
    """The one number of `held` (a record's phone items as stored) that `typed` (a sheet's
    number held as typed) is part of (`held_in_full`), as `+` and its digits (the E.164 key
    the comparison uses: the record may store `+1 555 308 7104`), else None."""
    if not typed or typed.startswith("+") or typed in held:
        return None
    hits = {parse_phone(n, None) for n in held if n.strip().startswith("+")}  # `+31 (0)20 …` too
    # `superseded`'s test of a number held as typed, the other way round: one rule for both
    hits = {n for n in hits if n and superseded(typed, None, n)}
    return hits.pop() if len(hits) == 1 else None


def _not_superseded(kept: pl.DataFrame, r: pl.DataFrame, new: pl.Expr) -> pl.DataFrame:
    """`kept_items`' `kept` (`row_number`, `field`, `items`) of a phone field without the items
    the sheet writes in full (`superseded`: `desired_phones` puts its number in their place);
    `new`: the row's sheet numbers the record lacks, over `r` (`kept_items`' frame). Only rows
    where a kept item and a new number end in the same six digits (a few; one join) are looked
    at in Python."""
    if not kept.height:
        return kept
    # candidates: a kept item and a new number of the row ending in the same six digits
    def last6(c: pl.Expr) -> pl.Expr:
        return c.str.replace_all(r"\D", "").str.slice(-6)
    items = kept.select("row_number", pl.col("items").alias("__i")).explode("__i").select(
        "row_number", last6(pl.col("__i")).alias("__t"))
    numbers = r.select("row_number", new.alias("__n")).explode("__n").drop_nulls().select(
        "row_number", last6(pl.col("__n")).alias("__t"))
    odd = kept["row_number"].is_in(items.join(numbers, on=["row_number", "__t"], how="semi")["row_number"].implode())
    if not odd.any():
        return kept
    doubt = kept.filter(odd).join(r.select("row_number", new.alias("__sheet")), on="row_number",
                                  how="left", maintain_order="left")
    fixed = [_unpaired(items, sheet or []) for items, sheet in doubt.select("items", "__sheet").iter_rows()]
    return pl.concat([kept.filter(~odd), doubt.select("row_number", "field", pl.Series("items", fixed, pl.List(pl.String)))
                      .filter(pl.col("items").list.len() > 0)])  # `kept_items` sorts them back by row


def _changed_expr(m: Mapping, template: Template, zeros: bool = False) -> pl.Expr:
    """Whether the row changes field `m` (`zeros`: some record value of it starts with 0, so
    a sheet value that lost its leading zeros is no change, `lost_zeros`)."""
    s, e = pl.col(m.field), pl.col(f"{m.field}#e")
    if m.kind in ("scalar", "bool"):
        if m.policy == "never":
            return pl.lit(False)
        if m.policy == "fill_if_empty":
            return e.is_null() & s.is_not_null()
        differs = s.ne_missing(e)
        if zeros and (lost := lost_zeros(m)) is not None:  # kept as stored, with a warning (`kept_zeros`)
            differs = differs & ~lost
        return differs & s.is_not_null() if template.empty == "ignore" else differs
    if m.kind == "phones":
        sn, en = phone_numbers(s), phone_numbers(e)
        typed = s.list.eval(pl.element().filter(pl.element().struct.field("phoneType").is_not_null()))
        sk = _keys(typed)
        ek = _keys(e)
        new = sn.list.set_difference(en).list.len() > 0
        retyped = sk.list.set_difference(ek).list.len() > 0
        if m.policy == "merge":
            return new | retyped
        gone = en.list.drop_nulls().list.set_difference(sn).list.len() > 0  # no number (null) is never gone
        return (new | retyped | gone) & ((s.list.len() > 0) | pl.lit(template.empty == "clear"))
    if m.policy == "merge":
        return s.list.set_difference(e).list.len() > 0
    differs = (s.list.set_difference(e).list.len() > 0) | (e.list.set_difference(s).list.len() > 0)
    return differs & ((s.list.len() > 0) | pl.lit(template.empty == "clear"))


def _keys(col: pl.Expr) -> pl.Expr:
    return col.list.eval(pl.concat_str(pl.element().struct.field("phoneNumber"), pl.lit("|"),
                                       pl.element().struct.field("phoneType").fill_null("")))


# --- bodies (Python, only for rows that are written) -------------------------------------------

def create_body(row: dict, template: Template) -> dict:
    """POST body for a new record from one mapped row (nulls and empty lists left out)."""
    body: dict[str, Any] = {}
    for m in template.mappings:
        _put(body, m, api_value(m, row.get(m.field)))
    if isinstance(body.get("address"), dict):
        body["address"] = {k: v for k, v in body["address"].items() if v is not None}
    return {k: v for k, v in body.items() if v not in (None, [], {})}


def update(row: dict, record: dict, changed: list[str], template: Template) -> tuple[dict, list[dict], list[str]]:
    """Body, changes and cleared fields for a matched row.

    Returns:
        (body, changes, cleared): PATCH body with only changed fields (address complete), or
        for `mode: replace` a PUT body built from the record; `changes` is a list of
        {field, before, after} (JSON-encoded values); `cleared` names the fields a PUT empties.
    """
    after: dict[str, Any] = {}
    changes = []
    for m in template.mappings:
        if m.field not in changed and template.mode != "replace":
            continue
        before = field_value(record, m.field)
        value = api_value(m, _desired(m, row.get(m.field), before, record, template))
        if m.field in changed:
            changes.append({"field": m.field, "before": _js(before), "after": _js(value)})
        _put(after, m, value)
    if template.mode != "replace":
        if "address" in after:
            after["address"] = {**_clean_obj(record.get("address")), **after["address"]}
        return after, changes, []
    return _put_body(record, after, template)


def _lost_zeros(sheet: Any, before: Any) -> bool:
    """`lost_zeros` of one value: the sheet's digits are the record's text without its leading
    zeros (`5021` for `05021`, `0` for `00000`, BR-05), which the record keeps."""
    if not (isinstance(sheet, str) and isinstance(before, str) and sheet.isascii() and sheet.isdigit()
            and before.startswith("0")):
        return False
    rest = before.lstrip("0")
    return (not sheet.startswith("0") and rest == sheet) or (sheet == "0" and rest == "")


def _put_body(record: dict, after: dict, template: Template) -> tuple[dict, list[dict], list[str]]:
    base = {} if template.clear_unmapped else {
        k: _clean_obj(v) if isinstance(v, dict) else v  # an embedded object without its JSON-LD keys
        for k, v in record.items() if k not in READ_ONLY}
    body = {**base, **after}
    if "address" in after and not template.clear_unmapped:
        body["address"] = {**_clean_obj(record.get("address")), **after["address"]}
    body["emailAddresses"] = [_clean_obj(e) for e in body.get("emailAddresses") or []]
    body["phoneNumbers"] = [_clean_obj(p) for p in body.get("phoneNumbers") or []]
    cleared = [k for k, v in record.items() if k not in READ_ONLY and v not in _EMPTY
               and body.get(k) in _EMPTY]
    # an object kept in part (address): the keys it loses, as `address.street`
    cleared += [f"{k}.{sub}" for k, v in record.items() if k not in READ_ONLY and isinstance(v, dict)
                and isinstance(body.get(k), dict) for sub, old in v.items()
                if not sub.startswith("@") and old not in _EMPTY and body[k].get(sub) in _EMPTY]
    changes = [{"field": k, "before": _js(record.get(k)), "after": _js(body.get(k))}
               for k in sorted(set(body) | set(cleared)) if k not in READ_ONLY and "." not in k
               and canon(record.get(k)) != canon(body.get(k))]
    return body, changes, sorted(cleared)


_EMPTY = (None, "", [], {})


def snapshot(record: dict, changed: list[str]) -> dict:
    """The record's current values of the fields an update touches (for the drift check)."""
    tops = sorted({f.split(".")[0] for f in changed})
    return {t: record.get(t) for t in tops}


WRITE_ONLY = frozenset({"avatar"})
"""Organization fields the API takes but never returns (crm-api.md §8.1 W/O column): a record
read back can never show them, so checks of what a write did leave them out."""

PUT_FIELDS = tuple(sorted({f.split(".")[0] for f in ORG_FIELDS} - WRITE_ONLY))
"""The organization fields a PUT replaces that the API returns (crm-api.md §8.1, PUT semantics:
writable fields left out are reset); `avatar` is write-only, never returned."""


def put_snapshot(record: dict) -> dict:
    """The drift snapshot of a PUT: the record's value of every field in `PUT_FIELDS`, mapped or
    not, since the PUT rewrites them all; a field changed after the plan (a colleague's new
    description) then makes the PUT drifted instead of undone by it."""
    return {t: record.get(t) for t in PUT_FIELDS}


def _desired(m: Mapping, sheet: Any, before: Any, record: dict, template: Template) -> Any:
    if m.kind in ("scalar", "bool"):
        blank = before is None or (isinstance(before, str) and not before.strip())  # as compared
        if m.policy == "never" or (m.policy == "fill_if_empty" and not blank) or _lost_zeros(sheet, before):
            return before
        return sheet if sheet is not None or template.empty == "clear" else before
    sheet = sheet or []
    if m.kind == "phones":
        country = (record.get("address") or {}).get("country")
        before = before or []
        return desired_phones(m, sheet, before, _e164([p.get("phoneNumber") for p in before], country, template),
                              template)
    existing = [e["email"] for e in before or []] if m.kind == "emails" else list(before or [])
    if m.policy == "replace" and (sheet or template.empty == "clear"):
        return list(sheet)
    if m.policy == "replace":
        return existing
    norm = {x.strip().lower() for x in existing} if m.kind == "emails" else set(existing)
    return existing + [x for x in sheet if x not in norm]


def _e164(nums: list[str | None], country: str | None, template: Template) -> list[str | None]:
    """A record's phone numbers in E.164, its country as the default region."""
    if not nums:
        return []
    spec = {"phone": {"default_region": template.default_region}}
    return pl.DataFrame({"n": nums, "r": [country] * len(nums)}, schema={"n": pl.String, "r": pl.String}).select(
        apply_transforms(pl.col("n"), [spec], direction="clean", context={"region": pl.col("r")})
    )["n"].to_list()


def desired_phones(m: Mapping, sheet: list, before: list, norm: list[str | None],
                   template: Template) -> list:
    """The phone list an update sends: the record's phones (`before`, API shape) with the
    sheet's new numbers appended and their types set (`merge`), or the sheet's list with types
    kept from the record (`replace`). `norm`: `before`'s numbers in E.164 (matching key)."""
    by_num = {n: i for i, n in enumerate(norm)}
    if m.policy == "replace" and (sheet or template.empty == "clear"):
        # a record's item that is no number (`normalize.not_a_number`: null here) is kept: the
        # sheet's own such cell is dropped, so its absence says nothing
        return [{"phoneNumber": p["phoneNumber"],
                 "phoneType": p["phoneType"] or (before[by_num[p["phoneNumber"]]].get("phoneType")
                                                 if p["phoneNumber"] in by_num else None)} for p in sheet] + \
            [_clean_obj(b) for b, n in zip(before, norm) if n is None and b.get("phoneNumber")]
    out = [_clean_obj(p) for p in before]
    # a new number may write one the record holds in a faulty form in full (`superseded`)
    fuller = _supersedes([(b.get("phoneNumber"), n) for b, n in zip(before, norm)],
                         [p["phoneNumber"] for p in sheet if p["phoneNumber"] not in by_num])
    for p in sheet:
        i = by_num.get(p["phoneNumber"])
        if i is None and (i := fuller.get(p["phoneNumber"])) is not None:
            out[i]["phoneNumber"], by_num[p["phoneNumber"]] = p["phoneNumber"], i
        elif i is None:
            out.append({"phoneNumber": p["phoneNumber"], "phoneType": p["phoneType"]})
            continue
        if p["phoneType"]:
            out[i]["phoneType"] = p["phoneType"]
    return out


def _supersedes(stored: list[tuple[str | None, str | None]], numbers: list[str]) -> dict[str, int]:
    """number -> the position in `stored` ((item, its matching key) of a record's phones) of the
    item it writes in full (`superseded`): `numbers` in order, each taking the first item no
    number took before it; a number given twice pairs once."""
    out: dict[str, int] = {}
    for n in dict.fromkeys(numbers):
        j = next((j for j, (item, key) in enumerate(stored)
                  if j not in out.values() and superseded(item, key, n)), None)
        if j is not None:
            out[n] = j
    return out


_DIGITS = re.compile(r"\D")


def superseded(stored: str | None, norm: str | None, number: str) -> bool:
    """Whether a record's phone item `stored` (`norm`: its matching key) is `number` (E.164)
    written in full, so a merge (`desired_phones`) puts `number` in its place rather than
    keeping a faulty spelling beside it, after an ops user followed a warning's hint:
    - held as typed (no E.164 key: it did not parse, e.g. `555-8787`): its digits, national
      prefix `0` aside, six or more, end `number`'s (`+65 555 8787`, an `invalid-phone` hint);
    - in E.164 form but no valid number (phonenumbers' metadata): `number`, a valid number of
      the same country code, holds its national digits after more of its own (`+6193744412`,
      an AU number without its area code, written in full `+61893744412`: `unlikely-phone`)."""
    if not stored or not number.startswith("+"):
        return False
    new = _DIGITS.sub("", number)
    if not (norm or "").startswith("+"):
        digits = _DIGITS.sub("", stored).lstrip("0")
        return len(digits) >= 6 and new.endswith(digits)
    return _completes(_DIGITS.sub("", norm), new)


def _completes(old: str, new: str) -> bool:
    """`superseded`'s E.164 case on digits: `new` is `old`'s country code, more digits, then
    `old`'s national digits (six or more); phonenumbers is asked only then (a few numbers)."""
    if len(new) <= len(old) or not any(new.startswith(old[:k]) and new.endswith(old[k:]) and len(old) - k >= 6
                                       for k in (1, 2, 3)):
        return False
    try:
        was, now = phonenumbers.parse(f"+{old}"), phonenumbers.parse(f"+{new}")
    except phonenumbers.NumberParseException:
        return False
    return was.country_code == now.country_code and not phonenumbers.is_valid_number(was) \
        and phonenumbers.is_valid_number(now)


def api_value(m: Mapping, value: Any) -> Any:
    """A desired value in API shape (e-mails as [{email}], phones without null keys)."""
    if m.kind == "emails":
        return [e if isinstance(e, dict) else {"email": e} for e in value or []]
    if m.kind == "phones":
        return [{k: v for k, v in p.items() if v is not None} for p in value or []]
    return value


def _put(body: dict, m: Mapping, value: Any) -> None:
    top, _, sub = m.field.partition(".")
    if sub:
        body.setdefault(top, {})[sub] = value
    else:
        body[top] = value


def field_value(record: dict, field: str) -> Any:
    """A record's value of a field path (`title`, or `address.city` into the embedded object)."""
    top, _, sub = field.partition(".")
    val = record.get(top)
    return (val or {}).get(sub) if sub else val


def _clean_obj(obj: Any, drop_null: bool = False) -> dict:
    """An embedded object without JSON-LD keys (crm-api.md §8.2: clients ignore them) and,
    with `drop_null`, without null values."""
    return {k: v for k, v in (obj or {}).items() if not k.startswith("@") and not (drop_null and v is None)}


def canon(value: Any, *, drop_null: bool = False) -> str:
    """A field value as sorted JSON for comparing: JSON-LD keys of embedded objects left out,
    empty (null, "", [], {}) as `null`; `drop_null`: a null key of an embedded object counts
    as missing (the drift and reconcile checks; a PUT's changes keep it)."""
    if isinstance(value, list):
        value = [_clean_obj(v, drop_null) if isinstance(v, dict) else v for v in value]
    elif isinstance(value, dict):
        value = _clean_obj(value, drop_null)
    return _JSON_SORTED.encode(value) if value not in (None, [], {}, "") else "null"


def _js(value: Any) -> str | None:
    if isinstance(value, dict):
        value = _clean_obj(value)
    if isinstance(value, list):
        value = [_clean_obj(v) if isinstance(v, dict) else v for v in value]
    return None if value in (None, [], {}) else compact_json(value)
