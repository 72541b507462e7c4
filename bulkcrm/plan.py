"""Stage 4: plan. Read, map, validate, look up and diff a sheet; decide one operation per row.

Input: a spreadsheet, a template and a `Client` (lookups only: a plan never writes).
Output: a `Plan`, saved as JSON with `Plan.save` and executed exactly by `apply.apply`.

Per row the plan says create, patch, replace, unchanged, skip (mode create-only/update-only),
conflict (ambiguous match, duplicate rows: never written) or invalid (validation issues).
Notes (template resource `organization_notes`, or an organizations template's `notes:`
section) are planned by `notes.py` into the same plan: their rows carry
`resource: organization_notes`, and mirror mode adds `delete` rows (issue 8).
"""
from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from . import diff
from .client import Client
from .errors import Issue, PlanError, TemplateError
from .lookups import LookupCache, resolve_lookups
from .mapping import map_rows
from .match import match_rows
from .read import Sheet, read
from .template import SEARCHABLE_IDENTIFIERS, Template
from .validate import validate

SCHEMA_VERSION = 1
WRITE_OPS = ("create", "patch", "replace")
CONFLICT_TYPES = ("duplicate-row", "ambiguous-match")
_JSON = json.JSONEncoder(ensure_ascii=False)
"""`json.dumps(value, ensure_ascii=False)` without building an encoder per call."""


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


@dataclass
class Plan:
    """A saved decision for every input row (JSON file, `schema_version` 1).

    Attributes:
        rows: one dict per input row: row_number, op, iri, title, changes, note, key,
            resource (organizations | organization_notes); note rows also `sheet` and
            `organization`; mirror deletes have row_number None.
        operations: the writes, in the order apply sends them.
        issues: ISSUE_SCHEMA dicts (validation, lookups, conflicts).
        requests_spent: requests used while planning (lookups).
        target: base URL (never the key). template/input: paths with sha256 hashes.
    """

    template: str
    template_sha256: str
    input: str
    input_sha256: str
    target: str
    mode: str
    strategy: str
    created_at: str
    rows: list[dict]
    operations: list[Operation]
    issues: list[dict]
    requests_spent: int
    sheet: str | None = None
    schema_version: int = SCHEMA_VERSION
    notes: list[str] = field(default_factory=list)

    def counts(self, resource: str | None = None) -> dict[str, int]:
        """Rows per planned op (create, patch, replace, unchanged, skip, conflict, invalid, and
        delete when there are any), of one resource or (None) of all."""
        out = {k: 0 for k in ("create", "patch", "replace", "unchanged", "skip", "conflict", "invalid")}
        for r in self.rows:
            if resource is None or r.get("resource", "organizations") == resource:
                out[r["op"]] = out.get(r["op"], 0) + 1
        return out

    def estimate(self, requests_per_minute: float | None = 20) -> dict[str, float]:
        """Requests apply will send and the minutes they take at `requests_per_minute`
        (default 20, the tenant limit of crm-api.md §4; None: the rate of the real API).

        Keys: `requests` (writes), `reconcile` (re-reads afterwards: `identifiers[]` 30 values a
        request, one GET for a record without searchable identifiers), `minutes` (both together).
        """
        n = len(self.operations)
        orgs = [o for o in self.operations if o.resource == "organizations" and o.path != "/tags"]
        values = {v for o in orgs for f, vals in o.identifiers.items()
                  if f in SEARCHABLE_IDENTIFIERS for v in vals}
        bare = sum(1 for o in orgs if not any(f in SEARCHABLE_IDENTIFIERS for f in o.identifiers))
        reconcile = -(-len(values) // 30) + bare
        rate = requests_per_minute or 20
        return {"requests": n, "reconcile": reconcile, "minutes": round((n + reconcile) / rate, 1),
                "requests_per_minute": rate}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = self.counts()
        d["estimate"] = self.estimate()
        return d

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON (UTF-8); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        """Read a plan file. Raises PlanError when unreadable or of another schema version."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise PlanError(f"{path}: cannot read the plan: {e}") from None
        if d.get("schema_version") != SCHEMA_VERSION:
            raise PlanError(f"{path}: plan schema version {d.get('schema_version')} is not {SCHEMA_VERSION}")
        d.pop("counts", None), d.pop("estimate", None)
        d["operations"] = [Operation(**o) for o in d["operations"]]
        return cls(**d)

    @property
    def sha256(self) -> str:
        """Hash of the operations (the journal's binding). Note fields at their defaults are left
        out, so an organizations plan hashes as before issue 8 and its journal still resumes."""
        return hashlib.sha256(json.dumps([_hashed(o) for o in self.operations], sort_keys=True).encode()).hexdigest()


def _hashed(op: Operation) -> dict:
    d = asdict(op)
    if d["resource"] == "organizations" and not d["content_key"]:
        del d["resource"], d["content_key"]
    return d


def plan(source: str | Path | Sheet, template: Template, client: Client, *, mode: str = "upsert",
         strategy: str = "auto", sheet: str | int | None = None, encoding: str | None = None,
         delimiter: str | None = None, header_row: int | None = None,
         mirror_notes: bool = False) -> Plan:
    """Plan the import of one sheet.

    Args:
        source: input file (CSV/XLSX/XLS) or an already read `Sheet`.
        template: the loaded template. client: the API client (used for lookups only).
        mode: upsert (default), create-only or update-only.
        strategy: how records are found: auto (cost model), lookup (`identifiers[]`) or scan.
        sheet, encoding, delimiter, header_row: passed to `read.read`.
        mirror_notes: also delete the notes of the organizations involved that no row matches
            (issue 8; listed in the plan as `delete` rows). Off by default.

    Returns:
        A `Plan`. Row problems are in `Plan.issues` and rows' `op` (`invalid`, `conflict`).

    Raises:
        InputError: the file cannot be read or lacks a column the template needs.
        ApiError: a lookup failed after its retries (AuthError for a rejected key).

    Example:
        >>> p = plan("samples/organizations.csv", load_template("templates/organizations.yaml"), client)
        >>> p.counts()["create"]
        91
    """
    with _gc_paused():
        return _plan(source, template, client, mode=mode, strategy=strategy, sheet=sheet,
                     encoding=encoding, delimiter=delimiter, header_row=header_row,
                     mirror_notes=mirror_notes)


@contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector while planning (restored afterwards).

    A plan allocates ~10 container objects per row (row dicts, operation bodies) while the
    fetched records (about as many again) are alive; every full collection walks all of
    them, which cost more than half of a 100k-row plan (bench/README.md). The objects are
    acyclic and freed by reference counting, so nothing piles up meanwhile."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _plan(source: str | Path | Sheet, template: Template, client: Client, *, mode: str,
          strategy: str, sheet: str | int | None, encoding: str | None, delimiter: str | None,
          header_row: int | None, mirror_notes: bool) -> Plan:
    sh = source if isinstance(source, Sheet) else read(source, sheet=sheet, encoding=encoding,
                                                       delimiter=delimiter, header_row=header_row)
    if template.resource == "organization_notes":
        return _notes_plan(sh, template, client, mode=mode, strategy=strategy, mirror=mirror_notes)
    if not template.identifiers and mode == "upsert" and template.iri_column not in sh.frame.columns:
        raise TemplateError(
            f"declares no identifiers and {Path(sh.path).name} has no {template.iri_column} column, so "
            "every run would create every row again; add `identifiers:` (e.g. [emailAddresses]) or "
            "a crm_iri column, or pass --mode create-only to create them once",
            path=template.path, key="identifiers")
    start = client.requests_sent
    file = Path(sh.path).name
    mapped = map_rows(sh.frame, template, path=f"{file}!{sh.sheet_name}" if sh.sheet_name else file)
    checked = validate(mapped, template, sheet=sh.frame, read_issues=sh.issues, file=file,
                       sheet_name=sh.sheet_name)
    resolved = resolve_lookups(checked.valid, template, client, cache=LookupCache(), file=file,
                               sheet=sh.sheet_name)
    bad = {i.row_number for i in resolved.issues}
    rows = resolved.rows.filter(~pl.col("row_number").is_in(list(bad)))
    matches = match_rows(rows, template, client, strategy=strategy)
    conflicts = matches.conflicts
    issues = [*_frame_issues(checked.issues), *resolved.issues,
              *_conflict_issues(conflicts, file, sh.sheet_name),
              *_not_found_issues(matches.not_found, template, file, sh.sheet_name)]
    out_rows, ops = _decide(mapped, rows, matches, template, mode, issues, resolved.tags_to_create)
    p = Plan(template=str(template.path), template_sha256=template.sha256, input=str(sh.path),
             input_sha256=_sha256(sh.path), target=client.base_url, mode=mode,
             strategy=matches.strategy, created_at=_now(), rows=out_rows, operations=ops,
             issues=[i.to_dict() for i in issues], requests_spent=client.requests_sent - start,
             sheet=sh.sheet_name, notes=matches.notes)
    if template.notes is not None:
        from .notes import plan_with_orgs
        part = plan_with_orgs(out_rows, mapped, sh, template, client, mode=mode, strategy=strategy,
                              mirror=mirror_notes)
        _add_part(p, part)
    return p


def _notes_plan(sh: Sheet, template: Template, client: Client, *, mode: str, strategy: str,
                mirror: bool) -> Plan:
    """The plan of a notes template (resource organization_notes, issue 8)."""
    from .notes import plan_notes
    part = plan_notes(sh, template, client, mode=mode, strategy=strategy, mirror=mirror)
    p = Plan(template=str(template.path), template_sha256=template.sha256, input=str(sh.path),
             input_sha256=_sha256(sh.path), target=client.base_url, mode=mode,
             strategy=part.strategy or strategy, created_at=_now(), rows=[], operations=[],
             issues=[], requests_spent=0, sheet=sh.sheet_name)
    _add_part(p, part)
    return p


def _add_part(p: Plan, part) -> None:
    """Append a `notes.NotesPart` after the organizations: their operations run first."""
    p.rows += part.rows
    p.operations += part.operations
    p.issues += [i.to_dict() for i in part.issues]
    p.requests_spent += part.requests
    p.notes += part.notes


def _decide(mapped: pl.DataFrame, rows: pl.DataFrame, matches, template: Template, mode: str,
            issues: list[Issue], tags: list[str]) -> tuple[list[dict], list[Operation]]:
    """One row record per input row and the operations, in input order."""
    errors = {i.row_number for i in issues if i.severity == "error" and i.type not in CONFLICT_TYPES}
    conflict_rows = set(matches.conflicts["row_number"].to_list())
    joined = rows.join(matches.iri, on="row_number", how="left")
    ok = joined.filter(~pl.col("row_number").is_in(list(conflict_rows | errors)))
    matched = ok.filter(pl.col("iri").is_not_null())
    if matches.frame is not None:
        hit = matched.select(pl.col("iri").alias("@id")).unique()
        existing = diff.records_frame(matches.frame.join(hit, on="@id", how="semi"), template)
        matches.frame = None  # not needed any more: free it before the row dicts are built
    else:
        existing = diff.records_frame([matches.records[i] for i in matched["iri"].unique().to_list()], template)
    changed = diff.changed_fields(matched, existing, template) if matched.height else \
        pl.DataFrame(schema={"row_number": pl.Int64, "iri": pl.String, "changed": pl.List(pl.String)})
    changed = changed.select("row_number", "changed").filter(pl.col("changed").list.len() > 0)
    del existing, matched
    ops = [_tag_op(t) for t in tags]
    for row in _write_rows(ok, changed, mode, template):
        iri, fields = row.get("iri"), row.pop("__changed")
        ops.append(_create_op(row, template, tags) if iri is None else
                   _update_op(row, matches.records[iri], fields, template, tags))
    return _row_records(mapped, joined, changed, matches.conflicts, conflict_rows, errors, mode,
                        template, ops), ops


def _write_rows(ok: pl.DataFrame, changed: pl.DataFrame, mode: str, template: Template):
    """Rows needing a write (Python dicts only for those: creates and changed records): the
    mapped fields, `row_number`, `iri` and `__changed` (the changed fields; null for a create)."""
    ok = ok.join(changed.rename({"changed": "__changed"}), on="row_number", how="left")
    create = pl.col("iri").is_null() if mode != "update-only" else pl.lit(False)
    patch = pl.col("__changed").is_not_null() if mode != "create-only" else pl.lit(False)
    fields = [m.field for m in template.mappings if m.field in ok.columns]
    cols = list(dict.fromkeys(["row_number", "iri", "__changed", *fields, *template.identifiers]))
    return ok.filter(create | patch).sort("row_number").select(
        [c for c in cols if c in ok.columns]).iter_rows(named=True)


def _row_records(mapped: pl.DataFrame, joined: pl.DataFrame, changed: pl.DataFrame,
                 conflicts: pl.DataFrame, conflict_rows: set, errors: set, mode: str,
                 template: Template, ops: list[Operation]) -> list[dict]:
    """The plan's row dicts, one per mapped row in input order: decided by polars expressions,
    then the rows that got an operation take its op, key and changes."""
    base = (mapped.select("row_number", _title(template))
            .join(joined.select("row_number", "iri"), on="row_number", how="left", maintain_order="left")
            .join(conflicts.select("row_number", pl.col("message").alias("__msg")), on="row_number",
                  how="left", maintain_order="left")
            .join(changed.select("row_number", pl.lit(True).alias("__changed")), on="row_number",
                  how="left", maintain_order="left"))
    rn, iri = pl.col("row_number"), pl.col("iri")
    invalid, conflict = rn.is_in(list(errors)), rn.is_in(list(conflict_rows))
    exists = pl.lit(mode == "create-only") & pl.col("__changed").fill_null(False)
    op = (pl.when(invalid).then(pl.lit("invalid")).when(conflict).then(pl.lit("conflict"))
          .when(iri.is_null() | exists).then(pl.lit("skip")).otherwise(pl.lit("unchanged")))
    note = (pl.when(invalid).then(None).when(conflict).then(pl.col("__msg"))
            .when(iri.is_null()).then(pl.lit("no matching record (update-only)"))
            .when(exists).then(pl.lit("record exists (create-only)")).otherwise(None))
    cols = base.select(rn, op.alias("op"), iri, pl.col("title"), note.alias("note"))
    out = [{"row_number": r, "op": o, "iri": i, "title": t, "changes": [], "cleared": [], "note": n,
            "key": None, "resource": "organizations"}
           for r, o, i, t, n in zip(*(c.to_list() for c in cols.iter_columns()))]
    by_row = {r: o for o in ops for r in o.row_numbers}
    at = base.with_row_index("__i").filter(rn.is_in(list(by_row))).select("__i", "row_number")
    for i, r in at.iter_rows():
        o, rec = by_row[r], out[i]
        rec.update(op=o.op, iri=o.iri or rec["iri"], changes=o.changes, cleared=o.cleared, note=None,
                   key=o.key)
    return out


def _create_op(row: dict, template: Template, tags: list[str]) -> Operation:
    body = diff.create_body(row, template)
    return Operation(key=f"row:{row['row_number']}", op="create", method="POST", path="/organizations",
                     body=body, row_numbers=[row["row_number"]], title=body.get("title"),
                     identifiers=_identifiers(row, template),
                     changes=[{"field": k, "before": None, "after": _JSON.encode(v)}
                              for k, v in body.items()],
                     depends_on=_deps(body, tags))


def _update_op(row: dict, record: dict, changed: list[str], template: Template, tags: list[str]) -> Operation:
    body, changes, cleared = diff.update(row, record, changed, template)
    replace = template.mode == "replace"
    return Operation(key=f"row:{row['row_number']}", op="replace" if replace else "patch",
                     method="PUT" if replace else "PATCH", path=record["@id"], body=body,
                     row_numbers=[row["row_number"]], iri=record["@id"], title=record.get("title"),
                     identifiers=_identifiers(row, template), snapshot=diff.snapshot(record, changed),
                     changes=changes, cleared=cleared, depends_on=_deps(body, tags))


def _tag_op(title: str) -> Operation:
    return Operation(key=f"tag:{title}", op="create", method="POST", path="/tags", body={"title": title},
                     row_numbers=[], title=title)


def _deps(body: dict, tags: list[str]) -> list[str]:
    if not tags:
        return []
    text = _JSON.encode(body)
    return [f"tag:{t}" for t in tags if f'"$ref:tag:{t}"' in text]


def _identifiers(row: dict, template: Template) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in template.identifiers:
        v = row.get(f)
        if f == "phoneNumbers":
            v = [p["phoneNumber"] for p in v or []]
        vals = v if isinstance(v, list) else ([v] if v else [])
        if vals:
            out[f] = [str(x) for x in vals]
    return out


def _title(template: Template) -> pl.Expr:
    field_name = "title" if template.mapping("title") else "description"
    return (pl.col(field_name) if template.mapping(field_name) else pl.lit(None, pl.String)).alias("title")


def _frame_issues(frame: pl.DataFrame) -> list[Issue]:
    return [Issue(**r) for r in frame.iter_rows(named=True)]


def _conflict_issues(conflicts: pl.DataFrame, file: str, sheet: str | None) -> list[Issue]:
    return [Issue(t, rn, None, None, "one row per record (issue 5)", f"{file}:{rn}: {msg}; fix the sheet "
                  "so each organization appears once and its identifiers point at one record, or add a "
                  "crm_iri column", "error", file, sheet)
            for rn, t, msg in conflicts.iter_rows()]


def _not_found_issues(nf: pl.DataFrame, template: Template, file: str, sheet: str | None) -> list[Issue]:
    col = template.iri_column
    return [Issue("not-found", rn, col, iri, "IRI of an existing record (crm-api.md §1)",
                  f"{file}:{rn}:{col}: no record {iri}; remove the IRI to create a new organization",
                  "error", file, sheet) for rn, iri in nf.iter_rows()]


def _sha256(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def render_plan(p: Plan, *, requests_per_minute: float | None = 20, limit: int = 50) -> str:
    """Terraform-style text: counts, then per record the fields before → after, then the cost.

    Organizations and notes are counted on separate lines (`Plan:` and `Notes:`)."""
    resources = {r.get("resource", "organizations") for r in p.rows}
    lines = []
    if "organizations" in resources or not resources:
        lines.append("Plan: " + _count_text(p.counts("organizations")))
    if "organization_notes" in resources:
        lines.append(("Notes: " if lines else "Plan: notes: ") + _count_text(p.counts("organization_notes")))
    lines += [f"  + tag {json.dumps(o.body.get('title'), ensure_ascii=False)} (create_missing)"
              for o in p.operations if o.path == "/tags"]
    reasons: dict[Any, list[str]] = {}
    for i in p.issues:
        if i["severity"] == "error" and i["type"] not in CONFLICT_TYPES:
            reasons.setdefault(i["row_number"], []).append(i["message"])
    shown = 0
    for r in p.rows:
        if r["op"] in ("unchanged", "skip") or shown >= limit:
            continue
        shown += 1
        lines += _row_lines(r)
        if r["op"] == "invalid":
            lines += [f"      {m}" for m in reasons.pop(r["row_number"], [])]
    lines += [f"  ✗ {m}" for rn, ms in reasons.items() if rn is None for m in ms]  # whole-file issues
    more = sum(1 for r in p.rows if r["op"] not in ("unchanged", "skip")) - shown
    if more > 0:
        lines.append(f"  … {more} more (see the plan file or the report)")
    lines += [f"  note: {n}" for n in p.notes if n.startswith("mirror")]
    est = p.estimate(requests_per_minute)
    where = "" if requests_per_minute else " on the real API (the embedded sandbox has no limit)"
    lines.append(f"{est['requests']} write request(s) + ≈{est['reconcile']} to reconcile ≈ {est['minutes']} min "
                 f"at {est['requests_per_minute']:g}/min{where}; planning used {p.requests_spent} "
                 f"request(s) ({p.strategy}).")
    return "\n".join(lines)


def _count_text(c: dict[str, int]) -> str:
    text = (f"{c['create']} to create, {c['patch']} to patch, {c['replace']} to replace, "
            f"{c['unchanged']} unchanged, {c['skip']} skipped, {c['conflict']} conflict(s), "
            f"{c['invalid']} invalid")
    return text + (f", {c['delete']} to delete." if c.get("delete") else ".")


def _row_lines(r: dict) -> list[str]:
    """A planned row: sign, (note) row number, op, IRI, title; changes and remarks below."""
    sign = {"create": "+", "patch": "~", "replace": "±", "conflict": "!", "invalid": "✗",
            "delete": "-"}[r["op"]]
    what = "note " if r.get("resource") == "organization_notes" else ""
    where = f"row {r['row_number']} " if r["row_number"] is not None else ""
    lines = [f"  {sign} {what}{where}{r['op']} {r.get('iri') or ''} "
             f"{json.dumps(r.get('title'), ensure_ascii=False)}".rstrip()]
    if r["op"] in ("patch", "replace"):
        lines += [f"      {ch['field']}: {ch['before'] or 'null'} → {ch['after'] or 'null'}" for ch in r["changes"]]
        lines += [f"      {f}: cleared by PUT" for f in r.get("cleared") or []]
    if r.get("note"):
        lines.append(f"      {r['note']}")
    return lines
