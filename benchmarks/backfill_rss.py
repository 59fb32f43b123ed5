"""Backfill N attributes from the MISP simulator into the embedded store; report time and peak RSS.

Each size runs in a fresh subprocess (peak RSS is per process):

    python benchmarks/backfill_rss.py 10k 100k [--page-size 1000]

Data: the shipped sample events replicated with fresh event and attribute
uuids (``Dataset.from_events``) until N attributes, timestamps spread so
that paging crosses many seconds. The simulator runs in the same process
(``adopt_dataset=True``) so the process numbers include it. Reported: the
resident set just before the backfill and the highest one sampled (every
50 ms) during it, whose difference is what fetch + transform + store add;
and ``ru_maxrss`` of the run and of a baseline run that only builds the
data and the simulator (building the data is the process peak at 100k).

Pipeline: the default plugins (fetch, ECS transform, expiry ``duration``,
sqlite sink), nothing replaced.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class RssSampler(threading.Thread):
    """Highest resident set seen while the backfill runs (the process peak may predate it)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.start_mb = current_rss_mb()
        self.peak_mb = self.start_mb
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            self.peak_mb = max(self.peak_mb, current_rss_mb())


def replicated_events(target: int, seed: int = 7) -> list[dict[str, Any]]:
    from misp_ti.simulator import Dataset

    base = Dataset.sample().events()
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    count = 0
    copy_no = 0
    while count < target:
        for source in base:
            event = copy.deepcopy(source)
            event["uuid"] = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            offset = copy_no * 37  # copies land in different seconds
            members = list(event.get("Attribute", []))
            for obj in event.get("Object", []):
                obj["uuid"] = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
                members += obj.get("Attribute", [])
            for attribute in members:
                attribute["uuid"] = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
                attribute["timestamp"] = str(int(attribute["timestamp"]) - offset)
            event["timestamp"] = str(int(event["timestamp"]) - offset)
            events.append(event)
            count += len(members)
            if count >= target:
                break
        copy_no += 1
    return events


def measure(size: int, page_size: int, baseline: bool) -> dict[str, Any]:
    from misp_ti.config import build_config
    from misp_ti.engine import Engine
    from misp_ti.simulator import Dataset, MispSimulator
    from misp_ti.testing.clock import ManualClock

    dataset = Dataset.from_events(replicated_events(size))
    ahead = max(int(e["timestamp"]) for e in dataset.events()) - dataset.newest_timestamp()
    dataset = dataset.shift_to(newest=NOW - timedelta(hours=1, seconds=max(0, ahead)))
    attributes = len(dataset)
    gc.collect()
    clock = ManualClock(start=NOW)
    with tempfile.TemporaryDirectory() as directory, MispSimulator(dataset, api_key="bench", clock=clock, adopt_dataset=True) as sim:
        del dataset
        result: dict[str, Any] = {"attributes": attributes, "page_size": page_size}
        if not baseline:
            config = build_config({
                "misp": {"url": sim.url, "api_key": "bench", "page_size": page_size, "request_timeout": "60s"},
                "streams": {"threat_attributes": {"initial_interval": "5000d"}},
                "output": {"sqlite": {"path": str(Path(directory) / "store.db")}},
                "plugins": {"entrypoints": False},
            })
            gc.collect()
            sampler = RssSampler()
            sampler.start()
            started = time.perf_counter()
            with Engine(config, clock=clock) as engine:
                [cycle] = engine.run_once()
            sampler.stopped.set()
            sampler.join()
            result.update(seconds=round(time.perf_counter() - started, 1), records=cycle.records,
                          pages=cycle.pages, requests=len(sim.requests),
                          rss_before_mb=round(sampler.start_mb, 1), rss_during_peak_mb=round(sampler.peak_mb, 1))
            assert cycle.completed and cycle.records == attributes, cycle
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["baseline"] = baseline
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", default=["10k", "100k"])
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s.lower().replace("k", "000").replace("m", "000000")) for s in args.sizes]
    if args.child:
        print(json.dumps(measure(sizes[0], args.page_size, args.baseline)))
        return
    print("| attributes | page size | wall time (s) | requests | RSS before backfill (MB) | highest RSS during backfill (MB) "
          "| process peak RSS, ru_maxrss (MB) | same, data + simulator only (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        runs = []
        for baseline in (True, False):
            cmd = [sys.executable, __file__, str(size), "--page-size", str(args.page_size), "--child"]
            out = subprocess.run(cmd + (["--baseline"] if baseline else []), check=True, capture_output=True, text=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        base, run = runs
        print(f"| {run['attributes']} | {run['page_size']} | {run['seconds']} | {run['requests']} | "
              f"{run['rss_before_mb']} | {run['rss_during_peak_mb']} | {run['peak_rss_mb']} | {base['peak_rss_mb']} |", flush=True)


if __name__ == "__main__":
    main()
