"""``misp-ti config check``: what cannot work, and (``--connect``) whether it does.

The schema already refused what is malformed; :func:`problems` adds what is
well-formed but cannot work (no key, the placeholder URL, nothing to poll,
an ``expiry.by_type`` key no record can have). :func:`connect` then talks to
MISP and to each enabled sink, like Filebeat's ``test output``: one
:class:`Check` per question, printed as one line each. No check writes
anything: the store is only opened for writing and rolled back.
"""

from __future__ import annotations

import difflib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misp_ti.config import env_variables, name_variable
from misp_ti.errors import MispTiError
from misp_ti.redact import public_url

#: ``misp.url``'s default: a config that still holds it has not said where MISP is.
PLACEHOLDER_URL = "https://misp.example.org"
#: ECS ``threat.indicator.type`` values (``expiry.by_type`` also accepts these).
ECS_INDICATOR_TYPES = frozenset({
    "autonomous-system", "artifact", "directory", "domain-name", "email-addr", "email-message", "file",
    "ipv4-addr", "ipv6-addr", "mac-addr", "mutex", "port", "process", "software", "url", "user-account",
    "windows-registry-key", "x509-certificate",
})


def _reads_misp(engine: Any, view: Any = None) -> list[str]:
    """The enabled streams (of ``view``, a source's config) the default fetch reads from MISP."""
    if engine.pm.get_plugin("misp_fetch") is None:
        return []
    streams = (view or engine.config).streams
    return [name for name in streams.enabled() if engine.streams.require(name).scope is not None]


def problems(engine: Any) -> list[str]:
    """One line per thing in the engine's configuration that cannot work."""
    from misp_ti.ecs.types import TYPE_RULES

    config = engine.config
    found = []
    if not config.streams.enabled():
        found.append("streams: no stream is enabled (set streams.<name>.enabled = true; `misp-ti plugins` lists the streams)")
    for source, view in getattr(engine, "sources", {"default": config}).items():
        # each [misp.<name>] source is checked as the single [misp] is
        table = f"misp.{source}" if config.named_sources else "misp"
        variable = "MISP_TI_" + table.upper().replace(".", "__")
        misp_streams = _reads_misp(engine, view)
        if not misp_streams:
            continue
        key = view.misp.api_key
        if key is None or not key.get_secret_value():
            found.append(
                f"{table}.api_key: not set, and the enabled streams ({', '.join(misp_streams)}) read MISP with it "
                f"(set {variable}__API_KEY, {table}.api_key or {table}.api_key_file)"
            )
        if view.misp.url == PLACEHOLDER_URL:
            found.append(f"{table}.url: still the placeholder {PLACEHOLDER_URL}; set your MISP's URL ({table}.url or {variable}__URL)")
    known = sorted({*TYPE_RULES, *ECS_INDICATOR_TYPES})
    for name in config.expiry.by_type:
        if name not in TYPE_RULES and name not in ECS_INDICATOR_TYPES:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            found.append(f"expiry.by_type.{name}: not a MISP type nor an ECS indicator type (e.g. ip-dst, domain, sha256, ipv4-addr){hint}")
    variables = env_variables(os.environ)
    return [name_variable(line, variables) for line in found]


@dataclass(frozen=True, slots=True)
class Check:
    """One question asked of a server or a file, and its answer."""

    name: str
    outcome: str  # "ok", "failed", "skipped" or "warning" (a failure nothing enabled depends on)
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    def line(self) -> str:
        return f"{self.name}... {self.outcome.upper()}" + (f" ({self.detail})" if self.detail else "")


def _ask(name: str, question: Callable[[], str]) -> Check:
    try:
        return Check(name, "ok", question())
    except (MispTiError, OSError, sqlite3.Error, ValueError, KeyError, TypeError) as exc:
        return Check(name, "failed", str(exc) or type(exc).__name__)


def connect(engine: Any) -> Iterator[Check]:
    """Ask MISP, then each enabled sink, whether they work with this configuration."""
    sources = getattr(engine, "sources", {"default": engine.config})
    urls = [view.misp.url for view in sources.values()] + list(engine.config.output.elasticsearch.hosts)
    hidden = {url: public_url(url) for url in urls if public_url(url) != url}
    for check in _all_checks(engine):
        detail = check.detail
        for url, shown in hidden.items():  # error messages quote the URL as configured
            detail = detail.replace(url, shown)
        yield Check(check.name, check.outcome, detail)


def _all_checks(engine: Any) -> Iterator[Check]:
    for source in getattr(engine, "sources", {"default": engine.config}):
        yield from _misp_checks(engine, source)
    for sink in engine.config.output.sinks:
        check = _SINK_CHECKS.get(sink)
        if check is None:
            yield Check(f"{sink}: sink", "skipped", "misp-ti has no check for a plugin's sink")
        else:
            yield from check(engine)


# MISP -----------------------------------------------------------------------


def _misp_checks(engine: Any, source: str) -> Iterator[Check]:
    """The checks of one MISP source; named sources' lines say ``misp <name> <url>``."""
    from misp_ti.default_plugins.misp_fetch import client, request_body

    ctx = engine.context(check=True, source=source)
    view = ctx.config
    label = f"misp {source}" if engine.config.named_sources else "misp"
    streams = _reads_misp(engine, view)
    if not streams:
        yield Check(label, "skipped", "no enabled stream reads MISP")
        return
    misp = client(ctx)
    where = f"{label} {public_url(view.misp.url)}"
    version = _ask(f"{where}: version", lambda: _version(misp))
    if version.failed and ("(403 on" in version.detail or "(401 on" in version.detail):
        yield Check(f"{where}: version", "ok", "MISP answered")
        yield Check(f"{label}: key accepted", "failed", version.detail)
    else:
        yield version
        yield Check(f"{label}: key accepted", "skipped", "MISP did not answer") if version.failed else Check(f"{label}: key accepted", "ok")
    if version.failed:
        for name in (f"{label}: decaying models", *(f"{label}: restSearch {s}" for s in streams)):
            yield Check(name, "skipped", "MISP did not answer")
        return
    models = _ask(f"{label}: decaying models", lambda: _models(misp))
    expiry = engine.config.expiry
    if models.failed and (expiry.policy != "decay-model" or expiry.decay_models_path is not None):
        models = Check(models.name, "warning", f"{models.detail}; not needed: expiry.policy = {expiry.policy}"
                       + (" reads expiry.decay_models_path" if expiry.decay_models_path else ""))
    yield models
    for name in streams:
        spec = engine.streams.require(name)
        body = {**request_body(spec, view.streams.settings(name)), "limit": 1, "page": 1}
        yield _ask(f"{label}: restSearch {name}", lambda spec=spec, body=body: _search(misp, spec, body))


def _version(misp: Any) -> str:
    answer = misp.get_json("/servers/getVersion")
    if not isinstance(answer, dict) or not isinstance(answer.get("version"), str):
        raise ValueError("the answer of /servers/getVersion holds no version: is misp.url a MISP?")
    return f"MISP {answer['version']}"


def _models(misp: Any) -> str:
    answer = misp.get_json("/decayingModel/index")
    if not isinstance(answer, list):
        raise ValueError("the answer of /decayingModel/index is not a list of models")
    return f"{len(answer)} visible"


def _search(misp: Any, spec: Any, body: dict[str, Any]) -> str:
    result = misp.search(spec.scope, body, path=spec.restsearch_path)
    return f"answered, {len(result.items)} {spec.scope[:-1] if len(result.items) == 1 else spec.scope} on a page of 1"


# sinks -----------------------------------------------------------------------


def _sqlite_checks(engine: Any) -> Iterator[Check]:
    path = Path(engine.config.output.sqlite.path)
    yield _ask(f"sqlite {path}: writable", lambda: _writable_store(path))


def _writable_store(path: Path) -> str:
    if not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"the folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"the folder {parent} is not writable: the store cannot be created")
        return "will be created"
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # "file is not a database" here
        conn.execute("BEGIN IMMEDIATE")  # a write lock: read-only files and full disks fail here
        conn.rollback()
    finally:
        conn.close()
    return "exists"


def _ndjson_checks(engine: Any) -> Iterator[Check]:
    target = engine.config.output.ndjson.path
    if target == "-":
        yield Check("ndjson: standard output", "ok")
        return
    path = Path(target)
    folder = path.parent if str(path.parent) else Path(".")

    def writable() -> str:
        if path.exists():
            if not os.access(path, os.W_OK):
                raise ValueError(f"{path} is not writable")
            return "exists"
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"the folder {folder} is missing or not writable")
        return "will be created"

    yield _ask(f"ndjson {path}: writable", writable)


def _elasticsearch_checks(engine: Any) -> Iterator[Check]:
    from misp_ti.sinks.elasticsearch.client import make_client, send
    from misp_ti.sinks.elasticsearch.provision import request

    settings = engine.config.output.elasticsearch
    where = f"elasticsearch {'cloud' if settings.cloud_id else ', '.join(public_url(h) for h in settings.hosts)}"

    def version() -> str:
        client = make_client(settings)
        try:
            answer = send(client, request("GET", "/"))
        finally:
            client.close()
        number = (answer.body or {}).get("version", {}).get("number") if isinstance(answer.body, dict) else None
        if answer.status != 200 or not number:
            raise ValueError(f"GET / answered {answer.status} without a version: is this Elasticsearch?")
        return f"Elasticsearch {number}"

    found = _ask(f"{where}: version", version)
    yield found
    if found.failed:
        yield Check("elasticsearch: privileges", "skipped", "Elasticsearch did not answer")
        return

    def privileges() -> str:
        answers = [a for a in engine.provision(check=True) if a.get("sink") == "elasticsearch"]
        lacking = [m for a in answers if a.get("ok") is False for m in a.get("missing") or ["?"]]
        if lacking:
            raise ValueError("lacks: " + "; ".join(lacking))
        notes = [a["note"] for a in answers if a.get("note")]
        return "; ".join(notes) or "every privilege misp-ti needs"

    yield _ask("elasticsearch: privileges", privileges)


_SINK_CHECKS: dict[str, Callable[[Any], Iterator[Check]]] = {
    "sqlite": _sqlite_checks,
    "ndjson": _ndjson_checks,
    "elasticsearch": _elasticsearch_checks,
}
