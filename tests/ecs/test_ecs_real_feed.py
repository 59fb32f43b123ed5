"""Every attribute of the real MISP feed data transforms without a pipeline_error,
into valid ECS, in both streams."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from helpers.ecs_validation import ecs_errors
from misp_ti.ecs import Options, transform

DATA = Path(__file__).parents[1] / "data" / "misp_feed_attributes.ndjson.gz"
EVENTS = Path(__file__).parents[1] / "data" / "misp_feed_events.ndjson.gz"


def feed() -> list[dict[str, Any]]:
    with gzip.open(DATA) as lines:
        return [orjson.loads(line) for line in lines]


def test_every_real_attribute_transforms_into_valid_ecs() -> None:
    records = feed()
    assert len(records) == 5297
    assert len(Counter(r["type"] for r in records)) == 49
    opts = Options("threat_attributes", ingested="2024-06-01T00:00:00.000Z")
    problems = []
    for record in records:
        doc = transform(record, opts)
        if doc["event"]["kind"] != "enrichment":
            problems.append(doc["error"]["message"])
        problems.extend(ecs_errors(doc))
        if "value" not in doc["misp"]["attribute"]:
            assert doc["threat"]["indicator"].get("type"), record["type"]
    assert problems == []


def feed_events() -> list[tuple[str, dict[str, Any]]]:
    """``(file, event)`` for the 69 real events (tests/data, built from the feed files unchanged)."""
    with gzip.open(EVENTS) as lines:
        return [(line["file"], line["Event"]) for line in map(orjson.loads, lines)]


def test_every_real_event_record_transforms_into_valid_ecs() -> None:
    opts = Options("threat", ingested="2024-06-01T00:00:00.000Z")
    count, problems = 0, []
    events = feed_events()
    assert len(events) == 69
    for name, event in events:
        summary = {k: v for k, v in event.items() if k not in ("Attribute", "Object")}
        records = [{"Event": {**summary, "Attribute": a}} for a in event.get("Attribute", [])]
        for obj in event.get("Object", []):
            shell = {k: v for k, v in obj.items() if k != "Attribute"}
            records += [{"Event": {**summary, "Object": {**shell, "Attribute": a}}} for a in obj["Attribute"]]
        for record in records:
            doc = transform(record, opts)
            count += 1
            if doc["event"]["kind"] != "enrichment":
                problems.append(f"{name}: {doc['error']['message']}")
            problems.extend(ecs_errors(doc))
    assert count == 5297
    assert problems == []
