"""Plugins for engine tests: an in-memory MISP source and a minimal transform.

They stand in for the real fetch and transform plugins so that engine tests
exercise the engine alone (cursor handling, batching, sinks, crashes) and do
not change when the ECS mapping does. Registered after the built-ins, they
are asked first.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson

from misp_ti import hookimpl
from misp_ti.model import Page
from misp_ti.timeutil import from_epoch, iso


def make_attributes(n: int, *, start_ts: int = 1_700_000_000, prefix: str = "a") -> list[dict[str, Any]]:
    """``n`` MISP-like attributes with distinct uuids and increasing timestamps."""
    return [
        {
            "uuid": f"{prefix}-{i:08d}",
            "type": "ip-dst",
            "value": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "timestamp": str(start_ts + i),
            "to_ids": True,
            "decay_score": [],
        }
        for i in range(n)
    ]


class ListSource:
    """``fetch`` from a list, ``page_size`` records a page; cursor = next offset.

    ``fail_at_page`` raises on that page number (1-based) to simulate MISP
    failing mid-poll; ``fetched`` records every page served.
    """

    def __init__(self, records: list[dict[str, Any]], page_size: int = 10, fail_at_page: int | None = None):
        self.records = records
        self.page_size = page_size
        self.fail_at_page = fail_at_page
        self.fetched: list[tuple[int, int]] = []

    @hookimpl
    def fetch(self, stream: str, cursor: Any, ctx: Any) -> Any:
        if stream != "threat_attributes":
            return None
        return self._pages(int((cursor or {}).get("offset", 0)))

    def _pages(self, offset: int) -> Any:
        page_no = 0
        while offset < len(self.records):
            page_no += 1
            if self.fail_at_page == page_no:
                raise RuntimeError(f"simulated MISP failure on page {page_no}")
            chunk = self.records[offset:offset + self.page_size]
            self.fetched.append((offset, len(chunk)))
            offset += len(chunk)
            yield Page(chunk, cursor={"offset": offset})
        if not self.records:
            yield Page([], cursor={"offset": 0})


class MiniTransform:
    """Just enough of a document for the embedded store and expiry."""

    @hookimpl
    def transform_doc(self, stream: str, record: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if not isinstance(record, dict) or "uuid" not in record:
            raise ValueError("record has no uuid")
        ts = int(record["timestamp"])
        key = f"{stream}\0{record['uuid']}\0{ts}".encode()
        return {
            "_id": hashlib.blake2b(key, digest_size=16).hexdigest(),
            "@timestamp": iso(from_epoch(ts)),
            "event": {"kind": "enrichment", "dataset": f"ti_misp.{stream}"},
            "threat": {"indicator": {"type": "ipv4-addr", "ip": record["value"]}},
            "misp": {"attribute": {"uuid": record["uuid"], "type": record["type"], "value": record["value"]}},
        }


class CrashAfterEmit:
    """Kills the process with SIGKILL after the N-th batch was emitted to every
    sink and before the engine saves the cursor (a wrapper runs after all sinks)."""

    def __init__(self, kill_after_batch: int):
        self.kill_after_batch = kill_after_batch
        self.batches = 0

    @hookimpl(wrapper=True)
    def emit(self, stream: str, docs: Any, ctx: Any) -> Any:
        result = yield
        self.batches += 1
        if self.batches == self.kill_after_batch:
            os.kill(os.getpid(), 9)
        return result


def load_records(path: str) -> list[dict[str, Any]]:
    with open(path, "rb") as fh:
        return orjson.loads(fh.read())
