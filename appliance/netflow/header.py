"""Header and record layouts of NetFlow v1, v5, v9 and IPFIX, as big-endian numpy dtypes.

The dtypes are the single description of each fixed layout: the encoders fill them, and
the collector's decoder reads the same bytes through the sizes and byte offsets derived
from them below (``*_SIZE``, ``*_AT_*``: plain ints, which numba kernels compile in as
constants) and through `record_layout`. Sizes are asserted at import time so a typo in a
table cannot go unnoticed.

References: Cisco's NetFlow v1/v5 export formats, RFC 3954 (v9), RFC 7011 (IPFIX).
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = [
    "AT_COUNT",
    "AT_VERSION",
    "ENTERPRISE_BIT",
    "IPFIX",
    "IPFIX_AT_EXPORT_TIME",
    "IPFIX_AT_LENGTH",
    "IPFIX_AT_OBSERVATION_DOMAIN",
    "IPFIX_AT_SEQUENCE",
    "IPFIX_HEADER",
    "IPFIX_HEADER_SIZE",
    "IPFIX_HEADER_STRUCT",
    "IPFIX_OPTIONS_TEMPLATE_SET_ID",
    "IPFIX_TEMPLATE_SET_ID",
    "MIN_DATA_SET_ID",
    "SET_AT_LENGTH",
    "SET_HEADER",
    "SET_HEADER_SIZE",
    "SET_HEADER_STRUCT",
    "V1",
    "V1_HEADER",
    "V1_HEADER_SIZE",
    "V1_RECORD",
    "V5",
    "V5_AT_ENGINE_ID",
    "V5_AT_ENGINE_TYPE",
    "V5_AT_FLOW_SEQUENCE",
    "V5_AT_SAMPLING",
    "V5_AT_SYS_UPTIME",
    "V5_AT_UNIX_NSECS",
    "V5_AT_UNIX_SECS",
    "V5_FIELDS",
    "V5_HEADER",
    "V5_HEADER_SIZE",
    "V5_HEADER_STRUCT",
    "V5_MAX_RECORDS",
    "V5_RECORD",
    "V5_RECORD_SIZE",
    "V5_SAMPLING_INTERVAL_MASK",
    "V9",
    "V9_AT_SEQUENCE",
    "V9_AT_SOURCE_ID",
    "V9_AT_SYS_UPTIME",
    "V9_AT_UNIX_SECS",
    "V9_HEADER",
    "V9_HEADER_SIZE",
    "V9_HEADER_STRUCT",
    "V9_OPTIONS_TEMPLATE_SET_ID",
    "V9_TEMPLATE_SET_ID",
    "VARIABLE_LENGTH",
    "V9Scope",
    "record_layout",
]

#: Version numbers as they appear in the first two bytes of every packet.
V1, V5, V9, IPFIX = 1, 5, 9, 10

#: v9 FlowSet ids (RFC 3954 section 5.2/6.1).
V9_TEMPLATE_SET_ID = 0
V9_OPTIONS_TEMPLATE_SET_ID = 1
#: IPFIX Set ids (RFC 7011 section 3.3.2).
IPFIX_TEMPLATE_SET_ID = 2
IPFIX_OPTIONS_TEMPLATE_SET_ID = 3
#: Data sets carry their template id, which is at least this (both v9 and IPFIX).
MIN_DATA_SET_ID = 256

#: IPFIX field length meaning "variable length, prefixed by 1 or 3 length octets".
VARIABLE_LENGTH = 0xFFFF
#: IPFIX: set in the element id when a 4-byte enterprise number follows.
ENTERPRISE_BIT = 0x8000


class V9Scope:
    """v9 options-template scope field types (RFC 3954 section 6.2). Not element ids."""

    SYSTEM = 1
    INTERFACE = 2
    LINE_CARD = 3
    CACHE = 4
    TEMPLATE = 5


V1_HEADER = np.dtype(
    [
        ("version", ">u2"),
        ("count", ">u2"),
        ("sys_uptime", ">u4"),
        ("unix_secs", ">u4"),
        ("unix_nsecs", ">u4"),
    ]
)

V1_RECORD = np.dtype(
    [
        ("src_addr", ">u4"),
        ("dst_addr", ">u4"),
        ("next_hop", ">u4"),
        ("in_if", ">u2"),
        ("out_if", ">u2"),
        ("packets", ">u4"),
        ("bytes", ">u4"),
        ("first_switched", ">u4"),
        ("last_switched", ">u4"),
        ("src_port", ">u2"),
        ("dst_port", ">u2"),
        ("pad1", ">u2"),
        ("proto", "u1"),
        ("tos", "u1"),
        ("tcp_flags", "u1"),
        ("pad2", "V7"),  # TCP retransmission counters and reserved bytes: not decoded
    ]
)
"""A NetFlow v1 record: like v5 without AS numbers and masks (decoded, never encoded)."""

V5_HEADER = np.dtype(
    [
        ("version", ">u2"),
        ("count", ">u2"),
        ("sys_uptime", ">u4"),  # ms since the exporter booted
        ("unix_secs", ">u4"),
        ("unix_nsecs", ">u4"),
        ("flow_sequence", ">u4"),  # flows exported before this packet
        ("engine_type", "u1"),
        ("engine_id", "u1"),
        ("sampling", ">u2"),  # 2-bit mode << 14 | 14-bit interval
    ]
)

V5_RECORD = np.dtype(
    [
        ("src_addr", ">u4"),
        ("dst_addr", ">u4"),
        ("next_hop", ">u4"),
        ("in_if", ">u2"),
        ("out_if", ">u2"),
        ("packets", ">u4"),
        ("bytes", ">u4"),
        ("first_switched", ">u4"),
        ("last_switched", ">u4"),
        ("src_port", ">u2"),
        ("dst_port", ">u2"),
        ("pad1", "u1"),
        ("tcp_flags", "u1"),
        ("proto", "u1"),
        ("tos", "u1"),
        ("src_as", ">u2"),
        ("dst_as", ">u2"),
        ("src_mask", "u1"),
        ("dst_mask", "u1"),
        ("pad2", ">u2"),
    ]
)
"""A v5 flow record. Field names are registry names, so columns map one to one."""

#: Registry names carried by a v5 record, in wire order.
V5_FIELDS: tuple[str, ...] = tuple(n for n in V5_RECORD.names if not n.startswith("pad"))
#: Cisco's limit on records per v5 packet (collectors rely on it).
V5_MAX_RECORDS = 30

V9_HEADER = np.dtype(
    [
        ("version", ">u2"),
        ("count", ">u2"),  # template + options + data records in the packet
        ("sys_uptime", ">u4"),
        ("unix_secs", ">u4"),
        ("sequence", ">u4"),  # packets sent before this one, per source id
        ("source_id", ">u4"),
    ]
)

IPFIX_HEADER = np.dtype(
    [
        ("version", ">u2"),
        ("length", ">u2"),  # whole message, header included
        ("export_time", ">u4"),
        ("sequence", ">u4"),  # data records sent before this message, mod 2**32
        ("observation_domain", ">u4"),
    ]
)

#: FlowSet (v9) / Set (IPFIX) header: id and length including this header.
SET_HEADER = np.dtype([("set_id", ">u2"), ("length", ">u2")])

assert V1_HEADER.itemsize == 16 and V1_RECORD.itemsize == 48
assert V5_HEADER.itemsize == 24 and V5_RECORD.itemsize == 48
assert V9_HEADER.itemsize == 20 and IPFIX_HEADER.itemsize == 16 and SET_HEADER.itemsize == 4


def _at(dtype: np.dtype, name: str) -> int:
    return int(dtype.fields[name][1])


def record_layout(record: np.dtype) -> tuple[tuple[str, int, int], ...]:
    """(name, byte offset, length) of every field of a fixed record, padding included."""
    return tuple((name, _at(record, name), record[name].itemsize) for name in record.names)


# Sizes and byte offsets of the fixed layouts above, for code that reads packets in place.
#: Every version starts with the version number and (except IPFIX: length) a record count.
AT_VERSION = _at(V5_HEADER, "version")
AT_COUNT = _at(V5_HEADER, "count")
V1_HEADER_SIZE = V1_HEADER.itemsize
V5_HEADER_SIZE = V5_HEADER.itemsize
V5_RECORD_SIZE = V5_RECORD.itemsize
V5_AT_SYS_UPTIME = _at(V5_HEADER, "sys_uptime")
V5_AT_UNIX_SECS = _at(V5_HEADER, "unix_secs")
V5_AT_UNIX_NSECS = _at(V5_HEADER, "unix_nsecs")
V5_AT_FLOW_SEQUENCE = _at(V5_HEADER, "flow_sequence")
V5_AT_ENGINE_TYPE = _at(V5_HEADER, "engine_type")
V5_AT_ENGINE_ID = _at(V5_HEADER, "engine_id")
V5_AT_SAMPLING = _at(V5_HEADER, "sampling")
#: The interval ("1 out of N") in the v5 sampling field; the top 2 bits are the mode.
V5_SAMPLING_INTERVAL_MASK = 0x3FFF
V9_HEADER_SIZE = V9_HEADER.itemsize
V9_AT_SYS_UPTIME = _at(V9_HEADER, "sys_uptime")
V9_AT_UNIX_SECS = _at(V9_HEADER, "unix_secs")
V9_AT_SEQUENCE = _at(V9_HEADER, "sequence")
V9_AT_SOURCE_ID = _at(V9_HEADER, "source_id")
IPFIX_HEADER_SIZE = IPFIX_HEADER.itemsize
IPFIX_AT_LENGTH = _at(IPFIX_HEADER, "length")
IPFIX_AT_EXPORT_TIME = _at(IPFIX_HEADER, "export_time")
IPFIX_AT_SEQUENCE = _at(IPFIX_HEADER, "sequence")
IPFIX_AT_OBSERVATION_DOMAIN = _at(IPFIX_HEADER, "observation_domain")
SET_HEADER_SIZE = SET_HEADER.itemsize
SET_AT_LENGTH = _at(SET_HEADER, "length")
# A v1 header is the first 16 bytes of a v5 header: the decoder reads both with the V5_AT_* offsets.
assert V1_HEADER.descr == V5_HEADER.descr[: len(V1_HEADER.names)] and V1_RECORD.itemsize == V5_RECORD_SIZE
assert _at(V9_HEADER, "count") == AT_COUNT and _at(IPFIX_HEADER, "version") == AT_VERSION


def _struct_of(dtype: np.dtype) -> struct.Struct:
    codes = {1: "B", 2: "H", 4: "I", 8: "Q"}
    return struct.Struct(">" + "".join(codes[dtype[name].itemsize] for name in dtype.names))


#: `struct` twins of the dtypes, for packing one header at a time.
V5_HEADER_STRUCT = _struct_of(V5_HEADER)
V9_HEADER_STRUCT = _struct_of(V9_HEADER)
IPFIX_HEADER_STRUCT = _struct_of(IPFIX_HEADER)
SET_HEADER_STRUCT = _struct_of(SET_HEADER)
