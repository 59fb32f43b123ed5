"""Every input line of the ti_misp integration's pipeline tests, through our
engine path, compared field by field with the integration's expected output.

The only differences allowed are the rows of the "Conformance differences"
table in docs/deviations.md (read here, so the docs and the test cannot
drift apart). The data are copies in tests/data/conformance/ (Elastic
License 2.0 test data, see the README there).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from misp_ti.config import build_config
from misp_ti.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "conformance"
SHARED = ROOT / ".." / "shared" / "conformance" / "elastic_ti_misp"
DEVIATIONS = ROOT / "docs" / "deviations.md"
#: Later than every expected decayed_at, so that all are decayed as in the expected files.
NOW = datetime(2024, 6, 1, tzinfo=UTC)

CASES = {
    # stream: (input file, preserve_original_event as in the test's config)
    "threat_attributes": ("threat_attributes__test-misp-sample-ndjson.log", True),
    "threat": ("threat__test-misp-long-ndjson.log", False),  # its -config.yml sets `tags: ~`
}
MISSING = "<missing>"


def allowed_differences() -> dict[tuple[str, str], str]:
    text = DEVIATIONS.read_text(encoding="utf-8")
    section = text.split("## Conformance differences", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            stream, field, kind, reason = cells
            assert reason, f"deviation {stream} {field} has no reason"
            rows[(stream, field.strip("`"))] = kind
    return rows


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def differences(ours: dict[str, Any], expected: dict[str, Any]) -> dict[str, str]:
    """field -> kind (added / removed / changed / same JSON)."""
    a, b = flatten({k: v for k, v in ours.items() if k != "_id"}), flatten(expected)
    found = {}
    for field in sorted(set(a) | set(b)):
        mine, theirs = a.get(field, MISSING), b.get(field, MISSING)
        if mine == theirs:
            continue
        if theirs is MISSING:
            found[field] = "added"
        elif mine is MISSING:
            found[field] = "removed"
        elif field == "event.original" and orjson.loads(mine) == orjson.loads(theirs):
            found[field] = "same JSON"
        else:
            found[field] = "changed"
    return found


def run_case(stream: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    name, preserve = CASES[stream]
    config = build_config({
        "expiry": {"policy": "duration", "ioc_expiration_duration": "5d"},
        "output": {"preserve_original_event": preserve},
        "plugins": {"entrypoints": False},
    })
    engine = Engine(config)
    ctx = engine.context(now=NOW, dry_run=True)
    lines = [line for line in (DATA / name).read_bytes().splitlines() if line.strip()]
    docs = engine.process(stream, [orjson.loads(line) for line in lines], ctx)
    expected = json.loads((DATA / f"{name}-expected.json").read_text(encoding="utf-8"))["expected"]
    assert len(docs) == len(lines) == len(expected)
    return docs, expected


@pytest.mark.parametrize("stream", list(CASES))
def test_documents_match_the_reference_except_listed_deviations(stream: str) -> None:
    allowed = allowed_differences()
    docs, expected = run_case(stream)
    unlisted = []
    for index, (ours, theirs) in enumerate(zip(docs, expected, strict=True)):
        assert ours["event"]["kind"] == "enrichment", ours.get("error")
        for field, kind in differences(ours, theirs).items():
            if allowed.get((stream, field)) != kind:
                unlisted.append(f"{stream} doc {index}: {field} {kind}: ours={flatten(ours).get(field, MISSING)!r:.100} "
                                f"reference={flatten(theirs).get(field, MISSING)!r:.100}")
    assert not unlisted, "differences not listed in docs/deviations.md:\n" + "\n".join(unlisted)


def test_every_listed_deviation_still_occurs() -> None:
    """A row that no longer matches anything is stale documentation."""
    seen = set()
    for stream in CASES:
        docs, expected = run_case(stream)
        for ours, theirs in zip(docs, expected, strict=True):
            seen.update((stream, field) for field in differences(ours, theirs))
    assert set(allowed_differences()) - seen == set()


def test_the_reference_fields_we_key_on_are_compared() -> None:
    # guards against a vacuous comparison: the documents carry the typed fields
    docs, _ = run_case("threat_attributes")
    by_type = {d["misp"]["attribute"]["type"]: d for d in docs}
    assert by_type["filename|md5"]["threat"]["indicator"]["file"]["hash"]["md5"] == "1f36209c1763d31af06a66f866dbb7b6"
    assert by_type["AS"]["threat"]["indicator"]["as"]["number"] == 48031
    assert all(d["misp"]["attribute"]["decayed"] is True for d in docs)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is not checked out beside the repository")
def test_repository_copies_equal_the_shared_conformance_files() -> None:
    for path in DATA.iterdir():
        if path.suffix in (".log", ".json", ".yml"):
            assert path.read_bytes() == (SHARED / path.name).read_bytes(), path.name


def test_deviation_table_is_well_formed() -> None:
    rows = allowed_differences()
    assert rows, "no rows read from docs/deviations.md"
    assert set(rows.values()) <= {"added", "changed", "same JSON", "removed"}
    assert all(stream in CASES and re.fullmatch(r"[@\w.]+", field) for stream, field in rows)
