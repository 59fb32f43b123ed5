"""The plugin manager: built-in plugins, entry points and ``--plugin`` modules.

Built-ins are registered through the same manager as third-party plugins,
first, so that plugins registered later are asked first (pluggy calls the
last registered implementation first).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from misp_ti import PROJECT_NAME, hookspecs
from misp_ti.default_plugins import DEFAULT_PLUGINS
from misp_ti.errors import PluginError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from misp_ti.config import Config

#: Attribute names through which plugins declare what they provide.
SINKS_ATTR = "MISP_TI_SINKS"
POLICIES_ATTR = "MISP_TI_EXPIRY_POLICIES"
#: ``{"<table>": PydanticModel}``: the ``[plugin.<table>]`` settings a plugin reads.
SETTINGS_ATTR = "MISP_TI_SETTINGS"


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


def declared_names(pm: pluggy.PluginManager, attr: str) -> dict[str, str]:
    """Map each name declared under ``attr`` by a registered plugin to that plugin's name."""
    found: dict[str, str] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        for declared in getattr(plugin, attr, ()) or ():
            found.setdefault(declared, name)
    return found


def declared_settings(pm: pluggy.PluginManager) -> dict[str, type[BaseModel]]:
    """``[plugin.<table>]`` name -> the settings model a registered plugin declares for it."""
    from pydantic import BaseModel

    found: dict[str, type[BaseModel]] = {}
    for name, plugin in pm.list_name_plugin():
        declared = getattr(plugin, SETTINGS_ATTR, None) if plugin is not None else None
        if declared is None:
            continue
        if not isinstance(declared, Mapping) or not all(
            isinstance(table, str) and isinstance(model, type) and issubclass(model, BaseModel)
            for table, model in declared.items()
        ):
            raise PluginError(f"plugin {name}: {SETTINGS_ATTR} must map table names to pydantic models")
        for table, model in declared.items():
            if found.get(table, model) is not model:
                raise PluginError(f"plugin {name}: another plugin already declares the settings [plugin.{table}]")
            found[table] = model
    return found


def validate_plugin_settings(pm: pluggy.PluginManager, config: Config) -> None:
    """Check every declared ``[plugin.<table>]`` against its model, up front
    (a bad value is a one-line ``ConfigError`` naming the key)."""
    for table, model in declared_settings(pm).items():
        config.plugin_settings(table, model)


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
                "settings": [f"plugin.{table}" for table in getattr(plugin, SETTINGS_ATTR, None) or ()],
            }
        )
    return rows
