"""misp-ti's pytest kit (registered under the ``pytest11`` entry point).

Imports lazily: loading this module must stay cheap, because pytest loads it
in every project where misp-ti is installed.
"""

from __future__ import annotations


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line(
        "markers", "misp_data(*paths, shift_to_now=True): dataset the misp_server fixture serves"
    )
