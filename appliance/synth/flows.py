"""Synthetic but realistic flow records, and the datagrams our encoders make of them.

Value distributions follow what a border router exports: a few thousand busy hosts
(Zipf-like popularity) inside a 65 k-address pool, mostly TCP to a handful of service
ports from ephemeral ports, heavy-tailed byte counts (log-normal), packets consistent with
bytes, a few dozen interfaces and a few hundred AS numbers. A fixed seed makes every run
encode the same datagrams.
"""

from __future__ import annotations

import numpy as np

from appliance.netflow import IPFIXEncoder, V5Encoder, V9Encoder, template_for

__all__ = [
    "BOOT_NS",
    "IPFIX6_FIELDS",
    "NOW_NS",
    "V9_FIELDS",
    "flows",
    "ipfix6_datagrams",
    "now_ns",
    "v5_datagrams",
    "v9_datagrams",
]

#: The typical v9 template of a router (19 fields, 54 bytes a record: 25 records a datagram).
V9_FIELDS: list[str | tuple[str, int]] = [
    "src_addr", "dst_addr", "next_hop", "src_port", "dst_port", "proto", "tos",
    ("tcp_flags", 1), ("bytes", 4), ("packets", 4), "in_if", "out_if", "src_as", "dst_as",
    "src_mask", "dst_mask", "first_switched", "last_switched", "direction",
]
#: IPFIX with IPv6 addresses: the same list with the IPv6 twins and epoch-ms times.
IPFIX6_FIELDS: list[str | tuple[str, int]] = [
    "src_addr", "dst_addr", "next_hop", "src_port", "dst_port", "proto", "tos",
    ("tcp_flags", 1), "bytes", "packets", "in_if", "out_if", "src_as", "dst_as",
    "src_mask", "dst_mask", "flow_start_ms", "flow_end_ms", "direction",
]

_SERVICE_PORTS = np.array([443, 80, 53, 123, 22, 25, 993, 3389, 8080, 5060, 1194, 179])
_SERVICE_P = np.array([0.46, 0.18, 0.12, 0.03, 0.03, 0.02, 0.02, 0.02, 0.04, 0.02, 0.02, 0.04])
_MTU = 1400
#: when the exporter booted, and the moment the records are exported (one day of uptime)
BOOT_NS = 1_700_000_000 * 10**9
NOW_NS = BOOT_NS + 86_400 * 10**9


def _zipf_index(rng: np.random.Generator, n: int, pool: int, a: float = 1.1) -> np.ndarray:
    return (rng.zipf(a, n) - 1) % pool


def flows(n: int, seed: int = 1, ipv6: bool = False) -> dict[str, np.ndarray]:
    """`n` flow records as encoder columns (registry names)."""
    rng = np.random.default_rng(seed)
    pool = 65536
    if ipv6:
        prefix = np.frombuffer(bytes.fromhex("20010db8000100000000000000000000"), np.uint8)
        hosts = np.tile(prefix, (pool, 1))
        hosts[:, 8:] = rng.integers(0, 256, (pool, 8), dtype=np.uint8)
    else:
        hosts = (0x0A000000 + rng.permutation(pool)).astype(np.uint64)  # 10.0.0.0/16
        outside = rng.integers(0x01000000, 0xDF000000, pool, dtype=np.uint64)
    src_i = _zipf_index(rng, n, pool)
    dst_i = _zipf_index(rng, n, pool)
    inbound = rng.random(n) < 0.5
    proto = rng.choice(np.array([6, 17, 1, 47, 50]), n, p=[0.78, 0.19, 0.02, 0.005, 0.005])
    service = rng.choice(_SERVICE_PORTS, n, p=_SERVICE_P)
    ephemeral = rng.integers(32768, 61000, n)
    src_port = np.where(inbound, service, ephemeral)
    dst_port = np.where(inbound, ephemeral, service)
    src_port[proto == 1] = 0
    dst_port[proto == 1] = rng.choice(np.array([0, 768, 2048, 2816]), int((proto == 1).sum()))
    packets = np.maximum(1, np.round(rng.lognormal(1.2, 1.6, n))).astype(np.uint64)
    packets = np.minimum(packets, 10_000_000)
    avg_size = rng.choice(np.array([64, 120, 576, 1200, 1460]), n, p=[0.3, 0.2, 0.15, 0.15, 0.2])
    nbytes = np.minimum(packets * avg_size.astype(np.uint64), 2**32 - 1).astype(np.uint64)
    uptime_ms = (NOW_NS - BOOT_NS) // 10**6
    duration = np.minimum(rng.exponential(8_000, n), 120_000).astype(np.uint64)
    last = (uptime_ms - rng.integers(0, 60_000, n)).astype(np.uint64)
    first = last - duration
    tcp = proto == 6
    flags = np.where(tcp, rng.choice(np.array([0x1B, 0x18, 0x02, 0x12, 0x10, 0x19, 0x04]), n), 0)
    cols: dict[str, np.ndarray] = {
        "src_port": src_port.astype(np.uint64),
        "dst_port": dst_port.astype(np.uint64),
        "proto": proto.astype(np.uint64),
        "tos": rng.choice(np.array([0, 0, 0, 0, 0x28, 0xB8]), n).astype(np.uint64),
        "tcp_flags": flags.astype(np.uint64),
        "bytes": nbytes,
        "packets": packets,
        "in_if": rng.choice(np.array([1, 2, 3, 4, 10, 11, 12, 101, 102]), n).astype(np.uint64),
        "out_if": rng.choice(np.array([1, 2, 3, 4, 10, 11, 12, 101, 102]), n).astype(np.uint64),
        "src_as": _zipf_index(rng, n, 400).astype(np.uint64) + 64512,
        "dst_as": _zipf_index(rng, n, 400).astype(np.uint64) + 64512,
        "direction": inbound.astype(np.uint64) ^ 1,
        "first_switched": first,
        "last_switched": last,
        "flow_start_ms": first + BOOT_NS // 10**6,
        "flow_end_ms": last + BOOT_NS // 10**6,
    }
    if ipv6:
        cols["src_addr6"] = hosts[src_i]
        cols["dst_addr6"] = hosts[dst_i]
        cols["next_hop6"] = hosts[rng.integers(0, 4, n)]
        cols["src_mask6"] = rng.choice(np.array([32, 48, 56, 64]), n).astype(np.uint64)
        cols["dst_mask6"] = rng.choice(np.array([32, 48, 56, 64]), n).astype(np.uint64)
    else:
        cols["src_addr"] = np.where(inbound, outside[src_i], hosts[src_i])
        cols["dst_addr"] = np.where(inbound, hosts[dst_i], outside[dst_i])
        cols["next_hop"] = (0xC0A80001 + rng.integers(0, 4, n)).astype(np.uint64)
        cols["src_mask"] = rng.choice(np.array([8, 16, 19, 22, 24]), n).astype(np.uint64)
        cols["dst_mask"] = rng.choice(np.array([8, 16, 19, 22, 24]), n).astype(np.uint64)
    return cols


def now_ns() -> int:
    """The encoders' clock: always `NOW_NS`, so every run encodes the same datagrams."""
    return NOW_NS


def v9_datagrams(n: int, seed: int = 1, source_id: int = 1) -> tuple[list[bytes], list[bytes], int]:
    """(template datagrams, data datagrams without templates, records) for `n` flows."""
    enc = V9Encoder(
        [template_for(V9_FIELDS, 256)], source_id=source_id, mtu=_MTU, clock=now_ns,
        boot_ns=BOOT_NS, template_refresh_packets=0, template_refresh_seconds=0,
    )
    templates = enc.encode_templates()
    return templates, enc.encode(flows(n, seed)), n


def ipfix6_datagrams(n: int, seed: int = 2) -> tuple[list[bytes], list[bytes], int]:
    """As `v9_datagrams`, IPFIX with IPv6 addresses (64-byte fields: fewer records a datagram)."""
    enc = IPFIXEncoder(
        [template_for(IPFIX6_FIELDS, 256, ipv6=True)], observation_domain=1, mtu=_MTU,
        clock=now_ns, boot_ns=BOOT_NS, template_refresh_packets=0, template_refresh_seconds=0,
    )
    templates = enc.encode_templates()
    return templates, enc.encode(flows(n, seed, ipv6=True)), n


def v5_datagrams(n: int, seed: int = 3) -> tuple[list[bytes], list[bytes], int]:
    """v5 datagrams (30 records each at MTU 1500); v5 counters and AS/ifindex fit 16/32 bits."""
    cols = flows(n, seed)
    cols["src_as"] = cols["src_as"] & 0xFFFF
    cols["dst_as"] = cols["dst_as"] & 0xFFFF
    enc = V5Encoder(mtu=1500, clock=now_ns, boot_ns=BOOT_NS, overflow="clamp")
    return [], enc.encode(cols), n
