"""The transform's fast paths give the documents the plain paths give.

``attribute_document`` summarises a ``Tag`` list once and caches the summary
by the tag names, and works out the part of a document an ``Event`` or an
``Object`` gives once per distinct one; ``timeutil.iso`` formats with
``isoformat``. Each is compared here with the straightforward code it
replaced, on generated input.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misp_ti.ecs import documents
from misp_ti.ecs import tags as tag_module
from misp_ti.ecs.documents import transform
from misp_ti.ecs.options import Options
from misp_ti.timeutil import iso

NAMES = st.text(alphabet='ab"\\\x1f:tlp', max_size=8) | st.sampled_from(["tlp:red", "tlp:amber", 'x="y"', "a\x1fb", "a", "b"])
TAG = st.one_of(
    st.builds(lambda name: {"name": name, "colour": "#000"}, NAMES),
    st.just({"colour": "#fff"}),  # no name
    st.builds(lambda n: {"name": n}, st.integers() | st.none()),  # a name that is not a string
    st.just("tlp:red"),  # not an object
)
TAGS = st.none() | st.lists(TAG, max_size=5) | st.just("tlp:red") | st.just({"name": "a"})


def record(tags: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"uuid": "5e0b4cd8-1b2c-4e6c-9c55-000000000001", "type": "domain", "value": "evil.example",
                           "timestamp": "1617875568", "Event": {"timestamp": "1617875000", "info": "e"}}
    if tags is not None:
        rec["Tag"] = tags
    return rec


def plain(rec: dict[str, Any], opts: Options, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The document as before the summary: id part from ``_tags_key``, tags from ``_finish_tags``."""
    with monkeypatch.context() as m:
        m.setattr(documents, "_tag_summary", lambda tag_list: (tag_module._tags_key(tag_list), None))
        return transform(rec, opts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=TAGS, second=TAGS, preserve=st.booleans())
def test_tag_summary_gives_the_plain_document(first: Any, second: Any, preserve: bool) -> None:
    monkeypatch = pytest.MonkeyPatch()
    opts = Options("threat_attributes", preserve_original=preserve, ingested="2024-06-01T00:00:00.000Z")
    # the second record may hit the cache entry the first one made
    for tags in (first, second, first):
        rec = record(tags)
        assert transform(rec, opts) == plain(rec, opts, monkeypatch)


def test_names_joined_alike_are_different_tag_lists() -> None:
    # "a\x1fb" and ["a", "b"] join to the same id part; the cache must not mix their tags
    opts = Options("threat_attributes", ingested="2024-06-01T00:00:00.000Z")
    one = transform(record([{"name": "a\x1fb"}]), opts)
    two = transform(record([{"name": "a"}, {"name": "b"}]), opts)
    assert one["tags"] == ["a\x1fb"]
    assert two["tags"] == ["a", "b"]


def test_a_bad_tag_list_after_a_good_one_with_the_same_names_is_still_an_error() -> None:
    opts = Options("threat_attributes", ingested="2024-06-01T00:00:00.000Z")
    good = transform(record([{"name": "tlp:red"}]), opts)
    assert good["threat"]["indicator"]["marking"] == {"tlp": ["RED"]}

    class NotADict(dict):  # a mapping with the same name, which the plain path refuses
        pass

    bad = transform(record([NotADict(name="tlp:red")]), opts)
    assert bad["event"]["kind"] == "pipeline_error"
    assert "Tag: expected objects with a string name" in bad["error"]["message"]


def _strftime_iso(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    when=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    offset_minutes=st.none() | st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_iso_is_the_strftime_format(when: datetime, offset_minutes: int | None) -> None:
    zone = UTC if offset_minutes is None else timezone(timedelta(minutes=offset_minutes))
    value = when.replace(tzinfo=zone)
    assert iso(value) == _strftime_iso(value)


def test_iso_keeps_strftime_years_below_1000() -> None:
    # strftime writes year 5 as "5" on Linux; the fast path must not pad it
    value = datetime(5, 3, 4, 1, 2, 3, 456789, tzinfo=UTC)
    assert iso(value) == _strftime_iso(value)


# the event and object parts: values that compare equal across types ("1",
# 1, True, 1.0; 0.0 and -0.0), containers, None and bad values, so a cache
# keyed too loosely would hand one record the part of another
SCALARS = st.sampled_from(["1", 1, True, 1.0, "0", 0, False, 0.0, -0.0, None, "", "5", 5, "1617875000", 1617875000, "x"])
VALUES = SCALARS | st.lists(SCALARS, max_size=2) | st.dictionaries(st.sampled_from(["a", "b"]), SCALARS, max_size=2)
EVENT_KEYS = st.sampled_from(["distribution", "timestamp", "publish_timestamp", "analysis", "org_id", "event_creator_email", "info", "threat_level_id"])
OBJECT_KEYS = st.sampled_from(["distribution", "timestamp", "meta-category", "name", "comment", "Attribute"])
EVENTS = st.dictionaries(EVENT_KEYS, VALUES, max_size=4)
OBJECTS = st.none() | st.dictionaries(OBJECT_KEYS, VALUES, max_size=3)


def with_parts(event: dict[str, Any], obj: dict[str, Any] | None) -> dict[str, Any]:
    rec = record([{"name": "tlp:red"}])
    rec["Event"] = event
    if obj is not None:
        rec["Object"] = obj
    return rec


def unshared(rec: dict[str, Any], opts: Options, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The document with the event and object parts worked out for this record alone."""
    with monkeypatch.context() as m:
        m.setattr(documents, "_shared_event_part", documents._event_part)
        m.setattr(documents, "_shared_object", documents._object)
        return transform(rec, opts)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(st.tuples(EVENTS, OBJECTS), min_size=1, max_size=4))
def test_shared_event_and_object_parts_give_the_unshared_document(events: list[tuple[dict[str, Any], Any]]) -> None:
    monkeypatch = pytest.MonkeyPatch()
    opts = Options("threat_attributes", ingested="2024-06-01T00:00:00.000Z")
    for event, obj in [*events, *events]:  # the second round hits what the first one cached
        rec = with_parts(event, obj)
        got, expected = transform(rec, opts), unshared(rec, opts, monkeypatch)
        assert got == expected
        assert repr(got) == repr(expected)  # 1 == True == 1.0: the types must match too


def test_a_document_owns_its_event_and_object_parts() -> None:
    opts = Options("threat_attributes", ingested="2024-06-01T00:00:00.000Z")
    event = {"distribution": "3", "info": "shared", "timestamp": "1617875000"}
    obj = {"name": "file", "distribution": "5"}
    first = transform(with_parts(dict(event), dict(obj)), opts)
    first["misp"]["event"]["info"] = "changed by a plugin"
    first["misp"]["object"]["name"] = "changed too"
    second = transform(with_parts(dict(event), dict(obj)), opts)
    assert second["misp"]["event"] == {"distribution": 3, "info": "shared", "timestamp": "2021-04-08T09:43:20.000Z"}
    assert second["misp"]["object"] == {"name": "file", "distribution": 5}


def test_equal_values_of_other_types_are_other_events() -> None:
    opts = Options("threat_attributes", ingested="2024-06-01T00:00:00.000Z")
    as_text = transform(with_parts({"distribution": "1", "info": "1"}, None), opts)
    as_bool = transform(with_parts({"distribution": True, "info": True}, None), opts)
    assert as_text["misp"]["event"] == {"distribution": 1, "info": "1"}
    assert as_bool["event"]["kind"] == "pipeline_error"  # a boolean is not an integer
