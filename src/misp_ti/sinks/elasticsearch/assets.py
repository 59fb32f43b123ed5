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
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import orjson

from misp_ti.config import ElasticsearchSettings
from misp_ti.model import STREAMS

#: Bump when the transform or its destination mappings change incompatibly.
#: 2: one latest view per stream, hidden destinations outside ``logs-*``
#: behind a filtered alias, ``event.module`` and ``threat.feed.dashboard_id``.
ASSET_VERSION = 2
MANAGED_BY = "misp-ti"

ILM_POLICY = "misp-ti.source"
PIPELINE_INGESTED = "misp-ti.event-ingested"
PIPELINE_LATEST_DEST = "misp-ti.latest-dest"
#: Above the built-in ``logs`` template (100) and Fleet's package templates
#: (200): in ``ecs`` mode our documents must never meet the integration's pipeline.
TEMPLATE_PRIORITY = 250
#: What Elastic's ti_misp maps as ``constant_keyword`` (``base-fields.yml`` of
#: its data streams and transform): prebuilt rules select on ``event.module``,
#: Kibana's Threat Intelligence page links through ``threat.feed.dashboard_id``.
EVENT_MODULE = "ti_misp"
FEED_DASHBOARD_ID = "ti_misp-56ed8040-6c7d-11ec-9bce-f7a4dc94c294"
#: Version 1 put the destination under ``logs-*`` (Fleet's naming): the built-in
#: ``logs`` template made it refuse creation, and ``logs-*`` searches reached it
#: without the alias filter. Provision still finds and removes it.
LEGACY_DEST_PREFIX = "logs-ti_misp_latest.dest_threat_attributes-"
#: Fleet's ti_misp ``latest_ioc`` transform ids start so (``logs-ti_misp.latest_ioc-<ns>-<version>``).
FLEET_TRANSFORM_PREFIX = "logs-ti_misp.latest_ioc"

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


def latest_alias(stream: str) -> str:
    """What users, rules and dashboards query: the IOCs valid now (Fleet's alias name)."""
    return f"logs-ti_misp_latest.{stream}"


def dest_prefix(stream: str) -> str:
    # Outside ``logs-*`` and hidden: ``logs-*`` and ``logs-ti_*`` reach the
    # destination only through the alias, so its filter always applies.
    return f"misp-ti-latest.{stream}-"


def dest_index(stream: str, version: int | None = None) -> str:
    return f"{dest_prefix(stream)}{ASSET_VERSION if version is None else version}"


def dest_template_name(stream: str) -> str:
    return f"misp-ti.latest.{stream}"


def transform_prefix(stream: str) -> str:
    return f"misp-ti.latest_{stream}-"


def transform_id(stream: str, version: int | None = None) -> str:
    return f"{transform_prefix(stream)}{ASSET_VERSION if version is None else version}"


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
    flat["event.module"] = {"type": "constant_keyword", "value": EVENT_MODULE}
    flat["threat.feed.dashboard_id"] = {"type": "constant_keyword", "value": FEED_DASHBOARD_ID}
    flat["misp.attribute.uuid"] = {"type": "keyword"}
    if source:
        # Marks raw copies so that indicator queries can skip them (Elastic's
        # convention for transform sources); every stream has a latest view.
        flat["labels.is_ioc_transform_source"] = {"type": "constant_keyword", "value": "true"}
        return {"dynamic": True, "properties": _nest(flat)}
    # one destination gathers every namespace (``logs@mappings`` would make it constant)
    flat["data_stream.namespace"] = {"type": "keyword"}
    # the index carries this: provision recognises its own destinations by it
    return {"dynamic": True, "properties": _nest(flat), "_meta": {"managed_by": MANAGED_BY, "version": ASSET_VERSION}}


def _composed(ecs_mappings: bool, *names: str) -> list[str]:
    return [n for n in names if ecs_mappings or n != "ecs@mappings"]


def index_template(stream: str, settings: ElasticsearchSettings, *, ecs_mappings: bool) -> dict[str, Any]:
    """The index template of one source data stream."""
    index: dict[str, Any] = {"lifecycle": {"name": ILM_POLICY}}
    if settings.ingested_by == "server":
        index["default_pipeline"] = PIPELINE_INGESTED
    custom = f"logs-ti_misp.{stream}@custom"
    body: dict[str, Any] = {
        "index_patterns": [f"logs-ti_misp.{stream}-*"],
        "priority": TEMPLATE_PRIORITY,
        "data_stream": {},
        "composed_of": _composed(ecs_mappings, "logs@mappings", "logs@settings", "ecs@mappings", custom),
        # logs@* are built in but can be switched off (stack.templates.enabled);
        # @custom is the user's hook, absent unless they add it.
        "ignore_missing_component_templates": ["logs@mappings", "logs@settings", custom],
        "template": {
            "settings": {"index": index},
            "mappings": _doc_mappings(source=True, stream=stream),
        },
    }
    return {**body, "_meta": meta(body)}


def dest_template(stream: str, *, ecs_mappings: bool) -> dict[str, Any]:
    """The template of a latest view's destination index (not a data stream).

    It composes the same mappings as the source streams, so every field gets
    the same type on both sides of the ``logs-*`` data view, and mirrors the
    source's ``ignore_malformed`` (``logs@settings``): a value the source kept
    as ``_ignored`` must not make the transform's write fail.
    """
    index = {
        "hidden": True,
        "number_of_shards": 1,
        "auto_expand_replicas": "0-1",
        "mapping": {"ignore_malformed": True},
    }
    body: dict[str, Any] = {
        "index_patterns": [f"{dest_prefix(stream)}*"],
        "priority": TEMPLATE_PRIORITY,
        "composed_of": _composed(ecs_mappings, "logs@mappings", "ecs@mappings"),
        "ignore_missing_component_templates": ["logs@mappings"],
        "template": {
            "settings": {"index": index},
            "mappings": _doc_mappings(source=False, stream=stream),
        },
    }
    return {**body, "_meta": meta(body)}


def alias_filter() -> dict[str, Any]:
    """Only IOCs valid at search time: ``now`` in an alias filter is resolved
    per search (elastic/elasticsearch#8534), whatever the transform's lag."""
    return {
        "bool": {
            "filter": [{"range": {"misp.attribute.decayed_at": {"gt": "now"}}}],
            "must_not": [{"term": {"misp.attribute.decayed": True}}],
        }
    }


def expired_query() -> dict[str, Any]:
    """The complement of :func:`alias_filter`: what housekeeping removes."""
    return {
        "bool": {
            "should": [
                {"range": {"misp.attribute.decayed_at": {"lte": "now"}}},
                {"term": {"misp.attribute.decayed": True}},
            ],
            "minimum_should_match": 1,
        }
    }


def transform(stream: str, settings: ElasticsearchSettings) -> dict[str, Any]:
    # No ``dest.aliases``: the alias carries a filter, which provision manages.
    body: dict[str, Any] = {
        "description": f"misp-ti: the {stream} IOCs valid now, one document per MISP attribute",
        "source": {"index": [f"logs-ti_misp.{stream}-*"]},
        "dest": {"index": dest_index(stream), "pipeline": PIPELINE_LATEST_DEST},
        "latest": {"unique_key": ["event.dataset", "misp.attribute.uuid"], "sort": "event.ingested"},
        "frequency": es_duration(settings.transform_frequency),
        "sync": {"time": {"field": "event.ingested", "delay": es_duration(settings.transform_sync_delay)}},
        "retention_policy": {"time": {"field": "misp.attribute.decayed_at", "max_age": es_duration(settings.transform_retention_max_age)}},
        "settings": {"num_failure_retries": -1},
    }
    return {**body, "_meta": meta(body)}


def streams(enabled: Iterable[str] = (), registered: Iterable[str] = STREAMS) -> tuple[str, ...]:
    """The streams that get assets (a source data stream and a latest view):
    the enabled ones; when none is, every registered one."""
    return tuple(enabled) or tuple(registered)


def privileges(streams: tuple[str, ...] = STREAMS, *, provision: bool = True) -> dict[str, Any]:
    """The ``_has_privileges`` request for what misp-ti does (docs/elasticsearch.md, "Privileges").

    Running (``emit``) needs ``create_doc`` on the source streams and ``read``
    + ``delete`` on the destinations (housekeeping deletes expired IOCs).
    Provisioning also installs templates, ILM, pipelines and transforms, and
    a transform acts with the privileges of the user who created it.
    """
    sources = [f"logs-ti_misp.{s}-*" for s in streams]
    dests = [f"{dest_prefix(s)}*" for s in streams]
    index = [
        {"names": sources, "privileges": ["create_doc"]},
        {"names": dests, "privileges": ["read", "delete"]},
    ]
    if not provision:
        return {"cluster": [], "index": index}
    index[0]["privileges"] += ["create_index", "read", "view_index_metadata", "manage"]
    index[1]["privileges"] += ["create_index", "index", "view_index_metadata", "manage"]
    index.append({"names": [latest_alias(s) for s in streams], "privileges": ["manage"]})
    if "threat_attributes" in streams:  # finding and removing version 1's destination
        index.append({"names": [f"{LEGACY_DEST_PREFIX}*"], "privileges": ["view_index_metadata", "manage"]})
    cluster = ["manage_index_templates", "manage_ilm", "manage_pipeline", "manage_transform"]
    return {"cluster": cluster, "index": index}
