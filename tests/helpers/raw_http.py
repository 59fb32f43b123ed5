"""A loopback HTTP server that answers however a test tells it to, byte by byte.

For hostile answers no well-behaved server library will produce: a body
trickled one byte at a time, headers that never end, a body far larger
than promised, a gzip bomb. ``answer(sock)`` gets the connected socket after
the request (headers and ``Content-Length`` body) has been read, writes what
it likes, and the connection is closed when it returns.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


@contextlib.contextmanager
def raw_server(
    answer: Callable[[socket.socket], None], *, on_request: Callable[[bytes], None] | None = None
) -> Iterator[str]:
    """Serve on 127.0.0.1 until the block ends; yields the base URL.

    ``on_request`` gets each request's raw bytes (head and body) as read.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    port = listener.getsockname()[1]

    def handle(sock: socket.socket) -> None:
        with sock:
            try:
                request = _read_request(sock)
                if on_request is not None:
                    on_request(request)
                answer(sock)
            except OSError:
                pass  # the client gave up: that is what these tests provoke

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(sock,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def head(status: int = 200, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X".encode()]
    lines += [f"{name.replace('_', '-')}: {value}".encode() for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"
