"""Stage 0: load a template (YAML) that maps spreadsheet columns onto API fields.

Input: a YAML file (format in README.md, "Template format"). Output: a frozen `Template`.
Every error is a `TemplateError` naming the file and the key path, e.g.
`templates/x.yaml:fields.title.column: expected a string`.

The API's own rules for each field (kind, IRI collection, normaliser, check) live in
`FIELD_RULES`, taken from crm-api.md §8.1/§8.2 (organizations) and §9.1 (notes).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import TemplateError, did_you_mean
from .vocab import IRI_ID, MODES

LIST_KINDS = ("emails", "list", "phones")
"""Field kinds that hold a list (several sources, `split`, list constants)."""

# kind: scalar (one string), bool, list (list of strings), phones (list of {phoneNumber, phoneType}),
# emails (list of strings sent as [{email}]). `iri`: the collection a relation points to.
# `normalise`: the transform every value of the field always gets (the API's format).
# `check`: the validator check (transforms.CHECKS) for the cleaned value.
ORG_FIELDS: dict[str, dict[str, Any]] = {
    "title": {"kind": "scalar", "check": None, "required": True, "normalise": "squish"},
    "description": {"kind": "scalar", "normalise": "trim"},  # inner line breaks kept
    "website": {"kind": "scalar", "normalise": "url", "check": "url"},
    "customerId": {"kind": "scalar", "normalise": "trim", "one_line": True},
    "externalSource": {"kind": "scalar", "normalise": "trim", "one_line": True},
    "chamberOfCommerceNumber": {"kind": "scalar", "normalise": "trim", "one_line": True},
    "linkedinId": {"kind": "scalar", "normalise": "linkedin"},
    "archivedAt": {"kind": "scalar", "normalise": "datetime", "check": "datetime"},
    "address.street": {"kind": "scalar", "normalise": "squish"},
    "address.postalCode": {"kind": "scalar", "normalise": "trim", "one_line": True},
    "address.city": {"kind": "scalar", "normalise": "squish"},
    "address.country": {"kind": "scalar", "normalise": "country", "check": "country"},
    "owner": {"kind": "scalar", "iri": "users", "lookup_by": "email"},
    "avatar": {"kind": "scalar", "iri": "media_objects"},
    "emailAddresses": {"kind": "emails", "normalise": "email", "check": "email"},
    "phoneNumbers": {"kind": "phones", "normalise": "phone", "check": "phone_e164"},
    "tags": {"kind": "list", "iri": "tags", "lookup_by": "title"},
    "segments": {"kind": "list", "iri": "segments", "lookup_by": "title"},
    "people": {"kind": "list", "iri": "people"},
}
NOTE_FIELDS: dict[str, dict[str, Any]] = {
    "description": {"kind": "scalar", "required": True, "normalise": "trim"},  # inner line breaks kept
    "title": {"kind": "scalar", "normalise": "trim"},
    "flagged": {"kind": "bool", "normalise": "boolean", "check": "boolean"},
    "isPrivate": {"kind": "bool", "normalise": "boolean", "check": "boolean"},
    "author": {"kind": "scalar", "iri": "users", "lookup_by": "email"},
    "category": {"kind": "scalar", "iri": "note_categories", "lookup_by": "title", "required": True},
    "createdAt": {"kind": "scalar", "normalise": "datetime", "check": "datetime"},
}
FIELD_RULES = {"organizations": ORG_FIELDS, "organization_notes": NOTE_FIELDS}
"""Per resource: API field -> rules (crm-api.md §8.1, §8.2, §9.1)."""

IDENTIFIER_KINDS = {
    "emailAddresses": "email", "phoneNumbers": "phone", "linkedinId": "linkedin",
    "customerId": "text", "chamberOfCommerceNumber": "text",
}
"""Fields usable as identifiers -> normaliser kind. The first three are searchable with the
`identifiers[]` filter (crm-api.md §8.3); the others need a full listing."""
SEARCHABLE_IDENTIFIERS = ("emailAddresses", "phoneNumbers", "linkedinId")
NOTE_KEY_FIELDS = ("organization", *NOTE_FIELDS)
"""What a note's content key may be made of: its organization and any note field (issue 8)."""
DEFAULT_NOTE_KEY = ("organization", "createdAt", "description")
"""The default content key of a note; a row without createdAt keys on organization +
description (notes have no identifiers filter: crm-api.md §9.1)."""

_SOURCE_KEYS = {"column", "value", "transforms", "split", "policy", "lookup",
                "required", "max_length", "type", "type_column", "type_map", "render", "optional"}
_LOOKUP_KEYS = {"by", "table", "create_missing", "collection"}
LOOKUP_PROPERTIES = {
    "tags": ("title", "id", "description"),
    "segments": ("title", "id", "icon"),
    "users": ("email", "id", "givenName", "familyName"),
    "note_categories": ("title", "id"),
    "people": ("customerId", "externalSource", "linkedinId", "familyName", "givenName", "id"),
}
"""The text properties of each collection a lookup may match names on (crm-api.md §10: tags,
segments and categories by title, users by e-mail; people have no title)."""
_NOTE_KEYS = {"organization", "content_key", "mirror"}
_SECTION_KEYS = _NOTE_KEYS | {"sheet", "fields", "mode", "empty"}
_ORG_REF_KEYS = {"iri_column", "customer_id_column", "identifiers"}


@dataclass(frozen=True)
class Source:
    """One column (or constant) feeding a field. For `phoneNumbers` a field may have several.

    Attributes:
        column: sheet column name, or None for a constant.
        value: the constant (when `column` is None).
        transforms: transform specs applied in order before the field's normaliser
            (`"trim"` or `{"phone": {"default_region": "NL"}}`, see transforms.py).
        split: separator turning the cell into a list (list and phone fields; default `;`),
            or None.
        phone_type: constant phoneType for phone sources (crm-api.md §8.2 enum).
        type_column: column holding the phoneType per row.
        type_map: sheet phone-type word -> API phoneType (e.g. office -> work), lower-cased keys.
        optional: a sheet may lack the column; then the source is left out for that sheet
            (`Template.for_columns`).
    """

    column: str | None = None
    value: Any = None
    transforms: tuple = ()
    split: str | None = None
    phone_type: str | None = None
    type_column: str | None = None
    type_map: tuple[tuple[str, str], ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class Lookup:
    """How names in a column become IRIs (crm-api.md §10).

    Attributes:
        collection: API collection, e.g. `tags` -> IRIs `/tags/{id}`.
        by: the record property matched against the cell (`title` for tags, `email` for users).
        table: static name -> IRI table (for APIs without the endpoint); checked first.
        create_missing: create unknown names (tags only); counted in the plan.
    """

    collection: str
    by: str
    table: tuple[tuple[str, str], ...] = ()
    create_missing: bool = False


@dataclass(frozen=True)
class Mapping:
    """One API field and where its value comes from.

    Attributes:
        field: API field path, dotted for embedded objects (`address.city`).
        kind: scalar | bool | list | emails | phones (from FIELD_RULES).
        sources: one or more `Source` (several only for list fields).
        policy: overwrite | fill_if_empty | never (scalars); merge | replace (lists).
        lookup: a `Lookup` when the column holds names rather than IRIs.
        required: a row without a value is invalid (`missing-required`).
        max_length: longest allowed value in characters, or None.
        render: export options (e.g. {"country": "name"}).
        resource: organizations | organization_notes: whose `FIELD_RULES` the field follows.
    """

    field: str
    kind: str
    sources: tuple[Source, ...]
    policy: str
    lookup: Lookup | None = None
    required: bool = False
    max_length: int | None = None
    render: tuple[tuple[str, Any], ...] = ()
    resource: str = "organizations"

    @property
    def columns(self) -> tuple[str, ...]:
        """Sheet columns this mapping reads (type columns included)."""
        cols = [s.column for s in self.sources if s.column]
        cols += [s.type_column for s in self.sources if s.type_column]
        return tuple(cols)

    @property
    def rules(self) -> dict[str, Any]:
        """The API's rules of the field (`FIELD_RULES` of the mapping's resource)."""
        return FIELD_RULES[self.resource][self.field]


@dataclass(frozen=True)
class Template:
    """A loaded template.

    Attributes:
        path: the YAML file; sha256: its content hash (recorded in plans).
        resource: `organizations` or `organization_notes`.
        mode: `patch` (merge patch, RFC 7396) or `replace` (PUT, the sheet is authoritative).
        mappings: field mappings in file order.
        identifiers: identifier fields, as the template lists them (crm-api.md §8.3 `identifiers[]`);
            a row's values naming two records are a conflict, whichever field names which.
        iri_column: sheet column holding an explicit record IRI (wins over identifiers).
        null_tokens: cell texts meaning "no value" (e.g. `NULL`); compared after trimming.
        default_region: ISO 3166-1 alpha-2 region for phones of rows without a country.
        empty: `ignore` (an empty cell leaves the field alone) or `clear` (it clears it).
        clear_unmapped: a PUT clears fields the template does not map (default False).
        compare: `normalised` (default: a record value equal to the row's once both are
            normalised is unchanged) or `stored` (a record value is compared as stored, so one
            not in the template's normalised form, a national phone number, a country name, an
            e-mail in capitals, is written in that form: a hygiene run).
        notes: `NotesSpec` for resource organization_notes (how a note finds its organization,
            its content key) and for an organizations template with a `notes:` section (then
            `notes.template` is the parsed notes sub-template); None otherwise.
    """

    path: str
    sha256: str
    resource: str
    mode: str
    mappings: tuple[Mapping, ...]
    identifiers: tuple[str, ...]
    iri_column: str | None
    null_tokens: tuple[str, ...]
    default_region: str | None
    empty: str
    clear_unmapped: bool = False
    notes: "NotesSpec | None" = None
    compare: str = "normalised"

    def mapping(self, field_name: str) -> Mapping | None:
        return next((m for m in self.mappings if m.field == field_name), None)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every sheet column the template reads."""
        cols = [c for m in self.mappings for c in m.columns]
        if self.iri_column:
            cols.append(self.iri_column)
        return tuple(dict.fromkeys(cols))

    def for_columns(self, columns: Iterable[str]) -> tuple["Template", list[str]]:
        """The template as it applies to a sheet with `columns`: `optional` sources whose
        column the sheet lacks are left out (whose `type_column` it lacks: their items go
        without a type); a field left without sources is not mapped (its
        value in the CRM stays as it is) and is no identifier; a list that keeps other sources
        is merged with the record's list whatever its policy, so nothing is removed. Returns
        (template, the missing optional columns); the template itself when none is missing."""
        present = set(columns)
        missing = [c for m in self.mappings for s in m.sources if s.optional
                   for c in ([s.column] if s.column not in present else
                             [s.type_column] if s.type_column and s.type_column not in present else [])]
        if not missing:
            return self, []
        mappings = []
        for m in self.mappings:  # an optional source's absent type column: its items untyped
            kept = tuple(replace(s, type_column=None) if s.optional and s.type_column in missing else s
                         for s in m.sources if not (s.optional and s.column not in present))
            if kept == m.sources:
                mappings.append(m)
            elif kept:  # a list built from its other columns is merged with the record's:
                # replaced, it would drop the items the missing column holds
                mappings.append(replace(m, sources=kept, policy="merge"))
        fields = {m.field for m in mappings}
        return replace(self, mappings=tuple(mappings),
                       identifiers=tuple(f for f in self.identifiers if f in fields)), missing

    def column_of(self, field_name: str) -> str | None:
        """The first sheet column feeding `field_name` (for issue messages)."""
        m = self.mapping(field_name)
        return m.columns[0] if m and m.columns else None


@dataclass(frozen=True)
class OrgRef:
    """How a note row names its organization (issue 8).

    Attributes:
        iri_column: column holding the organization IRI (`/organizations/{id}`); wins.
        customer_id_column: column holding the organization's customerId (no API filter:
            matched through a full listing, crm-api.md §8.3).
        identifiers: identifier fields read from the notes sheet, as listed.
        template: a synthetic organizations template mapping exactly those columns, for
            `match.match_rows` (identifiers = the fields above, then customerId).
        derived: taken from the organizations' own columns (a `notes.sheet` without
            `organization:`); the notes sheet then needs only some of them.
    """

    iri_column: str | None
    customer_id_column: str | None
    identifiers: tuple[str, ...]
    template: Template
    derived: bool = False


@dataclass(frozen=True)
class NotesSpec:
    """The notes part of a template (issue 8).

    Attributes:
        content_key: what makes two notes the same (`NOTE_KEY_FIELDS`), `organization` first.
        organization: how a note row finds its organization; None when the notes share the
            organizations' rows (one sheet).
        mirror: the template allows mirror mode (deletes still need `--mirror-notes`).
        sheet: worksheet of the notes (same workbook) or None (the organizations' rows).
        template: for an organizations template, the notes sub-template (resource
            organization_notes, whose own `notes` is this spec without `template`).
    """

    content_key: tuple[str, ...] = DEFAULT_NOTE_KEY
    organization: OrgRef | None = None
    mirror: bool = False
    sheet: str | None = None
    template: Template | None = None


def notes_template(template: Template) -> Template | None:
    """The template that maps note fields: `template` itself for resource organization_notes,
    the parsed `notes:` section of an organizations template, else None."""
    if template.resource == "organization_notes":
        return template
    return template.notes.template if template.notes is not None else None


def read_columns(template: Template) -> set[str]:
    """Every sheet column `template` reads: its fields', its notes section's (`notes:`) and
    the columns a note row names its organization by (`organization:`)."""
    cols = set(template.columns)
    notes = notes_template(template)
    if notes is not None:
        cols |= set(notes.columns)
    for t in (template, notes):
        ref = t.notes.organization if t is not None and t.notes is not None else None
        if ref is not None:
            cols |= set(ref.template.columns)
    return cols

def load_template(path: str | Path) -> Template:
    """Load and check a template file.

    Args:
        path: YAML file, see README "Template format".

    Returns:
        A frozen `Template`.

    Raises:
        TemplateError: unreadable YAML, unknown key, unknown field for the resource, a wrong
            type, or an identifier that is neither mapped nor an identifier field. The message
            names the file and the key path.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        raise TemplateError("template file not found", path=str(p)) from None
    except yaml.MarkedYAMLError as e:  # one line: where (the file's line and column) and what
        mark = e.problem_mark or e.context_mark
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        start = e.context_mark if e.context_mark and mark and e.context_mark.line != mark.line else None
        context = f"{e.context} (which starts at line {start.line + 1})" if e.context and start else e.context
        what = "; ".join(x for x in (context, e.problem) if x)
        raise TemplateError(f"cannot read YAML: {what}", path=where) from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise TemplateError(f"cannot read YAML: {e}", path=str(p)) from None
    return parse_template(doc, path=str(p), sha256=hashlib.sha256(text.encode()).hexdigest())


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses a key given twice in one mapping (YAML 1.2 §3.2.1.1:
    keys are unique); PyYAML itself keeps the last, so a pasted second `title:` would win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, bool):  # YAML 1.1: yes/no/on/off (NO: Norway) are booleans
                raise yaml.constructor.ConstructorError(
                    None, None, f"YAML reads the key {key_node.value} as {str(key).lower()}: quote it "
                    f"('{key_node.value}')", key_node.start_mark)
            if not isinstance(key, (str, int, float)):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key is a name (text), not a list or mapping", key_node.start_mark)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key} is given twice in one mapping (keep one)",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_template(doc: Any, *, path: str = "<template>", sha256: str = "") -> Template:
    """Build a `Template` from an already parsed YAML document (see `load_template`)."""
    err = _Err(path)
    if not isinstance(doc, dict):
        raise err("the template must be a mapping", None)
    resource = doc.get("resource", "organizations")
    if not isinstance(resource, str) or resource not in FIELD_RULES:
        raise err(f"unknown resource {resource!r}; use one of {sorted(FIELD_RULES)}", "resource")
    known = ({"resource", "mode", "null_tokens", "default_region", "empty", "fields", "description"}
             | (_NOTE_KEYS if resource == "organization_notes" else
                {"identifiers", "iri_column", "clear_unmapped", "notes", "compare"}))
    for k in doc:
        if k in FIELD_RULES[resource] and k not in known:  # `fields:` children not indented
            raise err(f"{k} is a field: indent it under `fields:` (two spaces)", str(k))
        if k not in known:
            raise err(f"unknown key for resource {resource}{did_you_mean(k, known)}; expected one of "
                      f"{sorted(known)}", str(k))
    mode = doc.get("mode", "patch")
    if mode not in ("patch", "replace"):
        hint = " (create-only/update-only are run options: --mode)" if mode in MODES else ""
        raise err(f"mode must be 'patch' or 'replace'{hint}", "mode")
    fields_doc = doc.get("fields")
    if not isinstance(fields_doc, dict) or not fields_doc:
        raise err("expected a mapping of API field -> column", "fields")
    rules = FIELD_RULES[resource]
    mappings = _mappings(fields_doc, resource, mode, err)
    mapped = {m.field for m in mappings}
    idents = tuple(_str_list(doc.get("identifiers", []), err, "identifiers"))
    wrong = [(i, f"{ident!r} cannot identify a record{did_you_mean(ident, IDENTIFIER_KINDS)}"
              if ident not in IDENTIFIER_KINDS else f"identifier {ident!r} is not mapped under fields")
             for i, ident in enumerate(idents) if ident not in IDENTIFIER_KINDS or ident not in mapped]
    use = f"; use {sorted(IDENTIFIER_KINDS)}" if any(i not in IDENTIFIER_KINDS for i in idents) else ""
    if len(wrong) == 1:
        raise err(wrong[0][1] + use, f"identifiers[{wrong[0][0]}]")
    if wrong:  # every one at once: a fix of the first must not just reveal the next
        raise err("; ".join(f"[{i}] {msg}" for i, msg in wrong) + use, "identifiers")
    for req, r in rules.items():
        if r.get("required") and req not in mapped:
            section = "§8.1" if resource == "organizations" else "§9.1"
            raise err(f"the API requires {req!r} (crm-api.md {section}); map it", "fields")
    empty = doc.get("empty", "clear" if mode == "replace" else "ignore")
    if empty not in ("ignore", "clear"):
        raise err("empty must be 'ignore' or 'clear'", "empty")
    compare = doc.get("compare", "normalised")
    if compare not in ("normalised", "stored"):
        raise err("compare must be 'normalised' (the default) or 'stored' (write records' values in the "
                  "template's normalised form)", "compare")
    region = doc.get("default_region")
    if region is not None and (not isinstance(region, str) or len(region) != 2):
        raise err("default_region must be an ISO 3166-1 alpha-2 code such as NL", "default_region")
    base = Template(
        path=path, sha256=sha256, resource=resource, mode=mode, mappings=mappings,
        identifiers=idents,
        iri_column=None if resource == "organization_notes" else doc.get("iri_column", "crm_iri"),
        null_tokens=tuple(str(t) for t in _str_list(doc.get("null_tokens", []), err, "null_tokens")),
        default_region=region.upper() if region else None, empty=empty,
        clear_unmapped=_bool(doc.get("clear_unmapped", False), err, "clear_unmapped"), compare=compare,
    )
    if base.clear_unmapped and any(s.optional for m in mappings for s in m.sources):
        raise err("optional columns cannot be used with clear_unmapped: true (a sheet without "
                  "the column would clear its field)", "clear_unmapped")
    if resource == "organization_notes":
        if doc.get("organization") is None:
            raise err("a notes template needs 'organization' (iri_column, customer_id_column "
                      "and/or identifiers) to find each note's organization", "organization")
        return replace(base, notes=_notes_spec(doc, base, base, err))
    if doc.get("notes") is None:
        return base
    return replace(base, notes=_notes_section(doc["notes"], base, err))


def _notes_section(doc: Any, parent: Template, err: "_Err") -> NotesSpec:
    """The `notes:` section of an organizations template (one sheet, or a second sheet)."""
    if not isinstance(doc, dict):
        raise err("expected a mapping with fields (and optionally sheet, content_key, "
                  "organization, mirror, mode, empty)", "notes")
    for k in doc:
        if k not in _SECTION_KEYS:
            raise err(f"unknown key{did_you_mean(k, _SECTION_KEYS)}; expected one of {sorted(_SECTION_KEYS)}",
                      f"notes.{k}")
    sheet = doc.get("sheet")
    if sheet is not None and not isinstance(sheet, (str, int)):
        raise err("expected a worksheet name", "notes.sheet")
    if sheet is None and doc.get("organization") is not None:
        raise err("only a separate notes sheet needs 'organization': on one sheet a note "
                  "belongs to its row's organization", "notes.organization")
    mode = doc.get("mode", "patch")
    if mode not in ("patch", "replace"):
        raise err("mode must be 'patch' or 'replace'", "notes.mode")
    fields_doc = doc.get("fields")
    if not isinstance(fields_doc, dict) or not fields_doc:
        raise err("expected a mapping of note field -> column", "notes.fields")
    sub_err = _Err(parent.path, prefix="notes.")
    mappings = tuple(_mapping(n, spec, "organization_notes", mode, sub_err) for n, spec in fields_doc.items())
    for req in ("description", "category"):
        if req not in {m.field for m in mappings}:
            raise err(f"the API requires {req!r} (crm-api.md §9.1); map it", "notes.fields")
    empty = doc.get("empty", "clear" if mode == "replace" else "ignore")
    if empty not in ("ignore", "clear"):
        raise err("empty must be 'ignore' or 'clear'", "notes.empty")
    sub = Template(path=parent.path, sha256=parent.sha256, resource="organization_notes", mode=mode,
                   mappings=mappings, identifiers=(), iri_column=None, null_tokens=parent.null_tokens,
                   default_region=parent.default_region, empty=empty)
    org_doc = doc.get("organization")
    if sheet is not None and org_doc is None:
        org_doc = _default_org_ref(parent, err)
    spec = _notes_spec({**doc, "organization": org_doc}, sub, parent, sub_err)
    if sheet is not None and doc.get("organization") is None:
        spec = replace(spec, organization=_as_parent(replace(spec.organization, derived=True), parent))
    spec = replace(spec, sheet=None if sheet is None else str(sheet))
    return replace(spec, template=replace(sub, notes=spec))


def _as_parent(ref: OrgRef, parent: Template) -> OrgRef:
    """A reference taken from the organizations' columns reads each column as the organizations
    do: with their source's transforms (a customerId `1` that the template prefixes `SUP-`
    names `SUP-1` on the notes sheet too; export writes it back as `1` there too)."""
    def own(m: Mapping) -> Mapping:
        theirs = parent.mapping(m.field)
        same = [s for s in theirs.sources if s.column == m.sources[0].column] if theirs else []
        return replace(m, sources=(same[0],)) if same else m
    return replace(ref, template=replace(ref.template, mappings=tuple(own(m) for m in ref.template.mappings)))


def _default_org_ref(parent: Template, err: "_Err") -> dict:
    """A separate notes sheet without `organization`: the organizations' identifier columns."""
    idents = {f: parent.mapping(f).columns[0] for f in parent.identifiers
              if f in SEARCHABLE_IDENTIFIERS and parent.mapping(f).columns}
    ref: dict[str, Any] = {"identifiers": idents} if idents else {}
    if parent.iri_column:
        ref["iri_column"] = parent.iri_column
    cid = parent.column_of("customerId")
    if cid:
        ref["customer_id_column"] = cid
    if not idents and not cid:
        raise err("say how a note finds its organization: organization.iri_column, "
                  "customer_id_column or identifiers", "notes.organization")
    return ref


def _notes_spec(doc: dict, notes_t: Template, parent: Template, err: "_Err") -> NotesSpec:
    """content_key, organization and mirror of a notes template or section."""
    key = tuple(_str_list(doc.get("content_key", list(DEFAULT_NOTE_KEY)), err, "content_key"))
    for i, k in enumerate(key):
        if k not in NOTE_KEY_FIELDS:
            raise err(f"{k!r} cannot be part of a note's content key; use {list(NOTE_KEY_FIELDS)}",
                      f"content_key[{i}]")
        if k not in ("organization", "createdAt") and notes_t.mapping(k) is None:
            raise err(f"content key field {k!r} is not mapped under fields", f"content_key[{i}]")
    if "organization" not in key:
        raise err("the content key must include 'organization' (notes are listed per "
                  "organization, crm-api.md §9.2)", "content_key")
    if "description" not in key and len(key) == 1:
        raise err("a content key of 'organization' alone would make every note of an "
                  "organization the same note; add description or createdAt", "content_key")
    mirror = doc.get("mirror", False)
    if not isinstance(mirror, bool):
        raise err("expected true or false", "mirror")
    org = doc.get("organization")
    return NotesSpec(content_key=key, mirror=mirror,
                     organization=None if org is None else _org_ref(org, parent, err))


def _org_ref(doc: Any, parent: Template, err: "_Err") -> OrgRef:
    """`organization: {iri_column, customer_id_column, identifiers: {field: column}}`."""
    if not isinstance(doc, dict) or not doc:
        raise err("expected a mapping with iri_column, customer_id_column and/or identifiers",
                  "organization")
    for k in doc:
        if k not in _ORG_REF_KEYS:
            raise err(f"unknown key{did_you_mean(k, _ORG_REF_KEYS)}; expected one of {sorted(_ORG_REF_KEYS)}",
                      f"organization.{k}")
    idents = doc.get("identifiers") or {}
    if not isinstance(idents, dict):
        raise err("expected a mapping of identifier field -> column", "organization.identifiers")
    mappings = []
    for f, spec in idents.items():
        if f not in SEARCHABLE_IDENTIFIERS:
            raise err(f"{f!r} is not searchable with identifiers[]; use "
                      f"{list(SEARCHABLE_IDENTIFIERS)} (or customer_id_column)",
                      f"organization.identifiers.{f}")
        mappings.append(_mapping(f, spec, "organizations", "patch", err, f"organization.identifiers.{f}"))
    cid = doc.get("customer_id_column")
    iri_col = doc.get("iri_column")
    for k, v in (("customer_id_column", cid), ("iri_column", iri_col)):
        if v is not None and not isinstance(v, str):
            raise err("expected a column name (string)", f"organization.{k}")
    if cid:
        mappings.append(_mapping("customerId", cid, "organizations", "patch", err,
                                 "organization.customer_id_column"))
    if not mappings and not iri_col:
        raise err("give iri_column, customer_id_column or identifiers", "organization")
    names = tuple(m.field for m in mappings)
    ref_t = Template(path=parent.path, sha256=parent.sha256, resource="organizations", mode="patch",
                     mappings=tuple(mappings), identifiers=names, iri_column=iri_col,
                     null_tokens=parent.null_tokens, default_region=parent.default_region,
                     empty="ignore")
    return OrgRef(iri_column=iri_col, customer_id_column=cid,
                  identifiers=tuple(n for n in names if n != "customerId"), template=ref_t)


def _mappings(fields_doc: dict, resource: str, mode: str, err: "_Err") -> tuple[Mapping, ...]:
    """`_mapping` of every field under `fields:`; the errors of several fields are raised
    together (a trial fixed a template one typo per run).

    Raises:
        TemplateError: the one field's error, or every field's, each with its key.
    """
    mappings, errors = [], []
    for name, spec in fields_doc.items():
        try:
            mappings.append(_mapping(name, spec, resource, mode, err))
        except TemplateError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise err(f"{len(errors)} fields are wrong:" + "".join(
            f"\n  {e.key}: {e.message}" if e.key else f"\n  {e.message}" for e in errors), None)
    return tuple(mappings)


class _Err:
    def __init__(self, path: str, prefix: str = ""):
        self.path, self.prefix = path, prefix

    def __call__(self, message: str, key: str | None) -> TemplateError:
        return TemplateError(message, path=self.path, key=f"{self.prefix}{key}" if key else key)


def _str_list(value: Any, err: _Err, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise err("expected a list of strings", key)
    return [str(v) for v in value]


FIELD_OPTIONS = ("policy", "lookup", "required", "max_length", "render")
"""Source keys that are options of the whole field, read from its first source."""
_OPTION_DEFAULTS = {"required": False}
"""What a field option is when its first source leaves it out (a later source may say so)."""


def _mapping(name: str, spec: Any, resource: str, mode: str, err: _Err,
             key: str | None = None) -> Mapping:
    key = key or f"fields.{name}"
    rules = FIELD_RULES[resource]
    if name not in rules:
        raise err(f"unknown field for this resource{did_you_mean(name, rules)}; known fields: "
                  f"{', '.join(rules)}", key)
    rule = rules[name]
    if isinstance(spec, str):
        spec = {"column": spec}
    specs = spec if isinstance(spec, list) else [spec]
    if len(specs) > 1 and rule["kind"] not in LIST_KINDS:
        raise err("only list fields may have several sources", key)
    sources = tuple(_source(s, rule, err, f"{key}[{i}]" if len(specs) > 1 else key)
                    for i, s in enumerate(specs))
    for i, src in enumerate(sources[1:], 1):  # a column read twice for one field (a review: a
        # crash, and export wrote the one column with one source's value)
        if src.column and src.column in [s.column for s in sources[:i]]:
            raise err(f"column {src.column!r} is already a source of {name}; a column is read once per "
                      "field (give several types per row with type_column)", f"{key}[{i}].column")
    for i, s in enumerate(specs[1:], 1):  # options of the whole field: on its first source only
        for k in FIELD_OPTIONS:
            if k in s and s[k] != specs[0].get(k, _OPTION_DEFAULTS.get(k)):
                raise err(f"{k} applies to the whole field, not to one of its sources: give it on the "
                          f"first source ({key}[0]), once", f"{key}[{i}].{k}")
    first = specs[0]
    is_list = rule["kind"] in LIST_KINDS
    default_policy = ("replace" if mode == "replace" else "merge") if is_list else "overwrite"
    policy = first.get("policy", default_policy)
    allowed = ("merge", "replace") if is_list else ("overwrite", "fill_if_empty", "never")
    if policy not in allowed:
        raise err(f"policy must be one of {allowed} for this field", f"{key}.policy")
    if any(src.optional for src in sources):  # a sheet without the column must lose nothing
        if rule.get("required"):
            raise err(f"{name} is required by the API: its column cannot be optional", key)
        if resource == "organization_notes":
            raise err("optional columns are for organization fields (a note's fields make its "
                      "content key)", key)
    required, max_length = first.get("required", rule.get("required", False)), first.get("max_length")
    if not isinstance(first.get("render") or {}, dict):
        raise err("a mapping of transform -> its export options, e.g. render: {country: alpha_3}",
                  f"{key}.render")
    required = _bool(required, err, f"{key}.required")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                   or max_length < 1):
        raise err("a whole number of characters, 1 or more", f"{key}.max_length")
    lookup = _lookup(first.get("lookup"), rule, err, f"{key}.lookup")
    if rule.get("iri") and lookup is None:
        _constant_iris(sources, rule, err, key)
    return Mapping(
        field=name, kind=rule["kind"], sources=sources, policy=policy,
        lookup=lookup,
        required=required, max_length=max_length,
        render=tuple(sorted((first.get("render") or {}).items())),
        resource=resource,
    )


def _constant_iris(sources: tuple[Source, ...], rule: dict, err: _Err, key: str) -> None:
    """A relation's constant (`value:`) without `lookup` is sent as it is, so it must be an IRI
    of its collection (`/tags/{id}`); a name (`Supplier`) would fail on every row."""
    collection, by = rule["iri"], rule.get("lookup_by", "name")
    for i, s in enumerate(sources):
        values = s.value if isinstance(s.value, (list, tuple)) else [] if s.value is None else [s.value]
        if any(_is_iri(thaw(t)) for t in s.transforms):  # its iri transform reads it (allow_bare_id)
            continue
        for v in values:
            if not re.fullmatch(rf"/{re.escape(collection)}/{IRI_ID}", str(v).strip()):
                where = f"{key}[{i}]" if len(sources) > 1 else key
                more = " (lookup: {create_missing: true} also creates one that does not exist)" \
                    if collection == "tags" else ""
                raise err(f"the value {v!r} is not an IRI /{collection}/{{id}}; to give its {by} "
                          f"instead, add lookup: true{more}", f"{where}.value")


def _source(spec: Any, rule: dict, err: _Err, key: str) -> Source:
    if not isinstance(spec, dict):
        raise err("expected a column name or a mapping", key)
    for k in spec:
        if k not in _SOURCE_KEYS:
            raise err(f"unknown key{did_you_mean(k, _SOURCE_KEYS)}; expected one of {sorted(_SOURCE_KEYS)}",
                      f"{key}.{k}")
    if ("column" in spec) == ("value" in spec):
        raise err("give exactly one of 'column' or 'value'", key)
    if "column" in spec and (not isinstance(spec["column"], str) or not spec["column"].strip()):
        raise err("expected a column name (text, not empty)", f"{key}.column")
    transforms = spec.get("transforms", [])
    if not isinstance(transforms, list):
        raise err("expected a list of transforms", f"{key}.transforms")
    for k in ("type", "type_column", "type_map"):
        if spec.get(k) is not None and rule["kind"] != "phones":
            raise err(f"'{k}' applies to phoneNumbers only", f"{key}.{k}")
    type_map = spec.get("type_map") or {}
    if not isinstance(type_map, dict):
        raise err("expected a mapping of sheet word -> phoneType", f"{key}.type_map")
    phone_type = _phone_type(spec.get("type"), err, f"{key}.type")
    type_map = {k: _phone_type(v, err, f"{key}.type_map") for k, v in type_map.items()}
    _check_value(spec, rule, err, key)
    _check_transforms(transforms, rule, err, f"{key}.transforms")
    split = spec.get("split")
    if split is not None and (not isinstance(split, str) or not split):
        raise err("a separator is text, e.g. split: ';'", f"{key}.split")
    if split is not None and rule["kind"] not in LIST_KINDS:
        raise err("only list fields are split (emailAddresses, phoneNumbers, tags, ...); to keep "
                  "part of a value, use the extract transform", f"{key}.split")
    if split is None and rule["kind"] in LIST_KINDS and "column" in spec:
        split = ";"
    optional = spec.get("optional", False)
    if not isinstance(optional, bool) or (optional and "column" not in spec):
        raise err("optional is true or false, for a column", f"{key}.optional")
    return Source(column=spec.get("column"), value=spec.get("value"), transforms=tuple(
        _freeze(t) for t in transforms), split=split, phone_type=phone_type,
        type_column=spec.get("type_column"),
        type_map=tuple((str(k).strip().lower(), str(v)) for k, v in type_map.items()),
        optional=optional)


def _phone_type(value: Any, err: _Err, key: str) -> str | None:
    """A template's phoneType word (`type`, a `type_map` value) in the API's spelling, lower
    case (crm-api.md §8.2); None stays None."""
    from .normalize import PHONE_TYPES
    if value is None:
        return None
    if str(value).strip().lower() not in PHONE_TYPES:
        raise err(f"{value!r} is no phoneType; use one of {', '.join(PHONE_TYPES)} (crm-api.md §8.2)", key)
    return str(value).strip().lower()


def _check_value(spec: dict, rule: dict, err: _Err, key: str) -> None:
    """A constant (`value:`) is one scalar; a list field's may also be a list of them."""
    if "value" not in spec:
        return
    value, one = spec["value"], (str, int, float, bool)
    if rule["kind"] == "bool":
        from .normalize import FALSE_WORDS, TRUE_WORDS
        if isinstance(value, bool) or str(value).strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return
        raise err(f"true or false (or yes/no, ja/nee), not {value!r}", f"{key}.value")
    if isinstance(value, bool):  # `value: NO` (Norway) or `value: yes` on a text field
        raise err(f"YAML reads this value as {str(value).lower()}: quote it (e.g. 'NO')", f"{key}.value")
    if isinstance(value, one) or (rule["kind"] in LIST_KINDS and isinstance(value, list)
                                  and all(isinstance(v, one) and not isinstance(v, bool) for v in value)):
        return
    raise err("one value (text, number or true/false)" + (", or a list of them" if rule["kind"] in LIST_KINDS
                                                          else ""), f"{key}.value")


def _is_iri(spec: Any) -> bool:
    """Whether a transform spec (`iri`, or `{iri: {...}}`) is the `iri` transform."""
    return spec == "iri" or isinstance(spec, dict) and "iri" in spec


def _check_transforms(specs: list, rule: dict, err: _Err, key: str) -> None:
    """Build the chain both ways now, so a wrong name or option fails at load with its key path,
    not later at import or export. The field's IRI collection is filled in as mapping does."""
    import polars as pl

    from .transforms import apply_transforms
    context = {"region": pl.lit(None, pl.String)}
    if rule.get("iri"):
        specs = [{"iri": {"collection": rule["iri"], **((s.get("iri") or {}) if isinstance(s, dict) else {})}}
                 if _is_iri(s) else s for s in specs]
    for direction in ("clean", "render"):
        try:
            apply_transforms(pl.col("value"), specs, direction=direction, context=context)
        except TemplateError as e:
            raise err(str(e), key) from None


def _lookup(spec: Any, rule: dict, err: _Err, key: str) -> Lookup | None:
    if spec is None or spec is False:
        return None
    collection = rule.get("iri")
    if not collection:
        raise err("this field holds no relation; a lookup does not apply", key)
    if spec is True:
        spec = {}
    if not isinstance(spec, dict):
        raise err("expected true or a mapping with by/table/create_missing", key)
    for k in spec:
        if k not in _LOOKUP_KEYS:
            raise err(f"unknown key{did_you_mean(k, _LOOKUP_KEYS)}; expected one of {sorted(_LOOKUP_KEYS)}",
                      f"{key}.{k}")
    table = spec.get("table") or {}
    if not isinstance(table, dict):
        raise err("expected a mapping of name -> IRI", f"{key}.table")
    for name, iri in table.items():
        if not (isinstance(iri, str) and iri.startswith(f"/{collection}/")):
            raise err(f"{iri!r} is not an IRI of the form /{collection}/{{id}}", f"{key}.table.{name}")
    if spec.get("create_missing") is True and collection != "tags":
        raise err("create_missing is supported for tags only", f"{key}.create_missing")
    if spec.get("collection", collection) != collection:  # the field decides it (a review: ignored)
        raise err(f"this field's IRIs are /{collection}/{{id}}: its lookup reads {collection}, not "
                  f"{spec['collection']!r}; leave collection out", f"{key}.collection")
    by = spec.get("by", rule.get("lookup_by"))
    known = LOOKUP_PROPERTIES.get(collection)
    if by is None and not table:
        raise err(f"{collection} have no name to look up by default: give by (one of {', '.join(known or ())}) "
                  "or a table", f"{key}.by")
    if by is not None and (not isinstance(by, str) or not by):
        raise err("the record property to match names on, e.g. title", f"{key}.by")
    if by is not None and known is not None and by not in known:  # a review: every row was invalid
        raise err(f"{by!r} is no property of {collection} to look names up by{did_you_mean(by, known)}; "
                  f"one of {', '.join(known)} (crm-api.md §10)", f"{key}.by")
    by = by or "title"
    return Lookup(collection=collection, by=by,
                  table=tuple((str(k).strip().lower(), v) for k, v in table.items()),
                  create_missing=_bool(spec.get("create_missing", False), err, f"{key}.create_missing"))


def _bool(value: Any, err: _Err, key: str) -> bool:
    """A template's true/false (YAML `true`/`false`): anything else, a quoted 'false'
    included (text, which Python takes for true), is refused."""
    if not isinstance(value, bool):
        raise err(f"true or false, not {value!r}", key)
    return value


def _freeze(value: Any) -> Any:
    """Make YAML values hashable so `Template` stays frozen."""
    if isinstance(value, dict):  # keys as text (a replace map's `5: Payment`), so `thaw` finds them
        return tuple((k if isinstance(k, str) else str(k), _freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of `_freeze` for transform specs: tuples of pairs back to dicts."""
    if isinstance(value, tuple) and value and all(isinstance(p, tuple) and len(p) == 2
                                                   and isinstance(p[0], str) for p in value):
        return {k: thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value
