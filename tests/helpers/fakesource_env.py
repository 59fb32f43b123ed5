"""A module-level plugin for CLI subprocess tests, configured by environment.

* ``FAKE_RECORDS``: JSON file with the attribute list to serve;
* ``FAKE_PAGE_SIZE``: records per page (default 10);
* ``FAKE_KILL_AFTER_BATCH``: SIGKILL the process after that many emitted
  batches, before the cursor is saved;
* ``FAKE_PAGE_DELAY``: seconds to sleep before each page (for signal tests);
* ``FAKE_NOW``: epoch seconds the engine clock is frozen at (via FROZEN_CLOCK).
"""

from __future__ import annotations

import os
import time
from typing import Any

from helpers.fakeplugins import CrashAfterEmit, ListSource, MiniTransform, load_records
from misp_ti import hookimpl

_source = ListSource(load_records(os.environ["FAKE_RECORDS"]), page_size=int(os.environ.get("FAKE_PAGE_SIZE", "10")))
_transform = MiniTransform()
_crash = CrashAfterEmit(int(os.environ.get("FAKE_KILL_AFTER_BATCH", "0")))
_delay = float(os.environ.get("FAKE_PAGE_DELAY", "0"))


@hookimpl
def fetch(stream: str, cursor: Any, ctx: Any) -> Any:
    pages = _source.fetch(stream=stream, cursor=cursor, ctx=ctx)
    if pages is None or not _delay:
        return pages

    def slow() -> Any:
        for page in pages:
            time.sleep(_delay)
            yield page

    return slow()


@hookimpl
def transform_doc(stream: str, record: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return _transform.transform_doc(stream=stream, record=record, ctx=ctx)


@hookimpl(wrapper=True)
def emit(stream: str, docs: Any, ctx: Any) -> Any:
    result = yield
    _crash.batches += 1
    if _crash.batches == _crash.kill_after_batch:
        os.kill(os.getpid(), 9)
    return result
