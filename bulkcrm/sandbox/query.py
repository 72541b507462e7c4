"""Query strings, filters and collection documents (crm-api.md §6, §7, §8.3, §9.2, §10).

Stage: sandbox. Input: the raw query string of a list request. Output: SQL conditions for
`Store.select`, the page window, and the Hydra `view` / `search` parts of the collection.
Query strings are parsed the way PHP does (`a[]=x&a[]=y` -> list, `order[title.sort]=asc` ->
map), and page links are rebuilt the way API Platform does (`http_build_query`, RFC 3986).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from .wire import HttpError
from .schema import id_of, identifier_keys, parse_datetime

DEFAULT_ITEMS, MAX_ITEMS = 15, 30
"""Page size default and ceiling (crm-api.md §6)."""
_KEY = re.compile(r"^([^\[]+)((?:\[[^\]]*\])*)$")
_INT = re.compile(r"^\s*([+-]?\d+)")


def parse_query(raw: str) -> dict[str, Any]:
    """PHP-style nested parameters: `{"identifiers": {0: "a", 1: "b"}, "order": {"title.sort":
    "asc"}, "q": "x"}`. Later scalars win; `[]` appends; malformed keys stay flat."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        m = _KEY.match(key)
        if not m:
            out[key] = value
            continue
        path = [m.group(1)] + re.findall(r"\[([^\]]*)\]", m.group(2))
        node = out
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if part == "" and i > 0:
                part = max((k for k in node if isinstance(k, int)), default=-1) + 1
            elif i > 0 and part.isdigit():
                part = int(part)
            if last:
                node[part] = value
            else:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
    return out


def build_query(params: dict[str, Any]) -> str:
    """PHP `http_build_query(..., PHP_QUERY_RFC3986)`: `identifiers%5B0%5D=a`."""
    pairs: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}[{k}]", v)
        else:
            pairs.append(f"{quote(prefix, safe='')}={quote(str(value), safe='')}")

    for key, value in params.items():
        walk(key, value)
    return "&".join(pairs)


def values(params: dict[str, Any], name: str) -> list[str] | None:
    """Values of an exact filter `name` / `name[]` (None when absent or malformed, §7)."""
    value = params.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        found = [v for k, v in value.items() if isinstance(k, int) and isinstance(v, str)]
        return found or None
    return None


def php_int(value: Any, default: int) -> int:
    """PHP `(int)` cast of a query value: leading integer, else 0; `default` when absent."""
    if value is None:
        return default
    m = _INT.match(value) if isinstance(value, str) else None
    return int(m.group(1)) if m else 0


@dataclass(frozen=True)
class ListSpec:
    """Filters of one collection.

    Attributes:
        search: exact filters, param -> (kind, target). Kinds: `col` (column, exact), `relcol`
            (column holding an id, e.g. `id` or a note's `parent`; values may be IRIs), `link` /
            `rellink` (links table field), `ident` (identifiers), `q`.
        exists / dates / booleans: property -> column.
        order: property -> SQL expression (`u.` = the owner user).
        default_order: ORDER BY terms when no valid `order[...]` is given.
    """

    search: dict[str, tuple[str, str]] = field(default_factory=dict)
    exists: dict[str, str] = field(default_factory=dict)
    dates: dict[str, str] = field(default_factory=dict)
    booleans: dict[str, str] = field(default_factory=dict)
    order: dict[str, str] = field(default_factory=dict)
    default_order: tuple[str, ...] = ()
    idx_view: bool = False

    def variables(self) -> list[tuple[str, str | None]]:
        """(template variable, property) pairs of the `search` IriTemplate."""
        out: list[tuple[str, str | None]] = []
        for name, (kind, _) in self.search.items():
            prop = None if kind == "q" else name
            out += [(name, prop)] + ([] if kind == "q" else [(f"{name}[]", prop)])
        out += [(f"exists[{p}]", p) for p in self.exists]
        out += [(f"{p}[{op}]", p) for p in self.dates for op in _DATE_OPS]
        out += [(p, p) for p in self.booleans]
        out += [(f"order[{p}]", p) for p in self.order]
        return out


_DATE_OPS = {"before": "<=", "strictly_before": "<", "after": ">=", "strictly_after": ">"}
_ORG_LIKE = {"owner.id": ("relcol", "owner"), "emailAddresses.email": ("link", "email"),
             "tags.id": ("rellink", "tags"), "segments.uuid": ("rellink", "segments")}
SPECS: dict[str, ListSpec] = {
    "organizations": ListSpec(
        search={"q": ("q", ""), **_ORG_LIKE, "identifiers": ("ident", "")},
        exists={"archivedAt": "r.archived_ts"}, dates={"createdAt": "r.created_ts"},
        order={"title.sort": "r.sort_key", "owner.lastName": "u.family_name"}),
    "people": ListSpec(
        search={"q": ("q", ""), **_ORG_LIKE}, exists={"archivedAt": "r.archived_ts"},
        dates={"createdAt": "r.created_ts"},
        order={"familyName": "r.sort_key", "createdAt": "r.created_ts"}, idx_view=True),
    "notes": ListSpec(
        search={"q": ("q", ""), "organization": ("relcol", "parent"), "category.id": ("relcol", "category"),
                "author.id": ("relcol", "owner")},
        booleans={"flagged": "r.flagged"}, dates={"createdAt": "r.created_ts"},
        order={"flagged": "r.flagged", "createdAt": "r.created_ts"},
        default_order=("r.created_ts", "r.id")),
    "tags": ListSpec(search={"id": ("relcol", "id")}),
    "segments": ListSpec(),
    "users": ListSpec(search={"email": ("col", "r.email")}),
    "note_categories": ListSpec(search={"title": ("col", "r.title")}),
}
"""Filters per collection: crm-api.md §8.3 (organizations), §9.2 (notes), §10 (others)."""


def conditions(coll: str, params: dict[str, Any], tenant: str) -> tuple[list, list[str], bool]:
    """SQL for the filters in `params`: (where [(sql, params)], order terms, join owner).
    Malformed and unknown parameters are ignored (crm-api.md §7)."""
    spec = SPECS[coll]
    where: list[tuple[str, list]] = []
    for name, (kind, target) in spec.search.items():
        vals = values(params, name)
        if vals is None:
            continue
        if kind == "q":
            if vals[0].strip():
                where.append(("instr(r.search, ?) > 0", [vals[0].strip().casefold()]))
            continue
        if kind in ("relcol", "rellink"):
            vals = [id_of(v) for v in vals]
        marks = ", ".join("?" * len(vals))
        if kind == "col":
            where.append((f"{target} IN ({marks})", vals))
        elif kind == "relcol":
            where.append((f"r.{target} IN ({marks})", vals))
        elif kind in ("link", "rellink"):
            where.append((f"r.id IN (SELECT id FROM links WHERE coll = ? AND field = ? "
                          f"AND value IN ({marks}))", [coll, target, *vals]))
        elif kind == "ident":
            keys = list(dict.fromkeys(k for v in vals for k in identifier_keys(v)))
            where.append((f"r.id IN (SELECT id FROM idents WHERE tenant = ? AND ident IN "
                          f"({', '.join('?' * len(keys))}))", [tenant, *keys]))
    exists = params.get("exists") if isinstance(params.get("exists"), dict) else {}
    for prop, column in spec.exists.items():
        flag = _boolean(exists.get(prop))
        if flag is not None:
            where.append((f"{column} IS {'NOT ' if flag else ''}NULL", []))
    for prop, column in spec.booleans.items():
        flag = _boolean(params.get(prop))
        if flag is not None:
            where.append((f"{column} = ?", [int(flag)]))
    for prop, column in spec.dates.items():
        ops = params.get(prop) if isinstance(params.get(prop), dict) else {}
        for op, sql_op in _DATE_OPS.items():
            moment = parse_datetime(ops[op]) if isinstance(ops.get(op), str) else None
            if moment:
                where.append((f"{column} {sql_op} ?", [moment.timestamp()]))
    order: list[str] = []
    requested = params.get("order") if isinstance(params.get("order"), dict) else {}
    for prop, direction in requested.items():
        if prop in spec.order and isinstance(direction, str) and direction.lower() in ("asc", "desc"):
            order.append(f"{spec.order[prop]} {direction.upper()}")
    join_owner = any(o.startswith("u.") for o in order)
    return where, order or list(spec.default_order), join_owner


def _boolean(value: Any) -> bool | None:
    return {"true": True, "1": True, "false": False, "0": False}.get(value) \
        if isinstance(value, str) else None


@dataclass(frozen=True)
class Page:
    """Requested page (1-based) and page size (records), validated per crm-api.md §6."""

    page: int
    size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def page_of(params: dict[str, Any]) -> Page:
    """Read `page` / `itemsPerPage`. Raises HttpError 400 for page < 1 or a negative size."""
    page = php_int(params.get("page"), 1)
    size = php_int(params.get("itemsPerPage"), DEFAULT_ITEMS)
    if page < 1:
        raise HttpError(400, "Page should not be less than 1")
    if size < 0:
        raise HttpError(400, "Limit should not be less than 0")
    if size == 0 and page > 1:
        raise HttpError(400, "Page should not be greater than 1 if limit is equal to 0")
    return Page(page, min(size, MAX_ITEMS))


def collection(path: str, context: str, raw_query: str, params: dict[str, Any], page: Page,
               total: int, members: list, spec: ListSpec) -> dict:
    """The Hydra collection document (crm-api.md §6): member, totalItems, view, search."""
    doc: dict[str, Any] = {"@context": context, "@id": path, "@type": "Collection",
                           "totalItems": total, "member": members}
    last = max(1, math.ceil(total / page.size)) if page.size > 0 else 1
    paginated = last > 1
    if paginated or raw_query:
        rest = {k: v for k, v in params.items() if k != "page"}

        def link(n: int | None) -> str:
            query = build_query({**rest, **({"page": n} if n else {})})
            return f"{path}?{query}" if query else path

        view: dict[str, Any] = {"@id": link(page.page if paginated else None),
                                "@type": "PartialCollectionView"}
        if paginated:
            view.update(first=link(1), last=link(last))
            if page.page > 1:
                view["previous"] = link(page.page - 1)
            if page.page < last:
                view["next"] = link(page.page + 1)
        doc["view"] = view
    variables = [("page", None), ("itemsPerPage", None), *spec.variables()]
    doc["search"] = {
        "@type": "IriTemplate",
        "template": f"{path}{{?{','.join(v for v, _ in variables)}}}",
        "variableRepresentation": "BasicRepresentation",
        "mapping": [{"@type": "IriTemplateMapping", "variable": v, "property": p,
                     "required": False} for v, p in variables],
    }
    return doc
