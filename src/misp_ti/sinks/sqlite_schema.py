"""The embedded store's file: schema, what a file is, migrations, body encoding.

See :mod:`misp_ti.sinks.sqlite` for what the tables mean. A latest row's
``doc`` says how it is stored by its first byte: ``{`` is plain JSON
(schema 1), anything else a zlib stream (schema 2: no dictionary; schema 3:
the preset dictionary of :mod:`misp_ti.sinks.sqlite_dictionary`). One
reader therefore reads every version, and a read-only open of an older
store needs no migration. ``hit`` is plain JSON (schema 2 and 3).
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import orjson

from misp_ti.errors import StoreError
from misp_ti.sinks.sqlite_dictionary import DOC_DICTIONARY
from misp_ti.sinks.sqlite_keys import hit_summary, lookup_keys, prefix_of

SCHEMA_VERSION = 3

#: The ``(IP version, prefix length)`` of every network ever stored as a
#: lookup key (schema 3): what an address query also asks, without scanning
#: ``latest_value``. Never pruned: a length no longer held only costs a key.
PREFIX_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS latest_prefix (version INTEGER NOT NULL, length INTEGER NOT NULL, "
    "PRIMARY KEY (version, length)) WITHOUT ROWID"
)

# ``row`` names the rowid, which latest_value refers to: an implicit rowid
# may be renumbered by VACUUM, a declared INTEGER PRIMARY KEY never is
# (schema 2 had the implicit one)
_LATEST_TABLE_SQL = """CREATE TABLE IF NOT EXISTS {name} (
    row INTEGER PRIMARY KEY,
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
    UNIQUE (dataset, uuid)
)"""

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS source (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    uuid TEXT,
    ingested INTEGER NOT NULL,
    error BLOB
) WITHOUT ROWID;
""" + _LATEST_TABLE_SQL.format(name="latest") + """;
CREATE INDEX IF NOT EXISTS latest_decayed_at ON latest (decayed_at);
CREATE TABLE IF NOT EXISTS latest_value (
    value TEXT NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (value, row)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS latest_value_row ON latest_value (row);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + PREFIX_TABLE_SQL + ";\n"

STORE_TABLES = frozenset({"source", "latest", "latest_value", "latest_prefix", "store_meta"})

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


# zlib level: 6 makes a document ~9 % smaller than 1 (535 against 589 B on
# the benchmark corpus) for ~10 % more CPU per stored document; 1 keeps the
# write path as fast as schema 2's. Not part of the format: any level reads
# back with the same dictionary.
DOC_LEVEL = 1


def _pack(data: bytes, dictionary: bytes, level: int) -> bytes:
    packer = zlib.compressobj(level, zdict=dictionary)
    return packer.compress(data) + packer.flush()


def encode_doc(doc: dict[str, Any]) -> bytes:
    """A latest row's ``doc``: the document's JSON, zlib-compressed with :data:`DOC_DICTIONARY`."""
    return _pack(orjson.dumps(doc), DOC_DICTIONARY, DOC_LEVEL)


def doc_json(body: bytes | str) -> bytes:
    """A latest row's ``doc`` as JSON text, whatever schema wrote it."""
    if isinstance(body, str):
        body = body.encode()
    if body[:1] == b"{":
        return body
    # the dictionary is used only by a stream that asks for it (schema 3, not 2)
    return zlib.decompressobj(zdict=DOC_DICTIONARY).decompress(body)


def decode_doc(body: bytes | str) -> dict[str, Any]:
    """A latest row's ``doc`` as a document, whatever schema wrote it."""
    return orjson.loads(doc_json(body))


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


def migrate_from_2(conn: sqlite3.Connection) -> None:
    """Schema 2 -> 3, inside the caller's transaction: ``latest`` rebuilt
    with every ``doc`` re-encoded with the dictionary (its JSON text kept
    byte for byte) and its rowids declared as ``row`` (kept: ``latest_value``
    refers to them), and the network prefixes of the lookup keys recorded.

    Rebuilt rather than updated in place: the old table's pages go to the
    file's free list, which the next writes use, instead of staying half
    empty. The file itself does not shrink; ``VACUUM`` (safe from schema 3
    on) gives the space back."""
    conn.execute(_LATEST_TABLE_SQL.format(name="latest_v3"))
    columns = "dataset, uuid, id, ingested, attr_ts, decayed, decayed_at, indicator_type, doc, hit"
    rows = conn.execute(f"SELECT rowid, {columns} FROM latest ORDER BY rowid")
    while chunk := rows.fetchmany(2000):
        conn.executemany(
            f"INSERT INTO latest_v3 (row, {columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (*row[:9], _pack(doc_json(row[9]), DOC_DICTIONARY, DOC_LEVEL), row[10]) for row in chunk
            ],
        )
    conn.execute("DROP TABLE latest")
    conn.execute("ALTER TABLE latest_v3 RENAME TO latest")
    conn.execute(PREFIX_TABLE_SQL)
    prefixes = {prefix_of(value) for (value,) in conn.execute("SELECT value FROM latest_value WHERE value GLOB '*/*'")}
    conn.executemany("INSERT OR IGNORE INTO latest_prefix (version, length) VALUES (?, ?)", sorted(p for p in prefixes if p))
