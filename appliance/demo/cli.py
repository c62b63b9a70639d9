"""``mirrorflow demo``: argument parsing; the run itself is in run.py."""

from __future__ import annotations

import argparse

from appliance.demo.run import Demo, DemoOptions

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  sudo mirrorflow demo                      TUI if there is a terminal (quit it to stop), else headless
  sudo mirrorflow demo --headless --duration 120
  sudo mirrorflow demo --no-db --no-probe   softflowd as the only exporter, no PostgreSQL

What runs: a traffic namespace sends ~2.8 k pps of mixed TCP/UDP/ICMP (IPv4 and IPv6, ~500
hosts; plus corpus traces through tcpreplay when ../shared/corpus is there) into a veth whose
other end is the probe's mirror port, and every 40 s a 10 s flood from 203.0.113.66 that trips
the "attackers" moving average; a tc mirred copy of the same frames reaches softflowd in a
second namespace, a "router" exporting NetFlow v9. The collector runs the example monitoring
objects (appliance/demo/mo) and loads a throwaway PostgreSQL cluster. At the end: a summary,
then one JSON line with the same figures. Everything is removed at the end (and a crashed
run's leftovers at the next start).
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="the whole appliance on this machine with generated traffic (root)",
                       description="Run probe, router (softflowd), collector, PostgreSQL and the TUI "
                       "on one machine, fed by generated mirrored traffic.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, metavar="S",
                   help="headless: run S seconds after start-up (default 60)")
    p.add_argument("--headless", action="store_true", help="never open the TUI; print a summary")
    p.add_argument("--no-db", dest="db", action="store_false", help="no PostgreSQL")
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="no eBPF probe (softflowd is the only exporter)")
    p.add_argument("--no-traces", dest="traces", action="store_false",
                   help="synthetic traffic only, no corpus replay")
    p.add_argument("--api-port", type=int, default=8787, help="live API port (another if taken)")
    p.add_argument("--port", type=int, default=2055, help="NetFlow port (another if taken)")
    p.add_argument("--keep", action="store_true", help="keep the working directory (logs) at the end")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    opts = DemoOptions(duration=args.duration, headless=args.headless, db=args.db, probe=args.probe,
                       traces=args.traces, api_port=args.api_port, port=args.port, keep=args.keep)
    return Demo(opts).run()
