"""How a field's bytes are interpreted (`FieldType`): shared by the registry, the element
tables, the encoders and the numba decoder."""

from __future__ import annotations

import enum

__all__ = ["ADDRESS_TYPES", "REFERENCE_TYPES", "FieldType"]


class FieldType(enum.IntEnum):
    """How a field's bytes are interpreted. The values are used inside numba code."""

    UNSIGNED = 0  # big-endian unsigned integer, 1..8 bytes (reduced-size encoding allowed)
    SIGNED = 1  # big-endian two's complement
    IPV4 = 2  # 4 bytes, stored as the integer of its big-endian value
    IPV6 = 3  # 16 bytes, stored as (hi, lo) uint64 in the v6 block
    MAC = 4  # 6 bytes, stored as integer
    STRING = 5  # text, fixed or variable length: stored as a reference (offset << 16 | length)
    BYTES = 6  # opaque octets: stored as a reference like STRING
    FLOAT = 7  # IEEE float32/float64: stored as float64 bit pattern
    BOOL = 8  # IPFIX boolean (1 = true, 2 = false)
    TIME_UPTIME_MS = 9  # v9 FIRST/LAST_SWITCHED: ms of exporter uptime
    TIME_SEC = 10  # dateTimeSeconds
    TIME_MS = 11  # dateTimeMilliseconds
    TIME_NTP_US = 12  # dateTimeMicroseconds (NTP format)
    TIME_NTP_NS = 13  # dateTimeNanoseconds (NTP format)
    TIME_DELTA_US = 14  # flowStart/EndDeltaMicroseconds (relative to export time)


#: Types whose values live as references into the packet buffer, not as numbers.
REFERENCE_TYPES = (FieldType.STRING, FieldType.BYTES)
#: Types that are IP or MAC addresses (printed as text).
ADDRESS_TYPES = (FieldType.IPV4, FieldType.IPV6, FieldType.MAC)
