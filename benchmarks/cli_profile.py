"""Where ``misp-ti transform``'s CPU goes: each stage of its loop, in process.

``python benchmarks/cli_profile.py [N]`` (default 20k replicated corpus
lines) prints the CPU time per record of each stage, best of five, beside
the orjson floor measured the same way. A stage is timed alone on the
records or documents the previous one made, so the rows do not add up
exactly to the whole loop (caches are warm after the first of five runs,
as they are after the first page of a real run).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from corpus import CORPUS_NOW, base_lines, parse_count, replicate


def _timer(n: int) -> Callable[[str, Callable[[], Any]], None]:
    def timed(label: str, work: Callable[[], Any]) -> None:
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            work()
            best = min(best, time.process_time() - started)
        print(f"| {label} | {best / n * 1e6:.1f} |")

    return timed


def main(n: int) -> None:
    from misp_ti.cli import Obj
    from misp_ti.ecs import is_pipeline_error
    from misp_ti.ecs.documents import attribute_document
    from misp_ti.ecs.options import options_for
    from misp_ti.expiry import duration_policy
    from misp_ti.processing import _Folder

    lines = [line for chunk in replicate(base_lines()[0], n) for line in chunk]
    batches = [lines[i:i + 1000] for i in range(0, len(lines), 1000)]
    obj = Obj(None, (), True, None, False)
    engine = obj.engine(obj.config())
    ctx = engine.context(now=CORPUS_NOW, dry_run=True)
    opts = options_for("threat_attributes", ctx)
    records = [orjson.loads(line) for line in lines]
    docs = [attribute_document(r, opts) for r in records]
    decisions = [duration_policy(r, d, ctx) for r, d in zip(records, docs, strict=True)]
    out = engine.process("threat_attributes", records, ctx)
    timed = _timer(len(lines))

    def fold() -> None:
        folder = _Folder()
        for doc, decision in zip(docs, decisions, strict=True):
            folder(dict(doc), decision)

    def whole() -> None:
        for batch in batches:
            page = engine.process("threat_attributes", list(map(orjson.loads, batch)), ctx)
            sum(map(is_pipeline_error, page))
            b"\n".join(map(orjson.dumps, page))

    gc.disable()  # as the CLI's loop
    print(f"{len(lines)} lines; CPU µs per record, best of 5\n\n| stage | µs |\n|---|---|")
    timed("floor: orjson loads + dumps, line by line", lambda: [orjson.dumps(orjson.loads(line)) for line in lines])
    timed("floor: the same, 1 000 lines at a time", lambda: [b"\n".join(map(orjson.dumps, list(map(orjson.loads, b)))) for b in batches])
    timed("`orjson.loads`, 1 000 lines at a time", lambda: [list(map(orjson.loads, b)) for b in batches])
    timed("`attribute_document` (the ECS document and its id)", lambda: [attribute_document(r, opts) for r in records])
    timed("`duration_policy` (the expiry decision)", lambda: [duration_policy(r, d, ctx) for r, d in zip(records, docs, strict=True)])
    timed("folding the decision into `_id` (and a shallow copy of each document)", fold)
    timed("`Engine.process` (transform + expiry + folding), pages of 1 000", lambda: [engine.process("threat_attributes", records[i:i + 1000], ctx) for i in range(0, len(records), 1000)])
    timed("`orjson.dumps` of the documents", lambda: b"\n".join(map(orjson.dumps, out)))
    timed("the CLI's whole loop (loads, process, count, dumps)", whole)
    engine.close()


if __name__ == "__main__":
    main(parse_count(sys.argv[1] if len(sys.argv) > 1 else "20k"))
