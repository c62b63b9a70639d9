"""Network namespaces and veth pairs, and removal of a crashed run's leftovers.

Every namespace and interface is named ``<prefix><owner pid, 6 hex digits><role>``, so a later
run tells a crashed run's leftovers (owner dead) from a running one's (owner alive). The demo
uses the prefix ``mfd``; the tests' fixtures (tests/conftest.py) build on these functions with
their own prefix, so that neither removes the other's objects.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from appliance.demo import DemoError
from appliance.demo._proc import process_alive

__all__ = ["Topology", "build_topology", "remove_leftovers", "list_namespaces", "list_links",
           "process_alive", "owned_names", "PREFIX", "ip", "command", "add_namespace", "add_veth",
           "remove_namespaces_and_links"]

PREFIX = "mfd"
_NAME = re.compile(rf"^{PREFIX}([0-9a-f]{{6}})[a-z]\d*$")


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs ``ip [-n netns] args``; raises DemoError if it fails and ``check`` is set."""
    cmd = ["ip", *args] if netns is None else ["ip", "-n", netns, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise DemoError(f"'{' '.join(cmd)}' failed: {proc.stderr.strip()}")
    return proc


def command(netns: str | None, *argv: str) -> list[str]:
    """The argv that runs ``argv`` inside ``netns`` (None: the root namespace)."""
    return list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]


def _sh(netns: str | None, *argv: str) -> None:
    cmd = command(netns, *argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise DemoError(f"'{' '.join(cmd)}' failed: {proc.stderr.strip()}")


def list_namespaces() -> list[str]:
    # Lines look like "name (id: 3)" or just "name".
    return [ln.split()[0] for ln in ip("netns", "list").stdout.splitlines() if ln.strip()]


def list_links(netns: str | None = None) -> list[str]:
    # Lines look like "7: mfd0012abm0@mfd0012abm1: <BROADCAST,...> ...".
    out = ip("-o", "link", "show", netns=netns).stdout
    return [ln.split(":", 2)[1].strip().split("@")[0] for ln in out.splitlines()]


def add_namespace(name: str) -> None:
    """Creates network namespace ``name`` with lo up."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def add_veth(name_a: str, netns_a: str | None, name_b: str, netns_b: str | None) -> None:
    """Creates a veth pair and moves each end into its namespace (None: it stays in the root one)."""
    ip("link", "add", name_a, "type", "veth", "peer", "name", name_b)
    for name, netns in ((name_a, netns_a), (name_b, netns_b)):
        if netns is not None:
            ip("link", "set", name, "netns", netns)


def _delete_namespace(netns: str) -> subprocess.CompletedProcess[str]:
    # A process still inside keeps the namespace (and its interfaces) alive after `ip netns del`.
    for pid in ip("netns", "pids", netns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return ip("netns", "del", netns, check=False)


def remove_namespaces_and_links(namespaces: Iterable[str], links: Iterable[str]) -> list[str]:
    """Removes those of ``links`` (root namespace) and ``namespaces`` that exist.

    Processes still inside a namespace are killed first. Returns what could not be removed.
    """
    errors = []
    present = set(list_links())
    for name in links:
        if name in present:
            proc = ip("link", "del", name, check=False)
            if proc.returncode != 0 and name in list_links():
                errors.append(f"link {name}: {proc.stderr.strip()}")
    present = set(list_namespaces())
    for name in namespaces:
        if name in present:
            proc = _delete_namespace(name)
            if proc.returncode != 0:
                errors.append(f"namespace {name}: {proc.stderr.strip()}")
    return errors


def owned_names(pid: int | None = None) -> tuple[list[str], list[str]]:
    """Namespaces and root-namespace links of the demo run ``pid`` (default: this one)."""
    tag = f"{PREFIX}{(pid or os.getpid()):06x}"
    return ([n for n in list_namespaces() if n.startswith(tag)],
            [n for n in list_links() if n.startswith(tag)])


def remove_leftovers(names: re.Pattern[str] = _NAME) -> list[str]:
    """Removes the namespaces and links of runs that are dead; returns what it removed.

    Args:
        names: what a run's objects are called, the owner's pid (6 hex digits) as group 1;
            the default is the demo's.
    """

    def stale(name: str) -> bool:
        match = names.match(name)
        return bool(match) and not process_alive(int(match.group(1), 16))

    removed = []
    for name in filter(stale, list_namespaces()):
        _delete_namespace(name)
        removed.append(f"namespace {name}")
    for name in filter(stale, list_links()):
        ip("link", "del", name, check=False)
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
        return command(netns, *argv)

    def remove(self) -> list[str]:
        """Removes every namespace and link of this run; returns what could not be removed."""
        return remove_namespaces_and_links(self.namespaces, self.links)


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
    )
    try:
        for ns in (topo.traffic_ns, topo.router_ns):
            topo.namespaces.append(ns)
            add_namespace(ns)
        pairs = ((topo.mirror_if, None, topo.traffic_if, topo.traffic_ns),
                 (topo.span_if, topo.traffic_ns, topo.router_if, topo.router_ns),
                 (topo.export_peer_if, None, topo.export_if, topo.router_ns))
        for a, ns_a, b, ns_b in pairs:
            topo.links.append(a)
            add_veth(a, ns_a, b, ns_b)
            for name, ns in ((a, ns_a), (b, ns_b)):
                ip("link", "set", name, "mtu", str(mtu), netns=ns)
        # the capture ports stay silent (no IPv6 router solicitations or MLD of their own)
        for name, ns in ((topo.mirror_if, None), (topo.traffic_if, topo.traffic_ns),
                         (topo.span_if, topo.traffic_ns), (topo.router_if, topo.router_ns)):
            _sh(ns, "sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1")
        for name, ns in ((topo.mirror_if, None), (topo.traffic_if, topo.traffic_ns),
                         (topo.span_if, topo.traffic_ns), (topo.router_if, topo.router_ns),
                         (topo.export_peer_if, None), (topo.export_if, topo.router_ns)):
            ip("link", "set", name, "up", netns=ns)
        ip("addr", "add", f"{topo.collector_ip}/30", "dev", topo.export_peer_if)
        ip("addr", "add", f"{topo.router_ip}/30", "dev", topo.export_if, netns=topo.router_ns)
        # the span: every frame sent on the traffic port is copied to the router's port
        _sh(topo.traffic_ns, "tc", "qdisc", "add", "dev", topo.traffic_if, "clsact")
        # (u32 matching every frame: matchall and flower are modules some kernels lack)
        _sh(topo.traffic_ns, "tc", "filter", "add", "dev", topo.traffic_if, "egress", "protocol", "all",
            "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", topo.span_if)
    except BaseException:
        topo.remove()
        raise
    return topo
