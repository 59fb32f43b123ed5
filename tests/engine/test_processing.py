"""Page calls (misp_ti.processing) give the documents the hooks give, and step
aside whenever a plugin or a monitor must see the calls."""

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
from misp_ti.processing import PASSES, _Folder, page_call, page_calls, through_hooks

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
def test_the_default_plugins_page_calls_give_the_documents_of_the_hooks(store_config: Callable[..., Config], expiry: dict[str, Any]) -> None:
    with Engine(store_config(expiry=expiry), clock=lambda: NOW) as engine:
        ctx = engine.context(dry_run=True)
        assert page_calls(engine.pm, "threat_attributes", ctx) is not None
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
        assert page_calls(engine.pm, "threat_attributes", ctx) is None
        docs = engine.process("threat_attributes", _records()[:20:2], ctx)
        assert {doc["misp"]["attribute"]["decayed_at"] for doc in docs} == {"2034-05-30T00:00:00.000Z"}


def test_a_third_party_transform_doc_asked_first_takes_the_hooks(store_config: Callable[..., Config]) -> None:
    calls: list[str] = []

    class First:
        @hookimpl(tryfirst=True)
        def transform_doc(self) -> None:
            calls.append("first")  # passes: the default transform answers

    class Last:
        @hookimpl(trylast=True)
        def transform_doc(self) -> dict[str, Any]:
            calls.append("last")  # asked after the default transform, which always answers: never
            return {}

    records = _records()[:4:2]
    with Engine(store_config(), extra_plugins=[Last()], clock=lambda: NOW) as engine:
        ctx = engine.context(dry_run=True)
        assert page_calls(engine.pm, "threat_attributes", ctx) is not None
        expected = engine.process("threat_attributes", records, ctx)
        assert calls == []
    with Engine(store_config(), extra_plugins=[Last(), First()], clock=lambda: NOW) as engine:
        ctx = engine.context(dry_run=True)
        assert page_calls(engine.pm, "threat_attributes", ctx) is None
        assert engine.process("threat_attributes", records, ctx) == expected
        assert calls == ["first", "first"]


@pytest.mark.parametrize("policy", ["refetch", "decay-model"])
def test_the_other_built_in_policies_have_page_calls_too(store_config: Callable[..., Config], tmp_path: Path, policy: str) -> None:
    models = tmp_path / "models.json"
    models.write_text("[]")
    with Engine(store_config(expiry={"policy": policy, "decay_models_path": str(models)}), clock=lambda: NOW) as engine:
        ctx = engine.context(dry_run=True)
        assert page_calls(engine.pm, "threat_attributes", ctx) is not None
        records = _records()
        assert orjson.dumps(engine.process("threat_attributes", records, ctx)) == orjson.dumps(_hook_docs(engine, records, ctx))


def test_a_plugin_may_offer_page_calls_and_pass_for_a_context(store_config: Callable[..., Config]) -> None:
    seen: list[str] = []

    def factory(stream: str, ctx: Any) -> Any:
        seen.append(stream)
        return PASSES if stream != "threat_attributes" or ctx.policy != "duration" else (lambda record, doc: None)

    class Sometimes:  # answers None for every record: the default expiry decides
        @hookimpl(tryfirst=True)
        @page_call(factory)
        def compute_expiry(self) -> None:
            return None

    with Engine(store_config(), extra_plugins=[Sometimes()], clock=lambda: NOW) as engine:
        ctx = engine.context(dry_run=True)
        records = _records()[:10]
        assert page_calls(engine.pm, "threat_attributes", ctx) is not None
        docs = engine.process("threat_attributes", records, ctx)
        assert orjson.dumps(docs) == orjson.dumps(_hook_docs(engine, records, ctx))
        assert seen == ["threat_attributes", "threat_attributes"]


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
