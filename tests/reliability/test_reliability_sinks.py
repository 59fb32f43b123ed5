"""Sink faults: the cursor never passes a batch that a sink did not confirm.

The real fetch reads the shipped real events from the MISP simulator; the
real transform and expiry run; a sink then fails part-way through the
backfill for a real reason:

* the embedded store's disk is full (``PRAGMA max_page_count`` on the
  store's own connection makes SQLite answer ``SQLITE_FULL``, exactly what a
  full file system gives);
* the embedded store is locked by another process's write transaction;
* Elasticsearch answers every ``_bulk`` with 503, or rejects items with 503
  past the retries, or its port is closed (connection refused).

A recording ``emit`` wrapper sees which batches were confirmed. After the
failure: no finished cursor was saved, the in-progress checkpoint lies at or
before the oldest record of every unconfirmed batch, and the sink holds
exactly the confirmed batches (the failed one was rolled back or never
acknowledged). Then the fault is lifted and the engine resumes: the result
equals a fault-free run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers.reliability import FakeElasticsearch, source_ids, store_snapshot
from helpers.sample import T0
from misp_ti import hookimpl
from misp_ti.config import build_config
from misp_ti.default_plugins import sqlite_sink
from misp_ti.engine import Engine
from misp_ti.errors import SinkError
from misp_ti.simulator import Dataset, MispSimulator
from misp_ti.sinks.sqlite import EmbeddedStore
from misp_ti.state import StateStore
from misp_ti.testing.clock import ManualClock

KEY = "sink-faults-key-0123456789abcdef0123456"
STREAM = "threat_attributes"
FAIL_AFTER = 6  # confirmed batches before the fault


class BatchRecorder:
    """``emit`` wrapper: records each batch's documents and whether every sink
    confirmed it; runs ``on_confirmed(n)`` after the n-th confirmed batch."""

    def __init__(self, on_confirmed: Callable[[int], None] | None = None):
        self.on_confirmed = on_confirmed
        self.batches: list[tuple[list[tuple[str, str]], bool]] = []

    @hookimpl(wrapper=True)
    def emit(self, stream: str, docs: list[dict[str, Any]], ctx: Any) -> Any:
        info = [(d["_id"], d["misp"]["attribute"]["uuid"]) for d in docs]
        try:
            result = yield
        except BaseException:
            self.batches.append((info, False))
            raise
        self.batches.append((info, True))
        if self.on_confirmed is not None:
            self.on_confirmed(sum(1 for _, ok in self.batches if ok))
        return result

    def confirmed_ids(self) -> set[str]:
        return {i for docs, ok in self.batches if ok for i, _ in docs}

    def failed(self) -> list[list[tuple[str, str]]]:
        return [docs for docs, ok in self.batches if not ok]


@pytest.fixture(scope="module")
def timestamps(dataset: Dataset) -> dict[str, int]:
    return {a["uuid"]: int(a["timestamp"]) for a in dataset.attributes()}


@pytest.fixture
def simulator(dataset: Dataset) -> Any:
    with MispSimulator(dataset, api_key=KEY, clock=ManualClock(start=T0)) as sim:
        yield sim


def make_config(sim: MispSimulator, workdir: Path, sinks: list[str], es_url: str | None = None) -> Any:
    return build_config({
        "misp": {"url": sim.url, "api_key": KEY, "page_size": 100, "backoff_initial": "0.01s", "backoff_max": "0.05s"},
        "streams": {STREAM: {"initial_interval": "5000d"}},
        "output": {
            "sinks": sinks,
            "batch_size": 40,  # several batches per page: a page is checkpointed only when all of them are confirmed
            "sqlite": {"path": str(workdir / "store.db")},
            "elasticsearch": {
                "hosts": [es_url or "http://127.0.0.1:9"], "max_retries": 1,
                "backoff_initial": "0.01s", "backoff_max": "0.02s", "request_timeout": "5s",
            },
        },
        "state": {"path": str(workdir / "state.db")},
        "plugins": {"entrypoints": False},
    })


@pytest.fixture(scope="module")
def fault_free(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("fault-free")
    with MispSimulator(dataset, api_key=KEY, clock=ManualClock(start=T0)) as sim:
        with Engine(make_config(sim, workdir, ["sqlite"]), clock=lambda: T0) as engine:
            assert engine.run_once()[0].completed
    return {"snapshot": store_snapshot(workdir / "store.db"), "ids": set(source_ids(workdir / "store.db"))}


def assert_cursor_behind_unconfirmed(workdir: Path, recorder: BatchRecorder, timestamps: dict[str, int]) -> None:
    failed = recorder.failed()
    assert failed, "the fault never hit a batch"
    state = StateStore(workdir / "state.db")
    try:
        assert state.get_cursor(STREAM) is None, "a cycle with an unconfirmed batch must not finish"
        cycle = state.in_progress(STREAM)
    finally:
        state.close()
    assert cycle is not None
    resume_from = (cycle.checkpoint or {}).get("resume_from")
    oldest_unconfirmed = min(timestamps[uuid] for docs in failed for _, uuid in docs)
    assert resume_from is None or resume_from <= oldest_unconfirmed, (
        f"checkpoint {resume_from} passed an unconfirmed record of timestamp {oldest_unconfirmed}"
    )
    assert sum(ok for _, ok in recorder.batches) >= FAIL_AFTER


def run_until_fault(config: Any, recorder: BatchRecorder, store: EmbeddedStore | None = None) -> str:
    with Engine(config, clock=lambda: T0, extra_plugins=[recorder]) as engine:
        if store is not None:
            engine.stash[sqlite_sink.STORE] = store
        with pytest.raises(SinkError) as failure:
            engine.run_once()
    return str(failure.value)


def resume(config: Any) -> None:
    with Engine(config, clock=lambda: T0) as engine:
        [result] = engine.run_once()
    assert result.completed and result.resumed


# ---------------------------------------------------------------------------
# the embedded store


def test_store_disk_full_keeps_the_cursor_then_resumes(simulator: MispSimulator, tmp_path: Path, fault_free: dict[str, Any], timestamps: dict[str, int]) -> None:
    config = make_config(simulator, tmp_path, ["sqlite"])
    store = EmbeddedStore(config.output.sqlite.path)
    store.provision()

    def fill_the_disk(confirmed: int) -> None:
        if confirmed == FAIL_AFTER:
            pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
            store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    recorder = BatchRecorder(fill_the_disk)
    message = run_until_fault(config, recorder, store)
    assert "full" in message and "refused a batch" in message
    assert_cursor_behind_unconfirmed(tmp_path, recorder, timestamps)
    # the failed batch was rolled back whole: the store holds the confirmed batches only
    assert set(source_ids(tmp_path / "store.db")) == recorder.confirmed_ids()

    resume(config)  # space is back (a fresh connection has no page limit)
    assert store_snapshot(tmp_path / "store.db") == fault_free["snapshot"]
    assert set(source_ids(tmp_path / "store.db")) == fault_free["ids"]


def test_store_locked_by_another_writer_keeps_the_cursor_then_resumes(simulator: MispSimulator, tmp_path: Path, fault_free: dict[str, Any], timestamps: dict[str, int]) -> None:
    config = make_config(simulator, tmp_path, ["sqlite"])
    store = EmbeddedStore(config.output.sqlite.path)
    store.provision()
    store.conn.execute("PRAGMA busy_timeout = 100")  # give up quickly instead of after 10 s
    other = sqlite3.connect(str(config.output.sqlite.path), isolation_level=None)

    def lock(confirmed: int) -> None:
        if confirmed == FAIL_AFTER:
            other.execute("BEGIN EXCLUSIVE")

    recorder = BatchRecorder(lock)
    try:
        message = run_until_fault(config, recorder, store)
        assert "locked" in message
        assert_cursor_behind_unconfirmed(tmp_path, recorder, timestamps)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert set(source_ids(tmp_path / "store.db")) == recorder.confirmed_ids()
    resume(config)
    assert store_snapshot(tmp_path / "store.db") == fault_free["snapshot"]


# ---------------------------------------------------------------------------
# Elasticsearch (a loopback endpoint; the embedded store runs beside it)


def _bulk_503(es: FakeElasticsearch) -> None:
    es.bulk_status = 503


def _items_503(es: FakeElasticsearch) -> None:
    es.item_status = lambda n, action, source: 503


@pytest.mark.parametrize("refuse", [_bulk_503, _items_503], ids=["bulk-503", "items-503"])
def test_elasticsearch_refusing_keeps_the_cursor_then_resumes(
    simulator: MispSimulator, tmp_path: Path, fault_free: dict[str, Any], timestamps: dict[str, int], refuse: Callable[[FakeElasticsearch], None]
) -> None:
    with FakeElasticsearch() as es:
        config = make_config(simulator, tmp_path, ["sqlite", "elasticsearch"], es.url)
        recorder = BatchRecorder(lambda confirmed: refuse(es) if confirmed == FAIL_AFTER else None)
        message = run_until_fault(config, recorder)
        assert "503" in message
        assert_cursor_behind_unconfirmed(tmp_path, recorder, timestamps)
        assert set(es.documents) == recorder.confirmed_ids(), "Elasticsearch holds exactly the confirmed batches"

        es.bulk_status = 200
        es.item_status = lambda n, action, source: 201
        resume(config)
        assert set(es.documents) == fault_free["ids"]
    # the store got the refused batch too, and its replay changed nothing
    assert store_snapshot(tmp_path / "store.db") == fault_free["snapshot"]
    assert set(source_ids(tmp_path / "store.db")) == fault_free["ids"]


def test_elasticsearch_connection_refused_keeps_the_cursor_then_resumes(simulator: MispSimulator, tmp_path: Path, fault_free: dict[str, Any], timestamps: dict[str, int]) -> None:
    first = FakeElasticsearch().__enter__()
    config = make_config(simulator, tmp_path, ["elasticsearch"], first.url)
    recorder = BatchRecorder(lambda confirmed: first.stop() if confirmed == FAIL_AFTER else None)
    message = run_until_fault(config, recorder)
    assert "unreachable" in message
    assert_cursor_behind_unconfirmed(tmp_path, recorder, timestamps)
    assert set(first.documents) == recorder.confirmed_ids()

    with FakeElasticsearch() as second:  # the cluster is back (on another port)
        resume(make_config(simulator, tmp_path, ["elasticsearch"], second.url))
        assert set(first.documents) | set(second.documents) == fault_free["ids"]


# ---------------------------------------------------------------------------
# the NDJSON sink after a crash in the middle of a write


def test_ndjson_output_stays_line_parseable_after_a_torn_write(simulator: MispSimulator, tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    out.write_bytes(b'{"_id":"a","event":{"kind":"enrichment"},"misp":{"attrib')  # what a SIGKILL mid-write leaves
    config = make_config(simulator, tmp_path, ["ndjson"])
    config.output.ndjson.path = str(out)
    with Engine(config, clock=lambda: T0) as engine:
        assert engine.run_once()[0].completed
    lines = out.read_bytes().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    # every document of the run must be readable; the fragment itself may be dropped or kept apart
    assert len(parsed) == len(simulator)
