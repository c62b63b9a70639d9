"""`python -m bench [NAME] [ARGS...]`: list or run the benchmarks (`make bench ARGS=...`).

Without a name the quick benchmarks run one after the other (about a minute and a half);
`python -m bench NAME --help` shows a benchmark's options.

Examples:
    python -m bench                      # decode, receive and collect, quick
    python -m bench list
    python -m bench decode --records 4000000
    python -m bench collect              # full nfcapd comparison (several minutes)
"""

from __future__ import annotations

import runpy
import sys

# name: (module, arguments of the quick run or None to leave it out of it, what it measures)
BENCHMARKS = {
    "decode": ("bench.bench_decode", ["--quick"],
               "decode v9/IPFIX-IPv6/v5 from memory on one core (records/s)"),
    "receive": ("bench.bench_receive", [],
                "UdpReceiver (recvmmsg) vs a recvfrom_into loop, loopback drain rate"),
    "collect": ("bench.bench_collect_vs_nfcapd", ["--quick"],
                "live UDP: mirrorflow collect vs nfcapd, highest lossless rate and ratio"),
    "fwm": ("bench.bench_fwm", ["--quick"],
            "monitoring objects + fixed windows from memory (3 objects, 6 windows, 65 k sources)"),
    "enrich": ("bench.bench_enrich", ["--quick"],
               "GeoIP/ASN lookups/s vs maxminddb; fwm profile CPU per flow with and without enrichment"),
    "mavg": ("bench.bench_mavg", ["--quick"],
             "moving averages: ns per flow with 1 M keys and 3 levels; cost on the fwm profile"),
    "objects": ("bench.bench_objects_udp", None,
                "live UDP through monitoring objects + windows + .sql export: lossless rate, ns/flow"),
    "archive": ("bench.bench_archive", None,
                "flow archive: CPU per flow with/without --archive, bytes/flow vs nfcapd, query time vs nfdump"),
    "soak": ("bench.bench_soak", None,
             "minutes of the profile with PostgreSQL restarts, a collector restart, SIGHUPs, floods: books balance"),
    "probe": ("bench.bench_probe", None,
              "probe vs softflowd on a veth mirror (root, netns, tcpreplay, softflowd); --flood: "
              "every packet a new flow, TC and XDP, vs softflowd and pmacctd"),
    "probe-cost": ("bench.bench_probe_cost", None,
                   "probe userspace ns per flow by stage at 1 M flows (drain, merge, expire, "
                   "encode, send; root for the kernel map, --memory without)"),
    "detect": ("bench.bench_detect", None,
               "seconds from a flood's first packet to the alert script: probe + collector "
               "vs FastNetMon on one veth (root, netns, tcpreplay, fastnetmon)"),
}


def _run(module: str, args: list[str]) -> int:
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("list", "-h", "--help"):
        print(__doc__)
        for name, (_, quick, desc) in BENCHMARKS.items():
            print(f"  {name:<8} {desc}{'' if quick is not None else '  [not in the quick run]'}")
        return 0
    if argv:
        name, rest = argv[0], argv[1:]
        if name not in BENCHMARKS:
            print(f"python -m bench: no benchmark {name!r}; one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        return _run(BENCHMARKS[name][0], rest)
    status = 0
    for name, (module, quick, desc) in BENCHMARKS.items():
        if quick is None:
            continue
        print(f"==== {name}: {desc} (quick; `python -m bench {name}` for the full run)", flush=True)
        status = status or _run(module, quick)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
