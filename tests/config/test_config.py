"""Configuration: schema validation, env overrides, secrets, generated docs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from misp_ti.config import (
    InsecureConfigWarning,
    UnknownVariableWarning,
    build_config,
    load_config,
    parse_duration,
)
from misp_ti.config.reference import render_reference
from misp_ti.errors import ConfigError

ROOT = Path(__file__).parents[2]
SECRET = "k3yK3yK3yK3yK3yK3yK3yK3yK3yK3yK3yK3yK3yK"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "misp-ti.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_defaults_match_the_reference() -> None:
    config = build_config({})
    assert config.expiry.ioc_expiration_duration == timedelta(days=90)
    assert config.streams.threat_attributes.initial_interval == timedelta(hours=120)
    assert config.streams.threat_attributes.interval == timedelta(minutes=10)
    assert config.streams.enabled() == ["threat_attributes"]
    assert config.output.sinks == ["sqlite"]
    assert config.expiry.refetch_interval is None


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = write(tmp_path, f'''
[misp]
url = "https://misp.example.org"
api_key = "{SECRET}"
[streams.threat_attributes]
enabled = true
initial_interval = "120h"
interval = "10m"
[expiry]
policy = "duration"
ioc_expiration_duration = "90d"
[output]
sinks = ["sqlite"]
[output.sqlite]
path = "misp-ti.db"
[output.ndjson]
path = "-"
[output.elasticsearch]
hosts = ["https://localhost:9200"]
''')
    config = load_config(path, environ={})
    assert config.misp.api_key.get_secret_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config.redacted())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[misp]\nurll = "https://x"\n', "misp.urll: unknown key; allowed keys here: api_key"),
        ('[expiry]\nioc_expiration_duration = "90x"\n', "expiry.ioc_expiration_duration: bad value '90x': expected a duration"),
        ('[streams.threat_attributes]\nenabled = "sometimes"\n', "streams.threat_attributes.enabled: bad value 'sometimes'"),
        ('[misp]\npage_size = "many"\n', "misp.page_size: bad value 'many'"),
        ('[misp]\nurl = "ftp://x"\n', "misp.url: bad value 'ftp://x': expected an http:// or https:// URL"),
        ('[output]\nsinks = "sqlite"\n', "output.sinks: bad value 'sqlite'"),
        ('[nonsense]\nx = 1\n', "nonsense: unknown key"),
    ],
)
def test_bad_config_names_the_key_and_value(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(info.value)


def test_bad_secret_values_are_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[misp]\napi_key = ["' + SECRET + '"]\n'), environ={})
    assert "misp.api_key: bad value (hidden)" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("text", ["90x", "", "d", "5 days", "-3d", "1.5"])
def test_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("text", "seconds"), [("90d", 90 * 86400), ("1h30m", 5400), ("2w", 1209600), ("45s", 45), (30, 30)])
def test_duration_units(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_environment_overrides_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, '[expiry]\npolicy = "duration"\n[streams.threat]\nenabled = false\n')
    env = {
        "MISP_TI_EXPIRY__POLICY": "refetch",
        "MISP_TI_STREAMS__THREAT__ENABLED": "true",
        "MISP_TI_OUTPUT__SINKS": '["sqlite", "ndjson"]',
        "MISP_TI_MISP__API_KEY": "12345",  # stays text even though it parses as a number
        "MISP_TI_UNRELATED": "ignored",
    }
    with pytest.warns(UnknownVariableWarning, match="MISP_TI_UNRELATED matches no configuration key"):
        config = load_config(path, environ=env)
    assert config.expiry.policy == "refetch"
    assert config.streams.enabled() == ["threat_attributes", "threat"]
    assert config.output.sinks == ["sqlite", "ndjson"]
    assert config.misp.api_key.get_secret_value() == "12345"


def test_environment_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"MISP_TI_EXPIRY__IOC_EXPIRATION_DURATION \(environment, expiry.ioc_expiration_duration\): bad value '3 fortnights'"):
        load_config(None, environ={"MISP_TI_EXPIRY__IOC_EXPIRATION_DURATION": "3 fortnights"})


def test_secret_from_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    key_file.chmod(0o600)
    config = load_config(write(tmp_path, f'[misp]\napi_key_file = "{key_file}"\n'), environ={})
    assert config.misp.api_key.get_secret_value() == SECRET


def test_world_readable_config_with_secret_warns(tmp_path: Path) -> None:
    path = write(tmp_path, f'[misp]\napi_key = "{SECRET}"\n')
    path.chmod(0o644)
    with pytest.warns(InsecureConfigWarning, match="chmod 600"):
        load_config(path, environ={})


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[misp\n"), environ={})


def test_reference_docs_are_generated_from_the_schema() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert documented == render_reference(), "run: misp-ti config reference -o docs/configuration.md"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "misp_ti", *args], capture_output=True, text=True, env=full_env, timeout=60)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[misp]\nunknown_key = 1\n', "misp.unknown_key"),
        ('[misp]\nrequest_timeout = true\n', "misp.request_timeout"),
        ('[misp]\ntimeout = true\n', "misp.timeout"),  # the old spelling's warning names it
        ('[expiry]\nioc_expiration_duration = "90x"\n', "expiry.ioc_expiration_duration"),
    ],
)
def test_cli_config_check_exits_non_zero_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    done = run_cli("--config", str(write(tmp_path, text)), "config", "check")
    assert done.returncode == 2
    assert key in done.stderr and "Traceback" not in done.stderr


def test_cli_config_show_redacts_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, f'[misp]\napi_key = "{SECRET}"\n[output.elasticsearch]\npassword = "hunter2hunter2"\n')
    done = run_cli("--config", str(path), "config", "show")
    assert done.returncode == 0
    assert SECRET not in done.stdout + done.stderr and "hunter2hunter2" not in done.stdout
    assert '"api_key": "**********"' in done.stdout


@pytest.mark.parametrize(
    ("data", "read", "expected", "warned"),
    [
        ({"misp": {"verify": False}}, lambda c: c.misp.ssl_verification_mode, "none", "misp.ssl_verification_mode"),
        ({"misp": {"verify": True}}, lambda c: c.misp.ssl_verification_mode, "full", "misp.ssl_verification_mode"),
        ({"misp": {"timeout": "7s"}}, lambda c: c.misp.request_timeout, timedelta(seconds=7), "misp.request_timeout"),
        (
            {"output": {"elasticsearch": {"verify_certs": False}}},
            lambda c: c.output.elasticsearch.ssl_verification_mode,
            "none",
            "output.elasticsearch.ssl_verification_mode",
        ),
        (
            {"output": {"elasticsearch": {"timeout": "9s"}}},
            lambda c: c.output.elasticsearch.request_timeout,
            timedelta(seconds=9),
            "output.elasticsearch.request_timeout",
        ),
    ],
)
def test_old_spellings_still_work_with_a_warning_naming_the_new_key(data, read, expected, warned) -> None:
    with pytest.warns(DeprecationWarning, match=rf"is deprecated: write {warned} = "):
        config = build_config(data)
    assert read(config) == expected


def test_old_spellings_from_the_environment() -> None:
    with pytest.warns(DeprecationWarning) as caught:
        config = load_config(environ={"MISP_TI_MISP__VERIFY": "false", "MISP_TI_MISP__TIMEOUT": "3s"})
    assert sorted(str(w.message).split(" is ")[0] for w in caught) == ["misp.timeout", "misp.verify"]
    assert config.misp.ssl_verification_mode == "none" and not config.misp.verifies_tls
    assert config.misp.request_timeout == timedelta(seconds=3)
    new = load_config(environ={"MISP_TI_MISP__SSL_VERIFICATION_MODE": "none"})
    assert new.misp.ssl_verification_mode == "none"


def test_old_and_new_spelling_together_or_a_bad_old_value_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"^misp.verify: an old spelling of misp.ssl_verification_mode; give only"):
        build_config({"misp": {"verify": False, "ssl_verification_mode": "full"}})
    with pytest.raises(ConfigError, match=r"^output.elasticsearch.verify_certs: bad value 'no': expected true or false$"):
        build_config({"output": {"elasticsearch": {"verify_certs": "no"}}})
    with pytest.raises(ConfigError, match=r"misp.ssl_verification_mode: bad value 'certificate': .*'full' or 'none'"):
        build_config({"misp": {"ssl_verification_mode": "certificate"}})


def test_old_attribute_names_still_read_with_a_warning() -> None:
    config = build_config({"misp": {"ssl_verification_mode": "none"}})
    with pytest.warns(DeprecationWarning, match="use ssl_verification_mode"):
        assert config.misp.verify is False
    with pytest.warns(DeprecationWarning, match="use request_timeout"):
        assert config.misp.timeout == timedelta(seconds=30)
    with pytest.warns(DeprecationWarning, match="use ssl_verification_mode"):
        assert config.output.elasticsearch.verify_certs is True


def test_cli_prints_the_old_spelling_warning(tmp_path: Path) -> None:
    text = '[misp]\nurl = "https://misp.internal.test"\napi_key = "k"\nverify = false\n'
    done = run_cli("--config", str(write(tmp_path, text)), "--quiet", "config", "check")
    assert done.returncode == 0, done.stderr
    assert 'warning: misp.verify is deprecated: write misp.ssl_verification_mode = "none"' in done.stderr


def test_tuning_the_threat_stream_does_not_switch_it_on() -> None:
    config = build_config({"streams": {"threat": {"initial_interval": "1d"}}})
    assert config.streams.enabled() == ["threat_attributes"]
    assert config.streams.threat.initial_interval == timedelta(days=1)
    config = build_config({"streams": {"threat": {"enabled": True}}})
    assert config.streams.enabled() == ["threat_attributes", "threat"]
