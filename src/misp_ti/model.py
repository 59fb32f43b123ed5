"""Small value types passed through the hooks, the declarations plugins make
(:class:`ExpiryPolicy`, :class:`Sink`), and the engine's typed
:class:`Stash`.

They are plain classes so that plugins can build them without importing
anything heavier than this module.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from misp_ti.state_schema import DEFAULT_SOURCE

if TYPE_CHECKING:
    from misp_ti.config import Config, ExpirySettings
    from misp_ti.state import StateStore
    from misp_ti.streams import StreamRegistry

#: The names of the two built-in streams (kept for old imports; the streams
#: there are come from :class:`misp_ti.streams.StreamRegistry`, ``ctx.streams``).
STREAMS = ("threat_attributes", "threat")


def _builtin_streams() -> StreamRegistry:
    from misp_ti.streams import BUILTIN_REGISTRY

    return BUILTIN_REGISTRY

T = TypeVar("T")
D = TypeVar("D")


class StashKey(Generic[T]):
    """Names one typed value in a :class:`Stash` (or one :meth:`RunContext.derive` value).

    Create keys once, at module level. Keys compare by identity, so two
    plugins never share a value by accident, whatever their names; the name
    is for ``repr`` and error messages. The type parameter is the type of the
    value: ``CLIENT: StashKey[MispClient] = StashKey("misp_fetch.client")``.
    Where the value lives decides how long: ``ctx.stash`` holds it for the
    engine, ``ctx.derive`` for one context.
    """

    __slots__ = ("name", "_sources")

    def __init__(self, name: str) -> None:
        self.name = name
        self._sources: dict[str, StashKey[T]] = {}

    def for_source(self, source: str) -> StashKey[T]:
        """This key for the MISP ``source`` (``ctx.source``): each ``[misp.<name>]``
        source has its own value (client, model cache), the ``default`` source
        the key itself. The same source always gives the same key."""
        if source == DEFAULT_SOURCE:
            return self
        key = self._sources.get(source)
        if key is None:
            key = self._sources.setdefault(source, StashKey(f"{self.name}[{source}]"))
        return key

    def __repr__(self) -> str:
        return f"StashKey({self.name!r})"


class Stash:
    """Typed values shared by every cycle of one engine: clients, connections, caches.

    The engine owns one (``engine.stash``, handed to hooks as ``ctx.stash``)
    and closes it in :meth:`Engine.close <misp_ti.engine.Engine.close>`.
    Modelled on pytest's ``Stash``: values are looked up by
    :class:`StashKey`, never by string, so their types are known.
    """

    __slots__ = ("_values", "_lock")

    def __init__(self) -> None:
        self._values: dict[StashKey[Any], object] = {}
        # the fetch runs in its own thread: two first uses must not build two clients
        self._lock = threading.RLock()

    def __getitem__(self, key: StashKey[T]) -> T:
        return cast(T, self._values[key])

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        """Put ``value`` under ``key`` (a test injecting a client with a mock transport)."""
        with self._lock:
            self._values[key] = value

    def __contains__(self, key: StashKey[Any]) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: StashKey[T], default: D) -> T | D:
        try:
            return self[key]
        except KeyError:
            return default

    def get_or_create(self, key: StashKey[T], factory: Callable[[], T]) -> T:
        """The value under ``key``, made by ``factory()`` on first use (once, even across threads)."""
        try:
            return self[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._values:
                self._values[key] = factory()
            return self[key]

    def close(self) -> None:
        """Close every value that has a ``close()``, newest first, and forget them all.

        Newest first because a later value may use an earlier one. A failing
        ``close()`` is logged at debug level: closing must not hide the real
        outcome of a run.
        """
        with self._lock:
            values, self._values = list(self._values.values()), {}
        for value in reversed(values):
            close = getattr(value, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    logging.getLogger("misp_ti").debug("closing %r failed", value, exc_info=True)


#: Where sinks record, in dry-run mode, the requests they would send.
DRY_RUN_REQUESTS: StashKey[list[dict[str, Any]]] = StashKey("misp_ti.dry_run_requests")

#: Told of every MISP HTTP request as ``observer(status, seconds, retry=...)``
#: (:class:`misp_ti.misp.client.MispClient`'s ``observer``); the engine sets it
#: when it has metrics, the MISP client it creates reads it.
MISP_REQUEST_OBSERVER: StashKey[Callable[..., None]] = StashKey("misp_ti.misp_request_observer")

#: Keys made for the deprecated :meth:`RunContext.resource`, one per name.
_NAMED_KEYS: dict[str, StashKey[Any]] = {}


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """An expiry policy, as a plugin declares it in ``MISP_TI_EXPIRY_POLICIES``.

    A plain name declares a policy without refetch cycles:
    ``MISP_TI_EXPIRY_POLICIES = ("one-week", ExpiryPolicy("weekly-refetch",
    refetch_every=timedelta(days=7)))``.
    """

    name: str
    #: How often the engine re-reads every stream from ``initial_interval``
    #: (a refetch cycle: ``ctx.refetch``) while this policy is selected;
    #: ``None``: never. ``expiry.refetch_interval`` overrides it.
    refetch_every: timedelta | None = None

    def refetch_interval(self, settings: ExpirySettings) -> timedelta | None:
        """The refetch period in effect: ``expiry.refetch_interval``, else this policy's own."""
        return settings.refetch_interval if settings.refetch_interval is not None else self.refetch_every


@dataclass(frozen=True, slots=True)
class Sink:
    """A sink, as a plugin declares it in ``MISP_TI_SINKS`` (or by its plain name)."""

    name: str
    #: Called once when an engine starts with this sink enabled; each message
    #: it returns is logged as a warning (e.g. TLS verification turned off).
    startup_warnings: Callable[[Config], Iterable[str]] | None = None


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
    #: The progress display reads two: ``rows``, the source rows read so far
    #: this cycle, and ``total``, the rows the cycle will read when the source
    #: tells (then a terminal shows a bar with an ETA instead of a spinner).
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
    #: Typed values shared by all cycles of the engine (clients, connections):
    #: ``ctx.stash.get_or_create(KEY, factory)``; the engine closes them.
    stash: Stash = field(default_factory=Stash)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("misp_ti"))
    #: Set when the cycle is over (stopped, failed, or done) while a fetch may
    #: still be reading ahead: a fetch plugin should stop retrying and return.
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Values worked out from ``config`` and ``now`` (see :meth:`derive`).
    derived: dict[StashKey[Any], Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def dry_run_requests(self) -> list[dict[str, Any]]:
        """Where sinks record, in dry-run mode, each request they would send
        (``{"method", "path", "params", "body"}``); shared by all cycles."""
        return self.stash.get_or_create(DRY_RUN_REQUESTS, list)

    @property
    def policy(self) -> str:
        return self.config.expiry.policy

    @property
    def source(self) -> str:
        """The MISP source of this context's cycle (``default`` for the single ``[misp]``)."""
        return self.config.source

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(self.config.output.sinks)

    def sink_enabled(self, name: str) -> bool:
        return name in self.config.output.sinks

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """Deprecated: use ``ctx.stash.get_or_create(KEY, factory)`` with a module-level
        :class:`StashKey`. The object stored under the name ``key``, created once."""
        warnings.warn(
            "RunContext.resource(name, factory) is deprecated; use "
            "ctx.stash.get_or_create(StashKey(...), factory) with a module-level key",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.stash.get_or_create(_NAMED_KEYS.setdefault(key, StashKey(key)), factory)

    def derive(self, key: StashKey[T], compute: Callable[[RunContext], T]) -> T:
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


def __getattr__(name: str) -> Any:
    if name == "ContextKey":  # one key class for both lifetimes
        warnings.warn("misp_ti.model.ContextKey is deprecated; use misp_ti.model.StashKey", DeprecationWarning, stacklevel=2)
        return StashKey
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
