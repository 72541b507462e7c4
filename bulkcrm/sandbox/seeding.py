"""Seed data straight into the store (stage: sandbox; input: API-shaped dicts or a JSON/YAML
file; output: stored records). Nothing is validated against the API rules and no request is
logged: seeds describe what "already exists" in the CRM, e.g. `cases/*.existing.json`.
"""
from __future__ import annotations

import gc
import json
import uuid
from pathlib import Path
from typing import Any

from .schema import NOTE_DEFAULTS, NOTE_IRI, RESOURCES, format_datetime, id_of, now_iso, parse_datetime, strip_nulls
from .store import Record, Store

SEED_KEYS = ("users", "tags", "segments", "note_categories", "organizations", "notes", "people")
"""Accepted top-level keys of a seed, in load order."""


def load_seed_file(path: str | Path) -> dict:
    """Read a seed from JSON (`.json`) or YAML (anything else). A single organization object
    (like `BR-07.existing.json`) is read as `{"organizations": [it]}`.

    Raises:
        ValueError: the file is not JSON/YAML, or not a mapping (the message names the file).
        OSError: the file cannot be read."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).lower().endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise ValueError(f"{path}: not a JSON/YAML seed ({str(e).splitlines()[0]})") from None
    if isinstance(data, dict) and data.get("@type") == "Organization":
        data = {"organizations": [data]}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a seed is a mapping with keys {', '.join(SEED_KEYS)}")
    return data


def seed_records(store: Store, data: dict, tenant: str) -> dict[str, int]:
    """Store every item of `data` for `tenant` in one transaction; returns counts per key.

    Raises:
        ValueError: unknown top-level key, an item that is not an object, a note without an
            organization, an unparsable date.
    """
    unknown = set(data) - set(SEED_KEYS)
    if unknown:
        raise ValueError(f"unknown seed keys {sorted(unknown)}; expected {', '.join(SEED_KEYS)}")
    items, counts, now = [], {}, now_iso()
    enabled = gc.isenabled()
    gc.disable()                  # 100k small dicts: the cyclic GC would double the time
    try:
        for key in SEED_KEYS:
            rows = data.get(key) or []
            counts[key] = len(rows)
            items += [_record(key, item, tenant, now) for item in rows]
        store.save_many([(rec, rels) for rec, rels, _ in items],
                        replace=[(rec.coll, rec.id) for rec, _, fixed in items if fixed])
        del items
    finally:
        if enabled:
            gc.enable()
    return counts


def _record(coll: str, item: Any, tenant: str, now: str) -> tuple[Record, dict, bool]:
    """(record, relation IRIs, whether the seed fixed the id)."""
    if not isinstance(item, dict):
        raise ValueError(f"{coll}: seed items are objects, got {item!r}")
    res, at_id = RESOURCES[coll], item.get("@id")
    rid = item.get("id") or (id_of(at_id) if isinstance(at_id, str) else None)
    fixed, rid = rid is not None, rid or str(uuid.uuid4())
    parent = None
    if coll == "notes":
        note_iri = NOTE_IRI.match(at_id) if isinstance(at_id, str) else None
        org = item.get("organization") or (note_iri.group(1) if note_iri else None)
        if not isinstance(org, str):
            raise ValueError(f"notes: seed note {rid} needs an 'organization' IRI")
        parent = id_of(org)
    doc: dict[str, Any] = {}
    rels: dict[str, list[str]] = {}
    for name, value in item.items():
        f = res.field(name)
        if f is None or value is None or name == "organizationId":
            continue
        if f.relation:
            rels[name] = [v if v.startswith("/") else f"/{f.target}/{v}" for v in value]
        elif f.kind == "datetime":
            moment = parse_datetime(value) if isinstance(value, str) else None
            if moment is None:
                raise ValueError(f"{coll} {rid}: {name} {value!r} is not an ISO 8601 date")
            doc[name] = format_datetime(moment)
        else:
            doc[name] = strip_nulls(value) if isinstance(value, (dict, list)) else value
    if res.timestamps or coll == "notes":
        doc.setdefault("createdAt", now)
    if res.timestamps:
        doc.setdefault("updatedAt", doc["createdAt"])
    if coll == "notes":
        for name, value in NOTE_DEFAULTS.items():
            doc.setdefault(name, value)
    if coll != "people":
        rels = {f.name: rels.get(f.name, []) for f in res.fields if f.relation}
    return Record(coll, str(rid), tenant, parent, doc), rels, fixed
