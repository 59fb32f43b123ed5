"""One Elasticsearch scenario, run against the model here and a real cluster there.

:class:`Scenario` owns a manual clock, the MISP simulator serving real (or
generated) events, and an engine writing both streams to the embedded store
and to Elasticsearch through the real client. A *backend* says where
Elasticsearch is and how to let its transforms catch up:

* :class:`ModelBackend`: ``misp_ti.testing.es_model`` served on loopback; the
  transforms run when the test advances the clock.
* a real cluster (``test_es_cluster.py``): wait and refresh.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from misp_ti.config import build_config
from misp_ti.engine import Engine
from misp_ti.model import SinkReport
from misp_ti.simulator import Dataset, MispSimulator
from misp_ti.sinks.elasticsearch import assets, bulk
from misp_ti.sinks.elasticsearch.client import make_client
from misp_ti.sinks.sqlite import EmbeddedStore
from misp_ti.testing import strategies as ms
from misp_ti.testing.clock import ManualClock
from misp_ti.testing.es_model import ModelCluster, serve
from misp_ti.testing.es_model.search import search

START = datetime(2026, 3, 2, 12, tzinfo=UTC)
STREAMS = ("threat_attributes", "threat")
DATASETS = ("sample", "strategies")
Key = tuple[str, str]


class ModelBackend:
    """The model of Elasticsearch, served over HTTP to the real client; time is a manual clock."""

    #: after a poll, how long the transforms get (above sync delay + frequency)
    settle_time = timedelta(minutes=3)

    def __init__(self, version: tuple[int, int] = (8, 19)) -> None:
        self.version = version
        self.builtin_templates = True
        self.security: Any = None
        #: extra ``output.elasticsearch`` settings (credentials of a modelled user)
        self.es_settings: dict[str, Any] = {}
        self.cluster: ModelCluster = None  # type: ignore[assignment]

    def make_clock(self) -> Any:
        return ManualClock(START)

    def start(self, clock: ManualClock, stack: ExitStack) -> str:
        self.cluster = ModelCluster(self.version, clock=clock.now, builtin_templates=self.builtin_templates, security=self.security)
        url: str = stack.enter_context(serve(self.cluster))
        return url

    def settle(self, clock: ManualClock) -> None:
        clock.advance(self.settle_time)
        self.run_transforms()

    def run_transforms(self) -> None:
        self.cluster.advance()

    def alias_keys(self, stream: str, at: datetime) -> set[Key]:
        return alias_keys(self.cluster, stream, at)


def alias_keys(cluster: ModelCluster, stream: str, at: datetime) -> set[Key]:
    """What a search through the stream's alias returns at ``at``."""
    hits = search(cluster, assets.latest_alias(stream), None, now=at)
    return {(h["_source"]["event"]["dataset"], h["_source"]["misp"]["attribute"]["uuid"]) for h in hits}


def store_keys(store: EmbeddedStore, stream: str, at: datetime) -> set[Key]:
    return {k for k in store.active_keys(now=at) if k[0] == f"ti_misp.{stream}"}


def _draw_one(strategy: st.SearchStrategy[Any]) -> Any:
    """The second example hypothesis generates (the first is the simplest), deterministically."""
    drawn: list[Any] = []

    @settings(max_examples=2, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), deadline=None)
    @given(strategy)
    def draw(value: Any) -> None:
        drawn[:] = [value]

    draw()
    return drawn[0]


@functools.cache
def strategies_events() -> tuple[dict[str, Any], ...]:
    """One event per MISP type (every type once, from the kit's strategies),
    the first twelve with objects too."""
    shells = [_draw_one(ms.events(max_attributes=0, max_objects=0)) for _ in range(4)]
    objects = [_draw_one(st.lists(ms.objects(), min_size=1, max_size=3)) for _ in range(12)]
    events = []
    for i, misp_type in enumerate(ms.MISP_TYPES):
        attribute = _draw_one(ms.attributes(types=[misp_type], with_event=False, decay=False))
        shell = dict(shells[i % len(shells)])
        shell.update(uuid=f"00000000-0000-4000-8000-{i:012d}", id=str(10_000 + i))
        # derandomized draws repeat their uuids: number them
        shell["Object"] = [
            {**o, "event_id": shell["id"], "uuid": f"20000000-0000-4000-8000-{i:06d}{j:06d}",
             "Attribute": [{**a, "uuid": f"30000000-0000-4000-8{j:03d}-{i:06d}{k:06d}", "event_id": shell["id"]} for k, a in enumerate(o["Attribute"])]}
            for j, o in enumerate(objects[i] if i < len(objects) else [])
        ]
        shell["Attribute"] = [{**attribute, "uuid": f"10000000-0000-4000-8000-{i:012d}", "event_id": shell["id"], "deleted": False}]
        events.append(shell)
    return tuple(events)


class Scenario:
    """Simulator + engine (sqlite and elasticsearch sinks) + a backend, on one manual clock."""

    interval = timedelta(hours=6)

    def __init__(self, tmp_path: Path, backend: Any, *, dataset: str = "sample", streams: tuple[str, ...] = STREAMS) -> None:
        self.tmp_path, self.backend, self.streams = tmp_path, backend, streams
        self.clock = backend.make_clock()
        self.settle_time: timedelta = backend.settle_time
        self.rng = random.Random(20260302)
        self.stack = ExitStack()
        if dataset == "sample":
            data = Dataset.sample()
        else:
            data = Dataset.from_events([dict(e) for e in strategies_events()])
        self.sim = MispSimulator(data, api_key="scenario-key", clock=self.clock, seed=3)
        self.dataset = dataset
        self.edits: list[str] = []
        self.deletes: list[str] = []
        self.inserts: list[str] = []
        self._last_active: dict[str, set[Key]] = {}
        #: IOCs seen leaving the active set between two comparisons (expiry or deletion)
        self.left_active = 0

    def __enter__(self) -> Scenario:
        self.stack.enter_context(self.sim)
        self.sim.shift_to(self.clock.now() - timedelta(hours=1))
        url = self.backend.start(self.clock, self.stack)
        self.config = build_config(
            {
                "misp": {"url": self.sim.url, "api_key": "scenario-key", "max_retries": 0},
                "streams": {s: {"enabled": True, "initial_interval": "3650d", "interval": "6h"} for s in self.streams},
                # long enough that most sample IOCs are valid, short enough that some expire in three days
                # most sample IOCs valid; the IPs added during the scenario expire after a day
                "expiry": {"policy": "duration", "ioc_expiration_duration": "400d", "by_type": {"ip-dst": "1d"}},
                "output": {
                    "sinks": ["sqlite", "elasticsearch"],
                    "sqlite": {"path": str(self.tmp_path / "store.db")},
                    "dead_letter_path": str(self.tmp_path / "dead.ndjson"),
                    "elasticsearch": {"hosts": [url], "backoff_initial": "0.01s", "max_retries": 1, **getattr(self.backend, "es_settings", {})},
                },
                "plugins": {"entrypoints": False},
            },
            source="test",
        )
        self.engine = self.stack.enter_context(Engine(self.config, clock=self.clock))
        self.store = EmbeddedStore(self.tmp_path / "store.db")
        self.stack.callback(self.store.close)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    # -- driving -------------------------------------------------------------------------
    def provision(self) -> list[dict[str, Any]]:
        return self.engine.provision()

    def poll(self) -> None:
        for result in self.engine.run_once(streams=list(self.streams)):
            assert result.completed, result

    def poll_and_settle(self) -> None:
        self.poll()
        self.backend.settle(self.clock)

    def mutate(self, step: int) -> None:
        """Edits, soft deletes and inserts, as an analyst would make them."""
        live = [u for u in self._uuids() if u not in self.deletes]
        for uuid in self.rng.sample(live, 2):
            self.sim.modify_attribute(uuid, comment=f"edited at step {step}")
            self.edits.append(uuid)
        uuid = self.rng.choice(live)
        self.sim.delete_attribute(uuid)
        self.deletes.append(uuid)
        for n in range(2):
            added = self.sim.add_attribute(type="ip-dst", value=f"198.51.{step}.{n + 1}", to_ids=True)
            self.inserts.append(added["uuid"])

    def write_docs(self, stream: str, docs: list[dict[str, Any]]) -> SinkReport:
        client = make_client(self.config.output.elasticsearch)
        try:
            return bulk.write(client, stream, docs, self.config)
        finally:
            client.close()

    # -- checking ------------------------------------------------------------------------
    def compare_at(self, at: datetime) -> dict[str, int]:
        counts = {"active": 0}
        for stream in self.streams:
            ours, expected = self.backend.alias_keys(stream, at), store_keys(self.store, stream, at)
            assert ours == expected, (
                f"{stream} at {at}: alias has {len(ours)}, store {len(expected)}; "
                f"only alias {sorted(ours - expected)[:3]}, only store {sorted(expected - ours)[:3]}"
            )
            self.left_active += len(self._last_active.get(stream, set()) - expected)
            self._last_active[stream] = expected
            counts["active"] += len(expected)
        return counts

    def compare_everywhere(self) -> dict[str, int]:
        return self.compare_at(self.clock.now())

    def _uuids(self) -> list[str]:
        return sorted(self.sim.state.row_by_uuid)

    def _latest_docs(self, stream: str, at: datetime) -> Iterator[dict[str, Any]]:
        yield from self.store.active(now=at, dataset=f"ti_misp.{stream}")

    def next_expiry(self, stream: str, where: Any = None) -> tuple[Key, datetime] | None:
        """The active IOC (matching ``where(doc)``) that expires first, and when."""
        best: tuple[Key, datetime] | None = None
        for doc in self._latest_docs(stream, self.clock.now()):
            if where is not None and not where(doc):
                continue
            at = datetime.fromisoformat(doc["misp"]["attribute"]["decayed_at"].replace("Z", "+00:00"))
            if best is None or at < best[1]:
                best = ((doc["event"]["dataset"], doc["misp"]["attribute"]["uuid"]), at)
        return best

    def indicator_type(self, stream: str, uuid: str) -> str | None:
        for doc in self._latest_docs(stream, self.clock.now()):
            if doc["misp"]["attribute"]["uuid"] == uuid:
                kind: str | None = (doc.get("threat") or {}).get("indicator", {}).get("type")
                return kind
        return None

    def active_timestamps(self, stream: str, at: datetime) -> dict[Key, datetime]:
        return {
            (d["event"]["dataset"], d["misp"]["attribute"]["uuid"]): datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00"))
            for d in self._latest_docs(stream, at)
        }
