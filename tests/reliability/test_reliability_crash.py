"""Crash-resume: SIGKILL the real engine at random moments of a backfill.

``python -m misp_ti once`` runs as a child process against the MISP
simulator (in this process, serving the shipped real events), with the real
fetch, transform, expiry and embedded store. A witness plugin
(``helpers.emission_witness``, an ``emit`` wrapper) records every document handed to
the sinks, replays included.

Kill times are drawn from a seeded RNG over the length of an uninterrupted
run; the engine is restarted after each kill until a run completes (one
*episode*), then a fresh episode starts, until enough kills landed while a
cycle was in progress. After each episode:

* the latest view equals the uninterrupted run's, row for row;
* the store's source table holds exactly the uninterrupted run's document
  ids, each once (the store de-duplicates replays by ``_id``, and a resumed
  cycle keeps its ingest time, so a replay reproduces the same ids);
* the replays are exactly what at-least-once allows: after a kill, the
  restarted engine re-emits only records at or after the checkpoint it
  resumed from (``resume_from``, or the finished cursor minus the overlap);
  nothing the checkpoint declared delivered is emitted again.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.reliability import source_ids, store_snapshot
from helpers.sample import T0
from misp_ti.simulator import Dataset, MispSimulator
from misp_ti.state import StateStore
from misp_ti.testing.clock import ManualClock

NOW = "2026-03-01T12:00:00Z"
KEY = "crash-resume-key-0123456789abcdef012345"
PAGE_SIZE = 50
KILLS = 24  # kills that must land inside a cycle
MAX_LAUNCHES = 80
SEED = 20260301


@pytest.fixture(scope="module")
def simulator(dataset: Dataset) -> Any:
    sim = MispSimulator(dataset, api_key=KEY, clock=ManualClock(start=T0))
    # a little latency per page spreads the backfill over time, like a real MISP
    sim.on_request(lambda info: time.sleep(0.01))
    with sim:
        yield sim


def engine_env(sim: MispSimulator, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MISP_TI_MISP__URL": sim.url,
        "MISP_TI_MISP__API_KEY": KEY,
        "MISP_TI_MISP__PAGE_SIZE": str(PAGE_SIZE),
        "MISP_TI_STREAMS__THREAT_ATTRIBUTES__INITIAL_INTERVAL": "5000d",
        "MISP_TI_OUTPUT__SQLITE__PATH": str(workdir / "store.db"),
        "MISP_TI_PLUGINS__ENTRYPOINTS": "false",
        "MISP_TI_PLUGINS__LOAD": '["helpers.emission_witness"]',
        "EMISSION_WITNESS": str(workdir / "emitted.txt"),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    })
    return env


def launch(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "misp_ti", "--quiet", "once", "--now", NOW],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def emitted_docs(workdir: Path) -> list[tuple[str, str]]:
    """``(_id, attribute uuid)`` of every document handed to the sinks, in order."""
    path = workdir / "emitted.txt"
    if not path.exists():
        return []
    return [tuple(line.split(" ")) for line in path.read_text().splitlines()]  # type: ignore[misc]



OVERLAP = 2  # streams.<stream>.overlap default, seconds


def replay_floor(workdir: Path) -> tuple[bool, int | None]:
    """(a cycle is in progress, the oldest attribute timestamp a restart may re-emit).

    ``None``: the restart reads the whole window again (nothing was confirmed yet).
    """
    if not (workdir / "store.db").exists():
        return False, None
    state = StateStore(workdir / "store.db")
    try:
        cycle = state.in_progress("threat_attributes")
        if cycle is not None:
            checkpoint = cycle.checkpoint or {}
            return True, checkpoint.get("resume_from")
        cursor = state.get_cursor("threat_attributes")
        return False, cursor["last_timestamp"] - OVERLAP if cursor else None
    finally:
        state.close()


@pytest.fixture(scope="module")
def uninterrupted(simulator: MispSimulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    proc = launch(engine_env(simulator, workdir))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    snapshot = store_snapshot(workdir / "store.db")
    assert len(snapshot) == len(simulator)
    ids = source_ids(workdir / "store.db")
    assert sorted(ids) == sorted(doc_id for doc_id, _ in emitted_docs(workdir)), "an uninterrupted run emits every document once"
    return {"snapshot": snapshot, "ids": sorted(ids)}


def check_replays(emitted: list[tuple[str, str]], kills: list[tuple[int, int | None]], timestamps: dict[str, int]) -> int:
    """Assert every re-emission follows the checkpoint of the kill before it; return how many there were."""
    first_seen: dict[str, int] = {}
    replays = 0
    for position, (doc_id, uuid) in enumerate(emitted):
        if doc_id not in first_seen:
            first_seen[doc_id] = position
            continue
        replays += 1
        # the kills between its first emission and this one, with the checkpoints they left
        floors = [floor for at, floor in kills if first_seen[doc_id] < at <= position]
        assert floors, f"{doc_id} emitted twice without a kill in between"
        floor = floors[-1]  # the restart that re-emitted it resumed from this kill's checkpoint
        ts = timestamps[uuid]
        assert floor is None or ts >= floor, (
            f"{doc_id} (timestamp {ts}) re-emitted although the checkpoint said everything before {floor} was delivered"
        )
    return replays


class EmissionWatch:
    """Counts the lines the witness appended, reading only what is new."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.lines = 0

    def poll(self) -> int:
        if self.path.exists():
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
            self.offset += len(chunk)
            self.lines += chunk.count(b"\n")
        return self.lines


def run_and_kill(env: dict[str, str], watch: EmissionWatch, rng: random.Random) -> bool:
    """Start the engine and SIGKILL it at a random point; False if it finished first.

    Four kills in five come a random number of documents (up to three pages)
    plus a random few milliseconds into the run, so they land anywhere in the
    fetch/transform/emit/checkpoint loop; the fifth comes at a random time
    (start-up, provisioning, the first request...).
    """
    proc = launch(env)
    if rng.random() < 0.2:
        after_docs, deadline = None, time.monotonic() + rng.uniform(0.05, 1.5)
    else:
        after_docs, deadline = watch.poll() + rng.randint(1, 3 * PAGE_SIZE), None
    extra = rng.uniform(0, 0.03)
    while proc.poll() is None:
        due = time.monotonic() >= deadline if deadline is not None else watch.poll() >= after_docs
        if due:
            time.sleep(extra)
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            if proc.returncode == -signal.SIGKILL:
                return True
            break  # it finished during the extra delay
        time.sleep(0.003)
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    return False


def test_sigkill_at_random_points_then_restart(
    simulator: MispSimulator, dataset: Dataset, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    timestamps = {a["uuid"]: int(a["timestamp"]) for a in dataset.attributes()}
    kills_mid_cycle = kills_other = launches = episodes = replayed = with_checkpoint = 0
    while kills_mid_cycle < KILLS:
        assert launches < MAX_LAUNCHES, f"only {kills_mid_cycle} kills landed inside a cycle in {launches} launches"
        episodes += 1
        workdir = tmp_path / f"episode-{episodes}"
        workdir.mkdir()
        env = engine_env(simulator, workdir)
        watch = EmissionWatch(workdir / "emitted.txt")
        kills_here: list[tuple[int, int | None]] = []  # (documents emitted when killed, replay floor)
        while True:
            launches += 1
            if kills_mid_cycle >= KILLS:  # enough: let this episode finish
                finish = launch(env)
                _, err = finish.communicate(timeout=120)
                assert finish.returncode == 0, err.decode()
                break
            if not run_and_kill(env, watch, rng):
                break
            active, floor = replay_floor(workdir)
            kills_here.append((watch.poll(), floor))
            with_checkpoint += floor is not None
            if active:
                kills_mid_cycle += 1
            else:
                kills_other += 1  # before the cycle began, or after it finished
        snapshot = store_snapshot(workdir / "store.db")
        ids = source_ids(workdir / "store.db")
        emitted = emitted_docs(workdir)
        assert snapshot == uninterrupted["snapshot"], f"episode {episodes}: latest view differs after {len(kills_here)} kills"
        assert sorted(ids) == uninterrupted["ids"], f"episode {episodes}: source documents differ"
        assert {doc_id for doc_id, _ in emitted} == set(ids)
        replayed += check_replays(emitted, kills_here, timestamps)
    # most kills must leave a real checkpoint, or the replay check above proved little
    assert with_checkpoint >= KILLS // 2
    print(
        f"\n[crash-resume] {launches} launches in {episodes} episodes: {kills_mid_cycle} SIGKILLs inside a "
        f"cycle, {kills_other} outside one ({with_checkpoint} left a checkpoint or cursor to resume from); {replayed} documents emitted twice (at-least-once replays, "
        f"absorbed by _id); every episode ended equal to the uninterrupted run "
        f"({len(uninterrupted['snapshot'])} latest rows, {len(uninterrupted['ids'])} source documents)"
    )
