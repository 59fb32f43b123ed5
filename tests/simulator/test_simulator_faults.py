"""Errors and injected faults of the MISP simulator, as a client sees them over HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from helpers.simulator import KEY, NOW, filter_events
from misp_ti.simulator import Dataset, FaultPlan, FaultPlanError, MispSimulator
from misp_ti.testing.clock import ManualClock

AUTH_MESSAGE = "Authentication failed. Please make sure you pass the API key of an API enabled user along in the Authorization header."
BODY = {"limit": 5, "page": 1, "order": "id"}


@pytest.fixture(scope="module")
def dataset():
    return Dataset.from_events(filter_events())


def test_bad_key_is_403_with_misps_body(dataset):
    with MispSimulator(dataset, api_key="right-key") as sim:
        for headers in ({"Authorization": "wrong-key"}, {}):
            response = httpx.post(f"{sim.url}/attributes/restSearch", headers=headers, json=BODY)
            assert response.status_code == 403
            assert response.json() == {
                "name": AUTH_MESSAGE,
                "message": AUTH_MESSAGE,
                "url": "/attributes/restSearch",
            }
            assert "right-key" not in response.text
        assert (
            httpx.get(
                f"{sim.url}/decayingModel/index", headers={"Authorization": "nope"}
            ).status_code
            == 403
        )
        assert (
            httpx.post(
                f"{sim.url}/attributes/restSearch",
                headers={"Authorization": "right-key"},
                json=BODY,
            ).status_code
            == 200
        )


def test_bad_json_unknown_path_and_bare_get(dataset):
    with (
        MispSimulator(dataset, api_key=KEY) as sim,
        httpx.Client(base_url=sim.url, headers={"Authorization": KEY}) as http,
    ):
        bad = http.post(
            "/attributes/restSearch",
            content=b'{"limit": 5,',
            headers={"Content-Type": "application/json"},
        )
        assert bad.status_code == 405 and bad.json()["name"].startswith("Invalid JSON input.")
        assert http.post("/attributes/restSearch", json=[1, 2]).status_code == 405
        missing = http.post("/attributes/nothing", json=BODY)
        assert missing.status_code == 404 and missing.json()["message"] == "Not Found"
        assert http.get("/events/restSearch").status_code == 400
        assert (
            http.post("/attributes/restSearch").status_code == 200
        )  # POST without filters: everything
        assert [r.status for r in sim.requests] == [405, 405, 404, 400, 200]


def run(sim, n=1, timeout=5.0):
    """Send ``n`` restSearch requests; returns the response or the exception of each."""
    outcomes = []
    with httpx.Client(base_url=sim.url, headers={"Authorization": KEY}, timeout=timeout) as http:
        for _ in range(n):
            try:
                outcomes.append(http.post("/attributes/restSearch", json=BODY))
            except httpx.HTTPError as exc:
                outcomes.append(exc)
    return outcomes


def test_429_carries_reset_and_retry_after(dataset):
    with MispSimulator(dataset, faults="429@1", retry_after=7) as sim:
        limited, ok = run(sim, 2)
        assert limited.status_code == 429
        assert (
            limited.headers["Retry-After"] == "7" and limited.headers["X-Rate-Limit-Reset"] == "7"
        )
        assert limited.headers["X-Rate-Limit-Remaining"] == "0"
        assert limited.json()["name"] == "Rate limit exceeded."
        assert ok.status_code == 200 and len(ok.json()["response"]["Attribute"]) == 5


@pytest.mark.parametrize("kind", ["500", "502", "503", "html"])
def test_server_errors(dataset, kind):
    with MispSimulator(dataset, faults=f"{kind}@1") as sim:
        [response] = run(sim)
        assert response.status_code == (500 if kind == "html" else int(kind))
        if kind == "500":
            assert response.json()["message"] == "An Internal Error Has Occurred."
        else:
            assert response.headers["Content-Type"].startswith("text/html")
            assert response.text.lstrip().startswith("<")
        assert sim.requests[0].fault == kind and sim.requests[0].status == response.status_code


def test_timeout_outlasts_the_client(dataset):
    with MispSimulator(dataset, faults="timeout@1", timeout_delay=2.0) as sim:
        [outcome] = run(sim, timeout=0.3)
        assert isinstance(outcome, httpx.ReadTimeout)


def test_reset_closes_without_a_response(dataset):
    with MispSimulator(dataset, faults="reset@1") as sim:
        [outcome] = run(sim)
        assert isinstance(outcome, httpx.TransportError) and not isinstance(
            outcome, httpx.TimeoutException
        )
        assert sim.requests[0].status == 0


def test_truncate_cuts_the_json(dataset):
    with MispSimulator(dataset, faults="truncate@1") as sim:
        cut, whole = run(sim, 2)
        assert cut.status_code == 200 and len(cut.content) < len(whole.content)
        assert whole.content.startswith(cut.content)
        with pytest.raises(json.JSONDecodeError):
            cut.json()


def test_shape_is_valid_json_of_the_wrong_shape(dataset):
    with MispSimulator(dataset, faults="shape@1") as sim:
        [response] = run(sim)
        assert response.status_code == 200
        assert not isinstance(
            response.json()["response"], dict
        )  # attributes come as {"response": {"Attribute": [...]}}


def test_schedule_and_rates_are_deterministic_with_a_seed(dataset):
    def statuses(seed):
        with MispSimulator(dataset, faults="500:0.3,429:0.2,502@2", seed=seed) as sim:
            return [o.status_code for o in run(sim, 20)]

    first, again, other = statuses(11), statuses(11), statuses(12)
    assert first == again
    assert first != other
    assert first[1] == 502
    assert {500, 429, 200} <= set(first)


def test_set_faults_at_runtime_and_request_numbers(dataset):
    with MispSimulator(dataset) as sim:
        numbers = []
        sim.on_request(lambda info: numbers.append((info.number, info.fault)))
        assert [o.status_code for o in run(sim, 2)] == [200, 200]
        sim.set_faults("503@3+4")
        assert [o.status_code for o in run(sim, 3)] == [503, 503, 200]
        sim.set_faults(None)
        assert run(sim)[0].status_code == 200
        assert numbers == [(1, None), (2, None), (3, "503"), (4, "503"), (5, None), (6, None)]
        # faults count restSearch requests only
        assert (
            httpx.get(f"{sim.url}/decayingModel/index", headers={"Authorization": KEY}).status_code
            == 200
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("501:0.1", "unknown kind"),
        ("500:1.5", "between 0 and 1"),
        ("500", "expected KIND"),
        ("reset@0", "start at 1"),
        ("500@2,429@2", "already"),
    ],
)
def test_bad_fault_plans_are_rejected_with_the_rule(spec, message):
    with pytest.raises(FaultPlanError, match=message):
        FaultPlan.parse(spec)


def test_fault_plan_round_trips_to_text():
    assert str(FaultPlan.parse("500:0.1, timeout@3+5")) == "500:0.1,timeout@3,timeout@5"


def test_clock_manual_controls():
    clock = ManualClock(NOW)
    assert clock() == clock.now() == NOW
    clock.advance(90)
    assert clock.timestamp() == int(NOW.timestamp()) + 90
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError, match="aware"):
        ManualClock(NOW.replace(tzinfo=None))
