"""NDJSON output: one JSON document per line, to a file or stdout.

A file is appended to and fsynced after each batch; a batch that cannot be
written whole is cut back, and a torn last line left by a crash is cut on
open (its batch was never confirmed, so the engine sends it again).
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

import orjson


def open_private_append(path: str | os.PathLike[str]) -> IO[bytes]:
    """``open(path, "ab")``, creating the file readable by its owner only (0600):
    these files hold intelligence (TLP-marked IOCs). An existing file keeps its mode."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(fd, "ab")


def _drop_torn_tail(path: str) -> None:
    """Cut a partial last line (a crash in the middle of a write) back to the
    last newline: its batch was never confirmed, so it will be written again."""
    try:
        fh = open(path, "r+b")  # noqa: SIM115
    except FileNotFoundError:
        return
    with fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        keep = 0
        block = 64 * 1024
        end = size
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            chunk = fh.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut != -1:
                keep = start + cut + 1
                break
            end = start
        fh.truncate(keep)


def _write_all(fh: IO[bytes], data: bytes) -> None:
    """Write every byte of ``data``.

    A buffered ``write`` larger than its buffer goes straight to the raw
    stream, and a signal arriving while that blocks (a stop while a pipe
    reader lags: ``once | slow-consumer``) makes it return a short count
    instead of finishing: the rest of the batch would be lost and the last
    line torn. So write again from where it stopped.
    """
    view = memoryview(data)
    while view:
        view = view[fh.write(view):]


class NdjsonWriter:
    """Appends batches of documents as JSON lines; a batch is written whole or not at all."""

    def __init__(self, path: str):
        self.path = path
        if path != "-":
            _drop_torn_tail(path)
        self._fh: IO[bytes] = sys.stdout.buffer if path == "-" else open_private_append(path)

    def write(self, docs: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE) for doc in docs)
        if self.path == "-":
            _write_all(self._fh, data)
            self._fh.flush()
            return
        before = self._fh.tell()
        try:
            _write_all(self._fh, data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError:
            # disk full or I/O error: leave no partial batch behind (it is retried whole)
            try:
                self._fh.truncate(before)
            except OSError:
                pass
            raise

    def close(self) -> None:
        if self.path != "-":
            self._fh.close()
