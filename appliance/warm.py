"""``mirrorflow warm-cache``: compile every numba kernel of the appliance before its first start.

numba compiles a function the first time it meets new argument types; with ``cache=True`` it
saves the machine code in NUMBA_CACHE_DIR, and later processes load it in milliseconds. A
freshly installed appliance would otherwise spend a minute compiling at its first start
(6–8 minutes under QEMU TCG). Rather than listing signatures by hand, which drift from the
code, this runs the real code paths in-process on synthetic traffic, so the cache holds the
signatures the services use:

- probe: the probe's loop (`Probe.scan` over a `MemoryFlowCache`, a fake clock and memory
  transports) exporting NetFlow v9 with sampling, MPLS and direction, IPFIX and v5;
- collector: those datagrams plus router-style v9 and IPFIX ones (text fields, IPv6
  exporter), written to a pcap and a pcapng and replayed as ``collect --pcap`` does, with
  monitoring objects (filters with IP lists and functions, fixed windows, extended windows,
  moving averages with thresholds and scripts) and the live API's state and endpoints; then
  once more as a live collector restarting on the templates the replay saved.

Afterwards every numba dispatcher of the appliance with ``cache=True`` is reported as
compiled now, loaded from the cache, inlined (``inline="always"``: compiled into its callers,
no code of its own) or not reached by the workload. Everything happens in a temporary
directory; nothing is sent, and no socket is opened.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import json
import logging
import os
import pkgutil
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COMPONENTS",
    "WarmReport",
    "add_parser",
    "cache_dir_problem",
    "cached_dispatchers",
    "check_cache_dir",
    "run",
    "warm",
]

log = logging.getLogger("mirrorflow.warm")

#: what ``--component`` warms and reports: the packages whose numba functions count
COMPONENTS: dict[str, tuple[str, ...]] = {
    "probe": ("appliance.probe", "appliance.netflow"),
    "collector": ("appliance.collector", "appliance.netflow"),
    "all": ("appliance",),
}

EPILOG = """\
examples:
  NUMBA_CACHE_DIR=/var/cache/mirrorflow/collector/numba mirrorflow warm-cache --component collector
  NUMBA_CACHE_DIR=/var/cache/mirrorflow/probe/numba NUMBA_CPU_NAME=generic \\
      mirrorflow warm-cache --component probe --json

Runs the probe's loop and the collector (pcap replay, monitoring objects, moving averages,
live API) in-process on synthetic traffic, in a temporary directory and without network, so
numba compiles every kernel with the signatures the services use and saves it in
NUMBA_CACHE_DIR. Run it as the user and with the NUMBA_CACHE_DIR (and NUMBA_CPU_NAME) of the
unit that will load the cache. A second run loads everything and compiles nothing.

--json prints {"cache_dir", "cpu_name", "compiled", "cached", "inlined", "unreached",
"unused", "seconds"}: functions (module.name) compiled now, loaded from the cache, inlined
into their callers, not reached by the workload, and named nowhere in the code (dead: nothing
will ever compile them). Exit status: 0 every kernel compiled or loaded; 1 some kernel was
not reached (named on stderr); 2 NUMBA_CACHE_DIR unset or not writable.
"""

_NS = 1_000_000_000
_BASE_NS = 1_700_000_000 * _NS  # wall-clock start of the synthetic traffic
_MONO_NS = 1_000 * _NS  # the probe's CLOCK_MONOTONIC at that moment
_SECONDS = 40  # of traffic: four 10 s windows, several moving-average time constants
_PCAPNG_FROM_S = 30  # datagrams from then on go into the pcapng file
_ROUTER_MAC = bytes.fromhex("02005e000001")  # the mirrored router (--direction-mac)
_IF_NAMES = ("eth0", "ge-0/0/1", "xe-1/2/3.100")


# ---- the command ----------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``warm-cache`` on the ``mirrorflow`` command."""
    p = sub.add_parser(
        "warm-cache",
        help="compile every numba kernel into NUMBA_CACHE_DIR (at install time, before the first start)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--component",
        choices=tuple(COMPONENTS),
        default="all",
        help="probe (appliance.probe + netflow), collector (appliance.collector + netflow) or all (default)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the workload does (stderr)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    problem = cache_dir_problem()
    if problem is not None:
        print(f"mirrorflow warm-cache: {problem}", file=sys.stderr)
        return 2
    report = warm(args.component)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(report.summary())
    if report.unreached:
        print(
            "mirrorflow warm-cache: not reached by the workload (they will compile at the first start): "
            + ", ".join(report.unreached),
            file=sys.stderr,
        )
        return 1
    return 0


def check_cache_dir(argv: list[str]) -> int | None:
    """For ``main`` before the parser is built: numba refuses to even import a ``cache=True``
    module when NUMBA_CACHE_DIR is unusable, so the check cannot wait for `run`.

    Returns:
        2 after printing why the cache directory cannot be used, None when it can (or when
        it is unset and only the help is asked for).
    """
    if {"-h", "--help"} & set(argv) and not os.environ.get("NUMBA_CACHE_DIR"):
        return None
    problem = cache_dir_problem()
    if problem is None:
        return None
    print(f"mirrorflow warm-cache: {problem}", file=sys.stderr)
    return 2


def cache_dir_problem() -> str | None:
    """Why NUMBA_CACHE_DIR cannot take the cache (None: it can; it is created if missing)."""
    path = os.environ.get("NUMBA_CACHE_DIR", "")
    if not path:
        return (
            "NUMBA_CACHE_DIR is not set: set it to the cache directory of the unit that will load the "
            "kernels, e.g. NUMBA_CACHE_DIR=/var/cache/mirrorflow/collector/numba"
        )
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return (
            f"NUMBA_CACHE_DIR={path} is not writable by this user ({exc.strerror or exc}): create it "
            "for the user the service runs as, or run warm-cache as that user"
        )
    import numba

    if os.path.realpath(numba.config.CACHE_DIR or "") != os.path.realpath(path):
        return f"numba uses {numba.config.CACHE_DIR!r}, not NUMBA_CACHE_DIR={path}: set it before starting Python"
    return None


# ---- the report -----------------------------------------------------------------------------


@dataclass(slots=True)
class WarmReport:
    """What one run did, per numba function (``module.qualname``)."""

    cache_dir: str
    cpu_name: str  # the CPU the code was compiled for (NUMBA_CPU_NAME or the host's)
    compiled: list[str] = field(default_factory=list)  # compiled now and saved
    cached: list[str] = field(default_factory=list)  # loaded from the cache
    inlined: list[str] = field(default_factory=list)  # inline="always": part of their callers
    unreached: list[str] = field(default_factory=list)  # the workload never called them
    unused: list[str] = field(default_factory=list)  # named nowhere but in their definition
    seconds: float = 0.0

    def summary(self) -> str:
        n = len(self.compiled) + len(self.cached) + len(self.inlined) + len(self.unreached) + len(self.unused)
        return (
            f"warm-cache: {n} functions: {len(self.compiled)} compiled, {len(self.cached)} from cache, "
            f"{len(self.inlined)} inlined; {len(self.unreached)} not reached"
            + (f", {len(self.unused)} unused (no caller: {', '.join(self.unused)})" if self.unused else "")
            + f"; cache {self.cache_dir}; cpu {self.cpu_name}; {self.seconds:.0f} s"
        )


def warm(component: str = "all") -> WarmReport:
    """Run the workload of `component` and report every cached numba function of its packages."""
    import numba
    from numba.core.registry import cpu_target

    t0 = time.monotonic()
    packages = COMPONENTS[component]
    with tempfile.TemporaryDirectory(prefix="mirrorflow-warm-") as tmp:
        _workload(component, Path(tmp))
    report = WarmReport(numba.config.CACHE_DIR, cpu_target.target_context.codegen().magic_tuple()[1])
    for name, disp in cached_dispatchers(packages).items():
        inline = disp.targetoptions.get("inline") == "always"
        if not inline:
            _load_cached_overloads(disp)
        stats = disp.stats
        if sum(stats.cache_misses.values()):
            report.compiled.append(name)
        elif sum(stats.cache_hits.values()):
            report.cached.append(name)
        elif inline:
            report.inlined.append(name)
        elif _named_once(disp.py_func.__name__):
            report.unused.append(name)
        else:
            report.unreached.append(name)
    report.seconds = round(time.monotonic() - t0, 1)
    return report


def cached_dispatchers(packages: Iterable[str]) -> dict[str, Any]:
    """Every numba dispatcher with ``cache=True`` defined in `packages`, by ``module.qualname``
    (every module of the packages is imported first, so none is missed)."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    packages = tuple(packages)
    for pkg in packages:
        _import_tree(pkg)
    found: dict[str, Any] = {}
    for modname, module in list(sys.modules.items()):
        if module is None or not _inside(modname, packages):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and not isinstance(value._cache, NullCache):
                func = value.py_func
                if _inside(func.__module__, packages):
                    found[f"{func.__module__}.{func.__qualname__}"] = value
    return dict(sorted(found.items()))


def _named_once(name: str) -> bool:
    """Whether `name` occurs exactly once (its ``def``) in the appliance's sources, comments
    and docstrings included: then no code can call it, and no service will compile it."""
    import re

    root = Path(importlib.import_module("appliance").__file__ or "").parent
    word = re.compile(rf"\b{re.escape(name)}\b")
    return sum(len(word.findall(p.read_text(errors="replace"))) for p in root.rglob("*.py")) == 1


def _inside(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _import_tree(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), package + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an optional dependency (bcc): its kernels, if any, count as unreached
            log.warning("cannot import %s: %s", info.name, exc)


def _load_cached_overloads(disp: Any) -> None:
    """Load what the cache holds for this CPU and this process has not used yet.

    A function called only from other numba functions is compiled into its callers; when
    those come from the cache, nothing loads it, yet its own entries (saved when the
    callers were compiled) are what a recompiling caller would need. Loading them counts
    them as cached, and proves they load. numba has no public API for the index: on any
    surprise the function is left as it is.
    """
    from numba.core import sigutils

    try:
        cache = disp._cache
        codegen = disp.targetctx.codegen()
        index = cache._cache_file._load_index()
        for key in list(index):
            sig = key[0]
            if key != cache._index_key(sig, codegen):  # another CPU, or older code
                continue
            args, _ = sigutils.normalize_signature(sig)
            if tuple(args) not in disp.overloads:
                disp.compile(sig)
    except Exception as exc:  # noqa: BLE001 - numba internals: report, never fail the warm-up
        log.warning("cannot read the cache index of %s: %s", disp.py_func.__qualname__, exc)


# ---- the workload ---------------------------------------------------------------------------


def _workload(component: str, tmp: Path) -> None:
    clock = _FakeClock()
    datagrams = _probe_datagrams(clock, run_probe=component != "collector", stats=tmp / "probe-stats.json")
    if component == "probe":
        return
    datagrams += _router_datagrams(clock)
    datagrams.sort(key=lambda d: d.time_ns)
    pcap, pcapng = tmp / "export.pcap", tmp / "export.pcapng"
    _write_pcap(pcap, [d for d in datagrams if d.time_ns < _BASE_NS + _PCAPNG_FROM_S * _NS])
    _write_pcapng(pcapng, [d for d in datagrams if d.time_ns >= _BASE_NS + _PCAPNG_FROM_S * _NS])
    cfg = _collector_config(tmp)
    probe_stats = tmp / "probe-stats.json"
    _replay(cfg, [pcap, pcapng], probe_stats if probe_stats.exists() else None)
    _live_restart(cfg, [pcap, pcapng])


class _FakeClock:
    """The probe's two clocks (and the routers' one) on the synthetic timeline."""

    def __init__(self) -> None:
        self.second = 0

    def monotonic_ns(self) -> int:
        return _MONO_NS + self.second * _NS

    def time_ns(self) -> int:
        return _BASE_NS + self.second * _NS


@dataclass(frozen=True, slots=True)
class _Datagram:
    exporter: str  # source address of the UDP datagram
    port: int  # destination UDP port
    time_ns: int
    payload: bytes


# ---- probe side -----------------------------------------------------------------------------


def _kernel_deltas(second: int, mono_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """One second of what the kernel's flow map holds: IPv4 and IPv6, TCP, UDP and ICMP, VLANs,
    MPLS, MACs on both sides of the mirrored router, and one source far above the others.
    Source ports move every 8 s: the old flows go idle and expire, new ones fill the table."""
    from appliance.probe.records import KEY_DTYPE, VAL_DTYPE

    n4, n6 = 640, 96
    n = n4 + n6
    i = np.arange(n)
    host = i + 1
    keys = np.zeros(n, KEY_DTYPE)
    vals = np.zeros(n, VAL_DTYPE)
    keys["src"][:n4, :4] = np.stack([np.full(n4, 10), np.full(n4, 20), host[:n4] >> 8, host[:n4] & 255], axis=1)
    keys["dst"][:n4, :4] = [198, 51, 100, 0]
    keys["dst"][:n4, 3] = i[:n4] % 64
    src6 = np.frombuffer(ipaddress.IPv6Address("fd00:20::").packed, np.uint8)
    dst6 = np.frombuffer(ipaddress.IPv6Address("2001:db8:99::").packed, np.uint8)
    keys["src"][n4:] = src6
    keys["src"][n4:, 14], keys["src"][n4:, 15] = host[n4:] >> 8, host[n4:] & 255
    keys["dst"][n4:] = dst6
    keys["dst"][n4:, 15] = i[n4:] % 16
    v4 = i < n4
    keys["ipver"] = np.where(v4, 4, 6)
    dport = np.array([443, 80, 53, 22, 25, 8080, 40000, 123])[i % 8]
    proto = np.where((dport == 53) | (dport == 123), 17, 6)
    icmp = i % 37 == 5
    proto[icmp] = np.where(v4, 1, 58)[icmp]
    dport[icmp] = 8 << 8  # ICMP type << 8 | code, where the kernel keeps it
    keys["dport"] = dport
    keys["sport"] = np.where(icmp, 0, 1024 + i + 1000 * (second // 8))
    keys["proto"] = proto
    keys["vlan"] = 100 + i % 3
    keys["ifindex"] = 2 + i % 2
    keys["tos"] = (i % 4) * 8
    vals["packets"] = 1 + i % 7
    vals["packets"][0] = 20_000  # 10.20.0.1: over the moving average's limit
    vals["bytes"] = vals["packets"] * (64 + (i * 37) % 1400)
    vals["first_ns"] = mono_ns + i * 100_000
    vals["last_ns"] = mono_ns + 500_000_000 + i * 100_000
    flags = np.array([0x18, 0x10, 0x02, 0x11, 0x04, 0x12])[i % 6]
    vals["tcp_flags"] = np.where(proto == 6, flags, 0)
    vals["min_ttl"], vals["max_ttl"] = 60, 64
    vals["flow_label"] = np.where(v4, 0, i & 0xFFFFF)
    mpls = i % 11 == 0
    vals["mpls_depth"] = mpls
    vals["mpls_top"] = np.where(mpls, ((1000 + i) << 12) | (1 << 8) | 64, 0)
    mac = np.zeros((n, 6), np.uint8)
    mac[:, 0], mac[:, 4], mac[:, 5] = 2, host >> 8, host & 255
    router = np.frombuffer(_ROUTER_MAC, np.uint8)
    even = (i % 2 == 0)[:, None]
    vals["src_mac"] = np.where(even, mac, router)  # even: to the router (ingress), odd: from it
    vals["dst_mac"] = np.where(even, router, mac)
    return keys, vals


def _probe_datagrams(clock: _FakeClock, run_probe: bool, stats: Path) -> list[_Datagram]:
    """The probe's exports (v9 with sampling, IPFIX, v5), one exporter address each.

    With `run_probe` the flows go through the probe's loop (flow table, timeouts, options,
    interface names); without it (a collector-only appliance) each second's deltas are
    exported as ended flows, which needs only the encoders.
    """
    from appliance.probe.config import ProbeSettings
    from appliance.probe.exporter import MemoryTransport
    from appliance.probe.flowtable import FLOW_DTYPE
    from appliance.probe.kernel import MemoryFlowCache
    from appliance.probe.runner import Probe, build_exporter
    from appliance.probe.stats import write_snapshot

    setups = [  # (exporter address, UDP port, protocol, sampler)
        ("127.0.0.1", 2055, 9, "deterministic:10"),
        ("::1", 4739, 10, "random:4"),
        ("192.0.2.5", 2055, 5, ""),
    ]
    interfaces = [(2, "warm0", "mirror port"), (3, "warm1", "")]
    out: list[_Datagram] = []
    probes, exporters, transports = [], [], []
    for _addr, _port, protocol, sampler in setups:
        s = ProbeSettings(
            interfaces=["warm0"],
            destinations=["127.0.0.1:2055"],
            protocol=protocol,
            inactive_timeout=5,
            active_timeout=15,
            tcp_end_timeout=2,
            maxflows=2048,
            sampler=sampler,
            direction_mac=_ROUTER_MAC.hex(":"),
            options_interval=10,
            names_interval=20,
        )
        s.validate()
        t = MemoryTransport()
        transports.append(t)
        exporter = build_exporter(s, clock, transports=[t])
        exporters.append(exporter)
        if run_probe:
            probe = Probe(s, MemoryFlowCache(s.maxflows), exporter, clock, warn=log.info)
            probe.interface_table = interfaces
            probes.append(probe)

    def collect() -> None:
        for (addr, port, _, _), t in zip(setups, transports, strict=True):
            out.extend(_Datagram(addr, port, clock.time_ns(), p) for p in t.sent)
            t.sent.clear()

    for second in range(_SECONDS):
        clock.second = second
        keys, vals = _kernel_deltas(second, clock.monotonic_ns())
        if run_probe:
            for probe in probes:
                probe.cache.push(keys, vals)
                probe.scan()
                if second == 1:
                    # A drain of one flow: its field views are contiguous ('C', not 'A'), which
                    # numba compiles as another signature of the flow table's merge.
                    probe.cache.push(keys[:1], vals[:1])
                    probe.scan()
        else:
            flows = np.zeros(len(keys), FLOW_DTYPE)
            flows["key"], flows["val"], flows["end_reason"] = keys, vals, 1
            for exporter in exporters:
                exporter.export(flows, _BASE_NS - _MONO_NS)
                if exporter.options_due():
                    exporter.send_options(0, 0)
                if exporter.names_due():
                    exporter.send_interface_names(interfaces)
        collect()
    clock.second = _SECONDS
    for probe in probes:
        probe.flush()
    collect()
    if probes:
        write_snapshot(stats, probes[0].snapshot())  # what the live API shows of the probe
    return out


# ---- routers --------------------------------------------------------------------------------


def _router_datagrams(clock: _FakeClock) -> list[_Datagram]:
    """What routers send beyond the probe's formats: v9 with a fixed-length text field and
    sampler options, IPFIX from an IPv6 exporter with variable-length text, IPv4 and IPv6."""
    from appliance.netflow import (
        IPFIXEncoder,
        V9Encoder,
        sampler_template,
        template_for,
    )

    common = ["src_port", "dst_port", "proto", "tcp_flags", "in_if", "out_if", "packets", "bytes"]
    v9 = V9Encoder(
        [
            template_for(
                ["src_addr", "dst_addr", *common, "first_switched", "last_switched", "sampler_id", ("if_name", 16)], 256
            ),
            sampler_template(257, 9),
        ],
        source_id=1,
        clock=clock.time_ns,
        boot_ns=_BASE_NS - 3600 * _NS,
    )
    ipfix = IPFIXEncoder(
        [
            template_for(["src_addr6", "dst_addr6", *common, "flow_start_ms", "flow_end_ms", "if_name"], 256),
            template_for(["src_addr", "dst_addr", *common, "flow_start_ms", "flow_end_ms", "if_name", "vrf_name"], 257),
        ],
        observation_domain=1,
        clock=clock.time_ns,
    )
    n = 48
    i = np.arange(n, dtype=np.uint64)
    out: list[_Datagram] = []
    for second in range(_SECONDS):
        clock.second = second
        now_ms = clock.time_ns() // 1_000_000
        cols: dict[str, Any] = {
            "src_port": 40000 + i,
            "dst_port": np.array([443, 80, 22, 53], np.uint64)[i % 4],
            "proto": np.where(i % 4 == 3, 17, 6).astype(np.uint64),
            "tcp_flags": np.uint64(0x1B),
            "in_if": 1 + i % 3,
            "out_if": 10 + i % 2,
            "packets": 10 + i,
            "bytes": 1500 * (10 + i),
            "flow_start_ms": now_ms - 900,
            "flow_end_ms": now_ms,
            "if_name": [_IF_NAMES[k % 3] for k in range(n)],
            "vrf_name": "customer-a",
        }
        cols4 = {
            **cols,
            "src_addr": int(ipaddress.IPv4Address("203.0.113.0")) + i,
            "dst_addr": int(ipaddress.IPv4Address("10.20.1.0")) + i,
            "sampler_id": 1,
        }
        payloads = v9.encode(cols4, 256)
        if second % 10 == 0:
            payloads += v9.encode(
                {
                    "scope_system": 1,
                    "sampler_id": 1,
                    "sampler_mode": 2,
                    "sampler_random_interval": 100,
                    "sampling_interval": 100,
                    "sampling_algorithm": 2,
                },
                257,
            )
        out.extend(_Datagram("192.0.2.1", 2055, clock.time_ns(), p) for p in payloads)
        addr6 = np.zeros((n, 16), np.uint8)
        addr6[:] = np.frombuffer(ipaddress.IPv6Address("2001:db8:7::").packed, np.uint8)
        addr6[:, 15] = i
        dst6 = np.zeros((n, 16), np.uint8)
        dst6[:] = np.frombuffer(ipaddress.IPv6Address("fd00:20:1::").packed, np.uint8)
        dst6[:, 15] = i
        payloads = ipfix.encode({**cols, "src_addr6": addr6, "dst_addr6": dst6}, 256)
        payloads += ipfix.encode(cols4, 257)
        out.extend(_Datagram("2001:db8::1", 4739, clock.time_ns(), p) for p in payloads)
    return out


# ---- capture files --------------------------------------------------------------------------

_PCAP_HEADER = struct.Struct("<IHHiIII")  # magic, version 2.4, zone, sigfigs, snaplen, link type
_PCAP_RECORD = struct.Struct("<IIII")  # seconds, microseconds, captured, original length
_ETHERNET = struct.Struct("!6s6sH")  # destination, source, ethertype
_IPV4 = struct.Struct("!BBHHHBBH4s4s")  # version/IHL, TOS, length, id, flags/offset, TTL, proto, checksum
_IPV6 = struct.Struct("!IHBB16s16s")  # version/class/label, payload length, next header, hops
_UDP = struct.Struct("!HHHH")  # source port, destination port, length, checksum
_BLOCK = struct.Struct("<II")  # pcapng block type, total length
_SHB = struct.Struct("<IHHq")  # byte-order magic, version 1.0, section length (-1: unknown)
_IDB = struct.Struct("<HHI")  # link type, reserved, snaplen
_EPB = struct.Struct("<IIIII")  # interface, timestamp high, low, captured, original length
_COLLECTOR4 = ipaddress.IPv4Address("192.0.2.100").packed
_COLLECTOR6 = ipaddress.IPv6Address("2001:db8::100").packed


def _frame(d: _Datagram) -> bytes:
    """An Ethernet frame carrying the datagram from its exporter to the collector."""
    src = ipaddress.ip_address(d.exporter)
    udp = _UDP.pack(50000, d.port, _UDP.size + len(d.payload), 0) + d.payload
    if src.version == 4:
        head = _IPV4.pack(0x45, 0, _IPV4.size + len(udp), 0, 0x4000, 64, 17, 0, src.packed, _COLLECTOR4)
        csum = sum(struct.unpack("!10H", head))
        csum = (csum & 0xFFFF) + (csum >> 16)
        csum = ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF
        ip, ethertype = head[:10] + csum.to_bytes(2, "big") + head[12:], 0x0800
    else:
        ip, ethertype = _IPV6.pack(6 << 28, len(udp), 17, 64, src.packed, _COLLECTOR6), 0x86DD
    return _ETHERNET.pack(b"\x02\x00\x00\x00\x01\x00", _ROUTER_MAC, ethertype) + ip + udp


def _write_pcap(path: Path, datagrams: list[_Datagram]) -> None:
    with path.open("wb") as f:
        f.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for d in datagrams:
            frame = _frame(d)
            sec, ns = divmod(d.time_ns, _NS)
            f.write(_PCAP_RECORD.pack(sec, ns // 1000, len(frame), len(frame)) + frame)


def _block(btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    size = _BLOCK.size + len(body) + 4
    return _BLOCK.pack(btype, size) + body + size.to_bytes(4, "little")


def _write_pcapng(path: Path, datagrams: list[_Datagram]) -> None:
    """One section, one Ethernet interface with nanosecond timestamps (if_tsresol 9)."""
    with path.open("wb") as f:
        f.write(_block(0x0A0D0D0A, _SHB.pack(0x1A2B3C4D, 1, 0, -1)))
        tsresol = struct.pack("<HHB3x", 9, 1, 9) + bytes(4)  # if_tsresol = 10^-9, end of options
        f.write(_block(1, _IDB.pack(1, 0, 65535) + tsresol))
        for d in datagrams:
            frame = _frame(d)
            f.write(_block(6, _EPB.pack(0, d.time_ns >> 32, d.time_ns & 0xFFFFFFFF, len(frame), len(frame)) + frame))


# ---- collector side -------------------------------------------------------------------------

# Monitoring objects that reach every kernel: IP lists with few, many (bucket index) and IPv6
# ranges, text and function filters, nested objects, windows with every function and a text
# key, an extended window, and moving averages with limits files, an overlimit that is
# crossed, an underlimit on a key that never shows up (both run their scripts).
_OBJECTS = {
    "lan": """{
        "filter": "net mynet",
        "fwm": [
            {"name": "total", "time": 10, "fields": ["packets", "octets", "flows"]},
            {"name": "talkers", "time": 10, "fields": ["octets desc", "packets", "src host", "dst host"], "limit": 10},
            {"name": "victims", "time": 10, "extended": true, "limit": 20,
             "fields": ["packets desc", "octets", "src host", "dst host", "proto", "dst port"]}
        ],
        "mavg": [
            {"name": "pps", "time": 5, "fields": ["src host", "packets", "bits"],
             "overlimit": [{"name": "flood", "default": [null, null], "limits": "limits.csv", @SCRIPTS@
                            "back2norm-time": 5, "ext": ["victims"]}],
             "underlimit": [{"name": "gone", "default": [null, null], "limits": "expected.csv", @SCRIPTS@
                             "back2norm-time": 5}]},
            {"name": "ports", "time": 10, "fields": ["dst port", "proto", "flows"]}
        ]}""",
    "lan/tcp": """{
        "filter": "proto tcp and not mfreq(src port, dst port) 53 or tfstr(tcp-flags) 'ACK+PSH'",
        "fwm": [{"name": "functions", "time": 10, "limit": 50, "fields": ["flows desc", "div(octets, packets)",
                 "div_r(octets, packets, 100)", "div_l(octets, packets, 10)", "min(src port, dst port)",
                 "mfreq(src port, dst port)", "tfstr(tcp-flags)", "portstr(dst port)", "ppstr(src port, dst port)"]}]
        }""",
    "blocks": """{
        "filter": "src net blocks or dst net blocks",
        "fwm": [{"name": "hosts", "time": 10, "fields": ["octets desc", "src host", "dst port"], "limit": 20}]
        }""",
    "routers": """{
        "filter": "dev-ip 192.0.2.1 or dev-ip 2001:db8::1",
        "fwm": [{"name": "interfaces", "time": 10, "limit": 20,
                 "fields": ["octets desc", "if_name", "dev-ip", "src ifidx", "vrf_name"]}]
        }""",
    "eth0": """{
        "filter": "if_name 'eth0' or 'xe-1/2/3.100'",
        "fwm": [{"name": "total", "time": 10, "fields": ["packets", "octets", "flows"]}]
        }""",
    "functions": """{
        "filter": "div(octets, packets) 100-1500 or divl(octets, packets, 10) 100 or min(src port, dst port) 0-1023",
        "fwm": [{"name": "exporters", "time": 10, "fields": ["packets desc", "octets", "dev-ip", "dir", "smplr"]}]
        }""",
}
_API_REQUESTS: list[tuple[str, dict[str, list[str]]]] = [
    ("/", {}),
    ("/api/v1/status", {}),
    ("/api/v1/exporters", {}),
    ("/api/v1/objects", {}),
    ("/api/v1/windows", {}),
    ("/api/v1/windows/lan/talkers", {}),
    ("/api/v1/mavg", {}),
    ("/api/v1/alerts", {}),
    ("/api/v1/probe", {}),
    ("/api/v1/schema", {}),
    ("/api/v1/flows", {"limit": ["1000"]}),
    ("/api/v1/flows", {"filter": ["net mynet and tcp or if_name 'eth0' or src net blocks"]}),
    ("/api/v1/flows", {"object": ["lan"], "filter": ["dst port 443 or tfstr(tcp-flags) 'SYN'"]}),
]


def _collector_config(tmp: Path) -> Any:
    """The monitoring objects, IP lists, limits files and devices.conf of the workload."""
    from appliance.collector.config.settings import CollectorConfig

    iplists = tmp / "iplists"
    iplists.mkdir()
    (iplists / "mynet").write_text("10.20.0.0/16\nfd00:20::/48\n")
    blocks = [f"10.20.{k}.0/24" for k in range(0, 48, 2)] + [f"2001:db8:{k}::/48" for k in range(0, 16, 2)]
    (iplists / "blocks").write_text("\n".join(blocks) + "\n")
    true = shutil.which("true")  # without one, the levels run no scripts
    scripts = f'"action-script": "{true}", "back2norm-script": "{true}",' if true else ""
    for rel, text in _OBJECTS.items():
        d = tmp / "mo" / rel
        d.mkdir(parents=True)
        (d / "mo.conf").write_text(text.replace("@SCRIPTS@", scripts))
    (tmp / "mo" / "lan" / "limits.csv").write_text("# src host, packets/s, bits/s\n10.20.0.1,1000,-\n")
    (tmp / "mo" / "lan" / "expected.csv").write_text("10.20.200.200,100,-\n")
    devices = tmp / "devices.conf"
    devices.write_text(
        '[{"ip": "192.0.2.5", "sampling-rate": 10},\n {"ip": "2001:db8::1", "id": 1, "sampling-rate": 2}]\n'
    )
    return CollectorConfig(
        templates_file=tmp / "templates.json",
        devices_file=devices,
        stats_interval_s=0,
        mo_dir=tmp / "mo",
        iplists_dir=iplists,
        export_dir=tmp / "export",
        notifications_dir=tmp / "notifications",
        script_timeout_s=10,
    )


def _replay(cfg: Any, captures: list[Path], probe_stats: Path | None) -> None:
    """``mirrorflow collect --pcap A --pcap B --mo-dir ... --export-dir ...``, in-process."""
    from appliance.collector.api import ApiSettings
    from appliance.collector.config import load_runtime
    from appliance.collector.pipeline import Pipeline

    cfg.export_dir.mkdir()
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False,
                        api=ApiSettings(address=None, probe_stats=probe_stats, flows_interval_s=0))  # fmt: skip
    pipeline.start_api()
    try:
        pipeline.collector.run_pcap(captures)
        _ask_api(pipeline.api)
    finally:
        pipeline.close()  # the capture's last windows are exported too
    pipeline.collector.log_stats(0)
    if not any(cfg.export_dir.iterdir()):
        log.warning("the replay exported no window: the workload misses the window code")


def _live_restart(cfg: Any, captures: list[Path]) -> None:
    """A live collector after a restart: templates from the file the replay saved, receive
    batches the size recvmmsg gives, receive times from the wall clock (so the objects see the
    decoder's own column views, not the replay's time slices), a reload as on SIGHUP."""
    from appliance.collector.api import ApiSettings
    from appliance.collector.config import load_runtime
    from appliance.collector.pipeline import Pipeline
    from appliance.collector.receive import PcapReader

    pipeline = Pipeline(cfg, load_runtime(cfg), live=True,
                        api=ApiSettings(address=None, probe_stats=None, flows_interval_s=0))  # fmt: skip
    pipeline.start_api()
    try:
        for path in captures:
            with PcapReader(path) as reader:
                for packets in reader.batches(chunk=256):
                    packets.recv_ns[:] = time.time_ns()
                    pipeline.collector.process(packets)
        pipeline.reload()
        _ask_api(pipeline.api)
    finally:
        pipeline.close()


def _ask_api(api: Any) -> None:
    """Every endpoint of the live API, answered in-process (no HTTP server is started)."""
    from appliance.collector.api.metrics import render_metrics
    from appliance.collector.api.server import route

    snap = api.publish()
    for path, query in _API_REQUESTS:
        route(snap, path, query)
    render_metrics(snap)
