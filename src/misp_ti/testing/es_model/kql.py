"""KQL -> query DSL, as Kibana's ``@kbn/es-query`` emits it: a MODEL (a re-implementation), not Kibana.

Sources (elastic/kibana): the grammar ``packages/kbn-es-query/grammar/grammar.peggy`` (OrQuery,
AndQuery, NotQuery, SubQuery, FieldRangeExpression, FieldValueExpression, ListOfValues,
UnquotedLiteral, escapes), and
``src/platform/packages/shared/kbn-es-query/src/kuery/functions/{is,range,and,or,not}.ts``:

* ``is``: ``*:*`` is ``match_all``; with the field known as ``keyword`` (``esTypes == ['keyword']``)
  a value is a ``term`` and a wildcard value a ``wildcard`` query; otherwise a ``match`` /
  ``match_phrase`` (quoted) and a ``query_string`` for wildcards; ``field:*`` is ``exists``; a
  ``date`` field gets a ``range`` gte=lte=value (plus ``time_zone`` when ``dateFormatTZ`` is set).
  Field names with ``*`` expand against the known fields; **when no known field matches, the name is
  sent as-is** (so ``threat.indicator.file.hash.*:*`` becomes ``exists`` on the pattern, which
  Elasticsearch's ``ExistsQueryBuilder`` expands). Every ``is`` is wrapped in
  ``bool.should`` with ``minimum_should_match: 1``;
* ``range``: ``{range: {field: {op: value}}}`` (+ ``time_zone`` for dates), same wrapping;
* ``and`` -> ``bool.filter`` (``filtersInMustClause`` false), ``or`` -> ``bool.should`` + msm 1,
  ``not`` -> ``bool.must_not`` (an object, not a list).

Nested queries (``field:{...}``), scripted fields and the field-less ``multi_match`` beyond its plain
shape are not modelled; they raise :class:`~misp_ti.testing.es_model.mappings.ModelUnsupported`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .mappings import ModelUnsupported

_WILD = "\x00*"  # marks a wildcard '*' (an escaped \* stays a literal star)
_SPECIAL = set('\\():<>"*{}')
_RANGE_OPS = (("<=", "lte"), (">=", "gte"), ("<", "lt"), (">", "gt"))


class KqlSyntaxError(ValueError):
    pass


@dataclass
class Lit:
    value: Any  # str | bool | None; a str may hold _WILD markers
    quoted: bool = False

    @property
    def is_wildcard(self) -> bool:
        return isinstance(self.value, str) and _WILD in self.value

    @property
    def lone_wildcard(self) -> bool:
        return self.value == _WILD


class _Parser:
    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    # -- lexical helpers
    def _space(self) -> bool:
        return self.i < len(self.s) and self.s[self.i] in " \t\r\n\u00a0"

    def _skip(self) -> None:
        while self._space():
            self.i += 1

    def _keyword_at(self, pos: int, word: str, leading_space: bool) -> int | None:
        """End of ``Space+ word Space+`` (or ``word Space+`` for NOT) starting at ``pos``, else None."""
        j = pos
        if leading_space:
            if j >= len(self.s) or self.s[j] not in " \t\r\n\u00a0":
                return None
            while j < len(self.s) and self.s[j] in " \t\r\n\u00a0":
                j += 1
        if self.s[j:j + len(word)].lower() != word:
            return None
        j += len(word)
        if j >= len(self.s) or self.s[j] not in " \t\r\n\u00a0":
            return None
        while j < len(self.s) and self.s[j] in " \t\r\n\u00a0":
            j += 1
        return j

    def _is_keyword(self, pos: int) -> bool:
        return any(self._keyword_at(pos, w, True) is not None for w in ("or", "and")) or \
            self._keyword_at(pos, "not", False) is not None

    # -- grammar
    def parse(self) -> Any:
        self._skip()
        if self.i >= len(self.s):
            return ("is", Lit(_WILD), Lit(_WILD))
        node = self.or_query()
        self._skip()
        if self.i != len(self.s):
            raise KqlSyntaxError(f"Expected AND, OR or end of input at position {self.i} of [{self.s}]")
        return node

    def _chain(self, word: str, sub: Any) -> Any:
        nodes = [sub()]
        while (end := self._keyword_at(self.i, word, True)) is not None:
            self.i = end
            nodes.append(sub())
        return nodes[0] if len(nodes) == 1 else (word, nodes)

    def or_query(self) -> Any:
        return self._chain("or", self.and_query)

    def and_query(self) -> Any:
        return self._chain("and", self.not_query)

    def not_query(self) -> Any:
        end = self._keyword_at(self.i, "not", False)
        if end is not None:
            self.i = end
            return ("not", [self.sub_query()])
        return self.sub_query()

    def sub_query(self) -> Any:
        if self.s.startswith("(", self.i):
            self.i += 1
            self._skip()
            node = self.or_query()
            self._skip()
            self._expect(")")
            return node
        return self.expression()

    def expression(self) -> Any:
        start = self.i
        field = self.literal()
        self._skip()
        for symbol, op in _RANGE_OPS:
            if self.s.startswith(symbol, self.i):
                self.i += len(symbol)
                self._skip()
                return ("range", field, op, self.literal())
        if self.s.startswith(":", self.i):
            self.i += 1
            self._skip()
            if self.s.startswith("{", self.i):
                raise ModelUnsupported("KQL nested queries (field:{...})")
            return self.list_of_values()(field)
        self.i = start  # a bare value: field is null
        value = self.value()
        return value(Lit(None))

    def list_of_values(self) -> Any:
        if self.s.startswith("(", self.i):
            self.i += 1
            self._skip()
            partial = self._value_chain("or", lambda: self._value_chain("and", self._not_values))
            self._skip()
            self._expect(")")
            return partial
        return self.value()

    def _value_chain(self, word: str, sub: Any) -> Any:
        parts = [sub()]
        while (end := self._keyword_at(self.i, word, True)) is not None:
            self.i = end
            parts.append(sub())
        if len(parts) == 1:
            return parts[0]
        return lambda field: (word, [p(field) for p in parts])

    def _not_values(self) -> Any:
        end = self._keyword_at(self.i, "not", False)
        if end is not None:
            self.i = end
            inner = self.list_of_values()
            return lambda field: ("not", [inner(field)])
        return self.list_of_values()

    def value(self) -> Any:
        lit = self.literal()
        return lambda field: ("is", field, lit)

    def literal(self) -> Lit:
        if self.s.startswith('"', self.i):
            return self.quoted()
        chars: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\":
                chars.append(self._escape(unquoted=True))
                continue
            if c == "*":
                chars.append(_WILD)
                self.i += 1
                continue
            if c in _SPECIAL or self._is_keyword(self.i):
                break
            chars.append(c)
            self.i += 1
        if not chars:
            raise KqlSyntaxError(f"Expected a value at position {self.i} of [{self.s}]")
        text = "".join(chars).strip(" \t\r\n\u00a0")
        if text in ("null", "true", "false"):
            return Lit({"null": None, "true": True, "false": False}[text])
        return Lit(text)

    def quoted(self) -> Lit:
        self.i += 1
        chars: list[str] = []
        while self.i < len(self.s) and self.s[self.i] != '"':
            if self.s[self.i] == "\\":
                chars.append(self._escape(unquoted=False))
            else:
                chars.append(self.s[self.i])
                self.i += 1
        self._expect('"')
        return Lit("".join(chars), quoted=True)

    def _escape(self, *, unquoted: bool) -> str:
        nxt = self.s[self.i + 1:self.i + 2]
        if nxt in ("t", "r", "n"):
            self.i += 2
            return {"t": "\t", "r": "\r", "n": "\n"}[nxt]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.s[self.i + 2:self.i + 6]):
            self.i += 6
            return chr(int(self.s[self.i - 4:self.i], 16))
        if unquoted:
            if nxt and nxt in _SPECIAL:
                self.i += 2
                return nxt
            for word in ("or", "and", "not"):
                if self.s[self.i + 1:self.i + 1 + len(word)].lower() == word:
                    self.i += 1 + len(word)
                    return self.s[self.i - len(word):self.i]
        elif nxt in ('\\', '"'):
            self.i += 2
            return nxt
        raise KqlSyntaxError(f"invalid escape at position {self.i} of [{self.s}]")

    def _expect(self, char: str) -> None:
        if not self.s.startswith(char, self.i):
            raise KqlSyntaxError(f"Expected [{char}] at position {self.i} of [{self.s}]")
        self.i += 1


def parse(text: str) -> Any:
    return _Parser(text).parse()


# ---------------------------------------------------------------- to DSL
def _escape_query_string(value: str) -> str:
    """``wildcard.toQueryStringQuery``: escape query_string specials, then put the wildcards back."""
    escaped = re.sub(r'([+\-=&|><!(){}\[\]^"~*?:\\/ ])', r"\\\1", value.replace(_WILD, "\x01"))
    return escaped.replace("\x01", "*")


def _field_names(field: Lit, fields: dict[str, str]) -> list[tuple[str, str]]:
    """``getFields``: a wildcard name matches known fields; no match -> the name as-is, type unknown."""
    name = field.value if isinstance(field.value, str) else str(field.value)
    if field.is_wildcard:
        regex = "".join(".*" if part == _WILD else re.escape(part) for part in re.split(f"({re.escape(_WILD)})", name) if part)
        found = [(n, t) for n, t in sorted(fields.items()) if re.fullmatch(regex, n)]
    else:
        found = [(name, fields[name])] if name in fields else []
    return found or [(name.replace(_WILD, "*"), "")]


def _is(field: Lit, value: Lit, fields: dict[str, str], tz: str | None, case_insensitive: bool | None) -> dict[str, Any]:
    if field.lone_wildcard and value.lone_wildcard:
        return {"match_all": {}}
    if field.value is None:
        if value.is_wildcard:
            return {"query_string": {"query": _escape_query_string(value.value)}}
        return {"multi_match": {"type": "phrase" if value.quoted else "best_fields", "query": value.value, "lenient": True}}
    queries: list[dict[str, Any]] = []
    for name, es_type in _field_names(field, fields):
        keyword = es_type == "keyword"
        if value.lone_wildcard:
            queries.append({"exists": {"field": name}})
        elif value.is_wildcard:
            pattern = _escape_query_string(value.value)
            if keyword:
                spec: dict[str, Any] = {"value": pattern}
                if case_insensitive is not None:
                    spec["case_insensitive"] = case_insensitive
                queries.append({"wildcard": {name: spec}})
            else:
                queries.append({"query_string": {"fields": [name], "query": pattern}})
        elif es_type in ("date", "date_nanos"):
            bounds: dict[str, Any] = {"gte": value.value, "lte": value.value}
            if tz and not re.fullmatch(r"\d+", str(value.value)):
                bounds["time_zone"] = tz
            queries.append({"range": {name: bounds}})
        elif keyword:
            term: dict[str, Any] = {"value": value.value}
            if case_insensitive is not None:
                term["case_insensitive"] = case_insensitive
            queries.append({"term": {name: term}})
        else:
            queries.append({"match_phrase" if value.quoted else "match": {name: value.value}})
    return {"bool": {"should": queries, "minimum_should_match": 1}}


def _range(field: Lit, op: str, value: Lit, fields: dict[str, str], tz: str | None) -> dict[str, Any]:
    queries = []
    for name, es_type in _field_names(field, fields):
        params: dict[str, Any] = {op: value.value}
        if es_type in ("date", "date_nanos") and tz and not re.fullmatch(r"\d+", str(value.value)):
            params["time_zone"] = tz
        queries.append({"range": {name: params}})
    return {"bool": {"should": queries, "minimum_should_match": 1}}


def _to_dsl(node: Any, fields: dict[str, str], tz: str | None, ci: bool | None) -> dict[str, Any]:
    kind = node[0]
    if kind == "is":
        return _is(node[1], node[2], fields, tz, ci)
    if kind == "range":
        return _range(node[1], node[2], node[3], fields, tz)
    children = [_to_dsl(child, fields, tz, ci) for child in node[1]]
    if kind == "and":
        return {"bool": {"filter": children}}
    if kind == "or":
        return {"bool": {"should": children, "minimum_should_match": 1}}
    return {"bool": {"must_not": children[0]}}


def kql_to_dsl(text: str, fields: dict[str, str] | None = None, *, date_format_tz: str | None = None,
               case_insensitive: bool | None = None) -> dict[str, Any]:
    """The DSL Kibana's ``toElasticsearchQuery(fromKueryExpression(text), dataView)`` returns.

    ``fields`` maps field name -> Elasticsearch type of the data view's fields (``{}``: none known,
    as in the security solution's ``getQueryFilter``, whose data view has ``fields: []``).
    """
    return _to_dsl(parse(text), fields or {}, date_format_tz, case_insensitive)


def build_es_query(kql: str, filters: list[dict[str, Any]], fields: dict[str, str] | None = None, *,
                   date_format_tz: str | None = None) -> dict[str, Any]:
    """``buildEsQuery(dataView, {language: kuery}, filters, config)``: the KQL and each enabled filter's
    ``query`` in ``bool.filter``, negated filters in ``bool.must_not`` (kbn-es-query ``es_query/``;
    shape written from the functions above, ``build_es_query.ts`` itself not re-read)."""
    kept = [f for f in filters if not (f.get("meta") or {}).get("disabled")]
    positive = [f["query"] for f in kept if not (f.get("meta") or {}).get("negate")]
    negative = [f["query"] for f in kept if (f.get("meta") or {}).get("negate")]
    return {"bool": {"must": [], "filter": [kql_to_dsl(kql, fields, date_format_tz=date_format_tz), *positive],
                     "should": [], "must_not": negative}}
