"""SQLite storage of the sandbox (stage: sandbox; input: validated records; output: rows/API dicts).

Tables:
- `records(seq, coll, id, tenant, parent, doc, <schema.COLUMNS>)`: one row per record; `doc` is
  the JSON of the stored fields (API names, nulls dropped, relation arrays kept apart); `parent`
  is a note's organization id. Default list order is `seq` (insertion order).
- `links(coll, id, field, value, pos)`: relation ids (tags, segments, an organization's people,
  which is also read backwards as a person's organizations: one table keeps both sides
  consistent, crm-api.md §10.5) and exact e-mails for the `emailAddresses.email` filter.
- `idents(tenant, ident, id)`: normalised organization identifiers (`identifiers` filter,
  crm-api.md §8.3), an indexed lookup.

One connection guarded by a lock (the server is threaded); file databases use WAL, and every
write request is one committed transaction, so a killed client or sandbox never leaves a torn
record behind.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .schema import COLUMNS, RESOURCES, derive, iri, link_rows, record_identifiers, render

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, coll TEXT NOT NULL, id TEXT NOT NULL,
  tenant TEXT NOT NULL, parent TEXT, doc TEXT NOT NULL, {", ".join(COLUMNS)},
  UNIQUE (coll, id));
CREATE INDEX IF NOT EXISTS records_list ON records (coll, tenant, seq);
CREATE INDEX IF NOT EXISTS records_parent ON records (parent, created_ts) WHERE parent IS NOT NULL;
CREATE TABLE IF NOT EXISTS links (coll TEXT NOT NULL, id TEXT NOT NULL, field TEXT NOT NULL,
  value TEXT NOT NULL, pos INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS links_by_id ON links (coll, id, field);
CREATE INDEX IF NOT EXISTS links_by_value ON links (coll, field, value);
CREATE TABLE IF NOT EXISTS idents (tenant TEXT NOT NULL, ident TEXT NOT NULL, id TEXT NOT NULL,
  PRIMARY KEY (tenant, ident, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idents_by_id ON idents (id);
"""
_INSERT = (f"INSERT INTO records (coll, id, tenant, parent, doc, {', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' * (5 + len(COLUMNS)))})")
_UPDATE = (f"UPDATE records SET doc = ?, {', '.join(c + ' = ?' for c in COLUMNS)} "
           "WHERE coll = ? AND id = ?")
_PERSON_ORG = ("INSERT INTO links SELECT 'organizations', ?, 'people', ?, "
               "COALESCE(MAX(pos) + 1, 0) FROM links "
               "WHERE coll = 'organizations' AND id = ? AND field = 'people'")


@dataclass(frozen=True)
class Record:
    """One stored record: `doc` holds stored fields (dict), `parent` a note's organization id."""

    coll: str
    id: str
    tenant: str
    parent: str | None
    doc: dict


class Store:
    """SQLite store of every tenant's records.

    Args:
        db_path: None for an in-memory database, else a file path (created when missing; a
            second process opening the same file sees committed data).

    Raises:
        ValueError: the file cannot be opened or is not a SQLite database.
    """

    def __init__(self, db_path: str | Path | None = None):
        self.path = str(db_path) if db_path else ":memory:"
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                         timeout=30.0)
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as e:  # not a database, a folder that is not there, no permission
            raise ValueError(f"cannot use {self.path} as the sandbox's SQLite database ({e})") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def record_count(self, *, besides: tuple[str, ...] = ()) -> int:
        """Records of every tenant and collection but the collections `besides`."""
        marks = ", ".join("?" * len(besides))
        with self._lock:
            return self._conn.execute(f"SELECT count(*) FROM records WHERE coll NOT IN ({marks})",
                                      besides).fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Serialise a write: BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def clear(self) -> None:
        """Delete every record of every tenant."""
        with self.transaction() as db:
            for table in ("records", "links", "idents"):
                db.execute(f"DELETE FROM {table}")

    # -- reads ------------------------------------------------------------------------------

    def get(self, coll: str, rid: str) -> Record | None:
        rows = self._query("SELECT tenant, parent, doc FROM records WHERE coll = ? AND id = ?",
                           (coll, rid))
        return Record(coll, rid, rows[0][0], rows[0][1], json.loads(rows[0][2])) if rows else None

    def existing(self, coll: str, tenant: str | None, ids: Iterable[str]) -> set[str]:
        """The subset of `ids` that exist in `coll` for `tenant` (None: for any tenant)."""
        ids = list(dict.fromkeys(ids))
        found: set[str] = set()
        by_tenant = "" if tenant is None else " AND tenant = ?"
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            found |= {r[0] for r in self._query(
                f"SELECT id FROM records WHERE coll = ?{by_tenant} AND id IN "
                f"({', '.join('?' * len(chunk))})", (coll, *([] if tenant is None else [tenant]), *chunk))}
        return found

    def first_user(self, tenant: str) -> str | None:
        rows = self._query("SELECT id FROM records WHERE coll = 'users' AND tenant = ? "
                           "ORDER BY seq LIMIT 1", (tenant,))
        return rows[0][0] if rows else None

    def relations(self, coll: str, ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """Relation IRIs of each record: {id: {field: [iri, ...]}} (empty for none)."""
        res = RESOURCES[coll]
        fields = {f.name: f.target for f in res.fields if f.relation}
        out: dict[str, dict[str, list[str]]] = {i: {} for i in ids}
        if not fields or not ids:
            return out
        marks = ", ".join("?" * len(ids))
        rows = self._query(f"SELECT id, field, value FROM links WHERE coll = ? AND id IN ({marks})"
                           f" AND field != 'email' ORDER BY id, field, pos", (coll, *ids))
        if coll == "people":
            rows += [(p, "organizations", o) for o, p in self._query(
                f"SELECT id, value FROM links WHERE coll = 'organizations' AND field = 'people' "
                f"AND value IN ({marks}) ORDER BY rowid", tuple(ids))]
        for rid, field, value in rows:
            if field in fields:
                out[rid].setdefault(field, []).append(iri(fields[field], value))
        return out

    def render(self, records: Sequence[Record], context: bool = False) -> list[dict]:
        """API shape of `records` (crm-api.md §1), with relation arrays filled in."""
        if not records:
            return []
        rels = self.relations(records[0].coll, [r.id for r in records])
        return [render(r.coll, r.id, r.doc, rels[r.id], r.parent, context) for r in records]

    def select(self, coll: str, tenant: str, where: Sequence[tuple[str, Sequence]] = (),
               order: Sequence[str] = (), limit: int = 30, offset: int = 0,
               join_owner: bool = False) -> tuple[int, list[Record]]:
        """Count and fetch one page.

        Args:
            where: SQL fragments over alias `r` (records) with their parameters, AND-ed.
            order: ORDER BY terms over `r` (and `u`, the owner user, when `join_owner`);
                `r.seq` is always the last tie-breaker.
            limit, offset: page window (records).
        Returns:
            (total matching records, the page's records)
        """
        cond = " AND ".join(["r.coll = ?", "r.tenant = ?", *(w for w, _ in where)])
        params = [coll, tenant, *(p for _, ps in where for p in ps)]
        total = self._query(f"SELECT COUNT(*) FROM records r WHERE {cond}", params)[0][0]
        if limit <= 0 or offset >= total:
            return total, []
        join = "LEFT JOIN records u ON u.coll = 'users' AND u.id = r.owner" if join_owner else ""
        rows = self._query(
            f"SELECT r.id, r.tenant, r.parent, r.doc FROM records r {join} WHERE {cond} "
            f"ORDER BY {', '.join([*order, 'r.seq'])} LIMIT ? OFFSET ?", [*params, limit, offset])
        return total, [Record(coll, i, t, p, json.loads(d)) for i, t, p, d in rows]

    def all(self, coll: str, tenant: str | None = None) -> list[dict]:
        """Every record of `coll` (of `tenant`, or of all tenants when None), API shape,
        insertion order (notes: createdAt, id)."""
        order = "created_ts, id" if coll == "notes" else "seq"
        sql = "SELECT id, tenant, parent, doc FROM records WHERE coll = ?"
        params: list = [coll]
        if tenant is not None:
            sql, params = sql + " AND tenant = ?", [coll, tenant]
        rows = self._query(f"{sql} ORDER BY {order}", params)
        records = [Record(coll, i, t, p, json.loads(d)) for i, t, p, d in rows]
        return [x for i in range(0, len(records), 500)
                for x in self.render(records[i:i + 500])]

    def count(self, coll: str, tenant: str | None = None) -> int:
        if tenant is None:
            return self._query("SELECT COUNT(*) FROM records WHERE coll = ?", (coll,))[0][0]
        return self._query("SELECT COUNT(*) FROM records WHERE coll = ? AND tenant = ?",
                           (coll, tenant))[0][0]

    # -- writes ------------------------------------------------------------------------------

    def save(self, record: Record, rels: dict[str, list[str]], new: bool) -> None:
        """Insert (`new`) or replace one record with its relations, in one transaction."""
        with self.transaction() as db:
            self._write(db, [(record, rels)], new)

    def save_many(self, items: Sequence[tuple[Record, dict[str, list[str]]]],
                  replace: Sequence[tuple[str, str]] = ()) -> None:
        """Insert many records (seeding) in one transaction; the (coll, id) pairs in
        `replace` are deleted first when they exist."""
        with self.transaction() as db:
            by_coll: dict[str, list[str]] = {}
            for coll, rid in replace:
                by_coll.setdefault(coll, []).append(rid)
            for coll, ids in by_coll.items():
                for rid in self.existing(coll, None, ids):  # same connection: the lock is re-entrant
                    self._remove(db, coll, rid)
            self._write(db, items, True)

    def delete(self, coll: str, rid: str) -> None:
        """Hard delete with cascade: an organization's notes and links, a person's or a
        segment's memberships (crm-api.md §8.3 DELETE)."""
        with self.transaction() as db:
            self._remove(db, coll, rid)

    def _write(self, db: sqlite3.Connection, items: Sequence[tuple[Record, dict]], new: bool) -> None:
        records, links, idents, person_orgs = [], [], [], []
        for rec, rels in items:
            doc_json = json.dumps(rec.doc, ensure_ascii=False, separators=(",", ":"))
            records.append((doc_json, *derive(rec.coll, rec.doc)))
            links += link_rows(rec.coll, rec.id, rec.doc, rels)
            if rec.coll == "organizations":
                idents += [(rec.tenant, key, rec.id) for key in record_identifiers(rec.doc)]
            if rec.coll == "people" and "organizations" in rels:
                person_orgs.append((rec.id, [i.rsplit("/", 1)[-1] for i in rels["organizations"]]))
        if new:
            db.executemany(_INSERT, [(rec.coll, rec.id, rec.tenant, rec.parent, *row)
                                     for (rec, _), row in zip(items, records)])
        else:
            for (rec, _), row in zip(items, records):
                db.execute("DELETE FROM links WHERE coll = ? AND id = ?", (rec.coll, rec.id))
                db.execute("DELETE FROM idents WHERE id = ? AND tenant = ?", (rec.id, rec.tenant))
                db.execute(_UPDATE, (*row, rec.coll, rec.id))
        db.executemany("INSERT INTO links VALUES (?, ?, ?, ?, ?)", links)
        db.executemany("INSERT OR IGNORE INTO idents VALUES (?, ?, ?)", idents)
        for pid, org_ids in person_orgs:
            db.execute("DELETE FROM links WHERE coll = 'organizations' AND field = 'people' "
                       "AND value = ?", (pid,))
            db.executemany(_PERSON_ORG, [(oid, pid, oid) for oid in org_ids])

    def _remove(self, db: sqlite3.Connection, coll: str, rid: str) -> None:
        db.execute("DELETE FROM records WHERE coll = ? AND id = ?", (coll, rid))
        db.execute("DELETE FROM links WHERE coll = ? AND id = ?", (coll, rid))
        if coll == "organizations":
            db.execute("DELETE FROM records WHERE coll = 'notes' AND parent = ?", (rid,))
            db.execute("DELETE FROM idents WHERE id = ?", (rid,))
        elif coll in ("people", "segments", "tags"):
            field = "people" if coll == "people" else coll
            for owner in ("organizations", "people"):
                db.execute("DELETE FROM links WHERE coll = ? AND field = ? AND value = ?",
                           (owner, field, rid))
