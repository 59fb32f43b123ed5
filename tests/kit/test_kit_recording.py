"""Cassettes (``misp_cassette``, ``misp_vcr``, ``--misp-record``) as a downstream
project uses them: record from the simulator or a "real" MISP, replay with
the network blocked, match on the POST body, never store a credential."""

from __future__ import annotations

import json

import pytest

# Imported here, before any in-process pytester run, so that pytester's
# sys.modules snapshot keeps them: PyYAML's C extension cannot be imported
# twice, and a yaml package re-imported after the snapshot is restored no
# longer matches the classes the extension holds (cassettes then fail to save
# or load with "expected SCALAR..." / "constructor for the tag None").
import vcr  # noqa: F401
import yaml  # noqa: F401

pytest_plugins = ["pytester"]

EVENT = {
    "Event": {
        "uuid": "6a0e1b2c-0000-4000-8000-000000000001",
        "info": "cassette event",
        "date": "2021-01-01",
        "timestamp": "1609459200",
        "Orgc": {"name": "KIT"},
        "Attribute": [
            {
                "uuid": f"6a0e1b2c-0000-4000-8000-0000000000{i:02d}",
                "type": "domain",
                "category": "Network activity",
                "value": f"host{i}.example.net",
                "to_ids": True,
                "timestamp": str(1609459200 - i * 60),
            }
            for i in range(1, 8)
        ],
    }
}

PROJECT = """
    import httpx
    import pytest

    pytestmark = pytest.mark.misp_data("event.json")

    def search(cassette, **body):
        body = {"returnFormat": "json", "order": "Attribute.timestamp asc", "limit": 3, "page": 1, **body}
        return httpx.post(cassette.url + "/attributes/restSearch", json=body,
                          headers={"Authorization": cassette.api_key, "Accept": "application/json"})

    def test_search(misp_cassette, request):
        first = search(misp_cassette)
        second = search(misp_cassette, page=2)
        assert [a["value"] for a in first.json()["response"]["Attribute"]] == \\
            ["host7.example.net", "host6.example.net", "host5.example.net"]
        assert len(second.json()["response"]["Attribute"]) == 3
        print("SOURCE=" + misp_cassette.source)
        print("SERVER_STARTED=%s" % request.getfixturevalue("misp_server").started)

    def test_engine_cycle(misp_cassette, misp_make_engine, tmp_path):
        engine = misp_make_engine(config=misp_cassette.client_config(tmp_path, {"misp": {"page_size": 4}}))
        [result] = engine.run_once()
        assert (result.completed, result.records) == (True, 7)
"""


@pytest.fixture
def project(pytester):
    pytester.path.joinpath("event.json").write_text(json.dumps(EVENT))
    pytester.makepyfile(test_misp=PROJECT)
    return pytester


def _cassettes(pytester):
    return sorted(pytester.path.joinpath("cassettes", "test_misp").glob("*.yaml"))


def test_replay_only_by_default_and_missing_cassette_fails(project):
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*no cassette *test_search.yaml: record it with `pytest --misp-record`*"]
    )
    assert _cassettes(project) == []


def test_record_from_the_simulator_then_replay_without_it(project):
    recorded = project.runpytest("-p", "no:cacheprovider", "--misp-record", "-s")
    recorded.assert_outcomes(passed=2)
    recorded.stdout.fnmatch_lines(["*SOURCE=simulator*", "*SERVER_STARTED=True*"])
    files = _cassettes(project)
    assert [f.name for f in files] == ["test_engine_cycle.yaml", "test_search.yaml"]
    text = "".join(f.read_text() for f in files)
    from misp_ti.testing.fixtures import DEFAULT_API_KEY

    assert DEFAULT_API_KEY not in text
    assert "authorization" not in text.lower()
    assert "restSearch" in text

    replayed = project.runpytest("-p", "no:cacheprovider", "-s")
    replayed.assert_outcomes(passed=2)
    replayed.stdout.fnmatch_lines(["*SOURCE=replay*", "*SERVER_STARTED=False*"])


def test_a_request_with_another_body_is_not_replayed(project):
    project.runpytest(
        "-p", "no:cacheprovider", "--misp-record", "-k", "test_search"
    ).assert_outcomes(passed=1)
    # same path, same method, different body (page 3): the cassette has no answer for it
    project.makepyfile(
        test_misp=PROJECT.replace("search(misp_cassette, page=2)", "search(misp_cassette, page=3)")
    )
    result = project.runpytest("-p", "no:cacheprovider", "-k", "test_search")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CannotOverwriteExistingCassetteException*"])


def test_recording_again_keeps_nothing_of_the_old_cassette(project):
    project.runpytest("-p", "no:cacheprovider", "--misp-record", "-k", "test_search").assert_outcomes(passed=1)
    [cassette] = _cassettes(project)
    assert '"deleted":0' not in cassette.read_text().replace(" ", "")
    # the test now also asks deleted = 0 (same answers): its re-recorded
    # cassette holds those requests only, not the old ones beside them
    project.makepyfile(test_misp=PROJECT.replace('"page": 1, **body}', '"page": 1, "deleted": 0, **body}'))
    project.runpytest("-p", "no:cacheprovider", "--misp-record", "-k", "test_search").assert_outcomes(passed=1)
    text = cassette.read_text().replace(" ", "")
    assert text.count('"deleted":0') == 2 and text.count("uri:") == 2


def test_body_matching_ignores_json_key_order():
    from types import SimpleNamespace

    from misp_ti.testing.recording import json_body_matcher

    json_body_matcher(
        SimpleNamespace(body=b'{"a": 1, "b": [1, 2]}'), SimpleNamespace(body=b'{"b":[1,2],"a":1}')
    )
    with pytest.raises(AssertionError):
        json_body_matcher(SimpleNamespace(body=b'{"a": 1}'), SimpleNamespace(body=b'{"a": 2}'))


def test_record_from_a_real_misp_scrubs_its_key(project, monkeypatch):
    """``MISP_TI_TEST_MISP_URL``/``MISP_TI_TEST_MISP_KEY`` point recording at another server;
    here a separate simulator with its own key stands in for the real MISP."""
    from misp_ti.simulator import Dataset, MispSimulator
    from misp_ti.testing.clock import ManualClock
    from misp_ti.testing.fixtures import DEFAULT_NOW

    key = "REAL-misp-key-0123456789abcdefghijklmnop"
    dataset = Dataset.from_events([EVENT]).shift_to(DEFAULT_NOW)
    with MispSimulator(dataset, api_key=key, clock=ManualClock(DEFAULT_NOW)) as real:
        monkeypatch.setenv("MISP_TI_TEST_MISP_URL", real.url)
        monkeypatch.setenv("MISP_TI_TEST_MISP_KEY", key)
        result = project.runpytest(
            "-p", "no:cacheprovider", "--misp-record", "-s", "-k", "test_search"
        )
        assert len(real.requests) == 2
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SOURCE=misp*", "*SERVER_STARTED=False*"])
    text = _cassettes(project)[0].read_text()
    assert key not in text and "authorization" not in text.lower()
    monkeypatch.delenv("MISP_TI_TEST_MISP_URL")
    monkeypatch.delenv("MISP_TI_TEST_MISP_KEY")
    project.runpytest("-p", "no:cacheprovider", "-k", "test_search").assert_outcomes(passed=1)


def test_record_from_a_real_misp_needs_its_key(project, monkeypatch):
    monkeypatch.setenv("MISP_TI_TEST_MISP_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("MISP_TI_TEST_MISP_KEY", raising=False)
    result = project.runpytest("-p", "no:cacheprovider", "--misp-record", "-k", "test_search")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*--misp-record with MISP_TI_TEST_MISP_URL set needs the key in MISP_TI_TEST_MISP_KEY*"]
    )


def test_cassette_dir_ini_option_and_vcr_config_override(project):
    project.makeini("[pytest]\nmisp_cassette_dir = recorded\n")
    project.makeconftest(
        """
        import pytest

        @pytest.fixture
        def misp_vcr_config():
            return {"serializer": "json"}

        @pytest.fixture(autouse=True)
        def check_vcr(misp_vcr):
            assert misp_vcr.serializer == "json"
            assert misp_vcr.record_mode in ("none", "all")
        """
    )
    project.runpytest(
        "-p", "no:cacheprovider", "--misp-record", "-k", "test_search"
    ).assert_outcomes(passed=1)
    recorded = project.path / "recorded" / "test_misp" / "test_search.yaml"
    assert recorded.exists()
    json.loads(recorded.read_text())  # the serializer option reached vcrpy
    assert not (project.path / "cassettes").exists()
