"""A loopback HTTP endpoint that accepts Elasticsearch ``_bulk`` requests (stdlib only).

    python benchmarks/bulk_endpoint.py      # prints "READY <url>", serves until stdin closes

Every other request is answered as a first install would be (GET: 404,
writes: acknowledged), so the sink can provision. Each ``_bulk`` item is
answered ``201 created`` with its ``_id``. It measures the client side
(serialisation, batching, HTTP), not Elasticsearch: run it in its own
process so its parsing does not share the benchmark's CPU time.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-elastic-product", "Elasticsearch")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path.endswith("/_bulk"):
            items = []
            lines = raw.splitlines()
            for action_line in lines[::2]:
                action = orjson.loads(action_line)
                op, meta = next(iter(action.items()))
                items.append({op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 201, "result": "created"}})
            self._reply(200, orjson.dumps({"took": 1, "errors": False, "items": items}))
        elif self.command == "GET" and path == "/":
            self._reply(200, b'{"version": {"number": "8.17.0"}}')
        elif self.command == "GET":
            self._reply(200, b"{}") if "*" in path else self._reply(404, b'{"status": 404}')
        else:
            self._reply(200, b'{"acknowledged": true}')

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    print(f"READY http://{host}:{port}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
