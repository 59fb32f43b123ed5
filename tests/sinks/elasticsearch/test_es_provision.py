"""Provisioning against the MODEL of Elasticsearch (``misp_ti.testing.es_model``).

The model applies the server's rules as read in Elasticsearch's source
(template resolution, data-stream-only templates, field types, transforms,
alias filters, privileges). These tests show that what misp-ti provisioned
before asset version 2 (recorded in ``tests/data/es/provision-v1-dry-run.ndjson``)
is refused or wrong on a stock cluster, and that today's plan is accepted,
idempotent, upgrades without a gap, leaves foreign assets alone and names
missing privileges. ``test_es_cluster.py`` runs against a real cluster.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.es_provision import config, sender, wire_params
from helpers.es_scenario import ModelBackend, Scenario, alias_keys, store_keys
from misp_ti.config import Config
from misp_ti.default_plugins import elasticsearch_sink
from misp_ti.errors import ConfigError, SinkError
from misp_ti.sinks.elasticsearch import assets
from misp_ti.sinks.elasticsearch import provision as prov
from misp_ti.testing.clock import ManualClock
from misp_ti.testing.es_model import ModelCluster
from misp_ti.testing.es_model.rules import threat_hits
from misp_ti.testing.es_model.security import Role, SecurityState

V1_REQUESTS = [json.loads(line) for line in (Path(__file__).parents[2] / "data" / "es" / "provision-v1-dry-run.ndjson").read_text().splitlines()]


def provision(cluster: ModelCluster, cfg: Config, **kwargs: Any) -> list[dict[str, Any]]:
    return prov.run(prov.plan(cfg.output.elasticsearch, ("threat_attributes", "threat"), **kwargs), sender(cluster))


def writes(sent: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in sent if r["method"] != "GET"]


def replay(cluster: ModelCluster, requests: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    answers = {}
    for req in requests:
        answers[(req["method"], req["path"])] = cluster.handle(req["method"], req["path"], wire_params(req["params"]), req["body"])
    return answers


# what asset version 1 did on a stock cluster -------------------------------------

def test_v1_destination_is_refused_on_a_stock_cluster() -> None:
    """Finding 1: the built-in ``logs`` template (``logs-*-*``, data stream only)
    claims ``logs-ti_misp_latest.dest_threat_attributes-1``."""
    cluster = ModelCluster((8, 15))
    answers = replay(cluster, V1_REQUESTS)
    refused = answers[("PUT", "/logs-ti_misp_latest.dest_threat_attributes-1")]
    assert refused.status == 400
    assert "matches with template [logs] that creates data streams only" in refused.body["error"]["reason"]
    started = answers[("POST", "/_transform/misp-ti.latest_threat_attributes-1/_start")]
    assert started.status >= 400  # the transform cannot create it either


def test_v2_provision_is_accepted_on_every_modelled_version() -> None:
    for version in ((8, 13), (8, 15), (8, 19), (9, 0), (9, 2)):
        cluster = ModelCluster(version)
        sent = provision(cluster, config())  # raises on any refusal
        for stream in ("threat_attributes", "threat"):
            dest = cluster.state.indices[assets.dest_index(stream)]
            assert dest.hidden and dest.data_stream is None
            assert dest.aliases[assets.latest_alias(stream)].filter == assets.alias_filter()
        assert ("POST", "/_aliases") in writes(sent)


def test_v1_destination_mappings_differed_from_the_sources() -> None:
    """Finding 3: v1's destination had only explicit mappings; a document's
    other strings became ``text`` there and ``keyword`` in the sources."""
    cluster = ModelCluster((8, 15))
    replay(cluster, [r for r in V1_REQUESTS if r["path"] != "/logs-ti_misp_latest.dest_threat_attributes-1"])
    v1_dest = next(r for r in V1_REQUESTS if r["method"] == "PUT" and r["path"] == "/logs-ti_misp_latest.dest_threat_attributes-1")
    # the same body under a name no data-stream template claims: what v1 would have had
    assert cluster.handle("PUT", "/v1-dest-as-it-would-be", {}, v1_dest["body"]).status == 200
    v2 = ModelCluster((8, 15))
    provision(v2, config())
    doc = sample_doc()
    for c, source, dest in ((cluster, "logs-ti_misp.threat_attributes-default", "v1-dest-as-it-would-be"),
                            (v2, "logs-ti_misp.threat_attributes-default", assets.dest_index("threat_attributes"))):
        assert c.handle("POST", f"/{source}/_doc", {"op_type": "create"}, doc).status == 201
        assert c.handle("POST", f"/{dest}/_doc", {}, doc).status == 201
    old = {f: (cluster.field_types("logs-ti_misp.threat_attributes-default")[f], cluster.field_types("v1-dest-as-it-would-be")[f])
           for f in ("threat.indicator.provider", "event.kind", "tags", "threat.indicator.url.domain")}
    assert all(src == "keyword" and dst == "text" for src, dst in old.values()), old
    new_source, new_dest = v2.field_types("logs-ti_misp.threat_attributes-default"), v2.field_types(assets.dest_index("threat_attributes"))
    assert all(new_source[f] == new_dest[f] == "keyword" for f in old)


def sample_doc() -> dict[str, Any]:
    return {
        "@timestamp": "2026-03-01T00:00:00.000Z",
        "event": {"kind": "enrichment", "category": ["threat"], "type": ["indicator"], "dataset": "ti_misp.threat_attributes"},
        "tags": ["tlp:white"],
        "threat": {"indicator": {"provider": "CIRCL", "type": "url", "url": {"domain": "example.org", "full": "https://example.org/x"}}},
        "misp": {"attribute": {"uuid": "u-1", "decayed": False, "decayed_at": "2030-01-01T00:00:00.000Z"}},
    }


def test_v1_threat_stream_was_invisible_to_the_prebuilt_rules() -> None:
    """Finding 4: v1 labelled the ``threat`` stream as a transform source, but
    no transform read it; v2 gives it a latest view the rules see."""
    doc = {**sample_doc(), "event": {**sample_doc()["event"], "dataset": "ti_misp.threat"}}
    doc["threat"] = {"indicator": {"type": "ipv4-addr", "ip": "203.0.113.5"}}
    doc["@timestamp"] = "2026-03-01T00:00:00.000Z"
    clock = ManualClock(datetime(2026, 3, 1, 1, tzinfo=UTC))
    v1 = ModelCluster((8, 15), clock=clock.now)
    replay(v1, V1_REQUESTS)
    v2 = ModelCluster((8, 15), clock=clock.now)
    provision(v2, config())
    for c in (v1, v2):
        assert c.handle("POST", "/logs-ti_misp.threat-default/_doc", {"op_type": "create"}, doc).status == 201
    clock.advance(timedelta(minutes=5))
    for c in (v1, v2):
        c.advance()
    assert threat_hits(v1, "address", now=clock.now()) == []
    hits = threat_hits(v2, "address", now=clock.now())
    assert [h["_index"] for h in hits] == [assets.dest_index("threat")]


# today's plan ---------------------------------------------------------------------

def test_second_provision_is_a_no_op() -> None:
    cluster = ModelCluster((8, 19))
    first = provision(cluster, config())
    assert ("PUT", f"/_transform/{assets.transform_id('threat_attributes')}") in writes(first)
    assert writes(provision(cluster, config())) == []
    for stream in ("threat_attributes", "threat"):
        assert cluster.state.transforms[assets.transform_id(stream)].state == "started"


def test_a_changed_setting_rewrites_only_what_it_touches() -> None:
    cluster = ModelCluster((8, 19))
    provision(cluster, config())
    assert writes(provision(cluster, config(ilm_delete_after="10d"))) == [("PUT", f"/_ilm/policy/{assets.ILM_POLICY}")]
    changed = writes(provision(cluster, config(ilm_delete_after="10d", transform_retention_max_age="5m")))
    expected = []
    for stream in ("threat_attributes", "threat"):
        tid = assets.transform_id(stream)
        expected += [("POST", f"/_transform/{tid}/_stop"), ("DELETE", f"/_transform/{tid}"), ("PUT", f"/_transform/{tid}"), ("POST", f"/_transform/{tid}/_start")]
    assert changed == expected  # the destination (and its IOCs) stays


def test_a_changed_template_rolls_the_data_streams_over() -> None:
    cluster = ModelCluster((8, 19))
    provision(cluster, config())
    changed = writes(provision(cluster, config(ingested_by="client")))
    assert ("POST", "/logs-ti_misp.threat_attributes-default/_rollover") in changed
    assert len(cluster.state.data_streams["logs-ti_misp.threat-default"].backing) == 2


def test_foreign_assets_are_never_overwritten_or_deleted() -> None:
    cluster = ModelCluster((8, 19))
    foreign = f"{assets.dest_prefix('threat_attributes')}99"
    assert cluster.handle("PUT", f"/{foreign}", {}, {"mappings": {"_meta": {"managed_by": "someone"}}}).status == 200
    provision(cluster, config())
    assert foreign in cluster.state.indices
    cluster2 = ModelCluster((8, 19))
    assert cluster2.handle("PUT", f"/{assets.dest_index('threat_attributes')}", {}, {"mappings": {"_meta": {"managed_by": "someone"}}}).status == 200
    with pytest.raises(SinkError, match="did not create"):
        provision(cluster2, config())


FLEET_TEMPLATE = {
    "index_patterns": ["logs-ti_misp.threat_attributes-*"], "priority": 200, "data_stream": {},
    "composed_of": ["logs@mappings"], "_meta": {"package": {"name": "ti_misp"}, "managed_by": "fleet", "managed": True},
}


def test_fleet_assets_stop_provision_before_any_write() -> None:
    cluster = ModelCluster((8, 19))
    assert cluster.handle("PUT", "/_index_template/logs-ti_misp.threat_attributes", {}, FLEET_TEMPLATE).status == 200
    sent: list[tuple[str, str]] = []
    send = sender(cluster)

    def recording(req: dict[str, Any], assumed: Any) -> prov.Answer:
        sent.append((req["method"], req["path"]))
        return send(req, assumed)

    with pytest.raises(SinkError, match=r"ti_misp integration \(Fleet\) is installed.*index template logs-ti_misp.threat_attributes.*Uninstall"):
        prov.run(prov.plan(config().output.elasticsearch), recording)
    assert all(method == "GET" for method, _ in sent)


def test_an_alias_held_by_a_foreign_index_is_not_taken_over() -> None:
    cluster = ModelCluster((8, 19))
    # Fleet's own destination of an older package version, holding the alias
    assert cluster.handle("PUT", "/fleet-latest-dest", {}, {"mappings": {"_meta": {"managed": True, "managed_by": "fleet"}}}).status == 200
    assert cluster.handle("POST", "/_aliases", {}, {"actions": [{"add": {"index": "fleet-latest-dest", "alias": assets.latest_alias("threat_attributes")}}]}).status == 200
    with pytest.raises(SinkError, match="already points to fleet-latest-dest, which misp-ti did not create"):
        provision(cluster, config())
    assert set(cluster.handle("GET", f"/_alias/{assets.latest_alias('threat_attributes')}").body) == {"fleet-latest-dest"}


def test_beats_mode_checks_for_the_integration() -> None:
    cluster = ModelCluster((8, 19))
    with pytest.raises(SinkError, match="ti_misp integration"):
        provision(cluster, config(mode="beats"))
    with pytest.raises(ConfigError, match="preserve_original_event"):
        prov.check_settings(config(mode="beats").output.elasticsearch, preserve_original_event=False)


# upgrades --------------------------------------------------------------------------

def step_checked(sc: Scenario, plan: Any, user: str | None = None) -> list[dict[str, Any]]:
    """Drive ``plan`` against the scenario's model; after every request, every
    IOC active in the embedded store is visible through its stream's alias."""
    cluster, send = sc.backend.cluster, sender(sc.backend.cluster, user)
    sent: list[dict[str, Any]] = []
    try:
        req, assumed = next(plan)
        while True:
            answer = send(req, assumed)
            sent.append(req)
            now = sc.clock.now()
            for stream in sc.streams:
                missing = store_keys(sc.store, stream, now) - alias_keys(cluster, stream, now)
                assert not missing, f"after {req['method']} {req['path']}: {len(missing)} active {stream} IOCs invisible"
            req, assumed = plan.send(answer)
    except StopIteration:
        pass
    return sent


def model_sleep(sc: Scenario) -> Any:
    def sleep(seconds: float) -> None:
        sc.clock.advance(timedelta(seconds=max(1, seconds)))
        sc.backend.run_transforms()
    return sleep


def test_a_new_version_never_hides_an_active_ioc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Scenario(tmp_path, ModelBackend((8, 19))) as sc:
        sc.provision()
        sc.poll_and_settle()
        # the source streams keep days only: as ILM would, drop the backing
        # indices, so the new transform alone could not rebuild the view
        cluster = sc.backend.cluster
        for stream in sc.streams:
            ds = assets.data_stream(stream, "default")
            assert cluster.handle("POST", f"/{ds}/_rollover").status == 200
            old_backing = cluster.state.data_streams[ds].backing[0]
            assert cluster.handle("DELETE", f"/{old_backing}").status == 200
        old = {s: (assets.transform_id(s), assets.dest_index(s)) for s in sc.streams}
        active_before = {s: store_keys(sc.store, s, sc.clock.now()) for s in sc.streams}
        assert all(active_before.values())
        monkeypatch.setattr(assets, "ASSET_VERSION", assets.ASSET_VERSION + 1)
        outcome = prov.Outcome()
        plan = prov.plan(sc.config.output.elasticsearch, sc.streams, outcome=outcome, sleep=model_sleep(sc), clock=lambda: sc.clock.now().timestamp())
        sent = step_checked(sc, plan)
        assert outcome.notes == []
        for stream, (old_tid, old_dest) in old.items():
            assert ("POST", "/_reindex") in writes(sent)
            assert old_dest not in cluster.state.indices and old_tid not in cluster.state.transforms
            assert set(cluster.handle("GET", f"/_alias/{assets.latest_alias(stream)}").body) == {assets.dest_index(stream)}
            assert alias_keys(cluster, stream, sc.clock.now()) == active_before[stream]
        # and the view keeps working on the new version
        sc.mutate(0)
        sc.poll_and_settle()
        sc.compare_everywhere()


def test_an_upgrade_waits_for_the_new_view_and_finishes_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Scenario(tmp_path, ModelBackend((8, 19)), streams=("threat_attributes",)) as sc:
        sc.provision()
        sc.poll_and_settle()
        cluster = sc.backend.cluster
        old_dest = assets.dest_index("threat_attributes")
        monkeypatch.setattr(assets, "ASSET_VERSION", assets.ASSET_VERSION + 1)
        settings = sc.config.output.elasticsearch.model_copy(update={"upgrade_wait": timedelta(seconds=10)})
        outcome = prov.Outcome()
        # the transforms never get a turn: the new view never finishes its first checkpoint
        plan = prov.plan(settings, sc.streams, outcome=outcome, sleep=lambda s: sc.clock.advance(timedelta(seconds=max(1, s))),
                         clock=lambda: sc.clock.now().timestamp())
        step_checked(sc, plan)
        assert outcome.notes and "Run provision again" in outcome.notes[0]
        assert set(cluster.handle("GET", f"/_alias/{assets.latest_alias('threat_attributes')}").body) == {old_dest}
        assert old_dest in cluster.state.indices  # kept: the alias still needs it
        plan = prov.plan(settings, sc.streams, outcome=(later := prov.Outcome()), sleep=model_sleep(sc), clock=lambda: sc.clock.now().timestamp())
        step_checked(sc, plan)
        assert later.notes == []
        assert set(cluster.handle("GET", f"/_alias/{assets.latest_alias('threat_attributes')}").body) == {assets.dest_index("threat_attributes")}
        assert old_dest not in cluster.state.indices


def test_version_1_on_a_cluster_without_the_builtin_templates_is_upgraded(tmp_path: Path) -> None:
    """Where v1 did work (``stack.templates.enabled: false``), v2 takes its
    IOCs over: reindex from the legacy destination, move the alias, remove it."""
    backend = ModelBackend((8, 19))
    backend.builtin_templates = False
    with Scenario(tmp_path, backend, streams=("threat_attributes",)) as sc:
        cluster = sc.backend.cluster
        # v1 composed ecs@mappings only when the cluster had it (the recording assumed it did)
        v1 = json.loads(json.dumps(V1_REQUESTS))
        for req in v1:
            if req["method"] == "PUT" and req["path"].startswith("/_index_template/"):
                req["body"]["composed_of"].remove("ecs@mappings")
        replay_ok = replay(cluster, v1)
        assert all(a.status < 300 or a.status == 404 for a in replay_ok.values()), {k: a.status for k, a in replay_ok.items() if a.status >= 300}
        sc.store.provision()  # the embedded store as usual; in Elasticsearch, v1 is what is installed
        sc.engine._provisioned = True
        sc.poll_and_settle()
        legacy = "logs-ti_misp_latest.dest_threat_attributes-1"
        assert set(cluster.handle("GET", f"/_alias/{assets.latest_alias('threat_attributes')}").body) == {legacy}
        before = alias_keys(cluster, "threat_attributes", sc.clock.now())
        assert before == store_keys(sc.store, "threat_attributes", sc.clock.now()) and before
        plan = prov.plan(sc.config.output.elasticsearch, sc.streams, sleep=model_sleep(sc), clock=lambda: sc.clock.now().timestamp())
        step_checked(sc, plan)
        assert legacy not in cluster.state.indices and "misp-ti.latest_threat_attributes-1" not in cluster.state.transforms
        assert alias_keys(cluster, "threat_attributes", sc.clock.now()) == before


# privileges ------------------------------------------------------------------------

PROVISIONER = Role(cluster=assets.privileges()["cluster"], indices=assets.privileges()["index"], name="misp-ti")


def test_the_documented_role_is_enough_for_provision_and_delivery(tmp_path: Path) -> None:
    backend = ModelBackend((8, 19))
    backend.security = SecurityState(users={"misp-ti": PROVISIONER})
    backend.es_settings = {"username": "misp-ti", "password": "not-checked-by-the-model"}
    with Scenario(tmp_path, backend) as sc:
        [check] = sc.engine.provision(check=True)
        assert check == {"sink": "elasticsearch", "check": "privileges", "ok": True, "missing": []}
        sc.provision()
        sc.poll_and_settle()
        sc.compare_everywhere()
        sc.mutate(1)
        sc.clock.advance(timedelta(days=2))
        sc.poll_and_settle()  # housekeeping (delete_by_query) runs as this user too
        sc.compare_everywhere()
        assert not (tmp_path / "dead.ndjson").exists()


def test_check_names_what_is_missing_and_provision_fails_clearly(tmp_path: Path) -> None:
    weak = Role(cluster=["manage_index_templates", "manage_ilm", "manage_pipeline"], indices=assets.privileges()["index"][:1], name="weak")
    backend = ModelBackend((8, 19))
    backend.security = SecurityState(users={"weak": weak})
    backend.es_settings = {"username": "weak", "password": "x"}
    with Scenario(tmp_path, backend) as sc:
        [check] = sc.engine.provision(check=True)
        assert check["ok"] is False
        assert "manage_transform on cluster" in check["missing"]
        assert any(m.startswith("read, delete") and "misp-ti-latest.threat_attributes-*" in m for m in check["missing"])
        with pytest.raises(SinkError, match="HTTP 403"):
            sc.provision()


def test_the_hook_returns_the_dry_run_requests_and_reports_real_writes(tmp_path: Path) -> None:
    from misp_ti.model import RunContext
    from misp_ti.timeutil import utcnow

    cfg = config()
    dry = elasticsearch_sink.provision(ctx=RunContext(config=cfg, now=utcnow(), dry_run=True))
    assert dry == prov.run(prov.plan(cfg.output.elasticsearch, ("threat_attributes", "threat")), prov.assumed_answer)
    checked = elasticsearch_sink.provision(ctx=RunContext(config=cfg, now=utcnow(), dry_run=True, check=True))
    assert checked == [prov.request("POST", "/_security/user/_has_privileges", assets.privileges(("threat_attributes", "threat")))]


def test_check_on_a_cluster_without_security_says_so(tmp_path: Path) -> None:
    with Scenario(tmp_path, ModelBackend((8, 19))) as sc:
        [check] = sc.engine.provision(check=True)
    assert check["ok"] is True and "security is off" in check["note"]


def test_cli_check_exits_1_naming_what_is_missing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from misp_ti.cli import cli
    from misp_ti.testing.es_model import serve

    weak = Role(cluster=["monitor"], indices=[], name="weak")
    cluster = ModelCluster((8, 19), security=SecurityState(users={"weak": weak, "misp-ti": PROVISIONER}))
    with serve(cluster) as url:
        for user, code in (("weak", 1), ("misp-ti", 0)):
            path = tmp_path / f"{user}.toml"
            path.write_text(
                f'[output]\nsinks = ["elasticsearch"]\n[output.elasticsearch]\nhosts = ["{url}"]\nusername = "{user}"\n'
                f'password_file = "{tmp_path / "pw"}"\n[plugins]\nentrypoints = false\n', encoding="utf-8")
            (tmp_path / "pw").write_text("a-password-never-shown\n", encoding="utf-8")
            path.chmod(0o600)
            (tmp_path / "pw").chmod(0o600)
            result = CliRunner().invoke(cli, ["--config", str(path), "--quiet", "provision", "--check"])
            assert result.exit_code == code, result.output
            assert "a-password-never-shown" not in result.output
            if code:
                assert result.stderr.startswith("misp-ti: elasticsearch lacks: ") and "manage_index_templates on cluster" in result.stderr
                assert "create_doc" in result.stderr
    # nothing was installed by a check
    assert not cluster.state.index_templates.keys() - {"logs"} and not cluster.state.transforms
