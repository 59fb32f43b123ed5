"""Default ``fetch``: read MISP's restSearch API for both streams.

* ``threat_attributes``: ``POST /attributes/restSearch``, one record per
  attribute (object attributes included), with ``decay_score``.
* ``threat``: ``POST /events/restSearch``; each event is split into one
  record per attribute, ``{"Event": {<event fields>, "Attribute": {...}}}``,
  and one per object attribute, ``{"Event": {<event fields>, "Object":
  {<object fields>, "Attribute": {...}}}}``. (The reference's httpjson split
  also pairs every object attribute with an event attribute; we do not
  multiply records, the object keeps its own context.)

Each poll reads the fixed window ``[cursor - overlap, ctx.now]``; a first
run, a refetch (``ctx.refetch``) or a missing cursor starts at
``ctx.now - initial_interval``. Paging is :class:`misp_ti.misp.paging.WindowReader`
(keyset on the timestamp, see that module for the algorithm).

Cursor format (JSON, persisted by the engine):

* after a completed poll: ``{"last_timestamp": <window end, epoch s>}``;
* checkpoint inside a poll: ``{"window_start": s, "window_end": e,
  "resume_from": t}``: every row of ``[s, e]`` older than ``t`` was
  delivered. A resumed cycle (same ``ctx.now``) continues at ``t``; a
  checkpoint from another window is read as ``last_timestamp = t``.

One :class:`~misp_ti.misp.client.MispClient` per engine, under
:data:`CLIENT` in ``ctx.stash`` (:func:`client`), serves every MISP request
(the decay-model's index reads too). A test injects one with a mock
transport before the first cycle: ``engine.stash[misp_fetch.CLIENT] =
MispClient(config.misp, transport=httpx.MockTransport(handler))``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from misp_ti import hookimpl
from misp_ti.config import StreamSettings
from misp_ti.misp.client import MispClient
from misp_ti.misp.paging import WindowReader, row_key
from misp_ti.model import Page, RunContext, StashKey

log = logging.getLogger("misp_ti.misp_fetch")

#: The engine's MISP client in ``ctx.stash`` (set it to inject one).
CLIENT: StashKey[MispClient] = StashKey("misp_fetch.client")

#: stream -> (restSearch scope, order: timestamp then id, explicitly; MISP has no default order)
STREAM_SCOPES = {
    "threat_attributes": ("attributes", "Attribute.timestamp asc, Attribute.id asc"),
    "threat": ("events", "Event.timestamp asc, Event.id asc"),
}


def client(ctx: RunContext) -> MispClient:
    """The engine's MISP client, created from ``misp`` settings on first use."""
    return ctx.stash.get_or_create(CLIENT, lambda: MispClient(ctx.config.misp))


def request_body(stream: str, settings: StreamSettings) -> dict[str, Any]:
    """The restSearch body of ``stream`` without ``timestamp``, ``page`` and ``limit``.

    User filters go first so the keys the engine controls win (the config
    refuses those keys anyway, see ``StreamSettings``).
    """
    scope, order = STREAM_SCOPES[stream]
    body: dict[str, Any] = dict(settings.filters)
    body.update(returnFormat="json", includeDecayScore=True, order=order)
    if settings.include_deleted:
        body["deleted"] = [0, 1]
    if settings.enforce_warninglist:
        body["enforceWarninglist"] = True
    return body


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def plan_window(
    stream: str, settings: StreamSettings, cursor: Mapping[str, Any] | None, ctx: RunContext
) -> tuple[int, int, int | None]:
    """``(start, end, resume_from)`` of this poll's window, in epoch seconds."""
    end = int(ctx.now.timestamp())
    initial = end - int(settings.initial_interval.total_seconds())
    overlap = int(settings.overlap.total_seconds())
    if isinstance(cursor, Mapping) and "resume_from" in cursor:
        start, window_end, resume = (_as_int(cursor.get(k)) for k in ("window_start", "window_end", "resume_from"))
        if start is not None and resume is not None and window_end == end:
            return start, end, resume
        if resume is not None:
            return min(resume - overlap, end), end, None
    elif isinstance(cursor, Mapping) and not ctx.refetch:
        last = _as_int(cursor.get("last_timestamp"))
        if last is not None:
            return min(last - overlap, end), end, None
    if cursor is not None and not ctx.refetch:
        log.warning("%s: unusable cursor %r; reading the initial interval again", stream, dict(cursor))
    return initial, end, None


def split_event(event: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One ``threat`` record per attribute and per object attribute of ``event``."""
    context = {k: v for k, v in event.items() if k not in ("Attribute", "Object")}
    for attribute in event.get("Attribute") or ():
        yield {"Event": {**context, "Attribute": attribute}}
    for obj in event.get("Object") or ():
        obj_context = {k: v for k, v in obj.items() if k != "Attribute"}
        for attribute in obj.get("Attribute") or ():
            yield {"Event": {**context, "Object": {**obj_context, "Attribute": attribute}}}


def read_stream(stream: str, cursor: Mapping[str, Any] | None, ctx: RunContext) -> Iterator[Page]:
    settings: StreamSettings = getattr(ctx.config.streams, stream)
    scope, _ = STREAM_SCOPES[stream]
    start, end, resume = plan_window(stream, settings, cursor, ctx)
    misp = client(ctx)
    body = request_body(stream, settings)
    reader = WindowReader(
        scope=scope,
        search=lambda b: misp.search(scope, b, cancelled=ctx.cancelled),
        body=body,
        start=start,
        end=end,
        limit=settings.page_size or ctx.config.misp.page_size,
        key=row_key,
        post_filtered=bool(settings.enforce_warninglist or settings.filters.get("excludeDecayed")),
    )
    log.info(
        "%s: reading timestamps %d..%d%s", stream, start, end, f" (resuming at {resume})" if resume is not None else ""
    )
    for chunk in reader.chunks(resume):
        if chunk.done:
            next_cursor: dict[str, Any] = {"last_timestamp": end}
        else:
            next_cursor = {"window_start": start, "window_end": end, "resume_from": chunk.safe}
        if scope == "events":
            records = [record for event in chunk.rows for record in split_event(event)]
        else:
            records = chunk.rows
        yield Page(records, next_cursor, {**chunk.stats, "records": len(records)})


@hookimpl
def fetch(stream: str, cursor: Mapping[str, Any] | None, ctx: RunContext) -> Iterator[Page] | None:
    if stream not in STREAM_SCOPES:
        return None
    return read_stream(stream, cursor, ctx)
