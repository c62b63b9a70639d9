"""Offline input: UDP payloads from pcap and pcapng files as `PacketBatch` chunks.

The file is mapped, never read packet by packet in Python: numba kernels walk the records
(`_pcapscan.walk_pcap`, `walk_pcapng`) and the link/IP/UDP headers (`parse_frames`) of a
chunk of frames at a time, and the payloads are copied back to back into each batch.

Supported: pcap (both byte orders, µs and ns resolution), pcapng (SHB in either byte order,
several sections, IDB with `if_tsresol` and `if_tsoffset`, EPB, SPB, the obsolete PB); link
types Ethernet (with any stack of 802.1Q/802.1ad tags), Linux cooked SLL and SLL2, raw IP
(12, 14, 101, 228, 229) and null/loopback (0, 108); IPv4 with options, IPv6 with extension
headers. Fragmented datagrams are not reassembled: every fragment is counted in
`PcapStats.fragments` and skipped (the NetFlow corpus has none; exporters keep their packets
under the path MTU). A simple packet block has no timestamp: it takes the previous packet's.

Example:
    >>> for batch in read_pcap("export.pcap", ports={2055}):
    ...     decoder.feed(batch)
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import numpy as np

import appliance.collector.receive._pcapscan as scan
from appliance import MirrorflowError
from appliance.collector.receive.packets import PacketBatch

__all__ = ["PcapFormatError", "PcapReader", "PcapStats", "read_pcap"]

_PCAP_MAGICS = {  # first four bytes -> (big endian, ns per fractional tick)
    b"\xd4\xc3\xb2\xa1": (False, 1000),
    b"\xa1\xb2\xc3\xd4": (True, 1000),
    b"\x4d\x3c\xb2\xa1": (False, 1),
    b"\xa1\xb2\x3c\x4d": (True, 1),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

_WALK_ERRORS = {
    scan.ERR_TRUNCATED: "file ends inside a record (truncated capture?)",
    scan.ERR_BAD_BLOCK: "corrupt block (bad length, byte-order magic or trailer)",
    scan.ERR_BAD_INTERFACE: "packet refers to an interface no IDB described",
    scan.ERR_TOO_MANY_INTERFACES: f"more than {scan.MAX_INTERFACES} interfaces in one section",
}


class PcapFormatError(MirrorflowError):
    """A capture file that is not pcap/pcapng, or is truncated or corrupt.

    Attributes:
        path: the file.
        offset: byte offset of the record or block at fault.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset


@dataclass(slots=True)
class PcapStats:
    """What a reader has seen so far (frames are link-layer records in the file)."""

    frames: int = 0
    udp: int = 0  # complete UDP datagrams found
    selected: int = 0  # of those, passed the destination-port filter
    fragments: int = 0  # IP fragments, skipped
    truncated: int = 0  # captured shorter than the headers or UDP length
    malformed: int = 0
    not_udp: int = 0  # IP but another protocol
    not_ip: int = 0  # link type or ethertype not followed
    link_types: set[int] = field(default_factory=set)


class PcapReader:
    """Reads one capture file in chunks of frames; keeps counters in `stats`.

    Args:
        path: pcap or pcapng file.
        ports: UDP destination ports to keep; None keeps every UDP datagram.
    """

    def __init__(self, path: str | os.PathLike[str], ports: Collection[int] | None = None) -> None:
        self.path = os.fspath(path)
        self.ports = None if ports is None else np.array(sorted(ports), dtype=np.int64)
        self.stats = PcapStats()
        size = os.path.getsize(self.path)
        if size < 4:
            raise PcapFormatError(self.path, 0, "too short to be a pcap or pcapng file")
        self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        magic = bytes(self._data[:4])
        if magic == _PCAPNG_MAGIC:
            self._ng = True
        elif magic in _PCAP_MAGICS:
            self._ng = False
            if size < 24:
                raise PcapFormatError(self.path, 0, "pcap file header cut short")
            self._be, self._tick_ns = _PCAP_MAGICS[magic]
            head = self._data[:24].view(">u4" if self._be else "<u4")
            self._link = int(head[5]) & 0xFFFF
        else:
            raise PcapFormatError(self.path, 0, f"not a pcap or pcapng file (magic {magic.hex()})")

    def batches(self, chunk: int = 4096) -> Iterator[PacketBatch]:
        """Yield batches of at most `chunk` payloads, in file order; each owns its memory."""
        data = self._data
        f_off = np.empty(chunk, np.int64)
        f_len = np.empty(chunk, np.int64)
        f_ts = np.empty(chunk, np.int64)
        f_link = np.empty(chunk, np.int64)
        pos = 24
        if self._ng:
            state = np.zeros(4, np.int64)
            ifaces = (
                np.zeros(scan.MAX_INTERFACES, np.int64),
                np.zeros(scan.MAX_INTERFACES, np.bool_),
                np.zeros(scan.MAX_INTERFACES, np.int64),
                np.zeros(scan.MAX_INTERFACES, np.int64),
            )
        while True:
            if self._ng:
                n, err, err_at = scan.walk_pcapng(data, state, *ifaces, chunk, f_off, f_len, f_ts, f_link)
            else:
                n, pos, err, err_at = scan.walk_pcap(
                    data, pos, self._be, self._tick_ns, self._link, chunk, f_off, f_len, f_ts, f_link
                )
            if n:
                batch = self._parse(f_off[:n], f_len[:n], f_ts[:n], f_link[:n])
                if len(batch):
                    yield batch
            if err:
                raise PcapFormatError(self.path, int(err_at), _WALK_ERRORS[err])
            if n < chunk:
                return

    def _parse(self, f_off: np.ndarray, f_len: np.ndarray, f_ts: np.ndarray, f_link: np.ndarray) -> PacketBatch:
        n = len(f_off)
        p_off, p_len, sport, dport = (np.empty(n, np.int64) for _ in range(4))
        a_hi, a_lo = np.empty(n, np.uint64), np.empty(n, np.uint64)
        status = np.empty(n, np.int8)
        scan.parse_frames(self._data, f_off, f_len, f_link, p_off, p_len, a_hi, a_lo, sport, dport, status)
        counts = np.bincount(status, minlength=6)
        st = self.stats
        st.frames += n
        st.udp += int(counts[scan.ST_OK])
        st.not_ip += int(counts[scan.ST_NOT_IP])
        st.not_udp += int(counts[scan.ST_NOT_UDP])
        st.fragments += int(counts[scan.ST_FRAGMENT])
        st.truncated += int(counts[scan.ST_TRUNCATED])
        st.malformed += int(counts[scan.ST_MALFORMED])
        st.link_types.update(int(x) for x in np.unique(f_link))
        keep = status == scan.ST_OK
        if self.ports is not None:
            keep &= np.isin(dport, self.ports)
        idx = np.flatnonzero(keep)
        st.selected += len(idx)
        length = p_len[idx]
        buf = np.empty(int(length.sum()), np.uint8)
        offset = np.empty(len(idx), np.int64)
        scan.gather(self._data, p_off[idx], length, buf, offset)
        return PacketBatch(
            buf=buf,
            offset=offset,
            length=length,
            addr_hi=a_hi[idx],
            addr_lo=a_lo[idx],
            port=sport[idx],
            recv_ns=f_ts[idx],
        )

    def close(self) -> None:
        """Drop the file mapping (batches already yielded stay valid: they own their buffers)."""
        self._data = np.empty(0, np.uint8)

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(
    path: str | os.PathLike[str], ports: Collection[int] | None = None, chunk: int = 4096
) -> Iterator[PacketBatch]:
    """UDP payloads of a capture file as batches of at most `chunk` packets.

    Args:
        path: pcap or pcapng file.
        ports: UDP destination ports to keep; None keeps every UDP datagram.
        chunk: frames examined per batch (so a batch holds at most this many payloads).

    Yields:
        PacketBatch with recv_ns = capture time, exporter = IP source, port = UDP source port.

    Raises:
        PcapFormatError: not a capture file, or truncated/corrupt (names the file and offset).
    """
    with PcapReader(path, ports) as reader:
        yield from reader.batches(chunk)
