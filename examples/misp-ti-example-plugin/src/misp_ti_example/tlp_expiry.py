"""Expiry policy ``tlp``: how long an IOC stays valid depends on its TLP marking.

Settings (``[plugin.tlp_expiry]``, durations like ``"7d"``): ``red`` (default
7d), ``amber`` (default 30d); other markings use
``expiry.ioc_expiration_duration``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import misp_ti
from misp_ti.config import parse_duration
from misp_ti.model import Expiry, RunContext
from misp_ti.timeutil import from_epoch, parse_iso

POLICY = "tlp"
MISP_TI_EXPIRY_POLICIES = (POLICY,)
DEFAULTS = {"red": timedelta(days=7), "amber": timedelta(days=30)}


def tlp_of(record: Mapping[str, Any]) -> str | None:
    """``red``, ``amber``, ``green``, ``white``/``clear`` from the attribute's (or its event's) tags."""
    tags = list(record.get("Tag") or [])
    event = record.get("Event")
    if isinstance(event, Mapping):
        tags += list(event.get("Tag") or [])
    found = set()
    for tag in tags:
        name = tag.get("name", "") if isinstance(tag, Mapping) else ""
        if name.lower().startswith("tlp:"):
            found.add(name.lower()[4:].replace("+strict", ""))
    for level in ("red", "amber", "green", "white", "clear"):  # the strictest marking wins
        if level in found:
            return level
    return None


def validity(tlp: str | None, ctx: RunContext) -> timedelta:
    settings = ctx.config.plugin.get("tlp_expiry", {})
    if tlp in DEFAULTS:
        raw = settings.get(tlp)
        return parse_duration(raw) if raw is not None else DEFAULTS[tlp]
    return ctx.config.expiry.ioc_expiration_duration


def reference_time(record: Mapping[str, Any]) -> datetime:
    """``max(timestamp, last_seen)`` of the attribute, as the duration policy counts."""
    times = [from_epoch(int(record.get("timestamp") or 0))]
    last_seen = record.get("last_seen")
    if isinstance(last_seen, str) and last_seen:
        times.append(parse_iso(last_seen))
    return max(times)


def voted_decayed(record: Mapping[str, Any]) -> bool:
    scores = [s for s in record.get("decay_score") or [] if isinstance(s, Mapping)]
    return bool(scores) and 2 * sum(1 for s in scores if s.get("decayed") is True) >= len(scores)


@misp_ti.hookimpl
def compute_expiry(
    stream: str, record: dict[str, Any], doc: dict[str, Any], ctx: RunContext
) -> Expiry | None:
    if ctx.policy != POLICY or stream != "threat_attributes":
        return None  # another policy (or the threat stream's nested records): not ours
    if voted_decayed(record):
        return Expiry(True, ctx.now - timedelta(minutes=2), "decay-vote")
    tlp = tlp_of(record)
    decayed_at = reference_time(record) + validity(tlp, ctx)
    return Expiry(decayed_at < ctx.now, decayed_at, f"tlp:{tlp or 'none'}")
