"""misp-ti: keep the IOCs that are valid right now in MISP flowing into Elasticsearch.

Plugin authors import :data:`hookimpl` from here::

    import misp_ti

    @misp_ti.hookimpl
    def transform_doc(*, stream, record, ctx):
        ...
"""

from __future__ import annotations

import pluggy

from misp_ti import _moved

__version__ = "0.1.0"

#: The one project name used for hook markers, the plugin manager and the
#: entry-point group through which third-party plugins are found.
PROJECT_NAME = "misp_ti"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

_moved.install()  # old module paths keep importing, with a DeprecationWarning

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
