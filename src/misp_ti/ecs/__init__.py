"""The ECS mapping of MISP records (what Elastic's ti_misp pipeline produces,
without its quirks). The ``transform_doc`` plugin and ``misp-ti transform``
use :func:`transform`; the Elasticsearch sink maps :data:`EXTENSION_FIELDS`.
A record nothing can turn into an indicator becomes the document
:func:`error_document` builds, recognised by :func:`is_pipeline_error`.
"""

from misp_ti.ecs.documents import (
    MAX_VALUE_CHARS,
    PIPELINE_ERROR,
    error_document,
    is_pipeline_error,
    transform,
)
from misp_ti.ecs.fields import ECS_VERSION, EXTENSION_FIELDS, EXTENSION_HASHES, EXTENSION_VALUES
from misp_ti.ecs.options import Options, options_for
from misp_ti.ecs.types import TYPE_RULES

__all__ = [
    "ECS_VERSION",
    "EXTENSION_FIELDS",
    "EXTENSION_HASHES",
    "EXTENSION_VALUES",
    "MAX_VALUE_CHARS",
    "PIPELINE_ERROR",
    "TYPE_RULES",
    "Options",
    "error_document",
    "is_pipeline_error",
    "options_for",
    "transform",
]
