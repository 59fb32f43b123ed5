"""Old module paths (``misp_ti/_moved.py``) import the module under its new name, with a warning."""

from __future__ import annotations

import subprocess
import sys

import pytest

from misp_ti._moved import MOVED


@pytest.mark.parametrize("old", ["misp_ti.store", "misp_ti.decay", "misp_ti.misp_client"])
def test_an_old_path_is_the_new_module_and_says_where_it_went(old: str) -> None:
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED[old]!r})\n"
        "print(old is new, [str(w.message) for w in caught if w.category is DeprecationWarning])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == f"True ['{old} moved to {MOVED[old]}; import it from there']"


def test_the_package_imports_without_importlib_abc() -> None:
    # importlib.abc drags importlib.resources, tempfile and shutil into every start-up
    done = subprocess.run(
        [sys.executable, "-c", "import sys, misp_ti.cli; print('importlib.abc' in sys.modules)"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert done.stdout.strip() == "False"
