"""numba kernels: walking a MaxMind DB search tree into ranges, and looking addresses up.

A database's tree is flattened once, at load, into sorted range starts (`walk`): every leaf of
the tree, empty ones included, is a range, so the starts cover the whole address space from 0
and an address's range is the last start ≤ it. Lookups (`lookup`) binary-search those starts
inside a bucket of the first `BUCKET_BITS` address bits (`bucket_index`): most buckets hold no
range start or one, so most lookups read the index and one start, not the ~20 levels of a
search over the whole table.

Addresses are (hi, lo) uint64 pairs; IPv4 tables use lo only (the 32-bit address).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["walk", "bucket_index", "lookup", "lookup_values", "read_record", "join_interfaces", "BUCKET_BITS"]

#: address bits the bucket index covers (2^18 int32 entries: 1 MiB per table; 2^20 measured no faster, the caches fill)
BUCKET_BITS = 18
_SHIFT4 = 32 - BUCKET_BITS
_SHIFT6 = 64 - BUCKET_BITS

#: `walk`'s status codes
WALK_OK = 0
WALK_TOO_MANY = -1  # more leaves than the bound: a tree that loops back on itself
WALK_BAD_NODE = -2  # a node pointer at the last bit, or beyond the node count


@njit(cache=True, nogil=True)
def read_record(buf: np.ndarray, node: int, bit: int, record_size: int) -> int:
    """The left (bit 0) or right (bit 1) record of a node (MaxMind DB spec, 24/28/32 bits)."""
    if record_size == 24:
        o = node * 6 + bit * 3
        return (np.int64(buf[o]) << 16) | (np.int64(buf[o + 1]) << 8) | np.int64(buf[o + 2])
    if record_size == 28:
        o = node * 7
        if bit:
            return ((np.int64(buf[o + 3]) & 0x0F) << 24) | (np.int64(buf[o + 4]) << 16) | \
                (np.int64(buf[o + 5]) << 8) | np.int64(buf[o + 6])
        return ((np.int64(buf[o + 3]) & 0xF0) << 20) | (np.int64(buf[o]) << 16) | \
            (np.int64(buf[o + 1]) << 8) | np.int64(buf[o + 2])
    o = node * 8 + bit * 4
    return (np.int64(buf[o]) << 24) | (np.int64(buf[o + 1]) << 16) | (np.int64(buf[o + 2]) << 8) | \
        np.int64(buf[o + 3])


@njit(cache=True, nogil=True)
def walk(buf: np.ndarray, record_size: int, node_count: int, start: int, bits: int, limit: int,
         out_hi: np.ndarray, out_lo: np.ndarray, out_val: np.ndarray, fill: bool) -> int:
    """Every leaf under node `start`, in address order: its first address and its record.

    Args:
        buf: the database file.
        start: the node to walk from (0, or the IPv4 subtree of an IPv6 tree).
        bits: the address length under `start` (32 or 128).
        limit: most leaves accepted (bounds the work on a corrupt, self-referencing tree).
        out_hi / out_lo / out_val: filled when `fill` (first address, record: node_count =
            empty, larger = data pointer).

    Returns:
        the number of leaves, or WALK_TOO_MANY / WALK_BAD_NODE.
    """
    size = 2 * bits + 4
    stack_rec = np.empty(size, dtype=np.int64)
    stack_depth = np.empty(size, dtype=np.int64)
    stack_hi = np.empty(size, dtype=np.uint64)
    stack_lo = np.empty(size, dtype=np.uint64)
    stack_rec[0] = start
    stack_depth[0] = 0
    stack_hi[0] = 0
    stack_lo[0] = 0
    sp = 1
    n = 0
    while sp > 0:
        sp -= 1
        rec = stack_rec[sp]
        depth = stack_depth[sp]
        hi = stack_hi[sp]
        lo = stack_lo[sp]
        if rec >= node_count:  # a leaf: empty or a data pointer
            if n >= limit:
                return WALK_TOO_MANY
            if fill:
                out_hi[n] = hi
                out_lo[n] = lo
                out_val[n] = rec
            n += 1
            continue
        if depth >= bits:
            return WALK_BAD_NODE
        # right child first on the stack, so the left one (lower addresses) comes out first
        pos = bits - 1 - depth  # the child's bit, counted from the least significant end
        rhi = hi
        rlo = lo
        if pos >= 64:
            rhi = hi | (np.uint64(1) << np.uint64(pos - 64))
        else:
            rlo = lo | (np.uint64(1) << np.uint64(pos))
        stack_rec[sp] = read_record(buf, rec, 1, record_size)
        stack_depth[sp] = depth + 1
        stack_hi[sp] = rhi
        stack_lo[sp] = rlo
        stack_rec[sp + 1] = read_record(buf, rec, 0, record_size)
        stack_depth[sp + 1] = depth + 1
        stack_hi[sp + 1] = hi
        stack_lo[sp + 1] = lo
        sp += 2
    return n


@njit(cache=True, nogil=True)
def bucket_index(hi: np.ndarray, lo: np.ndarray, v6: bool) -> np.ndarray:
    """For each value of the first `BUCKET_BITS` address bits, the first range starting at or after it."""
    nb = 1 << BUCKET_BITS
    idx = np.empty(nb + 1, dtype=np.int32)
    m = len(lo)
    j = 0
    for b in range(nb):
        while j < m:
            top = (hi[j] >> np.uint64(_SHIFT6)) if v6 else (lo[j] >> np.uint64(_SHIFT4))
            if top >= np.uint64(b):
                break
            j += 1
        idx[b] = j
    idx[nb] = m
    return idx


@njit(cache=True, nogil=True, inline="always")
def _find(hi: np.ndarray, lo: np.ndarray, idx: np.ndarray, ahi: np.uint64, alo: np.uint64, v6: bool) -> int:
    """The index of the last range start ≤ (ahi, alo)."""
    top = (ahi >> np.uint64(_SHIFT6)) if v6 else (alo >> np.uint64(_SHIFT4))
    a = np.int64(idx[top])
    b = np.int64(idx[top + 1])
    # answer in [a - 1, b - 1]: the first index in [a, b) whose start is > address, minus one
    while a < b:
        mid = (a + b) >> 1
        if v6:
            gt = hi[mid] > ahi or (hi[mid] == ahi and lo[mid] > alo)
        else:
            gt = lo[mid] > alo
        if gt:
            b = mid
        else:
            a = mid + 1
    return a - 1


@njit(cache=True, nogil=True)
def lookup(v4: np.ndarray, v6: np.ndarray, has6: bool,
           hi4: np.ndarray, lo4: np.ndarray, idx4: np.ndarray, code4: np.ndarray,
           hi6: np.ndarray, lo6: np.ndarray, idx6: np.ndarray, code6: np.ndarray,
           out: np.ndarray) -> None:
    """The record code of every flow's address (0 = unknown).

    A flow's address is its IPv6 column where that is non-zero, else its IPv4 column;
    IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are looked up as IPv4.
    """
    n = len(v4)
    m4 = len(lo4)
    m6 = len(lo6)
    for i in range(n):
        ahi = np.uint64(0)
        alo = v4[i]
        six = False
        if has6:
            h = v6[i, 0]
            low = v6[i, 1]
            if h != 0 or low != 0:
                if h == 0 and (low >> np.uint64(32)) == np.uint64(0xFFFF):
                    alo = low & np.uint64(0xFFFFFFFF)
                else:
                    ahi = h
                    alo = low
                    six = True
        if six:
            if m6 == 0:
                out[i] = 0
            else:
                out[i] = code6[_find(hi6, lo6, idx6, ahi, alo, True)]
        else:
            if m4 == 0:
                out[i] = 0
            else:
                out[i] = code4[_find(hi4, lo4, idx4, ahi, alo & np.uint64(0xFFFFFFFF), False)]


@njit(cache=True, nogil=True)
def lookup_values(v4: np.ndarray, v6: np.ndarray, has6: bool,
                  hi4: np.ndarray, lo4: np.ndarray, idx4: np.ndarray, code4: np.ndarray,
                  hi6: np.ndarray, lo6: np.ndarray, idx6: np.ndarray, code6: np.ndarray,
                  values: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """`lookup`, then each record's values written straight into the output columns, where
    they are still 0 (an earlier database that knew the address wins).

    Args:
        values: uint64[K + 1, k], value j of record code c in row c (code 0: zeros), so one
            record's values share a cache line.
        rows: int64[k], the row of `out` value j goes to.
        out: uint64[columns, n].
    """
    n = len(v4)
    m4 = len(lo4)
    m6 = len(lo6)
    k = len(rows)
    for i in range(n):
        ahi = np.uint64(0)
        alo = v4[i]
        six = False
        if has6:
            h = v6[i, 0]
            low = v6[i, 1]
            if h != 0 or low != 0:
                if h == 0 and (low >> np.uint64(32)) == np.uint64(0xFFFF):
                    alo = low & np.uint64(0xFFFFFFFF)
                else:
                    ahi = h
                    alo = low
                    six = True
        c = 0
        if six:
            if m6:
                c = code6[_find(hi6, lo6, idx6, ahi, alo, True)]
        elif m4:
            c = code4[_find(hi4, lo4, idx4, ahi, alo & np.uint64(0xFFFFFFFF), False)]
        if c == 0:
            continue
        for j in range(k):
            r = rows[j]
            if out[r, i] == 0:
                out[r, i] = values[c, j]


@njit(cache=True, nogil=True)
def join_interfaces(dev6: np.ndarray, ifindex: np.ndarray, khi: np.ndarray, klo: np.ndarray, kif: np.ndarray,
                    kcode: np.ndarray, out: np.ndarray) -> None:
    """The name code of every flow's (exporter, ifIndex) in the sorted keys (0 = not named)."""
    m = len(kif)
    for i in range(len(ifindex)):
        hi = dev6[i, 0]
        lo = dev6[i, 1]
        f = ifindex[i]
        a = 0
        b = m
        while a < b:  # the first key ≥ (hi, lo, f)
            mid = (a + b) >> 1
            if khi[mid] < hi or (khi[mid] == hi and (klo[mid] < lo or (klo[mid] == lo and kif[mid] < f))):
                a = mid + 1
            else:
                b = mid
        if a < m and khi[a] == hi and klo[a] == lo and kif[a] == f:
            out[i] = kcode[a]
        else:
            out[i] = 0
