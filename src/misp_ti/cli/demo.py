"""``misp-ti demo``: the simulator + the shipped sample data -> an embedded store, then a summary."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the embedded store (default: a new temporary directory, kept afterwards).",
)
@click.option(
    "--expire-after",
    default="90d",
    show_default=True,
    metavar="DURATION",
    help="IOC validity after its last timestamp (expiry.ioc_expiration_duration), e.g. 365d.",
)
@click.option("--threat", is_flag=True, help="Also run the `threat` stream (events/restSearch).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def command(
    obj: object, directory: Path | None, expire_after: str, threat: bool, as_json: bool
) -> None:
    """Run misp-ti end to end on this machine: nothing to install or configure.

    Starts a simulated MISP on 127.0.0.1 serving real MISP events shipped with
    misp-ti, runs one poll cycle into an embedded store in a fresh directory
    (with a progress bar), and prints how many IOCs of each type are active or
    expired, with lookups to try. Needs no network beyond loopback.
    """
    import orjson

    from misp_ti.cli import handle_errors
    from misp_ti.logs import setup_logging
    from misp_ti.progress import make_progress
    from misp_ti.simulator.demo import render_summary, run_demo

    quiet = bool(getattr(obj, "quiet", False))
    setup_logging(
        level="debug" if getattr(obj, "verbose", False) else "info",
        fmt="text",
        secrets=[],
        quiet=quiet,
    )

    @handle_errors
    def run() -> None:
        progress = make_progress(quiet=quiet or as_json)
        try:
            result = run_demo(
                directory, progress=progress, expire_after=expire_after, threat=threat
            )
        finally:
            if hasattr(progress, "close"):
                progress.close()
        if as_json:
            click.echo(
                orjson.dumps(
                    {
                        "directory": str(result.directory),
                        "store": str(result.store_path),
                        "now": result.now.isoformat(),
                        "events": result.events,
                        "attributes": result.attributes,
                        "cycles": [r.as_dict() for r in result.results],
                        "counts": result.counts,
                        "examples": [vars(e) for e in result.examples],
                    },
                    option=orjson.OPT_INDENT_2,
                ).decode()
            )
        else:
            click.echo(render_summary(result))

    run()
