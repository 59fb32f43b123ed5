"""The five hooks of misp-ti, every one documented here and nowhere else.

Hooks are always called with keyword arguments only (pluggy refuses
positional ones), so a hook can gain an argument later without breaking
existing implementations: pluggy passes an implementation only the arguments
it names. (The specs below cannot mark them keyword-only with ``*`` because
pluggy reads positional parameter names.)

Flow of one poll cycle for one stream::

    fetch ──pages──▶ transform_doc (per record) ──▶ compute_expiry (per doc)
          ──batch──▶ emit (every enabled sink) ──all confirmed──▶ cursor saved

``provision`` runs once per engine before the first ``emit``, and from
``misp-ti provision``.

Hook order: pluggy calls implementations last-registered-first, and
``tryfirst``/``trylast`` move them. Built-in plugins are registered first, so
a third-party plugin (entry point or ``--plugin``) is asked before them and
wins every ``firstresult`` hook it answers. Return ``None`` to pass.

Plugins declare the names they answer to with module or class attributes,
which ``misp-ti plugins`` lists and the config is checked against. Each
entry is a plain name or, to say more about it, a spec from
:mod:`misp_ti.model`:

* ``MISP_TI_SINKS = ("name", ...)``: sink names usable in ``output.sinks``;
  ``Sink(name, startup_warnings=f)``: ``f(config)`` returns the messages the
  engine logs as warnings when it starts with the sink enabled (e.g. TLS
  verification off);
* ``MISP_TI_EXPIRY_POLICIES = ("name", ...)``: values for ``expiry.policy``;
  ``ExpiryPolicy(name, refetch_every=timedelta(...))``: while it is
  selected, the engine runs a refetch cycle (``ctx.refetch``: every stream
  re-read from ``initial_interval``) that often, unless
  ``expiry.refetch_interval`` is set; a plain name never refetches;
* ``MISP_TI_STREAMS = (StreamSpec(...), ...)``: streams, each a
  :class:`misp_ti.streams.StreamSpec` (name, restSearch scope and path,
  order, fixed filters, record splitter, attribute accessor, ECS builder,
  settings model, on by default or not). The engine collects them into
  ``ctx.streams`` (a name declared twice is an error); ``[streams.<name>]``
  is validated by the spec's settings model at start-up, and every enabled
  stream is polled by ``misp-ti run``/``once``. A spec with a ``scope``
  (``attributes`` or ``events``) is fetched by the default ``misp_fetch``
  (at its ``path``, with its ``filters`` and ``split``); with
  ``scope=None`` the declaring plugin answers ``fetch`` for it. Transform
  (``spec.build``), expiry (``spec.attribute``), the sinks (one data stream
  and, in Elasticsearch, one latest view per enabled stream) and
  ``misp-ti transform --stream`` need nothing more. The built-ins
  (``misp_ti.streams.BUILTIN_STREAMS``) are declared by ``misp_fetch``; a
  plugin replacing it (``plugins.block = ["misp_fetch"]``) declares them again.

State a plugin keeps for the whole engine (clients, connections, caches)
lives in ``ctx.stash`` under a module-level
:class:`~misp_ti.model.StashKey`: ``ctx.stash.get_or_create(KEY, factory)``;
the engine closes what has a ``close()`` when it closes, newest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from misp_ti import PROJECT_NAME
from misp_ti.model import Expiry, Page, RunContext, SinkReport

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec(firstresult=True)
def fetch(
    stream: str, cursor: Mapping[str, Any] | None, ctx: RunContext
) -> Iterable[Page] | None:
    """Read the raw MISP records of one poll cycle for ``stream``.

    Called once per stream per cycle. **firstresult**: the first
    implementation that returns something other than ``None`` serves the
    stream; return ``None`` for streams you do not handle.

    :param stream: a name in ``ctx.streams``: ``"threat_attributes"``,
        ``"threat"``, or a stream a plugin declares (``MISP_TI_STREAMS``).
    :param cursor: the cursor persisted by the last confirmed page, or
        ``None`` for a first run or a refetch (``ctx.refetch``): start at
        ``now - initial_interval`` then.
    :param ctx: the run context; ``ctx.now`` is the fixed end of the window.
    :returns: an iterable of :class:`~misp_ti.model.Page`, consumed lazily
        (a generator keeps memory flat). Each page's ``cursor`` is persisted
        only after every sink confirmed that page and all earlier ones; the
        last page must carry the cursor for the next poll. Raising aborts the
        cycle without moving the cursor past the last confirmed page.

    The engine consumes the iterable in a background thread, one page ahead
    of processing, and sets ``ctx.cancelled`` (a :class:`threading.Event`)
    when the cycle is over; a plugin that retries or waits should check it
    and give up, so no request outlives its cycle.
    """


@hookspec(firstresult=True)
def transform_doc(stream: str, record: dict[str, Any], ctx: RunContext) -> dict[str, Any] | None:
    """Turn one raw MISP record into one document for the sinks.

    Called for every record of every page (a hot path: keep it lean).
    **firstresult**: the first non-``None`` answer is used.

    :param stream: the stream the record came from.
    :param record: one attribute (``threat_attributes``), one split event
        record ``{"Event": {..., "Attribute": {...}}}`` (``threat``), or one
        record of a plugin stream (what its spec's ``split`` yields).
    :param ctx: the run context; ``ctx.now`` is the ingest time.
    :returns: the ECS document as a nested dict, with a deterministic
        ``"_id"`` key (sinks use it as the document id and strip it from the
        body). A malformed record must still yield a document, with
        ``event.kind: "pipeline_error"`` and ``error.message``; an exception
        raised here is turned into such a document by the engine.
    """


@hookspec(firstresult=True)
def compute_expiry(
    stream: str, record: dict[str, Any], doc: dict[str, Any], ctx: RunContext
) -> Expiry | None:
    """Decide when the indicator in ``doc`` stops being valid.

    Called for every document after ``transform_doc``, except
    ``pipeline_error`` documents. **firstresult**. Built-in implementations
    answer only when ``ctx.policy`` names their policy (``duration``,
    ``refetch``, ``decay-model``) and always apply the decay vote first; a
    plugin adds a policy by answering for its own name (and declaring it in
    ``MISP_TI_EXPIRY_POLICIES``), or overrides every policy with
    ``tryfirst=True``.

    :returns: an :class:`~misp_ti.model.Expiry`; the engine writes
        ``misp.attribute.decayed`` and ``misp.attribute.decayed_at`` from it
        and folds them into the document ``_id``.
    """


@hookspec
def emit(stream: str, docs: list[dict[str, Any]], ctx: RunContext) -> SinkReport | None:
    """Deliver one batch of documents; every enabled sink gets every batch.

    Called once per batch, and at least once per fetched page: a page
    without documents (a quiet poll) arrives as an empty list, so a sink can
    do its per-cycle housekeeping (the Elasticsearch sink removes expired
    IOCs from its latest views). **Fan-out**: every implementation is called; each
    sink answers only if ``ctx.sink_enabled(<its name>)`` and returns ``None``
    otherwise. Documents carry their id under ``"_id"``; a sink must not
    mutate the dicts (the next sink receives the same objects).

    :returns: a :class:`~misp_ti.model.SinkReport` once every document is
        delivered or dead-lettered. Raise when that cannot be promised: the
        engine then stops the cycle and the cursor stays before this batch,
        so the batch is fetched again (at-least-once; ids make it idempotent).
    """


@hookspec
def provision(ctx: RunContext) -> list[dict[str, Any]] | None:
    """Install what a sink needs (schemas, templates, policies), idempotently.

    Called once per engine before the first ``emit`` and by
    ``misp-ti provision``. **Fan-out**: every implementation is called; each
    acts only for its enabled sink. With ``ctx.dry_run`` nothing is changed.
    With ``ctx.check`` (``misp-ti provision --check``) nothing is changed
    either: the sink reports whether it could provision and write, as
    ``{"sink": ..., "check": ..., "ok": bool, "missing": [...]}`` (the CLI
    exits 1 when any ``ok`` is false); a sink with nothing to check may
    return ``None``.

    :returns: a list of the actions taken (or, with ``ctx.dry_run``, the
        requests that would be sent), one JSON-able dict each, e.g.
        ``{"method": "PUT", "path": "/_index_template/x", "params": {}, "body": {...}}``;
        or ``None`` when the sink is not enabled.
    """


HOOK_NAMES = ("fetch", "transform_doc", "compute_expiry", "emit", "provision")

__all__ = ["HOOK_NAMES", "Expiry", "Page", "RunContext", "SinkReport", "hookspec"]
