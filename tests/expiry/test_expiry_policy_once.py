"""``duration_policy`` (the attribute read once) decides as the public rules in a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misp_ti.config import build_config
from misp_ti.expiry import duration_expiry, duration_policy, immediate_expiry
from misp_ti.model import RunContext

NOW = datetime(2024, 6, 1, tzinfo=UTC)
TIMES = st.none() | st.sampled_from(["1617875568", " 1617875568", "1617875568000", "2021-04-08T09:52:48.5+00:00", "", "x", 1617875568, True])
FLAGS = st.none() | st.sampled_from([True, False, 0, 1, "0", "1", "true", "False", "maybe"])
SCORES = st.none() | st.lists(st.sampled_from([{"decayed": True}, {"decayed": False}, "x"]), max_size=3)


def context(by_type: dict[str, str] | None) -> RunContext:
    overrides: dict[str, Any] = {"expiry": {"expire_when_not_to_ids": True}}
    if by_type:
        overrides["expiry"]["by_type"] = by_type
    return RunContext(config=build_config(overrides), now=NOW)


def row(record: Any, doc: dict[str, Any], ctx: RunContext) -> Any:
    try:
        return immediate_expiry(record, doc, ctx) or duration_expiry(record, doc, ctx)
    except ValueError as exc:
        return str(exc)


def once(record: Any, doc: dict[str, Any], ctx: RunContext) -> Any:
    try:
        return duration_policy(record, doc, ctx)
    except ValueError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timestamp=TIMES, last_seen=TIMES, deleted=FLAGS, to_ids=FLAGS, scores=SCORES,
       doc_timestamp=st.none() | st.just("2021-04-08T09:52:48.000Z"), by_type=st.none() | st.just({"domain": "3d"}),
       event_record=st.booleans())
def test_duration_policy_is_the_rules_in_a_row(timestamp: Any, last_seen: Any, deleted: Any, to_ids: Any, scores: Any,
                                               doc_timestamp: Any, by_type: Any, event_record: bool) -> None:
    attribute = {k: v for k, v in {"type": "domain", "timestamp": timestamp, "last_seen": last_seen, "deleted": deleted,
                                   "to_ids": to_ids, "decay_score": scores}.items() if v is not None}
    record: Any = {"Event": {"Attribute": attribute}} if event_record else attribute
    doc: dict[str, Any] = {"misp": {"attribute": {"to_ids": True}}, "threat": {"indicator": {"type": "domain-name"}}}
    if doc_timestamp:
        doc["@timestamp"] = doc_timestamp
    ctx = context(by_type)
    assert once(record, doc, ctx) == row(record, doc, ctx)


def test_the_common_record_expires_after_the_default_validity() -> None:
    ctx = context(None)
    decided = duration_policy({"type": "domain", "timestamp": "1617875568", "to_ids": True}, {}, ctx)
    assert decided.decayed_at == datetime(2021, 4, 8, 9, 52, 48, tzinfo=UTC) + ctx.config.expiry.ioc_expiration_duration
    assert decided.decayed is (decided.decayed_at < NOW)
    assert decided.decayed_at - datetime(2021, 4, 8, 9, 52, 48, tzinfo=UTC) > timedelta(0)
