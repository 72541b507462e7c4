"""Stage 4 (notes): find each note row's organization (issue 8).

Input: the notes sheet and the template's `organization:` reference (an IRI column, identifier
columns, a customerId column), or the organization plan when notes share its rows. Output: a
`TARGET_SCHEMA` frame, one row per note row:

- `row_number` (Int64);
- `org` (String): the organization IRI, or `$ref:row:<n>` for one the same plan creates, or null;
- `dep` (String): the operation key the note must wait for (`row:<n>`), or null;
- `why` (String), `why_op` (String: skip | invalid | conflict): why a row has no organization.

Rules: an explicit IRI wins; otherwise the identifiers (e-mail, phone, LinkedIn id, via
`identifiers[]`, crm-api.md §8.3) and the customerId (no filter: a full listing) must all point
at one organization, compared after the same normalisation as organizations (`match.py`). With
a separate notes sheet the organizations' own sheet is searched first, so a note can follow an
organization created in the same run. A row with no organization reference at all whose
`crm_iri` names a note (`/organizations/{id}/notes/{id}`, crm-api.md §9, as a notes export
writes it) belongs to that note's organization.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import polars as pl

from .client import Client
from .errors import InputError, Issue
from .lookups import REF_PREFIX
from .mapping import map_rows
from .match import identifier_frame, match_rows
from .template import OrgRef, Template

NOTE_IRI = r"^/organizations/[^/]+/notes/[^/]+$"
"""A note's IRI (crm-api.md §9.2); its `/organizations/{id}` part names the note's organization."""


def is_note_iri(col: pl.Expr) -> pl.Expr:
    """True where the cell, trimmed, is a note's IRI (`NOTE_IRI`)."""
    return col.str.strip_chars().str.contains(NOTE_IRI)


def note_owner(iri: pl.Expr) -> pl.Expr:
    """The IRI of the organization a note IRI belongs to: its `/organizations/{id}` part."""
    return iri.str.replace(r"/notes/[^/]+$", "")

TARGET_SCHEMA = {"row_number": pl.Int64, "org": pl.String, "dep": pl.String, "why": pl.String,
                 "why_op": pl.String}
"""Columns of a targets frame (module docstring)."""
_ATTACHABLE = ("patch", "replace", "unchanged", "skip")
"""Organization row ops after which the organization exists (skip: only when it has an IRI)."""


@dataclass
class Targets:
    """Result of `targets_by_reference`: the `TARGET_SCHEMA` frame, the issues of rows whose
    organization is unknown or ambiguous, plan remarks and the matching strategy used."""

    targets: pl.DataFrame
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    strategy: str | None = None


def targets_same_rows(org_rows: list[dict], sheet: str | None = None) -> pl.DataFrame:
    """Targets from the organization plan's rows (`row_number`, `op`, `iri`, `key`, `note`):
    a created organization is `$ref:<key>` (and a dependency), a matched one its IRI; a row
    that is invalid, in conflict or skipped without a record gives no organization."""
    schema = {"row_number": pl.Int64, "op": pl.String, "iri": pl.String, "key": pl.String,
              "note": pl.String}
    df = pl.DataFrame([{k: r.get(k) for k in schema} for r in org_rows], schema=schema)
    create = pl.col("op") == "create"
    exists = pl.col("op").is_in(_ATTACHABLE) & pl.col("iri").is_not_null()
    where = f" of sheet {sheet}" if sheet else ""
    why = pl.format("its organization (row {}{}) is not imported: {}", "row_number", pl.lit(where),
                    pl.concat_str("op", pl.lit(" ("), "note", pl.lit(")")).fill_null(pl.col("op")))
    return df.select(
        "row_number",
        pl.when(create).then(pl.lit(REF_PREFIX) + pl.col("key")).when(exists).then("iri").alias("org"),
        pl.when(create).then("key").alias("dep"),
        pl.when(~create & ~exists).then(why).alias("why"),
        pl.when(~create & ~exists).then(pl.lit("skip")).alias("why_op"),
    ).cast(TARGET_SCHEMA)


def targets_by_reference(frame: pl.DataFrame, ref: OrgRef, client: Client, *, strategy: str = "auto",
                         org_side: tuple | None = None, file: str | None = None,
                         sheet: str | None = None, note_iris: pl.DataFrame | None = None) -> Targets:
    """Find the organization of every row of a notes sheet through `ref` (module docstring).

    Args:
        frame: the notes sheet (`row_number` + text columns).
        ref: the template's organization reference. client: lookups only.
        strategy: auto | lookup | scan (as `match.match_rows`).
        org_side: (organizations' mapped frame, `targets_same_rows` of their plan, their sheet
            name) when the organizations come from another sheet of the same run.
        note_iris: `row_number`, `iri` of the rows whose `crm_iri` names a note: a row without
            any reference takes that note's organization.

    Raises:
        InputError: a reference column is missing. ApiError: a lookup failed.
    """
    t = _present(ref, frame, file) if ref.derived else ref.template
    rows = map_rows(_without_note_iris(frame, t), t, path=file)
    explicit = pl.col("__iri").is_not_null() if "__iri" in rows.columns else pl.lit(False)
    out = Targets(targets=pl.DataFrame(schema=TARGET_SCHEMA))
    parts = []
    if org_side is not None:
        found, issues = _in_org_sheet(rows.filter(~explicit), t, org_side, file, sheet)
        parts.append(found)
        out.issues += issues
    done = pl.concat(parts)["row_number"] if parts else pl.Series([], dtype=pl.Int64)
    ids = identifier_frame(rows, t)
    with_ref = rows.filter(explicit | pl.col("row_number").is_in(ids["row_number"].implode()))
    rest = with_ref.filter(~pl.col("row_number").is_in(done.implode()))
    if rest.height:
        m = match_rows(rest, t, client, strategy=strategy)
        out.strategy, out.notes = m.strategy, [f"note organizations: {n}" for n in m.notes]
        # the reference names several organizations (its identifiers, or its IRI and them)
        amb = m.conflicts.filter(pl.col("type").is_in(["ambiguous-match", "iri-mismatch", "identifier-mismatch"]))
        parts.append(m.iri.join(amb, on="row_number", how="left").select(
            "row_number", pl.when(pl.col("type").is_null()).then("iri").alias("org"),
            pl.lit(None, pl.String).alias("dep"), pl.col("message").alias("why"),
            pl.when(pl.col("type").is_not_null()).then(pl.lit("conflict")).alias("why_op")))
        out.issues += [Issue(kind, rn, None, None, "one organization per note",
                             f"{file}:{rn}: {'the organization reference ' if kind == 'ambiguous-match' else ''}"
                             f"{msg}; fix the reference so it names one organization", "error", file, sheet)
                       for rn, kind, msg, _f, _v in amb.iter_rows()]
    if note_iris is not None and note_iris.height:
        parts.append(_by_note(note_iris.filter(~pl.col("row_number").is_in(with_ref["row_number"].implode()))))
    found = pl.concat(parts).cast(TARGET_SCHEMA) if parts else out.targets
    missing = frame.select("row_number").join(found.filter(pl.col("org").is_not_null() |
                                                            pl.col("why_op").is_not_null()),
                                              on="row_number", how="anti")
    out.issues += _not_found(frame.filter(pl.col("row_number").is_in(missing["row_number"].implode())),
                             ref, file, sheet)
    out.targets = pl.concat([found.filter(~pl.col("row_number").is_in(missing["row_number"].implode())),
                             missing.select("row_number").with_columns(
                                 pl.lit(None, pl.String).alias("org"), pl.lit(None, pl.String).alias("dep"),
                                 pl.lit("organization not found", pl.String).alias("why"),
                                 pl.lit("invalid").alias("why_op"))]).cast(TARGET_SCHEMA)
    return out


def _without_note_iris(frame: pl.DataFrame, t: Template) -> pl.DataFrame:
    """`frame` without the note IRIs in the reference's IRI column: where that column is the
    note IRI column (`crm_iri`, the default reference of a notes sheet, which a notes export
    fills with each note's IRI), a note IRI names the note, not the organization; the row's
    other organization columns do (a note cannot move: `notes._moved`), else the note's own
    (`_by_note`)."""
    c = t.iri_column
    if not c or c not in frame.columns:
        return frame
    return frame.with_columns(pl.when(is_note_iri(pl.col(c)))
                              .then(None).otherwise(pl.col(c)).alias(c))


def _by_note(named: pl.DataFrame) -> pl.DataFrame:
    """Targets of rows named by their note's IRI: its organization part (no request)."""
    return named.select("row_number", note_owner(pl.col("iri")).alias("org"),
                        *(pl.lit(None, pl.String).alias(c) for c in ("dep", "why", "why_op"))
                        ).cast(TARGET_SCHEMA)


def _present(ref: OrgRef, frame: pl.DataFrame, file) -> Template:
    """A derived reference keeps the organization columns the notes sheet has."""
    t = ref.template
    maps = tuple(m for m in t.mappings if all(c in frame.columns for c in m.columns))
    if not maps and (not t.iri_column or t.iri_column not in frame.columns):
        wanted = [c for c in (t.iri_column, *t.columns) if c]
        raise InputError(f"the notes sheet names no organization: give it one of the columns "
                         f"{', '.join(map(repr, wanted))}, or set notes.organization in the template",
                         path=file, row_number=1)
    return replace(t, mappings=maps, identifiers=tuple(m.field for m in maps))


def _in_org_sheet(rows: pl.DataFrame, t, org_side: tuple, file, sheet) -> tuple[pl.DataFrame, list[Issue]]:
    """Rows whose identifiers name rows of the organizations' sheet: that row's outcome."""
    org_mapped, org_targets, org_sheet = org_side
    ids = identifier_frame(rows, t)
    org_ids = identifier_frame(org_mapped, t).rename({"row_number": "org_row"})
    hits = ids.join(org_ids, on=["kind", "value"])
    # a value several organization rows hold (a phone pasted into another row: a conflict of
    # those rows too) is named, so the fix is looked for there, not in this row (a trial)
    shared = hits.group_by("row_number", "kind", "value").agg(pl.col("org_row").unique()).filter(
        pl.col("org_row").list.len() > 1).group_by("row_number").agg(
        pl.format("{} {}", "kind", "value").sort().str.join(" and ").alias("__shared"),
        pl.col("org_row").list.explode().n_unique().alias("__by_shared"))
    per_row = hits.group_by("row_number").agg(pl.col("org_row").unique().sort()).join(
        shared, on="row_number", how="left")
    # said only when those rows are all the reference matches: else it names several by itself
    per_row = per_row.with_columns(pl.when(pl.col("__by_shared") == pl.col("org_row").list.len())
                                   .then("__shared").alias("__shared"))
    single = per_row.filter(pl.col("org_row").list.len() == 1).with_columns(pl.col("org_row").list.first())
    where = f" of sheet {org_sheet}" if org_sheet else ""
    found = single.join(org_targets.rename({"row_number": "org_row"}), on="org_row", how="left").select(
        "row_number", "org", "dep", "why", "why_op")
    several = per_row.filter(pl.col("org_row").list.len() > 1)
    rows_text = pl.col("org_row").cast(pl.List(pl.String)).list.join(", ")
    msg = pl.format("the organization reference matches rows {}{}", rows_text, pl.lit(where))
    fix = (pl.when(pl.col("__shared").is_not_null())
           .then(pl.format(" by {}, which those rows share: fix the row of them that holds another "
                           "organization's value (or this reference)", "__shared"))
           .otherwise(pl.lit(": fix the reference so it names one organization")))
    several = several.select("row_number", pl.lit(None, pl.String).alias("org"),
                             pl.lit(None, pl.String).alias("dep"), pl.concat_str(msg, fix).alias("why"),
                             pl.lit("conflict").alias("why_op"))
    issues = [Issue("ambiguous-match", rn, None, None, "one organization per note", f"{file}:{rn}: {why}",
                    "error", file, sheet) for rn, _o, _d, why, _w in several.iter_rows()]
    return pl.concat([found.cast(TARGET_SCHEMA), several.cast(TARGET_SCHEMA)]), issues


def _not_found(rows: pl.DataFrame, ref: OrgRef, file, sheet) -> list[Issue]:
    """`not-found` issues for rows whose reference names no organization (or is empty)."""
    cols = [c for c in (ref.iri_column, *ref.template.columns) if c and c in rows.columns]
    # (a derived reference may lack some of its columns in this sheet)
    cols = list(dict.fromkeys(cols))
    issues = []
    for row in rows.select("row_number", *cols).iter_rows(named=True):  # only the failed rows
        given = {c: row[c] for c in cols if row[c] not in (None, "")}
        rn = row["row_number"]
        if not given:
            issues.append(Issue("missing-required", rn, cols[0] if cols else None, None,
                                "a note names its organization (crm-api.md §9)",
                                f"{file}:{rn}: no organization reference; fill in "
                                f"{' or '.join(cols)}", "error", file, sheet))
            continue
        col, value = next(iter(given.items()))
        issues.append(Issue("not-found", rn, col, str(value), "organization of the note exists "
                            "(crm-api.md §8.3)", f"{file}:{rn}:{col}: no organization matches "
                            + ", ".join(f"{c} {v!r}" for c, v in given.items())
                            + "; import the organization first or fix the reference",
                            "error", file, sheet))
    return issues
