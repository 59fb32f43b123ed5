"""restSearch filters of the MISP simulator, over HTTP, against hand-made events."""

from __future__ import annotations

import httpx
import pytest

from helpers.simulator import DAY, KEY, NOW, T0, filter_events, search, u, uuids
from misp_ti.simulator import Dataset, MispSimulator
from misp_ti.testing.clock import ManualClock

LIVE = {"a1", "a2", "a3", "a4", "a5", "a6", "a7", "b2", "b3"}  # b1 is soft-deleted


@pytest.fixture(scope="module")
def client():
    clock = ManualClock(NOW)
    with MispSimulator(Dataset.from_events(filter_events()), api_key=KEY, clock=clock) as sim:
        with httpx.Client(base_url=sim.url, headers={"Authorization": KEY}, timeout=10) as http:
            yield http


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, LIVE),
        ({"type": "domain"}, {"a2", "b2"}),
        ({"type": ["domain", "md5"]}, {"a2", "a3", "b2"}),
        ({"type": "DOMAIN"}, {"a2", "b2"}),  # MySQL's case-insensitive collation
        ({"type": "!domain"}, LIVE - {"a2", "b2"}),
        ({"type": ["!domain", "!url"]}, LIVE - {"a2", "b2", "a5"}),
        ({"type": {"OR": ["ip-dst", "url"]}}, {"a1", "a5"}),
        ({"type": {"NOT": ["text", "filename"]}}, LIVE - {"b3", "a7"}),
        ({"type": "filename%"}, {"a4", "a7"}),
        ({"type": "domain&&!url"}, {"a2", "b2"}),
        ({"category": "Payload delivery"}, {"a3", "a4", "a6", "a7"}),
        ({"category": {"NOT": ["Payload delivery", "Other"]}}, {"a1", "a2", "a5", "b2"}),
        ({"value": "bad.evil.net"}, {"a2"}),
        ({"value": "%bad.net"}, {"b2"}),
        ({"value": "%evil%"}, {"a2", "a5"}),
        ({"value": "dropper.exe"}, {"a4"}),  # either half of a composite value
        ({"value": "ab" * 32}, {"a4"}),
        ({"value": "dropper.exe|" + "ab" * 32}, set()),  # the whole composite is not a half
        ({"value": {"NOT": ["%evil%"]}, "type": ["domain", "url"]}, {"b2"}),
        ({"uuid": u("a3")}, {"a3"}),
        ({"uuid": u("e2")}, {"b2", "b3"}),  # an event uuid selects its attributes
        ({"uuid": ["!" + u("a3")], "type": "md5"}, set()),
        ({"eventid": "2"}, {"b2", "b3"}),
        ({"eventid": u("e1"), "type": "domain"}, {"a2"}),
        ({"eventid": "!1"}, {"b2", "b3"}),
        ({"to_ids": 0}, {"a3", "a7", "b3"}),
        ({"to_ids": "1"}, LIVE - {"a3", "a7", "b3"}),
        ({"to_ids": True, "type": "md5"}, set()),
        ({"published": 1}, {"a1", "a2", "a3", "a4", "a5", "a6", "a7"}),
        ({"published": False}, {"b2", "b3"}),
        ({"published": [0, 1]}, LIVE),
        ({"deleted": 0}, LIVE),
        ({"deleted": 1}, {"b1"}),
        ({"deleted": "only"}, {"b1"}),
        ({"deleted": [0, 1]}, LIVE | {"b1"}),
        ({"tags": "tlp:amber"}, {"a5"}),
        ({"tags": "tlp:green"}, {"b2", "b3"}),  # event tags count
        ({"tags": "TLP:WHITE", "type": "ip-dst"}, {"a1"}),
        ({"tags": ["tlp:green", "tlp:amber"]}, {"a5", "b2", "b3"}),
        ({"tags": "!tlp:white"}, {"b2", "b3"}),  # NOT drops event-level tags too
        ({"tags": {"NOT": ["tlp:amber"]}, "eventid": "1"}, {"a1", "a2", "a3", "a4", "a6", "a7"}),
        ({"tags": {"AND": ["tlp:white", "tlp:amber"]}}, {"a5"}),
        ({"tags": {"AND": ["tlp:white", "tlp:red"]}}, set()),  # tlp:red exists nowhere
        ({"tags": "estimative-language:%"}, {"b2"}),
        ({"tags": "no-such-tag"}, set()),
        ({"tags": "tlp:%", "type": "text"}, {"b3"}),
        ({"tags": {"OR": ["tlp:green"], "NOT": ["estimative-language:%"]}}, {"b3"}),
    ],
)
def test_attribute_filters(client, body, expected):
    assert uuids(search(client, body)) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"timestamp": T0 - 5 * DAY}, {"a5", "a6", "a7", "b2", "b3"}),
        ({"timestamp": str(T0 - 5 * DAY)}, {"a5", "a6", "a7", "b2", "b3"}),
        ({"timestamp": "5d"}, {"a5", "a6", "a7", "b2", "b3"}),  # relative to the simulator clock
        ({"timestamp": "48h"}, {"b2", "b3"}),
        ({"timestamp": "1440m"}, {"b3"}),
        ({"attribute_timestamp": "2d"}, {"b2", "b3"}),
        ({"timestamp": [T0 - 8 * DAY, T0 - 6 * DAY]}, {"a2", "a3", "a4"}),
        ({"timestamp": [T0 - 6 * DAY, T0 - 8 * DAY]}, {"a2", "a3", "a4"}),  # swapped like MISP
        ({"timestamp": ["8d", "6d"]}, {"a2", "a3", "a4"}),
        ({"timestamp": [0, T0 - 8 * DAY]}, {"a1", "a2"}),
        ({"timestamp": "2025-12-30T00:00:00Z"}, {"b2", "b3"}),
        ({"timestamp": "garbage-d"}, set()),  # MISP: unparseable → now + 1
        ({"event_timestamp": "36h"}, {"a1", "a2", "a3", "a4", "a5", "a6", "a7"}),
        ({"timestamp": "3d", "deleted": [0, 1]}, {"b1", "b2", "b3"}),
    ],
)
def test_time_filters(client, body, expected):
    assert uuids(search(client, body)) == expected


def test_relative_time_follows_the_simulator_clock():
    clock = ManualClock(NOW)
    with MispSimulator(Dataset.from_events(filter_events()), clock=clock) as sim:
        with httpx.Client(base_url=sim.url, headers={"Authorization": KEY}) as http:
            assert uuids(search(http, {"timestamp": "2d"})) == {"b2", "b3"}
            clock.advance(DAY)
            assert uuids(search(http, {"timestamp": "2d"})) == {"b3"}


def test_events_restsearch_shape_and_filters(client):
    response = search(client, {"eventid": "1"}, "/events/restSearch")
    assert response.status_code == 200
    [item] = response.json()["response"]
    event = item["Event"]
    assert event["uuid"] == u("e1") and event["Orgc"]["name"] == "CIRCL"
    assert {t["name"] for t in event["Tag"]} == {"tlp:white", 'false-positive:risk="low"'}
    assert [a["uuid"] for a in event["Attribute"]] == [u(n) for n in ("a1", "a2", "a3", "a4", "a5")]
    [obj] = event["Object"]
    assert obj["uuid"] == u("o1") and {a["object_relation"] for a in obj["Attribute"]} == {
        "sha1",
        "filename",
    }
    assert all(a["object_id"] == obj["id"] for a in obj["Attribute"])
    # events whose attributes match an attribute-level filter
    by_type = search(client, {"type": "text"}, "/events/restSearch").json()["response"]
    assert [e["Event"]["uuid"] for e in by_type] == [u("e2")]
    # deleted attributes stay out of events unless asked for
    e2 = search(client, {"eventid": "2"}, "/events/restSearch").json()["response"][0]["Event"]
    assert {a["uuid"] for a in e2["Attribute"]} == {u("b2"), u("b3")}
    e2_all = search(client, {"eventid": "2", "deleted": [0, 1]}, "/events/restSearch").json()[
        "response"
    ][0]["Event"]
    assert {a["uuid"] for a in e2_all["Attribute"]} == {u("b1"), u("b2"), u("b3")}
    # timestamp means the event timestamp here
    recent = search(client, {"timestamp": "36h"}, "/events/restSearch").json()["response"]
    assert [e["Event"]["uuid"] for e in recent] == [u("e1")]


def test_events_paging_and_total_count(client):
    first = search(client, {"limit": 1, "page": 1, "order": "id"}, "/events/restSearch")
    second = search(client, {"limit": 1, "page": 2, "order": "Event.id DESC"}, "/events/restSearch")
    assert first.headers["X-Result-Count"] == "2" and second.headers["X-Result-Count"] == "2"
    assert first.json()["response"][0]["Event"]["uuid"] == u("e1")
    assert second.json()["response"][0]["Event"]["uuid"] == u("e1")
    past = search(client, {"limit": 1, "page": 3}, "/events/restSearch")
    assert past.json() == {"response": []}


def test_attribute_context_and_inherited_tags(client):
    records = search(client, {"uuid": [u("a5"), u("a6")], "order": "id"}).json()["response"][
        "Attribute"
    ]
    a5, a6 = records
    assert a5["Event"] == {
        "org_id": "1",
        "distribution": "3",
        "publish_timestamp": "1767139200",  # MISP 2.5.1 sends it (tests/data/real_misp_2.5.1)
        "id": "1",
        "info": "First event",
        "orgc_id": "1",
        "uuid": u("e1"),
    }
    assert "Object" not in a5 and a6["Object"]["id"] == a6["object_id"] != "0"
    assert [t["name"] for t in a5["Tag"]] == [
        "tlp:amber"
    ]  # without includeEventTags: own tags only
    assert "Tag" not in a6
    assert (
        isinstance(a5["to_ids"], bool)
        and isinstance(a5["timestamp"], str)
        and isinstance(a5["id"], str)
    )
    with_event = search(client, {"uuid": u("a5"), "includeEventTags": 1}).json()["response"][
        "Attribute"
    ][0]
    assert [(t["name"], t.get("inherited")) for t in with_event["Tag"]] == [
        ("tlp:amber", None),
        ("tlp:white", 1),
        ('false-positive:risk="low"', 1),
    ]
    # includeDecayScore implies includeEventTags in MISP
    decayed = search(client, {"uuid": u("a1"), "includeDecayScore": "true"}).json()["response"][
        "Attribute"
    ][0]
    assert {t["name"] for t in decayed["Tag"] if t.get("inherited") == 1} == {
        "tlp:white",
        'false-positive:risk="low"',
    }


def test_filters_wrapped_in_request_key(client):
    assert uuids(search(client, {"request": {"type": "md5"}})) == {"a3"}
