"""The state's schema version and cycle history, status' health rules, the
MISP client's request observer (in process, manual clocks)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from misp_ti.config import Config, build_config
from misp_ti.errors import ConfigError
from misp_ti.misp.client import MispClient
from misp_ti.service.metrics import Metrics, MetricsServer
from misp_ti.service.runner import health_check
from misp_ti.service.status import StatusInputs, collect
from misp_ti.state import SCHEMA_VERSION, CycleOutcome, StateError, StateStore, StateVersionError
from misp_ti.timeutil import utcnow

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

VERSION_1 = """
CREATE TABLE misp_ti_cursor (stream TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE misp_ti_cycle (stream TEXT PRIMARY KEY, started_at INTEGER NOT NULL, refetch INTEGER NOT NULL,
    start_cursor TEXT, checkpoint TEXT);
CREATE TABLE misp_ti_schedule (stream TEXT NOT NULL, name TEXT NOT NULL, last_at INTEGER NOT NULL,
    PRIMARY KEY (stream, name));
CREATE TABLE misp_ti_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO misp_ti_cursor VALUES ('threat_attributes', '{"last_timestamp": 1700000000}', 1700000000);
"""


def test_a_version_1_file_is_migrated_keeping_its_cursor(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(VERSION_1)
    state = StateStore(path)
    assert state.schema_version == SCHEMA_VERSION
    assert state.get_cursor("threat_attributes") == {"last_timestamp": 1700000000}
    state.record_outcome(CycleOutcome("threat_attributes", "completed", NOW, records=3))
    assert state.history("threat_attributes")["completed"].records == 3
    state.close()


def test_a_newer_file_is_refused_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for opener in (StateStore, StateStore.open_readonly):
        with pytest.raises(StateVersionError, match="newer misp-ti") as refused:
            opener(path)
        assert refused.value.exit_code == 2


def test_read_only_opening_creates_and_migrates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state file") as missing:
        StateStore.open_readonly(tmp_path / "none.db")
    assert missing.value.exit_code == 2 and not (tmp_path / "none.db").exists()
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(VERSION_1)
    reader = StateStore.open_readonly(path)
    assert reader.schema_version == 0 and reader.history("threat_attributes") == {}
    assert reader.get_cursor("threat_attributes") == {"last_timestamp": 1700000000}
    reader.close()


def test_the_history_keeps_one_row_per_outcome_and_counts_failures_in_a_row(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    for minute in range(3):
        state.record_outcome(CycleOutcome("s", "failed", NOW + timedelta(minutes=minute), error=f"boom {minute}"))
    failed = state.history("s")["failed"]
    assert (failed.failures_in_row, failed.error) == (3, "boom 2")
    state.record_outcome(CycleOutcome("s", "completed", NOW + timedelta(minutes=5), records=7))
    history = state.history("s")
    assert history["failed"].failures_in_row == 0 and history["failed"].error == "boom 2"
    state.record_outcome(CycleOutcome("s", "failed", NOW + timedelta(minutes=6), error="again"))
    assert state.history("s")["failed"].failures_in_row == 1
    rows = state._conn.execute("SELECT count(*) FROM misp_ti_cycle_log").fetchone()[0]
    assert rows == 2
    state.close()


def _config(tmp_path: Path, **service: object) -> Config:
    return build_config(
        {
            "streams": {"threat_attributes": {"enabled": True, "interval": "5m"}},
            "output": {"sinks": ["sqlite"], "sqlite": {"path": str(tmp_path / "store.db")}},
            "plugins": {"entrypoints": False},
            "service": service,
        },
        source="test",
    )


def _inputs(tmp_path: Path, **service: object) -> StatusInputs:
    return StatusInputs(_config(tmp_path, **service), ("threat_attributes",), timedelta(days=1))


def test_health_turns_degraded_when_no_cycle_completed_for_three_intervals(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    assert collect(inputs, now=NOW)[0] == 2  # no state at all
    state = StateStore(tmp_path / "store.db")
    state.record_outcome(CycleOutcome("threat_attributes", "completed", NOW))
    state.set_last_run("threat_attributes", "refetch", NOW)
    state.close()
    code, report = collect(inputs, now=NOW + timedelta(minutes=15))
    assert code == 0, report
    assert report["streams"]["threat_attributes"]["next_refetch"] == "2026-06-02T12:00:00.000Z"
    code, report = collect(inputs, now=NOW + timedelta(minutes=15, seconds=1))
    assert code == 1 and "no cycle completed since" in report["reasons"][0]


def test_degraded_after_intervals_sets_the_stale_limit_of_status_and_healthz(tmp_path: Path) -> None:
    finished = utcnow() - timedelta(minutes=11)  # 2.2 intervals of 5 minutes ago
    state = StateStore(tmp_path / "store.db")
    state.record_outcome(CycleOutcome("threat_attributes", "completed", finished))
    state.close()
    assert collect(_inputs(tmp_path), now=finished + timedelta(minutes=11))[0] == 0  # default: 3 intervals
    code, report = collect(_inputs(tmp_path, degraded_after_intervals=2), now=finished + timedelta(minutes=11))
    assert code == 1 and "(more than 2 intervals of 300s)" in report["reasons"][0]
    # /healthz asks the same rule with the running engine's config
    for intervals, expected in ((3, 200), (2, 503)):
        engine = SimpleNamespace(config=_config(tmp_path, degraded_after_intervals=intervals), refetch_interval=None)
        with MetricsServer(Metrics(), health_check(engine)) as server:
            reply = httpx.get(f"{server.url}/healthz", timeout=60)
        assert reply.status_code == expected, reply.text


@pytest.mark.parametrize("value", [0, -1, 1001, "three"])
def test_degraded_after_intervals_out_of_range_names_the_key(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="degraded_after_intervals"):
        _config(tmp_path, degraded_after_intervals=value)


def test_the_client_reports_every_request_to_its_observer() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json={"response": {"Attribute": []}})])
    seen: list[tuple[object, bool]] = []
    settings = build_config(
        {"misp": {"url": "https://misp.example", "api_key": "k" * 40, "backoff_initial": "0s"}}, source="test"
    ).misp
    client = MispClient(
        settings,
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=lambda seconds: None,
        observer=lambda status, seconds, *, retry: seen.append((status, retry)),
    )
    client.search("attributes", {})
    assert seen == [(503, False), (200, True)]
    broken = MispClient(
        settings, transport=httpx.MockTransport(lambda request: (_ for _ in ()).throw(httpx.ConnectError("no"))),
        sleep=lambda seconds: None, observer=lambda status, seconds, *, retry: seen.append((status, retry)),
    )
    with pytest.raises(Exception, match="failed after"):
        broken.search("attributes", {})
    assert seen[2:4] == [("error", False), ("error", True)]


def test_a_state_path_at_random_bytes_or_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    import sqlite3

    from misp_ti.state import StateError, StateStore

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(StateError) as info:
        StateStore(garbage)
    assert info.value.exit_code == 2 and "garbage.db cannot be opened: file is not a database" in str(info.value)

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StateError) as info:
        StateStore(foreign)
    assert info.value.exit_code == 2
    assert "another program's SQLite database (tables: invoices), not a misp-ti state" in str(info.value)
    conn = sqlite3.connect(foreign)
    try:  # left as it was: no misp_ti tables, not switched to WAL
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["invoices"]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()
    # an empty file and an embedded store are taken as before
    StateStore(tmp_path / "new.db").close()
