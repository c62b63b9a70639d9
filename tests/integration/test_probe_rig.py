"""The probe's test rig: one compiled eBPF program per session, a veth mirror, a collector
socket. Fixtures here are imported by the probe's integration tests. (No tests of its own.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from appliance.probe.attach import Attachment, attach
from appliance.probe.config import ProbeSettings
from appliance.probe.kernel import KernelFlowCache
from appliance.probe.records import Counter
from appliance.probe.runner import Probe, SystemClock, build_exporter

MTU = 65000
REPO = Path(__file__).resolve().parents[2]


class Collector:
    """A UDP socket on 127.0.0.1 that keeps every datagram."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def receive(self, quiet_s: float = 0.1, limit_s: float = 5.0) -> list[bytes]:
        """Everything that arrives until nothing came for `quiet_s` (at most `limit_s`)."""
        out: list[bytes] = []
        end = time.monotonic() + limit_s
        last = time.monotonic()
        while time.monotonic() < end and time.monotonic() - last < quiet_s:
            try:
                out.append(self.sock.recv(65535))
                last = time.monotonic()
            except TimeoutError:
                pass
        return out

    def close(self) -> None:
        self.sock.close()


@dataclass
class Rig:
    cache: KernelFlowCache
    mirror: str  # probe side, root namespace
    inject_ns: str
    inject_if: str
    state_dir: Path

    def replay(self, pcap: Path, *extra: str, timeout: float = 120) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.inject_ns, "tcpreplay", "-q", "-i",
             self.inject_if, *(extra or ("--topspeed",)), str(pcap)],
            check=True, capture_output=True, timeout=timeout,
        )

    def wait_frames(self, n: int, limit_s: float = 5.0) -> int:
        """Waits (bounded) until the kernel has seen `n` frames; returns what it saw."""
        end = time.monotonic() + limit_s
        seen = 0
        while time.monotonic() < end:
            seen = int(self.cache.counters().sum(axis=0)[Counter.FRAMES])
            if seen >= n:
                break
            time.sleep(0.01)
        time.sleep(0.02)
        return int(self.cache.counters().sum(axis=0)[Counter.FRAMES])

    def probe(self, collector_addrs: list[str], **settings) -> tuple[Probe, Attachment]:
        """A fresh probe (maps and counters emptied) attached to the mirror (with the rig's
        hook; ``xdp_mode`` in `settings` picks native or generic XDP)."""
        self.cache.reset()
        s = ProbeSettings(interfaces=[self.mirror], destinations=collector_addrs,
                          state_dir=self.state_dir, attach=self.cache.hook, **settings)
        s.validate()
        clock = SystemClock()
        probe = Probe(s, self.cache, build_exporter(s, clock), clock)
        att = attach(self.mirror, self.cache.program_fd(s.xdp_mode), state_dir=self.state_dir,
                     hook=s.attach, xdp_mode=s.xdp_mode)
        self.cache.set_interface_mac(att.ifindex, att.mac)
        probe.interface_table.append((att.ifindex, att.ifname, att.description))
        return probe, att


def start_probe(mirror: str, dests: list[str], state_dir: Path, *extra: str) -> subprocess.Popen:
    """`python -m appliance.probe` on `mirror`, returned once it says it is capturing."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "appliance.probe", "-i", mirror, "--state-dir", str(state_dir),
           "--scan-interval", "0.2", *[x for d in dests for x in ("-d", d)], *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "capturing" in line:
            proc.capturing_line = line  # type: ignore[attr-defined]
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"probe exited: {proc.stderr.read()}")
    proc.kill()
    raise AssertionError("probe did not say it was capturing within 60 s")


def wait_probe_frames(state_dir: Path, n: int, limit_s: float = 10.0) -> None:
    """Waits until the probe process's statistics show `n` frames seen by its kernel part."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            snap = json.loads((state_dir / "stats.json").read_text())
            if snap["kernel"]["total"]["frames"] >= n:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the probe did not see {n} frames within {limit_s} s")


def pcap_frames(path: Path) -> int:
    data = path.read_bytes()
    off, n = 24, 0
    while off + 16 <= len(data):
        incl = int.from_bytes(data[off + 8 : off + 12], "little")
        off += 16 + incl
        n += 1
    return n


def make_rig(netns_factory, tmp_path_factory, maxflows: int = 65536,
             hook: str = "tc") -> Iterator[Rig]:
    cache = KernelFlowCache(maxflows, hook=hook)
    ns = netns_factory.namespace()
    pair = netns_factory.veth_pair(None, ns)
    for end in (pair.a, pair.b):
        cmd = ["ip", "link", "set", end.name, "mtu", str(MTU)]
        subprocess.run(netns_factory.command(end.netns, *cmd), check=True)
    # Both ends stay silent (no MLD/RS/DAD) so that counts are exact: the injecting end would
    # add frames to the replay, and libpcap peers (softflowd) also see what the mirror end sends.
    for end in (pair.a, pair.b):
        cmd = ["sysctl", "-qw", f"net.ipv6.conf.{end.name}.disable_ipv6=1"]
        subprocess.run(netns_factory.command(end.netns, *cmd), check=True)
    rig = Rig(cache, pair.a.name, ns, pair.b.name, tmp_path_factory.mktemp("probe-state"))
    try:
        yield rig
    finally:
        cache.close()


@pytest.fixture(scope="session")
def rig(netns_factory, tmp_path_factory) -> Iterator[Rig]:
    yield from make_rig(netns_factory, tmp_path_factory)


def exported_totals(flows: list[dict]) -> tuple[int, int]:
    return sum(f["packets"] for f in flows), sum(f["bytes"] for f in flows)


__all__ = ["Collector", "Rig", "rig", "make_rig", "pcap_frames", "exported_totals", "start_probe",
           "wait_probe_frames", "REPO", "np"]
