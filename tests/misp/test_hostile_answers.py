"""What a hostile or broken MISP can send, against a real socket: time and memory stay bounded.

A loopback server (helpers.raw_http) writes the answers byte by byte; the
client under test is the real one with its real httpx transport. Time
bounds are generous multiples of the configured deadline (the point is
"ends", not "ends fast"); memory is measured in a subprocess with
``resource.getrusage``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from helpers.raw_http import head, raw_server
from misp_ti.config import build_config
from misp_ti.errors import ConfigError, FetchError
from misp_ti.misp.client import MispClient

KEY = "s3cret-Key-0123456789abcdef0123456789abcdef"
TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
OK_BODY = json.dumps({"response": {"Attribute": [{"uuid": "a", "timestamp": "1700000000"}]}}).encode()


def client(url: str, **misp: Any) -> MispClient:
    settings = build_config({"misp": {"url": url, "api_key": KEY, "max_retries": 0, **misp}}).misp
    return MispClient(settings, sleep=lambda s: None)


def trickle(prefix: bytes, payload: bytes, every: float = 0.4):
    def answer(sock: socket.socket) -> None:
        sock.sendall(prefix)
        for byte in payload:  # at most len(payload) * every seconds: the server stops by itself
            sock.sendall(bytes([byte]))
            time.sleep(every)

    return answer


@pytest.mark.parametrize(
    "answer",
    [
        # the body: 150 bytes at 0.4 s = 60 s, each read well inside the 2 s timeout
        trickle(head(200, Content_Type="application/json", Content_Length="150"), b" " * 150),
        # the headers themselves never end
        trickle(b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"a" * 150),
    ],
    ids=["body", "headers"],
)
def test_a_trickling_answer_ends_at_the_request_deadline(answer: Any) -> None:
    with raw_server(answer) as url:
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"timed out after 2s") as info:
            client(url, request_timeout="2s").search("attributes", {})
        elapsed = time.monotonic() - started
    assert "\n" not in str(info.value)
    assert elapsed < 30  # 2 s deadline; without one the trickle lasts 60 s


def test_a_trickling_answer_is_retried_then_fails_within_the_retries_deadlines() -> None:
    calls = []

    def answer(sock: socket.socket) -> None:
        calls.append(1)
        trickle(head(200, Content_Length="150"), b" " * 150)(sock)

    with raw_server(answer) as url:
        with pytest.raises(FetchError, match="failed after 2 attempts"):
            client(url, request_timeout="1s", max_retries=1).search("attributes", {})
    assert len(calls) == 2


def test_an_answer_larger_than_the_limit_fails_once_without_a_second_download() -> None:
    calls = []

    def answer(sock: socket.socket) -> None:
        calls.append(1)
        sock.sendall(head(200, Content_Type="application/json", Content_Length=str(10 << 20)))
        for _ in range(10):
            sock.sendall(b" " * (1 << 20))

    with raw_server(answer) as url:
        with pytest.raises(FetchError, match=r"larger than misp.max_response_size \(1048576 bytes") as info:
            client(url, max_response_size=1 << 20, max_retries=3).search("attributes", {})
    assert len(calls) == 1 and "page_size" in str(info.value)


def test_a_gzip_answer_is_inflated_and_a_small_bomb_is_refused() -> None:
    packed = zlib.compressobj(6, zlib.DEFLATED, 31)
    good = packed.compress(OK_BODY) + packed.flush()
    bomb_maker = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(bomb_maker.compress(b" " * (1 << 20)) for _ in range(8)) + bomb_maker.flush()
    assert len(bomb) < 20_000  # 8 MiB of blanks

    def answer_with(body: bytes):
        def answer(sock: socket.socket) -> None:
            sock.sendall(head(200, Content_Type="application/json", Content_Encoding="gzip", Content_Length=str(len(body))) + body)

        return answer

    with raw_server(answer_with(good)) as url:
        assert [r["uuid"] for r in client(url).search("attributes", {}).items] == ["a"]
    with raw_server(answer_with(bomb)) as url:
        with pytest.raises(FetchError, match="larger than misp.max_response_size"):
            client(url, max_response_size=1 << 20).search("attributes", {})


def test_a_body_in_an_encoding_not_asked_for_is_a_clear_retryable_error() -> None:
    def answer(sock: socket.socket) -> None:
        sock.sendall(head(200, Content_Encoding="compress", Content_Length="4") + b"abcd")

    with raw_server(answer) as url:
        with pytest.raises(FetchError, match="encoding misp-ti did not ask for: 'compress'"):
            client(url).search("attributes", {})


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, zlib
    from helpers.raw_http import head, raw_server
    from misp_ti.config import build_config
    from misp_ti.errors import ConfigError, FetchError
    from misp_ti.misp.client import MispClient

    kind = sys.argv[1]
    calls = []
    if kind == "bomb":  # 1 GiB of blanks in about 1 MB of gzip
        maker = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b" " * (1 << 20)
        BODY = b"".join(maker.compress(block) for _ in range(1024)) + maker.flush()

    def answer(sock):
        calls.append(1)
        if kind == "bomb":
            sock.sendall(head(200, Content_Type="application/json", Content_Encoding="gzip",
                              Content_Length=str(len(BODY))) + BODY)
        else:  # 600 MB, whatever the limit asked for
            sock.sendall(head(200, Content_Type="application/json", Content_Length=str(600 << 20)))
            block = b" " * (1 << 20)
            for _ in range(600):
                sock.sendall(block)

    with raw_server(answer) as url:
        settings = build_config({"misp": {"url": url, "api_key": "k" * 40, "max_retries": 2}}).misp
        try:
            MispClient(settings, sleep=lambda s: None).search("attributes", {"limit": 1000})
            error = None
        except FetchError as exc:
            error = str(exc)
    print(json.dumps({"error": error, "calls": len(calls), "compressed": len(BODY) if kind == "bomb" else None,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


@pytest.mark.parametrize("kind", ["huge", "bomb"])
def test_memory_stays_bounded_for_a_600_mb_answer_and_a_1_gib_gzip_bomb(kind: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, kind], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] and "misp.max_response_size (268435456 bytes" in result["error"]
    assert result["calls"] == 1  # refused, not downloaded again
    if kind == "bomb":
        assert result["compressed"] < 2 << 20
    # the default limit is 256 MiB: what is held stays near it, far from 600 MB or 1 GiB
    assert result["max_rss_mb"] < 500, result


def test_a_password_in_misp_url_is_refused_without_being_shown() -> None:
    # httpx would send URL user-info as HTTP Basic auth, replacing the header
    # that carries the MISP key: refused up front, and never echoed
    password = "PASSWORD-in-the-url"
    with pytest.raises(ConfigError) as info:
        build_config({"misp": {"url": f"https://user:{password}@misp.example.org", "api_key": KEY}})
    assert "misp.url" in str(info.value) and "in place of the MISP key" in str(info.value)
    assert password not in str(info.value)


def test_a_proxy_password_is_used_but_never_reaches_an_error_or_a_log(caplog: pytest.LogCaptureFixture) -> None:
    password = "PASSWORD-of-the-proxy"
    seen: list[bytes] = []

    def answer(sock: socket.socket) -> None:
        sock.sendall(head(503, Content_Length="0", Connection="close"))

    with raw_server(answer, on_request=seen.append) as url:
        proxy = url.replace("http://", f"http://user:{password}@")
        misp_client = client("http://misp.internal.test", max_retries=1, proxy=proxy)
        with caplog.at_level("WARNING", logger="misp_ti"), pytest.raises(FetchError) as info:
            misp_client.search("attributes", {})
    assert "failed after 2 attempts" in str(info.value)
    assert password not in str(info.value) + caplog.text
    assert "retry 1 of 1" in caplog.text
    # the proxy got the credentials, as Proxy-Authorization, and the MISP key as Authorization
    assert len(seen) == 2
    request = seen[0].lower()
    assert request.startswith(b"post http://misp.internal.test/attributes/restsearch ")
    assert b"proxy-authorization: basic " in request and f"authorization: {KEY}".lower().encode() in request


@pytest.mark.parametrize(("url", "warns"), [("http://misp.example", True), ("https://misp.example", False), ("http://127.0.0.1:8080", False), ("http://localhost", False)])
def test_a_plain_http_misp_url_warns_that_the_key_travels_in_clear(url: str, warns: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="misp_ti"):
        client(url).close()
    assert ("the API key and the indicators travel in clear" in caplog.text) is warns
