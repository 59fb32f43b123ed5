"""misp-ti's fetch replayed against exchanges recorded from a real MISP 2.5.1.

``tests/data/real_misp_2.5.1/`` holds the recording (its README says what
each label is). Each poll runs through the real engine (default ``fetch``,
transform, expiry and the sqlite sink) with a
:class:`~misp_ti.testing.recorded.ReplayTransport` as the MISP client's
transport, at the ``now`` the recorded requests show (the end of their
timestamp window). The expected uuid sets are computed from the recorded
response bodies, so a request misp-ti asks differently, in a different
order, or one more or less time fails the test (``assert_all_served``).

The simulator's fidelity to the same recording is tested in
``test_real_misp_simulator.py``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from misp_ti.config import build_config
from misp_ti.default_plugins import misp_fetch
from misp_ti.default_plugins.misp_fetch import CLIENT
from misp_ti.engine import Engine
from misp_ti.misp.client import MispClient
from misp_ti.testing.recorded import Recording, RecordingError, ReplayTransport, UnmatchedRequest

RECORDING = Path(__file__).resolve().parents[1] / "data" / "real_misp_2.5.1" / "exchanges.ndjson.gz"
DATASETS = {"threat_attributes": "ti_misp.threat_attributes", "threat": "ti_misp.threat"}

#: label -> (stream, stream settings besides initial_interval, expiry settings); the README's table
POLLS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "backfill:attrs_p100": ("threat_attributes", {"page_size": 100}, {}),
    "backfill:events_p100": ("threat", {"page_size": 100}, {}),
    "backfill:attrs_p7_wl": ("threat_attributes", {"page_size": 7, "enforce_warninglist": True}, {}),
    "backfill:attrs_decay": (
        "threat_attributes",
        {"page_size": 100, "filters": {"excludeDecayed": True}},
        {"policy": "decay-model"},
    ),
}
#: Recorded by the paging before issue 15, which re-read every offset-mode
#: span; today's paging pages in offset runs checked by one anchor request
#: (``misp_fetch.OFFSET_RUNS``), requests this recording does not hold.
#: These labels replay with ``OFFSET_RUNS`` off: the keyset + re-scan path,
#: still what the reader does without offset runs, so the real MISP's
#: answers keep checking it (post-filtered pages included). Offset runs are
#: checked against the simulator and the SQL model (test_fetch_simulator.py,
#: test_fetch_paging.py).
WITHOUT_OFFSET_RUNS = {"backfill:attrs_p7_wl"}
#: incremental label -> the backfill label whose cursor it continues from
INCREMENTALS = {"incremental:attrs_p100": "backfill:attrs_p100", "incremental:events_p100": "backfill:events_p100"}


@pytest.fixture(scope="module")
def recording() -> Recording:
    return Recording.load(RECORDING)


def recorded_uuids(poll: Recording) -> set[str]:
    """Every attribute uuid the recorded 200 restSearch answers hold (object attributes included)."""
    uuids: set[str] = set()
    for exchange in poll:
        if exchange.status != 200 or not exchange.path.endswith("/restSearch"):
            continue
        response = exchange.json()["response"]
        if isinstance(response, dict):
            uuids.update(a["uuid"] for a in response["Attribute"])
            continue
        for item in response:
            event = item["Event"]
            uuids.update(a["uuid"] for a in event.get("Attribute", ()))
            uuids.update(a["uuid"] for o in event.get("Object", ()) for a in o.get("Attribute", ()))
    return uuids


def config_for(label: str, poll: Recording, store: Path) -> Any:
    stream, settings, expiry = POLLS[label]
    start, end = poll.window()
    streams: dict[str, Any] = {name: {"enabled": name == stream} for name in DATASETS}
    streams[stream].update(settings, initial_interval=f"{end - start}s")
    return build_config({
        "misp": {"url": "https://misp.recorded.invalid", "api_key": "replay-key-0123456789", "max_retries": 0},
        "streams": streams,
        "expiry": expiry,
        "output": {"sqlite": {"path": str(store)}},
        "plugins": {"entrypoints": False},
    })


def run_poll(engine: Engine, stream: str, transport: ReplayTransport, now: datetime) -> None:
    engine.clock = lambda: now
    engine.stash[CLIENT] = MispClient(engine.config.misp, transport=transport, sleep=lambda s: None)
    result = engine.run_cycle(stream)
    assert transport.unmatched == [], f"misp-ti asked what the recording does not hold: {transport.unmatched[:3]}"
    assert result.completed, result.as_dict()
    transport.assert_all_served()


def ingested_at(store: Path, stream: str, now: datetime) -> set[str]:
    with sqlite3.connect(store) as conn:
        rows = conn.execute(
            "SELECT uuid FROM source WHERE dataset = ? AND ingested = ?",
            (DATASETS[stream], int(now.timestamp() * 1000)),
        ).fetchall()
    return {uuid for (uuid,) in rows}


@pytest.mark.parametrize("label", sorted(POLLS))
def test_backfill_replay_delivers_exactly_the_recorded_attributes(
    label: str, recording: Recording, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if label in WITHOUT_OFFSET_RUNS:
        monkeypatch.setattr(misp_fetch, "OFFSET_RUNS", False)
    poll = recording.select(label)
    stream = POLLS[label][0]
    store = tmp_path / "store.db"
    with Engine(config_for(label, poll, store)) as engine:
        run_poll(engine, stream, poll.transport(), poll.now())
    expected = recorded_uuids(poll)
    assert len(expected) > 0
    assert ingested_at(store, stream, poll.now()) == expected


@pytest.mark.parametrize("label", sorted(INCREMENTALS))
def test_incremental_replay_continues_the_backfill_cursor(label: str, recording: Recording, tmp_path: Path) -> None:
    backfill, poll = recording.select(INCREMENTALS[label]), recording.select(label)
    stream = POLLS[INCREMENTALS[label]][0]
    store = tmp_path / "store.db"
    # the incremental poll must ask [backfill end - overlap, its own now]: the
    # recorded request holds exactly that window, so the cursor is checked too
    with Engine(config_for(INCREMENTALS[label], backfill, store)) as engine:
        run_poll(engine, stream, backfill.transport(), backfill.now())
        run_poll(engine, stream, poll.transport(), poll.now())
    expected = recorded_uuids(poll)
    assert expected
    assert ingested_at(store, stream, poll.now()) == expected


def test_replay_names_an_unrecorded_request(recording: Recording) -> None:
    transport = recording.select("backfill:events_p100").transport()
    with httpx.Client(transport=transport, base_url="https://misp.recorded.invalid") as client:
        with pytest.raises(UnmatchedRequest, match=r"POST /events/restSearch .*\"limit\":99"):
            client.post("/events/restSearch", json={"limit": 99})
        exchange = recording.select("backfill:events_p100").exchanges[0]
        answer = client.post(exchange.path, json=exchange.body)
        assert answer.status_code == exchange.status and answer.text == exchange.text
        with pytest.raises(UnmatchedRequest, match="no \\(more\\) answers"):
            client.post(exchange.path, json=exchange.body)  # asked once more than recorded
    assert len(transport.unmatched) == 2
    with pytest.raises(UnmatchedRequest, match="2 request"):
        transport.assert_all_served()


def test_replay_matches_bodies_as_json_and_reports_unserved(recording: Recording) -> None:
    exchange = recording.select("backfill:events_p100").exchanges[0]
    transport = recording.select("backfill:events_p100", "incremental:events_p100").transport()
    reordered = dict(reversed(list(exchange.body.items())))
    with httpx.Client(transport=transport, base_url="https://misp.recorded.invalid") as client:
        answer = client.post(exchange.path, content=json.dumps(reordered, indent=2))
    assert answer.status_code == 200 and answer.headers["x-result-count"] == exchange.header("X-Result-Count")
    assert answer.headers.get_list("set-cookie") == ["<scrubbed>"] * 3
    with pytest.raises(UnmatchedRequest, match="1 of 2 recorded exchange"):
        transport.assert_all_served()


def test_recording_window_and_bad_files(recording: Recording, tmp_path: Path) -> None:
    poll = recording.select("incremental:attrs_p100")
    start, end = poll.window()
    assert poll.now() == datetime.fromtimestamp(end, UTC) and start < end
    assert recording.select("backfill:attrs_p100", "incremental:attrs_p100").window()[1] == end
    with pytest.raises(RecordingError, match="no request of this recording has a"):
        Recording(e for e in recording.select("battery") if e.timestamp_window() is None).window()
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"label": "x", "request": {}}\n')
    with pytest.raises(RecordingError, match=r"broken.ndjson:1: not a recorded exchange"):
        Recording.load(broken)
    with pytest.raises(KeyError, match="no exchanges labelled"):
        recording.select("nosuch")
