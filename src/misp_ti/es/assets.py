"""What ``provision`` installs in Elasticsearch, as plain request bodies.

Everything here is a pure function of the settings, so dry-run and real
mode print and send the same bodies. Every body carries
``_meta = {"managed_by": "misp-ti", "version": ASSET_VERSION, "fingerprint": ...}``:
provision compares that with what the cluster holds and skips identical
assets; bump :data:`ASSET_VERSION` when the layout changes in a way that needs
a new transform destination index (the old one is then deleted).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import orjson

from misp_ti.config import ElasticsearchSettings
from misp_ti.model import STREAMS

#: Bump when the transform or its destination mappings change incompatibly.
ASSET_VERSION = 1
MANAGED_BY = "misp-ti"

ILM_POLICY = "misp-ti.source"
PIPELINE_INGESTED = "misp-ti.event-ingested"
PIPELINE_LATEST_DEST = "misp-ti.latest-dest"
LATEST_STREAM = "threat_attributes"
LATEST_ALIAS = "logs-ti_misp_latest.threat_attributes"
TRANSFORM_PREFIX = "misp-ti.latest_threat_attributes-"
DEST_PREFIX = "logs-ti_misp_latest.dest_threat_attributes-"
#: Above the built-in ``logs`` template (100) and Fleet's package templates
#: (200): in ``ecs`` mode our documents must never meet the integration's pipeline.
TEMPLATE_PRIORITY = 250

#: Fields ``ecs@mappings`` does not know (our extensions of ECS, or names
#: its dynamic templates would map wrongly), mapped explicitly. The transform
#: helper is expected to export this list as ``misp_ti.ecs.EXTENSION_FIELDS``;
#: when it does, that list is merged in.
_OWN_EXTENSION_FIELDS: dict[str, dict[str, Any]] = {
    "threat.indicator.email.subject": {"type": "keyword"},
    "threat.indicator.email.address": {"type": "keyword"},
    "threat.indicator.file.name": {"type": "keyword"},
    "threat.indicator.url.full": {"type": "wildcard"},
    "threat.indicator.url.original": {"type": "wildcard"},
    "threat.indicator.registry.key": {"type": "keyword"},
    "threat.indicator.as.number": {"type": "long"},
    "threat.indicator.ip": {"type": "ip"},
    "threat.indicator.first_seen": {"type": "date"},
    "threat.indicator.last_seen": {"type": "date"},
    "threat.indicator.modified_at": {"type": "date"},
    "threat.indicator.marking.tlp": {"type": "keyword"},
    "threat.indicator.type": {"type": "keyword"},
    "threat.indicator.scanner_stats": {"type": "long"},
    "threat.feed.name": {"type": "keyword"},
    "event.ingested": {"type": "date"},
    "event.original": {"type": "keyword", "index": False, "doc_values": False},
    "error.message": {"type": "match_only_text"},
}

_MISP_FIELDS: dict[str, str | dict[str, Any]] = {
    **{f"event.{k}": "keyword" for k in ("id", "info", "orgc_id", "org_id", "uuid", "extends_uuid", "sharing_group_id")},
    **{f"event.{k}": "long" for k in ("distribution", "attribute_count", "threat_level_id")},
    **{f"event.{k}": "date" for k in ("date", "timestamp", "publish_timestamp", "sighting_timestamp")},
    **{f"event.{k}": "boolean" for k in ("disable_correlation", "locked", "proposal_email_lock", "published")},
    **{f"attribute.{k}": "keyword" for k in ("id", "type", "category", "uuid", "event_id", "event_uuid", "comment", "sharing_group_id", "object_id", "object_relation")},
    # values may be far longer than Lucene's 32 766-byte term limit (the
    # transform keeps up to 128 KiB): index a prefix, keep the whole in _source
    "attribute.value": {"type": "keyword", "ignore_above": 8191},
    "attribute.data": {"type": "keyword", "index": False, "doc_values": False},
    "attribute.distribution": "long",
    **{f"attribute.{k}": "boolean" for k in ("to_ids", "deleted", "disable_correlation", "decayed")},
    **{f"attribute.{k}": "date" for k in ("timestamp", "first_seen", "last_seen", "decayed_at")},
    "attribute.decay_score": "flattened",
    **{f"object.{k}": "keyword" for k in ("id", "name", "meta_category", "description", "template_uuid", "template_version", "event_id", "uuid", "sharing_group_id", "comment", "first_seen", "last_seen")},
    "object.distribution": "long",
    "object.timestamp": "date",
    "object.deleted": "boolean",
    "object.attribute": "flattened",
    "context.attribute": "flattened",
    "orgc.id": "keyword",
    "orgc.name": "keyword",
    "orgc.uuid": "keyword",
}


def extension_fields() -> dict[str, dict[str, Any]]:
    fields = dict(_OWN_EXTENSION_FIELDS)
    try:
        from misp_ti.ecs import EXTENSION_FIELDS
    except ImportError:
        return fields
    for name in EXTENSION_FIELDS:
        if isinstance(EXTENSION_FIELDS, dict):
            spec = EXTENSION_FIELDS[name]
            fields[name] = spec if isinstance(spec, dict) else {"type": str(spec)}
        else:
            fields.setdefault(name, {"type": "keyword"})
    return fields


def _nest(flat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"a.b": {...}}`` -> ``{"a": {"properties": {"b": {...}}}}``."""
    root: dict[str, Any] = {}
    for path in sorted(flat):
        node = root
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {}).setdefault("properties", {})
        node[leaf] = dict(flat[path])
    return root


def fingerprint(body: Any) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def meta(body: Any) -> dict[str, Any]:
    return {"managed_by": MANAGED_BY, "version": ASSET_VERSION, "fingerprint": fingerprint(body)}


def is_ours(found: Any) -> bool:
    return isinstance(found, dict) and found.get("managed_by") == MANAGED_BY


def data_stream(stream: str, namespace: str) -> str:
    return f"logs-ti_misp.{stream}-{namespace}"


def template_name(stream: str) -> str:
    # never Fleet's own name (``logs-ti_misp.<stream>``): we must not overwrite it
    return f"misp-ti.logs-ti_misp.{stream}"


def transform_id(version: int | None = None) -> str:
    return f"{TRANSFORM_PREFIX}{ASSET_VERSION if version is None else version}"


def dest_index(version: int | None = None) -> str:
    return f"{DEST_PREFIX}{ASSET_VERSION if version is None else version}"


def es_duration(value: timedelta) -> str:
    """Elasticsearch's time units (d, h, m, s, ms): it has no weeks."""
    millis = round(value.total_seconds() * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def ilm_policy(settings: ElasticsearchSettings) -> dict[str, Any]:
    phases = {
        "hot": {"actions": {"rollover": {"max_age": es_duration(settings.ilm_rollover_max_age)}}},
        "delete": {"min_age": es_duration(settings.ilm_delete_after), "actions": {"delete": {}}},
    }
    return {"policy": {"phases": phases, "_meta": meta(phases)}}


def ingested_pipeline() -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": "misp-ti: event.ingested = the time Elasticsearch received the document (the latest transform syncs on it)",
        "processors": [{"set": {"field": "event.ingested", "copy_from": "_ingest.timestamp"}}],
    }
    return {**body, "_meta": meta(body)}


def latest_dest_pipeline() -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": "misp-ti: the latest view holds indicators, not transform sources",
        "processors": [{"remove": {"field": "labels.is_ioc_transform_source", "ignore_missing": True}}],
    }
    return {**body, "_meta": meta(body)}


def _doc_mappings(*, source: bool, stream: str) -> dict[str, Any]:
    flat: dict[str, dict[str, Any]] = {
        f"misp.{k}": dict(v) if isinstance(v, dict) else {"type": v} for k, v in _MISP_FIELDS.items()
    }
    flat.update(extension_fields())
    flat["event.dataset"] = {"type": "keyword"}
    flat["misp.attribute.uuid"] = {"type": "keyword"}
    if source:
        # Marks raw copies so that indicator queries can skip them (Elastic's
        # convention for transform sources); the latest view drops it.
        flat["labels.is_ioc_transform_source"] = {"type": "constant_keyword", "value": "true"}
    else:
        flat["data_stream.namespace"] = {"type": "keyword"}
    return {"dynamic": True, "properties": _nest(flat)}


def index_template(stream: str, settings: ElasticsearchSettings, *, ecs_mappings: bool) -> dict[str, Any]:
    """The index template of one source data stream."""
    index: dict[str, Any] = {"lifecycle": {"name": ILM_POLICY}}
    if settings.ingested_by == "server":
        index["default_pipeline"] = PIPELINE_INGESTED
    composed = ["logs@mappings", "logs@settings"]
    if ecs_mappings:
        composed.append("ecs@mappings")
    custom = f"logs-ti_misp.{stream}@custom"
    composed.append(custom)
    body: dict[str, Any] = {
        "index_patterns": [f"logs-ti_misp.{stream}-*"],
        "priority": TEMPLATE_PRIORITY,
        "data_stream": {},
        "composed_of": composed,
        # logs@* are built in but can be switched off (stack.templates.enabled);
        # @custom is the user's hook, absent unless they add it.
        "ignore_missing_component_templates": ["logs@mappings", "logs@settings", custom],
        "template": {
            "settings": {"index": index},
            "mappings": _doc_mappings(source=True, stream=stream),
        },
    }
    return {**body, "_meta": meta(body)}


def dest_index_body() -> dict[str, Any]:
    mappings = _doc_mappings(source=False, stream=LATEST_STREAM)
    mappings["_meta"] = meta(mappings)
    return {"settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}}, "mappings": mappings}


def transform(settings: ElasticsearchSettings) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": "misp-ti: the IOCs valid now, one document per MISP attribute",
        "source": {"index": [f"logs-ti_misp.{LATEST_STREAM}-*"]},
        "dest": {
            "index": dest_index(),
            "pipeline": PIPELINE_LATEST_DEST,
            "aliases": [{"alias": LATEST_ALIAS, "move_on_creation": True}],
        },
        "latest": {"unique_key": ["event.dataset", "misp.attribute.uuid"], "sort": "event.ingested"},
        "frequency": es_duration(settings.transform_frequency),
        "sync": {"time": {"field": "event.ingested", "delay": es_duration(settings.transform_sync_delay)}},
        "retention_policy": {"time": {"field": "misp.attribute.decayed_at", "max_age": es_duration(settings.transform_retention_max_age)}},
        "settings": {"num_failure_retries": -1},
    }
    return {**body, "_meta": meta(body)}


def streams() -> tuple[str, ...]:
    return STREAMS
