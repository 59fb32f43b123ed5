"""The default pipeline (misp_ti.processing) gives the documents the hooks give,
and steps aside whenever a plugin or a monitor must see the calls."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from misp_ti import hookimpl
from misp_ti.config import Config
from misp_ti.engine import Engine
from misp_ti.model import Expiry
from misp_ti.processing import _default_pipeline, _Folder, through_hooks

NOW = datetime(2024, 6, 1, tzinfo=UTC)
FEED = Path(__file__).resolve().parents[1] / "data" / "misp_feed_attributes.ndjson.gz"


def _records() -> list[Any]:
    """Real attributes (every 7th of the shipped feed) and the odd shapes the
    transform or the expiry turns into pipeline errors, mixed in."""
    with gzip.open(FEED, "rb") as fh:
        real = [orjson.loads(line) for line in fh][::7]
    odd: list[Any] = [
        "not an object",
        {"uuid": "u-1", "type": "ip-dst", "value": "10.0.0.1"},  # no timestamp
        {"uuid": "u-2", "type": "no-such-type", "value": "x", "timestamp": "1"},
        {**real[0], "uuid": "u-3", "deleted": True},
        {**real[1], "uuid": "u-4", "to_ids": "0"},
        {**real[2], "uuid": "u-5", "Tag": "not a list"},
        {**real[3], "uuid": "u-6", "last_seen": "2030-01-01T00:00:00.123456+00:00"},
        {**real[4], "uuid": "u-7", "decay_score": [{"decayed": True}]},
    ]
    return [r for pair in zip(real, odd * (len(real) // len(odd) + 1), strict=False) for r in pair]


def _hook_docs(engine: Engine, records: list[Any], ctx: Any) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    through_hooks(engine.pm, "threat_attributes", records, ctx, docs, _Folder())
    return docs


@pytest.mark.parametrize("expiry", [{}, {"by_type": {"ip-dst": "3d", "url": "1d"}, "expire_when_not_to_ids": True}])
def test_the_default_pipeline_gives_the_documents_of_the_hooks(store_config: Callable[..., Config], expiry: dict[str, Any]) -> None:
    with Engine(store_config(expiry=expiry), clock=lambda: NOW) as engine:
        ctx = engine.context(dry_run=True)
        assert _default_pipeline(engine.pm, "threat_attributes", ctx) is not None
        records = _records()
        docs = engine.process("threat_attributes", records, ctx)
        assert orjson.dumps(docs) == orjson.dumps(_hook_docs(engine, records, ctx))
        kinds = {doc["event"]["kind"] for doc in docs}
        assert kinds == {"enrichment", "pipeline_error"}
        decided = {doc["misp"]["attribute"]["decayed"] for doc in docs if "misp" in doc}
        assert decided == {True, False}


def test_a_third_party_compute_expiry_is_asked_for_every_record(store_config: Callable[..., Config]) -> None:
    class Forever:
        @hookimpl(tryfirst=True)
        def compute_expiry(self, record: Any) -> Expiry:
            return Expiry(False, NOW + timedelta(days=3650), "forever")

    with Engine(store_config(), extra_plugins=[Forever()], clock=lambda: NOW) as engine:
        ctx = engine.context(dry_run=True)
        assert _default_pipeline(engine.pm, "threat_attributes", ctx) is None
        docs = engine.process("threat_attributes", _records()[:20:2], ctx)
        assert {doc["misp"]["attribute"]["decayed_at"] for doc in docs} == {"2034-05-30T00:00:00.000Z"}


def test_a_third_party_transform_doc_and_other_policies_take_the_hooks(store_config: Callable[..., Config]) -> None:
    class Stamps:
        @hookimpl(trylast=True)  # asked after the default one, which always answers
        def transform_doc(self) -> dict[str, Any]:
            return {"never": True}

    with Engine(store_config(), extra_plugins=[Stamps()], clock=lambda: NOW) as engine:
        assert _default_pipeline(engine.pm, "threat_attributes", engine.context(dry_run=True)) is None
    with Engine(store_config(expiry={"policy": "refetch"}), clock=lambda: NOW) as engine:
        assert _default_pipeline(engine.pm, "threat_attributes", engine.context(dry_run=True)) is None


def test_monitoring_switched_on_mid_page_sees_the_rest_of_it(store_config: Callable[..., Config]) -> None:
    records = _records()[:6:2]  # three real attributes
    with Engine(store_config(), clock=lambda: NOW) as engine:
        ctx = engine.context(dry_run=True)
        expected = engine.process("threat_attributes", records, ctx)
        seen: list[str] = []

        def monitored() -> Any:
            yield records[0]
            undo.append(engine.pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *args: None))
            yield from records[1:]

        undo: list[Callable[[], None]] = []
        try:
            docs = engine.process("threat_attributes", monitored(), ctx)
        finally:
            for u in undo:
                u()
        assert docs == expected
        assert seen == ["transform_doc", "compute_expiry"] * 2
