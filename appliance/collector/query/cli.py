"""``mirrorflow flows``: nfdump-like queries over the flow archive."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  mirrorflow flows -R /var/lib/mirrorflow/archive --since -1h 'dst port 22 and tcp-flags syn'
  mirrorflow flows -R /var/lib/mirrorflow/archive --top 'src host' --by bytes -n 10
  mirrorflow flows -R DIR --since 2026-12-08T02:00 --until 2026-12-08T02:30 --top 'dst host,dst port'
  mirrorflow flows -R DIR 'net mynets' --iplists-dir /var/lib/mirrorflow/iplists --format jsonl | jq .bytes

FILTER is the monitoring objects' filter language (host, net, port, proto, tcp-flags, as,
IP lists, div(), min(), tfstr()…; mfreq() is not available). Times are ISO 8601 (UTC unless
an offset is given), Unix times or relative (-15m, -1h, -2d). Without --top: the flows,
newest first; jsonl records carry the field names of `mirrorflow decode --format jsonl`.
With --top: bytes, packets and flows per key (window field names, comma-separated), the
-n largest by --by; jsonl rows carry the keys plus bytes, packets, flows.
Only the files of the time range are read (date=/hour= partitions). See docs/archive.md.
exit status: 0 = done (an empty range prints an empty result), 2 = bad filter, time or field.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("flows", help="query the flow archive (nfdump -R like): listings and top-N",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-R", "--archive", type=Path, required=True, metavar="DIR",
                   help="the archive directory (collect --archive DIR)")
    p.add_argument("filter", nargs="*", metavar="FILTER", help="filter expression (words are joined)")
    p.add_argument("--since", metavar="T", help="from this time (default: the archive's beginning)")
    p.add_argument("--until", metavar="T", help="up to this time, exclusive (default: now)")
    p.add_argument("--top", metavar="FIELDS", help="aggregate per key: 'src host', 'dst port', 'src host,dst port'")
    p.add_argument("--by", choices=("bytes", "packets", "flows"), default="bytes", help="sort --top by (default bytes)")
    p.add_argument("-n", type=int, metavar="N",
                   help="rows to print (default 10 with --top, 100 without; 0 = all)")
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    p.add_argument("--iplists-dir", type=Path, metavar="DIR", help="IP lists the filter names")
    p.add_argument("--appliance", action="append", metavar="NAME", help="only this appliance's flows (repeatable)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from appliance.collector.filter import FilterError, IPLists
    from appliance.collector.query import ArchiveQuery, QueryError, flow_records, parse_time, top_records
    from appliance.collector.query._render import flows_csv, flows_text, to_csv, to_jsonl, top_text

    text = " ".join(args.filter)
    try:
        lists = IPLists.load(args.iplists_dir) if args.iplists_dir else IPLists.empty()
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        q = ArchiveQuery(args.archive, lists, appliances=args.appliance)
        q.progress = sys.stderr.isatty()
        t0 = time.monotonic()
        if args.top:
            keys = [k.strip() for k in args.top.split(",") if k.strip()]
            result = q.top(keys, args.by, text, since, until, 10 if args.n is None else args.n)
            elapsed = time.monotonic() - t0
            if args.format == "table":
                out = top_text(result, args.by, result.files, elapsed) + "\n"
            else:
                recs = top_records(result)
                out = to_jsonl(recs) if args.format == "jsonl" else to_csv(recs)
        else:
            table = q.flows(text, since, until, 100 if args.n is None else args.n)
            if args.format == "csv":
                return _write(flows_csv(table).decode()) if table.num_rows else 0
            recs = list(flow_records(table))
            elapsed = time.monotonic() - t0
            if args.format == "table":
                from appliance.collector.query import archive_files

                out = flows_text(recs, len(archive_files(args.archive, since, until, args.appliance)), elapsed) + "\n"
            else:
                out = to_jsonl(recs) if args.format == "jsonl" else to_csv(recs)
    except FilterError as exc:
        print(f"mirrorflow flows: {exc}", file=sys.stderr)
        return 2
    except QueryError as exc:
        print(f"mirrorflow flows: {exc}", file=sys.stderr)
        return 2
    return _write(out)


def _write(out: str) -> int:
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except BrokenPipeError:  # | head
        pass
    return 0
