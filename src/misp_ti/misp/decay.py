"""MISP's decaying models, as MISP computes them, and their inverse.

Facts (MISP ``app/Model/DecayingModelsFormulas/Polynomial.php`` and
``Base.php``, ``app/Model/DecayingModel.php``):

* **Polynomial** score after ``t`` seconds since the reference time::

      score = B * (1 - (t / (L * 86400)) ** (1 / delta))     clipped at 0

  with ``L = parameters.lifetime`` (days; ``tau`` in old MISP),
  ``delta = parameters.decay_speed`` (``delta`` in old MISP) and ``B`` the base
  score. A negative ``t`` (reference in the future) scores 0. The attribute is
  *decayed* when ``threshold > score`` (strictly).
* **Base score** ``B``: the weighted mean of the numerical values of the
  attribute's taxonomy tags named in ``parameters.base_score_config``
  (attribute tags override event tags of the same taxonomy), else
  ``parameters.default_base_score`` (0 when absent). MISP sends ``B`` with
  every ``decay_score`` entry, so we never recompute it.
* **Reference time**: the newest *true-positive* sighting; with none, the
  attribute's ``last_seen``, else its ``timestamp``. When the attribute was
  modified after that sighting (``timestamp`` newer), ``last_seen`` (or the
  ``timestamp``) wins again. Times are whole seconds; the score is computed at
  the moment MISP answers (``time()``).
* So, decayed once ``t > L * (1 - threshold / B) ** delta`` days: that is the
  exact moment a model flips, and what :func:`seconds_to_decay` returns.
* ``PolynomialExtended`` is Polynomial plus the ``retention`` taxonomy (score
  forced to 0 past the tag's age); ``Sightings`` scores the ratio of
  true-positive sightings and cannot be predicted from time alone.

This module is deliberately independent of the MISP simulator's own scoring
code, so that comparing the two is a real check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from misp_ti.misp.records import timestamp_seconds

DAY = 86400.0

#: Relative float noise allowed on a reported score (PHP's pow, one product,
#: one subtraction; a few ulps) when inverting it.
SCORE_NOISE = 1e-15

#: Formulas whose flip moment follows from time alone (lower-cased MISP
#: class names; an empty formula means Polynomial in MISP).
PREDICTABLE_FORMULAS = frozenset({"", "polynomial", "polynomialextended"})


class Unpredictable(ValueError):
    """A model (or a score entry) whose decay moment cannot be computed."""


@dataclass(frozen=True, slots=True)
class DecayModel:
    """One decaying model as ``GET /decayingModel/index`` describes it."""

    id: str
    name: str
    formula: str
    lifetime_days: float | None
    decay_speed: float | None
    threshold: float | None
    default_base_score: float = 0.0
    enabled: bool = True
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def problem(self) -> str | None:
        """Why this model cannot be predicted, or ``None`` when it can."""
        if self.formula.lower() not in PREDICTABLE_FORMULAS:
            return f"formula {self.formula!r} depends on more than time"
        missing = [
            name for name, value in (
                ("lifetime", self.lifetime_days), ("decay_speed", self.decay_speed), ("threshold", self.threshold)
            ) if value is None
        ]
        if missing:
            return f"missing parameter(s) {', '.join(missing)}"
        if self.lifetime_days is not None and self.lifetime_days <= 0:
            return "lifetime must be positive"
        if self.decay_speed is not None and self.decay_speed <= 0:
            return "decay_speed must be positive"
        return None

    def with_overrides(self, overrides: Mapping[str, float]) -> DecayModel:
        """The model as restSearch ``modelOverrides`` (``threshold``, ``lifetime``,
        ``decay_speed``: MISP's ``allowed_overrides``) make MISP apply it."""
        return DecayModel(
            self.id, self.name, self.formula,
            overrides.get("lifetime", self.lifetime_days),
            overrides.get("decay_speed", self.decay_speed),
            overrides.get("threshold", self.threshold),
            self.default_base_score, self.enabled, self.raw,
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_model(entry: Mapping[str, Any]) -> DecayModel:
    """One index entry (``{"DecayingModel": {...}}`` or the inner dict)."""
    body = entry.get("DecayingModel", entry)
    if not isinstance(body, Mapping) or "id" not in body:
        raise ValueError("a decaying model entry has no 'id'")
    params = body.get("parameters")
    if isinstance(params, str):  # some MISP versions send the JSON text
        import orjson

        try:
            params = orjson.loads(params)
        except orjson.JSONDecodeError:
            params = {}
    if not isinstance(params, Mapping):
        params = {}
    lifetime = _number(params.get("lifetime", params.get("tau")))
    speed = _number(params.get("decay_speed", params.get("delta")))
    enabled = body.get("enabled", True)
    return DecayModel(
        id=str(body["id"]),
        name=str(body.get("name") or ""),
        formula=str(body.get("formula") or ""),
        lifetime_days=lifetime,
        decay_speed=speed,
        threshold=_number(params.get("threshold")),
        default_base_score=_number(params.get("default_base_score")) or 0.0,
        enabled=enabled not in (False, 0, "0", "false"),
        raw=body,
    )


#: The model parameters restSearch ``modelOverrides`` may change (MISP's ``allowed_overrides``).
OVERRIDABLE = ("threshold", "lifetime", "decay_speed")


def parse_overrides(filters: Mapping[str, Any]) -> dict[str, float]:
    """The ``modelOverrides`` of restSearch ``filters`` (and ``score``, MISP's
    shorthand for a threshold): the parameters MISP scores with. A value that
    is not a number is left out, as MISP ignores it."""
    given = filters.get("modelOverrides")
    raw = dict(given) if isinstance(given, Mapping) else {}
    if filters.get("score") is not None:
        raw["threshold"] = filters["score"]
    overrides = {}
    for key in OVERRIDABLE:
        try:
            overrides[key] = float(raw[key])
        except (KeyError, TypeError, ValueError):
            continue
    return overrides


def parse_index(payload: Any) -> dict[str, DecayModel]:
    """The answer of ``GET /decayingModel/index``: a list of models, by id."""
    if isinstance(payload, Mapping):  # a single model, or {"response": [...]}
        payload = payload.get("response", [payload])
    if not isinstance(payload, list):
        raise ValueError(f"expected a JSON list of decaying models, got {type(payload).__name__}")
    models = {}
    for entry in payload:
        if not isinstance(entry, Mapping):
            raise ValueError(f"expected a decaying model object, got {type(entry).__name__}")
        model = parse_model(entry)
        models[model.id] = model
    return models


# ---------------------------------------------------------------------------
# the formula and its inverse


def polynomial_score(base_score: float, elapsed: float, lifetime_days: float, decay_speed: float) -> float:
    """MISP's Polynomial score ``elapsed`` seconds after the reference time."""
    if elapsed < 0:
        return 0.0
    score = base_score * (1 - (elapsed / (lifetime_days * DAY)) ** (1 / decay_speed))
    return max(score, 0.0)


def is_decayed(score: float, threshold: float) -> bool:
    return threshold > score


def seconds_to_decay(base_score: float, threshold: float, lifetime_days: float, decay_speed: float) -> float:
    """Seconds after the reference time past which the model says decayed.

    ``-inf`` when the model says decayed from the start (threshold above the
    base score), ``inf`` when it never does (threshold 0 or below: the score
    never goes under 0). Decayed means ``elapsed > result``.
    """
    if threshold <= 0:
        return math.inf
    if base_score <= 0 or threshold > base_score:
        return -math.inf
    return lifetime_days * DAY * (1 - threshold / base_score) ** decay_speed


def float_seconds_to_decay(base_score: float, threshold: float, lifetime_days: float, decay_speed: float) -> float:
    """:func:`seconds_to_decay` as MISP's double arithmetic sees it.

    Where ``threshold/B`` is within float noise of 1 and ``decay_speed`` is
    small, ``1 - (t/L)^(1/delta)`` rounds to exactly 1 for a while past the
    exact moment, so MISP flips seconds later than the algebra says. Found by
    bisection on the score itself; costs two evaluations when nothing rounds.
    """
    exact = seconds_to_decay(base_score, threshold, lifetime_days, decay_speed)
    if not math.isfinite(exact):
        return exact

    def decayed(elapsed: float) -> bool:
        return is_decayed(polynomial_score(base_score, elapsed, lifetime_days, decay_speed), threshold)

    if decayed(exact + 0.5):
        return exact
    low, high = exact + 0.5, max(2 * exact, exact + 2)
    while not decayed(high):  # ends: past the lifetime the score is 0 < threshold
        low, high = high, high * 2
    while high - low > 0.05:
        middle = (low + high) / 2
        low, high = (low, middle) if decayed(middle) else (middle, high)
    return low


def elapsed_bounds(score: float, base_score: float, lifetime_days: float, decay_speed: float) -> tuple[float, float]:
    """The elapsed seconds a reported (non-zero) score is consistent with.

    Inverting ``score = B (1 - (t/L)^(1/delta))``: ``t = L (1 - score/B)^delta``,
    widened by the float noise of the score. When ``score/B`` is within noise of
    1 (a young attribute and a small ``delta``), the interval is wide: the score
    alone cannot place the reference time precisely.
    """
    if base_score <= 0:
        raise Unpredictable("a base score of 0 says nothing about the elapsed time")
    ratio = 1 - score / base_score
    lifetime = lifetime_days * DAY
    low = lifetime * max(ratio - SCORE_NOISE, 0.0) ** decay_speed
    high = lifetime * min(max(ratio + SCORE_NOISE, 0.0), 1.0) ** decay_speed
    return low, high


def earliest_reference_time(attribute: Mapping[str, Any]) -> int | None:
    """The earliest reference time MISP may use: the record's own when it
    lists its sightings, else the attribute timestamp (an unlisted sighting
    can be anywhere after it)."""
    if isinstance(attribute.get("Sighting"), list):
        return misp_reference_time(attribute)
    return timestamp_seconds(attribute.get("timestamp"))


def misp_reference_time(attribute: Mapping[str, Any]) -> int | None:
    """MISP's reference time (epoch seconds) from what the record carries.

    Sightings count only when the record includes them (``Sighting`` list);
    a sighting unknown here is what :func:`flip_time` detects from the score.
    """
    timestamp = timestamp_seconds(attribute.get("timestamp"))
    if timestamp is None:
        return None
    last_seen = timestamp_seconds(attribute.get("last_seen"))
    sightings = [
        t for s in attribute.get("Sighting") or () if isinstance(s, Mapping)
        for t in (timestamp_seconds((s.get("Sighting", s)).get("date_sighting")),)
        if t is not None and str((s.get("Sighting", s)).get("type", "0")) == "0"
    ]
    reference = max(sightings) if sightings else (last_seen if last_seen is not None else timestamp)
    if timestamp > reference:
        reference = last_seen if last_seen is not None else timestamp
    return reference


def flip_time(
    entry: Mapping[str, Any],
    model: DecayModel,
    *,
    scored_at: float,
    reference_hint: float | None = None,
    reference_floor: float | None = None,
) -> float:
    """Epoch seconds at which the model of one ``decay_score`` entry says decayed.

    ``-inf``: decayed already; ``inf``: never. ``scored_at`` is when MISP
    computed the score; when the real moment was later (a slow request), the
    answer is early by that delay, never late. ``reference_hint`` is the
    reference time derived from the record (:func:`misp_reference_time`); it
    is used when the score agrees with it, because it is exact to the second
    where inverting the score is ill-conditioned. ``reference_floor`` is the
    earliest reference time MISP may have used when the record does not say
    (a sighting the record does not carry can place MISP's reference before
    ``last_seen``); the flip is then placed as early as the score allows down
    to that floor, so the answer may be early but never late.
    """
    problem = model.problem
    if problem:
        raise Unpredictable(f"model {model.id} ({model.name}): {problem}")
    assert model.lifetime_days is not None and model.decay_speed is not None and model.threshold is not None
    flag = entry.get("decayed")
    if flag is True:
        return -math.inf
    score = _number(entry.get("score"))
    base = _number(entry.get("base_score"))
    if score is None or base is None:
        raise Unpredictable(f"decay_score entry of model {model.id} lacks a numeric score or base_score")
    horizon = float_seconds_to_decay(base, model.threshold, model.lifetime_days, model.decay_speed)
    if horizon == math.inf:
        return math.inf
    if flag is None and is_decayed(score, model.threshold):
        return -math.inf
    if horizon == -math.inf or is_decayed(score, model.threshold):
        raise Unpredictable(f"model {model.id} ({model.name}): MISP says not decayed, its parameters say decayed")
    low, high = elapsed_bounds(score, base, model.lifetime_days, model.decay_speed)
    elapsed = high  # the longest elapsed time the score allows: the earliest flip
    # times are whole seconds, so a wrong hint is off by a second or more
    if reference_hint is not None and low - 0.5 <= scored_at - reference_hint <= high + 0.5:
        elapsed = scored_at - reference_hint
        if reference_floor is not None and reference_floor < reference_hint:
            elapsed = max(elapsed, min(high, scored_at - reference_floor))
    if low > horizon + 1:
        raise Unpredictable(f"model {model.id} ({model.name}): score {score} is past the threshold yet not decayed")
    return scored_at - elapsed + horizon


def vote_flip(moments: Iterable[float]) -> float:
    """When at least half of the models say decayed (the decay vote flips).

    Model ``i`` says decayed after ``moments[i]``; the vote needs
    ``ceil(n/2)`` of them, so it flips at the ``ceil(n/2)``-th earliest.
    """
    ordered = sorted(moments)
    if not ordered:
        return math.inf
    return ordered[(len(ordered) + 1) // 2 - 1]
