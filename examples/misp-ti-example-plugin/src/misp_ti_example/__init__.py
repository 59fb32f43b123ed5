"""An example misp-ti plugin package: the ``tlp`` expiry policy and the ``csv`` sink.

Each concern is its own module and its own entry point (see pyproject.toml).
"""

__version__ = "0.1.0"
