"""Ended flows straight to v9/IPFIX datagrams in numba: the probe's fast encoding path.

The generic encoders (`appliance.netflow.encoder`) take registry columns; building those
columns from the flow records and packing them cost about 1.6 µs per flow, most of the
probe's time in a spoofed-source flood. Here each data template is compiled once into a
plan (per field: what to read from the FLOW_DTYPE record, how to turn it into the field),
`_pack` writes the records from the raw bytes of the flow records, and `_frame` cuts them
into datagrams with headers and template sets. The result is byte for byte what the generic
encoder would send for the same flows at the same time (the unit tests check that), and the
encoder's counters (sequence numbers, template refresh) are advanced as if it had sent them,
so options data sent through it stay in the same sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from appliance.netflow.encoder import IPFIXEncoder, Template, V9Encoder
from appliance.probe.flowtable import FLOW_DTYPE

__all__ = ["FlowPlan", "encode_datagrams", "plan_for", "raw_flows"]

# What a field is made of (op codes of the plan).
OP_UINT = 0  # little-endian unsigned of `size` bytes at `offset`, clamped to the field
OP_RAW = 1  # bytes copied as they are (addresses, MACs: already in network order)
OP_TCP_FLAGS = 2  # the low 8 bits of the 64-bit OR of the flags
OP_ICMP = 3  # ICMP type << 8 | code (kept in dport) for ICMP/ICMPv6 flows, else 0
OP_UPTIME_MS = 4  # CLOCK_MONOTONIC ns → ms since the exporter's boot, 32 bits (v9)
OP_EPOCH_MS = 5  # CLOCK_MONOTONIC ns → ms since the epoch (IPFIX)
OP_MPLS_LABEL = 6  # label << 4 | exp << 1 | bottom: the top entry without its TTL
OP_MPLS_TTL = 7
OP_DIRECTION = 8  # from the per-flow direction array (0 ingress, 1 egress)
OP_CONST = 9  # the plan's constant (sampler / selector id)

_KEY = 0
_VAL = FLOW_DTYPE.fields["val"][1]
_REASON = FLOW_DTYPE.fields["end_reason"][1]


def _where(part: str, name: str) -> tuple[int, int]:
    base = _KEY if part == "key" else _VAL
    dt, off = FLOW_DTYPE[part].fields[name][:2]
    return base + off, dt.itemsize


# registry name → (op, offset into the FLOW_DTYPE record, size there)
_SOURCES: dict[str, tuple[int, int, int]] = {
    "src_addr": (OP_RAW, *_where("key", "src")),
    "dst_addr": (OP_RAW, *_where("key", "dst")),
    "src_addr6": (OP_RAW, *_where("key", "src")),
    "dst_addr6": (OP_RAW, *_where("key", "dst")),
    "src_port": (OP_UINT, *_where("key", "sport")),
    "dst_port": (OP_UINT, *_where("key", "dport")),
    "proto": (OP_UINT, *_where("key", "proto")),
    "tos": (OP_UINT, *_where("key", "tos")),
    "tcp_flags": (OP_TCP_FLAGS, *_where("val", "tcp_flags")),
    "in_if": (OP_UINT, *_where("key", "ifindex")),
    "packets": (OP_UINT, *_where("val", "packets")),
    "bytes": (OP_UINT, *_where("val", "bytes")),
    "first_switched": (OP_UPTIME_MS, *_where("val", "first_ns")),
    "last_switched": (OP_UPTIME_MS, *_where("val", "last_ns")),
    "flow_start_ms": (OP_EPOCH_MS, *_where("val", "first_ns")),
    "flow_end_ms": (OP_EPOCH_MS, *_where("val", "last_ns")),
    "min_ttl": (OP_UINT, *_where("val", "min_ttl")),
    "max_ttl": (OP_UINT, *_where("val", "max_ttl")),
    "icmp_type": (OP_ICMP, *_where("key", "dport")),
    "icmp_type6": (OP_ICMP, *_where("key", "dport")),
    "ip_version": (OP_UINT, *_where("key", "ipver")),
    "src_vlan": (OP_UINT, *_where("key", "vlan")),
    "dot1q_vlan": (OP_UINT, *_where("key", "vlan")),
    "dot1q_customer_vlan": (OP_UINT, *_where("val", "inner_vlan")),
    "src_mac": (OP_RAW, *_where("val", "src_mac")),
    "dst_mac": (OP_RAW, *_where("val", "dst_mac")),
    "flow_end_reason": (OP_UINT, _REASON, 1),
    "flow_label6": (OP_UINT, *_where("val", "flow_label")),
    "mpls_label_1": (OP_MPLS_LABEL, *_where("val", "mpls_top")),
    "mpls_top_label_ttl": (OP_MPLS_TTL, *_where("val", "mpls_top")),
    "direction": (OP_DIRECTION, 0, 0),
    "sampler_id": (OP_CONST, 0, 0),
    "selector_id": (OP_CONST, 0, 0),
}
_PROTO = _where("key", "proto")[0]


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """How to write one data template's records from FLOW_DTYPE records."""

    template: Template
    ops: np.ndarray  # int64[fields, 4]: op, source offset, source size, field length
    record_length: int
    #: per record byte: the flow record byte it is a copy of, or -1 (zero, or computed)
    gather: np.ndarray
    #: the fields that are computed, not copied: int64[k, 5] = op, offset, size, width, at
    computed: np.ndarray


def plan_for(template: Template) -> FlowPlan | None:
    """The plan of a data template, or None if a field is not made from the flow record."""
    rows = []
    for f in template.fields:
        src = _SOURCES.get(f.name)
        if src is None or f.length > 16:
            return None
        rows.append((src[0], src[1], src[2], f.length))
    length = template.record_length
    if length is None:
        return None
    gather = np.full(length, -1, np.int64)
    computed = []
    at = 0
    for op, off, size, width in rows:
        if op == OP_RAW:
            gather[at : at + width] = np.arange(off, off + width)
        elif (
            op == OP_UINT and size == width
        ):  # big-endian copy of a little-endian value
            gather[at : at + width] = np.arange(off + width - 1, off - 1, -1)
        elif (
            op in (OP_TCP_FLAGS, OP_MPLS_TTL) and width >= 1
        ):  # the low byte, zero above
            gather[at + width - 1] = off
        elif (
            op == OP_MPLS_LABEL and width == 3
        ):  # bytes 3, 2, 1 of the little-endian entry
            gather[at : at + 3] = [off + 3, off + 2, off + 1]
        else:
            computed.append((op, off, size, width, at))
        at += width
    return FlowPlan(
        template,
        np.array(rows, np.int64),
        length,
        gather,
        np.array(computed, np.int64).reshape(-1, 5),
    )


@nb.njit(cache=True, nogil=True, inline="always")
def _put(buf, at, value, width):  # pragma: no cover
    for b in range(width - 1, -1, -1):
        buf[at + b] = np.uint8(value & 0xFF)
        value >>= 8


@nb.njit(cache=True, nogil=True)
def _fields(
    buf, pos, flows, rows, gather, computed, epoch_offset_ns, boot_ms, directions, const
):  # pragma: no cover
    """Writes every record: the record of flows[rows[j]] starts at buf[pos[j]]. The bytes
    that are copies of the flow record's (most of them) by one gather, then the few computed
    fields (times, ICMP type, clamped values, direction, constants)."""
    reclen = len(gather)
    for j in range(len(rows)):
        d = pos[j]
        r = rows[j]
        for k in range(reclen):
            g = gather[k]
            buf[d + k] = flows[r, g] if g >= 0 else np.uint8(0)
        for c in range(computed.shape[0]):
            op, off, size, width, at = (
                computed[c, 0],
                computed[c, 1],
                computed[c, 2],
                computed[c, 3],
                computed[c, 4],
            )
            v = np.uint64(0)
            if op == OP_DIRECTION:
                v = np.uint64(directions[r]) if directions[r] > 0 else np.uint64(0)
            elif op == OP_CONST:
                v = np.uint64(const)
            else:
                for b in range(size - 1, -1, -1):
                    v = (v << np.uint64(8)) | np.uint64(flows[r, off + b])
                if op == OP_TCP_FLAGS:
                    v &= np.uint64(0xFF)
                elif op == OP_ICMP:
                    p = flows[r, _PROTO]
                    if p != 1 and p != 58:
                        v = np.uint64(0)
                elif op == OP_UPTIME_MS or op == OP_EPOCH_MS:
                    ms = (np.int64(v) + epoch_offset_ns) // 1_000_000
                    if op == OP_UPTIME_MS:
                        ms = (ms - boot_ms) & 0xFFFFFFFF
                    v = np.uint64(ms)
                elif op == OP_MPLS_LABEL:
                    v >>= np.uint64(8)
                elif op == OP_MPLS_TTL:
                    v &= np.uint64(0xFF)
            if width < 8 and op != OP_UPTIME_MS:
                limit = (np.uint64(1) << np.uint64(8 * width)) - np.uint64(1)
                v = min(v, limit)
            e = d + at
            for b in range(width - 1, -1, -1):
                buf[e + b] = np.uint8(v & np.uint64(0xFF))
                v >>= np.uint64(8)


@nb.njit(cache=True, nogil=True)
def _encode(
    flows,
    rows,
    directions,
    gather,
    computed,
    reclen,
    const,
    epoch_offset_ns,
    boot_ms,
    template_id,
    tsets,
    tset_records,
    version,
    mtu,
    pad,
    due,
    refresh_packets,
    since_template,
    messages,
    records_sent,
    uptime_ms,
    secs,
    domain,
):  # pragma: no cover
    """Datagrams of the flows at `rows` of the raw FLOW_DTYPE matrix `flows`: (buffer,
    offsets[p + 1], flows per datagram[p], state[4]) with state = (messages, records sent,
    packets since the templates, templates sent 0/1)."""
    n = len(rows)
    header = 20 if version == 9 else 16
    per_max = max(1, (mtu - header - 4) // reclen)
    npk = n // per_max + 4
    buf = np.empty(npk * (mtu + 4), np.uint8)
    offs = np.zeros(npk + 1, np.int64)
    flows_in = np.zeros(npk, np.int64)
    pos = np.empty(n, np.int64)
    start = 0
    p = 0
    o = 0
    sent_templates = 0
    while start < n:
        if p + 1 >= len(flows_in) or o + mtu + 4 > len(
            buf
        ):  # template packets took room
            bigger = np.empty(2 * len(buf), np.uint8)
            bigger[:o] = buf[:o]
            buf = bigger
            offs = np.concatenate((offs, np.zeros(len(offs), np.int64)))
            flows_in = np.concatenate((flows_in, np.zeros(len(flows_in), np.int64)))
        if not due and refresh_packets > 0 and since_template >= refresh_packets:
            due = True
        plen = len(tsets) if due else 0
        room = mtu - header - plen
        if pad:
            room -= room % 4
        budget = max(room - 4, 0)
        k = min(n - start, budget // reclen)
        if k == 0 and not due:
            break  # a record larger than the MTU: Exporter checks this before
        length = 4 + k * reclen if k else 0
        padn = (-length) % 4 if (pad and reclen > 3 and k) else 0
        total = header + plen + length + padn
        count = (tset_records if due else 0) + k
        _put(buf, o, version, 2)
        if version == 9:
            _put(buf, o + 2, count, 2)
            _put(buf, o + 4, uptime_ms, 4)
            _put(buf, o + 8, secs, 4)
            _put(buf, o + 12, messages & 0xFFFFFFFF, 4)
            _put(buf, o + 16, domain, 4)
        else:
            _put(buf, o + 2, total, 2)
            _put(buf, o + 4, secs, 4)
            _put(buf, o + 8, records_sent & 0xFFFFFFFF, 4)
            _put(buf, o + 12, domain, 4)
        at = o + header
        if due:
            buf[at : at + plen] = tsets
            at += plen
            due = False
            since_template = 0
            sent_templates = 1
        if k:
            _put(buf, at, template_id, 2)
            _put(buf, at + 2, length + padn, 2)
            at += 4
            for j in range(start, start + k):
                pos[j] = at
                at += reclen
            for b in range(padn):
                buf[at + b] = 0
        since_template += 1
        messages += 1
        records_sent += k
        flows_in[p] = k
        o += total
        p += 1
        offs[p] = o
        start += k
    _fields(
        buf,
        pos,
        flows,
        rows,
        gather,
        computed,
        epoch_offset_ns,
        boot_ms,
        directions,
        const,
    )
    state = np.array([messages, records_sent, since_template, sent_templates], np.int64)
    return buf, offs[: p + 1], flows_in[:p], state


def encode_datagrams(
    enc: V9Encoder | IPFIXEncoder,
    plan: FlowPlan,
    flows: np.ndarray,
    epoch_offset_ns: int,
    directions: np.ndarray | None = None,
    const: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[list[bytes], list[int]]:
    """The datagrams `enc.encode(flow_columns(...), template_id)` would return, and the flows
    in each; `enc`'s counters and template refresh state advance the same way.

    Args:
        enc: the encoder whose sequence and templates the datagrams continue.
        plan: `plan_for` one of `enc`'s data templates.
        flows: FLOW_DTYPE records, or their raw bytes as uint8[n, FLOW_DTYPE.itemsize].
        epoch_offset_ns: added to the kernel's monotonic times to get epoch times.
        directions: flowDirection per flow (int8, -1 unknown) if the template has it.
        const: the value of sampler_id / selector_id fields.
        rows: which flows, in this order (default all).
    """
    raw = raw_flows(flows)
    n = len(raw)
    if rows is None:
        rows = np.arange(n, dtype=np.int64)
    if len(rows) == 0:
        return [], []
    if directions is None:
        directions = np.full(n, -1, np.int8)
    now_ns = enc.clock()
    boot_ms = enc.boot_ns // 1_000_000
    domain = enc.source_id if isinstance(enc, V9Encoder) else enc.observation_domain
    tsets = np.frombuffer(enc.template_sets, np.uint8)
    buf, offs, counts, state = _encode(
        raw, rows.astype(np.int64), directions.astype(np.int8), plan.gather, plan.computed,
        plan.record_length,
        const, epoch_offset_ns, boot_ms, plan.template.template_id, tsets, enc.template_records,
        enc.version, enc.mtu, enc.pad_sets, enc.templates_due(now_ns),
        enc.template_refresh_packets, enc._packets_since_template,
        enc.messages_sent, enc.records_sent, enc.uptime_ms(now_ns),
        (now_ns // 1_000_000_000) & 0xFFFFFFFF, domain,
    )
    enc.messages_sent = int(state[0])
    enc.records_sent = int(state[1])
    enc._packets_since_template = int(state[2])
    if state[3]:
        enc._last_template_ns = now_ns
    enc.flows_sent += len(rows)
    enc.octets_sent += int(offs[-1])
    mv = memoryview(buf)
    bounds = offs.tolist()
    payloads = [bytes(mv[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]
    return payloads, counts.tolist()


def raw_flows(flows: np.ndarray) -> np.ndarray:
    """FLOW_DTYPE records as uint8[n, FLOW_DTYPE.itemsize] (a view when possible)."""
    if flows.dtype == np.uint8 and flows.ndim == 2:
        return flows
    flows = np.ascontiguousarray(flows, FLOW_DTYPE)
    return flows.view(np.uint8).reshape(len(flows), FLOW_DTYPE.itemsize)
