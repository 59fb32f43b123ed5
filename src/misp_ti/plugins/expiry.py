"""Expiry policies (``compute_expiry``): decay vote first, then the policy.

* ``duration`` (default): ``decayed_at = max(timestamp, last_seen) + ioc_expiration_duration``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from misp_ti import hookimpl
from misp_ti.model import Expiry, RunContext
from misp_ti.timeutil import from_epoch, parse_iso

MISP_TI_EXPIRY_POLICIES = ("duration",)

#: The reference marks a vote-decayed attribute as decayed two minutes before ingest.
VOTE_BACKDATE = timedelta(minutes=2)


def decay_vote(record: dict[str, Any]) -> bool:
    """True when at least half of the ``decay_score`` entries say decayed."""
    scores = record.get("decay_score")
    if not isinstance(scores, list) or not scores:
        return False
    decayed = sum(1 for s in scores if isinstance(s, dict) and s.get("decayed") is True)
    return decayed * 2 >= len(scores)


def _reference_time(doc: dict[str, Any]) -> datetime | None:
    candidates = []
    for value in (doc.get("@timestamp"), doc.get("threat", {}).get("indicator", {}).get("last_seen")):
        if isinstance(value, str):
            try:
                candidates.append(parse_iso(value))
            except ValueError:
                pass
    return max(candidates) if candidates else None


@hookimpl
def compute_expiry(stream: str, record: dict[str, Any], doc: dict[str, Any], ctx: RunContext) -> Expiry | None:
    if ctx.policy != "duration":
        return None
    if decay_vote(record):
        return Expiry(True, ctx.now - VOTE_BACKDATE, "decay-vote")
    base = _reference_time(doc) or from_epoch(0)
    decayed_at = base + ctx.config.expiry.ioc_expiration_duration
    return Expiry(decayed_at < ctx.now, decayed_at, "duration")
