"""Which action (and so which privilege) each modelled request needs: part of the security MODEL.

Action names are Elasticsearch's transport action names (``*Action.NAME`` / ``TYPE`` in
elastic/elasticsearch, e.g. ``TransportSearchAction`` ``indices:data/read/search``, ``ReindexAction``,
``DeleteByQueryAction`` ``indices:data/write/delete/byquery``, ``IndicesAliasesAction``
``indices:admin/aliases``, the transform actions ``cluster:admin/transform/put|start|stop|delete`` and
``cluster:monitor/transform/get|stats/get``). A bulk item needs ``indices:data/write/index:op_type/create``
or ``.../index:op_type/index`` (``BulkShardRequest`` items, as ``IndexPrivilege.CREATE_DOC`` names them);
``remove_index`` in ``_aliases`` needs ``indices:admin/delete`` too (``IndicesAliasesRequest`` items).
"""

from __future__ import annotations

from typing import Any

_IX = r"(?P<expr>[^/_][^/]*)"
_N = r"(?P<name>[^/]+)"

#: (method, path regex, action, scope); scope: "cluster", "self", "index" (on the ``expr``/``name`` group)
#: or one of "bulk", "aliases", "reindex", whose targets come from the body
ACTIONS: list[tuple[str, str, str, str]] = [
    ("GET", r"/", "cluster:monitor/main", "cluster"),
    ("HEAD", r"/", "cluster:monitor/main", "cluster"),
    ("GET", r"/_cluster/health(?:/[^/]+)?", "cluster:monitor/health", "cluster"),
    ("POST", r"/_security/user/_has_privileges", "cluster:admin/xpack/security/user/has_privileges", "self"),
    ("GET", r"/_security/user/_has_privileges", "cluster:admin/xpack/security/user/has_privileges", "self"),
    *[(m, r"/_index_template(?:/[^/]+)?", f"indices:admin/index_template/{a}", "cluster")
      for m, a in (("PUT", "put"), ("POST", "put"), ("GET", "get"), ("HEAD", "get"), ("DELETE", "delete"))],
    *[(m, r"/_component_template(?:/[^/]+)?", f"cluster:admin/component_template/{a}", "cluster")
      for m, a in (("PUT", "put"), ("POST", "put"), ("GET", "get"), ("HEAD", "get"), ("DELETE", "delete"))],
    *[(m, r"/_ingest/pipeline(?:/[^/]+)?", f"cluster:admin/ingest/pipeline/{a}", "cluster")
      for m, a in (("PUT", "put"), ("GET", "get"), ("DELETE", "delete"))],
    *[(m, r"/_ilm/policy(?:/[^/]+)?", f"cluster:admin/ilm/{a}", "cluster")
      for m, a in (("PUT", "put"), ("GET", "get"), ("DELETE", "delete"))],
    ("GET", r"/_transform(?:/[^/]+)?/_stats", "cluster:monitor/transform/stats/get", "cluster"),
    ("GET", r"/_transform(?:/[^/]+)?", "cluster:monitor/transform/get", "cluster"),
    ("PUT", r"/_transform/[^/]+", "cluster:admin/transform/put", "cluster"),
    ("DELETE", r"/_transform/[^/]+", "cluster:admin/transform/delete", "cluster"),
    ("POST", r"/_transform/[^/]+/_start", "cluster:admin/transform/start", "cluster"),
    ("POST", r"/_transform/[^/]+/_stop", "cluster:admin/transform/stop", "cluster"),
    ("PUT", rf"/_data_stream/{_N}", "indices:admin/data_stream/create", "index"),
    ("GET", r"/_data_stream(?:/(?P<name>[^/]+))?", "indices:admin/data_stream/get", "index"),
    ("DELETE", rf"/_data_stream/{_N}", "indices:admin/data_stream/delete", "index"),
    ("GET", r"/_mapping", "indices:admin/mappings/get", "index"),
    ("GET", rf"/{_IX}/_mapping", "indices:admin/mappings/get", "index"),
    ("POST", rf"/{_IX}/_rollover", "indices:admin/rollover", "index"),
    ("POST", rf"/{_IX}/_search", "indices:data/read/search", "index"),
    ("GET", rf"/{_IX}/_search", "indices:data/read/search", "index"),
    ("POST", rf"/{_IX}/_count", "indices:data/read/search", "index"),
    ("GET", rf"/{_IX}/_count", "indices:data/read/search", "index"),
    ("POST", rf"/{_IX}/_delete_by_query", "indices:data/write/delete/byquery", "index"),
    ("POST", rf"/{_IX}/_refresh", "indices:admin/refresh", "index"),
    ("POST", r"/_refresh", "indices:admin/refresh", "index"),
    ("GET", rf"/{_IX}/_doc/[^/]+", "indices:data/read/get", "index"),
    ("PUT", rf"/{_IX}/_doc/[^/]+", "indices:data/write/index:op_type/index", "index"),
    ("POST", rf"/{_IX}/_doc(?:/[^/]+)?", "indices:data/write/index:op_type/index", "index"),
    ("PUT", rf"/{_IX}/_create/[^/]+", "indices:data/write/index:op_type/create", "index"),
    ("POST", rf"/{_IX}/_create/[^/]+", "indices:data/write/index:op_type/create", "index"),
    ("POST", r"/(?:(?P<expr>[^/_][^/]*)/)?_bulk", "indices:data/write/bulk", "bulk"),
    ("PUT", r"/(?:(?P<expr>[^/_][^/]*)/)?_bulk", "indices:data/write/bulk", "bulk"),
    ("POST", r"/_aliases", "indices:admin/aliases", "aliases"),
    ("GET", r"/_alias(?:/(?P<name>[^/]+))?", "indices:admin/aliases/get", "index"),
    ("GET", rf"/{_IX}/_alias(?:/[^/]+)?", "indices:admin/aliases/get", "index"),
    ("POST", r"/_reindex", "indices:data/write/reindex", "reindex"),
    ("PUT", rf"/{_IX}", "indices:admin/create", "index"),
    ("GET", rf"/{_IX}", "indices:admin/get", "index"),
    ("HEAD", rf"/{_IX}", "indices:admin/get", "index"),
    ("DELETE", rf"/{_IX}", "indices:admin/delete", "index"),
]


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _split(expression: str | None) -> list[str]:
    return [p.lstrip("-") for p in (expression or "*").split(",") if p]


def targets(cluster: Any, scope: str, action: str, found: Any, params: dict[str, Any], body: Any) -> list[tuple[str, str]]:
    """(index name or pattern, action) pairs one request needs."""
    groups = found.groupdict()
    if scope == "index":
        needed = action
        if action.endswith("op_type/index") and str(params.get("op_type", "")) == "create":
            needed = "indices:data/write/index:op_type/create"
        return [(n, needed) for n in _split(groups.get("expr") or groups.get("name"))]
    if scope == "bulk":
        from .documents import parse_ndjson

        lines, out, i = parse_ndjson(body), [], 0
        while i < len(lines):
            (op, meta), = lines[i].items()
            index = meta.get("_index") or groups.get("expr") or "*"
            out.append((index, {"create": "indices:data/write/index:op_type/create", "index": "indices:data/write/index:op_type/index",
                                "delete": "indices:data/write/delete", "update": "indices:data/write/update"}[op]))
            i += 1 if op == "delete" else 2
        return out
    if scope == "aliases":
        out = []
        for item in (body or {}).get("actions", []):
            (kind, spec), = item.items()
            indices = _names(spec.get("index")) + _names(spec.get("indices"))
            if kind == "remove_index":
                out += [(n, "indices:admin/delete") for n in indices]
            else:
                aliases = _names(spec.get("alias")) + _names(spec.get("aliases"))
                out += [(n, action) for n in indices + aliases]
        return out
    body = body or {}
    source = body.get("source", {}).get("index")
    dest = body.get("dest", {})
    op = "create" if dest.get("op_type") == "create" else "index"
    return [(n, "indices:data/read/search") for n in _names(source)] + \
        ([(dest["index"], f"indices:data/write/index:op_type/{op}")] if dest.get("index") else [])
