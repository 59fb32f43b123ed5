"""Provision's decisions: idempotent, upgrades in place, cleans up old versions.

The plan runs against :class:`ClusterState`, an in-memory model of the few
Elasticsearch answers provision reads (response shapes as documented by
Elastic). It checks the plan's logic only; ``test_es_cluster.py`` runs the
same plan against a real cluster when one is reachable.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from misp_ti.config import Config, build_config
from misp_ti.errors import ConfigError, SinkError
from misp_ti.es import assets
from misp_ti.es import provision as prov
from misp_ti.plugins import elasticsearch_sink


class ClusterState:
    def __init__(self) -> None:
        self.store: dict[str, Any] = {}  # path -> body, for templates, policies, pipelines, transforms, indices
        self.data_streams: set[str] = set()
        self.aliases: dict[str, set[str]] = {}  # alias -> indices
        self.started: set[str] = set()

    def answer(self, req: dict[str, Any], _assumed: int = 0) -> prov.Answer:
        method, path = req["method"], req["path"]
        if method == "GET":
            return self._get(path)
        if method == "PUT" and path.startswith("/_data_stream/"):
            self.data_streams.add(path.rsplit("/", 1)[1])
        elif method == "PUT":
            self.store[path] = req["body"]
        elif method == "DELETE":
            del self.store[path]
            index = path[1:]
            for holders in self.aliases.values():
                holders.discard(index)
        elif path == "/_aliases":
            for action in req["body"]["actions"]:
                (kind, spec), = action.items()
                holders = self.aliases.setdefault(spec["alias"], set())
                (holders.add if kind == "add" else holders.discard)(spec["index"])
        elif path.endswith("/_start"):
            self.started.add(path.split("/")[2])
        elif path.endswith("/_stop"):
            self.started.discard(path.split("/")[2])
        return prov.Answer(200, {"acknowledged": True})

    def _get(self, path: str) -> prov.Answer:
        missing = prov.Answer(404, {"error": {"type": "resource_not_found_exception"}})
        parts = path.strip("/").split("/")
        if path == "/_component_template/ecs@mappings":
            return prov.Answer(200, {"component_templates": [{"name": "ecs@mappings"}]})
        if parts[0] == "_transform":
            if len(parts) == 3:  # _stats
                return prov.Answer(200, {"count": 1, "transforms": [{"id": parts[1], "state": "started" if parts[1] in self.started else "stopped"}]})
            found = [{**body, "id": p.split("/")[2]} for p, body in self.store.items() if p.startswith("/_transform/") and fnmatch.fnmatch(p.split("/")[2], parts[1])]
            if not found and "*" not in parts[1]:
                return missing
            return prov.Answer(200, {"count": len(found), "transforms": found})
        if parts[0] == "_alias":
            holders = self.aliases.get(parts[1])
            return prov.Answer(200, {i: {"aliases": {parts[1]: {}}} for i in holders}) if holders else missing
        if parts[0] == "_data_stream":
            return prov.Answer(200, {"data_streams": [{"name": parts[1]}]}) if parts[1] in self.data_streams else missing
        if len(parts) == 2 and parts[1] == "_mapping":
            found = {p[1:]: {"mappings": b["mappings"]} for p, b in self.store.items() if p.count("/") == 1 and fnmatch.fnmatch(p[1:], parts[0])}
            return prov.Answer(200, found) if found or "*" in parts[0] else missing
        body = self.store.get(path)
        if body is None:
            return missing
        name = parts[-1]
        if parts[0] == "_ilm":
            return prov.Answer(200, {name: {"version": 1, "policy": body["policy"]}})
        if parts[0] == "_ingest":
            return prov.Answer(200, {name: body})
        if parts[0] == "_index_template":
            return prov.Answer(200, {"index_templates": [{"name": name, "index_template": body}]})
        raise AssertionError(f"unexpected GET {path}")


def config(**es: Any) -> Config:
    return build_config({"output": {"sinks": ["elasticsearch"], "elasticsearch": es}, "plugins": {"entrypoints": False}}, source="test")


def provision(state: ClusterState, cfg: Config) -> list[dict[str, Any]]:
    return prov.run(prov.plan(cfg.output.elasticsearch), state.answer)


def writes(sent: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in sent if r["method"] != "GET"]


def test_second_provision_is_a_no_op() -> None:
    state = ClusterState()
    first = provision(state, config())
    assert ("PUT", f"/_transform/{assets.transform_id()}") in writes(first)
    assert state.aliases[assets.LATEST_ALIAS] == {assets.dest_index()}
    assert state.started == {assets.transform_id()}
    assert writes(provision(state, config())) == []


def test_a_changed_setting_rewrites_only_what_it_touches() -> None:
    state = ClusterState()
    provision(state, config())
    assert writes(provision(state, config(ilm_delete_after="10d"))) == [("PUT", f"/_ilm/policy/{assets.ILM_POLICY}")]
    changed = writes(provision(state, config(ilm_delete_after="10d", transform_retention_max_age="5m")))
    tid = assets.transform_id()
    # the transform is recreated in place; its destination (and data) stays
    assert changed == [("POST", f"/_transform/{tid}/_stop"), ("DELETE", f"/_transform/{tid}"), ("PUT", f"/_transform/{tid}"), ("POST", f"/_transform/{tid}/_start")]


def test_a_changed_template_rolls_the_data_streams_over() -> None:
    state = ClusterState()
    provision(state, config())
    changed = writes(provision(state, config(ingested_by="client")))
    assert ("POST", "/logs-ti_misp.threat_attributes-default/_rollover") in changed
    assert ("POST", "/logs-ti_misp.threat-default/_rollover") in changed


def test_a_new_version_upgrades_and_removes_what_the_old_one_left(monkeypatch: pytest.MonkeyPatch) -> None:
    state = ClusterState()
    provision(state, config())
    old_tid, old_dest = assets.transform_id(), assets.dest_index()
    monkeypatch.setattr(assets, "ASSET_VERSION", assets.ASSET_VERSION + 1)
    sent = writes(provision(state, config()))
    new_tid, new_dest = assets.transform_id(), assets.dest_index()
    assert ("PUT", f"/{new_dest}") in sent and ("PUT", f"/_transform/{new_tid}") in sent
    assert ("DELETE", f"/_transform/{old_tid}") in sent and ("DELETE", f"/{old_dest}") in sent
    assert f"/_transform/{old_tid}" not in state.store and f"/{old_dest}" not in state.store
    assert state.aliases[assets.LATEST_ALIAS] == {new_dest}
    assert state.started == {new_tid}
    assert writes(provision(state, config())) == []


def test_foreign_assets_are_never_overwritten_or_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    state = ClusterState()
    # an old destination index of Elastic's own ti_misp package, same naming scheme
    state.store[f"/{assets.DEST_PREFIX}99"] = {"mappings": {"_meta": {"managed_by": "fleet"}}}
    provision(state, config())
    assert f"/{assets.DEST_PREFIX}99" in state.store
    state.store[f"/{assets.dest_index()}"] = {"mappings": {"_meta": {"managed_by": "fleet"}}}
    state.store.pop(f"/_transform/{assets.transform_id()}")
    with pytest.raises(SinkError, match="did not create"):
        provision(state, config())


def test_beats_mode_checks_for_the_integration() -> None:
    state = ClusterState()
    with pytest.raises(SinkError, match="ti_misp integration"):
        provision(state, config(mode="beats"))
    with pytest.raises(ConfigError, match="preserve_original_event"):
        prov.check_settings(config(mode="beats").output.elasticsearch, preserve_original_event=False)


def test_the_hook_returns_the_dry_run_requests_and_reports_real_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from misp_ti.model import RunContext
    from misp_ti.timeutil import utcnow

    cfg = config()
    dry = elasticsearch_sink.provision(ctx=RunContext(config=cfg, now=utcnow(), dry_run=True))
    assert dry == prov.run(prov.plan(cfg.output.elasticsearch), prov.assumed_answer)
    state = ClusterState()
    monkeypatch.setattr(elasticsearch_sink, "send", lambda client, req: state.answer(req))
    ctx = RunContext(config=cfg, now=utcnow(), resources={"elasticsearch_sink.client": object()})
    done = elasticsearch_sink.provision(ctx=ctx)
    assert {"sink": "elasticsearch", "method": "PUT", "path": f"/_transform/{assets.transform_id()}"} in done
    assert elasticsearch_sink.provision(ctx=ctx) == [{"sink": "elasticsearch", "action": "up to date", "version": assets.ASSET_VERSION}]
