"""Decode from memory on one core: v9 (typical router template), IPFIX with IPv6, v5.

Datagrams are encoded once (appliance/synth/flows.py), grouped into PacketBatches of 256 datagrams
(what `UdpReceiver` hands over per recvmmsg round), then fed to one `Decoder` again and
again; the time covers `Decoder.decode` and walking the FlowBatches it yields (up to
16384 rows each). Best and median of the repeats are printed: the machine is shared.

With the pure-Python `netflow` package importable (``pip install netflow``), its
`parse_packet` on the same v9 datagrams is printed for comparison.

Example:
    python -m bench decode                 # 1 M records per format, 5 repeats
    python -m bench decode --records 4000000 --repeat 9 --batch 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from appliance import synth
from appliance.collector.decode.decoder import Decoder
from appliance.collector.receive.packets import PacketBatch

V9_TARGET = 5_000_000


def _batches(payloads: list[bytes], size: int) -> list[PacketBatch]:
    return [PacketBatch.from_payloads(payloads[i : i + size]) for i in range(0, len(payloads), size)]


def _run(dec: Decoder, batches: list[PacketBatch]) -> tuple[int, int]:
    records = rows = 0
    for pb in batches:
        for fb in dec.decode(pb):
            records += fb.n
            rows += 1
    return records, rows


def measure(kind: str, records: int, batch: int, repeat: int) -> dict[str, float]:
    """Records/s of decoding `records` flows of one kind (v9, ipfix6, v5), best and median."""
    make = {"v9": synth.v9_datagrams, "ipfix6": synth.ipfix6_datagrams, "v5": synth.v5_datagrams}[kind]
    templates, data, n = make(records)
    dec = Decoder()
    if templates:
        _run(dec, _batches(templates, batch))
    batches = _batches(data, batch)
    _run(dec, batches[:2])  # compile / load the numba cache outside the timing
    rates, cpu_rates, yielded = [], [], 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        got, yielded = _run(dec, batches)
        rates.append(got / (time.perf_counter() - t0))
        cpu_rates.append(got / (time.process_time() - c0))
        if got != n:
            raise SystemExit(f"{kind}: decoded {got} records of {n}")
    return {
        "records": n,
        "datagrams": len(data),
        "per_datagram": n / len(data),
        "flowbatches": yielded,
        "best": max(rates),
        "median": statistics.median(rates),
        "worst": min(rates),
        "cpu_median": statistics.median(cpu_rates),  # per CPU-second: blind to preemption
    }


def measure_netflow_package(records: int) -> float | None:
    """Records/s of the pure-Python `netflow` package on the v9 datagrams, or None if absent."""
    try:
        import netflow
    except ImportError:
        return None
    templates, data, _ = synth.v9_datagrams(records)
    tpl: dict = {"netflow": {}, "ipfix": {}}
    for p in templates:
        netflow.parse_packet(p, tpl)
    t0 = time.perf_counter()
    got = 0
    for p in data:
        got += len(netflow.parse_packet(p, tpl).flows)
    return got / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench decode", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="records per format (default 1 M)")
    ap.add_argument("--batch", type=int, default=256, help="datagrams per PacketBatch (default 256)")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes per format (default 5)")
    ap.add_argument("--formats", default="v9,ipfix6,v5", help="comma list of v9, ipfix6, v5")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    ap.add_argument("--quick", action="store_true", help="250 k records, 3 repeats")
    args = ap.parse_args(argv)
    if args.quick:
        args.records, args.repeat = min(args.records, 250_000), min(args.repeat, 3)
    if not args.no_pin:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    print(f"decode from memory, one core (cpu {sorted(os.sched_getaffinity(0))}), "
          f"{args.batch} datagrams per PacketBatch, best/median of {args.repeat}")
    print(f"{'format':<8} {'records':>9} {'rec/dgram':>9} {'best rec/s':>12} {'median':>12} {'worst':>12}"
          f" {'rec/CPU-s':>12}")
    results = {}
    for kind in args.formats.split(","):
        r = measure(kind, args.records, args.batch, args.repeat)
        results[kind] = r
        print(f"{kind:<8} {r['records']:>9} {r['per_datagram']:>9.1f} {r['best'] / 1e6:>10.2f} M "
              f"{r['median'] / 1e6:>10.2f} M {r['worst'] / 1e6:>10.2f} M {r['cpu_median'] / 1e6:>10.2f} M")
    if "v9" in results:
        best = results["v9"]["best"]
        verdict = "meets" if best >= V9_TARGET else "BELOW"
        print(f"v9 target {V9_TARGET / 1e6:.0f} M records/s: {verdict} ({best / V9_TARGET:.2f}x)")
        pkg = measure_netflow_package(min(args.records, 50_000))
        if pkg is None:
            print("python `netflow` package: not installed (pip install netflow) - skipped")
        else:
            print(f"python `netflow` package (pure Python) v9: {pkg / 1e3:.1f} k records/s; "
                  f"ours/netflow = {best / pkg:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
