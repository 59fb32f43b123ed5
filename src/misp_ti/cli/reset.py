"""``misp-ti reset``: the one command that moves a persisted cursor on purpose.

``--since T`` sets the cursor so that the next cycle of each chosen stream
reads from ``T`` (a backfill, or skipping ahead), ``--all`` forgets it (the
next cycle reads the stream's ``initial_interval``), and either way an
interrupted cycle is dropped. Every chosen source is also bound to the URL
the config gives it now, which is how a state refused for "holds the cursors
of another MISP" is taken over (docs/contracts.md, "Keyed by source").
"""

from __future__ import annotations

from datetime import datetime

import click

from misp_ti.cli import IsoTime, Obj, handle_errors
from misp_ti.errors import ConfigError
from misp_ti.timeutil import epoch_text


@click.command("reset")
@click.option("--source", "sources", multiple=True, help="Only this MISP source (repeatable; default: every source).")
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable; default: every enabled stream).")
@click.option("--since", type=IsoTime(whole_seconds=True), help="The next cycle reads from this time (ISO-8601, UTC when no zone).")
@click.option("--all", "forget", is_flag=True, help="Forget the cursor: the next cycle reads the initial interval.")
@click.pass_obj
@handle_errors
def command(obj: Obj, sources: tuple[str, ...], streams: tuple[str, ...], since: datetime | None, forget: bool) -> None:
    """Rewind or set cursors, and bind sources to their configured MISP URL.

    Prints every change (old -> new). Takes the state's write lock: exit 4
    while `run` or `once` holds it; exit 2 on an unknown source or stream.
    """
    from misp_ti.config import format_duration
    from misp_ti.cycle_report import cursor_time
    from misp_ti.engine import cycle_label
    from misp_ti.redact import public_url
    from misp_ti.service.runner import state_lock
    from misp_ti.timeutil import utcnow

    if since is not None and forget:
        raise ConfigError("reset: --since and --all exclude each other (--all forgets the cursor, --since sets it)")
    now = utcnow()

    def iso(when: datetime) -> str:  # whole seconds, as the cursors and the logs speak
        return epoch_text(int(when.timestamp()))

    if since is not None and since > now:
        raise ConfigError(f"reset --since {iso(since)}: in the future; a cursor ahead of now would skip what MISP gets meanwhile")
    config = obj.config()
    with state_lock(config, "reset"), obj.engine(config) as engine:
        for stream in streams:
            engine.streams.require(stream, "--stream")
        chosen = list(sources) or list(engine.sources)
        views = {source: engine.source_config(source) for source in chosen}
        state = engine.state
        changes: list[str] = []
        for source, view in views.items():
            url, bound = public_url(view.misp.url), state.binding(source)
            if bound is None or bound.url != url:
                state.bind(source, url, now=now)
                changes.append(f"{source}: MISP {bound.url if bound else 'none recorded'} -> {url}")
            if since is None and not forget:
                continue
            for stream in streams or view.streams.enabled():
                label = cycle_label(source, stream)
                old_at = cursor_time(state.get_cursor(stream, source=source), state.cursor_updated_at(stream, source=source))
                pending = state.in_progress(stream, source=source)
                if since is None:
                    state.rewind(stream, None, now=now, source=source)
                    initial = view.streams.settings(stream).initial_interval
                    new = f"none (the next cycle reads the initial interval, {format_duration(initial)})"
                else:
                    # the next window starts at cursor - overlap (misp_fetch.plan_window)
                    overlap = view.streams.settings(stream).overlap
                    cursor_at = since + overlap
                    state.rewind(stream, {"last_timestamp": int(cursor_at.timestamp())}, now=now, source=source)
                    new = f"{iso(cursor_at)} (the next cycle reads from {iso(since)})"
                line = f"{label}: cursor {iso(old_at) if old_at else 'none'} -> {new}"
                if pending is not None:
                    line += f"; the interrupted cycle of {iso(pending.started_at)} dropped"
                changes.append(line)
    click.echo("\n".join(changes) if changes else "nothing to change: every source is bound to its configured MISP (give --since or --all to move a cursor)")

