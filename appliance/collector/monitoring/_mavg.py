"""Moving-average kernels: a numba open-addressing table of keys → decaying sums.

Per key (slot) the table holds ``vals[s, a]`` — for every summed counter a, the sum of the
flows' contributions each decayed by ``exp(-age/T)`` — and ``tprev[s]``, the time of the
last update. A flow of contribution V at time t updates its key with

    N ← N·exp(−(t − t_prev)/T) + V,        rate = N / T  (units per second)

which is the exact first-order exponential average of the flow impulses, whatever the
spacing of the flows (xenoeye's ``N − (Δt/T)·N + V`` is its first-order approximation).
A key's threshold row ``limrow[s]`` (0 = the defaults, else a line of a limits file) is
looked up once when the key is created; ``over[s]`` has one bit per level that is
currently raised, so each crossing is reported once as an event. Keys with a raised bit
are never evicted, nor keys whose limits row is one of the first ``pinned`` rows (the keys
an underlimit's limits file lists: tracked from the start, see `seed`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.fields.hashing import mix as _mix

__all__ = ["update", "rebuild", "find", "scan_under", "seed"]

# state[]: what the kernels count (int64 so Python can read it without a return tuple)
COUNT, MAX_KEYS, REFUSED, NEVENTS, REFUSE_MODE = range(5)


@njit(cache=True, nogil=True, inline="always")
def _hash(keycols: np.ndarray, i: int, nk: int) -> np.uint64:
    h = np.uint64(0x9E3779B97F4A7C15)
    for k in range(nk):
        h = _mix(h, keycols[k, i])
    return h


@njit(cache=True, nogil=True)
def _lookup_limits(keycols, i, nk, lkeys, lrow):
    """The limits row of the key at column i (0 when no limits file lists it)."""
    cap = lkeys.shape[0]
    if lrow.shape[0] == 0 or cap == 0:
        return 0
    mask = np.uint64(cap - 1)
    slot = _hash(keycols, i, nk) & mask
    while lrow[slot] != 0:
        same = True
        for k in range(nk):
            if lkeys[slot, k] != keycols[k, i]:
                same = False
                break
        if same:
            return lrow[slot]
        slot = (slot + np.uint64(1)) & mask
    return 0


@njit(cache=True, nogil=True)
def update(
    start: int,
    rows: np.ndarray,  # int64[m]: the batch rows this object selected
    keycols: np.ndarray,  # uint64[nk, n]
    valcols: np.ndarray,  # uint64[na, n]
    times: np.ndarray,  # uint64[n]: receive time, ns
    time_ns: float,  # T in ns
    keys: np.ndarray, vals: np.ndarray, tprev: np.ndarray, used: np.ndarray,
    limrow: np.ndarray, over: np.ndarray,
    lkeys: np.ndarray, lrow: np.ndarray,
    thr: np.ndarray,  # float64[nrows, nlevels, na]: per second; NaN = not checked
    thrmin: np.ndarray,  # float64[nrows, na]: the lowest overlimit threshold (NaN: none)
    nover: int,  # levels 0..nover-1 are overlimit levels (checked here)
    state: np.ndarray,  # int64[5]
    ev_slot: np.ndarray, ev_level: np.ndarray, ev_counter: np.ndarray,
) -> int:
    """Fold rows[start:] into the table and check the overlimit levels.

    Returns where it stopped: len(rows) when done, or the row whose new key found the table
    at ``state[MAX_KEYS]`` (the caller grows or evicts and calls again from there), unless
    ``state[REFUSE_MODE]`` is set, in which case such keys are refused and counted.
    """
    nk = keycols.shape[0]
    na = valcols.shape[0]
    mask = np.uint64(keys.shape[0] - 1)
    inv_t = 1.0 / time_ns * 1e9  # N → per second
    one_row = 1 if thr.shape[0] == 1 else 0
    count = state[COUNT]
    nev = state[NEVENTS]
    for r in range(start, rows.shape[0]):
        i = rows[r]
        t = np.int64(times[i])
        slot = _hash(keycols, i, nk) & mask
        fresh = False
        while True:
            if used[slot] == 0:
                fresh = True
                break
            same = True
            for k in range(nk):
                if keys[slot, k] != keycols[k, i]:
                    same = False
                    break
            if same:
                break
            slot = (slot + np.uint64(1)) & mask
        if fresh:
            if count >= state[MAX_KEYS]:
                if state[REFUSE_MODE] == 0:
                    state[COUNT] = count
                    state[NEVENTS] = nev
                    return r
                state[REFUSED] += 1
                continue
            used[slot] = 1
            for k in range(nk):
                keys[slot, k] = keycols[k, i]
            for a in range(na):
                vals[slot, a] = float(valcols[a, i])
            tprev[slot] = t
            limrow[slot] = _lookup_limits(keycols, i, nk, lkeys, lrow)
            over[slot] = 0
            count += 1
        else:
            dt = t - tprev[slot]
            if dt > 0:  # flows of one batch may come a little out of order: no negative decay
                d = np.exp(-dt / time_ns)
                for a in range(na):
                    vals[slot, a] *= d
                tprev[slot] = t
            for a in range(na):
                vals[slot, a] += float(valcols[a, i])
        lr = limrow[slot] if one_row == 0 else 0  # without limits files: no extra memory read
        near = False  # most flows are below every level: one comparison per counter
        for a in range(na):
            if vals[slot, a] * inv_t >= thrmin[lr, a]:
                near = True
        if not near:
            continue
        for lv in range(nover):
            bit = np.uint32(1) << np.uint32(lv)
            if over[slot] & bit:
                continue
            for a in range(na):
                if vals[slot, a] * inv_t >= thr[lr, lv, a]:  # NaN never compares true
                    if nev < ev_slot.shape[0]:  # else: seen again on a later flow
                        over[slot] |= bit
                        ev_slot[nev] = slot
                        ev_level[nev] = lv
                        ev_counter[nev] = a
                        nev += 1
                    break
    state[COUNT] = count
    state[NEVENTS] = nev
    return rows.shape[0]


@njit(cache=True, nogil=True)
def rebuild(
    keys: np.ndarray, vals: np.ndarray, tprev: np.ndarray, used: np.ndarray,
    limrow: np.ndarray, over: np.ndarray,
    nkeys: np.ndarray, nvals: np.ndarray, ntprev: np.ndarray, nused: np.ndarray,
    nlimrow: np.ndarray, nover: np.ndarray,
    nk: int, now: int, idle_ns: int, pinned: int,
) -> int:
    """Copy the slots into the new (empty) arrays, leaving out keys idle longer than
    ``idle_ns`` (idle_ns < 0: keep all) unless a level is raised on them or their limits row
    is ≤ ``pinned``; returns the count."""
    na = vals.shape[1]
    mask = np.uint64(nkeys.shape[0] - 1)
    count = 0
    for s in range(keys.shape[0]):
        if used[s] == 0:
            continue
        if idle_ns >= 0 and over[s] == 0 and now - tprev[s] > idle_ns and not 0 < limrow[s] <= pinned:
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
            nvals[slot, a] = vals[s, a]
        ntprev[slot] = tprev[s]
        nlimrow[slot] = limrow[s]
        nover[slot] = over[s]
        count += 1
    return count


@njit(cache=True, nogil=True)
def find(keys: np.ndarray, used: np.ndarray, key: np.ndarray, nk: int) -> int:
    """The slot of one key (uint64[nk]), or -1."""
    mask = np.uint64(keys.shape[0] - 1)
    h = np.uint64(0x9E3779B97F4A7C15)
    for k in range(nk):
        h = _mix(h, key[k])
    slot = h & mask
    while used[slot] != 0:
        same = True
        for k in range(nk):
            if keys[slot, k] != key[k]:
                same = False
                break
        if same:
            return np.int64(slot)
        slot = (slot + np.uint64(1)) & mask
    return -1


@njit(cache=True, nogil=True)
def insert_limits(lkeys: np.ndarray, lrow: np.ndarray, key: np.ndarray, nk: int, row: int) -> int:
    """Put one limits-file key into the limits table; returns its row (an earlier one if listed)."""
    mask = np.uint64(lkeys.shape[0] - 1)
    h = np.uint64(0x9E3779B97F4A7C15)
    for k in range(nk):
        h = _mix(h, key[k])
    slot = h & mask
    while lrow[slot] != 0:
        same = True
        for k in range(nk):
            if lkeys[slot, k] != key[k]:
                same = False
                break
        if same:
            return lrow[slot]
        slot = (slot + np.uint64(1)) & mask
    for k in range(nk):
        lkeys[slot, k] = key[k]
    lrow[slot] = row
    return row


@njit(cache=True, nogil=True)
def scan_under(
    used: np.ndarray, vals: np.ndarray, tprev: np.ndarray, limrow: np.ndarray, over: np.ndarray,
    thr: np.ndarray, first: int, last: int, now: int, time_ns: float,
    ev_slot: np.ndarray, ev_level: np.ndarray, ev_counter: np.ndarray,
) -> int:
    """Underlimit levels first..last-1: raise every key whose rate, decayed to ``now``, is
    below a threshold; returns the number of events written."""
    na = vals.shape[1]
    inv_t = 1e9 / time_ns
    nev = 0
    for s in range(used.shape[0]):
        if used[s] == 0:
            continue
        dt = now - tprev[s]
        d = np.exp(-dt / time_ns) if dt > 0 else 1.0
        lr = limrow[s]
        for lv in range(first, last):
            bit = np.uint32(1) << np.uint32(lv)
            if over[s] & bit:
                continue
            for a in range(na):
                if vals[s, a] * d * inv_t < thr[lr, lv, a]:
                    if nev < ev_slot.shape[0]:
                        over[s] |= bit
                        ev_slot[nev] = s
                        ev_level[nev] = lv
                        ev_counter[nev] = a
                        nev += 1
                    break
    return nev


@njit(cache=True, nogil=True)
def seed(
    keys: np.ndarray, vals: np.ndarray, tprev: np.ndarray, used: np.ndarray,
    limrow: np.ndarray, over: np.ndarray,
    new_keys: np.ndarray, new_rows: np.ndarray, nk: int, state: np.ndarray,
) -> int:
    """Insert keys not in the table with a zero sum, last seen "never" (tprev 0: any time
    decays it to nothing) and their limits row; keys beyond ``state[MAX_KEYS]`` are refused
    and counted. Returns how many were inserted."""
    na = vals.shape[1]
    mask = np.uint64(keys.shape[0] - 1)
    count = state[COUNT]
    added = 0
    for i in range(new_keys.shape[0]):
        h = np.uint64(0x9E3779B97F4A7C15)
        for k in range(nk):
            h = _mix(h, new_keys[i, k])
        slot = h & mask
        found = False
        while used[slot] != 0:
            same = True
            for k in range(nk):
                if keys[slot, k] != new_keys[i, k]:
                    same = False
                    break
            if same:
                found = True
                break
            slot = (slot + np.uint64(1)) & mask
        if found:
            continue
        if count >= state[MAX_KEYS]:
            state[REFUSED] += 1
            continue
        used[slot] = 1
        for k in range(nk):
            keys[slot, k] = new_keys[i, k]
        for a in range(na):
            vals[slot, a] = 0.0
        tprev[slot] = 0
        limrow[slot] = new_rows[i]
        over[slot] = 0
        count += 1
        added += 1
    state[COUNT] = count
    return added
