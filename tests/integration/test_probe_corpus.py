"""Replay every trace of the corpus into a veth mirror; the export, decoded by our collector's
`Decoder` and by tshark (which must agree record by record), must match the reference flow
tables exactly, flow by flow, in packets and bytes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from appliance.probe.records import Counter
from tests.integration.test_probe_rig import Collector, pcap_frames, rig  # noqa: F401
from tests.integration.test_probe_support import (
    decoder_flows,
    ethernet_pcap,
    reference_flows,
    tshark_flows,
)

pytestmark = [pytest.mark.netns, pytest.mark.root, pytest.mark.peers]

PORTED = (6, 17, 132)
#: Traces where the reference table is not what a NetFlow probe exports; only totals of packets
#: are compared there. The reference takes the first IPv4 header anywhere in the frame, and the
#: last UDP ports: a probe keys tunnels by their outer header, like ipt_netflow and routers.
REFERENCE_QUIRKS = {
    "nDPI/4in6tunnel.pcap": "reference keys IPv4-in-IPv6 by the inner IPv4 header and length",
    "nDPI/rtmp.pcap": "reference keys GTP-U (udp/2152) by the tunnelled UDP ports",
}
LONG = {"active_timeout": 86400.0, "inactive_timeout": 86400.0}


def _norm_key(vlan, src, dst, proto, sport, dport):
    ports = (sport, dport) if proto in PORTED and sport is not None and (sport, dport) != (0, 0) else None
    return (int(vlan) if vlan not in (None, 0, "0") else None, src, dst, proto, ports)


def reference_table(ref: list[dict]) -> dict:
    acc: dict = defaultdict(lambda: [0, 0])
    for f in ref:
        k = _norm_key(f["vlan"], f["src_addr"], f["dst_addr"], f["proto"], f["src_port"],
                      f["dst_port"])
        acc[k][0] += f["packets"]
        acc[k][1] += f["ip_bytes"]
    return {k: tuple(v) for k, v in acc.items()}


def exported_table(flows: list[dict]) -> dict:
    acc: dict = defaultdict(lambda: [0, 0])
    for f in flows:
        k = _norm_key(f["vlan"], f["src"], f["dst"], f["proto"], f["sport"], f["dport"])
        acc[k][0] += f["packets"]
        acc[k][1] += f["bytes"]
    return {k: tuple(v) for k, v in acc.items()}


def traces(corpus: Path) -> list[Path]:
    return sorted(p for p in (corpus / "traffic").rglob("*") if p.is_file()
                  and (p.name.endswith(".pcap") or p.name.endswith(".pcapng")))


@pytest.mark.parametrize("protocol", [9])
def test_corpus_replay_matches_reference_exactly(rig, corpus_dir, tmp_path, protocol):  # noqa: F811
    """Every trace: the export decoded by our `Decoder` equals the reference table flow by
    flow (packets and bytes), and tshark decodes the very same records (record by record)."""
    collector = Collector()
    mismatches: dict[str, object] = {}
    runs: list[tuple[str, dict, list[bytes]]] = []
    try:
        for trace in traces(corpus_dir):
            ref = reference_table(reference_flows(corpus_dir, trace))
            pcap = ethernet_pcap(trace, tmp_path / "replay.pcap")
            frames = pcap_frames(pcap)
            probe, att = rig.probe([collector.address], protocol=protocol, **LONG)
            try:
                rig.replay(pcap)
                seen = rig.wait_frames(frames)
            finally:
                att.detach()
            probe.flush()
            probe.close()
            rel = str(trace.relative_to(corpus_dir / "traffic"))
            if seen != frames:
                mismatches[rel] = f"kernel saw {seen} of {frames} frames"
            assert int(rig.cache.counters().sum(axis=0)[Counter.REFUSED_PACKETS]) == 0
            runs.append((rel, ref, collector.receive()))
    finally:
        collector.close()
    # One tshark run over every trace's export (each trace gets its own UDP source port).
    payloads = [p for _, _, ps in runs for p in ps]
    sports = [40000 + i for i, (_, _, ps) in enumerate(runs) for _ in ps]
    by_tshark: dict[int, list[dict]] = defaultdict(list)
    for f in tshark_flows(payloads, tmp_path, sports):
        by_tshark[sports[f.pop("frame")] - 40000].append(f)
    totals = [0, 0, 0]
    for i, (rel, ref, ps) in enumerate(runs):
        ours = decoder_flows(ps)
        for f in ours:
            f.pop("frame")
        if ours != by_tshark[i]:
            mismatches[rel] = f"decoder and tshark differ: {len(ours)} vs {len(by_tshark[i])} records"
            continue
        got = exported_table(ours)
        if rel in REFERENCE_QUIRKS:
            if sum(v[0] for v in got.values()) != sum(v[0] for v in ref.values()):
                mismatches[rel] = "packet totals differ"
        elif got != ref:
            diff = {key: (got.get(key), ref.get(key)) for key in set(got) | set(ref)
                    if got.get(key) != ref.get(key)}
            mismatches[rel] = dict(list(diff.items())[:5])
        totals[0] += sum(v[0] for v in got.values())
        totals[1] += sum(v[1] for v in got.values())
        totals[2] += len(ours)
    print(f"corpus: {len(runs)} traces, {totals[2]} records, {totals[0]} packets, {totals[1]} "
          "bytes exported; decoder = tshark record by record; tables = reference")
    assert not mismatches, mismatches
