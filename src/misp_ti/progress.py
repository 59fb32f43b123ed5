"""Progress reporting: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("misp_ti.progress")


class LogProgress:
    """One log line per page and per cycle (for services and pipes)."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._docs: dict[str, int] = {}

    def cycle_started(self, stream: str, *, refetch: bool, resumed: bool) -> None:
        self._started[stream] = time.monotonic()
        self._docs[stream] = 0
        what = "resuming" if resumed else ("refetching" if refetch else "polling")
        log.info("%s %s", what, stream)

    def page_done(self, stream: str, *, records: int, docs: int, errors: int) -> None:
        self._docs[stream] = self._docs.get(stream, 0) + docs
        elapsed = max(time.monotonic() - self._started.get(stream, time.monotonic()), 1e-9)
        log.info("%s: page of %d records, %d documents so far (%.0f docs/s), %d errors in page",
                 stream, records, self._docs[stream], self._docs[stream] / elapsed, errors)

    def cycle_finished(self, stream: str, result: Any) -> None:
        log.info("%s cycle %s: %d pages, %d documents, %d pipeline errors, %.1fs",
                 stream, "done" if result.completed else "interrupted", result.pages,
                 result.documents, result.pipeline_errors, result.seconds)
        for sink, count in sorted(getattr(result, "failure_stored", {}).items()):
            log.warning("%s cycle: %s stored %d documents in its failure store instead of the data "
                        "(they did not fit the mappings; copies are in the dead-letter file)", stream, sink, count)


class RichProgress:
    """A live bar per stream: pages, documents and rate (MISP gives no total up front)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            TextColumn("{task.fields[pages]} pages"),
            TextColumn("{task.completed:,.0f} docs"),
            TextColumn("{task.fields[rate]:,.0f} docs/s"),
            TextColumn("{task.fields[errors]} errors"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
            redirect_stdout=False,  # stdout may carry documents (ndjson sink on "-")
        )
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._progress.start()
        # the log handler holds the real stderr; while the bar lives it writes
        # through rich's redirected stderr, so log lines print above the bar
        # instead of breaking into its line
        self._handlers = [h for h in logging.getLogger("misp_ti").handlers if isinstance(h, logging.StreamHandler)]
        self._streams = [h.setStream(sys.stderr) for h in self._handlers]

    def cycle_started(self, stream: str, *, refetch: bool, resumed: bool) -> None:
        label = f"{stream}{' (refetch)' if refetch else ''}{' (resumed)' if resumed else ''}"
        self._tasks[stream] = self._progress.add_task(label, total=None, pages=0, rate=0.0, errors=0)
        self._started[stream] = time.monotonic()

    def page_done(self, stream: str, *, records: int, docs: int, errors: int) -> None:
        task = self._tasks[stream]
        current = self._progress.tasks[task]
        done = current.completed + docs
        elapsed = max(time.monotonic() - self._started[stream], 1e-9)
        self._progress.update(task, completed=done, pages=current.fields["pages"] + 1,
                              rate=done / elapsed, errors=current.fields["errors"] + errors)

    def cycle_finished(self, stream: str, result: Any) -> None:
        task = self._tasks.get(stream)
        if task is not None:
            self._progress.update(task, total=self._progress.tasks[task].completed)

    def close(self) -> None:
        for handler, stream in zip(self._handlers, self._streams, strict=True):
            if stream is not None:
                handler.setStream(stream)
        self._progress.stop()


def make_progress(*, quiet: bool) -> Any:
    if quiet:
        return None
    if sys.stderr.isatty():
        return RichProgress()
    return LogProgress()
