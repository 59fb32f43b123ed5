"""The es_model's index expressions, aliases, alias filters and query DSL behave as Elasticsearch's source says."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from misp_ti.testing.es_model import aliases as al
from misp_ti.testing.es_model import search as se
from misp_ti.testing.es_model.mappings import Mapping, ModelUnsupported
from misp_ti.testing.es_model.query import date_math, matches
from misp_ti.testing.es_model.state import AliasMeta, ClusterState, DataStreamMeta, IndexMeta

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
MAPPING = Mapping.from_body({"properties": {
    "ip": {"type": "ip"}, "kind": {"type": "keyword"}, "msg": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
    "n": {"type": "long"}, "on": {"type": "boolean"}, "ts": {"type": "date"},
    "module": {"type": "constant_keyword", "value": "ti_misp"},
    "threat": {"properties": {"indicator": {"properties": {"ip": {"type": "ip"}, "url": {"properties": {"full": {"type": "keyword"}}}}}}},
}})


def index(name: str, docs: dict[str, dict], *, hidden: bool = False, aliases: dict[str, AliasMeta] | None = None,
          data_stream: str | None = None) -> IndexMeta:
    settings = {"index.hidden": True} if hidden else {}
    return IndexMeta(name=name, settings=settings, mapping=MAPPING.copy(), docs=docs, aliases=aliases or {},
                     data_stream=data_stream)


@pytest.fixture
def state() -> ClusterState:
    """The misp-ti design: a hidden destination outside logs-* behind a filtered, non-hidden alias."""
    st = ClusterState(clock=lambda: NOW)
    future = {"range": {"ts": {"gt": "now"}}}
    st.indices["misp-ti-latest.attrs-2"] = index("misp-ti-latest.attrs-2", {
        "live": {"ts": "2026-03-11T00:00:00Z", "kind": "a"}, "dead": {"ts": "2026-03-01T00:00:00Z", "kind": "a"}},
        hidden=True, aliases={"logs-ti_misp_latest.attrs": AliasMeta(filter=future)})
    st.indices[".ds-logs-ti_misp.attrs-default-000001"] = index(
        ".ds-logs-ti_misp.attrs-default-000001", {"raw": {"kind": "raw"}}, hidden=True, data_stream="logs-ti_misp.attrs-default")
    st.data_streams["logs-ti_misp.attrs-default"] = DataStreamMeta(
        name="logs-ti_misp.attrs-default", template="t", backing=[".ds-logs-ti_misp.attrs-default-000001"])
    return st


def ids(hits: list[dict]) -> set[str]:
    return {h["_id"] for h in hits}


# ------------------------------------------------------------------ expressions and hidden
def test_wildcard_reaches_hidden_index_through_non_hidden_alias_with_its_filter(state: ClusterState) -> None:
    assert se.index_filters(state, "logs-*") == {
        "misp-ti-latest.attrs-2": {"range": {"ts": {"gt": "now"}}}, ".ds-logs-ti_misp.attrs-default-000001": None}
    assert ids(se.search(state, "logs-ti_*")) == {"live", "raw"}


def test_hidden_index_not_matched_by_its_own_wildcard_unless_expand_hidden(state: ClusterState) -> None:
    assert se.resolve_expression(state, "misp-ti-*") == []
    assert se.resolve_expression(state, "misp-ti-*", expand_wildcards="all") == ["misp-ti-latest.attrs-2"]
    # reached directly (by its name): no alias filter, both documents
    assert ids(se.search(state, "misp-ti-latest.attrs-2")) == {"live", "dead"}


def test_hidden_alias_is_not_matched_by_wildcards_but_by_name(state: ClusterState) -> None:
    state.indices["misp-ti-latest.attrs-2"].aliases["logs-ti_misp_latest.attrs"].is_hidden = True
    assert se.resolve_expression(state, "logs-ti_misp_latest*") == []
    assert se.resolve_expression(state, "logs-ti_misp_latest.attrs") == ["misp-ti-latest.attrs-2"]


def test_index_reached_directly_or_through_an_unfiltered_alias_gets_no_filter(state: ClusterState) -> None:
    name = "misp-ti-latest.attrs-2"
    assert se.index_filters(state, f"logs-ti_misp_latest.attrs,{name}")[name] is None
    state.indices[name].aliases["plain"] = AliasMeta()
    assert se.index_filters(state, "logs-ti_misp_latest.attrs,plain")[name] is None
    state.indices[name].aliases["other"] = AliasMeta(filter={"term": {"kind": "b"}})
    both = se.index_filters(state, "logs-ti_misp_latest.attrs,other")[name]
    assert both == {"bool": {"should": [{"range": {"ts": {"gt": "now"}}}, {"term": {"kind": "b"}}], "minimum_should_match": 1}}


def test_data_stream_resolves_to_backing_indices_and_exclusions_apply_after_a_wildcard(state: ClusterState) -> None:
    assert se.resolve_expression(state, "logs-ti_misp.attrs-default") == [".ds-logs-ti_misp.attrs-default-000001"]
    assert se.resolve_expression(state, "logs-*,-logs-ti_misp.*") == ["misp-ti-latest.attrs-2"]
    with pytest.raises(se.IndexNotFound):
        se.resolve_expression(state, "nope")
    assert se.resolve_expression(state, "logs-*", expand_wildcards="none") == []


def test_alias_filter_with_now_is_evaluated_at_search_time(state: ClusterState) -> None:
    assert ids(se.search(state, "logs-ti_misp_latest.attrs", now=NOW)) == {"live"}
    assert ids(se.search(state, "logs-ti_misp_latest.attrs", now=NOW + timedelta(days=2))) == set()


# ------------------------------------------------------------------ alias API
def test_add_replaces_existing_alias_metadata_so_a_filter_is_dropped(state: ClusterState) -> None:
    name = "misp-ti-latest.attrs-2"
    answer = al.update_aliases(state, {"actions": [{"add": {"index": name, "alias": "logs-ti_misp_latest.attrs"}}]})
    assert answer.status == 200 and answer.body == {"acknowledged": True, "errors": False}
    assert state.indices[name].aliases["logs-ti_misp_latest.attrs"].filter is None


def test_alias_named_like_an_index_or_data_stream_is_refused(state: ClusterState) -> None:
    for clash in ("misp-ti-latest.attrs-2", "logs-ti_misp.attrs-default"):
        answer = al.update_aliases(state, {"actions": [{"add": {"index": "misp-ti-latest.attrs-2", "alias": clash}}]})
        assert answer.status == 400 and answer.body["error"]["type"] == "invalid_alias_name_exception"


def test_alias_actions_are_atomic_and_remove_must_exist(state: ClusterState) -> None:
    name = "misp-ti-latest.attrs-2"
    answer = al.update_aliases(state, {"actions": [
        {"remove": {"index": name, "alias": "logs-ti_misp_latest.attrs"}},
        {"remove": {"index": name, "alias": "ghost", "must_exist": True}}]})
    assert answer.status == 404 and answer.body["error"]["type"] == "aliases_not_found_exception"
    assert "logs-ti_misp_latest.attrs" in state.indices[name].aliases  # nothing applied
    assert al.update_aliases(state, {"actions": [{"remove": {"index": name, "alias": "ghost"}}]}).status == 200


def test_alias_wildcard_index_does_not_expand_to_hidden_indices(state: ClusterState) -> None:
    answer = al.update_aliases(state, {"actions": [{"remove": {"index": "misp-*", "alias": "logs-ti_misp_latest.attrs"}}]})
    assert answer.status == 404  # IndicesAliasesRequest options: open only, must match something


def test_is_hidden_must_agree_on_every_index(state: ClusterState) -> None:
    state.indices["visible"] = index("visible", {})
    answer = al.update_aliases(state, {"actions": [{"add": {"index": "visible", "alias": "logs-ti_misp_latest.attrs",
                                                            "is_hidden": True}}]})
    assert answer.status == 400 and "is_hidden" in answer.body["error"]["reason"]


def test_get_alias_missing_answers_404_with_a_string_error(state: ClusterState) -> None:
    assert al.get_aliases(state, None, "nope").body == {"error": "alias [nope] missing", "status": 404}
    found = al.get_aliases(state, None, "logs-ti_misp_latest.attrs")
    assert found.status == 200
    assert found.body == {"misp-ti-latest.attrs-2": {"aliases": {"logs-ti_misp_latest.attrs": {"filter": {"range": {"ts": {"gt": "now"}}}}}}}


def test_delete_by_query_through_the_alias_applies_its_filter(state: ClusterState) -> None:
    match = re.match(r"^/(?P<expr>[^/]+)/_delete_by_query$", "/logs-ti_misp_latest.attrs/_delete_by_query")
    answer = se._delete_by_query_handler(state, match, {"conflicts": "proceed"}, {"query": {"match_all": {}}}, None)
    assert answer.body["deleted"] == 1
    assert set(state.indices["misp-ti-latest.attrs-2"].docs) == {"dead"}


# ------------------------------------------------------------------ query DSL
@pytest.mark.parametrize(("query", "doc", "expected"), [
    ({"term": {"kind": "A"}}, {"kind": "a"}, False),                       # keyword: exact
    ({"term": {"kind": {"value": "A", "case_insensitive": True}}}, {"kind": "a"}, True),
    ({"term": {"module": "ti_misp"}}, {}, True),                           # constant_keyword: from the mapping
    ({"exists": {"field": "module"}}, {}, True),
    ({"term": {"ip": "10.0.0.0/8"}}, {"ip": "10.1.2.3"}, True),            # ip: CIDR
    ({"term": {"ip": "10.0.0.0/8"}}, {"ip": "11.1.2.3"}, False),
    ({"term": {"on": "true"}}, {"on": True}, True),
    ({"range": {"n": {"gt": 5, "lte": 7}}}, {"n": [1, 7]}, True),
    ({"match": {"msg": "Evil Host"}}, {"msg": "an evil thing"}, True),      # text: analysed
    ({"term": {"msg": "Evil"}}, {"msg": "an evil thing"}, False),           # term is not analysed
    ({"match_phrase": {"msg": "evil thing"}}, {"msg": "An EVIL thing!"}, True),
    ({"term": {"msg.keyword": "An EVIL thing!"}}, {"msg": "An EVIL thing!"}, True),  # multi-field reads the parent
    ({"exists": {"field": "threat.indicator.*"}}, {"threat": {"indicator": {"url": {"full": "x"}}}}, True),
    ({"exists": {"field": "threat.indicator.*"}}, {"kind": "a"}, False),
    ({"wildcard": {"kind": {"value": "ti_*"}}}, {"kind": "ti_misp"}, True),
    ({"prefix": {"kind": "ti_"}}, {"kind": "xti_"}, False),
    ({"query_string": {"fields": ["kind"], "query": "ti_*"}}, {"kind": "ti_x"}, True),
    ({"term": {"unmapped": "x"}}, {"unmapped": "x"}, False),                 # unmapped: no match
    ({"bool": {"should": [{"term": {"kind": "a"}}, {"term": {"n": 1}}], "minimum_should_match": 2}}, {"kind": "a", "n": 2}, False),
    ({"bool": {"filter": [{"term": {"kind": "a"}}], "should": [{"term": {"n": 9}}]}}, {"kind": "a"}, True),
    ({"bool": {"must_not": {"term": {"kind": "a"}}}}, {"kind": "a"}, False),
    ({"range": {"ts": {"gte": "now-30d/d"}}}, {"ts": "2026-02-08T00:00:00Z"}, True),  # rounded down to the day
    ({"range": {"ts": {"gt": "now-30d/d"}}}, {"ts": "2026-02-08T12:00:00Z"}, False),  # gt rounds up to the day's end
    ({"range": {"ts": {"lte": "2026-02-08||/d"}}}, {"ts": "2026-02-08T23:59:59.999Z"}, True),
    ({"range": {"ts": {"lt": "2026-02-08||/d"}}}, {"ts": "2026-02-08T00:00:00Z"}, False),
])
def test_query_types(query: dict, doc: dict, expected: bool) -> None:
    assert matches(query, doc, MAPPING, now=NOW) is expected


def test_ids_query_and_date_math_units() -> None:
    assert matches({"ids": {"values": ["a"]}}, {}, MAPPING, now=NOW, doc_id="a")
    assert date_math("now-1M/M", NOW) == datetime(2026, 2, 1, tzinfo=UTC)
    assert date_math("now+1d/d", NOW, round_up=True) == datetime(2026, 3, 11, 23, 59, 59, 999000, tzinfo=UTC)


def test_unmodelled_queries_are_refused_not_guessed() -> None:
    for query in ({"nested": {"path": "x", "query": {"match_all": {}}}}, {"range": {"ts": {"gte": "x", "format": "yyyy"}}},
                  {"query_string": {"query": "a AND b"}}):
        with pytest.raises(ModelUnsupported):
            matches(query, {}, MAPPING, now=NOW)


# ------------------------------------------------------------------ through the model's HTTP-shaped front door
def _model():  # type: ignore[no-untyped-def]
    from misp_ti.testing.es_model.cluster import ManualClock, ModelCluster

    c = ModelCluster(clock=ManualClock(NOW))
    for name in ("old-1", "new-2"):
        assert c.handle("PUT", f"/{name}", body={"settings": {"index.hidden": True},
                                                 "mappings": {"properties": {"k": {"type": "keyword"}, "n": {"type": "long"}}}}).status == 200
    for doc_id, n in (("a", 3), ("b", 1), ("c", 2)):
        c.handle("PUT", f"/old-1/_doc/{doc_id}", body={"k": doc_id, "n": n})
    c.handle("PUT", "/new-2/_doc/a", body={"k": "a", "n": 30})
    return c


def test_reindex_op_type_create_counts_conflicts_with_proceed_and_stops_on_abort() -> None:
    c = _model()
    body = {"source": {"index": "old-1"}, "dest": {"index": "new-2", "op_type": "create"}}
    aborted = c.handle("POST", "/_reindex", params={"wait_for_completion": "true"}, body=body)
    assert aborted.status == 409 and aborted.body["version_conflicts"] == 1 and aborted.body["failures"]
    proceed = c.handle("POST", "/_reindex", params={"wait_for_completion": "true", "refresh": "true"}, body=body | {"conflicts": "proceed"})
    assert proceed.status == 200 and proceed.body["version_conflicts"] >= 1 and proceed.body["failures"] == []
    assert c.documents("new-2")["a"]["n"] == 30  # create never overwrote
    assert set(c.documents("new-2")) == {"a", "b", "c"}
    assert c.handle("POST", "/_reindex", params={"wait_for_completion": "false"}, body=body).status == 501


def test_search_count_sort_and_size_endpoints() -> None:
    c = _model()
    found = c.handle("POST", "/old-1/_search", body={"query": {"range": {"n": {"gte": 2}}}, "sort": [{"n": "desc"}], "size": 1})
    assert found.body["hits"]["total"]["value"] == 2 and [h["_id"] for h in found.body["hits"]["hits"]] == ["a"]
    assert c.handle("POST", "/old-1/_count", body={"query": {"term": {"k": "b"}}}).body["count"] == 1
    assert c.handle("POST", "/nope/_search", body={}).status == 404
    assert c.handle("POST", "/old-1/_search", body={"aggs": {}}).status == 501  # unmodelled: said, not ignored
    c.handle("POST", "/_aliases", body={"actions": [{"add": {"index": "new-2", "alias": "view", "filter": {"term": {"k": "a"}}}}]})
    assert c.handle("GET", "/_alias/view").body == {"new-2": {"aliases": {"view": {"filter": {"term": {"k": "a"}}}}}}
    assert c.handle("GET", "/_alias/logs-ti_misp_latest.x").status == 404
