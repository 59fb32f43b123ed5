"""``misp-ti transform`` as a user runs it, beside the orjson line floor, whole processes.

Both read the same file of JSON lines on stdin and write to ``/dev/null``:

* ``floor``: a Python process doing ``orjson.loads`` + ``orjson.dumps`` of
  each line (the least a JSON-lines-to-JSON-lines process can cost);
* ``misp-ti transform --stream threat_attributes``: the real CLI (config
  defaults, plugin loading, transform, expiry, ids).

Each contender's child CPU time (user + system) is measured with
``resource.getrusage``; the two alternate ``repeats`` times and the best of
each is kept, so a burst of load on a shared machine hits both alike.

Both run with compiled bytecode, as an installed package does (pip writes
the ``.pyc`` files at install): the children keep theirs under a private
``PYTHONPYCACHEPREFIX``, written by one untimed start of the CLI, even where
the environment sets ``PYTHONDONTWRITEBYTECODE`` (else every start compiles
misp-ti's modules again, a quarter of a second on a loaded 2-core machine).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from corpus import CORPUS_NOW, replicate

FLOOR = (
    "import sys, orjson\n"
    "loads, dumps, out = orjson.loads, orjson.dumps, sys.stdout.buffer\n"
    "for line in sys.stdin.buffer:\n"
    "    if line.strip():\n"
    "        out.write(dumps(loads(line)) + b'\\n')\n"
)


def _timed(argv: list[str], source: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run of ``argv`` on ``source``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with source.open("rb") as stdin:
        subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(base: list[bytes], n: int, *, repeats: int = 3) -> dict[str, Any]:
    cli = [sys.executable, "-m", "misp_ti", "transform", "--stream", "threat_attributes", "--now", CORPUS_NOW.isoformat()]
    floor = [sys.executable, "-c", FLOOR]
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MISP_TI_") and k != "PYTHONDONTWRITEBYTECODE"}  # built-in defaults
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        subprocess.run(cli, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
        source = Path(tmp) / "attributes.ndjson"
        with source.open("wb") as fh:
            for chunk in replicate(base, n):
                fh.write(b"\n".join(chunk) + b"\n")
        best = {"floor": (float("inf"), float("inf")), "cli": (float("inf"), float("inf"))}
        for _ in range(repeats):
            for name, argv in (("floor", floor), ("cli", cli)):
                wall, cpu = _timed(argv, source, env)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return {
        "records": n,
        "floor_cpu_s": round(best["floor"][1], 2),
        "cli_cpu_s": round(best["cli"][1], 2),
        "floor_wall_s": round(best["floor"][0], 2),
        "cli_wall_s": round(best["cli"][0], 2),
        "x_floor_cpu": round(best["cli"][1] / best["floor"][1], 2),
        "x_floor_wall": round(best["cli"][0] / best["floor"][0], 2),
    }


if __name__ == "__main__":
    from corpus import base_lines, parse_count

    print(run(base_lines()[0], parse_count(sys.argv[1] if len(sys.argv) > 1 else "100k"), repeats=1))
