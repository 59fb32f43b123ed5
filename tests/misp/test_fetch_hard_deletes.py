"""Hard deletes during an offset run (issue 15): no surviving row is lost.

A hard delete removes rows from MISP's ``timestamp, id`` order. Done while
the reader pages with an offset (a crowded second, or an offset run), it
moves every later row one place towards the start, and the row crossing
the page boundary would be skipped for good (its timestamp is old, no later
poll reads it). What MISP stamps on each kind of delete is in
:mod:`misp_ti.simulator.deletes` (read from MISP 2.5.1's source): an
attribute's hard delete stamps its event, an object's or an event's stamps
nothing. Each test deletes rows the reader has already read, between two
pages of one offset run, and checks every row still in MISP is in the store
at its timestamp, each delivered once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers.sample import T0
from misp_ti.engine import Engine
from misp_ti.simulator import Dataset, MispSimulator, RequestInfo
from misp_ti.simulator.state import Row
from misp_ti.testing.clock import ManualClock
from misp_ti.testing.fixtures import make_client_config

KEY = "sim-hard-delete-key-0123456789abcdef"


def config(sim: MispSimulator, tmp_path: Path, page_size: int, paging: str | None) -> Any:
    misp: dict[str, Any] = {"page_size": page_size, "request_timeout": "30s"}
    if paging is not None:
        misp["paging"] = paging
    return make_client_config(sim.url, KEY, tmp_path, {
        "misp": misp, "streams": {"threat_attributes": {"initial_interval": "5000d"}},
    })


def crowded_second(dataset: Dataset) -> int:
    counts = Counter(int(a["timestamp"]) for a in dataset.attributes())
    return counts.most_common(1)[0][0]


def victim(sim: MispSimulator, lo: int, read: int, at: int | None, kind: str) -> Row | None:
    """A row among the first ``read`` of ``[lo, ...]`` in MISP's ``timestamp, id`` order
    (at or after ``at``; in an object for "object"), or None."""
    ordered = sorted((r for r in sim.state.rows.values() if r.ts >= lo), key=lambda r: (r.ts, r.id))[:read]
    floor = lo if at is None else at
    for row in ordered:
        if row.ts >= floor and (kind != "object" or row.obj is not None):
            return row
    return None


def delete(sim: MispSimulator, row: Row, kind: str) -> None:
    if kind == "attribute":
        sim.hard_delete_attribute(row.attribute["uuid"])
    elif kind == "object":
        assert row.obj is not None
        sim.hard_delete_object(row.obj["uuid"])
    else:
        sim.delete_event(row.event["uuid"])


def backfill_with_delete(
    tmp_path: Path, dataset: Dataset, *, page_size: int, kind: str, at: int | None, paging: str | None = None
) -> tuple[dict[str, int], Counter[str], list[int]]:
    """Backfill; at page 3 or later of an offset run, delete what holds a row read
    already (one at or after ``at`` if given, i.e. inside that crowded second).

    Returns MISP's rows afterwards (uuid -> timestamp), how often each uuid
    was delivered and the ``lo`` of the run where the delete happened.
    """
    clock = ManualClock(start=T0)
    fired: list[int] = []
    delivered: Counter[str] = Counter()

    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim:

        def delete_mid_run(info: RequestInfo) -> None:
            body = info.body
            if fired or body.get("limit") == 1 or body.get("page", 1) < 3 or "timestamp" not in body:
                return
            lo = body["timestamp"][0]
            with sim.state.lock:  # a row on a page read already: deleting it shifts the pages to come
                row = victim(sim, lo, (body["page"] - 1) * page_size - 1, at, kind)
            if row is not None:
                fired.append(lo)
                delete(sim, row, kind)

        sim.on_request(delete_mid_run)
        with Engine(config(sim, tmp_path, page_size, paging), clock=clock) as engine:
            original = engine.process

            def count(stream: str, records: Any, ctx: Any) -> Any:
                records = list(records)
                delivered.update(r["uuid"].lower() for r in records)
                return original(stream, records, ctx)

            engine.process = count  # type: ignore[method-assign]
            [result] = engine.run_once()
        assert result.completed
        survivors = {uuid: row.ts for uuid, row in sim.state.row_by_uuid.items()}
    assert fired, "no offset run reached its 3rd page: the scenario did not happen"
    return survivors, delivered, fired


#: (page size, where, kind); at page size 20 the busiest second (67 rows, none
#: in an object) is read by plain offset pages of its own, so no object there
SCENARIOS = [
    *((7, where, kind) for where in ("first-run", "crowded-second") for kind in ("attribute", "object", "event")),
    (20, "crowded-second", "attribute"),
    (20, "crowded-second", "event"),
]


@pytest.mark.parametrize(("page_size", "where", "kind"), SCENARIOS)
def test_hard_delete_during_an_offset_run_loses_no_surviving_row(
    tmp_path: Path, dataset: Dataset, kind: str, page_size: int, where: str
) -> None:
    at = crowded_second(dataset) if where == "crowded-second" else None
    survivors, delivered, _ = backfill_with_delete(tmp_path, dataset, page_size=page_size, kind=kind, at=at)
    original = {a["uuid"].lower() for a in dataset.attributes()}
    assert len(survivors) < len(original)  # something was deleted
    missing = set(survivors) - set(delivered)
    assert not missing, f"{len(missing)} surviving rows never delivered"
    assert set(delivered) <= original
    # no attribute timestamp moved, so no row may come twice (the overlap
    # re-delivers rows only on a resumed cycle, and there is none here)
    assert max(delivered.values()) == 1


def test_fast_paging_is_blind_to_an_event_delete_which_is_why_exact_is_the_default(tmp_path: Path, dataset: Dataset) -> None:
    """``misp.paging = "fast"``: the change probe sees only what MISP stamps, and
    ``Event::quickDelete`` stamps nothing: the same scenario loses rows."""
    survivors, delivered, _ = backfill_with_delete(
        tmp_path, dataset, page_size=7, kind="event", at=None, paging="fast"
    )
    assert set(survivors) - set(delivered)


def test_fast_paging_sees_an_attribute_hard_delete_through_its_event(tmp_path: Path, dataset: Dataset) -> None:
    """``deleteAttribute(hard)`` stamps the event (``unpublishEvent``): the probe says "changed"."""
    survivors, delivered, _ = backfill_with_delete(
        tmp_path, dataset, page_size=7, kind="attribute", at=None, paging="fast"
    )
    assert not set(survivors) - set(delivered)
