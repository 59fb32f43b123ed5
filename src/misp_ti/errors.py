"""Exceptions with messages a user can act on.

No message built here, or by code raising these, ever contains a secret.
"""

from __future__ import annotations


class MispTiError(Exception):
    """Base class; the CLI prints the message and exits non-zero."""

    exit_code = 1


class ConfigError(MispTiError):
    """The configuration is invalid; the message names the key."""

    exit_code = 2


class PluginError(MispTiError):
    """A plugin could not be loaded or does not fit the hooks."""

    exit_code = 2


class FetchError(MispTiError):
    """MISP could not be read; the cursor did not move."""


class SinkError(MispTiError):
    """A sink could not confirm a batch; the cursor did not move."""


class StoreError(SinkError):
    """The embedded store's file is not usable: not a database, not a misp-ti
    store, read-only, full, or deleted or replaced while in use."""

    exit_code = 2

    def __init__(self, path: object, reason: str):
        super().__init__(f"sqlite store {path}: {reason}")
        self.path = path
        self.reason = reason
