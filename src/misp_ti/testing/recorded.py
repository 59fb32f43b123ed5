"""Replay exchanges recorded from a real MISP to :class:`~misp_ti.misp.client.MispClient`.

A recording is NDJSON (optionally gzipped), one exchange a line::

    {"label": "backfill:attrs_p100",
     "request": {"method": "POST", "path": "/attributes/restSearch", "body": {...}},
     "response": {"status": 200, "headers": [["X-Result-Count", "101"], ...], "body": "<text as sent>"}}

``request.body`` is the decoded JSON body, the raw text of a body that is not
JSON, or ``null`` for none. :class:`ReplayTransport` is an httpx transport
that answers each request with the recorded response of the same method,
path and body (bodies compared as JSON, so key order and spacing do not
matter), byte for byte with the recorded status and headers. A request the
recording does not hold is never answered: the transport raises
:class:`UnmatchedRequest` naming it, and keeps it in
:attr:`ReplayTransport.unmatched` for the test to assert on (the client may
catch what a transport raises). Identical requests are answered in recorded
order; asking one more often than it was recorded is unmatched too.

Use::

    recording = Recording.load("tests/data/real_misp_2.5.1/exchanges.ndjson.gz")
    poll = recording.select("backfill:attrs_p100")
    transport = poll.transport()
    client = MispClient(config.misp, transport=transport)
    # engine clock: poll.now() (the end of the recorded timestamp window)
    ...
    transport.assert_all_served()
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

__all__ = ["RecordedExchange", "Recording", "ReplayTransport", "UnmatchedRequest", "RecordingError"]


class RecordingError(ValueError):
    """A recording file that cannot be read as recorded exchanges."""


class UnmatchedRequest(AssertionError):
    """A request the recording holds no (more) answers for."""


def _canonical(body: Any) -> str:
    """One text per request body: JSON with sorted keys, so equal JSON is equal text."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _decode_request_body(content: bytes) -> Any:
    if not content.strip():
        return None
    text = content.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text  # recorded as the raw text, like MISP received it


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """One recorded request and MISP's answer."""

    label: str
    method: str
    path: str
    #: Decoded JSON, raw text of a body that is not JSON, or ``None``.
    body: Any
    status: int
    headers: tuple[tuple[str, str], ...]
    #: The response body as text, exactly as MISP sent it.
    text: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.method.upper(), self.path, _canonical(self.body))

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), else ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def json(self) -> Any:
        return json.loads(self.text)

    def timestamp_window(self) -> tuple[int, int] | None:
        """``body["timestamp"]`` when it is a ``[from, to]`` pair of epoch seconds."""
        window = self.body.get("timestamp") if isinstance(self.body, dict) else None
        if isinstance(window, list) and len(window) == 2 and all(type(v) is int for v in window):
            return window[0], window[1]
        return None


def _exchange(raw: Any, where: str) -> RecordedExchange:
    try:
        request, response = raw["request"], raw["response"]
        return RecordedExchange(
            label=str(raw.get("label", "")),
            method=str(request["method"]),
            path=str(request["path"]),
            body=request.get("body"),
            status=int(response["status"]),
            headers=tuple((str(k), str(v)) for k, v in response.get("headers", ())),
            text=str(response.get("body", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(f"{where}: not a recorded exchange ({type(exc).__name__}: {exc})") from None


class Recording:
    """An ordered list of recorded exchanges."""

    def __init__(self, exchanges: Iterable[RecordedExchange]) -> None:
        self.exchanges = list(exchanges)

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        """Read an ``.ndjson`` or ``.ndjson.gz`` file."""
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        exchanges = []
        try:
            with opener(path, "rt", encoding="utf-8") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        try:
                            raw = json.loads(line)
                        except ValueError as exc:
                            raise RecordingError(f"{path}:{number}: not JSON ({exc})") from None
                        exchanges.append(_exchange(raw, f"{path}:{number}"))
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise RecordingError(f"{path}: cannot read ({exc})") from None
        return cls(exchanges)

    def __iter__(self) -> Iterator[RecordedExchange]:
        return iter(self.exchanges)

    def __len__(self) -> int:
        return len(self.exchanges)

    def labels(self) -> list[str]:
        """The labels in first-seen order."""
        return list(dict.fromkeys(e.label for e in self.exchanges))

    def select(self, *labels: str) -> Recording:
        """The exchanges of ``labels``, in recorded order."""
        unknown = set(labels) - set(self.labels())
        if unknown:
            raise KeyError(f"no exchanges labelled {sorted(unknown)}; labels: {self.labels()}")
        return Recording(e for e in self.exchanges if e.label in labels)

    def window(self) -> tuple[int, int]:
        """``(earliest from, latest to)`` of the recorded ``timestamp`` windows.

        A poll's window ends at the engine's ``now`` (re-scans inside it ask
        shorter spans), so the latest ``to`` is the instant to replay the poll
        at, and ``to - from`` of a first poll is its ``initial_interval``.
        """
        windows = [w for e in self.exchanges if (w := e.timestamp_window()) is not None]
        if not windows:
            raise RecordingError("no request of this recording has a [from, to] timestamp window")
        return min(start for start, _ in windows), max(end for _, end in windows)

    def now(self) -> datetime:
        """The poll's ``now`` (the end of its timestamp window), an aware UTC datetime."""
        return datetime.fromtimestamp(self.window()[1], UTC)

    def transport(self) -> ReplayTransport:
        return ReplayTransport(self.exchanges)


class ReplayTransport(httpx.BaseTransport):
    """Answers requests from recorded exchanges; see the module docstring."""

    def __init__(self, exchanges: Iterable[RecordedExchange]) -> None:
        self._pending: dict[tuple[str, str, str], deque[RecordedExchange]] = defaultdict(deque)
        self._recorded = 0
        for exchange in exchanges:
            self._pending[exchange.key].append(exchange)
            self._recorded += 1
        self._lock = threading.Lock()
        #: Exchanges answered, in order.
        self.served: list[RecordedExchange] = []
        #: ``"METHOD path body"`` of every request that had no answer.
        self.unmatched: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = _decode_request_body(request.read())
        key = (request.method.upper(), request.url.path, _canonical(body))
        with self._lock:
            queue = self._pending.get(key)
            exchange = queue.popleft() if queue else None
            if exchange is None:
                described = f"{key[0]} {key[1]} {key[2][:600]}"
                self.unmatched.append(described)
            else:
                self.served.append(exchange)
        if exchange is None:
            raise UnmatchedRequest(f"the recording holds no (more) answers for {described}")
        return httpx.Response(
            exchange.status,
            headers=list(exchange.headers),
            content=exchange.text.encode("utf-8"),
            request=request,
        )

    @property
    def unserved(self) -> list[RecordedExchange]:
        """Recorded exchanges no request has asked for yet."""
        with self._lock:
            return [e for queue in self._pending.values() for e in queue]

    def assert_all_served(self) -> None:
        """Fail unless every request matched and every recorded exchange was asked for."""
        if self.unmatched:
            raise UnmatchedRequest(f"{len(self.unmatched)} request(s) not in the recording; first: {self.unmatched[0]}")
        left = self.unserved
        if left:
            first = left[0]
            raise UnmatchedRequest(
                f"{len(left)} of {self._recorded} recorded exchange(s) never asked for; "
                f"first: {first.method} {first.path} {_canonical(first.body)[:600]}"
            )
