"""Sampling rates: learned from options records, chosen per record (numba).

A record's rate comes from devices.conf first, then from the record itself (a sampling
interval field), then from the sampler it names (options data), then from what the stream
announced without a sampler id (v5 header, options without id), else 1.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.decode._bytes import be, dget
from appliance.collector.decode._tables import (
    ANY_SAMPLER,
    F_IE,
    F_PEN,
    M_RATE_CHANGES,
    S_INIT_MS,
    S_RATE,
    T_FS,
    T_NF,
)


@njit(cache=True, nogil=True)
def learn_options(buf, rec_pos, scratch, tables, slot, stream):
    """Read sampling parameters and the exporter's init time out of an options record."""
    frel = scratch.frel
    flen = scratch.flen
    tm = tables.templates
    tf = tables.fields
    st = tables.streams
    fs = tm[slot, T_FS]
    nf = tm[slot, T_NF]
    sampler = np.int64(-1)
    interval = np.int64(0)
    rand_interval = np.int64(0)
    pkt_interval = np.int64(0)
    pkt_space = np.int64(-1)
    size = np.int64(0)
    population = np.int64(0)
    for k in range(nf):
        if tf[fs + k, F_PEN] != 0:
            continue
        ln = flen[k]
        if ln < 1 or ln > 8:
            continue
        ie = tf[fs + k, F_IE]
        v = np.int64(be(buf, rec_pos + frel[k], ln) & np.uint64(0x7FFFFFFFFFFFFFFF))
        if ie == 48 or ie == 302:
            sampler = v
        elif ie == 34:
            interval = v
        elif ie == 50:
            rand_interval = v
        elif ie == 305:
            pkt_interval = v
        elif ie == 306:
            pkt_space = v
        elif ie == 309:
            size = v
        elif ie == 310:
            population = v
        elif ie == 160:
            st[stream, S_INIT_MS] = v
    rate = np.int64(0)
    if interval > 0:
        rate = interval
    elif rand_interval > 0:
        rate = rand_interval
    elif pkt_interval > 0 and pkt_space >= 0:
        rate = (pkt_interval + pkt_space) // pkt_interval
    elif size > 0 and population > 0:
        rate = population // size
    if rate <= 0:
        return
    sid = sampler if sampler >= 0 else ANY_SAMPLER
    key = (np.int64(stream) << 32) | (sid & 0xFFFFFFFF)
    if dget(tables.sampler_rates, key) != rate:
        tables.sampler_rates[key] = rate
        tables.meta[M_RATE_CHANGES] += 1
    if sampler < 0:
        st[stream, S_RATE] = rate


@njit(cache=True, nogil=True)
def record_rate(st, sampler_rates, override, exp, stream, dev_id, sampler, rec_interval):
    """The sampling rate of one record: devices.conf, then the record, then options, else 1.

    Takes the tables it reads, not `Tables`: a container argument costs reference counting
    of every member on each call, and this runs once per data set.
    """
    r = dget(override, (np.int64(exp) << 33) | (np.int64(dev_id) & 0xFFFFFFFF))
    if r >= 0:
        return r
    r = dget(override, (np.int64(exp) << 33) | (np.int64(1) << 32))
    if r >= 0:
        return r
    if rec_interval > 0:
        return rec_interval
    if sampler >= 0:
        r = dget(sampler_rates, (np.int64(stream) << 32) | (sampler & 0xFFFFFFFF))
        if r > 0:
            return r
    if st[stream, S_RATE] > 0:
        return st[stream, S_RATE]
    return np.int64(1)
