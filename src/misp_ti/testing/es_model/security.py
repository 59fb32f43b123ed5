"""Users, roles, ``_has_privileges`` and per-request authorization: a MODEL of Elasticsearch security.

Not Elasticsearch. Sources (elastic/elasticsearch ``x-pack/plugin/core/src/main/java/org/elasticsearch/xpack/core/security/authz/privilege/``
and ``x-pack/plugin/security/``):

* ``IndexPrivilege``: each named index privilege is a set of action patterns (the automatons
  ``READ_AUTOMATON``, ``CREATE_DOC_AUTOMATON``, ``WRITE_AUTOMATON``, ``MANAGE_AUTOMATON``,
  ``VIEW_METADATA_AUTOMATON``, ``AUTO_CONFIGURE_AUTOMATON``... quoted below as data);
* ``ClusterPrivilegeResolver``: cluster privileges likewise (``ALL_CLUSTER_PATTERN``; ``manage`` is
  ``ALL_CLUSTER_PATTERN`` minus ``cluster:admin/xpack/security/*``; ``MONITOR_PATTERN`` includes the
  template GET actions...);
* ``RBACEngine.checkPrivileges`` / ``TransportHasPrivilegesAction``: a privilege asked for is held when
  the granted automaton contains the asked one (modelled as pattern containment: every pattern here
  ends in ``*`` or is literal, so containment is a prefix test);
* authorization failures: ``AuthorizationService.denialException`` -> 403 ``security_exception``
  "action [...] is unauthorized for user [...] with effective roles [...] ...";
* security disabled: ``SecurityActionFilter`` answers "Security must be explicitly enabled when using a
  [basic] license..." (type ``exception``, status 500);
* transforms: ``x-pack/plugin/transform/.../action/TransformPrivilegeChecker`` asks ``read`` on the source,
  and ``read`` + ``index`` on the destination, plus ``create_index`` on it and ``view_index_metadata`` on
  the source when the destination does not exist yet; the transform then runs with its creator's roles.

Simplifications: a wildcard in a request's index expression must be covered by a role pattern (Elasticsearch
would instead narrow it to the authorized indices); a ``_bulk`` with any unauthorized item is refused
whole (Elasticsearch answers 403 in that item only); application privileges are not modelled.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from .search import error, response, state_of, unsupported

_SEC = "cluster:admin/xpack/security/*"
_ALL_CLUSTER = ["cluster:*", "indices:admin/template/*", "indices:admin/index_template/*"]
#: name -> (granted patterns, excluded patterns); quoted from ClusterPrivilegeResolver
CLUSTER_PRIVILEGES: dict[str, tuple[list[str], list[str]]] = {
    "all": (_ALL_CLUSTER, []),
    "manage": (_ALL_CLUSTER, [_SEC]),
    "monitor": (["cluster:monitor/*", "indices:admin/template/get", "cluster:admin/component_template/get",
                 "indices:admin/index_template/get"], []),
    "manage_index_templates": (["indices:admin/template/*", "indices:admin/index_template/*", "cluster:admin/component_template/*"], []),
    "manage_ilm": (["cluster:admin/ilm/*"], []),
    "read_ilm": (["cluster:admin/ilm/get", "cluster:admin/ilm/operation_mode/get"], []),
    "manage_pipeline": (["cluster:admin/ingest/pipeline/*"], []),
    "manage_ingest_pipelines": (["cluster:admin/ingest/pipeline/*"], []),
    "read_pipeline": (["cluster:admin/ingest/pipeline/get", "cluster:admin/ingest/pipeline/simulate"], []),
    "manage_transform": (["cluster:admin/data_frame/*", "cluster:monitor/data_frame/*", "cluster:monitor/transform/*",
                          "cluster:admin/transform/*"], []),
    "monitor_transform": (["cluster:monitor/data_frame/*", "cluster:monitor/transform/*"], []),
    "manage_security": ([_SEC, "cluster:admin/xpack/security/delegate_pki"], []),
}
_VIEW = ["indices:admin/aliases/get", "indices:admin/get", "indices:admin/mappings/fields/get*", "indices:admin/mappings/get",
         "indices:admin/shards/search_shards", "indices:admin/search/search_shards", "indices:admin/validate/query*",
         "indices:monitor/settings/get", "indices:admin/ilm/explain", "indices:admin/data_stream/lifecycle/get",
         "indices:admin/data_stream/lifecycle/explain", "indices:admin/data_stream/get", "indices:admin/resolve/index",
         "indices:admin/resolve/cluster", "indices:data/read/field_caps*", "indices:data/read/xpack/rollup/get/index/caps*",
         "indices:internal/transform/checkpoint*", "indices:monitor/get/metering/stats", "indices:admin/get/metering/stats"]
#: name -> granted action patterns; quoted from IndexPrivilege
INDEX_PRIVILEGES: dict[str, list[str]] = {
    "all": ["indices:*", "internal:transport/proxy/indices:*"],
    "manage": ["indices:monitor/*", "indices:admin/*", "indices:data/read/field_caps*", "indices:data/read/xpack/rollup/get/index/caps*"],
    "write": ["indices:data/write/*", "indices:admin/mapping/auto_put"],
    "index": ["indices:data/write/index*", "indices:data/write/bulk*", "indices:data/write/update*", "indices:data/write/simulate/bulk*"],
    "create": ["indices:data/write/index*", "indices:data/write/bulk*", "indices:data/write/simulate/bulk*"],
    "create_doc": ["indices:data/write/index", "indices:data/write/index[*", "indices:data/write/index:op_type/create",
                   "indices:data/write/bulk*", "indices:data/write/simulate/bulk*"],
    "delete": ["indices:data/write/delete*", "indices:data/write/bulk*"],
    "read": ["indices:data/read/*", "indices:admin/resolve/index", "indices:admin/resolve/cluster"],
    "monitor": ["indices:monitor/*"],
    "view_index_metadata": _VIEW,
    "create_index": ["indices:admin/create", "indices:admin/auto_create", "indices:admin/data_stream/create"],
    "delete_index": ["indices:admin/delete", "indices:admin/data_stream/delete"],
    "auto_configure": ["indices:admin/mapping/auto_put", "indices:admin/auto_create"],
    "manage_ilm": ["indices:admin/ilm/*"],
    "manage_data_stream_lifecycle": ["indices:admin/data_stream/lifecycle/*"],
    "maintenance": ["indices:admin/refresh*", "indices:admin/flush*", "indices:admin/synced_flush", "indices:admin/forcemerge*"],
}


@dataclass
class Role:
    cluster: list[str] = field(default_factory=list)
    indices: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""


@dataclass
class SecurityState:
    users: dict[str, Role] = field(default_factory=dict)


@dataclass
class Refusal:
    """A write the transform's creator may not make (shaped as a bulk item result)."""

    status: int
    body: dict[str, Any]


def _covers(pattern: str, asked: str) -> bool:
    """Is every action ``asked`` (itself a literal or ``prefix*``) matched by ``pattern``?"""
    if pattern.endswith("*"):
        return asked.rstrip("*").startswith(pattern[:-1]) if asked.endswith("*") else asked.startswith(pattern[:-1])
    return pattern == asked


def _overlaps(pattern: str, asked: str) -> bool:
    a, b = pattern.rstrip("*"), asked.rstrip("*")
    return a.startswith(b) if asked.endswith("*") else (b.startswith(a) if pattern.endswith("*") else a == b)


def _grant(allowed: list[str], denied: list[str], asked: list[str]) -> bool:
    return all(any(_covers(p, q) for p in allowed) and not any(_overlaps(d, q) for d in denied) for q in asked)


def _cluster_grant(names: list[str], asked: list[str]) -> bool:
    """The cluster permission is the union of each privilege's (granted minus excluded) actions."""
    held = [CLUSTER_PRIVILEGES.get(n, ([n], []) if ":" in n else ([], [])) for n in names]
    return all(any(_grant(grant, deny, [q]) for grant, deny in held) for q in asked)


def _asked_patterns(name: str, table: dict[str, Any], kind: str) -> list[str]:
    if name in table:
        value = table[name]
        return list(value[0] if isinstance(value, tuple) else value)
    if ":" in name:
        return [name]
    raise ValueError(f"unknown {kind} privilege [{name}]. a privilege must be either one of the predefined {kind} privilege "
                     f"names [{','.join(sorted(table))}] or a pattern over one of the available {kind} actions")


def _name_covered(role_pattern: str, name: str) -> bool:
    if "*" in name:
        return _covers(role_pattern, name) if role_pattern.endswith("*") and "*" not in role_pattern[:-1] \
            else fnmatch.fnmatchcase(name, role_pattern)
    return fnmatch.fnmatchcase(name, role_pattern)


def _index_patterns(role: Role, name: str) -> list[str]:
    out: list[str] = []
    for group in role.indices:
        if any(_name_covered(p, name) for p in group.get("names", [])):
            for privilege in group.get("privileges", []):
                out += INDEX_PRIVILEGES.get(privilege, [privilege] if ":" in privilege else [])
    return out


def _role(cluster: Any, user: Any) -> Role | None:
    sec = state_of(cluster).security
    return None if sec is None or user is None else sec.users.get(str(user))


def index_allowed(cluster: Any, user: Any, name: str, action: str) -> bool:
    if state_of(cluster).security is None:
        return True
    role = _role(cluster, user)
    return role is not None and _grant(_index_patterns(role, name), [], [action])


def cluster_allowed(cluster: Any, user: Any, action: str) -> bool:
    if state_of(cluster).security is None:
        return True
    role = _role(cluster, user)
    return role is not None and _cluster_grant(role.cluster, [action])


# ---------------------------------------------------------------- _has_privileges
def has_privileges(cluster: Any, user: Any, body: dict[str, Any] | None) -> Any:
    if state_of(cluster).security is None:
        return _security_disabled()
    role = _role(cluster, user)
    if role is None:
        return _unauthenticated(user, "/_security/user/_has_privileges")
    body = body or {}
    if body.get("application"):
        return unsupported("application privileges")
    try:
        cluster_answer = {p: _cluster_grant(role.cluster, _asked_patterns(p, CLUSTER_PRIVILEGES, "cluster"))
                          for p in body.get("cluster", [])}
        index_answer: dict[str, dict[str, bool]] = {}
        for entry in body.get("index", []):
            for name in entry.get("names", []):
                granted = _index_patterns(role, name)
                for p in entry.get("privileges", []):
                    index_answer.setdefault(name, {})[p] = _grant(granted, [], _asked_patterns(p, INDEX_PRIVILEGES, "index"))
    except ValueError as exc:
        return error(400, "illegal_argument_exception", str(exc))
    every = all(cluster_answer.values()) and all(v for m in index_answer.values() for v in m.values())
    return response(200, {"username": str(user), "has_all_requested": every, "cluster": cluster_answer,
                          "index": index_answer, "application": {}})


def _security_disabled() -> Any:
    reason = ("Security must be explicitly enabled when using a [basic] license. Enable security by setting "
              "[xpack.security.enabled] to [true] in the elasticsearch.yml file and restart the node.")
    return error(500, "exception", reason)


def _unauthenticated(user: Any, path: str) -> Any:
    if user is None:
        return error(401, "security_exception", f"missing authentication credentials for REST request [{path}]",
                     header={"WWW-Authenticate": ['Basic realm="security", charset="UTF-8"', "ApiKey"]})
    return error(401, "security_exception", f"unable to authenticate user [{user}] for REST request [{path}]",
                 header={"WWW-Authenticate": ['Basic realm="security", charset="UTF-8"', "ApiKey"]})


def _denied(user: Any, role: Role, action: str, indices: list[str] | None) -> Any:
    roles = role.name or str(user)
    if indices is None:
        grants = [n for n, (g, d) in CLUSTER_PRIVILEGES.items() if _grant(g, d, [action])]
        tail = f", this action is granted by the cluster privileges [{','.join(reversed(grants))}]"
        return error(403, "security_exception", f"action [{action}] is unauthorized for user [{user}] with effective roles [{roles}]{tail}")
    grants = [n for n, g in INDEX_PRIVILEGES.items() if _grant(g, [], [action])]
    return error(403, "security_exception",
                 f"action [{action}] is unauthorized for user [{user}] with effective roles [{roles}] on indices "
                 f"[{','.join(indices)}], this action is granted by the index privileges [{','.join(reversed(grants))}]")


# ---------------------------------------------------------------- transforms
def transform_privilege_problem(cluster: Any, user: Any, operation: str, tid: str, config: dict[str, Any]) -> Any:
    """``TransformPrivilegeChecker.checkPrivileges`` for PUT (``operation`` "create")."""
    from .search import resolve_expression

    role = _role(cluster, user)
    if role is None:
        return _unauthenticated(user, f"/_transform/{tid}")
    source = config["source"]["index"]
    sources = [source] if isinstance(source, str) else list(source)
    dest = config["dest"]["index"]
    src_privs, dest_privs = ["read"], ["read", "index"]
    if not resolve_expression(cluster, dest, ignore_unavailable=True):
        dest_privs.append("create_index")
        src_privs.append("view_index_metadata")
    checks = [(dest, dest_privs)] + [(s, src_privs) for s in sources]
    lacking = [name for name, privs in checks
               if not all(_grant(_index_patterns(role, name), [], INDEX_PRIVILEGES[p]) for p in privs)]
    if lacking:
        return error(403, "security_exception", f"Cannot {operation} transform [{tid}] because user {user} lacks all the "
                     f"required permissions for indices: [{', '.join(name for name, _ in checks)}]")
    return None


def index_privilege_problem(cluster: Any, user: Any, index: str, privilege: str) -> Refusal | None:
    """A transform acting with its creator's roles: may ``user`` do ``privilege`` on ``index``?"""
    if state_of(cluster).security is None:
        return None
    role = _role(cluster, user)
    if role is not None and _grant(_index_patterns(role, index), [], INDEX_PRIVILEGES[privilege]):
        return None
    reason = f"action [indices:data/write/bulk[s]] is unauthorized for user [{user}] on indices [{index}]"
    return Refusal(403, {"error": {"type": "security_exception", "reason": reason}, "status": 403})


from .security_routes import ACTIONS, targets  # noqa: E402  (the route -> action table)


def authorize(cluster: Any, method: str, path: str, params: dict[str, Any] | None, user: Any, body: Any = None) -> Any:
    """None when ``user`` may send this request; else the 401/403 answer (or 400 for a route not in the table)."""
    if state_of(cluster).security is None:
        return None
    role = _role(cluster, user)
    if role is None:
        return _unauthenticated(user, path)
    for verb, regex, action, scope in ACTIONS:
        found = re.fullmatch(regex, path)
        if found is None or verb != method.upper():
            continue
        if scope == "self":
            return None
        if scope == "cluster":
            return None if cluster_allowed(cluster, user, action) else _denied(user, role, action, None)
        if scope in ("bulk", "aliases", "reindex") and body is None:
            return unsupported("authorize() needs "
                         f"the request body to check [{method.upper()} {path}] (pass body=...)")
        for name, needed in targets(cluster, scope, action, found, params or {}, body):
            if not index_allowed(cluster, user, name, needed):
                return _denied(user, role, needed, [name])
        return None
    return unsupported(f"no privilege entry for [{method.upper()} {path}]")


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", r"^/_security/user/_has_privileges$", lambda c, m, p, b, u: has_privileges(c, u, b)),
    ("GET", r"^/_security/user/_has_privileges$", lambda c, m, p, b, u: has_privileges(c, u, b)),
]
