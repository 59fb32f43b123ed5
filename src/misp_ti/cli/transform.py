"""``misp-ti transform``: MISP JSON lines on stdin -> ECS NDJSON on stdout.

Records go through the engine's own per-record path (``transform_doc`` then
``compute_expiry``, with the configured policy), in a dry-run context that
opens no store, so the documents and ids are the ones ``misp-ti once`` would
write for the same ingest time.

Exit status: 0 when every line became a normal document; 3 when some lines
became ``pipeline_error`` documents (they are still written, and counted on
stderr); 1 or 2 for an unusable config or plugin.
"""

from __future__ import annotations

import gc
import sys
from datetime import datetime
from typing import IO, Any

import click
import orjson

from misp_ti.cli import IsoTime, Obj, handle_errors

#: Exit status when some input lines became pipeline_error documents.
EXIT_PIPELINE_ERRORS = 3
BATCH_LINES = 1000
#: Batches between two garbage collections while the automatic collector is off.
COLLECT_EVERY = 50


def _batches(stream: IO[bytes]) -> Any:
    """Lines as read, line ends kept (JSON allows them after a value; a copy
    of every line without them would cost a pass over the input); blank
    lines skipped."""
    batch: list[bytes] = []
    for line in stream:
        if line and not line.isspace():
            batch.append(line)
            if len(batch) >= BATCH_LINES:
                yield batch
                batch = []
    if batch:
        yield batch


def _not_json(line: bytes, opts: Any) -> dict[str, Any]:
    """The pipeline_error document of a line that is not JSON (its line end
    removed, so the parser's message and ``event.original`` name the line itself)."""
    from misp_ti.ecs import error_document

    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        reason = f"not a JSON line: {exc}"
    else:  # cannot happen: a line end is JSON whitespace
        reason = "not a JSON line"
    return error_document(None, reason, opts, original=line.decode("utf-8", errors="backslashreplace"))


@click.command(name="transform")
@click.option("--stream", default="threat_attributes", show_default=True, metavar="STREAM",
              help="threat_attributes: one attribute per line; threat: one split event record per line; "
                   "or a stream a plugin declares.")
@click.option("--now", type=IsoTime(), metavar="ISO-8601",
              help="Ingest time (default: the current time); fixes event.ingested and expiry for reproducible output.")
@click.option("--format", "fmt", type=click.Choice(["docs", "bulk"]), default="docs", show_default=True,
              help="docs: one document per line (with its _id); bulk: the _bulk lines the elasticsearch sink sends (output.elasticsearch settings).")
@click.pass_obj
@handle_errors
def command(obj: Obj, stream: str, now: datetime | None, fmt: str) -> None:
    """Transform MISP JSON lines (stdin) into ECS documents (stdout).

    Lines that are not JSON, and records the transform rejects, become
    pipeline_error documents; their count goes to stderr and the exit status
    is 3. Blank lines are skipped.
    """
    from misp_ti.ecs import is_pipeline_error
    from misp_ti.ecs.options import options_for
    from misp_ti.sinks.elasticsearch import bulk

    config = obj.config()
    engine = obj.engine(config)
    if stream not in engine.streams:
        engine.close()
        raise click.BadParameter(f"{stream!r} is not a stream; available: {', '.join(engine.streams)}", param_hint="--stream")
    ctx = engine.context(now=now, dry_run=True)
    opts = options_for(stream, ctx)
    out = sys.stdout.buffer
    records = documents = errors = 0
    # Parsed records and their documents hold no reference cycles, yet the
    # cyclic collector would walk every live batch again and again (about an
    # eighth of the run): it is off during the loop and run once in a while,
    # so a cycle a plugin makes is still freed.
    gc.disable()
    try:
        for number, batch in enumerate(_batches(sys.stdin.buffer), 1):
            if number % COLLECT_EVERY == 0:
                gc.collect()
            slots: list[dict[str, Any] | None] | None = None
            try:
                parsed = list(map(orjson.loads, batch))
            except orjson.JSONDecodeError:  # some lines are not JSON: parse them one by one
                parsed, slots = [], []
                for line in batch:
                    try:
                        parsed.append(orjson.loads(line))
                        slots.append(None)
                    except orjson.JSONDecodeError:
                        slots.append(_not_json(line.rstrip(b"\r\n"), opts))
            docs = engine.process(stream, parsed, ctx)
            if slots is not None:  # the documents of the lines that were not JSON go in their places
                processed = iter(docs)
                docs = [next(processed) if slot is None else slot for slot in slots]
            errors += sum(map(is_pipeline_error, docs))
            if fmt == "bulk":
                out.write(bulk.ndjson(bulk.actions(stream, docs, config, now=ctx.now)))
            else:
                out.write(b"\n".join(map(orjson.dumps, docs)) + b"\n")
            records += len(batch)
            documents += len(docs)
        out.flush()
    except BrokenPipeError:  # e.g. `| head`: the reader has gone, stop quietly
        sys.stderr.close()
        sys.exit(0)
    finally:
        gc.enable()
        engine.close()
    click.echo(f"transform: {records} records, {documents} documents, {errors} pipeline errors", err=True)
    if errors:
        sys.exit(EXIT_PIPELINE_ERRORS)
