"""The deployment files in contrib/: the systemd unit and the container recipe.

The unit is checked by systemd's own parser (``systemd-analyze verify``,
which also checks that ``ExecStart`` is executable) and its sandbox scored by
``systemd-analyze security --offline``; both skip, saying so, where systemd is
not installed. Whatever systemd says, the settings both files hand to
misp-ti through the environment must be real config keys that work: a real
``misp-ti once`` against the simulator runs with exactly that environment
(paths moved into a temporary directory) and must fill the store the unit
names with the key read from the credential file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from misp_ti.sinks.sqlite import EmbeddedStore

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "misp-ti.service"
CONTAINERFILE = ROOT / "contrib" / "container" / "Containerfile"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def _misp_ti_executable() -> str:
    found = Path(sys.executable).with_name("misp-ti")
    if not found.exists():
        pytest.skip(f"no misp-ti console script next to {sys.executable} (not installed in this environment)")
    return str(found)


def _unit_for_this_machine(tmp_path: Path) -> Path:
    text = UNIT.read_text().replace("/opt/misp-ti/bin/misp-ti", _misp_ti_executable())
    unit = tmp_path / "misp-ti.service"
    unit.write_text(text)
    return unit


@needs_systemd
def test_systemd_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    unit = _unit_for_this_machine(tmp_path)
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    # verify exits 0 on settings it ignores ("Failed to parse ..., ignoring"): any line about our unit is a defect
    about_unit = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert about_unit == []


@needs_systemd
def test_the_unit_s_sandbox_scores_ok(tmp_path: Path) -> None:
    unit = _unit_for_this_machine(tmp_path)
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", str(unit)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    if done.returncode != 0 and "offline" in done.stderr:
        pytest.skip(f"this systemd cannot score a unit offline: {done.stderr.strip()}")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    # systemd rates 0-10: below 2 is "OK"; a stock service scores 9.6 ("UNSAFE")
    assert float(match.group(1)) < 2.0, done.stdout


def _unit_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment="):].partition("=")
            env[key] = value
    return env


def _containerfile_environment() -> dict[str, str]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    block = re.search(r"^ENV (.+)$", text, re.M)
    assert block, "the Containerfile sets no ENV"
    return dict(pair.split("=", 1) for pair in block.group(1).split())


@pytest.mark.parametrize("source", ["systemd", "container"])
def test_the_deployment_environment_configures_a_working_once(source: str, tmp_path: Path, misp_server) -> None:
    simulator = misp_server()
    state_dir = tmp_path / "var-lib-misp-ti"
    state_dir.mkdir(mode=0o700)
    secrets = tmp_path / "credentials"
    secrets.mkdir(mode=0o700)
    (secrets / "misp-api-key").write_text(misp_server.api_key + "\n")
    if source == "systemd":
        declared = {k: v.replace("%d", str(secrets)) for k, v in _unit_environment().items()}
    else:
        declared = {k: v.replace("/run/secrets", str(secrets)) for k, v in _containerfile_environment().items()}
    declared = {k: v.replace("/var/lib/misp-ti", str(state_dir)) for k, v in declared.items()}
    assert {"MISP_TI_STATE__PATH", "MISP_TI_OUTPUT__SQLITE__PATH", "MISP_TI_MISP__API_KEY_FILE"} <= set(declared)

    config = tmp_path / "misp-ti.toml"  # what an operator writes: no secret in it
    config.write_text(
        f'[misp]\nurl = "{simulator.url}"\n'
        '[streams.threat_attributes]\ninitial_interval = "5000d"\n'
        "[plugins]\nentrypoints = false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISP_TI_")}
    env.update({k: v for k, v in declared.items() if k.startswith("MISP_TI_")})
    done = subprocess.run(
        [sys.executable, "-m", "misp_ti", "--config", str(config), "once"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert misp_server.api_key not in done.stdout + done.stderr
    assert sorted(p.name for p in state_dir.iterdir() if p.suffix == ".db") == ["misp-ti.db", "state.db"]
    store = EmbeddedStore(state_dir / "misp-ti.db")
    try:
        stored = len(store.latest_snapshot())
    finally:
        store.close()
    assert stored == len(list(misp_server.dataset.attributes()))
