"""The encoders judged by tshark: every field of every record, headers, templates.

Payloads go into a pcap (Ethernet/IPv4/UDP to port 2055), tshark decodes it with its
cflow dissector (``-T json``), and each record must equal the input columns exactly.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.netflow import (
    REGISTRY,
    FieldType,
    IPFIXEncoder,
    V5Encoder,
    V9Encoder,
    interface_template,
    sampler_template,
    statistics_template,
    template_for,
)
from appliance.netflow.header import V5_FIELDS
from appliance.synth import udp_frame
from appliance.synth import write_pcap as write_pcap_file

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]

BOOT_NS = 1_699_999_000_000_000_000
T0_NS = 1_700_000_000_250_000_000
PORT = 2055


class FakeClock:
    def __init__(self) -> None:
        self.ns = T0_NS

    def __call__(self) -> int:
        return self.ns


# --- pcap in, tshark JSON out ------------------------------------------------------------


def write_pcap(path: Path, payloads: list[bytes]) -> None:
    """A classic pcap with one Ethernet/IPv4/UDP frame per payload, one second apart."""
    frames = (((1_700_000_000 + i) * 10**9, udp_frame("192.0.2.1", "192.0.2.2", 40000, PORT, payload, ident=i))
              for i, payload in enumerate(payloads))
    write_pcap_file(path, frames)


def _flatten(node: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    for key, value in node.items():
        if isinstance(value, dict):
            _flatten(value, out)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                _flatten(item, out)
        else:
            out.setdefault(key, value)
    return out


def tshark(tmp_path: Path, payloads: list[bytes]) -> list[dict[str, Any]]:
    """Decoded packets: ``{"header": {...}, "templates": [ids], "records": [(set id, {...})]}``."""
    pcap = tmp_path / "encoded.pcap"
    write_pcap(pcap, payloads)
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-T",
            "json",
            "--no-duplicate-keys",
            "-d",
            f"udp.port=={PORT},cflow",
            "-J",
            "cflow",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    packets = []
    for frame in json.loads(out):
        layer = frame["_source"]["layers"]["cflow"]
        assert not isinstance(layer, list), "one NetFlow PDU per datagram"
        pkt: dict[str, Any] = {"header": {}, "templates": [], "records": []}
        for key, value in layer.items():
            if key.startswith("pdu "):  # v5 record
                pkt["records"].append((0, _flatten(value, {})))
            elif isinstance(value, dict) and "cflow.flowset_id" in value:
                set_id = int(value["cflow.flowset_id"])
                for sub_key, sub in value.items():
                    if sub_key.startswith("Flow "):
                        pkt["records"].append((set_id, _flatten(sub, {})))
                    elif "Template (Id" in sub_key:
                        pkt["templates"].append(int(sub["cflow.template_id"]))
            elif isinstance(value, dict):
                _flatten(value, pkt["header"])
            else:
                pkt["header"][key] = value
        packets.append(pkt)
    assert len(packets) == len(payloads)
    return packets


# --- how tshark shows each registry field ------------------------------------------------


def _num(name: str) -> Callable[[dict[str, Any]], int]:
    return lambda r: int(r[name], 0)


def _ip4(name: str) -> Callable[[dict[str, Any]], int]:
    return lambda r: int(ipaddress.IPv4Address(r[name]))


def _ip6(name: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda r: ipaddress.IPv6Address(r[name]).packed


def _hex(name: str) -> Callable[[dict[str, Any]], int]:  # MACs and v9 scope bytes
    return lambda r: int(r[name].replace(":", ""), 16)


def _uptime_ms(name: str) -> Callable[[dict[str, Any]], int]:
    return lambda r: int(Decimal(r[name]) * 1000)


def _epoch_ms(name: str) -> Callable[[dict[str, Any]], int]:
    def convert(r: dict[str, Any]) -> int:
        text = r[name].removesuffix(" UTC")
        whole, frac = text.split(".")
        dt = datetime.strptime(whole, "%b %d, %Y %H:%M:%S").replace(tzinfo=UTC)
        return int(dt.timestamp()) * 1000 + int(frac[:3])

    return convert


def _str(name: str) -> Callable[[dict[str, Any]], str]:
    return lambda r: r.get(name, "")


AS_TSHARK: dict[str, Callable[[dict[str, Any]], Any]] = {
    "src_addr": _ip4("cflow.srcaddr"),
    "dst_addr": _ip4("cflow.dstaddr"),
    "next_hop": _ip4("cflow.nexthop"),
    "src_addr6": _ip6("cflow.srcaddrv6"),
    "dst_addr6": _ip6("cflow.dstaddrv6"),
    "next_hop6": _ip6("cflow.nexthopv6"),
    "src_port": _num("cflow.srcport"),
    "dst_port": _num("cflow.dstport"),
    "proto": _num("cflow.protocol"),
    "tos": _num("cflow.tos"),
    "tcp_flags": _num("cflow.tcpflags"),
    "bytes": _num("cflow.octets"),
    "packets": _num("cflow.packets"),
    "in_if": _num("cflow.inputint"),
    "out_if": _num("cflow.outputint"),
    "first_switched": _uptime_ms("cflow.timestart"),
    "last_switched": _uptime_ms("cflow.timeend"),
    "flow_start_ms": _epoch_ms("cflow.abstimestart"),
    "flow_end_ms": _epoch_ms("cflow.abstimeend"),
    "src_mac": _hex("cflow.srcmac"),
    "dst_mac": _hex("cflow.dstmac"),
    "dot1q_vlan": _num("cflow.dot1q_vlan_id"),
    "src_vlan": _num("cflow.vlanid"),
    "flow_end_reason": _num("cflow.flow_end_reason"),
    "min_ttl": _num("cflow.ttl_min"),
    "max_ttl": _num("cflow.ttl_max"),
    "icmp_type": _num("cflow.icmp_type_code_ipv4"),
    "icmp_type6": lambda r: int(r["cflow.icmp_ipv6_type"]) << 8 | int(r["cflow.icmp_ipv6_code"]),
    "mpls_label_1": lambda r: (
        int(r["cflow.mpls_label"]) << 4 | int(r["cflow.mpls_exp"]) << 1 | int(r["cflow.mpls_bos"])
    ),
    "sampler_id": _num("cflow.sampler_id"),
    "src_as": _num("cflow.srcas"),
    "dst_as": _num("cflow.dstas"),
    "src_mask": _num("cflow.srcmask"),
    "dst_mask": _num("cflow.dstmask"),
    "src_mask6": _num("cflow.srcmaskv6"),
    "dst_mask6": _num("cflow.dstmaskv6"),
    "direction": _num("cflow.direction"),
    # options
    "scope_system": _hex("cflow.scope_system"),
    "scope_interface": _num("cflow.scope_interface"),
    "sampler_mode": _num("cflow.sampler_mode"),
    "sampler_random_interval": _num("cflow.sampler_random_interval"),
    "sampling_interval": _num("cflow.sampling_interval"),
    "sampling_algorithm": _num("cflow.sampling_algorithm"),
    "selector_id": _num("cflow.selector_id"),
    "selector_algorithm": _num("cflow.selector_algorithm"),
    "sampling_packet_interval": _num("cflow.sampling_packet_interval"),
    "sampling_packet_space": _num("cflow.sampling_packet_space"),
    "observation_domain_id": _num("cflow.od_id"),
    "exported_flows": _num("cflow.flowsexp"),
    "exported_packets": _num("cflow.packetsexp"),
    "exported_bytes": _num("cflow.octetsexp"),
    "ignored_packets_total": _num("cflow.ignore_packets"),
    "ignored_bytes_total": _num("cflow.ignore_octets"),
    "not_sent_flows_total": _num("cflow.notsent_flows"),
    "if_name": _str("cflow.if_name"),
    "if_desc": _str("cflow.if_descr"),
}

FLOW_FIELDS = [
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
    "src_mac",
    "dst_mac",
    "dot1q_vlan",
    "src_vlan",
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
    "direction",
]


def flow_columns(n: int, seed: int, v5: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for name in FLOW_FIELDS + [
        "src_addr6",
        "dst_addr6",
        "next_hop6",
        "icmp_type6",
        "src_mask6",
        "dst_mask6",
    ]:
        f = REGISTRY[name]
        if f.ftype == FieldType.IPV6:
            cols[name] = rng.integers(0, 256, (n, 16), dtype=np.uint8)
            continue
        size = f.size
        if v5 and name in V5_FIELDS:
            size = {"tcp_flags": 1, "in_if": 2, "out_if": 2, "src_as": 2, "dst_as": 2}.get(
                name, min(size, 4)
            )
        cols[name] = rng.integers(0, 1 << (8 * size), n, dtype=np.uint64)
    end = T0_NS // 1_000_000 - rng.integers(0, 60_000, n)
    cols["flow_start_ms"] = end - rng.integers(0, 300_000, n)
    cols["flow_end_ms"] = end
    return cols


def expected_value(cols: dict[str, Any], name: str, i: int) -> Any:
    boot_ms = BOOT_NS // 1_000_000
    if name == "first_switched" and name not in cols:
        return int(cols["flow_start_ms"][i]) - boot_ms
    if name == "last_switched" and name not in cols:
        return int(cols["flow_end_ms"][i]) - boot_ms
    v = cols[name] if np.ndim(cols[name]) == 0 else cols[name][i]
    if isinstance(v, str):
        return v
    return bytes(v) if np.ndim(v) else int(v)


def assert_records(got: list[dict[str, Any]], cols: dict[str, Any], names: list[str]) -> None:
    n = max((len(v) for v in cols.values() if np.ndim(v) > 0 or isinstance(v, list)), default=1)
    assert len(got) == n
    for i, rec in enumerate(got):
        want = {name: expected_value(cols, name, i) for name in names}
        have = {name: AS_TSHARK[name](rec) for name in names}
        assert have == want, f"record {i}"


def records(packets: list[dict[str, Any]], set_id: int) -> list[dict[str, Any]]:
    return [r for p in packets for sid, r in p["records"] if sid == set_id]


# --- the tests ---------------------------------------------------------------------------


def test_v5(tmp_path: Path) -> None:
    clock = FakeClock()
    enc = V5Encoder(
        engine_type=1,
        engine_id=9,
        sampling_mode=2,
        sampling_interval=512,
        clock=clock,
        boot_ns=BOOT_NS,
    )
    calls = [flow_columns(n, seed=n, v5=True) for n in (5, 100, 29)]
    payloads = []
    for cols in calls:
        payloads += enc.encode(cols)
        clock.ns += 1_500_000_000
    assert max(map(len, payloads)) <= 1400
    packets = tshark(tmp_path, payloads)
    v5_names = list(V5_FIELDS)
    got = records(packets, 0)
    start = 0
    for cols in calls:
        n = len(cols["bytes"])
        assert_records(got[start : start + n], cols, v5_names)
        start += n
    sequences = [int(p["header"]["cflow.sequence"]) for p in packets]
    counts = [int(p["header"]["cflow.count"]) for p in packets]
    assert counts == [5, 28, 28, 28, 16, 28, 1]
    assert sequences == list(np.cumsum([0, *counts[:-1]]))
    h = packets[-1]["header"]
    assert int(h["cflow.unix_secs"]) == T0_NS // 10**9 + 3
    assert int(h["cflow.unix_nsecs"]) == 250_000_000
    assert Decimal(h["cflow.sysuptime"]) == Decimal(T0_NS + 3_000_000_000 - BOOT_NS) / 10**9
    assert (h["cflow.engine_type"], h["cflow.engine_id"]) == ("1", "9")
    assert (h["cflow.samplingmode"], h["cflow.samplerate"]) == ("2", "512")


@pytest.mark.parametrize("version", [9, 10])
def test_v9_and_ipfix(tmp_path: Path, version: int) -> None:
    times = (
        ["first_switched", "last_switched"] if version == 9 else ["flow_start_ms", "flow_end_ms"]
    )
    names4 = FLOW_FIELDS + times
    t4 = template_for(names4, 256)
    t6 = template_for(names4, 257, ipv6=True)
    names6 = [f.name for f in t6.fields]
    templates = [
        t4,
        t6,
        sampler_template(258, version),
        statistics_template(259, version),
        interface_template(260, version),
    ]
    clock = FakeClock()
    kw: dict[str, Any] = {
        "mtu": 1200,
        "clock": clock,
        "boot_ns": BOOT_NS,
        "template_refresh_packets": 4,
        "template_refresh_seconds": 10,
    }
    enc = (
        V9Encoder(templates, source_id=77, **kw)
        if version == 9
        else IPFIXEncoder(templates, observation_domain=77, **kw)
    )
    if version == 9:
        sampler: dict[str, Any] = {
            "scope_system": 0xC0000201,
            "sampler_id": 3,
            "sampler_mode": 2,
            "sampler_random_interval": 100,
            "sampling_interval": 100,
            "sampling_algorithm": 2,
        }
        interfaces: dict[str, Any] = {"scope_interface": np.array([1, 2])}
    else:
        sampler = {
            "selector_id": 3,
            "selector_algorithm": 3,
            "sampling_packet_interval": 1,
            "sampling_packet_space": 99,
        }
        interfaces = {"in_if": np.array([1, 2])}
    interfaces |= {"if_name": ["eth0", "mirror0"], "if_desc": ["uplink to core", "x" * 30]}
    if version == 10:
        interfaces["if_desc"][1] = "a SPAN port " * 30  # over 255 bytes: 3-byte length prefix

    plan: list[tuple[str, Any]] = []  # what each call sent, to check the packets in order
    payloads: list[bytes] = []

    def send(kind: str, cols: Any, out: list[bytes]) -> None:
        plan.append((kind, cols, len(out)))
        payloads.extend(out)

    c4, c6 = flow_columns(60, seed=1), flow_columns(45, seed=2)
    send("v4", c4, enc.encode(c4, 256))
    send("v6", c6, enc.encode(c6, 257))
    send("sampler", sampler, enc.encode(sampler, 258))
    send("interfaces", interfaces, enc.encode(interfaces, 260))
    stats_before = (enc.flows_sent, enc.messages_sent, enc.octets_sent)
    send(
        "stats",
        stats_before,
        enc.encode_statistics(259, ignored_packets=11, ignored_bytes=12, not_sent_flows=13),
    )
    clock.ns += 10_000_000_000  # template refresh by time
    c4b = flow_columns(3, seed=3)
    send("v4", c4b, enc.encode(c4b, 256))

    assert max(map(len, payloads)) <= 1200
    packets = tshark(tmp_path, payloads)

    # every record of every call, in order
    pos = 0
    for kind, cols, n_packets in plan:
        mine = packets[pos : pos + n_packets]
        pos += n_packets
        if kind == "v4":
            assert_records(records(mine, 256), cols, names4)
        elif kind == "v6":
            assert_records(records(mine, 257), cols, names6)
        elif kind == "sampler":
            assert_records(records(mine, 258), cols, list(cols))
        elif kind == "interfaces":
            assert_records(records(mine, 260), cols, list(cols))
        else:
            flows, messages, octets = cols
            scope = {"scope_system": 77} if version == 9 else {"observation_domain_id": 77}
            stats = {
                **scope,
                "exported_flows": flows,
                "exported_packets": messages,
                "exported_bytes": octets,
                "ignored_packets_total": 11,
                "ignored_bytes_total": 12,
                "not_sent_flows_total": 13,
            }
            assert_records(records(mine, 259), stats, list(stats))

    # templates: at the start, every 4th packet, and again after 10 s
    with_templates = [i for i, p in enumerate(packets) if p["templates"]]
    assert with_templates == [*range(0, len(packets) - 1, 4), len(packets) - 1]
    assert all(p["templates"] == [256, 257, 258, 259, 260] for p in packets if p["templates"])

    # headers
    n_records = [len(p["records"]) for p in packets]
    seq = [int(p["header"]["cflow.sequence"]) for p in packets]
    if version == 9:
        assert seq == list(range(len(packets)))
        assert all(p["header"]["cflow.source_id"] == "77" for p in packets)
        counts = [int(p["header"]["cflow.count"]) for p in packets]
        assert counts == [
            n + 5 * bool(p["templates"]) for n, p in zip(n_records, packets, strict=True)
        ]
        assert Decimal(packets[0]["header"]["cflow.sysuptime"]) == Decimal(T0_NS - BOOT_NS) / 10**9
        assert packets[0]["header"]["cflow.unix_secs"] == str(T0_NS // 10**9)
    else:
        assert seq == list(np.cumsum([0, *n_records[:-1]]))
        assert all(p["header"]["cflow.od_id"] == "77" for p in packets)
        assert [int(p["header"]["cflow.len"]) for p in packets] == list(map(len, payloads))
        assert packets[-1]["header"]["cflow.exporttime"] == str(T0_NS // 10**9 + 10)
