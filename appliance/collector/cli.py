"""``mirrorflow collect`` and ``mirrorflow decode``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from appliance import MirrorflowError
from appliance.collector.config.settings import CollectorConfig, load_config

__all__ = ["add_collect_parser", "add_decode_parser"]

log = logging.getLogger("mirrorflow.collector")

COLLECT_EPILOG = """\
examples:
  mirrorflow collect --listen 0.0.0.0:2055 --listen [::]:2055 --dump-flows stdout
  mirrorflow collect -c /etc/mirrorflow/collector.conf          # xenoeye.conf keys work
  mirrorflow collect --pcap export.pcap --dump-flows /tmp/flows.txt

Statistics per exporter (packets, records, templates, sequence gaps, decode errors by kind,
data waiting for its template) are logged every --stats-interval seconds; socket drops are
read from /proc/net/udp. Templates persist in --templates (default in the state directory)
so a restart decodes data at once.
"""

DECODE_EPILOG = """\
examples:
  mirrorflow decode capture.pcap                       # one text line per record (proto=tcp, icmp=echo-request)
  mirrorflow decode --format jsonl a.pcap b.pcapng | jq .bytes
  mirrorflow decode --apply-sampling --devices devices.conf capture.pcap

jsonl records carry exporter, source_id, template_id, record_kind (data/options/v5), then
every field under its registry name: addresses as text, the rest as raw integers (raw wire
values unless --apply-sampling), unknown fields as hex under e<PEN>.<id> / id<id>.
With --geoip FILE.mmdb (repeatable), records end with src_country, dst_country, src_asn,
dst_asn, src_as_org… as text ("" when the database does not know the address).
"""


def add_collect_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="receive NetFlow v5/v9/IPFIX over UDP (or replay captures) and decode it",
        epilog=COLLECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", type=Path, help="collector config (xenoeye.conf format)")
    p.add_argument("-l", "--listen", action="append", default=[], metavar="ADDR:PORT",
                   help="UDP listen address, repeatable: 0.0.0.0:2055, [::]:2055, 2055 (default 0.0.0.0:2055)")
    p.add_argument("--pcap", action="append", default=[], type=Path, metavar="FILE",
                   help="replay a pcap/pcapng capture instead of listening (repeatable)")
    p.add_argument("--pcap-port", action="append", type=int, metavar="PORT",
                   help="with --pcap: only UDP packets to these destination ports (default: all UDP)")
    p.add_argument("--devices", type=Path, help="devices.conf with per-exporter sampling rates")
    p.add_argument("--templates", type=Path, help="file where templates persist across restarts")
    p.add_argument("--dump-flows", metavar="TARGET", help="none | syslog | stdout | FILE")
    p.add_argument("--dump-format", choices=("text", "jsonl"), help="dump format (default text)")
    p.add_argument("--rcvbuf-mb", type=int, help="SO_RCVBUF per socket in MiB (default 64)")
    p.add_argument("--stats-interval", type=float, help="seconds between statistics lines (default 60, 0 = off)")
    p.add_argument("--stats-file", type=Path, metavar="FILE",
                   help="also write the statistics as JSON to FILE (every interval and at exit)")
    p.add_argument("--mo-dir", type=Path, help="monitoring objects (mo.conf tree; xenoeye's format)")
    p.add_argument("--iplists-dir", type=Path, help="IP lists the filters refer to")
    p.add_argument("--export-dir", type=Path, help="write each closed window as a xenoeye-style .sql file here")
    p.add_argument("--db", metavar="DSN", help="load windows into PostgreSQL (COPY through the spool)")
    p.add_argument("--spool-dir", type=Path,
                   help="windows waiting for the database (default /var/lib/mirrorflow/spool)")
    p.add_argument("--notifications-dir", type=Path, metavar="DIR",
                   help="moving-average alert files (default /var/lib/mirrorflow/notifications)")
    p.add_argument("--archive", type=Path, metavar="DIR",
                   help="keep every flow as Parquet under DIR (see docs/archive.md; "
                        "the config's \"archive\" section sets rotation and retention)")
    p.add_argument("--api", metavar="ADDR:PORT",
                   help="live API + Prometheus /metrics (default 127.0.0.1:8787 live, off with --pcap; 'off')")
    p.add_argument("--probe-stats", type=Path, metavar="FILE",
                   help="the probe's stats.json served at /api/v1/probe (default /run/mirrorflow/probe/stats.json)")
    p.add_argument("--geoip", action="append", type=Path, metavar="FILE",
                   help="GeoIP/ASN database (.mmdb: GeoLite2, DB-IP lite, IPinfo lite) or a folder of them, "
                        "repeatable: adds src/dst country, asn, as-org… (docs/enrichment.md)")
    p.add_argument("--networks", type=Path, metavar="FILE",
                   help="your prefixes, one per line: PREFIX NAME [ROLE [SITE]]: adds src/dst net-name, -role, -site")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=run_collect)


def config_from_args(args: argparse.Namespace) -> CollectorConfig:
    cfg = load_config(args.config) if args.config else CollectorConfig()
    if args.listen:
        cfg.listen = list(args.listen)
    if not cfg.listen:
        cfg.listen = ["0.0.0.0:2055"]
    for attr, value in (("devices_file", args.devices), ("templates_file", args.templates),
                        ("dump_flows", args.dump_flows), ("dump_format", args.dump_format),
                        ("rcvbuf_mb", args.rcvbuf_mb), ("stats_interval_s", args.stats_interval),
                        ("stats_file", args.stats_file), ("mo_dir", args.mo_dir),
                        ("iplists_dir", args.iplists_dir), ("export_dir", args.export_dir),
                        ("db", args.db), ("spool_dir", args.spool_dir),
                        ("notifications_dir", args.notifications_dir)):
        if value is not None:
            setattr(cfg, attr, value)
    if args.geoip:
        cfg.geoip = list(args.geoip)
    if args.networks:
        cfg.networks = args.networks
    return cfg


def run_collect(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    from appliance.collector.api.server import settings_from_config
    from appliance.collector.config import ConfigErrors, load_runtime
    from appliance.collector.export.archive import archive_settings
    from appliance.collector.pipeline import Pipeline

    try:
        cfg = config_from_args(args)
        runtime = load_runtime(cfg) if cfg.mo_dir is not None else None
        api = settings_from_config(cfg.raw, args.api, args.probe_stats,
                                   default_api="off" if args.pcap else "127.0.0.1:8787")
        archive = archive_settings(cfg.raw, str(args.config), args.archive)
        pipeline = Pipeline(cfg, runtime, live=not args.pcap, api=api, archive=archive)
    except ConfigErrors as exc:  # an invalid configuration never starts
        print(f"mirrorflow collect: refusing to start, {len(exc.errors)} configuration error(s):\n{exc}",
              file=sys.stderr)
        return 1
    except (MirrorflowError, OSError) as exc:
        print(f"mirrorflow collect: {exc}", file=sys.stderr)
        return 2
    pipeline.start_api()
    if args.pcap:
        try:
            pipeline.run_pcap(args.pcap, args.pcap_port)
        except (MirrorflowError, OSError) as exc:
            print(f"mirrorflow collect: {exc}", file=sys.stderr)
            return 2
        finally:
            pipeline.close()
        pipeline.collector.log_stats(0)
        return 0

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        pipeline.stop()

    def _hup(_signum: int, _frame: object) -> None:
        pipeline.request_reload()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup)
    try:
        pipeline.run_live()
    except (MirrorflowError, OSError) as exc:
        print(f"mirrorflow collect: {exc}", file=sys.stderr)
        return 2
    finally:
        pipeline.close()
    pipeline.collector.log_stats(0)
    return 0


def add_decode_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decode",
        help="decode NetFlow/IPFIX captures offline and print every record (like nfdump -r)",
        epilog=DECODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="pcap or pcapng files")
    p.add_argument("--format", choices=("text", "jsonl"), default="text")
    p.add_argument("--apply-sampling", action="store_true", help="scale counters by the sampling rate")
    p.add_argument("--devices", type=Path, help="devices.conf (sampling-rate overrides)")
    p.add_argument("--port", action="append", type=int, help="only UDP packets to these ports")
    p.add_argument("--no-options", action="store_true", help="leave out options records")
    p.add_argument("--stats", action="store_true", help="print per-exporter statistics to stderr at the end")
    p.add_argument("--geoip", action="append", type=Path, metavar="FILE",
                   help="GeoIP/ASN .mmdb database or folder (repeatable): records get src/dst country, asn…")
    p.add_argument("--networks", type=Path, metavar="FILE",
                   help="networks file (PREFIX NAME [ROLE [SITE]]): records get src/dst net_name, net_role, net_site")
    p.set_defaults(func=run_decode)


def run_decode(args: argparse.Namespace) -> int:
    import json

    from appliance.collector.config.devices import load_devices
    from appliance.collector.decode.decoder import Decoder
    from appliance.collector.decode.dump import format_jsonl, format_text, records
    from appliance.collector.enrich import Enricher, texts
    from appliance.collector.fields.readable import readable
    from appliance.collector.receive.pcapfile import PcapReader

    fmt = format_jsonl if args.format == "jsonl" else format_text
    try:
        devices = load_devices(args.devices) if args.devices else []
        dec = Decoder(apply_sampling=args.apply_sampling, emit_options=not args.no_options, devices=devices)
        enricher = Enricher(args.geoip or [], args.networks) if args.geoip or args.networks else None
        out = sys.stdout
        for path in args.files:
            with PcapReader(path, ports=args.port) as reader:
                for packets in reader.batches():
                    for batch in dec.decode(packets):
                        names = {}
                        if enricher is not None:
                            enricher.enrich(batch)
                            names = texts(batch)
                        lines = []
                        for i, r in enumerate(records(batch, dec)):
                            r.update((k, str(v[i])) for k, v in names.items())
                            lines.append(fmt(readable(r) if args.format == "text" else r) + "\n")
                        out.write("".join(lines))
    except (MirrorflowError, OSError) as exc:
        print(f"mirrorflow decode: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    if args.stats:
        for e in dec.exporter_stats():
            print(json.dumps({"exporter": e.address, **{k: v for k, v in e.counters.items() if v}}), file=sys.stderr)
    return 0
