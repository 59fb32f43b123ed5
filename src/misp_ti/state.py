"""Persistent engine state: cursors, in-progress cycles, schedules.

Lives in one SQLite file (by default the embedded store's). Every change is
one transaction, so a crash leaves either the old or the new state, never a
mix. ``synchronous=FULL``: a confirmed cursor survives a power cut too.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from misp_ti.errors import MispTiError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS misp_ti_cursor (
    stream TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS misp_ti_cycle (
    stream TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    refetch INTEGER NOT NULL,
    start_cursor TEXT,
    checkpoint TEXT
);
CREATE TABLE IF NOT EXISTS misp_ti_schedule (
    stream TEXT NOT NULL,
    name TEXT NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (stream, name)
);
CREATE TABLE IF NOT EXISTS misp_ti_kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class StateError(MispTiError):
    """The state file cannot be read or written; nothing was recorded."""


@dataclass(frozen=True, slots=True)
class Cycle:
    """A poll cycle that started and has not finished (crash, stop, failure)."""

    stream: str
    started_at: datetime
    refetch: bool
    start_cursor: dict[str, Any] | None
    checkpoint: dict[str, Any] | None

    @property
    def resume_cursor(self) -> dict[str, Any] | None:
        return self.checkpoint if self.checkpoint is not None else self.start_cursor


def _ts(value: datetime) -> int:
    return int(value.timestamp())


def _dt(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _dump(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _load(value: str | None) -> dict[str, Any] | None:
    return None if value is None else orjson.loads(value)


_UPSERT_CURSOR = (
    "INSERT INTO misp_ti_cursor (stream, cursor, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT(stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at"
)


def _cursor_upsert(stream: str, cursor: Mapping[str, Any], when: datetime) -> tuple[str, tuple[Any, ...]]:
    """The statement that stores ``stream``'s cursor as of ``when``."""
    return (_UPSERT_CURSOR, (stream, _dump(cursor), _ts(when)))


class StateStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        # the same file as the embedded store by default: do not checkpoint
        # its large WAL after every small cursor commit
        self._conn.execute("PRAGMA wal_autocheckpoint = 16384")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"state store {self.path} cannot be written: {exc}") from exc
            try:
                for sql, args in statements:
                    self._conn.execute(sql, args)
                self._conn.execute("COMMIT")
            except BaseException as exc:
                self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StateError(f"state store {self.path} cannot be written: {exc}") from exc
                raise

    # cursors ---------------------------------------------------------------

    def get_cursor(self, stream: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT cursor FROM misp_ti_cursor WHERE stream = ?", (stream,)).fetchone()
        return _load(row[0]) if row else None

    def set_cursor(self, stream: str, cursor: Mapping[str, Any], *, now: datetime) -> None:
        self._write([_cursor_upsert(stream, cursor, now)])

    # cycles ----------------------------------------------------------------

    def in_progress(self, stream: str) -> Cycle | None:
        row = self._conn.execute(
            "SELECT started_at, refetch, start_cursor, checkpoint FROM misp_ti_cycle WHERE stream = ?",
            (stream,),
        ).fetchone()
        if row is None:
            return None
        return Cycle(stream, _dt(row[0]), bool(row[1]), _load(row[2]), _load(row[3]))

    def begin_cycle(self, stream: str, *, now: datetime, refetch: bool, start_cursor: Mapping[str, Any] | None) -> Cycle:
        self._write([(
            "INSERT OR REPLACE INTO misp_ti_cycle (stream, started_at, refetch, start_cursor, checkpoint) "
            "VALUES (?, ?, ?, ?, NULL)",
            (stream, _ts(now), int(refetch), _dump(start_cursor)),
        )])
        return Cycle(stream, now, refetch, dict(start_cursor) if start_cursor else None, None)

    def save_checkpoint(self, stream: str, checkpoint: Mapping[str, Any]) -> None:
        self._write([("UPDATE misp_ti_cycle SET checkpoint = ? WHERE stream = ?", (_dump(checkpoint), stream))])

    def finish_cycle(
        self, stream: str, *, cursor: Mapping[str, Any] | None, cycle: Cycle, schedule: str | None = None
    ) -> None:
        """Atomically: store the final cursor, record the cycle's start as the
        last run of ``schedule`` (see :meth:`last_run`), close the cycle."""
        statements: list[tuple[str, tuple[Any, ...]]] = []
        if cursor is not None:
            statements.append(_cursor_upsert(stream, cursor, cycle.started_at))
        if schedule is not None:
            statements.append((
                "INSERT OR REPLACE INTO misp_ti_schedule (stream, name, last_at) VALUES (?, ?, ?)",
                (stream, schedule, _ts(cycle.started_at)),
            ))
        statements.append(("DELETE FROM misp_ti_cycle WHERE stream = ?", (stream,)))
        self._write(statements)

    # schedules and plugin data ---------------------------------------------

    def last_run(self, stream: str, name: str) -> datetime | None:
        row = self._conn.execute(
            "SELECT last_at FROM misp_ti_schedule WHERE stream = ? AND name = ?", (stream, name)
        ).fetchone()
        return _dt(row[0]) if row else None

    def set_last_run(self, stream: str, name: str, when: datetime) -> None:
        self._write([(
            "INSERT OR REPLACE INTO misp_ti_schedule (stream, name, last_at) VALUES (?, ?, ?)",
            (stream, name, _ts(when)),
        )])

    def get_value(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM misp_ti_kv WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def set_value(self, key: str, value: Any) -> None:
        self._write([("INSERT OR REPLACE INTO misp_ti_kv (key, value) VALUES (?, ?)", (key, orjson.dumps(value).decode()))])

    def reset(self, stream: str) -> None:
        """Forget the cursor, any in-progress cycle and schedules of ``stream``."""
        self._write([
            ("DELETE FROM misp_ti_cursor WHERE stream = ?", (stream,)),
            ("DELETE FROM misp_ti_cycle WHERE stream = ?", (stream,)),
            ("DELETE FROM misp_ti_schedule WHERE stream = ?", (stream,)),
        ])

    def has_history(self) -> bool:
        """Whether any stream has a cursor, a cycle in progress or a schedule."""
        return any(
            self._conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
            for table in ("misp_ti_cursor", "misp_ti_cycle", "misp_ti_schedule")
        )
