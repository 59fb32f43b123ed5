"""Sink ``elasticsearch``: data streams, templates, ILM, the latest transform, bulk.

The work lives in :mod:`misp_ti.es`; this module only wires it to the hooks.
Every request is built as a plain dict first, then either sent or (with
``ctx.dry_run``) returned/recorded, so a dry run shows what a real run sends.
"""

from __future__ import annotations

from typing import Any

from misp_ti import hookimpl
from misp_ti.es import bulk
from misp_ti.es import provision as prov
from misp_ti.es.client import make_client, send
from misp_ti.model import RunContext, SinkReport

NAME = bulk.NAME
MISP_TI_SINKS = (NAME,)
_CLIENT = "elasticsearch_sink.client"


def _client(ctx: RunContext) -> Any:
    return ctx.resource(_CLIENT, lambda: make_client(ctx.config.output.elasticsearch))


@hookimpl
def provision(ctx: RunContext) -> list[dict[str, Any]] | None:
    if not ctx.sink_enabled(NAME):
        return None
    settings = ctx.config.output.elasticsearch
    prov.check_settings(settings, ctx.config.output.preserve_original_event)
    steps = prov.plan(settings)
    if ctx.dry_run:
        return prov.run(steps, prov.assumed_answer)
    client = _client(ctx)
    sent = prov.run(steps, lambda req, _assumed: send(client, req))
    writes = [{"sink": NAME, "method": r["method"], "path": r["path"]} for r in sent if r["method"] != "GET"]
    return writes or [{"sink": NAME, "action": "up to date", "version": prov.A.ASSET_VERSION}]


@hookimpl
def emit(stream: str, docs: list[dict[str, Any]], ctx: RunContext) -> SinkReport | None:
    if not ctx.sink_enabled(NAME):
        return None
    if ctx.dry_run:
        pairs = bulk.actions(stream, docs, ctx.config)
        ctx.dry_run_requests.extend(bulk.chunked_requests(pairs, ctx.config))
        return SinkReport(NAME, delivered=len(docs))
    if not docs:
        return SinkReport(NAME, delivered=0)
    return bulk.write(_client(ctx), stream, docs, ctx.config)
