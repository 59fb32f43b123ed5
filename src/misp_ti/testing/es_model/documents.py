"""Writing documents: targets, ingest pipelines, the mapping, ids, data streams, the failure store, ``_bulk``.

Modelled on elastic/elasticsearch ``TransportBulkAction`` / ``BulkOperation`` (target resolution, auto-create,
``validateWriteIndex``), ``IngestService`` (default and final pipelines, ``_ingest.timestamp``), the ingest
processors of ``modules/ingest-common`` (``SetProcessor``, ``RemoveProcessor``, ``RenameProcessor``,
``PipelineProcessor``), ``TransportShardBulkAction`` + ``InternalEngine`` (``create`` on an existing id is a
version conflict), ``DataStreamTimestampFieldMapper`` and ``IndexDocFailureStoreStatus``.

Everything written is searchable at once: the model has no refresh cycle, so ``_refresh`` is a no-op.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from misp_ti.testing.es_model import templates as T
from misp_ti.testing.es_model.mappings import DocumentParsingError, ModelUnsupported, ParseSettings
from misp_ti.testing.es_model.state import IndexMeta, Response, es_error, unsupported

PROCESSORS = {"set", "remove", "rename", "pipeline"}
_COMMON = {"description", "tag", "ignore_failure"}


@dataclass
class ItemResult:
    status: int
    body: dict[str, Any]


class IngestError(Exception):
    def __init__(self, type: str, reason: str) -> None:
        super().__init__(reason)
        self.type, self.reason = type, reason


def validate_pipeline(body: Any) -> Response | None:
    """Refuse at PUT what Elasticsearch refuses (``ConfigurationUtils``) and what the model does not run."""
    if not isinstance(body, dict) or not isinstance(body.get("processors", []), list):
        return es_error(400, "parse_exception", "[processors] required property is missing")
    for proc in [*body.get("processors", []), *body.get("on_failure", [])]:
        (kind, spec), = proc.items()
        if kind not in PROCESSORS:
            return unsupported(f"the ingest processor [{kind}] (modelled: {', '.join(sorted(PROCESSORS))})")
        extra = set(spec) - _COMMON - {"set": {"field", "value", "copy_from", "override", "ignore_empty_value"},
                                       "remove": {"field", "ignore_missing"},
                                       "rename": {"field", "target_field", "ignore_missing", "override"},
                                       "pipeline": {"name", "ignore_missing_pipeline"}}[kind]
        if extra:
            return unsupported(f"the option(s) {sorted(extra)} of the [{kind}] processor")
        if "field" not in spec and kind != "pipeline":
            return es_error(400, "parse_exception", "[field] required property is missing", processor_type=kind)
        if kind == "set" and ("value" in spec) == ("copy_from" in spec):
            return es_error(400, "parse_exception", "[value] either `value` or `copy_from` must be set", processor_type=kind)
    if body.get("on_failure"):
        return unsupported("pipeline-level on_failure handlers")
    return None


def _get(doc: dict[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise IngestError("illegal_argument_exception", f"cannot set [{parts[-1]}] with parent object of type [{type(node).__name__}] as part of path [{path}]")
    node[parts[-1]] = value


def _pop(doc: dict[str, Any], path: str) -> None:
    parts = path.split(".")
    found, parent = _get(doc, ".".join(parts[:-1])) if len(parts) > 1 else (True, doc)
    parent.pop(parts[-1])


def _render(template: Any, doc: dict[str, Any], meta: dict[str, Any]) -> Any:
    """Mustache ``{{field}}`` / ``{{{field}}}`` references in ``set`` values (``ValueSource``, ``TemplateScript``)."""
    if not isinstance(template, str) or "{{" not in template:
        return template

    def one(m: re.Match[str]) -> str:
        found, value = _lookup(m.group(1).strip(), doc, meta)
        return "" if not found or value is None else value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"\{\{\{?\s*([^{}]+?)\s*\}?\}\}", one, template)


def _lookup(path: str, doc: dict[str, Any], meta: dict[str, Any]) -> tuple[bool, Any]:
    if path.startswith("_ingest."):
        return _get(meta, path)
    return _get(doc, path)


def _run_pipeline(cluster: Any, name: str, doc: dict[str, Any], meta: dict[str, Any], depth: int = 0) -> None:
    pipeline = cluster.state.pipelines.get(name)
    if pipeline is None:
        raise IngestError("illegal_argument_exception", f"pipeline with id [{name}] does not exist")
    if depth > 100:
        raise IngestError("illegal_state_exception", f"Cycle detected for pipeline: {name}")
    for proc in pipeline.get("processors", []):
        (kind, spec), = proc.items()
        try:
            _run_processor(cluster, kind, spec, doc, meta, depth)
        except IngestError:
            if not spec.get("ignore_failure"):
                raise


def _run_processor(cluster: Any, kind: str, spec: dict[str, Any], doc: dict[str, Any], meta: dict[str, Any], depth: int) -> None:
    if kind == "pipeline":
        target = _render(spec["name"], doc, meta)
        if target not in cluster.state.pipelines and spec.get("ignore_missing_pipeline"):
            return  # PipelineProcessor: ignore_missing_pipeline
        _run_pipeline(cluster, target, doc, meta, depth + 1)
        return
    fields = spec["field"] if isinstance(spec["field"], list) else [spec["field"]]
    if kind == "set":
        field = _render(fields[0], doc, meta)
        if spec.get("override", True) is False and _get(doc, field)[0] and _get(doc, field)[1] is not None:
            return
        if "copy_from" in spec:
            found, value = _lookup(spec["copy_from"], doc, meta)
            if not found:
                raise IngestError("illegal_argument_exception", f"field [{spec['copy_from']}] not present as part of path [{spec['copy_from']}]")
            value = copy.deepcopy(value)
        else:
            value = _render(spec["value"], doc, meta)
        if spec.get("ignore_empty_value") and value in (None, ""):
            return
        _put(doc, field, value)
    elif kind == "remove":
        for field in fields:
            if _get(doc, field)[0]:
                _pop(doc, field)
            elif not spec.get("ignore_missing"):
                raise IngestError("illegal_argument_exception", f"field [{field}] not present as part of path [{field}]")
    elif kind == "rename":
        found, value = _get(doc, fields[0])
        if not found:
            if spec.get("ignore_missing"):
                return
            raise IngestError("illegal_argument_exception", f"field [{fields[0]}] doesn't exist")
        target = spec["target_field"]
        if _get(doc, target)[0] and not spec.get("override", False):
            raise IngestError("illegal_argument_exception", f"field [{target}] already exists")
        _pop(doc, fields[0])
        _put(doc, target, value)


def ingest_timestamp(cluster: Any) -> str:
    """``_ingest.timestamp``: the cluster clock, printed as Java's ``ZonedDateTime.toString`` would (UTC, 'Z')."""
    return cluster.state.clock().isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- one document ---------------------------------------------------------------------------------

def _write_target(cluster: Any, target: str, op_type: str) -> tuple[IndexMeta | None, str | None, ItemResult | None]:
    """(write index, data stream name, error). Creates what auto-create would create."""
    state = cluster.state
    if target in state.data_streams:
        return state.indices[state.data_streams[target].write_index], target, None
    if target in state.indices:
        return state.indices[target], state.indices[target].data_stream, None
    holders = [ix for ix in state.indices.values() if target in ix.aliases]
    if holders:
        writers = [ix for ix in holders if ix.aliases[target].is_write_index]
        if len(writers) == 1 or (len(holders) == 1 and holders[0].aliases[target].is_write_index is not False):
            return (writers or holders)[0], None, None
        return None, None, _fail(400, target, None, "illegal_argument_exception", (
            f"no write index is defined for alias [{target}]. The write index may be explicitly disabled using "
            "is_write_index=false or the alias points to multiple indices without one being designated as a write index"))
    tname = T.find_v2_template(state, target)
    if tname is not None and "data_stream" in state.index_templates[tname]:
        if state.index_templates[tname].get("allow_auto_create") is False:
            return None, None, _fail(404, target, None, "index_not_found_exception", f"no such index [{target}] and [index.auto_create] is false")
        answer = T.create_data_stream(cluster, target)
        if answer.status != 200:
            return None, None, _fail(answer.status, target, None, answer.body["error"]["type"], answer.body["error"]["reason"])
        return state.indices[state.data_streams[target].write_index], target, None
    created = T.create_index(cluster, target, None, by="auto")
    if isinstance(created, Response):
        return None, None, _fail(created.status, target, None, created.body["error"]["type"], created.body["error"]["reason"])
    return created, None, None


def _fail(status: int, target: str, doc_id: str | None, type: str, reason: str, **extra: Any) -> ItemResult:
    return ItemResult(status, {"_index": target, "_id": doc_id, "status": status, "error": {"type": type, "reason": reason, **extra}})


def index_document(cluster: Any, target: str, doc_id: str | None, source: dict[str, Any], *, op_type: str = "index",
                   pipeline: str | None = None) -> ItemResult:
    """Index one document as a bulk item would (see the module docstring)."""
    state = cluster.state
    index, ds_name, failed = _write_target(cluster, target, op_type)
    if failed is not None or index is None:
        return failed or _fail(500, target, doc_id, "exception", "no write index")
    if ds_name is not None and target == ds_name and op_type != "create":
        # BulkOperation.validateWriteIndex
        return _fail(400, target, doc_id, "illegal_argument_exception", "only write ops with an op_type of create are allowed in data streams")
    ds = state.data_streams.get(ds_name) if ds_name else None
    doc = copy.deepcopy(source)
    if doc_id is None:
        doc_id = _auto_id(cluster)
    meta = {"_ingest": {"timestamp": ingest_timestamp(cluster)}}
    chosen = pipeline or index.settings.get("index.default_pipeline")
    try:
        for name in (chosen, index.settings.get("index.final_pipeline")):
            if name and name != "_none":
                _run_pipeline(cluster, name, doc, meta)
    except IngestError as exc:
        return _to_failure_store(cluster, ds, index, doc_id, source, exc.type, exc.reason, 400)
    settings = ParseSettings(
        ignore_malformed=str(index.settings.get("index.mapping.ignore_malformed", False)).lower() == "true",
        total_fields_limit=int(index.settings.get("index.mapping.total_fields.limit", 1000)),
        ignore_dynamic_beyond_limit=str(index.settings.get("index.mapping.total_fields.ignore_dynamic_beyond_limit", False)).lower() == "true",
        data_stream=index.data_stream is not None,
    )
    try:
        _ignored, update = index.mapping.check(doc, doc_id=doc_id, settings=settings)
        if index.data_stream is not None and _get(doc, "@timestamp")[1] is None:
            raise DocumentParsingError("[1:1] failed to parse: data stream timestamp field [@timestamp] is missing", caused_by={
                "type": "illegal_argument_exception", "reason": "data stream timestamp field [@timestamp] is missing"})
    except DocumentParsingError as exc:
        error = exc.to_error()
        status = 400
        return _to_failure_store(cluster, ds, index, doc_id, source, error["type"], error["reason"], status, error.get("caused_by"))
    except ModelUnsupported as exc:
        return _fail(501, index.name, doc_id, "model_unsupported_exception", str(exc))
    exists = doc_id in index.docs
    if exists and op_type == "create":
        # InternalEngine: a create of an id the shard already holds (only the write index is looked at,
        # so after a rollover the same id can be created again in the new backing index)
        return _fail(409, index.name, doc_id, "version_conflict_engine_exception",
                     f"[{doc_id}]: version conflict, document already exists (current version [{index.versions.get(doc_id, 1)}])",
                     index_uuid=index.uuid, shard="0", index=index.name)
    if update is not None:
        index.mapping.apply(update)
    index.docs[doc_id] = doc
    index.versions[doc_id] = index.versions.get(doc_id, 0) + 1
    status = 200 if exists else 201
    return ItemResult(status, {"_index": index.name, "_id": doc_id, "_version": index.versions[doc_id],
                               "result": "updated" if exists else "created", "_shards": {"total": 2, "successful": 1, "failed": 0},
                               "_seq_no": sum(len(ix.docs) for ix in state.indices.values()) - 1, "_primary_term": 1, "status": status})


def _to_failure_store(cluster: Any, ds: Any, index: IndexMeta, doc_id: str, source: dict[str, Any], type: str, reason: str,
                      status: int, caused_by: dict[str, Any] | None = None) -> ItemResult:
    """A refused document: an error item, or, when the data stream's failure store is on, a success that
    says ``"failure_store": "used"`` and keeps the document in ``ds.failure_docs``."""
    if ds is not None and ds.failure_store:
        store_name = f".fs-{ds.name}-{cluster.state.clock().strftime('%Y.%m.%d')}-{ds.generation:06d}"
        ds.failure_docs.append({"@timestamp": ingest_timestamp(cluster), "document": {"id": doc_id, "index": index.name, "source": copy.deepcopy(source)},
                                "error": {"type": type, "message": reason}})
        return ItemResult(201, {"_index": store_name, "_id": doc_id, "_version": 1, "result": "created", "status": 201, "failure_store": "used"})
    result = _fail(status, index.name, doc_id, type, reason)
    if caused_by:
        result.body["error"]["caused_by"] = caused_by
    if ds is not None and tuple(cluster.state.version) >= (9, 0):
        result.body["failure_store"] = "not_enabled"
    return result


def _auto_id(cluster: Any) -> str:
    cluster.state.auto_id_counter += 1
    return f"model{cluster.state.auto_id_counter:015d}"


# -- _bulk ------------------------------------------------------------------------------------------

_META_KEYS = {"_index", "_id", "pipeline", "routing", "require_alias", "op_type", "if_seq_no", "if_primary_term", "version", "version_type", "dynamic_templates", "require_data_stream", "list_executed_pipelines"}


def parse_ndjson(body: Any) -> list[Any]:
    if isinstance(body, list):
        return body
    if isinstance(body, bytes):
        body = body.decode()
    return [json.loads(line) for line in str(body or "").splitlines() if line.strip()]


def bulk(cluster: Any, params: dict[str, str], body: Any, default_index: str | None = None) -> Response:
    try:
        lines = parse_ndjson(body)
    except json.JSONDecodeError as exc:
        return es_error(400, "x_content_parse_exception", f"[1:1] Unexpected character: {exc.msg}")
    items: list[dict[str, Any]] = []
    i = 0
    while i < len(lines):
        action = lines[i]
        if not isinstance(action, dict) or len(action) != 1:
            return es_error(400, "illegal_argument_exception", f"Malformed action/metadata line [{i + 1}], expected a simple value for field [{next(iter(action), '')}] but found [START_OBJECT]")
        (op, meta), = action.items()
        unknown = set(meta) - _META_KEYS
        if unknown:
            return es_error(400, "illegal_argument_exception", f"Action/metadata line [{i + 1}] contains an unknown parameter [{sorted(unknown)[0]}]")
        if op not in ("index", "create", "delete", "update"):
            return es_error(400, "illegal_argument_exception", f"Malformed action/metadata line [{i + 1}], expected one of [create, delete, index, update] but found [{op}]")
        target = meta.get("_index") or default_index
        if target is None:
            return es_error(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        if op == "delete":
            items.append({op: delete_document(cluster, target, meta.get("_id")).body})
            i += 1
            continue
        source = lines[i + 1] if i + 1 < len(lines) else None
        i += 2
        if op == "update":
            items.append({op: _fail(501, target, meta.get("_id"), "model_unsupported_exception", "the model does not support bulk update").body})
            continue
        op_type = "create" if op == "create" or meta.get("op_type") == "create" else "index"
        result = index_document(cluster, target, meta.get("_id"), source or {}, op_type=op_type,
                                pipeline=meta.get("pipeline") or params.get("pipeline"))
        items.append({op: result.body})
    errors = any(next(iter(it.values())).get("error") for it in items)
    return Response(200, {"errors": errors, "took": 0, "items": items})


def delete_document(cluster: Any, target: str, doc_id: str | None) -> ItemResult:
    state = cluster.state
    if target in state.data_streams:
        return _fail(400, target, doc_id, "illegal_argument_exception", "only write ops with an op_type of create are allowed in data streams")
    index = state.indices.get(target)
    if index is None:
        return _fail(404, target, doc_id, "index_not_found_exception", f"no such index [{target}]")
    found = doc_id in index.docs
    if found:
        del index.docs[doc_id]
    return ItemResult(200 if found else 404, {"_index": target, "_id": doc_id, "result": "deleted" if found else "not_found", "status": 200 if found else 404})


def _single(cluster: Any, m: Any, params: dict[str, str], body: Any, op_type: str) -> Response:
    op = "create" if op_type == "create" or params.get("op_type") == "create" else "index"
    result = index_document(cluster, m["index"], m.groupdict().get("id"), body or {}, op_type=op, pipeline=params.get("pipeline"))
    if "error" in result.body:
        e = result.body["error"]
        return es_error(result.status, e["type"], e["reason"], caused_by=e.get("caused_by"))
    return Response(result.status, {k: v for k, v in result.body.items() if k != "status"})


def _get_doc(cluster: Any, m: Any) -> Response:
    index = cluster.state.indices.get(m["index"])
    if index is None:
        return es_error(404, "index_not_found_exception", f"no such index [{m['index']}]", index=m["index"])
    if m["id"] not in index.docs:
        return Response(404, {"_index": index.name, "_id": m["id"], "found": False})
    return Response(200, {"_index": index.name, "_id": m["id"], "_version": index.versions.get(m["id"], 1), "found": True, "_source": index.docs[m["id"]]})


def _refresh(cluster: Any) -> Response:
    n = len(cluster.state.indices)
    return Response(200, {"_shards": {"total": n, "successful": n, "failed": 0}})


_IX = r"(?P<index>[^/_][^/]*)"
ROUTES = [
    ("POST", r"/_bulk", lambda c, m, p, b, u: bulk(c, p, b)),
    ("PUT", r"/_bulk", lambda c, m, p, b, u: bulk(c, p, b)),
    ("POST", rf"/{_IX}/_bulk", lambda c, m, p, b, u: bulk(c, p, b, m["index"])),
    ("PUT", rf"/{_IX}/_bulk", lambda c, m, p, b, u: bulk(c, p, b, m["index"])),
    ("PUT", rf"/{_IX}/_doc/(?P<id>[^/]+)", lambda c, m, p, b, u: _single(c, m, p, b, "index")),
    ("POST", rf"/{_IX}/_doc(?:/(?P<id>[^/]+))?", lambda c, m, p, b, u: _single(c, m, p, b, "index")),
    ("PUT", rf"/{_IX}/_create/(?P<id>[^/]+)", lambda c, m, p, b, u: _single(c, m, p, b, "create")),
    ("POST", rf"/{_IX}/_create/(?P<id>[^/]+)", lambda c, m, p, b, u: _single(c, m, p, b, "create")),
    ("GET", rf"/{_IX}/_doc/(?P<id>[^/]+)", lambda c, m, p, b, u: _get_doc(c, m)),
    ("POST", r"/(?:[^/]+/)?_refresh", lambda c, m, p, b, u: _refresh(c)),
    ("GET", r"/(?:[^/]+/)?_refresh", lambda c, m, p, b, u: _refresh(c)),
]
