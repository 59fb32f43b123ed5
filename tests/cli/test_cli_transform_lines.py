"""``misp-ti transform`` reads lines with their line ends: the answers are those of the bare lines."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

GOOD = b'{"type":"ip-src","value":"192.0.2.1","uuid":"5e0b4cd8-1b2c-4e6c-9c55-000000000001","timestamp":"1617875568"}'


def transform(data: bytes) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISP_TI_")}
    done = subprocess.run([sys.executable, "-m", "misp_ti", "transform", "--now", "2024-06-01T00:00:00Z"],
                          input=data, capture_output=True, timeout=120, env=env)
    assert done.returncode in (0, 3), done.stderr.decode()[-500:]
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def test_crlf_lf_and_a_last_line_without_end_give_the_same_documents() -> None:
    bad = b'{"a": [1,'
    lf = transform(GOOD + b"\n" + bad + b"\n")
    crlf = transform(GOOD + b"\r\n" + bad + b"\r\n")
    bare = transform(GOOD + b"\n\n   \n" + bad)  # blank lines skipped, no final line end
    assert lf == crlf == bare
    assert lf[0]["threat"]["indicator"]["ip"] == "192.0.2.1"
    error = lf[1]
    assert error["event"]["kind"] == "pipeline_error"
    assert error["event"]["original"] == bad.decode()  # the line itself, without its end
    assert error["error"]["message"].startswith("not a JSON line: ")
    # the parser's position names the bare line (the first line of the text it read)
    assert "line 1" in error["error"]["message"]
