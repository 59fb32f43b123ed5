"""Shared pieces of the reliability and security suites.

* :class:`FakeElasticsearch`: a loopback HTTP server that speaks just enough
  of Elasticsearch's REST API for the sink (product header, provisioning
  requests acknowledged, ``_bulk`` answered per item). It is a stand-in for
  the *network endpoint*, not for Elasticsearch's behaviour: the suites use
  it to make the endpoint refuse, and to see exactly what was sent.
* small helpers to build configs and read the embedded store.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Decides one bulk item's status from (item number over the server's life, action, source).
ItemPolicy = Callable[[int, dict[str, Any], dict[str, Any]], int]


class FakeElasticsearch:
    """``with FakeElasticsearch() as es: es.url``; ``es.bulk_status`` (a whole
    ``_bulk`` request's status, 200 by default) and ``es.item_status`` (per
    item) may be changed at any time; ``es.documents`` holds every accepted
    source by ``_id``; ``es.headers`` every request's headers."""

    def __init__(self) -> None:
        self.bulk_status = 200
        self.item_status: ItemPolicy = lambda n, action, source: 201
        self.documents: dict[str, dict[str, Any]] = {}
        self.headers: list[dict[str, str]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.bulk_items = 0
        self._lock = threading.Lock()
        self._connections: set[Any] = set()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeElasticsearch:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per keep-alive request

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def _body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("x-elastic-product", "Elasticsearch")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                body = self._body()
                with fake._lock:
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                path = self.path.split("?", 1)[0]
                if path == "/_bulk" or path.endswith("/_bulk"):
                    status, payload = fake._bulk(body)
                elif self.command == "GET" and path == "/":
                    status, payload = 200, {"version": {"number": "8.17.0"}, "tagline": "You Know, for Search"}
                elif self.command in ("GET", "HEAD"):
                    # a first install: nothing there yet (wildcard reads list nothing)
                    status, payload = (200, {}) if "*" in path else (404, {"error": {"type": "resource_not_found_exception", "reason": "no such thing"}, "status": 404})
                else:
                    status, payload = 200, {"acknowledged": True}
                with fake._lock:
                    fake.requests.append((self.command, path, status))
                self._reply(status, payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the port and every open connection: from now on connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            with self._lock:
                for conn in self._connections:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self._connections.clear()

    def _bulk(self, body: bytes) -> tuple[int, Any]:
        if self.bulk_status != 200:
            return self.bulk_status, {"error": {"type": "unavailable", "reason": "refusing on purpose"}, "status": self.bulk_status}
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        items = []
        errors = False
        with self._lock:
            for action, source in zip(lines[::2], lines[1::2], strict=True):
                op, meta = next(iter(action.items()))
                self.bulk_items += 1
                status = self.item_status(self.bulk_items, action, source)
                item: dict[str, Any] = {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": status}
                if status in (200, 201):
                    if meta.get("_id") in self.documents:
                        item["status"] = 409
                        item["error"] = {"type": "version_conflict_engine_exception", "reason": "document already exists"}
                        errors = True
                    else:
                        self.documents[meta.get("_id")] = source
                        item["result"] = "created"
                else:
                    errors = True
                    item["error"] = {"type": "mapper_parsing_exception" if status == 400 else "es_rejected_execution_exception", "reason": f"refused with {status} on purpose"}
                items.append({op: item})
        return 200, {"took": 1, "errors": errors, "items": items}


def store_snapshot(path: Path) -> dict[tuple[str, str], tuple[str, int, int]]:
    """The embedded store's latest view, row by row."""
    from misp_ti.sinks.sqlite import EmbeddedStore

    store = EmbeddedStore(path)
    try:
        return store.latest_snapshot()
    finally:
        store.close()


def source_ids(path: Path) -> list[str]:
    """Every ``_id`` in the embedded store's source table (a list: duplicates would show)."""
    import sqlite3

    conn = sqlite3.connect(str(path))
    try:
        return [row[0] for row in conn.execute("SELECT id FROM source")]
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# a MISP history: a backfill, then edits between incremental polls

T0_ISO = "2026-03-01T12:00:00Z"


def history_edits(sim: Any, uuids: list[str], step: int, rng: Any) -> None:
    """Deterministic MISP activity before incremental poll ``step`` (1-based):
    new attributes (one in an existing event), edits, soft deletes, sightings.
    ``uuids``: the dataset's attribute uuids (``[a["uuid"] for a in
    ds.attributes()]``). Fed the same ``rng`` seed, two simulators receive
    identical edits."""
    for i in range(5):
        sim.add_attribute(
            uuid=f"00000000-0000-4000-8000-{step:06d}{i:06d}", type="ip-dst",
            value=f"203.0.{step}.{i + 1}", category="Network activity", to_ids=True, tags=["tlp:green"],
        )
    for uuid in rng.sample(uuids, 4):
        sim.modify_attribute(uuid, comment=f"edited in step {step}", to_ids=True)
    for uuid in rng.sample(uuids, 2):
        sim.delete_attribute(uuid)
    for uuid in rng.sample(uuids, 3):
        sim.add_sighting(uuid)
