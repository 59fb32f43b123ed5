"""``misp-ti lookup``: is a value an active IOC in the embedded store?

``misp-ti lookup VALUE`` answers one value; ``misp-ti lookup -`` reads one
value per line from standard input and prints one result line per value, in
input order (JSON lines with ``--json``), for enrichment scripts. Values
match in their canonical forms (:mod:`misp_ti.sinks.sqlite_keys`); an IP
address also finds the active networks (CIDR indicators) that contain it.
Each hit names its dataset and its MISP source.

The store is opened read-only: ``lookup`` works on a read-only file and
never changes it. Exit status (docs/contracts.md): 0 when every value is an
active IOC, 1 when some value is not, 2 when there is no store or it cannot
be read (the message names the file), or for a bad option.
"""

from __future__ import annotations

import sqlite3
import sys
import zlib
from pathlib import Path
from typing import Any

import click
import orjson

from misp_ti.cli import Obj, handle_errors
from misp_ti.errors import ConfigError, StoreError
from misp_ti.sinks.sqlite_keys import hit_summary

#: Values answered per store query in ``lookup -``.
CHUNK = 10_000


def _hit_text(hit: dict[str, Any]) -> str:
    return (
        f"{hit['dataset']} (source {hit['source']}) {hit['indicator_type'] or '?'} [{hit['misp_type'] or '?'}] "
        f"{hit['value']!r} uuid={hit['uuid']} event={hit['event']!r} until {hit['decayed_at']}"
    )


def _dataset_for(stream: str | None, store: Any) -> str | None:
    if stream is None:
        return None
    from misp_ti.streams import BUILTIN_REGISTRY

    known = {*BUILTIN_REGISTRY, *(d.split(".", 1)[1] for d in store.datasets() if d.startswith("ti_misp."))}
    if stream not in known:
        raise ConfigError(f"--stream {stream!r} is not a stream; valid streams: {', '.join(sorted(known))}")
    return f"ti_misp.{stream}"


def _values(stdin: Any) -> list[str]:
    raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    text = raw.decode("utf-8", errors="replace")
    return [line.strip() for line in text.split("\n") if line.strip()]


@click.command("lookup")
@click.argument("value")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: the matching documents (one VALUE), or one result object per value (`-`).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help="Embedded store file (default: output.sqlite.path).")
@click.option("--stream", default=None, help="Only hits of this stream.")
@click.pass_obj
@handle_errors
def command(obj: Obj, value: str, as_json: bool, db: Path | None, stream: str | None) -> None:
    """Is VALUE an active IOC in the embedded store? `-` reads values from stdin, one per line.

    Exit 0 if every value is, 1 if some value is not, 2 without a readable store.
    """
    from misp_ti.cli import _require_text
    from misp_ti.sinks.sqlite import EmbeddedStore, describe_error
    from misp_ti.timeutil import utcnow

    _require_text(value, "VALUE")  # argv bytes that are not UTF-8: a usage error (exit 2)
    path = db or obj.config().output.sqlite.path
    store = EmbeddedStore(path, readonly=True)
    try:
        dataset = _dataset_for(stream, store)
        now = utcnow()
        if value != "-":
            _one(value, store.lookup(value, now=now, dataset=dataset), as_json)
        values = _values(sys.stdin)
        missing = 0
        for start in range(0, len(values), CHUNK):
            chunk = values[start:start + CHUNK]
            # --json: each hit comes as its stored JSON, written as is (bytes, no text layer)
            answers = store.lookup_many(chunk, now=now, dataset=dataset, summaries=True, raw=as_json)
            missing += sum(1 for hits in answers if not hits)
            if as_json:
                sys.stdout.flush()
                sys.stdout.buffer.write(b"".join(
                    orjson.dumps({"value": asked, "active": bool(hits), "hits": hits}) + b"\n"
                    for asked, hits in zip(chunk, answers, strict=True)
                ))
            else:
                sys.stdout.write("".join(
                    f"{asked}: {len(hits)} active IOC(s): " + "; ".join(map(_hit_text, hits)) + "\n" if hits
                    else f"{asked}: not an active IOC\n"
                    for asked, hits in zip(chunk, answers, strict=True)
                ))
        sys.stdout.flush()
    except sqlite3.Error as exc:  # a store that breaks while it is read
        raise StoreError(path, describe_error(exc) or str(exc)) from None
    except (zlib.error, orjson.JSONDecodeError) as exc:  # a stored body that is not what misp-ti wrote
        raise StoreError(path, f"is corrupt (a stored document cannot be read: {exc})") from None
    finally:
        store.close()
    sys.exit(1 if missing else 0)


def _one(value: str, docs: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for doc in docs:
            click.echo(orjson.dumps(doc).decode())
    elif docs:
        click.echo(f"{value}: {len(docs)} active IOC(s)")
        for doc in docs:
            click.echo("  " + _hit_text(hit_summary(doc)))
    else:
        click.echo(f"{value}: not an active IOC", err=True)
    sys.exit(0 if docs else 1)
