"""Progress reporting: a rich bar on a terminal, plain log lines otherwise.

Only standard error is written (stdout may carry documents); ``--quiet``
shows neither (:func:`make_progress`)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from rich.progress import ProgressColumn, Task
from rich.text import Text

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

    def page_done(self, stream: str, *, records: int, docs: int, errors: int, stats: Mapping[str, int] | None = None) -> None:
        self._docs[stream] = self._docs.get(stream, 0) + docs
        elapsed = max(time.monotonic() - self._started.get(stream, time.monotonic()), 1e-9)
        rows, total = _rows_total(stats or {})
        of_total = f", {rows:,} of {total:,} rows" if rows is not None and total is not None else ""
        log.info("%s: page of %d records, %d documents so far (%.0f docs/s)%s, %d errors in page",
                 stream, records, self._docs[stream], self._docs[stream] / elapsed, of_total, errors)

    def cycle_finished(self, stream: str, result: Any) -> None:
        log.info("%s cycle %s: %d pages, %d documents, %d pipeline errors, %.1fs",
                 stream, "done" if result.completed else "interrupted", result.pages,
                 result.documents, result.pipeline_errors, result.seconds)
        for sink, count in sorted(getattr(result, "failure_stored", {}).items()):
            log.warning("%s cycle: %s stored %d documents in its failure store instead of the data "
                        "(they did not fit the mappings; copies are in the dead-letter file)", stream, sink, count)


def _rows_total(stats: Mapping[str, int]) -> tuple[int | None, int | None]:
    """``(rows read, rows in the window)`` from a page's stats, each ``None`` when not told."""
    rows, total = stats.get("rows"), stats.get("total")
    return (rows if isinstance(rows, int) else None), (total if isinstance(total, int) else None)


class RichProgress:
    """A live line per stream on a terminal.

    Where the fetch tells the size of the window (``total`` in the page
    stats: MISP's ``X-Result-Count`` on events, see
    :func:`misp_ti.misp.paging.window_count`) the line is a bar of MISP rows
    with the total and an ETA; otherwise a spinner with the counts. Log
    records print above the bar, never into its line.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            _IfTotal(BarColumn()),
            _IfTotal(TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows")),
            TextColumn("{task.fields[docs]:,} docs"),
            TextColumn("{task.fields[rate]:,.0f} docs/s"),
            TextColumn("{task.fields[errors]} errors"),
            TimeElapsedColumn(),
            _Eta(),
            console=console or Console(stderr=True),
            transient=False,
            redirect_stdout=False,  # stdout may carry documents (ndjson sink on "-")
        )
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._progress.start()
        # rich has replaced sys.stderr by a proxy that prints above the live
        # display; the log handlers write there while the bar lives, so a log
        # line never lands in the bar's line
        self._handlers = [h for h in logging.getLogger("misp_ti").handlers if isinstance(h, logging.StreamHandler)]
        self._streams = [h.setStream(sys.stderr) for h in self._handlers]

    def cycle_started(self, stream: str, *, refetch: bool, resumed: bool) -> None:
        old = self._tasks.pop(stream, None)
        if old is not None:  # `run`: one line per stream, the latest cycle's
            self._progress.remove_task(old)
        label = f"{stream}{' (refetch)' if refetch else ''}{' (resumed)' if resumed else ''}"
        self._tasks[stream] = self._progress.add_task(label, total=None, docs=0, rate=0.0, errors=0)
        self._started[stream] = time.monotonic()

    def page_done(self, stream: str, *, records: int, docs: int, errors: int, stats: Mapping[str, int] | None = None) -> None:
        task_id = self._tasks[stream]
        task = self._progress.tasks[task_id]
        rows, total = _rows_total(stats or {})
        completed = rows if rows is not None else task.completed + records
        done_docs = task.fields["docs"] + docs
        elapsed = max(time.monotonic() - self._started[stream], 1e-9)
        update: dict[str, Any] = {}
        if total is not None:
            update["total"] = max(total, completed)
        self._progress.update(
            task_id, completed=completed, docs=done_docs, rate=done_docs / elapsed,
            errors=task.fields["errors"] + errors, refresh=True, **update,
        )

    def cycle_finished(self, stream: str, result: Any) -> None:
        task_id = self._tasks.get(stream)
        if task_id is not None and result.completed:
            # done: whatever the estimate said, the bar ends full
            self._progress.update(task_id, total=self._progress.tasks[task_id].completed, refresh=True)

    def close(self) -> None:
        for handler, stream in zip(self._handlers, self._streams, strict=True):
            if stream is not None:
                handler.setStream(stream)
        self._progress.stop()


class _IfTotal(ProgressColumn):
    """Shows ``inner`` only while the size is known (else the spinner does the talking)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def render(self, task: Task) -> Any:
        return self.inner.render(task) if task.total is not None else Text("")


class _Eta(ProgressColumn):
    """``ETA 0:01:23`` from rich's speed estimate; ``ETA -:--:--`` until it has one."""

    def render(self, task: Task) -> Text:
        if task.total is None or task.finished:
            return Text("")
        left = task.time_remaining
        if left is None:
            return Text("ETA -:--:--", style="progress.remaining")
        minutes, seconds = divmod(int(left), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"ETA {hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


def make_progress(*, quiet: bool, console: Any = None, documents_on_stdout: bool = False) -> Any:
    """A bar when standard error (or ``console``) is a terminal, log lines
    otherwise, nothing with ``quiet``. It only ever writes to standard error.

    Documents printed to the same terminal (the ndjson sink on ``-``, stdout
    not redirected) would be drawn over by the bar: then log lines too.
    """
    if quiet:
        return None
    terminal = console.is_terminal if console is not None else sys.stderr.isatty()
    if terminal and documents_on_stdout and sys.stdout.isatty():
        terminal = False
    return RichProgress(console) if terminal else LogProgress()
