"""Every module of the package imports on its own, whichever is imported first
(a plugin or a test may start with any of them: a circular import between two
modules breaks only the one imported first)."""

from __future__ import annotations

import subprocess
import sys

RUNNER = """
import importlib, pkgutil, sys, warnings
import misp_ti

warnings.simplefilter("ignore", DeprecationWarning)  # the old module paths warn by design
names = [m.name for m in pkgutil.walk_packages(misp_ti.__path__, "misp_ti.") if not m.name.endswith("__main__")]
failed = []
for name in names:
    for loaded in [n for n in sys.modules if n == "misp_ti" or n.startswith("misp_ti.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names))
print("\\n".join(failed))
"""


def test_each_module_imports_first() -> None:
    done = subprocess.run([sys.executable, "-c", RUNNER], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    count, *failed = done.stdout.splitlines()
    assert int(count) > 100  # the walk found the package
    assert [line for line in failed if line] == []
