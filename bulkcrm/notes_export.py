"""Export stage (notes): CRM organization notes -> a CSV or XLSX sheet through a notes template.

Input: a `Client`, a template of resource `organization_notes` and optional `ExportFilters`
(they select the organizations). Output: one sheet, one line per note, whose columns are
`crm_iri` (the note IRI), the template's organization reference columns (organization IRI,
customerId, identifiers, written from the organization) and the note columns, so importing the
file again with the same template plans nothing (issue 8).

Requests: the organizations are read page by page (⌈n/30⌉), then each organization's notes are
listed (`/organizations/{id}/notes`, ⌈notes/30⌉ each, the only documented route, crm-api.md
§9.2), plus one listing per lookup collection (e.g. `/note_categories`) for names. Values are
rendered with `export.render_records` (the template run in reverse).
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from .client import Client
from .errors import TemplateError
from .notes import list_notes
from .export import (IRI_COLUMN, ExportFilters, ExportResult, NameCache, Progress, filter_params,
                     output_kind, render_records, stream_pages)
from .template import Template, notes_template



def notes_columns(template: Template) -> list[str]:
    """Header of a notes export: note IRI, organization reference columns, note columns."""
    ref = template.notes.organization
    ref_cols = [c for c in (ref.iri_column, *ref.template.columns) if c]
    first = [] if IRI_COLUMN in ref_cols else [IRI_COLUMN]
    cols = first + ref_cols + [c for c in template.columns if c not in ref_cols]
    return list(dict.fromkeys(cols))


def export_notes(client: Client, template: Template, out_path: str | Path, *,
                 filters: ExportFilters | dict | None = None,
                 progress: Progress | None = None) -> ExportResult:
    """Export the notes of the organizations selected by `filters` (all by default).

    Args:
        client: API client. template: resource `organization_notes` (with `organization:`).
        out_path: `.csv` or `.xlsx`, written to `<name>.part` and renamed when complete.
        filters: organization filters (`export.ExportFilters` or a dict of its fields).
        progress: `progress(organization pages done, total pages, client)`.

    Returns:
        `ExportResult` with `records` = notes written, `pages` = organization pages read.

    Raises:
        InputError: a bad file name or filter. TemplateError: not a notes template.
        ApiError: a listing failed after the client's retries.
    """
    out, kind = output_kind(out_path)
    nt = notes_template(template)
    if nt is None or nt.notes.organization is None or template.resource != "organization_notes":
        raise TemplateError("a notes export needs a template of resource organization_notes "
                            "with an organization: reference", path=template.path, key="resource")
    start = client.requests_sent
    params = filter_params(client, filters, None)
    names = NameCache()
    return stream_pages(client, out, kind, notes_columns(nt), params,
                        lambda orgs: render_notes(orgs, nt, client, names), progress, start=start,
                        sheet="notes", null_tokens=nt.null_tokens)


def render_notes(orgs: list[dict], nt: Template, client: Client, names: NameCache) -> pl.DataFrame:
    """The notes of `orgs` (one listing each) as sheet rows with `notes_columns(nt)` (String)."""
    notes, owners = list_notes(client, [org["@id"] for org in orgs])
    columns = notes_columns(nt)
    if not notes:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    ref = nt.notes.organization
    body = render_records(notes, nt, client, names).with_columns(pl.Series("__org", owners))
    org_rows = render_records(orgs, ref.template, client, names)
    org_iri = ref.template.iri_column or IRI_COLUMN
    ref_cols = [c for c in ref.template.columns if c != ref.iri_column]
    # a note's IRI names its organization too: where the reference's IRI column is the note
    # IRI column, it keeps the note's, so an edited note is patched (`notes._note_iris`)
    own = ref.iri_column and ref.iri_column != IRI_COLUMN
    org_rows = org_rows.select(pl.col(org_iri).alias("__org"), *ref_cols,
                               *([pl.col(org_iri).alias(ref.iri_column)] if own else []))
    body = body.drop([c for c in org_rows.columns if c != "__org" and c in body.columns])
    joined = body.join(org_rows, on="__org", how="left", maintain_order="left")
    return joined.select([pl.col(c) if c in joined.columns else pl.lit(None, pl.String).alias(c)
                          for c in columns])
