"""Flow-table records (`flowtable.FLOW_DTYPE`) as the encoders' columns: addresses, MACs,
directions, times relative to the exporter's epoch."""

from __future__ import annotations

import numpy as np

__all__ = ["SAMPLER_ID", "flow_columns", "flow_directions"]

#: the sampler id the probe's flows and its sampler options carry
SAMPLER_ID = 1


def _ipv4_int(addr16: np.ndarray) -> np.ndarray:
    a = addr16[:, :4].astype(np.uint64)
    return (a[:, 0] << np.uint64(24)) | (a[:, 1] << np.uint64(16)) | (a[:, 2] << np.uint64(8)) | a[:, 3]


def _mac_int(mac: np.ndarray) -> np.ndarray:
    out = np.zeros(len(mac), np.uint64)
    for i in range(6):
        out = (out << np.uint64(8)) | mac[:, i].astype(np.uint64)
    return out


def flow_directions(flows: np.ndarray, direction_mac: bytes | None) -> np.ndarray:
    """flowDirection per flow from the MACs of its first packet: 1 (egress) when the source is
    `direction_mac` (the router or host whose port is mirrored), 0 (ingress) when the
    destination is, -1 when neither (or no MAC is configured): then it is not exported."""
    out = np.full(len(flows), -1, np.int8)
    if direction_mac is None or len(flows) == 0:
        return out
    mac = np.frombuffer(direction_mac, np.uint8)
    v = flows["val"]
    out[(v["dst_mac"] == mac).all(axis=1)] = 0
    out[(v["src_mac"] == mac).all(axis=1)] = 1
    return out


def flow_columns(flows: np.ndarray, epoch_offset_ns: int, ipv6: bool,
                 directions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Registry columns for the encoders from FLOW_DTYPE records of one address family.

    Args:
        flows: ended flows (all IPv4 or all IPv6).
        epoch_offset_ns: added to the kernel's CLOCK_MONOTONIC times to get epoch times.
        ipv6: the family of `flows`.
        directions: `flow_directions` of `flows` (default: unknown).
    """
    k, v = flows["key"], flows["val"]
    proto = k["proto"].astype(np.uint64)
    icmp = (proto == 1) | (proto == 58)
    cols: dict[str, np.ndarray] = {
        "src_port": k["sport"].astype(np.uint64),
        "dst_port": k["dport"].astype(np.uint64),
        "proto": proto,
        "tos": k["tos"].astype(np.uint64),
        "tcp_flags": (v["tcp_flags"] & np.uint64(0xFF)).astype(np.uint64),
        "in_if": k["ifindex"].astype(np.uint64),
        "packets": v["packets"].astype(np.uint64),
        "bytes": v["bytes"].astype(np.uint64),
        "flow_start_ms": ((v["first_ns"].astype(np.int64) + epoch_offset_ns) // 1_000_000),
        "flow_end_ms": ((v["last_ns"].astype(np.int64) + epoch_offset_ns) // 1_000_000),
        "min_ttl": v["min_ttl"].astype(np.uint64),
        "max_ttl": v["max_ttl"].astype(np.uint64),
        "ip_version": k["ipver"].astype(np.uint64),
        "direction": np.zeros(len(flows), np.uint64) if directions is None
        else np.maximum(directions, 0).astype(np.uint64),
        # the top label stack entry: label << 12 | exp << 9 | bottom << 8 | ttl
        "mpls_label_1": (v["mpls_top"] >> np.uint32(8)).astype(np.uint64),
        "mpls_top_label_ttl": (v["mpls_top"] & np.uint32(0xFF)).astype(np.uint64),
        "src_vlan": k["vlan"].astype(np.uint64),
        "dot1q_vlan": k["vlan"].astype(np.uint64),
        "dot1q_customer_vlan": v["inner_vlan"].astype(np.uint64),
        "src_mac": _mac_int(v["src_mac"]),
        "dst_mac": _mac_int(v["dst_mac"]),
        "flow_end_reason": flows["end_reason"].astype(np.uint64),
        "sampler_id": np.full(len(flows), SAMPLER_ID, np.uint64),
        "selector_id": np.full(len(flows), SAMPLER_ID, np.uint64),
    }
    icmp_code = np.where(icmp, k["dport"], 0).astype(np.uint64)
    if ipv6:
        cols["src_addr6"] = np.ascontiguousarray(k["src"])
        cols["dst_addr6"] = np.ascontiguousarray(k["dst"])
        cols["icmp_type6"] = icmp_code
        cols["flow_label6"] = v["flow_label"].astype(np.uint64)
    else:
        cols["src_addr"] = _ipv4_int(k["src"])
        cols["dst_addr"] = _ipv4_int(k["dst"])
        cols["icmp_type"] = icmp_code
    return cols
