"""Every attribute of the real MISP feed data transforms without a pipeline_error,
into valid ECS, in both streams."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers.ecs_validation import ecs_errors
from misp_ti.ecs import Options, transform

DATA = Path(__file__).parents[1] / "data" / "misp_feed_attributes.ndjson.gz"
SHARED_FEED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "misp_feed"


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


def _events(path: Path) -> list[dict[str, Any]]:
    body = json.loads(path.read_text(encoding="utf-8"))
    if "response" in body:
        return [item["Event"] for item in body["response"]]
    return [body["Event"]] if "Event" in body else [body]


@pytest.mark.skipif(not SHARED_FEED.is_dir(), reason="../shared/data/misp_feed is not checked out beside the repository")
def test_every_real_event_record_transforms_into_valid_ecs() -> None:
    opts = Options("threat", ingested="2024-06-01T00:00:00.000Z")
    count, problems = 0, []
    for path in sorted(SHARED_FEED.rglob("*.json")):
        for event in _events(path):
            summary = {k: v for k, v in event.items() if k not in ("Attribute", "Object")}
            records = [{"Event": {**summary, "Attribute": a}} for a in event.get("Attribute", [])]
            for obj in event.get("Object", []):
                shell = {k: v for k, v in obj.items() if k != "Attribute"}
                records += [{"Event": {**summary, "Object": {**shell, "Attribute": a}}} for a in obj["Attribute"]]
            for record in records:
                doc = transform(record, opts)
                count += 1
                if doc["event"]["kind"] != "enrichment":
                    problems.append(f"{path.name}: {doc['error']['message']}")
                problems.extend(ecs_errors(doc))
    assert count == 5297
    assert problems == []
