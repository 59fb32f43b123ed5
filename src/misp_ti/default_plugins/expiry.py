"""Expiry policies ``duration`` and ``refetch`` (``compute_expiry``), and the
rules every built-in policy applies first.

Order, for every built-in policy (see ``docs/expiry.md``):

1. a soft-deleted attribute expires at ingest (``expiry.expire_deleted``);
2. an attribute whose ``to_ids`` is off expires at ingest
   (``expiry.expire_when_not_to_ids``);
3. the decay vote: when at least half of the ``decay_score`` entries say
   decayed, ``decayed_at = ingest - 2 min`` (as the reference);
4. the policy:

   * ``duration``: ``decayed_at = max(timestamp, last_seen) + validity``, the
     validity being ``expiry.by_type[<MISP type or ECS indicator type>]`` or
     ``ioc_expiration_duration``; ``decayed = decayed_at < ingest``;
   * ``refetch``: ``decayed_at = ingest + refetch_interval + refetch_grace``
     (the engine re-reads everything every ``refetch_interval``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from misp_ti import hookimpl
from misp_ti.misp.decay import epoch_seconds, parse_overrides
from misp_ti.model import Expiry, ExpiryPolicy, RunContext, StashKey
from misp_ti.streams import record_attribute
from misp_ti.timeutil import from_epoch, parse_iso

#: ``refetch`` re-reads everything daily unless ``expiry.refetch_interval`` says otherwise.
REFETCH = ExpiryPolicy("refetch", refetch_every=timedelta(hours=24))
MISP_TI_EXPIRY_POLICIES = (ExpiryPolicy("duration"), REFETCH)
_NAMES = frozenset(policy.name for policy in MISP_TI_EXPIRY_POLICIES)

#: The reference marks a vote-decayed attribute as decayed two minutes before ingest.
VOTE_BACKDATE = timedelta(minutes=2)


def attribute_of(record: Any, stream: str | None = None, ctx: RunContext | None = None) -> Mapping[str, Any]:
    """The MISP attribute inside a raw record.

    With ``stream`` and ``ctx``: the accessor of that stream's spec
    (:attr:`misp_ti.streams.StreamSpec.attribute`). Without: the built-in
    streams' accessor (:func:`misp_ti.streams.record_attribute`), which reads
    attribute records and split event records alike.
    """
    if stream is not None and ctx is not None:
        spec = ctx.streams.get(stream)
        if spec is not None:
            return spec.attribute(record)
    return record_attribute(record)


def decay_vote(record: Any) -> bool:
    """True when at least half of the ``decay_score`` entries say decayed."""
    scores = attribute_of(record).get("decay_score")
    if not isinstance(scores, list) or not scores:
        return False
    decayed = sum(1 for s in scores if isinstance(s, Mapping) and s.get("decayed") is True)
    return decayed * 2 >= len(scores)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1"):
        return str(value) == "1"
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _doc_attribute(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    misp = doc.get("misp")
    attribute = misp.get("attribute") if isinstance(misp, Mapping) else None
    return attribute if isinstance(attribute, Mapping) else {}


def _field(record: Any, doc: Mapping[str, Any], name: str) -> Any:
    value = attribute_of(record).get(name)
    return value if value is not None else _doc_attribute(doc).get(name)


def immediate_expiry(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> Expiry | None:
    """Rules 1-3 above, shared by every built-in policy; ``None`` when none applies."""
    settings = ctx.config.expiry
    if settings.expire_deleted and _flag(_field(record, doc, "deleted")):
        return Expiry(True, ctx.now, "deleted")
    if settings.expire_when_not_to_ids and _flag(_field(record, doc, "to_ids")) is False:
        return Expiry(True, ctx.now, "not-to-ids")
    if decay_vote(record):
        return Expiry(True, ctx.now - VOTE_BACKDATE, "decay-vote")
    return None


def _when(value: Any) -> datetime | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        return from_epoch(epoch_seconds(int(value)))
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except ValueError:
            return None
    return None


def reference_time(record: Any, doc: Mapping[str, Any]) -> datetime:
    """``max(timestamp, last_seen)`` of the attribute (the reference's base).

    Read from the raw record, or from the document when a plugin's record
    shape hides it. An attribute with neither is an error (the engine turns
    it into a ``pipeline_error`` document) rather than an expiry made up.
    """
    attribute = attribute_of(record)
    candidates = [_when(attribute.get("timestamp")), _when(attribute.get("last_seen"))]
    if candidates[0] is None:
        indicator = doc.get("threat", {}).get("indicator", {}) if isinstance(doc.get("threat"), Mapping) else {}
        candidates += [_when(doc.get("@timestamp")), _when(indicator.get("last_seen") if isinstance(indicator, Mapping) else None)]
    found = [c for c in candidates if c is not None]
    if not found:
        raise ValueError("expiry: the attribute has neither a timestamp nor a last_seen")
    return max(found)


def validity(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> timedelta:
    """``expiry.by_type`` for the MISP type, then the ECS indicator type, else the default."""
    settings = ctx.config.expiry
    if settings.by_type:
        misp_type = _field(record, doc, "type")
        if isinstance(misp_type, str) and misp_type in settings.by_type:
            return settings.by_type[misp_type]
        threat = doc.get("threat")
        indicator = threat.get("indicator") if isinstance(threat, Mapping) else None
        ecs_type = indicator.get("type") if isinstance(indicator, Mapping) else None
        if isinstance(ecs_type, str) and ecs_type in settings.by_type:
            return settings.by_type[ecs_type]
    return settings.ioc_expiration_duration


def duration_expiry(record: Any, doc: Mapping[str, Any], ctx: RunContext, *, reason: str = "duration") -> Expiry:
    decayed_at = reference_time(record, doc) + validity(record, doc, ctx)
    return Expiry(decayed_at < ctx.now, decayed_at, reason)


def refetch_grace(stream: str, ctx: RunContext) -> timedelta:
    grace = ctx.config.expiry.refetch_grace
    if grace is not None:
        return grace
    stream_settings = getattr(ctx.config.streams, stream, None)
    interval = getattr(stream_settings, "interval", None)
    return 2 * interval if isinstance(interval, timedelta) else timedelta(0)


_MODEL_OVERRIDES: StashKey[dict[str, dict[str, float]]] = StashKey("misp_ti.expiry.model_overrides")


def _no_overrides(ctx: RunContext) -> dict[str, dict[str, float]]:
    return {}


def model_overrides(stream: str, ctx: RunContext) -> dict[str, float]:
    """The decay-model parameters the stream's restSearch filters override
    (:func:`misp_ti.misp.decay.parse_overrides`), worked out once per stream and
    context. The dict is shared: do not change it."""
    by_stream = ctx.derive(_MODEL_OVERRIDES, _no_overrides)
    try:
        return by_stream[stream]
    except KeyError:
        filters = getattr(getattr(ctx.config.streams, stream, None), "filters", None) or {}
        overrides = by_stream[stream] = parse_overrides(filters)
        return overrides


@hookimpl
def compute_expiry(stream: str, record: dict[str, Any], doc: dict[str, Any], ctx: RunContext) -> Expiry | None:
    policy = ctx.policy
    if policy not in _NAMES:
        return None
    decided = immediate_expiry(record, doc, ctx)
    if decided is not None:
        return decided
    if policy == "duration":
        return duration_expiry(record, doc, ctx)
    interval = REFETCH.refetch_interval(ctx.config.expiry) or timedelta(0)  # never None: REFETCH has a period
    return Expiry(False, ctx.now + interval + refetch_grace(stream, ctx), "refetch")
