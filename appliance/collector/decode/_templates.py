"""The template cache: template and options template sets into the template tables (numba).

A template lives in one slot of `Tables.templates` (keyed by stream and template id) with
its fields as consecutive rows of `Tables.fields`; each field row already says which
registry column the value goes to and how to read it (``A_*``), so the record walker
(`_records.py`) does no lookups per record.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.decode._bytes import be16, be32, dget
from appliance.collector.decode._tables import (
    A_FLOAT,
    A_REF,
    A_SIGNED,
    A_SKIP,
    A_UINT,
    A_V6,
    F_ACT,
    F_COL,
    F_COL6,
    F_COUNTER,
    F_IE,
    F_LEN,
    F_PEN,
    F_SCOPE,
    FT_BYTES,
    FT_FLOAT,
    FT_IPV6,
    FT_SIGNED,
    FT_STRING,
    M_NFLD,
    M_NTMPL,
    M_TMPL_CHANGES,
    MAX_TEMPLATE_FIELDS,
    T_DUR_F,
    T_END_F,
    T_END_U,
    T_FS,
    T_FUPT_F,
    T_HAS_VAR,
    T_KIND,
    T_LUPT_F,
    T_MINLEN,
    T_NF,
    T_NSCOPE,
    T_RECORDS,
    T_SAMPID_F,
    T_SAMPINT_F,
    T_START_F,
    T_START_U,
    T_STREAM,
    T_TID,
    T_VALID,
    T_VERSION,
    TU_MS,
    TU_NONE,
    Stat,
)
from appliance.collector.decode._times import time_unit
from appliance.netflow.header import (
    ENTERPRISE_BIT,
    IPFIX,
    IPFIX_OPTIONS_TEMPLATE_SET_ID,
    IPFIX_TEMPLATE_SET_ID,
    MIN_DATA_SET_ID,
    V9_OPTIONS_TEMPLATE_SET_ID,
    VARIABLE_LENGTH,
)

KIND_DATA = 1
KIND_OPTIONS = 2


@njit(cache=True, nogil=True)
def field_action(reg, pen, ie, length):
    """Registry column, v6 column and action for one template field."""
    col = -1
    if pen == 0:
        col = reg.iana_column[ie]
    else:
        ent_keys = reg.ent_keys
        key = (pen << 16) | ie
        i = np.searchsorted(ent_keys, key)
        if i < ent_keys.shape[0] and ent_keys[i] == key:
            col = reg.ent_columns[i]
    if col < 0:
        return -1, -1, A_SKIP
    ft = reg.ftype[col]
    if ft == FT_IPV6:
        if length == 16:
            return col, reg.column6[col], A_V6
        return col, -1, A_REF
    if ft == FT_STRING or ft == FT_BYTES:
        return col, -1, A_REF
    if length == VARIABLE_LENGTH or length > 8:
        return col, -1, A_REF
    if ft == FT_FLOAT:
        if length == 4 or length == 8:
            return col, -1, A_FLOAT
        return col, -1, A_REF
    if ft == FT_SIGNED:
        return col, -1, A_SIGNED
    return col, -1, A_UINT


@njit(cache=True, nogil=True)
def finish_template(tm, tf, slot):
    """Derive the per-template summary columns (lengths, time and sampling fields)."""
    fs = tm[slot, T_FS]
    nf = tm[slot, T_NF]
    minlen = 0
    hasvar = 0
    tm[slot, T_START_F] = -1
    tm[slot, T_START_U] = TU_NONE
    tm[slot, T_END_F] = -1
    tm[slot, T_END_U] = TU_NONE
    tm[slot, T_FUPT_F] = -1
    tm[slot, T_LUPT_F] = -1
    tm[slot, T_DUR_F] = -1
    tm[slot, T_SAMPID_F] = -1
    tm[slot, T_SAMPINT_F] = -1
    for k in range(nf):
        ln = tf[fs + k, F_LEN]
        if ln == VARIABLE_LENGTH:
            minlen += 1
            hasvar = 1
        else:
            minlen += ln
        if tf[fs + k, F_PEN] != 0:
            continue
        ie = tf[fs + k, F_IE]
        if ln == VARIABLE_LENGTH:
            continue
        unit, which = time_unit(ie)
        # prefer the finest unit present: ms over ntp over sec (any is fine, first wins)
        if which == 1 and (tm[slot, T_START_F] < 0 or unit == TU_MS):
            tm[slot, T_START_F] = k
            tm[slot, T_START_U] = unit
        elif which == 2 and (tm[slot, T_END_F] < 0 or unit == TU_MS):
            tm[slot, T_END_F] = k
            tm[slot, T_END_U] = unit
        elif ie == 22 and ln <= 8:
            tm[slot, T_FUPT_F] = k
        elif ie == 21 and ln <= 8:
            tm[slot, T_LUPT_F] = k
        elif ie == 161 and ln <= 8:
            tm[slot, T_DUR_F] = k
        elif (ie == 48 or ie == 302) and ln <= 8:
            tm[slot, T_SAMPID_F] = k
        elif ie == 34 and ln <= 8:
            tm[slot, T_SAMPINT_F] = k
    tm[slot, T_MINLEN] = minlen
    tm[slot, T_HAS_VAR] = hasvar


@njit(cache=True, nogil=True)
def same_fields(tm, tf, slot, buf, pos, nf, nscope, kind, ipfix, end):
    """Is the template at buf[pos:] identical to the stored one in slot?"""
    if tm[slot, T_NF] != nf or tm[slot, T_KIND] != kind or tm[slot, T_NSCOPE] != nscope:
        return False
    fs = tm[slot, T_FS]
    p = pos
    for k in range(nf):
        if p + 4 > end:
            return False
        ie = be16(buf, p)
        ln = be16(buf, p + 2)
        p += 4
        pen = 0
        if ipfix and ie & ENTERPRISE_BIT:
            if p + 4 > end:
                return False
            pen = be32(buf, p)
            p += 4
            ie &= ~ENTERPRISE_BIT
        if tf[fs + k, F_IE] != ie or tf[fs + k, F_LEN] != ln or tf[fs + k, F_PEN] != pen:
            return False
    return True


@njit(cache=True, nogil=True)
def store_template(buf, pos, end, tid, nf, nscope, kind, hdr, exp, tables, reg):
    """Parse one template definition at pos (after its header); return the position after it.

    Returns -1 when the definition runs past `end` (the set is then abandoned).
    """
    ipfix = hdr.version == IPFIX
    tm = tables.templates
    tf = tables.fields
    meta = tables.meta
    stats = tables.stats
    # size check first: field specifiers must fit
    p = pos
    for _k in range(nf):
        if p + 4 > end:
            return -1
        ie = be16(buf, p)
        p += 4
        if ipfix and ie & ENTERPRISE_BIT:
            p += 4
            if p > end:
                return -1
    after = p
    key = (np.int64(hdr.stream) << 16) | np.int64(tid)
    slot = dget(tables.template_ids, key)
    if slot >= 0 and same_fields(tm, tf, slot, buf, pos, nf, nscope, kind, ipfix, end):
        if tm[slot, T_VALID] != 1 and tm[slot, T_MINLEN] > 0:
            tm[slot, T_VALID] = 1  # re-announced after a withdrawal
            meta[M_TMPL_CHANGES] += 1
        return after  # a refresh: nothing changes
    if meta[M_NFLD] + nf > tf.shape[0]:
        stats[exp, Stat.ERR_TEMPLATE_TABLE_FULL] += 1
        return after
    if slot < 0:
        n = meta[M_NTMPL]
        if n >= tm.shape[0]:
            stats[exp, Stat.ERR_TEMPLATE_TABLE_FULL] += 1
            return after
        slot = n
        meta[M_NTMPL] = n + 1
        tables.template_ids[key] = slot
        tm[slot, T_RECORDS] = 0
    else:
        stats[exp, Stat.TEMPLATES_CHANGED] += 1
    fs = meta[M_NFLD]
    meta[M_NFLD] = fs + nf
    p = pos
    reclen = 0
    for k in range(nf):
        ie = be16(buf, p)
        ln = be16(buf, p + 2)
        p += 4
        pen = 0
        if ipfix and ie & ENTERPRISE_BIT:
            pen = be32(buf, p)
            p += 4
            ie &= ~ENTERPRISE_BIT
        col, c6, act = field_action(reg, pen, ie, ln)
        if k < nscope and not ipfix:
            # v9 scope fields carry a scope type (system, interface, ...), not an element id
            col, c6, act = -1, -1, A_SKIP
        tf[fs + k, F_IE] = ie
        tf[fs + k, F_PEN] = pen
        tf[fs + k, F_LEN] = ln
        tf[fs + k, F_COL] = col
        tf[fs + k, F_COL6] = c6
        tf[fs + k, F_ACT] = act
        tf[fs + k, F_SCOPE] = 1 if k < nscope else 0
        tf[fs + k, F_COUNTER] = 1 if (col >= 0 and reg.counter[col]) else 0
        reclen += 1 if ln == VARIABLE_LENGTH else ln
    tm[slot, T_STREAM] = hdr.stream
    tm[slot, T_TID] = tid
    tm[slot, T_NF] = nf
    tm[slot, T_FS] = fs
    tm[slot, T_KIND] = kind
    tm[slot, T_NSCOPE] = nscope
    tm[slot, T_VERSION] = hdr.version
    tm[slot, T_VALID] = 1 if reclen > 0 else 0
    if reclen == 0:
        stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
    finish_template(tm, tf, slot)
    meta[M_TMPL_CHANGES] += 1
    return after


@njit(cache=True, nogil=True)
def withdraw(tables, stream, tid):
    """IPFIX template withdrawal: one id, or every template of a kind (tid = set id 2/3)."""
    tm = tables.templates
    meta = tables.meta
    if tid == IPFIX_TEMPLATE_SET_ID or tid == IPFIX_OPTIONS_TEMPLATE_SET_ID:
        kind = KIND_DATA if tid == IPFIX_TEMPLATE_SET_ID else KIND_OPTIONS
        for slot in range(meta[M_NTMPL]):
            if tm[slot, T_STREAM] == stream and tm[slot, T_VALID] == 1 and tm[slot, T_KIND] == kind:
                tm[slot, T_VALID] = 0
        meta[M_TMPL_CHANGES] += 1
        return
    key = (np.int64(stream) << 16) | np.int64(tid)
    slot = dget(tables.template_ids, key)
    if slot >= 0:
        tm[slot, T_VALID] = 0
        meta[M_TMPL_CHANGES] += 1


@njit(cache=True, nogil=True)
def parse_template_set(buf, pos, end, set_id, hdr, exp, tables, reg):
    """Walk a template or options template set (pos: after the set header)."""
    ipfix = hdr.version == IPFIX
    stats = tables.stats
    options = (set_id == V9_OPTIONS_TEMPLATE_SET_ID) or (set_id == IPFIX_OPTIONS_TEMPLATE_SET_ID)
    while pos + 4 <= end:
        tid = be16(buf, pos)
        if options and not ipfix:
            # v9 options template: id, scope length, option length (bytes), then the fields
            if pos + 6 > end:
                break
            if tid == 0:
                break  # padding at the end of the set
            scope_len = be16(buf, pos + 2)
            opt_len = be16(buf, pos + 4)
            pos += 6
            nscope = scope_len // 4
            nf = nscope + opt_len // 4
            if tid < MIN_DATA_SET_ID or nf == 0 or nf > MAX_TEMPLATE_FIELDS or (scope_len % 4) or (opt_len % 4):
                stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
                return
            # v9 option scope fields: (scope type, length); store the scope type as its id
            after = store_template(buf, pos, end, tid, nf, nscope, KIND_OPTIONS, hdr, exp, tables, reg)
            if after < 0:
                stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
                return
            stats[exp, Stat.OPTIONS_TEMPLATES] += 1
            pos = after
            # v9 options templates are padded to 4 bytes inside the set
            continue
        nf = be16(buf, pos + 2)
        pos += 4
        nscope = 0
        if options and nf > 0:
            if pos + 2 > end:
                stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
                return
            nscope = be16(buf, pos)
            pos += 2
            if nscope > nf:
                stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
                return
        if nf == 0:
            if ipfix:
                withdraw(tables, hdr.stream, tid)
                stats[exp, Stat.TEMPLATE_WITHDRAWALS] += 1
                continue
            if tid == 0:  # padding
                break
            stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
            return
        if tid < MIN_DATA_SET_ID or nf > MAX_TEMPLATE_FIELDS:
            stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
            return
        kind = KIND_OPTIONS if options else KIND_DATA
        after = store_template(buf, pos, end, tid, nf, nscope, kind, hdr, exp, tables, reg)
        if after < 0:
            stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
            return
        if options:
            stats[exp, Stat.OPTIONS_TEMPLATES] += 1
        else:
            stats[exp, Stat.TEMPLATES] += 1
        pos = after
