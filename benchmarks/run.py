"""misp-ti benchmarks: print a Markdown table (and save JSON in benchmarks/results/).

    python benchmarks/run.py                       # everything, then the summary table of same-run ratios
    python benchmarks/run.py --only requests,cli,es # the fast rows of the summary
    python benchmarks/run.py --only transform --transform-size 1M
    python benchmarks/run.py --only e2e --e2e-sizes 10k,100k,1M --window-days 30
    python benchmarks/run.py --profile             # also print the cProfile top of the transform path
    python benchmarks/run.py --only store          # embedded store bytes/attribute at 100k, lookup - of 10 000 values

Needs the project installed with the ``bench`` extra (``pip install -e .[bench]``:
PyMISP for the reference row; everything else is a runtime or test dependency).
See the README's Performance section for the numbers and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import base_lines, format_count, parse_count  # noqa: E402


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    try:
        mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        mem_gb = 0.0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_average": [round(x, 2) for x in load],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}".replace(",", " ")
    return str(value)


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The README's table: one row per measure, each a same-run ratio (or the peak RSS)."""
    rows: list[dict[str, Any]] = []
    for row in results.get("requests", []):
        rows.append({"measure": f"restSearch requests per backfill, L = {row['page_size']} ({row['requests']} for {row['rows']} rows)",
                     "value": f"{row['x_minimum']:.2f} × minimum", "target": "≤ 1.15 ×"})
    if "cli" in results:
        cli = results["cli"]
        rows.append({"measure": f"`misp-ti transform`, {format_count(cli['records'])} lines, CPU vs orjson loads+dumps process",
                     "value": f"{cli['x_floor_cpu']:.2f} × floor", "target": "≤ 2.5 ×"})
    if "es" in results:
        es = results["es"]
        rows.append({"measure": f"Elasticsearch bulk writer, {format_count(es['documents'])} documents, client CPU vs `streaming_bulk`",
                     "value": f"{es['x_streaming_bulk_cpu']:.2f} × streaming_bulk", "target": ""})
    for row in results.get("e2e", []):
        if row.get("x_floor_cpu") is not None:
            rows.append({"measure": f"end to end simulator -> store, {format_count(row['attributes'])} attributes: "
                                    f"{row['per_cpu_second']} per engine CPU s vs {row['floor_per_cpu_second']} for "
                                    "the floor (orjson loads of the pages + one SQLite insert per record)",
                         "value": f"{row['x_floor_cpu']:.2f} × floor CPU", "target": ""})
    for row in results.get("e2e", []):
        rows.append({"measure": f"engine peak RSS, end to end, {format_count(row['attributes'])} attributes",
                     "value": f"{row['engine_peak_rss_mb']} MB", "target": ""})
    if "store" in results:
        footprint, *lookup_rows = results["store"]
        rows.append({"measure": f"embedded store, {format_count(footprint['attributes'])} attributes, bytes per attribute "
                                f"(document JSON: {footprint['json_bytes_per_attribute']})",
                     "value": f"{footprint['bytes_per_attribute']} B", "target": "≤ 1 850 B (half of 3.7 KB)"})
        for lookups in lookup_rows:
            distinct = lookups["store"] == "distinct"
            held = "values held by at most 3 documents" if distinct else "replicated corpus: values held by ~18 documents each"
            rows.append({"measure": f"`misp-ti lookup - --json`, {format_count(lookups['values'])} values ({held}: "
                                    f"{lookups['hits']} hits), one process, start-up ({lookups['startup_s']} s) included, "
                                    f"wall clock; CPU {lookups['cpu_s']} s",
                         "value": f"{lookups['per_second']} values/s", "target": "≥ 20 000 values/s" if distinct else ""})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="requests,cli,transform,e2e,es,store", help="Comma-separated: requests, cli, transform, e2e, es, store.")
    parser.add_argument("--cli-size", default="100k", help="Records through `misp-ti transform` and its floor process.")
    parser.add_argument("--transform-size", default="100k", help="Records through the transform contenders.")
    parser.add_argument("--pymisp-size", default="2000", help="Records through PyMISP (about 10 ms each).")
    parser.add_argument("--e2e-sizes", default="100k", help="Attributes served for the end-to-end runs (1M takes minutes: --e2e-sizes 100k,1M).")
    parser.add_argument("--window-days", type=float, default=None, help="e2e: squeeze timestamps into the last DAYS (recent IOCs).")
    parser.add_argument("--es-size", default="100k", help="Documents through the bulk writer.")
    parser.add_argument("--events", type=Path, default=None, help="e2e: directory of MISP event JSON to replicate (default: the shipped sample).")
    parser.add_argument("--store-size", default="100k", help="store: attributes written to the embedded store.")
    parser.add_argument("--lookups", default="10000", help="store: values piped to `misp-ti lookup -`.")
    parser.add_argument("--profile", action="store_true", help="Print the cProfile top entries of the transform + expiry path.")
    args = parser.parse_args()
    only = {x.strip() for x in args.only.split(",")}

    info = machine()
    results: dict[str, Any] = {"machine": info}
    print(f"machine: {info['cpus']} x {info['cpu_model']}, {info['memory_gb']} GB, Python {info['python']}, "
          f"load average {info['load_average']} at start, {info['date']}")
    lines, origin = base_lines()
    print(f"corpus: {origin}; replicated with fresh uuids\n")

    if "requests" in only:
        from paging_bench import run as paging_run

        rows = [paging_run(size) for size in (7, 100, 1000)]
        results["requests"] = rows
        print("## restSearch requests per backfill of the bundled sample\n")
        print(table(rows, [
            ("page_size", "page size L"), ("rows", "rows N"), ("requests", "requests"),
            ("minimum", "minimum ceil(N/L)+1"), ("x_minimum", "× minimum"),
        ]))
        print()

    if "cli" in only:
        from cli_bench import run as cli_run

        n = parse_count(args.cli_size)
        row = cli_run(lines, n)
        results["cli"] = row
        print(f"## `misp-ti transform --stream threat_attributes` vs the orjson line floor, whole processes, {format_count(n)} lines\n")
        print(table([row], [
            ("records", "records"), ("floor_cpu_s", "floor CPU s"), ("cli_cpu_s", "CLI CPU s"),
            ("x_floor_cpu", "× floor CPU"), ("floor_wall_s", "floor wall s"), ("cli_wall_s", "CLI wall s"),
            ("x_floor_wall", "× floor wall"),
        ]))
        print()

    if "transform" in only:
        from transform_bench import run as transform_run

        n = parse_count(args.transform_size)
        started = time.time()
        rows = transform_run(lines, n, pymisp_limit=parse_count(args.pymisp_size))
        results["transform"] = rows
        print(f"## Transform throughput, one core, {format_count(n)} records ({time.time() - started:.0f}s)\n")
        print(table(rows, [
            ("contender", "contender"), ("records", "records"), ("per_second", "records/s"),
            ("us_per_record", "µs/record"), ("x_floor_time", "× floor time"), ("x_pymisp_speed", "× PyMISP speed"),
        ]))
        print()
        if args.profile:
            from transform_bench import profile

            print("```\n" + profile(lines) + "```\n")

    if "e2e" in only:
        from e2e_bench import run as e2e_run

        rows = []
        for size in args.e2e_sizes.split(","):
            n = parse_count(size)
            print(f"  e2e {format_count(n)}...", file=sys.stderr, flush=True)
            rows.append(e2e_run(n, events=args.events, window_days=args.window_days))
        results["e2e"] = rows
        print("## End to end: simulator -> fetch -> transform -> expiry -> embedded store\n")
        print(table(rows, [
            ("attributes", "attributes"), ("ages", "attribute ages"), ("engine_wall_s", "engine wall s"),
            ("per_second", "attributes/s"), ("engine_cpu_s", "engine CPU s"), ("per_cpu_second", "per engine CPU s"),
            ("floor_per_cpu_second", "floor per CPU s"), ("x_floor_cpu", "× floor CPU"), ("engine_peak_rss_mb", "engine peak RSS MB"),
            ("simulator_cpu_s", "simulator CPU s"), ("simulator_peak_rss_mb", "simulator peak RSS MB"), ("store_mb", "store MB"),
        ]))
        print()

    if "es" in only:
        from es_bench import run as es_run

        n = parse_count(args.es_size)
        row = es_run(lines, n)
        results["es"] = row
        print("## Elasticsearch bulk writer against a loopback `_bulk` endpoint\n")
        print(table([row], [
            ("documents", "documents"), ("per_second", "documents/s"), ("client_cpu_s", "client CPU s"),
            ("per_cpu_second", "documents per CPU s"), ("batch", "batch"), ("bulk_chunk", "_bulk chunk"),
            ("streaming_bulk_per_cpu_second", "streaming_bulk documents per CPU s"), ("x_streaming_bulk_cpu", "× streaming_bulk CPU"),
        ]))
        print()

    if "store" in only:
        from store_bench import rows as store_rows

        n = parse_count(args.store_size)
        footprint, *lookup_rows = store_rows(lines, n, lookup_values=parse_count(args.lookups))
        results["store"] = [footprint, *lookup_rows]
        print(f"## Embedded store, {format_count(n)} attributes\n")
        print(table([footprint], [
            ("attributes", "attributes"), ("store_mb", "store MB"), ("bytes_per_attribute", "bytes/attribute"),
            ("json_bytes_per_attribute", "document JSON bytes"), ("x_json", "× JSON"), ("per_second", "written/s"),
            ("per_cpu_second", "written per CPU s"),
        ]))
        print()
        print("bytes per attribute by table and index: " + ", ".join(f"{k} {v}" for k, v in footprint["tables"].items() if v))
        print()
        print(table(lookup_rows, [
            ("store", "store"), ("values", "values"), ("values_found", "found"), ("hits", "hits"), ("answer_mb", "answer MB"),
            ("seconds", "s"), ("cpu_s", "CPU s"), ("startup_s", "start-up s"), ("startup_cpu_s", "start-up CPU s"),
            ("per_second", "values/s"), ("per_cpu_second", "values per CPU s"),
        ]))
        print()

    print("## Summary: every row a ratio measured in this run\n")
    print(table(summary(results), [("measure", "measure"), ("value", "value"), ("target", "target")]))
    print()
    info_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"load average at the end: {[round(x, 2) for x in info_end] if info_end else '?'}")
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"saved {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
