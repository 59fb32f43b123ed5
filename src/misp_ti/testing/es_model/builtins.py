"""Elasticsearch's built-ins the model needs: the ``logs`` templates per version, and the named date formats.

Restated (field names, types, settings: data, not code) from elastic/elasticsearch
``x-pack/plugin/core/template-resources/src/main/resources/`` (``logs@template.json``, ``logs@mappings.json``,
``logs@settings.json``, ``ecs@mappings.json``, ``logs@default-pipeline.json``), which
``x-pack/plugin/stack/src/main/java/org/elasticsearch/xpack/stack/StackTemplateRegistry.java`` installs at
start (unless ``stack.templates.enabled: false``). The ``@``-names are those of 8.12+ (before, ``logs-mappings``,
``logs-settings``, ``ecs@dynamic_templates``); the model supports 8.13 and later.

Version history modelled (from the PRs named):

* 8.13: ``logs@settings`` gains ``index.mapping.total_fields.ignore_dynamic_beyond_limit`` (PR #105180).
* 8.14: ``ecs@mappings`` maps ``event.original`` as a non-indexed keyword (PR #106714).
* 8.15.2: ``ecs@mappings`` maps ``*.indicator.first_seen``/``last_seen``/``modified_at`` and
  ``*threat.enrichments.matched.occurred`` as dates and adds ``unmatch_mapping_type: object`` to its
  name-pattern templates (in the file at the time; elastic/integrations PR #12624 dates it "8.15.2 or higher").
* 9.1: ``ecs@mappings`` gen_ai fields (PR #129122).
* 9.2: ``logs@settings`` turns the data stream failure store on (PR #131261, issue #131105).

Where the exact release of a step is not pinned by those sources the model takes the release after the PR's
merge date; ``version`` tuples compare as tuples, so ``(8, 15)`` is 8.15.0 and ``(8, 15, 2)`` 8.15.2.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from misp_ti.testing.es_model.state import ModelUnsupported

Version = tuple[int, ...]
SUPPORTED_FROM: Version = (8, 13)

_META = {"managed": True}


def _logs_index_template() -> dict[str, Any]:
    return {
        "index_patterns": ["logs-*-*"],
        "priority": 100,
        "data_stream": {"hidden": False, "allow_custom_routing": False},
        "composed_of": ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"],
        "ignore_missing_component_templates": ["logs@custom"],
        "allow_auto_create": True,
        "_meta": {"description": "default logs template installed by x-pack", **_META},
    }


def _logs_mappings() -> dict[str, Any]:
    return {
        "template": {"mappings": {
            "date_detection": False,
            "properties": {
                "@timestamp": {"type": "date"},
                "data_stream.type": {"type": "constant_keyword", "value": "logs"},
                "data_stream.dataset": {"type": "constant_keyword"},
                "data_stream.namespace": {"type": "constant_keyword"},
            },
        }},
        "_meta": {"description": "default mappings for the logs index template installed by x-pack", **_META},
    }


def _logs_settings(version: Version) -> dict[str, Any]:
    mapping: dict[str, Any] = {"ignore_malformed": True}
    if version >= (8, 13):
        mapping["total_fields"] = {"ignore_dynamic_beyond_limit": True}
    template: dict[str, Any] = {"settings": {"index": {
        "lifecycle": {"name": "logs@lifecycle"},
        "codec": "best_compression",
        "mapping": mapping,
        "default_pipeline": "logs@default-pipeline",
    }}}
    if version >= (9, 2):
        template["data_stream_options"] = {"failure_store": {"enabled": True}}
    return {"template": template, "_meta": {"description": "default settings for the logs index template installed by x-pack", **_META}}


def _dt(name: str, mapping: dict[str, Any], **conditions: Any) -> dict[str, Any]:
    return {name: {"mapping": mapping, **conditions}}


def _ecs_mappings(version: Version) -> dict[str, Any]:
    late = version >= (8, 15, 2)
    no_obj: dict[str, Any] = {"unmatch_mapping_type": "object"} if late else {}
    mot = {"fields": {"text": {"type": "match_only_text"}}}
    prefix = "*" if late else ""
    templates = [
        _dt("ecs_timestamp", {"ignore_malformed": False, "type": "date"}, match="@timestamp"),
        _dt("ecs_message_match_only_text", {"type": "match_only_text"}, path_match=["message", "*.message"], **no_obj),
    ]
    if version >= (8, 14):
        templates.append(_dt("ecs_non_indexed_keyword", {"type": "keyword", "index": False, "doc_values": False},
                             path_match=["*event.original" if late else "event.original"]))
    if late:
        templates.append(_dt("ecs_non_indexed_long", {"type": "long", "index": False, "doc_values": False},
                             path_match=["*.x509.public_key_exponent"]))
    dates = ["*.timestamp", "*_timestamp", "*.not_after", "*.not_before", "*.accessed", "created", "*.created",
             "*.installed", "*.creation_date", "*.ctime", "*.mtime", "ingested", "*.ingested", "*.start", "*.end"]
    if late:
        dates += ["*.indicator.first_seen", "*.indicator.last_seen", "*.indicator.modified_at",
                  "*threat.enrichments.matched.occurred"]
    templates += [
        _dt("ecs_ip", {"type": "ip"}, path_match=["ip", "*.ip", "*_ip"], match_mapping_type="string"),
        _dt("ecs_wildcard", {"type": "wildcard"},
            path_match=["*.io.text", "*.message_id", "*registry.data.strings", "*url.path"], **no_obj),
        _dt("ecs_path_match_wildcard_and_match_only_text", {**mot, "type": "wildcard"},
            path_match=["*.body.content", "*url.full", "*url.original"], **no_obj),
        _dt("ecs_match_wildcard_and_match_only_text", {**mot, "type": "wildcard"},
            match=["*command_line", "*stack_trace"], **no_obj),
        _dt("ecs_path_match_keyword_and_match_only_text", {**mot, "type": "keyword"}, path_match=[
            "*.title", "*.executable", "*.name", "*.working_directory", "*.full_name", "*file.path",
            "*file.target_path", "*os.full", f"{prefix}email.subject", f"{prefix}vulnerability.description",
            f"{prefix}user_agent.original"], **no_obj),
        _dt("ecs_date", {"type": "date"}, path_match=dates, **no_obj),
        _dt("ecs_path_match_float", {"type": "float"}, path_match=["*.score.*", "*_score*"],
            path_unmatch="*.version", **no_obj),
    ]
    if late:
        templates.append(_dt("ecs_usage_double_scaled_float", {"type": "scaled_float", "scaling_factor": 1000},
                             path_match="*.usage", match_mapping_type=["double", "long", "string"]))
        templates.append(_dt("ecs_geo_point", {"type": "geo_point"}, path_match=["*.geo.location"]))
        templates.append(_dt("ecs_flattened", {"type": "flattened"},
                             path_match=["*structured_data", "*exports", "*imports"], match_mapping_type="object"))
    else:
        for kind in ("double", "long"):
            templates.append(_dt(f"ecs_usage_{kind}_scaled_float", {"type": "scaled_float", "scaling_factor": 1000},
                                 path_match="*.usage", match_mapping_type=kind))
        templates.append(_dt("ecs_geo_point", {"type": "geo_point"}, path_match=["location", "*.location"]))
        templates.append(_dt("ecs_flattened", {"type": "flattened"}, path_match=["*structured_data", "*exports", "*imports"]))
    if version >= (9, 1):
        templates += [
            _dt("ecs_gen_ai_integers", {"type": "integer"}, path_match=[
                "*gen_ai.request.max_tokens", "*gen_ai.usage.input_tokens", "*gen_ai.usage.output_tokens",
                "*gen_ai.request.choice.count", "*gen_ai.request.seed"]),
            _dt("ecs_gen_ai_doubles", {"type": "double"}, path_match=[
                "*gen_ai.request.temperature", "*gen_ai.request.top_k", "*gen_ai.request.frequency_penalty",
                "*gen_ai.request.presence_penalty", "*gen_ai.request.top_p"]),
            _dt("ecs_gen_ai_text", {"type": "text"}, path_match=["*gen_ai.request.model", "*gen_ai.agent.description"]),
        ]
    templates.append(_dt("all_strings_to_keywords", {"ignore_above": 1024, "type": "keyword"}, match_mapping_type="string"))
    return {"template": {"mappings": {"dynamic_templates": templates}},
            "_meta": {"description": "dynamic mappings based on ECS, installed by x-pack", **_META}}


def _logs_default_pipeline() -> dict[str, Any]:
    return {
        "processors": [
            {"set": {"description": "If '@timestamp' is missing, set it with the ingest timestamp",
                     "field": "@timestamp", "override": False, "copy_from": "_ingest.timestamp"}},
            {"pipeline": {"name": "logs@custom", "ignore_missing_pipeline": True}},
        ],
        "_meta": {"description": "default pipeline for the logs index template installed by x-pack", **_META},
    }


def _logs_lifecycle() -> dict[str, Any]:
    # logs@lifecycle.json: hot phase, rollover at 50gb primary shard or 30 days
    return {"policy": {"phases": {"hot": {"actions": {"rollover": {
        "max_primary_shard_size": "50gb", "max_age": "30d"}}}}, "_meta": {"description": "default policy for the logs index template installed by x-pack", **_META}}}


def check_version(version: Version) -> None:
    if tuple(version) < SUPPORTED_FROM:
        raise ValueError(f"the model supports Elasticsearch {SUPPORTED_FROM[0]}.{SUPPORTED_FROM[1]} and later, not {version}")


def install(state: Any) -> None:
    """Put the built-in templates, pipeline and policy of ``state.version`` into ``state``."""
    version = tuple(state.version)
    check_version(version)
    state.component_templates.update({
        "logs@mappings": _logs_mappings(),
        "logs@settings": _logs_settings(version),
        "ecs@mappings": _ecs_mappings(version),
    })
    state.index_templates["logs"] = _logs_index_template()
    state.pipelines["logs@default-pipeline"] = _logs_default_pipeline()
    state.ilm_policies["logs@lifecycle"] = _logs_lifecycle()["policy"]
    for body in (*state.component_templates.values(), *state.index_templates.values()):
        body.setdefault("version", _registry_version(version))


def _registry_version(version: Version) -> int:
    # StackTemplateRegistry.REGISTRY_VERSION grows with each change; the exact number is not modelled
    return 1000 + version[0] * 100 + version[1]


def component(version: Version, name: str) -> dict[str, Any]:
    """One built-in component template of ``version`` (a fresh copy), for tests."""
    return copy.deepcopy({"logs@mappings": _logs_mappings(), "logs@settings": _logs_settings(version),
                          "ecs@mappings": _ecs_mappings(version)}[name])


# -- built-in date formats (DateFormatters, by name) ------------------------------------------------

_ISO = re.compile(
    r"(?P<y>[+-]?\d{4,9})(-(?P<m>\d{2})(-(?P<d>\d{2})(T(?P<H>\d{2})(:(?P<M>\d{2})(:(?P<S>\d{2})([.,]\d{1,9})?)?)?"
    r"(Z|[+-]\d{2}(:?\d{2})?)?)?)?)?")
_SLASHED = re.compile(r"\d{4}/\d{2}/\d{2}( \d{2}:\d{2}:\d{2})?( ?(Z|[+-]\d{2}:?\d{2}))?")


def date_parses(text: str, formats: str) -> bool:
    """Whether ``text`` parses with one of ``formats`` (``a||b``), for the built-in formats the model knows
    (``DateFormatter.forPattern``; ``strict_date_optional_time`` allows a bare year, as Java's does)."""
    for fmt in formats.split("||"):
        if fmt in ("strict_date_optional_time", "date_optional_time", "strict_date_optional_time_nanos",
                   "strict_date_time", "date_time", "strict_date", "date", "yyyy-MM-dd"):
            m = _ISO.fullmatch(text)
            if m and _calendar_ok(m) and (fmt not in ("strict_date_time", "date_time") or m.group("S")):
                return True
        elif fmt in ("epoch_millis", "epoch_second"):
            if re.fullmatch(r"-?\d+(\.\d+)?", text):
                return True
        elif fmt in ("yyyy/MM/dd HH:mm:ss Z", "yyyy/MM/dd Z", "yyyy/MM/dd HH:mm:ss", "yyyy/MM/dd"):
            if _SLASHED.fullmatch(text):
                return True
        else:
            raise ModelUnsupported(f"the model does not support the date format [{fmt}]")
    return False


def _calendar_ok(m: re.Match[str]) -> bool:
    month, day = int(m.group("m") or 1), int(m.group("d") or 1)
    hour, minute, second = int(m.group("H") or 0), int(m.group("M") or 0), int(m.group("S") or 0)
    days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return 1 <= month <= 12 and 1 <= day <= days[month - 1] and hour < 24 and minute < 60 and second < 60
