"""Reading a page that is not valid JSON as a whole, record by record.

One attribute value with a lone surrogate escape (``"\\ud800"``) or a byte
that is not UTF-8 makes the whole ``restSearch`` answer invalid JSON; refusing
the page would block the stream at that record for good. MISP writes the
attribute list in one fixed shape, ``{"response": {"Attribute": [ ... ]}}``,
and the event list in another, ``{"response": [{"Event": ...}, ...]}``, so
either list can be cut into its elements by following strings and brackets
alone: each element that parses is delivered as usual, each one that does not
becomes a placeholder record holding its raw text (:data:`UNPARSED`), which
the transform turns into one ``pipeline_error`` document.

When the body cannot be cut that way (it is truncated, or not that shape),
:class:`Unsplittable` names the byte offset where reading stopped.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

#: Key of a placeholder record: the raw text of an element that is not valid JSON.
UNPARSED = "__misp_ti_unparsed__"
#: Key of the placeholder's reason (the JSON error).
UNPARSED_REASON = "__misp_ti_unparsed_reason__"

_ATTRIBUTE_LIST = re.compile(rb'\s*\{\s*"response"\s*:\s*\{\s*"Attribute"\s*:\s*\[')
_ATTRIBUTE_LIST_END = re.compile(rb"\s*\]\s*\}\s*\}\s*")
_EVENT_LIST = re.compile(rb'\s*\{\s*"response"\s*:\s*\[')
_EVENT_LIST_END = re.compile(rb"\s*\]\s*\}\s*")
_SPACE = re.compile(rb"\s*")
#: Outside a string: the next byte that changes the depth or opens a string.
_STRUCTURAL = re.compile(rb'["{}\[\]]')
#: Inside a string: the next quote or backslash.
_IN_STRING = re.compile(rb'["\\]')


class Unsplittable(Exception):
    """The body cannot be cut into records; ``offset`` is where reading stopped."""

    def __init__(self, offset: int, what: str):
        super().__init__(f"{what} at byte {offset}")
        self.offset = offset


def is_unparsed(record: Any) -> bool:
    return isinstance(record, dict) and UNPARSED in record


def _element_end(body: bytes, start: int) -> int:
    """The offset just after the JSON object starting at ``start``."""
    depth = 0
    pos = start
    while True:
        match = _STRUCTURAL.search(body, pos)
        if match is None:
            raise Unsplittable(len(body), "the body ends inside a record")
        char = body[match.start()]
        pos = match.end()
        if char == 0x22:  # '"': skip the string, escapes included
            while True:
                inner = _IN_STRING.search(body, pos)
                if inner is None:
                    raise Unsplittable(len(body), "the body ends inside a string")
                pos = inner.end()
                if body[inner.start()] == 0x5C:  # backslash: the next byte is escaped
                    pos += 1
                    continue
                break
        elif char in (0x7B, 0x5B):  # '{' '['
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos


def attribute_records(body: bytes) -> list[dict[str, Any]]:
    """The elements of ``{"response": {"Attribute": [...]}}``, one by one.

    :raises Unsplittable: the body is not that shape, or ends early.
    """
    return _elements(body, _ATTRIBUTE_LIST, _ATTRIBUTE_LIST_END, '{"response": {"Attribute": [', "attribute list")


def event_records(body: bytes) -> list[dict[str, Any]]:
    """The elements of ``{"response": [{"Event": {...}}, ...]}``, one by one.

    MISP's JSON export of ``/events/restSearch`` (``JsonExport::header``,
    ``separator`` and ``footer`` in MISP's app/Lib/Export/JsonExport.php:
    ``{"response": [``, ``,``, ``]}``; each event is ``JSONConverterTool``'s
    ``{"Event": ...}``); an element that does not parse (one bad attribute value makes
    its whole event invalid) becomes a placeholder for the whole event.

    :raises Unsplittable: the body is not that shape, or ends early.
    """
    return _elements(body, _EVENT_LIST, _EVENT_LIST_END, '{"response": [', "event list")


def _elements(body: bytes, head_pattern: re.Pattern[bytes], end_pattern: re.Pattern[bytes], head_text: str, what: str) -> list[dict[str, Any]]:
    head = head_pattern.match(body)
    if head is None:
        raise Unsplittable(0, f"the body does not start with {head_text}")
    records: list[dict[str, Any]] = []
    pos = _SPACE.match(body, head.end()).end()  # type: ignore[union-attr]
    if body[pos:pos + 1] != b"]":
        while True:
            if body[pos:pos + 1] != b"{":
                raise Unsplittable(pos, "expected a record (a JSON object)")
            stop = _element_end(body, pos)
            raw = body[pos:stop]
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                record = {UNPARSED: raw.decode("utf-8", "backslashreplace"), UNPARSED_REASON: f"{exc} (record at byte {pos})"}
            records.append(record)
            pos = _SPACE.match(body, stop).end()  # type: ignore[union-attr]
            sep = body[pos:pos + 1]
            if sep == b"]":
                break
            if sep != b",":
                raise Unsplittable(pos, "expected ',' or ']' after a record")
            pos = _SPACE.match(body, pos + 1).end()  # type: ignore[union-attr]
    end = end_pattern.match(body, pos)
    if end is None or end.end() != len(body):
        raise Unsplittable(pos, f"unexpected text after the {what}")
    return records


def error_offset(body: bytes, exc: orjson.JSONDecodeError) -> int:
    """The byte offset of a JSON error: the first byte that is not UTF-8, else
    orjson's position (which counts characters) in bytes."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return bad.start
    return len(text[: getattr(exc, "pos", 0) or 0].encode("utf-8", "surrogatepass"))
