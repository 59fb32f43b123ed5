"""The expiry rules every policy applies: deletions, ``to_ids`` off, the decay
vote, the reference time, the validity and the refetch grace.

Order (see ``docs/expiry.md``), for the built-in policies and any policy that
calls :func:`immediate_expiry` first (a policy should):

1. a soft-deleted attribute expires at ingest (``expiry.expire_deleted``);
2. an attribute whose ``to_ids`` is off expires at ingest
   (``expiry.expire_when_not_to_ids``);
3. the decay vote: when at least half of the ``decay_score`` entries say
   decayed, ``decayed_at = ingest - 2 min`` (as the reference);
4. the policy's own rule, e.g. ``duration``:
   ``decayed_at = max(timestamp, last_seen) + validity``.

Every rule reads the attribute from the raw record
(:func:`misp_ti.misp.records.record_attribute`) and falls back to the
document's ``misp.attribute`` when a plugin's record shape hides a field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from misp_ti.misp.records import record_attribute, timestamp_datetime
from misp_ti.model import Expiry, RunContext

#: The reference marks a vote-decayed attribute as decayed two minutes before ingest.
VOTE_BACKDATE = timedelta(minutes=2)


def decay_vote(record: Any) -> bool:
    """True when at least half of the ``decay_score`` entries say decayed."""
    scores = record_attribute(record).get("decay_score")
    if not isinstance(scores, list) or not scores:
        return False
    decayed = sum(1 for s in scores if isinstance(s, Mapping) and s.get("decayed") is True)
    return decayed * 2 >= len(scores)


def flag(value: Any) -> bool | None:
    """A MISP boolean (``True``, ``1``, ``"1"``, ``"true"``...); ``None`` when it is none."""
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


def attribute_field(record: Any, doc: Mapping[str, Any], name: str) -> Any:
    """The attribute's ``name`` from the record, else from the document's ``misp.attribute``."""
    value = record_attribute(record).get(name)
    return value if value is not None else _doc_attribute(doc).get(name)


def ingest_expiry(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> Expiry | None:
    """Rules 1-2: a deleted attribute (``expiry.expire_deleted``) or, with
    ``expiry.expire_when_not_to_ids``, one whose ``to_ids`` is off expires at ingest."""
    settings = ctx.config.expiry
    if settings.expire_deleted and flag(attribute_field(record, doc, "deleted")):
        return Expiry(True, ctx.now, "deleted")
    if settings.expire_when_not_to_ids and flag(attribute_field(record, doc, "to_ids")) is False:
        return Expiry(True, ctx.now, "not-to-ids")
    return None


def vote_expiry(record: Any, ctx: RunContext) -> Expiry | None:
    """Rule 3: decayed ``VOTE_BACKDATE`` before ingest when the decay vote says so."""
    if decay_vote(record):
        return Expiry(True, ctx.now - VOTE_BACKDATE, "decay-vote")
    return None


def immediate_expiry(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> Expiry | None:
    """Rules 1-3, which every policy applies before its own; ``None`` when none applies."""
    decided = ingest_expiry(record, doc, ctx)
    return decided if decided is not None else vote_expiry(record, ctx)


def reference_time(record: Any, doc: Mapping[str, Any]) -> datetime:
    """``max(timestamp, last_seen)`` of the attribute (the reference's base).

    Read from the raw record, or from the document when a plugin's record
    shape hides it. An attribute with neither is an error (the engine turns
    it into a ``pipeline_error`` document) rather than an expiry made up.
    """
    attribute = record_attribute(record)
    candidates = [timestamp_datetime(attribute.get("timestamp")), timestamp_datetime(attribute.get("last_seen"))]
    if candidates[0] is None:
        threat = doc.get("threat")
        indicator = threat.get("indicator", {}) if isinstance(threat, Mapping) else {}
        last_seen = indicator.get("last_seen") if isinstance(indicator, Mapping) else None
        candidates += [timestamp_datetime(doc.get("@timestamp")), timestamp_datetime(last_seen)]
    found = [c for c in candidates if c is not None]
    if not found:
        raise ValueError("expiry: the attribute has neither a timestamp nor a last_seen")
    return max(found)


def validity(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> timedelta:
    """``expiry.by_type`` for the MISP type, then the ECS indicator type, else the default."""
    settings = ctx.config.expiry
    if settings.by_type:
        misp_type = attribute_field(record, doc, "type")
        if isinstance(misp_type, str) and misp_type in settings.by_type:
            return settings.by_type[misp_type]
        threat = doc.get("threat")
        indicator = threat.get("indicator") if isinstance(threat, Mapping) else None
        ecs_type = indicator.get("type") if isinstance(indicator, Mapping) else None
        if isinstance(ecs_type, str) and ecs_type in settings.by_type:
            return settings.by_type[ecs_type]
    return settings.ioc_expiration_duration


def duration_expiry(
    record: Any, doc: Mapping[str, Any], ctx: RunContext, *, valid_for: timedelta | None = None, reason: str = "duration"
) -> Expiry:
    """``decayed_at = reference_time + valid_for`` (default: :func:`validity`);
    decayed when that is before ingest."""
    decayed_at = reference_time(record, doc) + (validity(record, doc, ctx) if valid_for is None else valid_for)
    return Expiry(decayed_at < ctx.now, decayed_at, reason)


def refetch_grace(stream: str, ctx: RunContext) -> timedelta:
    """``expiry.refetch_grace``, else twice the stream's poll interval: how long
    past a refetch a live document stays, so it does not blink out before its re-ingest."""
    grace = ctx.config.expiry.refetch_grace
    if grace is not None:
        return grace
    stream_settings = getattr(ctx.config.streams, stream, None)
    interval = getattr(stream_settings, "interval", None)
    return 2 * interval if isinstance(interval, timedelta) else timedelta(0)
