"""``misp-ti lookup -``: many values, canonical forms, CIDR containment, datasets and sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from misp_ti.sinks.sqlite import EmbeddedStore
from misp_ti.sinks.sqlite_keys import canonical

NOW = datetime.now(UTC).replace(microsecond=0)
LATER = (NOW + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
EARLIER = (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def doc(uuid: str, misp_type: str, value: str, indicator: dict[str, Any], *, dataset: str = "threat_attributes",
        decayed_at: str = LATER, source: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "_id": f"id-{uuid}",
        "@timestamp": NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "event": {"kind": "enrichment", "dataset": f"ti_misp.{dataset}"},
        "threat": {"indicator": indicator},
        "misp": {"attribute": {"uuid": uuid, "type": misp_type, "value": value, "decayed": False, "decayed_at": decayed_at},
                 "event": {"info": f"event of {uuid}"}},
    }
    if source:
        body["labels"] = {"misp_source": source}
    return body


DOCS = [
    doc("v6", "ip-dst", "2001:DB8:0:0:0:0:0:1", {"type": "ipv6-addr", "ip": "2001:DB8:0:0:0:0:0:1"}),
    doc("v4", "ip-src", "192.0.2.10", {"type": "ipv4-addr", "ip": "192.0.2.10"}, source="partner"),
    doc("net", "ip-dst", "198.51.100.7/24", {"type": "ipv4-addr", "ip": "198.51.100.7/24"}),
    doc("host", "domain", "evil.example.", {"type": "domain-name", "url": {"domain": "evil.example."}}),
    doc("idn", "domain", "bücher.example", {"type": "domain-name", "url": {"domain": "bücher.example"}}),
    doc("pair", "domain|ip", "pair.example|203.0.113.5", {"type": "domain-name", "url": {"domain": "pair.example"}},
        dataset="threat"),
    doc("gone", "ip-dst", "192.0.2.99", {"type": "ipv4-addr", "ip": "192.0.2.99"}, decayed_at=EARLIER),
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    store = EmbeddedStore(path)
    store.write(DOCS, ingested=NOW, retention_cutoff=None)
    store.close()
    return path


def lookup(db: Path, *args: str, stdin: str | bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [sys.executable, "-m", "misp_ti", "lookup", *args, "--db", str(db)],
        input=data, capture_output=True, timeout=60, env=dict(os.environ),
    )


ASKED = {
    "2001:db8::1": "v6",                     # compressed form of a stored uncompressed address
    "2001:0db8:0000::0001": "v6",
    "::ffff:192.0.2.10": "v4",               # IPv4-mapped IPv6
    "198.51.100.200": "net",                 # inside a stored CIDR
    "EVIL.example": "host",                  # the stored value has a trailing dot
    "evil.example.": "host",
    "xn--bcher-kva.example": "idn",          # punycode of a stored IDN
    "pair.example": "pair",                  # a half of a composite value
    "203.0.113.5": "pair",
    "192.0.2.99": None,                      # expired
    "198.51.101.1": None,                    # outside the CIDR
    "nothing.example": None,
}


def test_lookup_dash_answers_one_json_line_per_value_in_order(db: Path) -> None:
    done = lookup(db, "-", "--json", stdin="\n".join(ASKED) + "\n\n")
    assert done.returncode == 1, done.stderr  # some values are not active
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["value"] for a in answers] == list(ASKED)
    for answer, want in zip(answers, ASKED.values(), strict=True):
        assert answer["active"] is (want is not None), answer
        assert [h["uuid"] for h in answer["hits"]] == ([want] if want else []), answer
    by_value = {a["value"]: a for a in answers}
    [hit] = by_value["::ffff:192.0.2.10"]["hits"]
    assert hit["dataset"] == "ti_misp.threat_attributes" and hit["source"] == "partner"
    assert by_value["203.0.113.5"]["hits"][0]["dataset"] == "ti_misp.threat"
    assert by_value["2001:db8::1"]["hits"][0]["source"] == "default"


def test_lookup_dash_exits_0_when_every_value_is_active_and_prints_text_lines(db: Path) -> None:
    done = lookup(db, "-", stdin="192.0.2.10\r\nbücher.example\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("192.0.2.10: 1 active IOC(s): ti_misp.threat_attributes (source partner)")
    assert lines[1].startswith("bücher.example: 1 active IOC(s): ti_misp.threat_attributes (source default)")


def test_single_value_lookup_uses_canonical_forms_and_names_dataset_and_source(db: Path) -> None:
    done = lookup(db, "2001:0DB8::0:1")
    assert done.returncode == 0, done.stderr
    assert b"ti_misp.threat_attributes (source default)" in done.stdout and b"uuid=v6" in done.stdout


def test_stream_filters_and_a_bogus_stream_lists_the_valid_ones(db: Path) -> None:
    assert lookup(db, "203.0.113.5", "--stream", "threat").returncode == 0
    assert lookup(db, "203.0.113.5", "--stream", "threat_attributes").returncode == 1
    bogus = lookup(db, "203.0.113.5", "--stream", "bogus")
    assert bogus.returncode == 2
    [line] = bogus.stderr.decode().splitlines()
    assert "'bogus'" in line and "threat" in line and "threat_attributes" in line


def test_a_value_that_is_not_utf8_is_an_answer_not_a_traceback(db: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "misp_ti", "lookup", os.fsdecode(b"\xff\xfe"), "--db", str(db)],
                          capture_output=True, timeout=60)
    # on the command line it is a usage error (one line, exit 2); a line of a batch gets its answer line
    assert done.returncode == 2 and b"Traceback" not in done.stderr and b"not UTF-8" in done.stderr
    piped = lookup(db, "-", "--json", stdin=b"\xff\xfe\n192.0.2.10\n")
    assert piped.returncode == 1 and len(piped.stdout.splitlines()) == 2


@pytest.mark.parametrize(("written", "asked"), [
    ("2001:DB8:0:0::1", "2001:db8::1"),
    ("::FFFF:192.0.2.1", "192.0.2.1"),
    ("10.1.2.3/8", "10.0.0.0/8"),
    ("Host.Example.", "host.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("  Mixed.Case  ", "mixed.case"),
])
def test_canonical_forms_meet(written: str, asked: str) -> None:
    assert canonical(written) == canonical(asked)


def test_canonical_keeps_what_it_cannot_read() -> None:
    assert canonical("not an ip/x") == "not an ip/x"
    assert canonical("999.1.1.1") == "999.1.1.1"
    assert canonical("..") == "."
