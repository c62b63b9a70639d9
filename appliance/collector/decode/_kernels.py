"""Numba kernels of the decoder: NetFlow v5 / v9 / IPFIX packets → columns.

One call walks a whole `PacketBatch`: headers, sets (by their lengths, never by header
counts), templates and options templates (stored in the template tables), options data
(sampling rates, exporter init times), and data records (written into the column block).
The Python side (`decoder.py`) only allocates, grows tables and keeps what is pending.

Tables are plain int64 arrays so the kernels stay cacheable; their column layouts are the
``T_*``, ``F_*``, ``S_*``, ``M_*`` constants below and the statistics layout is `Stat`.
"""

from __future__ import annotations

import enum

import numpy as np
from numba import njit

from appliance.netflow.registry import REGISTRY, FieldType

# ---- template table (one row per template slot) -------------------------------------------
T_STREAM = 0  # stream index (exporter + version + source id)
T_TID = 1  # template id
T_NF = 2  # number of fields
T_FS = 3  # first row in the field table
T_MINLEN = 4  # record length (variable-length fields counted as their 1-byte prefix)
T_KIND = 5  # 1 = data, 2 = options
T_NSCOPE = 6  # scope fields (options templates)
T_VALID = 7  # 1 = usable, 0 = withdrawn / unusable
T_START_F = 8  # field index of the absolute start time, -1 if none
T_START_U = 9  # its unit (TU_*)
T_END_F = 10
T_END_U = 11
T_FUPT_F = 12  # FIRST_SWITCHED (uptime ms) field index
T_LUPT_F = 13  # LAST_SWITCHED
T_DUR_F = 14  # flowDurationMilliseconds
T_SAMPID_F = 15  # sampler id field (48 or 302)
T_SAMPINT_F = 16  # per-record sampling interval field (34)
T_HAS_VAR = 17  # has variable-length fields
T_RECORDS = 18  # records decoded with this template
T_VERSION = 19  # 9 or 10
T_NCOLS = 20

# ---- field table (one row per template field) ---------------------------------------------
F_IE = 0
F_PEN = 1
F_LEN = 2  # 65535 = variable length
F_COL = 3  # registry column or -1
F_COL6 = 4  # v6 column or -1
F_ACT = 5  # A_* action
F_SCOPE = 6  # 1 for scope fields
F_COUNTER = 7  # 1 if scaled by the sampling rate
F_NCOLS = 8

A_SKIP = 0
A_UINT = 1
A_V6 = 2
A_REF = 3
A_FLOAT = 4
A_SIGNED = 5

TU_NONE = 0
TU_SEC = 1
TU_MS = 2
TU_NTP = 3
TU_DELTA_US = 4

# ---- stream table (exporter + version + source id) ----------------------------------------
S_EXP = 0
S_VER = 1
S_SID = 2  # source id / observation domain / v5 engine type << 8 | engine id
S_HAVE_SEQ = 3
S_NEXT_SEQ = 4
S_INIT_MS = 5  # exporter system init time (IPFIX option 160), -1 unknown
S_RATE = 6  # sampling rate learned for the whole stream (v5 header, options without id)
S_PACKETS = 7
S_NCOLS = 8

# ---- meta counters ------------------------------------------------------------------------
M_NEXP = 0
M_NSTREAM = 1
M_NTMPL = 2
M_NFLD = 3
M_TMPL_CHANGES = 4  # templates added / changed / withdrawn (persistence trigger)
M_NORPH = 5
M_RATE_CHANGES = 6
M_PARTIAL = 7  # IPFIX data records of a packet interrupted by a full output
M_LIMITS = 8  # bits set by the Python side when a table reached its cap (no more growth):
L_EXPORTERS, L_STREAMS, L_TEMPLATES, L_FIELDS = 1, 2, 4, 8
M_EXP_REFUSED = 9  # packets from new exporters refused because the exporter table is full
M_NCOLS = 16

# ---- return status --------------------------------------------------------------------------
ST_DONE = 0
ST_OUT_FULL = 1  # output rows exhausted: resume at (packet, set offset, record offset)
ST_GROW = 2  # table capacity low: grow, then resume at the packet start
ST_ORPH_FULL = 3  # orphan list full: take them, then resume

MAX_TEMPLATE_FIELDS = 1024  # more is not a real template: refuse and count it
NTP_EPOCH_OFFSET = 2208988800
ANY_SAMPLER = 0xFFFFFFFF


class Stat(enum.IntEnum):
    """Per-exporter statistics columns (exporter index × Stat)."""

    PACKETS = 0
    BYTES = 1
    V5_PACKETS = 2
    V9_PACKETS = 3
    IPFIX_PACKETS = 4
    RECORDS = 5  # flow data records decoded (v5 + data)
    OPTIONS_RECORDS = 6
    TEMPLATES = 7  # template definitions received (incl. refreshes)
    OPTIONS_TEMPLATES = 8
    TEMPLATES_CHANGED = 9  # a template id redefined with other fields
    TEMPLATE_WITHDRAWALS = 10
    LOST_PACKETS = 11  # v9 sequence gaps (packets)
    LOST_FLOWS = 12  # v5 / IPFIX sequence gaps (records)
    SEQ_RESETS = 13  # sequence went backwards (exporter restart or reordering)
    NO_TEMPLATE_SETS = 14  # data sets that arrived before their template
    PENDING_DECODED_SETS = 15  # of those, decoded later when the template came
    PENDING_EXPIRED_SETS = 16  # of those, dropped after waiting too long or overflow
    ERR_SHORT_PACKET = 17  # shorter than its header
    ERR_BAD_VERSION = 18
    ERR_BAD_LENGTH = 19  # IPFIX length field disagrees with the datagram
    ERR_BAD_SET_LENGTH = 20  # set length < 4 or past the end of the packet
    ERR_BAD_SET_ID = 21  # reserved set ids (IPFIX 4..255, v9 2..255)
    ERR_BAD_TEMPLATE = 22  # template with 0 / too many fields, truncated, or zero record length
    ERR_TRUNCATED_RECORD = 23  # variable-length field running past its set
    ERR_COUNT_MISMATCH = 24  # v5 header count disagrees with the datagram length
    ERR_TEMPLATE_TABLE_FULL = 25
    PADDING_BYTES = 26  # trailing bytes in sets that do not make a record
    ERR_STREAM_TABLE_FULL = 27  # packets of a new source id refused: too many source ids


N_STATS = len(Stat)

# v5 records described as a built-in template: (element id, length); id 0 = padding
V5_FIELDS = (
    (8, 4), (12, 4), (15, 4), (10, 2), (14, 2), (2, 4), (1, 4), (22, 4), (21, 4),
    (7, 2), (11, 2), (0, 1), (6, 1), (4, 1), (5, 1), (16, 2), (17, 2), (9, 1), (13, 1), (0, 2),
)  # fmt: skip

# NetFlow v1 records (48 bytes): like v5 without AS numbers and masks
V1_FIELDS = (
    (8, 4), (12, 4), (15, 4), (10, 2), (14, 2), (2, 4), (1, 4), (22, 4), (21, 4),
    (7, 2), (11, 2), (0, 2), (4, 1), (5, 1), (6, 1), (0, 7),
)  # fmt: skip

_R = REGISTRY
C_DEV_IP = _R.column("dev_ip")
C_DEV_IP6 = _R["dev_ip6"].column6
C_DEV_ID = _R.column("dev_id")
C_RATE = _R.column("sampling_rate")
C_RECV = _R.column("recv_time_ns")
C_TSTART = _R.column("time_start_ms")
C_TEND = _R.column("time_end_ms")
C_EXP = _R.column("exporter_index")
C_TID = _R.column("template_id")
C_KIND = _R.column("record_kind")
C_SLOT = _R.column("template_slot")
C_OFF = _R.column("record_offset")
C_VER = _R.column("version")
VIRTUAL_COLUMNS = np.array(
    [C_DEV_IP, C_DEV_ID, C_RATE, C_RECV, C_TSTART, C_TEND, C_EXP, C_TID, C_KIND, C_SLOT, C_OFF, C_VER],
    dtype=np.int64,
)

FT_UNSIGNED = int(FieldType.UNSIGNED)
FT_SIGNED = int(FieldType.SIGNED)
FT_IPV4 = int(FieldType.IPV4)
FT_IPV6 = int(FieldType.IPV6)
FT_MAC = int(FieldType.MAC)
FT_STRING = int(FieldType.STRING)
FT_BYTES = int(FieldType.BYTES)
FT_FLOAT = int(FieldType.FLOAT)


@njit(cache=True, nogil=True, inline="always")
def dget(d, key):
    """d[key], or -1 when absent (typed-dict get without an Optional type)."""
    if key in d:
        return d[key]
    return -1


@njit(cache=True, nogil=True, inline="always")
def be(buf, pos, n):
    """Big-endian unsigned integer of n (0..8) bytes at pos."""
    if n == 4:
        return (
            (np.uint64(buf[pos]) << np.uint64(24))
            | (np.uint64(buf[pos + 1]) << np.uint64(16))
            | (np.uint64(buf[pos + 2]) << np.uint64(8))
            | np.uint64(buf[pos + 3])
        )
    if n == 2:
        return (np.uint64(buf[pos]) << np.uint64(8)) | np.uint64(buf[pos + 1])
    if n == 1:
        return np.uint64(buf[pos])
    v = np.uint64(0)
    for i in range(n):
        v = (v << np.uint64(8)) | np.uint64(buf[pos + i])
    return v


@njit(cache=True, nogil=True, inline="always")
def be16(buf, pos):
    return (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])


@njit(cache=True, nogil=True, inline="always")
def be32(buf, pos):
    return (
        (np.int64(buf[pos]) << 24)
        | (np.int64(buf[pos + 1]) << 16)
        | (np.int64(buf[pos + 2]) << 8)
        | np.int64(buf[pos + 3])
    )


@njit(cache=True, nogil=True)
def field_action(pen, ie, length, iana_col, ent_keys, ent_cols, col_ftype, col6):
    """Registry column, v6 column and action for one template field."""
    col = -1
    if pen == 0:
        col = iana_col[ie]
    else:
        key = (pen << 16) | ie
        i = np.searchsorted(ent_keys, key)
        if i < ent_keys.shape[0] and ent_keys[i] == key:
            col = ent_cols[i]
    if col < 0:
        return -1, -1, A_SKIP
    ft = col_ftype[col]
    if ft == FT_IPV6:
        if length == 16:
            return col, col6[col], A_V6
        return col, -1, A_REF
    if ft == FT_STRING or ft == FT_BYTES:
        return col, -1, A_REF
    if length == 65535 or length > 8:
        return col, -1, A_REF
    if ft == FT_FLOAT:
        if length == 4 or length == 8:
            return col, -1, A_FLOAT
        return col, -1, A_REF
    if ft == FT_SIGNED:
        return col, -1, A_SIGNED
    return col, -1, A_UINT


@njit(cache=True, nogil=True)
def time_unit(ie):
    """Absolute-time unit of an element id and whether it is a start (1) or end (2)."""
    if ie == 150:
        return TU_SEC, 1
    if ie == 151:
        return TU_SEC, 2
    if ie == 152:
        return TU_MS, 1
    if ie == 153:
        return TU_MS, 2
    if ie == 154 or ie == 156:
        return TU_NTP, 1
    if ie == 155 or ie == 157:
        return TU_NTP, 2
    if ie == 158:
        return TU_DELTA_US, 1
    if ie == 159:
        return TU_DELTA_US, 2
    return TU_NONE, 0


@njit(cache=True, nogil=True)
def abs_ms(value, unit, export_ms):
    """An absolute time field as ms since the epoch."""
    if unit == TU_SEC:
        return np.int64(value) * 1000
    if unit == TU_MS:
        return np.int64(value)
    if unit == TU_NTP:
        sec = np.int64(value >> np.uint64(32))
        frac = np.int64(value & np.uint64(0xFFFFFFFF))
        if sec < NTP_EPOCH_OFFSET:
            return np.int64(0)
        return (sec - NTP_EPOCH_OFFSET) * 1000 + ((frac * 1000) >> 32)
    if unit == TU_DELTA_US:
        return export_ms - np.int64(value) // 1000
    return np.int64(0)


@njit(cache=True, nogil=True)
def exporter_index(exp_dict, exp_addr, meta, hi, lo):
    """Index of an exporter address, registering it when new (-1 if the table is full)."""
    key = (hi, lo)
    idx = dget(exp_dict, key)
    if idx >= 0:
        return idx
    n = meta[M_NEXP]
    if n >= exp_addr.shape[0]:
        return -1
    exp_dict[key] = n
    exp_addr[n, 0] = hi
    exp_addr[n, 1] = lo
    meta[M_NEXP] = n + 1
    return n


@njit(cache=True, nogil=True)
def stream_index(stream_dict, st, meta, exp, version, sid):
    """Index of the stream (exporter, version, source id), created when new."""
    vcode = 0 if version == 5 else (1 if version == 9 else (2 if version == 10 else 3))
    key = (np.int64(exp) << 34) | (np.int64(vcode) << 32) | np.int64(sid)
    idx = dget(stream_dict, key)
    if idx >= 0:
        return idx
    n = meta[M_NSTREAM]
    if n >= st.shape[0]:
        return -1
    stream_dict[key] = n
    st[n, S_EXP] = exp
    st[n, S_VER] = version
    st[n, S_SID] = sid
    st[n, S_HAVE_SEQ] = 0
    st[n, S_NEXT_SEQ] = 0
    st[n, S_INIT_MS] = -1
    st[n, S_RATE] = 0
    st[n, S_PACKETS] = 0
    meta[M_NSTREAM] = n + 1
    return n


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
        if ln == 65535:
            minlen += 1
            hasvar = 1
        else:
            minlen += ln
        if tf[fs + k, F_PEN] != 0:
            continue
        ie = tf[fs + k, F_IE]
        if ln == 65535:
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
        if ipfix and ie & 0x8000:
            if p + 4 > end:
                return False
            pen = be32(buf, p)
            p += 4
            ie &= 0x7FFF
        if tf[fs + k, F_IE] != ie or tf[fs + k, F_LEN] != ln or tf[fs + k, F_PEN] != pen:
            return False
    return True


@njit(cache=True, nogil=True)
def store_template(buf, pos, end, nf, nscope, kind, ipfix, version, stream, tid, exp,
                   tmpl_dict, tm, tf, meta, stats, reg_iana, reg_ent_keys, reg_ent_cols,
                   reg_ftype, reg_col6, reg_counter):
    """Parse one template definition at pos (after its header); return the position after it.

    Returns -1 when the definition runs past `end` (the set is then abandoned).
    """
    # size check first: field specifiers must fit
    p = pos
    for k in range(nf):
        if p + 4 > end:
            return -1
        ie = be16(buf, p)
        p += 4
        if ipfix and ie & 0x8000:
            p += 4
            if p > end:
                return -1
    after = p
    key = (np.int64(stream) << 16) | np.int64(tid)
    slot = dget(tmpl_dict, key)
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
        tmpl_dict[key] = slot
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
        if ipfix and ie & 0x8000:
            pen = be32(buf, p)
            p += 4
            ie &= 0x7FFF
        col, c6, act = field_action(pen, ie, ln, reg_iana, reg_ent_keys, reg_ent_cols, reg_ftype, reg_col6)
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
        tf[fs + k, F_COUNTER] = 1 if (col >= 0 and reg_counter[col]) else 0
        reclen += 1 if ln == 65535 else ln
    tm[slot, T_STREAM] = stream
    tm[slot, T_TID] = tid
    tm[slot, T_NF] = nf
    tm[slot, T_FS] = fs
    tm[slot, T_KIND] = kind
    tm[slot, T_NSCOPE] = nscope
    tm[slot, T_VERSION] = version
    tm[slot, T_VALID] = 1 if reclen > 0 else 0
    if reclen == 0:
        stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
    finish_template(tm, tf, slot)
    meta[M_TMPL_CHANGES] += 1
    return after


@njit(cache=True, nogil=True)
def withdraw(tmpl_dict, tm, meta, stream, tid, set_kind):
    """IPFIX template withdrawal: one id, or every template of a kind (tid = set id 2/3)."""
    if tid == 2 or tid == 3:
        for slot in range(meta[M_NTMPL]):
            if tm[slot, T_STREAM] == stream and tm[slot, T_VALID] == 1:
                if (tid == 2 and tm[slot, T_KIND] == 1) or (tid == 3 and tm[slot, T_KIND] == 2):
                    tm[slot, T_VALID] = 0
        meta[M_TMPL_CHANGES] += 1
        return
    key = (np.int64(stream) << 16) | np.int64(tid)
    slot = dget(tmpl_dict, key)
    if slot >= 0:
        tm[slot, T_VALID] = 0
        meta[M_TMPL_CHANGES] += 1


@njit(cache=True, nogil=True)
def parse_template_set(buf, pos, end, set_id, ipfix, version, stream, exp, tmpl_dict, tm, tf,
                       meta, stats, reg_iana, reg_ent_keys, reg_ent_cols, reg_ftype, reg_col6,
                       reg_counter):
    """Walk a template or options template set."""
    options = (set_id == 1) or (set_id == 3)
    while pos + 4 <= end:
        tid = be16(buf, pos)
        if options and not ipfix:
            if pos + 6 > end:
                break
            if tid == 0:
                break  # padding at the end of the set
            scope_len = be16(buf, pos + 2)
            opt_len = be16(buf, pos + 4)
            pos += 6
            nscope = scope_len // 4
            nf = nscope + opt_len // 4
            if tid < 256 or nf == 0 or nf > MAX_TEMPLATE_FIELDS or (scope_len % 4) or (opt_len % 4):
                stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
                return
            # v9 option scope fields: (scope type, length); store the scope type as its id
            after = store_template(buf, pos, end, nf, nscope, 2, False, version, stream, tid, exp,
                                   tmpl_dict, tm, tf, meta, stats, reg_iana, reg_ent_keys,
                                   reg_ent_cols, reg_ftype, reg_col6, reg_counter)
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
                withdraw(tmpl_dict, tm, meta, stream, tid, set_id)
                stats[exp, Stat.TEMPLATE_WITHDRAWALS] += 1
                continue
            if tid == 0:  # padding
                break
            stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
            return
        if tid < 256 or nf > MAX_TEMPLATE_FIELDS:
            stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
            return
        after = store_template(buf, pos, end, nf, nscope, 2 if options else 1, ipfix, version,
                               stream, tid, exp, tmpl_dict, tm, tf, meta, stats, reg_iana,
                               reg_ent_keys, reg_ent_cols, reg_ftype, reg_col6, reg_counter)
        if after < 0:
            stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
            return
        if options:
            stats[exp, Stat.OPTIONS_TEMPLATES] += 1
        else:
            stats[exp, Stat.TEMPLATES] += 1
        pos = after


@njit(cache=True, nogil=True)
def learn_options(buf, rec_pos, frel, flen, tm, tf, slot, st, stream, samp_dict, meta):
    """Read sampling parameters and the exporter's init time out of an options record."""
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
    if dget(samp_dict, key) != rate:
        samp_dict[key] = rate
        meta[M_RATE_CHANGES] += 1
    if sampler < 0:
        st[stream, S_RATE] = rate


@njit(cache=True, nogil=True)
def record_rate(exp, stream, sid_dev, sampler, rec_interval, st, samp_dict, override):
    """The sampling rate of one record: devices.conf, then the record, then options, else 1."""
    r = dget(override, (np.int64(exp) << 33) | (np.int64(sid_dev) & 0xFFFFFFFF))
    if r >= 0:
        return r
    r = dget(override, (np.int64(exp) << 33) | (np.int64(1) << 32))
    if r >= 0:
        return r
    if rec_interval > 0:
        return rec_interval
    if sampler >= 0:
        r = dget(samp_dict, (np.int64(stream) << 32) | (sampler & 0xFFFFFFFF))
        if r > 0:
            return r
    if st[stream, S_RATE] > 0:
        return st[stream, S_RATE]
    return np.int64(1)


@njit(cache=True, nogil=True)
def fill_constants(out, out6, r0, r1, dev_ip4, dev_hi, dev_lo, dev_id, recv_ns, exp, tid, kind,
                   slot, version):
    """Virtual columns that are the same for every record of a set, filled as slices."""
    if r1 <= r0:
        return
    out[C_DEV_IP, r0:r1] = np.uint64(dev_ip4)
    out6[C_DEV_IP6, 0, r0:r1] = dev_hi
    out6[C_DEV_IP6, 1, r0:r1] = dev_lo
    out[C_DEV_ID, r0:r1] = np.uint64(dev_id)
    out[C_RECV, r0:r1] = np.uint64(recv_ns)
    out[C_EXP, r0:r1] = np.uint64(exp)
    out[C_TID, r0:r1] = np.uint64(tid)
    out[C_KIND, r0:r1] = np.uint64(0 if version < 9 else kind)
    out[C_SLOT, r0:r1] = np.uint64(slot)
    out[C_VER, r0:r1] = np.uint64(version)


@njit(cache=True, nogil=True)
def decode_set(buf, pkt_off, set_off, rec_start, end, slot, exp, stream, dev_id, version,
               hdr_unix_ms, sysuptime, recv_ns, tm, tf, st, samp_dict, override, out, out6,
               present, nrec_in, emit_options, apply_sampling, stats, meta, frel, flen, plan,
               dev_ip4, dev_hi, dev_lo):
    """Decode the records of one data set with the template in slot.

    Returns (records written, position reached, full flag). When the output is full the
    position is where the next record starts, so the caller can resume there.
    """
    nrec = nrec_in
    cap = out.shape[1]
    fs = tm[slot, T_FS]
    nf = tm[slot, T_NF]
    minlen = tm[slot, T_MINLEN]
    kind = tm[slot, T_KIND]
    tid = tm[slot, T_TID]
    fixed = tm[slot, T_HAS_VAR] == 0
    emit = kind == 1 or emit_options
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
                if ln == 65535:
                    if pos >= end:
                        ok = False
                        break
                    ln = np.int64(buf[pos])
                    pos += 1
                    if ln == 255:
                        if pos + 2 > end:
                            ok = False
                            break
                        ln = be16(buf, pos)
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
        if kind == 2:
            stats[exp, Stat.OPTIONS_RECORDS] += 1
            learn_options(buf, rec_pos, frel, flen, tm, tf, slot, st, stream, samp_dict, meta)
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
                out[c, row] = be(buf, p, ln)
            elif act == A_V6:
                out6[c, 0, row] = be(buf, p, 8)
                out6[c, 1, row] = be(buf, p + 8, 8)
            elif act == A_REF:
                out[c, row] = (np.uint64(pkt_off + p) << np.uint64(16)) | np.uint64(ln)
            elif act == A_SIGNED:
                v = be(buf, p, ln)
                if ln < 8 and ln > 0 and (v >> np.uint64(8 * ln - 1)) & np.uint64(1):
                    v |= ~np.uint64(0) << np.uint64(8 * ln)
                out[c, row] = v
            elif act == A_FLOAT:
                if ln == 8:
                    out[c, row] = be(buf, p, 8)
                else:
                    f32 = np.array([np.uint32(be(buf, p, 4))]).view(np.float32)[0]
                    out[c, row] = np.array([np.float64(f32)]).view(np.uint64)[0]
        # sampling
        sampler = np.int64(-1)
        k = tm[slot, T_SAMPID_F]
        if k >= 0 and flen[k] <= 8:
            sampler = np.int64(be(buf, rec_pos + frel[k], flen[k]) & np.uint64(0xFFFFFFFF))
        rec_interval = np.int64(0)
        k = tm[slot, T_SAMPINT_F]
        if k >= 0 and flen[k] <= 8:
            rec_interval = np.int64(be(buf, rec_pos + frel[k], flen[k]) & np.uint64(0xFFFFFFFF))
        if sampler == last_sampler and rec_interval == last_interval:
            rate = last_rate
        else:
            rate = record_rate(exp, stream, dev_id, sampler, rec_interval, st, samp_dict, override)
            last_sampler, last_interval, last_rate = sampler, rec_interval, rate
        if apply_sampling and rate != 1 and kind == 1:
            for k in range(nf):
                if tf[fs + k, F_COUNTER] == 1 and tf[fs + k, F_ACT] == A_UINT:
                    c = tf[fs + k, F_COL]
                    out[c, row] = out[c, row] * np.uint64(rate)
        # times
        t_start, t_end = record_times(buf, rec_pos, frel, flen, tm, slot, st, stream, hdr_unix_ms, sysuptime)
        out[C_RATE, row] = np.uint64(rate)
        out[C_TSTART, row] = np.uint64(t_start)
        out[C_TEND, row] = np.uint64(t_end)
        out[C_OFF, row] = np.uint64(pkt_off + rec_pos)
    if emit:
        fill_constants(out, out6, nrec_in, nrec, dev_ip4, dev_hi, dev_lo, dev_id, recv_ns, exp, tid,
                       kind, slot, version)
    stats[exp, Stat.RECORDS] += records
    tm[slot, T_RECORDS] += nrec - nrec_in
    if full:
        return nrec - nrec_in, pos, True
    if pos < end:
        stats[exp, Stat.PADDING_BYTES] += end - pos
    return nrec - nrec_in, end, False


@njit(cache=True, nogil=True)
def uptime_ms(up, sysuptime, hdr_unix_ms, boot):
    """An uptime-relative time as ms since the epoch (32-bit uptime wrap handled)."""
    if sysuptime >= 0:
        d = (sysuptime - up) & 0xFFFFFFFF
        if d >= 0x80000000:
            d -= 0x100000000
        return hdr_unix_ms - d
    return boot + up


@njit(cache=True, nogil=True)
def record_times(buf, rec_pos, frel, flen, tm, slot, st, stream, hdr_unix_ms, sysuptime):
    """Flow start and end of one record in ms since the epoch, from any time field it has."""
    t_start = np.int64(-1)
    t_end = np.int64(-1)
    k = tm[slot, T_START_F]
    if k >= 0 and flen[k] <= 8:
        t_start = abs_ms(be(buf, rec_pos + frel[k], flen[k]), tm[slot, T_START_U], hdr_unix_ms)
    k = tm[slot, T_END_F]
    if k >= 0 and flen[k] <= 8:
        t_end = abs_ms(be(buf, rec_pos + frel[k], flen[k]), tm[slot, T_END_U], hdr_unix_ms)
    kf = tm[slot, T_FUPT_F]
    kl = tm[slot, T_LUPT_F]
    if (t_start < 0 and kf >= 0) or (t_end < 0 and kl >= 0):
        boot = np.int64(-1)
        if sysuptime >= 0:
            boot = hdr_unix_ms - sysuptime
        elif st[stream, S_INIT_MS] > 0:
            boot = st[stream, S_INIT_MS]
        elif kl >= 0 and flen[kl] <= 8:
            # IPFIX with uptime times and no init time known: take the flow end as the
            # export time (the exporter just expired it)
            boot = hdr_unix_ms - np.int64(be(buf, rec_pos + frel[kl], flen[kl]))
        if boot >= 0:
            if t_start < 0 and kf >= 0 and flen[kf] <= 8:
                up = np.int64(be(buf, rec_pos + frel[kf], flen[kf]))
                t_start = uptime_ms(up, sysuptime, hdr_unix_ms, boot)
            if t_end < 0 and kl >= 0 and flen[kl] <= 8:
                up = np.int64(be(buf, rec_pos + frel[kl], flen[kl]))
                t_end = uptime_ms(up, sysuptime, hdr_unix_ms, boot)
    k = tm[slot, T_DUR_F]
    if k >= 0 and flen[k] <= 8:
        dur = np.int64(be(buf, rec_pos + frel[k], flen[k]))
        if t_start < 0 and t_end >= 0:
            t_start = t_end - dur
        elif t_end < 0 and t_start >= 0:
            t_end = t_start + dur
    if t_end < 0:
        t_end = t_start if t_start >= 0 else hdr_unix_ms
    if t_start < 0:
        t_start = t_end
    return t_start, t_end


@njit(cache=True, nogil=True)
def check_sequence(st, stream, stats, exp, seq, advance, lost_stat):
    """Count the gap between the expected and the received sequence number.

    A jump forward is loss (packets or flows per version); a jump back is an exporter
    restart or reordering. The next expected number is seq + advance.
    """
    if st[stream, S_HAVE_SEQ] == 1 and seq != st[stream, S_NEXT_SEQ]:
        gap = (seq - st[stream, S_NEXT_SEQ]) & 0xFFFFFFFF
        if gap < 0x80000000:
            stats[exp, lost_stat] += gap
        else:
            stats[exp, Stat.SEQ_RESETS] += 1
    st[stream, S_HAVE_SEQ] = 1
    st[stream, S_NEXT_SEQ] = (seq + advance) & 0xFFFFFFFF


@njit(cache=True, nogil=True)
def decode_packets(buf, offs, lens, ahi, alo, recv, replay, p0, s0, r0,
                   reg_iana, reg_ent_keys, reg_ent_cols, reg_ftype, reg_col6, reg_counter,
                   exp_dict, exp_addr, stream_dict, st, tmpl_dict, tm, tf, samp_dict, override,
                   meta, stats, out, out6, present, orph, emit_options, apply_sampling, v5_slot,
                   min_free_fields, min_free_templates):
    """Decode packets p0.. of a batch into out/out6.

    (p0, s0, r0): packet index, set offset in the packet (0 = start with the header) and
    record offset (0 = start of the set) to resume at.

    Returns (status, packet, set offset, record offset, records written).
    """
    nrec = 0
    n = offs.shape[0]
    fpos = np.empty(MAX_TEMPLATE_FIELDS + 32, dtype=np.int64)
    flen = np.empty(MAX_TEMPLATE_FIELDS + 32, dtype=np.int64)
    plan = np.empty((MAX_TEMPLATE_FIELDS + 32, 3), dtype=np.int64)
    meta[M_NORPH] = 0
    for p in range(p0, n):
        start_set = s0 if p == p0 else 0
        start_rec = r0 if p == p0 else 0
        if start_set == 0:
            lim = meta[M_LIMITS]
            if ((lim & L_FIELDS == 0 and tf.shape[0] - meta[M_NFLD] < min_free_fields)
                    or (lim & L_TEMPLATES == 0 and tm.shape[0] - meta[M_NTMPL] < min_free_templates)
                    or (lim & L_STREAMS == 0 and meta[M_NSTREAM] + 1 >= st.shape[0])
                    or (lim & L_EXPORTERS == 0 and meta[M_NEXP] + 1 >= exp_addr.shape[0])):
                return ST_GROW, p, 0, 0, nrec
            if meta[M_NORPH] + 64 > orph.shape[0]:
                return ST_ORPH_FULL, p, 0, 0, nrec
        base = offs[p]
        plen = lens[p]
        hi = ahi[p]
        lo = alo[p]
        exp = exporter_index(exp_dict, exp_addr, meta, hi, lo)
        if exp < 0:
            if start_set == 0:
                meta[M_EXP_REFUSED] += 1
            continue
        dev_ip4 = np.int64(lo & np.uint64(0xFFFFFFFF)) if (hi == 0 and (lo >> np.uint64(32)) == 0xFFFF) else np.int64(0)
        pkt = buf[base:base + plen]
        counting = start_set == 0 and replay[p] == 0
        if counting:
            stats[exp, Stat.PACKETS] += 1
            stats[exp, Stat.BYTES] += plen
        if plen < 4:
            if counting:
                stats[exp, Stat.ERR_SHORT_PACKET] += 1
            continue
        version = be16(pkt, 0)
        rnow = recv[p]
        if version == 1 or version == 5:
            # fixed 48-byte records described by built-in templates (v5 slot, v1 the next)
            hlen = 16 if version == 1 else 24
            if plen < hlen:
                if counting:
                    stats[exp, Stat.ERR_SHORT_PACKET] += 1
                continue
            count = be16(pkt, 2)
            sysup = be32(pkt, 4)
            unix_ms = be32(pkt, 8) * 1000 + be32(pkt, 12) // 1000000
            sid = 0
            eid = 0
            if version == 5:
                eid = np.int64(pkt[21])
                sid = (np.int64(pkt[20]) << 8) | eid  # engine type and id
            stream = stream_index(stream_dict, st, meta, exp, version, sid)
            if stream < 0:
                if counting:
                    stats[exp, Stat.ERR_STREAM_TABLE_FULL] += 1
                continue
            avail = (plen - hlen) // 48
            nr = count if count < avail else avail
            if counting:
                stats[exp, Stat.V5_PACKETS] += 1
                if count != avail:
                    stats[exp, Stat.ERR_COUNT_MISMATCH] += 1
                if version == 5:
                    interval = be16(pkt, 22) & 0x3FFF
                    st[stream, S_RATE] = interval if interval > 1 else 1
                    # v5 sequence: flows sent before this packet
                    check_sequence(st, stream, stats, exp, be32(pkt, 16), count, Stat.LOST_FLOWS)
            rec0 = start_rec if start_rec > 0 else hlen
            slot = v5_slot if version == 5 else v5_slot + 1
            written, pos, full = decode_set(pkt, base, 0, rec0, hlen + nr * 48, slot, exp, stream, eid,
                                            version, unix_ms, sysup, rnow, tm, tf, st, samp_dict,
                                            override, out, out6, present, nrec, emit_options,
                                            apply_sampling, stats, meta, fpos, flen, plan, dev_ip4,
                                            hi, lo)
            nrec += written
            if full:
                return ST_OUT_FULL, p, 1, pos, nrec
            continue
        if version != 9 and version != 10:
            if counting:
                stats[exp, Stat.ERR_BAD_VERSION] += 1
            continue
        ipfix = version == 10
        hlen = 16 if ipfix else 20
        if plen < hlen:
            if counting:
                stats[exp, Stat.ERR_SHORT_PACKET] += 1
            continue
        if ipfix:
            mlen = be16(pkt, 2)
            export_ms = be32(pkt, 4) * 1000
            seq = be32(pkt, 8)
            sid = be32(pkt, 12)
            sysup = np.int64(-1)
            if mlen != plen:
                if counting:
                    stats[exp, Stat.ERR_BAD_LENGTH] += 1
                if mlen < 16:
                    continue
                if mlen > plen:
                    mlen = plen
            pend = mlen
        else:
            sysup = be32(pkt, 4)
            export_ms = be32(pkt, 8) * 1000
            seq = be32(pkt, 12)
            sid = be32(pkt, 16)
            pend = plen
        stream = stream_index(stream_dict, st, meta, exp, version, sid)
        if stream < 0:
            if counting:
                stats[exp, Stat.ERR_STREAM_TABLE_FULL] += 1
            continue
        if counting:
            stats[exp, Stat.IPFIX_PACKETS if ipfix else Stat.V9_PACKETS] += 1
            st[stream, S_PACKETS] += 1
            if not ipfix:
                # v9 sequence: packets sent before this one
                check_sequence(st, stream, stats, exp, seq, 1, Stat.LOST_PACKETS)
            elif st[stream, S_HAVE_SEQ] == 1 and seq != st[stream, S_NEXT_SEQ]:
                # IPFIX sequence: data records before this message; the next expected value
                # is known once the message has been walked (below)
                check_sequence(st, stream, stats, exp, seq, 0, Stat.LOST_FLOWS)
        # IPFIX sequence: count the data records of this message as we go
        data_records = meta[M_PARTIAL] if start_set > 0 else 0
        unknown_count = False
        pos = hlen if start_set == 0 else start_set
        first = True
        while pos + 4 <= pend:
            set_id = be16(pkt, pos)
            slen = be16(pkt, pos + 2)
            if slen < 4 or pos + slen > pend:
                if slen == 0 and set_id == 0 and not ipfix:
                    # zero padding after the last flowset (Cisco ACI, Palo Alto)
                    stats[exp, Stat.PADDING_BYTES] += pend - pos
                    break
                stats[exp, Stat.ERR_BAD_SET_LENGTH] += 1
                unknown_count = True
                break
            send = pos + slen
            if (ipfix and (set_id == 2 or set_id == 3)) or (not ipfix and (set_id == 0 or set_id == 1)):
                if start_set == 0 or not first:
                    parse_template_set(pkt, pos + 4, send, set_id, ipfix, version, stream, exp,
                                       tmpl_dict, tm, tf, meta, stats, reg_iana, reg_ent_keys,
                                       reg_ent_cols, reg_ftype, reg_col6, reg_counter)
            elif set_id >= 256:
                key = (np.int64(stream) << 16) | np.int64(set_id)
                slot = dget(tmpl_dict, key)
                if slot < 0 or tm[slot, T_VALID] != 1:
                    if slot >= 0 and tm[slot, T_NF] > 0 and tm[slot, T_MINLEN] == 0:
                        stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
                    else:
                        if replay[p] == 0:
                            stats[exp, Stat.NO_TEMPLATE_SETS] += 1
                        k = meta[M_NORPH]
                        if k < orph.shape[0]:
                            orph[k, 0] = p
                            orph[k, 1] = pos
                            orph[k, 2] = slen
                            orph[k, 3] = stream
                            meta[M_NORPH] = k + 1
                        elif replay[p] == 0:
                            # more sets without template in one datagram than we hold
                            stats[exp, Stat.PENDING_EXPIRED_SETS] += 1
                    unknown_count = True
                else:
                    if replay[p] == 1:
                        stats[exp, Stat.PENDING_DECODED_SETS] += 1
                    rstart = pos + 4
                    if first and start_rec > 0:
                        rstart = start_rec
                    before = stats[exp, Stat.RECORDS] + stats[exp, Stat.OPTIONS_RECORDS]
                    written, rpos, full = decode_set(pkt, base, pos, rstart, send, slot, exp, stream,
                                                     sid, version, export_ms, sysup, rnow, tm, tf,
                                                     st, samp_dict, override, out, out6, present,
                                                     nrec, emit_options, apply_sampling, stats,
                                                     meta, fpos, flen, plan, dev_ip4, hi, lo)
                    data_records += stats[exp, Stat.RECORDS] + stats[exp, Stat.OPTIONS_RECORDS] - before
                    nrec += written
                    if full:
                        meta[M_PARTIAL] = data_records
                        return ST_OUT_FULL, p, pos, rpos, nrec
            else:
                stats[exp, Stat.ERR_BAD_SET_ID] += 1
            first = False
            pos = send
        if ipfix and replay[p] == 0:
            if unknown_count:
                st[stream, S_HAVE_SEQ] = 0
            else:
                st[stream, S_HAVE_SEQ] = 1
                st[stream, S_NEXT_SEQ] = (seq + data_records) & 0xFFFFFFFF
    return ST_DONE, n, 0, 0, nrec


@njit(cache=True, nogil=True)
def clear_rows(out, out6, present, n):
    """Zero the used rows of the present columns so the block can be reused."""
    for c in range(out.shape[0]):
        if present[c]:
            out[c, :n] = 0
            present[c] = 0
    for c in range(out6.shape[0]):
        out6[c, 0, :n] = 0
        out6[c, 1, :n] = 0
