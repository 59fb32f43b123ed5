"""Repository-wide test setup.

* Installed third-party plugins never influence this suite: configs loaded
  in tests (and CLI subprocesses, which inherit the environment) default to
  ``plugins.entrypoints = false``; a test that needs entry points asks for
  them explicitly.
* Hypothesis has no deadline here: two shared cores make timings noisy, and
  performance is measured by the benchmarks, not by tests.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("MISP_TI_PLUGINS__ENTRYPOINTS", "false")

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
