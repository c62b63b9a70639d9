"""``mirrorflow probe``: capture flows on mirror interfaces and export them.

``appliance/cli.py`` registers it with `add_parser(subparsers)` and `run(args)`;
``python -m appliance.probe`` runs the same parser.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from appliance.probe.attach import DEFAULT_STATE_DIR, Attachment, attach
from appliance.probe.config import ProbeSettings, load_config_file
from appliance.probe.errors import ProbeError
from appliance.probe.links import LinkFollower, LinkWatcher
from appliance.probe.stats import read_snapshot, render, write_snapshot

__all__ = ["add_parser", "run", "main"]

log = logging.getLogger("mirrorflow.probe")

EPILOG = """\
examples:
  mirrorflow probe -i ens4 -d 192.0.2.10:2055
      NetFlow v9 from mirror port ens4 to one collector
  mirrorflow probe -i ens4 -i ens5 -d 192.0.2.10:2055 -d [2001:db8::10]:4739 --protocol 10
      IPFIX to two collectors, each getting every packet
  mirrorflow probe -i ens4 -d 127.0.0.1:2055 --sampler random:100 --maxflows 500000
  mirrorflow probe -i ens4 -d 192.0.2.10:2055 --attach xdp --xdp-mode generic
      XDP instead of TC ("native" needs driver support, "generic" works everywhere)
  mirrorflow probe --stats            statistics of the running probe (--json: machine-readable)

Settings may also come from --config FILE (JSON, keys = long option names); options given on
the command line win. SIGTERM/SIGINT export every active flow, detach and restore promisc.
SIGUSR1 exports every active flow now (flowEndReason 4, forced end) and keeps capturing:
  kill -USR1 PID    (the pid is in mirrorflow probe --stats)
An interface that is deleted or renamed is logged and shown as DETACHED in --stats (its flows
are still exported); when one of that name appears again the probe attaches to it again.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "probe", help="eBPF flow probe on mirror interfaces, exporting NetFlow v9/v5/IPFIX",
        description="Capture flows on mirror interfaces with eBPF (TC clsact ingress, or XDP) "
        "and export them as NetFlow v9 (default), v5 or IPFIX.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _arguments(p)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    d = ProbeSettings()
    a = p.add_argument
    a("-i", "--interface", dest="interfaces", action="append", metavar="IFACE",
      help="mirror interface (repeat for several)")
    a("-d", "--destination", dest="destinations", action="append", metavar="HOST:PORT",
      help="collector, HOST:PORT or [IPV6]:PORT (repeat: each gets every packet)")
    a("--protocol", type=int, choices=(5, 9, 10), help=f"5, 9 or 10 = IPFIX (default {d.protocol})")
    a("--active-timeout", type=float, metavar="S", help=f"default {d.active_timeout:g}")
    a("--inactive-timeout", type=float, metavar="S", help=f"default {d.inactive_timeout:g}")
    a("--tcp-end-timeout", type=float, metavar="S",
      help="export a TCP flow S seconds after its last packet once FIN/RST was seen "
      "(default: off, like ipt_netflow; 0 = at the next scan)")
    a("--maxflows", type=int, metavar="N",
      help=f"flow limit of the flow table (default {d.maxflows})")
    a("--map-flows", type=int, metavar="N",
      help="entries of each kernel flow map, i.e. new flows between two scans (default "
      "min(maxflows, 524288)); packets beyond are refused and counted")
    a("--emergency-fill", type=float, metavar="F",
      help="when the flow table is fuller than F (0.2-1), end the flows idle longest early "
      f"(flowEndReason 5) until it is 15 points lower; 1 = off (default {d.emergency_fill:g})")
    a("--sampler", metavar="MODE:N", help="deterministic:N, random:N or hash:N (default off)")
    a("--key", metavar="PARTS",
      help="flow key granularity: 'full' or a comma list of src,dst,proto,ports,tos,vlan,ifindex")
    a("--no-mpls", dest="mpls", action="store_const", const=False, help="do not look into MPLS")
    a("--no-macs", dest="macs", action="store_const", const=False, help="do not export MACs")
    a("--no-promisc", dest="promisc", action="store_const", const=False,
      help="leave the interface's promiscuous mode alone")
    a("--attach", choices=("tc", "xdp"),
      help=f"hook: tc = clsact ingress, xdp = XDP (default {d.attach})")
    a("--xdp-mode", choices=("native", "generic"),
      help=f"with --attach xdp: native (in the driver) or generic (default {d.xdp_mode})")
    a("--mtu", type=int, help=f"largest export payload (default {d.mtu})")
    a("--source-id", type=int, help="v9 source id / IPFIX domain / v5 engine id (default 0)")
    a("--template-refresh-packets", type=int, metavar="N")
    a("--template-refresh-seconds", type=float, metavar="S")
    a("--options-interval", type=float, metavar="S",
      help="resend sampler, system and statistics options every S seconds (default 60)")
    a("--names-interval", type=float, metavar="S",
      help="resend the interface names (ifIndex → ifName) every S seconds (default 300)")
    a("--direction-mac", metavar="MAC",
      help="MAC of the router/host whose port is mirrored: flows from it are exported as "
      "egress, flows to it as ingress (flowDirection); others without a direction")
    a("--scan-interval", type=float, metavar="S", help="drain the kernel every S s (default 1)")
    a("--sndbuf", type=int, metavar="BYTES", help="socket send buffer per destination")
    a("--state-dir", type=Path, metavar="DIR", help=f"default {DEFAULT_STATE_DIR}")
    a("--config", type=Path, metavar="FILE", help="JSON settings file")
    a("--stats", action="store_true", help="print the running probe's statistics and exit")
    a("--json", action="store_true", help="with --stats: machine-readable JSON")


def settings_from_args(args: argparse.Namespace) -> ProbeSettings:
    s = ProbeSettings()
    if getattr(args, "config", None):
        load_config_file(args.config, s)
    for name in s.__slots__:  # type: ignore[attr-defined]
        value = getattr(args, name, None)
        if value is not None:
            setattr(s, name, value)
    return s


def _print_stats(s: ProbeSettings, as_json: bool) -> int:
    path = s.state_dir / "stats.json"
    if not path.exists():
        print(f"mirrorflow probe: no running probe ({path} not found)", file=sys.stderr)
        return 1
    snap = read_snapshot(path)
    print(json.dumps(snap, indent=1, sort_keys=True) if as_json else render(snap))
    return 0


def run(args: argparse.Namespace) -> int:
    """Runs the probe until SIGTERM/SIGINT. Returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        s = settings_from_args(args)
        if args.stats:
            return _print_stats(s, args.json)
        s.validate()
        return _serve(s)
    except ProbeError as exc:
        print(f"mirrorflow probe: {exc}", file=sys.stderr)
        return 2


def _serve(s: ProbeSettings) -> int:
    from appliance.probe.kernel import KernelFlowCache
    from appliance.probe.runner import Probe, SystemClock, build_exporter

    stop = threading.Event()
    flush_now = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: flush_now.set())
    clock = SystemClock()
    cache = KernelFlowCache(s.kernel_map_flows(), hook=s.attach)
    exporter = build_exporter(s, clock)
    probe = Probe(s, cache, exporter, clock)
    attachments: list[Attachment] = []
    stats_path = s.state_dir / "stats.json"

    def attach_one(ifname: str) -> Attachment:  # at start, and again when it comes back
        att = attach(ifname, cache.program_fd(s.xdp_mode), promisc=s.promisc,
                     state_dir=s.state_dir,
                     hook=s.attach, xdp_mode=s.xdp_mode)
        cache.set_interface_mac(att.ifindex, att.mac)
        probe.interface_table[:] = [e for e in probe.interface_table if e[1] != ifname]
        probe.interface_table.append((att.ifindex, att.ifname, att.description))
        if probe.scans:  # a re-attachment: collectors learn the new ifindex's name now
            probe.exporter.send_interface_names(probe.interface_table)
        return att

    try:
        for ifname in s.interfaces:
            attachments.append(attach_one(ifname))
        probe.links = LinkFollower(attachments, attach_one,
                                   forget=lambda a: cache.forget_interface_mac(a.ifindex),
                                   watcher=LinkWatcher())
        dests = ", ".join(str(d) for d in exporter.destinations)
        version = {5: "v5", 9: "v9", 10: "IPFIX"}[s.protocol]
        hook = "tc clsact ingress" if s.attach == "tc" else f"XDP {s.xdp_mode}"
        print(f"mirrorflow probe: attached ({hook}{', promisc' if s.promisc else ''})"
              f" and capturing on {', '.join(s.interfaces)}; exporting NetFlow {version} to "
              f"{dests}", flush=True)
        probe.run(stop, stats_path, flush_now)
    finally:
        if probe.links is not None:
            probe.links.close()
        for a in attachments:
            a.detach()
        # After detaching nothing writes the maps: flush exports every counted packet.
        sent = probe.flush()
        final = probe.snapshot()
        write_snapshot(stats_path.with_name("stats-final.json"), final)
        if stats_path.exists():
            stats_path.unlink()
        exporter.close()
        cache.close()
        k = final["kernel"]["total"]
        print(f"mirrorflow probe: stopped; flushed {sent} flows; accounted "
              f"{k['accounted_packets']} packets, exported {exporter.flows_exported} flows",
              flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mirrorflow")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["probe", *(sys.argv[1:] if argv is None else argv)])
    return run(args)
