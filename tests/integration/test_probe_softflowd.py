"""The same replay through softflowd (Debian package) and the probe on one veth mirror: both
exports, aggregated per flow key, agree exactly on every flow both saw, except where tshark shows
an enumerated, understood reason in the frames themselves (`REASONS`).

How the comparison is made fair:

- softflowd runs with every timeout at one day, so neither side splits a flow; it would export
  several records per key otherwise (tcp.fin/tcp.rst/udp/icmp/general/maxlife expiries), and
  both sides' records are summed per key anyway.
- Key semantics are the same: softflowd ``-T full`` keys by addresses, protocol and ports (ICMP:
  type and code); the probe runs with ``--key src,dst,proto,ports``.
- softflowd reads libpcap's TPACKET_V3 ring, whose blocks are handed over only when full: the
  tail of a replay can sit unprocessed indefinitely (measured: > 40 s). After the replay we send
  non-IP filler frames, then a runt IPv4 frame that softflowd counts as "too short"; once that
  counter moves, every earlier frame has been processed, and only then ``expire-all``.

tshark then dissects the replayed frames, and each frame's flow key and byte count is derived
twice: the probe's way (IP total length, like ipt_netflow) and softflowd's (frame length minus
the Ethernet/802.1Q header). Both exports must equal these tables exactly; every difference
between the two exports must come from frames carrying one of the reasons below.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from appliance.synth import write_pcap
from tests.integration.test_probe_rig import Collector, rig  # noqa: F401
from tests.integration.test_probe_support import decoded_records, ethernet_pcap

pytestmark = [
    pytest.mark.netns, pytest.mark.root, pytest.mark.peers,
    pytest.mark.skipif(shutil.which("softflowd") is None, reason="softflowd not installed"),
]

#: Ordinary mirror traffic plus the traces that show each reason below.
TRACES = (
    "nDPI/netflix.pcap", "nDPI/teams.pcap", "nDPI/gnutella.pcap", "nDPI/zoom.pcap",
    "nDPI/syslog.pcap", "tcpreplay/test.pcap", "tcpdump/mpls-traceroute.pcap",
    "tcpdump/ipv6-routing-header.pcap", "nDPI/dns_fragmented.pcap", "nDPI/4in6tunnel.pcap",
)

#: Every understood difference, with the reason. Nothing else may differ.
REASONS = {
    "padding": "Ethernet padding of frames shorter than 60 bytes: softflowd counts frame length "
    "minus the L2 header as bytes, the probe the IP total length (as ipt_netflow)",
    "trailer": "bytes after the IP packet in the frame (trailer, FCS, or an IP length field "
    "shorter than the payload): counted by softflowd, not by the probe",
    "truncated": "frame shorter than its IP total length (cut by the original capture): "
    "softflowd counts what is in the frame, the probe what the IP header says",
    "mpls": "MPLS label stack: softflowd counts the 4-byte labels as bytes",
    "two-vlan-tags": "QinQ / two 802.1Q tags: softflowd reads one tag and ignores the frame "
    "as non-IP; the probe accounts it",
    "pppoe": "PPPoE session frames: softflowd does not look into PPPoE; the probe does",
    "mpls-pseudowire": "Ethernet over MPLS with a control word (RFC 4448): softflowd ignores "
    "the frame, the probe accounts the inner frame's IP packet",
    "ipv6-fragment-protocol": "IPv6 non-first fragment: softflowd returns before setting the "
    "protocol and keys it with protocol 0; the probe uses the fragment header's next header",
}

IGNORED_BY_SOFTFLOWD = {"two-vlan-tags", "pppoe", "mpls-pseudowire"}
DAY = "86400"
TIMEOUTS = ("maxlife", "general", "tcp", "tcp.rst", "tcp.fin", "udp", "icmp", "expint")
ICMP = (1, 58)
PORTED = {"tcp": 6, "udp": 17, "sctp": 132}
PROTO_BY_LAYER = {**PORTED, "icmp": 1, "icmpv6": 58, "ip": 4, "ipv6": 41, "gre": 47, "esp": 50,
                  "igmp": 2}


def filler_pcap(path: Path) -> Path:
    """Non-IP frames that fill libpcap's ring block, then one runt IPv4 frame (10 bytes of IP:
    softflowd's "too short"; the probe counts it as truncated, never as a flow)."""
    macs = b"\x02\0\0\0\0\x09\x02\0\0\0\0\x08"
    frames = [macs + b"\x88\xb5" + bytes(1486)] * 200 + [macs + b"\x08\x00" + b"\x45" + bytes(9)]
    return write_pcap(path, [(10**9 + i * 1000, fr) for i, fr in enumerate(frames)])


def softflowd_stats(ctl: Path) -> str:
    return subprocess.run(["softflowctl", "-c", str(ctl), "statistics"], capture_output=True,
                          text=True, timeout=10, check=False).stdout


def _too_short(stats: str) -> int:
    m = re.search(r"Ignored packets: \d+ \(\d+ non-IP, (\d+) too short\)", stats)
    return int(m.group(1)) if m else -1


# --- what tshark sees in the replayed frames ---------------------------------------------

_TSHARK_FIELDS = (
    "frame.len", "frame.protocols", "vlan.id", "eth.type", "ip.src", "ip.dst", "ip.proto",
    "ip.len", "ip.frag_offset", "ipv6.src", "ipv6.dst", "ipv6.plen", "ipv6.fraghdr.nxt",
    "ipv6.fraghdr.offset", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
    "sctp.srcport", "sctp.dstport", "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
    "mpls.label",
)


def tshark_frames(pcap: Path) -> list[dict]:
    """One dict per IP frame: the probe's and softflowd's key and bytes, and the reasons."""
    proc = subprocess.run(
        ["tshark", "-r", str(pcap), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
         "-T", "json", *[x for f in _TSHARK_FIELDS for x in ("-e", f)]],
        capture_output=True, text=True, timeout=120, check=True,
    )
    out = []
    for pkt in json.loads(proc.stdout):
        la = pkt["_source"]["layers"]
        first = {k: v[0] for k, v in la.items()}
        layers = first["frame.protocols"].split(":")
        outer = next((i for i, name in enumerate(layers) if name in ("ip", "ipv6")), None)
        if outer is None:
            continue
        below, above = layers[:outer], [n for n in layers[outer + 1 :] if not n.startswith("ipv6.")]
        v4 = layers[outer] == "ip"
        nxt = above[0] if above else "data"
        if v4:
            src, dst, iplen = first["ip.src"], first["ip.dst"], int(first["ip.len"])
            later_fragment = int(first.get("ip.frag_offset", "0")) > 0
            proto = int(first["ip.proto"])
        else:
            src, dst, iplen = first["ipv6.src"], first["ipv6.dst"], int(first["ipv6.plen"]) + 40
            later_fragment = int(first.get("ipv6.fraghdr.offset", "0")) > 0
            proto = int(first["ipv6.fraghdr.nxt"]) if later_fragment else PROTO_BY_LAYER[nxt]
        sport = dport = 0
        if not later_fragment and nxt in PORTED:
            sport, dport = int(first[f"{nxt}.srcport"]), int(first[f"{nxt}.dstport"])
        elif not later_fragment and nxt in ("icmp", "icmpv6"):
            dport = int(first[f"{nxt}.type"]) << 8 | int(first[f"{nxt}.code"])
        nvlan = below.count("vlan")
        reasons = set()
        if nvlan >= 2 or first.get("eth.type") in ("0x88a8", "0x9100"):
            reasons.add("two-vlan-tags")
        if "pppoes" in below:
            reasons.add("pppoe")
        if "pwethcw" in below:
            reasons.add("mpls-pseudowire")
        sf_proto = proto
        if not v4 and later_fragment:
            sf_proto = 0
            reasons.add("ipv6-fragment-protocol")
        frame_len = int(first["frame.len"])
        extra = frame_len - 14 - 4 * min(nvlan, 1) - iplen
        if "mpls" in below:
            reasons.add("mpls")
            extra_beyond_labels = extra - 4 * len(la.get("mpls.label", []))
        else:
            extra_beyond_labels = extra
        if extra_beyond_labels < 0:
            reasons.add("truncated")
        elif extra_beyond_labels > 0:
            reasons.add("padding" if frame_len == 60 + 4 * min(nvlan, 1) else "trailer")
        out.append({
            "key": (src, dst, proto, sport, dport), "bytes": iplen,
            "sf_key": (src, dst, sf_proto, sport, dport), "sf_bytes": iplen + extra,
            "sf_ignored": bool(reasons & IGNORED_BY_SOFTFLOWD), "reasons": reasons,
        })
    return out


def export_table(payloads: list[bytes]) -> dict:
    """(src, dst, proto, sport, dport) → [packets, bytes] over ALL records of the export
    (ICMP keyed by type and code, which softflowd sends in icmpTypeCode, not in the port)."""
    acc: dict = defaultdict(lambda: [0, 0])
    for r in decoded_records(payloads):
        if r["record_kind"] == "options":
            continue
        proto = r.get("proto", 0)
        dport = r.get("dst_port", 0)
        if proto in ICMP:
            dport = r.get("icmp_type", r.get("icmp_type6", dport))
        key = (r.get("src_addr", r.get("src_addr6")), r.get("dst_addr", r.get("dst_addr6")),
               proto, r.get("src_port", 0), dport)
        acc[key][0] += r["packets"]
        acc[key][1] += r["bytes"]
    return dict(acc)


def frame_table(frames: list[dict], softflowd: bool) -> dict:
    acc: dict = defaultdict(lambda: [0, 0])
    for f in frames:
        if softflowd and f["sf_ignored"]:
            continue
        a = acc[f["sf_key"] if softflowd else f["key"]]
        a[0] += 1
        a[1] += f["sf_bytes"] if softflowd else f["bytes"]
    return dict(acc)


def test_softflowd_agrees_on_every_flow_both_saw(rig, corpus_dir, tmp_path):  # noqa: F811
    parts = [ethernet_pcap(corpus_dir / "traffic" / t, tmp_path / f"{i}.pcap")
             for i, t in enumerate(TRACES)]
    pcap = tmp_path / "replay.pcap"
    subprocess.run(["mergecap", "-a", "-F", "pcap", "-w", str(pcap), *map(str, parts)],
                   check=True, capture_output=True, timeout=60)
    filler = filler_pcap(tmp_path / "filler.pcap")
    ours_c, theirs_c = Collector(), Collector()
    ctl = tmp_path / "sf.ctl"
    sf = subprocess.Popen(
        ["softflowd", "-d", "-i", rig.mirror, "-n", theirs_c.address, "-v", "9", "-T", "full",
         *[x for t in TIMEOUTS for x in ("-t", f"{t}={DAY}")], "-m", "65536", "-c", str(ctl),
         "-p", str(tmp_path / "sf.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    probe, att = rig.probe([ours_c.address], key="src,dst,proto,ports",
                           active_timeout=86400.0, inactive_timeout=86400.0)
    try:
        deadline = time.monotonic() + 20
        while _too_short(softflowd_stats(ctl)) < 0:  # its control socket answers: capturing
            assert time.monotonic() < deadline and sf.poll() is None, "softflowd did not start"
            time.sleep(0.1)
        rig.replay(pcap, "--pps=10000")
        while _too_short(stats := softflowd_stats(ctl)) < 1:
            assert time.monotonic() < deadline + 60, "softflowd never processed the replay"
            rig.replay(filler)
            time.sleep(0.1)
        assert "dropped by libpcap: 0" in stats, stats
        subprocess.run(["softflowctl", "-c", str(ctl), "expire-all"], capture_output=True,
                       timeout=10, check=True)
        theirs_payloads = theirs_c.receive(quiet_s=0.5)
    finally:
        att.detach()
        sf.terminate()
        try:
            sf.wait(10)
        except subprocess.TimeoutExpired:
            sf.kill()
            sf.wait()
    probe.flush()
    probe.close()
    ours, theirs = export_table(ours_c.receive()), export_table(theirs_payloads)
    ours_c.close()
    theirs_c.close()

    frames = tshark_frames(pcap)
    assert ours == frame_table(frames, softflowd=False)  # the probe: IP lengths, every frame
    assert theirs == frame_table(frames, softflowd=True)  # softflowd: the rules in REASONS

    reasons_of: dict = defaultdict(set)
    for f in frames:
        if f["reasons"]:
            reasons_of[f["key"]] |= f["reasons"]
            reasons_of[f["sf_key"]] |= f["reasons"]
    common = set(ours) & set(theirs)
    differing = {k for k in common if ours[k] != theirs[k]} | (set(ours) ^ set(theirs))
    unexplained = {k for k in differing if not reasons_of[k]}
    assert not unexplained, unexplained
    assert set().union(*reasons_of.values()) <= set(REASONS)
    by_reason = {r: sum(r in reasons_of[k] for k in differing) for r in REASONS}
    print(f"softflowd: {len(theirs)} keys, probe: {len(ours)} keys, both {len(common)}, "
          f"identical {sum(ours[k] == theirs[k] for k in common)}; differing keys by reason: "
          f"{by_reason}")
    assert len(common) > 0.9 * len(ours)
