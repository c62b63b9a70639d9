"""`merge`: several loaded databases as one range table per address family.

A country database and an AS database are two lookups per address; merged at load (the union of
their range starts, each range carrying the pair of records it falls in), they are one. The
merged table has more ranges than either but fewer than both together, and one lookup touches
one index, one start and one value row: what an address costs is then almost independent of the
number of databases.
"""

from __future__ import annotations

import numpy as np
from numba import njit

import appliance.collector.enrich._kernels as K
from appliance.collector.enrich.mmdb import GeoDatabase, _Table
from appliance.collector.fields import geo

__all__ = ["merge"]


@njit(cache=True, nogil=True)
def _locate(hi: np.ndarray, lo: np.ndarray, qhi: np.ndarray, qlo: np.ndarray) -> np.ndarray:
    """For each (qhi, qlo), sorted, the index of the last (hi, lo) start ≤ it (a merge walk)."""
    out = np.empty(len(qlo), dtype=np.int64)
    j = 0
    m = len(lo)
    for i in range(len(qlo)):
        while j + 1 < m and (hi[j + 1] < qhi[i] or (hi[j + 1] == qhi[i] and lo[j + 1] <= qlo[i])):
            j += 1
        out[i] = j
    return out


def _union(tables: list[_Table]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct (hi, lo) starts of all tables."""
    key = np.empty(sum(len(t) for t in tables), dtype=[("hi", np.uint64), ("lo", np.uint64)])
    key["hi"] = np.concatenate([t.hi for t in tables])
    key["lo"] = np.concatenate([t.lo for t in tables])
    key = np.unique(key)
    return np.ascontiguousarray(key["hi"]), np.ascontiguousarray(key["lo"])


def _family(dbs: list[GeoDatabase], v6: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Merged starts and, per range, the record code of every database (0 where it has none)."""
    tables = [(i, db.v6 if v6 else db.v4) for i, db in enumerate(dbs)]
    tables = [(i, t) for i, t in tables if len(t)]
    if not tables:
        return None
    hi, lo = _union([t for _, t in tables])
    codes = np.zeros((len(lo), len(dbs)), dtype=np.int64)
    for i, t in tables:
        codes[:, i] = t.code[_locate(t.hi, t.lo, hi, lo)]
    return hi, lo, codes


def merge(dbs: list[GeoDatabase]) -> GeoDatabase:
    """One database that answers what `dbs` answer, first database first where two know an
    address (the `Enricher`'s rule)."""
    provides = tuple(n for n in geo.ENRICHED if any(n in db.provides for db in dbs))
    fams = {v6: _family(dbs, v6) for v6 in (False, True)}
    parts = [f[2] for f in fams.values() if f is not None]
    if not parts:
        return GeoDatabase(dbs[0].path, "merged", 0, provides, {n: np.zeros(1, np.uint64) for n in provides}, 0)
    combos, inverse = np.unique(np.concatenate(parts), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1) + 1  # code 0: no record (the kernel skips it)
    values = {}
    for name in provides:
        val = np.zeros(len(combos) + 1, dtype=np.uint64)
        for i, db in enumerate(dbs):
            if name in db.provides:
                v = db.values[name][combos[:, i]]
                val[1:] = np.where(val[1:] != 0, val[1:], v)
        values[name] = val
    out = GeoDatabase(dbs[0].path, "merged", max(db.build_epoch for db in dbs), provides, values, len(combos))
    at = 0
    for v6, fam in fams.items():
        if fam is None:
            continue
        hi, lo, codes = fam
        code = inverse[at : at + len(lo)].astype(np.int64)
        at += len(lo)
        keep = np.ones(len(code), dtype=np.bool_)
        keep[1:] = code[1:] != code[:-1]
        hi, lo, code = hi[keep], lo[keep], code[keep]
        table = _Table(hi, lo, K.bucket_index(hi, lo, v6), code)
        if v6:
            out.v6 = table
        else:
            out.v4 = table
    return out
