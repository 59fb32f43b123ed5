"""Default ``transform_doc``: MISP records -> ECS documents like Elastic's
ti_misp integration stores them (see :mod:`misp_ti.ecs`), one hook
implementation per stream. Each returns ``None`` for any other stream, so a
plugin can add streams of its own.
"""

from __future__ import annotations

from typing import Any

from misp_ti import hookimpl
from misp_ti.ecs import Options, transform
from misp_ti.model import RunContext
from misp_ti.timeutil import iso

_options_cache: dict[tuple[str, int, Any], Options] = {}


def options_for(stream: str, ctx: RunContext) -> Options:
    """The transform options of ``ctx`` (cached: this is asked once per record)."""
    key = (stream, id(ctx.config), ctx.now)
    opts = _options_cache.get(key)
    if opts is None:
        if len(_options_cache) > 32:
            _options_cache.clear()
        output = ctx.config.output
        opts = _options_cache[key] = Options(
            stream=stream,
            namespace=output.elasticsearch.namespace,
            preserve_original=output.preserve_original_event,
            ingested=iso(ctx.now),
        )
    return opts


@hookimpl(specname="transform_doc")
def transform_threat_attributes(stream: str, record: dict[str, Any], ctx: RunContext) -> dict[str, Any] | None:
    if stream != "threat_attributes":
        return None
    return transform(record, options_for(stream, ctx))


@hookimpl(specname="transform_doc")
def transform_threat(stream: str, record: dict[str, Any], ctx: RunContext) -> dict[str, Any] | None:
    if stream != "threat":
        return None
    return transform(record, options_for(stream, ctx))
