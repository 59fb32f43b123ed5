"""Engine behaviour: batching, cursor discipline, resume, sinks, bad records."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.fakeplugins import ListSource, make_attributes
from misp_ti import hookimpl
from misp_ti.config import build_config
from misp_ti.engine import Engine
from misp_ti.errors import ConfigError, SinkError
from misp_ti.model import SinkReport
from misp_ti.sinks.sqlite import EmbeddedStore

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


RECENT = int(NOW.timestamp()) - 3600


def store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "store.db")


class FlakySink:
    """A sink that refuses the batches whose numbers are in ``fail_on``."""

    MISP_TI_SINKS = ("flaky",)

    def __init__(self, fail_on: set[int]):
        self.fail_on = fail_on
        self.calls = 0
        self.received: list[str] = []

    @hookimpl
    def emit(self, stream: str, docs: list[dict[str, Any]], ctx: Any) -> SinkReport | None:
        if not ctx.sink_enabled("flaky"):
            return None
        self.calls += 1
        if self.calls in self.fail_on:
            raise SinkError(f"flaky sink refuses batch {self.calls}")
        self.received.extend(d["_id"] for d in docs)
        return SinkReport("flaky", delivered=len(docs))


def test_cycle_delivers_every_page_and_saves_the_cursor(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(25, start_ts=RECENT), page_size=10)
    with list_engine(source, clock=NOW) as engine:
        [result] = engine.run_once()
        assert result.completed and result.pages == 3 and result.documents == 25
        assert engine.state.get_cursor("threat_attributes") == {"offset": 25}
        assert engine.state.in_progress("threat_attributes") is None
    keys = store(tmp_path).active_keys(now=NOW)
    assert keys == {("ti_misp.threat_attributes", f"a-{i:08d}") for i in range(25)}


def test_next_cycle_starts_at_the_saved_cursor(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    records = make_attributes(12, start_ts=RECENT)
    source = ListSource(records, page_size=5)
    with list_engine(source, clock=NOW) as engine:
        engine.run_once()
        source.fetched.clear()
        records.extend(make_attributes(3, start_ts=RECENT, prefix="b"))
        [result] = engine.run_once()
    assert source.fetched == [(12, 3)]
    assert result.documents == 3
    assert len(store(tmp_path).active_keys(now=NOW)) == 15


def test_refused_batch_keeps_the_cursor_and_the_next_run_resumes(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(30, start_ts=RECENT), page_size=10)
    flaky = FlakySink(fail_on={2})
    with list_engine(source, flaky, clock=NOW, output={"sinks": ["sqlite", "flaky"]}) as engine:
        with pytest.raises(SinkError, match="refuses batch 2"):
            engine.run_once()
        # page 1 was confirmed by both sinks; page 2 was not
        pending = engine.state.in_progress("threat_attributes")
        assert pending is not None and pending.checkpoint == {"offset": 10}
        assert engine.state.get_cursor("threat_attributes") is None
        [result] = engine.run_once()
        assert result.resumed and result.completed
        assert engine.state.get_cursor("threat_attributes") == {"offset": 30}
    # sqlite saw page 2 twice (it accepted it before flaky refused): no duplicate rows
    db = store(tmp_path)
    assert db.conn.execute("SELECT count(*) FROM source").fetchone()[0] == 30
    assert len(db.active_keys(now=NOW)) == 30
    assert len(set(flaky.received)) == 30


def test_fetch_failure_mid_poll_loses_nothing(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(30, start_ts=RECENT), page_size=10, fail_at_page=3)
    with list_engine(source, clock=NOW) as engine:
        with pytest.raises(RuntimeError, match="page 3"):
            engine.run_once()
        assert engine.state.in_progress("threat_attributes").checkpoint == {"offset": 20}
        source.fail_at_page = None
        engine.run_once()
    assert len(store(tmp_path).active_keys(now=NOW)) == 30


def test_replaying_a_cycle_creates_no_duplicate(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(20, start_ts=RECENT), page_size=7)
    with list_engine(source, clock=NOW) as engine:
        engine.run_once()
        before = store(tmp_path).latest_snapshot()
        engine.state.reset("threat_attributes")
        engine.run_once()
    db = store(tmp_path)
    assert db.conn.execute("SELECT count(*) FROM source").fetchone()[0] == 20
    assert db.latest_snapshot() == before


def test_stop_request_finishes_the_batch_and_resume_keeps_the_window(list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(30, start_ts=RECENT), page_size=10)
    clock_values = iter([NOW, NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=1)])

    class StopAfterFirstPage:
        engine: Engine

        def cycle_started(self, stream: str, **kw: Any) -> None:
            pass

        def page_done(self, stream: str, **kw: Any) -> None:
            self.engine.request_stop()

        def cycle_finished(self, stream: str, result: Any) -> None:
            pass

    progress = StopAfterFirstPage()
    engine = list_engine(source, clock=lambda: next(clock_values))
    engine.progress = progress
    progress.engine = engine
    [result] = engine.run_once()
    assert not result.completed and result.pages == 1
    assert engine.state.in_progress("threat_attributes").checkpoint == {"offset": 10}
    engine.close()

    # a new process: the interrupted cycle resumes with its original time
    engine = list_engine(source, clock=lambda: next(clock_values))
    [result] = engine.run_once()
    assert result.resumed and result.completed and result.now == NOW
    assert result.documents == 20
    engine.close()


def test_bad_record_becomes_a_counted_pipeline_error(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    records = make_attributes(5, start_ts=RECENT)
    records.insert(2, {"type": "ip-dst", "value": "no uuid here", "timestamp": "1"})
    source = ListSource(records, page_size=10)
    with list_engine(source, clock=NOW) as engine:
        [result] = engine.run_once()
    assert result.pipeline_errors == 1 and result.documents == 6
    db = store(tmp_path)
    assert db.counts(now=NOW)["pipeline_errors"] == 1
    assert len(db.active_keys(now=NOW)) == 5


def test_engine_error_documents_have_the_ecs_shape_and_a_stable_id(list_engine: Callable[..., Engine]) -> None:
    from misp_ti.ecs import error_document, is_pipeline_error, options_for

    bad = {"type": "ip-dst", "value": "no uuid here", "timestamp": "1"}
    with list_engine(ListSource([]), clock=NOW, output={"elasticsearch": {"namespace": "prod"}}) as engine:
        ctx = engine.context(now=NOW, dry_run=True)
        [doc] = engine.process("threat_attributes", [bad], ctx)
        # a replay (a new context for the same cycle) yields the same document
        [again] = engine.process("threat_attributes", [bad], engine.context(now=NOW, dry_run=True))
    assert is_pipeline_error(doc)
    assert doc == error_document(bad, "ValueError: record has no uuid", options_for("threat_attributes", ctx))
    assert doc["ecs"]["version"] and doc["event"]["ingested"] == doc["@timestamp"] == "2026-11-01T12:00:00.000Z"
    assert doc["data_stream"] == {"type": "logs", "dataset": "ti_misp.threat_attributes", "namespace": "prod"}
    assert again == doc


def test_a_failing_expiry_policy_yields_the_same_error_document_shape(list_engine: Callable[..., Engine]) -> None:
    from misp_ti.ecs import is_pipeline_error

    class BrokenPolicy:
        MISP_TI_EXPIRY_POLICIES = ("broken",)

        @hookimpl
        def compute_expiry(self, stream: str, record: Any, doc: Any, ctx: Any) -> Any:
            raise RuntimeError("no answer")

    [record] = make_attributes(1, start_ts=RECENT)
    with list_engine(ListSource([]), BrokenPolicy(), clock=NOW, expiry={"policy": "broken"}) as engine:
        [doc] = engine.process("threat_attributes", [record], engine.context(now=NOW, dry_run=True))
    assert is_pipeline_error(doc) and doc["error"]["message"] == "RuntimeError: no answer"
    assert {"ecs", "data_stream", "tags"} <= doc.keys() and doc["event"]["ingested"] == "2026-11-01T12:00:00.000Z"


def test_batches_are_cut_to_batch_size(list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(10, start_ts=RECENT), page_size=10)
    counter = FlakySink(fail_on=set())
    with list_engine(source, counter, clock=NOW, output={"sinks": ["sqlite", "flaky"], "batch_size": 4}) as engine:
        engine.run_once()
    assert counter.calls == 3 and len(counter.received) == 10


def test_unknown_sink_and_policy_fail_at_start_up(list_engine: Callable[..., Engine]) -> None:
    source = ListSource([], page_size=10)
    with pytest.raises(ConfigError, match="output.sinks: unknown sink 'nope'"):
        list_engine(source, clock=NOW, output={"sinks": ["nope"]})
    config = build_config({"expiry": {"policy": "sideways"}, "plugins": {"entrypoints": False}})
    with pytest.raises(ConfigError, match="expiry.policy: unknown policy 'sideways'"):
        Engine(config, extra_plugins=[source])


def test_duration_policy_sets_decayed_at_and_folds_it_into_the_id(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(1, start_ts=int(NOW.timestamp()) - 100 * 86400), page_size=10)
    with list_engine(source, clock=NOW) as engine:
        engine.run_once()
    [(doc_id, decayed, decayed_at)] = store(tmp_path).latest_snapshot().values()
    # 100 days old with the default 90 d validity: expired 10 days ago
    assert decayed == 1
    assert decayed_at == int((NOW - timedelta(days=10)).timestamp() * 1000)


def test_fast_first_result_dispatch_matches_pluggy() -> None:
    import misp_ti
    from misp_ti.engine import first_result_caller
    from misp_ti.manager import make_plugin_manager

    calls: list[str] = []

    class Passes:
        @misp_ti.hookimpl(tryfirst=True)
        def transform_doc(self, record: Any) -> None:  # names only what it needs
            calls.append("passes")

    class Answers:
        @misp_ti.hookimpl
        def transform_doc(self, stream: str, record: Any, ctx: Any) -> dict[str, Any]:
            calls.append("answers")
            return {"stream": stream, "record": record}

    class Late:
        @misp_ti.hookimpl(trylast=True)
        def transform_doc(self, stream: str) -> dict[str, Any]:
            calls.append("late")
            return {"late": True}

    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[Late(), Answers(), Passes()])
    fast = first_result_caller(pm.hook.transform_doc)
    assert fast is not pm.hook.transform_doc
    expected = pm.hook.transform_doc(stream="s", record=1, ctx=None)
    assert calls == ["passes", "answers"]
    calls.clear()
    assert fast(stream="s", record=1, ctx=None) == expected == {"stream": "s", "record": 1}
    assert calls == ["passes", "answers"]

    class Wraps:
        @misp_ti.hookimpl(wrapper=True)
        def transform_doc(self) -> Any:
            result = yield
            return {**result, "wrapped": True}

    pm.register(Wraps())
    wrapped = first_result_caller(pm.hook.transform_doc)
    assert wrapped(stream="s", record=1, ctx=None)["wrapped"] is True


def test_hookcall_monitoring_sees_every_transform_doc_and_compute_expiry_call(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    # the fast dispatch must not hide calls from pluggy's monitoring (tracers, pm.enable_tracing)
    source = ListSource(make_attributes(3, start_ts=RECENT), page_size=10)
    with list_engine(source, clock=NOW) as engine:
        seen: list[tuple[str, str]] = []
        answered: list[str] = []
        undo = engine.pm.add_hookcall_monitoring(
            lambda name, impls, kwargs: seen.append((name, kwargs.get("record", {}).get("uuid"))),
            lambda outcome, name, impls, kwargs: answered.append(name),
        )
        ctx = engine.context(dry_run=True)
        records = make_attributes(3, start_ts=RECENT, prefix="m")
        docs = engine.process("threat_attributes", records, ctx)
        per_record = [(hook, r["uuid"]) for r in records for hook in ("transform_doc", "compute_expiry")]
        assert seen == per_record
        assert answered == [hook for hook, _ in per_record]
        undo()
        seen.clear()
        # unmonitored again: the same documents, through the fast path, unseen
        assert engine.process("threat_attributes", records, ctx) == docs
        assert seen == []


def test_monitoring_switched_on_after_the_caller_was_resolved_is_honoured() -> None:
    import misp_ti
    from misp_ti.engine import first_result_caller
    from misp_ti.manager import make_plugin_manager

    class Answers:
        @misp_ti.hookimpl
        def transform_doc(self, record: Any) -> dict[str, Any]:
            return {"record": record}

    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[Answers()])
    fast = first_result_caller(pm.hook.transform_doc)
    assert fast is not pm.hook.transform_doc  # unmonitored: the fast path
    traced: list[str] = []
    pm.trace.root.setwriter(traced.append)
    undo = pm.enable_tracing()
    try:
        assert fast(stream="s", record=1, ctx=None) == {"record": 1}
        assert first_result_caller(pm.hook.transform_doc) is pm.hook.transform_doc
    finally:
        undo()
    assert any("transform_doc" in line for line in traced), traced


def test_the_stash_is_shared_by_cycles_and_closed_newest_first_by_engine_close(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    from misp_ti.model import StashKey

    closed: list[str] = []

    class Closing:
        def __init__(self, name: str):
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    first: StashKey[Closing] = StashKey("test.first")
    second: StashKey[Closing] = StashKey("test.first")  # same name, another key
    made: list[int] = []

    class UsesTheStash:
        @hookimpl
        def emit(self, ctx: Any) -> None:
            made.append(id(ctx.stash.get_or_create(first, lambda: Closing("first"))))
            ctx.stash.get_or_create(second, lambda: Closing("second"))

    source = ListSource(make_attributes(20, start_ts=RECENT), page_size=10)
    engine = list_engine(source, UsesTheStash(), clock=NOW)
    engine.run_once()
    engine.run_once()
    assert len(made) >= 2 and len(set(made)) == 1  # one object for every batch of every cycle
    assert engine.stash[first] is not engine.stash[second]
    engine.close()
    assert closed[:2] == ["second", "first"]
    assert len(engine.stash) == 0
    engine.close()  # closing twice is harmless
    assert closed.count("first") == 1


def test_the_old_string_keyed_resource_still_works_with_a_deprecation_warning(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    source = ListSource([])
    with list_engine(source, clock=NOW) as engine:
        ctx, later = engine.context(), engine.context()
        with pytest.deprecated_call(match=r"ctx.stash.get_or_create"):
            made = ctx.resource("old.plugin.client", list)
        with pytest.deprecated_call():
            assert later.resource("old.plugin.client", dict) is made  # per engine, not per context
        assert len(engine.stash) == 1
    with pytest.deprecated_call(match="StashKey"):
        from misp_ti.model import ContextKey
    from misp_ti.model import StashKey

    assert ContextKey is StashKey


def test_a_sink_reports_its_own_start_up_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture, list_engine: Callable[..., Engine]) -> None:
    from misp_ti.model import Sink

    class Careless:
        MISP_TI_SINKS = (Sink("careless", startup_warnings=lambda config: [f"careless writes to {config.output.batch_size}"]),)

    source = ListSource([])
    caplog.set_level("WARNING", logger="misp_ti")
    with list_engine(source, Careless(), clock=NOW, output={"sinks": ["sqlite", "careless"]}):
        pass
    assert [r.getMessage() for r in caplog.records] == ["careless writes to 1000"]
    caplog.clear()
    with list_engine(source, Careless(), clock=NOW):  # not enabled: nothing to say
        pass
    assert caplog.records == []


def test_run_forever_retries_a_failed_poll_at_the_next_interval(tmp_path: Path, list_engine: Callable[..., Engine]) -> None:
    source = ListSource(make_attributes(20, start_ts=RECENT), page_size=10, fail_at_page=2)
    errors: list[str] = []
    with list_engine(source, clock=NOW, streams={"threat_attributes": {"interval": "1s"}}) as engine:

        def on_error(stream: str, exc: BaseException) -> None:
            errors.append(str(exc))
            assert engine.state.get_cursor(stream) is None  # nothing moved past page 1
            source.fail_at_page = None  # MISP recovers

        class StopWhenDone:
            def cycle_started(self, stream: str, **kw: Any) -> None: ...
            def page_done(self, stream: str, **kw: Any) -> None: ...
            def cycle_finished(self, stream: str, result: Any) -> None:
                if result.completed:
                    engine.request_stop()

        engine.progress = StopWhenDone()
        engine.run_forever(on_error=on_error)
        assert errors == ["simulated MISP failure on page 2"]
        assert engine.state.get_cursor("threat_attributes") == {"offset": 20}
    assert len(store(tmp_path).active_keys(now=NOW)) == 20


def test_prefetch_keeps_order_and_raises_after_the_pages_before_the_error() -> None:
    from misp_ti.engine import Prefetch
    from misp_ti.model import Page

    def pages() -> Any:
        yield Page([{"n": 1}], cursor={"offset": 1})
        yield Page([{"n": 2}], cursor={"offset": 2})
        raise RuntimeError("MISP went away")

    seen = []
    prefetch = Prefetch(pages())
    with pytest.raises(RuntimeError, match="MISP went away"):
        for page in prefetch:
            seen.append(page.cursor["offset"])
    prefetch.close()
    assert seen == [1, 2]


def test_prefetch_stops_reading_when_closed_early() -> None:
    from misp_ti.engine import Prefetch
    from misp_ti.model import Page

    produced = []

    def endless() -> Any:
        n = 0
        while True:
            n += 1
            produced.append(n)
            yield Page([], cursor={"offset": n})

    prefetch = Prefetch(endless())
    first = next(iter(prefetch))
    prefetch.close()
    assert first.cursor == {"offset": 1}
    assert not prefetch._thread.is_alive()
    assert len(produced) <= 3  # one in hand, at most one queued and one blocked


def test_a_stash_key_has_one_key_per_source_and_is_itself_for_default() -> None:
    from misp_ti.model import Stash, StashKey

    key: StashKey[list[str]] = StashKey("test.client")
    partner = key.for_source("partner")
    assert key.for_source("default") is key
    assert partner is key.for_source("partner") and partner is not key
    assert key.for_source("other") not in (key, partner)
    assert partner.name == "test.client[partner]"
    stash = Stash()
    stash[key], stash[partner] = ["default's"], ["partner's"]
    assert stash[key.for_source("partner")] == ["partner's"] and stash[key] == ["default's"]
