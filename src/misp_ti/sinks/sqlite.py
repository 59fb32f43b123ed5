"""The embedded store: a SQLite file (WAL) with a source table and a latest view.

* ``source``: one row per emitted document (``_id`` is the key, so a replayed
  batch adds nothing), deleted after the retention age. It keeps what
  retention and the counts need (no index: retention scans these small
  rows once per cycle), not the document: the latest view holds
  the body of every document that can still win. Only ``pipeline_error``
  documents, which never enter the latest view, keep their body (``error``).
* ``latest``: one row per ``(event.dataset, misp.attribute.uuid)``; the
  newest ingest wins (ties: the newer attribute timestamp). A row is
  *active* while ``decayed`` is false and ``decayed_at`` is in the future,
  which is what the Elasticsearch ``latest`` transform plus its retention on
  ``decayed_at`` give. ``doc`` is the document's JSON, zlib-compressed
  with a preset dictionary (:mod:`misp_ti.sinks.sqlite_dictionary`;
  :func:`decode_doc` reads every version's); ``hit`` is what a lookup answer
  says of it (:func:`~misp_ti.sinks.sqlite_keys.hit_summary`), plain JSON
  that ``lookup -`` writes as it is. Expired rows stay (inactive) until
  they are both expired and not re-read for the retention age, then they
  are deleted.
* ``latest_value``: the canonical lookup keys of each latest row (by
  ``latest.row``; :mod:`misp_ti.sinks.sqlite_keys`), for ``misp-ti lookup``;
  ``latest_prefix``: the prefix lengths of the networks among them.
* ``store_meta``: ``schema_version`` (3). Version 1 kept every document in
  ``source`` too and lower-cased values in ``latest_value``; version 2
  compressed ``doc`` without a dictionary, had no ``latest_prefix``, and its
  rowid was implicit (``VACUUM`` may renumber those under ``latest_value``).
  Opening an older store for writing migrates it in one transaction
  (:mod:`misp_ti.sinks.sqlite_schema`); a read-only open reads it as it is.

The queries (``lookup``, ``active``, ``counts``...) are in
:mod:`misp_ti.sinks.sqlite_queries`.

The file (and SQLite's ``-wal``/``-shm`` beside it, which take its mode) is
created 0600: it holds TLP-marked intelligence.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson

from misp_ti.errors import StoreError
from misp_ti.sinks.sqlite_keys import hit_summary, indicator_values, lookup_keys, prefix_of
from misp_ti.sinks.sqlite_queries import StoreQueries
from misp_ti.sinks.sqlite_schema import (
    SCHEMA_SQL,
    SCHEMA_VERSION,
    check_store,
    create_private,
    decode_doc,
    describe_error,
    encode_doc,
    migrate_from_1,
    migrate_from_2,
)
from misp_ti.timeutil import epoch_ms, iso_epoch_ms

__all__ = ["SCHEMA_VERSION", "EmbeddedStore", "decode_doc", "describe_error", "encode_doc", "indicator_values"]

_UPSERT_LATEST = """
INSERT INTO latest (dataset, uuid, id, ingested, attr_ts, decayed, decayed_at, indicator_type, doc, hit)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dataset, uuid) DO UPDATE SET
    id = excluded.id, ingested = excluded.ingested, attr_ts = excluded.attr_ts,
    decayed = excluded.decayed, decayed_at = excluded.decayed_at,
    indicator_type = excluded.indicator_type, doc = excluded.doc, hit = excluded.hit
WHERE (excluded.ingested, excluded.attr_ts) >= (latest.ingested, latest.attr_ts)
"""

class _LatestRow(NamedTuple):
    """One candidate row of ``latest``: the columns of :data:`_UPSERT_LATEST`, then the document."""

    dataset: str
    uuid: str
    id: str
    ingested: int
    attr_ts: int
    decayed: int
    decayed_at: int
    indicator_type: Any
    body: bytes
    hit: bytes
    doc: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.dataset, self.uuid)

    @property
    def version(self) -> tuple[int, int]:
        """What decides the latest row (``ingested``, then ``attr_ts``), as in :data:`_UPSERT_LATEST`."""
        return (self.ingested, self.attr_ts)

    def columns(self) -> tuple[Any, ...]:
        return self[:10]


class EmbeddedStore(StoreQueries):
    """The store at ``path``; ``readonly=True`` never writes (``misp-ti lookup``, ``status``).

    Opening checks what the file is and raises :class:`StoreError` (one
    line, naming the file) for a file that is not a SQLite database, a
    SQLite file of another program, a store written by a newer misp-ti, or
    (read-only) a file that holds no store yet.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._identity: tuple[int, int] | None = None
        self._retention_done_for: int | None = None
        memory = str(self.path) == ":memory:"
        try:
            if readonly:
                self.conn = self._connect_readonly()
            else:
                if not memory:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    create_private(self.path)
                self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout = 10000")
            tables = {name for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            self.version = check_store(self.conn, self.path, tables, readonly=readonly)
            if not readonly:
                self.conn.execute("PRAGMA journal_mode = WAL")
                # NORMAL is safe in WAL mode: the state store's FULL commit of a
                # checkpoint fsyncs the WAL holding this batch before the cursor moves
                self.conn.execute("PRAGMA synchronous = NORMAL")
                # batches dirty many random index pages: checkpoint every ~64 MB of
                # WAL instead of every 4 MB (fewer fsyncs, same data)
                self.conn.execute("PRAGMA wal_autocheckpoint = 16384")
                self._existed = "store_meta" in tables
                self._prepare()
                if not memory:
                    stat = os.stat(self.path)
                    self._identity = (stat.st_dev, stat.st_ino)
        except sqlite3.Error as exc:
            raise StoreError(self.path, describe_error(exc) or str(exc)) from None

    def _connect_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(self.path, "no such file (run `misp-ti once` or `misp-ti demo` first)")
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # a WAL file whose -shm cannot be created (read-only directory):
            # nobody can write it there either, so read it as immutable
            conn.close()
            return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)

    def _prepare(self) -> None:
        """Create the schema, or migrate an older store, in one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.version == 1:
                migrate_from_1(conn)
            if 1 <= self.version <= 2:
                migrate_from_2(conn)
            conn.execute("PRAGMA foreign_keys = OFF")
            for statement in SCHEMA_SQL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO store_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except BaseException:
            self._rollback()
            raise
        conn.execute("COMMIT")
        self.version = SCHEMA_VERSION

    def _rollback(self) -> None:
        # SQLite has already rolled back after some errors (a full disk): a
        # second ROLLBACK would hide the real error behind "no transaction is active"
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self.conn.close()

    def provision(self) -> list[dict[str, Any]]:
        action = "present" if self._existed else "created"
        return [{"sink": "sqlite", "action": action, "path": str(self.path), "schema_version": SCHEMA_VERSION}]

    def _check_identity(self) -> None:
        """Refuse to confirm a batch written to a file that is no longer at ``path``."""
        if self._identity is None:
            return
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise StoreError(self.path, "was deleted while misp-ti was writing to it; the batch is not confirmed") from None
        if (stat.st_dev, stat.st_ino) != self._identity:
            raise StoreError(self.path, "was replaced by another file while misp-ti was writing to it; the batch is not confirmed")

    def write(self, docs: Iterable[dict[str, Any]], *, ingested: datetime, retention_cutoff: datetime | None) -> int:
        """Store one batch in one transaction; returns how many documents were given.

        The latest-view winners are decided here, in Python, against the rows
        already stored for the batch's keys (one indexed read), so that the
        lookup values are rewritten only for rows that change. Raises
        :class:`StoreError` when the file itself fails (full, read-only,
        deleted or replaced) and ``sqlite3.Error`` for a passing failure
        (the store is locked).
        """
        # imported here: reading the store (lookup) needs no ECS code
        from misp_ti.ecs import is_pipeline_error

        ingested_ms = epoch_ms(ingested)
        source_rows: list[tuple[Any, ...]] = []
        candidates: dict[tuple[str, str], _LatestRow] = {}
        count = 0
        for doc in docs:
            count += 1
            dataset = doc.get("event", {}).get("dataset") or ""
            attribute = doc.get("misp", {}).get("attribute") or {}
            uuid = attribute.get("uuid") if isinstance(attribute, dict) else None
            if is_pipeline_error(doc):
                source_rows.append((doc["_id"], dataset, uuid, ingested_ms, orjson.dumps(doc)))
                continue
            source_rows.append((doc["_id"], dataset, uuid, ingested_ms, None))
            if not uuid or not isinstance(uuid, str):
                continue
            row = _LatestRow(
                dataset, uuid, doc["_id"], ingested_ms, iso_epoch_ms(doc.get("@timestamp")) or 0,
                int(bool(attribute.get("decayed"))), iso_epoch_ms(attribute.get("decayed_at")) or 0,
                doc.get("threat", {}).get("indicator", {}).get("type"), encode_doc(doc),
                orjson.dumps(hit_summary(doc)), doc,
            )
            previous = candidates.get((dataset, uuid))
            if previous is None or row.version >= previous.version:
                candidates[(dataset, uuid)] = row
        conn = self.conn
        try:
            self._check_identity()
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._write_rows(source_rows, candidates)
                if retention_cutoff is not None and self._retention_due(ingested_ms):
                    self._apply_retention(epoch_ms(retention_cutoff))
                self._check_identity()
            except BaseException:
                self._rollback()
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            reason = describe_error(exc)
            if reason is None:
                raise
            raise StoreError(self.path, reason) from None
        return count

    def _write_rows(self, source_rows: list[tuple[Any, ...]], candidates: dict[tuple[str, str], _LatestRow]) -> None:
        conn = self.conn
        conn.executemany("INSERT OR IGNORE INTO source (id, dataset, uuid, ingested, error) VALUES (?, ?, ?, ?, ?)", source_rows)
        stored = self._stored_versions(candidates)
        winners = [
            row for key, row in candidates.items()
            if key not in stored or row.version >= stored[key][2:] and row.id != stored[key][1]
        ]
        conn.executemany(_UPSERT_LATEST, [row.columns() for row in winners])
        conn.executemany("DELETE FROM latest_value WHERE row = ?", [(stored[row.key][0],) for row in winners if row.key in stored])
        rowids = {key: found[0] for key, found in stored.items()}
        rowids.update((key, found[0]) for key, found in self._stored_versions(
            [row.key for row in winners if row.key not in stored]
        ).items())
        values = [(key, rowids[row.key]) for row in winners for key in lookup_keys(row.doc)]
        conn.executemany("INSERT OR IGNORE INTO latest_value (value, row) VALUES (?, ?)", values)
        prefixes = sorted({prefix for key, _ in values if (prefix := prefix_of(key))})
        if prefixes:
            conn.executemany("INSERT OR IGNORE INTO latest_prefix (version, length) VALUES (?, ?)", prefixes)

    def _stored_versions(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str, int, int]]:
        """``(dataset, uuid) -> (rowid, id, ingested, attr_ts)`` of the latest rows already stored."""
        found: dict[tuple[str, str], tuple[int, str, int, int]] = {}
        by_dataset: dict[str, list[str]] = {}
        for dataset, uuid in keys:
            by_dataset.setdefault(dataset, []).append(uuid)
        for dataset, uuids in by_dataset.items():
            for start in range(0, len(uuids), 500):
                chunk = uuids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for rowid, uuid, doc_id, ing, ts in self.conn.execute(
                    f"SELECT rowid, uuid, id, ingested, attr_ts FROM latest WHERE dataset = ? AND uuid IN ({marks})",
                    (dataset, *chunk),
                ):
                    found[(dataset, uuid)] = (rowid, doc_id, ing, ts)
        return found

    def _retention_due(self, ingested_ms: int) -> bool:
        # once per ingest time, i.e. once per poll cycle, not per batch: the
        # deletes scan every expired row, which grows with the store
        if self._retention_done_for == ingested_ms:
            return False
        self._retention_done_for = ingested_ms
        return True

    def _apply_retention(self, cutoff: int) -> None:
        conn = self.conn
        conn.execute("DELETE FROM source WHERE ingested < ?", (cutoff,))
        # an expired row is forgotten once it has also not been re-read for the retention age
        conn.execute(
            "DELETE FROM latest_value WHERE row IN (SELECT rowid FROM latest WHERE decayed_at < ? AND ingested < ?)",
            (cutoff, cutoff),
        )
        conn.execute("DELETE FROM latest WHERE decayed_at < ? AND ingested < ?", (cutoff, cutoff))
