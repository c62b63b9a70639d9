"""The filter language compiled to DuckDB SQL selects exactly the flows the numba filter selects.

Both backends share the parser; the flows go to DuckDB through the archive's own conversion
(`flows_table`), so addresses, narrowed integer types, absent columns (constants) and NULL
columns of older files (COALESCE) are all exercised. Random flows and random filters
(hypothesis), then the corpus captures with a fixed set of filters.
"""

from __future__ import annotations

import csv
import ipaddress
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.collector.decode.decoder import Decoder
from appliance.collector.export.archive import flows_table
from appliance.collector.fields import functions as fn
from appliance.collector.filter import FilterError, IPLists, compile_filter, filter_to_sql
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.receive.pcapfile import read_pcap
from appliance.netflow.registry import REGISTRY

LISTS = IPLists.from_texts({
    "mynets": "10.0.0.0/8\n192.0.2.0/24\n2001:db8::/32\n",
    "hosts": "198.51.100.7\n198.51.100.9\n" + "".join(f"203.0.113.{i}\n" for i in range(0, 200, 3)),
    "six": "2001:db8:1::/48\n::ffff:0:0/96\n",
})

V4 = ["10.1.2.3", "10.255.0.1", "192.0.2.1", "192.0.2.200", "198.51.100.7", "203.0.113.3", "8.8.8.8", "0.0.0.0",
      "255.255.255.255"]
V6 = ["2001:db8::1", "2001:db8:1::5", "2001:db9::1", "::", "::ffff:10.1.2.3", "fe80::1", "ffff::1"]
PORTS = [0, 22, 53, 80, 443, 1023, 1024, 8080, 40000, 65535]
NUMS = [0, 1, 2, 6, 17, 100, 255, 1500, 64500, 1 << 32, (1 << 64) - 1]

v4 = st.sampled_from(V4) | st.integers(0, (1 << 32) - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
v6 = st.sampled_from(V6)
port = st.sampled_from(PORTS) | st.integers(0, 65535)
num = st.sampled_from(NUMS) | st.integers(0, 1 << 20)
num32 = st.sampled_from([n for n in NUMS if n < 1 << 32]) | st.integers(0, (1 << 32) - 1)  # as, interfaces


@st.composite
def rules(draw: st.DrawFn) -> str:
    d = draw(st.sampled_from(["", "src ", "dst "]))
    p1, p2 = sorted((draw(port), draw(port)))
    n1, n2 = sorted((draw(num), draw(num)))
    i1, i2 = sorted((draw(num32), draw(num32)))
    choices = [
        f"{d}host {draw(v4)}",
        f"{d}net {draw(v4)}/{draw(st.integers(0, 32))}",
        f"{d}net {draw(v6)}/{draw(st.integers(0, 128))}",
        f"{d}host6 {draw(v6)}",
        f"{d}net {draw(st.sampled_from(['mynets', 'hosts', 'six']))}",
        f"{d}port {p1}",
        f"{d}port {p1}-{p2}",
        f"{d}port {draw(st.sampled_from(['https', 'ssh', 'domain', 'http']))} or {p2}",
        f"proto {draw(st.sampled_from(['tcp', 'udp', 'icmp', '47']))}",
        draw(st.sampled_from(["tcp", "udp", "icmp", "gre"])),
        f"tcp-flags {draw(st.sampled_from(['syn', 'syn+ack', 'fin', 'rst+ack', '2', '0x12', '16-31']))}",
        f"{d}as {draw(num32)}",
        f"in_if {i1}-{i2}",
        f"tos {draw(st.integers(0, 255))}",
        f"bytes {n1}-{n2}",
        f"div(octets, packets) {n1}-{n2}",
        f"div_r(bytes, packets, 10) {draw(num)}",
        f"div_l(bytes, packets, 10) {draw(st.sampled_from([0, 1, 10, 100, 1000, 10**19]))}",
        f"min(src port, dst port) {p1}-{p2}",
        f"tfstr(tcp-flags) '{fn.tfstr(draw(st.integers(0, 255)))}'",
        f"portstr(dst port) '{fn.portstr(draw(port))}'",
        f"ppstr(src port, dst port) '{fn.ppstr(draw(port), draw(port))}'",
        f"{d}vlan {draw(st.integers(0, 4095))}",
        f"dev-ip {draw(v4)}",
    ]
    return draw(st.sampled_from(choices))


def filters() -> st.SearchStrategy[str]:
    return st.recursive(
        rules(),
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
            inner.map(lambda s: f"not ({s})"),
        ),
        max_leaves=5,
    )


OPTIONAL = ["src_addr6", "dst_addr6", "src_vlan", "dst_vlan", "tos", "src_as", "dst_as"]


@st.composite
def batches(draw: st.DrawFn) -> FlowBatch:
    n = draw(st.integers(1, 40))
    present = ["src_addr", "dst_addr", "src_port", "dst_port", "proto", "tcp_flags", "bytes", "packets", "in_if",
               "out_if", "dev_ip"] + [c for c in OPTIONAL if draw(st.booleans())]
    cols: dict[int, np.ndarray] = {}
    cols6: dict[int, np.ndarray] = {}
    for name in present:
        f = REGISTRY[name]
        if name.endswith("addr6"):
            vals = [int(ipaddress.IPv6Address(draw(v6))) for _ in range(n)]
            cols6[f.column6] = np.array([[v >> 64, v & ((1 << 64) - 1)] for v in vals], dtype=np.uint64)
            continue
        if name in ("src_addr", "dst_addr", "dev_ip"):
            vals = [int(ipaddress.IPv4Address(draw(v4))) for _ in range(n)]
        elif name.endswith("port"):
            vals = [draw(port) for _ in range(n)]
        elif name == "proto":
            vals = [draw(st.sampled_from([1, 6, 17, 47, 58])) for _ in range(n)]
        elif name in ("tcp_flags", "tos"):
            vals = [draw(st.integers(0, 255)) for _ in range(n)]
        elif name.endswith("vlan"):
            vals = [draw(st.integers(0, 4095)) for _ in range(n)]
        else:
            vals = [draw(num) for _ in range(n)]
        cols[f.column] = np.array(vals, dtype=np.uint64)
    cols[REGISTRY["recv_time_ns"].column] = np.full(n, 1_700_000_000 * 10**9, dtype=np.uint64)
    return FlowBatch(n, cols, cols6)


def sql_rows(table: pa.Table, text: str, lists: IPLists = LISTS, drop: tuple[str, ...] = (),
             bare: bool = False) -> list[int]:
    """Row numbers DuckDB selects; `drop`: columns turned into NULL (an older file's schema);
    `bare`: the other columns are declared NULL-free (compared without COALESCE)."""
    t = table.append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    for name in drop:
        t = t.set_column(t.schema.get_field_index(name), pa.field(name, t.schema.field(name).type, nullable=True),
                         pa.nulls(t.num_rows, t.schema.field(name).type))
    not_null = set(t.column_names) - set(drop) if bare else ()
    where = filter_to_sql(text, lists, columns=set(t.column_names), not_null=not_null)
    con = duckdb.connect()
    con.register("flows", t)
    return [r[0] for r in con.execute(f"SELECT _row FROM flows WHERE {where} ORDER BY _row").fetchall()]


def numba_rows(batch: FlowBatch, text: str, lists: IPLists = LISTS) -> list[int]:
    return np.flatnonzero(compile_filter(text, lists).evaluate(batch)).tolist()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches(), text=filters())
def test_sql_and_numba_select_the_same_random_flows(batch: FlowBatch, text: str) -> None:
    table = flows_table(batch, lambda i: "192.0.2.9")
    assert sql_rows(table, text) == numba_rows(batch, text), filter_to_sql(text, LISTS)


@settings(max_examples=100, deadline=None)
@given(batch=batches(), text=filters(), data=st.data())
def test_null_columns_of_older_files_compare_as_absent_fields(batch: FlowBatch, text: str, data: st.DataObject) -> None:
    table = flows_table(batch, lambda i: "192.0.2.9")
    drop = tuple(data.draw(st.lists(st.sampled_from(["src_addr", "dst_port", "tcp_flags", "bytes"]), unique=True)))
    expected = numba_rows(FlowBatch(batch.n, {c: (np.zeros(batch.n, np.uint64) if REGISTRY.fields[c].name in drop
                                                   else a) for c, a in batch._cols.items()}, batch._cols6), text)
    assert sql_rows(table, text, drop=drop) == expected
    assert sql_rows(table, text, drop=drop, bare=True) == expected


CORPUS_FILTERS = [
    "proto tcp", "not proto tcp", "udp and dst port 53 or 123", "net 10.0.0.0/8", "net mynets",
    "src host 192.168.0.0/16 or dst host6 2001:db8::/32", "net6 ::/0 and not net6 ::/128",
    "tcp-flags syn", "tcp-flags syn+ack and port https", "div(octets, packets) 0-100",
    "min(src port, dst port) 0-1023", "tfstr(tcp-flags) 'ACK+PSH'", "portstr(dst port) 'https (443)'",
    "in_if 1-100 or out_if 0", "src as 0", "bytes 1000-100000000", "vlan 0", "dev-ip 0.0.0.0/1",
    "host6 2001:db8::/32 or net six", "dir ingress", "not (port 80 or 443) and (proto 6 or 17)",
]


def test_sql_and_numba_select_the_same_corpus_flows(corpus_dir: Path) -> None:
    with open(corpus_dir / "MANIFEST.tsv", newline="") as fh:
        files = [corpus_dir / r["file"] for r in csv.DictReader(fh, delimiter="\t")
                 if r["canonical"] == "yes" and r["file"].startswith("netflow/")]
    decoder = Decoder()
    parts: list[FlowBatch] = []
    for path in files:
        for packets in read_pcap(path):
            for batch in decoder.decode(packets):
                parts.append(batch.take(batch["record_kind"] != 2).copy())
    batch = FlowBatch.concat(parts)
    assert batch.n > 3000
    table = flows_table(batch, decoder.exporter_address)
    selected = 0
    for text in CORPUS_FILTERS:
        want = numba_rows(batch, text)
        assert sql_rows(table, text) == want, text
        selected += 0 < len(want) < batch.n
    assert selected >= 12  # the filters do select something, and not everything


def test_mfreq_is_refused_with_a_caret() -> None:
    with pytest.raises(FilterError) as err:
        filter_to_sql("proto tcp and mfreq(src port, dst port) 80", LISTS)
    assert "mfreq() depends on the order" in str(err.value) and "^" in str(err.value)
