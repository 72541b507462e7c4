"""Request bodies to stored state: parsing, type checks, IRIs, merge patch, constraints.

Stage: sandbox. Input: a JSON body and the resource it is written to. Output: a `state` dict
(writable field -> normalised value) split into a stored `doc` and relation arrays, or an
`HttpError` carrying the 400/415/422 answer of crm-api.md §3 and §5.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..normalize import PHONE_TYPES  # one phoneType enum for client and sandbox (crm-api.md §8.2)
from .schema import (ARRAY_KINDS, Field, Resource, format_datetime, parse_datetime,
                     strip_nulls)
from .wire import CHOICE, NOT_BLANK, NOT_NULL, HttpError, Request, validation_error

POST_PUT_TYPES = ("application/ld+json", "application/json")
PATCH_TYPES = ("application/merge-patch+json",)
"""Accepted request media types per verb (crm-api.md §3 [SANDBOX/AP])."""
_ADDRESS_KEYS = ("street", "postalCode", "city", "country")
Resolver = Callable[[str, list[str], str | None], list[str]]
"""(field name, IRIs, target collection or None) -> canonical IRIs; raises HttpError 400."""


def read_json(req: Request, accepted: tuple[str, ...]) -> dict:
    """Check `Content-Type` and parse the body to a JSON object.

    Raises:
        HttpError: 415 (missing or unsupported content type), 400 `Syntax error` (malformed
            JSON, NaN/Infinity, not UTF-8) or 400 for a body that is not a JSON object.
    """
    media = req.media_type
    if not media:
        raise HttpError(415, 'The "Content-Type" header must exist.')
    if media not in accepted:
        supported = '", "'.join(accepted)
        given = req.headers.get("content-type", "").strip()
        raise HttpError(415, f'The content-type "{given}" is not supported. '
                             f'Supported MIME types are "{supported}".')
    try:
        body = json.loads(req.body.decode("utf-8"), parse_constant=_reject)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "Syntax error") from None
    if not isinstance(body, dict):
        raise HttpError(400, "The input data is misformatted.")
    return body


def _reject(name: str) -> None:
    raise ValueError(name)


def php_type(value: Any) -> str:
    """PHP's name of a JSON value's type, as API Platform's messages print it."""
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "string", type(None): "null"}.get(type(value), "array")


def _type_error(name: str, expected: str, value: Any) -> HttpError:
    return HttpError(400, f'The type of the "{name}" attribute must be "{expected}", '
                          f'"{php_type(value)}" given.')


def denormalize(res: Resource, body: dict, resolve: Resolver) -> dict:
    """Type-check and normalise the writable fields present in `body`, in body order.

    Read-only, JSON-LD (`@id`...), `id` and unknown keys are ignored (crm-api.md §8.1 notes).
    Raises HttpError 400 with API Platform's texts (§5.1).
    """
    out: dict[str, Any] = {}
    for key, value in body.items():
        f = res.field(key)
        if f is None or f.read_only or key == "organizationId":
            continue
        out[key] = _convert(f, value, resolve)
    return out


def _convert(f: Field, value: Any, resolve: Resolver) -> Any:
    kind = f.kind
    if value is None:
        return [] if kind in ARRAY_KINDS else None
    if kind == "any":
        return value
    if kind in ("string", "bool", "int"):
        ok = {"string": str, "bool": bool, "int": int}[kind]
        if not isinstance(value, ok) or (kind == "int" and isinstance(value, bool)):
            raise _type_error(f.name, kind, value)
        return value
    if kind == "datetime":
        if not isinstance(value, str) or not value.strip():
            raise HttpError(400, "The data is either not an string, an empty string, or null; "
                                 "you should pass a string that can be parsed with the passed "
                                 "format or a valid DateTime string.")
        moment = parse_datetime(value)
        if moment is None:
            raise HttpError(400, f"Failed to parse time string ({value}).")
        return format_datetime(moment)
    if kind == "iri":
        return resolve(f.name, [_iri_value(f.name, value)], f.target)[0]
    if kind == "iris":
        items = list(value.values()) if isinstance(value, dict) else value
        if not isinstance(items, list):
            raise _type_error(f.name, "array", value)
        return resolve(f.name, list(dict.fromkeys(_iri_value(f.name, v) for v in items)), f.target)
    if kind == "address":
        return _embedded(f.name, value, _ADDRESS_KEYS, keep_nulls=True)
    if not isinstance(value, list):
        raise _type_error(f.name, "array", value)
    keys = ("email",) if kind == "emails" else ("phoneNumber", "phoneType")
    return [_embedded(f.name, item, keys) for item in value]


def _iri_value(name: str, value: Any) -> str:
    if isinstance(value, dict):
        raise HttpError(400, f'Nested documents for attribute "{name}" are not allowed. '
                             "Use IRIs instead.")
    if not isinstance(value, str):
        raise HttpError(400, f'Expected IRI or nested document for attribute "{name}", '
                             f'"{php_type(value)}" given.')
    return value


def _embedded(name: str, value: Any, keys: tuple[str, ...], keep_nulls: bool = False) -> dict:
    if not isinstance(value, dict):
        raise _type_error(name, "array", value)
    out = {}
    for k in keys:
        if k in value:
            if value[k] is not None and not isinstance(value[k], str):
                raise _type_error(k, "string", value[k])
            if value[k] is not None or keep_nulls:
                out[k] = value[k]
    return out


def merge(res: Resource, state: dict, patch: dict) -> dict:
    """RFC 7396 merge of a denormalised `patch` into `state`: null clears, arrays are
    replaced, the embedded `address` is merged key by key (crm-api.md §8.1, §8.2)."""
    out = dict(state)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif res.field(key).kind == "address" and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def validate(res: Resource, state: dict) -> None:
    """Constraints checked on the final state (crm-api.md §5.2 [SANDBOX]).

    Raises:
        HttpError: 422 with violations in field order: NotBlank, NotNull, and the
            `phoneType` Choice (`phoneNumbers[i].phoneType`).
    """
    found: list[tuple[str, tuple[str, str]]] = []
    for f in res.fields:
        value = state.get(f.name)
        if f.name in res.not_blank and value in (None, ""):
            found.append((f.name, NOT_BLANK))
        elif f.name in res.not_null and value is None:
            found.append((f.name, NOT_NULL))
        if f.kind == "phones":
            found += [(f"{f.name}[{i}].phoneType", CHOICE) for i, p in enumerate(value or ())
                      if p.get("phoneType") is not None and p["phoneType"] not in PHONE_TYPES]
    if found:
        raise validation_error(found)


def split(res: Resource, state: dict) -> tuple[dict, dict[str, list[str]]]:
    """(stored doc without nulls/empty values, relation arrays) of a state."""
    doc, rels = {}, {}
    for f in res.fields:
        value = state.get(f.name)
        if f.relation:
            rels[f.name] = list(value or [])
        elif value is not None and value != [] and f.name != "organizationId":
            value = strip_nulls(value)
            if value != {} or f.kind != "address":
                doc[f.name] = value
    return doc, rels
