"""`misp-ti demo` is the README's first command, run after a plain install
(no `[testing]` extra): it must work without pytest, hypothesis or vcrpy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BLOCKED = ("pytest", "_pytest", "hypothesis", "vcr", "testcontainers")

RUNNER = f"""
import sys

class HideTestTools:
    # behave as if the [testing] extra were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, HideTestTools())
for name in list(sys.modules):
    if name.split(".")[0] in {BLOCKED!r}:
        del sys.modules[name]
from misp_ti.cli import main
sys.argv = ["misp-ti", "--quiet", "demo", "--dir", sys.argv[1]]
main()
"""


def test_demo_runs_without_the_testing_extra(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IOCs in the latest view: 1708" in done.stdout
    assert (tmp_path / "demo" / "misp-ti.db").exists()


def test_no_runtime_module_imports_the_test_kit() -> None:
    """The runtime (CLI, demo, simulator, sinks) never imports misp_ti.testing:
    the kit is for tests; the simulator is a runtime feature in misp_ti.simulator."""
    src = Path(__file__).resolve().parent.parent / "src" / "misp_ti"
    importing = re.compile(r"^\s*(from misp_ti\.testing\b|import misp_ti\.testing\b|from misp_ti import testing\b)", re.M)
    offenders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path.relative_to(src).parts[0] != "testing" and importing.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
