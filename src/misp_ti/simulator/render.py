"""Serialise stored attributes and events into the JSON MISP's restSearch answers with.

Facts (MISP ``MispAttribute::fetchAttributes`` and ``JsonExport``): an
attribute from ``/attributes/restSearch`` carries its own fields, ``Event``
with ``org_id``, ``distribution``, ``id``, ``info``, ``orgc_id``, ``uuid``,
``Object`` with ``id``, ``distribution``, ``sharing_group_id`` when it belongs
to an object, and ``Tag`` with its own tags; with ``includeEventTags`` (which
``includeDecayScore`` and ``excludeDecayed`` switch on) the event's tags are
appended with ``inherited: 1``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render_attribute", "render_event", "ATTRIBUTE_FIELDS"]

ATTRIBUTE_FIELDS = (
    "id", "type", "category", "to_ids", "uuid", "event_id", "distribution", "timestamp", "comment",
    "sharing_group_id", "deleted", "disable_correlation", "object_id", "object_relation",
    "first_seen", "last_seen", "value",
)  # fmt: skip


def render_attribute(
    attribute: dict[str, Any],
    event: dict[str, Any],
    obj: dict[str, Any] | None,
    *,
    include_event_tags: bool = False,
    decay_score: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out = {key: attribute[key] for key in ATTRIBUTE_FIELDS}
    if decay_score is not None:
        out["decay_score"] = decay_score
    out["Event"] = {
        "org_id": event["org_id"],
        "distribution": event["distribution"],
        "id": event["id"],
        "info": event["info"],
        "orgc_id": event["orgc_id"],
        "uuid": event["uuid"],
    }
    if obj is not None:
        out["Object"] = {
            "id": obj["id"],
            "distribution": obj["distribution"],
            "sharing_group_id": obj["sharing_group_id"],
        }
    tags = [dict(t) for t in attribute.get("Tag", ())]
    if include_event_tags:
        for tag in event["Tag"]:
            inherited = dict(tag)
            inherited["inherited"] = 1
            tags.append(inherited)
    if tags:
        out["Tag"] = tags
    return out


def _event_attribute(
    attribute: dict[str, Any], decay_score: list[dict[str, Any]] | None
) -> dict[str, Any]:
    out = {key: attribute[key] for key in ATTRIBUTE_FIELDS}
    if decay_score is not None:
        out["decay_score"] = decay_score
    out["Galaxy"] = []
    out["ShadowAttribute"] = []
    if attribute.get("Tag"):
        out["Tag"] = [dict(t) for t in attribute["Tag"]]
    return out


def render_event(
    event: dict[str, Any],
    keep: Any,
    decay: Any = None,
) -> dict[str, Any]:
    """One ``{"Event": …}`` item; ``keep(attribute, obj)`` selects attributes, ``decay(attribute, event)`` scores them."""
    out = {k: v for k, v in event.items() if k not in ("Attribute", "Object", "Tag", "Org", "Orgc")}
    out["Org"] = dict(event["Org"])
    out["Orgc"] = dict(event["Orgc"])
    out["Attribute"] = [
        _event_attribute(a, decay(a, event) if decay else None)
        for a in event["Attribute"]
        if keep(a, None)
    ]
    out["ShadowAttribute"] = []
    out["RelatedEvent"] = []
    out["Galaxy"] = []
    objects = []
    for obj in event["Object"]:
        members = [
            _event_attribute(a, decay(a, event) if decay else None)
            for a in obj["Attribute"]
            if keep(a, obj)
        ]
        if members or not obj["Attribute"]:
            rendered = {k: v for k, v in obj.items() if k != "Attribute"}
            rendered["Attribute"] = members
            objects.append(rendered)
    out["Object"] = objects
    out["EventReport"] = []
    out["Tag"] = [dict(t) for t in event["Tag"]]
    return {"Event": out}
