"""End to end: simulator -> fetch -> transform -> expiry -> embedded store.

Two processes: the MISP simulator (``serve_simulator.py``, holding ``N``
replicated real attributes) and the engine, ``python -m misp_ti once`` with
the default plugins, ``misp.page_size = 1000`` and the embedded store (SQLite,
WAL) in a temporary directory. One backfill reads all ``N`` attributes.

Measured: the engine's attributes per CPU second beside a floor, the
least any engine must spend on the same data (:func:`floor_cpu_seconds`:
``orjson.loads`` of the pages + one SQLite insert of each record), and
``x_floor_cpu``, how many times the floor's CPU the engine spends; the
engine's wall time (process start to exit, Python start-up and
provisioning included), its CPU time and peak RSS (``getrusage`` of a tiny
wrapper process whose only child is the engine: Linux keeps ``ru_maxrss``
across ``exec``, so a child forked straight from this big benchmark process
would report this process's size), and the simulator's peak RSS
(``VmHWM`` from ``/proc``), reported apart: holding a million attributes in a
Python test server is the simulator's cost, not the engine's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: Runs argv[2:] as its only child and writes that child's rusage to argv[1].
_WRAPPER = """
import json, resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as fh:
    json.dump({"maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, fh)
sys.exit(code)
"""


def _proc_status(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    except OSError:
        return None
    return None


def _proc_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def floor_cpu_seconds(url: str, api_key: str, *, page_size: int = 1000) -> tuple[float, int]:
    """CPU seconds of the least an engine must do with the same data, and the records it covered.

    The pages are asked from the simulator the engine just read (plain
    ``page``/``limit`` paging of ``/attributes/restSearch`` with the decay
    scores and event tags, as the engine asks them); only the floor's own
    work is timed, page by page: ``orjson.loads`` of the answer, then one
    ``INSERT`` of each record's JSON into an SQLite table (WAL,
    ``synchronous = NORMAL`` as the store), one transaction per page. A
    record is about twice the size of its ECS document, so this floor
    stores more bytes than the engine does.
    """
    import sqlite3

    import httpx
    import orjson

    spent = 0.0
    count = 0
    with tempfile.TemporaryDirectory(prefix="misp-ti-floor-") as tmp, httpx.Client(
        base_url=url, headers={"Authorization": api_key, "Accept": "application/json"}, timeout=120
    ) as client:
        conn = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE doc (id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID")
        page = 1
        while True:
            body = {
                "returnFormat": "json", "page": page, "limit": page_size, "order": "Attribute.timestamp ASC",
                "includeDecayScore": True, "includeEventTags": True, "deleted": [0, 1],
            }
            raw = client.post("/attributes/restSearch", json=body).raise_for_status().content
            started = time.process_time()
            records = orjson.loads(raw)["response"]["Attribute"]
            if records:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO doc VALUES (?, ?)", [(r["uuid"], orjson.dumps(r)) for r in records])
                conn.execute("COMMIT")
            spent += time.process_time() - started
            if not records:
                break
            count += len(records)
            page += 1
        conn.close()
    return spent, count


def run(n: int, *, events: Path | None = None, seed: int = 0, window_days: float | None = None, floor: bool = True) -> dict[str, Any]:
    sim_cmd = [sys.executable, str(HERE / "serve_simulator.py"), "--attributes", str(n), "--seed", str(seed)]
    if window_days:
        sim_cmd += ["--window-days", str(window_days)]
    if events is not None:
        sim_cmd += ["--events", str(events)]
    sim = subprocess.Popen(sim_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = sim.stdout.readline().split()  # type: ignore[union-attr]
        if not ready or ready[0] != "READY":
            raise RuntimeError(f"the simulator did not start: {ready}")
        url, served, now_epoch, load_seconds = ready[1], int(ready[2]), int(ready[3]), float(ready[4])
        sim_cpu_before = _proc_cpu_seconds(sim.pid) or 0.0
        with tempfile.TemporaryDirectory(prefix="misp-ti-bench-") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("MISP_TI_")}
            env.update({
                "MISP_TI_MISP__URL": url,
                "MISP_TI_MISP__API_KEY": "bench-misp-key-0000000000000000",
                "MISP_TI_MISP__PAGE_SIZE": "1000",
                "MISP_TI_MISP__TIMEOUT": "120s",
                "MISP_TI_STREAMS__THREAT_ATTRIBUTES__INITIAL_INTERVAL": "7300d",
                "MISP_TI_OUTPUT__SQLITE__PATH": str(Path(tmp) / "store.db"),
                "MISP_TI_PLUGINS__ENTRYPOINTS": "false",
            })
            now = datetime.fromtimestamp(now_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            errors = Path(tmp) / "stderr.txt"
            usage_file = Path(tmp) / "usage.json"
            started = time.perf_counter()
            with open(errors, "wb") as err_fh:
                engine = subprocess.run(
                    [sys.executable, "-c", _WRAPPER, str(usage_file),
                     sys.executable, "-m", "misp_ti", "--quiet", "once", "--json", "--now", now],
                    env=env, stdout=subprocess.PIPE, stderr=err_fh, check=False,
                )
            wall = time.perf_counter() - started
            if engine.returncode != 0:
                raise RuntimeError(f"the engine failed ({engine.returncode}): {errors.read_text()[-2000:]}")
            usage = json.loads(usage_file.read_text())
            result = json.loads(engine.stdout.decode().strip().splitlines()[-1])
            store_mb = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.name.startswith("store.db")) / 1e6
        sim_hwm = _proc_status(sim.pid, "VmHWM")
        sim_cpu = (_proc_cpu_seconds(sim.pid) or 0.0) - sim_cpu_before
        floor_s, floor_records = floor_cpu_seconds(url, env["MISP_TI_MISP__API_KEY"]) if floor else (None, 0)
    finally:
        if sim.stdin:
            sim.stdin.close()
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
    if result["records"] != served or result["documents"] != served:
        raise RuntimeError(f"the engine read {result['records']} records of {served}")
    if floor and floor_records != served:
        raise RuntimeError(f"the floor read {floor_records} records of {served}")
    per_cpu = served / usage["cpu_s"]
    floor_per_cpu = served / floor_s if floor_s else None
    return {
        "ages": f"last {window_days:g} days" if window_days else "real (2016-2024)",
        "per_cpu_second": round(per_cpu),
        "floor_per_cpu_second": round(floor_per_cpu) if floor_per_cpu else None,
        "x_floor_cpu": round(floor_per_cpu / per_cpu, 2) if floor_per_cpu else None,
        "attributes": served,
        "engine_wall_s": round(wall, 1),
        "engine_cycle_s": result["seconds"],
        "per_second": round(served / wall),
        "engine_cpu_s": round(usage["cpu_s"], 1),
        "engine_peak_rss_mb": round(usage["maxrss_kb"] / 1024, 1),
        "simulator_cpu_s": round(sim_cpu, 1),
        "simulator_peak_rss_mb": round((sim_hwm or 0) / 1024, 1),
        "simulator_load_s": load_seconds,
        "store_mb": round(store_mb, 1),
        "pages": result["pages"],
    }


if __name__ == "__main__":  # pragma: no cover - manual use
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000, window_days=float(sys.argv[2]) if len(sys.argv) > 2 else None))
