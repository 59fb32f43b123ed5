"""The engine's hot path: records -> documents (``transform_doc``, then
``compute_expiry``, the decision folded into ``_id``).

Two ways through it, with the same documents:

* **per record, through the hooks** (:func:`misp_ti.dispatch.first_result_caller`):
  always right, for any set of plugins;
* **page calls**: a hook implementation may offer, for one stream and
  context, a plain callable giving exactly what it would answer for each
  record of the page (:func:`page_call`), or say that it passes (answers
  ``None``) for every record of that context (:data:`PASSES`). When, for
  both hooks, the implementations asked before the answering one all pass
  and the answering one offers a call, the page runs through the two calls:
  no keyword dictionaries, no chain walk, per-page settings resolved once.
  The default ``ecs_transform``, ``expiry`` and ``expiry_decay_model``
  plugins offer them. An implementation without one (any third-party
  plugin that does not opt in), a wrapper, or hook monitoring
  (``add_hookcall_monitoring``, ``enable_tracing``, checked before every
  record) sends the records through the hooks, so plugins see every call
  exactly as documented. A page call that answers ``None`` for a record
  hands that record to the hooks.

This module names no plugin: it reads what the implementations declare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import pluggy

from misp_ti.dispatch import PLAIN_DISPATCH, first_result_caller, unmonitored_manager
from misp_ti.ecs import error_document, is_pipeline_error, options_for
from misp_ti.errors import PluginError
from misp_ti.model import Expiry, RunContext
from misp_ti.timeutil import iso

F = TypeVar("F", bound=Callable[..., Any])


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


#: What a page-call factory returns when its implementation passes for every record.
PASSES: Any = type("Passes", (), {"__repr__": lambda self: "PASSES"})()
_PAGE_CALL = "misp_ti_page_call"


def page_call(factory: Callable[..., Any]) -> Callable[[F], F]:
    """Mark a ``transform_doc`` or ``compute_expiry`` implementation as
    offering a page call: ``factory(stream=..., ctx=...)`` returns a callable
    (``record -> doc`` for ``transform_doc``, ``(record, doc) -> Expiry``
    for ``compute_expiry``) answering exactly what the implementation would,
    :data:`PASSES` when it answers ``None`` for every record of that
    context, or ``None`` when it cannot tell (then the hooks are called)."""

    def mark(function: F) -> F:
        setattr(function, _PAGE_CALL, factory)
        return function

    return mark


def _page_call_of(hook: Any, stream: str, ctx: RunContext) -> tuple[pluggy.PluginManager, Callable[..., Any]] | None:
    """(manager, the answering implementation's page call), when the hook's
    implementations in call order pass until one answers with a page call."""
    manager = unmonitored_manager(hook)
    impls = hook.get_hookimpls()
    if manager is None or any(impl.hookwrapper or impl.wrapper for impl in impls):
        return None
    for impl in reversed(impls):  # pluggy's call order: the last registered first
        factory = getattr(impl.function, _PAGE_CALL, None)
        call = None if factory is None else factory(stream=stream, ctx=ctx)
        if call is not PASSES:
            return None if call is None else (manager, call)
    return None  # nobody answers: the hooks raise the PluginError that says so


def page_calls(pm: pluggy.PluginManager, stream: str, ctx: RunContext) -> tuple[pluggy.PluginManager, Callable[..., Any], Callable[..., Any]] | None:
    """(manager, transform call, expiry call) when the page can skip the hooks."""
    transform = _page_call_of(pm.hook.transform_doc, stream, ctx)
    expire = _page_call_of(pm.hook.compute_expiry, stream, ctx) if transform is not None else None
    if transform is None or expire is None:
        return None
    return transform[0], transform[1], expire[1]


def process_records(pm: pluggy.PluginManager, stream: str, records: Iterable[Any], ctx: RunContext) -> list[dict[str, Any]]:
    """The documents of ``records`` (one each, in order), expiry folded in."""
    docs: list[dict[str, Any]] = []
    fold = _Folder()
    calls = page_calls(pm, stream, ctx)
    if calls is None:
        through_hooks(pm, stream, records, ctx, docs, fold)
        return docs
    manager, transform_call, expire_call = calls
    opts = options_for(stream, ctx)
    pending = iter(records)
    for record in pending:
        if manager._inner_hookexec is not PLAIN_DISPATCH:  # monitoring switched on: it sees the rest
            through_hooks(pm, stream, [record], ctx, docs, fold)
            through_hooks(pm, stream, pending, ctx, docs, fold)
            break
        try:
            doc = transform_call(record)
        except PluginError:
            raise
        except Exception as exc:  # as through_hooks
            docs.append(error_document(record, exc, opts))
            continue
        if doc is None:
            through_hooks(pm, stream, [record], ctx, docs, fold)
            continue
        if not is_pipeline_error(doc):
            try:
                decision = expire_call(record, doc)
            except Exception as exc:
                docs.append(error_document(record, exc, opts))
                continue
            if decision is None:
                through_hooks(pm, stream, [record], ctx, docs, fold)
                continue
            fold(doc, decision)
        docs.append(doc)
    return docs
