"""Time helpers shared by the transform, expiry and sinks (hot path: keep cheap)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    """The current time, UTC, whole seconds (MISP timestamps have 1 s resolution)."""
    return datetime.now(UTC).replace(microsecond=0)


def iso(value: datetime) -> str:
    """``2021-04-08T09:52:48.000Z``: the date format the reference writes."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.year < 1000:  # strftime writes such years unpadded ("5-01-01"), isoformat pads them
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    # isoformat is several times cheaper than strftime, and this runs for every document
    return f"{value.isoformat(timespec='seconds')[:19]}.{value.microsecond // 1000:03d}Z"


def epoch_text(seconds: int) -> str:
    """``2026-11-26T10:00:00Z``: an epoch (MISP's 1 s timestamps) as people read it in logs."""
    return from_epoch(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_epoch(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; a value without zone is UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def iso_epoch_ms(raw: object) -> int | None:
    """Epoch milliseconds of an ISO date string (a document's ``@timestamp``,
    ``misp.decayed_at``); ``None`` for anything else."""
    if isinstance(raw, str):
        try:
            return epoch_ms(parse_iso(raw))
        except ValueError:
            return None
    return None
