"""The probe's main loop: drain the kernel, apply NetFlow semantics, export, keep statistics.

`Probe.scan()` is one pass and takes the time as an argument, so tests drive it with a fake
clock over a `MemoryFlowCache`; `run()` adds the interval loop, signals and attachment.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from appliance.probe.config import ProbeSettings, parse_key_fields, parse_mac, parse_sampler
from appliance.probe.exporter import Exporter, Refusal, Stage, parse_destination
from appliance.probe.flowtable import FlowTable
from appliance.probe.kernel import FlowCache, KernelSettings, SelfExport
from appliance.probe.records import Counter, Feature, FlowEndReason, SamplerMode
from appliance.probe.stats import RateMeter, counters_dict, write_snapshot

__all__ = ["Probe", "Clock", "SystemClock", "build_exporter"]

log = logging.getLogger(__name__)

FILL_WARNING = 0.8
#: kernel map fill at a drain above which the next scan comes 4x sooner
MAP_FILL_FAST_SCAN = 0.5
_S = 1_000_000_000


class Clock(Protocol):
    def monotonic_ns(self) -> int: ...

    def time_ns(self) -> int: ...


class SystemClock:
    """CLOCK_MONOTONIC is what bpf_ktime_get_ns() returns, so kernel times compare directly."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time_ns(self) -> int:
        return time.time_ns()


def build_exporter(s: ProbeSettings, clock: Clock, transports: Any = None) -> Exporter:
    return Exporter(
        [parse_destination(d) for d in s.destinations], s.protocol, transports=transports,
        sampler=parse_sampler(s.sampler), mtu=s.mtu, source_id=s.source_id,
        template_refresh_packets=s.template_refresh_packets,
        template_refresh_seconds=s.template_refresh_seconds,
        options_interval_s=s.options_interval, names_interval_s=s.names_interval, mpls=s.mpls,
        direction_mac=parse_mac(s.direction_mac) if s.direction_mac else None,
        sndbuf=s.sndbuf, clock=clock.time_ns,
    )


class Probe:
    """Drain → flow table → export, plus statistics.

    Args:
        settings: validated settings.
        cache: the kernel flow cache (or a MemoryFlowCache).
        exporter: where ended flows go.
        clock: monotonic (kernel time base) and wall clock.
        warn: called with a message when the map or table passes 80 % fill.
    """

    def __init__(self, settings: ProbeSettings, cache: FlowCache, exporter: Exporter,
                 clock: Clock | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.exporter = exporter
        self.clock = clock or SystemClock()
        self.warn = warn or log.warning
        self.sampler = parse_sampler(settings.sampler)
        tcp_end = settings.tcp_end_timeout
        self.table = FlowTable(
            settings.maxflows,
            active_timeout_ns=int(settings.active_timeout * _S),
            inactive_timeout_ns=int(settings.inactive_timeout * _S),
            tcp_end_timeout_ns=None if tcp_end is None else int(tcp_end * _S),
            counter_limit=2**32 - 1 if settings.protocol == 5 else 2**64 - 1,
            emergency_fill=settings.emergency_fill,
            emergency_target=max(0.05, settings.emergency_fill - 0.15),
        )
        self.started_mono = self.clock.monotonic_ns()
        self.epoch_offset_ns = self.clock.time_ns() - self.started_mono
        self.rates = RateMeter()
        self.map_fill = 0.0
        self.map_fill_peak = 0.0
        self._last_fill_warning = -(10**18)
        self.scans = 0
        self.flushes = 0  # on request (SIGUSR1)
        self.interfaces: list[str] = list(settings.interfaces)
        #: (ifindex, name, description) of the attached interfaces, for the names options
        self.interface_table: list[tuple[int, str, str]] = []
        #: follows the interfaces through netlink (links.LinkFollower, set by the CLI): polled
        #: before every pass, its state is the snapshot's "links"
        self.links: Any = None
        features = Feature(0)
        if settings.mpls:
            features |= Feature.MPLS
        if settings.macs:
            features |= Feature.MACS
        cache.configure(KernelSettings(self.sampler[0], self.sampler[1],
                                       parse_key_fields(settings.key), features))
        cache.set_self_export(self._self_export_entries())

    def _self_export_entries(self) -> list[SelfExport]:
        out = []
        for dest, port in zip(self.exporter.destinations, self.exporter.local_ports(), strict=True):
            addr = ipaddress.ip_address(dest.host)
            out.append(SelfExport(addr.version, addr.packed, dest.port, port))
        return out

    # --- one pass ------------------------------------------------------------------------

    def scan(self, now_mono_ns: int | None = None) -> int:
        """Drain, merge, expire, export. Returns the number of flows exported."""
        now = self.clock.monotonic_ns() if now_mono_ns is None else now_mono_ns
        self.exporter.retry()  # held datagrams are older than anything exported now
        drained = 0
        for keys, vals in self.cache.drain_chunks():
            drained += len(keys)
            self.table.merge(keys, vals)
        self._note_fill(drained, now)
        sent = 0
        for ended in self.table.expire_chunks(now):
            sent += self.exporter.export(ended, self.epoch_offset_ns)
        if self.exporter.options_due():
            self.send_options()
        if self.interface_table and self.exporter.names_due():
            self.exporter.send_interface_names(self.interface_table)
        self.scans += 1
        self.rates.add(now / _S, self._rate_values())
        return sent

    def flush(self, reason: FlowEndReason = FlowEndReason.FORCED_END) -> int:
        """Drain both kernel maps and export every flow (shutdown, or on demand)."""
        for _ in range(2):  # the swapped-out map and the one that was active
            for keys, vals in self.cache.drain_chunks():
                self.table.merge(keys, vals)
        sent = 0
        for ended in self.table.flush_chunks(reason):
            sent += self.exporter.export(ended, self.epoch_offset_ns)
        self.send_options()
        self.exporter.retry()
        return sent

    def close(self) -> None:
        """Closes the export sockets (the kernel cache belongs to the caller)."""
        self.exporter.close()

    def send_options(self) -> None:
        self.exporter.send_options(
            ignored_packets=sum(r.packets for r in self.refusals()),
            ignored_bytes=sum(r.bytes for r in self.refusals()),
            refusals=self.refusals(),
        )

    def refusals(self) -> list[Refusal]:
        """What each stage refused because it was full, since the start."""
        k = self.cache.counters().sum(axis=0)
        ts = self.table.stats
        return [
            Refusal(Stage.KERNEL_MAP, int(k[Counter.REFUSED_PACKETS]),
                    int(k[Counter.REFUSED_BYTES]), int(k[Counter.REFUSED_PACKETS])),
            Refusal(Stage.FLOW_TABLE, ts.refused_packets, ts.refused_bytes, ts.refused_flows),
        ]

    def _note_fill(self, drained: int, now: int) -> None:
        maxflows = self.cache.maxflows
        self.map_fill = drained / maxflows
        self.map_fill_peak = max(self.map_fill_peak, self.map_fill)
        table_fill = len(self.table) / self.table.capacity
        fill = max(self.map_fill, table_fill)
        if fill >= FILL_WARNING and now - self._last_fill_warning >= 60 * _S:
            self._last_fill_warning = now
            where = "kernel map" if self.map_fill >= table_fill else "flow table"
            self.warn(
                f"{where} is {100 * fill:.0f} % full ({maxflows} entries in the kernel map, "
                f"{self.table.capacity} in the table): new flows will be refused and counted "
                "when it is full; raise --map-flows / --maxflows or shorten timeouts"
            )

    def _rate_values(self) -> dict[str, int]:
        k = self.cache.counters().sum(axis=0)
        return {
            "accounted_packets": int(k[Counter.ACCOUNTED_PACKETS]),
            "accounted_bytes": int(k[Counter.ACCOUNTED_BYTES]),
            "frames": int(k[Counter.FRAMES]),
            "refused_packets": int(k[Counter.REFUSED_PACKETS]),
            "flows_exported": self.exporter.flows_exported,
        }

    # --- statistics --------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        s, t = self.settings, self.table.stats
        mode, n = self.sampler
        return {
            "pid": os.getpid(),
            "uptime_s": (self.clock.monotonic_ns() - self.started_mono) / _S,
            "flushes": self.flushes,
            "protocol": s.protocol,
            "interfaces": self.interfaces,
            "links": self.links.snapshot() if self.links is not None else [],
            "attach": s.attach if s.attach == "tc" else f"xdp {s.xdp_mode}",
            "active_timeout_s": s.active_timeout,
            "inactive_timeout_s": s.inactive_timeout,
            "tcp_end_timeout_s": s.tcp_end_timeout,
            "maxflows": s.maxflows,
            "map_flows": self.cache.maxflows,
            "sampler": "off" if mode == SamplerMode.OFF else f"{mode.name.lower()}:{n}",
            "kernel": counters_dict(self.cache.counters()),
            "refused_by_stage": {r.stage.name.lower(): {"packets": r.packets, "bytes": r.bytes,
                                                         "records": r.records}
                                 for r in self.refusals()},
            "rates": self.rates.rates(),
            "map_fill_pct": 100 * self.map_fill,
            "map_fill_peak_pct": 100 * self.map_fill_peak,
            "table": {
                "active": self.table.active,
                "peak_active": t.peak_active,
                "flows_created": t.flows_created,
                "flows_expired": t.flows_expired,
                "refused_flows": t.refused_flows,
                "refused_packets": t.refused_packets,
                "refused_bytes": t.refused_bytes,
                "guard_splits": t.guard_splits,
                "emergency_expired": t.emergency_expired,
                "emergency_passes": t.emergency_passes,
                "by_reason": {FlowEndReason(r).name.lower(): c for r, c in t.by_reason.items()},
            },
            "export": {
                "flows_exported": self.exporter.flows_exported,
                "flows_unexportable": self.exporter.flows_unexportable,
                "messages": self.exporter.encoder.messages_sent,
                "destinations": [
                    {"destination": str(d), "packets": st.packets, "bytes": st.bytes,
                     "flows": st.flows, "errors": st.errors,
                     "errors_by_cause": dict(st.errors_by_cause), "flows_lost": st.flows_lost,
                     "last_error": st.last_error, "refused": st.refused, "held": st.held,
                     "resent": st.resent}
                    for d, st in zip(self.exporter.destinations, self.exporter.stats, strict=True)
                ],
            },
        }

    # --- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event, stats_path: Path | None = None,
            flush_now: threading.Event | None = None) -> None:
        """Scan every `scan_interval` until `stop` is set (the caller flushes then).

        Args:
            stop: set by SIGTERM/SIGINT.
            stats_path: where the statistics snapshot is written after every scan.
            flush_now: set by SIGUSR1: the next pass exports every flow (like ipt_netflow's
                flush=1) instead of only the expired ones, and the probe carries on.
        """
        interval = self.settings.scan_interval
        next_t = time.monotonic()
        while not stop.is_set():
            if self.links is not None:
                self.links.poll()
            if flush_now is not None and flush_now.is_set():
                flush_now.clear()
                n = self.flush()
                self.flushes += 1
                log.info("flush requested: exported %d flows", n)
            else:
                self.scan()
            if stats_path is not None:
                write_snapshot(stats_path, self.snapshot())
            # The kernel map holds what arrives between two scans: when it is filling up,
            # drain it sooner (down to a quarter of the interval) rather than refuse packets.
            step = interval / 4 if self.map_fill > MAP_FILL_FAST_SCAN else interval
            next_t = max(next_t + step, time.monotonic() - interval)
            stop.wait(max(0.0, next_t - time.monotonic()))
