"""Transform throughput on one core, beside two references, in one run.

Every contender turns the same JSON lines into serialised JSON:

* ``floor``: ``orjson.loads`` + ``orjson.dumps`` of each line, no transform
  (the least any JSON-to-JSON step can cost);
* ``transform_doc``: ``orjson.loads`` -> the ``threat_attributes``
  ``transform_doc`` hook (dispatched the way the engine does) -> ``orjson.dumps``;
* ``transform + expiry``: the same through :meth:`Engine.process`
  (``transform_doc`` + ``compute_expiry`` with the default ``duration``
  policy, ``_id`` folding), which is the engine's whole per-record cost;
* ``PyMISP``: ``orjson.loads`` -> ``MISPAttribute().from_dict(**record)`` ->
  ``to_dict()`` -> ``orjson.dumps`` (what a Python user would otherwise write;
  it does no ECS mapping at all).

The contenders run interleaved chunk by chunk, so a burst of load on a
shared machine hits all of them alike. Only processing is timed: building
the corpus chunks (uuid replacement) is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from corpus import CORPUS_NOW, replicate

STREAM = "threat_attributes"
Runner = Callable[[list[bytes]], int]


def _floor(lines: list[bytes]) -> int:
    loads, dumps = orjson.loads, orjson.dumps
    total = 0
    for line in lines:
        total += len(dumps(loads(line)))
    return total


def _context(now: datetime = CORPUS_NOW) -> Any:
    from misp_ti.config import build_config
    from misp_ti.model import RunContext

    config = build_config({"plugins": {"entrypoints": False}, "output": {"sinks": ["ndjson"]}})
    return RunContext(config=config, now=now)


def make_transform_only(now: datetime = CORPUS_NOW) -> Runner:
    from misp_ti.engine import first_result_caller
    from misp_ti.manager import make_plugin_manager

    ctx = _context(now)
    transform = first_result_caller(make_plugin_manager(load_entrypoints=False).hook.transform_doc)

    def run(lines: list[bytes]) -> int:
        loads, dumps = orjson.loads, orjson.dumps
        total = 0
        for line in lines:
            total += len(dumps(transform(stream=STREAM, record=loads(line), ctx=ctx)))
        return total

    return run


def make_engine_process(now: datetime = CORPUS_NOW) -> Runner:
    from misp_ti.engine import Engine

    ctx = _context(now)
    engine = Engine(ctx.config, clock=lambda: now)

    def run(lines: list[bytes]) -> int:
        loads, dumps = orjson.loads, orjson.dumps
        docs = engine.process(STREAM, [loads(line) for line in lines], ctx)
        return sum(len(dumps(doc)) for doc in docs)

    return run


def make_pymisp() -> Runner | None:
    try:
        from pymisp import MISPAttribute
    except ImportError:
        return None

    def run(lines: list[bytes]) -> int:
        loads, dumps = orjson.loads, orjson.dumps
        total = 0
        for line in lines:
            attribute = MISPAttribute()
            attribute.from_dict(**loads(line))
            total += len(dumps(attribute.to_dict(), default=str))
        return total

    return run


def errors_in(lines: list[bytes], now: datetime = CORPUS_NOW) -> int:
    """How many base records the transform turns into pipeline_error documents."""
    from misp_ti.engine import Engine

    ctx = _context(now)
    docs = Engine(ctx.config, clock=lambda: now).process(STREAM, [orjson.loads(x) for x in lines], ctx)
    return sum(1 for d in docs if d.get("event", {}).get("kind") == "pipeline_error")


def run(base: list[bytes], n: int, *, pymisp_limit: int = 20_000, seed: int = 0) -> list[dict[str, Any]]:
    """Throughput rows for a corpus of ``n`` records."""
    runners: dict[str, Runner] = {
        "floor (orjson loads+dumps)": _floor,
        "transform_doc (threat_attributes)": make_transform_only(),
        "transform + expiry (Engine.process)": make_engine_process(),
    }
    pymisp = make_pymisp()
    if pymisp is not None:
        runners["PyMISP MISPAttribute load+to_dict"] = pymisp
    seconds = dict.fromkeys(runners, 0.0)
    counts = dict.fromkeys(runners, 0)
    out_bytes = dict.fromkeys(runners, 0)
    # warm-up: imports, caches, first-call costs
    warm = base[:500]
    for runner in runners.values():
        runner(warm)
    for chunk in replicate(base, n, seed=seed, chunk=5_000):
        for name, runner in runners.items():
            if name.startswith("PyMISP") and counts[name] >= pymisp_limit:
                continue
            start = time.perf_counter()
            out_bytes[name] += runner(chunk)
            seconds[name] += time.perf_counter() - start
            counts[name] += len(chunk)
    rows = []
    floor_rate = counts[next(iter(runners))] / seconds[next(iter(runners))]
    pymisp_rate = None
    if pymisp is not None:
        key = "PyMISP MISPAttribute load+to_dict"
        pymisp_rate = counts[key] / seconds[key]
    for name in runners:
        rate = counts[name] / seconds[name]
        rows.append({
            "contender": name,
            "records": counts[name],
            "seconds": round(seconds[name], 3),
            "per_second": round(rate),
            "us_per_record": round(1e6 / rate, 2),
            "x_floor_time": round(floor_rate / rate, 2),
            "x_pymisp_speed": round(rate / pymisp_rate, 1) if pymisp_rate else None,
            "output_mb": round(out_bytes[name] / 1e6, 1),
        })
    return rows


def profile(base: list[bytes], n: int = 20_000, top: int = 25) -> str:
    """cProfile of the transform + expiry path: the top entries by own time."""
    import cProfile
    import io
    import pstats

    runner = make_engine_process()
    chunks = list(replicate(base, n, chunk=5_000))
    prof = cProfile.Profile()
    prof.enable()
    for chunk in chunks:
        runner(chunk)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


if __name__ == "__main__":  # pragma: no cover - manual use
    from corpus import base_lines

    lines, origin = base_lines()
    print(origin, datetime.now(UTC))
    for row in run(lines, 20_000):
        print(row)
