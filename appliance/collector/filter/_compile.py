"""Turn a parsed filter into column operations over a `FlowBatch`.

Every rule becomes, per column it reads, one kernel call over the whole column: all the
rule's numbers, prefixes and IP lists for that column are merged at compile time into one
sorted set of disjoint ranges, searched by `or_in_ranges` / `or_in_ranges6`. ``and``, ``or``
and ``not`` combine the boolean masks in place. Nothing runs per flow in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance.collector.fields import functions as fn
from appliance.collector.fields import geo
from appliance.collector.fields.table import ValueKind
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
)
from appliance.collector.filter._iplists import IPLists, merge_ranges
from appliance.collector.filter._kernels import (
    bucket_index,
    or_in_ranges,
    or_in_ranges6,
    or_in_ranges_indexed,
    or_text_equal,
)
from appliance.collector.filter._parser import parse
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY

__all__ = ["Filter", "compile_filter"]

_M64 = (1 << 64) - 1
_INDEX_FROM = 16  # ranges in a rule from which a bucket index pays off
_Eval = Callable[[FlowBatch], np.ndarray]


def compile_filter(text: str, iplists: IPLists | None = None, source: str = "<filter>") -> Filter:
    """Compile a filter expression.

    Args:
        text: the expression (xenoeye syntax); empty or only comments = match every flow.
        iplists: the IP lists names in the filter refer to (None = no lists).
        source: where the text came from, used in error messages.

    Returns:
        A `Filter`; its `evaluate` gives the boolean mask of matching flows.

    Raises:
        FilterError: the expression is invalid (position, caret and what was expected).
    """
    lists = iplists or IPLists.empty()
    tree = parse(text, source, lists)
    used: set[str] = set()
    ctx = _Context()
    evaluate = _compile(tree, lists, used, ctx)
    order = {f.name: f.column for f in REGISTRY.fields}
    return Filter(text, tree, evaluate, tuple(sorted(used, key=order.__getitem__)), ctx)


class Filter:
    """A compiled filter.

    Attributes:
        text: the expression as given.
        fields: registry names of the columns it reads, in registry order.
        ast: the parsed tree; ``str(f.ast)`` is a canonical, fully bracketed form.
        match_all: true for the empty filter (callers may skip `evaluate`).
    """

    __slots__ = ("text", "ast", "fields", "match_all", "_fn", "_ctx")

    def __init__(self, text: str, tree: Node, fn: _Eval | None, fields: tuple[str, ...],
                 ctx: _Context | None = None) -> None:
        self.text = text
        self.ast = tree
        self.fields = fields
        self.match_all = fn is None
        self._fn = fn
        self._ctx = ctx or _Context()

    def evaluate(self, batch: FlowBatch, within: np.ndarray | None = None) -> np.ndarray:
        """The flows of `batch` that match: a new ``bool[batch.n]`` array.

        Fields absent from the batch compare as 0 (numbers and addresses) or as the
        empty string, like xenoeye's missing integer fields.

        Args:
            batch: the flows.
            within: the flows the filter is really applied to (a nested object's parent
                mask); only these update the frequency maps of ``mfreq()``. None = all.
        """
        if self._fn is None:
            return np.ones(batch.n, dtype=np.bool_)
        self._ctx.within = within
        try:
            return self._fn(batch)
        finally:
            self._ctx.within = None

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"


def _compile(node: Node, lists: IPLists, used: set[str], ctx: _Context) -> _Eval | None:
    if isinstance(node, MatchAll):
        return None
    if isinstance(node, Rule):
        return _compile_rule(node, lists, used)
    if isinstance(node, FuncRule):
        return _compile_function(node, used, ctx)
    if isinstance(node, Not):
        child = _compile(node.child, lists, used, ctx)
        assert child is not None

        def negate(batch: FlowBatch) -> np.ndarray:
            m = child(batch)
            return np.logical_not(m, out=m)

        return negate
    assert isinstance(node, (And, Or))
    parts = [_compile(c, lists, used, ctx) for c in node.children]
    first, rest = parts[0], parts[1:]
    assert first is not None and all(p is not None for p in rest)
    if isinstance(node, And):

        def conj(batch: FlowBatch) -> np.ndarray:
            m = first(batch)
            for p in rest:
                m &= p(batch)  # type: ignore[misc]
            return m

        return conj

    def disj(batch: FlowBatch) -> np.ndarray:
        m = first(batch)
        for p in rest:
            m |= p(batch)  # type: ignore[misc]
        return m

    return disj


class _Context:
    """Per-evaluation state shared by the compiled rules (the ``within`` mask)."""

    __slots__ = ("within",)

    def __init__(self) -> None:
        self.within: np.ndarray | None = None


@dataclass(frozen=True)
class _Test:
    """One column and what to look for in it."""

    column: str
    lo: np.ndarray | None = None  # uint64 range starts (v4/number columns)
    hi: np.ndarray | None = None
    bucket: tuple[np.ndarray, int] | None = None  # index over lo/hi for long lists
    lo6: tuple[np.ndarray, ...] | None = None  # (lo_hi, lo_lo, hi_hi, hi_lo) for v6 columns
    masks: tuple[int, ...] = ()  # TCP flag masks: all bits set
    texts: tuple[np.ndarray, ...] = ()


def _compile_rule(rule: Rule, lists: IPLists, used: set[str]) -> _Eval:
    f = rule.field
    ints: list[tuple[int, int]] = []
    v6: list[tuple[int, int]] = []
    masks: list[int] = []
    texts: list[np.ndarray] = []
    for v in rule.values:
        if isinstance(v, IntRange):
            ints.append((v.lo, v.hi))
        elif isinstance(v, Net):
            (ints if v.version == 4 else v6).append((v.lo, v.hi))
        elif isinstance(v, ListRef):
            lst = lists[v.name]
            if f.kind is not ValueKind.IP6:
                ints.extend(zip(lst.v4_lo.tolist(), lst.v4_hi.tolist()))
            if f.kind is not ValueKind.IP4:
                v6.extend(((int(a) << 64 | int(b)), (int(c) << 64 | int(d)))
                          for (a, b), (c, d) in zip(lst.v6_lo.tolist(), lst.v6_hi.tolist()))
        elif isinstance(v, Flags):
            masks.append(v.mask)
        elif isinstance(v, Text):
            texts.append(np.frombuffer(v.value, dtype=np.uint8).copy())

    tests: list[_Test] = []
    has_list = any(isinstance(v, ListRef) for v in rule.values)
    m4 = merge_ranges(ints)
    if m4 or masks or texts or (has_list and f.kind is not ValueKind.IP6):
        lo = np.array([a for a, _ in m4], dtype=np.uint64)
        hi = np.array([b for _, b in m4], dtype=np.uint64)
        bucket = bucket_index(lo, hi) if len(lo) > _INDEX_FROM else None
        for col in f.columns(rule.direction):
            tests.append(_Test(col, lo, hi, bucket, None, tuple(masks), tuple(texts)))
    m6 = merge_ranges(v6)
    if m6:
        bounds = (
            np.array([a >> 64 for a, _ in m6], dtype=np.uint64),
            np.array([a & _M64 for a, _ in m6], dtype=np.uint64),
            np.array([b >> 64 for _, b in m6], dtype=np.uint64),
            np.array([b & _M64 for _, b in m6], dtype=np.uint64),
        )
        for col in f.columns(rule.direction, v6=True):
            tests.append(_Test(col, lo6=bounds))
    for t in tests:
        used.add(t.column)

    def rule_mask(batch: FlowBatch) -> np.ndarray:
        out = np.zeros(batch.n, dtype=np.bool_)
        if batch.n == 0:
            return out
        for t in tests:
            col = batch[t.column]
            if col.dtype != np.uint64:
                col = col.astype(np.uint64)
            if t.lo6 is not None:
                or_in_ranges6(col, *t.lo6, out)
                continue
            if t.bucket is not None:
                or_in_ranges_indexed(col, t.lo, t.hi, t.bucket[0], t.bucket[1], out)
            elif t.lo is not None and len(t.lo):
                or_in_ranges(col, t.lo, t.hi, out)
            for m in t.masks:
                mask = np.uint64(m)
                out |= (col & mask) == mask
            for s in t.texts:
                or_text_equal(col, batch.raw, s, out)
        return out

    return rule_mask


def _compile_function(rule: FuncRule, used: set[str], ctx: _Context) -> _Eval:
    """A function rule: the function's value per flow (numba/numpy), then the value test.

    ``mfreq`` keeps its frequency map in the compiled filter, counting the flows the filter
    is applied to (``within``: a nested object's parent mask), each argument once.
    """
    call = rule.call
    used.update(call.columns_read)
    func = call.func
    freq = np.zeros(1 << 16, dtype=np.uint64) if func == "mfreq" else None
    member: np.ndarray | None = None  # text functions: code → matches
    codes: np.ndarray | None = None
    lo = hi = None
    geo_texts: list[str] | None = None  # GeoIP functions: texts resolved to codes when used
    if func in geo.GEO_FUNCTIONS and func != "asn":
        geo_texts = [v.value.decode("utf-8", "replace") for v in rule.values if isinstance(v, Text)]
    elif func in ("tfstr", "portstr"):
        wanted = {v.value.decode("utf-8", "replace").lower() for v in rule.values if isinstance(v, Text)}
        table = fn.TFSTR if func == "tfstr" else fn.port_texts()
        member = np.array([t.lower() in wanted for t in table], dtype=np.bool_)
    elif func == "ppstr":
        wanted = [v.value.decode("utf-8", "replace") for v in rule.values if isinstance(v, Text)]
        codes = np.array(sorted({c for w in wanted for c in _pp_codes(w)}), dtype=np.uint64)
    else:
        m = merge_ranges([(v.lo, v.hi) for v in rule.values if isinstance(v, IntRange)])
        lo = np.array([a for a, _ in m], dtype=np.uint64)
        hi = np.array([b for _, b in m], dtype=np.uint64)

    def function_mask(batch: FlowBatch) -> np.ndarray:
        out = np.zeros(batch.n, dtype=np.bool_)
        if batch.n == 0:
            return out
        rows = None
        if freq is not None:
            rows = np.flatnonzero(ctx.within) if ctx.within is not None else np.arange(batch.n, dtype=np.int64)
        values = call.key_words(batch, rows, freq)[0]
        if geo_texts is not None:  # country names are known once a database has loaded
            return np.isin(values, np.array(sorted({c for t in geo_texts for c in geo.function_codes(func, t)}),
                                            dtype=np.uint64))
        if member is not None:
            return member[values.astype(np.int64)]
        if codes is not None:
            return np.isin(values, codes)
        if len(lo):
            or_in_ranges(values, lo, hi, out)
        return out

    return function_mask


def _pp_codes(text: str) -> list[int]:
    """The `fn.pp_code` codes whose ppstr text equals `text` (case-insensitive): 0 or 1."""
    import re

    side = r"\s*(?:([^\s()]+)\s*\((\d+)\)|(\d+))?\s*"
    m = re.fullmatch(side + "->" + side, text)
    if m is None:
        return []
    ports = []
    for _name_g, num_g, bare_g in (m.group(1, 2, 3), m.group(4, 5, 6)):
        ports.append(int(num_g) if num_g else int(bare_g) if bare_g else fn.PP_NONE)
    k1, k2 = ports
    if k1 > 0xFFFF and k1 != fn.PP_NONE or k2 > 0xFFFF and k2 != fn.PP_NONE or k1 == k2 == fn.PP_NONE:
        return []
    code = k1 << 17 | k2
    return [code] if fn.pp_text(code).lower() == " ".join(text.split()).lower() else []
