"""restSearch requests per backfill against the minimum, on the bundled sample.

The MISP simulator serves the shipped sample events (1 708 attributes, many
of them sharing a second); ``misp_ti.engine.Engine`` backfills them at page
size L into a throw-away store. The minimum for N rows is ``ceil(N / L) + 1``
(every page once, and the short or empty page that shows the end); the
count includes the re-scans (``misp.paging = "exact"``, the default) or the
change probes (``--paging fast``); issue 15's target: at most 1.15 x.

    python benchmarks/paging_bench.py [--paging exact|fast] [L ...]
"""

from __future__ import annotations

import math
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

KEY = "bench-paging-key-0123456789abcdef"
NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def run(page_size: int, paging: str = "exact") -> dict[str, Any]:
    from misp_ti.engine import Engine
    from misp_ti.simulator import Dataset, MispSimulator
    from misp_ti.testing.clock import ManualClock
    from misp_ti.testing.fixtures import make_client_config

    dataset = Dataset.sample().shift_to(newest=NOW - timedelta(hours=1))
    clock = ManualClock(start=NOW)
    with tempfile.TemporaryDirectory() as tmp, MispSimulator(dataset, api_key=KEY, clock=clock) as sim:
        config = make_client_config(sim.url, KEY, Path(tmp), {
            "misp": {"page_size": page_size, "paging": paging}, "streams": {"threat_attributes": {"initial_interval": "5000d"}},
        })
        with Engine(config, clock=clock) as engine:
            [result] = engine.run_once()
        sent = sum(1 for r in sim.requests if r.path.endswith("/attributes/restSearch"))
    if not result.completed or result.records != len(dataset):
        raise RuntimeError(f"page size {page_size}: backfill delivered {result.records} of {len(dataset)}")
    minimum = math.ceil(result.records / page_size) + 1
    return {"paging": paging, "page_size": page_size, "rows": result.records, "requests": sent, "minimum": minimum,
            "x_minimum": round(sent / minimum, 3)}


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = "exact"
    if args[:1] == ["--paging"] and len(args) >= 2:
        mode, args = args[1], args[2:]
    for size in args or ["7", "100", "1000"]:
        print(run(int(size), mode))
