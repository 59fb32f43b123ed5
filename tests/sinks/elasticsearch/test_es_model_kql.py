"""KQL -> DSL as Kibana's kbn-es-query emits it, and the prebuilt indicator-match rules' threat search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from misp_ti.testing.es_model.kql import KqlSyntaxError, build_es_query, kql_to_dsl
from misp_ti.testing.es_model.mappings import Mapping, ModelUnsupported
from misp_ti.testing.es_model.rules import RULES, threat_hits, threat_query
from misp_ti.testing.es_model.state import AliasMeta, ClusterState, DataStreamMeta, IndexMeta


def should(*queries: dict) -> dict:
    return {"bool": {"should": list(queries), "minimum_should_match": 1}}


def test_exists_match_all_and_empty_query() -> None:
    assert kql_to_dsl("threat.indicator.ip:*") == should({"exists": {"field": "threat.indicator.ip"}})
    assert kql_to_dsl("*:*") == {"match_all": {}}
    assert kql_to_dsl("   ") == {"match_all": {}}


def test_value_list_with_wildcard_depends_on_the_field_being_keyword() -> None:
    text = "event.module:(threatintel or ti_*)"
    assert kql_to_dsl(text, {"event.module": "keyword"}) == should(
        should({"term": {"event.module": {"value": "threatintel"}}}),
        should({"wildcard": {"event.module": {"value": "ti_*"}}}))
    assert kql_to_dsl(text) == should(
        should({"match": {"event.module": "threatintel"}}),
        should({"query_string": {"fields": ["event.module"], "query": "ti_*"}}))


def test_field_name_wildcards_expand_or_pass_through_as_is() -> None:
    fields = {"threat.indicator.file.hash.md5": "keyword", "threat.indicator.file.hash.sha256": "keyword", "x": "keyword"}
    assert kql_to_dsl("threat.indicator.file.hash.*:*", fields) == should(
        {"exists": {"field": "threat.indicator.file.hash.md5"}}, {"exists": {"field": "threat.indicator.file.hash.sha256"}})
    assert kql_to_dsl("threat.indicator.file.hash.*:*") == should({"exists": {"field": "threat.indicator.file.hash.*"}})


def test_ranges_and_dates_take_the_time_zone_only_when_the_field_is_a_date() -> None:
    assert kql_to_dsl('@timestamp >= "now-30d/d"', {"@timestamp": "date"}, date_format_tz="Zulu") == should(
        {"range": {"@timestamp": {"gte": "now-30d/d", "time_zone": "Zulu"}}})
    assert kql_to_dsl('@timestamp >= "now-30d/d"', date_format_tz="Zulu") == should({"range": {"@timestamp": {"gte": "now-30d/d"}}})
    assert kql_to_dsl("ts:2024-01-01", {"ts": "date"}) == should({"range": {"ts": {"gte": "2024-01-01", "lte": "2024-01-01"}}})
    assert kql_to_dsl("n < 5") == should({"range": {"n": {"lt": "5"}}})


def test_boolean_structure_phrases_and_literals() -> None:
    assert kql_to_dsl('a:1 and not b:"x y"') == {"bool": {"filter": [
        should({"match": {"a": "1"}}), {"bool": {"must_not": should({"match_phrase": {"b": "x y"}})}}]}}
    assert kql_to_dsl("a:1 or (b:2 and c:3)") == should(
        should({"match": {"a": "1"}}), {"bool": {"filter": [should({"match": {"b": "2"}}), should({"match": {"c": "3"}})]}})
    assert kql_to_dsl("msg:hello world") == should({"match": {"msg": "hello world"}})  # spaces belong to the value
    assert kql_to_dsl("flag:true") == should({"match": {"flag": True}})
    assert kql_to_dsl(r"k:a\*", {"k": "keyword"}) == should({"term": {"k": {"value": "a*"}}})  # escaped: not a wildcard
    assert kql_to_dsl("AND:x OR y:z") == should(should({"match": {"AND": "x"}}), should({"match": {"y": "z"}}))


def test_bad_or_unmodelled_kql_is_refused() -> None:
    with pytest.raises(KqlSyntaxError):
        kql_to_dsl("a:(b")
    with pytest.raises(ModelUnsupported):
        kql_to_dsl("a:{ b:1 }")


def test_build_es_query_puts_filters_beside_the_kql() -> None:
    flt = {"meta": {"negate": False}, "query": {"match_phrase": {"event.kind": "enrichment"}}}
    assert build_es_query("a:1", [flt]) == {"bool": {"must": [], "filter": [should({"match": {"a": "1"}}),
                                                                             {"match_phrase": {"event.kind": "enrichment"}}],
                                                     "should": [], "must_not": []}}


# ------------------------------------------------------------------ prebuilt rules
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KEYWORDS = ["event.category", "event.kind", "event.type", "event.module", "labels.is_ioc_transform_source",
            "threat.indicator.url.full", "threat.indicator.file.hash.sha256", "threat.indicator.email.address"]


def _mapping() -> Mapping:
    props: dict = {"@timestamp": {"type": "date"}, "misp": {"properties": {"decayed_at": {"type": "date"}}},
                   "threat": {"properties": {"indicator": {"properties": {"ip": {"type": "ip"}}}}}}
    for name in KEYWORDS:
        node = props
        *parents, leaf = name.split(".")
        for parent in parents:
            node = node.setdefault(parent, {"properties": {}})["properties"]
        node[leaf] = {"type": "keyword"}
    return Mapping.from_body({"properties": props})


def _doc(ts: datetime, **extra: object) -> dict:
    return {"@timestamp": ts.isoformat(), "event": {"category": "threat", "kind": "enrichment", "type": "indicator",
                                                  "module": "ti_misp"}, **extra}


@pytest.fixture
def cluster() -> ClusterState:
    st = ClusterState(clock=lambda: NOW)
    alive = {"range": {"misp.decayed_at": {"gt": "now"}}}
    later = (NOW + timedelta(days=5)).isoformat()
    st.indices["misp-ti-latest.threat_attributes-2"] = IndexMeta(
        name="misp-ti-latest.threat_attributes-2", settings={"index.hidden": True}, mapping=_mapping(),
        aliases={"logs-ti_misp_latest.threat_attributes": AliasMeta(filter=alive)}, docs={
            "valid": _doc(NOW - timedelta(days=2), threat={"indicator": {"ip": "203.0.113.7"}}, misp={"decayed_at": later}),
            "expired": _doc(NOW - timedelta(days=2), threat={"indicator": {"ip": "203.0.113.8"}},
                            misp={"decayed_at": (NOW - timedelta(hours=1)).isoformat()}),
            "old": _doc(NOW - timedelta(days=31), threat={"indicator": {"ip": "203.0.113.9"}}, misp={"decayed_at": later}),
            "url": _doc(NOW, threat={"indicator": {"url": {"full": "http://x"}}}, misp={"decayed_at": later}),
            "hash": _doc(NOW, threat={"indicator": {"file": {"hash": {"sha256": "ab"}}}}, misp={"decayed_at": later}),
        })
    backing = ".ds-logs-ti_misp.threat_attributes-default-000001"
    st.indices[backing] = IndexMeta(name=backing, settings={"index.hidden": True}, mapping=_mapping(),
                                    data_stream="logs-ti_misp.threat_attributes-default", docs={
        "raw": _doc(NOW, threat={"indicator": {"ip": "203.0.113.7"}}, labels={"is_ioc_transform_source": "true"})})
    st.data_streams["logs-ti_misp.threat_attributes-default"] = DataStreamMeta(
        name="logs-ti_misp.threat_attributes-default", template="t", backing=[backing])
    return st


@pytest.mark.parametrize("with_fields", [True, False])
def test_address_rule_sees_only_valid_recent_latest_documents(cluster: ClusterState, with_fields: bool) -> None:
    hits = threat_hits(cluster, "address", now=NOW, with_fields=with_fields)
    # "expired": alias filter; "old": @timestamp >= now-30d/d; "raw": not labels.is_ioc_transform_source:"true"
    assert {h["_id"] for h in hits} == {"valid"}


def test_thirty_day_window_is_rounded_down_to_the_day(cluster: ClusterState) -> None:
    day_start = datetime(2026, 2, 8, tzinfo=UTC)  # now-30d/d for NOW
    cluster.indices["misp-ti-latest.threat_attributes-2"].docs["old"]["@timestamp"] = day_start.isoformat()
    assert {h["_id"] for h in threat_hits(cluster, "address", now=NOW)} == {"valid", "old"}


def test_other_rules_select_their_indicator_fields(cluster: ClusterState) -> None:
    assert {h["_id"] for h in threat_hits(cluster, "url", now=NOW)} == {"url"}
    assert {h["_id"] for h in threat_hits(cluster, "hash", now=NOW)} == {"hash"}
    assert threat_hits(cluster, "email", now=NOW) == [] and threat_hits(cluster, "registry", now=NOW) == []


def test_rule_data_is_quoted_with_its_source() -> None:
    assert RULES["address"]["rule_id"] == "0c41e478-5263-4c69-8f9e-7dfd2c22da64"
    assert all(r["threat_query"].startswith('@timestamp >= "now-30d/d"') for r in RULES.values())
    query = threat_query(ClusterState(), "address", with_fields=False)
    assert query["bool"]["filter"][1:] == [{"match_phrase": {"event.category": "threat"}},
                                           {"match_phrase": {"event.kind": "enrichment"}},
                                           {"match_phrase": {"event.type": "indicator"}}]
