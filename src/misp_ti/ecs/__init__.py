"""The ECS mapping of MISP records (what Elastic's ti_misp pipeline produces,
without its quirks). The ``transform_doc`` plugin and ``misp-ti transform``
use :func:`transform`; the Elasticsearch sink maps :data:`EXTENSION_FIELDS`.
"""

from misp_ti.ecs.documents import MAX_VALUE_CHARS, Options, error_document, transform
from misp_ti.ecs.fields import ECS_VERSION, EXTENSION_FIELDS, EXTENSION_HASHES, EXTENSION_VALUES
from misp_ti.ecs.types import TYPE_RULES

__all__ = [
    "ECS_VERSION",
    "EXTENSION_FIELDS",
    "EXTENSION_HASHES",
    "EXTENSION_VALUES",
    "MAX_VALUE_CHARS",
    "TYPE_RULES",
    "Options",
    "error_document",
    "transform",
]
