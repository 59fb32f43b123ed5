"""Small hand-made MISP events for the simulator tests (uuids spell out which attribute is which)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

NOW = datetime(2026, 1, 1, tzinfo=UTC)
T0 = int(NOW.timestamp())
DAY = 86400
KEY = "test-key"


def u(name: str) -> str:
    """A readable uuid: ``u("a1")`` → ``00000000-0000-4000-8000-0000000000a1``."""
    return f"00000000-0000-4000-8000-{name.rjust(12, '0')}"


def attr(name: str, kind: str, value: str, age_days: float, **extra: Any) -> dict[str, Any]:
    return {
        "uuid": u(name),
        "type": kind,
        "value": value,
        "category": extra.pop("category", "Network activity"),
        "to_ids": extra.pop("to_ids", True),
        "timestamp": str(T0 - int(age_days * DAY)),
        **extra,
    }


def filter_events() -> list[dict[str, Any]]:
    """Two events covering the filters: types, categories, tags at both levels, objects, deletion, publication."""
    e1 = {
        "uuid": u("e1"),
        "info": "First event",
        "published": True,
        "timestamp": str(T0 - 1 * DAY),
        "Orgc": {"name": "CIRCL", "uuid": u("0c1")},
        "Tag": [{"name": "tlp:white"}, {"name": 'false-positive:risk="low"'}],
        "Attribute": [
            attr("a1", "ip-dst", "203.0.113.10", 9),
            attr("a2", "domain", "bad.evil.net", 8),
            attr(
                "a3",
                "md5",
                "d41d8cd98f00b204e9800998ecf8427e",
                7,
                category="Payload delivery",
                to_ids=False,
            ),
            attr(
                "a4", "filename|sha256", "dropper.exe|" + "ab" * 32, 6, category="Payload delivery"
            ),
            attr("a5", "url", "http://bad.evil.net/gate.php", 5, Tag=[{"name": "tlp:amber"}]),
        ],
        "Object": [
            {
                "uuid": u("o1"),
                "name": "file",
                "meta-category": "file",
                "timestamp": str(T0 - 4 * DAY),
                "Attribute": [
                    attr(
                        "a6",
                        "sha1",
                        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                        4,
                        object_relation="sha1",
                        category="Payload delivery",
                    ),
                    attr(
                        "a7",
                        "filename",
                        "invoice.pdf.exe",
                        4,
                        object_relation="filename",
                        category="Payload delivery",
                        to_ids=False,
                    ),
                ],
            }
        ],
    }
    e2 = {
        "uuid": u("e2"),
        "info": "Second event",
        "published": False,
        "timestamp": str(T0 - 2 * DAY),
        "Orgc": {"name": "ESET", "uuid": u("0c2")},
        "Tag": [{"name": "tlp:green"}],
        "Attribute": [
            attr("b1", "ip-src", "198.51.100.7", 3, deleted=True),
            attr(
                "b2",
                "domain",
                "c2.bad.net",
                2,
                Tag=[{"name": 'estimative-language:likelihood-probability="likely"'}],
            ),
            attr("b3", "text", "analyst note", 1, category="Other", to_ids=False),
        ],
    }
    return [{"Event": e1}, {"Event": e2}]


def search(
    client: httpx.Client, body: dict[str, Any], path: str = "/attributes/restSearch"
) -> httpx.Response:
    return client.post(path, json=body)


def uuids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    records = response.json()["response"]["Attribute"]
    return {r["uuid"].rsplit("-", 1)[1].lstrip("0") for r in records}
