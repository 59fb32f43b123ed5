"""The embedded store's read side: lookups, the active view, counts.

:class:`StoreQueries` is the part of :class:`~misp_ti.sinks.sqlite.EmbeddedStore`
that only reads, so it works on a store opened read-only (``misp-ti lookup``,
``status``), of any schema version (``self.version``) up to the current one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson

from misp_ti.sinks.sqlite_keys import canonical, containing_networks, hit_summary, prefix_of
from misp_ti.sinks.sqlite_schema import decode_doc
from misp_ti.timeutil import epoch_ms


class StoreQueries:
    conn: sqlite3.Connection
    #: the store's schema version (1..SCHEMA_VERSION)
    version: int

    def lookup(self, value: str, *, now: datetime, dataset: str | None = None) -> list[dict[str, Any]]:
        """Active latest documents one of whose indicator values matches ``value`` (canonical forms)."""
        return self.lookup_many([value], now=now, dataset=dataset)[0]

    def lookup_many(
        self, values: list[str], *, now: datetime, dataset: str | None = None, summaries: bool = False, raw: bool = False
    ) -> list[list[Any]]:
        """For each of ``values``, the active latest documents it matches,
        ordered by dataset and uuid: its canonical key, and for an IP address
        every stored network that contains it. ``summaries``: each match as
        :func:`~misp_ti.sinks.sqlite_keys.hit_summary` (stored beside the
        document, no decompression) instead of the whole document; with
        ``raw`` too, as its JSON text in an ``orjson.Fragment``, which
        ``orjson.dumps`` writes as is (``lookup - --json``: no parsing and
        re-serialising of every hit)."""
        prefixes = self._network_prefixes()
        wanted: list[list[str]] = []
        for value in values:
            key = canonical(value)
            keys = [key, *containing_networks(key, prefixes)] if prefixes else [key]
            if self.version == 1:
                keys.append(value.strip().lower())
            wanted.append(keys)
        found = self._docs_by_key({k for keys in wanted for k in keys}, epoch_ms(now), dataset, summaries, raw)
        answers = []
        for keys in wanted:
            if len(keys) == 1:
                # one key: its rows are distinct latest rows ((value, row) is latest_value's key)
                rows = found.get(keys[0], ())
                answers.append([doc for _, doc in (sorted(rows, key=itemgetter(0)) if len(rows) > 1 else rows)])
                continue
            hits: dict[tuple[str, str], dict[str, Any]] = {}
            for key in keys:
                for row_key, doc in found.get(key, ()):
                    hits.setdefault(row_key, doc)
            answers.append([hits[k] for k in sorted(hits)])
        return answers

    def _network_prefixes(self) -> list[tuple[int, int]]:
        """The ``(IP version, prefix length)`` of the networks stored as lookup keys."""
        if not hasattr(self, "_prefixes"):
            if self.version >= 3:
                found = set(self.conn.execute("SELECT version, length FROM latest_prefix"))
            else:  # older stores: one scan of the keys
                found = set()
                for (value,) in self.conn.execute("SELECT DISTINCT value FROM latest_value WHERE value GLOB '*/*'"):
                    prefix = prefix_of(value)
                    if prefix:
                        found.add(prefix)
            self._prefixes = sorted(found)
        return self._prefixes

    def _docs_by_key(
        self, keys: set[str], now_ms: int, dataset: str | None, summaries: bool, raw: bool = False
    ) -> dict[str, list[tuple[tuple[str, str], Any]]]:
        decode: Callable[[Any], Any]
        if summaries and self.version >= 2:
            # the stored hit is orjson.dumps(hit_summary(doc)): as a Fragment it serialises to the same bytes
            column, decode = "l.hit", orjson.Fragment if raw else orjson.loads
        else:
            column, decode = "l.doc", decode_doc
        found: dict[str, list[tuple[tuple[str, str], Any]]] = {}
        # CROSS JOIN keeps SQLite from starting at latest's decayed_at index
        # (every active row) instead of at the few asked values
        if self.version == 1:
            join = "CROSS JOIN latest l ON l.dataset = v.dataset AND l.uuid = v.uuid"
        else:
            join = "CROSS JOIN latest l ON l.rowid = v.row"
        extra = " AND l.dataset = ?" if dataset else ""
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start:start + 500]
            sql = (
                f"SELECT v.value, l.dataset, l.uuid, {column} FROM latest_value v {join} "
                f"WHERE v.value IN ({','.join('?' * len(chunk))}) AND l.decayed = 0 AND l.decayed_at > ?{extra}"
            )
            for value, ds, uuid, body in self.conn.execute(sql, (*chunk, now_ms, *([dataset] if dataset else []))):
                doc: Any = decode(body)
                if column == "l.doc" and summaries:
                    summary = hit_summary(doc)
                    doc = orjson.Fragment(orjson.dumps(summary)) if raw else summary
                found.setdefault(value, []).append(((ds, uuid), doc))
        return found

    def datasets(self) -> list[str]:
        """The datasets the latest view holds rows of."""
        return [d for (d,) in self.conn.execute("SELECT DISTINCT dataset FROM latest ORDER BY 1")]

    def active(self, *, now: datetime, dataset: str | None = None) -> Iterator[dict[str, Any]]:
        sql = "SELECT doc FROM latest WHERE decayed = 0 AND decayed_at > ?"
        args: list[Any] = [epoch_ms(now)]
        if dataset:
            sql += " AND dataset = ?"
            args.append(dataset)
        for (body,) in self.conn.execute(sql + " ORDER BY dataset, uuid", args):
            yield decode_doc(body)

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
        """Read-only counts (works on a ``readonly`` store): source documents,
        latest rows, ``active``/``expired`` (also per indicator type) and
        ``pipeline_errors``."""
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
        if self.version == 1:
            from misp_ti.ecs import is_pipeline_error

            errors = sum(
                1 for (doc,) in self.conn.execute("SELECT doc FROM source WHERE uuid IS NULL OR doc LIKE '%pipeline_error%'")
                if is_pipeline_error(orjson.loads(doc))
            )
        else:
            errors = self.conn.execute("SELECT count(*) FROM source WHERE error IS NOT NULL").fetchone()[0]
        return {
            "source_documents": source,
            "latest": sum(v["active"] + v["expired"] for v in by_type.values()),
            "active": sum(v["active"] for v in by_type.values()),
            "expired": sum(v["expired"] for v in by_type.values()),
            "pipeline_errors": errors,
            "by_type": dict(sorted(by_type.items())),
        }
