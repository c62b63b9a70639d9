"""Numba kernels behind `pcapfile`: walk pcap/pcapng records, parse link/IP/UDP headers.

Everything here works on the whole file as one uint8 array and writes into preallocated
arrays; the Python side only allocates, slices and raises. Error and status codes are small
ints because numba functions cannot raise exceptions that carry the file offset cheaply.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "ERR_BAD_BLOCK",
    "ERR_BAD_INTERFACE",
    "ERR_TOO_MANY_INTERFACES",
    "ERR_TRUNCATED",
    "MAX_INTERFACES",
    "ST_FRAGMENT",
    "ST_MALFORMED",
    "ST_NOT_IP",
    "ST_NOT_UDP",
    "ST_OK",
    "ST_TRUNCATED",
    "gather",
    "parse_frames",
    "walk_pcap",
    "walk_pcapng",
]

# Walk errors (returned with the offset of the record or block at fault).
ERR_TRUNCATED = 1
ERR_BAD_BLOCK = 2
ERR_BAD_INTERFACE = 3
ERR_TOO_MANY_INTERFACES = 4

# Per-frame parse status.
ST_OK = 0
ST_NOT_IP = 1  # link type or ethertype we do not follow
ST_NOT_UDP = 2
ST_FRAGMENT = 3  # part of a fragmented IP datagram (not reassembled)
ST_TRUNCATED = 4  # capture shorter than the headers or the UDP length says
ST_MALFORMED = 5  # impossible header values

MAX_INTERFACES = 4096

_LINK_NULL = 0
_LINK_ETHERNET = 1
_LINK_RAW_OPENBSD = 12
_LINK_RAW_BSDOS = 14
_LINK_RAW = 101
_LINK_LOOP = 108
_LINK_SLL = 113
_LINK_IPV4 = 228
_LINK_IPV6 = 229
_LINK_SLL2 = 276


@njit(cache=True, inline="always")
def _u16(d: np.ndarray, o: int, be: bool) -> int:
    a = np.int64(d[o])
    b = np.int64(d[o + 1])
    return (a << 8) | b if be else (b << 8) | a


@njit(cache=True, inline="always")
def _u32(d: np.ndarray, o: int, be: bool) -> int:
    if be:
        return (_u16(d, o, True) << 16) | _u16(d, o + 2, True)
    return (_u16(d, o + 2, False) << 16) | _u16(d, o, False)


@njit(cache=True, inline="always")
def _be64(d: np.ndarray, o: int) -> np.uint64:
    v = np.uint64(0)
    for i in range(8):
        v = (v << np.uint64(8)) | np.uint64(d[o + i])
    return v


@njit(cache=True, nogil=True)
def walk_pcap(data, pos, be, ns_per_tick, link, max_frames, f_off, f_len, f_ts, f_link):
    """Walk classic pcap records from `pos`; fill up to `max_frames` frame slots.

    Returns:
        (frames, next_pos, error, error_offset).
    """
    size = data.shape[0]
    n = 0
    while n < max_frames and pos < size:
        if pos + 16 > size:
            return n, pos, ERR_TRUNCATED, pos
        sec = _u32(data, pos, be)
        frac = _u32(data, pos + 4, be)
        caplen = _u32(data, pos + 8, be)
        if pos + 16 + caplen > size:
            return n, pos, ERR_TRUNCATED, pos
        f_off[n] = pos + 16
        f_len[n] = caplen
        f_ts[n] = sec * 1_000_000_000 + frac * ns_per_tick
        f_link[n] = link
        n += 1
        pos += 16 + caplen
    return n, pos, 0, 0


@njit(cache=True, inline="always")
def _ticks_to_ns(ts: int, binary: bool, exp: int) -> int:
    if binary:
        if exp <= 30:
            mask = (np.int64(1) << exp) - 1
            return (ts >> exp) * 1_000_000_000 + (((ts & mask) * 1_000_000_000) >> exp)
        return np.int64(np.float64(ts) / 2.0**exp * 1e9)
    if exp <= 9:
        return ts * 10 ** (9 - exp)
    return ts // 10 ** min(exp - 9, 18)  # finer than 10^-27 s is not a real clock


@njit(cache=True, nogil=True)
def _read_idb(data, pos, blen, be, state, if_link, if_bin, if_exp, if_off):
    k = state[2]
    if k >= MAX_INTERFACES:
        return ERR_TOO_MANY_INTERFACES
    if blen < 20:
        return ERR_BAD_BLOCK
    if_link[k] = _u16(data, pos + 8, be)
    if_bin[k] = False
    if_exp[k] = 6
    if_off[k] = 0
    o = pos + 16
    end = pos + blen - 4
    while o + 4 <= end:
        code = _u16(data, o, be)
        olen = _u16(data, o + 2, be)
        if code == 0 or o + 4 + olen > end:
            break
        if code == 9 and olen >= 1:  # if_tsresol
            r = np.int64(data[o + 4])
            if_bin[k] = (r & 0x80) != 0
            if_exp[k] = r & 0x7F
        elif code == 14 and olen >= 8:  # if_tsoffset, seconds
            hi = _u32(data, o + 4 + (0 if be else 4), be)
            lo = _u32(data, o + 4 + (4 if be else 0), be)
            if_off[k] = ((hi << 32) | lo) * 1_000_000_000
        o += 4 + ((olen + 3) & ~3)
    state[2] = k + 1
    return 0


@njit(cache=True, nogil=True)
def walk_pcapng(data, state, if_link, if_bin, if_exp, if_off, max_frames, f_off, f_len, f_ts, f_link):
    """Walk pcapng blocks; `state` = [pos, big_endian, interfaces, last_ts] persists between calls.

    Interface description blocks update the per-interface arrays; enhanced, simple and
    obsolete packet blocks become frames. Other blocks are skipped by their length.

    Returns:
        (frames, error, error_offset); the next position is in state[0].
    """
    size = data.shape[0]
    pos = state[0]
    n = 0
    while n < max_frames and pos < size:
        if pos + 12 > size:
            return n, ERR_TRUNCATED, pos
        if data[pos] == 0x0A and data[pos + 1] == 0x0D and data[pos + 2] == 0x0D and data[pos + 3] == 0x0A:
            bom = _u32(data, pos + 8, False)
            if bom == 0x1A2B3C4D:
                state[1] = 0
            elif bom == 0x4D3C2B1A:
                state[1] = 1
            else:
                return n, ERR_BAD_BLOCK, pos
            state[2] = 0  # a new section forgets the interfaces of the last one
        be = state[1] == 1
        btype = _u32(data, pos, be)
        blen = _u32(data, pos + 4, be)
        if blen < 12 or (blen & 3) != 0:
            return n, ERR_BAD_BLOCK, pos
        if pos + blen > size:
            return n, ERR_TRUNCATED, pos
        if _u32(data, pos + blen - 4, be) != blen:
            return n, ERR_BAD_BLOCK, pos
        if btype == 1:
            err = _read_idb(data, pos, blen, be, state, if_link, if_bin, if_exp, if_off)
            if err != 0:
                return n, err, pos
        elif btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if blen < 32:
                return n, ERR_BAD_BLOCK, pos
            iface = _u32(data, pos + 8, be) if btype == 6 else _u16(data, pos + 8, be)
            if iface >= state[2]:
                return n, ERR_BAD_INTERFACE, pos
            ticks = (_u32(data, pos + 12, be) << 32) | _u32(data, pos + 16, be)
            caplen = _u32(data, pos + 20, be)
            if 28 + caplen + 4 > blen:
                return n, ERR_BAD_BLOCK, pos
            ts = _ticks_to_ns(ticks, if_bin[iface], if_exp[iface]) + if_off[iface]
            f_off[n] = pos + 28
            f_len[n] = caplen
            f_ts[n] = ts
            f_link[n] = if_link[iface]
            state[3] = ts
            n += 1
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if state[2] < 1:
                return n, ERR_BAD_INTERFACE, pos
            if blen < 16:
                return n, ERR_BAD_BLOCK, pos
            caplen = min(_u32(data, pos + 8, be), blen - 16)
            f_off[n] = pos + 12
            f_len[n] = caplen
            f_ts[n] = state[3]
            f_link[n] = if_link[0]
            n += 1
        pos += blen
        state[0] = pos
    return n, 0, 0


@njit(cache=True, inline="always")
def _ip_start(data, o, end, link):
    """Offset of the IP header inside a frame, or -1 if the frame does not carry IP."""
    etype = -1
    if link == _LINK_ETHERNET:
        if o + 14 > end:
            return -1
        etype = _u16(data, o + 12, True)
        o += 14
    elif link == _LINK_SLL:
        if o + 16 > end:
            return -1
        etype = _u16(data, o + 14, True)
        o += 16
    elif link == _LINK_SLL2:
        if o + 20 > end:
            return -1
        etype = _u16(data, o, True)
        o += 20
    elif link == _LINK_NULL or link == _LINK_LOOP:
        if o + 4 > end:
            return -1
        family = _u32(data, o, link == _LINK_LOOP)
        if family > 0xFFFF:  # written in the other byte order
            family = _u32(data, o, link != _LINK_LOOP)
        o += 4
        if family == 2:
            return o
        if family == 24 or family == 28 or family == 30 or family == 10:
            return o
        return -1
    elif (link == _LINK_RAW or link == _LINK_IPV4 or link == _LINK_IPV6 or link == _LINK_RAW_OPENBSD
          or link == _LINK_RAW_BSDOS):
        return o
    else:
        return -1
    # 802.1Q, 802.1ad and the old QinQ ethertype may stack.
    while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
        if o + 4 > end:
            return -1
        etype = _u16(data, o + 2, True)
        o += 4
    if etype == 0x0800 or etype == 0x86DD:
        return o
    return -1


@njit(cache=True, nogil=True)
def parse_frames(data, f_off, f_len, f_link, p_off, p_len, a_hi, a_lo, sport, dport, status):
    """Find the UDP payload of each frame; `status[i]` says why a frame has none."""
    v4_prefix = np.uint64(0xFFFF) << np.uint64(32)
    for i in range(f_off.shape[0]):
        o0 = f_off[i]
        end = o0 + f_len[i]
        p_off[i] = 0
        p_len[i] = 0
        o = _ip_start(data, o0, end, f_link[i])
        if o < 0 or o + 1 > end:
            status[i] = ST_NOT_IP
            continue
        version = np.int64(data[o]) >> 4
        if version == 4:
            if o + 20 > end:
                status[i] = ST_TRUNCATED
                continue
            ihl = (np.int64(data[o]) & 0xF) * 4
            total = _u16(data, o + 2, True)
            if ihl < 20 or total < ihl:
                status[i] = ST_MALFORMED
                continue
            if data[o + 9] != 17:
                status[i] = ST_NOT_UDP
                continue
            if (_u16(data, o + 6, True) & 0x3FFF) != 0:  # MF flag or a fragment offset
                status[i] = ST_FRAGMENT
                continue
            a_hi[i] = np.uint64(0)
            a_lo[i] = v4_prefix | np.uint64(_u32(data, o + 12, True))
            ip_end = o + total
            u = o + ihl
        elif version == 6:
            if o + 40 > end:
                status[i] = ST_TRUNCATED
                continue
            a_hi[i] = _be64(data, o + 8)
            a_lo[i] = _be64(data, o + 16)
            ip_end = o + 40 + _u16(data, o + 4, True)
            nxt = np.int64(data[o + 6])
            u = o + 40
            fragment = False
            for _ in range(16):  # extension headers; a bound stops crafted loops
                if nxt == 0 or nxt == 43 or nxt == 60 or nxt == 135 or nxt == 139 or nxt == 140:
                    if u + 8 > end:
                        break
                    nxt_new = np.int64(data[u])
                    u += (np.int64(data[u + 1]) + 1) * 8
                    nxt = nxt_new
                elif nxt == 44:  # fragment header; an atomic fragment (offset 0, no M) is whole
                    if u + 8 > end:
                        break
                    if (_u16(data, u + 2, True) & 0xFFF9) != 0:
                        fragment = True
                        break
                    nxt = np.int64(data[u])
                    u += 8
                elif nxt == 51:  # authentication header counts 4-byte words
                    if u + 8 > end:
                        break
                    nxt_new = np.int64(data[u])
                    u += (np.int64(data[u + 1]) + 2) * 4
                    nxt = nxt_new
                else:
                    break
            if fragment:
                status[i] = ST_FRAGMENT
                continue
            if nxt != 17:
                status[i] = ST_NOT_UDP if u + 8 <= end else ST_TRUNCATED
                continue
        else:
            status[i] = ST_NOT_IP
            continue
        if u + 8 > end:
            status[i] = ST_TRUNCATED
            continue
        ulen = _u16(data, u + 4, True)
        if ulen < 8 or u + ulen > ip_end:
            status[i] = ST_MALFORMED
            continue
        if u + ulen > end:
            status[i] = ST_TRUNCATED
            continue
        sport[i] = _u16(data, u, True)
        dport[i] = _u16(data, u + 2, True)
        p_off[i] = u + 8
        p_len[i] = ulen - 8
        status[i] = ST_OK
    return 0


@njit(cache=True, nogil=True)
def gather(data, offsets, lengths, out_buf, out_off):
    """Copy payloads back to back into `out_buf`; write their new offsets to `out_off`."""
    w = 0
    for i in range(offsets.shape[0]):
        o = offsets[i]
        ln = lengths[i]
        out_off[i] = w
        out_buf[w : w + ln] = data[o : o + ln]
        w += ln
    return w
