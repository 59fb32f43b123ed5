"""The embedded store: a SQLite file (WAL) with a source table and a latest view.

* ``source``: every emitted document once (``_id`` is the key, so a replayed
  batch adds nothing), deleted after the retention age.
* ``latest``: one row per ``(event.dataset, misp.attribute.uuid)``; the
  newest ingest wins (ties: the newer attribute timestamp). A row is
  *active* while ``decayed`` is false and ``decayed_at`` is in the future,
  which is what the Elasticsearch ``latest`` transform plus its retention on
  ``decayed_at`` give. Expired rows stay (inactive) until they are both
  expired and not re-read for the retention age, then they are deleted.
* ``latest_value``: the indicator values of each latest row, lower-cased,
  for ``misp-ti lookup``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from misp_ti.ecs import PIPELINE_ERROR, is_pipeline_error
from misp_ti.timeutil import epoch_ms, iso_epoch_ms

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS source (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    uuid TEXT,
    ingested INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS source_ingested ON source (ingested);
CREATE TABLE IF NOT EXISTS latest (
    dataset TEXT NOT NULL,
    uuid TEXT NOT NULL,
    id TEXT NOT NULL,
    ingested INTEGER NOT NULL,
    attr_ts INTEGER NOT NULL,
    decayed INTEGER NOT NULL,
    decayed_at INTEGER NOT NULL,
    indicator_type TEXT,
    doc BLOB NOT NULL,
    PRIMARY KEY (dataset, uuid)
);
CREATE INDEX IF NOT EXISTS latest_decayed_at ON latest (decayed_at);
CREATE TABLE IF NOT EXISTS latest_value (
    dataset TEXT NOT NULL,
    uuid TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (dataset, uuid, value)
);
CREATE INDEX IF NOT EXISTS latest_value_value ON latest_value (value);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_UPSERT_LATEST = """
INSERT INTO latest (dataset, uuid, id, ingested, attr_ts, decayed, decayed_at, indicator_type, doc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dataset, uuid) DO UPDATE SET
    id = excluded.id, ingested = excluded.ingested, attr_ts = excluded.attr_ts,
    decayed = excluded.decayed, decayed_at = excluded.decayed_at,
    indicator_type = excluded.indicator_type, doc = excluded.doc
WHERE (excluded.ingested, excluded.attr_ts) >= (latest.ingested, latest.attr_ts)
"""

# Fields under threat.indicator that describe the indicator rather than hold a value of it.
_META_KEYS = frozenset({
    "type", "provider", "description", "marking", "confidence", "first_seen", "last_seen",
    "modified_at", "scanner_stats", "sightings", "reference", "name",
})


def indicator_values(doc: dict[str, Any]) -> set[str]:
    """The values a person may look up for ``doc``: typed indicator fields,
    the raw MISP value and both halves of a composite value, lower-cased."""
    found: set[str] = set()
    indicator = doc.get("threat", {}).get("indicator")
    if isinstance(indicator, dict):
        stack: list[Any] = [v for k, v in indicator.items() if k not in _META_KEYS]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, str | int) and not isinstance(item, bool):
                found.add(str(item).lower())
    attribute = doc.get("misp", {}).get("attribute")
    if isinstance(attribute, dict):
        value = attribute.get("value")
        if isinstance(value, str) and value:
            found.add(value.lower())
            if "|" in value:
                found.update(part.lower() for part in value.split("|") if part)
    found.discard("")
    return found


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
    doc: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.dataset, self.uuid)

    @property
    def version(self) -> tuple[int, int]:
        """What decides the latest row (``ingested``, then ``attr_ts``), as in :data:`_UPSERT_LATEST`."""
        return (self.ingested, self.attr_ts)

    def columns(self) -> tuple[Any, ...]:
        return self[:9]


class EmbeddedStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 10000")
        self.conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL is safe in WAL mode: the state store's FULL commit of a
        # checkpoint fsyncs the WAL holding this batch before the cursor moves
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # batches dirty many random index pages: checkpoint every ~64 MB of
        # WAL instead of every 4 MB (fewer fsyncs, same data)
        self.conn.execute("PRAGMA wal_autocheckpoint = 16384")

    def close(self) -> None:
        self.conn.close()

    def provision(self) -> list[dict[str, Any]]:
        existing = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'store_meta'"
        ).fetchone()
        self.conn.executescript(_SCHEMA)
        self.conn.execute(
            "INSERT OR REPLACE INTO store_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        action = "present" if existing else "created"
        return [{"sink": "sqlite", "action": action, "path": str(self.path), "schema_version": SCHEMA_VERSION}]

    def write(self, docs: Iterable[dict[str, Any]], *, ingested: datetime, retention_cutoff: datetime | None) -> int:
        """Store one batch in one transaction; returns how many documents were given.

        The latest-view winners are decided here, in Python, against the rows
        already stored for the batch's keys (one indexed read), so that the
        lookup values are rewritten only for rows that change.
        """
        ingested_ms = epoch_ms(ingested)
        source_rows = []
        candidates: dict[tuple[str, str], _LatestRow] = {}
        count = 0
        for doc in docs:
            count += 1
            body = orjson.dumps(doc)
            dataset = doc.get("event", {}).get("dataset") or ""
            attribute = doc.get("misp", {}).get("attribute") or {}
            uuid = attribute.get("uuid") if isinstance(attribute, dict) else None
            source_rows.append((doc["_id"], dataset, uuid, ingested_ms, body))
            if not uuid or not isinstance(uuid, str) or is_pipeline_error(doc):
                continue
            row = _LatestRow(
                dataset, uuid, doc["_id"], ingested_ms, iso_epoch_ms(doc.get("@timestamp")) or 0,
                int(bool(attribute.get("decayed"))), iso_epoch_ms(attribute.get("decayed_at")) or 0,
                doc.get("threat", {}).get("indicator", {}).get("type"), body, doc,
            )
            previous = candidates.get((dataset, uuid))
            if previous is None or row.version >= previous.version:
                candidates[(dataset, uuid)] = row
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO source (id, dataset, uuid, ingested, doc) VALUES (?, ?, ?, ?, ?)", source_rows)
            stored = self._stored_versions(candidates)
            winners = [
                row for key, row in candidates.items()
                if key not in stored or row.version >= stored[key][1:] and row.id != stored[key][0]
            ]
            conn.executemany(_UPSERT_LATEST, [row.columns() for row in winners])
            conn.executemany(
                "DELETE FROM latest_value WHERE dataset = ? AND uuid = ?",
                [row.key for row in winners if row.key in stored],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO latest_value (dataset, uuid, value) VALUES (?, ?, ?)",
                [(*row.key, value) for row in winners for value in indicator_values(row.doc)],
            )
            if retention_cutoff is not None and self._retention_due(ingested_ms):
                self._apply_retention(epoch_ms(retention_cutoff))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return count

    def _stored_versions(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, int, int]]:
        """``(dataset, uuid) -> (id, ingested, attr_ts)`` of the latest rows already stored."""
        found: dict[tuple[str, str], tuple[str, int, int]] = {}
        by_dataset: dict[str, list[str]] = {}
        for dataset, uuid in keys:
            by_dataset.setdefault(dataset, []).append(uuid)
        for dataset, uuids in by_dataset.items():
            for start in range(0, len(uuids), 500):
                chunk = uuids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for uuid, doc_id, ing, ts in self.conn.execute(
                    f"SELECT uuid, id, ingested, attr_ts FROM latest WHERE dataset = ? AND uuid IN ({marks})",
                    (dataset, *chunk),
                ):
                    found[(dataset, uuid)] = (doc_id, ing, ts)
        return found

    def _retention_due(self, ingested_ms: int) -> bool:
        # once per ingest time, i.e. once per poll cycle, not per batch: the
        # deletes scan every expired row, which grows with the store
        if getattr(self, "_retention_done_for", None) == ingested_ms:
            return False
        self._retention_done_for = ingested_ms
        return True

    def _apply_retention(self, cutoff: int) -> None:
        conn = self.conn
        conn.execute("DELETE FROM source WHERE ingested < ?", (cutoff,))
        # an expired row is forgotten once it has also not been re-read for the retention age
        conn.execute(
            "DELETE FROM latest_value WHERE (dataset, uuid) IN "
            "(SELECT dataset, uuid FROM latest WHERE decayed_at < ? AND ingested < ?)", (cutoff, cutoff)
        )
        conn.execute("DELETE FROM latest WHERE decayed_at < ? AND ingested < ?", (cutoff, cutoff))

    # queries ---------------------------------------------------------------

    def lookup(self, value: str, *, now: datetime) -> list[dict[str, Any]]:
        """Active latest documents one of whose indicator values equals ``value``."""
        rows = self.conn.execute(
            "SELECT l.doc FROM latest_value v JOIN latest l ON l.dataset = v.dataset AND l.uuid = v.uuid "
            "WHERE v.value = ? AND l.decayed = 0 AND l.decayed_at > ? ORDER BY l.dataset, l.uuid",
            (value.strip().lower(), epoch_ms(now)),
        ).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def active(self, *, now: datetime, dataset: str | None = None) -> Iterator[dict[str, Any]]:
        sql = "SELECT doc FROM latest WHERE decayed = 0 AND decayed_at > ?"
        args: list[Any] = [epoch_ms(now)]
        if dataset:
            sql += " AND dataset = ?"
            args.append(dataset)
        for (body,) in self.conn.execute(sql + " ORDER BY dataset, uuid", args):
            yield orjson.loads(body)

    def active_keys(self, *, now: datetime) -> set[tuple[str, str]]:
        """``(dataset, uuid)`` of every active row: what tests compare runs with."""
        rows = self.conn.execute(
            "SELECT dataset, uuid FROM latest WHERE decayed = 0 AND decayed_at > ?", (epoch_ms(now),)
        )
        return {(d, u) for d, u in rows}

    def latest_snapshot(self) -> dict[tuple[str, str], tuple[str, int, int]]:
        """Every latest row as ``(dataset, uuid) -> (id, decayed, decayed_at)``."""
        rows = self.conn.execute("SELECT dataset, uuid, id, decayed, decayed_at FROM latest")
        return {(d, u): (i, dc, da) for d, u, i, dc, da in rows}

    def counts(self, *, now: datetime) -> dict[str, Any]:
        now_ms = epoch_ms(now)
        source = self.conn.execute("SELECT count(*) FROM source").fetchone()[0]
        by_type: dict[str, dict[str, int]] = {}
        for itype, active, n in self.conn.execute(
            "SELECT coalesce(indicator_type, '(none)'), (decayed = 0 AND decayed_at > ?) AS active, count(*) "
            "FROM latest GROUP BY 1, 2",
            (now_ms,),
        ):
            entry = by_type.setdefault(itype, {"active": 0, "expired": 0})
            entry["active" if active else "expired"] += n
        errors = self.conn.execute(
            "SELECT count(*) FROM source WHERE json_extract(doc, '$.event.kind') = ?", (PIPELINE_ERROR,)
        ).fetchone()[0]
        return {
            "source_documents": source,
            "latest": sum(v["active"] + v["expired"] for v in by_type.values()),
            "active": sum(v["active"] for v in by_type.values()),
            "expired": sum(v["expired"] for v in by_type.values()),
            "pipeline_errors": errors,
            "by_type": dict(sorted(by_type.items())),
        }
