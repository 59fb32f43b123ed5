"""A small warninglist, so that ``enforceWarninglist`` drops attributes as MISP's would.

MISP ships large lists (public DNS resolvers, top domains …); the simulator
keeps a handful of well-known entries of the same kinds: CIDR entries matched
against IP-typed attributes, hostname entries matched against domain-like
attributes (the name itself or any subdomain, case-insensitively).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Warninglist", "DEFAULT_WARNINGLIST"]

_IP_TYPES = {"ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"}
_HOST_TYPES = {
    "domain",
    "hostname",
    "hostname|port",
    "domain|ip",
    "url",
    "uri",
    "email-src",
    "email-dst",
}

_PUBLIC_RESOLVERS = (
    "8.8.8.8/32", "8.8.4.4/32", "1.1.1.1/32", "1.0.0.1/32", "9.9.9.9/32", "149.112.112.112/32",
    "208.67.222.222/32", "208.67.220.220/32", "2001:4860:4860::8888/128", "2001:4860:4860::8844/128",
    "2606:4700:4700::1111/128", "127.0.0.0/8", "::1/128",
)  # fmt: skip
_WELL_KNOWN_DOMAINS = (
    "google.com", "microsoft.com", "windowsupdate.com", "apple.com", "amazon.com", "cloudflare.com",
    "github.com", "wikipedia.org", "example.com", "example.org", "example.net", "localhost",
)  # fmt: skip


@dataclass
class Warninglist:
    """Entries an enforced warninglist removes; build one with your own entries for a test."""

    networks: list[Any] = field(default_factory=list)
    hostnames: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, cidrs: Iterable[str] = (), hostnames: Iterable[str] = ()) -> Warninglist:
        return cls(
            [ipaddress.ip_network(c, strict=False) for c in cidrs],
            {h.lower().rstrip(".") for h in hostnames},
        )

    def _ip_hit(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text.strip().strip("[]"))
        except ValueError:
            return False
        return any(
            address in network for network in self.networks if network.version == address.version
        )

    def _host_hit(self, text: str) -> bool:
        host = text.strip().lower().rstrip(".")
        while host:
            if host in self.hostnames:
                return True
            if "." not in host:
                return False
            host = host.split(".", 1)[1]
        return False

    def hits(self, attribute_type: str, value: str) -> bool:
        """True when MISP's enforced warninglist would drop this attribute."""
        parts = value.split("|") if "|" in attribute_type else [value]
        kinds = attribute_type.split("|") if "|" in attribute_type else [attribute_type]
        for kind, part in zip(kinds, parts, strict=False):
            if kind in ("ip-src", "ip-dst", "ip") or (
                attribute_type in _IP_TYPES and kind not in ("domain", "hostname", "port")
            ):
                if self._ip_hit(part):
                    return True
            if kind in ("url", "uri"):
                host = urlsplit(part if "://" in part else "http://" + part).hostname or ""
                if self._host_hit(host) or self._ip_hit(host):
                    return True
            elif kind in ("email-src", "email-dst"):
                if self._host_hit(part.rsplit("@", 1)[-1]):
                    return True
            elif kind in ("domain", "hostname") or (
                attribute_type in _HOST_TYPES and kind == attribute_type
            ):
                if self._host_hit(part):
                    return True
        return False


DEFAULT_WARNINGLIST = Warninglist.of(_PUBLIC_RESOLVERS, _WELL_KNOWN_DOMAINS)
