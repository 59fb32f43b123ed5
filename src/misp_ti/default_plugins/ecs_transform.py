"""Default ``transform_doc``: MISP records -> ECS documents like Elastic's
ti_misp integration stores them (see :mod:`misp_ti.ecs`), one hook
implementation per stream. Each returns ``None`` for any other stream, so a
plugin can add streams of its own.
"""

from __future__ import annotations

from typing import Any

from misp_ti import hookimpl
from misp_ti.ecs import options_for, transform
from misp_ti.model import RunContext

# options_for is re-exported: ``misp-ti transform`` imports it from here
__all__ = ["options_for", "transform_threat", "transform_threat_attributes"]


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
