"""The Elasticsearch sink against a real cluster.

Runs when ``MISP_TI_ES_URL`` points at a cluster (it writes to it: use a
throw-away one) or when a Docker engine can start one (testcontainers);
otherwise skips with the reason, and ``MISP_TI_REQUIRE_ES=1`` makes that a
failure. The ``elasticsearch_url`` fixture comes from misp-ti's test kit.
See docs/elasticsearch.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from misp_ti.config import build_config
from misp_ti.engine import Engine
from misp_ti.es import assets
from misp_ti.es.client import make_client
from test_es_contract import ListFetch, raw_records


def cluster_settings(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    settings: dict[str, Any] = {"hosts": [urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))]}
    if parts.username:
        settings |= {"username": parts.username, "password": parts.password or ""}
    return settings


@pytest.fixture
def es_config(elasticsearch_url: str, tmp_path: Path) -> Any:
    namespace = f"t{int(time.time() * 1000) % 10**9}"
    return build_config(
        {
            "output": {
                "sinks": ["elasticsearch"],
                "sqlite": {"path": str(tmp_path / "state.db")},
                "elasticsearch": {
                    **cluster_settings(elasticsearch_url), "namespace": namespace,
                    "transform_frequency": "1s", "transform_sync_delay": "1s", "backoff_initial": "0.1s",
                },
            },
            "expiry": {"ioc_expiration_duration": "36500d"},
            "plugins": {"entrypoints": False},
        },
        source="test",
    )


def wait_for_latest(client: Any, expected: int, timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    hits: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        client.indices.refresh(index=assets.LATEST_ALIAS, ignore_unavailable=True)
        resp = client.search(index=assets.LATEST_ALIAS, size=1000, ignore_unavailable=True)
        hits = resp["hits"]["hits"]
        if len(hits) >= expected:
            return hits
        time.sleep(1)
    return hits


def test_provision_backfill_latest_view_reprovision_and_upgrade(es_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(es_config.output.elasticsearch)
    with Engine(es_config, extra_plugins=[ListFetch()]) as engine:
        engine.provision()
        [result] = engine.run_once(streams=["threat_attributes"])
        ctx = engine.context(dry_run=True)
        docs = engine.process("threat_attributes", raw_records("threat_attributes"), ctx)
        assert result.completed and result.delivered == {"elasticsearch": len(docs)}
        indicators = [d for d in docs if d["event"].get("kind") != "pipeline_error"]
        active = {d["misp"]["attribute"]["uuid"] for d in indicators if not d["misp"]["attribute"]["decayed"]}
        assert active  # with a 100-year validity every well-formed attribute is active

        hits = wait_for_latest(client, len(active))
        assert {h["_source"]["misp"]["attribute"]["uuid"] for h in hits} == active
        assert all("is_ioc_transform_source" not in h["_source"].get("labels", {}) for h in hits)
        assert all(h["_source"]["event"]["ingested"] for h in hits)

        # the ILM policy is really attached to the backing indices
        stream = assets.data_stream("threat_attributes", es_config.output.elasticsearch.namespace)
        settings = client.indices.get_settings(index=stream)
        assert all(s["settings"]["index"]["lifecycle"]["name"] == assets.ILM_POLICY for s in settings.values())

        # replaying the batch is harmless: every item is a 409 = delivered
        from misp_ti.es import bulk

        assert bulk.write(client, "threat_attributes", docs, es_config).delivered == len(docs)

        # provisioning again changes nothing
        assert engine.provision() == [{"sink": "elasticsearch", "action": "up to date", "version": assets.ASSET_VERSION}]

        # a new version moves the view and deletes what the old one left
        old_tid, old_dest = assets.transform_id(), assets.dest_index()
        monkeypatch.setattr(assets, "ASSET_VERSION", assets.ASSET_VERSION + 1)
        try:
            engine.provision()
            assert not client.indices.exists(index=old_dest)
            assert client.transform.get_transform(transform_id=f"{assets.TRANSFORM_PREFIX}*")["count"] == 1
            assert set(client.indices.get_alias(name=assets.LATEST_ALIAS)) == {assets.dest_index()}
            hits = wait_for_latest(client, len(active))
            assert {h["_source"]["misp"]["attribute"]["uuid"] for h in hits} == active
        finally:
            # leave the cluster as we found it
            for tid in (old_tid, assets.transform_id()):
                client.options(ignore_status=404).transform.stop_transform(transform_id=tid, force=True, wait_for_completion=True)
                client.options(ignore_status=404).transform.delete_transform(transform_id=tid, force=True)
            client.options(ignore_status=404).indices.delete(index=f"{assets.DEST_PREFIX}*")
            client.options(ignore_status=404).indices.delete_data_stream(name=f"logs-ti_misp.*-{es_config.output.elasticsearch.namespace}")
    client.close()
