"""misp-ti as a service, in real processes against the simulator: stops, the
lock, status and its exit codes, metrics and health, a clean stdout."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.service import Service, misp_ti, service_env
from misp_ti.state import StateStore
from misp_ti.testing.fixtures import MispServerFactory

STREAM = "threat_attributes"


def cursor(workdir: Path) -> Any:
    state = StateStore(workdir / "store.db")
    try:
        return state.get_cursor(STREAM), state.in_progress(STREAM)
    finally:
        state.close()


def status(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = misp_ti(["status", "--json"], env)
    return done.returncode, json.loads(done.stdout)


# stops ----------------------------------------------------------------------------

# each makes MISP answer the second restSearch request late or never well
WAITS = {
    "retry backoff": ({"faults": "503:1"}, {"MISP_TI_MISP__BACKOFF_INITIAL": "30s", "MISP_TI_MISP__BACKOFF_MAX": "60s"}, r"retry 1 of"),
    "rate-limit wait": ({"faults": "429:1", "retry_after": 30}, {"MISP_TI_MISP__MAX_RATE_LIMIT_WAIT": "120s"}, r"rate-limiting us.*retry 1 of"),
    "slow request": ({"faults": "timeout:1", "timeout_delay": 30}, {"MISP_TI_MISP__REQUEST_TIMEOUT": "60s"}, None),
}


@pytest.mark.parametrize("command", ["once", "run"])
@pytest.mark.parametrize("wait", list(WAITS))
def test_a_stop_signal_ends_any_wait_within_two_seconds_cursor_intact(
    misp_server: MispServerFactory, tmp_path: Path, command: str, wait: str
) -> None:
    good = misp_server()
    done = misp_ti(["once"], service_env(good.url, misp_server.api_key, tmp_path))
    assert done.returncode == 0, done.stderr
    before, _ = cursor(tmp_path)
    assert before is not None

    options, extra, waiting_line = WAITS[wait]
    good.stop()  # the same MISP (the state is bound to its URL), now answering late or never well
    bad = misp_server(port=good.port, **options)
    arrived = __import__("threading").Event()
    bad.on_request(lambda info: arrived.set())
    env = service_env(bad.url, misp_server.api_key, tmp_path, MISP_TI_MISP__MAX_RETRIES="5", **extra)
    with Service([command], env) as service:
        if waiting_line is not None:
            service.wait_for(waiting_line)
        else:
            assert arrived.wait(60), service.stderr
        code, seconds = service.stop(signal.SIGTERM if command == "run" else signal.SIGINT)
    assert code == 0, service.stderr
    assert seconds < 2.0, f"stopped after {seconds:.2f}s"
    after, pending = cursor(tmp_path)
    assert after == before  # nothing confirmed in between: the cursor did not move
    assert pending is not None  # the interrupted cycle resumes at the next start
    assert "Traceback" not in service.stderr


def test_sighup_is_ignored_not_a_kill(misp_server: MispServerFactory, tmp_path: Path) -> None:
    env = service_env(misp_server().url, misp_server.api_key, tmp_path)
    with Service(["run"], env) as service:
        service.wait_for(r"next poll at")
        service.proc.send_signal(signal.SIGHUP)
        service.wait_for(r"SIGHUP ignored")
        assert service.proc.poll() is None
        code, _ = service.stop(signal.SIGTERM)
    assert code == 0, service.stderr


# one writer -----------------------------------------------------------------------


def test_a_second_run_is_refused_naming_the_first_and_sigkill_frees_the_state(
    misp_server: MispServerFactory, tmp_path: Path
) -> None:
    env = service_env(misp_server().url, misp_server.api_key, tmp_path)
    with Service(["run"], env) as first:
        first.wait_for(r"next poll at")
        second = misp_ti(["run"], env)
        assert second.returncode == 4, second.stderr
        assert f"pid {first.proc.pid}" in second.stderr and "misp-ti run" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        busy = misp_ti(["once"], env)
        assert busy.returncode == 4
        # readers work beside the writer
        code, report = status(env)
        assert code == 0, report
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=60)
    with Service(["run"], env) as restarted:
        restarted.wait_for(r"next poll at")
        code, _ = restarted.stop(signal.SIGTERM)
    assert code == 0, restarted.stderr


# status ------------------------------------------------------------------------------


def test_status_after_a_failed_then_a_good_cycle(misp_server: MispServerFactory, tmp_path: Path) -> None:
    good = misp_server()
    env_good = service_env(good.url, misp_server.api_key, tmp_path)
    missing = misp_ti(["status", "--json"], env_good)
    assert missing.returncode == 2 and json.loads(missing.stdout)["health"] == "unusable"

    good.stop()  # the same MISP (the state is bound to its URL) fails for a while, then recovers
    broken = misp_server(faults="503:1", port=good.port)
    env_bad = service_env(broken.url, misp_server.api_key, tmp_path, MISP_TI_MISP__MAX_RETRIES="0")
    failed = misp_ti(["once"], env_bad)
    assert failed.returncode == 1, failed.stderr
    code, report = status(env_bad)
    assert code == 1 and report["health"] == "degraded"
    entry = report["streams"][STREAM]
    assert entry["last_completed"] is None
    assert entry["last_failed"]["failures_in_row"] == 1 and "503" in entry["last_failed"]["error"]
    assert entry["in_progress"] is not None

    assert misp_ti(["once"], env_bad).returncode == 1
    assert status(env_bad)[1]["streams"][STREAM]["last_failed"]["failures_in_row"] == 2

    broken.stop()
    misp_server(port=good.port)
    done = misp_ti(["once"], env_good)
    assert done.returncode == 0, done.stderr
    code, report = status(env_good)
    assert code == 0 and report["health"] == "healthy", report
    entry = report["streams"][STREAM]
    assert entry["last_completed"]["records"] > 0
    assert entry["last_failed"]["failures_in_row"] == 0 and "503" in entry["last_failed"]["error"]
    assert entry["in_progress"] is None and entry["cursor"] is not None
    store = report["embedded_store"]
    assert store["active"] + store["expired"] > 0
    text = misp_ti(["status"], env_good)
    assert text.returncode == 0 and "last completed" in text.stdout and "last failed" in text.stdout


def test_status_refuses_a_state_written_by_a_newer_version(misp_server: MispServerFactory, tmp_path: Path) -> None:
    env = service_env(misp_server().url, misp_server.api_key, tmp_path)
    assert misp_ti(["once"], env).returncode == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "store.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    code, report = status(env)
    assert code == 2 and "newer misp-ti" in report["reasons"][0]
    refused = misp_ti(["once"], env)
    assert refused.returncode == 2 and "newer misp-ti" in refused.stderr and "Traceback" not in refused.stderr


# metrics and health -------------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 (a loopback test server)
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_move_during_a_real_run(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    env = service_env(
        sim.url, misp_server.api_key, tmp_path,
        MISP_TI_SERVICE__METRICS_ADDRESS="127.0.0.1:0",
        MISP_TI_STREAMS__THREAT_ATTRIBUTES__INTERVAL="1s",
    )
    with Service(["run"], env) as service:
        base = service.wait_for(r"metrics: (http://127\.0\.0\.1:\d+)/metrics")[1]
        service.wait_for(r"next poll at")
        first = scrape(f"{base}/metrics")
        service.wait_for(r"threat_attributes cycle done")
        service.wait_for(r"next poll at")
        second = scrape(f"{base}/metrics")
        with urllib.request.urlopen(f"{base}/healthz", timeout=30) as answer:  # noqa: S310
            health = json.loads(answer.read())
        code, _ = service.stop(signal.SIGTERM)
    assert code == 0, service.stderr
    completed = f'misp_ti_cycles_total{{outcome="completed",source="default",stream="{STREAM}"}}'
    assert first[completed] >= 1 and second[completed] > first[completed]
    requests = 'misp_ti_misp_requests_total{status="200"}'
    assert second[requests] > first[requests] > 0
    assert first[f'misp_ti_records_total{{source="default",stream="{STREAM}"}}'] > 0
    assert first[f'misp_ti_documents_total{{source="default",stream="{STREAM}"}}'] > 0
    assert first['misp_ti_sink_documents_total{result="delivered",sink="sqlite"}'] > 0
    assert second[f'misp_ti_last_success_timestamp_seconds{{source="default",stream="{STREAM}"}}'] > 0
    assert f'misp_ti_cursor_lag_seconds{{source="default",stream="{STREAM}"}}' in second
    assert second["misp_ti_misp_request_seconds_count"] > 0
    assert health["status"] == "healthy" and health["code"] == 0


def test_metrics_count_retries_and_error_statuses_during_a_real_run(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server(faults="503@1")  # the first restSearch fails, its retry succeeds
    env = service_env(sim.url, misp_server.api_key, tmp_path, MISP_TI_SERVICE__METRICS_ADDRESS="127.0.0.1:0")
    with Service(["run"], env) as service:
        base = service.wait_for(r"metrics: (http://127\.0\.0\.1:\d+)/metrics")[1]
        service.wait_for(r"next poll at")
        values = scrape(f"{base}/metrics")
        code, _ = service.stop(signal.SIGTERM)
    assert code == 0, service.stderr
    assert values['misp_ti_misp_requests_total{status="503"}'] >= 1
    assert values["misp_ti_misp_retries_total"] >= 1
    assert values[f'misp_ti_cycles_total{{outcome="completed",source="default",stream="{STREAM}"}}'] == 1


def test_a_remote_metrics_address_is_refused_unless_allowed(misp_server: MispServerFactory, tmp_path: Path) -> None:
    env = service_env(misp_server().url, misp_server.api_key, tmp_path, MISP_TI_SERVICE__METRICS_ADDRESS="0.0.0.0:9464")
    refused = misp_ti(["run"], env)
    assert refused.returncode == 2 and "metrics_allow_remote" in refused.stderr


# standard output -------------------------------------------------------------------------


def test_once_with_ndjson_on_stdout_pipes_into_a_json_lines_parser(misp_server: MispServerFactory, tmp_path: Path) -> None:
    env = service_env(
        misp_server().url, misp_server.api_key, tmp_path,
        MISP_TI_OUTPUT__SINKS='["ndjson"]', MISP_TI_OUTPUT__NDJSON__PATH="-", MISP_TI_STATE__PATH=str(tmp_path / "state.db"),
    )
    done = misp_ti(["once", "--json", "--json-file", str(tmp_path / "summary.jsonl")], env)
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    assert docs and all("@timestamp" in doc and "threat" in doc for doc in docs)
    [summary] = [json.loads(line) for line in (tmp_path / "summary.jsonl").read_text().splitlines()]
    assert summary["documents"] == len(docs)
    assert re.search(r'"stream": ?"threat_attributes"', done.stderr)  # the summary went to stderr


def test_once_with_a_config_file_pipes_into_a_json_lines_parser_process(misp_server: MispServerFactory, tmp_path: Path) -> None:
    """Issue 12's words: `misp-ti --config C once` with `sinks = ["ndjson"]` and
    `path = "-"`, its stdout a real pipe into another process parsing JSON lines."""
    import subprocess
    import sys

    config = tmp_path / "misp-ti.toml"
    config.write_text(
        f'[misp]\nurl = "{misp_server().url}"\napi_key = "{misp_server.api_key}"\n'
        '[streams.threat_attributes]\ninitial_interval = "3650d"\n'
        '[output]\nsinks = ["ndjson"]\n[output.ndjson]\npath = "-"\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n[plugins]\nentrypoints = false\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISP_TI_")}
    env["PYTHONPATH"] = service_env("http://unused", "unused", tmp_path)["PYTHONPATH"]
    parse = "import json, sys\nlines = [json.loads(line) for line in sys.stdin]\nprint(len(lines), sum('threat' in d for d in lines))"
    producer = subprocess.Popen(
        [sys.executable, "-m", "misp_ti", "--config", str(config), "once"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert producer.stdout is not None
    parser = subprocess.Popen([sys.executable, "-c", parse], stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    producer.stdout.close()  # the parser holds the pipe now
    parsed, parse_errors = parser.communicate(timeout=120)
    _, stderr = producer.communicate(timeout=120)
    assert producer.returncode == 0, stderr.decode()
    assert parser.returncode == 0, parse_errors  # a line that is not JSON raises there
    lines, with_threat = map(int, parsed.split())
    assert lines > 0 and with_threat == lines
    assert b"done;" in stderr  # the summary went to stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches the pipe's fill level with FIONREAD / F_GETPIPE_SZ")
def test_a_stop_while_stdout_is_full_keeps_every_document_line_whole(misp_server: MispServerFactory, tmp_path: Path) -> None:
    """`once | slow-consumer`: SIGTERM arrives while the ndjson sink is blocked
    writing a batch into a full pipe; the batch still ends whole."""
    import fcntl
    import subprocess
    import termios
    import time

    env = service_env(
        misp_server().url, misp_server.api_key, tmp_path,
        MISP_TI_OUTPUT__SINKS='["ndjson"]', MISP_TI_OUTPUT__NDJSON__PATH="-", MISP_TI_STATE__PATH=str(tmp_path / "state.db"),
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "misp_ti", "once"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        fd = child.stdout.fileno()
        capacity = fcntl.fcntl(fd, 1032)  # F_GETPIPE_SZ
        deadline = time.monotonic() + 60
        pending = bytearray(4)
        while time.monotonic() < deadline and child.poll() is None:
            fcntl.ioctl(fd, termios.FIONREAD, pending)
            if int.from_bytes(pending, sys.byteorder) >= capacity:
                break  # full: the writer is blocked in the middle of its batch
            time.sleep(0.05)
        assert child.poll() is None, "the child ended before its stdout filled"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err.decode()
    assert out.endswith(b"\n")
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) * 200 > capacity and all("threat" in doc for doc in docs)


def test_once_exits_3_when_records_became_pipeline_errors(tmp_path: Path) -> None:
    from helpers.fakeplugins import make_attributes

    records = make_attributes(5, start_ts=1_700_000_000)
    records.insert(2, {"type": "ip-dst", "value": "no uuid here", "timestamp": "1"})
    (tmp_path / "records.json").write_text(json.dumps(records))
    env = service_env("http://127.0.0.1:9", "unused-key", tmp_path, FAKE_RECORDS=str(tmp_path / "records.json"))
    done = misp_ti(["--plugin", "helpers.fakesource_env", "once", "--now", "2026-11-01T12:00:00Z"], env)
    assert done.returncode == 3, done.stderr
    assert len(re.findall(r"pipeline error for record uuid='\?' type='ip-dst'", done.stderr)) == 1
    env["MISP_TI_OUTPUT__SQLITE__PATH"] = str(tmp_path / "again.db")  # a fresh cursor
    quiet = misp_ti(["--quiet", "--plugin", "helpers.fakesource_env", "once", "--now", "2026-11-01T12:00:00Z"], env)
    assert quiet.returncode == 3 and quiet.stdout == "", quiet.stderr


def test_lookup_tells_no_store_from_not_active(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISP_TI_")}
    env["MISP_TI_PLUGINS__ENTRYPOINTS"] = "false"
    missing = misp_ti(["lookup", "203.0.113.1", "--db", str(tmp_path / "none.db")], env)
    assert missing.returncode == 2 and "none.db: no such file" in missing.stderr
    (tmp_path / "garbage.db").write_bytes(b"this is not a database at all" * 100)
    garbage = misp_ti(["lookup", "203.0.113.1", "--db", str(tmp_path / "garbage.db")], env)
    assert garbage.returncode == 2 and "Traceback" not in garbage.stderr, garbage.stderr


def test_quiet_once_with_ndjson_on_stdout_prints_only_documents(misp_server: MispServerFactory, tmp_path: Path) -> None:
    env = service_env(
        misp_server().url, misp_server.api_key, tmp_path,
        MISP_TI_OUTPUT__SINKS='["ndjson"]', MISP_TI_OUTPUT__NDJSON__PATH="-", MISP_TI_STATE__PATH=str(tmp_path / "state.db"),
    )
    done = misp_ti(["--quiet", "once"], env)
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    assert docs and all("threat" in doc for doc in docs)
    # no summary, no progress, no info logs: --quiet leaves only warnings and errors
    assert done.stderr == ""


def test_once_on_a_pipe_draws_no_bar(misp_server: MispServerFactory, tmp_path: Path) -> None:
    done = misp_ti(["once"], service_env(misp_server().url, misp_server.api_key, tmp_path))
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stderr and "\r" not in done.stderr
    assert re.search(r"threat_attributes: page of \d+ records", done.stderr)  # log lines instead


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("command", ["once", "run"])
def test_on_a_terminal_a_bar_is_drawn_there_and_stdout_keeps_only_documents(
    misp_server: MispServerFactory, tmp_path: Path, command: str
) -> None:
    import subprocess
    import sys
    import threading
    import time

    env = service_env(
        misp_server().url, misp_server.api_key, tmp_path,
        MISP_TI_MISP__PAGE_SIZE="5",
        MISP_TI_STREAMS__THREAT__ENABLED="true", MISP_TI_STREAMS__THREAT__INITIAL_INTERVAL="3650d",
        MISP_TI_STREAMS__THREAT_ATTRIBUTES__ENABLED="false",
        MISP_TI_OUTPUT__SINKS='["ndjson"]', MISP_TI_OUTPUT__NDJSON__PATH="-", MISP_TI_STATE__PATH=str(tmp_path / "state.db"),
        COLUMNS="160",
    )
    leader, follower = os.openpty()
    shown, out = bytearray(), bytearray()

    def drain(read: Callable[[], bytes], into: bytearray) -> None:
        while True:
            try:
                chunk = read()
            except OSError:  # a terminal whose other side closed
                return
            if not chunk:
                return
            into.extend(chunk)

    child = subprocess.Popen(
        [sys.executable, "-m", "misp_ti", command], env=env, stdout=subprocess.PIPE, stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    stdout = child.stdout
    readers = [
        threading.Thread(target=drain, args=(lambda: os.read(leader, 65536), shown), daemon=True),
        threading.Thread(target=drain, args=(lambda: stdout.read1(65536), out), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        if command == "run":
            deadline = time.monotonic() + 120
            while b"next poll at" not in shown and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.1)
            child.send_signal(signal.SIGTERM)
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(follower)
        for reader in readers:
            reader.join(timeout=30)
        os.close(leader)
    terminal = shown.decode("utf-8", "replace")
    assert child.returncode == 0, terminal
    assert command == "once" or "next poll at" in terminal
    docs = [json.loads(line) for line in out.decode().splitlines()]
    assert docs and all("threat" in doc for doc in docs)
    totals = {int(m.group(2)) for m in re.finditer(r"(\d+)/(\d+) rows", terminal.replace(",", ""))}
    assert len(totals) == 1 and totals.pop() > 5, terminal
    assert "ETA" in terminal
