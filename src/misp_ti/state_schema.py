"""The state file's layout and the migrations between its versions.

``PRAGMA user_version`` holds the version (docs/contracts.md, "The state
file"). A file without one holds version 1, the first layout
(:data:`BASE_SCHEMA`); :data:`MIGRATIONS` bring it, step by step and in one
transaction (:meth:`misp_ti.state.StateStore._migrate`), to
:data:`SCHEMA_VERSION`. A new file is built the same way, so every path
through the migrations is the one a new file takes too.
"""

from __future__ import annotations

#: The source of a single ``[misp]`` table, and of every row a version 1 or
#: 2 file holds (those files knew only one MISP).
DEFAULT_SOURCE = "default"

#: Version 1: cursors, in-progress cycles and schedules keyed by stream.
BASE_SCHEMA = """
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


def _keyed_by_source(table: str, columns: str, key: str, copied: str) -> str:
    """Rebuild ``table`` with a ``source`` column leading its key (SQLite
    cannot change a primary key in place); every old row becomes ``default``'s."""
    return f"""
CREATE TABLE {table}_v3 (
    source TEXT NOT NULL DEFAULT '{DEFAULT_SOURCE}',
    {columns},
    PRIMARY KEY (source, {key})
);
INSERT INTO {table}_v3 (source, {copied}) SELECT '{DEFAULT_SOURCE}', {copied} FROM {table};
DROP TABLE {table};
ALTER TABLE {table}_v3 RENAME TO {table};
"""


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
    # several MISP servers (#13): `source` leads every per-stream key, and
    # misp_ti_source records which MISP URL each source's cursors belong to
    3: _keyed_by_source(
        "misp_ti_cursor",
        "stream TEXT NOT NULL, cursor TEXT NOT NULL, updated_at INTEGER NOT NULL",
        "stream",
        "stream, cursor, updated_at",
    )
    + _keyed_by_source(
        "misp_ti_cycle",
        "stream TEXT NOT NULL, started_at INTEGER NOT NULL, refetch INTEGER NOT NULL, start_cursor TEXT, checkpoint TEXT",
        "stream",
        "stream, started_at, refetch, start_cursor, checkpoint",
    )
    + _keyed_by_source(
        "misp_ti_schedule",
        "stream TEXT NOT NULL, name TEXT NOT NULL, last_at INTEGER NOT NULL",
        "stream, name",
        "stream, name, last_at",
    )
    + _keyed_by_source(
        "misp_ti_cycle_log",
        "stream TEXT NOT NULL, outcome TEXT NOT NULL CHECK (outcome IN ('completed', 'failed')), "
        "finished_at INTEGER NOT NULL, records INTEGER NOT NULL DEFAULT 0, documents INTEGER NOT NULL DEFAULT 0, "
        "pipeline_errors INTEGER NOT NULL DEFAULT 0, dead_letters INTEGER NOT NULL DEFAULT 0, error TEXT, "
        "failures_in_row INTEGER NOT NULL DEFAULT 0",
        "stream, outcome",
        "stream, outcome, finished_at, records, documents, pipeline_errors, dead_letters, error, failures_in_row",
    )
    + """
CREATE TABLE IF NOT EXISTS misp_ti_source (
    source TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    bound_at INTEGER NOT NULL
);
""",
}

#: The layout this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = max(MIGRATIONS)


def statements(script: str) -> list[str]:
    """The statements of ``script`` (none of ours holds a ``;`` in a literal)."""
    return [s for s in script.split(";") if s.strip()]


def legacy_views(version: int) -> list[str]:
    """For a reader of a version 1 or 2 file, which it must not migrate:
    TEMP views (searched before the file's own tables) that show its rows as
    ``default``'s, the way version 3 keys them, and an empty binding table."""
    if version >= 3:
        return []
    tables = ["misp_ti_cursor", "misp_ti_cycle", "misp_ti_schedule"] + (["misp_ti_cycle_log"] if version == 2 else [])
    views = [f"CREATE TEMP VIEW {t} AS SELECT '{DEFAULT_SOURCE}' AS source, * FROM main.{t}" for t in tables]
    return [*views, "CREATE TEMP TABLE misp_ti_source (source TEXT PRIMARY KEY, url TEXT NOT NULL, bound_at INTEGER NOT NULL)"]
