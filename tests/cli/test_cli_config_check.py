"""``misp-ti config check``: what cannot work (exit 2) and, with ``--connect``,
whether MISP and the sinks answer (one line per check, exit 1 on a failure)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from misp_ti.cli import cli
from misp_ti.testing.fixtures import MispServerFactory


def check(tmp_path: Path, text: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    path = tmp_path / "misp-ti.toml"
    path.write_text(text + f'\n[output.sqlite]\npath = "{tmp_path / "store.db"}"\n[plugins]\nentrypoints = false\n')
    path.chmod(0o600)
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(path), *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def misp(url: str, key: str = "k" * 40) -> str:
    return f'[misp]\nurl = "{url}"\napi_key = "{key}"\nbackoff_initial = "0.01s"\n'


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_an_empty_config_fails_naming_the_api_key_and_the_placeholder_url(tmp_path: Path) -> None:
    code, out, err = check(tmp_path, "", env={"MISP_TI_MISP__API_KEY": None, "MISP_TI_MISP__URL": None})
    assert code == 2 and out == ""
    assert "misp.api_key: not set" in err and "misp.url: still the placeholder https://misp.example.org" in err


def test_a_complete_config_passes(tmp_path: Path) -> None:
    code, out, err = check(tmp_path, misp("https://misp.internal.test"))
    assert code == 0, err
    assert out == "configuration OK\n"
    assert not (tmp_path / "store.db").exists(), "a check creates no store"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[streams.threat_attributes]\nenabled = false\n", "streams: no stream is enabled"),
        ('[expiry.by_type]\nip-dest = "1d"\n', "expiry.by_type.ip-dest: not a MISP type nor an ECS indicator type"),
    ],
)
def test_what_cannot_work_is_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    code, _, err = check(tmp_path, misp("https://misp.internal.test") + text)
    assert code == 2 and expected in err, err


def test_an_unknown_type_gets_the_close_ones_suggested(tmp_path: Path) -> None:
    code, _, err = check(tmp_path, misp("https://misp.internal.test") + '[expiry.by_type]\nip-dest = "1d"\n')
    assert code == 2 and "did you mean ip-dst" in err


def test_expiry_by_type_accepts_misp_and_ecs_types(tmp_path: Path) -> None:
    code, _, err = check(tmp_path, misp("https://misp.internal.test") + '[expiry.by_type]\nip-dst = "1d"\n"filename|sha256" = "2d"\nipv4-addr = "3d"\n')
    assert code == 0, err


def test_errors_from_the_environment_name_the_variable(tmp_path: Path) -> None:
    env = {"MISP_TI_MISP__PAGE_SIZE": "0"}
    code, _, err = check(tmp_path, misp("https://misp.internal.test"), env=env)
    assert code == 2 and "MISP_TI_MISP__PAGE_SIZE (environment, misp.page_size): bad value 0" in err
    assert "invalid environment override:" in err and "misp-ti.toml" not in err  # the file is not at fault
    env = {"MISP_TI_EXPIRY__BY_TYPE": '{"nonsense": "1d"}'}
    code, _, err = check(tmp_path, misp("https://misp.internal.test"), env=env)
    assert code == 2 and "MISP_TI_EXPIRY__BY_TYPE (environment, expiry.by_type.nonsense)" in err
    # the same mistake in the file names the key only
    code, _, err = check(tmp_path, misp("https://misp.internal.test").replace("[misp]\n", "[misp]\npage_size = 0\n"))
    assert code == 2 and "misp.page_size: bad value 0" in err and "MISP_TI_" not in err


def test_filters_can_be_set_from_the_environment_as_json(tmp_path: Path) -> None:
    env = {"MISP_TI_STREAMS__THREAT_ATTRIBUTES__FILTERS": '{"tags": ["tlp:clear"], "to_ids": 1}'}
    path = tmp_path / "c.toml"
    path.write_text(misp("https://misp.internal.test"))
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(path)], env=env)
    assert result.exit_code == 0, result.stderr
    assert '"tags": [\n          "tlp:clear"\n        ]' in result.stdout and '"to_ids": 1' in result.stdout
    env = {"MISP_TI_STREAMS__THREAT_ATTRIBUTES__FILTERS": '{"page": 2}'}
    code, _, err = check(tmp_path, misp("https://misp.internal.test"), env=env)
    assert code == 2 and "MISP_TI_STREAMS__THREAT_ATTRIBUTES__FILTERS (environment, streams.threat_attributes.filters.page): not allowed" in err


def test_connect_against_the_simulator_passes(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    code, out, err = check(tmp_path, misp(sim.url, misp_server.api_key), "--connect")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "configuration OK"
    assert lines[1] == f"misp {sim.url}: version... OK (MISP 2.5.1)"
    assert lines[2] == "misp: key accepted... OK"
    assert lines[3].startswith("misp: decaying models... OK (") and lines[3].endswith(" visible)")
    assert lines[4] == "misp: restSearch threat_attributes... OK (answered, 1 attribute on a page of 1)"
    assert lines[5] == f"sqlite {tmp_path / 'store.db'}: writable... OK (will be created)"
    assert len(lines) == 6
    assert [r.path for r in sim.requests] == ["/servers/getVersion", "/decayingModel/index", "/attributes/restSearch"]
    assert not (tmp_path / "store.db").exists()


def test_connect_names_a_refused_key(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    code, out, _ = check(tmp_path, misp(sim.url, "wrong-key-" + "0" * 30), "--connect")
    assert code == 1
    assert f"misp {sim.url}: version... OK" in out
    assert "misp: key accepted... FAILED (MISP rejected the API key" in out
    assert "wrong-key-" not in out


def test_connect_against_a_closed_port_fails_naming_the_check(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, _ = check(tmp_path, misp(url), "--connect")
    assert code == 1
    assert f"misp {url}: version... FAILED (" in out and "cannot connect" in out
    assert "misp: restSearch threat_attributes... SKIPPED" in out
    # the sinks are still checked
    assert f"sqlite {tmp_path / 'store.db'}: writable... OK" in out


def test_connect_finds_a_store_that_is_not_a_database_and_an_unreachable_cluster(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    (tmp_path / "store.db").write_text("not a database, just text " * 100)
    port = closed_port()
    text = misp(sim.url, misp_server.api_key) + f'[output]\nsinks = ["sqlite", "elasticsearch"]\n[output.elasticsearch]\nhosts = ["http://127.0.0.1:{port}"]\n'
    code, out, err = check(tmp_path, text, "--connect")
    assert code == 1, err
    assert f"sqlite {tmp_path / 'store.db'}: writable... FAILED (file is not a database)" in out
    assert f"elasticsearch http://127.0.0.1:{port}: version... FAILED (Elasticsearch is unreachable" in out
    assert "elasticsearch: privileges... SKIPPED" in out


def test_connect_asks_elasticsearch_its_version_and_privileges(misp_server: MispServerFactory, tmp_path: Path) -> None:
    from helpers.reliability import FakeElasticsearch

    sim = misp_server()
    with FakeElasticsearch() as es:
        text = misp(sim.url, misp_server.api_key) + (
            f'[output]\nsinks = ["elasticsearch"]\n[output.elasticsearch]\nhosts = ["{es.url}"]\n'
            f'username = "misp-ti"\npassword = "es-secret-password"\n[state]\npath = "{tmp_path / "state.db"}"\n'
        )
        code, out, err = check(tmp_path, text, "--connect")
        asked = [(method, path) for method, path, _ in es.requests]
        url = es.url
    assert f"elasticsearch {url}: version... OK (Elasticsearch 8.17.0)" in out
    # this fake cluster answers _has_privileges with no privileges at all: provision --check's verdict
    assert code == 1
    assert "elasticsearch: privileges... FAILED (lacks: create_doc, create_index" in out, out
    assert ("GET", "/") in asked and ("POST", "/_security/user/_has_privileges") in asked
    assert all(method in ("GET", "HEAD", "POST") for method, _ in asked)  # asks; installs nothing
    assert "es-secret-password" not in out + err


def test_connect_never_prints_a_password_held_in_a_url(tmp_path: Path) -> None:
    port = closed_port()
    text = misp("https://misp.internal.test") + (
        f'[output]\nsinks = ["elasticsearch"]\n[output.elasticsearch]\nhosts = ["http://127.0.0.1:{port}"]\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n'
    )
    code, out, err = check(tmp_path, text, "--connect", env={"MISP_TI_MISP__URL": f"http://127.0.0.1:{port}"})
    assert code == 1
    assert f"misp http://127.0.0.1:{port}: version... FAILED" in out
    assert f"elasticsearch http://127.0.0.1:{port}: version... FAILED" in out
    # a password in the MISP URL is refused (it would replace the key), naming the variable, not echoed
    refused, out, err = check(tmp_path, text, "--connect", env={"MISP_TI_MISP__URL": f"http://user:misp-pw-456@127.0.0.1:{port}"})
    assert refused == 2 and "MISP_TI_MISP__URL" in out + err
    assert "misp-pw-456" not in out + err
    # credentials inside an Elasticsearch URL are refused up front, and not echoed
    refused_code, refused_out, refused_err = check(
        tmp_path, text.replace("http://127.0.0.1", "http://elastic:pw-in-url-123@127.0.0.1"), "--connect"
    )
    assert refused_code == 2 and "pw-in-url-123" not in refused_out + refused_err


def test_connect_checks_every_named_source(misp_server: MispServerFactory, tmp_path: Path) -> None:
    sim = misp_server()
    closed = f"http://127.0.0.1:{closed_port()}"
    text = (
        f'[misp]\nbackoff_initial = "0.01s"\n'
        f'[misp.ours]\nurl = "{sim.url}"\napi_key = "{misp_server.api_key}"\n'
        f'[misp.partner]\nurl = "{closed}"\napi_key = "{"p" * 40}"\n'
    )
    code, out, _ = check(tmp_path, text, "--connect")
    assert code == 1, out
    assert f"misp ours {sim.url}: version... OK (MISP 2.5.1)" in out
    assert "misp ours: restSearch threat_attributes... OK" in out
    assert f"misp partner {closed}: version... FAILED (" in out
    assert "misp partner: restSearch threat_attributes... SKIPPED" in out
    assert [r.path for r in sim.requests] == ["/servers/getVersion", "/decayingModel/index", "/attributes/restSearch"]
