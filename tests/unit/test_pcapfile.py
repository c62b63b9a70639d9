"""pcap/pcapng reader: synthetic captures for every format branch, the corpus, tshark as oracle."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.collector.receive.packets import PacketBatch, words_to_address
from appliance.collector.receive.pcapfile import PcapFormatError, PcapReader, read_pcap
from appliance.synth import (
    enhanced_packet,
    interface_description,
    pcap_header,
    pcap_record,
    pcapng_block,
    section_header,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
NETFLOW_PCAPS = sorted((CORPUS / "netflow").rglob("*.pcap")) if CORPUS.is_dir() else []
T0 = 1_700_000_000_123_456_789  # ns

# ------------------------------------------------------------------------------------------
# Building frames and files
# ------------------------------------------------------------------------------------------


def udp(payload: bytes, sport: int = 40000, dport: int = 2055) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(src: str, l4: bytes, proto: int = 17, options: bytes = b"", frag: int = 0) -> bytes:
    ihl = (20 + len(options)) // 4
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(l4), 1, frag, 64, proto, 0,
                       bytes(map(int, src.split("."))), bytes([192, 0, 2, 1]))
    return head + options + l4


def ipv6(src: str, l4: bytes, ext: list[tuple[int, bytes]] = (), proto: int = 17) -> bytes:
    """`ext` lists (header type, body after the next-header byte); bodies are padded to 8."""
    import ipaddress

    chain = b""
    types = [t for t, _ in ext] + [proto]
    for (t, body), nxt in zip(ext, types[1:], strict=True):
        if t == 44:  # fragment header: fixed 8 bytes
            chain += bytes([nxt]) + body
        else:
            raw = bytes([nxt, 0]) + body
            raw += b"\0" * (-len(raw) % 8)
            size = len(raw) // 4 - 2 if t == 51 else len(raw) // 8 - 1  # AH counts 4-byte words
            chain += bytes([raw[0], size]) + raw[2:]
    head = struct.pack("!IHBB16s16s", 0x60000000, len(chain) + len(l4), types[0], 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address("2001:db8::1").packed)
    return head + chain + l4


def eth(ip: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    tags = b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(vlans))
    frame = b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", etype) + ip
    return frame + b"\0" * max(0, 60 - len(frame))  # minimum frame padding must not leak


def sll(ip: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", 0x86DD if ip[0] >> 4 == 6 else 0x0800) + ip


def sll2(ip: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", 0x86DD if ip[0] >> 4 == 6 else 0x0800, 0, 2, 1, 0, 6, b"\x02" * 8) + ip


def pcap(frames: list[tuple[int, bytes]], link: int = 1, endian: str = "<", nano: bool = False) -> bytes:
    records = b"".join(pcap_record(ts, frame, nanoseconds=nano, byteorder=endian) for ts, frame in frames)
    return pcap_header(link, nanoseconds=nano, snaplen=65535, byteorder=endian) + records


def spb(frame: bytes, endian: str = "<") -> bytes:
    """A simple packet block (the pcapng writer has no use for them)."""
    return pcapng_block(3, struct.pack(endian + "I", len(frame)) + frame, endian)


def rows(batches: list[PacketBatch] | PacketBatch) -> list[tuple[int, str, int, bytes]]:
    """(recv_ns, exporter, port, payload) per packet."""
    out = []
    for b in [batches] if isinstance(batches, PacketBatch) else batches:
        for i in range(len(b)):
            o = int(b.offset[i])
            payload = bytes(b.buf[o : o + int(b.length[i])])
            out.append((int(b.recv_ns[i]), words_to_address(b.addr_hi[i], b.addr_lo[i]), int(b.port[i]), payload))
    return out


def read_all(path: Path, **kw: object) -> tuple[list[tuple[int, str, int, bytes]], PcapReader]:
    reader = PcapReader(path, kw.pop("ports", None))  # type: ignore[arg-type]
    got = rows(list(reader.batches(**kw)))  # type: ignore[arg-type]
    return got, reader


# ------------------------------------------------------------------------------------------
# Synthetic captures
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_byte_orders_and_resolutions(tmp_path: Path, endian: str, nano: bool) -> None:
    frames = [(T0 + i * 1_001_001, eth(ipv4(f"10.0.0.{i + 1}", udp(b"nf%d" % i, 1000 + i)))) for i in range(5)]
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap(frames, endian=endian, nano=nano))
    got, reader = read_all(path)
    expect_ts = [ts if nano else ts // 1000 * 1000 for ts, _ in frames]
    assert got == [(expect_ts[i], f"10.0.0.{i + 1}", 1000 + i, b"nf%d" % i) for i in range(5)]
    assert reader.stats.frames == reader.stats.udp == reader.stats.selected == 5


LINK_CASES = {
    "ethernet": (1, lambda ip: eth(ip)),
    "vlan": (1, lambda ip: eth(ip, (0x8100,))),
    "qinq": (1, lambda ip: eth(ip, (0x88A8, 0x8100))),
    "qinq-9100": (1, lambda ip: eth(ip, (0x9100, 0x8100))),
    "sll": (113, sll),
    "sll2": (276, sll2),
    "raw101": (101, lambda ip: ip),
    "raw-ipv4-or-6": (228, lambda ip: ip),  # 228/229 are fixed-version; the header decides
    "null-le": (0, lambda ip: struct.pack("<I", 30 if ip[0] >> 4 == 6 else 2) + ip),
    "null-be": (0, lambda ip: struct.pack(">I", 24 if ip[0] >> 4 == 6 else 2) + ip),
    "loop": (108, lambda ip: struct.pack(">I", 24 if ip[0] >> 4 == 6 else 2) + ip),
}


@pytest.mark.parametrize("case", sorted(LINK_CASES))
def test_link_types(tmp_path: Path, case: str) -> None:
    link, wrap = LINK_CASES[case]
    frames = [
        (T0, wrap(ipv4("192.0.2.7", udp(b"four", 5001)))),
        (T0 + 1000, wrap(ipv6("2001:db8::7", udp(b"six", 5002)))),
    ]
    path = tmp_path / f"{case}.pcap"
    path.write_bytes(pcap(frames, link=link))
    got, _ = read_all(path)
    assert got == [(T0 // 1000 * 1000, "192.0.2.7", 5001, b"four"),
                   (T0 // 1000 * 1000 + 1000, "2001:db8::7", 5002, b"six")]


def test_ip_options_extension_headers_fragments_and_other_protocols(tmp_path: Path) -> None:
    frames = [
        eth(ipv4("10.1.0.1", udp(b"opts"), options=b"\x94\x04\0\0" + b"\x01" * 4)),  # router alert + NOPs
        eth(ipv6("2001:db8::2", udp(b"ext"), ext=[(0, b"\x01\x04\0\0\0\0"), (60, b""), (44, b"\0\0\0\0\0\0\x07")])),
        eth(ipv6("2001:db8::3", udp(b"ah"), ext=[(51, b"\0" * 14)])),
        eth(ipv4("10.1.0.2", udp(b"first-fragment"), frag=0x2000)),  # MF
        eth(ipv4("10.1.0.3", b"later-fragment", frag=0x0010)),  # offset 128
        eth(ipv6("2001:db8::4", udp(b"v6frag"), ext=[(44, b"\0\0\x01\0\0\0\x09")])),  # M set
        eth(ipv4("10.1.0.4", b"\0" * 20, proto=6)),  # TCP
        b"\x02" * 12 + b"\x08\x06" + b"\0" * 28,  # ARP
    ]
    path = tmp_path / "mix.pcap"
    path.write_bytes(pcap([(T0, f) for f in frames]))
    got, reader = read_all(path)
    assert [(a, p) for _, a, _, p in got] == [("10.1.0.1", b"opts"), ("2001:db8::2", b"ext"), ("2001:db8::3", b"ah")]
    s = reader.stats
    assert (s.frames, s.udp, s.fragments, s.not_udp, s.not_ip) == (8, 3, 3, 1, 1)


def test_a_datagram_cut_by_the_snaplen_is_counted_not_delivered(tmp_path: Path) -> None:
    whole = eth(ipv4("10.2.0.1", udp(b"x" * 200)))
    data = pcap([(T0, whole[:100]), (T0, whole)])
    path = tmp_path / "snap.pcap"
    path.write_bytes(data)
    got, reader = read_all(path)
    assert [p for *_, p in got] == [b"x" * 200]
    assert reader.stats.truncated == 1


def test_ports_filter_and_chunks(tmp_path: Path) -> None:
    frames = [(T0 + i, eth(ipv4("10.3.0.1", udp(b"%d" % i, 7000, 2055 if i % 3 else 4739)))) for i in range(50)]
    path = tmp_path / "ports.pcap"
    path.write_bytes(pcap(frames))
    all_rows = rows(list(read_pcap(path)))
    assert len(all_rows) == 50
    batches = list(read_pcap(path, ports={2055}, chunk=7))
    assert all(0 < len(b) <= 7 for b in batches)
    assert [p for *_, p in rows(batches)] == [b"%d" % i for i in range(50) if i % 3]
    assert rows(list(read_pcap(path, ports=[9995]))) == []


def test_pcapng_interfaces_tsresol_tsoffset_spb_and_sections(tmp_path: Path) -> None:
    v4 = ipv4("198.51.100.1", udp(b"eth-ns", 1111))
    v6 = ipv6("2001:db8::9", udp(b"sll-2^-20", 2222))
    data = b"".join([
        section_header(),
        interface_description(1, tsresol=9),
        interface_description(113, tsresol=0x80 | 20, tsoffset=100),  # binary fraction, 100 s offset
        interface_description(228, tsresol=None),  # default: microseconds
        enhanced_packet(0, T0, eth(v4)),
        enhanced_packet(1, (5 << 20) | (1 << 19), sll(v6)),  # 5.5 s + 100 s
        spb(eth(ipv4("198.51.100.2", udp(b"spb", 3333)))),  # interface 0, previous timestamp
        enhanced_packet(2, 1_500_000, ipv4("198.51.100.3", udp(b"raw-us", 4444))),
        section_header(">"),  # a new big-endian section forgets the interfaces above
        interface_description(101, tsresol=3, byteorder=">"),
        pcapng_block(0x0BAD, b"custom block skipped", ">"),
        enhanced_packet(0, 42, ipv6("2001:db8::a", udp(b"be", 5555)), ">"),
    ])
    path = tmp_path / "multi.pcapng"
    path.write_bytes(data)
    got, reader = read_all(path, chunk=2)
    assert got == [
        (T0, "198.51.100.1", 1111, b"eth-ns"),
        (105_500_000_000, "2001:db8::9", 2222, b"sll-2^-20"),
        (105_500_000_000, "198.51.100.2", 3333, b"spb"),
        (1_500_000_000, "198.51.100.3", 4444, b"raw-us"),
        (42_000_000, "2001:db8::a", 5555, b"be"),
    ]
    assert reader.stats.link_types == {1, 113, 228, 101}


def test_batches_own_their_memory(tmp_path: Path) -> None:
    path = tmp_path / "own.pcap"
    path.write_bytes(pcap([(T0, eth(ipv4("10.4.0.1", udp(b"keep"))))]))
    with PcapReader(path) as reader:
        (batch,) = list(reader.batches())
    assert bytes(batch.buf) == b"keep" and batch.buf.flags.owndata


# ------------------------------------------------------------------------------------------
# Broken files: a clear error with file and offset, never a hang
# ------------------------------------------------------------------------------------------


def _error(path: Path) -> PcapFormatError:
    with pytest.raises(PcapFormatError) as info:
        list(read_pcap(path))
    assert str(path) in str(info.value)
    return info.value


def test_truncated_pcap_names_file_and_record_offset(tmp_path: Path) -> None:
    data = pcap([(T0, eth(ipv4("10.5.0.1", udp(b"a" * 40)))), (T0, eth(ipv4("10.5.0.1", udp(b"b" * 40))))])
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-10])
    err = _error(path)
    second_record = 24 + 16 + (len(data) - 24) // 2 - 16
    assert err.offset == second_record and f"offset {second_record}" in str(err)


@pytest.mark.parametrize(
    ("name", "data", "offset"),
    [
        ("empty", b"", 0),
        ("magic", b"GIF89a" + b"\0" * 40, 0),
        ("short-header", b"\xd4\xc3\xb2\xa1\x02\x00", 0),
        ("block-length", section_header() + b"\x01\0\0\0\x0d\0\0\0" + b"\0" * 8, len(section_header())),
        ("no-idb", section_header() + enhanced_packet(0, 1, b"\0" * 20), len(section_header())),
        ("trailer", section_header()[:-4] + b"\0\0\0\0", 0),
        ("bad-bom", b"\x0a\x0d\x0d\x0a\x1c\0\0\0" + b"\0" * 20, 0),
    ],
)
def test_corrupt_files(tmp_path: Path, name: str, data: bytes, offset: int) -> None:
    path = tmp_path / f"{name}.bin"
    path.write_bytes(data)
    assert _error(path).offset == offset


_GOOD = pcap([(T0 + i, eth(ipv4("10.6.0.1", udp(b"p" * i)))) for i in range(6)])
_GOOD_NG = section_header() + interface_description(1) + b"".join(
    enhanced_packet(0, T0 + i, eth(ipv6("2001:db8::6", udp(b"q" * i)))) for i in range(6))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from([_GOOD, _GOOD_NG]), cut=st.integers(0, 600),
       flips=st.lists(st.tuples(st.integers(0, 599), st.integers(0, 255)), max_size=4))
def test_mangled_files_end_or_raise_cleanly(tmp_path: Path, base: bytes, cut: int,
                                            flips: list[tuple[int, int]]) -> None:
    data = bytearray(base[:cut])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(data))
    try:
        for batch in read_pcap(path, chunk=4):
            assert int(batch.length.sum()) == len(batch.buf)
    except PcapFormatError as exc:
        assert 0 <= exc.offset <= len(data)


# ------------------------------------------------------------------------------------------
# The corpus: counts from expected/*.stats.json, payloads and times against tshark
# ------------------------------------------------------------------------------------------


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CORPUS / "netflow")) for p in paths]


@pytest.mark.parametrize("path", NETFLOW_PCAPS, ids=_ids(NETFLOW_PCAPS))
def test_corpus_counts_match_expected(path: Path) -> None:
    rel = path.relative_to(CORPUS)
    expected = json.loads((CORPUS / "expected" / f"{rel}.stats.json").read_text())
    ports = {int(p) for p in expected["ports"]} or None  # empty: tshark found it without a port hint
    got, reader = read_all(path, ports=ports)
    assert reader.stats.frames == expected["packets"]
    assert len(got) == expected["nf_packets"]
    assert {a for _, a, _, _ in got} == set(expected["exporters"])


def tshark_udp(path: Path) -> list[tuple[int, str, int, bytes]]:
    """tshark's view of the outermost UDP datagram of each frame (no reassembly)."""
    fields = ["frame.protocols", "frame.time_epoch", "ip.src", "ipv6.src", "udp.srcport", "udp.payload"]
    cmd = ["tshark", "-r", str(path), "-Y", "udp", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
           "-T", "fields", "-E", "occurrence=f"] + [a for f in fields for a in ("-e", f)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = []
    for line in out.splitlines():
        protocols, t, src4, src6, sport, payload = line.split("\t")
        layers = protocols.split(":udp")[0].split(":")
        if "icmp" in layers or "icmpv6" in layers or layers.count("ip") + layers.count("ipv6") != 1:
            continue  # UDP quoted inside ICMP or carried in a tunnel: not this frame's own UDP
        sec, frac = t.split(".")
        result.append((int(sec) * 10**9 + int(frac.ljust(9, "0")), src4 or src6, int(sport), bytes.fromhex(payload)))
    return result


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@pytest.mark.peers
@pytest.mark.slow
@needs_tshark
@pytest.mark.parametrize("path", NETFLOW_PCAPS, ids=_ids(NETFLOW_PCAPS))
def test_corpus_matches_tshark(path: Path) -> None:
    got, _ = read_all(path, chunk=64)
    expected = tshark_udp(path)
    assert len(got) == len(expected)
    digest = lambda rs: [(t, a, p, hashlib.sha256(b).hexdigest()) for t, a, p, b in rs]  # noqa: E731
    assert digest(got) == digest(expected)


@pytest.mark.peers
@needs_tshark
def test_synthetic_pcapng_matches_tshark(tmp_path: Path) -> None:
    frames = [
        enhanced_packet(0, T0, eth(ipv4("203.0.113.1", udp(b"a" * 30, 1)), (0x8100,))),
        enhanced_packet(1, 7 << 20, sll(ipv6("2001:db8::b", udp(b"b" * 31, 2), ext=[(0, b"\x01\x04\0\0\0\0")]))),
        enhanced_packet(0, T0 + 5, eth(ipv4("203.0.113.2", udp(b"c" * 32, 3), options=b"\x01" * 8), (0x88A8, 0x8100))),
        enhanced_packet(2, 123_456_789, sll2(ipv4("203.0.113.4", udp(b"d" * 33, 4)))),
    ]
    path = tmp_path / "synthetic.pcapng"
    ifaces = interface_description(1) + interface_description(113, tsresol=0x80 | 20, tsoffset=3)
    path.write_bytes(section_header() + ifaces + interface_description(276, tsresol=6) + b"".join(frames))
    got, _ = read_all(path)
    assert len(got) == 4 and got == tshark_udp(path)


@pytest.mark.peers
@needs_tshark
@pytest.mark.parametrize("name", ["nDPI/KakaoTalk_chat.pcap", "nDPI/quic_interop_V.pcapng", "nDPI/alexa-app.pcapng",
                                  "nDPI/hsrp2_ipv6.pcapng", "nDPI/stun.pcap", "nDPI/capwap.pcap",
                                  "tcpdump/ipv6-routing-header.pcap", "tcpreplay/test.pcap"])
def test_traffic_captures_match_tshark(name: str) -> None:
    """Ordinary traces cover link types and pcapng variants the NetFlow corpus lacks."""
    path = CORPUS / "traffic" / name
    if not path.exists():
        pytest.skip(f"{path} not in the corpus")
    got, reader = read_all(path)
    assert got == tshark_udp(path)
    assert len(got) > 0


def test_fragments_in_traffic_are_counted() -> None:
    path = CORPUS / "traffic" / "nDPI" / "dns_fragmented.pcap"
    if not path.exists():
        pytest.skip(f"{path} not in the corpus")
    _, reader = read_all(path)
    assert reader.stats.fragments == 14 and reader.stats.udp == 32


def test_million_packets_parse_fast(tmp_path: Path) -> None:
    """The replay path: a file of a million small datagrams reads in well under a few seconds."""
    import time

    frame = eth(ipv4("10.7.0.1", udp(b"v" * 72)))
    record = pcap_record(1_000_002_000, frame)
    path = tmp_path / "million.pcap"
    path.write_bytes(pcap([]) + record * 1_000_000)
    list(read_pcap(path, chunk=1000))  # compile/load the numba cache outside the timing
    start = time.perf_counter()
    total = sum(len(b) for b in read_pcap(path, chunk=65536))
    elapsed = time.perf_counter() - start
    assert total == 1_000_000
    assert elapsed < 3.0, f"{total / elapsed:,.0f} packets/s"
    assert np.isfinite(elapsed)
