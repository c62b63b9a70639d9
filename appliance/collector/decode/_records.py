"""Data sets → output columns: the record walker every version shares (numba).

v5 and v1 packets are walked as one data set of a built-in template, v9 and IPFIX data
sets with the template they name. Fixed-length templates get their field offsets once
per set; variable-length fields (IPFIX) are resolved per record.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.decode._bytes import be, be16
from appliance.collector.decode._sampling import learn_options, record_rate
from appliance.collector.decode._tables import (
    A_FLOAT,
    A_REF,
    A_SIGNED,
    A_SKIP,
    A_UINT,
    A_V6,
    C_DEV_ID,
    C_DEV_IP,
    C_DEV_IP6,
    C_EXP,
    C_KIND,
    C_OFF,
    C_RATE,
    C_RECV,
    C_SLOT,
    C_TEND,
    C_TID,
    C_TSTART,
    C_VER,
    F_ACT,
    F_COL,
    F_COL6,
    F_COUNTER,
    F_LEN,
    T_FS,
    T_HAS_VAR,
    T_KIND,
    T_MINLEN,
    T_NF,
    T_RECORDS,
    T_SAMPID_F,
    T_SAMPINT_F,
    T_TID,
    Stat,
)
from appliance.collector.decode._templates import KIND_DATA, KIND_OPTIONS
from appliance.collector.decode._times import record_times
from appliance.netflow.header import V9, VARIABLE_LENGTH


@njit(cache=True, nogil=True)
def fill_constants(out, out6, r0, r1, dg, hdr, slot, tid, kind):
    """Virtual columns that are the same for every record of a set, filled as slices."""
    if r1 <= r0:
        return
    out[C_DEV_IP, r0:r1] = np.uint64(dg.dev_ip4)
    out6[C_DEV_IP6, 0, r0:r1] = dg.dev_hi
    out6[C_DEV_IP6, 1, r0:r1] = dg.dev_lo
    out[C_DEV_ID, r0:r1] = np.uint64(hdr.dev_id)
    out[C_RECV, r0:r1] = np.uint64(dg.recv_ns)
    out[C_EXP, r0:r1] = np.uint64(dg.exporter)
    out[C_TID, r0:r1] = np.uint64(tid)
    out[C_KIND, r0:r1] = np.uint64(0 if hdr.version < V9 else kind)
    out[C_SLOT, r0:r1] = np.uint64(slot)
    out[C_VER, r0:r1] = np.uint64(hdr.version)


@njit(cache=True, nogil=True, inline="always")
def decode_set(pkt, dg, hdr, rec_start, end, slot, nrec_in, tables, output, settings, scratch):
    """Decode the records of one data set (pkt[rec_start:end]) with the template in slot.

    Returns (records written, position reached, full flag). When the output is full the
    position is where the next record starts, so the caller can resume there.
    """
    tm = tables.templates
    tf = tables.fields
    stats = tables.stats
    st = tables.streams
    out = output.columns
    out6 = output.columns6
    present = output.present
    frel = scratch.frel
    flen = scratch.flen
    plan = scratch.plan
    exp = dg.exporter
    stream = hdr.stream
    nrec = nrec_in
    cap = out.shape[1]
    fs = tm[slot, T_FS]
    nf = tm[slot, T_NF]
    minlen = tm[slot, T_MINLEN]
    kind = tm[slot, T_KIND]
    tid = tm[slot, T_TID]
    fixed = tm[slot, T_HAS_VAR] == 0
    emit = kind == KIND_DATA or settings.emit_options
    apply_sampling = settings.apply_sampling
    if emit:
        for k in range(nf):
            c = tf[fs + k, F_COL]
            if c >= 0:
                present[c] = 1
    if fixed:  # field offsets are the same in every record: compute them once
        at = 0
        for k in range(nf):
            frel[k] = at
            flen[k] = tf[fs + k, F_LEN]
            at += flen[k]
    # the fields that produce a value, with their column and action, read once per set
    nplan = 0
    for k in range(nf):
        act = tf[fs + k, F_ACT]
        if act != A_SKIP:
            plan[nplan, 0] = k
            plan[nplan, 1] = act
            plan[nplan, 2] = tf[fs + k, F_COL6] if act == A_V6 else tf[fs + k, F_COL]
            nplan += 1
    pos = rec_start
    # the rate only changes with the record's sampler id / interval: look it up on change
    last_sampler = np.int64(-2)
    last_interval = np.int64(-2)
    last_rate = np.int64(1)
    records = 0
    full = False
    while pos + minlen <= end:
        if emit and nrec >= cap:
            full = True
            break
        rec_pos = pos
        if fixed:
            pos += minlen
        else:
            ok = True
            # pass 1: field positions (variable-length prefixes resolved)
            for k in range(nf):
                ln = tf[fs + k, F_LEN]
                if ln == VARIABLE_LENGTH:
                    if pos >= end:
                        ok = False
                        break
                    ln = np.int64(pkt[pos])
                    pos += 1
                    if ln == 255:
                        if pos + 2 > end:
                            ok = False
                            break
                        ln = be16(pkt, pos)
                        pos += 2
                frel[k] = pos - rec_pos
                flen[k] = ln
                pos += ln
                if pos > end:
                    ok = False
                    break
            if not ok:
                stats[exp, Stat.ERR_TRUNCATED_RECORD] += 1
                pos = end
                break
        if kind == KIND_OPTIONS:
            stats[exp, Stat.OPTIONS_RECORDS] += 1
            learn_options(pkt, rec_pos, scratch, tables, slot, stream)
            if not emit:
                continue
        else:
            records += 1
        row = nrec
        nrec += 1
        # pass 2: values into columns
        for j in range(nplan):
            k = plan[j, 0]
            act = plan[j, 1]
            c = plan[j, 2]
            p = rec_pos + frel[k]
            ln = flen[k]
            if act == A_UINT:
                out[c, row] = be(pkt, p, ln)
            elif act == A_V6:
                out6[c, 0, row] = be(pkt, p, 8)
                out6[c, 1, row] = be(pkt, p + 8, 8)
            elif act == A_REF:
                out[c, row] = (np.uint64(dg.offset + p) << np.uint64(16)) | np.uint64(ln)
            elif act == A_SIGNED:
                v = be(pkt, p, ln)
                if ln < 8 and ln > 0 and (v >> np.uint64(8 * ln - 1)) & np.uint64(1):
                    v |= ~np.uint64(0) << np.uint64(8 * ln)
                out[c, row] = v
            elif act == A_FLOAT:
                if ln == 8:
                    out[c, row] = be(pkt, p, 8)
                else:
                    f32 = np.array([np.uint32(be(pkt, p, 4))]).view(np.float32)[0]
                    out[c, row] = np.array([np.float64(f32)]).view(np.uint64)[0]
        # sampling
        sampler = np.int64(-1)
        k = tm[slot, T_SAMPID_F]
        if k >= 0 and flen[k] <= 8:
            sampler = np.int64(be(pkt, rec_pos + frel[k], flen[k]) & np.uint64(0xFFFFFFFF))
        rec_interval = np.int64(0)
        k = tm[slot, T_SAMPINT_F]
        if k >= 0 and flen[k] <= 8:
            rec_interval = np.int64(be(pkt, rec_pos + frel[k], flen[k]) & np.uint64(0xFFFFFFFF))
        if sampler == last_sampler and rec_interval == last_interval:
            rate = last_rate
        else:
            rate = record_rate(st, tables.sampler_rates, tables.overrides, exp, stream, hdr.dev_id, sampler,
                                   rec_interval)
            last_sampler, last_interval, last_rate = sampler, rec_interval, rate
        if apply_sampling and rate != 1 and kind == KIND_DATA:
            for k in range(nf):
                if tf[fs + k, F_COUNTER] == 1 and tf[fs + k, F_ACT] == A_UINT:
                    c = tf[fs + k, F_COL]
                    out[c, row] = out[c, row] * np.uint64(rate)
        # times
        t_start, t_end = record_times(pkt, rec_pos, frel, flen, tm, st, slot, hdr)
        out[C_RATE, row] = np.uint64(rate)
        out[C_TSTART, row] = np.uint64(t_start)
        out[C_TEND, row] = np.uint64(t_end)
        out[C_OFF, row] = np.uint64(dg.offset + rec_pos)
    if emit:
        fill_constants(out, out6, nrec_in, nrec, dg, hdr, slot, tid, kind)
    stats[exp, Stat.RECORDS] += records
    tm[slot, T_RECORDS] += nrec - nrec_in
    if full:
        return nrec - nrec_in, pos, True
    if pos < end:
        stats[exp, Stat.PADDING_BYTES] += end - pos
    return nrec - nrec_in, end, False


@njit(cache=True, nogil=True)
def clear_rows(output, n):
    """Zero the used rows of the present columns so the block can be reused."""
    out = output.columns
    out6 = output.columns6
    present = output.present
    for c in range(out.shape[0]):
        if present[c]:
            out[c, :n] = 0
            present[c] = 0
    for c in range(out6.shape[0]):
        out6[c, 0, :n] = 0
        out6[c, 1, :n] = 0
