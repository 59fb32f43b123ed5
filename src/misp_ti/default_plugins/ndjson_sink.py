"""Sink ``ndjson``: the wiring of :mod:`misp_ti.sinks.ndjson` (a file or stdout, for piping)."""

from __future__ import annotations

from typing import Any

from misp_ti import hookimpl
from misp_ti.errors import SinkError
from misp_ti.model import RunContext, SinkReport, StashKey
from misp_ti.sinks.ndjson import NdjsonWriter

NAME = "ndjson"
MISP_TI_SINKS = (NAME,)


_WRITER: StashKey[NdjsonWriter] = StashKey("ndjson_sink.writer")


@hookimpl
def provision(ctx: RunContext) -> list[dict[str, Any]] | None:
    if not ctx.sink_enabled(NAME):
        return None
    if ctx.check:
        return None
    return [{"sink": NAME, "action": "nothing to install", "path": ctx.config.output.ndjson.path}]


@hookimpl
def emit(stream: str, docs: list[dict[str, Any]], ctx: RunContext) -> SinkReport | None:
    if not ctx.sink_enabled(NAME):
        return None
    if ctx.dry_run:
        return SinkReport(NAME, delivered=len(docs))
    path = ctx.config.output.ndjson.path
    try:
        ctx.stash.get_or_create(_WRITER, lambda: NdjsonWriter(path)).write(docs)
    except OSError as exc:
        raise SinkError(f"ndjson sink {path}: {exc.strerror or exc}") from exc
    return SinkReport(NAME, delivered=len(docs))
