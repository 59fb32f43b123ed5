"""Prometheus metrics and a health endpoint for ``misp-ti run``.

The exposition is ``prometheus_client``'s (its registry, types and text
format); this module only names the metrics, feeds them from engine events
and serves ``/metrics`` and ``/healthz`` on a loopback address. Each engine
gets its own :class:`~prometheus_client.CollectorRegistry`, so two engines
in one process (tests) never share counters.

Health answers like ``misp-ti status``' exit code (docs/contracts.md):
``200`` when healthy (0), ``503`` when degraded (1) or unusable (2), with a
JSON body naming the state and why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("misp_ti.metrics")

#: Buckets of MISP request latency, seconds: restSearch pages take 0.05 s to minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HEALTH_NAMES = {0: "healthy", 1: "degraded", 2: "unusable"}


class Metrics:
    """The metrics of one engine; the engine calls the ``on_*`` methods."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cycles = Counter("misp_ti_cycles", "Poll cycles by stream and outcome (completed, interrupted, failed).", ["source", "stream", "outcome"], registry=r)
        self.records = Counter("misp_ti_records", "MISP records read.", ["source", "stream"], registry=r)
        self.documents = Counter("misp_ti_documents", "Documents built (including pipeline errors).", ["source", "stream"], registry=r)
        self.pipeline_errors = Counter("misp_ti_pipeline_errors", "Records that became pipeline_error documents.", ["source", "stream"], registry=r)
        self.sink_documents = Counter(
            "misp_ti_sink_documents",
            "Documents per sink by result: delivered, dead_lettered, failure_stored.",
            ["sink", "result"], registry=r,
        )
        self.misp_requests = Counter("misp_ti_misp_requests", "HTTP requests to MISP by status (a code, or error).", ["status"], registry=r)
        self.misp_retries = Counter("misp_ti_misp_retries", "MISP requests that were retries.", registry=r)
        self.misp_latency = Histogram(
            "misp_ti_misp_request_seconds", "Time of one MISP HTTP request, answer body included.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.cursor_lag = Gauge("misp_ti_cursor_lag_seconds", "Now minus the stream's cursor.", ["source", "stream"], registry=r)
        self.last_success = Gauge(
            "misp_ti_last_success_timestamp_seconds", "When the stream's last cycle completed (Unix time).", ["source", "stream"], registry=r
        )
        self.failures_in_row = Gauge("misp_ti_failures_in_row", "Failed cycles since the last completed one.", ["source", "stream"], registry=r)

    # engine events -----------------------------------------------------------

    def on_cycle_finished(self, stream: str, result: Any, *, finished_at: datetime, source: str = "default") -> None:
        """``result`` is an :class:`misp_ti.engine.CycleResult`; ``source``: its MISP (``[misp.<name>]``)."""
        self.cycles.labels(source, stream, "completed" if result.completed else "interrupted").inc()
        self.records.labels(source, stream).inc(result.records)
        self.documents.labels(source, stream).inc(result.documents)
        self.pipeline_errors.labels(source, stream).inc(result.pipeline_errors)
        for what in ("delivered", "dead_lettered", "failure_stored"):
            counts: Mapping[str, int] = getattr(result, what)
            for sink, count in counts.items():
                self.sink_documents.labels(sink, what).inc(count)
        if result.completed:
            self.last_success.labels(source, stream).set(finished_at.timestamp())
            self.failures_in_row.labels(source, stream).set(0)

    def on_cycle_failed(self, stream: str, *, source: str = "default") -> None:
        self.cycles.labels(source, stream, "failed").inc()
        self.failures_in_row.labels(source, stream).inc()

    def on_misp_request(self, status: int | str, seconds: float, *, retry: bool) -> None:
        self.misp_requests.labels(str(status)).inc()
        self.misp_latency.observe(seconds)
        if retry:
            self.misp_retries.inc()

    def on_cursor(self, stream: str, cursor_at: datetime | None, now: datetime, *, source: str = "default") -> None:
        if cursor_at is not None:
            self.cursor_lag.labels(source, stream).set(max(0.0, (now - cursor_at).total_seconds()))


Health = Callable[[], tuple[int, Mapping[str, Any]]]


class MetricsServer:
    """Serves ``/metrics`` (Prometheus) and ``/healthz`` in a daemon thread."""

    def __init__(self, metrics: Metrics, health: Health, *, host: str = "127.0.0.1", port: int = 0) -> None:
        registry, check = metrics.registry, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._answer(200, content_type, encoder(registry))
                elif path in ("/healthz", "/health"):
                    try:
                        code, detail = check()
                    except Exception as exc:  # a broken check is itself an unusable state
                        code, detail = 2, {"error": f"health check failed: {type(exc).__name__}"}
                    body = {"status": HEALTH_NAMES.get(code, "unusable"), "code": code, **detail}
                    self._answer(200 if code == 0 else 503, "application/json", orjson.dumps(body))
                else:
                    self._answer(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("metrics: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="misp-ti-metrics", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
