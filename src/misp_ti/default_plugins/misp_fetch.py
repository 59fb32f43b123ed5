"""Default ``fetch``: read MISP's restSearch API for every stream whose
:class:`~misp_ti.streams.StreamSpec` names a ``scope``.

It declares the two built-in streams (:data:`misp_ti.streams.BUILTIN_STREAMS`):

* ``threat_attributes``: ``POST /attributes/restSearch``, one record per
  attribute (object attributes included), with ``decay_score``.
* ``threat``: ``POST /events/restSearch``; each event is split into one
  record per attribute and per object attribute
  (:func:`misp_ti.streams.split_event`).

A plugin stream on one of these answers (its own path, filters, splitter,
builder) is read here as well; a stream with ``scope=None`` is left to the
``fetch`` hook of the plugin that declares it.

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

One :class:`~misp_ti.misp.client.MispClient` per engine and MISP source
(``ctx.source``, a ``[misp.<name>]`` table or ``default``), in
``ctx.stash`` under :func:`client_key` (:data:`CLIENT` for ``default``),
serves every MISP request of that source (the decay-model's index reads
too). A test injects one with a mock transport before the first cycle:
``engine.stash[misp_fetch.CLIENT] = MispClient(config.misp,
transport=httpx.MockTransport(handler))``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from misp_ti import hookimpl
from misp_ti.config import StreamSettings
from misp_ti.errors import PluginError
from misp_ti.misp.lenient import is_unparsed
from misp_ti.misp.paging import WindowReader, row_key
from misp_ti.model import MISP_REQUEST_OBSERVER, Page, RunContext, StashKey
from misp_ti.streams import BUILTIN_STREAMS, StreamSpec, one_record, split_event
from misp_ti.timeutil import epoch_text

if TYPE_CHECKING:  # the client (and httpx) load when a cycle first talks to MISP, not with the plugin
    from misp_ti.misp.client import MispClient

__all__ = ["CLIENT", "MISP_TI_STREAMS", "client", "client_key", "fetch", "plan_window", "read_stream", "request_body", "split_event"]

log = logging.getLogger("misp_ti.misp_fetch")

#: The engine's MISP client in ``ctx.stash`` (set it to inject one).
CLIENT: StashKey[MispClient] = StashKey("misp_fetch.client")

#: The two built-in streams are declared (and fetched) here.
MISP_TI_STREAMS = BUILTIN_STREAMS


#: Offset runs (issue 15; see :mod:`misp_ti.misp.paging`), verified as
#: ``misp.paging`` says: ``exact``, re-scanned at ``misp.rescan_page_size`` rows a
#: request; ``fast``, by one change probe. Off, the reader re-scans every
#: offset span at the page size (what the real-MISP recordings hold).
OFFSET_RUNS = True
#: The far end of the change probe's timestamp range (2100-01-01).
_PROBE_END = 4_102_444_800


def client_key(source: str) -> StashKey[MispClient]:
    """Where the client of the MISP ``source`` lives in ``ctx.stash``."""
    return CLIENT.for_source(source)


def client(ctx: RunContext) -> MispClient:
    """The MISP client of the context's source, created from its ``misp`` settings on first use.

    A client injected under :func:`client_key` (:data:`CLIENT` for the
    ``default`` source) without an observer of its own is given the engine's
    (:data:`~misp_ti.model.MISP_REQUEST_OBSERVER`), so its requests are
    counted in the metrics like those of a client made here.
    """
    from misp_ti.misp.client import MispClient

    observer = ctx.stash.get(MISP_REQUEST_OBSERVER, None)
    misp = ctx.stash.get_or_create(
        client_key(ctx.source),
        lambda: MispClient(ctx.config.misp, observer=observer),
    )
    if misp.observer is None and observer is not None:
        misp.observer = observer
    return misp


def request_body(spec: StreamSpec, settings: StreamSettings) -> dict[str, Any]:
    """The restSearch body of the stream ``spec`` without ``timestamp``, ``page`` and ``limit``.

    User filters go first so the stream's own filters and the keys the engine
    controls win (the config refuses those keys anyway, see ``StreamSettings``).
    """
    body: dict[str, Any] = dict(settings.filters)
    body.update(spec.filters)
    body.update(returnFormat="json", includeDecayScore=True, order=spec.restsearch_order)
    if settings.include_deleted:
        body["deleted"] = [0, 1]
    if settings.enforce_warninglist:
        body["enforceWarninglist"] = True
    return body


def change_probe(misp: MispClient, scope: str, cancelled: Any = None) -> Callable[[int], bool]:
    """``since -> bool``: whether MISP holds anything stamped at or after ``since``.

    One restSearch of one row, without the stream's filters (a change can
    take a row out of them) and with deleted rows: for ``attributes`` by the
    event timestamp, which MISP moves on every edit, soft delete, added
    attribute, event tag change and attribute hard delete; for ``events``
    by the event timestamp. An answer that cannot tell (no or an odd
    ``X-Result-Count``) is a "yes". Blind to what MISP does not stamp: an
    object's or an event's hard delete (:mod:`misp_ti.simulator.deletes`
    cites MISP's source), hence ``misp.paging = "fast"`` only.
    """
    key = "event_timestamp" if scope == "attributes" else "timestamp"

    def changed(since: int) -> bool:
        body = {"returnFormat": "json", key: [since, _PROBE_END], "deleted": [0, 1], "limit": 1, "page": 1}
        result = misp.search(scope, body, cancelled=cancelled)
        return bool(result.items) or result.result_count is None or result.result_count > 1

    return changed


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


def read_stream(stream: str, cursor: Mapping[str, Any] | None, ctx: RunContext) -> Iterator[Page]:
    spec = ctx.streams.require(stream)
    scope, path = spec.scope, spec.restsearch_path
    if scope is None:
        raise PluginError(f"the stream {stream!r} has no restSearch scope: the plugin declaring it must fetch it")
    settings = ctx.config.streams.settings(stream)
    start, end, resume = plan_window(stream, settings, cursor, ctx)
    misp = client(ctx)
    body = request_body(spec, settings)
    limit = settings.page_size or ctx.config.misp.page_size
    exact = ctx.config.misp.paging == "exact"
    reader = WindowReader(
        scope=scope,
        search=lambda b: misp.search(scope, b, cancelled=ctx.cancelled, path=path),
        body=body,
        start=start,
        end=end,
        limit=limit,
        key=row_key,
        post_filtered=bool(settings.enforce_warninglist or body.get("excludeDecayed")),
        changed_since=change_probe(misp, scope, ctx.cancelled) if OFFSET_RUNS and not exact else None,
        offset_runs=OFFSET_RUNS and exact,
        rescan_limit=max(limit, ctx.config.misp.rescan_page_size) if OFFSET_RUNS and exact else None,
    )
    log.info(
        "%s: reading %s .. %s%s", stream, epoch_text(start), epoch_text(end),
        f" (resuming at {epoch_text(resume)})" if resume is not None else "",
    )
    for chunk in reader.chunks(resume):
        if chunk.done:
            next_cursor: dict[str, Any] = {"last_timestamp": end}
        else:
            next_cursor = {"window_start": start, "window_end": end, "resume_from": chunk.safe}
        split = spec.split
        # an event MISP sent as invalid JSON stays one record: its pipeline_error
        records = chunk.rows if split is one_record else [
            record for row in chunk.rows for record in ((row,) if is_unparsed(row) else split(row))
        ]
        yield Page(records, next_cursor, {**chunk.stats, "records": len(records)})


@hookimpl
def fetch(stream: str, cursor: Mapping[str, Any] | None, ctx: RunContext) -> Iterator[Page] | None:
    spec = ctx.streams.get(stream)
    if spec is None or spec.scope is None:
        return None
    return read_stream(stream, cursor, ctx)
