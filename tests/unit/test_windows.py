"""Fixed windows: numba aggregation against a plain-Python recomputation on random batches."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

import numpy as np
import pytest

from appliance.collector.config import WindowSpec
from appliance.collector.fields import FieldError, parse_field
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring import FixedWindow
from appliance.netflow.registry import REGISTRY

NS = 1_000_000_000


def make_batch(rng: np.random.Generator, n: int, t0: int, span_s: float = 1.0, v6_share: float = 0.2,
               distinct: int = 50) -> FlowBatch:
    cols: dict[int, np.ndarray] = {}
    cols6: dict[int, np.ndarray] = {}

    def put(name: str, arr: np.ndarray) -> None:
        f = REGISTRY[name]
        if f.column6 >= 0:
            cols6[f.column6] = arr.astype(np.uint64)
        else:
            cols[f.column] = arr.astype(np.uint64)

    is6 = rng.random(n) < v6_share
    src4 = (0x0A000000 + rng.integers(0, distinct, n)).astype(np.uint64)
    dst4 = (0xC0A80000 + rng.integers(0, distinct, n)).astype(np.uint64)
    src6 = np.zeros((n, 2), dtype=np.uint64)
    src6[:, 0] = np.uint64(0x20010DB800000000)
    src6[:, 1] = rng.integers(1, distinct, n).astype(np.uint64)
    src6[~is6] = 0
    src4[is6] = 0
    put("src_addr", src4)
    put("dst_addr", dst4)
    put("src_addr6", src6)
    put("dst_port", rng.choice([22, 25, 53, 80, 443], n))
    put("src_port", rng.integers(1024, 1024 + distinct, n))
    put("proto", rng.choice([1, 6, 17], n))
    put("src_mac", rng.integers(0, 4, n) + 0x02AABBCC0000)
    put("bytes", rng.integers(40, 1_500_000, n))
    put("packets", rng.integers(1, 1000, n))
    put("in_if", rng.integers(0, 4, n))
    put("recv_time_ns", t0 + np.sort(rng.integers(0, int(span_s * NS), n)))
    return FlowBatch(n, cols, cols6)


def oracle(batches: list[FlowBatch], spec: WindowSpec) -> dict[int, list[tuple]]:
    """Plain Python: per window end, the rows in sort order with limit + remainder."""
    groups: dict[int, dict[tuple, list[int]]] = defaultdict(dict)
    for b in batches:
        for i in range(b.n):
            wid = int(b["recv_time_ns"][i]) // (spec.time * NS)
            key, aggs = [], []
            for f in spec.fields:
                if f.aggregate:
                    v = 1 if f.source is None else int(b[f.source][i]) * f.multiplier
                    aggs.append(v)
                    continue
                if f.kind == 3:  # IP_ANY
                    w6 = b[f.source6][i]
                    if int(w6[0]) or int(w6[1]):
                        ip = ipaddress.IPv6Address((int(w6[0]) << 64) | int(w6[1]))
                    else:
                        ip = ipaddress.IPv4Address(int(b[f.source][i]))
                    key.append(ip)
                else:
                    key.append(int(b[f.source][i]))
            g = groups[wid].setdefault(tuple(key), [0] * len(aggs))
            for j, v in enumerate(aggs):
                g[j] += v
    out = {}
    for wid, g in groups.items():
        rows = []
        for key, aggs in g.items():
            row, k, a = [], 0, 0
            for f in spec.fields:
                if f.aggregate:
                    row.append(aggs[a])
                    a += 1
                else:
                    row.append(key[k])
                    k += 1
            rows.append(row)

        def row_order(row: list) -> tuple:
            out = []
            for f, v in zip(spec.fields, row, strict=True):
                if isinstance(v, ipaddress.IPv4Address):
                    v = (0xFFFF << 32) | int(v)  # v4 sorts as ::ffff:a.b.c.d
                elif isinstance(v, ipaddress.IPv6Address):
                    v = int(v)
                out.append(-v if f.desc else v)
            return tuple(out)

        rows.sort(key=row_order)
        shown = rows[: spec.limit] if spec.limit else rows
        text = [tuple(_text(f, v) for f, v in zip(spec.fields, r, strict=True)) for r in shown]
        if spec.limit and len(rows) >= spec.limit:
            rest = rows[spec.limit :]
            text.append(tuple(sum(r[j] for r in rest) if f.aggregate else None
                              for j, f in enumerate(spec.fields)))
        out[(wid + 1) * spec.time] = text
    return out


def _text(f, v):
    if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(v)
    if f.kind == 1:
        return str(ipaddress.IPv4Address(v))
    if f.kind == 4:
        return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))
    return v


def run(batches: list[FlowBatch], spec: WindowSpec) -> dict[int, list[tuple]]:
    w = FixedWindow(spec, "t")
    tables = []
    for b in batches:
        wid = b["recv_time_ns"] // np.uint64(spec.time * NS)
        tables += w.add(b, np.arange(b.n), wid)
    tables += w.close()
    return {t.time: t.rows for t in tables}


SPECS = [
    (["octets desc", "src host"], 0),
    (["packets desc", "octets desc", "src host"], 5),
    (["src host", "dst port", "bits desc", "flows"], 7),
    (["proto", "octets", "packets"], 2),
    (["packets", "octets"], 0),
    (["dst host desc", "src port asc", "octets desc"], 20),
    (["flows desc", "src mac", "src ifidx"], 3),
    (["octets desc", "dst port"], 5),  # exactly 5 distinct ports: zero remainder row
]


@pytest.mark.parametrize(("fields", "limit"), SPECS)
@pytest.mark.parametrize("seed", [1, 2])
def test_aggregation_matches_plain_python(fields: list[str], limit: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = WindowSpec("w", tuple(parse_field(f) for f in fields), time=5, limit=limit)
    t0 = 1_700_000_003 * NS  # not aligned: the first batch straddles a window boundary
    batches = [make_batch(rng, int(rng.integers(1, 3000)), t0 + k * 2 * NS, span_s=3) for k in range(6)]
    got = run(batches, spec)
    want = oracle(batches, spec)
    assert sorted(got) == sorted(want)
    for t in want:
        assert got[t] == want[t], t


def test_remainder_when_rows_equal_limit_is_zero_row() -> None:
    rng = np.random.default_rng(3)
    b = make_batch(rng, 500, 1_700_000_000 * NS)
    spec = WindowSpec("w", (parse_field("octets desc"), parse_field("dst port")), time=30, limit=5)
    (rows,) = run([b], spec).values()
    assert len(rows) == 6 and rows[-1] == (0, None)


def test_windows_aligned_and_empty_windows_produce_nothing() -> None:
    rng = np.random.default_rng(4)
    spec = WindowSpec("w", (parse_field("flows"),), time=10)
    b1 = make_batch(rng, 100, 1_700_000_001 * NS, span_s=0.5)
    b2 = make_batch(rng, 50, 1_700_000_061 * NS, span_s=0.5)  # windows in between are empty
    got = run([b1, b2], spec)
    assert got == {1_700_000_010: [(100,)], 1_700_000_070: [(50,)]}


def test_extended_window_is_off_until_switched_on() -> None:
    rng = np.random.default_rng(5)
    spec = WindowSpec("w", (parse_field("flows"),), time=10, extended=True)
    w = FixedWindow(spec, "t")
    b = make_batch(rng, 10, 1_700_000_001 * NS, span_s=0.1)
    wid = b["recv_time_ns"] // np.uint64(10 * NS)
    assert w.add(b, np.arange(b.n), wid) == [] and w.close() == []
    w.set_active(True)
    w.add(b, np.arange(b.n), wid)
    assert [t.rows for t in w.close()] == [[(10,)]]


def test_tick_closes_by_clock() -> None:
    rng = np.random.default_rng(6)
    w = FixedWindow(WindowSpec("w", (parse_field("flows"),), time=10), "t")
    b = make_batch(rng, 10, 1_700_000_001 * NS, span_s=0.1)
    w.add(b, np.arange(b.n), b["recv_time_ns"] // np.uint64(10 * NS))
    assert w.tick(1_700_000_009 * NS) == []
    (t,) = w.tick(1_700_000_010 * NS)
    assert t.time == 1_700_000_010 and t.rows == [(10,)]


@pytest.mark.parametrize(
    ("text", "column", "sqltype"),
    [("src host", "src_host", "INET"), ("dst port desc", "dst_port", "BIGINT"),
     ("octets desc", "octets", "BIGINT"), ("src mac", "src_mac", "MACADDR"),
     ("host6", "host6", "INET"), ("dev-ip", "dev_ip", "INET"), ("l4_dst_port", "l4_dst_port", "BIGINT"),
     ("bits", "bits", "BIGINT"), ("proto asc", "proto", "BIGINT")],
)
def test_field_names(text: str, column: str, sqltype: str) -> None:
    f = parse_field(text)
    assert (f.column, f.sqltype) == (column, sqltype)


@pytest.mark.parametrize(
    ("text", "words"),
    [("src hots", "unknown field"), ("asn(src port)", "takes one address"), ("src proto", "no src/dst"),
     ("dst octets", "no direction"), ("desc", "name must come"), ("", "non-empty"),
     ("country(octets)", "takes one address"), ("asd(src host, dst host)", "takes one address")],
)
def test_bad_fields(text: str, words: str) -> None:
    with pytest.raises(FieldError, match=words):
        parse_field(text)


def test_mac_keys_read_the_element_each_exporter_sends() -> None:
    """``dst mac``/``src mac`` windows over a probe-like exporter (IN_DST_MAC, 80) and a
    router-like one (OUT_DST_MAC 57, OUT_SRC_MAC 81): every flow lands under its own MAC,
    none under 00:00:00:00:00:00 — recounted in plain Python from the values encoded."""
    from appliance.collector.decode import Decoder
    from appliance.collector.receive import PacketBatch
    from appliance.netflow import V9Encoder, template_for

    t0 = 1_700_000_000 * NS
    rng = np.random.default_rng(7)
    macs = [0x02AABBCC0001 + k for k in range(5)]
    sent: list[tuple[int, int, int]] = []  # (src mac, dst mac, packets)
    payloads: list[tuple[str, bytes]] = []
    for exporter, src_el, dst_el in (("192.0.2.1", "src_mac", "dst_mac"),
                                     ("192.0.2.2", "post_src_mac", "post_dst_mac")):
        n = 40
        src = rng.choice(macs, n).astype(np.uint64)
        dst = rng.choice(macs, n).astype(np.uint64)
        pkts = rng.integers(1, 1000, n).astype(np.uint64)
        enc = V9Encoder([template_for(["src_addr", "dst_addr", src_el, dst_el, "packets", "bytes"], 256)],
                        clock=lambda: t0, boot_ns=t0 - NS)
        cols = {"src_addr": np.full(n, 0x0A000001, np.uint64), "dst_addr": np.full(n, 0x0A000002, np.uint64),
                src_el: src, dst_el: dst, "packets": pkts, "bytes": pkts * np.uint64(100)}
        payloads += [(exporter, p) for p in enc.encode(cols, 256)]
        sent += [(int(s), int(d), int(p)) for s, d, p in zip(src, dst, pkts)]
    dec = Decoder()
    batches = []
    for exporter, payload in payloads:
        batches += [b.copy() for b in dec.decode(PacketBatch.from_payloads([payload], exporter=exporter, recv_ns=t0))]
    batch = FlowBatch.concat(batches)
    assert batch.n == len(sent)

    def mac(v: int) -> str:
        return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))

    for field, pick in (("dst mac", 1), ("src mac", 0)):
        spec = WindowSpec("m", (parse_field(field), parse_field("packets desc")), time=60)
        win = FixedWindow(spec, "mo_m")
        assert win.add(batch, np.arange(batch.n, dtype=np.int64), batch["recv_time_ns"] // np.uint64(60 * NS)) == []
        (table,) = win.close()
        want: dict[str, int] = defaultdict(int)
        for row in sent:
            want[mac(row[pick])] += row[2]
        assert {r[0]: r[1] for r in table.rows} == dict(want)
        assert "00:00:00:00:00:00" not in {r[0] for r in table.rows}
