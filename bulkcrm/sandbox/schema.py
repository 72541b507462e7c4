"""Resource definitions of the sandbox: fields, index columns and the JSON-LD rendering.

Stage: sandbox (shared by `store`, `validation`, `query` and `app`). Input: stored records
(`doc` dicts in API field names, nulls dropped, relation arrays kept apart). Output: API-shaped
dicts (crm-api.md §1, §8.1, §9.1, §10) and the derived columns the store indexes.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

NOTE_DEFAULTS = {"flagged": False, "isPrivate": False}
"""Values a new note starts with when not given (crm-api.md §9.1 [SANDBOX])."""
ARRAY_KINDS = frozenset({"iris", "emails", "phones"})


@dataclass(frozen=True)
class Field:
    """One API property.

    Attributes:
        name: API property name.
        kind: string | bool | int | datetime | iri | iris | emails | phones | address | any.
        target: collection an IRI must point to (checked on write); None = stored as given.
        read_only: ignored on write (crm-api.md §8.1 R/O). write_only: never rendered (W/O).
        relation: IRI array kept in the store's `links` table (tags, segments, people).
    """

    name: str
    kind: str = "string"
    target: str | None = None
    read_only: bool = False
    write_only: bool = False
    relation: bool = False


@dataclass(frozen=True)
class Resource:
    """One collection: `coll` path segment, JSON-LD `type`, fields in rendering order,
    NotBlank / NotNull fields (422, crm-api.md §5.2), the fields `q` searches and the verbs."""

    coll: str
    type: str
    fields: tuple[Field, ...]
    not_blank: tuple[str, ...] = ()
    not_null: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    timestamps: bool = False
    collection_methods: tuple[str, ...] = ("GET", "POST")
    item_methods: tuple[str, ...] = ("GET", "PUT", "PATCH", "DELETE")

    @property
    def context(self) -> str:
        return f"/contexts/{self.type}"

    def field(self, name: str) -> Field | None:
        return _FIELD_INDEX[self.coll].get(name)


RO = True
_CONTACT = (Field("emailAddresses", "emails"), Field("phoneNumbers", "phones"))
ORGANIZATION = Resource("organizations", "Organization", (
    Field("title"), Field("description"), *_CONTACT, Field("website"), Field("customerId"),
    Field("externalSource"), Field("chamberOfCommerceNumber"), Field("linkedinId"),
    Field("linkedinPublicIdentifier", read_only=RO), Field("linkedinInternalId", read_only=RO),
    Field("createdAt", "datetime", read_only=RO), Field("importedAt", "datetime", read_only=RO),
    Field("updatedAt", "datetime", read_only=RO), Field("archivedAt", "datetime"),
    Field("address", "address"), Field("owner", "iri", "users"),
    Field("people", "iris", "people", relation=True), Field("avatar", "iri", write_only=True),
    Field("avatarUrl", read_only=RO), Field("tags", "iris", "tags", relation=True),
    Field("segments", "iris", "segments", relation=True), Field("integrationParticipants", "iris"),
    Field("companyEnrichment", "bool", read_only=RO),
    Field("linkedinCompanyEnrichment", "any", read_only=RO),
), not_blank=("title",), timestamps=True,
    text=("title", "description", "website", "customerId", "chamberOfCommerceNumber"))
PERSON = Resource("people", "Person", (
    Field("familyName"), Field("givenName"), Field("additionalName"), Field("initials"),
    Field("honorificPrefix"), Field("jobTitle"), Field("customerId"), Field("externalSource"),
    Field("linkedinId"), Field("isTracked", "bool"), Field("createdAt", "datetime", read_only=RO),
    Field("updatedAt", "datetime", read_only=RO), Field("importedAt", "datetime", read_only=RO),
    Field("archivedAt", "datetime"), Field("owner", "iri", "users"),
    Field("tags", "iris", "tags", relation=True), Field("segments", "iris", "segments", relation=True),
    Field("organizations", "iris", "organizations", relation=True), *_CONTACT,
    Field("address", "address"), Field("avatar", "iri", write_only=True),
    Field("avatarUrl", read_only=RO), Field("dealSize", "any"), Field("totalDeals", "any"),
    Field("totalLostDeals", "any"), Field("totalWonDeals", "any"),
    Field("linkedinEnrichment", "any", read_only=RO), Field("integrationParticipants", "iris"),
), not_blank=("familyName",), timestamps=True,
    text=("familyName", "givenName", "additionalName", "jobTitle", "customerId"))
TAG = Resource("tags", "Tag", (
    Field("title"), Field("backgroundColor"), Field("textColor"), Field("description"),
    Field("createdAt", "datetime", read_only=RO), Field("updatedAt", "datetime", read_only=RO),
), not_blank=("title",), timestamps=True, item_methods=("GET", "PUT", "PATCH"))
SEGMENT = Resource("segments", "Segment", (Field("title"), Field("icon"), Field("sequence", "int")),
                   not_blank=("title", "icon"))
USER = Resource("users", "User", (Field("email"), Field("givenName"), Field("familyName")),
                collection_methods=("GET",), item_methods=("GET",))
NOTE_CATEGORY = Resource("note_categories", "NoteCategory", (Field("title"),),
                         collection_methods=("GET",), item_methods=("GET",))
NOTE = Resource("notes", "OrganizationNote", (
    Field("organizationId", write_only=True), Field("createdAt", "datetime"), Field("title"),
    Field("description"), Field("flagged", "bool"), Field("isPrivate", "bool"),
    Field("author", "iri", "users"), Field("category", "iri", "note_categories"),
), not_blank=("description",), not_null=("category",), text=("title", "description"))

RESOURCES: dict[str, Resource] = {r.coll: r for r in (
    ORGANIZATION, PERSON, TAG, SEGMENT, USER, NOTE_CATEGORY, NOTE)}
"""Every collection by its store name (`notes` are routed under `/organizations/{id}/notes`)."""
_FIELD_INDEX = {r.coll: {f.name: f for f in r.fields} for r in RESOURCES.values()}
IRI_ROUTE = re.compile(r"^/(organizations|people|tags|segments|users|note_categories|media_objects)"
                       r"/([^/?#]+)$")
NOTE_IRI = re.compile(r"^/organizations/([^/?#]+)/notes/([^/?#]+)$")


# -- time ----------------------------------------------------------------------------------

def parse_datetime(text: str) -> datetime | None:
    """Parse an ISO 8601 date or date-time (crm-api.md §7); naive values are UTC. None if not."""
    text = text.strip()
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        try:
            value = datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def format_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with seconds, `2025-01-31T10:15:00+00:00` (crm-api.md §1 [AP])."""
    return value.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def now_iso() -> str:
    return format_datetime(datetime.now(timezone.utc))


def timestamp(text: str | None) -> float | None:
    value = parse_datetime(text) if isinstance(text, str) else None
    return value.timestamp() if value else None


# -- identifiers and sort keys -------------------------------------------------------------

def id_of(value: str) -> str:
    """The id in a relation filter value: bare id, or the last segment of an IRI (§7)."""
    return value.rstrip("/").rsplit("/", 1)[-1] if value.startswith("/") else value


def norm_email(value: str) -> str:
    return value.strip().casefold()


_PHONE_CHARS = re.compile(r"^[\s\d+().\-/]*\d[\s\d+().\-/]*$")


def norm_phone(value: str) -> str | None:
    """Digits of a phone number, keeping a leading `+` (or `00` written as `+`), so
    `+31 20 555 0101`, `+31205550101` and `0031205550101` agree (crm-api.md §8.3 [SANDBOX])."""
    value = value.strip()
    if not _PHONE_CHARS.match(value):
        return None
    digits = re.sub(r"\D", "", value)
    if value.startswith("+"):
        return "+" + digits
    return "+" + digits[2:] if digits.startswith("00") else digits


def identifier_keys(value: str) -> list[str]:
    """Index keys a queried identifier may match: e-mail, phone, LinkedIn id."""
    keys = ["l:" + value]
    if "@" in value:
        keys.append("e:" + norm_email(value))
    phone = norm_phone(value)
    if phone:
        keys.append("p:" + phone)
    return keys


def record_identifiers(doc: dict) -> set[str]:
    """Index keys an organization is found by (`identifiers` filter)."""
    keys = {"e:" + norm_email(e["email"]) for e in doc.get("emailAddresses", ())
            if isinstance(e.get("email"), str) and e["email"].strip()}
    keys |= {"p:" + p for p in (norm_phone(x.get("phoneNumber") or "")
                                for x in doc.get("phoneNumbers", ())) if p}
    if isinstance(doc.get("linkedinId"), str):
        keys.add("l:" + doc["linkedinId"])
    return keys


def sort_key(text: Any) -> str | None:
    """Case- and accent-insensitive sort form of a title (`order[title.sort]`)."""
    if not isinstance(text, str):
        return None
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


# -- store columns ---------------------------------------------------------------------------

COLUMNS = ("sort_key", "family_name", "owner", "category", "flagged", "created_ts",
           "archived_ts", "email", "title", "search")
"""Derived, indexed columns of the `records` table (see `derive`)."""


def derive(coll: str, doc: dict) -> tuple:
    """Column values (in `COLUMNS` order) the list filters and orders use."""
    res = RESOURCES[coll]
    owner = doc.get("author" if coll == "notes" else "owner")
    text = [doc.get(f) for f in res.text]
    text += [e.get("email") for e in doc.get("emailAddresses", ())]
    text += [p.get("phoneNumber") for p in doc.get("phoneNumbers", ())]
    search = "\x1f".join(t for t in text if isinstance(t, str)).casefold()
    sort_source = doc.get("familyName") if coll == "people" else doc.get("title")
    flagged = doc.get("flagged")
    return (sort_key(sort_source), doc.get("familyName"), id_of(owner) if owner else None,
            id_of(doc["category"]) if doc.get("category") else None,
            None if flagged is None else int(bool(flagged)), timestamp(doc.get("createdAt")),
            timestamp(doc.get("archivedAt")), doc.get("email"), doc.get("title"), search or None)


def link_rows(coll: str, rid: str, doc: dict, rels: dict[str, list[str]]) -> list[tuple]:
    """Rows of the `links` table: relation ids (tags, segments, people) and exact e-mails."""
    rows = [(coll, rid, "email", e["email"], i)
            for i, e in enumerate(doc.get("emailAddresses", ())) if isinstance(e.get("email"), str)]
    for name, iris in rels.items():
        if name != "organizations":          # person side of the org<->person link, see store
            rows += [(coll, rid, name, id_of(iri), i) for i, iri in enumerate(iris)]
    return rows


# -- rendering -----------------------------------------------------------------------------

def iri(coll: str, rid: str, parent: str | None = None) -> str:
    return f"/organizations/{parent}/notes/{rid}" if coll == "notes" else f"/{coll}/{rid}"


def render(coll: str, rid: str, doc: dict, rels: dict[str, list[str]], parent: str | None = None,
           context: bool = True) -> dict:
    """API shape of one record: JSON-LD keys, `id`, fields in schema order; null-valued
    properties omitted and arrays always present (crm-api.md §1, §8.1 [AP/SANDBOX])."""
    res = RESOURCES[coll]
    out: dict[str, Any] = {"@context": res.context} if context else {}
    out.update({"@id": iri(coll, rid, parent), "@type": res.type, "id": rid})
    for f in res.fields:
        if f.write_only:
            continue
        value = rels.get(f.name, []) if f.relation else doc.get(f.name)
        if value is None and f.kind in ARRAY_KINDS:
            value = []
        if value is not None:
            out[f.name] = value
    return out


def strip_nulls(value: Any) -> Any:
    """Drop null-valued keys recursively (API Platform `skip_null_values`)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value
