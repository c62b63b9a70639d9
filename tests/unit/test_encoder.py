"""Encoders against a plain-Python reader written from the RFCs (struct, no numpy tricks).

The reader learns templates from the packets themselves, so template encoding is checked
along with the records. tshark is the second oracle (tests/integration/test_encoder_tshark.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.netflow import (
    REGISTRY,
    EncodeError,
    FieldType,
    IPFIXEncoder,
    Template,
    TemplateField,
    V5Encoder,
    V9Encoder,
    ValueOverflowError,
    encode_ipfix,
    encode_v5,
    encode_v9,
    interface_template,
    options_template_for,
    sampler_template,
    statistics_template,
    template_for,
)
from appliance.netflow.header import (
    IPFIX_HEADER,
    V5_FIELDS,
    V5_HEADER,
    V5_RECORD,
    V9_HEADER,
)

BOOT_NS = 1_699_999_000_000_000_000
T0_NS = 1_700_000_000_250_000_000
V9_SCOPES = {1: "scope_system", 2: "scope_interface", 3: "scope_line_card", 4: "scope_cache"}


class FakeClock:
    def __init__(self, ns: int = T0_NS) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


# --- the reader -------------------------------------------------------------------------


@dataclass
class Packet:
    header: dict[str, int]
    template_ids: list[int] = field(default_factory=list)  # templates announced here
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Reader:
    """Decodes v5/v9/IPFIX payloads one by one, keeping templates between packets."""

    templates: dict[int, list[tuple[str, int, FieldType]]] = field(default_factory=dict)

    def read(self, data: bytes) -> Packet:
        version = struct.unpack_from(">H", data)[0]
        if version == 5:
            return self._v5(data)
        hdr_dtype = V9_HEADER if version == 9 else IPFIX_HEADER
        fmt = ">HHIIII" if version == 9 else ">HHIII"
        header = dict(zip(hdr_dtype.names, struct.unpack_from(fmt, data), strict=True))
        pkt = Packet(header)
        pos = hdr_dtype.itemsize
        if version == 10:
            assert header["length"] == len(data)
        while pos < len(data):
            set_id, length = struct.unpack_from(">HH", data, pos)
            assert length >= 4 and pos + length <= len(data)
            body = data[pos + 4 : pos + length]
            if set_id in (0, 2):
                self._templates(body, pkt, version, options=False)
            elif set_id in (1, 3):
                self._templates(body, pkt, version, options=True)
            else:
                self._data(set_id, body, pkt, version)
            pos += length
        assert pos == len(data)
        return pkt

    def _v5(self, data: bytes) -> Packet:
        header = dict(zip(V5_HEADER.names, struct.unpack_from(">HHIIIIBBH", data), strict=True))
        assert len(data) == 24 + 48 * header["count"]
        pkt = Packet(header)
        for i in range(header["count"]):
            values = struct.unpack_from(">IIIHHIIIIHHBBBBHHBBH", data, 24 + 48 * i)
            rec = dict(zip(V5_RECORD.names, values, strict=True))
            assert rec.pop("pad1") == 0 and rec.pop("pad2") == 0
            pkt.records.append((0, rec))
        return pkt

    def _templates(self, body: bytes, pkt: Packet, version: int, options: bool) -> None:
        pos = 0
        while len(body) - pos >= 4:
            if version == 9 and options:
                tid, scope_len, opt_len = struct.unpack_from(">HHH", body, pos)
                pos += 6
                n, n_scope = (scope_len + opt_len) // 4, scope_len // 4
            elif options:
                tid, n, n_scope = struct.unpack_from(">HHH", body, pos)
                pos += 6
            else:
                tid, n = struct.unpack_from(">HH", body, pos)
                n_scope = 0
                pos += 4
            fields = []
            for i in range(n):
                eid, length = struct.unpack_from(">HH", body, pos)
                pos += 4
                pen = 0
                if version == 10 and eid & 0x8000:
                    eid &= 0x7FFF
                    pen = struct.unpack_from(">I", body, pos)[0]
                    pos += 4
                if version == 9 and i < n_scope:
                    fields.append((V9_SCOPES[eid], length, FieldType.UNSIGNED))
                else:
                    f = REGISTRY.lookup(pen, eid)
                    assert f is not None, (pen, eid)
                    fields.append((f.name, length, f.ftype))
            self.templates[tid] = fields
            pkt.template_ids.append(tid)
            if version == 9 and options:
                break  # one options template per FlowSet, then padding

    def _data(self, set_id: int, body: bytes, pkt: Packet, version: int) -> None:
        fields = self.templates[set_id]
        pos = 0
        fixed = all(length != 0xFFFF for _, length, _ in fields)
        min_len = sum(length for _, length, _ in fields) if fixed else 1
        while len(body) - pos >= min_len:  # v9 padding is shorter than a record
            rec = {}
            for name, length, ftype in fields:
                if length == 0xFFFF:
                    length = body[pos]
                    pos += 1
                    if length == 255:
                        length = struct.unpack_from(">H", body, pos)[0]
                        pos += 2
                raw = body[pos : pos + length]
                pos += length
                if ftype == FieldType.IPV6:
                    rec[name] = bytes(raw)
                elif ftype in (FieldType.STRING, FieldType.BYTES):
                    rec[name] = bytes(raw).rstrip(b"\0").decode()
                else:
                    rec[name] = int.from_bytes(raw, "big")
            pkt.records.append((set_id, rec))
        assert body[pos:] == bytes(len(body) - pos), "padding must be zeros"


def read_all(payloads: list[bytes], reader: Reader | None = None) -> list[Packet]:
    reader = reader or Reader()
    return [reader.read(p) for p in payloads]


def records_of(packets: list[Packet], template_id: int) -> list[dict[str, Any]]:
    return [r for p in packets for tid, r in p.records if tid == template_id]


# --- columns ----------------------------------------------------------------------------

V4_FIELDS = [
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
    "tos",
    "tcp_flags",
    "bytes",
    "packets",
    "in_if",
    "out_if",
    "first_switched",
    "last_switched",
    "src_mac",
    "dst_mac",
    "dot1q_vlan",
    "flow_end_reason",
    "min_ttl",
    "max_ttl",
    "icmp_type",
    "mpls_label_1",
    "sampler_id",
    "next_hop",
    "src_as",
    "dst_as",
    "src_mask",
    "dst_mask",
]


def flow_columns(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Random but valid columns for every field of V4_FIELDS and their IPv6 twins."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for name in V4_FIELDS + [
        "src_addr6",
        "dst_addr6",
        "next_hop6",
        "src_mask6",
        "dst_mask6",
        "icmp_type6",
    ]:
        f = REGISTRY[name]
        if f.ftype == FieldType.IPV6:
            cols[name] = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        else:
            cols[name] = rng.integers(0, 1 << (8 * f.size), n, dtype=np.uint64, endpoint=False)
    start = T0_NS // 1_000_000 - rng.integers(1000, 100_000, n)
    cols["flow_start_ms"] = start
    cols["flow_end_ms"] = start + rng.integers(0, 1000, n)
    del cols["first_switched"], cols["last_switched"]  # derived from the epoch times
    return cols


def expected(cols: dict[str, np.ndarray], name: str, i: int) -> Any:
    v = cols[name][i]
    return bytes(v) if np.ndim(v) else int(v)


def uptime(epoch_ms: int) -> int:
    return (epoch_ms - BOOT_NS // 1_000_000) & 0xFFFFFFFF


# --- v5 ---------------------------------------------------------------------------------


def test_v5_every_field_and_header() -> None:
    cols = flow_columns(70)
    for name in ("bytes", "packets"):
        cols[name] = cols[name] >> np.uint64(32)
    for name in ("in_if", "out_if", "src_as", "dst_as"):
        cols[name] = cols[name] & np.uint64(0xFFFF)
    cols["tcp_flags"] &= np.uint64(0xFF)
    clock = FakeClock()
    enc = V5Encoder(
        engine_type=3,
        engine_id=7,
        sampling_mode=1,
        sampling_interval=100,
        clock=clock,
        boot_ns=BOOT_NS,
    )
    packets = read_all(enc.encode(cols))
    assert [p.header["count"] for p in packets] == [28, 28, 14]
    assert [p.header["flow_sequence"] for p in packets] == [0, 28, 56]
    for p in packets:
        assert p.header["sys_uptime"] == (T0_NS - BOOT_NS) // 1_000_000
        assert p.header["unix_secs"] == T0_NS // 10**9
        assert p.header["unix_nsecs"] == 250_000_000
        assert (p.header["engine_type"], p.header["engine_id"]) == (3, 7)
        assert p.header["sampling"] == 1 << 14 | 100
    recs = records_of(packets, 0)
    for i, rec in enumerate(recs):
        for name in V5_FIELDS:
            if name == "first_switched":
                assert rec[name] == uptime(int(cols["flow_start_ms"][i]))
            elif name == "last_switched":
                assert rec[name] == uptime(int(cols["flow_end_ms"][i]))
            else:
                assert rec[name] == expected(cols, name, i), name
    more = read_all(enc.encode(cols))
    assert more[0].header["flow_sequence"] == 70


def test_v5_missing_columns_are_zero_and_mtu() -> None:
    enc = V5Encoder(mtu=9000)
    packets = read_all(enc.encode({"src_addr": np.arange(100, dtype=np.uint32)}))
    assert [p.header["count"] for p in packets] == [30, 30, 30, 10]
    assert records_of(packets, 0)[5] == {**dict.fromkeys(V5_FIELDS, 0), "src_addr": 5}
    small = V5Encoder(mtu=500).encode({"src_addr": np.arange(100, dtype=np.uint32)})
    assert max(map(len, small)) <= 500 and len(small) == 12


def test_v5_counter_overflow_raises_or_clamps() -> None:
    cols = {"bytes": np.array([1, 2**32], dtype=np.uint64), "packets": 1}
    with pytest.raises(ValueOverflowError, match="bytes"):
        V5Encoder().encode(cols)
    rec = records_of(read_all(V5Encoder(overflow="clamp").encode(cols)), 0)
    assert [r["bytes"] for r in rec] == [1, 2**32 - 1]


def test_v5_bad_sampling() -> None:
    with pytest.raises(EncodeError):
        V5Encoder(sampling_interval=1 << 14)


# --- v9 and IPFIX -----------------------------------------------------------------------


def _encoder(version: int, templates: list[Template], **kw: Any) -> V9Encoder | IPFIXEncoder:
    kw.setdefault("clock", FakeClock())
    if version == 9:
        return V9Encoder(templates, source_id=42, boot_ns=BOOT_NS, **kw)
    return IPFIXEncoder(templates, observation_domain=42, boot_ns=BOOT_NS, **kw)


def _check_records(
    recs: list[dict[str, Any]], cols: dict[str, np.ndarray], names: list[str]
) -> None:
    assert len(recs) == len(cols["bytes"])
    for i, rec in enumerate(recs):
        assert list(rec) == names
        for name in names:
            if name == "first_switched":
                assert rec[name] == uptime(int(cols["flow_start_ms"][i]))
            elif name == "last_switched":
                assert rec[name] == uptime(int(cols["flow_end_ms"][i]))
            else:
                assert rec[name] == expected(cols, name, i), name


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("ipv6", [False, True])
def test_data_records_round_trip(version: int, ipv6: bool) -> None:
    names = V4_FIELDS if version == 9 else V4_FIELDS[:11] + ["flow_start_ms", "flow_end_ms"]
    tpl = template_for(names, 300, ipv6=ipv6)
    cols = flow_columns(200, seed=version)
    enc = _encoder(version, [tpl], template_refresh_packets=0, template_refresh_seconds=0)
    payloads = enc.encode(cols)
    assert all(len(p) <= 1400 for p in payloads) and len(payloads) > 3
    packets = read_all(payloads)
    _check_records(records_of(packets, 300), cols, [f.name for f in tpl.fields])
    assert packets[0].template_ids == [300] and all(not p.template_ids for p in packets[1:])
    n_recs = [len(p.records) for p in packets]
    if version == 9:
        assert [p.header["sequence"] for p in packets] == list(range(len(packets)))
        assert [p.header["count"] for p in packets] == [n_recs[0] + 1, *n_recs[1:]]
        assert all(p.header["source_id"] == 42 for p in packets)
        assert all(len(p) % 4 == 0 for p in payloads)
    else:
        assert [p.header["sequence"] for p in packets] == list(np.cumsum([0, *n_recs[:-1]]))
        assert all(p.header["observation_domain"] == 42 for p in packets)
        assert all(p.header["export_time"] == T0_NS // 10**9 for p in packets)


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("mtu", [100, 576, 1400, 8960])
def test_mtu_is_never_exceeded(version: int, mtu: int) -> None:
    tpl = template_for(["src_addr", "dst_addr", "bytes", "packets"], 256)
    enc = _encoder(
        version, [tpl, sampler_template(257, version)], mtu=mtu, template_refresh_packets=2
    )
    payloads = enc.encode(flow_columns(1000))
    assert max(map(len, payloads)) <= mtu
    assert len(records_of(read_all(payloads), 256)) == 1000
    # full packets are really full: no room left for one more 24-byte record
    assert min(map(len, payloads[:-1])) > mtu - 24 - 4 - 3


@pytest.mark.parametrize("version", [9, 10])
def test_sequence_numbers_continue_across_calls(version: int) -> None:
    tpl = template_for(["src_addr", "bytes"], 256)
    enc = _encoder(version, [tpl, statistics_template(257, version)])
    reader = Reader()
    seqs, counts = [], []
    for n in (3, 500, 1, 77):
        for p in read_all(enc.encode(flow_columns(n)), reader):
            seqs.append(p.header["sequence"])
            counts.append(len(p.records))
    for p in read_all(enc.encode_statistics(257), reader):
        seqs.append(p.header["sequence"])
        counts.append(len(p.records))
    if version == 9:
        assert seqs == list(range(len(seqs)))
    else:
        assert seqs == list(np.cumsum([0, *counts[:-1]]))


@pytest.mark.parametrize("version", [9, 10])
def test_template_refresh_by_packets_and_time(version: int) -> None:
    clock = FakeClock()
    tpl = template_for(["src_addr", "bytes"], 256)
    enc = _encoder(
        version,
        [tpl, sampler_template(257, version)],
        clock=clock,
        template_refresh_packets=3,
        template_refresh_seconds=30,
    )
    reader = Reader()
    per_call = 10
    carried = []
    for _ in range(7):
        carried += [p.template_ids for p in read_all(enc.encode(flow_columns(per_call)), reader)]
    assert carried == [[256, 257] if i % 3 == 0 else [] for i in range(7)]
    clock.advance(29.9)
    assert [p.template_ids for p in read_all(enc.encode(flow_columns(1)), reader)] == [[]]
    clock.advance(0.1)  # 30 s since the templates went out in packet 6
    assert [p.template_ids for p in read_all(enc.encode(flow_columns(1)), reader)] == [[256, 257]]
    assert enc.encode_templates() and not enc.templates_due()


@pytest.mark.parametrize("version", [9, 10])
def test_options_sampler_statistics_interfaces(version: int) -> None:
    tpl = template_for(["src_addr", "bytes"], 256)
    templates = [
        tpl,
        sampler_template(257, version),
        statistics_template(258, version),
        interface_template(259, version),
    ]
    enc = _encoder(version, templates)
    reader = Reader()
    first = read_all(enc.encode(flow_columns(300)), reader)
    assert first[0].template_ids == [256, 257, 258, 259]
    if version == 9:
        sampler = {
            "scope_system": 1,
            "sampler_id": 3,
            "sampler_mode": 2,
            "sampler_random_interval": 1000,
            "sampling_interval": 1000,
            "sampling_algorithm": 2,
        }
        scope = {"scope_interface": np.array([1, 2, 3])}
    else:
        sampler = {
            "selector_id": 3,
            "selector_algorithm": 3,
            "sampling_packet_interval": 1,
            "sampling_packet_space": 999,
        }
        scope = {"in_if": np.array([1, 2, 3])}
    assert records_of(read_all(enc.encode(sampler, 257), reader), 257) == [sampler]
    sent = (enc.flows_sent, enc.messages_sent, enc.octets_sent)
    stats = records_of(
        read_all(
            enc.encode_statistics(258, ignored_packets=5, ignored_bytes=6, not_sent_flows=7), reader
        ),
        258,
    )
    domain = {"scope_system": 42} if version == 9 else {"observation_domain_id": 42}
    assert stats == [
        {
            **domain,
            "exported_flows": sent[0],
            "exported_packets": sent[1],
            "exported_bytes": sent[2],
            "ignored_packets_total": 5,
            "ignored_bytes_total": 6,
            "not_sent_flows_total": 7,
        }
    ]
    names = ["eth0", "ens1f0np0-a-rather-long-name", "x" * (300 if version == 10 else 32)]
    descs = ["uplink", "", "mirror port"]
    recs = records_of(
        read_all(enc.encode({**scope, "if_name": names, "if_desc": descs}, 259), reader), 259
    )
    assert [(r["if_name"], r["if_desc"]) for r in recs] == list(zip(names, descs, strict=True))


def test_statistics_count_what_was_sent() -> None:
    enc = _encoder(10, [template_for(["src_addr"], 256), statistics_template(257, 10)])
    payloads = enc.encode(flow_columns(1000)) + enc.encode(flow_columns(5))
    assert enc.flows_sent == 1005
    assert enc.messages_sent == len(payloads)
    assert enc.octets_sent == sum(map(len, payloads))


def test_ipfix_enterprise_field() -> None:
    tpl = template_for(["bytes", "rev_bytes"], 256)
    assert tpl.fields[1].pen == 29305
    enc = _encoder(10, [tpl])
    recs = records_of(read_all(enc.encode({"bytes": [1, 2], "rev_bytes": [3, 4]})), 256)
    assert recs == [{"bytes": 1, "rev_bytes": 3}, {"bytes": 2, "rev_bytes": 4}]
    with pytest.raises(EncodeError, match="IPFIX"):
        _encoder(9, [tpl])


def test_times_are_derived_both_ways() -> None:
    boot_ms = BOOT_NS // 1_000_000
    v9 = _encoder(9, [template_for(["first_switched", "last_switched"], 256)])
    recs = records_of(
        read_all(v9.encode({"flow_start_ms": [boot_ms + 5], "flow_end_ms": boot_ms + 9})), 256
    )
    assert recs == [{"first_switched": 5, "last_switched": 9}]
    ipfix = _encoder(10, [template_for(["flow_start_ms", "flow_end_sec"], 256)])
    recs = records_of(read_all(ipfix.encode({"first_switched": [5], "last_switched": [2009]})), 256)
    assert recs == [{"flow_start_ms": boot_ms + 5, "flow_end_sec": (boot_ms + 2009) // 1000}]


def test_scalars_broadcast_and_lengths_override() -> None:
    tpl = template_for(["src_addr", ("bytes", 4), "proto"], 256)
    assert tpl.record_length == 9
    enc = _encoder(10, [tpl])
    recs = records_of(read_all(enc.encode({"src_addr": [1, 2, 3], "bytes": 10, "proto": 6})), 256)
    assert recs == [{"src_addr": a, "bytes": 10, "proto": 6} for a in (1, 2, 3)]
    with pytest.raises(ValueOverflowError, match="4 bytes"):
        enc.encode({"src_addr": 1, "bytes": [2**32], "proto": 6})


def test_signed_float_and_bool_fields() -> None:
    tpl = Template(
        256,
        (
            TemplateField("mib_object_value_integer", 434, 4, 0, FieldType.SIGNED),
            TemplateField("sampling_probability", 311, 8, 0, FieldType.FLOAT),
            TemplateField("dot1q_dei", 388, 1, 0, FieldType.BOOL),
        ),
    )
    payload = _encoder(10, [tpl]).encode(
        {
            "mib_object_value_integer": [-2],
            "sampling_probability": [0.25],
            "dot1q_dei": np.array([False]),
        }
    )[0]
    assert payload[-13:] == struct.pack(">id", -2, 0.25) + b"\x02"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: template_for(["no_such_field"], 256), "unknown field"),
        (lambda: template_for(["src_addr"], 255), "256..65535"),
        (lambda: template_for(["dev_ip"], 256), "virtual"),
        (lambda: V9Encoder([template_for(["if_name"], 256)]), "IPFIX"),
        (lambda: V9Encoder([options_template_for(["selector_id"], ["sampler_id"], 256)]), "scope"),
        (lambda: IPFIXEncoder([sampler_template(256, 9)]), "v9 only"),
        (lambda: IPFIXEncoder([template_for(["src_addr"] * 200, 256)], mtu=512), "MTU"),
        (
            lambda: IPFIXEncoder([template_for(["src_addr"], 256)]).encode({"dst_addr": 1}),
            "src_addr",
        ),
        (
            lambda: IPFIXEncoder([template_for(["src_addr"], 256)]).encode({"src_addr": 1}, 999),
            "999",
        ),
        (
            lambda: IPFIXEncoder([template_for(["src_addr", "proto"], 256)]).encode(
                {"src_addr": [1, 2], "proto": [1, 2, 3]}
            ),
            "different lengths",
        ),
    ],
)
def test_errors_say_what_to_do(build: Any, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        build()


def test_one_shot_functions() -> None:
    cols = {"src_addr": np.arange(3, dtype=np.uint32), "bytes": np.array([1, 2, 3]), "proto": 6}
    for encode in (encode_v9, encode_ipfix):
        recs = records_of(read_all(encode(cols, mtu=600)), 256)
        assert recs == [{"src_addr": i, "bytes": i + 1, "proto": 6} for i in range(3)]
    assert records_of(read_all(encode_ipfix(cols, ["bytes"])), 256) == [
        {"bytes": 1},
        {"bytes": 2},
        {"bytes": 3},
    ]
    assert [r["bytes"] for r in records_of(read_all(encode_v5(cols, engine_id=1)), 0)] == [1, 2, 3]


def test_zero_records_give_no_packets() -> None:
    enc = _encoder(9, [template_for(["src_addr"], 256)])
    assert enc.encode({"src_addr": np.zeros(0, dtype=np.uint32)}) == []
    assert enc.templates_due()


# --- property: random columns → encode → read → equal -----------------------------------

_CANDIDATES = [n for n in V4_FIELDS if n not in ("first_switched", "last_switched")] + [
    "src_addr6",
    "dst_addr6",
    "flow_start_ms",
    "flow_end_ms",
    "flow_label6",
    "src_vlan",
]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[int, list[str], int, int, int]:
    version = draw(st.sampled_from([9, 10]))
    names = draw(st.lists(st.sampled_from(_CANDIDATES), min_size=1, max_size=12, unique=True))
    n = draw(st.integers(0, 300))
    mtu = draw(st.integers(200, 9000))
    seed = draw(st.integers(0, 2**32 - 1))
    return version, names, n, mtu, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_random_columns_round_trip(case: tuple[int, list[str], int, int, int]) -> None:
    version, names, n, mtu, seed = case
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for name in names:
        f = REGISTRY[name]
        if f.ftype == FieldType.IPV6:
            cols[name] = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        else:
            top = 1 << min(8 * f.size, 63)
            cols[name] = rng.integers(0, top, n, dtype=np.uint64)
    tpl = template_for(names, 256 + seed % 1000)
    enc = _encoder(version, [tpl], mtu=mtu, template_refresh_packets=int(rng.integers(0, 4)))
    payloads = enc.encode(cols)
    assert all(len(p) <= mtu for p in payloads)
    recs = records_of(read_all(payloads), tpl.template_id)
    assert len(recs) == n
    for i, rec in enumerate(recs):
        assert rec == {name: expected(cols, name, i) for name in names}


# --- round trip through the collector's decoder (when it is there) ----------------------


@pytest.mark.parametrize("version", [5, 9, 10])
def test_collector_decoder_round_trip(version: int) -> None:
    decoder_mod = pytest.importorskip("appliance.collector.decode.decoder")
    from appliance.collector.receive.packets import PacketBatch

    cols = flow_columns(500, seed=version)
    if version == 5:
        names = list(V5_FIELDS)
        for name in ("bytes", "packets"):
            cols[name] >>= np.uint64(32)
        for name in ("in_if", "out_if", "src_as", "dst_as"):
            cols[name] &= np.uint64(0xFFFF)
        cols["tcp_flags"] &= np.uint64(0xFF)
        payloads = V5Encoder(clock=FakeClock(), boot_ns=BOOT_NS).encode(cols)
    else:
        times = (
            ["first_switched", "last_switched"]
            if version == 9
            else ["flow_start_ms", "flow_end_ms"]
        )
        names = [f.name for f in template_for(V4_FIELDS[:11] + times + ["src_addr6"], 256).fields]
        payloads = _encoder(version, [template_for(names, 256)]).encode(cols)
    decoder = decoder_mod.Decoder(apply_sampling=False)
    batches = [b.copy() for b in decoder.decode(PacketBatch.from_payloads(payloads, recv_ns=T0_NS))]
    got = {name: np.concatenate([b[name] for b in batches]) for name in names}
    for name in names:
        if name == "first_switched":
            want = [uptime(int(v)) for v in cols["flow_start_ms"]]
        elif name == "last_switched":
            want = [uptime(int(v)) for v in cols["flow_end_ms"]]
        elif REGISTRY[name].ftype == FieldType.IPV6:
            words = cols[name].view(">u8").reshape(-1, 2)
            assert np.array_equal(got[name], words.astype(np.uint64)), name
            continue
        else:
            want = cols[name]
        assert np.array_equal(got[name], np.asarray(want, dtype=np.uint64)), name
