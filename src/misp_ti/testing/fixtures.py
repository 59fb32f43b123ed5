"""Fixtures backed by the MISP simulator: clock, dataset, server, config, engine.

Heavy imports (the simulator, the engine, pydantic) happen inside the
fixtures, so that loading the pytest plugin costs nothing in projects that
do not use them.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from misp_ti.config import Config
    from misp_ti.engine import Engine
    from misp_ti.simulator import Dataset, MispSimulator
    from misp_ti.testing.clock import ManualClock
    from misp_ti.testing.plugins import InstalledPlugin

#: Where ``misp_clock`` starts unless ``misp_data(now=...)`` says otherwise. A
#: fixed instant keeps restSearch bodies (their time window) and therefore
#: cassettes identical from run to run.
DEFAULT_NOW = datetime(2026, 1, 1, tzinfo=UTC)
#: The API key the simulator expects by default (40 characters, like a MISP key).
DEFAULT_API_KEY = "misp-ti-test-key-000000000000000000000000"
STORE_FILE = "misp-ti.db"


def _marker_kwargs(
    request: pytest.FixtureRequest, name: str
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    marker = request.node.get_closest_marker(name)
    return (tuple(marker.args), dict(marker.kwargs)) if marker else ((), {})


def make_client_config(
    url: str, api_key: str, directory: str | Path, overrides: dict[str, Any] | None = None
) -> Config:
    """A :class:`~misp_ti.config.Config` for tests: MISP at ``url``, the embedded
    store in ``directory``, no installed entry-point plugins, and retry delays
    short enough that fault-injection tests take milliseconds.

    ``overrides`` is a nested dict merged over these settings, e.g.
    ``{"expiry": {"policy": "refetch"}, "streams": {"threat": {"enabled": True}}}``.
    """
    from misp_ti.config import build_config, merge_settings

    directory = Path(directory)
    data: dict[str, Any] = {
        "misp": {
            "url": url,
            "api_key": api_key,
            "page_size": 500,
            "backoff_initial": "0.01s",
            "backoff_max": "1s",
            "request_timeout": "10s",
        },
        # read back far enough that the whole (shifted) sample data is fetched; a
        # table given for a stream switches it on unless `enabled` says otherwise
        "streams": {
            "threat_attributes": {"enabled": True, "initial_interval": "3650d"},
            "threat": {"enabled": False, "initial_interval": "3650d"},
        },
        "output": {"sinks": ["sqlite"], "sqlite": {"path": str(directory / STORE_FILE)}},
        "plugins": {"entrypoints": False},
    }
    return build_config(merge_settings(data, overrides or {}), source="misp_client_config")


# clock and data ----------------------------------------------------------------


@pytest.fixture
def misp_clock(request: pytest.FixtureRequest) -> ManualClock:
    """A :class:`~misp_ti.testing.clock.ManualClock` shared by the simulator and the engine.

    Starts at ``misp_data(now=...)`` if given, else at :data:`DEFAULT_NOW`;
    move it with ``advance()`` / ``set()`` to test expiry.
    """
    from misp_ti.testing.clock import ManualClock

    _, kwargs = _marker_kwargs(request, "misp_data")
    now = kwargs.get("now") or DEFAULT_NOW
    if not isinstance(now, datetime):
        raise pytest.UsageError(f"misp_data(now=...) expects an aware datetime, got {now!r}")
    return ManualClock(start=now)


@functools.cache
def _sample() -> Dataset:
    from misp_ti.simulator import Dataset

    return Dataset.sample()  # immutable, so one load serves every test


def _load_source(source: Any, base: Path) -> Dataset:
    from misp_ti.simulator import Dataset

    if isinstance(source, Dataset):
        return source
    if isinstance(source, dict):
        return Dataset.from_events([source])
    if isinstance(source, list | tuple):
        return Dataset.from_events(list(source))
    if source == "sample":
        return _sample()
    if isinstance(source, str | Path):
        path = Path(source)
        return Dataset.from_path(path if path.is_absolute() else base / path)
    raise pytest.UsageError(
        f"misp_data: cannot use {source!r}; give paths, 'sample', Dataset objects or MISP event dicts"
    )


@pytest.fixture
def misp_dataset(request: pytest.FixtureRequest, misp_clock: ManualClock) -> Dataset:
    """The events the simulator serves (a :class:`~misp_ti.simulator.Dataset`).

    From ``@pytest.mark.misp_data(...)``; default: misp-ti's sample of real
    MISP events, shifted so that its newest attribute is ``misp_clock.now()``
    (relative ages kept). Datasets are immutable: build a changed one with
    ``Dataset.from_events(ds.events())`` or change the live server with
    ``misp_server().add_attribute(...)`` / ``modify_attribute`` / ``delete_attribute``.
    """
    from misp_ti.simulator import Dataset

    args, kwargs = _marker_kwargs(request, "misp_data")
    unknown = set(kwargs) - {"shift_to_now", "now", "synthetic"}
    if unknown:
        raise pytest.UsageError(
            f"misp_data: unknown keyword(s) {', '.join(sorted(unknown))}; "
            "allowed: shift_to_now, now, synthetic"
        )
    if kwargs.get("synthetic"):
        dataset = Dataset.synthetic(int(kwargs["synthetic"]), newest=misp_clock.now())
    elif not args:
        dataset = _sample()
    else:
        base = Path(request.node.path).parent
        parts = [_load_source(source, base) for source in args]
        dataset = (
            parts[0]
            if len(parts) == 1
            else Dataset.from_events([e for p in parts for e in p.events()])
        )
    if kwargs.get("shift_to_now", True):
        dataset = dataset.shift_to(misp_clock.now())
    return dataset


# the simulated MISP ---------------------------------------------------------------


class MispServerFactory:
    """What the ``misp_server`` fixture returns: call it to get a running simulator.

    ``misp_server()`` returns the test's default simulator (``misp_dataset``,
    ``misp_clock``, :data:`DEFAULT_API_KEY`, no faults), started once and
    shared by ``misp_client_config`` and ``misp_engine``. Any argument starts an
    additional simulator. All are stopped when the test ends.
    """

    def __init__(self, dataset: Dataset, clock: ManualClock, stack: ExitStack) -> None:
        self.dataset = dataset
        self.clock = clock
        self.api_key = DEFAULT_API_KEY
        self._stack = stack
        self._default: MispSimulator | None = None

    def __call__(
        self,
        dataset: Dataset | None = None,
        *,
        api_key: str | None = None,
        faults: str | None = None,
        clock: ManualClock | None = None,
        seed: int = 0,
        **options: Any,
    ) -> MispSimulator:
        from misp_ti.simulator import MispSimulator

        is_default = (
            dataset is None
            and api_key is None
            and faults is None
            and clock is None
            and not options
            and seed == 0
        )
        if is_default and self._default is not None:
            return self._default
        simulator = MispSimulator(
            dataset if dataset is not None else self.dataset,
            api_key=api_key or DEFAULT_API_KEY,
            clock=clock or self.clock,
            faults=faults,
            seed=seed,
            **options,
        )
        self._stack.enter_context(simulator)
        if is_default:
            self._default = simulator
        return simulator

    @property
    def started(self) -> bool:
        """Whether the default simulator is running (replayed cassettes never start it)."""
        return self._default is not None


@pytest.fixture
def misp_server(misp_dataset: Dataset, misp_clock: ManualClock) -> Iterator[MispServerFactory]:
    """A factory of MISP simulators on free loopback ports (see :class:`MispServerFactory`)."""
    with ExitStack() as stack:
        yield MispServerFactory(misp_dataset, misp_clock, stack)


@pytest.fixture
def misp_client_config(misp_server: MispServerFactory, tmp_path: Path) -> Config:
    """A :class:`~misp_ti.config.Config` pointed at ``misp_server()`` with the embedded store in ``tmp_path``."""
    simulator = misp_server()
    return make_client_config(simulator.url, misp_server.api_key, tmp_path)


# the engine -------------------------------------------------------------------------


@pytest.fixture
def misp_make_engine(
    misp_clock: ManualClock, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Engine]]:
    """A factory of :class:`~misp_ti.engine.Engine` objects wired to the simulator.

    ``misp_make_engine(*plugins, config=None, overrides=None, load_entrypoints=False, progress=None)``:
    ``plugins`` are registered after the built-ins (so they are asked first);
    ``overrides`` is merged over ``misp_client_config``; installed
    entry-point plugins are ignored unless ``load_entrypoints=True``. Engines
    made here share the store in ``tmp_path`` (a second engine is a restart)
    and are closed when the test ends.
    """
    from misp_ti.engine import Engine
    from misp_ti.manager import plugin_manager_for

    engines: list[Engine] = []

    def factory(
        *plugins: Any,
        config: Config | None = None,
        overrides: dict[str, Any] | None = None,
        load_entrypoints: bool = False,
        progress: Any = None,
    ) -> Engine:
        # the default simulator starts only when no config is given (a replayed
        # cassette needs none)
        cfg = config or request.getfixturevalue("misp_client_config")
        if overrides:
            from misp_ti.config import build_config, merge_settings

            cfg = build_config(
                merge_settings(cfg.model_dump(mode="python"), overrides),
                source="misp_make_engine overrides",
            )
        pm = plugin_manager_for(cfg, plugins, load_entrypoints=load_entrypoints)
        built = Engine(cfg, pm=pm, clock=misp_clock, progress=progress)
        engines.append(built)
        return built

    yield factory
    for built in reversed(engines):
        built.close()


@pytest.fixture
def misp_engine(misp_make_engine: Callable[..., Engine], request: pytest.FixtureRequest) -> Engine:
    """An :class:`~misp_ti.engine.Engine` on the simulator and a fresh embedded store,
    with the plugins named by ``@pytest.mark.misp_plugins(...)`` registered."""
    plugins, _ = _marker_kwargs(request, "misp_plugins")
    return misp_make_engine(*plugins)


def _renamed_fixture(old: str, new: str) -> None:
    warnings.warn(f"the {old} fixture is deprecated: use {new}", DeprecationWarning, stacklevel=3)


@pytest.fixture
def make_engine(misp_make_engine: Callable[..., Engine]) -> Callable[..., Engine]:
    """Deprecated name of :func:`misp_make_engine`."""
    _renamed_fixture("make_engine", "misp_make_engine")
    return misp_make_engine


@pytest.fixture
def engine(misp_engine: Engine) -> Engine:
    """Deprecated name of :func:`misp_engine`."""
    _renamed_fixture("engine", "misp_engine")
    return misp_engine


# plugins installed through an entry point -------------------------------------------


@pytest.fixture
def install_misp_plugin(tmp_path: Path) -> Iterator[Callable[..., InstalledPlugin]]:
    """``install_misp_plugin(name, source, **kw)``: make ``source`` an installed
    ``misp_ti`` entry-point plugin for this test (see
    :func:`misp_ti.testing.install_entry_point_plugin`); removed at teardown."""
    from misp_ti.testing.plugins import install_entry_point_plugin

    installed: list[InstalledPlugin] = []

    def install(name: str, source: str, **kwargs: Any) -> InstalledPlugin:
        plugin = install_entry_point_plugin(
            tmp_path / "entry-point-plugins", name, source, **kwargs
        )
        installed.append(plugin)
        return plugin

    yield install
    for plugin in reversed(installed):
        plugin.uninstall()


__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_NOW",
    "MispServerFactory",
    "engine",
    "install_misp_plugin",
    "make_client_config",
    "make_engine",
    "misp_client_config",
    "misp_clock",
    "misp_dataset",
    "misp_server",
]
