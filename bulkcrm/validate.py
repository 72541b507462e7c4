"""Stage 3: validate mapped rows with a pandera schema (polars backend) built from the template
and the API's rules (crm-api.md §8.1, §8.2, §9.1).

Input: the mapped frame of `mapping.map_rows` and the sheet it came from.
Output: `Validation(valid, issues)`: the rows with no error, and one issue per failed check,
naming file, sheet, row_number, column, value, rule and a fix. Validation is lazy (every
failure at once) and never raises for a bad row.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from .diff import phone_numbers
from .errors import ISSUE_SCHEMA, Issue, issues_frame, place, with_cell
from .mapping import REPEATED, chain, without_null_tokens
from .template import Mapping, Source, Template, read_columns
from .normalize import (DATE_TEXT, EXTENSION, EXTENSION_MARK, FEW_DIGITS, FORMULA_RESULT, NO_NUMBER_CANDIDATE, NO_PHONE,
                        NO_VALUE, RENDERED_NUMBER, UNLIKELY_PHONE_RULE, as_stored, code_without_plus,
                        code_regions, impossible_numbers, not_a_number, region_of_code, unlikely_hint,
                        unlikely_phones, unlikely_sent)
from .read_excel import date_cell_issue, numeric_cell_issue, styled_cell_issue
from .transforms import CHECK_ISSUE_TYPES, CHECK_SEVERITY, CHECKS, check_list, check_rule



@dataclass(frozen=True)
class Validation:
    """Result of `validate`.

    Attributes:
        valid: the mapped rows without any error-severity issue (same columns as the input).
        issues: ISSUE_SCHEMA frame: read issues plus validation issues, errors and warnings.
        invalid_rows: row_numbers rejected (an error issue on the row).
        dated: (row_number, field) of the text fields a date cell left empty (`_without_dates`).
    """

    valid: pl.DataFrame
    issues: pl.DataFrame
    invalid_rows: frozenset[int]
    dated: frozenset[tuple[int, str]] = frozenset()


@dataclass(frozen=True)
class _Rule:
    field: str
    slug: str          # issue type, e.g. invalid-email
    check: str | None  # name in transforms.CHECKS / CHECK_RULES, None for missing-required
    severity: str = "error"
    options: tuple = ()


def validate(mapped: pl.DataFrame, template: Template, *, sheet: pl.DataFrame | None = None,
             read_issues: list[Issue] | None = None, file: str | None = None,
             sheet_name: str | None = None, letters: dict[str, str] | None = None,
             numbers: pl.DataFrame | None = None) -> Validation:
    """Check every mapped row; return the good rows and every problem.

    Args:
        mapped: output of `mapping.map_rows` (`row_number` + field columns).
        template: the template the rows were mapped with.
        sheet: the read sheet (`row_number` + original text columns), to quote original values.
        read_issues: issues found while reading (formula without result, ragged rows, ...).
        file, sheet_name: where the rows came from, for the issue records.
        letters: header -> column letters (`read.Sheet.letters`), to name each issue's cell.
        numbers: a workbook's typed cells the reader did not flag (`read.Sheet.numbers`):
            integer cells in a column the template maps to a text field whose leading 0 matters
            get a numeric-cell warning (BR-05); date/time cells in a column it maps to a field
            that is not a date-time, a date-cell warning.

    Returns:
        `Validation`. Warnings (e.g. a phone that could not be put in E.164) keep the row valid.
    """
    rules = _rules(template)
    # a constant boolean (`isPrivate: {value: true}`) has no raw text to check
    rules = [r for r in rules if r.field in mapped.columns
             and (r.check != "boolean" or f"__raw.{r.field}" in mapped.columns)]
    failures = _failures(_schemas(rules), mapped)
    read_cols, tokens = read_columns(template), {t.strip() for t in template.null_tokens}
    read_found = [_styled_phone(_unread(Issue(**{**i.to_dict(), "file": i.file or file}), read_cols),
                                _phone_columns(template))
                  for i in read_issues or [] if not _null_token(i, tokens) and not _unsent_number(i, read_cols)]
    # a cell the reader already rejected (formula without result, Excel error) is not also
    # reported as missing or malformed: the reader's issue names the real problem; a row it
    # rejected as a whole (values past the last header: every value may sit a column off) is
    # not checked cell by cell either
    unreadable = {(i.row_number, i.column) for i in read_found if i.severity == "error"}
    found = [with_cell(_formula_phone(i), letters or {}, sheet_name) for i in _issues(failures, rules, mapped, sheet,
                                                                      template, file, sheet_name)
             if (i.row_number, i.column) not in unreadable and (i.row_number, None) not in unreadable]
    # the phone checks read the cells as mapping did: a null token (`NULL`) is an empty cell,
    # an escaped one (`'NULL`, as export writes a value `NULL`) that text
    cells = without_null_tokens(sheet, template) if sheet is not None and template.null_tokens else sheet
    found += _dropped_extensions(cells, template, found, file, sheet_name, letters or {}) + read_found
    found += _repeated_phones(mapped, cells, template, file, sheet_name, letters or {})
    dates = _date_cells(numbers, template, file, sheet_name)
    found += _placeholder_phones(cells, mapped, template, file, sheet_name, letters or {},
                                 {(i.row_number, i.column) for i in dates})
    found += _numeric_cells(numbers, template, file, sheet_name) + dates
    found += _code_without_plus(cells, mapped, template, file, sheet_name, letters or {})
    found += _line_breaks(mapped, template, sheet, file, sheet_name, letters or {})
    typed = {(i.row_number, i.column) for i in found if i.type == "invalid-phone"}
    found += _unlikely_phones(cells, mapped, template, file, sheet_name, letters or {}, typed)
    found += _impossible_phones(cells, mapped, template, file, sheet_name, letters or {}, typed)
    issues = issues_frame(found).sort("row_number", "column", nulls_last=True, maintain_order=True)
    bad = set(issues.filter(pl.col("severity") == "error")["row_number"].drop_nulls().to_list())
    valid = mapped.filter(~pl.col("row_number").is_in(list(bad))) if bad else mapped
    valid, dated = _without_dates(valid, dates, template)
    return Validation(valid=valid, issues=issues.select(list(ISSUE_SCHEMA)), invalid_rows=frozenset(bad),
                      dated=dated)


def _null_token(issue: Issue, tokens: set[str]) -> bool:
    """An Excel error value the template lists among its `null_tokens` (`tokens`, trimmed:
    `#N/A`): an empty cell, as the template says, not an error."""
    return issue.type == "excel-error" and (issue.value or "").strip() in tokens


def _phone_columns(template: Template) -> set[str]:
    """The sheet columns `template` reads phone numbers from."""
    return {s.column for m in template.mappings if m.kind == "phones" for s in m.sources if s.column}


def _row_regions(mapped: pl.DataFrame, template: Template, row_numbers: pl.Series) -> pl.DataFrame:
    """`row_number`, `__r`: the region of the phone numbers of the rows `row_numbers` (their
    mapped country, else the template's default; ISO 3166-1 alpha-2), to join to a few cells."""
    country = pl.col("address.country") if "address.country" in mapped.columns else pl.lit(None, pl.String)
    return mapped.filter(pl.col("row_number").is_in(row_numbers.implode())).select(
        "row_number", pl.coalesce(country, pl.lit(template.default_region, dtype=pl.String)).alias("__r"))


def _styled_phone(issue: Issue, phone_cols: set[str]) -> Issue:
    """A reader's numeric-cell warning of a number its format rendered (`2,234,274,047`) in
    one of `phone_cols`, the template's phone columns, saying what is sent: the digits the
    cell stores (`normalize.as_stored`), not the text the reader quotes."""
    if issue.type != "numeric-cell" or issue.column not in phone_cols or not _RENDERED.match(issue.value or ""):
        return issue
    stored = next(g for g in _RENDERED.match(issue.value).groups() if g).replace(",", "")
    return styled_cell_issue(issue.row_number, issue.column, issue.value, issue.file or "", issue.sheet,
                             issue.cell, stored)


_RENDERED = re.compile(RENDERED_NUMBER)


def _unsent_number(issue: Issue, read_cols: set[str]) -> bool:
    """A reader's numeric-cell warning in a column the template does not read (`read_cols`):
    nothing of it is sent, so what its number format hides matters to no one (trial: 270
    warnings for an unmapped year column buried the ones that mattered)."""
    return issue.type == "numeric-cell" and issue.column is not None and issue.column not in read_cols


def _unread(issue: Issue, read_cols: set[str]) -> Issue:
    """A reader's error about a cell of a column the template does not read (not in
    `read_cols`, `template.read_columns`: an Excel error in a helper column) as a warning: nothing of
    that cell is sent, so its row is not held back."""
    if issue.severity != "error" or issue.column is None or issue.column in read_cols:
        return issue
    return replace(issue, severity="warning",
                   message=f"{issue.message} (the template does not read this column: the row is not held back)")


def _rules(template: Template) -> list[_Rule]:
    rules: list[_Rule] = []
    for m in template.mappings:
        if m.required:
            rules.append(_Rule(m.field, "missing-required", None))
        check = m.rules.get("check")
        if m.kind == "phones":
            rules.append(_Rule(m.field, CHECK_ISSUE_TYPES["phone_e164"], "phone_e164", "warning"))
            rules.append(_Rule(m.field, CHECK_ISSUE_TYPES["phone_type"], "phone_type"))
        elif check:
            rules.append(_Rule(m.field, CHECK_ISSUE_TYPES[check], check, CHECK_SEVERITY.get(check, "error"),
                               options=(("dayfirst", True),) if check == "datetime" and _dayfirst(m, template) else ()))
        if m.rules.get("iri"):
            rules.append(_Rule(m.field, CHECK_ISSUE_TYPES["iri"], "iri", options=(
                ("collection", m.rules["iri"]), ("lookup", m.lookup is not None))))
        if m.max_length:
            rules.append(_Rule(m.field, CHECK_ISSUE_TYPES["max_length"], "max_length",
                               options=(("n", m.max_length),)))
    return rules


def _dayfirst(m: Mapping, template: Template) -> bool:
    """Whether the field's dates are read day first (`{datetime: {dayfirst: true}}`), which
    the hint of a bad date then shows (`31-01-2024`)."""
    return any(isinstance(spec, dict) and (spec.get("datetime") or {}).get("dayfirst")
               for s in m.sources for spec in chain(m, s, template))


def _by_field(rules: list[_Rule]) -> dict[str, list[_Rule]]:
    out: dict[str, list[_Rule]] = {}
    for r in rules:
        out.setdefault(r.field, []).append(r)
    return out


def _ok_expr(rule: _Rule, col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Boolean expression, True where the cell passes `rule`."""
    if rule.check is None:  # missing-required
        return col.list.len() > 0 if isinstance(dtype, pl.List) else col.is_not_null()
    if rule.check in _PHONE_KEYS:
        return check_list(_item_check(rule), col.list.eval(pl.element().struct.field(_PHONE_KEYS[rule.check])))
    if rule.check == "boolean":  # clean gives null for an unknown word: compare with the raw text
        raw = pl.col(f"__raw.{rule.field}")
        return raw.is_null() | col.is_not_null()
    return check_list(_item_check(rule), col) if isinstance(dtype, pl.List) else _item_check(rule)(col)


_HINT_ONLY = ("lookup", "dayfirst")
"""Rule options that shape the check's name or hint, not the check itself."""
_PHONE_KEYS = {"phone_e164": "phoneNumber", "phone_type": "phoneType"}
"""The phone item key each phone check reads."""


def _item_check(rule: _Rule) -> Callable[[pl.Expr], pl.Expr]:
    """True where one value passes `rule`; with `lookup`, names pass (they are looked up
    later, `lookups.py`): only IRIs are checked."""
    opts = dict(rule.options)
    fn, kwargs = CHECKS[rule.check], {k: v for k, v in opts.items() if k not in _HINT_ONLY}
    if rule.check == "iri" and opts.get("lookup"):
        return lambda e: pl.when(e.str.starts_with("/")).then(fn(e, **kwargs)).otherwise(True)
    return lambda e: fn(e, **kwargs)


def _pa_check(rule: _Rule) -> pa.Check:
    def check(data: PolarsData) -> pl.LazyFrame:
        dtype = data.lazyframe.collect_schema()[data.key]
        return data.lazyframe.select(_ok_expr(rule, pl.col(data.key), dtype).fill_null(True))
    return pa.Check(check, error=f"{rule.field}|{rule.slug}|{rule.check}")  # two checks may share a slug


def _schemas(rules: list[_Rule]) -> list[pa.DataFrameSchema]:
    """The pandera schema of `rules`, as two schemas over alternate fields (`_failures` runs
    them side by side)."""
    columns = [(f, pa.Column(checks=[_pa_check(r) for r in rs], nullable=True))
               for f, rs in _by_field(rules).items()]
    return [pa.DataFrameSchema(dict(columns[i::2])) for i in (0, 1)]


def _failures(schemas: list[pa.DataFrameSchema], mapped: pl.DataFrame) -> pl.DataFrame:
    """`check` (`field|slug`), `index` (row position in `mapped`) of every failed check.

    pandera runs a schema's checks one after another, each its own polars query, mostly on one
    core; two schemas over disjoint fields run in two threads use both."""
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(_failures_of, schemas[1], mapped)
        return pl.concat([_failures_of(schemas[0], mapped), other.result()])


def _failures_of(schema: pa.DataFrameSchema, mapped: pl.DataFrame) -> pl.DataFrame:
    """One schema's failure cases (`check`, `index` Int32), validated lazily (all at once)."""
    try:
        schema.validate(mapped, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases
        return fc.filter(pl.col("check").str.contains("|", literal=True)).select(
            "check", pl.col("index").cast(pl.Int32))
    return pl.DataFrame(schema={"check": pl.String, "index": pl.Int32})


def _issues(failures: pl.DataFrame, rules: list[_Rule], mapped: pl.DataFrame,
            sheet: pl.DataFrame | None, template: Template, file: str | None,
            sheet_name: str | None) -> list[Issue]:
    """Turn pandera failure cases (check name + row position) into Issues, one rule at a time
    in template order."""
    originals = {}
    if sheet is not None and failures.height:
        originals = sheet_rows(sheet, mapped[failures["index"].unique()]["row_number"])
    by_key = {f"{r.field}|{r.slug}|{r.check}": r for r in rules}
    failed = dict(failures.group_by("check").agg("index").iter_rows())
    issues = []
    for key, rule in by_key.items():
        idx = failed.get(key)
        if idx is None:
            continue
        rows = mapped[idx]
        regions = _regions(rows, template) if rule.check == "phone_e164" else {}
        for rn, column, value in _bad_values(rule, template.mapping(rule.field), rows, originals):
            issues.append(_issue(rule, rn, column, value, file, sheet_name,
                                 regions.get(rn) or template.default_region))
    return issues


def _dropped_extensions(sheet: pl.DataFrame | None, template: Template, found: list[Issue],
                        file: str | None, sheet_name: str | None, letters: dict[str, str]) -> list[Issue]:
    """A warning per phone item with an extension (`x2641`, `ext. 12`, `normalize.EXTENSION`)
    that became E.164 without it: E.164 (ITU-T) and the API's phoneNumber have no place for
    one, so it is not sent. Items kept as typed (their `invalid-phone` warning) keep theirs."""
    m = template.mapping("phoneNumbers")
    if sheet is None or m is None:
        return []
    sources = [s for s in m.sources if s.column and s.column in sheet.columns]
    # one pass over the cells, the columns side by side, before any is split (few have one):
    # every mark holds x, X or # (a byte search), so the regex reads only such cells
    def marked(c: pl.Expr) -> pl.Expr:
        return pl.when(c.str.contains("[xX#]")).then(c).str.contains(EXTENSION_MARK).fill_null(False)

    maybe = sheet.select(marked(pl.col(s.column)).any().alias(str(i))
                         for i, s in enumerate(sources)).row(0) if sources else ()
    kept = {(i.row_number, i.column) for i in found if i.type == "invalid-phone"}
    out = []
    for s in (s for s, hit in zip(sources, maybe) if hit):
        item = pl.col("__item").str.strip_chars()
        cells = sheet.filter(marked(pl.col(s.column)))
        hits = (cells.select("row_number", pl.col(s.column).str.split(s.split).alias("__item")
                             if s.split else pl.col(s.column).alias("__item"))
                .explode("__item").filter(item.str.contains(EXTENSION) & ~item.str.contains(FEW_DIGITS)))
        out += [with_cell(Issue("phone-extension", rn, s.column, value.strip(), "E.164 phone number (ITU-T E.164)",
                                f"{_place(file, rn, s.column)}the extension of \"{value.strip()}\" is not sent: "
                                "E.164 has none; note it elsewhere (e.g. the description) if it matters",
                                "warning", file, sheet_name), letters, sheet_name)
                for rn, value in hits.iter_rows() if (rn, s.column) not in kept]
    return out


def _placeholder_phones(sheet: pl.DataFrame | None, mapped: pl.DataFrame, template: Template,
                        file: str | None, sheet_name: str | None, letters: dict[str, str],
                        dated: set[tuple[int, str]] = frozenset()) -> list[Issue]:
    """A warning per phone item that is a placeholder (`normalize.PLACEHOLDER_PHONE`:
    `000-000-0000`, `(123) 456-7890`) phonenumbers does not take as valid in the row's region
    (its mapped country, else the template's default), or a date (`normalize.DATE_TEXT`, typed;
    a workbook's date cells, `dated`, have their date-cell warning): no number
    (`normalize.not_a_number`), so it is not sent and matches no record."""
    m = template.mapping("phoneNumbers")
    if sheet is None or m is None:
        return []
    out, item = [], pl.col("__item")
    for s in (s for s in m.sources if s.column and s.column in sheet.columns):
        # one regex pass finds the few candidates, and the cells to split; of the candidates,
        # what the cell stores (`as_stored`) is judged
        col = pl.col(s.column)
        maybe = col.str.contains(NO_NUMBER_CANDIDATE)
        maybe = maybe | col.str.contains(s.split, literal=True) if s.split else maybe
        cells = sheet.filter(maybe.fill_null(False)).select("row_number", col.alias("__item"))
        cells = cells.with_columns(item.str.split(s.split)).explode("__item") if s.split else cells
        hits = cells.filter(item.str.contains(NO_NUMBER_CANDIDATE) & as_stored(item).str.contains(NO_PHONE))
        if not hits.height:
            continue
        hits = hits.join(_row_regions(mapped, template, hits["row_number"]), on="row_number", how="left")
        stored = hits.select(as_stored(item), "__r").iter_rows()
        hits = hits.filter(pl.Series([not_a_number(v, r) for v, r in stored],
                                     dtype=pl.Boolean)).select("row_number", "__item")
        out += [with_cell(Issue("invalid-phone", rn, s.column, value.strip(), "a phone number, not a placeholder",
                                _placeholder_message(file, rn, s.column, value),
                                "warning", file, sheet_name), letters, sheet_name)
                for rn, value in hits.iter_rows() if (rn, s.column) not in dated]
    return out


def _placeholder_message(file: str | None, rn: int, column: str, value: str) -> str:
    """`_placeholder_phones`' message: the cell, what it is (`_NO_NUMBER`), and for a no-value
    word the `null_tokens` tip (`_TOKEN_TIP`)."""
    what = _NO_NUMBER[bool(_DATE_TEXT.match(value))] + (_TOKEN_TIP if NO_VALUE_WORD.match(value) else "")
    return f'{_place(file, rn, column)}"{value.strip()}" is {what}'


def _code_without_plus(sheet: pl.DataFrame | None, mapped: pl.DataFrame, template: Template,
                       file: str | None, sheet_name: str | None, letters: dict[str, str]) -> list[Issue]:
    """An `ambiguous-phone` warning per phone cell of digits alone that begin with the row's
    country code (`normalize.code_without_plus`: `493512345678` in DE): it is sent as the
    national number phonenumbers reads, which may be the international one typed without its
    `+`. A regex finds the few candidates (digits not starting with 0), each judged once."""
    m = template.mapping("phoneNumbers")
    if sheet is None or m is None:
        return []
    out = []
    for s in (s for s in m.sources if s.column and s.column in sheet.columns):
        cells = sheet.filter(pl.col(s.column).str.contains(r"^\s*[1-9][\d\s.\-]{7,}$").fill_null(False)).select(
            "row_number", pl.col(s.column).alias("__item"))
        if not cells.height:
            continue
        cells = cells.join(_row_regions(mapped, template, cells["row_number"]), on="row_number", how="left")
        for rn, value, region in cells.iter_rows():
            if (read := code_without_plus(value, region)) is not None:
                national, plus, code = read
                out.append(with_cell(Issue(
                    "ambiguous-phone", rn, s.column, value.strip(), "E.164 phone number (ITU-T E.164)",
                    f'{_place(file, rn, s.column)}"{value.strip()}" is sent as {national}, a number of {region}; '
                    f"if it begins with country code {code}, it is {plus}: write it with the + (a number cell "
                    "loses a leading + or 0, so format the column as Text)", "warning", file, sheet_name),
                    letters, sheet_name))
    return out


def _unlikely_phones(sheet: pl.DataFrame | None, mapped: pl.DataFrame, template: Template,
                     file: str | None, sheet_name: str | None, letters: dict[str, str],
                     flagged: set[tuple[int | None, str | None]] = frozenset()) -> list[Issue]:
    """An `unlikely-phone` warning per phone item written in national form that became a number
    that is possible but not valid (phonenumbers' metadata, ITU-T E.164 numbering plans):
    `555-8787` in AU is sent as `+615558787`, most likely a local number without its area code.
    A warning, not an error: the metadata may lack a new range, so the row is written, the
    number as it became. One cheap pass leaves out cells in international form (`+…`), one
    vectorised filter items without a digit or no number (`NO_PHONE`); each remaining item is
    found among its row's mapped numbers by its digits (`_sent_numbers`) and judged in the
    country of that number, once per unique number; an item found in none (an extension) is
    parsed again in its row's region (`_row_regions`), unless the template gives the phone
    transform a region of its own. Cells in `flagged` (row_number, column: an `invalid-phone`
    issue, e.g. too short for E.164) have their warning already."""
    m = template.mapping("phoneNumbers")
    if sheet is None or m is None:
        return []
    out, item = [], pl.col("__item")
    for s in (s for s in m.sources if s.column and s.column in sheet.columns):
        # what the phone transform reads: a rendered number as the cell stores it (`as_stored`)
        col = as_stored(pl.col(s.column)) if s.split and "," in s.split else pl.col(s.column)
        # most cells are in international form (`+…`, as an export writes them): a cheap pass
        # leaves them out (a split cell's later item may be national: those cells stay)
        raw = pl.col(s.column)
        maybe = raw.is_not_null() & ~raw.str.strip_chars_start().str.starts_with("+")
        part = sheet.select("row_number", s.column).filter(
            maybe | raw.str.contains(s.split, literal=True) if s.split else maybe)
        if not part.height:
            continue
        cells = _typed_items(part, s, col).with_columns(as_stored(pl.col("__typed")).alias("__item"))
        cells = cells.filter(~item.str.starts_with("+") & item.str.contains(r"\d") & ~item.str.contains(NO_PHONE))
        if not cells.height:
            continue
        sent, rest = _sent_numbers(cells, mapped, m.field)
        sent = sent.with_columns(code_regions(pl.col("__e164")).alias("__r")).drop_nulls("__r")
        # a cell found among no mapped number (an extension, a number kept as typed) is read
        # again in its row's region: not where the template gives the phone transform its own
        rest = rest.clear().with_columns(pl.lit(None, pl.String).alias("__r")) if _own_region(m, s, template) \
            else rest.join(_row_regions(mapped, template, rest["row_number"]), on="row_number", how="left")
        cols = ["row_number", "__typed", "__r", "__e164"]
        hits = pl.concat([
            sent.filter(unlikely_sent(sent["__e164"], sent["__r"])).select(cols),
            rest.with_columns(unlikely_phones(rest["__item"], rest["__r"]).alias("__e164")).filter(
                pl.col("__e164").is_not_null()).select(cols)]).sort("row_number", maintain_order=True)
        out += [with_cell(Issue("unlikely-phone", rn, s.column, value, UNLIKELY_PHONE_RULE,
                                f'{_place(file, rn, s.column)}"{value}" is sent as {e164}, {unlikely_hint(region)}',
                                "warning", file, sheet_name), letters, sheet_name)
                for rn, value, region, e164 in hits.iter_rows()
                if (rn, s.column) not in flagged]
    return out


def _line_breaks(mapped: pl.DataFrame, template: Template, sheet: pl.DataFrame | None, file: str | None,
                 sheet_name: str | None, letters: dict[str, str]) -> list[Issue]:
    """A `line-break` error per cell of an id or code field (`one_line` in `template.ORG_FIELDS`:
    customerId, externalSource, chamberOfCommerceNumber, postal code) whose value holds a line
    break, an Alt+Enter in a spreadsheet cell: a record stored with it matches no later sheet
    by its id (rule `normalize.CHECK_RULES["one_line"]`). One cheap pass over those fields
    (literal byte searches); only a field with a hit is looked at row by row."""
    ms = [m for m in template.mappings if m.rules.get("one_line") and m.field in mapped.columns]
    if not ms or not mapped.height:
        return []

    def broken(c: pl.Expr) -> pl.Expr:
        return ~CHECKS["one_line"](c)  # the check is True where fine and for null: null stays null
    hit = mapped.select(broken(pl.col(m.field)).any().alias(m.field) for m in ms).row(0, named=True)
    rule = _Rule("", CHECK_ISSUE_TYPES["one_line"], "one_line")
    out = []
    for m in (m for m in ms if hit[m.field]):
        rows = mapped.filter(broken(pl.col(m.field)).fill_null(False)).select("row_number", m.field)
        originals = sheet_rows(sheet, rows["row_number"])
        for rn, value in rows.iter_rows():
            column = column_holding(value, m, originals.get(rn, {})) or template.column_of(m.field)
            out.append(with_cell(_issue(replace(rule, field=m.field), rn, column, value, file, sheet_name),
                                 letters, sheet_name))
    return out


def _impossible_phones(sheet: pl.DataFrame | None, mapped: pl.DataFrame, template: Template,
                       file: str | None, sheet_name: str | None, letters: dict[str, str],
                       flagged: set[tuple[int | None, str | None]] = frozenset()) -> list[Issue]:
    """An `unlikely-phone` warning per phone cell in international form whose number has a
    length no number of its country code has (`normalize.impossible_numbers`): `+33 91 24 45
    40`, sent as `+3391244540`, lacks a digit (a trial's second source then matched nothing
    and made a duplicate). National-form cells are judged by `_unlikely_phones`; cells in
    `flagged` (an `invalid-phone` issue) have their warning. The mapped numbers are checked
    once (unique values, vectorised); only when one fails are the cells looked at."""
    m = template.mapping("phoneNumbers")
    if sheet is None or m is None or m.field not in mapped.columns:
        return []
    bad = impossible_numbers(mapped.select(phone_numbers(pl.col(m.field)).explode()).to_series())
    if not bad.height:
        return []
    out = []
    for s in (s for s in m.sources if s.column and s.column in sheet.columns):
        cells = _typed_items(sheet, s, pl.col(s.column)).filter(pl.col("__typed").str.starts_with("+"))
        hits = cells.with_columns(("+" + pl.col("__typed").str.replace_all(r"\D", "")).alias("number")).join(
            bad, on="number", maintain_order="left")
        out += [with_cell(Issue("unlikely-phone", rn, s.column, value, UNLIKELY_PHONE_RULE,
                                f'{_place(file, rn, s.column)}"{value}" is sent as {number}: {length} digits after '
                                f"+{code}, where numbers of {region_of_code(code)} have {lengths}; is a digit "
                                "missing or one too many? (if the number is right, ignore this warning)",
                                "warning", file, sheet_name), letters, sheet_name)
                for rn, value, number, code, length, lengths in hits.iter_rows() if (rn, s.column) not in flagged]
    return out


def _typed_items(frame: pl.DataFrame, s: Source, col: pl.Expr) -> pl.DataFrame:
    """`row_number`, `__typed`: the items of source `s`'s cells (`col`, read from `frame`),
    split at its `split` and trimmed, one row per item, as a phone cell's numbers are typed."""
    cells = frame.select("row_number", col.str.split(s.split) if s.split else col)
    cells = cells.explode(s.column) if s.split else cells
    return cells.select("row_number", pl.col(s.column).str.strip_chars().alias("__typed"))


def _sent_numbers(cells: pl.DataFrame, mapped: pl.DataFrame, field: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The national-form phone `cells` (`row_number`, `__typed`, `__item`) split by whether the
    E.164 number each became is found among its row's mapped numbers (`field`): the one whose
    digits end with the cell's, its national prefix `0` left out, one to three digits of a
    country code before them (`020 7946 0018`: `+442079460018`), whatever region the mapping
    read it in. Those (with `__e164`) need no second parse; the rest (an extension, a carrier
    code, a number kept as typed) goes to `normalize.unlikely_phone`."""
    numbers = mapped.filter(pl.col("row_number").is_in(cells["row_number"].implode())).select(
        "row_number", phone_numbers(pl.col(field)).alias("__e164")).explode("__e164").drop_nulls()
    digits = pl.col("__item").str.replace_all(r"\D", "").str.strip_chars_start("0")
    code = pl.col("__e164").str.len_chars() - 1 - digits.str.len_chars()  # digits before the cell's
    found = cells.with_row_index("__c").join(numbers, on="row_number").filter(
        pl.col("__e164").str.starts_with("+") & (digits.str.len_chars() > 0)
        & pl.col("__e164").str.ends_with(digits) & code.is_between(0, 3)
    ).unique("__c", keep="first", maintain_order=True)
    rest = cells.with_row_index("__c").join(found.select("__c"), on="__c", how="anti").drop("__c")
    return found.drop("__c"), rest


def _own_region(m: Mapping, s, template: Template) -> bool:
    """Whether the template gives source `s`'s phone transform a region of its own (`region:`,
    or a `default_region:` other than the template's), which `_row_regions` does not know."""
    for spec in chain(m, s, template):
        if isinstance(spec, dict) and "phone" in spec:
            opts = spec["phone"] or {}
            return opts.get("region") is not None or opts.get("default_region") != template.default_region
    return False


def _repeated_phones(mapped: pl.DataFrame, sheet: pl.DataFrame | None, template: Template, file: str | None,
                     sheet_name: str | None, letters: dict[str, str]) -> list[Issue]:
    """A warning per phone cell whose number an earlier phone column of its row holds (a fax
    typed as the phone, also in another spelling: `mapping.REPEATED`; for split columns, the
    same text): a record lists a number once, with the earlier column's type, so the later
    cell's type is not sent and an edit making them equal changes nothing."""
    m = template.mapping("phoneNumbers")
    if sheet is None or m is None:
        return []
    cols = [s for s in m.sources if s.column and s.column in sheet.columns]
    flagged = [(s, mapped.filter(pl.col(f"{REPEATED}{s.column}")).select("row_number"))
               for s in cols if f"{REPEATED}{s.column}" in mapped.columns]
    for j, later in enumerate(cols[1:], 1):  # split columns: the same text as an earlier one
        if f"{REPEATED}{later.column}" not in mapped.columns:
            b = pl.col(later.column).str.strip_chars()
            same = pl.any_horizontal([pl.col(s.column).str.strip_chars() == b for s in cols[:j]]).fill_null(False)
            flagged.append((later, sheet.filter(same & (b != "")).select("row_number")))
    out = []
    for s, rows in flagged:
        kind = f" ({s.phone_type})" if s.phone_type else ""
        cells = sheet.join(rows, on="row_number").select("row_number", pl.col(s.column).str.strip_chars())
        out += [with_cell(Issue("repeated-phone", rn, s.column, v, "a number once per record",
                                f"{_place(file, rn, s.column)}\"{v}\" is a number an earlier phone column of the "
                                f"row holds: the record lists it once, with that column's type, so this "
                                f"{s.column}{kind} entry is not sent", "warning", file, sheet_name), letters, sheet_name)
                for rn, v in cells.iter_rows()]
    return out


_FORMULA_RESULT = re.compile(FORMULA_RESULT)
_DATE_TEXT = re.compile(DATE_TEXT)
_NO_NUMBER = {d: f"{'a date' if d else 'a placeholder'}, not a phone number: it is not sent and matches no record; "
              + ("a spreadsheet turns a typed 1-31 into a date: format the column as Text and type the number again"
                 if d else "leave the cell empty, or type the real number") for d in (False, True)}
"""`_placeholder_phones`' message after the quoted value, by whether it is a date."""
_TOKEN_TIP = " (or add it to the template's null_tokens, to read it as an empty cell without this warning)"
"""`_placeholder_phones`' tip for a no-value word (`NO_VALUE_WORD`: `n/a`, `none`), which the sheet
may write every week."""


def _formula_phone(issue: Issue) -> Issue:
    """A phone kept as typed (`invalid-phone` warning) that is a negative number (`-2237`,
    `normalize.FORMULA_RESULT`: a spreadsheet's sum of `+1-555-2237`) is no number to keep:
    the issue becomes an error (its row is invalid, not sent). Found among the few numbers
    that broke E.164, so no pass over the sheet of its own."""
    if issue.type != "invalid-phone" or issue.severity != "warning" or not _FORMULA_RESULT.match(issue.value or ""):
        return issue
    rule, hint = check_rule("phone_formula")
    return replace(issue, rule=rule, severity="error",
                   message=f'{_place(issue.file, issue.row_number, issue.column)}"{issue.value}" breaks {rule}; {hint}')


FREE_TEXT = ("title", "description")
"""Fields of prose, not codes: an integer cell there lost no leading 0 that matters."""


def _numeric_cells(numbers: pl.DataFrame | None, template: Template, file: str | None,
                   sheet_name: str | None) -> list[Issue]:
    """numeric-cell warnings of the integer cells (`read.Sheet.numbers`) in the columns of
    text fields whose leading 0 matters: a zip code `2138` may be `02138`, a KvK number
    `2012345` may be `02012345` (BR-05). Not for booleans, dates, lookups or IRIs, nor for a
    title or description, free text where a number is a number (a trial's `2024`)."""
    if numbers is None or not numbers.height:
        return []
    columns = {s.column for m in template.mappings for s in m.sources if s.column and (
        m.kind == "phones" or m.kind == "scalar" and m.lookup is None and not m.rules.get("iri")
        and m.rules.get("check") not in ("datetime", "boolean") and m.field not in FREE_TEXT)}
    hits = numbers.filter(pl.col("format").is_null(), pl.col("column").is_in(sorted(columns)))
    return [numeric_cell_issue(rn, column, text, file or "", sheet_name, cell)
            for rn, column, text, cell, _ in hits.iter_rows()]


def _date_cells(numbers: pl.DataFrame | None, template: Template, file: str | None,
                sheet_name: str | None) -> list[Issue]:
    """date-cell warnings of the date/time cells (`read.Sheet.numbers` with a `format`) in the
    columns the template maps, unless one of the column's fields is a date-time (its `datetime`
    check: `format: date-time`, crm-api.md §8.1, §9.1): there a date is what belongs.
    Elsewhere (a zip code, an id) it is Excel's reading of a typed `3-12` or `1-50`: in a text
    field (`_dated_fields`) it is not sent (`_without_dates`), in a phone column a date is no
    number, and is not sent either (`normalize.clean_phone`). In a text identifier (customerId,
    chamberOfCommerceNumber, linkedinId) it names no record: an error, the row is not written."""
    if numbers is None or not numbers.height:
        return []
    sources = [(s.column, m.rules.get("check") == "datetime") for m in template.mappings for s in m.sources
               if s.column]
    phones, dropped = _phone_columns(template), _dated_fields(template)
    ids = {s.column for m in template.mappings if m.kind == "scalar" and m.field in template.identifiers
           for s in m.sources if s.column}
    columns = {c for c, _ in sources} - {c for c, dated in sources if dated}
    hits = numbers.filter(pl.col("format").is_not_null(), pl.col("column").is_in(sorted(columns)))
    return [date_cell_issue(rn, column, text, code, file or "", sheet_name, cell,
                            not_sent="phone" if column in phones else "identifier" if column in ids
                            else "text" if column in dropped else None)
            for rn, column, text, cell, code in hits.iter_rows()]


def _dated_fields(template: Template) -> dict[str, list[str]]:
    """Sheet column -> the text fields it alone feeds (a zip code, a street, a description, a
    KvK number: no lookup, IRI, format check, required value, nor an identifier, whose row
    would then match nothing) whose date cells are not sent (`_without_dates`). None under
    `empty: clear`, where an empty value would clear what the record holds."""
    out: dict[str, list[str]] = {}
    for m in template.mappings if template.empty == "ignore" else ():
        if m.kind == "scalar" and m.lookup is None and len(m.sources) == 1 and m.sources[0].column and not (
                m.rules.get("iri") or m.rules.get("check") or m.rules.get("required") or m.required
                or m.field in template.identifiers):
            out.setdefault(m.sources[0].column, []).append(m.field)
    return out


def _without_dates(rows: pl.DataFrame, dates: list[Issue], template: Template
                   ) -> tuple[pl.DataFrame, frozenset[tuple[int, str]]]:
    """`rows` with the text fields of a date cell (`_date_cells`, `_dated_fields`) left empty:
    the date is Excel's reading of what was typed (`3-12` became 2024-03-12), never the value
    meant, so it is not sent; an empty cell leaves what the record holds (a fix made in the
    with-status copy is not undone by next week's sheet). Also those (row_number, field)."""
    fields = _dated_fields(template)
    hits: dict[str, list[int]] = {}
    for i in dates:
        for f in fields.get(i.column, ()):
            hits.setdefault(f, []).append(i.row_number)
    hits = {f: rns for f, rns in hits.items() if f in rows.columns}
    rows = rows.with_columns(pl.when(pl.col("row_number").is_in(rns)).then(None).otherwise(pl.col(f)).alias(f)
                             for f, rns in hits.items())
    return rows, frozenset((rn, f) for f, rns in hits.items() for rn in rns)


def _regions(rows: pl.DataFrame, template: Template) -> dict[int, str]:
    """row_number -> the row's country (ISO 3166-1 alpha-2), the region of its phone numbers,
    for rows that have a valid one: a bad number's example is then one of its own country."""
    if "address.country" not in rows.columns:
        return {}
    country = pl.col("address.country")
    return dict(rows.filter(country.str.contains(r"^[A-Z]{2}$")).select("row_number", country).iter_rows())


def _bad_values(rule: _Rule, m: Mapping, rows: pl.DataFrame,
                originals: dict[int, dict]) -> list[tuple[int, str | None, str | None]]:
    """(row_number, column, original value) of each value that broke `rule` in `rows` (the rows
    that failed it): the items of a list are checked again in one pass to name the bad ones."""
    cols = list(m.columns) or [None]
    if rule.check is None or m.kind in ("scalar", "bool"):
        if not cols[0] and m.sources and m.sources[0].value is not None:  # a constant: as the template has it
            return [(rn, None, str(m.sources[0].value)) for rn in rows["row_number"]]
        return [(rn, cols[0], originals.get(rn, {}).get(cols[0]) if cols[0] else None)
                for rn in rows["row_number"]]
    items = pl.col(m.field)
    if rule.check in _PHONE_KEYS:
        items = items.list.eval(pl.element().struct.field(_PHONE_KEYS[rule.check]))
    long = rows.select("row_number", items.alias("v")).explode("v").drop_nulls("v")
    bad: dict[int, list[str]] = {}
    for rn, v in long.filter(~_item_check(rule)(pl.col("v")).fill_null(True)).iter_rows():
        bad.setdefault(rn, []).append(v)
    out = []
    for rn in rows["row_number"]:
        original = originals.get(rn, {})
        out += [(rn, c, _as_typed(v, original.get(c)))
                for v in bad.get(rn, []) for c in [column_holding(v, m, original)]] or [(rn, cols[0], None)]
    return out


def sheet_rows(sheet: pl.DataFrame | None, row_numbers: pl.Series | list[int]) -> dict[int, dict]:
    """row_number -> the row of `sheet` (`read.Sheet.frame`: its cells as read, by column) for
    `row_numbers`, to quote a cell or find the column that holds a value."""
    if sheet is None or not len(row_numbers):
        return {}
    rows = sheet.filter(pl.col("row_number").is_in(pl.Series(row_numbers).implode()))
    return {r["row_number"]: r for r in rows.iter_rows(named=True)}


def column_holding(value: str, m: Mapping, original: dict) -> str | None:
    """The source column of `m` whose cell in `original` (a `sheet_rows` row) holds `value`
    (case aside): a field fed by several columns names the one to fix; else its first."""
    for c in m.columns:
        cell = original.get(c)
        if cell and (value in cell or value.lower() in cell.lower()):
            return c
    return m.columns[0] if m.columns else None


def _as_typed(value: str, cell: str | None) -> str:
    """`value` (an item as compared: trimmed, an e-mail in lower case) as `cell` has it, so an
    issue quotes what the user can find in the sheet; `value` itself when the cell's case
    mapping changes its length or the cell does not hold it."""
    if not cell or value in cell or len(cell.lower()) != len(cell):
        return value
    at = cell.lower().find(value.lower())
    return cell[at:at + len(value)] if at >= 0 else value


def _issue(rule: _Rule, row_number: int, column: str | None, value: str | None,
           file: str | None, sheet_name: str | None, region: str | None = None) -> Issue:
    if rule.check is None:
        return Issue("missing-required", row_number, column, value, "required (crm-api.md §8.1)",
                     _place(file, row_number, column) + f"{column or rule.field} is required; "
                     f"fill in a value for {rule.field}", "error", file, sheet_name)
    rule_text, hint = check_rule(rule.check, region=region, value=value, **dict(rule.options))
    if column is not None and value is not None and NO_VALUE_WORD.match(value):
        hint = (f'if "{value.strip()}" means no value, add it to the template\'s null_tokens '
                f'(a list of such cell texts), or leave the cell empty; else {hint}')
    whose = f" (the template's value of {rule.field})" if column is None and value is not None else ""
    shown = value.replace("\r", "\\r").replace("\n", "\\n") if value else value  # the message is one line
    msg = f'{_place(file, row_number, column)}"{shown}"{whose} breaks {rule_text}; {hint}'
    return Issue(rule.slug, row_number, column, value, rule_text, msg, rule.severity, file, sheet_name)


NO_VALUE_WORD = re.compile(NO_VALUE)
"""`normalize.NO_VALUE`, compiled: a check such a cell fails gets the hint to list it in the
template's `null_tokens`."""


def _place(file: str | None, row_number: int, column: str | None) -> str:
    return place(file, row_number, column) + ": "
