"""Several MISP servers in one configuration: ``[misp.<name>]`` tables.

Two forms, never mixed:

* one MISP: ``[misp]`` holds ``url`` and the key, as always; it is the
  source named ``default`` (:data:`DEFAULT_SOURCE`);
* several: each ``[misp.<name>]`` table is one source with every key of
  ``[misp]`` (its own URL, key or key file, TLS options, limits) and an
  optional ``[misp.<name>.streams.<stream>]`` table laid over
  ``[streams.<stream>]`` for that source only (filters, intervals, a stream
  switched on or off). Keys left directly in ``[misp]`` are shared defaults
  of every named source, except the ones that say *which* MISP
  (:data:`WHICH_MISP`): ``[misp]`` with a ``url`` or a key beside named
  tables is an error naming that key.

Environment overrides follow the usual spelling, one more level:
``MISP_TI_MISP__PARTNER__URL``, ``MISP_TI_MISP__PARTNER__API_KEY``,
``MISP_TI_MISP__PARTNER__STREAMS__THREAT__ENABLED=true``. A source's name is
lower-case letters, digits and ``_`` (variables are upper-cased names).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from misp_ti.errors import ConfigError
from misp_ti.state_schema import DEFAULT_SOURCE

if TYPE_CHECKING:
    from misp_ti.config import MispSettings, Streams

__all__ = ["DEFAULT_SOURCE", "WHICH_MISP", "NamedSource", "split_sources", "validate_sources"]

#: The ``[misp]`` keys that name one server; shared defaults cannot hold them.
WHICH_MISP = ("url", "api_key", "api_key_file")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class SourceErrors(ValueError):
    """Bad keys in ``[misp.<name>]`` tables: one line each (``misp.<name>.<key>: ...``)."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


class NamedSource:
    """One ``[misp.<name>]`` table, validated: its MISP settings and its streams."""

    __slots__ = ("misp", "name", "streams")

    def __init__(self, name: str, misp: MispSettings, streams: Streams):
        self.name = name
        self.misp = misp
        self.streams = streams


def split_sources(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(data without the named tables, {name: table})``; ``data`` is not changed.

    A table under ``[misp]`` whose name is not a ``[misp]`` key is a source.
    """
    from misp_ti.config import MispSettings

    misp = data.get("misp")
    if not isinstance(misp, dict):
        return data, {}
    named = {k: v for k, v in misp.items() if isinstance(v, dict) and k not in MispSettings.model_fields}
    if not named:
        return data, {}
    for name in named:
        if name == "streams":
            # most likely meant as stream settings, which have their own places
            raise ConfigError(
                "misp.streams: stream settings of every source go in [streams.<stream>], "
                "and those of one source in [misp.<name>.streams.<stream>]; 'streams' cannot name a source"
            )
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"misp.{name}: a source name is lower-case letters, digits and _ (starting with a letter), "
                "as it is also spelled in environment variables (MISP_TI_MISP__<NAME>__URL)"
            )
    shared = {k: v for k, v in misp.items() if k not in named}
    for key in WHICH_MISP:
        if key in shared:
            raise ConfigError(
                f"misp.{key}: set either one MISP in [misp] or named sources in [misp.<name>] tables "
                f"(here: {', '.join(named)}), not both; move {key} into the [misp.<name>] table it belongs to"
            )
    return {**data, "misp": shared}, named


def validate_sources(
    named: dict[str, dict[str, Any]], shared: dict[str, Any], streams: dict[str, Any]
) -> dict[str, NamedSource]:
    """Each named table over the shared ``[misp]`` keys, and its streams over
    ``[streams]``; :class:`SourceErrors`: one line per bad key, named ``misp.<name>.<key>``."""
    from misp_ti.config import MispSettings, Streams, _describe_error, merge_settings

    sources: dict[str, NamedSource] = {}
    lines: list[str] = []
    for name, table in named.items():
        own_streams = table.get("streams", {})
        raw = merge_settings(shared, {k: v for k, v in table.items() if k != "streams"})
        where = ("misp", name)
        try:
            misp = MispSettings.model_validate(raw)
        except ValidationError as exc:
            lines += [_describe_error(err, raw, root=MispSettings, prefix=where) for err in exc.errors()]
            continue
        except ConfigError as exc:
            raise ConfigError(_relocate(str(exc), "misp.", f"misp.{name}.")) from None
        if not isinstance(own_streams, dict):
            lines.append(f"misp.{name}.streams: expected a table of streams, got {type(own_streams).__name__}")
            continue
        merged = merge_settings(streams, own_streams)
        try:
            source_streams = Streams.model_validate(merged)
        except ValidationError as exc:
            lines += [_describe_error(err, merged, root=Streams, prefix=(*where, "streams")) for err in exc.errors()]
            continue
        except ConfigError as exc:
            raise ConfigError(_relocate(str(exc), "streams.", f"misp.{name}.streams.")) from None
        sources[name] = NamedSource(name, misp, source_streams)
    if lines:
        raise SourceErrors(lines)
    return sources


def _relocate(message: str, old: str, new: str) -> str:
    return new + message[len(old):] if message.startswith(old) else message
