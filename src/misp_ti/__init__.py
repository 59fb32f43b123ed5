"""misp-ti: keep the IOCs that are valid right now in MISP flowing into Elasticsearch.

Plugin authors import :data:`hookimpl` from here::

    import misp_ti

    @misp_ti.hookimpl
    def transform_doc(*, stream, record, ctx):
        ...
"""

from __future__ import annotations

from typing import Any

from misp_ti import _moved

__version__ = "0.1.0"

#: The one project name used for hook markers, the plugin manager and the
#: entry-point group through which third-party plugins are found.
PROJECT_NAME = "misp_ti"

_moved.install()  # old module paths keep importing, with a DeprecationWarning


def __getattr__(name: str) -> Any:
    # pluggy is loaded with the first plugin, not by every ``misp-ti`` start
    # (``lookup`` never loads a plugin)
    if name == "hookimpl":
        import pluggy

        marker = globals()["hookimpl"] = pluggy.HookimplMarker(PROJECT_NAME)
        return marker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
