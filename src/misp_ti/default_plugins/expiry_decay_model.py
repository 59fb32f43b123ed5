"""Expiry policy ``decay-model``: expire at the exact moment MISP's decay vote flips.

For each ``decay_score`` entry, the model's parameters (from
``GET /decayingModel/index``) and the entry's current score give the moment
that model says decayed (:func:`misp_ti.misp.decay.flip_time`); the attribute
leaves the latest view when half of them do (:func:`misp_ti.misp.decay.vote_flip`).
New sightings and model edits are picked up by the periodic refetch
(``expiry.refetch_interval``, default 7d), which also reloads the models.

An attribute falls back to the ``duration`` rule when its models cannot be
predicted: a formula other than Polynomial, missing parameters, a model
absent from the index, no ``decay_score`` at all, or models that never decay.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from misp_ti import hookimpl
from misp_ti.default_plugins import misp_fetch
from misp_ti.default_plugins.expiry import (
    attribute_of,
    duration_expiry,
    immediate_expiry,
    model_overrides,
)
from misp_ti.errors import ConfigError, FetchError
from misp_ti.misp.decay import (
    DecayModel,
    Unpredictable,
    earliest_reference_time,
    flip_time,
    misp_reference_time,
    parse_index,
    vote_flip,
)
from misp_ti.model import Expiry, ExpiryPolicy, RunContext, StashKey
from misp_ti.timeutil import from_epoch, iso

NAME = "decay-model"
#: A weekly refetch re-reads the scores (new sightings) and reloads the models.
MISP_TI_EXPIRY_POLICIES = (ExpiryPolicy(NAME, refetch_every=timedelta(days=7)),)

#: Where the last index is kept in the state store, so a restart needs no request.
STATE_KEY = "expiry.decay_models"
#: MISP pages ``/decayingModel/index`` by 50 (CakePHP ``$paginate``).
INDEX_PAGE_SIZE = 50

log = logging.getLogger("misp_ti.expiry")


class IndexUnavailable(RuntimeError):
    pass


class ModelCache:
    """The decaying models of one engine: loaded once, reloaded on each refetch
    cycle and (at most once per cycle) when a score names an unknown model."""

    def __init__(self) -> None:
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
            payload = load_index(ctx)
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
            ctx.state.set_value(STATE_KEY, {"loaded_at": iso(ctx.now), "index": payload})
        log.info("decay-model: %d decaying model(s) loaded", len(models))
        return models

    @staticmethod
    def _from_state(ctx: RunContext) -> dict[str, DecayModel] | None:
        if ctx.state is None or ctx.config.expiry.decay_models_path is not None:
            return None
        saved = ctx.state.get_value(STATE_KEY)
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


#: The engine's models in ``ctx.stash``.
CACHE: StashKey[ModelCache] = StashKey("expiry_decay_model.cache")


def load_index(ctx: RunContext) -> Any:
    """The decaying-model index: from ``expiry.decay_models_path`` or from MISP.

    A dry run (``misp-ti transform``) never asks MISP: its output must depend
    only on its input, the config and ``--now``.
    """
    path = ctx.config.expiry.decay_models_path
    if path is not None:
        return _read_file(Path(path))
    if ctx.dry_run:
        raise IndexUnavailable("a dry run does not ask MISP; set expiry.decay_models_path")
    return _request_index(ctx)


def _read_file(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"expiry.decay_models_path: {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"expiry.decay_models_path: {path} cannot be read: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"expiry.decay_models_path: {path} is not JSON: {exc}") from None


def _request_index(ctx: RunContext) -> list[Any]:
    # the fetch plugin's client: one connection pool, one rate limit, one retry policy
    misp = misp_fetch.client(ctx)
    models: list[Any] = []
    for page in range(1, 21):
        path = "/decayingModel/index" if page == 1 else f"/decayingModel/index/page:{page}"
        try:
            batch = misp.get_json(path, cancelled=ctx.cancelled)
        except FetchError as exc:  # names the method and URL, never the key
            raise IndexUnavailable(str(exc)) from None
        if not isinstance(batch, list):
            raise IndexUnavailable(f"GET {path} did not answer a JSON list")
        models.extend(batch)
        if len(batch) < INDEX_PAGE_SIZE:
            break
    return models


def _has_retention_tag(record: Any) -> bool:
    # PolynomialExtended zeroes the score past the age a `retention:` tag gives
    attribute = attribute_of(record)
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
    attribute = attribute_of(record, stream, ctx)
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
        if model.formula.lower() == "polynomialextended" and _has_retention_tag(record):
            raise Unpredictable(f"model {model.id} ({model.name}): a retention tag cuts its score to 0")
        if overrides:
            model = model.with_overrides(overrides)
        moments.append(flip_time(entry, model, scored_at=scored_at, reference_hint=hint, reference_floor=floor))
    return vote_flip(moments)


@hookimpl
def compute_expiry(stream: str, record: dict[str, Any], doc: dict[str, Any], ctx: RunContext) -> Expiry | None:
    if ctx.policy != NAME:
        return None
    decided = immediate_expiry(record, doc, ctx)
    if decided is not None:
        return decided
    cache = ctx.stash.get_or_create(CACHE, ModelCache)
    try:
        flip = predict(stream, record, ctx, cache)
    except Unpredictable as exc:
        cache.warn_once(str(exc), f"decay-model: {exc}; such attributes expire by the duration rule")
        return duration_expiry(record, doc, ctx, reason="decay-model:duration")
    if flip == math.inf:
        return duration_expiry(record, doc, ctx, reason="decay-model:never-decays:duration")
    # the vote said "not decayed" at ctx.now, so a flip before it is float noise
    decayed_at = max(from_epoch(flip), ctx.now) if flip != -math.inf else ctx.now
    return Expiry(False, decayed_at, NAME)
