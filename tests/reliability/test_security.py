"""Secrets never leak; TLS cannot be switched off silently; loose config files are flagged.

The leak check runs the real CLI (``python -m misp_ti --verbose``, debug
logging of misp-ti, httpx, httpcore and the Elasticsearch client) through
full cycles against the MISP simulator and a loopback Elasticsearch
endpoint, with distinctive secrets: a MISP key, Elasticsearch basic-auth
credentials and an Elasticsearch API key. It also provokes failures (MISP
failing every request, MISP unreachable, Elasticsearch refusing with 401,
a config error on a secret key) and dead letters, shows the config, and
records a cassette with the test kit. Then it greps everything produced
(output, logs, error messages, store and state files, NDJSON output, the
dead-letter file, the cassette) for each secret in every form it is sent in
(plain, base64 ``user:password``, ``ApiKey <key>``): zero hits.

Each secret is also proven to have been *used* (the servers saw it), so
"not found" cannot come from a run that never touched it.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.reliability import FakeElasticsearch
from helpers.sample import T0, sample_before_t0
from misp_ti.simulator import Dataset, MispSimulator
from misp_ti.testing.clock import ManualClock

pytest_plugins = ["pytester"]

MISP_KEY = "mispKEY-7f3c9a1e5b2d4c6f8a0e1d3b5c7a9f2e4d6b8c0a"
ES_USER = "ingest-bot"
ES_PASSWORD = "esPASS-c4e1a9b7d3f5e2a8"
ES_API_KEY = "esAPIKEY-VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw"
NUMERIC_KEY = "918273645501928374"
SECRETS = {
    "MISP key": MISP_KEY,
    "Elasticsearch password": ES_PASSWORD,
    "Elasticsearch API key": ES_API_KEY,
    "Elasticsearch basic auth (base64)": base64.b64encode(f"{ES_USER}:{ES_PASSWORD}".encode()).decode(),
    "numeric key from a bad config": NUMERIC_KEY,
}
NOW = "2026-03-01T12:00:00Z"


def cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MISP_TI_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "misp_ti", *args], env=base, capture_output=True, text=True, timeout=timeout)


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


def misp_section(url: str, **extra: str) -> str:
    lines = [
        "[misp]", f'url = "{url}"', f'api_key = "{MISP_KEY}"', "page_size = 200", "max_retries = 2",
        'backoff_initial = "0.01s"', 'backoff_max = "0.05s"', 'request_timeout = "2s"',
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n[streams.threat_attributes]\ninitial_interval = \"5000d\"\n"


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run everything once; return the texts produced and the directory of files."""
    work = tmp_path_factory.mktemp("security")
    outputs: dict[str, str] = {}
    dataset = sample_before_t0()
    with MispSimulator(dataset, api_key=MISP_KEY, clock=ManualClock(start=T0)) as sim, FakeElasticsearch() as es:
        # every 50th document is refused by a mapping error: it goes to the dead-letter file
        es.item_status = lambda n, action, source: 400 if n % 50 == 0 else 201
        full = write_config(work / "full.toml", misp_section(sim.url) + f"""
            [output]
            sinks = ["sqlite", "ndjson", "elasticsearch"]
            preserve_original_event = true
            [output.sqlite]
            path = "{work / 'store.db'}"
            [output.ndjson]
            path = "{work / 'out.ndjson'}"
            [output.elasticsearch]
            hosts = ["{es.url}"]
            username = "{ES_USER}"
            password = "{ES_PASSWORD}"
            max_retries = 1
            backoff_initial = "0.01s"
            backoff_max = "0.02s"
            [plugins]
            entrypoints = false
        """)
        run = cli(["--config", str(full), "--verbose", "once", "--now", NOW])
        outputs["full cycle (--verbose)"] = run.stdout + run.stderr
        assert run.returncode == 0, run.stderr[-3000:]
        outputs["provision (--verbose)"] = "".join(cli(["--config", str(full), "--verbose", "provision"]).__dict__[k] for k in ("stdout", "stderr"))
        outputs["config show"] = cli(["--config", str(full), "config", "show"]).stdout
        outputs["json logs"] = cli(["--config", str(full), "--verbose", "--log-format", "json", "once", "--now", NOW]).stderr
        es_saw = list(es.headers)

        # Elasticsearch with an API key, refusing every bulk request with 401
        es.bulk_status = 401
        api = write_config(work / "api.toml", misp_section(sim.url) + f"""
            [output]
            sinks = ["elasticsearch"]
            [output.elasticsearch]
            hosts = ["{es.url}"]
            api_key = "{ES_API_KEY}"
            max_retries = 0
            [state]
            path = "{work / 'state-api.db'}"
            [plugins]
            entrypoints = false
        """)
        refused = cli(["--config", str(api), "--verbose", "once", "--now", NOW])
        outputs["Elasticsearch refusing (401)"] = refused.stdout + refused.stderr
        assert refused.returncode != 0, "a refused batch must fail the poll"
        outputs["config show (API key)"] = cli(["--config", str(api), "config", "show"]).stdout
        es_saw_api = es.headers[len(es_saw):]

        # MISP failing every request until the retries run out
        sim.set_faults("500:1.0")
        failing = write_config(work / "failing.toml", misp_section(sim.url) + f"""
            [output.sqlite]
            path = "{work / 'failing.db'}"
            [plugins]
            entrypoints = false
        """)
        failed = cli(["--config", str(failing), "--verbose", "once"])
        outputs["MISP failing (500)"] = failed.stdout + failed.stderr
        assert failed.returncode != 0
        sim.set_faults(None)
        misp_saw = {r.status for r in sim.requests}

    # MISP unreachable (the simulator is gone): connection refused
    gone = cli(["--config", str(failing), "--verbose", "once"])
    outputs["MISP unreachable"] = gone.stdout + gone.stderr
    assert gone.returncode != 0

    # a config error on a secret key: the value is never echoed
    bad = write_config(work / "bad.toml", f"[misp]\nurl = \"not a url\"\napi_key = {NUMERIC_KEY}\n")
    bad_run = cli(["--config", str(bad), "config", "show"])
    outputs["config error"] = bad_run.stdout + bad_run.stderr
    assert bad_run.returncode != 0 and "misp.api_key" in bad_run.stderr

    return {"work": work, "outputs": outputs, "es_saw": es_saw, "es_saw_api": es_saw_api, "misp_saw": misp_saw}


def leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def test_the_secrets_were_really_used(produced: dict[str, Any]) -> None:
    basic = "Basic " + SECRETS["Elasticsearch basic auth (base64)"]
    assert any(h.get("authorization") == basic for h in produced["es_saw"])
    assert any(h.get("authorization") == f"ApiKey {ES_API_KEY}" for h in produced["es_saw_api"])
    assert 200 in produced["misp_saw"], "the simulator answers 200 only to the right key"
    dead = list(produced["work"].glob("*dead-letter*"))
    assert dead and dead[0].stat().st_size > 0, "the run must have dead-lettered documents"
    assert (produced["work"] / "out.ndjson").stat().st_size > 0
    debug = produced["outputs"]["full cycle (--verbose)"]
    assert "DEBUG" in debug and ("httpx" in debug or "httpcore" in debug), "debug logging of the HTTP clients was on"


@pytest.mark.parametrize("name", [
    "full cycle (--verbose)", "provision (--verbose)", "config show", "json logs", "Elasticsearch refusing (401)",
    "config show (API key)", "MISP failing (500)", "MISP unreachable", "config error",
])
def test_no_secret_in_output_logs_or_errors(produced: dict[str, Any], name: str) -> None:
    text = produced["outputs"][name]
    assert text.strip(), f"{name}: produced nothing, so the check would prove nothing"
    assert leaks(text) == []


def test_no_secret_in_any_file_written(produced: dict[str, Any]) -> None:
    files = [p for p in produced["work"].rglob("*") if p.is_file() and not p.name.endswith(".toml")]
    names = {p.name for p in files}
    assert {"store.db", "out.ndjson"} <= names and any("dead-letter" in n for n in names)
    found = {str(p.relative_to(produced["work"])): leaks(p.read_bytes().decode("utf-8", "replace")) for p in files}
    assert {path: hits for path, hits in found.items() if hits} == {}
    print(f"\n[security] {len(files)} files and {len(produced['outputs'])} outputs searched for {len(SECRETS)} secrets: 0 hits")


def test_recorded_cassette_holds_no_key(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record a cassette with the test kit from a MISP that needs our key; the cassette must not hold it."""
    now = datetime.now(UTC).replace(microsecond=0)
    with MispSimulator(Dataset.sample().shift_to(newest=now - timedelta(hours=1)), api_key=MISP_KEY, clock=ManualClock(start=now)) as sim:
        monkeypatch.setenv("MISP_TI_TEST_MISP_URL", sim.url)
        monkeypatch.setenv("MISP_TI_TEST_MISP_KEY", MISP_KEY)
        pytester.makepyfile(test_recording="""
            from misp_ti.engine import Engine

            def test_poll(misp_cassette, tmp_path):
                config = misp_cassette.client_config(tmp_path)
                with Engine(config) as engine:
                    results = engine.run_once()
                assert results[0].records > 1000
        """)
        result = pytester.runpytest_subprocess("--misp-record", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
        assert any(r.status == 200 for r in sim.requests)
    cassettes = list(pytester.path.rglob("cassettes/**/*.yaml"))
    assert cassettes, "the kit wrote no cassette"
    text = "".join(p.read_text(encoding="utf-8") for p in cassettes)
    assert "restSearch" in text
    assert leaks(text) == []
    assert "authorization" not in text.lower()


# ---------------------------------------------------------------------------
# TLS verification and config file permissions


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "--quiet"])
def test_turning_off_misp_tls_verification_warns_loudly(tmp_path: Path, quiet: bool) -> None:
    config = write_config(tmp_path / "c.toml", f"""
        [misp]
        url = "https://misp.internal.test"
        api_key = "{MISP_KEY}"
        ssl_verification_mode = "none"
        [output.sqlite]
        path = "{tmp_path / 'store.db'}"
        [plugins]
        entrypoints = false
    """)
    run = cli(["--config", str(config), *(["--quiet"] if quiet else []), "config", "check"])
    assert run.returncode == 0, run.stderr
    assert "TLS verification of MISP" in run.stderr and "OFF" in run.stderr
    assert leaks(run.stderr + run.stdout) == []


def test_verification_on_gives_no_tls_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"""
        [misp]
        url = "https://misp.internal.test"
        api_key = "{MISP_KEY}"
        [output.sqlite]
        path = "{tmp_path / 'store.db'}"
    """)
    run = cli(["--config", str(config), "config", "check"])
    assert run.returncode == 0, run.stderr
    assert "TLS verification" not in run.stderr


def test_turning_off_elasticsearch_tls_verification_warns(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"""
        [output]
        sinks = ["elasticsearch"]
        [output.elasticsearch]
        hosts = ["https://localhost:9200"]
        api_key = "{ES_API_KEY}"
        ssl_verification_mode = "none"
        [state]
        path = "{tmp_path / 'state.db'}"
        [plugins]
        entrypoints = false
    """)
    run = cli(["--config", str(config), "--quiet", "config", "check"])
    assert "TLS verification of Elasticsearch is OFF" in run.stderr
    assert leaks(run.stderr + run.stdout) == []


SECRET_CONFIG = f'[misp]\nurl = "https://misp.example.org"\napi_key = "{MISP_KEY}"\n'
PLAIN_CONFIG = '[misp]\nurl = "https://misp.example.org"\n'


@pytest.mark.parametrize(("text", "mode", "warned"), [
    (SECRET_CONFIG, 0o644, True),
    (SECRET_CONFIG, 0o640, True),
    (SECRET_CONFIG, 0o600, False),
    (PLAIN_CONFIG, 0o644, False),
], ids=["secret-world-readable", "secret-group-readable", "secret-0600", "no-secret-0644"])
def test_config_readable_by_others_with_secrets_warns(tmp_path: Path, text: str, mode: int, warned: bool) -> None:
    config = write_config(tmp_path / "c.toml", text, mode)
    run = cli(["--config", str(config), "config", "show"])
    assert run.returncode == 0, run.stderr
    assert ("readable by other users" in run.stderr) is warned
    if warned:
        assert f"chmod 600 {config}" in run.stderr
    assert leaks(run.stdout + run.stderr) == []
