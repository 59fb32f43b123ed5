"""Install, upgrade and clean up the Elasticsearch assets, idempotently.

The plan is one generator (:func:`plan`) that yields each request as a plain
``{"method", "path", "params", "body"}`` dict and receives the answer. The
same generator drives a real run (:func:`run` sends each request) and a dry
run (answers are assumed: see :func:`assumed_answer`), so what
``misp-ti provision --dry-run`` prints is what a real run sends.

Each asset is read first (GET) and written only when its ``_meta`` differs
from ours, so a second run with the same version and settings writes
nothing. A new :data:`~misp_ti.sinks.elasticsearch.assets.ASSET_VERSION` installs a new
transform and destination index, copies the old view's IOCs into it, waits
for the new transform's first checkpoint, moves the filtered alias in one
atomic ``_aliases`` call, and only then deletes what older versions left (the
reference never removes its old destination indices). Every active IOC stays
visible through the alias at every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from misp_ti.config import ElasticsearchSettings
from misp_ti.errors import ConfigError, SinkError
from misp_ti.sinks.elasticsearch import assets as A

Request = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None

    @property
    def found(self) -> bool:
        return 200 <= self.status < 300


#: What one step yields: the request, and the answer a dry run assumes (a
#: first install on a stock cluster).
Step = Generator[tuple[Request, Answer], Answer, None]


def request(method: str, path: str, body: Any = None, **params: Any) -> Request:
    return {"method": method, "path": path, "params": params, "body": body}


def _get(path: str, *, assume: int = 404, assume_body: Any = None, **params: Any) -> tuple[Request, Answer]:
    if assume == 200 and assume_body is None and "*" in path:
        assume_body = {}  # a wildcard that matches nothing
    return request("GET", path, **params), Answer(assume, assume_body)


def _write(method: str, path: str, body: Any = None, **params: Any) -> tuple[Request, Answer]:
    return request(method, path, body, **params), Answer(200, {"acknowledged": True})


@dataclass
class Outcome:
    """What a provision run could not finish and says so (an upgrade still catching up)."""

    notes: list[str] = field(default_factory=list)


def plan(
    settings: ElasticsearchSettings,
    streams: tuple[str, ...] = A.STREAMS,
    *,
    outcome: Outcome | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Step:
    """Every request of one provision run, in order (see the module docstring)."""
    if settings.mode == "beats":
        yield from _beats(settings, streams)
        return
    outcome = outcome if outcome is not None else Outcome()
    yield from _refuse_fleet()
    ecs = yield _get("/_component_template/ecs@mappings", assume=200)
    yield from _put_if_changed(f"/_ilm/policy/{A.ILM_POLICY}", A.ilm_policy(settings), lambda b: b[A.ILM_POLICY]["policy"].get("_meta"), lambda body: body["policy"]["_meta"])
    for name, body in ((A.PIPELINE_INGESTED, A.ingested_pipeline()), (A.PIPELINE_LATEST_DEST, A.latest_dest_pipeline())):
        yield from _put_if_changed(f"/_ingest/pipeline/{name}", body, _pipeline_meta(name), lambda body: body["_meta"])
    for stream in streams:
        template = A.index_template(stream, settings, ecs_mappings=ecs.found)
        changed = yield from _put_if_changed(f"/_index_template/{A.template_name(stream)}", template, _template_meta, lambda body: body["_meta"])
        yield from _data_stream(A.data_stream(stream, settings.namespace), rollover=changed)
        dest_template = A.dest_template(stream, ecs_mappings=ecs.found)
        yield from _put_if_changed(f"/_index_template/{A.dest_template_name(stream)}", dest_template, _template_meta, lambda body: body["_meta"])
    done = []
    for stream in streams:
        if (yield from _latest_view(stream, settings, outcome, sleep=sleep, clock=clock)):
            done.append(stream)
    yield from _cleanup(tuple(done))


def _template_meta(found: Any) -> Any:
    return found["index_templates"][0]["index_template"].get("_meta")


def _pipeline_meta(name: str) -> Callable[[Any], Any]:
    return lambda found: found[name].get("_meta")


def _is_fleet(meta: Any) -> bool:
    return isinstance(meta, dict) and (meta.get("managed_by") == "fleet" or (meta.get("package") or {}).get("name") == "ti_misp")


FLEET_HELP = (
    "misp-ti and the integration would fight over the alias and the data streams. Either remove the "
    "integration's assets (Kibana: Integrations > MISP > Settings > Uninstall; then delete its "
    "transform destination indices logs-ti_misp_latest.dest_threat_attributes-*) and run provision again, "
    "or keep the integration and set output.elasticsearch.mode = 'beats' (docs/elasticsearch.md, "
    "'Clusters with Elastic's ti_misp integration')"
)


def _refuse_fleet() -> Generator[tuple[Request, Answer], Answer, None]:
    """Stop before writing anything when Fleet's ti_misp assets are installed."""
    found: list[str] = []
    answer = yield _get("/_index_template/logs-ti_misp*", assume=200)
    for entry in (answer.body or {}).get("index_templates", ()) if answer.found else ():
        if _is_fleet((entry.get("index_template") or {}).get("_meta")):
            found.append(f"index template {entry.get('name')}")
    answer = yield _get(f"/_transform/{A.FLEET_TRANSFORM_PREFIX}*", assume=200)
    for entry in (answer.body or {}).get("transforms", ()) if answer.found else ():
        found.append(f"transform {entry.get('id')}")
    if found:
        raise SinkError(f"Elastic's ti_misp integration (Fleet) is installed on this cluster ({', '.join(found)}): {FLEET_HELP}")


def _put_if_changed(path: str, body: dict[str, Any], found_meta: Callable[[Any], Any], wanted_meta: Callable[[Any], Any]) -> Generator[tuple[Request, Answer], Answer, bool]:
    answer = yield _get(path)
    if answer.found:
        try:
            current = found_meta(answer.body)
        except (KeyError, IndexError, TypeError):
            current = None
        if current == wanted_meta(body):
            return False
        if current is not None and not A.is_ours(current):
            raise SinkError(f"Elasticsearch already has {path} and misp-ti did not install it; remove or rename it first")
    yield _write("PUT", path, body)
    return True


def _data_stream(name: str, *, rollover: bool) -> Step:
    # Creating the data stream up front applies our template (and its ILM
    # policy) from the first document, and gives the transform a source.
    answer = yield _get(f"/_data_stream/{name}")
    if not answer.found:
        yield _write("PUT", f"/_data_stream/{name}")
    elif rollover:
        # a changed template only reaches new backing indices
        yield _write("POST", f"/{name}/_rollover")


def _index_meta(answer: Answer, index: str) -> Any:
    return ((answer.body or {}).get(index) or {}).get("mappings", {}).get("_meta")


def _latest_view(
    stream: str, settings: ElasticsearchSettings, outcome: Outcome, *, sleep: Callable[[float], None], clock: Callable[[], float]
) -> Generator[tuple[Request, Answer], Answer, bool]:
    """Destination, transform and filtered alias of one stream's latest view.

    Returns False when an upgrade is not finished (the alias still points at
    the older view, which must then be kept).
    """
    dest, tid, alias = A.dest_index(stream), A.transform_id(stream), A.latest_alias(stream)
    answer = yield _get(f"/_alias/{alias}")
    holders: dict[str, Any] = dict(answer.body or {}) if answer.found else {}
    for index in sorted(holders):
        if index == dest:
            continue
        mapping = yield _get(f"/{index}/_mapping", assume=200)
        if not A.is_ours(_index_meta(mapping, index)):
            raise SinkError(f"the alias {alias} already points to {index}, which misp-ti did not create: {FLEET_HELP}")
    answer = yield _get(f"/{dest}/_mapping")
    if answer.found:
        if not A.is_ours(_index_meta(answer, dest)):
            raise SinkError(f"Elasticsearch already has an index {dest} that misp-ti did not create; remove it first")
    else:
        yield _write("PUT", f"/{dest}")  # the destination template gives settings and mappings
    wanted = A.transform(stream, settings)
    answer = yield _get(f"/_transform/{tid}")
    current = None
    if answer.found:
        current = ((answer.body or {}).get("transforms") or [{}])[0].get("_meta")
        if current != wanted["_meta"]:
            # settings changed within a version: recreate in place (same
            # destination, which keeps its documents; the new transform
            # rewrites them from the source)
            yield _write("POST", f"/_transform/{tid}/_stop", force=True, wait_for_completion=True)
            yield _write("DELETE", f"/_transform/{tid}")
    if current != wanted["_meta"]:
        yield _write("PUT", f"/_transform/{tid}", wanted)
    stats = yield _get(f"/_transform/{tid}/_stats")
    state = _transform_stats(stats).get("state")
    if state == "failed":
        yield _write("POST", f"/_transform/{tid}/_stop", force=True)
    if state not in ("started", "indexing"):
        yield _write("POST", f"/_transform/{tid}/_start")
    older = sorted(index for index in holders if index != dest)
    if older:
        # An upgrade: fill the new view with the old one's IOCs (the source
        # streams keep only days of data), and move the alias only once the
        # new transform has finished its first checkpoint. `create` keeps
        # anything the new transform wrote first; it is newer.
        for index in older:
            yield _write(
                "POST", "/_reindex",
                {"conflicts": "proceed", "source": {"index": index}, "dest": {"index": dest, "op_type": "create", "pipeline": A.PIPELINE_LATEST_DEST}},
                wait_for_completion=True, refresh=True,
            )
        if not (yield from _caught_up(tid, settings, sleep=sleep, clock=clock)):
            outcome.notes.append(
                f"{stream}: the new latest view {dest} has not finished its first checkpoint within "
                f"{A.es_duration(settings.upgrade_wait)}; {alias} stays on {', '.join(older)}. Run provision again to finish the upgrade."
            )
            return False
    filters = {index: (spec or {}).get("filter") for index, info in holders.items() for spec in [((info or {}).get("aliases") or {}).get(alias)]}
    if list(filters) != [dest] or filters[dest] != A.alias_filter():
        actions: list[dict[str, Any]] = [{"remove": {"index": index, "alias": alias}} for index in older]
        actions.append({"add": {"index": dest, "alias": alias, "filter": A.alias_filter()}})
        yield _write("POST", "/_aliases", {"actions": actions})
    return True


def _transform_stats(answer: Answer) -> dict[str, Any]:
    if not answer.found:
        return {}
    found = ((answer.body or {}).get("transforms") or [{}])[0]
    return found if isinstance(found, dict) else {}


def _caught_up(tid: str, settings: ElasticsearchSettings, *, sleep: Callable[[float], None], clock: Callable[[], float]) -> Generator[tuple[Request, Answer], Answer, bool]:
    deadline = clock() + settings.upgrade_wait.total_seconds()
    assumed = {"transforms": [{"id": tid, "state": "started", "checkpointing": {"last": {"checkpoint": 1}}}]}
    while True:
        stats = yield _get(f"/_transform/{tid}/_stats", assume=200, assume_body=assumed)
        found = _transform_stats(stats)
        checkpoint = ((found.get("checkpointing") or {}).get("last") or {}).get("checkpoint") or 0
        if checkpoint >= 1:
            return True
        if found.get("state") == "failed" or clock() >= deadline:
            return False
        sleep(min(5.0, max(0.0, deadline - clock())))


def _cleanup(streams: tuple[str, ...]) -> Step:
    """Delete the transforms and destinations older versions left (ours only,
    and only for streams whose alias has moved to the current version)."""
    current_ids = {A.transform_id(s) for s in streams}
    prefixes = tuple(A.transform_prefix(s) for s in streams)
    answer = yield _get("/_transform/misp-ti.latest_*", assume=200)
    for found in (answer.body or {}).get("transforms", ()) if answer.found else ():
        tid = found.get("id") or ""
        if tid.startswith(prefixes) and tid not in current_ids and A.is_ours(found.get("_meta")):
            yield _write("POST", f"/_transform/{tid}/_stop", force=True, wait_for_completion=True)
            yield _write("DELETE", f"/_transform/{tid}")
    patterns = [f"{A.dest_prefix(s)}*" for s in streams]
    if "threat_attributes" in streams:
        patterns.append(f"{A.LEGACY_DEST_PREFIX}*")
    if not patterns:
        return
    current = {A.dest_index(s) for s in streams}
    answer = yield _get(f"/{','.join(patterns)}/_mapping", assume=200, expand_wildcards="all")
    for index, info in sorted((answer.body or {}).items()) if answer.found else ():
        if index not in current and A.is_ours(((info or {}).get("mappings") or {}).get("_meta")):
            yield _write("DELETE", f"/{index}")


def housekeeping(stream: str) -> Request:
    """Delete the IOCs of ``stream``'s latest view that expired: the transform's
    retention runs only at a checkpoint with new source data, so with a quiet
    MISP it would never remove them (the alias filter already hides them)."""
    return request(
        "POST", f"/{A.dest_index(stream)}/_delete_by_query", {"query": A.expired_query()},
        conflicts="proceed", ignore_unavailable=True, allow_no_indices=True,
    )


def missing_privileges(send: Callable[[Request], Answer], streams: tuple[str, ...] = A.STREAMS, *, provision: bool = True) -> list[str] | None:
    """What the configured user lacks for misp-ti, as ``"<privilege> on <names>"``
    (``cluster`` for cluster privileges); empty when it has everything; None
    when the cluster's security is off (every request is then allowed)."""
    wanted = A.privileges(streams, provision=provision)
    answer = send(request("POST", "/_security/user/_has_privileges", wanted))
    if not answer.found:
        reason = str(((answer.body or {}).get("error") or {}).get("reason") or "") if isinstance(answer.body, dict) else ""
        if "Security must be explicitly enabled" in reason:  # SecurityActionFilter, security off
            return None
        raise SinkError(f"Elasticsearch could not check privileges (HTTP {answer.status}): {reason[:300] or 'no reason given'}")
    body = answer.body or {}
    missing = [f"{name} on cluster" for name, ok in sorted((body.get("cluster") or {}).items()) if not ok]
    for entry in wanted["index"]:
        for name in entry["names"]:
            granted = (body.get("index") or {}).get(name) or {}
            lacking = [p for p in entry["privileges"] if not granted.get(p)]
            if lacking:
                missing.append(f"{', '.join(lacking)} on {name}")
    return missing


def _beats(settings: ElasticsearchSettings, streams: tuple[str, ...]) -> Step:
    # The ti_misp package owns templates, pipeline and transform in this
    # mode; provision only checks they are there.
    for stream in streams:
        answer = yield _get(f"/_index_template/logs-ti_misp.{stream}", assume=200)
        if not answer.found:
            raise SinkError(
                f"output.elasticsearch.mode = 'beats' needs Elastic's ti_misp integration installed in Kibana "
                f"(no index template logs-ti_misp.{stream}); install it, or use mode = 'ecs'"
            )
    if settings.beats_pipeline:
        answer = yield _get(f"/_ingest/pipeline/{settings.beats_pipeline}", assume=200)
        if not answer.found:
            raise SinkError(f"output.elasticsearch.beats_pipeline: no ingest pipeline {settings.beats_pipeline!r} on the cluster")


def check_settings(settings: ElasticsearchSettings, preserve_original_event: bool) -> None:
    if settings.mode == "beats" and not preserve_original_event:
        raise ConfigError(
            "output.elasticsearch.mode = 'beats' sends the raw MISP JSON, which documents carry only with "
            "output.preserve_original_event = true; set it"
        )


def assumed_answer(req: Request, assumed: Answer) -> Answer:
    """A dry run's answer: a first install on a cluster that has the built-in
    templates (and, in beats mode, the ti_misp package)."""
    return assumed


def run(steps: Step, send: Callable[[Request, Answer], Answer]) -> list[Request]:
    """Drive ``steps``, answering each request with ``send``; return the requests sent."""
    sent: list[Request] = []
    try:
        req, assumed = next(steps)
        while True:
            answer = send(req, assumed)
            sent.append(req)
            req, assumed = steps.send(answer)
    except StopIteration:
        pass
    return sent
