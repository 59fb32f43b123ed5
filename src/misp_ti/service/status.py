"""What ``misp-ti status`` and ``/healthz`` report: the state, read beside the writer.

Everything is read from the state file opened read-only (never migrated,
never locked, see :meth:`misp_ti.state.StateStore.open_readonly`) and, for
the embedded store, from its file opened read-only too, so a health check
works while ``run`` polls.

The health code follows docs/contracts.md: ``0`` healthy, ``1`` degraded
(a stream's last cycle failed, or no cycle completed for longer than
``service.degraded_after_intervals`` of its poll intervals), ``2`` unusable
(no state, a state that cannot be read, a bad configuration).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from misp_ti.config import Config
from misp_ti.cycle_report import cursor_time
from misp_ti.errors import MispTiError
from misp_ti.state import StateStore
from misp_ti.timeutil import iso

HEALTHY, DEGRADED, UNUSABLE = 0, 1, 2


@dataclass(frozen=True)
class StatusInputs:
    """What status needs besides the files: the enabled streams, their
    intervals and the refetch period (the engine's, see ``Engine.refetch_interval``)."""

    config: Config
    streams: tuple[str, ...]
    refetch_interval: timedelta | None
    refetch_schedule: str = "refetch"
    #: ``source -> its enabled streams`` with ``[misp.<name>]`` sources; ``None``: ``default`` and ``streams``.
    sources: dict[str, tuple[str, ...]] | None = None

    def cycles(self) -> list[tuple[str, str]]:
        """Every ``(source, stream)`` to report on."""
        sources = self.sources if self.sources is not None else {"default": self.streams}
        return [(source, stream) for source, streams in sources.items() for stream in streams]


def collect(inputs: StatusInputs, *, now: datetime) -> tuple[int, dict[str, Any]]:
    """``(code, report)``; ``report`` is what ``status --json`` prints."""
    config = inputs.config
    state_path = config.state_path()
    report: dict[str, Any] = {"checked_at": iso(now), "state": str(state_path), "streams": {}}
    try:
        state = StateStore.open_readonly(state_path)
    except MispTiError as exc:
        report.update(health="unusable", code=UNUSABLE, reasons=[str(exc)])
        return UNUSABLE, report
    reasons: list[str] = []
    try:
        report["schema_version"] = state.schema_version
        for source, stream in inputs.cycles():
            # the single [misp] keeps its plain stream keys; named sources report as source/stream
            label = stream if source == "default" else f"{source}/{stream}"
            entry, why = _stream_status(state, inputs, stream, now=now, source=source, label=label)
            report["streams"][label] = entry
            reasons.extend(why)
    except sqlite3.Error as exc:
        report.update(health="unusable", code=UNUSABLE, reasons=[f"state file {state_path} cannot be read: {exc}"])
        return UNUSABLE, report
    finally:
        state.close()
    if "sqlite" in config.output.sinks:
        report["embedded_store"] = store_counts(config.output.sqlite.path, now=now)
    code = DEGRADED if reasons else HEALTHY
    report.update(health="degraded" if reasons else "healthy", code=code, reasons=reasons)
    return code, report


def _stream_status(
    state: StateStore, inputs: StatusInputs, stream: str, *, now: datetime, source: str = "default", label: str = ""
) -> tuple[dict[str, Any], list[str]]:
    interval = inputs.config.for_source(source).streams.settings(stream).interval
    cursor = state.get_cursor(stream, source=source)
    cursor_at = cursor_time(cursor, state.cursor_updated_at(stream, source=source))
    history = state.history(stream, source=source)
    completed, failed = history.get("completed"), history.get("failed")
    running = state.in_progress(stream, source=source)
    bound = state.binding(source)
    entry: dict[str, Any] = {
        "source": source,
        "misp": bound.url if bound else None,
        "interval": f"{int(interval.total_seconds())}s",
        "cursor": iso(cursor_at) if cursor_at else None,
        "cursor_lag_seconds": int((now - cursor_at).total_seconds()) if cursor_at else None,
        "last_completed": completed.as_dict() if completed else None,
        "last_failed": failed.as_dict() if failed else None,
        "in_progress": None,
        "next_refetch": None,
    }
    if running is not None:
        entry["in_progress"] = {
            "since": iso(running.started_at),
            "refetch": running.refetch,
            "checkpoint": running.checkpoint,
        }
    if inputs.refetch_interval is not None:
        last = state.last_run(stream, inputs.refetch_schedule, source=source)
        entry["next_refetch"] = iso(last + inputs.refetch_interval) if last else "at the next cycle"
    stream = label or stream
    why: list[str] = []
    if failed is not None and failed.failures_in_row > 0:
        why.append(f"{stream}: the last {failed.failures_in_row} cycle(s) failed, last at {iso(failed.finished_at)}: {failed.error}")
    intervals = inputs.config.service.degraded_after_intervals
    allowed = interval * intervals
    since = completed.finished_at if completed else (running.started_at if running else None)
    if since is None:
        if not why:
            why.append(f"{stream}: no cycle has completed yet")
    elif now - since > allowed:
        what = "no cycle completed" if completed else "the first cycle has been running"
        why.append(f"{stream}: {what} since {iso(since)} (more than {intervals} intervals of {entry['interval']})")
    return entry, why


def store_counts(path: str | Path, *, now: datetime) -> dict[str, Any]:
    """Active and expired IOCs in the embedded store's latest view, read-only."""
    path = Path(path)
    if not path.is_file():
        return {"path": str(path), "error": "no embedded store yet"}
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return {"path": str(path), "error": f"cannot be opened: {exc}"}
    try:
        conn.execute("PRAGMA busy_timeout = 2000")
        now_ms = int(now.timestamp() * 1000)
        # the same rule as EmbeddedStore.counts (active: not decayed and decayed_at in the future)
        active, total = conn.execute(
            "SELECT coalesce(sum(decayed = 0 AND decayed_at > ?), 0), count(*) FROM latest", (now_ms,)
        ).fetchone()
    except sqlite3.Error as exc:
        return {"path": str(path), "error": f"cannot be read: {exc}"}
    finally:
        conn.close()
    return {"path": str(path), "active": active, "expired": total - active}


def render(report: dict[str, Any]) -> str:
    """The human form of a report, a few lines per stream."""
    lines = [f"{report.get('health', '?')}: state {report.get('state')}"]
    lines += [f"  ! {reason}" for reason in report.get("reasons", ())]
    for stream, entry in report.get("streams", {}).items():
        where = f", from {entry['misp']}" if entry.get("source", "default") != "default" and entry.get("misp") else ""
        lines.append(f"{stream} (every {entry['interval']}): cursor at {entry['cursor'] or 'none yet'}{where}")
        done = entry["last_completed"]
        if done:
            lines.append(
                f"  last completed {done['finished_at']}: {done['records']} records, {done['documents']} documents, "
                f"{done['pipeline_errors']} pipeline errors, {done['dead_letters']} dead letters"
            )
        failed = entry["last_failed"]
        if failed:
            lines.append(f"  last failed {failed['finished_at']} ({failed['failures_in_row']} in a row): {failed['error']}")
        running = entry["in_progress"]
        if running:
            lines.append(f"  in progress since {running['since']}, checkpoint {running['checkpoint']}")
        if entry["next_refetch"]:
            lines.append(f"  next refetch {entry['next_refetch']}")
    store = report.get("embedded_store")
    if store:
        counts = store.get("error") or f"{store['active']} active, {store['expired']} expired"
        lines.append(f"embedded store {store['path']}: {counts}")
    return "\n".join(lines)
