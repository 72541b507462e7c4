"""Stage 4c: turn human names into IRIs (tag names, owner e-mails, segment and note-category names).

Input: mapped rows whose lookup fields hold names (values starting with `/` are IRIs already).
Output: the rows with IRIs, issues for names that are unknown or ambiguous, and the tags to
create when the template allows `create_missing` (crm-api.md §10).

Sources, in order: the template's static table, then the API: `/tags`, `/segments`,
`/note_categories` listed once per run (⌈n/30⌉ requests, cached), `/users?email[]=` 30 e-mails a
request. Names compare case-insensitively after trimming ([SANDBOX] §10.2).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from .client import Client
from .errors import Issue, did_you_mean, place, with_cell
from .template import Lookup, Template
from .validate import column_holding, sheet_rows

REF_PREFIX = "$ref:"
"""Placeholder prefix in bodies for an IRI known only after an earlier operation ran."""


@dataclass
class Resolved:
    """Result of `resolve_lookups`.

    Attributes:
        rows: the input rows with names replaced by IRIs (or `$ref:tag:<name>` placeholders).
        issues: `unknown-lookup` / `ambiguous-lookup` issues (errors) for rows to reject.
        tags_to_create: tag titles to POST before the rows that use them.
    """

    rows: pl.DataFrame
    issues: list[Issue] = field(default_factory=list)
    tags_to_create: list[str] = field(default_factory=list)


class LookupCache:
    """Per-run cache of collection listings: collection -> {lower-cased name: [IRIs]}, and
    `display`: IRI -> the name as the API spells it (for plan texts and reports)."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[str]]] = {}
        self.display: dict[str, str] = {}
        self.users_listed = False  # `_users` listed every user once (a lookup missed)

    def names(self, client: Client, lookup: Lookup, wanted: list[str]) -> dict[str, list[str]]:
        """Name -> IRIs for `wanted` names (lower-cased), from the API."""
        if lookup.collection == "users":
            return self._users(client, wanted)
        if lookup.collection not in self.tables:
            table: dict[str, list[str]] = {}
            for rec in client.list_all(f"/{lookup.collection}"):
                name = str(rec.get(lookup.by) or "").strip()
                table.setdefault(name_key(name), []).append(rec["@id"])
                self.display[rec["@id"]] = name
            self.tables[lookup.collection] = table
        return self.tables[lookup.collection]

    def names_in(self, changes: pl.Series) -> dict[str, str]:
        """IRI -> name (`display`) of the IRIs quoted in `changes` (pl.String: a change's
        JSON `before`/`after` texts), for `Plan.names`."""
        if not self.display or not changes.len():
            return {}
        quoted = changes.drop_nulls().str.extract_all(r'"/[^"/]+/[^"]+"').explode().drop_nulls().unique()
        return {iri: self.display[iri] for iri in map(json.loads, quoted.to_list()) if iri in self.display}

    def _users(self, client: Client, wanted: list[str]) -> dict[str, list[str]]:
        """Lower-cased e-mail -> user IRIs for `wanted` (lower-cased): `email[]` lookups, 30
        values a request (crm-api.md §10.1); when some are not found so, one listing of all
        users compared lower-cased, as the server's `email` filter may compare exactly and a
        user's address may be stored as `Alice.Owner@Example.com` (review 2026-12-02)."""
        table = self.tables.setdefault("users", {})
        todo = [w for w in wanted if w not in table]
        for i in range(0, len(todo), 30):
            for page in client.iter_pages("/users", {"email[]": todo[i:i + 30]}):
                self._add_users(table, page.get("member", []))
        if any(w not in table for w in todo) and not self.users_listed:
            self.users_listed = True
            known = {iri for iris in table.values() for iri in iris}
            self._add_users(table, [r for r in client.list_all("/users") if r.get("@id") not in known])
        return table

    def _add_users(self, table: dict[str, list[str]], members: list[dict]) -> None:
        for rec in members:
            email = str(rec.get("email", "")).strip()
            table.setdefault(email.lower(), []).append(rec["@id"])
            self.display[rec["@id"]] = email


def resolve_lookups(rows: pl.DataFrame, template: Template, client: Client | None, *,
                    cache: LookupCache | None = None, file: str | None = None,
                    sheet: str | None = None, letters: dict[str, str] | None = None,
                    frame: pl.DataFrame | None = None) -> Resolved:
    """Replace names by IRIs in every lookup field (see module docstring). `letters`: the
    sheet's column letters (`read.Sheet.letters`), so each issue names its cell; `frame`: the
    sheet as read (`read.Sheet.frame`), so it names the column that holds the name.

    Raises:
        ApiError: from the client when a listing fails after retries.
    """
    cache = cache or LookupCache()
    out = Resolved(rows=rows)
    created: dict[str, str] = {}  # name_key -> the title a new tag gets (its first spelling)
    for m in template.mappings:
        if m.lookup is None or m.field not in rows.columns:
            continue
        is_list = isinstance(rows.schema[m.field], pl.List)
        long = rows.select("row_number", pl.col(m.field).alias("v"))
        long = long.explode("v") if is_list else long
        long = long.drop_nulls("v").filter(~pl.col("v").str.starts_with("/"))
        names = long["v"].unique(maintain_order=True).to_list()  # first use first: a stable plan
        if not names:
            continue
        mapping, issues, creates = _resolve_names(m.lookup, names, client, cache, created)
        out.tags_to_create += [c for c in creates if c not in out.tags_to_create]
        rows_of = dict(long.filter(pl.col("v").is_in(list(issues))).group_by("v").agg(
            pl.col("row_number").unique().sort()).iter_rows())  # one pass, not one per name
        cells = sheet_rows(frame, [rn for rns in rows_of.values() for rn in rns]) if issues else {}
        for name, (slug, message) in issues.items():
            for rn in rows_of[name]:
                column = column_holding(name, m, cells.get(rn, {})) or m.field
                where = place(file, rn, column)
                out.issues.append(with_cell(Issue(
                    slug, rn, column, name, f"{m.lookup.collection} lookup (crm-api.md §10)",
                    f"{where}: {message}", "error", file, sheet), letters or {}, sheet))
        expr = pl.element().replace(mapping) if is_list else pl.col(m.field).replace(mapping)
        # names that differ in case or spaces only (`Vip; VIP`) name one record: listed once
        out.rows = out.rows.with_columns(pl.col(m.field).list.eval(expr).list.unique(maintain_order=True)
                                         if is_list else expr)
    return out


def name_key(name: str) -> str:
    """How names are compared: case and runs of whitespace aside (`Architecture  planning`
    is `architecture planning`), for lookups and for the tags `create_missing` makes alike."""
    return " ".join(name.split()).casefold()


def _resolve_names(lookup: Lookup, names: list[str], client: Client | None, cache: LookupCache,
                   created: dict[str, str]) -> tuple[dict[str, str], dict[str, tuple[str, str]], list[str]]:
    """(name -> IRI or `$ref:tag:<title>`, name -> (issue type, message), titles to create);
    `created`: name_key -> title of the tags this run creates, shared by the lookup fields."""
    static = {name_key(str(k)): v for k, v in lookup.table}
    keys = {n: name_key(n) for n in names}
    remote: dict[str, list[str]] = {}
    if client is not None and any(k not in static for k in keys.values()):
        remote = cache.names(client, lookup, [k for k in keys.values() if k not in static])
    mapping, issues, creates = {}, {}, []
    for name, key in keys.items():
        if key in static:
            mapping[name] = static[key]
        elif len(remote.get(key, [])) == 1:
            mapping[name] = remote[key][0]
        elif len(remote.get(key, [])) > 1:
            issues[name] = ("ambiguous-lookup", f'"{name}" names {len(remote[key])} {lookup.collection}: '
                            f'{", ".join(remote[key])}; use the IRI instead')
        elif lookup.create_missing:  # one tag per name_key, titled as first written
            title = created.setdefault(key, " ".join(name.split()))
            mapping[name] = f"{REF_PREFIX}tag:{title}"
            creates += [title] if title not in creates else []
        else:
            issues[name] = ("unknown-lookup", f'"{name}" matches no {lookup.collection} {lookup.by}'
                            f"{_known(name, lookup, remote, cache)}; use an existing one, its IRI "
                            f"/{lookup.collection}/{{id}}, or add it to the template's lookup table")
    return mapping, issues, creates


def _known(name: str, lookup: Lookup, remote: dict[str, list[str]], cache: LookupCache,
           shown: int = 12) -> str:
    """` (did you mean 'Call'?); known: Call, E-mail, …` of a listed collection (`remote`:
    all of it; not users, which are looked up by e-mail): the names as the API spells them,
    listed when there are at most `shown`."""
    if lookup.collection == "users":
        return ""
    if remote and not any(remote):  # every record's `by` property is empty or absent
        return f"; no {lookup.collection} record has a {lookup.by!r}: check the template's lookup.by"
    known = sorted({cache.display.get(i, k) for k, iris in remote.items() for i in iris if k}, key=str.lower)
    listed = f"; known: {', '.join(known)}" if 0 < len(known) <= shown else ""
    return did_you_mean(name.strip(), known) + listed
