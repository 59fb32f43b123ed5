"""Index and component templates: the APIs, which template a new index resolves to, and composition.

Modelled on elastic/elasticsearch ``server/src/main/java/org/elasticsearch/cluster/metadata/``
``MetadataIndexTemplateService`` (``addIndexTemplateV2``, ``v2TemplateOverlaps``, ``validateIndexTemplateV2``,
``validateDataStreamsStillReferenced``, ``findV2Template``, ``collectMappings``, ``resolveSettings``) and
``ComposableIndexTemplate``; the GET answers on ``TransportGetComposableIndexTemplateAction``,
``TransportGetComponentTemplateAction`` and ``RestGetComposableIndexTemplateAction``.
"""

from __future__ import annotations

import copy
import hashlib
import re
from functools import lru_cache
from typing import Any

from misp_ti.testing.es_model.mappings import (
    Mapping,
    MappingError,
    ModelUnsupported,
    merge_template_mappings,
)
from misp_ti.testing.es_model.state import (
    AliasMeta,
    DataStreamMeta,
    IndexMeta,
    Response,
    es_error,
    unsupported,
)


def simple_match(pattern: str, text: str) -> bool:
    """``Regex.simpleMatch``: ``*`` matches any run of characters."""
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), text) is not None


@lru_cache(maxsize=4096)
def globs_intersect(a: str, b: str) -> bool:
    """Whether some name matches both patterns (what ``findConflictingV2Templates`` asks of its automatons)."""
    if not a or not b:
        return (a or b).strip("*") == ""
    if a[0] == "*":
        return globs_intersect(a[1:], b) or globs_intersect(a, b[1:])
    if b[0] == "*":
        return globs_intersect(a, b[1:]) or globs_intersect(a[1:], b)
    return a[0] == b[0] and globs_intersect(a[1:], b[1:])


def flatten_settings(settings: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested settings to flat keys, with the ``index.`` prefix added where missing
    (``Settings.Builder.normalizePrefix``)."""
    flat: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if isinstance(value, dict):
            flat.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    if prefix:
        return flat
    return {k if k.startswith("index.") else f"index.{k}": v for k, v in flat.items()}


def nest_settings(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value if isinstance(value, (dict, list)) else str(value).lower() if isinstance(value, bool) else str(value)
    return out


def find_v2_template(state: Any, name: str, *, hidden: bool = False) -> str | None:
    """``MetadataIndexTemplateService.findV2Template``: the highest-priority template matching ``name``;
    a hidden index ignores templates with a global ``*`` pattern."""
    best: tuple[int, str] | None = None
    for tname, body in state.index_templates.items():
        patterns = body.get("index_patterns", [])
        if hidden and "*" in patterns:
            continue
        if any(simple_match(p, name) for p in patterns):
            priority = int(body.get("priority") or 0)
            if best is None or priority > best[0]:
                best = (priority, tname)
    return best[1] if best else None


def compose(state: Any, tname: str) -> dict[str, Any]:
    """The template's components in order, then its own ``template``; later wins. Returns
    ``{"settings": flat, "mappings": body, "aliases", "data_stream_options"}``."""
    body = state.index_templates[tname]
    parts = [state.component_templates[c].get("template", {}) for c in body.get("composed_of", []) if c in state.component_templates]
    parts.append(body.get("template", {}))
    settings: dict[str, Any] = {}
    aliases: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for part in parts:
        settings.update(flatten_settings(part.get("settings")))
        aliases.update(copy.deepcopy(part.get("aliases", {})))
        if "data_stream_options" in part:
            options = _deep_merge(options, part["data_stream_options"])  # MetadataIndexTemplateService.resolveDataStreamOptions
    mappings = merge_template_mappings([copy.deepcopy(p.get("mappings") or {}) for p in parts])
    return {"settings": settings, "mappings": mappings, "aliases": aliases, "data_stream_options": options}


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for key, value in b.items():
        out[key] = _deep_merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def resolve_template(cluster: Any, name: str) -> tuple[str | None, dict[str, Any]]:
    """(template name or None, composed parts) for a new index or data stream called ``name``."""
    tname = find_v2_template(cluster.state, name)
    if tname is None:
        return None, {"settings": {}, "mappings": {}, "aliases": {}}
    composed = compose(cluster.state, tname)
    if "data_stream" in cluster.state.index_templates[tname]:
        composed["data_stream"] = cluster.state.index_templates[tname]["data_stream"]
    return tname, composed


# -- PUT _index_template ------------------------------------------------------------------------

def put_index_template(cluster: Any, name: str, body: Any, params: dict[str, str]) -> Response:
    state = cluster.state
    if not isinstance(body, dict):
        return es_error(400, "parse_exception", "request body is required")
    known = {"index_patterns", "composed_of", "template", "priority", "version", "_meta", "data_stream",
             "allow_auto_create", "ignore_missing_component_templates", "deprecated"}
    for key in body:
        if key not in known:
            return es_error(400, "x_content_parse_exception", f"[1:2] [index_template] unknown field [{key}]")
    template = body.get("template") or {}
    if "data_stream_options" in template and tuple(state.version) < (8, 19):
        return es_error(400, "x_content_parse_exception", "[1:2] [template] unknown field [data_stream_options]")
    if not body.get("index_patterns"):
        return es_error(400, "action_request_validation_exception", "Validation Failed: 1: index patterns are missing;")
    if str(params.get("create", "false")).lower() == "true" and name in state.index_templates:
        return es_error(400, "illegal_argument_exception", f"index template [{name}] already exists")
    patterns = [body["index_patterns"]] if isinstance(body["index_patterns"], str) else list(body["index_patterns"])
    body = {**copy.deepcopy(body), "index_patterns": patterns}
    priority = int(body.get("priority") or 0)
    overlaps = {
        other: ob["index_patterns"] for other, ob in state.index_templates.items()
        if other != name and int(ob.get("priority") or 0) == priority
        and any(globs_intersect(p, q) for p in patterns for q in ob["index_patterns"])
    }
    if overlaps:
        # MetadataIndexTemplateService.v2TemplateOverlaps
        listed = ",".join(f"{k} => {v}" for k, v in overlaps.items())
        return es_error(400, "illegal_argument_exception", (
            f"index template [{name}] has index patterns {_jlist(patterns)} matching patterns from existing templates "
            f"[{', '.join(overlaps)}] with patterns ({listed}) that have the same priority [{priority}], multiple "
            "index templates may not match during index creation, please use a different priority"))
    ignore = body.get("ignore_missing_component_templates") or []
    missing = [c for c in body.get("composed_of", []) if c not in state.component_templates and c not in ignore]
    if missing and not ignore:
        return es_error(400, "invalid_index_template_exception",
                        f"index_template [{name}] invalid, cause [index template [{name}] specifies component templates {_jlist(missing)} that do not exist]")
    if missing:
        return es_error(400, "invalid_index_template_exception", (
            f"index_template [{name}] invalid, cause [index template [{name}] specifies a missing component templates "
            f"{_jlist(missing)} that does not exist and is not part of 'ignore_missing_component_templates']"))
    if "*" in patterns and "index.hidden" in flatten_settings(template.get("settings")):
        return es_error(400, "invalid_index_template_exception",
                        f"index_template [{name}] invalid, cause [global composable templates may not specify the setting index.hidden]")
    trial = {**state.index_templates, name: body}
    previous = state.index_templates
    state.index_templates = trial
    try:
        composed = compose(state, name)
    except (MappingError, ModelUnsupported) as exc:
        state.index_templates = previous
        if isinstance(exc, ModelUnsupported):
            return unsupported(str(exc).removeprefix("the model does not support "))
        comps = f"with component templates {_jlist(body.get('composed_of', []))} " if body.get("composed_of") else ""
        return es_error(400, "illegal_argument_exception", f"composable template [{name}] template after composition {comps}is invalid",
                        caused_by={"type": "illegal_argument_exception", "reason": str(exc)})
    state.index_templates = previous
    if composed["data_stream_options"] and "data_stream" not in body:
        return es_error(400, "illegal_argument_exception",
                        f"index template [{name}] specifies data stream options that can only be used in combination with a data stream")
    orphans = _newly_unreferenced(state, trial)
    if orphans:
        no_ds = "and no data stream configuration " if "data_stream" not in body else ""
        return es_error(400, "illegal_argument_exception", (
            f"composable template [{name}] with index patterns {_jlist(patterns)}, priority [{body.get('priority')}] "
            f"{no_ds}would cause data streams {_jlist(orphans)} to no longer match a data stream template"))
    state.index_templates = trial
    return Response(200, {"acknowledged": True})


def _newly_unreferenced(state: Any, trial: dict[str, Any]) -> list[str]:
    """``validateDataStreamsStillReferenced``: data streams whose best template would stop being a
    data-stream template."""
    class _View:
        index_templates = trial
    out = []
    for ds in state.data_streams:
        before = find_v2_template(state, ds)
        after = find_v2_template(_View, ds)
        was = before is not None and "data_stream" in state.index_templates[before]
        now = after is not None and "data_stream" in trial[after]
        if was and not now:
            out.append(ds)
    return sorted(out)


def _jlist(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def get_index_template(cluster: Any, name: str | None) -> Response:
    found = _select(cluster.state.index_templates, name)
    if found is None:
        return es_error(404, "resource_not_found_exception", f"index template matching [{name}] not found")
    items = [{"name": n, "index_template": _shown_template(b)} for n, b in found.items()]
    # an empty wildcard answer is still 404 (RestGetComposableIndexTemplateAction.getStatus)
    return Response(200 if items or name is None else 404, {"index_templates": items})


def _shown_template(body: dict[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(body)
    if "template" in shown and "settings" in shown["template"]:
        shown["template"]["settings"] = nest_settings(flatten_settings(shown["template"]["settings"]))
    if "data_stream" in shown:
        shown["data_stream"] = {"hidden": False, "allow_custom_routing": False, **shown["data_stream"]}
    return shown


def _select(store: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    if name is None:
        return dict(store)
    if "*" in name:
        return {n: b for n, b in store.items() if simple_match(name, n)}
    return {name: store[name]} if name in store else None


def delete_index_template(cluster: Any, name: str) -> Response:
    state = cluster.state
    names = [n for n in state.index_templates if simple_match(name, n)] if "*" in name else [name] if name in state.index_templates else []
    if not names:
        return es_error(404, "index_template_missing_exception", f"index_template [{name}] missing")
    in_use = sorted(ds.name for ds in state.data_streams.values() if ds.template in names)
    if in_use:
        return es_error(400, "illegal_argument_exception",
                        f"unable to remove composable templates {_jlist(names)} as they are in use by a data streams {_jlist(in_use)}")
    for n in names:
        del state.index_templates[n]
    return Response(200, {"acknowledged": True})


# -- _component_template ------------------------------------------------------------------------

def put_component_template(cluster: Any, name: str, body: Any) -> Response:
    if not isinstance(body, dict) or "template" not in body:
        return es_error(400, "x_content_parse_exception", "[1:2] Required [template]")
    template = body["template"] or {}
    if "data_stream_options" in template and tuple(cluster.state.version) < (8, 19):
        return es_error(400, "x_content_parse_exception", "[1:2] [template] unknown field [data_stream_options]")
    try:
        merge_template_mappings([copy.deepcopy(template.get("mappings") or {})])
    except ModelUnsupported as exc:
        return unsupported(str(exc).removeprefix("the model does not support "))
    except MappingError as exc:
        return es_error(400, "mapper_parsing_exception", str(exc))
    cluster.state.component_templates[name] = copy.deepcopy(body)
    return Response(200, {"acknowledged": True})


def get_component_template(cluster: Any, name: str | None) -> Response:
    found = _select(cluster.state.component_templates, name)
    if found is None:
        return es_error(404, "resource_not_found_exception", f"component template matching [{name}] not found")
    items = [{"name": n, "component_template": _shown_template(b)} for n, b in found.items()]
    return Response(200, {"component_templates": items})


def delete_component_template(cluster: Any, name: str) -> Response:
    state = cluster.state
    if name not in state.component_templates:
        return es_error(404, "resource_not_found_exception", f"{name} not found")
    users = sorted(t for t, b in state.index_templates.items() if name in b.get("composed_of", []))
    if users:
        return es_error(400, "illegal_argument_exception",
                        f"component templates [{name}] cannot be removed as they are still in use by index templates {_jlist(users)}")
    del state.component_templates[name]
    return Response(200, {"acknowledged": True})


# -- creating indices and data streams (MetadataCreateIndexService, MetadataCreateDataStreamService) ----

_BAD_CHARS = '\\/*?"<>| ,#:'


def validate_index_name(name: str) -> Response | None:
    """``MetadataCreateIndexService.validateIndexOrAliasName``."""
    def bad(why: str) -> Response:
        return es_error(400, "invalid_index_name_exception", f"Invalid index name [{name}], {why}", index=name, index_uuid="_na_")
    if name != name.lower():
        return bad("must be lowercase")
    if any(c in name for c in _BAD_CHARS):
        return bad('must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?]')
    if name[:1] in ("_", "-", "+"):
        return bad("must not start with '_', '-', or '+'")
    if name in (".", "..") or len(name.encode()) > 255:
        return bad("must not be '.' or '..'" if name in (".", "..") else "index name is too long, (> 255)")
    return None


def create_index(cluster: Any, name: str, body: dict[str, Any] | None, *, by: str = "api",
                 data_stream: str | None = None) -> IndexMeta | Response:
    """Create one index as ``MetadataCreateIndexService.applyCreateIndexRequest`` does. ``by`` names the
    caller (api, auto, transform, reindex, rollover) for messages; ``data_stream`` marks a backing index,
    whose template is looked up by the data stream's name."""
    state = cluster.state
    invalid = validate_index_name(name) if not name.startswith(".ds-") else None
    if invalid:
        return invalid
    if name in state.indices:
        uuid = state.indices[name].uuid
        return es_error(400, "resource_already_exists_exception", f"index [{name}/{uuid}] already exists", index_uuid=uuid, index=name)
    if name in state.data_streams or any(name in ix.aliases for ix in state.indices.values()):
        what = "data stream" if name in state.data_streams else "alias"
        return es_error(400, "invalid_index_name_exception", f"Invalid index name [{name}], already exists as {what}", index=name)
    body = body or {}
    for key in body:
        if key not in ("settings", "mappings", "aliases"):
            return es_error(400, "parse_exception", f"unknown key [{key}] for create index")
    requested = flatten_settings(body.get("settings"))
    hidden = str(requested.get("index.hidden", False)).lower() == "true"
    tname = find_v2_template(state, data_stream or name, hidden=hidden)
    if tname is not None and "data_stream" in state.index_templates[tname] and data_stream is None:
        # MetadataCreateIndexService.applyCreateIndexRequestWithV2Template
        return es_error(400, "illegal_argument_exception", (
            f"cannot create index with name [{name}], because it matches with template [{tname}] that creates "
            "data streams only, use create data stream api instead"))
    composed = compose(state, tname) if tname else {"settings": {}, "mappings": {}, "aliases": {}}
    settings = {"index.number_of_shards": "1", "index.number_of_replicas": "1", **composed["settings"], **requested}
    try:
        root = merge_template_mappings([composed["mappings"], copy.deepcopy(body.get("mappings") or {})])
    except ModelUnsupported as exc:
        return unsupported(str(exc).removeprefix("the model does not support "))
    except MappingError as exc:
        return es_error(400, "mapper_parsing_exception", f"Failed to parse mapping: {exc}")
    if data_stream is not None:
        settings["index.hidden"] = True
        # MetadataIndexTemplateService adds a low-precedence @timestamp date mapping (PR #59244);
        # DataStreamTimestampFieldMapper.doValidate checks its type
        ts = root.setdefault("properties", {}).setdefault("@timestamp", {"type": "date"})
        if ts.get("type") not in ("date", "date_nanos"):
            return es_error(400, "illegal_argument_exception",
                            f"data stream timestamp field [@timestamp] is of type [{ts.get('type')}], but [date,date_nanos] is expected")
        root["_data_stream_timestamp"] = {"enabled": True}
    aliases = {**composed["aliases"], **(body.get("aliases") or {})}
    meta = IndexMeta(
        name=name, settings=settings, mapping=Mapping(root), data_stream=data_stream,
        creation_ms=int(state.clock().timestamp() * 1000), uuid=_uuid(name, len(state.indices)),
        aliases={a: AliasMeta(filter=v.get("filter"), is_hidden=bool(v.get("is_hidden", False)),
                              is_write_index=v.get("is_write_index")) for a, v in aliases.items()},
    )
    state.indices[name] = meta
    return meta


def _uuid(name: str, n: int) -> str:
    return hashlib.sha1(f"{name}/{n}".encode()).hexdigest()[:22]


def backing_index_name(cluster: Any, ds: str, generation: int) -> str:
    """``DataStream.getDefaultBackingIndexName``: ``.ds-<name>-<uuuu.MM.dd>-<generation, 6 digits>``."""
    return f".ds-{ds}-{cluster.state.clock().strftime('%Y.%m.%d')}-{generation:06d}"


def create_data_stream(cluster: Any, name: str) -> Response:
    """``MetadataCreateDataStreamService.createDataStream`` (the API and auto-create on a ``create`` write)."""
    state = cluster.state
    if name in state.data_streams:
        return es_error(400, "resource_already_exists_exception", f"data_stream [{name}] already exists")
    invalid = validate_index_name(name)
    if invalid:
        return invalid
    if name.startswith("."):
        return es_error(400, "illegal_argument_exception", f"data_stream [{name}] must not start with '.'")
    if name in state.indices:
        return es_error(400, "resource_already_exists_exception", f"index [{name}/{state.indices[name].uuid}] already exists")
    tname = find_v2_template(state, name)
    if tname is None:
        return es_error(400, "illegal_argument_exception", f"no matching index template found for data stream [{name}]")
    if "data_stream" not in state.index_templates[tname]:
        return es_error(400, "illegal_argument_exception",
                        f"matching index template [{tname}] for data stream [{name}] has no data stream template")
    created = create_index(cluster, backing_index_name(cluster, name, 1), None, by="data_stream", data_stream=name)
    if isinstance(created, Response):
        return created
    options = compose(state, tname)["data_stream_options"]
    failure_store = str(options.get("failure_store", {}).get("enabled", False)).lower() == "true"
    hidden = bool(state.index_templates[tname]["data_stream"].get("hidden", False))
    state.data_streams[name] = DataStreamMeta(name=name, template=tname, backing=[created.name],
                                              failure_store=failure_store, hidden=hidden)
    return Response(200, {"acknowledged": True})


def rollover_data_stream(cluster: Any, name: str) -> Response:
    """``MetadataRolloverService.rolloverDataStream``: a new write index from the template that matches
    now (which is how a changed template reaches a data stream)."""
    ds = cluster.state.data_streams[name]
    tname = find_v2_template(cluster.state, name)
    if tname is None or "data_stream" not in cluster.state.index_templates[tname]:
        return es_error(400, "illegal_argument_exception", f"no matching index template found for data stream [{name}]")
    old = ds.write_index
    created = create_index(cluster, backing_index_name(cluster, name, ds.generation + 1), None, by="rollover", data_stream=name)
    if isinstance(created, Response):
        return created
    ds.generation += 1
    ds.backing.append(created.name)
    ds.template = tname
    return Response(200, {"acknowledged": True, "shards_acknowledged": True, "old_index": old, "new_index": created.name,
                          "rolled_over": True, "dry_run": False, "lazy": False, "conditions": {}})


def _name(match: Any) -> str | None:
    return match.groupdict().get("name")


ROUTES = [
    ("PUT", r"/_index_template/(?P<name>[^/]+)", lambda c, m, p, b, u: put_index_template(c, m["name"], b, p)),
    ("POST", r"/_index_template/(?P<name>[^/]+)", lambda c, m, p, b, u: put_index_template(c, m["name"], b, p)),
    ("GET", r"/_index_template(?:/(?P<name>[^/]+))?", lambda c, m, p, b, u: get_index_template(c, _name(m))),
    ("DELETE", r"/_index_template/(?P<name>[^/]+)", lambda c, m, p, b, u: delete_index_template(c, m["name"])),
    ("PUT", r"/_component_template/(?P<name>[^/]+)", lambda c, m, p, b, u: put_component_template(c, m["name"], b)),
    ("POST", r"/_component_template/(?P<name>[^/]+)", lambda c, m, p, b, u: put_component_template(c, m["name"], b)),
    ("GET", r"/_component_template(?:/(?P<name>[^/]+))?", lambda c, m, p, b, u: get_component_template(c, _name(m))),
    ("DELETE", r"/_component_template/(?P<name>[^/]+)", lambda c, m, p, b, u: delete_component_template(c, m["name"])),
]
