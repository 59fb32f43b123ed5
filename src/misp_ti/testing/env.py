"""The kit's environment variables, all under ``MISP_TI_TEST_`` (the engine's
own settings are ``MISP_TI_<SECTION>__<KEY>``, e.g. ``MISP_TI_MISP__API_KEY``;
one prefix per owner keeps a test variable from being read as a setting).

The names before the rename are still read, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import os
import warnings

PREFIX = "MISP_TI_TEST_"
MISP_URL = "MISP_TI_TEST_MISP_URL"
MISP_KEY = "MISP_TI_TEST_MISP_KEY"
ES_URL = "MISP_TI_TEST_ES_URL"
REQUIRE_ES = "MISP_TI_TEST_REQUIRE_ES"
ES_IMAGE = "MISP_TI_TEST_ES_IMAGE"

#: new name -> the old one still read
OLD_NAMES = {
    MISP_URL: "MISP_TI_MISP_URL",
    MISP_KEY: "MISP_TI_MISP_KEY",
    ES_URL: "MISP_TI_ES_URL",
    REQUIRE_ES: "MISP_TI_REQUIRE_ES",
    ES_IMAGE: "MISP_TI_ES_IMAGE",
}


def kit_env(name: str, default: str = "") -> str:
    """The value of the kit variable ``name``, else of its old name (with a warning), else ``default``."""
    value = os.environ.get(name)
    if value is not None:
        return value
    old = OLD_NAMES.get(name)
    if old is not None and old in os.environ:
        warnings.warn(f"{old} is deprecated: set {name} instead", DeprecationWarning, stacklevel=2)
        return os.environ[old]
    return default
