"""The preset zlib dictionary of the embedded store's documents (schema 3).

Each latest row's ``doc`` is compressed on its own, so without help every
document pays again for the same keys (``"threat":
{"indicator":{"provider":"misp"``...). A preset dictionary
(``zlib.compressobj(zdict=...)``) holds that shared text once, outside the
file: a document then refers back into it. The text below is the key structure
of the documents ``misp_ti.ecs`` writes for both built-in streams and MISP's
fixed vocabularies (categories, types, indicator types, common taxonomies),
never values of one feed.

**These bytes are part of the file format.** A schema 3 document can only be
read with exactly this dictionary, so it never changes while the schema
version stays 3 (``tests/sinks/test_store_schema.py`` pins its digest).
A better dictionary is a new schema version whose migration re-encodes the
rows, and whose reader keeps this one for old files. Deflate finds the
nearest earlier copy of a match, so the most common text comes last.
"""

from __future__ import annotations

_VOCABULARY = (
    # MISP attribute categories and common types (describeTypes)
    "Internal reference", "Targeting data", "Antivirus detection", "Payload delivery", "Artifacts dropped",
    "Payload installation", "Persistence mechanism", "Network activity", "Payload type", "Attribution",
    "External analysis", "Financial fraud", "Support Tool", "Social network", "Person", "Other",
    "ip-src|port", "ip-dst|port", "domain|ip", "hostname|port", "filename|sha256", "filename|sha1", "filename|md5",
    "email-src", "email-dst", "email-subject", "regkey|value", "regkey", "mutex", "vulnerability", "yara", "snort",
    "user-agent", "x509-fingerprint-sha1", "ssdeep", "imphash", "authentihash", "tlsh", "AS", "text", "comment",
    "ip-src", "ip-dst", "hostname", "domain", "link", "url", "uri", "filename", "sha512", "sha256", "sha1", "md5",
    # threat.indicator.type
    "ipv6-addr", "autonomous-system", "windows-registry-key", "email-message", "email-addr", "mac-addr",
    "software", "artifact", "ipv4-addr", "domain-name",
    # decaying models shipped with MISP
    "Vishing model", "Phishing model", "NIDS Simple Decaying Model",
    # common taxonomies and galaxies (tags)
    "admiralty-scale:source-reliability=", "estimative-language:likelihood-probability=", "workflow:state=",
    "misp-galaxy:malpedia=", "misp-galaxy:ransomware=", "misp-galaxy:mitre-malware=", "misp-galaxy:tool=",
    "misp-galaxy:threat-actor=", "misp-galaxy:mitre-attack-pattern=", "circl:incident-classification=",
    "osint:certainty=", "osint:source-type=blog-post", "type:OSINT", "tlp:red", "tlp:amber", "tlp:green",
    "tlp:clear", "tlp:white", "RED", "AMBER", "GREEN", "CLEAR", "WHITE",
)

_FRAGMENTS = (
    # pipeline errors and optional parts
    '"error":{"message":"', '"kind":"pipeline_error"', '"tags":["misp_ti-transform-error"]',
    '"preserve_original_event"', '"original":"', '"labels":{"misp_source":"',
    '"user":{"email":"","roles":["reporting_user"]}', '"scanner_stats":0,',
    '"first_seen":"', '"last_seen":"', '"registry":{"key":"","data":{"strings":["',
    '"email":{"address":"', '"as":{"number":', '"mac":"', '"ip":"',
    '"url":{"original":"https://","full":"https://","scheme":"https","domain":"","port":443,"path":"/","extension":"","query":""}',
    '"file":{"name":"","mime_type":"","hash":{"md5":"","sha1":"","sha256":"","sha512":"","ssdeep":"","tlsh":"","imphash":""}}',
    # the threat stream: event fields, context attribute, creator organisation
    '"context":{"attribute":{"category":"","comment":"","deleted":false,"disable_correlation":false,'
    '"distribution":5,"event_id":"","id":"","object_id":"0","sharing_group_id":"0","timestamp":"",'
    '"to_ids":false,"type":"","uuid":"","value":""}}',
    '"event":{"attribute_count":0,"date":"","disable_correlation":false,"distribution":3,"extends_uuid":"",'
    '"id":"","info":"","locked":false,"org_id":"","orgc_id":"","proposal_email_lock":false,'
    '"publish_timestamp":"","published":true,"sharing_group_id":"0","threat_level_id":3,"uuid":""}',
    '"object":{"comment":"","deleted":false,"description":"","distribution":5,"event_id":"","first_seen":"",'
    '"id":"","name":"file","sharing_group_id":"0","template_uuid":"","template_version":"","timestamp":"",'
    '"uuid":"","meta_category":"file","attribute":[{',
    '"orgc":{"id":"","name":"","uuid":"","local":false}',
    '{"_id":"","@timestamp":"","ecs":{"version":"8.11.0"},"event":{"kind":"enrichment","category":["threat"],'
    '"type":["indicator"],"dataset":"ti_misp.threat","ingested":""},"data_stream":{"type":"logs",'
    '"dataset":"ti_misp.threat","namespace":"default"},"tags":["tlp:white"],"misp":{"attribute":{'
    '"category":"","comment":"","deleted":false,"disable_correlation":false,"distribution":5,"event_id":"",'
    '"id":"","object_id":"0","object_relation":"","sharing_group_id":"0","timestamp":"","to_ids":true,'
    '"type":"","uuid":""}}',
    # the threat_attributes stream, the most common document, last
    '"object":{"id":"","name":"file","description":"","template_uuid":"","template_version":"","event_id":"",'
    '"uuid":"","timestamp":"","distribution":5,"sharing_group_id":"0","comment":"","deleted":false,'
    '"first_seen":"","meta_category":"file"}',
    '{"_id":"","@timestamp":"","ecs":{"version":"8.11.0"},"event":{"kind":"enrichment","category":["threat"],'
    '"type":["indicator"],"dataset":"ti_misp.threat_attributes","ingested":""},"data_stream":{"type":"logs",'
    '"dataset":"ti_misp.threat_attributes","namespace":"default"},"tags":["tlp:white"],"organization":{"id":""},'
    '"misp":{"attribute":{"id":"","type":"","category":"","to_ids":false,"uuid":"","event_id":"","distribution":5,'
    '"comment":"","sharing_group_id":"0","deleted":false,"disable_correlation":false,"object_id":"0",'
    '"object_relation":"","decay_score":[{"score":0,"base_score":0,"decayed":true,"DecayingModel":{"id":"",'
    '"name":""}}],"value":"","decayed":false,"decayed_at":"T00:00:00.000Z"},"event":{"distribution":5,"id":"",'
    '"info":"","orgc_id":"","uuid":""}},"threat":{"feed":{"name":"MISP"},"indicator":{"provider":"misp",'
    '"type":"file","file":{"hash":{"sha256":""}},"marking":{"tlp":["WHITE"]}}}}',
)

#: The dictionary of a latest row's ``doc`` (schema 3).
DOC_DICTIONARY: bytes = ("".join(f'"{word}",' for word in _VOCABULARY) + "".join(_FRAGMENTS)).encode()
