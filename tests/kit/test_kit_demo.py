"""``misp-ti demo``: its summary is checked against counts computed here from
the shipped sample data (attribute timestamps, last_seen, the 90-day rule and
MISP's decay vote), not read back from the store it filled."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from click.testing import CliRunner

from misp_ti.cli import cli
from misp_ti.simulator import Dataset, MispSimulator
from misp_ti.timeutil import parse_iso

#: MISP types -> ECS indicator type, for the rows checked below (ti_misp's mapping).
INDICATOR_TYPES = {
    "domain-name": {"domain", "hostname", "domain|ip"},
    "ipv4-addr": {"ip-dst", "ip-src", "ip-dst|port", "ip-src|port"},
    "url": {"url", "link", "uri"},
}


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    # the CLI logs to the stream CliRunner lends it; do not keep that stream past the test
    yield
    logger = logging.getLogger("misp_ti")
    for handler in list(logger.handlers):
        if getattr(handler, "_misp_ti", False):
            logger.removeHandler(handler)


def expected_counts(now):
    """Active/expired per MISP type for the sample shifted to ``now``, by the documented rules."""
    dataset = Dataset.sample().shift_to(now)
    scorer = MispSimulator(
        dataset, clock=lambda: now
    )  # never started: only its decay models are used
    active, expired = Counter(), Counter()
    for attribute in dataset.attributes(include_event_tags=True):
        reference = parse_iso("1970-01-01T00:00:00Z") + timedelta(
            seconds=int(attribute["timestamp"])
        )
        if attribute.get("last_seen"):
            reference = max(reference, parse_iso(attribute["last_seen"]))
        votes = [s["decayed"] for s in scorer.decay_score(attribute, now)]
        vote_decayed = bool(votes) and 2 * sum(votes) >= len(votes)
        alive = (
            not vote_decayed and not attribute["deleted"] and reference + timedelta(days=90) > now
        )
        (active if alive else expired)[attribute["type"]] += 1
    return dataset, active, expired


def parse_summary(text):
    now = parse_iso(re.search(r"newest is from (\S+)\)", text).group(1))
    totals = re.search(r"IOCs in the latest view: (\d+)  \(active (\d+), expired (\d+)\)", text)
    rows = {
        m.group(1).strip(): tuple(map(int, m.group(2, 3, 4)))
        for m in re.finditer(r"^  (\S[\w() -]*?)\s+(\d+)\s+(\d+)\s+(\d+)$", text, re.M)
    }
    commands = re.findall(r"^  (misp-ti lookup .+?)    # (\S+), (active|expired)$", text, re.M)
    return now, tuple(map(int, totals.groups())), rows, commands


def test_demo_summary_matches_the_sample_data(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", "--dir", str(tmp_path / "demo")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    now, (latest, active, expired), rows, commands = parse_summary(result.stdout)

    dataset, want_active, want_expired = expected_counts(now)
    assert (
        f"{len(dataset)} attributes from {len(dataset.events())} real MISP events" in result.stdout
    )
    assert latest == len(dataset) == sum(want_active.values()) + sum(want_expired.values())
    assert (active, expired) == (sum(want_active.values()), sum(want_expired.values()))
    assert 0 < active < expired  # the sample holds both, the demo shows both
    for indicator_type, misp_types in INDICATOR_TYPES.items():
        a = sum(want_active[t] for t in misp_types)
        e = sum(want_expired[t] for t in misp_types)
        assert rows[indicator_type] == (a, e, a + e), indicator_type
    assert sum(r[2] for r in rows.values()) == latest

    # every suggested lookup answers as the summary says
    assert any(verdict == "active" for _, _, verdict in commands)
    assert any(verdict == "expired" for _, _, verdict in commands)
    for command, _, verdict in commands:
        args = shlex.split(command)[1:]
        answer = runner.invoke(cli, args)
        assert answer.exit_code == (0 if verdict == "active" else 1), (command, answer.output)


def test_demo_refuses_a_directory_with_a_store(tmp_path):
    (tmp_path / "misp-ti.db").write_bytes(b"")
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "already holds a demo store" in result.stderr


def test_readme_first_command_works_in_a_fresh_temp_dir(tmp_path):
    """``misp-ti demo`` as installed, with no argument and an environment that
    would otherwise change the config: the demo ignores it and stays on loopback."""
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "MISP_TI_MISP__URL": "https://unreachable.invalid",
        "MISP_TI_EXPIRY__POLICY": "refetch",
        "NO_COLOR": "1",
    }
    script = os.path.join(os.path.dirname(sys.executable), "misp-ti")
    done = subprocess.run([script, "demo"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    store = re.search(r"Embedded store: (\S+)", done.stdout).group(1)
    assert store.startswith(str(tmp_path)) and os.path.exists(store)
    assert "page of" in done.stderr  # progress, one line per page when stderr is not a terminal
    _, (latest, active, expired), _, _ = parse_summary(done.stdout)
    assert latest == len(Dataset.sample()) and active + expired == latest
