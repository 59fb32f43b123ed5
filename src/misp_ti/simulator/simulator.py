"""``MispSimulator``: a MISP REST API on a loopback port, for tests, the demo and the CLI."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from misp_ti.simulator import deletes
from misp_ti.simulator.dataset import Dataset
from misp_ti.simulator.decay import default_models, normalise_models
from misp_ti.simulator.faults import FaultPlan
from misp_ti.simulator.filters import compile_query
from misp_ti.simulator.render import render_attribute
from misp_ti.simulator.server import RecordedRequest, RequestInfo, SimulatorHTTPServer
from misp_ti.simulator.state import SimState
from misp_ti.simulator.warninglist import DEFAULT_WARNINGLIST, Warninglist

__all__ = ["MispSimulator"]


def _system_clock() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _epoch(value: datetime | int | float) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("aware datetimes only (UTC)")
        return int(value.timestamp())
    return int(value)


class MispSimulator:
    """A simulated MISP serving ``dataset`` (see the package docstring for what it reproduces).

    ``clock`` is any callable returning an aware datetime (a ``ManualClock``
    for deterministic tests); relative filters, decay scores and mutation
    timestamps use it. ``seed`` drives fault draws and generated uuids.
    ``adopt_dataset=True`` serves ``dataset``'s own objects instead of a copy
    (half the memory for 100k+ attributes; do not use that Dataset afterwards).
    ``warning_for_all`` is MISP's ``MISP.warning_for_all`` setting: with it,
    ``enforceWarninglist`` on ``/events/restSearch`` drops ``to_ids: false``
    attributes too.
    """

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        api_key: str = "test-key",
        clock: Callable[[], datetime] | None = None,
        faults: str | FaultPlan | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_delay: float = 5.0,
        retry_after: int = 1,
        models: Iterable[Mapping[str, Any]] | None = None,
        warninglist: Warninglist | None = None,
        adopt_dataset: bool = False,
        warning_for_all: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("MispSimulator needs a non-empty api_key")
        self.api_key = api_key
        self.clock = clock or _system_clock
        self.seed = seed
        self.host, self.port = host, port
        self.timeout_delay = timeout_delay
        self.retry_after = retry_after
        self.models = normalise_models(models) if models is not None else default_models()
        self.state = SimState(
            dataset if dataset is not None else Dataset([]),
            seed=seed,
            models=self.models,
            warninglist=warninglist or DEFAULT_WARNINGLIST,
            adopt=adopt_dataset,
            warning_for_all=warning_for_all,
        )
        self.requests: list[RecordedRequest] = []
        self._faults = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults, seed)
        self._callbacks: list[Callable[[RequestInfo], Any]] = []
        self._counter_lock = threading.Lock()
        self._request_number = 0
        self._stopping = threading.Event()
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> MispSimulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = SimulatorHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"misp-simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes requests sleeping in a "timeout" fault
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MispSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(
                "the simulator is not running: use it as a context manager or call start()"
            )
        return f"http://{self.host}:{self.port}"

    def now(self) -> int:
        return _epoch(self.clock())

    # -- test hooks --------------------------------------------------------------------------
    def on_request(self, callback: Callable[[RequestInfo], Any]) -> Callable[[RequestInfo], Any]:
        """Call ``callback(info)`` before each restSearch request is answered (also usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def set_faults(self, faults: str | FaultPlan | None) -> None:
        """Replace the fault plan; request numbering continues (``kind@N`` counts from the first request)."""
        self._faults = (
            faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults, self.seed)
        )

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    def _next_request(self) -> tuple[int, str | None]:
        with self._counter_lock:
            self._request_number += 1
            number = self._request_number
        return number, self._faults.pick(number)

    def _notify(self, info: RequestInfo) -> None:
        for callback in list(self._callbacks):
            callback(info)

    def _record(self, request: RecordedRequest) -> None:
        with self._counter_lock:
            self.requests.append(request)

    def _search(self, route: str, body: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        now = self.now()
        scope = "Attribute" if route == "attributes" else "Event"
        query = compile_query(body, scope, now, self.state.tag_exists)
        if route == "attributes":
            result = self.state.search_attributes(query, now)
            payload = orjson.dumps({"response": {"Attribute": result.records}})
            headers: dict[str, Any] = {
                "X-Result-Count": result.result_count,
                "X-Skipped-Elements-Count": result.skipped,
            }
        else:
            result = self.state.search_events(query, now)
            payload = orjson.dumps({"response": result.records})
            # EventsController::restSearch sends the skipped count (0: events are
            # never dropped, only their attributes) and a download file name
            headers = {
                "X-Result-Count": result.result_count,
                "X-Skipped-Elements-Count": result.skipped,
                "Content-Disposition": 'attachment; filename="misp.event.list.json"',
            }
        headers.update({"X-Export-Module-Used": "json", "X-Response-Format": "json"})
        return payload, headers

    # -- data ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.state.rows)

    def attribute(self, uuid: str, *, include_event_tags: bool = False) -> dict[str, Any]:
        """The stored attribute as ``/attributes/restSearch`` renders it (deleted ones too)."""
        with self.state.lock:
            row = self.state.row(uuid)
            return render_attribute(
                row.attribute, row.event, row.obj, include_event_tags=include_event_tags
            )

    def add_attribute(self, event_uuid: str | None = None, **fields: Any) -> dict[str, Any]:
        """Add an attribute (to a new event when ``event_uuid`` is None); its timestamp is the clock's now.

        Fields: ``type`` and ``value`` (required), ``category``, ``to_ids``,
        ``comment``, ``tags`` (names or tag dicts), ``uuid``, ``first_seen`` …
        """
        row = self.state.add_attribute(event_uuid, fields, self.now())
        return self.attribute(row.attribute["uuid"])

    def modify_attribute(self, uuid: str, **fields: Any) -> dict[str, Any]:
        """Change fields; the attribute and event timestamps move to now and the event is unpublished, as in MISP."""
        row = self.state.modify_attribute(uuid, fields, self.now())
        return self.attribute(row.attribute["uuid"])

    def delete_attribute(self, uuid: str) -> dict[str, Any]:
        """Soft delete (``deleted: true``), timestamp bumped: visible to ``deleted: [0, 1]`` searches."""
        row = self.state.modify_attribute(uuid, {"deleted": True}, self.now())
        return self.attribute(row.attribute["uuid"])

    def hard_delete_attribute(self, uuid: str) -> None:
        """Hard delete: the row is gone; only the event's timestamp moves to now (see :mod:`.deletes`)."""
        deletes.hard_delete_attribute(self.state, uuid, self.now())

    def hard_delete_object(self, object_uuid: str) -> int:
        """Hard delete of an object and its attributes; no timestamp moves. Returns the rows removed."""
        return deletes.hard_delete_object(self.state, object_uuid)

    def delete_event(self, event_uuid: str) -> int:
        """Delete an event and all its attributes; nothing is stamped. Returns the rows removed."""
        return deletes.delete_event(self.state, event_uuid)

    def add_sighting(self, uuid: str, timestamp: datetime | int | None = None) -> dict[str, Any]:
        """Record a sighting (default: now). It restarts decay; it does not change the attribute timestamp."""
        return self.state.add_sighting(uuid, self.now() if timestamp is None else _epoch(timestamp))

    def decay_score(
        self, attribute: Mapping[str, Any] | str, now: datetime | int | None = None
    ) -> list[dict[str, Any]]:
        """The ``decay_score`` list ``includeDecayScore`` would return at ``now`` (default: the clock)."""
        at = self.now() if now is None else _epoch(now)
        uuid = attribute if isinstance(attribute, str) else attribute.get("uuid")
        with self.state.lock:
            row = self.state.row_by_uuid.get(str(uuid).lower()) if uuid else None
            if row is not None:
                return self.state.decay_for(row.attribute, row.event, at)
        if isinstance(attribute, str):
            raise KeyError(f"no attribute with uuid {attribute}")
        own = [t for t in attribute.get("Tag", ()) if not t.get("inherited")]
        inherited = [t for t in attribute.get("Tag", ()) if t.get("inherited")]
        return self.state.scorer.score({**attribute, "Tag": own}, inherited, at)

    def shift_to(self, newest: datetime) -> None:
        """Move every stored time so that the newest attribute timestamp is ``newest``."""
        current = max((row.ts for row in self.state.rows.values()), default=0)
        if current:
            self.state.shift_all(_epoch(newest) - current)

    def query(self, route: str, body: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Run a restSearch in-process, without HTTP or faults (``route``: ``attributes``/``events``)."""
        payload, headers = self._search(route, dict(body))
        return orjson.loads(payload), headers

    def __repr__(self) -> str:
        where = self.url if self._server else "stopped"
        return (
            f"<MispSimulator {where} {len(self)} attributes faults={str(self._faults) or 'none'}>"
        )
