"""The example third-party plugin (examples/misp-ti-example-plugin) installs
with pip, is found through its ``misp_ti`` entry points, is selected by
config, and passes its own test suite, which uses the kit."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from misp_ti.testing.plugins import install_path_on_sys_path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "misp-ti-example-plugin"
TS = 1700000000  # the attributes' timestamp; shift_to_now=False keeps it

EVENT = {
    "Event": {
        "uuid": "7b0e1b2c-0000-4000-8000-000000000001",
        "info": "tlp example",
        "date": "2023-11-14",
        "timestamp": str(TS),
        "Orgc": {"name": "KIT"},
        "Attribute": [
            {
                "uuid": f"7b0e1b2c-0000-4000-8000-0000000000{n}",
                "type": "domain",
                "category": "Network activity",
                "value": f"{label}.example.org",
                "to_ids": True,
                "timestamp": str(TS),
                "Tag": [{"name": f"tlp:{label}"}] if label != "none" else [],
            }
            for n, label in (("11", "red"), ("12", "amber"), ("13", "none"))
        ],
    }
}


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """``pip install --target`` the example into a folder put on ``sys.path``
    (not into this interpreter's site-packages, so nothing leaks)."""
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("building the example needs hatchling (in misp-ti[dev]); pip install hatchling")
    target = tmp_path_factory.mktemp("example-site")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"pip install of the example failed:\n{result.stderr}"
    install_path_on_sys_path(target)
    yield target
    sys.path.remove(str(target))
    for name in [
        m for m in sys.modules if m == "misp_ti_example" or m.startswith("misp_ti_example.")
    ]:
        del sys.modules[name]


def test_entry_points_are_discovered(installed_example):
    from misp_ti.manager import (
        POLICIES_ATTR,
        SINKS_ATTR,
        declared_names,
        make_plugin_manager,
        plugin_inventory,
    )

    pm = make_plugin_manager(load_entrypoints=True)
    assert declared_names(pm, POLICIES_ATTR)["tlp"] == "example_tlp_expiry"
    assert declared_names(pm, SINKS_ATTR)["csv"] == "example_csv_sink"
    rows = {row["name"]: row for row in plugin_inventory(pm)}
    assert rows["example_tlp_expiry"]["hooks"] == ["compute_expiry"]
    assert rows["example_tlp_expiry"]["settings"] == ["plugin.tlp_expiry"]
    assert rows["example_csv_sink"]["hooks"] == ["emit", "provision"]
    assert make_plugin_manager(load_entrypoints=False).get_plugin("example_tlp_expiry") is None
    blocked = make_plugin_manager(load_entrypoints=True, blocked=["example_csv_sink"])
    assert blocked.get_plugin("example_csv_sink") is None


@pytest.mark.misp_data(EVENT, shift_to_now=False, now=datetime.fromtimestamp(TS + 86400, UTC))
def test_selected_policy_and_sink_do_the_work(installed_example, misp_make_engine, misp_clock, tmp_path):
    from misp_ti.sinks.sqlite import EmbeddedStore

    out = tmp_path / "iocs.csv"
    engine = misp_make_engine(
        load_entrypoints=True,
        overrides={
            "expiry": {"policy": "tlp"},
            "output": {"sinks": ["sqlite", "csv"]},
            "plugin": {"csv": {"path": str(out)}},
        },
    )
    [result] = engine.run_once()
    assert result.delivered == {"sqlite": 3, "csv": 3}
    rows = {r["value"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert set(rows) == {"red.example.org", "amber.example.org", "none.example.org"}
    store = EmbeddedStore(engine.config.output.sqlite.path)
    try:
        expected = {
            "red": timedelta(days=7),
            "amber": timedelta(days=30),
            "none": timedelta(days=90),
        }
        for label, validity in expected.items():
            [doc] = store.lookup(f"{label}.example.org", now=misp_clock.now())
            decayed_at = doc["misp"]["attribute"]["decayed_at"]
            assert decayed_at == (datetime.fromtimestamp(TS, UTC) + validity).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            ), label
            assert rows[f"{label}.example.org"]["decayed_at"] == decayed_at
        # eight days on, the red IOC has expired and the others have not
        later = misp_clock.advance(timedelta(days=7))
        assert [label for label in expected if store.lookup(f"{label}.example.org", now=later)] == [
            "amber",
            "none",
        ]
    finally:
        store.close()


def test_the_examples_own_suite_passes_with_the_kit(installed_example):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(installed_example), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
        capture_output=True,
        text=True,
        cwd=EXAMPLE,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
