"""The embedded store's file: schema, what a file is, migrations, document encoding.

See :mod:`misp_ti.sinks.sqlite` for what the tables mean.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import orjson

from misp_ti.errors import StoreError
from misp_ti.sinks.sqlite_keys import hit_summary, lookup_keys

SCHEMA_VERSION = 2

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS source (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    uuid TEXT,
    ingested INTEGER NOT NULL,
    error BLOB
) WITHOUT ROWID;
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
    hit BLOB,
    PRIMARY KEY (dataset, uuid)
);
CREATE INDEX IF NOT EXISTS latest_decayed_at ON latest (decayed_at);
CREATE TABLE IF NOT EXISTS latest_value (
    value TEXT NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (value, row)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS latest_value_row ON latest_value (row);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

STORE_TABLES = frozenset({"source", "latest", "latest_value", "store_meta"})

# what SQLite says -> what a user reads
_REASONS = (
    ("disk is full", "the disk is full"),
    ("readonly", "is read-only"),
    ("read-only", "is read-only"),
    ("not a database", "is not a SQLite database"),
    ("unable to open", "cannot be opened (missing, or no permission on it or its directory)"),
    ("malformed", "is corrupt"),
    ("disk i/o error", "cannot be read or written (I/O error)"),
)


def describe_error(exc: sqlite3.Error) -> str | None:
    """A user's words for a SQLite failure of the file itself, or ``None``
    for a passing one (the store is locked, busy)."""
    text = str(exc)
    lowered = text.lower()
    for needle, reason in _REASONS:
        if needle in lowered:
            return f"{reason} ({text})"
    return None


def encode_doc(doc: dict[str, Any]) -> bytes:
    """A latest row's ``doc``: the document's JSON, zlib-compressed (level 1)."""
    return zlib.compress(orjson.dumps(doc), 1)


def decode_doc(body: bytes | str) -> dict[str, Any]:
    """A latest row's ``doc`` as a document: compressed (schema 2) or plain JSON (schema 1)."""
    if isinstance(body, bytes) and body[:1] == b"x":
        body = zlib.decompress(body)
    return orjson.loads(body)


def create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists (SQLite's ``-wal`` and ``-shm`` copy its mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
    finally:
        os.close(fd)


def check_store(conn: sqlite3.Connection, path: Path, tables: set[str], *, readonly: bool) -> int:
    """The store's schema version (0: no store yet), or a :class:`StoreError`."""
    if "store_meta" in tables:
        row = conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
        try:
            version = int(row[0]) if row else 0
        except ValueError:
            version = 0
        if version > SCHEMA_VERSION:
            raise StoreError(path, f"written by a newer misp-ti (store schema {version}; this one knows up to {SCHEMA_VERSION})")
        if version < 1 or not {"latest", "latest_value", "source"} <= tables:
            raise StoreError(path, "is not a misp-ti store (its store_meta table is not misp-ti's)")
        return version
    foreign = sorted(t for t in tables - STORE_TABLES if not t.startswith(("misp_ti_", "sqlite_")))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise StoreError(path, f"is not a misp-ti store (it holds another program's tables: {shown})")
    if readonly:
        raise StoreError(path, "holds no store yet (run `misp-ti once` first)")
    return 0



def migrate_from_1(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2, inside the caller's transaction."""
    # imported here: opening a store (lookup) needs no ECS code
    from misp_ti.ecs import is_pipeline_error

    conn.execute(
        "CREATE TABLE source_v2 (id TEXT PRIMARY KEY, dataset TEXT NOT NULL, uuid TEXT, "
        "ingested INTEGER NOT NULL, error BLOB) WITHOUT ROWID"
    )
    rows = conn.execute("SELECT id, dataset, uuid, ingested, doc FROM source")
    while chunk := rows.fetchmany(2000):
        conn.executemany(
            "INSERT INTO source_v2 VALUES (?, ?, ?, ?, ?)",
            [(i, d, u, ing, doc if is_pipeline_error(orjson.loads(doc)) else None) for i, d, u, ing, doc in chunk],
        )
    conn.execute("DROP TABLE source")
    conn.execute("ALTER TABLE source_v2 RENAME TO source")
    conn.execute("ALTER TABLE latest ADD COLUMN hit BLOB")
    conn.execute("DROP TABLE latest_value")
    conn.execute("CREATE TABLE latest_value (value TEXT NOT NULL, row INTEGER NOT NULL, PRIMARY KEY (value, row)) WITHOUT ROWID")
    rows = conn.execute("SELECT rowid, doc FROM latest")
    while chunk := rows.fetchmany(2000):
        docs = [(rowid, decode_doc(body)) for rowid, body in chunk]
        conn.executemany(
            "INSERT OR IGNORE INTO latest_value (value, row) VALUES (?, ?)",
            [(key, rowid) for rowid, doc in docs for key in lookup_keys(doc)],
        )
        conn.executemany("UPDATE latest SET hit = ? WHERE rowid = ?", [(orjson.dumps(hit_summary(doc)), rowid) for rowid, doc in docs])
