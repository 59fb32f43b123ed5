"""The embedded store: bytes per attribute, and batch lookups through the CLI.

* footprint: the corpus transformed and expired by :meth:`Engine.process`
  (outside the timing) is written to a fresh store in batches of 1 000, as
  the ``sqlite`` sink does; the file (after a WAL checkpoint) is divided by
  the number of attributes and compared with the plain JSON of the same
  documents (``x_json``: how many times the raw documents the store takes).
* lookups: ``misp-ti lookup - --json --db STORE`` reads values from stdin in
  a separate process (start-up included); half of them are indicator values
  of stored documents (made valid today), half are not in the store.
  The known values are indicator values that at most 3 documents share.

``rows(base, n)`` returns the table rows; ``python benchmarks/store_bench.py
[--size 100k] [--lookups 10000]`` prints them.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from corpus import CORPUS_NOW, format_count, parse_count
from es_bench import _documents

HERE = Path(__file__).resolve().parent


def footprint(docs: list[dict[str, Any]], path: Path, *, batch: int = 1_000) -> dict[str, Any]:
    from misp_ti.sinks.sqlite import EmbeddedStore

    store = EmbeddedStore(path)
    store.provision()
    start = time.perf_counter()
    for i in range(0, len(docs), batch):
        store.write(docs[i:i + batch], ingested=CORPUS_NOW, retention_cutoff=None)
    seconds = time.perf_counter() - start
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    raw = sum(len(orjson.dumps(doc)) for doc in docs)
    return {
        "measure": "store footprint",
        "attributes": len(docs),
        "store_mb": round(size / 1e6, 1),
        "bytes_per_attribute": round(size / len(docs)),
        "json_bytes_per_attribute": round(raw / len(docs)),
        "x_json": round(size / raw, 2),
        "per_second": round(len(docs) / seconds),
    }


def lookups(docs: list[dict[str, Any]], path: Path, n: int, *, seed: int = 0) -> dict[str, Any]:
    from misp_ti.sinks.sqlite import indicator_values

    rng = random.Random(seed)
    # what an enrichment script asks: indicator values, not the ports or
    # file names thousands of documents share
    seen = Counter(v for doc in docs[: n * 2] for v in indicator_values(doc))
    known = sorted(v for v, times in seen.items() if times <= 3 and v == v.strip() and "\n" not in v and "\r" not in v)
    values = rng.choices(known, k=n // 2) if known else []
    values += [f"absent-{i}.example" for i in range(n - len(values))]
    rng.shuffle(values)
    command = [sys.executable, "-m", "misp_ti", "lookup", "-", "--json", "--db", str(path)]
    start = time.perf_counter()
    subprocess.run(command, input=b"", capture_output=True, check=False)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    done = subprocess.run(command, input=("\n".join(values) + "\n").encode(), capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"lookup exited {done.returncode}: {done.stderr.decode()[-300:]}")
    answers = [orjson.loads(line) for line in done.stdout.splitlines()]
    if [a["value"] for a in answers] != values:
        raise RuntimeError(f"lookup answered {len(answers)} lines for {len(values)} values, or out of order")
    return {
        "measure": "lookup - (one process)",
        "values": len(values),
        "values_found": sum(1 for a in answers if a["active"]),
        "hits": sum(len(a["hits"]) for a in answers),
        "seconds": round(seconds, 2),
        "startup_s": round(startup, 2),
        "per_second": round(len(values) / seconds),
        "per_second_after_startup": round(len(values) / max(seconds - startup, 1e-6)),
    }


def _valid_now(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents as if valid today: ``lookup`` asks at the wall clock, the corpus is of 2024."""
    for doc in docs:
        attribute = doc.get("misp", {}).get("attribute")
        if isinstance(attribute, dict):
            attribute["decayed"], attribute["decayed_at"] = False, "2999-01-01T00:00:00.000Z"
    return docs


def rows(base: list[bytes], n: int, *, lookup_values: int = 10_000) -> list[dict[str, Any]]:
    docs = _valid_now(_documents(base, n, 0))
    with tempfile.TemporaryDirectory(prefix="misp-ti-store-bench-") as tmp:
        path = Path(tmp) / "store.db"
        result = [footprint(docs, path)]
        result.append(lookups(docs, path, lookup_values))
    return result


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse

    from corpus import base_lines

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100k")
    parser.add_argument("--lookups", default="10000")
    parser.add_argument("--footprint-only", action="store_true")
    args = parser.parse_args()
    lines, _ = base_lines()
    n = parse_count(args.size)
    if args.footprint_only:
        docs = _documents(lines, n, 0)
        with tempfile.TemporaryDirectory(prefix="misp-ti-store-bench-") as tmp:
            print(footprint(docs, Path(tmp) / "store.db"))
    else:
        print(f"{format_count(n)} attributes")
        for row in rows(lines, n, lookup_values=parse_count(args.lookups)):
            print(row)
