"""Sink ``sqlite``: the embedded store (see :mod:`misp_ti.sinks.sqlite`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from misp_ti import hookimpl
from misp_ti.errors import SinkError, StoreError
from misp_ti.model import RunContext, SinkReport, StashKey
from misp_ti.sinks.sqlite import EmbeddedStore

NAME = "sqlite"
MISP_TI_SINKS = (NAME,)
#: The engine's embedded store in ``ctx.stash``.
STORE: StashKey[EmbeddedStore] = StashKey("sqlite_sink.store")


def _store(ctx: RunContext) -> EmbeddedStore:
    return ctx.stash.get_or_create(STORE, lambda: EmbeddedStore(ctx.config.output.sqlite.path))


@hookimpl
def provision(ctx: RunContext) -> list[dict[str, Any]] | None:
    if not ctx.sink_enabled(NAME):
        return None
    if ctx.dry_run:
        return [{"sink": NAME, "action": "would create schema", "path": str(ctx.config.output.sqlite.path)}]
    if ctx.check:
        return None
    try:
        return _store(ctx).provision()
    except StoreError:
        raise  # not a database, another program's file, read-only...: exit 2, one line
    except sqlite3.Error as exc:
        raise SinkError(f"sqlite store {ctx.config.output.sqlite.path}: {exc}") from exc


@hookimpl
def emit(stream: str, docs: list[dict[str, Any]], ctx: RunContext) -> SinkReport | None:
    if not ctx.sink_enabled(NAME):
        return None
    if ctx.dry_run:
        return SinkReport(NAME, delivered=len(docs))
    settings = ctx.config.output.sqlite
    try:
        written = _store(ctx).write(docs, ingested=ctx.now, retention_cutoff=ctx.now - settings.retention)
    except StoreError as exc:
        # disk full, read-only, deleted or replaced: the batch is not confirmed, exit 2
        raise StoreError(exc.path, f"refused a batch of {len(docs)} {stream} documents: {exc.reason}") from None
    except sqlite3.Error as exc:
        # locked by another process: the batch is not confirmed
        raise SinkError(f"sqlite store {settings.path} refused a batch of {len(docs)} {stream} documents: {exc}") from exc
    return SinkReport(NAME, delivered=written)
