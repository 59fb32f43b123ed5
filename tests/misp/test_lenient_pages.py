"""A page that is not valid JSON as a whole: one bad record is one pipeline_error, the rest arrives.

The bodies are what a MISP could send: a lone surrogate escape or a raw
byte that is not UTF-8 inside one attribute value. When the body cannot be
cut into records, the error names the byte offset and the cursor stays.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from helpers.raw_http import head, raw_server
from misp_ti.config import build_config
from misp_ti.engine import Engine
from misp_ti.errors import FetchError
from misp_ti.misp import lenient
from misp_ti.misp.client import MispClient
from misp_ti.testing.fixtures import make_client_config

KEY = "s3cret-Key-0123456789abcdef0123456789abcdef"
TS = 1_700_000_000


def record(uuid: str, value: str = "198.51.100.7") -> bytes:
    return orjson.dumps({"uuid": uuid, "id": "1", "event_id": "1", "type": "ip-dst", "category": "Network activity",
                         "to_ids": True, "value": value, "timestamp": str(TS), "deleted": False, "Event": {"id": "1", "uuid": "e1", "info": "x"}})


GOOD_A = record("0a000000-0000-4000-8000-000000000001")
GOOD_C = record("0a000000-0000-4000-8000-000000000003")
# the same shape with a value orjson (and any strict JSON reader) refuses
SURROGATE = record("0a000000-0000-4000-8000-000000000002", "VALUE").replace(b'"VALUE"', b'"evil\\ud800"')
NOT_UTF8 = record("0a000000-0000-4000-8000-000000000002", "VALUE").replace(b'"VALUE"', b'"caf\xe9"')


def page(*records: bytes) -> bytes:
    return b'{"response": {"Attribute": [' + b", ".join(records) + b"]}}"


def mock_client(body: bytes, **misp: Any) -> MispClient:
    settings = build_config({"misp": {"url": "https://misp.test", "api_key": KEY, "max_retries": 1, **misp}}).misp
    return MispClient(settings, transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)), sleep=lambda s: None)


@pytest.mark.parametrize("bad", [SURROGATE, NOT_UTF8], ids=["surrogate-escape", "raw-latin1-byte"])
def test_one_bad_record_becomes_a_placeholder_and_the_rest_is_read(bad: bytes) -> None:
    items = mock_client(page(GOOD_A, bad, GOOD_C)).search("attributes", {}).items
    assert [i.get("uuid") for i in items] == ["0a000000-0000-4000-8000-000000000001", None, "0a000000-0000-4000-8000-000000000003"]
    assert lenient.is_unparsed(items[1])
    assert items[1][lenient.UNPARSED] == bad.decode("utf-8", "backslashreplace")  # its raw text, whole


@pytest.mark.parametrize(
    ("body", "offset"),
    [
        (page(GOOD_A, SURROGATE)[:-3], None),  # truncated: ends inside the list
        (b'{"response": {"Attribute": [' + GOOD_A + b" " + GOOD_C + b"]}}", len(b'{"response": {"Attribute": [') + len(GOOD_A) + 1),
        (b'{"response": {"Attribute": [' + GOOD_A + b"]}} trailing", len(b'{"response": {"Attribute": [') + len(GOOD_A)),
    ],
    ids=["truncated", "no-comma", "trailing-text"],
)
def test_a_body_that_cannot_be_split_names_the_byte_offset(body: bytes, offset: int | None) -> None:
    with pytest.raises(FetchError) as info:
        mock_client(body).search("attributes", {})
    message = str(info.value)
    assert "not JSON (at byte" in message and "cannot be read record by record either" in message
    assert "\n" not in message
    if offset is not None:
        assert f"at byte {offset})" in message


def test_an_invalid_utf8_error_names_the_byte_of_the_bad_byte() -> None:
    body = b'{"response": [' + b"x" * 10 + b"\xff]"
    with pytest.raises(FetchError, match=r"not JSON \(at byte 24:"):
        mock_client(body).search("events", {})


def test_the_engine_delivers_the_page_with_one_pipeline_error_carrying_the_raw_text(
    tmp_path: Path, misp_make_engine: Callable[..., Engine]
) -> None:
    body = page(GOOD_A, SURROGATE, GOOD_C)

    def answer(sock: socket.socket) -> None:
        sock.sendall(head(200, Content_Type="application/json", Content_Length=str(len(body))) + body)

    out = tmp_path / "docs.ndjson"
    with raw_server(answer) as url:
        overrides = {
            "streams": {"threat_attributes": {"initial_interval": "36500d"}},
            "output": {"sinks": ["sqlite", "ndjson"], "ndjson": {"path": str(out)}},
        }
        engine = misp_make_engine(config=make_client_config(url, KEY, tmp_path, overrides))
        [result] = engine.run_once(streams=["threat_attributes"])
    assert result.pipeline_errors == 1
    assert result.delivered == {"sqlite": 3, "ndjson": 3}
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    errors = [d for d in docs if d["event"]["kind"] == "pipeline_error"]
    assert len(errors) == 1 and errors[0]["event"]["original"] == SURROGATE.decode()
    assert "invalid JSON" in errors[0]["error"]["message"]
    delivered = sorted(d["misp"]["attribute"]["uuid"] for d in docs if d["event"]["kind"] != "pipeline_error")
    assert delivered == ["0a000000-0000-4000-8000-000000000001", "0a000000-0000-4000-8000-000000000003"]


def test_a_body_that_cannot_be_split_fails_the_cycle_and_the_cursor_stays(
    tmp_path: Path, misp_make_engine: Callable[..., Engine]
) -> None:
    body = page(GOOD_A, SURROGATE, GOOD_C)[:-5]  # cut inside the last record

    def answer(sock: socket.socket) -> None:
        sock.sendall(head(200, Content_Type="application/json", Content_Length=str(len(body))) + body)

    with raw_server(answer) as url:
        overrides = {"misp": {"max_retries": 1}, "streams": {"threat_attributes": {"initial_interval": "36500d"}}}
        engine = misp_make_engine(config=make_client_config(url, KEY, tmp_path, overrides))
        with pytest.raises(FetchError, match=r"at byte \d+.*cannot be read record by record either"):
            engine.run_once(streams=["threat_attributes"])
    assert engine.state.get_cursor("threat_attributes") is None


# --- /events/restSearch: {"response": [{"Event": {...}}, ...]} (MISP's JsonExport for events)

def event(uuid: str, attribute_uuid: str, value: str = "198.51.100.8") -> bytes:
    attribute = {"uuid": attribute_uuid, "id": "7", "event_id": "1", "type": "ip-dst", "category": "Network activity",
                 "to_ids": True, "value": value, "timestamp": str(TS), "deleted": False}
    return orjson.dumps({"Event": {"id": "1", "uuid": uuid, "info": "x", "timestamp": str(TS), "date": "2023-11-14",
                                   "published": True, "Attribute": [attribute], "Object": []}})


EVENT_A = event("0e000000-0000-4000-8000-00000000000a", "0a000000-0000-4000-8000-0000000000a1")
EVENT_C = event("0e000000-0000-4000-8000-00000000000c", "0a000000-0000-4000-8000-0000000000c1")
EVENT_SURROGATE = event("0e000000-0000-4000-8000-00000000000b", "0a000000-0000-4000-8000-0000000000b1", "VALUE").replace(
    b'"VALUE"', b'"evil\\ud800"')
EVENT_NOT_UTF8 = event("0e000000-0000-4000-8000-00000000000b", "0a000000-0000-4000-8000-0000000000b1", "VALUE").replace(
    b'"VALUE"', b'"caf\xe9"')


def event_page(*events: bytes) -> bytes:
    return b'{"response": [' + b",".join(events) + b"]}\n"


@pytest.mark.parametrize("bad", [EVENT_SURROGATE, EVENT_NOT_UTF8], ids=["surrogate-escape", "raw-latin1-byte"])
def test_one_bad_event_becomes_a_placeholder_and_the_other_events_are_read(bad: bytes) -> None:
    items = mock_client(event_page(EVENT_A, bad, EVENT_C)).search("events", {}).items
    assert [i.get("uuid") for i in items] == ["0e000000-0000-4000-8000-00000000000a", None, "0e000000-0000-4000-8000-00000000000c"]
    assert items[0]["Attribute"][0]["value"] == "198.51.100.8"  # unwrapped from {"Event": ...} as usual
    assert lenient.is_unparsed(items[1])
    assert items[1][lenient.UNPARSED] == bad.decode("utf-8", "backslashreplace")


def test_an_empty_event_list_with_a_bad_byte_elsewhere_is_unsplittable_but_a_clean_empty_list_reads() -> None:
    assert lenient.event_records(b'{"response": [ ]}\n') == []
    with pytest.raises(lenient.Unsplittable) as info:
        lenient.event_records(b'{"response": [' + EVENT_A + b"]} \xff")
    assert info.value.offset == len(b'{"response": [') + len(EVENT_A)


@pytest.mark.parametrize(
    ("body", "offset"),
    [
        (event_page(EVENT_A, EVENT_SURROGATE)[:-4], None),  # truncated inside the last event
        (b'{"response": [' + EVENT_A + b" " + EVENT_C + b"]}", len(b'{"response": [') + len(EVENT_A) + 1),
        (b'{"response": {"Attribute": [' + EVENT_SURROGATE + b"]}}", 0),  # not the event list's shape
    ],
    ids=["truncated", "no-comma", "attribute-shape"],
)
def test_an_events_body_that_cannot_be_split_names_the_byte_offset(body: bytes, offset: int | None) -> None:
    with pytest.raises(FetchError) as info:
        mock_client(body).search("events", {})
    message = str(info.value)
    assert "not JSON (at byte" in message and "cannot be read record by record either" in message
    assert "\n" not in message
    if offset is not None:
        assert f"at byte {offset})" in message


def test_the_threat_stream_delivers_the_other_events_and_one_pipeline_error_and_moves_the_cursor(
    tmp_path: Path, misp_make_engine: Callable[..., Engine]
) -> None:
    body = event_page(EVENT_A, EVENT_SURROGATE, EVENT_C)

    def answer(sock: socket.socket) -> None:
        sock.sendall(head(200, Content_Type="application/json", Content_Length=str(len(body))) + body)

    out = tmp_path / "docs.ndjson"
    with raw_server(answer) as url:
        overrides = {
            "streams": {"threat_attributes": {"enabled": False}, "threat": {"enabled": True, "initial_interval": "36500d"}},
            "output": {"sinks": ["ndjson"], "ndjson": {"path": str(out)}},
        }
        engine = misp_make_engine(config=make_client_config(url, KEY, tmp_path, overrides))
        [result] = engine.run_once(streams=["threat"])
    assert result.pipeline_errors == 1
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    errors = [d for d in docs if d["event"]["kind"] == "pipeline_error"]
    assert len(errors) == 1 and errors[0]["event"]["original"] == EVENT_SURROGATE.decode()
    assert "invalid JSON" in errors[0]["error"]["message"]
    delivered = sorted(d["misp"]["attribute"]["uuid"] for d in docs if d["event"]["kind"] != "pipeline_error")
    assert delivered == ["0a000000-0000-4000-8000-0000000000a1", "0a000000-0000-4000-8000-0000000000c1"]
    # everything on the page was delivered (two documents and the error), so the window is done
    cursor = engine.state.get_cursor("threat")
    assert cursor is not None and "last_timestamp" in cursor and "resume_from" not in cursor


def test_an_events_body_that_cannot_be_split_fails_the_cycle_and_the_cursor_stays(
    tmp_path: Path, misp_make_engine: Callable[..., Engine]
) -> None:
    body = event_page(EVENT_A, EVENT_SURROGATE, EVENT_C)[:-6]  # cut inside the last event

    def answer(sock: socket.socket) -> None:
        sock.sendall(head(200, Content_Type="application/json", Content_Length=str(len(body))) + body)

    with raw_server(answer) as url:
        overrides = {"misp": {"max_retries": 1},
                     "streams": {"threat_attributes": {"enabled": False}, "threat": {"enabled": True, "initial_interval": "36500d"}}}
        engine = misp_make_engine(config=make_client_config(url, KEY, tmp_path, overrides))
        with pytest.raises(FetchError, match=r"at byte \d+.*cannot be read record by record either"):
            engine.run_once(streams=["threat"])
    assert engine.state.get_cursor("threat") is None
