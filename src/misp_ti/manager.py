"""The plugin manager: built-in plugins, entry points and ``--plugin`` modules.

Built-ins are registered through the same manager as third-party plugins,
first, so that plugins registered later are asked first (pluggy calls the
last registered implementation first).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from misp_ti import PROJECT_NAME, hookspecs
from misp_ti.default_plugins import DEFAULT_PLUGINS
from misp_ti.errors import PluginError
from misp_ti.model import ExpiryPolicy, Sink
from misp_ti.streams import StreamRegistry

if TYPE_CHECKING:
    from misp_ti.config import Config

if TYPE_CHECKING:
    from pydantic import BaseModel

    from misp_ti.config import Config

#: Attribute names through which plugins declare what they provide.
SINKS_ATTR = "MISP_TI_SINKS"
POLICIES_ATTR = "MISP_TI_EXPIRY_POLICIES"
STREAMS_ATTR = "MISP_TI_STREAMS"
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
                raise PluginError(
                    f"--plugin {plugin!r} cannot be imported: {exc} (give its import path, e.g. my_plugin, not a file, "
                    "and install it or put the folder holding it on PYTHONPATH)"
                ) from exc
            if pm.is_registered(module) or pm.has_plugin(plugin):
                continue  # named twice (plugins.load and --plugin, an entry point too): registered once
            pm.register(module, name=plugin)
        elif not pm.is_registered(plugin):
            pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    return pm


def declared_items(pm: pluggy.PluginManager, attr: str) -> list[tuple[str, Any]]:
    """``(plugin name, item)`` for every item a registered plugin declares under ``attr``,
    plugins in registration order (built-ins first), as declared."""
    found: list[tuple[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        found.extend((name, declared) for declared in getattr(plugin, attr, ()) or ())
    return found


def plugin_manager_for(
    config: Config, extra_plugins: Iterable[str | ModuleType | object] = (), *, load_entrypoints: bool | None = None
) -> pluggy.PluginManager:
    """The manager ``config`` asks for: ``plugins.load`` then ``extra_plugins``,
    without ``plugins.block``, with entry points if ``plugins.entrypoints``
    (unless ``load_entrypoints`` says otherwise, as the test kit does)."""
    return make_plugin_manager(
        extra_plugins=[*config.plugins.load, *extra_plugins],
        blocked=config.plugins.block,
        load_entrypoints=config.plugins.entrypoints if load_entrypoints is None else load_entrypoints,
    )


#: declaration attribute -> the spec type each declaration (or plain name) becomes
_SPECS: dict[str, type] = {SINKS_ATTR: Sink, POLICIES_ATTR: ExpiryPolicy}


def declarations(pm: pluggy.PluginManager, attr: str) -> dict[str, tuple[str, Any]]:
    """Each name declared under ``attr`` -> (the declaring plugin's name, its spec).

    A plain name declares a spec with defaults (``"x"`` in ``MISP_TI_SINKS``
    is ``Sink("x")``). The first plugin registered wins a name.
    """
    spec_type = _SPECS[attr]
    found: dict[str, tuple[str, Any]] = {}
    for plugin_name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        for declared in getattr(plugin, attr, ()) or ():
            spec = spec_type(declared) if isinstance(declared, str) else declared
            if not isinstance(spec, spec_type):
                raise PluginError(
                    f"plugin {plugin_name}: {attr} holds {declared!r}; expected a name or a misp_ti.model.{spec_type.__name__}"
                )
            found.setdefault(spec.name, (plugin_name, spec))
    return found


def declared_names(pm: pluggy.PluginManager, attr: str) -> dict[str, str]:
    """Map each name declared under ``attr`` by a registered plugin to that plugin's name."""
    return {name: plugin_name for name, (plugin_name, _) in declarations(pm, attr).items()}


def _names(plugin: object, attr: str) -> list[str]:
    return [d if isinstance(d, str) else getattr(d, "name", repr(d)) for d in getattr(plugin, attr, ()) or ()]


def declared_streams(pm: pluggy.PluginManager) -> StreamRegistry:
    """The streams the registered plugins declare under ``MISP_TI_STREAMS``
    (:class:`~misp_ti.errors.PluginError` for a name declared twice)."""
    return StreamRegistry(declared_items(pm, STREAMS_ATTR))


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
                "sinks": _names(plugin, SINKS_ATTR),
                "expiry_policies": _names(plugin, POLICIES_ATTR),
                "streams": [getattr(spec, "name", repr(spec)) for spec in getattr(plugin, STREAMS_ATTR, ()) or ()],
                "settings": [f"plugin.{table}" for table in getattr(plugin, SETTINGS_ATTR, None) or ()],
            }
        )
    return rows
