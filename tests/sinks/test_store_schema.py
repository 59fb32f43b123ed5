"""Store schema 3 against a store the schema 2 code wrote (``tests/data/store-v2``).

The fixture file, its documents and the answers of that code's ``misp-ti
lookup -`` were made by ``tests/data/store-v2/make_store_v2.py`` with the
schema 2 code. Read as it is or migrated, the store gives the same answers,
byte for byte; rebuilt from the same documents by today's code, the same but
for each hit's ``value`` (null in schema 2's code for most documents).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from misp_ti.sinks import sqlite_schema
from misp_ti.sinks.sqlite import SCHEMA_VERSION, EmbeddedStore
from misp_ti.sinks.sqlite_dictionary import DOC_DICTIONARY
from misp_ti.sinks.sqlite_schema import doc_json

DATA = Path(__file__).resolve().parent.parent / "data" / "store-v2"
NOW = datetime(2026, 1, 21, tzinfo=UTC)


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    path = tmp_path / "v2.db"
    path.write_bytes(gzip.decompress((DATA / "store.db.gz").read_bytes()))
    return path


def lookup(db: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "misp_ti", "lookup", "-", *args, "--db", str(db)],
        input=(DATA / "values.txt").read_bytes(), capture_output=True, timeout=120, env=dict(os.environ),
    )


def assert_answers_as_schema_2(db: Path) -> None:
    for args, expected in ((["--json"], "expected.ndjson"), ([], "expected.txt")):
        done = lookup(db, *args)
        assert done.returncode == 1, done.stderr  # some asked values are absent
        assert done.stdout == (DATA / expected).read_bytes()


def store_state(store: EmbeddedStore) -> tuple[object, ...]:
    """What every reader sees: the latest rows, the documents' JSON, the active view, the counts."""
    docs = {(d, u): doc_json(body) for d, u, body in store.conn.execute("SELECT dataset, uuid, doc FROM latest")}
    hits = dict(((d, u), h) for d, u, h in store.conn.execute("SELECT dataset, uuid, hit FROM latest"))
    return store.latest_snapshot(), docs, hits, list(store.active(now=NOW)), store.counts(now=NOW)


def test_the_dictionary_is_part_of_schema_3() -> None:
    # a schema 3 document can only be read with these exact bytes: a new
    # dictionary is a new schema version, whose reader keeps this one
    assert SCHEMA_VERSION == 3
    assert hashlib.sha256(DOC_DICTIONARY).hexdigest() == "986512df848a71b19601cdf38bf9222173ac62f75618a38b555d063cc2a5423a"


def test_a_schema_2_store_is_read_as_it_is_without_a_write(v2: Path) -> None:
    before = hashlib.sha256(v2.read_bytes()).digest()
    store = EmbeddedStore(v2, readonly=True)
    assert store.version == 2
    assert store._network_prefixes() == [(4, 24)]  # found by a scan: schema 2 has no latest_prefix
    store.close()
    assert_answers_as_schema_2(v2)
    assert hashlib.sha256(v2.read_bytes()).digest() == before


def test_opening_a_schema_2_store_for_writing_migrates_it_and_the_answers_stay(v2: Path) -> None:
    reader = EmbeddedStore(v2, readonly=True)
    old = store_state(reader)
    old_bodies = dict(reader.conn.execute("SELECT uuid, length(doc) FROM latest"))
    old_rows = dict(reader.conn.execute("SELECT uuid, rowid FROM latest"))
    reader.close()

    store = EmbeddedStore(v2)
    assert store.version == SCHEMA_VERSION == 3
    assert store.conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone() == ("3",)
    assert store_state(store) == old  # same JSON, byte for byte, same rows, same answers
    assert dict(store.conn.execute("SELECT uuid, row FROM latest")) == old_rows  # latest_value still points right
    new_bodies = dict(store.conn.execute("SELECT uuid, length(doc) FROM latest"))
    assert sum(new_bodies.values()) < 0.75 * sum(old_bodies.values())
    assert list(store.conn.execute("SELECT version, length FROM latest_prefix")) == [(4, 24)]
    store.close()
    assert_answers_as_schema_2(v2)


def test_a_failed_migration_leaves_the_schema_2_store_as_it_was(v2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = EmbeddedStore(v2, readonly=True)
    before = store_state(reader)
    reader.close()

    def fail(key: str) -> None:
        raise sqlite3.OperationalError("disk I/O error (simulated, after latest was rebuilt)")

    monkeypatch.setattr(sqlite_schema, "prefix_of", fail)
    with pytest.raises(Exception, match="I/O error"):
        EmbeddedStore(v2)
    monkeypatch.undo()
    reader = EmbeddedStore(v2, readonly=True)
    assert reader.version == 2
    assert store_state(reader) == before
    assert {name for (name,) in reader.conn.execute("SELECT name FROM sqlite_master")} >= {"latest", "latest_value", "source"}
    assert reader.conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('latest_v3', 'latest_prefix')").fetchone() == (0,)
    reader.close()
    assert_answers_as_schema_2(v2)


def test_a_store_written_by_schema_3_answers_as_schema_2_did(tmp_path: Path, v2: Path) -> None:
    path = tmp_path / "v3.db"
    store = EmbeddedStore(path)
    for line in gzip.decompress((DATA / "batches.ndjson.gz").read_bytes()).splitlines():
        batch = orjson.loads(line)
        ingested = datetime.fromisoformat(batch["ingested"])
        cutoff = datetime(2026, 1, 10, tzinfo=UTC) if ingested.day == 20 else None
        store.write(batch["docs"], ingested=ingested, retention_cutoff=cutoff)
    reader = EmbeddedStore(v2, readonly=True)
    # the one intended change since schema 2: a hit names its value (schema 2's
    # code wrote null for every document whose value the transform moves into
    # threat.indicator, i.e. nearly all)
    *rest, hits = store_state(store)[:3]
    *old_rest, old_hits = store_state(reader)[:3]
    assert rest == old_rest and store_state(store)[3:] == store_state(reader)[3:]
    assert {key: without_value(hit) for key, hit in hits.items()} == {key: without_value(hit) for key, hit in old_hits.items()}
    assert all(isinstance(orjson.loads(hit)["value"], str) for hit in hits.values())
    reader.close()
    store.close()
    done = lookup(path, "--json")
    assert done.returncode == 1, done.stderr
    answers = [orjson.loads(line) for line in done.stdout.splitlines()]
    expected = [orjson.loads(line) for line in (DATA / "expected.ndjson").read_bytes().splitlines()]
    assert [strip_values(a) for a in answers] == [strip_values(a) for a in expected]
    found = [hit for answer in answers for hit in answer["hits"]]
    assert found and all(hit["value"] for hit in found)
    hashes = [(answer["value"], hit["value"]) for answer in answers for hit in answer["hits"]
              if len(answer["value"]) in (32, 40, 64) and all(c in "0123456789abcdef" for c in answer["value"])]
    assert hashes and all(asked in shown.lower() for asked, shown in hashes)  # the hash itself, or filename|hash


def without_value(hit: bytes) -> dict[str, object]:
    return {k: v for k, v in orjson.loads(hit).items() if k != "value"}


def strip_values(answer: dict[str, object]) -> dict[str, object]:
    return {**answer, "hits": [without_value(orjson.dumps(hit)) for hit in answer["hits"]]}  # type: ignore[attr-defined]


def test_vacuum_keeps_every_lookup_key_on_its_row(tmp_path: Path) -> None:
    # latest_value refers to latest.row, a declared INTEGER PRIMARY KEY: SQLite
    # documents that VACUUM may renumber an implicit rowid (schema 2's; this
    # SQLite happens to keep them) but never a declared one
    # (https://www.sqlite.org/lang_vacuum.html)
    path = tmp_path / "s.db"
    store = EmbeddedStore(path)

    def doc(uuid: str, value: str, decayed_at: str) -> dict[str, object]:
        return {"_id": f"id-{uuid}", "@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "ti_misp.threat_attributes"},
                "threat": {"indicator": {"url": {"domain": value}}},
                "misp": {"attribute": {"uuid": uuid, "decayed": False, "decayed_at": decayed_at}}}

    store.write([doc("a", "first.example", "2026-01-02T00:00:00Z")], ingested=datetime(2026, 1, 1, tzinfo=UTC), retention_cutoff=None)
    store.write([doc(f"u{i}", f"host{i}.example", "2999-01-01T00:00:00Z") for i in range(50)],
                ingested=datetime(2026, 1, 20, tzinfo=UTC), retention_cutoff=datetime(2026, 1, 10, tzinfo=UTC))
    assert store.lookup("first.example", now=NOW) == []  # forgotten by retention: a gap before every other row
    before = {f"host{i}.example": [d["_id"] for d in store.lookup(f"host{i}.example", now=NOW)] for i in range(50)}
    store.conn.execute("VACUUM")
    after = {f"host{i}.example": [d["_id"] for d in store.lookup(f"host{i}.example", now=NOW)] for i in range(50)}
    store.close()
    assert after == before == {f"host{i}.example": [f"id-u{i}"] for i in range(50)}


def test_a_corrupt_document_is_one_line_naming_the_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = EmbeddedStore(path)
    store.write([{"_id": "x", "@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "ti_misp.threat_attributes"},
                  "threat": {"indicator": {"ip": "192.0.2.1"}},
                  "misp": {"attribute": {"uuid": "u", "decayed": False, "decayed_at": "2999-01-01T00:00:00Z"}}}],
                ingested=NOW, retention_cutoff=None)
    store.conn.execute("UPDATE latest SET doc = x'78bb0000deadbeef'")
    store.close()
    done = subprocess.run([sys.executable, "-m", "misp_ti", "lookup", "192.0.2.1", "--json", "--db", str(path)],
                          capture_output=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "corrupt" in lines[0] and str(path) in lines[0] and "Traceback" not in lines[0]
