"""Datasets (sample, feed shapes, shifting, generated) and the ``misp-ti simulator`` command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from helpers.simulator import KEY, NOW, filter_events, u
from misp_ti.simulator import Dataset, DatasetError, MispSimulator
from misp_ti.testing.clock import ManualClock


def test_sample_covers_types_objects_and_tlp():
    sample = Dataset.sample()
    attributes = list(sample.attributes())
    assert len(sample) == len(attributes) == 1708
    assert len({a["type"] for a in attributes}) >= 40
    assert sum(1 for a in attributes if "Object" in a) == 357
    tagged = list(sample.attributes(include_event_tags=True))
    assert any(
        t["name"] == "tlp:white" and t["inherited"] == 1 for a in tagged for t in a.get("Tag", ())
    )
    assert len({a["uuid"] for a in attributes}) == len(attributes)
    assert len({a["id"] for a in attributes}) == len(
        attributes
    )  # renumbered: no clash across sources


def test_three_feed_shapes_from_a_directory(tmp_path):
    e1, e2 = (item["Event"] for item in filter_events())
    (tmp_path / "response.json").write_text(json.dumps({"response": [{"Event": e1}]}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "feed.json").write_text(json.dumps({"Event": e2}))
    bare = dict(
        e2, uuid=u("e3"), Attribute=[dict(a, uuid=a["uuid"][:-2] + "ff") for a in e2["Attribute"]]
    )
    (tmp_path / "sub" / "bare.json").write_text(json.dumps(bare))
    dataset = Dataset.from_path(tmp_path)
    assert len(dataset) == 7 + 3 + 3
    assert [e["uuid"] for e in dataset.events()] == [u("e1"), u("e3"), u("e2")]  # sorted by path


def test_bad_files_name_the_problem(tmp_path):
    (tmp_path / "broken.json").write_text('{"Event": {')
    with pytest.raises(DatasetError, match="broken.json: not valid JSON"):
        Dataset.from_path(tmp_path)
    (tmp_path / "broken.json").write_text('{"hello": 1}')
    with pytest.raises(DatasetError, match="not a MISP event"):
        Dataset.from_path(tmp_path / "broken.json")
    with pytest.raises(DatasetError, match="no such file"):
        Dataset.from_path(tmp_path / "missing")


def test_shift_to_keeps_relative_ages():
    dataset = Dataset.from_events(filter_events())
    target = datetime(2030, 6, 1, tzinfo=UTC)
    shifted = dataset.shift_to(target)
    assert shifted.newest_timestamp() == int(target.timestamp())
    before = {a["uuid"]: int(a["timestamp"]) for a in dataset.attributes()}
    after = {a["uuid"]: int(a["timestamp"]) for a in shifted.attributes()}
    delta = int(target.timestamp()) - dataset.newest_timestamp()
    assert all(after[k] - before[k] == delta for k in before)
    assert dataset.newest_timestamp() != shifted.newest_timestamp()  # the original is untouched


def test_simulator_shift_to_moves_stored_data_and_sightings():
    clock = ManualClock(NOW)
    with MispSimulator(Dataset.from_events(filter_events()), clock=clock) as sim:
        sim.add_sighting(u("a2"), int(NOW.timestamp()) - 3600)
        before = sim.decay_score(u("a2"))
        target = NOW + timedelta(days=400)
        sim.shift_to(target)  # the newest attribute (b3) was 1 day old
        clock.set(target + timedelta(days=1))
        assert max(
            int(a["timestamp"])
            for a in httpx.post(
                f"{sim.url}/attributes/restSearch", headers={"Authorization": KEY}, json={}
            ).json()["response"]["Attribute"]
        ) == int(target.timestamp())
        assert sim.decay_score(u("a2")) == before  # same ages, same scores


def test_synthetic_data_is_deterministic_and_sized():
    one = Dataset.synthetic(1000, seed=5, per_event=100)
    two = Dataset.synthetic(1000, seed=5, per_event=100)
    assert len(one) == 1000
    assert [a["uuid"] for a in one.attributes()] == [a["uuid"] for a in two.attributes()]
    assert [a["uuid"] for a in Dataset.synthetic(1000, seed=6).attributes()] != [
        a["uuid"] for a in one.attributes()
    ]
    assert any("Object" in a for a in one.attributes())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serves_until_terminated():
    port = _free_port()
    secret = "cli-secret-key-0123456789"
    command = [
        sys.executable,
        "-c",
        "from misp_ti.cli import main; main()",
        "simulator",
        "--port",
        str(port),
        "--api-key",
        secret,
        "--faults",
        "503@1",
        "--seed",
        "4",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line + process.stderr.read()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": secret}, timeout=10
        ) as http:
            assert http.post("/attributes/restSearch", json={"limit": 2}).status_code == 503
            response = http.post(
                "/attributes/restSearch", json={"limit": 2, "page": 1, "order": "timestamp desc"}
            )
            assert (
                response.status_code == 200 and len(response.json()["response"]["Attribute"]) == 2
            )
            # --shift-to-now is the default: the newest attribute is from (about) now
            newest = int(response.json()["response"]["Attribute"][0]["timestamp"])
            assert abs(newest - time.time()) < 120
            assert (
                http.post(
                    "/attributes/restSearch", headers={"Authorization": "wrong"}, json={}
                ).status_code
                == 403
            )
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert secret not in line + out + err
    assert "stopped" in err


def test_cli_rejects_bad_fault_plan():
    result = subprocess.run(
        [sys.executable, "-c", "from misp_ti.cli import main; main()", "simulator", "--faults", "boom:0.5"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown kind 'boom'" in result.stderr


def test_shift_never_puts_an_event_after_the_newest_time() -> None:
    from datetime import UTC, datetime

    newest = datetime(2026, 1, 1, tzinfo=UTC)
    shifted = Dataset.sample().shift_to(newest)
    assert shifted.newest_timestamp() == int(newest.timestamp())
    late = [e["uuid"] for e in Dataset.sample().events() if int(e["timestamp"]) > Dataset.sample().newest_timestamp()]
    assert late, "the sample has an event edited after its newest attribute: the case this guards"
    for event in shifted.events():
        assert int(event["timestamp"]) <= int(newest.timestamp())
