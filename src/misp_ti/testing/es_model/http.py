"""A loopback HTTP front end, so the real ``elasticsearch`` Python client can talk to a ``ModelCluster``.

Answers carry ``X-Elastic-Product: Elasticsearch`` (the 8.x client refuses a server without it) and a JSON
content type matching what the client asked for (``application/vnd.elasticsearch+json; compatible-with=8``
or plain JSON). One lock serializes ``handle``: the model is not thread-safe.

With security on (``ModelCluster(security=...)``) the request's user is the
name in its ``Authorization: Basic`` header (the password is not checked:
the model checks what a user may do, not who they are); a request without
one has no user and is refused as Elasticsearch refuses it.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


def _user(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


@contextmanager
def serve(cluster: Any) -> Iterator[str]:
    """Serve ``cluster`` on 127.0.0.1 (a free port) for the ``with`` block; yields its base URL."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = "/".join(unquote(p) for p in parts.path.split("/"))
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            body: Any = None
            if raw:
                if path.rstrip("/").endswith("_bulk"):
                    body = raw.decode()
                else:
                    try:
                        body = json.loads(raw)
                    except json.JSONDecodeError as exc:
                        self._answer(400, {"error": {"type": "parse_exception", "reason": f"Failed to parse content: {exc.msg}"}, "status": 400})
                        return
            with lock:
                answer = cluster.handle(self.command, path, params, body, user=_user(self.headers.get("Authorization")))
            self._answer(answer.status, answer.body)

        def _answer(self, status: int, body: Any) -> None:
            data = b"" if self.command == "HEAD" or body is None else json.dumps(body).encode()
            accept = self.headers.get("Accept") or ""
            content_type = "application/vnd.elasticsearch+json;compatible-with=8" if "vnd.elasticsearch" in accept else "application/json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
