"""The HTTP side of the simulator: routes, API-key check, MISP's error bodies, faults.

Error bodies are MISP's (CakePHP's JSON exception renderer):
``{"name": <message>, "message": <message>, "url": <path>}``.

* bad or missing ``Authorization`` → 403 ``Authentication failed. Please make
  sure you pass the API key of an API enabled user along in the Authorization
  header.`` (``AppController::beforeFilter``);
* a body that is not a JSON object → 405 ``Invalid JSON input. Make sure that
  the JSON input is a correctly formatted JSON string. This request has been
  blocked to avoid an unfiltered request.`` (``AppController::_harvestParameters``);
* an unknown path → 404 ``Not Found``;
* a restSearch GET without parameters → 400.

As a MISP 2.5.1 does (``tests/data/real_misp_2.5.1``): error bodies are PHP's
``json_encode`` output, slashes escaped (``"\\/attributes\\/restSearch"``);
``/decayingModel/index`` and ``/servers/getVersion`` are pretty-printed with
slashes as they are (``RestResponseComponent::viewData``); every answer to a request carrying a key sets
session cookies (CakePHP's session, several ``Set-Cookie`` headers).
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from misp_ti.simulator.decay import index_rows
from misp_ti.simulator.filters import FilterError

if TYPE_CHECKING:
    from misp_ti.simulator.simulator import MispSimulator

__all__ = ["RecordedRequest", "RequestInfo", "SimulatorHTTPServer"]

log = logging.getLogger("misp_ti.simulator")

AUTH_FAILED = "Authentication failed. Please make sure you pass the API key of an API enabled user along in the Authorization header."
BAD_JSON = "Invalid JSON input. Make sure that the JSON input is a correctly formatted JSON string. This request has been blocked to avoid an unfiltered request."
GET_WITHOUT_PARAMS = "Restsearch queries using GET and no parameters are not allowed. If you have passed parameters via a JSON body, make sure you use POST requests."
INTERNAL_ERROR = "An Internal Error Has Occurred."
RATE_LIMITED = "Rate limit exceeded."

ROUTES = {
    "/attributes/restsearch": "attributes",
    "/events/restsearch": "events",
    "/decayingmodel/index": "models",
    "/decayingmodel/index.json": "models",
    "/servers/getversion": "version",
    "/servers/getversion.json": "version",
}

#: ``ServersController::getVersion`` of MISP 2.5.1 for a site admin (``uuid`` is
#: the instance's ``MISP.uuid``).
VERSION = {
    "version": "2.5.1",
    "pymisp_recommended_version": "2.5.1",
    "perm_sync": True,
    "perm_sighting": True,
    "perm_galaxy_editor": True,
    "perm_analyst_data": True,
    "uuid": "00000000-0000-4000-8000-00000000515a",
    "request_encoding": ["gzip"],
    "filter_sightings": True,
}
#: The session cookies CakePHP sets on an answer (MISP 2.5.1 sent three on most).
SESSION_COOKIES = (
    "MISP-simulated=simulated-session; path=/; HttpOnly; SameSite=Lax",
    "MISP-simulated=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/; HttpOnly; SameSite=Lax",
    "MISP-simulated=simulated-session; path=/; HttpOnly; SameSite=Lax",
)


def php_json(value: Any, *, pretty: bool = False) -> bytes:
    """PHP's ``json_encode``: compact with ``\\/`` for ``/`` (error bodies), or
    ``JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES`` as ``viewData`` writes data."""
    if pretty:
        return json.dumps(value, indent=4).encode()
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()

_PROXY_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_PHP_ERROR_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>MISP - Error</title></head><body>\n"
    '<h2>An Internal Error Has Occurred.</h2>\n<p class="error"><strong>Error: </strong>'
    "An Internal Error Has Occurred.</p>\n</body></html>\n"
)


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any
    #: HTTP status sent; 0 when the connection was reset without a response.
    status: int
    fault: str | None = None
    number: int | None = None


@dataclass
class RequestInfo:
    """What an ``on_request`` callback receives, before the restSearch request is answered."""

    path: str
    body: dict[str, Any]
    number: int
    fault: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Pages of thousands of attributes from several pollers: keep a deep accept queue.
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], simulator: MispSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimulatorHTTPServer
    #: (method, path, body, fault, number) of the request being answered; recorded once.
    _pending: tuple[Any, ...] | None = None

    def version_string(self) -> str:
        return "Apache"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug(
            "%s %s", self.address_string(), format % args
        )  # never headers: the key lives there

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus the client's
        # delayed ACK add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the client went away (timeouts) or we reset the connection on purpose

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    # -- plumbing ------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, Any] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header(
            "Content-Type",
            content_type if "charset" in content_type else content_type + "; charset=UTF-8",
        )
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        if self.headers.get("Authorization") is not None:
            for cookie in SESSION_COOKIES:
                self.send_header("Set-Cookie", cookie)
        # Record before the client can see the answer, so a test never races the record.
        self._record(status)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _error(
        self, status: int, message: str, path: str, headers: dict[str, Any] | None = None
    ) -> int:
        self._send(status, php_json({"name": message, "message": message, "url": path}), headers=headers)
        return status

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def _record(self, status: int) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            method, path, body, fault, number = pending
            self.server.simulator._record(
                RecordedRequest(method, path, body, status, fault, number)
            )

    # -- dispatch --------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        sim = self.server.simulator
        path = urlsplit(self.path).path
        raw = self._read_body()
        route = ROUTES.get(path.rstrip("/").lower())
        body: Any = None
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = _UNPARSABLE
        self._pending = (method, path, _loggable(body), None, None)
        if route is None:
            self._error(404, "Not Found", path)
            return
        fault = None
        number = None
        if route not in ("models", "version"):
            number, fault = sim._next_request()
            info = RequestInfo(
                path,
                body if isinstance(body, dict) else {},
                number,
                fault,
                _safe_headers(self.headers),
            )
            sim._notify(info)
            self._pending = (method, path, _loggable(body), fault, number)
            if fault is not None:
                self._fault(fault, route, path, body)
                if fault == "reset" or self._pending is not None:
                    self._record(0)  # no answer went out
                    self._reset()
                return
        self._answer(method, route, path, body)

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization")
        return given is not None and given.strip() == self.server.simulator.api_key

    def _answer(self, method: str, route: str, path: str, body: Any) -> int:
        sim = self.server.simulator
        if not self._authorised():
            return self._error(403, AUTH_FAILED, path)
        if route == "models":
            self._send(200, php_json(index_rows(sim.models), pretty=True))
            return 200
        if route == "version":
            self._send(200, php_json(VERSION, pretty=True))
            return 200
        if body is _UNPARSABLE or (body is not None and not isinstance(body, dict)):
            return self._error(405, BAD_JSON, path)
        if body is None and method == "GET":
            return self._error(400, GET_WITHOUT_PARAMS, path)
        try:
            payload, headers = sim._search(route, body or {})
        except FilterError as exc:
            log.info("restSearch rejected: %s", exc)
            return self._error(500, INTERNAL_ERROR, path)
        self._send(200, payload, headers=headers)
        return 200

    def _fault(self, fault: str, route: str, path: str, body: Any) -> int:
        sim = self.server.simulator
        if fault == "reset":
            return 0  # _dispatch records the request, then resets (so tests never race the record)
        if fault == "timeout":
            sim._stopping.wait(sim.timeout_delay)
            if sim._stopping.is_set():
                return 0  # shutting down: _dispatch resets the connection
            return self._answer("POST", route, path, body)
        if fault == "429":
            wait = sim.retry_after
            headers = {
                "X-Rate-Limit-Limit": 60,
                "X-Rate-Limit-Remaining": 0,
                "X-Rate-Limit-Reset": wait,
                "Retry-After": wait,
            }
            return self._error(429, RATE_LIMITED, path, headers=headers)
        if fault == "500":
            return self._error(500, INTERNAL_ERROR, path)
        if fault in ("502", "503"):
            reason = "Bad Gateway" if fault == "502" else "Service Temporarily Unavailable"
            self._send(
                int(fault), _PROXY_PAGE.format(code=fault, reason=reason).encode(), "text/html"
            )
            return int(fault)
        if fault == "html":
            self._send(500, _PHP_ERROR_PAGE.encode(), "text/html")
            return 500
        if fault == "shape":
            wrong: dict[str, Any] = (
                {"response": []} if route == "attributes" else {"response": {"Attribute": []}}
            )
            self._send(200, orjson.dumps(wrong), headers={"X-Result-Count": 0})
            return 200
        if fault == "truncate":
            if not self._authorised() or not isinstance(body, dict | None):
                return self._answer("POST", route, path, body)
            payload, headers = sim._search(route, body or {})
            self._send(200, payload[: max(len(payload) // 2, 1)], headers=headers)
            return 200
        raise AssertionError(f"unhandled fault kind {fault}")


class _Unparsable:
    def __repr__(self) -> str:
        return "<unparsable body>"


_UNPARSABLE = _Unparsable()


def _loggable(body: Any) -> Any:
    return None if body is _UNPARSABLE else body


def _safe_headers(headers: Any) -> dict[str, str]:
    return {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in headers.items()}
