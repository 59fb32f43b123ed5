"""Streams as registered specs: what a stream is, the built-ins, the registry.

A plugin adds a stream by declaring ``MISP_TI_STREAMS = (StreamSpec(...), ...)``
(see :mod:`misp_ti.hookspecs`); the engine collects them from every
registered plugin into a :class:`StreamRegistry` (``engine.streams``,
``ctx.streams``), which config, fetch, transform, expiry, provisioning and
the CLI read.
"""

from misp_ti.streams.builtin import (
    BUILTIN_REGISTRY,
    BUILTIN_STREAMS,
    THREAT,
    THREAT_ATTRIBUTES,
    record_attribute,
    split_event,
)
from misp_ti.streams.spec import (
    SCOPE_ORDERS,
    SCOPE_PATHS,
    StreamRegistry,
    StreamSpec,
    one_record,
    record_itself,
)

__all__ = [
    "BUILTIN_REGISTRY",
    "BUILTIN_STREAMS",
    "SCOPE_ORDERS",
    "SCOPE_PATHS",
    "THREAT",
    "THREAT_ATTRIBUTES",
    "StreamRegistry",
    "StreamSpec",
    "one_record",
    "record_attribute",
    "record_itself",
    "split_event",
]
