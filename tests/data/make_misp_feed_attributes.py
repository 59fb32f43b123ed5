"""Rebuild misp_feed_attributes.ndjson.gz and misp_feed_events.ndjson.gz from
the MISP event files in ../shared/data/misp_feed (run from the repository root:
``python tests/data/make_misp_feed_attributes.py [FEED_DIR]``).

misp_feed_events.ndjson.gz holds the event files themselves, unchanged: one
line per event, ``{"file": <path below FEED_DIR>, "Event": <the event>}``.

Each line is one attribute as ``POST /attributes/restSearch`` returns it
with ``includeEventTags``: the attribute's own members, an ``Event`` summary,
the ``Object`` it belongs to (without its members) and ``Tag``: its own tags
followed by the event's tags marked ``"inherited": 1``. Attachment payloads
(``data``) and the ``Galaxy``/``ShadowAttribute`` lists are left out. The
output is deterministic (files sorted, gzip timestamp 0).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

EVENT_SUMMARY = ("org_id", "distribution", "id", "info", "orgc_id", "uuid")
DROPPED = ("data", "Galaxy", "ShadowAttribute", "Tag", "AttributeTag")
OBJECT_DROPPED = ("Attribute", "ObjectReference")


def events(path: Path):
    body = json.loads(path.read_text(encoding="utf-8"))
    if "response" in body:
        yield from (item["Event"] for item in body["response"])
    elif "Event" in body:
        yield body["Event"]
    else:
        yield body


def restsearch_attribute(attribute: dict, event: dict, obj: dict | None) -> dict:
    record = {k: v for k, v in attribute.items() if k not in DROPPED}
    record["Event"] = {k: event[k] for k in EVENT_SUMMARY if k in event}
    if obj is not None:
        record["Object"] = {k: v for k, v in obj.items() if k not in OBJECT_DROPPED}
    tags = [dict(t) for t in attribute.get("Tag", [])]
    names = {t.get("name") for t in tags}
    tags += [{**t, "inherited": 1} for t in event.get("Tag", []) if t.get("name") not in names]
    if tags:
        record["Tag"] = tags
    return record


def main(feed: Path, out: Path) -> int:
    lines = []
    for path in sorted(feed.rglob("*.json")):
        for event in events(path):
            for attribute in event.get("Attribute", []):
                lines.append(restsearch_attribute(attribute, event, None))
            for obj in event.get("Object", []):
                for attribute in obj.get("Attribute", []):
                    lines.append(restsearch_attribute(attribute, event, obj))
    data = "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(data.encode())
    return len(lines)


def write_events(feed: Path, out: Path) -> int:
    lines = [
        {"file": path.relative_to(feed).as_posix(), "Event": event}
        for path in sorted(feed.rglob("*.json"))
        for event in events(path)
    ]
    data = "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(data.encode())
    return len(lines)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    feed = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[2] / "shared" / "data" / "misp_feed"
    print(main(feed, here / "misp_feed_attributes.ndjson.gz"), "attributes")
    print(write_events(feed, here / "misp_feed_events.ndjson.gz"), "events")
