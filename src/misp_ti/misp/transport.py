"""Bounded HTTP answers: a whole-request deadline and a size limit, whatever a server sends.

httpx's timeouts apply to each socket operation: a server that trickles one
byte every two seconds never trips a five-second read timeout, and a body is
held whole in memory, inflated without limit. This module gives the MISP
client what it needs instead:

* :func:`install_deadline` wraps the socket layer (httpcore's network
  backend) of an httpx client so that every connect, TLS handshake, write and
  read gets at most the time left until the deadline of the request in
  progress (:func:`deadline`); past it the operation fails as a timeout. That
  bounds the headers as well as the body.
* :func:`read_body` reads a streamed answer's raw bytes, checks the deadline
  and the size between chunks, and inflates ``gzip``/``deflate`` itself with a
  bound on the output, so a small gzip bomb is refused after ``limit`` bytes
  of output without ever holding more.
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx

#: The encodings :func:`read_body` can inflate, and what the client asks for.
ACCEPT_ENCODING = "gzip, deflate"

_local = threading.local()


class BodyTooLarge(Exception):
    """The answer (raw or inflated) is longer than the limit."""


class DeadlinePassed(Exception):
    """The whole-request deadline passed while the body was read."""


class UnsupportedEncoding(Exception):
    """A ``Content-Encoding`` this reader does not inflate."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Within this block, the socket operations of this thread end by ``now + seconds``."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = end = time.monotonic() + seconds
    try:
        yield end
    finally:
        _local.deadline = previous


def _cap(timeout: float | None) -> float | None:
    end = getattr(_local, "deadline", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the whole-request deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _cap(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _cap(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _cap(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend):
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(host, port, _cap(timeout), local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _cap(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install_deadline(client: httpx.Client) -> int:
    """Wrap the network backend of each of ``client``'s httpx transports
    (the default one and any proxy mounts); returns how many were wrapped.

    A transport that is not httpx's own (a test's ``MockTransport``) has no
    sockets and is left alone; :func:`read_body` still checks the deadline.
    """
    wrapped = 0
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None or isinstance(backend, _DeadlineBackend):
            continue
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
        wrapped += 1
    return wrapped


def _inflater(encoding: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _Deflate()
    raise UnsupportedEncoding(encoding)


class _Deflate:
    """``deflate`` is zlib-wrapped by the standard, raw by some servers: try both."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj()
        self._first = True

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._obj.decompress(data, max_length)
            except zlib.error:
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._obj.decompress(data, max_length)

    def flush(self) -> bytes:
        return self._obj.flush()


def read_body(response: httpx.Response, *, limit: int, end: float) -> bytes:
    """The whole (inflated) body of a streamed ``response``.

    :raises BodyTooLarge: more than ``limit`` bytes arrived, or inflated.
    :raises DeadlinePassed: ``time.monotonic()`` passed ``end`` between chunks.
    :raises UnsupportedEncoding: a content encoding other than gzip or deflate.
    :raises zlib.error: a compressed body that does not inflate.
    """
    if response.is_stream_consumed:
        # built in memory (a test's MockTransport): nothing to stream, still bounded
        if len(response.content) > limit:
            raise BodyTooLarge
        return response.content
    inflater = _inflater(response.headers.get("content-encoding", ""))
    chunks: list[bytes] = []
    received = produced = 0
    for raw in response.iter_raw():
        if time.monotonic() > end:
            raise DeadlinePassed
        received += len(raw)
        if received > limit:
            raise BodyTooLarge
        if inflater is None:
            out = raw
        else:
            # ask for one byte more than room is left: getting it means too large
            out = inflater.decompress(raw, limit - produced + 1)
        produced += len(out)
        if produced > limit:
            raise BodyTooLarge
        if out:
            chunks.append(out)
    if inflater is not None:
        tail = inflater.flush()
        produced += len(tail)
        if produced > limit:
            raise BodyTooLarge
        chunks.append(tail)
    return b"".join(chunks)


def answered(response: httpx.Response, body: bytes) -> httpx.Response:
    """A plain response holding ``body`` (already inflated) with ``response``'s status and headers."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length")]
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)
