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
