"""Several MISP sources in one config (issue 13): one engine, one store, a
cursor per (source, stream), the state bound to each source's MISP URL."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from misp_ti.config import build_config
from misp_ti.engine import Engine, SourceBindingError
from misp_ti.errors import ConfigError
from misp_ti.simulator import Dataset
from misp_ti.sinks.sqlite import EmbeddedStore
from misp_ti.state import StateStore
from misp_ti.testing.fixtures import DEFAULT_API_KEY

STREAM = "threat_attributes"


def two_source_config(tmp_path: Path, ours: str, partner: str, **streams: Any) -> Any:
    return build_config({
        "misp": {
            "page_size": 50, "backoff_initial": "0.01s", "backoff_max": "0.05s", "max_retries": 1, "request_timeout": "5s",
            "ours": {"url": ours, "api_key": DEFAULT_API_KEY},
            "partner": {"url": partner, "api_key": DEFAULT_API_KEY, "streams": streams},
        },
        "streams": {STREAM: {"enabled": True, "initial_interval": "3650d"}},
        "output": {"sinks": ["sqlite"], "sqlite": {"path": str(tmp_path / "store.db")}},
        "plugins": {"entrypoints": False},
    }, source="test")


def partner_dataset(clock: Any) -> Dataset:
    return Dataset.synthetic(40, seed=7, newest=clock.now(), span=timedelta(days=3))


def test_one_once_fills_one_store_from_two_misps_with_a_cursor_each(misp_server: Any, misp_clock: Any, tmp_path: Path) -> None:
    ours = misp_server()
    partner_data = partner_dataset(misp_clock)
    partner = misp_server(partner_data)
    config = two_source_config(tmp_path, ours.url, partner.url)
    engine = Engine(config, clock=misp_clock)
    results = {r.source: r for r in engine.run_once()}
    first_end = int(misp_clock.now().timestamp())
    ours_count = sum(1 for _ in misp_server.dataset.attributes())
    assert results["ours"].records == ours_count and results["ours"].completed
    assert results["partner"].records == sum(1 for _ in partner_data.attributes())
    assert engine.state.get_cursor(STREAM, source="ours") == {"last_timestamp": first_end}
    assert engine.state.get_cursor(STREAM, source="partner") == {"last_timestamp": first_end}
    assert engine.state.get_cursor(STREAM) is None  # nothing was ever read as the source `default`

    store = EmbeddedStore(tmp_path / "store.db", readonly=True)
    by_source: dict[str, set[str]] = {}
    for row in store.conn.execute("SELECT doc FROM latest"):
        from misp_ti.sinks.sqlite import decode_doc

        doc = decode_doc(row[0])
        by_source.setdefault(doc["labels"]["misp_source"], set()).add(doc["misp"]["attribute"]["uuid"])
        assert doc["threat"]["feed"]["name"] == "MISP"
    store.close()
    assert by_source["partner"] == {a["uuid"] for a in partner_data.attributes()}
    assert by_source["ours"] == {a["uuid"] for a in misp_server.dataset.attributes()}

    # each source's cycle moves its own cursor only
    misp_clock.advance(timedelta(minutes=10))
    assert engine.run_cycle(STREAM, source="ours").completed
    assert engine.state.get_cursor(STREAM, source="ours") == {"last_timestamp": first_end + 600}
    assert engine.state.get_cursor(STREAM, source="partner") == {"last_timestamp": first_end}
    partner.add_attribute(partner_data.events()[0]["uuid"], type="ip-dst", value="198.51.100.77")
    misp_clock.advance(timedelta(minutes=10))
    again = engine.run_cycle(STREAM, source="partner")
    assert again.records >= 1  # the new attribute, read from the partner's own window
    assert engine.state.get_cursor(STREAM, source="partner") == {"last_timestamp": first_end + 1200}
    assert engine.state.get_cursor(STREAM, source="ours") == {"last_timestamp": first_end + 600}
    engine.close()


def test_per_source_stream_settings_override_the_shared_ones(tmp_path: Path) -> None:
    config = two_source_config(tmp_path, "https://a.example", "https://b.example", threat={"enabled": True})
    assert config.for_source("ours").streams.enabled() == [STREAM]
    assert config.for_source("partner").streams.enabled() == [STREAM, "threat"]
    assert config.for_source("partner").streams.settings(STREAM).initial_interval == timedelta(days=3650)
    with pytest.raises(ConfigError, match=r"--source nope: unknown source; the config's sources: ours, partner"):
        config.for_source("nope")


def test_url_and_named_tables_together_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^misp\.url: set either one MISP in \[misp\] or named sources"):
        build_config({"misp": {"url": "https://a.example", "b": {"url": "https://b.example"}}})
    with pytest.raises(ConfigError, match=r"misp\.b\.page_size: bad value 0"):
        build_config({"misp": {"b": {"url": "https://b.example", "page_size": 0}}})
    with pytest.raises(ConfigError, match=r"^misp\.streams: stream settings of every source go in \[streams\.<stream>\]"):
        build_config({"misp": {"streams": {"threat": {"enabled": True}}}})
    with pytest.raises(ConfigError, match=r"^misp\.Partner: a source name is lower-case"):
        build_config({"misp": {"Partner": {"url": "https://b.example"}}})


def test_a_named_source_is_set_from_the_environment(tmp_path: Path) -> None:
    from misp_ti.config import load_config

    environ = {
        "MISP_TI_MISP__PARTNER__URL": "https://partner.example",
        "MISP_TI_MISP__PARTNER__API_KEY": "0123456789",
        "MISP_TI_MISP__PARTNER__STREAMS__THREAT__ENABLED": "true",
    }
    config = load_config(None, environ=environ)
    assert config.source_names() == ["partner"]
    partner = config.for_source("partner")
    assert partner.misp.url == "https://partner.example" and partner.streams.settings("threat").enabled
    assert "0123456789" in config.secrets()
    with pytest.raises(ConfigError, match=r"MISP_TI_MISP__PARTNER__PAGE_SIZE \(environment, misp\.partner\.page_size\)"):
        load_config(None, environ={**environ, "MISP_TI_MISP__PARTNER__PAGE_SIZE": "0"})


def test_a_state_bound_to_another_misp_is_refused(misp_server: Any, misp_clock: Any, tmp_path: Path) -> None:
    from misp_ti.testing.fixtures import make_client_config

    first = misp_server()
    engine = Engine(make_client_config(first.url, DEFAULT_API_KEY, tmp_path), clock=misp_clock)
    engine.run_once()
    cursor = engine.state.get_cursor(STREAM)
    engine.close()
    other = misp_server(partner_dataset(misp_clock))
    engine = Engine(make_client_config(other.url, DEFAULT_API_KEY, tmp_path), clock=misp_clock)
    with pytest.raises(SourceBindingError) as refused:
        engine.run_once()
    message = str(refused.value)
    assert refused.value.exit_code == 2 and "\n" not in message
    assert f"holds the cursors of {first.url}, not of {other.url}" in message
    assert "misp-ti reset --source default" in message
    assert engine.state.get_cursor(STREAM) == cursor  # nothing was read from the other MISP
    engine.close()


def test_a_version_2_state_migrates_to_source_default_keeping_cursors(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
CREATE TABLE misp_ti_cursor (stream TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE misp_ti_cycle (stream TEXT PRIMARY KEY, started_at INTEGER NOT NULL, refetch INTEGER NOT NULL,
    start_cursor TEXT, checkpoint TEXT);
CREATE TABLE misp_ti_schedule (stream TEXT NOT NULL, name TEXT NOT NULL, last_at INTEGER NOT NULL, PRIMARY KEY (stream, name));
CREATE TABLE misp_ti_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE misp_ti_cycle_log (stream TEXT NOT NULL, outcome TEXT NOT NULL, finished_at INTEGER NOT NULL,
    records INTEGER NOT NULL DEFAULT 0, documents INTEGER NOT NULL DEFAULT 0, pipeline_errors INTEGER NOT NULL DEFAULT 0,
    dead_letters INTEGER NOT NULL DEFAULT 0, error TEXT, failures_in_row INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, outcome));
INSERT INTO misp_ti_cursor VALUES ('threat_attributes', '{"last_timestamp": 1700000000}', 1700000001);
INSERT INTO misp_ti_cycle VALUES ('threat', 1700000100, 0, '{"last_timestamp": 1699999000}', '{"resume_from": 1699999500}');
INSERT INTO misp_ti_schedule VALUES ('threat_attributes', 'refetch', 1690000000);
INSERT INTO misp_ti_cycle_log (stream, outcome, finished_at, records) VALUES ('threat_attributes', 'completed', 1700000002, 9);
PRAGMA user_version = 2;
""")
    reader = StateStore.open_readonly(path)  # a reader sees the old rows as default's, changing nothing
    assert reader.get_cursor(STREAM) == {"last_timestamp": 1700000000} and reader.schema_version == 2
    reader.close()
    state = StateStore(path)
    assert state.schema_version == 3
    assert state.get_cursor(STREAM) == {"last_timestamp": 1700000000}
    assert state.get_cursor(STREAM, source="partner") is None
    assert state.in_progress("threat").resume_cursor == {"resume_from": 1699999500}
    assert int(state.last_run(STREAM, "refetch").timestamp()) == 1690000000
    assert state.history(STREAM)["completed"].records == 9
    assert state.binding("default") is None  # bound by the first run after the upgrade
    columns = [row[1] for row in state._conn.execute("PRAGMA table_info(misp_ti_cursor)")]
    assert columns[0] == "source"
    state.close()
    assert os.path.getsize(path) > 0


def test_the_same_attribute_from_two_synced_servers_is_one_latest_row(misp_server: Any, misp_clock: Any, tmp_path: Path) -> None:
    ours = misp_server()
    partner = misp_server(misp_server.dataset)  # a sync pair: the same uuids on both
    config = two_source_config(tmp_path, ours.url, partner.url)
    engine = Engine(config, clock=misp_clock)
    results = engine.run_once()
    engine.close()
    count = sum(1 for _ in misp_server.dataset.attributes())
    assert [r.records for r in results] == [count, count]
    store = EmbeddedStore(tmp_path / "store.db", readonly=True)
    try:
        # the history keeps both copies: a named source's ids include its name
        ids = store.conn.execute("SELECT count(*), count(DISTINCT id), count(DISTINCT uuid) FROM source").fetchone()
        assert ids == (2 * count, 2 * count, count)
        # the latest view: one row per uuid, the copy delivered last (partner comes second in the config)
        assert store.conn.execute("SELECT count(*) FROM latest").fetchone()[0] == count
        from misp_ti.sinks.sqlite import decode_doc

        winners = {decode_doc(row[0])["labels"]["misp_source"] for row in store.conn.execute("SELECT doc FROM latest")}
        assert winners == {"partner"}
    finally:
        store.close()


def test_the_single_misp_table_writes_no_source_label(misp_engine: Engine, tmp_path: Path) -> None:
    misp_engine.run_once()
    store = EmbeddedStore(tmp_path / "misp-ti.db", readonly=True)
    try:
        from misp_ti.sinks.sqlite import decode_doc

        docs = [decode_doc(row[0]) for row in store.conn.execute("SELECT doc FROM latest")]
    finally:
        store.close()
    assert docs and all("misp_source" not in doc.get("labels", {}) for doc in docs)


def test_the_run_banner_names_every_source_with_its_streams(tmp_path: Path) -> None:
    from misp_ti.service.runner import banner

    config = two_source_config(tmp_path, "https://a.example", "https://b.example", threat={"enabled": True})
    with Engine(config) as engine:
        lines = banner(engine, None)
    assert lines[0] == "misp-ti run: MISP sources ours, partner"
    assert lines[1:5] == [
        "  ours: https://a.example",
        f"    streams: {STREAM} every 10m",
        "  partner: https://b.example",
        f"    streams: {STREAM} every 10m, threat every 10m",
    ]


def test_each_source_reads_and_keeps_its_own_decaying_models(misp_server: Any, misp_clock: Any, tmp_path: Path) -> None:
    from misp_ti.expiry.decay_model import STATE_KEY

    ours = misp_server(Dataset.synthetic(30, seed=3, newest=misp_clock.now(), span=timedelta(days=3)))
    partner = misp_server(partner_dataset(misp_clock))
    data = two_source_config(tmp_path, ours.url, partner.url).model_dump(mode="json")
    config = build_config({
        "misp": {
            "ours": {"url": ours.url, "api_key": DEFAULT_API_KEY},
            "partner": {"url": partner.url, "api_key": DEFAULT_API_KEY},
        },
        "streams": {STREAM: {"enabled": True, "initial_interval": "3650d"}},
        "expiry": {"policy": "decay-model"},
        "output": data["output"],
        "plugins": {"entrypoints": False},
    })
    with Engine(config, clock=misp_clock) as engine:
        assert all(r.completed for r in engine.run_once())
        saved = {key: engine.state.get_value(key) for key in (STATE_KEY, f"{STATE_KEY}[ours]", f"{STATE_KEY}[partner]")}
    # each MISP was asked for its own models, and each source's are kept apart
    assert [[r.path for r in sim.requests].count("/decayingModel/index") for sim in (ours, partner)] == [1, 1], saved
    assert saved[STATE_KEY] is None
    assert saved[f"{STATE_KEY}[ours]"]["index"] and saved[f"{STATE_KEY}[partner]"]["index"]
