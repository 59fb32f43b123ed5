"""Sink ``elasticsearch``: data streams, templates, ILM, the latest transforms, bulk.

The work lives in :mod:`misp_ti.sinks.elasticsearch`; this module only wires it to the hooks.
Every request is built as a plain dict first, then either sent or (with
``ctx.dry_run``) returned/recorded, so a dry run shows what a real run sends.
"""

from __future__ import annotations

from typing import Any

from misp_ti import hookimpl
from misp_ti.errors import SinkError
from misp_ti.model import RunContext, Sink, SinkReport, StashKey
from misp_ti.sinks.elasticsearch import bulk
from misp_ti.sinks.elasticsearch import provision as prov
from misp_ti.sinks.elasticsearch.client import make_client, send, startup_warnings

NAME = bulk.NAME
MISP_TI_SINKS = (Sink(NAME, startup_warnings=startup_warnings),)
_CLIENT: StashKey[Any] = StashKey("elasticsearch_sink.client")
#: stream -> the ``ctx.now`` of the cycle whose expired IOCs were last removed
_SWEPT: StashKey[dict[str, Any]] = StashKey("elasticsearch_sink.swept")


def _client(ctx: RunContext) -> Any:
    return ctx.stash.get_or_create(_CLIENT, lambda: make_client(ctx.config.output.elasticsearch))


@hookimpl
def provision(ctx: RunContext) -> list[dict[str, Any]] | None:
    if not ctx.sink_enabled(NAME):
        return None
    settings = ctx.config.output.elasticsearch
    prov.check_settings(settings, ctx.config.output.preserve_original_event)
    streams = prov.A.streams(ctx.config.streams.enabled(), ctx.streams)
    if ctx.check:
        return _check(ctx, streams)
    outcome = prov.Outcome()
    steps = prov.plan(settings, streams, outcome=outcome)
    if ctx.dry_run:
        return prov.run(steps, prov.assumed_answer)
    client = _client(ctx)
    sent = prov.run(steps, lambda req, _assumed: send(client, req))
    writes: list[dict[str, Any]] = [{"sink": NAME, "method": r["method"], "path": r["path"]} for r in sent if r["method"] != "GET"]
    for note in outcome.notes:
        ctx.log.warning("elasticsearch: %s", note)
        writes.append({"sink": NAME, "action": "upgrade pending", "note": note})
    return writes or [{"sink": NAME, "action": "up to date", "version": prov.A.ASSET_VERSION}]


def _check(ctx: RunContext, streams: tuple[str, ...]) -> list[dict[str, Any]]:
    if ctx.dry_run:
        return [prov.request("POST", "/_security/user/_has_privileges", prov.A.privileges(streams))]
    client = _client(ctx)
    missing = prov.missing_privileges(lambda req: send(client, req, refusals_are_answers=True), streams)
    if missing is None:
        return [{"sink": NAME, "check": "privileges", "ok": True, "missing": [], "note": "security is off on this cluster: every request is allowed"}]
    return [{"sink": NAME, "check": "privileges", "ok": not missing, "missing": missing}]


def _sweep_expired(stream: str, ctx: RunContext) -> None:
    """Once per cycle and stream: remove expired IOCs from the latest view."""
    if ctx.config.output.elasticsearch.mode != "ecs":
        return
    swept = ctx.stash.get_or_create(_SWEPT, dict)
    if swept.get(stream) == ctx.now:
        return
    swept[stream] = ctx.now
    req = prov.housekeeping(stream)
    if ctx.dry_run:
        ctx.dry_run_requests.append(req)
        return
    try:
        answer = send(_client(ctx), req)
    except SinkError as exc:  # the alias filter already hides them: never hold data for this
        ctx.log.warning("elasticsearch: could not remove expired IOCs from the %s latest view: %s", stream, exc)
        return
    deleted = (answer.body or {}).get("deleted") if isinstance(answer.body, dict) else None
    if deleted:
        ctx.log.info("elasticsearch: removed %d expired IOCs from the %s latest view", deleted, stream)


@hookimpl
def emit(stream: str, docs: list[dict[str, Any]], ctx: RunContext) -> SinkReport | None:
    if not ctx.sink_enabled(NAME):
        return None
    _sweep_expired(stream, ctx)
    if ctx.dry_run:
        pairs = bulk.actions(stream, docs, ctx.config)
        ctx.dry_run_requests.extend(bulk.chunked_requests(pairs, ctx.config))
        return SinkReport(NAME, delivered=len(docs))
    if not docs:
        return SinkReport(NAME, delivered=0)
    return bulk.write(_client(ctx), stream, docs, ctx.config)
