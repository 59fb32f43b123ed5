"""A plugin's settings: the ``[plugin.<name>]`` table, validated by the
pydantic model the plugin declares (``MISP_TI_SETTINGS = {"<name>": Model}``).

The engine validates every declared table at start-up
(:func:`misp_ti.manager.validate_plugin_settings`); a plugin reads its own
with :meth:`misp_ti.config.Config.plugin_settings`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ValidationError

from misp_ti.errors import ConfigError

if TYPE_CHECKING:
    from misp_ti.config import Config

M = TypeVar("M", bound=BaseModel)


def validate_plugin_table(config: Config, name: str, model: type[M]) -> M:
    """``[plugin.<name>]`` (or, deprecated, a plugin sink's ``[output.<name>]``)
    validated by ``model``; a missing table is the model's defaults. Errors are
    one line, each naming its key (``plugin.<name>.<key>``)."""
    from misp_ti.config import _describe_error

    where = f"plugin.{name}"
    data = config.plugin.get(name)
    old = (config.output.model_extra or {}).get(name)
    if old is not None:
        if data is not None:
            raise ConfigError(f"output.{name}: the old place of [{where}]; give only [{where}]")
        warnings.warn(
            f"[output.{name}] is deprecated for a plugin's settings: move it to [{where}]",
            DeprecationWarning,
            stacklevel=3,
        )
        data = old
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(
            "; ".join(_describe_error(err, data or {}, prefix=tuple(where.split(".")), root=model) for err in exc.errors())
        ) from None
