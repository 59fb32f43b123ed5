"""One writer per state: the flock on <state>.lock (misp_ti.service.lock)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from misp_ti.service.lock import StateLock, StateLockedError, holder, lock_path


def test_a_second_writer_is_refused_naming_the_first(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with StateLock(state, command="run"):
        with pytest.raises(StateLockedError) as refused:
            StateLock(state, command="once").acquire()
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and "misp-ti run" in message and "\n" not in message
    assert refused.value.exit_code == 4


def test_the_lock_is_released_and_can_be_taken_again(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    first = StateLock(state, command="once").acquire()
    held_by = holder(state)
    assert held_by is not None and (held_by["pid"], held_by["command"]) == (os.getpid(), "once")
    first.release()
    assert holder(state) is None
    with StateLock(state, command="run") as again:
        assert again.held
    assert stat.S_IMODE(lock_path(state).stat().st_mode) == 0o600


def _hold_in_child(state: Path) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        import sys, time
        from misp_ti.service.lock import StateLock
        StateLock({str(state)!r}, command="run").acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def test_sigkill_of_the_holder_leaves_no_lock_that_blocks_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    child = _hold_in_child(state)
    try:
        with pytest.raises(StateLockedError, match=f"pid {child.pid}"):
            StateLock(state, command="run").acquire()
        assert (holder(state) or {}).get("pid") == child.pid
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert lock_path(state).exists()  # the file stays behind, the lock does not
    assert holder(state) is None
    with StateLock(state, command="run") as lock:
        assert lock.held
