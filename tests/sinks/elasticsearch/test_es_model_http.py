"""The real ``elasticsearch`` client, misp-ti's provisioning and its bulk writer against the model over HTTP
(``misp_ti.testing.es_model.serve``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from misp_ti.config import build_config
from misp_ti.errors import SinkError
from misp_ti.sinks.elasticsearch import assets, bulk, provision
from misp_ti.sinks.elasticsearch.client import make_client, send
from misp_ti.testing.es_model import ManualClock, ModelCluster, serve

API_KEY = "c2VjcmV0LWFwaS1rZXktdmFsdWU="


def make_config(tmp_path: Path, url: str) -> Any:
    return build_config({"output": {
        "sinks": ["elasticsearch"], "dead_letter_path": str(tmp_path / "dead.ndjson"),
        "sqlite": {"path": str(tmp_path / "state.db")},
        "elasticsearch": {"hosts": [url], "api_key": API_KEY, "max_retries": 0, "request_timeout": "5s"},
    }, "plugins": {"entrypoints": False}}, source="test")


@pytest.fixture
def served() -> Iterator[tuple[ModelCluster, str]]:
    cluster = ModelCluster(version=(9, 2), clock=ManualClock())
    with serve(cluster) as url:
        yield cluster, url


def test_client_speaks_to_the_model(served: tuple[ModelCluster, str]) -> None:
    cluster, url = served
    from elasticsearch import Elasticsearch, NotFoundError
    es = Elasticsearch(url, api_key=API_KEY)
    assert es.info()["version"]["number"] == "9.2.0"
    assert es.indices.exists(index="nothing").body is False
    es.indices.create(index="plain", mappings={"properties": {"a": {"type": "keyword"}}})
    assert es.indices.exists(index="plain").body is True
    with pytest.raises(NotFoundError):
        es.indices.get_mapping(index="missing")
    found = es.options(ignore_status=404).indices.get_index_template(name="logs-ti_misp*")
    assert found.meta.status == 404 and found.body == {"index_templates": []}
    result = es.bulk(operations=[{"index": {"_index": "plain", "_id": "1"}}, {"a": "x"}], refresh=True)
    assert result["errors"] is False and cluster.documents("plain") == {"1": {"a": "x"}}


def provision_over_http(client: Any, settings: Any) -> list[dict[str, Any]]:
    """Run the whole plan through the real client. Transforms are the other half of the model; where it does
    not answer them yet (501), this stands in with "no such transform" answers so the rest still runs."""
    from misp_ti.sinks.elasticsearch.provision import Answer
    sent: list[dict[str, Any]] = []

    def send_one(req: dict[str, Any], assumed: Any) -> Any:
        sent.append(req)
        if req["path"].startswith("/_transform"):
            try:
                return send(client, req)
            except SinkError as exc:
                if "model_unsupported_exception" not in str(exc):
                    raise
                if req["method"] != "GET":
                    return Answer(200, {"acknowledged": True})
                return Answer(200, {"count": 0, "transforms": []}) if "*" in req["path"] else Answer(404, {})
        return send(client, req)
    provision.run(provision.plan(settings), send_one)
    return [r for r in sent if not r["path"].startswith("/_transform")]


def test_provision_then_bulk_write_through_the_real_client(tmp_path: Path, served: tuple[ModelCluster, str]) -> None:
    cluster, url = served
    config = make_config(tmp_path, url)
    settings = config.output.elasticsearch
    client = make_client(settings)
    sent = provision_over_http(client, settings)
    assert ("PUT", "/_data_stream/logs-ti_misp.threat_attributes-default") in {(r["method"], r["path"]) for r in sent}
    stream = "threat_attributes"
    ds = assets.data_stream(stream, settings.namespace)
    assert ds in cluster.state.data_streams
    docs = [{"_id": f"doc-{i}", "@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": f"ti_misp.{stream}"},
             "misp": {"attribute": {"uuid": f"u-{i}"}}} for i in range(3)]
    report = bulk.write(client, stream, docs, config)
    assert report.delivered == 3
    assert set(cluster.documents(ds)) == {"doc-0", "doc-1", "doc-2"}
    again = bulk.write(client, stream, docs, config)  # a replay: 409 per item, counted as delivered
    assert again.delivered == 3 and len(cluster.documents(ds)) == 3
    # a second provision run only reads
    second = provision_over_http(client, settings)
    assert {r["method"] for r in second} == {"GET"}, [r for r in second if r["method"] != "GET"]
