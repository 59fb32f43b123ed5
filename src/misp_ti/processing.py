"""The engine's hot path: records -> documents (``transform_doc``, then
``compute_expiry``, the decision folded into ``_id``).

Two ways through it, with the same documents:

* **per record, through the hooks** (:func:`misp_ti.dispatch.first_result_caller`):
  always right, for any set of plugins;
* **the default pipeline**: when the only ``transform_doc`` is the default
  :mod:`misp_ti.default_plugins.ecs_transform`, the only ``compute_expiry``
  implementations are the default expiry plugins and the policy is
  ``duration``, the page is run by calling what those hooks would call
  (the stream's builder, :func:`misp_ti.expiry.duration_policy`) directly:
  no keyword dictionaries, no chain walk, the stream's options resolved once.
  A plugin that implements either hook, a wrapper, or hook monitoring
  (``add_hookcall_monitoring``, ``enable_tracing``, checked before every
  record) sends the records back through the hooks, so third-party plugins
  see every call exactly as documented.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import pluggy

from misp_ti.dispatch import PLAIN_DISPATCH, first_result_caller, unmonitored_manager
from misp_ti.ecs import error_document, is_pipeline_error, options_for
from misp_ti.ecs.documents import transform
from misp_ti.errors import PluginError
from misp_ti.model import Expiry, RunContext
from misp_ti.timeutil import iso

#: The policy the default pipeline runs (the other policies go through the hooks).
DEFAULT_POLICY = "duration"


def fold_id(base: str, decayed: bool, decayed_at: str) -> str:
    # The expiry decision is part of a document's identity: a refetch that
    # moves decayed_at must produce a new document (a same-id create would be
    # ignored as a replay), while a replay of the same cycle reproduces it.
    return hashlib.blake2b(f"{base}\0{int(decayed)}\0{decayed_at}".encode(), digest_size=16).hexdigest()


class _Folder:
    """Writes an expiry decision into its document; the ISO text of each
    ``decayed_at`` is worked out once per page (the attributes of an event
    share their timestamps, hence their expiry)."""

    __slots__ = ("_texts",)

    def __init__(self) -> None:
        self._texts: dict[datetime, str] = {}

    def __call__(self, doc: dict[str, Any], decision: Expiry) -> None:
        when = decision.decayed_at
        decayed_at = self._texts.get(when)
        if decayed_at is None:
            decayed_at = self._texts[when] = iso(when)
        attribute = doc.setdefault("misp", {}).setdefault("attribute", {})
        attribute["decayed"] = decision.decayed
        attribute["decayed_at"] = decayed_at
        doc["_id"] = fold_id(doc["_id"], decision.decayed, decayed_at)


def _no_transform(stream: str) -> PluginError:
    return PluginError(f"no transform_doc plugin handles the stream {stream!r}")


def through_hooks(pm: pluggy.PluginManager, stream: str, records: Iterable[Any], ctx: RunContext, docs: list[dict[str, Any]], fold: _Folder) -> None:
    """Append the documents of ``records`` to ``docs``, each record through the hooks."""
    transform_doc = first_result_caller(pm.hook.transform_doc)
    expire = first_result_caller(pm.hook.compute_expiry)
    for record in records:
        try:
            doc = transform_doc(stream=stream, record=record, ctx=ctx)
            if doc is None:
                raise _no_transform(stream)
        except PluginError:
            raise
        except Exception as exc:  # a bad record never stops the stream
            docs.append(error_document(record, exc, options_for(stream, ctx)))
            continue
        if not is_pipeline_error(doc):
            try:
                decision = expire(stream=stream, record=record, doc=doc, ctx=ctx)
            except Exception as exc:
                docs.append(error_document(record, exc, options_for(stream, ctx)))
                continue
            if decision is None:
                raise PluginError(f"no compute_expiry plugin answers for the policy {ctx.policy!r}")
            fold(doc, decision)
        docs.append(doc)


def _only(hook: Any, allowed: set[Callable[..., Any]]) -> pluggy.PluginManager | None:
    """The manager behind ``hook`` when its calls are unmonitored, none of its
    implementations is a wrapper and each is one of ``allowed``."""
    manager = unmonitored_manager(hook)
    impls = hook.get_hookimpls()
    if manager is None or not impls or any(impl.hookwrapper or impl.wrapper or impl.function not in allowed for impl in impls):
        return None
    return manager


def _default_pipeline(pm: pluggy.PluginManager, stream: str, ctx: RunContext) -> tuple[pluggy.PluginManager, Callable[..., dict[str, Any]]] | None:
    """(manager, the stream's builder) when the default pipeline gives what the hooks would."""
    from misp_ti.default_plugins import ecs_transform, expiry, expiry_decay_model

    spec = ctx.streams.get(stream)
    if spec is None or ctx.policy != DEFAULT_POLICY:
        return None
    manager = _only(pm.hook.transform_doc, {ecs_transform.transform_doc})
    # with the duration policy the decay-model plugin answers None: expiry's rule decides
    if manager is None or _only(pm.hook.compute_expiry, {expiry.compute_expiry, expiry_decay_model.compute_expiry}) is None:
        return None
    if expiry.compute_expiry not in {impl.function for impl in pm.hook.compute_expiry.get_hookimpls()}:
        return None
    return manager, spec.build


def process_records(pm: pluggy.PluginManager, stream: str, records: Iterable[Any], ctx: RunContext) -> list[dict[str, Any]]:
    """The documents of ``records`` (one each, in order), expiry folded in."""
    from misp_ti.expiry import duration_policy

    docs: list[dict[str, Any]] = []
    fold = _Folder()
    pipeline = _default_pipeline(pm, stream, ctx)
    if pipeline is None:
        through_hooks(pm, stream, records, ctx, docs, fold)
        return docs
    manager, build = pipeline
    opts = options_for(stream, ctx)
    pending = iter(records)
    for record in pending:
        if manager._inner_hookexec is not PLAIN_DISPATCH:  # monitoring switched on: it sees the rest
            through_hooks(pm, stream, [record], ctx, docs, fold)
            through_hooks(pm, stream, pending, ctx, docs, fold)
            break
        try:
            doc = transform(record, opts, build)
            if doc is None:
                raise _no_transform(stream)
        except PluginError:
            raise
        except Exception as exc:  # as through_hooks
            docs.append(error_document(record, exc, opts))
            continue
        if not is_pipeline_error(doc):
            try:
                decision = duration_policy(record, doc, ctx)
            except Exception as exc:
                docs.append(error_document(record, exc, opts))
                continue
            fold(doc, decision)
        docs.append(doc)
    return docs
