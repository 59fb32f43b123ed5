"""Broken embedded stores: one line naming the file and what is wrong, exit 2, never a traceback.

Random bytes, another program's SQLite file, a store of a newer misp-ti, a
read-only file, a full disk, the file deleted or replaced while a run
writes to it; the store is created 0600 whatever the umask, and a schema 1
store is read as it is (read-only) and migrated when opened for writing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from helpers.fakeplugins import ListSource, make_attributes
from misp_ti.default_plugins import sqlite_sink
from misp_ti.engine import Engine
from misp_ti.errors import StoreError
from misp_ti.sinks.sqlite import SCHEMA_VERSION, EmbeddedStore

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = int(NOW.timestamp()) - 3600


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "misp_ti", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=dict(os.environ))


def assert_one_line(done: subprocess.CompletedProcess[str], path: Path, *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert str(path) in line and all(w in line for w in words), line


def provision_config(tmp_path: Path, store: Path) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[output]\nsinks = ["sqlite"]\n[output.sqlite]\npath = "{store}"\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n[plugins]\nentrypoints = false\n'
    )
    return config


def random_bytes(path: Path) -> Path:
    path.write_bytes(os.urandom(8192))
    return path


def foreign_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('alice')")
    conn.close()
    return path


def newer_store(path: Path) -> Path:
    EmbeddedStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    return path


@pytest.mark.parametrize(("make", "words"), [
    (random_bytes, ("not a SQLite database",)),
    (foreign_sqlite, ("not a misp-ti store", "users")),
    (newer_store, ("newer misp-ti",)),
])
def test_lookup_and_provision_refuse_a_file_that_is_not_a_store(
    tmp_path: Path, make: Callable[[Path], Path], words: tuple[str, ...]
) -> None:
    store = make(tmp_path / "store.db")
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    assert_one_line(run_cli("lookup", "192.0.2.1", "--db", str(store), cwd=tmp_path), store, *words)
    assert_one_line(run_cli("lookup", "-", "--db", str(store), cwd=tmp_path), store, *words)
    assert_one_line(run_cli("--config", str(provision_config(tmp_path, store)), "provision", cwd=tmp_path), store, *words)
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before  # nothing was written into it


def test_lookup_of_a_file_holding_no_store_yet(tmp_path: Path) -> None:
    path = tmp_path / "state-only.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE misp_ti_cursor (stream TEXT PRIMARY KEY, cursor TEXT)")
    conn.close()
    assert_one_line(run_cli("lookup", "x", "--db", str(path), cwd=tmp_path), path, "no store yet")


def filled_store(tmp_path: Path, list_engine: Callable[..., Engine]) -> Path:
    with list_engine(ListSource(make_attributes(3, start_ts=RECENT)), clock=NOW) as engine:
        engine.run_once()
    return tmp_path / "store.db"


def test_lookup_opens_the_store_read_only(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    store = filled_store(tmp_path, list_engine)
    for extra in tmp_path.glob("store.db-*"):
        extra.unlink()  # a cleanly closed WAL store: no -wal, no -shm
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    store.chmod(0o444)
    tmp_path.chmod(0o555)  # not even a -shm can be created beside it
    try:
        done = run_cli("lookup", "10.0.0.1", "--db", str(store), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        batch = run_cli("lookup", "-", "--db", str(store), cwd=tmp_path)
        assert batch.returncode == 0 and batch.stdout == ""  # no values, nothing missing
    finally:
        tmp_path.chmod(0o755)
        store.chmod(0o600)
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before


def test_writing_to_a_read_only_store_is_one_line_exit_2(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    engine = list_engine(ListSource(make_attributes(4, start_ts=RECENT)), clock=NOW, state={"path": str(tmp_path / "state.db")})
    engine.provision()
    store = engine.stash[sqlite_sink.STORE]
    # root ignores file modes; query_only makes SQLite itself refuse the write,
    # with the same "attempt to write a readonly database" a 0444 file gives
    store.conn.execute("PRAGMA query_only = 1")
    with pytest.raises(StoreError) as caught:
        engine.run_once()
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert str(store.path) in message and "is read-only" in message and "refused a batch of 4" in message
    assert engine.state.get_cursor("threat_attributes") is None
    store.conn.execute("PRAGMA query_only = 0")
    engine.run_once()
    assert len(store.active_keys(now=NOW)) == 4
    engine.close()


def test_a_full_disk_is_named_not_hidden_by_the_rollback(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    docs = [{"_id": f"d{i}", "event": {"dataset": "ti_misp.threat_attributes"}, "threat": {"indicator": {"ip": f"10.0.{i // 250}.{i % 250}"}},
             "misp": {"attribute": {"uuid": f"u{i}", "value": os.urandom(600).hex()}}} for i in range(300)]
    with pytest.raises(StoreError) as caught:
        store.write(docs, ingested=NOW, retention_cutoff=None)
    assert "disk is full" in str(caught.value) and "cannot rollback" not in str(caught.value)
    assert not store.conn.in_transaction
    assert store.counts(now=NOW)["source_documents"] == 0  # the batch was rolled back whole


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_deleted_or_replaced_during_a_run_is_not_confirmed(
    tmp_path: Path, list_engine: Callable[..., Engine], how: str
) -> None:
    engine = list_engine(ListSource(make_attributes(5, start_ts=RECENT)), clock=NOW, state={"path": str(tmp_path / "state.db")})
    engine.provision()
    path = tmp_path / "store.db"
    for extra in [path, *tmp_path.glob("store.db-*")]:
        extra.unlink()
    if how == "replaced":
        EmbeddedStore(path).close()
    with pytest.raises(StoreError, match=f"store.db: refused a batch of 5 .*was {how}"):
        engine.run_once()
    assert engine.state.get_cursor("threat_attributes") is None
    engine.close()


def test_the_cli_once_fails_with_one_line_when_the_store_goes_away(
    tmp_path: Path, list_engine: Callable[..., Engine]
) -> None:
    # the CLI wraps the same StoreError; here through handle_errors directly
    from misp_ti.cli import handle_errors

    engine = list_engine(ListSource(make_attributes(2, start_ts=RECENT)), clock=NOW, state={"path": str(tmp_path / "state.db")})
    engine.provision()
    (tmp_path / "store.db").unlink()

    @handle_errors
    def once() -> None:
        engine.run_once()

    with pytest.raises(SystemExit) as exited:
        once()
    assert exited.value.code == 2
    engine.close()


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_store_and_its_wal_are_created_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        store = EmbeddedStore(tmp_path / "new" / "s.db")
        store.write([{"_id": "x", "event": {"dataset": "d"}, "misp": {"attribute": {"uuid": "u", "value": "v"}}}],
                    ingested=NOW, retention_cutoff=None)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "new").iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert {"s.db", "s.db-wal", "s.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes


V1_SCHEMA = """
CREATE TABLE source (id TEXT PRIMARY KEY, dataset TEXT NOT NULL, uuid TEXT, ingested INTEGER NOT NULL, doc BLOB NOT NULL);
CREATE INDEX source_ingested ON source (ingested);
CREATE TABLE latest (dataset TEXT NOT NULL, uuid TEXT NOT NULL, id TEXT NOT NULL, ingested INTEGER NOT NULL,
    attr_ts INTEGER NOT NULL, decayed INTEGER NOT NULL, decayed_at INTEGER NOT NULL, indicator_type TEXT,
    doc BLOB NOT NULL, PRIMARY KEY (dataset, uuid));
CREATE TABLE latest_value (dataset TEXT NOT NULL, uuid TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (dataset, uuid, value));
CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO store_meta VALUES ('schema_version', '1');
"""


def v1_store(path: Path) -> None:
    """A store as misp-ti wrote it with schema 1: every document in source and latest, values lower-cased."""
    until = int((NOW + timedelta(days=3)).timestamp() * 1000)
    good = {"_id": "g1", "event": {"kind": "enrichment", "dataset": "ti_misp.threat_attributes"},
            "threat": {"indicator": {"type": "ipv6-addr", "ip": "2001:DB8:0:0::5"}},
            "misp": {"attribute": {"uuid": "u1", "value": "2001:DB8:0:0::5", "decayed": False}}}
    bad = {"_id": "e1", "event": {"kind": "pipeline_error", "dataset": "ti_misp.threat_attributes"}, "error": {"message": "x"}}
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
        for d in (good, bad):
            conn.execute("INSERT INTO source VALUES (?, ?, ?, ?, ?)", (d["_id"], d["event"]["dataset"], None, 1, orjson.dumps(d)))
        conn.execute("INSERT INTO latest VALUES ('ti_misp.threat_attributes', 'u1', 'g1', 1, 1, 0, ?, 'ipv6-addr', ?)",
                     (until, orjson.dumps(good)))
        conn.execute("INSERT INTO latest_value VALUES ('ti_misp.threat_attributes', 'u1', '2001:db8:0:0::5')")
    conn.close()


def test_a_schema_1_store_is_read_as_it_is_then_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    v1_store(path)
    reader = EmbeddedStore(path, readonly=True)
    assert reader.version == 1
    assert [d["_id"] for d in reader.lookup("2001:db8:0:0::5", now=NOW)] == ["g1"]
    assert reader.counts(now=NOW)["pipeline_errors"] == 1
    reader.close()
    store = EmbeddedStore(path)
    assert store.version == SCHEMA_VERSION
    assert store.conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    assert [d["_id"] for d in store.lookup("2001:db8::5", now=NOW)] == ["g1"]  # canonical keys after the migration
    counts = store.counts(now=NOW)
    assert (counts["source_documents"], counts["active"], counts["pipeline_errors"]) == (2, 1, 1)
    assert store.conn.execute("SELECT count(*) FROM source WHERE error IS NOT NULL").fetchone()[0] == 1
    store.write([{"_id": "g2", "@timestamp": "2030-01-01T00:00:00Z", "event": {"dataset": "ti_misp.threat_attributes"},
                  "threat": {"indicator": {"ip": "192.0.2.8"}},
                  "misp": {"attribute": {"uuid": "u1", "value": "192.0.2.8", "decayed": False,
                                         "decayed_at": "2999-01-01T00:00:00Z"}}}],
                ingested=NOW, retention_cutoff=None)
    assert store.lookup("2001:db8::5", now=NOW) == [] and [d["_id"] for d in store.lookup("192.0.2.8", now=NOW)] == ["g2"]
    store.close()
