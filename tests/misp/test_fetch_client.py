"""MispClient against httpx.MockTransport: request shape and error classification.

MockTransport is the honest tool here: these tests pin what goes on the
wire and how each kind of answer is classified, which no real server can be
told to produce on demand. Behaviour against a realistic MISP is covered by
the simulator tests (test_fetch_simulator.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from misp_ti.config import build_config
from misp_ti.errors import ConfigError, FetchError
from misp_ti.misp.client import MispClient

KEY = "s3cret-Key-0123456789abcdef0123456789abcdef"


def settings(**misp: Any) -> Any:
    base = {
        "url": "https://misp.test",
        "api_key": KEY,
        "max_retries": 3,
        "backoff_initial": "10s",
        "backoff_max": "60s",
    }
    return build_config({"misp": {**base, **misp}}).misp


def attributes(*uuids: str, ts: int = 1_700_000_000) -> bytes:
    return orjson.dumps({"response": {"Attribute": [{"uuid": u, "timestamp": str(ts)} for u in uuids]}})


def make_client(handler: Any, sleeps: list[float] | None = None, **misp: Any) -> MispClient:
    slept = sleeps if sleeps is not None else []
    return MispClient(settings(**misp), transport=httpx.MockTransport(handler), sleep=slept.append, rng=lambda: 0.5)


def test_request_shape_headers_and_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=attributes("a"), headers={"X-Result-Count": "1"})

    client = make_client(handler)
    result = client.search("attributes", {"returnFormat": "json", "limit": 10, "page": 1})
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://misp.test/attributes/restSearch"
    assert request.headers["Authorization"] == KEY  # no "Bearer"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert orjson.loads(request.content) == {"returnFormat": "json", "limit": 10, "page": 1}
    assert [r["uuid"] for r in result.items] == ["a"]
    assert result.result_count == 1 and result.skipped is None and result.attempts == 1


def test_events_scope_path_and_shape() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/events/restSearch"
        event = {"uuid": "e1", "timestamp": "5", "Attribute": [{"uuid": "a"}], "Object": []}
        return httpx.Response(200, content=orjson.dumps({"response": [{"Event": event}]}))

    result = make_client(handler).search("events", {})
    assert result.items[0]["uuid"] == "e1"


@pytest.mark.parametrize(
    ("status", "needle"),
    [
        (403, "MISP rejected the API key"),
        (404, "check misp.url"),
        (405, "405 Method Not Allowed"),
        (401, "401"),
        (400, "refused"),
        (302, "redirected"),
    ],
)
def test_permanent_errors_are_not_retried_and_never_show_the_key(status: int, needle: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        body = {"name": "Authentication failed.", "message": "Authentication failed.", "url": "/attributes/restSearch"}
        return httpx.Response(status, json=body, headers={"Location": "https://misp.test/users/login"})

    with pytest.raises(FetchError) as info:
        make_client(handler).search("attributes", {})
    assert needle in str(info.value)
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, json={"name": "Internal error", "message": "boom", "url": "/x"}),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(503, text="unavailable"),
        httpx.Response(200, text="<!DOCTYPE html><html><body>Login</body></html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b'{"response": {"Attribute": [{"uuid": "a", "timest'),
        httpx.Response(200, json={"response": []}),
        httpx.Response(200, json={"name": "x", "message": "y"}),
        httpx.Response(200, json={"response": {"Attribute": [{"uuid": "a", "timestamp": "1"}, "not an object"]}}),
        httpx.Response(200, json={"response": {"Attribute": []}}, headers={"X-Result-Count": "many"}),
    ],
    ids=["500", "502", "503", "html", "truncated", "wrong-scope-shape", "error-json", "non-object-record", "bad-count-header"],
)
def test_transient_failures_are_retried_with_capped_backoff_then_fail(response: httpx.Response) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return response

    sleeps: list[float] = []
    with pytest.raises(FetchError) as info:
        make_client(handler, sleeps, max_retries=4, backoff_initial="10s", backoff_max="30s").search("attributes", {})
    assert len(calls) == 5
    # equal jitter with rng=0.5: 3/4 of 10, 20, 30 (capped), 30 (capped)
    assert sleeps == [7.5, 15.0, 22.5, 22.5]
    assert "after 5 attempts" in str(info.value)


def test_html_error_page_says_what_it_got() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html><title>Proxy error</title></html>", headers={"content-type": "text/html"})

    with pytest.raises(FetchError) as info:
        make_client(handler, max_retries=0).search("attributes", {})
    assert "not JSON" in str(info.value) and "text/html" in str(info.value) and "Proxy error" in str(info.value)


def test_recovers_after_transient_failures() -> None:
    answers = iter([
        httpx.Response(503, text="busy"),
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, content=attributes("a", "b"), headers={"X-Result-Count": "2"}),
    ])
    client = make_client(lambda request: next(answers))
    result = client.search("attributes", {})
    assert [r["uuid"] for r in result.items] == ["a", "b"] and result.attempts == 3


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "7"}, 7.0), ({"X-Rate-Limit-Reset": "12"}, 12.0), ({}, 7.5)],
)
def test_429_waits_as_told(headers: dict[str, str], expected: float) -> None:
    answers = iter([httpx.Response(429, json={"message": "Rate limit exceeded."}, headers=headers),
                    httpx.Response(200, content=attributes("a"))])
    sleeps: list[float] = []
    make_client(lambda request: next(answers), sleeps).search("attributes", {})
    assert sleeps == [expected]


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "-1"},
        {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},  # long past
        {"Retry-After": "soon"},
        {"Retry-After": "nan"},
        {"Retry-After": "Wed, 99 Foo 2015 99:99:99 GMT"},
        {"X-Rate-Limit-Reset": "-5"},
        {"X-Rate-Limit-Reset": "1000000001"},  # an epoch time in the past
    ],
)
def test_429_with_an_unusable_wait_falls_back_to_the_backoff(headers: dict[str, str]) -> None:
    answers = iter([httpx.Response(429, headers=headers), httpx.Response(200, content=attributes("a"))])
    sleeps: list[float] = []
    make_client(lambda request: next(answers), sleeps).search("attributes", {})
    assert sleeps == [7.5]  # backoff_initial 10s with equal jitter at 0.5, not 0.00 s


def test_429_wait_longer_than_backoff_max_is_still_honoured() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "300"}),
                    httpx.Response(200, content=attributes("a"))])
    sleeps: list[float] = []
    make_client(lambda request: next(answers), sleeps, backoff_max="30s").search("attributes", {})
    assert sleeps == [300.0]


def test_429_asking_longer_than_max_rate_limit_wait_fails_the_poll() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3600"})

    with pytest.raises(FetchError, match="longer than misp.max_rate_limit_wait"):
        make_client(handler).search("attributes", {})


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.RemoteProtocolError("peer closed connection"),
     httpx.ReadError("connection reset by peer")],
    ids=["timeout", "refused", "truncated", "reset"],
)
def test_network_failures_are_retried(exc: Exception) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise exc
        return httpx.Response(200, content=attributes("a"))

    assert make_client(handler).search("attributes", {}).attempts == 3


def test_rate_limit_spaces_requests() -> None:
    sleeps: list[float] = []
    client = make_client(lambda request: httpx.Response(200, content=attributes()), sleeps, rate_limit=4)
    for _ in range(3):
        client.search("attributes", {})
    # the 2nd and 3rd request each wait most of the 0.25 s slot
    assert len(sleeps) == 2 and all(0.2 < s <= 0.5 for s in sleeps)


def test_key_never_in_logs_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = iter([httpx.Response(500, text="x"), httpx.Response(200, content=attributes("a"))])
    client = make_client(lambda request: next(answers))
    client.search("attributes", {})
    assert KEY not in caplog.text and KEY not in repr(client) and KEY not in repr(client.settings)


def test_missing_or_unsendable_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="misp.api_key: not set"):
        MispClient(build_config({"misp": {"url": "https://misp.test"}}).misp)
    with pytest.raises(ConfigError, match="HTTP header") as info:
        MispClient(settings(api_key="abc\ndef-secret"))
    assert "def-secret" not in str(info.value)


def test_verify_off_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    make_client(lambda request: httpx.Response(200, content=attributes()), ssl_verification_mode="none")
    assert "verification" in caplog.text and "OFF" in caplog.text


def test_bad_ca_file_is_a_config_error(tmp_path: Any) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="misp.ca_file"):
        make_client(lambda request: httpx.Response(200), ca_file=str(bad))


def test_timeout_setting_reaches_httpx() -> None:
    client = make_client(lambda request: httpx.Response(200), request_timeout="7s")
    assert client._http.timeout.read == timedelta(seconds=7).total_seconds()


def test_a_record_without_uuid_or_timestamp_is_passed_on_not_refused() -> None:
    # one bad record must not block the stream: the transform marks it as a
    # pipeline_error document; only a body of the wrong shape is refused
    bad = [{"value": "no uuid", "timestamp": "5"}, {"uuid": "u", "timestamp": "soon"}]
    result = make_client(lambda request: httpx.Response(200, json={"response": {"Attribute": bad}})).search("attributes", {})
    assert result.items == bad


def test_a_cancelled_poll_stops_retrying() -> None:
    import threading

    cancelled = threading.Event()
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        cancelled.set()  # the engine's cycle ends while this request is out
        return httpx.Response(503, text="unavailable")

    with pytest.raises(FetchError, match="the poll was stopped"):
        make_client(handler, max_retries=10).search("attributes", {}, cancelled=cancelled)
    assert len(calls) == 1


# -- GET: the same retry policy as restSearch ----------------------------------------

INDEX_PATH = "/decayingModel/index"
INDEX = [{"DecayingModel": {"id": "1", "name": "NIDS", "formula": "Polynomial", "parameters": {}}}]


def ok_answer(request: httpx.Request) -> httpx.Response:
    if request.method == "GET":
        return httpx.Response(200, json=INDEX)
    return httpx.Response(200, content=attributes("a"))


def by_method(method: str) -> Any:
    """Send one request of ``method`` (the restSearch POST or the model-index GET)."""
    if method == "POST":
        return lambda client, **kw: client.search("attributes", {}, **kw)
    return lambda client, **kw: client.get_json(INDEX_PATH, **kw)


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "7"}, 7.0), ({"X-Rate-Limit-Reset": "12"}, 12.0), ({}, 7.5)],
)
def test_429_on_get_waits_as_told_like_restsearch(method: str, headers: dict[str, str], expected: float) -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if len(seen) == 1:
            return httpx.Response(429, json={"message": "Rate limit exceeded."}, headers=headers)
        return ok_answer(request)

    sleeps: list[float] = []
    by_method(method)(make_client(handler, sleeps))
    assert sleeps == [expected]
    path = INDEX_PATH if method == "GET" else "/attributes/restSearch"
    assert seen == [(method, path), (method, path)]


def test_get_json_returns_the_body_and_sends_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok_answer(request)

    assert make_client(handler).get_json(INDEX_PATH) == INDEX
    assert str(seen[0].url) == "https://misp.test/decayingModel/index"
    assert seen[0].headers["Authorization"] == KEY and seen[0].content == b""


def test_429_on_get_asking_longer_than_max_rate_limit_wait_fails() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(429, headers={"Retry-After": "3600"})

    sleeps: list[float] = []
    with pytest.raises(FetchError, match="longer than misp.max_rate_limit_wait"):
        make_client(handler, sleeps).get_json(INDEX_PATH)
    assert len(calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    "response",
    [httpx.Response(503, text="unavailable"), httpx.Response(200, text="<html>Login</html>", headers={"content-type": "text/html"})],
    ids=["503", "html"],
)
def test_transient_get_failures_use_the_same_backoff_and_jitter(response: httpx.Response) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return response

    sleeps: list[float] = []
    with pytest.raises(FetchError) as info:
        make_client(handler, sleeps, max_retries=4, backoff_initial="10s", backoff_max="30s").get_json(INDEX_PATH)
    assert len(calls) == 5 and sleeps == [7.5, 15.0, 22.5, 22.5]
    assert str(info.value).startswith("GET https://misp.test/decayingModel/index failed after 5 attempts")


@pytest.mark.parametrize(
    ("status", "needle"),
    [(403, "MISP rejected the API key"), (404, "check misp.url"), (401, "401"), (400, "refused"), (302, "redirected")],
)
def test_permanent_get_errors_read_like_restsearch_ones(status: int, needle: str) -> None:
    messages = {}
    for method in ("POST", "GET"):
        calls = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)  # noqa: B023 - called before the loop moves on
            body = {"name": "Authentication failed.", "message": "Authentication failed.", "url": request.url.path}
            return httpx.Response(status, json=body, headers={"Location": "https://misp.test/users/login"})

        with pytest.raises(FetchError) as info:
            by_method(method)(make_client(handler))
        assert len(calls) == 1
        messages[method] = str(info.value)
        assert needle in messages[method] and "\n" not in messages[method]
        assert KEY not in messages[method] and KEY not in repr(info.value)
    get = "GET https://misp.test/decayingModel/index"
    assert messages["GET"] == messages["POST"].replace("POST https://misp.test/attributes/restSearch", get)


def test_403_on_get_names_the_request() -> None:
    with pytest.raises(FetchError) as info:
        make_client(lambda request: httpx.Response(403, json={"message": "Authentication failed."})).get_json(INDEX_PATH)
    assert str(info.value) == (
        "MISP rejected the API key (403 on GET https://misp.test/decayingModel/index); "
        "check misp.api_key and that its user may use the API"
    )


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_cancelled_get_stops_retrying_like_restsearch(method: str) -> None:
    import threading

    cancelled = threading.Event()
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        cancelled.set()
        return httpx.Response(429, headers={"Retry-After": "5"})

    sleeps: list[float] = []
    with pytest.raises(FetchError, match="the poll was stopped"):
        by_method(method)(make_client(handler, sleeps, max_retries=10), cancelled=cancelled)
    assert len(calls) == 1 and sleeps == []


def test_get_and_post_share_the_rate_limit() -> None:
    sleeps: list[float] = []
    client = make_client(ok_answer, sleeps, rate_limit=4)
    client.search("attributes", {})
    client.get_json(INDEX_PATH)
    client.search("attributes", {})
    assert len(sleeps) == 2 and all(0.2 < s <= 0.5 for s in sleeps)


@pytest.mark.parametrize("path", ["https://elsewhere.test/x", "//elsewhere.test/x", "decayingModel/index"])
def test_get_json_refuses_anything_but_a_path_below_the_misp_url(path: str) -> None:
    calls = []
    with pytest.raises(ValueError, match="path below misp.url"):
        make_client(lambda request: calls.append(1) or httpx.Response(200, json=[])).get_json(path)
    assert calls == []
