"""An Elasticsearch client node whose answers are bounded in time and size.

elastic-transport's urllib3 node gives urllib3 ``Timeout(total=request_timeout)``,
which urllib3 applies to each socket read, and reads the whole body into memory
(``response.data``). This node reads the body itself, one socket read at a
time (``read1``, decompressing at most what is asked), and stops when the
request's deadline passes or the answer exceeds ``output.elasticsearch.max_response_size``.

Not bounded here: headers that are trickled (urllib3 and http.client read
them line by line, each read under the per-read timeout).
"""

from __future__ import annotations

import time
from typing import Any

from elastic_transport import Urllib3HttpNode
from urllib3.exceptions import ProtocolError, ReadTimeoutError

_CHUNK = 64 * 1024
#: Starts the message of a bound that was hit (``describe_error`` shows such messages).
BOUND_HIT = "bounded read"


class _Answer:
    """What :meth:`Urllib3HttpNode.perform_request` reads of a response."""

    def __init__(self, status: int, headers: Any, data: bytes):
        self.status, self.headers, self.data = status, headers, data


class _BoundedPool:
    """Stands in for the node's urllib3 pool: ``urlopen`` reads the body within bounds."""

    def __init__(self, pool: Any, *, timeout: float, limit: int):
        self._pool, self._timeout, self._limit = pool, timeout, limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def urlopen(self, method: str, url: str, **kw: Any) -> _Answer:
        timeout = kw.get("timeout")
        seconds = timeout if isinstance(timeout, int | float) else self._timeout
        end = time.monotonic() + seconds
        response = self._pool.urlopen(method, url, preload_content=False, **kw)
        complete = False
        try:
            chunks, size = [], 0
            while True:
                if time.monotonic() > end:
                    raise ReadTimeoutError(self._pool, url, f"{BOUND_HIT}: the answer took longer than {seconds:g}s in all")
                chunk = response.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self._limit:
                    raise ProtocolError(
                        f"{BOUND_HIT}: the answer is larger than output.elasticsearch.max_response_size ({self._limit} bytes)"
                    )
                chunks.append(chunk)
            complete = True
            return _Answer(response.status, response.headers, b"".join(chunks))
        finally:
            if not complete:
                response.close()  # the rest of the answer is not read: drop the connection
            response.release_conn()

def bounded_node_class(*, timeout: float, limit: int) -> type[Urllib3HttpNode]:
    """A node class for ``Elasticsearch(node_class=...)`` with these bounds."""

    class BoundedUrllib3Node(Urllib3HttpNode):
        def __init__(self, config: Any):
            super().__init__(config)
            self.pool = _BoundedPool(self.pool, timeout=timeout, limit=limit)  # type: ignore[assignment]

    return BoundedUrllib3Node
