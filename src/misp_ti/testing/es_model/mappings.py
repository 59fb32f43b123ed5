"""Field mappings: explicit properties, dynamic templates, dynamic mapping, value checks.

A model of the mapping layer of elastic/elasticsearch ``server/src/main/java/org/elasticsearch/index/mapper/``
(``DocumentParser``, ``DynamicFieldsBuilder``, ``DynamicTemplate``, ``RootObjectMapper``, ``ObjectMapper``
and the field mappers named next to each rule), reduced to what misp-ti's documents exercise.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any

from misp_ti.testing.es_model.builtins import date_parses
from misp_ti.testing.es_model.state import ModelUnsupported

__all__ = ["DocumentParsingError", "Mapping", "MappingError", "ModelUnsupported", "ParseSettings", "merge_template_mappings"]


class DocumentParsingError(Exception):
    """A document refused by the mapping; ``to_error()`` is the body of the bulk item's ``error``."""

    def __init__(self, reason: str, *, type: str = "document_parsing_exception", caused_by: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.type, self.reason, self.caused_by = type, reason, caused_by

    def to_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "reason": self.reason}
        if self.caused_by:
            error["caused_by"] = self.caused_by
        return error


class MappingError(Exception):
    """An invalid mapping (or template composition); answered 400 ``illegal_argument_exception``."""


#: Field types the model knows how to check; any other is refused when the mapping is built.
LEAF_TYPES = {
    "keyword", "text", "match_only_text", "wildcard", "constant_keyword", "date", "date_nanos", "ip", "boolean",
    "long", "integer", "short", "byte", "unsigned_long", "double", "float", "half_float", "scaled_float",
    "flattened", "geo_point", "alias",
}
#: ``ignore_malformed`` applies to these only (reference docs "ignore_malformed", boolean since 8.8);
#: ``FieldMapper.parse`` reports anything else as a parsing failure whatever the setting says.
IGNORE_MALFORMED_TYPES = {"long", "integer", "short", "byte", "unsigned_long", "double", "float", "half_float",
                          "scaled_float", "date", "date_nanos", "ip", "geo_point", "boolean"}
_INT_RANGES = {"long": 63, "integer": 31, "short": 15, "byte": 7}
_STRINGISH = {"keyword", "text", "match_only_text", "wildcard", "constant_keyword"}


def _is_object(node: dict[str, Any]) -> bool:
    return node.get("type") in (None, "object", "nested")


def _normalize_properties(props: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Dotted names in ``properties`` are objects (``ObjectMapper.TypeParser`` with ``subobjects: true``)."""
    out: dict[str, Any] = {}
    for name, node in props.items():
        parts = name.split(".")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {"properties": {}}).setdefault("properties", {})
        full = f"{path}.{name}" if path else name
        node = dict(node)
        if _is_object(node):
            node["properties"] = _normalize_properties(node.get("properties", {}), full)
            node.pop("type", None) if node.get("type") == "object" else None
        elif node.get("type") not in LEAF_TYPES:
            raise ModelUnsupported(f"the model does not support field type [{node.get('type')}] (field [{full}])")
        existing = target.get(parts[-1])
        if existing is not None and _is_object(existing) and _is_object(node):
            existing["properties"].update(node["properties"])
        else:
            target[parts[-1]] = node
    return out


def merge_template_mappings(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Compose mappings as ``MetadataIndexTemplateService.collectMappings`` then ``MapperService`` merge with
    ``MergeReason.INDEX_TEMPLATE`` do: later wins; a later field definition replaces an earlier one whole
    (``ObjectMapper.doMerge``); objects merge recursively; an object meeting a non-object is an error
    ("can't merge a non object mapping [x] with an object mapping"); dynamic templates merge by name keeping
    the first position (``RootObjectMapper.doMerge``); root ``date_detection``, ``numeric_detection``,
    ``dynamic_date_formats``, ``dynamic`` are replaced when given; ``_meta`` keys are overlaid (a shallow
    approximation of the real merge)."""
    root: dict[str, Any] = {"properties": {}}
    for body in bodies:
        if not body:
            continue
        body = body.get("_doc", body) if set(body) == {"_doc"} else body
        for key in ("date_detection", "numeric_detection", "dynamic_date_formats", "dynamic", "_source", "_routing"):
            if key in body:
                root[key] = copy.deepcopy(body[key])
        if "_meta" in body:
            root["_meta"] = {**root.get("_meta", {}), **copy.deepcopy(body["_meta"])}
        if "dynamic_templates" in body:
            by_name = {next(iter(t)): t for t in root.get("dynamic_templates", [])}
            for t in body["dynamic_templates"]:
                by_name[next(iter(t))] = copy.deepcopy(t)
            root["dynamic_templates"] = list(by_name.values())
        if "runtime" in body:
            root["runtime"] = {**root.get("runtime", {}), **copy.deepcopy(body["runtime"])}
        _merge_props(root["properties"], _normalize_properties(body.get("properties", {})), "")
    return root


def _merge_props(into: dict[str, Any], new: dict[str, Any], path: str) -> None:
    for name, node in new.items():
        full = f"{path}.{name}" if path else name
        old = into.get(name)
        if old is None:
            into[name] = copy.deepcopy(node)
        elif _is_object(old) != _is_object(node):
            raise MappingError(f"can't merge a non object mapping [{full}] with an object mapping")
        elif _is_object(old):
            for key, value in node.items():
                if key != "properties":
                    old[key] = copy.deepcopy(value)
            _merge_props(old.setdefault("properties", {}), node.get("properties", {}), full)
        else:
            into[name] = copy.deepcopy(node)


@dataclass(frozen=True)
class ParseSettings:
    """The index settings a document parse depends on."""

    ignore_malformed: bool = False
    total_fields_limit: int = 1000
    ignore_dynamic_beyond_limit: bool = False
    data_stream: bool = False


@dataclass
class _Parse:
    doc_id: str
    settings: ParseSettings
    ignored: list[str] = field(default_factory=list)
    leaves_seen: set[str] = field(default_factory=set)


class Mapping:
    """One index's mapping (``MappingLookup``): a normalized copy of the mappings body."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        #: document shapes known to add nothing to this mapping (a speed-up of
        #: the model only: such documents are checked against the live mapping
        #: without copying it first)
        self._settled: set[Any] = set()

    @classmethod
    def from_body(cls, mappings: dict[str, Any] | None) -> Mapping:
        return cls(merge_template_mappings([mappings or {}]))

    def copy(self) -> Mapping:
        return Mapping(copy.deepcopy(self.root))

    def to_body(self) -> dict[str, Any]:
        body = copy.deepcopy(self.root)
        if not body.get("properties"):
            body.pop("properties", None)
        return body

    def _node(self, path: str) -> dict[str, Any] | None:
        node: dict[str, Any] | None = {"properties": self.root.get("properties", {})}
        for part in path.split("."):
            if node is None:
                return None
            if part in node.get("properties", {}):
                node = node["properties"][part]
            elif part in node.get("fields", {}):
                node = node["fields"][part]
            else:
                return None
        return node

    def field_type(self, path: str) -> str | None:
        if path in self.root.get("runtime", {}):
            return str(self.root["runtime"][path].get("type"))
        node = self._node(path)
        if node is None:
            return None
        return "object" if _is_object(node) else str(node["type"])

    def constant_value(self, path: str) -> Any | None:
        node = self._node(path)
        return node.get("value") if node and node.get("type") == "constant_keyword" else None

    def leaf_fields(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}

        def walk(props: dict[str, Any], prefix: str) -> None:
            for name, node in props.items():
                full = prefix + name
                if _is_object(node):
                    walk(node.get("properties", {}), full + ".")
                    continue
                out[full] = {k: v for k, v in node.items() if k != "fields"}
                for sub, subnode in node.get("fields", {}).items():
                    out[f"{full}.{sub}"] = dict(subnode)

        walk(self.root.get("properties", {}), "")
        for name, node in self.root.get("runtime", {}).items():
            out[name] = {**node, "runtime": True}
        return out

    # -- parsing a document (DocumentParser.parseDocument) ------------------------------------------

    def parse(self, source: dict[str, Any], *, doc_id: str, settings: ParseSettings) -> list[str]:
        """Check ``source`` against the mapping and apply its dynamic mapping updates.

        Returns the fields that went to ``_ignored``; raises :class:`DocumentParsingError`. As in
        Elasticsearch the mapping update is applied only when the whole document parses.
        """
        ignored, update = self.check(source, doc_id=doc_id, settings=settings)
        if update is not None:
            self.apply(update)
        return ignored

    def check(self, source: dict[str, Any], *, doc_id: str, settings: ParseSettings) -> tuple[list[str], dict[str, Any] | None]:
        """Like :meth:`parse` without changing this mapping: the fields sent to
        ``_ignored`` and the updated mapping root (None when nothing changes)."""
        state = _Parse(doc_id, settings)
        shape = (_shape(source), settings)
        if shape in self._settled:
            _walk_object(self.root, {"properties": self.root["properties"]}, "", source, self.root.get("dynamic", True), state)
            return state.ignored, None
        work = copy.deepcopy(self.root)
        _walk_object(work, {"properties": work.setdefault("properties", {})}, "", source, work.get("dynamic", True), state)
        if work == self.root:
            self._settled.add(shape)
            return state.ignored, None
        return state.ignored, work

    def apply(self, root: dict[str, Any]) -> None:
        self.root = root
        self._settled.clear()


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k, _shape(v)) for k, v in value.items())
    if isinstance(value, list):
        return ("[]", tuple(sorted({repr(_shape(v)) for v in value})))
    return type(value)


def _dynamic_name(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    return "boolean" if isinstance(value, bool) else "long" if isinstance(value, int) else "double" if isinstance(value, float) else "object"


def _walk_object(root: dict[str, Any], obj: dict[str, Any], path: str, values: dict[str, Any], dynamic: Any, st: _Parse) -> None:
    for key, value in values.items():
        # {"a.b": 1} is {"a": {"b": 1}} (DocumentParser.parseObject with dots in field names)
        parts = key.split(".")
        parent, parent_path, parent_dynamic = obj, path, dynamic
        for part in parts[:-1]:
            child_path = f"{parent_path}.{part}" if parent_path else part
            child = parent.setdefault("properties", {}).get(part)
            if child is None:
                child = _dynamic_field(root, parent, parent_path, part, {}, parent_dynamic, st)
                if child is None:
                    break
            if not _is_object(child):
                raise DocumentParsingError(
                    f"[1:1] Could not dynamically add mapping for field [{child_path}.{parts[-1]}]. Existing mapping for "
                    f"[{child_path}] must be of type object but found [{child.get('type')}].")
            parent, parent_path, parent_dynamic = child, child_path, child.get("dynamic", parent_dynamic)
        else:
            _parse_field(root, parent, parent_path, parts[-1], value, parent_dynamic, st)


def _parse_field(root: dict[str, Any], obj: dict[str, Any], path: str, name: str, value: Any, dynamic: Any, st: _Parse) -> None:
    full = f"{path}.{name}" if path else name
    if value is None:
        return  # null adds no field and no mapping (DocumentParser.parseNullValue)
    if isinstance(value, list):
        for item in value:  # arrays are parsed element by element (DocumentParser.parseArray)
            _parse_field(root, obj, path, name, item, dynamic, st)
        return
    node = obj.setdefault("properties", {}).get(name)
    if node is None and full in root.get("runtime", {}):
        return
    if node is None:
        node = _dynamic_field(root, obj, path, name, value, dynamic, st)
        if node is None:
            return
    if _is_object(node):
        if not isinstance(value, dict):
            # DocumentParser.throwOnConcreteValue
            raise DocumentParsingError(f"[1:1] object mapping for [{full}] tried to parse field [{name}] as object, but found a concrete value")
        _walk_object(root, node, full, value, node.get("dynamic", dynamic), st)
        return
    _check_leaf(node, full, value, st)


def _check_leaf(node: dict[str, Any], full: str, value: Any, st: _Parse) -> None:
    kind = node["type"]
    if kind == "alias":
        raise DocumentParsingError(f"[1:1] Cannot write to a field alias [{full}].")
    try:
        problem = _value_problem(node, value, full)
    except _ConstantTaken:
        return
    if problem is None:
        return
    ignore = node.get("ignore_malformed", st.settings.ignore_malformed)
    # a data stream's @timestamp is never left out: the model takes DataStreamTimestampFieldMapper's
    # requirement of one timestamp value (and ecs@mappings' explicit ignore_malformed: false) as refusing it
    timestamp = st.settings.data_stream and full == "@timestamp"
    if kind in IGNORE_MALFORMED_TYPES and str(ignore).lower() == "true" and not timestamp:
        st.ignored.append(full)  # FieldMapper.parse: a malformed value goes to _ignored
        return
    exc_type, message = problem
    raise DocumentParsingError(
        f"[1:1] failed to parse field [{full}] of type [{kind}] in document with id '{st.doc_id}'. "
        f"Preview of field's value: '{_java_preview(value)}'",
        caused_by={"type": exc_type, "reason": message},
    )


class _ConstantTaken(Exception):
    pass


def _value_problem(node: dict[str, Any], value: Any, full: str) -> tuple[str, str] | None:
    """(exception type, message) when ``value`` does not fit ``node``'s type, else None."""
    kind = node["type"]
    if kind == "flattened":
        return None
    if isinstance(value, dict) and kind != "geo_point":
        return "illegal_argument_exception", f"Cannot parse an object as [{kind}]"
    if kind in _STRINGISH:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if kind == "constant_keyword":
            # x-pack mapper-constant-keyword ConstantKeywordFieldMapper.parseCreateField: the first value
            # becomes the mapping's value (a mapping update); later ones must equal it
            if "value" not in node:
                node["value"] = text
                raise _ConstantTaken
            if node["value"] != text:
                return "illegal_argument_exception", (
                    f"[constant_keyword] field [{full}] only accepts values that are equal to the value "
                    f"defined in the mappings [{node['value']}], but got [{text}]")
        return None
    if kind in ("date", "date_nanos"):
        # DateFieldMapper: numbers are epoch millis; strings must parse with the field's format
        if isinstance(value, bool):
            return "illegal_argument_exception", f"failed to parse date field [{value}]"
        if isinstance(value, (int, float)):
            return None
        fmt = node.get("format", "strict_date_optional_time||epoch_millis")
        if date_parses(str(value), fmt):
            return None
        return "illegal_argument_exception", f"failed to parse date field [{value}] with format [{fmt}]"
    if kind == "ip":
        try:
            ipaddress.ip_address(str(value))  # IpFieldMapper via InetAddresses.forString
        except ValueError:
            return "illegal_argument_exception", f"'{value}' is not an IP string literal."
        return None
    if kind == "boolean":
        # BooleanFieldMapper: only true/false (or their strings, or "")
        if isinstance(value, bool) or value in ("true", "false", ""):
            return None
        return "illegal_argument_exception", f"Failed to parse value [{value}] as only [true] or [false] are allowed."
    if kind == "geo_point":
        return None if isinstance(value, (dict, str)) else ("illegal_argument_exception", "failed to parse geo_point")
    return _number_problem(kind, value)


def _number_problem(kind: str, value: Any) -> tuple[str, str] | None:
    # NumberFieldMapper.NumberType.parse (coerce: numeric strings accepted, decimals truncated for integers)
    if isinstance(value, bool):
        return "illegal_argument_exception", f"Current token (VALUE_{str(value).upper()}) not numeric, can not use numeric value accessors"
    try:
        number = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        return "number_format_exception", f'For input string: "{value}"'
    if isinstance(number, float) and not math.isfinite(number):
        return "illegal_argument_exception", f"[{kind}] supports only finite values, but got [{value}]"
    bits = _INT_RANGES.get(kind)
    if bits is not None and not -(2**bits) <= int(number) <= 2**bits - 1:
        return "illegal_argument_exception", f"Value [{value}] is out of range for {'an' if kind == 'integer' else 'a'} {kind}"
    if kind == "unsigned_long" and not 0 <= int(number) <= 2**64 - 1:
        return "illegal_argument_exception", f"Value [{value}] is out of range for unsigned_long"
    return None


def _java_preview(value: Any) -> str:
    """``Object.toString`` of the parsed value, as the 'Preview of field's value' shows it."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_preview(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# -- dynamic mapping (DynamicFieldsBuilder, DynamicTemplate) -------------------------------------------

_DEFAULT_DYNAMIC_TYPE = {"string": "text", "long": "long", "double": "float", "boolean": "boolean", "date": "date", "object": "object"}
DEFAULT_DYNAMIC_DATE_FORMATS = ["strict_date_optional_time", "yyyy/MM/dd HH:mm:ss Z||yyyy/MM/dd Z"]


def _dynamic_field(root: dict[str, Any], obj: dict[str, Any], path: str, name: str, value: Any, dynamic: Any, st: _Parse) -> dict[str, Any] | None:
    full = f"{path}.{name}" if path else name
    mode = str(dynamic).lower()
    if mode == "strict":
        raise DocumentParsingError(
            f"[1:1] mapping set to strict, dynamic introduction of [{name}] within [{path or '_doc'}] is not allowed",
            type="strict_dynamic_mapping_exception")
    if mode == "false":
        return None  # kept in _source, not indexed, not mapped
    kind = _dynamic_name(value)
    date_format = None
    if kind == "string" and root.get("date_detection", True):
        text = str(value)
        # DynamicFieldsBuilder: only strings with two ':' '-' or '/' are tried as dates ("1" would parse)
        if any(text.count(c) > 1 for c in ":-/"):
            formats = root.get("dynamic_date_formats", DEFAULT_DYNAMIC_DATE_FORMATS)
            matched = next((fmt for fmt in formats if date_parses(text, fmt)), None)
            if matched is not None:
                kind = "date"
                date_format = None if matched == "strict_date_optional_time" else matched
    elif kind == "string" and str(root.get("numeric_detection", False)).lower() == "true":
        kind = "long" if re.fullmatch(r"-?\d+", str(value)) else "double" if _is_float(str(value)) else kind
    found = _find_template(root, full, name, kind)
    if mode == "runtime" or (found is not None and "runtime" in found):
        if kind != "object":
            spec = dict(found.get("runtime", {})) if found else {}
            spec.setdefault("type", {"string": "keyword", "double": "double"}.get(kind, kind))
            root.setdefault("runtime", {})[full] = spec
            return None
    if found is not None and "mapping" in found:
        node = _substitute(found["mapping"], name, _DEFAULT_DYNAMIC_TYPE[kind])
        node.setdefault("type", _DEFAULT_DYNAMIC_TYPE[kind])
    elif kind == "string":
        node = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    else:
        node = {"type": _DEFAULT_DYNAMIC_TYPE[kind]}
        if kind == "date" and date_format:
            node["format"] = date_format  # the dynamic date format that matched
    if node["type"] == "object":
        node.pop("type")
        node["properties"] = _normalize_properties(node.get("properties", {}), full)
    elif node["type"] not in LEAF_TYPES:
        raise ModelUnsupported(f"the model does not support field type [{node['type']}] (dynamic field [{full}])")
    if _count_fields(root) + 1 > st.settings.total_fields_limit:
        if st.settings.ignore_dynamic_beyond_limit:
            st.ignored.append(full)  # index.mapping.total_fields.ignore_dynamic_beyond_limit (PR #96235)
            return None
        raise DocumentParsingError(
            f"[1:1] Limit of total fields [{st.settings.total_fields_limit}] has been exceeded while adding new fields [1]",
            type="illegal_argument_exception")
    obj.setdefault("properties", {})[name] = node
    return node


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count_fields(root: dict[str, Any]) -> int:
    def count(props: dict[str, Any]) -> int:
        return sum(1 + count(n.get("properties", {})) + len(n.get("fields", {})) for n in props.values())
    return count(root.get("properties", {})) + len(root.get("runtime", {}))


def _find_template(root: dict[str, Any], full: str, name: str, kind: str) -> dict[str, Any] | None:
    """The first dynamic template matching (``RootObjectMapper.findTemplate`` / ``DynamicTemplate.match``)."""
    for entry in root.get("dynamic_templates", []):
        spec = next(iter(entry.values()))
        regex = spec.get("match_pattern") == "regex"
        conditions = ("match", "unmatch", "path_match", "path_unmatch")
        mmt = spec.get("match_mapping_type")
        if mmt is None:
            # DynamicTemplate.parse (PR #103171): no match_mapping_type means every type when a name or
            # path pattern (or unmatch_mapping_type) is given
            mmt = "*"
        types = {mmt} if isinstance(mmt, str) else set(mmt)
        unmatched = spec.get("unmatch_mapping_type")
        unmatched_types = set() if unmatched is None else {unmatched} if isinstance(unmatched, str) else set(unmatched)
        if ("*" not in types and kind not in types) or kind in unmatched_types:
            continue
        if not any(c in spec for c in conditions) and mmt == "*" and unmatched is None:
            continue
        if "match" in spec and not _any_match(spec["match"], name, regex):
            continue
        if "unmatch" in spec and _any_match(spec["unmatch"], name, regex):
            continue
        if "path_match" in spec and not _any_match(spec["path_match"], full, regex):
            continue
        if "path_unmatch" in spec and _any_match(spec["path_unmatch"], full, regex):
            continue
        return dict(spec)
    return None


def _any_match(patterns: str | list[str], text: str, regex: bool) -> bool:
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if regex and re.fullmatch(pattern, text):
            return True
        if not regex and re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), text):
            return True  # Regex.simpleMatch: '*' matches any run of characters
    return False


def _substitute(mapping: Any, name: str, dynamic_type: str) -> Any:
    if isinstance(mapping, dict):
        return {k: _substitute(v, name, dynamic_type) for k, v in mapping.items()}
    if isinstance(mapping, list):
        return [_substitute(v, name, dynamic_type) for v in mapping]
    if isinstance(mapping, str):
        return mapping.replace("{name}", name).replace("{dynamic_type}", dynamic_type)
    return mapping
