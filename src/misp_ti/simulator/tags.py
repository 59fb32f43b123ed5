"""Tags as MISP's tag table holds them: one id per name, numerical values from taxonomies.

MISP fills ``Tag.numerical_value`` from the taxonomy a tag belongs to (when
that taxonomy is enabled); the decaying models compute base scores from it.
Feed exports often carry ``null`` there, so the registry fills in the values
of the taxonomies the default decaying models use (facts from
MISP/misp-taxonomies: estimative-language, false-positive, phishing,
priority-level, retention, targeted-threat-index).
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["TagRegistry", "tag_base_name", "tag_matches", "like_regex", "TAXONOMY_VALUES"]

TAXONOMY_VALUES: dict[str, int] = {
    'estimative-language:likelihood-probability="almost-no-chance"': 0,
    'estimative-language:likelihood-probability="very-unlikely"': 5,
    'estimative-language:likelihood-probability="unlikely"': 20,
    'estimative-language:likelihood-probability="roughly-even-chance"': 45,
    'estimative-language:likelihood-probability="likely"': 55,
    'estimative-language:likelihood-probability="very-likely"': 80,
    'estimative-language:likelihood-probability="almost-certain"': 95,
    'estimative-language:confidence-in-analytic-judgment="low"': 0,
    'estimative-language:confidence-in-analytic-judgment="moderate"': 55,
    'estimative-language:confidence-in-analytic-judgment="high"': 95,
    'false-positive:risk="low"': 75,
    'false-positive:risk="medium"': 50,
    'false-positive:risk="high"': 25,
    'false-positive:risk="cannot-be-judged"': 25,
    'phishing:state="unknown"': 50,
    'phishing:state="active"': 100,
    'phishing:state="down"': 0,
    'phishing:psychological-acceptability="low"': 25,
    'phishing:psychological-acceptability="medium"': 50,
    'phishing:psychological-acceptability="high"': 75,
    "priority-level:emergency": 100,
    "priority-level:severe": 90,
    "priority-level:high": 85,
    "priority-level:medium": 75,
    "priority-level:low": 50,
    "priority-level:baseline-minor": 25,
    "priority-level:baseline-negligible": 0,
    "retention:expired": 0,
    "retention:1d": 1,
    "retention:2d": 2,
    "retention:7d": 7,
    "retention:2w": 14,
    "retention:1m": 30,
    "retention:2m": 60,
    "retention:3m": 90,
    "retention:6m": 180,
    "retention:1y": 365,
    "retention:10y": 3650,
}
_TAXONOMY_VALUES_LOWER = {k.lower(): v for k, v in TAXONOMY_VALUES.items()}

_TRIPLE = re.compile(r'^[^:="]+:[^:="]+="[^:="]+"$')
_DOUBLE = re.compile(r'^[^:="]+:[^:="]+$')

_DEFAULT_COLOUR = "#0088cc"
_TLP_COLOURS = {
    "tlp:white": "#ffffff",
    "tlp:clear": "#ffffff",
    "tlp:green": "#339900",
    "tlp:amber": "#ffc000",
    "tlp:red": "#cc0033",
}


@functools.lru_cache(maxsize=4096)
def tag_base_name(name: str) -> str:
    """The key a decaying model's ``base_score_config`` uses for a tag (MISP's rules).

    ``ns:pred="value"`` → ``ns:pred``; ``ns:pred`` → ``ns``; anything else → the name itself.
    """
    if _TRIPLE.match(name):
        return name.split("=", 1)[0]
    if _DOUBLE.match(name):
        return name.split(":", 1)[0]
    return name


def tag_matches(pattern: str, name: str) -> bool:
    """MySQL ``LIKE`` under a case-insensitive collation: ``%`` is any run, ``_`` one character."""
    return like_regex(pattern).match(name) is not None


_LIKE_CACHE: dict[str, re.Pattern[str]] = {}


def like_regex(pattern: str) -> re.Pattern[str]:
    compiled = _LIKE_CACHE.get(pattern)
    if compiled is None:
        parts = []
        for char in pattern:
            parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        compiled = re.compile("".join(parts) + r"\Z", re.IGNORECASE | re.DOTALL)
        if len(_LIKE_CACHE) < 4096:
            _LIKE_CACHE[pattern] = compiled
    return compiled


class TagRegistry:
    """Gives every distinct tag name (case-insensitively, like MySQL) one id."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, Any]] = {}
        self._next_id = 1

    def adopt(self, tag: dict[str, Any]) -> None:
        """Remember a tag that already carries an id (from a loaded Dataset)."""
        key = str(tag["name"]).lower()
        if key not in self._by_name:
            known = {k: v for k, v in tag.items() if k not in ("local", "inherited")}
            self._by_name[key] = known
            self._next_id = max(self._next_id, int(tag["id"]) + 1)

    def names(self) -> list[str]:
        return [t["name"] for t in self._by_name.values()]

    def normalise(self, raw: Any) -> dict[str, Any]:
        """A tag in the shape MISP's JSON carries, with a stable id; ``raw`` is a dict or a name."""
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict) or not raw.get("name"):
            raise ValueError(f"tag without a name: {raw!r}")
        name = str(raw["name"])
        known = self._by_name.get(name.lower())
        if known is None:
            numerical = raw.get("numerical_value")
            if numerical in (None, ""):
                numerical = _TAXONOMY_VALUES_LOWER.get(name.lower())
            known = {
                "id": str(self._next_id),
                "name": name,
                "colour": str(raw.get("colour") or _TLP_COLOURS.get(name.lower(), _DEFAULT_COLOUR)),
                "exportable": bool(raw.get("exportable", True)),
                "user_id": "0",
                "hide_tag": False,
                "numerical_value": None if numerical is None else str(numerical),
                "is_galaxy": name.startswith("misp-galaxy:"),
                "is_custom_galaxy": False,
            }
            self._by_name[name.lower()] = known
            self._next_id += 1
        tag = dict(known)
        tag["local"] = int(bool(raw.get("local", 0)))
        return tag
