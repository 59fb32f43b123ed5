"""The threat side of Elastic's prebuilt indicator-match rules: a MODEL of what their threat search returns.

Data quoted from elastic/detection-rules ``rules/threat_intel/threat_intel_indicator_match_*.toml``
(read at commit 0a96880d774414a5793261baa671b80b51423eaf, the email rule at
0042eb1179768107c05f70ebec1b33a117748d9b), which are under the Elastic License 2.0; only each rule's
``threat_index``, ``threat_query`` and ``threat_filters`` are quoted, as data, with the file and
``rule_id``. Every ``threat_query`` starts with ``@timestamp >= "now-30d/d"``: an indicator whose
``@timestamp`` is older than 30 days (rounded down to the day, UTC) is never matched, whatever its
expiry says.

How Kibana builds the threat search (elastic/kibana, security solution detection engine): the KQL and
the filters go through ``buildEsQuery`` with ``dateFormatTZ: 'Zulu'`` (``getQueryFilter``, whose data
view has ``fields: []``; newer code, ``getQueryFilterLoadFields``, loads the fields of the threat
indices first). ``threat_hits(..., with_fields=...)`` models both; see :mod:`.kql`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .kql import build_es_query
from .search import resolve_expression, search, state_of

_THREAT_INDEX = ["filebeat-*", "logs-ti_*"]


def _filter(key: str, value: str) -> dict[str, Any]:
    return {"$state": {"store": "appState"},
            "meta": {"disabled": False, "key": key, "negate": False, "type": "phrase", "params": {"query": value}},
            "query": {"match_phrase": {key: value}}}


_FILTERS = [_filter("event.category", "threat"), _filter("event.kind", "enrichment"), _filter("event.type", "indicator")]

#: rule -> (file, rule_id, threat_index, threat_query, threat_filters); quoted from the files named.
RULES: dict[str, dict[str, Any]] = {
    "address": {
        "file": "rules/threat_intel/threat_intel_indicator_match_address.toml",
        "rule_id": "0c41e478-5263-4c69-8f9e-7dfd2c22da64",
        "threat_index": _THREAT_INDEX,
        "threat_query": '@timestamp >= "now-30d/d" and event.module:(threatintel or ti_*) and threat.indicator.ip:* and not\n'
                        'labels.is_ioc_transform_source:"true"\n',
        "threat_filters": _FILTERS,
    },
    "email": {
        "file": "rules/threat_intel/threat_intel_indicator_match_email.toml",
        "rule_id": "fcf18de8-ad7d-4d01-b3f7-a11d5b3883af",
        "threat_index": _THREAT_INDEX,
        "threat_query": '@timestamp >= "now-30d/d" and event.module:(threatintel or ti_*) and threat.indicator.email.address:* '
                        'and not\nlabels.is_ioc_transform_source:"true"\n',
        "threat_filters": _FILTERS,
    },
    "hash": {
        "file": "rules/threat_intel/threat_intel_indicator_match_hash.toml",
        "rule_id": "aab184d3-72b3-4639-b242-6597c99d8bca",
        "threat_index": _THREAT_INDEX,
        "threat_query": '@timestamp >= "now-30d/d" and event.module:(threatintel or ti_*) and (threat.indicator.file.hash.*:* or\n'
                        'threat.indicator.file.pe.imphash:*) and not labels.is_ioc_transform_source:"true"\n',
        "threat_filters": _FILTERS,
    },
    "registry": {
        "file": "rules/threat_intel/threat_intel_indicator_match_registry.toml",
        "rule_id": "a61809f3-fb5b-465c-8bff-23a8a068ac60",
        "threat_index": _THREAT_INDEX,
        "threat_query": '@timestamp >= "now-30d/d" and event.module:(threatintel or ti_*) and threat.indicator.registry.path:* '
                        'and not\nlabels.is_ioc_transform_source:"true"\n',
        "threat_filters": _FILTERS,
    },
    "url": {
        "file": "rules/threat_intel/threat_intel_indicator_match_url.toml",
        "rule_id": "f3e22c8b-ea47-45d1-b502-b57b6de950b3",
        "threat_index": _THREAT_INDEX,
        "threat_query": '@timestamp >= "now-30d/d" and event.module:(threatintel or ti_*) and threat.indicator.url.full:* and not\n'
                        'labels.is_ioc_transform_source:"true"\n',
        "threat_filters": _FILTERS,
    },
}


def threat_fields(cluster: Any, expression: str) -> dict[str, str]:
    """Field -> type over the indices an expression reaches (a type differing between them is ``conflict``)."""
    state = state_of(cluster)
    out: dict[str, str] = {}
    for name in resolve_expression(cluster, expression):
        for field, spec in state.indices[name].mapping.leaf_fields().items():
            kind = str(spec.get("type"))
            out[field] = kind if out.get(field, kind) == kind else "conflict"
    return out


def threat_query(cluster: Any, rule_name: str, *, with_fields: bool = True) -> dict[str, Any]:
    """The DSL of one rule's threat search (the KQL plus its filters, as ``buildEsQuery`` combines them)."""
    rule = RULES[rule_name]
    expression = ",".join(rule["threat_index"])
    fields = threat_fields(cluster, expression) if with_fields else {}
    return build_es_query(rule["threat_query"], rule["threat_filters"], fields, date_format_tz="Zulu")


def threat_hits(cluster: Any, rule_name: str, *, now: datetime, with_fields: bool = True) -> list[dict[str, Any]]:
    """What the rule's threat search returns at ``now``: ``threat_index`` (alias filters apply) and its query."""
    expression = ",".join(RULES[rule_name]["threat_index"])
    return search(cluster, expression, threat_query(cluster, rule_name, with_fields=with_fields), now=now)
