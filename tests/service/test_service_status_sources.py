"""``misp-ti status --json`` with several ``[misp.<name>]`` sources, in real processes."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.service import misp_ti, service_env
from misp_ti.testing.fixtures import MispServerFactory

STREAM = "threat_attributes"


def test_status_json_reports_each_source_stream_with_its_bound_misp_and_cursor(misp_server: MispServerFactory, tmp_path: Path) -> None:
    ours, partner = misp_server(), misp_server()
    env = service_env(ours.url, misp_server.api_key, tmp_path)
    del env["MISP_TI_MISP__URL"], env["MISP_TI_MISP__API_KEY"]
    for name, server in (("ours", ours), ("partner", partner)):
        env[f"MISP_TI_MISP__{name.upper()}__URL"] = server.url
        env[f"MISP_TI_MISP__{name.upper()}__API_KEY"] = misp_server.api_key

    before = misp_ti(["status", "--json"], env)
    assert before.returncode == 2 and json.loads(before.stdout)["health"] == "unusable"  # no state yet

    done = misp_ti(["once"], env)
    assert done.returncode == 0, done.stderr
    after = misp_ti(["status", "--json"], env)
    report = json.loads(after.stdout)
    assert after.returncode == 0, report
    assert report["health"] == "healthy" and report["reasons"] == []
    # named sources report as source/stream; nothing was read as the source `default`
    assert set(report["streams"]) == {f"ours/{STREAM}", f"partner/{STREAM}"}
    for name, server in (("ours", ours), ("partner", partner)):
        entry = report["streams"][f"{name}/{STREAM}"]
        assert entry["source"] == name
        assert entry["misp"] == server.url
        assert entry["cursor"] is not None and entry["in_progress"] is None
        assert entry["last_completed"] is not None and entry["last_failed"] is None
    # both serve the same sample: one latest row per uuid (the copy delivered last wins)
    store = report["embedded_store"]
    assert store["active"] + store["expired"] == sum(1 for _ in misp_server.dataset.attributes()), store
