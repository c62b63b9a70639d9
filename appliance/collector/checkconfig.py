"""Loading (and checking) the monitoring configuration; ``mirrorflow check-config`` and ``db load``.

`load_runtime` reads IP lists, devices.conf and the mo-dir tree and either returns all of
it or raises `ConfigErrors` with every problem found. The collector calls it at start
(refusing to start on errors) and on SIGHUP (keeping the running configuration on errors);
``check-config`` prints the same errors.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import MirrorflowError
from appliance.collector.config import CollectorConfig, load_config
from appliance.collector.devices import Device, load_devices
from appliance.collector.filter import FilterError, IPLists, compile_filter
from appliance.collector.jsonc import ConfigError
from appliance.collector.objects import ConfigErrors, MonitoringObject, load_objects

__all__ = ["Runtime", "load_runtime", "build_exporters", "add_parsers", "DEFAULT_CONFIG", "DEFAULT_SPOOL"]

DEFAULT_CONFIG = Path("/etc/mirrorflow/collector.conf")
DEFAULT_SPOOL = Path("/var/lib/mirrorflow/spool")


@dataclass(slots=True)
class Runtime:
    """A complete, valid monitoring configuration."""

    objects: list[MonitoringObject] = field(default_factory=list)
    iplists: Any = None
    devices: list[Device] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_runtime(cfg: CollectorConfig) -> Runtime:
    """IP lists, devices.conf and monitoring objects, all validated.

    Raises:
        ConfigErrors: every problem found (file:line:column and what to do).
    """
    errors: list[ConfigError] = []
    rt = Runtime()
    rt.iplists = IPLists.empty()
    if cfg.iplists_dir is not None:
        try:
            rt.iplists = IPLists.load(cfg.iplists_dir)
        except FilterError as exc:
            errors.append(exc)
    if cfg.devices_file is not None:
        try:
            rt.devices = load_devices(cfg.devices_file)
        except ConfigError as exc:
            errors.append(exc)
        for i, dev in enumerate(rt.devices):
            for text in dev.mark:
                try:
                    compile_filter(text, rt.iplists, f"{cfg.devices_file} entry {i + 1} mark")
                except FilterError as exc:
                    errors.append(exc)
    if cfg.mo_dir is not None:
        try:
            rt.objects = load_objects(cfg.mo_dir, rt.iplists, rt.warnings)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    return rt


def build_exporters(cfg: CollectorConfig) -> list[Any]:
    """The window sinks the config asks for: .sql files (export-dir) and/or PostgreSQL (db)."""
    out: list[Any] = []
    if cfg.export_dir is not None:
        from appliance.collector.export_sql import SqlFileWriter

        out.append(SqlFileWriter(cfg.export_dir))
    if cfg.db:
        from appliance.collector.export_pg import PgExporter
        from appliance.collector.spool import Spool

        spool = Spool(cfg.spool_dir or DEFAULT_SPOOL, int(cfg.spool_max_mb * 2**20), int(cfg.spool_max_files))
        out.append(PgExporter(cfg.db, spool))
    return out


# ---- command line ---------------------------------------------------------------------------

CHECK_EPILOG = """\
examples:
  mirrorflow check-config -c /etc/mirrorflow/collector.conf
  mirrorflow check-config --mo-dir ./mo --iplists-dir ./iplists

Checks the collector config, devices.conf, the IP lists and every mo.conf (JSON syntax,
filters, window fields, names, times, limits) and prints each problem as FILE:LINE:COLUMN:
message. Exit status 1 if anything is wrong: the collector would refuse to start (or, on
SIGHUP, keep its running configuration).
"""

DB_EPILOG = """\
examples:
  mirrorflow db load                                   # spool and DSN from the collector config
  mirrorflow db load --spool /var/lib/mirrorflow/spool --db "dbname=mirrorflow"
  mirrorflow db load --spool /var/lib/mirrorflow/spool/failed --db "dbname=mirrorflow"

Loads spooled windows oldest first, each in one transaction that also records its window
id, so running it while the collector loads too (or twice) never duplicates a window.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``check-config`` and ``db`` on the ``mirrorflow`` command."""
    p = sub.add_parser("check-config", help="validate the collector config, devices, IP lists and monitoring objects",
                       epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("-c", "--config", type=Path, help=f"collector config (default {DEFAULT_CONFIG} if it exists)")
    p.add_argument("--mo-dir", type=Path, help="monitoring objects directory (overrides mo-dir)")
    p.add_argument("--iplists-dir", type=Path, help="IP lists directory (overrides iplists-dir)")
    p.add_argument("--devices", type=Path, help="devices.conf (overrides devices)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only, no warnings or summary")
    p.set_defaults(func=run_check_config)

    db = sub.add_parser("db", help="database maintenance: load spooled windows by hand",
                        epilog=DB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    dbsub = db.add_subparsers(dest="db_command", metavar="COMMAND")
    load = dbsub.add_parser("load", help="load every spooled window into PostgreSQL (exactly once)",
                            epilog=DB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    load.add_argument("-c", "--config", type=Path, help="collector config (for db and spool-dir)")
    load.add_argument("--spool", type=Path, help=f"spool directory (default spool-dir or {DEFAULT_SPOOL})")
    load.add_argument("--db", metavar="DSN", help="PostgreSQL connection string (default: db of the config)")
    load.set_defaults(func=run_db_load)
    db.set_defaults(func=lambda args: (db.print_help(), 2)[1])


def _config(path: Path | None) -> CollectorConfig:
    if path is None:
        return load_config(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else CollectorConfig()
    return load_config(path)


def run_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for attr in ("mo_dir", "iplists_dir"):
        if getattr(args, attr) is not None:
            setattr(cfg, attr, getattr(args, attr))
    if args.devices is not None:
        cfg.devices_file = args.devices
    if cfg.mo_dir is None and cfg.devices_file is None and cfg.iplists_dir is None:
        print("mirrorflow check-config: nothing to check: give -c FILE or --mo-dir DIR", file=sys.stderr)
        return 2
    try:
        rt = load_runtime(cfg)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        print(f"{len(exc.errors)} error(s): fix them, then run check-config again", file=sys.stderr)
        return 1
    if not args.quiet:
        for w in rt.warnings:
            print(w, file=sys.stderr)
        nwin = sum(len(o.windows) for o in rt.objects)
        navg = sum(len(getattr(o, "averages", ())) for o in rt.objects)
        nlev = sum(len(m.levels) for o in rt.objects for m in getattr(o, "averages", ()))
        print(f"configuration OK: {len(rt.objects)} monitoring objects, {nwin} windows, "
              f"{len(rt.iplists)} IP lists, {len(rt.devices)} devices, "
              f"{navg} moving averages ({nlev} levels)")  # fmt: skip
    return 0


def run_db_load(args: argparse.Namespace) -> int:
    from appliance.collector.export_pg import PgExporter
    from appliance.collector.spool import Spool

    try:
        cfg = _config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    dsn = args.db or cfg.db
    if not dsn:
        print("mirrorflow db load: no database: give --db DSN or set \"db\" in the config", file=sys.stderr)
        return 2
    spool_dir = args.spool or cfg.spool_dir or DEFAULT_SPOOL
    if not spool_dir.is_dir():
        print(f"mirrorflow db load: {spool_dir}: no such spool directory", file=sys.stderr)
        return 2
    spool = Spool(spool_dir, max_bytes=1 << 62, max_files=1 << 62)
    total = spool.files
    exp = PgExporter(dsn, spool, start=False)
    try:
        exp.drain(stop_when_set=False)
    except (MirrorflowError, Exception) as exc:  # noqa: BLE001 - report any database error
        print(f"mirrorflow db load: {type(exc).__name__}: {exc}".rstrip(), file=sys.stderr)
        print(f"loaded {exp.loaded} of {total} windows before the error; {spool.files} remain in {spool_dir}",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        exp.loader.close()
    print(f"loaded {exp.loaded} windows ({exp.loaded_rows} rows), {exp.duplicates} already in the database, "
          f"{exp.failed} refused (moved to {spool_dir / 'failed'})")  # fmt: skip
    return 1 if exp.failed else 0


# ---- wiring into the collector --------------------------------------------------------------


class Monitoring:
    """Monitoring objects attached to a running `Collector`, with SIGHUP reload.

    Args:
        collector: the collector whose batches the objects see.
        cfg: where mo-dir, iplists-dir, devices and the exporters are configured.
        runtime: an already validated configuration (from `load_runtime`).
        live: close windows by the wall clock too (not on replay: there the packets' time rules).
    """

    def __init__(self, collector: Any, cfg: CollectorConfig, runtime: Runtime, live: bool) -> None:
        import threading
        import time

        from appliance.collector.dump import FlowDumper
        from appliance.collector.monitor import Monitor

        self.cfg = cfg
        self.collector = collector
        self.monitor = Monitor(runtime.objects, build_exporters(cfg),
                               dumper_factory=lambda target: FlowDumper(target, collector.decoder))  # fmt: skip
        self._reload = threading.Event()
        self._live = live
        #: the IP lists of the running configuration (the live API's flow filters name them)
        self.iplists = runtime.iplists
        #: +1 per applied reload, and when (the live API shows both)
        self.generation = 1
        self.loaded_at = time.time()
        self._time_ns = time.time_ns
        collector.sinks.insert(0, self.monitor)
        collector.tickers.append(self.tick)
        from appliance.collector.alerts import attach

        self.averages = attach(collector, self.monitor, cfg, runtime.objects, live)
        if hasattr(collector, "stats_sections"):
            collector.stats_sections["monitoring"] = self.monitor.stats

    def request_reload(self) -> None:
        """Safe from a signal handler: the reload happens on the collector's thread."""
        self._reload.set()

    def tick(self) -> None:
        if self._reload.is_set():
            self._reload.clear()
            self.reload()
        if self._live:
            self.monitor.tick(self._time_ns())

    def reload(self) -> bool:
        """Re-read objects, filters, windows, IP lists and devices; all or nothing."""
        import logging

        log = logging.getLogger("mirrorflow.collector")
        try:
            rt = load_runtime(self.cfg)
        except ConfigErrors as exc:
            log.error("reload refused, the running configuration stays: %d error(s):\n%s", len(exc.errors), exc)
            return False
        self.monitor.replace(rt.objects)
        self.averages.replace(rt.objects)
        self.collector.decoder.set_devices(rt.devices)
        self.iplists = rt.iplists
        self.generation += 1
        self.loaded_at = self._time_ns() / 1e9
        for w in rt.warnings:
            log.warning("%s", w)
        log.info("reloaded: %d monitoring objects, %d windows, %d IP lists, %d devices", len(rt.objects),
                 sum(len(o.windows) for o in rt.objects), len(rt.iplists), len(rt.devices))  # fmt: skip
        return True

    def close(self) -> None:
        self.averages.close()
        self.monitor.close()
