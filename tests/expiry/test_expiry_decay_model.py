"""MISP's Polynomial formula and its inverse (``misp_ti.misp.decay``), and the
``decay-model`` policy, checked against the MISP simulator's own scoring."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from misp_ti.config import build_config
from misp_ti.default_plugins import expiry_decay_model as plugin
from misp_ti.default_plugins import misp_fetch
from misp_ti.misp import decay
from misp_ti.misp.client import MispClient
from misp_ti.model import RunContext, Stash
from misp_ti.simulator import MispSimulator
from misp_ti.simulator.decay import (
    DecayScorer,
    default_models,
    index_rows,
    normalise_models,
)
from misp_ti.state import StateStore
from misp_ti.testing.clock import ManualClock
from misp_ti.timeutil import from_epoch

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86400


def nids(**params: Any) -> dict[str, Any]:
    base = {"lifetime": 120, "decay_speed": 2, "threshold": 30, "default_base_score": 80}
    return {"DecayingModel": {"id": "1", "name": "NIDS", "formula": "Polynomial", "parameters": {**base, **params}}}


# -- the formula ---------------------------------------------------------------


def test_time_to_decay_of_misps_nids_model() -> None:
    # L (1 - tau/B)^delta days = 120 * (1 - 30/80)^2 = 46.875 days
    assert decay.seconds_to_decay(80, 30, 120, 2) == pytest.approx(46.875 * DAY)
    moment = decay.seconds_to_decay(80, 30, 120, 2)
    assert not decay.is_decayed(decay.polynomial_score(80, moment - 1, 120, 2), 30)
    assert decay.is_decayed(decay.polynomial_score(80, moment + 1, 120, 2), 30)


def test_formula_edges_follow_misp() -> None:
    assert decay.polynomial_score(80, -5, 120, 2) == 0  # reference in the future: MISP scores 0
    assert decay.polynomial_score(80, 200 * DAY, 120, 2) == 0  # clipped, never negative
    assert decay.seconds_to_decay(80, 0, 120, 2) == math.inf  # threshold 0: never decayed
    assert decay.seconds_to_decay(20, 30, 120, 2) == -math.inf  # base below threshold: always
    assert decay.seconds_to_decay(0, 30, 120, 2) == -math.inf
    assert decay.seconds_to_decay(30, 30, 120, 2) == 0  # decayed as soon as any time passed


@given(
    base=st.floats(0.5, 100), threshold=st.floats(0.01, 100), lifetime=st.floats(0.01, 1000),
    speed=st.floats(0.05, 20), fraction=st.floats(0.0, 1.0),
)
def test_inverse_recovers_the_elapsed_time(base: float, threshold: float, lifetime: float, speed: float, fraction: float) -> None:
    elapsed = fraction * lifetime * DAY
    score = decay.polynomial_score(base, elapsed, lifetime, speed)
    assume(score > 0)
    low, high = decay.elapsed_bounds(score, base, lifetime, speed)
    assert low - 1e-6 <= elapsed <= high + 1e-6


def test_vote_flip_needs_half_of_the_models() -> None:
    assert decay.vote_flip([5.0]) == 5.0
    assert decay.vote_flip([9.0, 5.0]) == 5.0  # 1 of 2 is half
    assert decay.vote_flip([9.0, 5.0, 7.0]) == 7.0  # 2 of 3
    assert decay.vote_flip([9.0, -math.inf, 7.0, math.inf]) == 7.0
    assert decay.vote_flip([math.inf, math.inf, 1.0]) == math.inf
    assert decay.vote_flip([]) == math.inf


# -- the index -----------------------------------------------------------------


def test_index_parsing_reads_current_and_old_parameter_names() -> None:
    payload = [
        nids(),
        {"DecayingModel": {"id": 7, "name": "old", "formula": "", "parameters": json.dumps({"tau": 30, "delta": 0.5, "threshold": 10})}},
        {"DecayingModel": {"id": "8", "name": "fp", "formula": "Sightings", "parameters": {"threshold": 10}}},
        {"DecayingModel": {"id": "9", "name": "half", "formula": "Polynomial", "parameters": {"lifetime": 3}}},
    ]
    models = decay.parse_index(payload)
    assert models["1"].lifetime_days == 120 and models["1"].decay_speed == 2 and models["1"].problem is None
    assert (models["7"].lifetime_days, models["7"].decay_speed, models["7"].problem) == (30, 0.5, None)
    assert "Sightings" in (models["8"].problem or "")
    assert models["9"].problem == "missing parameter(s) decay_speed, threshold"
    with pytest.raises(ValueError, match="JSON list"):
        decay.parse_index("nope")


def test_misps_shipped_models_parse_as_predictable() -> None:
    models = decay.parse_index(index_rows(default_models()))
    assert len(models) == 3 and all(m.problem is None for m in models.values())


# -- prediction against the simulator's scoring -----------------------------------


def make_ctx(now: datetime, *, refetch: bool = False, state: StateStore | None = None, **expiry: Any) -> RunContext:
    config = build_config({"expiry": {"policy": "decay-model", **expiry}, "plugins": {"entrypoints": False}})
    return RunContext(config=config, now=now, refetch=refetch, state=state)


def with_models(ctx: RunContext, index: list[dict[str, Any]]) -> RunContext:
    cache = plugin.new_cache()
    cache.models = decay.parse_index(index)
    cache.loaded_for = ctx.now
    ctx.stash[plugin.CACHE] = cache
    return ctx


def decide(record: dict[str, Any], ctx: RunContext) -> Any:
    return plugin.compute_expiry(stream="threat_attributes", record=record, doc={"_id": "x"}, ctx=ctx)


model_params = st.fixed_dictionaries({
    "lifetime": st.floats(0.05, 400),
    "decay_speed": st.floats(0.1, 10),
    "threshold": st.floats(0.5, 90),
    "default_base_score": st.floats(0, 100),
})


def scenario(params: list[dict[str, Any]], age: int, last_seen_offset: int | None, sighting_offset: int | None,
             *, record_has_sightings: bool) -> tuple[Any, Any, int, Any]:
    """A simulator scorer, a record as restSearch returns it, the scoring time, and MISP's vote."""
    clock = ManualClock(START + timedelta(days=600))
    models = normalise_models([
        {"name": f"m{i}", "formula": "Polynomial", "attribute_types": ["ip-dst"], "parameters": p} for i, p in enumerate(params)
    ])
    scorer = DecayScorer(models)
    now = clock.timestamp()
    attribute: dict[str, Any] = {"uuid": "u", "type": "ip-dst", "value": "10.0.0.1", "timestamp": str(now - age), "Tag": []}
    if last_seen_offset is not None:
        attribute["last_seen"] = from_epoch(now - age + last_seen_offset).isoformat()
    sighting = now - age + sighting_offset if sighting_offset is not None and sighting_offset <= age else None

    def vote(at: float) -> bool:
        entries = scorer.score(attribute, [], at, last_sighting=sighting)  # type: ignore[arg-type]
        return sum(e["decayed"] for e in entries) * 2 >= len(entries)

    record = {**attribute, "decay_score": scorer.score(attribute, [], now, last_sighting=sighting)}
    if record_has_sightings:
        record["Sighting"] = [] if sighting is None else [{"date_sighting": str(sighting), "type": "0"}]
    result = decide(record, with_models(make_ctx(clock.now()), index_rows(models)))
    return result, vote, now, record


scenarios = {
    "params": st.lists(model_params, min_size=1, max_size=4),
    "age": st.integers(0, 500 * DAY),
    "last_seen_offset": st.none() | st.integers(-30 * DAY, 30 * DAY),
    "sighting_offset": st.none() | st.integers(0, 60 * DAY),
}


@settings(max_examples=300)
@given(**scenarios)
def test_predicted_flip_matches_the_simulators_scoring_within_a_second(
    params: list[dict[str, Any]], age: int, last_seen_offset: int | None, sighting_offset: int | None
) -> None:
    result, vote, now, _ = scenario(params, age, last_seen_offset, sighting_offset, record_has_sightings=True)
    if vote(now):
        assert result.reason == "decay-vote"
        return
    if result.reason == "decay-model:never-decays:duration":
        assert not vote(now + 10_000 * DAY)
        return
    assert result.reason == "decay-model" and not result.decayed
    flip = result.decayed_at.timestamp()
    assert flip >= now
    # MISP (the simulator) still says live a second before, and decayed a second after
    assert flip - 1 < now or not vote(flip - 1)  # before `now` MISP's past is not ours to check
    assert vote(flip + 1)


@settings(max_examples=150)
@given(**scenarios)
def test_with_a_sighting_the_record_does_not_carry_the_flip_is_never_late(
    params: list[dict[str, Any]], age: int, last_seen_offset: int | None, sighting_offset: int | None
) -> None:
    # only the score tells about the sighting; where the score cannot place the
    # reference time to the second (score/B within float noise of 1) the answer
    # may be early by the width of that uncertainty, never late
    result, vote, now, record = scenario(params, age, last_seen_offset, sighting_offset, record_has_sightings=False)
    if vote(now) or result.reason != "decay-model":
        return
    flip = result.decayed_at.timestamp()
    assert flip - 1 < now or not vote(flip - 1)  # before `now` MISP's past is not ours to check
    widths = [
        high - low for e, p in zip(record["decay_score"], params, strict=True) if not e["decayed"] and e["base_score"] > 0
        for low, high in [decay.elapsed_bounds(e["score"], e["base_score"], p["lifetime"], p["decay_speed"])]
    ]
    slack = max(widths, default=0.0) + 1
    assert vote(flip + slack)


def test_prediction_through_an_unknown_sighting_is_early_never_late() -> None:
    models = normalise_models([{"name": "m", "attribute_types": ["ip-dst"], "parameters": {"lifetime": 10, "decay_speed": 0.3, "threshold": 20, "default_base_score": 80}}])
    scorer = DecayScorer(models)
    now = int(START.timestamp())
    attribute = {"type": "ip-dst", "timestamp": str(now - 5 * DAY), "Tag": []}
    # sighted 60 s ago: the score is 80 to the last bit, so the record's own times
    # disagree and only a bound on the elapsed time is known
    record = {**attribute, "decay_score": scorer.score(attribute, [], now, last_sighting=now - 60)}
    result = decide(record, with_models(make_ctx(START), index_rows(models)))
    true_flip = now - 60 + decay.seconds_to_decay(80, 20, 10, 0.3)
    assert result.reason == "decay-model" and START <= result.decayed_at <= from_epoch(true_flip)


# -- fallbacks -------------------------------------------------------------------


def live_record(model_id: str = "1", **entry: Any) -> dict[str, Any]:
    score = {"score": 70.0, "base_score": 80.0, "decayed": False, "DecayingModel": {"id": model_id, "name": "NIDS"}, **entry}
    return {"uuid": "u", "type": "ip-dst", "timestamp": str(int(START.timestamp()) - DAY), "decay_score": [score]}


@pytest.mark.parametrize(
    ("index", "record"),
    [
        ([{"DecayingModel": {"id": "1", "name": "fp", "formula": "Sightings", "parameters": {"threshold": 30}}}], live_record()),
        ([nids(decay_speed=None)], live_record()),
        ([nids()], live_record(model_id="42")),  # a model the index does not list
        ([nids(threshold=75)], live_record()),  # MISP says live at 70, these parameters say decayed: stale
        ([nids()], {**live_record(), "decay_score": []}),
    ],
    ids=["sightings-formula", "missing-parameter", "unknown-model", "stale-parameters", "no-scores"],
)
def test_unpredictable_attributes_fall_back_to_duration(index: list[dict[str, Any]], record: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(index))
    result = decide(record, make_ctx(START, decay_models_path=str(path), ioc_expiration_duration="3d"))
    assert result.reason == "decay-model:duration"
    assert result.decayed_at == START - timedelta(days=1) + timedelta(days=3)


def test_polynomial_extended_is_predicted_unless_a_retention_tag_cuts_it(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    extended = nids()
    extended["DecayingModel"]["formula"] = "PolynomialExtended"
    path.write_text(json.dumps([extended]))
    ctx = make_ctx(START, decay_models_path=str(path))
    assert decide(live_record(), ctx).reason == "decay-model"
    tagged = {**live_record(), "Tag": [{"name": "retention:2w"}]}
    assert decide(tagged, ctx).reason == "decay-model:duration"
    event_tagged = {**live_record(), "Event": {"Tag": [{"name": "Retention:1d"}]}}
    assert decide(event_tagged, ctx).reason == "decay-model:duration"


def test_models_that_never_decay_fall_back_to_duration(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([nids(threshold=0)]))
    result = decide(live_record(), make_ctx(START, decay_models_path=str(path)))
    assert result.reason == "decay-model:never-decays:duration"


def test_model_overrides_in_the_stream_filters_are_applied(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([nids()]))
    config = build_config({
        "expiry": {"policy": "decay-model", "decay_models_path": str(path)},
        "streams": {"threat_attributes": {"filters": {"modelOverrides": {"threshold": 50}}}},
        "plugins": {"entrypoints": False},
    })
    now = START.timestamp()
    score = decay.polynomial_score(80, 3 * DAY, 120, 2)
    record = {**live_record(score=score), "timestamp": str(int(now) - 3 * DAY)}
    result = plugin.compute_expiry(stream="threat_attributes", record=record, doc={}, ctx=RunContext(config=config, now=START))
    expected = now - 3 * DAY + decay.seconds_to_decay(80, 50, 120, 2)
    assert result.decayed_at.timestamp() == pytest.approx(expected, abs=0.001)


# -- the model cache ----------------------------------------------------------------


def test_models_reload_on_refetch_cycles_only(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([nids(lifetime=120)]))
    stash = Stash()  # one engine's, across its cycles

    def flip(now: datetime, refetch: bool) -> float:
        ctx = make_ctx(now, refetch=refetch, decay_models_path=str(path))
        ctx.stash = stash
        record = {**live_record(score=80.0), "timestamp": str(int(now.timestamp()))}
        return (decide(record, ctx).decayed_at - now).total_seconds() / DAY

    assert flip(START, True) == pytest.approx(46.875)
    path.write_text(json.dumps([nids(lifetime=12)]))
    assert flip(START + timedelta(hours=1), False) == pytest.approx(46.875)  # cached
    assert flip(START + timedelta(days=7), True) == pytest.approx(4.6875)  # refetch cycle: reloaded


def test_models_persist_in_the_state_store_across_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateStore(tmp_path / "state.db")
    calls = []

    def fake_request(ctx: RunContext) -> list[dict[str, Any]]:
        calls.append(ctx.now)
        return [nids()]

    monkeypatch.setattr(plugin, "_request_index", fake_request)
    assert decide(live_record(), make_ctx(START, refetch=True, state=state)).reason == "decay-model"
    # a restarted engine (a new stash) in a normal cycle reads the saved index, not MISP
    assert decide(live_record(), make_ctx(START + timedelta(hours=1), state=state)).reason == "decay-model"
    assert calls == [START]
    state.close()


# -- reading the index from MISP: the fetch plugin's client and retry policy ---------

KEY = "decay-s3cret-Key-0123456789abcdef"


def misp_ctx(misp_url: str = "https://misp.test", **misp: Any) -> RunContext:
    config = build_config({
        "misp": {"url": misp_url, "api_key": KEY, "max_retries": 3, "backoff_initial": "0s", "backoff_max": "1s", **misp},
        "expiry": {"policy": "decay-model"},
        "plugins": {"entrypoints": False},
    })
    return RunContext(config=config, now=START, refetch=True)


def with_mock_misp(ctx: RunContext, handler: Any, sleeps: list[float]) -> list[tuple[str, str]]:
    """Put a fetch client answering through ``handler`` where the fetch plugin keeps it; the requests it saw."""
    seen: list[tuple[str, str]] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return handler(request)  # type: ignore[no-any-return]

    ctx.stash[misp_fetch.CLIENT] = MispClient(
        ctx.config.misp, transport=httpx.MockTransport(recording), sleep=sleeps.append, rng=lambda: 0.5
    )
    return seen


def test_a_429_on_the_index_is_waited_out_like_a_restsearch_429() -> None:
    ctx = misp_ctx()
    answers = iter([
        httpx.Response(429, json={"name": "Rate limit exceeded."}, headers={"Retry-After": "7", "X-Rate-Limit-Reset": "7"}),
        httpx.Response(200, json=index_rows(default_models())),
    ])
    sleeps: list[float] = []
    seen = with_mock_misp(ctx, lambda request: next(answers), sleeps)
    models = plugin.new_cache().reload(ctx)
    assert len(models) == 3
    assert sleeps == [7.0]  # Retry-After, not the backoff
    assert seen == [("GET", "/decayingModel/index")] * 2


def test_a_403_on_the_index_is_one_clear_line_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    ctx = misp_ctx()
    sleeps: list[float] = []
    seen = with_mock_misp(ctx, lambda request: httpx.Response(403, json={"message": "Authentication failed."}), sleeps)
    caplog.set_level("DEBUG")
    assert plugin.new_cache().reload(ctx) == {}
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line == (
        "decay-model: cannot read the decaying models (MISP rejected the API key "
        "(403 on GET https://misp.test/decayingModel/index); check misp.api_key and that its user may use the API); "
        "attributes fall back to the duration rule"
    )
    assert KEY not in caplog.text
    assert len(seen) == 1 and sleeps == []


def test_a_cancelled_cycle_stops_the_index_retries(caplog: pytest.LogCaptureFixture) -> None:
    ctx = misp_ctx(max_retries=10)

    def busy(request: httpx.Request) -> httpx.Response:
        ctx.cancelled.set()  # the cycle ends while the request is out
        return httpx.Response(503, text="unavailable")

    sleeps: list[float] = []
    seen = with_mock_misp(ctx, busy, sleeps)
    with pytest.raises(plugin.IndexUnavailable, match="the poll was stopped"):
        plugin.load_index(ctx)
    assert len(seen) == 1 and sleeps == []


def test_without_a_client_yet_the_index_read_creates_the_fetch_plugins_one() -> None:
    with MispSimulator(api_key=KEY, clock=lambda: START) as sim:
        ctx = misp_ctx(sim.url)
        try:
            result = decide(live_record(model_id=str(sim.models[0]["id"])), ctx)
            shared = ctx.stash[misp_fetch.CLIENT]
            assert isinstance(shared, MispClient) and misp_fetch.client(ctx) is shared
            assert plugin.CACHE in ctx.stash and len(ctx.stash) == 2
        finally:
            ctx.stash.close()
    assert result.reason == "decay-model"  # predicted from the index it read
    assert [(r.method, r.path, r.status) for r in sim.requests] == [("GET", "/decayingModel/index", 200)]
