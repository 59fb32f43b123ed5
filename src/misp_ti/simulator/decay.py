"""MISP's decaying models and its Polynomial formula, as ``includeDecayScore`` applies them.

Facts from MISP (``DecayingModel::attachScoresToAttribute``,
``DecayingModelsFormulas/Base.php`` and ``Polynomial.php``):

* the models applied to an attribute are the *enabled* models whose
  ``attribute_types`` contain its type; each adds
  ``{"score", "base_score", "decayed", "DecayingModel": {"id", "name"}}``;
* ``score = base_score * (1 - (t / (lifetime * 86400)) ** (1 / decay_speed))``,
  floored at 0; ``t`` is seconds since the reference time; decayed when
  ``score < threshold``;
* the reference time is the last sighting, else ``last_seen``, else the
  attribute ``timestamp``; when the attribute was modified after its last
  sighting, ``last_seen`` (else ``timestamp``) is used instead;
* the base score: attribute tags override event tags of the same base name;
  each tag whose base name appears in ``base_score_config`` and that has a
  numerical value contributes ``ratio * numerical_value``, the ratios being
  re-normalised over the matching tags; with no matching tag the model's
  ``default_base_score`` applies.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any

import orjson

from misp_ti.simulator.tags import tag_base_name

__all__ = ["default_models", "index_rows", "DecayScorer", "polynomial_score"]


#: The order a MISP 2.5.1 numbered the shipped models in (ids 1..3, recorded in
#: ``tests/data/real_misp_2.5.1``): ``DecayingModel::__load_models`` takes them
#: from ``Folder::find``, unsorted, i.e. in the directory's order on disk.
_MISP_MODEL_ORDER = ("vishing-model.json", "phishing-model.json", "nids-simple-model.json")


def default_models() -> list[dict[str, Any]]:
    """The three models MISP ships (misp-decaying-models), enabled, numbered as a MISP 2.5.1 numbered them."""
    root = resources.files("misp_ti.simulator") / "data" / "decaying-models"
    files = {entry.name: entry for entry in root.iterdir() if entry.name.endswith(".json")}
    ordered = [n for n in _MISP_MODEL_ORDER if n in files] + sorted(set(files) - set(_MISP_MODEL_ORDER))
    return normalise_models(orjson.loads(files[name].read_bytes()) for name in ordered)


def normalise_models(models: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Models as MISP's ``DecayingModel`` rows: ``id``, ``enabled``, ``formula`` … filled in."""
    rows = []
    for index, raw in enumerate(models, start=1):
        model = copy.deepcopy(dict(raw.get("DecayingModel", raw)))
        params = model.get("parameters") or {}
        for key in ("lifetime", "decay_speed", "threshold"):
            if not isinstance(params.get(key), int | float) or isinstance(params.get(key), bool):
                raise ValueError(
                    f"decaying model {model.get('name', index)!r}: parameters.{key} must be a number"
                )
        if params["lifetime"] <= 0 or params["decay_speed"] <= 0:
            raise ValueError(
                f"decaying model {model.get('name', index)!r}: lifetime and decay_speed must be > 0"
            )
        params.setdefault("default_base_score", 0)
        params.setdefault("base_score_config", {})
        model["parameters"] = params
        model["id"] = str(model.get("id") or index)
        model.setdefault("uuid", None)
        model.setdefault("name", f"model {index}")
        model.setdefault("description", "")
        model.setdefault("attribute_types", [])
        model.setdefault("org_id", "1")
        model.setdefault("enabled", True)
        model.setdefault("all_orgs", True)
        model.setdefault("ref", [])
        model.setdefault("formula", "Polynomial")
        model.setdefault("version", "1")
        model.setdefault("default", True)
        rows.append(model)
    return rows


#: The ``DecayingModel`` columns ``/decayingModel/index`` answers with, in MISP's
#: order (its table: no ``authors``, which only the model files carry; the
#: controller's ``isEditable`` flag is for the HTML view, not the JSON).
_INDEX_FIELDS = (
    "id", "uuid", "name", "parameters", "attribute_types", "description", "org_id", "enabled",
    "all_orgs", "ref", "formula", "version", "default",
)  # fmt: skip


def index_rows(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The body of ``GET /decayingModel/index`` (``DecayingModelController::index``).

    Each row is ``{"DecayingModel": {...}, "DecayingModelMapping": [...]}``;
    the mapping lists the attribute types an org re-mapped, none here.
    ``version`` is a string, as every MySQL column reaches JSON.
    """
    rows = []
    for model in models:
        row = {key: copy.deepcopy(model[key]) for key in _INDEX_FIELDS if key in model}
        row["version"] = str(row.get("version", "1"))
        rows.append({"DecayingModel": row, "DecayingModelMapping": []})
    return rows


def polynomial_score(
    base_score: float, elapsed: float, lifetime_days: float, decay_speed: float
) -> float:
    if elapsed < 0:
        return 0
    score = base_score * (1 - (elapsed / (lifetime_days * 86400)) ** (1 / decay_speed))
    # Polynomial::computeScore returns the integer 0 once decayed ("score": 0 in JSON)
    return score if score > 0 else 0


def _seen_epoch(value: Any) -> int | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return int(text) // 1_000_000  # MISP stores *_seen in microseconds
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def reference_time(attribute: Mapping[str, Any], last_sighting: int | None) -> int:
    timestamp = int(attribute["timestamp"])
    last_seen = _seen_epoch(attribute.get("last_seen"))
    reference = (
        last_sighting
        if last_sighting is not None
        else last_seen
        if last_seen is not None
        else timestamp
    )
    if timestamp > reference:
        reference = last_seen if last_seen is not None else timestamp
    return reference


def base_score(
    model: Mapping[str, Any],
    attribute_tags: list[Mapping[str, Any]],
    event_tags: list[Mapping[str, Any]],
) -> float:
    params = model["parameters"]
    # Attribute tags replace event tags with the same base name (MISP's "prioritised" tags).
    tags: list[Mapping[str, Any]] = list(event_tags)
    positions: dict[str, list[int]] = {}
    for i, tag in enumerate(tags):
        positions.setdefault(tag_base_name(tag["name"]), []).append(i)
    removed: set[int] = set()
    for tag in attribute_tags:
        slots = positions.get(tag_base_name(tag["name"]))
        if slots:
            tags[slots[0]] = tag
            removed.update(slots[1:])
        else:
            tags.append(tag)
    tags = [t for i, t in enumerate(tags) if i not in removed]
    config = params.get("base_score_config") or {}

    def numeric(tag: Mapping[str, Any]) -> float | None:
        try:
            return float(tag.get("numerical_value"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    matching: list[tuple[str, float]] = []
    for tag in tags:
        name, value = tag_base_name(tag["name"]), numeric(tag)
        if name in config and value is not None:
            matching.append((name, value))
    if not matching:
        # Base::computeBasescore keeps the model's number as it is (80, not 80.0)
        return params.get("default_base_score", 0)
    total = sum(float(config[name]) for name, _ in matching)
    ratios = {name: float(config[name]) / total for name, _ in matching}
    return float(sum(ratios[name] * value for name, value in matching))


class DecayScorer:
    """Computes ``decay_score`` lists for attributes against a set of models."""

    def __init__(self, models: list[dict[str, Any]]) -> None:
        self.models = models
        self._by_type: dict[str, list[dict[str, Any]]] = {}
        for model in models:
            if not model.get("enabled", True):
                continue
            for kind in model.get("attribute_types") or []:
                self._by_type.setdefault(kind, []).append(model)

    def applies(self, attribute_type: str) -> bool:
        return attribute_type in self._by_type

    def score(
        self,
        attribute: Mapping[str, Any],
        event_tags: list[Mapping[str, Any]],
        now: int,
        last_sighting: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        model_ids: set[str] | None = None,
    ) -> list[dict[str, Any]]:
        if model_ids is not None:
            models = [m for m in self.models if m["id"] in model_ids]
        else:
            models = self._by_type.get(attribute["type"], [])
        results = []
        elapsed = now - reference_time(attribute, last_sighting)
        for model in models:
            params = dict(model["parameters"])
            for key in ("threshold", "lifetime", "decay_speed"):  # MISP's allowed_overrides
                if overrides and key in overrides:
                    params[key] = float(overrides[key])
            base = base_score(model, list(attribute.get("Tag", ())), event_tags)
            score = polynomial_score(base, elapsed, params["lifetime"], params["decay_speed"])
            results.append(
                {
                    "score": score,
                    "base_score": base,
                    "decayed": params["threshold"] > score,
                    "DecayingModel": {"id": model["id"], "name": model["name"]},
                }
            )
        return results
