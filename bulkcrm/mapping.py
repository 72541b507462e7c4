"""Stage 2: map a read sheet onto API fields through a template (columns -> fields).

Input: the `read.Sheet.frame` (`row_number` Int64 + one String column per sheet column).
Output: the *mapped frame*, one row per input row, with columns:

- `row_number` (Int64)
- one column per mapped field, named by the field path (`title`, `address.city`, ...):
  scalars String, `flagged`/`isPrivate` Boolean, `emailAddresses`/`tags`/`segments`/`people`
  List(String), `phoneNumbers` List(Struct{phoneNumber: String, phoneType: String})
- `__iri` (String): the explicit IRI column, when the template names one and the sheet has it
- `__raw.<field>` (List(String)) for identifier fields: the values as the sheet wrote them
  (trimmed), so lookups can also send the sheet's form (issue 5); (String) for boolean fields,
  whose clean gives null for a word it does not know, so the validator can see that word

Every value is cleaned by the template's transforms, then by the field's normaliser
(`template.FIELD_RULES`: E.164 phones, ISO 3166-1 alpha-2 countries, lower-case e-mails, ...).
Values that cannot be cleaned pass through unchanged; `validate` reports them.
"""
from __future__ import annotations

from typing import Any

import polars as pl

from .errors import InputError
from .template import Mapping, Source, Template, thaw
from .transforms import apply_transforms

PHONE_DTYPE = pl.List(pl.Struct({"phoneNumber": pl.String, "phoneType": pl.String}))
_LIST_KINDS = ("list", "emails")
_IDX = "__idx"
_CHUNK_ROWS = 250_000
"""Rows mapped at a time (every step is row-wise, so chunks give the same frame)."""


def map_rows(frame: pl.DataFrame, template: Template, *, path: str | None = None) -> pl.DataFrame:
    """Map a sheet frame onto API fields (see module docstring for the output shape).

    Args:
        frame: `row_number` + String columns, as `read.read(...).frame`.
        template: the loaded template.
        path: input file name for error messages.

    Raises:
        InputError: a column the template needs is missing from the sheet (names the missing
            columns and the ones present). Bad values are not raised: `validate` reports them.
    """
    _check_columns(frame, template, path)
    if frame.height > _CHUNK_ROWS:  # bounds the intermediate columns of a big sheet
        parts = [_map(part, template) for part in frame.iter_slices(_CHUNK_ROWS)]
        if all(p.schema == parts[0].schema for p in parts):
            return pl.concat(parts, how="vertical")
    return _map(frame, template)


def _map(frame: pl.DataFrame, template: Template) -> pl.DataFrame:
    df = _null_tokens(frame, template).with_row_index(_IDX)
    scalar_maps = [m for m in template.mappings if m.kind in ("scalar", "bool")]
    out = df.select(_IDX, "row_number", *[_scalar_expr(m, template).alias(m.field) for m in scalar_maps],
                    *[pl.col(m.sources[0].column).str.strip_chars().alias(f"__raw.{m.field}")
                      for m in scalar_maps if m.kind == "bool" and m.sources[0].column])
    for m in template.mappings:
        if m.kind in _LIST_KINDS:
            out = out.join(_list_frame(df, m, template), on=_IDX, how="left")
        elif m.kind == "phones":
            region = out.select(_IDX, _region_expr(template, out).alias("__region"))
            cols = {c for s in m.sources for c in (s.column, s.type_column) if c}
            phones = df.select(_IDX, *sorted(cols)).join(region, on=_IDX)
            out = out.join(_phone_frame(phones, m, template), on=_IDX, how="left")
    for f in template.identifiers:
        out = out.join(_raw_identifiers(df, template.mapping(f)), on=_IDX, how="left")
    out = out.with_columns(_empty_list(c, out.schema[c]) for c in out.columns
                           if isinstance(out.schema[c], pl.List))
    if template.iri_column and template.iri_column in frame.columns:
        out = out.with_columns(df[template.iri_column].str.strip_chars().alias("__iri"))
    return out.sort(_IDX).drop(_IDX)


def _check_columns(frame: pl.DataFrame, template: Template, path: str | None) -> None:
    needed = [c for c in template.columns if c != template.iri_column]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        present = [c for c in frame.columns if c != "row_number"]
        raise InputError(
            f"column(s) {', '.join(map(repr, missing))} required by template "
            f"{template.path} not found; the sheet has: {', '.join(map(repr, present))}",
            path=path, row_number=1)


def _null_tokens(frame: pl.DataFrame, template: Template) -> pl.DataFrame:
    """Trimmed empty cells and the template's null tokens become null (never anything else)."""
    cols = [c for c in template.columns if c in frame.columns]
    tokens = [t.strip() for t in template.null_tokens]
    exprs = []
    for c in cols:
        trimmed = pl.col(c).str.strip_chars()
        is_null = (trimmed == "") | trimmed.is_in(tokens) if tokens else trimmed == ""
        exprs.append(pl.when(is_null).then(None).otherwise(pl.col(c)).alias(c))
    return frame.with_columns(exprs)


def _specs(source: Source) -> list:
    return [thaw(t) for t in source.transforms]


def _normaliser(m: Mapping, source: Source, template: Template,
                region: pl.Expr | None = None) -> list:
    """The field's own normaliser spec, unless the template already lists it (with options)."""
    name = m.rules.get("normalise")
    if m.lookup is None and m.rules.get("iri"):
        name = "iri"
    if not name:
        return []
    named = {(next(iter(s)) if isinstance(s, dict) else s) for s in _specs(source)}
    if name in named:
        return []
    opts: dict[str, Any] = {}
    if name == "iri":
        opts = {"collection": m.rules["iri"]}
    elif name == "phone":
        opts = {"default_region": template.default_region}
    return [{name: opts} if opts else name]


def chain(m: Mapping, source: Source, template: Template) -> list:
    """The transform specs a source's values go through on import, in clean order: the
    template's own transforms, then the field's normaliser, options filled in. Export runs the
    same chain as `render`, so clean(render(x)) == x."""
    specs = _specs(source) + _normaliser(m, source, template)
    return [_with_defaults(s, m, template) for s in specs]


def _clean(expr: pl.Expr, m: Mapping, source: Source, template: Template,
           context: dict[str, pl.Expr] | None = None) -> pl.Expr:
    specs = chain(m, source, template)
    return apply_transforms(expr, specs, direction="clean", context=context) if specs else expr


def _with_defaults(spec: Any, m: Mapping, template: Template) -> Any:
    """Fill options the template leaves out: the IRI collection, the default phone region."""
    name, opts = (next(iter(spec.items())) if isinstance(spec, dict) else (spec, {}))
    opts = dict(opts or {})
    if name == "iri":
        opts.setdefault("collection", m.rules.get("iri"))
    if name == "phone":
        opts.setdefault("default_region", template.default_region)
    return {name: opts} if opts else name


def _scalar_expr(m: Mapping, template: Template) -> pl.Expr:
    s = m.sources[0]
    if s.column is None:
        return pl.lit(s.value, dtype=pl.Boolean if m.kind == "bool" else pl.String)
    return _clean(pl.col(s.column), m, s, template)


def _list_frame(df: pl.DataFrame, m: Mapping, template: Template) -> pl.DataFrame:
    """Explode split cells to one item per row, clean the items, gather them per row."""
    parts = []
    for s in m.sources:
        if s.column is None:
            parts.append(df.select(_IDX, pl.lit(s.value, dtype=pl.String).alias("__item")))
            continue
        items = df.select(_IDX, pl.col(s.column).str.split(s.split or ";").alias("__item"))
        parts.append(items.explode("__item"))
    long = pl.concat(parts).with_columns(pl.col("__item").str.strip_chars())
    long = long.filter(pl.col("__item").is_not_null() & (pl.col("__item") != ""))
    # every source of a list field shares the first source's transforms
    long = long.with_columns(_clean(pl.col("__item"), m, m.sources[0], template).alias("__item"))
    return long.group_by(_IDX, maintain_order=True).agg(pl.col("__item").unique(maintain_order=True).alias(m.field))


def _phone_frame(df: pl.DataFrame, m: Mapping, template: Template) -> pl.DataFrame:
    parts = []
    for s in m.sources:
        if s.column is None:
            continue
        type_expr = (pl.col(s.type_column).str.strip_chars().str.to_lowercase() if s.type_column
                     else pl.lit(s.phone_type, dtype=pl.String))
        if s.type_map:
            type_expr = type_expr.replace(dict(s.type_map))
        items = df.select(_IDX, pl.col(s.column).str.split(s.split).alias("__num") if s.split
                          else pl.col(s.column).alias("__num"), type_expr.alias("__type"), "__region")
        items = items.explode("__num") if s.split else items
        items = items.filter(pl.col("__num").str.strip_chars().str.len_chars() > 0)
        items = items.with_columns(_clean(pl.col("__num"), m, s, template,
                                          context={"region": pl.col("__region")}).alias("__num"))
        parts.append(items)
    if not parts:
        return df.select(_IDX, pl.lit(None, dtype=PHONE_DTYPE).alias(m.field)).head(0)
    long = pl.concat(parts).unique([_IDX, "__num"], keep="first", maintain_order=True)
    return long.group_by(_IDX, maintain_order=True).agg(
        pl.struct(pl.col("__num").alias("phoneNumber"), pl.col("__type").alias("phoneType")).alias(m.field))


def _region_expr(template: Template, out: pl.DataFrame) -> pl.Expr:
    if "address.country" in out.columns:
        return pl.col("address.country").fill_null(pl.lit(template.default_region, dtype=pl.String))
    return pl.lit(template.default_region, dtype=pl.String)


def _empty_list(column: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(column).fill_null(pl.lit([], dtype=dtype))


def _raw_identifiers(df: pl.DataFrame, m: Mapping) -> pl.DataFrame:
    """The identifier values as the sheet wrote them (trimmed), one list per row."""
    parts = []
    for s in m.sources:
        if s.column is None:
            continue
        col = pl.col(s.column).str.split(s.split) if s.split else pl.col(s.column)
        part = df.select(_IDX, col.alias("__raw"))
        parts.append(part.explode("__raw") if s.split else part)
    name = f"__raw.{m.field}"
    if not parts:
        return df.select(_IDX, pl.lit([], dtype=pl.List(pl.String)).alias(name))
    long = pl.concat(parts).with_columns(pl.col("__raw").str.strip_chars())
    long = long.filter(pl.col("__raw").is_not_null() & (pl.col("__raw") != ""))
    return long.group_by(_IDX).agg(pl.col("__raw").unique().alias(name))

