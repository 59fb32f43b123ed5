"""Every request the Elasticsearch sink sends, checked against Elastic's own specification.

The specification comes from ``helpers.es_spec_cache`` (npm, pinned and verified);
without npm these tests skip, unless ``MISP_TI_TEST_REQUIRE_SPEC=1``.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from helpers.es_spec_cache import fetch_schema
from misp_ti import hookimpl
from misp_ti.cli import cli
from misp_ti.config import build_config
from misp_ti.engine import Engine
from misp_ti.model import Page
from misp_ti.sinks.elasticsearch import assets
from misp_ti.testing import es_spec as spec
from misp_ti.timeutil import from_epoch, iso

EVENT_FILE = Path(__file__).resolve().parents[3] / "src/misp_ti/simulator/data/misp-events/pymisp-tests/57c4445b-c548-4654-af0b-4be3950d210f.json"

MODES = {
    "ecs-server": {"mode": "ecs", "ingested_by": "server"},
    "ecs-client": {"mode": "ecs", "ingested_by": "client"},
    "beats": {"mode": "beats"},
    "beats-pipeline": {"mode": "beats", "beats_pipeline": "logs-ti_misp.threat_attributes-1.48.2"},
}


@pytest.fixture(scope="session")
def es_spec() -> spec.Spec:
    return spec.load(fetch_schema())


def es_config(tmp_path: Path, mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "output": {
            "sinks": ["elasticsearch"],
            "preserve_original_event": mode.startswith("beats"),
            "elasticsearch": {**MODES[mode], "api_key": "c2VjcmV0LWtleS1kby1ub3QtcHJpbnQ=", **extra},
            "sqlite": {"path": str(tmp_path / "state.db")},
        },
        "streams": {"threat": {"enabled": True}},
        "plugins": {"entrypoints": False},
    }


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{prefix}{key}", value))
        else:
            scalars.append(f"{key} = {orjson.dumps(value).decode()}")
    text = (f"[{prefix[:-1]}]\n" if prefix and scalars else "") + "".join(line + "\n" for line in scalars)
    for name, table in tables:
        text += _toml(table, f"{name}.")
    return text


def run_cli(tmp_path: Path, config: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    path = tmp_path / "misp-ti.toml"
    path.write_text(_toml(config), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(path), "--quiet", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def assert_valid(es_spec: spec.Spec, requests: list[dict[str, Any]]) -> None:
    assert requests
    problems = [p for r in requests for p in es_spec.validate(r)]
    assert problems == []
    for r in requests:
        assert set(r) == {"method", "path", "params", "body"}


# provision ------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(MODES))
def test_provision_dry_run_is_valid_for_every_mode(es_spec: spec.Spec, tmp_path: Path, mode: str) -> None:
    requests = run_cli(tmp_path, es_config(tmp_path, mode), "provision", "--dry-run")
    assert_valid(es_spec, requests)
    assert "c2VjcmV0" not in orjson.dumps(requests).decode()  # the API key is never printed
    if mode.startswith("beats"):
        # the integration owns the assets; provision only checks they exist
        assert all(r["method"] == "GET" for r in requests)
        assert any(r["path"] == "/_index_template/logs-ti_misp.threat" for r in requests)


def test_provision_installs_what_the_reference_has(es_spec: spec.Spec, tmp_path: Path) -> None:
    requests = run_cli(tmp_path, es_config(tmp_path, "ecs-server"), "provision", "--dry-run")
    writes = {(r["method"], r["path"]): r for r in requests if r["method"] != "GET"}
    for stream in ("threat_attributes", "threat"):
        template = writes[("PUT", f"/_index_template/misp-ti.logs-ti_misp.{stream}")]["body"]
        assert template["index_patterns"] == [f"logs-ti_misp.{stream}-*"]
        assert template["data_stream"] == {} and template["priority"] > 100
        assert "ecs@mappings" in template["composed_of"]
        settings = template["template"]["settings"]["index"]
        assert settings["lifecycle"]["name"] == assets.ILM_POLICY  # ILM actually attached
        assert settings["default_pipeline"] == assets.PIPELINE_INGESTED
        props = template["template"]["mappings"]["properties"]
        assert props["threat"]["properties"]["indicator"]["properties"]["email"]["properties"]["subject"] == {"type": "keyword"}
        assert props["labels"]["properties"]["is_ioc_transform_source"]["type"] == "constant_keyword"
        assert props["misp"]["properties"]["attribute"]["properties"]["decayed_at"] == {"type": "date"}
        assert ("PUT", f"/_data_stream/logs-ti_misp.{stream}-default") in writes
    phases = writes[("PUT", f"/_ilm/policy/{assets.ILM_POLICY}")]["body"]["policy"]["phases"]
    assert phases["hot"]["actions"]["rollover"]["max_age"] == "2d"
    assert phases["delete"]["min_age"] == "3d"
    for stream in ("threat_attributes", "threat"):
        tid, dest, alias = assets.transform_id(stream), assets.dest_index(stream), assets.latest_alias(stream)
        transform = writes[("PUT", f"/_transform/{tid}")]["body"]
        assert transform["latest"] == {"unique_key": ["event.dataset", "misp.attribute.uuid"], "sort": "event.ingested"}
        assert transform["source"]["index"] == [f"logs-ti_misp.{stream}-*"]
        assert transform["sync"]["time"]["field"] == "event.ingested"
        assert transform["retention_policy"]["time"]["field"] == "misp.attribute.decayed_at"
        assert "aliases" not in transform["dest"]  # provision manages the filtered alias itself
        assert transform["_meta"]["managed_by"] == "misp-ti" and transform["_meta"]["version"] == assets.ASSET_VERSION
        dest_template = writes[("PUT", f"/_index_template/{assets.dest_template_name(stream)}")]["body"]
        assert dest_template["index_patterns"] == [f"{assets.dest_prefix(stream)}*"] and "data_stream" not in dest_template
        assert dest_template["template"]["settings"]["index"]["hidden"] is True
        assert ("PUT", f"/{dest}") in writes and ("POST", f"/_transform/{tid}/_start") in writes
        # template before index before transform; the alias gets its filter
        order = [(r["method"], r["path"]) for r in requests]
        assert order.index(("PUT", f"/_index_template/{assets.dest_template_name(stream)}")) < order.index(("PUT", f"/{dest}"))
        assert order.index(("PUT", f"/{dest}")) < order.index(("PUT", f"/_transform/{tid}"))
        adds = [a["add"] for r in requests if r["path"] == "/_aliases" for a in r["body"]["actions"] if "add" in a]
        assert {"index": dest, "alias": alias, "filter": assets.alias_filter()} in adds


def test_client_ingest_time_mode_installs_no_default_pipeline(tmp_path: Path) -> None:
    requests = run_cli(tmp_path, es_config(tmp_path, "ecs-client"), "provision", "--dry-run")
    template = next(r for r in requests if r["path"] == "/_index_template/misp-ti.logs-ti_misp.threat_attributes" and r["method"] == "PUT")
    assert "default_pipeline" not in template["body"]["template"]["settings"]["index"]


def test_ilm_durations_are_configurable(es_spec: spec.Spec, tmp_path: Path) -> None:
    config = es_config(tmp_path, "ecs-server", ilm_rollover_max_age="12h", ilm_delete_after="7d")
    requests = run_cli(tmp_path, config, "provision", "--dry-run")
    assert_valid(es_spec, requests)
    policy = next(r for r in requests if r["method"] == "PUT" and r["path"].startswith("/_ilm/"))
    assert policy["body"]["policy"]["phases"]["hot"]["actions"]["rollover"]["max_age"] == "12h"
    assert policy["body"]["policy"]["phases"]["delete"]["min_age"] == "7d"  # never "1w": ES has no weeks


# bulk ----------------------------------------------------------------------


def raw_records(stream: str) -> list[dict[str, Any]]:
    event = orjson.loads(EVENT_FILE.read_bytes())["Event"]
    meta = {k: v for k, v in event.items() if k not in ("Attribute", "Object")}
    if stream == "threat_attributes":
        return [{**attr, "Event": meta} for attr in event["Attribute"]]
    return [{"Event": {**meta, "Attribute": attr}} for attr in event["Attribute"]]


class ListFetch:
    """Serves ``raw_records`` for both streams (the MISP fetcher is not under test here)."""

    @hookimpl
    def fetch(self, stream: str, cursor: Any, ctx: Any) -> Any:
        return iter([Page(raw_records(stream), cursor={"done": True})])


class StandInTransform:
    """Answers only when no other transform does (``trylast``): the built-in
    ECS transform normally serves; this keeps the bulk contract testable
    without it, since the specification types document bodies as free-form."""

    @hookimpl(trylast=True)
    def transform_doc(self, stream: str, record: dict[str, Any], ctx: Any) -> dict[str, Any]:
        attr = record["Event"]["Attribute"] if stream == "threat" else record
        return {
            "_id": hashlib.blake2b(f"{stream}{attr['uuid']}".encode(), digest_size=16).hexdigest(),
            "@timestamp": iso(from_epoch(int(attr["timestamp"]))),
            "event": {"kind": "enrichment", "dataset": f"ti_misp.{stream}", "original": orjson.dumps(record).decode()},
            "misp": {"attribute": {"uuid": attr["uuid"], "type": attr["type"], "value": attr["value"]}},
        }


def once_dry_run(tmp_path: Path, mode: str) -> list[dict[str, Any]]:
    config = build_config(es_config(tmp_path, mode, chunk_size=4), source="test")
    with Engine(config, extra_plugins=[ListFetch(), StandInTransform()]) as engine:
        results = engine.run_once(dry_run=True)
        assert {r.stream for r in results} == {"threat_attributes", "threat"}
        return list(engine.context(dry_run=True).dry_run_requests)


def once_dry_run_bulk(tmp_path: Path, mode: str) -> list[dict[str, Any]]:
    return [r for r in once_dry_run(tmp_path, mode) if r["path"] == "/_bulk"]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_once_dry_run_bulk_requests_are_valid(es_spec: spec.Spec, tmp_path: Path, mode: str) -> None:
    everything = once_dry_run(tmp_path, mode)
    assert_valid(es_spec, everything)
    # ecs mode: each stream's cycle also removes the expired IOCs of its latest view
    sweeps = [r for r in everything if r["path"].endswith("/_delete_by_query")]
    expected = {f"/{assets.dest_index(s)}/_delete_by_query" for s in ("threat_attributes", "threat")} if mode.startswith("ecs") else set()
    assert {r["path"] for r in sweeps} == expected and len(sweeps) == len(expected)
    requests = [r for r in everything if r not in sweeps]
    n = len(raw_records("threat_attributes"))
    assert all(r["method"] == "POST" and r["path"] == "/_bulk" for r in requests)
    assert all(len(r["body"]) <= 8 for r in requests)  # chunk_size = 4 documents
    lines = [line for r in requests for line in r["body"]]
    actions, sources = lines[0::2], lines[1::2]
    assert len(actions) == 2 * n  # both streams, every document
    indices = {a["create"]["_index"] for a in actions}
    assert indices == {"logs-ti_misp.threat_attributes-default", "logs-ti_misp.threat-default"}
    assert all("_id" in a["create"] and "_id" not in s for a, s in zip(actions, sources, strict=True))
    if mode.startswith("beats"):
        assert all(set(s) >= {"message", "data_stream", "event", "tags"} for s in sources)
        assert all(orjson.loads(s["message"]) for s in sources)  # the raw MISP JSON
        expected = {"pipeline": MODES[mode]["beats_pipeline"]} if "beats_pipeline" in MODES[mode] else {}
        assert all(r["params"] == expected for r in requests)
    elif mode == "ecs-client":
        # stamped at send time (a resumed cycle's ingest time would be behind the transform's checkpoint)
        assert all(s["event"]["ingested"] > "2020" for s in sources)


def test_once_dry_run_through_the_cli(tmp_path: Path, es_spec: spec.Spec, monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI's own printing path, with the stand-ins passed as a --plugin module
    (tmp_path / "es_contract_plugins.py").write_text(
        "from test_es_contract import ListFetch, StandInTransform\n"
        "fetch = ListFetch().fetch\n"
        "transform_doc = StandInTransform().transform_doc\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    printed = run_cli(tmp_path, es_config(tmp_path, "ecs-server"), "--plugin", "es_contract_plugins", "once", "--dry-run")
    assert_valid(es_spec, printed)
    assert sum(len(r["body"]) // 2 for r in printed) == 2 * len(raw_records("threat_attributes"))


def test_the_transform_unique_key_exists_on_our_documents(tmp_path: Path) -> None:
    # the reference's unique key names a field its own pipeline renames away
    config = build_config(es_config(tmp_path, "ecs-server"), source="test")
    with Engine(config, extra_plugins=[ListFetch()]) as engine:
        ctx = engine.context(dry_run=True)
        docs = engine.process("threat_attributes", raw_records("threat_attributes"), ctx)
    assert docs
    for doc in docs:
        assert doc["event"]["dataset"] == "ti_misp.threat_attributes"
        assert doc["misp"]["attribute"]["uuid"]
        assert doc["misp"]["attribute"]["decayed_at"]  # the retention field


def test_emit_does_not_mutate_the_shared_documents(tmp_path: Path) -> None:
    from misp_ti.sinks.elasticsearch import bulk

    config = build_config(es_config(tmp_path, "ecs-client"), source="test")
    docs = [{"_id": "x1", "event": {"dataset": "ti_misp.threat_attributes"}, "misp": {"attribute": {"uuid": "u"}}}]
    before = copy.deepcopy(docs)
    pairs = list(bulk.actions("threat_attributes", docs, config))
    assert docs == before
    assert pairs[0][0] == {"create": {"_index": "logs-ti_misp.threat_attributes-default", "_id": "x1"}}
    assert "_id" not in pairs[0][1] and "ingested" in pairs[0][1]["event"]


# negative tests: the validator really catches mistakes ------------------------


def first(requests: list[dict[str, Any]], method: str, path_start: str) -> dict[str, Any]:
    return copy.deepcopy(next(r for r in requests if r["method"] == method and r["path"].startswith(path_start)))


@pytest.fixture
def provision_requests(tmp_path: Path) -> list[dict[str, Any]]:
    return run_cli(tmp_path, es_config(tmp_path, "ecs-server"), "provision", "--dry-run")


def test_validator_catches_a_misspelled_key(es_spec: spec.Spec, provision_requests: list[dict[str, Any]]) -> None:
    req = first(provision_requests, "PUT", "/_transform/")
    req["body"]["latest"]["uniqe_key"] = req["body"]["latest"].pop("unique_key")
    problems = es_spec.validate(req)
    assert any("unknown property 'uniqe_key'" in p for p in problems)
    assert any("missing required property 'unique_key'" in p for p in problems)


def test_validator_catches_a_wrong_type(es_spec: spec.Spec, provision_requests: list[dict[str, Any]]) -> None:
    req = first(provision_requests, "PUT", "/_index_template/")
    req["body"]["priority"] = "high"
    assert any("body.priority: expected a number" in p for p in es_spec.validate(req))
    req = first(provision_requests, "PUT", "/_transform/")
    req["body"]["latest"]["unique_key"] = "event.dataset"  # a string where an array is required
    assert any("unique_key: expected an array" in p for p in es_spec.validate(req))


def test_validator_catches_a_missing_required_field(es_spec: spec.Spec, provision_requests: list[dict[str, Any]]) -> None:
    req = first(provision_requests, "PUT", "/_transform/")
    del req["body"]["source"]
    assert any("missing required property 'source'" in p for p in es_spec.validate(req))
    req = first(provision_requests, "PUT", "/_transform/")
    req["body"]["dest"]["aliases"] = [{"move_on_creation": True}]  # also inside the dest.aliases we add to the spec
    assert any("missing required property 'alias'" in p for p in es_spec.validate(req))


def test_validator_checks_enums_unions_dictionaries_and_mapping_types(es_spec: spec.Spec, provision_requests: list[dict[str, Any]]) -> None:
    req = first(provision_requests, "PUT", "/_index_template/")
    req["body"]["template"]["mappings"]["properties"]["misp"]["properties"]["attribute"]["properties"]["uuid"]["type"] = "keywrd"
    assert any("properties.uuid.type: unknown value 'keywrd'" in p for p in es_spec.validate(req))
    req = first(provision_requests, "PUT", "/_index_template/")
    req["body"]["template"]["mappings"]["dynamic"] = "sometimes"  # enum (union with boolean)
    assert any("dynamic" in p for p in es_spec.validate(req))
    req = first(provision_requests, "PUT", "/_index_template/")
    req["body"]["index_patterns"] = 5  # union of a name and a list of names
    assert any("index_patterns" in p and "union" in p for p in es_spec.validate(req))
    req = first(provision_requests, "PUT", "/_ingest/pipeline/")
    req["body"]["processors"][0] = {"set": {"field": "a"}, "remove": {"field": "b"}}  # a container holds one variant
    assert any("exactly one variant" in p for p in es_spec.validate(req))


def test_validator_checks_endpoints_parameters_and_bulk_lines(es_spec: spec.Spec, provision_requests: list[dict[str, Any]], tmp_path: Path) -> None:
    assert es_spec.validate({"method": "PUT", "path": "/_transfrom/x/_start", "params": {}, "body": None})  # no such endpoint
    assert es_spec.validate({"method": "DELETE", "path": "/_aliases", "params": {}, "body": None})  # wrong method
    req = first(provision_requests, "POST", "/_transform/")
    req["params"] = {"wait": True}
    assert any("unknown query parameter 'wait'" in p for p in es_spec.validate(req))
    req["params"] = {"timeout": 5}  # a Duration is a string
    assert es_spec.validate(req)
    bulk_req = copy.deepcopy(once_dry_run_bulk(tmp_path, "ecs-server")[0])
    bulk_req["body"][0] = {"craete": bulk_req["body"][0]["create"]}
    assert any("unknown property 'craete'" in p for p in es_spec.validate(bulk_req))
    bulk_req = copy.deepcopy(once_dry_run_bulk(tmp_path, "ecs-server")[0])
    bulk_req["body"][0]["create"]["_id"] = 7
    assert any("_id: expected a string" in p for p in es_spec.validate(bulk_req))
    bulk_req["body"] = bulk_req["body"][:1]  # an action without its document
    assert any("must be followed by its document" in p for p in es_spec.validate(bulk_req))


# obtaining the specification ---------------------------------------------------


def test_without_npm_the_contract_tests_skip_or_fail_as_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import es_spec_cache

    monkeypatch.setenv(es_spec_cache.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setattr(es_spec_cache.shutil, "which", lambda name: None)
    monkeypatch.delenv(es_spec_cache.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm is not installed"):
        es_spec_cache.fetch_schema()
    monkeypatch.setenv(es_spec_cache.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="makes this a failure"):
        es_spec_cache.fetch_schema()


def test_a_cached_file_with_the_wrong_checksum_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import es_spec_cache

    cached = tmp_path / f"request-converter-{es_spec_cache.VERSION}" / "schema.json"
    cached.parent.mkdir(parents=True)
    cached.write_text('{"endpoints": [], "types": []}')
    monkeypatch.setenv(es_spec_cache.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(es_spec_cache.shutil, "which", lambda name: None)
    monkeypatch.delenv(es_spec_cache.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception):  # re-fetch wanted, npm missing: not silently used
        es_spec_cache.fetch_schema()


def test_every_request_of_install_rerun_upgrade_and_check_is_valid(es_spec: spec.Spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the dry run (a first install): what provision sends on a cluster
    that answers (the model), a second run, an upgrade (reindex, alias move,
    cleanup), the privileges check, and the housekeeping of a cycle."""
    from helpers.es_provision import config as provision_config
    from helpers.es_provision import sender
    from misp_ti.sinks.elasticsearch import provision as prov
    from misp_ti.testing.es_model import ModelCluster

    cluster = ModelCluster((8, 19))
    settings = provision_config().output.elasticsearch
    streams = ("threat_attributes", "threat")
    sent = prov.run(prov.plan(settings, streams), sender(cluster))
    sent += prov.run(prov.plan(settings, streams), sender(cluster))
    monkeypatch.setattr(assets, "ASSET_VERSION", assets.ASSET_VERSION + 1)
    upgrade = prov.run(prov.plan(settings, streams, sleep=lambda s: cluster.advance()), sender(cluster))
    assert {r["path"] for r in upgrade} >= {"/_reindex", "/_aliases"}
    assert any(r["method"] == "DELETE" for r in upgrade)
    sent += upgrade
    sent.append(prov.request("POST", "/_security/user/_has_privileges", assets.privileges(streams)))
    sent += [prov.housekeeping(s) for s in streams]
    assert_valid(es_spec, sent)
