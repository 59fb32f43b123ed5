"""Which events correlate with which: the ``RelatedEvent`` list of ``/events/restSearch``.

Facts from MISP (``MispAttribute::NON_CORRELATING_TYPES`` and
``PRIMARY_ONLY_CORRELATING_TYPES``, the default correlation engine): two
events are related when a live attribute of one has a value (either half of
a composite value, only the first half for ``ip-src|port``,
``ip-dst|port``, ``hostname|port``) equal, case-insensitively (MySQL's
collation), to a value of a live attribute of the other; attributes of
non-correlating types, attributes and events with ``disable_correlation``
take no part. On the shipped sample this gives exactly the pairs a MISP 2.5.1
listed (``tests/data/real_misp_2.5.1``). Over-correlation limits and
correlation exclusions are not simulated.

Each entry is ``{"Event": {...}}`` with the related event's summary
(``Event::fetchEvent``); entries come newest ``date`` first (the recording has
at most one related event per event, so MISP's order is not checked).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["Correlations", "NON_CORRELATING_TYPES", "PRIMARY_ONLY_CORRELATING_TYPES"]

NON_CORRELATING_TYPES = frozenset({
    "comment", "http-method", "aba-rtn", "gender", "counter", "integer", "float", "port",
    "nationality", "cortex", "boolean", "anonymised",
})  # fmt: skip
PRIMARY_ONLY_CORRELATING_TYPES = frozenset({"ip-src|port", "ip-dst|port", "hostname|port"})
_SUMMARY_FIELDS = (
    "id", "date", "threat_level_id", "info", "published", "uuid", "analysis", "timestamp",
    "distribution", "org_id", "orgc_id",
)  # fmt: skip


def correlating_values(attribute: dict[str, Any]) -> list[str]:
    """The values ``attribute`` correlates on (lower-cased), none for a non-correlating one."""
    kind = attribute["type"]
    if kind in NON_CORRELATING_TYPES or attribute["deleted"] or attribute.get("disable_correlation"):
        return []
    value = str(attribute["value"])
    values = value.split("|", 1) if "|" in kind and "|" in value else [value]
    if kind in PRIMARY_ONLY_CORRELATING_TYPES:
        values = values[:1]
    return [v.lower() for v in values if v]


def _attributes(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from event["Attribute"]
    for obj in event["Object"]:
        if not obj.get("deleted"):
            yield from obj["Attribute"]


class Correlations:
    """Related events of a set of events; rebuilt when the data ``version`` changes."""

    def __init__(self) -> None:
        self._version: int | None = None
        self._related: dict[int, set[int]] = {}

    def _build(self, events: Iterable[dict[str, Any]]) -> None:
        by_value: dict[str, set[int]] = {}
        for event in events:
            if event.get("disable_correlation"):
                continue
            event_id = int(event["id"])
            for attribute in _attributes(event):
                for value in correlating_values(attribute):
                    by_value.setdefault(value, set()).add(event_id)
        related: dict[int, set[int]] = {}
        for ids in by_value.values():
            if len(ids) > 1:
                for event_id in ids:
                    related.setdefault(event_id, set()).update(ids - {event_id})
        self._related = related

    def related_events(self, event: dict[str, Any], events: dict[int, dict[str, Any]], version: int) -> list[dict[str, Any]]:
        """The ``RelatedEvent`` list of ``event`` among ``events`` (id -> event) at data ``version``."""
        if version != self._version:
            self._build(events.values())
            self._version = version
        others = [events[i] for i in self._related.get(int(event["id"]), ()) if i in events]
        others.sort(key=lambda e: (e["date"], int(e["id"])), reverse=True)
        return [{"Event": _summary(other)} for other in others]


def _summary(event: dict[str, Any]) -> dict[str, Any]:
    out = {key: event[key] for key in _SUMMARY_FIELDS}
    out["Org"] = {key: event["Org"][key] for key in ("id", "name", "uuid")}
    out["Orgc"] = {key: event["Orgc"][key] for key in ("id", "name", "uuid")}
    return out
