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

from misp_ti.misp.records import record_attribute, scale_to_seconds, timestamp_datetime
from misp_ti.model import Expiry, RunContext
from misp_ti.timeutil import from_epoch

#: The reference marks a vote-decayed attribute as decayed two minutes before ingest.
VOTE_BACKDATE = timedelta(minutes=2)


def decay_vote(record: Any) -> bool:
    """True when at least half of the ``decay_score`` entries say decayed."""
    return _decay_vote(record_attribute(record))


def _decay_vote(attribute: Mapping[str, Any]) -> bool:
    scores = attribute.get("decay_score")
    if not isinstance(scores, list) or not scores:
        return False
    decayed = sum(1 for s in scores if (type(s) is dict or isinstance(s, Mapping)) and s.get("decayed") is True)
    return decayed * 2 >= len(scores)


def flag(value: Any) -> bool | None:
    """A MISP boolean (``True``, ``1``, ``"1"``, ``"true"``...); ``None`` when it is none."""
    if value is True or value is False:  # bool has no subclasses
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
    return _field(record_attribute(record), doc, name)


def _field(attribute: Mapping[str, Any], doc: Mapping[str, Any], name: str) -> Any:
    value = attribute.get(name)
    return value if value is not None else _doc_attribute(doc).get(name)


# The public rules take the raw record; each private twin below takes the
# attribute already found in it (record_attribute), so a policy applying
# several rules to every record looks it up once.


def ingest_expiry(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> Expiry | None:
    """Rules 1-2: a deleted attribute (``expiry.expire_deleted``) or, with
    ``expiry.expire_when_not_to_ids``, one whose ``to_ids`` is off expires at ingest."""
    return _ingest(record_attribute(record), doc, ctx)


def _ingest(attribute: Mapping[str, Any], doc: Mapping[str, Any], ctx: RunContext) -> Expiry | None:
    settings = ctx.config.expiry
    if settings.expire_deleted and flag(_field(attribute, doc, "deleted")):
        return Expiry(True, ctx.now, "deleted")
    if settings.expire_when_not_to_ids and flag(_field(attribute, doc, "to_ids")) is False:
        return Expiry(True, ctx.now, "not-to-ids")
    return None


def vote_expiry(record: Any, ctx: RunContext) -> Expiry | None:
    """Rule 3: decayed ``VOTE_BACKDATE`` before ingest when the decay vote says so."""
    if decay_vote(record):
        return Expiry(True, ctx.now - VOTE_BACKDATE, "decay-vote")
    return None


def immediate_expiry(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> Expiry | None:
    """Rules 1-3, which every policy applies before its own; ``None`` when none applies."""
    return _immediate(record_attribute(record), doc, ctx)


def _immediate(attribute: Mapping[str, Any], doc: Mapping[str, Any], ctx: RunContext) -> Expiry | None:
    decided = _ingest(attribute, doc, ctx)
    if decided is None and _decay_vote(attribute):
        return Expiry(True, ctx.now - VOTE_BACKDATE, "decay-vote")
    return decided


def reference_time(record: Any, doc: Mapping[str, Any]) -> datetime:
    """``max(timestamp, last_seen)`` of the attribute (the reference's base).

    Read from the raw record, or from the document when a plugin's record
    shape hides it. An attribute with neither is an error (the engine turns
    it into a ``pipeline_error`` document) rather than an expiry made up.
    """
    return _reference(record_attribute(record), doc)


#: ``timestamp`` text -> its time, for the common case below (the attributes
#: of an event share a few timestamps; datetimes are immutable)
_EPOCH_TIMES: dict[str, datetime] = {}


def _reference(attribute: Mapping[str, Any], doc: Mapping[str, Any]) -> datetime:
    raw = attribute.get("timestamp")
    last_seen = attribute.get("last_seen")
    if last_seen is None and type(raw) is str:
        when = _EPOCH_TIMES.get(raw)
        if when is not None:
            return when
        if raw.isascii() and raw.isdigit():
            # what MISP nearly always sends: epoch seconds and no last_seen
            # (the answer timestamp_datetime gives, without its general checks)
            if len(_EPOCH_TIMES) >= 4096:
                _EPOCH_TIMES.clear()
            when = _EPOCH_TIMES[raw] = from_epoch(scale_to_seconds(int(raw)))
            return when
    candidates = [timestamp_datetime(raw), timestamp_datetime(last_seen)]
    if candidates[0] is None:
        threat = doc.get("threat")
        indicator = threat.get("indicator", {}) if isinstance(threat, Mapping) else {}
        doc_last_seen = indicator.get("last_seen") if isinstance(indicator, Mapping) else None
        candidates += [timestamp_datetime(doc.get("@timestamp")), timestamp_datetime(doc_last_seen)]
    found = [c for c in candidates if c is not None]
    if not found:
        raise ValueError("expiry: the attribute has neither a timestamp nor a last_seen")
    return max(found)


def validity(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> timedelta:
    """``expiry.by_type`` for the MISP type, then the ECS indicator type, else the default."""
    return _validity(record_attribute(record), doc, ctx)


def _validity(attribute: Mapping[str, Any], doc: Mapping[str, Any], ctx: RunContext) -> timedelta:
    settings = ctx.config.expiry
    if settings.by_type:
        misp_type = _field(attribute, doc, "type")
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
    attribute = record_attribute(record)
    decayed_at = _reference(attribute, doc) + (_validity(attribute, doc, ctx) if valid_for is None else valid_for)
    return Expiry(decayed_at < ctx.now, decayed_at, reason)


def duration_policy(record: Any, doc: Mapping[str, Any], ctx: RunContext) -> Expiry:
    """The built-in ``duration`` policy: :func:`immediate_expiry`, else
    :func:`duration_expiry` with :func:`validity` (the attribute read once)."""
    attribute = record_attribute(record)
    decided = _immediate(attribute, doc, ctx)
    if decided is not None:
        return decided
    decayed_at = _reference(attribute, doc) + _validity(attribute, doc, ctx)
    return Expiry(decayed_at < ctx.now, decayed_at, "duration")


def refetch_grace(stream: str, ctx: RunContext) -> timedelta:
    """``expiry.refetch_grace``, else twice the stream's poll interval: how long
    past a refetch a live document stays, so it does not blink out before its re-ingest."""
    grace = ctx.config.expiry.refetch_grace
    if grace is not None:
        return grace
    stream_settings = getattr(ctx.config.streams, stream, None)
    interval = getattr(stream_settings, "interval", None)
    return 2 * interval if isinstance(interval, timedelta) else timedelta(0)
