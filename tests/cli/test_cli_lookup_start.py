"""``misp-ti lookup -`` against the embedded store: a light start, hits written as stored."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from misp_ti.sinks.sqlite import EmbeddedStore

NOW = datetime.now(UTC).replace(microsecond=0)
LATER = (NOW + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def doc(uuid: str, value: str, info: str) -> dict[str, Any]:
    return {
        "_id": f"id-{uuid}",
        "@timestamp": NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "event": {"kind": "enrichment", "dataset": "ti_misp.threat_attributes"},
        "threat": {"indicator": {"type": "ipv4-addr", "ip": value}},
        "misp": {"attribute": {"uuid": uuid, "type": "ip-dst", "value": value, "decayed": False, "decayed_at": LATER},
                 "event": {"info": info}},
    }


DOCS = [doc("a", "192.0.2.1", 'quotes " and \\ and ünïcode'), doc("b", "192.0.2.1", "second"),
        doc("c", "198.51.100.0/24", "a network")]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    store = EmbeddedStore(path)
    store.write(DOCS, ingested=NOW, retention_cutoff=None)
    store.close()
    return path


def test_raw_hits_serialise_to_the_bytes_of_the_parsed_hits(db: Path) -> None:
    asked = ["192.0.2.1", "198.51.100.7", "absent.example", "192.0.2.1"]
    store = EmbeddedStore(db, readonly=True)
    try:
        parsed = store.lookup_many(asked, now=NOW, summaries=True)
        raw = store.lookup_many(asked, now=NOW, summaries=True, raw=True)
    finally:
        store.close()
    assert [len(hits) for hits in parsed] == [2, 1, 0, 2]
    assert [type(hit) for hits in raw for hit in hits] == [orjson.Fragment] * 5
    assert orjson.dumps(raw) == orjson.dumps(parsed)


def test_lookup_loads_neither_the_config_schema_nor_http_nor_plugins(db: Path) -> None:
    # run the real command in a fresh interpreter and list what it imported
    script = (
        "import sys\n"
        "from misp_ti.cli import main\n"
        "sys.argv = ['misp-ti', 'lookup', '-', '--json', '--db', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "heavy = sorted(m for m in ('pydantic', 'httpx', 'elasticsearch', 'pluggy', 'misp_ti.config', 'misp_ti.engine') if m in sys.modules)\n"
        "print('IMPORTED', ','.join(heavy), code, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(db)], input=b"192.0.2.1\nabsent.example\n",
                          capture_output=True, timeout=120, env=dict(os.environ))
    report = [line for line in done.stderr.decode().splitlines() if line.startswith("IMPORTED")]
    assert report == ["IMPORTED  1"], done.stderr.decode()[-500:]
    answers = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [(a["value"], a["active"], len(a["hits"])) for a in answers] == [("192.0.2.1", True, 2), ("absent.example", False, 0)]
    assert {hit["event"] for hit in answers[0]["hits"]} == {'quotes " and \\ and ünïcode', "second"}


def test_text_answers_are_unchanged_by_the_json_path(db: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "misp_ti", "lookup", "-", "--db", str(db)],
                          input=b"192.0.2.1\nabsent.example\n", capture_output=True, timeout=120, env=dict(os.environ))
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 1
    assert lines[0].startswith("192.0.2.1: 2 active IOC(s): ti_misp.threat_attributes")
    assert lines[1] == "absent.example: not an active IOC"
