"""Index expressions, aliases and their filters, and the search-side endpoints.

This is a MODEL of Elasticsearch's rules, not Elasticsearch. Sources (elastic/elasticsearch):

* expression resolution: ``server/.../cluster/metadata/IndexNameExpressionResolver.java``
  (``WildcardExpressionResolver.shouldExpandToIndexAbstraction`` / ``expandToOpenClosed``,
  ``resolveExpressions``, ``indexAliases``), ``IndexAbstraction.Alias`` (an alias is hidden only
  through its own ``is_hidden``);
* alias changes: ``AliasAction.Add.apply`` (an add replaces the alias's metadata on that index),
  ``MetadataIndexAliasesService``, ``AliasValidator``; alias filters are parsed per search, so
  ``now`` in a filter is the search's now (PR #8534);
* the query DSL: :mod:`.query`.

Endpoints: ``POST /_aliases``, ``GET /_alias/<name>``, ``GET /<expr>/_alias``, ``POST /<expr>/_search``,
``POST /<expr>/_count``, ``POST /<expr>/_delete_by_query``, ``POST /<expr>/_refresh`` and
``POST /_reindex`` (in :mod:`.reindex`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .mappings import ModelUnsupported
from .query import Matcher
from .state import AliasMeta


def state_of(cluster: Any) -> Any:
    """A ``ModelCluster`` or a bare ``ClusterState``."""
    return getattr(cluster, "state", cluster)


@dataclass
class _Response:
    """Stand-in for ``cluster.Response`` while helper A's cluster.py is absent."""

    status: int
    body: dict[str, Any]


def response(status: int, body: dict[str, Any]) -> Any:
    try:
        from .cluster import Response  # late: cluster.py imports this module's ROUTES
    except ImportError:
        return _Response(status, body)
    return Response(status, body)


def error(status: int, kind: str, reason: str, **extra: Any) -> Any:
    cause = {"type": kind, "reason": reason, **extra}
    return response(status, {"error": {"root_cause": [cause], **cause}, "status": status})


def unsupported(what: str) -> Any:
    from misp_ti.testing.es_model.state import unsupported as refuse

    return refuse(what)


class IndexNotFound(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def answer(self) -> Any:
        return error(404, "index_not_found_exception", f"no such index [{self.name}]",
                     index=self.name, resource_type="index_or_alias", resource_id=self.name)


# ---------------------------------------------------------------- abstractions
def aliases(state: Any) -> dict[str, dict[str, AliasMeta]]:
    """alias name -> {index name: its AliasMeta on that index}."""
    out: dict[str, dict[str, AliasMeta]] = {}
    for name, index in state.indices.items():
        for alias, meta in index.aliases.items():
            out.setdefault(alias, {})[name] = meta
    return out


def _abstractions(state: Any) -> dict[str, tuple[str, bool, list[str]]]:
    """name -> (type, hidden, concrete indices): the ``indicesLookup``."""
    out: dict[str, tuple[str, bool, list[str]]] = {}
    for name, index in state.indices.items():
        out[name] = ("index", index.hidden, [name])
    for name, ds in state.data_streams.items():
        out[name] = ("data_stream", ds.hidden, list(ds.backing))
    for name, members in aliases(state).items():
        hidden = any(meta.is_hidden for meta in members.values())  # IndexAbstraction.Alias: isHidden of the alias
        out[name] = ("alias", hidden, sorted(members))
    return out


def _expand_options(expand_wildcards: str) -> set[str]:
    options = {part.strip() for part in expand_wildcards.split(",")}
    if "all" in options:
        return {"open", "closed", "hidden"}
    if "none" in options:
        return set()
    return options


def _resolve(state: Any, expression: str | list[str] | None, expand: set[str], *, lenient: bool) -> tuple[list[str], set[str]]:
    """(concrete indices, resolved names with aliases and data streams preserved).

    Exclusions (``-name``) apply only after a wildcard (``WildcardExpressionResolver``); a hidden
    abstraction is matched by a wildcard only with ``expand_wildcards=hidden`` or when both the
    wildcard and the name start with ``.`` (``shouldExpandToIndexAbstraction``).
    """
    parts = expression if isinstance(expression, list) else [p for p in (expression or "").split(",") if p]
    lookup = _abstractions(state)
    if not parts or parts == ["_all"]:
        parts = ["*"]
    names: list[str] = []
    wildcard_seen = False
    for part in parts:
        if part.startswith("-") and wildcard_seen:
            pattern = part[1:]
            names = [n for n in names if not fnmatch.fnmatchcase(n, pattern)]
            continue
        if "*" in part:
            wildcard_seen = True
            if "open" not in expand:
                continue
            for name, (_kind, hidden, _members) in sorted(lookup.items()):
                if not fnmatch.fnmatchcase(name, part):
                    continue
                if hidden and "hidden" not in expand and not (part.startswith(".") and name.startswith(".")):
                    continue
                if name not in names:
                    names.append(name)
        elif part in lookup:
            if part not in names:
                names.append(part)
        elif not lenient:
            raise IndexNotFound(part)
    concrete: list[str] = []
    for name in names:
        for index in lookup[name][2]:
            if index not in concrete:
                concrete.append(index)
    return concrete, set(names)


def resolve_expression(cluster: Any, expression: str, *, expand_wildcards: str = "open",
                       allow_no_indices: bool = True, ignore_unavailable: bool = False) -> list[str]:
    """Concrete index names an expression reaches (``concreteIndexNames``). Raises :class:`IndexNotFound`."""
    concrete, _ = _resolve(state_of(cluster), expression, _expand_options(expand_wildcards), lenient=ignore_unavailable)
    if not concrete and not allow_no_indices:
        raise IndexNotFound(expression)
    return concrete


def index_filters(cluster: Any, expression: str, *, expand_wildcards: str = "open") -> dict[str, dict[str, Any] | None]:
    """Concrete index -> the alias filter a search through ``expression`` applies there (None: none).

    ``IndexNameExpressionResolver.indexAliases``: no filter when the expression is ``_all``/empty,
    when the index itself (or, for a backing index, its data stream) is among the resolved names, or
    when any alias of the index among them has no filter; otherwise the filters are OR-ed. The
    resolved names come from ``resolveExpressions``, which expands with ``lenientExpandOpen`` and
    keeps aliases as names.
    """
    state = state_of(cluster)
    concrete = resolve_expression(cluster, expression, expand_wildcards=expand_wildcards)
    everything = expression in ("", "_all", None)
    _, resolved = _resolve(state, expression, {"open"}, lenient=True)
    out: dict[str, dict[str, Any] | None] = {}
    for name in concrete:
        index = state.indices[name]
        if everything or name in resolved or (index.data_stream and index.data_stream in resolved):
            out[name] = None
            continue
        filters: list[dict[str, Any]] = []
        unfiltered = False
        for alias, meta in index.aliases.items():
            if alias in resolved:
                if meta.filter is None:
                    unfiltered = True
                    break
                filters.append(meta.filter)
        if unfiltered or not filters:
            out[name] = None
        else:
            out[name] = filters[0] if len(filters) == 1 else {"bool": {"should": filters, "minimum_should_match": 1}}
    return out


def _now(cluster: Any, now: datetime | None) -> datetime:
    if now is not None:
        return now
    clock = getattr(state_of(cluster), "clock", None)
    return clock() if clock else datetime.now(UTC)


def search(cluster: Any, expression: str, query: dict[str, Any] | None = None, *, now: datetime | None = None,
           size: int = 10_000, expand_wildcards: str = "open") -> list[dict[str, Any]]:
    """Hits (``_index``, ``_id``, ``_source``) of ``query`` over ``expression``, alias filters applied."""
    state = state_of(cluster)
    moment = _now(cluster, now)
    hits: list[dict[str, Any]] = []
    for name, alias_filter in index_filters(cluster, expression, expand_wildcards=expand_wildcards).items():
        index = state.indices[name]
        matcher = Matcher(index.mapping, moment)
        for doc_id, source in index.docs.items():
            if matcher.matches(alias_filter, source, doc_id) and matcher.matches(query, source, doc_id):
                hits.append({"_index": name, "_id": doc_id, "_score": 1.0, "_source": source})
    return hits[:size]


def matches(query: dict[str, Any] | None, source: dict[str, Any], mapping: Any, *, now: datetime,
            doc_id: str | None = None) -> bool:
    return Matcher(mapping, now).matches(query, source, doc_id)


# ---------------------------------------------------------------- endpoints
def matching_hits(cluster: Any, expression: str, query: dict[str, Any] | None, opts: dict[str, Any],
                  max_docs: Any = None) -> tuple[list[dict[str, Any]], Any]:
    """What a by-query request (``_delete_by_query``, ``_reindex``) acts on:
    ``(hits, None)``, or ``([], error response)`` when the expression or query is refused."""
    try:
        resolve_expression(cluster, expression, **opts)
        hits = search(cluster, expression, query, expand_wildcards=opts.get("expand_wildcards", "open"))
    except IndexNotFound as exc:
        return [], exc.answer()
    except (ModelUnsupported, ValueError) as exc:
        return [], unsupported(str(exc))
    return (hits[: int(max_docs)] if max_docs is not None else hits), None


def _options(params: dict[str, Any] | None) -> dict[str, Any]:
    params = params or {}
    return {"expand_wildcards": str(params.get("expand_wildcards", "open")),
            "allow_no_indices": str(params.get("allow_no_indices", "true")).lower() == "true",
            "ignore_unavailable": str(params.get("ignore_unavailable", "false")).lower() == "true"}


def _sort_key(sort: Any) -> tuple[str, bool] | None:
    if not sort:
        return None
    item = sort[0] if isinstance(sort, list) else sort
    if len(sort if isinstance(sort, list) else [sort]) > 1:
        raise ModelUnsupported("sorting on more than one field")
    if isinstance(item, str):
        return item, False
    (field, spec), = item.items()
    order = spec.get("order", "asc") if isinstance(spec, dict) else spec
    return field, order == "desc"


def _sorted(hits: list[dict[str, Any]], sort: Any) -> list[dict[str, Any]]:
    from .query import source_values

    key = _sort_key(sort)
    if key is None:
        return hits
    field, desc = key
    present = [h for h in hits if source_values(h["_source"], field)]
    missing = [h for h in hits if not source_values(h["_source"], field)]  # "missing: _last" either way
    def typed(value: Any) -> tuple[int, Any]:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, float(value))
        return (1, str(value))

    # a multi-valued field sorts on its min (asc) or max (desc), as Elasticsearch's default sort mode
    pick = max if desc else min
    present.sort(key=lambda h: pick(typed(v) for v in source_values(h["_source"], field)), reverse=desc)
    return present + missing


def _search_handler(cluster: Any, match: Any, params: dict[str, Any], body: dict[str, Any] | None, user: Any) -> Any:
    body = body or {}
    unknown = set(body) - {"query", "size", "sort", "track_total_hits", "_source", "from"}
    if unknown:
        return unsupported(f"_search body keys {sorted(unknown)}")
    try:
        opts = _options(params)
        resolve_expression(cluster, match.group("expr"), **opts)
        hits = _sorted(search(cluster, match.group("expr"), body.get("query"), expand_wildcards=opts["expand_wildcards"]),
                       body.get("sort"))
    except IndexNotFound as exc:
        return exc.answer()
    except (ModelUnsupported, ValueError) as exc:
        return unsupported(str(exc))
    start = int(body.get("from", 0))
    size = int(body.get("size", (params or {}).get("size", 10)))
    return response(200, {"took": 0, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                          "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": 1.0 if hits else None,
                                   "hits": hits[start:start + size]}})


def _count_handler(cluster: Any, match: Any, params: dict[str, Any], body: dict[str, Any] | None, user: Any) -> Any:
    try:
        opts = _options(params)
        resolve_expression(cluster, match.group("expr"), **opts)
        hits = search(cluster, match.group("expr"), (body or {}).get("query"), expand_wildcards=opts["expand_wildcards"])
    except IndexNotFound as exc:
        return exc.answer()
    except (ModelUnsupported, ValueError) as exc:
        return unsupported(str(exc))
    return response(200, {"count": len(hits), "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}})


def _delete_by_query_handler(cluster: Any, match: Any, params: dict[str, Any], body: dict[str, Any] | None, user: Any) -> Any:
    """``DeleteByQueryRequest``: deletes what a search through the same expression finds (alias filter included)."""
    body = body or {}
    if "query" not in body:
        return error(400, "action_request_validation_exception", "Validation Failed: 1: query is missing;")
    if set(body) - {"query", "max_docs"}:
        return unsupported(f"_delete_by_query body keys {sorted(set(body) - {'query', 'max_docs'})}")
    hits, refused = matching_hits(cluster, match.group("expr"), body["query"], _options(params), body.get("max_docs"))
    if refused is not None:
        return refused
    state = state_of(cluster)
    for hit in hits:
        state.indices[hit["_index"]].docs.pop(hit["_id"], None)
    return response(200, {"took": 0, "timed_out": False, "total": len(hits), "deleted": len(hits), "batches": 1 if hits else 0,
                          "version_conflicts": 0, "noops": 0, "retries": {"bulk": 0, "search": 0},
                          "throttled_millis": 0, "requests_per_second": -1.0, "throttled_until_millis": 0, "failures": []})


def _refresh_handler(cluster: Any, match: Any, params: dict[str, Any], body: Any, user: Any) -> Any:
    try:  # the model has no refresh interval: every write is visible at once
        resolve_expression(cluster, match.groupdict().get("expr") or "_all", **_options(params))
    except IndexNotFound as exc:
        return exc.answer()
    return response(200, {"_shards": {"total": 1, "successful": 1, "failed": 0}})


def _lazy(module: str, handler: str) -> Any:
    """A handler living in aliases.py / reindex.py (they import this module, so they load late)."""

    def run(cluster: Any, match: Any, params: Any, body: Any, user: Any) -> Any:
        from importlib import import_module

        return getattr(import_module(f"{__package__}.{module}"), handler)(cluster, match, params, body, user)

    return run


_EXPR = r"(?P<expr>[^/_][^/]*)"
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", rf"^/{_EXPR}/_search$", _search_handler),
    ("GET", rf"^/{_EXPR}/_search$", _search_handler),
    ("POST", rf"^/{_EXPR}/_count$", _count_handler),
    ("GET", rf"^/{_EXPR}/_count$", _count_handler),
    ("POST", rf"^/{_EXPR}/_delete_by_query$", _delete_by_query_handler),
    ("POST", rf"^/{_EXPR}/_refresh$", _refresh_handler),
    ("POST", r"^/_refresh$", _refresh_handler),
    ("POST", r"^/_aliases$", _lazy("aliases", "_post_aliases")),
    ("GET", r"^/_alias/(?P<alias>[^/]+)$", _lazy("aliases", "_get_alias_by_name")),
    ("GET", r"^/_alias$", _lazy("aliases", "_get_all_aliases")),
    ("GET", rf"^/{_EXPR}/_alias(?:/(?P<alias>[^/]+))?$", _lazy("aliases", "_get_index_aliases")),
    ("POST", r"^/_reindex$", _lazy("reindex", "_reindex_handler")),
]
