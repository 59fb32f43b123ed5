"""misp-ti's pytest kit, registered under the ``pytest11`` entry point.

Installing ``misp-ti[testing]`` makes these available in any project:

fixtures
    ``misp_clock`` (a :class:`~misp_ti.testing.clock.ManualClock`),
    ``misp_dataset``, ``misp_server`` (a factory of MISP simulators),
    ``misp_client_config``, ``misp_engine`` / ``misp_make_engine`` (old
    names ``engine`` / ``make_engine`` still work, with a warning), ``misp_vcr`` /
    ``misp_cassette`` / ``misp_vcr_config``, ``elasticsearch_url``, ``misp_es_model``,
    ``install_misp_plugin``;
markers
    ``misp_data(...)``, ``misp_plugins(...)``;
options
    ``--misp-record``, ini ``misp_cassette_dir``;
modules
    :mod:`misp_ti.testing.strategies` (hypothesis), :mod:`misp_ti.simulator`,
    :mod:`misp_ti.testing.es_model` (a model of Elasticsearch's server rules),
    :mod:`misp_ti.testing.recorded` (replays exchanges recorded from a real MISP).

pytest imports this module in every project where misp-ti is installed, so
it stays cheap: it imports only pytest and the standard library; the
simulator, the engine, vcrpy and Docker are imported inside the fixtures that
need them. See ``docs/testing-your-plugin.md``.
"""

from __future__ import annotations

from typing import Any

from misp_ti.testing.plugins import InstalledPlugin, install_entry_point_plugin

# No runtime module imports this package (the simulator lives in
# misp_ti.simulator); only the old name misp_ti.testing.simulator (see misp_ti._moved) may be
# imported where pytest is absent, so the fixtures load only where it exists,
# which is always the case when pytest loads this module as a plugin.
try:
    import pytest as _pytest
except ImportError:  # a plain install importing misp_ti.testing.simulator
    _pytest = None  # type: ignore[assignment]

if _pytest is not None:
    from misp_ti.testing.fixtures import (
        engine,
        install_misp_plugin,
        make_engine,
        misp_client_config,
        misp_clock,
        misp_dataset,
        misp_engine,
        misp_make_engine,
        misp_server,
    )
    from misp_ti.testing.recording import misp_cassette, misp_vcr, misp_vcr_config
    from misp_ti.testing.services import elasticsearch_url, misp_es_model

#: The public names of the kit (a test checks they all exist and are documented).
FIXTURES = (
    "misp_clock",
    "misp_dataset",
    "misp_server",
    "misp_client_config",
    "misp_engine",
    "misp_make_engine",
    "misp_vcr_config",
    "misp_vcr",
    "misp_cassette",
    "elasticsearch_url",
    "misp_es_model",
    "install_misp_plugin",
)
#: Old fixture names, still provided with a DeprecationWarning: old -> new.
DEPRECATED_FIXTURES = {"engine": "misp_engine", "make_engine": "misp_make_engine"}
#: The kit's environment variables (:mod:`misp_ti.testing.env`).
ENV_VARS = ("MISP_TI_TEST_MISP_URL", "MISP_TI_TEST_MISP_KEY", "MISP_TI_TEST_ES_URL", "MISP_TI_TEST_REQUIRE_ES", "MISP_TI_TEST_ES_IMAGE")
MARKERS = ("misp_data", "misp_plugins")
OPTIONS = ("--misp-record",)
INI_OPTIONS = ("misp_cassette_dir",)

_MARKER_LINES = (
    "misp_data(*sources, shift_to_now=True, now=None, synthetic=None): the MISP events the misp_server "
    "fixture serves: paths (relative to the test file), Dataset objects or event dicts; default: misp-ti's "
    "sample data; shift_to_now moves the newest attribute to the clock's time; now starts misp_clock there",
    "misp_plugins(*plugins): plugin modules, module paths or objects the engine fixture registers",
)


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("misp-ti", "misp-ti test kit")
    group.addoption(
        "--misp-record",
        action="store_true",
        default=False,
        help="(Re-)record misp_cassette cassettes: from the MISP at $MISP_TI_TEST_MISP_URL (key in "
        "$MISP_TI_TEST_MISP_KEY) if set, else from the simulator. Default: replay only, network blocked.",
    )
    parser.addini(
        "misp_cassette_dir",
        "Folder of misp_cassette cassettes, relative to the rootdir (default: 'cassettes' next to each test file).",
        default="",
    )


def pytest_configure(config: Any) -> None:
    for line in _MARKER_LINES:
        config.addinivalue_line("markers", line)


__all__ = [
    "DEPRECATED_FIXTURES",
    "ENV_VARS",
    "FIXTURES",
    "INI_OPTIONS",
    "MARKERS",
    "OPTIONS",
    "InstalledPlugin",
    "elasticsearch_url",
    "engine",
    "install_entry_point_plugin",
    "install_misp_plugin",
    "make_engine",
    "misp_cassette",
    "misp_client_config",
    "misp_clock",
    "misp_dataset",
    "misp_engine",
    "misp_es_model",
    "misp_make_engine",
    "misp_server",
    "misp_vcr",
    "misp_vcr_config",
]
