"""Recorded simulator traffic (``cassettes/fetch/*.yaml``) replayed without the simulator.

By default these tests replay only (vcrpy ``record_mode="none"``, via the
kit's ``misp_vcr`` fixture): the engine talks to an address where nothing
listens and every request must match a recorded one on method, path and
JSON body. ``pytest tests/misp/test_fetch_cassettes.py --misp-record`` re-records
them from the simulator. ``Authorization`` is never written.

The data is fixed (the sample events shifted to a fixed date, a fixed
clock), so request bodies, including the time window, are the same at
replay as at recording.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from misp_ti.config import build_config
from misp_ti.engine import Engine
from misp_ti.simulator import Dataset, MispSimulator
from misp_ti.testing.clock import ManualClock
from misp_ti.testing.recording import REPLAY_API_KEY, REPLAY_URL

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes" / "fetch"
NOW = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
RECORD_KEY = "recording-key-0123456789abcdef"


def small_dataset() -> Dataset:
    # the eight smallest sample events (33 attributes): cassettes stay small
    events = sorted(Dataset.sample().events(), key=lambda e: (len(Dataset.from_events([e])), e["uuid"]))[:8]
    dataset = Dataset.from_events(events)
    # some sample events are dated after their newest attribute: keep every
    # event timestamp inside the window too (the threat stream's window is on it)
    ahead = max(int(e["timestamp"]) for e in dataset.events()) - dataset.newest_timestamp()
    return dataset.shift_to(newest=NOW - timedelta(hours=2, seconds=max(0, ahead)))


def run(tmp_path: Path, misp_vcr: Any, request: pytest.FixtureRequest, name: str, streams: dict[str, Any]) -> dict[str, set[str]]:
    recording = bool(request.config.getoption("misp_record"))
    dataset = small_dataset()
    sim = MispSimulator(dataset, api_key=RECORD_KEY, clock=ManualClock(start=NOW)) if recording else None
    if sim is not None:
        sim.start()
    try:
        url, key = (sim.url, RECORD_KEY) if sim is not None else (REPLAY_URL, REPLAY_API_KEY)
        config = build_config({
            "misp": {"url": url, "api_key": key, "page_size": 10, "max_retries": 0},
            "streams": streams,
            "output": {"sqlite": {"path": str(tmp_path / "store.db")}},
            "plugins": {"entrypoints": False},
        })
        CASSETTES.mkdir(parents=True, exist_ok=True)
        with misp_vcr.use_cassette(str(CASSETTES / f"{name}.yaml")) as cassette, Engine(config, clock=lambda: NOW) as engine:
            results = engine.run_once()
            assert all(r.completed for r in results)
            if not recording:
                assert cassette.play_count == len(cassette) and len(cassette) > 1  # every answer replayed
    finally:
        if sim is not None:
            sim.stop()
    with sqlite3.connect(tmp_path / "store.db") as conn:
        rows = conn.execute("SELECT dataset, uuid FROM latest").fetchall()
    out: dict[str, set[str]] = {}
    for dataset_name, uuid in rows:
        out.setdefault(dataset_name, set()).add(uuid)
    return out


def test_attribute_backfill_replays(tmp_path: Path, misp_vcr: Any, request: pytest.FixtureRequest) -> None:
    stored = run(tmp_path, misp_vcr, request, "threat_attributes_backfill", {"threat_attributes": {"initial_interval": "5000d"}})
    assert stored == {"ti_misp.threat_attributes": {a["uuid"] for a in small_dataset().attributes()}}


def test_event_backfill_replays(tmp_path: Path, misp_vcr: Any, request: pytest.FixtureRequest) -> None:
    streams = {"threat_attributes": {"enabled": False}, "threat": {"enabled": True, "initial_interval": "5000d", "page_size": 2}}
    stored = run(tmp_path, misp_vcr, request, "threat_backfill", streams)
    assert stored == {"ti_misp.threat": {a["uuid"] for a in small_dataset().attributes()}}


def test_cassettes_hold_no_credentials() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) == 2
    for path in files:
        text = path.read_text()
        assert "authorization" not in text.lower() and RECORD_KEY not in text
        assert "/restSearch" in text and "x-result-count" in text.lower()
