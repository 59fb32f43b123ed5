"""The query DSL subset misp-ti and the prebuilt rules use, evaluated against ``_source``.

This is a MODEL, not Elasticsearch: it answers "does this document match" the way the Lucene
queries Elasticsearch builds would, for the types the model's mappings hold, reading the values
from ``_source`` (Elasticsearch reads doc values / the inverted index; the result is the same for
the cases modelled here). Each query type cites the builder it models, in
elastic/elasticsearch ``server/src/main/java/org/elasticsearch/index/query/``. Anything else is
refused with :class:`~misp_ti.testing.es_model.mappings.ModelUnsupported`, never silently matched
or not matched.

Text analysis is simplified: the standard analyzer is modelled as "lowercase, split on anything
that is not a letter or a digit".
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .mappings import ModelUnsupported

_TEXT = {"text", "match_only_text"}
_KEYWORDISH = {"keyword", "constant_keyword", "wildcard", "version"}
_NUMERIC = {"long", "integer", "short", "byte", "unsigned_long", "double", "float", "half_float", "scaled_float"}
_DATES = {"date", "date_nanos"}
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def analyze(text: str) -> list[str]:
    """Simplified ``standard`` analyzer (StandardTokenizer + LowerCaseFilter)."""
    return [t.lower() for t in _TOKEN.findall(text)]


# ---------------------------------------------------------------- date math
# Model of server/.../common/time/JavaDateMathParser.java (parseMath, and the rounding that
# DateFieldMapper.DateFieldType.parseToLong asks for: ``roundUp`` for ``gt`` and ``lte``).
_MATH = re.compile(r"([+-]\d+|/)([yMwdhHms])")


def parse_date(value: Any) -> datetime:
    """A date as ``strict_date_optional_time||epoch_millis`` (DateFieldMapper's default format)."""
    if isinstance(value, bool):
        raise ValueError(f"failed to parse date field [{value}]")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("z", "Z"))
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _round(moment: datetime, unit: str, up: bool) -> datetime:
    if unit == "y":
        low = moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        high = low.replace(year=low.year + 1)
    elif unit == "M":
        low = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        high = low.replace(year=low.year + low.month // 12, month=low.month % 12 + 1)
    elif unit == "w":
        low = (moment - timedelta(days=moment.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        high = low + timedelta(weeks=1)
    elif unit == "d":
        low = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        high = low + timedelta(days=1)
    elif unit in "hH":
        low = moment.replace(minute=0, second=0, microsecond=0)
        high = low + timedelta(hours=1)
    elif unit == "m":
        low = moment.replace(second=0, microsecond=0)
        high = low + timedelta(minutes=1)
    else:
        low = moment.replace(microsecond=0)
        high = low + timedelta(seconds=1)
    # roundUp goes to the last millisecond of the unit (JavaDateMathParser: "round up ... minus 1 ms")
    return high - timedelta(milliseconds=1) if up else low


def _shift(moment: datetime, amount: int, unit: str) -> datetime:
    if unit in "yM":
        months = moment.month - 1 + amount * (12 if unit == "y" else 1)
        return moment.replace(year=moment.year + months // 12, month=months % 12 + 1)
    delta = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "H": timedelta(hours=1),
             "m": timedelta(minutes=1), "s": timedelta(seconds=1)}[unit]
    return moment + amount * delta


def date_math(expr: Any, now: datetime, *, round_up: bool = False, time_zone: str | None = None) -> datetime:
    """``now``, ``now-30d/d``, ``2024-01-01||+1M/d`` or a plain date; rounding happens in ``time_zone``."""
    zone = _zone(time_zone)
    text = str(expr) if not isinstance(expr, int | float) or isinstance(expr, bool) else None
    if text is None:
        return parse_date(expr)
    if text.startswith("now"):
        base, math = now.astimezone(zone), text[3:]
    elif "||" in text:
        head, math = text.split("||", 1)
        base = _parse_in_zone(head, zone)
    else:
        return _parse_in_zone(text, zone)
    pos = 0
    for found in _MATH.finditer(math):
        if found.start() != pos:
            break
        op, unit = found.groups()
        base = _round(base, unit, round_up) if op == "/" else _shift(base, int(op), unit)
        pos = found.end()
    if pos != len(math):
        raise ValueError(f"failed to parse date field [{text}]: invalid date math [{math}]")
    return base.astimezone(UTC)


def _parse_in_zone(text: str, zone: Any) -> datetime:
    parsed = parse_date(text)
    if re.search(r"(Z|[+-]\d{2}:?\d{2})$", text) or re.fullmatch(r"-?\d+", text):
        return parsed
    return parsed.replace(tzinfo=zone)


def _zone(name: str | None) -> Any:
    if name in (None, "Z", "UTC", "Zulu", "+00:00"):
        return UTC
    try:
        return ZoneInfo(str(name))
    except Exception as exc:
        raise ModelUnsupported(f"time_zone [{name}] is not modelled") from exc


# ---------------------------------------------------------------- values of one field
def source_values(source: dict[str, Any], path: str) -> list[Any]:
    """Every leaf value at ``path``, following objects, arrays and dotted keys (``{"a.b": 1}``)."""
    out: list[Any] = []

    def walk(node: Any, rest: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, rest)
            return
        if rest == "":
            if node is not None:
                out.append(node)
            return
        if not isinstance(node, dict):
            return
        parts = rest.split(".")
        for i in range(1, len(parts) + 1):
            key = ".".join(parts[:i])
            if key in node:
                walk(node[key], ".".join(parts[i:]))

    walk(source, path)
    return out


class FieldView:
    """The values of one field of one document, typed by the index's mapping."""

    def __init__(self, mapping: Any, source: dict[str, Any], path: str) -> None:
        self.path = path
        self.type = mapping.field_type(path) if mapping is not None else None
        source_path = path
        if self.type is not None and self.type != "object" and "." in path:
            parent = path.rsplit(".", 1)[0]
            parent_type = mapping.field_type(parent)
            if parent_type not in (None, "object", "nested"):  # a multi-field such as x.keyword
                source_path = parent
        if self.type == "constant_keyword":
            constant = mapping.constant_value(path)
            self.values: list[Any] = [] if constant is None else [constant]
        else:
            self.values = source_values(source, source_path)

    def strings(self) -> list[str]:
        return [_as_keyword(v) for v in self.values]


def _as_keyword(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _num(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("boolean is not a number")
    return float(value)


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(str(value))


def _glob(pattern: str, value: str, case_insensitive: bool) -> bool:
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


# ---------------------------------------------------------------- the evaluator
class Matcher:
    """Evaluates one query against documents of one index (its mapping), at one instant ``now``."""

    def __init__(self, mapping: Any, now: datetime) -> None:
        self.mapping, self.now = mapping, now

    def matches(self, query: dict[str, Any] | None, source: dict[str, Any], doc_id: str | None = None) -> bool:
        if not query:
            return True
        if not isinstance(query, dict) or len(query) != 1:
            raise ModelUnsupported(f"a query must be an object with exactly one key, got {query!r}")
        (kind, body), = query.items()
        handler = getattr(self, f"_q_{kind}", None)
        if handler is None:
            raise ModelUnsupported(f"query type [{kind}] is not modelled")
        return bool(handler(body, source, doc_id))

    # MatchAllQueryBuilder / MatchNoneQueryBuilder
    def _q_match_all(self, body: Any, source: dict[str, Any], doc_id: str | None) -> bool:
        return True

    def _q_match_none(self, body: Any, source: dict[str, Any], doc_id: str | None) -> bool:
        return False

    # BoolQueryBuilder: minimum_should_match defaults to 1 only when there is no must/filter clause
    def _q_bool(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        unknown = set(body) - {"must", "filter", "should", "must_not", "minimum_should_match", "boost", "_name"}
        if unknown:
            raise ModelUnsupported(f"bool parameters {sorted(unknown)} are not modelled")

        def clauses(key: str) -> list[dict[str, Any]]:
            value = body.get(key) or []
            return value if isinstance(value, list) else [value]

        for clause in clauses("must") + clauses("filter"):
            if not self.matches(clause, source, doc_id):
                return False
        if any(self.matches(c, source, doc_id) for c in clauses("must_not")):
            return False
        should = clauses("should")
        default = 0 if (clauses("must") or clauses("filter")) else 1
        minimum = _minimum_should_match(body.get("minimum_should_match", default), len(should))
        return sum(self.matches(c, source, doc_id) for c in should) >= minimum if should else True

    # IdsQueryBuilder
    def _q_ids(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        return doc_id in set(body.get("values", []))

    # TermQueryBuilder / TermsQueryBuilder -> MappedFieldType.termQuery per type
    def _q_term(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        field, spec = _single(body, "term")
        value, insensitive = (spec.get("value"), bool(spec.get("case_insensitive"))) if isinstance(spec, dict) else (spec, False)
        return self._term(FieldView(self.mapping, source, field), value, insensitive)

    def _q_terms(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        fields = {k: v for k, v in body.items() if k != "boost"}
        field, values = _single(fields, "terms")
        if not isinstance(values, list):
            raise ModelUnsupported("terms lookup is not modelled; give a list of values")
        view = FieldView(self.mapping, source, field)
        return any(self._term(view, v, False) for v in values)

    def _term(self, view: FieldView, value: Any, insensitive: bool) -> bool:
        kind = view.type
        if kind is None or kind == "object":
            return False  # unmapped field: MatchNoDocsQuery
        if kind in _KEYWORDISH:
            wanted = _as_keyword(value)
            return any((s.lower() == wanted.lower()) if insensitive else s == wanted for s in view.strings())
        if kind in _TEXT:
            # a term query is not analysed: it must equal one token exactly
            return _as_keyword(value) in {t for s in view.strings() for t in analyze(s)}
        if kind in _NUMERIC:
            return any(_safe(lambda v=v: _num(v) == _num(value)) for v in view.values)
        if kind == "boolean":
            return any(_bool(v) is not None and _bool(v) == _bool(value) for v in view.values)
        if kind in _DATES:
            wanted_date = date_math(value, self.now)
            return any(_safe(lambda v=v: parse_date(v) == wanted_date) for v in view.values)
        if kind == "ip":
            network = ipaddress.ip_network(str(value), strict=False)  # IpFieldMapper: a CIDR is a range
            return any(_safe(lambda v=v: ipaddress.ip_address(str(v)) in network) for v in view.values)
        raise ModelUnsupported(f"term queries on [{kind}] fields are not modelled")

    # MatchQueryBuilder / MatchPhraseQueryBuilder: analysed for text, a term query for the rest
    def _q_match(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        field, spec = _single(body, "match")
        query = spec.get("query") if isinstance(spec, dict) else spec
        operator = (spec.get("operator", "or") if isinstance(spec, dict) else "or").lower()
        view = FieldView(self.mapping, source, field)
        if view.type in _TEXT:
            wanted = analyze(_as_keyword(query))
            have = {t for s in view.strings() for t in analyze(s)}
            hits = [w in have for w in wanted]
            return bool(wanted) and (all(hits) if operator == "and" else any(hits))
        return self._term(view, query, False)

    def _q_match_phrase(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        field, spec = _single(body, "match_phrase")
        query = spec.get("query") if isinstance(spec, dict) else spec
        view = FieldView(self.mapping, source, field)
        if view.type in _TEXT:
            wanted = analyze(_as_keyword(query))
            for text in view.strings():
                tokens = analyze(text)
                if any(tokens[i:i + len(wanted)] == wanted for i in range(len(tokens) - len(wanted) + 1)):
                    return bool(wanted)
            return False
        return self._term(view, query, False)

    # RangeQueryBuilder; dates via DateFieldType.rangeQuery (date math, roundUp for gt/lte)
    def _q_range(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        field, spec = _single(body, "range")
        unknown = set(spec) - {"gt", "gte", "lt", "lte", "format", "time_zone", "boost"}
        if unknown:
            raise ModelUnsupported(f"range parameters {sorted(unknown)} are not modelled")
        if spec.get("format") not in (None, "strict_date_optional_time", "epoch_millis",
                                      "strict_date_optional_time||epoch_millis"):
            raise ModelUnsupported(f"range format [{spec['format']}] is not modelled")
        view = FieldView(self.mapping, source, field)
        kind = view.type
        if kind is None or kind == "object":
            return False
        bounds = {k: spec[k] for k in ("gt", "gte", "lt", "lte") if spec.get(k) is not None}
        if kind in _DATES:
            zone = spec.get("time_zone")
            limits = {k: date_math(v, self.now, round_up=k in ("gt", "lte"), time_zone=zone) for k, v in bounds.items()}
            return any(_in_range(d, limits) for d in _parsed(view.values, parse_date))
        if kind in _NUMERIC:
            return any(_in_range(n, {k: _num(v) for k, v in bounds.items()}) for n in _parsed(view.values, _num))
        if kind == "ip":
            return any(_in_range(a, {k: ipaddress.ip_address(str(v)) for k, v in bounds.items()})
                       for a in _parsed(view.values, lambda v: ipaddress.ip_address(str(v))))
        if kind in _KEYWORDISH:
            return any(_in_range(s, {k: _as_keyword(v) for k, v in bounds.items()}) for s in view.strings())
        raise ModelUnsupported(f"range queries on [{kind}] fields are not modelled")

    # ExistsQueryBuilder: the field may be a pattern (getMatchingFieldNames)
    def _q_exists(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        pattern = body["field"]
        names = [pattern]
        if "*" in pattern and self.mapping is not None:
            names = [n for n in self.mapping.leaf_fields() if fnmatch.fnmatchcase(n, pattern)]
        return any(FieldView(self.mapping, source, n).values for n in names
                   if (self.mapping is None or self.mapping.field_type(n) not in (None, "object")))

    # WildcardQueryBuilder / PrefixQueryBuilder (keyword-like: whole value; text: per token)
    def _q_wildcard(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        field, spec = _single(body, "wildcard")
        value = spec.get("value", spec.get("wildcard")) if isinstance(spec, dict) else spec
        insensitive = bool(spec.get("case_insensitive")) if isinstance(spec, dict) else False
        return self._pattern(FieldView(self.mapping, source, field), str(value), insensitive)

    def _q_prefix(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        field, spec = _single(body, "prefix")
        value = spec.get("value") if isinstance(spec, dict) else spec
        insensitive = bool(spec.get("case_insensitive")) if isinstance(spec, dict) else False
        escaped = str(value).replace("*", "\\*").replace("?", "\\?")
        return self._pattern(FieldView(self.mapping, source, field), escaped + "*", insensitive, literal=str(value))

    def _pattern(self, view: FieldView, pattern: str, insensitive: bool, literal: str | None = None) -> bool:
        if view.type is None or view.type == "object":
            return False
        if view.type in _TEXT:
            candidates = [t for s in view.strings() for t in analyze(s)]
        elif view.type in _KEYWORDISH:
            candidates = view.strings()
        else:
            raise ModelUnsupported(f"wildcard/prefix queries on [{view.type}] fields are not modelled")
        if literal is not None:
            return any((c.lower().startswith(literal.lower()) if insensitive else c.startswith(literal)) for c in candidates)
        return any(_glob(pattern, c, insensitive) for c in candidates)

    # QueryStringQueryBuilder, only the shape Kibana's KQL emits: one field, one (wildcard) term
    def _q_query_string(self, body: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> bool:
        fields, text = body.get("fields"), str(body.get("query", ""))
        if not fields or len(fields) != 1 or re.search(r"[\s:()\"\\]|\b(AND|OR|NOT)\b", text):
            raise ModelUnsupported("query_string is modelled only as KQL emits it: one field and one term (wildcards allowed)")
        view = FieldView(self.mapping, source, fields[0])
        if view.type in _TEXT:
            text = text.lower()  # the search analyzer's normalizer applies to wildcard terms
        if view.type not in _TEXT | _KEYWORDISH:
            return self._term(view, text, False) if "*" not in text else bool(view.values) and text == "*"
        return self._pattern(view, text, False)


def _single(body: dict[str, Any], kind: str) -> tuple[str, Any]:
    fields = [k for k in body if k not in ("boost", "_name")]
    if len(fields) != 1:
        raise ModelUnsupported(f"[{kind}] query must name exactly one field")
    return fields[0], body[fields[0]]


def _minimum_should_match(value: Any, count: int) -> int:
    text = str(value)
    if text.endswith("%"):
        raise ModelUnsupported("percentage minimum_should_match is not modelled")
    number = int(text)
    return number if number >= 0 else max(count + number, 0)


def _safe(check: Any) -> bool:
    try:
        return bool(check())
    except (ValueError, TypeError):
        return False  # a malformed (ignored) value never matches


def _parsed(values: list[Any], parse: Any) -> list[Any]:
    out = []
    for value in values:
        try:
            out.append(parse(value))
        except (ValueError, TypeError):
            continue
    return out


def _in_range(value: Any, limits: dict[str, Any]) -> bool:
    return (("gt" not in limits or value > limits["gt"]) and ("gte" not in limits or value >= limits["gte"])
            and ("lt" not in limits or value < limits["lt"]) and ("lte" not in limits or value <= limits["lte"]))


def matches(query: dict[str, Any] | None, source: dict[str, Any], mapping: Any, *, now: datetime,
            doc_id: str | None = None) -> bool:
    """Does ``source`` (typed by ``mapping``) match ``query`` at instant ``now``?"""
    return Matcher(mapping, now).matches(query, source, doc_id)
