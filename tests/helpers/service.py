"""Real ``misp-ti`` processes against the kit's simulator, for the service tests.

:class:`Service` reads the child's stderr in a thread, so a test waits for a
log line (an event) instead of sleeping.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).parents[1]

#: Upper bound of every wait for a child's log line: generous, never a speed claim.
PATIENCE = 60.0


def service_env(url: str, api_key: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``misp-ti`` child reading ``url`` into ``workdir/store.db``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISP_TI_")}
    env.update({
        "MISP_TI_MISP__URL": url,
        "MISP_TI_MISP__API_KEY": api_key,
        "MISP_TI_MISP__BACKOFF_INITIAL": "0.01s",
        "MISP_TI_MISP__BACKOFF_MAX": "1s",
        "MISP_TI_STREAMS__THREAT_ATTRIBUTES__INITIAL_INTERVAL": "3650d",
        "MISP_TI_OUTPUT__SQLITE__PATH": str(workdir / "store.db"),
        "MISP_TI_PLUGINS__ENTRYPOINTS": "false",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    })
    env.update(extra)
    return env


def misp_ti(args: list[str], env: dict[str, str], timeout: float = PATIENCE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "misp_ti", *args], env=env, capture_output=True, text=True, timeout=timeout)


class Service:
    """A running ``misp-ti`` child whose stderr lines can be awaited."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "misp_ti", *args], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    def wait_for(self, pattern: str, timeout: float = PATIENCE) -> re.Match[str]:
        """The first stderr line (from now on) matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{self.stderr}") from None
            if line is None:
                raise AssertionError(f"exited ({self.proc.wait()}) before a line matching {pattern!r}:\n{self.stderr}")
            match = regex.search(line)
            if match:
                return match

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def stop(self, signum: int) -> tuple[int, float]:
        """Send ``signum``; ``(exit status, seconds from the signal to the exit)``."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=PATIENCE)
        return code, time.monotonic() - sent

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
