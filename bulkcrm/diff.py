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
from typing import Any

import polars as pl

from .mapping import PHONE_DTYPE
from .template import Mapping, Template
from .transforms import apply_transforms

READ_ONLY = {"@context", "@id", "@type", "id", "createdAt", "updatedAt", "importedAt", "avatarUrl",
             "linkedinPublicIdentifier", "linkedinInternalId", "companyEnrichment",
             "linkedinCompanyEnrichment", "_organizations"}
"""Organization fields ignored on write (crm-api.md §8.1 R/O column)."""
ADDRESS_KEYS = ("street", "postalCode", "city", "country")


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


def records_frame(records: list[dict], template: Template) -> pl.DataFrame:
    """Records as a frame shaped like the mapped rows: `iri` + one normalised column per field."""
    raw = pl.DataFrame(records, schema=record_schema(template), strict=False) if records else \
        pl.DataFrame(schema=record_schema(template))
    region = pl.col("address").struct.field("country") if "address" in raw.columns else pl.lit(None, pl.String)
    cols = [pl.col("@id").alias("iri")]
    for m in template.mappings:
        cols.append(_existing_expr(m, template, region).alias(m.field))
    return raw.select(cols)


def _existing_expr(m: Mapping, template: Template, region: pl.Expr) -> pl.Expr:
    top, _, sub = m.field.partition(".")
    col = pl.col(top).struct.field(sub) if sub else pl.col(top)
    norm = m.rules.get("normalise")
    if m.kind == "emails":
        return col.list.eval(pl.element().struct.field("email").str.strip_chars().str.to_lowercase()).fill_null([])
    if m.kind == "phones":
        return col.fill_null(pl.lit([], dtype=PHONE_DTYPE))  # normalised in `_normalise_existing_phones`
    if m.kind == "list":
        return col.fill_null(pl.lit([], dtype=pl.List(pl.String)))
    if norm and m.kind == "scalar":
        spec = {"phone": {"default_region": template.default_region}} if norm == "phone" else norm
        col = apply_transforms(col, [spec], direction="clean")
    return col if m.kind == "bool" else pl.when(col.str.strip_chars() == "").then(None).otherwise(col)


def changed_fields(rows: pl.DataFrame, existing: pl.DataFrame, template: Template) -> pl.DataFrame:
    """Per matched row, the list of fields whose desired value differs from the record.

    Args:
        rows: mapped rows with `row_number`, `iri` (non-null) and field columns.
        existing: `records_frame(...)` of the matched records.

    Returns:
        frame `row_number` (Int64), `iri` (String), `changed` (List(String)).
    """
    ex = existing.rename({c: f"{c}#e" for c in existing.columns if c != "iri"})
    joined = rows.join(ex, on="iri", how="left")
    if "phoneNumbers" in rows.columns:
        joined = _normalise_existing_phones(joined, template)
    flags = [_changed_expr(m, template).alias(m.field) for m in template.mappings]
    out = joined.select("row_number", "iri", pl.concat_list(
        [pl.when(f).then(pl.lit(m.field)).otherwise(None) for f, m in zip(flags, template.mappings)]
    ).list.drop_nulls().alias("changed")) if flags else joined.select("row_number", "iri", pl.lit([]).alias("changed"))
    return out


def _normalise_existing_phones(joined: pl.DataFrame, template: Template) -> pl.DataFrame:
    """Existing phone numbers to E.164 with the record's country as region (unique values only)."""
    idx = joined.with_row_index("__r")
    region = (pl.col("address.country#e") if "address.country#e" in joined.columns else pl.lit(None, pl.String))
    long = idx.select("__r", region.alias("__region"), pl.col("phoneNumbers#e")).explode("phoneNumbers#e")
    long = long.drop_nulls("phoneNumbers#e").unnest("phoneNumbers#e")
    spec = {"phone": {"default_region": template.default_region}}
    long = long.with_columns(apply_transforms(pl.col("phoneNumber"), [spec], direction="clean",
                                              context={"region": pl.col("__region")}).alias("phoneNumber"))
    back = long.group_by("__r").agg(pl.struct("phoneNumber", "phoneType").alias("phoneNumbers#e"))
    return idx.drop("phoneNumbers#e").join(back, on="__r", how="left").with_columns(
        pl.col("phoneNumbers#e").fill_null(pl.lit([], dtype=PHONE_DTYPE))).sort("__r").drop("__r")


def _changed_expr(m: Mapping, template: Template) -> pl.Expr:
    s, e = pl.col(m.field), pl.col(f"{m.field}#e")
    if m.kind in ("scalar", "bool"):
        if m.policy == "never":
            return pl.lit(False)
        if m.policy == "fill_if_empty":
            return e.is_null() & s.is_not_null()
        differs = s.ne_missing(e)
        return differs & s.is_not_null() if template.empty == "ignore" else differs
    if m.kind == "phones":
        sn, en = s.list.eval(pl.element().struct.field("phoneNumber")), e.list.eval(pl.element().struct.field("phoneNumber"))
        typed = s.list.eval(pl.element().filter(pl.element().struct.field("phoneType").is_not_null()))
        sk = _keys(typed)
        ek = _keys(e)
        new = sn.list.set_difference(en).list.len() > 0
        retyped = sk.list.set_difference(ek).list.len() > 0
        if m.policy == "merge":
            return new | retyped
        gone = en.list.set_difference(sn).list.len() > 0
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
        _put(body, m, _api_value(m, row.get(m.field)))
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
        before = _get(record, m.field)
        value = _api_value(m, _desired(m, row.get(m.field), before, record, template))
        if m.field in changed:
            changes.append({"field": m.field, "before": _js(before), "after": _js(value)})
        _put(after, m, value)
    if template.mode != "replace":
        if "address" in after:
            after["address"] = {**_clean_obj(record.get("address")), **after["address"]}
        return after, changes, []
    return _put_body(record, after, template)


def _put_body(record: dict, after: dict, template: Template) -> tuple[dict, list[dict], list[str]]:
    base = {} if template.clear_unmapped else {k: v for k, v in record.items() if k not in READ_ONLY}
    body = {**base, **after}
    if "address" in after and not template.clear_unmapped:
        body["address"] = {**_clean_obj(record.get("address")), **after["address"]}
    body["emailAddresses"] = [_clean_obj(e) for e in body.get("emailAddresses") or []]
    body["phoneNumbers"] = [_clean_obj(p) for p in body.get("phoneNumbers") or []]
    cleared = sorted(k for k, v in record.items() if k not in READ_ONLY and v not in (None, [], {})
                     and body.get(k) in (None, [], {}))
    changes = [{"field": k, "before": _js(record.get(k)), "after": _js(body.get(k))}
               for k in sorted(set(body) | set(cleared)) if k not in READ_ONLY
               and _canon(record.get(k)) != _canon(body.get(k))]
    return body, changes, cleared


def snapshot(record: dict, changed: list[str]) -> dict:
    """The record's current values of the fields an update touches (for the drift check)."""
    tops = sorted({f.split(".")[0] for f in changed})
    return {t: record.get(t) for t in tops}


def _desired(m: Mapping, sheet: Any, before: Any, record: dict, template: Template) -> Any:
    if m.kind in ("scalar", "bool"):
        if m.policy == "never" or (m.policy == "fill_if_empty" and before not in (None, "")):
            return before
        return sheet if sheet is not None or template.empty == "clear" else before
    sheet = sheet or []
    if m.kind == "phones":
        country = (record.get("address") or {}).get("country")
        return _desired_phones(m, sheet, before or [], country, template)
    existing = [e["email"] for e in before or []] if m.kind == "emails" else list(before or [])
    if m.policy == "replace" and (sheet or template.empty == "clear"):
        return list(sheet)
    if m.policy == "replace":
        return existing
    norm = {x.strip().lower() for x in existing} if m.kind == "emails" else set(existing)
    return existing + [x for x in sheet if x not in norm]


def _desired_phones(m: Mapping, sheet: list, before: list, country: str | None,
                    template: Template) -> list:
    nums = [p.get("phoneNumber") for p in before]
    spec = {"phone": {"default_region": template.default_region}}
    norm = pl.DataFrame({"n": nums, "r": [country] * len(nums)}, schema={"n": pl.String, "r": pl.String}).select(
        apply_transforms(pl.col("n"), [spec], direction="clean", context={"region": pl.col("r")})
    )["n"].to_list() if nums else []
    by_num = {n: i for i, n in enumerate(norm)}
    if m.policy == "replace" and (sheet or template.empty == "clear"):
        return [{"phoneNumber": p["phoneNumber"],
                 "phoneType": p["phoneType"] or (before[by_num[p["phoneNumber"]]].get("phoneType")
                                                 if p["phoneNumber"] in by_num else None)} for p in sheet]
    out = [_clean_obj(p) for p in before]
    for p in sheet:
        i = by_num.get(p["phoneNumber"])
        if i is None:
            out.append({"phoneNumber": p["phoneNumber"], "phoneType": p["phoneType"]})
        elif p["phoneType"]:
            out[i]["phoneType"] = p["phoneType"]
    return out


def _api_value(m: Mapping, value: Any) -> Any:
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


def _get(record: dict, field: str) -> Any:
    top, _, sub = field.partition(".")
    val = record.get(top)
    return (val or {}).get(sub) if sub else val


def _clean_obj(obj: Any) -> dict:
    """An embedded object without JSON-LD keys (crm-api.md §8.2: clients ignore them)."""
    return {k: v for k, v in (obj or {}).items() if not k.startswith("@")}


def _canon(value: Any) -> str:
    if isinstance(value, list):
        value = [_clean_obj(v) if isinstance(v, dict) else v for v in value]
    if isinstance(value, dict):
        value = _clean_obj(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False) if value not in (None, [], {}, "") else "null"


def _js(value: Any) -> str | None:
    if isinstance(value, dict):
        value = _clean_obj(value)
    if isinstance(value, list):
        value = [_clean_obj(v) if isinstance(v, dict) else v for v in value]
    return None if value in (None, [], {}) else json.dumps(value, ensure_ascii=False)
