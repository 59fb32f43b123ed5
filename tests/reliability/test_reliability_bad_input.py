"""Bad input: thousands of random and malformed MISP records and responses
through the real fetch, transform and expiry.

Each example is one restSearch answer: a page mixing valid attributes
(:func:`misp_ti.testing.strategies.attributes` and object attributes) with
malformed ones (:func:`~misp_ti.testing.strategies.malformed_attributes`), or
a malformed response or body. It is served to the real ``MispClient``
through ``httpx.MockTransport`` (the way to hand exact bytes to the client),
and the engine runs a cycle with the default fetch, transform and expiry. A
collecting sink receives the documents.

Every record is accounted for:

* a record paging cannot work with (not an object, no uuid, no numeric
  timestamp) makes the poll fail with a :class:`~misp_ti.errors.FetchError`
  that names its position; nothing is emitted and the cursor stays;
* otherwise the cycle completes and record ``i`` became document ``i``:
  either a normal document for the same uuid, or a ``pipeline_error``
  document whose ``event.original`` is that record; valid records never
  become errors, and the cycle's ``pipeline_errors`` count matches;
* a malformed response or body ends in a ``FetchError`` or a completed cycle,
  never in any other exception.
"""

from __future__ import annotations

import json
import uuid as uuid_module
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misp_ti import hookimpl
from misp_ti.config import build_config
from misp_ti.default_plugins import misp_fetch
from misp_ti.engine import Engine
from misp_ti.errors import FetchError, MispTiError
from misp_ti.misp import lenient
from misp_ti.misp.client import MispClient
from misp_ti.model import SinkReport
from misp_ti.state import StateStore
from misp_ti.testing import strategies as ms

NOW = datetime(2031, 1, 1, tzinfo=UTC)  # after every generated timestamp
STREAM = "threat_attributes"
#: Examples per run (``BAD_INPUT_EXAMPLES=5000`` for a deeper one); each is a
#: whole engine cycle, so the test's own time limit is generous: a loaded CI
#: box runs it several times slower than a quiet one.
EXAMPLES = int(__import__("os").environ.get("BAD_INPUT_EXAMPLES", "1000"))


class Collector:
    """A sink that keeps what it is given (the documents are what is checked here)."""

    MISP_TI_SINKS = ("collect",)

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    @hookimpl
    def emit(self, stream: str, docs: list[dict[str, Any]], ctx: Any) -> SinkReport | None:
        if not ctx.sink_enabled("collect"):
            return None
        for doc in docs:
            orjson.dumps(doc)  # every document must be serialisable by any sink
        self.docs.extend(docs)
        return SinkReport("collect", delivered=len(docs))


@pytest.fixture(scope="module")
def engine() -> Any:
    config = build_config({
        "misp": {"url": "https://misp.test", "api_key": "bad-input-key-0123456789", "max_retries": 0, "page_size": 1000},
        "streams": {STREAM: {"initial_interval": "100000d"}},
        "output": {"sinks": ["collect"]},
        "plugins": {"entrypoints": False},
    })
    collector = Collector()
    answering = Answering()
    with Engine(config, clock=lambda: NOW, extra_plugins=[collector], state=StateStore(":memory:")) as eng:
        eng.collector = collector  # type: ignore[attr-defined]
        eng.answering = answering  # type: ignore[attr-defined]
        eng.stash[misp_fetch.CLIENT] = MispClient(config.misp, transport=httpx.MockTransport(answering), sleep=lambda s: None)
        yield eng


def _dumps(value: Any) -> bytes:
    # the standard library writes what orjson refuses (integers past 64 bits, NaN):
    # a broken server may send those too
    return json.dumps(value).encode()


def _pageable(record: Any) -> bool:
    # only a record that is not a JSON object makes the page's shape wrong;
    # an object lacking uuid or timestamp is passed on and becomes a pipeline_error
    return isinstance(record, dict)


def _unique_uuids(tagged: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    seen: set[str] = set()
    out = []
    for i, (kind, record) in enumerate(tagged):
        if isinstance(record, dict) and isinstance(record.get("uuid"), str) and record["uuid"]:
            if record["uuid"] in seen:
                record = {**record, "uuid": str(uuid_module.UUID(int=i + 1))}
            seen.add(record["uuid"])
        out.append((kind, record))
    return out


records = st.lists(
    st.one_of(
        ms.attributes().map(lambda r: ("valid", r)),
        ms.object_attributes().map(lambda r: ("valid", r)),
        # most malformed records are JSON objects, so they reach the transform
        # instead of failing the whole page at the fetch
        ms.malformed_attributes().filter(lambda r: _pageable(r)).map(lambda r: ("malformed", r)),
        ms.malformed_attributes().filter(lambda r: _pageable(r)).map(lambda r: ("malformed", r)),
        ms.malformed_attributes().map(lambda r: ("malformed", r)),
    ),
    min_size=1,
    max_size=6,
).map(_unique_uuids)

answers = st.one_of(
    # pages of records three times in five; malformed responses and bodies the rest
    records.map(lambda tagged: ("records", tagged)),
    records.map(lambda tagged: ("records", tagged)),
    records.map(lambda tagged: ("records", tagged)),
    ms.malformed_responses().map(lambda body: ("response", _dumps(body))),
    ms.malformed_bodies().map(lambda body: ("body", body)),
)


class Answering:
    """The MockTransport handler: ``body`` for the first request of a poll, then the end."""

    def __init__(self) -> None:
        self.body = b""
        self.served = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.served += 1
        if self.served > 1:  # past the first page: the end
            return httpx.Response(200, headers={"X-Result-Count": "1"}, content=b'{"response": {"Attribute": []}}')
        return httpx.Response(200, headers={"content-type": "application/json"}, content=self.body)


TALLY: dict[str, int] = {"examples": 0, "records": 0, "malformed records": 0, "pipeline_error documents": 0, "polls refused by fetch": 0}


@pytest.mark.timeout(1800)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(answer=answers)
def test_bad_records_and_responses_are_all_accounted_for(engine: Any, answer: tuple[str, Any]) -> None:
    kind, payload = answer
    engine.state.reset(STREAM)
    engine.collector.docs.clear()
    if kind == "records":
        body = _dumps({"response": {"Attribute": [r for _, r in payload]}})
    else:
        body = payload
    engine.answering.body, engine.answering.served = body, 0
    TALLY["examples"] += 1
    try:
        [result] = engine.run_once()
        error: MispTiError | None = None
    except MispTiError as exc:  # anything else escaping is a crash and fails the test
        error = exc
    docs = engine.collector.docs

    if error is not None:
        TALLY["polls refused by fetch"] += 1
        assert isinstance(error, FetchError), f"{type(error).__name__}: {error}"
        assert docs == [], "nothing may be emitted from a page the fetch refused"
        assert engine.state.get_cursor(STREAM) is None
        if kind == "records":
            try:
                served = orjson.loads(body)["response"]["Attribute"]
            except orjson.JSONDecodeError:
                assert "not JSON" in str(error)
            else:
                first_bad = next(i for i, r in enumerate(served) if not _pageable(r))
                assert f"response.Attribute[{first_bad}]" in str(error)
        return

    assert result.completed
    assert engine.state.get_cursor(STREAM) == {"last_timestamp": int(NOW.timestamp())}
    if kind != "records":
        return
    try:
        served = orjson.loads(body)["response"]["Attribute"]  # the records as the engine received them
    except orjson.JSONDecodeError:
        # not JSON as a whole (NaN, an integer past 64 bits): read record by record
        served = lenient.attribute_records(body)
    assert all(_pageable(r) for r in served), "a record that is not a JSON object must make the poll fail"
    assert len(docs) == len(payload), "every record becomes exactly one document"
    errors = 0
    for doc, (origin, _), record in zip(docs, payload, served, strict=True):
        if doc.get("event", {}).get("kind") == "pipeline_error":
            errors += 1
            assert origin == "malformed", f"a valid record became a pipeline error: {doc.get('error')}"
            if lenient.is_unparsed(record):  # it carries its raw text
                assert doc["event"]["original"] == record[lenient.UNPARSED]
            else:
                assert orjson.loads(doc["event"]["original"]) == record
            assert doc["error"]["message"]
        else:
            assert doc["misp"]["attribute"]["uuid"] == record["uuid"]
            assert isinstance(doc["misp"]["attribute"]["decayed"], bool)
    assert result.pipeline_errors == errors
    TALLY["records"] += len(payload)
    TALLY["malformed records"] += sum(1 for origin, _ in payload if origin == "malformed")
    TALLY["pipeline_error documents"] += errors


def test_report_bad_input_counts() -> None:
    """Prints what the property test above went through (run it in the same session)."""
    if not TALLY["examples"]:
        pytest.skip("the bad-input property test did not run in this session")
    print("\n[bad input] " + ", ".join(f"{v} {k}" for k, v in TALLY.items()))
    assert TALLY["examples"] >= EXAMPLES // 2
