"""Transform throughput on one core, beside two references, in one run.

Every contender turns the same JSON lines into serialised JSON:

* ``floor``: ``orjson.loads`` + ``orjson.dumps`` of each line, no transform
  (the least any JSON-to-JSON step can cost), line by line as ``misp-ti
  transform`` streams, and a page (1 000 records) at a time as the engine
  holds them;
* ``transform_doc``: ``orjson.loads`` -> the ``threat_attributes``
  ``transform_doc`` hook (dispatched the way the engine does) -> ``orjson.dumps``,
  line by line;
* ``transform + expiry``: a page at a time through :meth:`Engine.process`
  (``transform_doc`` + ``compute_expiry`` with the default ``duration``
  policy, ``_id`` folding), the engine's whole per-record cost. Holding a
  page of documents costs more than streaming them (allocation and cache
  effects), which is why both floors are shown;
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


PAGE = 1_000  # misp.page_size default: what the engine holds at once


def _floor(lines: list[bytes]) -> int:
    loads, dumps = orjson.loads, orjson.dumps
    total = 0
    for line in lines:
        total += len(dumps(loads(line)))
    return total


def _floor_pages(lines: list[bytes]) -> int:
    loads, dumps = orjson.loads, orjson.dumps
    total = 0
    for start in range(0, len(lines), PAGE):
        docs = [loads(line) for line in lines[start:start + PAGE]]
        total += sum(len(dumps(doc)) for doc in docs)
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
        total = 0
        for start in range(0, len(lines), PAGE):
            docs = engine.process(STREAM, [loads(line) for line in lines[start:start + PAGE]], ctx)
            total += sum(len(dumps(doc)) for doc in docs)
        return total

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


FLOOR = "floor: orjson loads+dumps, per line"
FLOOR_PAGES = "floor: orjson loads+dumps, per page"
TRANSFORM = "transform_doc, per line"
PROCESS = "transform + expiry (Engine.process), per page"
PYMISP = "PyMISP MISPAttribute from_dict+to_dict"


def run(base: list[bytes], n: int, *, pymisp_limit: int = 2_000, seed: int = 0) -> list[dict[str, Any]]:
    """Throughput rows for a corpus of ``n`` records (PyMISP: the first ``pymisp_limit``)."""
    runners: dict[str, Runner] = {
        FLOOR: _floor,
        FLOOR_PAGES: _floor_pages,
        TRANSFORM: make_transform_only(),
        PROCESS: make_engine_process(),
    }
    pymisp = make_pymisp()
    if pymisp is not None:
        runners[PYMISP] = pymisp
    seconds = dict.fromkeys(runners, 0.0)
    counts = dict.fromkeys(runners, 0)
    out_bytes = dict.fromkeys(runners, 0)
    # warm-up: imports, caches, first-call costs
    warm = base[:500]
    for runner in runners.values():
        runner(warm)
    for chunk in replicate(base, n, seed=seed, chunk=5_000):
        for name, runner in runners.items():
            if name == PYMISP and counts[name] >= pymisp_limit:
                continue
            if name == PYMISP:
                chunk = chunk[: pymisp_limit - counts[name]]
            start = time.perf_counter()
            out_bytes[name] += runner(chunk)
            seconds[name] += time.perf_counter() - start
            counts[name] += len(chunk)
    rows = []
    rates = {name: counts[name] / seconds[name] for name in runners}
    pymisp_rate = rates.get(PYMISP)
    for name in runners:
        rate = rates[name]
        floor = rates[FLOOR_PAGES] if "per page" in name else rates[FLOOR]
        rows.append({
            "contender": name,
            "records": counts[name],
            "seconds": round(seconds[name], 3),
            "per_second": round(rate),
            "us_per_record": round(1e6 / rate, 2),
            "x_floor_time": round(floor / rate, 2) if name != PYMISP else round(rates[FLOOR] / rate, 1),
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
    chunks = list(replicate(base, n, chunk=PAGE))
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
