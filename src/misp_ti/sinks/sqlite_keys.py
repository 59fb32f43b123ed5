"""What ``misp-ti lookup`` matches: the values of a document and their canonical key.

A value and a query meet on one canonical key, so that the forms people
write for the same indicator find each other:

* surrounding space and case do not matter, nor a trailing dot on a host
  name (``evil.example.`` is ``evil.example``);
* an IP address is written the way :mod:`ipaddress` writes it (IPv6
  compressed, ``::ffff:192.0.2.1`` is ``192.0.2.1``); a network is written
  with its network address (``10.1.2.3/8`` is ``10.0.0.0/8``);
* an internationalised host name is its punycode (``bücher.example`` is
  ``xn--bcher-kva.example``).

An IP query also asks for every network that may contain it
(:func:`containing_networks`), restricted to the prefix lengths the store
actually holds.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from misp_ti.state_schema import DEFAULT_SOURCE

# Fields under threat.indicator that describe the indicator rather than hold a value of it.
INDICATOR_META_KEYS = frozenset({
    "type", "provider", "description", "marking", "confidence", "first_seen", "last_seen",
    "modified_at", "scanner_stats", "sightings", "reference", "name",
})


def indicator_values(doc: dict[str, Any]) -> set[str]:
    """The values a person may look up for ``doc``: typed indicator fields,
    the raw MISP value and both halves of a composite value, lower-cased."""
    found: set[str] = set()
    indicator = doc.get("threat", {}).get("indicator")
    if isinstance(indicator, dict):
        stack: list[Any] = [v for k, v in indicator.items() if k not in INDICATOR_META_KEYS]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, str | int) and not isinstance(item, bool):
                found.add(str(item).lower())
    attribute = doc.get("misp", {}).get("attribute")
    if isinstance(attribute, dict):
        value = attribute.get("value")
        if isinstance(value, str) and value:
            found.add(value.lower())
            if "|" in value:
                found.update(part.lower() for part in value.split("|") if part)
    found.discard("")
    return found


#: Where a document says which MISP source (``[misp.<name>]``) it came from;
#: a document without it came from the single ``[misp]`` table, ``default``.
SOURCE_FIELD = ("labels", "misp_source")


def hit_source(doc: dict[str, Any]) -> str:
    value: Any = doc
    for part in SOURCE_FIELD:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else DEFAULT_SOURCE


def shown_value(attribute: dict[str, Any], indicator: dict[str, Any]) -> str | None:
    """The indicator's value as a person reads it: MISP's value where the
    document keeps it, else the typed indicator fields in document order
    (``198.51.100.7|443`` for an ``ip-dst|port``, a URL's original text; the
    transform moves the value there), else ``threat.indicator.name``."""
    value = attribute.get("value")
    if isinstance(value, str) and value:
        return value
    parts: list[str] = []
    stack: list[Any] = [v for k, v in reversed(indicator.items()) if k not in INDICATOR_META_KEYS]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            # a URL is its original text, not that plus the parts parsed from it
            whole = item.get("original", item.get("full"))
            stack.extend([whole] if isinstance(whole, str) else reversed(item.values()))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str | int) and not isinstance(item, bool) and str(item) not in parts:
            parts.append(str(item))
    if parts:
        return "|".join(parts)
    name = indicator.get("name")
    return name if isinstance(name, str) else None


def hit_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What a lookup answer says of one matching document."""
    misp = doc.get("misp", {})
    attr, event = misp.get("attribute", {}), misp.get("event", {})
    indicator = doc.get("threat", {}).get("indicator", {})
    return {
        "dataset": doc.get("event", {}).get("dataset"),
        "source": hit_source(doc),
        "indicator_type": indicator.get("type"),
        "misp_type": attr.get("type"),
        "value": shown_value(attr, indicator),
        "uuid": attr.get("uuid"),
        "event": event.get("info", event.get("uuid")),
        "decayed_at": attr.get("decayed_at"),
    }


def canonical(value: str) -> str:
    """The key ``value`` is stored and looked up under (see the module docstring)."""
    # an argument that is not UTF-8 arrives with surrogate escapes SQLite cannot bind
    if not value.isascii():
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = value.strip().lower()
    if not text:
        return text
    # an address holds a dot (IPv4) or a colon (IPv6): a hash that starts
    # with a digit is not worth an ipaddress attempt
    if (text[0].isdigit() or ":" in text) and ("." in text or ":" in text):
        try:
            if "/" in text:
                return str(ipaddress.ip_network(text, strict=False))
            address = ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(address)
    if len(text) > 1 and text.endswith(".") and "/" not in text:
        text = text[:-1]  # the root label of a fully qualified name
    if not text.isascii() and "/" not in text and " " not in text:
        try:
            return text.encode("idna").decode("ascii")
        except UnicodeError:
            return text
    return text


def lookup_keys(doc: dict[str, Any]) -> set[str]:
    """The canonical keys of ``doc``'s indicator values."""
    return {key for key in map(canonical, indicator_values(doc)) if key}


def prefix_of(key: str) -> tuple[int, int] | None:
    """``(IP version, prefix length)`` when ``key`` is a canonical network."""
    address, slash, rest = key.partition("/")
    # what ipaddress refuses anyway, refused without it (URLs and paths hold
    # slashes too): one slash, and an IPv4 address starts with a digit, an
    # IPv6 one holds a colon
    if not slash or not address or "/" in rest or not (address[0].isdigit() or ":" in address):
        return None
    try:
        network = ipaddress.ip_network(key)
    except ValueError:
        return None
    return (network.version, network.prefixlen)


def containing_networks(key: str, prefixes: Iterable[tuple[int, int]]) -> list[str]:
    """The canonical networks of the given ``(version, length)`` that contain the address ``key``."""
    try:
        address = ipaddress.ip_address(key)
    except ValueError:
        return []
    return [
        str(ipaddress.ip_network((address, length), strict=False))
        for version, length in prefixes if version == address.version
    ]
