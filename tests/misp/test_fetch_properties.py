"""Property tests: whatever MISP (or a proxy in front of it) answers, the engine
either completes the poll or stops with a FetchError that says what it got,
and garbage never moves the cursor.

Answers are served by ``httpx.MockTransport`` (the only way to produce
arbitrary bytes and headers on demand); everything after the transport is
real: the client, the paging, the engine, the ECS transform, the store.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import misp_ti.misp.paging
from misp_ti.config import build_config
from misp_ti.default_plugins import misp_fetch
from misp_ti.engine import Engine
from misp_ti.errors import FetchError
from misp_ti.misp.client import MispClient

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
END = int(NOW.timestamp())
KEY = "property-key-0123456789abcdef"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
plausible_attribute = st.fixed_dictionaries(
    {"uuid": st.uuids().map(str), "timestamp": st.integers(END - 5000, END + 5).map(str)},
    optional={"type": st.sampled_from(["ip-dst", "domain", "md5", "bogus"]) | st.text(max_size=5), "value": json_values,
              "to_ids": json_values, "deleted": json_values, "decay_score": json_values, "Event": json_values},
)
bodies = st.one_of(
    json_values.map(orjson.dumps),
    st.binary(max_size=60),
    st.just(b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"),
    st.lists(plausible_attribute | json_values, max_size=6).map(lambda items: orjson.dumps({"response": {"Attribute": items}})),
    st.lists(plausible_attribute, max_size=6).map(lambda items: orjson.dumps({"response": {"Attribute": items}})),
)
header_values = st.one_of(st.integers(-3, 3000).map(str), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8))
headers = st.dictionaries(
    st.sampled_from(["X-Result-Count", "X-Skipped-Elements-Count", "Retry-After", "X-Rate-Limit-Reset", "Content-Type"]),
    header_values, max_size=4,
)
answers = st.tuples(st.sampled_from([200, 200, 200, 200, 429, 500, 503, 403, 404, 405, 302, 418]), headers, bodies)


def _is_valid_page(status: int, body: bytes) -> bool:
    if status != 200:
        return False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    items = data.get("response", {}).get("Attribute") if isinstance(data, dict) and isinstance(data.get("response"), dict) else None
    return isinstance(items, list)


def run_against(sequence: list[tuple[int, dict[str, str], bytes]], directory: Path) -> tuple[Engine, BaseException | None, list[Any]]:
    served: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = sequence[min(len(served), len(sequence) - 1)]
        served.append(answer)
        status, hdrs, body = answer
        return httpx.Response(status, headers=hdrs, content=body)

    config = build_config({
        "misp": {"url": "https://misp.test", "api_key": KEY, "page_size": 5, "max_retries": 2,
                 "backoff_initial": "0.001s", "backoff_max": "2s"},
        "output": {"sqlite": {"path": str(directory / "store.db")}},
        "plugins": {"entrypoints": False},
    })
    engine = Engine(config, clock=lambda: NOW)
    engine.stash[misp_fetch.CLIENT] = MispClient(config.misp, transport=httpx.MockTransport(handler), sleep=lambda s: None)
    try:
        engine.run_once()
    except Exception as exc:  # the property is about which exceptions escape
        return engine, exc, served
    return engine, None, served


@pytest.fixture(autouse=True)
def _short_runaway_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    # a transport that says "more" forever is given up after 15 pages instead of 1000
    monkeypatch.setattr(misp_ti.misp.paging, "MAX_BLIND_PAGES", 15)


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(answers, min_size=1, max_size=6))
def test_any_answer_ends_in_completion_or_a_fetch_error(sequence: list[tuple[int, dict[str, str], bytes]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine, error, served = run_against(sequence, Path(directory))
        with engine:
            cursor = engine.state.get_cursor("threat_attributes")
            if error is None:
                assert cursor == {"last_timestamp": END}
                # completion needs at least one answer that was a real page
                assert any(_is_valid_page(status, body) for status, _, body in served)
            else:
                assert isinstance(error, FetchError), f"{type(error).__name__}: {error}"
                assert cursor is None
                assert KEY not in str(error)
                assert str(error).strip()


garbage_bodies = st.one_of(
    json_values.filter(lambda v: not (isinstance(v, dict) and isinstance(v.get("response"), dict))).map(orjson.dumps),
    st.binary(min_size=1, max_size=60).filter(lambda b: not b.strip().startswith((b"{", b"["))),
    st.lists(json_values.filter(lambda v: not isinstance(v, dict)), min_size=1, max_size=3).map(
        lambda items: orjson.dumps({"response": {"Attribute": items}})
    ),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=garbage_bodies, hdrs=headers.filter(lambda h: "Retry-After" not in h))
def test_garbage_never_moves_the_cursor_and_is_described(body: bytes, hdrs: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine, error, served = run_against([(200, hdrs, body)], Path(directory))
        with engine:
            assert isinstance(error, FetchError)
            assert engine.state.get_cursor("threat_attributes") is None
            pending = engine.state.in_progress("threat_attributes")
            assert pending is not None and pending.checkpoint is None  # not even a checkpoint
        assert len(served) == 3  # 1 + max_retries
        message = str(error)
        assert "after 3 attempts" in message
        # says what it got: the header, the content type and the start of the body, or the misplaced value
        assert any(word in message for word in ("not JSON", "without", "header", "where an object belongs", "uuid", "timestamp"))


def test_a_page_repeating_a_malformed_row_while_saying_more_is_given_up_soon() -> None:
    # Found by the property above: a malformed row (no uuid) is passed on each
    # time as it cannot be recognised, but it is no progress; before, such a
    # page kept the reader going as far as X-Result-Count claimed.
    rows = [{"uuid": f"00000000-0000-4000-8000-00000000000{i}", "timestamp": str(END - 10)} for i in range(4)]
    page = orjson.dumps({"response": {"Attribute": [*rows, {"value": "no uuid"}]}})
    sequence = [(200, {"X-Result-Count": "100000"}, page)]
    with tempfile.TemporaryDirectory() as directory:
        engine, error, served = run_against(sequence, Path(directory))
        with engine:
            assert engine.state.get_cursor("threat_attributes") is None
    assert isinstance(error, FetchError) and "without a new row" in str(error)
    assert len(served) <= 2 * 15 + 5, len(served)  # the guard (15 blind pages here), not 100000 / 5 pages
