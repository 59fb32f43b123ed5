"""MISP ``Tag`` lists -> the documents' ``tags`` and TLP markings.

The attributes of an event share their (inherited) tag list, and a feed
holds few distinct tag names, so both a name's cleaning and a list's
summary are cached (bounded caches, cleared when full).
"""

from __future__ import annotations

from typing import Any

from misp_ti.ecs.values import Malformed

#: raw tag name -> (cleaned name, TLP marking or None); tag names repeat across a feed
_TAG_CACHE: dict[str, tuple[str, str | None]] = {}


def _tag_info(name: str) -> tuple[str, str | None]:
    clean = name.replace("\\", "").replace('"', "") if "\\" in name or '"' in name else name
    info = (clean, clean[4:].upper() if clean.startswith("tlp:") else None)
    if len(_TAG_CACHE) >= 4096:
        _TAG_CACHE.clear()
    _TAG_CACHE[name] = info
    return info


def _tags(tags: object, out: list[str], tlp: list[str]) -> None:
    """MISP ``Tag`` objects -> ``tags`` (``\\`` and ``"`` removed) and TLP markings."""
    if type(tags) is not list:
        raise Malformed(f"Tag: expected a list, got {type(tags).__name__}")
    cache = _TAG_CACHE
    for tag in tags:
        name = tag.get("name") if type(tag) is dict else None
        if type(name) is not str:
            raise Malformed(f"Tag: expected objects with a string name, got {tag!r:.60}")
        clean, marking = cache.get(name) or _tag_info(name)
        out.append(clean)
        if marking is not None:
            tlp.append(marking)


def _finish_tags(doc: dict, indicator: dict, tag_lists: tuple[object, ...]) -> None:
    tags: list[str] = doc["tags"]
    present = False
    tlp: list[str] = []
    for tag_list in tag_lists:
        if tag_list is not None:
            present = True
            _tags(tag_list, tags, tlp)
    if present:  # the reference writes marking.tlp (maybe []) whenever MISP sent tags
        indicator["marking"] = {"tlp": tlp}
    if tags:
        doc["tags"] = list(dict.fromkeys(tags))  # de-duplicated, first occurrence kept
    else:
        del doc["tags"]


def _tags_key(tags: Any) -> str:
    if not isinstance(tags, list):
        return ""
    return "\x1f".join(str(t.get("name")) for t in tags if isinstance(t, dict))


#: What a ``Tag`` list gives a document: its cleaned, de-duplicated names
#: and its TLP markings (``None``: no ``Tag`` list, so no ``marking``).
TagSummary = tuple[tuple[str, ...], tuple[str, ...] | None]
_NO_TAGS: TagSummary = ((), None)
#: a list's tag names, joined with ``\x1f`` -> (those names, its summary);
#: the attributes of an event share their (inherited) tag list, so a feed
#: holds few distinct ones. The names are compared on a hit: a name may hold
#: ``\x1f`` itself.
_TAG_LISTS: dict[str, tuple[list[str], TagSummary]] = {}


def _tag_summary(tags: object) -> tuple[str, TagSummary | None]:
    """The id part and the summary of a ``Tag`` list, in one pass over it.

    Never raises: for a list :func:`_tags` would reject the summary is
    ``None`` and the caller asks :func:`_tags` later, so the error (and which
    error wins when several fields are bad) stays what it was.
    """
    if tags is None:
        return "", _NO_TAGS
    if type(tags) is not list:
        return "", None
    try:
        names = [tag["name"] for tag in tags if type(tag) is dict]
        key = "\x1f".join(names)  # a name that is not a string raises TypeError here
    except (TypeError, KeyError):
        return _tags_key(tags), None
    if len(names) != len(tags):  # an entry that is not a plain object: _tags refuses the list
        return _tags_key(tags), None
    cached = _TAG_LISTS.get(key)
    if cached is not None and cached[0] == names:
        return key, cached[1]
    clean: list[str] = []
    tlp: list[str] = []
    try:
        _tags(tags, clean, tlp)
    except Malformed:  # e.g. a Tag that is a mapping but not an object
        return key, None
    if len(_TAG_LISTS) >= 4096:
        _TAG_LISTS.clear()
    summary: TagSummary = (tuple(dict.fromkeys(clean)), tuple(tlp))
    _TAG_LISTS[key] = (names, summary)
    return key, summary


def _apply_tags(doc: dict, indicator: dict, summary: TagSummary) -> None:
    """:func:`_finish_tags` of one ``Tag`` list, from its summary."""
    clean, tlp = summary
    if tlp is not None:  # the reference writes marking.tlp (maybe []) whenever MISP sent tags
        indicator["marking"] = {"tlp": list(tlp)}
    tags: list[str] = doc["tags"]
    if tags:
        doc["tags"] = list(dict.fromkeys([*tags, *clean]))
    elif clean:
        doc["tags"] = list(clean)
    else:
        del doc["tags"]
