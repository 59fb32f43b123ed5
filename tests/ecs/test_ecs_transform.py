"""The ECS mapping per MISP type, the reference's quirks fixed, malformed
records, ids and the extension-field list."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers.ecs_validation import ecs_errors, ecs_fields
from misp_ti.ecs import EXTENSION_FIELDS, TYPE_RULES, Options, transform
from misp_ti.ecs.documents import MAX_VALUE_CHARS
from misp_ti.testing.values import describe_types

OPTS = Options("threat_attributes", ingested="2024-06-01T00:00:00.000Z")
THREAT = Options("threat", ingested="2024-06-01T00:00:00.000Z")
UUID = "5f1a7c3e-0000-4000-8000-000000000001"


def attribute(misp_type: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"id": "1", "event_id": "2", "type": misp_type, "category": "Network activity", "value": value,
            "uuid": UUID, "timestamp": "1617875568", "distribution": "5", "to_ids": True, **extra}


def indicator(misp_type: str, value: Any, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = transform(attribute(misp_type, value, **extra), OPTS)
    assert doc["event"]["kind"] == "enrichment", doc.get("error")
    assert ecs_errors(doc) == []
    return doc["threat"]["indicator"], doc["misp"]["attribute"]


def test_every_misp_type_has_a_rule_and_no_rule_is_invented() -> None:
    assert set(TYPE_RULES) == set(describe_types()["types"])  # type: ignore[arg-type]


def test_extension_fields_are_not_ecs_fields_and_are_all_declared() -> None:
    # ecs_fields() asserts the first half; the typed names are the ones the rules write
    assert len(ecs_fields()) > 1600
    assert "threat.indicator.mac" in EXTENSION_FIELDS
    assert "threat.indicator.email.subject" in EXTENSION_FIELDS
    assert all(t == "keyword" for t in EXTENSION_FIELDS.values())


@pytest.mark.parametrize(("misp_type", "value", "expected_type", "path", "typed"), [
    ("md5", "d41d8cd98f00b204e9800998ecf8427e", "file", ("file", "hash", "md5"), "d41d8cd98f00b204e9800998ecf8427e"),
    ("sha3-256", "ab" * 32, "file", ("file", "hash", "sha3_256"), "ab" * 32),
    ("sha512/224", "cd" * 28, "file", ("file", "hash", "sha512_224"), "cd" * 28),
    ("imphash", "ef" * 16, "file", ("file", "hash", "imphash"), "ef" * 16),
    ("telfhash", "t1" + "a" * 70, "file", ("file", "elf", "telfhash"), "t1" + "a" * 70),
    ("filename", "evil.exe", "file", ("file", "name"), "evil.exe"),
    ("mime-type", "application/x-dosexec", "artifact", ("file", "mime_type"), "application/x-dosexec"),
    ("domain", "example.org", "domain-name", ("url", "domain"), "example.org"),
    ("hostname", "a.example.org", "domain-name", ("url", "domain"), "a.example.org"),
    ("ip-dst", "192.0.2.1", "ipv4-addr", ("ip",), "192.0.2.1"),
    ("ip-src", "2001:db8::1", "ipv6-addr", ("ip",), "2001:db8::1"),
    ("email-src", "a@example.org", "email-addr", ("email", "address"), "a@example.org"),
    ("email", "b@example.org", "email-addr", ("email", "address"), "b@example.org"),
    ("email-reply-to", "c@example.org", "email-addr", ("email", "address"), "c@example.org"),
    ("email-subject", "Invoice", "email-message", ("email", "subject"), "Invoice"),
    ("mac-address", "00:11:22:33:44:55", "mac-addr", ("mac",), "00:11:22:33:44:55"),
    ("regkey", "HKLM\\Software\\Run", "windows-registry-key", ("registry", "key"), "HKLM\\Software\\Run"),
    ("AS", "AS64496", "autonomous-system", ("as", "number"), 64496),
    ("AS", "as64496", "autonomous-system", ("as", "number"), 64496),
    ("AS", "64496", "autonomous-system", ("as", "number"), 64496),
])
def test_single_value_types_land_in_their_typed_field(misp_type: str, value: str, expected_type: str,
                                                      path: tuple[str, ...], typed: Any) -> None:
    ind, attr = indicator(misp_type, value)
    assert ind["type"] == expected_type
    node: Any = ind
    for key in path:
        node = node[key]
    assert node == typed
    assert "value" not in attr  # represented by the typed field, as the reference does


@pytest.mark.parametrize(("misp_type", "value", "expected"), [
    ("filename|sha256", "a|b.exe|" + "0" * 64, {"file": {"name": "a|b.exe", "hash": {"sha256": "0" * 64}}}),
    ("filename|sha3-256", "x.dll|" + "1" * 64, {"file": {"name": "x.dll", "hash": {"sha3_256": "1" * 64}}}),
    ("filename|sha512/256", "x.dll|" + "2" * 64, {"file": {"name": "x.dll", "hash": {"sha512_256": "2" * 64}}}),
    ("domain|ip", "example.org|192.0.2.7", {"url": {"domain": "example.org"}, "ip": "192.0.2.7"}),
    ("hostname|port", "c2.example.org|8443", {"url": {"domain": "c2.example.org"}, "port": 8443}),
    ("ip-dst|port", "192.0.2.9|443", {"ip": "192.0.2.9", "port": 443}),
    ("ip-src|port", "2001:db8::9|53", {"ip": "2001:db8::9", "port": 53, "type": "ipv6-addr"}),
    ("regkey|value", "HKCU\\Run|C:\\evil.exe", {"registry": {"key": "HKCU\\Run", "data": {"strings": ["C:\\evil.exe"]}}}),
])
def test_both_halves_of_composite_types_are_kept(misp_type: str, value: str, expected: dict[str, Any]) -> None:
    ind, attr = indicator(misp_type, value)
    assert {k: ind[k] for k in expected} == expected
    assert "value" not in attr


@pytest.mark.parametrize(("misp_type", "value", "expected_type"), [
    ("mutex", "Global\\xyz", "mutex"),
    ("cpe", "cpe:2.3:a:vendor:product:1.0:*:*:*:*:*:*:*", "software"),
    ("filename-pattern", "*.scr", "file"),
    ("email-body", "Dear customer", "email-message"),
    ("email-attachment", "invoice.zip", "email-message"),
    ("email-message-id", "<x@y>", "email-message"),
    ("ip-dst", "10.0.0.0/8", "ipv4-addr"),
    ("ip-src", "2001:db8::/32", "ipv6-addr"),
    ("ip-dst", "not an ip", "ipv4-addr"),
    ("AS", "ASN-unknown", "autonomous-system"),
    ("ip-dst|port", "192.0.2.1|http", "ipv4-addr"),
    ("filename|md5", "no-separator", "file"),
])
def test_values_without_a_typed_home_stay_in_misp_attribute_value(misp_type: str, value: str, expected_type: str) -> None:
    ind, attr = indicator(misp_type, value)
    assert ind["type"] == expected_type
    assert attr["value"] == value


def test_cidr_never_fills_the_ip_field_but_a_host_prefix_does() -> None:
    ind, _ = indicator("ip-dst", "198.51.100.0/24")
    assert "ip" not in ind
    ind, attr = indicator("ip-dst", "198.51.100.4/32")
    assert ind["ip"] == "198.51.100.4" and attr["value"] == "198.51.100.4/32"


def test_untyped_types_keep_value_and_have_no_indicator_type() -> None:
    ind, attr = indicator("text", "Shellshock")
    assert "type" not in ind and attr["value"] == "Shellshock"


def test_url_parts() -> None:
    ind, _ = indicator("url", "https://user:pw@Example.org:8443/a/b/payload.tar.gz?x=1#frag")
    assert ind["url"] == {
        "original": "https://user:pw@Example.org:8443/a/b/payload.tar.gz?x=1#frag",
        "full": "https://user:pw@Example.org:8443/a/b/payload.tar.gz?x=1#frag",
        "scheme": "https", "username": "user", "password": "pw", "domain": "Example.org", "port": 8443,
        "path": "/a/b/payload.tar.gz", "extension": "gz", "query": "x=1", "fragment": "frag",
    }
    ind, _ = indicator("uri", "/index.php")
    assert ind["url"]["path"] == "/index.php" and ind["url"]["extension"] == "php" and "domain" not in ind["url"]
    ind, _ = indicator("url", "http://[2001:db8::1]:80/")
    assert ind["url"]["domain"] == "2001:db8::1" and ind["url"]["port"] == 80
    ind, _ = indicator("link", "http://[broken/")  # urlsplit refuses it: original is still kept
    assert ind["url"]["original"] == "http://[broken/"


def test_tags_tlp_and_preserved_original() -> None:
    record = attribute("domain", "example.org", Tag=[
        {"name": "tlp:amber+strict"}, {"name": 'osint:source-type="blog-post"'}, {"name": "tlp:amber+strict"},
    ])
    opts = Options("threat_attributes", preserve_original=True, ingested="2024-06-01T00:00:00.000Z")
    doc = transform(record, opts)
    assert doc["tags"] == ["preserve_original_event", "tlp:amber+strict", "osint:source-type=blog-post"]
    assert doc["threat"]["indicator"]["marking"]["tlp"] == ["AMBER+STRICT", "AMBER+STRICT"]
    assert json.loads(doc["event"]["original"]) == record
    assert "original" not in transform(record, OPTS)["event"]


def test_event_context_fields() -> None:
    record = attribute("md5", "0" * 32, first_seen="2020-02-18T00:00:00.000000+00:00", Event={
        "id": "7", "org_id": "3", "orgc_id": "3", "analysis": "2", "threat_level_id": "1", "distribution": "1",
        "timestamp": "1617875568", "publish_timestamp": "0", "event_creator_email": "analyst@example.org", "info": None,
    })
    doc = transform(record, OPTS)
    assert doc["organization"] == {"id": "3"}
    assert doc["user"] == {"email": "analyst@example.org", "roles": ["reporting_user"]}
    assert doc["threat"]["indicator"]["scanner_stats"] == 2
    assert doc["threat"]["indicator"]["first_seen"] == "2020-02-18T00:00:00.000Z"
    assert doc["misp"]["event"] == {"id": "7", "orgc_id": "3", "threat_level_id": 1, "distribution": 1,
                                    "timestamp": "2021-04-08T09:52:48.000Z", "publish_timestamp": "1970-01-01T00:00:00.000Z"}
    assert doc["@timestamp"] == "2021-04-08T09:52:48.000Z"
    assert doc["data_stream"] == {"type": "logs", "dataset": "ti_misp.threat_attributes", "namespace": "default"}


def test_ids_are_deterministic_and_follow_the_attribute_version() -> None:
    first = transform(attribute("domain", "example.org"), OPTS)["_id"]
    assert transform(attribute("domain", "example.org"), OPTS)["_id"] == first
    assert transform(attribute("domain", "example.org", timestamp="1617875569"), OPTS)["_id"] != first
    # the ingest time and namespace are not part of the identity: a replay is the same document
    later = Options("threat_attributes", namespace="other", ingested="1999-01-01T00:00:00.000Z")
    assert transform(attribute("domain", "example.org"), later)["_id"] == first
    # nor is the value: one version of an attribute is one document
    assert transform(attribute("domain", "example.com"), OPTS)["_id"] == first
    # a retag or an edit of the event (which need not bump the attribute's
    # timestamp) is a new version: a sink must not drop it as a replay
    assert transform(attribute("domain", "example.org", Tag=[{"name": "tlp:red"}]), OPTS)["_id"] != first
    edited_event = attribute("domain", "example.org")
    edited_event["Event"] = {"id": "7", "timestamp": "1700000000"}
    assert transform(edited_event, OPTS)["_id"] != first


def split_record(primary: dict[str, Any], *, in_object: bool, **event: Any) -> dict[str, Any]:
    base = {"id": "9", "uuid": "e0000000-0000-4000-8000-000000000000", "timestamp": "1622200781", "analysis": "1",
            "Orgc": {"id": "4", "name": "CIRCL", "local": False}, **event}
    if in_object:
        base["Object"] = {"id": "11", "name": "file", "meta-category": "file", "timestamp": "1622200780",
                          "Attribute": primary}
        base["Attribute"] = attribute("text", "context", uuid="c0000000-0000-4000-8000-000000000000")
    else:
        base["Attribute"] = primary
    return {"Event": base}


def test_threat_stream_object_attribute_is_primary_and_remote_org_is_provider() -> None:
    doc = transform(split_record(attribute("uri", "/gate.php", Tag=[{"name": "tlp:red"}]), in_object=True,
                                 Tag=[{"name": "tlp:green"}]), THREAT)
    assert doc["event"]["kind"] == "enrichment" and ecs_errors(doc) == []
    assert doc["misp"]["attribute"]["uuid"] == UUID
    assert doc["misp"]["context"]["attribute"]["value"] == "context"
    assert doc["misp"]["object"]["meta_category"] == "file"
    assert doc["threat"]["indicator"]["url"]["path"] == "/gate.php"
    assert doc["threat"]["indicator"]["provider"] == "CIRCL"
    assert doc["threat"]["indicator"]["marking"]["tlp"] == ["GREEN", "RED"]
    assert doc["@timestamp"] == "2021-05-28T11:19:41.000Z"
    assert doc["event"]["dataset"] == "ti_misp.threat"


def test_threat_stream_id_changes_with_the_event_version() -> None:
    a = transform(split_record(attribute("md5", "0" * 32), in_object=False), THREAT)["_id"]
    b = transform(split_record(attribute("md5", "0" * 32), in_object=False, timestamp="1622200999"), THREAT)["_id"]
    assert a != b


@pytest.mark.parametrize(("record", "message"), [
    ("not a dict", "record: expected an object"),
    ([1, 2], "record: expected an object"),
    ({k: v for k, v in attribute("md5", "x").items() if k != "uuid"}, "uuid: missing"),
    (attribute("md5", "x", uuid=5), "uuid: expected a string"),
    (attribute("md5", "x", timestamp="yesterday"), "timestamp: expected epoch seconds"),
    (attribute("md5", "x", timestamp=1.5), "timestamp: expected epoch seconds"),
    (attribute("md5", "x", timestamp="99999999999999"), "out of range"),
    (attribute("no-such-type", "x"), "unknown MISP attribute type"),
    (attribute("md5", ["a"]), "value: expected a string"),
    (attribute("md5", "a" * (MAX_VALUE_CHARS + 1)), "more than"),
    (attribute("md5", "bad \udc80 utf8"), "not valid UTF-8"),
    (attribute("md5", "x", distribution="all"), "distribution: expected an integer"),
    (attribute("md5", "x", first_seen="last tuesday"), "first_seen"),
    (attribute("md5", "x", Event="3"), "Event: expected an object"),
    (attribute("md5", "x", Tag={"name": "tlp:red"}), "Tag: expected a list"),
    (attribute("md5", "x", Tag=[{"colour": "#fff"}]), "Tag: expected objects with a string name"),
])
def test_malformed_attributes_become_pipeline_error_documents(record: Any, message: str) -> None:
    doc = transform(record, OPTS)
    assert doc["event"]["kind"] == "pipeline_error"
    assert message in doc["error"]["message"]
    assert doc["event"]["original"]  # the raw record is kept
    assert ecs_errors(doc) == []
    assert transform(record, OPTS)["_id"] == doc["_id"]


@pytest.mark.parametrize(("record", "message"), [
    ({"response": []}, "Event: expected an object"),
    ({"Event": {"id": "1", "Attribute": []}}, "record has no attribute"),
    ({"Event": {"Attribute": {"type": "md5", "value": "x", "timestamp": "1"}}}, "Event.Attribute.uuid: missing"),
    ({"Event": {"Object": {"Attribute": {"uuid": "u", "type": "md5", "value": "x", "timestamp": "z"}}}},
     "Event.Object.Attribute.timestamp"),
    ({"Event": {"timestamp": "soon", "Attribute": attribute("md5", "x")}}, "Event.timestamp"),
])
def test_malformed_event_records_become_pipeline_error_documents(record: Any, message: str) -> None:
    doc = transform(record, THREAT)
    assert doc["event"]["kind"] == "pipeline_error" and message in doc["error"]["message"]


def test_other_streams_are_not_answered_by_the_default_plugin() -> None:
    from misp_ti.default_plugins import ecs_transform

    assert ecs_transform.transform_threat_attributes(stream="sightings", record={}, ctx=None) is None
    assert ecs_transform.transform_threat(stream="threat_attributes", record={}, ctx=None) is None


def test_is_pipeline_error_recognises_error_documents_only() -> None:
    from misp_ti.ecs import is_pipeline_error

    assert is_pipeline_error(transform({"response": []}, THREAT))
    assert not is_pipeline_error(transform(attribute("md5", "x"), OPTS))
    assert not is_pipeline_error({}) and not is_pipeline_error({"event": "pipeline_error"})


def _context(namespace: str, now: Any) -> Any:
    from misp_ti.config import build_config
    from misp_ti.model import RunContext

    config = build_config({"output": {"elasticsearch": {"namespace": namespace}}, "plugins": {"entrypoints": False}})
    return RunContext(config=config, now=now)


def test_transform_options_follow_the_context_even_when_config_ids_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    # an id is reused once its object is collected: make every id collide
    # (the old cache was keyed by id(ctx.config) in the plugin module)
    from datetime import UTC, datetime

    from misp_ti.default_plugins import ecs_transform
    from misp_ti.ecs import options

    for module in (ecs_transform, options):
        monkeypatch.setattr(module, "id", lambda obj: 1, raising=False)
    now = datetime(2024, 6, 1, tzinfo=UTC)
    first, second = _context("first", now), _context("second", now)
    assert ecs_transform.options_for("threat", first).namespace == "first"
    assert ecs_transform.options_for("threat", second).namespace == "second"
    doc = ecs_transform.transform_threat_attributes(stream="threat_attributes", record=attribute("md5", "x"), ctx=second)
    assert doc is not None and doc["data_stream"]["namespace"] == "second"


def test_transform_options_are_worked_out_once_per_stream_and_context() -> None:
    from datetime import UTC, datetime

    from misp_ti.ecs import options_for

    ctx = _context("default", datetime(2024, 6, 1, tzinfo=UTC))
    assert options_for("threat", ctx) is options_for("threat", ctx)
    assert options_for("threat", ctx) is not options_for("threat_attributes", ctx)
    assert options_for("threat", ctx).ingested == "2024-06-01T00:00:00.000Z"
    later = _context("default", datetime(2024, 6, 2, tzinfo=UTC))
    assert options_for("threat", later).ingested == "2024-06-02T00:00:00.000Z"
