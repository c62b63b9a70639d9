"""A full kernel map and a full flow table on a real veth mirror: exact refused counts per
stage, exported in the refusals options records; everything else is exported exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.probe.attach import attach
from appliance.probe.config import ProbeSettings
from appliance.probe.records import Counter
from appliance.probe.runner import Probe, SystemClock, build_exporter
from appliance.synth import udp_frame, write_pcap
from tests.integration.test_probe_rig import Collector, make_rig
from tests.integration.test_probe_support import tshark_flows
from tests.unit.test_probe_runner import _refusal_records

pytestmark = [pytest.mark.netns, pytest.mark.root]

MAXFLOWS = 64
LONG = {"active_timeout": 86400.0, "inactive_timeout": 86400.0}


def udp_pcap(path: Path, packets: list[tuple[int, int]]) -> Path:
    """One UDP frame per (source port, IP length): 10.0.0.1:sport → 10.0.0.2:53."""
    return write_pcap(path, [(10**9 + i * 1000, udp_frame("10.0.0.1", "10.0.0.2", sport, 53, bytes(ip_len - 28)))
                             for i, (sport, ip_len) in enumerate(packets)])


@pytest.fixture(scope="module")
def small_rig(netns_factory, tmp_path_factory):
    yield from make_rig(netns_factory, tmp_path_factory, maxflows=MAXFLOWS)


def test_full_map_and_full_table_refuse_exact_counts(small_rig, tmp_path):
    rig = small_rig
    rig.cache.reset()
    # 100 new flows (IP length 46 + i), then a second packet of flows 0..9: the kernel map
    # takes the first 64 flows in arrival order and refuses flows 64..99, one packet each.
    first = [(1000 + i, 46 + i) for i in range(100)] + [
        (1000 + i, 46 + i) for i in range(10)
    ]
    # later, 30 more new flows of 200 bytes: the kernel's other map takes them all, the
    # table (64 flows, emergency expiry off) has no room for any.
    second = [(5000 + i, 200) for i in range(30)]
    collector = Collector()
    s = ProbeSettings(
        interfaces=[rig.mirror],
        destinations=[collector.address],
        state_dir=rig.state_dir,
        maxflows=MAXFLOWS,
        emergency_fill=1.0,
        **LONG,
    )
    clock = SystemClock()
    probe = Probe(s, rig.cache, build_exporter(s, clock), clock, warn=lambda _m: None)
    att = attach(rig.mirror, rig.cache.prog_fd, state_dir=rig.state_dir)
    try:
        rig.replay(udp_pcap(tmp_path / "a.pcap", first))
        rig.wait_frames(len(first))
        probe.scan()
        rig.replay(udp_pcap(tmp_path / "b.pcap", second))
        rig.wait_frames(len(first) + len(second))
        probe.scan()
    finally:
        att.detach()
    probe.flush()
    probe.close()
    payloads = collector.receive()
    collector.close()

    k = rig.cache.counters().sum(axis=0)
    assert int(k[Counter.IP_PACKETS]) == len(first) + len(second)
    assert (int(k[Counter.REFUSED_PACKETS]), int(k[Counter.REFUSED_BYTES])) == (
        36,
        sum(46 + i for i in range(64, 100)),
    )
    t = probe.table.stats
    assert (t.refused_flows, t.refused_packets, t.refused_bytes) == (30, 30, 30 * 200)

    flows = tshark_flows(payloads, tmp_path)
    got = {f["sport"]: (f["packets"], f["bytes"]) for f in flows}
    want = {
        1000 + i: (2 if i < 10 else 1, (2 if i < 10 else 1) * (46 + i))
        for i in range(64)
    }
    assert got == want and len(flows) == 64
    # the last refusals options records carry the same totals, per stage
    recs = _refusal_records(payloads)
    assert recs[-2:] == [
        (1, 36, sum(46 + i for i in range(64, 100)), 36),
        (2, 30, 6000, 30),
    ]
