"""The embedded store: bytes per attribute, and batch lookups through the CLI.

* footprint: the corpus transformed and expired by :meth:`Engine.process`
  (outside the timing) is written to a fresh store in batches of 1 000, as
  the ``sqlite`` sink does; the file (after a WAL checkpoint) is divided by
  the number of attributes and compared with the plain JSON of the same
  documents (``x_json``: how many times the raw documents the store takes).
  ``tables`` splits the file by table and index (SQLite's ``dbstat``).
* lookups: ``misp-ti lookup - --json --db STORE`` reads values from stdin in
  a separate process (start-up included, with its bytecode compiled as an
  installed package has it; best wall clock of three runs, with the child's
  CPU time of that run); half of them are indicator values of
  stored documents (made valid today), half are not in the store. Two
  stores, two rows:

  - ``distinct``: copy ``k >= 1`` of a base document gets indicator values
    of its own (:func:`distinct_values`), so, as in a real instance, a
    known value is one that at most 3 documents of the *whole* store hold.
    This is the row the target is about.
  - ``replicated``: the corpus as replicated (fresh uuids, same values), the
    known values chosen as before this round (held by at most 3 of the first
    ``2 * lookups`` documents), so each is held by every copy of its base
    document (about 18 at 100k): many hits per value, megabytes of answer.

``rows(base, n)`` returns the table rows; ``python benchmarks/store_bench.py
[--size 100k] [--lookups 10000]`` prints them.
"""

from __future__ import annotations

import ipaddress
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from hashlib import blake2b
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
    cpu = time.process_time()
    for i in range(0, len(docs), batch):
        store.write(docs[i:i + batch], ingested=CORPUS_NOW, retention_cutoff=None)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
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
        "per_cpu_second": round(len(docs) / max(cpu, 1e-6)),
        "tables": tables(path, len(docs)),
    }


def tables(path: Path, attributes: int) -> dict[str, float]:
    """Bytes per attribute of each table and index of the store at ``path``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    finally:
        conn.close()
    return {name: round(size / attributes, 1) for name, size in rows}


def _distinct(text: str, copy: int) -> str:
    """A value of copy ``copy`` of the same kind as ``text`` (hash, address, name) but its own."""
    if len(text) >= 16 and all(c in "0123456789abcdefABCDEF" for c in text):
        return blake2b(f"{copy}:{text}".encode(), digest_size=64).hexdigest()[: len(text)]
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            moved = ipaddress.ip_address((int(net.network_address) + (copy << (net.max_prefixlen - net.prefixlen))) % (1 << net.max_prefixlen))
            return str(ipaddress.ip_network((moved, net.prefixlen), strict=False))
        address = ipaddress.ip_address(text)
        return str(ipaddress.ip_address((int(address) + copy * 7919) % (1 << address.max_prefixlen)))
    except ValueError:
        pass
    scheme, sep, rest = text.partition("://")
    return f"{scheme}{sep}r{copy}.{rest}" if sep else f"r{copy}.{text}"


def distinct_values(docs: list[dict[str, Any]], base_size: int) -> list[dict[str, Any]]:
    """The documents with the indicator values of copy ``k >= 1`` (document
    ``i`` is of copy ``i // base_size``) made its own: a hash becomes another
    hash of its length, an address another address, a name or URL gains a
    label ``r<k>.``; the document's size stays within a few bytes."""
    from misp_ti.sinks.sqlite_keys import INDICATOR_META_KEYS

    def rewrite(item: Any, copy: int) -> Any:
        if isinstance(item, dict):
            return {k: rewrite(v, copy) for k, v in item.items()}
        if isinstance(item, list):
            return [rewrite(v, copy) for v in item]
        return _distinct(item, copy) if isinstance(item, str) else item

    for i, doc in enumerate(docs):
        copy = i // base_size
        if not copy:
            continue
        indicator = doc.get("threat", {}).get("indicator")
        if isinstance(indicator, dict):
            for key, value in indicator.items():
                if key not in INDICATOR_META_KEYS:
                    indicator[key] = rewrite(value, copy)
        attribute = doc.get("misp", {}).get("attribute")
        if isinstance(attribute, dict) and isinstance(attribute.get("value"), str):
            attribute["value"] = "|".join(_distinct(part, copy) for part in attribute["value"].split("|"))
    return docs


def _askable(value: str) -> bool:
    return value == value.strip() and "\n" not in value and "\r" not in value


def known_values(docs: list[dict[str, Any]], n: int, *, most_holders: int = 3, seed: int = 0) -> list[str]:
    """``n`` values to ask: half indicator values at most ``most_holders``
    documents of ``docs`` hold, half absent from the store, shuffled."""
    from misp_ti.sinks.sqlite import indicator_values

    rng = random.Random(seed)
    # what an enrichment script asks: indicator values, not the ports or
    # file names thousands of documents share
    seen = Counter(v for doc in docs for v in indicator_values(doc))
    known = sorted(v for v, times in seen.items() if times <= most_holders and _askable(v))
    values = rng.choices(known, k=n // 2) if known else []
    values += [f"absent-{i}.example" for i in range(n - len(values))]
    rng.shuffle(values)
    return values


def _child_env(cache: Path) -> dict[str, str]:
    """The environment of an installed ``misp-ti``: its bytecode compiled once
    (here into ``cache``, never into the source tree), even where the
    calling environment sets ``PYTHONDONTWRITEBYTECODE``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("PYTHONPYCACHEPREFIX", str(cache))
    return env


def _run_child(command: list[str], data: bytes, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[bytes], float, float]:
    """The finished process, its wall clock and its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, input=data, capture_output=True, check=False, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, seconds, cpu


def lookups(path: Path, values: list[str], label: str, *, repeat: int = 3) -> dict[str, Any]:
    command = [sys.executable, "-m", "misp_ti", "lookup", "-", "--json", "--db", str(path)]
    env = _child_env(path.parent / "pycache")
    _run_child(command, b"", env)  # compiles the bytecode, as installing the package does
    startup = min((_run_child(command, b"", env)[1:] for _ in range(repeat)), key=lambda r: r[0])
    data = ("\n".join(values) + "\n").encode()
    runs = [_run_child(command, data, env) for _ in range(repeat)]
    done, seconds, cpu = min(runs, key=lambda r: r[1])
    if done.returncode not in (0, 1):
        raise RuntimeError(f"lookup exited {done.returncode}: {done.stderr.decode()[-300:]}")
    answers = [orjson.loads(line) for line in done.stdout.splitlines()]
    if [a["value"] for a in answers] != values:
        raise RuntimeError(f"lookup answered {len(answers)} lines for {len(values)} values, or out of order")
    return {
        "measure": f"lookup - (one process), {label}",
        "store": label,
        "values": len(values),
        "values_found": sum(1 for a in answers if a["active"]),
        "hits": sum(len(a["hits"]) for a in answers),
        "answer_mb": round(len(done.stdout) / 1e6, 1),
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "startup_s": round(startup[0], 3),
        "startup_cpu_s": round(startup[1], 3),
        "per_second": round(len(values) / seconds),
        "per_cpu_second": round(len(values) / max(cpu, 1e-6)),
    }


def _valid_now(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents as if valid today: ``lookup`` asks at the wall clock, the corpus is of 2024."""
    for doc in docs:
        attribute = doc.get("misp", {}).get("attribute")
        if isinstance(attribute, dict):
            attribute["decayed"], attribute["decayed_at"] = False, "2999-01-01T00:00:00.000Z"
    return docs


def rows(base: list[bytes], n: int, *, lookup_values: int = 10_000) -> list[dict[str, Any]]:
    """The footprint (of the replicated corpus), then the two lookup rows: distinct, replicated."""
    docs = _valid_now(_documents(base, n, 0))
    with tempfile.TemporaryDirectory(prefix="misp-ti-store-bench-") as tmp:
        replicated = Path(tmp) / "replicated.db"
        result = [footprint(docs, replicated)]
        heavy = known_values(docs[: lookup_values * 2], lookup_values)
        distinct_docs = distinct_values(docs, len(base))
        distinct = Path(tmp) / "distinct.db"
        footprint(distinct_docs, distinct)
        result.append(lookups(distinct, known_values(distinct_docs, lookup_values), "distinct"))
        result.append(lookups(replicated, heavy, "replicated"))
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
