"""Expiry policy ``decay-model``: expire at the exact moment MISP's decay vote flips.

The prediction is :func:`misp_ti.expiry.decay_model.predict`; this module
wires it: where the model index comes from (``expiry.decay_models_path``, or
the fetch plugin's MISP client), the per-engine cache, and the fallback.
New sightings and model edits are picked up by the periodic refetch
(``expiry.refetch_interval``, default 7d), which also reloads the models.

An attribute falls back to the ``duration`` rule when its models cannot be
predicted: a formula other than Polynomial, missing parameters, a model
absent from the index, no ``decay_score`` at all, or models that never decay.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from misp_ti import hookimpl
from misp_ti.config.sources import DEFAULT_SOURCE
from misp_ti.default_plugins import misp_fetch
from misp_ti.expiry import duration_expiry, immediate_expiry
from misp_ti.expiry.decay_model import (  # noqa: F401  (names tests and plugins import from here)
    INDEX_PAGE_SIZE,
    STATE_KEY,
    IndexUnavailable,
    ModelCache,
    predict,
    read_index_file,
    request_index,
)
from misp_ti.misp.decay import Unpredictable
from misp_ti.model import Expiry, ExpiryPolicy, RunContext, StashKey
from misp_ti.processing import PASSES, page_call
from misp_ti.timeutil import from_epoch

NAME = "decay-model"
#: A weekly refetch picks up new sightings and model edits (and reloads the models).
MISP_TI_EXPIRY_POLICIES = (ExpiryPolicy(NAME, refetch_every=timedelta(days=7)),)


def load_index(ctx: RunContext) -> Any:
    """The decaying-model index: from ``expiry.decay_models_path`` or from MISP.

    A dry run (``misp-ti transform``) never asks MISP: its output must depend
    only on its input, the config and ``--now``.
    """
    path = ctx.config.expiry.decay_models_path
    if path is not None:
        return read_index_file(Path(path))
    if ctx.dry_run:
        raise IndexUnavailable("a dry run does not ask MISP; set expiry.decay_models_path")
    return _request_index(ctx)


def _request_index(ctx: RunContext) -> list[Any]:
    # the fetch plugin's client: one connection pool, one rate limit, one retry policy
    return request_index(misp_fetch.client(ctx).get_json, ctx)


def new_cache(source: str = DEFAULT_SOURCE) -> ModelCache:
    """The model cache of one MISP source, loading the index with :func:`load_index`."""
    return ModelCache(load_index, STATE_KEY if source == DEFAULT_SOURCE else f"{STATE_KEY}[{source}]")


#: The engine's model cache in ``ctx.stash`` (of the ``default`` source; see :func:`cache_key`).
CACHE: StashKey[ModelCache] = StashKey("expiry_decay_model.cache")


def cache_key(source: str) -> StashKey[ModelCache]:
    """Where the model cache of the MISP ``source`` lives: each server has its own models."""
    return CACHE.for_source(source)


def _page_expiry(stream: str, ctx: RunContext) -> Any:
    """:func:`compute_expiry` for a page of ``stream`` in ``ctx`` (see :func:`misp_ti.processing.page_call`)."""
    if ctx.policy != NAME:
        return PASSES
    return lambda record, doc: compute_expiry(stream, record, doc, ctx)


@hookimpl
@page_call(_page_expiry)
def compute_expiry(stream: str, record: dict[str, Any], doc: dict[str, Any], ctx: RunContext) -> Expiry | None:
    if ctx.policy != NAME:
        return None
    decided = immediate_expiry(record, doc, ctx)
    if decided is not None:
        return decided
    source = ctx.source
    cache = ctx.stash.get_or_create(cache_key(source), lambda: new_cache(source))
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
