"""``ModelCluster``: the model's state, its route table, ``handle()`` and ``advance()``.

Routes are collected from every module of the package that exports ``ROUTES`` (this one, ``templates``,
``documents`` first, then the others by name), so the transform, search and security parts plug in when
present. The REST shapes below follow elastic/elasticsearch's ``Rest*Action`` classes named next to each.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from misp_ti.testing.es_model import builtins, documents, templates
from misp_ti.testing.es_model.state import ClusterState, IndexMeta, Response, es_error, unsupported

__all__ = ["ManualClock", "ModelCluster", "Response"]

Handler = Callable[[Any, "re.Match[str]", dict[str, str], Any, Any], Response]


class ManualClock:
    """A clock tests move by hand (no wall-clock time in the model's answers)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


class ModelCluster:
    """A model of one Elasticsearch cluster (not Elasticsearch: see the package docstring)."""

    def __init__(self, version: tuple[int, ...] = (8, 15), *, clock: Callable[[], datetime] | None = None,
                 builtin_templates: bool = True, security: Any = None) -> None:
        builtins.check_version(tuple(version))
        self.state = ClusterState(version=tuple(version), clock=clock or ManualClock(), security=security)  # type: ignore[arg-type]
        if builtin_templates:
            builtins.install(self.state)
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (method, re.compile(rx), handler) for method, rx, handler in _collect_routes()
        ]

    # -- requests ------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None, *, user: Any = None) -> Response:
        method = method.upper()
        params = {k: _param(v) for k, v in (params or {}).items()}
        path = "/" + path.strip("/") if path != "/" else "/"
        lookup = "GET" if method == "HEAD" else method
        try:
            security = importlib.import_module("misp_ti.testing.es_model.security")
        except ImportError:
            security = None
        if security is not None and hasattr(security, "authorize"):
            refused = security.authorize(self, method, path, params, user, body)
            if refused is not None:
                return refused
        allowed = []
        for route_method, rx, handler in self.routes:
            m = rx.fullmatch(path)
            if m is None:
                continue
            if route_method != lookup:
                allowed.append(route_method)
                continue
            answer = handler(self, m, params, body, user)
            return Response(answer.status, None) if method == "HEAD" else answer
        if allowed:
            return Response(405, {"error": f"Incorrect HTTP method for uri [{path}] and method [{method}], allowed: {sorted(set(allowed))}", "status": 405})
        return unsupported(f"the endpoint [{method} {path}]")

    def advance(self, now: datetime | None = None) -> None:
        """Run what is due at ``now`` (a manual clock is moved there first): transform checkpoints."""
        if now is not None and isinstance(self.state.clock, ManualClock):
            self.state.clock.now = now
        try:
            transform = importlib.import_module("misp_ti.testing.es_model.transform")
        except ImportError:
            return
        if hasattr(transform, "tick"):
            transform.tick(self, now or self.state.clock())

    # -- reads for tests ------------------------------------------------------------------------------

    def _concrete(self, name: str) -> IndexMeta:
        if name in self.state.data_streams:
            return self.state.indices[self.state.data_streams[name].write_index]
        return self.state.indices[name]

    def documents(self, index_or_ds: str) -> dict[str, dict[str, Any]]:
        """``_id`` -> ``_source`` of an index, or of every backing index of a data stream."""
        if index_or_ds in self.state.data_streams:
            out: dict[str, dict[str, Any]] = {}
            for backing in self.state.data_streams[index_or_ds].backing:
                out.update(self.state.indices[backing].docs)
            return out
        return dict(self.state.indices[index_or_ds].docs)

    def field_types(self, index_or_ds: str) -> dict[str, str]:
        """Leaf field path -> type in the current mapping (a data stream's: its write index's)."""
        return {path: str(spec.get("type")) for path, spec in self._concrete(index_or_ds).mapping.leaf_fields().items()}


def _param(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _collect_routes() -> list[tuple[str, str, Handler]]:
    package = importlib.import_module("misp_ti.testing.es_model")
    first = ["cluster", "templates", "documents"]
    others = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in first)
    routes: list[tuple[str, str, Handler]] = list(ROUTES) + list(templates.ROUTES) + list(documents.ROUTES)
    for name in others:
        try:
            module = importlib.import_module(f"misp_ti.testing.es_model.{name}")
        except ImportError:
            continue
        routes += list(getattr(module, "ROUTES", []))
    return routes


# -- index expressions (IndexNameExpressionResolver, reduced) -----------------------------------------

def resolve(cluster: ModelCluster, expression: str, params: dict[str, str]) -> list[str] | Response:
    """Concrete index names for ``expression`` (comma list, ``*`` wildcards, ``_all``; data streams give their
    backing indices, aliases their indices). Wildcards honour ``expand_wildcards`` (default ``open``: no hidden
    indices, so no backing indices unless their data stream is named or matched)."""
    state = cluster.state
    expand = set(params.get("expand_wildcards", "open").split(","))
    hidden_ok = bool(expand & {"hidden", "all"})
    out: list[str] = []
    for part in expression.split(",") if expression not in ("", "_all") else ["*"]:
        if "*" in part:
            if "none" in expand:
                continue
            out += [n for n, ix in state.indices.items() if templates.simple_match(part, n) and (hidden_ok or not ix.hidden)]
            for ds in state.data_streams.values():
                if templates.simple_match(part, ds.name) and (hidden_ok or not ds.hidden):
                    out += ds.backing
            continue
        if part in state.indices:
            out.append(part)
        elif part in state.data_streams:
            out += state.data_streams[part].backing
        elif any(part in ix.aliases for ix in state.indices.values()):
            out += [n for n, ix in state.indices.items() if part in ix.aliases]
        elif params.get("ignore_unavailable") != "true":
            extra: dict[str, Any] = {"resource.type": "index_or_alias", "resource.id": part, "index_uuid": "_na_", "index": part}
            return es_error(404, "index_not_found_exception", f"no such index [{part}]", **extra)
    return list(dict.fromkeys(out))


def _get_mapping(c: ModelCluster, m: Any, p: dict[str, str]) -> Response:
    names = resolve(c, m.groupdict().get("index") or "_all", p)
    if isinstance(names, Response):
        return names
    return Response(200, {n: {"mappings": c.state.indices[n].mapping.to_body()} for n in names})


def _get_index(c: ModelCluster, m: Any, p: dict[str, str]) -> Response:
    names = resolve(c, m["index"], p)
    if isinstance(names, Response):
        return names
    out = {}
    for n in names:
        ix = c.state.indices[n]
        info: dict[str, Any] = {
            "aliases": {a: {k: v for k, v in vars(meta).items() if v not in (None, False)} for a, meta in ix.aliases.items()},
            "mappings": ix.mapping.to_body(),
            "settings": templates.nest_settings({**ix.settings, "index.provided_name": n, "index.uuid": ix.uuid, "index.creation_date": ix.creation_ms}),
        }
        if ix.data_stream:
            info["data_stream"] = ix.data_stream
        out[n] = info
    return Response(200, out)


def _put_index(c: ModelCluster, m: Any, body: Any) -> Response:
    created = templates.create_index(c, m["index"], body if isinstance(body, dict) else None)
    if isinstance(created, Response):
        return created
    return Response(200, {"acknowledged": True, "shards_acknowledged": True, "index": created.name})


def _delete_index(c: ModelCluster, m: Any, p: dict[str, str]) -> Response:
    state = c.state
    expression = m["index"]
    # action.destructive_requires_name defaults to true since 8.0 (DestructiveOperations)
    if "*" in expression or expression == "_all":
        return es_error(400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed")
    names = expression.split(",")
    for name in names:
        if name in state.data_streams:
            return es_error(400, "illegal_argument_exception",
                            f"The provided expression [{name}] matches a data stream, specify the corresponding concrete indices instead.")
        if name not in state.indices:
            return es_error(404, "index_not_found_exception", f"no such index [{name}]", index=name, index_uuid="_na_")
        ds = state.indices[name].data_stream
        if ds and state.data_streams[ds].write_index == name:
            return es_error(400, "illegal_argument_exception",
                            f"index [{name}] is the write index for data stream [{ds}] and cannot be deleted")
    for name in names:
        ds = state.indices.pop(name).data_stream
        if ds:
            state.data_streams[ds].backing.remove(name)
    return Response(200, {"acknowledged": True})


def _get_data_streams(c: ModelCluster, m: Any, p: dict[str, str]) -> Response:
    """``GetDataStreamAction.Response`` (the fields misp-ti and Kibana read)."""
    state = c.state
    name = m.groupdict().get("name") or "*"
    expand = set(p.get("expand_wildcards", "open").split(","))
    found = []
    for part in name.split(","):
        if "*" in part:
            found += [ds for ds in state.data_streams.values() if templates.simple_match(part, ds.name) and (not ds.hidden or expand & {"hidden", "all"})]
        elif part in state.data_streams:
            found.append(state.data_streams[part])
        else:
            return es_error(404, "index_not_found_exception", f"no such index [{part}]", index=part, index_uuid="_na_")
    items = []
    for ds in found:
        item: dict[str, Any] = {
            "name": ds.name, "timestamp_field": {"name": "@timestamp"}, "generation": ds.generation,
            "indices": [{"index_name": b, "index_uuid": state.indices[b].uuid} for b in ds.backing],
            "status": "GREEN", "template": ds.template, "hidden": ds.hidden, "system": False,
            "allow_custom_routing": False, "replicated": False,
        }
        policy = state.indices[ds.write_index].settings.get("index.lifecycle.name")
        if policy:
            item["ilm_policy"] = policy
        if tuple(state.version) >= (8, 19):
            item["failure_store"] = {"enabled": ds.failure_store, "rollover_on_write": True, "indices": []}
        items.append(item)
    return Response(200, {"data_streams": items})


def _delete_data_stream(c: ModelCluster, m: Any) -> Response:
    state = c.state
    if m["name"] not in state.data_streams:
        return es_error(404, "index_not_found_exception", f"no such index [{m['name']}]", index=m["name"], index_uuid="_na_")
    for backing in state.data_streams.pop(m["name"]).backing:
        state.indices.pop(backing, None)
    return Response(200, {"acknowledged": True})


def _rollover(c: ModelCluster, m: Any, body: Any) -> Response:
    target = m["index"]
    if target in c.state.data_streams:
        if body and body.get("conditions"):
            return unsupported("rollover conditions (the model always rolls over)")
        return templates.rollover_data_stream(c, target)
    if any(target in ix.aliases for ix in c.state.indices.values()):
        return unsupported("rolling over an alias (only data streams are modelled)")
    return es_error(400, "illegal_argument_exception", f"rollover target [{target}] does not exist")


# -- ILM policies and ingest pipelines -------------------------------------------------------------

def _put_policy(c: ModelCluster, m: Any, body: Any) -> Response:
    if not isinstance(body, dict) or "policy" not in body:
        return es_error(400, "x_content_parse_exception", "[1:1] [put_lifecycle_request] failed to parse field [policy]")
    for key in body:
        if key != "policy":
            return es_error(400, "x_content_parse_exception", f"[1:2] [put_lifecycle_request] unknown field [{key}]")
    for phase in body["policy"].get("phases", {}):
        if phase not in ("hot", "warm", "cold", "frozen", "delete"):
            return es_error(400, "illegal_argument_exception", f"Lifecycle does not support phase [{phase}]")
    name = m["name"]
    version = c.state.ilm_versions.get(name, (0, ""))[0] + 1
    c.state.ilm_policies[name] = dict(body["policy"])
    c.state.ilm_versions[name] = (version, c.state.clock().isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    return Response(200, {"acknowledged": True})


def _get_policy(c: ModelCluster, m: Any) -> Response:
    """``GetLifecycleAction.Response``: ``{name: {"version", "modified_date", "policy", "in_use_by"}}``."""
    state = c.state
    names = (m.groupdict().get("name") or "").split(",") if m.groupdict().get("name") else list(state.ilm_policies)
    out = {}
    for name in names:
        if name not in state.ilm_policies:
            return es_error(404, "resource_not_found_exception", f"Lifecycle policy not found: [{name}]")
        version, modified = state.ilm_versions.get(name, (1, "2026-01-01T00:00:00.000Z"))
        users = sorted(n for n, ix in state.indices.items() if ix.settings.get("index.lifecycle.name") == name)
        out[name] = {"version": version, "modified_date": modified, "policy": state.ilm_policies[name], "in_use_by": {
            "indices": users, "data_streams": sorted({str(state.indices[u].data_stream) for u in users if state.indices[u].data_stream}),
            "composable_templates": sorted(t for t in state.index_templates if templates.compose(state, t)["settings"].get("index.lifecycle.name") == name)}}
    return Response(200, out)


def _delete_policy(c: ModelCluster, m: Any) -> Response:
    if c.state.ilm_policies.pop(m["name"], None) is None:
        return es_error(404, "resource_not_found_exception", f"Lifecycle policy not found: [{m['name']}]")
    return Response(200, {"acknowledged": True})


def _put_pipeline(c: ModelCluster, m: Any, body: Any) -> Response:
    refused = documents.validate_pipeline(body)
    if refused is not None:
        return refused
    c.state.pipelines[m["name"]] = dict(body)
    return Response(200, {"acknowledged": True})


def _get_pipeline(c: ModelCluster, m: Any) -> Response:
    name = m.groupdict().get("name")
    if name is None:
        return Response(200, dict(c.state.pipelines))
    found = {n: b for n, b in c.state.pipelines.items() if any(templates.simple_match(part, n) for part in name.split(","))}
    return Response(200 if found else 404, found)  # RestGetPipelineAction: not found is 404 with {}


def _delete_pipeline(c: ModelCluster, m: Any) -> Response:
    if c.state.pipelines.pop(m["name"], None) is None:
        return es_error(404, "resource_not_found_exception", f"pipeline [{m['name']}] is missing")
    return Response(200, {"acknowledged": True})


def _root(c: ModelCluster) -> Response:
    """``RestMainAction``: the cluster info the clients read (``version.number``)."""
    v = tuple(c.state.version) + (0,) * (3 - len(c.state.version))
    number = ".".join(map(str, v[:3]))
    return Response(200, {"name": "es-model", "cluster_name": "es-model", "cluster_uuid": "es-model-0000000000000",
                          "version": {"number": number, "build_flavor": "default", "build_type": "model",
                                      "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
                          "tagline": "You Know, for Search"})


def _health(c: ModelCluster) -> Response:
    return Response(200, {"cluster_name": "es-model", "status": "green", "timed_out": False, "number_of_nodes": 1,
                          "number_of_data_nodes": 1, "active_primary_shards": len(c.state.indices),
                          "active_shards": len(c.state.indices), "relocating_shards": 0, "initializing_shards": 0,
                          "unassigned_shards": 0, "active_shards_percent_as_number": 100.0})


_IX = r"(?P<index>[^/_][^/]*)"
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", r"/", lambda c, m, p, b, u: _root(c)),
    ("GET", r"/_cluster/health(?:/[^/]+)?", lambda c, m, p, b, u: _health(c)),
    ("GET", r"/_mapping", lambda c, m, p, b, u: _get_mapping(c, m, p)),
    ("GET", rf"/{_IX}/_mapping", lambda c, m, p, b, u: _get_mapping(c, m, p)),
    ("PUT", r"/_data_stream/(?P<name>[^/]+)", lambda c, m, p, b, u: templates.create_data_stream(c, m["name"])),
    ("GET", r"/_data_stream(?:/(?P<name>[^/]+))?", lambda c, m, p, b, u: _get_data_streams(c, m, p)),
    ("DELETE", r"/_data_stream/(?P<name>[^/]+)", lambda c, m, p, b, u: _delete_data_stream(c, m)),
    ("POST", rf"/{_IX}/_rollover", lambda c, m, p, b, u: _rollover(c, m, b)),
    ("PUT", r"/_ilm/policy/(?P<name>[^/]+)", lambda c, m, p, b, u: _put_policy(c, m, b)),
    ("GET", r"/_ilm/policy(?:/(?P<name>[^/]+))?", lambda c, m, p, b, u: _get_policy(c, m)),
    ("DELETE", r"/_ilm/policy/(?P<name>[^/]+)", lambda c, m, p, b, u: _delete_policy(c, m)),
    ("PUT", r"/_ingest/pipeline/(?P<name>[^/]+)", lambda c, m, p, b, u: _put_pipeline(c, m, b)),
    ("GET", r"/_ingest/pipeline(?:/(?P<name>[^/]+))?", lambda c, m, p, b, u: _get_pipeline(c, m)),
    ("DELETE", r"/_ingest/pipeline/(?P<name>[^/]+)", lambda c, m, p, b, u: _delete_pipeline(c, m)),
    ("PUT", rf"/{_IX}", lambda c, m, p, b, u: _put_index(c, m, b)),
    ("GET", rf"/{_IX}", lambda c, m, p, b, u: _get_index(c, m, p)),
    ("DELETE", rf"/{_IX}", lambda c, m, p, b, u: _delete_index(c, m, p)),
]
