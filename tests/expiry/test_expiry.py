"""Expiry rules shared by the built-in policies, and the ``duration`` and
``refetch`` policies (``misp_ti.default_plugins.expiry``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from misp_ti.config import build_config
from misp_ti.default_plugins import expiry
from misp_ti.errors import ConfigError
from misp_ti.manager import make_plugin_manager
from misp_ti.model import RunContext
from misp_ti.timeutil import from_epoch, iso

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TS = int((NOW - timedelta(days=10)).timestamp())


def ctx_for(now: datetime = NOW, **expiry_settings: Any) -> RunContext:
    config = build_config({"expiry": expiry_settings, "plugins": {"entrypoints": False}})
    return RunContext(config=config, now=now)


def attribute(**fields: Any) -> dict[str, Any]:
    record = {"uuid": "u-1", "type": "ip-dst", "value": "10.0.0.1", "timestamp": str(TS), "to_ids": True, "deleted": False}
    record.update(fields)
    return record


def doc_for(record: dict[str, Any], indicator_type: str = "ipv4-addr") -> dict[str, Any]:
    return {"_id": "x", "@timestamp": iso(from_epoch(int(record["timestamp"]))), "threat": {"indicator": {"type": indicator_type}}}


def decide(record: dict[str, Any], ctx: RunContext, stream: str = "threat_attributes", doc: dict[str, Any] | None = None) -> Any:
    return expiry.compute_expiry(stream=stream, record=record, doc=doc or doc_for(attribute()), ctx=ctx)


def scores(*decayed: bool) -> list[dict[str, Any]]:
    return [{"score": 0 if d else 50, "base_score": 80, "decayed": d, "DecayingModel": {"id": str(i), "name": f"m{i}"}}
            for i, d in enumerate(decayed, 1)]


# -- decay vote --------------------------------------------------------------


@pytest.mark.parametrize(
    ("votes", "decayed"),
    [((True,), True), ((False,), False), ((True, False), True), ((True, False, False), False),
     ((True, True, False), True), ((True, True, False, False), True), ((True, False, False, False), False), ((), False)],
)
def test_vote_needs_at_least_half_of_the_models(votes: tuple[bool, ...], decayed: bool) -> None:
    result = decide(attribute(decay_score=scores(*votes)), ctx_for())
    assert (result.reason == "decay-vote") is decayed
    if decayed:
        assert result.decayed and result.decayed_at == NOW - timedelta(minutes=2)
    else:
        assert not result.decayed and result.decayed_at == from_epoch(TS) + timedelta(days=90)


@pytest.mark.parametrize("policy", ["duration", "refetch"])
def test_vote_comes_before_every_policy(policy: str) -> None:
    result = decide(attribute(decay_score=scores(True, True, False)), ctx_for(policy=policy))
    assert result.decayed and result.reason == "decay-vote"


# -- duration ----------------------------------------------------------------


def test_duration_counts_from_the_newer_of_timestamp_and_last_seen() -> None:
    last_seen = datetime(2026, 2, 25, 8, 30, tzinfo=UTC)
    result = decide(attribute(last_seen=last_seen.isoformat()), ctx_for(ioc_expiration_duration="5d"))
    assert result == expiry.Expiry(False, last_seen + timedelta(days=5), "duration")
    older = attribute(last_seen="2020-01-01T00:00:00+00:00")
    assert decide(older, ctx_for(ioc_expiration_duration="5d")).decayed_at == from_epoch(TS) + timedelta(days=5)


def test_duration_last_seen_in_microseconds_is_read_as_such() -> None:
    # MISP stores *_seen as microseconds; a numeric string of that size is not seconds
    last_seen = datetime(2026, 2, 27, tzinfo=UTC)
    record = attribute(last_seen=str(int(last_seen.timestamp()) * 1_000_000))
    assert decide(record, ctx_for(ioc_expiration_duration="1d")).decayed_at == last_seen + timedelta(days=1)


def test_duration_past_expiry_is_decayed() -> None:
    result = decide(attribute(), ctx_for(ioc_expiration_duration="9d"))
    assert result.decayed and result.decayed_at == from_epoch(TS) + timedelta(days=9)


def test_by_type_overrides_by_misp_type_then_ecs_type() -> None:
    ctx = ctx_for(ioc_expiration_duration="90d", by_type={"ip-dst": "2d", "ipv4-addr": "3d", "url": "4w"})
    assert decide(attribute(), ctx).decayed_at == from_epoch(TS) + timedelta(days=2)
    record = attribute(type="ip-src")  # not listed: the ECS indicator type decides
    assert decide(record, ctx, doc=doc_for(record, "ipv4-addr")).decayed_at == from_epoch(TS) + timedelta(days=3)
    other = attribute(type="domain")
    assert decide(other, ctx, doc=doc_for(other, "domain-name")).decayed_at == from_epoch(TS) + timedelta(days=90)


@pytest.mark.parametrize("bad", ["90x", "90", "ninety days", "-5d", "5 d"])
def test_bad_durations_are_config_errors_naming_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"expiry\.ioc_expiration_duration"):
        build_config({"expiry": {"ioc_expiration_duration": bad}})
    with pytest.raises(ConfigError, match=r"expiry\.by_type\.url"):
        build_config({"expiry": {"by_type": {"url": bad}}})


def test_attribute_without_any_time_is_an_error_not_a_guess() -> None:
    record = attribute()
    del record["timestamp"]
    with pytest.raises(ValueError, match="neither a timestamp nor a last_seen"):
        decide(record, ctx_for(), doc={"_id": "x"})


def test_threat_stream_records_are_read_inside_the_event() -> None:
    inner = attribute(timestamp=str(TS + 3600), decay_score=scores(False))
    record = {"Event": {"uuid": "e-1", "timestamp": str(TS - 99999), "Attribute": inner}}
    result = decide(record, ctx_for(ioc_expiration_duration="1d"), stream="threat")
    assert result.decayed_at == from_epoch(TS + 3600) + timedelta(days=1)
    in_object = {"Event": {"uuid": "e-1", "Object": {"uuid": "o-1", "Attribute": attribute(deleted=True)}}}
    assert decide(in_object, ctx_for(), stream="threat").reason == "deleted"


@given(
    timestamp=st.integers(0, 4_000_000_000),
    last_seen=st.none() | st.integers(0, 4_000_000_000),
    validity=st.integers(0, 400 * 86400),
    now=st.integers(0, 4_000_000_000),
    votes=st.lists(st.booleans(), max_size=5),
)
def test_duration_never_expires_a_live_attribute_before_ingest(
    timestamp: int, last_seen: int | None, validity: int, now: int, votes: list[bool]
) -> None:
    record = attribute(timestamp=str(timestamp), decay_score=scores(*votes))
    if last_seen is not None:
        record["last_seen"] = iso(from_epoch(last_seen))
    result = decide(record, ctx_for(from_epoch(now), ioc_expiration_duration=f"{validity}s"))
    if result.reason == "decay-vote":
        assert sum(votes) * 2 >= len(votes) > 0
        assert result.decayed and result.decayed_at == from_epoch(now) - timedelta(minutes=2)
        return
    assert result.decayed_at == from_epoch(max(timestamp, last_seen or 0)) + timedelta(seconds=validity)
    assert result.decayed == (result.decayed_at < from_epoch(now))
    if not result.decayed:
        assert result.decayed_at >= from_epoch(now)


# -- deletions and revocations -------------------------------------------------


@pytest.mark.parametrize("policy", ["duration", "refetch", "decay-model"])
def test_soft_deleted_attributes_expire_at_ingest(policy: str) -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    ctx = ctx_for(policy=policy)
    for flag in (True, "1", 1):
        [result] = [pm.hook.compute_expiry(stream="threat_attributes", record=attribute(deleted=flag), doc=doc_for(attribute()), ctx=ctx)]
        assert result.decayed and result.decayed_at == NOW and result.reason == "deleted"


def test_deletions_can_be_kept_live() -> None:
    result = decide(attribute(deleted=True), ctx_for(expire_deleted=False))
    assert result.reason == "duration" and not result.decayed


def test_to_ids_off_expires_only_when_configured() -> None:
    assert decide(attribute(to_ids=False), ctx_for()).reason == "duration"
    result = decide(attribute(to_ids=False), ctx_for(expire_when_not_to_ids=True))
    assert result.decayed and result.decayed_at == NOW and result.reason == "not-to-ids"
    assert decide(attribute(to_ids=True), ctx_for(expire_when_not_to_ids=True)).reason == "duration"


# -- refetch -------------------------------------------------------------------


def test_refetch_keeps_live_attributes_until_after_the_next_refetch() -> None:
    # default grace: twice the stream's poll interval (10m), so the document
    # outlives the wait for the first poll after the refetch is due
    result = decide(attribute(timestamp="0"), ctx_for(policy="refetch"))
    assert result == expiry.Expiry(False, NOW + timedelta(hours=24, minutes=20), "refetch")
    exact = decide(attribute(), ctx_for(policy="refetch", refetch_interval="6h", refetch_grace="0s"))
    assert exact.decayed_at == NOW + timedelta(hours=6)


def test_each_policy_is_answered_by_exactly_one_plugin() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    answers = {}
    for policy in ("duration", "refetch", "decay-model"):
        ctx = ctx_for(policy=policy)
        impls = [impl.function(stream="threat_attributes", record=attribute(), doc=doc_for(attribute()), ctx=ctx)
                 for impl in pm.hook.compute_expiry.get_hookimpls()]
        decided = [r for r in impls if r is not None]
        assert len(decided) == 1, policy
        answers[policy] = decided[0].reason
    # no decay_score: decay-model has nothing to predict from and uses the duration rule
    assert answers == {"duration": "duration", "refetch": "refetch", "decay-model": "decay-model:duration"}


def test_split_record_with_object_attribute_uses_the_object_attribute() -> None:
    from misp_ti.default_plugins.expiry import attribute_of

    context = {"uuid": "context", "decay_score": []}
    primary = {"uuid": "primary", "deleted": True}
    record = {"Event": {"Attribute": context, "Object": {"Attribute": primary}}}
    assert attribute_of(record) is primary
    assert attribute_of({"Event": {"Attribute": context}}) is context


# -- decay-model overrides from the stream filters ------------------------------------


def overrides_ctx(filters: dict[str, Any]) -> RunContext:
    config = build_config({"streams": {"threat_attributes": {"filters": filters}}, "plugins": {"entrypoints": False}})
    return RunContext(config=config, now=NOW)


def test_model_overrides_are_read_from_the_stream_filters() -> None:
    ctx = overrides_ctx({"modelOverrides": {"lifetime": "30", "decay_speed": "fast"}, "score": 40})
    assert expiry.model_overrides("threat_attributes", ctx) == {"threshold": 40.0, "lifetime": 30.0}
    assert expiry.model_overrides("threat", ctx) == {}


def test_model_overrides_are_worked_out_once_per_context(monkeypatch: pytest.MonkeyPatch) -> None:
    from misp_ti.expiry import decay_model

    calls = []
    parse = decay_model.parse_overrides
    monkeypatch.setattr(decay_model, "parse_overrides", lambda filters: calls.append(filters) or parse(filters))
    ctx = overrides_ctx({"modelOverrides": {"threshold": 50}})
    first = expiry.model_overrides("threat_attributes", ctx)
    assert expiry.model_overrides("threat_attributes", ctx) is first and len(calls) == 1
    # another context, another config: its own values, whatever the ids
    assert expiry.model_overrides("threat_attributes", overrides_ctx({"score": 20})) == {"threshold": 20.0}
    assert len(calls) == 2


# MISP times: one home (misp_ti.misp.records), readers of different strictness

_ISO = "2021-04-08T09:52:48.750Z"
_ISO_SECONDS = 1617875568


@pytest.mark.parametrize(
    ("value", "seconds", "moment", "keyset"),
    [
        ("1617875568", 1617875568, from_epoch(1617875568), 1617875568),
        (1617875568, 1617875568, from_epoch(1617875568), 1617875568),
        ("1617875568000", 1617875568, from_epoch(1617875568), None),  # ms: scaled, except by paging
        ("1617875568000000", 1617875568, from_epoch(1617875568), None),  # µs, as MISP stores *_seen
        (1617875568.9, 1617875568, from_epoch(1617875568), None),
        (_ISO, _ISO_SECONDS, from_epoch(_ISO_SECONDS + 0.75), None),  # PHP truncates; expiry keeps the fraction
        (f" {_ISO} ", _ISO_SECONDS, None, None),
        ("-5", None, None, None),
        (-5, -5, from_epoch(-5), None),
        ("", None, None, None),
        (None, None, None, None),
        (True, None, None, None),
        ("soon", None, None, None),
    ],
)
def test_misp_time_readers(value: Any, seconds: int | None, moment: datetime | None, keyset: int | None) -> None:
    from misp_ti.misp.records import record_timestamp, timestamp_datetime, timestamp_seconds

    assert timestamp_seconds(value) == seconds
    assert timestamp_datetime(value) == moment
    assert record_timestamp({"timestamp": value}) == keyset


def test_the_plugin_module_keeps_the_old_names_of_the_shared_rules() -> None:
    import misp_ti.expiry as rules

    assert expiry.immediate_expiry is rules.immediate_expiry and expiry.reference_time is rules.reference_time
