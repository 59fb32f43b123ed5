"""Files that hold intelligence are created readable by their owner only, whatever the umask."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from misp_ti.sinks.ndjson import NdjsonWriter


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the common default: new files 0644
    yield
    os.umask(old)


def test_the_ndjson_output_is_created_0600(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "iocs.ndjson"
    writer = NdjsonWriter(str(path))
    writer.write([{"a": 1}])
    writer.close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == '{"a":1}\n'
    # appending again keeps the file and its mode
    writer = NdjsonWriter(str(path))
    writer.write([{"b": 2}])
    writer.close()
    assert path.read_text() == '{"a":1}\n{"b":2}\n' and path.stat().st_mode & 0o777 == 0o600
