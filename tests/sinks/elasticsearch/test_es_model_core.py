"""The cluster core of the Elasticsearch model: each modelled rule, accepting and refusing as Elasticsearch
would (messages paraphrased from the source each rule cites in ``misp_ti.testing.es_model``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from misp_ti.testing.es_model import ManualClock, ModelCluster
from misp_ti.testing.es_model.builtins import component

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DS = "logs-ti_misp.threat_attributes-default"


def ok(answer: Any) -> Any:
    assert 200 <= answer.status < 300, answer.body
    return answer.body


def err(answer: Any, status: int, type_: str, contains: str = "") -> str:
    assert answer.status == status, answer.body
    error = answer.body["error"]
    assert error["type"] == type_, error
    assert error["root_cause"][0]["type"] == type_
    assert contains in error["reason"], error["reason"]
    return str(error["reason"])


def bulk(cluster: ModelCluster, *pairs: tuple[dict[str, Any], dict[str, Any] | None], path: str = "/_bulk", **params: Any) -> list[dict[str, Any]]:
    lines = []
    for action, source in pairs:
        lines.append(json.dumps(action))
        if source is not None:
            lines.append(json.dumps(source))
    body = ok(cluster.handle("POST", path, params, "\n".join(lines) + "\n"))
    return [next(iter(item.values())) for item in body["items"]]


def create(cluster: ModelCluster, target: str, doc_id: str, source: dict[str, Any]) -> dict[str, Any]:
    return bulk(cluster, ({"create": {"_index": target, "_id": doc_id}}, source))[0]


def ds_template(cluster: ModelCluster, name: str = "t", pattern: str = "logs-ti_misp.*-*", priority: int = 250, **template: Any) -> None:
    body = {"index_patterns": [pattern], "priority": priority, "data_stream": {},
            "composed_of": ["logs@mappings", "logs@settings", "ecs@mappings"], "template": template}
    ok(cluster.handle("PUT", f"/_index_template/{name}", body=body))


def doc(**extra: Any) -> dict[str, Any]:
    return {"@timestamp": "2026-03-01T12:00:00Z", **extra}


# -- built-in templates per version --------------------------------------------------------------

@pytest.mark.parametrize("version", [(8, 13), (8, 15), (8, 19), (9, 0), (9, 2)])
def test_builtin_logs_template(version: tuple[int, int]) -> None:
    cluster = ModelCluster(version=version)
    found = ok(cluster.handle("GET", "/_index_template/logs"))["index_templates"][0]["index_template"]
    assert found["index_patterns"] == ["logs-*-*"] and found["priority"] == 100 and "data_stream" in found
    assert found["composed_of"] == ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"]
    assert found["ignore_missing_component_templates"] == ["logs@custom"]
    settings = ok(cluster.handle("GET", "/_component_template/logs@settings"))["component_templates"][0]["component_template"]
    index = settings["template"]["settings"]["index"]
    assert index["default_pipeline"] == "logs@default-pipeline" and index["mapping"]["ignore_malformed"] == "true"
    assert index["mapping"]["total_fields"]["ignore_dynamic_beyond_limit"] == "true"
    assert ("data_stream_options" in settings["template"]) == (version >= (9, 2))


def test_builtin_templates_can_be_left_out() -> None:
    cluster = ModelCluster(builtin_templates=False)
    err(cluster.handle("GET", "/_component_template/ecs@mappings"), 404, "resource_not_found_exception",
        "component template matching [ecs@mappings] not found")


def test_versions_before_8_13_are_refused() -> None:
    with pytest.raises(ValueError, match="8.13"):
        ModelCluster(version=(8, 11))


@pytest.mark.parametrize(("version", "first_seen", "original_indexed"), [
    ((8, 13), "keyword", None), ((8, 15), "keyword", False), ((8, 15, 2), "date", False), ((9, 2), "date", False)])
def test_ecs_mappings_per_version(version: tuple[int, ...], first_seen: str, original_indexed: bool | None) -> None:
    cluster = ModelCluster(version=version)
    ok(cluster.handle("PUT", f"/_data_stream/{DS}"))
    item = create(cluster, DS, "a", doc(
        message="hello", event={"original": "{}"}, url={"full": "http://x"}, source={"ip": "192.0.2.1"},
        threat={"indicator": {"first_seen": "2026-01-01T00:00:00Z", "name": "x"}}, labels={"n": 7}))
    assert item["status"] == 201
    types = cluster.field_types(DS)
    assert types["threat.indicator.first_seen"] == first_seen  # ecs_date gained *.indicator.* in 8.15.2
    assert types["source.ip"] == "ip" and types["url.full"] == "wildcard" and types["message"] == "match_only_text"
    assert types["threat.indicator.name"] == "keyword" and types["labels.n"] == "long"
    assert types["data_stream.type"] == "constant_keyword"
    leaf = cluster.state.indices[cluster.state.data_streams[DS].write_index].mapping.leaf_fields()
    assert leaf["event.original"].get("index") is original_indexed
    assert leaf["threat.indicator.name.text"]["type"] == "match_only_text"


def test_ecs_mappings_component_is_restated_for_gen_ai_from_9_1() -> None:
    names = lambda v: [next(iter(t)) for t in component(v, "ecs@mappings")["template"]["mappings"]["dynamic_templates"]]  # noqa: E731
    assert "ecs_gen_ai_text" in names((9, 1)) and "ecs_gen_ai_text" not in names((9, 0))
    assert names((9, 2))[-1] == "all_strings_to_keywords"


# -- failure store (9.2 logs@settings) and ignore_malformed (logs@settings) -------------------------

def test_failure_store_is_on_for_logs_data_streams_from_9_2() -> None:
    cluster = ModelCluster(version=(9, 2))
    ok(cluster.handle("PUT", f"/_data_stream/{DS}"))
    assert ok(cluster.handle("GET", f"/_data_stream/{DS}"))["data_streams"][0]["failure_store"]["enabled"] is True
    create(cluster, DS, "a", doc(misp={"x": "text"}))
    item = create(cluster, DS, "b", doc(misp={"x": {"nested": 1}}))
    assert item["status"] == 201 and item["failure_store"] == "used" and item["_index"].startswith(f".fs-{DS}-")
    assert "b" not in cluster.documents(DS)
    stored = cluster.state.data_streams[DS].failure_docs[0]
    assert stored["document"]["id"] == "b" and "failed to parse field [misp.x] of type [keyword]" in stored["error"]["message"]


def test_without_failure_store_a_mapping_failure_is_a_400_item() -> None:
    cluster = ModelCluster(version=(9, 0))
    ok(cluster.handle("PUT", f"/_data_stream/{DS}"))
    create(cluster, DS, "a", doc(misp={"x": "text"}))
    item = create(cluster, DS, "b", doc(misp={"x": {"nested": 1}}))
    assert item["status"] == 400 and item["failure_store"] == "not_enabled"
    assert item["error"]["type"] == "document_parsing_exception"
    assert "Preview of field's value: '{nested=1}'" in item["error"]["reason"]


def test_logs_settings_ignore_malformed_sends_bad_values_to_ignored_but_not_timestamp() -> None:
    cluster = ModelCluster(version=(8, 15))
    ok(cluster.handle("PUT", f"/_data_stream/{DS}"))
    assert create(cluster, DS, "a", doc(source={"ip": "not-an-ip"}))["status"] == 201  # ignored, not refused
    item = create(cluster, DS, "b", {"@timestamp": "yesterday"})  # ecs_timestamp: ignore_malformed false
    assert item["status"] == 400 and "failed to parse field [@timestamp] of type [date]" in item["error"]["reason"]
    keyword_object = create(cluster, DS, "c", doc(host={"name": {"x": 1}}))  # keyword has no ignore_malformed
    assert keyword_object["status"] == 400
    concrete_into_object = create(cluster, DS, "d", doc(source="plain"))  # object/leaf: never ignored
    assert concrete_into_object["status"] == 400
    assert "object mapping for [source] tried to parse field [source] as object, but found a concrete value" in concrete_into_object["error"]["reason"]


# -- template API and resolution ----------------------------------------------------------------

def test_equal_priority_overlapping_templates_are_refused() -> None:
    cluster = ModelCluster()
    ds_template(cluster, "a", "logs-ti_misp.a-*", 250)
    reason = err(cluster.handle("PUT", "/_index_template/b", body={"index_patterns": ["logs-ti_misp.*"], "priority": 250}),
                 400, "illegal_argument_exception", "index template [b] has index patterns [logs-ti_misp.*] matching patterns from existing templates [a]")
    assert "that have the same priority [250]" in reason
    ok(cluster.handle("PUT", "/_index_template/b", body={"index_patterns": ["logs-ti_misp.*"], "priority": 251}))
    ok(cluster.handle("PUT", "/_index_template/c", body={"index_patterns": ["other-*"], "priority": 250}))  # no overlap


def test_missing_component_templates_unless_ignored() -> None:
    cluster = ModelCluster()
    body: dict[str, Any] = {"index_patterns": ["x-*"], "composed_of": ["logs@mappings", "nope@custom"]}
    err(cluster.handle("PUT", "/_index_template/x", body=body), 400, "invalid_index_template_exception",
        "index template [x] specifies component templates [nope@custom] that do not exist")
    body["ignore_missing_component_templates"] = ["other"]
    err(cluster.handle("PUT", "/_index_template/x", body=body), 400, "invalid_index_template_exception",
        "is not part of 'ignore_missing_component_templates'")
    body["ignore_missing_component_templates"] = ["nope@custom"]
    ok(cluster.handle("PUT", "/_index_template/x", body=body))


def test_get_index_template_answers() -> None:
    cluster = ModelCluster()
    missing = cluster.handle("GET", "/_index_template/logs-ti_misp*")
    assert missing.status == 404 and missing.body == {"index_templates": []}  # empty wildcard: 404, no error
    err(cluster.handle("GET", "/_index_template/misp-ti.x"), 404, "resource_not_found_exception", "index template matching [misp-ti.x] not found")
    ds_template(cluster, "logs-ti_misp.x")
    assert [t["name"] for t in ok(cluster.handle("GET", "/_index_template/logs-ti_misp*"))["index_templates"]] == ["logs-ti_misp.x"]


def test_highest_priority_template_wins_and_composition_order() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/_component_template/c1", body={"template": {"mappings": {"properties": {"f": {"type": "keyword"}, "g": {"type": "long"}}}}}))
    ok(cluster.handle("PUT", "/_component_template/c2", body={"template": {"mappings": {"properties": {"f": {"type": "ip"}}}}}))
    ok(cluster.handle("PUT", "/_index_template/low", body={"index_patterns": ["app-*"], "priority": 1}))
    ok(cluster.handle("PUT", "/_index_template/high", body={"index_patterns": ["app-x*"], "priority": 5, "composed_of": ["c1", "c2"],
                                                           "template": {"mappings": {"properties": {"g": {"type": "keyword"}}}}}))
    ok(cluster.handle("PUT", "/app-x1"))  # no body: the template gives everything
    assert cluster.field_types("app-x1") == {"f": "ip", "g": "keyword"}  # later component, then the template itself
    ok(cluster.handle("PUT", "/app-y1", body={"mappings": {"properties": {"h": {"type": "date"}}}}))
    assert cluster.field_types("app-y1") == {"h": "date"}


def test_object_versus_leaf_in_composition_is_refused() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/_component_template/obj", body={"template": {"mappings": {"properties": {"a": {"properties": {"b": {"type": "keyword"}}}}}}}))
    body = {"index_patterns": ["z-*"], "composed_of": ["obj"], "template": {"mappings": {"properties": {"a": {"type": "keyword"}}}}}
    answer = cluster.handle("PUT", "/_index_template/z", body=body)
    err(answer, 400, "illegal_argument_exception", "composable template [z] template after composition with component templates [obj] is invalid")
    assert "can't merge a non object mapping [a] with an object mapping" in answer.body["error"]["caused_by"]["reason"]


def test_model_refuses_todays_destination_index() -> None:
    """misp-ti's v1 provisioning created a plain index under logs-*-*: a stock cluster refuses it."""
    from misp_ti.sinks.elasticsearch import assets
    body = assets.dest_index_body() if hasattr(assets, "dest_index_body") else {"settings": {"index": {"number_of_shards": 1}}, "mappings": {"properties": {}}}
    cluster = ModelCluster(version=(8, 15))
    err(cluster.handle("PUT", "/logs-ti_misp_latest.dest_threat_attributes-1", body=body), 400, "illegal_argument_exception",
        "cannot create index with name [logs-ti_misp_latest.dest_threat_attributes-1], because it matches with template [logs] "
        "that creates data streams only, use create data stream api instead")
    assert "logs-ti_misp_latest.dest_threat_attributes-1" not in cluster.state.indices
    # the same refusal on auto-create from a write and for a plain index that only data stream templates match
    item = bulk(cluster, ({"index": {"_index": "logs-ti_misp_latest.dest_threat_attributes-1", "_id": "x"}}, {"a": 1}))[0]
    assert item["status"] == 400 and "only write ops with an op_type of create are allowed in data streams" in item["error"]["reason"]


def test_a_plain_template_above_logs_lets_a_plain_index_be_created() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/_index_template/dest", body={"index_patterns": ["logs-ti_misp_latest.*"], "priority": 200,
                                                           "template": {"settings": {"index.hidden": True}}}))
    ok(cluster.handle("PUT", "/logs-ti_misp_latest.dest_threat_attributes-1"))
    assert cluster.state.indices["logs-ti_misp_latest.dest_threat_attributes-1"].hidden


def test_a_template_may_not_orphan_an_existing_data_stream() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", f"/_data_stream/{DS}"))
    err(cluster.handle("PUT", "/_index_template/plain", body={"index_patterns": ["logs-ti_misp.*"], "priority": 300}), 400,
        "illegal_argument_exception", f"and no data stream configuration would cause data streams [{DS}] to no longer match a data stream template")


def test_data_stream_creation_needs_a_data_stream_template() -> None:
    cluster = ModelCluster(builtin_templates=False)
    err(cluster.handle("PUT", "/_data_stream/app-x"), 400, "illegal_argument_exception", "no matching index template found for data stream [app-x]")
    ok(cluster.handle("PUT", "/_index_template/t", body={"index_patterns": ["app-*"]}))
    err(cluster.handle("PUT", "/_data_stream/app-x"), 400, "illegal_argument_exception",
        "matching index template [t] for data stream [app-x] has no data stream template")
    err(cluster.handle("PUT", "/App-x"), 400, "invalid_index_name_exception", "must be lowercase")


def test_backing_indices_rollover_and_ids_per_backing_index() -> None:
    clock = ManualClock(T0)
    cluster = ModelCluster(clock=clock)
    ds_template(cluster)
    ok(cluster.handle("PUT", f"/_data_stream/{DS}"))
    err(cluster.handle("PUT", f"/_data_stream/{DS}"), 400, "resource_already_exists_exception", f"data_stream [{DS}] already exists")
    first = ok(cluster.handle("GET", f"/_data_stream/{DS}"))["data_streams"][0]
    assert [i["index_name"] for i in first["indices"]] == [f".ds-{DS}-2026.03.01-000001"] and first["template"] == "t"
    assert create(cluster, DS, "a", doc())["status"] == 201
    conflict = create(cluster, DS, "a", doc())
    assert conflict["status"] == 409 and conflict["error"]["type"] == "version_conflict_engine_exception"
    assert conflict["error"]["reason"] == "[a]: version conflict, document already exists (current version [1])"
    ds_template(cluster, mappings={"properties": {"misp": {"properties": {"n": {"type": "keyword"}}}}})
    clock.advance(timedelta(days=1))
    rolled = ok(cluster.handle("POST", f"/{DS}/_rollover"))
    assert rolled["new_index"] == f".ds-{DS}-2026.03.02-000002" and rolled["rolled_over"] is True
    assert cluster.field_types(DS)["misp.n"] == "keyword"  # the changed template reaches the new write index
    assert create(cluster, DS, "a", doc())["status"] == 201  # the id check is per backing index
    assert len(ok(cluster.handle("GET", f"/{DS}/_mapping"))) == 2
    err(cluster.handle("DELETE", f"/.ds-{DS}-2026.03.02-000002"), 400, "illegal_argument_exception", "is the write index for data stream")
    ok(cluster.handle("DELETE", f"/.ds-{DS}-2026.03.01-000001"))


def test_get_mapping_shapes_hidden_and_missing() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/dest-1", body={"settings": {"index": {"hidden": True}}, "mappings": {"_meta": {"v": 1}, "properties": {"a": {"type": "keyword"}}}}))
    assert ok(cluster.handle("GET", "/dest-1/_mapping")) == {"dest-1": {"mappings": {"_meta": {"v": 1}, "properties": {"a": {"type": "keyword"}}}}}
    assert ok(cluster.handle("GET", "/dest-*/_mapping")) == {}  # hidden: not matched by a default wildcard
    assert list(ok(cluster.handle("GET", "/dest-*/_mapping", {"expand_wildcards": "all"}))) == ["dest-1"]
    err(cluster.handle("GET", "/dest-2/_mapping"), 404, "index_not_found_exception", "no such index [dest-2]")
    assert cluster.handle("HEAD", "/dest-2").status == 404 and cluster.handle("HEAD", "/dest-1").status == 200
    err(cluster.handle("DELETE", "/dest-*"), 400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed")
    ok(cluster.handle("DELETE", "/dest-1"))
    err(cluster.handle("PUT", "/dest-3", body={"setings": {}}), 400, "parse_exception", "unknown key [setings] for create index")


def test_ilm_policies_and_pipelines_round_trip() -> None:
    cluster = ModelCluster()
    err(cluster.handle("GET", "/_ilm/policy/p"), 404, "resource_not_found_exception", "Lifecycle policy not found: [p]")
    policy = {"phases": {"hot": {"actions": {"rollover": {"max_age": "2d"}}}}, "_meta": {"v": 1}}
    ok(cluster.handle("PUT", "/_ilm/policy/p", body={"policy": policy}))
    assert ok(cluster.handle("GET", "/_ilm/policy/p"))["p"]["policy"] == policy
    missing = cluster.handle("GET", "/_ingest/pipeline/x")
    assert missing.status == 404 and missing.body == {}
    body = {"processors": [{"set": {"field": "event.ingested", "copy_from": "_ingest.timestamp"}}], "_meta": {"v": 1}}
    ok(cluster.handle("PUT", "/_ingest/pipeline/x", body=body))
    assert ok(cluster.handle("GET", "/_ingest/pipeline/x")) == {"x": body}
    refused = cluster.handle("PUT", "/_ingest/pipeline/y", body={"processors": [{"script": {"source": "1"}}]})
    err(refused, 501, "model_unsupported_exception", "the ingest processor [script]")


# -- field types ------------------------------------------------------------------------------------

def test_default_dynamic_mapping() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/plain"))
    bulk(cluster, ({"index": {"_index": "plain", "_id": "1"}}, {
        "s": "word", "d": "2026-03-01T12:00:00Z", "slashed": "2026/03/01", "n": 3, "f": 1.5, "b": True, "nothing": None,
        "a.b": "dotted", "arr": [1, 2], "o": {"p": "q"}}))
    types = cluster.field_types("plain")
    assert types == {"s": "text", "s.keyword": "keyword", "d": "date", "slashed": "date", "n": "long", "f": "float", "b": "boolean",
                     "a.b": "text", "a.b.keyword": "keyword", "arr": "long", "o.p": "text", "o.p.keyword": "keyword"}
    assert cluster.state.indices["plain"].mapping.leaf_fields()["s.keyword"]["ignore_above"] == 256


def test_first_document_fixes_the_type_and_later_ones_are_checked() -> None:
    cluster = ModelCluster()
    items = bulk(cluster, ({"index": {"_index": "auto", "_id": "1"}}, {"n": 1, "when": "2026-03-01T00:00:00Z", "ip": "x"}),
                 ({"index": {"_index": "auto", "_id": "2"}}, {"n": "many"}),
                 ({"index": {"_index": "auto", "_id": "3"}}, {"when": "soon"}),
                 ({"index": {"_index": "auto", "_id": "4"}}, {"n": 2**63}))
    assert items[0]["status"] == 201  # auto-created as a plain index (no data-stream template matches)
    assert items[1]["error"]["reason"].endswith("failed to parse field [n] of type [long] in document with id '2'. Preview of field's value: 'many'")
    assert items[1]["error"]["caused_by"]["type"] == "number_format_exception"
    assert "of type [date]" in items[2]["error"]["reason"]
    assert "is out of range for a long" in items[3]["error"]["caused_by"]["reason"]
    assert set(cluster.documents("auto")) == {"1"}


def test_dynamic_strict_false_and_runtime() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/strict", body={"mappings": {"dynamic": "strict", "properties": {"a": {"type": "keyword"}}}}))
    item = bulk(cluster, ({"index": {"_index": "strict"}}, {"a": "x", "b": 1}))[0]
    assert item["error"]["type"] == "strict_dynamic_mapping_exception"
    assert "mapping set to strict, dynamic introduction of [b] within [_doc] is not allowed" in item["error"]["reason"]
    ok(cluster.handle("PUT", "/loose", body={"mappings": {"dynamic": False}}))
    bulk(cluster, ({"index": {"_index": "loose", "_id": "1"}}, {"b": 1}))
    assert cluster.field_types("loose") == {} and cluster.documents("loose")["1"] == {"b": 1}
    ok(cluster.handle("PUT", "/rt", body={"mappings": {"dynamic": "runtime"}}))
    bulk(cluster, ({"index": {"_index": "rt", "_id": "1"}}, {"b": "x"}))
    assert cluster.field_types("rt") == {"b": "keyword"}


def test_constant_keyword_takes_the_first_value_then_refuses_others() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/ck", body={"mappings": {"properties": {"c": {"type": "constant_keyword"}}}}))
    items = bulk(cluster, ({"index": {"_index": "ck", "_id": "1"}}, {"c": "one"}), ({"index": {"_index": "ck", "_id": "2"}}, {"c": "two"}))
    assert items[0]["status"] == 201 and cluster.state.indices["ck"].mapping.constant_value("c") == "one"
    assert items[1]["error"]["caused_by"]["reason"] == (
        "[constant_keyword] field [c] only accepts values that are equal to the value defined in the mappings [one], but got [two]")


def test_dynamic_templates_conditions() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/dt", body={"mappings": {"dynamic_templates": [
        {"ids": {"match": "*_id", "unmatch": "skip_*", "mapping": {"type": "keyword", "meta": {"f": "{name}"}}}},
        {"nums_as_strings": {"match_mapping_type": "long", "path_match": ["m.*"], "mapping": {"type": "keyword"}}},
        {"rx": {"match_pattern": "regex", "match": "^ip\\d$", "mapping": {"type": "ip"}}},
        {"strings": {"match_mapping_type": "string", "path_unmatch": "keep.*", "mapping": {"type": "keyword", "ignore_above": 10}}},
    ]}}))
    bulk(cluster, ({"index": {"_index": "dt", "_id": "1"}}, {"user_id": 5, "skip_id": "s", "m": {"x": 1}, "ip1": "192.0.2.1", "keep": {"t": "text"}, "n": 1}))
    leaf = cluster.state.indices["dt"].mapping.leaf_fields()
    assert leaf["user_id"] == {"type": "keyword", "meta": {"f": "user_id"}}
    assert leaf["skip_id"]["type"] == "keyword" and leaf["skip_id"]["ignore_above"] == 10
    assert leaf["m.x"]["type"] == "keyword" and leaf["ip1"]["type"] == "ip" and leaf["keep.t"]["type"] == "text" and leaf["n"]["type"] == "long"


def test_unknown_field_types_are_refused_as_unmodelled() -> None:
    cluster = ModelCluster()
    err(cluster.handle("PUT", "/v", body={"mappings": {"properties": {"e": {"type": "dense_vector"}}}}), 501,
        "model_unsupported_exception", "field type [dense_vector]")


# -- documents and ingest ---------------------------------------------------------------------------

def test_data_streams_accept_only_create_and_need_a_timestamp() -> None:
    cluster = ModelCluster(builtin_templates=False)
    ok(cluster.handle("PUT", "/_index_template/t", body={"index_patterns": ["events-*"], "data_stream": {}}))
    ok(cluster.handle("PUT", "/_data_stream/events-a"))
    item = bulk(cluster, ({"index": {"_index": "events-a", "_id": "1"}}, doc()))[0]
    assert item["error"]["reason"] == "only write ops with an op_type of create are allowed in data streams"
    item = create(cluster, "events-a", "2", {"x": 1})
    assert item["error"]["caused_by"]["reason"] == "data stream timestamp field [@timestamp] is missing"
    assert bulk(cluster, ({"delete": {"_index": "events-a", "_id": "1"}}, None))[0]["status"] == 400
    assert create(cluster, "events-b", "3", doc())["status"] == 201  # auto-created as a data stream
    assert "events-b" in cluster.state.data_streams


def test_ingest_pipelines_run_with_the_cluster_clock() -> None:
    cluster = ModelCluster(clock=ManualClock(T0), builtin_templates=False)
    ok(cluster.handle("PUT", "/_ingest/pipeline/stamp", body={"processors": [
        {"set": {"field": "event.ingested", "copy_from": "_ingest.timestamp"}},
        {"set": {"field": "tag", "value": "at {{{_ingest.timestamp}}}"}},
        {"rename": {"field": "old", "target_field": "new", "ignore_missing": True}},
        {"pipeline": {"name": "not-there", "ignore_missing_pipeline": True}}]}))
    ok(cluster.handle("PUT", "/_ingest/pipeline/final", body={"processors": [{"remove": {"field": "secret", "ignore_missing": True}}]}))
    ok(cluster.handle("PUT", "/p", body={"settings": {"index": {"default_pipeline": "stamp", "final_pipeline": "final"}}}))
    bulk(cluster, ({"index": {"_index": "p", "_id": "1"}}, {"old": 1, "secret": "s"}), ({"index": {"_index": "p", "_id": "2"}}, {}))
    assert cluster.documents("p")["1"] == {"event": {"ingested": "2026-03-01T12:00:00.000000Z"}, "tag": "at 2026-03-01T12:00:00.000000Z", "new": 1}
    assert cluster.documents("p")["2"]["event"]["ingested"] == "2026-03-01T12:00:00.000000Z"
    item = bulk(cluster, ({"index": {"_index": "p", "_id": "3", "pipeline": "absent"}}, {}))[0]
    assert item["error"]["reason"] == "pipeline with id [absent] does not exist"
    ok(cluster.handle("PUT", "/_ingest/pipeline/strict", body={"processors": [{"remove": {"field": "gone"}}]}))
    assert "field [gone] not present" in bulk(cluster, ({"index": {"_index": "p", "pipeline": "strict"}}, {}))[0]["error"]["reason"]


def test_bulk_request_level_errors_and_unmodelled_parts() -> None:
    cluster = ModelCluster()
    err(cluster.handle("POST", "/_bulk", body='{"index": {"_index": "a", "bogus": 1}}\n{}\n'), 400,
        "illegal_argument_exception", "contains an unknown parameter [bogus]")
    err(cluster.handle("POST", "/_bulk", body='{"index": {}}\n{}\n'), 400, "action_request_validation_exception", "index is missing")
    items = bulk(cluster, ({"index": {"_id": "1"}}, {"a": 1}), path="/dflt/_bulk")
    assert items[0]["_index"] == "dflt" and items[0]["status"] == 201
    assert bulk(cluster, ({"update": {"_index": "dflt", "_id": "1"}}, {"doc": {}}))[0]["status"] == 501
    err(cluster.handle("GET", "/_nodes/stats"), 501, "model_unsupported_exception", "[GET /_nodes/stats]")
    assert ok(cluster.handle("GET", "/"))["version"]["number"] == "8.15.0"
    assert ok(cluster.handle("POST", "/dflt/_refresh"))["_shards"]["failed"] == 0


def test_data_stream_get_and_template_guards() -> None:
    cluster = ModelCluster(version=(8, 15))
    assert ok(cluster.handle("GET", "/_data_stream/logs-none*")) == {"data_streams": []}
    err(cluster.handle("GET", "/_data_stream/logs-a-b"), 404, "index_not_found_exception", "no such index [logs-a-b]")
    err(cluster.handle("DELETE", "/_component_template/ecs@mappings"), 400, "illegal_argument_exception",
        "component templates [ecs@mappings] cannot be removed as they are still in use by index templates [logs]")
    options = {"index_patterns": ["x-*"], "data_stream": {}, "template": {"data_stream_options": {"failure_store": {"enabled": True}}}}
    err(cluster.handle("PUT", "/_index_template/fs", body=options), 400, "x_content_parse_exception", "unknown field [data_stream_options]")
    newer = ModelCluster(version=(8, 19), builtin_templates=False)
    ok(newer.handle("PUT", "/_index_template/fs", body=options))
    ok(newer.handle("PUT", "/_data_stream/x-1"))
    assert newer.state.data_streams["x-1"].failure_store is True
    no_ds = {"index_patterns": ["y-*"], "template": {"data_stream_options": {"failure_store": {"enabled": True}}}}
    err(newer.handle("PUT", "/_index_template/bad", body=no_ds), 400, "illegal_argument_exception",
        "specifies data stream options that can only be used in combination with a data stream")


def test_dynamic_fields_beyond_the_limit() -> None:
    cluster = ModelCluster()
    ok(cluster.handle("PUT", "/few", body={"settings": {"index.mapping.total_fields.limit": 2}}))
    item = bulk(cluster, ({"index": {"_index": "few", "_id": "1"}}, {"a": 1, "b": 2, "c": 3}))[0]
    assert item["status"] == 400 and "Limit of total fields [2] has been exceeded" in item["error"]["reason"]
    ok(cluster.handle("PUT", "/lenient", body={"settings": {"index.mapping.total_fields.limit": 2,
                                                           "index.mapping.total_fields.ignore_dynamic_beyond_limit": True}}))
    assert bulk(cluster, ({"index": {"_index": "lenient", "_id": "1"}}, {"a": 1, "b": 2, "c": 3}))[0]["status"] == 201
    assert cluster.field_types("lenient") == {"a": "long", "b": "long"}
