"""The exporter and stream tables: who sent a datagram, and its sequence numbers (numba).

A stream is one exporter + NetFlow version + source id (v9 source id, IPFIX observation
domain, v5 engine type and id); sequence numbers, sampling rates learned from headers and
the exporter's init time belong to it. The functions take the arrays they use: they run
once per datagram (and `Decoder` calls the first two from Python too).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.decode._bytes import dget
from appliance.collector.decode._tables import (
    M_NEXP,
    M_NSTREAM,
    S_EXP,
    S_HAVE_SEQ,
    S_INIT_MS,
    S_NEXT_SEQ,
    S_PACKETS,
    S_RATE,
    S_SID,
    S_VER,
    Stat,
)
from appliance.netflow.header import IPFIX, V5, V9


@njit(cache=True, nogil=True)
def exporter_index(exporter_ids, exporters, meta, hi, lo):
    """Index of an exporter address, registering it when new (-1 if the table is full)."""
    key = (hi, lo)
    idx = dget(exporter_ids, key)
    if idx >= 0:
        return idx
    n = meta[M_NEXP]
    if n >= exporters.shape[0]:
        return -1
    exporter_ids[key] = n
    exporters[n, 0] = hi
    exporters[n, 1] = lo
    meta[M_NEXP] = n + 1
    return n


@njit(cache=True, nogil=True)
def stream_index(stream_ids, st, meta, exp, version, sid):
    """Index of the stream (exporter, version, source id), created when new (-1 if full)."""
    vcode = 0 if version == V5 else (1 if version == V9 else (2 if version == IPFIX else 3))
    key = (np.int64(exp) << 34) | (np.int64(vcode) << 32) | np.int64(sid)
    idx = dget(stream_ids, key)
    if idx >= 0:
        return idx
    n = meta[M_NSTREAM]
    if n >= st.shape[0]:
        return -1
    stream_ids[key] = n
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


@njit(cache=True, nogil=True, inline="always")
def check_sequence(st, stats, stream, exp, seq, advance, lost_stat):
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
