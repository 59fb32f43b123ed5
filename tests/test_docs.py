"""The documentation names every hook, CLI command and config key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import misp_ti.hookspecs as hookspecs
from misp_ti.cli import cli
from misp_ti.config.reference import reference_rows, render_reference
from misp_ti.hookspecs import HOOK_NAMES

ROOT = Path(__file__).parents[1]


def all_docs() -> str:
    return (ROOT / "README.md").read_text() + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_docstring_and_a_docs_entry(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    assert spec.__doc__ and len(spec.__doc__) > 200, f"hookspec {hook} is undocumented"
    for word in ("Called", "firstresult", "returns"):
        assert word.lower() in spec.__doc__.lower() or word == "firstresult" and "fan-out" in spec.__doc__.lower()
    assert f"`{hook}`" in (ROOT / "docs" / "plugins.md").read_text()


def _commands(group, prefix=""):  # type: ignore[no-untyped-def]
    for name, command in group.commands.items():
        yield f"{prefix}{name}"
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")


@pytest.mark.parametrize("command", sorted(_commands(cli)))
def test_every_cli_command_is_in_the_readme(command: str) -> None:
    readme = (ROOT / "README.md").read_text()
    top, _, sub = command.partition(" ")
    assert re.search(rf"misp-ti {re.escape(top)}\b", readme), f"`misp-ti {top}` is missing from README.md"
    if sub:
        assert sub in readme, f"`misp-ti {command}` is missing from README.md"


def test_every_config_key_is_documented() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    assert reference == render_reference()
    for key, *_ in reference_rows():
        assert f"`{key}`" in reference
