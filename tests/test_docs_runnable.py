"""Every shell block in README.md and docs/ marked runnable works as written.

The marker is an HTML comment on the line before a ```bash block:
``<!-- runnable -->``, or ``<!-- runnable: env VAR ... -->`` when the block
starts by exporting values only the reader has (their MISP's URL and key):
the test supplies those variables, pointing at a MISP simulator, and skips
the block's own ``export VAR=...`` lines for them. Each block runs under
``bash -euo pipefail`` in an empty temporary folder with the installed
``misp-ti`` first on the PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from misp_ti.testing.clock import ManualClock
from misp_ti.testing.fixtures import MispServerFactory
from misp_ti.timeutil import utcnow

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"^<!-- runnable(?::\s*env\s+(?P<env>[A-Z0-9_ ]+?))?\s*-->\n```bash\n(?P<body>.*?)^```$", re.M | re.S)


def runnable_blocks() -> list[tuple[str, int, tuple[str, ...], str]]:
    """``(file, line, variables the test supplies, script)`` of each marked block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in MARKED.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            supplied = tuple((match.group("env") or "").split())
            found.append((str(path.relative_to(ROOT)), line, supplied, match.group("body")))
    return found


BLOCKS = runnable_blocks()


def test_the_readme_quickstart_and_the_misp_walkthrough_are_marked() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    marked_at = [line for file, line, _, _ in BLOCKS if file == "README.md"]
    for heading in ("## Quickstart", "## Using it against your MISP"):
        start = readme.index(heading)
        end = readme.find("\n## ", start + 1)
        first, last = readme.count("\n", 0, start) + 1, readme.count("\n", 0, end) + 1
        assert any(first < line < last for line in marked_at), f"no runnable block under {heading!r}"


def without_supplied_exports(script: str, supplied: tuple[str, ...]) -> str:
    kept = [line for line in script.splitlines() if not any(line.startswith(f"export {name}=") for name in supplied)]
    return "\n".join(kept) + "\n"


@pytest.mark.parametrize(("file", "line", "supplied", "script"), BLOCKS, ids=[f"{f}:{n}" for f, n, _, _ in BLOCKS])
def test_a_runnable_block_works_as_written(
    file: str, line: int, supplied: tuple[str, ...], script: str, misp_server: MispServerFactory, tmp_path: Path
) -> None:
    # a MISP whose newest data is from now: the walkthrough's window ends at the real clock
    now = utcnow() - timedelta(minutes=1)
    sim = misp_server(misp_server.dataset.shift_to(now), clock=ManualClock(now))
    known = {"MISP_TI_MISP__URL": sim.url, "MISP_TI_MISP__API_KEY": misp_server.api_key}
    unknown = [name for name in supplied if name not in known]
    assert not unknown, f"{file}:{line} asks for variables the test cannot supply: {unknown}"
    for name in supplied:
        assert re.search(rf"^export {name}=", script, re.M), f"{file}:{line}: the block does not export {name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISP_TI_", "PYTEST"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({name: known[name] for name in supplied})
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", without_supplied_exports(script, supplied)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"{file}:{line} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
    if supplied:  # a block pointed at "your MISP" read it
        assert any(r.path.endswith("/restSearch") for r in sim.requests)
        assert not re.search(r"\b0 records\b", done.stdout), done.stdout
