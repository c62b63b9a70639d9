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

from collections.abc import Iterator
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from appliance.probe.records import KEY_DTYPE, KEY_WORDS, VAL_DTYPE, FlowEndReason

__all__ = ["FlowTable", "TableStats", "FLOW_DTYPE"]

TCP_FIN = 0x01
TCP_RST = 0x04

_EMPTY = -1
_DELETED = -2
_FREE, _ACTIVE, _CLOSED = 0, 1, 2
_NO_HASH = np.uint64(0)
#: flows per chunk handed from expiry to export (small enough to stay in the caches)
CHUNK = 16384

#: One exported flow: the kernel key and value plus why the flow ended.
#: Padded to 128 bytes, so records are copied as 16 aligned 64-bit words.
FLOW_DTYPE = np.dtype({"names": ["key", "val", "end_reason"],
                       "formats": [KEY_DTYPE, VAL_DTYPE, "u1"],
                       "offsets": [0, KEY_DTYPE.itemsize, KEY_DTYPE.itemsize + VAL_DTYPE.itemsize],
                       "itemsize": 128})
_FLOW_WORDS = FLOW_DTYPE.itemsize // 8


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
def _find(index, twords, bwords, j, h=_NO_HASH, hashed=False):
    """Returns (position of the key or -1, first reusable position). `h`: the key's hash
    when `hashed` (the merge computes a block of them ahead)."""
    mask = np.uint64(len(index) - 1)
    pos = (h if hashed else _hash(bwords, j)) & mask
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
def _merge(index, where, twords, tbytes, state, reason, packets, bytes_, first, last, flags,
           min_ttl, max_ttl, frag, free, nfree, bwords, bbytes, bpackets, bbytes_, bfirst,
           blast, bflags, bmin_ttl, bmax_ttl, bfrag, limit, counts):
    """counts: [new flows, merged, refused flows, refused packets, refused bytes,
    guard splits, tombstones added]."""
    # Hashes are computed a block ahead and their index entries read once, independently of
    # each other, so the cache misses of a block overlap instead of coming one by one.
    block = 32
    hashes = np.empty(block, np.uint64)
    mask = np.uint64(len(index) - 1)
    warm = np.int64(0)
    for j in range(len(bwords)):
        if j % block == 0:
            for b in range(min(block, len(bwords) - j)):
                hashes[b] = _hash(bwords, j + b)
                warm += index[hashes[b] & mask]
        pos, reuse = _find(index, twords, bwords, j, hashes[j % block], True)
        if pos >= 0:
            s = index[pos]
            if packets[s] + bpackets[j] > limit or bytes_[s] + bbytes_[j] > limit:
                # Close this record (active-timeout reason) and continue in a fresh slot.
                state[s] = _CLOSED
                reason[s] = 2
                index[pos] = _DELETED
                counts[5] += 1
                counts[6] += 1
                _, reuse = _find(index, twords, bwords, j)
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
        where[s] = reuse
        for w in range(twords.shape[1]):  # loops: numba's slice copies allocate views
            twords[s, w] = bwords[j, w]
        for w in range(tbytes.shape[1]):
            tbytes[s, w] = bbytes[j, w]
        state[s] = _ACTIVE
        reason[s] = 0
        counts[0] += 1
    return warm


@nb.njit(cache=True, nogil=True)
def _remove(index, where, state, slots, free, nfree):
    """Take `slots` out of the index (those still in it) and give them back to `free`."""
    removed = 0
    for s in slots:
        if state[s] == _ACTIVE:
            index[where[s]] = _DELETED
            removed += 1
        state[s] = _FREE
        free[nfree[0]] = s
        nfree[0] += 1
    return removed


@nb.njit(cache=True, nogil=True)
def _rebuild(index, where, twords, state):
    index[:] = _EMPTY
    mask = np.uint64(len(index) - 1)
    for s in range(len(state)):
        if state[s] == _ACTIVE:
            pos = _hash(twords, s) & mask
            while index[pos] != _EMPTY:
                pos = (pos + np.uint64(1)) & mask
            index[pos] = s
            where[s] = pos


@nb.njit(cache=True, nogil=True)
def _due(state, reason, first, last, flags, used, now, inactive, active, tcp_end, out_slots,
         out_reasons):
    """The slots below `used` whose flows end at `now` and why; returns how many (written to
    out_*). tcp_end < 0: no early TCP export. (The arrays are passed whole: slices of one or
    no element would be typed contiguous, another signature to compile.)"""
    n = 0
    for s in range(used):
        st = state[s]
        if st == _FREE:
            continue
        r = 0
        if st == _CLOSED:
            r = reason[s]
        else:
            idle = now - np.int64(last[s]) >= inactive
            ended = (flags[s] & (TCP_FIN | TCP_RST)) != 0
            if ended and (idle or (tcp_end >= 0 and now - np.int64(last[s]) >= tcp_end)):
                r = 3
            elif idle:
                r = 1
            elif now - np.int64(first[s]) >= active:
                r = 2
        if r:
            out_slots[n] = s
            out_reasons[n] = r
            n += 1
    return n


@nb.njit(cache=True, nogil=True)
def _oldest_first(first, slots):
    """The order (positions into `slots`) that sorts them by first[slot], ties in their given
    order: the times are gathered once, counted into about len(slots) / 4 buckets, and each
    bucket sorted (a few flows by insertion, large ones by merge sort)."""
    k = len(slots)
    if k < 2:
        return np.arange(k)
    keys = np.empty(k, first.dtype)
    for i in range(k):  # the one random pass over the table
        keys[i] = first[slots[i]]
    lo = keys.min()
    hi = keys.max()
    nb = max(1, k // 4)
    shift = np.uint64(0)
    while ((hi - lo) >> shift) >= np.uint64(nb):
        shift += np.uint64(1)
    starts = np.zeros(nb + 1, np.int64)
    for i in range(k):
        starts[np.int64((keys[i] - lo) >> shift) + 1] += 1
    for b in range(nb):
        starts[b + 1] += starts[b]
    fill = starts[:-1].copy()
    out = np.empty(k, np.int64)
    for i in range(k):
        b = np.int64((keys[i] - lo) >> shift)
        out[fill[b]] = i
        fill[b] += 1
    for b in range(nb):
        a, z = starts[b], starts[b + 1]
        if z - a < 2:
            continue
        if z - a <= 48:  # insertion sort, stable
            for i in range(a + 1, z):
                p = out[i]
                v = keys[p]
                j = i - 1
                while j >= a and keys[out[j]] > v:
                    out[j + 1] = out[j]
                    j -= 1
                out[j + 1] = p
        else:
            part = out[a:z].copy()
            out[a:z] = part[np.argsort(keys[part], kind="mergesort")]
    return out


@nb.njit(cache=True, nogil=True)
def _gather(kwords, vwords, slots, reasons):
    """FLOW_DTYPE records of `slots`, as uint64[n, 16] (key words, value words, reason)."""
    kw, vw = kwords.shape[1], vwords.shape[1]
    out = np.zeros((len(slots), _FLOW_WORDS), np.uint64)
    for i in range(len(slots)):
        s = slots[i]
        for w in range(kw):  # loops: numba's slice copies allocate views
            out[i, w] = kwords[s, w]
        for w in range(vw):
            out[i, kw + w] = vwords[s, w]
        out[i, kw + vw] = np.uint64(reasons[i])  # little-endian: the byte at end_reason
    return out


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
    #: flows ended early because the table was fuller than emergency_fill (reason 5)
    emergency_expired: int = 0
    emergency_passes: int = 0


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
                 counter_limit: int = 2**32 - 1, emergency_fill: float = 0.9,
                 emergency_target: float = 0.75) -> None:
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
        if not 0 < emergency_target <= emergency_fill <= 1:
            raise ValueError("need 0 < emergency_target <= emergency_fill <= 1")
        self.emergency_fill = emergency_fill
        self.emergency_target = emergency_target
        self._index = np.full(size, _EMPTY, np.int64)
        self._where = np.zeros(self.capacity, np.int64)  # slot → its position in _index
        self._due_slots = np.zeros(self.capacity, np.int64)
        self._due_reasons = np.zeros(self.capacity, np.uint8)
        self._keys = np.zeros(self.capacity, KEY_DTYPE)
        self._vals = np.zeros(self.capacity, VAL_DTYPE)
        self._words = self._keys.view(np.uint64).reshape(self.capacity, KEY_WORDS)
        self._vwords = self._vals.view(np.uint64).reshape(self.capacity, -1)
        self._vbytes = self._vals.view(np.uint8).reshape(self.capacity, VAL_DTYPE.itemsize)
        self._state = np.zeros(self.capacity, np.uint8)
        self._reason = np.zeros(self.capacity, np.uint8)
        self._free = np.arange(self.capacity - 1, -1, -1, dtype=np.int64)
        self._nfree = np.array([self.capacity], np.int64)
        self._tombstones = 0
        self.stats = TableStats()
        # Fault the table's memory in now, not page by page in the middle of a flood.
        for arr in (self._keys, self._vals, self._where, self._due_slots, self._due_reasons,
                    self._state, self._reason):
            arr.view(np.uint8).reshape(-1)[::4096] = 0

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
        bbytes = values.view(np.uint64).reshape(n, VAL_DTYPE.itemsize // 8)
        v, b = self._vals, values
        counts = np.zeros(7, np.int64)
        _merge(self._index, self._where, self._words, self._vwords, self._state, self._reason,
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
        """Remove and return the flows that end at `now_ns` (FLOW_DTYPE array); see
        `expire_chunks`."""
        parts = list(self.expire_chunks(now_ns, chunk=1 << 62))
        return parts[0] if parts else np.zeros(0, FLOW_DTYPE)

    def expire_chunks(self, now_ns: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
        """The flows that end at `now_ns`, oldest first, in FLOW_DTYPE arrays of at most
        `chunk` flows; each chunk leaves the table when it is handed out. Chunks keep the
        working memory small: a million flows in one array cost more in page faults than in
        everything done to them.

        Then, if the table is still fuller than `emergency_fill`, the flows idle longest are
        ended early (flowEndReason 5, lack of resources) until it is at `emergency_target`,
        like ipt_netflow under memory pressure: new flows keep finding room instead of being
        refused (`stats.emergency_expired` counts them).
        """
        v = self._vals
        tcp_end = -1 if self.tcp_end_timeout_ns is None else int(self.tcp_end_timeout_ns)
        # Slots are handed out lowest first and reused before new ones: none above the peak
        # occupancy was ever used, so the scan stops there (not at the capacity).
        used = self.stats.peak_active
        n = _due(self._state, self._reason, v["first_ns"], v["last_ns"], v["tcp_flags"], used,
                 np.int64(now_ns), np.int64(self.inactive_timeout_ns),
                 np.int64(self.active_timeout_ns), np.int64(tcp_end), self._due_slots,
                 self._due_reasons)
        slots = self._due_slots[:n].copy()
        reasons = self._due_reasons[:n].copy()
        over = len(self) - n - int(self.emergency_target * self.capacity)
        if len(self) - n > self.emergency_fill * self.capacity and over > 0:
            slots, reasons = self._emergency(slots, reasons, over)
        yield from self._take(slots, reasons, chunk)

    def _emergency(self, slots: np.ndarray, reasons: np.ndarray,
                   over: int) -> tuple[np.ndarray, np.ndarray]:
        """Adds the `over` active flows idle longest (not already due) to the expiry."""
        active = self._state == _ACTIVE
        active[slots] = False
        candidates = np.flatnonzero(active)
        over = min(over, len(candidates))
        if over <= 0:
            return slots, reasons
        last = self._vals["last_ns"][candidates]
        if over < len(candidates):
            candidates = candidates[np.argpartition(last, over - 1)[:over]]
        self.stats.emergency_expired += len(candidates)
        self.stats.emergency_passes += 1
        extra = np.full(len(candidates), FlowEndReason.LACK_OF_RESOURCES, np.uint8)
        slots, reasons = np.concatenate((slots, candidates)), np.concatenate((reasons, extra))
        order = np.argsort(slots, kind="stable")  # ties in slot order, as for the others
        return slots[order], reasons[order]

    def flush(self, reason: FlowEndReason = FlowEndReason.FORCED_END) -> np.ndarray:
        """Remove and return every flow (shutdown, or `flush` on demand)."""
        held = np.flatnonzero(self._state != _FREE)
        reasons = np.where(self._state == _CLOSED, self._reason, np.uint8(reason))
        parts = list(self._take(held, reasons[held].astype(np.uint8), 1 << 62))
        return parts[0] if parts else np.zeros(0, FLOW_DTYPE)

    def flush_chunks(self, reason: FlowEndReason = FlowEndReason.FORCED_END,
                     chunk: int = CHUNK) -> Iterator[np.ndarray]:
        """`flush` in chunks (see `expire_chunks`)."""
        held = np.flatnonzero(self._state != _FREE)
        reasons = np.where(self._state == _CLOSED, self._reason, np.uint8(reason))
        yield from self._take(held, reasons[held].astype(np.uint8), chunk)

    def _take(self, slots: np.ndarray, reasons: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
        """slots and their reasons (aligned) → FLOW_DTYPE records, oldest first, in chunks."""
        if len(slots) == 0:
            return
        # Oldest first: collectors and tests read records in the order flows started.
        order = _oldest_first(self._vals["first_ns"], slots.astype(np.int64))
        slots, reasons = slots[order].astype(np.int64), reasons[order]
        counts = np.bincount(reasons, minlength=len(FlowEndReason) + 1)
        for r in np.flatnonzero(counts):
            self.stats.by_reason[int(r)] = self.stats.by_reason.get(int(r), 0) + int(counts[r])
        for lo in range(0, len(slots), chunk):
            part, why = slots[lo : lo + chunk], reasons[lo : lo + chunk]
            raw = _gather(self._words, self._vwords, part, why)
            self._tombstones += _remove(self._index, self._where, self._state, part,
                                        self._free, self._nfree)
            self.stats.flows_expired += len(part)
            yield raw.view(FLOW_DTYPE).reshape(len(part))
        if self._tombstones > len(self._index) // 4:
            _rebuild(self._index, self._where, self._words, self._state)
            self._tombstones = 0
