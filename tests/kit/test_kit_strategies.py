"""``misp_ti.testing.strategies``: valid values for every MISP type, checked
against independent rules (hashlib digest sizes, ipaddress, URL parsing), and
the strategies used from a downstream project through pytester."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misp_ti.testing import strategies as ms
from misp_ti.testing.values import composite_parts

pytest_plugins = ["pytester"]

# Independent checks for the types whose format is well defined; the rest must
# at least be a non-empty string without surrounding blanks.
_DIGEST_NAMES = {
    "md5": "md5",
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "sha512/224": "sha512_224",
    "sha512/256": "sha512_256",
    "sha3-224": "sha3_224",
    "sha3-256": "sha3_256",
    "sha3-384": "sha3_384",
    "sha3-512": "sha3_512",
    "x509-fingerprint-md5": "md5",
    "x509-fingerprint-sha1": "sha1",
    "x509-fingerprint-sha256": "sha256",
    "imphash": "md5",
    "git-commit-id": "sha1",
}
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,}$")


def _check(misp_type: str, value: str) -> None:
    assert isinstance(value, str) and value and value == value.strip(), (misp_type, value)
    parts = composite_parts(misp_type)
    if parts is not None:
        left, sep, right = value.partition("|")
        assert sep, (misp_type, value)
        _check(parts[0], left)
        _check(parts[1], right)
        return
    if misp_type in _DIGEST_NAMES:
        size = hashlib.new(_DIGEST_NAMES[misp_type]).digest_size * 2
        assert re.fullmatch(rf"[0-9a-f]{{{size}}}", value), (misp_type, value)
    elif misp_type in ("ip-src", "ip-dst"):
        ipaddress.ip_network(value, strict=False)
    elif misp_type in ("domain", "hostname"):
        assert _DOMAIN.match(value), value
    elif misp_type in ("port",):
        assert 0 <= int(value) <= 65535
    elif misp_type in ("url", "link"):
        parts_ = urlsplit(value)
        assert parts_.scheme in ("http", "https") and parts_.netloc, value
    elif misp_type in ("email", "email-src", "email-dst", "target-email", "whois-registrant-email"):
        user, at, host = value.partition("@")
        assert at and user and _DOMAIN.match(host), value
    elif misp_type == "AS":
        assert 0 < int(value) < 2**32
    elif misp_type == "vulnerability":
        assert re.fullmatch(r"CVE-\d{4}-\d{4,}", value)
    elif misp_type == "mac-address":
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", value)
    elif misp_type == "ssdeep":
        blocksize, a, b = value.split(":")
        assert int(blocksize) > 0 and a and b


def test_the_type_list_is_misps():
    assert len(ms.MISP_TYPES) >= 190 and len(set(ms.MISP_TYPES)) == len(ms.MISP_TYPES)
    assert {"ip-dst", "domain|ip", "sha3-256", "onion-address", "x509-fingerprint-sha256"} <= set(
        ms.MISP_TYPES
    )


@pytest.mark.parametrize("misp_type", ms.MISP_TYPES)
@settings(max_examples=10)
@given(data=st.data())
def test_every_misp_type_has_valid_values(misp_type, data):
    _check(misp_type, data.draw(ms.attribute_values(misp_type)))


def test_unknown_type_is_a_clear_error():
    with pytest.raises(ValueError, match="no value strategy for MISP type 'no-such-type'"):
        ms.attribute_values("no-such-type")


def test_composite_types_are_the_pipe_types():
    assert "domain|ip" in ms.COMPOSITE_TYPES and "filename|sha256" in ms.COMPOSITE_TYPES
    assert "malware-sample" in ms.COMPOSITE_TYPES
    assert all("|" in t or t == "malware-sample" for t in ms.COMPOSITE_TYPES)


@settings(max_examples=60)
@given(ms.attributes())
def test_attributes_have_the_attribute_search_shape(attribute):
    _check(attribute["type"], attribute["value"])
    assert attribute["Event"]["id"] == attribute["event_id"]
    assert attribute["object_id"] == "0" and attribute["object_relation"] is None
    assert attribute["timestamp"].isdigit()
    assert isinstance(attribute["to_ids"], bool) and attribute["deleted"] is False
    tlp = [t for t in attribute.get("Tag", []) if t["name"].startswith("tlp:")]
    assert len(tlp) <= 1
    if attribute.get("first_seen") and attribute.get("last_seen"):
        assert attribute["first_seen"] <= attribute["last_seen"]
    json.dumps(attribute)


@settings(max_examples=50)
@given(ms.object_attributes())
def test_object_attributes_carry_their_object(attribute):
    obj = attribute["Object"]
    assert attribute["object_id"] == obj["id"] != "0"
    relations = dict(ms.OBJECT_TEMPLATES[obj["name"]][1])
    assert relations[attribute["object_relation"]] == attribute["type"]


@settings(max_examples=15)
@given(ms.events())
def test_events_count_their_attributes(event):
    members = len(event["Attribute"]) + sum(len(o["Attribute"]) for o in event["Object"])
    assert int(event["attribute_count"]) == members
    assert all(a["event_id"] == event["id"] for a in event["Attribute"])
    assert all(a["event_id"] == event["id"] for o in event["Object"] for a in o["Attribute"])


@settings(max_examples=50)
@given(ms.decay_scores(decayed=True))
def test_forced_decay_verdict(scores):
    assert scores and all(s["decayed"] is True for s in scores)
    assert all(0 <= s["score"] <= s["base_score"] <= 100 for s in scores)


@settings(max_examples=50)
@given(ms.tags("tlp"), ms.tags("galaxy"), ms.tags("taxonomy"))
def test_tag_kinds(tlp, galaxy, taxonomy):
    assert tlp["name"] in ms.TLP_TAGS and not tlp["is_galaxy"]
    assert galaxy["is_galaxy"] and galaxy["name"].startswith("misp-galaxy:")
    assert taxonomy["name"] in ms.TAXONOMY_TAGS


@settings(max_examples=100)
@given(ms.malformed_bodies())
def test_malformed_bodies_are_never_json(body):
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return
    raise AssertionError(f"decodes as JSON: {body!r}")


@settings(max_examples=100)
@given(ms.malformed_attributes())
def test_malformed_attributes_break_the_contract(record):
    if not isinstance(record, dict):
        return
    problems = [
        any(k not in record for k in ("value", "type", "uuid", "timestamp", "category", "Event")),
        not isinstance(record.get("value"), str),
        not str(record.get("timestamp", "")).isdigit() or len(str(record.get("timestamp"))) > 12,
        record.get("type") not in ms.MISP_TYPES,
        "Tag" in record
        and not (
            isinstance(record["Tag"], list)
            and all(isinstance(t, dict) and "name" in t for t in record["Tag"])
        ),
        "decay_score" in record
        and not (
            isinstance(record["decay_score"], list)
            and all(
                isinstance(d, dict) and isinstance(d.get("score"), float)
                for d in record["decay_score"]
            )
        ),
        not isinstance(record.get("uuid"), str) or len(record.get("uuid", "")) != 36,
        not isinstance(record.get("to_ids"), bool),
        not isinstance(record.get("deleted"), bool),
        not isinstance(record.get("Event"), dict),
        record.get("first_seen") is not None and not isinstance(record.get("first_seen"), str),
    ]
    assert any(problems), record


DOWNSTREAM_TESTS = '''
    import json

    from hypothesis import given, settings
    from misp_ti.testing import strategies as ms

    def to_indicator(attribute):
        """The downstream project's own code under test."""
        return {"type": attribute["type"], "value": attribute["value"].split("|")}

    @settings(max_examples=20)
    @given(ms.attributes(types=["ip-dst", "domain|ip"], decay=True))
    def test_attributes(attribute):
        assert to_indicator(attribute)["type"] in ("ip-dst", "domain|ip")
        assert attribute["decay_score"]

    @settings(max_examples=10)
    @given(ms.attribute_values("sha256"), ms.misp_types(composite=True))
    def test_values_and_types(value, misp_type):
        assert len(value) == 64 and misp_type in ms.COMPOSITE_TYPES

    @settings(max_examples=10)
    @given(ms.objects(["file"]), ms.object_attributes(["url"]))
    def test_objects(obj, member):
        assert obj["name"] == "file" and member["Object"]["name"] == "url"

    @settings(max_examples=10)
    @given(ms.events(max_attributes=3), ms.tag_lists(), ms.tags("tlp"), ms.decay_scores(decayed=False))
    def test_events_and_tags(event, tags, tlp, scores):
        assert "Attribute" in event and tlp["name"] in ms.TLP_TAGS
        assert not any(s["decayed"] for s in scores)

    @settings(max_examples=10)
    @given(ms.attribute_search_responses(max_size=3), ms.event_search_responses(max_size=2))
    def test_responses(attrs, events):
        json.dumps(attrs), json.dumps(events)
        assert isinstance(attrs["response"]["Attribute"], list) and isinstance(events["response"], list)

    @settings(max_examples=20)
    @given(ms.malformed_attributes(), ms.malformed_responses(), ms.malformed_bodies())
    def test_robustness(record, response, body):
        try:
            to_indicator(record)
        except (KeyError, TypeError, AttributeError):
            pass
        assert isinstance(body, bytes)

    @settings(max_examples=5)
    @given(ms.timestamps(1_600_000_000, 1_600_000_100))
    def test_timestamps(ts):
        assert 1_600_000_000 <= ts <= 1_600_000_100
'''


def test_strategies_in_a_downstream_project(pytester):
    pytester.makepyfile(DOWNSTREAM_TESTS)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=7)


def test_downstream_tests_use_every_public_strategy():
    used = set(re.findall(r"ms\.([A-Za-z_]+)", DOWNSTREAM_TESTS))
    public = set(ms.__all__) - {
        "DEFAULT_TIMESTAMPS",
        "GALAXY_TAGS",
        "TAXONOMY_TAGS",
        "OBJECT_TEMPLATES",
        "MISP_TYPES",
    }
    assert public <= used, f"not exercised downstream: {sorted(public - used)}"
    for name in ms.__all__:
        assert hasattr(ms, name), name
