"""numba kernels the compiled filter runs over whole columns (one pass, no temporaries)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["or_in_ranges", "or_in_ranges_indexed", "bucket_index", "or_in_ranges6", "or_text_equal"]


@njit(cache=True, nogil=True)
def or_in_ranges(col, lo, hi, out):  # type: ignore[no-untyped-def]
    """out[i] |= col[i] lies in one of the sorted disjoint ranges [lo[k], hi[k]]."""
    m = lo.shape[0]
    if m == 1:
        a = lo[0]
        span = hi[0] - a
        for i in range(col.shape[0]):
            if col[i] - a <= span:  # unsigned wrap-around: one compare for both bounds
                out[i] = True
        return
    if m <= 8:  # a few ranges: test them all, without branches the CPU could mispredict
        span = hi - lo
        for i in range(col.shape[0]):
            v = col[i]
            hit = False
            for k in range(m):
                hit |= v - lo[k] <= span[k]
            if hit:
                out[i] = True
        return
    for i in range(col.shape[0]):
        v = col[i]
        a, b = 0, m
        while a < b:  # last range whose start is <= v
            mid = (a + b) >> 1
            if lo[mid] <= v:
                a = mid + 1
            else:
                b = mid
        if a > 0 and v <= hi[a - 1]:
            out[i] = True


def bucket_index(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, int]:
    """A direct index over the top bits of the values for `or_in_ranges_indexed`.

    bucket[t] = how many ranges start below t << shift, so the range holding v (if any) is
    found by a binary search among the few ranges between bucket[t] and bucket[t + 1],
    t = v >> shift: with thousands of prefixes that is one or two steps instead of a dozen
    unpredictable ones.
    """
    bits = min(16, max(4, int(len(lo)).bit_length() + 2))
    top = int(hi[-1])
    shift = max(0, top.bit_length() - bits)
    starts = np.arange((top >> shift) + 1, dtype=np.uint64) << np.uint64(shift)
    bucket = np.empty(len(starts) + 1, dtype=np.int32)
    bucket[:-1] = np.searchsorted(lo, starts, side="left")
    bucket[-1] = len(lo)  # (top >> shift) + 1 << shift may not fit in 64 bits
    return bucket, shift


@njit(cache=True, nogil=True)
def or_in_ranges_indexed(col, lo, hi, bucket, shift, out):  # type: ignore[no-untyped-def]
    """`or_in_ranges` with the `bucket_index` of (lo, hi)."""
    top = hi[hi.shape[0] - 1]
    sh = np.uint64(shift)
    for i in range(col.shape[0]):
        v = col[i]
        if v > top:
            continue
        t = np.int64(v >> sh)
        a, b = np.int64(bucket[t]), np.int64(bucket[t + 1])
        while a < b:
            mid = (a + b) >> 1
            if lo[mid] <= v:
                a = mid + 1
            else:
                b = mid
        if a > 0 and v <= hi[a - 1]:
            out[i] = True


@njit(cache=True, nogil=True)
def or_in_ranges6(col, lo_hi, lo_lo, hi_hi, hi_lo, out):  # type: ignore[no-untyped-def]
    """out[i] |= the 128-bit address (col[i, 0], col[i, 1]) lies in one of the sorted
    disjoint ranges [(lo_hi, lo_lo), (hi_hi, hi_lo)]."""
    m = lo_hi.shape[0]
    for i in range(col.shape[0]):
        h = col[i, 0]
        low = col[i, 1]
        a, b = 0, m
        while a < b:
            mid = (a + b) >> 1
            if lo_hi[mid] < h or (lo_hi[mid] == h and lo_lo[mid] <= low):
                a = mid + 1
            else:
                b = mid
        if a > 0:
            k = a - 1
            if h < hi_hi[k] or (h == hi_hi[k] and low <= hi_lo[k]):
                out[i] = True


@njit(cache=True, nogil=True)
def or_text_equal(refs, raw, target, out):  # type: ignore[no-untyped-def]
    """out[i] |= the string at refs[i] (offset << 16 | length into raw, trailing NULs
    ignored) equals target."""
    t = target.shape[0]
    nraw = raw.shape[0]
    for i in range(refs.shape[0]):
        ref = refs[i]
        off = np.int64(ref >> np.uint64(16))
        ln = np.int64(ref & np.uint64(0xFFFF))
        if off + ln > nraw:
            ln = max(np.int64(0), nraw - off)
        while ln > 0 and raw[off + ln - 1] == 0:
            ln -= 1
        if ln != t:
            continue
        same = True
        for j in range(t):
            if raw[off + j] != target[j]:
                same = False
                break
        if same:
            out[i] = True
