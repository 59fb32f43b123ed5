"""Small value types passed through the hooks.

They are plain dataclasses so that plugins can build them without importing
anything heavier than this module.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from misp_ti.config import Config
    from misp_ti.state import StateStore
    from misp_ti.streams import StreamRegistry

#: The names of the two built-in streams (kept for old imports; the streams
#: there are come from :class:`misp_ti.streams.StreamRegistry`, ``ctx.streams``).
STREAMS = ("threat_attributes", "threat")


def _builtin_streams() -> StreamRegistry:
    from misp_ti.streams import BUILTIN_REGISTRY

    return BUILTIN_REGISTRY

T = TypeVar("T")


class ContextKey(Generic[T]):
    """Names one value that :meth:`RunContext.derive` computes once per context.

    Keys compare by identity, so two plugins never share a value by accident;
    the type parameter is what ``derive`` returns.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ContextKey({self.name!r})"


@dataclass(slots=True)
class Page:
    """One page of raw MISP records returned by a ``fetch`` implementation.

    ``cursor`` is the checkpoint that is safe to persist once this page and
    every page before it has been delivered to every sink; ``None`` means the
    page carries no new checkpoint. The last page of a poll must carry the
    cursor from which the next poll starts.
    """

    records: list[dict[str, Any]]
    cursor: Mapping[str, Any] | None = None
    #: Free-form numbers for progress and logs (requests, retries, skipped...).
    stats: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Expiry:
    """A ``compute_expiry`` decision for one document."""

    decayed: bool
    decayed_at: datetime
    #: Which rule decided (``decay-vote``, ``duration``, ``deleted`` ...), for logs and tests.
    reason: str = ""


@dataclass(slots=True, frozen=True)
class SinkReport:
    """What one sink confirms for one batch in ``emit``.

    Returning a report means every document was either delivered or
    dead-lettered; a sink that could not do so must raise instead.
    """

    sink: str
    delivered: int
    dead_lettered: int = 0
    #: Accepted by the sink but not into the data (Elasticsearch's failure
    #: store); counted apart and never part of ``delivered``. Also dead-lettered.
    failure_stored: int = 0


@dataclass(slots=True)
class RunContext:
    """Everything a hook may need about the run it is called in.

    ``now`` is fixed for a whole poll cycle: it is the end of the fetch window
    and the ingest time written into every document of the cycle, so a cycle
    replayed after a crash produces identical documents.
    """

    config: Config
    now: datetime
    state: StateStore | None = None
    #: True when this cycle rewinds to ``initial_interval`` (refetch policy).
    refetch: bool = False
    #: True when sinks must only describe what they would send.
    dry_run: bool = False
    #: ``provision`` only: check that the sink can provision and write (its
    #: privileges), change nothing, and report what is missing.
    check: bool = False
    #: The streams the plugins declare (the engine's); the built-ins by default.
    streams: StreamRegistry = field(default_factory=_builtin_streams)
    #: Per-engine cache shared by all cycles: plugins keep clients and
    #: connections here (see :meth:`resource`); closed by :meth:`close_resources`.
    resources: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("misp_ti"))
    #: Set when the cycle is over (stopped, failed, or done) while a fetch may
    #: still be reading ahead: a fetch plugin should stop retrying and return.
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Values worked out from ``config`` and ``now`` (see :meth:`derive`).
    derived: dict[ContextKey[Any], Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def dry_run_requests(self) -> list[dict[str, Any]]:
        """Where sinks record, in dry-run mode, each request they would send
        (``{"method", "path", "params", "body"}``); shared by all cycles."""
        return self.resource("dry_run_requests", list)  # type: ignore[no-any-return,unused-ignore]

    @property
    def policy(self) -> str:
        return self.config.expiry.policy

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(self.config.output.sinks)

    def sink_enabled(self, name: str) -> bool:
        return name in self.config.output.sinks

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """Return the per-engine object stored under ``key``, creating it once."""
        try:
            return self.resources[key]
        except KeyError:
            value = self.resources[key] = factory()
            return value

    def derive(self, key: ContextKey[T], compute: Callable[[RunContext], T]) -> T:
        """The value of ``key`` for this context: ``compute(self)`` on first use.

        For settings a hook would otherwise work out again for every record.
        The value lives as long as this context (one cycle), so it always
        belongs to this context's ``config`` and ``now``.
        """
        try:
            value: T = self.derived[key]
        except KeyError:
            value = self.derived[key] = compute(self)
        return value

    def close_resources(self) -> None:
        for value in reversed(list(self.resources.values())):
            close = getattr(value, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing must not hide the real outcome
                    self.log.debug("closing a resource failed", exc_info=True)
        self.resources.clear()
