"""``misp-ti reset``: the only way a persisted cursor moves on purpose, and the
way a state bound to another MISP URL is taken over (issue 13)."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from misp_ti.cli import cli
from misp_ti.service.lock import StateLock
from misp_ti.simulator import Dataset
from misp_ti.state import StateStore
from misp_ti.testing.fixtures import MispServerFactory
from misp_ti.timeutil import epoch_text

STREAM = "threat_attributes"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def write_config(tmp_path: Path, url: str, key: str) -> str:
    path = tmp_path / "misp-ti.toml"
    path.write_text(
        f'[misp]\nurl = "{url}"\napi_key = "{key}"\nbackoff_initial = "0.01s"\nmax_retries = 1\n'
        '[streams.threat_attributes]\ninitial_interval = "3650d"\n'
        f'[output.sqlite]\npath = "{tmp_path / "store.db"}"\n[plugins]\nentrypoints = false\n'
    )
    path.chmod(0o600)
    return str(path)


def once(config: str) -> dict:
    code, out, err = invoke("once", "--config", config, "--json", "--quiet")
    assert code == 0, err
    [summary] = [orjson.loads(line) for line in out.splitlines()]
    return summary


def test_reset_since_then_once_reads_exactly_the_window_asked(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    config = write_config(tmp_path, sim.url, misp_server.api_key)
    stamps = sorted(int(a["timestamp"]) for a in misp_server.dataset.attributes())
    assert once(config)["records"] == len(stamps)
    since = stamps[len(stamps) // 2]
    expected = sum(1 for t in stamps if t >= since)
    assert 0 < expected < len(stamps)  # a window that is neither all nor nothing

    code, out, err = invoke("reset", "--config", config, "--since", epoch_text(since))
    assert code == 0, err
    assert out.startswith(f"{STREAM}: cursor 20") and f"(the next cycle reads from {epoch_text(since)})" in out
    assert once(config)["records"] == expected  # the records MISP holds from `since` on, no more, no less

    code, out, _ = invoke("reset", "--config", config, "--all")
    assert code == 0 and "-> none (the next cycle reads the initial interval, 3650d)" in out
    assert once(config)["records"] == len(stamps)


def test_reset_refuses_while_another_process_holds_the_state(misp_server: MispServerFactory, tmp_path: Path) -> None:
    config = write_config(tmp_path, misp_server().url, misp_server.api_key)
    once(config)
    with StateLock(tmp_path / "store.db", command="run").acquire():
        code, _, err = invoke("reset", "--config", config, "--all")
    assert code == 4 and "run" in err, err
    state = StateStore(tmp_path / "store.db")
    assert state.get_cursor(STREAM) is not None  # not reset
    state.close()


def test_reset_names_the_valid_sources_and_streams(misp_server: MispServerFactory, tmp_path: Path) -> None:
    config = write_config(tmp_path, misp_server().url, misp_server.api_key)
    code, _, err = invoke("reset", "--config", config, "--source", "partner", "--all")
    assert code == 2 and "unknown source" in err and "default" in err and len(err.strip().splitlines()) == 1
    code, _, err = invoke("reset", "--config", config, "--stream", "bogus", "--all")
    assert code == 2 and "unknown stream 'bogus'" in err and STREAM in err
    code, _, err = invoke("reset", "--config", config, "--since", "2999-01-01T00:00:00Z")
    assert code == 2 and "in the future" in err


def test_a_config_pointing_at_another_misps_state_is_refused_until_reset(misp_server: MispServerFactory, tmp_path: Path) -> None:
    first = misp_server()
    config = write_config(tmp_path, first.url, misp_server.api_key)
    once(config)
    other_data = Dataset.synthetic(25, seed=3, newest=misp_server.clock.now())
    other = misp_server(other_data)
    config = write_config(tmp_path, other.url, misp_server.api_key)
    code, _, err = invoke("once", "--config", config, "--quiet")
    assert code == 2
    [line] = err.strip().splitlines()
    assert f"holds the cursors of {first.url}, not of {other.url}" in line and "misp-ti reset --source default" in line
    assert misp_server.api_key not in err

    code, out, err = invoke("reset", "--config", config, "--source", "default", "--all")
    assert code == 0, err
    assert f"default: MISP {first.url} -> {other.url}" in out
    assert once(config)["records"] == len(list(other_data.attributes()))


def test_config_check_names_the_source_without_a_key(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(
        '[misp.ours]\nurl = "https://misp.example.net"\napi_key = "0123456789abcdef"\n'
        '[misp.partner]\nurl = "https://partner.example.net"\n[plugins]\nentrypoints = false\n'
    )
    path.chmod(0o600)
    code, _, err = invoke("config", "check", "--config", str(path))
    assert code == 2, err
    assert "misp.partner.api_key: not set" in err and "MISP_TI_MISP__PARTNER__API_KEY" in err
    assert "misp.ours" not in err
