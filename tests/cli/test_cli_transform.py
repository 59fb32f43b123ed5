"""``misp-ti transform``: stdin MISP JSON lines -> ECS NDJSON / _bulk lines."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from misp_ti.cli import cli
from misp_ti.cli.transform import EXIT_PIPELINE_ERRORS

DATA = Path(__file__).parents[1] / "data" / "conformance"
ATTRIBUTES = (DATA / "threat_attributes__test-misp-sample-ndjson.log").read_bytes()
EVENTS = (DATA / "threat__test-misp-long-ndjson.log").read_bytes()


def run(args: list[str], stdin: bytes, tmp_path: Path, config: str = "") -> tuple[int, list[dict], str]:
    path = tmp_path / "misp-ti.toml"
    path.write_text(config + '\n[plugins]\nentrypoints = false\n[output.sqlite]\npath = "' + str(tmp_path / "x.db") + '"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "transform", *args], input=stdin)
    lines = [orjson.loads(line) for line in result.stdout_bytes.splitlines()]
    return result.exit_code, lines, result.stderr


def test_docs_with_fixed_now_are_reproducible_and_expired_per_config(tmp_path: Path) -> None:
    config = '[expiry]\nioc_expiration_duration = "5d"\n[output]\npreserve_original_event = true\n'
    code, docs, err = run(["--now", "2024-06-01T00:00:00Z"], ATTRIBUTES, tmp_path, config)
    assert code == 0, err
    assert "14 records, 14 documents, 0 pipeline errors" in err
    assert len(docs) == 14
    assert docs[0]["event"]["ingested"] == "2024-06-01T00:00:00.000Z"
    assert docs[0]["misp"]["attribute"]["decayed_at"] == "2021-04-13T09:52:48.000Z"
    assert all(d["misp"]["attribute"]["decayed"] for d in docs)
    assert docs[0]["event"]["original"]
    again = run(["--now", "2024-06-01T00:00:00Z"], ATTRIBUTES, tmp_path, config)[1]
    assert again == docs
    # a cycle at another time is another expiry decision for the same attribute version
    other = run(["--now", "2021-04-09T00:00:00Z"], ATTRIBUTES, tmp_path, config)[1]
    assert other[0]["misp"]["attribute"]["decayed"] is False
    assert other[0]["misp"]["attribute"]["decayed_at"] == docs[0]["misp"]["attribute"]["decayed_at"]
    assert other[0]["_id"] != docs[0]["_id"]  # the engine folds the decision into the id
    assert run([], ATTRIBUTES, tmp_path)[1][0]["misp"]["attribute"]["decayed_at"] == "2021-07-07T09:52:48.000Z"  # 90d default


def test_bulk_format_for_the_threat_stream(tmp_path: Path) -> None:
    code, lines, _ = run(["--stream", "threat", "--format", "bulk", "--now", "2024-06-01T00:00:00Z"], EVENTS, tmp_path,
                         '[output.elasticsearch]\nnamespace = "prod"\n')
    assert code == 0
    assert len(lines) == 4
    actions, bodies = lines[0::2], lines[1::2]
    assert actions[0]["create"]["_index"] == "logs-ti_misp.threat-prod"
    assert actions[0]["create"]["_id"] != actions[1]["create"]["_id"]
    assert all("_id" not in body for body in bodies)
    assert bodies[1]["threat"]["indicator"]["file"]["hash"]["md5"] == "7392463caf95534d56460bc9f360adc1"
    assert bodies[0]["data_stream"]["namespace"] == "prod"


def test_bad_lines_become_counted_pipeline_errors(tmp_path: Path) -> None:
    stdin = b'{"type": "md5"}\nnot json\n\n\xff\xfe\n' + ATTRIBUTES.splitlines()[1] + b"\n"
    code, docs, err = run(["--now", "2024-06-01T00:00:00Z"], stdin, tmp_path)
    assert code == EXIT_PIPELINE_ERRORS
    assert "4 records, 4 documents, 3 pipeline errors" in err
    assert [d["event"]["kind"] for d in docs] == ["pipeline_error"] * 3 + ["enrichment"]
    assert docs[1]["event"]["original"] == "not json" and "not a JSON line" in docs[1]["error"]["message"]
    assert "uuid: missing" in docs[0]["error"]["message"]


def test_bad_now_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run(["--now", "tomorrow"], ATTRIBUTES, tmp_path)
    assert code == 2 and "ISO-8601" in err
