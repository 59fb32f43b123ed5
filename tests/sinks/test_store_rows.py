"""The embedded store, in process: which row wins, which rows stay, what lookup and counts answer.

Each test writes documents as the engine hands them to the sink and reads
back only what a user sees: lookup answers, the active documents, the
counts of ``misp-ti status``, and which rows retention keeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from misp_ti.sinks.sqlite import EmbeddedStore

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ATTRS = "ti_misp.threat_attributes"
EVENTS = "ti_misp.threat"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def doc(uuid: str, value: str, *, doc_id: str | None = None, ts: datetime = NOW - timedelta(hours=1), dataset: str = ATTRS,
        decayed: bool = False, decayed_at: datetime | None = NOW + timedelta(days=1), itype: str | None = "ipv4-addr") -> dict[str, Any]:
    attribute: dict[str, Any] = {"uuid": uuid, "value": value, "decayed": decayed}
    if decayed_at is not None:
        attribute["decayed_at"] = stamp(decayed_at)
    indicator = {"type": itype, "ip": value} if itype else {}
    return {
        "_id": doc_id or f"{uuid}-{value}", "@timestamp": stamp(ts),
        "event": {"kind": "enrichment", "dataset": dataset},
        "threat": {"indicator": indicator},
        "misp": {"attribute": attribute},
    }


def error_doc(doc_id: str) -> dict[str, Any]:
    return {"_id": doc_id, "@timestamp": stamp(NOW), "event": {"kind": "pipeline_error", "dataset": ATTRS, "original": "{"},
            "error": {"message": "MISP sent this record as invalid JSON"}}


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    opened = EmbeddedStore(tmp_path / "s.db")
    opened.provision()
    return opened


def values(found: list[dict[str, Any]]) -> list[str]:
    return [d["misp"]["attribute"]["value"] for d in found]


def test_a_later_batch_replaces_the_row_and_an_older_replay_does_not(store: EmbeddedStore) -> None:
    modified = NOW - timedelta(hours=10)  # the attribute's timestamp, older than every ingest below
    store.write([doc("u1", "192.0.2.1", ts=modified)], ingested=NOW - timedelta(hours=2), retention_cutoff=None)
    store.write([doc("u1", "192.0.2.2", ts=modified)], ingested=NOW - timedelta(hours=1), retention_cutoff=None)
    assert values(store.lookup("192.0.2.2", now=NOW)) == ["192.0.2.2"]
    assert store.lookup("192.0.2.1", now=NOW) == []  # the old value no longer matches
    # a batch ingested earlier (a replay from a slower worker) does not win, and
    # does not touch the lookup keys of the row that stays
    store.write([doc("u1", "192.0.2.3", ts=modified)], ingested=NOW - timedelta(hours=3), retention_cutoff=None)
    assert store.lookup("192.0.2.3", now=NOW) == []
    assert values(store.lookup("192.0.2.2", now=NOW)) == ["192.0.2.2"]
    assert values(list(store.active(now=NOW))) == ["192.0.2.2"]


def test_same_ingest_time_the_newer_attribute_timestamp_wins_in_either_order(store: EmbeddedStore) -> None:
    older, newer = doc("u1", "192.0.2.1", ts=NOW - timedelta(hours=2)), doc("u1", "192.0.2.2", ts=NOW - timedelta(hours=1))
    store.write([newer], ingested=NOW, retention_cutoff=None)
    store.write([older], ingested=NOW, retention_cutoff=None)
    assert values(list(store.active(now=NOW))) == ["192.0.2.2"]
    # equal versions: the later write wins (a refetch of the same attribute with a corrected value)
    same = doc("u1", "192.0.2.9", ts=NOW - timedelta(hours=1))
    store.write([same], ingested=NOW, retention_cutoff=None)
    assert values(store.lookup("192.0.2.9", now=NOW)) == ["192.0.2.9"] and store.lookup("192.0.2.2", now=NOW) == []


def test_in_one_batch_the_last_of_two_equal_versions_wins(store: EmbeddedStore) -> None:
    store.write([doc("u1", "192.0.2.1"), doc("u1", "192.0.2.2")], ingested=NOW, retention_cutoff=None)
    assert values(list(store.active(now=NOW))) == ["192.0.2.2"]


def test_a_replayed_batch_keeps_every_value_findable(store: EmbeddedStore) -> None:
    batch = [doc("u1", "192.0.2.1"), doc("u2", "192.0.2.2")]
    store.write(batch, ingested=NOW, retention_cutoff=None)
    store.write(batch, ingested=NOW, retention_cutoff=None)
    assert [values(v) for v in store.lookup_many(["192.0.2.1", "192.0.2.2"], now=NOW)] == [["192.0.2.1"], ["192.0.2.2"]]
    assert store.counts(now=NOW)["source_documents"] == 2 and store.counts(now=NOW)["latest"] == 2


def test_expired_and_decayed_rows_are_not_found_and_counted_as_expired(store: EmbeddedStore) -> None:
    store.write([
        doc("live", "192.0.2.1"),
        doc("decayed", "192.0.2.2", decayed=True),
        doc("gone", "192.0.2.3", decayed_at=NOW - timedelta(seconds=1)),
        doc("edge", "192.0.2.4", decayed_at=NOW),  # expires at this very instant: no longer active
        doc("noexp", "192.0.2.5", decayed_at=None),  # no expiry date: never active
        doc("typeless", "192.0.2.6", itype=None),
        error_doc("err-1"),
    ], ingested=NOW - timedelta(minutes=5), retention_cutoff=None)
    assert [values(v) for v in store.lookup_many(["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"], now=NOW)] == [
        ["192.0.2.1"], [], [], [], []]
    assert sorted(d["misp"]["attribute"]["uuid"] for d in store.active(now=NOW)) == ["live", "typeless"]
    assert store.active_keys(now=NOW) == {(ATTRS, "live"), (ATTRS, "typeless")}
    counts = store.counts(now=NOW)
    assert counts == {
        "source_documents": 7, "latest": 6, "active": 2, "expired": 4, "pipeline_errors": 1,
        "by_type": {"(none)": {"active": 1, "expired": 0}, "ipv4-addr": {"active": 1, "expired": 4}},
    }
    # an hour earlier, "gone" and "edge" were still active
    assert store.counts(now=NOW - timedelta(hours=1))["active"] == 4


def test_a_pipeline_error_or_a_document_without_uuid_never_becomes_a_lookup_hit(store: EmbeddedStore) -> None:
    nameless = doc("", "192.0.2.7")
    store.write([error_doc("err-1"), nameless], ingested=NOW, retention_cutoff=None)
    assert store.lookup("192.0.2.7", now=NOW) == [] and list(store.active(now=NOW)) == []
    counts = store.counts(now=NOW)
    assert (counts["source_documents"], counts["latest"], counts["pipeline_errors"]) == (2, 0, 1)


def test_lookup_filters_by_dataset_and_orders_by_dataset_then_uuid(store: EmbeddedStore) -> None:
    store.write([
        doc("u2", "192.0.2.1", dataset=ATTRS), doc("u1", "192.0.2.1", dataset=ATTRS), doc("e1", "192.0.2.1", dataset=EVENTS),
    ], ingested=NOW, retention_cutoff=None)
    everything = store.lookup("192.0.2.1", now=NOW)
    assert [(d["event"]["dataset"], d["misp"]["attribute"]["uuid"]) for d in everything] == [
        (EVENTS, "e1"), (ATTRS, "u1"), (ATTRS, "u2")]
    assert [d["misp"]["attribute"]["uuid"] for d in store.lookup("192.0.2.1", now=NOW, dataset=EVENTS)] == ["e1"]
    assert [d["misp"]["attribute"]["uuid"] for d in store.active(now=NOW, dataset=ATTRS)] == ["u1", "u2"]
    assert [d["misp"]["attribute"]["uuid"] for d in store.active(now=NOW)] == ["e1", "u1", "u2"]
    assert store.datasets() == [EVENTS, ATTRS]
    [[summary]] = store.lookup_many(["192.0.2.1"], now=NOW, dataset=EVENTS, summaries=True)
    assert summary["uuid"] == "e1" and summary["value"] == "192.0.2.1" and summary["dataset"] == EVENTS


def test_an_address_finds_the_stored_networks_that_contain_it(store: EmbeddedStore) -> None:
    store.write([doc("n1", "198.51.100.0/24"), doc("n2", "198.51.0.0/16"), doc("n3", "203.0.113.0/24")],
                ingested=NOW, retention_cutoff=None)
    [inside, outside] = store.lookup_many(["198.51.100.77", "192.0.2.1"], now=NOW)
    assert sorted(values(inside)) == ["198.51.0.0/16", "198.51.100.0/24"] and outside == []


def test_many_values_are_answered_in_order_beyond_one_sql_chunk(store: EmbeddedStore) -> None:
    batch = [doc(f"u{i:04d}", f"10.0.{i // 250}.{i % 250}") for i in range(1200)]
    store.write(batch, ingested=NOW, retention_cutoff=None)
    asked = [f"10.0.{i // 250}.{i % 250}" for i in range(1200)] + ["10.9.9.9"]
    answers = store.lookup_many(asked, now=NOW)
    assert [values(a) for a in answers[:-1]] == [[v] for v in asked[:-1]] and answers[-1] == []
    # and a second batch rewriting all of them (more than one chunk of stored keys)
    store.write([doc(f"u{i:04d}", f"10.1.{i // 250}.{i % 250}") for i in range(1200)], ingested=NOW + timedelta(seconds=1),
                retention_cutoff=None)
    assert all(found == [] for found in store.lookup_many(asked[:-1], now=NOW))  # no old value matches any more
    assert [values(a) for a in store.lookup_many([f"10.1.{i // 250}.{i % 250}" for i in range(1200)], now=NOW)] == [
        [f"10.1.{i // 250}.{i % 250}"] for i in range(1200)]
    assert store.counts(now=NOW)["latest"] == 1200


def test_retention_keeps_what_is_still_active_or_recently_read(store: EmbeddedStore) -> None:
    day = timedelta(days=1)
    cutoff = NOW - 10 * day
    store.write([
        doc("expired-old", "192.0.2.1", decayed_at=NOW - 30 * day),   # expired and not read for 20 days: forgotten
        doc("active-old", "192.0.2.2", decayed_at=NOW + day),         # not re-read, but still active: kept
        doc("expired-edge", "192.0.2.3", decayed_at=cutoff),          # expired exactly at the cutoff: kept
    ], ingested=NOW - 20 * day, retention_cutoff=None)
    store.write([doc("expired-reread", "192.0.2.4", decayed_at=NOW - 30 * day)], ingested=cutoff, retention_cutoff=None)
    store.write([doc("new", "192.0.2.5")], ingested=NOW, retention_cutoff=cutoff)
    kept = set(uuid for _, uuid in store.latest_snapshot())
    assert kept == {"active-old", "expired-edge", "expired-reread", "new"}
    assert values(store.lookup("192.0.2.2", now=NOW)) == ["192.0.2.2"]
    # source rows: only those ingested at or after the cutoff
    assert store.counts(now=NOW)["source_documents"] == 2


def test_retention_runs_once_per_cycle_not_per_batch(store: EmbeddedStore) -> None:
    day = timedelta(days=1)
    store.write([doc("first", "192.0.2.1", decayed_at=NOW - 30 * day)], ingested=NOW - 20 * day, retention_cutoff=None)
    store.write([doc("a", "192.0.2.2")], ingested=NOW, retention_cutoff=NOW - 10 * day)
    assert {u for _, u in store.latest_snapshot()} == {"a"}
    # a second batch of the same cycle (same ingest time) does not scan again ...
    store.write([doc("late", "192.0.2.3", decayed_at=NOW - 30 * day)], ingested=NOW - 20 * day, retention_cutoff=None)
    store.write([doc("b", "192.0.2.4")], ingested=NOW, retention_cutoff=NOW - 10 * day)
    assert {u for _, u in store.latest_snapshot()} == {"a", "b", "late"}
    # ... the next cycle does
    store.write([doc("c", "192.0.2.5")], ingested=NOW + timedelta(minutes=5), retention_cutoff=NOW - 10 * day)
    assert {u for _, u in store.latest_snapshot()} == {"a", "b", "c"}


def test_write_returns_how_many_documents_it_was_given(store: EmbeddedStore) -> None:
    assert store.write([doc("u1", "192.0.2.1"), error_doc("e"), doc("u1", "192.0.2.1")], ingested=NOW, retention_cutoff=None) == 3
    assert store.write([], ingested=NOW, retention_cutoff=None) == 0


def test_a_value_of_a_forgotten_row_never_finds_the_row_stored_after_it(store: EmbeddedStore) -> None:
    day = timedelta(days=1)
    store.write([doc("keep", "192.0.2.1")], ingested=NOW - 30 * day, retention_cutoff=None)
    store.write([doc("old", "192.0.2.2", decayed_at=NOW - 25 * day)], ingested=NOW - 20 * day, retention_cutoff=None)
    store.write([doc("keep", "192.0.2.1")], ingested=NOW, retention_cutoff=NOW - 10 * day)  # forgets "old"
    # the next row may reuse the forgotten row's place in the file: its values must not come back with it
    store.write([doc("new", "192.0.2.3")], ingested=NOW + timedelta(minutes=5), retention_cutoff=None)
    assert store.lookup("192.0.2.2", now=NOW) == []
    assert values(store.lookup("192.0.2.3", now=NOW)) == ["192.0.2.3"]


def test_a_store_replaced_while_a_batch_is_written_is_not_confirmed_and_says_so_again(
    store: EmbeddedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import misp_ti.sinks.sqlite as sqlite_module
    from misp_ti.errors import StoreError

    real_keys = sqlite_module.lookup_keys

    def keys_then_replace(document: dict[str, Any]) -> Any:
        # another program swaps the file while this batch is inside its transaction
        path = tmp_path / "s.db"
        path.rename(tmp_path / "moved.db")
        EmbeddedStore(path).close()
        monkeypatch.setattr(sqlite_module, "lookup_keys", real_keys)
        return real_keys(document)

    monkeypatch.setattr(sqlite_module, "lookup_keys", keys_then_replace)
    with pytest.raises(StoreError, match="was replaced by another file"):
        store.write([doc("u1", "192.0.2.1")], ingested=NOW, retention_cutoff=None)
    assert not store.conn.in_transaction  # rolled back, nothing half-written
    # the next batch gets the same one-line answer, not a SQLite transaction error
    with pytest.raises(StoreError, match="was replaced by another file"):
        store.write([doc("u2", "192.0.2.2")], ingested=NOW, retention_cutoff=None)
