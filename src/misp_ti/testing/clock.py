"""A clock that only moves when a test says so.

``ManualClock`` is a callable returning the current simulated time, so it can
be passed wherever misp-ti expects a clock (``Engine(clock=clock)``) and to the
MISP simulator, which then resolves relative time filters (``"5d"``) and decay
scores against the same instant as the engine.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["ManualClock"]


def _whole_seconds_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"ManualClock needs an aware datetime (UTC), got naive {value!r}")
    return value.astimezone(UTC).replace(microsecond=0)


class ManualClock:
    """Simulated wall clock: aware UTC, whole seconds (MISP timestamps have 1 s resolution)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = _whole_seconds_utc(start or datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        with self._lock:
            return self._now

    __call__ = now

    def timestamp(self) -> int:
        """The current simulated time as epoch seconds."""
        return int(self.now().timestamp())

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds); returns the new time."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ValueError(f"ManualClock.advance needs a non-negative delta, got {delta}")
        with self._lock:
            self._now = _whole_seconds_utc(self._now + delta)
            return self._now

    def set(self, value: datetime) -> datetime:
        """Jump to ``value`` (backwards too: tests of clock skew need it)."""
        with self._lock:
            self._now = _whole_seconds_utc(value)
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"
