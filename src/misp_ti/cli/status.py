"""``misp-ti status``: is the service working? (read-only, beside ``run``)."""

from __future__ import annotations

import sys

import click
import orjson

from misp_ti.cli import Obj
from misp_ti.errors import MispTiError


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_obj
def command(obj: Obj, as_json: bool) -> None:
    """Per stream: the cursor, the last completed and failed cycle, a cycle in
    progress, the next refetch; the embedded store's active and expired IOCs.

    Reads the state read-only and never takes its lock, so it works while
    `run` polls. Exit 0 healthy, 1 degraded (the last cycle failed, or none
    completed for more than `service.degraded_after_intervals` intervals,
    default 3), 2 unusable (no state, bad config).
    """
    from misp_ti.engine import REFETCH_SCHEDULE
    from misp_ti.service.status import UNUSABLE, StatusInputs, collect, render
    from misp_ti.timeutil import utcnow

    try:
        with obj.engine() as engine:  # validates the config and plugins; opens no state
            inputs = StatusInputs(
                engine.config, tuple(engine.config.streams.enabled()), engine.refetch_interval, REFETCH_SCHEDULE,
                sources={name: tuple(view.streams.enabled()) for name, view in engine.sources.items()},
            )
    except MispTiError as exc:
        code, report = UNUSABLE, {"health": "unusable", "code": UNUSABLE, "reasons": [str(exc)]}
    else:
        code, report = collect(inputs, now=utcnow())
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render(report))
    sys.exit(code)
