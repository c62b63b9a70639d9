"""The kernel's flow key and value as numpy dtypes (they mirror the structs in flowcache.bpf.c).

Drained maps arrive as two arrays of these dtypes; everything after that is columnar.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = [
    "KEY_DTYPE",
    "VAL_DTYPE",
    "KEY_WORDS",
    "Counter",
    "KeyField",
    "Feature",
    "SamplerMode",
    "FlowEndReason",
]

#: struct flow_key (48 bytes). IPv4 addresses sit in the first 4 bytes of src/dst.
KEY_DTYPE = np.dtype(
    [
        ("src", "u1", 16),
        ("dst", "u1", 16),
        ("ifindex", "<u4"),
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("vlan", "<u2"),
        ("proto", "u1"),
        ("tos", "u1"),
        ("ipver", "u1"),
        ("pad", "u1", 3),
    ]
)
assert KEY_DTYPE.itemsize == 48
KEY_WORDS = KEY_DTYPE.itemsize // 8

#: struct flow_val (72 bytes).
VAL_DTYPE = np.dtype(
    [
        ("packets", "<u8"),
        ("bytes", "<u8"),
        ("first_ns", "<u8"),
        ("last_ns", "<u8"),
        ("tcp_flags", "<u8"),
        ("mpls_top", "<u4"),
        ("flow_label", "<u4"),
        ("inner_vlan", "<u2"),
        ("min_ttl", "u1"),
        ("max_ttl", "u1"),
        ("src_mac", "u1", 6),
        ("dst_mac", "u1", 6),
        ("frag", "u1"),
        ("mpls_depth", "u1"),
        ("pad", "u1", 6),
    ]
)
assert VAL_DTYPE.itemsize == 72


class Counter(enum.IntEnum):
    """Indexes of the kernel's per-CPU `counters` array (enum mf_counter)."""

    FRAMES = 0
    FRAME_BYTES = 1
    IP_PACKETS = 2
    IP_BYTES = 3
    ACCOUNTED_PACKETS = 4
    ACCOUNTED_BYTES = 5
    REFUSED_PACKETS = 6
    REFUSED_BYTES = 7
    NEW_FLOWS = 8
    INSERT_RACES = 9
    NON_IP = 10
    PROMISC_ONLY = 11
    SAMPLER_SELECTED = 12
    SAMPLER_DISCARDED = 13
    FRAGMENTS = 14
    TRUNCATED = 15
    SELF_EXPORT = 16
    MPLS = 17
    VLAN = 18


N_COUNTERS = len(Counter)


class KeyField(enum.IntFlag):
    """Parts of the flow key (config.key_fields); a part left out is zeroed in the kernel."""

    PORTS = 1 << 0
    TOS = 1 << 1
    VLAN = 1 << 2
    IFINDEX = 1 << 3
    SRC = 1 << 4
    DST = 1 << 5
    PROTO = 1 << 6

    @classmethod
    def full(cls) -> KeyField:
        return cls.PORTS | cls.TOS | cls.VLAN | cls.IFINDEX | cls.SRC | cls.DST | cls.PROTO


class Feature(enum.IntFlag):
    MPLS = 1 << 0
    MACS = 1 << 1


class SamplerMode(enum.IntEnum):
    """ipt_netflow's sampler names; the numbers are the kernel's."""

    OFF = 0
    DETERMINISTIC = 1
    RANDOM = 2
    HASH = 3

    @property
    def ipfix_algorithm(self) -> int:
        """samplingAlgorithm / samplerMode (RFC 7270: 1 deterministic, 2 random)."""
        return {0: 0, 1: 1, 2: 2, 3: 2}[int(self)]


class FlowEndReason(enum.IntEnum):
    """IPFIX flowEndReason (RFC 7011 / IANA)."""

    IDLE_TIMEOUT = 1
    ACTIVE_TIMEOUT = 2
    END_OF_FLOW = 3
    FORCED_END = 4
    LACK_OF_RESOURCES = 5
