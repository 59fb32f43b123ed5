"""``misp-ti simulator``: serve the MISP simulator on a loopback port until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Any

import click

DEFAULT_API_KEY = "test-key"


def _mask(key: str) -> str:
    """Enough of the key to recognise it, never all of it."""
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:2]}…{key[-2:]} ({len(key)} characters)"


@click.command("simulator")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (keep it on loopback).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="TCP port; 0 picks a free one.",
)
@click.option(
    "--data",
    "data",
    type=click.Path(exists=True),
    default=None,
    help="A MISP event JSON file or a directory of them (default: the bundled sample).",
)
@click.option(
    "--synthetic",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Serve N generated attributes instead of --data.",
)
@click.option(
    "--api-key",
    envvar="MISP_TI_SIMULATOR_API_KEY",
    default=DEFAULT_API_KEY,
    help=f"Key clients must send in Authorization (default {DEFAULT_API_KEY!r}, or $MISP_TI_SIMULATOR_API_KEY).",
)
@click.option(
    "--faults",
    default=None,
    metavar="SPEC",
    help="Fault plan, e.g. '500:0.1,429:0.05,reset@3' (kinds: 429 500 502 503 timeout reset truncate html shape).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for fault draws and generated data.",
)
@click.option(
    "--shift-to-now/--no-shift",
    default=True,
    show_default=True,
    help="Move the data's times so its newest attribute is from now.",
)
@click.option(
    "--timeout-delay",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a 'timeout' fault holds the answer back.",
)
def command(
    host: str,
    port: int,
    data: str | None,
    synthetic: int | None,
    api_key: str,
    faults: str | None,
    seed: int,
    shift_to_now: bool,
    timeout_delay: float,
) -> None:
    """Serve a simulated MISP REST API (restSearch, decaying models) from sample or given data."""
    from misp_ti.simulator import (
        Dataset,
        DatasetError,
        FaultPlan,
        FaultPlanError,
        MispSimulator,
    )

    if data and synthetic:
        raise click.UsageError("give either --data or --synthetic, not both")
    try:
        plan = FaultPlan.parse(faults, seed)
    except FaultPlanError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    try:
        if synthetic:
            dataset = Dataset.synthetic(
                synthetic, seed=seed, newest=datetime.now(UTC).replace(microsecond=0)
            )
        else:
            dataset = Dataset.from_path(data) if data else Dataset.sample()
    except DatasetError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    if shift_to_now and not synthetic:
        dataset = dataset.shift_to(datetime.now(UTC).replace(microsecond=0))
    simulator = MispSimulator(
        dataset,
        api_key=api_key,
        faults=plan,
        seed=seed,
        host=host,
        port=port,
        timeout_delay=timeout_delay,
        adopt_dataset=True,  # halves memory for --synthetic 100000
    )
    del dataset
    try:
        simulator.start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    stopped = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    key_note = "the default test key" if api_key == DEFAULT_API_KEY else _mask(api_key)
    click.echo(f"MISP simulator: {len(simulator)} attributes at {simulator.url}", nl=True)
    click.echo(f"API key: {key_note}; faults: {plan or 'none'}; Ctrl-C stops", err=True)
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        simulator.stop()
        click.echo("simulator stopped", err=True)
