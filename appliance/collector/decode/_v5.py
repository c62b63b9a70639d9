"""NetFlow v5 and v1 datagrams: header, then fixed 48-byte records (numba).

The records are walked by `decode_set` with the built-in templates the decoder installs
for them (`Settings.v5_slot`, v1 in the slot after it); layouts come from `netflow.header`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.decode._bytes import be16, be32
from appliance.collector.decode._exporters import check_sequence, stream_index
from appliance.collector.decode._records import decode_set
from appliance.collector.decode._tables import S_RATE, Header, Stat
from appliance.netflow.header import (
    AT_COUNT,
    V1_HEADER_SIZE,
    V5,
    V5_AT_ENGINE_ID,
    V5_AT_ENGINE_TYPE,
    V5_AT_FLOW_SEQUENCE,
    V5_AT_SAMPLING,
    V5_AT_SYS_UPTIME,
    V5_AT_UNIX_NSECS,
    V5_AT_UNIX_SECS,
    V5_HEADER_SIZE,
    V5_RECORD_SIZE,
    V5_SAMPLING_INTERVAL_MASK,
)


@njit(cache=True, nogil=True, inline="always")
def decode_v5(pkt, version, dg, start_rec, nrec, tables, output, settings, scratch):
    """Decode one v5 or v1 datagram (from record offset `start_rec` when resuming, else 0).

    Returns (records written, position reached, full flag) as `decode_set`.
    """
    stats = tables.stats
    exp = dg.exporter
    counting = dg.count_stats
    plen = pkt.shape[0]
    hlen = V5_HEADER_SIZE if version == V5 else V1_HEADER_SIZE
    if plen < hlen:
        if counting:
            stats[exp, Stat.ERR_SHORT_PACKET] += 1
        return 0, 0, False
    count = be16(pkt, AT_COUNT)
    sysup = be32(pkt, V5_AT_SYS_UPTIME)  # v1 headers are the first 16 bytes of a v5 header
    unix_ms = be32(pkt, V5_AT_UNIX_SECS) * 1000 + be32(pkt, V5_AT_UNIX_NSECS) // 1000000
    sid = 0
    eid = 0
    if version == V5:
        eid = np.int64(pkt[V5_AT_ENGINE_ID])
        sid = (np.int64(pkt[V5_AT_ENGINE_TYPE]) << 8) | eid  # engine type and id
    stream = stream_index(tables.stream_ids, tables.streams, tables.meta, exp, version, sid)
    if stream < 0:
        if counting:
            stats[exp, Stat.ERR_STREAM_TABLE_FULL] += 1
        return 0, 0, False
    avail = (plen - hlen) // V5_RECORD_SIZE
    nr = min(avail, count)
    if counting:
        stats[exp, Stat.V5_PACKETS] += 1
        if count != avail:
            stats[exp, Stat.ERR_COUNT_MISMATCH] += 1
        if version == V5:
            interval = be16(pkt, V5_AT_SAMPLING) & V5_SAMPLING_INTERVAL_MASK
            tables.streams[stream, S_RATE] = max(1, interval)
            # v5 sequence: flows sent before this packet
            check_sequence(tables.streams, stats, stream, exp, be32(pkt, V5_AT_FLOW_SEQUENCE), count, Stat.LOST_FLOWS)
    rec0 = start_rec if start_rec > 0 else hlen
    slot = settings.v5_slot if version == V5 else settings.v5_slot + 1
    hdr = Header(version, stream, eid, unix_ms, sysup)
    return decode_set(pkt, dg, hdr, rec0, hlen + nr * V5_RECORD_SIZE, slot, nrec, tables, output, settings,
                      scratch)
