"""NetFlow v5, v9 and IPFIX encoders: flow columns in, UDP payloads out. No I/O.

Columns are ``dict[str, np.ndarray]`` keyed by registry names, one value per flow
(IPv4 addresses as the integer of the big-endian address, IPv6 addresses as
``uint8[n, 16]``, MACs as integers, strings as a list of ``str``). A scalar is broadcast
to every record. An encoder object is one exporting source (v5 engine, v9 source id,
IPFIX observation domain): it remembers sequence numbers, template refresh timers and
export statistics across calls.

Example::

    tpl = template_for(["src_addr", "dst_addr", "src_port", "dst_port", "proto",
                        "bytes", "packets", "flow_start_ms", "flow_end_ms"], 256)
    enc = IPFIXEncoder([tpl], observation_domain=1)
    for payload in enc.encode(columns):
        sock.sendto(payload, collector)

Time: the clock returns nanoseconds since the epoch (default `time.time_ns`) and is read
once per call; "uptime" is measured from ``boot_ns`` (default: the encoder's creation).
Missing time columns are derived when the other form is present: v9/v5
``first_switched``/``last_switched`` (uptime ms) from ``flow_start_ms``/``flow_end_ms``
(epoch ms) and the other way round, and ``flow_*_sec`` from either.

Values too large for their field (e.g. > 2**32-1 bytes in a v5 record) raise
`ValueOverflowError`, or are clamped to the largest value when the encoder is created
with ``overflow="clamp"``. Uptime fields wrap modulo 2**32 like a router's sysUptime.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from appliance.netflow._encode import as_uint64, chunk_end, pack_records, record_count
from appliance.netflow.header import (
    ENTERPRISE_BIT,
    IPFIX,
    IPFIX_HEADER_SIZE,
    IPFIX_HEADER_STRUCT,
    IPFIX_OPTIONS_TEMPLATE_SET_ID,
    IPFIX_TEMPLATE_SET_ID,
    MIN_DATA_SET_ID,
    SET_HEADER_SIZE,
    SET_HEADER_STRUCT,
    V5,
    V5_FIELDS,
    V5_HEADER_SIZE,
    V5_HEADER_STRUCT,
    V5_MAX_RECORDS,
    V5_RECORD,
    V5_RECORD_SIZE,
    V9,
    V9_HEADER_SIZE,
    V9_HEADER_STRUCT,
    V9_OPTIONS_TEMPLATE_SET_ID,
    V9_TEMPLATE_SET_ID,
    VARIABLE_LENGTH,
)
from appliance.netflow.registry import REGISTRY
from appliance.netflow.templates import (
    V9_SCOPE_NAMES,
    EncodeError,
    Template,
    TemplateField,
    ValueOverflowError,
    interface_template,
    options_template_for,
    sampler_template,
    statistics_template,
    template_for,
    wire_fields,
)

__all__ = [
    "Clock",
    "Columns",
    "EncodeError",
    "IPFIXEncoder",
    "Template",
    "TemplateField",
    "V5Encoder",
    "V9Encoder",
    "ValueOverflowError",
    "interface_template",
    "options_template_for",
    "sampler_template",
    "statistics_template",
    "template_for",
]

#: Returns the current time in nanoseconds since the epoch.
Clock = Callable[[], int]
#: Registry name → array with one value per record (or a scalar, broadcast).
Columns = Mapping[str, Any]
Overflow = Literal["raise", "clamp"]

_NS_PER_MS = 1_000_000
_ZEROS = bytes(3)


def _with_times(columns: Columns, needed: Iterable[str], boot_ms: int) -> dict[str, Any]:
    """Fill uptime / epoch time columns that the template needs from the other form."""
    cols = dict(columns)
    needed = set(needed)
    for up, ms, sec in (
        ("first_switched", "flow_start_ms", "flow_start_sec"),
        ("last_switched", "flow_end_ms", "flow_end_sec"),
    ):
        if up in needed and up not in cols and ms in cols:
            cols[up] = (np.asarray(cols[ms], dtype=np.int64) - boot_ms) & 0xFFFFFFFF
        if ms in needed and ms not in cols and up in cols:
            cols[ms] = np.asarray(cols[up], dtype=np.int64) + boot_ms
        if sec in needed and sec not in cols:
            if ms in cols:
                cols[sec] = np.asarray(cols[ms], dtype=np.int64) // 1000
            elif up in cols:
                cols[sec] = (np.asarray(cols[up], dtype=np.int64) + boot_ms) // 1000
    return cols


class _Source:
    """What every encoder shares: clock, boot time, MTU, overflow policy, counters."""

    def __init__(self, mtu: int, clock: Clock, boot_ns: int | None, overflow: Overflow) -> None:
        if overflow not in ("raise", "clamp"):
            raise EncodeError(f"overflow must be 'raise' or 'clamp', not {overflow!r}")
        self.mtu = mtu
        self.clock = clock
        self.boot_ns = clock() if boot_ns is None else boot_ns
        self.overflow: Overflow = overflow
        #: Datagrams returned so far.
        self.messages_sent = 0
        #: Bytes of all datagrams returned so far.
        self.octets_sent = 0
        #: Flow records (records of data templates; v5 records) returned so far.
        self.flows_sent = 0

    def uptime_ms(self, now_ns: int) -> int:
        return ((now_ns - self.boot_ns) // _NS_PER_MS) & 0xFFFFFFFF

    def _sent(self, payload: bytes) -> None:
        self.messages_sent += 1
        self.octets_sent += len(payload)


class V5Encoder(_Source):
    """NetFlow v5: fixed 48-byte IPv4 records, at most 30 per packet.

    Columns used: the `V5_FIELDS` (src_addr, dst_addr, next_hop, in_if, out_if, packets,
    bytes, first_switched, last_switched, src_port, dst_port, tcp_flags, proto, tos,
    src_as, dst_as, src_mask, dst_mask); a missing column is sent as 0. v5 counters are
    32-bit and interfaces/AS numbers 16-bit: larger values raise `ValueOverflowError`
    (the probe exports long flows early to avoid that) or clamp with ``overflow="clamp"``.
    """

    version = V5

    def __init__(
        self,
        *,
        engine_type: int = 0,
        engine_id: int = 0,
        sampling_mode: int = 0,
        sampling_interval: int = 0,
        mtu: int = 1400,
        clock: Clock = time.time_ns,
        boot_ns: int | None = None,
        overflow: Overflow = "raise",
    ) -> None:
        """Args:
        engine_type, engine_id: header bytes 20 and 21 (0..255).
        sampling_mode: 2 bits (0 none, 1 deterministic, 2 random); sampling_interval:
            14 bits, "1 out of N".
        mtu: largest UDP payload; with the default 1400 a packet holds 28 records.
        clock, boot_ns, overflow: see the module docstring.
        """
        super().__init__(mtu, clock, boot_ns, overflow)
        if not (0 <= sampling_mode < 4 and 0 <= sampling_interval < 1 << 14):
            raise EncodeError("v5 sampling: mode must be 0..3 and interval 0..16383")
        if not (0 <= engine_type < 256 and 0 <= engine_id < 256):
            raise EncodeError("v5 engine type and id must be 0..255")
        self.engine_type = engine_type
        self.engine_id = engine_id
        self.sampling = sampling_mode << 14 | sampling_interval
        self.records_per_packet = min(V5_MAX_RECORDS, (mtu - V5_HEADER_SIZE) // V5_RECORD_SIZE)
        if self.records_per_packet < 1:
            raise EncodeError(f"MTU {mtu} cannot hold one v5 record")

    def encode(self, columns: Columns) -> list[bytes]:
        """Encode flows into as many v5 packets as needed.

        Returns:
            One bytes object per datagram, in order.
        """
        now_ns = self.clock()
        cols = _with_times(columns, V5_FIELDS, self.boot_ns // _NS_PER_MS)
        present = [name for name in V5_FIELDS if name in cols]
        n = record_count({name: cols[name] for name in present})
        records = np.zeros(n, dtype=V5_RECORD)
        for name in present:
            size = V5_RECORD[name].itemsize
            spec = TemplateField(name, 0, size, 0, REGISTRY[name].ftype)
            records[name] = as_uint64(name, cols[name], spec, n, self.overflow)
        packets = []
        secs, nsecs = divmod(now_ns, 1_000_000_000)
        for start in range(0, n, self.records_per_packet):
            chunk = records[start : start + self.records_per_packet]
            header = V5_HEADER_STRUCT.pack(
                V5,
                len(chunk),
                self.uptime_ms(now_ns),
                secs & 0xFFFFFFFF,
                nsecs,
                self.flows_sent & 0xFFFFFFFF,
                self.engine_type,
                self.engine_id,
                self.sampling,
            )
            packets.append(header + chunk.tobytes())
            self.flows_sent += len(chunk)
            self._sent(packets[-1])
        return packets


class _TemplateEncoder(_Source):
    """v9 and IPFIX: templates, template refresh, data sets, statistics."""

    version: int
    header_size: int
    pad_sets: bool  # v9 pads FlowSets to 4 bytes; IPFIX does not need to

    def __init__(
        self,
        templates: Sequence[Template],
        mtu: int,
        clock: Clock,
        boot_ns: int | None,
        template_refresh_packets: int,
        template_refresh_seconds: float,
        overflow: Overflow,
    ) -> None:
        super().__init__(mtu, clock, boot_ns, overflow)
        self.templates = {t.template_id: t for t in templates}
        if len(self.templates) != len(templates) or not templates:
            raise EncodeError("give at least one template and unique template ids")
        for t in templates:
            self._check(t)
        self.template_refresh_packets = template_refresh_packets
        self.template_refresh_ns = int(template_refresh_seconds * 1e9)
        self.template_sets, self.template_records = self._template_sets(templates)
        if self.header_size + len(self.template_sets) > mtu:
            raise EncodeError(f"templates take {len(self.template_sets)} bytes, over MTU {mtu}")
        #: Data records (data and options) returned so far; the IPFIX sequence number.
        self.records_sent = 0
        self._last_template_ns: int | None = None
        self._packets_since_template = 0

    def _check(self, template: Template) -> None: ...

    def _template_sets(self, templates: Sequence[Template]) -> tuple[bytes, int]:
        raise NotImplementedError

    def _header(self, now_ns: int, count: int, length: int) -> bytes:
        raise NotImplementedError

    def resend_templates(self) -> None:
        """The next packet carries the templates again (a collector may have missed them)."""
        self._last_template_ns = None

    def templates_due(self, now_ns: int | None = None) -> bool:
        """True when the next packet will carry the templates (first packet, or N packets
        or T seconds since they were last sent; 0 disables either trigger)."""
        now_ns = self.clock() if now_ns is None else now_ns
        if self._last_template_ns is None:
            return True
        by_packets = 0 < self.template_refresh_packets <= self._packets_since_template
        age = now_ns - self._last_template_ns
        return by_packets or 0 < self.template_refresh_ns <= age

    def encode(self, columns: Columns, template_id: int | None = None) -> list[bytes]:
        """Encode records (flows, or options data) into as many datagrams as needed.

        Args:
            columns: registry name → values, one per record; extra columns are ignored.
            template_id: which template; default the first data template.

        Returns:
            One bytes object per datagram. The template sets lead a datagram when due.
        """
        if template_id is None:
            template_id = next(t for t in self.templates.values() if not t.is_options).template_id
        template = self.templates.get(template_id)
        if template is None:
            raise EncodeError(f"template {template_id} was not given to this encoder")
        now_ns = self.clock()
        names = [f.name for f in template.fields]
        cols = _with_times(columns, names, self.boot_ns // _NS_PER_MS)
        data, offsets = pack_records(template, cols, self.overflow)
        return self._packets(template, data, offsets, now_ns)

    def encode_templates(self) -> list[bytes]:
        """One datagram with all templates (e.g. at start-up); resets the refresh timers."""
        now_ns = self.clock()
        return [self._packet(now_ns, (self.template_sets,), self.template_records, 0)]

    def encode_statistics(
        self,
        template_id: int,
        *,
        ignored_packets: int = 0,
        ignored_bytes: int = 0,
        not_sent_flows: int = 0,
    ) -> list[bytes]:
        """Send exporter statistics with a `statistics_template`.

        The exported_* counts are this encoder's, up to (not including) this message;
        the ignored/not-sent ones are the caller's (e.g. the probe's drop counters).
        """
        columns = {
            "exported_flows": self.flows_sent,
            "exported_packets": self.messages_sent,
            "exported_bytes": self.octets_sent,
            "ignored_packets_total": ignored_packets,
            "ignored_bytes_total": ignored_bytes,
            "not_sent_flows_total": not_sent_flows,
            **self._scope_values(),
        }
        return self.encode(columns, template_id)

    def _scope_values(self) -> dict[str, int]:
        return {}

    def _packets(
        self, template: Template, data: bytes | memoryview, offsets: np.ndarray, now_ns: int
    ) -> list[bytes]:
        n = len(offsets) - 1
        view = memoryview(data)
        starts = offsets.tolist()
        record_length = template.record_length
        # Padding shorter than a record is unambiguous; records of 1-3 bytes go unpadded.
        pad_data = self.pad_sets and (record_length or 4) > 3
        packets: list[bytes] = []
        start = 0
        while start < n:
            due = self.templates_due(now_ns)
            prefix = self.template_sets if due else b""
            room = self.mtu - self.header_size - len(prefix)
            room -= room % 4 if self.pad_sets else 0
            budget = max(room - 4, 0)  # minus the data set header
            if record_length:
                end = min(n, start + budget // record_length)
            else:
                end = chunk_end(offsets, start, budget)
            if end == start:
                if not due:
                    raise EncodeError(
                        f"a record of template {template.template_id} does not fit MTU {self.mtu}"
                    )
                packets.append(self._packet(now_ns, (prefix,), self.template_records, 0))
                continue
            body = view[starts[start] : starts[end]]
            length = SET_HEADER_SIZE + len(body)
            pad = (-length) % 4 if pad_data else 0
            set_header = SET_HEADER_STRUCT.pack(template.template_id, length + pad)
            count = (self.template_records if due else 0) + end - start
            parts = (prefix, set_header, body, _ZEROS[:pad])
            packets.append(self._packet(now_ns, parts, count, end - start))
            if not template.is_options:
                self.flows_sent += end - start
            start = end
        return packets

    def _packet(
        self, now_ns: int, parts: tuple[bytes | memoryview, ...], count: int, records: int
    ) -> bytes:
        """One datagram: header + parts (template sets first); updates the counters."""
        length = self.header_size + sum(len(p) for p in parts)
        payload = b"".join((self._header(now_ns, count, length), *parts))
        if parts[0] is self.template_sets:
            self._last_template_ns = now_ns
            self._packets_since_template = 0
        self._packets_since_template += 1
        self.records_sent += records
        self._sent(payload)
        return payload


class V9Encoder(_TemplateEncoder):
    """NetFlow v9 (RFC 3954). Sequence number: packets sent before this one.

    Options templates use v9 scope fields (``scope_system``, ``scope_interface``, ...).
    v9 has no enterprise numbers and no variable length: such templates are refused.
    """

    version = V9
    header_size = V9_HEADER_SIZE
    pad_sets = True

    def __init__(
        self,
        templates: Sequence[Template],
        *,
        source_id: int = 0,
        mtu: int = 1400,
        clock: Clock = time.time_ns,
        boot_ns: int | None = None,
        template_refresh_packets: int = 20,
        template_refresh_seconds: float = 60.0,
        overflow: Overflow = "raise",
    ) -> None:
        """Args:
        templates: data and options templates this source exports.
        source_id: the header's Source ID (the exporter's observation domain).
        mtu: largest UDP payload in bytes; records are split across datagrams to fit.
        clock: ns since the epoch; boot_ns: when "uptime" is 0 (default: now).
        template_refresh_packets / template_refresh_seconds: resend templates after this
            many packets / this long (0 disables a trigger).
        overflow: "raise" or "clamp" for values too large for their field.
        """
        self.source_id = source_id
        super().__init__(
            templates,
            mtu,
            clock,
            boot_ns,
            template_refresh_packets,
            template_refresh_seconds,
            overflow,
        )

    def _check(self, template: Template) -> None:
        for i, f in enumerate(template.fields):
            if f.pen or f.length == VARIABLE_LENGTH:
                raise EncodeError(f"v9 template {template.template_id}: {f.name} needs IPFIX")
            if (i < template.scope_count) != (f.name in V9_SCOPE_NAMES):
                raise EncodeError(
                    f"v9 template {template.template_id}: scope fields must be scope_* fields "
                    "and come first"
                )

    def _template_sets(self, templates: Sequence[Template]) -> tuple[bytes, int]:
        data = [t for t in templates if not t.is_options]
        sets = []
        if data:
            body = b"".join(
                SET_HEADER_STRUCT.pack(t.template_id, len(t.fields)) + _v9_fields(t.fields)
                for t in data
            )
            sets.append(_set(V9_TEMPLATE_SET_ID, body, pad=True))
        for t in templates:
            if t.is_options:
                scope, rest = t.fields[: t.scope_count], t.fields[t.scope_count :]
                head = _u16s(t.template_id, 4 * len(scope), 4 * len(rest))
                sets.append(_set(V9_OPTIONS_TEMPLATE_SET_ID, head + _v9_fields(t.fields), pad=True))
        return b"".join(sets), len(templates)

    def _header(self, now_ns: int, count: int, length: int) -> bytes:
        return V9_HEADER_STRUCT.pack(
            V9,
            count,
            self.uptime_ms(now_ns),
            (now_ns // 1_000_000_000) & 0xFFFFFFFF,
            self.messages_sent & 0xFFFFFFFF,
            self.source_id,
        )

    def _scope_values(self) -> dict[str, int]:
        return {"scope_system": self.source_id}


class IPFIXEncoder(_TemplateEncoder):
    """IPFIX (RFC 7011). Sequence number: data records sent before this message, mod 2**32.

    Supports enterprise elements and variable-length fields (the latter on a slower
    per-record path meant for options data such as interface names).
    """

    version = IPFIX
    header_size = IPFIX_HEADER_SIZE
    pad_sets = False

    def __init__(
        self,
        templates: Sequence[Template],
        *,
        observation_domain: int = 0,
        mtu: int = 1400,
        clock: Clock = time.time_ns,
        boot_ns: int | None = None,
        template_refresh_packets: int = 20,
        template_refresh_seconds: float = 60.0,
        overflow: Overflow = "raise",
    ) -> None:
        """Args: as `V9Encoder`, with `observation_domain` for the header's domain id."""
        self.observation_domain = observation_domain
        super().__init__(
            templates,
            mtu,
            clock,
            boot_ns,
            template_refresh_packets,
            template_refresh_seconds,
            overflow,
        )

    def _check(self, template: Template) -> None:
        for f in template.fields:
            if f.name in V9_SCOPE_NAMES:
                raise EncodeError(f"IPFIX template {template.template_id}: {f.name} is v9 only")

    def _template_sets(self, templates: Sequence[Template]) -> tuple[bytes, int]:
        data = [t for t in templates if not t.is_options]
        options = [t for t in templates if t.is_options]
        sets = []
        if data:
            body = b"".join(
                SET_HEADER_STRUCT.pack(t.template_id, len(t.fields)) + _ipfix_fields(t.fields)
                for t in data
            )
            sets.append(_set(IPFIX_TEMPLATE_SET_ID, body, pad=False))
        if options:
            body = b"".join(
                _u16s(t.template_id, len(t.fields), t.scope_count) + _ipfix_fields(t.fields)
                for t in options
            )
            sets.append(_set(IPFIX_OPTIONS_TEMPLATE_SET_ID, body, pad=False))
        return b"".join(sets), len(templates)

    def _header(self, now_ns: int, count: int, length: int) -> bytes:
        return IPFIX_HEADER_STRUCT.pack(
            IPFIX,
            length,
            (now_ns // 1_000_000_000) & 0xFFFFFFFF,
            self.records_sent & 0xFFFFFFFF,
            self.observation_domain,
        )

    def _scope_values(self) -> dict[str, int]:
        return {"observation_domain_id": self.observation_domain}


def encode_v5(columns: Columns, **options: Any) -> list[bytes]:
    """One-shot v5: ``V5Encoder(**options).encode(columns)``."""
    return V5Encoder(**options).encode(columns)


def encode_v9(
    columns: Columns, fields: Sequence[str | tuple[str, int]] | None = None, **options: Any
) -> list[bytes]:
    """One-shot v9 with template 256 (sent in the first datagram).

    Args:
        columns: the flows.
        fields: template fields; default every registry-named column, in dict order.
        **options: `V9Encoder` keyword arguments (source_id, mtu, clock, ...).
    """
    template = template_for(fields or wire_fields(columns), MIN_DATA_SET_ID)
    return V9Encoder([template], **options).encode(columns)


def encode_ipfix(
    columns: Columns, fields: Sequence[str | tuple[str, int]] | None = None, **options: Any
) -> list[bytes]:
    """One-shot IPFIX with template 256; as `encode_v9` with `IPFIXEncoder` options."""
    template = template_for(fields or wire_fields(columns), MIN_DATA_SET_ID)
    return IPFIXEncoder([template], **options).encode(columns)


def _u16s(*values: int) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def _v9_fields(fields: Iterable[TemplateField]) -> bytes:
    return b"".join(SET_HEADER_STRUCT.pack(f.element_id, f.length) for f in fields)


def _ipfix_fields(fields: Iterable[TemplateField]) -> bytes:
    out = []
    for f in fields:
        if f.pen:
            out.append(SET_HEADER_STRUCT.pack(f.element_id | ENTERPRISE_BIT, f.length))
            out.append(f.pen.to_bytes(4, "big"))
        else:
            out.append(SET_HEADER_STRUCT.pack(f.element_id, f.length))
    return b"".join(out)


def _set(set_id: int, body: bytes, pad: bool) -> bytes:
    length = SET_HEADER_SIZE + len(body)
    padding = -length % 4 if pad else 0
    return SET_HEADER_STRUCT.pack(set_id, length + padding) + body + bytes(padding)
