"""Sink ``ndjson``: one JSON document per line, to a file or stdout, for piping."""

from __future__ import annotations

import os
import sys
from typing import IO, Any

import orjson

from misp_ti import hookimpl
from misp_ti.errors import SinkError
from misp_ti.model import RunContext, SinkReport

NAME = "ndjson"
MISP_TI_SINKS = (NAME,)


class _Writer:
    def __init__(self, path: str):
        self.path = path
        self._fh: IO[bytes] = sys.stdout.buffer if path == "-" else open(path, "ab")  # noqa: SIM115

    def write(self, docs: list[dict[str, Any]]) -> None:
        self._fh.write(b"".join(orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE) for doc in docs))
        self._fh.flush()
        if self.path != "-":
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self.path != "-":
            self._fh.close()


@hookimpl
def provision(ctx: RunContext) -> list[dict[str, Any]] | None:
    if not ctx.sink_enabled(NAME):
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
        ctx.resource("ndjson_sink.writer", lambda: _Writer(path)).write(docs)
    except OSError as exc:
        raise SinkError(f"ndjson sink {path}: {exc.strerror or exc}") from exc
    return SinkReport(NAME, delivered=len(docs))
