"""A small SOQL and SOSL engine for the Salesforce sandbox.

It parses the statements for real (quoted literals with backslash escapes, AND/OR/NOT, IN, LIKE, ORDER BY,
LIMIT; SOSL `FIND {…} IN … FIELDS RETURNING …`), so a driver that splices unescaped customer input into
a query gets the altered query or MALFORMED_QUERY here, exactly as it would from Salesforce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.X,
)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


class QueryError(Exception):
    """Maps to a 400 with errorCode `code` (MALFORMED_QUERY, INVALID_FIELD, MALFORMED_SEARCH)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _unescape(literal: str) -> str:
    out, chars = [], iter(literal[1:-1])
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        if nxt in ("_", "%"):  # LIKE escapes survive into the pattern
            out.append("\\" + nxt)
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
        else:
            raise QueryError("MALFORMED_QUERY", "Invalid string literal: illegal escape sequence")
    return "".join(out)


def parse_datetime(text: str) -> datetime:
    text = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _tokens(text: str) -> list[tuple[str, Any]]:
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise QueryError("MALFORMED_QUERY", f"unexpected token at position {pos}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        value: Any = raw
        if kind == "string":
            value = _unescape(raw)
        elif kind == "datetime":
            value = parse_datetime(raw)
        elif kind == "number":
            value = float(raw)
        out.append((kind, value))
        pos = m.end()
    return out


@dataclass
class Soql:
    fields: list[str]
    sobject: str
    where: Any = None
    order: list[tuple[str, bool, bool | None]] = field(default_factory=list)  # (field, DESC, NULLS LAST)
    limit: int | None = None


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks, self.i = _tokens(text), 0

    def peek(self, word: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        kind, value = self.toks[self.i]
        return word is None or (kind in ("word", "punct", "op") and str(value).upper() == word)

    def take(self, word: str | None = None) -> tuple[str, Any]:
        if not self.peek(word):
            raise QueryError("MALFORMED_QUERY", f"expecting {word or 'a token'}")
        self.i += 1
        return self.toks[self.i - 1]

    def ident(self) -> str:
        kind, value = self.take()
        if kind != "word":
            raise QueryError("MALFORMED_QUERY", "expecting a field name")
        return str(value)

    def soql(self) -> Soql:
        self.take("SELECT")
        fields = [self.ident()]
        while self.peek(","):
            self.take(",")
            fields.append(self.ident())
        self.take("FROM")
        query = Soql(fields, self.ident())
        if self.peek("WHERE"):
            self.take("WHERE")
            query.where = self.disjunction()
        if self.peek("ORDER"):
            self.take("ORDER")
            self.take("BY")
            while True:
                name = self.ident()
                desc = self.peek("DESC")
                if desc or self.peek("ASC"):
                    self.take()
                nulls_last = None
                if self.peek("NULLS"):
                    self.take("NULLS")
                    nulls_last = self.peek("LAST")
                    self.take("LAST" if nulls_last else "FIRST")
                query.order.append((name, desc, nulls_last))
                if not self.peek(","):
                    break
                self.take(",")
        if self.peek("LIMIT"):
            self.take("LIMIT")
            query.limit = int(self.take()[1])
        if self.i != len(self.toks):
            raise QueryError("MALFORMED_QUERY", "unexpected token after the end of the query")
        return query

    def disjunction(self) -> Any:
        parts = [self.conjunction()]
        while self.peek("OR"):
            self.take("OR")
            parts.append(self.conjunction())
        return ("or", parts) if len(parts) > 1 else parts[0]

    def conjunction(self) -> Any:
        parts = [self.condition()]
        while self.peek("AND"):
            self.take("AND")
            parts.append(self.condition())
        return ("and", parts) if len(parts) > 1 else parts[0]

    def condition(self) -> Any:
        if self.peek("NOT"):
            self.take("NOT")
            return ("not", self.condition())
        if self.peek("("):
            self.take("(")
            inner = self.disjunction()
            self.take(")")
            return inner
        name = self.ident()
        if self.peek("IN") or self.peek("NOT"):
            negated = self.take()[1].upper() == "NOT"
            if negated:
                self.take("IN")
            self.take("(")
            values = [self.literal()]
            while self.peek(","):
                self.take(",")
                values.append(self.literal())
            self.take(")")
            return ("in", name, values, negated)
        if self.peek("LIKE"):
            self.take("LIKE")
            return ("like", name, self.literal())
        kind, op = self.take()
        if kind != "op":
            raise QueryError("MALFORMED_QUERY", "expecting an operator")
        return ("cmp", name, op, self.literal())

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "word":
            lowered = str(value).lower()
            if lowered not in ("null", "true", "false"):
                raise QueryError("MALFORMED_QUERY", "unexpected identifier where a value belongs")
            return {"null": None, "true": True, "false": False}[lowered]
        if kind in ("op", "punct"):
            raise QueryError("MALFORMED_QUERY", "expecting a value")
        return value


def parse_soql(text: str) -> Soql:
    return _Parser(text).soql()


def _coerce(actual: Any, literal: Any) -> tuple[Any, Any]:
    if isinstance(literal, datetime):
        return (parse_datetime(actual) if actual else None), literal
    if isinstance(literal, float):
        return (float(actual) if actual not in (None, "") else None), literal
    if isinstance(literal, str):
        return (str(actual).lower() if actual is not None else None), literal.lower()
    return actual, literal


def _like(actual: Any, pattern: str) -> bool:
    regex = "".join(
        "%" if tok == "\\%" else "_" if tok == "\\_" else ".*" if tok == "%" else "." if tok == "_" else re.escape(tok)
        for tok in re.findall(r"\\[%_]|.", pattern, re.S)
    )
    return actual is not None and re.fullmatch(regex, str(actual), re.I | re.S) is not None


def evaluate(node: Any, row: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "and":
        return all(evaluate(n, row) for n in node[1])
    if kind == "or":
        return any(evaluate(n, row) for n in node[1])
    if kind == "not":
        return not evaluate(node[1], row)
    if kind == "like":
        return _like(_value(row, node[1]), str(node[2]))
    if kind == "in":
        return any(_equal(*_coerce(_value(row, node[1]), v)) for v in node[2]) != bool(node[3])
    _, name, op, literal = node
    actual, expected = _coerce(_value(row, name), literal)
    if op in ("=", "!=", "<>"):
        return _equal(actual, expected) is (op == "=")
    if actual is None or expected is None:
        return False
    return bool(
        {"<": actual < expected, "<=": actual <= expected, ">": actual > expected, ">=": actual >= expected}[op]
    )


def _equal(actual: Any, expected: Any) -> bool:
    return bool(actual == expected)


def _value(row: dict[str, Any], name: str) -> Any:
    """The row's field `name` in any letter case: SOQL field names are case-insensitive."""
    return row[name] if name in row else next((v for k, v in row.items() if k.lower() == name.lower()), None)
