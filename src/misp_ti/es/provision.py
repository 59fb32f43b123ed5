"""Install, upgrade and clean up the Elasticsearch assets, idempotently.

The plan is one generator (:func:`plan`) that yields each request as a plain
``{"method", "path", "params", "body"}`` dict and receives the answer. The
same generator drives a real run (:func:`run` sends each request) and a dry
run (answers are assumed: see :func:`assumed_answer`), so what
``misp-ti provision --dry-run`` prints is what a real run sends.

Each asset is read first (GET) and written only when its ``_meta`` differs
from ours, so a second run with the same version and settings writes
nothing. A new :data:`~misp_ti.es.assets.ASSET_VERSION` installs a new
transform and destination index, moves the alias, then deletes what older
versions left (the reference never removes its old destination indices).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from misp_ti.config import ElasticsearchSettings
from misp_ti.errors import ConfigError, SinkError
from misp_ti.es import assets as A

Request = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None

    @property
    def found(self) -> bool:
        return 200 <= self.status < 300


#: What one step yields: the request, and the status a dry run assumes.
Step = Generator[tuple[Request, int], Answer, None]


def request(method: str, path: str, body: Any = None, **params: Any) -> Request:
    return {"method": method, "path": path, "params": params, "body": body}


def _get(path: str, *, assume: int = 404, **params: Any) -> tuple[Request, int]:
    return request("GET", path, **params), assume


def _write(method: str, path: str, body: Any = None, **params: Any) -> tuple[Request, int]:
    return request(method, path, body, **params), 200


def plan(settings: ElasticsearchSettings, streams: tuple[str, ...] = A.STREAMS) -> Step:
    """Every request of one provision run, in order (see the module docstring)."""
    if settings.mode == "beats":
        yield from _beats(settings, streams)
        return
    ecs = yield _get("/_component_template/ecs@mappings", assume=200)
    yield from _put_if_changed(f"/_ilm/policy/{A.ILM_POLICY}", A.ilm_policy(settings), lambda b: b[A.ILM_POLICY]["policy"].get("_meta"), lambda body: body["policy"]["_meta"])
    for name, body in ((A.PIPELINE_INGESTED, A.ingested_pipeline()), (A.PIPELINE_LATEST_DEST, A.latest_dest_pipeline())):
        yield from _put_if_changed(f"/_ingest/pipeline/{name}", body, _pipeline_meta(name), lambda body: body["_meta"])
    for stream in streams:
        template = A.index_template(stream, settings, ecs_mappings=ecs.found)
        changed = yield from _put_if_changed(
            f"/_index_template/{A.template_name(stream)}", template,
            lambda b: b["index_templates"][0]["index_template"].get("_meta"), lambda body: body["_meta"],
        )
        yield from _data_stream(A.data_stream(stream, settings.namespace), rollover=changed)
    yield from _latest_view(settings)
    yield from _cleanup()


def _pipeline_meta(name: str) -> Callable[[Any], Any]:
    return lambda found: found[name].get("_meta")


def _put_if_changed(path: str, body: dict[str, Any], found_meta: Callable[[Any], Any], wanted_meta: Callable[[Any], Any]) -> Generator[tuple[Request, int], Answer, bool]:
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


def _latest_view(settings: ElasticsearchSettings) -> Step:
    dest, tid = A.dest_index(), A.transform_id()
    answer = yield _get(f"/{dest}/_mapping")
    if answer.found:
        found = (answer.body or {}).get(dest, {}).get("mappings", {}).get("_meta")
        if not A.is_ours(found):
            raise SinkError(f"Elasticsearch already has an index {dest} that misp-ti did not create; remove it first")
    else:
        yield _write("PUT", f"/{dest}", A.dest_index_body())
    wanted = A.transform(settings)
    answer = yield _get(f"/_transform/{tid}")
    current = None
    if answer.found:
        transforms = (answer.body or {}).get("transforms") or [{}]
        current = transforms[0].get("_meta")
        if current != wanted["_meta"]:
            # settings changed within a version: recreate in place (same
            # destination; the latest view is rebuilt from the source)
            yield _write("POST", f"/_transform/{tid}/_stop", force=True, wait_for_completion=True)
            yield _write("DELETE", f"/_transform/{tid}")
    if current != wanted["_meta"]:
        yield _write("PUT", f"/_transform/{tid}", wanted)
    aliases = yield _get(f"/_alias/{A.LATEST_ALIAS}")
    holders = sorted((aliases.body or {}).keys()) if aliases.found else []
    if holders != [dest]:
        actions: list[dict[str, Any]] = [{"remove": {"index": index, "alias": A.LATEST_ALIAS}} for index in holders if index != dest]
        actions.append({"add": {"index": dest, "alias": A.LATEST_ALIAS}})
        yield _write("POST", "/_aliases", {"actions": actions})
    stats = yield _get(f"/_transform/{tid}/_stats")
    state = ((stats.body or {}).get("transforms") or [{}])[0].get("state") if stats.found else None
    if state == "failed":
        yield _write("POST", f"/_transform/{tid}/_stop", force=True)
    if state not in ("started", "indexing"):
        yield _write("POST", f"/_transform/{tid}/_start")


def _cleanup() -> Step:
    """Delete the transforms and destination indices of other versions (ours only)."""
    answer = yield _get(f"/_transform/{A.TRANSFORM_PREFIX}*", assume=200)
    for found in (answer.body or {}).get("transforms", ()) if answer.found else ():
        tid = found.get("id")
        if tid and tid != A.transform_id() and A.is_ours(found.get("_meta")):
            yield _write("POST", f"/_transform/{tid}/_stop", force=True, wait_for_completion=True)
            yield _write("DELETE", f"/_transform/{tid}")
    answer = yield _get(f"/{A.DEST_PREFIX}*/_mapping", assume=200)
    for index, info in sorted((answer.body or {}).items()) if answer.found else ():
        if index != A.dest_index() and A.is_ours((info or {}).get("mappings", {}).get("_meta")):
            yield _write("DELETE", f"/{index}")


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


def assumed_answer(req: Request, status: int) -> Answer:
    """A dry run's answer: a first install on a cluster that has the built-in
    templates (and, in beats mode, the ti_misp package)."""
    return Answer(status, {} if status == 200 and req["method"] == "GET" and "*" in req["path"] else None)


def run(steps: Step, send: Callable[[Request, int], Answer]) -> list[Request]:
    """Drive ``steps``, answering each request with ``send``; return the requests sent."""
    sent: list[Request] = []
    try:
        req, assume = next(steps)
        while True:
            answer = send(req, assume)
            sent.append(req)
            req, assume = steps.send(answer)
    except StopIteration:
        pass
    return sent
