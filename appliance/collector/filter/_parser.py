"""Recursive-descent parser for xenoeye's filter grammar, with its OR ambiguity resolved.

::

    expr   := term {OR term}
    term   := factor {AND factor}
    factor := NOT factor | '(' expr ')' | rule
    rule   := [SRC|DST] FIELD value {OR value} | PROTOCOL

After a value, ``or`` continues the value list unless the next word starts a rule (``src``,
``dst``, ``not``, ``(``, a field name or a protocol shorthand such as ``tcp`` that is not a
value name of the field); then the
``or`` joins two rules, each keeping its own direction. So ``port 80 or 443`` is one rule,
``dst port 80 or src port 22`` and ``host a or host b`` are two.
"""

from __future__ import annotations

import difflib
import ipaddress
import re

from appliance.collector.fields.spec import TEXT_FUNCTIONS
from appliance.collector.fields.table import (
    FILTER_FIELDS,
    PROTOCOL_SHORTHANDS,
    PROTOCOLS,
    TCP_FLAGS,
    UNSUPPORTED,
    FilterField,
    ValueKind,
    code_value,
    lookup_field,
    service_port,
)
from appliance.collector.filter._ast import (
    And,
    Flags,
    FuncRule,
    IntRange,
    ListRef,
    MatchAll,
    Net,
    Node,
    Not,
    Or,
    Rule,
    Text,
    Value,
)
from appliance.collector.filter._errors import FilterError
from appliance.collector.filter._iplists import IPLists
from appliance.collector.filter._lexer import MAX_FILTER_CHARS, Kind, Token, tokenize
from appliance.netflow.registry import REGISTRY, FieldType, Registry

__all__ = ["parse", "MAX_DEPTH", "MAX_FILTER_CHARS"]

#: how deeply '(' and 'not' may nest: deeper filters are refused with a FilterError (at the
#: '(' or 'not' that goes too deep) instead of exhausting Python's stack
MAX_DEPTH = 64

_KEYWORDS = frozenset({"and", "or", "not", "src", "dst"})
_DEC = re.compile(r"[0-9]+")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_MAC = re.compile(r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}|([0-9a-fA-F]{4}\.){2}[0-9a-fA-F]{4}")
_LOOKS_IP = re.compile(r"[0-9a-fA-F:.]*[:.][0-9a-fA-F:./]*")
_OPERATORS = {"&&": "and", "&": "and", "||": "or", "|": "or", "!": "not", "==": "", "=": ""}
_PROTO_FIELD = FILTER_FIELDS["proto"]
_FUNCTION_NAMES = frozenset({"div", "div_r", "div_l", "divr", "divl", "min", "mfreq", "tfstr", "portstr",
                             "ppstr", "continent", "country_code", "country", "state", "city", "zip",
                             "lat", "long", "asn", "asd"})
#: what a numeric function's values are parsed as: numbers and ranges, no names
_FUNC_NUMBER = FilterField("function", ValueKind.INT)

_HINTS = {
    "port": "a port number, a range like 1024-65535 or a service name like https",
    "proto": "a protocol number or a name like tcp, udp, icmp",
    "tcp-flags": "flag names like syn or syn+ack, or a number like 0x12",
}


def parse(text: str, source: str = "<filter>", iplists: IPLists | None = None,
          registry: Registry = REGISTRY) -> Node:
    """Parse a filter into a tree; empty text (or only comments) is `MatchAll`.

    Raises:
        FilterError: pointing at the offending token, saying what was expected.
    """
    return _Parser(text, source, iplists or IPLists.empty(), registry).parse()


class _Parser:
    def __init__(self, text: str, source: str, iplists: IPLists, registry: Registry) -> None:
        self.text, self.source, self.iplists, self.registry = text, source, iplists, registry
        self.toks = tokenize(text, source)
        self.i = 0
        self.depth = 0  # '(' and 'not' currently open

    # ---- helpers --------------------------------------------------------------------

    def error(self, pos: int, message: str) -> FilterError:
        return FilterError(self.source, self.text, pos, message)

    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    @staticmethod
    def is_kw(tok: Token, word: str) -> bool:
        return tok.kind is Kind.WORD and tok.lower == word

    def starts_rule(self, tok: Token, field: FilterField) -> bool:
        """Whether a token after ``or`` begins a new rule rather than another value of
        `field` (``proto 6 or tcp``: tcp is a value; ``port 80 or tcp``: a rule)."""
        if tok.kind is Kind.LPAREN:
            return True
        if tok.kind is not Kind.WORD:
            return False
        w = tok.lower
        if w in PROTOCOL_SHORTHANDS:
            return w not in field.names
        if w in _FUNCTION_NAMES:
            return True
        return w in ("src", "dst", "not") or w in UNSUPPORTED or lookup_field(w, self.registry) is not None

    # ---- grammar ----------------------------------------------------------------------

    def parse(self) -> Node:
        if self.peek().kind is Kind.END:
            return MatchAll()
        node = self.expr()
        tok = self.peek()
        if tok.kind is Kind.RPAREN:
            raise self.error(tok.pos, "')' has no matching '('; remove it or add '(' before")
        if tok.kind is not Kind.END:
            raise self.error(tok.pos, f"expected 'and', 'or' or the end of the filter, got {tok.describe()}")
        return node

    def expr(self) -> Node:
        items = [self.term()]
        while self.is_kw(self.peek(), "or"):
            self.take()
            items.append(self.term())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self) -> Node:
        items = [self.factor()]
        while self.is_kw(self.peek(), "and"):
            self.take()
            items.append(self.factor())
        return items[0] if len(items) == 1 else And(tuple(items))

    def nest(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(tok.pos, f"'(' and 'not' nest more than {MAX_DEPTH} deep here; "
                                      "simplify the filter (or put the addresses in an IP list)")

    def factor(self) -> Node:
        tok = self.peek()
        if self.is_kw(tok, "not"):
            self.take()
            self.nest(tok)
            node = Not(self.factor())
            self.depth -= 1
            return node
        if tok.kind is Kind.LPAREN:
            self.take()
            self.nest(tok)
            node = self.expr()
            self.depth -= 1
            close = self.peek()
            if close.kind is not Kind.RPAREN:
                raise self.error(close.pos, f"expected ')' to close the '(' at column "
                                            f"{tok.pos + 1}, got {close.describe()}")
            self.take()
            return node
        if tok.kind is Kind.WORD and tok.lower not in ("and", "or"):
            return self.rule()
        raise self.error(tok.pos, "expected a rule such as 'dst port 443', 'net 10.0.0.0/8', 'not …' "
                                  f"or '(', got {tok.describe()}")

    def rule(self) -> Rule | FuncRule:
        if self.peek().lower in _FUNCTION_NAMES and self.peek(1).kind is Kind.LPAREN:
            return self.function_rule()
        tok = self.take()
        direction = None
        if tok.lower in ("src", "dst"):
            direction = tok.lower
            tok = self.take()
            if tok.kind is not Kind.WORD or tok.lower in _KEYWORDS:
                raise self.error(tok.pos, f"expected a field name after '{direction}' "
                                          f"(host, net, port, as, ...), got {tok.describe()}")
        word = tok.lower
        if word in PROTOCOL_SHORTHANDS and lookup_field(word, self.registry) is None:
            if direction:
                raise self.error(tok.pos - len(direction) - 1,
                                 f"'{word}' is a protocol; it takes no '{direction}'")
            p = PROTOCOLS[word]
            return Rule(_PROTO_FIELD, None, (IntRange(p, p),), tok.pos)
        field = self.field(tok)
        if direction and field.registry and not field.directional:
            raise self.error(tok.pos, f"'{tok.text}' names one column already; drop '{direction}'")
        values = [self.value(field, tok)]
        while self.is_kw(self.peek(), "or") and not self.starts_rule(self.peek(1), field):
            self.take()
            values.append(self.value(field, tok))
        if self.peek().kind is Kind.COMMA:
            raise self.error(self.peek().pos, "values are separated by 'or', not ','")
        return Rule(field, direction if field.directional else None, tuple(values), tok.pos)

    def function_rule(self) -> FuncRule:
        """``div(octets, packets) 100-1500``, ``tfstr(tcp-flags) 'SYN' or 'ACK+PSH'``."""
        from appliance.collector.fields.spec import FieldError, parse_call

        name = self.take()
        self.take()  # '('
        depth, parts, cur = 1, [], []
        while True:
            tok = self.take()
            if tok.kind is Kind.END:
                raise self.error(name.pos, f"'{name.text}(' is not closed; add ')'")
            if tok.kind is Kind.LPAREN:
                depth += 1
            elif tok.kind is Kind.RPAREN:
                depth -= 1
                if depth == 0:
                    parts.append(" ".join(cur))
                    break
            if tok.kind is Kind.COMMA and depth == 1:
                parts.append(" ".join(cur))
                cur = []
                continue
            cur.append(tok.text if tok.kind is not Kind.STRING else repr(tok.text))
        text = f"{name.lower}({', '.join(parts)})"
        try:
            call = parse_call(text, text)
        except FieldError as exc:
            raise self.error(name.pos, str(exc).split(": ", 1)[-1]) from None
        values: list[Value] = [self.function_value(call, name)]
        while self.is_kw(self.peek(), "or") and not self.starts_rule(self.peek(1), _FUNC_NUMBER):
            self.take()
            values.append(self.function_value(call, name))
        return FuncRule(call, tuple(values), name.pos)

    def function_value(self, call: object, name: Token) -> Value:
        tok = self.peek()
        text_valued = getattr(call, "func", None) in TEXT_FUNCTIONS
        if text_valued:
            if tok.kind is Kind.STRING or (tok.kind is Kind.WORD and tok.lower not in _KEYWORDS):
                self.take()
                return Text(tok.text.encode("utf-8"))
            raise self.error(tok.pos, f"expected a text after '{name.text}(...)', like 'SYN' or "
                                      f"'https (443)', got {tok.describe()}")
        if tok.kind is not Kind.WORD or tok.lower in _KEYWORDS:
            raise self.error(tok.pos, f"expected a number or a range lo-hi after '{name.text}(...)', "
                                      f"got {tok.describe()}")
        self.take()
        try:
            return self.number(_FUNC_NUMBER, tok.text, tok.pos)
        except FilterError:
            raise self.error(tok.pos, f"'{tok.text}' is not a number or a range lo-hi; "
                                      f"'{name.text}(...)' compares numbers") from None

    def field(self, tok: Token) -> FilterField:
        word = tok.lower
        if word in UNSUPPORTED:
            raise self.error(tok.pos, f"'{tok.text}' {UNSUPPORTED[word]}")
        field = lookup_field(word, self.registry)
        if field is not None:
            return field
        reg = self.registry.by_name.get(word) or self.registry.by_name.get(word.replace("-", "_"))
        if reg is not None and reg.ftype == FieldType.FLOAT:
            raise self.error(tok.pos, f"'{tok.text}' is a floating-point field; it cannot be filtered")
        if tok.text in _OPERATORS:
            alt = _OPERATORS[tok.text]
            hint = f"write '{alt}'" if alt else "write the value right after the field ('port 80')"
            raise self.error(tok.pos, f"'{tok.text}' is not part of the filter language; {hint}")
        if word.endswith("(") or self.peek().kind is Kind.LPAREN:
            raise self.error(tok.pos, f"unknown function '{tok.text}(...)'; filters know div, div_r, div_l, "
                                      "min, mfreq, tfstr, portstr and ppstr")
        if _LOOKS_IP.fullmatch(tok.text) or tok.text in self.iplists:
            raise self.error(tok.pos, f"a value needs a field before it: write 'host {tok.text}' or 'net {tok.text}'")
        if _DEC.fullmatch(tok.text):
            raise self.error(tok.pos, f"a value needs a field before it: write e.g. 'port {tok.text}'")
        names = list(FILTER_FIELDS) + [f.name for f in self.registry.fields]
        close = difflib.get_close_matches(word, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else " (host, net, port, proto, as, or a registry field name)"
        raise self.error(tok.pos, f"unknown field '{tok.text}'{hint}")

    # ---- values -----------------------------------------------------------------------

    def value(self, field: FilterField, field_tok: Token) -> Value:
        tok = self.peek()
        what = _HINTS.get(field.name, field.kind.value)
        if tok.kind is Kind.STRING:
            self.take()
            if field.kind is ValueKind.TEXT:
                return Text(tok.text.encode("utf-8"))
            return self.word_value(field, tok.text, tok.pos + 1)
        if tok.kind is not Kind.WORD or tok.lower in _KEYWORDS:
            raise self.error(tok.pos, f"expected {what} after '{field_tok.text}', got {tok.describe()}")
        self.take()
        if field.kind is ValueKind.TEXT:
            return Text(tok.text.encode("utf-8"))
        return self.word_value(field, tok.text, tok.pos)

    def word_value(self, field: FilterField, word: str, pos: int) -> Value:
        kind = field.kind
        if kind in (ValueKind.IP, ValueKind.IP4, ValueKind.IP6):
            return self.address(field, word, pos)
        if kind is ValueKind.FLAGS:
            parts = re.split(r"[+|]", word.lower())
            if all(p in TCP_FLAGS for p in parts):
                mask = 0
                for p in parts:
                    mask |= TCP_FLAGS[p]
                return Flags(mask)
        if kind is ValueKind.CODE:  # enrichment: country codes, AS names (fields.geo)
            code = code_value(field, word)
            if code is None:
                raise self.error(pos, f"'{word}' is not a valid value for '{field.name}'; expected a two-letter "
                                      "code like DE, or ? for unknown")
            return IntRange(code, code)
        if kind is ValueKind.MAC and _MAC.fullmatch(word):
            v = int(re.sub(r"[:.-]", "", word), 16)
            return IntRange(v, v)
        return self.number(field, word, pos)

    def scalar(self, field: FilterField, s: str) -> int | None:
        if _DEC.fullmatch(s):
            return int(s, 10)
        if _HEX.fullmatch(s):
            return int(s, 16)
        key = s.lower()
        if field.names is not None and key in field.names:
            return field.names[key]
        if field.names is FILTER_FIELDS["port"].names and key:
            return service_port(key)
        return None

    def number(self, field: FilterField, word: str, pos: int) -> IntRange:
        v = self.scalar(field, word)
        if v is not None:
            self.check_max(field, v, pos)
            return IntRange(v, v)
        for k, c in enumerate(word):
            if c != "-" or k == 0:
                continue
            lo, hi = self.scalar(field, word[:k]), self.scalar(field, word[k + 1 :])
            if lo is None or hi is None:
                continue
            self.check_max(field, lo, pos)
            self.check_max(field, hi, pos + k + 1)
            if lo > hi:
                raise self.error(pos, f"range {word} is empty; write the lower bound first ({hi}-{lo})")
            return IntRange(lo, hi)
        what = _HINTS.get(field.name, field.kind.value)
        if word.startswith("-"):
            raise self.error(pos, f"'{word}': negative numbers never match; '{field.name}' takes {what}")
        if field.kind is ValueKind.MAC:
            raise self.error(pos, f"'{word}' is not a MAC address; write it as aa:bb:cc:dd:ee:ff")
        raise self.error(pos, f"'{word}' is not a valid value for '{field.name}'; expected {what}")

    def check_max(self, field: FilterField, v: int, pos: int) -> None:
        if v > field.max_value:
            raise self.error(pos, f"{v} is out of range for '{field.name}' (0-{field.max_value})")

    def address(self, field: FilterField, word: str, pos: int) -> Value:
        try:
            net = ipaddress.ip_network(word, strict=False)
        except ValueError:
            net = None
        if net is not None:
            if net.version == 4 and field.kind is ValueKind.IP6:
                alt = "host" if field.name in ("host6", "net6") else "an IPv4 field"
                raise self.error(pos, f"'{field.name}' matches IPv6 addresses; for {word} use {alt}")
            if net.version == 6 and field.kind is ValueKind.IP4:
                alt = f"{field.name}6" if f"{field.name}6" in self.registry else "an IPv6 field"
                raise self.error(pos, f"'{field.name}' is an IPv4 field; for {word} use {alt}")
            return Net.of(net)
        if word in self.iplists:
            return ListRef(word)
        if _LOOKS_IP.fullmatch(word) and any(c.isdigit() for c in word):
            raise self.error(pos, f"'{word}' is not a valid IPv4 or IPv6 address or prefix")
        folded = [n for n in self.iplists.names() if n.lower() == word.lower()]
        if folded:
            raise self.error(pos, f"no IP list '{word}' (list names are case-sensitive: did you mean '{folded[0]}'?)")
        raise self.error(pos, f"'{word}' is not an address, prefix or IP list name "
                              f"(no list '{word}' {self.iplists.where()}); expected {field.kind.value}")
