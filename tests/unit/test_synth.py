"""appliance.synth: frames, pcap/pcapng files and flow records, checked against tshark and
plain-Python expectations (never against the collector's own reader)."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from appliance import synth

T0 = 1_700_000_000_123_456_789  # ns
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def test_checksum_is_rfc1071s_example() -> None:
    # RFC 1071, 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement), checksum 220d
    assert synth.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    # an odd length is padded with a zero byte: 0001 + f203 + f4f5 + f600 = 2dcf9 → dcfb → 2304
    assert synth.checksum(bytes.fromhex("0001f203f4f5f6")) == 0x2304


def test_udp_frame_layout() -> None:
    frame = synth.udp_frame("192.0.2.1", "198.51.100.2", 40000, 2055, b"nf", ttl=7, ident=0x1234,
                            src_mac=b"\x02" * 6, dst_mac=b"\x04" * 6)
    assert frame[:14] == b"\x04" * 6 + b"\x02" * 6 + b"\x08\x00"
    version, tos, length, ident, frag, ttl, proto, _, src, dst = struct.unpack("!BBHHHBBH4s4s", frame[14:34])
    assert (version, tos, length, ident, frag, ttl, proto) == (0x45, 0, 20 + 8 + 2, 0x1234, 0x4000, 7, 17)
    assert (src, dst) == (bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2]))
    assert struct.unpack("!HHH", frame[34:40]) == (40000, 2055, 10)
    assert frame[42:] == b"nf"
    assert len(synth.udp_frame("2001:db8::1", "2001:db8::2", 1, 2, b"x" * 5)) == 14 + 40 + 8 + 5


def test_mixed_or_bad_addresses_are_refused() -> None:
    with pytest.raises(ValueError, match="not of one IP version"):
        synth.udp_frame("192.0.2.1", "2001:db8::1", 1, 2, b"")
    with pytest.raises(ValueError, match="'192.0.2.300' is not an IPv4 or IPv6 address"):
        synth.tcp_frame("192.0.2.300", "192.0.2.1", 1, 2)


def test_pcap_pieces_are_the_documented_layout() -> None:
    assert synth.pcap_header(113, snaplen=65535) == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 113)
    assert synth.pcap_header(1, nanoseconds=True, byteorder=">")[:4] == bytes.fromhex("a1b23c4d")
    assert synth.pcap_record(T0, b"abc") == struct.pack("<IIII", 1_700_000_000, 123_456, 3, 3) + b"abc"
    assert synth.pcap_record(T0, b"", nanoseconds=True)[4:8] == struct.pack("<I", 123_456_789)
    shb = synth.section_header()
    assert shb[:4] == bytes.fromhex("0a0d0d0a") and shb[8:12] == bytes.fromhex("4d3c2b1a") and len(shb) == 28
    block = synth.pcapng_block(0x0BAD, b"12345")
    assert len(block) == 12 + 8 and block[4:8] == block[-4:] == struct.pack("<I", 20)


def _frames() -> list[tuple[int, bytes]]:
    return [
        (T0, synth.udp_frame("192.0.2.1", "192.0.2.100", 50000, 2055, b"v4-udp")),
        (T0 + 1_001, synth.udp_frame("2001:db8::1", "2001:db8::100", 50001, 4739, b"v6-udp" * 100)),
        (T0 + 2_000_002, synth.tcp_frame("10.20.0.1", "203.0.113.9", 40000, 443, b"tcp4", flags=0x02, seq=7)),
        (T0 + 3_000_000_003, synth.tcp_frame("fd00:20::1", "2001:db8::9", 40001, 80, b"tcp6", flags=0x18)),
        (T0 + 4_000_000_000, synth.icmp_echo_frame("10.20.0.1", "203.0.113.9", 7, 9, b"ping4")),
        (T0 + 5_000_000_000, synth.icmp_echo_frame("fd00:20::1", "2001:db8::9", 8, 10, b"ping6")),
    ]


_FIELDS = ["frame.time_epoch", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "udp.srcport", "udp.dstport",
           "tcp.srcport", "tcp.dstport", "tcp.flags", "icmp.type", "icmpv6.type", "ip.checksum.status",
           "udp.checksum.status", "tcp.checksum.status", "icmp.checksum.status", "icmpv6.checksum.status"]


def _tshark(path: Path) -> list[dict[str, str]]:
    checks = [a for p in ("ip", "udp", "tcp") for a in ("-o", f"{p}.check_checksum:TRUE")]
    cmd = ["tshark", "-r", str(path), "-n", *checks, "-T", "fields", "-E", "occurrence=f",
           *[a for f in _FIELDS for a in ("-e", f)]]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [dict(zip(_FIELDS, line.split("\t"), strict=True)) for line in out.splitlines()]


def _ns(epoch: str) -> int:
    sec, frac = epoch.split(".")
    return int(sec) * 10**9 + int(frac.ljust(9, "0"))


@pytest.mark.peers
@needs_tshark
@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_tshark_reads_the_files_and_finds_every_checksum_good(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"synth.{kind}"
    frames = _frames()
    (synth.write_pcap if kind == "pcap" else synth.write_pcapng)(path, frames)
    rows = _tshark(path)
    resolution = 1 if kind == "pcapng" else 1000  # classic pcap without nanoseconds: µs
    assert [_ns(r["frame.time_epoch"]) for r in rows] == [t // resolution * resolution for t, _ in frames]
    assert [(r["ip.src"] or r["ipv6.src"], r["ip.dst"] or r["ipv6.dst"]) for r in rows] == [
        ("192.0.2.1", "192.0.2.100"), ("2001:db8::1", "2001:db8::100"), ("10.20.0.1", "203.0.113.9"),
        ("fd00:20::1", "2001:db8::9"), ("10.20.0.1", "203.0.113.9"), ("fd00:20::1", "2001:db8::9"),
    ]
    assert [(r["udp.srcport"], r["udp.dstport"]) for r in rows[:2]] == [("50000", "2055"), ("50001", "4739")]
    assert [(r["tcp.srcport"], r["tcp.dstport"], int(r["tcp.flags"], 16)) for r in rows[2:4]] == [
        ("40000", "443", 0x02), ("40001", "80", 0x18)]
    assert (rows[4]["icmp.type"], rows[5]["icmpv6.type"]) == ("8", "128")
    statuses = [[r[f] for f in _FIELDS if f.endswith("checksum.status") and r[f]] for r in rows]
    assert statuses == [["1", "1"], ["1"], ["1", "1"], ["1"], ["1", "1"], ["1"]]  # 1: good


def test_flows_are_deterministic_and_within_their_fields() -> None:
    a, b = synth.flows(5000, seed=4), synth.flows(5000, seed=4)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["src_addr"], synth.flows(5000, seed=5)["src_addr"])
    assert ((a["src_port"] < 65536) & (a["dst_port"] < 65536)).all()
    assert set(np.unique(a["proto"])) <= {1, 6, 17, 47, 50}
    assert ((a["packets"] >= 1) & (a["bytes"] <= 2**32 - 1)).all()
    assert (a["first_switched"] <= a["last_switched"]).all()
    assert (a["last_switched"] <= (synth.NOW_NS - synth.BOOT_NS) // 10**6).all()
    inside = (a["src_addr"] >> np.uint64(16)) == 0x0A00  # 10.0.0.0/16: one end of every flow
    assert (inside | ((a["dst_addr"] >> np.uint64(16)) == 0x0A00)).all()
    v6 = synth.flows(100, ipv6=True)
    assert v6["src_addr6"].shape == (100, 16)
    assert all(ipaddress.IPv6Address(bytes(r)) in ipaddress.IPv6Network("2001:db8:1::/64") for r in v6["src_addr6"])


@pytest.mark.peers
@needs_tshark
def test_v9_datagrams_carry_exactly_the_flows(tmp_path: Path) -> None:
    templates, data, n = synth.v9_datagrams(300, seed=9)
    cols = synth.flows(300, seed=9)
    path = synth.write_pcap(tmp_path / "v9.pcap", [(T0 + i, synth.udp_frame("192.0.2.1", "192.0.2.2", 40000, 2055, p))
                                                   for i, p in enumerate(templates + data)])
    cmd = ["tshark", "-r", str(path), "-n", "-d", "udp.port==2055,cflow", "-T", "fields", "-E", "occurrence=a",
           "-E", "aggregator=,", "-e", "cflow.srcaddr", "-e", "cflow.octets", "-e", "cflow.dstport"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    src, octets, dport = ([], [], [])
    for line in out.splitlines():
        s, o, d = line.split("\t")
        if s:
            src += s.split(",")
            octets += [int(x) for x in o.split(",")]
            dport += [int(x) for x in d.split(",")]
    assert n == len(src) == 300
    assert src == [str(ipaddress.IPv4Address(int(x))) for x in cols["src_addr"]]
    assert octets == [int(x) for x in cols["bytes"]]
    assert dport == [int(x) for x in cols["dst_port"]]
