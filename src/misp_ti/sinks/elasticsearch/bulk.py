"""The bulk writer: documents -> ``_bulk`` requests -> per-item outcome.

One batch is confirmed only when every item is delivered or dead-lettered:

* created, or ``409`` (a same-``_id`` replay: already there) -> delivered;
* ``429``/``5xx`` -> retried with backoff by the client's streaming helper,
  up to ``max_retries``; still failing -> :class:`SinkError` (cursor kept);
* ``400`` (mapping and parsing errors: this document can never fit) ->
  dead-letter file with the reason, then counted as dead-lettered;
* a success with ``"failure_store": "used"`` (9.x data streams whose
  failure store is on: the document did not fit and was kept aside) ->
  counted as ``failure_stored``, never as delivered, logged, and copied to
  the dead-letter file;
* anything else (``401``/``403``/``404``...: the cluster, not the document)
  -> :class:`SinkError`, so a permission problem never drops data.

The NDJSON lines are built once (:func:`actions`) and either sent
(``misp-ti transform --format bulk`` prints them: :func:`ndjson`) or, in a
dry run, recorded as ``{"method": "POST", "path": "/_bulk", "params", "body"}``
with ``body`` = the list of the NDJSON lines' JSON objects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from misp_ti.config import Config
from misp_ti.errors import SinkError
from misp_ti.model import SinkReport
from misp_ti.sinks.elasticsearch.assets import data_stream, es_duration
from misp_ti.sinks.elasticsearch.client import describe_error
from misp_ti.sinks.elasticsearch.provision import request
from misp_ti.sinks.ndjson import open_private_append
from misp_ti.timeutil import iso, utcnow

NAME = "elasticsearch"
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: What Elastic Agent's httpjson input stamps on its events (beats mode).
BEATS_ECS_VERSION = "8.11.0"

Pair = tuple[dict[str, Any], dict[str, Any]]
log = logging.getLogger(__name__)


def dead_letter_path(config: Config) -> Path:
    if config.output.dead_letter_path is not None:
        return config.output.dead_letter_path
    state = config.state_path()
    return state.with_name(f"{state.stem}.dead-letter.ndjson")


def _ecs_source(doc: dict[str, Any], stream: str, config: Config, ingested: str) -> dict[str, Any]:
    settings = config.output.elasticsearch
    # top level copied only: the same dicts go to the other sinks
    source = {k: v for k, v in doc.items() if k != "_id"}
    source.setdefault("data_stream", {"type": "logs", "dataset": f"ti_misp.{stream}", "namespace": settings.namespace})
    if settings.ingested_by == "client":
        source["event"] = {**(doc.get("event") or {}), "ingested": ingested}
    return source


def _beats_source(doc: dict[str, Any], stream: str, config: Config, ingested: str) -> dict[str, Any]:
    original = (doc.get("event") or {}).get("original")
    if not isinstance(original, str):
        raise SinkError(
            f"beats mode: a {stream} document has no event.original (the raw MISP JSON); "
            "set output.preserve_original_event = true"
        )
    namespace = config.output.elasticsearch.namespace
    dataset = f"ti_misp.{stream}"
    return {
        "@timestamp": ingested,
        "message": original,
        "tags": ["preserve_original_event", "forwarded", f"misp-{stream}"],
        "data_stream": {"type": "logs", "dataset": dataset, "namespace": namespace},
        "event": {"dataset": dataset},
        "input": {"type": "httpjson"},
        "ecs": {"version": BEATS_ECS_VERSION},
        "_conf": {"ioc_expiration_duration": es_duration(config.expiry.ioc_expiration_duration)},
    }


def actions(stream: str, docs: list[dict[str, Any]], config: Config, *, now: datetime | None = None) -> Iterator[Pair]:
    """``(action line, source line)`` per document, in order."""
    settings = config.output.elasticsearch
    index = data_stream(stream, settings.namespace)
    build = _beats_source if settings.mode == "beats" else _ecs_source
    ingested = iso(now or utcnow())
    for doc in docs:
        header: dict[str, Any] = {"_index": index}
        if "_id" in doc:
            header["_id"] = str(doc["_id"])
        yield {"create": header}, build(doc, stream, config, ingested)


def ndjson(pairs: Iterable[Pair]) -> bytes:
    """The ``_bulk`` body of ``pairs``: action line, source line, each JSON and newline-terminated."""
    return b"".join(orjson.dumps(header) + b"\n" + orjson.dumps(source) + b"\n" for header, source in pairs)


def bulk_params(config: Config) -> dict[str, Any]:
    pipeline = config.output.elasticsearch.beats_pipeline
    return {"pipeline": pipeline} if config.output.elasticsearch.mode == "beats" and pipeline else {}


def chunked_requests(pairs: Iterator[Pair], config: Config) -> Iterator[dict[str, Any]]:
    """The ``_bulk`` requests a dry run records, cut like the client's helper cuts them."""
    settings = config.output.elasticsearch
    lines: list[dict[str, Any]] = []
    size = 0
    for header, source in pairs:
        pair_size = len(orjson.dumps(header)) + len(orjson.dumps(source)) + 2
        if lines and (len(lines) // 2 >= settings.chunk_size or size + pair_size > settings.chunk_bytes):
            yield request("POST", "/_bulk", lines, **bulk_params(config))
            lines, size = [], 0
        lines += [header, source]
        size += pair_size
    if lines:
        yield request("POST", "/_bulk", lines, **bulk_params(config))


def write(client: Any, stream: str, docs: list[dict[str, Any]], config: Config) -> SinkReport:
    """Send one batch; return the report only when nothing is left undelivered."""
    from elasticsearch import ApiError, TransportError
    from elasticsearch.helpers import streaming_bulk

    settings = config.output.elasticsearch
    pairs = list(actions(stream, docs, config))
    by_id: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_id.setdefault(pair[0]["create"].get("_id", ""), []).append(pair)
    delivered = 0
    dead: list[dict[str, Any]] = []
    stored: list[dict[str, Any]] = []
    failed: dict[int | str, int] = {}
    try:
        for ok, info in streaming_bulk(
            client, pairs,  # type: ignore[arg-type]  # (action, source) pairs, see expand_action_callback
            chunk_size=settings.chunk_size,
            max_chunk_bytes=settings.chunk_bytes,
            expand_action_callback=lambda pair: pair,  # type: ignore[arg-type,return-value]  # already expanded
            raise_on_error=False,
            max_retries=settings.max_retries,
            initial_backoff=settings.backoff_initial.total_seconds(),
            max_backoff=settings.backoff_max.total_seconds(),
            retry_on_status=RETRY_STATUSES,
            **bulk_params(config),
        ):
            item = next(iter(info.values()))
            status = item.get("status")
            if ok and item.get("failure_store") == "used":
                # 9.x failure store: a success status, but the document sits in
                # the data stream's ::failures, not in the data (IndexDocFailureStoreStatus)
                stored.append(_dead_letter(stream, item, _source_of(by_id, item), reason=FAILURE_STORE_REASON))
            elif ok or status == 409:
                delivered += 1
            elif status == 400:
                dead.append(_dead_letter(stream, item, _source_of(by_id, item)))
            else:
                failed[status] = failed.get(status, 0) + 1
    except ApiError as exc:
        raise SinkError(f"Elasticsearch refused a bulk request of {stream} documents (HTTP {exc.status_code}): {describe_error(exc)}") from None
    except TransportError as exc:
        raise SinkError(f"Elasticsearch is unreachable ({describe_error(exc)}); {len(docs)} {stream} documents not delivered") from None
    if dead or stored:
        _append_dead_letters(dead_letter_path(config), dead + stored)
    if stored:
        log.warning(
            "Elasticsearch put %d of %d %s documents into the failure store of %s instead of the data "
            "(they did not fit its mappings); they are not searchable there; copies are in %s",
            len(stored), len(docs), stream, data_stream(stream, settings.namespace), dead_letter_path(config),
        )
    if failed:
        summary = ", ".join(f"{count} x HTTP {status}" for status, count in sorted(failed.items(), key=str))
        raise SinkError(f"Elasticsearch did not accept {sum(failed.values())} of {len(docs)} {stream} documents after {settings.max_retries} retries ({summary}); cursor kept")
    return SinkReport(NAME, delivered=delivered, dead_lettered=len(dead), failure_stored=len(stored))


FAILURE_STORE_REASON = {
    "type": "failure_store",
    "reason": "Elasticsearch stored the document in the data stream's failure store: it did not fit the mappings",
}


def _source_of(by_id: dict[str, list[Pair]], item: dict[str, Any]) -> dict[str, Any] | None:
    matches = by_id.get(str(item.get("_id", "")), [])
    return matches.pop(0)[1] if matches else None


def _dead_letter(stream: str, item: dict[str, Any], source: dict[str, Any] | None, *, reason: dict[str, Any] | None = None) -> dict[str, Any]:
    error = item.get("error") or {}
    if reason is None:
        reason = {"type": error.get("type"), "reason": error.get("reason")} if isinstance(error, dict) else {"reason": str(error)}
    return {
        "time": iso(utcnow()),
        "sink": NAME,
        "stream": stream,
        "index": item.get("_index"),
        "_id": item.get("_id"),
        "status": item.get("status"),
        "reason": reason,
        "doc": source,
    }


def _append_dead_letters(path: Path, records: list[dict[str, Any]]) -> None:
    # durable before the batch is confirmed: the cursor moves past these documents
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_private_append(path) as fh:
            fh.write(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise SinkError(f"cannot write the dead-letter file {path}: {exc.strerror or exc}") from None
