"""Paging, ordering, post-filters with MISP's X-Result-Count, decay scores and mutations."""

from __future__ import annotations

import httpx
import pytest

from helpers.simulator import DAY, KEY, NOW, T0, attr, filter_events, search, u, uuids
from misp_ti.simulator import Dataset, MispSimulator, attribute_result_count
from misp_ti.testing.clock import ManualClock

# 12 ip-dst attributes, one per hour; positions 4-6 (page 2 at limit 3) and 2 are public resolvers.
RESOLVERS = {2: "8.8.8.8", 4: "1.1.1.1", 5: "9.9.9.9", 6: "8.8.4.4"}


def paging_events() -> list[dict]:
    attributes = [
        attr(
            f"c{i:02d}",
            "ip-dst",
            RESOLVERS.get(i, f"203.0.113.{i}"),
            0,
            timestamp=str(T0 - (13 - i) * 3600),
        )
        for i in range(1, 13)
    ]
    # Ids follow the list order; reverse it so that id order differs from timestamp order.
    return [
        {
            "Event": {
                "uuid": u("e9"),
                "info": "paging",
                "timestamp": str(T0),
                "Attribute": attributes[::-1],
            }
        }
    ]


@pytest.fixture
def sim():
    clock = ManualClock(NOW)
    with MispSimulator(Dataset.from_events(paging_events()), api_key=KEY, clock=clock) as simulator:
        yield simulator


@pytest.fixture
def http(sim):
    with httpx.Client(base_url=sim.url, headers={"Authorization": KEY}, timeout=10) as client:
        yield client


def page(http, number, **extra):
    body = {"limit": 3, "page": number, "order": "timestamp", **extra}
    response = search(http, body)
    assert response.status_code == 200
    return [r["value"] for r in response.json()["response"]["Attribute"]], int(
        response.headers["X-Result-Count"]
    )


def test_pages_in_timestamp_order_and_past_the_end(http):
    values = []
    for number in range(1, 5):
        got, count = page(http, number)
        assert len(got) == 3 and count == 4  # full page: limit + 1, as MISP (#9422)
        values += got
    assert values == [RESOLVERS.get(i, f"203.0.113.{i}") for i in range(1, 13)]
    assert page(http, 5) == ([], 1)  # past the end: empty list, header 1


def test_order_forms(http):
    def first_ids(order):
        response = search(http, {"order": order, "limit": 3})
        return [int(r["id"]) for r in response.json()["response"]["Attribute"]]

    assert first_ids("id") == [1, 2, 3]
    assert first_ids("Attribute.id DESC") == [12, 11, 10]
    assert first_ids("Attribute.timestamp ASC") == [12, 11, 10]  # ids were assigned newest-first
    assert first_ids("timestamp desc") == [1, 2, 3]
    assert first_ids(["Attribute.timestamp DESC", "Attribute.id ASC"]) == [1, 2, 3]
    assert first_ids("timestamp, id") == [12, 11, 10]
    assert first_ids("nonsense") == [
        1,
        2,
        3,
    ]  # MISP drops an invalid order: storage (id) order here


def test_limit_and_page_as_strings_like_the_reference_sends(http):
    response = search(http, {"limit": "5", "page": "2", "order": "id"})
    assert [r["id"] for r in response.json()["response"]["Attribute"]] == ["6", "7", "8", "9", "10"]


def test_warninglist_makes_short_and_empty_pages_while_data_follows(http):
    pages = [page(http, n, enforceWarninglist=True) for n in range(1, 6)]
    assert pages[0] == (
        ["203.0.113.1", "203.0.113.3"],
        3,
    )  # short page, SQL page was full → 3 (= limit)
    assert pages[1] == ([], 4)  # emptied by the warninglist: header rows + 1
    assert pages[2] == (["203.0.113.7", "203.0.113.8", "203.0.113.9"], 4)
    assert pages[3] == (["203.0.113.10", "203.0.113.11", "203.0.113.12"], 4)
    assert pages[4] == ([], 1)
    # The documented client rule, "more may follow while X-Result-Count >= limit", collects everything.
    collected, number = [], 1
    while True:
        got, count = page(http, number, enforceWarninglist=1)
        collected += got
        if count < 3:
            break
        number += 1
    assert collected == [f"203.0.113.{i}" for i in range(1, 13) if i not in RESOLVERS]


def test_skipped_elements_header(http):
    response = search(http, {"limit": 3, "page": 2, "order": "timestamp", "enforceWarninglist": 1})
    assert response.headers["X-Skipped-Elements-Count"] == "3"


def test_result_count_without_limit_counts_rows_before_post_filters(http):
    response = search(http, {"enforceWarninglist": 1})
    assert len(response.json()["response"]["Attribute"]) == 8
    assert response.headers["X-Result-Count"] == "12"


@pytest.mark.parametrize(
    ("limit", "rows", "kept", "expected"),
    [
        (0, 7, 5, 7),
        (3, 3, 3, 4),
        (3, 3, 2, 3),
        (3, 3, 0, 4),
        (3, 2, 2, 2),
        (3, 2, 0, 3),
        (3, 0, 0, 1),
    ],
)
def test_result_count_formula(limit, rows, kept, expected):
    assert attribute_result_count(limit, rows, kept) == expected


def test_exclude_decayed_is_a_post_filter(sim, http):
    # 70 days old at query time: NIDS 80 * (1 - sqrt(70/120)) = 18.9 < 30 and phishing 0 → every model decayed: dropped.
    old = sim.add_attribute(type="domain", value="old.bad.net")
    sim.clock.advance(60 * DAY)
    # 10 days old: decayed for the phishing model (3-day lifetime), alive for NIDS (56.9): kept.
    young = sim.add_attribute(type="ip-dst", value="192.0.2.1")
    sim.clock.advance(10 * DAY)
    # sha256 has no model: no decay_score, never dropped (MISP only drops when every score decayed).
    untyped = sim.add_attribute(type="sha256", value="cd" * 32)
    body = {
        "uuid": [young["uuid"], old["uuid"], untyped["uuid"]],
        "excludeDecayed": 1,
        "order": "id",
        "limit": 3,
    }
    response = search(http, body)
    kept = response.json()["response"]["Attribute"]
    assert [a["uuid"] for a in kept] == [young["uuid"], untyped["uuid"]]
    # MISP lists the scores in model id order (Phishing 2, NIDS 3 on a MISP 2.5.1)
    assert [(s["DecayingModel"]["name"], s["decayed"]) for s in kept[0]["decay_score"]] == [
        ("Phishing model", True),
        ("NIDS Simple Decaying Model", False),
    ]
    assert response.headers["X-Result-Count"] == "3"  # short page of a full SQL page
    # no model for the type: no decay_score key at all (MISP 2.5.1), not []
    assert "decay_score" not in kept[1]


def test_decay_scores_match_hand_computed_values():
    clock = ManualClock(NOW)
    with MispSimulator(Dataset.from_events(filter_events()), clock=clock) as sim:
        with httpx.Client(base_url=sim.url, headers={"Authorization": KEY}) as http:
            a = sim.add_attribute(
                event_uuid=u("e1"),
                type="ip-dst",
                value="192.0.2.55",
                tags=['estimative-language:likelihood-probability="likely"'],
            )
            clock.advance(DAY)
            scores = {
                s["DecayingModel"]["name"]: s
                for s in search(http, {"uuid": a["uuid"], "includeDecayScore": 1}).json()[
                    "response"
                ]["Attribute"][0]["decay_score"]
            }
            # Event tag false-positive:risk="low" (75) and attribute tag likely (55):
            # NIDS weights both 0.1667 → base 65; phishing only knows likelihood → base 55.
            assert scores["NIDS Simple Decaying Model"]["base_score"] == pytest.approx(65)
            assert scores["Phishing model"]["base_score"] == pytest.approx(55)
            # phishing after 1 day: 55 * (1 - (1/3) ** (1/2.3)) = 20.887 < 30 → decayed
            assert scores["Phishing model"]["score"] == pytest.approx(20.887, abs=1e-3)
            assert scores["Phishing model"]["decayed"] is True
            assert scores["Phishing model"]["DecayingModel"]["id"] == "2"
            clock.advance(9 * DAY)
            def nids_score() -> dict:
                return next(s for s in sim.decay_score(a["uuid"]) if s["DecayingModel"]["name"] == "NIDS Simple Decaying Model")

            nids = nids_score()
            # NIDS after 10 days: 65 * (1 - sqrt(10/120)) = 46.236
            assert nids["score"] == pytest.approx(46.236, abs=1e-3) and nids["decayed"] is False
            # A sighting 5 days ago restarts the clock: 65 * (1 - sqrt(5/120)) = 51.732
            sim.add_sighting(a["uuid"], T0 + 5 * DAY)
            assert nids_score()["score"] == pytest.approx(51.732, abs=1e-3)
            # An attribute tag overrides the event tag of the same taxonomy: risk high (25) with likely (55) → 40
            sim.modify_attribute(
                a["uuid"],
                tags=[
                    'estimative-language:likelihood-probability="likely"',
                    'false-positive:risk="high"',
                ],
            )
            assert nids_score()["base_score"] == pytest.approx(40)
            # No taxonomy tag at all: the model's default base score
            plain = sim.add_attribute(event_uuid=u("e2"), type="domain", value="x.bad.net")
            assert [s["base_score"] for s in sim.decay_score(plain)] == [80, 80]
            models = http.get("/decayingModel/index").json()
            # numbered as a MISP 2.5.1 numbered them (tests/data/real_misp_2.5.1)
            assert [(m["DecayingModel"]["id"], m["DecayingModel"]["name"]) for m in models] == [
                ("1", "Vishing model"),
                ("2", "Phishing model"),
                ("3", "NIDS Simple Decaying Model"),
            ]
            assert models[2]["DecayingModel"]["parameters"]["lifetime"] == 120


def test_model_overrides_and_custom_models():
    custom = [
        {
            "name": "Short",
            "parameters": {
                "lifetime": 1,
                "decay_speed": 1,
                "threshold": 50,
                "default_base_score": 100,
            },
            "attribute_types": ["md5"],
        }
    ]
    clock = ManualClock(NOW)
    with MispSimulator(Dataset.from_events(filter_events()), clock=clock, models=custom) as sim:
        with httpx.Client(base_url=sim.url, headers={"Authorization": KEY}) as http:
            a = sim.add_attribute(type="md5", value="00" * 16)
            clock.advance(DAY // 4)
            [score] = search(http, {"uuid": a["uuid"], "includeDecayScore": 1}).json()["response"][
                "Attribute"
            ][0]["decay_score"]
            assert score["score"] == pytest.approx(75) and score["decayed"] is False
            [over] = search(
                http,
                {"uuid": a["uuid"], "includeDecayScore": 1, "modelOverrides": {"threshold": 80}},
            ).json()["response"]["Attribute"][0]["decay_score"]
            assert over["decayed"] is True
            assert http.get("/decayingModel/index").json()[0]["DecayingModel"]["name"] == "Short"


def test_mutations_bump_timestamps_and_show_up_in_incremental_polls():
    clock = ManualClock(NOW)
    with MispSimulator(Dataset.from_events(filter_events()), clock=clock, seed=3) as sim:
        with httpx.Client(base_url=sim.url, headers={"Authorization": KEY}) as http:
            clock.advance(3600)
            added = sim.add_attribute(event_uuid=u("e1"), type="domain", value="new.bad.net")
            assert added["timestamp"] == str(T0 + 3600) and added["Event"]["uuid"] == u("e1")
            window = {"timestamp": [T0 + 1, T0 + 3600], "deleted": [0, 1]}
            assert uuids(search(http, window)) == {added["uuid"].rsplit("-", 1)[1].lstrip("0")}
            clock.advance(60)
            modified = sim.modify_attribute(u("a3"), to_ids=True, comment="now actionable")
            assert modified["timestamp"] == str(T0 + 3660) and modified["to_ids"] is True
            clock.advance(60)
            deleted = sim.delete_attribute(u("a1"))
            assert deleted["deleted"] is True and deleted["timestamp"] == str(T0 + 3720)
            # An incremental poll sees the edit and the soft delete, with deleted: [0, 1] only.
            poll = {"timestamp": [T0 + 3601, T0 + 3720], "deleted": [0, 1], "order": "timestamp"}
            assert uuids(search(http, poll)) == {"a3", "a1"}
            assert uuids(search(http, {k: v for k, v in poll.items() if k != "deleted"})) == {"a3"}
            # MISP's touch(): the event timestamp moves and the event is unpublished.
            event = search(http, {"eventid": u("e1")}, "/events/restSearch").json()["response"][0][
                "Event"
            ]
            assert event["timestamp"] == str(T0 + 3720) and event["published"] is False
            # A sighting does not move the attribute timestamp.
            clock.advance(60)
            sim.add_sighting(u("a2"))
            assert sim.attribute(u("a2"))["timestamp"] == str(T0 - 8 * DAY)
            fresh = sim.add_attribute(type="url", value="http://fresh.bad.net/")
            assert fresh["Event"]["uuid"] not in (u("e1"), u("e2"))
            with pytest.raises(KeyError):
                sim.modify_attribute(u("zz"), comment="x")
            with pytest.raises(ValueError, match="unknown"):
                sim.modify_attribute(u("a2"), colour="red")


def test_insert_while_paging_is_visible_to_later_pages(sim, http):
    seen = []

    @sim.on_request
    def insert_during_poll(info):
        seen.append((info.number, info.body.get("page")))
        if info.number == 2:
            sim.add_attribute(type="ip-dst", value="192.0.2.200")

    got1, _ = page(http, 1, timestamp=[0, T0 + 10])
    got2, _ = page(http, 2, timestamp=[0, T0 + 10])
    assert seen == [(1, 1), (2, 2)]
    rest = (
        page(http, 3, timestamp=[0, T0 + 10])[0]
        + page(http, 4, timestamp=[0, T0 + 10])[0]
        + page(http, 5, timestamp=[0, T0 + 10])[0]
    )
    assert "192.0.2.200" in rest  # newest timestamp: sorted last, inside the fixed window
    assert len(got1 + got2 + rest) == 13


@pytest.mark.parametrize("body", [
    {"timestamp": [0, 2_000_000_000]},
    {"type": ["ip-dst", "domain", "md5"], "to_ids": 1},
    {"tags": ["tlp:white"], "deleted": [0, 1]},
    {"type": {"NOT": ["sha256", "md5"]}},
])
def test_timestamp_ordered_pages_match_the_general_search(body: dict) -> None:
    # the simulator's fast path for timestamp-ordered pages (what the fetch
    # plugin asks) must answer exactly what the general search answers
    sim = MispSimulator(Dataset.sample(), api_key=KEY, clock=ManualClock(start=NOW))
    with sim, httpx.Client(base_url=sim.url, headers={"Authorization": KEY}, timeout=30) as http:
        for page in (1, 2, 3):
            fast = search(http, {**body, "order": "Attribute.timestamp asc, Attribute.id asc", "limit": 97, "page": page})
            general = search(http, {**body, "order": "Attribute.timestamp asc, Attribute.value asc", "limit": 10_000})
            expected = [a["uuid"] for a in sorted(general.json()["response"]["Attribute"],
                                                  key=lambda a: (int(a["timestamp"]), int(a["id"])))]
            got = [a["uuid"] for a in fast.json()["response"]["Attribute"]]
            assert got == expected[97 * (page - 1): 97 * page]
            assert got  # the pages are not empty: the comparison means something
