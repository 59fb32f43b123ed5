"""ECS constants shared by the transform, the sinks and the tests.

:data:`EXTENSION_FIELDS` lists every field the transform may write outside
``misp.*`` that ECS 8.11 does not define. Elastic's ti_misp pipeline writes
the same fields (or, for the hash names, the same family of fields), so
dashboards built on it keep working; the Elasticsearch sink maps each one
explicitly instead of leaving it to dynamic mapping.
"""

from __future__ import annotations

#: The ECS version our documents follow (the reference's 8.11 pipelines).
ECS_VERSION = "8.11.0"

#: ``threat.indicator.file.hash.<name>`` for the MISP hash types ECS has no field for.
#: MISP names with ``-`` or ``/`` (``sha3-256``, ``sha512/224``) become ``_``
#: names, as ECS names fields.
EXTENSION_HASHES: dict[str, str] = {
    "sha224": "sha224",
    "sha512/224": "sha512_224",
    "sha512/256": "sha512_256",
    "sha3-224": "sha3_224",
    "sha3-256": "sha3_256",
    "sha3-384": "sha3_384",
    "sha3-512": "sha3_512",
    "imphash": "imphash",
    "impfuzzy": "impfuzzy",
    "pehash": "pehash",
    "authentihash": "authentihash",
    "vhash": "vhash",
    "cdhash": "cdhash",
}

#: Field -> Elasticsearch mapping type, for every non-ECS field outside ``misp.*``.
EXTENSION_FIELDS: dict[str, str] = {
    # MISP mac-address / mac-eui-64 (the reference writes it; ECS 8.11 has no threat.indicator.mac)
    "threat.indicator.mac": "keyword",
    # MISP email-subject (the reference writes it)
    "threat.indicator.email.subject": "keyword",
    **{f"threat.indicator.file.hash.{name}": "keyword" for name in EXTENSION_HASHES.values()},
}

#: Values outside ECS's expected values that the transform writes, as the reference's
#: threat stream does: STIX 2.1 names the observable of a message part ``email-message``.
EXTENSION_VALUES: dict[str, tuple[str, ...]] = {
    "threat.indicator.type": ("email-message",),
}

__all__ = ["ECS_VERSION", "EXTENSION_FIELDS", "EXTENSION_HASHES", "EXTENSION_VALUES"]
