"""The MISP simulator answers the recorded requests the way the real MISP 2.5.1 did.

Every exchange of ``tests/data/real_misp_2.5.1/`` is sent, in recorded order,
to a :class:`~misp_ti.simulator.MispSimulator` over HTTP, and its answer is
compared with MISP's: status, the headers misp-ti reads or a client sees
(``X-Result-Count``, ``X-Skipped-Elements-Count``, ``Content-Type``,
``Content-Disposition``, whether ``Set-Cookie`` is sent: not how many, which
varies with MISP's session state, and not on 403s, whose keys the recording
does not keep), escaped slashes, and
the bodies field by field, records keyed by uuid (tags by name, decay scores
by model name) and their order.

What the simulator serves is set up from the recording, not copied from it:

* the shipped sample events, loaded in the order the recorded MISP numbered
  them (so attribute, object and event ids coincide), without the attributes
  MISP refused on import (a second attribute of the same type, category and
  value in one event, ``MispAttribute::$validate`` ``valueIsUnique``);
* the edits made on the real MISP (attributes changed, soft-deleted or added,
  read from the first answer showing them), applied through the simulator's
  state API at the recorded times;
* the simulator's clock at each answer's ``Date`` header.

Differences that remain are listed in :data:`ALLOWED` with their reason. An
unlisted difference fails the test, and so does a listed one that no longer
occurs (the list cannot go stale).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from misp_ti.simulator import Dataset, MispSimulator, Warninglist
from misp_ti.testing.clock import ManualClock
from misp_ti.testing.recorded import RecordedExchange, Recording

RECORDING = Path(__file__).resolve().parents[1] / "data" / "real_misp_2.5.1" / "exchanges.ndjson.gz"
KEY = "simulated-key-0123456789abcdef0123456789"
HEADERS = ("X-Result-Count", "X-Skipped-Elements-Count", "Content-Type", "Content-Disposition")
#: MISP scores at its own ``time()``, the ``Date`` header (the simulator's clock
#: here) is whole seconds taken when the answer goes out: up to a second or two
#: of decay apart, below 0.01 points for the shipped models (lifetimes of days).
SCORE_TOLERANCE = 0.01
EDITABLE = ("comment", "to_ids", "deleted", "value", "type", "category")

_IMPORT = (
    "the recorded MISP's own data, not behaviour: /events/add gave the events to the importing "
    "admin's org (org_id 1, 'ORGNAME'), numbered the creator orgs and tags in the order it met them, "
    "kept the first spelling and colour of each tag, filled a missing event distribution from "
    "MISP.default_event_distribution (1) and published the events at import; the simulator's "
    "Dataset keeps the sample's own values"
)
_WARNINGLISTS = (
    "the simulator's warninglist is a dozen well-known entries; the recorded MISP had every "
    "misp-warninglists list but three enabled, so other attributes hit and the counters differ"
)
_EDIT_PATH = (
    "the first round of edits went through MISP's object edit form, which saves the object with a "
    "new timestamp; modify_attribute changes the attribute alone, like the second round"
)
A, E = "* attributes", "* events"
#: (scope pattern, path, kind) -> why the simulator may differ there. kind:
#: "value", "type", "only in MISP", "only in simulator", "order". Scopes are
#: "<label> <route>", battery requests "battery[<index in the file>] <route>".
ALLOWED: dict[tuple[str, str, str], str] = {
    **{(A, f"response.Attribute[].{path}", "value"): _IMPORT for path in (
        "Event.distribution", "Event.org_id", "Event.orgc_id", "Event.publish_timestamp",
        "Tag[].colour", "Tag[].id", "Tag[].name",
    )},
    **{(E, f"response[].Event.{path}", "value"): _IMPORT for path in (
        "distribution", "org_id", "orgc_id", "publish_timestamp", "Org.id", "Org.name", "Org.uuid",
        "Orgc.id", "Orgc.local", "Tag[].colour", "Tag[].id", "Tag[].name", "Attribute[].Tag[].id",
        "RelatedEvent[].Event.org_id", "RelatedEvent[].Event.orgc_id", "RelatedEvent[].Event.Org.id",
        "RelatedEvent[].Event.Org.name", "RelatedEvent[].Event.Org.uuid", "RelatedEvent[].Event.Orgc.id",
    )},
    (E, "response[].Event.Object[].timestamp", "value"): _EDIT_PATH,
    (E, "response[].Event.Object[].ObjectReference[]", "only in MISP"): (
        "the simulator's Dataset drops object references when it loads events"
    ),
    (E, "response[].Event.Attribute[].validationIssue", "only in MISP"): (
        "MISP flags, when it reads them, attributes whose stored value fails today's validation; "
        "the simulator does not validate values"
    ),
    ("backfill:attrs_p7_wl attributes", "header X-Result-Count", "value"): _WARNINGLISTS,
    ("backfill:attrs_p7_wl attributes", "header X-Skipped-Elements-Count", "value"): _WARNINGLISTS,
    ("backfill:attrs_p7_wl attributes", "response.Attribute[]", "only in simulator"): _WARNINGLISTS,
    ("battery[468] attributes", "header X-Skipped-Elements-Count", "value"): _WARNINGLISTS,
    ("battery[468] attributes", "response.Attribute[]", "only in simulator"): _WARNINGLISTS,
    ("battery[469] attributes", "header X-Result-Count", "value"): _WARNINGLISTS,
    ("battery[469] attributes", "header X-Skipped-Elements-Count", "value"): _WARNINGLISTS,
    ("battery[469] attributes", "response.Attribute[]", "only in simulator"): _WARNINGLISTS,
    ("battery[495] events", "response[].Event.Attribute[]", "only in simulator"): _WARNINGLISTS,
    ("battery[495] events", "response[].Event.Object[].Attribute[]", "only in simulator"): _WARNINGLISTS,
    ("battery[480] attributes", "response.Attribute[]", "only in MISP"): (
        "no order asked: MySQL returned the rows in timestamp order (the order of the index it read "
        "for the timestamp filter), the simulator returns them in id order; misp-ti always sends an order"
    ),
    ("battery[480] attributes", "response.Attribute[]", "only in simulator"): "as the line above",
    ("battery[482] attributes", "body", "value"): "returnFormat xml is not simulated (the simulator answers JSON)",
    ("battery[482] attributes", "header Content-Type", "value"): "returnFormat xml is not simulated",
    ("battery[501] /servers/getVersion", "uuid", "value"): "each MISP instance has its own MISP.uuid",
}


Difference = tuple[str, str, str]


def real_ids(recording: Recording) -> tuple[dict[str, int], set[str]]:
    """Event uuid -> id as the recorded MISP numbered them, and every attribute uuid it holds."""
    event_ids: dict[str, int] = {}
    uuids: set[str] = set()
    for exchange in recording.select("backfill:attrs_p100"):
        for attribute in exchange.json()["response"]["Attribute"]:
            event_ids[attribute["Event"]["uuid"]] = int(attribute["Event"]["id"])
            uuids.add(attribute["uuid"])
    return event_ids, uuids


def imported_sample(recording: Recording) -> tuple[Dataset, set[str]]:
    """The sample as MISP imported it; the uuids of the attributes it refused."""
    event_ids, held = real_ids(recording)
    events = sorted(Dataset.sample().events(), key=lambda e: event_ids[e["uuid"]])
    refused: set[str] = set()
    for event in events:
        for owner in [event, *event["Object"]]:
            kept = []
            for attribute in owner["Attribute"]:
                if attribute["uuid"] in held:
                    kept.append(attribute)
                else:
                    refused.add(attribute["uuid"])
            owner["Attribute"] = kept
    return Dataset.from_events(events), refused


def attribute_records(exchange: RecordedExchange) -> Iterator[tuple[dict[str, Any], str]]:
    """``(attribute, its event's uuid)`` of every attribute a JSON restSearch answer holds."""
    if exchange.status != 200 or not exchange.path.endswith("/restSearch") or "json" not in str(exchange.header("Content-Type")):
        return
    response = exchange.json().get("response")
    if isinstance(response, dict):
        for attribute in response["Attribute"]:
            yield attribute, attribute["Event"]["uuid"]
    elif isinstance(response, list):
        for item in response:
            event = item["Event"]
            for attribute in event["Attribute"]:
                yield attribute, event["uuid"]
            for obj in event["Object"]:
                for attribute in obj["Attribute"]:
                    yield attribute, event["uuid"]


class Editor:
    """Replays on the simulator the edits the recording shows, each at its recorded timestamp.

    An edit is a state of an attribute (by uuid) newer than what the
    simulator holds: another comment, ``to_ids`` or value, ``deleted``, or an
    attribute the sample lacks. Each is applied, through the simulator's
    state API with the clock at the edit's timestamp, before the first
    exchange MISP answered at or after that time.
    """

    def __init__(self, sim: MispSimulator, clock: ManualClock, recording: Recording) -> None:
        self.sim, self.clock = sim, clock
        known: dict[str, dict[str, Any]] = {}
        with sim.state.lock:
            for row in sim.state.rows.values():
                known[row.attribute["uuid"]] = {"timestamp": row.attribute["timestamp"], **{k: row.attribute[k] for k in EDITABLE}}
        self.edits: list[tuple[int, str, str | None, dict[str, Any], dict[str, Any] | None]] = []
        for exchange in recording:
            for record, event_uuid in attribute_records(exchange):
                before = known.get(record["uuid"])
                if before is not None and int(before["timestamp"]) >= int(record["timestamp"]):
                    continue
                state = {"timestamp": record["timestamp"], **{k: record[k] for k in EDITABLE}}
                self.edits.append((int(record["timestamp"]), record["uuid"], event_uuid, state, before))
                known[record["uuid"]] = state
        self.edits.sort(key=lambda edit: edit[0])

    def catch_up(self, until: int) -> None:
        while self.edits and self.edits[0][0] <= until:
            when, uuid, event_uuid, state, before = self.edits.pop(0)
            self.clock.set(_when(when))
            if before is None:
                self.sim.add_attribute(event_uuid, uuid=uuid, **{k: state[k] for k in EDITABLE if k != "deleted"})
                continue
            changed = {k: state[k] for k in EDITABLE if state[k] != before[k] and k != "deleted"}
            if changed:
                self.sim.modify_attribute(uuid, **changed)
            if state["deleted"] and not before["deleted"]:
                self.sim.delete_attribute(uuid)


def _when(epoch: str | int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(epoch), UTC)


# -- comparison ---------------------------------------------------------------------------------
def compare(scope: str, path: str, real: Any, simulated: Any, out: dict[Difference, str]) -> None:
    """Record every difference between two JSON values; dicts by key, known lists by their key."""

    def note(kind: str, where: str, example: str) -> None:
        out.setdefault((scope, where, kind), example[:300])

    if isinstance(real, dict) and isinstance(simulated, dict):
        for key in real.keys() | simulated.keys():
            where = f"{path}.{key}" if path else key
            if key not in simulated:
                note("only in MISP", where, repr(real[key]))
            elif key not in real:
                note("only in simulator", where, repr(simulated[key]))
            else:
                compare(scope, where, real[key], simulated[key], out)
        return
    if isinstance(real, list) and isinstance(simulated, list):
        keyed = _list_key(path, real + simulated)
        if keyed is None:
            if real != simulated:
                note("value", path, f"MISP {real!r}, simulator {simulated!r}")
            return
        real_by = {keyed(item): item for item in real}
        sim_by = {keyed(item): item for item in simulated}
        for key in real_by.keys() - sim_by.keys():
            note("only in MISP", f"{path}[]", repr(key))
        for key in sim_by.keys() - real_by.keys():
            note("only in simulator", f"{path}[]", repr(key))
        shared = [k for k in real_by if k in sim_by]
        if shared != [k for k in sim_by if k in real_by]:
            note("order", f"{path}[]", f"MISP {shared[:5]}")
        for key in shared:
            compare(scope, f"{path}[]", real_by[key], sim_by[key], out)
        return
    if isinstance(real, float) or isinstance(simulated, float):
        if type(real) is not type(simulated) and not (isinstance(real, int | float) and isinstance(simulated, int | float)):
            note("value", path, f"MISP {real!r}, simulator {simulated!r}")
        elif not math.isclose(real, simulated, rel_tol=1e-9, abs_tol=SCORE_TOLERANCE if path.endswith(".score") else 1e-9):
            note("value", path, f"MISP {real!r}, simulator {simulated!r}")
        elif type(real) is not type(simulated):
            note("type", path, f"MISP {real!r}, simulator {simulated!r}")
        return
    if real != simulated or type(real) is not type(simulated):
        note("value", path, f"MISP {real!r}, simulator {simulated!r}")


def _list_key(path: str, items: list[Any]) -> Any:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if path.endswith("Tag"):
        return lambda tag: str(tag.get("name", "")).lower()
    if path.endswith("decay_score"):
        return lambda score: score["DecayingModel"]["name"]
    if all("uuid" in i for i in items):
        return lambda item: item["uuid"]
    for wrapper in ("Event", "DecayingModel"):
        if all(isinstance(i.get(wrapper), dict) and "uuid" in i[wrapper] for i in items):
            return lambda item, w=wrapper: item[w]["uuid"]
    return None


def scope_of(exchange: RecordedExchange) -> str:
    if exchange.status != 200:
        return f"error {exchange.status}"
    return {"/attributes/restSearch": "attributes", "/events/restSearch": "events"}.get(exchange.path, exchange.path)


def compare_exchange(index: int, exchange: RecordedExchange, answer: httpx.Response, out: dict[Difference, str]) -> None:
    # a poll's requests share one scope; each hand-made battery request has its own
    label = f"battery[{index}]" if exchange.label == "battery" else exchange.label
    scope = f"{label} {scope_of(exchange)}"
    if answer.status_code != exchange.status:
        out.setdefault((scope, "status", "value"), f"{exchange.method} {exchange.path} {exchange.body!r:.120}: MISP {exchange.status}, simulator {answer.status_code}")
        return
    for name in HEADERS:
        real, simulated = exchange.header(name), answer.headers.get(name)
        if real != simulated:
            out.setdefault((scope, f"header {name}", "value"), f"{exchange.body!r:.100}: MISP {real!r}, simulator {simulated!r}")
    if exchange.status != 403 and bool(exchange.header("Set-Cookie")) != bool(answer.headers.get_list("set-cookie")):
        out.setdefault((scope, "header Set-Cookie", "value"), f"MISP {exchange.header('Set-Cookie')!r}, simulator {answer.headers.get_list('set-cookie')}")
    if ("\\/" in exchange.text) != ("\\/" in answer.text):
        out.setdefault((scope, "escaped slashes", "value"), f"MISP {exchange.text[:100]!r}, simulator {answer.text[:100]!r}")
    try:
        real_body, simulated_body = exchange.json(), answer.json()
    except ValueError:
        if exchange.text != answer.text:
            out.setdefault((scope, "body", "value"), f"MISP {exchange.text[:100]!r}, simulator {answer.text[:100]!r}")
        return
    compare(scope, "", real_body, simulated_body, out)


def send(client: httpx.Client, exchange: RecordedExchange) -> httpx.Response:
    # the recording keeps no Authorization header: the requests MISP refused
    # with 403 were the hand-made bad-key ones, so they go with a wrong key
    key = "not-the-key-0123456789abcdef0123456789" if exchange.status == 403 else KEY
    if isinstance(exchange.body, str):
        content = exchange.body.encode()
    elif exchange.body is None:
        content = b""
    else:
        content = httpx.Request("POST", "/", json=exchange.body).content
    return client.request(exchange.method, exchange.path, content=content, headers={"Authorization": key, "Content-Type": "application/json"})


def collect_differences() -> dict[Difference, str]:
    """Every difference between the simulator's answers and the recorded ones, with a first example."""
    recording = Recording.load(RECORDING)
    dataset, _ = imported_sample(recording)
    clock = ManualClock()
    out: dict[Difference, str] = {}
    with MispSimulator(dataset, api_key=KEY, clock=clock) as sim, httpx.Client(base_url=sim.url, timeout=60) as client:
        editor = Editor(sim, clock, recording)
        for index, exchange in enumerate(recording):
            answered_at = email.utils.parsedate_to_datetime(str(exchange.header("Date")))
            editor.catch_up(int(answered_at.timestamp()))
            clock.set(answered_at)
            compare_exchange(index, exchange, send(client, exchange), out)
    return out


@pytest.fixture(scope="module")
def differences() -> dict[Difference, str]:
    return collect_differences()


def test_the_sample_as_imported_lacks_only_same_event_duplicates() -> None:
    recording = Recording.load(RECORDING)
    _, refused = imported_sample(recording)
    assert len(refused) == 3
    for event in Dataset.sample().events():
        attributes = event["Attribute"] + [a for o in event["Object"] for a in o["Attribute"]]
        for attribute in attributes:
            if attribute["uuid"] in refused:
                twins = [a for a in attributes if (a["type"], a["category"], a["value"]) == (attribute["type"], attribute["category"], attribute["value"])]
                assert len(twins) == 2 and any(t["uuid"] not in refused for t in twins)


def allowed_by(difference: Difference) -> tuple[str, str, str] | None:
    scope, path, kind = difference
    # "*" patterns only: the battery scopes hold brackets fnmatch would read as a set
    return next(
        (k for k in ALLOWED if (path, kind) == k[1:] and (scope == k[0] or (k[0].startswith("*") and scope.endswith(k[0][1:])))),
        None,
    )


def test_simulator_answers_like_the_recorded_misp(differences: dict[Difference, str]) -> None:
    unexpected = {k: v for k, v in differences.items() if allowed_by(k) is None}
    stale = sorted(set(ALLOWED) - {allowed_by(k) for k in differences})
    report = "\n".join(f"  {scope} | {path} | {kind}: {example}" for (scope, path, kind), example in sorted(unexpected.items()))
    assert not unexpected, f"{len(unexpected)} unlisted difference(s) from the real MISP:\n{report}"
    assert not stale, f"listed in ALLOWED but no longer different (remove them): {stale}"


# -- the observed rules, one by one --------------------------------------------------------------
def _two_resolver_sightings(**options: Any) -> MispSimulator:
    sim = MispSimulator(Dataset([]), api_key=KEY, clock=ManualClock(), warninglist=Warninglist.of(["8.8.8.8/32"]), **options)
    kept = sim.add_attribute(None, type="ip-dst", value="8.8.8.8", to_ids=False)
    dropped = sim.add_attribute(None, type="ip-dst", value="8.8.8.8", to_ids=True)
    sim.add_attribute(kept["Event"]["uuid"], type="domain", value="evil.example.net")
    assert kept["event_id"] != dropped["event_id"]
    return sim


def _event_attribute_values(sim: MispSimulator, body: dict[str, Any]) -> list[tuple[str, bool]]:
    events, _ = sim.query("events", body)
    return sorted((a["value"], a["to_ids"]) for item in events["response"] for a in item["Event"]["Attribute"])


def test_events_warninglist_drops_only_to_ids_attributes_unless_warning_for_all() -> None:
    body = {"enforceWarninglist": True}
    default = _two_resolver_sightings()
    assert _event_attribute_values(default, body) == [("8.8.8.8", False), ("evil.example.net", True)]
    attributes, headers = default.query("attributes", body)
    assert [a["value"] for a in attributes["response"]["Attribute"]] == ["evil.example.net"]
    assert headers["X-Skipped-Elements-Count"] == 2  # /attributes checks every attribute
    assert _event_attribute_values(_two_resolver_sightings(warning_for_all=True), body) == [("evil.example.net", True)]


def test_related_events_follow_the_correlating_values() -> None:
    sim = _two_resolver_sightings()
    events, _ = sim.query("events", {})
    related = {item["Event"]["uuid"]: [r["Event"]["uuid"] for r in item["Event"]["RelatedEvent"]] for item in events["response"]}
    first, second = related
    assert related == {first: [second], second: [first]}
    assert set(events["response"][0]["Event"]["RelatedEvent"][0]["Event"]) >= {"id", "info", "date", "Org", "Orgc"}
    shared = next(a for item in events["response"] for a in item["Event"]["Attribute"] if a["to_ids"] and a["value"] == "8.8.8.8")
    sim.delete_attribute(shared["uuid"])  # a deleted attribute correlates no more
    events, _ = sim.query("events", {})
    assert all(item["Event"]["RelatedEvent"] == [] for item in events["response"])
