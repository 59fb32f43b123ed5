"""Elasticsearch answers are bounded too: a trickled body ends at the request
deadline, an oversized answer is refused, each with a one-line SinkError."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from helpers.raw_http import head, raw_server
from misp_ti.config import build_config
from misp_ti.errors import SinkError
from misp_ti.sinks.elasticsearch.client import make_client, send


def es_client(url: str, **es: Any) -> Any:
    settings = build_config(
        {"output": {"sinks": ["elasticsearch"], "elasticsearch": {"hosts": [url], "api_key": "a2V5OnNlY3JldA==", "max_retries": 0, **es}}}
    ).output.elasticsearch
    return make_client(settings)


REQUEST = {"method": "GET", "path": "/_cluster/health", "params": {}, "body": None}


def test_a_trickled_answer_ends_at_the_request_deadline() -> None:
    def answer(sock: socket.socket) -> None:
        sock.sendall(head(200, Content_Type="application/json", Content_Length="150", X_Elastic_Product="Elasticsearch"))
        for _ in range(150):  # 60 s at most, each byte well inside the per-read timeout
            sock.sendall(b" ")
            time.sleep(0.4)

    with raw_server(answer) as url:
        started = time.monotonic()
        # urllib3's own read timeout or this node's deadline, whichever sees it first
        with pytest.raises(SinkError, match=r"unreachable \(ConnectionTimeout") as info:
            send(es_client(url, request_timeout="2s"), REQUEST)
        assert time.monotonic() - started < 30
    assert "\n" not in str(info.value)


def test_an_oversized_answer_is_refused_without_holding_it() -> None:
    def answer(sock: socket.socket) -> None:
        sock.sendall(head(200, Content_Type="application/json", Content_Length=str(8 << 20), X_Elastic_Product="Elasticsearch"))
        for _ in range(8):
            sock.sendall(b" " * (1 << 20))

    with raw_server(answer) as url:
        with pytest.raises(SinkError, match=r"larger than output.elasticsearch.max_response_size \(1048576 bytes\)"):
            send(es_client(url, max_response_size=1 << 20), REQUEST)


def test_a_normal_answer_still_arrives() -> None:
    body = b'{"status": "green"}'

    def answer(sock: socket.socket) -> None:
        sock.sendall(head(200, Content_Type="application/json", Content_Length=str(len(body)), X_Elastic_Product="Elasticsearch") + body)

    with raw_server(answer) as url:
        assert send(es_client(url), REQUEST).body == {"status": "green"}
