"""Value parsers for the ECS transform: dates, numbers, IPs, URLs, and the
per-type handlers that put a MISP value into typed indicator fields.

A handler is ``handler(value, indicator) -> bool``: it writes typed fields
into the ``threat.indicator`` dict (and may override its ``type``) and
returns True when those fields hold the whole value, so that
``misp.attribute.value`` can be dropped as the reference does. It returns
False when the value, or part of it, has no typed home (a CIDR, a bad
port...): the value then stays in ``misp.attribute.value``. Handlers never
raise on odd values; only structurally wrong input is an error, and that is
checked before they run.

Everything here runs once per attribute, so it favours ``str`` methods and
C-level checks (``socket.inet_pton``) over regexes and ``ipaddress``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

Handler = Callable[[str, dict], bool]

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_inet_pton = socket.inet_pton


class Malformed(ValueError):
    """A record the transform cannot turn into a valid document (becomes ``pipeline_error``)."""


# ---------------------------------------------------------------------------
# dates and numbers


#: epoch seconds -> ISO text; the attributes of one event share a few timestamps
_ISO_CACHE: dict[int, str] = {}


def iso_seconds(seconds: int) -> str:
    """Epoch seconds -> ``2021-04-08T09:52:48.000Z`` (the reference's date format)."""
    text = _ISO_CACHE.get(seconds)
    if text is None:
        if len(_ISO_CACHE) >= 4096:
            _ISO_CACHE.clear()
        text = _ISO_CACHE[seconds] = _format_seconds(seconds)
    return text


def _format_seconds(seconds: int) -> str:
    try:
        t = time.gmtime(seconds)
    except (OverflowError, OSError, ValueError):
        raise Malformed(f"timestamp {seconds} is out of range") from None
    if not 0 < t.tm_year < 10000:
        raise Malformed(f"timestamp {seconds} is out of range")
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.000Z"


def iso_millis(millis: int) -> str:
    seconds, rest = divmod(millis, 1000)
    return iso_seconds(seconds)[:-4] + f"{rest:03d}Z"


def iso_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return iso_millis(int(value.timestamp()) * 1000 + value.microsecond // 1000)


def strict_epoch_seconds(value: object, name: str) -> int:
    """A MISP timestamp (``"1617875568"`` or ``1617875568``) -> int; anything
    else raises :class:`Malformed` naming the field (no ms/µs scaling, no ISO:
    the lenient readers are in :mod:`misp_ti.misp.records`)."""
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value)
    if type(value) is int:
        return value
    raise Malformed(f"{name}: expected epoch seconds, got {_show(value)}")


def to_long(value: object, name: str) -> int:
    """The reference's ``convert: long`` (``"5"`` -> 5)."""
    if type(value) is str:
        if value.isdigit() and value.isascii():
            return int(value)
        text = value.strip()
        digits = text[1:] if text[:1] == "-" else text
        if digits.isascii() and digits.isdigit():
            return int(text)
    elif type(value) is int:
        return value
    raise Malformed(f"{name}: expected an integer, got {_show(value)}")


def seen_iso(value: object, name: str) -> str:
    """``first_seen``/``last_seen``: ISO 8601 (what MISP sends), epoch ms, or epoch µs (16 digits)."""
    if type(value) is str:
        if value.isascii() and value.isdigit():
            millis = int(value)
            if len(value) >= 16:  # microseconds, as MISP stores them
                millis //= 1000
            return iso_millis(millis)
        try:
            return iso_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except (ValueError, OverflowError):
            pass
    elif type(value) is int:
        return iso_millis(value // 1000 if value >= 10**15 else value)
    raise Malformed(f"{name}: expected an ISO 8601 date or epoch, got {_show(value)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------
# addresses


def ip_version(text: str) -> int:
    """4 or 6 for a valid IP address literal, else 0."""
    try:
        if ":" in text:
            _inet_pton(_AF_INET6, text)
            return 6
        _inet_pton(_AF_INET, text)
        return 4
    except (OSError, ValueError):  # ValueError: embedded NUL
        return 0


def port_number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 5:
        port = int(text)
        if port <= 65535:
            return port
    return None


def split_url(value: str) -> dict[str, object]:
    """ECS ``url.*`` parts of a URL or URI, like the reference's ``uri_parts``
    (``original`` and ``full`` always; ``domain``, ``port``... when present)."""
    url: dict[str, object] = {"original": value, "full": value}
    try:
        parts = urlsplit(value)
    except ValueError:
        return url
    if parts.scheme:
        url["scheme"] = parts.scheme
    netloc = parts.netloc
    if netloc:
        userinfo, at, hostport = netloc.rpartition("@")
        if at:
            user, colon, password = userinfo.partition(":")
            if user:
                url["username"] = user
            if colon:
                url["password"] = password
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = hostport.partition(":")
        if host:
            url["domain"] = host
        if port_text:
            port = port_number(port_text)
            if port is not None:
                url["port"] = port
    path = parts.path
    if path:
        url["path"] = path
        segment = path[path.rfind("/") + 1:]
        dot = segment.rfind(".")
        if dot >= 0 and dot < len(segment) - 1:
            url["extension"] = segment[dot + 1:]
    if parts.query:
        url["query"] = parts.query
    if parts.fragment:
        url["fragment"] = parts.fragment
    return url


# ---------------------------------------------------------------------------
# handlers


def hash_handler(field: str) -> Handler:
    def handler(value: str, indicator: dict) -> bool:
        indicator["file"] = {"hash": {field: value}}
        return True

    return handler


def filename_hash_handler(field: str) -> Handler:
    def handler(value: str, indicator: dict) -> bool:
        # a hash never holds "|", a file name may: split at the last one
        name, sep, digest = value.rpartition("|")
        if not sep or not name or not digest:
            return False
        indicator["file"] = {"name": name, "hash": {field: digest}}
        return True

    return handler


def nested_handler(*path: str) -> Handler:
    """The whole value into one nested field, e.g. ``("file", "name")``."""
    *parents, leaf = path

    def handler(value: str, indicator: dict) -> bool:
        node = indicator
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
        return True

    return handler


def ip_handler(value: str, indicator: dict) -> bool:
    version = ip_version(value)
    if version:
        indicator["ip"] = value
        if version == 6:
            indicator["type"] = "ipv6-addr"
        return True
    # A CIDR block cannot go into an ``ip`` field; it stays in misp.attribute.value.
    address, slash, bits = value.partition("/")
    version = ip_version(address) if slash else 0
    if version == 6:
        indicator["type"] = "ipv6-addr"
    if version and bits == ("32" if version == 4 else "128"):
        indicator["ip"] = address
    return False


def ip_port_handler(value: str, indicator: dict) -> bool:
    address, sep, port_text = value.rpartition("|")
    if not sep:
        return ip_handler(value, indicator)
    whole = ip_handler(address, indicator)
    port = port_number(port_text)
    if port is None:
        return False
    indicator["port"] = port
    return whole


def domain_ip_handler(value: str, indicator: dict) -> bool:
    domain, sep, address = value.partition("|")
    indicator["url"] = {"domain": domain}
    if not sep:
        return True
    version = ip_version(address)
    if not version:
        return False
    indicator["ip"] = address
    return True


def hostname_port_handler(value: str, indicator: dict) -> bool:
    host, sep, port_text = value.rpartition("|")
    if not sep:
        indicator["url"] = {"domain": value}
        return True
    indicator["url"] = {"domain": host}
    port = port_number(port_text)
    if port is None:
        return False
    indicator["port"] = port
    return True


def url_handler(value: str, indicator: dict) -> bool:
    indicator["url"] = split_url(value)
    return True


def regkey_value_handler(value: str, indicator: dict) -> bool:
    # MISP's regkey|value is "<key>|<data>": the data is what ECS calls registry.data.strings
    key, sep, data = value.partition("|")
    if not sep:
        indicator["registry"] = {"key": value}
    else:
        indicator["registry"] = {"key": key, "data": {"strings": [data]}}
    return True


def as_handler(value: str, indicator: dict) -> bool:
    text = value.strip()
    if text[:2].upper() == "AS":
        text = text[2:]
    if text.isascii() and text.isdigit() and len(text) <= 10:
        number = int(text)
        if number < 2**32:
            indicator["as"] = {"number": number}
            return True
    return False
