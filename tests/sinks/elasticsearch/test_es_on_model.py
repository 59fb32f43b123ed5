"""The whole engine against the MODEL of Elasticsearch (``misp_ti.testing.es_model``).

No Elasticsearch runs here, so these tests drive misp-ti's real client,
provisioning, bulk writer and housekeeping over HTTP into a model of the
server's rules written from Elasticsearch's source (each rule cites its file
there). What they show is only as true as the model; ``test_es_cluster.py``
runs the same scenario (:mod:`helpers.es_scenario`) against a real cluster when one
exists.

The scenario: the MISP simulator serves the shipped real events; the engine
backfills both streams into the embedded store *and* Elasticsearch, then
polls every 6 hours for three simulated days while attributes are edited,
soft-deleted and added and others expire. At every step the set of IOCs a
search through each stream's alias returns equals the embedded store's
active set (DESIGN: both must give the same answer).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.ecs_validation import ecs_fields
from helpers.es_scenario import DATASETS, ModelBackend, Scenario, alias_keys, store_keys
from misp_ti.sinks.elasticsearch import assets
from misp_ti.testing.es_model import ModelCluster
from misp_ti.testing.es_model.rules import threat_hits

VERSIONS = [(8, 13), (8, 19), (9, 2)]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
def test_alias_equals_the_embedded_store_at_every_step(tmp_path: Path, version: tuple[int, int]) -> None:
    with Scenario(tmp_path, ModelBackend(version)) as sc:
        sc.provision()
        sc.poll_and_settle()
        steps = sc.compare_everywhere()
        assert steps["active"] > 50  # the comparison is about something
        for poll in range(8):
            now = sc.clock.now()
            sc.compare_at(now + timedelta(minutes=37))
            # two hours into the interval the analysts work; the IPs they add
            # expire a day later, between two polls, when only the alias
            # filter can hide them
            sc.clock.set(now + timedelta(hours=2))
            sc.mutate(poll)
            for minutes in (61, 181):
                sc.compare_at(sc.clock.now() + timedelta(minutes=minutes))
            sc.clock.set(now - sc.settle_time + sc.interval)
            sc.poll_and_settle()
            sc.compare_everywhere()
        # the two days really moved the view: the IPs added in the first
        # 24 hours (valid a day) expired, soft-deleted IOCs left it
        end = sc.clock.now()
        expired = [u for u in sc.inserts[:8] if ("ti_misp.threat_attributes", u) not in store_keys(sc.store, "threat_attributes", end)]
        assert len(expired) == 8 and sc.left_active >= 8 + 1, (len(expired), sc.left_active)
        assert sc.edits and sc.deletes


def test_with_the_transform_stopped_the_alias_is_exact_to_the_second(tmp_path: Path) -> None:
    with Scenario(tmp_path, ModelBackend((8, 19))) as sc:
        sc.provision()
        # an IP valid for a day (by_type): inside the prebuilt rules' 30-day window
        uuid = sc.sim.add_attribute(type="ip-dst", value="203.0.113.9", to_ids=True)["uuid"]
        sc.poll_and_settle()
        cluster = sc.backend.cluster
        for stream in sc.streams:
            assert cluster.handle("POST", f"/_transform/{assets.transform_id(stream)}/_stop").status == 200
        stream, rule = "threat_attributes", "address"
        key = (f"ti_misp.{stream}", uuid)
        doc = next(d for d in sc.store.active(now=sc.clock.now(), dataset=key[0]) if d["misp"]["attribute"]["uuid"] == uuid)
        decayed_at = parse_date(doc["misp"]["attribute"]["decayed_at"])
        assert sc.clock.now() + timedelta(hours=23) < decayed_at
        before, after = decayed_at - timedelta(seconds=1), decayed_at + timedelta(seconds=1)
        assert key in alias_keys(cluster, stream, before)
        assert key not in alias_keys(cluster, stream, after)
        assert key in store_keys(sc.store, stream, before) and key not in store_keys(sc.store, stream, after)
        # the prebuilt rule reads logs-ti_*: it reaches the destination only
        # through the filtered alias, so it is exact too
        assert uuid in {h["_source"]["misp"]["attribute"]["uuid"] for h in threat_hits(cluster, rule, now=before)}
        assert uuid not in {h["_source"]["misp"]["attribute"]["uuid"] for h in threat_hits(cluster, rule, now=after)}
        # the destination itself still holds it (the transform is stopped, and
        # its retention would need new data anyway); the next poll, quiet as it
        # is, removes it and every other expired IOC
        dest = assets.dest_index(stream)
        assert uuid in {d["misp"]["attribute"]["uuid"] for d in cluster.documents(dest).values()}
        sc.clock.set(after)
        sc.poll()
        left = cluster.documents(dest).values()
        assert uuid not in {d["misp"]["attribute"]["uuid"] for d in left}
        assert all(parse_date(d["misp"]["attribute"]["decayed_at"]) > after and not d["misp"]["attribute"]["decayed"] for d in left)
        assert len(left) == len(store_keys(sc.store, stream, after))


def parse_date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


RULE_FIELDS = {
    "address": ("threat.indicator.ip",),
    "email": ("threat.indicator.email.address",),
    "hash": ("threat.indicator.file.hash.", "threat.indicator.file.pe.imphash"),
    "registry": ("threat.indicator.registry.path",),
    "url": ("threat.indicator.url.full",),
}


def flat_keys(doc: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if value == []:
            # Elasticsearch maps a field from its first value: an empty array
            # (MISP 2.5.1 sends Event.CryptographicKey: []) makes no field
            continue
        keys |= flat_keys(value, path + ".") if isinstance(value, dict) else {path}
    return keys


def rule_selects(rule: str, doc: dict[str, Any], now: datetime) -> bool:
    """What each rule's threat query and filters ask, written out by hand (not
    through the model's KQL and query code): the indicator field present, the
    ``@timestamp >= "now-30d/d"`` window, and the three threat filters."""
    since = (now - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
    fields = flat_keys(doc)
    has_field = any(f == want or (want.endswith(".") and f.startswith(want)) for f in fields for want in RULE_FIELDS[rule])
    event = doc.get("event", {})
    return (has_field and parse_date(doc["@timestamp"]) >= since and "threat" in event.get("category", [])
            and event.get("kind") == "enrichment" and "indicator" in event.get("type", []))


def test_prebuilt_rules_select_the_latest_view_and_no_source_document(tmp_path: Path) -> None:
    with Scenario(tmp_path, ModelBackend((8, 19))) as sc:
        sc.provision()
        sc.poll_and_settle()
        cluster = sc.backend.cluster
        now = sc.clock.now()
        dests = {assets.dest_index(s) for s in sc.streams}
        active = [d for s in sc.streams for d in sc.store.active(now=now, dataset=f"ti_misp.{s}")]
        total = 0
        for rule in RULE_FIELDS:
            hits = threat_hits(cluster, rule, now=now)
            # never a raw copy from the source streams (labelled is_ioc_transform_source)
            assert {h["_index"] for h in hits} <= dests
            got = {(h["_source"]["event"]["dataset"], h["_source"]["misp"]["attribute"]["uuid"]) for h in hits}
            expected = {(d["event"]["dataset"], d["misp"]["attribute"]["uuid"]) for d in active if rule_selects(rule, d, now)}
            assert got == expected, rule
            total += len(got)
        assert total > 10  # the sample's recent events have IPs, URLs and hashes
        # valid IOCs outside the rules' 30-day window exist and are not selected (see docs)
        assert any(not rule_selects(r, d, now) and rule_selects(r, d, datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00")))
                   for d in active for r in RULE_FIELDS)


INTEGRATION_FIELDS = json.loads((Path(__file__).parents[2] / "data" / "es" / "ti_misp-latest-fields.json").read_text())["fields"]
#: Where our mapping deliberately differs from ECS 8.11 or the integration's fields.yml, and why.
TYPE_DEVIATIONS = {
    # dates are dates: the integration's pipeline writes dates there but maps them keyword
    "misp.attribute.first_seen": ("keyword", "date"),
    "misp.attribute.last_seen": ("keyword", "date"),
    # ECS maps event.original keyword; it is never searched, so neither indexed nor in doc values
    # (ecs@mappings does the same since 8.14): still a keyword
}


def expected_type(field: str) -> str | None:
    """ECS 8.11's type, the integration's for ``misp.*``, or our extensions'; None: no rule."""
    if field in TYPE_DEVIATIONS:
        return TYPE_DEVIATIONS[field][1]
    if field.startswith("misp."):
        return INTEGRATION_FIELDS.get(field)
    ecs = ecs_fields().get(field)
    return ecs["type"] if ecs else None


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_field_has_the_same_type_in_the_sources_and_the_latest_view(tmp_path: Path, dataset: str) -> None:
    """Both streams, every MISP type (``strategies``: one event per type from
    the kit's strategies) or the real sample: each field a document brought
    gets the same type in its source data stream and in its latest view (as
    a data view sees it, ``MappedFieldType.familyTypeName``), and that type
    is ECS 8.11's, or the integration's ``fields.yml`` for ``misp.*``."""
    with Scenario(tmp_path, ModelBackend((8, 19)), dataset=dataset) as sc:
        sc.provision()
        sc.poll_and_settle()
        cluster = sc.backend.cluster
        checked = 0
        for stream in sc.streams:
            source = cluster.field_types(assets.data_stream(stream, "default"))
            dest = cluster.field_types(assets.dest_index(stream))
            brought = {f for d in cluster.documents(assets.data_stream(stream, "default")).values() for f in flat_keys(d)}
            assert len(brought) > 40
            for field in sorted(brought):
                assert field in source and field in dest, (stream, field)
                assert family(source[field]) == family(dest[field]), (stream, field, source[field], dest[field])
                want = expected_type(field)
                if want is not None:
                    assert source[field] == want or (field, source[field]) in ECS_EQUIVALENT, (stream, field, source[field], want)
                    checked += 1
            assert source["event.module"] == dest["event.module"] == "constant_keyword"
        assert checked > 60


#: Types a field may have instead of ECS's, as ECS itself allows (``constant_keyword`` is a keyword).
ECS_EQUIVALENT = {
    ("event.module", "constant_keyword"),
    ("event.dataset", "keyword"),
}


def family(kind: str) -> str:
    """Field caps' family type (``MappedFieldType.familyTypeName``): what a data view sees."""
    return {"constant_keyword": "keyword", "wildcard": "keyword", "match_only_text": "text"}.get(kind, kind)


def test_a_document_that_does_not_fit_lands_in_the_failure_store_and_is_reported(tmp_path: Path) -> None:
    with Scenario(tmp_path, ModelBackend((9, 2))) as sc:
        sc.provision()
        cluster: ModelCluster = sc.backend.cluster
        bad = {"_id": "bad-1", "@timestamp": "2026-03-01T00:00:00Z", "event": {"dataset": "ti_misp.threat_attributes", "module": "not-ti_misp"},
               "misp": {"attribute": {"uuid": "bad-1", "decayed_at": "2030-01-01T00:00:00Z", "decayed": False}}}
        report = sc.write_docs("threat_attributes", [bad])
        assert (report.delivered, report.failure_stored) == (0, 1)
        ds = cluster.state.data_streams[assets.data_stream("threat_attributes", "default")]
        assert len(ds.failure_docs) == 1
        assert "bad-1" not in cluster.documents(assets.data_stream("threat_attributes", "default"))
