"""The refetch schedule (``Engine.refetch_due`` + ``StateStore.finish_cycle``)
over a simulated week of polls: on time, exactly once per interval, persisted
across restarts, never re-firing in a loop (the reference's bug)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.fakeplugins import ListSource, make_attributes
from misp_ti import hookimpl
from misp_ti.engine import Engine
from misp_ti.sinks.sqlite import EmbeddedStore
from misp_ti.testing.clock import ManualClock

START = datetime(2026, 1, 5, tzinfo=UTC)
WEEK = timedelta(days=7)


class RecordingSource(ListSource):
    """A fetch that remembers when it was asked to start over (``cursor=None``)."""

    def __init__(self, records: list[dict[str, Any]], clock: ManualClock):
        super().__init__(records, page_size=50)
        self.clock = clock
        self.rewinds: list[datetime] = []
        self.refetch_flags: list[bool] = []

    @hookimpl
    def fetch(self, stream: str, cursor: Any, ctx: Any) -> Any:
        if stream != "threat_attributes":
            return None
        self.refetch_flags.append(ctx.refetch)
        if cursor is None:
            self.rewinds.append(ctx.now)
        return self._pages(int((cursor or {}).get("offset", 0)))


#: the policy under test unless a test says otherwise
REFETCH = {"policy": "refetch"}


def poll_until(engine: Engine, clock: ManualClock, end: datetime, step: timedelta) -> None:
    while clock.now() < end:
        engine.run_once()
        clock.advance(step)


@pytest.mark.parametrize("poll", [timedelta(minutes=10), timedelta(minutes=7), timedelta(hours=5)])
def test_refetch_fires_once_per_interval_over_a_week(poll: timedelta, list_engine: Callable[..., Engine]) -> None:
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(30, start_ts=int(START.timestamp()) - 3600), clock)
    with list_engine(source, clock=clock, expiry=REFETCH) as engine:
        poll_until(engine, clock, START + WEEK, poll)
    rewinds = source.rewinds
    assert len(rewinds) == 7, rewinds
    assert rewinds[0] == START
    for earlier, later in zip(rewinds, rewinds[1:], strict=False):
        # on time: at the first poll at or after the due moment, never earlier
        assert timedelta(days=1) <= later - earlier < timedelta(days=1) + poll
    # each rewind was a refetch cycle, and only those were
    assert sum(source.refetch_flags) == 7


def test_schedule_survives_a_restart_and_does_not_refire(list_engine: Callable[..., Engine]) -> None:
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(5, start_ts=int(START.timestamp()) - 3600), clock)
    with list_engine(source, clock=clock, expiry=REFETCH) as engine:
        poll_until(engine, clock, START + timedelta(days=1, hours=6), timedelta(minutes=10))
    assert source.rewinds == [START, START + timedelta(days=1)]
    # restart: a new engine on the same state file, polling at once and often
    with list_engine(source, clock=clock, expiry=REFETCH) as engine:
        for _ in range(5):
            engine.run_once()
        assert source.rewinds == [START, START + timedelta(days=1)]
        poll_until(engine, clock, START + timedelta(days=3, minutes=5), timedelta(minutes=10))
    assert source.rewinds == [START + timedelta(days=n) for n in range(4)]


def test_an_engine_down_for_days_refetches_once_on_return(list_engine: Callable[..., Engine]) -> None:
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(5, start_ts=int(START.timestamp()) - 3600), clock)
    with list_engine(source, clock=clock, expiry=REFETCH) as engine:
        engine.run_once()
    clock.advance(timedelta(days=4, hours=3))
    with list_engine(source, clock=clock, expiry=REFETCH) as engine:
        for _ in range(3):
            engine.run_once()
            clock.advance(timedelta(minutes=10))
    assert source.rewinds == [START, START + timedelta(days=4, hours=3)]


def test_an_interrupted_refetch_is_resumed_as_a_refetch_and_counted_once(list_engine: Callable[..., Engine]) -> None:
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(120, start_ts=int(START.timestamp()) - 3600), clock)
    source.fail_at_page = 2
    with list_engine(source, clock=clock, expiry=REFETCH) as engine:
        with pytest.raises(RuntimeError, match="simulated MISP failure"):
            engine.run_once()
        source.fail_at_page = None
        clock.advance(timedelta(minutes=10))
        [resumed] = engine.run_once()
        assert resumed.resumed and resumed.refetch and resumed.now == START
        assert engine.state.last_run("threat_attributes", "refetch") == START
        clock.advance(timedelta(minutes=10))
        [normal] = engine.run_once()
        assert not normal.refetch
    assert source.rewinds == [START]


def test_duration_policy_never_rewinds(list_engine: Callable[..., Engine]) -> None:
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(5, start_ts=int(START.timestamp()) - 3600), clock)
    with list_engine(source, clock=clock, expiry={"policy": "duration"}) as engine:
        poll_until(engine, clock, START + timedelta(days=3), timedelta(hours=1))
    assert source.rewinds == [START]  # the first run starts from initial_interval, once
    assert source.refetch_flags == [False] * len(source.refetch_flags)


def test_refetched_attributes_stay_active_between_refetches(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    # attributes that no poll but the refetch sees: under `refetch` they must not
    # blink out of the latest view while waiting for the next refetch
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(10, start_ts=int(START.timestamp()) - 3600), clock)
    store = EmbeddedStore(tmp_path / "store.db")
    with list_engine(source, clock=clock, expiry=REFETCH) as engine:
        while clock.now() < START + timedelta(days=3):
            engine.run_once()
            assert len(store.active_keys(now=clock.now())) == 10, clock.now()
            clock.advance(timedelta(minutes=7))
            assert len(store.active_keys(now=clock.now())) == 10, clock.now()
    store.close()
