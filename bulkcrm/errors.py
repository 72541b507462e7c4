"""Exceptions and the `Issue` row record.

Exception tree (the class, not the text, says who must act and whether a retry helps)::

    BulkcrmError
    ├── TemplateError(path, key)            the template file is wrong: fix the YAML
    ├── InputError(path, row_number, column) the input file cannot be read at all
    ├── ApiError(status, method, url, detail)
    │   ├── TransientApiError               429/5xx/connection, raised only after retries ran out
    │   │   └── UncertainWriteError         a write may have been committed (no answer came back)
    │   ├── AuthError                       401/403: stop the run, check the key
    │   └── PermanentApiError               other 4xx: this request will never succeed
    ├── PlanError                           stale plan, or a plan for another template/target
    ├── JournalError                        the journal is unreadable or belongs to another plan
    └── ConfigError                         the target options are wrong (a URL without a key/scheme)

Row problems are never exceptions: they are `Issue` records carried into the report while the
other rows proceed (frictionless row errors, pandera failure cases).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import polars as pl


def did_you_mean(name: Any, known: Iterable[str]) -> str:
    """` (did you mean 'title'?)`: the known name closest to `name` (a typo, another case:
    `titel`, `customerID`, `emial`; difflib, case ignored), else ""."""
    by_lower = {str(k).lower(): str(k) for k in known}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.75)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def first_few(items: Iterable[str], shown: int = 5, total: int | None = None) -> str:
    """`a, b, c and 4 more`: the first `shown` of `items` (already text), and how many others,
    for a message that must stay one line however many there are. `total`: how many there
    are, when `items` holds only the first ones (a big frame's head)."""
    items = list(items)
    total = len(items) if total is None else total
    more = f" and {total - shown} more" if total > shown else ""
    return ", ".join(items[:shown]) + more


class BulkcrmError(Exception):
    """Root of every error bulkcrm raises on purpose."""


class TemplateError(BulkcrmError):
    """The template file is invalid. Attributes: `path`, `key` (dotted key path or None),
    `message` (without them)."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path, self.key, self.message = path, key, message
        where = ":".join(p for p in (str(path) if path else None, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class InputError(BulkcrmError):
    """An input file cannot be read. Attributes: `path`, `row_number`, `column` (each may be None)."""

    def __init__(self, message: str, *, path: str | None = None, row_number: int | None = None,
                 column: str | None = None):
        self.path, self.row_number, self.column = path, row_number, column
        where = ":".join(str(p) for p in (path, row_number, column) if p is not None)
        super().__init__(f"{where}: {message}" if where else message)


class EmptyInputError(InputError):
    """The file or sheet holds no header row (nothing but blank cells)."""


class ApiError(BulkcrmError):
    """The API answered with an error. Attributes: `status` (int or None), `method`, `url`
    (base URL stripped, never the key), `detail` (problem detail, crm-api.md §5.2),
    `violations` (list of {propertyPath, message, code}), `retry_after_s`."""

    def __init__(self, message: str, *, status: int | None = None, method: str = "",
                 url: str = "", detail: str = "", violations: list[dict] | None = None,
                 retry_after_s: float | None = None):
        self.status, self.method, self.url, self.detail = status, method, url, detail
        self.violations = violations or []
        self.retry_after_s = retry_after_s
        super().__init__(message)


class TransientApiError(ApiError):
    """429, 5xx or a connection failure that outlived every retry; trying later may work."""


class UncertainWriteError(TransientApiError):
    """A POST/PUT/PATCH got no answer (timeout, reset) or a 5xx: it may have been committed.
    Resolve by looking the record up before sending it again (apply does)."""


class AuthError(ApiError):
    """401/403: the key is missing, wrong, or not allowed. Stop the run."""


class PermanentApiError(ApiError):
    """Another 4xx (400, 404, 409, 415, 422): sending it again will not help."""


class PlanError(BulkcrmError):
    """The plan cannot be applied: stale, unreadable, or made for another template/target."""


class JournalError(BulkcrmError):
    """The journal is unreadable or belongs to another plan."""


class BusyError(JournalError):
    """Another run holds a lock this one needs (the plan's journal, or the target's writes):
    nothing was sent; run it again when that one has finished."""


class ConfigError(BulkcrmError):
    """The target options cannot work: a base URL without a key, or without http(s)://."""


@dataclass(frozen=True)
class Issue:
    """One problem found in one row (and usually one column) of the input.

    Attributes:
        type: kebab-case slug from `vocab.ISSUE_TYPES`, e.g. `invalid-email`.
        row_number: 1-based, counting the header, as the spreadsheet shows it (None: whole file).
        column: the sheet column (not the API field), or None for a whole-row issue.
        value: the cell's text as read, or None.
        rule: the rule broken, with its source, e.g. `ISO 3166-1 alpha-2`.
        message: what is wrong and how to fix it.
        severity: `error` rejects the row; `warning` lets it proceed.
        file: input file name; sheet: worksheet name for XLSX (None for CSV).
        cell: Excel reference such as `B2` when known.
        resource: which of the row's records the issue is about when one sheet row holds two
            (an organization and its note: `organizations`, `organization_notes`), or when a
            plan reads two sheets; None: the whole row (what the reader found).
    """

    type: str
    row_number: int | None
    column: str | None
    value: str | None
    rule: str
    message: str
    severity: str = "error"
    file: str | None = None
    sheet: str | None = None
    cell: str | None = None
    resource: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def where(self) -> str:
        """`file:row:column` for messages (`place`)."""
        return place(self.file, self.row_number, self.column)


def place(file: str | None, row_number: int | None, column: str | None) -> str:
    """`file:row:column`, the parts that are known, e.g. `orgs.csv:12:email`."""
    return ":".join(str(p) for p in (file, row_number, column) if p)


def with_cell(issue: Issue, letters: dict[str, str], sheet_name: str | None) -> Issue:
    """`issue` naming its cell (`B4`) when its column's letters are known (`read.Sheet.letters`);
    in a workbook (`sheet_name`) its message names it too, after the place, as the reader's
    issues do (`x.xlsx:4:email (Orgs!B4): …`)."""
    if issue.cell or issue.column not in letters or issue.row_number is None:
        return issue
    cell = f"{letters[issue.column]}{issue.row_number}"
    head = place(issue.file, issue.row_number, issue.column) + ": "
    message = issue.message
    if sheet_name is not None and message.startswith(head):
        message = f"{head[:-2]} ({sheet_name}!{cell}): {message[len(head):]}"
    return replace(issue, cell=cell, message=message)


def about(resource: str, issues: Iterable[Issue], whole_row: Iterable[Issue] = ()) -> list[Issue]:
    """`issues`, each naming `resource` (`Issue.resource`: `organizations`,
    `organization_notes`) except those in `whole_row` (what the reader found: a bad cell is
    about every record of its row), compared by type, row and column."""
    keep = {(i.type, i.row_number, i.column) for i in whole_row}
    return [i if (i.type, i.row_number, i.column) in keep else replace(i, resource=resource) for i in issues]


ISSUE_SCHEMA: dict[str, pl.DataType] = {
    "type": pl.String, "severity": pl.String, "file": pl.String, "sheet": pl.String,
    "row_number": pl.Int64, "column": pl.String, "cell": pl.String, "value": pl.String,
    "rule": pl.String, "message": pl.String, "resource": pl.String,
}
"""Columns and dtypes of an issues frame (one row per `Issue`)."""


def issues_frame(issues: list[Issue] | None = None) -> pl.DataFrame:
    """Return `issues` as a frame with `ISSUE_SCHEMA` columns (empty frame for none)."""
    rows = [i.to_dict() for i in issues or []]
    return pl.DataFrame(rows, schema=ISSUE_SCHEMA) if rows else pl.DataFrame(schema=ISSUE_SCHEMA)
