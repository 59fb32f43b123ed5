"""Old module paths that still import, with a :class:`DeprecationWarning`.

The modules moved into rooms that follow the flow (``misp/``, ``sinks/``,
``default_plugins/``, ``config/``, ``simulator/``). A plugin written against
an old path keeps working: importing the old name returns the module under
its new name (the same module object, so patching either name patches both).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import importlib.abc

#: old dotted path -> new dotted path
MOVED: dict[str, str] = {
    "misp_ti.config_reference": "misp_ti.config.reference",
    "misp_ti.misp_client": "misp_ti.misp.client",
    "misp_ti.misp_paging": "misp_ti.misp.paging",
    "misp_ti.decay": "misp_ti.misp.decay",
    "misp_ti.store": "misp_ti.sinks.sqlite",
    "misp_ti.es": "misp_ti.sinks.elasticsearch",
    "misp_ti.es.assets": "misp_ti.sinks.elasticsearch.assets",
    "misp_ti.es.bulk": "misp_ti.sinks.elasticsearch.bulk",
    "misp_ti.es.client": "misp_ti.sinks.elasticsearch.client",
    "misp_ti.es.provision": "misp_ti.sinks.elasticsearch.provision",
    "misp_ti.demo": "misp_ti.simulator.demo",
    "misp_ti.plugins": "misp_ti.default_plugins",
    "misp_ti.testing.simulator": "misp_ti.simulator",
    **{
        f"misp_ti.plugins.{name}": f"misp_ti.default_plugins.{name}"
        for name in (
            "misp_fetch",
            "ecs_transform",
            "expiry",
            "expiry_decay_model",
            "sqlite_sink",
            "ndjson_sink",
            "elasticsearch_sink",
        )
    },
}


# a loader and a meta path finder by protocol: importlib.abc would load
# importlib.resources (and tempfile) with every start of the package
class _Alias:
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class _MovedFinder:
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        warnings.warn(
            f"{fullname} moved to {new}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.util.spec_from_loader(fullname, cast("importlib.abc.Loader", _Alias(new)))


def install() -> None:
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
