"""``mirrorflow check-config`` (the errors `config.load_runtime` finds) and ``mirrorflow db load``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance import MirrorflowError
from appliance.collector.config import CollectorConfig, ConfigError, ConfigErrors, load_config, load_runtime
from appliance.collector.export.spool import DEFAULT_SPOOL

__all__ = ["add_parsers", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = Path("/etc/mirrorflow/collector.conf")


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
                       epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", type=Path, help=f"collector config (default {DEFAULT_CONFIG} if it exists)")
    p.add_argument("--mo-dir", type=Path, help="monitoring objects directory (overrides mo-dir)")
    p.add_argument("--iplists-dir", type=Path, help="IP lists directory (overrides iplists-dir)")
    p.add_argument("--devices", type=Path, help="devices.conf (overrides devices)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only, no warnings or summary")
    p.set_defaults(func=run_check_config)

    db = sub.add_parser("db", help="database maintenance: load spooled windows by hand",
                        epilog=DB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    dbsub = db.add_subparsers(dest="db_command", metavar="COMMAND")
    load = dbsub.add_parser("load", help="load every spooled window into PostgreSQL (exactly once)",
                            epilog=DB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    if not args.quiet:
        for w in cfg.warnings:
            print(w, file=sys.stderr)
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
    from appliance.collector.enrich import GeoError, declared_provides, unprovided

    try:  # GeoIP/ASN files, the networks file, interface names: what the objects use must be there
        missing = unprovided(rt.objects, declared_provides(cfg.geoip, cfg.networks, rt.devices))
    except GeoError as exc:
        missing = [ConfigError(str(exc).split(":", 1)[0], 0, 0, str(exc).split(": ", 1)[-1])]
    if missing:
        for err in missing:
            print(err, file=sys.stderr)
        print(f"{len(missing)} error(s): fix them, then run check-config again", file=sys.stderr)
        return 1
    if not args.quiet:
        for w in rt.warnings:
            print(w, file=sys.stderr)
        nwin = sum(len(o.windows) for o in rt.objects)
        navg = sum(len(getattr(o, "averages", ())) for o in rt.objects)
        nlev = sum(len(m.levels) for o in rt.objects for m in getattr(o, "averages", ()))
        print(f"configuration OK: {len(rt.objects)} monitoring objects, {nwin} windows, "
              f"{len(rt.iplists)} IP lists, {len(rt.devices)} devices, "
              f"{navg} moving averages ({nlev} levels)")
    return 0


def run_db_load(args: argparse.Namespace) -> int:
    from appliance.collector.export import PgExporter, Spool

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
    except (MirrorflowError, Exception) as exc:
        print(f"mirrorflow db load: {type(exc).__name__}: {exc}".rstrip(), file=sys.stderr)
        print(f"loaded {exp.loaded} of {total} windows before the error; {spool.files} remain in {spool_dir}",
              file=sys.stderr)
        return 1
    finally:
        exp.loader.close()
    print(f"loaded {exp.loaded} windows ({exp.loaded_rows} rows), {exp.duplicates} already in the database, "
          f"{exp.failed} refused (moved to {spool_dir / 'failed'})")
    return 1 if exp.failed else 0
