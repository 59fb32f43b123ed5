"""The events a simulated MISP serves, normalised to the shape MISP stores them in.

A :class:`Dataset` is an immutable list of MISP events in the
``/events/restSearch`` shape, with the fields typed the way MISP's JSON output
types them (ids, timestamps and distributions as strings; ``to_ids``,
``deleted``, ``published`` as booleans). Loading renumbers events, objects and
attributes sequentially, as a fresh MISP instance would on import, so that
events copied from different servers never collide on ``id``.
"""

from __future__ import annotations

import contextlib
import gc
import uuid as uuid_module
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from misp_ti.simulator.tags import TagRegistry

__all__ = ["Dataset", "DatasetError"]

_EVENT_DEFAULTS: dict[str, Any] = {
    "threat_level_id": "2",
    "analysis": "2",
    "distribution": "3",
    "sharing_group_id": "0",
    "proposal_email_lock": False,
    "locked": False,
    "disable_correlation": False,
    "extends_uuid": "",
}


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic GC while building 100k+ small objects (its scans would dominate)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class DatasetError(ValueError):
    """A file or event that is not MISP event JSON."""


def _s(value: Any, default: str = "0") -> str:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _b(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _unwrap(document: Any, origin: str) -> list[dict[str, Any]]:
    """The events of one JSON document in any of the three feed shapes."""
    if isinstance(document, list):
        events: list[dict[str, Any]] = []
        for item in document:
            events.extend(_unwrap(item, origin))
        return events
    if not isinstance(document, dict):
        raise DatasetError(
            f"{origin}: expected a JSON object or list, got {type(document).__name__}"
        )
    if "response" in document:
        return _unwrap(document["response"], origin)
    if "Event" in document:
        event = document["Event"]
        if not isinstance(event, dict):
            raise DatasetError(f"{origin}: 'Event' is not an object")
        return [event]
    if "info" in document or "Attribute" in document or "Object" in document:
        return [document]  # the bare PyMISP fixture shape
    raise DatasetError(
        f"{origin}: not a MISP event (no 'response', 'Event', 'info', 'Attribute' or 'Object')"
    )


class _Builder:
    """Renumbers and normalises raw events; one per Dataset construction."""

    def __init__(self) -> None:
        self.tags = TagRegistry()
        self.orgs: dict[str, dict[str, Any]] = {}
        self.event_id = 0
        self.object_id = 0
        self.attribute_id = 0

    def org(self, raw: Any, fallback_name: str = "ORGNAME") -> dict[str, Any]:
        raw = raw if isinstance(raw, dict) else {}
        name = str(raw.get("name") or fallback_name)
        key = str(raw.get("uuid") or name).lower()
        if key not in self.orgs:
            self.orgs[key] = {
                "id": str(len(self.orgs) + 1),
                "name": name,
                "uuid": str(raw.get("uuid") or uuid_module.uuid5(uuid_module.NAMESPACE_DNS, name)),
                "local": True,
            }
        return self.orgs[key]

    def attribute(
        self, raw: dict[str, Any], event: dict[str, Any], obj: dict[str, Any] | None
    ) -> dict[str, Any]:
        if not isinstance(raw, dict) or "type" not in raw or "value" not in raw:
            raise DatasetError(
                f"event {event['uuid']}: attribute without 'type' and 'value': {str(raw)[:120]}"
            )
        self.attribute_id += 1
        attribute = {
            "id": str(self.attribute_id),
            "type": str(raw["type"]),
            "category": str(raw.get("category") or "Other"),
            "to_ids": _b(raw.get("to_ids", False)),
            "uuid": str(raw.get("uuid") or uuid_module.uuid4()),
            "event_id": event["id"],
            "distribution": _s(raw.get("distribution"), "5"),
            "timestamp": _s(raw.get("timestamp"), (obj or event)["timestamp"]),
            "comment": str(raw.get("comment") or ""),
            "sharing_group_id": _s(raw.get("sharing_group_id")),
            "deleted": _b(raw.get("deleted", False)),
            "disable_correlation": _b(raw.get("disable_correlation", False)),
            "object_id": obj["id"] if obj else "0",
            "object_relation": raw.get("object_relation") if obj else None,
            "first_seen": raw.get("first_seen"),
            "last_seen": raw.get("last_seen"),
            "value": str(raw["value"]),
        }
        tags = [self.tags.normalise(t) for t in raw.get("Tag") or []]
        if tags:
            attribute["Tag"] = tags
        return attribute

    def event(self, raw: dict[str, Any]) -> dict[str, Any]:
        self.event_id += 1
        timestamp = _s(raw.get("timestamp"), "0")
        event: dict[str, Any] = {
            "id": str(self.event_id),
            "orgc_id": "",
            "org_id": "",
            "date": str(
                raw.get("date") or datetime.fromtimestamp(int(timestamp), UTC).date().isoformat()
            ),
            "info": str(raw.get("info") or ""),
            "published": _b(raw.get("published", True)),
            "uuid": str(raw.get("uuid") or uuid_module.uuid4()),
            "attribute_count": "0",
            "timestamp": timestamp,
            "publish_timestamp": _s(raw.get("publish_timestamp"), timestamp),
        }
        for key, default in _EVENT_DEFAULTS.items():
            value = raw.get(key, default)
            event[key] = _b(value) if isinstance(default, bool) else _s(value, default)
        orgc = self.org(raw.get("Orgc"))
        org = self.org(raw.get("Org") or raw.get("Orgc"))
        event["orgc_id"], event["org_id"] = orgc["id"], org["id"]
        event["Org"], event["Orgc"] = dict(org), dict(orgc)
        event["Attribute"] = [self.attribute(a, event, None) for a in raw.get("Attribute") or []]
        event["Object"] = [self.object(o, event) for o in raw.get("Object") or []]
        event["Tag"] = [self.tags.normalise(t) for t in raw.get("Tag") or []]
        event["attribute_count"] = str(
            len(event["Attribute"]) + sum(len(o["Attribute"]) for o in event["Object"])
        )
        return event

    def object(self, raw: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise DatasetError(f"event {event['uuid']}: object is not a JSON object")
        self.object_id += 1
        obj: dict[str, Any] = {
            "id": str(self.object_id),
            "name": str(raw.get("name") or "unknown"),
            "meta-category": str(raw.get("meta-category") or "misc"),
            "description": str(raw.get("description") or ""),
            "template_uuid": str(raw.get("template_uuid") or ""),
            "template_version": _s(raw.get("template_version"), "1"),
            "event_id": event["id"],
            "uuid": str(raw.get("uuid") or uuid_module.uuid4()),
            "timestamp": _s(raw.get("timestamp"), event["timestamp"]),
            "distribution": _s(raw.get("distribution"), "5"),
            "sharing_group_id": _s(raw.get("sharing_group_id")),
            "comment": str(raw.get("comment") or ""),
            "deleted": _b(raw.get("deleted", False)),
            "first_seen": raw.get("first_seen"),
            "last_seen": raw.get("last_seen"),
            "ObjectReference": [],
        }
        obj["Attribute"] = [self.attribute(a, event, obj) for a in raw.get("Attribute") or []]
        return obj


def _shift_seen(value: Any, delta: int) -> Any:
    """Shift a ``first_seen``/``last_seen`` (ISO string or epoch microseconds) by ``delta`` seconds."""
    if value in (None, ""):
        return value
    text = str(value)
    if text.isdigit():
        return str(int(text) + delta * 1_000_000)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed + timedelta(seconds=delta)).isoformat(timespec="microseconds")


def _shift_ts(value: str, delta: int) -> str:
    return str(int(value) + delta) if int(value) > 0 else value


def _clamp_ts(value: str, ceiling: int) -> str:
    return str(ceiling) if int(value) > ceiling else value


class Dataset:
    """An immutable collection of MISP events (see the module docstring)."""

    def __init__(self, events: Iterable[Mapping[str, Any]], *, _normalised: bool = False) -> None:
        if _normalised:
            self._events: list[dict[str, Any]] = [e for e in events]  # type: ignore[misc]
        else:
            builder = _Builder()
            with no_gc():
                self._events = [builder.event(dict(e)) for e in events]

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]]) -> Dataset:
        """Events as dicts, each in any of the three feed shapes (``{"Event": …}`` too)."""
        raw: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            raw.extend(_unwrap(dict(event), f"event #{index}"))
        return cls(raw)

    @classmethod
    def from_path(cls, path: str | Path) -> Dataset:
        """A JSON file, or every ``*.json`` below a directory (sorted by path)."""
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.json") if p.is_file())
            if not files:
                raise DatasetError(f"{path}: no *.json files below this directory")
        elif path.is_file():
            files = [path]
        else:
            raise DatasetError(f"{path}: no such file or directory")
        raw: list[dict[str, Any]] = []
        for file in files:
            try:
                document = orjson.loads(file.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise DatasetError(f"{file}: not valid JSON ({exc})") from None
            raw.extend(_unwrap(document, str(file)))
        return cls(raw)

    @classmethod
    def sample(cls) -> Dataset:
        """The real MISP events shipped in ``misp_ti/simulator/data/misp-events``."""
        root = resources.files("misp_ti.simulator") / "data" / "misp-events"
        with resources.as_file(root) as directory:
            return cls.from_path(directory)

    @classmethod
    def synthetic(
        cls,
        n_attributes: int,
        *,
        seed: int = 0,
        newest: datetime | None = None,
        span: timedelta = timedelta(days=30),
        per_event: int = 200,
    ) -> Dataset:
        """``n_attributes`` generated attributes (about a tenth inside objects), timestamps spread over ``span``."""
        from misp_ti.simulator.synthetic import generate_events

        newest = newest or datetime(2026, 1, 1, tzinfo=UTC)
        return cls(
            generate_events(n_attributes, seed=seed, newest=newest, span=span, per_event=per_event)
        )

    # -- views ---------------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        """Deep copies of the events, in the ``/events/restSearch`` shape (without the ``Event`` wrapper)."""
        return orjson.loads(orjson.dumps(self._events))

    def _raw_events(self) -> list[dict[str, Any]]:
        return self._events  # the simulator copies them itself

    def __len__(self) -> int:
        return sum(
            len(e["Attribute"]) + sum(len(o["Attribute"]) for o in e["Object"])
            for e in self._events
        )

    def attributes(self, *, include_event_tags: bool = False) -> Iterator[dict[str, Any]]:
        """Every attribute as ``/attributes/restSearch`` returns it: with ``Event``, ``Object`` (members of objects) and ``Tag``.

        ``include_event_tags`` adds the event's tags with ``inherited: 1``, as
        MISP does when ``includeEventTags`` or ``includeDecayScore`` is set.
        """
        from misp_ti.simulator.render import render_attribute

        for event in self._events:
            for attribute in event["Attribute"]:
                yield render_attribute(
                    attribute, event, None, include_event_tags=include_event_tags
                )
            for obj in event["Object"]:
                for attribute in obj["Attribute"]:
                    yield render_attribute(
                        attribute, event, obj, include_event_tags=include_event_tags
                    )

    def newest_timestamp(self) -> int:
        """The largest attribute timestamp (epoch seconds); 0 for an empty dataset."""
        return max(
            (int(a["timestamp"]) for e in self._events for a in _all_attributes(e)), default=0
        )

    def shift_to(self, newest: datetime) -> Dataset:
        """A copy whose newest attribute timestamp is ``newest``; every other time moves by the same amount."""
        if newest.tzinfo is None:
            raise ValueError("shift_to needs an aware datetime")
        current = self.newest_timestamp()
        if current == 0:
            return Dataset(orjson.loads(orjson.dumps(self._events)), _normalised=True)
        delta = int(newest.timestamp()) - current
        events = orjson.loads(
            orjson.dumps(self._events)
        )  # deep copy; much faster than copy.deepcopy
        ceiling = int(newest.timestamp())
        for event in events:
            for key in ("timestamp", "publish_timestamp"):
                # an event edited after its newest attribute would otherwise land
                # in the future, outside every poll window; MISP never shows that
                event[key] = _clamp_ts(_shift_ts(event[key], delta), ceiling)
            event["date"] = (
                date.fromisoformat(event["date"][:10]) + timedelta(seconds=delta)
            ).isoformat()
            for obj in event["Object"]:
                obj["timestamp"] = _clamp_ts(_shift_ts(obj["timestamp"], delta), ceiling)
                obj["first_seen"] = _shift_seen(obj["first_seen"], delta)
                obj["last_seen"] = _shift_seen(obj["last_seen"], delta)
            for attribute in _all_attributes(event):
                attribute["timestamp"] = _shift_ts(attribute["timestamp"], delta)
                attribute["first_seen"] = _shift_seen(attribute["first_seen"], delta)
                attribute["last_seen"] = _shift_seen(attribute["last_seen"], delta)
        return Dataset(events, _normalised=True)

    def __repr__(self) -> str:
        return f"<Dataset {len(self._events)} events, {len(self)} attributes>"


def _all_attributes(event: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from event["Attribute"]
    for obj in event["Object"]:
        yield from obj["Attribute"]
