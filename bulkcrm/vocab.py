"""The words bulkcrm uses, as Literal types and the tuples derived from them.

Stage: shared by every stage. A plan's operations (`Op`) are what the planner decided;
outcomes (`Outcome`) are what happened when the plan was applied (past tense).
"""
from __future__ import annotations

from typing import Literal, get_args

Op = Literal["create", "patch", "replace", "unchanged", "conflict", "invalid", "delete"]
"""What the planner decided for one input row (`delete`: a note absent from the sheet, mirror
mode only, issue 8)."""
OPS: tuple[str, ...] = get_args(Op)

Outcome = Literal[
    "created", "patched", "replaced", "unchanged", "conflict", "invalid",
    "failed", "unconfirmed", "drifted", "skipped", "planned", "deleted",
]
"""What happened to one input row. `planned` is the outcome of a dry run; `unconfirmed` of a
write that was sent but got no answer (the run stopped, or the server did not answer in time),
which the next run of the plan resolves before anything is sent again."""
OUTCOMES: tuple[str, ...] = get_args(Outcome)

OP_OUTCOME: dict[str, str] = {
    "create": "created", "patch": "patched", "replace": "replaced",
    "unchanged": "unchanged", "conflict": "conflict", "invalid": "invalid", "delete": "deleted",
}
"""The outcome of an operation that went through."""

COUNT_KEYS: tuple[str, ...] = (
    "created", "patched", "replaced", "unchanged", "conflict", "invalid", "failed",
)
"""Keys of the per-outcome counts printed by `--json` (issue 2)."""

Mode = Literal["upsert", "create-only", "update-only"]
"""Which operations a run may plan: upsert (default) creates and updates."""

MODE_SKIPS: tuple[str, ...] = (
    "no matching record (update-only)", "record exists (create-only)",
    "no matching note (update-only)", "note exists (create-only)",
)
"""Notes of rows skipped because the run's mode said so; the plan text lists the other skips
(e.g. a note whose organization is not imported)."""

Resource = Literal["organizations", "organization_notes"]
"""What a plan or report row is about (the template's `resource`, issue 8)."""
RESOURCES: tuple[str, ...] = get_args(Resource)
MODES: tuple[str, ...] = get_args(Mode)

WriteMode = Literal["patch", "replace"]
"""How a template updates a matched record: merge patch (RFC 7396) or PUT."""

Policy = Literal["overwrite", "fill_if_empty", "never", "merge", "replace"]
"""Per-field write policy; `merge`/`replace` apply to list fields."""

Severity = Literal["error", "warning"]
"""An error rejects the row; a warning is reported and the row proceeds."""

IssueType = Literal[
    "missing-required", "invalid-email", "invalid-url", "invalid-country", "invalid-phone",
    "invalid-phone-type", "phone-extension", "invalid-iri", "invalid-datetime", "invalid-boolean", "too-long",
    "unknown-lookup", "ambiguous-lookup", "duplicate-row", "ambiguous-match", "moved-note", "ragged-row",
    "formula-without-result", "excel-error", "merged-cell", "hidden-row", "hidden-column", "numeric-cell", "encoding", "unnamed-column",
    "duplicate-header",
    "api-rejected", "request-failed", "write-unconfirmed", "drifted", "reconcile-mismatch", "not-found", "possible-duplicate",
    "leading-zero", "iri-mismatch", "identifier-mismatch", "date-cell", "repeated-phone", "ambiguous-phone",
    "unlikely-phone", "line-break", "cut-off-row",
]
"""Kebab-case issue slugs, as frictionless names its errors."""
ISSUE_TYPES: tuple[str, ...] = get_args(IssueType)

IRI_ID = r"[A-Za-z0-9-]+"
"""The id part of an IRI the `iri` check accepts (`/tags/{id}`: a number or a UUID, crm-api.md §1):
one regex for the row check (`normalize`) and the template's constants (`template`)."""
