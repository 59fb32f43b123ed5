"""One writer per state file: an exclusive ``flock`` on ``<state>.lock``.

Filebeat's data-path lock is the model: the process that polls and writes a
state holds the lock for its whole life; a second one refuses at once and
says who holds it. The lock is the kernel's (``flock(2)``), not a file's
existence, so it dies with its process: a SIGKILL, an OOM kill or a power
cut leaves a file behind but no lock, and the next start takes it. The file
keeps the last holder's ``{pid, host, command, started_at}`` for the message.

Readers (``status``, ``lookup``, ``config``) never take the lock: SQLite's
WAL lets them read beside the writer.

``flock`` locks are advisory and local: two hosts sharing the state over NFS
are not kept apart (documented; use one host per state).
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import orjson

from misp_ti.errors import MispTiError


class StateLockedError(MispTiError):
    """Another process holds the state (exit status 4, docs/contracts.md)."""

    exit_code = 4


def lock_path(state_path: str | Path) -> Path:
    return Path(f"{state_path}.lock")


class StateLock:
    """Hold the write lock of one state file (a context manager).

    :param command: what this process is (``run``, ``once``...), for the
        message another process prints.
    """

    def __init__(self, state_path: str | Path, *, command: str) -> None:
        self.path = lock_path(state_path)
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StateLock:
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise MispTiError(f"state lock {self.path} cannot be opened: {exc.strerror}") from None
        try:
            _flock_soon(fd)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise StateLockedError(
                f"state {self.path.with_suffix('')} is in use by {holder}; "
                "stop that process first (status, lookup and config work beside it)"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise MispTiError(f"state lock {self.path} cannot be taken: {exc.strerror}") from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "argv0": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "",
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, orjson.dumps(record) + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # the file stays: removing it would let a third process lock a new
            # inode while a second one still waits on the old one
            os.close(fd)

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def holder(state_path: str | Path) -> dict[str, object] | None:
    """Who holds the lock of ``state_path`` now, or ``None`` when nobody does."""
    path = lock_path(state_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or {"pid": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


#: :func:`holder` probes with a shared lock for a moment: a writer starting
#: in that moment tries again this many times, 50 ms apart, before refusing.
PROBE_RETRIES = 5


def _flock_soon(fd: int) -> None:
    for _ in range(PROBE_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.05)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read(fd: int) -> dict[str, object]:
    try:
        data = orjson.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(record: dict[str, object]) -> str:
    if not record.get("pid"):
        return "another process"
    text = f"misp-ti {record.get('command') or '?'} (pid {record['pid']}"
    if record.get("host"):
        text += f" on {record['host']}"
    if record.get("started_at"):
        text += f", since {record['started_at']}"
    return text + ")"
