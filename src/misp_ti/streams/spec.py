"""What a stream is (:class:`StreamSpec`) and the set the plugins declare (:class:`StreamRegistry`).

A stream is one kind of MISP record read on its own schedule, with its own
cursor, its own ``[streams.<name>]`` settings and its own data stream
(``logs-ti_misp.<name>-<namespace>``). A spec says everything the default
plugins need to serve it:

* fetch (``misp_fetch``): which restSearch answer it reads (``scope``, at
  ``path``), in which ``order``, with which fixed ``filters``, and how one
  answer item becomes records (``split``);
* transform (``ecs_transform``): the ECS ``build`` function;
* expiry: where the MISP attribute sits in a record (``attribute``);
* config: the ``settings`` model of ``[streams.<name>]``, whether the stream
  is on by default, and the filter keys users may not set.

A spec with ``scope=None`` is read by the declaring plugin's own ``fetch``
hook (a new endpoint, another source); everything else still comes from the
spec.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from misp_ti.config import StreamSettings
from misp_ti.errors import ConfigError, PluginError
from misp_ti.misp.records import PATHS

if TYPE_CHECKING:
    from misp_ti.ecs.options import Options

#: MISP's two restSearch answers the default fetch understands, and where each is served.
SCOPE_PATHS = MappingProxyType(PATHS)
#: The order asked for when a spec names none: timestamp, then id (MISP has no default order).
SCOPE_ORDERS = MappingProxyType({
    "attributes": "Attribute.timestamp asc, Attribute.id asc",
    "events": "Event.timestamp asc, Event.id asc",
})
# lower case only: the name is part of index names and of MISP_TI_STREAMS__<NAME>__... variables
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def one_record(item: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The default splitter: the answer item is the record."""
    return (item,)


def record_itself(record: Any) -> Mapping[str, Any]:
    """The default attribute accessor: the record is the attribute."""
    return record if isinstance(record, Mapping) else {}


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One stream, declared by a plugin in ``MISP_TI_STREAMS``."""

    #: The stream's name: ``[streams.<name>]``, the cursor key, ``ti_misp.<name>`` dataset.
    name: str
    #: ``(record, Options) -> document``; raise :class:`misp_ti.ecs.values.Malformed`
    #: (or any ``ValueError``) for a record that cannot become a document.
    build: Callable[[Any, Options], dict[str, Any]]
    #: ``record -> the MISP attribute dict`` it is about (expiry rules read it).
    attribute: Callable[[Any], Mapping[str, Any]] = record_itself
    #: The restSearch answer the default fetch reads (``attributes`` or
    #: ``events``), or ``None`` when the declaring plugin fetches the stream itself.
    scope: str | None = "attributes"
    #: Where the default fetch POSTs; default: the scope's restSearch path.
    path: str | None = None
    #: restSearch ``order``; default: the scope's timestamp-then-id order.
    order: str | None = None
    #: ``one answer item -> its records`` (e.g. one event -> one record per attribute).
    split: Callable[[dict[str, Any]], Iterable[dict[str, Any]]] = one_record
    #: The model of ``[streams.<name>]``: :class:`StreamSettings` or a subclass with more keys.
    settings: type[StreamSettings] = StreamSettings
    #: Polled without a ``[streams.<name>]`` table (and when the table omits ``enabled``).
    enabled_by_default: bool = False
    #: One line for ``misp-ti plugins`` and the docs.
    description: str = ""
    #: restSearch filters this stream always sends; users may not set these keys.
    filters: Mapping[str, Any] = field(default_factory=dict)
    #: More filter keys users may not set, each with the reason shown in the error.
    controlled_filters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise PluginError(f"stream name {self.name!r}: expected lower-case letters, digits and _ (starting with a letter)")
        if not (isinstance(self.settings, type) and issubclass(self.settings, StreamSettings)):
            raise PluginError(f"stream {self.name!r}: settings must be StreamSettings or a subclass, not {self.settings!r}")
        if self.scope is not None and self.scope not in SCOPE_PATHS:
            raise PluginError(
                f"stream {self.name!r}: scope {self.scope!r} is not one the default fetch reads "
                f"({', '.join(SCOPE_PATHS)}); use scope=None and a fetch hook of your own"
            )
        for hook in ("build", "attribute", "split"):
            if not callable(getattr(self, hook)):
                raise PluginError(f"stream {self.name!r}: {hook} must be callable")

    @property
    def restsearch_path(self) -> str | None:
        """Where the default fetch reads the stream (``None``: its plugin does)."""
        if self.scope is None:
            return None
        return self.path or SCOPE_PATHS[self.scope]

    @property
    def restsearch_order(self) -> str | None:
        if self.scope is None:
            return None
        return self.order or SCOPE_ORDERS[self.scope]

    def refused_filters(self) -> dict[str, str]:
        """Filter keys a ``[streams.<name>.filters]`` table may not hold, with the reason."""
        refused = {key: f"the {self.name} stream sets it itself" for key in self.filters}
        refused.update(self.controlled_filters)
        return refused


class StreamRegistry(Mapping[str, StreamSpec]):
    """The streams of one plugin manager, by name, in declaration order."""

    def __init__(self, declared: Iterable[tuple[str, StreamSpec]] = ()):
        specs: dict[str, StreamSpec] = {}
        owners: dict[str, str] = {}
        for owner, spec in declared:
            if not isinstance(spec, StreamSpec):
                raise PluginError(f"plugin {owner}: MISP_TI_STREAMS holds {spec!r}, not a misp_ti.streams.StreamSpec")
            known = specs.get(spec.name)
            if known is None:
                specs[spec.name], owners[spec.name] = spec, owner
            elif known is not spec:  # the same spec declared again (a replacement plugin) is fine
                raise PluginError(f"stream {spec.name!r} is declared twice, by {owners[spec.name]} and by {owner}")
        self._specs = specs
        self._owners = owners

    def __getitem__(self, name: str) -> StreamSpec:
        return self._specs[name]

    def get(self, name: str, default: Any = None) -> Any:  # hot path: once per record
        return self._specs.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"StreamRegistry({list(self._specs)!r})"

    def owner(self, name: str) -> str:
        """The plugin that declared ``name``."""
        return self._owners[name]

    def require(self, name: str, where: str = "stream") -> StreamSpec:
        """The spec of ``name``, or a :class:`ConfigError` naming the streams there are."""
        try:
            return self._specs[name]
        except KeyError:
            raise ConfigError(f"{where}: unknown stream {name!r}; available: {', '.join(self._specs) or 'none'}") from None
