"""The es_model's latest transforms follow the transform plugin's source (ids, checkpoints, retention, aliases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from misp_ti.testing.es_model import documents, transform
from misp_ti.testing.es_model.cluster import ManualClock, ModelCluster
from misp_ti.testing.es_model.state import ClusterState
from misp_ti.testing.es_model.transform_ids import murmur3_x64_128, transform_doc_id

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def cluster(clock: ManualClock) -> ModelCluster:
    c = ModelCluster(clock=clock)
    ok = c.handle("PUT", "/src-1", body={"mappings": {"properties": {
        "k": {"type": "keyword"}, "ts": {"type": "date"}, "exp": {"type": "date"}, "n": {"type": "keyword"}}}})
    assert ok.status == 200
    return c


def put_doc(c: ModelCluster, doc_id: str, **source: Any) -> None:
    assert c.handle("PUT", f"/src-1/_doc/{doc_id}", body=source).status in (200, 201)


def latest(dest: str = "dst", **extra: Any) -> dict[str, Any]:
    return {"source": {"index": "src-*"}, "dest": {"index": dest}, "frequency": "1m",
            "latest": {"unique_key": ["k"], "sort": "ts"}, "sync": {"time": {"field": "ts", "delay": "60s"}}, **extra}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def stats(c: ModelCluster, tid: str) -> dict[str, Any]:
    return c.handle("GET", f"/_transform/{tid}/_stats").body["transforms"][0]


# ------------------------------------------------------------------ API
def test_ids_follow_transform_strings_and_duplicates_conflict(cluster: ModelCluster) -> None:
    for bad in ("Upper", "_start", "ends-", "x" * 65):
        assert cluster.handle("PUT", f"/_transform/{bad}", body=latest()).status == 400
    assert cluster.handle("PUT", "/_transform/a.b-c_1", body=latest()).status == 200
    again = cluster.handle("PUT", "/_transform/a.b-c_1", body=latest())
    assert again.status == 409 and again.body["error"]["reason"] == "Transform with id [a.b-c_1] already exists"


def test_get_answers_empty_for_an_unmatched_wildcard_and_404_for_a_missing_id(cluster: ModelCluster) -> None:
    assert cluster.handle("GET", "/_transform/misp-ti*").body == {"count": 0, "transforms": []}
    missing = cluster.handle("GET", "/_transform/misp-ti.x")
    assert missing.status == 404 and missing.body["error"]["reason"] == "Transform with id [misp-ti.x] could not be found"
    assert cluster.handle("GET", "/_transform/misp-ti*", params={"allow_no_match": "false"}).status == 404


def test_dest_aliases_needs_8_8() -> None:
    body = latest() | {"dest": {"index": "dst", "aliases": [{"alias": "a"}]}}
    old = ClusterState(version=(8, 7))  # the HTTP model starts at 8.13; the rule is checked on the state
    assert transform.put_transform(old, "t", body, {"defer_validation": "true"}, None).status == 400
    assert transform.put_transform(ClusterState(version=(8, 8)), "t", body, {"defer_validation": "true"}, None).status == 200


def test_start_creates_the_destination_without_deduced_mappings(cluster: ModelCluster) -> None:
    put_doc(cluster, "1", k="a", ts=iso(T0 - timedelta(minutes=5)))
    assert cluster.handle("PUT", "/_transform/t", body=latest()).status == 200
    assert cluster.handle("POST", "/_transform/t/_start").status == 200
    meta = cluster.state.indices["dst"].mapping.to_body()["_meta"]
    assert meta["created_by"] == "transform" and meta["_transform"]["transform"] == "t"
    assert cluster.state.indices["dst"].mapping.field_type("k") is None  # Latest.deduceMappings: nothing
    cluster.advance(T0)
    assert cluster.field_types("dst")["k"] == "text"  # then mapped dynamically
    again = cluster.handle("POST", "/_transform/t/_start")
    assert again.status == 409 and "already started" in again.body["error"]["reason"]


def test_dest_aliases_are_reapplied_on_every_start_and_drop_a_filter(cluster: ModelCluster) -> None:
    cluster.handle("PUT", "/dst", body={})
    cluster.handle("PUT", "/old", body={})
    body = latest() | {"dest": {"index": "dst", "aliases": [{"alias": "view", "move_on_creation": True}]}}
    cluster.handle("POST", "/_aliases", body={"actions": [
        {"add": {"index": "old", "alias": "view"}}, {"add": {"index": "dst", "alias": "view", "filter": {"term": {"k": "a"}}}}]})
    assert cluster.handle("PUT", "/_transform/t", body=body).status == 200
    assert cluster.handle("POST", "/_transform/t/_start").status == 200  # dst existed: aliases set up all the same
    assert "view" not in cluster.state.indices["old"].aliases  # move_on_creation: removed from index "*"
    assert cluster.state.indices["dst"].aliases["view"].filter is None  # the add carries no filter


def test_delete_and_stop_rules(cluster: ModelCluster) -> None:
    cluster.handle("PUT", "/_transform/t", body=latest())
    cluster.handle("POST", "/_transform/t/_start")
    assert cluster.handle("DELETE", "/_transform/t").status == 409
    assert cluster.handle("POST", "/_transform/t/_stop", params={"force": "true", "wait_for_completion": "true"}).status == 200
    assert stats(cluster, "t")["state"] == "stopped"
    assert cluster.handle("DELETE", "/_transform/t").status == 200
    assert cluster.handle("GET", "/_transform/t").status == 404


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_window_is_gte_previous_lt_now_minus_delay(cluster: ModelCluster, clock: ManualClock) -> None:
    put_doc(cluster, "1", k="a", ts=iso(T0 - timedelta(minutes=5)))
    cluster.handle("PUT", "/_transform/t", body=latest())
    cluster.handle("POST", "/_transform/t/_start")
    cluster.advance(T0)
    first = stats(cluster, "t")["checkpointing"]["last"]
    assert first == {"checkpoint": 1, "timestamp_millis": int(T0.timestamp() * 1000),
                     "time_upper_bound_millis": int((T0 - timedelta(seconds=60)).timestamp() * 1000)}
    # inside the delay at the next run: not seen yet, so no checkpoint
    put_doc(cluster, "2", k="b", ts=iso(T0 + timedelta(seconds=30)))
    cluster.advance(T0 + timedelta(minutes=1))
    assert stats(cluster, "t")["checkpointing"]["last"]["checkpoint"] == 1
    cluster.advance(T0 + timedelta(minutes=2))
    assert stats(cluster, "t")["checkpointing"]["last"]["checkpoint"] == 2
    assert {d["k"] for d in cluster.documents("dst").values()} == {"a", "b"}


def test_not_due_before_frequency(cluster: ModelCluster) -> None:
    cluster.handle("PUT", "/_transform/t", body=latest())
    cluster.handle("POST", "/_transform/t/_start")
    cluster.advance(T0)
    put_doc(cluster, "1", k="a", ts=iso(T0 - timedelta(minutes=5)))
    cluster.advance(T0 + timedelta(seconds=30))
    assert stats(cluster, "t")["stats"]["trigger_count"] == 1


def test_latest_of_a_changed_key_is_chosen_over_all_history(cluster: ModelCluster) -> None:
    put_doc(cluster, "1", k="a", n="newest", ts=iso(T0 - timedelta(minutes=10)))
    cluster.handle("PUT", "/_transform/t", body=latest() | {"latest": {"unique_key": ["k"], "sort": "exp"}})
    cluster.handle("POST", "/_transform/t/_start")
    cluster.state.indices["src-1"].docs["1"]["exp"] = iso(T0 + timedelta(days=9))
    cluster.advance(T0)
    # a newer sync time but an older sort value: the two-phase collector still keeps doc 1
    put_doc(cluster, "2", k="a", n="older-sort", ts=iso(T0 - timedelta(seconds=30)), exp=iso(T0 + timedelta(days=1)))
    cluster.advance(T0 + timedelta(minutes=1))
    assert [d["n"] for d in cluster.documents("dst").values()] == ["newest"]


def test_document_ids_depend_only_on_the_unique_key(cluster: ModelCluster) -> None:
    put_doc(cluster, "1", k="a", ts=iso(T0 - timedelta(minutes=5)))
    for tid, dest in (("one", "d1"), ("two", "d2")):
        cluster.handle("PUT", f"/_transform/{tid}", body=latest(dest=dest))
        cluster.handle("POST", f"/_transform/{tid}/_start")
    cluster.advance(T0)
    assert set(cluster.documents("d1")) == set(cluster.documents("d2")) == {transform_doc_id({"k": "a"})}


def test_id_generator_is_murmur3_with_the_builder_tail() -> None:
    assert murmur3_x64_128(b"hello", 0) == (0xCBD8A7B341BD9B02, 0x5B1E906A48AE1D19)
    two = transform_doc_id({"b": "y", "a": "x"})
    assert two == transform_doc_id({"a": "x", "b": "y"}) and len(two) == 32 and two.endswith("AAAAAAAA")
    assert transform_doc_id({"a": None}) != transform_doc_id({"a": ""})


def test_quiet_source_means_no_retention(cluster: ModelCluster, clock: ManualClock) -> None:
    put_doc(cluster, "1", k="a", ts=iso(T0 - timedelta(minutes=5)), exp=iso(T0 + timedelta(minutes=10)))
    body = latest() | {"retention_policy": {"time": {"field": "exp", "max_age": "60s"}}}
    cluster.handle("PUT", "/_transform/t", body=body)
    cluster.handle("POST", "/_transform/t/_start")
    cluster.advance(T0)
    assert len(cluster.documents("dst")) == 1
    cluster.advance(T0 + timedelta(hours=1))  # expired for an hour, but nothing new in the source
    assert len(cluster.documents("dst")) == 1
    put_doc(cluster, "2", k="b", ts=iso(T0 + timedelta(minutes=50)), exp=iso(T0 + timedelta(hours=5)))
    cluster.advance(T0 + timedelta(hours=1, minutes=1))  # a checkpoint: retention at its timestamp - max_age
    assert {d["k"] for d in cluster.documents("dst").values()} == {"b"}
    assert stats(cluster, "t")["stats"]["documents_deleted"] == 1


def test_irrecoverable_write_failure_fails_the_transform(cluster: ModelCluster) -> None:
    cluster.handle("PUT", "/dst", body={"mappings": {"properties": {"k": {"type": "long"}}}})
    put_doc(cluster, "1", k="not-a-number", ts=iso(T0 - timedelta(minutes=5)))
    cluster.handle("PUT", "/_transform/t", body=latest())
    cluster.handle("POST", "/_transform/t/_start")
    cluster.advance(T0)
    st = stats(cluster, "t")
    assert st["state"] == "failed" and "permanent error" in st["reason"] and st["health"]["status"] == "red"
    assert cluster.handle("POST", "/_transform/t/_start").status == 409
    assert cluster.handle("POST", "/_transform/t/_stop").status == 409
    assert cluster.handle("POST", "/_transform/t/_stop", params={"force": "true"}).status == 200


@pytest.mark.parametrize(("retries", "runs", "state"), [(2, 3, "failed"), (2, 2, "started"), (-1, 20, "started")])
def test_recoverable_write_failures_retry_num_failure_retries_times(cluster: ModelCluster, monkeypatch: pytest.MonkeyPatch,
                                                                    retries: int, runs: int, state: str) -> None:
    put_doc(cluster, "1", k="a", ts=iso(T0 - timedelta(minutes=5)))
    rejected = documents.ItemResult(429, {"error": {"type": "es_rejected_execution_exception", "reason": "queue full"}})
    monkeypatch.setattr(documents, "index_document", lambda *a, **k: rejected)
    cluster.handle("PUT", "/_transform/t", body=latest() | {"settings": {"num_failure_retries": retries}})
    cluster.handle("POST", "/_transform/t/_start")
    for minute in range(runs):
        cluster.advance(T0 + timedelta(minutes=minute))
    assert stats(cluster, "t")["state"] == state
