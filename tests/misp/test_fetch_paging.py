"""The window-paging algorithm (misp_paging.WindowReader) against a tiny SQL-like model.

``TableModel`` reproduces exactly what the algorithm depends on in MISP's
``MispAttribute::__iteratedFetch``: rows ordered by (timestamp, id), cut by
OFFSET/LIMIT, post-filtered after the cut, ``X-Result-Count`` = SQL rows of
the page + 1 when the post-filtered page is full or empty, and
``X-Skipped-Elements-Count``. It lets a test modify a row between two
requests at an exact point, which is how offset paging loses rows. The same
scenarios run against the full simulator in test_fetch_simulator.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from misp_ti.errors import FetchError
from misp_ti.misp import paging
from misp_ti.misp.client import SearchResult
from misp_ti.misp.paging import WindowReader, row_key, sql_page_full


@dataclass
class TableModel:
    rows: list[dict[str, Any]] = field(default_factory=list)
    hidden: Callable[[dict[str, Any]], bool] = lambda row: False
    before_request: Callable[[int, Mapping[str, Any]], None] = lambda n, body: None
    semantics: str = "2.4.196"  # or "2.4.165" (cumulative count) or "total"
    requests: int = 0
    probes: int = 0
    _next_id: int = 1

    def add(self, uuid: str, ts: int, **extra: Any) -> None:
        self.rows.append({"id": self._next_id, "uuid": uuid, "timestamp": str(ts), **extra})
        self._next_id += 1

    def modify(self, uuid: str, ts: int) -> None:
        for row in self.rows:
            if row["uuid"] == uuid:
                row["timestamp"] = str(ts)

    def remove(self, uuid: str) -> None:
        """A hard delete of an object's or an event's rows: gone, nothing stamped."""
        self.rows = [row for row in self.rows if row["uuid"] != uuid]

    def changed_since(self, since: int) -> bool:
        """The change probe as MISP answers it: is any row stamped at or after ``since``?"""
        self.requests += 1
        self.probes += 1
        return any(int(r["timestamp"]) >= since for r in self.rows)

    def search(self, body: Mapping[str, Any]) -> SearchResult:
        self.requests += 1
        self.before_request(self.requests, body)
        lo, hi = body["timestamp"]
        limit, page = body["limit"], body["page"]
        match = sorted((r for r in self.rows if lo <= int(r["timestamp"]) <= hi), key=lambda r: (int(r["timestamp"]), r["id"]))
        sql = match[limit * (page - 1): limit * page]
        visible = [dict(r) for r in sql if not self.hidden(r)]
        inc = 1 if len(visible) in (0, limit) else 0
        if self.semantics == "total":
            count = len(match)
        elif self.semantics == "2.4.165":
            count = limit * (page - 1) + len(sql) + inc
        else:
            count = len(sql) + inc
        skipped = len(sql) - len(visible) if self.semantics == "2.4.196" else None
        return SearchResult(visible, count, skipped, 1)


def read_all(
    model: TableModel, *, start: int = 0, end: int = 10_000, limit: int = 5, resume: int | None = None,
    probe: bool = False, exact: int | None = None,
) -> list[tuple[str, int]]:
    """``probe``: fast paging; ``exact``: offset runs re-scanned ``exact`` rows a request."""
    reader = WindowReader(
        scope="attributes", search=model.search, body={}, start=start, end=end, limit=limit, key=row_key,
        post_filtered=True, changed_since=model.changed_since if probe else None,
        offset_runs=exact is not None, rescan_limit=exact,
    )
    return [row_key(r) for chunk in reader.chunks(resume) for r in chunk.rows]


def latest(delivered: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for uuid, ts in delivered:
        out[uuid] = max(ts, out.get(uuid, -1))
    return out


def test_every_row_once_over_many_pages() -> None:
    model = TableModel()
    for i in range(53):
        model.add(f"u{i}", 100 + i // 3)  # three rows per second: pages cut inside seconds
    delivered = read_all(model)
    assert sorted(delivered) == sorted((r["uuid"], int(r["timestamp"])) for r in model.rows)
    assert len(delivered) == 53


def test_crowded_second_larger_than_a_page() -> None:
    model = TableModel()
    for i in range(23):
        model.add(f"same{i}", 500)
    for i in range(7):
        model.add(f"later{i}", 600 + i)
    delivered = read_all(model)
    assert len(delivered) == 30 and len(set(delivered)) == 30


@pytest.mark.parametrize("semantics", ["2.4.196", "2.4.165", "total"])
def test_post_filtered_short_and_empty_pages_are_not_the_end(semantics: str) -> None:
    model = TableModel(hidden=lambda r: 10 <= int(r["uuid"][1:]) < 27, semantics=semantics)
    for i in range(40):
        model.add(f"u{i}", 100 + i)
    delivered = read_all(model)
    assert sorted(u for u, _ in delivered) == sorted(f"u{i}" for i in range(40) if not 10 <= i < 27)


def test_modification_during_keyset_paging_loses_nothing_and_keeps_newest() -> None:
    model = TableModel()
    for i in range(30):
        model.add(f"u{i}", 100 + i)

    def modify_after_first_page(n: int, body: Mapping[str, Any]) -> None:
        if n == 2:
            model.modify("u1", 9_000)  # already delivered, moves inside the window
            model.modify("u20", 20_000)  # not delivered yet, moves out of the window

    model.before_request = modify_after_first_page
    delivered = read_all(model)
    newest = latest(delivered)
    assert newest["u1"] == 9_000
    assert "u20" not in newest  # the next poll reads it (its timestamp is past this window)
    assert set(newest) == {f"u{i}" for i in range(30)} - {"u20"}
    assert len(delivered) == len(set(delivered))


def _crowded_second_with_a_late_edit() -> tuple[list[tuple[str, int]], int]:
    """20 rows in one second, page size 5: offset paging reads that second's
    pages 2 and 3; between them c00 (already read) leaves the window, every
    later row shifts left by one, and c10 falls between pages 3 and 4.
    Returns what was delivered and how many re-scans the reader made."""
    model = TableModel()
    for i in range(20):
        model.add(f"c{i:02d}", 500)
    model.add("after", 501)

    def shift(n: int, body: Mapping[str, Any]) -> None:
        # request 1 moves the keyset to 500, 2 and 3 are offset pages 1 and 2 of
        # that second: the edit lands after offset paging has begun
        if n == 4:
            model.modify("c00", 99_999)

    model.before_request = shift
    reader = WindowReader(scope="attributes", search=model.search, body={}, start=0, end=10_000, limit=5, key=row_key, post_filtered=True)
    delivered, rescans = [], 0
    for chunk in reader.chunks():
        delivered += [row_key(r) for r in chunk.rows]
        rescans = chunk.stats["rescans"]
    return delivered, rescans


def test_modification_inside_a_crowded_second_is_repaired_by_the_rescan() -> None:
    delivered, rescans = _crowded_second_with_a_late_edit()
    assert {u for u, _ in delivered} == {f"c{i:02d}" for i in range(20)} | {"after"}
    assert len(delivered) == len(set(delivered))
    assert rescans == 2  # the one that found c10, then one that found nothing more


def test_the_crowded_second_scenario_loses_a_row_without_the_rescan(monkeypatch: pytest.MonkeyPatch) -> None:
    # the test above proves the re-scan only if its scenario really skips a row
    monkeypatch.setattr(paging, "MAX_RESCANS", 0)
    delivered, _ = _crowded_second_with_a_late_edit()
    assert "c10" not in {u for u, _ in delivered}


def crowded_table() -> TableModel:
    model = TableModel()
    for i in range(20):
        model.add(f"c{i:02d}", 500)
    for i in range(12):
        model.add(f"n{i:02d}", 501 + i // 6)  # six rows per second: keyset steps would re-read most of a page
    return model


def test_offset_run_without_changes_costs_one_probe_instead_of_a_rescan() -> None:
    plain, probed = crowded_table(), crowded_table()
    assert sorted(read_all(plain)) == sorted(read_all(probed, probe=True)) == sorted(
        (r["uuid"], int(r["timestamp"])) for r in plain.rows
    )
    assert probed.probes == 1
    assert probed.requests == 32 // 5 + 1 + 1  # every page once, the short end, the probe
    assert plain.requests > probed.requests + 5  # the re-scan read the crowded second again


@pytest.mark.parametrize("moved_to", [9_800, 99_999], ids=["inside-window", "past-window-end"])
def test_edit_during_an_offset_run_is_seen_by_the_probe_and_repaired(moved_to: int) -> None:
    model = crowded_table()

    def shift(n: int, body: Mapping[str, Any]) -> None:
        if n == 2:  # page 1 (c00..c04) was read; c00 is edited (MISP stamps it "now")
            model.modify("c00", moved_to)

    model.before_request = shift
    delivered = read_all(model, probe=True)
    assert {u for u, _ in delivered} == {r["uuid"] for r in model.rows}
    assert len(delivered) == len(set(delivered))
    assert latest(delivered)["c00"] == (moved_to if moved_to <= 10_000 else 500)
    assert model.probes == 1


def test_exact_offset_run_is_verified_by_one_wide_rescan() -> None:
    model = crowded_table()
    limits: list[int] = []
    model.before_request = lambda n, body: limits.append(body["limit"])
    delivered = read_all(model, exact=50)
    assert sorted(delivered) == sorted((r["uuid"], int(r["timestamp"])) for r in model.rows)
    assert model.probes == 0
    # the 32 rows in pages of 5 (7 requests, the short 7th shows the end), then
    # the run's span once more in one request of 50 rows
    assert limits == [5] * 7 + [50]


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "fast"])
def test_hard_delete_during_an_offset_run(exact: bool) -> None:
    model = crowded_table()

    def delete(n: int, body: Mapping[str, Any]) -> None:
        if n == 3:  # pages 1 and 2 (c00..c09) were read; c00 vanishes, c10 moves onto page 2
            model.remove("c00")

    model.before_request = delete
    delivered = read_all(model, exact=50) if exact else read_all(model, probe=True)
    survivors = {r["uuid"] for r in model.rows}
    assert len(delivered) == len(set(delivered))
    if exact:
        assert survivors <= {u for u, _ in delivered}
    else:  # nothing was stamped: the probe says "no change", c10 is skipped for good
        assert survivors - {u for u, _ in delivered} == {"c10"}


@pytest.mark.parametrize("size", [1, 40])
def test_exact_rescan_pages_a_span_wider_than_its_limit(size: int) -> None:
    """A span of more rows than ``rescan_limit`` is re-read page by page (never
    narrower than the page size), each row delivered once."""
    model = TableModel()
    for i in range(100):
        model.add(f"c{i:03d}", 500)
    model.add("after", 600)
    limits: list[int] = []
    model.before_request = lambda n, body: limits.append(body["limit"])
    delivered = read_all(model, exact=size)
    assert sorted(delivered) == sorted((r["uuid"], int(r["timestamp"])) for r in model.rows)
    # the run: 21 pages of 5 (the 21st holds "after" and ends the window);
    # then its span, 101 rows, again in pages of max(size, page size)
    wide = max(size, 5)
    assert limits == [5] * 21 + [wide] * math.ceil(101 / wide)


def test_after_a_probe_says_changed_the_window_is_read_without_runs() -> None:
    model = TableModel()
    for second in range(4):  # four crowded seconds, each its own offset episode
        for i in range(12):
            model.add(f"s{second}-{i:02d}", 500 + 200 * second)
        for i in range(90):  # one row a second: longer than an offset run (16 pages)
            model.add(f"t{second}-{i:02d}", 501 + 200 * second + i)
    model.add("recent", 9_900)  # stamped within CLOCK_SKEW of the window end: every probe says "yes"
    delivered = read_all(model, probe=True)
    assert sorted(delivered) == sorted((r["uuid"], int(r["timestamp"])) for r in model.rows)
    assert model.probes == 1  # asked once; then every episode was re-scanned without asking


def test_resume_from_a_checkpoint_delivers_the_rest() -> None:
    model = TableModel()
    for i in range(40):
        model.add(f"u{i}", 100 + i // 4)
    reader = WindowReader(scope="attributes", search=model.search, body={}, start=0, end=10_000, limit=6, key=row_key)
    first: list[tuple[str, int]] = []
    safe = None
    for n, chunk in enumerate(reader.chunks()):
        first += [row_key(r) for r in chunk.rows]
        safe = chunk.safe
        if n == 2:
            break  # crash: the engine kept this checkpoint
    rest = read_all(model, limit=6, resume=safe)
    assert {u for u, _ in first + rest} == {f"u{i}" for i in range(40)}


def test_events_scope_uses_the_total_count() -> None:
    result = SearchResult([{"uuid": "e", "timestamp": "1"}] * 3, 25, None, 1)
    assert sql_page_full("events", 2, 10, result) is True
    result = SearchResult([{"uuid": "e", "timestamp": "1"}] * 3, 23, None, 1)
    assert sql_page_full("events", 3, 10, result) is False


@given(
    n=st.integers(0, 60),
    spread=st.integers(1, 20),
    limit=st.integers(1, 9),
    hidden=st.sets(st.integers(0, 59)),
    semantics=st.sampled_from(["2.4.196", "2.4.165", "total"]),
    probe=st.booleans(),
)
def test_property_every_visible_row_exactly_once(
    n: int, spread: int, limit: int, hidden: set[int], semantics: str, probe: bool
) -> None:
    model = TableModel(hidden=lambda r: int(r["uuid"][1:]) in hidden, semantics=semantics)
    for i in range(n):
        model.add(f"u{i}", 100 + i // spread)
    delivered = read_all(model, limit=limit, probe=probe)
    assert sorted(delivered) == sorted((f"u{i}", 100 + i // spread) for i in range(n) if i not in hidden)


def test_malformed_rows_are_delivered_and_do_not_steer_the_keyset() -> None:
    from misp_ti.misp.client import SearchResult

    good = [{"uuid": f"u{i}", "timestamp": str(100 + i), "id": str(i)} for i in range(3)]
    bad = [{"value": "no uuid", "timestamp": "101"}, {"uuid": "x", "timestamp": "later"}]
    calls = []

    def search(body: dict) -> SearchResult:
        calls.append(body)
        lo, hi = body["timestamp"]
        rows = [r for r in good if lo <= int(r["timestamp"]) <= hi] + (bad if body["page"] == 1 and len(calls) == 1 else [])
        return SearchResult(rows, len(rows), None, 1)

    reader = WindowReader(scope="attributes", search=search, body={}, start=0, end=1000, limit=50, key=row_key)
    delivered = [r for chunk in reader.chunks() for r in chunk.rows]
    assert bad[0] in delivered and bad[1] in delivered
    assert sorted(r["uuid"] for r in delivered if r in good) == ["u0", "u1", "u2"]


def test_old_count_semantics_stay_known_after_a_keyset_step() -> None:
    """2.4.165-2.4.194 counts (``limit * (page - 1)`` + the page's rows) show
    themselves only on page 2; once seen, the next query's pages are judged
    with them too, and no needless page is asked for."""
    model = TableModel(semantics="2.4.165", hidden=lambda r: 5 <= int(r["uuid"][1:]) <= 9)
    for i in range(8):
        model.add(f"u{i}", 100 + i // 3)
    delivered = read_all(model)
    assert sorted(u for u, _ in delivered) == [f"u{i}" for i in range(5)]
    assert model.requests == 6


def longest_run(bodies: list[Mapping[str, Any]]) -> int:
    """The most consecutive page requests at one lower bound (the pages of one offset run)."""
    best = streak = 0
    previous = None
    for body in bodies:
        streak = streak + 1 if body["timestamp"][0] == previous else 1
        previous = body["timestamp"][0]
        best = max(best, streak)
    return best


@pytest.mark.parametrize(
    ("run_rows", "pages", "requests"), [(paging.OFFSET_RUN_ROWS, paging.OFFSET_RUN_MAX, 125), (100, 20, 140), (8, 3, 241)]
)
def test_an_offset_run_ends_at_its_page_and_row_limits(
    monkeypatch: pytest.MonkeyPatch, run_rows: int, pages: int, requests: int
) -> None:
    """Ten rows a second at page size 5: every page ends in a crowded tail, so an
    offset run goes on until OFFSET_RUN_MAX pages or OFFSET_RUN_ROWS rows (a
    checkpoint moves only between runs). A row budget under two pages allows
    no run: only the one-second episodes (three pages at one bound) remain."""
    monkeypatch.setattr(paging, "OFFSET_RUN_ROWS", run_rows)
    model = TableModel()
    for i in range(600):
        model.add(f"u{i:03d}", 100 + i // 10)
    bodies: list[Mapping[str, Any]] = []
    model.before_request = lambda n, body: bodies.append(dict(body))
    delivered = read_all(model, probe=True)
    assert sorted(delivered) == sorted((r["uuid"], int(r["timestamp"])) for r in model.rows)
    assert longest_run(bodies) == pages
    assert model.requests == requests  # pages and probes, as measured for this table


def test_no_offset_run_where_the_keyset_step_rereads_a_quarter_of_the_page_or_less() -> None:
    """Two rows a second at page size 8: a keyset step re-reads two rows (a
    quarter), cheaper than an episode to verify: the keyset moves every page."""
    model = TableModel()
    for i in range(80):
        model.add(f"u{i:02d}", 100 + i // 2)
    bodies: list[Mapping[str, Any]] = []
    model.before_request = lambda n, body: bodies.append(dict(body))
    delivered = read_all(model, limit=8, probe=True)
    assert sorted(delivered) == sorted((r["uuid"], int(r["timestamp"])) for r in model.rows)
    assert longest_run(bodies) == 1 and model.probes == 0


def test_the_duplicate_memory_holds_only_rows_at_the_safe_point() -> None:
    """Memory stays flat (module doc): delivered rows below the checkpoint are forgotten."""
    model = TableModel()
    for i in range(300):
        model.add(f"u{i}", 100 + i)
    reader = WindowReader(scope="attributes", search=model.search, body={}, start=0, end=10_000, limit=5, key=row_key)
    sizes = [len(reader._seen) for _ in reader.chunks()]
    assert len(sizes) > 50 and max(sizes) <= 5


@pytest.mark.parametrize("mode", ["fast", "exact", "plain"])
def test_reader_stats_count_every_request_probes_and_rescans(mode: str) -> None:
    model = crowded_table()
    reader = WindowReader(
        scope="attributes", search=model.search, body={}, start=0, end=10_000, limit=5, key=row_key,
        changed_since=model.changed_since if mode == "fast" else None,
        offset_runs=mode == "exact", rescan_limit=50 if mode == "exact" else None,
    )
    chunks = list(reader.chunks())
    stats = chunks[-1].stats
    assert stats["requests"] == model.requests and stats["probes"] == model.probes == (mode == "fast")
    # plain: each of the three offset episodes is re-read; exact: one run, one re-read
    assert stats["rescans"] == {"fast": 0, "exact": 1, "plain": 3}[mode]
    assert stats["rows"] == 32 == sum(len(c.rows) for c in chunks)


def test_a_rescan_that_never_ends_fails_the_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that calls every re-scan page full (the same rows again) is given up
    once the re-read passes what the span held plus MAX_BLIND_PAGES pages."""
    monkeypatch.setattr(paging, "MAX_BLIND_PAGES", 3)
    model = crowded_table()
    rescans: list[int] = []

    def search(body: Mapping[str, Any]) -> SearchResult:
        result = model.search(body)
        if body["limit"] != 50:
            return result
        rescans.append(body["page"])
        return SearchResult(model.rows[:10], 51, 0, 1)  # "full", forever

    reader = WindowReader(scope="attributes", search=search, body={}, start=0, end=10_000, limit=5, key=row_key,
                          offset_runs=True, rescan_limit=50)
    with pytest.raises(FetchError, match="re-read of 7 pages of 5"):
        list(reader.chunks())
    assert rescans == [1, 2, 3, 4]  # ceil(7 pages x 5 rows / 50) + 3
