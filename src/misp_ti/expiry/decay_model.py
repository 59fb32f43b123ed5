"""The ``decay-model`` prediction: the moment MISP's decay vote will flip.

For each ``decay_score`` entry, the model's parameters (from
``GET /decayingModel/index``) and the entry's current score give the moment
that model says decayed (:func:`misp_ti.misp.decay.flip_time`); the attribute
leaves the latest view when half of them do (:func:`misp_ti.misp.decay.vote_flip`).

An attribute cannot be predicted (:class:`~misp_ti.misp.decay.Unpredictable`)
when a model's formula is not Polynomial, parameters are missing, a model is
absent from the index, a retention tag cuts a PolynomialExtended score, or
there is no ``decay_score`` at all. The policy plugin
(:mod:`misp_ti.default_plugins.expiry_decay_model`) says what then happens and
where the index comes from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from misp_ti.errors import ConfigError, FetchError
from misp_ti.misp.decay import (
    DecayModel,
    Unpredictable,
    earliest_reference_time,
    flip_time,
    misp_reference_time,
    parse_index,
    parse_overrides,
    vote_flip,
)
from misp_ti.misp.records import record_attribute
from misp_ti.model import RunContext, StashKey
from misp_ti.timeutil import iso

#: Where the last index is kept in the state store, so a restart needs no request.
STATE_KEY = "expiry.decay_models"
#: MISP pages ``/decayingModel/index`` by 50 (CakePHP ``$paginate``).
INDEX_PAGE_SIZE = 50
#: At most this many index pages are read (1000 models).
INDEX_MAX_PAGES = 20

log = logging.getLogger("misp_ti.expiry")


class IndexUnavailable(RuntimeError):
    """The decaying-model index could not be read (the message names the request, never the key)."""


#: How a cache gets the raw index (a list of models) for a context.
IndexLoader = Callable[[RunContext], Any]


class ModelCache:
    """The decaying models of one engine: loaded once, reloaded on each refetch
    cycle and (at most once per cycle) when a score names an unknown model."""

    def __init__(self, load_index: IndexLoader, state_key: str = STATE_KEY) -> None:
        self.load_index = load_index
        self.state_key = state_key  # one per MISP source: each server has its own models
        self.models: dict[str, DecayModel] | None = None
        self.loaded_for: datetime | None = None  # ``ctx.now`` of the cycle that last (re)loaded
        self.warned: set[str] = set()

    def for_cycle(self, ctx: RunContext) -> dict[str, DecayModel]:
        if self.models is None and not ctx.refetch:
            self.models = self._from_state(ctx)
        if self.models is None or (ctx.refetch and self.loaded_for != ctx.now):
            self.reload(ctx)
        return self.models or {}

    def lookup(self, model_id: str, ctx: RunContext) -> DecayModel | None:
        models = self.for_cycle(ctx)
        if model_id not in models and self.loaded_for != ctx.now:
            models = self.reload(ctx)
        return models.get(model_id)

    def reload(self, ctx: RunContext) -> dict[str, DecayModel]:
        self.loaded_for = ctx.now
        try:
            payload = self.load_index(ctx)
            models = parse_index(payload)
        except (IndexUnavailable, ConfigError, ValueError) as exc:
            # keep the models we had: predicting with week-old parameters beats
            # dropping to the duration rule for every attribute
            log.error("decay-model: cannot read the decaying models (%s); %s", exc,
                        "keeping the previous ones" if self.models else "attributes fall back to the duration rule")
            if self.models is None:
                self.models = {}
            return self.models
        self.models = models
        if ctx.state is not None and not ctx.dry_run:
            ctx.state.set_value(self.state_key, {"loaded_at": iso(ctx.now), "index": payload})
        log.info("decay-model: %d decaying model(s) loaded", len(models))
        return models

    def _from_state(self, ctx: RunContext) -> dict[str, DecayModel] | None:
        if ctx.state is None or ctx.config.expiry.decay_models_path is not None:
            return None
        saved = ctx.state.get_value(self.state_key)
        if not isinstance(saved, Mapping):
            return None
        try:
            return parse_index(saved.get("index"))
        except ValueError:
            return None

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning("%s", message)


def read_index_file(path: Path) -> Any:
    """The index saved as JSON (``expiry.decay_models_path``); a one-line
    :class:`~misp_ti.errors.ConfigError` naming the key when it cannot be read."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"expiry.decay_models_path: {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"expiry.decay_models_path: {path} cannot be read: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"expiry.decay_models_path: {path} is not JSON: {exc}") from None


def request_index(get_json: Callable[..., Any], ctx: RunContext) -> list[Any]:
    """All pages of ``GET /decayingModel/index`` through ``get_json`` (the
    fetch client's, with its retry policy); :class:`IndexUnavailable` on failure."""
    models: list[Any] = []
    for page in range(1, INDEX_MAX_PAGES + 1):
        path = "/decayingModel/index" if page == 1 else f"/decayingModel/index/page:{page}"
        try:
            batch = get_json(path, cancelled=ctx.cancelled)
        except FetchError as exc:  # names the method and URL, never the key
            raise IndexUnavailable(str(exc)) from None
        if not isinstance(batch, list):
            raise IndexUnavailable(f"GET {path} did not answer a JSON list")
        models.extend(batch)
        if len(batch) < INDEX_PAGE_SIZE:
            break
    return models


_MODEL_OVERRIDES: StashKey[dict[str, dict[str, float]]] = StashKey("misp_ti.expiry.model_overrides")


def _no_overrides(ctx: RunContext) -> dict[str, dict[str, float]]:
    return {}


def model_overrides(stream: str, ctx: RunContext) -> dict[str, float]:
    """The decay-model parameters the stream's restSearch filters override
    (:func:`misp_ti.misp.decay.parse_overrides`), worked out once per stream and
    context. The dict is shared: do not change it."""
    by_stream = ctx.derive(_MODEL_OVERRIDES, _no_overrides)
    try:
        return by_stream[stream]
    except KeyError:
        filters = getattr(getattr(ctx.config.streams, stream, None), "filters", None) or {}
        overrides = by_stream[stream] = parse_overrides(filters)
        return overrides


def has_retention_tag(record: Any) -> bool:
    """A ``retention:`` tag on the attribute or its event (PolynomialExtended
    zeroes the score past the age it gives)."""
    attribute = record_attribute(record)
    event = attribute.get("Event") if isinstance(attribute.get("Event"), Mapping) else None
    if event is None and isinstance(record, Mapping) and isinstance(record.get("Event"), Mapping):
        event = record["Event"]
    for holder in (attribute, event or {}):
        for tag in holder.get("Tag") or ():
            name = tag.get("name") if isinstance(tag, Mapping) else None
            if isinstance(name, str) and name.lower().startswith("retention:"):
                return True
    return False


def predict(stream: str, record: Any, ctx: RunContext, cache: ModelCache) -> float:
    """Epoch seconds at which the decay vote flips; raises :class:`Unpredictable`."""
    spec = ctx.streams.get(stream)  # the stream's own accessor (a plugin stream's record shape)
    attribute = spec.attribute(record) if spec is not None else record_attribute(record)
    entries = attribute.get("decay_score")
    if not isinstance(entries, list) or not entries:
        raise Unpredictable("no decay_score (is includeDecayScore on, and a model mapped to this type?)")
    overrides = model_overrides(stream, ctx)
    hint = misp_reference_time(attribute)
    floor = earliest_reference_time(attribute)
    scored_at = ctx.now.timestamp()
    moments = []
    for entry in entries:
        info = entry.get("DecayingModel") if isinstance(entry, Mapping) else None
        if not isinstance(info, Mapping) or info.get("id") is None:
            raise Unpredictable("a decay_score entry names no DecayingModel id")
        model = cache.lookup(str(info["id"]), ctx)
        if model is None:
            raise Unpredictable(f"model {info['id']} ({info.get('name', '?')}) is not in /decayingModel/index")
        if model.formula.lower() == "polynomialextended" and has_retention_tag(record):
            raise Unpredictable(f"model {model.id} ({model.name}): a retention tag cuts its score to 0")
        if overrides:
            model = model.with_overrides(overrides)
        moments.append(flip_time(entry, model, scored_at=scored_at, reference_hint=hint, reference_floor=floor))
    return vote_flip(moments)
