"""``POST /_aliases``, ``GET /_alias/<name>``, ``GET /<expr>/_alias``: a MODEL of Elasticsearch's alias rules.

Not Elasticsearch. Sources (elastic/elasticsearch ``server/src/main/java/org/elasticsearch/``):

* ``cluster/metadata/AliasAction.java``: ``Add.apply`` builds a new ``AliasMetadata`` from the
  action alone and ``putAlias`` replaces whatever the index had under that name (so an add without
  ``filter`` drops an existing filter); ``Remove.apply`` is a no-op when the index lacks the alias
  (unless ``must_exist``); ``RemoveIndex`` deletes the index;
* ``cluster/metadata/AliasValidator.java`` / ``MetadataIndexAliasesService``: an alias may not be
  named like an existing index or data stream (``InvalidAliasNameException``), the filter must parse;
* ``IndexAbstraction.Alias.validateAliasProperties``: ``is_hidden`` must be the same on every index;
* ``action/admin/indices/alias/IndicesAliasesRequest.java``: the indices of an action are resolved
  with ``fromOptions(false, false, true, false)``: every named index must exist, wildcards expand to
  open, non-hidden indices, and must match something;
* ``rest/action/admin/indices/RestGetAliasesAction``: a missing alias answers 404 with
  ``{"error": "alias [x] missing", "status": 404}`` (a string, not an error object).
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any

from .mappings import ModelUnsupported
from .query import Matcher
from .search import (
    IndexNotFound,
    error,
    resolve_expression,
    response,
    state_of,
    unsupported,
)
from .state import AliasMeta


def _names(spec: dict[str, Any], one: str, many: str) -> list[str]:
    if one in spec and many in spec:
        raise ValueError(f"Only one of [{one}] and [{many}] is supported")
    value = spec.get(one, spec.get(many))
    if value is None:
        raise ValueError(f"One of [{one}] or [{many}] is required")
    return [value] if isinstance(value, str) else list(value)


def _action_indices(cluster: Any, expressions: list[str]) -> list[str]:
    state = state_of(cluster)
    out: list[str] = []
    for expression in expressions:
        if expression in state.data_streams:
            raise ModelUnsupported("data stream aliases")
        found = resolve_expression(cluster, expression, expand_wildcards="open", allow_no_indices=False)
        out.extend(i for i in found if i not in out)
    return out


def update_aliases(cluster: Any, body: dict[str, Any]) -> Any:
    """Apply every action of one ``POST /_aliases`` atomically (all or none)."""
    state = state_of(cluster)
    actions = (body or {}).get("actions")
    if not actions:
        return error(400, "action_request_validation_exception", "Validation Failed: 1: Must specify at least one alias action;")
    staged = {name: dict(index.aliases) for name, index in state.indices.items()}
    removed_indices: list[str] = []
    try:
        for item in actions:
            (kind, spec), = item.items()
            if kind == "add":
                _add(cluster, staged, spec)
            elif kind == "remove":
                failure = _remove(cluster, staged, spec)
                if failure is not None:
                    return failure
            elif kind == "remove_index":
                for name in _action_indices(cluster, _names(spec, "index", "indices")):
                    if state.indices[name].data_stream:
                        return error(400, "illegal_argument_exception",
                                     f"index [{name}] is the backing index of a data stream; remove_index is not allowed")
                    removed_indices.append(name)
            else:
                return error(400, "x_content_parse_exception", f"[aliases] unknown field [{kind}]")
    except IndexNotFound as exc:
        return exc.answer()
    except ModelUnsupported as exc:
        return unsupported(str(exc))
    except ValueError as exc:
        return error(400, "action_request_validation_exception", f"Validation Failed: 1: {exc};")
    except _Refused as exc:
        return exc.answer
    problem = _hidden_consistency(staged)
    if problem:
        return error(400, "illegal_state_exception", problem)
    for name, alias_map in staged.items():
        if name in state.indices:
            state.indices[name].aliases = alias_map
    for name in removed_indices:
        state.indices.pop(name, None)
    return response(200, {"acknowledged": True, "errors": False})


class _Refused(Exception):
    def __init__(self, answer: Any) -> None:
        super().__init__("refused")
        self.answer = answer


def _add(cluster: Any, staged: dict[str, dict[str, AliasMeta]], spec: dict[str, Any]) -> None:
    state = state_of(cluster)
    unknown = set(spec) - {"index", "indices", "alias", "aliases", "filter", "is_hidden", "is_write_index", "must_exist"}
    if unknown:
        raise ModelUnsupported(f"alias add parameters {sorted(unknown)}")
    filt = spec.get("filter")
    if filt is not None:
        try:  # AliasValidator.validateAliasFilter: the filter must be a query the model can parse
            Matcher(None, datetime.now(UTC)).matches(filt, {})
        except ModelUnsupported:
            raise
        except Exception as exc:
            raise _Refused(error(400, "illegal_argument_exception", f"failed to parse filter for alias: {exc}")) from exc
    for alias in _names(spec, "alias", "aliases"):
        if alias in state.indices or alias in state.data_streams:
            raise _Refused(error(400, "invalid_alias_name_exception",
                                 f"Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias",
                                 index=alias))
        if alias != alias.lower() or alias.startswith(("_", "-", "+")):
            raise _Refused(error(400, "invalid_alias_name_exception", f"Invalid alias name [{alias}]: must be lowercase"))
        for index in _action_indices(cluster, _names(spec, "index", "indices")):
            staged[index][alias] = AliasMeta(filter=filt, is_hidden=bool(spec.get("is_hidden", False)),
                                             is_write_index=spec.get("is_write_index"))


def _remove(cluster: Any, staged: dict[str, dict[str, AliasMeta]], spec: dict[str, Any]) -> Any:
    patterns = _names(spec, "alias", "aliases")
    must_exist = bool(spec.get("must_exist", False))
    touched = False
    for index in _action_indices(cluster, _names(spec, "index", "indices")):
        for alias in list(staged[index]):
            if any(fnmatch.fnmatchcase(alias, p) for p in patterns):
                del staged[index][alias]
                touched = True
    if must_exist and not touched:
        return error(404, "aliases_not_found_exception", f"aliases [{','.join(patterns)}] missing",
                     resource_type="aliases", resource_id=",".join(patterns))
    return None


def _hidden_consistency(staged: dict[str, dict[str, AliasMeta]]) -> str | None:
    by_alias: dict[str, dict[bool, list[str]]] = {}
    for index, alias_map in staged.items():
        for alias, meta in alias_map.items():
            by_alias.setdefault(alias, {}).setdefault(bool(meta.is_hidden), []).append(index)
    for alias, groups in sorted(by_alias.items()):
        if len(groups) == 2:
            return (f"alias [{alias}] has is_hidden set to true on indices [{','.join(sorted(groups[True]))}] but does not "
                    f"have is_hidden set to true on indices [{','.join(sorted(groups[False]))}]; alias must have the same "
                    "is_hidden setting on all indices")
    return None


def alias_body(meta: AliasMeta) -> dict[str, Any]:
    """``AliasMetadata.toXContent``: only what is set."""
    out: dict[str, Any] = {}
    if meta.filter is not None:
        out["filter"] = meta.filter
    if meta.is_write_index is not None:
        out["is_write_index"] = meta.is_write_index
    if meta.is_hidden:
        out["is_hidden"] = True
    return out


def get_aliases(cluster: Any, index_expr: str | None, alias_expr: str | None) -> Any:
    state = state_of(cluster)
    try:
        targets = resolve_expression(cluster, index_expr, expand_wildcards="all") if index_expr else sorted(state.indices)
    except IndexNotFound as exc:
        return exc.answer()
    patterns = [p for p in (alias_expr or "*").split(",") if p] if alias_expr not in (None, "_all") else ["*"]
    body: dict[str, Any] = {}
    found: set[str] = set()
    for name in targets:
        index = state.indices[name]
        picked = {a: alias_body(m) for a, m in sorted(index.aliases.items())
                  if any(fnmatch.fnmatchcase(a, p) for p in patterns)}
        found.update(picked)
        if picked or alias_expr is None:
            body[name] = {"aliases": picked}
    missing = [p for p in patterns if "*" not in p and p not in found]
    if missing:
        return response(404, {"error": f"alias [{','.join(missing)}] missing", "status": 404, **body})
    return response(200, body)


def _post_aliases(cluster: Any, match: Any, params: Any, body: Any, user: Any) -> Any:
    return update_aliases(cluster, body or {})


def _get_alias_by_name(cluster: Any, match: Any, params: Any, body: Any, user: Any) -> Any:
    return get_aliases(cluster, None, match.group("alias"))


def _get_index_aliases(cluster: Any, match: Any, params: Any, body: Any, user: Any) -> Any:
    return get_aliases(cluster, match.group("expr"), match.groupdict().get("alias"))


def _get_all_aliases(cluster: Any, match: Any, params: Any, body: Any, user: Any) -> Any:
    return get_aliases(cluster, None, None)
