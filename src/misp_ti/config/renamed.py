"""Old spellings of config keys: still read, with a :class:`DeprecationWarning`
naming the new key (listed under "Old spellings" in the generated reference)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from misp_ti.errors import ConfigError


@dataclass(frozen=True)
class Renamed:
    """An old spelling of a key. ``convert`` turns the old value into the new
    key's (a ``ValueError`` from it is a one-line config error naming the old key)."""

    new: str
    convert: Callable[[Any], Any] | None = None


def toml_text(value: Any) -> str:
    """``value`` as it would be written in the TOML file."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, timedelta):
        from misp_ti.config import format_duration

        return f'"{format_duration(value)}"'
    return f'"{value}"' if isinstance(value, str) else repr(value)


def read_old_spellings(section: str, renamed: Mapping[str, Renamed], data: Any) -> Any:
    """``data`` (one section's raw table) with every old key moved to its new
    name, warning once per key; an old and a new spelling together are an error."""
    if not renamed or not isinstance(data, dict):
        return data
    where = f"{section}." if section else ""
    for old, rename in renamed.items():
        if old not in data:
            continue
        if rename.new in data:
            raise ConfigError(f"{where}{old}: an old spelling of {where}{rename.new}; give only {rename.new}")
        value = data[old]
        if rename.convert is not None:
            try:
                value = rename.convert(value)
            except ValueError as exc:
                raise ConfigError(f"{where}{old}: bad value {value!r}: {exc}") from None
        warnings.warn(
            f"{where}{old} is deprecated: write {where}{rename.new} = {toml_text(value)}",
            DeprecationWarning,
            stacklevel=2,
        )
        data = {key: item for key, item in data.items() if key != old}
        data[rename.new] = value
    return data
