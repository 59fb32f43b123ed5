"""A plugin adds streams without touching core: this module is the plugin.

It declares two streams in ``MISP_TI_STREAMS``:

* ``to_ids_only``: ``/attributes/restSearch`` with ``to_ids`` forced on and
  a builder that tags each document; no hook at all, the default fetch,
  transform, expiry and sinks serve it from its spec;
* ``watchlist``: ``scope=None``, read by this module's own ``fetch`` hook
  from a setting of its own (a :class:`StreamSettings` subclass).

Then the registry's and the config's errors for streams.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from pydantic import Field

import misp_ti
from misp_ti.cli import cli
from misp_ti.config import StreamSettings, build_config
from misp_ti.ecs.documents import attribute_document
from misp_ti.ecs.options import Options
from misp_ti.engine import Engine
from misp_ti.errors import ConfigError, PluginError
from misp_ti.manager import declared_streams, make_plugin_manager
from misp_ti.model import Page, RunContext
from misp_ti.sinks.sqlite import decode_doc
from misp_ti.streams import BUILTIN_STREAMS, StreamSpec

# --- the plugin --------------------------------------------------------------------

TO_IDS_TAG = "misp_ti-to_ids_only"


def to_ids_document(record: Any, opts: Options) -> dict[str, Any]:
    doc = attribute_document(record, opts)
    doc["tags"] = [*doc.get("tags", ()), TO_IDS_TAG]
    return doc


class WatchlistSettings(StreamSettings):
    values: list[str] = Field(default_factory=list, description="IP addresses to publish as indicators.")
    first_seen_days: int = Field(1, ge=0, description="How old each entry claims to be.")


def watchlist_attribute(record: Any) -> Mapping[str, Any]:
    return record["entry"] if isinstance(record, Mapping) and isinstance(record.get("entry"), Mapping) else {}


TO_IDS_ONLY = StreamSpec(
    name="to_ids_only",
    build=to_ids_document,
    scope="attributes",
    filters={"to_ids": True},
    description="`/attributes/restSearch` with to_ids on: the attributes meant for detection.",
)
WATCHLIST = StreamSpec(
    name="watchlist",
    build=lambda record, opts: attribute_document(watchlist_attribute(record), opts),
    attribute=watchlist_attribute,
    scope=None,
    settings=WatchlistSettings,
    description="Fixed IP addresses from the config.",
)
MISP_TI_STREAMS = (TO_IDS_ONLY, WATCHLIST)


@misp_ti.hookimpl
def fetch(stream: str, cursor: Mapping[str, Any] | None, ctx: RunContext) -> Iterator[Page] | None:
    if stream != "watchlist":
        return None
    settings = ctx.config.streams.settings(stream)
    assert isinstance(settings, WatchlistSettings)
    now = int(ctx.now.timestamp())
    seen = now - settings.first_seen_days * 86400
    records = [
        {"entry": {"uuid": f"00000000-0000-4000-8000-{i:012d}", "type": "ip-dst", "category": "Network activity",
                   "value": value, "to_ids": True, "timestamp": str(seen)}}
        for i, value in enumerate(settings.values)
    ]
    return iter([Page(records, {"last_timestamp": now})])


PLUGIN = sys.modules[__name__]

# --- helpers ------------------------------------------------------------------------


def latest_docs(path: Path, dataset: str) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT uuid, doc FROM latest WHERE dataset = ?", (dataset,)).fetchall()
    return {uuid: decode_doc(doc) for uuid, doc in rows}


def config_with(tmp_path: Path, streams: dict[str, Any] | None = None, **more: Any) -> Any:
    return build_config({
        "streams": streams or {},
        "output": {"sqlite": {"path": str(tmp_path / "s.db")}},
        "plugins": {"entrypoints": False},
        **more,
    })


# --- a plugin stream end to end -------------------------------------------------------


def test_a_stream_on_attributes_restsearch_is_polled_transformed_emitted_and_its_cursor_saved(
    misp_make_engine: Callable[..., Engine], misp_server: Any, misp_clock: Any, misp_client_config: Any
) -> None:
    engine = misp_make_engine(PLUGIN, overrides={"streams": {"to_ids_only": {"enabled": True, "initial_interval": "3650d"}}})
    assert engine.config.streams.enabled() == ["threat_attributes", "to_ids_only"]
    results = engine.run_once()
    assert [(r.stream, r.completed) for r in results] == [("threat_attributes", True), ("to_ids_only", True)]

    sim = misp_server()
    bodies = [r.body for r in sim.requests if r.path == "/attributes/restSearch"]
    assert any(body.get("to_ids") is True for body in bodies)  # the spec's filter was sent
    assert any("to_ids" not in body for body in bodies)  # and only for its own stream

    store = misp_client_config.output.sqlite.path
    everything = latest_docs(store, "ti_misp.threat_attributes")
    detection = latest_docs(store, "ti_misp.to_ids_only")
    wanted = {uuid for uuid, doc in everything.items() if doc["misp"]["attribute"]["to_ids"] is True}
    assert 0 < len(wanted) < len(everything)
    assert set(detection) == wanted
    for doc in detection.values():
        assert TO_IDS_TAG in doc["tags"]  # the spec's builder made it
        assert doc["data_stream"]["dataset"] == doc["event"]["dataset"] == "ti_misp.to_ids_only"
        assert "decayed_at" in doc["misp"]["attribute"]  # the configured policy decided its expiry
    [_, polled] = results
    assert polled.documents == len(wanted)
    assert engine.state.get_cursor("to_ids_only") == {"last_timestamp": int(polled.now.timestamp())}

    # the next poll reads from the cursor, and only what to_ids_only selects
    misp_clock.advance(timedelta(minutes=10))
    sim.requests.clear()
    new = sim.add_attribute(type="domain", category="Network activity", value="fresh.example", to_ids=True)
    context = sim.add_attribute(type="domain", category="Network activity", value="context.example", to_ids=False)
    [first, second] = engine.run_once()
    [window] = [r.body["timestamp"] for r in sim.requests if r.body.get("to_ids") is True]
    assert window == [int(polled.now.timestamp()) - 2, int(second.now.timestamp())]  # cursor - overlap
    assert second.documents < first.documents
    assert new["uuid"] in latest_docs(store, "ti_misp.to_ids_only")
    assert context["uuid"] not in latest_docs(store, "ti_misp.to_ids_only")
    assert context["uuid"] in latest_docs(store, "ti_misp.threat_attributes")


def test_a_stream_its_plugin_fetches_uses_its_own_settings_model(
    misp_make_engine: Callable[..., Engine], misp_client_config: Any
) -> None:
    engine = misp_make_engine(PLUGIN, overrides={
        "streams": {"threat_attributes": {"enabled": False},
                    "watchlist": {"enabled": True, "values": ["192.0.2.1", "198.51.100.7"], "first_seen_days": 2}},
        "expiry": {"ioc_expiration_duration": "1d"},
    })
    [result] = engine.run_once()
    assert (result.stream, result.documents, result.pipeline_errors) == ("watchlist", 2, 0)
    docs = latest_docs(misp_client_config.output.sqlite.path, "ti_misp.watchlist")
    assert sorted(d["threat"]["indicator"]["ip"] for d in docs.values()) == ["192.0.2.1", "198.51.100.7"]
    # two days old, valid for one day (expiry.ioc_expiration_duration)
    assert all(d["misp"]["attribute"]["decayed"] is True for d in docs.values())
    assert engine.state.get_cursor("watchlist") == {"last_timestamp": int(result.now.timestamp())}


def test_the_attribute_accessor_of_a_stream_comes_from_its_spec(tmp_path: Path) -> None:
    from misp_ti.default_plugins.expiry import attribute_of

    entry = {"uuid": "u", "timestamp": "1717200000", "to_ids": True}
    with Engine(config_with(tmp_path), extra_plugins=[PLUGIN]) as engine:
        ctx = engine.context(dry_run=True)
        assert attribute_of({"entry": entry}, "watchlist", ctx) == entry
        assert attribute_of(entry, "to_ids_only", ctx) == entry
        split = {"Event": {"uuid": "e", "Attribute": entry}}
        assert attribute_of(split, "threat", ctx) == entry == attribute_of(split)  # the built-ins' accessor


def test_a_plugin_stream_gets_its_own_elasticsearch_latest_view(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"to_ids_only": {"enabled": True}}, output={
        "sinks": ["elasticsearch"], "sqlite": {"path": str(tmp_path / "s.db")}})
    with Engine(config, extra_plugins=[PLUGIN]) as engine:
        paths = {action["path"] for action in engine.provision(dry_run=True)}
    for stream in ("threat_attributes", "to_ids_only"):
        assert f"/_index_template/misp-ti.logs-ti_misp.{stream}" in paths
        assert f"/_transform/misp-ti.latest_{stream}-2" in paths
    assert not any("watchlist" in path for path in paths)  # not enabled: no assets


def test_misp_ti_transform_offers_plugin_streams(tmp_path: Path) -> None:
    path = tmp_path / "misp-ti.toml"
    path.write_text(f'[plugins]\nentrypoints = false\n[output.sqlite]\npath = "{tmp_path / "x.db"}"\n')
    attribute = {"uuid": "5f0b0c43-0b7c-4d9f-8a33-1b1f3c9c0001", "type": "md5", "category": "Payload delivery",
                 "value": "d41d8cd98f00b204e9800998ecf8427e", "to_ids": True, "timestamp": "1717200000"}
    args = ["--config", str(path), "--plugin", __name__, "transform", "--now", "2024-06-01T00:00:00Z"]
    result = CliRunner().invoke(cli, [*args, "--stream", "to_ids_only"], input=orjson.dumps(attribute))
    assert result.exit_code == 0, result.stderr
    [doc] = [orjson.loads(line) for line in result.stdout_bytes.splitlines()]
    assert doc["event"]["dataset"] == "ti_misp.to_ids_only" and TO_IDS_TAG in doc["tags"]
    result = CliRunner().invoke(cli, [*args, "--stream", "sightings"], input=b"")
    assert result.exit_code == 2
    assert "'sightings' is not a stream; available: threat_attributes, threat, to_ids_only, watchlist" in result.stderr


# --- errors -------------------------------------------------------------------------------


class Declares:
    def __init__(self, *specs: Any) -> None:
        self.MISP_TI_STREAMS = specs


def test_a_stream_name_declared_twice_is_an_error_naming_both_plugins() -> None:
    other = StreamSpec(name="to_ids_only", build=attribute_document)
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[PLUGIN])
    pm.register(Declares(other), name="copycat")
    with pytest.raises(PluginError, match=rf"stream 'to_ids_only' is declared twice, by {__name__} and by copycat"):
        declared_streams(pm)
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Declares(StreamSpec(name="threat", build=attribute_document)), name="usurper")
    with pytest.raises(PluginError, match="stream 'threat' is declared twice, by misp_fetch and by usurper"):
        declared_streams(pm)


def test_declaring_the_built_in_specs_again_is_allowed() -> None:
    # what a plugin replacing misp_fetch does
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Declares(*BUILTIN_STREAMS), name="my_fetch")
    streams = declared_streams(pm)
    assert list(streams) == ["threat_attributes", "threat"] and streams.owner("threat") == "misp_fetch"


def test_what_is_not_a_stream_spec_is_refused() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Declares("sightings"), name="sloppy")
    with pytest.raises(PluginError, match="plugin sloppy: MISP_TI_STREAMS holds 'sightings', not a misp_ti.streams.StreamSpec"):
        declared_streams(pm)
    with pytest.raises(PluginError, match="stream name 'Sightings!'"):
        StreamSpec(name="Sightings!", build=attribute_document)
    with pytest.raises(PluginError, match="scope 'sightings' is not one the default fetch reads"):
        StreamSpec(name="sightings", build=attribute_document, scope="sightings")
    with pytest.raises(PluginError, match="settings must be StreamSettings or a subclass"):
        StreamSpec(name="sightings", build=attribute_document, settings=dict)  # type: ignore[arg-type]


def test_an_unknown_stream_table_names_the_streams_there_are(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"sightings": {"enabled": True}})
    with pytest.raises(ConfigError, match=r"^streams.sightings: unknown stream; available: threat_attributes, threat$"):
        Engine(config)
    config = config_with(tmp_path, {"sightings": {"enabled": True}})
    with pytest.raises(ConfigError, match="available: threat_attributes, threat, to_ids_only, watchlist$"):
        Engine(config, extra_plugins=[PLUGIN])


@pytest.mark.parametrize(("table", "message"), [
    ({"interval": "soon"}, "streams.to_ids_only.interval: bad value 'soon': expected a duration"),
    ({"colour": "red"}, "streams.to_ids_only.colour: unknown key; allowed keys here: enabled, enforce_warninglist"),
    ({"filters": {"to_ids": False}}, "streams.to_ids_only.filters.to_ids: not allowed: the to_ids_only stream sets it itself"),
    ({"filters": {"page": 2}}, "streams.to_ids_only.filters.page: not allowed: misp-ti pages through the results itself"),
])
def test_a_plugin_stream_table_is_validated_with_one_line_errors(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Engine(config_with(tmp_path, {"to_ids_only": table}), extra_plugins=[PLUGIN])
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_a_plugin_settings_model_validates_its_own_keys(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"watchlist": {"first_seen_days": -1}})
    with pytest.raises(ConfigError, match="streams.watchlist.first_seen_days: bad value -1: Input should be greater than or equal to 0"):
        Engine(config, extra_plugins=[PLUGIN])


def test_plugin_streams_are_off_unless_enabled_and_configurable_from_the_environment(tmp_path: Path) -> None:
    from misp_ti.config import load_config

    with Engine(config_with(tmp_path), extra_plugins=[PLUGIN]) as engine:
        assert engine.config.streams.enabled() == ["threat_attributes"]
        assert engine.config.streams.settings("watchlist") == WatchlistSettings(enabled=False)
    config = load_config(environ={
        "MISP_TI_STREAMS__TO_IDS_ONLY__ENABLED": "true",
        "MISP_TI_STREAMS__TO_IDS_ONLY__INTERVAL": '"1m"',
        "MISP_TI_PLUGINS__ENTRYPOINTS": "false",
        "MISP_TI_OUTPUT__SQLITE__PATH": str(tmp_path / "s.db"),
    })
    with Engine(config, extra_plugins=[PLUGIN]) as engine:
        assert engine.config.streams.enabled() == ["threat_attributes", "to_ids_only"]
        assert engine.config.streams.settings("to_ids_only").interval == timedelta(minutes=1)


def test_once_refuses_a_stream_no_plugin_declares(tmp_path: Path) -> None:
    with Engine(config_with(tmp_path)) as engine, pytest.raises(ConfigError, match="--stream: unknown stream 'to_ids_only'"):
        engine.run_once(streams=["to_ids_only"])


def test_one_config_serves_engines_with_and_without_the_plugin(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    with Engine(config, extra_plugins=[PLUGIN]) as engine:
        assert "watchlist" in engine.streams
    with Engine(config) as engine:  # the plugin's defaults do not outlive it
        assert list(engine.streams) == ["threat_attributes", "threat"]
        assert engine.config.streams.enabled() == ["threat_attributes"]
    configured = config_with(tmp_path, {"watchlist": {"values": ["192.0.2.1"]}})
    with Engine(configured, extra_plugins=[PLUGIN]):
        pass
    with pytest.raises(ConfigError, match="streams.watchlist: unknown stream"):
        Engine(configured)  # but a table the configuration holds needs its plugin


def test_blocking_misp_fetch_without_declaring_the_built_ins_again_is_an_error(tmp_path: Path) -> None:
    config = config_with(tmp_path, plugins={"entrypoints": False, "block": ["misp_fetch"]})
    with pytest.raises(ConfigError, match="streams.threat_attributes: enabled, but no plugin declares this stream"):
        Engine(config)
    with Engine(config, extra_plugins=[Declares(*BUILTIN_STREAMS)]) as engine:
        assert engine.config.streams.enabled() == ["threat_attributes"]


def test_misp_ti_plugins_lists_the_streams_each_plugin_declares(tmp_path: Path) -> None:
    path = tmp_path / "misp-ti.toml"
    path.write_text("[plugins]\nentrypoints = false\n")
    result = CliRunner().invoke(cli, ["--config", str(path), "--plugin", __name__, "plugins"])
    assert result.exit_code == 0, result.stderr
    lines = {line.split(":")[0].strip(): line for line in result.stdout.splitlines()}
    assert "streams: threat_attributes, threat" in lines["misp_fetch"]
    assert "streams: to_ids_only, watchlist" in lines[__name__]
