"""Real exporters (softflowd, pmacctd's nfprobe) export to ``mirrorflow collect``.

Rig per test: two namespaces joined by a veth pair. tcpreplay plays corpus traffic into
one end; the exporter captures the other end and exports to 127.0.0.1 inside its
namespace, where the collector listens and tcpdump records the export on the wire.

Oracles, all compared exactly:
- softflowd's own statistics after ``softflowctl expire-all``: records exported, export
  packets, packets processed, and octets per protocol;
- tshark's decoding of the export capture: every flow record's 5-tuple, packets and bytes.

libpcap in both exporters uses TPACKET_V3 rings whose last block is handed over only when
it fills, so after the trace we send non-IP filler frames (ignored by both exporters) until
softflowd says it has seen one: everything before it has then been processed.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.synth import udp_frame
from tests.conftest import NetnsFactory
from tests.integration._interop_rig import (
    CollectorProcess,
    WireCapture,
    children,
    exporter_stats,
    flow_key,
    flow_records,
    tshark_flows,
    wait_gone,
    warm_numba,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.peers, pytest.mark.netns]

PORT = 2055
EXPORTER = "127.0.0.1"
GAP_COUNTERS = ("lost_packets", "lost_flows", "seq_resets")
TRACE_V4 = "traffic/tcpreplay/test.pcap"  # 51 IPv4 flows: TCP, UDP, ICMP, IGMP, EIGRP
TRACE_V6 = "traffic/suricata-verify/community-id-ipv6__input.pcap"  # 4 IPv6 TCP flows


@pytest.fixture(scope="module")
def traces(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The corpus traces reduced to IP frames (ARP and friends would make flows we don't control)."""
    out = tmp_path_factory.mktemp("traces")
    made = {}
    for name, src, display in (("v4", TRACE_V4, "ip"), ("v6", TRACE_V6, "ipv6")):
        dst = out / f"{name}.pcap"
        proc = subprocess.run(
            ["tshark", "-r", str(corpus_dir / src), "-Y", display, "-F", "pcap", "-w", str(dst)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        made[name] = dst
    return made


# 1500-byte frames: a local experimental ethertype (not IP: softflowd ignores and counts
# them), and UDP to the discard port (pmacctd: counted only by a marker plugin).
NON_IP_FILLER = bytes.fromhex("ffffffffffff020000000099") + b"\x88\xb5" + bytes(1486)
UDP_FILLER = udp_frame("192.0.2.99", "192.0.2.98", 9, 9, bytes(1458))
FILLER_BPF = "udp and dst port 9 and src host 192.0.2.99"


def _filler(iface: str, frame: bytes, count: int) -> str:
    """Python source sending `count` copies of `frame` on `iface`."""
    return (
        "import socket\n"
        f"s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(({iface!r}, 0))\n"
        f"for _ in range({count}): s.send(bytes.fromhex({frame.hex()!r}))\n"
    )


@dataclass
class Rig:
    netns: NetnsFactory
    traffic_ns: str
    probe_ns: str
    traffic_if: str
    probe_if: str
    workdir: Path

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.probe_ns]

    def replay(self, *traces: Path) -> None:
        proc = self.netns.run(self.traffic_ns, "tcpreplay", "-q", "-t", "-i", self.traffic_if,
                              *map(str, traces))
        assert proc.returncode == 0, proc.stderr
        assert "Failed packets:            0" in proc.stdout, proc.stdout

    def filler(self, frame: bytes, count: int = 100) -> None:
        proc = self.netns.run(self.traffic_ns, "python3", "-c", _filler(self.traffic_if, frame, count))
        assert proc.returncode == 0, proc.stderr


@pytest.fixture
def rig(netns: NetnsFactory, tmp_path: Path) -> Rig:
    traffic_ns, probe_ns = netns.namespace(), netns.namespace()
    pair = netns.veth_pair(traffic_ns, probe_ns)
    for end in (pair.a, pair.b):
        # No router solicitations or other traffic of the kernel's own on the mirror.
        for cmd in (("sysctl", "-qw", f"net.ipv6.conf.{end.name}.disable_ipv6=1"),
                    ("ip", "link", "set", end.name, "mtu", "9000")):
            proc = netns.run(end.netns, *cmd)
            assert proc.returncode == 0, proc.stderr
    return Rig(netns, traffic_ns, probe_ns, pair.a.name, pair.b.name, tmp_path)


def _compare_with_wire(collector: CollectorProcess, capture: Path) -> tuple[int, int, int]:
    """Our dump against tshark's decoding of the same export: returns (records, packets, bytes)."""
    ours = flow_records(collector.records())
    wire = tshark_flows(capture, PORT)
    assert ours, "the collector decoded no flow records"
    assert {r["exporter"] for r in ours} == {EXPORTER}
    assert {w["exporter"] for w in wire} == {EXPORTER}
    mine = collections.Counter(flow_key(r) for r in ours)
    theirs = collections.Counter(flow_key(w) for w in wire)
    assert mine == theirs, (
        f"only ours: {sorted(mine - theirs, key=str)[:10]}\nonly tshark: {sorted(theirs - mine, key=str)[:10]}"
    )
    n, pkts, octets = len(ours), sum(r["packets"] for r in ours), sum(r["bytes"] for r in ours)
    assert (len(wire), sum(w["packets"] for w in wire), sum(w["bytes"] for w in wire)) == (n, pkts, octets)
    return n, pkts, octets


def _assert_exporter_counters(collector: CollectorProcess, capture: Path, records: int) -> None:
    stats = collector.stats()
    e = exporter_stats(stats, EXPORTER)
    datagrams = int(subprocess.run(["capinfos", "-c", "-M", str(capture)], capture_output=True,
                                   text=True, check=True).stdout.split()[-1])
    assert e["packets"] == datagrams
    assert e["records"] == records == stats["records"]
    assert {k: e[k] for k in GAP_COUNTERS} == dict.fromkeys(GAP_COUNTERS, 0)
    errors = {k: v for k, v in e.items() if k.startswith("err_") and v}
    assert errors == {}
    assert e["no_template_sets"] == 0 and stats["pending_sets"] == 0
    assert stats["socket_drops"] == 0


# ---- softflowd ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftflowdStats:
    processed: int
    non_ip: int
    flows: int
    records: int
    packets_sent: int
    failures: int
    pcap_dropped: int
    octets: int
    flow_packets: int


def _softflowctl(rig: Rig, ctl: Path, command: str) -> str:
    proc = rig.netns.run(rig.probe_ns, "softflowctl", "-c", str(ctl), command, timeout=10)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _parse_softflowd(text: str) -> SoftflowdStats:
    def num(pattern: str) -> tuple[int, ...]:
        m = re.search(pattern, text)
        assert m, f"{pattern!r} not in softflowctl statistics:\n{text}"
        return tuple(int(g) for g in m.groups())

    (processed,) = num(r"Packets processed: (\d+)")
    (non_ip,) = num(r"Ignored packets: \d+ \((\d+) non-IP")
    flows, records, sent, failures = num(r"Flows exported: (\d+) \((\d+) records\) in (\d+) packets \((\d+) failures\)")
    (dropped,) = num(r"Packets dropped by libpcap: (\d+)")
    per_proto = re.findall(r"^\s+\S+ \(\d+\):\s+(\d+)\s+(\d+)", text, re.M)
    return SoftflowdStats(processed, non_ip, flows, records, sent, failures, dropped,
                          sum(int(o) for o, _ in per_proto), sum(int(p) for _, p in per_proto))


@pytest.fixture
def softflowd(rig: Rig) -> Iterator[Callable[[int], Path]]:
    procs: list[subprocess.Popen] = []

    def start(version: int) -> Path:
        ctl = rig.workdir / "softflowd.ctl"
        argv = ["softflowd", "-i", rig.probe_if, "-v", str(version), "-n", f"{EXPORTER}:{PORT}",
                "-T", "full", "-d", "-c", str(ctl), "-p", str(rig.workdir / "softflowd.pid"),
                "-t", "maxlife=3600", "-t", "general=3600", "-t", "tcp=3600", "-t", "udp=3600",
                "-t", "icmp=3600", "-t", "tcp.rst=3600", "-t", "tcp.fin=3600"]
        with (rig.workdir / "softflowd.log").open("wb") as log:
            procs.append(subprocess.Popen(rig.prefix() + argv, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        deadline = time.monotonic() + 10
        while not ctl.exists():
            assert procs[-1].poll() is None, (rig.workdir / "softflowd.log").read_text()
            assert time.monotonic() < deadline, "softflowd control socket did not appear"
            time.sleep(0.05)
        return ctl

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


@pytest.mark.parametrize("version", [5, 9, 10], ids=["v5", "v9", "ipfix"])
def test_softflowd_export_decodes_exactly(
    version: int,
    rig: Rig,
    traces: dict[str, Path],
    softflowd: Callable[[int], Path],
    warm_numba: None,  # noqa: F811
) -> None:
    collector = CollectorProcess(rig.workdir, [f"{EXPORTER}:{PORT}"], prefix=rig.prefix())
    with collector:
        capture = WireCapture(rig.prefix(), "lo", f"udp dst port {PORT}", rig.workdir / "export.pcap")
        try:
            ctl = softflowd(version)
            rig.replay(*([traces["v4"]] if version == 5 else [traces["v4"], traces["v6"]]))
            for _ in range(30):  # until the first filler frame went through softflowd
                rig.filler(NON_IP_FILLER)
                if _parse_softflowd(_softflowctl(rig, ctl, "statistics")).non_ip > 0:
                    break
            else:
                pytest.fail("softflowd never processed the filler frames")
            _softflowctl(rig, ctl, "expire-all")
            sf = _parse_softflowd(_softflowctl(rig, ctl, "statistics"))
            _softflowctl(rig, ctl, "shutdown")
            assert sf.pcap_dropped == 0 and sf.failures == 0
            assert sf.flows > 0 and sf.records >= sf.flows
            assert collector.wait_records(sf.records), f"{collector.stats()}"
        finally:
            capture.stop()
        assert collector.stop() == 0, collector.log()

    n, pkts, octets = _compare_with_wire(collector, capture.path)
    # softflowd's word for what it exported
    assert n == sf.records
    assert pkts == sf.processed == sf.flow_packets
    assert octets == sf.octets
    _assert_exporter_counters(collector, capture.path, n)
    e = exporter_stats(collector.stats(), EXPORTER)
    assert e["packets"] >= sf.packets_sent
    if version == 5:
        assert e["v5_packets"] == e["packets"] == sf.packets_sent
    else:
        assert e["v9_packets" if version == 9 else "ipfix_packets"] == e["packets"]
        assert e["templates"] >= 1
        assert any(":" in (r.get("src_addr6") or "") for r in collector.records())
    print(f"softflowd v{version}: {n} records, {pkts} packets, {octets} bytes, "
          f"{e['packets']} export datagrams")


# ---- pmacctd (nfprobe) --------------------------------------------------------------------


# The memory plugin sees only the filler: once it has, the core has handed every packet of
# the trace to the nfprobe plugin before it (one record per buffer: no batching).
PMACCT_CONF = """\
daemonize: false
pcap_interface: {iface}
plugins: nfprobe[probe], memory[marker]
aggregate[probe]: src_host, dst_host, src_port, dst_port, proto, tos
aggregate_filter[probe]: not ({filler})
nfprobe_receiver[probe]: {exporter}:{port}
nfprobe_version[probe]: {version}
nfprobe_timeouts[probe]: tcp=3600:tcp.rst=3600:tcp.fin=3600:udp=3600:icmp=3600:general=3600:maxlife=3600
aggregate[marker]: proto
aggregate_filter[marker]: {filler}
imt_path[marker]: {pipe}
"""


def _pmacct_marker_packets(rig: Rig, pipe: Path) -> int:
    proc = rig.netns.run(rig.probe_ns, "pmacct", "-p", str(pipe), "-s", "-O", "json", timeout=10)
    if proc.returncode != 0:
        return 0
    return sum(json.loads(line).get("packets", 0) for line in proc.stdout.splitlines() if line.startswith("{"))


@pytest.mark.parametrize("version", [9, 10], ids=["v9", "ipfix"])
def test_pmacctd_nfprobe_export_decodes_exactly(
    version: int, rig: Rig, traces: dict[str, Path], warm_numba: None  # noqa: F811
) -> None:
    conf = rig.workdir / "pmacctd.conf"
    pipe = rig.workdir / "pmacct-marker.pipe"
    conf.write_text(PMACCT_CONF.format(iface=rig.probe_if, exporter=EXPORTER, port=PORT,
                                       version=version, filler=FILLER_BPF, pipe=pipe))
    log_path = rig.workdir / "pmacctd.log"
    collector = CollectorProcess(rig.workdir, [f"{EXPORTER}:{PORT}"], prefix=rig.prefix())
    with collector:
        capture = WireCapture(rig.prefix(), "lo", f"udp dst port {PORT}", rig.workdir / "export.pcap")
        with log_path.open("wb") as log:
            pm = subprocess.Popen(rig.prefix() + ["pmacctd", "-f", str(conf)], stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while "Exporting flows to" not in log_path.read_text(errors="replace"):
                assert pm.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
            while not _pmacct_marker_packets(rig, pipe) and not pipe.exists():
                assert time.monotonic() < deadline, "pmacctd memory plugin did not start"
                time.sleep(0.05)
            rig.replay(traces["v4"], traces["v6"])
            for _ in range(30):  # until the marker plugin saw filler
                rig.filler(UDP_FILLER)
                if _pmacct_marker_packets(rig, pipe):
                    break
            else:
                pytest.fail("pmacctd never processed the filler frames")
            # SIGINT to the group: the nfprobe plugin expires every flow and exports it.
            plugins = children(pm.pid)
            assert len(plugins) == 2, plugins
            os.killpg(pm.pid, signal.SIGINT)
            pm.wait(timeout=10)
            assert wait_gone(plugins), "pmacctd plugins still running 10 s after SIGINT"
            assert "Shutting down on user request" in log_path.read_text()
            time.sleep(0.3)
            capture.stop()
            wire_records = len(tshark_flows(capture.path, PORT))
            assert wire_records > 0
            assert collector.wait_records(wire_records), f"{collector.stats()}"
        finally:
            if pm.poll() is None:
                os.killpg(pm.pid, signal.SIGKILL)
                pm.wait(timeout=10)
            capture.stop()
        assert collector.stop() == 0, collector.log()

    n, pkts, octets = _compare_with_wire(collector, capture.path)
    _assert_exporter_counters(collector, capture.path, n)
    e = exporter_stats(collector.stats(), EXPORTER)
    assert e["v9_packets" if version == 9 else "ipfix_packets"] == e["packets"]
    assert any(":" in (r.get("src_addr6") or "") for r in collector.records())
    print(f"pmacctd v{version}: {n} records, {pkts} packets, {octets} bytes, {e['packets']} export datagrams")

