"""Routes of the sandbox CRM API: plain functions from `Request` to `Response`.

Stage: sandbox. Input: an authenticated `Request` (tenant and key user already set by the
gateway). Output: a `Response` with the JSON-LD body, status and headers of crm-api.md §3-§10.

Order of checks per request, as API Platform runs them: route (404) -> verb (405) ->
`Accept` (406) -> read the record (404) -> tenant (403) -> content type (415) -> body
(400) -> constraints (422) -> write.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from urllib.parse import unquote

from .query import SPECS, collection, page_of, parse_query, conditions
from .schema import IRI_ROUTE, NOTE_DEFAULTS, NOTE_IRI, RESOURCES, iri, now_iso
from .store import Record, Store
from .validation import (PATCH_TYPES, POST_PUT_TYPES, denormalize, merge, read_json, split,
                         validate)
from .wire import HttpError, Request, Response, json_response, problem

_COLLS = "|".join(c for c in RESOURCES if c != "notes")  # notes live under an organization
_ROUTES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^/organizations/([^/]+)/notes/([^/]+?)(?:\.jsonld)?$"), "note"),
    (re.compile(r"^/organizations/([^/]+)/notes(?:\.jsonld)?$"), "notes"),
    (re.compile(rf"^/({_COLLS})/([^/]+?)(?:\.jsonld)?$"), "item"),
    (re.compile(rf"^/({_COLLS})(?:\.jsonld)?$"), "collection"),
]
_ACCEPTABLE = ("*/*", "application/*", "application/ld+json", "application/json",
               "application/problem+json")


class App:
    """The CRM API over a `Store`. `handle(request)` never raises: errors become problem
    documents (crm-api.md §5.2)."""

    def __init__(self, store: Store):
        self.store = store

    def handle(self, req: Request) -> Response:
        try:
            return self._dispatch(req)
        except HttpError as err:
            return problem(err)

    # -- routing -----------------------------------------------------------------------------

    def _dispatch(self, req: Request) -> Response:
        for pattern, kind in _ROUTES:
            m = pattern.match(req.path)
            if m:
                break
        else:
            raise HttpError(404)
        args = [unquote(g) for g in m.groups()]
        if kind in ("note", "notes"):
            coll, methods = "notes", (RESOURCES["notes"].item_methods if kind == "note"
                                      else RESOURCES["notes"].collection_methods)
        else:
            coll = args.pop(0)
            res = RESOURCES[coll]
            methods = res.item_methods if kind == "item" else res.collection_methods
        method = "GET" if req.method == "HEAD" else req.method
        if method not in methods:
            raise HttpError(405, f'No route found for "{req.method} {req.path}": Method Not '
                                 f'Allowed (Allow: {", ".join(methods)})',
                            headers=[("Allow", ", ".join(methods))])
        _check_accept(req)
        if kind == "collection":
            return self.list_items(req, coll, f"/{coll}") if method == "GET" else self.create(req, coll)
        if kind == "notes":
            org_id = args[0]
            if method == "GET":
                return self.list_items(req, "notes", f"/organizations/{org_id}/notes", parent=org_id)
            self._load(req, "organizations", org_id)
            return self.create(req, "notes", parent=org_id)
        if kind == "note":
            self._load(req, "organizations", args[0])
            rec = self._load(req, "notes", args[1], parent=args[0])
        else:
            rec = self._load(req, coll, args[0])
        handler: Callable[[Request, Record], Response] = {
            "GET": self.get, "PUT": self.replace, "PATCH": self.patch, "DELETE": self.delete,
        }[method]
        return handler(req, rec)

    def _load(self, req: Request, coll: str, rid: str, parent: str | None = None) -> Record:
        """The record, else 404; another tenant's record -> 403 (crm-api.md §2)."""
        rec = self.store.get(coll, rid)
        if rec is None or (parent is not None and rec.parent != parent):
            raise HttpError(404)
        if rec.tenant != req.tenant:
            raise HttpError(403)
        return rec

    # -- handlers ----------------------------------------------------------------------------

    def list_items(self, req: Request, coll: str, path: str, parent: str | None = None) -> Response:
        """GET a collection: filters, order, pagination (crm-api.md §6, §7)."""
        spec, params = SPECS[coll], parse_query(req.query)
        page = page_of(params)
        where, order, join_owner = conditions(coll, params, req.tenant)
        if parent is not None:
            where.insert(0, ("r.parent = ?", [parent]))
        total, records = self.store.select(coll, req.tenant, where, order, page.size,
                                           page.offset, join_owner)
        if spec.idx_view and params.get("view") == "idx":
            members: list = [r.id for r in records]
        else:
            members = self.store.render(records)
        doc = collection(path, RESOURCES[coll].context, req.query, params, page, total,
                         members, spec)
        return json_response(200, doc)

    def get(self, req: Request, rec: Record) -> Response:
        return json_response(200, self.store.render([rec], context=True)[0])

    def create(self, req: Request, coll: str, parent: str | None = None) -> Response:
        """POST: 201 with `Location` and `Content-Location` (crm-api.md §3)."""
        res = RESOURCES[coll]
        data = denormalize(res, read_json(req, POST_PUT_TYPES), self._resolver(req.tenant))
        state = {**self._defaults(coll, req), **data}
        now = now_iso()
        if res.timestamps:
            state.update(createdAt=now, updatedAt=now)
        if coll == "notes" and not state.get("createdAt"):
            state["createdAt"] = now
        validate(res, state)
        doc, rels = split(res, state)
        rec = Record(coll, str(uuid.uuid4()), req.tenant, parent, doc)
        self.store.save(rec, rels, new=True)
        location = iri(coll, rec.id, parent)
        return json_response(201, self.store.render([rec], context=True)[0],
                             headers=[("Location", location),
                                      ("Content-Location", f"{location}.jsonld")])

    def replace(self, req: Request, rec: Record) -> Response:
        """PUT: writable fields not sent are reset (crm-api.md §8.3 PUT semantics)."""
        res = RESOURCES[rec.coll]
        body = read_json(req, POST_PUT_TYPES)
        own = iri(rec.coll, rec.id, rec.parent)
        if ("@id" in body and body["@id"] != own) or ("id" in body and body["id"] != rec.id):
            raise HttpError(400, f'The identifier in the body does not match the URL "{own}".')
        data = denormalize(res, body, self._resolver(req.tenant))
        kept = {f.name: rec.doc[f.name] for f in res.fields if f.read_only and f.name in rec.doc}
        state = {**self._defaults(rec.coll, req), **kept, **data}
        if rec.coll == "notes" and not state.get("createdAt"):
            state["createdAt"] = rec.doc.get("createdAt") or now_iso()
        return self._update(req, rec, state)

    def patch(self, req: Request, rec: Record) -> Response:
        """PATCH: RFC 7396 merge patch, validated on the merged result (crm-api.md §8.3)."""
        res = RESOURCES[rec.coll]
        data = denormalize(res, read_json(req, PATCH_TYPES), self._resolver(req.tenant))
        current = {**rec.doc, **self.store.relations(rec.coll, [rec.id])[rec.id]}
        return self._update(req, rec, merge(res, current, data))

    def delete(self, req: Request, rec: Record) -> Response:
        self.store.delete(rec.coll, rec.id)
        return Response(204)

    def _update(self, req: Request, rec: Record, state: dict) -> Response:
        res = RESOURCES[rec.coll]
        if res.timestamps:
            state["updatedAt"] = now_iso()
        validate(res, state)
        doc, rels = split(res, state)
        new = Record(rec.coll, rec.id, rec.tenant, rec.parent, doc)
        self.store.save(new, rels, new=False)
        return json_response(200, self.store.render([new], context=True)[0])

    def _defaults(self, coll: str, req: Request) -> dict:
        """Values a new or replaced note starts with (crm-api.md §9.1 [SANDBOX])."""
        if coll != "notes":
            return {}
        user = self.store.first_user(req.tenant)  # the key's user (crm-api.md §9.1 [SANDBOX])
        return {**NOTE_DEFAULTS, "author": f"/users/{user}" if user else None}

    def _resolver(self, tenant: str | None):
        """Check relation IRIs: route known (`Invalid IRI`), right collection and existing in
        the tenant (`Item not found`), crm-api.md §5.1. Unchecked targets pass as given."""
        def resolve(name: str, values: list[str], target: str | None) -> list[str]:
            if target is None:
                return values
            ids = []
            for value in values:
                m = IRI_ROUTE.match(value)
                if m is None and not NOTE_IRI.match(value):
                    raise HttpError(400, f'Invalid IRI "{value}".')
                if m is None or m.group(1) != target:
                    raise HttpError(400, f'Item not found for "{value}".')
                ids.append(m.group(2))
            found = self.store.existing(target, tenant or "", ids)
            for value, rid in zip(values, ids):
                if rid not in found:
                    raise HttpError(400, f'Item not found for "{value}".')
            return [f"/{target}/{rid}" for rid in ids]
        return resolve


def _check_accept(req: Request) -> None:
    """406 when `Accept` names no JSON(-LD) type (crm-api.md §3 [AP])."""
    accept = req.headers.get("accept")
    if not accept:
        return
    ranges = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    if not any(r in _ACCEPTABLE for r in ranges):
        raise HttpError(406, f'Requested format "{ranges[0]}" is not supported. Supported MIME '
                             'types are "application/ld+json", "application/json".')
