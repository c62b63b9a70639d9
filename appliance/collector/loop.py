"""`Collector`: receivers → decoder → whatever consumes FlowBatches, plus its statistics.

Live UDP and pcap replay go through the same `process` path; only the source of
PacketBatches and of the clock differ.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from appliance.collector.config.devices import load_devices
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.decode.decoder import Decoder
from appliance.collector.decode.dump import FlowDumper
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.receive.packets import PacketBatch
from appliance.collector.receive.pcapfile import PcapReader
from appliance.collector.receive.udp import UdpReceiver

__all__ = ["Collector", "FlowSink"]

log = logging.getLogger("mirrorflow.collector")

FlowSink = Callable[[FlowBatch], None]

_SMALL_BATCH = 32  # datagrams
_LINGER_S = 0.0005
_FINAL_DRAIN_BATCHES = 4096


class Collector:
    """The collector's main loop.

    Args:
        config: listen addresses, devices, template file, dumps, statistics interval.
        sinks: called with every decoded FlowBatch (valid only during the call).
        clock: monotonic clock for periodic work (injectable).
    """

    def __init__(
        self,
        config: CollectorConfig,
        sinks: Iterable[FlowSink] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        devices = load_devices(config.devices_file) if config.devices_file else []
        self.decoder = Decoder(
            devices=devices,
            template_file=config.templates_file,
            pending_max_age_s=config.pending_max_age_s,
            template_quota=int(config.template_quota),
            template_max_age_s=config.template_max_age_s,
            allowed_exporters=config.allowed_exporters,
        )
        self.dumper = FlowDumper(config.dump_flows, self.decoder, config.dump_format)
        self.sinks = list(sinks)
        #: called on every decoded batch before the sinks, to add columns (the enrichment stage)
        self.enrich: FlowSink | None = None
        if self.dumper.enabled:
            self.sinks.append(self.dumper.dump)
        self.clock = clock
        #: called on every periodic pass (live: at least every 0.5 s), e.g. to close windows
        self.tickers: list[Callable[[], None]] = []
        #: more statistics, each under its own key of `stats()` and logged on its own line
        #: (the monitoring objects register "monitoring")
        self.stats_sections: dict[str, Callable[[], dict[str, Any]]] = {}
        self.receiver: UdpReceiver | None = None
        self.records = 0
        self.batches = 0
        self._last_stats = clock()
        self._last_save = clock()
        self._last_records = 0

    # ---- the one path every packet takes ------------------------------------------------

    def process(self, packets: PacketBatch) -> int:
        """Decode a batch of datagrams and hand the flows to the sinks; returns records."""
        n = 0
        for batch in self.decoder.decode(packets):
            n += batch.n
            if self.enrich is not None:
                self.enrich(batch)
            for sink in self.sinks:
                sink(batch)
        self.records += n
        self.batches += 1
        self._periodic()
        return n

    def _periodic(self) -> None:
        for tick in self.tickers:
            tick()
        now = self.clock()
        if now - self._last_save >= 1.0 and self.decoder.templates_changed():
            self._save_templates()
            self._last_save = now
        if self.config.stats_interval_s and now - self._last_stats >= self.config.stats_interval_s:
            self.log_stats(now - self._last_stats)
            self._last_stats = now

    def _save_templates(self, final: bool = False) -> None:
        try:
            self.decoder.save_templates(final=final)
        except OSError as exc:
            log.error("cannot save templates to %s: %s", self.config.templates_file, exc)

    # ---- sources ------------------------------------------------------------------------

    def run_live(self) -> None:
        """Receive on the configured addresses until `stop()`."""
        self.receiver = UdpReceiver(self.config.listen, rcvbuf=int(self.config.rcvbuf_mb * 2**20))
        for addr in self.receiver.listeners:
            log.info("listening on %s (SO_RCVBUF granted %d bytes)", addr, self.receiver.rcvbuf_granted)
        try:
            for packets in self.receiver.run(timeout_s=0.5):
                if len(packets):
                    self.process(packets)
                    if len(packets) < _SMALL_BATCH:
                        # each batch has a fixed cost (~40 µs): under load, let the socket
                        # buffer gather a bigger one; at low rates the pause costs nothing
                        time.sleep(_LINGER_S)
                else:
                    self._periodic()
            # what the kernel accepted before the stop is decoded, not dropped (bounded, in
            # case senders keep going)
            for _ in range(_FINAL_DRAIN_BATCHES):
                packets = self.receiver.receive(0)
                if not len(packets):
                    break
                self.process(packets)
        finally:
            self.close()

    def run_pcap(self, paths: Iterable[Path | str], ports: Iterable[int] | None = None) -> None:
        """Replay captures through the same path (packet timestamps are the receive times)."""
        for path in paths:
            with PcapReader(path, ports=list(ports) if ports else None) as reader:
                for packets in reader.batches():
                    self.process(packets)
        self._save_templates()

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()

    def _write_stats(self, stats: dict[str, Any]) -> None:
        path = self.config.stats_file
        assert path is not None
        try:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(stats, indent=1))
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write statistics to %s: %s", path, exc)

    def close(self) -> None:
        self._save_templates(final=True)  # with the exporters' sequence numbers: a restart's gap is counted
        if self.receiver is not None:
            self.receiver.close()
        self.dumper.close()

    # ---- statistics ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Everything the collector counts, for logs and the live API."""
        out: dict[str, Any] = {
            "records": self.records,
            "batches": self.batches,
            "pending_sets": self.decoder.pending_sets,
            "refused_exporter_packets": self.decoder.refused_exporter_packets,
            "exporters": [
                {"address": e.address, **e.counters} for e in self.decoder.exporter_stats()
            ],
            "sampling_rates": [
                {"exporter": k[0], "source_id": k[1], "sampler_id": k[2], "rate": v}
                for k, v in self.decoder.sampling_rates().items()
            ],
        }
        if self.receiver is not None:
            out["listen"] = [str(a) for a in self.receiver.listeners]
            out["rcvbuf_granted"] = self.receiver.rcvbuf_granted
            out["socket_drops"] = self.receiver.drops()
            out["truncated_datagrams"] = self.receiver.truncated
        for name, section in self.stats_sections.items():
            try:
                out[name] = section()
            except Exception:  # statistics must never stop the collector
                log.exception("statistics of %s failed", name)
        return out

    def log_stats(self, interval_s: float) -> None:
        """Log one line for the collector and one per exporter; write the stats file."""
        rate = (self.records - self._last_records) / interval_s if interval_s > 0 else 0.0
        self._last_records = self.records
        s = self.stats()
        if self.config.stats_file is not None:
            self._write_stats(s)
        log.info(
            "%.0f records/s, %d records total, %d pending sets, socket drops %s",
            rate, self.records, s["pending_sets"], s.get("socket_drops", "n/a"),
        )
        for e in s["exporters"]:
            nonzero = " ".join(f"{k}={v}" for k, v in e.items() if k != "address" and v)
            log.info("exporter %s: %s", e["address"], nonzero)
        for name in self.stats_sections:
            section = s.get(name)
            if isinstance(section, dict):
                log.info("%s: %s", name, _summary(section))


def _summary(section: dict[str, Any]) -> str:
    """``k=v`` for the numbers of a statistics section; maps (per-object counts) as ``k[a=1 b=2]``."""
    parts = []
    for k, v in section.items():
        if isinstance(v, dict):
            parts.append(f"{k}[" + " ".join(f"{a}={b}" for a, b in v.items()) + "]")
        elif isinstance(v, (int, float, str)) and not isinstance(v, bool):
            parts.append(f"{k}={v}")
    return " ".join(parts)
