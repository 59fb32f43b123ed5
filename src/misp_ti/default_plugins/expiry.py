"""Expiry policies ``duration`` and ``refetch`` (``compute_expiry``).

Both apply the rules every policy applies first
(:func:`misp_ti.expiry.immediate_expiry`), then:

* ``duration``: ``decayed_at = max(timestamp, last_seen) + validity``, the
  validity being ``expiry.by_type[<MISP type or ECS indicator type>]`` or
  ``ioc_expiration_duration``; ``decayed = decayed_at < ingest``;
* ``refetch``: ``decayed_at = ingest + refetch_interval + refetch_grace``
  (the engine re-reads everything every ``refetch_interval``).

The rules themselves live in :mod:`misp_ti.expiry`; the names below stay
importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from misp_ti import hookimpl
from misp_ti.expiry import (  # noqa: F401  (re-exported: the rules' old home)
    VOTE_BACKDATE,
    decay_vote,
    duration_expiry,
    duration_policy,
    immediate_expiry,
    reference_time,
    refetch_grace,
    validity,
)
from misp_ti.expiry.decay_model import model_overrides  # noqa: F401
from misp_ti.misp.records import record_attribute
from misp_ti.model import Expiry, ExpiryPolicy, RunContext
from misp_ti.processing import PASSES, page_call

#: ``refetch`` re-reads everything daily unless ``expiry.refetch_interval`` says otherwise.
REFETCH = ExpiryPolicy("refetch", refetch_every=timedelta(hours=24))
MISP_TI_EXPIRY_POLICIES = (ExpiryPolicy("duration"), REFETCH)
_NAMES = frozenset(policy.name for policy in MISP_TI_EXPIRY_POLICIES)


def attribute_of(record: Any, stream: str | None = None, ctx: RunContext | None = None) -> Mapping[str, Any]:
    """The MISP attribute inside a raw record.

    With ``stream`` and ``ctx``: the accessor of that stream's spec
    (:attr:`misp_ti.streams.StreamSpec.attribute`). Without: the built-in
    streams' accessor (:func:`misp_ti.misp.records.record_attribute`), which
    reads attribute records and split event records alike.
    """
    if stream is not None and ctx is not None:
        spec = ctx.streams.get(stream)
        if spec is not None:
            return spec.attribute(record)
    return record_attribute(record)


def _page_expiry(stream: str, ctx: RunContext) -> Any:
    """:func:`compute_expiry` for a page of ``stream`` in ``ctx`` (see :func:`misp_ti.processing.page_call`)."""
    if ctx.policy not in _NAMES:
        return PASSES
    if ctx.policy == "duration":
        return lambda record, doc: duration_policy(record, doc, ctx)
    return lambda record, doc: compute_expiry(stream, record, doc, ctx)


@hookimpl
@page_call(_page_expiry)
def compute_expiry(stream: str, record: dict[str, Any], doc: dict[str, Any], ctx: RunContext) -> Expiry | None:
    policy = ctx.policy
    if policy not in _NAMES:
        return None
    if policy == "duration":
        return duration_policy(record, doc, ctx)
    decided = immediate_expiry(record, doc, ctx)
    if decided is not None:
        return decided
    interval = REFETCH.refetch_interval(ctx.config.expiry) or timedelta(0)  # never None: REFETCH has a period
    return Expiry(False, ctx.now + interval + refetch_grace(stream, ctx), "refetch")
