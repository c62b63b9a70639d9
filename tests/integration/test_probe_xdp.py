"""``--attach xdp``: the same parser built for XDP (native and generic, both work on veth)
counts exactly what the TC program counts on the same frames, and its export matches the
reference tables; the CLI attaches, detaches and cleans up after kill -9 like with TC."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from appliance.probe.attach import attach
from appliance.probe.records import Counter
from tests.integration.test_probe_corpus import LONG, exported_table, reference_table
from tests.integration.test_probe_rig import (  # noqa: F401
    Collector,
    make_rig,
    pcap_frames,
    rig,
    start_probe,
    wait_probe_frames,
)
from tests.integration.test_probe_support import decoder_flows, ethernet_pcap, reference_flows

pytestmark = [pytest.mark.netns, pytest.mark.root]

#: Frames where TC and XDP see different things if anything differs: 802.1Q (TC gets the outer
#: tag from skb->vlan_tci, XDP from the frame), QinQ, 802.1ad, PPPoE, MPLS, Ethernet
#: pseudowires, IPv6 extension headers and fragments, IPv4 fragments.
TRACES = (
    "tcpreplay/test.pcap", "nDPI/zoom.pcap", "nDPI/syslog.pcap", "tcpdump/mpls-traceroute.pcap",
    "tcpdump/ipv6-routing-header.pcap", "nDPI/dns_fragmented.pcap", "tcpdump/802.1ad_QinQ.pcap",
    "suricata-verify/eve-flow-vlan__input.pcap", "suricata-verify/eve-flow-vlan-02__input.pcap",
    "suricata-verify/defrag__bug-6887-defrag-eth-vlan-ipv6-tcp__frag-eth-vlan-ipv6-tcp.pcap",
    "suricata-verify/exception-policy-defrag-01__ipv4frags.pcap",
)


@pytest.fixture(scope="module")
def xdp_rig(netns_factory, tmp_path_factory):
    yield from make_rig(netns_factory, tmp_path_factory, hook="xdp")


@pytest.fixture(scope="module")
def mixed(corpus_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("xdp")
    parts = [ethernet_pcap(corpus_dir / "traffic" / t, d / f"{i}.pcap") for i, t in enumerate(TRACES)]
    out = d / "mixed.pcap"
    subprocess.run(["mergecap", "-a", "-F", "pcap", "-w", str(out), *map(str, parts)],
                   check=True, capture_output=True, timeout=60)
    return out


def xdp_attached(dev: str) -> str:
    """'xdp' (native), 'xdpgeneric' or '' from ``ip link``."""
    out = subprocess.run(["ip", "link", "show", dev], capture_output=True, text=True).stdout
    for word in ("xdpgeneric", "xdpdrv", "xdpoffload", "xdp"):
        if f" {word} " in out or f" {word}/" in out:
            return word
    return ""


@pytest.mark.parametrize("mode", ["generic", "native"])
def test_xdp_counts_exactly_what_tc_counts(xdp_rig, rig, mixed, corpus_dir, tmp_path, mode):  # noqa: F811
    collector = Collector()
    probe, att = xdp_rig.probe([collector.address], xdp_mode=mode, **LONG)
    # The TC program of the session rig, on the same mirror: XDP passes every frame on to it.
    rig.cache.reset()
    tc_att = attach(xdp_rig.mirror, rig.cache.prog_fd, state_dir=tmp_path / "tc")
    try:
        assert xdp_attached(xdp_rig.mirror) == ("xdpgeneric" if mode == "generic" else "xdp")
        xdp_rig.replay(mixed)
        xdp_rig.wait_frames(pcap_frames(mixed))
    finally:
        tc_att.detach()
        att.detach()
    assert xdp_attached(xdp_rig.mirror) == ""
    probe.flush()
    probe.close()
    payloads = collector.receive()
    collector.close()

    k_xdp, k_tc = xdp_rig.cache.counters().sum(axis=0), rig.cache.counters().sum(axis=0)
    differ = {c.name: (int(k_xdp[c]), int(k_tc[c])) for c in Counter if k_xdp[c] != k_tc[c]}
    assert not differ, str(differ)
    assert k_xdp[Counter.FRAMES] == pcap_frames(mixed)
    assert k_xdp[Counter.VLAN] > 0 and k_xdp[Counter.MPLS] > 0 and k_xdp[Counter.FRAGMENTS] > 0
    # corpus frames are addressed to other MACs: promisc-only, told apart in XDP by the MAC map
    assert 0 < k_xdp[Counter.PROMISC_ONLY] < k_xdp[Counter.FRAMES]

    tc_keys, tc_vals = (np.concatenate(x) for x in zip(*(rig.cache.drain() for _ in range(2))))
    assert int(tc_vals["packets"].sum()) == int(k_xdp[Counter.ACCOUNTED_PACKETS])

    ref = reference_table([f for t in TRACES
                           for f in reference_flows(corpus_dir, corpus_dir / "traffic" / t)])
    assert exported_table(decoder_flows(payloads)) == ref


def test_cli_xdp_generic_attach_detach_and_kill_9_cleanup(xdp_rig, mixed, tmp_path):
    state = tmp_path / "state"
    args = ("--attach", "xdp", "--xdp-mode", "generic", *sum((("--" + k.replace("_", "-"),
            str(v)) for k, v in LONG.items()), ()))
    proc = start_probe(xdp_rig.mirror, ["127.0.0.1:9"], state, *args)
    proc.kill()
    proc.communicate(timeout=10)
    assert xdp_attached(xdp_rig.mirror) == "xdpgeneric"  # the leftover of a killed probe
    collector = Collector()
    proc = start_probe(xdp_rig.mirror, [collector.address], state, *args)
    try:
        assert xdp_attached(xdp_rig.mirror) == "xdpgeneric"
        xdp_rig.replay(mixed)
        wait_probe_frames(state, pcap_frames(mixed))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        payloads = collector.receive()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        collector.close()
    assert proc.returncode == 0, err
    assert "attached (XDP generic, promisc)" in proc.capturing_line
    final = json.loads((state / "stats-final.json").read_text())
    assert final["attach"] == "xdp generic"
    accounted = final["kernel"]["total"]["accounted_packets"]
    assert accounted > 0 and sum(f["packets"] for f in decoder_flows(payloads)) == accounted
    assert xdp_attached(xdp_rig.mirror) == ""
    assert "PROMISC" not in subprocess.run(["ip", "link", "show", xdp_rig.mirror],
                                           capture_output=True, text=True).stdout
