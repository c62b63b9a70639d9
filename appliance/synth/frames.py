"""Ethernet frames carrying IPv4 or IPv6 with UDP, TCP or an ICMP echo, checksums filled in.

Every builder takes addresses as text ("192.0.2.1", "2001:db8::1"); the IP version follows
the source address. UDP, TCP and ICMPv6 checksums cover the pseudo header, so a kernel that
receives the frame (a tap, a veth, tcpreplay onto a live interface) keeps the datagram.
"""

from __future__ import annotations

import socket
import struct

__all__ = [
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "checksum",
    "ethernet",
    "icmp_echo_frame",
    "ip_frame",
    "tcp_frame",
    "udp_frame",
]

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
_DST_MAC = bytes.fromhex("020000000002")
_SRC_MAC = bytes.fromhex("020000000001")
_ETHERNET = struct.Struct("!6s6sH")  # destination, source, ethertype
_IPV4 = struct.Struct("!BBHHHBBH4s4s")  # version/IHL, TOS, length, id, flags/offset, TTL, proto, checksum
_IPV6 = struct.Struct("!IHBB16s16s")  # version/class/label, payload length, next header, hops
_UDP = struct.Struct("!HHHH")  # source port, destination port, length, checksum
_TCP = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, checksum, urgent
_ICMP_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _packed(address: str) -> bytes:
    """4 bytes for an IPv4 address, 16 for IPv6 (inet_pton: a few times faster than ipaddress)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, address)
        except OSError:
            continue
    raise ValueError(f"{address!r} is not an IPv4 or IPv6 address")


def ethernet(payload: bytes, ethertype: int, src_mac: bytes = _SRC_MAC, dst_mac: bytes = _DST_MAC) -> bytes:
    """An Ethernet II frame (no VLAN tag, no padding to 60 bytes)."""
    return _ETHERNET.pack(dst_mac, src_mac, ethertype) + payload


def ip_frame(
    src: str,
    dst: str,
    proto: int,
    l4: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    tos: int = 0,
    src_mac: bytes = _SRC_MAC,
    dst_mac: bytes = _DST_MAC,
) -> bytes:
    """An Ethernet frame with an IPv4 (don't fragment) or IPv6 header before `l4`, which
    already carries its own checksum. `ident` is IPv4's identification, IPv6's flow label."""
    a, b = _packed(src), _packed(dst)
    if len(a) != len(b):
        raise ValueError(f"{src} and {dst} are not of one IP version")
    if len(a) == 4:
        head = _IPV4.pack(0x45, tos, _IPV4.size + len(l4), ident & 0xFFFF, 0x4000, ttl, proto, 0, a, b)
        ip = head[:10] + checksum(head).to_bytes(2, "big") + head[12:] + l4
        return ethernet(ip, ETHERTYPE_IPV4, src_mac, dst_mac)
    first = (6 << 28) | (tos << 20) | (ident & 0xFFFFF)
    return ethernet(_IPV6.pack(first, len(l4), proto, ttl, a, b) + l4, ETHERTYPE_IPV6, src_mac, dst_mac)


def _l4_checksum(src: str, dst: str, proto: int, segment: bytes) -> int:
    a, b = _packed(src), _packed(dst)
    if len(a) == 4:
        pseudo = a + b + struct.pack("!xBH", proto, len(segment))
    else:
        pseudo = a + b + struct.pack("!I3xB", len(segment), proto)
    return checksum(pseudo + segment)


def udp_frame(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    src_mac: bytes = _SRC_MAC,
    dst_mac: bytes = _DST_MAC,
) -> bytes:
    """One UDP datagram in an Ethernet frame (`ttl`, `ident` and the MACs as for `ip_frame`)."""
    segment = _UDP.pack(sport, dport, _UDP.size + len(payload), 0) + payload
    csum = _l4_checksum(src, dst, 17, segment) or 0xFFFF  # 0 would mean "no checksum"
    segment = segment[:6] + csum.to_bytes(2, "big") + segment[8:]
    return ip_frame(src, dst, 17, segment, ttl=ttl, ident=ident, src_mac=src_mac, dst_mac=dst_mac)


def tcp_frame(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    flags: int = 0x18,
    seq: int = 0,
    ack: int = 0,
    window: int = 64240,
    ttl: int = 64,
    ident: int = 0,
    src_mac: bytes = _SRC_MAC,
    dst_mac: bytes = _DST_MAC,
) -> bytes:
    """One TCP segment (20-byte header, no options) in an Ethernet frame."""
    segment = _TCP.pack(sport, dport, seq, ack, 0x50, flags, window, 0, 0) + payload
    csum = _l4_checksum(src, dst, 6, segment)
    segment = segment[:16] + csum.to_bytes(2, "big") + segment[18:]
    return ip_frame(src, dst, 6, segment, ttl=ttl, ident=ident, src_mac=src_mac, dst_mac=dst_mac)


def icmp_echo_frame(
    src: str,
    dst: str,
    ident: int,
    seq: int,
    payload: bytes = b"",
    *,
    ttl: int = 64,
    src_mac: bytes = _SRC_MAC,
    dst_mac: bytes = _DST_MAC,
) -> bytes:
    """An ICMP echo request (type 8) or, between IPv6 addresses, an ICMPv6 one (type 128)."""
    v6 = len(_packed(src)) == 16
    proto, kind = (58, 128) if v6 else (1, 8)
    message = _ICMP_ECHO.pack(kind, 0, 0, ident, seq) + payload
    csum = _l4_checksum(src, dst, proto, message) if v6 else checksum(message)
    message = message[:2] + csum.to_bytes(2, "big") + message[4:]
    return ip_frame(src, dst, proto, message, ttl=ttl, src_mac=src_mac, dst_mac=dst_mac)
