"""Stage 4a: match input rows to CRM records by identifiers (part of planning).

Input: the valid mapped rows (see `mapping.map_rows`) and a `Client`.
Output: `Matches`: per row the matched record IRI, or a conflict, plus the records fetched.

Matching rules (issue 5, crm-api.md §8.3):
- an explicit IRI column wins over identifiers;
- identifiers (e-mail addresses, phone numbers, LinkedIn ids, and fields without an API filter
  such as customerId) are normalised the same way on both sides before comparing;
- a row whose identifiers point at several records is an `ambiguous-match` conflict; several
  rows claiming one record, or sharing an identifier value, are `duplicate-row` conflicts.
  Nothing is guessed.
- records are found with batched `identifiers[]` lookups (30 values a request, following
  `view.next`) or a full listing (⌈records/30⌉ requests), whichever the cost model says is
  cheaper (`strategy="auto"`), or as forced (`lookup` / `scan`).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from .client import Client
from .diff import ADDRESS_KEYS, phone_numbers, raw_records_frame, record_schema
from .mapping import PHONE_DTYPE, chain
from .errors import ApiError, AuthError, TemplateError
from .planfile import duration_text
from .template import IDENTIFIER_KINDS, SEARCHABLE_IDENTIFIERS, Template
from .transforms import normalize_identifier

log = logging.getLogger(__name__)

BATCH = 30
"""Values per `identifiers[]` request and items per page (crm-api.md §6: max 30)."""
COLLECTION = "/organizations"
_LONG = {"row_number": pl.Int64, "kind": pl.String, "value": pl.String}


@dataclass
class Matches:
    """Result of `match_rows`.

    Attributes:
        iri: frame `row_number` (Int64), `iri` (String, null = no record matched), `rec`
            (UInt32: the record's row in `frame`); one row per row matched, in their order.
        conflicts: frame `row_number`, `type` (ambiguous-match | duplicate-row | iri-mismatch | identifier-mismatch), `message`,
            `field`, `value` (an identifier involved and its value, or nulls).
        not_found: frame `row_number`, `iri`: explicit IRIs that do not exist, or name a record
            the key may not read (`forbidden`).
        records: IRI -> record JSON for every record fetched.
        forbidden: the explicit IRIs whose GET was refused (403: another tenant's record,
            crm-api.md §2), which `not_found` holds too.
        strategy: `lookup` or `scan`; requests: requests spent matching.
        frame: the records as a frame of `records_schema(template)` (`diff.raw_records_frame`),
            one row per record; the planner releases it (None) once it has used it.
        fetch_seconds: time spent getting the records: the requests and decoding their JSON
            into `records` and `frame` (the network part of planning, `Plan.timings["fetch"]`).
        total: how many records the target holds, when they were all listed (scan).
    """

    iri: pl.DataFrame
    conflicts: pl.DataFrame
    not_found: pl.DataFrame
    records: dict[str, dict]
    strategy: str
    requests: int = 0
    notes: list[str] = field(default_factory=list)
    frame: pl.DataFrame | None = None
    fetch_seconds: float = 0.0
    total: int | None = None
    forbidden: frozenset[str] = frozenset()


def identifier_frame(rows: pl.DataFrame, template: Template, *, distinct: bool = True) -> pl.DataFrame:
    """Long frame of normalised identifiers: `row_number`, `kind` (field name), `value`.

    `distinct=False` skips dropping a row's repeats of one value (two spellings of one
    e-mail address); matching takes distinct values wherever it counts them."""
    parts = []
    for f in template.identifiers:
        if f not in rows.columns:
            continue
        col = pl.col(f)
        if f == "phoneNumbers":
            col = phone_numbers(col)
        # a phone kept as typed is compared in its row's region (as the mapping cleaned it)
        region = pl.col("address.country") if "address.country" in rows.columns else pl.lit(None, pl.String)
        part = rows.select("row_number", col.alias("value"), region.alias("__region"))
        if isinstance(rows.schema[f], pl.List):
            part = part.explode("value")
        if not _in_compared_form(template, f):
            part = part.with_columns(normalize_identifier(
                IDENTIFIER_KINDS[f], pl.col("value"), region=pl.col("__region"),
                default_region=template.default_region).alias("value"))
        parts.append(part.with_columns(pl.lit(f).alias("kind")).select(list(_LONG)))
    if not parts:
        return pl.DataFrame(schema=_LONG)
    out = pl.concat(parts).drop_nulls("value").filter(pl.col("value") != "")
    return out.unique() if distinct else out


def _in_compared_form(template: Template, f: str) -> bool:
    """Whether the mapped values of identifier field `f` are already in the form identifiers
    are compared in: e-mail addresses whose every source's transforms end with the `email`
    normaliser (trim, lower case: `normalize_identifier("email")` is that same step)."""
    m = template.mapping(f)
    return IDENTIFIER_KINDS.get(f) == "email" and m is not None and all(
        (chain(m, s, template) or [None])[-1] == "email" for s in m.sources)


def records_schema(template: Template) -> dict[str, pl.DataType]:
    """Schema of the frame `match_rows` keeps of the fetched records (`Matches.frame`): the
    mapped fields (`diff.record_schema`) plus `title`, `updatedAt`, `createdAt`, the identifier fields and,
    for phone numbers, `address` (its country is the phone region)."""
    schema = record_schema(template)
    schema.setdefault("title", pl.String)  # an operation names the record it writes
    schema.setdefault("updatedAt", pl.String)  # when it was last written (`plan._edited_since_notes`)
    schema.setdefault("createdAt", pl.String)  # and made: a record not written since is unedited
    for f, dtype in identifiers_schema(template.identifiers).items():
        schema.setdefault(f, dtype)
    return schema


def identifiers_schema(fields: Iterable[str]) -> dict[str, pl.DataType]:
    """`@id` and the record fields that identifier `fields` read (API shape), for
    `record_identifiers`: e-mails and phones as lists, `address` for the phones' region."""
    schema: dict[str, pl.DataType] = {"@id": pl.String}
    for f in fields:
        if f == "emailAddresses":
            schema[f] = pl.List(pl.Struct({"email": pl.String}))
        elif f == "phoneNumbers":
            schema[f] = PHONE_DTYPE
            schema["address"] = pl.Struct({k: pl.String for k in ADDRESS_KEYS})
        else:
            schema[f] = pl.String
    return schema


def record_identifiers(frame: pl.DataFrame, fields: Iterable[str], *,
                       default_region: str | None = None) -> pl.DataFrame:
    """Long frame `rec` (UInt32: the record's row in `frame`), `kind`, `value` of the records'
    identifiers `fields` (e.g. `template.identifiers`), normalised like the rows': a phone in
    the record's country, else `default_region` (the template's). `frame`: the records with
    (at least) the `identifiers_schema(fields)` columns (`Matches.frame`). A
    record may repeat a value: matching groups by row, so repeats are harmless."""
    rec = pl.int_range(pl.len(), dtype=pl.UInt32).alias("rec")
    parts = []
    for f in fields:
        region = None
        if f == "emailAddresses":
            value = pl.col(f).list.eval(pl.element().struct.field("email"))
        elif f == "phoneNumbers":
            value = phone_numbers(pl.col(f))
            region = pl.col("address").struct.field("country")
        else:
            value = pl.col(f).cast(pl.String)
        part = frame.select(rec, pl.lit(f).alias("kind"), value.alias("value"),
                            (region if region is not None else pl.lit(None, pl.String)).alias("region"))
        if isinstance(part.schema["value"], pl.List):
            part = part.explode("value")
        norm = normalize_identifier(IDENTIFIER_KINDS[f], pl.col("value"), region=pl.col("region"),
                                    default_region=default_region)
        parts.append(part.select("rec", "kind", norm.alias("value")))
    if not parts:
        return pl.DataFrame(schema={"rec": pl.UInt32, "kind": pl.String, "value": pl.String})
    return pl.concat(parts).drop_nulls()


def match_rows(rows: pl.DataFrame, template: Template, client: Client, *,
               strategy: str = "auto") -> Matches:
    """Match rows to records (see module docstring): `fetch_records`, then `match_fetched`.

    Args:
        rows: mapped rows (`row_number`, field columns, optional `__iri`, `__raw.*`); `plan`
            passes every row, also those it does not write (invalid): they claim records too.
        template: gives the identifiers (every one counts: two records named are a conflict).
        client: API client; every request it sends is counted in `Matches.requests`.
        strategy: `auto` (cost model), `lookup` (`identifiers[]`) or `scan` (list everything).

    Raises:
        ApiError: subclasses from the client when a lookup fails after its retries.
    """
    return match_fetched(rows, template, fetch_records(rows, template, client, strategy=strategy))


@dataclass
class Fetched:
    """The records a matching needs (`fetch_records`), before any row is matched to one.

    Attributes:
        ids: `identifier_frame` of the rows (one line per row and identifier value) plus `__h`.
        explicit: frame `row_number`, `iri` of the rows' IRI column (`_explicit`).
        records, frame, strategy, notes, fetch_seconds, total, forbidden: as `Matches`.
        requests: requests spent getting them.
    """

    ids: pl.DataFrame
    explicit: pl.DataFrame
    records: dict[str, dict]
    frame: pl.DataFrame
    strategy: str
    requests: int
    notes: list[str]
    fetch_seconds: float
    total: int | None
    forbidden: frozenset[str] = frozenset()


def fetch_records(rows: pl.DataFrame, template: Template, client: Client, *,
                  strategy: str = "auto") -> Fetched:
    """Get the records the rows may match: batched `identifiers[]` lookups plus a GET per
    explicit IRI they did not find, or a listing of every record (`strategy`, as `match_rows`;
    `auto` picks the cheaper by the cost model, crm-api.md §6). Requests only: no row is
    matched here.

    Raises:
        TemplateError: `lookup` for an identifier the API has no filter for (`check_strategy`).
        ApiError: subclasses from the client when a request fails after its retries.
    """
    start = client.requests_sent
    ids = _keyed(identifier_frame(rows, template, distinct=False))
    explicit = _explicit(rows)
    unsearchable = check_strategy(template, strategy)
    values = _lookup_values(rows, ids, template) if strategy != "scan" else []
    notes: list[str] = []
    gets = _gets_expected(explicit, ids)
    cost = math.ceil(len(values) / BATCH) + gets if strategy == "lookup" else None
    if strategy == "auto":
        strategy, note, cost = _choose(client, len(values), gets, unsearchable)
        notes.append(note)
    _announce(client, strategy, cost)
    t0 = time.perf_counter()
    forbidden: set[str] = set()
    with client.progress("matching", cost):
        if strategy == "scan":
            records = {r["@id"]: r for r in client.list_all(COLLECTION)}
        else:
            records = lookup_records(client, values) if values else {}
            records.update(_get_explicit(client, explicit, records, forbidden))
    frame = raw_records_frame(list(records.values()), records_schema(template))
    return Fetched(ids=ids, explicit=explicit, records=records, frame=frame, strategy=strategy,
                   requests=client.requests_sent - start, notes=notes,
                   fetch_seconds=time.perf_counter() - t0,
                   total=len(records) if strategy == "scan" else None, forbidden=frozenset(forbidden))


def match_fetched(rows: pl.DataFrame, template: Template, fetched: Fetched, *,
                  notes: pl.DataFrame | None = None) -> Matches:
    """Match the rows (as `match_rows`) to the records `fetch_records` got for them: local
    work only, no request. `notes`: `row_number` and the sheet columns of the rows' own notes
    (a `notes:` section without a sheet), which duplicate rows' messages compare too."""
    ids, explicit, frame = fetched.ids, fetched.explicit, fetched.frame
    rec_ids = record_identifiers(frame, template.identifiers, default_region=template.default_region)
    pairs = _pairs(ids, rec_ids)
    positions = _positions(explicit, frame)
    claims = _beside_own(pairs, positions)  # an IRI row's value its record shares is that record's
    matched, conflicts = _resolve(rows, claims, positions, ids, frame["@id"], notes,
                                  frame["title"] if "title" in frame.columns else None,
                                  {m.field: template.column_of(m.field) or m.field for m in template.mappings})
    elsewhere = _elsewhere(claims, positions, frame["@id"])
    other = _other_values(matched, positions, pairs, ids, rec_ids, frame["@id"], template.identifiers)
    extra = [_mismatches(elsewhere, template.iri_column)] if elsewhere.height else []
    typed_over = _iri_other_values(positions, ids, rec_ids, frame["@id"], template).filter(
        ~pl.col("row_number").is_in(elsewhere["row_number"].implode()))  # said already: its values are another's
    extra += [typed_over] if typed_over.height else []
    if extra or other.height:
        conflicts = _one_per_row([conflicts, *extra, other])
    not_found = explicit.filter(~pl.col("iri").is_in(list(fetched.records))) if explicit.height else explicit
    return Matches(iri=matched, conflicts=conflicts, not_found=not_found, records=fetched.records,
                   strategy=fetched.strategy, requests=fetched.requests, notes=fetched.notes,
                   frame=frame, fetch_seconds=fetched.fetch_seconds, total=fetched.total,
                   forbidden=fetched.forbidden)


def _gets_expected(explicit: pl.DataFrame, ids: pl.DataFrame) -> int:
    """The GETs a lookup is expected to send for explicit IRIs (`_get_explicit`: one per IRI
    the `identifiers[]` requests did not find): one per distinct IRI of the rows without an
    identifier value; a row with one (an export's) is expected to be found by it."""
    if not explicit.height:
        return 0
    bare = explicit.filter(~pl.col("row_number").is_in(ids["row_number"].implode()))
    return bare["iri"].n_unique()


def check_strategy(template: Template, strategy: str) -> list[str]:
    """Refuse `--match-strategy lookup` for a template with an identifier the API has no filter
    for (`customerId`, `chamberOfCommerceNumber`; crm-api.md §8.3): a lookup cannot find a
    record by it, so a row matching one by it alone would be created again (a duplicate).

    Returns:
        those identifiers (none refused: `auto` lists every record for them).

    Raises:
        TemplateError: naming those identifiers and the strategies that can match them.
    """
    unsearchable = [f for f in template.identifiers if f not in SEARCHABLE_IDENTIFIERS]
    if strategy == "lookup" and unsearchable:
        raise TemplateError(
            f"--match-strategy lookup cannot match on {', '.join(unsearchable)}: the API has no filter "
            "for it (crm-api.md §8.3), so a row that matches a record by it alone would be created "
            "again; use --match-strategy scan, or auto (which lists every record for it)",
            path=template.path, key="identifiers")
    return unsearchable


def _announce(client: Client, strategy: str, cost: int | None) -> None:
    """Log (INFO; the CLI shows it on stderr) what matching is about to spend (`cost` requests;
    None: not known, a forced scan) when it takes a minute or more at the client's pace, as
    nothing else shows while it runs."""
    rate = client.requests_per_minute
    if rate and cost and cost >= rate:
        log.info("matching: %s requests (%s) ≈ %s at %g/min …", cost, strategy,
                 duration_text(round(cost / rate, 1)), rate)


def _keyed(ids: pl.DataFrame) -> pl.DataFrame:
    """`ids` plus `__h`: a 64-bit hash of (`kind`, `value`). Joining and grouping on it is
    several times faster than on the two strings; equal identifiers always get equal hashes,
    and every use checks the strings themselves, so a collision never matches anything."""
    return ids.with_columns((pl.col("value").hash(7) ^ pl.col("kind").hash(11)).alias("__h"))


def _pairs(ids: pl.DataFrame, rec_ids: pl.DataFrame) -> pl.DataFrame:
    """`row_number`, `rec`, `kind`, `value`: each identifier a row shares with a record
    (`ids` keyed by `_keyed`)."""
    joined = ids.join(_keyed(rec_ids), on="__h", how="inner", suffix="#r")
    return joined.filter((pl.col("value") == pl.col("value#r")) & (pl.col("kind") == pl.col("kind#r"))
                         ).select("row_number", "rec", "kind", "value")


def _repeated(values: pl.Series) -> pl.Series:
    """The values that occur more than once (each once; nulls left out): a sort and a compare
    of neighbours, about half the time of `is_duplicated`'s hashing on 100k numbers."""
    s = values.drop_nulls().sort()
    return s.filter(s == s.shift(1)).unique()  # (not `diff`: it is null past Int64 for UInt64)


def _shared(ids: pl.DataFrame) -> pl.DataFrame:
    """`kind`, `value`, `row_number` (sorted list): identifier values several rows share
    (`ids` keyed by `_keyed`)."""
    maybe = ids.filter(pl.col("__h").is_in(_repeated(ids["__h"]).implode()))  # the exact check runs on these only
    return maybe.group_by("kind", "value").agg(pl.col("row_number").unique().sort()).filter(
        pl.col("row_number").list.len() > 1)


def _explicit(rows: pl.DataFrame) -> pl.DataFrame:
    if "__iri" not in rows.columns:
        return pl.DataFrame(schema={"row_number": pl.Int64, "iri": pl.String})
    return rows.select("row_number", pl.col("__iri").alias("iri")).drop_nulls("iri")


def _lookup_values(rows: pl.DataFrame, ids: pl.DataFrame, template: Template) -> list[str]:
    """Distinct values to send: each normalised identifier and, when it differs, the sheet's form."""
    searchable = [f for f in template.identifiers if f in SEARCHABLE_IDENTIFIERS]
    norm = ids.filter(pl.col("kind").is_in(searchable))["value"]
    raw_cols = [f"__raw.{f}" for f in searchable if f"__raw.{f}" in rows.columns]
    raws = [rows[c].explode().drop_nulls() for c in raw_cols]
    allv = pl.concat([norm.cast(pl.String)] + [r.cast(pl.String) for r in raws]) if raws else norm
    return allv.unique(maintain_order=True).sort().to_list()


def _choose(client: Client, n_values: int, n_explicit: int, unsearchable: list[str]) -> tuple[str, str, int]:
    """Cost model: identifiers[] lookups + the GETs expected for explicit IRIs (`n_explicit`,
    `_gets_expected`) vs one full listing; a scan
    whenever an identifier has no API filter (`unsearchable`), as only a listing can match it.
    Returns (strategy, the plan's note on it, its cost in requests)."""
    searchable = not unsearchable
    lookup_cost = math.ceil(n_values / BATCH) + n_explicit
    if searchable and lookup_cost <= 1:
        return "lookup", f"lookup: {lookup_cost} request(s)", lookup_cost
    total = count_records(client)
    scan_cost = max(1, math.ceil(total / BATCH))
    if not searchable:
        return "scan", (f"scan: {scan_cost} requests for {total} records (a lookup cannot match on "
                        f"{', '.join(unsearchable)}: the API has no filter for it)"), scan_cost
    if scan_cost < lookup_cost:
        return "scan", f"scan: {scan_cost} requests for {total} records (lookup would cost {lookup_cost})", scan_cost
    return ("lookup", f"lookup: {lookup_cost} requests (a full listing of {total} records would cost {scan_cost})",
            lookup_cost)


def count_records(client: Client) -> int:
    """Organizations on the target (one request: `totalItems` of a one-item page, crm-api.md §6)."""
    return int(client.get(COLLECTION, {"itemsPerPage": 1}).get("totalItems", 0))


def lookup_records(client: Client, values: list[str]) -> dict[str, dict]:
    """IRI -> record for every organization holding one of `values`, with `identifiers[]`
    requests of 30 values each, following `view.next` (crm-api.md §8.3)."""
    records: dict[str, dict] = {}
    for i in range(0, len(values), BATCH):
        chunk = values[i:i + BATCH]
        for page in client.iter_pages(COLLECTION, {"identifiers[]": chunk}):
            records.update({r["@id"]: r for r in page.get("member", [])})
    return records


def _get_explicit(client: Client, explicit: pl.DataFrame, known: dict, forbidden: set[str]) -> dict[str, dict]:
    """IRI -> record for the explicit IRIs not `known`, a GET each. An IRI no record has (400,
    404) is left out; so is one the key may not read (403: another tenant's record,
    crm-api.md §2), added to `forbidden`: one row's cell, not a rejected key (401 and a
    403 on a listing still stop the run)."""
    out = {}
    for iri in explicit["iri"].unique().to_list():
        if iri in known or not iri.startswith("/organizations/"):
            continue
        try:
            out[iri] = client.get(iri)
        except ApiError as e:
            if e.status == 403:
                forbidden.add(iri)
            elif e.status not in (400, 404) or isinstance(e, AuthError):
                raise
    return out


def _positions(explicit: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """Explicit IRIs that exist, with the record's row in `frame`: `row_number`, `rec`."""
    at = frame.select(pl.col("@id").alias("iri"), pl.int_range(pl.len(), dtype=pl.UInt32).alias("rec"))
    return explicit.join(at, on="iri", how="inner").select("row_number", "rec")


def _resolve(rows: pl.DataFrame, pairs: pl.DataFrame, explicit: pl.DataFrame, ids: pl.DataFrame,
             iris: pl.Series, notes: pl.DataFrame | None = None, titles: pl.Series | None = None,
             columns: dict[str, str] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decide one record per row, or a conflict (vectorised; records are their positions `rec`
    in `iris` until the end; lists are only gathered for the rows and values in conflict).

    Args:
        pairs: `row_number`, `rec`, `kind`, `value`: each identifier a row shares with a record
            (`_beside_own`'s: not a row's with another record by a value its IRI's record holds).
        explicit: `row_number`, `rec` of the rows naming an existing record's IRI (they win).
        iris: the records' IRIs by position; titles: their titles (an ambiguous match names them).
        columns: field -> the sheet column that feeds it, which a duplicate-row message names.
        notes: as `match_fetched`'s.

    Returns:
        (matched: `row_number`, `iri`, `rec` per row, null when none; conflicts).
    """
    by_ids, every = _claims(pairs), pairs
    hits = _extremes(by_ids)
    if explicit.height:  # rows naming their record by IRI: decided by it, not by identifiers
        by_identifiers = ~pl.col("row_number").is_in(explicit["row_number"].implode())
        pairs, hits = pairs.filter(by_identifiers), hits.filter(by_identifiers)
    several = pl.col("rec") != pl.col("__max")  # the row's identifiers point at several records
    amb_rows = hits.filter(several)["row_number"]
    iri = pl.lit(iris).gather(pl.col("rec"))
    named = iri if titles is None else pl.format('{} "{}"', iri, pl.lit(titles).gather(pl.col("rec")).fill_null(""))
    ambiguous = pairs.filter(pl.col("row_number").is_in(amb_rows.implode())).with_columns(
        iri.alias("iri"), named.alias("named")).group_by("row_number").agg(
        pl.col("iri").unique().sort(), pl.struct("kind", "value", pl.col("named").alias("iri")).alias("why"))
    single = hits.filter(~several).select("row_number", "rec")
    chosen = pl.concat([single, explicit])
    conflicts = [_ambiguous(ambiguous)]
    # several rows claiming one record
    dup_rec = _claimed_twice(by_ids, explicit, amb_rows)
    if dup_rec.height:
        # rows naming one record by IRI: a row copied with its IRI, most likely (the IRI is their
        # `value`, field `@id`, so the fix offered is to clear it, not to add one)
        copied = pl.col("named").list.len() > 1
        conflicts.append(dup_rec.with_columns(
            pl.lit("duplicate-row").alias("type"),
            pl.format("rows {} all match {}{}{}", _joined_rows(), iri, pl.when(copied).then(pl.format(
                " (rows {} name it by its IRI)",
                pl.col("named").cast(pl.List(pl.String)).list.join(", "))).otherwise(pl.lit("")),
                pl.when(pl.col("kept").is_not_null()).then(pl.format(f"; row {{}} {KEPT}", "kept"))
                .otherwise(pl.lit("")))
            .alias("message"),
            iri.alias("__iri"),
        ).explode("held").with_columns(  # the fix names the IRI column of the rows holding it only
            ((pl.col("named").list.len() > 1) & pl.col("named").list.contains(pl.col("held"))).alias("__own")
        ).select(pl.col("held").alias("row_number"), "type", "message",
                 pl.when("__own").then(pl.lit("@id")).alias("field"),
                 pl.when("__own").then(pl.col("__iri")).alias("value")))
    # rows sharing an identifier value (e.g. two creates of one organization)
    shared = _shared(ids)
    if shared.height:
        noted = ~_identical(notes, shared) if notes is not None else pl.Series([False] * shared.height)
        differ = _differing(rows, shared, columns)
        shared = shared.with_columns(_joined_rows().alias("__rows"), (differ.list.len() == 0).alias("__same"),
                                     differ.list.join(", ").alias("__differ"), noted.alias("__noted"))
        # one message per set of rows, naming every value they share (said once, not per value)
        shared = shared.join(shared.group_by("__rows").agg(pl.format("{} {}", "kind", "value").sort().str.join(
            " and ").alias("__ids")), on="__rows", how="left", maintain_order="left")
        msg = pl.format("rows {} share {}{}", pl.col("__rows"), pl.col("__ids"),
                        pl.when(pl.col("__same") & pl.col("__noted")).then(pl.lit(_NOTES_APART))
                        .when("__same").then(pl.lit(" (the rows are the same in every column the template reads: keep one)"))
                        .otherwise(pl.format(" (they differ in {})", "__differ")))
        # a row naming its record by IRI is decided by it: the rows of those sharing the value
        # whose IRI names a record holding it (several: a switchboard number two organizations
        # share) are not held back by it (else: the one row with an IRI), the others are the
        # conflict (a value typed into the wrong row)
        owners = every.join(explicit, on=["row_number", "rec"], how="semi").select(
            "row_number", "kind", "value", pl.lit(True).alias("__own")).unique()
        by_iri = pl.col("row_number").is_in(explicit["row_number"].implode())
        own = pl.col("__own").fill_null(False)
        exempt = pl.when(own.any().over("__g")).then(own).otherwise(by_iri & (by_iri.sum().over("__g") == 1))
        conflicts.append(shared.with_columns(msg.alias("message")).with_row_index("__g").explode(
            "row_number").join(owners, on=["row_number", "kind", "value"], how="left").filter(~exempt).with_columns(
            pl.lit("duplicate-row").alias("type"), pl.col("kind").alias("field")).select(
            "row_number", "type", "message", "field", "value"))
    conflicts_df = _one_per_row(conflicts)
    matched = rows.select("row_number").join(chosen, on="row_number", how="left", maintain_order="left")
    return matched.select("row_number", iri.alias("iri"), "rec"), conflicts_df


KEPT = "keeps it, as its own identifiers name it too"
"""What a duplicate-row message says of the row that keeps a record several rows name by IRI
(`_claimed_twice`'s `kept`); `plan._conflict_issues` gives the others the fix that fits."""

_NOTES_APART = (" (the rows are the same in every organization field but hold different notes: keep one row "
                "per organization, and put the notes on a sheet of their own, one row each, with "
                "notes: {sheet: …} in the template)")
"""The duplicate-row hint of rows of one organization with a note each (a report export with the
account repeated on each contact's row): keeping one row would drop the others' notes."""

_CONFLICT_ORDER = {"ambiguous-match": 0, "iri-mismatch": 1, "identifier-mismatch": 2, "duplicate-row": 3}
"""Which type a row with several conflicts shows: the one about the row alone first (a notes
sheet's rows share their organization's identifiers, a duplicate-row its reference ignores)."""


def _one_per_row(conflicts: list[pl.DataFrame]) -> pl.DataFrame:
    """Conflict frames (`Matches.conflicts` columns) as one line per row: its type first in
    `_CONFLICT_ORDER`, the messages of that type joined, the identifier named first."""
    rank = pl.col("type").replace_strict(_CONFLICT_ORDER, default=9)
    return pl.concat(conflicts).filter(rank == rank.min().over("row_number")).group_by("row_number").agg(
        pl.col("type").first(), pl.col("message").unique().sort().str.join("; "),
        pl.col("field", "value").sort_by("field", nulls_last=True).first()).sort("row_number")


def _mismatches(elsewhere: pl.DataFrame, iri_column: str | None) -> pl.DataFrame:
    """`iri-mismatch` conflicts from `_elsewhere`: the row's explicit IRI names one
    record, an identifier of the row is another's (a row beside another row's IRI would
    overwrite that record with its data), so it is not written."""
    by_record = elsewhere.group_by("row_number", "iri", maintain_order=True).agg(
        pl.col("named", "kind", "value").first(),
        pl.format("{} {}", "kind", "value").str.join(", ").alias("ids"),
        pl.when(pl.len() > 1).then(pl.lit("belong")).otherwise(pl.lit("belongs")).alias("verb"))
    return by_record.group_by("row_number", maintain_order=True).agg(
        pl.lit("iri-mismatch").alias("type"),
        pl.format("its {} names {}, but its {}", pl.lit(iri_column or "IRI"), pl.col("named").first(),
                  pl.format("{} {} to {}", "ids", "verb", "iri").str.join("; its ")).alias("message"),
        pl.col("kind").first().alias("field"), pl.col("value").first()).select(
        "row_number", "type", "message", "field", "value")


def _bare_id(c: str) -> pl.Expr:
    """Column `c` as an id compares: `CD 34`, `cd34`, `5555 6666` are one id, typed otherwise."""
    return pl.col(c).str.to_lowercase().str.replace_all(r"[\s.\-/]", "")


SINGLE_VALUED = ("customerId", "chamberOfCommerceNumber", "linkedinId")
"""Identifier fields a record holds one value of (crm-api.md §8.1): two values are two
organizations."""


def _other_values(matched: pl.DataFrame, explicit: pl.DataFrame, pairs: pl.DataFrame, ids: pl.DataFrame,
                  rec_ids: pl.DataFrame, iris: pl.Series, identifiers: Iterable[str]) -> pl.DataFrame:
    """`identifier-mismatch` conflicts (`Matches.conflicts` columns): a row its identifiers
    matched to a record (`matched`; not by an explicit IRI) whose value of a `SINGLE_VALUED`
    identifier is not the record's (both set; case, spaces, dots, dashes and slashes aside):
    another organization sharing an e-mail address or a phone number (a switchboard) with the
    record, whose data would overwrite it. `identifiers`: the template's."""
    kinds = [k for k in SINGLE_VALUED if k in identifiers]
    if not kinds:
        return _empty_conflicts()
    mine = ids.filter(pl.col("kind").is_in(kinds)).select("row_number", "kind", "value")
    held = rec_ids.filter(pl.col("kind").is_in(kinds)).select("rec", "kind", pl.col("value").alias("held"))
    by_ids = matched.drop_nulls("rec").filter(~pl.col("row_number").is_in(explicit["row_number"].implode()))
    hits = (by_ids.select("row_number", "rec").join(mine, on="row_number").join(held, on=["rec", "kind"])
            .filter(_bare_id("value") != _bare_id("held")))
    if not hits.height:
        return _empty_conflicts()
    via = pairs.join(hits.select("row_number", "rec").unique(), on=["row_number", "rec"]).group_by(
        "row_number").agg(pl.format("{} {}", "kind", "value").sort().first().alias("via"))
    return hits.join(via, on="row_number").with_columns(pl.lit(iris).gather(pl.col("rec")).alias("iri")).group_by(
        "row_number", maintain_order=True).agg(
        pl.lit("identifier-mismatch").alias("type"),
        pl.format("it matches {} by {}, but its {} {} is not the record's {}", "iri", "via", "kind", "value", "held")
        .str.join("; ").alias("message"),
        pl.col("kind").first().alias("field"), pl.col("value").first()).select(
        "row_number", "type", "message", "field", "value")


def _iri_other_values(explicit: pl.DataFrame, ids: pl.DataFrame, rec_ids: pl.DataFrame, iris: pl.Series,
                      template: Template) -> pl.DataFrame:
    """`iri-mismatch` conflicts (`Matches.conflicts` columns): a row naming a record by its IRI
    (`explicit`: `row_number`, `rec`) whose value of a `SINGLE_VALUED` identifier of the
    template is not the record's (both set; as `_other_values` compares them): a new customer
    typed over another organization's row, its IRI kept, would rename that organization (a
    trial: ANTON became "Second New Co"). Not written; to change a record's customerId, change
    it in the CRM first."""
    kinds = [k for k in SINGLE_VALUED if k in template.identifiers]
    if not kinds or not explicit.height:
        return _empty_conflicts()
    mine = ids.filter(pl.col("kind").is_in(kinds)).select("row_number", "kind", "value")
    held = rec_ids.filter(pl.col("kind").is_in(kinds)).select("rec", "kind", pl.col("value").alias("held"))
    hits = (explicit.select("row_number", "rec").join(mine, on="row_number").join(held, on=["rec", "kind"])
            .filter(_bare_id("value") != _bare_id("held")))
    if not hits.height:
        return _empty_conflicts()
    return hits.with_columns(pl.lit(iris).gather(pl.col("rec")).alias("iri")).group_by(
        "row_number", maintain_order=True).agg(
        pl.lit("iri-mismatch").alias("type"),
        pl.format("its {} names {}, whose {} is {}, not the row's {}", pl.lit(template.iri_column or "IRI"), "iri",
                  "kind", "held", "value").str.join("; ").alias("message"),
        pl.col("kind").first().alias("field"), pl.col("value").first()).select(
        "row_number", "type", "message", "field", "value")


def _elsewhere(pairs: pl.DataFrame, explicit: pl.DataFrame, iris: pl.Series) -> pl.DataFrame:
    """`row_number`, `kind`, `value`, `iri`, `named`: each identifier of a row with an explicit
    IRI (`named`; `explicit`: their `row_number`, `rec`) that another record (`iri`) holds and
    the named record does not (`pairs` of `_beside_own`, `iris` as `_resolve`'s); such a row is
    an `iri-mismatch` conflict."""
    if not explicit.height:
        return pl.DataFrame(schema={"row_number": pl.Int64, "kind": pl.String, "value": pl.String,
                                    "iri": pl.String, "named": pl.String})
    iri = pl.lit(iris).gather
    return (pairs.join(explicit, on="row_number", how="inner", suffix="#named")
            .filter(pl.col("rec") != pl.col("rec#named"))
            .select("row_number", "kind", "value", iri(pl.col("rec")).alias("iri"),
                    iri(pl.col("rec#named")).alias("named"))
            .unique(maintain_order=True).sort("row_number", maintain_order=True))


def _identical(rows: pl.DataFrame, shared: pl.DataFrame) -> pl.Series:
    """Per line of `shared` (`row_number`: a list of rows), whether those rows hold the same
    value in every mapped field (a row pasted twice)."""
    return _differing(rows, shared).list.len() == 0


def _differing(rows: pl.DataFrame, shared: pl.DataFrame, columns: dict[str, str] | None = None) -> pl.Series:
    """Per line of `shared` (`row_number`: a list of rows), the mapped fields (List(String), in
    `rows`' column order; named by `columns`, field -> sheet column, where given) whose values
    differ between those rows: empty for rows the same in every field (a row pasted twice).
    Only the rows of `shared` are hashed, field by field."""
    fields = [c for c in rows.columns if c != "row_number" and not c.startswith("__")]
    groups = shared.with_row_index("__g").select("__g", "row_number").explode("row_number")
    if not fields:
        return pl.Series([[]] * shared.height, dtype=pl.List(pl.String))
    mine = rows.filter(pl.col("row_number").is_in(groups["row_number"].implode())).select(
        "row_number", *(pl.col(f).hash(3).alias(f) for f in fields))
    n = groups.join(mine, on="row_number", how="left").group_by("__g").agg(
        (pl.col(f).n_unique() > 1).alias(f) for f in fields)
    names = pl.concat_list([pl.when(pl.col(f)).then(pl.lit((columns or {}).get(f, f)))
                            for f in fields]).list.drop_nulls()
    return shared.with_row_index("__g").join(n.select("__g", names.alias("__f")), on="__g", how="left").select(
        pl.col("__f").fill_null(pl.lit([], pl.List(pl.String)))).to_series()


def _beside_own(pairs: pl.DataFrame, explicit: pl.DataFrame) -> pl.DataFrame:
    """`pairs` (`row_number`, `rec`, `kind`, `value`) without those of a row naming its record
    by IRI (`explicit`: `row_number`, `rec`) with another record, by a value the named record
    holds too: a switchboard number two organizations share is the named one's for that row,
    neither a contradiction of the IRI nor a claim on the other record (README: an explicit
    IRI column wins). A value only other records hold stays (an `iri-mismatch`)."""
    if not explicit.height:
        return pairs
    named = pairs.join(explicit, on="row_number", how="inner", suffix="#named")
    own = pl.col("rec") == pl.col("rec#named")
    shared = named.filter(~own).join(named.filter(own), on=["row_number", "kind", "value"], how="semi")
    return pairs.join(shared.select("row_number", "rec", "kind", "value"),
                      on=["row_number", "rec", "kind", "value"], how="anti", nulls_equal=True)


def _joined_rows() -> pl.Expr:
    return pl.col("row_number").cast(pl.List(pl.String)).list.join(", ")


_SHIFT = 1 << 32


def _claims(pairs: pl.DataFrame) -> pl.DataFrame:
    """`row_number`, `rec`: each record a row's identifiers hit, once, sorted by row and then
    record. Both are packed into one UInt64 (row numbers are far below 2^32: a sheet's lines),
    sorted and compared with their neighbours: a third of the time of a hash `unique` of the
    two columns."""
    key = (pl.col("row_number").cast(pl.UInt64) * _SHIFT + pl.col("rec").cast(pl.UInt64)).alias("k")
    k = pairs.select(key).to_series().sort()
    k = k.filter((k != k.shift(1)).fill_null(True))
    return k.to_frame().select((pl.col("k") // _SHIFT).cast(pl.Int64).alias("row_number"),
                               (pl.col("k") % _SHIFT).cast(pl.UInt32).alias("rec"))


def _extremes(claims: pl.DataFrame) -> pl.DataFrame:
    """`row_number`, `rec` (the smallest), `__max` (the largest) per row of `_claims` (sorted:
    the first and the last of each row's run)."""
    rn = pl.col("row_number")
    first, last = (rn != rn.shift(1)).fill_null(True), (rn != rn.shift(-1)).fill_null(True)
    return claims.filter(first).with_columns(claims.filter(last)["rec"].alias("__max"))


def _claimed_twice(by_ids: pl.DataFrame, explicit: pl.DataFrame, amb_rows: pl.Series) -> pl.DataFrame:
    """`rec`, `row_number` (sorted list: every row claiming it), `held` (the rows of those in
    conflict for it), `named` (those naming it by IRI), `kept` (the row that keeps it, or
    null): the records several rows claim. Every record a row names claims it: by
    its IRI (`explicit`), or by an identifier (`by_ids`, every row's pairs), also a row in
    conflict itself, so a typo in one row never lets another take the record over. A record
    one row names by IRI is that row's, though, when the others claim it only as rows in
    conflict of their own (an IRI row holding another record's e-mail, an ambiguous row: an
    e-mail moved from one exported row to another is not a deadlock), or when that row's own
    identifiers name the record too (its owner): then the others are the conflict (a value
    typed into another row). Of several rows naming it by IRI, the one owner (when only one
    is) keeps it and the others are the conflict (a row copied with its IRI, then given
    another name and phone: a trial's original row was held too). An IRI row none of whose
    identifiers the record holds (a row pasted beside another row's IRI) wins nothing: with no
    owner every row claiming the record is held."""
    named = explicit.select("row_number", "rec", pl.lit(True).alias("by_iri"))
    owners = named.join(by_ids, on=["row_number", "rec"], how="semi").select(
        "row_number", "rec", pl.lit(True).alias("__own"))
    aside = pl.concat([explicit["row_number"], amb_rows]).implode()  # rows their identifiers do not decide
    claims = pl.concat([named, by_ids.join(named, on=["row_number", "rec"], how="anti").select(
        "row_number", "rec", pl.lit(False).alias("by_iri"))])
    claims = claims.filter(pl.col("rec").is_in(_repeated(claims["rec"]).implode()))
    claims = claims.join(owners, on=["row_number", "rec"], how="left")
    own = pl.col("__own").fill_null(False)  # only rows naming it by IRI are owners
    decided = pl.col("by_iri").sum().over("rec") == 1
    one_owner = own.sum().over("rec") == 1  # of several rows naming it by IRI: a row copied with it
    others = (~pl.col("by_iri") & ~pl.col("row_number").is_in(aside)).sum().over("rec") == 0
    rn, sole = pl.col("row_number"), pl.col("__sole")  # `sole`: the one row naming it by IRI, its owner
    return claims.with_columns(((decided | one_owner) & own).alias("__sole")).filter(
        ~(decided & others)).group_by("rec").agg(rn.unique().sort(), rn.filter(~sole).unique().sort().alias("held"),
                                                 rn.filter("by_iri").unique().sort().alias("named"),
                                                 rn.filter(sole).first().alias("kept"))


def _ambiguous(amb: pl.DataFrame) -> pl.DataFrame:
    if not amb.height:
        return _empty_conflicts()
    why = pl.col("why").list.eval(pl.format("{} {} -> {}", pl.element().struct.field("kind"),
                                            pl.element().struct.field("value"),
                                            pl.element().struct.field("iri"))).list.unique().list.sort().list.join("; ")
    return amb.select("row_number", pl.lit("ambiguous-match").alias("type"),
                      pl.format("identifiers match {} records: {}", pl.col("iri").list.len(), why).alias("message"),
                      *(pl.col("why").list.eval(pl.element().sort_by(pl.element().struct.field("kind")))
                        .list.first().struct.field(k).alias(a) for k, a in (("kind", "field"), ("value", "value"))))


def _empty_conflicts() -> pl.DataFrame:
    return pl.DataFrame(schema={"row_number": pl.Int64, "type": pl.String, "message": pl.String,
                                "field": pl.String, "value": pl.String})
