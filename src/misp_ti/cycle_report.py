"""What the engine tells about a cycle beyond its counts: where a cursor
stands in time (``status``, the cursor-lag metric) and a log line per
pipeline error, naming the record, rate-limited."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from misp_ti.ecs import is_pipeline_error

log = logging.getLogger("misp_ti.engine")


def cursor_time(cursor: Any, updated_at: datetime | None) -> datetime | None:
    """The time a stream's cursor stands at: the epoch seconds it names
    (``last_timestamp``, or a checkpoint's ``resume_from``), else when it was saved."""
    if isinstance(cursor, dict):
        for key in ("last_timestamp", "resume_from"):
            value = cursor.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return datetime.fromtimestamp(value, UTC)
    return updated_at


class PipelineErrorLog:
    """Logs each pipeline error once, naming the record; past
    :attr:`LIMIT` lines in :attr:`WINDOW` seconds, only counts them."""

    LIMIT = 20
    WINDOW = 60.0

    def __init__(self) -> None:
        self._window_start = 0.0
        self._logged = 0
        self._suppressed = 0

    def report(self, stream: str, records: list[Any], docs: list[dict[str, Any]]) -> None:
        # :meth:`Engine.process` makes exactly one document per record, in order
        aligned = len(records) == len(docs)
        for index, doc in enumerate(docs):
            if is_pipeline_error(doc):
                self._one(stream, records[index] if aligned else None, doc)

    def _one(self, stream: str, record: Any, doc: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.WINDOW:
            if self._suppressed:
                log.warning("%d more pipeline errors were not logged one by one (counted in the summary)", self._suppressed)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged >= self.LIMIT:
            self._suppressed += 1
            return
        self._logged += 1
        uuid = kind = "?"
        if isinstance(record, dict):
            uuid, kind = str(record.get("uuid", "?"))[:64], str(record.get("type", "?"))[:64]
        reason = str(doc.get("error", {}).get("message", "?"))[:300]
        log.warning("%s: pipeline error for record uuid=%r type=%r: %s", stream, uuid, kind, reason)
