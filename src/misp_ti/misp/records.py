"""MISP records: the attribute a record is about, and MISP's timestamps.

MISP writes ``timestamp`` as a string of epoch seconds, ``first_seen`` and
``last_seen`` as ISO 8601 (stored in microseconds, so some exports carry
16-digit epoch numbers), sightings' ``date_sighting`` as epoch seconds.
Each reader below says how strict it is, because the callers need different
answers for the same bad value:

* :func:`record_timestamp`: the keyset timestamp paging sorts on (strict:
  a non-negative whole number of seconds, else ``None``);
* :func:`timestamp_seconds`: whole epoch seconds of any MISP time (epoch
  number in s, ms or µs, or ISO truncated to the second, as PHP's
  ``format('U')`` does), for the decay-model arithmetic;
* :func:`timestamp_datetime`: the same times as a ``datetime``, ISO keeping
  its fraction, for the expiry rules;
* :func:`misp_ti.ecs.values.strict_epoch_seconds`: the ECS transform's
  reader (anything but epoch seconds raises: the record becomes a
  ``pipeline_error`` document).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from misp_ti.timeutil import from_epoch, parse_iso

#: The two restSearch answers (scopes) the client validates, and where MISP
#: serves each (here, not in the client, so stream specs need no HTTP stack).
PATHS = {"attributes": "/attributes/restSearch", "events": "/events/restSearch"}
#: The longest ``timestamp`` string paging accepts (epoch seconds until year 33658).
MAX_TIMESTAMP_DIGITS = 12


def record_attribute(record: Any) -> Mapping[str, Any]:
    """The MISP attribute inside a raw record of either built-in stream.

    ``threat_attributes`` records are attributes; ``threat`` records are
    ``{"Event": {..., "Attribute": {...}}}`` or carry the attribute under
    ``Event.Object.Attribute`` (then primary, even with an ``Event.Attribute``
    beside it). Anything else is an empty mapping.
    """
    if type(record) is dict and "timestamp" in record:  # an attribute (the answer below, sooner)
        return record
    if not isinstance(record, Mapping):
        return {}
    event = record.get("Event")
    if "timestamp" in record or "decay_score" in record or not isinstance(event, Mapping):
        return record
    # a record that carries an object attribute is about it (the event's
    # own attribute beside it is context), as in the ECS transform
    obj = event.get("Object")
    if isinstance(obj, Mapping) and isinstance(obj.get("Attribute"), Mapping):
        return obj["Attribute"]
    attribute = event.get("Attribute")
    if isinstance(attribute, Mapping):
        return attribute
    return {}


def record_timestamp(item: Mapping[str, Any]) -> int | None:
    """The record's ``timestamp`` as paging's keyset needs it: epoch seconds
    given as a non-negative int or a string of at most 12 digits; ``None``
    for anything else (no scaling of ms or µs, no ISO)."""
    raw = item.get("timestamp")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if raw >= 0 else None
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= MAX_TIMESTAMP_DIGITS:
        return int(raw)
    return None


def scale_to_seconds(number: int) -> int:
    """Whole seconds from an epoch number in s, ms or µs (MISP stores
    ``first_seen``/``last_seen`` in microseconds; ``timestamp`` in seconds)."""
    if abs(number) >= 10**14:
        return number // 1_000_000
    if abs(number) >= 10**11:
        return number // 1000
    return number


def _is_epoch_number(value: Any) -> bool:
    return isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit())


def _absent(value: Any) -> bool:
    return value is None or value == "" or isinstance(value, bool)


def timestamp_seconds(value: Any) -> int | None:
    """Whole epoch seconds of a MISP time: an epoch number (int, float or
    digit string, in s, ms or µs) or an ISO date (surrounding blanks ignored,
    the fraction truncated as PHP's ``format('U')`` does); ``None`` when
    absent or unreadable."""
    if _absent(value):
        return None
    if _is_epoch_number(value):
        return scale_to_seconds(int(value))
    try:
        return math.floor(parse_iso(str(value).strip()).timestamp())
    except ValueError:
        return None


def timestamp_datetime(value: Any) -> datetime | None:
    """A MISP time as an aware ``datetime``: an epoch number as
    :func:`timestamp_seconds` reads it, or an ISO string as written (its
    fraction kept); ``None`` when absent or unreadable."""
    if _absent(value):
        return None
    if _is_epoch_number(value):
        return from_epoch(scale_to_seconds(int(value)))
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except ValueError:
            return None
    return None
