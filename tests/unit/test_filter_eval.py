"""Filter evaluation: exact masks against a plain-Python twin, per flow, on random batches."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.collector.filter import IPLists, compile_filter
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY, FieldType

M64 = (1 << 64) - 1
LIST_TEXT = "10.0.0.0/8\n10.1.2.0/24\n192.0.2.128/25\n2001:db8::/32\n2001:db8:1::5"
LISTS = IPLists.from_texts({"mynets": LIST_TEXT})
LIST_NETS = [ipaddress.ip_network(line) for line in LIST_TEXT.splitlines()]


def make_batch(rows: list[dict[str, int]], present: set[str], raw: bytes = b"") -> FlowBatch:
    """A FlowBatch holding the `present` columns of `rows` (absent columns are left out)."""
    n = len(rows)
    cols, cols6 = {}, {}
    for name in present:
        f = REGISTRY[name]
        if f.ftype == FieldType.IPV6:
            cols6[f.column6] = np.array([[r[name] >> 64, r[name] & M64] for r in rows], dtype=np.uint64).reshape(n, 2)
        else:
            cols[f.column] = np.array([r[name] for r in rows], dtype=np.uint64)
    return FlowBatch(n, cols, cols6, np.frombuffer(raw, dtype=np.uint8).copy())


# ---- the readable twin: what each rule means, flow by flow -------------------------------

# field → (kind, src columns, dst columns, src IPv6 columns, dst IPv6 columns)
TWIN_FIELDS = {
    "host": ("ip", ["src_addr"], ["dst_addr"], ["src_addr6"], ["dst_addr6"]),
    "net": ("ip", ["src_addr"], ["dst_addr"], ["src_addr6"], ["dst_addr6"]),
    "net6": ("ip6", [], [], ["src_addr6"], ["dst_addr6"]),
    "port": ("int", ["src_port"], ["dst_port"], [], []),
    "proto": ("int", ["proto"], ["proto"], [], []),
    "tcp-flags": ("flags", ["tcp_flags"], ["tcp_flags"], [], []),
    "as": ("int", ["src_as"], ["dst_as"], [], []),
    "mac": ("int", ["src_mac", "post_src_mac"], ["dst_mac", "post_dst_mac"], [], []),
    "in_if": ("int", ["in_if"], ["in_if"], [], []),
}
COLUMNS = ["src_addr", "dst_addr", "src_addr6", "dst_addr6", "src_port", "dst_port", "proto",
           "tcp_flags", "src_as", "dst_as", "src_mac", "post_src_mac", "dst_mac", "post_dst_mac",
           "in_if"]
FLAG_BITS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16}


def twin_value_matches(kind: str, value: str, column_is_v6: bool, x: int) -> bool:
    """Whether one column value x matches one written value."""
    if kind in ("ip", "ip6"):
        if value == "mynets":
            nets = LIST_NETS
        else:
            nets = [ipaddress.ip_network(value, strict=False)]
        addr = ipaddress.IPv6Address(x) if column_is_v6 else ipaddress.IPv4Address(x)
        return any(n.version == addr.version and addr in n for n in nets)
    if kind == "flags" and all(p in FLAG_BITS for p in value.split("+")):
        bits = sum(FLAG_BITS[p] for p in value.split("+"))
        return x & bits == bits
    names = {"https": 443, "ssh": 22, "tcp": 6, "udp": 17}

    def num(s: str) -> int:
        return names[s] if s in names else int(s, 0) if s.startswith("0x") else int(s, 10)

    if ":" in value:  # a MAC address
        return x == int(value.replace(":", ""), 16)
    if "-" in value:
        lo, hi = value.split("-")
        return num(lo) <= x <= num(hi)
    return x == num(value)


def twin_rule(flow: dict[str, int], field: str, direction: str | None, values: list[str]) -> bool:
    kind, src, dst, src6, dst6 = TWIN_FIELDS[field]
    cols4 = src if direction == "src" else dst if direction == "dst" else src + dst
    cols6 = src6 if direction == "src" else dst6 if direction == "dst" else src6 + dst6
    for value in values:
        is_v6_value = ":" in value and kind in ("ip", "ip6")
        is_list = value == "mynets"
        if kind != "ip6" and (not is_v6_value or is_list):
            if any(twin_value_matches(kind, value, False, flow[c]) for c in cols4):
                return True
        if kind in ("ip", "ip6") and (is_v6_value or is_list):
            if any(twin_value_matches(kind, value, True, flow[c]) for c in cols6):
                return True
    return False


def twin(node: tuple, flow: dict[str, int]) -> bool:
    op = node[0]
    if op == "rule":
        return twin_rule(flow, node[1], node[2], node[3])
    if op == "not":
        return not twin(node[1], flow)
    if op == "and":
        return twin(node[1], flow) and twin(node[2], flow)
    return twin(node[1], flow) or twin(node[2], flow)


# ---- rendering random trees as filter text (minimal brackets, so precedence is tested) --

PREC = {"or": 1, "and": 2, "not": 3, "rule": 4}


def render(node: tuple) -> str:
    op = node[0]
    if op == "rule":
        d = f"{node[2]} " if node[2] else ""
        return f"{d}{node[1]} " + " or ".join(node[3])
    if op == "not":
        inner = render(node[1])
        return f"not ({inner})" if PREC[node[1][0]] < 3 else f"not {inner}"
    parts = []
    for child in node[1:]:
        text = render(child)
        parts.append(f"({text})" if PREC[child[0]] < PREC[op] else text)
    return f" {op} ".join(parts)


VALUES = {
    "host": ["10.0.0.1", "192.0.2.1", "2001:db8::1", "mynets", "10.0.0.0/8"],
    "net": ["10.0.0.0/8", "10.1.2.0/24", "192.0.2.0/24", "2001:db8::/32", "mynets", "0.0.0.0/0"],
    "net6": ["2001:db8::/32", "2001:db8:1::5", "mynets", "::/0"],
    "port": ["22", "80", "443", "https", "ssh", "1-1024", "0x50", "010"],
    "proto": ["6", "17", "tcp", "udp", "1-6"],
    "tcp-flags": ["syn", "syn+ack", "ack", "2", "0x12", "16-24"],
    "as": ["64500", "64501", "0", "64500-64510"],
    "mac": ["00:11:22:33:44:55", "00:00:00:00:00:00"],
    "in_if": ["3", "0", "1-2"],
}
DIRECTIONAL = {"host", "net", "net6", "port", "as", "mac"}


@st.composite
def rules(draw: st.DrawFn) -> tuple:
    field = draw(st.sampled_from(sorted(VALUES)))
    direction = draw(st.sampled_from([None, "src", "dst"])) if field in DIRECTIONAL else None
    values = draw(st.lists(st.sampled_from(VALUES[field]), min_size=1, max_size=3))
    return ("rule", field, direction, values)


trees = st.recursive(
    rules(),
    lambda sub: st.one_of(
        st.tuples(st.just("not"), sub),
        st.tuples(st.sampled_from(["and", "or"]), sub, sub),
    ),
    max_leaves=6,
)

ADDR4 = [0, 0x0A000001, 0x0A090909, 0x0A010203, 0x0B000001, 0xC0000201, 0xC0000281, 0xFFFFFFFF]
ADDR6 = [0, 0x20010DB8 << 96 | 1, 0x20010DB8_0001_0000 << 64 | 5, 0x20010DB8_0001_0000 << 64 | 6,
         0xFE80 << 112 | 1, M64 << 64 | M64]


@st.composite
def flows(draw: st.DrawFn) -> dict[str, int]:
    return {
        "src_addr": draw(st.sampled_from(ADDR4)), "dst_addr": draw(st.sampled_from(ADDR4)),
        "src_addr6": draw(st.sampled_from(ADDR6)), "dst_addr6": draw(st.sampled_from(ADDR6)),
        "src_port": draw(st.sampled_from([0, 10, 22, 80, 443, 1024, 5000, 65535])),
        "dst_port": draw(st.sampled_from([0, 10, 22, 80, 443, 1024, 5000, 65535])),
        "proto": draw(st.sampled_from([0, 1, 6, 17])),
        "tcp_flags": draw(st.sampled_from([0, 2, 0x10, 0x12, 0x18, 0x1B, 0xFF])),
        "src_as": draw(st.sampled_from([0, 64500, 64505, 64511])),
        "dst_as": draw(st.sampled_from([0, 64500, 64505, 64511])),
        "src_mac": draw(st.sampled_from([0, 0x001122334455, 0xFFFFFFFFFFFF])),
        "post_src_mac": draw(st.sampled_from([0, 0x001122334455])),
        "dst_mac": draw(st.sampled_from([0, 0x001122334455])),
        "post_dst_mac": draw(st.sampled_from([0, 0x001122334455])),
        "in_if": draw(st.integers(0, 4)),
    }


@settings(max_examples=300, deadline=None)
@given(tree=trees, rows=st.lists(flows(), min_size=0, max_size=40),
       present=st.sets(st.sampled_from(COLUMNS), min_size=len(COLUMNS) - 3))
def test_random_filters_match_the_twin(tree: tuple, rows: list[dict[str, int]], present: set[str]) -> None:
    # columns left out of the batch read as 0 in the filter: the twin sees 0 too
    seen = [{c: (r[c] if c in present else 0) for c in COLUMNS} for r in rows]
    batch = make_batch(rows, present)
    text = render(tree)
    mask = compile_filter(text, LISTS).evaluate(batch)
    assert mask.dtype == np.bool_ and mask.shape == (len(rows),)
    assert mask.tolist() == [twin(tree, f) for f in seen], text


# ---- hand-made cases for what engineers expect -----------------------------------------


def one(**values: int) -> FlowBatch:
    return make_batch([values], set(values))


def matches(text: str, batch: FlowBatch, lists: IPLists = LISTS) -> list[bool]:
    return compile_filter(text, lists).evaluate(batch).tolist()


def test_or_between_rules_keeps_directions() -> None:
    b = make_batch([{"src_port": 80, "dst_port": 1}, {"src_port": 1, "dst_port": 80},
                    {"src_port": 22, "dst_port": 1}, {"src_port": 1, "dst_port": 22}],
                   {"src_port", "dst_port"})
    assert matches("dst port 80 or src port 22", b) == [False, True, True, False]
    assert matches("(dst port 80) or (src port 22)", b) == [False, True, True, False]
    assert matches("port 80", b) == [True, True, False, False]


def test_host_a_or_host_b() -> None:
    b = make_batch([{"src_addr": 0x01020304, "dst_addr": 9}, {"src_addr": 9, "dst_addr": 0x05060708},
                    {"src_addr": 9, "dst_addr": 9}], {"src_addr", "dst_addr"})
    assert matches("host 1.2.3.4 or host 5.6.7.8", b) == [True, True, False]
    assert matches("src host 1.2.3.4 or dst host 5.6.7.8", b) == [True, True, False]
    assert matches("not not host 1.2.3.4", b) == [True, False, False]


def test_bare_host_with_an_ipv6_value_reads_the_ipv6_columns() -> None:
    a = 0x20010DB8 << 96 | 1
    b = make_batch([{"src_addr6": a, "dst_addr6": 0, "src_addr": 0, "dst_addr": 0},
                    {"src_addr6": 0, "dst_addr6": a, "src_addr": 0, "dst_addr": 0},
                    {"src_addr6": a + 1, "dst_addr6": 0, "src_addr": 0, "dst_addr": 0}],
                   {"src_addr6", "dst_addr6", "src_addr", "dst_addr"})
    assert matches("host 2001:db8::1", b) == [True, True, False]
    assert matches("dst host 2001:db8::1", b) == [False, True, False]
    assert matches("host6 2001:db8::1", b) == [True, True, False]
    assert matches("net 2001:db8::/126", b) == [True, True, True]


def test_protocol_and_service_names() -> None:
    b = make_batch([{"proto": 6, "dst_port": 443, "src_port": 5000},
                    {"proto": 17, "dst_port": 53, "src_port": 5000},
                    {"proto": 1, "dst_port": 0, "src_port": 0}], {"proto", "dst_port", "src_port"})
    assert matches("proto tcp", b) == [True, False, False]
    assert matches("udp", b) == [False, True, False]
    assert matches("icmp", b) == [False, False, True]
    assert matches("port https", b) == [True, False, False]
    assert matches("tcp and dst port https or udp and port dns", b) == [True, True, False]


def test_decimal_is_decimal() -> None:
    b = make_batch([{"proto": 8}, {"proto": 10}, {"proto": 17}], {"proto"})
    assert matches("proto 010", b) == [False, True, False]
    assert matches("proto 0x11", b) == [False, False, True]


def test_tcp_flags_names_need_all_bits_numbers_compare_whole_value() -> None:
    b = make_batch([{"tcp_flags": 0x02}, {"tcp_flags": 0x12}, {"tcp_flags": 0x1B}, {"tcp_flags": 0x10}],
                   {"tcp_flags"})
    assert matches("tcp-flags syn", b) == [True, True, True, False]
    assert matches("tcp-flags syn+ack", b) == [False, True, True, False]
    assert matches("tcp-flags 2", b) == [True, False, False, False]  # only SYN, as in xenoeye
    assert matches("tcp-flags 0x10-0x12", b) == [False, True, False, True]
    assert matches("tcp-flags syn and not tcp-flags ack", b) == [True, False, False, False]


def test_missing_fields_compare_as_zero() -> None:
    b = make_batch([{"proto": 6}], {"proto"})
    assert matches("port 0", b) == [True]
    assert matches("net 0.0.0.0/32", b) == [True]
    assert matches("host ::", b) == [True]
    assert matches("src_as 1", b) == [False]
    assert matches("if_name ''", b) == [True]


def test_dst_mac_reads_both_destination_mac_elements() -> None:
    mac = 0x001122334455
    b = make_batch([{"dst_mac": mac, "post_dst_mac": 0, "src_mac": 0},
                    {"dst_mac": 0, "post_dst_mac": mac, "src_mac": 0},
                    {"dst_mac": 0, "post_dst_mac": 0, "src_mac": mac}], {"dst_mac", "post_dst_mac", "src_mac"})
    assert matches("dst mac 00:11:22:33:44:55", b) == [True, True, False]
    assert matches("mac 00:11:22:33:44:55", b) == [True, True, True]


def test_ip_list_in_a_filter_uses_both_parts_for_host_and_net() -> None:
    b = make_batch([{"src_addr": 0x0A090909, "src_addr6": 0},
                    {"src_addr": 0, "src_addr6": 0x20010DB8 << 96 | 7},
                    {"src_addr": 0x0B000001, "src_addr6": 0xFE80 << 112}], {"src_addr", "src_addr6"})
    assert matches("src net mynets", b) == [True, True, False]
    assert matches("src net6 mynets", b) == [False, True, False]
    assert matches("src_addr mynets", b) == [True, False, False]


def test_dev_ip_v4_and_v6() -> None:
    b = make_batch([{"dev_ip": 0xC0000201, "dev_ip6": 0xFFFF_C0000201},
                    {"dev_ip": 0, "dev_ip6": 0x20010DB8 << 96 | 9}], {"dev_ip", "dev_ip6"})
    assert matches("dev-ip 192.0.2.1", b) == [True, False]
    assert matches("dev-ip 2001:db8::9", b) == [False, True]
    assert matches("dev-ip6 ::ffff:192.0.2.1", b) == [True, False]


def test_strings_compare_bytes_through_raw_references() -> None:
    raw = b"eth0\x00\x00ge-0/0/1eth01"
    refs = [0 << 16 | 6, 6 << 16 | 8, 14 << 16 | 5, 0 << 16 | 4]  # 'eth0' NUL-padded, ..., 'eth01', 'eth0'
    b = make_batch([{"if_name": r} for r in refs], {"if_name"}, raw)
    assert matches("if_name 'eth0'", b) == [True, False, False, True]
    assert matches("if_name 'ge-0/0/1' or 'eth01'", b) == [False, True, True, False]
    assert matches("not if_name eth0", b) == [False, True, True, False]


def test_empty_filter_and_empty_batch() -> None:
    b = make_batch([{"proto": 6}] * 3, {"proto"})
    assert matches("", b) == [True, True, True]
    assert matches("/* nothing */", b) == [True, True, True]
    empty = make_batch([], {"proto"})
    assert matches("tcp", empty) == [] and matches("", empty) == []
    assert matches("host 2001:db8::1 or net mynets", FlowBatch(0, {}, {})) == []


def test_many_values_use_the_binary_search_path() -> None:
    ports = list(range(1, 200, 7))
    b = make_batch([{"dst_port": p, "src_port": 0} for p in range(0, 210)], {"dst_port", "src_port"})
    text = "dst port " + " or ".join(str(p) for p in ports)
    assert matches(text, b) == [p in ports for p in range(0, 210)]


def test_non_contiguous_and_non_uint64_columns() -> None:
    base = np.arange(20, dtype=np.uint64)
    six = np.zeros((2, 10), dtype=np.uint64)  # the decoder hands out transposed views
    six[0, 3] = 0x20010DB8 << 32
    cols = {REGISTRY.column("dst_port"): base[::2], REGISTRY.column("src_port"): np.zeros(10, dtype=np.uint16)}
    b = FlowBatch(10, cols, {REGISTRY["src_addr6"].column6: six.T})
    assert matches("dst port 4-8", b) == [False, False, True, True, True] + [False] * 5
    assert matches("src port 0", b) == [True] * 10
    assert matches("src net 2001:db8::/32", b) == [i == 3 for i in range(10)]


@pytest.mark.slow
def test_a_million_flows_typical_filter_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the evaluate() rate on 1 M flows; asserts only the result, never the time."""
    import time

    rng = np.random.default_rng(1)
    n = 1_000_000
    cols = {
        REGISTRY.column("src_addr"): rng.integers(0x09000000, 0x0C000000, n, dtype=np.uint64),
        REGISTRY.column("dst_addr"): rng.integers(0xC0000000, 0xC0000400, n, dtype=np.uint64),
        REGISTRY.column("dst_port"): rng.choice(np.array([22, 80, 443, 8443], dtype=np.uint64), n),
    }
    b = FlowBatch(n, cols, {})
    f = compile_filter("net 10.0.0.0/8 and dst port 443 or src host 192.0.2.1")
    f.evaluate(b)
    t0 = time.perf_counter()
    for _ in range(5):
        mask = f.evaluate(b)
    rate = 5 * n / (time.perf_counter() - t0)
    src, dst, port = (cols[REGISTRY.column(c)] for c in ("src_addr", "dst_addr", "dst_port"))
    in10 = (src >> np.uint64(24) == 10) | (dst >> np.uint64(24) == 10)
    assert np.array_equal(mask, (in10 & (port == 443)) | (src == 0xC0000201))
    with capsys.disabled():
        print(f"\nfilter evaluate(): {rate / 1e6:.1f} M flows/s on 1 M flows")


@settings(max_examples=60, deadline=None)
@given(ranges=st.lists(st.tuples(st.integers(0, M64), st.integers(0, 1 << 20)), min_size=1, max_size=80),
       probes=st.lists(st.integers(0, M64), max_size=50))
def test_long_value_lists_match_exactly_on_the_whole_64_bit_range(ranges: list[tuple[int, int]],
                                                                    probes: list[int]) -> None:
    """Many ranges take the bucket-indexed path; ends near 2**64 must not overflow it."""
    spans = [(lo, min(lo + w, M64)) for lo, w in ranges]
    probes = probes + [a for a, _ in spans] + [b for _, b in spans] + [max(a - 1, 0) for a, _ in spans] + [M64, 0]
    text = "bytes " + " or ".join(f"{a}-{b}" for a, b in spans)
    b = make_batch([{"bytes": p} for p in probes], {"bytes"})
    assert matches(text, b) == [any(a <= p <= c for a, c in spans) for p in probes]
