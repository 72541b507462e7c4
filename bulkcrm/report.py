"""Reconciliation and validation reports: what was planned and what happened, per input row.

Stage: report (last). Input: a `Report` (rows, issues, summary) built by plan/apply. Output files:
`report.json`, `report.csv`, `report.xlsx`, and the with-status copy of the input
(`<input stem>.with-status.csv|xlsx`, written by `copies.py`, which also writes validate's
`issues.csv`, `issues.json` and `<input stem>.issues.xlsx`). Modelled on frictionless' `Report`
and django-import-export's `Result`. Cells are written by `workbook.py`: text made inert (OWASP
"CSV injection"), never formulas, secrets redacted.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from openpyxl.worksheet.hyperlink import Hyperlink

from .errors import ISSUE_SCHEMA
from .planfile import CHANGE_DTYPE, quoted_names
from .read import Sheet
from .vocab import COUNT_KEYS, OUTCOMES
from .workbook import (AMBER, FILLS, GREEN, GREY, RED, Book, Redactor, neutralise_csv,
                       write_text)

ROW_SCHEMA: dict[str, pl.DataType] = {
    "row_number": pl.Int64, "file": pl.String, "sheet": pl.String, "op": pl.String,
    "outcome": pl.String, "iri": pl.String, "title": pl.String, "changes": CHANGE_DTYPE,
    "http_status": pl.Int64, "note": pl.String, "resource": pl.String,
}
"""Columns and dtypes of `Report.rows` (one row per input row, and per note of a row when a
template imports organizations with their notes; `resource` says which: `organizations` or
`organization_notes`, null read as organizations)."""


REPORT_COLUMNS = ("row_number", "outcome", "op", "iri", "title", "changes", "errors", "warnings",
                  "columns", "http_status", "note", "resource", "sheet")
"""Columns of `report.csv` and of the `Rows` sheet; `columns` names the sheet columns the row's
errors and warnings are about (the cells to fix); `sheet` the workbook sheet of the row (a
notes sheet numbers its rows apart)."""


ERROR_COLUMNS = ("file", "sheet", "row_number", "resource", "column", "cell", "severity", "type",
                 "value", "rule", "message", "reference")
"""Columns of the `Issues` sheet (one line per issue, error or warning)."""


NOT_OK = ("invalid", "conflict", "failed", "unconfirmed", "drifted")
"""Outcomes that make a run not ok (CLI exit 1)."""


STATUS_COLUMNS = ("crm_iri", "bulkcrm_status", "bulkcrm_note")
"""Columns added to the write-back copy of the input; the next run matches on `crm_iri`, and
`bulkcrm_note` says what to fix in the row."""


OUTCOME_COLOURS = {"created": GREEN, "patched": GREEN, "replaced": GREEN, "unchanged": GREY,
                   "conflict": AMBER, "drifted": AMBER, "unconfirmed": AMBER, "invalid": RED, "failed": RED}
"""RGB fill of the outcome cell in the `Rows` sheet, per outcome (others: no fill)."""


@dataclass
class Report:
    """What was planned and what happened for every input row (frictionless `Report`).

    Attributes:
        rows: one row per input row, columns `ROW_SCHEMA` (missing columns read as null).
        issues: `errors.ISSUE_SCHEMA` columns, one row per issue.
        summary: keys `counts`, `requests` (int), `target` (base URL, never a key), `template`,
            `input`, `dry_run`, `started_at`, `finished_at` (ISO 8601), `plan` (its path),
            `plan_created_at` (which plan: `keep_earlier_report`), `reconciled`, `mismatches`.
            `to_dict` replaces `counts` by `counts()` (every row) and adds `ok`,
            and `by_resource` (`counts_by_resource`) for organizations imported with notes.
        names: IRI -> name (`Plan.names`): report.csv and the Rows sheet show the name;
            report.json keeps the IRIs.
    """

    rows: pl.DataFrame
    issues: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ISSUE_SCHEMA))
    summary: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no row is invalid, conflict, failed, unconfirmed or drifted, and the run did not stop
        before its end (`summary["stopped"]`)."""
        if self.summary.get("stopped"):
            return False
        return not self.rows.height or not self.rows["outcome"].is_in(NOT_OK).any()

    def counts(self) -> dict[str, int]:
        """Return rows per outcome: every `COUNT_KEYS` key (0 when none) plus any other seen."""
        seen = dict(self.rows["outcome"].value_counts().iter_rows()) if self.rows.height else {}
        counts = {key: int(seen.pop(key, 0)) for key in COUNT_KEYS}
        extra = sorted(seen, key=lambda k: (OUTCOMES.index(k) if k in OUTCOMES else 99, str(k)))
        return counts | {str(k): int(seen[k]) for k in extra}

    def full_summary(self) -> dict[str, Any]:
        """report.json's `summary`: `summary` plus `counts` (`counts()`), `ok` and, for
        organizations with their notes, `by_resource` (`counts_by_resource`)."""
        summary = {**self.summary, "counts": self.counts(), "ok": self.ok}
        if parts := counts_by_resource(self):  # organizations with their notes, counted apart
            summary["by_resource"] = parts
        return summary

    def to_dict(self) -> dict[str, Any]:
        """Return report.json's document (`report_json`) as Python values: `{"summary",
        "rows", "issues"}`; rows' `changes` as lists of `{field, before, after}` with the
        values as JSON values (`"b"`, `["/tags/2"]`, null), not the JSON texts `Report.rows`
        holds; each row also has its `errors` and `warnings` (messages) and the `columns` they
        name, as report.csv (lists, empty when none)."""
        return json.loads(report_json(self))


def report_json(report: Report) -> str:
    """report.json's text: `summary` (`Report.full_summary`, indented), then `rows` and
    `issues` (`errors.ISSUE_SCHEMA`) one compact JSON object a line, so a 50k-row report is
    written column-wise in well under a second (Python's indenting encoder took seconds and a
    string of the whole document per step). Each row: the `ROW_SCHEMA` keys, its `changes`
    (`[{field, before, after}]`, the JSON texts `Report.rows` holds put in as JSON values),
    then `errors`, `warnings` and `columns` (lists, empty when none)."""
    rows = conform(report.rows, ROW_SCHEMA).with_columns(
        pl.col("changes").fill_null(pl.lit([], dtype=CHANGE_DTYPE)))
    keyed = rows.with_columns(pl.col("resource").fill_null("organizations"))
    messages = _row_messages(conform(report.issues, ISSUE_SCHEMA), keyed).rename({"resource": "__res"})
    none = pl.lit([], dtype=pl.List(pl.String))
    rows = (rows.with_columns(keyed["resource"].alias("__res"))
            .join(messages, on=["row_number", "__res"], how="left", maintain_order="left", nulls_equal=True)
            .with_columns(pl.col("errors", "warnings", "columns").fill_null(none)).drop("__res"))
    cols = list(rows.columns)
    at = cols.index("changes")
    head, tail = (pl.struct(cols[:at]).struct.json_encode(), pl.struct(cols[at + 1:]).struct.json_encode())
    item = pl.element().struct
    changes = pl.col("changes").list.eval(pl.concat_str(
        pl.lit('{"field":'), pl.struct(item.field("field").alias("v")).struct.json_encode().str.slice(5).str.head(-1),
        pl.lit(',"before":'), item.field("before").fill_null("null"),
        pl.lit(',"after":'), item.field("after").fill_null("null"), pl.lit("}"))).list.join(",")
    lines = rows.select(pl.concat_str(head.str.head(-1), pl.lit(',"changes":['), changes, pl.lit("],"),
                                      tail.str.slice(1))).to_series()
    issues = conform(report.issues, ISSUE_SCHEMA)
    issue_lines = issues.select(pl.struct(pl.all()).struct.json_encode()).to_series() if issues.width else []
    summary = json.dumps(report.full_summary(), indent=2, ensure_ascii=False, default=str)
    return "".join(["{\n\"summary\": ", summary, ",\n\"rows\": ", _json_list(lines),
                    ",\n\"issues\": ", _json_list(issue_lines), "\n}\n"])


def _json_list(lines: pl.Series | list) -> str:
    """A JSON array of JSON texts, one a line."""
    return "[\n" + ",\n".join(lines) + "\n]" if len(lines) else "[]"


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Return `frame` with exactly `schema`'s columns (missing ones null), cast to its dtypes."""
    return frame.select(
        (pl.col(n) if n in frame.columns else pl.lit(None)).cast(dtype).alias(n)
        for n, dtype in schema.items())


def _row_messages(issues: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Return `row_number, resource, errors, warnings` (messages, List(String)) and `columns`
    (the distinct columns named, in order) per report row with issues (`rows`: `row_number`,
    `resource`, `sheet`). An issue naming its resource goes to that row only; one without
    (what the reader found) to every row of its row_number on its sheet."""
    is_error = pl.col("severity").fill_null("error") == "error"
    issues = issues.filter(pl.col("row_number").is_not_null()).with_row_index("_i")
    whole = issues.filter(pl.col("resource").is_null()).drop("resource").join(
        rows.select("row_number", "sheet", "resource").unique(), on=["row_number", "sheet"], nulls_equal=True)
    return (pl.concat([issues.filter(pl.col("resource").is_not_null()), whole], how="diagonal")
            .sort("_i").group_by("row_number", "resource", maintain_order=True)
            .agg(errors=pl.col("message").filter(is_error),
                 warnings=pl.col("message").filter(~is_error),
                 columns=pl.col("column").drop_nulls().unique(maintain_order=True)))


def report_table(report: Report) -> pl.DataFrame:
    """Return the flat per-row table of `report.csv` / the `Rows` sheet (`REPORT_COLUMNS`).

    `changes` becomes `field: before → after; …` (JSON texts, `null` when absent); `errors` and
    `warnings` join that row's issue messages with `; `. Rows are sorted by `row_number`.
    """
    rows = conform(report.rows, ROW_SCHEMA).sort("row_number", nulls_last=True,
                                                  maintain_order=True)
    item = pl.element().struct
    changes = pl.col("changes").list.eval(pl.concat_str(
        item.field("field"), pl.lit(": "), _named(item.field("before"), report.names).fill_null("null"),
        pl.lit(" → "), _named(item.field("after"), report.names).fill_null("null"))).list.join("; ")
    rows = rows.with_columns(pl.col("resource").fill_null("organizations"))
    messages = _row_messages(conform(report.issues, ISSUE_SCHEMA), rows)
    return (rows.join(messages, on=["row_number", "resource"], how="left", maintain_order="left")
            .with_columns(changes.fill_null(""),
                          pl.col("errors", "warnings", "columns").list.join("; ").fill_null(""))
            .select(REPORT_COLUMNS))


def _named(text: pl.Expr, names: dict[str, str]) -> pl.Expr:
    """JSON `text` with the IRIs of `names` shown as names (`planfile.quoted_names`)."""
    if not names:
        return text
    quoted = quoted_names(names)
    return text.str.replace_many(list(quoted), list(quoted.values()))


def _summary_sheet(book: Book, report: Report) -> None:
    ws = book.wb.create_sheet("Summary")
    ws.column_dimensions["A"].width, ws.column_dimensions["B"].width = 16, 60
    s = report.summary
    # organizations with their notes: each resource's counts apart ("notes: created"), as the
    # terminal shows them
    items = [(f"{kind}: {k}" if kind else k, n) for kind, counts in _count_parts(report).items()
             for k, n in counts.items()]
    items += [("tags_created", s["tags_created"])] if s.get("tags_created") else []
    items += [("requests", s.get("requests")), ("ok", report.ok)]
    if s.get("already_done"):  # done by an earlier, stopped run of the plan (not this run's writes)
        items.append(("already_done", s["already_done"]))
    items += [(k, s[k]) for k in ("stopped", "left") if s.get(k)]  # a stopped or --limit run
    items += [(k, s.get(k)) for k in ("dry_run", "target", "template", "input", "plan",
                                      "reconciled", "mismatches", "started_at", "finished_at")]
    ws.append([book.cell(ws, "item", bold=True), book.cell(ws, "value", bold=True)])
    for key, value in items:
        ws.append([book.cell(ws, key), book.cell(ws, value)])


def _errors_frame(issues: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """Return `ERROR_COLUMNS` plus `_line` (the `Rows` sheet line of the issue's row, or null)."""
    where = pl.concat_str(
        pl.when(pl.col("row_number").is_not_null()).then(pl.format("row {}", "row_number")),
        pl.when(pl.col("column").is_not_null()).then(pl.format("column {}", "column")),
        separator=", ", ignore_nulls=True)
    lines = table.select("row_number", "resource", "sheet").with_row_index("_line", offset=2).filter(
        pl.col("row_number").is_not_null())
    first = lines.unique(["row_number", "sheet"], keep="first").select(
        "row_number", "sheet", pl.col("_line").alias("_first"))
    return (conform(issues, ISSUE_SCHEMA)
            .join(lines.drop("sheet"), on=["row_number", "resource"], how="left", maintain_order="left")
            .join(first, on=["row_number", "sheet"], how="left", maintain_order="left", nulls_equal=True)
            .with_columns(pl.coalesce("_line", "_first").alias("_line"))  # whole-row: its first line
            .with_columns(reference=pl.when(where == "").then(pl.lit("file")).otherwise(where))
            .select(*ERROR_COLUMNS, "_line"))


def write_report(report: Report, out_dir: str | Path, *, input_sheet: Sheet | None = None,
                 input_path: str | Path | None = None, secrets: Iterable[str] | None = None,
                 other_sheets: dict[str, Sheet | None] | None = None,
                 input_csv: tuple[str, bool] | None = None) -> dict[str, Path]:
    """Write the reconciliation report into `out_dir` (created if needed).

    Files: `report.json` (`report_json`), `report.csv` (`REPORT_COLUMNS`, one line per
    input row, cells neutralised by `neutralise_csv`), `report.xlsx` (sheets `Summary`, `Rows` with
    the outcome cell coloured per `OUTCOME_COLOURS`, `Issues` one line per issue (error or warning) whose `reference`
    links to the row in `Rows`). With `input_sheet` also `<input stem>.with-status.csv` (and
    `.xlsx` when `input_path` is .xlsx/.xlsm): the input plus `STATUS_COLUMNS` (the IRI, the
    outcome, what to fix), joined on `row_number`, the table where the input has it (`sheet_layout`:
    its header row, each row on the line of its `row_number`, each column in its letters, the
    status columns after them), so the cells the notes name are the copy's. A workbook's copy
    also holds `other_sheets` (a notes sheet of the same workbook), each with its own rows' status.

    Args:
        report: the run's `Report`.
        out_dir: directory for the files.
        input_sheet: the input as read (`read.Sheet`: frame, header row, letters), for the
            write-back copy.
        input_path: the input file; its stem and suffix name the write-back copy.
        secrets: strings (API keys) replaced by `[redacted]` wherever they would be written.
        other_sheets: sheet name -> `Sheet` of the workbook's other sheets the run read (None:
            a blank sheet, copied blank).
        input_csv: (separator, BOM) of the with-status CSV copy (`copy_format`); default
            `,` without a BOM.

    Returns:
        Paths by key: `json`, `csv`, `xlsx`, plus `with_status_csv` / `with_status_xlsx`.

    Raises:
        OSError: a file cannot be written. Row problems never raise; they are in the report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep_earlier_report(out, report.summary)
    redact = Redactor(secrets)
    table = report_table(report)
    paths = {
        "json": write_text(out / "report.json", report_json(report), redact),
        "csv": write_text(out / "report.csv", neutralise_csv(table).write_csv(), redact),
    }
    errors = _errors_frame(report.issues, table)
    book = Book(max(table.height, errors.height), redact)
    _summary_sheet(book, report)
    book.sheet("Rows", table, decorate=_colour_outcome)
    links = errors["_line"].to_list()
    book.sheet("Issues", errors.drop("_line"), decorate=lambda line, _v, cells: _link(
        cells[-1], links[line - 2] if line > 1 else None))
    paths["xlsx"] = book.save(out / "report.xlsx")
    if input_sheet is not None:
        from .copies import write_copies  # which builds on this module
        paths |= write_copies(report, out, input_sheet, input_path, redact, other_sheets, input_csv)
    return paths


REPORT_FILES = ("report.json", "report.csv", "report.xlsx", "*.with-status.csv", "*.with-status.xlsx")
"""The files of one run's report in its folder (`write_report`)."""


def keep_earlier_report(out: Path, summary: dict) -> Path | None:
    """Move the report of another plan's run out of `out` before a new one is written there.

    A weekly import of the same file name, or `apply` of a plan saved elsewhere after an
    `import` of its input, writes to the same `reports/<stem>` folder. The report already
    there records what an earlier run wrote, so it moves to `out/earlier/<its finished_at>/`
    (the journal of an earlier plan is kept the same way: `pipeline.archive_journal`). A
    report of the same plan (a stopped run, then its resume) and a dry run's are replaced.

    Args:
        out: the report folder.
        summary: the new report's `Report.summary` (`plan`, `plan_created_at`, `dry_run`).

    Returns:
        the folder the earlier report went to, or None when nothing was moved.
    """
    old = _earlier_summary(out / "report.json")
    if old is None or old.get("dry_run") or summary.get("dry_run"):
        return None
    same = old.get("plan") == summary.get("plan") and \
        old.get("plan_created_at", summary.get("plan_created_at")) == summary.get("plan_created_at")
    return None if same else _move_report(out, old)


def set_aside_report(out: Path) -> Path | None:
    """Move whatever report `out` holds (`REPORT_FILES`) to `out/earlier/<its finished_at>/`, as
    `keep_earlier_report` moves another plan's: for a stopped run whose report so far could
    not be written (a second Ctrl-C cut it short; it was being written elsewhere,
    `pipeline._on_stop`), so the folder shows no earlier run's outcome as this one's. The
    journal keeps what the run did, and a resume writes its report. Returns that folder, or
    None when `out` held no report."""
    if not any(f for pattern in REPORT_FILES for f in out.glob(pattern)):
        return None
    return _move_report(out, _earlier_summary(out / "report.json") or {})


def install_report(staging: Path, out: Path) -> None:
    """Replace `out`'s report (`REPORT_FILES`) by the one written into `staging` (a folder
    inside `out`), which is then removed."""
    for pattern in REPORT_FILES:
        for f in out.glob(pattern):
            f.unlink()
    for f in staging.iterdir():
        f.replace(out / f.name)
    staging.rmdir()


def _move_report(out: Path, old: dict) -> Path:
    """Move `out`'s report files to `out/earlier/<old's finished_at>/`; return that folder."""
    stamp = str(old.get("finished_at") or "unknown").replace(":", "-")
    dest = out / "earlier" / stamp
    for n in range(2, 1000):  # two runs finished in one second
        if not dest.exists():
            break
        dest = out / "earlier" / f"{stamp}.{n}"
    dest.mkdir(parents=True)
    for pattern in REPORT_FILES:
        for f in out.glob(pattern):
            f.replace(dest / f.name)
    return dest


def _earlier_summary(path: Path) -> dict | None:
    """The `summary` of the report.json at `path` (written by `report_json`, summary first),
    `{}` when it cannot be read as one (kept, as an unknown run's), None when there is none."""
    if not path.is_file():
        return None
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(1 << 20)
        start, end = head.find('"summary": '), head.find(',\n"rows": ')
        if start < 0 or end < 0:
            return {}
        summary = json.loads(head[start + len('"summary": '):end])
        return summary if isinstance(summary, dict) else {}
    except (OSError, ValueError):
        return {}


def _colour_outcome(line: int, values: tuple, cells: list) -> None:
    rgb = OUTCOME_COLOURS.get(values[1]) if line > 1 else None
    if rgb:
        cells[1].fill = FILLS[rgb]


def _link(cell, line: int | None) -> None:
    if line is not None:
        cell.hyperlink = Hyperlink(ref="", location=f"'Rows'!A{line}", display=str(cell.value))


_KIND_NAMES = {"organization_notes": "notes"}


def counts_by_resource(report: Report) -> dict[str, dict[str, int]]:
    """`{"organizations": counts, "notes": counts}` (`Report.counts` of each resource's rows)
    when the report holds organizations and their notes; `{}` when it holds one resource."""
    if "resource" not in report.rows.columns or not report.rows.height:
        return {}
    kinds = sorted(report.rows["resource"].fill_null("organizations").unique().to_list(),
                   key=lambda k: (k != "organizations", k))  # organizations first, as planned
    if len(kinds) < 2:
        return {}
    return {_KIND_NAMES.get(k, k): Report(rows=report.rows.filter(
        pl.col("resource").fill_null("organizations") == k)).counts() for k in kinds}


def _count_parts(report: Report) -> dict[str, dict[str, int]]:
    """`counts_by_resource`, or `{"": report.counts()}` when the report holds one resource."""
    return counts_by_resource(report) or {"": report.counts()}


def render_summary(report: Report, *, out_dir: str | Path | None = None) -> str:
    """Return terminal lines: counts in `COUNT_KEYS` order (then others), one line per resource
    when the run wrote organizations and their notes, requests, report path.

    Example::

        created 1, patched 1, replaced 0, unchanged 1, conflict 1, invalid 1, failed 1
        tags created: 2
        requests: 7
        3 rows need attention; see out/report.xlsx (also report.csv, report.json)
    """
    s = report.summary
    # organizations with their notes are counted apart, one line each
    lines = [(f"{kind}: " if kind else "") + ", ".join(f"{k} {n}" for k, n in counts.items())
             for kind, counts in _count_parts(report).items()]
    if s.get("tags_created"):  # the template's `create_missing` tags the plan made
        lines.append(f"tags created: {s['tags_created']}")
    dry = " (dry run: nothing written)" if s.get("dry_run") else ""
    throttled = f" ({s['throttled']} throttled: answered 429)" if s.get("throttled") else ""
    lines.append(f"requests: {s.get('requests', 0)}{throttled}{dry}")
    if s.get("reconciled"):
        lines.append(f"reconciled: {s.get('mismatches', 0)} mismatch(es)")
    retried = s.get("failed_to_retry") or 0
    if s.get("stopped") and (s.get("left") or retried):
        todo = [f"do the {s['left']} operation(s) not applied yet"] if s.get("left") else []
        todo += [f"try the {retried} that failed again"] if retried else []
        lines.append(f"the run stopped: run the same apply again to {' and to '.join(todo)}")
    elif s.get("left"):  # apply --limit
        lines.append(f"{s['left']} operation(s) not applied yet (--limit): run the same apply again "
                     "(with or without --limit) to do them")
    unsure = report.rows.height and int((report.rows["outcome"] == "unconfirmed").sum())
    if unsure:  # sent, answer not seen: the next run looks each up before sending anything
        lines.append(f"{unsure} write(s) unconfirmed (sent, no answer seen): run the same apply again "
                     "to settle them; nothing is sent twice")
    bad = report.rows.height and int(report.rows["outcome"].is_in(NOT_OK).sum())
    head = f"{bad} row(s) need attention; see" if bad else "report:"
    if out_dir is not None:
        lines.append(f"{head} {Path(out_dir) / 'report.xlsx'} (also report.csv, report.json)")
    elif bad:
        lines.append(f"{bad} row(s) need attention")
    return "\n".join(lines)
