"""Make ``store.db.gz``: an embedded store written by misp-ti's schema 2 code.

Run once, with the schema 2 code on the path (commit 01631d4, before schema
3), from the repository root::

    git archive 01631d4 src | tar -x -C /tmp/v2
    PYTHONPATH=/tmp/v2/src python tests/data/store-v2/make_store_v2.py

It writes ``store.db.gz`` (the store, checkpointed), ``batches.ndjson.gz`` (the
documents of each batch, with its ingest time), ``values.txt`` (what the
test asks) and ``expected.ndjson`` / ``expected.txt`` (what that code's
``misp-ti lookup - [--json]`` answered). The documents: one to three
real attributes (value up to 200 characters) of each MISP type of
``tests/data/misp_feed_attributes``,
transformed, valid until 2999, plus hand-made ones for what the feed lacks
(IPv6, a network, an IDN, a pipeline error), a second batch that replaces
one row, and a third whose retention forgets an expired one (a gap in the
rowids).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import orjson

from misp_ti.ecs.documents import transform
from misp_ti.ecs.options import Options
from misp_ti.sinks.sqlite import SCHEMA_VERSION, EmbeddedStore, indicator_values

HERE = Path(__file__).resolve().parent
FEED = HERE.parent / "misp_feed_attributes.ndjson.gz"
T1, T2, T3 = (datetime(2026, 1, day, tzinfo=UTC) for day in (1, 2, 20))
VALID = {"decayed": False, "decayed_at": "2999-01-01T00:00:00.000Z"}


def hand_made(uuid: str, misp_type: str, value: str, indicator: dict, **attribute: object) -> dict:
    return {
        "_id": f"hand-{uuid}", "@timestamp": "2025-12-31T00:00:00.000Z",
        "event": {"kind": "enrichment", "dataset": "ti_misp.threat_attributes"},
        "threat": {"indicator": {"provider": "misp", **indicator}},
        "misp": {"attribute": {"uuid": uuid, "type": misp_type, "value": value, **VALID, **attribute},
                 "event": {"info": f"hand-made {misp_type}"}},
    }


def main() -> None:
    assert SCHEMA_VERSION == 2, "run with the schema 2 code on PYTHONPATH"
    opts = Options("threat_attributes", ingested="2026-01-01T00:00:00.000Z")
    by_type: dict[str, list[dict]] = defaultdict(list)
    with gzip.open(FEED, "rb") as fh:
        for line in fh:
            record = orjson.loads(line)
            if len(by_type[record["type"]]) < 3 and len(record.get("value") or "") <= 200:
                doc = transform(record, opts)
                doc["misp"]["attribute"].update(VALID)
                by_type[record["type"]].append(doc)
    first = [doc for docs in by_type.values() for doc in docs]
    first += [
        hand_made("v6", "ip-dst", "2001:DB8:0:0:0:0:0:1", {"type": "ipv6-addr", "ip": "2001:DB8:0:0:0:0:0:1"}),
        hand_made("net", "ip-dst", "198.51.100.7/24", {"type": "ipv4-addr", "ip": "198.51.100.7/24"}),
        hand_made("idn", "domain", "bücher.example", {"type": "domain-name", "url": {"domain": "bücher.example"}}),
        hand_made("old", "domain", "expired.example", {"type": "domain-name", "url": {"domain": "expired.example"}},
                  decayed=True, decayed_at="2025-12-01T00:00:00.000Z"),
        transform({"uuid": "broken", "type": "no-such-type", "value": "x", "timestamp": "1"}, opts),
    ]
    replaced = dict(first[0], _id="replaced-once")
    replaced["misp"] = {**first[0]["misp"], "attribute": {**first[0]["misp"]["attribute"], "comment": "edited"}}
    batches = [(T1, first), (T2, [replaced]), (T3, [hand_made("late", "domain", "late.example",
                                                           {"type": "domain-name", "url": {"domain": "late.example"}})])]
    path = HERE / "store.db"
    path.unlink(missing_ok=True)
    store = EmbeddedStore(path)
    store.provision()
    for ingested, docs in batches:
        # the third batch's retention (10 days) forgets the row expired in 2025
        store.write(docs, ingested=ingested, retention_cutoff=datetime(2026, 1, 10, tzinfo=UTC) if ingested == T3 else None)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.conn.execute("PRAGMA journal_mode = DELETE")
    store.close()
    with path.open("rb") as src, (HERE / "store.db.gz").open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as dst:
        shutil.copyfileobj(src, dst)
    with (HERE / "batches.ndjson.gz").open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write(b"".join(orjson.dumps({"ingested": ingested.isoformat(), "docs": docs}) + b"\n" for ingested, docs in batches))
    asked = sorted({v for _, docs in batches for doc in docs for v in indicator_values(doc) if "\n" not in v and "\r" not in v and v == v.strip()})
    asked += ["2001:db8::1", "198.51.100.200", "XN--BCHER-KVA.example", "expired.example", "absent.example", "10.9.9.9"]
    (HERE / "values.txt").write_text("\n".join(asked) + "\n", encoding="utf-8")
    for name, extra in (("expected.ndjson", ["--json"]), ("expected.txt", [])):
        done = subprocess.run([sys.executable, "-m", "misp_ti", "lookup", "-", *extra, "--db", str(path)],
                              input=(HERE / "values.txt").read_bytes(), capture_output=True, check=False)
        assert done.returncode == 1, done.stderr
        (HERE / name).write_bytes(done.stdout)
    path.unlink()


if __name__ == "__main__":
    main()
