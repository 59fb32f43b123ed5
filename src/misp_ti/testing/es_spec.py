"""Check requests against Elasticsearch's own request specification.

The specification is the ``schema.json`` that Elastic publishes (Apache-2.0;
it ships in the npm package ``@elastic/request-converter``). This module only
reads that file: it never downloads anything, so importing it needs neither
npm nor the network (the tests fetch the file; see ``tests/helpers/es_spec_cache.py``).

A request is the plain dict every misp-ti sink builds before sending it::

    {"method": "PUT", "path": "/_index_template/x", "params": {...}, "body": ...}

:meth:`Spec.validate` returns a list of problems (empty when valid), each
naming where it is: the endpoint exists for the method and path, the query
parameters are known and well typed, and the body matches the endpoint's
request type recursively (properties, required fields, enums, unions,
arrays, dictionaries, aliases, inherited properties, open maps).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

TypeRef = tuple[str, str]  # (namespace, name)

#: ``dest.aliases`` on transforms: accepted by Elasticsearch since 8.8
#: (elastic/elasticsearch#94943) and used by the ti_misp integration, but
#: missing from the 9.5.0 specification. :func:`load` adds it.
_DEST_ALIAS = ("transform._types", "DestinationAlias")
_MISSING_PROPERTIES: dict[TypeRef, list[dict[str, Any]]] = {
    ("transform._types", "Destination"): [
        {
            "name": "aliases",
            "required": False,
            "type": {"kind": "array_of", "value": {"kind": "instance_of", "type": {"namespace": _DEST_ALIAS[0], "name": _DEST_ALIAS[1]}}},
        }
    ]
}
_MISSING_TYPES: list[dict[str, Any]] = [
    {
        "kind": "interface",
        "name": {"namespace": _DEST_ALIAS[0], "name": _DEST_ALIAS[1]},
        "properties": [
            {"name": "alias", "required": True, "type": {"kind": "instance_of", "type": {"namespace": "_builtins", "name": "string"}}},
            {"name": "move_on_creation", "required": False, "type": {"kind": "instance_of", "type": {"namespace": "_builtins", "name": "boolean"}}},
        ],
    }
]


class SpecError(Exception):
    """The specification file is missing or not what we expect."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    request: TypeRef
    methods: tuple[str, ...]
    path: str
    regex: re.Pattern[str]
    literal_segments: int
    body_required: bool


def _path_regex(pattern: str) -> re.Pattern[str]:
    # A path parameter never starts with "_" (Elasticsearch reserves those
    # names for APIs: "/_aliases" is not an index), except "_all".
    parts = re.split(r"\{[^}]+\}", pattern)
    return re.compile("^" + "(?:_all|[^/_][^/]*)".join(re.escape(p) for p in parts) + "$")


class Spec:
    """An index over one ``schema.json``; see :func:`load`."""

    def __init__(self, raw: Mapping[str, Any]):
        try:
            self.types: dict[TypeRef, dict[str, Any]] = {
                (t["name"]["namespace"], t["name"]["name"]): t for t in raw["types"]
            }
            endpoints = raw["endpoints"]
        except (KeyError, TypeError) as exc:
            raise SpecError(f"not an Elasticsearch specification (missing {exc})") from None
        for extra in _MISSING_TYPES:
            self.types.setdefault((extra["name"]["namespace"], extra["name"]["name"]), extra)
        for ref, props in _MISSING_PROPERTIES.items():
            known = {p["name"] for p in self.types[ref]["properties"]}
            self.types[ref] = {**self.types[ref], "properties": self.types[ref]["properties"] + [p for p in props if p["name"] not in known]}
        self.endpoints: list[Endpoint] = []
        for ep in endpoints:
            if not ep.get("request"):
                continue
            request = (ep["request"]["namespace"], ep["request"]["name"])
            for url in ep.get("urls", ()):
                literal = sum(1 for seg in url["path"].split("/") if seg and "{" not in seg)
                self.endpoints.append(
                    Endpoint(ep["name"], request, tuple(url["methods"]), url["path"], _path_regex(url["path"]), literal, bool(ep.get("requestBodyRequired")))
                )

    # endpoints -------------------------------------------------------------

    def find(self, method: str, path: str) -> Endpoint | None:
        """The most specific endpoint whose URL pattern matches (most literal segments)."""
        candidates = [e for e in self.endpoints if method.upper() in e.methods and e.regex.match(path)]
        if not candidates:
            return None
        return max(candidates, key=lambda e: (e.literal_segments, -e.path.count("{")))

    def validate(self, request: Mapping[str, Any]) -> list[str]:
        """Every problem of one ``{"method", "path", "params", "body"}`` request."""
        method, path = str(request.get("method", "")), str(request.get("path", ""))
        where = f"{method} {path}"
        endpoint = self.find(method, path.split("?", 1)[0])
        if endpoint is None:
            return [f"{where}: no endpoint of the specification serves this method and path"]
        req = self.types[endpoint.request]
        errors = self._check_params(where, req, request.get("params") or {})
        body = request.get("body")
        spec_body = req.get("body", {"kind": "no_body"})
        if spec_body["kind"] == "no_body":
            if body is not None:
                errors.append(f"{where}: {endpoint.name} takes no body")
        elif body is None:
            if endpoint.body_required:
                errors.append(f"{where}: {endpoint.name} requires a body")
        elif endpoint.name == "bulk":
            errors += self._check_bulk(body, f"{where} body")
        elif spec_body["kind"] == "properties":
            errors += self._check_object(body, spec_body["properties"], [], f"{where} body", None)
        else:
            errors += self.check(body, spec_body["value"], f"{where} body")
        return errors

    def _check_bulk(self, lines: Any, where: str) -> list[str]:
        # The specification types the bulk body as a list of "action or
        # document" (a union a document always satisfies), so the pairing
        # is checked here: each action line, then its source line.
        if not isinstance(lines, list):
            return [f"{where}: expected the NDJSON lines as an array, got {_kind(lines)}"]
        errors: list[str] = []
        container = ("_global.bulk", "OperationContainer")
        i = 0
        while i < len(lines):
            action = lines[i]
            errors += self._check_named(action, container, f"{where}[{i}]", False)
            op = next(iter(action), None) if isinstance(action, dict) else None
            if op in ("index", "create", "update"):
                if i + 1 >= len(lines) or not isinstance(lines[i + 1], dict):
                    errors.append(f"{where}[{i + 1}]: a {op} action must be followed by its document")
                elif op == "update":
                    errors += self._check_named(lines[i + 1], ("_global.bulk", "UpdateAction"), f"{where}[{i + 1}]", False)
                i += 1
            i += 1
        return errors

    def _check_params(self, where: str, req: dict[str, Any], params: Mapping[str, Any]) -> list[str]:
        known = {p["name"]: p for p in req.get("query", ())}
        for behavior in self._attached_behaviors(req):
            for prop in self.types.get(("_spec_utils", behavior), {}).get("properties", ()):
                known.setdefault(prop["name"], prop)
        errors = []
        for name, value in params.items():
            prop = known.get(name)
            if prop is None:
                errors.append(f"{where}: unknown query parameter {name!r}")
            else:
                errors += self.check(value, prop["type"], f"{where} ?{name}", query=True)
        return errors

    def _attached_behaviors(self, t: dict[str, Any]) -> Iterator[str]:
        yield from t.get("attachedBehaviors", ())
        parent = t.get("inherits")
        if parent:
            ref = (parent["type"]["namespace"], parent["type"]["name"])
            if ref in self.types:
                yield from self._attached_behaviors(self.types[ref])

    # values ----------------------------------------------------------------

    def check(self, value: Any, desc: Mapping[str, Any], where: str, *, query: bool = False) -> list[str]:
        """Problems of ``value`` against one type description of the specification."""
        kind = desc["kind"]
        if kind == "user_defined_value":
            return []
        if kind == "literal_value":
            return [] if value == desc["value"] else [f"{where}: expected {desc['value']!r}, got {value!r}"]
        if kind == "array_of":
            if query and isinstance(value, str):
                return [e for item in value.split(",") for e in self.check(item, desc["value"], where, query=True)]
            if not isinstance(value, list):
                return [f"{where}: expected an array, got {_kind(value)}"]
            return [e for i, item in enumerate(value) for e in self.check(item, desc["value"], f"{where}[{i}]", query=query)]
        if kind == "dictionary_of":
            if not isinstance(value, dict):
                return [f"{where}: expected an object, got {_kind(value)}"]
            if desc.get("singleKey") and len(value) != 1:
                return [f"{where}: expected an object with exactly one key, got {len(value)}"]
            return [e for key, item in value.items() for e in self.check(item, desc["value"], f"{where}.{key}")]
        if kind == "union_of":
            return self._check_union(value, desc["items"], where, query)
        if kind == "instance_of":
            ref = (desc["type"]["namespace"], desc["type"]["name"])
            return self._check_named(value, ref, where, query)
        raise SpecError(f"{where}: unknown type kind {kind!r} in the specification")

    def _check_union(self, value: Any, items: list[dict[str, Any]], where: str, query: bool) -> list[str]:
        attempts = []
        for item in items:
            errors = self.check(value, item, where, query=query)
            if not errors:
                return []
            attempts.append(errors)
        # report the member that got furthest (fewest problems), which is
        # the one the author most likely meant
        best = min(attempts, key=len)
        return best if len(attempts) == 1 else [f"{where}: matches no member of a union; closest: {best[0]}"] + best[1:]

    def _check_named(self, value: Any, ref: TypeRef, where: str, query: bool) -> list[str]:
        namespace, name = ref
        if namespace == "_builtins":
            return _check_builtin(value, name, where, query)
        t = self.types.get(ref)
        if t is None:
            return []  # a generic parameter (TDocument...): any value
        kind = t["kind"]
        if kind == "type_alias":
            if t.get("variants", {}).get("kind") == "internal_tag" and t["type"]["kind"] == "union_of":
                return self._check_tagged(value, t, where)
            return self.check(value, t["type"], where, query=query)
        if kind == "enum":
            return _check_enum(value, t, where)
        if kind == "interface":
            return self._check_interface(value, t, where)
        raise SpecError(f"{where}: cannot validate a value against a {kind}")

    def _check_tagged(self, value: Any, alias: dict[str, Any], where: str) -> list[str]:
        variants = alias["variants"]
        tag = variants["tag"]
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {_kind(value)}"]
        wanted = value.get(tag, variants.get("defaultTag"))
        for item in alias["type"]["items"]:
            ref = (item["type"]["namespace"], item["type"]["name"])
            member = self.types[ref]
            for prop in self._properties(member):
                if prop["name"] == tag and prop["type"].get("kind") == "literal_value" and prop["type"]["value"] == wanted:
                    return self._check_interface(value, member, where)
        return [f"{where}.{tag}: unknown value {wanted!r}"]

    def _properties(self, t: dict[str, Any]) -> list[dict[str, Any]]:
        props = list(t.get("properties", ()))
        parent = t.get("inherits")
        while parent:
            parent_t = self.types.get((parent["type"]["namespace"], parent["type"]["name"]))
            if parent_t is None:
                break
            props += parent_t.get("properties", ())
            parent = parent_t.get("inherits")
        return props

    def _extra_value_type(self, t: dict[str, Any]) -> Any:
        node: Any = t
        while node is not None:
            for behavior in node.get("behaviors", ()):
                if behavior["type"]["name"] in ("AdditionalProperties", "AdditionalProperty"):
                    return behavior["generics"][1]
            parent = node.get("inherits")
            node = self.types.get((parent["type"]["namespace"], parent["type"]["name"])) if parent else None
        return None

    def _check_interface(self, value: Any, t: dict[str, Any], where: str) -> list[str]:
        props = self._properties(t)
        if not isinstance(value, dict):
            shortcut = t.get("shortcutProperty")
            if shortcut:
                prop = next(p for p in props if p["name"] == shortcut)
                return self.check(value, prop["type"], where)
            return [f"{where}: expected an object ({t['name']['name']}), got {_kind(value)}"]
        return self._check_object(value, props, t.get("variants") and [t["variants"]] or [], where, self._extra_value_type(t))

    def _check_object(self, value: Any, props: list[dict[str, Any]], variants: list[dict[str, Any]], where: str, extra: dict[str, Any] | None) -> list[str]:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {_kind(value)}"]
        by_name: dict[str, dict[str, Any]] = {}
        for prop in props:
            by_name.setdefault(prop["name"], prop)
            for alias in prop.get("aliases", ()):
                by_name.setdefault(alias, prop)
        errors = []
        seen = set()
        for key, item in value.items():
            known = by_name.get(key)
            if known is None:
                if extra is not None:
                    errors += self.check(item, extra, f"{where}.{key}")
                else:
                    errors.append(f"{where}: unknown property {key!r}")
                continue
            seen.add(known["name"])
            errors += self.check(item, known["type"], f"{where}.{key}")
        for prop in props:
            if prop.get("required") and prop["name"] not in seen:
                errors.append(f"{where}: missing required property {prop['name']!r}")
        if variants and variants[0].get("kind") == "container":
            chosen = [k for k in value if k in by_name and not by_name[k].get("containerProperty")]
            if len(chosen) != 1:
                errors.append(f"{where}: a container takes exactly one variant, got {sorted(chosen) or 'none'}")
        return errors


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


def _check_builtin(value: Any, name: str, where: str, query: bool) -> list[str]:
    if name in ("string", "binary"):
        ok = isinstance(value, str)
    elif name == "boolean":
        ok = isinstance(value, bool) or (query and value in ("true", "false"))
    elif name == "number":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)) or (query and isinstance(value, str) and _is_number(value))
    elif name == "null":
        ok = value is None
    else:  # void, object...
        ok = True
    return [] if ok else [f"{where}: expected a {name}, got {_kind(value)} {value!r}"[:300]]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_enum(value: Any, t: dict[str, Any], where: str) -> list[str]:
    names = set()
    for member in t["members"]:
        names.add(member["name"])
        names.update(member.get("aliases", ()))
    if isinstance(value, bool) and {"true", "false"} <= names:
        return []  # "a boolean that evolved into an enum" (the spec's own esQuirk)
    if isinstance(value, str) and (value in names or t.get("isOpen")):
        return []
    return [f"{where}: {value!r} is not one of {sorted(names)}"]


def load(path: str | Path) -> Spec:
    """Read a ``schema.json`` file (as extracted from the npm package)."""
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise SpecError(f"cannot read the specification {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise SpecError(f"the specification {path} is not JSON: {exc}") from None
    return Spec(raw)
