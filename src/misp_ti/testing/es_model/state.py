"""The model's cluster state: plain dataclasses every module of the model shares.

This is a model of Elasticsearch's cluster metadata (``Metadata``,
``IndexMetadata``, ``AliasMetadata``, ``DataStream`` in
elastic/elasticsearch ``server/src/main/java/org/elasticsearch/cluster/metadata/``),
reduced to what misp-ti's provisioning, bulk writes and the tests touch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AliasMeta:
    filter: dict[str, Any] | None = None
    is_hidden: bool = False
    is_write_index: bool | None = None


@dataclass
class IndexMeta:
    name: str
    settings: dict[str, Any]
    mapping: Any  # mappings.Mapping
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, AliasMeta] = field(default_factory=dict)
    data_stream: str | None = None
    creation_ms: int = 0
    uuid: str = ""
    #: version of each document, for ``_version`` in answers
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def hidden(self) -> bool:
        return str(self.settings.get("index.hidden", False)).lower() == "true"


@dataclass
class DataStreamMeta:
    name: str
    template: str
    backing: list[str] = field(default_factory=list)
    failure_store: bool = False
    failure_docs: list[dict[str, Any]] = field(default_factory=list)
    hidden: bool = False
    generation: int = 1

    @property
    def write_index(self) -> str:
        return self.backing[-1]


@dataclass
class ClusterState:
    version: tuple[int, int] = (8, 15)
    clock: Callable[[], datetime] = _utcnow
    component_templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    index_templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    ilm_policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    indices: dict[str, IndexMeta] = field(default_factory=dict)
    data_streams: dict[str, DataStreamMeta] = field(default_factory=dict)
    transforms: dict[str, Any] = field(default_factory=dict)
    #: None: security disabled (every request allowed, ``_has_privileges`` refused)
    security: Any = None
    auto_id_counter: int = 0
    #: ILM policy name -> (version, modified ISO date)
    ilm_versions: dict[str, tuple[int, str]] = field(default_factory=dict)


class ModelUnsupported(Exception):
    """Something Elasticsearch accepts that the model does not model; answered 501."""


@dataclass
class Response:
    """One answer of the model: an HTTP status and a JSON-able body."""

    status: int
    body: Any = None


def es_error(status: int, type: str, reason: str, *, caused_by: dict[str, Any] | None = None, **extra: Any) -> Response:
    """An error answer shaped as Elasticsearch's (``ElasticsearchException.generateFailureXContent`` via
    ``RestResponse``): ``{"error": {"root_cause": [...], "type", "reason", ...}, "status"}``."""
    cause = {"type": type, "reason": reason, **extra}
    error: dict[str, Any] = {"root_cause": [cause], **cause}
    if caused_by:
        error["caused_by"] = caused_by
    return Response(status, {"error": error, "status": status})


def unsupported(what: str) -> Response:
    """The model's own refusal: Elasticsearch may accept this, the model does not model it."""
    return es_error(501, "model_unsupported_exception", f"the Elasticsearch model does not support {what}")
