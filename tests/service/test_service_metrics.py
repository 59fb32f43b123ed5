"""Metrics and health endpoint (misp_ti.service.metrics), scraped over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from misp_ti.config import Config
from misp_ti.engine import CycleResult, Engine
from misp_ti.manager import plugin_manager_for
from misp_ti.service.metrics import Metrics, MetricsServer
from misp_ti.testing.clock import ManualClock

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=60).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_follow_engine_events_and_are_served() -> None:
    metrics = Metrics()
    health = {"code": 0}
    with MetricsServer(metrics, lambda: (health["code"], {"streams": {}})) as server:
        before = scrape(server.url)
        assert ("misp_ti_misp_retries_total", ()) in before and before[("misp_ti_misp_retries_total", ())] == 0
        result = CycleResult(
            "threat_attributes", NOW, completed=True, records=120, documents=120, pipeline_errors=2,
            delivered={"sqlite": 118}, dead_lettered={"sqlite": 2},
        )
        metrics.on_cycle_failed("threat_attributes")
        metrics.on_misp_request(503, 0.2, retry=False)
        metrics.on_misp_request(200, 1.5, retry=True)
        metrics.on_cycle_finished("threat_attributes", result, finished_at=NOW)
        metrics.on_cursor("threat_attributes", NOW - timedelta(minutes=10), NOW)
        after = scrape(server.url)
    s = (("source", "default"), ("stream", "threat_attributes"))
    assert after[("misp_ti_cycles_total", (("outcome", "completed"), *s))] == 1
    assert after[("misp_ti_cycles_total", (("outcome", "failed"), *s))] == 1
    assert after[("misp_ti_records_total", s)] == 120
    assert after[("misp_ti_pipeline_errors_total", s)] == 2
    assert after[("misp_ti_sink_documents_total", (("result", "delivered"), ("sink", "sqlite")))] == 118
    assert after[("misp_ti_sink_documents_total", (("result", "dead_lettered"), ("sink", "sqlite")))] == 2
    assert after[("misp_ti_misp_requests_total", (("status", "503"),))] == 1
    assert after[("misp_ti_misp_retries_total", ())] == 1
    assert after[("misp_ti_misp_request_seconds_count", ())] == 2
    assert after[("misp_ti_cursor_lag_seconds", s)] == 600
    assert after[("misp_ti_last_success_timestamp_seconds", s)] == NOW.timestamp()
    assert after[("misp_ti_failures_in_row", s)] == 0


def test_health_answers_like_the_status_exit_code() -> None:
    state = {"code": 0}
    with MetricsServer(Metrics(), lambda: (state["code"], {"reason": f"r{state['code']}"})) as server:
        answers = []
        for code in (0, 1, 2):
            state["code"] = code
            reply = httpx.get(f"{server.url}/healthz", timeout=60)
            answers.append((reply.status_code, reply.json()["status"], reply.json()["reason"]))
        assert httpx.get(f"{server.url}/nope", timeout=60).status_code == 404
    assert answers == [(200, "healthy", "r0"), (503, "degraded", "r1"), (503, "unusable", "r2")]


def test_a_health_check_that_raises_is_unusable_not_a_500() -> None:
    def broken() -> tuple[int, dict[str, object]]:
        raise RuntimeError("boom")

    with MetricsServer(Metrics(), broken) as server:
        reply = httpx.get(f"{server.url}/healthz", timeout=60)
    assert (reply.status_code, reply.json()["status"]) == (503, "unusable")


def test_two_engines_in_one_process_do_not_share_counters() -> None:
    a, b = Metrics(), Metrics()
    a.on_cycle_failed("threat")
    labels = {"source": "default", "stream": "threat", "outcome": "failed"}
    assert a.registry.get_sample_value("misp_ti_cycles_total", labels) == 1
    assert b.registry.get_sample_value("misp_ti_cycles_total", labels) is None


def test_requests_of_an_injected_misp_client_are_counted(misp_client_config: Config, misp_clock: ManualClock) -> None:
    """docs/testing-your-plugin.md injects a client under misp_fetch.CLIENT; the
    engine's metrics still see its requests, and an observer of its own is kept."""
    from misp_ti.default_plugins import misp_fetch
    from misp_ti.misp.client import MispClient

    metrics = Metrics()
    pm = plugin_manager_for(misp_client_config, (), load_entrypoints=False)
    with Engine(misp_client_config, pm=pm, clock=misp_clock, metrics=metrics) as engine:
        engine.stash[misp_fetch.CLIENT] = MispClient(misp_client_config.misp)
        results = engine.run_once()
    assert all(r.completed for r in results) and sum(r.records for r in results) > 0
    answered = metrics.registry.get_sample_value("misp_ti_misp_requests_total", {"status": "200"})
    assert answered is not None and answered >= len(results)

    own: list[object] = []
    metrics = Metrics()
    with Engine(misp_client_config, pm=pm, clock=misp_clock, metrics=metrics) as engine:
        engine.stash[misp_fetch.CLIENT] = MispClient(
            misp_client_config.misp, observer=lambda status, seconds, *, retry: own.append(status)
        )
        engine.run_once()
    assert own and set(own) == {200}
    assert metrics.registry.get_sample_value("misp_ti_misp_requests_total", {"status": "200"}) is None
