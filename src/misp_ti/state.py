"""Persistent engine state: cursors, in-progress cycles, schedules, cycle history.

Lives in one SQLite file (by default the embedded store's). Every change is
one transaction, so a crash leaves either the old or the new state, never a
mix. ``synchronous=FULL``: a confirmed cursor survives a power cut too.

The layout's version is ``PRAGMA user_version`` (docs/contracts.md): a file
without one holds version 1; :data:`MIGRATIONS` (:mod:`misp_ti.state_schema`)
bring an older file up to :data:`SCHEMA_VERSION` in one transaction, and a
newer file is refused. Every per-stream row is keyed by ``(source, stream)``:
``source`` is a ``[misp.<name>]`` table's name, ``default`` for ``[misp]``.
Readers (``misp-ti status``) open the file read-only (:meth:`StateStore.open_readonly`)
and never migrate it.
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
from misp_ti.state_schema import (
    BASE_SCHEMA,
    DEFAULT_SOURCE,
    MIGRATIONS,
    SCHEMA_VERSION,
    legacy_views,
    statements,
)

__all__ = [
    "DEFAULT_SOURCE", "MIGRATIONS", "SCHEMA_VERSION", "Cycle", "CycleOutcome", "SourceBinding",
    "StateError", "StateStore", "StateVersionError",
]


class StateError(MispTiError):
    """The state file cannot be read or written; nothing was recorded."""


class StateVersionError(StateError):
    """The state file was written by a newer misp-ti (exit status 2)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class CycleOutcome:
    """One row of the cycle history: the last completed or the last failed cycle."""

    stream: str
    outcome: str  # "completed" or "failed"
    finished_at: datetime
    records: int = 0
    documents: int = 0
    pipeline_errors: int = 0
    dead_letters: int = 0
    error: str | None = None
    #: for ``failed``: failed cycles since the last completed one
    failures_in_row: int = 0
    source: str = DEFAULT_SOURCE

    def as_dict(self) -> dict[str, Any]:
        from misp_ti.timeutil import iso

        data = {
            "finished_at": iso(self.finished_at),
            "records": self.records,
            "documents": self.documents,
            "pipeline_errors": self.pipeline_errors,
            "dead_letters": self.dead_letters,
        }
        if self.outcome == "failed":
            data = {"finished_at": data["finished_at"], "error": self.error, "failures_in_row": self.failures_in_row}
        return data


@dataclass(frozen=True, slots=True)
class Cycle:
    """A poll cycle that started and has not finished (crash, stop, failure)."""

    stream: str
    started_at: datetime
    refetch: bool
    start_cursor: dict[str, Any] | None
    checkpoint: dict[str, Any] | None
    source: str = DEFAULT_SOURCE

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
    "INSERT INTO misp_ti_cursor (source, stream, cursor, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(source, stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at"
)


def _cursor_upsert(source: str, stream: str, cursor: Mapping[str, Any], when: datetime) -> tuple[str, tuple[Any, ...]]:
    """The statement that stores ``(source, stream)``'s cursor as of ``when``."""
    return (_UPSERT_CURSOR, (source, stream, _dump(cursor), _ts(when)))


@dataclass(frozen=True, slots=True)
class SourceBinding:
    """The MISP a source's cursors belong to (``misp_ti_source``)."""

    source: str
    url: str  # without user-info, query or fragment
    bound_at: datetime


def _unusable(message: str) -> StateError:
    error = StateError(message)
    error.exit_code = 2
    return error


def _outcome_statements(outcome: CycleOutcome) -> list[tuple[str, tuple[Any, ...]]]:
    insert = (
        "INSERT OR REPLACE INTO misp_ti_cycle_log (source, stream, outcome, finished_at, records, documents, "
        "pipeline_errors, dead_letters, error, failures_in_row) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
    )
    key = (outcome.source, outcome.stream)
    row = (
        outcome.source, outcome.stream, outcome.outcome, _ts(outcome.finished_at), outcome.records, outcome.documents,
        outcome.pipeline_errors, outcome.dead_letters, None if outcome.error is None else outcome.error[:1000],
    )
    if outcome.outcome == "failed":
        previous = (
            "(SELECT COALESCE(MAX(failures_in_row), 0) FROM misp_ti_cycle_log "
            "WHERE source = ? AND stream = ? AND outcome = 'failed')"
        )
        return [(insert + previous + " + 1)", (*row, *key))]
    return [
        (insert + "0)", row),
        ("UPDATE misp_ti_cycle_log SET failures_in_row = 0 WHERE source = ? AND stream = ? AND outcome = 'failed'", key),
    ]


class StateStore:
    """The engine's state in one SQLite file.

    Every method names its ``stream``, and its ``source`` (a keyword,
    ``default`` when omitted: the single ``[misp]`` table).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        try:
            if readonly:
                # never creates, never migrates, never takes a write lock
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                self._conn.execute("PRAGMA busy_timeout = 2000")
                version = self._version()
                self._check_version(version)
                for statement in legacy_views(max(version, 1)):
                    self._conn.execute(statement)
                return
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            if self._version() < 1:
                self._refuse_foreign()  # before any setting is written into the file
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            # the same file as the embedded store by default: do not checkpoint
            # its large WAL after every small cursor commit
            self._conn.execute("PRAGMA wal_autocheckpoint = 16384")
            self._migrate()
        except sqlite3.Error as exc:
            raise _unusable(f"state file {self.path} cannot be opened: {exc}") from None

    @classmethod
    def open_readonly(cls, path: str | Path) -> StateStore:
        """The state at ``path`` for reading beside a running writer.

        :raises StateError: no such file, or not a readable state file (exit 2).
        """
        if not Path(path).is_file():
            raise _unusable(f"no state file at {path} (run `misp-ti once` or `misp-ti run` first)")
        try:
            return cls(path, readonly=True)
        except StateVersionError:
            raise
        except StateError as exc:
            raise _unusable(str(exc)) from None

    def _version(self) -> int:
        version: int = self._conn.execute("PRAGMA user_version").fetchone()[0]
        return version

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StateVersionError(
                f"state file {self.path} has schema version {version}, written by a newer misp-ti "
                f"(this one reads up to {SCHEMA_VERSION}); upgrade misp-ti or point state.path elsewhere"
            )

    def _migrate(self) -> None:
        version = self._version()
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                version = self._version()  # another writer may have migrated it meanwhile
                self._check_version(version)
                if version < 1:  # no version: the first tables (version 1), created when absent
                    for statement in statements(BASE_SCHEMA):
                        self._conn.execute(statement)
                    version = 1
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in statements(MIGRATIONS[step]):
                        self._conn.execute(statement)
                # PRAGMA takes no parameters; the value is our own integer
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _refuse_foreign(self) -> None:
        """Another program's SQLite file is not taken over: misp-ti's tables are
        created only in an empty file, a misp-ti state or an embedded store."""
        tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = {t for t in tables if t.startswith("misp_ti_")} | (tables & {"latest", "latest_value", "store_meta"})
        if tables and not ours:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise _unusable(
                f"state file {self.path} is another program's SQLite database (tables: {shown}), "
                "not a misp-ti state: point state.path at a new file"
            )

    @property
    def schema_version(self) -> int:
        return self._version()

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

    def get_cursor(self, stream: str, *, source: str = DEFAULT_SOURCE) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT cursor FROM misp_ti_cursor WHERE source = ? AND stream = ?", (source, stream)
        ).fetchone()
        return _load(row[0]) if row else None

    def set_cursor(self, stream: str, cursor: Mapping[str, Any], *, now: datetime, source: str = DEFAULT_SOURCE) -> None:
        self._write([_cursor_upsert(source, stream, cursor, now)])

    def cursor_updated_at(self, stream: str, *, source: str = DEFAULT_SOURCE) -> datetime | None:
        row = self._conn.execute(
            "SELECT updated_at FROM misp_ti_cursor WHERE source = ? AND stream = ?", (source, stream)
        ).fetchone()
        return _dt(row[0]) if row else None

    # cycles ----------------------------------------------------------------

    def in_progress(self, stream: str, *, source: str = DEFAULT_SOURCE) -> Cycle | None:
        row = self._conn.execute(
            "SELECT started_at, refetch, start_cursor, checkpoint FROM misp_ti_cycle WHERE source = ? AND stream = ?",
            (source, stream),
        ).fetchone()
        if row is None:
            return None
        return Cycle(stream, _dt(row[0]), bool(row[1]), _load(row[2]), _load(row[3]), source)

    def begin_cycle(
        self, stream: str, *, now: datetime, refetch: bool, start_cursor: Mapping[str, Any] | None, source: str = DEFAULT_SOURCE
    ) -> Cycle:
        self._write([(
            "INSERT OR REPLACE INTO misp_ti_cycle (source, stream, started_at, refetch, start_cursor, checkpoint) "
            "VALUES (?, ?, ?, ?, ?, NULL)",
            (source, stream, _ts(now), int(refetch), _dump(start_cursor)),
        )])
        return Cycle(stream, now, refetch, dict(start_cursor) if start_cursor else None, None, source)

    def save_checkpoint(self, stream: str, checkpoint: Mapping[str, Any], *, source: str = DEFAULT_SOURCE) -> None:
        self._write([(
            "UPDATE misp_ti_cycle SET checkpoint = ? WHERE source = ? AND stream = ?", (_dump(checkpoint), source, stream)
        )])

    def finish_cycle(
        self,
        stream: str,
        *,
        cursor: Mapping[str, Any] | None,
        cycle: Cycle,
        schedule: str | None = None,
        outcome: CycleOutcome | None = None,
    ) -> None:
        """Atomically: store the final cursor, record the cycle's start as the
        last run of ``schedule`` (see :meth:`last_run`), record ``outcome`` in
        the history (:meth:`record_outcome`), close the cycle. The source is
        the cycle's."""
        source = cycle.source
        statements: list[tuple[str, tuple[Any, ...]]] = []
        if outcome is not None:
            statements.extend(_outcome_statements(outcome))
        if cursor is not None:
            statements.append(_cursor_upsert(source, stream, cursor, cycle.started_at))
        if schedule is not None:
            statements.append((
                "INSERT OR REPLACE INTO misp_ti_schedule (source, stream, name, last_at) VALUES (?, ?, ?, ?)",
                (source, stream, schedule, _ts(cycle.started_at)),
            ))
        statements.append(("DELETE FROM misp_ti_cycle WHERE source = ? AND stream = ?", (source, stream)))
        self._write(statements)

    # history -----------------------------------------------------------------

    def record_outcome(self, outcome: CycleOutcome) -> None:
        """Keep ``outcome`` as the stream's last completed or last failed cycle.

        A failure counts one more failure in a row; a completion resets the count.
        """
        self._write(_outcome_statements(outcome))

    def history(self, stream: str, *, source: str = DEFAULT_SOURCE) -> dict[str, CycleOutcome]:
        """``{"completed": ..., "failed": ...}``, each present once it happened."""
        if self.readonly and not self._has_table("misp_ti_cycle_log"):
            return {}
        rows = self._conn.execute(
            "SELECT outcome, finished_at, records, documents, pipeline_errors, dead_letters, error, failures_in_row "
            "FROM misp_ti_cycle_log WHERE source = ? AND stream = ?",
            (source, stream),
        ).fetchall()
        return {
            outcome: CycleOutcome(stream, outcome, _dt(at), records, documents, errors, dead, error, in_row, source)
            for outcome, at, records, documents, errors, dead, error, in_row in rows
        }

    def _has_table(self, name: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    # which MISP a source's cursors belong to -------------------------------

    def binding(self, source: str = DEFAULT_SOURCE) -> SourceBinding | None:
        """The URL ``source``'s cursors were read from, once a run recorded it."""
        row = self._conn.execute("SELECT url, bound_at FROM misp_ti_source WHERE source = ?", (source,)).fetchone()
        return SourceBinding(source, row[0], _dt(row[1])) if row else None

    def bindings(self) -> list[SourceBinding]:
        rows = self._conn.execute("SELECT source, url, bound_at FROM misp_ti_source ORDER BY source").fetchall()
        return [SourceBinding(row[0], row[1], _dt(row[2])) for row in rows]

    def bind(self, source: str, url: str, *, now: datetime) -> None:
        """Record ``url`` (already stripped of secrets: ``public_url``) as ``source``'s MISP."""
        self._write([("INSERT OR REPLACE INTO misp_ti_source (source, url, bound_at) VALUES (?, ?, ?)", (source, url, _ts(now)))])

    def sources(self) -> list[str]:
        """Every source that has a cursor, a cycle, a schedule or a binding."""
        rows = self._conn.execute(
            "SELECT source FROM misp_ti_cursor UNION SELECT source FROM misp_ti_cycle "
            "UNION SELECT source FROM misp_ti_schedule UNION SELECT source FROM misp_ti_source ORDER BY 1"
        ).fetchall()
        return [row[0] for row in rows]

    # schedules and plugin data ---------------------------------------------

    def last_run(self, stream: str, name: str, *, source: str = DEFAULT_SOURCE) -> datetime | None:
        row = self._conn.execute(
            "SELECT last_at FROM misp_ti_schedule WHERE source = ? AND stream = ? AND name = ?", (source, stream, name)
        ).fetchone()
        return _dt(row[0]) if row else None

    def set_last_run(self, stream: str, name: str, when: datetime, *, source: str = DEFAULT_SOURCE) -> None:
        self._write([(
            "INSERT OR REPLACE INTO misp_ti_schedule (source, stream, name, last_at) VALUES (?, ?, ?, ?)",
            (source, stream, name, _ts(when)),
        )])

    def get_value(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM misp_ti_kv WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def set_value(self, key: str, value: Any) -> None:
        self._write([("INSERT OR REPLACE INTO misp_ti_kv (key, value) VALUES (?, ?)", (key, orjson.dumps(value).decode()))])

    def reset(self, stream: str, *, source: str = DEFAULT_SOURCE) -> None:
        """Forget the cursor, any in-progress cycle and schedules of ``(source, stream)``."""
        self._write(_forget(source, stream))

    def rewind(self, stream: str, cursor: Mapping[str, Any] | None, *, now: datetime, source: str = DEFAULT_SOURCE) -> None:
        """``misp-ti reset``, in one transaction: drop ``(source, stream)``'s
        in-progress cycle and set its cursor to ``cursor``; ``None``: no
        cursor and no schedules, the next cycle reads the initial interval."""
        statements = _forget(source, stream)
        if cursor is not None:
            statements = [s for s in statements if "misp_ti_schedule" not in s[0]]  # a refetch keeps its turn
            statements.append(_cursor_upsert(source, stream, cursor, now))
        self._write(statements)

    def has_history(self) -> bool:
        """Whether any stream has a cursor, a cycle in progress or a schedule."""
        return any(
            self._conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
            for table in ("misp_ti_cursor", "misp_ti_cycle", "misp_ti_schedule")
        )


def _forget(source: str, stream: str) -> list[tuple[str, tuple[Any, ...]]]:
    return [
        (f"DELETE FROM {table} WHERE source = ? AND stream = ?", (source, stream))
        for table in ("misp_ti_cursor", "misp_ti_cycle", "misp_ti_schedule")
    ]
