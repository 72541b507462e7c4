"""Named value transforms of bulkcrm templates, identifier normalisers and validator checks.

Stage: between reading and validating (clean, sheet -> API) and in export (render, API -> sheet).
Input: `pl.Expr` over `pl.String` columns; output: `pl.Expr` (nulls stay null). Modelled on
django-import-export widgets: each `Transform` pairs `clean` with `render`, and
`clean(render(x)) == x` for every cleaned `x`, so export-then-import changes nothing.

Clean never raises for a bad value: it returns the trimmed original, and the matching entry of
`CHECKS` (defined in `bulkcrm.normalize`, re-exported here) flags it; the validator turns failed
checks into `Issue`s. Exceptions: `boolean` gives null (run the `boolean` check on the raw text)
and `split` gives `List(String)`. Outputs keep the input column's name.

Usage::

    >>> df = pl.DataFrame({"phone": ["050 - 555 09 09"], "country": ["Netherlands"]})
    >>> df.select(apply_transforms(pl.col("phone"), ["trim", {"phone": {"region": "country"}}]))
    # phone: ["+31505550909"]
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial, wraps
from typing import Any

import polars as pl

from bulkcrm.errors import TemplateError, did_you_mean
from bulkcrm.normalize import (ALPHA2, BARE_HOST, CHECK_ISSUE_TYPES, CHECK_RULES, CHECK_SEVERITY, CHECKS,
                               FALSE_WORDS, PHONE_TYPES, TRUE_WORDS, check_list, check_rule, clean_country,
                               clean_datetime, clean_phone, phone_identifier, render_country,
                               render_datetime, trimmed)

__all__ = [
    "Transform", "TRANSFORMS", "apply_transforms", "split_clean", "normalize_identifier",
    "IDENTIFIER_KINDS", "CHECKS", "CHECK_RULES", "CHECK_ISSUE_TYPES", "CHECK_SEVERITY", "check_list",
    "check_rule", "PHONE_TYPES", "TRUE_WORDS", "FALSE_WORDS",
]


@dataclass(frozen=True)
class Transform:
    """One named transform: `clean` (sheet -> API) and `render` (API -> sheet).

    Both take the value expr first plus keyword options from the template YAML.
    """

    name: str
    """The name used in templates, e.g. `phone`."""
    clean: Callable[..., pl.Expr]
    """`clean(expr, **options) -> pl.Expr`."""
    render: Callable[..., pl.Expr]
    """`render(expr, **options) -> pl.Expr`; satisfies clean(render(x)) == x."""
    doc: str
    """One-line description for `bulkcrm templates --help` style listings."""
    expr_options: tuple[str, ...] = field(default=())
    """Options that take a per-row expression (a context name or column name in YAML)."""

    def options(self) -> set[str]:
        """Return the option names `clean` or `render` accept (beyond the value expr)."""
        names: set[str] = set()
        for fn in (self.clean, self.render):
            params = list(inspect.signature(fn).parameters.values())[1:]
            names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        return names


def _identity(expr: pl.Expr, **_: object) -> pl.Expr:
    return expr


# -------------------------------------------------------------------------- text and case


_SQUISH = r"\s{2,}|[^\S ]"
r"""What `\s+` -> " " changes: runs of 2+ whitespace characters, a lone one other than space."""
_WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"
"""Unicode White_Space, what `\\s` matches in polars' (Rust) regex."""
_SQUISH_FIND = ["  ", *_WHITESPACE.replace(" ", "")]
"""Literals whose presence means `_SQUISH` matches: two spaces, or any other whitespace
character (a run of 2+ holds one unless it is all spaces). Aho-Corasick: faster than the regex."""


def _squish(expr: pl.Expr) -> pl.Expr:
    return trimmed(expr).map_batches(_squish_values, return_dtype=pl.String, is_elementwise=True)


def _squish_values(s: pl.Series) -> pl.Series:
    # finding the values to change costs a quarter of rewriting them all, and few need it
    at = s.str.contains_any(_SQUISH_FIND).fill_null(False).arg_true()
    return s.scatter(at, s.gather(at).str.replace_all(_SQUISH, " ")) if at.len() else s


def _lower(expr: pl.Expr) -> pl.Expr:
    return trimmed(expr).str.to_lowercase()


def _upper(expr: pl.Expr) -> pl.Expr:
    return trimmed(expr).str.to_uppercase()


def _title(expr: pl.Expr) -> pl.Expr:
    return trimmed(expr).str.to_titlecase()


# ------------------------------------------------------------------------------ web ids

_URL = r"^(?<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?<authority>[^/?#]*)(?<rest>.*)$"
_URL_LOWER = r"^[a-z][a-z0-9+.\-]*://[^/?#A-Z\P{ASCII}]*(?:[/?#]|$)"


def _url(expr: pl.Expr, *, default_scheme: str = "https") -> pl.Expr:
    return expr.map_batches(partial(_url_batch, default_scheme=default_scheme),
                            return_dtype=pl.String, is_elementwise=True)


def _url_batch(s: pl.Series, *, default_scheme: str) -> pl.Series:
    """`_url` step by step, each step on the values still open: values with a lower-case
    scheme and host (the usual case) are done once trimmed; of the rest, a bare host
    (`normalize.BARE_HOST`) gets the default scheme, then scheme and host are lower-cased when
    needed. Other text (`info@firm.example`, `urn:isbn:…`) stays as typed: the API takes any
    text as a website (crm-api.md §8.1), and a scheme would make an e-mail a user part."""
    v = pl.col("v")
    rows = s.to_frame("v").select(trimmed(v).alias("v")).with_row_index("__i")
    todo = rows.filter(~v.str.contains(_URL_LOWER))  # nulls drop
    if not todo.height:
        return rows["v"]
    scheme = pl.when(v.str.contains("://", literal=True)).then(v).str.contains(
        r"^[A-Za-z][A-Za-z0-9+.\-]*://").fill_null(False)  # the regex only where it may match
    bare = v.str.strip_prefix("//")
    todo = todo.select("__i", pl.when(~scheme & bare.str.contains(BARE_HOST)).then(
        pl.lit(f"{default_scheme}://") + bare).otherwise(v).alias("v"))
    todo = todo.with_columns(v.str.contains(_URL_LOWER).alias("__ok"))
    parts = todo.filter(~pl.col("__ok")).with_columns(v.str.extract_groups(_URL).alias("__p"))
    p = pl.col("__p").struct
    rebuilt = pl.concat_str([p["scheme"].str.to_lowercase(), pl.lit("://"),
                             p["authority"].str.to_lowercase(), p["rest"]])
    done = pl.concat([todo.filter("__ok").select("__i", "v"),
                      parts.select("__i", pl.coalesce(rebuilt, v).alias("v"))])
    return rows["v"].scatter(done["__i"], done["v"])


_LINKEDIN = (r"(?i)^(?:https?://)?(?:[a-z0-9-]+\.)*linkedin\.com/"
             r"(?:company|school|showcase)/([^/?#\s]+)")


def _linkedin(expr: pl.Expr) -> pl.Expr:
    v = trimmed(expr)
    return pl.coalesce(v.str.extract(_LINKEDIN, 1), v)


_BARE_ID = r"^(?:\d+|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$"


def _iri(expr: pl.Expr, *, collection: str, allow_bare_id: bool = False) -> pl.Expr:
    v = trimmed(expr)
    if not allow_bare_id:
        return v
    return pl.when(v.str.contains(_BARE_ID)).then(pl.lit(f"/{collection}/") + v).otherwise(v)


# ------------------------------------------------------------------------ typed values


def _boolean(expr: pl.Expr) -> pl.Expr:
    v = trimmed(expr).str.to_lowercase()
    return (pl.when(v.is_in(TRUE_WORDS)).then(True)
            .when(v.is_in(FALSE_WORDS)).then(False).otherwise(None).cast(pl.Boolean))


def _boolean_render(expr: pl.Expr) -> pl.Expr:
    return _boolean(expr).cast(pl.String)


# ------------------------------------------------------------------------------- small helpers


def _prefix(expr: pl.Expr, *, value: str) -> pl.Expr:
    v = trimmed(expr)
    return pl.when(v.str.starts_with(value)).then(v).otherwise(pl.lit(value) + v)


def _prefix_render(expr: pl.Expr, *, value: str) -> pl.Expr:
    return expr.str.strip_prefix(value)


def _suffix(expr: pl.Expr, *, value: str) -> pl.Expr:
    v = trimmed(expr)
    return pl.when(v.str.ends_with(value)).then(v).otherwise(v + pl.lit(value))


def _suffix_render(expr: pl.Expr, *, value: str) -> pl.Expr:
    return expr.str.strip_suffix(value)


def _replace(expr: pl.Expr, *, map: Mapping[str, str]) -> pl.Expr:  # noqa: A002 (YAML name)
    return trimmed(expr).replace(_replace_map(map)).cast(pl.String)


def _replace_render(expr: pl.Expr, *, map: Mapping[str, str]) -> pl.Expr:  # noqa: A002
    pairs = _replace_map(map)
    inverse = {v: k for k, v in pairs.items() if v is not None}  # a value made empty stays so
    if len(inverse) != sum(v is not None for v in pairs.values()):
        raise TemplateError("replace map must be one-to-one so export can reverse it", key="map")
    return expr.replace(inverse).cast(pl.String)


def _replace_map(map: Any) -> dict[str, str | None]:  # noqa: A002
    """`replace`'s map as text -> text (null: the value becomes empty).

    Raises:
        TemplateError: not a non-empty mapping, or a true/false in it (YAML reads an unquoted
            yes/no/on/off so).
    """
    if not isinstance(map, Mapping) or not map:
        raise TemplateError("replace's map is a mapping of sheet text: API text, e.g. "
                            "{replace: {map: {Holland: Netherlands}}}", key="map")
    if any(isinstance(x, bool) for kv in map.items() for x in kv):
        raise TemplateError("replace's map takes text: YAML reads an unquoted yes/no/true/false/on/off "
                            "as true or false; quote it ('yes')", key="map")
    return {str(k): None if v is None else str(v) for k, v in map.items()}


def _extract(expr: pl.Expr, *, pattern: str, group: int = 1) -> pl.Expr:
    """The part of a value that regex `pattern` (polars' syntax, that of Rust's regex crate)
    captures in `group` (1: its first group; 0: the whole match), e.g. the address of an Access
    hyperlink cell `Home page#http://example.com/#` with `#([^#]+)#`; a value it does not match
    is kept as it is (so already clean values pass).

    Raises:
        TemplateError: a pattern polars cannot compile, or fewer groups than `group`.
    """
    if not isinstance(group, int) or isinstance(group, bool) or group < 0:
        raise TemplateError("extract's group must be a whole number (0: the whole match)", key="group")
    try:
        pl.select(pl.lit("").str.extract(str(pattern), group))
    except pl.exceptions.ComputeError as e:  # "regex parse error: … error: unclosed group …"
        why = next((ln.strip() for ln in str(e).splitlines() if ln.strip().startswith("error:")), "")
        raise TemplateError(f"extract's pattern {pattern!r} is no regex{' (' + why + ')' if why else ''}",
                            key="pattern") from None
    try:
        groups = re.compile(str(pattern)).groups
    except re.error:  # valid for polars, not for Python's re (e.g. \p{L}): not counted
        groups = group
    if group > groups:
        raise TemplateError(f"extract's pattern {pattern!r} has {groups} group(s), so it has no group "
                            f"{group}; put the part to keep in ( )", key="pattern")
    v = trimmed(expr)
    return pl.coalesce(v.str.extract(str(pattern), group), v)


# ------------------------------------------------------------------------------------ split


def _split(expr: pl.Expr, *, sep: str = ";") -> pl.Expr:
    items = trimmed(expr).str.split(sep).list.eval(trimmed(pl.element()).drop_nulls())
    return pl.when(items.list.len() > 0).then(items).otherwise(None)


def _split_render(expr: pl.Expr, *, sep: str = ";") -> pl.Expr:
    joined = expr.list.join(sep)
    return pl.when(joined == "").then(None).otherwise(joined)


def _keep_name(expr: pl.Expr, out: pl.Expr) -> pl.Expr:
    """Return `out` named as `expr` (when `expr` has a name: `pl.element()` has none)."""
    name = expr.meta.output_name(raise_if_undetermined=False)
    return out.alias(name) if name else out


def _named(fn: Callable[..., pl.Expr]) -> Callable[..., pl.Expr]:
    """Wrap `fn` so its output keeps the input's column name (`phone` stays `phone`)."""

    @wraps(fn)
    def wrapper(expr: pl.Expr, **options: object) -> pl.Expr:
        return _keep_name(expr, fn(expr, **options))

    return wrapper


def _t(name, clean, render, doc, expr_options=()) -> tuple[str, Transform]:
    return name, Transform(name, _named(clean), _named(render), doc, tuple(expr_options))


TRANSFORMS: dict[str, Transform] = dict([
    _t("trim", trimmed, _identity, "strip surrounding whitespace; empty -> null"),
    _t("squish", _squish, _identity, "trim and collapse inner whitespace runs to one space"),
    _t("lower", _lower, _identity, "trim, lower case"),
    _t("upper", _upper, _identity, "trim, upper case"),
    _t("title", _title, _identity, "trim, title case"),
    _t("email", _lower, _identity, "trim, lower case (checked by email-validator)"),
    _t("url", _url, _identity, "trim, add default_scheme (https) to a bare host, lower-case "
       "scheme and host (RFC 3986); other text as typed"),
    _t("country", clean_country, render_country, "ISO 3166-1 alpha-2 from a code or English "
       "name; render as alpha_2 | alpha_3 | name"),
    _t("phone", clean_phone, _identity, "E.164 (ITU-T) via phonenumbers; region = row country, "
       "default_region; extensions dropped", expr_options=("region",)),
    _t("linkedin", _linkedin, _identity, "LinkedIn company URL -> its id (dijkstra-bouw)"),
    _t("split", _split, _split_render, "split on sep (;) into a trimmed list; later transforms "
       "in the chain apply to each item"),
    _t("boolean", _boolean, _boolean_render, "true/false/yes/no/y/n/1/0/ja/nee/x -> Boolean"),
    _t("datetime", clean_datetime, render_datetime, "ISO 8601 (or dayfirst DD-MM-YYYY) -> RFC 3339 "
       "UTC (crm-api.md §1); naive values read in time_zone (UTC), which export writes them in"),
    _t("iri", _iri, _identity, "keep /{collection}/{id}; a bare id or UUID -> IRI only with "
       "allow_bare_id (crm-api.md §1)"),
    _t("prefix", _prefix, _prefix_render, "add `value` in front unless present"),
    _t("suffix", _suffix, _suffix_render, "add `value` at the end unless present"),
    _t("replace", _replace, _replace_render, "map whole values {from: to}; render reverses"),
    _t("extract", _extract, _identity, "keep what regex `pattern` captures in `group` (1); a "
       "value it does not match is kept"),
])
"""The named transforms templates may use, by name."""


# ----------------------------------------------------------------------------- chains


def _parse_spec(spec: str | Mapping) -> tuple[Transform, dict]:
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping) and len(spec) == 1:
        name, options = next(iter(spec.items()))
        if options is not None and not isinstance(options, Mapping):
            raise TemplateError(f"transform {name!r} takes its options as a mapping, e.g. "
                                f"{{{name}: {{option: value}}}}, not {options!r}")
        options = dict(options or {})
    else:
        raise TemplateError(f"a transform is a name or a one-key mapping, not {spec!r}")
    if name not in TRANSFORMS:
        raise TemplateError(f"unknown transform {name!r}{did_you_mean(name, TRANSFORMS)}; known: "
                            f"{', '.join(sorted(TRANSFORMS))}")
    transform = TRANSFORMS[name]
    unknown = set(options) - transform.options()
    if unknown:
        raise TemplateError(f"transform {name!r} has no option {', '.join(sorted(unknown))}; "
                            f"options: {', '.join(sorted(transform.options())) or 'none'}")
    _check_option_types(transform, options)
    return transform, options


_KINDS = {bool: "true or false", int: "a whole number", str: "text", Mapping: "a mapping"}
"""The option types checked when a template loads, as messages name them (YAML: a quoted
"false" is text, and text is true)."""


def _option_kind(transform: Transform, opt: str) -> type | None:
    """The type option `opt` takes: its default's (bool, int or str) in `clean` or `render`,
    else, without a default, its annotation's (text: `from __future__ import annotations`);
    None when neither says."""
    for fn in (transform.clean, transform.render):
        p = inspect.signature(fn).parameters.get(opt)
        if p is None:
            continue
        if p.default is not p.empty:
            return next((k for k in (bool, int, str) if isinstance(p.default, k)), None)
        note = str(p.annotation)
        return Mapping if note.startswith("Mapping") else {"str": str, "bool": bool, "int": int}.get(note)
    return None


def _check_option_types(transform: Transform, options: dict) -> None:
    """Raise TemplateError for an option value of another type than the option takes
    (`_option_kind`: `dayfirst: "false"`, `prefix: {value: 5}`, `replace: {map: [a, b]}`)."""
    for opt, value in options.items():
        kind = _option_kind(transform, opt)
        if kind is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise TemplateError(f"option {opt} of transform {transform.name!r} is {_KINDS[kind]}, not {value!r}")


def _resolve(transform: Transform, options: dict, context: Mapping[str, pl.Expr] | None) -> dict:
    out, context = dict(options), context or {}
    for name in transform.expr_options:
        value = out.get(name)
        if isinstance(value, str) and value not in context and len(value) == 2 and value.isalpha() \
                and value.upper() not in ALPHA2:
            raise TemplateError(f"{name} {value!r} is no ISO 3166-1 alpha-2 country code (e.g. NL), nor "
                                "a column name of more than two letters", key=name)
        if isinstance(value, str) and value not in context and value.upper() in ALPHA2:
            out[name] = pl.lit(value.upper())  # `region: NL` means the code, not a column
        elif isinstance(value, str):
            out[name] = context.get(value, pl.col(value))
        elif value is None and name in context:
            out[name] = context[name]
    return out


def _call(transform: Transform, direction: str, expr: pl.Expr, options: dict) -> pl.Expr:
    fn = transform.clean if direction == "clean" else transform.render
    params = inspect.signature(fn).parameters
    missing = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY
               and p.default is p.empty and n not in options]
    if missing:
        raise TemplateError(f"transform {transform.name!r} needs option {', '.join(missing)}")
    return fn(expr, **{k: v for k, v in options.items() if k in params})


def _chain(expr: pl.Expr, steps: list[tuple[Transform, dict]], direction: str) -> pl.Expr:
    for transform, options in (steps if direction == "clean" else reversed(steps)):
        expr = _call(transform, direction, expr, options)
    return expr


def apply_transforms(expr: pl.Expr, specs: list[str | dict], *, direction: str = "clean",
                     context: dict[str, pl.Expr] | None = None) -> pl.Expr:
    """Apply a chain of transform specs as written in template YAML.

    A spec is a name (`"trim"`) or a one-key mapping (`{"phone": {"default_region": "NL"}}`).
    Render chains run in reverse order. After `split`, the rest of the chain applies to each
    list item (see `split_clean`). Options naming a per-row expr (`phone.region`) take a key of
    `context` (e.g. `"address.country"` -> the cleaned country expr), else an alpha-2 code
    (`region: NL`), else a column name; when the spec leaves such an option out,
    `context[option]` (e.g. `context["region"]`) is used.

    Args:
        expr: the value expr (pl.String; pl.List(pl.String) items after split).
        specs: the chain, in clean order.
        direction: `clean` (sheet -> API) or `render` (API -> sheet).
        context: named exprs the options may refer to.

    Returns:
        The transformed expr.

    Raises:
        TemplateError: unknown transform (the message lists the known ones), unknown or
            missing option, malformed spec, more than one `split`, or a bad option value
            (country code, time zone, a replace map that is not one-to-one).
        ValueError: `direction` is neither clean nor render.
    """
    if direction not in ("clean", "render"):
        raise ValueError(f"direction must be 'clean' or 'render', not {direction!r}")
    steps = [_parse_spec(s) for s in specs]
    steps = [(t, _resolve(t, o, context)) for t, o in steps]
    splits = [i for i, (t, _) in enumerate(steps) if t.name == "split"]
    if len(splits) > 1:
        raise TemplateError("a transform chain may contain `split` only once")
    if not splits:
        return _chain(expr, steps, direction)
    i = splits[0]
    head, (_, split_opts), items = steps[:i], steps[i], steps[i + 1:]
    sep = split_opts.get("sep", ";")
    if direction == "clean":
        return _keep_name(expr, _split_items(_chain(expr, head, "clean"), sep, items))
    rendered = expr.list.eval(_chain(pl.element(), items, "render")) if items else expr
    return _chain(_keep_name(expr, _split_render(rendered, sep=sep)), head, "render")


def split_clean(expr: pl.Expr, sep: str = ";", item_specs: list[str | dict] = (), *,
                context: dict[str, pl.Expr] | None = None) -> pl.Expr:
    """Split `expr` on `sep` into a trimmed `List(String)` and clean each item.

    Item transforms with per-row options (`{"phone": {"region": "address.country"}}`) see
    their row's value; all others run once on all items (`list.eval`).

    Args:
        expr: pl.String expr, e.g. `"/tags/3; tags/12"`.
        sep: item separator (default `;`); render joins with exactly `sep`.
        item_specs: transform specs applied to each item, as in `apply_transforms`.
        context: named exprs per-row options may refer to.

    Returns:
        pl.List expr; null when the cell is null, empty or holds only separators.

    Raises:
        TemplateError: as `apply_transforms`.
    """
    steps = [_parse_spec(s) for s in item_specs]
    steps = [(t, _resolve(t, o, context)) for t, o in steps]
    return _keep_name(expr, _split_items(expr, sep, steps))


def _split_items(expr: pl.Expr, sep: str, steps: list[tuple[Transform, dict]]) -> pl.Expr:
    items = _split(expr, sep=sep)
    if not steps:
        return items
    row_exprs = [v for _, o in steps for v in o.values() if isinstance(v, pl.Expr)]
    if not row_exprs:
        return items.list.eval(_chain(pl.element(), steps, "clean"))
    return _split_rows(items, steps, row_exprs)


def _split_rows(items: pl.Expr, steps: list, row_exprs: list[pl.Expr]) -> pl.Expr:
    """Clean list items whose options read other columns: explode, clean, regroup per row."""
    names = [f"__ctx{i}" for i in range(len(row_exprs))]
    local = [(t, {k: (pl.col(names[row_exprs.index(v)]) if isinstance(v, pl.Expr) else v)
                  for k, v in o.items()}) for t, o in steps]
    item_expr = _chain(pl.col("__v"), local, "clean").alias("__v")
    dtype = pl.DataFrame(schema={"__v": pl.String, **dict.fromkeys(names, pl.String)}) \
        .select(item_expr).schema["__v"]

    def batch(s: pl.Series) -> pl.Series:
        df = s.struct.unnest().with_row_index("__row")
        done = (df.explode("__v", keep_nulls=False).select("__row", item_expr)
                .group_by("__row", maintain_order=True).agg("__v"))
        out = df.select("__row", pl.col("__v").is_null().alias("__null")).join(
            done, on="__row", how="left", maintain_order="left")
        return out.select(pl.when("__null").then(None).otherwise(
            pl.col("__v").fill_null(pl.lit([], dtype=pl.List(dtype))))).to_series()

    fields = [items.alias("__v")] + [e.cast(pl.String).alias(n) for e, n in zip(row_exprs, names)]
    return pl.struct(fields).map_batches(batch, return_dtype=pl.List(dtype))


# ------------------------------------------------------------------------ identifiers

IDENTIFIER_KINDS: tuple[str, ...] = ("email", "phone", "linkedin", "iri", "text")
"""Kinds `normalize_identifier` knows."""


def normalize_identifier(kind: str, expr: pl.Expr, *, region: pl.Expr | None = None,
                         default_region: str | None = None) -> pl.Expr:
    """Return the form the planner compares identifiers in (both sheet and API side).

    - `email`: trimmed, lower case.
    - `phone`: E.164 (as the `phone` transform, using `region`/`default_region`); unparsable
      numbers -> their digits, a leading `+` kept, so two spellings still compare equal.
    - `linkedin`: a company URL reduced to its id, lower case (LinkedIn ids ignore case).
    - `iri`, `text` (customerId, chamberOfCommerceNumber): trimmed (`0123` and `123` are two
      ids; a new row whose id is a record's without its leading zeros gets a warning, `plan`).
    Empty values become null (null never matches). The output keeps the input's name.

    Raises:
        TemplateError: unknown `kind` (lists the known ones).
    """
    if kind == "email":
        out = _lower(expr)
    elif kind == "phone":
        out = phone_identifier(expr, region=region, default_region=default_region)
    elif kind == "linkedin":
        out = _linkedin(expr).str.to_lowercase()
    elif kind in ("iri", "text"):
        out = trimmed(expr)
    else:
        raise TemplateError(f"unknown identifier kind {kind!r}; "
                            f"known: {', '.join(IDENTIFIER_KINDS)}")
    return _keep_name(expr, out)
