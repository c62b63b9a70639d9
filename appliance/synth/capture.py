"""Capture files: classic pcap and pcapng, written as libpcap and Wireshark read them.

`write_pcap` and `write_pcapng` take (time in ns, frame) pairs; the pieces (`pcap_header`,
`pcap_record`, `section_header`, `interface_description`, `enhanced_packet`, `pcapng_block`)
let a caller write other byte orders, resolutions, several interfaces or sections.
The formats are those of the IETF drafts draft-ietf-opsawg-pcap and draft-ietf-opsawg-pcapng.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "LINKTYPE_ETHERNET",
    "PCAP_MAGIC_MICRO",
    "PCAP_MAGIC_NANO",
    "enhanced_packet",
    "interface_description",
    "pcap_header",
    "pcap_record",
    "pcapng_block",
    "section_header",
    "write_pcap",
    "write_pcapng",
]

LINKTYPE_ETHERNET = 1
PCAP_MAGIC_MICRO = 0xA1B2C3D4  # classic pcap, microsecond timestamps
PCAP_MAGIC_NANO = 0xA1B23C4D  # classic pcap, nanosecond timestamps
SNAPLEN = 262144  # tcpdump's default
_SECTION_HEADER = 0x0A0D0D0A
_INTERFACE_DESCRIPTION = 1
_ENHANCED_PACKET = 6
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_END, _IF_TSRESOL, _IF_TSOFFSET = 0, 9, 14
_NS = 1_000_000_000


# ---- classic pcap ---------------------------------------------------------------------------


def pcap_header(
    link: int = LINKTYPE_ETHERNET, *, nanoseconds: bool = False, snaplen: int = SNAPLEN, byteorder: str = "<"
) -> bytes:
    """The 24-byte file header: magic, version 2.4, zone, sigfigs, snaplen, link type.

    Args:
        link: the LINKTYPE_* of every frame.
        nanoseconds: timestamps in ns (magic 0xA1B23C4D) rather than µs.
        byteorder: "<" (little endian) or ">" (big endian).
    """
    magic = PCAP_MAGIC_NANO if nanoseconds else PCAP_MAGIC_MICRO
    return struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link)


def pcap_record(time_ns: int, frame: bytes, *, nanoseconds: bool = False, byteorder: str = "<") -> bytes:
    """One record: seconds, µs (or ns), captured and original length, then the frame."""
    sec, frac = divmod(time_ns, _NS)
    frac = frac if nanoseconds else frac // 1000
    return struct.pack(byteorder + "IIII", sec, frac, len(frame), len(frame)) + frame


def write_pcap(
    path: Path,
    frames: Iterable[tuple[int, bytes]],
    link: int = LINKTYPE_ETHERNET,
    *,
    nanoseconds: bool = False,
    snaplen: int = SNAPLEN,
) -> Path:
    """A little-endian classic pcap of (time ns, frame) pairs; returns `path`."""
    with Path(path).open("wb") as f:
        f.write(pcap_header(link, nanoseconds=nanoseconds, snaplen=snaplen))
        f.writelines(pcap_record(time_ns, frame, nanoseconds=nanoseconds) for time_ns, frame in frames)
    return Path(path)


# ---- pcapng ---------------------------------------------------------------------------------


def pcapng_block(kind: int, body: bytes, byteorder: str = "<") -> bytes:
    """A block: type, total length, `body` padded to 32 bits, total length again."""
    body += bytes(-len(body) % 4)
    size = 12 + len(body)
    return struct.pack(byteorder + "II", kind, size) + body + struct.pack(byteorder + "I", size)


def section_header(byteorder: str = "<") -> bytes:
    """A section header block, version 1.0, section length unknown (-1); the interfaces that
    follow it are numbered from 0."""
    return pcapng_block(_SECTION_HEADER, struct.pack(byteorder + "IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1), byteorder)


def interface_description(
    link: int = LINKTYPE_ETHERNET,
    *,
    tsresol: int | None = 9,
    tsoffset: int = 0,
    snaplen: int = 0,
    byteorder: str = "<",
) -> bytes:
    """An interface description block.

    Args:
        link: the interface's LINKTYPE_*.
        tsresol: the if_tsresol option: 10^-n s, or 2^-(n & 0x7F) s with the high bit set;
            None leaves it out (the default resolution then is µs).
        tsoffset: the if_tsoffset option, seconds added to every timestamp (0: left out).
        snaplen: 0 means no limit.
    """
    options = b""
    if tsresol is not None:
        options += struct.pack(byteorder + "HHB3x", _IF_TSRESOL, 1, tsresol)
    if tsoffset:
        options += struct.pack(byteorder + "HHq", _IF_TSOFFSET, 8, tsoffset)
    if options:
        options += struct.pack(byteorder + "HH", _OPT_END, 0)
    body = struct.pack(byteorder + "HHI", link, 0, snaplen) + options
    return pcapng_block(_INTERFACE_DESCRIPTION, body, byteorder)


def enhanced_packet(interface: int, ticks: int, frame: bytes, byteorder: str = "<") -> bytes:
    """An enhanced packet block: `ticks` counts the interface's resolution (ns by default)."""
    head = struct.pack(byteorder + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
    return pcapng_block(_ENHANCED_PACKET, head + frame, byteorder)


def write_pcapng(path: Path, frames: Iterable[tuple[int, bytes]], link: int = LINKTYPE_ETHERNET) -> Path:
    """A pcapng of (time ns, frame) pairs: one section, one interface with ns timestamps."""
    with Path(path).open("wb") as f:
        f.write(section_header() + interface_description(link, tsresol=9))
        f.writelines(enhanced_packet(0, time_ns, frame) for time_ns, frame in frames)
    return Path(path)
