"""Reading one fixed time window from MISP restSearch without losing or repeating rows.

The problem
-----------
MISP pages with ``limit`` + ``page`` (an SQL ``OFFSET``) and filters the
timestamp with ``timestamp: [from, to]``. Plain offset paging over a window
is not safe while MISP is written to: when a row on an already-read page is
modified, its timestamp jumps to "now", it leaves its place in the
``timestamp, id`` order, every later row shifts one place towards the start,
and the row that crossed the page boundary is never read. Post-filters
(``enforceWarninglist``, ``excludeDecayed``) drop rows *after* the SQL page
was cut, so a short or even empty page does not mean the end (MISP #9175).

The algorithm (keyset on the timestamp, offset only where it must)
-----------------------------------------------------------------
State: ``lo`` (lower timestamp bound of the next query), ``page``, and
``seen``: uuid -> timestamp of the rows already delivered whose timestamp is
at or after ``safe`` (the point below which everything is delivered).

1. Ask for ``timestamp: [lo, end]`` ordered ``timestamp asc, id asc``, page 1.
2. Deliver every row not in ``seen`` with the same or a newer timestamp
   (a row modified while we page comes back with a newer timestamp and is
   delivered again, newest last: that is the de-duplication "keep the newest").
3. Decide from the counters MISP sent whether the *SQL* page was full
   (:func:`sql_page_full`); if not, the window is done.
4. If the page shows a row newer than ``lo`` (its newest timestamp ``m``),
   move ``lo = m`` and go back to page 1 (keyset step). Rows at ``m`` that
   were delivered are in ``seen`` and skipped next time. Nothing can shift:
   every query starts afresh at ``lo``.
5. Otherwise (a crowded second holding a whole page, or a page emptied by
   post-filters) the keyset cannot move: ask for ``page + 1`` of the same
   query (offset mode). When offset mode ends (step 4 or 3 again), the span
   it covered, ``[start of offset mode, m - 1]`` (or ``[..., end]``), is read
   again from page 1 (a *re-scan*) and unseen rows are delivered; a re-scan
   that still finds rows is repeated, at most :data:`MAX_RESCANS` times.
   This repairs the one-row skips a modification can cause in offset mode.

   A re-scan costs as many requests as the episode, and finds nothing
   unless MISP changed meanwhile. Offset runs (``offset_runs`` or a
   probe) make it cheap: offset mode is also chosen where a keyset step
   would re-read more than a quarter of the page (the rows at ``m`` fill
   its tail: imported events keep their original, shared timestamps), and
   the run then goes on for :data:`OFFSET_RUN` pages before the keyset
   moves again, while the checkpoint waits at the run's start. The run's
   span is then verified in one of two ways (``misp.paging``):

   * exact (the default, ``offset_runs=True``): re-scanned with
     ``rescan_limit`` rows a request (``misp.rescan_page_size``, default
     :data:`RESCAN_LIMIT`, at least the page size), i.e. one or two requests for a run of up to 64 pages. A
     one-request re-scan is one SQL query in MISP (``__iteratedFetch``
     splits a page only above PHP's ``memory_limit`` in MB x 50 rows,
     app/Model/MispAttribute.php L3309, L3346-3348, 2.5.1), so nothing
     removed meanwhile can make it skip a row.
   * fast (``changed_since``, what ``misp_fetch`` passes for
     ``misp.paging = "fast"``): one request asks "does MISP hold anything
     stamped at or after ``end - CLOCK_SKEW``?" Every change MISP stamps
     gets its "now": an edit or soft delete, an added attribute, an event
     tag change, an attribute's hard delete (its *event* is stamped;
     ``misp_fetch`` asks by event timestamp). Only a "yes" (or an answer
     that cannot tell) costs the re-scan; once the probe said "yes" the
     rest of the window is read without runs. Blind to what MISP does not
     stamp: an object's or an event's hard delete during an offset episode
     (see :mod:`misp_ti.simulator.deletes` for MISP's source) makes it skip
     one row per deleted row read already, for good (the row's timestamp
     is old). Positional checks cannot replace the probe: a row removed
     before the read position and the row it makes offset paging skip
     cancel out in every position after them.

   Either way the requests approach ``ceil(N / limit) + 1`` (issue 15). A
   row synchronised in with an old timestamp behind the read position is
   missed by both (keyset paging misses it anyway).

Checkpoints: after each page the safe point ``safe`` (every row of the
window below it delivered) is reported; a resumed cycle restarts at
``safe`` with the same window end, and re-delivers at most the rows at
``safe`` itself (document ids make that idempotent).

Memory stays flat: ``seen`` only holds the rows at or after ``safe``, i.e.
the current second, or the span of one offset-mode episode (at most
:data:`OFFSET_RUN_ROWS` rows for an offset run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from misp_ti.errors import FetchError
from misp_ti.misp.records import record_timestamp

if TYPE_CHECKING:  # the client and its HTTP stack are not needed to page
    from misp_ti.misp.client import SearchResult

log = logging.getLogger("misp_ti.misp_fetch")

#: Re-scans of one offset-mode span before giving up on it with a warning.
MAX_RESCANS = 3
#: Consecutive pages said to be full yet showing no usable row, before the
#: poll is failed as a runaway (MISP would need to have post-filtered this
#: many full pages in a row).
MAX_BLIND_PAGES = 1000
#: Seconds MISP's clock may lag the engine's without the change probe
#: missing a change made during the poll (it looks this far before the window end).
CLOCK_SKEW = 300
#: Offset runs (see :meth:`WindowReader._keep_offset`): pages a run lasts
#: once begun, and its limits in pages and rows.
OFFSET_RUN = 16
OFFSET_RUN_MAX = 64
OFFSET_RUN_ROWS = 20_000
#: Rows per request of the re-scans of offset runs without a probe (exact
#: paging, see :class:`WindowReader`): the default of ``misp.rescan_page_size``
#: (at least the page size), the default page size, which the default
#: answer-size bound is sized for.
RESCAN_LIMIT = 1000


def sql_page_full(scope: str, page: int, limit: int, result: SearchResult, *, old_counts: bool = False) -> bool:
    """Whether MISP's SQL page was full, i.e. more rows may follow.

    ``attributes`` (MISP ``MispAttribute::__iteratedFetch``), three generations:

    * 2.4.195+: ``X-Result-Count`` is the number of SQL rows of this page,
      plus one when the post-filtered page came back exactly full or empty;
      so it never exceeds ``limit + 1``. 2.4.196+ also sends
      ``X-Skipped-Elements-Count``, which settles the one ambiguous case.
    * 2.4.165-2.4.194: the same plus ``limit * (page - 1)``;
    * older: the total number of matching rows.

    A count above ``limit + 1`` reveals one of the older two (``old_counts``,
    sticky for the poll): then ``count - limit * (page - 1)`` is what is left
    from this page on. Without ``X-Skipped-Elements-Count``, a count still at
    most ``limit + 1`` on page 3 or later can only be a total. Without any
    header a short page is taken as the end (:class:`WindowReader` warns).

    ``events`` (``Event::filterEventIds``): ``X-Result-Count`` is the total
    number of matching events.
    """
    returned = len(result.items)
    if returned >= limit:
        return True
    count = result.result_count
    if scope == "events":
        return count is not None and count > page * limit
    if count is None:
        return result.skipped is not None and returned + result.skipped >= limit
    if old_counts or count > limit + 1:
        left = count - limit * (page - 1)
        return left > limit or (left == limit and returned > 0)
    if result.skipped is None and page >= 3:
        return count > page * limit
    if count != limit:
        return count > limit
    # count == limit: a full SQL page partly post-filtered, or limit - 1 rows
    # all post-filtered (then nothing came back)
    if returned > 0:
        return True
    return result.skipped is not None and result.skipped >= limit


def window_count(scope: str, limit: int, result: SearchResult) -> int | None:
    """The rows matching a page-1 query, where MISP's ``X-Result-Count`` says it.

    ``events``: always the total (``Event::filterEventIds``, see
    :func:`sql_page_full`). ``attributes``: only MISP before 2.4.165 sends a
    total; a page-1 count above ``limit + 1`` can only be that one (later
    versions count the page). Otherwise ``None``: the size is unknown. A
    separate count is not cheap there: ``returnFormat: count``
    (``app/Lib/Export/CountExport.php``) has MISP fetch and hand over every
    matching attribute just to count it, a second read of the whole window.
    """
    count = result.result_count
    if count is None:
        return None
    if scope == "events" or count > limit + 1:
        return count
    return None


@dataclass
class ReadStats:
    requests: int = 0
    retries: int = 0
    rows: int = 0
    duplicates: int = 0
    post_filtered: int = 0
    rescans: int = 0
    probes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Chunk:
    """Rows to deliver and the safe point once they are delivered."""

    rows: list[dict[str, Any]]
    safe: int
    done: bool = False
    stats: dict[str, int] = field(default_factory=dict)


Search = Callable[[Mapping[str, Any]], "SearchResult"]


class WindowReader:
    """Reads rows with ``start <= timestamp <= end`` as :class:`Chunk` s (see module doc).

    :param search: sends one restSearch body, returns the answer (retries inside).
    :param body: the request body without ``timestamp``, ``page`` and ``limit``.
    :param key: returns ``(uuid, timestamp)`` of a row.
    :param changed_since: one request answering whether MISP holds anything
        stamped at or after the given epoch second, whatever the filters;
        with it, offset-mode episodes are re-scanned only after a change,
        and paging uses offset runs (see the module doc). Fast, but blind
        to what MISP does not stamp (an object's or an event's hard delete).
    :param offset_runs: offset runs without a probe (exact paging): every
        offset-mode span is re-scanned, ``rescan_limit`` rows per request,
        so a run of many pages costs one or two more requests, not as many.
    :param rescan_limit: rows per re-scan request (default ``limit``).
    """

    def __init__(
        self,
        *,
        scope: str,
        search: Search,
        body: Mapping[str, Any],
        start: int,
        end: int,
        limit: int,
        key: Callable[[Mapping[str, Any]], tuple[str | None, int | None]],
        post_filtered: bool = False,
        changed_since: Callable[[int], bool] | None = None,
        offset_runs: bool = False,
        rescan_limit: int | None = None,
    ):
        self.scope = scope
        self.search = search
        self.body = dict(body)
        self.start, self.end, self.limit = start, end, limit
        self.key = key
        self.post_filtered = post_filtered
        self.changed_since = changed_since
        self.rescan_limit = max(limit, rescan_limit or limit)
        # offset runs allowed: exact paging, or a probe that has not said "changed" yet
        self._quiet = changed_since is not None or offset_runs
        self.stats = ReadStats()
        self._seen: dict[str, int] = {}
        self._new_keyed = 0  # rows with a key among the last _fresh() answer
        self._warned_no_header = False
        self._old_counts = False
        #: Rows in the window, when MISP's counters tell (see :meth:`_count_window`).
        self.total: int | None = None

    def _query(self, lo: int, hi: int, page: int, limit: int | None = None) -> SearchResult:
        body = {**self.body, "timestamp": [lo, hi], "limit": limit or self.limit, "page": page}
        result = self.search(body)
        self.stats.requests += 1
        self.stats.retries += result.attempts - 1
        self.stats.post_filtered += result.skipped or 0
        if result.result_count is None and self.post_filtered and not self._warned_no_header:
            self._warned_no_header = True
            log.warning(
                "MISP sent no X-Result-Count header: a page shortened by warninglist or decay "
                "filtering cannot be told from the last page; some rows may be read only by the next poll"
            )
        return result

    def _full(self, page: int, result: SearchResult, limit: int | None = None) -> bool:
        limit = limit or self.limit
        if self.scope == "attributes" and (result.result_count or 0) > limit + 1:
            self._old_counts = True
        return sql_page_full(self.scope, page, limit, result, old_counts=self._old_counts)

    def _fresh(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        keyed = 0
        for row in rows:
            uuid, ts = self.key(row)
            if uuid is None or ts is None:
                # malformed: always passed on (it becomes a pipeline_error
                # document whose id is its content, so a re-read is harmless)
                out.append(row)
                continue
            if self._seen.get(uuid, -1) >= ts:
                self.stats.duplicates += 1
                continue
            self._seen[uuid] = ts
            out.append(row)
            keyed += 1
        self.stats.rows += len(out)
        # only rows with a uuid and a timestamp are progress: a server that
        # repeats a malformed row while saying "more" is not moving forward
        self._new_keyed = keyed
        return out

    def _advance(self, safe: int) -> None:
        self._seen = {u: t for u, t in self._seen.items() if t >= safe}

    def _chunk(self, rows: list[dict[str, Any]], safe: int, done: bool = False) -> Chunk:
        stats = self.stats.as_dict()
        if self.total is not None:
            stats["total"] = max(self.total, self.stats.rows)
        return Chunk(rows, safe, done, stats)

    def _count_window(self, result: SearchResult) -> None:
        """Estimate the rows of the window (for a progress bar) from a page-1
        answer at ``lo``, where MISP's count is a total (:func:`window_count`):
        the rows delivered below ``lo`` plus those MISP counts from ``lo`` on."""
        count = window_count(self.scope, self.limit, result)
        if count is not None:
            self.total = self.stats.rows - len(self._seen) + count

    def chunks(self, resume_from: int | None = None) -> Iterator[Chunk]:
        lo = self.start if resume_from is None else max(self.start, resume_from)
        safe = lo
        page = 1
        episode: int | None = None  # where offset mode began
        blind = 0
        while True:
            result = self._query(lo, self.end, page)
            if page == 1:
                self._count_window(result)
            rows = self._fresh(result.items)
            full = self._full(page, result)
            newest = max((ts for r in result.items if (ts := self.key(r)[1]) is not None), default=-1)
            if not full or (newest > lo and not self._keep_offset(result, newest, page, episode is not None)):
                if episode is not None:
                    # offset mode ends here: deliver this page, then repair its span
                    yield self._chunk(rows, safe)
                    rows = []
                    hi = self.end if not full else newest - 1
                    yield from self._rescan(episode, hi, safe, page)
                    episode = None
                if not full:
                    self._advance(self.end + 1)
                    yield self._chunk(rows, self.end + 1, done=True)
                    return
                lo = safe = newest
                page = 1
                blind = 0
                self._advance(safe)
                yield self._chunk(rows, safe)
                continue
            # a full page that does not move the keyset (or whose keyset step
            # would re-read most of it): offset mode
            if episode is None:
                episode = lo
            blind = self._blind(blind, rows, lo, result)
            page += 1
            yield self._chunk(rows, safe)

    def _blind(self, blind: int, rows: list[dict[str, Any]], lo: int, result: SearchResult) -> int:
        """Counts pages said to be full that brought no new row; too many in a row fail the poll."""
        blind = 0 if rows and self._new_keyed else blind + 1
        if blind >= MAX_BLIND_PAGES:
            raise FetchError(
                f"MISP kept saying more {self.scope} follow at timestamp >= {lo} but sent "
                f"{MAX_BLIND_PAGES} pages in a row without a new row "
                f"(last: {len(result.items)} rows, X-Result-Count {result.result_count}); giving up"
            )
        return blind

    def _keep_offset(self, result: SearchResult, newest: int, page: int, in_offset: bool) -> bool:
        """Whether to read ``page + 1`` although the keyset could move to ``newest``.

        Only with a change probe (then an episode costs one probe instead
        of a re-scan) or with exact offset runs (a re-scan at
        ``rescan_limit`` rows a request). A keyset step re-reads the rows at ``newest``; when
        they fill more than a quarter of the page, offset mode is cheaper.
        A run, once begun, goes on for :data:`OFFSET_RUN` pages (one probe
        pays for many pages) and ends on a page whose keyset step is cheap,
        or after :data:`OFFSET_RUN_MAX` pages or :data:`OFFSET_RUN_ROWS`
        rows (the checkpoint stays at the run's start meanwhile, and the
        de-duplication memory holds the run's rows).
        """
        if not self._quiet or page >= min(OFFSET_RUN_MAX, max(1, OFFSET_RUN_ROWS // self.limit)):
            return False
        tail = sum(1 for row in result.items if self.key(row)[1] == newest)
        return tail * 4 > self.limit or (in_offset and page < OFFSET_RUN)

    def _rescan(self, lo: int, hi: int, safe: int, pages: int) -> Iterator[Chunk]:
        """Reads ``[lo, hi]`` again (offset mode read it in ``pages`` pages); delivers unseen rows."""
        # what MISP held then, plus room for rows added since: more is a server
        # that says "more" forever
        budget = -(-pages * self.limit // self.rescan_limit) + MAX_BLIND_PAGES
        if self.changed_since is not None and self._quiet:
            self.stats.probes += 1
            self.stats.requests += 1
            if not self.changed_since(self.end - CLOCK_SKEW):
                return
            # a "yes" stays a yes for this window: no more probes, no more runs
            self._quiet = False
        for _ in range(MAX_RESCANS):
            self.stats.rescans += 1
            found = 0
            page = 1
            while True:
                try:
                    result = self._query(lo, hi, page, self.rescan_limit)
                except FetchError as exc:
                    if self.rescan_limit <= self.limit:
                        raise
                    # a MISP that times out on wide pages: say which setting makes them narrower
                    raise FetchError(
                        f"{exc} (re-reading timestamps {lo}..{hi} at {self.rescan_limit} {self.scope} a request: "
                        f"lower misp.rescan_page_size, or set misp.paging = \"fast\")"
                    ) from exc
                rows = self._fresh(result.items)
                found += self._new_keyed
                yield self._chunk(rows, safe)
                if not self._full(page, result, self.rescan_limit):
                    break
                if page >= budget:
                    raise FetchError(
                        f"MISP kept saying more {self.scope} follow at timestamps {lo}..{hi} on page {page} of a "
                        f"re-read of {pages} pages of {self.limit} (last: {len(result.items)} rows, "
                        f"X-Result-Count {result.result_count}); giving up"
                    )
                page += 1
            if not found:
                return
            log.info("re-scan of timestamps %d..%d found %d rows that offset paging skipped", lo, hi, found)
        log.warning(
            "timestamps %d..%d kept changing during %d re-scans; rows modified there again are read by the next poll",
            lo, hi, MAX_RESCANS,
        )


def row_key(row: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """``(uuid, timestamp)`` of an attribute or event; ``None`` where unusable."""
    uuid = row.get("uuid")
    return (uuid if isinstance(uuid, str) and uuid else None), record_timestamp(row)
