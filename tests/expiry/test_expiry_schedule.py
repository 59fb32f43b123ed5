"""The refetch schedule (``Engine.refetch_due`` + ``StateStore.finish_cycle``)
over a simulated week of polls: on time, exactly once per interval, persisted
across restarts, never re-firing in a loop (the reference's bug)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.fakeplugins import ListSource, make_attributes
from misp_ti import hookimpl
from misp_ti.engine import Engine
from misp_ti.errors import PluginError
from misp_ti.model import Expiry, ExpiryPolicy
from misp_ti.sinks.sqlite import EmbeddedStore
from misp_ti.state import StateStore
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


class SixHourly:
    """A plugin policy that declares its own refetch period."""

    MISP_TI_EXPIRY_POLICIES = (ExpiryPolicy("six-hourly", refetch_every=timedelta(hours=6)), "never-again")

    @hookimpl
    def compute_expiry(self, ctx: Any) -> Expiry | None:
        if ctx.policy not in ("six-hourly", "never-again"):
            return None
        return Expiry(False, ctx.now + timedelta(hours=7), ctx.policy)


def test_a_plugin_policy_gets_refetch_cycles_at_the_period_it_declares(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(5, start_ts=int(START.timestamp()) - 3600), clock)
    with list_engine(source, SixHourly(), clock=clock, expiry={"policy": "six-hourly"}) as engine:
        assert engine.refetch_interval == timedelta(hours=6)
        poll_until(engine, clock, START + timedelta(days=2), timedelta(minutes=10))
    assert source.rewinds == [START + n * timedelta(hours=6) for n in range(8)]
    assert sum(source.refetch_flags) == 8


def test_expiry_refetch_interval_overrides_the_declared_period(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(5, start_ts=int(START.timestamp()) - 3600), clock)
    with list_engine(source, SixHourly(), clock=clock, expiry={"policy": "six-hourly", "refetch_interval": "2h"}) as engine:
        poll_until(engine, clock, START + timedelta(hours=12), timedelta(minutes=10))
    assert source.rewinds == [START + n * timedelta(hours=2) for n in range(6)]


def test_a_policy_declared_by_plain_name_never_refetches(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(5, start_ts=int(START.timestamp()) - 3600), clock)
    with list_engine(source, SixHourly(), clock=clock, expiry={"policy": "never-again"}) as engine:
        assert engine.refetch_interval is None
        poll_until(engine, clock, START + timedelta(days=2), timedelta(hours=1))
    assert source.rewinds == [START]
    assert not any(source.refetch_flags)


@pytest.mark.parametrize(("policy", "period"), [
    ("refetch", timedelta(hours=24)), ("decay-model", timedelta(days=7)), ("duration", None),
])
def test_the_built_in_policies_declare_their_periods(tmp_path: Path, policy: str, period: timedelta | None, list_engine: Callable[..., Engine]) -> None:
    source = RecordingSource([], ManualClock(START))
    with list_engine(source, clock=ManualClock(START), expiry={"policy": policy}) as engine:
        assert engine.refetch_interval == period


def test_a_declaration_that_is_neither_a_name_nor_a_spec_is_a_clear_error(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    class Broken:
        MISP_TI_EXPIRY_POLICIES = (timedelta(hours=6),)

    source = RecordingSource([], ManualClock(START))
    with pytest.raises(PluginError, match=r"MISP_TI_EXPIRY_POLICIES holds datetime.timedelta\(seconds=21600\); expected a name or a misp_ti.model.ExpiryPolicy"):
        list_engine(source, Broken(), clock=ManualClock(START), expiry={"policy": "refetch"})


def test_a_refetch_recorded_by_an_older_version_is_still_read(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    # the schedule row as earlier versions wrote it (its name spelled in their SQL)
    StateStore(tmp_path / "store.db").close()  # the schema, as any version creates it
    earlier = START - timedelta(hours=20)
    with sqlite3.connect(tmp_path / "store.db") as conn:
        conn.execute(
            "INSERT OR REPLACE INTO misp_ti_schedule (stream, name, last_at) VALUES (?, 'refetch', ?)",
            ("threat_attributes", int(earlier.timestamp())),
        )
        conn.execute(
            "INSERT INTO misp_ti_cursor (stream, cursor, updated_at) VALUES (?, ?, ?)",
            ("threat_attributes", '{"offset": 0}', int(earlier.timestamp())),
        )
    conn.close()
    clock = ManualClock(START)
    source = RecordingSource(make_attributes(5, start_ts=int(START.timestamp()) - 3600), clock)
    with list_engine(source, clock=clock, expiry={"policy": "refetch"}) as engine:
        poll_until(engine, clock, START + timedelta(hours=6), timedelta(minutes=10))
    assert source.rewinds == [earlier + timedelta(days=1)]
