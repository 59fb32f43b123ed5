"""How users type the command line: global options after the command, and
``once --now`` kept away from the cursors of wall-clock runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from misp_ti import hookimpl
from misp_ti.cli import GLOBAL_OPTIONS, cli
from misp_ti.state import StateStore
from misp_ti.testing.fixtures import MispServerFactory
from misp_ti.timeutil import iso


@hookimpl
def provision(ctx: object) -> list:
    return []  # makes this module a plugin `--plugin` can register


def write_config(tmp_path: Path, url: str, key: str, name: str = "misp-ti.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'[misp]\nurl = "{url}"\napi_key = "{key}"\nbackoff_initial = "0.01s"\nmax_retries = 1\n'
        '[streams.threat_attributes]\ninitial_interval = "3650d"\n'
        f'[output.sqlite]\npath = "{tmp_path / "store.db"}"\n[plugins]\nentrypoints = false\n'
    )
    path.chmod(0o600)
    return path


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def cursor(tmp_path: Path) -> dict | None:
    state = StateStore(tmp_path / "store.db")
    try:
        return state.get_cursor("threat_attributes")
    finally:
        state.close()


# global options after the command ------------------------------------------


def every_command(group: object = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in getattr(group, "commands", {}).items():
        found.append((*prefix, name))
        found.extend(every_command(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", every_command(), ids=" ".join)
def test_every_command_lists_the_global_options_in_its_help(path: tuple[str, ...]) -> None:
    code, out, _ = invoke([*path, "--help"])
    assert code == 0
    for decls, _settings in GLOBAL_OPTIONS:
        long = next(d for d in decls if d.startswith("--"))
        assert long in out, f"{' '.join(path)} --help does not list {long}"
    assert "--block" in out


def test_config_after_the_command_is_read(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    config = write_config(tmp_path, sim.url, misp_server.api_key)
    code, out, err = invoke(["once", "--config", str(config), "--json", "--quiet"])
    assert code == 0, err
    summary = orjson.loads(out.splitlines()[0])
    assert summary["stream"] == "threat_attributes" and summary["records"] == len(list(misp_server.dataset.attributes()))
    assert (tmp_path / "store.db").exists()


def test_each_global_option_after_the_command_means_the_same(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    config = write_config(tmp_path, sim.url, misp_server.api_key)
    # --config on the group and on the command name the same file
    before = invoke(["--config", str(config), "config", "show"])
    after = invoke(["config", "show", "--config", str(config)])
    assert before == after and orjson.loads(after[1])["misp"]["url"] == sim.url
    # -c, the short form, too
    assert invoke(["config", "show", "-c", str(config)]) == before
    # --block: the embedded store's plugin is gone, so its sink is unknown
    code, _, err = invoke(["config", "check", "--config", str(config), "--block", "sqlite_sink"])
    assert code == 2 and "unknown sink 'sqlite'" in err
    # --plugin: a module registered from after the command shows in `plugins`
    code, out, _ = invoke(["plugins", "--config", str(config), "--plugin", __name__, "--json"])
    assert code == 0
    assert __name__ in {row["name"] for row in orjson.loads(out)["plugins"]}
    # --verbose and --log-format json: debug lines, as JSON objects
    code, _, err = invoke(["once", "--config", str(config), "--verbose", "--log-format", "json", "--dry-run"])
    assert code == 0, err
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line.get("log.level") == "debug" for line in lines), err[:2000]
    # --quiet: no info lines
    code, _, err = invoke(["once", "--config", str(config), "--quiet", "--dry-run"])
    assert code == 0 and "reading" not in err and "INFO" not in err


# once --now and the persisted cursor ------------------------------------------


def test_once_now_is_refused_on_the_state_of_wall_clock_runs(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    config = write_config(tmp_path, sim.url, misp_server.api_key)
    code, _, err = invoke(["--quiet", "--config", str(config), "once"])
    assert code == 0, err
    persisted = cursor(tmp_path)
    assert persisted is not None
    for when in ("2020-01-01T00:00:00Z", "2040-01-01T00:00:00Z"):  # behind and ahead
        code, _, err = invoke(["--quiet", "--config", str(config), "once", "--now", when])
        assert code == 2 and "--now" in err and str(tmp_path / "store.db") in err
        assert cursor(tmp_path) == persisted
    # a dry run writes no state and is always allowed
    code, _, err = invoke(["--quiet", "--config", str(config), "once", "--dry-run", "--now", "2040-01-01T00:00:00Z"])
    assert code == 0, err
    assert cursor(tmp_path) == persisted


def test_once_now_runs_on_a_state_of_its_own_and_wall_clock_runs_refuse_it(
    misp_server: MispServerFactory, tmp_path: Path
) -> None:
    sim = misp_server()
    config = write_config(tmp_path, sim.url, misp_server.api_key)
    now = iso(misp_server.clock.now())
    first = invoke(["--quiet", "--config", str(config), "once", "--json", "--now", now])
    assert first[0] == 0, first[2]
    again = invoke(["--quiet", "--config", str(config), "once", "--json", "--now", now])
    assert again[0] == 0, again[2]
    fixed = cursor(tmp_path)
    code, _, err = invoke(["--quiet", "--config", str(config), "once"])
    assert code == 2 and "once --now" in err
    assert cursor(tmp_path) == fixed


# what once prints ------------------------------------------------------------------


def test_logs_speak_times_and_the_summary_words(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    config = write_config(tmp_path, sim.url, misp_server.api_key)
    now = misp_server.clock.now()
    code, out, err = invoke(["once", "--config", str(config), "--now", iso(now)])
    assert code == 0, err
    end = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    start = (now - timedelta(days=3650)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"threat_attributes: reading {start} .. {end}" in err
    records = len(list(misp_server.dataset.attributes()))
    assert f"delivered: sqlite {records}, dead-lettered: sqlite 0," in out
    assert "{" not in out


def test_a_plugin_named_twice_is_listed_once(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[plugins]\nentrypoints = false\nload = ["{__name__}"]\n')
    code, out, err = invoke(["plugins", "--config", str(path), "--plugin", __name__, "--plugin", "misp_ti.default_plugins.sqlite_sink", "--json"])
    assert code == 0, err
    names = [row["name"] for row in orjson.loads(out)["plugins"]]
    assert names.count(__name__) == 1 and names.count("sqlite_sink") == 1
    assert "misp_ti.default_plugins.sqlite_sink" not in names


def test_the_demo_says_how_to_type_misp_ti_when_it_is_not_on_the_path(tmp_path: Path) -> None:
    from misp_ti.simulator.demo import _path_hint

    script = tmp_path / ".venv" / "bin" / "misp-ti"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    hint = _path_hint(str(script), on_path="")  # nothing called misp-ti on the PATH
    assert hint is not None and str(script) in hint and f". {script.parent / 'activate'}" in hint
    other = tmp_path / "elsewhere" / "misp-ti"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    assert _path_hint(str(script), on_path=str(other)) is not None  # another misp-ti would answer
    assert _path_hint(str(script), on_path=str(script)) is None  # typing misp-ti runs this one
    assert _path_hint("/usr/lib/python3/site-packages/misp_ti/__main__.py", on_path="") is None


def test_a_plugin_that_cannot_be_imported_says_how_to_make_it_importable() -> None:
    code, _, err = invoke(["plugins", "--plugin", "src/no_such_plugin.py"])
    assert code == 2
    assert "give its import path" in err and "PYTHONPATH" in err
