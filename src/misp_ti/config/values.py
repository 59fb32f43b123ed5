"""The values every configuration section checks: durations, URLs, where a
secret comes from, and the warnings a configuration can raise."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

from misp_ti.errors import ConfigError

ENV_PREFIX = "MISP_TI_"
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``"90d"``, ``"1h30m"``, ``"10m"`` -> timedelta. Units: s, m, h, d, w.

    A bare integer is read as seconds. Anything else is an error (the
    reference silently turned a bad value into 90d).
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '90d', '10m' or '1h30m' (units s, m, h, d, w)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded_duration(float(value))
    if isinstance(value, str):
        text = value.strip()
        pos, total = 0, 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if text and pos == len(text):
            return _bounded_duration(total)
    raise ValueError("expected a duration such as '90d', '10m' or '1h30m' (units s, m, h, d, w)")


#: The longest duration any key takes: a thousand years after any MISP timestamp is still a date.
MAX_DURATION = timedelta(days=365_000)


def _bounded_duration(seconds: float) -> timedelta:
    if not seconds <= MAX_DURATION.total_seconds():  # also refuses NaN
        raise ValueError("too long: at most 365000d (a thousand years), so that every expiry is a date")
    return timedelta(seconds=seconds)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def _at_least_a_second(value: timedelta) -> timedelta:
    if value < timedelta(seconds=1):
        raise ValueError("must be at least 1s (a shorter interval hammers MISP)")
    return value


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds != value.total_seconds():
        return f"{value.total_seconds()}s"
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    Field(json_schema_extra={"format": "duration"}),
]
#: A duration that must not be zero (a timeout).
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
#: A polling interval: at least one second.
Interval = Annotated[Duration, AfterValidator(_at_least_a_second)]


def check_url(value: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """``value`` when it is a URL with one of ``schemes``, a host, and a port in 1-65535."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a usable URL ({exc})") from None
    if parts.scheme.lower() not in schemes:
        raise ValueError(f"expected an {' or '.join(s + '://' for s in schemes)} URL")
    if not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("expected a URL with a host name, e.g. https://misp.example.org")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    if parts.query or parts.fragment:
        raise ValueError("a base URL takes no ?query or #fragment")
    return value


def _backoff_order(section: str, initial: timedelta, longest: timedelta) -> None:
    if longest < initial:
        raise ConfigError(
            f"{section}.backoff_max ({format_duration(longest)}) is shorter than "
            f"{section}.backoff_initial ({format_duration(initial)}): backoff_max caps the doubling delay"
        )


def _one_source(section: str, key: str, value: Any, file: Path | None) -> None:
    if value is not None and file is not None:
        raise ConfigError(
            f"{section}.{key} and {section}.{key}_file are both set (the file, the environment or the "
            "config file): keep one, so that it is clear which secret is used"
        )


class InsecureConfigWarning(UserWarning):
    """A secret others can read (a config file or ``api_key_file``), or a key sent in clear."""


class UnknownVariableWarning(UserWarning):
    """A ``MISP_TI_`` environment variable that no key or option reads (a typo, usually)."""
