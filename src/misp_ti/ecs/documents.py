"""Build the ECS document of one MISP record, for both streams.

``threat_attributes``: one ``/attributes/restSearch`` attribute (with its
``Event``, ``Object`` and ``Tag`` context). ``threat``: one split
``/events/restSearch`` record ``{"Event": {..., "Attribute": {...}}}``
and/or ``{"Event": {..., "Object": {..., "Attribute": {...}}}}``; when an
object attribute is present it is the document's attribute and the event
attribute becomes ``misp.context.attribute``, as in the reference.

The output matches what Elastic's ti_misp ingest pipeline stores, with the
deviations listed in docs/deviations.md. A record that cannot become a valid
document yields a ``pipeline_error`` document carrying the raw record in
``event.original``, so nothing is lost and the stream goes on.

The expiry fields (``misp.attribute.decayed``/``decayed_at``) are not set
here: the engine asks ``compute_expiry`` and folds them into ``_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b
from typing import Any

from misp_ti.ecs.options import Options
from misp_ti.ecs.pipeline_error import (  # noqa: F401  (the error API, importable from here as before)
    _ECS,
    PIPELINE_ERROR,
    _doc_id,
    dump_original,
    error_document,
    is_pipeline_error,
)
from misp_ti.ecs.tags import _apply_tags, _finish_tags, _tag_summary
from misp_ti.ecs.types import TYPE_RULES
from misp_ti.ecs.values import Malformed, iso_seconds, seen_iso, strict_epoch_seconds, to_long
from misp_ti.misp.lenient import UNPARSED, UNPARSED_REASON

#: Longest attribute value accepted; MISP stores values in 64 KiB columns (two for composites).
MAX_VALUE_CHARS = 131_072

_CONTAINERS = (dict, list)
_CATEGORY = ("threat",)
_TYPE = ("indicator",)

# attribute keys that are moved elsewhere, not copied to misp.attribute
_ATTRIBUTE_MOVED = frozenset(("Event", "Object", "Tag", "timestamp", "value", "first_seen", "last_seen"))
_EVENT_ATTRIBUTE_MOVED = frozenset(("Galaxy", "ShadowAttribute", "Tag", "value", "first_seen", "last_seen"))
_EVENT_MOVED_ATTRIBUTES_STREAM = frozenset(("org_id", "event_creator_email", "analysis"))
_EVENT_MOVED_THREAT_STREAM = frozenset((
    "Attribute", "Object", "Org", "Orgc", "Tag", "ShadowAttribute", "RelatedEvent", "Galaxy",
    "EventReport", "timestamp", "analysis", "event_creator_email",
))
_CONTEXT_DROPPED = frozenset(("Galaxy", "ShadowAttribute"))
_OBJECT_MOVED = frozenset(("Attribute", "ObjectReference", "meta-category"))
_EVENT_DATES = ("timestamp", "publish_timestamp", "sighting_timestamp")
_EVENT_LONGS = ("distribution", "attribute_count", "threat_level_id")


def _prune(value: Any) -> Any:
    """Drop ``None`` members of dicts, recursively (the reference's cleanup script)."""
    if type(value) is dict:
        return {k: _prune(v) if type(v) in _CONTAINERS else v for k, v in value.items() if v is not None}
    if type(value) is list:
        return [_prune(v) if type(v) in _CONTAINERS else v for v in value]
    return value


def _copy(source: dict, skip: frozenset[str]) -> dict:
    return {
        k: _prune(v) if type(v) in _CONTAINERS else v
        for k, v in source.items()
        if v is not None and k not in skip
    }


def _value(attribute: dict) -> str | None:
    value = attribute.get("value")
    if value is None or type(value) is str:
        if value is not None:
            if len(value) > MAX_VALUE_CHARS:
                raise Malformed(f"value: {len(value)} characters, more than the {MAX_VALUE_CHARS} MISP can store")
            if not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:
                    raise Malformed("value: not valid UTF-8 (lone surrogate)") from None
        return value
    raise Malformed(f"value: expected a string, got {type(value).__name__}")


def _indicator(attribute: dict, value: str | None, misp_attr: dict) -> dict:
    """``threat.indicator`` for one attribute; puts ``value`` into ``misp_attr`` unless typed fields hold it."""
    misp_type = attribute.get("type")
    rule = TYPE_RULES.get(misp_type) if type(misp_type) is str else None
    if rule is None:
        raise Malformed(f"type: unknown MISP attribute type {misp_type!r:.60}")
    indicator_type, handler = rule
    indicator: dict[str, Any] = {"provider": "misp"}
    if indicator_type is not None:
        indicator["type"] = indicator_type
    if value is not None and (handler is None or not handler(value, indicator)):
        misp_attr["value"] = value
    return indicator


def _seen(attribute: dict, indicator: dict, misp_attr: dict | None, name: str) -> None:
    for key in ("first_seen", "last_seen"):
        raw = attribute.get(key)
        if raw is not None:
            when = seen_iso(raw, f"{name}.{key}")
            indicator[key] = when
            if misp_attr is not None:
                misp_attr[key] = when


def _base(doc_id: str, timestamp: str, opts: Options, record: Any) -> dict:
    event: dict[str, Any] = {
        "kind": "enrichment", "category": list(_CATEGORY), "type": list(_TYPE),
        "dataset": opts.dataset, "ingested": opts.ingested,
    }
    tags = []
    if opts.preserve_original:
        event["original"] = dump_original(record)
        tags.append("preserve_original_event")
    return {
        "_id": doc_id,
        "@timestamp": timestamp,
        "ecs": dict(_ECS),
        "event": event,
        "data_stream": {"type": "logs", "dataset": opts.dataset, "namespace": opts.namespace},
        "tags": tags,
    }


def _object(obj: dict, name: str) -> dict:
    misp_object = _copy(obj, _OBJECT_MOVED)
    if obj.get("meta-category") is not None:
        misp_object["meta_category"] = obj["meta-category"]
    if "timestamp" in misp_object:
        misp_object["timestamp"] = iso_seconds(strict_epoch_seconds(misp_object["timestamp"], f"{name}.timestamp"))
    if "distribution" in misp_object:
        misp_object["distribution"] = to_long(misp_object["distribution"], f"{name}.distribution")
    return misp_object


def _event_fields(event: dict, misp_event: dict, *, dates: tuple[str, ...]) -> tuple[int | None, Any]:
    """Convert ``misp_event``'s dates and numbers in place; the event's
    ``threat.indicator.scanner_stats`` and creator e-mail (``None`` when absent)."""
    for key in dates:
        if key in misp_event:
            misp_event[key] = iso_seconds(strict_epoch_seconds(misp_event[key], f"Event.{key}"))
    for key in _EVENT_LONGS:
        if key in misp_event:
            misp_event[key] = to_long(misp_event[key], f"Event.{key}")
    analysis = event.get("analysis")
    return (None if analysis is None else to_long(analysis, "Event.analysis")), event.get("event_creator_email")


def _apply_event_fields(doc: dict, indicator: dict, scanner_stats: int | None, email: Any) -> None:
    if scanner_stats is not None:
        indicator["scanner_stats"] = scanner_stats
    if email is not None:
        doc["user"] = {"email": email, "roles": ["reporting_user"]}


#: An attributes-stream event's share of its documents: ``misp.event``,
#: ``scanner_stats``, the creator's e-mail and ``organization.id``.
EventPart = tuple[dict, int | None, Any, Any]
#: Value types for which equal values behave alike in every step of the
#: transform (``1 == True`` and ``0.0 == -0.0``, so the types are part of
#: the key and floats are left out).
_PLAIN_VALUE_TYPES = frozenset((str, int, bool, type(None)))
_STR = frozenset((str,))
#: the attributes of an event share its ``Event``, those of an object its
#: ``Object``: their parts, by :func:`_scalar_key`
_EVENT_PARTS: dict[tuple[object, ...], EventPart] = {}
_OBJECT_PARTS: dict[tuple[object, ...], dict] = {}


def _scalar_key(source: dict) -> tuple[object, ...] | None:
    """A key that two dicts share only when they hold the same string keys
    with equal values of the same exact types (strings, integers, booleans,
    ``None``), in the same order: then every step of the transform treats
    them alike. ``None`` for a dict holding any other kind of value."""
    values = tuple(source.values())
    if not (_PLAIN_VALUE_TYPES.issuperset(map(type, values)) and _STR.issuperset(map(type, source))):
        return None
    return tuple(source), values, tuple(map(type, values))


def _event_part(event: dict) -> EventPart:
    """What ``event`` gives each of its attributes' documents (raises :class:`Malformed`)."""
    misp_event = _copy(event, _EVENT_MOVED_ATTRIBUTES_STREAM)
    scanner_stats, email = _event_fields(event, misp_event, dates=_EVENT_DATES)
    return misp_event, scanner_stats, email, event.get("org_id")


def _shared_event_part(event: dict) -> EventPart:
    """:func:`_event_part`, worked out once per distinct event (see
    :func:`_scalar_key`; an event with other values is worked out each time).
    The cached ``misp.event`` holds only scalars: a shallow copy of it is a
    document's own."""
    key = _scalar_key(event)
    if key is None:
        return _event_part(event)
    part = _EVENT_PARTS.get(key)
    if part is None:
        part = _event_part(event)
        if len(_EVENT_PARTS) >= 4096:
            _EVENT_PARTS.clear()
        _EVENT_PARTS[key] = part
    misp_event, scanner_stats, email, org_id = part
    return misp_event.copy(), scanner_stats, email, org_id


def _shared_object(obj: dict, name: str) -> dict:
    """:func:`_object`, worked out once per distinct object, like :func:`_shared_event_part`
    (an ``Object`` with its ``Attribute`` list is worked out each time)."""
    key = _scalar_key(obj)
    if key is None:
        return _object(obj, name)
    misp_object = _OBJECT_PARTS.get(key)
    if misp_object is None:
        misp_object = _object(obj, name)
        if len(_OBJECT_PARTS) >= 4096:
            _OBJECT_PARTS.clear()
        _OBJECT_PARTS[key] = misp_object
    return misp_object.copy()


def _require_dict(value: object, name: str) -> dict:
    if type(value) is not dict:
        raise Malformed(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _uuid(attribute: dict, name: str) -> str:
    uuid = attribute.get("uuid")
    if type(uuid) is not str or not uuid:
        raise Malformed(f"{name}.uuid: missing" if uuid is None else f"{name}.uuid: expected a string, got {uuid!r:.60}")
    return uuid


def _context_key(event: Any) -> object:
    return event.get("timestamp") if isinstance(event, dict) else None


# ---------------------------------------------------------------------------
# the two streams


def attribute_document(record: Any, opts: Options) -> dict:
    """The ``threat_attributes`` document of one attribute (raises :class:`Malformed`)."""
    attribute = _require_dict(record, "record")
    uuid = _uuid(attribute, "attribute")
    seconds = strict_epoch_seconds(attribute.get("timestamp"), "timestamp")
    value = _value(attribute)
    misp_attr = _copy(attribute, _ATTRIBUTE_MOVED)
    indicator = _indicator(attribute, value, misp_attr)
    if "distribution" in misp_attr:
        misp_attr["distribution"] = to_long(misp_attr["distribution"], "distribution")
    _seen(attribute, indicator, misp_attr, "attribute")

    event = attribute.get("Event")
    tag_list = attribute.get("Tag")
    tags_key, tag_summary = _tag_summary(tag_list)
    # the event's timestamp and the tags join the id: an event edit or a
    # retag (which may leave the attribute timestamp alone) is a new document,
    # not a replay the sinks would ignore
    doc = _base(
        # what _doc_id makes of these parts, without its generic join
        blake2b(f"{opts.dataset}\0{uuid}\0{seconds}\0{_context_key(event)}\0{tags_key}".encode(), digest_size=16).hexdigest(),
        iso_seconds(seconds), opts, record,
    )
    misp: dict[str, Any] = {"attribute": misp_attr}
    if event is not None:
        misp_event, scanner_stats, email, org_id = _shared_event_part(_require_dict(event, "Event"))
        _apply_event_fields(doc, indicator, scanner_stats, email)
        if org_id is not None:
            doc["organization"] = {"id": org_id}
        misp["event"] = misp_event
    obj = attribute.get("Object")
    if obj is not None:
        misp_object = _shared_object(_require_dict(obj, "Object"), "Object")
        members = obj.get("Attribute")
        if members is not None:
            if type(members) is not list:
                raise Malformed(f"Object.Attribute: expected a list, got {type(members).__name__}")
            members = _prune(members)
            for member in members:
                # the reference converts these with ignore_failure: a bad one stays as it was
                if type(member) is dict and type(member.get("timestamp")) is str and member["timestamp"].isdigit():
                    member["timestamp"] = iso_seconds(int(member["timestamp"]))
            misp_object["attribute"] = members
        misp["object"] = misp_object
    if tag_summary is None:
        _finish_tags(doc, indicator, (tag_list,))  # raises for the list the summary refused
    else:
        _apply_tags(doc, indicator, tag_summary)
    doc["misp"] = misp
    doc["threat"] = {"feed": {"name": "MISP"}, "indicator": indicator}
    return doc


def _single(value: object, name: str) -> dict | None:
    """A split record's ``Attribute``: one object (a one-item list is accepted; empty is absent)."""
    if value is None or value == [] or value == {}:
        return None
    if type(value) is list and len(value) == 1:
        value = value[0]
    return _require_dict(value, name)


def event_record_document(record: Any, opts: Options) -> dict:
    """The ``threat`` document of one split event record (raises :class:`Malformed`)."""
    event = _require_dict(_require_dict(record, "record").get("Event"), "Event")
    context = _single(event.get("Attribute"), "Event.Attribute")
    obj = event.get("Object")
    obj = None if obj is None or obj == [] or obj == {} else _require_dict(obj, "Event.Object")
    primary = _single(obj.get("Attribute"), "Event.Object.Attribute") if obj is not None else None
    name = "Event.Object.Attribute"
    if primary is None:
        primary, context, name = context, None, "Event.Attribute"
    if primary is None:
        raise Malformed("record has no attribute (neither Event.Attribute nor Event.Object.Attribute)")
    uuid = _uuid(primary, name)
    seconds = strict_epoch_seconds(primary.get("timestamp"), f"{name}.timestamp")
    event_seconds = strict_epoch_seconds(event["timestamp"], "Event.timestamp") if event.get("timestamp") is not None else seconds
    value = _value(primary)
    misp_attr = _copy(primary, _EVENT_ATTRIBUTE_MOVED)
    indicator = _indicator(primary, value, misp_attr)
    misp_attr["timestamp"] = iso_seconds(seconds)
    if "distribution" in misp_attr:
        misp_attr["distribution"] = to_long(misp_attr["distribution"], f"{name}.distribution")
    _seen(primary, indicator, None, name)

    doc = _base(_doc_id(opts.dataset, uuid, seconds, event_seconds), iso_seconds(event_seconds), opts, record)
    misp: dict[str, Any] = {"attribute": misp_attr}
    if context is not None:
        misp_context = _copy(context, _CONTEXT_DROPPED)
        if "timestamp" in misp_context:
            misp_context["timestamp"] = iso_seconds(strict_epoch_seconds(misp_context["timestamp"], "Event.Attribute.timestamp"))
        if "distribution" in misp_context:
            misp_context["distribution"] = to_long(misp_context["distribution"], "Event.Attribute.distribution")
        misp["context"] = {"attribute": misp_context}
    misp_event = _copy(event, _EVENT_MOVED_THREAT_STREAM)
    _apply_event_fields(doc, indicator, *_event_fields(event, misp_event, dates=_EVENT_DATES[1:]))
    misp["event"] = misp_event
    if obj is not None:
        misp["object"] = _object(obj, "Event.Object")
    orgc = event.get("Orgc")
    if orgc is not None:
        orgc = _prune(_require_dict(orgc, "Event.Orgc"))
        misp["orgc"] = orgc
        # an event from a remote organisation names it as the provider
        if orgc.get("local") in (False, "false", "0", 0) and type(orgc.get("name")) is str and orgc["name"]:
            indicator["provider"] = orgc["name"]
    _finish_tags(doc, indicator, (event.get("Tag"), primary.get("Tag")))
    doc["misp"] = misp
    doc["threat"] = {"feed": {"name": "MISP"}, "indicator": indicator}
    return doc


#: The built-in streams' builders (old name; a stream's builder is its
#: :attr:`misp_ti.streams.StreamSpec.build`).
BUILDERS = {"threat_attributes": attribute_document, "threat": event_record_document}


def transform(record: Any, opts: Options, build: Callable[[Any, Options], dict] | None = None) -> dict:
    """The document ``build`` (default: the built-in builder of ``opts.stream``)
    makes of ``record``; never raises for bad input: a record the builder
    rejects becomes a ``pipeline_error`` document."""
    if isinstance(record, dict) and UNPARSED in record:  # a record MISP sent as invalid JSON
        reason = f"MISP sent this record as invalid JSON: {record.get(UNPARSED_REASON, '')}"
        return error_document(record, reason, opts, original=str(record[UNPARSED]))
    try:
        return (build or BUILDERS[opts.stream])(record, opts)
    except Malformed as exc:
        return error_document(record, str(exc), opts)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        # a shape no check above anticipated: still one document, still counted
        return error_document(record, exc, opts)
