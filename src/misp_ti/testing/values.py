"""A valid-value strategy for every MISP attribute type.

The type list comes from MISP's ``describeTypes`` (``describe_types.json``
next to this module). Values are in the form MISP stores after its own
normalisation (lower-case hashes and domains, no surrounding blanks), so a
consumer that works on them works on what a real MISP returns. Use
:func:`misp_ti.testing.strategies.attribute_values` rather than this module.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Callable
from functools import cache
from importlib import resources

from hypothesis import strategies as st

Strategy = st.SearchStrategy

_HEX_LENGTHS = {
    "md5": 32,
    "sha1": 40,
    "sha224": 56,
    "sha256": 64,
    "sha384": 96,
    "sha512": 128,
    "sha512/224": 56,
    "sha512/256": 64,
    "sha3-224": 56,
    "sha3-256": 64,
    "sha3-384": 96,
    "sha3-512": 128,
    "imphash": 32,
    "authentihash": 64,
    "pehash": 40,
    "cdhash": 40,
    "x509-fingerprint-md5": 32,
    "x509-fingerprint-sha1": 40,
    "x509-fingerprint-sha256": 64,
    "ja3-fingerprint-md5": 32,
    "hassh-md5": 32,
    "hasshserver-md5": 32,
    "jarm-fingerprint": 62,
    "git-commit-id": 40,
    "dom-hash": 32,
}

_TLDS = ("com", "net", "org", "info", "io", "ru", "cn", "de", "xyz", "top", "co.uk", "onion.ly")


@cache
def describe_types() -> dict[str, object]:
    """MISP's type table: ``{"types": {type: [category, to_ids]}, "category_types": {...}}``."""
    text = resources.files("misp_ti.testing").joinpath("describe_types.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return,unused-ignore]


def _hex(length: int) -> Strategy[str]:
    return st.text("0123456789abcdef", min_size=length, max_size=length)


def _label() -> Strategy[str]:
    return st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)


def domains() -> Strategy[str]:
    """Lower-case registrable domain names such as ``mail-3.example.com``."""
    return st.builds(
        lambda labels, tld: ".".join([*labels, tld]),
        st.lists(_label(), min_size=1, max_size=3),
        st.sampled_from(_TLDS),
    )


def ip_addresses(*, cidr: bool = False) -> Strategy[str]:
    addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
    if not cidr:
        return addresses
    networks = st.one_of(
        st.ip_addresses(v=4).flatmap(lambda ip: st.integers(8, 32).map(lambda n: f"{ip}/{n}")),
        st.ip_addresses(v=6).flatmap(lambda ip: st.integers(16, 128).map(lambda n: f"{ip}/{n}")),
    )
    # MISP accepts a CIDR block as ip-src/ip-dst; most values are single addresses
    return st.one_of(addresses, addresses, addresses, networks)


def emails() -> Strategy[str]:
    local = st.from_regex(r"[a-z0-9]([a-z0-9._+-]{0,14}[a-z0-9])?", fullmatch=True).filter(
        lambda s: ".." not in s
    )
    return st.builds(lambda user, host: f"{user}@{host}", local, domains())


def filenames() -> Strategy[str]:
    stem = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_ .()-]{0,20}[A-Za-z0-9_)]", fullmatch=True)
    ext = st.sampled_from(
        ("exe", "dll", "doc", "docx", "js", "ps1", "zip", "bin", "so", "apk", "lnk", "hta")
    )
    return st.builds(lambda s, e: f"{s}.{e}", stem, ext)


def ports() -> Strategy[str]:
    return st.integers(0, 65535).map(str)


def words(max_words: int = 5) -> Strategy[str]:
    word = st.text(string.ascii_letters + string.digits + "-_'", min_size=1, max_size=12)
    return st.lists(word, min_size=1, max_size=max_words).map(" ".join)


def free_text(max_size: int = 60) -> Strategy[str]:
    """Any printable text (non-ASCII included), no surrounding blanks, never empty."""
    chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00")
    return st.text(chars, min_size=1, max_size=max_size).map(str.strip).filter(bool)


def _multiline() -> Strategy[str]:
    line = st.text(
        string.printable.replace("\r", "")
        .replace("\x0b", "")
        .replace("\x0c", "")
        .replace("\n", ""),
        min_size=1,
        max_size=40,
    )
    return st.lists(line, min_size=1, max_size=5).map("\n".join).map(str.strip).filter(bool)


def _regex(pattern: str) -> Strategy[str]:
    return st.from_regex(pattern, fullmatch=True)


def _dates() -> Strategy[str]:
    return st.dates().map(lambda d: d.isoformat())


def _datetimes() -> Strategy[str]:
    from datetime import UTC, datetime

    return st.datetimes(datetime(1990, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=0).isoformat()
    )


def _url() -> Strategy[str]:
    path = st.lists(_label(), max_size=3).map(lambda parts: "/" + "/".join(parts))
    host = st.one_of(domains(), st.ip_addresses(v=4).map(str))
    return st.builds(
        lambda scheme, h, p: f"{scheme}://{h}{p}", st.sampled_from(("http", "https")), host, path
    )


def _ssdeep() -> Strategy[str]:
    b64 = string.ascii_letters + string.digits + "+/"
    return st.builds(
        lambda size, a, b: f"{size}:{a}:{b}",
        st.sampled_from((3, 6, 12, 24, 48, 96, 192, 384, 768, 1536, 3072, 6144)),
        st.text(b64, min_size=1, max_size=64),
        st.text(b64, min_size=1, max_size=32),
    )


def _regkey() -> Strategy[str]:
    hive = st.sampled_from(("HKLM", "HKCU", "HKEY_LOCAL_MACHINE", "HKEY_CURRENT_USER", "HKCR"))
    part = st.from_regex(r"[A-Za-z0-9_ .{}-]{1,16}", fullmatch=True).map(str.strip).filter(bool)
    return st.builds(
        lambda h, parts: "\\".join([h, *parts]), hive, st.lists(part, min_size=1, max_size=4)
    )


def _single_value_builders() -> dict[str, Callable[[], Strategy[str]]]:
    text = free_text
    name = lambda: words(3)  # noqa: E731
    builders: dict[str, Callable[[], Strategy[str]]] = {
        t: (lambda n=n: _hex(n)) for t, n in _HEX_LENGTHS.items()  # type: ignore[misc]
    }
    builders.update(
        {
            "ip-src": lambda: ip_addresses(cidr=True),
            "ip-dst": lambda: ip_addresses(cidr=True),
            "hostname": domains,
            "domain": domains,
            "url": _url,
            "link": _url,
            "uri": lambda: _regex(r"/[a-z0-9/_.-]{0,30}(\?[a-z]{1,5}=[a-z0-9]{1,8})?"),
            "http-method": lambda: st.sampled_from(
                ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")
            ),
            "user-agent": lambda: _regex(
                r"Mozilla/5\.0 \([A-Za-z0-9 ;.]{1,30}\)( [A-Za-z]{1,10}/[0-9.]{1,8}){0,2}"
            ),
            "AS": lambda: st.integers(1, 4_294_967_295).map(str),
            "port": ports,
            "mac-address": lambda: _regex(r"([0-9a-f]{2}:){5}[0-9a-f]{2}"),
            "mac-eui-64": lambda: _regex(r"([0-9a-f]{2}:){7}[0-9a-f]{2}"),
            "community-id": lambda: st.binary(min_size=20, max_size=20).map(
                lambda b: "1:" + base64.b64encode(b).decode()
            ),
            "onion-address": lambda: _regex(r"[a-z2-7]{56}\.onion"),
            "cookie": lambda: _regex(r"[A-Za-z0-9_]{1,12}=[A-Za-z0-9%._-]{0,24}"),
            "tlsh": lambda: st.builds(lambda p, h: p + h, st.sampled_from(("", "t1")), _hex(70)),
            "telfhash": lambda: st.builds(
                lambda p, h: p + h, st.sampled_from(("", "t1")), _hex(70)
            ),
            "vhash": lambda: _regex(r"[0-9]{2,6}[0-9a-z]{6,40}"),
            "ssdeep": _ssdeep,
            "impfuzzy": _ssdeep,
            "favicon-mmh3": lambda: st.integers(-(2**31), 2**31 - 1).map(str),
            "ssh-fingerprint": lambda: st.one_of(
                st.binary(min_size=32, max_size=32).map(
                    lambda b: "SHA256:" + base64.b64encode(b).decode().rstrip("=")
                ),
                _regex(r"([0-9a-f]{2}:){15}[0-9a-f]{2}"),
            ),
            "filename": filenames,
            "attachment": filenames,
            "email-attachment": filenames,
            "pdb": lambda: filenames().map(
                lambda f: "C:\\Projects\\" + f.rsplit(".", 1)[0] + ".pdb"
            ),
            "filename-pattern": lambda: filenames().map(lambda f: "*" + f[1:]),
            "named pipe": lambda: _regex(r"\\\\\.\\pipe\\[A-Za-z0-9_-]{1,20}"),
            "mutex": lambda: _regex(r"(Global\\|Local\\)?[A-Za-z0-9_{}-]{1,30}"),
            "regkey": _regkey,
            "windows-scheduled-task": lambda: _regex(r"\\[A-Za-z0-9_]([A-Za-z0-9 _]{0,18}[A-Za-z0-9_])?"),
            "windows-service-name": name,
            "windows-service-displayname": name,
            "process-state": lambda: st.sampled_from(("running", "terminated", "suspended")),
            "email": emails,
            "email-src": emails,
            "email-dst": emails,
            "eppn": emails,
            "target-email": emails,
            "whois-registrant-email": emails,
            "dns-soa-email": emails,
            "email-reply-to": emails,
            "jabber-id": emails,
            "email-subject": text,
            "email-body": lambda: _multiline(),
            "email-dst-display-name": name,
            "email-src-display-name": name,
            "email-header": lambda: _regex(r"X-[A-Za-z-]{1,12}: [A-Za-z0-9]([A-Za-z0-9 ]{0,18}[A-Za-z0-9])?"),
            "email-x-mailer": name,
            "email-mime-boundary": lambda: _regex(r"-{2,6}=_[A-Za-z0-9]{8,24}"),
            "email-thread-index": lambda: st.binary(min_size=22, max_size=27).map(
                lambda b: base64.b64encode(b).decode()
            ),
            "email-message-id": lambda: st.builds(
                lambda a, d: f"<{a}@{d}>", _regex(r"[A-Za-z0-9.]{4,20}"), domains()
            ),
            "mime-type": lambda: st.sampled_from(
                (
                    "application/x-dosexec",
                    "application/pdf",
                    "text/html",
                    "application/zip",
                    "application/vnd.ms-excel",
                    "image/png",
                )
            ),
            "vulnerability": lambda: _regex(r"CVE-(199[9]|20[0-3][0-9])-[0-9]{4,7}"),
            "weakness": lambda: _regex(r"CWE-[1-9][0-9]{0,3}"),
            "cpe": lambda: st.builds(
                lambda v, p, ver: f"cpe:2.3:a:{v}:{p}:{ver}:*:*:*:*:*:*:*",
                _label(),
                _label(),
                _regex(r"[0-9]{1,2}(\.[0-9]{1,3}){0,2}"),
            ),
            "btc": lambda: _regex(r"[13][a-km-zA-HJ-NP-Z1-9]{25,34}"),
            "dash": lambda: _regex(r"X[a-km-zA-HJ-NP-Z1-9]{33}"),
            "xmr": lambda: _regex(r"4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}"),
            "iban": lambda: _regex(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}"),
            "bic": lambda: _regex(r"[A-Z]{6}[A-Z2-9][A-NP-Z0-9]([A-Z0-9]{3})?"),
            "bank-account-nr": lambda: _regex(r"[0-9]{6,18}"),
            "aba-rtn": lambda: _regex(r"[0-9]{9}"),
            "bin": lambda: _regex(r"[0-9]{6,8}"),
            "cc-number": lambda: _regex(r"[3-6][0-9]{12,18}"),
            "prtn": lambda: _regex(r"[0-9]{9,12}"),
            "phone-number": lambda: _regex(r"\+[1-9][0-9]{6,14}"),
            "whois-registrant-phone": lambda: _regex(r"\+[1-9][0-9]{6,14}"),
            "float": lambda: st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
            "size-in-bytes": lambda: st.integers(0, 2**40).map(str),
            "counter": lambda: st.integers(0, 2**31).map(str),
            "integer": lambda: st.integers(-(2**31), 2**31).map(str),
            "boolean": lambda: st.sampled_from(("0", "1")),
            "datetime": _datetimes,
            "whois-creation-date": _dates,
            "date-of-birth": _dates,
            "passport-expiration": _dates,
            "issue-date-of-the-visa": _dates,
            "uuid": lambda: st.uuids().map(str),
            "azure-application-id": lambda: st.uuids().map(str),
            "chrome-extension-id": lambda: _regex(r"[a-p]{32}"),
            "edge-extension-id": lambda: _regex(r"[a-p]{32}"),
            "mobile-application-id": lambda: _regex(r"[a-z]{2,8}(\.[a-z][a-z0-9_]{1,10}){1,3}"),
            "github-username": lambda: _regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?"),
            "github-organisation": lambda: _regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?"),
            "github-repository": lambda: _regex(r"[A-Za-z0-9-]{1,20}/[A-Za-z0-9._-]{1,30}"),
            "twitter-id": lambda: _regex(r"@?[A-Za-z0-9_]{1,15}"),
            "gender": lambda: st.sampled_from(("Male", "Female", "Other")),
            "hex": lambda: _regex(r"(0x)?[0-9a-f]{2,64}"),
        }
    )
    for misp_type in (
        "snort",
        "suricata",
        "bro",
        "zeek",
        "yara",
        "stix2-pattern",
        "sigma",
        "kusto-query",
        "pgp-public-key",
        "pgp-private-key",
        "pattern-in-file",
        "pattern-in-traffic",
        "pattern-in-memory",
        "gene",
        "dkim",
        "dkim-signature",
        "cortex",
    ):
        builders[misp_type] = _multiline
    for misp_type in (
        "comment",
        "text",
        "other",
        "anonymised",
        "identity-card-number",
        "target-user",
        "target-machine",
        "target-org",
        "target-location",
        "target-external",
        "threat-actor",
        "campaign-name",
        "campaign-id",
        "malware-type",
        "whois-registrant-name",
        "whois-registrant-org",
        "whois-registrar",
        "first-name",
        "middle-name",
        "last-name",
        "full-name",
        "place-of-birth",
        "passport-number",
        "passport-country",
        "redress-number",
        "nationality",
        "visa-number",
        "primary-residence",
        "country-of-residence",
        "special-service-request",
        "frequent-flyer-number",
        "travel-details",
        "payment-details",
        "place-port-of-original-embarkation",
        "place-port-of-clearance",
        "place-port-of-onward-foreign-destination",
        "passenger-name-record-locator-number",
    ):
        builders[misp_type] = text
    return builders


#: Composite types: the MISP value is ``left|right``, each half a value of the given type.
COMPOSITE_PARTS: dict[str, tuple[str, str]] = {
    "domain|ip": ("domain", "ip-dst"),
    "ip-src|port": ("ip-src", "port"),
    "ip-dst|port": ("ip-dst", "port"),
    "hostname|port": ("hostname", "port"),
    "regkey|value": ("regkey", "text"),
    "malware-sample": ("filename", "md5"),
}


def composite_parts(misp_type: str) -> tuple[str, str] | None:
    """The types of both halves of a composite type, or ``None`` for a single-value type."""
    if misp_type in COMPOSITE_PARTS:
        return COMPOSITE_PARTS[misp_type]
    if misp_type.startswith("filename|"):
        return ("filename", misp_type.split("|", 1)[1])
    return None


@cache
def _builders() -> dict[str, Callable[[], Strategy[str]]]:
    return _single_value_builders()


def _plain(misp_type: str) -> Strategy[str]:
    # an address with a port or a domain next to an IP never carries a CIDR suffix
    if misp_type in ("ip-src", "ip-dst"):
        return ip_addresses()
    if misp_type == "text":
        return free_text().filter(lambda s: "|" not in s)
    return _builders()[misp_type]()


@cache
def value_strategy(misp_type: str) -> Strategy[str]:
    """A strategy of valid values for ``misp_type``; ``ValueError`` for an unknown type."""
    parts = composite_parts(misp_type)
    if parts is not None:
        left, right = parts
        return st.builds(lambda a, b: f"{a}|{b}", _plain(left), _plain(right))
    try:
        return _builders()[misp_type]()
    except KeyError:
        raise ValueError(f"no value strategy for MISP type {misp_type!r}") from None
