"""Expiry policy ``tlp``: how long an IOC stays valid depends on its TLP marking.

It applies misp-ti's shared rules first (:func:`misp_ti.expiry.immediate_expiry`:
a soft-deleted attribute expires at once, and so on), then counts the
validity from ``max(timestamp, last_seen)`` as the ``duration`` policy does.

Settings (``[plugin.tlp_expiry]``, durations like ``"7d"``, checked at
start-up against :class:`TlpSettings`): ``red`` (default 7d), ``amber``
(default 30d); other markings use ``expiry.ioc_expiration_duration``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

import misp_ti
from misp_ti.config import Duration
from misp_ti.expiry import duration_expiry, immediate_expiry
from misp_ti.model import Expiry, RunContext

POLICY = "tlp"
MISP_TI_EXPIRY_POLICIES = (POLICY,)


class TlpSettings(BaseModel):
    """``[plugin.tlp_expiry]``: how long a marked IOC stays valid."""

    model_config = ConfigDict(extra="forbid")

    red: Duration = timedelta(days=7)
    amber: Duration = timedelta(days=30)


#: misp-ti validates ``[plugin.tlp_expiry]`` with this model when the plugin loads.
MISP_TI_SETTINGS = {"tlp_expiry": TlpSettings}


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
    settings = ctx.config.plugin_settings("tlp_expiry", TlpSettings)
    if tlp == "red":
        return settings.red
    if tlp == "amber":
        return settings.amber
    return ctx.config.expiry.ioc_expiration_duration


@misp_ti.hookimpl
def compute_expiry(
    stream: str, record: dict[str, Any], doc: dict[str, Any], ctx: RunContext
) -> Expiry | None:
    if ctx.policy != POLICY or stream != "threat_attributes":
        return None  # another policy (or the threat stream's nested records): not ours
    # the rules every policy applies first: deletions, to_ids off, the decay vote
    decided = immediate_expiry(record, doc, ctx)
    if decided is not None:
        return decided
    tlp = tlp_of(record)
    # max(timestamp, last_seen) + the marking's validity
    return duration_expiry(record, doc, ctx, valid_for=validity(tlp, ctx), reason=f"tlp:{tlp or 'none'}")
