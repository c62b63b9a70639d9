"""The decoder's entry kernel: a whole `PacketBatch` → output columns (numba).

One call walks the batch datagram by datagram: it finds the exporter, counts the
datagram, and hands it to the v5/v1 (`_v5`) or v9/IPFIX (`_v9`) walker. It stops early
when the output is full, a table runs low (the Python side grows it) or the orphan list
is nearly full, and says where to resume.

Only this kernel takes the containers of `_tables` from Python. The per-datagram and
per-set functions it calls (`decode_v5`, `decode_v9`, `decode_set`) are ``inline="always"``:
numba reference-counts every array a function receives, on every call, and a container
holds many; inlined into this loop, that cost goes (called as functions they took 5-15 %
off the decode rate). The functions called per datagram, set or record from there
(`exporter_index`, `stream_index`, `record_times`, `record_rate`, `fill_constants`) take
the few arrays they read.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.decode._bytes import be16
from appliance.collector.decode._exporters import exporter_index
from appliance.collector.decode._tables import (
    L_EXPORTERS,
    L_FIELDS,
    L_STREAMS,
    L_TEMPLATES,
    M_EXP_REFUSED,
    M_LIMITS,
    M_NEXP,
    M_NFLD,
    M_NORPH,
    M_NSTREAM,
    M_NTMPL,
    MAX_TEMPLATE_FIELDS,
    ST_DONE,
    ST_GROW,
    ST_ORPH_FULL,
    ST_OUT_FULL,
    Datagram,
    Scratch,
    Stat,
    Tables,
)
from appliance.collector.decode._v5 import decode_v5
from appliance.collector.decode._v9 import decode_v9
from appliance.netflow.header import AT_COUNT, AT_VERSION, IPFIX, V1, V5, V9

_MIN_DATAGRAM = AT_COUNT + 2  # version and count (IPFIX: length)
_ORPHANS_PER_DATAGRAM = 64  # room kept in the orphan list before a datagram is started


@njit(cache=True, nogil=True, inline="always")
def tables_low(tables, settings):
    """A table (below its cap) has less room than one datagram may need."""
    meta = tables.meta
    lim = meta[M_LIMITS]
    return ((lim & L_FIELDS == 0 and tables.fields.shape[0] - meta[M_NFLD] < settings.min_free_fields)
            or (lim & L_TEMPLATES == 0 and tables.templates.shape[0] - meta[M_NTMPL] < settings.min_free_templates)
            or (lim & L_STREAMS == 0 and meta[M_NSTREAM] + 1 >= tables.streams.shape[0])
            or (lim & L_EXPORTERS == 0 and meta[M_NEXP] + 1 >= tables.exporters.shape[0]))


@njit(cache=True, nogil=True)
def decode_packets(packets, resume, reg, arrays, exporter_ids, stream_ids, template_ids, sampler_rates, overrides,
                   output, settings):
    """Decode the datagrams of a batch into `output`, from `resume` = (packet, set offset,
    record offset): (0, 0, 0) for a new batch, else what the previous call returned.

    `arrays` and the typed dicts after it are the parts of `Tables` (see `TableArrays`).
    Returns (status, packet, set offset, record offset, records written).
    """
    tables = Tables(exporter_ids, arrays.exporters, stream_ids, arrays.streams, template_ids, arrays.templates,
                    arrays.fields, sampler_rates, overrides, arrays.meta, arrays.stats)
    p0, s0, r0 = resume
    nrec = 0
    n = packets.offset.shape[0]
    scratch = Scratch(np.empty(MAX_TEMPLATE_FIELDS + 32, dtype=np.int64),
                      np.empty(MAX_TEMPLATE_FIELDS + 32, dtype=np.int64),
                      np.empty((MAX_TEMPLATE_FIELDS + 32, 3), dtype=np.int64))
    meta = tables.meta
    stats = tables.stats
    meta[M_NORPH] = 0
    for p in range(p0, n):
        start_set = s0 if p == p0 else 0
        start_rec = r0 if p == p0 else 0
        if start_set == 0:
            if tables_low(tables, settings):
                return ST_GROW, p, 0, 0, nrec
            if meta[M_NORPH] + _ORPHANS_PER_DATAGRAM > output.orphans.shape[0]:
                return ST_ORPH_FULL, p, 0, 0, nrec
        base = packets.offset[p]
        plen = packets.length[p]
        hi = packets.addr_hi[p]
        lo = packets.addr_lo[p]
        exp = exporter_index(exporter_ids, arrays.exporters, arrays.meta, hi, lo)
        if exp < 0:
            if start_set == 0:
                meta[M_EXP_REFUSED] += 1
            continue
        mapped_v4 = hi == 0 and (lo >> np.uint64(32)) == 0xFFFF  # ::ffff:a.b.c.d
        dev_ip4 = np.int64(lo & np.uint64(0xFFFFFFFF)) if mapped_v4 else np.int64(0)
        pkt = packets.buf[base : base + plen]
        replay = packets.replay[p] != 0
        counting = start_set == 0 and not replay
        if counting:
            stats[exp, Stat.PACKETS] += 1
            stats[exp, Stat.BYTES] += plen
        if plen < _MIN_DATAGRAM:
            if counting:
                stats[exp, Stat.ERR_SHORT_PACKET] += 1
            continue
        version = be16(pkt, AT_VERSION)
        dg = Datagram(p, base, exp, dev_ip4, hi, lo, packets.recv_ns[p], replay, counting)
        if version == V1 or version == V5:
            written, pos, full = decode_v5(pkt, version, dg, start_rec, nrec, tables, output, settings, scratch)
            nrec += written
            if full:
                return ST_OUT_FULL, p, 1, pos, nrec
        elif version == V9 or version == IPFIX:
            status, set_off, rec_off, written = decode_v9(pkt, version, dg, start_set, start_rec, nrec, tables,
                                                          output, settings, scratch, reg)
            nrec += written
            if status == ST_OUT_FULL:
                return ST_OUT_FULL, p, set_off, rec_off, nrec
        elif counting:
            stats[exp, Stat.ERR_BAD_VERSION] += 1
    return ST_DONE, n, 0, 0, nrec
