"""Flow start and end times from whichever time fields a template has (numba).

Exporters send absolute times (seconds, milliseconds, NTP, microsecond deltas), uptime
times (ms since the exporter booted: v5, v9, some IPFIX) or a duration; every record ends
up with ``time_start_ms`` and ``time_end_ms`` since the epoch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.decode._bytes import be
from appliance.collector.decode._tables import (
    NTP_EPOCH_OFFSET,
    S_INIT_MS,
    T_DUR_F,
    T_END_F,
    T_END_U,
    T_FUPT_F,
    T_LUPT_F,
    T_START_F,
    T_START_U,
    TU_DELTA_US,
    TU_MS,
    TU_NONE,
    TU_NTP,
    TU_SEC,
)


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
def uptime_ms(up, sysuptime, hdr_unix_ms, boot):
    """An uptime-relative time as ms since the epoch (32-bit uptime wrap handled)."""
    if sysuptime >= 0:
        d = (sysuptime - up) & 0xFFFFFFFF
        if d >= 0x80000000:
            d -= 0x100000000
        return hdr_unix_ms - d
    return boot + up


@njit(cache=True, nogil=True)
def record_times(buf, rec_pos, frel, flen, tm, st, slot, hdr):
    """Flow start and end of one record in ms since the epoch, from any time field it has.

    Called per record: it takes the arrays it reads, not their containers (`Tables`,
    `Scratch`), which would cost reference counting of every member on each call.
    """
    hdr_unix_ms = hdr.export_ms
    sysuptime = hdr.sysuptime
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
        elif st[hdr.stream, S_INIT_MS] > 0:
            boot = st[hdr.stream, S_INIT_MS]
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
