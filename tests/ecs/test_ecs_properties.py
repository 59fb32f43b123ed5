"""Property tests of the ECS transform over generated MISP attributes of every type
(generators: :mod:`misp_ti.testing.strategies`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.ecs_validation import ecs_errors, leaves
from misp_ti.config import build_config
from misp_ti.ecs import Options, transform
from misp_ti.engine import Engine
from misp_ti.testing import strategies as ms

OPTS = Options("threat_attributes", preserve_original=True, ingested="2024-06-01T00:00:00.000Z")
THREAT = Options("threat", ingested="2024-06-01T00:00:00.000Z")


def typed_strings(doc: dict[str, Any]) -> set[str]:
    out = set()
    for _, value in leaves(doc["threat"]["indicator"]):
        for item in value if isinstance(value, list) else [value]:
            out.add(str(item))
    return out


def value_kept(doc: dict[str, Any], misp_type: str, value: str) -> bool:
    """The whole value is in misp.attribute.value, or every half of it in a typed field."""
    if doc["misp"]["attribute"].get("value") == value:
        return True
    typed = typed_strings(doc)
    if misp_type == "AS":
        digits = value.strip()[2:] if value.strip()[:2].upper() == "AS" else value.strip()
        return str(int(digits)) in typed
    if value in typed:
        return True
    if misp_type.startswith("filename|"):
        halves = value.rpartition("|")[::2]
    elif misp_type in ("ip-src|port", "ip-dst|port", "hostname|port"):
        halves = value.rpartition("|")[::2]
    else:
        halves = value.partition("|")[::2]
    return "|" in value and all(h in typed for h in halves)


def check_attribute(attribute: dict[str, Any]) -> None:
    doc = transform(attribute, OPTS)
    assert doc["event"]["kind"] == "enrichment", doc.get("error")
    assert ecs_errors(doc) == []
    assert value_kept(doc, attribute["type"], attribute["value"]), (attribute["type"], attribute["value"], doc["threat"])
    assert orjson.loads(doc["event"]["original"]) == attribute
    orjson.dumps(doc)  # serialisable as the sinks need it


TYPE_CHUNKS = [ms.MISP_TYPES[i:i + 8] for i in range(0, len(ms.MISP_TYPES), 8)]


@pytest.mark.parametrize("types", TYPE_CHUNKS, ids=lambda chunk: f"{chunk[0]}..{chunk[-1]}")
@settings(max_examples=4)
@given(data=st.data())
def test_every_misp_type_gives_a_valid_document_that_keeps_its_value(types: tuple[str, ...], data: st.DataObject) -> None:
    # every type in every example: coverage of all MISP types does not depend on luck
    for misp_type in types:
        check_attribute(data.draw(ms.attributes(types=[misp_type]), label=misp_type))


@settings(max_examples=150)
@given(ms.attributes())
def test_any_attribute_is_a_valid_document_that_keeps_its_value(attribute: dict[str, Any]) -> None:
    check_attribute(attribute)


@settings(max_examples=100)
@given(ms.attributes(), st.integers(min_value=1, max_value=10**6))
def test_id_is_stable_and_changes_with_the_attribute_timestamp(attribute: dict[str, Any], bump: int) -> None:
    first = transform(attribute, OPTS)["_id"]
    assert transform(orjson.loads(orjson.dumps(attribute)), OPTS)["_id"] == first
    changed = {**attribute, "timestamp": str(int(attribute["timestamp"]) + bump)}
    assert transform(changed, OPTS)["_id"] != first


@settings(max_examples=50)
@given(ms.attributes())
def test_engine_ids_are_stable_for_a_fixed_ingest_time(attribute: dict[str, Any]) -> None:
    engine = Engine(build_config({"plugins": {"entrypoints": False}}))
    ctx = engine.context(now=datetime(2024, 6, 1, tzinfo=UTC), dry_run=True)
    (a,) = engine.process("threat_attributes", [attribute], ctx)
    (b,) = engine.process("threat_attributes", [attribute], ctx)
    assert a == b and "decayed_at" in a["misp"]["attribute"]
    assert ecs_errors(a) == []


@settings(max_examples=200)
@given(ms.malformed_attributes())
def test_malformed_attributes_never_raise(record: Any) -> None:
    doc = transform(record, OPTS)
    assert doc["event"]["kind"] in ("enrichment", "pipeline_error")
    if doc["event"]["kind"] == "pipeline_error":
        assert doc["error"]["message"] and doc["event"]["original"]
    assert ecs_errors(doc) == []
    try:
        orjson.dumps(record)
    except TypeError:
        return  # orjson (our fetcher's and CLI's parser) could never have produced this record
    orjson.dumps(doc)  # what orjson parsed, the sinks can serialise


def split(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The split records the events fetcher produces: one per attribute and per object attribute."""
    summary = {k: v for k, v in event.items() if k not in ("Attribute", "Object")}
    records = [{"Event": {**summary, "Attribute": a}} for a in event.get("Attribute", [])]
    for obj in event.get("Object", []):
        shell = {k: v for k, v in obj.items() if k != "Attribute"}
        records += [{"Event": {**summary, "Object": {**shell, "Attribute": a}}} for a in obj.get("Attribute", [])]
    return records


@settings(max_examples=60)
@given(ms.events())
def test_split_event_records_are_valid_documents(event: dict[str, Any]) -> None:
    for record in split(event):
        doc = transform(record, THREAT)
        assert doc["event"]["kind"] == "enrichment", doc.get("error")
        assert ecs_errors(doc) == []
        inner = record["Event"].get("Object", {}).get("Attribute") or record["Event"]["Attribute"]
        assert doc["misp"]["attribute"]["uuid"] == inner["uuid"]
        assert value_kept(doc, inner["type"], inner["value"])
