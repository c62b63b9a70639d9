"""NetFlow v9 and IPFIX datagrams: header, then template, options template and data sets (numba).

Sets are walked by their lengths, never by the header's count. A data set whose template
is not known yet is noted in `Output.orphans` (the decoder keeps it and decodes it when
the template comes); IPFIX sequence numbers count the data records of each message.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.decode._bytes import be16, be32, dget
from appliance.collector.decode._exporters import check_sequence, stream_index
from appliance.collector.decode._records import decode_set
from appliance.collector.decode._tables import (
    M_NORPH,
    M_PARTIAL,
    S_HAVE_SEQ,
    S_NEXT_SEQ,
    S_PACKETS,
    ST_DONE,
    ST_OUT_FULL,
    T_MINLEN,
    T_NF,
    T_VALID,
    Header,
    Stat,
)
from appliance.collector.decode._templates import parse_template_set
from appliance.netflow.header import (
    IPFIX,
    IPFIX_AT_EXPORT_TIME,
    IPFIX_AT_LENGTH,
    IPFIX_AT_OBSERVATION_DOMAIN,
    IPFIX_AT_SEQUENCE,
    IPFIX_HEADER_SIZE,
    IPFIX_OPTIONS_TEMPLATE_SET_ID,
    IPFIX_TEMPLATE_SET_ID,
    MIN_DATA_SET_ID,
    SET_AT_LENGTH,
    SET_HEADER_SIZE,
    V9_AT_SEQUENCE,
    V9_AT_SOURCE_ID,
    V9_AT_SYS_UPTIME,
    V9_AT_UNIX_SECS,
    V9_HEADER_SIZE,
    V9_OPTIONS_TEMPLATE_SET_ID,
    V9_TEMPLATE_SET_ID,
)


@njit(cache=True, nogil=True, inline="always")
def decode_v9(pkt, version, dg, start_set, start_rec, nrec, tables, output, settings, scratch, reg):
    """Decode one v9 or IPFIX datagram, from (set offset, record offset) when resuming.

    Returns (ST_DONE or ST_OUT_FULL, set offset, record offset to resume at, records written).
    """
    stats = tables.stats
    st = tables.streams
    meta = tables.meta
    exp = dg.exporter
    counting = dg.count_stats
    plen = pkt.shape[0]
    ipfix = version == IPFIX
    hlen = IPFIX_HEADER_SIZE if ipfix else V9_HEADER_SIZE
    if plen < hlen:
        if counting:
            stats[exp, Stat.ERR_SHORT_PACKET] += 1
        return ST_DONE, 0, 0, 0
    if ipfix:
        mlen = be16(pkt, IPFIX_AT_LENGTH)
        export_ms = be32(pkt, IPFIX_AT_EXPORT_TIME) * 1000
        seq = be32(pkt, IPFIX_AT_SEQUENCE)
        sid = be32(pkt, IPFIX_AT_OBSERVATION_DOMAIN)
        sysup = np.int64(-1)
        if mlen != plen:
            if counting:
                stats[exp, Stat.ERR_BAD_LENGTH] += 1
            if mlen < IPFIX_HEADER_SIZE:
                return ST_DONE, 0, 0, 0
            mlen = min(mlen, plen)
        pend = mlen
    else:
        sysup = be32(pkt, V9_AT_SYS_UPTIME)
        export_ms = be32(pkt, V9_AT_UNIX_SECS) * 1000
        seq = be32(pkt, V9_AT_SEQUENCE)
        sid = be32(pkt, V9_AT_SOURCE_ID)
        pend = plen
    stream = stream_index(tables.stream_ids, tables.streams, tables.meta, exp, version, sid)
    if stream < 0:
        if counting:
            stats[exp, Stat.ERR_STREAM_TABLE_FULL] += 1
        return ST_DONE, 0, 0, 0
    if counting:
        stats[exp, Stat.IPFIX_PACKETS if ipfix else Stat.V9_PACKETS] += 1
        st[stream, S_PACKETS] += 1
        if not ipfix:
            # v9 sequence: packets sent before this one
            check_sequence(tables.streams, stats, stream, exp, seq, 1, Stat.LOST_PACKETS)
        elif st[stream, S_HAVE_SEQ] == 1 and seq != st[stream, S_NEXT_SEQ]:
            # IPFIX sequence: data records before this message; the next expected value
            # is known once the message has been walked (below)
            check_sequence(tables.streams, stats, stream, exp, seq, 0, Stat.LOST_FLOWS)
    hdr = Header(version, stream, sid, export_ms, sysup)
    template_set = IPFIX_TEMPLATE_SET_ID if ipfix else V9_TEMPLATE_SET_ID
    options_set = IPFIX_OPTIONS_TEMPLATE_SET_ID if ipfix else V9_OPTIONS_TEMPLATE_SET_ID
    orph = output.orphans
    written = 0
    # IPFIX sequence: count the data records of this message as we go
    data_records = meta[M_PARTIAL] if start_set > 0 else 0
    unknown_count = False
    pos = hlen if start_set == 0 else start_set
    first = True
    while pos + SET_HEADER_SIZE <= pend:
        set_id = be16(pkt, pos)
        slen = be16(pkt, pos + SET_AT_LENGTH)
        if slen < SET_HEADER_SIZE or pos + slen > pend:
            if slen == 0 and set_id == 0 and not ipfix:
                # zero padding after the last flowset (Cisco ACI, Palo Alto)
                stats[exp, Stat.PADDING_BYTES] += pend - pos
                break
            stats[exp, Stat.ERR_BAD_SET_LENGTH] += 1
            unknown_count = True
            break
        send = pos + slen
        if set_id == template_set or set_id == options_set:
            if start_set == 0 or not first:
                parse_template_set(pkt, pos + SET_HEADER_SIZE, send, set_id, hdr, exp, tables, reg)
        elif set_id >= MIN_DATA_SET_ID:
            tm = tables.templates
            key = (np.int64(stream) << 16) | np.int64(set_id)
            slot = dget(tables.template_ids, key)
            if slot < 0 or tm[slot, T_VALID] != 1:
                if slot >= 0 and tm[slot, T_NF] > 0 and tm[slot, T_MINLEN] == 0:
                    stats[exp, Stat.ERR_BAD_TEMPLATE] += 1
                else:
                    if not dg.replay:
                        stats[exp, Stat.NO_TEMPLATE_SETS] += 1
                    k = meta[M_NORPH]
                    if k < orph.shape[0]:
                        orph[k, 0] = dg.index
                        orph[k, 1] = pos
                        orph[k, 2] = slen
                        orph[k, 3] = stream
                        meta[M_NORPH] = k + 1
                    elif not dg.replay:
                        # more sets without template in one datagram than we hold
                        stats[exp, Stat.PENDING_EXPIRED_SETS] += 1
                unknown_count = True
            else:
                if dg.replay:
                    stats[exp, Stat.PENDING_DECODED_SETS] += 1
                rstart = pos + SET_HEADER_SIZE
                if first and start_rec > 0:
                    rstart = start_rec
                before = stats[exp, Stat.RECORDS] + stats[exp, Stat.OPTIONS_RECORDS]
                n, rpos, full = decode_set(pkt, dg, hdr, rstart, send, slot, nrec + written, tables,
                                           output, settings, scratch)
                data_records += stats[exp, Stat.RECORDS] + stats[exp, Stat.OPTIONS_RECORDS] - before
                written += n
                if full:
                    meta[M_PARTIAL] = data_records
                    return ST_OUT_FULL, pos, rpos, written
        else:
            stats[exp, Stat.ERR_BAD_SET_ID] += 1
        first = False
        pos = send
    if ipfix and not dg.replay:
        if unknown_count:
            st[stream, S_HAVE_SEQ] = 0
        else:
            st[stream, S_HAVE_SEQ] = 1
            st[stream, S_NEXT_SEQ] = (seq + data_records) & 0xFFFFFFFF
    return ST_DONE, 0, 0, written
