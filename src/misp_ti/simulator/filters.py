"""restSearch filters, compiled the way MISP interprets them.

Facts from MISP (``AppModel::convert_filters``, ``generic_add_filter``,
``resolveTimeDelta``, ``findOrder``, ``Event::set_filter_*``,
``MispAttribute::set_filter_tags``/``buildFilterConditions``):

* a filter value is a scalar, a list or ``{"OR": [...], "NOT": [...], "AND": [...]}``;
  in a scalar, ``&&`` separates terms; a term starting with ``!`` is negated;
* ``%`` makes a term a SQL ``LIKE`` pattern; comparisons are case-insensitive
  (MySQL's default collation);
* ``value`` matches either half of a composite value (``value1``/``value2``);
  ``uuid`` matches the attribute's or the event's uuid; ``eventid`` takes ids
  or uuids;
* ``tags``: OR and AND terms match tags of the attribute *or* of its event;
  a NOT term drops attributes carrying the tag directly or through their event;
  a term naming no existing tag makes OR/AND match nothing;
* ``timestamp``/``attribute_timestamp`` compare the attribute timestamp,
  ``event_timestamp`` the event's, ``publish_timestamp``/``last`` the event's
  publish time: a scalar means ``>=``, a pair ``[from, to]`` an inclusive
  range (swapped when reversed, no lower bound when ``from`` is 0); values are
  epoch seconds, ``Nd``/``Nh``/``Nm``/``Ns`` before *now* (the simulator's
  clock) or a date string; an unparseable value becomes now + 1 s, as in MISP;
* ``deleted`` absent or empty → live attributes only; ``1`` or ``"only"`` →
  deleted only; ``[0, 1]`` → both;
* ``order`` accepts ``"timestamp"``, ``"Attribute.timestamp DESC"``, a
  comma-separated list or a list of such rules; an invalid rule drops the
  ordering altogether, as MISP does (rows then come in id order here).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from misp_ti.simulator.tags import like_regex

__all__ = ["Query", "compile_query", "php_truthy", "php_intval", "FilterError", "convert_filters"]

ATTRIBUTE_ORDER_FIELDS = {
    "Attribute": (
        "id",
        "event_id",
        "object_id",
        "type",
        "category",
        "value",
        "distribution",
        "timestamp",
        "object_relation",
    ),
    "Event": ("publish_timestamp",),
}
EVENT_ORDER_FIELDS = (
    "id",
    "info",
    "analysis",
    "threat_level_id",
    "distribution",
    "timestamp",
    "publish_timestamp",
)
NUMERIC_FIELDS = frozenset({
    "id",
    "event_id",
    "object_id",
    "distribution",
    "timestamp",
    "publish_timestamp",
    "analysis",
    "threat_level_id",
})


class FilterError(ValueError):
    """A filter MISP would refuse (it answers 500/400 for these)."""


def php_truthy(value: Any) -> bool:
    """PHP's ``!empty()``: note that the string ``"false"`` is true."""
    return value not in (None, False, 0, 0.0, "", "0") and value != [] and value != {}


def php_intval(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    match = re.match(r"\s*([+-]?\d+)", str(value))
    return int(match.group(1)) if match else 0


def convert_filters(value: Any) -> dict[str, list[Any]]:
    """Any filter form → ``{"OR": [...], "NOT": [...], "AND": [...]}`` (missing keys omitted)."""
    result: dict[str, list[Any]] = {}
    if isinstance(value, dict):
        if not any(k in value for k in ("OR", "NOT", "AND")):
            value = list(value.values())
        else:
            for key in ("OR", "NOT", "AND"):
                if key in value and value[key] not in (None, "", []):
                    terms = value[key] if isinstance(value[key], list) else [value[key]]
                    # MISP also strips a leading "!" from NOT terms given in dict form for values.
                    result[key] = [
                        t[1:] if key == "NOT" and isinstance(t, str) and t.startswith("!") else t
                        for t in terms
                    ]
            return result
    terms = (
        value
        if isinstance(value, list)
        else str(value).split("&&")
        if isinstance(value, str)
        else [value]
    )
    for term in terms:
        if isinstance(term, str) and term.startswith("!"):
            result.setdefault("NOT", []).append(term[1:])
        elif term is not None and term != "":
            result.setdefault("OR", []).append(term)
    return result


def _matcher(term: Any) -> Callable[[str], bool]:
    text = str(term)
    if text.startswith("%") or text.endswith("%"):
        pattern = like_regex(text)
        return lambda candidate: pattern.match(candidate) is not None
    lowered = text.lower()
    return lambda candidate: candidate.lower() == lowered


def _field_predicate(
    spec: dict[str, list[Any]], getter: Callable[[Any], list[str]]
) -> Callable[[Any], bool] | None:
    ors = [_matcher(t) for t in spec.get("OR", [])]
    nots = [_matcher(t) for t in spec.get("NOT", [])]
    ands = [_matcher(t) for t in spec.get("AND", [])]
    if not (ors or nots or ands):
        return None

    def predicate(row: Any) -> bool:
        values = getter(row)
        if ors and not any(m(v) for m in ors for v in values):
            return False
        if ands and not all(any(m(v) for v in values) for m in ands):
            return False
        return not (nots and any(m(v) for m in nots for v in values))

    return predicate


def _bool_set(value: Any) -> set[bool]:
    values = value if isinstance(value, list) else [value]
    out: set[bool] = set()
    for item in values:
        text = str(item).strip().lower()
        if item is True or text in ("1", "true", "yes"):
            out.add(True)
        elif item is False or text in ("0", "false", "no", "exclude", ""):
            out.add(False)
    return out


def resolve_time(value: Any, now: int) -> int:
    """MISP's ``resolveTimeDelta``: epoch, ``Nd``/``Nh``/``Nm``/``Ns`` or a date string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        return int(float(text))
    multipliers = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    unit = text[-1:].lower()
    if unit in multipliers:
        amount = text[:-1]
        if re.fullmatch(r"\d+(\.\d+)?", amount):
            return int(now - float(amount) * multipliers[unit])
        return now + 1
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return now + 1
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def time_range(value: Any, now: int) -> tuple[int | None, int | None]:
    if isinstance(value, list):
        if len(value) != 2:
            raise FilterError(
                "Invalid date specification, must be string or array with two elements"
            )
        low, high = resolve_time(value[0], now), resolve_time(value[1], now)
        if low > high:
            low, high = high, low
        return (low if low != 0 else None), high
    resolved = resolve_time(value, now)
    return (resolved if resolved != 0 else None), None


def _in_range(bounds: tuple[int | None, int | None], value: int) -> bool:
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def parse_order(value: Any, scope: str) -> list[tuple[str, str, bool]] | None:
    """``[(model, field, descending)]`` or None when MISP would drop the ordering."""
    rules = (
        value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
    )
    if not rules:
        return None
    order = []
    for rule in rules:
        if not isinstance(rule, str):
            return None
        items = rule.strip().split(" ")
        descending = len(items) == 2 and items[1].lower() == "desc"
        path = items[0].split(".")
        if len(path) == 1:
            model, name = scope, path[0].lower()
        elif len(path) == 2:
            model, name = path[0], path[1].lower()
        else:
            return None
        if scope == "Attribute":
            if name not in ATTRIBUTE_ORDER_FIELDS.get(model, ()):
                return None
        elif model != "Event" or name not in EVENT_ORDER_FIELDS:
            return None
        order.append((model, name, descending))
    return order or None


@dataclass
class Query:
    """A compiled restSearch body (times resolved against the simulator clock)."""

    scope: str
    attribute_predicates: list[Callable[[Any], bool]] = field(default_factory=list)
    event_predicates: list[Callable[[Any], bool]] = field(default_factory=list)
    timestamp_range: tuple[int | None, int | None] = (None, None)
    deleted_predicate: Callable[[Any], bool] = lambda row: True  # noqa: E731
    to_ids: set[bool] | None = None
    #: Event scope: whether attribute-level filters select events (MISP's attribute subquery).
    attribute_filtered: bool = False
    order: list[tuple[str, str, bool]] | None = None
    limit: int = 0
    page: int = 1
    enforce_warninglist: bool = False
    include_decay_score: bool = False
    exclude_decayed: bool = False
    include_event_tags: bool = False
    decaying_model: set[str] | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""


def _deleted_predicate(value: Any) -> Callable[[Any], bool]:
    if not php_truthy(value):
        return lambda row: not row.attribute["deleted"]
    if value == "only":
        wanted = {True}
    else:
        wanted = _bool_set(value) or {False}

    def predicate(row: Any) -> bool:
        if row.attribute["deleted"] not in wanted:
            return False
        return row.obj is None or row.obj["deleted"] in wanted

    return predicate


def compile_query(
    body: dict[str, Any], scope: str, now: int, tag_exists: Callable[[str], bool]
) -> Query:
    """Compile a restSearch body; ``scope`` is ``"Attribute"`` or ``"Event"``."""
    if "request" in body and isinstance(body["request"], dict):
        body = body["request"]  # MISP accepts the filters wrapped in "request"
    query = Query(scope=scope)
    attr_p, event_p = query.attribute_predicates, query.event_predicates

    def add(target: list[Callable[[Any], bool]], predicate: Callable[[Any], bool] | None) -> None:
        if predicate is not None:
            target.append(predicate)

    for name in ("type", "category", "object_relation", "comment"):
        if php_truthy(body.get(name)):
            add(
                attr_p,
                _field_predicate(
                    convert_filters(body[name]), functools.partial(_attribute_field, name)
                ),
            )
    if php_truthy(body.get("value")):
        add(attr_p, _field_predicate(convert_filters(body["value"]), lambda row: row.values))
    if php_truthy(body.get("uuid")):
        spec = convert_filters(body["uuid"])
        if scope == "Attribute":
            add(
                attr_p,
                _field_predicate(spec, lambda row: [row.attribute["uuid"], row.event["uuid"]]),
            )
        else:
            add(event_p, _field_predicate(spec, lambda event: [event["uuid"]]))
    if php_truthy(body.get("eventid")) and body.get("eventid") != "all":
        add(
            event_p,
            _field_predicate(
                convert_filters(body["eventid"]), lambda event: [event["id"], event["uuid"]]
            ),
        )
    for key, tag_scope in (("tags", "all"), ("tag", "all"), ("event_tags", "event")):
        if php_truthy(body.get(key)):
            add(
                attr_p if scope == "Attribute" else event_p,
                _tag_predicate(convert_filters(body[key]), tag_scope, tag_exists, scope),
            )
            break
    if "to_ids" in body and body["to_ids"] is not None and body["to_ids"] != "":
        allowed = _bool_set(body["to_ids"])
        query.to_ids = allowed
        attr_p.append(lambda row: row.attribute["to_ids"] in allowed)
    if "published" in body and body["published"] is not None and body["published"] != "":
        allowed_published = _bool_set(body["published"])
        if allowed_published != {True, False}:
            event_p.append(lambda event: event["published"] in allowed_published)
    query.deleted_predicate = _deleted_predicate(body.get("deleted"))
    query.attribute_filtered = bool(attr_p) or php_truthy(body.get("deleted"))
    if scope == "Attribute":
        attr_p.append(query.deleted_predicate)
    elif php_truthy(body.get("deleted")):
        attr_p.append(query.deleted_predicate)

    timestamp_keys = (
        ("timestamp", "attribute_timestamp") if scope == "Attribute" else ("attribute_timestamp",)
    )
    lows: list[int] = []
    highs: list[int] = []
    for key in timestamp_keys:
        if php_truthy(body.get(key)):
            low, high = time_range(body[key], now)
            lows += [low] if low is not None else []
            highs += [high] if high is not None else []
    query.timestamp_range = (max(lows) if lows else None, min(highs) if highs else None)
    event_time_keys = {
        "event_timestamp": "timestamp",
        "publish_timestamp": "publish_timestamp",
        "last": "publish_timestamp",
    }
    if scope == "Event":
        event_time_keys["timestamp"] = "timestamp"
    for key, event_field in event_time_keys.items():
        if php_truthy(body.get(key)):
            bounds = time_range(body[key], now)
            event_p.append(functools.partial(_event_time_in, bounds, event_field))
    for key, op in (("from", ">="), ("to", "<=")):
        if php_truthy(body.get(key)):
            day = _as_date(body[key])
            event_p.append(functools.partial(_event_date_cmp, op, day))

    if scope == "Event" and query.timestamp_range != (None, None):
        attr_p.append(functools.partial(_row_time_in, query.timestamp_range))
        query.attribute_filtered = True
    query.order = parse_order(body.get("order"), scope) if body.get("order") else None
    query.limit = php_intval(body["limit"]) if "limit" in body and body["limit"] is not None else 0
    query.page = max(php_intval(body.get("page", 1) or 1), 1)
    query.enforce_warninglist = php_truthy(body.get("enforceWarninglist"))
    query.exclude_decayed = php_truthy(body.get("excludeDecayed"))
    query.include_decay_score = php_truthy(body.get("includeDecayScore")) or query.exclude_decayed
    query.include_event_tags = php_truthy(body.get("includeEventTags")) or query.include_decay_score
    if php_truthy(body.get("decayingModel")):
        ids = (
            body["decayingModel"]
            if isinstance(body["decayingModel"], list)
            else [body["decayingModel"]]
        )
        query.decaying_model = {str(i) for i in ids}
    raw_overrides = body.get("modelOverrides")
    overrides: dict[str, Any] = dict(raw_overrides) if isinstance(raw_overrides, dict) else {}
    if php_truthy(body.get("score")):
        overrides = {**overrides, "threshold": body["score"]}
    query.model_overrides = dict(overrides)
    # Everything that selects rows (not paging) identifies a cached result set.
    selecting = {k: v for k, v in body.items() if k not in ("page", "limit")}
    relative = any(isinstance(v, str) and v[-1:].lower() in "dhms" for v in _flatten(selecting))
    query.cache_key = repr(sorted((k, repr(v)) for k, v in selecting.items())) + (
        f"@{now}" if relative else ""
    )
    return query


def _attribute_field(name: str, row: Any) -> list[str]:
    return [row.attribute[name] or ""]


def _event_time_in(bounds: tuple[int | None, int | None], event_field: str, event: Any) -> bool:
    return _in_range(bounds, int(event[event_field]))


def _event_date_cmp(op: str, day: str, event: Any) -> bool:
    return bool(event["date"] >= day) if op == ">=" else bool(event["date"] <= day)


def _row_time_in(bounds: tuple[int | None, int | None], row: Any) -> bool:
    return _in_range(bounds, row.ts)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flatten(v)]
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _as_date(value: Any) -> str:
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value), UTC).date().isoformat()
    return str(value)[:10]


def _tag_predicate(
    spec: dict[str, list[Any]], tag_scope: str, tag_exists: Callable[[str], bool], scope: str
) -> Callable[[Any], bool]:
    def names(row: Any) -> list[str]:
        if scope == "Event":
            tags = list(row["Tag"]) + [t for a in _event_attributes(row) for t in a.get("Tag", ())]
            return [t["name"] for t in tags] + [t["id"] for t in tags]
        if tag_scope == "event":
            return row.event_tag_names
        return row.all_tag_names

    def direct(row: Any) -> list[str]:
        return names(row)

    ors = [str(t) for t in spec.get("OR", [])]
    ands = [str(t) for t in spec.get("AND", [])]
    nots = [str(t) for t in spec.get("NOT", [])]
    # A term naming no existing tag invalidates the whole lookup in MISP (tag id -1).
    if ors and not any(tag_exists(t) for t in ors):
        return lambda row: False
    if ands and not all(tag_exists(t) for t in ands):
        return lambda row: False
    predicate = _field_predicate(
        {k: v for k, v in (("OR", ors), ("AND", ands), ("NOT", nots)) if v}, direct
    )
    return predicate or (lambda row: True)


def _event_attributes(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list(event["Attribute"]) + [a for o in event["Object"] for a in o["Attribute"]]
