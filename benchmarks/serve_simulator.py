"""Serve the MISP simulator with ``N`` attributes in this process (for ``e2e_bench``).

    python benchmarks/serve_simulator.py --attributes 100000 [--events DIR] [--seed 0]

Loads the real events of ``DIR`` (default: the sample shipped in
``misp_ti/simulator/data/misp-events``), replicates them with fresh uuids to
``N`` attributes (see :func:`corpus.replicated_events`), then prints one line
``READY <url> <attributes> <now epoch> <load seconds>`` and serves until its
standard input is closed.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import ROOT, parse_count, replicated_events  # noqa: E402

KEY = "bench-misp-key-0000000000000000"


def squeeze(events: list[dict], days: float) -> None:
    """Map every timestamp of ``events`` linearly into ``[newest - days, newest]``."""
    holders = [h for e in events for h in (e, *e.get("Object", []), *e.get("Attribute", []),
               *(a for o in e.get("Object", []) for a in o.get("Attribute", [])))]
    stamps = [int(h["timestamp"]) for h in holders if str(h.get("timestamp", "")).isdigit()]
    low, high = min(stamps), max(stamps)
    span = max(high - low, 1)
    target = days * 86400
    for holder in holders:
        for key in ("timestamp", "publish_timestamp"):
            if str(holder.get(key, "")).isdigit():
                holder[key] = str(int(high - (high - int(holder[key])) * target / span))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attributes", default="10k")
    parser.add_argument("--events", type=Path, default=ROOT / "src" / "misp_ti" / "simulator" / "data" / "misp-events")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--window-days", type=float, default=None,
        help="Squeeze every timestamp linearly into the last DAYS before now (order kept): "
        "recent, still-valid IOCs instead of the real data's 2016-2024 ages.",
    )
    args = parser.parse_args()

    from misp_ti.simulator import Dataset, MispSimulator
    from misp_ti.testing.clock import ManualClock

    started = time.perf_counter()
    base = Dataset.from_path(args.events).events()
    events = replicated_events(base, parse_count(args.attributes), seed=args.seed)
    del base
    if args.window_days:
        squeeze(events, args.window_days)
    dataset = Dataset.from_events(events)
    del events
    now = datetime.fromtimestamp(dataset.newest_timestamp(), UTC).replace(microsecond=0) + timedelta(hours=1)
    sim = MispSimulator(dataset, api_key=KEY, clock=ManualClock(start=now))
    del dataset
    with sim:
        print(f"READY {sim.url} {len(sim)} {int(now.timestamp())} {time.perf_counter() - started:.1f}", flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin


if __name__ == "__main__":
    main()
