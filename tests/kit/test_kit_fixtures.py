"""The simulator-backed fixtures used from a downstream project (pytester):
``misp_clock``, ``misp_dataset``, ``misp_server``, ``misp_client_config``,
``misp_engine``/``misp_make_engine`` (and their old names) and the ``misp_data``/``misp_plugins`` markers."""

from __future__ import annotations

import json

# pytester's in-process runs forget the modules they imported, but a package
# kept from before keeps its attribute: an inner test's ``from
# misp_ti.default_plugins import misp_fetch`` would then get an earlier run's
# module (another CLIENT key) while the engine imports a fresh one. Imported
# here, every run shares this one (see docs/testing-your-plugin.md).
import misp_ti.default_plugins.misp_fetch  # noqa: F401

pytest_plugins = ["pytester"]

# One small event: two attributes, one of them in an object; timestamps in 2020.
SMALL_EVENT = {
    "Event": {
        "uuid": "5e0e1b2c-0000-4000-8000-000000000001",
        "info": "kit test event",
        "date": "2020-01-01",
        "timestamp": "1577880000",
        "Orgc": {"name": "KIT", "uuid": "5e0e1b2c-0000-4000-8000-0000000000aa"},
        "Attribute": [
            {
                "uuid": "5e0e1b2c-0000-4000-8000-000000000011",
                "type": "ip-dst",
                "category": "Network activity",
                "value": "198.51.100.7",
                "to_ids": True,
                "timestamp": "1577880000",
            },
        ],
        "Object": [
            {
                "uuid": "5e0e1b2c-0000-4000-8000-000000000021",
                "name": "domain-ip",
                "meta-category": "network",
                "timestamp": "1577800000",
                "Attribute": [
                    {
                        "uuid": "5e0e1b2c-0000-4000-8000-000000000031",
                        "type": "domain",
                        "category": "Network activity",
                        "value": "evil.example.com",
                        "to_ids": True,
                        "timestamp": "1577800000",
                        "object_relation": "domain",
                    },
                ],
            },
        ],
    }
}


def _write_event(pytester) -> None:
    pytester.path.joinpath("data").mkdir()
    pytester.path.joinpath("data", "event.json").write_text(json.dumps(SMALL_EVENT))


def test_default_server_serves_the_sample_shifted_to_the_clock(pytester):
    pytester.makepyfile(
        """
        import httpx
        from datetime import datetime, timezone
        from misp_ti.testing.fixtures import DEFAULT_API_KEY, DEFAULT_NOW
        from misp_ti.simulator import Dataset

        def test_default(misp_server, misp_dataset, misp_clock):
            assert misp_clock.now() == DEFAULT_NOW
            assert len(misp_dataset) == len(Dataset.sample()) > 1000
            assert misp_dataset.newest_timestamp() == int(DEFAULT_NOW.timestamp())
            server = misp_server()
            assert server is misp_server()          # the default one is shared
            assert server.url.startswith("http://127.0.0.1:")
            body = {"returnFormat": "json", "limit": 5, "page": 1, "order": "Attribute.timestamp desc"}
            answer = httpx.post(server.url + "/attributes/restSearch", json=body,
                                headers={"Authorization": DEFAULT_API_KEY, "Accept": "application/json"})
            assert answer.status_code == 200
            newest = answer.json()["response"]["Attribute"][0]
            assert int(newest["timestamp"]) == int(DEFAULT_NOW.timestamp())
            denied = httpx.post(server.url + "/attributes/restSearch", json=body,
                                headers={"Authorization": "wrong"})
            assert denied.status_code == 403

        def test_more_servers(misp_server):
            flaky = misp_server(faults="500@1", api_key="other-key")
            assert flaky.url != misp_server().url
            assert httpx.post(flaky.url + "/attributes/restSearch", json={},
                              headers={"Authorization": "other-key"}).status_code == 500
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_misp_data_marker_paths_shift_now_and_synthetic(pytester):
    _write_event(pytester)
    pytester.makepyfile(
        """
        import pytest
        from datetime import datetime, timezone

        NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)

        @pytest.mark.misp_data("data/event.json", shift_to_now=False)
        def test_file_unshifted(misp_dataset):
            assert len(misp_dataset) == 2
            assert misp_dataset.newest_timestamp() == 1577880000

        @pytest.mark.misp_data("data", now=NOW)
        def test_directory_shifted_to_now(misp_dataset, misp_clock):
            assert misp_clock.now() == NOW
            assert misp_dataset.newest_timestamp() == int(NOW.timestamp())
            ages = sorted(int(a["timestamp"]) for a in misp_dataset.attributes())
            assert ages[1] - ages[0] == 80000    # relative ages kept

        @pytest.mark.misp_data("data/event.json", "data/event.json")
        def test_several_sources_are_combined(misp_dataset):
            assert len(misp_dataset) == 4

        @pytest.mark.misp_data(synthetic=25)
        def test_synthetic(misp_dataset):
            assert len(misp_dataset) == 25

        @pytest.mark.misp_data(bogus=1)
        def test_unknown_keyword(misp_dataset):
            pass

        @pytest.mark.misp_data("data/missing.json")
        def test_missing_path(misp_dataset):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        ["*misp_data: unknown keyword(s) bogus*", "*missing.json: no such file or directory*"]
    )


def test_client_config_and_engine_run_a_cycle_into_the_store(pytester):
    _write_event(pytester)
    pytester.makepyfile(
        """
        import pytest
        from misp_ti.sinks.sqlite import EmbeddedStore

        @pytest.mark.misp_data("data/event.json")
        def test_cycle(misp_engine, misp_client_config, misp_server, misp_clock, tmp_path):
            assert misp_client_config.misp.url == misp_server().url
            assert misp_client_config.output.sqlite.path == tmp_path / "misp-ti.db"
            assert misp_client_config.plugins.entrypoints is False
            assert misp_engine.config is misp_client_config
            [result] = misp_engine.run_once()
            assert (result.stream, result.completed, result.records) == ("threat_attributes", True, 2)
            assert result.now == misp_clock.now()
            store = EmbeddedStore(misp_client_config.output.sqlite.path)
            assert store.counts(now=misp_clock.now())["active"] == 2
            assert [d["misp"]["attribute"]["uuid"] for d in store.lookup("evil.example.com", now=misp_clock.now())] \\
                == ["5e0e1b2c-0000-4000-8000-000000000031"]
            # 90 days later both have expired
            misp_clock.advance(91 * 86400)
            assert store.counts(now=misp_clock.now())["active"] == 0
            store.close()
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_client_with_a_mock_transport_serves_the_engine_the_documented_way(pytester):
    # docs/testing-your-plugin.md: engine.stash[misp_fetch.CLIENT] = MispClient(..., transport=...)
    pytester.makepyfile(
        """
        import httpx
        from misp_ti.default_plugins import misp_fetch
        from misp_ti.misp.client import MispClient

        def test_injected(make_engine, misp_clock):
            seen = []
            now = str(int(misp_clock.now().timestamp()) - 60)
            attribute = {"id": "1", "uuid": "5e0e1b2c-0000-4000-8000-0000000000f1", "type": "ip-dst",
                         "category": "Network activity", "value": "203.0.113.9", "to_ids": True,
                         "timestamp": now, "event_id": "1", "Event": {"uuid": "5e0e1b2c-0000-4000-8000-0000000000e1"}}

            def handler(request):
                seen.append((request.method, request.url.path))
                return httpx.Response(200, json={"response": {"Attribute": [attribute] if len(seen) == 1 else []}})

            engine = make_engine()
            engine.stash[misp_fetch.CLIENT] = MispClient(
                engine.config.misp, transport=httpx.MockTransport(handler), sleep=lambda s: None
            )
            [result] = engine.run_once()
            assert (result.completed, result.records) == (True, 1)
            assert seen and set(seen) == {("POST", "/attributes/restSearch")}
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_misp_plugins_marker_and_make_engine(pytester):
    _write_event(pytester)
    pytester.makepyfile(
        """
        import pytest
        import misp_ti
        from misp_ti.model import SinkReport
        from misp_ti.sinks.sqlite import EmbeddedStore

        class Collect:
            '''A sink that keeps every batch.'''
            MISP_TI_SINKS = ("collect",)

            def __init__(self):
                self.docs = []

            @misp_ti.hookimpl
            def emit(self, stream, docs, ctx):
                if not ctx.sink_enabled("collect"):
                    return None
                self.docs.extend(docs)
                return SinkReport("collect", delivered=len(docs))

        SINK = Collect()

        @pytest.mark.misp_data("data/event.json")
        @pytest.mark.misp_plugins(SINK)
        def test_marker_plugin(misp_make_engine, misp_engine):
            assert misp_engine.pm.is_registered(SINK)
            collecting = misp_make_engine(SINK, overrides={"output": {"sinks": ["sqlite", "collect"]}})
            [result] = collecting.run_once()
            assert result.delivered == {"sqlite": 2, "collect": 2}
            assert sorted(d["misp"]["attribute"]["type"] for d in SINK.docs) == ["domain", "ip-dst"]

        @pytest.mark.misp_data("data/event.json")
        def test_restart_resumes_from_the_cursor(misp_make_engine, misp_server, misp_clock):
            misp_make_engine().run_once()
            misp_clock.advance(600)
            misp_server().add_attribute(type="url", category="Network activity", value="http://new.example/x")
            [second] = misp_make_engine().run_once()
            # the restarted engine starts at the saved cursor (minus the 2 s overlap),
            # not at initial_interval: it reads the newest old attribute again and the new one
            window_start = misp_server().requests[-1].body["timestamp"][0]
            assert window_start == int(misp_clock.now().timestamp()) - 600 - 2
            assert second.records == 2
            store = EmbeddedStore(misp_make_engine().config.output.sqlite.path)
            assert store.counts(now=misp_clock.now())["latest"] == 3
            store.close()

        @pytest.mark.misp_data("data/event.json")
        def test_faults_are_retried(misp_make_engine, misp_server, tmp_path):
            from misp_ti.testing.fixtures import make_client_config
            flaky = misp_server(faults="500@1,502@2", api_key="k2")
            [result] = misp_make_engine(config=make_client_config(flaky.url, "k2", tmp_path)).run_once()
            assert result.records == 2
            assert [r.status for r in flaky.requests][:3] == [500, 502, 200]
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_installed_plugins_do_not_leak_into_engine(pytester):
    pytester.makepyfile(
        '''
        SOURCE = """
        import misp_ti
        MISP_TI_SINKS = ("leaky",)
        """

        def test_entrypoints_off_by_default(install_misp_plugin, misp_make_engine):
            install_misp_plugin("leaky_plugin", SOURCE)
            assert misp_make_engine().pm.get_plugin("leaky_plugin") is None
            assert misp_make_engine(load_entrypoints=True).pm.get_plugin("leaky_plugin") is not None
        '''
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_old_fixture_names_still_work_with_a_warning(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.filterwarnings("error::DeprecationWarning")
        def test_old_engine_name(request):
            with pytest.raises(DeprecationWarning, match="engine fixture is deprecated: use misp_engine"):
                request.getfixturevalue("engine")

        def test_old_names_give_the_new_fixtures(engine, misp_engine, make_engine, misp_make_engine):
            assert engine is misp_engine and make_engine is misp_make_engine
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "default::DeprecationWarning")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*the make_engine fixture is deprecated: use misp_make_engine*"])
