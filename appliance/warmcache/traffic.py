"""warm-cache's synthetic traffic: what the probe's loop exports and what routers send, as
datagrams on one timeline, and the pcap/pcapng captures the collector replays.

The probe part runs the probe's own loop (flow table, timeouts, options, interface names)
over a memory flow cache and memory transports; the router part encodes v9 and IPFIX with
the fields probes never send (text fields, sampler options, an IPv6 exporter).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.synth import udp_frame, write_pcap, write_pcapng

__all__ = ["Datagram", "FakeClock", "probe_datagrams", "router_datagrams", "write_captures"]

log = logging.getLogger("mirrorflow.warm")

NS = 1_000_000_000
BASE_NS = 1_700_000_000 * NS  # wall-clock start of the synthetic traffic
_MONO_NS = 1_000 * NS  # the probe's CLOCK_MONOTONIC at that moment
_SECONDS = 40  # of traffic: four 10 s windows, several moving-average time constants
_PCAPNG_FROM_S = 30  # datagrams from then on go into the pcapng file
_ROUTER_MAC = bytes.fromhex("02005e000001")  # the mirrored router (--direction-mac)
_IF_NAMES = ("eth0", "ge-0/0/1", "xe-1/2/3.100")


class FakeClock:
    """The probe's two clocks (and the routers' one) on the synthetic timeline."""

    def __init__(self) -> None:
        self.second = 0

    def monotonic_ns(self) -> int:
        return _MONO_NS + self.second * NS

    def time_ns(self) -> int:
        return BASE_NS + self.second * NS


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP datagram an exporter sent, at its time on the synthetic timeline."""

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


def probe_datagrams(clock: FakeClock, run_probe: bool, stats: Path) -> list[Datagram]:
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
    out: list[Datagram] = []
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
            out.extend(Datagram(addr, port, clock.time_ns(), p) for p in t.sent)
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
                exporter.export(flows, BASE_NS - _MONO_NS)
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


def router_datagrams(clock: FakeClock) -> list[Datagram]:
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
        boot_ns=BASE_NS - 3600 * NS,
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
    out: list[Datagram] = []
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
        out.extend(Datagram("192.0.2.1", 2055, clock.time_ns(), p) for p in payloads)
        addr6 = np.zeros((n, 16), np.uint8)
        addr6[:] = np.frombuffer(ipaddress.IPv6Address("2001:db8:7::").packed, np.uint8)
        addr6[:, 15] = i
        dst6 = np.zeros((n, 16), np.uint8)
        dst6[:] = np.frombuffer(ipaddress.IPv6Address("fd00:20:1::").packed, np.uint8)
        dst6[:, 15] = i
        payloads = ipfix.encode({**cols, "src_addr6": addr6, "dst_addr6": dst6}, 256)
        payloads += ipfix.encode(cols4, 257)
        out.extend(Datagram("2001:db8::1", 4739, clock.time_ns(), p) for p in payloads)
    return out


# ---- capture files --------------------------------------------------------------------------

_COLLECTOR4 = "192.0.2.100"
_COLLECTOR6 = "2001:db8::100"
_COLLECTOR_MAC = bytes.fromhex("020000000100")


def _frame(d: Datagram) -> tuple[int, bytes]:
    """The datagram in an Ethernet frame from its exporter to the collector, with its time."""
    collector = _COLLECTOR4 if ipaddress.ip_address(d.exporter).version == 4 else _COLLECTOR6
    frame = udp_frame(d.exporter, collector, 50000, d.port, d.payload, src_mac=_ROUTER_MAC, dst_mac=_COLLECTOR_MAC)
    return d.time_ns, frame


def write_captures(datagrams: list[Datagram], pcap: Path, pcapng: Path) -> None:
    """The first `_PCAPNG_FROM_S` seconds into a classic pcap (µs), the rest into a pcapng (ns)."""
    split = BASE_NS + _PCAPNG_FROM_S * NS
    write_pcap(pcap, (_frame(d) for d in datagrams if d.time_ns < split))
    write_pcapng(pcapng, (_frame(d) for d in datagrams if d.time_ns >= split))
