"""Arguments that are not text are refused in one line, exit 2, before any store is opened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_lookup_of_bytes_that_are_not_utf8_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "misp-ti.toml"
    config.write_text(f'[output.sqlite]\npath = "{tmp_path / "store.db"}"\n')
    done = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"misp_ti", b"--config", os.fsencode(config), b"lookup", b"\xff\xfe"],
        capture_output=True, timeout=60,
    )
    assert done.returncode == 2
    stderr = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: Invalid value for VALUE: b'\\xff\\xfe' is not UTF-8 text (byte 0 cannot be decoded); IOC values are UTF-8"]
    assert not (tmp_path / "store.db").exists()
