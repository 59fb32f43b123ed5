"""The two built-in streams, named as in Elastic's ti_misp integration.

``misp_ti.default_plugins.misp_fetch`` declares them (``MISP_TI_STREAMS``);
a plugin that replaces it declares :data:`BUILTIN_STREAMS` again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from misp_ti.config import THREAT_ONLY_CONTROLLED_FILTERS
from misp_ti.ecs.documents import attribute_document, event_record_document
from misp_ti.misp.records import record_attribute
from misp_ti.streams.spec import StreamRegistry, StreamSpec


def split_event(event: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One ``threat`` record per attribute and per object attribute of ``event``.

    ``{"Event": {<event fields>, "Attribute": {...}}}``, and for object
    attributes ``{"Event": {<event fields>, "Object": {<object fields>,
    "Attribute": {...}}}}``. (The reference's httpjson split also pairs every
    object attribute with an event attribute; we do not multiply records, the
    object keeps its own context.)
    """
    context = {k: v for k, v in event.items() if k not in ("Attribute", "Object")}
    for attribute in event.get("Attribute") or ():
        yield {"Event": {**context, "Attribute": attribute}}
    for obj in event.get("Object") or ():
        obj_context = {k: v for k, v in obj.items() if k != "Attribute"}
        for attribute in obj.get("Attribute") or ():
            yield {"Event": {**context, "Object": {**obj_context, "Attribute": attribute}}}


THREAT_ATTRIBUTES = StreamSpec(
    name="threat_attributes",
    build=attribute_document,
    attribute=record_attribute,
    scope="attributes",
    enabled_by_default=True,
    description="`POST /attributes/restSearch`: one document per attribute.",
)
THREAT = StreamSpec(
    name="threat",
    build=event_record_document,
    attribute=record_attribute,
    scope="events",
    split=split_event,
    description="`POST /events/restSearch`: one document per event attribute and object attribute.",
    controlled_filters=THREAT_ONLY_CONTROLLED_FILTERS,
)
BUILTIN_STREAMS = (THREAT_ATTRIBUTES, THREAT)
#: The registry of a context made without an engine (tests, tools).
BUILTIN_REGISTRY = StreamRegistry(("misp_fetch", spec) for spec in BUILTIN_STREAMS)
