"""The transform's settings (:class:`Options`) and the one place they are
worked out from a run: :func:`options_for`, once per stream and context."""

from __future__ import annotations

from typing import TYPE_CHECKING

from misp_ti.model import StashKey
from misp_ti.timeutil import iso

if TYPE_CHECKING:
    from misp_ti.model import RunContext


class Options:
    """Per-run settings, resolved once per cycle rather than per record."""

    __slots__ = ("stream", "dataset", "namespace", "preserve_original", "ingested")

    def __init__(
        self,
        stream: str,
        namespace: str = "default",
        preserve_original: bool = False,
        ingested: str = "1970-01-01T00:00:00.000Z",
    ):
        self.stream = stream
        self.dataset = f"ti_misp.{stream}"
        self.namespace = namespace
        self.preserve_original = preserve_original
        #: The cycle's fixed ingest time, ISO 8601: ``event.ingested`` of every document.
        self.ingested = ingested

    def __repr__(self) -> str:
        return f"Options({self.stream!r}, namespace={self.namespace!r}, preserve_original={self.preserve_original}, ingested={self.ingested!r})"


_BY_STREAM: StashKey[dict[str, Options]] = StashKey("misp_ti.ecs.options")


def _no_options(ctx: RunContext) -> dict[str, Options]:
    return {}


def options_for(stream: str, ctx: RunContext) -> Options:
    """The transform options of ``stream`` in ``ctx``.

    Asked once per record, worked out once per stream: they are kept with
    the context, which fixes the config and the ingest time they come from.
    """
    by_stream = ctx.derive(_BY_STREAM, _no_options)
    try:
        return by_stream[stream]
    except KeyError:
        output = ctx.config.output
        opts = by_stream[stream] = Options(
            stream=stream,
            namespace=output.elasticsearch.namespace,
            preserve_original=output.preserve_original_event,
            ingested=iso(ctx.now),
        )
        return opts
