"""Elasticsearch bulk path: documents/s through the sink's bulk writer.

The documents (the corpus transformed and expired by :meth:`Engine.process`,
outside the timing) go through :func:`misp_ti.sinks.elasticsearch.bulk.write`, the code the
``elasticsearch`` sink's ``emit`` runs, in batches of ``output.batch_size``
(1 000), against ``bulk_endpoint.py`` in another process. The writer builds
the ``create`` actions, serialises them, cuts ``_bulk`` requests by
``chunk_size`` (500) and ``chunk_bytes``, sends them with the official
client and checks every item. What it measures is our side of the wire.

Beside it, in the same run against the same endpoint and documents, the
plain ``elasticsearch.helpers.streaming_bulk`` (``create`` actions of the
same index and ``_id``, ``chunk_size`` 500) as a user would write it;
``x_streaming_bulk_cpu`` is our client CPU over its client CPU.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from corpus import replicate
from transform_bench import STREAM, _context, make_engine_process  # noqa: F401

HERE = Path(__file__).resolve().parent


def _documents(base: list[bytes], n: int, seed: int) -> list[dict[str, Any]]:
    from misp_ti.engine import Engine

    ctx = _context()
    engine = Engine(ctx.config, clock=lambda: ctx.now)
    docs: list[dict[str, Any]] = []
    for chunk in replicate(base, n, seed=seed, chunk=1_000):
        docs.extend(engine.process(STREAM, [orjson.loads(line) for line in chunk], ctx))
    return docs


def run(base: list[bytes], n: int, *, seed: int = 0, batch: int = 1_000) -> dict[str, Any]:
    from misp_ti.config import build_config
    from misp_ti.sinks.elasticsearch import bulk
    from misp_ti.sinks.elasticsearch.client import make_client

    docs = _documents(base, n, seed)
    endpoint = subprocess.Popen([sys.executable, str(HERE / "bulk_endpoint.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = endpoint.stdout.readline().split()  # type: ignore[union-attr]
        if not ready or ready[0] != "READY":
            raise RuntimeError(f"the bulk endpoint did not start: {ready}")
        config = build_config({
            "output": {"sinks": ["elasticsearch"], "elasticsearch": {"hosts": [ready[1]]}},
            "plugins": {"entrypoints": False},
        })
        client = make_client(config.output.elasticsearch)
        bulk.write(client, STREAM, docs[:batch], config)  # warm-up: connection, imports
        delivered = 0
        cpu_start, start = time.process_time(), time.perf_counter()
        for i in range(batch, len(docs), batch):
            delivered += bulk.write(client, STREAM, docs[i:i + batch], config).delivered
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        plain_cpu, plain_delivered = _streaming_bulk(client, docs[batch:], config, batch)
        client.close()
    finally:
        if endpoint.stdin:
            endpoint.stdin.close()
        endpoint.wait(timeout=30)
    if delivered != len(docs) - batch:
        raise RuntimeError(f"delivered {delivered} of {len(docs) - batch}")
    return {
        "documents": delivered,
        "seconds": round(seconds, 2),
        "per_second": round(delivered / seconds),
        "client_cpu_s": round(cpu, 2),
        "per_cpu_second": round(delivered / cpu),
        "batch": batch,
        "bulk_chunk": config.output.elasticsearch.chunk_size,
        "streaming_bulk_cpu_s": round(plain_cpu, 2),
        "streaming_bulk_per_cpu_second": round(plain_delivered / plain_cpu),
        "x_streaming_bulk_cpu": round(cpu / plain_cpu, 2),
    }


def _streaming_bulk(client: Any, docs: list[dict[str, Any]], config: Any, batch: int) -> tuple[float, int]:
    """(client CPU seconds, documents created) through ``elasticsearch.helpers.streaming_bulk``."""
    from elasticsearch.helpers import streaming_bulk

    from misp_ti.sinks.elasticsearch.assets import data_stream

    index = data_stream(STREAM, config.output.elasticsearch.namespace)
    delivered = 0
    cpu_start = time.process_time()
    for i in range(0, len(docs), batch):
        actions = (
            {"_op_type": "create", "_index": index, "_id": doc["_id"], "_source": {k: v for k, v in doc.items() if k != "_id"}}
            for doc in docs[i:i + batch]
        )
        for ok, _item in streaming_bulk(client, actions, chunk_size=config.output.elasticsearch.chunk_size):
            delivered += ok
    cpu = time.process_time() - cpu_start
    if delivered != len(docs):
        raise RuntimeError(f"streaming_bulk created {delivered} of {len(docs)}")
    return cpu, delivered


if __name__ == "__main__":  # pragma: no cover - manual use
    from corpus import base_lines

    lines, _ = base_lines()
    print(run(lines, int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
