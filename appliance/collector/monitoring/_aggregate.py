"""Hash aggregation for fixed windows: numba kernels over packed key words.

A window's state is an open-addressing table: ``keys[cap, nk]`` (uint64 words of the key
fields), ``sums[cap, na]`` (uint64 aggregates) and ``used[cap]``. Rows of a batch are
added with `add_rows`; the Python side grows the table before it can fill (load ≤ 1/2),
so the kernel never fails and never allocates.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.fields.hashing import mix as _mix

__all__ = ["HashTable", "add_rows", "rehash"]

@njit(cache=True, nogil=True)
def add_rows(
    rows: np.ndarray,  # int64[m]: which batch rows to add
    keycols: np.ndarray,  # uint64[nk, n]: key words, one row per word
    valcols: np.ndarray,  # uint64[na, n]: aggregate inputs (already multiplied)
    keys: np.ndarray,  # uint64[cap, nk]
    sums: np.ndarray,  # uint64[cap, na]
    used: np.ndarray,  # uint8[cap]
    count: int,
) -> int:
    """Add the selected rows into the table; returns the new number of used slots."""
    nk = keycols.shape[0]
    na = valcols.shape[0]
    mask = np.uint64(keys.shape[0] - 1)
    for r in range(rows.shape[0]):
        i = rows[r]
        h = np.uint64(0x9E3779B97F4A7C15)
        for k in range(nk):
            h = _mix(h, keycols[k, i])
        slot = h & mask
        while True:
            if used[slot] == 0:
                used[slot] = 1
                for k in range(nk):
                    keys[slot, k] = keycols[k, i]
                for a in range(na):
                    sums[slot, a] = valcols[a, i]
                count += 1
                break
            same = True
            for k in range(nk):
                if keys[slot, k] != keycols[k, i]:
                    same = False
                    break
            if same:
                for a in range(na):
                    sums[slot, a] += valcols[a, i]
                break
            slot = (slot + np.uint64(1)) & mask
    return count


@njit(cache=True, nogil=True)
def rehash(
    keys: np.ndarray, sums: np.ndarray, used: np.ndarray,
    nkeys: np.ndarray, nsums: np.ndarray, nused: np.ndarray, nk: int,
) -> None:
    """Move every used slot of the old table into the (empty, larger) new one."""
    na = sums.shape[1]
    mask = np.uint64(nkeys.shape[0] - 1)
    for s in range(keys.shape[0]):
        if used[s] == 0:
            continue
        h = np.uint64(0x9E3779B97F4A7C15)
        for k in range(nk):
            h = _mix(h, keys[s, k])
        slot = h & mask
        while nused[slot] != 0:
            slot = (slot + np.uint64(1)) & mask
        nused[slot] = 1
        for k in range(nk):
            nkeys[slot, k] = keys[s, k]
        for a in range(na):
            nsums[slot, a] = sums[s, a]


class HashTable:
    """The aggregation state of one window: grows by doubling, exported with `items`."""

    __slots__ = ("nk", "na", "keys", "sums", "used", "count")

    def __init__(self, nk: int, na: int, capacity: int = 1024) -> None:
        self.nk, self.na = nk, na
        self._alloc(capacity)
        self.count = 0

    def _alloc(self, cap: int) -> None:
        self.keys = np.zeros((cap, max(self.nk, 1)), dtype=np.uint64)
        self.sums = np.zeros((cap, max(self.na, 1)), dtype=np.uint64)
        self.used = np.zeros(cap, dtype=np.uint8)

    def add(self, rows: np.ndarray, keycols: np.ndarray, valcols: np.ndarray) -> None:
        need = 2 * (self.count + len(rows)) if self.nk else 2
        cap = self.used.shape[0]
        if need > cap:
            while cap < need:
                cap *= 2
            old = (self.keys, self.sums, self.used)
            self._alloc(cap)
            rehash(*old, self.keys, self.sums, self.used, self.nk)
        self.count = add_rows(rows, keycols, valcols, self.keys, self.sums, self.used, self.count)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys[m, nk], sums[m, na]) of the used slots, in slot order."""
        sel = self.used.view(np.bool_)
        return self.keys[sel][:, : self.nk], self.sums[sel][:, : self.na]

    def clear(self) -> None:
        if self.used.shape[0] > 1 << 16 and self.count < self.used.shape[0] // 16:
            self._alloc(max(1024, self.used.shape[0] // 4))  # give memory back after a burst
        else:
            self.keys[:] = 0
            self.sums[:] = 0
            self.used[:] = 0
        self.count = 0
