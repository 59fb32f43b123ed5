"""The progress display of `once` and `run` (misp_ti.progress), in process on
a fake terminal against the simulator: a bar with a total and an ETA where
MISP tells the size, a spinner otherwise, log lines above the bar, nothing
on a non-terminal or with --quiet."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from rich.console import Console

from misp_ti.engine import Engine
from misp_ti.misp.client import SearchResult
from misp_ti.misp.paging import WindowReader, row_key, window_count
from misp_ti.progress import LogProgress, RichProgress, make_progress

#: CSI sequences (cursor moves, erasing, colours) rich writes on a terminal
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
EVENTS_BACKFILL = {
    "misp": {"page_size": 5},
    "streams": {"threat": {"enabled": True}, "threat_attributes": {"enabled": False}},
}


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=160, color_system=None), out


def screen_lines(raw: str) -> list[str]:
    """What each line of a terminal shows: escapes dropped, a carriage return
    restarts the line (rich redraws its live line that way)."""
    return [line.rsplit("\r", 1)[-1] for line in CSI.sub("", raw).split("\n")]


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """A stderr log handler on misp_ti's logger, as the CLI installs one."""
    logger = logging.getLogger("misp_ti")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_an_events_backfill_shows_a_bar_with_the_total_and_an_eta(
    misp_make_engine: Callable[..., Engine], log_lines: io.StringIO
) -> None:
    console, out = terminal()
    progress = RichProgress(console)
    try:
        engine = misp_make_engine(overrides=EVENTS_BACKFILL, progress=progress)
        [result] = engine.run_once()
    finally:
        progress.close()
    assert result.completed and result.pages > 3
    raw = out.getvalue()
    frames = re.split(r"[\r\n]", CSI.sub("", raw))  # every redraw of the live line
    counts = [tuple(map(int, m.groups())) for f in frames if (m := re.search(r"(\d+)/(\d+) rows", f.replace(",", "")))]
    assert counts, raw
    # X-Result-Count of the first page gave the total: one total from the first bar to the last
    totals = {total for _, total in counts}
    assert len(totals) == 1, totals
    [total] = totals
    assert total > 3 * 5 and counts[-1] == (total, total)
    assert any(done < total for done, _ in counts), raw  # bars drawn while it ran
    assert any(re.search(r"ETA \d+:\d\d:\d\d", f) for f in frames), raw
    # a log line of the cycle ("threat: reading ...") printed above the bar, on a line of its own
    logged = [line for line in screen_lines(raw) if "LOG " in line]
    assert any("threat: reading" in line for line in logged), raw
    assert all(line.startswith("LOG ") and " docs/s" not in line for line in logged), logged


def test_without_a_size_it_is_a_spinner_without_total_or_eta(misp_make_engine: Callable[..., Engine]) -> None:
    console, out = terminal()
    progress = RichProgress(console)
    try:
        # attributes: MISP 2.4.195+ counts the page, not the window, so the size is unknown
        engine = misp_make_engine(overrides={"misp": {"page_size": 200}}, progress=progress)
        [result] = engine.run_once()
    finally:
        progress.close()
    assert result.completed and result.pages > 3
    shown = CSI.sub("", out.getvalue())
    assert "threat_attributes" in shown and f"{result.documents:,} docs" in shown
    assert not re.search(r"\d+/\d+ rows", shown) and "ETA" not in shown


def test_a_non_terminal_gets_log_lines_and_no_bar(misp_make_engine: Callable[..., Engine]) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    progress = make_progress(quiet=False, console=console)
    assert isinstance(progress, LogProgress)
    engine = misp_make_engine(overrides=EVENTS_BACKFILL, progress=progress)
    [result] = engine.run_once()
    assert result.completed and console.file.getvalue() == ""


def test_quiet_shows_nothing_even_on_a_terminal() -> None:
    console, out = terminal()
    assert make_progress(quiet=True, console=console) is None
    assert out.getvalue() == ""


def test_documents_printed_to_the_same_terminal_get_log_lines_not_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    class TerminalStdout(io.StringIO):
        def isatty(self) -> bool:
            return True

    console, out = terminal()
    monkeypatch.setattr(sys, "stdout", TerminalStdout())
    assert isinstance(make_progress(quiet=False, console=console, documents_on_stdout=True), LogProgress)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # documents piped elsewhere: the bar is free to draw
    progress = make_progress(quiet=False, console=console, documents_on_stdout=True)
    assert isinstance(progress, RichProgress)
    progress.close()


def test_the_log_line_tells_the_total_where_known(caplog: pytest.LogCaptureFixture) -> None:
    progress = LogProgress()
    progress.cycle_started("threat", refetch=False, resumed=False)
    with caplog.at_level(logging.INFO, logger="misp_ti.progress"):
        progress.page_done("threat", records=12, docs=12, errors=0, stats={"rows": 5, "total": 40})
        progress.page_done("threat", records=3, docs=3, errors=0, stats={"rows": 6})
    # only the page lines: "polling threat" is captured too when an earlier
    # test left the logger at INFO
    first, second = (r.getMessage() for r in caplog.records if ": page of " in r.getMessage())
    assert "5 of 40 rows" in first and "rows" not in second


def _reader(scope: str, rows: list[dict[str, object]], count: Callable[[int, int], int]) -> WindowReader:
    """A WindowReader over ``rows`` whose X-Result-Count is ``count(matching, on_page)``."""

    def search(body: Mapping[str, Any]) -> SearchResult:
        lo, hi = body["timestamp"]
        matching = [r for r in rows if lo <= int(r["timestamp"]) <= hi]  # rows are in timestamp, id order
        limit, page = body["limit"], body["page"]
        items = matching[limit * (page - 1): limit * page]
        return SearchResult(items, count(len(matching), len(items)), None, 1)

    return WindowReader(scope=scope, search=search, body={}, start=0, end=10_000, limit=4, key=row_key)


# 30 rows, three per second: every keyset step re-reads the rows at its second
ROWS = [{"uuid": f"u{i:02d}", "timestamp": str(100 + i // 3)} for i in range(30)]


@pytest.mark.parametrize(
    ("scope", "count"),
    [
        ("events", lambda matching, on_page: matching),  # Event::filterEventIds: the total
        ("attributes", lambda matching, on_page: matching),  # MISP before 2.4.165: the total
    ],
)
def test_the_window_total_stays_the_row_count_across_keyset_steps(scope: str, count: Callable[[int, int], int]) -> None:
    chunks = list(_reader(scope, ROWS, count).chunks())
    assert sum(len(c.rows) for c in chunks) == 30
    assert {c.stats.get("total") for c in chunks} == {30}
    assert chunks[-1].stats["rows"] == 30


def test_attributes_that_count_the_page_give_no_total() -> None:
    # MISP 2.4.195+: X-Result-Count counts this page's SQL rows (plus one when full)
    chunks = list(_reader("attributes", ROWS, lambda matching, on_page: on_page + (on_page == 4)).chunks())
    assert sum(len(c.rows) for c in chunks) == 30
    assert all("total" not in c.stats for c in chunks)


def test_window_count_reads_only_totals() -> None:
    assert window_count("events", 100, SearchResult([], 7, None, 1)) == 7
    assert window_count("events", 100, SearchResult([], None, None, 1)) is None
    assert window_count("attributes", 100, SearchResult([], 101, None, 1)) is None  # a full page's count
    assert window_count("attributes", 100, SearchResult([], 5_000, None, 1)) == 5_000
