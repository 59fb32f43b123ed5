"""The options every ``misp-ti`` command takes, before or after its name.

``misp-ti --config C once`` and ``misp-ti once --config C`` mean the same:
the group declares the options (:func:`global_options`) and
:func:`accept_global_options` gives every command a copy that, when typed,
updates the options the group's callback recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

#: ``(declarations, settings)`` of each global option, in help order.
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--config", "-c", "config_path"), {"type": click.Path(dir_okay=False), "help": "TOML config file (default: $MISP_TI_CONFIG, else built-in defaults)."}),
    (("--plugin", "plugins"), {"multiple": True, "metavar": "MODULE", "help": "Register a plugin module (repeatable; it must be importable: installed, or its folder on PYTHONPATH)."}),
    (("--block", "blocked"), {"multiple": True, "metavar": "NAME", "help": "Never register the plugin with this name (repeatable; adds to plugins.block)."}),
    (("--quiet", "-q"), {"is_flag": True, "help": "Only warnings and errors; no progress."}),
    (("--log-format",), {"type": click.Choice(["text", "json"]), "default": None, "help": "Log line format (overrides log.format)."}),
    (("--verbose", "-v"), {"is_flag": True, "help": "Debug logging."}),
)


def _global_option_given_late(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option typed after the command name: it updates the shared
    ``Obj`` (made by the group's callback, which runs before its command is parsed)."""
    if ctx.get_parameter_source(param.name or "") is not click.core.ParameterSource.COMMANDLINE:
        return
    obj = ctx.find_root().obj
    if obj is None or param.name is None or not hasattr(obj, param.name):
        return
    if getattr(param, "multiple", False):
        setattr(obj, param.name, (*getattr(obj, param.name), *value))
    else:
        setattr(obj, param.name, value)


def accept_global_options(command: click.Command) -> None:
    """Give ``command`` (and, for a group, every command in it) the global
    options, unless it defines an option of the same spelling itself."""
    taken = {opt for p in command.params for opt in (*p.opts, *getattr(p, "secondary_opts", ()))}
    for decls, settings in GLOBAL_OPTIONS:
        if not taken.intersection(d for d in decls if d.startswith("-")):
            command.params.append(click.Option(decls, expose_value=False, callback=_global_option_given_late, **settings))
    for sub in getattr(command, "commands", {}).values():
        accept_global_options(sub)


def global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Declare the global options on the group (``--config`` also read from ``$MISP_TI_CONFIG``)."""
    for decls, settings in reversed(GLOBAL_OPTIONS):
        extra = {"envvar": "MISP_TI_CONFIG"} if "config_path" in decls else {}
        func = click.option(*decls, **settings, **extra)(func)
    return func
