"""Helpers for the probe's tests: tshark as the independent decoder of our export, pcap
writing/conversion for replay, the reference flow tables. (No tests of its own.)"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

from appliance import synth
from appliance.synth import ethernet, pcap_header, pcap_record, udp_frame, write_pcap

EXPORT_PORT = 2055


def write_udp_pcap(path: Path, payloads: list[bytes], dport: int = EXPORT_PORT,
                   sports: list[int] | None = None) -> None:
    """Wraps export payloads in Ethernet/IPv4/UDP so tshark can read them, one second apart.

    `sports` gives each payload its UDP source port (one exporting process each: tshark keeps
    templates per source address and port); default 40000 for all.
    """
    frames = (
        ((1_700_000_000 + i) * 10**9, udp_frame("127.0.0.1", "127.0.0.1", sports[i] if sports else 40000, dport, p,
                                                ident=i))
        for i, p in enumerate(payloads)
    )
    write_pcap(path, frames)


_FIELDS = {
    "src4": "cflow.srcaddr",
    "dst4": "cflow.dstaddr",
    "src6": "cflow.srcaddrv6",
    "dst6": "cflow.dstaddrv6",
    "sport": "cflow.srcport",
    "dport": "cflow.dstport",
    "proto": "cflow.protocol",
    "packets": "cflow.packets",
    "bytes": "cflow.octets",
    "vlan": "cflow.vlanid",
    "dot1q": "cflow.dot1q_vlan_id",
    "flags": "cflow.tcpflags",
    "reason": "cflow.flow_end_reason",
}


def tshark_flows(payloads: list[bytes], workdir: Path, sports: list[int] | None = None) -> list[dict]:
    """Decodes NetFlow v5/v9/IPFIX payloads with tshark; one dict per flow record.

    Keys: frame (index of the payload), src, dst, sport, dport, proto, packets, bytes, vlan,
    flags, reason (missing → None). Options records are left out.
    """
    if shutil.which("tshark") is None:
        raise RuntimeError("tshark is not installed (Debian package tshark)")
    pcap = workdir / "export.pcap"
    write_udp_pcap(pcap, payloads, sports=sports)
    proc = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"udp.port=={EXPORT_PORT},cflow", "-T", "json",
         "-e", "frame.number", *[x for f in _FIELDS.values() for x in ("-e", f)]],
        capture_output=True, text=True, timeout=120, check=True,
    )
    out: list[dict] = []
    for pkt in json.loads(proc.stdout or "[]"):
        layers = pkt["_source"]["layers"]
        frame = int(layers["frame.number"][0]) - 1
        cols = {k: layers.get(f, []) for k, f in _FIELDS.items()}
        n = max(len(cols[k]) for k in ("packets", "bytes"))
        for i in range(n):
            def get(k: str, cols: dict[str, list[str]] = cols, i: int = i) -> str | None:
                v = cols[k]
                return v[i] if i < len(v) else None

            src = get("src4") if get("src4") is not None else get("src6")
            dst = get("dst4") if get("dst4") is not None else get("dst6")
            packets = get("packets")
            nbytes = get("bytes")
            vlan = get("vlan") or get("dot1q")
            out.append({
                "frame": frame, "src": src, "dst": dst,
                "sport": int(get("sport") or 0), "dport": int(get("dport") or 0),
                "proto": int(get("proto") or 0),
                "packets": int(packets or 0), "bytes": int(nbytes or 0),
                "vlan": int(vlan) if vlan is not None else None,
                "flags": int(get("flags"), 0) if get("flags") else 0,
                "reason": int(get("reason")) if get("reason") else None,
            })
    return out


def decoded_records(payloads: list[bytes], apply_sampling: bool = False) -> list[dict]:
    """Every record (data and options) our collector's `Decoder` makes of the payloads, as
    ``mirrorflow decode --format jsonl`` shows them, plus ``frame`` (index of the payload)."""
    from appliance.collector.decode.decoder import Decoder
    from appliance.collector.decode.dump import records
    from appliance.collector.receive.packets import PacketBatch

    if not payloads:
        return []
    dec = Decoder(apply_sampling=apply_sampling, emit_options=True)
    batch = PacketBatch.from_payloads(payloads, "127.0.0.1", recv_ns=list(range(len(payloads))))
    out = []
    for fb in dec.decode(batch):
        for r in records(fb, dec):
            r["frame"] = r["recv_time_ns"]
            out.append(r)
    return out


def decoder_flows(payloads: list[bytes]) -> list[dict]:
    """The flow records our `Decoder` finds, in `tshark_flows`' form (to compare them 1:1)."""
    out = []
    for r in decoded_records(payloads):
        if r["record_kind"] == "options":
            continue
        vlan = r.get("src_vlan", r.get("dot1q_vlan"))
        out.append({
            "frame": r["frame"], "src": r.get("src_addr", r.get("src_addr6")),
            "dst": r.get("dst_addr", r.get("dst_addr6")),
            "sport": r.get("src_port", 0), "dport": r.get("dst_port", 0),
            "proto": r.get("proto", 0), "packets": r.get("packets", 0), "bytes": r.get("bytes", 0),
            "vlan": vlan, "flags": r.get("tcp_flags", 0), "reason": r.get("flow_end_reason"),
        })
    return out


def summarise(flows: list[dict], key=lambda f: (f["src"], f["dst"], f["proto"])) -> dict:
    """Sums packets and bytes per key."""
    acc: dict = defaultdict(lambda: [0, 0])
    for f in flows:
        a = acc[key(f)]
        a[0] += f["packets"]
        a[1] += f["bytes"]
    return {k: tuple(v) for k, v in acc.items()}


# --- pcaps for replay ----------------------------------------------------------------------

_ETH = 1


def _strip(linktype: int, data: bytes) -> tuple[int, bytes] | None:
    """Network layer of a frame of another link type, with its ethertype."""
    def by_version(payload: bytes) -> tuple[int, bytes] | None:
        if not payload:
            return None
        v = payload[0] >> 4
        return (0x0800, payload) if v == 4 else (0x86DD, payload) if v == 6 else None

    if linktype in (0, 108):  # BSD loopback (null): 4-byte family
        return by_version(data[4:])
    if linktype == 113:  # Linux cooked (SLL): protocol at 14
        return struct.unpack("!H", data[14:16])[0], data[16:]
    if linktype == 276:  # SLL2: protocol at 0
        return struct.unpack("!H", data[0:2])[0], data[20:]
    if linktype in (101, 12, 14, 228, 229):  # raw IP
        return by_version(data)
    if linktype in (9, 50):  # PPP (optionally HDLC framed)
        off = 2 if data[:2] == b"\xff\x03" else 0
        proto = struct.unpack("!H", data[off : off + 2])[0]
        mapping = {0x0021: 0x0800, 0x0057: 0x86DD, 0x0281: 0x8847, 0x0283: 0x8848}
        return (mapping[proto], data[off + 2 :]) if proto in mapping else None
    if linktype == 104:  # Cisco HDLC: address, control, protocol
        return struct.unpack("!H", data[2:4])[0], data[4:]
    return None


def ethernet_pcap(src: Path, dst: Path) -> Path:
    """A classic Ethernet pcap of `src` (pcapng and other link types converted), for tcpreplay.

    Frames that cannot be converted are left out.
    """
    tmp = dst.with_suffix(".classic.pcap")
    subprocess.run(["editcap", "-F", "pcap", str(src), str(tmp)], check=True, timeout=60,
                   capture_output=True)
    raw = tmp.read_bytes()
    magic = struct.unpack("<I", raw[:4])[0]
    endian = "<" if magic in (synth.PCAP_MAGIC_MICRO, synth.PCAP_MAGIC_NANO) else ">"
    linktype = struct.unpack(endian + "I", raw[20:24])[0]
    out = bytearray(pcap_header(_ETH))
    off = 24
    while off + 16 <= len(raw):
        ts, us, incl, orig = struct.unpack(endian + "IIII", raw[off : off + 16])
        data = raw[off + 16 : off + 16 + incl]
        off += 16 + incl
        if synth.PCAP_MAGIC_NANO in (magic, int.from_bytes(magic.to_bytes(4, "little"), "big")):
            us //= 1000
        if len(data) < 14:  # cut to less than an Ethernet header: nothing can send it
            continue
        if linktype != _ETH:
            conv = _strip(linktype, data)
            if conv is None:
                continue
            ethertype, payload = conv
            data = ethernet(payload, ethertype)
        out += pcap_record(ts * 10**9 + us * 1000, data)
    tmp.unlink()
    dst.write_bytes(bytes(out))
    return dst


def reference_flows(corpus: Path, trace: Path) -> list[dict]:
    rel = trace.relative_to(corpus / "traffic")
    path = corpus / "expected" / "traffic" / (str(rel) + ".flows.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
