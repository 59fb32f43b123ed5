"""Values a careless operator writes are refused up front, in one line naming the key.

Each case is a config a user could write; the check is the one `misp-ti
config check` runs (``load_config``), and the CLI cases run the real command
in a subprocess to see what a user sees: one line, exit 2, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from misp_ti.config import InsecureConfigWarning, UnknownVariableWarning, load_config, redact_url
from misp_ti.errors import ConfigError

KEY = "k" * 40


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "misp-ti.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "misp_ti", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[streams.threat_attributes]\ninterval = "0s"\n', "streams.threat_attributes.interval: bad value '0s': must be at least 1s"),
        ('[streams.threat]\ninterval = "0.5s"\n', "streams.threat.interval: bad value '0.5s': must be at least 1s"),
        ('[misp]\nrequest_timeout = "0s"\n', "misp.request_timeout: bad value '0s': must be longer than 0s"),
        ('[output.elasticsearch]\nrequest_timeout = 0\n', "output.elasticsearch.request_timeout: bad value 0: must be longer than 0s"),
        ('[expiry]\nioc_expiration_duration = "100000000d"\n', "expiry.ioc_expiration_duration: bad value '100000000d': too long: at most 365000d"),
        ('[expiry.by_type]\nip-dst = "99999999w"\n', "expiry.by_type.ip-dst: bad value '99999999w': too long"),
        ('[misp]\nrequest_timeout = "99999999999999999999999999s"\n', "misp.request_timeout: bad value '99999999999999999999999999s': too long"),
        ('[misp]\nurl = "https://misp.example:0"\n', "misp.url: bad value 'https://misp.example:0': the port must be between 1 and 65535"),
        ('[misp]\nurl = "https://misp.example:70000"\n', "misp.url: bad value 'https://misp.example:70000': not a usable URL"),
        ('[misp]\nurl = "https://"\n', "misp.url: bad value 'https://': expected a URL with a host name"),
        ('[misp]\nurl = "misp.example.org"\n', "misp.url: bad value 'misp.example.org': expected an http:// or https:// URL"),
        ('[misp]\nproxy = "proxy.example:3128"\n', "misp.proxy: bad value 'proxy.example:3128': expected an http:// or https:// or socks5://"),
        ('[output.elasticsearch]\nhosts = ["https://es.example:99999"]\n', "output.elasticsearch.hosts: bad value ['https://es.example:99999']: not a usable URL"),
        ('[misp]\nbackoff_initial = "2m"\nbackoff_max = "1m"\n', "misp.backoff_max (1m) is shorter than misp.backoff_initial (2m)"),
        ('[output.elasticsearch]\nbackoff_initial = "90s"\n', "output.elasticsearch.backoff_max (1m) is shorter than output.elasticsearch.backoff_initial (90s)"),
        ('[output]\nsinks = ["sqlite", "ndjson", "sqlite"]\n', "output.sinks: bad value ['sqlite', 'ndjson', 'sqlite']: names sqlite more than once"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(info.value)


def test_sane_edges_are_accepted(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[misp]\nurl = "https://misp.example:65535/misp"\nrequest_timeout = "0.5s"\nbackoff_initial = "5s"\nbackoff_max = "5s"\n'
            '[streams.threat_attributes]\ninterval = "1s"\n[expiry]\nioc_expiration_duration = "365000d"\n',
        ),
        environ={},
    )
    assert config.misp.url == "https://misp.example:65535/misp" and config.streams.threat_attributes.interval.total_seconds() == 1


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ('[misp]\napi_key = "{key}"\napi_key_file = "{file}"\n', {}, "misp.api_key and misp.api_key_file are both set"),
        ('[misp]\napi_key_file = "{file}"\n', {"MISP_TI_MISP__API_KEY": KEY}, "misp.api_key and misp.api_key_file are both set"),
        ('[output.elasticsearch]\npassword = "pw"\npassword_file = "{file}"\n', {}, "output.elasticsearch.password and output.elasticsearch.password_file"),
    ],
)
def test_a_secret_comes_from_one_place_only(tmp_path: Path, text: str, environ: dict[str, str], expected: str) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(KEY)
    secret_file.chmod(0o600)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(write(tmp_path, text.format(key=KEY, file=secret_file)), environ=environ)
    assert KEY not in str(info.value)


def test_an_unknown_misp_ti_variable_is_reported(tmp_path: Path) -> None:
    env = {"MISP_TI_MISP_URL": "https://typo", "MISP_TI_CONFIG_PATH": "x", "MISP_TI_TEST_ES_URL": "http://es", "MISP_TI_STREAMS__THREAT__ENABLED": "true"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_config(None, environ=env)
    reported = sorted(str(w.message).split()[2] for w in caught if issubclass(w.category, UnknownVariableWarning))
    assert reported == ["MISP_TI_CONFIG_PATH", "MISP_TI_MISP_URL"]
    # a variable spelled as a key but naming none is an error naming that key
    with pytest.raises(ConfigError, match="MISP_TI_MISP__URLL \\(environment, misp.urll\\): unknown key"):
        load_config(None, environ={"MISP_TI_MISP__URLL": "https://x"})


def test_an_api_key_file_readable_by_others_warns(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    with pytest.warns(InsecureConfigWarning, match=r"misp.api_key_file: .* readable by other users; run: chmod 600"):
        load_config(write(tmp_path, f'[misp]\napi_key_file = "{key_file}"\n'), environ={})
    key_file.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureConfigWarning)
        load_config(write(tmp_path, f'[misp]\napi_key_file = "{key_file}"\n'), environ={})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[misp]\nurl = "https://x"\n'.encode("utf-16"), "is not UTF-8 text (byte 0 is b'\\xff'; it looks like UTF-16): save it as UTF-8"),
        (b'[misp]\nurl = "https://\xe9"\n', "is not UTF-8 text (byte 22 is b'\\xe9')"),
        (b'[misp]\nrequest_timeout = "99999999999999999999999999s"\n', "misp.request_timeout: bad value '99999999999999999999999999s': too long"),
        (b'[expiry]\nioc_expiration_duration = "100000000d"\n', "expiry.ioc_expiration_duration: bad value '100000000d': too long"),
        (b'[streams.threat_attributes]\ninterval = "0s"\n', "streams.threat_attributes.interval: bad value '0s'"),
    ],
    ids=["utf16", "latin1", "absurd-timeout", "expiry-past-any-date", "interval-0s"],
)
def test_cli_config_check_says_it_in_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "misp-ti.toml"
    path.write_bytes(content)
    done = run_cli("--config", str(path), "config", "check")
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    problem_lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(problem_lines) <= 2, done.stderr  # "invalid configuration <file>:" and the key's line


def test_passwords_in_urls_are_secrets_everywhere(tmp_path: Path) -> None:
    password = "PASSWORD-hunter2"
    path = write(
        tmp_path,
        f'[misp]\nurl = "https://misp.example"\napi_key = "{KEY}"\nproxy = "http://me:{password}x@proxy.example:3128"\n',
    )
    config = load_config(path, environ={})
    assert f"{password}x" in config.secrets()
    shown = run_cli("--config", str(path), "config", "show")
    assert shown.returncode == 0 and password not in shown.stdout + shown.stderr
    assert '"proxy": "http://me:**********@proxy.example:3128"' in shown.stdout
    # user-info in misp.url is refused (httpx would send it in place of the
    # key), and a bad value that carries the password is quoted without it
    for url in (f"https://user:{password}@misp.example", f"https://user:{password}@misp.example:0"):
        bad = write(tmp_path, f'[misp]\nurl = "{url}"\n')
        done = run_cli("--config", str(bad), "config", "check")
        assert done.returncode == 2 and password not in done.stderr and "user:**********@" in done.stderr
    assert redact_url(f"GET http://a:{password}@h/x failed") == "GET http://a:**********@h/x failed"
