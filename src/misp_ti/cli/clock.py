"""Which clock a state file follows: the wall clock, or ``once --now``'s.

A cursor is the end of the window a completed cycle read (``ctx.now``). A
cycle run at ``--now T`` would leave the cursor at ``T``: ahead of what was
delivered when ``T`` is in the future (later data would be skipped), behind
it when ``T`` is in the past (a rewind). So the two never share a state file:

* a state that wall-clock runs (``once``, ``run``) wrote is never touched by
  ``once --now`` (refused, exit 2; ``--dry-run`` writes no state and is
  always allowed);
* ``once --now`` on a new state file marks it ``fixed`` (``misp_ti_kv`` key
  ``clock``) and later ``--now`` runs use it as they please (reproducible
  runs, crash and resume tests); a wall-clock run refuses such a file.

Moving the cursor of a real deployment on purpose is ``misp-ti reset``'s job.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from misp_ti.errors import ConfigError

if TYPE_CHECKING:
    from misp_ti.state import StateStore

CLOCK_KEY = "clock"
FIXED = "fixed"


def check_clock(state: StateStore, path: Path, *, fixed: bool) -> None:
    """Refuse a run whose clock is not the one ``state`` (at ``path``) follows;
    mark a new state file used by a ``--now`` run as ``fixed``."""
    marked = state.get_value(CLOCK_KEY) == FIXED
    if fixed and not marked:
        if state.has_history():
            raise ConfigError(
                f"once --now: the state {path} holds the cursors of wall-clock runs, which --now would move; "
                "use --dry-run, or a state file of its own (state.path / MISP_TI_STATE__PATH)"
            )
        state.set_value(CLOCK_KEY, FIXED)
    elif not fixed and marked:
        raise ConfigError(
            f"the state {path} was written by `once --now` runs (its cursors follow that clock, not this one); "
            "use another state.path, or remove the file to start afresh"
        )
