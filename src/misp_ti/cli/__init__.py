"""The ``misp-ti`` command line.

Core commands live here; ``transform``, ``simulator`` and ``demo`` live in
their own modules of this package (listed in ``COMMAND_MODULES``), each
exposing a click command named ``command``.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from misp_ti import __version__
from misp_ti.cli.clock import check_clock
from misp_ti.cli.options import GLOBAL_OPTIONS, accept_global_options, global_options  # noqa: F401 (GLOBAL_OPTIONS: the list, for tests and docs)
from misp_ti.errors import ConfigError, MispTiError
from misp_ti.timeutil import parse_iso

if TYPE_CHECKING:
    from misp_ti.config import Config

# The config schema (pydantic), the engine and the HTTP clients are imported
# where a command needs them: ``lookup --db`` against the embedded store then
# starts without any of them (a tenth of the start-up time).

COMMAND_MODULES = (
    "misp_ti.cli.lookup", "misp_ti.cli.transform", "misp_ti.cli.simulator", "misp_ti.cli.demo", "misp_ti.cli.status", "misp_ti.cli.reset",
)


def _echo_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)


class Obj:
    """Options shared by every command, resolved lazily."""

    def __init__(self, config_path: str | None, plugins: tuple[str, ...], quiet: bool, log_format: str | None, verbose: bool, blocked: tuple[str, ...] = ()):
        self.config_path = config_path
        self.blocked = blocked
        self.plugins = plugins
        self.quiet = quiet
        self.log_format = log_format
        self.verbose = verbose
        self._config: Config | None = None

    def config(self, overrides: dict[str, Any] | None = None) -> Config:
        if self._config is None or overrides:
            from misp_ti.config import load_config

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    config = load_config(self.config_path, overrides=overrides)
                except MispTiError:
                    _echo_warnings(caught)  # an old spelling's warning explains the error's key
                    raise
                if self.blocked:
                    config.plugins.block = sorted({*config.plugins.block, *self.blocked})
            self.setup_logging(config)
            _echo_warnings(caught)
            if self._config is None:
                self._config = config
            return config
        return self._config

    def setup_logging(self, config: Config) -> None:
        from misp_ti.logs import setup_logging

        setup_logging(
            level="debug" if self.verbose else config.log.level,
            fmt=self.log_format or config.log.format,
            secrets=config.secrets(),
            quiet=self.quiet,
        )

    def engine(self, config: Config | None = None, **kwargs: Any) -> Any:
        from misp_ti.engine import Engine

        config = config or self.config()
        _warn_insecure(config)
        return Engine(config, extra_plugins=self.plugins, **kwargs)


def _warn_insecure(config: Config) -> None:
    # sinks warn for themselves when the engine starts (``Sink.startup_warnings``)
    import logging

    log = logging.getLogger("misp_ti")
    if not config.misp.verifies_tls:
        log.warning("TLS verification of MISP (%s) is OFF: misp.ssl_verification_mode = \"none\"; anyone on the path can read the API key", config.misp.shown_url)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn misp-ti errors into a clean message and exit code (no traceback)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MispTiError as exc:
            from misp_ti.config import redact_url

            click.echo(f"error: {redact_url(str(exc))}", err=True)  # a URL's password never shows
            sys.exit(exc.exit_code)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(__version__, prog_name="misp-ti")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, plugins: tuple[str, ...], blocked: tuple[str, ...], quiet: bool, log_format: str | None, verbose: bool) -> None:
    """misp-ti: keep the IOCs that are valid right now in MISP in Elasticsearch or an embedded store."""
    ctx.obj = Obj(config_path, plugins, quiet, log_format, verbose, blocked)


class IsoTime(click.ParamType):
    """An ISO-8601 time on the command line (``--now``); UTC when it names no zone."""

    name = "ISO-8601"

    def __init__(self, *, whole_seconds: bool = False) -> None:
        self.whole_seconds = whole_seconds  # a cycle time has MISP's 1 s resolution

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            when = parse_iso(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time such as 2026-01-31T12:00:00Z", param, ctx)
        return when.replace(microsecond=0) if self.whole_seconds else when


def _print_results(results: list[Any], as_json: bool, *, err: bool = True) -> None:
    for result in results:
        data = result.as_dict()
        if as_json:
            click.echo(orjson.dumps(data).decode(), err=err)
        else:
            state = "done" if result.completed else "interrupted (will resume)"
            click.echo(
                f"{result.stream}: {state}; {result.pages} pages, {result.records} records, "
                f"{result.documents} documents, {result.pipeline_errors} pipeline errors, "
                f"delivered: {_per_sink(result.delivered)}, dead-lettered: {_per_sink(result.dead_lettered)}, {data['seconds']}s",
                err=err,
            )


def documents_on_stdout(config: Config) -> bool:
    """Whether stdout belongs to the documents (the ndjson sink writes to ``-``)."""
    return "ndjson" in config.output.sinks and config.output.ndjson.path == "-"


def _per_sink(counts: dict[str, int]) -> str:
    """``{"sqlite": 22, "ndjson": 22}`` -> ``sqlite 22, ndjson 22``; nothing: ``none``."""
    return ", ".join(f"{sink} {count}" for sink, count in counts.items()) or "none"


@cli.command()
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the requests sinks would send, one JSON object per line; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the cycle summary as JSON lines (to stderr when the ndjson sink writes to stdout).")
@click.option("--json-file", type=click.Path(dir_okay=False, path_type=Path), help="Also write the cycle summary as JSON lines to this file.")
@click.option("--now", "now", type=IsoTime(whole_seconds=True), help="Use this as the cycle time instead of the clock (reproducible runs); refused on a state that wall-clock runs wrote (see --dry-run).")
@click.pass_obj
@handle_errors
def once(obj: Obj, streams: tuple[str, ...], dry_run: bool, as_json: bool, json_file: Path | None, now: datetime | None) -> None:
    """Run one poll cycle per enabled stream, then exit.

    An interrupted cycle (crash, stop, failure) is resumed first, with its
    original window and ingest time. Exit 0: done (or stopped by a signal);
    1: a cycle failed; 3: done, but some records became pipeline errors.
    """
    from misp_ti.progress import make_progress
    from misp_ti.service.runner import install_signal_handlers, state_lock

    config = obj.config()
    lock = None if dry_run else state_lock(config, "once")
    try:
        progress = None if dry_run else make_progress(quiet=obj.quiet, documents_on_stdout=documents_on_stdout(config))
        kwargs: dict[str, Any] = {"progress": progress}
        if now is not None:
            kwargs["clock"] = lambda: now
        with obj.engine(**kwargs) as engine:
            if not dry_run:
                check_clock(engine.state, engine.config.state_path(), fixed=now is not None)
            install_signal_handlers(engine)
            try:
                results = engine.run_once(streams=streams or None, dry_run=dry_run)
                if dry_run:
                    for request in engine.context(dry_run=True).dry_run_requests:
                        click.echo(orjson.dumps(request).decode())
            finally:
                close = getattr(progress, "close", None)
                if close is not None:
                    close()
    finally:
        if lock is not None:
            lock.release()
    if dry_run:
        return
    if json_file is not None:
        json_file.write_text("".join(orjson.dumps(r.as_dict()).decode() + "\n" for r in results), encoding="utf-8")
    if not obj.quiet or as_json:
        _print_results(results, as_json, err=documents_on_stdout(config))
    if any(r.pipeline_errors for r in results):
        sys.exit(3)


@cli.command()
@click.pass_obj
@handle_errors
def run(obj: Obj) -> None:
    """Poll every enabled stream at its interval until SIGINT/SIGTERM.

    A stop signal ends the current wait or batch, keeps the cursor at the
    last confirmed batch and exits 0. A failed poll keeps its cursor and is
    tried again at the next interval. SIGHUP is ignored (restart to reload).
    With ``service.metrics_address``, serves /metrics and /healthz.
    """
    import logging

    from misp_ti.progress import make_progress
    from misp_ti.service.runner import banner, install_signal_handlers, start_metrics, state_lock

    log = logging.getLogger("misp_ti")
    config = obj.config()
    with state_lock(config, "run"):
        metrics = None
        if config.service.metrics_endpoint() is not None:
            from misp_ti.service.metrics import Metrics

            metrics = Metrics()
        progress = make_progress(quiet=obj.quiet, documents_on_stdout=documents_on_stdout(config))
        try:
            with obj.engine(progress=progress, metrics=metrics) as engine:
                check_clock(engine.state, engine.config.state_path(), fixed=False)
                install_signal_handlers(engine)
                server = start_metrics(engine)
                try:
                    for line in banner(engine, server.url if server else None):
                        log.info("%s", line)
                    engine.provision()
                    engine.run_forever(
                        on_error=lambda stream, exc: log.error("%s poll failed; cursor kept, retrying next interval: %s", stream, exc)
                    )
                finally:
                    if server is not None:
                        server.close()
        finally:
            if progress is not None and hasattr(progress, "close"):
                progress.close()
    log.info("stopped")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print every request it would send, one JSON object per line; change nothing.")
@click.option("--check", is_flag=True, help="Only ask each sink whether it may provision and write (e.g. Elasticsearch privileges); exit 1 if not.")
@click.pass_obj
@handle_errors
def provision(obj: Obj, dry_run: bool, check: bool) -> None:
    """Install what the enabled sinks need (idempotent)."""
    from misp_ti.service.runner import state_lock

    lock = None if dry_run or check else state_lock(obj.config(), "provision")
    try:
        with obj.engine() as engine:
            actions = engine.provision(dry_run=dry_run, check=check)
            for action in actions:
                click.echo(orjson.dumps(action).decode())
    finally:
        if lock is not None:
            lock.release()
    lacking = [a for a in actions if a.get("ok") is False]
    for action in lacking:
        click.echo(f"misp-ti: {action.get('sink')} lacks: {'; '.join(action.get('missing') or ['?'])}", err=True)
    if lacking:
        raise SystemExit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@handle_errors
def plugins(obj: Obj, as_json: bool) -> None:
    """List the hooks and the plugins implementing each, in call order."""
    from misp_ti.manager import describe, plugin_inventory, plugin_manager_for

    pm = plugin_manager_for(obj.config(), obj.plugins)
    hooks, inventory = describe(pm), plugin_inventory(pm)
    if as_json:
        click.echo(orjson.dumps({"hooks": hooks, "plugins": inventory}, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo("Hooks (plugins in call order):")
    for row in hooks:
        kind = "first result" if row["firstresult"] else "every plugin"
        click.echo(f"  {row['hook']:<15} [{kind}] {', '.join(row['plugins']) or '(none)'}")  # type: ignore[arg-type]
    click.echo("Plugins:")
    for row in inventory:
        extras = []
        if row["sinks"]:
            extras.append("sinks: " + ", ".join(row["sinks"]))  # type: ignore[arg-type]
        if row["expiry_policies"]:
            extras.append("expiry policies: " + ", ".join(row["expiry_policies"]))  # type: ignore[arg-type]
        if row["streams"]:
            extras.append("streams: " + ", ".join(row["streams"]))  # type: ignore[arg-type]
        if row["settings"]:
            extras.append("settings: " + ", ".join(f"[{table}]" for table in row["settings"]))  # type: ignore[union-attr]
        suffix = f" ({'; '.join(extras)})" if extras else ""
        click.echo(f"  {row['name']}: {', '.join(row['hooks']) or 'no hooks'}{suffix}")  # type: ignore[arg-type]


@cli.group("config")
def config_group() -> None:
    """Show, check or document the configuration."""


@config_group.command("show")
@click.pass_obj
@handle_errors
def config_show(obj: Obj) -> None:
    """Print the effective configuration as JSON, secrets redacted."""
    click.echo(orjson.dumps(obj.config().redacted(), option=orjson.OPT_INDENT_2).decode())


@config_group.command("check")
@click.option("--connect", is_flag=True, help="Also talk to MISP and to each enabled sink; one line per check; exit 1 if one fails.")
@click.pass_obj
@handle_errors
def config_check(obj: Obj, connect: bool) -> None:
    """Check that the configuration can work: exit 2 naming what cannot.

    Beyond the schema: a MISP key and URL for the streams that read MISP,
    at least one enabled stream, known types in expiry.by_type, the plugins
    the configuration names. With --connect (no retries), also whether MISP
    answers (version, key, decaying models, one small restSearch per stream)
    and each sink works (Elasticsearch version and privileges, the store
    writable): exit 1 if a check fails.
    """
    from misp_ti.cli import check

    overrides = {"misp": {"max_retries": 0}, "output": {"elasticsearch": {"max_retries": 0}}} if connect else None
    with obj.engine(obj.config(overrides) if overrides else None) as engine:
        found = check.problems(engine)
        if found:
            raise ConfigError("configuration cannot work:\n  " + "\n  ".join(found) if len(found) > 1 else found[0])
        click.echo("configuration OK")
        if not connect:
            return
        failed = False
        for result in check.connect(engine):
            click.echo(result.line())
            failed = failed or result.failed
    if failed:
        raise SystemExit(1)


@config_group.command("reference")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
def config_reference(output: Path | None) -> None:
    """Print the Markdown reference of every config key (generated from the schema)."""
    from misp_ti.config.reference import render_reference

    text = render_reference()
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _require_text(value: str, name: str) -> None:
    """A command-line argument must be text: bytes that are not UTF-8 arrive as lone
    surrogates (Python's surrogateescape) and can be neither stored nor searched."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = value.encode("utf-8", "surrogateescape")
        raise click.BadParameter(
            f"{raw[:60]!r} is not UTF-8 text (byte {len(value[:exc.start].encode('utf-8', 'surrogateescape'))} "
            "cannot be decoded); IOC values are UTF-8",
            param_hint=name,
        ) from None


def _register_optional_commands() -> None:
    for module_path in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name == module_path:
                continue  # that command is not built yet
            raise
        cli.add_command(module.command)


_register_optional_commands()
for _command in cli.commands.values():
    accept_global_options(_command)


def main() -> None:
    cli(prog_name="misp-ti")
