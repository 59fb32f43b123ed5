"""Real processes: SIGKILL between emit and cursor save, SIGTERM during `run`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from helpers.fakeplugins import make_attributes
from helpers.reliability import store_snapshot
from misp_ti.sinks.sqlite import EmbeddedStore
from misp_ti.state import StateStore
from misp_ti.timeutil import parse_iso

TESTS = Path(__file__).parents[1]
NOW = "2026-11-01T12:00:00Z"


def misp_ti(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "misp_ti", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def make_env(tmp_path: Path, records: list[dict], **extra: str) -> dict[str, str]:
    data = tmp_path / "records.json"
    data.write_text(json.dumps(records))
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
        "FAKE_RECORDS": str(data),
        "FAKE_PAGE_SIZE": "10",
        "MISP_TI_PLUGINS__ENTRYPOINTS": "false",
        "MISP_TI_OUTPUT__SQLITE__PATH": str(tmp_path / "store.db"),
    })
    env.update(extra)
    return env


RECORDS = make_attributes(45, start_ts=int(parse_iso(NOW).timestamp()) - 7200)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    done = misp_ti(["--plugin", "helpers.fakesource_env", "once", "--now", NOW], make_env(tmp_path, RECORDS))
    assert done.returncode == 0, done.stderr
    result = store_snapshot(tmp_path / "store.db")
    assert len(result) == 45
    return result


@pytest.mark.parametrize("kill_after_batch", [1, 3, 5])
def test_sigkill_between_emit_and_cursor_save_then_restart(tmp_path: Path, uninterrupted: dict, kill_after_batch: int) -> None:
    env = make_env(tmp_path, RECORDS, FAKE_KILL_AFTER_BATCH=str(kill_after_batch))
    killed = misp_ti(["--plugin", "helpers.fakesource_env", "once", "--now", NOW], env)
    assert killed.returncode == -signal.SIGKILL
    # the batch reached the store, but its checkpoint was never saved
    state = StateStore(tmp_path / "store.db")
    pending = state.in_progress("threat_attributes")
    state.close()
    expected_checkpoint = None if kill_after_batch == 1 else {"offset": 10 * (kill_after_batch - 1)}
    assert pending is not None and pending.checkpoint == expected_checkpoint

    # restart at a later wall-clock time: the cycle resumes with its own time
    env.pop("FAKE_KILL_AFTER_BATCH")
    resumed = misp_ti(["--plugin", "helpers.fakesource_env", "once", "--json", "--now", "2026-11-01T13:00:00Z"], env)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.splitlines()[0])
    assert summary["resumed"] and summary["completed"]
    assert store_snapshot(tmp_path / "store.db") == uninterrupted
    store = EmbeddedStore(tmp_path / "store.db")
    # the replayed batch was deduplicated by its ids
    assert store.conn.execute("SELECT count(*) FROM source").fetchone()[0] == 45
    store.close()


def wait_for_a_stored_batch(db: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until ``proc`` has stored its first batch: it is then inside a cycle with
    its signal handlers set, however long a loaded machine took to start it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "misp-ti run exited before storing a batch"
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                if conn.execute("SELECT count(*) FROM source").fetchone()[0]:
                    return
        except sqlite3.OperationalError:
            pass  # the store or its tables do not exist yet
        time.sleep(0.05)
    pytest.fail(f"misp-ti run stored no batch within {timeout} s")


def test_sigterm_during_run_finishes_the_batch_saves_and_exits_zero(tmp_path: Path) -> None:
    env = make_env(tmp_path, RECORDS, FAKE_PAGE_DELAY="0.3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "misp_ti", "--plugin", "helpers.fakesource_env", "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_a_stored_batch(tmp_path / "store.db", proc)  # inside the first cycle: 5 pages at 0.3 s each
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM" in err
    state = StateStore(tmp_path / "store.db")
    pending = state.in_progress("threat_attributes")
    state.close()
    # stopped mid-cycle: every delivered page is checkpointed, nothing beyond it
    assert pending is not None and pending.checkpoint is not None
    delivered = len(store_snapshot(tmp_path / "store.db"))
    assert delivered == pending.checkpoint["offset"] and 0 < delivered < 45
