"""The Elasticsearch sink against a real cluster: the scenario of the model tests.

Runs when ``MISP_TI_TEST_ES_URL`` points at a cluster (it writes to it: use a
throw-away one) or when a Docker engine can start one (testcontainers);
otherwise skips with the reason, and ``MISP_TI_TEST_REQUIRE_ES=1`` makes that a
failure. The ``elasticsearch_url`` fixture comes from misp-ti's test kit.

It runs :class:`helpers.es_scenario.Scenario` (the one ``test_es_on_model.py`` and
``test_es_provision.py`` run against the model) on real time: provision,
backfill, edits/deletes/inserts and a poll, with the alias compared to the
embedded store each time; a second provision is a no-op; an upgrade keeps
every active IOC visible after every request. See docs/elasticsearch.md.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from helpers.es_scenario import Key, Scenario, store_keys
from misp_ti.sinks.elasticsearch import assets
from misp_ti.sinks.elasticsearch import provision as prov
from misp_ti.sinks.elasticsearch.client import make_client, send


class SystemClock:
    """Real time in whole seconds (the MISP simulator and the engine share it)."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    __call__ = now

    def advance(self, delta: timedelta | float) -> datetime:
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else delta
        time.sleep(max(0.0, seconds))
        return self.now()


class ClusterBackend:
    settle_time = timedelta(0)

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))  # type: ignore[operator]
        self.namespace = f"t{int(time.time() * 1000) % 10**9}"
        self.es_settings: dict[str, Any] = {
            "namespace": self.namespace, "transform_frequency": "1s", "transform_sync_delay": "1s",
        }
        if parts.username:
            self.es_settings |= {"username": parts.username, "password": parts.password or ""}
        self.client: Any = None

    def make_clock(self) -> SystemClock:
        return SystemClock()

    def start(self, clock: Any, stack: ExitStack) -> str:
        from misp_ti.config import ElasticsearchSettings

        self.client = make_client(ElasticsearchSettings(hosts=[self.url], **{k: v for k, v in self.es_settings.items() if k in ("username", "password")}))
        stack.callback(self.cleanup)
        return self.url

    def settle(self, clock: Any) -> None:
        # frequency 1 s, sync delay 1 s: a few seconds and two checkpoints later the view has caught up
        deadline = time.monotonic() + 60
        start = time.time() * 1000
        while time.monotonic() < deadline:
            stats = self.client.transform.get_transform_stats(transform_id=f"{assets.transform_prefix('threat_attributes')}*,{assets.transform_prefix('threat')}*")
            if all((t.get("checkpointing", {}).get("last", {}).get("timestamp_millis") or 0) > start + 2000 for t in stats["transforms"]):
                break
            time.sleep(1)
        self.client.indices.refresh(index="logs-ti_misp_latest.*", ignore_unavailable=True)

    def alias_keys(self, stream: str, at: datetime) -> set[Key]:
        resp = self.client.search(index=assets.latest_alias(stream), size=10_000, ignore_unavailable=True)
        return {(h["_source"]["event"]["dataset"], h["_source"]["misp"]["attribute"]["uuid"]) for h in resp["hits"]["hits"]}

    def cleanup(self) -> None:
        c = self.client.options(ignore_status=404)
        for tid in c.transform.get_transform(transform_id="misp-ti.latest_*").get("transforms", []):
            c.transform.stop_transform(transform_id=tid["id"], force=True, wait_for_completion=True)
            c.transform.delete_transform(transform_id=tid["id"], force=True)
        # deletes name their targets (action.destructive_requires_name is on by default since 8.0)
        for index in c.indices.get(index="misp-ti-latest.*", expand_wildcards="all"):
            c.indices.delete(index=index)
        for ds in c.indices.get_data_stream(name=f"logs-ti_misp.*-{self.namespace}").get("data_streams", []):
            c.indices.delete_data_stream(name=ds["name"])
        self.client.close()


def test_the_scenario_on_a_real_cluster(elasticsearch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ClusterBackend(elasticsearch_url)
    with Scenario(tmp_path, backend) as sc:
        sc.provision()
        sc.poll_and_settle()
        assert sc.compare_everywhere()["active"] > 50
        sc.mutate(0)
        sc.poll_and_settle()
        sc.compare_everywhere()
        # the ILM policy is really attached to the backing indices
        backing = backend.client.indices.get(index=assets.data_stream("threat_attributes", backend.namespace))
        assert backing and all(b["settings"]["index"]["lifecycle"]["name"] == assets.ILM_POLICY for b in backing.values())
        # provisioning again changes nothing
        assert [a for a in sc.provision() if a["sink"] == "elasticsearch"] == [{"sink": "elasticsearch", "action": "up to date", "version": assets.ASSET_VERSION}]
        [check] = sc.engine.provision(check=True)  # security on or off, an answer; with the suite's user, enough
        assert check["ok"] is True, check
        # a new version: after every request, every active IOC is visible through the alias
        before = {s: store_keys(sc.store, s, sc.clock.now()) for s in sc.streams}
        monkeypatch.setattr(assets, "ASSET_VERSION", assets.ASSET_VERSION + 1)
        plan = prov.plan(sc.config.output.elasticsearch, sc.streams)
        req, assumed = next(plan)
        try:
            while True:
                answer = send(backend.client, req)
                backend.client.indices.refresh(index="logs-ti_misp_latest.*", ignore_unavailable=True)
                for stream in sc.streams:
                    assert before[stream] <= backend.alias_keys(stream, sc.clock.now()), f"after {req['method']} {req['path']}"
                req, assumed = plan.send(answer)
        except StopIteration:
            pass
        for stream in sc.streams:
            assert set(backend.client.indices.get_alias(name=assets.latest_alias(stream))) == {assets.dest_index(stream)}
