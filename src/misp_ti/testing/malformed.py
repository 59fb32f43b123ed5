"""Malformed MISP data for robustness tests (re-exported by :mod:`misp_ti.testing.strategies`).

What a broken MISP, proxy or hand-written feed may send: attribute records
with missing keys or values of the wrong type, response bodies of the wrong
shape, and bodies that are not JSON at all.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from misp_ti.testing.strategies import MISP_TYPES, attribute_search_responses, attributes

Strategy = st.SearchStrategy


_JUNK = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

_NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True))
_CONTAINERS = st.one_of(
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
#: For each key, values of a type MISP never sends there.
_WRONG_TYPES = {
    "value": st.one_of(st.none(), _NUMBERS, _CONTAINERS),
    "to_ids": st.one_of(st.none(), st.integers(), st.text(max_size=5), _CONTAINERS),
    "deleted": st.one_of(st.none(), st.integers(), st.text(max_size=5), _CONTAINERS),
    "first_seen": st.one_of(_NUMBERS, _CONTAINERS),
    "Event": st.one_of(
        st.none(), _NUMBERS, st.text(max_size=10), st.lists(st.integers(), max_size=2)
    ),
}


@st.composite
def malformed_attributes(draw: st.DrawFn) -> Any:
    """Attribute records a consumer must survive: keys missing, wrong value types,
    bad timestamps, unknown types, broken tags and decay scores, or not a dict at all."""
    base = dict(draw(attributes()))
    damage = draw(
        st.sampled_from(
            (
                "drop_key",
                "junk_value",
                "bad_timestamp",
                "unknown_type",
                "bad_tags",
                "bad_decay",
                "not_a_dict",
                "bad_uuid",
            )
        )
    )
    if damage == "drop_key":
        base.pop(
            draw(st.sampled_from(["value", "type", "uuid", "timestamp", "category", "Event"])), None
        )
    elif damage == "junk_value":
        key = draw(st.sampled_from(sorted(_WRONG_TYPES)))
        base[key] = draw(_WRONG_TYPES[key])
    elif damage == "bad_timestamp":
        base["timestamp"] = draw(
            st.sampled_from(["", "yesterday", "-5", "1e20", "99999999999999999999", None, 1.5])
        )
    elif damage == "unknown_type":
        base["type"] = draw(st.text(min_size=1, max_size=12).filter(lambda t: t not in MISP_TYPES))
    elif damage == "bad_tags":
        base["Tag"] = draw(
            st.one_of(
                st.text(max_size=5),
                st.lists(_JUNK, min_size=1, max_size=2),
                st.just([{"colour": "#fff"}]),
            )
        )
    elif damage == "bad_decay":
        base["decay_score"] = draw(
            st.one_of(
                st.text(max_size=5),
                st.just([{"score": "high"}]),
                st.lists(_JUNK, min_size=1, max_size=2),
            )
        )
    elif damage == "bad_uuid":
        base["uuid"] = draw(st.one_of(st.just(""), st.text(max_size=8), st.integers()))
    else:
        return draw(
            st.one_of(
                st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)
            )
        )
    return base


def malformed_responses() -> Strategy[Any]:
    """Decoded JSON bodies that are not a valid restSearch answer (including MISP's error shape)."""
    return st.one_of(
        st.just({}),
        st.just([]),
        st.just({"response": None}),
        st.just({"response": {"Attribute": "x"}}),
        st.just({"response": {"Attribute": None}}),
        st.just({"response": "no"}),
        st.just({"Attribute": []}),
        st.builds(
            lambda m: {"name": m, "message": m, "url": "/attributes/restSearch"},
            st.text(max_size=30),
        ),
        st.lists(malformed_attributes(), min_size=1, max_size=3).map(
            lambda a: {"response": {"Attribute": a}}
        ),
        _JUNK,
    )


def malformed_bodies() -> Strategy[bytes]:
    """Raw HTTP bodies that do not decode as JSON: truncated JSON, HTML error pages, binary, empty."""
    truncated = attribute_search_responses(max_size=3).flatmap(
        lambda body: st.integers(1, max(1, len(_dumps(body)) - 1)).map(lambda n: _dumps(body)[:n])
    )
    return st.one_of(
        st.just(b""),
        truncated,
        st.just(b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
        st.binary(min_size=1, max_size=40).filter(lambda b: not _is_json(b)),
    )


def _dumps(body: Any) -> bytes:
    import json

    return json.dumps(body).encode()


def _is_json(raw: bytes) -> bool:
    import json

    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return True
