"""Stage 2: map a read sheet onto API fields through a template (columns -> fields).

Input: the `read.Sheet.frame` (`row_number` Int64 + one String column per sheet column).
Output: the *mapped frame*, one row per input row, with columns:

- `row_number` (Int64)
- one column per mapped field, named by the field path (`title`, `address.city`, ...):
  scalars String, `flagged`/`isPrivate` Boolean, `emailAddresses`/`tags`/`segments`/`people`
  List(String), `phoneNumbers` List(Struct{phoneNumber: String, phoneType: String})
- `__iri` (String): the explicit IRI column, when the template names one and the sheet has it
- `__repeated.<column>` (Boolean) for each phone column after the first: its number is
  already an earlier column's (the record lists it once; `validate` warns)
- `__raw.<field>` (List(String)) for identifier fields: the values as the sheet wrote them
  (trimmed), so lookups can also send the sheet's form (issue 5); (String) for boolean fields,
  whose clean gives null for a word it does not know, so the validator can see that word

Every value is cleaned by the template's transforms, then by the field's normaliser
(`template.FIELD_RULES`: E.164 phones, ISO 3166-1 alpha-2 countries, lower-case e-mails, ...).
Values that cannot be cleaned pass through unchanged; `validate` reports them.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from .errors import InputError, did_you_mean
from .normalize import as_stored
from .read import FORMULA_ESCAPE
from .template import Mapping, Source, Template, read_columns, thaw
from .transforms import apply_transforms, trimmed

PHONE_DTYPE = pl.List(pl.Struct({"phoneNumber": pl.String, "phoneType": pl.String}))
_LIST_KINDS = ("list", "emails")
_IDX = "__idx"
_HIDDEN = "__m."
"""Prefix of `_map`'s intermediate columns."""
_REGION = "__region"
REPEATED = "__repeated."
"""Prefix of the Boolean output column of a phone column after the first: True where its
number is one an earlier phone column of the row holds (listed once, with that one's type)."""
_CHUNK_ROWS = 250_000
"""Rows mapped at a time (every step is row-wise, so chunks give the same frame)."""


def map_rows(frame: pl.DataFrame, template: Template, *, path: str | None = None,
             header_row: int = 1, other_sheets: tuple[str, ...] = ()) -> pl.DataFrame:
    """Map a sheet frame onto API fields (see module docstring for the output shape).

    Args:
        frame: `row_number` + String columns, as `read.read(...).frame`.
        template: the loaded template.
        path: input file name for error messages. header_row: the sheet's header row
            (`read.Sheet.header_row`), which a missing column's error names, as it names
            `other_sheets` (`read.Sheet.other_sheets`: the first sheet was read, none chosen).

    Raises:
        InputError: a column the template needs is missing from the sheet (names the missing
            columns and the ones present). Bad values are not raised: `validate` reports them.
    """
    _check_columns(frame, template, path, header_row, other_sheets)
    try:
        if frame.height > _CHUNK_ROWS:  # bounds the intermediate columns of a big sheet
            parts = [_map(part, template) for part in frame.iter_slices(_CHUNK_ROWS)]
            if all(p.schema == parts[0].schema for p in parts):
                return pl.concat(parts, how="vertical")
        return _map(frame, template)
    except pl.exceptions.ColumnNotFoundError as e:  # a transform option naming a column (region: Land)
        name = re.search(r'column "?([^"\n]*)"?', str(e))
        raise InputError(f"a transform of the template reads column {name.group(1) if name else '?'!r}, "
                         f"which the sheet lacks; the sheet has: {', '.join(map(repr, frame.columns[1:]))}",
                         path=path) from None


def _map(frame: pl.DataFrame, template: Template) -> pl.DataFrame:
    """Null tokens first, then `_Plan`'s passes of column expressions, each pass one polars
    call whose expressions run side by side (eager: cheaper here than one lazy query); then
    the phone and raw identifier items of each row are stacked into its list."""
    df = without_null_tokens(frame, template)
    template = _unsplit_phones(df, template)
    plan = _Plan()  # pass 0 reads the sheet; passes 1 and 2 what the passes before made
    scalar_maps = [m for m in template.mappings if m.kind in ("scalar", "bool")]
    for m in scalar_maps:
        plan.output(m.field, plan.add(m.field, _scalar_expr(m, template)))
    for m in scalar_maps:
        if m.kind == "bool" and m.sources[0].column:
            plan.output(f"__raw.{m.field}", trimmed(pl.col(m.sources[0].column)))
    for m in template.mappings:
        if m.kind in _LIST_KINDS:
            _list_field(m, template, plan)
        elif m.kind == "phones":
            _phones(m, template, plan)
    for f in template.identifiers:
        _raw_identifiers(template.mapping(f), plan)
    if template.iri_column and template.iri_column in frame.columns:
        plan.output("__iri", trimmed(pl.col(template.iri_column)))
    for step in plan.passes:
        df = df.with_columns(e.alias(n) for n, e in step.items()) if step else df
    items = [c for cs in plan.stacked.values() for c in cs]
    later = {*plan.stacked, *(m.field for m in plan.long)}
    out = df.select(*(e.alias(n) for n, e in plan.outputs.items() if n not in later), *items)
    out = out.with_columns(*(_stack([out[c] for c in cs]).alias(n)
                             for n, cs in plan.stacked.items()),
                           *(_long_phones(df, m, template) for m in plan.long))
    out = out.select(list(plan.outputs))
    return out.with_columns(_empty_list(c, out.schema[c]) for c in out.columns
                            if isinstance(out.schema[c], pl.List) and out[c].has_nulls())


@dataclass
class _Plan:
    """`_map`'s work as passes of column expressions over the nulled sheet: each pass may
    read the sheet and the hidden (`_HIDDEN`) columns of the passes before it; `outputs` are
    the mapped frame's columns, in order, over all of them."""

    passes: list[dict[str, pl.Expr]] = field(default_factory=lambda: [{}, {}, {}])
    outputs: dict[str, pl.Expr] = field(default_factory=lambda: {"row_number": pl.col("row_number")})
    stacked: dict[str, list[str]] = field(default_factory=dict)
    """Output column -> the hidden item columns `_stack` lists per row."""
    long: list[Mapping] = field(default_factory=list)
    """Phone fields with a split source (`_long_phones`)."""

    def add(self, name: str, expr: pl.Expr, step: int = 0) -> pl.Expr:
        """Compute hidden column `name` in pass `step` (once per name); return a reference."""
        self.passes[step].setdefault(_HIDDEN + name, expr)
        return pl.col(_HIDDEN + name)

    def output(self, name: str, expr: pl.Expr) -> None:
        self.outputs[name] = expr

    def stack(self, name: str, items: list[pl.Expr], dtype: pl.DataType, step: int) -> None:
        """Output `name` lists each row's non-null `items` (computed in pass `step`), in order."""
        self.outputs[name] = pl.lit(None, dtype=dtype)  # keeps the column's place
        if items:
            self.stacked[name] = [f"{_HIDDEN}{name}#{i}" for i in range(len(items))]
            for i, item in enumerate(items):
                self.add(f"{name}#{i}", item, step)


def _check_columns(frame: pl.DataFrame, template: Template, path: str | None, header_row: int,
                   other_sheets: tuple[str, ...] = ()) -> None:
    needed = [c for c in template.columns if c != template.iri_column]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        present = [c for c in frame.columns if c != "row_number"]
        # not the template's own notes sheet (a review: a typo on the right sheet was sent there)
        others = [s for s in other_sheets if not (template.notes and s == template.notes.sheet)]
        sheets = (f"; the first sheet was read, and the workbook has {'another' if len(others) == 1 else 'others'}"
                  f" ({', '.join(map(repr, others))}): pass --sheet NAME"
                  if others else "")  # also when it shares some columns (a notes sheet first)
        raise InputError(
            f"column(s) {', '.join(_with_guess(c, [p for p in present if p not in needed]) for c in missing)} "
            f"required by template "
            f"{template.path} not found; the sheet has: {', '.join(map(repr, present))} ("
            + (len(present) == 1 and _delimiter_hint(present[0]) or f"the header read from row {header_row}; pass "
               "--header-row N if it is another row") + ")" + sheets + _constant_hint(template, missing)
            + "; a column some sheets lack takes optional: true",
            path=path, row_number=header_row)


def check_optional_columns(columns: list[str], absent: list[str], template: Template, path: str | None,
                           header_row: int | None) -> None:
    """Refuse a sheet whose header names an optional column of the template in another case
    (`Email` for `email`): headers are matched exactly, so the column would be left out as
    absent, its values never sent, and the run would still succeed (a trial). A near miss
    (`emial`) is only noted (`plan._absent_notes`): `County` for an absent `Country` is no typo.
    `columns`: the sheet's headers; `absent`: the optional columns `Template.for_columns` found
    missing.

    Raises:
        InputError: naming each such column and the header to rename.
    """
    read = set(read_columns(template)) | set(_ADDED_COLUMNS)  # a `notes:` section's columns too
    unread = [c for c in columns if c not in read and c != "row_number" and not c.startswith("(column ")]
    by_case: dict[str, list[str]] = {}
    for c in unread:
        by_case.setdefault(c.casefold(), []).append(c)
    near = [(c, " and ".join(map(repr, by_case[c.casefold()]))) for c in absent if c.casefold() in by_case]
    if near:
        raise InputError(
            "optional column(s) " + ", ".join(f"{c!r} (the sheet has {hs})" for c, hs in near)
            + f" of template {template.path} not found: headers are matched exactly, case included, so "
            "its values would not be sent; rename the header or the template's column",
            path=path, row_number=header_row)


_ADDED_COLUMNS = ("crm_iri", "bulkcrm_status", "bulkcrm_note")
"""Columns a with-status copy adds (`report.STATUS_COLUMNS`; mapping cannot import report)."""


def _constant_hint(template: Template, missing: list[str]) -> str:
    """`; to send the text …` when a missing column feeds a field people set to one text for
    every row (`externalSource: northwind` names a column; a constant is `{value: northwind}`)."""
    fields = [m.field for m in template.mappings if m.field == "externalSource" and m.columns
              and m.columns[0] in missing]
    if not fields:
        return ""
    col = template.column_of(fields[0])
    return f"; to send the text {col!r} on every row, write {fields[0]}: {{value: {col}}}"


def _delimiter_hint(header: str) -> str | None:
    """When a sheet's one column is headed by names joined with a delimiter (a CSV read with
    another delimiter than its own), which one to pass."""
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    d, n = max(counts.items(), key=lambda kv: kv[1])
    if n == 0:
        return None
    by, option = ("tabs", "$'\\t'") if d == "\t" else (repr(d), f"'{d}'")
    return f"one column whose header holds {n + 1} names split by {by}: pass --delimiter {option}"


def _with_guess(column: str, present: list[str]) -> str:
    """`'emial' (did you mean 'email'?)`: the closest of the sheet's headers `present` (the
    template reads none of them: `E-mail` is no guess for a missing `E-mail 2`; difflib, case
    ignored); `'email' (it heads several columns, read as 'email (column 2)', …: map one)`."""
    doubled = [c for c in present if c.startswith(f"{column} (column ") and c.endswith(")")]
    if doubled:
        return f"{column!r} (it heads several columns, read as {', '.join(map(repr, doubled))}: map one)"
    return repr(column) + did_you_mean(column, present)


def without_null_tokens(frame: pl.DataFrame, template: Template) -> pl.DataFrame:
    """`frame` (a sheet: `row_number` + String columns) with the cells the template reads as
    empty made null: blank cells and its `null_tokens` (trimmed, whole cells), in the columns
    `_null_tokens` says need it; the same columns and dtypes.

    A null token behind a `'` is that text, not "no value": the cell loses one `'` (`'NULL`
    -> `NULL`, `''NULL` -> `'NULL`; `null_token_pattern`), as `'` marks text in Excel (which
    keeps a typed first `'` to itself: there `''NULL` gives this). Export writes such values
    so (`workbook.escape_cells`): a title `NULL` read back as empty would be cleared under
    `mode: replace`. The reader removed the CSV formula escape before
    (`read.restore_formula_escape`, which knows no tokens); export puts this escape outside
    that one (`''-` for a value `-` with token `-`), and each is one leading `'`, so which of
    them the reader took does not matter."""
    return frame.with_columns(e.alias(c) for c, e in _null_tokens(frame, template).items())


def null_token_pattern(tokens: Iterable[str], *, escaped: bool = False) -> str | None:
    """Return the regex (polars) of a cell the null step does not keep as it is: a null token,
    outer spaces aside, behind one or more `'` with `escaped` (the escape, read as the cell
    without its first `'`), behind any number of them without (the tokens too, read as null:
    what export escapes, `workbook.escape_cells`). None when no token is non-blank.

    The `'` is Excel's "this is text" quote prefix, and the one bulkcrm's CSV export puts
    before a formula (OWASP CSV injection); a value `'NULL` is exported `''NULL` and keeps one."""
    words = sorted({t.strip() for t in tokens} - {""})
    if not words:
        return None
    quotes = FORMULA_ESCAPE + ("+" if escaped else "*")
    return rf"^{quotes}\s*(?:{'|'.join(pl.escape_regex(w) for w in words)})\s*$"


def _null_tokens(frame: pl.DataFrame, template: Template) -> dict[str, pl.Expr]:
    """Trimmed empty cells and the template's null tokens become null, an escaped token loses
    one `'` (`null_token_pattern`; never anything else): the expression per column that needs
    it. Without null tokens only the columns a field takes untransformed need it: every
    transform trims first (a blank cell gives what an empty one gives), and `_map` trims and
    drops blanks wherever it reads a cell itself."""
    tokens = [t.strip() for t in template.null_tokens]
    escaped = null_token_pattern(tokens, escaped=True)
    cols = [c for c in template.columns if c in frame.columns]
    if not tokens:
        raw = {m.sources[0].column for m in template.mappings if m.kind in ("scalar", "bool")
               and m.sources[0].column and not chain(m, m.sources[0], template)}
        cols = [c for c in cols if c in raw]
    quoted = set()  # columns with a cell starting with `'` (usually none): only they need the regex
    if escaped and cols:
        hits = frame.select(pl.col(cols).str.starts_with(FORMULA_ESCAPE).any()).row(0)
        quoted = {c for c, hit in zip(cols, hits) if hit}
    exprs = {}
    for c in cols:
        trimmed = pl.col(c).str.strip_chars()
        is_null = (trimmed == "") | trimmed.is_in(tokens) if tokens else trimmed == ""
        cell = pl.when(is_null).then(None)
        if c in quoted:
            cell = cell.when(pl.col(c).str.contains(escaped)).then(pl.col(c).str.slice(1))
        exprs[c] = cell.otherwise(pl.col(c))
    return exprs


def _specs(source: Source) -> list:
    return [thaw(t) for t in source.transforms]


def _normaliser(m: Mapping, specs: list) -> list:
    """The field's own normaliser, unless the template's `specs` already list it (with options);
    `chain` fills its options."""
    name = m.rules.get("normalise")
    if m.lookup is None and m.rules.get("iri"):
        name = "iri"
    return [name] if name and name not in {_name(s) for s in specs} else []


def chain(m: Mapping, source: Source, template: Template) -> list:
    """The transform specs a source's values go through on import, in clean order: the
    template's own transforms, then the field's normaliser, options filled in. Export runs the
    same chain as `render`, so clean(render(x)) == x."""
    specs = _specs(source)
    return [_with_defaults(s, m, template) for s in specs + _normaliser(m, specs)]


def _clean(expr: pl.Expr, m: Mapping, source: Source, template: Template,
           context: dict[str, pl.Expr] | None = None) -> pl.Expr:
    specs = chain(m, source, template)
    return apply_transforms(expr, specs, direction="clean", context=context) if specs else expr


def _name(spec: Any) -> str:
    return next(iter(spec)) if isinstance(spec, dict) else spec


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
        return pl.lit(constant(m, template), dtype=pl.Boolean if m.kind == "bool" else pl.String)
    return _clean(pl.col(s.column), m, s, template)


def constant(m: Mapping, template: Template) -> Any:
    """The value a constant (`value:`) of scalar field `m` sends: the template's value through
    the same transforms as a cell (`chain`: its own, then the field's normaliser, e.g. `UK` ->
    `GB` for address.country, `ja` -> true for a true/false field); a boolean as it is."""
    s = m.sources[0]
    if s.value is None or isinstance(s.value, bool):
        return s.value
    return pl.select(_clean(pl.lit(str(s.value), dtype=pl.String), m, s, template,
                            context={"region": pl.lit(template.default_region, dtype=pl.String)})).item()


def _region(template: Template) -> pl.Expr:
    """Each row's phone region: its cleaned `address.country` (a hidden column of pass 0),
    else the default region."""
    default = pl.lit(template.default_region, dtype=pl.String)
    if template.mapping("address.country") is None:
        return default
    return pl.col(_HIDDEN + "address.country").fill_null(default)


def _items(sources: list[Source], default_split: str | None, constants: bool,
           plan: _Plan) -> pl.Expr:
    """The trimmed, non-empty items of a row's cells (split on each source's `split`, else
    `default_split`, else whole) and constants, in source order, as a list (a hidden column
    of pass 0, shared by fields with the same items)."""
    parts, key = [], []
    for s in sources:
        if s.column is None:
            if constants and isinstance(s.value, (list, tuple)):  # a list of constants
                parts.append((pl.lit([str(v) for v in s.value], dtype=pl.List(pl.String)), True))
                key.append(("value", tuple(s.value)))
            elif constants:
                parts.append((pl.lit(str(s.value), dtype=pl.String), False))
                key.append(("value", s.value))
            continue
        sep = s.split or default_split
        parts.append((pl.col(s.column).str.split(sep) if sep else pl.col(s.column), bool(sep)))
        key.append((s.column, sep))
    if len(parts) == 1 and parts[0][1]:
        items = parts[0][0]
    else:  # a null list would null the whole row
        items = pl.concat_list([p.fill_null(pl.lit([], dtype=pl.List(pl.String))) if is_list else p
                                for p, is_list in parts])
    items = items.list.eval(pl.element().str.strip_chars())
    items = items.list.filter(pl.element().is_not_null() & (pl.element() != ""))
    return plan.add(f"items{key}", items)


def _list_field(m: Mapping, template: Template, plan: _Plan) -> None:
    """A list field: its items (split cells and constants), cleaned, each once per row.
    Every source of a list field shares the first source's transforms."""
    items = _items(list(m.sources), ";", True, plan)
    specs = chain(m, m.sources[0], template)
    if specs:
        items = plan.add(m.field, items.list.eval(apply_transforms(pl.element(), specs)), 1)
    plan.output(m.field, plan.add(f"{m.field}#unique", _unique(items), 2))


def _unique(items: pl.Expr) -> pl.Expr:
    """Each list without repeated items (first kept); only lists with a repeat are rebuilt."""
    repeats = items.list.n_unique() < items.list.len()
    return pl.coalesce(pl.when(repeats).then(items).list.unique(maintain_order=True), items)


def _type_expr(s: Source) -> pl.Expr:
    typ = (trimmed(pl.col(s.type_column)).str.to_lowercase() if s.type_column
           else pl.lit(s.phone_type, dtype=pl.String))
    return typ.replace(dict(s.type_map)) if s.type_map else typ


def _phones(m: Mapping, template: Template, plan: _Plan) -> None:
    """Phone sources without split: one cleaned number per cell; a row lists its numbers in
    source order, each once (first type kept). A split source takes `_long_phones`."""
    sources = [s for s in m.sources if s.column or s.value is not None]  # columns and constants
    if any(s.split for s in sources):
        plan.long.append(m)
        plan.output(m.field, pl.lit(None, dtype=PHONE_DTYPE))
        return
    nums, present, items = [], [], []
    for i, s in enumerate(sources):
        num = plan.add(f"{m.field}#num{i}", _clean(_cell(s), m, s, template,
                                                    context={"region": _region(template)}), 1)
        typ = plan.add(f"{m.field}#type{i}", _type_expr(s)) if s.type_column else _type_expr(s)
        if [_name(spec) for spec in chain(m, s, template)] == ["phone"]:
            has = num.is_not_null()  # the phone transform gives null for a blank cell or a placeholder
        else:
            has = plan.add(f"{m.field}#has{i}",
                           (_cell(s).str.strip_chars() != "").fill_null(False)) & num.is_not_null()
        seen = [h & n.eq_missing(num) for h, n in zip(present, nums)]
        keep = has & ~pl.any_horizontal(seen) if seen else has
        if seen and s.column:  # listed once already: `validate` warns (`repeated-phone`)
            plan.output(f"{REPEATED}{s.column}", has & pl.any_horizontal(seen))
        items.append(pl.when(keep).then(pl.struct(num.alias("phoneNumber"), typ.alias("phoneType"))))
        nums.append(num)
        present.append(has)
    plan.stack(m.field, items, PHONE_DTYPE, 2)


def _cell(s: Source) -> pl.Expr:
    """A source's value in each row: its column, or its constant (`value:`) as text."""
    return pl.col(s.column) if s.column else pl.lit(str(s.value), dtype=pl.String)


def _unsplit_phones(df: pl.DataFrame, template: Template) -> Template:
    """`template` with the `split` of phone sources whose column holds no separator left out:
    each cell is then one number, which takes the column-wise path (`_phones`) instead of
    exploding the cells (`_long_phones`); the result is the same."""
    mappings, changed = [], False
    for m in template.mappings:
        split = [s for s in m.sources if s.split and s.column] if m.kind == "phones" else []
        held = df.select(pl.col(s.column).str.contains(s.split, literal=True).any()
                         for s in split).row(0) if split else ()
        plain = {s.column for s, h in zip(split, held) if not h}
        if plain:
            changed = True
            m = replace(m, sources=tuple(replace(s, split=None) if s.column in plain else s
                                         for s in m.sources))
        mappings.append(m)
    return replace(template, mappings=tuple(mappings)) if changed else template


def _long_phones(base: pl.DataFrame, m: Mapping, template: Template) -> pl.Series:
    df = base.with_row_index(_IDX).with_columns(_region(template).alias(_REGION))
    phones = _phone_frame(df, m, template)
    return df.select(_IDX).join(phones, on=_IDX, how="left", maintain_order="left")[m.field]


def _phone_frame(df: pl.DataFrame, m: Mapping, template: Template) -> pl.DataFrame:
    """Explode split cells to one number per row, clean them, gather them per row."""
    parts = []
    for s in m.sources:
        if s.column is None and s.value is None:
            continue
        cell = as_stored(_cell(s)) if s.split and "," in s.split else _cell(s)  # `2,234,274,047`: one number
        items = df.select(_IDX, cell.str.split(s.split).alias("__num") if s.split
                          else cell.alias("__num"), _type_expr(s).alias("__type"), _REGION)
        items = items.explode("__num") if s.split else items
        items = items.filter(pl.col("__num").str.strip_chars().str.len_chars() > 0)
        items = items.with_columns(_clean(pl.col("__num"), m, s, template,
                                          context={"region": pl.col(_REGION)}).alias("__num"))
        parts.append(items.filter(pl.col("__num").is_not_null()))  # a placeholder is no number
    long = pl.concat(parts).unique([_IDX, "__num"], keep="first", maintain_order=True)
    return long.group_by(_IDX, maintain_order=True).agg(
        pl.struct(pl.col("__num").alias("phoneNumber"), pl.col("__type").alias("phoneType")).alias(m.field))


def _raw_identifiers(m: Mapping, plan: _Plan) -> None:
    """The identifier values as the sheet wrote them (trimmed), one list per row, each once."""
    name = f"__raw.{m.field}"
    sources = [s for s in m.sources if s.column]
    if any(s.split for s in sources):
        items = _items(sources, None, False, plan)
        plan.output(name, plan.add(f"{name}#unique", _unique(items), 1))
        return
    values, items = [], []
    for i, s in enumerate(sources):
        value = plan.add(f"{name}#value{i}", trimmed(pl.col(s.column)))
        seen = [(v == value).fill_null(False) for v in values]
        items.append(pl.when(~pl.any_horizontal(seen)).then(value) if seen else value)
        values.append(value)
    plan.stack(name, items, pl.List(pl.String), 1)


def _stack(columns: list[pl.Series]) -> pl.Series:
    """Row i: the non-null values of columns[0][i], columns[1][i], ... as a list. When no row
    has two, the columns' first value per row is that list, without the row-major gather
    (a second phone column left empty: 13 -> 2 ms at 100k rows)."""
    n, k = len(columns[0]), len(columns)
    if k > 1 and not pl.select(pl.sum_horizontal(pl.lit(c).is_not_null() for c in columns).gt(1).any()).item():
        columns = [pl.select(pl.coalesce(pl.lit(c) for c in columns)).to_series()]  # one value a row at most
        k = 1
    flat = pl.concat(columns)
    if k > 1:  # row-major order: row 0's values, then row 1's, ...
        pos = pl.int_range(n * k, eager=True)
        flat = flat.gather(pos % k * n + pos // k)
    lists = flat.reshape((n, k)).arr.to_list() if n else pl.Series([], dtype=pl.List(flat.dtype))
    return lists.list.filter(pl.element().is_not_null())


def _empty_list(column: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(column).fill_null(pl.lit([], dtype=dtype))
