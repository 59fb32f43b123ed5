"""The ``pipeline_error`` document: what a record that cannot become an
indicator turns into (the raw record in ``event.original``, the reason in
``error.message``), so nothing is lost and the stream goes on."""

from __future__ import annotations

import json
from collections.abc import Mapping
from hashlib import blake2b
from typing import Any

import orjson

from misp_ti.ecs.fields import ECS_VERSION
from misp_ti.ecs.options import Options

_ECS = {"version": ECS_VERSION}


def _doc_id(dataset: str, *parts: object) -> str:
    return blake2b("\0".join((dataset, *map(str, parts))).encode(), digest_size=16).hexdigest()


def dump_original(record: Any) -> str:
    """The record as JSON text (``event.original``), whatever it holds."""
    try:
        return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # lone surrogates, odd keys: stdlib json escapes what orjson refuses
        try:
            return json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=repr)
        except (TypeError, ValueError):
            return repr(record)


#: ``event.kind`` of the document standing for a record that became no indicator.
PIPELINE_ERROR = "pipeline_error"


def is_pipeline_error(doc: Mapping[str, Any]) -> bool:
    """Whether ``doc`` stands for a record that could not become an indicator."""
    event = doc.get("event")
    return isinstance(event, dict) and event.get("kind") == PIPELINE_ERROR


def error_document(record: Any, reason: str | BaseException, opts: Options, *, original: str | None = None) -> dict:
    """The ``pipeline_error`` document of ``record``: the raw record in
    ``event.original`` and the reason (an exception is named with its type).

    ``original`` is the raw text when there is no parsed record (a line that
    is not JSON). The id depends on the stream and the record only, so a
    replayed record yields the same document.
    """
    if original is None:
        original = dump_original(record)
    message = reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
    event = {"kind": PIPELINE_ERROR, "dataset": opts.dataset, "ingested": opts.ingested, "original": original}
    return {
        "_id": _doc_id(opts.dataset, "error", original),
        "@timestamp": opts.ingested,
        "ecs": dict(_ECS),
        "event": event,
        "data_stream": {"type": "logs", "dataset": opts.dataset, "namespace": opts.namespace},
        "error": {"message": message[:1000]},
        "tags": ["misp_ti-transform-error"],
    }
