"""The default plugins, one module per concern.

They are registered through the same plugin manager as third-party plugins,
in this order, before any entry-point or ``--plugin`` module (so those are
asked first). Block one with ``plugins.block = ["<short name>"]``.
"""

DEFAULT_PLUGINS = (
    "misp_ti.default_plugins.misp_fetch",
    "misp_ti.default_plugins.ecs_transform",
    "misp_ti.default_plugins.expiry",
    "misp_ti.default_plugins.expiry_decay_model",
    "misp_ti.default_plugins.sqlite_sink",
    "misp_ti.default_plugins.ndjson_sink",
    "misp_ti.default_plugins.elasticsearch_sink",
)
