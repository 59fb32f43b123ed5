"""``misp-ti demo``: the whole pipeline on one machine, with nothing to set up.

It starts the MISP simulator on a loopback port with the sample of real MISP
events shipped in the package (shifted in time so that the newest attribute
is from right now, relative ages kept), runs one full poll cycle into an
embedded store in a fresh directory, and summarises what landed there.

The configuration is written out in :func:`demo_config` rather than taken
from the defaults or the environment, so the demo behaves the same on every
machine (no ``MISP_TI_*`` variable, config file or installed plugin changes it).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from misp_ti.errors import MispTiError

if TYPE_CHECKING:
    from misp_ti.config import Config
    from misp_ti.engine import CycleResult

STORE_FILE = "misp-ti.db"
DEMO_API_KEY = "misp-ti-demo-key"
#: How far back the demo's first poll reads: the sample spans about six years.
DEMO_INITIAL_INTERVAL = "3650d"
#: Indicator types preferred for the example lookups (most familiar first).
_EXAMPLE_TYPES = ("domain-name", "ipv4-addr", "url", "file", "email-addr")


def demo_config(
    directory: Path, url: str, api_key: str, *, expire_after: str = "90d", threat: bool = False
) -> Config:
    """The demo's full configuration (every setting that matters, spelled out)."""
    from misp_ti.config import build_config

    return build_config(
        {
            "misp": {
                "url": url,
                "api_key": api_key,
                "page_size": 500,
                "max_retries": 3,
                "backoff_initial": "0.1s",
                "backoff_max": "2s",
            },
            "streams": {
                "threat_attributes": {"enabled": True, "initial_interval": DEMO_INITIAL_INTERVAL},
                "threat": {"enabled": threat, "initial_interval": DEMO_INITIAL_INTERVAL},
            },
            "expiry": {"policy": "duration", "ioc_expiration_duration": expire_after},
            "output": {"sinks": ["sqlite"], "sqlite": {"path": str(directory / STORE_FILE)}},
            "plugins": {"entrypoints": False},
        },
        source="demo configuration",
    )


@dataclass
class ExampleLookup:
    value: str
    indicator_type: str
    active: bool
    command: str


@dataclass
class DemoResult:
    directory: Path
    store_path: Path
    now: datetime
    events: int
    attributes: int
    results: list[CycleResult]
    counts: dict[str, Any]
    examples: list[ExampleLookup] = field(default_factory=list)


def _fresh_directory(directory: Path | None) -> Path:
    import tempfile

    if directory is None:
        return Path(tempfile.mkdtemp(prefix="misp-ti-demo-"))
    directory = directory.expanduser().resolve()
    if (directory / STORE_FILE).exists():
        raise MispTiError(
            f"{directory} already holds a demo store ({STORE_FILE}); give another --dir or delete it"
        )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _pick_examples(
    store: Any, now: datetime, store_path: Path, *, active: int = 3
) -> list[ExampleLookup]:
    """A few values a person can look up: some active IOCs and one expired one."""

    from misp_ti.sinks.sqlite import decode_doc, indicator_values
    from misp_ti.timeutil import epoch_ms

    picks: list[ExampleLookup] = []
    db = shlex.quote(str(store_path))
    for want_active in (True, False):
        wanted = active if want_active else 1
        rows = store.conn.execute(
            "SELECT indicator_type, doc FROM latest WHERE (decayed = 0 AND decayed_at > ?) = ? "
            "AND dataset = 'ti_misp.threat_attributes' ORDER BY attr_ts DESC, uuid",
            (epoch_ms(now), int(want_active)),
        ).fetchall()
        rows.sort(
            key=lambda r: (
                _EXAMPLE_TYPES.index(r[0]) if r[0] in _EXAMPLE_TYPES else len(_EXAMPLE_TYPES)
            )
        )
        seen_types: set[str] = set()
        # first pass: one example per indicator type; second pass: fill up with any
        for distinct in (True, False):
            for indicator_type, body in rows:
                if sum(1 for p in picks if p.active == want_active) >= wanted:
                    break
                if indicator_type is None or (distinct and indicator_type in seen_types):
                    continue
                for value in sorted(indicator_values(decode_doc(body)), key=len, reverse=True):
                    if any(p.value == value for p in picks):
                        continue
                    # keep only values whose lookup gives the answer we claim
                    if bool(store.lookup(value, now=now)) == want_active:
                        seen_types.add(indicator_type)
                        picks.append(
                            ExampleLookup(
                                value,
                                indicator_type,
                                want_active,
                                f"misp-ti lookup {shlex.quote(value)} --db {db}",
                            )
                        )
                        break
    return picks


def run_demo(
    directory: Path | None = None,
    *,
    progress: Any = None,
    expire_after: str = "90d",
    threat: bool = False,
) -> DemoResult:
    """Serve the sample data, run one cycle into a fresh store, and count what is there."""
    from misp_ti.engine import Engine
    from misp_ti.manager import make_plugin_manager
    from misp_ti.simulator import Dataset, MispSimulator
    from misp_ti.sinks.sqlite import EmbeddedStore
    from misp_ti.timeutil import utcnow

    directory = _fresh_directory(directory)
    now = utcnow()
    dataset = Dataset.sample().shift_to(now)
    with MispSimulator(dataset, api_key=DEMO_API_KEY, clock=lambda: now) as simulator:
        config = demo_config(
            directory, simulator.url, DEMO_API_KEY, expire_after=expire_after, threat=threat
        )
        pm = make_plugin_manager(load_entrypoints=False)
        with Engine(config, pm=pm, clock=lambda: now, progress=progress) as engine:
            results = engine.run_once()
    store_path = directory / STORE_FILE
    store = EmbeddedStore(store_path)
    try:
        counts = store.counts(now=now)
        examples = _pick_examples(store, now, store_path)
    finally:
        store.close()
    return DemoResult(
        directory, store_path, now, len(dataset.events()), len(dataset), results, counts, examples
    )


def render_summary(result: DemoResult) -> str:
    """The summary printed by ``misp-ti demo``, for a person to read."""
    from misp_ti.timeutil import iso

    counts = result.counts
    lines = [
        "",
        f"misp-ti demo: {result.attributes} attributes from {result.events} real MISP events "
        f"(shipped sample, shifted so the newest is from {iso(result.now)})",
    ]
    for cycle in result.results:
        state = "complete" if cycle.completed else "INCOMPLETE"
        lines.append(
            f"  {cycle.stream}: {cycle.records} records in {cycle.pages} pages -> "
            f"{cycle.documents} documents, {cycle.pipeline_errors} pipeline errors ({state})"
        )
    lines += [
        f"Embedded store: {result.store_path}",
        "",
        f"IOCs in the latest view: {counts['latest']}  (active {counts['active']}, expired {counts['expired']})",
        f"  {'indicator type':<24}{'active':>8}{'expired':>9}{'total':>8}",
    ]
    for itype, row in sorted(
        counts["by_type"].items(), key=lambda kv: (-(kv[1]["active"] + kv[1]["expired"]), kv[0])
    ):
        if itype == "(none)":
            itype = "(no indicator type)"  # text, comment, port... attributes: kept, not matched on
        lines.append(
            f"  {itype:<24}{row['active']:>8}{row['expired']:>9}{row['active'] + row['expired']:>8}"
        )
    lines += [
        "",
        "Expired means past misp.attribute.decayed_at: by default an IOC is valid 90 days after its last",
        "timestamp/last_seen, unless MISP's decay models already voted it decayed. The sample spans years",
        "of real events, so most of it has expired; only the recent events are active",
        "(`misp-ti demo --expire-after 730d` shows more of it active).",
    ]
    if result.examples:
        lines += ["", "Try a lookup (exit status 0 = active IOC, 1 = not active):"]
        for example in result.examples:
            verdict = "active" if example.active else "expired"
            lines.append(f"  {example.command}    # {example.indicator_type}, {verdict}")
        hint = _path_hint()
        if hint:
            lines += ["", hint]
    lines.append("")
    return "\n".join(lines)


def _path_hint(argv0: str | None = None, on_path: str | None = None) -> str | None:
    """When ``misp-ti`` was run by its path (``.venv/bin/misp-ti demo``) and
    typing ``misp-ti`` would not run it, say how to (the lookups above assume it)."""
    import shutil
    import sys

    script = Path(argv0 if argv0 is not None else sys.argv[0])
    if script.name != "misp-ti":
        return None  # python -m misp_ti, or a test runner
    found = on_path if on_path is not None else shutil.which("misp-ti")
    if found and Path(found).resolve() == script.resolve():
        return None
    return (
        f"`misp-ti` on your PATH is not this one: type {shlex.quote(str(script.resolve()))} instead, "
        f"or first activate its environment: . {shlex.quote(str(script.resolve().parent / 'activate'))}"
    )
