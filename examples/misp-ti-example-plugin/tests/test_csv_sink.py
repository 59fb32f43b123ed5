"""The ``csv`` sink against the simulated MISP (misp-ti's ``misp_make_engine`` fixture)."""

import csv

import pytest
from misp_ti_example.csv_sink import HEADER

from misp_ti.errors import ConfigError


def test_every_document_gets_a_row(misp_make_engine, example_plugins, misp_dataset, tmp_path):
    out = tmp_path / "iocs.csv"
    engine = misp_make_engine(
        *example_plugins,
        overrides={"output": {"sinks": ["sqlite", "csv"]}, "plugin": {"csv": {"path": str(out)}}},
    )
    [result] = engine.run_once()
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert tuple(rows[0]) == HEADER
    assert len(rows) - 1 == result.delivered["csv"] == len(misp_dataset)
    assert {r[0] for r in rows[1:]} == {a["uuid"] for a in misp_dataset.attributes()}


def test_a_missing_path_is_a_config_error(misp_make_engine, example_plugins):
    engine = misp_make_engine(*example_plugins, overrides={"output": {"sinks": ["csv"]}})
    with pytest.raises(ConfigError, match="plugin.csv.path: required"):
        engine.provision()


def test_the_old_place_of_the_settings_still_works(misp_make_engine, example_plugins, tmp_path):
    out = tmp_path / "old.csv"
    with pytest.warns(DeprecationWarning, match=r"\[output.csv\] is deprecated.*\[plugin.csv\]"):
        engine = misp_make_engine(
            *example_plugins, overrides={"output": {"sinks": ["csv"], "csv": {"path": str(out)}}}
        )
    engine.provision()
    assert out.exists()


def test_bad_settings_fail_at_start_naming_the_key(misp_make_engine, example_plugins):
    with pytest.raises(ConfigError, match=r"^plugin.csv.colour: unknown key; allowed keys here: path$"):
        misp_make_engine(*example_plugins, overrides={"plugin": {"csv": {"colour": "red"}}})
