"""What each MISP attribute type becomes in ECS: one precomputed table.

:data:`TYPE_RULES` maps every type of MISP's ``describeTypes`` (194 in
MISP 2.5) to ``(threat.indicator.type or None, handler or None)``. The
handler (see :mod:`misp_ti.ecs.values`) writes the typed fields; a type with
no handler keeps its value in ``misp.attribute.value``. A type missing from
the table is unknown: the record becomes a ``pipeline_error`` document.

The rules follow Elastic's ti_misp pipeline, with its value-dropping quirks
fixed (see docs/deviations.md).
"""

from __future__ import annotations

from misp_ti.ecs.fields import EXTENSION_HASHES
from misp_ti.ecs.values import (
    Handler,
    as_handler,
    domain_ip_handler,
    filename_hash_handler,
    hash_handler,
    hostname_port_handler,
    ip_handler,
    ip_port_handler,
    nested_handler,
    regkey_value_handler,
    url_handler,
)

Rule = tuple[str | None, Handler | None]

#: MISP hash type -> ``threat.indicator.file.hash.<field>`` (ECS names first).
HASH_FIELDS: dict[str, str] = {
    "md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512",
    "ssdeep": "ssdeep", "tlsh": "tlsh",
    **EXTENSION_HASHES,
}

#: Types whose value stays in ``misp.attribute.value`` with no indicator type,
#: as in the reference (no ECS indicator field fits them).
UNTYPED = (
    "pdb", "float", "git-commit-id", "http-method", "user-agent", "ja3-fingerprint-md5",
    "jarm-fingerprint", "favicon-mmh3", "hassh-md5", "hasshserver-md5", "snort", "suricata", "bro",
    "zeek", "community-id", "dom-hash", "pattern-in-file", "pattern-in-traffic", "pattern-in-memory",
    "pgp-public-key", "pgp-private-key", "ssh-fingerprint", "yara", "stix2-pattern", "sigma", "gene",
    "kusto-query", "identity-card-number", "cookie", "vulnerability", "weakness", "attachment",
    "malware-sample", "comment", "text", "hex", "other", "named pipe", "process-state",
    "target-user", "target-email", "target-machine", "target-org", "target-location",
    "target-external", "btc", "dash", "xmr", "iban", "bic", "bank-account-nr", "aba-rtn", "bin",
    "cc-number", "prtn", "phone-number", "threat-actor", "campaign-name", "campaign-id",
    "malware-type", "windows-scheduled-task", "windows-service-name", "windows-service-displayname",
    "whois-registrant-email", "whois-registrant-phone", "whois-registrant-name",
    "whois-registrant-org", "whois-registrar", "whois-creation-date", "x509-fingerprint-sha1",
    "x509-fingerprint-md5", "x509-fingerprint-sha256", "dns-soa-email", "size-in-bytes", "counter",
    "integer", "datetime", "port", "github-username", "github-repository", "github-organisation",
    "jabber-id", "twitter-id", "dkim", "dkim-signature", "eppn", "first-name", "middle-name",
    "last-name", "full-name", "date-of-birth", "place-of-birth", "gender", "passport-number",
    "passport-country", "passport-expiration", "redress-number", "nationality", "visa-number",
    "issue-date-of-the-visa", "primary-residence", "country-of-residence",
    "special-service-request", "frequent-flyer-number", "travel-details", "payment-details",
    "place-port-of-original-embarkation", "place-port-of-clearance",
    "place-port-of-onward-foreign-destination", "passenger-name-record-locator-number",
    "mobile-application-id", "azure-application-id", "chrome-extension-id", "edge-extension-id",
    "cortex", "boolean", "uuid", "anonymised", "onion-address",
)

#: email-* types that are parts of a message rather than addresses.
EMAIL_MESSAGE_TYPES = (
    "email-attachment", "email-body", "email-dst-display-name", "email-src-display-name",
    "email-header", "email-x-mailer", "email-mime-boundary", "email-thread-index",
    "email-message-id",
)


def _build_rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {name: (None, None) for name in UNTYPED}
    for misp_type, field in HASH_FIELDS.items():
        rules[misp_type] = ("file", hash_handler(field))
        rules[f"filename|{misp_type}"] = ("file", filename_hash_handler(field))
    # MISP has no filename|telfhash / filename|cdhash; drop what it lacks
    for name in ("filename|cdhash",):
        rules.pop(name)
    rules["telfhash"] = ("file", nested_handler("file", "elf", "telfhash"))
    rules["filename"] = ("file", nested_handler("file", "name"))
    rules["filename-pattern"] = ("file", None)
    rules["mime-type"] = ("artifact", nested_handler("file", "mime_type"))
    for name in ("url", "link", "uri"):
        rules[name] = ("url", url_handler)
    rules["regkey"] = ("windows-registry-key", nested_handler("registry", "key"))
    rules["regkey|value"] = ("windows-registry-key", regkey_value_handler)
    rules["AS"] = ("autonomous-system", as_handler)
    for name in ("hostname", "domain"):
        rules[name] = ("domain-name", nested_handler("url", "domain"))
    rules["domain|ip"] = ("domain-name", domain_ip_handler)
    rules["hostname|port"] = ("domain-name", hostname_port_handler)
    for name in ("ip-src", "ip-dst"):
        rules[name] = ("ipv4-addr", ip_handler)
    for name in ("ip-src|port", "ip-dst|port"):
        rules[name] = ("ipv4-addr", ip_port_handler)
    for name in ("email", "email-src", "email-dst", "email-reply-to"):
        rules[name] = ("email-addr", nested_handler("email", "address"))
    rules["email-subject"] = ("email-message", nested_handler("email", "subject"))
    for name in EMAIL_MESSAGE_TYPES:
        rules[name] = ("email-message", None)
    for name in ("mac-address", "mac-eui-64"):
        rules[name] = ("mac-addr", nested_handler("mac"))
    rules["mutex"] = ("mutex", None)
    rules["cpe"] = ("software", None)
    return rules


TYPE_RULES: dict[str, Rule] = _build_rules()

__all__ = ["HASH_FIELDS", "TYPE_RULES", "UNTYPED"]
