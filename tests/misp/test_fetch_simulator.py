"""The default fetch plugin against the MISP simulator, through the real engine.

Real components only: the simulator (MISP's paging, post-filters, result
counts, faults), the httpx client, the ECS transform, the expiry plugins and
the embedded store. "Expected" is always computed from the simulator's own
state after the fact: every attribute of the window, at its newest
timestamp, exactly once in the latest view.
"""

from __future__ import annotations

import math
import sqlite3
import uuid as uuidlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.sample import T0
from misp_ti.config import MispSettings, build_config
from misp_ti.engine import Engine
from misp_ti.errors import FetchError
from misp_ti.misp.paging import CLOCK_SKEW, RESCAN_LIMIT
from misp_ti.simulator import FAULT_KINDS, Dataset, MispSimulator, RequestInfo
from misp_ti.sinks.sqlite import decode_doc
from misp_ti.testing.clock import ManualClock
from misp_ti.testing.fixtures import STORE_FILE, make_client_config

KEY = "sim-fetch-key-0123456789abcdef"
PAGE = 20  # the sample's busiest second holds 67 attributes: offset mode is exercised


def config(sim: MispSimulator, tmp_path: Path, *, misp: dict[str, Any] | None = None, **stream: Any) -> Any:
    return make_client_config(sim.url, KEY, tmp_path, {
        "misp": {"page_size": PAGE, "request_timeout": "2s", "max_retries": 3, "backoff_initial": "0.001s",
                 "backoff_max": "1.5s", **(misp or {})},
        "streams": {"threat_attributes": {"initial_interval": "5000d", **stream}},
    })


def latest_view(tmp_path: Path, dataset: str = "ti_misp.threat_attributes") -> dict[str, int]:
    """uuid -> attribute timestamp (s) of every latest row of ``dataset``."""
    with sqlite3.connect(tmp_path / STORE_FILE) as conn:
        rows = conn.execute("SELECT uuid, attr_ts FROM latest WHERE dataset = ?", (dataset,)).fetchall()
    return {uuid: ts // 1000 for uuid, ts in rows}


def misp_state(sim: MispSimulator, uuids: set[str]) -> dict[str, int]:
    return {u: int(sim.attribute(u)["timestamp"]) for u in uuids}


def is_probe(body: dict[str, Any]) -> bool:
    """The one-row change probe that ends an offset run (``misp_fetch.change_probe``)."""
    return "event_timestamp" in body and body.get("limit") == 1


def attribute_requests(sim: MispSimulator) -> list[dict[str, Any]]:
    """The page requests (change probes left out)."""
    return [r.body for r in sim.requests if r.path.endswith("/attributes/restSearch") and not is_probe(r.body)]


def test_backfill_over_many_pages_then_incremental_polls(tmp_path: Path, dataset: Dataset) -> None:
    clock = ManualClock(start=T0)
    uuids = {a["uuid"] for a in dataset.attributes()}
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim, Engine(config(sim, tmp_path), clock=clock) as engine:
        [first] = engine.run_once()
        assert first.completed and first.records == len(uuids) == 1708
        assert latest_view(tmp_path) == misp_state(sim, uuids)
        assert engine.state.get_cursor("threat_attributes") == {"last_timestamp": int(T0.timestamp())}
        bodies = attribute_requests(sim)
        assert len(bodies) > 1708 // PAGE
        end = int(T0.timestamp())
        for body in bodies:
            assert body["returnFormat"] == "json" and body["includeDecayScore"] is True
            assert body["order"] == "Attribute.timestamp asc, Attribute.id asc"
            assert body["deleted"] == [0, 1] and body["limit"] in (PAGE, RESCAN_LIMIT) and body["page"] >= 1
            assert body["timestamp"][0] <= body["timestamp"][1] <= end  # re-scans end earlier
        assert bodies[0]["timestamp"] == [end - 5000 * 86400, end]
        # misp.paging = "exact": the sample's crowded seconds need offset runs at
        # this page size, each re-read in wide pages, and no change probe is sent
        rescans = [b for b in bodies if b["limit"] == RESCAN_LIMIT]
        assert rescans
        assert not any(is_probe(r.body) for r in sim.requests)

        # incremental: a new attribute and an edit, ten minutes later
        clock.advance(timedelta(minutes=10))
        added = sim.add_attribute(type="domain", value="new.bad.example.net")
        edited = sorted(uuids)[5]
        sim.modify_attribute(edited, comment="edited")
        sim.requests.clear()
        [second] = engine.run_once()
        assert second.completed and second.records == 2
        window = attribute_requests(sim)[0]["timestamp"]
        assert window == [end - 2, end + 600]  # [cursor - overlap, now]
        assert latest_view(tmp_path) == misp_state(sim, uuids | {added["uuid"]})


def test_fast_paging_verifies_offset_runs_with_a_one_row_change_probe(tmp_path: Path, dataset: Dataset) -> None:
    clock = ManualClock(start=T0)
    uuids = {a["uuid"] for a in dataset.attributes()}
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim:
        with Engine(config(sim, tmp_path, misp={"paging": "fast"}), clock=clock) as engine:
            [result] = engine.run_once()
        assert result.completed and latest_view(tmp_path) == misp_state(sim, uuids)
        end = int(T0.timestamp())
        probes = [r.body for r in sim.requests if is_probe(r.body)]
        assert probes  # the sample's crowded seconds need offset runs at this page size
        assert all(p == {"returnFormat": "json", "event_timestamp": [end - CLOCK_SKEW, p["event_timestamp"][1]],
                         "deleted": [0, 1], "limit": 1, "page": 1} for p in probes)
        assert all(b["limit"] == PAGE for b in attribute_requests(sim))  # nothing changed: no re-scan


@pytest.mark.parametrize("paging", ["exact", "fast"])
@pytest.mark.parametrize("page_size", [7, 100, 1000])
def test_backfill_requests_stay_near_the_minimum(tmp_path: Path, dataset: Dataset, page_size: int, paging: str) -> None:
    """Issue 15's target: at most 1.15 x (ceil(N / L) + 1) restSearch requests, probes and re-scans included."""
    clock = ManualClock(start=T0)
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim:
        with Engine(config(sim, tmp_path, misp={"page_size": page_size, "paging": paging}), clock=clock) as engine:
            [result] = engine.run_once()
        sent = sum(1 for r in sim.requests if r.path.endswith("/attributes/restSearch"))
        assert result.completed and result.records == 1708
        assert latest_view(tmp_path) == misp_state(sim, {a["uuid"] for a in dataset.attributes()})
    assert sent <= 1.15 * (math.ceil(1708 / page_size) + 1)


def test_threat_stream_splits_events_per_attribute_and_object_attribute(tmp_path: Path, dataset: Dataset) -> None:
    clock = ManualClock(start=T0)
    # the window is on the *event* timestamp; shifting the data never puts an
    # event after the clock (as in MISP), so every event is in the window
    in_window = [e for e in dataset.events() if int(e["timestamp"]) <= T0.timestamp()]
    expected = {a["uuid"] for a in Dataset.from_events(in_window).attributes()}
    assert len(expected) == len(dataset)
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim:
        cfg = config(sim, tmp_path, enabled=False)
        cfg = build_config({**cfg.model_dump(mode="python"), "streams": {
            "threat_attributes": {"enabled": False},
            "threat": {"enabled": True, "initial_interval": "5000d", "page_size": 3},
        }} | {"misp": {**cfg.model_dump(mode="python")["misp"], "api_key": KEY}})
        with Engine(cfg, clock=clock) as engine:
            [result] = engine.run_once()
        bodies = [r.body for r in sim.requests]
    assert result.completed and result.records == len(expected)
    assert all(r.path.endswith("/events/restSearch") for r in sim.requests)
    assert bodies[0]["order"] == "Event.timestamp asc, Event.id asc"
    assert set(latest_view(tmp_path, "ti_misp.threat")) == expected


def warninglisted_dataset(n: int = 200) -> Dataset:
    """Attributes one second apart; 8.8.8.8 (on the simulator's warninglist) from #40 to #119."""
    base = int((T0 - timedelta(days=1)).timestamp())
    attributes = [
        {"uuid": str(uuidlib.UUID(int=i + 1)), "type": "ip-dst", "category": "Network activity", "to_ids": True,
         "value": "8.8.8.8" if 40 <= i < 120 else f"198.51.100.{i % 250}", "timestamp": str(base + i)}
        for i in range(n)
    ]
    event = {"uuid": str(uuidlib.UUID(int=10**6)), "info": "post-filter", "timestamp": str(base + n),
             "published": True, "Attribute": attributes}
    return Dataset.from_events([event])


def test_post_filtered_short_and_empty_pages_are_not_the_end(tmp_path: Path) -> None:
    dataset = warninglisted_dataset()
    clock = ManualClock(start=T0)
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim:
        with Engine(config(sim, tmp_path, enforce_warninglist=True), clock=clock) as engine:
            [result] = engine.run_once()
        answers = [(r.body["page"], r.status) for r in sim.requests]
    kept = {a["uuid"] for a in dataset.attributes() if a["value"] != "8.8.8.8"}
    assert result.completed
    assert set(latest_view(tmp_path)) == kept  # 120 kept, including the 80 after four emptied pages
    assert all(status == 200 for _, status in answers)
    assert all(body["enforceWarninglist"] is True for body in attribute_requests(sim))


@pytest.mark.parametrize("inside_window", [True, False], ids=["edits-inside-window", "edits-after-window-end"])
def test_writes_during_paging_are_neither_lost_nor_duplicated(tmp_path: Path, dataset: Dataset, inside_window: bool) -> None:
    clock = ManualClock(start=T0)
    uuids = sorted(a["uuid"] for a in dataset.attributes())
    added: list[str] = []

    def write_while_paging(info: RequestInfo) -> None:
        # from the 4th request on, every 5th request: MISP is written to between two pages
        if info.number < 4 or info.number % 5:
            return
        if not inside_window:
            clock.advance(timedelta(seconds=1))
        step = info.number
        added.append(sim.add_attribute(type="domain", value=f"during-{step}.example.net")["uuid"])
        sim.modify_attribute(uuids[step % 97], comment=f"early row edited at {step}")  # likely read already
        sim.modify_attribute(uuids[-1 - step % 89], comment=f"late row edited at {step}")  # likely not yet
        sim.delete_attribute(uuids[200 + step])

    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim, Engine(config(sim, tmp_path), clock=clock) as engine:
        sim.on_request(write_while_paging)
        engine.run_once()
        sim._callbacks.clear()
        clock.advance(timedelta(minutes=10))
        [second] = engine.run_once()  # picks up what moved past the first window's end
        assert second.completed and added
        every = set(uuids) | set(added)
        assert latest_view(tmp_path) == misp_state(sim, every)
        with sqlite3.connect(tmp_path / STORE_FILE) as conn:
            deleted = sum(
                decode_doc(doc)["misp"]["attribute"].get("deleted") is True
                for (doc,) in conn.execute("SELECT doc FROM latest")
            )
        assert deleted == sum(1 for u in every if sim.attribute(u)["deleted"])


def test_soft_deletes_reach_the_store(tmp_path: Path, dataset: Dataset) -> None:
    clock = ManualClock(start=T0)
    victim = sorted(a["uuid"] for a in dataset.attributes())[42]
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim, Engine(config(sim, tmp_path), clock=clock) as engine:
        engine.run_once()
        clock.advance(timedelta(minutes=10))
        sim.delete_attribute(victim)
        [result] = engine.run_once()
    assert result.records == 1
    with sqlite3.connect(tmp_path / STORE_FILE) as conn:
        body, decayed = conn.execute("SELECT doc, decayed FROM latest WHERE uuid = ?", (victim,)).fetchone()
    assert decode_doc(body)["misp"]["attribute"]["deleted"] is True and decayed == 1  # expiry.expire_deleted: gone from the active view


def test_rescan_page_size_bounds_the_re_reads_and_a_failed_wide_re_read_names_it(tmp_path: Path, dataset: Dataset) -> None:
    """``misp.rescan_page_size`` is the widest request exact paging sends (a MISP
    that times out above ``page_size`` is not asked more), and a wide re-read
    that fails says which setting to lower."""
    clock = ManualClock(start=T0)
    uuids = {a["uuid"] for a in dataset.attributes()}
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim:
        with Engine(config(sim, tmp_path / "narrow", misp={"rescan_page_size": PAGE}), clock=clock) as engine:
            [result] = engine.run_once()
        assert result.completed and latest_view(tmp_path / "narrow") == misp_state(sim, uuids)
        assert {b["limit"] for b in attribute_requests(sim)} == {PAGE}

    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim:
        with Engine(config(sim, tmp_path / "wide"), clock=clock) as engine:
            engine.run_once()
        searches = [r.body for r in sim.requests if r.path.endswith("/attributes/restSearch")]
        first_wide = next(i for i, body in enumerate(searches, 1) if body["limit"] == RESCAN_LIMIT)
    with MispSimulator(dataset, api_key=KEY, clock=clock, faults=f"503@{first_wide}") as sim:
        with Engine(config(sim, tmp_path / "failing", misp={"max_retries": 0}), clock=clock) as engine:
            with pytest.raises(FetchError, match=r"at 1000 attributes a request: lower misp.rescan_page_size"):
                engine.run_once()
            assert engine.state.get_cursor("threat_attributes") is None
    assert MispSettings().rescan_page_size == RESCAN_LIMIT  # the documented default


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_fault_without_retries_fails_the_poll_before_the_cursor_passes_it(tmp_path: Path, dataset: Dataset, kind: str) -> None:
    """Each fault kind with no retry budget: the cycle stops at the faulty page,
    the saved checkpoint is from a delivered page only, and the next run
    finishes the same window with nothing lost and nothing doubled."""
    clock = ManualClock(start=T0)
    uuids = {a["uuid"] for a in dataset.attributes()}
    # a short client timeout only where the fault is a timeout (the simulator
    # then holds the answer well past it); elsewhere a generous one, so a
    # busy machine's slow answer is never mistaken for the fault
    timeout = "2s" if kind == "timeout" else "60s"
    sim = MispSimulator(dataset, api_key=KEY, clock=clock, faults=f"{kind}@12", timeout_delay=8.0, retry_after=1)
    with sim, Engine(config(sim, tmp_path, misp={"max_retries": 0, "request_timeout": timeout}), clock=clock) as engine:
        with pytest.raises(FetchError) as info:
            engine.run_once()
        assert KEY not in str(info.value)
        pending = engine.state.in_progress("threat_attributes")
        assert pending is not None and engine.state.get_cursor("threat_attributes") is None
        checkpoint = pending.checkpoint
        assert checkpoint is not None and checkpoint["window_end"] == int(T0.timestamp())
        delivered = latest_view(tmp_path)
        # the checkpoint only vouches for rows that are really in the store
        assert {u for u, ts in misp_state(sim, uuids).items() if ts < checkpoint["resume_from"]} <= set(delivered)
        [resumed] = engine.run_once()
        assert resumed.resumed and resumed.completed
        assert latest_view(tmp_path) == misp_state(sim, uuids)
        assert engine.state.get_cursor("threat_attributes") == {"last_timestamp": int(T0.timestamp())}


def test_bad_key_and_bad_url(tmp_path: Path, dataset: Dataset) -> None:
    clock = ManualClock(start=T0)
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim:
        wrong = "wrong-key-that-must-not-leak-123456"
        with Engine(config(sim, tmp_path / "a", misp={"api_key": wrong}), clock=clock) as engine:
            with pytest.raises(FetchError, match="MISP rejected the API key") as info:
                engine.run_once()
            assert wrong not in str(info.value) and engine.state.get_cursor("threat_attributes") is None
        with Engine(config(sim, tmp_path / "b", misp={"url": sim.url + "/misp"}), clock=clock) as engine:
            with pytest.raises(FetchError, match="404.*check misp.url"):
                engine.run_once()
        assert len(sim.requests) == 2  # neither is retried
