"""``misp-ti run`` as a service: the lock, signals, metrics, banner.

The CLI's ``run``, ``once`` and ``provision`` take the state's write lock
(:class:`~misp_ti.service.lock.StateLock`) before they build an engine, so a
second writer refuses at once. Signals: SIGTERM and SIGINT ask the engine
to stop (it cancels any wait of the running fetch and exits 0 with the
cursor at the last confirmed batch); a second SIGINT aborts. SIGHUP is
ignored with a log line: the configuration is read once at start, restart
the service to reload it (``systemctl restart``).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from misp_ti.config import Config
from misp_ti.errors import MispTiError
from misp_ti.redact import public_url
from misp_ti.service.lock import StateLock
from misp_ti.timeutil import iso, utcnow

log = logging.getLogger("misp_ti.service")


def state_lock(config: Config, command: str) -> StateLock:
    """The taken write lock of ``config``'s state file (raises exit 4 when held)."""
    return StateLock(config.state_path(), command=command).acquire()


def install_signal_handlers(engine: Any) -> None:
    def stop(signum: int, frame: Any) -> None:
        # no logging here: a handler may interrupt a log call holding its lock
        sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping at the last confirmed batch (SIGINT again to abort)\n")
        engine.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def hangup(signum: int, frame: Any) -> None:
        sys.stderr.write("SIGHUP ignored: the configuration is read at start; restart misp-ti to reload it\n")

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, hangup)


def banner(engine: Any, metrics_url: str | None) -> list[str]:
    """The start-up lines of ``run``: where it reads and writes, and when."""
    config: Config = engine.config
    sources: Mapping[str, Config] = getattr(engine, "sources", {"default": config})
    def every(view: Config) -> str:
        streams = view.streams.enabled()
        return ", ".join(f"{s} every {_span(view.streams.settings(s).interval)}" for s in streams) or "none"

    if config.named_sources:
        lines = [f"misp-ti run: MISP sources {', '.join(sources)}"]
        for name, view in sources.items():
            lines += [f"  {name}: {public_url(view.misp.url)}", f"    streams: {every(view)}"]
    else:
        lines = [f"misp-ti run: MISP {public_url(config.misp.url)}", f"  streams: {every(config)}"]
    lines += [
        "  sinks: " + ", ".join(config.output.sinks),
        f"  state: {config.state_path()}",
        f"  first poll: now ({iso(utcnow())})",
    ]
    refetch = engine.refetch_interval
    if refetch is not None:
        lines.append(f"  refetch every {_span(refetch)}")
    if metrics_url:
        lines.append(f"  metrics: {metrics_url}/metrics, health: {metrics_url}/healthz")
    return lines


def _span(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def health_check(engine: Any) -> Any:
    """A callable answering like ``misp-ti status`` for ``engine``'s config."""
    from misp_ti.service.status import StatusInputs, collect

    inputs = StatusInputs(engine.config, tuple(engine.config.streams.enabled()), engine.refetch_interval)

    def check() -> tuple[int, Mapping[str, Any]]:
        return collect(inputs, now=utcnow())

    return check


def start_metrics(engine: Any) -> Any:
    """Serve ``engine``'s metrics where ``service.metrics_address`` says; ``None`` when off."""
    endpoint = engine.config.service.metrics_endpoint()
    if endpoint is None or engine.metrics is None:
        return None
    from misp_ti.service.metrics import MetricsServer

    host, port = endpoint
    try:
        server = MetricsServer(engine.metrics, health_check(engine), host=host, port=port)
    except OSError as exc:
        error = MispTiError(f"service.metrics_address: cannot listen on {host}:{port}: {exc.strerror or exc}")
        error.exit_code = 2
        raise error from None
    return server.start()
