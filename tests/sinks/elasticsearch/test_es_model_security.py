"""The es_model's privileges follow IndexPrivilege / ClusterPrivilegeResolver and the transform privilege checker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from misp_ti.testing.es_model.cluster import ManualClock, ModelCluster
from misp_ti.testing.es_model.security import Role, SecurityState, authorize

PROVISIONER = Role(name="misp_ti_writer", cluster=["manage_index_templates", "manage_ilm", "manage_pipeline", "manage_transform",
                                                   "monitor"],
                   indices=[{"names": ["logs-ti_misp*", "misp-ti-latest.*"], "privileges": ["create_doc", "auto_configure",
                                                                                          "view_index_metadata", "read", "index",
                                                                                          "delete", "create_index", "manage"]}])
READER = Role(name="reader", cluster=["monitor_transform"], indices=[{"names": ["logs-*"], "privileges": ["read"]}])


@pytest.fixture
def cluster() -> ModelCluster:
    sec = SecurityState(users={"admin": Role(cluster=["all"], indices=[{"names": ["*"], "privileges": ["all"]}], name="superuser"),
                               "prov": PROVISIONER, "reader": READER})
    return ModelCluster(clock=ManualClock(datetime(2026, 3, 10, tzinfo=UTC)), security=sec)


def has(cluster: ModelCluster, user: str, body: dict) -> dict:
    answer = cluster.handle("POST", "/_security/user/_has_privileges", body=body, user=user)
    assert answer.status == 200, answer.body
    return answer.body


@pytest.mark.parametrize(("held", "asked", "expected"), [
    (["all"], ["manage_transform", "manage_security", "monitor"], {"manage_transform": True, "manage_security": True, "monitor": True}),
    (["manage"], ["manage_transform", "manage_index_templates", "manage_security"],
     {"manage_transform": True, "manage_index_templates": True, "manage_security": False}),
    (["monitor"], ["read_ilm", "read_pipeline", "monitor_transform"], {"read_ilm": False, "read_pipeline": False, "monitor_transform": True}),
    (["manage_ilm"], ["read_ilm"], {"read_ilm": True}),
    (["manage_pipeline"], ["read_pipeline"], {"read_pipeline": True}),
    (["manage_transform"], ["monitor_transform", "monitor"], {"monitor_transform": True, "monitor": False}),
    (["monitor_transform"], ["manage_transform"], {"manage_transform": False}),
])
def test_cluster_privilege_implications(held: list[str], asked: list[str], expected: dict) -> None:
    c = ModelCluster(security=SecurityState(users={"u": Role(cluster=held)}))
    body = has(c, "u", {"cluster": asked})
    assert body["cluster"] == expected and body["has_all_requested"] is all(expected.values())


@pytest.mark.parametrize(("held", "expected"), [
    ("all", {"create_doc": True, "view_index_metadata": True, "manage": True, "delete": True}),
    ("write", {"create_doc": True, "create": True, "index": True, "delete": True, "auto_configure": False}),
    ("index", {"create_doc": True, "create": True, "delete": False}),
    ("create", {"create_doc": True, "index": False}),
    ("create_doc", {"create": False, "index": False}),
    # manage lacks indices:internal/transform/checkpoint*, which view_index_metadata has (IndexPrivilege automatons)
    ("manage", {"view_index_metadata": False, "create_index": True, "auto_configure": True,
                "manage_data_stream_lifecycle": True, "read": False, "write": False}),
    ("read", {"view_index_metadata": False}),
    ("view_index_metadata", {"read": False}),
])
def test_index_privilege_implications(held: str, expected: dict) -> None:
    c = ModelCluster(security=SecurityState(users={"u": Role(indices=[{"names": ["logs-*"], "privileges": [held]}])}))
    body = has(c, "u", {"index": [{"names": ["logs-ti_misp.x-default"], "privileges": list(expected)}]})
    assert body["index"] == {"logs-ti_misp.x-default": expected}


def test_has_privileges_answer_shape_and_patterns(cluster: ModelCluster) -> None:
    body = has(cluster, "reader", {"cluster": ["monitor_transform"],
                                   "index": [{"names": ["logs-*", "logs-ti_misp.a", "other"], "privileges": ["read"]}]})
    assert body == {"username": "reader", "has_all_requested": False, "cluster": {"monitor_transform": True},
                    "index": {"logs-*": {"read": True}, "logs-ti_misp.a": {"read": True}, "other": {"read": False}},
                    "application": {}}
    assert cluster.handle("POST", "/_security/user/_has_privileges", body={"cluster": ["bogus"]}, user="reader").status == 400


def test_security_disabled_answers_as_elasticsearch_does() -> None:
    answer = ModelCluster().handle("POST", "/_security/user/_has_privileges", body={"cluster": ["monitor"]})
    assert answer.status == 500 and answer.body["error"]["type"] == "exception"
    assert answer.body["error"]["reason"].startswith("Security must be explicitly enabled")


def test_requests_lacking_a_privilege_get_403(cluster: ModelCluster) -> None:
    denied = cluster.handle("PUT", "/_transform/t", body={}, user="reader")
    assert denied.status == 403 and denied.body["error"]["type"] == "security_exception"
    assert denied.body["error"]["reason"].startswith(
        "action [cluster:admin/transform/put] is unauthorized for user [reader] with effective roles [reader]")
    assert "manage_transform" in denied.body["error"]["reason"]
    assert cluster.handle("GET", "/_transform/t*", user="reader").status == 200  # monitor_transform
    assert cluster.handle("POST", "/logs-x/_search", body={}, user="reader").status != 403
    assert cluster.handle("POST", "/other/_search", body={}, user="reader").status == 403
    assert cluster.handle("GET", "/_cluster/health").status == 401  # no user


def test_authorize_checks_body_targets_of_aliases_and_reindex(cluster: ModelCluster) -> None:
    add = {"actions": [{"add": {"index": "misp-ti-latest.a-2", "alias": "view-a"}}]}
    assert authorize(cluster, "POST", "/_aliases", {}, "prov", add) is not None  # the alias name is outside its patterns
    allowed = {"actions": [{"add": {"index": "misp-ti-latest.a-2", "alias": "misp-ti-latest.view"}}]}
    assert authorize(cluster, "POST", "/_aliases", {}, "prov", allowed) is None
    reindex = {"source": {"index": "misp-ti-latest.a-1"}, "dest": {"index": "misp-ti-latest.a-2", "op_type": "create"}}
    assert authorize(cluster, "POST", "/_reindex", {}, "prov", reindex) is None
    assert authorize(cluster, "POST", "/_reindex", {}, "reader", reindex) is not None
    assert authorize(cluster, "POST", "/_nothing_modelled", {}, "prov").status == 501  # not a silent allow


def test_transform_put_checks_the_creators_index_privileges(cluster: ModelCluster) -> None:
    cluster.handle("PUT", "/logs-src", body={}, user="admin")
    body = {"source": {"index": "logs-src"}, "dest": {"index": "misp-ti-latest.x"}, "latest": {"unique_key": ["a"], "sort": "b"}}
    no_create = Role(cluster=["manage_transform"], indices=[{"names": ["*"], "privileges": ["read", "index"]}])
    cluster.state.security.users["limited"] = no_create
    refused = cluster.handle("PUT", "/_transform/t", body=body, user="limited")
    assert refused.status == 403
    assert refused.body["error"]["reason"] == ("Cannot create transform [t] because user limited lacks all the required "
                                               "permissions for indices: [misp-ti-latest.x, logs-src]")
    cluster.handle("PUT", "/misp-ti-latest.x", body={}, user="admin")  # dest exists: create_index no longer needed
    assert cluster.handle("PUT", "/_transform/t", body=body, user="limited").status == 200
