"""The parsed filter: a small tree whose ``str()`` is a canonical, fully bracketed form."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from appliance.collector.fields.table import TCP_FLAGS, FilterField

__all__ = ["IntRange", "Flags", "Net", "ListRef", "Text", "Value",
           "Rule", "FuncRule", "Not", "And", "Or", "MatchAll", "Node"]


@dataclass(frozen=True, slots=True)
class IntRange:
    """A number (lo == hi) or an inclusive range; also MAC addresses."""

    lo: int
    hi: int

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


@dataclass(frozen=True, slots=True)
class Flags:
    """TCP flag names: the flow matches if all these bits are set."""

    mask: int

    def __str__(self) -> str:
        names = [n for n, bit in TCP_FLAGS.items() if self.mask & bit and n != "push"]
        return "+".join(names)


@dataclass(frozen=True, slots=True)
class Net:
    """An IPv4 or IPv6 address or prefix, as an inclusive range of addresses."""

    version: int
    lo: int
    hi: int
    text: str  # canonical prefix

    @classmethod
    def of(cls, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Net:
        return cls(net.version, int(net.network_address), int(net.broadcast_address), str(net))

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class ListRef:
    """An IP list by name."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Text:
    """A string value for string fields."""

    value: bytes

    def __str__(self) -> str:
        return "'" + self.value.decode("utf-8", "replace") + "'"


Value = IntRange | Flags | Net | ListRef | Text


@dataclass(frozen=True, eq=False)
class Rule:
    """``[src|dst] FIELD value {or value}``: any value on any of the field's columns."""

    field: FilterField
    direction: str | None
    values: tuple[Value, ...]
    pos: int

    def __str__(self) -> str:
        d = f"{self.direction} " if self.direction else ""
        return f"{d}{self.field.name} " + " or ".join(str(v) for v in self.values)


@dataclass(frozen=True, eq=False)
class FuncRule:
    """``FUNC(args) value {or value}``: xenoeye's functions (div, min, mfreq, tfstr, ...).

    ``call`` is the resolved call (a windows `FieldSpec` with ``func`` set); values are
    numbers/ranges for numeric functions, case-insensitive texts for text functions.
    """

    call: Any
    values: tuple[Value, ...]
    pos: int

    def __str__(self) -> str:
        return f"{self.call.text} " + " or ".join(str(v) for v in self.values)


@dataclass(frozen=True, eq=False)
class Not:
    child: Node

    def __str__(self) -> str:
        return f"not {_bracket(self.child)}"


@dataclass(frozen=True, eq=False)
class And:
    children: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(_bracket(c) for c in self.children)


@dataclass(frozen=True, eq=False)
class Or:
    children: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(_bracket(c) for c in self.children)


@dataclass(frozen=True, eq=False)
class MatchAll:
    """The empty filter."""

    def __str__(self) -> str:
        return ""


Node = Rule | FuncRule | Not | And | Or | MatchAll


def _bracket(node: Node) -> str:
    return f"({node})"
