"""The plan as data: `Operation`, `Plan` (save/load as JSON) and `render_plan` (terraform-style text).

`plan.plan` builds a `Plan` column-wise: its rows and its organization operations are polars
frames (`ROW_SCHEMA`, `OP_SCHEMA`; bodies, identifiers and snapshots as JSON text). `Plan.rows`
and `Plan.operations` are Python views of them (dicts, `Operation`s), made on first use and
kept; from then on the lists are what the plan holds. The plan file is the same either way.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import polars as pl

from .errors import PlanError, first_few
from .template import SEARCHABLE_IDENTIFIERS
from .vocab import MODE_SKIPS

SCHEMA_VERSION = 1
WRITE_OPS = ("create", "patch", "replace")
CONFLICT_TYPES = ("duplicate-row", "ambiguous-match", "iri-mismatch", "identifier-mismatch", "moved-note")
CHANGE_DTYPE = pl.List(pl.Struct({"field": pl.String, "before": pl.String, "after": pl.String}))
"""`changes`: [{field, before, after}], values JSON-encoded (null = empty)."""
ROW_SCHEMA = {"row_number": pl.Int64, "op": pl.String, "iri": pl.String, "title": pl.String,
              "changes": CHANGE_DTYPE, "cleared": pl.List(pl.String), "note": pl.String,
              "key": pl.String, "resource": pl.String}
"""Columns of the rows frame (one row per input row); see `Plan.rows`."""
OP_SCHEMA = {"key": pl.String, "op": pl.String, "method": pl.String, "path": pl.String,
             "body": pl.String, "row_numbers": pl.List(pl.Int64), "iri": pl.String,
             "title": pl.String, "identifiers": pl.String, "snapshot": pl.String,
             "changes": CHANGE_DTYPE, "cleared": pl.List(pl.String),
             "depends_on": pl.List(pl.String), "resource": pl.String,
             "content_key": pl.List(pl.String)}
"""Columns of the operations frame; `body`, `identifiers`, `snapshot` are JSON text."""
_JSON_COLS = ("body", "identifiers", "snapshot")


def now_utc() -> str:
    """The current UTC time to the second, ISO 8601 (`2026-11-30T10:14:19+00:00`): plan
    creation and report start/finish times."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Operation:
    """One write the plan will send.

    Attributes:
        key: unique within the plan (`row:12`, `tag:VIP`); the journal records it.
        op: create | patch | replace. method: POST | PATCH | PUT. path: root-relative URL.
        body: JSON body; strings `$ref:<key>` are replaced by the IRI another operation created.
        row_numbers: input rows this operation serves. iri: target record (patch/replace).
        identifiers: {field: [normalised values]} used to find a create whose answer was lost.
        snapshot: record values of the touched fields at planning time (drift check).
        changes: [{field, before, after}] (JSON-encoded values). cleared: fields a PUT empties.
        depends_on: keys of operations that must be done first.
        resource: organizations | organization_notes (issue 8).
        content_key: for a note create, the content key fields that find it again when the
            answer was lost (`notes.find_created_note`). A path may start with `$ref:<key>`
            (a note of an organization created by operation `<key>`).
    """

    key: str
    op: str
    method: str
    path: str
    body: dict
    row_numbers: list[int]
    iri: str | None = None
    title: str | None = None
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    snapshot: dict | None = None
    changes: list[dict] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    resource: str = "organizations"
    content_key: list[str] = field(default_factory=list)


def searchable_values(ops: list[Operation]) -> set[str]:
    """The identifier values of `ops` an `identifiers[]` lookup can find (crm-api.md §8.3):
    what reconciliation re-reads them by, 30 a request."""
    return {v for o in ops for f, vals in o.identifiers.items() if f in SEARCHABLE_IDENTIFIERS for v in vals}


def without_searchable(ops: list[Operation]) -> int:
    """How many of `ops` have no identifier the API can filter on (crm-api.md §8.3): their
    records are re-read by IRI, or with a full listing."""
    return sum(1 for o in ops if not any(f in SEARCHABLE_IDENTIFIERS for f in o.identifiers))


def drift_checked(op: Operation) -> bool:
    """Whether `apply PLAN` re-reads `op`'s record before writing (`apply._check_changed_since`):
    an update (PATCH, PUT) of an organization or a note, or a note's mirror delete, with the
    snapshot of what the plan saw."""
    return bool(op.iri and op.snapshot and op.method in ("PATCH", "PUT", "DELETE")
                and op.resource in ("organizations", "organization_notes"))


def copy_checked(op: Operation) -> bool:
    """Whether the first run of `apply PLAN` looks for a copy of `op` made since the plan
    (`apply._check_notes_created_since`): a note create on an organization that existed when
    the plan was made, not on one the plan creates (a path `$ref:…`, `lookups.REF_PREFIX`)."""
    return op.resource == "organization_notes" and op.method == "POST" and not op.path.startswith("$ref:")


def note_owner_iri(iri: str) -> str:
    """The organization IRI of a note IRI (`/organizations/{id}/notes/{nid}` -> its
    `/organizations/{id}` part; `notes_orgs.note_owner` is the column form)."""
    return re.sub(r"/notes/[^/]+$", "", iri)


NOTE_CHECKS_MAX = 100
"""Most organizations `apply._check_notes_created_since` lists the notes of (a request each) to
find copies of the plan's note creates made since it; beyond, none is listed."""


def note_reread_cost(ops: list[Operation]) -> int:
    """Requests `apply._reread_notes` spends at least re-reading the notes of `ops`: a GET for an
    organization with one of them, else a listing of its notes (⌈notes / 30⌉ pages, at least
    ⌈ops / 30⌉; crm-api.md §9.2)."""
    per_org = Counter(note_owner_iri(o.iri) for o in ops if o.iri)
    return sum(1 if n == 1 else -(-n // 30) for n in per_org.values())


def reread_cost(ops: list[Operation], pages: int | None) -> int:
    """Requests `apply._reread` spends re-reading the records of `ops`: `identifiers[]`
    lookups of their searchable identifiers (30 values a request) and a GET per record without
    one, or, when that may cost more, a count first and a full listing (`pages`: ⌈records/30⌉,
    None when not known) when that costs fewer (crm-api.md §6, §8.3)."""
    lookups = -(-len(searchable_values(ops)) // 30)
    bare = without_searchable(ops)
    count = int(lookups + bare > 2)
    if count and pages is not None and pages < lookups + bare:
        return 1 + pages
    return max(count, int(bare > 1)) + lookups + (min(bare, pages) if bare > 1 and pages else bare)


def ops_frame(ops: list[Operation]) -> pl.DataFrame:
    """`Operation`s as an `OP_SCHEMA` frame (bodies, identifiers, snapshots JSON-encoded)."""
    cols: dict[str, list] = {f.name: [getattr(o, f.name) for o in ops] for f in fields(Operation)}
    for c in _JSON_COLS:
        cols[c] = [None if v is None else json.dumps(v, ensure_ascii=False) for v in cols[c]]
    return pl.DataFrame(cols, schema=OP_SCHEMA)


def _operations(frame: pl.DataFrame) -> list[Operation]:
    out = []
    for d in frame.iter_rows(named=True):
        d["body"] = json.loads(d["body"])
        d["identifiers"] = json.loads(d["identifiers"]) if d["identifiers"] else {}
        d["snapshot"] = json.loads(d["snapshot"]) if d["snapshot"] else None
        out.append(Operation(**d))
    return out


class Plan:
    """A saved decision for every input row (JSON file, `schema_version` 1).

    Attributes:
        rows: one dict per input row: row_number, op, iri, title, changes, cleared, note, key,
            resource (organizations | organization_notes); note rows also `sheet` and
            `organization`; mirror deletes have row_number None. (`row_frame()`: as a frame.)
        operations: the writes, in the order apply sends them.
        issues: ISSUE_SCHEMA dicts (validation, lookups, conflicts).
        requests_spent: requests used while planning (lookups).
        target: base URL (never the key). template/input: paths with sha256 hashes.
        records_total: organizations on the target when planning listed them all (scan), else
            None; the reconcile estimate uses it.
        names: IRI (or `$ref:tag:<name>` placeholder) -> the name a person knows it by (tag
            titles, owner e-mails), shown instead of it in the plan text and the report sheets.
        timings: seconds per planning stage (read, map, fetch, validate+match, lookups, diff);
            `fetch` is the network part: finding the records and decoding their pages;
            validating the rows and matching them to those records run side by side.
        matched_at: when matching began (ISO 8601 UTC, before its first request): a record
            created later may be missing from what the plan saw (apply checks from there);
            None in a plan of notes alone or of an older version (then `created_at`).
        notes_sheet: the workbook sheet the template's notes are on (`notes: {sheet: …}`), also
            when it was blank (a week without notes): the with-status copy keeps it.
        default_region: the template's (ISO 3166-1 alpha-2): the region of a record's phone
            without a country when apply looks for records created since the plan.
        header_row: the sheet's header row as planning read it (given, or detected with the
            template's columns): the with-status copy reads the input again from it;
            `notes_header_row`: the same of a separate notes sheet.
        plan_id: made with the plan (a random UUID), kept by its file and every copy of it: a
            copy applied after the plan was is refused (`apply._check_copy`). A file of an
            older version has none (a new one each load: not checked).
    """

    _FIELDS = ("template", "template_sha256", "input", "input_sha256", "target", "mode", "strategy",
               "created_at", "rows", "operations", "issues", "requests_spent", "sheet",
               "schema_version", "notes", "timings", "records_total", "names", "matched_at", "notes_sheet",
               "default_region", "header_row", "notes_header_row", "plan_id")

    def __init__(self, *, template: str, template_sha256: str, input: str, input_sha256: str,
                 target: str, mode: str, strategy: str, created_at: str,
                 rows: list[dict] | pl.DataFrame, operations: list[Operation] | pl.DataFrame,
                 issues: list[dict], requests_spent: int, sheet: str | None = None,
                 schema_version: int = SCHEMA_VERSION, notes: list[str] | None = None,
                 timings: dict[str, float] | None = None, records_total: int | None = None,
                 names: dict[str, str] | None = None, matched_at: str | None = None,
                 notes_sheet: str | None = None, default_region: str | None = None,
                 header_row: int | None = None, notes_header_row: int | None = None,
                 plan_id: str | None = None):
        self.template, self.template_sha256, self.input, self.input_sha256 = \
            template, template_sha256, input, input_sha256
        self.target, self.mode, self.strategy, self.created_at = target, mode, strategy, created_at
        self.issues, self.requests_spent, self.sheet = issues, requests_spent, sheet
        self.schema_version, self.notes, self.timings = schema_version, notes or [], timings or {}
        self.records_total, self.names, self.matched_at = records_total, names or {}, matched_at
        self.notes_sheet, self.default_region, self.header_row = notes_sheet, default_region, header_row
        self.notes_header_row = notes_header_row
        self.plan_id = plan_id or uuid.uuid4().hex  # a copy of the file keeps it (`apply._check_copy`)
        self._rows, self._ops = rows, operations

    @property
    def rows(self) -> list[dict]:
        if isinstance(self._rows, pl.DataFrame):
            self._rows = self._rows.to_dicts()
        return self._rows

    @rows.setter
    def rows(self, value: list[dict]) -> None:
        self._rows = value

    @property
    def operations(self) -> list[Operation]:
        if isinstance(self._ops, pl.DataFrame):
            self._ops = _operations(self._ops)
        return self._ops

    @operations.setter
    def operations(self, value: list[Operation]) -> None:
        self._ops = value

    def row_frame(self) -> pl.DataFrame:
        """The rows as a frame (`ROW_SCHEMA` columns; note rows' extra keys left out)."""
        if isinstance(self._rows, pl.DataFrame):
            return self._rows
        keep = [{k: r.get(k) for k in ROW_SCHEMA} for r in self._rows]
        return pl.DataFrame(keep, schema=ROW_SCHEMA)

    def note_organizations(self) -> dict[int, str]:
        """row_number -> `organization` of each note row that names one (an IRI, or `$ref:row:N`
        for an organization the plan creates); {} for a plan of organizations only."""
        if isinstance(self._rows, pl.DataFrame):
            return {}
        return {r["row_number"]: r["organization"] for r in self._rows
                if r.get("resource") == "organization_notes" and r.get("organization")}

    def tag_creates(self) -> list[Operation]:
        """The operations that create tags (`create_missing`), without making the `Operation`
        view of the others."""
        if isinstance(self._ops, pl.DataFrame):
            return _operations(self._ops.filter(pl.col("path") == "/tags"))
        return [o for o in self._ops if o.path == "/tags"]

    def n_operations(self) -> int:
        """How many writes the plan holds (without making the `Operation` view)."""
        return self._ops.height if isinstance(self._ops, pl.DataFrame) else len(self._ops)

    def counts(self, resource: str | None = None) -> dict[str, int]:
        """Rows per planned op (create, patch, replace, unchanged, skip, conflict, invalid, and
        delete when there are any), of one resource or (None) of all."""
        out = {k: 0 for k in ("create", "patch", "replace", "unchanged", "skip", "conflict", "invalid")}
        rows = self.row_frame()
        if resource is not None:
            rows = rows.filter(pl.col("resource").fill_null("organizations") == resource)
        for op, n in rows["op"].value_counts().iter_rows():
            out[op] = out.get(op, 0) + n
        return out

    def estimate(self, requests_per_minute: float | None = 20) -> dict[str, float]:
        """Requests apply will send and the minutes they take at `requests_per_minute`
        (default 20, the tenant limit of crm-api.md §4; None: the rate of the real API).

        Keys: `requests` (writes); `checks` (reads `apply PLAN` makes before its first write: a
        count of the organizations created since the plan when it creates any, its updates'
        records re-read to find those others changed since, as `apply._reread` does, and a
        listing of the notes of each organization that gets a new note; `import`
        applies its fresh plan without them); `reconcile` (re-reads afterwards, as `apply` does
        them: `identifiers[]` 30 values a request; for records without searchable identifiers
        one GET each, or a count and a full listing when that costs fewer requests, crm-api.md
        §6); `minutes` (all of them together).
        """
        ops = _views(self._ops) if isinstance(self._ops, pl.DataFrame) else self._ops
        n = len(ops)
        orgs = [o for o in ops if o.resource == "organizations" and o.path != "/tags"]
        creates = sum(o.op == "create" for o in orgs)
        updates = [o for o in orgs if drift_checked(o)]
        # pages of a full listing (30 records a page), known when planning listed the records
        before = None if self.records_total is None else -(-self.records_total // 30)
        after = None if self.records_total is None else -(-(self.records_total + creates) // 30)
        notes = [o for o in ops if o.resource == "organization_notes" and drift_checked(o)]
        # a listing per existing organization a note is created on (`apply._check_notes_created_since`)
        listed = {o.path for o in ops if copy_checked(o)}
        checks = int(creates > 0) + (reread_cost(updates, before) if updates else 0) + note_reread_cost(notes) \
            + (len(listed) if len(listed) <= NOTE_CHECKS_MAX else 0)
        reconcile = reread_cost(orgs, after) if orgs else 0
        rate = requests_per_minute or 20
        return {"requests": n, "checks": checks, "reconcile": reconcile,
                "minutes": round((n + checks + reconcile) / rate, 1), "requests_per_minute": rate}

    def to_dict(self, requests_per_minute: float | None = 20) -> dict[str, Any]:
        """The plan file's document; its `estimate` at `requests_per_minute` (None: 20)."""
        return self._document(requests_per_minute, lines=False)

    def _document(self, requests_per_minute: float | None, *, lines: bool) -> dict[str, Any]:
        """`to_dict`; with `lines`, rows and operations held as frames stay JSON lines
        (`_json_lines`), not Python values."""
        counts = self.counts()  # from the rows frame, before any dicts are made of it
        d = {k: getattr(self, k) for k in self._FIELDS if k not in ("rows", "operations")}
        if isinstance(self._rows, pl.DataFrame):
            d["rows"] = _json_lines(self._rows) if lines else self._rows.to_dicts()
        else:
            d["rows"] = self._rows
        if isinstance(self._ops, pl.DataFrame) and lines:
            d["operations"] = _json_lines(self._ops)
            d[CHECKSUM] = operations_checksum(json.loads(o) for o in d["operations"])
        else:
            d["operations"] = [_as_dict(o) for o in self.operations]
            d[CHECKSUM] = operations_checksum(d["operations"])
        d["counts"], d["estimate"] = counts, self.estimate(requests_per_minute)
        return {k: d[k] for k in (*self._FIELDS, "counts", "estimate", CHECKSUM)}

    def save(self, path: str | Path, requests_per_minute: float | None = 20) -> Path:
        """Write the plan as JSON (UTF-8); returns the path. One key a line, and in `rows`,
        `operations` and `issues` one item a line; rows and operations still held as frames
        are encoded column-wise by polars (a 50k-row plan in about a second, 6 s through
        Python objects). `requests_per_minute`: the pace its `estimate` is worked out at (the
        run's `--max-rate`)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", encoding="utf-8") as f:
            _write_lines(self._document(requests_per_minute, lines=True), f)
        return p

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        """Read a plan file. Raises PlanError when unreadable or of another schema version."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PlanError(f"{path}: plan file not found; check the path (`bulkcrm plan --out` "
                            "writes one)") from None
        except OSError as e:
            raise PlanError(f"{path}: cannot read the plan: {e.strerror or e}") from None
        except ValueError:
            raise PlanError(f"{path}: not a bulkcrm plan file (not JSON); pass the file "
                            "`bulkcrm plan --out` wrote") from None
        if not isinstance(d, dict) or "operations" not in d:
            raise PlanError(f"{path}: not a bulkcrm plan file; pass the file `bulkcrm plan --out` wrote")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise PlanError(f"{path}: plan schema version {d.get('schema_version')!r} is not {SCHEMA_VERSION}; "
                            "make it again with `bulkcrm plan`")
        sealed = d.get(CHECKSUM)
        d = {k: v for k, v in d.items() if k in cls._FIELDS}
        try:
            _check_document(d)
            ops = [_operation(o) for o in d["operations"]]
            if (sealed is None and d.get("plan_id")) or (  # a plan of this version is always sealed
                    sealed is not None and sealed != operations_checksum(d["operations"])):
                raise PlanError(f"{path}: its operations were changed after `bulkcrm plan` made it ({CHECKSUM} "
                                "differs): apply sends a plan only as it was made and shown; make it again "
                                "with `bulkcrm plan`")
            return cls(**(d | {"operations": ops}))
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise PlanError(f"{path}: not a plan bulkcrm can apply (was it edited by hand?): {e}; "
                            "make it again with `bulkcrm plan`") from None

    @property
    def sha256(self) -> str:
        """Hash of the operations (the journal's binding). Note fields at their defaults are left
        out, so an organizations plan hashes as before issue 8 and its journal still resumes."""
        return hashlib.sha256(json.dumps([_hashed(o) for o in self.operations], sort_keys=True).encode()).hexdigest()


CHECKSUM = "operations_sha256"
"""Plan file key: `operations_checksum` of its operations when saved; `Plan.load` refuses a
file whose operations no longer give it (a body or path edited by hand is sent as it is, and
the report's before → after would say otherwise), and one with a `plan_id` but no seal. Files
of an older version (neither) are not checked."""


def operations_checksum(ops: Iterable[dict]) -> str:
    """SHA-256 of the operations as JSON objects (keys sorted, a line each)."""
    h = hashlib.sha256()
    for o in ops:
        h.update(json.dumps(o, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def _check_document(d: dict) -> None:
    """The shape of a plan file's fields apply relies on (a hand edit crashed apply, some after
    its writes: a review).

    Raises:
        ValueError: naming the field.
    """
    if not isinstance(d.get("operations"), list):
        raise ValueError("operations is a list")
    if not isinstance(d.get("rows"), list) or not all(isinstance(r, dict) for r in d["rows"]):
        raise ValueError("rows is a list of objects")
    for k in ("created_at", "matched_at"):
        if d.get(k) is not None:
            dt.datetime.fromisoformat(str(d[k]))  # ValueError names the text
    keys = [o.get("key") for o in d["operations"] if isinstance(o, dict)]
    if len(keys) != len(set(map(str, keys))):
        raise ValueError("two operations have one key")
    for o in d["operations"]:
        if isinstance(o, dict) and not isinstance(o.get("identifiers", {}), dict):
            raise ValueError(f"operation {o.get('key')!r}: identifiers is an object")
        if isinstance(o, dict) and not (isinstance(o.get("row_numbers"), list)
                                        and all(isinstance(n, int) for n in o["row_numbers"])):
            raise ValueError(f"operation {o.get('key')!r}: row_numbers is a list of numbers")


_METHODS = {"create": "POST", "patch": "PATCH", "replace": "PUT", "delete": "DELETE"}
"""The HTTP method of each operation (crm-api.md §8.3)."""


def _operation(o: Any) -> Operation:
    """An operation of a plan file, its shape checked (a hand edit that breaks it would fail
    in the middle of an apply, after some writes).

    Raises:
        ValueError: not an object, a key or path that is not text, an op whose method is not
            its own, a body that is not an object.
    """
    if not isinstance(o, dict):
        raise ValueError(f"an operation is an object, not {o!r}")
    op = Operation(**o)
    if not isinstance(op.key, str) or not isinstance(op.path, str) or not isinstance(op.body, dict):
        raise ValueError(f"operation {op.key!r}: key and path are text, body an object")
    if _METHODS.get(op.op) != op.method:
        raise ValueError(f"operation {op.key!r}: {op.op} is sent as {_METHODS.get(op.op, '?')}, not {op.method}")
    return op


def check_out_path(out: str | Path, *inputs: str | Path) -> None:
    """Refuse to save a plan over one of `inputs` (the sheet, the template) or over an existing
    file that is not a plan: `--out week.xlsx` would replace the workbook with JSON.

    Raises:
        PlanError: naming the file and why it is kept.
    """
    p = Path(out)
    same = [i for i in inputs if i and p.resolve() == Path(i).resolve()]
    if same:  # the sheet (first) or the template
        what = "input sheet" if same[0] == inputs[0] else "template"
        raise PlanError(f"{out}: --out names the plan's own {what}; save the plan to another file "
                        "(e.g. plan.json)")
    if p.is_file() and p.stat().st_size:
        with p.open("rb") as f:
            head = f.read(200).decode("utf-8", "replace")
        if not re.match(r'\{\s*"template"\s*:', head):
            raise PlanError(f"{out} exists and is not a bulkcrm plan, so it is not overwritten; save "
                            "the plan to another file (e.g. plan.json)")


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def _write_lines(doc: dict[str, Any], f) -> None:
    """`doc` as a JSON object into text file `f`: a key a line, list items a line each (a
    Series: JSON texts, one item each)."""
    f.write("{\n")
    for i, (key, value) in enumerate(doc.items()):
        f.write(("" if i == 0 else ",\n") + _ENCODE(key) + ": ")
        if isinstance(value, pl.Series):
            f.write("[\n" + ",\n".join(value) + "\n]" if len(value) else "[]")
        elif isinstance(value, list) and value:
            f.write("[\n")
            for j, item in enumerate(value):
                f.write(("" if j == 0 else ",\n") + _ENCODE(item))
            f.write("\n]")
        else:
            f.write(_ENCODE(value))
    f.write("\n}\n")


def _json_lines(frame: pl.DataFrame) -> pl.Series:
    """Each line of a rows (`ROW_SCHEMA`) or operations (`OP_SCHEMA`) frame as a JSON object
    (text), as `Plan.rows` / `Plan.operations` would give it: the JSON-text columns
    `_JSON_COLS` put in as JSON values (`identifiers` `{}` when null), the other columns
    encoded by polars, a run of them at a time, in the frame's column order."""
    members, run = [], []

    def flush():
        if run:  # `{"a":1,"b":"x"}` -> `"a":1,"b":"x"`
            members.append(pl.struct(run).struct.json_encode().str.slice(1).str.strip_suffix("}"))
            run.clear()

    for c in frame.columns:
        if c in _JSON_COLS:
            flush()
            value = pl.col(c).fill_null("{}" if c == "identifiers" else "null")
            members.append(pl.concat_str(pl.lit(_ENCODE(c) + ":"), value))
        else:
            run.append(c)
    flush()
    return frame.select(pl.concat_str(pl.lit("{"), pl.concat_str(members, separator=","), pl.lit("}"))).to_series()


@dataclass
class _OpView:
    """What `Plan.estimate` reads of an operation, from the operations frame."""

    op: str
    method: str
    path: str
    iri: str | None
    snapshot: bool
    resource: str
    identifiers: dict


def _views(frame: pl.DataFrame) -> list[_OpView]:
    snapshot = pl.col("snapshot").is_not_null() & ~pl.col("snapshot").is_in(["{}", "null"])  # as bool(dict)
    cols = frame.select("op", "method", "path", "iri", snapshot, "resource", "identifiers")
    return [_OpView(*r[:6], json.loads(r[6]) if r[6] else {}) for r in cols.iter_rows()]


def _as_dict(op: Operation) -> dict[str, Any]:
    """The operation's fields as a dict (its values are JSON values already: no deep copy,
    as `dataclasses.asdict` makes)."""
    return {f.name: getattr(op, f.name) for f in fields(Operation)}


def _hashed(op: Operation) -> dict:
    d = _as_dict(op)
    if d["resource"] == "organizations" and not d["content_key"]:
        del d["resource"], d["content_key"]
    return d


def render_plan(p: Plan, *, requests_per_minute: float | None = 20, limit: int = 50,
                reconcile: bool = True, checks: bool = False) -> str:
    """Terraform-style text: counts, then per record the fields before → after (invalid and
    conflicting rows first, at most `limit` rows), then the cost (`reconcile`: with the
    requests that re-read the written records after the writes; `checks`: with the reads
    `apply PLAN` makes before its first write, `Plan.estimate`).

    Organizations and notes are counted on separate lines (`Plan:` and `Notes:`)."""
    rows = p.row_frame()  # not `p.rows`: a dict per row of a 100k-row plan costs seconds
    resources = set(rows["resource"].fill_null("organizations").unique().to_list())
    lines = []
    if "organizations" in resources or not resources:
        lines.append("Plan: " + _count_text(p.counts("organizations")))
    if "organization_notes" in resources:
        lines.append(("Notes: " if lines else "Plan: notes: ") + _count_text(p.counts("organization_notes")))
    tags = p.tag_creates()
    lines += [f"  + tag {json.dumps(o.body.get('title'), ensure_ascii=False)} (create_missing)" for o in tags]
    reasons: dict[Any, list[str]] = {}
    doubts: dict[Any, list[str]] = {}  # a create that may duplicate a record: said on its line
    fixes: dict[Any, str] = {}  # a conflict's issue: its message and what fixes it (the row's note has no fix)
    for i in p.issues:
        if i["severity"] == "error" and i["type"] not in CONFLICT_TYPES:
            reasons.setdefault((i["row_number"], i.get("resource")), []).append(i["message"])
        elif i["severity"] == "error":
            fixes.setdefault((i["row_number"], i.get("resource") or "organizations"), i["message"])
        elif i["type"] in DOUBT_TYPES:
            doubts.setdefault((i["row_number"], i.get("resource") or "organizations"), []).append(i["message"])
    op = pl.col("op")
    # skips the mode asked for are not listed, nor the notes of organizations it skipped
    by_mode = (op == "skip") & pl.col("note").is_in(MODE_SKIPS)
    org_skipped = rows.filter(by_mode & (pl.col("resource").fill_null("organizations") == "organizations"))
    listed = rows.filter((op != "unchanged") & ~by_mode & ~(
        (op == "skip") & pl.col("row_number").is_in(org_skipped["row_number"].implode())))
    # rows that will not be written come first, then writes in doubt, so the limit hides neither
    doubted = pl.col("row_number").is_in([rn for rn, _ in doubts])
    listed = listed.sort(~op.is_in(["invalid", "conflict", "skip"]), ~doubted, maintain_order=True)
    quoted = quoted_names(p.names)
    shown: set[str] = set()
    owners = p.note_organizations() if "organization_notes" in resources else {}
    for r in listed.head(limit).iter_rows(named=True):
        own = (r["row_number"], r["resource"] or "organizations")
        if r["op"] == "conflict" and own in fixes:
            r["note"] = fixes[own]
        lines += _row_lines(r, quoted, owners)
        if r["op"] == "invalid":  # its own issues, and the whole row's (the reader's)
            lines += [f"      {m}" for key in (own, (r["row_number"], None)) for m in reasons.pop(key, [])]
        lines += [f"      warning: {m}" for m in doubts.get(own, [])]
        shown.update(doubts.get(own, []))
    lines += [f"  ✗ {m}" for (rn, _), ms in reasons.items() if rn is None for m in ms]  # whole-file issues
    hidden = listed.slice(limit)
    if hidden.height:  # of what kinds, so writes behind many problems are not lost from sight
        kinds = hidden.group_by("op", maintain_order=True).len()
        lines.append(f"  … {hidden.height} more: " + ", ".join(f"{n} {o}" for o, n in kinds.iter_rows())
                     + " (see the plan file or the report)")
    lines += [f"  note: {n}" for n in p.notes
              if n.startswith(SHOWN_NOTES) or HELD_NOTE in n]
    lines += _mode_skip_lines(rows.filter(by_mode))
    if not rows.height:
        lines.append("  note: the input has no rows under its header: nothing to do (an empty sheet, "
                     "or another --sheet or --header-row?)")
    lines += _warning_lines(p.issues, shown)
    est = p.estimate(requests_per_minute)
    where = "" if requests_per_minute else " on the real API (the embedded sandbox has no limit)"
    of_tags = f" ({len(tags)} of them for the new tag(s))" if tags else ""
    first = est["checks"] if checks and est["requests"] else 0
    minutes = round((est["requests"] + first + (est["reconcile"] if reconcile else 0))
                    / est["requests_per_minute"], 1)
    then = (f" + ≈{first} to check the records first" if first else "") + (
        f" + ≈{est['reconcile']} to reconcile" if reconcile else " (no reconciling)")
    listed = "".join(f"; {n.removeprefix(NOTE_LISTINGS)}" for n in p.notes if n.startswith(NOTE_LISTINGS))
    lines.append(f"{est['requests']} write request(s){of_tags}{then} ≈ {duration_text(minutes)} "
                 f"at {est['requests_per_minute']:g}/min{where}; planning used {p.requests_spent} "
                 f"request(s) ({p.strategy}{_planning_time(p.requests_spent, est['requests_per_minute'])}{listed}).")
    return "\n".join(lines)


SHOWN_NOTES = ("open", "encoding", "mirror", "optional", "unmapped", "blank", "merge:", "conflicts:",
               "mode: replace", "edited:", "midnight:", "phone:")
"""Prefixes of the `Plan.notes` that `render_plan` shows (the others are in the plan file and
the report)."""


HELD_NOTE = " warning(s) left out: "
"""What a `plan._held_warnings` note holds (`N invalid-phone warning(s) left out: …`): shown too."""


NOTE_LISTINGS = "planning: "
"""`Plan.notes` prefix of the line saying how many planning requests listed existing notes
(`render_plan` puts it in its last line)."""


_MODE_SKIP_WHY = {
    MODE_SKIPS[0]: "no record matches them (--mode update-only creates nothing)",
    MODE_SKIPS[1]: "their records exist and would change (--mode create-only sends no update: "
                   "their changes are not sent)",
    MODE_SKIPS[2]: "no note matches them (--mode update-only creates nothing)",
    MODE_SKIPS[3]: "their notes exist and would change (--mode create-only sends no update)",
}


def _mode_skip_lines(skipped: pl.DataFrame, shown: int = 8) -> list[str]:
    """One note line per kind of row the run's mode skips (`MODE_SKIPS`): how many, which rows
    and why, so a change or a create the mode holds back is seen before it is applied."""
    if not skipped.height:
        return []
    out = []
    for note, rns in skipped.group_by("note", maintain_order=True).agg("row_number").iter_rows():
        rows_text = first_few((str(n) for n in rns[:shown]), shown, len(rns))
        out.append(f"  note: {len(rns)} row(s) skipped: {_MODE_SKIP_WHY.get(note, note)} (row(s) {rows_text})")
    return out


def duration_text(minutes: float) -> str:
    """A duration given in minutes as text: `12.5 min`, or in hours from 90 minutes on (`17.8 h`)."""
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


_WARNINGS_SHOWN = 5


def _planning_time(requests: int, per_minute: float) -> str:
    """`, ≈ 33.4 min` for the requests planning sent, at the rate the estimate uses (one
    minute or more only: less is not worth saying)."""
    return f", ≈ {duration_text(round(requests / per_minute, 1))}" if requests >= per_minute else ""


DOUBT_TYPES = ("possible-duplicate", "no-identifier")
"""Warning types a plan shows under their row (a create that may duplicate a record), before
the other warnings, which many routine ones (phones kept as typed) can push out of sight."""


def _warning_lines(issues: list[dict], shown: set[str] = frozenset()) -> list[str]:
    """The warnings (a warning alone stops no row), the first `_WARNINGS_SHOWN` in full: those
    of `DOUBT_TYPES` first, then one of each kind (type and column) before a second of any
    (`_by_kind`), none of `shown` (said under their rows already); the rest counted by type."""
    warned = [i for i in issues if i["severity"] == "warning"]
    if not warned:
        return []
    warnings = [i for i in _by_kind(warned) if i["message"] not in shown]
    above = len(warned) - len(warnings)
    # not "their rows go ahead": a warned row may be a conflict or invalid for another reason
    lines = [f"  {len(warned)} warning(s){f' ({above} shown above)' if above else ''}; "
             f"a warning alone stops no row{':' if warnings else '.'}"]
    lines += [f"    {i['message']}" for i in warnings[:_WARNINGS_SHOWN]]
    if len(warnings) > _WARNINGS_SHOWN:
        kinds = Counter(i["type"] for i in warnings[_WARNINGS_SHOWN:])
        lines.append(f"    … {len(warnings) - _WARNINGS_SHOWN} more: "
                     + ", ".join(f"{n} {t}" for t, n in kinds.most_common()) + " (see the plan file or the report)")
    return lines


def _by_kind(warned: list[dict]) -> list[dict]:
    """`warned` in the order a plan shows them: `DOUBT_TYPES` first, then the first warning of
    each kind (type and column, in row order), then the second of each...: fifty numeric-cell
    warnings of a zip-code column do not hide the one e-mail typed as a website."""
    nth: Counter = Counter()
    keyed = []
    for pos, i in enumerate(warned):
        kind = (i["type"], i.get("column"))
        keyed.append((i["type"] not in DOUBT_TYPES, nth[kind], pos))
        nth[kind] += 1
    return [warned[pos] for *_, pos in sorted(keyed)]


def _count_text(c: dict[str, int]) -> str:
    text = (f"{c['create']} to create, {c['patch']} to patch, {c['replace']} to replace, "
            f"{c['unchanged']} unchanged, {c['skip']} skipped, {c['conflict']} conflict(s), "
            f"{c['invalid']} invalid")
    return text + (f", {c['delete']} to delete." if c.get("delete") else ".")


def quoted_names(names: dict[str, str]) -> dict[str, str]:
    """`Plan.names` as the JSON texts a change holds: quoted IRI -> quoted name. Replacing the
    first by the second in a `changes` value shows names instead of IRIs (display only)."""
    return {json.dumps(k, ensure_ascii=False): json.dumps(v, ensure_ascii=False) for k, v in names.items()}


def replace_quoted(text: str | None, quoted: dict[str, str]) -> str | None:
    """JSON `text` (written with `ensure_ascii=False`, as every change is) with each quoted
    string of `quoted` replaced by its value, e.g. IRIs by names (`quoted_names`)."""
    if not text or not quoted or '"' not in text:
        return text
    for old, new in quoted.items():
        text = text.replace(old, new)
    return text


def _organization_text(org: str) -> str:
    """A note row's `organization` as the plan shows it: its IRI, or `the one row 2 creates`
    for a `$ref:row:2` (an organization this plan creates)."""
    ref = re.fullmatch(r"\$ref:row:(\d+)", org)
    return f"the one row {ref.group(1)} creates" if ref else org


def _row_lines(r: dict, quoted: dict[str, str], owners: dict[int, str] | None = None) -> list[str]:
    """A planned row: sign, (note) row number, op, IRI, title; below, a patch's or PUT's
    changes (before → after) or a create's fields (title aside), the organization a note goes
    to (`owners`: `Plan.note_organizations`), then remarks."""
    sign = {"create": "+", "patch": "~", "replace": "±", "conflict": "!", "invalid": "✗",
            "delete": "-", "skip": "⊘"}[r["op"]]
    what = "note " if r.get("resource") == "organization_notes" else ""
    where = f"row {r['row_number']} " if r["row_number"] is not None else ""
    title = json.dumps(r["title"], ensure_ascii=False) if r.get("title") is not None else None
    lines = ["  " + " ".join(p for p in (sign, f"{what}{where}{r['op']}", r.get("iri"), title) if p)]
    if r["op"] in ("patch", "replace"):
        cleared = r.get("cleared") or []
        lines += [f"      {ch['field']}: {replace_quoted(ch['before'], quoted) or 'null'} → "
                  f"{replace_quoted(ch['after'], quoted) or 'null'}" + (" (cleared)" if ch["field"] in cleared else "")
                  for ch in r["changes"]]
        shown = {ch["field"] for ch in r["changes"]}
        lines += [f"      {f}: cleared by PUT" for f in cleared if f not in shown]
    elif r["op"] == "create":  # what the POST sends, as terraform shows a resource it adds
        lines += [f"      {ch['field']}: {replace_quoted(ch['after'], quoted)}" for ch in r["changes"] or []
                  if ch["after"] is not None and not (ch["field"] == "title" and title)]
    elif r["op"] == "delete":  # what goes (a mirror delete of a note)
        lines += [f"      {ch['field']}: {replace_quoted(ch['before'], quoted)} → (deleted)"
                  for ch in r["changes"] or [] if ch["before"] is not None]
    org = (owners or {}).get(r["row_number"]) if what and r["op"] == "create" else None
    if org:  # which organization a new note goes to (a trial matched notes by e-mail and could not see it)
        lines.append(f"      of organization: {_organization_text(org)}")
    if r.get("note"):
        lines.append(f"      {r['note']}")
    return lines
