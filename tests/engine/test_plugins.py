"""The plugin manager: built-ins, entry points, --plugin, blocking, hook checks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from helpers.fakeplugins import ListSource, make_attributes
from misp_ti.config import build_config
from misp_ti.engine import Engine
from misp_ti.errors import PluginError
from misp_ti.hookspecs import HOOK_NAMES
from misp_ti.manager import describe, make_plugin_manager
from misp_ti.sinks.sqlite import EmbeddedStore

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

THROWAWAY = '''
"""A third-party plugin: its own transform and its own expiry decision."""
from datetime import timedelta
import misp_ti
from misp_ti.model import Expiry

MISP_TI_EXPIRY_POLICIES = ("one-hour",)

@misp_ti.hookimpl
def transform_doc(stream, record, ctx):
    return {
        "_id": "tp-" + record["uuid"],
        "event": {"kind": "enrichment", "dataset": "ti_misp." + stream},
        "threat": {"indicator": {"type": "ipv4-addr", "ip": record["value"]}},
        "misp": {"attribute": {"uuid": record["uuid"], "value": record["value"]}},
        "labels": {"transformed_by": "throwaway"},
    }

@misp_ti.hookimpl(tryfirst=True)
def compute_expiry(stream, record, doc, ctx):
    return Expiry(False, ctx.now + timedelta(hours=1), "throwaway")
'''


def install_entry_point_plugin(root: Path, module: str, source: str, group: str = "misp_ti") -> Path:
    """Make ``module`` an installed distribution with a ``group`` entry point,
    the way pip would leave it: a module plus a ``.dist-info`` folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module.replace('_', '-')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{module} = {module}\n")
    return root


@pytest.fixture
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    site = install_entry_point_plugin(tmp_path / "site", "throwaway_plugin", THROWAWAY)
    monkeypatch.syspath_prepend(str(site))
    yield "throwaway_plugin"
    sys.modules.pop("throwaway_plugin", None)


def test_built_ins_implement_hooks_through_the_same_manager() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    rows = {row["hook"]: row for row in describe(pm)}
    assert list(rows) == list(HOOK_NAMES)
    assert rows["fetch"]["firstresult"] and not rows["emit"]["firstresult"]
    assert {"sqlite_sink", "ndjson_sink"} <= set(rows["emit"]["plugins"])
    assert "expiry" in rows["compute_expiry"]["plugins"]


def test_a_built_in_can_be_blocked_by_name() -> None:
    pm = make_plugin_manager(load_entrypoints=False, blocked=["ndjson_sink"])
    emitters = {row["hook"]: row["plugins"] for row in describe(pm)}["emit"]
    assert "ndjson_sink" not in emitters and "sqlite_sink" in emitters


def test_entry_point_plugin_overrides_transform_and_expiry(tmp_path: Path, throwaway: str) -> None:
    pm = make_plugin_manager(load_entrypoints=True)
    rows = {row["hook"]: row["plugins"] for row in describe(pm)}
    assert rows["transform_doc"][0] == throwaway  # asked before the built-ins
    assert rows["compute_expiry"][0] == throwaway
    config = build_config({"output": {"sqlite": {"path": str(tmp_path / "s.db")}}, "expiry": {"policy": "one-hour"}})
    source = ListSource(make_attributes(3, start_ts=int(NOW.timestamp())), page_size=10)
    with Engine(config, pm=pm, clock=lambda: NOW) as engine:
        engine.pm.register(source)
        engine.run_once()
    docs = list(EmbeddedStore(tmp_path / "s.db").active(now=NOW))
    assert [d["labels"]["transformed_by"] for d in docs] == ["throwaway"] * 3
    assert {d["misp"]["attribute"]["decayed_at"] for d in docs} == {"2026-11-01T13:00:00.000Z"}


def test_entry_points_can_be_switched_off(throwaway: str) -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    assert pm.get_plugin(throwaway) is None


def test_plugin_by_module_path_and_blocking_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "local_plugin.py").write_text(THROWAWAY)
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=["local_plugin"])
    assert pm.get_plugin("local_plugin") is not None
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=["local_plugin"], blocked=["local_plugin"])
    assert pm.get_plugin("local_plugin") is None
    sys.modules.pop("local_plugin", None)


def test_unknown_hook_name_fails_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "typo_plugin.py").write_text(
        "import misp_ti\n@misp_ti.hookimpl\ndef transfrom_doc(stream, record, ctx):\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="unknown hook.*transfrom_doc"):
        make_plugin_manager(load_entrypoints=False, extra_plugins=["typo_plugin"])
    sys.modules.pop("typo_plugin", None)


def test_unimportable_plugin_is_a_clear_error() -> None:
    with pytest.raises(PluginError, match="--plugin 'no_such_module_xyz' cannot be imported"):
        make_plugin_manager(load_entrypoints=False, extra_plugins=["no_such_module_xyz"])


def test_cli_plugins_lists_every_hook_and_its_plugins(tmp_path: Path) -> None:
    (tmp_path / "local_plugin.py").write_text(THROWAWAY)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "misp_ti", "--plugin", "local_plugin", "plugins"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    for hook in HOOK_NAMES:
        assert hook in lines
    assert "local_plugin" in lines["transform_doc"] and "local_plugin" in lines["compute_expiry"]
    assert "sqlite_sink" in lines["emit"]
    assert "expiry policies: one-hour" in done.stdout


def test_cli_block_option_removes_a_plugin() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "misp_ti", "--block", "ndjson_sink", "plugins", "--json"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    import json

    data = json.loads(done.stdout)
    assert "ndjson_sink" not in [p["name"] for p in data["plugins"]]
    assert "sqlite_sink" in [p["name"] for p in data["plugins"]]


# plugin settings: [plugin.<name>], validated by the model the plugin declares


class _Settings:
    """A plugin declaring ``[plugin.probe]`` (an object, registered like a module)."""

    def __init__(self, declared: object) -> None:
        self.MISP_TI_SETTINGS = declared


def _probe_model() -> type:
    from datetime import timedelta

    from pydantic import BaseModel, ConfigDict

    from misp_ti.config import Duration

    class Probe(BaseModel):
        model_config = ConfigDict(extra="forbid")
        wait: Duration = timedelta(seconds=5)
        name: str = "probe"

    return Probe


def _engine(tmp_path: Path, declaring: object, **data: object) -> Engine:
    config = build_config({"output": {"sqlite": {"path": str(tmp_path / "s.db")}}, "plugins": {"entrypoints": False}, **data})
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[declaring])
    return Engine(config, pm=pm)


def test_plugin_settings_are_validated_at_start_and_read_typed(tmp_path: Path) -> None:
    from datetime import timedelta

    from misp_ti.errors import ConfigError

    model = _probe_model()
    with _engine(tmp_path, _Settings({"probe": model}), plugin={"probe": {"wait": "2m"}}) as engine:
        settings = engine.config.plugin_settings("probe", model)
        assert (settings.wait, settings.name) == (timedelta(minutes=2), "probe")
        assert engine.config.plugin_settings("probe", model) is settings  # validated once
    with _engine(tmp_path, _Settings({"probe": model})) as engine:  # no table: the defaults
        assert engine.config.plugin_settings("probe", model).wait == timedelta(seconds=5)
    with pytest.raises(ConfigError, match=r"^plugin.probe.wait: bad value '2 min': expected a duration"):
        _engine(tmp_path, _Settings({"probe": model}), plugin={"probe": {"wait": "2 min"}})
    with pytest.raises(ConfigError, match=r"^plugin.probe.colour: unknown key; allowed keys here: name, wait$"):
        _engine(tmp_path, _Settings({"probe": model}), plugin={"probe": {"colour": 1}})


def test_a_bad_settings_declaration_is_a_plugin_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="MISP_TI_SETTINGS must map table names to pydantic models"):
        _engine(tmp_path, _Settings({"probe": dict}))
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[_Settings({"probe": _probe_model()})])
    pm.register(_Settings({"probe": _probe_model()}), name="second")
    from misp_ti.manager import declared_settings

    with pytest.raises(PluginError, match=r"another plugin already declares the settings \[plugin.probe\]"):
        declared_settings(pm)
