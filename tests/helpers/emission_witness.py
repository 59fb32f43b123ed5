"""A witness plugin for subprocess tests: appends ``<_id> <attribute uuid>`` of
every document handed to the sinks to ``$EMISSION_WITNESS``, before the sinks
get the batch, so replays after a crash are visible. One small ``write`` per
batch to an ``O_APPEND`` file, fsync'ed, so a SIGKILL cannot tear a line
that a later run then appends to.
"""

from __future__ import annotations

import os
from typing import Any

from misp_ti import hookimpl

_PATH = os.environ["EMISSION_WITNESS"]


@hookimpl(wrapper=True)
def emit(stream: str, docs: list[dict[str, Any]], ctx: Any) -> Any:
    lines = "".join(
        f"{doc['_id']} {((doc.get('misp') or {}).get('attribute') or {}).get('uuid')}\n" for doc in docs
    ).encode()
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, lines)
        os.fsync(fd)
    finally:
        os.close(fd)
    return (yield)
