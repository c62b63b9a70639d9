"""Export ended flows as NetFlow v9 / v5 / IPFIX datagrams to any number of UDP destinations.

One encoder makes one stream (one sequence space, one source id); every destination gets
every datagram of it, like ipt_netflow. Each destination has its own connected UDP socket;
send errors are counted per destination and per cause, and the probe keeps going.

A collector that is not listening (starting, restarting) loses nothing: ICMP port-unreachable
comes back as ECONNREFUSED on a later send and, with IP_RECVERR, as the refused datagram's
first bytes on the socket's error queue. The refused datagram and everything after it are
held for that destination (in order, with their original sequence numbers); at each scan the
oldest held one is sent as a probe, and when a probe is not refused the rest follow. Only
overflow of the hold (`HOLD_BYTES`) loses flows, and those are counted (`flows_lost`).
"""

from __future__ import annotations

import bisect
import enum
import errno
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from appliance import __version__
from appliance.netflow.encoder import (
    IPFIXEncoder,
    Template,
    V5Encoder,
    V9Encoder,
    interface_template,
    options_template_for,
    sampler_template,
    statistics_template,
    template_for,
)
from appliance.probe.columns import SAMPLER_ID, flow_columns, flow_directions
from appliance.probe.errors import ProbeConfigError
from appliance.probe.flowtable import FLOW_DTYPE
from appliance.probe.records import SamplerMode
from appliance.probe.transport import (
    MATCH_BYTES as _MATCH_BYTES,
)
from appliance.probe.transport import (
    Destination,
    DestinationStats,
    MemoryTransport,
    Transport,
    UdpTransport,
    _Link,
    parse_destination,
)
from appliance.probe.wire import FlowPlan, encode_datagrams, plan_for, raw_flows

__all__ = [
    "Destination",
    "Exporter",
    "DestinationStats",
    "Transport",
    "UdpTransport",
    "MemoryTransport",
    "flow_columns",
    "parse_destination",
    "TEMPLATE_IPV4",
    "TEMPLATE_IPV6",
    "TEMPLATE_SAMPLER",
    "TEMPLATE_STATISTICS",
    "TEMPLATE_INTERFACES",
    "TEMPLATE_SYSTEM",
    "TEMPLATE_REFUSALS",
    "Stage",
    "Refusal",
    "VERSION_STRING",
    "data_template_id",
]

# Data templates are composed per flow from what it carries, like ipt_netflow's:
# 256 + 1 (IPv6) + 2 (MPLS label) + 4 (direction known) → 256..263.
TEMPLATE_IPV4 = 256
TEMPLATE_IPV6 = 257
_TPL_MPLS = 2
_TPL_DIRECTION = 4
TEMPLATE_SAMPLER = 264
TEMPLATE_STATISTICS = 265
TEMPLATE_INTERFACES = 266
TEMPLATE_SYSTEM = 267
#: Metering reliability per stage (RFC 7011 section 4.2's template, one record per stage):
#: scope v9 scope_cache (type 4) / IPFIX meteringProcessId (143) = a `Stage`, then
#: ignoredPacketTotalCount (164), ignoredOctetTotalCount (165), ignoredDataRecordTotalCount
#: (407): packets, bytes and flow records refused because that stage was full.
TEMPLATE_REFUSALS = 268
#: minimum seconds between two resends of templates and options caused by send errors
RESEND_AFTER_ERROR_S = 1.0
#: bytes of datagrams held per destination while it refuses (then the oldest are dropped)
HOLD_BYTES = 64 << 20
#: datagrams sent recently, per destination, that an ICMP error can still be matched to
RECENT_DATAGRAMS = 8192
# Byte offsets in a FLOW_DTYPE record, for the fast path's template choice.
_IPVER_AT = FLOW_DTYPE.fields["key"][1] + FLOW_DTYPE["key"].fields["ipver"][1]
_VAL_AT = FLOW_DTYPE.fields["val"][1]
_SRC_MAC_AT = _VAL_AT + FLOW_DTYPE["val"].fields["src_mac"][1]
_DST_MAC_AT = _VAL_AT + FLOW_DTYPE["val"].fields["dst_mac"][1]
_MPLS_DEPTH_AT = _VAL_AT + FLOW_DTYPE["val"].fields["mpls_depth"][1]
#: observationDomainName in the system options (ipt_netflow sends its version there too).
VERSION_STRING = f"mirrorflow probe {__version__}"
_V9_NAME_LENGTH = 32  # v9 has no variable length: names are NUL-padded to this


def data_template_id(ipv6: bool, mpls: bool, direction: bool) -> int:
    return TEMPLATE_IPV4 + int(ipv6) + _TPL_MPLS * int(mpls) + _TPL_DIRECTION * int(direction)

_V9_FIELDS = (
    "src_addr", "dst_addr", "src_port", "dst_port", "proto", "tos", "tcp_flags", "in_if",
    "packets", "bytes", "first_switched", "last_switched", "min_ttl", "max_ttl",
    "icmp_type", "ip_version", "src_vlan", "dot1q_customer_vlan", "src_mac",
    "dst_mac", "flow_end_reason",
)
_IPFIX_FIELDS = (
    "src_addr", "dst_addr", "src_port", "dst_port", "proto", "tos", "tcp_flags", "in_if",
    "packets", "bytes", "flow_start_ms", "flow_end_ms", "min_ttl", "max_ttl",
    "icmp_type", "ip_version", "dot1q_vlan", "dot1q_customer_vlan", "src_mac",
    "dst_mac", "flow_end_reason",
)
# Only in the templates of flows that carry them:
_MPLS_FIELDS = ("mpls_label_1", "mpls_top_label_ttl")  # 70 (label, exp, bottom-of-stack), 200
_DIRECTION_FIELDS = ("direction",)  # 61: 0 ingress, 1 egress (from --direction-mac)
# Where the IPv6 template differs from the IPv4 one beyond the address twins.
_V6_EXTRA = ("flow_label6",)
# IPFIX selector algorithms (RFC 5477): systematic count-based, random n-out-of-N, hash.
_IPFIX_SELECTOR = {SamplerMode.DETERMINISTIC: 1, SamplerMode.RANDOM: 3, SamplerMode.HASH: 6}


class Stage(enum.IntEnum):
    """Where packets can be refused (the scope value of the TEMPLATE_REFUSALS records)."""

    KERNEL_MAP = 1  # the eBPF flow map was full: a new flow's packet was not counted
    FLOW_TABLE = 2  # the userspace flow table was full: a drained new flow was not taken


@dataclass(frozen=True, slots=True)
class Refusal:
    """Totals refused by one stage since the probe started."""

    stage: Stage
    packets: int
    bytes: int
    records: int  # kernel map: refused inserts (one per packet); table: refused flows


class Exporter:
    """Encodes ended flows and sends each datagram to every destination.

    Args:
        destinations: where to send; each gets every datagram.
        protocol: 9 (default), 5 or 10.
        transports: one per destination (tests pass `MemoryTransport`s); default UDP sockets.
        sampler: (mode, N) announced in v5 headers and in v9/IPFIX options data.
        mtu: the largest UDP payload.
        source_id: v9 source id / IPFIX observation domain / v5 engine id.
        clock: ns since the epoch (injectable).
        options_interval_s: how often options data (sampler, statistics, system) are re-sent.
        names_interval_s: how often the interface names (ifIndex → ifName) are re-sent.
        mpls: flows may carry MPLS labels (adds the templates with the top label).
        direction_mac: MAC of the mirrored router/host: flows from it are exported as egress,
            flows to it as ingress (flowDirection); None: no direction.
    """

    def __init__(
        self,
        destinations: Sequence[Destination],
        protocol: int = 9,
        *,
        transports: Sequence[Transport] | None = None,
        sampler: tuple[SamplerMode, int] = (SamplerMode.OFF, 1),
        mtu: int = 1400,
        source_id: int = 0,
        template_refresh_packets: int = 20,
        template_refresh_seconds: float = 1800.0,
        options_interval_s: float = 60.0,
        names_interval_s: float = 300.0,
        mpls: bool = True,
        direction_mac: bytes | None = None,
        sndbuf: int = 0,
        clock: Callable[[], int] = time.time_ns,
        boot_ns: int | None = None,
    ) -> None:
        if protocol not in (5, 9, 10):
            raise ProbeConfigError(f"protocol must be 5, 9 or 10 (IPFIX), not {protocol}")
        if not destinations:
            raise ProbeConfigError("at least one destination (-d HOST:PORT) is needed")
        self.protocol = protocol
        self.destinations = list(destinations)
        self.transports: list[Transport] = (
            list(transports) if transports is not None
            else [UdpTransport(d, sndbuf) for d in self.destinations]
        )
        self.stats = [DestinationStats() for _ in self.destinations]
        self._links = [_Link() for _ in self.destinations]
        self._datagrams = 0  # datagrams of the stream so far (orders held ones)
        self.sampler_mode, self.sampler_n = sampler
        self.clock = clock
        self.options_interval_ns = int(options_interval_s * 1e9)
        self._last_options_ns: int | None = None
        self.names_interval_ns = int(names_interval_s * 1e9)
        self._last_names_ns: int | None = None
        self._resent_after_error = -RESEND_AFTER_ERROR_S
        self.direction_mac = direction_mac
        self.mpls = mpls
        self.flows_exported = 0
        self.flows_unexportable = 0  # IPv6 flows in v5
        #: encode flows with the numba plans (False: the generic encoder, the tests' oracle)
        self.fast = True
        self.plans: dict[int, FlowPlan | None] = {}
        sampling = self.sampler_mode != SamplerMode.OFF and self.sampler_n > 1
        if protocol == 5:
            mode = {SamplerMode.DETERMINISTIC: 1, SamplerMode.RANDOM: 2, SamplerMode.HASH: 2}
            self.encoder: V5Encoder | V9Encoder | IPFIXEncoder = V5Encoder(
                engine_id=source_id & 0xFF, engine_type=0,
                sampling_mode=mode.get(self.sampler_mode, 0) if sampling else 0,
                sampling_interval=min(self.sampler_n, 16383) if sampling else 0,
                mtu=mtu, clock=clock, boot_ns=boot_ns, overflow="clamp",
            )
            return
        names = list(_V9_FIELDS if protocol == 9 else _IPFIX_FIELDS)
        if sampling:
            names.append("sampler_id" if protocol == 9 else "selector_id")
        if protocol == 9:
            names = [("sampler_id", 1) if n == "sampler_id" else n for n in names]
        else:
            names = [("selector_id", 4) if n == "selector_id" else n for n in names]
        templates: list[Template] = []
        for mpls_tpl in (False, True) if mpls else (False,):
            for dir_tpl in (False, True) if direction_mac is not None else (False,):
                extra = [*(_MPLS_FIELDS if mpls_tpl else ()), *(_DIRECTION_FIELDS if dir_tpl else ())]
                templates += [
                    template_for([*names, *extra], data_template_id(False, mpls_tpl, dir_tpl)),
                    template_for([*names, *_V6_EXTRA, *extra],
                                 data_template_id(True, mpls_tpl, dir_tpl), ipv6=True),
                ]
        scope = "scope_cache" if protocol == 9 else "metering_process_id"
        templates += [
            options_template_for([scope], ["ignored_packets_total", "ignored_bytes_total",
                                           "ignored_data_record_total"], TEMPLATE_REFUSALS),
            statistics_template(TEMPLATE_STATISTICS, protocol),
            interface_template(TEMPLATE_INTERFACES, protocol, _V9_NAME_LENGTH),
            _system_template(protocol),
        ]
        if sampling:
            templates.append(sampler_template(TEMPLATE_SAMPLER, protocol))
        self.sampling = sampling
        cls = V9Encoder if protocol == 9 else IPFIXEncoder
        domain = {"source_id": source_id} if protocol == 9 else {"observation_domain": source_id}
        self.encoder = cls(
            templates, mtu=mtu, clock=clock, boot_ns=boot_ns,
            template_refresh_packets=template_refresh_packets,
            template_refresh_seconds=template_refresh_seconds, overflow="clamp", **domain,
        )
        #: data template id → its numba plan (the fast path; None: the generic encoder)
        self.plans = {
            t.template_id: plan_for(t) for t in templates if not t.is_options
        }
        self.header_size = self.encoder.header_size
        for plan in self.plans.values():
            if plan and self.header_size + 4 + plan.record_length > mtu:
                raise ProbeConfigError(f"MTU {mtu} cannot hold one flow record")

    def local_ports(self) -> list[int]:
        return [t.local_port() for t in self.transports]

    def _send(self, payloads: list[bytes], flows_per_payload: list[int]) -> None:
        for payload, nflows in zip(payloads, flows_per_payload, strict=True):
            index = self._datagrams
            self._datagrams += 1
            for t, st, link in zip(self.transports, self.stats, self._links, strict=True):
                if link.refusing:
                    self._hold(link, st, (index, payload, nflows))
                    continue
                self._send_one(t, st, link, (index, payload, nflows))

    def _send_one(self, t: Transport, st: DestinationStats, link: _Link,
                  item: tuple[int, bytes, int]) -> bool:
        """Sends one datagram; on ECONNREFUSED holds it (it was not sent). True if sent."""
        _, payload, nflows = item
        try:
            t.send(payload)
        except OSError as exc:
            self._count_error(st, exc.errno or 0, exc.strerror or "")
            if exc.errno == errno.ECONNREFUSED:
                link.refusing = True
                self._hold(link, st, item)
            else:
                st.flows_lost += nflows
            self._collector_missed_something()
            return False
        st.packets += 1
        st.bytes += len(payload)
        st.flows += nflows
        key = payload[:_MATCH_BYTES]
        link.recent[key] = item
        link.recent_order.append((key, item[0]))
        if len(link.recent_order) > RECENT_DATAGRAMS:
            # (a deque: deleting a dict's first key again and again is O(n) per call)
            old, index = link.recent_order.popleft()
            if old in link.recent and link.recent[old][0] == index:  # not sent again since
                del link.recent[old]
        return True

    def _count_error(self, st: DestinationStats, err: int, text: str) -> None:
        st.errors += 1
        name = errno.errorcode.get(err, str(err))
        st.errors_by_cause[name] = st.errors_by_cause.get(name, 0) + 1
        st.last_error = f"{name}: {text}"

    def _hold(self, link: _Link, st: DestinationStats, item: tuple[int, bytes, int]) -> None:
        bisect.insort(link.hold, item)  # by stream index (unique: payloads never compared)
        link.held_bytes += len(item[1])
        while link.held_bytes > HOLD_BYTES and len(link.hold) > 1:
            _, payload, nflows = link.hold.pop(0)
            link.held_bytes -= len(payload)
            st.flows_lost += nflows
        st.held = len(link.hold)

    def retry(self) -> None:
        """Called once per scan: collects ICMP refusals from the error queues, and for each
        refusing destination sends the oldest held datagram as a probe, or, when the last
        probe was not refused, everything held (in the order it was first sent)."""
        for t, st, link in zip(self.transports, self.stats, self._links, strict=True):
            probe_refused = False
            for head in t.refused():
                item = link.recent.pop(head[:_MATCH_BYTES], None)
                if head[:_MATCH_BYTES] == link.probe:
                    probe_refused = True
                st.refused += 1
                link.refusing = True
                if item is not None:
                    st.packets -= 1
                    st.bytes -= len(item[1])
                    st.flows -= item[2]
                    self._hold(link, st, item)
                else:  # sent too long ago to be matched: its flows are gone
                    self._count_error(st, 0, "ICMP error for a datagram no longer held")
            if not link.refusing:
                continue
            if link.probe is not None and not probe_refused and link.hold:
                link.refusing = False  # the collector took the probe: send everything
            link.probe = None
            pending, link.hold, link.held_bytes = link.hold, [], 0  # oldest first
            for i, item in enumerate(pending):
                if not self._send_one(t, st, link, item):  # refused again: held again
                    link.refusing = True  # (another error: the rest waits for a probe too)
                    for rest in pending[i + 1 :]:
                        self._hold(link, st, rest)
                    break
                st.resent += 1
                if link.refusing:  # one probe per scan while the destination refuses
                    link.probe = item[1][:_MATCH_BYTES]
                    for rest in pending[i + 1 :]:
                        self._hold(link, st, rest)
                    break
            if not link.hold and link.probe is None:
                link.refusing = False
            st.held = len(link.hold)

    def _collector_missed_something(self) -> None:
        """After a send error, templates and options go out again with the next packets.

        ECONNREFUSED reports that an earlier datagram met a closed port (the collector was not
        listening yet, or restarted): it may have been the one with the templates, and without
        them the collector cannot decode anything until the periodic refresh (20 packets or
        30 min later). At most once a second, so a destination that stays down does not put
        the templates into every packet the others get.
        """
        now = time.monotonic()
        if now - self._resent_after_error < RESEND_AFTER_ERROR_S:
            return
        self._resent_after_error = now
        if isinstance(self.encoder, V9Encoder | IPFIXEncoder):
            self.encoder.resend_templates()
        self._last_options_ns = None
        self._last_names_ns = None

    def _flows_in(self, payloads: list[bytes], template_id: int) -> list[int]:
        """Flow records in each payload (walks the sets; records have a fixed length)."""
        if self.protocol == 5:
            return [int.from_bytes(p[2:4], "big") for p in payloads]
        enc = self.encoder
        assert isinstance(enc, V9Encoder | IPFIXEncoder)
        reclen = enc.templates[template_id].record_length or 1
        counts = []
        for p in payloads:
            off, n = enc.header_size, 0
            while off + 4 <= len(p):
                set_id = int.from_bytes(p[off : off + 2], "big")
                length = int.from_bytes(p[off + 2 : off + 4], "big")
                if length < 4:
                    break
                if set_id == template_id:
                    n += (length - 4) // reclen
                off += length
            counts.append(n)
        return counts

    def export(self, flows: np.ndarray, epoch_offset_ns: int) -> int:
        """Encode and send ended flows (FLOW_DTYPE). Returns the number of flows encoded.

        Each flow goes out with the template of what it carries (IPv6, an MPLS label, a known
        direction); v5 has one record format and no IPv6.
        """
        batches, sent = self.encode_flows(flows, epoch_offset_ns)
        for payloads, counts in batches:
            self._send(payloads, counts)
        return sent

    def timed_export(self, flows: np.ndarray, epoch_offset_ns: int,
                     cpu: Callable[[], float]) -> dict[str, float]:
        """`export` timed in two stages with `cpu` (benchmarks): {"encode": s, "send": s}."""
        c0 = cpu()
        batches, _ = self.encode_flows(flows, epoch_offset_ns)
        c1 = cpu()
        for payloads, counts in batches:
            self._send(payloads, counts)
        return {"encode": c1 - c0, "send": cpu() - c1}

    def encode_flows(self, flows: np.ndarray,
                     epoch_offset_ns: int) -> tuple[list[tuple[list[bytes], list[int]]], int]:
        """Datagrams for ended flows, not sent yet: ([(payloads, flows in each)], flows)."""
        out: list[tuple[list[bytes], list[int]]] = []
        if len(flows) == 0:
            return out, 0
        flows = np.asarray(flows, FLOW_DTYPE)
        sent = 0
        is6 = flows["key"]["ipver"] == 6
        if self.protocol == 5:
            if is6.any():
                self.flows_unexportable += int(is6.sum())
            part = flows[~is6]
            if len(part):
                payloads = self.encoder.encode(flow_columns(part, epoch_offset_ns, False))
                out.append((payloads, self._flows_in(payloads, 0)))
            self.flows_exported += len(part)
            return out, len(part)
        if self.fast and all(p is not None for p in self.plans.values()):
            return self._encode_fast(flows, epoch_offset_ns)
        directions = flow_directions(flows, self.direction_mac)
        tids = TEMPLATE_IPV4 + is6.astype(np.int64) + _TPL_DIRECTION * (directions >= 0)
        if self.mpls:
            tids += _TPL_MPLS * (flows["val"]["mpls_depth"] > 0)
        for tid in np.unique(tids).tolist():
            sel = tids == tid
            part = flows[sel]
            cols = flow_columns(part, epoch_offset_ns, bool(tid & 1), directions[sel])
            payloads = self.encoder.encode(cols, tid)
            out.append((payloads, self._flows_in(payloads, tid)))
            sent += len(part)
        self.flows_exported += sent
        return out, sent

    def _encode_fast(self, flows: np.ndarray,
                     epoch_offset_ns: int) -> tuple[list[tuple[list[bytes], list[int]]], int]:
        """`encode_flows` through the numba plans, over the records' raw bytes."""
        enc = self.encoder
        assert isinstance(enc, V9Encoder | IPFIXEncoder)
        raw = raw_flows(flows)
        n = len(raw)
        tids = np.full(n, TEMPLATE_IPV4, np.int64)
        tids += raw[:, _IPVER_AT] == 6
        directions = np.full(n, -1, np.int8)
        if self.direction_mac is not None:
            mac = np.frombuffer(self.direction_mac, np.uint8)
            directions[(raw[:, _DST_MAC_AT : _DST_MAC_AT + 6] == mac).all(axis=1)] = 0
            directions[(raw[:, _SRC_MAC_AT : _SRC_MAC_AT + 6] == mac).all(axis=1)] = 1
            tids += _TPL_DIRECTION * (directions >= 0)
        if self.mpls:
            tids += _TPL_MPLS * (raw[:, _MPLS_DEPTH_AT] > 0)
        out: list[tuple[list[bytes], list[int]]] = []
        present = np.flatnonzero(np.bincount(tids - TEMPLATE_IPV4, minlength=8)) + TEMPLATE_IPV4
        for tid in present.tolist():
            rows = np.arange(n, dtype=np.int64) if len(present) == 1 else np.flatnonzero(tids == tid)
            plan = self.plans[tid]
            assert plan is not None
            out.append(encode_datagrams(enc, plan, raw, epoch_offset_ns, directions, SAMPLER_ID,
                                        rows))
        self.flows_exported += n
        return out, n

    def names_due(self, now_ns: int | None = None) -> bool:
        if self.protocol == 5:
            return False
        now_ns = self.clock() if now_ns is None else now_ns
        return self._last_names_ns is None or now_ns - self._last_names_ns >= self.names_interval_ns

    def send_interface_names(self, interfaces: Sequence[tuple[int, str, str]]) -> None:
        """Options data mapping ifIndex → interfaceName (82) and interfaceDescription (83), as
        ipt_netflow sends every 5 minutes: `interfaces` is (ifindex, name, description)."""
        if self.protocol == 5 or not interfaces:
            return
        self._last_names_ns = self.clock()
        scope = "scope_interface" if self.protocol == 9 else "in_if"
        cols = {
            scope: np.array([i for i, _, _ in interfaces], np.uint64),
            "if_name": [n for _, n, _ in interfaces],
            "if_desc": [d for _, _, d in interfaces],
        }
        payloads = self.encoder.encode(cols, TEMPLATE_INTERFACES)
        self._send(payloads, [0] * len(payloads))

    def options_due(self, now_ns: int | None = None) -> bool:
        if self.protocol == 5:
            return False
        now_ns = self.clock() if now_ns is None else now_ns
        return self._last_options_ns is None or now_ns - self._last_options_ns >= self.options_interval_ns

    def send_options(self, ignored_packets: int, ignored_bytes: int,
                     refusals: Sequence[Refusal] = ()) -> None:
        """Options data: sampler configuration (if sampling), system init time and version,
        exporter statistics, and what each stage refused (`TEMPLATE_REFUSALS`)."""
        if self.protocol == 5:
            return
        self._last_options_ns = self.clock()
        enc = self.encoder
        assert isinstance(enc, V9Encoder | IPFIXEncoder)
        payloads: list[bytes] = []
        if self.sampling:
            if self.protocol == 9:
                cols = {
                    "scope_system": np.array([enc.source_id], np.uint64),  # type: ignore[union-attr]
                    "sampler_id": SAMPLER_ID,
                    "sampler_mode": int(self.sampler_mode.ipfix_algorithm),
                    "sampler_random_interval": self.sampler_n,
                    "sampling_interval": self.sampler_n,
                    "sampling_algorithm": int(self.sampler_mode.ipfix_algorithm),
                }
            else:
                cols = {
                    "selector_id": np.array([SAMPLER_ID], np.uint64),
                    "selector_algorithm": _IPFIX_SELECTOR[self.sampler_mode],
                    "sampling_packet_interval": 1,
                    "sampling_packet_space": self.sampler_n - 1,
                }
            payloads += enc.encode(cols, TEMPLATE_SAMPLER)
        scope = ({"scope_system": enc.source_id} if isinstance(enc, V9Encoder)
                 else {"observation_domain_id": enc.observation_domain})
        system = {
            "system_init_time_ms": enc.boot_ns // 1_000_000,  # the base of v9 uptime times
            "observation_domain_name": VERSION_STRING,
            **scope,
        }
        payloads += enc.encode(system, TEMPLATE_SYSTEM)
        lost = max((s.flows_lost for s in self.stats), default=0)
        payloads += enc.encode_statistics(
            TEMPLATE_STATISTICS, ignored_packets=ignored_packets, ignored_bytes=ignored_bytes,
            not_sent_flows=lost,
        )
        if refusals:
            scope = "scope_cache" if self.protocol == 9 else "metering_process_id"
            payloads += enc.encode({
                scope: np.array([int(r.stage) for r in refusals], np.uint64),
                "ignored_packets_total": np.array([r.packets for r in refusals], np.uint64),
                "ignored_bytes_total": np.array([r.bytes for r in refusals], np.uint64),
                "ignored_data_record_total": np.array([r.records for r in refusals], np.uint64),
            }, TEMPLATE_REFUSALS)
        self._send(payloads, [0] * len(payloads))

    def close(self) -> None:
        """Closes the sockets; what is still held for a refusing destination is lost."""
        for t, st, link in zip(self.transports, self.stats, self._links, strict=True):
            st.flows_lost += sum(item[2] for item in link.hold)
            link.hold.clear()
            link.held_bytes = 0
            st.held = 0
            t.close()


def _system_template(version: int) -> Template:
    """System options, like ipt_netflow's: when the exporter started (the zero of v9 uptime
    times; IPFIX has no uptime in its header) and its name and version."""
    if version == 9:
        return options_template_for(
            ["scope_system"], ["system_init_time_ms", ("observation_domain_name", _V9_NAME_LENGTH)],
            TEMPLATE_SYSTEM,
        )
    return options_template_for(["observation_domain_id"],
                                ["system_init_time_ms", "observation_domain_name"], TEMPLATE_SYSTEM)
