"""The one place where the collector's stages are built from the config and wired together.

::

    receive ──► decode ──► monitoring (objects → fixed windows → exporters)
      (UDP,       (Decoder,     │            └─► moving averages → alerts, scripts
       pcap)       dumps)       └─► live state (flow tails, counts) ──► live API
                                                   ▲ closed windows, per-object rows

`Collector` (`loop`) receives and decodes and calls what it is handed; `Monitoring` is the
monitoring stage; `LiveState` counts for the API. None of them knows of the others: every
connection between stages is made here, in `Pipeline.__init__`, and a SIGHUP reload is
applied here too, on the collector's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.collector.api.archive import ArchiveApi
from appliance.collector.api.livestate import LiveState
from appliance.collector.api.server import ApiSettings, LiveApi
from appliance.collector.config.devices import load_devices
from appliance.collector.config.objects import ConfigErrors
from appliance.collector.config.runtime import Runtime, load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.decode.decoder import Decoder
from appliance.collector.decode.dump import FlowDumper
from appliance.collector.enrich import Enricher, unprovided
from appliance.collector.export.archive import ArchiveSettings, FlowArchive
from appliance.collector.export.archive_retention import ArchiveRetention
from appliance.collector.export.postgres import PgExporter
from appliance.collector.export.spool import DEFAULT_SPOOL, Spool
from appliance.collector.export.sqlfile import SqlFileWriter
from appliance.collector.filter import IPLists
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.loop import Collector, FlowSink
from appliance.collector.monitoring.actions import ScriptRunner
from appliance.collector.monitoring.alerts import MovingAverages, ReplaySlicer
from appliance.collector.monitoring.monitor import Monitor, WindowExporter

__all__ = ["Monitoring", "Pipeline", "build_exporters"]

log = logging.getLogger("mirrorflow.collector")


def build_exporters(cfg: CollectorConfig) -> list[WindowExporter]:
    """The window exporters the config asks for: .sql files (export-dir) and/or PostgreSQL (db)."""
    out: list[WindowExporter] = []
    if cfg.export_dir is not None:
        out.append(SqlFileWriter(cfg.export_dir))
    if cfg.db:
        spool = Spool(cfg.spool_dir or DEFAULT_SPOOL, int(cfg.spool_max_mb * 2**20), int(cfg.spool_max_files))
        out.append(PgExporter(cfg.db, spool))
    return out


class Monitoring:
    """The monitoring stage: objects' filters and windows, moving averages and their alerts.

    Args:
        cfg: exporters, notifications-dir and script timeout.
        runtime: an already validated configuration (from `load_runtime`).
        decoder: the decoder whose records per-object dumps print.
        live: close windows and tick the averages by the wall clock; on replay the packets'
            time rules (the monitor is fed through a `ReplaySlicer`).
    """

    def __init__(self, cfg: CollectorConfig, runtime: Runtime, decoder: Decoder, live: bool) -> None:
        self.live = live
        self.monitor = Monitor(runtime.objects, build_exporters(cfg),
                               dumper_factory=lambda target: FlowDumper(target, decoder))
        notif = cfg.notifications_dir
        if notif is not None and any(o.averages for o in runtime.objects):
            try:
                Path(notif).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.error("notifications-dir %s: %s", notif, exc)
        self.averages = MovingAverages(runtime.objects, self.monitor.set_extended, notif,
                                       ScriptRunner(timeout_s=cfg.script_timeout_s),
                                       clock=time.time_ns if live else None)
        self.monitor.row_sinks.append(self.averages.add)
        #: what the collector hands every batch to
        self.sink: FlowSink = self.monitor
        if not live and self.averages.averages:
            self.sink = ReplaySlicer(self.monitor, self.averages)
        #: the IP lists of the running configuration (the live API's flow filters name them)
        self.iplists: IPLists = runtime.iplists
        #: +1 per applied reload, and when (the live API shows both)
        self.generation = 1
        self.loaded_at = time.time()

    def tick(self) -> None:
        if self.live:
            self.monitor.tick(time.time_ns())
            self.averages.tick()

    def replace(self, runtime: Runtime) -> None:
        self.monitor.replace(runtime.objects)
        self.averages.replace(runtime.objects)
        self.iplists = runtime.iplists
        self.generation += 1
        self.loaded_at = time.time()

    def close(self) -> None:
        """The last windows first (SIGTERM must not lose them to a slow script), then the
        averages, whose scripts get at most a few seconds (actions.STOP_GRACE_S)."""
        self.monitor.close()
        self.averages.close()


class Pipeline:
    """receive → decode → monitoring / dumps / live state → exporters and the live API.

    Args:
        cfg: the collector config (listen addresses, devices, mo-dir, exporters, API keys).
        runtime: the validated monitoring configuration; None runs without monitoring objects.
        live: UDP with the wall clock (True) or a capture replay whose packets' time rules.
        api: live-state and HTTP settings; None: no live state and no API.
        archive: where every flow is kept as Parquet; None: no archive.
        clock: monotonic clock of the collector's periodic work (injectable).
    """

    def __init__(self, cfg: CollectorConfig, runtime: Runtime | None = None, *, live: bool = True,
                 api: ApiSettings | None = None, archive: ArchiveSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        for w in cfg.warnings + (runtime.warnings if runtime is not None else []):
            log.warning("%s", w)
        self.collector = Collector(cfg, clock=clock)
        #: GeoIP/ASN enrichment (cfg.geoip): columns added to every batch before the sinks
        devices = (runtime.devices if runtime is not None
                   else (load_devices(cfg.devices_file) if cfg.devices_file else []))
        self.enricher: Enricher | None = None
        if cfg.geoip or cfg.networks or any(d.interfaces for d in devices):
            self.enricher = Enricher(cfg.geoip, cfg.networks, devices)
        if runtime is not None:
            missing = unprovided(runtime.objects, self._provides(devices))
            if missing:
                raise ConfigErrors(missing)
        self.monitoring: Monitoring | None = None
        if runtime is not None:
            self.monitoring = Monitoring(cfg, runtime, self.collector.decoder, live)
        self.live: LiveState | None = None
        self.api: LiveApi | None = None
        if api is not None:
            self.live = LiveState(self.collector, self.monitoring, flows_per_object=api.flows,
                                  probe_stats=api.probe_stats, probe_addresses=api.probe_addresses,
                                  flows_interval_s=api.flows_interval_s, interval_s=api.interval_s)
            self.api = LiveApi(self.live, api)
        self._live = live
        self.archive: FlowArchive | None = None
        self.retention: ArchiveRetention | None = None
        if archive is not None:
            # age counts from the wall clock live, from the newest archived flow on a replay
            self.retention = ArchiveRetention(archive, clock=time.time if live else None)
            self.archive = FlowArchive(archive, self.collector.decoder.exporter_address,
                                       retention=self.retention.run, on_closed=self.retention.add)
            self.retention.run()
            if self.api is not None:
                self.api.archive = ArchiveApi(archive.directory)
        self._reload = threading.Event()
        self._closed = False

        # the wiring, in the order each batch and each tick takes
        sinks: list[FlowSink] = []
        if self.monitoring is not None:
            sinks.append(self.monitoring.sink)
        if self.collector.dumper.enabled:
            sinks.append(self.collector.dumper.dump)
        if self.archive is not None and self.retention is not None:
            sinks.append(self.archive.write)
            archive_stats, retention_stats = self.archive.stats, self.retention.stats
            self.collector.stats_sections["archive"] = lambda: {**archive_stats(), **retention_stats()}
        if self.live is not None:
            sinks.append(self.live.on_batch)
            if self.monitoring is not None:
                self.monitoring.monitor.row_sinks.append(self.live.on_rows)
                self.monitoring.monitor.exporters.append(self.live.on_window)
        self.collector.sinks = sinks
        if self.enricher is not None:
            self.collector.enrich = self.enricher
            self.collector.stats_sections["geoip"] = self.enricher.stats
        self.collector.tickers = [self.tick]
        if self.monitoring is not None:
            self.collector.stats_sections["monitoring"] = self.monitoring.monitor.stats
            self.collector.stats_sections["mavg"] = self.monitoring.averages.stats

    def _provides(self, devices: list) -> frozenset[str]:
        """The enriched columns the databases and these devices.conf entries provide."""
        ifs = {"in_if_name", "out_if_name"}
        have = self.enricher.provides - ifs if self.enricher is not None else frozenset()
        return frozenset(have | (ifs if any(d.interfaces for d in devices) else set()))

    # ---- running ------------------------------------------------------------------------

    def process(self, batch: FlowBatch) -> None:
        """Hand one decoded batch to every sink (what the collector does after decoding)."""
        for sink in self.collector.sinks:
            sink(batch)

    def tick(self) -> None:
        """The periodic work of the collector's thread: a pending reload, then windows and averages by
        the wall clock (live), then the live state's publishing."""
        if self._reload.is_set():
            self._reload.clear()
            if self.archive is not None:
                self.archive.rotate()  # SIGHUP closes the open archive file
            self.reload()
        if self.monitoring is not None:
            self.monitoring.tick()
        if self.archive is not None and self._live:
            self.archive.tick()
        if self.live is not None:
            self.live.tick()

    def request_reload(self) -> None:
        """Safe from a signal handler: the reload happens on the collector's thread."""
        self._reload.set()

    def reload(self) -> bool:
        """Re-read objects, filters, windows, IP lists and devices; all or nothing (SIGHUP).
        The GeoIP/ASN databases reload in the background (the loaded ones serve until then)."""
        if self.enricher is not None:
            self.enricher.reload()
        if self.cfg.mo_dir is None and self.cfg.devices_file is None and self.cfg.iplists_dir is None:
            return False
        try:
            rt = load_runtime(self.cfg)
        except ConfigErrors as exc:
            log.error("reload refused, the running configuration stays: %d error(s):\n%s", len(exc.errors), exc)
            return False
        missing = unprovided(rt.objects, self._provides(rt.devices))
        if missing:
            log.error("reload refused, the running configuration stays:\n%s", ConfigErrors(missing))
            return False
        if self.monitoring is not None:
            self.monitoring.replace(rt)
        self.collector.decoder.set_devices(rt.devices)
        if self.enricher is not None:
            self.enricher.set_interfaces(rt.devices)
        elif any(d.interfaces for d in rt.devices):  # interface names appeared: the stage starts now
            self.enricher = self.collector.enrich = Enricher([], None, rt.devices)
        for w in rt.warnings:
            log.warning("%s", w)
        log.info("reloaded: %d monitoring objects, %d windows, %d IP lists, %d devices", len(rt.objects),
                 sum(len(o.windows) for o in rt.objects), len(rt.iplists), len(rt.devices))
        return True

    def start_api(self) -> None:
        """Publish a first snapshot and serve the API; a busy address only costs the API."""
        if self.api is None:
            return
        try:
            self.api.start()
        except OSError as exc:
            log.error("live API not started: cannot listen on %s: %s (set api / --api to another "
                      "ADDR:PORT, or off)", self.api.settings.address, exc)

    def run_live(self) -> None:
        """Receive on the configured addresses until `stop`, then close everything."""
        try:
            self.collector.run_live()
        finally:
            self.close()

    def run_pcap(self, paths: list[Path], ports: list[int] | None = None) -> None:
        """Replay captures, then close (the last windows of the capture are exported too)."""
        try:
            self.collector.run_pcap(paths, ports)
        finally:
            self.close()

    def stop(self) -> None:
        self.collector.stop()

    def close(self) -> None:
        """Idempotent: collector, then monitoring (last windows exported), then the API."""
        if self._closed:
            return
        self._closed = True
        self.collector.close()
        if self.archive is not None:
            self.archive.close()
        if self.monitoring is not None:
            self.monitoring.close()
        if self.api is not None:
            self.api.close()
