"""Network namespaces and veth pairs of a demo run, and removal of a crashed run's leftovers.

Every namespace and interface is named ``mfd<owner pid, 6 hex digits><role>``, so a later
run tells a crashed run's leftovers (owner dead) from a running demo's (owner alive). The
same logic as the tests' fixture (tests/conftest.py), with its own prefix so that neither
removes the other's objects.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import DemoError

__all__ = ["Topology", "build_topology", "remove_leftovers", "list_namespaces", "list_links",
           "process_alive", "owned_names", "PREFIX"]

PREFIX = "mfd"
_NAME = re.compile(rf"^{PREFIX}([0-9a-f]{{6}})[a-z]\d*$")


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *args] if netns is None else ["ip", "-n", netns, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise DemoError(f"'{' '.join(cmd)}' failed: {proc.stderr.strip()}")
    return proc


def _sh(netns: str | None, *argv: str) -> None:
    cmd = list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise DemoError(f"'{' '.join(cmd)}' failed: {proc.stderr.strip()}")


def list_namespaces() -> list[str]:
    return [ln.split()[0] for ln in _ip("netns", "list").stdout.splitlines() if ln.strip()]


def list_links(netns: str | None = None) -> list[str]:
    out = _ip("-o", "link", "show", netns=netns).stdout
    return [ln.split(":", 2)[1].strip().split("@")[0] for ln in out.splitlines()]


def process_alive(pid: int) -> bool:
    """True while pid runs; a zombie counts as dead (init may never reap it here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_netns_processes(netns: str) -> None:
    # A process still inside keeps the namespace (and its interfaces) alive after `ip netns del`.
    for pid in _ip("netns", "pids", netns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def owned_names(pid: int | None = None) -> tuple[list[str], list[str]]:
    """Namespaces and root-namespace links of the demo run ``pid`` (default: this one)."""
    tag = f"{PREFIX}{(pid or os.getpid()):06x}"
    return ([n for n in list_namespaces() if n.startswith(tag)],
            [n for n in list_links() if n.startswith(tag)])


def remove_leftovers() -> list[str]:
    """Removes mfd* namespaces and links whose demo run is dead; returns what it removed."""

    def stale(name: str) -> bool:
        match = _NAME.match(name)
        return bool(match) and not process_alive(int(match.group(1), 16))

    removed = []
    for name in filter(stale, list_namespaces()):
        _kill_netns_processes(name)
        _ip("netns", "del", name, check=False)
        removed.append(f"namespace {name}")
    for name in filter(stale, list_links()):
        _ip("link", "del", name, check=False)
        removed.append(f"link {name}")
    return removed


@dataclass
class Topology:
    """What a demo run created.

    ``traffic_ns`` sends into ``traffic_if``, whose peer ``mirror_if`` (root namespace) is the
    mirror port the probe watches. A tc mirred rule copies everything sent on ``traffic_if``
    to ``span_if``, whose peer ``router_if`` sits in ``router_ns`` (softflowd's capture port).
    ``router_ns`` reaches the collector over ``export_if`` ↔ ``export_peer_if``: it exports
    from ``router_ip`` to ``collector_ip``.
    """

    traffic_ns: str
    router_ns: str
    mirror_if: str
    traffic_if: str
    span_if: str
    router_if: str
    export_if: str
    export_peer_if: str
    collector_ip: str
    router_ip: str
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def command(self, netns: str, *argv: str) -> list[str]:
        """The argv that runs ``argv`` inside ``netns``."""
        return ["ip", "netns", "exec", netns, *argv]

    def remove(self) -> list[str]:
        """Removes every namespace and link of this run; returns what could not be removed."""
        errors = []
        present = set(list_links())
        for name in self.links:
            if name in present:
                proc = _ip("link", "del", name, check=False)
                if proc.returncode != 0 and name in list_links():
                    errors.append(f"link {name}: {proc.stderr.strip()}")
        present = set(list_namespaces())
        for name in self.namespaces:
            if name in present:
                _kill_netns_processes(name)
                proc = _ip("netns", "del", name, check=False)
                if proc.returncode != 0:
                    errors.append(f"namespace {name}: {proc.stderr.strip()}")
        return errors


def build_topology(mtu: int = 1500) -> Topology:
    """Creates the namespaces and veth pairs of this run (see Topology); removes them on error."""
    tag = f"{PREFIX}{os.getpid():06x}"
    pid = os.getpid()
    # 198.18.0.0/15 is the benchmarking range: never one of the machine's own networks.
    net = f"198.19.{pid >> 6 & 0xFF}.{(pid & 0x3F) * 4}"
    base = net.rsplit(".", 1)[0]
    last = int(net.rsplit(".", 1)[1])
    topo = Topology(
        traffic_ns=f"{tag}t", router_ns=f"{tag}r",
        mirror_if=f"{tag}m0", traffic_if=f"{tag}m1", span_if=f"{tag}s0", router_if=f"{tag}s1",
        export_if=f"{tag}x1", export_peer_if=f"{tag}x0",
        collector_ip=f"{base}.{last + 1}", router_ip=f"{base}.{last + 2}",
    )  # fmt: skip
    try:
        for ns in (topo.traffic_ns, topo.router_ns):
            _ip("netns", "add", ns)
            topo.namespaces.append(ns)
            _ip("link", "set", "lo", "up", netns=ns)
        pairs = ((topo.mirror_if, None, topo.traffic_if, topo.traffic_ns),
                 (topo.span_if, topo.traffic_ns, topo.router_if, topo.router_ns),
                 (topo.export_peer_if, None, topo.export_if, topo.router_ns))  # fmt: skip
        for a, ns_a, b, ns_b in pairs:
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            topo.links.append(a)
            for name, ns in ((a, ns_a), (b, ns_b)):
                if ns is not None:
                    _ip("link", "set", name, "netns", ns)
                _ip("link", "set", name, "mtu", str(mtu), netns=ns)
        # the capture ports stay silent (no IPv6 router solicitations or MLD of their own)
        for name, ns in ((topo.mirror_if, None), (topo.traffic_if, topo.traffic_ns),
                         (topo.span_if, topo.traffic_ns), (topo.router_if, topo.router_ns)):
            _sh(ns, "sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1")
        for name, ns in ((topo.mirror_if, None), (topo.traffic_if, topo.traffic_ns),
                         (topo.span_if, topo.traffic_ns), (topo.router_if, topo.router_ns),
                         (topo.export_peer_if, None), (topo.export_if, topo.router_ns)):
            _ip("link", "set", name, "up", netns=ns)
        _ip("addr", "add", f"{topo.collector_ip}/30", "dev", topo.export_peer_if)
        _ip("addr", "add", f"{topo.router_ip}/30", "dev", topo.export_if, netns=topo.router_ns)
        # the span: every frame sent on the traffic port is copied to the router's port
        _sh(topo.traffic_ns, "tc", "qdisc", "add", "dev", topo.traffic_if, "clsact")
        # (u32 matching every frame: matchall and flower are modules some kernels lack)
        _sh(topo.traffic_ns, "tc", "filter", "add", "dev", topo.traffic_if, "egress", "protocol", "all",
            "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", topo.span_if)
    except BaseException:
        topo.remove()
        raise
    return topo
