"""The simulated MISP database: indexed attributes, restSearch execution, mutations.

Result counts (``X-Result-Count``) follow MISP's ``MispAttribute::__iteratedFetch``
exactly; see :func:`attribute_result_count`.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import threading
import uuid as uuid_module
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from misp_ti.simulator.correlations import Correlations
from misp_ti.simulator.dataset import Dataset, no_gc
from misp_ti.simulator.decay import DecayScorer
from misp_ti.simulator.filters import NUMERIC_FIELDS, Query
from misp_ti.simulator.render import render_attribute, render_event
from misp_ti.simulator.tags import TagRegistry, like_regex
from misp_ti.simulator.warninglist import Warninglist

__all__ = ["SimState", "SearchResult", "attribute_result_count"]

_MUTABLE_FIELDS = {
    "type", "category", "value", "to_ids", "comment", "distribution", "sharing_group_id",
    "disable_correlation", "first_seen", "last_seen", "object_relation", "deleted",
}  # fmt: skip


class Row:
    """One attribute with the context the filters need (event, object, tag names, split value)."""

    __slots__ = (
        "attribute",
        "event",
        "obj",
        "id",
        "ts",
        "values",
        "all_tag_names",
        "event_tag_names",
    )

    def __init__(
        self, attribute: dict[str, Any], event: dict[str, Any], obj: dict[str, Any] | None
    ) -> None:
        self.attribute, self.event, self.obj = attribute, event, obj
        self.id = int(attribute["id"])
        self.refresh()

    def refresh(self) -> None:
        attribute = self.attribute
        self.ts = int(attribute["timestamp"])
        value = attribute["value"]
        # MISP stores composite values as value1/value2 and searches both halves.
        self.values = value.split("|", 1) if "|" in attribute["type"] and "|" in value else [value]
        event_tags = self.event["Tag"]
        self.event_tag_names = [t["name"] for t in event_tags] + [t["id"] for t in event_tags]
        own = attribute.get("Tag", ())
        self.all_tag_names = (
            [t["name"] for t in own] + [t["id"] for t in own] + self.event_tag_names
        )


@dataclass
class SearchResult:
    records: list[dict[str, Any]]
    #: The value MISP puts in ``X-Result-Count``.
    result_count: int
    #: Rows the SQL page held before post-filters (for tests and logs).
    sql_rows: int
    skipped: int


def attribute_result_count(limit: int, sql_rows: int, kept: int) -> int:
    """``X-Result-Count`` of ``/attributes/restSearch`` as MISP computes it.

    Without a limit it is the number of matching rows. With ``limit`` it is the
    number of rows the SQL page returned (before warninglist/decay
    post-filters), plus one when the post-filtered page is full (so a full page
    says ``limit + 1``) or empty (an empty page, even past the end, says
    ``rows + 1``, i.e. ``1`` past the end).
    """
    if limit <= 0:
        return sql_rows
    if kept == 0 or kept >= limit:
        return sql_rows + 1
    return sql_rows


class SimState:
    """Thread-safe store behind the HTTP server."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        seed: int = 0,
        models: list[dict[str, Any]],
        warninglist: Warninglist,
        adopt: bool = False,
        warning_for_all: bool = False,
    ) -> None:
        self.lock = threading.RLock()
        #: MISP's ``MISP.warning_for_all`` setting (see ``search_events``).
        self.warning_for_all = warning_for_all
        self.correlations = Correlations()
        self.rng = random.Random(f"misp-sim-data-{seed}")
        self.scorer = DecayScorer(models)
        self.warninglist = warninglist
        self.tags = TagRegistry()
        self.events: dict[int, dict[str, Any]] = {}
        self.event_by_uuid: dict[str, dict[str, Any]] = {}
        self.rows: dict[int, Row] = {}
        self.row_by_uuid: dict[str, Row] = {}
        self.ts_index: list[tuple[int, int]] = []
        self.sightings: dict[int, list[dict[str, Any]]] = {}
        self.version = 0
        self._cache: OrderedDict[tuple[int, str], list[Row]] = OrderedDict()
        with no_gc():
            # A deep copy (orjson: 10x faster than copy.deepcopy) unless the caller hands the data over.
            raw = dataset._raw_events()
            for event in raw if adopt else orjson.loads(orjson.dumps(raw)):
                self._add_event(event)
        self.ts_index.sort()
        self.next_attribute_id = max(self.rows, default=0) + 1
        self.next_event_id = max(self.events, default=0) + 1
        self.next_sighting_id = 1

    # -- indexing ----------------------------------------------------------------------------
    def _add_event(self, event: dict[str, Any]) -> None:
        self.events[int(event["id"])] = event
        self.event_by_uuid[event["uuid"].lower()] = event
        for tag in event["Tag"]:
            self.tags.adopt(tag)
        for attribute in event["Attribute"]:
            self._index(Row(attribute, event, None), sort=False)
        for obj in event["Object"]:
            for attribute in obj["Attribute"]:
                self._index(Row(attribute, event, obj), sort=False)

    def _index(self, row: Row, *, sort: bool = True) -> None:
        for tag in row.attribute.get("Tag", ()):
            self.tags.adopt(tag)
        self.rows[row.id] = row
        self.row_by_uuid[row.attribute["uuid"].lower()] = row
        if sort:
            bisect.insort(self.ts_index, (row.ts, row.id))
        else:
            self.ts_index.append((row.ts, row.id))

    def _retime(self, row: Row, timestamp: int) -> None:
        position = bisect.bisect_left(self.ts_index, (row.ts, row.id))
        if position < len(self.ts_index) and self.ts_index[position] == (row.ts, row.id):
            del self.ts_index[position]
        row.attribute["timestamp"] = str(timestamp)
        row.refresh()
        bisect.insort(self.ts_index, (row.ts, row.id))

    def tag_exists(self, term: str) -> bool:
        if term.isdigit():
            return True
        pattern = like_regex(term)
        return any(pattern.match(name) for name in self.tags.names())

    # -- search ------------------------------------------------------------------------------
    def _matching_rows(self, query: Query) -> list[Row]:
        key = (self.version, query.cache_key)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        low, high = query.timestamp_range
        if low is not None or high is not None:
            start, stop = self._timestamp_span(query)
            candidates = [self.rows[i] for _, i in self.ts_index[start:stop]]
            candidates.sort(key=lambda r: r.id)
        else:
            candidates = [self.rows[i] for i in sorted(self.rows)]
        matched = list(_matching(candidates, query))
        if query.order:
            for model, name, descending in reversed(query.order):
                matched.sort(key=_sort_key(model, name), reverse=descending)
        self._cache[key] = matched
        while len(self._cache) > 16:
            self._cache.popitem(last=False)
        return matched

    def decay_for(
        self, attribute: dict[str, Any], event: dict[str, Any], now: int, query: Query | None = None
    ) -> list[dict[str, Any]]:
        sightings = self.sightings.get(int(attribute["id"]))
        last = max(int(s["date_sighting"]) for s in sightings) if sightings else None
        return self.scorer.score(
            attribute, event["Tag"], now, last,
            overrides=query.model_overrides if query else None,
            model_ids=query.decaying_model if query else None,
        )  # fmt: skip

    def _timestamp_span(self, query: Query) -> tuple[int, int]:
        """Positions in the timestamp index of the query's time range."""
        low, high = query.timestamp_range
        start = 0 if low is None else bisect.bisect_left(self.ts_index, (low, -1))
        stop = len(self.ts_index) if high is None else bisect.bisect_right(self.ts_index, (high, 1 << 62))
        return start, stop

    def _page_in_timestamp_order(self, query: Query) -> list[Row]:
        """The requested page, for queries ordered by timestamp then id.

        The timestamp index is already in that order, so the scan stops once
        the page is full instead of matching the whole rest of the window (a
        keyset-paging client asks a new range every page; matching it all
        each time made a large backfill quadratic).
        """
        start, stop = self._timestamp_span(query)
        offset = query.limit * (query.page - 1)
        need = offset + query.limit
        in_order = (self.rows[self.ts_index[position][1]] for position in range(start, stop))
        matched = list(itertools.islice(_matching(in_order, query), need))
        return matched[offset:need]

    def search_attributes(self, query: Query, now: int) -> SearchResult:
        with self.lock:
            if query.limit > 0 and query.order in _TIMESTAMP_ORDERS:
                page = self._page_in_timestamp_order(query)
            elif query.limit > 0:
                matched = self._matching_rows(query)
                offset = query.limit * (query.page - 1)
                page = matched[offset : offset + query.limit]
            else:
                page = self._matching_rows(query)
            records = []
            skipped = 0
            for row in page:
                attribute = row.attribute
                if query.enforce_warninglist and self.warninglist.hits(
                    attribute["type"], attribute["value"]
                ):
                    skipped += 1
                    continue
                decay = None
                if query.include_decay_score:
                    decay = self.decay_for(attribute, row.event, now, query)
                    if query.exclude_decayed and decay and all(d["decayed"] for d in decay):
                        skipped += 1
                        continue
                records.append(
                    render_attribute(
                        attribute,
                        row.event,
                        row.obj,
                        include_event_tags=query.include_event_tags,
                        decay_score=decay,
                    )
                )
            count = attribute_result_count(query.limit, len(page), len(records))
            return SearchResult(records, count, len(page), skipped)

    def search_events(self, query: Query, now: int) -> SearchResult:
        with self.lock:
            selected = []
            for event_id in sorted(self.events):
                event = self.events[event_id]
                if not all(p(event) for p in query.event_predicates):
                    continue
                if query.attribute_filtered:
                    rows = (self.row_by_uuid[a["uuid"].lower()] for a in _event_attributes(event))
                    if not any(all(p(r) for p in query.attribute_predicates) for r in rows):
                        continue
                selected.append(event)
            if query.order:
                for _, name, descending in reversed(query.order):
                    selected.sort(
                        key=functools.partial(_event_sort_value, name=name), reverse=descending
                    )
            total = len(selected)
            if query.limit > 0:
                offset = query.limit * (query.page - 1)
                selected = selected[offset : offset + query.limit]

            def keep(attribute: dict[str, Any], obj: dict[str, Any] | None) -> bool:
                row = self.row_by_uuid[attribute["uuid"].lower()]
                if not query.deleted_predicate(row):
                    return False
                if query.to_ids is not None and attribute["to_ids"] not in query.to_ids:
                    return False
                # Event::fetchEvent drops warninglisted attributes through
                # Warninglist::filterWarninglistAttribute, which only looks at
                # to_ids attributes unless MISP.warning_for_all is on (a MISP
                # 2.5.1 kept every to_ids=false hit, tests/data/real_misp_2.5.1);
                # /attributes/restSearch checks every attribute (search_attributes)
                return not (
                    query.enforce_warninglist
                    and (attribute["to_ids"] or self.warning_for_all)
                    and self.warninglist.hits(attribute["type"], attribute["value"])
                )

            decay: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None
            if query.include_decay_score:
                decay = lambda attribute, event: self.decay_for(attribute, event, now, query)  # noqa: E731
            records = [
                render_event(e, keep, decay, self.correlations.related_events(e, self.events, self.version))
                for e in selected
            ]
            return SearchResult(records, total, len(selected), 0)

    # -- mutations ---------------------------------------------------------------------------
    def new_uuid(self) -> str:
        return str(uuid_module.UUID(int=self.rng.getrandbits(128), version=4))

    def touch_event(self, event: dict[str, Any], now: int) -> None:
        # MISP's MispAttribute::touch: editing an attribute bumps the event timestamp and unpublishes it.
        event["timestamp"] = str(max(now, int(event["timestamp"])))
        event["published"] = False
        # the counter cache counts live attributes only (MISP 2.5.1: a soft delete lowers it)
        event["attribute_count"] = str(sum(1 for a in _event_attributes(event) if not a["deleted"]))

    def create_event(
        self, now: int, info: str | None = None, tags: list[Any] | None = None
    ) -> dict[str, Any]:
        template = self.events[min(self.events)] if self.events else None
        org = (
            dict(template["Orgc"])
            if template
            else {"id": "1", "name": "ORGNAME", "uuid": self.new_uuid(), "local": True}
        )
        event_id = self.next_event_id
        self.next_event_id += 1
        event: dict[str, Any] = {
            "id": str(event_id), "orgc_id": org["id"], "org_id": org["id"],
            "date": _date(now), "info": info or f"Simulated event {event_id}", "published": True,
            "uuid": self.new_uuid(), "attribute_count": "0", "timestamp": str(now), "publish_timestamp": str(now),
            "threat_level_id": "2", "analysis": "2", "distribution": "3", "sharing_group_id": "0",
            "proposal_email_lock": False, "locked": False, "disable_correlation": False, "extends_uuid": "",
            "Org": dict(org), "Orgc": dict(org), "Attribute": [], "Object": [],
            "Tag": [self.tags.normalise(t) for t in tags or []],
        }  # fmt: skip
        self.events[event_id] = event
        self.event_by_uuid[str(event["uuid"])] = event
        return event

    def add_attribute(self, event_uuid: str | None, fields: dict[str, Any], now: int) -> Row:
        if "type" not in fields or "value" not in fields:
            raise ValueError("add_attribute needs at least type= and value=")
        unknown = set(fields) - _MUTABLE_FIELDS - {"uuid", "tags", "Tag"}
        if unknown:
            raise ValueError(f"add_attribute: unknown field(s) {sorted(unknown)}")
        with self.lock:
            if event_uuid is None:
                event = self.create_event(now)
            else:
                found = self.event_by_uuid.get(str(event_uuid).lower())
                if found is None:
                    raise KeyError(f"no event with uuid {event_uuid}")
                event = found
            attribute_id = self.next_attribute_id
            self.next_attribute_id += 1
            tags = fields.get("tags", fields.get("Tag")) or []
            attribute = {
                "id": str(attribute_id), "type": str(fields["type"]), "category": str(fields.get("category", "Network activity")),
                "to_ids": bool(fields.get("to_ids", True)), "uuid": str(fields.get("uuid") or self.new_uuid()),
                "event_id": event["id"], "distribution": str(fields.get("distribution", "5")), "timestamp": str(now),
                "comment": str(fields.get("comment", "")), "sharing_group_id": str(fields.get("sharing_group_id", "0")),
                "deleted": bool(fields.get("deleted", False)), "disable_correlation": bool(fields.get("disable_correlation", False)),
                "object_id": "0", "object_relation": None, "first_seen": fields.get("first_seen"),
                "last_seen": fields.get("last_seen"), "value": str(fields["value"]),
            }  # fmt: skip
            if attribute["uuid"].lower() in self.row_by_uuid:
                raise ValueError(f"an attribute with uuid {attribute['uuid']} exists already")
            if tags:
                attribute["Tag"] = [self.tags.normalise(t) for t in tags]
            event["Attribute"].append(attribute)
            row = Row(attribute, event, None)
            self._index(row)
            self.touch_event(event, now)
            self.version += 1
            return row

    def modify_attribute(self, uuid: str, fields: dict[str, Any], now: int) -> Row:
        unknown = set(fields) - _MUTABLE_FIELDS - {"tags", "Tag"}
        if unknown:
            raise ValueError(f"modify_attribute: unknown or read-only field(s) {sorted(unknown)}")
        with self.lock:
            row = self.row(uuid)
            for key, value in fields.items():
                if key in ("tags", "Tag"):
                    row.attribute["Tag"] = [self.tags.normalise(t) for t in value or []]
                elif key in ("to_ids", "deleted", "disable_correlation"):
                    row.attribute[key] = bool(value)
                elif key in ("first_seen", "last_seen", "object_relation"):
                    row.attribute[key] = value
                else:
                    row.attribute[key] = str(value)
            self._retime(row, now)
            self.touch_event(row.event, now)
            self.version += 1
            return row

    def row(self, uuid: str) -> Row:
        row = self.row_by_uuid.get(str(uuid).lower())
        if row is None:
            raise KeyError(f"no attribute with uuid {uuid}")
        return row

    def add_sighting(self, uuid: str, timestamp: int) -> dict[str, Any]:
        with self.lock:
            row = self.row(uuid)
            sighting = {
                "id": str(self.next_sighting_id), "attribute_id": row.attribute["id"], "event_id": row.event["id"],
                "org_id": row.event["org_id"], "date_sighting": str(timestamp), "uuid": self.new_uuid(),
                "source": "", "type": "0",
            }  # fmt: skip
            self.next_sighting_id += 1
            self.sightings.setdefault(row.id, []).append(sighting)
            # A sighting moves the event's sighting_timestamp only; the attribute timestamp stays (MISP).
            row.event["sighting_timestamp"] = str(timestamp)
            return dict(sighting)

    def shift_all(self, delta: int) -> None:
        """Move every stored time by ``delta`` seconds (``MispSimulator.shift_to``)."""
        with self.lock:
            shifted = Dataset([e for e in self.events.values()], _normalised=True)
            newest = shifted.newest_timestamp()
            if newest == 0:
                return
            from datetime import UTC, datetime

            moved = shifted.shift_to(datetime.fromtimestamp(newest + delta, UTC))._raw_events()
            sightings = {
                k: [dict(s, date_sighting=str(int(s["date_sighting"]) + delta)) for s in v]
                for k, v in self.sightings.items()
            }
            self.__init_from(moved)
            self.sightings = sightings

    def __init_from(self, events: list[dict[str, Any]]) -> None:
        self.events, self.event_by_uuid, self.rows, self.row_by_uuid, self.ts_index = (
            {},
            {},
            {},
            {},
            [],
        )
        for event in events:
            self._add_event(event)
        self.ts_index.sort()
        self.version += 1
        self._cache.clear()


def _event_attributes(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list(event["Attribute"]) + [a for o in event["Object"] for a in o["Attribute"]]


def _date(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


def _matching(rows: Iterable[Row], query: Query) -> Iterator[Row]:
    """The rows the query's filters keep, in the order given (event filters
    are evaluated once per event)."""
    event_ok: dict[str, bool] = {}
    predicates = query.attribute_predicates
    for row in rows:
        eid = str(row.event.get("uuid"))
        ok = event_ok.get(eid)
        if ok is None:
            ok = event_ok[eid] = all(p(row.event) for p in query.event_predicates)
        if ok and all(p(row) for p in predicates):
            yield row


#: Orders the timestamp index already has (rows sorted by timestamp, then id).
_TIMESTAMP_ORDERS = (
    [("Attribute", "timestamp", False)],
    [("Attribute", "timestamp", False), ("Attribute", "id", False)],
)

# the same columns sort numerically as filter numerically
_NUMERIC = NUMERIC_FIELDS


def _sort_key(model: str, name: str) -> Callable[[Row], Any]:
    if model == "Event":
        return lambda row: int(row.event[name])
    if name in _NUMERIC:
        return lambda row: int(row.attribute[name])
    return lambda row: (row.attribute[name] or "").lower()


def _event_sort_value(event: dict[str, Any], *, name: str) -> Any:
    return int(event[name]) if name in _NUMERIC else str(event[name]).lower()
