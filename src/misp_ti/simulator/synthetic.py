"""Generated MISP events for volume tests (100 000 attributes and more), deterministic by seed."""

from __future__ import annotations

import random
import uuid as uuid_module
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

__all__ = ["generate_events"]

_TLDS = ("com", "net", "org", "info", "ru", "top", "xyz", "io")
_WORDS = (
    "update",
    "cdn",
    "mail",
    "secure",
    "login",
    "static",
    "api",
    "news",
    "cloud",
    "files",
    "portal",
    "sync",
)
_TLP = ("tlp:white", "tlp:green", "tlp:amber", "tlp:clear")
_CONFIDENCE = (
    'estimative-language:likelihood-probability="likely"',
    'estimative-language:likelihood-probability="very-likely"',
    'estimative-language:likelihood-probability="almost-certain"',
    'false-positive:risk="low"',
)


def _uuid(rng: random.Random) -> str:
    return str(uuid_module.UUID(int=rng.getrandbits(128), version=4))


def _domain(rng: random.Random) -> str:
    return f"{rng.choice(_WORDS)}-{rng.getrandbits(32):08x}.{rng.choice(_TLDS)}"


def _ip(rng: random.Random) -> str:
    # Documentation and private ranges would hit warninglists in a real MISP; stay in plain public space.
    return (
        f"{rng.randint(11, 99)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    )


def _value(kind: str, rng: random.Random) -> tuple[str, str, bool]:
    """(value, category, to_ids) for one attribute type."""
    if kind == "ip-dst":
        return _ip(rng), "Network activity", True
    if kind == "ip-src":
        return _ip(rng), "Network activity", True
    if kind == "domain":
        return _domain(rng), "Network activity", True
    if kind == "hostname":
        return f"{rng.choice(_WORDS)}.{_domain(rng)}", "Network activity", True
    if kind == "url":
        return f"http://{_domain(rng)}/{rng.getrandbits(40):x}.php", "Network activity", True
    if kind == "md5":
        return f"{rng.getrandbits(128):032x}", "Payload delivery", True
    if kind == "sha1":
        return f"{rng.getrandbits(160):040x}", "Payload delivery", True
    if kind == "sha256":
        return f"{rng.getrandbits(256):064x}", "Payload delivery", True
    if kind == "filename|sha256":
        return f"{rng.choice(_WORDS)}.exe|{rng.getrandbits(256):064x}", "Payload delivery", True
    if kind == "email-src":
        return f"{rng.choice(_WORDS)}@{_domain(rng)}", "Payload delivery", True
    if kind == "domain|ip":
        return f"{_domain(rng)}|{_ip(rng)}", "Network activity", True
    return f"synthetic comment {rng.getrandbits(32):x}", "Other", False


_TYPES = (
    "ip-dst",
    "domain",
    "url",
    "sha256",
    "md5",
    "sha1",
    "hostname",
    "ip-src",
    "filename|sha256",
    "email-src",
    "domain|ip",
    "text",
)
_WEIGHTS = (20, 18, 14, 12, 8, 6, 6, 5, 4, 3, 2, 2)


def generate_events(
    n_attributes: int, *, seed: int, newest: datetime, span: timedelta, per_event: int
) -> Iterator[dict[str, Any]]:
    if n_attributes < 0 or per_event < 1:
        raise ValueError("n_attributes must be >= 0 and per_event >= 1")
    rng = random.Random(seed)
    end = int(newest.timestamp())
    start = end - max(int(span.total_seconds()), 1)
    remaining = n_attributes
    number = 0
    while remaining > 0:
        number += 1
        count = min(per_event, remaining)
        remaining -= count
        stamps = sorted(rng.randint(start, end) for _ in range(count))
        in_object = count // 10 if count >= 10 else 0
        attributes = []
        for ts in stamps[: count - in_object]:
            kind = rng.choices(_TYPES, _WEIGHTS)[0]
            value, category, to_ids = _value(kind, rng)
            attribute = {
                "type": kind,
                "category": category,
                "value": value,
                "to_ids": to_ids,
                "uuid": _uuid(rng),
                "timestamp": str(ts),
                "distribution": "5",
            }
            if rng.random() < 0.1:
                attribute["Tag"] = [{"name": rng.choice(_CONFIDENCE)}]
            attributes.append(attribute)
        objects = []
        object_stamps = stamps[count - in_object :]
        for offset in range(0, len(object_stamps), 2):
            members = []
            for relation, ts in zip(
                ("ip", "domain"), object_stamps[offset : offset + 2], strict=False
            ):
                kind = "ip-dst" if relation == "ip" else "domain"
                value, category, _ = _value(kind, rng)
                members.append(
                    {
                        "type": kind,
                        "category": category,
                        "value": value,
                        "to_ids": True,
                        "uuid": _uuid(rng),
                        "timestamp": str(ts),
                        "object_relation": relation,
                        "distribution": "5",
                    }
                )
            objects.append(
                {
                    "name": "domain-ip",
                    "meta-category": "network",
                    "description": "A domain and IP address seen as a tuple",
                    "template_uuid": "43b3b146-77eb-4931-b4cc-b66c60f28734",
                    "template_version": "9",
                    "uuid": _uuid(rng),
                    "timestamp": members[-1]["timestamp"],
                    "distribution": "5",
                    "Attribute": members,
                }
            )
        last = stamps[-1]
        yield {
            "uuid": _uuid(rng),
            "info": f"Synthetic event {number}",
            "date": datetime.fromtimestamp(stamps[0], newest.tzinfo).date().isoformat(),
            "timestamp": str(last),
            "publish_timestamp": str(last),
            "published": True,
            "threat_level_id": str(rng.randint(1, 4)),
            "analysis": "2",
            "distribution": "3",
            "Orgc": {
                "name": f"Synthetic Org {number % 3 + 1}",
                "uuid": str(uuid_module.UUID(int=number % 3 + 1, version=4)),
            },
            "Tag": [{"name": rng.choice(_TLP)}],
            "Attribute": attributes,
            "Object": objects,
        }
