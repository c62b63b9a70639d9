"""Moving averages: update cost per flow, and what one costs the realistic profile.

1. One ``mavg`` alone (``src host`` key, packets + octets, 3 overlimit levels), fed from
   memory in 16384-record batches: first 1 M distinct keys arrive (inserts), then flows over
   the same 1 M keys (updates: decay, add, 3 threshold checks per counter).
2. The fixed-window profile of `bench fwm` (3 objects, 6 windows, 65 k sources) from memory,
   without and with that moving average on the ``ingress`` object (65 k keys): CPU per flow
   of the monitoring objects and the ratio.
3. ``--live``: the same two configurations through `bench objects` (live UDP, highest
   lossless rate) — the figure the issue's 20 % bar is about.

    python -m bench mavg [--flows 8000000] [--quick] [--live]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from appliance.collector.alerts import MovingAverages
from appliance.collector.checkconfig import load_runtime
from appliance.collector.config import CollectorConfig
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.mavg import LevelSpec, MavgSpec, MovingAverage
from appliance.collector.monitor import Monitor
from appliance.collector.windows import parse_field
from appliance.netflow.registry import REGISTRY
from bench import bench_fwm

MAVG = ('{"name": "pps", "time": 5, "fields": ["src host", "packets", "octets"], "overlimit": ['
        '{"name": "warn", "default": [100000, 1e9]}, {"name": "high", "default": [500000, 5e9]},'
        '{"name": "crit", "default": [2000000, 2e10]}]}')  # fmt: skip


def key_batches(total: int, keys: int, size: int = 16384, seed: int = 3) -> list[FlowBatch]:
    """Flows over `keys` distinct IPv4 sources (the first `keys` flows: each key once)."""
    rng = np.random.default_rng(seed)
    first = rng.permutation(keys)
    out = []
    t0 = 1_700_000_000 * 10**9
    for start in range(0, total, size):
        n = min(size, total - start)
        idx = np.arange(start, start + n)
        k = np.where(idx < keys, first[np.minimum(idx, keys - 1)], rng.integers(0, keys, n))
        cols = {REGISTRY["src_addr"].column: (0x0B000000 + k).astype(np.uint64),
                REGISTRY["packets"].column: rng.integers(1, 100, n).astype(np.uint64),
                REGISTRY["bytes"].column: rng.integers(40, 150000, n).astype(np.uint64),
                REGISTRY["recv_time_ns"].column: np.full(n, t0 + start * 1000, np.uint64)}  # fmt: skip
        out.append(FlowBatch(n, cols, {}))
    return out


def alone(total: int, keys: int) -> None:
    fields = tuple(parse_field(f) for f in ("src host", "packets", "octets"))
    levels = tuple(LevelSpec(n, False, (p, b)) for n, p, b in
                   (("warn", 1e5, 1e9), ("high", 5e5, 5e9), ("crit", 2e6, 2e10)))  # fmt: skip
    spec = MavgSpec("pps", 5.0, fields, levels=levels)
    data = key_batches(total, keys)
    rows = np.arange(16384, dtype=np.int64)
    warm = MovingAverage(spec, "bench")
    warm.add(data[0], rows[: data[0].n])
    avg = MovingAverage(spec, "bench")
    phases = {"insert": [], "update": []}
    for i, b in enumerate(data):
        t = time.perf_counter()
        avg.add(b, rows[: b.n])
        phases["insert" if i * 16384 < keys else "update"].append((time.perf_counter() - t, b.n))
    print(f"1 mavg (src host; packets, octets; 3 levels), {keys / 1e6:.1f} M distinct keys, "
          f"{avg.memory_bytes / 2**20:.0f} MiB table:")  # fmt: skip
    for name, xs in phases.items():
        s, n = sum(x[0] for x in xs), sum(x[1] for x in xs)
        if n:
            print(f"  {name:<6} {s / n * 1e9:6.1f} ns per flow  ({n / s / 1e6:.1f} M flows/s, {n} flows)")


def profile(total: int) -> None:
    data = bench_fwm.batches(total)
    results = {}
    for with_mavg in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            for rel, text in bench_fwm.OBJECTS.items():
                if with_mavg and rel == "ingress":
                    text = text[:-1] + f', "mavg": [{MAVG}]}}'
                (Path(tmp) / rel).mkdir(parents=True)
                (Path(tmp) / rel / "mo.conf").write_text(text)
            objects = load_runtime(CollectorConfig(mo_dir=Path(tmp))).objects
        best = float("inf")
        for _ in range(2):
            mon = Monitor(objects, [lambda t: None])
            avgs = MovingAverages(objects, mon.set_extended)
            mon.row_sinks.append(avgs.add)
            mon(data[0])
            c = time.process_time()
            for b in data:
                mon(b)
                avgs.tick(int(b["recv_time_ns"][0]))
            mon.flush()
            best = min(best, time.process_time() - c)
        results[with_mavg] = best / (total + len(data[0])) * 1e9
    a, b = results[False], results[True]
    print(f"realistic profile from memory ({total / 1e6:.0f} M flows, 3 objects, 6 windows, 65 k sources):")
    print(f"  without mavg {a:6.0f} ns per flow; with 1 mavg on ingress (3 levels) {b:6.0f} ns per flow: "
          f"+{b - a:.0f} ns (+{(b / a - 1) * 100:.0f} % of the monitoring work)")


def live(extra: list[str]) -> None:
    import bench.bench_objects_udp as bo

    plain = bo.objects

    def with_mavg(window_s: int) -> dict[str, str]:
        objs = dict(plain(window_s))
        objs["ingress"] = objs["ingress"][:-1] + f', "mavg": [{MAVG}]}}'
        return objs

    print("== live UDP, without the moving average ==", flush=True)
    bo.main(extra)
    print("== live UDP, with the moving average on ingress ==", flush=True)
    bo.objects = with_mavg
    try:
        bo.main(extra)
    finally:
        bo.objects = plain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=8_000_000, help="flows for part 1 (default 8 M)")
    ap.add_argument("--keys", type=int, default=1_000_000, help="distinct keys for part 1 (default 1 M)")
    ap.add_argument("--quick", action="store_true", help="3 M flows in part 1, 2 M in part 2")
    ap.add_argument("--live", nargs="*", metavar="ARG",
                    help="also run `bench objects` with and without (arguments passed on, e.g. --quick)")
    args = ap.parse_args()
    alone(3_000_000 if args.quick else args.flows, args.keys)
    profile(2_000_000 if args.quick else 4_000_000)
    if args.live is not None:
        live(args.live)


if __name__ == "__main__":
    main()
