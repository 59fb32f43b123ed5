"""The transform's fast paths give the documents the plain paths give.

``attribute_document`` summarises a ``Tag`` list once and caches the summary
by the tag names; ``timeutil.iso`` formats with ``isoformat``. Each is
compared here with the straightforward code it replaced, on generated input.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misp_ti.ecs import documents
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
        m.setattr(documents, "_tag_summary", lambda tags: (documents._tags_key(tags), None))
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
