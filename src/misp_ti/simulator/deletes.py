"""Hard deletes as MISP 2.5.1 performs them (``MispSimulator.delete_*``).

Read in MISP/MISP at bb0909a (VERSION.json 2.5.1); what each path changes
decides whether misp-ti's change probe (one search by event timestamp, see
``misp_fetch.change_probe``) can see it:

* attribute, hard (``/attributes/delete/{id}/1``, ``deleteSelected`` with
  ``hard``): ``MispAttribute::deleteAttribute`` runs ``$this->delete($id)``
  (the row is gone, app/Model/MispAttribute.php L3041-3042), ``afterDelete``
  lowers ``Event.attribute_count`` unless the row was soft-deleted
  (L606-609), then ``$this->Event->unpublishEvent($attribute)`` (L3072)
  sets ``Event.published = 0`` and ``Event.timestamp = time()``
  (app/Model/Event.php L6046-6048). The event is stamped, the attribute
  timestamps of the others are not: the probe sees the event's remaining
  attributes, and nothing when the deleted one was the last.
* object, hard (``/objects/delete/{id}/1``): ``MispObject::deleteObject``
  runs ``$this->delete($id)``, which cascades to the object's attributes
  (``hasMany Attribute`` with ``dependent``, app/Model/MispObject.php L48-52,
  L1255-1257); ``unpublishEvent`` is only on the soft path (L1291-1292):
  no timestamp moves.
* event (``/events/delete/{id}``): ``Event::quickDelete`` deletes the
  attributes, objects, tags, sightings ... with plain ``DELETE FROM ... WHERE
  event_id`` statements and then the event row (app/Model/Event.php
  L1318-1416): nothing is stamped, nothing is left to find.

So only the first moves a timestamp, and only an event's (not an
attribute's); the other two are invisible to any timestamp search.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from misp_ti.simulator.state import Row, SimState


def _drop_row(state: SimState, row: Row) -> None:
    position = bisect.bisect_left(state.ts_index, (row.ts, row.id))
    if position < len(state.ts_index) and state.ts_index[position] == (row.ts, row.id):
        del state.ts_index[position]
    del state.rows[row.id]
    state.row_by_uuid.pop(row.attribute["uuid"].lower(), None)
    state.sightings.pop(row.id, None)
    holder = row.obj if row.obj is not None else row.event
    holder["Attribute"] = [a for a in holder["Attribute"] if a is not row.attribute]
    if not row.attribute["deleted"]:
        # MispAttribute::afterDelete -> __alterAttributeCount (GREATEST(count, 1) - 1)
        row.event["attribute_count"] = str(max(int(row.event["attribute_count"]), 1) - 1)


def hard_delete_attribute(state: SimState, uuid: str, now: int) -> None:
    """``deleteAttribute(hard)``: the row goes, the event is unpublished and stamped ``now``."""
    with state.lock:
        row = state.row(uuid)
        _drop_row(state, row)
        row.event["published"] = False
        row.event["timestamp"] = str(now)  # Event::unpublishEvent: time(), not max(old, now)
        state.version += 1


def hard_delete_object(state: SimState, object_uuid: str) -> int:
    """``deleteObject(hard)``: the object and its attributes go; no timestamp moves. Returns the rows removed."""
    with state.lock:
        for event in state.events.values():
            for obj in event["Object"]:
                if obj["uuid"].lower() == object_uuid.lower():
                    rows = [state.rows[int(a["id"])] for a in obj["Attribute"]]
                    for row in rows:
                        _drop_row(state, row)
                    event["Object"] = [o for o in event["Object"] if o is not obj]
                    state.version += 1
                    return len(rows)
        raise KeyError(f"no object with uuid {object_uuid}")


def delete_event(state: SimState, event_uuid: str) -> int:
    """``Event::quickDelete``: the event and everything in it go; nothing is stamped. Returns the rows removed."""
    with state.lock:
        event = state.event_by_uuid.get(event_uuid.lower())
        if event is None:
            raise KeyError(f"no event with uuid {event_uuid}")
        rows = [row for row in state.rows.values() if row.event is event]
        for row in rows:
            _drop_row(state, row)
        del state.events[int(event["id"])]
        del state.event_by_uuid[event_uuid.lower()]
        state.version += 1
        return len(rows)
