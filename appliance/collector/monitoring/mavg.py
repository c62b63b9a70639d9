"""Moving averages (xenoeye's ``mavg``): per-key rates with thresholds, the running state.

The definitions (`MavgSpec`, the ``mavg`` entries of a mo.conf with their keys) are
`appliance.collector.config.averages`.

The rate of a key is ``N/T`` where ``N ← N·exp(−Δt/T) + V`` for every flow (see
`_mavg`): a step to R units/s reads ``R·(1 − exp(−t/T))`` after t seconds. A level is
raised for a key when any counter's rate reaches its threshold (overlimit) or falls below it
(underlimit); what happens then is `alerts`' business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import appliance.collector.monitoring._mavg as _mavg
from appliance.collector.config.averages import MavgSpec
from appliance.collector.flowbatch import FlowBatch

__all__ = ["MovingAverage", "Raised"]

_NS = 1_000_000_000
_EVENTS = 4096


# ---- the running state ----------------------------------------------------------------------


@dataclass(slots=True)
class Raised:
    """A level raised for one key by the kernels: the key as words, the level, the counter."""

    key: tuple[int, ...]
    level: int
    counter: int


class MovingAverage:
    """The running state of one ``mavg`` of one monitoring object.

    Args:
        spec: the definition.
        mo: the object's name.
    """

    def __init__(self, spec: MavgSpec, mo: str) -> None:
        self.spec = spec
        self.mo = mo
        self.nk = sum(f.words for f in spec.keys)
        self.na = len(spec.counters)
        self.time_ns = spec.time * _NS
        self._keys, self._counters = spec.keys, spec.counters  # per batch: not recomputed
        self.nover = sum(not lv.under for lv in spec.levels)
        self.slot_bytes = 8 * max(self.nk, 1) + 8 * self.na + 8 + 1 + 4 + 4
        cap = 1
        while cap * 2 * self.slot_bytes <= spec.mem_m * 2**20:
            cap *= 2
        self.cap_max = max(cap, 2)
        self.state = np.zeros(5, dtype=np.int64)
        self.evicted = 0
        self.pinned = 0  # limits rows 1..pinned: keys tracked from the start (underlimit files)
        #: when the alerts first saw this table (underlimits are checked one T later)
        self.start_ns: int | None = None
        self._alloc(min(1024, self.cap_max))
        self._ev = (np.zeros(_EVENTS, np.int64), np.zeros(_EVENTS, np.int64), np.zeros(_EVENTS, np.int64))
        self.set_levels(spec)

    # ---- configuration ---------------------------------------------------------------------

    def set_levels(self, spec: MavgSpec) -> None:
        """(Re)build the threshold tables; existing keys are matched against the new limits.

        Keys an underlimit level's limits file lists (with a threshold) are put in the table
        now, with a zero rate, and never evicted: traffic that should be there and never
        shows up raises the level one T after the start, like traffic that stops.
        """
        assert spec.core == self.spec.core
        self.spec = spec
        self.nover = sum(not lv.under for lv in spec.levels)
        rows: dict[tuple[int, ...], int] = {}
        for lv in spec.levels:  # tracked keys first: rows 1..pinned
            if lv.under:
                for key, values in lv.limits:
                    if any(v is not None for v in values):
                        rows.setdefault(key, len(rows) + 1)
        self.pinned = len(rows)
        for lv in spec.levels:
            for key, _ in lv.limits:
                rows.setdefault(key, len(rows) + 1)
        nl = max(len(spec.levels), 1)
        thr = np.full((len(rows) + 1, nl, self.na), np.nan)
        for li, lv in enumerate(spec.levels):
            thr[:, li, :] = [np.nan if v is None else v for v in lv.default]
            for key, values in lv.limits:
                thr[rows[key], li, :] = [np.nan if v is None else v for v in values]
        cap = 1
        while cap < 2 * len(rows) + 2:
            cap *= 2
        self.lkeys = np.zeros((cap if rows else 1, max(self.nk, 1)), np.uint64)
        self.lrow = np.zeros(cap if rows else 0, np.int32)
        for key, row in rows.items():
            _mavg.insert_limits(self.lkeys, self.lrow, np.array(key, np.uint64), self.nk, row)
        self.thr = thr
        # the lowest overlimit threshold per row and counter lets the kernel skip the levels
        over = np.where(np.isnan(thr[:, : self.nover]), np.inf, thr[:, : self.nover])
        lowest = over.min(axis=1, initial=np.inf)
        self.thrmin = np.where(np.isinf(lowest), np.nan, lowest)
        used = np.flatnonzero(self.used)
        for s in used:  # few after a reload; the kernels look limits up only for new keys
            self.limrow[s] = rows.get(tuple(int(w) for w in self.keys[s, : self.nk]), 0)
        if self.pinned:
            self._seed(list(rows)[: self.pinned])

    def _seed(self, keys: list[tuple[int, ...]]) -> None:
        need = self.count + len(keys)
        cap = self.used.shape[0]
        if need > self.state[_mavg.MAX_KEYS] and cap < self.cap_max:
            while need > cap // 2 and cap < self.cap_max:
                cap *= 2
            self._rebuild(cap)
        words = np.zeros((len(keys), max(self.nk, 1)), np.uint64)
        for i, key in enumerate(keys):
            words[i, : self.nk] = key
        rows = np.arange(1, len(keys) + 1, dtype=np.int32)
        _mavg.seed(self.keys, self.vals, self.tprev, self.used, self.limrow, self.over, words, rows,
                   self.nk, self.state)

    def _alloc(self, cap: int) -> None:
        self.keys = np.zeros((cap, max(self.nk, 1)), np.uint64)
        self.vals = np.zeros((cap, self.na), np.float64)
        self.tprev = np.zeros(cap, np.int64)
        self.used = np.zeros(cap, np.uint8)
        self.limrow = np.zeros(cap, np.int32)
        self.over = np.zeros(cap, np.uint32)
        self._set_max()

    def _set_max(self) -> None:
        cap = self.used.shape[0]
        # grow at half full; at the mem-m bound, fill up to 3/4 (linear probing stays short)
        self.state[_mavg.MAX_KEYS] = cap // 2 if cap < self.cap_max else cap * 3 // 4

    def _rebuild(self, cap: int, now: int = 0, idle_ns: int = -1) -> None:
        old = (self.keys, self.vals, self.tprev, self.used, self.limrow, self.over)
        self._alloc(cap)
        n = _mavg.rebuild(*old, self.keys, self.vals, self.tprev, self.used, self.limrow, self.over,
                          self.nk, now, idle_ns, self.pinned)
        self.evicted += int(self.state[_mavg.COUNT]) - n
        self.state[_mavg.COUNT] = n

    # ---- feeding ---------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return int(self.state[_mavg.COUNT])

    @property
    def refused(self) -> int:
        return int(self.state[_mavg.REFUSED])

    @property
    def capacity(self) -> int:
        return int(self.state[_mavg.MAX_KEYS]) if self.used.shape[0] >= self.cap_max else \
            self.cap_max * 3 // 4

    def add(self, batch: FlowBatch, rows: np.ndarray) -> list[Raised]:
        """Fold the selected rows in; returns the overlimit levels raised by them."""
        n = batch.n
        keycols = np.empty((self.nk, n), dtype=np.uint64)
        k = 0
        for f in self._keys:
            for word in f.key_words(batch):
                keycols[k] = word
                k += 1
        valcols = np.empty((self.na, n), dtype=np.uint64)
        for a, f in enumerate(self._counters):
            valcols[a] = f.values(batch)
        times = batch["recv_time_ns"]
        rows = rows.astype(np.int64, copy=False)
        cap = self.used.shape[0]
        need = self.count + len(rows) if self.nk else 1
        if need > cap // 2 and cap < self.cap_max:
            while need > cap // 2 and cap < self.cap_max:
                cap *= 2
            self._rebuild(cap)
        self.state[_mavg.NEVENTS] = 0
        self.state[_mavg.REFUSE_MODE] = 0
        start = 0
        raised: list[Raised] = []
        while True:
            start = _mavg.update(start, rows, keycols, valcols, times, self.time_ns, self.keys, self.vals,
                                 self.tprev, self.used, self.limrow, self.over, self.lkeys, self.lrow,
                                 self.thr, self.thrmin, self.nover, self.state, *self._ev)
            if self.state[_mavg.NEVENTS]:
                raised += self._events()  # before a rebuild: slots move
            if start >= len(rows):
                return raised
            # full: grow if mem-m allows, else drop keys idle for longer than T, else refuse
            if self.used.shape[0] < self.cap_max:
                self._rebuild(self.used.shape[0] * 2)
                continue
            before = self.count
            self._rebuild(self.used.shape[0], int(times[rows[start]]), int(self.time_ns))
            if self.count > before - max(before // 64, 1):
                self.state[_mavg.REFUSE_MODE] = 1

    def _events(self) -> list[Raised]:
        nev = int(self.state[_mavg.NEVENTS])
        self.state[_mavg.NEVENTS] = 0
        slots, levels, counters = (e[:nev] for e in self._ev)
        return [Raised(tuple(int(w) for w in self.keys[s, : self.nk]), int(lv), int(c))
                for s, lv, c in zip(slots, levels, counters, strict=True)]

    def scan_under(self, now: int) -> list[Raised]:
        """Raise the underlimit levels of every key whose rate is now below a threshold."""
        if self.nover == len(self.spec.levels):
            return []
        nev = _mavg.scan_under(self.used, self.vals, self.tprev, self.limrow, self.over, self.thr,
                               self.nover, len(self.spec.levels), now, self.time_ns, *self._ev)
        self.state[_mavg.NEVENTS] = nev
        return self._events()

    def evict_idle(self, now: int, idle_s: float) -> None:
        """Drop keys idle for longer than idle_s (unless a level is raised on them or an
        underlimit's limits file lists them)."""
        self._rebuild(self.used.shape[0], now, int(idle_s * _NS))

    # ---- reading ---------------------------------------------------------------------------

    def slot(self, key: tuple[int, ...]) -> int:
        return int(_mavg.find(self.keys, self.used, np.array(key or (0,), np.uint64), self.nk))

    def rate(self, key: tuple[int, ...], now: int) -> np.ndarray:
        """Per counter, the key's rate decayed to ``now`` (units per second; 0 if unknown)."""
        s = self.slot(key)
        if s < 0:
            return np.zeros(self.na)
        dt = max(now - int(self.tprev[s]), 0)
        return self.vals[s] * math.exp(-dt / self.time_ns) * (_NS / self.time_ns)

    def thresholds(self, key: tuple[int, ...], level: int) -> np.ndarray:
        s = self.slot(key)
        row = int(self.limrow[s]) if s >= 0 else 0
        return self.thr[row, level]

    def lower(self, key: tuple[int, ...], level: int) -> None:
        """The level is back to normal for this key: it may be raised again."""
        s = self.slot(key)
        if s >= 0:
            self.over[s] &= ~np.uint32(1 << level)

    def snapshot(self, now: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys[m, nk], rates[m, na], limits row[m], raised bits[m]) of every key, decayed to now."""
        sel = self.used.view(np.bool_)
        dt = np.maximum(now - self.tprev[sel], 0)
        rates = self.vals[sel] * np.exp(-dt / self.time_ns)[:, None] * (_NS / self.time_ns)
        return self.keys[sel][:, : self.nk], rates, self.limrow[sel], self.over[sel]

    @property
    def memory_bytes(self) -> int:
        return self.used.shape[0] * self.slot_bytes
