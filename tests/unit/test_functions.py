"""xenoeye's functions in window fields and filters, against plain-Python recomputations."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from appliance.collector.config import WindowSpec
from appliance.collector.fields import FieldError, parse_field
from appliance.collector.fields import functions as fn
from appliance.collector.filter import FilterError, compile_filter
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring import FixedWindow
from appliance.netflow.registry import REGISTRY

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
PORTS = [0, 1, 2, 3, 20, 21, 22, 53, 80, 123, 443, 1000, 5000, 8080, 40000, 50000, 65535]
IFNAMES = [b"eth0", b"eth1", b"Gi0/0/1", b"", b"xe-1/2/3.100", "порт".encode()]


def make_batch(rng: np.random.Generator, n: int, t0: int = T0) -> FlowBatch:
    cols: dict[int, np.ndarray] = {}

    def put(name: str, arr: np.ndarray) -> None:
        cols[REGISTRY[name].column] = np.asarray(arr).astype(np.uint64)

    raw = bytearray()
    refs = []
    for k in rng.integers(0, len(IFNAMES), n):
        s = IFNAMES[k] + b"\x00" * int(rng.integers(0, 3))  # fixed-size fields are NUL padded
        refs.append(len(raw) << 16 | len(s))
        raw += s
    put("if_name", np.array(refs))
    put("src_port", rng.choice(PORTS, n))
    put("dst_port", rng.choice(PORTS, n))
    put("tcp_flags", rng.choice([0, 2, 0x12, 0x10, 0x18, 0x19, 0x11, 0x04, 0xFF, 0x1C2], n))
    put("bytes", rng.integers(0, 20000, n))
    put("packets", rng.integers(0, 30, n))
    put("proto", rng.choice([6, 17], n))
    put("recv_time_ns", t0 + np.sort(rng.integers(0, NS, n)))
    return FlowBatch(n, cols, {}, np.frombuffer(bytes(raw), dtype=np.uint8).copy())


# ---- the readable oracle --------------------------------------------------------------------


def div_l(q: int, k: int) -> int:
    assert k >= 2
    if q == 0:
        return 0
    p = 1
    while p * k <= q:
        p *= k
    return p


class Twin:
    """Per-flow values of a field, the way xenoeye's C code computes them (without its bugs)."""

    def __init__(self) -> None:
        self.freq: dict[str, defaultdict[int, int]] = defaultdict(lambda: defaultdict(int))

    def value(self, text: str, b: FlowBatch, i: int) -> object:
        col = lambda name: int(b[name][i])  # noqa: E731
        bare = text.replace(" desc", "").replace(" asc", "")
        octets, packets = col("bytes"), col("packets")
        if bare == "if_name":
            return b.text("if_name", i)
        if bare.startswith(("div(", "div_r(", "divr(", "div_l(", "divl(")):
            a, d = (octets * 8 if "bits" in bare else octets), packets
            q = a // d if d else 0
            args = bare[bare.index("(") + 1 : bare.rindex(")")].split(",")
            k = int(args[2]) if len(args) == 3 else 1
            if bare.startswith(("div_r", "divr")) and k > 1:
                q = q // k * k
            if bare.startswith(("div_l", "divl")):
                q = div_l(q, k)
            return q
        sp, dp = col("src_port"), col("dst_port")
        if bare == "min(src port, dst port)":
            return min(sp, dp)
        if bare == "mfreq(src port, dst port)":
            f = self.freq[bare]
            r = (sp if f[sp] > f[dp] else dp) if f[sp] != f[dp] else min(sp, dp)
            f[sp] += 1
            f[dp] += 1
            return r
        if bare == "tfstr(tcp-flags)":
            return fn.tfstr(col("tcp_flags"))
        if bare == "portstr(dst port)":
            return fn.portstr(dp)
        if bare == "ppstr(src port, dst port)":
            return fn.ppstr(sp, dp)
        raise AssertionError(bare)


def oracle(batches: list[FlowBatch], spec: WindowSpec) -> list[tuple]:
    twin = Twin()
    groups: dict[tuple, list[int]] = {}
    for b in batches:
        for i in range(b.n):
            key = tuple(twin.value(f.text, b, i) for f in spec.fields if not f.aggregate)
            aggs = [int(b["bytes"][i]) if f.text.startswith("octets") else
                    int(b["packets"][i]) if f.text.startswith("packets") else 1
                    for f in spec.fields if f.aggregate]
            acc = groups.setdefault(key, [0] * len(aggs))
            for j, v in enumerate(aggs):
                acc[j] += v
    rows = []
    for key, aggs in groups.items():
        ki, ai, row = iter(key), iter(aggs), []
        for f in spec.fields:
            row.append(next(ai) if f.aggregate else next(ki))
        rows.append(tuple(row))

    ranks = [{v: k for k, v in enumerate(sorted({r[j] for r in rows if isinstance(r[j], str)}))}
             for j in range(len(spec.fields))]

    def sort_key(r: tuple) -> tuple:
        out = []
        for j, (f, v) in enumerate(zip(spec.fields, r, strict=True)):
            if isinstance(v, str):
                out.append(-ranks[j][v] if f.desc else ranks[j][v])
            else:
                out.append(-v if f.desc else v)
        return tuple(out)

    rows.sort(key=sort_key)
    shown = rows[: spec.limit] if spec.limit else rows
    if spec.limit and len(rows) >= spec.limit:
        rest = rows[spec.limit :]
        shown.append(tuple(sum(r[j] for r in rest) if f.aggregate else None for j, f in enumerate(spec.fields)))
    return shown


SPECS = [
    (["flows desc", "div_r(octets, packets, 100)", "tfstr(tcp-flags)"], 6),
    (["octets desc", "ppstr(src port, dst port)"], 0),
    (["min(src port, dst port)", "packets"], 0),
    (["mfreq(src port, dst port)", "flows desc"], 0),
    (["if_name", "octets desc"], 0),
    (["portstr(dst port) desc", "flows"], 4),
    (["divl(bits, packets, 10) desc", "flows"], 0),
    (["div(octets, packets)", "if_name desc", "tfstr(tcp-flags) desc", "octets"], 10),
]


@pytest.mark.parametrize(("fields", "limit"), SPECS)
def test_window_functions_match_plain_python(fields: list[str], limit: int) -> None:
    rng = np.random.default_rng(len(fields) * 7 + limit)
    spec = WindowSpec("w", tuple(parse_field(f) for f in fields), time=60, limit=limit)
    batches = [make_batch(rng, 700, T0 + k * NS) for k in range(3)]
    w = FixedWindow(spec, "t")
    for b in batches:
        assert w.add(b, np.arange(b.n), b["recv_time_ns"] // np.uint64(60 * NS)) == []
    (table,) = w.close()
    assert table.rows == oracle(batches, spec)


def test_mfreq_counts_only_the_rows_the_window_sees() -> None:
    rng = np.random.default_rng(5)
    b = make_batch(rng, 500)
    spec = WindowSpec("w", (parse_field("mfreq(src port, dst port)"), parse_field("flows")), time=60)
    w = FixedWindow(spec, "t")
    rows = np.flatnonzero(b["proto"] == 6)
    w.add(b, rows, b["recv_time_ns"] // np.uint64(60 * NS))
    (table,) = w.close()
    assert table.rows == oracle([b.take(rows)], spec)


def test_column_names_and_types() -> None:
    for text, column, sqltype in [
        ("div(octets, packets)", "div_octets__packets_", "BIGINT"),
        ("div_r(octets, packets, 100) desc", "div_r_octets__packets__100_", "BIGINT"),
        ("divl(bits, flows, 2)", "divl_bits__flows__2_", "BIGINT"),
        ("min(src port, dst port)", "min_src_port__dst_port_", "BIGINT"),
        ("mfreq(src port, dst port) asc", "mfreq_src_port__dst_port_", "BIGINT"),
        ("tfstr(tcp-flags)", "tfstr_tcp_flags_", "TEXT"),
        ("portstr(dst port)", "portstr_dst_port_", "TEXT"),
        ("ppstr(src port, dst port) desc", "ppstr_src_port__dst_port_", "TEXT"),
        ("if_name", "if_name", "TEXT"),
        ("vrf_name desc", "vrf_name", "TEXT"),
    ]:
        f = parse_field(text)
        assert (f.column, f.sqltype, f.aggregate) == (column, sqltype, False), text
    assert parse_field("div_r(octets, packets, 100) desc").desc


@pytest.mark.parametrize(
    ("text", "words"),
    [("div(octets)", "takes 2 argument"), ("div(src port, packets)", "divides aggregates"),
     ("min(port, dst port)", "write 'src port' or 'dst port'"), ("min(octets, packets)", "not the aggregate"),
     ("div_l(octets, packets, 1)", "must be ≥ 2"), ("div_r(octets, packets, x)", "is a number"),
     ("mfreq(src as, dst as)", "16-bit"), ("tfstr(src host)", "works on numbers"),
     ("asd(src port)", "takes one address"), ("nosuch(octets)", "unknown function"),
     ("min(src port desc, dst port)", "after the whole call"), ("div(octets, packets", "closing")],
)
def test_bad_function_fields(text: str, words: str) -> None:
    with pytest.raises(FieldError, match=words):
        parse_field(text)


def test_text_functions_follow_xenoeye() -> None:
    assert [fn.tfstr(x) for x in (0, 2, 0x12, 0x18, 0x11, 0xFF, 0x102)] == [
        "", "SYN", "ACK+SYN", "ACK+PSH", "ACK+FIN", "CWR+ECE+URG+ACK+PSH+RST+SYN+FIN", "SYN"]
    assert fn.portstr(443) == "https (443)" and fn.portstr(40000) == "40000"
    assert fn.ppstr(80, 53) == "http(80) -> domain(53)"
    assert fn.ppstr(40000, 40000) == "40000 -> 40000"
    assert fn.ppstr(1000, 40000) == "1000 ->" and fn.ppstr(40000, 1000) == "-> 1000"
    assert fn.ppstr(80, 40000) == "http(80) ->" and fn.ppstr(40000, 443) == "-> https(443)"
    assert fn.ppstr(1000, 8080) == "1000 -> http-alt(8080)" and fn.ppstr(443, 80) == "https(443) -> http(80)"
    assert fn.ppstr(443, 50) == "https(443) -> 50"
    # the code of a pair identifies its text exactly (grouping by code = grouping by text)
    rng = np.random.default_rng(1)
    a = rng.choice(np.array(PORTS + list(range(1, 40)), np.uint64), 5000)
    b = rng.choice(np.array(PORTS + list(range(1, 40)), np.uint64), 5000)
    by_text: dict[str, set[int]] = defaultdict(set)
    for x, y, c in zip(a.tolist(), b.tolist(), fn.pp_code(a, b).tolist(), strict=True):
        assert fn.pp_text(c) == fn.ppstr(x, y)
        by_text[fn.ppstr(x, y)].add(c)
    assert all(len(v) == 1 for v in by_text.values())


def test_div_is_exact_on_64_bits() -> None:
    a = np.array([1000, 999, 0, 10**15, 7, 5], np.uint64)
    b = np.array([1, 1, 5, 1, 0, 3], np.uint64)
    out = np.empty(6, np.uint64)
    fn.div_values(a, b, 2, 10, out)
    assert out.tolist() == [1000, 100, 0, 10**15, 0, 1]  # xenoeye's float log gives 100 for 1000
    fn.div_values(a, b, 1, 100, out)
    assert out.tolist() == [1000, 900, 0, 10**15, 0, 0]
    fn.div_values(a, b, 0, 1, out)
    assert out.tolist() == [1000, 999, 0, 10**15, 0, 1]


# ---- filters ---------------------------------------------------------------------------------

FILTERS = [
    ("div(octets, packets) 100-1500", lambda t, b, i: 100 <= t.value("div(octets, packets)", b, i) <= 1500),
    ("div_r(octets, packets, 100) 500 or 1000-2000",
     lambda t, b, i: t.value("div_r(octets, packets, 100)", b, i) in (500, *range(1000, 2001))),
    ("divl(octets, packets, 10) 100", lambda t, b, i: t.value("div_l(octets, packets, 10)", b, i) == 100),
    ("min(src port, dst port) 0-1023", lambda t, b, i: t.value("min(src port, dst port)", b, i) <= 1023),
    ("tfstr(tcp-flags) syn or 'ACK+PSH'",
     lambda t, b, i: t.value("tfstr(tcp-flags)", b, i) in ("SYN", "ACK+PSH")),
    ("portstr(dst port) 'HTTPS (443)' or 40000",
     lambda t, b, i: t.value("portstr(dst port)", b, i) in ("https (443)", "40000")),
    ("ppstr(src port, dst port) '1000 ->' or '-> https(443)' or 'http(80) -> domain(53)'",
     lambda t, b, i: t.value("ppstr(src port, dst port)", b, i)
     in ("1000 ->", "-> https(443)", "http(80) -> domain(53)")),
    ("udp and not mfreq(src port, dst port) 53 or 80",
     lambda t, b, i: int(b["proto"][i]) == 17 and t.value("mfreq(src port, dst port)", b, i) not in (53, 80)),
]


@pytest.mark.parametrize(("text", "twin"), FILTERS)
def test_filter_functions_match_plain_python(text: str, twin) -> None:
    rng = np.random.default_rng(11)
    flt = compile_filter(text)
    t = Twin()
    for k in range(3):
        b = make_batch(rng, 800, T0 + k * NS)
        # mfreq counts every flow the filter is applied to, whatever the 'and' before it
        want = []
        for i in range(b.n):
            mf = t.value("mfreq(src port, dst port)", b, i) if "mfreq" in text else None
            if mf is not None:
                want.append(int(b["proto"][i]) == 17 and mf not in (53, 80))
            else:
                want.append(twin(t, b, i))
        assert flt.evaluate(b).tolist() == want


def test_filter_mfreq_counts_each_argument_once_and_only_within() -> None:
    # xenoeye's filter increments the first argument twice: after (80, 53) twice, 80 would
    # have 4 and win over 53 (2) in (53, 80); counted once each, both have 2 and 53 wins.
    rows = [(80, 53), (80, 53), (53, 80), (9, 9)]
    cols = {REGISTRY["src_port"].column: np.array([r[0] for r in rows], np.uint64),
            REGISTRY["dst_port"].column: np.array([r[1] for r in rows], np.uint64)}
    b = FlowBatch(4, cols, {})
    assert compile_filter("mfreq(src port, dst port) 53").evaluate(b).tolist() == [True, True, True, False]
    # only the flows inside the parent's mask count: (80, 53) once → tie → 53, then 9
    f = compile_filter("mfreq(src port, dst port) 53")
    within = np.array([False, True, False, True])
    assert (f.evaluate(b, within) & within).tolist() == [False, True, False, False]


@pytest.mark.parametrize(
    ("text", "col", "words"),
    [("div(octets) 1", 1, "takes 2 argument"), ("country(src port) 'RU'", 1, "takes one address"),
     ("tfstr(tcp-flags)", 17, "expected a text"), ("div(octets, packets) abc", 22, "not a number"),
     ("foo(port) 1", 1, "unknown function"), ("port 80 and min(src port, dst port", 13, "not closed")],
)
def test_filter_function_errors_point_at_the_call(text: str, col: int, words: str) -> None:
    with pytest.raises(FilterError, match=words) as info:
        compile_filter(text)
    assert info.value.column == col


def test_text_keys_export_as_text_columns() -> None:
    from appliance.collector.export.sqlfile import copy_rows, sql_text

    rng = np.random.default_rng(2)
    b = make_batch(rng, 300)
    spec = WindowSpec("ifs", (parse_field("if_name"), parse_field("tfstr(tcp-flags)"), parse_field("flows desc")),
                      time=60, limit=3)
    w = FixedWindow(spec, "mo_ifs")
    w.add(b, np.arange(b.n), b["recv_time_ns"] // np.uint64(60 * NS))
    (t,) = w.close()
    sql = sql_text(t)
    assert '"if_name" TEXT, "tfstr_tcp_flags_" TEXT, "flows" BIGINT' in sql
    assert all(isinstance(r[0], str) and isinstance(r[1], str) for r in t.rows[:3])
    assert t.rows[3][:2] == (None, None)  # the remainder row
    assert len(list(copy_rows(t))) == 4
