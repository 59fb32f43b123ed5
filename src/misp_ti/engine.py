"""The engine: one poll cycle per stream, batch by batch, at-least-once.

A cycle is: ``fetch`` pages -> ``transform_doc`` + ``compute_expiry`` per
record -> ``emit`` per batch to every enabled sink -> save the page's
checkpoint. The cursor never moves past a batch that some sink did not
confirm. A cycle interrupted by a crash, a stop request or an error stays
recorded as *in progress* and is resumed (same window, same ingest time)
on the next start, so its documents are reproduced identically and the
latest view ends as if nothing had happened.

Each MISP source (``[misp.<name>]``, or the single ``[misp]`` as ``default``)
has its own cursor, cycle and refetch schedule per stream: one engine polls
every ``(source, stream)`` in turn, each cycle with the source's view of the
config (:meth:`~misp_ti.config.Config.for_source`). A state file remembers
the MISP URL of each source and refuses another one (:meth:`Engine.check_sources`).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import pluggy

from misp_ti.config import Config
from misp_ti.config.sources import DEFAULT_SOURCE
from misp_ti.cycle_report import PipelineErrorLog, cursor_time
from misp_ti.dispatch import first_result_caller  # noqa: F401  (its old import place)
from misp_ti.ecs import is_pipeline_error
from misp_ti.errors import ConfigError, MispTiError, PluginError, SinkError
from misp_ti.manager import (
    POLICIES_ATTR,
    SINKS_ATTR,
    declarations,
    declared_streams,
    plugin_manager_for,
    validate_plugin_settings,
)
from misp_ti.model import MISP_REQUEST_OBSERVER, ExpiryPolicy, Page, RunContext, SinkReport, Stash
from misp_ti.processing import process_records
from misp_ti.state import Cycle, CycleOutcome, StateStore
from misp_ti.timeutil import iso, utcnow

log = logging.getLogger("misp_ti.engine")

#: The schedule row under which the state store remembers each stream's last
#: refetch cycle (the name is the engine's: policies only declare a period).
REFETCH_SCHEDULE = "refetch"


class Progress(Protocol):
    """Receives progress events; the CLI renders them as a bar or log lines."""

    def cycle_started(self, stream: str, *, refetch: bool, resumed: bool) -> None: ...

    def page_done(self, stream: str, *, records: int, docs: int, errors: int, stats: Mapping[str, int]) -> None:
        """``stats`` is the page's :attr:`~misp_ti.model.Page.stats` (``rows``, ``total``...)."""

    def cycle_finished(self, stream: str, result: CycleResult) -> None: ...


class _NoProgress:
    def cycle_started(self, stream: str, *, refetch: bool, resumed: bool) -> None:
        pass

    def page_done(self, stream: str, *, records: int, docs: int, errors: int, stats: Mapping[str, int]) -> None:
        pass

    def cycle_finished(self, stream: str, result: CycleResult) -> None:
        pass


@dataclass
class CycleResult:
    stream: str
    now: datetime
    source: str = DEFAULT_SOURCE
    refetch: bool = False
    resumed: bool = False
    completed: bool = False
    pages: int = 0
    records: int = 0
    documents: int = 0
    pipeline_errors: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    failure_stored: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "source": self.source,
            "now": iso(self.now),
            "refetch": self.refetch,
            "resumed": self.resumed,
            "completed": self.completed,
            "pages": self.pages,
            "records": self.records,
            "documents": self.documents,
            "pipeline_errors": self.pipeline_errors,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "failure_stored": self.failure_stored,
            "seconds": round(self.seconds, 3),
        }


def _label_source(doc: dict[str, Any], source: str) -> None:
    """Say which ``[misp.<name>]`` source ``doc`` came from (``labels.misp_source``).

    The source is part of a named source's document ids: the same attribute
    (same uuid, same timestamps) read from two synced servers gives two
    documents, so the second is not dropped as a replay of the first. The
    ``default`` source keeps the ids it always had (existing indices, stores).
    """
    labels = doc.get("labels")
    doc["labels"] = {**labels, "misp_source": source} if isinstance(labels, dict) else {"misp_source": source}
    if source != DEFAULT_SOURCE and isinstance(doc.get("_id"), str):
        doc["_id"] = hashlib.blake2b(f"{doc['_id']}\0{source}".encode(), digest_size=16).hexdigest()


class SourceBindingError(ConfigError):
    """The state holds the cursors of another MISP than the config's (exit 2)."""


def cycle_label(source: str, stream: str) -> str:
    """``stream`` for the single ``[misp]``, ``source/stream`` otherwise (progress, logs)."""
    return stream if source == DEFAULT_SOURCE else f"{source}/{stream}"


class Prefetch:
    """Reads the next page in a thread while the current one is processed.

    Fetching (network, JSON parsing) and processing (transform, sinks) then
    overlap. Order and errors are kept: pages arrive in the order the fetch
    plugin yields them, and an exception it raises surfaces here after every
    page before it. A page read ahead but not yet delivered when the cycle
    stops is simply dropped: its checkpoint was never saved.
    """

    def __init__(self, pages: Iterable[Page], depth: int = 1, cancel: threading.Event | None = None):
        self._pages = iter(pages)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        # closing also tells the fetch plugin (ctx.cancelled) to stop retrying
        self._closed = cancel if cancel is not None else threading.Event()
        self._thread = threading.Thread(target=self._read, name="misp-ti-fetch", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for page in self._pages:
                if not self._put(("page", page)):
                    return
            self._put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(("error", exc))

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Page]:
        """The pages in order; ends early, without an error, once the cancel
        event is set (a stop): a fetch blocked in a slow request or a retry
        wait is not waited for."""
        while True:
            try:
                kind, value = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._closed.is_set():
                    return
                continue
            if kind == "page":
                yield value
            elif kind == "done":
                return
            elif self._closed.is_set():
                return  # the fetch gave up because it was cancelled
            else:
                raise value

    def close(self) -> None:
        self._closed.set()
        # a thread still inside a slow request is abandoned (it is a daemon,
        # and nothing it reads now is delivered)
        self._thread.join(timeout=0.5)


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    # a page without documents is still one (empty) batch: sinks see every
    # cycle, quiet ones included, and can do their per-cycle housekeeping
    yield items[:size]
    for start in range(size, len(items), size):
        yield items[start:start + size]


class Engine:
    """Runs poll cycles with a plugin manager, a config and a state store."""

    def __init__(
        self,
        config: Config,
        *,
        pm: pluggy.PluginManager | None = None,
        extra_plugins: Iterable[Any] = (),
        clock: Callable[[], datetime] = utcnow,
        progress: Progress | None = None,
        state: StateStore | None = None,
        metrics: Any = None,
    ):
        self.config = config
        self.pm = pm or plugin_manager_for(config, extra_plugins)
        self.clock = clock
        self.progress = progress or _NoProgress()
        self._state = state
        #: Typed values shared by every cycle (``ctx.stash``), closed by :meth:`close`.
        self.stash = Stash()
        #: Every stream the registered plugins declare (``MISP_TI_STREAMS``).
        self.streams = declared_streams(self.pm)
        self._stop = threading.Event()
        #: The running cycle's ``ctx.cancelled``: a stop ends its fetch's waits.
        self._cancel: threading.Event | None = None
        #: A :class:`misp_ti.service.metrics.Metrics` (or anything with its
        #: ``on_*`` methods) fed with every cycle's outcome; ``None``: off.
        self.metrics = metrics
        if metrics is not None:
            self.stash[MISP_REQUEST_OBSERVER] = metrics.on_misp_request
        self._error_log = PipelineErrorLog()
        self._provisioned = False
        #: Each source's view of the config (``default``: the whole config).
        self.sources: dict[str, Config] = {name: config.for_source(name) for name in config.source_names()}
        self._sources_checked = False
        self.expiry_policy: ExpiryPolicy = self.check_plugins()
        self._warn_at_start()

    # setup -----------------------------------------------------------------

    @property
    def state(self) -> StateStore:
        if self._state is None:
            self._state = StateStore(self.config.state_path())
        return self._state

    def check_plugins(self) -> ExpiryPolicy:
        """Fail at start-up when the config names a sink, policy or stream no
        plugin provides (plugin streams' tables are validated by their models);
        the selected policy's declaration otherwise."""
        sinks = declarations(self.pm, SINKS_ATTR)
        for name in self.config.output.sinks:
            if name not in sinks:
                raise ConfigError(
                    f"output.sinks: unknown sink {name!r}; available: {', '.join(sorted(sinks)) or 'none'}"
                )
        for extra in (self.config.output.model_extra or {}):
            if extra not in sinks:
                raise ConfigError(f"output.{extra}: unknown key (not a setting and no plugin declares a sink {extra!r})")
        validate_plugin_settings(self.pm, self.config)
        policies = declarations(self.pm, POLICIES_ATTR)
        if self.config.expiry.policy not in policies:
            raise ConfigError(
                f"expiry.policy: unknown policy {self.config.expiry.policy!r}; "
                f"available: {', '.join(sorted(policies)) or 'none'}"
            )
        views = getattr(self, "sources", None) or {DEFAULT_SOURCE: self.config}
        for source, view in views.items():
            view.streams.bind(self.streams)
            where = "streams" if view is self.config else f"misp.{source}.streams"
            for name in view.streams.enabled():
                if name not in self.streams:
                    raise ConfigError(
                        f"{where}.{name}: enabled, but no plugin declares this stream (a plugin replacing misp_fetch "
                        f"declares misp_ti.streams.BUILTIN_STREAMS again); declared: {', '.join(self.streams) or 'none'}"
                    )
        policy: ExpiryPolicy = policies[self.config.expiry.policy][1]
        return policy

    def _warn_at_start(self) -> None:
        sinks = declarations(self.pm, SINKS_ATTR)
        for name in self.config.output.sinks:
            warn = sinks[name][1].startup_warnings
            for message in (warn(self.config) if warn is not None else ()):
                log.warning("%s", message)

    @property
    def refetch_interval(self) -> timedelta | None:
        """How often every stream is re-read from ``initial_interval`` (a
        refetch cycle): ``expiry.refetch_interval``, else the period the
        selected policy declares; ``None``: never."""
        return self.expiry_policy.refetch_interval(self.config.expiry)

    def context(
        self, *, now: datetime | None = None, refetch: bool = False, dry_run: bool = False, check: bool = False,
        source: str | None = None,
    ) -> RunContext:
        """A context for ``source``'s cycles; without one, the whole config
        (provisioning, dry-run requests: nothing that talks to one MISP)."""
        return RunContext(
            config=self.config if source is None else self.source_config(source),
            now=now or self.clock(),
            state=self._state if dry_run or check else self.state,
            refetch=refetch,
            dry_run=dry_run,
            check=check,
            streams=self.streams,
            stash=self.stash,
        )

    def source_config(self, source: str) -> Config:
        """The config as ``source`` sees it; exit 2 naming the sources there are."""
        view = self.sources.get(source)
        if view is None:
            view = self.config.for_source(source)  # raises the one-line error
        return view

    def check_sources(self) -> None:
        """Refuse a source whose cursors the state records for another MISP
        URL (compared without user-info, query or fragment); record the URL of
        a source seen for the first time. ``misp-ti reset`` rebinds."""
        from misp_ti.redact import public_url

        for source, view in self.sources.items():
            url = public_url(view.misp.url)
            bound = self.state.binding(source)
            if bound is None:
                self.state.bind(source, url, now=utcnow())  # when, for people: not the cycle clock
            elif bound.url != url:
                raise SourceBindingError(
                    f"source {source}: the state {self.config.state_path()} holds the cursors of {bound.url}, "
                    f"not of {url}; run `misp-ti reset --source {source}` to bind it to {url} "
                    "(add --all to read its initial interval again), or use another state.path"
                )
        self._sources_checked = True

    def provision(self, *, dry_run: bool = False, check: bool = False) -> list[dict[str, Any]]:
        """Let every sink install what it needs; with ``check``, only report
        whether it could (each sink's answer, e.g. missing privileges)."""
        ctx = self.context(dry_run=dry_run, check=check)
        actions: list[dict[str, Any]] = []
        for result in self.pm.hook.provision(ctx=ctx):
            actions.extend(result or ())
        if not dry_run and not check:
            self._provisioned = True
        return actions

    def close(self) -> None:
        self.stash.close()
        if self._state is not None:
            self._state.close()
            self._state = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # stopping --------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current batch, save its checkpoint, then stop.

        Safe from a signal handler. A fetch waiting (retry backoff, rate
        limit, a slow answer) is cancelled at once: the cycle stays in
        progress at its last confirmed batch."""
        self._stop.set()
        cancel = self._cancel
        if cancel is not None:
            cancel.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # cycles ----------------------------------------------------------------

    def refetch_due(self, stream: str, now: datetime, *, source: str = DEFAULT_SOURCE) -> bool:
        interval = self.refetch_interval
        if interval is None:
            return False
        last = self.state.last_run(stream, REFETCH_SCHEDULE, source=source)
        return last is None or now >= last + interval

    def _start(self, stream: str, *, source: str, dry_run: bool) -> tuple[Cycle, bool]:
        if dry_run:
            now = self.clock()
            cursor = self._state.get_cursor(stream, source=source) if self._state else None
            return Cycle(stream, now, False, cursor, None, source), False
        pending = self.state.in_progress(stream, source=source)
        if pending is not None:
            return pending, True
        now = self.clock()
        refetch = self.refetch_due(stream, now, source=source)
        cursor = None if refetch else self.state.get_cursor(stream, source=source)
        return self.state.begin_cycle(stream, now=now, refetch=refetch, start_cursor=cursor, source=source), False

    def run_cycle(self, stream: str, *, source: str = DEFAULT_SOURCE, dry_run: bool = False) -> CycleResult:
        """Run (or resume) one poll cycle of ``source``'s ``stream``."""
        self.source_config(source)
        if not dry_run and not self._sources_checked:
            self.check_sources()
        if not dry_run and not self._provisioned:
            self.provision()
        started = time.monotonic()
        cycle, resumed = self._start(stream, source=source, dry_run=dry_run)
        ctx = self.context(now=cycle.started_at, refetch=cycle.refetch, dry_run=dry_run, source=source)
        result = CycleResult(stream, cycle.started_at, source=source, refetch=cycle.refetch, resumed=resumed)
        self._cancel = ctx.cancelled
        if self.stop_requested:
            ctx.cancelled.set()
        try:
            self._run_pages(stream, cycle, ctx, result, resumed=resumed, dry_run=dry_run)
        except Exception as exc:
            if not dry_run:
                self._record_failure(stream, exc, source=source)
            raise
        finally:
            self._cancel = None
        result.seconds = time.monotonic() - started
        if not dry_run:
            self._record_result(stream, result)
        self.progress.cycle_finished(cycle_label(source, stream), result)
        return result

    def _run_pages(self, stream: str, cycle: Cycle, ctx: RunContext, result: CycleResult, *, resumed: bool, dry_run: bool) -> None:
        label = cycle_label(cycle.source, stream)
        self.progress.cycle_started(label, refetch=cycle.refetch, resumed=resumed)
        if resumed:
            log.info("resuming the interrupted %s cycle of %s", label, iso(cycle.started_at))
        pages = self.pm.hook.fetch(stream=stream, cursor=cycle.resume_cursor, ctx=ctx)
        if pages is None:
            raise PluginError(f"no fetch plugin serves the stream {stream!r}")
        last_cursor = None
        prefetch = Prefetch(pages, cancel=ctx.cancelled)
        try:
            for page in prefetch:
                self._deliver_page(stream, page, ctx, result)
                if page.cursor is not None:
                    last_cursor = page.cursor
                    if not dry_run:
                        self.state.save_checkpoint(stream, page.cursor, source=cycle.source)
                if self.stop_requested:
                    break
            if self.stop_requested:
                log.info("stop requested: %s cycle left in progress after %d pages", label, result.pages)
                return
            if not dry_run:
                schedule = REFETCH_SCHEDULE if cycle.refetch else None
                outcome = CycleOutcome(
                    stream, "completed", self.clock(), result.records, result.documents,
                    result.pipeline_errors, sum(result.dead_lettered.values()), source=cycle.source,
                )
                self.state.finish_cycle(stream, cursor=last_cursor, cycle=cycle, schedule=schedule, outcome=outcome)
            result.completed = True
        finally:
            prefetch.close()

    def _record_result(self, stream: str, result: CycleResult) -> None:
        if self.metrics is None:
            return
        now, source = self.clock(), result.source
        self.metrics.on_cycle_finished(stream, result, finished_at=now, source=source)
        cursor_at = cursor_time(
            self.state.get_cursor(stream, source=source), self.state.cursor_updated_at(stream, source=source)
        )
        self.metrics.on_cursor(stream, cursor_at, now, source=source)

    def _record_failure(self, stream: str, exc: BaseException, *, source: str) -> None:
        """The failed cycle goes into the history (``status``) and the metrics;
        a state that cannot be written only loses this record."""
        try:
            self.state.record_outcome(
                CycleOutcome(stream, "failed", self.clock(), error=str(exc) or type(exc).__name__, source=source)
            )
        except MispTiError as state_exc:
            log.warning("%s: the failed cycle could not be recorded: %s", cycle_label(source, stream), state_exc)
        if self.metrics is not None:
            self.metrics.on_cycle_failed(stream, source=source)

    def _deliver_page(self, stream: str, page: Page, ctx: RunContext, result: CycleResult) -> None:
        docs = self.process(stream, page.records, ctx)
        errors = sum(1 for d in docs if is_pipeline_error(d))
        for batch in _chunks(docs, self.config.output.batch_size):
            self.emit(stream, batch, ctx, result)
        result.pages += 1
        result.records += len(page.records)
        result.documents += len(docs)
        result.pipeline_errors += errors
        if errors:
            self._error_log.report(stream, page.records, docs)
        self.progress.page_done(cycle_label(result.source, stream), records=len(page.records), docs=len(docs), errors=errors, stats=page.stats)

    def process(self, stream: str, records: Iterable[Any], ctx: RunContext) -> list[dict[str, Any]]:
        """Transform and expire records (the hot path: :mod:`misp_ti.processing`)."""
        docs = process_records(self.pm, stream, records, ctx)
        if ctx.config.named_sources:
            for doc in docs:
                _label_source(doc, ctx.source)
        return docs

    def emit(self, stream: str, docs: list[dict[str, Any]], ctx: RunContext, result: CycleResult | None = None) -> list[SinkReport]:
        """Hand one batch to every enabled sink; raise unless all confirmed."""
        reports = [r for r in self.pm.hook.emit(stream=stream, docs=docs, ctx=ctx) if r is not None]
        confirmed = {r.sink for r in reports}
        missing = [s for s in self.config.output.sinks if s not in confirmed]
        if missing:
            raise SinkError(f"sink(s) {', '.join(missing)} did not confirm a batch of {len(docs)} documents")
        if result is not None:
            for report in reports:
                result.delivered[report.sink] = result.delivered.get(report.sink, 0) + report.delivered
                result.dead_lettered[report.sink] = result.dead_lettered.get(report.sink, 0) + report.dead_lettered
                if report.failure_stored:
                    result.failure_stored[report.sink] = result.failure_stored.get(report.sink, 0) + report.failure_stored
        return reports

    def run_once(
        self, *, streams: Iterable[str] | None = None, sources: Iterable[str] | None = None, dry_run: bool = False
    ) -> list[CycleResult]:
        """One cycle for each enabled stream of each source (an interrupted one is resumed first)."""
        results: list[CycleResult] = []
        chosen = list(streams or ())
        for stream in chosen:
            self.streams.require(stream, "--stream")
        for source in list(sources or ()) or list(self.sources):
            view = self.source_config(source)
            for stream in chosen or view.streams.enabled():
                if self.stop_requested:
                    return results
                results.append(self.run_cycle(stream, source=source, dry_run=dry_run))
        return results

    def run_forever(self, *, on_error: Callable[[str, BaseException], None] | None = None) -> None:
        """Poll every stream at its interval until :meth:`request_stop`.

        A failed cycle is logged and tried again at the stream's next turn;
        its cursor has not moved.
        """
        streams = [(source, stream) for source, view in self.sources.items() for stream in view.streams.enabled()]
        next_due = {key: 0.0 for key in streams}
        while not self.stop_requested:
            for key in streams:
                source, stream = key
                if self.stop_requested or time.monotonic() < next_due[key]:
                    continue
                interval = self.sources[source].streams.settings(stream).interval.total_seconds()
                try:
                    self.run_cycle(stream, source=source)
                except Exception as exc:
                    if on_error is not None:
                        on_error(cycle_label(source, stream), exc)
                    else:
                        log.error("%s poll failed, cursor kept; next try in %ss: %s", cycle_label(source, stream), interval, exc)
                next_due[key] = time.monotonic() + interval
            if streams:
                delay = max(0.0, min(next_due.values()) - time.monotonic())
                if not self.stop_requested:
                    log.info("next poll at %s", iso(self.clock() + timedelta(seconds=delay)))
                self._stop.wait(delay)
            else:
                break
