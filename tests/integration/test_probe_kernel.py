"""The probe on a real veth mirror: no loss while draining, timeouts, maxflows, sampling,
destinations, v5/v9/IPFIX, own export traffic. One compiled program for the session."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.probe.attach import attach
from appliance.probe.config import ProbeSettings
from appliance.probe.exporter import MemoryTransport, parse_destination
from appliance.probe.records import Counter, FlowEndReason
from appliance.probe.runner import Probe, SystemClock, build_exporter
from tests.integration.test_probe_rig import Collector, make_rig, pcap_frames, rig  # noqa: F401
from tests.integration.test_probe_support import (
    decoded_records,
    decoder_flows,
    ethernet_pcap,
    tshark_flows,
    write_udp_pcap,
)

pytestmark = [pytest.mark.netns, pytest.mark.root]

LONG = {"active_timeout": 86400.0, "inactive_timeout": 86400.0}


@pytest.fixture(scope="module")
def traces(corpus_dir, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("traces")
    names = {"test": "tcpreplay/test.pcap", "dns_tcp": "tcpdump/dns_tcp.pcap",
             "dns_udp": "tcpdump/dns_udp.pcap", "gnutella": "nDPI/gnutella.pcap"}
    return {k: ethernet_pcap(corpus_dir / "traffic" / v, d / f"{k}.pcap") for k, v in names.items()}


def counters(rig) -> np.ndarray:  # noqa: F811
    return rig.cache.counters().sum(axis=0)


def test_drain_under_load_loses_no_packet(rig, traces):  # noqa: F811
    """Swapping maps every few ms while tcpreplay runs at top speed: every packet is counted."""
    probe, att = rig.probe(["127.0.0.1:9"], **LONG)
    loops = 1500
    drained = [0, 0]
    done = threading.Event()

    def drain_loop() -> None:
        while not done.is_set():
            _, v = rig.cache.drain()
            drained[0] += int(v["packets"].sum())
            drained[1] += 1
            time.sleep(0.002)

    t = threading.Thread(target=drain_loop)
    t.start()
    try:
        started = time.perf_counter()
        rig.replay(traces["test"], "--topspeed", f"--loop={loops}")
        elapsed = time.perf_counter() - started
        rig.wait_frames(loops * pcap_frames(traces["test"]))
    finally:
        done.set()
        t.join(10)
        att.detach()
        probe.close()
    for _ in range(2):
        _, v = rig.cache.drain()
        drained[0] += int(v["packets"].sum())
    k = counters(rig)
    print(f"{loops * 176} IP packets in {elapsed:.2f} s, {drained[1]} map swaps")
    assert drained[1] > 10
    assert int(k[Counter.IP_PACKETS]) == loops * 176
    assert int(k[Counter.ACCOUNTED_PACKETS]) == loops * 176
    assert drained[0] == loops * 176


def _replay_and_flush(rig, pcap, collector, **settings):  # noqa: F811
    probe, att = rig.probe([collector.address], **{**LONG, **settings})
    try:
        rig.replay(pcap)
        rig.wait_frames(pcap_frames(pcap))
    finally:
        att.detach()
    probe.flush()
    probe.close()
    return probe, collector.receive()


@pytest.mark.parametrize("protocol", [5, 9, 10])
def test_v5_v9_ipfix_export_every_packet(rig, traces, tmp_path, protocol):  # noqa: F811
    collector = Collector()
    try:
        probe, payloads = _replay_and_flush(rig, traces["test"], collector, protocol=protocol)
    finally:
        collector.close()
    flows = tshark_flows(payloads, tmp_path)
    assert decoder_flows(payloads) == flows  # our collector reads what tshark reads
    v4 = [f for f in flows if f["src"] and ":" not in f["src"]]
    # test.pcap: 166 IPv4 packets (64 125 bytes) and 10 IPv6 packets in 2 flows
    assert sum(f["packets"] for f in v4) == 166
    if protocol == 5:
        assert len(flows) == len(v4) and probe.exporter.flows_unexportable == 2
    else:
        assert sum(f["packets"] for f in flows) == 176
        assert {f["reason"] for f in flows} == {int(FlowEndReason.FORCED_END)}


def test_inactive_timeout_and_tcp_end_on_a_real_mirror(rig, traces, tmp_path):  # noqa: F811
    collector = Collector()
    probe, att = rig.probe([collector.address], active_timeout=3600.0, inactive_timeout=1.0,
                           tcp_end_timeout=0.0)
    try:
        rig.replay(traces["dns_tcp"])
        rig.replay(traces["dns_udp"])
        rig.wait_frames(pcap_frames(traces["dns_tcp"]) + pcap_frames(traces["dns_udp"]))
        probe.scan()  # TCP flows that saw FIN/RST end now; UDP flows stay
        p1 = collector.receive()
        first = tshark_flows(p1, tmp_path)
        assert first and {f["proto"] for f in first} == {6}
        assert {f["reason"] for f in first} == {int(FlowEndReason.END_OF_FLOW)}
        time.sleep(1.1)
        probe.scan()
        # tshark needs the templates, which only the first datagrams carry
        second = tshark_flows(p1 + collector.receive(), tmp_path)[len(first):]
        assert {f["proto"] for f in second} == {17}
        assert {f["reason"] for f in second} == {int(FlowEndReason.IDLE_TIMEOUT)}
        assert probe.table.active == 0
        assert sum(f["packets"] for f in first + second) == 13
    finally:
        att.detach()
        probe.close()
        collector.close()


def test_active_timeout_splits_a_long_flow(rig, traces, tmp_path):  # noqa: F811
    collector = Collector()
    probe, att = rig.probe([collector.address], active_timeout=0.3, inactive_timeout=60.0)
    try:
        for _ in range(4):
            rig.replay(traces["dns_udp"])
            time.sleep(0.35)
            probe.scan()
    finally:
        att.detach()
    probe.flush()
    probe.close()
    flows = tshark_flows(collector.receive(), tmp_path)
    collector.close()
    per_key: dict = {}
    for f in flows:
        per_key.setdefault((f["src"], f["sport"]), []).append(f)
    assert all(len(v) >= 3 for v in per_key.values())
    assert sum(f["packets"] for f in flows) == 8
    assert int(FlowEndReason.ACTIVE_TIMEOUT) in {f["reason"] for f in flows}


def test_sampling_deterministic_and_hash(rig, traces, tmp_path):  # noqa: F811
    collector = Collector()
    try:
        probe, payloads = _replay_and_flush(rig, traces["gnutella"], collector,
                                            sampler="deterministic:10")
        k = counters(rig)
        flows = tshark_flows(payloads, tmp_path)
        selected, discarded = int(k[Counter.SAMPLER_SELECTED]), int(k[Counter.SAMPLER_DISCARDED])
        assert selected + discarded == int(k[Counter.IP_PACKETS])
        assert abs(selected - int(k[Counter.IP_PACKETS]) / 10) <= rig.cache.ncpu
        assert sum(f["packets"] for f in flows) == selected

        probe, payloads = _replay_and_flush(rig, traces["gnutella"], collector, sampler="hash:4")
        hashed = {(f["src"], f["dst"], f["sport"], f["dport"], f["proto"]): f["packets"]
                  for f in tshark_flows(payloads, tmp_path)}
        probe, payloads = _replay_and_flush(rig, traces["gnutella"], collector)
        full = {(f["src"], f["dst"], f["sport"], f["dport"], f["proto"]): f["packets"]
                for f in tshark_flows(payloads, tmp_path)}
        # hash sampling selects whole flows: each selected flow is complete
        assert hashed and all(full[key] == n for key, n in hashed.items())
        assert 0.1 < len(hashed) / len(full) < 0.45
    finally:
        collector.close()


@pytest.fixture(scope="module")
def small_rig(netns_factory, tmp_path_factory):
    yield from make_rig(netns_factory, tmp_path_factory, maxflows=64)


def test_maxflows_full_refuses_counts_and_warns(small_rig, traces, tmp_path):
    collector = Collector()
    small_rig.cache.reset()
    s = ProbeSettings(interfaces=[small_rig.mirror], destinations=[collector.address],
                      state_dir=small_rig.state_dir, maxflows=64, **LONG)
    warnings: list[str] = []
    clock = SystemClock()
    probe = Probe(s, small_rig.cache, build_exporter(s, clock), clock, warn=warnings.append)
    att = attach(small_rig.mirror, small_rig.cache.prog_fd, state_dir=small_rig.state_dir)
    try:
        small_rig.replay(traces["gnutella"])
        small_rig.wait_frames(pcap_frames(traces["gnutella"]))
        probe.scan()
    finally:
        att.detach()
    probe.flush()
    probe.close()
    payloads = collector.receive()
    collector.close()
    k = counters(small_rig)
    refused = int(k[Counter.REFUSED_PACKETS]) + probe.table.stats.refused_packets
    flows = tshark_flows(payloads, tmp_path)
    assert int(k[Counter.REFUSED_PACKETS]) > 0
    assert sum(f["packets"] for f in flows) + refused == int(k[Counter.IP_PACKETS])
    assert warnings and "full" in warnings[0]
    # the statistics options record carries the ignored packets
    from tests.integration.test_probe_support import write_udp_pcap
    pcap = tmp_path / "opts.pcap"
    write_udp_pcap(pcap, payloads)
    text = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==2055,cflow", "-V"],
                          capture_output=True, text=True, check=True).stdout
    assert f": {refused}" in text.split("Ignored")[-1][:200] or str(refused) in text


def test_every_destination_gets_every_packet_and_errors_are_counted(rig, traces, tmp_path):  # noqa: F811
    c4 = Collector()
    c6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c6.bind(("::1", 0))
    c6.settimeout(0.2)
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nobody listens there: ICMP port unreachable
    dests = [c4.address, f"[::1]:{c6.getsockname()[1]}", f"127.0.0.1:{dead_port}"]
    probe, att = rig.probe(dests, **LONG)
    try:
        rig.replay(traces["test"])
        rig.wait_frames(pcap_frames(traces["test"]))
        probe.scan()
        probe.send_options()
        time.sleep(0.05)
        probe.send_options()
    finally:
        att.detach()
    probe.flush()
    probe.close()
    got4 = c4.receive()
    got6 = []
    try:
        while True:
            got6.append(c6.recv(65535))
    except TimeoutError:
        pass
    c4.close()
    c6.close()
    assert got4 == got6 and len(got4) >= 3
    st = probe.exporter.stats
    assert st[0].errors == st[1].errors == 0
    assert st[2].errors_by_cause.get("ECONNREFUSED", 0) >= 1
    assert sum(f["packets"] for f in tshark_flows(got4, tmp_path)) == 176


def test_own_export_traffic_is_never_accounted(rig, traces):  # noqa: F811
    rig.cache.reset()
    # dns_udp.pcap's query goes to 209.87.249.18:53: pretend that is our collector
    s = ProbeSettings(interfaces=[rig.mirror], destinations=["209.87.249.18:53"],
                      state_dir=rig.state_dir, **LONG)
    clock = SystemClock()
    probe = Probe(s, rig.cache, build_exporter(s, clock, transports=[MemoryTransport()]), clock)
    att = attach(rig.mirror, rig.cache.prog_fd, state_dir=rig.state_dir)
    try:
        rig.replay(traces["dns_udp"])
        rig.wait_frames(2)
    finally:
        att.detach()
    probe.flush()
    k = counters(rig)
    assert int(k[Counter.SELF_EXPORT]) == 1
    assert int(k[Counter.ACCOUNTED_PACKETS]) == 1
    assert parse_destination("209.87.249.18:53").port == 53


def test_mpls_label_direction_and_interface_names_on_a_real_mirror(rig, corpus_dir, tmp_path):  # noqa: F811
    """MPLS top label and flowDirection from real frames, interface names from the real
    interface: our decoder and tshark read the same values."""
    router = "f8:1e:df:e5:84:3a"  # in tcpreplay/test.pcap: 70 frames from it, 70 to it
    mpls = ethernet_pcap(corpus_dir / "traffic/tcpdump/mpls-traceroute.pcap", tmp_path / "m.pcap")
    test = ethernet_pcap(corpus_dir / "traffic/tcpreplay/test.pcap", tmp_path / "t.pcap")
    collector = Collector()
    probe, att = rig.probe([collector.address], direction_mac=router, **LONG)
    try:
        rig.replay(mpls)
        rig.replay(test)
        rig.wait_frames(pcap_frames(mpls) + pcap_frames(test))
        probe.scan()  # the first scan sends the interface names and the system options
    finally:
        att.detach()
    probe.flush()
    probe.close()
    payloads = collector.receive()
    collector.close()
    assert decoder_flows(payloads) == tshark_flows(payloads, tmp_path)
    recs = decoded_records(payloads)
    data = [r for r in recs if r["record_kind"] == "data"]
    labelled = {(r["src_addr"], r["dst_addr"], r["dst_port"]): (r["mpls_label_1"] >> 4,
                r["mpls_label_1"] & 1, r["mpls_top_label_ttl"]) for r in data if "mpls_label_1" in r}
    # mpls-traceroute: UDP probes 12.4.4.4 → 12.1.1.1 under label 100704 (bottom of stack),
    # MPLS TTL 1..3; the ICMP answers come back unlabelled
    probes = {k: v for k, v in labelled.items() if k[0] == "12.4.4.4"}
    assert len(probes) == 9 and {v[:2] for v in probes.values()} == {(100704, 1)}
    assert {v[2] for v in probes.values()} == {1, 2, 3}
    # test.pcap: pings under one label (18) and under two-label stacks (top 18 or 19)
    assert {k: v for k, v in labelled.items() if k[0] != "12.4.4.4"} == {
        ("192.168.10.1", "192.168.40.1", 8 << 8): (18, 1, 254),
        ("192.168.1.2", "192.168.1.1", 0): (18, 0, 254),
        ("10.31.0.1", "10.34.0.1", 8 << 8): (18, 0, 255),
        ("192.168.1.1", "192.168.1.2", 8 << 8): (19, 0, 254),
    }
    by_dir = {d: sum(r["packets"] for r in data if r.get("direction") == d) for d in (0, 1)}
    assert by_dir == {0: 70, 1: 70}
    names = [r for r in recs if r.get("if_name")]
    assert [(r["scope_interface"], r["if_name"], r["if_desc"]) for r in names] == [
        (att.ifindex, rig.mirror, "veth")]

    pcap = tmp_path / "export.pcap"
    write_udp_pcap(pcap, payloads)
    fields = ("cflow.mpls_label", "cflow.direction", "cflow.if_name", "cflow.if_descr",
              "cflow.scope_interface", "cflow.observation_domain_name")
    out = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==2055,cflow", "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=|",
                          *[x for f in fields for x in ("-e", f)]],
                         capture_output=True, text=True, check=True).stdout
    seen: dict[str, list[str]] = {f: [] for f in fields}
    for line in out.splitlines():
        for f, value in zip(fields, line.split("\t"), strict=True):
            seen[f] += [v for v in value.split("|") if v]
    assert sorted(seen["cflow.mpls_label"], key=int) == ["18"] * 3 + ["19"] + ["100704"] * 9
    assert sorted(seen["cflow.direction"]) == sorted(str(r["direction"]) for r in data
                                                     if "direction" in r)
    assert seen["cflow.if_name"] == [rig.mirror] and seen["cflow.if_descr"] == ["veth"]
    assert seen["cflow.scope_interface"] == [str(att.ifindex)]
    assert len(seen["cflow.observation_domain_name"]) >= 1
