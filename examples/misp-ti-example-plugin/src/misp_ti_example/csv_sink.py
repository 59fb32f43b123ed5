"""Sink ``csv``: one row per document, ``uuid,type,value,decayed,decayed_at``.

Settings: ``[plugin.csv] path = "iocs.csv"`` (required when the sink is
enabled; checked at start-up against :class:`CsvSettings`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

import misp_ti
from misp_ti.errors import ConfigError, SinkError
from misp_ti.model import RunContext, SinkReport
from misp_ti.sinks.sqlite import indicator_values

NAME = "csv"
MISP_TI_SINKS = (NAME,)
HEADER = ("uuid", "type", "value", "decayed", "decayed_at")


class CsvSettings(BaseModel):
    """``[plugin.csv]``."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = None


MISP_TI_SETTINGS = {NAME: CsvSettings}


def csv_path(ctx: RunContext) -> Path:
    path = ctx.config.plugin_settings(NAME, CsvSettings).path
    if path is None:
        raise ConfigError("plugin.csv.path: required when the csv sink is enabled")
    return path


def row(doc: dict[str, Any]) -> tuple[str, ...]:
    attribute = doc.get("misp", {}).get("attribute", {})
    # the ECS mapping moves typed values (domains, IPs, hashes...) out of
    # misp.attribute.value into threat.indicator.*; read them back from there
    value = attribute.get("value") or "|".join(sorted(indicator_values(doc)))
    return (
        str(attribute.get("uuid", "")),
        str(attribute.get("type", "")),
        str(value),
        "1" if attribute.get("decayed") else "0",
        str(attribute.get("decayed_at", "")),
    )


@misp_ti.hookimpl
def provision(ctx: RunContext) -> list[dict[str, Any]] | None:
    if not ctx.sink_enabled(NAME):
        return None
    path = csv_path(ctx)
    if ctx.dry_run or path.exists():
        return [
            {
                "sink": NAME,
                "action": "present" if path.exists() else "would create",
                "path": str(path),
            }
        ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(HEADER)
    return [{"sink": NAME, "action": "created", "path": str(path)}]


@misp_ti.hookimpl
def emit(stream: str, docs: list[dict[str, Any]], ctx: RunContext) -> SinkReport | None:
    if not ctx.sink_enabled(NAME):
        return None
    if ctx.dry_run:
        return SinkReport(NAME, delivered=len(docs))
    # pipeline_error documents hold no indicator: they have no row in the CSV
    rows = [row(d) for d in docs if d.get("event", {}).get("kind") != "pipeline_error"]
    try:
        with csv_path(ctx).open("a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
    except OSError as exc:  # the batch is not confirmed: the engine keeps the cursor
        raise SinkError(f"csv sink {csv_path(ctx)}: {exc.strerror or exc}") from exc
    return SinkReport(NAME, delivered=len(rows))
