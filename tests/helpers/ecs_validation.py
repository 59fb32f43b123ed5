"""Check documents against ECS 8.11 field definitions (tests/data/ecs/).

Every leaf field outside ``misp.*`` and ``labels.*`` (and ``_id``) must be an
ECS field, or one of :data:`misp_ti.ecs.EXTENSION_FIELDS`, with a value of
the field's type (and one of its expected values, if ECS lists them); a field
ECS normalises to an array must be a list.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from misp_ti.ecs import EXTENSION_FIELDS, EXTENSION_VALUES

ECS_FILE = Path(__file__).parents[1] / "data" / "ecs" / "ecs_fields-8.11.0.json"
FREE_FORM = ("misp.", "labels.")
#: MISP tags may carry any TLP-like marking (``tlp:ex:chr``): ECS's list is a suggestion there.
OPEN_VALUES = ("threat.indicator.marking.tlp",)
_TEXT = ("keyword", "wildcard", "match_only_text", "constant_keyword", "text")
LONG_RANGE = (-(2**63), 2**63 - 1)


@cache
def ecs_fields() -> dict[str, dict[str, Any]]:
    fields = json.loads(ECS_FILE.read_text())
    for name, es_type in EXTENSION_FIELDS.items():
        assert name not in fields, f"{name} is in ECS 8.11: not an extension field"
        fields[name] = {"type": es_type}
    return fields


def leaves(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        name = prefix + key
        if isinstance(value, dict) and value:
            out.extend(leaves(value, name + "."))
        else:
            out.append((name, value))
    return out


def _scalar_error(name: str, es_type: str, value: Any) -> str | None:
    if es_type in _TEXT:
        ok = isinstance(value, str)
    elif es_type == "long":
        ok = type(value) is int and LONG_RANGE[0] <= value <= LONG_RANGE[1]
    elif es_type in ("float", "scaled_float"):
        ok = type(value) in (int, float)
    elif es_type == "boolean":
        ok = type(value) is bool
    elif es_type == "date":
        ok = isinstance(value, str)
        if ok:
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                ok = False
    elif es_type == "ip":
        ok = isinstance(value, str)
        if ok:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                ok = False
    elif es_type in ("object", "flattened", "nested"):
        ok = isinstance(value, dict)
    else:
        return f"{name}: no check for ECS type {es_type}"
    return None if ok else f"{name}: {value!r:.80} is not a valid {es_type}"


def ecs_errors(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` breaks ECS 8.11 (empty when it conforms)."""
    fields = ecs_fields()
    errors = []
    for name, value in leaves({k: v for k, v in doc.items() if k != "_id"}):
        if name.startswith(FREE_FORM):
            continue
        spec = fields.get(name)
        if spec is None:
            errors.append(f"{name}: not an ECS 8.11 field nor a declared extension field")
            continue
        if spec.get("array") and not isinstance(value, list):
            errors.append(f"{name}: ECS normalises it to an array, got {value!r:.80}")
        for item in value if isinstance(value, list) else [value]:
            error = _scalar_error(name, spec["type"], item)
            if error:
                errors.append(error)
            expected = spec.get("expected_values")
            if expected and name not in OPEN_VALUES and item not in expected and item not in EXTENSION_VALUES.get(name, ()):
                errors.append(f"{name}: {item!r} is not one of ECS's expected values")
    return errors
