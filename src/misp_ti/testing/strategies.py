"""Hypothesis strategies for MISP data: attributes, objects, events, tags,
decay scores and restSearch responses, plus malformed variants.

Every attribute type of MISP's ``describeTypes`` has a valid-value strategy
(:data:`MISP_TYPES`, :func:`attribute_values`); records have the shape
``/attributes/restSearch`` and ``/events/restSearch`` return::

    from hypothesis import given
    from misp_ti.testing import strategies as ms

    @given(ms.attributes(types=["ip-dst", "domain|ip"]))
    def test_my_transform(attribute): ...

The malformed strategies (:func:`malformed_attributes`,
:func:`malformed_responses`, :func:`malformed_bodies`) produce what a broken
MISP, proxy or hand-written feed may send, for robustness tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from misp_ti.testing.values import composite_parts, describe_types, value_strategy

Strategy = st.SearchStrategy

#: Every MISP attribute type, in MISP's order.
MISP_TYPES: tuple[str, ...] = tuple(describe_types()["types"])  # type: ignore[arg-type]
#: The types whose value is ``left|right``.
COMPOSITE_TYPES: tuple[str, ...] = tuple(t for t in MISP_TYPES if composite_parts(t) is not None)
#: TLP 1.0 and 2.0 tag names.
TLP_TAGS = ("tlp:white", "tlp:clear", "tlp:green", "tlp:amber", "tlp:amber+strict", "tlp:red")
#: Taxonomy tags as MISP writes them (``namespace:predicate="value"``), a sample of real ones.
TAXONOMY_TAGS = (
    'admiralty-scale:source-reliability="a"',
    'admiralty-scale:information-credibility="2"',
    'estimative-language:likelihood-probability="very-likely"',
    'estimative-language:confidence-in-analytic-judgment="moderate"',
    "PAP:AMBER",
    "PAP:GREEN",
    'osint:source-type="blog-post"',
    "type:OSINT",
    'circl:incident-classification="malware"',
    "kill-chain:Delivery",
    'misp:confidence-level="completely-confident"',
    'veris:action:malware:variety="Ransomware"',
)
#: Galaxy cluster tags.
GALAXY_TAGS = (
    'misp-galaxy:threat-actor="Sofacy"',
    'misp-galaxy:mitre-attack-pattern="Spearphishing Attachment - T1566.001"',
    'misp-galaxy:tool="Mimikatz"',
    'misp-galaxy:ransomware="WannaCry"',
    'misp-galaxy:mitre-malware="Emotet - S0367"',
)
#: Object templates: name -> (meta-category, ((object_relation, attribute type), ...)).
OBJECT_TEMPLATES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "file": (
        "file",
        (
            ("filename", "filename"),
            ("md5", "md5"),
            ("sha1", "sha1"),
            ("sha256", "sha256"),
            ("size-in-bytes", "size-in-bytes"),
            ("mimetype", "mime-type"),
        ),
    ),
    "domain-ip": (
        "network",
        (("domain", "domain"), ("ip", "ip-dst"), ("port", "port"), ("text", "text")),
    ),
    "ip-port": (
        "network",
        (("ip", "ip-dst"), ("dst-port", "port"), ("domain", "domain"), ("hostname", "hostname")),
    ),
    "url": (
        "network",
        (("url", "url"), ("domain", "domain"), ("host", "hostname"), ("resource_path", "text")),
    ),
    "email": (
        "network",
        (
            ("from", "email-src"),
            ("to", "email-dst"),
            ("subject", "email-subject"),
            ("attachment", "email-attachment"),
            ("message-id", "email-message-id"),
        ),
    ),
    "x509": (
        "network",
        (
            ("x509-fingerprint-sha1", "x509-fingerprint-sha1"),
            ("x509-fingerprint-md5", "x509-fingerprint-md5"),
            ("issuer", "text"),
            ("serial-number", "text"),
        ),
    ),
}

#: Default timestamp range: 2016-01-01 .. 2030-01-01 (epoch seconds).
DEFAULT_TIMESTAMPS = (1451606400, 1893456000)


def attribute_values(misp_type: str) -> Strategy[str]:
    """Valid values of one MISP type (``"ip-dst"``, ``"filename|sha256"``...)."""
    return value_strategy(misp_type)


def misp_types(*, composite: bool | None = None, to_ids: bool | None = None) -> Strategy[str]:
    """A MISP type name; ``composite``/``to_ids`` restrict to (non-)composite or IDS-by-default types."""
    table: dict[str, list[Any]] = describe_types()["types"]  # type: ignore[assignment]
    names = [
        t
        for t in MISP_TYPES
        if (composite is None or (t in COMPOSITE_TYPES) == composite)
        and (to_ids is None or bool(table[t][1]) == to_ids)
    ]
    return st.sampled_from(names)


def _category(misp_type: str) -> Strategy[str]:
    mapping: dict[str, list[str]] = describe_types()["category_types"]  # type: ignore[assignment]
    default = describe_types()["types"][misp_type][0]  # type: ignore[index]
    allowed = [c for c, types in mapping.items() if misp_type in types] or [default]
    return st.sampled_from(sorted(set(allowed) | {default}))


def timestamps(
    start: int = DEFAULT_TIMESTAMPS[0], end: int = DEFAULT_TIMESTAMPS[1]
) -> Strategy[int]:
    return st.integers(start, end)


def _seen(ts: int) -> Strategy[tuple[str | None, str | None]]:
    def iso_us(seconds: int) -> str:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000+00:00")

    both = st.tuples(st.integers(0, 400 * 86400), st.integers(0, 400 * 86400)).map(
        lambda d: (iso_us(ts - d[0] - d[1]), iso_us(ts - d[1]))
    )
    only_first = st.integers(0, 400 * 86400).map(lambda d: (iso_us(ts - d), None))
    return st.one_of(st.just((None, None)), st.just((None, None)), both, only_first)


def tags(kind: str | None = None) -> Strategy[dict[str, Any]]:
    """A MISP tag object; ``kind`` is ``"tlp"``, ``"taxonomy"``, ``"galaxy"`` or ``"custom"`` (default: any)."""
    pools = {
        "tlp": st.sampled_from(TLP_TAGS),
        "taxonomy": st.sampled_from(TAXONOMY_TAGS),
        "galaxy": st.sampled_from(GALAXY_TAGS),
        "custom": st.from_regex(r"[a-z][a-z0-9_-]{1,15}(:[a-z0-9_-]{1,15})?", fullmatch=True),
    }
    if kind is not None and kind not in pools:
        raise ValueError(f"tags(kind=...): expected one of {', '.join(pools)}, got {kind!r}")
    names = pools[kind] if kind else st.one_of(*pools.values())
    return st.builds(
        lambda name, tag_id, colour, local, inherited, numerical: {
            "id": str(tag_id),
            "name": name,
            "colour": colour,
            "exportable": True,
            "user_id": "0",
            "hide_tag": False,
            "numerical_value": numerical,
            "is_galaxy": name.startswith("misp-galaxy:"),
            "is_custom_galaxy": False,
            "local": local,
            "inherited": inherited,
        },
        names,
        st.integers(1, 5000),
        st.from_regex(r"#[0-9a-f]{6}", fullmatch=True),
        st.integers(0, 1),
        st.integers(0, 1),
        st.one_of(st.none(), st.integers(0, 100).map(str)),
    )


def tag_lists(max_size: int = 4) -> Strategy[list[dict[str, Any]]]:
    """Tags of one attribute or event: at most one TLP tag, names unique."""
    tlp = st.one_of(st.none(), tags("tlp"))
    others = st.lists(
        st.one_of(tags("taxonomy"), tags("galaxy"), tags("custom")),
        max_size=max_size,
        unique_by=lambda t: t["name"],
    )
    return st.builds(lambda t, rest: ([t] if t else []) + rest, tlp, others)


def decay_scores(
    *, min_size: int = 1, max_size: int = 3, decayed: bool | None = None
) -> Strategy[list[dict[str, Any]]]:
    """``decay_score`` lists as ``includeDecayScore`` returns them; ``decayed`` forces every entry's verdict."""

    def entry(model_id: int, base: float, fraction: float, threshold: float) -> dict[str, Any]:
        score = round(base * fraction, 2)
        verdict = score < threshold if decayed is None else decayed
        return {
            "score": score,
            "base_score": round(base, 2),
            "decayed": verdict,
            "DecayingModel": {"id": str(model_id), "name": f"Model {model_id}"},
        }

    one = st.builds(
        entry, st.integers(1, 50), st.floats(0, 100), st.floats(0, 1), st.floats(0, 100)
    )
    return st.lists(
        one, min_size=min_size, max_size=max_size, unique_by=lambda e: e["DecayingModel"]["id"]
    )


def _ids() -> Strategy[str]:
    return st.integers(1, 10_000_000).map(str)


def _event_summary(event_id: str) -> Strategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "id": st.just(event_id),
            "org_id": _ids(),
            "orgc_id": _ids(),
            "distribution": st.sampled_from("01234"),
            "info": st.text(min_size=1, max_size=40),
            "uuid": st.uuids().map(str),
        }
    )


@st.composite
def attributes(
    draw: st.DrawFn,
    types: list[str] | tuple[str, ...] | None = None,
    *,
    timestamp: Strategy[int] | None = None,
    with_event: bool = True,
    with_tags: bool = True,
    decay: bool | None = None,
    deleted: bool | None = False,
    to_ids: bool | None = None,
) -> dict[str, Any]:
    """One attribute as ``/attributes/restSearch`` returns it.

    :param types: MISP types to choose from (default: all of :data:`MISP_TYPES`).
    :param timestamp: strategy of epoch seconds (default: 2016..2030).
    :param with_event: include the ``Event`` summary the attribute search adds.
    :param decay: ``True`` always adds ``decay_score``, ``False`` never, ``None`` sometimes.
    :param deleted: force the soft-delete flag (``None``: either).
    """
    misp_type = draw(st.sampled_from(list(types) if types else MISP_TYPES))
    ts = draw(timestamp if timestamp is not None else timestamps())
    first_seen, last_seen = draw(_seen(ts))
    default_ids = bool(describe_types()["types"][misp_type][1])  # type: ignore[index]
    event_id = draw(_ids())
    attribute: dict[str, Any] = {
        "id": draw(_ids()),
        "event_id": event_id,
        "object_id": "0",
        "object_relation": None,
        "category": draw(_category(misp_type)),
        "type": misp_type,
        "value": draw(attribute_values(misp_type)),
        "to_ids": draw(st.booleans())
        if to_ids is None and not default_ids
        else (default_ids if to_ids is None else to_ids),
        "uuid": str(draw(st.uuids())),
        "timestamp": str(ts),
        "distribution": draw(st.sampled_from("012345")),
        "sharing_group_id": "0",
        "comment": draw(st.one_of(st.just(""), st.text(max_size=30))),
        "deleted": draw(st.booleans()) if deleted is None else deleted,
        "disable_correlation": False,
        "first_seen": first_seen,
        "last_seen": last_seen,
    }
    if with_event:
        attribute["Event"] = draw(_event_summary(event_id))
    if with_tags:
        tag_list = draw(tag_lists())
        if tag_list:
            attribute["Tag"] = tag_list
    if decay or (decay is None and draw(st.booleans())):
        attribute["decay_score"] = draw(decay_scores())
    return attribute


@st.composite
def objects(
    draw: st.DrawFn,
    templates: list[str] | None = None,
    *,
    timestamp: Strategy[int] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A MISP object (``file``, ``domain-ip``, ``url``...) with 1+ attributes of its template."""
    name = draw(st.sampled_from(templates or sorted(OBJECT_TEMPLATES)))
    meta, relations = OBJECT_TEMPLATES[name]
    ts = draw(timestamp if timestamp is not None else timestamps())
    event_id = event_id or draw(_ids())
    object_id = draw(_ids())
    chosen = draw(
        st.lists(st.sampled_from(relations), min_size=1, max_size=len(relations), unique=True)
    )
    members = []
    for relation, misp_type in chosen:
        member = draw(
            attributes(
                [misp_type],
                timestamp=st.integers(ts - 86400 * 30, ts),
                with_event=False,
                with_tags=False,
                decay=False,
            )
        )
        member.update(object_id=object_id, object_relation=relation, event_id=event_id)
        members.append(member)
    return {
        "id": object_id,
        "name": name,
        "meta-category": meta,
        "description": f"{name} object",
        "template_uuid": str(draw(st.uuids())),
        "template_version": str(draw(st.integers(1, 30))),
        "event_id": event_id,
        "uuid": str(draw(st.uuids())),
        "timestamp": str(ts),
        "distribution": draw(st.sampled_from("012345")),
        "sharing_group_id": "0",
        "comment": "",
        "deleted": False,
        "first_seen": None,
        "last_seen": None,
        "Attribute": members,
    }


@st.composite
def object_attributes(
    draw: st.DrawFn, templates: list[str] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """An attribute inside an object, as ``/attributes/restSearch`` returns it (with ``Object`` and ``Event``)."""
    obj = draw(objects(templates, **kwargs))
    member = dict(draw(st.sampled_from(obj["Attribute"])))
    member["Event"] = draw(_event_summary(obj["event_id"]))
    member["Object"] = {k: v for k, v in obj.items() if k != "Attribute"}
    return member


@st.composite
def events(
    draw: st.DrawFn,
    *,
    max_attributes: int = 8,
    max_objects: int = 3,
    types: list[str] | None = None,
    timestamp: Strategy[int] | None = None,
) -> dict[str, Any]:
    """A full MISP event (the value of ``{"Event": ...}``) with attributes, objects and tags."""
    event_id = draw(_ids())
    ts_strategy = timestamp if timestamp is not None else timestamps()
    ts = draw(ts_strategy)
    attrs = draw(
        st.lists(
            attributes(
                types, timestamp=st.integers(ts - 86400 * 60, ts), with_event=False, decay=False
            ),
            max_size=max_attributes,
            unique_by=lambda a: a["uuid"],
        )
    )
    for attr in attrs:
        attr["event_id"] = event_id
    objs = draw(
        st.lists(
            objects(timestamp=st.integers(ts - 86400 * 60, ts), event_id=event_id),
            max_size=max_objects,
            unique_by=lambda o: o["uuid"],
        )
    )
    org = draw(
        st.fixed_dictionaries(
            {
                "id": _ids(),
                "name": st.sampled_from(("CIRCL", "ESET", "ACME CERT")),
                "uuid": st.uuids().map(str),
                "local": st.booleans(),
            }
        )
    )
    return {
        "id": event_id,
        "orgc_id": org["id"],
        "org_id": org["id"],
        "date": datetime.fromtimestamp(ts, UTC).date().isoformat(),
        "threat_level_id": draw(st.sampled_from("1234")),
        "info": draw(st.text(min_size=1, max_size=60)),
        "published": draw(st.booleans()),
        "uuid": str(draw(st.uuids())),
        "attribute_count": str(len(attrs) + sum(len(o["Attribute"]) for o in objs)),
        "analysis": draw(st.sampled_from("012")),
        "timestamp": str(ts),
        "distribution": draw(st.sampled_from("01234")),
        "proposal_email_lock": False,
        "locked": False,
        "publish_timestamp": str(ts),
        "sharing_group_id": "0",
        "disable_correlation": False,
        "extends_uuid": "",
        "Org": org,
        "Orgc": org,
        "Attribute": attrs,
        "ShadowAttribute": [],
        "RelatedEvent": [],
        "Galaxy": [],
        "Object": objs,
        "EventReport": [],
        "Tag": draw(tag_lists()),
    }


def attribute_search_responses(
    *, max_size: int = 10, **attribute_kwargs: Any
) -> Strategy[dict[str, Any]]:
    """Bodies of ``POST /attributes/restSearch``: ``{"response": {"Attribute": [...]}}``."""
    member = st.one_of(attributes(**attribute_kwargs), object_attributes())
    return st.lists(member, max_size=max_size, unique_by=lambda a: a["uuid"]).map(
        lambda items: {"response": {"Attribute": items}}
    )


def event_search_responses(*, max_size: int = 3, **event_kwargs: Any) -> Strategy[dict[str, Any]]:
    """Bodies of ``POST /events/restSearch``: ``{"response": [{"Event": {...}}, ...]}``."""
    return st.lists(events(**event_kwargs), max_size=max_size, unique_by=lambda e: e["uuid"]).map(
        lambda items: {"response": [{"Event": e} for e in items]}
    )


#: The malformed variants live in :mod:`misp_ti.testing.malformed`, which builds
#: on this module: they are looked up on first use, so either module may be
#: imported first.
_MALFORMED = ("malformed_attributes", "malformed_bodies", "malformed_responses")

if TYPE_CHECKING:
    from misp_ti.testing.malformed import (
        malformed_attributes,
        malformed_bodies,
        malformed_responses,
    )


def __getattr__(name: str) -> Any:
    if name in _MALFORMED:
        from misp_ti.testing import malformed

        return getattr(malformed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMPOSITE_TYPES",
    "DEFAULT_TIMESTAMPS",
    "GALAXY_TAGS",
    "MISP_TYPES",
    "OBJECT_TEMPLATES",
    "TAXONOMY_TAGS",
    "TLP_TAGS",
    "attribute_search_responses",
    "attribute_values",
    "attributes",
    "decay_scores",
    "event_search_responses",
    "events",
    "malformed_attributes",
    "malformed_bodies",
    "malformed_responses",
    "misp_types",
    "object_attributes",
    "objects",
    "tag_lists",
    "tags",
    "timestamps",
]
