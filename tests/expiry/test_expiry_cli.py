"""``misp-ti transform --now``: the configured expiry policy, reproducibly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from misp_ti.cli import cli
from misp_ti.misp import decay
from misp_ti.timeutil import from_epoch, iso, parse_iso

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TS = int((NOW - timedelta(days=2)).timestamp())
MODELS = [{"DecayingModel": {"id": "1", "name": "NIDS", "formula": "Polynomial",
                             "parameters": {"lifetime": 120, "decay_speed": 2, "threshold": 30, "default_base_score": 80}}}]


def record(uuid: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": "1", "event_id": "1", "uuid": uuid, "type": "ip-dst", "category": "Network activity",
        "value": "198.51.100.7", "to_ids": True, "deleted": False, "timestamp": str(TS),
        "Event": {"id": "1", "uuid": "e-1", "info": "test", "org_id": "1", "orgc_id": "1"},
    }
    base.update(fields)
    return base


def transform(tmp_path: Path, toml: str, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    config = tmp_path / "misp-ti.toml"
    config.write_text(toml + '\n[plugins]\nentrypoints = false\n')
    stdin = "".join(json.dumps(r) + "\n" for r in records)
    result = CliRunner().invoke(cli, ["--quiet", "--config", str(config), "transform", "--now", iso(NOW)], input=stdin)
    assert result.exit_code == 0, result.output
    docs = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {d["misp"]["attribute"]["uuid"]: d["misp"]["attribute"] for d in docs}


def test_duration_with_per_type_overrides(tmp_path: Path) -> None:
    out = transform(tmp_path, '[expiry]\npolicy = "duration"\nioc_expiration_duration = "5d"\n[expiry.by_type]\ndomain = "1d"\n',
                    [record("a"), record("b", type="domain", value="x.example.org"), record("c", deleted=True)])
    assert out["a"]["decayed"] is False and parse_iso(out["a"]["decayed_at"]) == from_epoch(TS) + timedelta(days=5)
    assert out["b"]["decayed"] is True and parse_iso(out["b"]["decayed_at"]) == from_epoch(TS) + timedelta(days=1)
    assert out["c"]["decayed"] is True and parse_iso(out["c"]["decayed_at"]) == NOW


def test_refetch(tmp_path: Path) -> None:
    out = transform(tmp_path, '[expiry]\npolicy = "refetch"\nrefetch_interval = "12h"\nrefetch_grace = "0s"\n', [record("a")])
    assert out["a"]["decayed"] is False and parse_iso(out["a"]["decayed_at"]) == NOW + timedelta(hours=12)


def test_decay_model_from_a_models_file_is_reproducible(tmp_path: Path) -> None:
    models = tmp_path / "models.json"
    models.write_text(json.dumps(MODELS))
    elapsed = NOW.timestamp() - TS
    live = {"score": decay.polynomial_score(80, elapsed, 120, 2), "base_score": 80, "decayed": False,
            "DecayingModel": {"id": "1", "name": "NIDS"}}
    voted = {**live, "score": 10, "decayed": True}
    toml = f'[expiry]\npolicy = "decay-model"\ndecay_models_path = "{models}"\n'
    out = transform(tmp_path, toml, [record("a", decay_score=[live]), record("b", decay_score=[voted])])
    expected = from_epoch(TS + decay.seconds_to_decay(80, 30, 120, 2))
    assert out["a"]["decayed"] is False
    assert abs(parse_iso(out["a"]["decayed_at"]) - expected) < timedelta(milliseconds=2)
    assert out["b"]["decayed"] is True and parse_iso(out["b"]["decayed_at"]) == NOW - timedelta(minutes=2)
    again = transform(tmp_path, toml, [record("a", decay_score=[live])])
    assert again["a"] == out["a"]


def test_decay_model_without_models_file_falls_back_offline(tmp_path: Path) -> None:
    # transform never calls MISP (misp.url points nowhere here): duration rule, and a warning
    live = {"score": 79.0, "base_score": 80, "decayed": False, "DecayingModel": {"id": "1", "name": "NIDS"}}
    out = transform(tmp_path, '[misp]\nurl = "https://misp.invalid"\n[expiry]\npolicy = "decay-model"\nioc_expiration_duration = "3d"\n',
                    [record("a", decay_score=[live])])
    assert parse_iso(out["a"]["decayed_at"]) == from_epoch(TS) + timedelta(days=3)
