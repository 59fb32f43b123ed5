"""The shipped sample events as the simulator-backed fetch, reliability and
security tests serve them (the ``dataset`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from misp_ti.simulator import Dataset

#: The moment those tests run at (their engine's and simulator's clock).
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sample_before_t0() -> Dataset:
    """misp-ti's sample of real MISP events, shifted so that the newest
    attribute is one hour before :data:`T0` (relative ages kept)."""
    from misp_ti.simulator import Dataset

    return Dataset.sample().shift_to(newest=T0 - timedelta(hours=1))
