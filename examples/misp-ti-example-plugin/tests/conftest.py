"""The kit (``misp_ti.testing``) is a pytest plugin: installing misp-ti[testing]
is all it takes to get its fixtures here. This conftest only names the
plugin modules the tests register, so that they never depend on what
happens to be installed (the engine fixture ignores entry points)."""

import pytest
from misp_ti_example import csv_sink, tlp_expiry


@pytest.fixture
def example_plugins():
    return (tlp_expiry, csv_sink)
