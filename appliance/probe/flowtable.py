"""The userspace flow table: NetFlow semantics over the deltas drained from the kernel.

Pure logic over arrays (no I/O, no clock of its own): `merge` adds a drained batch,
`expire(now_ns)` returns the flows that end now, `flush()` returns all of them. Hot loops are
numba; the per-flow decisions in `expire` are numpy expressions over the whole table.

Semantics (ipt_netflow's, plus softflowd's early TCP export):

- inactive timeout: no packet for `inactive_timeout` → flowEndReason 1 (idle), or 3 when a
  FIN or RST was seen;
- active timeout: the flow started more than `active_timeout` ago → 2 (active);
- TCP end: FIN or RST seen and no packet for `tcp_end_timeout` (None disables; 0 exports at
  the next expiry pass) → 3 (end of flow);
- counter guard: a delta that would take packets or bytes past `counter_limit` (2**32 - 1
  for v5's 32-bit fields) first closes the flow with reason 2, then starts a new record;
- `flush()` (shutdown) → 4 (forced end);
- table full: the new flow's packets and bytes are refused and counted (`refused_*`),
  never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np

from .records import KEY_DTYPE, KEY_WORDS, VAL_DTYPE, FlowEndReason

__all__ = ["FlowTable", "TableStats", "FLOW_DTYPE"]

TCP_FIN = 0x01
TCP_RST = 0x04

_EMPTY = -1
_DELETED = -2
_FREE, _ACTIVE, _CLOSED = 0, 1, 2

#: One exported flow: the kernel key and value plus why the flow ended.
FLOW_DTYPE = np.dtype(
    [("key", KEY_DTYPE), ("val", VAL_DTYPE), ("end_reason", "u1")]
)


@nb.njit(cache=True, nogil=True, inline="always")
def _hash(words: np.ndarray, i: int) -> np.uint64:
    h = np.uint64(0x9E3779B97F4A7C15)
    for w in range(words.shape[1]):
        h ^= words[i, w]
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return h


@nb.njit(cache=True, nogil=True, inline="always")
def _same(a: np.ndarray, i: int, b: np.ndarray, j: int) -> bool:
    for w in range(a.shape[1]):
        if a[i, w] != b[j, w]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _find(index, twords, bwords, j):
    """Returns (position of the key or -1, first reusable position)."""
    mask = np.uint64(len(index) - 1)
    pos = _hash(bwords, j) & mask
    reuse = -1
    while True:
        s = index[pos]
        if s == _EMPTY:
            if reuse < 0:
                reuse = np.int64(pos)
            return -1, reuse
        if s == _DELETED:
            if reuse < 0:
                reuse = np.int64(pos)
        elif _same(twords, s, bwords, j):
            return np.int64(pos), reuse
        pos = (pos + np.uint64(1)) & mask


@nb.njit(cache=True, nogil=True)
def _merge(index, twords, tbytes, state, reason, packets, bytes_, first, last, flags,
           min_ttl, max_ttl, frag, free, nfree, bwords, bbytes, bpackets, bbytes_, bfirst,
           blast, bflags, bmin_ttl, bmax_ttl, bfrag, limit, counts):
    """counts: [new flows, merged, refused flows, refused packets, refused bytes,
    guard splits, tombstones added]."""
    for j in range(len(bwords)):
        pos, reuse = _find(index, twords, bwords, j)
        if pos >= 0:
            s = index[pos]
            if packets[s] + bpackets[j] > limit or bytes_[s] + bbytes_[j] > limit:
                # Close this record (active-timeout reason) and continue in a fresh slot.
                state[s] = _CLOSED
                reason[s] = 2
                index[pos] = _DELETED
                counts[5] += 1
                counts[6] += 1
                pos2, reuse = _find(index, twords, bwords, j)
            else:
                packets[s] += bpackets[j]
                bytes_[s] += bbytes_[j]
                if bfirst[j] < first[s]:
                    first[s] = bfirst[j]
                if blast[j] > last[s]:
                    last[s] = blast[j]
                flags[s] |= bflags[j]
                if bmin_ttl[j] < min_ttl[s]:
                    min_ttl[s] = bmin_ttl[j]
                if bmax_ttl[j] > max_ttl[s]:
                    max_ttl[s] = bmax_ttl[j]
                frag[s] |= bfrag[j]
                counts[1] += 1
                continue
        if nfree[0] == 0:
            counts[2] += 1
            counts[3] += bpackets[j]
            counts[4] += bbytes_[j]
            continue
        nfree[0] -= 1
        s = free[nfree[0]]
        if index[reuse] == _DELETED:
            counts[6] -= 1
        index[reuse] = s
        twords[s, :] = bwords[j, :]
        tbytes[s, :] = bbytes[j, :]
        state[s] = _ACTIVE
        reason[s] = 0
        counts[0] += 1


@nb.njit(cache=True, nogil=True)
def _remove(index, twords, state, slots, free, nfree):
    """Take `slots` out of the index (those still in it) and give them back to `free`."""
    removed = 0
    for s in slots:
        if state[s] == _ACTIVE:
            pos, _ = _find(index, twords, twords, s)
            if pos >= 0:
                index[pos] = _DELETED
                removed += 1
        state[s] = _FREE
        free[nfree[0]] = s
        nfree[0] += 1
    return removed


@nb.njit(cache=True, nogil=True)
def _rebuild(index, twords, state):
    index[:] = _EMPTY
    mask = np.uint64(len(index) - 1)
    for s in range(len(state)):
        if state[s] == _ACTIVE:
            pos = _hash(twords, s) & mask
            while index[pos] != _EMPTY:
                pos = (pos + np.uint64(1)) & mask
            index[pos] = s


@dataclass(slots=True)
class TableStats:
    """Counters of the table since it was created."""

    flows_created: int = 0
    records_merged: int = 0
    refused_flows: int = 0
    refused_packets: int = 0
    refused_bytes: int = 0
    guard_splits: int = 0
    flows_expired: int = 0
    by_reason: dict[int, int] = field(default_factory=lambda: {int(r): 0 for r in FlowEndReason})
    peak_active: int = 0


class FlowTable:
    """Flows being built, keyed like the kernel's flow key.

    Args:
        capacity: the most flows the table holds (the probe uses --maxflows).
        active_timeout_ns / inactive_timeout_ns: see the module docstring.
        tcp_end_timeout_ns: idle time after FIN/RST before export; None disables.
        counter_limit: largest packet/byte count of one record (the 32-bit wrap guard).
    """

    def __init__(self, capacity: int, *, active_timeout_ns: int = 1800 * 10**9,
                 inactive_timeout_ns: int = 15 * 10**9, tcp_end_timeout_ns: int | None = None,
                 counter_limit: int = 2**32 - 1) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = int(capacity)
        self.active_timeout_ns = int(active_timeout_ns)
        self.inactive_timeout_ns = int(inactive_timeout_ns)
        self.tcp_end_timeout_ns = tcp_end_timeout_ns
        self.counter_limit = np.uint64(min(counter_limit, 2**64 - 1))
        size = 1
        while size < 2 * self.capacity + 2:
            size *= 2
        self._index = np.full(size, _EMPTY, np.int64)
        self._keys = np.zeros(self.capacity, KEY_DTYPE)
        self._vals = np.zeros(self.capacity, VAL_DTYPE)
        self._words = self._keys.view(np.uint64).reshape(self.capacity, KEY_WORDS)
        self._vbytes = self._vals.view(np.uint8).reshape(self.capacity, VAL_DTYPE.itemsize)
        self._state = np.zeros(self.capacity, np.uint8)
        self._reason = np.zeros(self.capacity, np.uint8)
        self._free = np.arange(self.capacity - 1, -1, -1, dtype=np.int64)
        self._nfree = np.array([self.capacity], np.int64)
        self._tombstones = 0
        self.stats = TableStats()

    def __len__(self) -> int:
        """Flows held (active ones and closed ones waiting for the next expiry pass)."""
        return self.capacity - int(self._nfree[0])

    @property
    def active(self) -> int:
        return int(np.count_nonzero(self._state == _ACTIVE))

    def merge(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add drained kernel deltas (KEY_DTYPE / VAL_DTYPE arrays of equal length)."""
        n = len(keys)
        if n == 0:
            return
        keys = np.ascontiguousarray(keys, KEY_DTYPE)
        values = np.ascontiguousarray(values, VAL_DTYPE)
        bwords = keys.view(np.uint64).reshape(n, KEY_WORDS)
        bbytes = values.view(np.uint8).reshape(n, VAL_DTYPE.itemsize)
        v, b = self._vals, values
        counts = np.zeros(7, np.int64)
        _merge(self._index, self._words, self._vbytes, self._state, self._reason,
               v["packets"], v["bytes"], v["first_ns"], v["last_ns"], v["tcp_flags"],
               v["min_ttl"], v["max_ttl"], v["frag"], self._free, self._nfree,
               bwords, bbytes, b["packets"], b["bytes"], b["first_ns"], b["last_ns"],
               b["tcp_flags"], b["min_ttl"], b["max_ttl"], b["frag"], self.counter_limit,
               counts)
        st = self.stats
        st.flows_created += int(counts[0])
        st.records_merged += int(counts[1])
        st.refused_flows += int(counts[2])
        st.refused_packets += int(counts[3])
        st.refused_bytes += int(counts[4])
        st.guard_splits += int(counts[5])
        self._tombstones += int(counts[6])
        st.peak_active = max(st.peak_active, len(self))

    def expire(self, now_ns: int) -> np.ndarray:
        """Remove and return the flows that end at `now_ns` (FLOW_DTYPE array)."""
        v = self._vals
        act = self._state == _ACTIVE
        idle = act & (now_ns - v["last_ns"].astype(np.int64) >= self.inactive_timeout_ns)
        aged = act & (now_ns - v["first_ns"].astype(np.int64) >= self.active_timeout_ns)
        ended = act & ((v["tcp_flags"] & (TCP_FIN | TCP_RST)) != 0)
        tcp_due = np.zeros_like(act)
        if self.tcp_end_timeout_ns is not None:
            tcp_due = ended & (now_ns - v["last_ns"].astype(np.int64) >= self.tcp_end_timeout_ns)
        reason = np.where(
            self._state == _CLOSED, self._reason,
            np.where(tcp_due | (idle & ended), np.uint8(FlowEndReason.END_OF_FLOW),
                     np.where(idle, np.uint8(FlowEndReason.IDLE_TIMEOUT),
                              np.uint8(FlowEndReason.ACTIVE_TIMEOUT)))).astype(np.uint8)
        sel = (self._state == _CLOSED) | idle | aged | tcp_due
        return self._take(np.flatnonzero(sel), reason)

    def flush(self, reason: FlowEndReason = FlowEndReason.FORCED_END) -> np.ndarray:
        """Remove and return every flow (shutdown, or `flush` on demand)."""
        held = np.flatnonzero(self._state != _FREE)
        reasons = np.where(self._state == _CLOSED, self._reason, np.uint8(reason))
        return self._take(held, reasons.astype(np.uint8))

    def _take(self, slots: np.ndarray, reasons: np.ndarray) -> np.ndarray:
        out = np.zeros(len(slots), FLOW_DTYPE)
        if len(slots) == 0:
            return out
        # Oldest first: collectors and tests read records in the order flows started.
        slots = slots[np.argsort(self._vals["first_ns"][slots], kind="stable")]
        out["key"] = self._keys[slots]
        out["val"] = self._vals[slots]
        out["end_reason"] = reasons[slots]
        self._tombstones += _remove(self._index, self._words, self._state,
                                    slots.astype(np.int64), self._free, self._nfree)
        self.stats.flows_expired += len(slots)
        for r, c in zip(*np.unique(out["end_reason"], return_counts=True)):
            self.stats.by_reason[int(r)] = self.stats.by_reason.get(int(r), 0) + int(c)
        if self._tombstones > len(self._index) // 4:
            _rebuild(self._index, self._words, self._state)
            self._tombstones = 0
        return out
