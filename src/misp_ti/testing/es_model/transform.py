"""``latest`` transforms: a MODEL of Elasticsearch's transform plugin, not Elasticsearch.

Sources, elastic/elasticsearch ``x-pack/plugin/transform/src/main/java/org/elasticsearch/xpack/transform/``
(and ``x-pack/plugin/core/.../xpack/core/transform/``):

* ids: ``TransformStrings`` (``[a-z0-9](?:[a-z0-9_\\-\\.]*[a-z0-9])?``, at most 64 characters, not ``_all``);
  messages from ``TransformMessages`` (``REST_PUT_TRANSFORM_EXISTS``, ``REST_UNKNOWN_TRANSFORM``);
* ``_start``: ``action/TransportStartTransformAction`` calls ``persistence/TransformIndex.createDestinationIndex``
  on every start: the destination is created when ``concreteIndexNames(lenientExpandOpen, dest)`` finds
  nothing, with ``number_of_shards: 1``, ``auto_expand_replicas: 0-1`` and the ``_meta`` of
  ``createMetadata``; a ``latest`` transform deduces **no field mappings** (``Latest.deduceMappings``
  answers an empty map), so everything in it is mapped dynamically. Then ``setUpDestinationAliases`` runs
  **whether or not the index was just created**: ``remove`` from index ``*`` for each alias with
  ``move_on_creation``, then ``add`` alias -> dest with no filter (which replaces a filtered alias);
* checkpoints: ``checkpoint/TimeBasedCheckpointProvider``: ``timeUpperBound = now - sync.time.delay``;
  ``sourceHasChanged`` looks for source documents with the sync field in ``[previous upper bound, new
  upper bound)`` (gte/lt); no change, no new checkpoint. ``transforms/latest/LatestChangeCollector``
  (two-phase, gh#90643): the unique keys seen in that window are re-evaluated over **all** source
  documents with the sync field below the new bound, and ``Latest`` keeps the top hit by ``sort``
  (descending); ids from :mod:`.transform_ids`;
* retention: ``TransformIndexer.onFinish`` runs ``executeRetentionPolicy`` only after a checkpoint's
  data is processed (so with a quiet source, expired documents stay); the delete query of
  ``RetentionPolicyToDeleteByQueryRequestConverter`` is ``range field < checkpoint.timestamp - max_age``
  where the checkpoint timestamp is the clock when the checkpoint was created;
* failures: ``TransformFailureHandler``: a bulk failure whose status is in
  ``ExceptionRootCauseFinder.IRRECOVERABLE_REST_STATUSES`` (400, 401, 403, 404, 405, 406, 410, 501)
  fails the transform at once (unless ``unattended``); anything else is retried, failing after
  ``num_failure_retries`` (default 10, ``-1`` forever, ``unattended`` forever);
* privileges of the creator: ``action/TransformPrivilegeChecker`` (see :mod:`.security`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

from .query import Matcher, parse_date, source_values
from .search import (
    IndexNotFound,
    error,
    resolve_expression,
    response,
    search,
    state_of,
    unsupported,
)
from .transform_ids import transform_doc_id

_ID = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?")
_IRRECOVERABLE = {400, 401, 403, 404, 405, 406, 410, 501}
_TOP = {"source", "dest", "latest", "pivot", "frequency", "sync", "retention_policy", "settings", "_meta", "description"}
_UNITS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1, "micros": 0.001, "nanos": 0.000001}


def parse_duration_ms(value: Any, name: str) -> int:
    text = str(value)
    found = re.fullmatch(r"(\d+)(d|h|m|s|ms|micros|nanos)", text)
    if not found:
        raise ValueError(f"failed to parse setting [{name}] with value [{text}] as a time value: unit is missing or unrecognized")
    return int(int(found.group(1)) * _UNITS[found.group(2)])


@dataclass
class TransformState:
    id: str
    config: dict[str, Any]
    creator: str | None = None
    create_time_ms: int = 0
    state: str = "stopped"
    reason: str | None = None
    checkpoint: int = 0
    checkpoint_timestamp_ms: int | None = None
    time_upper_bound_ms: int | None = None
    next_due: datetime | None = None
    failure_count: int = 0
    changes_last_detected_at: int | None = None
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("pages_processed", "documents_processed", "documents_indexed", "documents_deleted", "trigger_count",
         "index_failures", "search_total", "index_total"), 0))

    @property
    def frequency_ms(self) -> int:
        return parse_duration_ms(self.config.get("frequency", "1m"), "frequency")

    @property
    def delay_ms(self) -> int:
        return parse_duration_ms(self.config.get("sync", {}).get("time", {}).get("delay", "60s"), "sync.time.delay")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _validate(cluster: Any, tid: str, body: dict[str, Any], defer: bool) -> Any:
    state = state_of(cluster)
    unknown = set(body) - _TOP
    if "aliases" in body.get("dest", {}) and tuple(state.version) < (8, 8):
        unknown.add("dest.aliases")
    if unknown:
        return error(400, "x_content_parse_exception", f"[data_frame_transform_config] unknown field [{sorted(unknown)[0]}]")
    if "pivot" in body:
        return unsupported("pivot transforms (only latest is modelled)")
    problems = []
    if not body.get("source", {}).get("index"):
        problems.append("source.index is required")
    if not body.get("dest", {}).get("index"):
        problems.append("dest.index is required")
    latest = body.get("latest")
    if not latest or not latest.get("unique_key") or not latest.get("sort"):
        problems.append("latest.unique_key and latest.sort are required")
    try:
        frequency = parse_duration_ms(body.get("frequency", "1m"), "frequency")
        if not 1000 <= frequency <= 3_600_000:
            problems.append("frequency must be between 1s and 1h")
        if "sync" in body:
            parse_duration_ms(body["sync"]["time"].get("delay", "60s"), "sync.time.delay")
        retention = body.get("retention_policy", {}).get("time")
        if retention is not None and parse_duration_ms(retention["max_age"], "retention_policy.time.max_age") < 60_000:
            problems.append("retention_policy.time.max_age must be greater than 60s")
    except (ValueError, KeyError) as exc:
        problems.append(str(exc))
    retries = body.get("settings", {}).get("num_failure_retries")
    if retries is not None and not -1 <= int(retries) <= 100:
        problems.append("num_failure_retries must be between -1 and 100")
    if problems:
        return error(400, "action_request_validation_exception",
                     "Validation Failed: " + "".join(f"{i}: {p};" for i, p in enumerate(problems, 1)))
    if not defer:
        try:
            sources = resolve_expression(cluster, _source_expr(body), allow_no_indices=False)
        except IndexNotFound as exc:
            return error(400, "validation_exception", f"Validation Failed: 1: no such index [{exc.name}];")
        dest = body["dest"]["index"]
        if dest in sources:
            return error(400, "validation_exception",
                         f"Validation Failed: 1: Destination index [{dest}] is included in source expression [{_source_expr(body)}];")
        pipeline = body["dest"].get("pipeline")
        if pipeline and pipeline not in state.pipelines:
            return error(400, "status_exception", f"Pipeline with id [{pipeline}] could not be found")
    return None


def _source_expr(config: dict[str, Any]) -> str:
    index = config["source"]["index"]
    return index if isinstance(index, str) else ",".join(index)


def put_transform(cluster: Any, tid: str, body: Any, params: dict[str, Any], user: Any) -> Any:
    state = state_of(cluster)
    if not _ID.fullmatch(tid) or tid == "_all" or len(tid) > 64:
        return error(400, "illegal_argument_exception",
                     f"Invalid transform_id; '{tid}' can contain lowercase alphanumeric (a-z and 0-9), hyphens or "
                     "underscores; must start and end with alphanumeric" if len(tid) <= 64
                     else "The id cannot contain more than 64 characters.")
    if tid in state.transforms:
        return error(409, "resource_already_exists_exception", f"Transform with id [{tid}] already exists")
    body = dict(body or {})
    defer = str((params or {}).get("defer_validation", "false")).lower() == "true"
    problem = _validate(cluster, tid, body, defer)
    if problem is not None:
        return problem
    if state.security is not None and not defer:
        from .security import transform_privilege_problem

        refused = transform_privilege_problem(cluster, user, "create", tid, body)
        if refused is not None:
            return refused
    state.transforms[tid] = TransformState(id=tid, config=body, creator=user, create_time_ms=_ms(state.clock()))
    return response(200, {"acknowledged": True})


def _select(cluster: Any, expr: str, params: dict[str, Any]) -> list[TransformState] | Any:
    transforms = state_of(cluster).transforms
    allow_no_match = str((params or {}).get("allow_no_match", "true")).lower() == "true"
    picked: list[TransformState] = []
    for part in [p for p in (expr or "_all").split(",") if p]:
        if part in ("_all", "*"):
            found = sorted(transforms)
        elif "*" in part:
            found = sorted(t for t in transforms if re.fullmatch(re.escape(part).replace(r"\*", ".*"), t))
        else:
            found = [part] if part in transforms else []
            if not found:
                return error(404, "resource_not_found_exception", f"Transform with id [{part}] could not be found")
        if not found and not allow_no_match:
            return error(404, "resource_not_found_exception", f"Transform with id [{part}] could not be found")
        picked += [transforms[t] for t in found if transforms[t] not in picked]
    return picked


def _shown(t: TransformState) -> dict[str, Any]:
    config = {"id": t.id, **t.config}
    config.setdefault("settings", {})
    config.update({"version": ".".join(map(str, (8, 15, 0))), "create_time": t.create_time_ms})
    return config


def get_transforms(cluster: Any, expr: str, params: dict[str, Any]) -> Any:
    picked = _select(cluster, expr, params)
    if not isinstance(picked, list):
        return picked
    return response(200, {"count": len(picked), "transforms": [_shown(t) for t in picked]})


def get_stats(cluster: Any, expr: str, params: dict[str, Any]) -> Any:
    picked = _select(cluster, expr, params)
    if not isinstance(picked, list):
        return picked
    out = []
    for t in picked:
        last: dict[str, Any] = {"checkpoint": t.checkpoint}
        if t.checkpoint:
            last.update({"timestamp_millis": t.checkpoint_timestamp_ms, "time_upper_bound_millis": t.time_upper_bound_ms})
        checkpointing: dict[str, Any] = {"last": last}
        if t.changes_last_detected_at is not None:
            checkpointing["changes_last_detected_at"] = t.changes_last_detected_at
        entry: dict[str, Any] = {"id": t.id, "state": t.state, "stats": dict(t.stats), "checkpointing": checkpointing,
                                 "health": {"status": "red" if t.state == "failed" else "green"}}
        if t.reason:
            entry["reason"] = t.reason
        out.append(entry)
    return response(200, {"count": len(out), "transforms": out})


def start_transform(cluster: Any, tid: str, user: Any) -> Any:
    from .aliases import update_aliases
    from .templates import create_index

    state = state_of(cluster)
    t = state.transforms.get(tid)
    if t is None:
        return error(404, "resource_not_found_exception", f"Transform with id [{tid}] could not be found")
    if t.state == "failed":
        return error(409, "status_exception", f"Unable to start transform [{tid}] as it is in a failed state. Use force stop "
                     f"and then restart the transform once error is resolved. More details: [{t.reason}]")
    if t.state != "stopped":
        return error(409, "status_exception", f"Cannot start transform [{tid}] as it is already started.")
    dest = t.config["dest"]["index"]
    unattended = bool(t.config.get("settings", {}).get("unattended"))
    if not unattended:
        if not resolve_expression(cluster, dest, ignore_unavailable=True):
            now_ms = _ms(state.clock())
            created = create_index(cluster, dest, {
                "settings": {"index.number_of_shards": 1, "index.auto_expand_replicas": "0-1"},
                "mappings": {"_meta": {"created_by": "transform", "_transform": {
                    "transform": tid, "version": {"created": "8.15.0"}, "creation_date_in_millis": now_ms}}}}, by="transform")
            if not hasattr(created, "name"):
                reason = f"Failed to create destination index [{dest}] for transform [{tid}]"
                return error(getattr(created, "status", 500), "runtime_exception", reason, caused_by=created.body.get("error"))
        aliases = t.config["dest"].get("aliases") or []
        if aliases:
            actions: list[dict[str, Any]] = [{"remove": {"index": "*", "alias": a["alias"]}}
                                             for a in aliases if a.get("move_on_creation")]
            actions += [{"add": {"index": dest, "alias": a["alias"]}} for a in aliases]
            answer = update_aliases(cluster, {"actions": actions})
            if answer.status != 200:
                reason = f"Failed to set up aliases for destination index [{dest}] for transform [{tid}]"
                return error(answer.status, "runtime_exception", reason, caused_by=answer.body.get("error"))
    t.state, t.reason, t.next_due = "started", None, state.clock()
    return response(200, {"acknowledged": True})


def stop_transform(cluster: Any, expr: str, params: dict[str, Any]) -> Any:
    picked = _select(cluster, expr, params)
    if not isinstance(picked, list):
        return picked
    force = str((params or {}).get("force", "false")).lower() == "true"
    for t in picked:
        if t.state == "failed" and not force:
            return error(409, "status_exception", f"Unable to stop transform [{t.id}] as it is in a failed state. Use force "
                         f"stop to stop the transform. More details: [{t.reason}]")
    for t in picked:  # the model's checkpoints are instantaneous: stopping is immediate either way
        t.state, t.reason, t.next_due, t.failure_count = "stopped", None, None, 0
    return response(200, {"acknowledged": True})


def delete_transform(cluster: Any, tid: str, params: dict[str, Any]) -> Any:
    state = state_of(cluster)
    t = state.transforms.get(tid)
    if t is None:
        return error(404, "resource_not_found_exception", f"Transform with id [{tid}] could not be found")
    if t.state != "stopped" and str((params or {}).get("force", "false")).lower() != "true":
        return error(409, "status_exception", f"Cannot delete transform [{tid}] as the task is running. Stop the task first")
    if str((params or {}).get("delete_dest_index", "false")).lower() == "true":
        state.indices.pop(t.config["dest"]["index"], None)
    del state.transforms[tid]
    return response(200, {"acknowledged": True})


# ---------------------------------------------------------------- checkpoints
def tick(cluster: Any, now: datetime) -> None:
    """Run every started transform whose ``frequency`` has come round at ``now`` (one checkpoint each)."""
    for t in list(state_of(cluster).transforms.values()):
        if t.state == "started" and t.next_due is not None and t.next_due <= now:
            t.next_due = now + timedelta(milliseconds=t.frequency_ms)
            t.stats["trigger_count"] += 1
            _checkpoint(cluster, t, now)


def _key_values(source: dict[str, Any], fields: list[str], mapping: Any) -> list[dict[str, Any]]:
    per_field = []
    for name in fields:
        kind = mapping.field_type(name) if mapping is not None else None
        values = source_values(source, name) or [None]  # missing_bucket: true
        if kind in ("long", "integer", "short", "byte", "date"):
            values = [None if v is None else (_ms(parse_date(v)) if kind == "date" else int(v)) for v in values]
        elif kind in ("double", "float", "half_float", "scaled_float"):
            values = [None if v is None else float(v) for v in values]
        else:
            values = [None if v is None else str(v) for v in values]
        per_field.append(values)
    return [dict(zip(fields, combo, strict=True)) for combo in product(*per_field)]


def _checkpoint(cluster: Any, t: TransformState, now: datetime) -> None:
    from .documents import index_document
    from .security import index_privilege_problem

    state = state_of(cluster)
    cfg = t.config
    sync_field = cfg.get("sync", {}).get("time", {}).get("field")
    upper_ms = _ms(now) - (t.delay_ms if sync_field else 0)
    lower_ms = t.time_upper_bound_ms
    source_query = cfg["source"].get("query")
    hits = search(cluster, _source_expr(cfg), source_query, now=now)
    t.stats["search_total"] += 1

    def sync_ms(hit: dict[str, Any]) -> int | None:
        values = source_values(hit["_source"], sync_field) if sync_field else []
        try:
            return _ms(parse_date(values[0])) if values else None
        except ValueError:
            return None

    if sync_field:
        bounded = [h for h in hits if (sync_ms(h) or upper_ms) < upper_ms]
        window = [h for h in bounded if lower_ms is None or (sync_ms(h) or 0) >= lower_ms]
    else:
        bounded = window = hits
    if t.checkpoint > 0 and not window:
        return  # sourceHasChanged is false: no checkpoint, and so no retention either
    keys = cfg["latest"]["unique_key"]
    mapping_of = {name: state.indices[name].mapping for name in {h["_index"] for h in bounded}}
    changed = {tuple(sorted(k.items())) for h in window for k in _key_values(h["_source"], keys, mapping_of[h["_index"]])}
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    sort_field = cfg["latest"]["sort"]
    for hit in bounded:
        for key in _key_values(hit["_source"], keys, mapping_of[hit["_index"]]):
            marker = tuple(sorted(key.items()))
            if marker in changed and _sort_value(hit, sort_field) > _sort_value(best.get(marker), sort_field):
                best[marker] = hit
    dest = cfg["dest"]["index"]
    for marker, hit in best.items():
        refused = index_privilege_problem(cluster, t.creator, dest, "index")
        source = {k: v for k, v in hit["_source"].items() if not k.startswith("_")}  # removeInternalFields
        item = refused or index_document(cluster, dest, transform_doc_id(dict(marker)), source,
                                         pipeline=cfg["dest"].get("pipeline"))
        t.stats["index_total"] += 1
        if item.status not in (200, 201):
            t.stats["index_failures"] += 1
            _fail_or_retry(t, item.status, str(item.body.get("error", item.body)))
            return
        t.stats["documents_indexed"] += 1
    t.stats["documents_processed"] += len(window)
    t.stats["pages_processed"] += 1
    t.failure_count = 0
    t.checkpoint += 1
    t.checkpoint_timestamp_ms, t.time_upper_bound_ms = _ms(now), upper_ms
    if window:
        t.changes_last_detected_at = _ms(now)
    _retention(cluster, t)


def _sort_value(hit: dict[str, Any] | None, sort_field: str) -> tuple[int, Any]:
    if hit is None:
        return (-2, 0)
    values = source_values(hit["_source"], sort_field)
    if not values:
        return (-1, 0)  # missing sorts last
    try:
        return (0, _ms(parse_date(values[0])))
    except (ValueError, TypeError):
        return (0, values[0])


def _retention(cluster: Any, t: TransformState) -> None:
    from .security import index_privilege_problem

    policy = t.config.get("retention_policy", {}).get("time")
    if not policy or t.checkpoint_timestamp_ms is None:
        return
    cutoff = t.checkpoint_timestamp_ms - parse_duration_ms(policy["max_age"], "max_age")
    dest = t.config["dest"]["index"]
    if index_privilege_problem(cluster, t.creator, dest, "delete") is not None:
        _fail_or_retry(t, 403, f"action [indices:data/write/delete/byquery] is unauthorized for user [{t.creator}]")
        return
    state = state_of(cluster)
    query = {"range": {policy["field"]: {"lt": datetime.fromtimestamp(cutoff / 1000, UTC).isoformat()}}}
    for name in resolve_expression(cluster, dest, ignore_unavailable=True):
        index = state.indices[name]
        matcher = Matcher(index.mapping, state.clock())
        doomed = [doc_id for doc_id, src in index.docs.items() if matcher.matches(query, src, doc_id)]
        for doc_id in doomed:
            del index.docs[doc_id]
        t.stats["documents_deleted"] += len(doomed)


def _fail_or_retry(t: TransformState, status: int, reason: str) -> None:
    settings = t.config.get("settings", {})
    unattended = bool(settings.get("unattended"))
    if status in _IRRECOVERABLE and not unattended:
        t.state, t.reason = "failed", f"Failed to index documents into destination index due to permanent error: [{reason}]"
        return
    retries = -1 if unattended else int(settings.get("num_failure_retries", 10))
    t.failure_count += 1
    if retries != -1 and t.failure_count > retries:
        t.state, t.reason = "failed", f"task encountered more than {retries} failures; latest failure: {reason}"


_TID = r"(?P<tid>[^/_][^/]*)"
ROUTES: list[tuple[str, str, Any]] = [
    ("PUT", r"^/_transform/(?P<tid>[^/]+)$", lambda c, m, p, b, u: put_transform(c, m["tid"], b, p, u)),
    ("GET", r"^/_transform/?$", lambda c, m, p, b, u: get_transforms(c, "_all", p)),
    ("GET", r"^/_transform/(?P<tid>[^/]+)/_stats$", lambda c, m, p, b, u: get_stats(c, m["tid"], p)),
    ("GET", rf"^/_transform/{_TID}$", lambda c, m, p, b, u: get_transforms(c, m["tid"], p)),
    ("GET", r"^/_transform/_all$", lambda c, m, p, b, u: get_transforms(c, "_all", p)),
    ("POST", rf"^/_transform/{_TID}/_start$", lambda c, m, p, b, u: start_transform(c, m["tid"], u)),
    ("POST", r"^/_transform/(?P<tid>[^/]+)/_stop$", lambda c, m, p, b, u: stop_transform(c, m["tid"], p)),
    ("DELETE", rf"^/_transform/{_TID}$", lambda c, m, p, b, u: delete_transform(c, m["tid"], p)),
]
