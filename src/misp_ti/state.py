"""Persistent engine state: cursors, in-progress cycles, schedules, cycle history.

Lives in one SQLite file (by default the embedded store's). Every change is
one transaction, so a crash leaves either the old or the new state, never a
mix. ``synchronous=FULL``: a confirmed cursor survives a power cut too.

The layout's version is ``PRAGMA user_version`` (docs/contracts.md): a file
without one holds version 1; :data:`MIGRATIONS` bring an older file up to
:data:`SCHEMA_VERSION` in one transaction, and a newer file is refused.
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

#: The layout this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = 2

#: ``version -> statements`` that bring a file from ``version - 1`` to ``version``.
MIGRATIONS: dict[int, str] = {
    # history for `misp-ti status` (#12): per stream, the last completed and
    # the last failed cycle (one row each, replaced, so it never grows)
    2: """
CREATE TABLE IF NOT EXISTS misp_ti_cycle_log (
    stream TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('completed', 'failed')),
    finished_at INTEGER NOT NULL,
    records INTEGER NOT NULL DEFAULT 0,
    documents INTEGER NOT NULL DEFAULT 0,
    pipeline_errors INTEGER NOT NULL DEFAULT 0,
    dead_letters INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    failures_in_row INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, outcome)
);
""",
}


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


def _unusable(message: str) -> StateError:
    error = StateError(message)
    error.exit_code = 2
    return error


def _outcome_statements(outcome: CycleOutcome) -> list[tuple[str, tuple[Any, ...]]]:
    insert = (
        "INSERT OR REPLACE INTO misp_ti_cycle_log (stream, outcome, finished_at, records, documents, "
        "pipeline_errors, dead_letters, error, failures_in_row) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
    )
    row = (
        outcome.stream, outcome.outcome, _ts(outcome.finished_at), outcome.records, outcome.documents,
        outcome.pipeline_errors, outcome.dead_letters, None if outcome.error is None else outcome.error[:1000],
    )
    if outcome.outcome == "failed":
        previous = "(SELECT COALESCE(MAX(failures_in_row), 0) FROM misp_ti_cycle_log WHERE stream = ? AND outcome = 'failed')"
        return [(insert + previous + " + 1)", (*row, outcome.stream))]
    return [
        (insert + "0)", row),
        ("UPDATE misp_ti_cycle_log SET failures_in_row = 0 WHERE stream = ? AND outcome = 'failed'", (outcome.stream,)),
    ]


class StateStore:
    """The engine's state in one SQLite file.

    Every method names its ``stream``; the keys are keyword-friendly so that a
    ``source`` (several MISP servers, #13) can lead them later.
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
                self._check_version(self._version())
                return
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            # the same file as the embedded store by default: do not checkpoint
            # its large WAL after every small cursor commit
            self._conn.execute("PRAGMA wal_autocheckpoint = 16384")
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"state file {self.path} cannot be opened: {exc}") from None

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
                if version < 1:  # no version: today's tables (version 1), created when absent
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
                    version = 1
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[step].split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
                # PRAGMA takes no parameters; the value is our own integer
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

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
        the history (:meth:`record_outcome`), close the cycle."""
        statements: list[tuple[str, tuple[Any, ...]]] = []
        if outcome is not None:
            statements.extend(_outcome_statements(outcome))
        if cursor is not None:
            statements.append(_cursor_upsert(stream, cursor, cycle.started_at))
        if schedule is not None:
            statements.append((
                "INSERT OR REPLACE INTO misp_ti_schedule (stream, name, last_at) VALUES (?, ?, ?)",
                (stream, schedule, _ts(cycle.started_at)),
            ))
        statements.append(("DELETE FROM misp_ti_cycle WHERE stream = ?", (stream,)))
        self._write(statements)

    # history -----------------------------------------------------------------

    def record_outcome(self, outcome: CycleOutcome) -> None:
        """Keep ``outcome`` as the stream's last completed or last failed cycle.

        A failure counts one more failure in a row; a completion resets the count.
        """
        self._write(_outcome_statements(outcome))

    def history(self, stream: str) -> dict[str, CycleOutcome]:
        """``{"completed": ..., "failed": ...}``, each present once it happened."""
        if self.readonly and not self._has_table("misp_ti_cycle_log"):
            return {}
        rows = self._conn.execute(
            "SELECT outcome, finished_at, records, documents, pipeline_errors, dead_letters, error, failures_in_row "
            "FROM misp_ti_cycle_log WHERE stream = ?",
            (stream,),
        ).fetchall()
        return {row[0]: CycleOutcome(stream, row[0], _dt(row[1]), *row[2:]) for row in rows}

    def cursor_updated_at(self, stream: str) -> datetime | None:
        row = self._conn.execute("SELECT updated_at FROM misp_ti_cursor WHERE stream = ?", (stream,)).fetchone()
        return _dt(row[0]) if row else None

    def _has_table(self, name: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

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
