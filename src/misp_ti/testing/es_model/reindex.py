"""``POST /_reindex``: a MODEL of Elasticsearch's reindex, not Elasticsearch.

Source: elastic/elasticsearch ``modules/reindex/src/main/java/org/elasticsearch/reindex/``
(``Reindexer``, ``AbstractAsyncBulkByScrollAction``): the source is read with a search through
``source.index`` (so an alias's filter applies), every hit is written to ``dest.index`` under its
own ``_id`` with ``dest.op_type`` and ``dest.pipeline``; a 409 counts as a version conflict and,
with ``conflicts=proceed``, is skipped; with the default ``conflicts=abort`` (or any other bulk
failure) the copy stops and the failures are returned with the failure's status
(``RestReindexAction`` answers the highest failure status). Writes go through
:func:`.documents.index_document` (helper A), so ingest pipelines and mappings apply.
Only ``wait_for_completion=true`` is modelled.
"""

from __future__ import annotations

from typing import Any

from .search import error, matching_hits, response, unsupported


def reindex(cluster: Any, body: dict[str, Any], params: dict[str, Any] | None = None) -> Any:
    from .documents import index_document  # helper A's module

    params = params or {}
    if str(params.get("wait_for_completion", "true")).lower() != "true":
        return unsupported("_reindex with wait_for_completion=false (tasks)")
    source, dest = body.get("source") or {}, body.get("dest") or {}
    if not source.get("index") or not dest.get("index"):
        return error(400, "action_request_validation_exception",
                     "Validation Failed: 1: use _update_by_query if you are updating in place;"
                     if not dest.get("index") else "Validation Failed: 1: index must be specified;")
    unknown = (set(body) - {"source", "dest", "conflicts", "max_docs"}) | (set(source) - {"index", "query", "size"}) \
        | (set(dest) - {"index", "op_type", "pipeline"})
    if unknown:
        return unsupported(f"_reindex keys {sorted(unknown)}")
    conflicts = body.get("conflicts", params.get("conflicts", "abort"))
    if conflicts not in ("abort", "proceed"):
        return error(400, "illegal_argument_exception", f"conflicts may only be \"proceed\" or \"abort\" but was [{conflicts}]")
    expression = source["index"] if isinstance(source["index"], str) else ",".join(source["index"])
    hits, refused = matching_hits(cluster, expression, source.get("query"), {"allow_no_indices": False}, body.get("max_docs"))
    if refused is not None:
        return refused
    counts = {"created": 0, "updated": 0, "version_conflicts": 0}
    failures: list[dict[str, Any]] = []
    for hit in hits:
        item = index_document(cluster, dest["index"], hit["_id"], dict(hit["_source"]),
                              op_type=dest.get("op_type", "index"), pipeline=dest.get("pipeline"))
        if item.status in (200, 201):
            counts["updated" if item.body.get("result") == "updated" else "created"] += 1
            continue
        if item.status == 409:
            counts["version_conflicts"] += 1
            if conflicts == "proceed":
                continue
        failures.append({"index": dest["index"], "id": hit["_id"], "cause": item.body.get("error", {}), "status": item.status})
        break
    status = max((f["status"] for f in failures), default=200)
    return response(status, {"took": 0, "timed_out": False, "total": len(hits), **counts, "deleted": 0,
                             "batches": 1 if hits else 0, "noops": 0, "retries": {"bulk": 0, "search": 0},
                             "throttled_millis": 0, "requests_per_second": -1.0, "throttled_until_millis": 0,
                             "failures": failures})


def _reindex_handler(cluster: Any, match: Any, params: Any, body: Any, user: Any) -> Any:
    return reindex(cluster, body or {}, params)

