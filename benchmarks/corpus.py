"""The benchmark corpus: real MISP attributes, replicated with fresh uuids.

Base records are the shipped real MISP data as ``/attributes/restSearch``
returns them with ``includeDecayScore`` (event tags inherited, one
``decay_score`` entry per decaying model):

1. ``tests/data/misp_feed_attributes.ndjson.gz`` when the repository ships it;
2. otherwise they are asked, page by page, from the MISP simulator serving
   the events of ``--events DIR`` (default: the sample events shipped in
   ``misp_ti/testing/data/misp-events``), so the records are exactly what a
   fetch would receive.

Copy ``k`` of a base record gets a fresh attribute uuid and a fresh event
uuid per (event, copy), derived from a seeded RNG: runs are reproducible and
no two records of a corpus share an identity. Nothing large is written to
disk: corpora are generated chunk by chunk in memory.
"""

from __future__ import annotations

import gzip
import random
import uuid as uuid_module
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "tests" / "data" / "misp_feed_attributes.ndjson.gz"
#: The simulated "now" the base records' decay scores are computed at.
CORPUS_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def parse_count(text: str) -> int:
    """``10k`` -> 10000, ``1M`` -> 1000000, ``2500`` -> 2500."""
    text = text.strip()
    scale = {"k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    return int(float(number) * scale)


def format_count(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _events_dir(events: Path | None) -> Path:
    if events is not None:
        return events
    return ROOT / "src" / "misp_ti" / "testing" / "data" / "misp-events"


def fetch_from_simulator(events: Path | None = None, *, page_size: int = 1000) -> list[bytes]:
    """Every attribute of ``events`` as the simulator's restSearch answers it."""
    import httpx

    from misp_ti.testing.clock import ManualClock
    from misp_ti.testing.simulator import Dataset, MispSimulator

    clock = ManualClock(start=CORPUS_NOW)
    dataset = Dataset.from_path(_events_dir(events)).shift_to(newest=clock.now())
    lines: list[bytes] = []
    with MispSimulator(dataset, api_key="bench-key", clock=clock) as sim, httpx.Client(
        base_url=sim.url, headers={"Authorization": "bench-key", "Accept": "application/json"}, timeout=60
    ) as client:
        page = 1
        while True:
            body = {
                "returnFormat": "json", "page": page, "limit": page_size,
                "order": "Attribute.timestamp ASC", "includeDecayScore": True,
                "includeEventTags": True, "deleted": [0, 1],
            }
            resp = client.post("/attributes/restSearch", json=body)
            resp.raise_for_status()
            records = resp.json()["response"]["Attribute"]
            if not records:
                break
            lines.extend(orjson.dumps(r) for r in records)
            page += 1
    if not lines:
        raise SystemExit(f"no attributes found in {_events_dir(events)}")
    return lines


def base_lines(events: Path | None = None) -> tuple[list[bytes], str]:
    """The base records (one JSON line each) and a description of their origin."""
    if events is None and SHIPPED.exists():
        with gzip.open(SHIPPED, "rb") as fh:
            lines = [line.rstrip(b"\n") for line in fh if line.strip()]
        return lines, f"{SHIPPED.relative_to(ROOT)} ({len(lines)} real attributes)"
    lines = fetch_from_simulator(events)
    return lines, f"simulator restSearch over {_events_dir(events)} ({len(lines)} real attributes)"


def _identities(line: bytes) -> tuple[bytes, bytes | None]:
    record = orjson.loads(line)
    event = record.get("Event") if isinstance(record, dict) else None
    event_uuid = event.get("uuid") if isinstance(event, dict) else None
    return record["uuid"].encode(), event_uuid.encode() if event_uuid else None


def _fresh_uuid(rng: random.Random) -> bytes:
    return str(uuid_module.UUID(int=rng.getrandbits(128), version=4)).encode()


def replicate(lines: list[bytes], n: int, *, seed: int = 0, chunk: int = 10_000) -> Iterator[list[bytes]]:
    """``n`` records in chunks: the base lines cycled, each copy with fresh uuids.

    The uuids are swapped as bytes, so every other byte of a copy equals its
    real original.
    """
    rng = random.Random(seed)
    ids = [_identities(line) for line in lines]
    produced = 0
    copy_no = 0
    while produced < n:
        event_uuids: dict[bytes, bytes] = {}
        out: list[bytes] = []
        for line, (attr_uuid, event_uuid) in zip(lines, ids, strict=True):
            if produced >= n:
                break
            if copy_no:  # copy 0 is the real data unchanged
                line = line.replace(attr_uuid, _fresh_uuid(rng))
                if event_uuid is not None:
                    new_event = event_uuids.get(event_uuid)
                    if new_event is None:
                        new_event = event_uuids[event_uuid] = _fresh_uuid(rng)
                    line = line.replace(event_uuid, new_event)
            out.append(line)
            produced += 1
            if len(out) >= chunk:
                yield out
                out = []
        if out:
            yield out
        copy_no += 1


def replicated_events(events: list[dict[str, Any]], n_attributes: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """Whole events (the ``/events/restSearch`` shape) copied with fresh event,
    object and attribute uuids until they hold ``n_attributes`` attributes
    (the last copy is cut short). For the end-to-end benchmark's simulator."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    total = 0
    copy_no = 0
    while total < n_attributes:
        for event in events:
            if total >= n_attributes:
                break
            clone = orjson.loads(orjson.dumps(event))
            if copy_no:
                clone["uuid"] = _fresh_uuid(rng).decode()
            budget = n_attributes - total
            clone["Attribute"] = clone.get("Attribute", [])[:budget]
            budget -= len(clone["Attribute"])
            objects = []
            for obj in clone.get("Object", []):
                if budget <= 0:
                    break
                obj["Attribute"] = obj.get("Attribute", [])[:budget]
                budget -= len(obj["Attribute"])
                objects.append(obj)
            clone["Object"] = objects
            if copy_no:
                for obj in objects:
                    obj["uuid"] = _fresh_uuid(rng).decode()
                for attribute in _attributes_of(clone):
                    attribute["uuid"] = _fresh_uuid(rng).decode()
            size = sum(1 for _ in _attributes_of(clone))
            if size:
                out.append(clone)
                total += size
        copy_no += 1
    return out


def _attributes_of(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from event.get("Attribute", [])
    for obj in event.get("Object", []):
        yield from obj.get("Attribute", [])
