"""Stage 4c: the organization writes of a plan, column-wise: POST and merge-patch bodies as JSON.

Input `w`: one row per row to write, with
- `row_number` (Int64), `iri` (String; null: create), `__changed` (List(String): the fields a
  patch changes, `diff.changed_fields`; null for a create);
- the mapped field columns (`mapping.map_rows`: String, Boolean, List(String), `PHONE_DTYPE`);
- the matched record as it is (`<top>#r`, API shape of `match.records_schema`) and normalised
  (`<field>#e`, `diff.existing_values`); null for a create.
Output: an `OP_SCHEMA` frame (`planfile.py`), one operation per row, in the order of `w`.

Body rules (issue 5, the same as `diff.create_body` / `diff.update`): a create sends every
non-empty mapped field; a patch sends only the changed fields, lists complete (RFC 7396 replaces
arrays; `merge` lists are the record's items plus the sheet's new ones) and `address` complete
(crm-api.md §8.2); an emptied field is sent as null. `phoneType` is left out when null
(crm-api.md §8.2: omission is allowed). Phone lists of patched records are merged by
`diff.desired_phones` (per changed record: a number matches by its E.164 form).
"""
from __future__ import annotations

import json

import polars as pl

from . import diff
from .planfile import CHANGE_DTYPE, OP_SCHEMA
from .template import LIST_KINDS, Mapping, Template

_EMPTY_JSON = ["null", "[]", "{}", '""']


def json_value(expr: pl.Expr, *, phones: bool = False) -> pl.Expr:
    """JSON text of each value of `expr` (any dtype; null -> `null`); `phones`: a phone list,
    whose null `phoneType`s are left out."""
    text = pl.struct(expr.alias("v")).struct.json_encode().str.slice(5).str.head(-1)
    return text.str.replace_all(',"phoneType":null', "", literal=True) if phones else text


def _or_null(text: pl.Expr) -> pl.Expr:
    """JSON text, or null for an empty value (as `diff._js`)."""
    return pl.when(text.is_in(_EMPTY_JSON)).then(None).otherwise(text)


def _obj(frags: list[pl.Expr]) -> pl.Expr:
    """A JSON object from `"key":value` fragments (null fragments left out)."""
    if not frags:
        return pl.lit("{}")
    return pl.concat_str([pl.lit("{"), pl.concat_str(frags, separator=",", ignore_nulls=True), pl.lit("}")])


def _frag(key: str, value_json: pl.Expr, when: pl.Expr) -> pl.Expr:
    return pl.when(when).then(pl.concat_str([pl.lit(json.dumps(key) + ":"), value_json]))


def _api(m: Mapping, col: pl.Expr) -> pl.Expr:
    """A mapped column in API shape (e-mails as [{email}])."""
    if m.kind == "emails":
        return col.list.eval(pl.struct(pl.element().alias("email")))
    return col


def _groups(template: Template) -> dict[str, list[Mapping]]:
    """Mappings by top-level body key (`address` gathers `address.*`), in template order."""
    out: dict[str, list[Mapping]] = {}
    for m in template.mappings:
        out.setdefault(m.field.split(".")[0], []).append(m)
    return out


def _non_empty(m: Mapping, col: pl.Expr) -> pl.Expr:
    if m.kind in LIST_KINDS:
        return col.list.len() > 0
    return col.is_not_null()


# --- creates -----------------------------------------------------------------------------------

def _creates(w: pl.DataFrame, template: Template) -> pl.DataFrame:
    """POST bodies of new records (every non-empty field) and their `changes` (before null)."""
    cols, tops = [], list(_groups(template).items())
    for i, (top, ms) in enumerate(tops):  # each value encoded once, for the body and `changes`
        if "." in ms[0].field:
            value = _obj([_frag(m.field.split(".", 1)[1], json_value(pl.col(m.field)),
                                pl.col(m.field).is_not_null()) for m in ms])
            present = value != "{}"
        else:
            m = ms[0]
            value = json_value(_api(m, pl.col(m.field)), phones=m.kind == "phones")
            present = _non_empty(m, pl.col(m.field))
        cols += [value.alias(f"__v{i}"), present.alias(f"__p{i}")]
    w = w.with_columns(cols)
    v, p = (lambda i: pl.col(f"__v{i}")), (lambda i: pl.col(f"__p{i}"))
    title = pl.col("title") if "title" in w.columns else pl.lit(None, pl.String)
    out = w.select("row_number", pl.lit("create").alias("op"), pl.lit("POST").alias("method"),
                   pl.lit("/organizations").alias("path"),
                   _obj([_frag(top, v(i), p(i)) for i, (top, _) in enumerate(tops)]).alias("body"), "iri",
                   title.alias("title"), pl.lit(None, pl.String).alias("snapshot"))
    return _with_changes(out, w, [(top, p(i), pl.lit(None, pl.String), v(i)) for i, (top, _) in enumerate(tops)])


def _with_changes(out: pl.DataFrame, w: pl.DataFrame, items: list[tuple]) -> pl.DataFrame:
    """Add `changes` ([{field, before, after}]) from (field, present, before JSON, after JSON)
    items: worked out in long form, only where a field is present."""
    if not items:
        return out.with_columns(pl.lit([], dtype=CHANGE_DTYPE).alias("changes"))
    lw = w.lazy()  # one query: each part filters only the columns it reads
    long = [lw.filter(present).select("row_number", pl.lit(i).alias("__o"), pl.lit(f).alias("field"),
                                      before.alias("before"), after.alias("after"))
            for i, (f, present, before, after) in enumerate(items)]
    grouped = pl.concat(long).sort("row_number", "__o").group_by("row_number", maintain_order=True).agg(
        pl.struct("field", "before", "after").alias("changes")).collect().rechunk()  # a join
    # gathers a list of structs from several chunks many times slower than from one
    return out.join(grouped, on="row_number", how="left", maintain_order="left").with_columns(
        pl.col("changes").fill_null(pl.lit([], dtype=CHANGE_DTYPE)))


# --- patches -----------------------------------------------------------------------------------

def _has(f: str) -> pl.Expr:
    return pl.col("__changed").list.contains(pl.lit(f))


def _desired(m: Mapping, stored: bool = False) -> pl.Expr:
    """The value a patch sends for a changed field (API shape). `stored`: the template
    compares values as stored (`compare: stored`), so a merge keeps the record's items in
    their normalised form, not as stored (`Info@X.COM` becomes `info@x.com`, not a second item)."""
    s = pl.col(m.field)
    if m.kind in ("scalar", "bool"):
        return s
    if m.kind == "phones":
        return pl.col(f"{m.field}@json")  # already JSON (see `_phone_json`)
    existing = pl.col(f"{m.field}#e") if stored else pl.col(f"{m.field}#r")
    if m.kind == "emails" and not stored:
        existing = existing.list.eval(pl.element().struct.field("email"))
    if stored:  # each normalised item once (two stored spellings of one address are one)
        existing = existing.list.unique(maintain_order=True)
    if m.policy == "merge":
        new = s.fill_null([]).list.set_difference(pl.col(f"{m.field}#e").fill_null([]))
        s = pl.concat_list(existing.fill_null(pl.lit([], dtype=pl.List(pl.String))), new)
    return _api(m, s)


def _desired_json(m: Mapping, stored: bool = False) -> pl.Expr:
    return _desired(m) if m.kind == "phones" else json_value(_desired(m, stored))


def _before_json(m: Mapping) -> pl.Expr:
    return json_value(diff.stored(m.field), phones=m.kind == "phones")


def _patch_columns(w: pl.DataFrame, template: Template, changed: set[str]) -> pl.DataFrame:
    """`w` plus, per mapping j of a field in `changed` (the fields some row changes),
    `__h{j}` (changed), `__a{j}` (the value after, JSON) and `__b{j}` (before, JSON or null
    when empty), worked out once for body and `changes`; for a list field also `__s{j}` (the
    record's list as JSON, for the snapshot). A list field's JSON is worked out only on the
    rows that change it (lists cost most to encode)."""
    cols, lists, stored = [], [], template.compare == "stored"
    for j, m in enumerate(template.mappings):
        if m.field not in changed:
            continue
        cols.append(_has(m.field).alias(f"__h{j}"))
        if m.kind in ("scalar", "bool"):
            cols += [_desired_json(m, stored).alias(f"__a{j}"), _or_null(_before_json(m)).alias(f"__b{j}")]
        else:
            lists.append((j, m))
    w = w.with_columns(cols)
    return w.with_columns(col for j, m in lists for col in (
        _where(w, pl.col(f"__h{j}"), _desired_json(m, stored), f"__a{j}"),
        _where(w, pl.col(f"__h{j}"), _before_json(m), f"__s{j}"))).with_columns(
        _or_null(pl.col(f"__s{j}")).alias(f"__b{j}") for j, _ in lists)


def _where(w: pl.DataFrame, when: pl.Expr, value: pl.Expr, name: str) -> pl.Series:
    """String `value` on the rows of `w` where `when` holds (null elsewhere), worked out on
    those rows only."""
    at = w.select(pl.arg_where(when)).to_series()
    out = pl.repeat(None, w.height, dtype=pl.String, eager=True).alias(name)
    if at.len():
        used = w.select(list(dict.fromkeys(value.meta.root_names())))[at]
        out = out.scatter(at, used.select(value).to_series())
    return out


def _patch_parts(template: Template, schema: dict, changed: set[str]) -> tuple[list, list, list]:
    """Body fragments, `changes` items and snapshot items (top, touched, the record's value as
    JSON) of a merge patch, over the columns of `_patch_columns` (fields in `changed` only: a
    top-level field no row changes is in no body)."""
    index = {m.field: j for j, m in enumerate(template.mappings)}
    h, after = (lambda f: pl.col(f"__h{index[f]}")), (lambda f: pl.col(f"__a{index[f]}"))
    frags, changes, snap = [], [], []
    for top, every in _groups(template).items():
        ms = [m for m in every if m.field in changed]
        if not ms:
            continue
        touched = pl.any_horizontal([h(m.field) for m in ms])
        if "." in ms[0].field:
            subs = {m.field.split(".", 1)[1]: m for m in ms}  # other sub-fields: as stored
            known = [f.name for f in schema[f"{top}#r"].fields]
            inner = []
            for k in known + [k for k in subs if k not in known]:
                raw = pl.col(f"{top}#r").struct.field(k) if k in known else pl.lit(None, pl.String)
                if k in subs:
                    ch = h(subs[k].field)
                    value = pl.when(ch).then(after(subs[k].field)).otherwise(json_value(raw))
                    inner.append(_frag(k, value, ch | raw.is_not_null()))
                else:
                    inner.append(_frag(k, json_value(raw), raw.is_not_null()))
            frags.append(_frag(top, _obj(inner), touched))
        else:
            frags.append(_frag(top, after(ms[0].field), touched))
        changes += [(m.field, h(m.field), pl.col(f"__b{index[m.field]}"), _or_null(after(m.field)))
                    for m in ms]
        j = index[ms[0].field]
        stored = pl.col(f"__s{j}") if f"__s{j}" in schema else \
            json_value(pl.col(f"{top}#r"), phones=top == "phoneNumbers")
        snap.append((top, touched, stored))
    return frags, changes, snap


def _snapshot(snap: list[tuple[str, pl.Expr, pl.Expr]]) -> pl.Expr:
    """{top: the record's value (JSON)} of each touched top-level field, keys sorted (drift
    check)."""
    return _obj([_frag(top, stored, touched) for top, touched, stored in sorted(snap, key=lambda t: t[0])])


def _phone_json(w: pl.DataFrame, template: Template) -> pl.DataFrame:
    """Add `phoneNumbers@json`: the merged phone list a patch sends (rows changing phones only)."""
    m = template.mapping("phoneNumbers")
    if m is None or "phoneNumbers#r" not in w.columns:
        return w
    todo = w.with_row_index("__i").filter(pl.col("iri").is_not_null() & _has("phoneNumbers"))
    out: list[str | None] = [None] * w.height
    cols = todo.select("__i", "phoneNumbers", "phoneNumbers#r", diff.phone_numbers(pl.col("phoneNumbers#e")))
    stored = template.compare == "stored"  # the record's numbers go in their E.164 form
    for i, sheet, before, norm in cols.iter_rows():
        if stored:
            before, norm = _once([{**b, "phoneNumber": n or b["phoneNumber"]} for b, n in zip(before or [], norm or [])])
        value = diff.desired_phones(m, sheet or [], before or [], norm or [], template)
        out[i] = diff.compact_json(diff.api_value(m, value))
    return w.with_columns(pl.Series("phoneNumbers@json", out, dtype=pl.String))


def _once(phones: list[dict]) -> tuple[list[dict], list[str]]:
    """`phones` (API shape, numbers normalised) with each number once, keeping the first
    entry's place and the first type any entry of the number has; and their numbers."""
    out: dict[str, dict] = {}
    for p in phones:
        seen = out.get(p["phoneNumber"])
        if seen is None:
            out[p["phoneNumber"]] = dict(p)
        elif not seen.get("phoneType") and p.get("phoneType"):
            seen["phoneType"] = p["phoneType"]
    return list(out.values()), list(out)


# --- the operations frame ----------------------------------------------------------------------

def _identifiers(template: Template, columns: dict[str, pl.DataType]) -> pl.Expr:
    """{field: [values]} of the row's identifiers (finds a create whose answer was lost)."""
    frags = []
    for f in template.identifiers:
        if f not in columns:
            continue
        col = pl.col(f)
        if f == "phoneNumbers":
            col = diff.phone_numbers(col)
        elif not isinstance(columns[f], pl.List):
            col = pl.when(col.is_not_null() & (col != "")).then(pl.concat_list(col.cast(pl.String)))
        frags.append(_frag(f, json_value(col), col.list.len() > 0))
    return _obj(frags)


def _depends(tags: list[str]) -> pl.Expr:
    if not tags:
        return pl.lit([], dtype=pl.List(pl.String))
    return pl.concat_list([pl.when(pl.col("body").str.contains(f'"$ref:tag:{t}"', literal=True))
                           .then(pl.lit(f"tag:{t}")) for t in tags]).list.drop_nulls()


def _patches(w: pl.DataFrame, template: Template) -> pl.DataFrame:
    """Merge-patch bodies of changed records, their `changes` and drift snapshots."""
    changed = set(w["__changed"].explode().drop_nulls().unique().to_list())
    w = _patch_columns(_phone_json(w, template), template, changed)
    frags, changes, snap = _patch_parts(template, w.schema, changed)
    title = pl.col("title#r") if "title#r" in w.columns else pl.lit(None, pl.String)
    out = w.select("row_number", pl.lit("patch").alias("op"), pl.lit("PATCH").alias("method"),
                   pl.col("iri").alias("path"), _obj(frags).alias("body"), "iri", title.alias("title"),
                   _snapshot(snap).alias("snapshot"))
    return _with_changes(out, w, changes)


def _replaces(w: pl.DataFrame, records: dict[str, dict], template: Template) -> pl.DataFrame:
    """PUT bodies (template `mode: replace`), each built from the whole record (`diff.update`:
    unmapped fields kept unless `clear_unmapped`, every field it empties in `cleared`)."""
    out: dict[str, list] = {k: [] for k in ("row_number", "body", "title", "snapshot", "changes", "cleared")}
    for row in w.iter_rows(named=True):
        record, changed = records[row["iri"]], row["__changed"]
        body, changes, cleared = diff.update(row, record, changed, template)
        for k, v in (("row_number", row["row_number"]), ("body", diff.compact_json(body)),
                     ("title", record.get("title")),
                     ("snapshot", diff.compact_json(diff.put_snapshot(record))),
                     ("changes", changes), ("cleared", cleared)):
            out[k].append(v)
    frame = pl.DataFrame(out, schema={"row_number": pl.Int64, "body": pl.String, "title": pl.String,
                                      "snapshot": pl.String, "changes": CHANGE_DTYPE,
                                      "cleared": pl.List(pl.String)})
    return w.select("row_number", pl.lit("replace").alias("op"), pl.lit("PUT").alias("method"),
                    pl.col("iri").alias("path"), "iri").join(frame, on="row_number", maintain_order="left")


def write_ops(w: pl.DataFrame, template: Template, tags: list[str],
              records: dict[str, dict] | None = None) -> pl.DataFrame:
    """One create (POST), merge patch (PATCH) or, for a template with `mode: replace`, PUT per
    row of `w` (see module docstring).

    Args:
        w: the rows to write (module docstring); patches need the `#r` and `#e` columns.
        tags: tag names the plan creates (`lookups.resolve_lookups`); bodies refer to them
            as `$ref:tag:<name>` and depend on their operations.
        records: IRI -> record JSON; needed for PUT, whose body starts from the whole record.

    Returns:
        An `OP_SCHEMA` frame in row order: key `row:<n>`, bodies as JSON text.
    """
    w = w.with_columns(_identifiers(template, w.schema).alias("identifiers"))
    nulls = w["iri"].null_count()
    if nulls in (0, w.height):  # one kind only, as `plan` calls it: no copies
        creates, updates = (w, w.clear()) if nulls else (w.clear(), w)
    else:
        creates, updates = w.filter(pl.col("iri").is_null()), w.filter(pl.col("iri").is_not_null())
    empty = pl.lit([], dtype=pl.List(pl.String))
    parts = []
    if creates.height:
        parts.append(_creates(creates, template).with_columns(empty.alias("cleared")))
    if updates.height and template.mode == "replace":
        parts.append(_replaces(updates, records or {}, template))
    elif updates.height:
        parts.append(_patches(updates, template).with_columns(empty.alias("cleared")))
    if not parts:
        return pl.DataFrame(schema=OP_SCHEMA)
    ids = w.select("row_number", "identifiers")
    out = pl.concat(parts, how="diagonal_relaxed").sort("row_number").join(ids, on="row_number", maintain_order="left")
    return out.select(
        pl.format("row:{}", pl.col("row_number")).alias("key"), "op", "method", "path", "body",
        pl.concat_list(pl.col("row_number")).alias("row_numbers"), "iri", "title", "identifiers",
        "snapshot", pl.col("changes").cast(CHANGE_DTYPE), "cleared",
        _depends(tags).alias("depends_on"), pl.lit("organizations").alias("resource"),
        pl.lit([], dtype=pl.List(pl.String)).alias("content_key"))
