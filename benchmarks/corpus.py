"""The benchmark corpus: real MISP attributes, replicated with fresh uuids.

Base records are the shipped real MISP data as ``/attributes/restSearch``
returns them with ``includeDecayScore`` (event tags inherited, one
``decay_score`` entry per applicable decaying model):

1. by default ``tests/data/misp_feed_attributes.ndjson.gz`` (5 297 real
   attributes, ``includeEventTags`` shape), to which the ``decay_score``
   list is added with the simulator's scorer and MISP's three default models,
   as of :data:`CORPUS_NOW`;
2. with ``--events DIR``, they are asked page by page from the MISP
   simulator serving those event files, so the records are exactly what a
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
#: The "now" of decay scores and of the benchmark's ingest time: a week after
#: the newest attribute of the shipped data (2024-05), so some indicators are
#: still valid and most have decayed, as in a real instance.
CORPUS_NOW = datetime(2024, 6, 1, tzinfo=UTC)


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
    return ROOT / "src" / "misp_ti" / "simulator" / "data" / "misp-events"


def fetch_from_simulator(events: Path | None = None, *, page_size: int = 1000) -> list[bytes]:
    """Every attribute of ``events`` as the simulator's restSearch answers it."""
    import httpx

    from misp_ti.simulator import Dataset, MispSimulator
    from misp_ti.testing.clock import ManualClock

    clock = ManualClock(start=CORPUS_NOW)
    dataset = Dataset.from_path(_events_dir(events))
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


def with_decay_scores(record: dict[str, Any], now: datetime = CORPUS_NOW) -> dict[str, Any]:
    """``record`` as ``includeDecayScore`` returns it (``decay_score`` after the attribute fields)."""
    from misp_ti.simulator.decay import DecayScorer, default_models

    scorer = _SCORER.get("scorer")
    if scorer is None:
        scorer = _SCORER["scorer"] = DecayScorer(default_models())
    tags = record.get("Tag") or []
    own = [t for t in tags if not t.get("inherited")]
    inherited = [t for t in tags if t.get("inherited")]
    attribute = {**record, "Tag": own}
    scores = scorer.score(attribute, inherited, int(now.timestamp()))
    out = {k: v for k, v in record.items() if k not in ("Event", "Object", "Tag")}
    out["decay_score"] = scores
    for key in ("Event", "Object", "Tag"):
        if key in record:
            out[key] = record[key]
    return out


_SCORER: dict[str, Any] = {}


def base_lines(events: Path | None = None) -> tuple[list[bytes], str]:
    """The base records (one JSON line each) and a description of their origin."""
    if events is None:
        with gzip.open(SHIPPED, "rb") as fh:
            records = [orjson.loads(line) for line in fh if line.strip()]
        lines = [orjson.dumps(with_decay_scores(r)) for r in records]
        scored = sum(1 for line in lines if b'"decay_score":[]' not in line)
        return lines, (
            f"{SHIPPED.relative_to(ROOT)}: {len(lines)} real attributes, decay scores added as of "
            f"{CORPUS_NOW.date()} ({scored} scored by at least one model)"
        )
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


def replicated_events(
    events: list[dict[str, Any]], n_attributes: int, *, seed: int = 0, spread: int = 3600
) -> list[dict[str, Any]]:
    """Whole events (the ``/events/restSearch`` shape) copied with fresh event,
    object and attribute uuids until they hold ``n_attributes`` attributes
    (the last copy is cut short). For the end-to-end benchmark's simulator.

    Copy ``k`` is also moved ``k * spread`` seconds into the past: a real
    instance does not hold hundreds of copies of one event edited in the same
    second, and such crowded seconds would measure paging pathology instead
    of throughput."""
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
                shift = copy_no * spread
                for holder in (clone, *objects):
                    for key in ("timestamp", "publish_timestamp"):
                        # "0" is MISP's "never" (an unpublished event): it stays 0, never negative
                        if str(holder.get(key, "")).isdigit() and int(holder[key]) > 0:
                            holder[key] = str(max(int(holder[key]) - shift, 1))
                for obj in objects:
                    obj["uuid"] = _fresh_uuid(rng).decode()
                for attribute in _attributes_of(clone):
                    attribute["uuid"] = _fresh_uuid(rng).decode()
                    attribute["timestamp"] = str(int(attribute["timestamp"]) - shift)
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
