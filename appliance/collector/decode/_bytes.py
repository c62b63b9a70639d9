"""Reading big-endian integers out of a datagram, and a typed-dict lookup (numba, inlined)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def dget(d, key):
    """d[key], or -1 when absent (typed-dict get without an Optional type)."""
    if key in d:
        return d[key]
    return -1


@njit(cache=True, nogil=True, inline="always")
def be(buf, pos, n):
    """Big-endian unsigned integer of n (0..8) bytes at pos."""
    if n == 4:
        return (
            (np.uint64(buf[pos]) << np.uint64(24))
            | (np.uint64(buf[pos + 1]) << np.uint64(16))
            | (np.uint64(buf[pos + 2]) << np.uint64(8))
            | np.uint64(buf[pos + 3])
        )
    if n == 2:
        return (np.uint64(buf[pos]) << np.uint64(8)) | np.uint64(buf[pos + 1])
    if n == 1:
        return np.uint64(buf[pos])
    v = np.uint64(0)
    for i in range(n):
        v = (v << np.uint64(8)) | np.uint64(buf[pos + i])
    return v


@njit(cache=True, nogil=True, inline="always")
def be16(buf, pos):
    return (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])


@njit(cache=True, nogil=True, inline="always")
def be32(buf, pos):
    return (
        (np.int64(buf[pos]) << 24)
        | (np.int64(buf[pos + 1]) << 16)
        | (np.int64(buf[pos + 2]) << 8)
        | np.int64(buf[pos + 3])
    )
