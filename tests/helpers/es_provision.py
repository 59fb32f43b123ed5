"""Provisioning against the Elasticsearch model without HTTP: the config and
the sender that ``test_es_provision`` and ``test_es_contract`` share."""

from __future__ import annotations

from typing import Any

from misp_ti.config import Config, build_config
from misp_ti.errors import SinkError
from misp_ti.sinks.elasticsearch import provision as prov
from misp_ti.testing.es_model import ModelCluster


def config(**es: Any) -> Config:
    """Both streams on, the Elasticsearch sink alone, ``es`` as its settings."""
    return build_config(
        {"output": {"sinks": ["elasticsearch"], "elasticsearch": es}, "plugins": {"entrypoints": False},
         "streams": {"threat": {"enabled": True}}},
        source="test",
    )


def wire_params(params: dict[str, Any] | None) -> dict[str, str]:
    """Query parameters as the client puts them on the wire."""
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (params or {}).items()}


def sender(cluster: ModelCluster, user: str | None = None) -> Any:
    """A provisioning sender answered by ``cluster`` (as ``user``); errors other
    than 404 raise like the real sender."""
    def send(req: dict[str, Any], _assumed: Any = None) -> prov.Answer:
        answer = cluster.handle(req["method"], req["path"], wire_params(req["params"]), req["body"], user=user)
        if answer.status >= 400 and answer.status != 404:
            raise SinkError(f"{req['method']} {req['path']}: HTTP {answer.status} {answer.body}")
        return prov.Answer(answer.status, answer.body)
    return send
