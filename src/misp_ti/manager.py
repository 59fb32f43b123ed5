"""The plugin manager: built-in plugins, entry points and ``--plugin`` modules.

Built-ins are registered through the same manager as third-party plugins,
first, so that plugins registered later are asked first (pluggy calls the
last registered implementation first).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import pluggy

from misp_ti import PROJECT_NAME, hookspecs
from misp_ti.default_plugins import DEFAULT_PLUGINS
from misp_ti.errors import PluginError
from misp_ti.streams import StreamRegistry

#: Attribute names through which plugins declare what they provide.
SINKS_ATTR = "MISP_TI_SINKS"
POLICIES_ATTR = "MISP_TI_EXPIRY_POLICIES"
STREAMS_ATTR = "MISP_TI_STREAMS"


def _short_name(module_path: str) -> str:
    return module_path.rsplit(".", 1)[-1]


def make_plugin_manager(
    *,
    extra_plugins: Iterable[str | ModuleType | object] = (),
    blocked: Iterable[str] = (),
    load_entrypoints: bool = True,
) -> pluggy.PluginManager:
    """Build a manager with the built-ins, installed entry points and extras.

    :param extra_plugins: module paths (``--plugin``) or plugin objects.
    :param blocked: plugin names never to register: a built-in's short name
        (``sqlite_sink``), an entry-point name, or a ``--plugin`` module path.
    :param load_entrypoints: load the ``misp_ti`` entry-point group (tests
        switch this off so installed plugins cannot change their outcome).
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    for module_path in DEFAULT_PLUGINS:
        name = _short_name(module_path)
        if pm.is_blocked(name):
            continue
        pm.register(importlib.import_module(module_path), name=name)
    if load_entrypoints:
        try:
            pm.load_setuptools_entrypoints(PROJECT_NAME)
        except Exception as exc:
            raise PluginError(f"loading an installed misp_ti plugin failed: {exc}") from exc
    for plugin in extra_plugins:
        if isinstance(plugin, str):
            if pm.is_blocked(plugin):
                continue
            try:
                module = importlib.import_module(plugin)
            except ImportError as exc:
                raise PluginError(f"--plugin {plugin!r} cannot be imported: {exc}") from exc
            pm.register(module, name=plugin)
        else:
            pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    return pm


def declarations(pm: pluggy.PluginManager, attr: str) -> list[tuple[str, Any]]:
    """``(plugin name, item)`` for every item a registered plugin declares under ``attr``,
    plugins in registration order (built-ins first)."""
    found: list[tuple[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        found.extend((name, declared) for declared in getattr(plugin, attr, ()) or ())
    return found


def declared_names(pm: pluggy.PluginManager, attr: str) -> dict[str, str]:
    """Map each name declared under ``attr`` by a registered plugin to that plugin's name."""
    found: dict[str, str] = {}
    for plugin_name, declared in declarations(pm, attr):
        found.setdefault(declared, plugin_name)
    return found


def declared_streams(pm: pluggy.PluginManager) -> StreamRegistry:
    """The streams the registered plugins declare under ``MISP_TI_STREAMS``
    (:class:`~misp_ti.errors.PluginError` for a name declared twice)."""
    return StreamRegistry(declarations(pm, STREAMS_ATTR))


def describe(pm: pluggy.PluginManager) -> list[dict[str, object]]:
    """Every hook with the plugins implementing it, in call order."""
    rows: list[dict[str, object]] = []
    for hook_name in hookspecs.HOOK_NAMES:
        caller = getattr(pm.hook, hook_name)
        impls = list(reversed(caller.get_hookimpls()))  # the order pluggy calls them
        rows.append(
            {
                "hook": hook_name,
                "firstresult": bool(caller.spec and caller.spec.opts.get("firstresult")),
                "plugins": [impl.plugin_name for impl in impls],
            }
        )
    return rows


def plugin_inventory(pm: pluggy.PluginManager) -> list[dict[str, object]]:
    """Every registered plugin with the hooks and names it provides."""
    rows: list[dict[str, object]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or ())
        rows.append(
            {
                "name": name,
                "hooks": hooks,
                "sinks": list(getattr(plugin, SINKS_ATTR, ()) or ()),
                "expiry_policies": list(getattr(plugin, POLICIES_ATTR, ()) or ()),
                "streams": [getattr(spec, "name", repr(spec)) for spec in getattr(plugin, STREAMS_ATTR, ()) or ()],
            }
        )
    return rows
