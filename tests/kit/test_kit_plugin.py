"""The pytest kit as a downstream project sees it: names, markers, options,
laziness, ``elasticsearch_url`` and entry-point plugin installation.

Each test writes a small project with ``pytester`` and runs pytest on it, the
way a plugin author's CI would; renaming or dropping a public name of the kit
breaks one of these tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

import misp_ti.testing as kit

pytest_plugins = ["pytester"]

NO_DOCKER = "unix:///nonexistent/misp-ti-test/docker.sock"


def test_the_plugin_is_registered_under_pytest11():
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("misp_ti") == "misp_ti.testing"


def test_importing_the_kit_loads_nothing_heavy():
    heavy = [
        "hypothesis",
        "vcr",
        "docker",
        "testcontainers",
        "httpx",
        "pydantic",
        "misp_ti.engine",
        "misp_ti.config",
        "misp_ti.simulator",
        "misp_ti.testing.strategies",
    ]
    code = f"import sys, misp_ti.testing; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_every_public_fixture_is_offered_and_documented(pytester):
    text = pytester.runpytest("--fixtures").stdout.str()
    for name in kit.FIXTURES:
        match = re.search(
            rf"^{name}( \[\w+ scope\])? -- .*misp_ti/testing/\w+\.py:\d+\n(.*)$", text, re.M
        )
        assert match, f"fixture {name} is not offered by misp_ti.testing"
        assert match.group(2).strip() and "no docstring" not in match.group(2), (
            f"fixture {name} has no docstring"
        )


def test_kit_variables_share_one_prefix_and_old_names_still_read(monkeypatch):
    from pathlib import Path

    from misp_ti.testing import env

    assert set(kit.ENV_VARS) == set(env.OLD_NAMES)
    assert all(name.startswith(env.PREFIX) for name in kit.ENV_VARS)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "testing-your-plugin.md").read_text()
    assert [name for name in kit.ENV_VARS if f"`{name}`" not in doc] == []
    monkeypatch.delenv(env.MISP_KEY, raising=False)
    monkeypatch.setenv("MISP_TI_MISP_KEY", "old-key")
    with pytest.warns(DeprecationWarning, match="MISP_TI_MISP_KEY is deprecated: set MISP_TI_TEST_MISP_KEY"):
        assert env.kit_env(env.MISP_KEY) == "old-key"
    monkeypatch.setenv(env.MISP_KEY, "new-key")
    assert env.kit_env(env.MISP_KEY) == "new-key"  # the new name wins
    monkeypatch.delenv("MISP_TI_MISP_KEY")
    monkeypatch.delenv(env.MISP_KEY)
    assert env.kit_env(env.MISP_KEY, "default") == "default"


def test_markers_and_options_are_registered(pytester):
    markers = pytester.runpytest("--markers").stdout.str()
    for name in kit.MARKERS:
        assert f"@pytest.mark.{name}(" in markers, name
    help_text = pytester.runpytest("--help").stdout.str()
    for option in kit.OPTIONS:
        assert option in help_text
    for ini in kit.INI_OPTIONS:
        assert ini in help_text


def test_markers_pass_strict_marker_checking(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.misp_data("sample", shift_to_now=False)
        @pytest.mark.misp_plugins("os")
        def test_marked(request):
            assert request.node.get_closest_marker("misp_data").kwargs == {"shift_to_now": False}
            assert request.node.get_closest_marker("misp_plugins").args == ("os",)
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


# elasticsearch_url -------------------------------------------------------------------

ES_PROJECT = """
    def test_needs_es(elasticsearch_url):
        print("ES_URL=" + elasticsearch_url)
        assert elasticsearch_url.startswith("http")
"""


def test_elasticsearch_url_is_taken_from_the_environment(pytester, monkeypatch):
    monkeypatch.setenv("MISP_TI_TEST_ES_URL", "http://127.0.0.1:9299")
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    pytester.makepyfile(ES_PROJECT)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ES_URL=http://127.0.0.1:9299*"])


def test_elasticsearch_url_skips_with_its_reason_without_url_or_docker(pytester, monkeypatch):
    monkeypatch.delenv("MISP_TI_TEST_ES_URL", raising=False)
    monkeypatch.delenv("MISP_TI_TEST_REQUIRE_ES", raising=False)
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    pytester.makepyfile(ES_PROJECT)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*SKIPPED*no Elasticsearch for this test: MISP_TI_TEST_ES_URL is not set and no Docker engine answers*",
        ]
    )
    assert "MISP_TI_TEST_REQUIRE_ES=1 makes this a failure" in result.stdout.str()


def test_elasticsearch_url_fails_instead_when_required(pytester, monkeypatch):
    monkeypatch.delenv("MISP_TI_TEST_ES_URL", raising=False)
    monkeypatch.setenv("MISP_TI_TEST_REQUIRE_ES", "1")
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    pytester.makepyfile(ES_PROJECT)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*no Elasticsearch for this test*MISP_TI_TEST_REQUIRE_ES=1 turns this skip into a failure*"]
    )


# entry-point plugins -------------------------------------------------------------------

POLICY_PLUGIN = '''
    """A throw-away expiry policy plugin."""
    from datetime import timedelta

    import misp_ti
    from misp_ti.model import Expiry

    MISP_TI_EXPIRY_POLICIES = ("one-day",)

    @misp_ti.hookimpl
    def compute_expiry(stream, record, doc, ctx):
        if ctx.policy != "one-day":
            return None
        return Expiry(False, ctx.now + timedelta(days=1), "one-day")
'''


def test_install_misp_plugin_fixture_makes_an_entry_point_plugin(pytester):
    pytester.makepyfile(
        f"""
        from importlib.metadata import entry_points

        from misp_ti.manager import POLICIES_ATTR, declared_names, make_plugin_manager

        SOURCE = {POLICY_PLUGIN!r}

        def test_installed(install_misp_plugin):
            install_misp_plugin("oneday", SOURCE)
            assert "oneday" in [ep.name for ep in entry_points(group="misp_ti")]
            pm = make_plugin_manager(load_entrypoints=True)
            assert declared_names(pm, POLICIES_ATTR)["one-day"] == "oneday"
            assert make_plugin_manager(load_entrypoints=False).get_plugin("oneday") is None

        def test_gone_after_the_test():
            assert "oneday" not in [ep.name for ep in entry_points(group="misp_ti")]
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


def test_install_entry_point_plugin_function_and_uninstall(tmp_path):
    from importlib.metadata import entry_points

    from misp_ti.manager import make_plugin_manager

    with kit.install_entry_point_plugin(
        tmp_path, "kit_probe", POLICY_PLUGIN, module="kitprobe.policy"
    ) as plugin:
        assert plugin.dist_name == "misp-ti-test-plugin-kit-probe"
        pm = make_plugin_manager(load_entrypoints=True)
        registered = pm.get_plugin("kit_probe")
        assert registered is not None and registered.__name__ == "kitprobe.policy"
    assert "kit_probe" not in [ep.name for ep in entry_points(group="misp_ti")]
    assert "kitprobe.policy" not in sys.modules
    assert make_plugin_manager(load_entrypoints=True).get_plugin("kit_probe") is None


@pytest.mark.parametrize("bad", ["1abc", "a-b", "a..b"])
def test_install_entry_point_plugin_refuses_bad_module_names(tmp_path, bad):
    with pytest.raises(ValueError, match="not a valid module name"):
        kit.install_entry_point_plugin(tmp_path, "x", "", module=bad)


def test_source_is_dedented(tmp_path):
    source = textwrap.indent("VALUE = 42\n", "        ")
    with kit.install_entry_point_plugin(tmp_path, "dedent_probe", source) as plugin:
        assert (plugin.site_dir / "dedent_probe.py").read_text() == "VALUE = 42\n"


def test_the_docs_walkthrough_runs(pytester):
    """docs/testing-your-plugin.md, sections 2 and 3, copied into a project and run."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "testing-your-plugin.md").read_text()
    blocks = dict(re.findall(r"```python\n# (\S+)\n(.*?)```", doc, re.S))
    assert set(blocks) == {"src/my_plugin/tlp_expiry.py", "tests/test_tlp_expiry.py"}
    pytester.mkpydir("my_plugin")
    pytester.path.joinpath("my_plugin", "tlp_expiry.py").write_text(blocks["src/my_plugin/tlp_expiry.py"])
    pytester.makepyfile(test_tlp_expiry=blocks["tests/test_tlp_expiry.py"])
    pytester.syspathinsert()
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


# misp_es_model -------------------------------------------------------------------

def test_misp_es_model_serves_the_model_to_the_real_client(pytester):
    pytester.makepyfile(
        """
        from elasticsearch import Elasticsearch

        def test_model(misp_es_model, misp_clock):
            es = misp_es_model(version=(8, 15))
            client = Elasticsearch(es.url)
            # the model applies the built-in logs template: a plain index under logs-*-* is refused
            resp = client.options(ignore_status=400).indices.create(index="logs-a-b")
            assert resp.meta.status == 400 and "creates data streams only" in str(resp.body)
            client.indices.create_data_stream(name="logs-a-b")
            client.index(index="logs-a-b", op_type="create", document={"@timestamp": misp_clock.now().isoformat(), "x": "1"})
            assert [h["_source"]["x"] for h in es.search("logs-*")] == ["1"]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
