"""Bulk partial failures, simulated at the HTTP layer: nothing is lost.

A fake ``_bulk`` endpoint on loopback answers each item with the status a
test scripts (201, 409, 400, 429, 5xx), so the real client, its streaming
helper and our per-item handling all run; only the cluster is simulated.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from helpers.fakeplugins import ListSource, MiniTransform, make_attributes
from misp_ti.config import build_config
from misp_ti.engine import Engine
from misp_ti.errors import ConfigError, SinkError
from misp_ti.sinks.elasticsearch import bulk
from misp_ti.sinks.elasticsearch.client import client_options, make_client

API_KEY = "c2VjcmV0LWFwaS1rZXktdmFsdWU="
Script = Callable[[str, int], int]  # (document _id, attempt number from 1) -> item status
#: A script's answer for "201, but into the data stream's failure store".
FAILURE_STORED = -201


class FakeBulkCluster:
    """Answers ``/_bulk`` per item from ``script``; other GETs 404, other writes 200."""

    def __init__(self) -> None:
        self.script: Script = lambda _id, attempt: 201
        self.attempts: dict[str, int] = {}
        self.created: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        #: every ``_bulk`` body received, as its NDJSON lines' JSON objects
        self.bodies: list[list[dict[str, Any]]] = []
        self.status_for_everything: int | None = None
        #: ids whose error is a bare string, not Elasticsearch's {"type", "reason"} object
        self.string_errors: set[str] = set()
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                cluster.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                if cluster.status_for_everything is not None:
                    self._answer(cluster.status_for_everything, {"error": {"type": "security_exception", "reason": "denied"}, "status": cluster.status_for_everything})
                elif self.path.split("?")[0] == "/_bulk":
                    self._answer(200, cluster.bulk(raw))
                elif self.command in ("GET", "HEAD"):
                    self._answer(404, {"error": {"type": "resource_not_found_exception", "reason": "missing"}, "status": 404})
                else:
                    self._answer(200, {"acknowledged": True})

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bulk(self, raw: bytes) -> dict[str, Any]:
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        self.bodies.append(lines)
        items = []
        for action in lines[0::2]:
            meta = action["create"]
            _id = meta["_id"]
            self.attempts[_id] = self.attempts.get(_id, 0) + 1
            status = self.script(_id, self.attempts[_id])
            if status in (200, 201) and _id in self.created:
                status = 409
            failure_store = status == FAILURE_STORED
            if failure_store:
                status = 201
            item: dict[str, Any] = {"_index": meta["_index"], "_id": _id, "status": status}
            if failure_store:  # as Elasticsearch 9.x answers (IndexDocFailureStoreStatus.USED)
                item.update(result="created", failure_store="used")
            elif status in (200, 201):
                self.created.add(_id)
                item["result"] = "created"
            else:
                kind = {400: "document_parsing_exception", 409: "version_conflict_engine_exception", 429: "es_rejected_execution_exception"}.get(status, "internal_server_error")
                item["error"] = f"scripted {status}" if _id in self.string_errors else {"type": kind, "reason": f"scripted {status}"}
            items.append({"create": item})
        return {"took": 1, "errors": any(i["create"]["status"] >= 300 for i in items), "items": items}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cluster() -> Iterator[FakeBulkCluster]:
    fake = FakeBulkCluster()
    yield fake
    fake.close()


def make_config(tmp_path: Path, url: str, **es: Any) -> Any:
    return build_config(
        {
            "output": {
                "sinks": ["elasticsearch"],
                "dead_letter_path": str(tmp_path / "dead.ndjson"),
                "sqlite": {"path": str(tmp_path / "state.db")},
                "elasticsearch": {
                    "hosts": [url], "api_key": API_KEY, "max_retries": 3, "backoff_initial": "0.01s",
                    "backoff_max": "0.05s", "request_timeout": "5s", **es,
                },
            },
            "plugins": {"entrypoints": False},
        },
        source="test",
    )


def docs(n: int) -> list[dict[str, Any]]:
    return [
        {"_id": f"doc-{i}", "event": {"dataset": "ti_misp.threat_attributes"}, "misp": {"attribute": {"uuid": f"u-{i}"}}}
        for i in range(n)
    ]


def test_every_item_is_delivered_or_dead_lettered(tmp_path: Path, cluster: FakeBulkCluster) -> None:
    plan = {
        "doc-1": [409],            # a replay: already there
        "doc-2": [400],            # a mapping error: can never fit
        "doc-3": [429, 201],       # rejected once, then accepted
        "doc-4": [500, 429, 201],  # two transient failures
        "doc-5": [503, 201],
    }
    cluster.script = lambda _id, attempt: plan.get(_id, [201])[min(attempt, len(plan.get(_id, [201]))) - 1]
    config = make_config(tmp_path, cluster.url, chunk_size=4)
    client = make_client(config.output.elasticsearch)
    report = bulk.write(client, "threat_attributes", docs(10), config)
    assert (report.delivered, report.dead_lettered) == (9, 1)
    assert cluster.attempts["doc-4"] == 3 and cluster.attempts["doc-3"] == 2
    assert cluster.attempts["doc-0"] == 1  # accepted items are not sent again
    dead = [json.loads(line) for line in (tmp_path / "dead.ndjson").read_text().splitlines()]
    assert len(dead) == 1
    assert dead[0]["_id"] == "doc-2" and dead[0]["stream"] == "threat_attributes" and dead[0]["status"] == 400
    assert dead[0]["reason"]["type"] == "document_parsing_exception"
    assert dead[0]["doc"]["misp"]["attribute"]["uuid"] == "u-2"
    assert (tmp_path / "dead.ndjson").stat().st_mode & 0o777 == 0o600  # it holds intelligence
    # the API key went in the header, never anywhere else
    assert all(headers.get("authorization") == f"ApiKey {API_KEY}" for _, _, headers in cluster.requests)


def test_items_still_rejected_after_the_retries_fail_the_batch(tmp_path: Path, cluster: FakeBulkCluster) -> None:
    cluster.script = lambda _id, attempt: 429 if _id == "doc-1" else 201
    config = make_config(tmp_path, cluster.url, max_retries=2)
    with pytest.raises(SinkError, match=r"did not accept 1 of 3 .*HTTP 429.*cursor kept") as caught:
        bulk.write(make_client(config.output.elasticsearch), "threat_attributes", docs(3), config)
    assert cluster.attempts["doc-1"] == 3
    assert API_KEY not in str(caught.value)


def test_a_cluster_refusing_the_credentials_fails_without_leaking_them(tmp_path: Path, cluster: FakeBulkCluster) -> None:
    cluster.status_for_everything = 401
    config = make_config(tmp_path, cluster.url, max_retries=0)
    with pytest.raises(SinkError) as caught:
        bulk.write(make_client(config.output.elasticsearch), "threat_attributes", docs(2), config)
    assert "401" in str(caught.value) and API_KEY not in str(caught.value)
    assert not (tmp_path / "dead.ndjson").exists()  # the cluster's fault: nothing dead-lettered


def test_a_cluster_that_is_down_keeps_the_cursor(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = make_config(tmp_path, url, max_retries=0)
    with Engine(config, extra_plugins=[ListSource(make_attributes(5)), MiniTransform()]) as engine:
        with pytest.raises(SinkError, match="unreachable"):
            engine.run_once()
        assert engine.state.get_cursor("threat_attributes") is None


def test_through_the_engine_the_cursor_waits_for_every_document(tmp_path: Path, cluster: FakeBulkCluster) -> None:
    records = make_attributes(12)
    healthy = {"value": False}
    failing: set[str] = set()

    def script(_id: str, attempt: int) -> int:
        # the first three documents seen keep failing until the cluster heals
        if not healthy["value"] and (len(failing) < 3 or _id in failing):
            failing.add(_id)
            return 503
        return 201

    cluster.script = script
    config = make_config(tmp_path, cluster.url, max_retries=1, chunk_size=5)
    source = ListSource(records, page_size=6)
    with Engine(config, extra_plugins=[source, MiniTransform()]) as engine:
        with pytest.raises(SinkError, match="HTTP 503"):
            engine.run_once()
        assert engine.state.get_cursor("threat_attributes") is None  # nothing confirmed yet
        healthy["value"] = True
        [result] = engine.run_once()
        assert result.completed
        assert engine.state.get_cursor("threat_attributes") == {"offset": 12}
    # every document reached the cluster; the replayed ones came back as 409 = delivered
    assert len(cluster.created) == 12
    assert result.delivered == {"elasticsearch": 12}


def test_client_options_cover_auth_and_tls(tmp_path: Path) -> None:
    es = make_config(tmp_path, "https://es.example:9200", ssl_assert_fingerprint="AB:CD").output.elasticsearch
    options = client_options(es)
    assert options["api_key"] == API_KEY and options["verify_certs"] is True
    assert options["ssl_assert_fingerprint"] == "AB:CD" and options["request_timeout"] == 5.0
    basic = make_config(tmp_path, "https://es.example:9200", api_key=None, username="elastic", password="pw", ca_file=str(tmp_path / "ca.pem")).output.elasticsearch
    assert client_options(basic)["basic_auth"] == ("elastic", "pw") and client_options(basic)["ca_certs"].endswith("ca.pem")
    cloud = make_config(tmp_path, "https://unused:9200", cloud_id="name:ZXhhbXBsZS5jb20kYWJjJGRlZg==").output.elasticsearch
    assert "hosts" not in client_options(cloud) and client_options(cloud)["cloud_id"].startswith("name:")
    with pytest.raises(ConfigError, match="not in the URL") as caught:  # refused when the config is read
        make_config(tmp_path, "https://elastic:hunter2@es.example:9200")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="password"):
        client_options(make_config(tmp_path, "https://es.example:9200", api_key=None, username="elastic").output.elasticsearch)


def test_failure_store_items_are_counted_apart_reported_and_dead_lettered(tmp_path: Path, cluster: FakeBulkCluster, caplog: pytest.LogCaptureFixture) -> None:
    cluster.script = lambda _id, attempt: FAILURE_STORED if _id in ("doc-2", "doc-5") else 201
    config = make_config(tmp_path, cluster.url)
    client = make_client(config.output.elasticsearch)
    batch = docs(6)
    with caplog.at_level("WARNING", logger="misp_ti"):
        report = bulk.write(client, "threat_attributes", batch, config)
    assert (report.delivered, report.dead_lettered, report.failure_stored) == (4, 0, 2)
    assert "failure store" in caplog.text and "2 of 6" in caplog.text
    lines = [json.loads(line) for line in (tmp_path / "dead.ndjson").read_text().splitlines()]
    assert [(r["_id"], r["reason"]["type"]) for r in lines] == [("doc-2", "failure_store"), ("doc-5", "failure_store")]
    assert lines[0]["doc"]["misp"]["attribute"]["uuid"] == "u-2"
    # through the engine: the cycle summary carries it, delivered does not count it
    engine = Engine(config, extra_plugins=[ListSource(make_attributes(3)), MiniTransform()])
    cluster.script = lambda _id, attempt: FAILURE_STORED
    with engine:
        [result] = engine.run_once(streams=["threat_attributes"])
    assert result.completed
    assert result.failure_stored == {"elasticsearch": 3} and result.delivered == {"elasticsearch": 0}
    assert result.as_dict()["failure_stored"] == {"elasticsearch": 3}


# --- what reaches the cluster and the dead-letter file, line by line


def sent_pairs(cluster: FakeBulkCluster) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(body[i], body[i + 1]) for body in cluster.bodies for i in range(0, len(body), 2)]


@pytest.mark.parametrize("ingested_by", ["server", "client"])
def test_each_document_is_created_in_its_data_stream_with_its_id_outside_the_source(
    tmp_path: Path, cluster: FakeBulkCluster, ingested_by: str
) -> None:
    config = make_config(tmp_path, cluster.url, namespace="prod", ingested_by=ingested_by)
    batch = docs(2)
    batch[0]["event"]["kind"] = "enrichment"
    batch[1]["data_stream"] = {"type": "logs", "dataset": "mine", "namespace": "x"}  # a plugin's own: kept
    report = bulk.write(make_client(config.output.elasticsearch), "threat_attributes", batch, config)
    assert report.delivered == 2
    pairs = sent_pairs(cluster)
    assert [header for header, _ in pairs] == [
        {"create": {"_index": "logs-ti_misp.threat_attributes-prod", "_id": "doc-0"}},
        {"create": {"_index": "logs-ti_misp.threat_attributes-prod", "_id": "doc-1"}},
    ]
    first, second = (source for _, source in pairs)
    assert "_id" not in first and "_id" not in second
    assert first["data_stream"] == {"type": "logs", "dataset": "ti_misp.threat_attributes", "namespace": "prod"}
    assert second["data_stream"] == {"type": "logs", "dataset": "mine", "namespace": "x"}
    assert first["misp"] == {"attribute": {"uuid": "u-0"}}
    assert first["event"]["kind"] == "enrichment" and first["event"]["dataset"] == "ti_misp.threat_attributes"
    if ingested_by == "client":
        assert first["event"]["ingested"].endswith("Z") and first["event"]["ingested"] == second["event"]["ingested"]
    else:
        assert "ingested" not in first["event"]  # the ingest pipeline sets it
    # the documents handed in are not changed: the other sinks get them as they were
    assert batch[0] == {"_id": "doc-0", "event": {"dataset": "ti_misp.threat_attributes", "kind": "enrichment"},
                        "misp": {"attribute": {"uuid": "u-0"}}}


def test_dead_letters_go_beside_the_state_file_by_default_with_everything_to_replay_them(
    tmp_path: Path, cluster: FakeBulkCluster
) -> None:
    config = build_config(
        {
            "output": {
                "sinks": ["elasticsearch"], "sqlite": {"path": str(tmp_path / "state.db")},
                "elasticsearch": {"hosts": [cluster.url], "api_key": API_KEY, "max_retries": 0},
            },
            "plugins": {"entrypoints": False},
        },
        source="test",
    )
    cluster.script = lambda _id, attempt: 400 if _id in ("doc-0", "doc-2") else 201
    client = make_client(config.output.elasticsearch)
    report = bulk.write(client, "threat_attributes", docs(3), config)
    assert (report.delivered, report.dead_lettered) == (1, 2)
    path = tmp_path / "state.dead-letter.ndjson"
    assert bulk.dead_letter_path(config) == path
    first = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["_id"] for r in first] == ["doc-0", "doc-2"]
    record = first[1]
    assert record["sink"] == "elasticsearch" and record["stream"] == "threat_attributes"
    assert record["index"] == "logs-ti_misp.threat_attributes-default" and record["status"] == 400
    assert record["reason"] == {"type": "document_parsing_exception", "reason": "scripted 400"}
    assert record["doc"]["misp"] == {"attribute": {"uuid": "u-2"}} and "_id" not in record["doc"]
    assert record["time"].endswith("Z")
    # a second failing batch appends: the first records stay
    cluster.script = lambda _id, attempt: 400
    bulk.write(client, "threat_attributes", [{**docs(1)[0], "_id": "doc-9"}], config)
    assert [json.loads(line)["_id"] for line in path.read_text().splitlines()] == ["doc-0", "doc-2", "doc-9"]


def test_two_rejected_documents_with_one_id_each_keep_their_own_source(tmp_path: Path, cluster: FakeBulkCluster) -> None:
    config = make_config(tmp_path, cluster.url)
    batch = [{**doc, "_id": "same"} for doc in docs(2)]
    cluster.script = lambda _id, attempt: 400
    report = bulk.write(make_client(config.output.elasticsearch), "threat_attributes", batch, config)
    assert report.dead_lettered == 2
    dead = [json.loads(line) for line in (tmp_path / "dead.ndjson").read_text().splitlines()]
    assert [r["doc"]["misp"]["attribute"]["uuid"] for r in dead] == ["u-0", "u-1"]


def test_the_failure_summary_counts_each_status_and_the_retries(tmp_path: Path, cluster: FakeBulkCluster) -> None:
    statuses = {"doc-1": 503, "doc-2": 500, "doc-3": 503}
    cluster.script = lambda _id, attempt: statuses.get(_id, 201)
    config = make_config(tmp_path, cluster.url, max_retries=1)
    with pytest.raises(SinkError) as caught:
        bulk.write(make_client(config.output.elasticsearch), "threat_attributes", docs(5), config)
    assert str(caught.value) == (
        "Elasticsearch did not accept 3 of 5 threat_attributes documents after 1 retries "
        "(1 x HTTP 500, 2 x HTTP 503); cursor kept"
    )
    assert not (tmp_path / "dead.ndjson").exists()  # retryable failures are never dead-lettered


def test_a_dead_letter_file_that_cannot_be_written_fails_the_batch(tmp_path: Path, cluster: FakeBulkCluster) -> None:
    (tmp_path / "blocker").write_text("a file where the dead-letter directory should be")
    config = make_config(tmp_path, cluster.url, max_retries=0)
    config = config.model_copy(update={"output": config.output.model_copy(update={"dead_letter_path": tmp_path / "blocker" / "dead.ndjson"})})
    cluster.script = lambda _id, attempt: 400
    with pytest.raises(SinkError, match=r"^cannot write the dead-letter file .*blocker/dead\.ndjson: "):
        bulk.write(make_client(config.output.elasticsearch), "threat_attributes", docs(1), config)


@pytest.mark.parametrize(("mode", "expected"), [("beats", "pipeline=logs-ti_misp.threat_attributes-1.0"), ("ecs", None)])
def test_the_beats_pipeline_is_asked_for_in_beats_mode_only(
    tmp_path: Path, cluster: FakeBulkCluster, mode: str, expected: str | None
) -> None:
    config = make_config(tmp_path, cluster.url, mode=mode, beats_pipeline="logs-ti_misp.threat_attributes-1.0")
    batch = [{**doc, "event": {**doc["event"], "original": "{}"}} for doc in docs(2)]
    assert bulk.write(make_client(config.output.elasticsearch), "threat_attributes", batch, config).delivered == 2
    queries = [path.partition("?")[2] for _, path, _ in cluster.requests if path.startswith("/_bulk")]
    assert queries and all((expected in q) if expected else "pipeline" not in q for q in queries)
    if mode == "beats":
        assert bulk.bulk_params(config) == {"pipeline": "logs-ti_misp.threat_attributes-1.0"}
        [(_, source), _] = sent_pairs(cluster)
        assert source["message"] == "{}" and source["data_stream"]["dataset"] == "ti_misp.threat_attributes"


def test_a_rejection_without_an_error_object_is_dead_lettered_with_its_text(tmp_path: Path, cluster: FakeBulkCluster) -> None:
    config = make_config(tmp_path, cluster.url)
    config = config.model_copy(update={"output": config.output.model_copy(update={"dead_letter_path": tmp_path / "new" / "dir" / "dead.ndjson"})})
    cluster.script = lambda _id, attempt: 400
    cluster.string_errors = {"doc-0"}
    assert bulk.write(make_client(config.output.elasticsearch), "threat_attributes", docs(1), config).dead_lettered == 1
    [record] = [json.loads(line) for line in (tmp_path / "new" / "dir" / "dead.ndjson").read_text().splitlines()]
    assert record["reason"] == {"reason": "scripted 400"}  # and the missing directories were made
