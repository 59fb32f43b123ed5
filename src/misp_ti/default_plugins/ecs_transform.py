"""Default ``transform_doc``: MISP records -> ECS documents like Elastic's
ti_misp integration stores them (see :mod:`misp_ti.ecs`), for every stream in
``ctx.streams``, with the stream's own builder
(:attr:`misp_ti.streams.StreamSpec.build`). It returns ``None`` for a stream
no plugin declares, so a plugin may still answer for streams of its own.
"""

from __future__ import annotations

from typing import Any

from misp_ti import hookimpl
from misp_ti.ecs import options_for, transform
from misp_ti.model import RunContext
from misp_ti.processing import PASSES, page_call

# options_for is re-exported: ``misp-ti transform`` imports it from here
__all__ = ["options_for", "transform_doc", "transform_threat", "transform_threat_attributes"]


def _page_transform(stream: str, ctx: RunContext) -> Any:
    """:func:`transform_doc` for a page of ``stream`` in ``ctx`` (see :func:`misp_ti.processing.page_call`)."""
    spec = ctx.streams.get(stream)
    if spec is None:
        return PASSES
    opts, build = options_for(stream, ctx), spec.build
    return lambda record: transform(record, opts, build)


@hookimpl
@page_call(_page_transform)
def transform_doc(stream: str, record: dict[str, Any], ctx: RunContext) -> dict[str, Any] | None:
    spec = ctx.streams.get(stream)
    if spec is None:
        return None
    return transform(record, options_for(stream, ctx), spec.build)


def transform_threat_attributes(stream: str, record: dict[str, Any], ctx: RunContext) -> dict[str, Any] | None:
    """:func:`transform_doc` for ``threat_attributes`` only (the old per-stream entry point)."""
    return transform_doc(stream, record, ctx) if stream == "threat_attributes" else None


def transform_threat(stream: str, record: dict[str, Any], ctx: RunContext) -> dict[str, Any] | None:
    """:func:`transform_doc` for ``threat`` only (the old per-stream entry point)."""
    return transform_doc(stream, record, ctx) if stream == "threat" else None
