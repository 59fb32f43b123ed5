"""The embedded store's latest view, `misp-ti lookup`, and the NDJSON sink."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.fakeplugins import ListSource, make_attributes
from misp_ti.default_plugins import sqlite_sink
from misp_ti.engine import Engine
from misp_ti.errors import SinkError
from misp_ti.sinks.sqlite import EmbeddedStore

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = int(NOW.timestamp()) - 3600


def lookup(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "misp_ti", "lookup", *args, "--db", str(db)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )


def test_lookup_finds_active_iocs_and_exits_1_otherwise(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    records = make_attributes(3, start_ts=RECENT)
    records.append({**make_attributes(1, start_ts=RECENT - 200 * 86400, prefix="old")[0], "value": "192.0.2.77"})
    with list_engine(ListSource(records), clock=NOW) as engine:
        engine.run_once()
    db = tmp_path / "store.db"
    found = lookup(db, "10.0.0.1")
    assert found.returncode == 0, found.stderr
    assert "1 active IOC" in found.stdout and "a-00000001" in found.stdout
    as_json = lookup(db, "10.0.0.2", "--json")
    assert as_json.returncode == 0
    [doc] = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert doc["misp"]["attribute"]["uuid"] == "a-00000002"
    assert lookup(db, "10.9.9.9").returncode == 1
    expired = lookup(db, "192.0.2.77")  # 200 days old: past the 90 d validity
    assert expired.returncode == 1 and "not an active IOC" in expired.stderr


def test_lookup_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    done = lookup(tmp_path / "missing.db", "10.0.0.1")
    assert done.returncode == 2 and "missing.db: no such file" in done.stderr and "Traceback" not in done.stderr


def test_newest_version_wins_and_old_values_stop_matching(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    records = make_attributes(2, start_ts=RECENT)
    source = ListSource(records)
    clock = {"now": NOW}
    with list_engine(source, clock=lambda: clock["now"]) as engine:
        engine.run_once()
        # MISP edits attribute 1: new value, newer timestamp
        source.records = [{**records[1], "value": "198.51.100.9", "timestamp": str(RECENT + 60)}]
        engine.state.reset("threat_attributes")
        clock["now"] = NOW + timedelta(minutes=10)
        engine.run_once()
    store = EmbeddedStore(tmp_path / "store.db")
    assert store.lookup("10.0.0.1", now=NOW) == []
    [doc] = store.lookup("198.51.100.9", now=NOW)
    assert doc["misp"]["attribute"]["uuid"] == "a-00000001"
    assert len(store.active_keys(now=NOW)) == 2
    # an older copy arriving later (a replay) never overwrites the newer row
    store.write([{**doc, "_id": "replayed-old"}], ingested=NOW - timedelta(days=1), retention_cutoff=None)
    assert store.latest_snapshot()[("ti_misp.threat_attributes", "a-00000001")][0] == doc["_id"]


def test_locked_store_refuses_the_batch_and_keeps_the_cursor(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(5, start_ts=RECENT))
    # cursor state in its own file: only the embedded store is locked here
    engine = list_engine(source, clock=NOW, state={"path": str(tmp_path / "state.db")})
    engine.provision()
    store = engine.stash[sqlite_sink.STORE]
    store.conn.execute("PRAGMA busy_timeout = 100")
    blocker = sqlite3.connect(tmp_path / "store.db")
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(SinkError, match="sqlite store .* refused a batch of 5"):
            engine.run_once()
        assert engine.state.get_cursor("threat_attributes") is None
    finally:
        blocker.rollback()
        blocker.close()
    engine.run_once()
    assert len(EmbeddedStore(tmp_path / "store.db").active_keys(now=NOW)) == 5
    engine.close()


def test_ndjson_sink_writes_one_document_per_line(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    out = tmp_path / "docs.ndjson"
    with list_engine(ListSource(make_attributes(4, start_ts=RECENT)), clock=NOW, output={"sinks": ["ndjson"], "ndjson": {"path": str(out)}}) as engine:
        engine.run_once()
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["misp"]["attribute"]["uuid"] for d in docs] == [f"a-{i:08d}" for i in range(4)]
    assert all(d["_id"] and "decayed_at" in d["misp"]["attribute"] for d in docs)


def doc_for(uuid: str, value: str, ts: int, doc_id: str) -> dict[str, Any]:
    return {
        "_id": doc_id,
        "@timestamp": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "event": {"kind": "enrichment", "dataset": "ti_misp.threat_attributes"},
        "threat": {"indicator": {"type": "ipv4-addr", "ip": value}},
        "misp": {"attribute": {"uuid": uuid, "value": value, "decayed": False,
                               "decayed_at": (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")}},
    }


def test_two_versions_in_one_batch_keep_the_newer(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    store.provision()
    newer = doc_for("u1", "198.51.100.2", RECENT + 10, "v2")
    older = doc_for("u1", "198.51.100.1", RECENT, "v1")
    store.write([newer, older], ingested=NOW, retention_cutoff=None)
    assert store.latest_snapshot()[("ti_misp.threat_attributes", "u1")][0] == "v2"
    assert store.lookup("198.51.100.1", now=NOW) == [] and len(store.lookup("198.51.100.2", now=NOW)) == 1
    assert store.conn.execute("SELECT count(*) FROM source").fetchone()[0] == 2


def test_retention_forgets_old_source_rows_and_long_expired_latest_rows(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    store.provision()
    old = doc_for("old", "192.0.2.1", RECENT - 30 * 86400, "o1")
    old["misp"]["attribute"]["decayed_at"] = (NOW - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    store.write([old], ingested=NOW - timedelta(days=10), retention_cutoff=NOW - timedelta(days=15))
    assert store.latest_snapshot()  # read 10 days ago, within retention then
    store.write([doc_for("new", "192.0.2.2", RECENT, "n1")], ingested=NOW, retention_cutoff=NOW - timedelta(days=5))
    assert store.conn.execute("SELECT id FROM source").fetchall() == [("n1",)]
    assert list(store.latest_snapshot()) == [("ti_misp.threat_attributes", "new")]
    assert store.lookup("192.0.2.1", now=NOW - timedelta(days=30)) == []
