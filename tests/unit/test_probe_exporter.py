"""The probe's exporter: v5/v9/IPFIX payloads decoded by tshark, destinations, send errors."""

from __future__ import annotations

import errno
import shutil

import numpy as np
import pytest

from appliance.probe.exporter import Exporter, MemoryTransport, parse_destination
from appliance.probe.flowtable import FLOW_DTYPE
from appliance.probe.records import SamplerMode
from tests.integration.test_probe_support import tshark_flows

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def make_flows(n4: int, n6: int) -> np.ndarray:
    f = np.zeros(n4 + n6, FLOW_DTYPE)
    for i in range(n4 + n6):
        k, v = f[i]["key"], f[i]["val"]
        if i < n4:
            k["src"][:4] = [10, 0, i // 256, i % 256]
            k["dst"][:4] = [192, 0, 2, 1]
            k["ipver"] = 4
        else:
            k["src"][:] = [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [i % 256]
            k["dst"][:] = [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [1]
            k["ipver"] = 6
        k["sport"] = 1000 + i
        k["dport"] = 443
        k["proto"] = 6
        k["vlan"] = 100
        v["packets"] = i + 1
        v["bytes"] = 100 * (i + 1)
        v["first_ns"] = 10**9
        v["last_ns"] = 2 * 10**9
        v["tcp_flags"] = 0x1B
        f[i]["end_reason"] = 1
    return f


def test_parse_destination():
    assert str(parse_destination("127.0.0.1:9995")) == "127.0.0.1:9995"
    assert str(parse_destination("[::1]:2055")) == "[::1]:2055"
    assert parse_destination("192.0.2.1").port == 2055


@needs_tshark
@pytest.mark.parametrize("protocol", [5, 9, 10])
def test_every_flow_reaches_every_destination_and_tshark_reads_it(protocol, tmp_path):
    transports = [MemoryTransport(), MemoryTransport()]
    dests = [parse_destination("127.0.0.1:1"), parse_destination("[::1]:2")]
    ex = Exporter(dests, protocol, transports=transports)
    flows = make_flows(70, 0 if protocol == 5 else 30)
    ex.export(flows, epoch_offset_ns=1_700_000_000 * 10**9)
    assert transports[0].sent == transports[1].sent
    assert all(len(p) <= 1400 for p in transports[0].sent)
    decoded = tshark_flows(transports[0].sent, tmp_path)
    assert len(decoded) == len(flows)
    got = sorted((d["sport"], d["packets"], d["bytes"]) for d in decoded)
    want = sorted((int(f["key"]["sport"]), int(f["val"]["packets"]), int(f["val"]["bytes"]))
                  for f in flows)
    assert got == want
    assert ex.stats[0].flows == len(flows) and ex.stats[1].flows == len(flows)
    if protocol != 5:
        assert {d["vlan"] for d in decoded} == {100}
        assert {d["reason"] for d in decoded} == {1}
        ex.send_options(ignored_packets=7, ignored_bytes=700)


def test_v5_leaves_ipv6_out_and_counts_it():
    t = MemoryTransport()
    ex = Exporter([parse_destination("127.0.0.1:1")], 5, transports=[t])
    ex.export(make_flows(3, 2), 0)
    assert ex.flows_unexportable == 2
    assert sum(int.from_bytes(p[2:4], "big") for p in t.sent) == 3


def test_v5_header_announces_sampling():
    t = MemoryTransport()
    ex = Exporter([parse_destination("127.0.0.1:1")], 5, transports=[t],
                  sampler=(SamplerMode.RANDOM, 100))
    ex.export(make_flows(1, 0), 0)
    assert int.from_bytes(t.sent[0][22:24], "big") == (2 << 14) | 100


def test_send_errors_are_counted_per_destination_and_the_rest_goes_on():
    ok, full, refused = MemoryTransport(), MemoryTransport(), MemoryTransport()
    full.fail_with = errno.ENOBUFS
    refused.fail_with = errno.ECONNREFUSED
    dests = [parse_destination(f"127.0.0.1:{p}") for p in (1, 2, 3)]
    ex = Exporter(dests, 9, transports=[ok, full, refused])
    ex.export(make_flows(100, 0), 0)
    assert ex.stats[0].errors == 0 and ex.stats[0].flows == 100
    assert ex.stats[1].errors_by_cause == {"ENOBUFS": len(ok.sent)}
    # refused: held for that destination (nothing lost yet), the others unaffected
    assert ex.stats[2].errors_by_cause == {"ECONNREFUSED": 1}
    assert ex.stats[2].held == len(ok.sent) and ex.stats[2].flows_lost == 0
    assert ex.stats[1].flows_lost == 100
    ex.close()  # what is still held when the probe stops is lost, and counted
    assert ex.stats[2].flows_lost == 100 and ex.stats[2].held == 0


def _set_ids(payload: bytes) -> list[int]:
    off, ids = 20, []  # v9 header
    while off + 4 <= len(payload):
        ids.append(int.from_bytes(payload[off : off + 2], "big"))
        off += int.from_bytes(payload[off + 2 : off + 4], "big")
    return ids


def test_templates_and_options_go_out_again_after_a_refused_send():
    """A collector that starts after the probe missed the templates: the next packet has them."""
    t = MemoryTransport()
    ex = Exporter([parse_destination("127.0.0.1:9")], 9, transports=[t], template_refresh_packets=1000)
    ex.export(make_flows(1, 0), 0)
    assert _set_ids(t.sent[0])[0] == 0  # the first packet: template FlowSet (id 0) first
    ex.export(make_flows(1, 0), 0)
    assert 0 not in _set_ids(t.sent[1]) and 1 not in _set_ids(t.sent[1])  # not due yet
    ex.send_options(0, 0)  # sent now: not due again for a minute
    assert not ex.options_due(ex.clock())
    t.fail_with = errno.ECONNREFUSED  # ICMP port unreachable for an earlier datagram
    ex.export(make_flows(1, 0), 0)  # not sent: held
    t.fail_with = None
    n = len(t.sent)
    ex.export(make_flows(1, 0), 0)  # held too: the destination refuses until a probe passes
    assert len(t.sent) == n
    ex.retry()  # the oldest held datagram goes out as a probe
    ex.retry()  # it was not refused: the rest follows
    assert len(t.sent) == n + 2 and ex.stats[0].held == 0
    assert _set_ids(t.sent[n])[0] == 256  # the held one, as it was encoded
    assert _set_ids(t.sent[n + 1])[0] == 0, _set_ids(t.sent[n + 1])  # templates again
    assert ex.options_due(ex.clock()) and ex.names_due(ex.clock())
    # Once a second at most: a second failure right away does not force them again.
    t.fail_with = errno.ECONNREFUSED
    ex.export(make_flows(1, 0), 0)
    t.fail_with = None
    ex.export(make_flows(1, 0), 0)
    n = len(t.sent)
    ex.retry()
    ex.retry()
    assert [0 in _set_ids(p) for p in t.sent[n:]] == [False, False]
    assert ex.stats[0].errors == 2 and ex.stats[0].flows_lost == 0
    assert ex.stats[0].flows == 6 and ex.stats[0].resent == 4


def _v9_seq(payload: bytes) -> int:
    return int.from_bytes(payload[12:16], "big")


@pytest.mark.parametrize("late_scans", [1, 3, 10])
def test_a_collector_that_starts_late_gets_every_datagram_once_in_sequence(late_scans):
    """Nobody listens for `late_scans` scans (ICMP refusals, like a connected UDP socket to a
    closed port), then the collector starts: every datagram arrives exactly once, with the
    sequence numbers it was encoded with, none missing."""
    t = MemoryTransport()
    t.listening = False
    ex = Exporter([parse_destination("127.0.0.1:9")], 9, transports=[t])
    flows = 0
    for scan in range(late_scans + 4):
        if scan == late_scans:
            t.listening = True
        ex.retry()
        ex.export(make_flows(40 + scan, 0), 0)
        flows += 40 + scan
        ex.send_options(0, 0)
    ex.retry()
    ex.retry()
    seqs = sorted(_v9_seq(p) for p in t.sent)
    assert seqs == list(range(ex.encoder.messages_sent))
    assert sum(ex._flows_in([p], 256)[0] for p in t.sent) == flows
    st = ex.stats[0]
    assert (st.flows, st.flows_lost, st.held) == (flows, 0, 0)
    assert st.refused >= 1 and st.errors >= 1


@needs_tshark
def test_sampler_and_statistics_options_decode(tmp_path):
    import subprocess

    from tests.integration.test_probe_support import write_udp_pcap

    for protocol in (9, 10):
        t = MemoryTransport()
        ex = Exporter([parse_destination("127.0.0.1:1")], protocol, transports=[t],
                      sampler=(SamplerMode.DETERMINISTIC, 10))
        ex.send_options(ignored_packets=5, ignored_bytes=500)
        pcap = tmp_path / f"o{protocol}.pcap"
        write_udp_pcap(pcap, t.sent)
        out = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==2055,cflow", "-V"],
                             capture_output=True, text=True, check=True).stdout
        assert "Options" in out
        assert ("Sampling" in out) or ("Selector" in out)
        assert "Ignored" in out or "ignored" in out


ROUTER = bytes.fromhex("0200000000aa")
LABEL = 100704


def feature_flows() -> np.ndarray:
    """Four IPv4 and two IPv6 flows: plain, MPLS, from the router, to the router with MPLS."""
    f = make_flows(4, 2)
    for i in (1, 3, 5):
        f[i]["val"]["mpls_top"] = LABEL << 12 | 5 << 9 | 1 << 8 | 254
        f[i]["val"]["mpls_depth"] = 1
    f[2]["val"]["src_mac"] = list(ROUTER)
    f[3]["val"]["dst_mac"] = list(ROUTER)
    f[4]["val"]["src_mac"] = list(ROUTER)
    return f


def tshark_fields(payloads: list[bytes], tmp_path, *fields: str) -> list[dict[str, list[str]]]:
    import json
    import subprocess

    from tests.integration.test_probe_support import write_udp_pcap

    pcap = tmp_path / "f.pcap"
    write_udp_pcap(pcap, payloads)
    out = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==2055,cflow", "-T", "json",
                          *[x for f in fields for x in ("-e", f)]],
                         capture_output=True, text=True, check=True).stdout
    return [p["_source"]["layers"] for p in json.loads(out)]


@needs_tshark
@pytest.mark.parametrize("protocol", [9, 10])
def test_mpls_label_direction_names_and_system_options(protocol, tmp_path):
    from appliance.probe.exporter import VERSION_STRING
    from tests.integration.test_probe_support import decoded_records

    t = MemoryTransport()
    ex = Exporter([parse_destination("127.0.0.1:1")], protocol, transports=[t],
                  direction_mac=ROUTER, boot_ns=1_700_000_000_123 * 10**6)
    ex.send_interface_names([(3, "ens4", "mirror of sw1 Gi0/1")])
    ex.export(feature_flows(), 0)
    ex.send_options(ignored_packets=0, ignored_bytes=0)
    recs = decoded_records(t.sent)
    data = sorted((r for r in recs if r["record_kind"] == "data"), key=lambda r: r["src_port"])
    assert len(data) == 6
    # the MPLS top label (70: label << 4 | exp << 1 | bottom) and its TTL, only where present
    top = LABEL << 4 | 5 << 1 | 1
    assert [r.get("mpls_label_1") for r in data] == [None, top, None, top, None, top]
    assert [r.get("mpls_top_label_ttl") for r in data] == [None, 254, None, 254, None, 254]
    # flowDirection only when the router's MAC says it: 1 egress (from it), 0 ingress (to it)
    assert [r.get("direction") for r in data] == [None, None, 1, 0, 1, None]
    opts = [r for r in recs if r["record_kind"] == "options"]
    names = [r for r in opts if "if_name" in r]
    assert [(r.get("scope_interface", r.get("in_if")), r["if_name"], r["if_desc"])
            for r in names] == [(3, "ens4", "mirror of sw1 Gi0/1")]
    (system,) = [r for r in opts if "observation_domain_name" in r]
    assert system["observation_domain_name"] == VERSION_STRING
    assert system["system_init_time_ms"] == 1_700_000_000_123

    layers = tshark_fields(t.sent, tmp_path, "cflow.mpls_label", "cflow.mpls_top_label_ttl",
                           "cflow.direction", "cflow.if_name", "cflow.if_descr",
                           "cflow.observation_domain_name", "cflow.sys_init_time",
                           "cflow.srcport")
    seen = {k: sum((la.get(k, []) for la in layers), []) for k in set().union(*layers)}
    assert sorted(map(int, seen["cflow.mpls_label"])) == [LABEL] * 3
    assert seen["cflow.mpls_top_label_ttl"] == ["254"] * 3
    assert sorted(seen["cflow.direction"]) == ["0", "1", "1"]
    assert seen["cflow.if_name"] == ["ens4"] and seen["cflow.if_descr"] == ["mirror of sw1 Gi0/1"]
    assert seen["cflow.observation_domain_name"] == [VERSION_STRING]
    assert seen["cflow.sys_init_time"] == ["Nov 14, 2023 22:13:20.123000000 UTC"]
