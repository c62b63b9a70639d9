"""`PacketBatch`: what every receiver (UDP socket, pcap file) hands to the decoder.

Packets sit back to back in one byte buffer; per-packet arrays say where each one is, who
sent it and when it arrived. The decoder never sees a Python object per packet.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

__all__ = ["PacketBatch", "address_to_words", "words_to_address"]

_V4_MAPPED_HI = np.uint64(0)
_V4_MAPPED_LO_PREFIX = 0xFFFF << 32


@dataclass(slots=True)
class PacketBatch:
    """A batch of received NetFlow/IPFIX datagrams.

    Attributes:
        buf: uint8 buffer holding the UDP payloads back to back.
        offset: int64[n], start of each payload in `buf`.
        length: int64[n], payload length.
        addr_hi: uint64[n], exporter address as IPv6, high 64 bits (IPv4 is ::ffff:a.b.c.d).
        addr_lo: uint64[n], exporter address as IPv6, low 64 bits.
        port: int64[n], exporter UDP source port.
        recv_ns: int64[n], receive time in ns since the epoch (packet time on replay).
    """

    buf: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    addr_hi: np.ndarray
    addr_lo: np.ndarray
    port: np.ndarray
    recv_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.offset)

    def copy(self) -> PacketBatch:
        """A batch that owns its memory, payloads back to back.

        Receivers reuse their buffer on the next receive; copy a batch to keep it longer.
        """
        n = len(self)
        offset = np.zeros(n, dtype=np.int64)
        if n > 1:
            np.cumsum(self.length[:-1], out=offset[1:])
        index = np.repeat(self.offset - offset, self.length) + np.arange(int(self.length.sum()))
        return PacketBatch(
            buf=self.buf[index],
            offset=offset,
            length=self.length.copy(),
            addr_hi=self.addr_hi.copy(),
            addr_lo=self.addr_lo.copy(),
            port=self.port.copy(),
            recv_ns=self.recv_ns.copy(),
        )

    @classmethod
    def from_payloads(
        cls,
        payloads: list[bytes],
        exporter: str | list[str] = "127.0.0.1",
        recv_ns: int | list[int] = 0,
        port: int | list[int] = 0,
    ) -> PacketBatch:
        """Build a batch from Python bytes (tests, pending-data replays, small tools)."""
        n = len(payloads)
        lengths = np.array([len(p) for p in payloads], dtype=np.int64)
        offsets = np.zeros(n, dtype=np.int64)
        if n:
            offsets[1:] = np.cumsum(lengths)[:-1]
        buf = np.frombuffer(b"".join(payloads), dtype=np.uint8).copy()
        exporters = exporter if isinstance(exporter, list) else [exporter] * n
        words = [address_to_words(e) for e in exporters]
        times = recv_ns if isinstance(recv_ns, list) else [recv_ns] * n
        ports = port if isinstance(port, list) else [port] * n
        return cls(
            buf=buf,
            offset=offsets,
            length=lengths,
            addr_hi=np.array([w[0] for w in words], dtype=np.uint64),
            addr_lo=np.array([w[1] for w in words], dtype=np.uint64),
            port=np.array(ports, dtype=np.int64),
            recv_ns=np.array(times, dtype=np.int64),
        )


def address_to_words(address: str) -> tuple[int, int]:
    """An IPv4 or IPv6 address as the (hi, lo) uint64 words of its IPv6 form."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return 0, _V4_MAPPED_LO_PREFIX | int(ip)
    value = int(ip)
    return value >> 64, value & 0xFFFFFFFFFFFFFFFF


def words_to_address(hi: int, lo: int) -> str:
    """Text form of an address stored as IPv6 words; IPv4-mapped ones print as IPv4."""
    hi, lo = int(hi), int(lo)
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))
