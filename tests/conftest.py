"""Fixtures shared by misp-ti's own tests.

The kit's fixtures (``misp_server``, ``misp_client_config``, ``make_engine``,
``engine``, ...) are always available too: ``misp_ti.testing`` is a pytest11
plugin. The ones here serve the engine tests that stand in for MISP with
:class:`helpers.fakeplugins.ListSource`, and the simulator-backed fetch and
reliability tests that serve the shipped sample at :data:`helpers.sample.T0`.

Two settings for the whole suite:

* Installed third-party plugins never influence it: configs loaded in tests
  (and CLI subprocesses, which inherit the environment) default to
  ``plugins.entrypoints = false``; a test that needs entry points asks for
  them explicitly.
* Hypothesis has no deadline here: two shared cores make timings noisy, and
  performance is measured by the benchmarks, not by tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from helpers.fakeplugins import MiniTransform
from helpers.sample import sample_before_t0
from misp_ti.config import Config, build_config
from misp_ti.engine import Engine
from misp_ti.simulator import Dataset

os.environ.setdefault("MISP_TI_PLUGINS__ENTRYPOINTS", "false")

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: The embedded store of ``store_config`` and ``list_engine``, in ``tmp_path``.
STORE_FILE = "store.db"


@pytest.fixture
def store_config(tmp_path: Path) -> Callable[..., Config]:
    """``store_config(**sections)``: a config with the embedded store at
    ``tmp_path / "store.db"`` and installed entry points off. Each keyword is
    a top-level section (``output``, ``expiry``, ``streams``, ``state``);
    the ``output`` given is merged over the store's path."""

    def build(**sections: Any) -> Config:
        output = {"sqlite": {"path": str(tmp_path / STORE_FILE)}, **sections.pop("output", {})}
        return build_config({**sections, "output": output, "plugins": {"entrypoints": False}})

    return build


@pytest.fixture
def list_engine(store_config: Callable[..., Config]) -> Callable[..., Engine]:
    """``list_engine(source, *plugins, clock, **sections)``: an engine that
    fetches from ``source`` (a ``ListSource``) and transforms with
    ``MiniTransform``, ``plugins`` registered after them, on
    ``store_config(**sections)``. ``clock`` is a datetime (frozen there) or
    a callable returning the time. Engines made twice in a test share the
    store: the second one is a restart. The test closes what it opens."""

    def build(source: Any, *plugins: Any, clock: datetime | Callable[[], datetime], **sections: Any) -> Engine:
        now = clock if callable(clock) else (lambda: clock)
        return Engine(store_config(**sections), extra_plugins=[source, MiniTransform(), *plugins], clock=now)

    return build


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """The shipped sample events, the newest attribute one hour before ``T0``
    (immutable; one load per module)."""
    return sample_before_t0()
