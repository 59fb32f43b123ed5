"""Serialise stored attributes and events into the JSON MISP's restSearch answers with.

Facts (MISP ``MispAttribute::fetchAttributes`` and ``JsonExport``, checked
against a MISP 2.5.1, ``tests/data/real_misp_2.5.1``): an attribute from
``/attributes/restSearch`` carries its own fields, ``Event`` with ``org_id``,
``distribution``, ``publish_timestamp``, ``id``, ``info``, ``orgc_id``,
``uuid`` (the ``contain`` list of ``fetchAttributes``), ``Object`` with
``id``, ``distribution``, ``sharing_group_id`` when it belongs to an object,
and ``Tag`` with its own tags; with ``includeEventTags`` (which
``includeDecayScore`` and ``excludeDecayed`` switch on) the event's tags are
appended with ``inherited: 1``. Those tags hold only ``id``, ``name``,
``colour``, ``numerical_value`` and ``inherited``; the attribute's own tags
``is_galaxy`` and ``local`` instead of ``inherited``. ``decay_score`` is there
only when an enabled model covers the attribute's type
(``DecayingModel::attachScoresToAttribute`` adds nothing otherwise).

An event from ``/events/restSearch`` (``Event::fetchEvent``) carries
``protected`` and ``event_creator_email`` after its columns, ``CryptographicKey``
after ``EventReport``, no ``Tag`` key when it has no tag, and full tag rows
with ``local`` as a boolean, ``local_only`` and ``relationship_type``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render_attribute", "render_event", "ATTRIBUTE_FIELDS"]

#: The tag columns ``fetchAttributes`` reads (its ``contain => Tag => fields``).
ATTRIBUTE_TAG_FIELDS = ("id", "name", "colour", "numerical_value")
#: Who created every event (MISP's first admin account; the simulator has no users).
EVENT_CREATOR_EMAIL = "admin@admin.test"

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
    if decay_score:
        out["decay_score"] = decay_score
    out["Event"] = {
        "org_id": event["org_id"],
        "distribution": event["distribution"],
        "publish_timestamp": event["publish_timestamp"],
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
    tags = [_attribute_tag(t, 0) for t in attribute.get("Tag", ())]
    if include_event_tags:
        tags.extend(_attribute_tag(t, 1) for t in event["Tag"])
    if tags:
        out["Tag"] = tags
    return out


def _attribute_tag(tag: dict[str, Any], inherited: int) -> dict[str, Any]:
    out = {key: tag[key] for key in ATTRIBUTE_TAG_FIELDS}
    if inherited:
        out["inherited"] = inherited
    else:  # the attribute's own tag: AttributeTag adds these two
        out["is_galaxy"] = tag["is_galaxy"]
        out["local"] = bool(tag.get("local"))
    return out


def _event_tag(tag: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in tag.items() if k != "local"}
    out["local_only"] = False
    out["local"] = bool(tag.get("local"))
    out["relationship_type"] = None
    return out


def _event_attribute(
    attribute: dict[str, Any], decay_score: list[dict[str, Any]] | None
) -> dict[str, Any]:
    out = {key: attribute[key] for key in ATTRIBUTE_FIELDS}
    if decay_score:
        out["decay_score"] = decay_score
    out["Galaxy"] = []
    out["ShadowAttribute"] = []
    if attribute.get("Tag"):
        out["Tag"] = [_event_tag(t) for t in attribute["Tag"]]
    return out


def render_event(
    event: dict[str, Any],
    keep: Any,
    decay: Any = None,
    related: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``{"Event": …}`` item; ``keep(attribute, obj)`` selects attributes, ``decay(attribute, event)``
    scores them, ``related`` is its ``RelatedEvent`` list (see ``correlations``)."""
    out = {k: v for k, v in event.items() if k not in ("Attribute", "Object", "Tag", "Org", "Orgc")}
    out.setdefault("protected", None)
    out.setdefault("event_creator_email", EVENT_CREATOR_EMAIL)
    out["Org"] = dict(event["Org"])
    out["Orgc"] = dict(event["Orgc"])
    out["Attribute"] = [
        _event_attribute(a, decay(a, event) if decay else None)
        for a in event["Attribute"]
        if keep(a, None)
    ]
    out["ShadowAttribute"] = []
    out["RelatedEvent"] = related or []
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
    out["CryptographicKey"] = []
    if event["Tag"]:
        out["Tag"] = [_event_tag(t) for t in event["Tag"]]
    return {"Event": out}
