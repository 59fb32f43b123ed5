"""The MISP simulator under its old name: it lives in :mod:`misp_ti.simulator`.

The simulator is a runtime feature (``misp-ti demo``, ``misp-ti simulator``)
as well as a test tool, so it moved out of the test kit. Tests that import
``misp_ti.testing.simulator`` keep working through this module; new code
imports :mod:`misp_ti.simulator`.
"""

from misp_ti.simulator import *  # noqa: F403
from misp_ti.simulator import __all__ as __all__
