"""GeoIP/ASN enrichment: address lookups per second on one core, against maxminddb's C reader in
the same run, and what enrichment adds to the realistic profile (bench fwm's objects and
windows) per flow, with and without, interleaved in the same run.

Data: the bundled free databases (scripts/fetch-geoip: ip-location-db's country .mmdb and AS
range CSV), or --geoip FILE|DIR.

    python -m bench enrich [--geoip DIR] [--flows 2000000] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import maxminddb
import numpy as np

from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.enrich import Enricher, bundled_geoip, load_database
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring.monitor import Monitor
from appliance.netflow.registry import REGISTRY
from bench.bench_fwm import OBJECTS


def _public(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random unicast IPv4 addresses outside 0/8, 10/8, 127/8, 224/3."""
    a = rng.integers(0x0B000000, 0xDF000000, n, dtype=np.uint64)
    return a[(a >> np.uint64(24)) != 127]


def _rate(fn, n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def lookups(mmdb: Path, n: int) -> None:
    db = load_database(mmdb)
    rng = np.random.default_rng(1)
    pool = _public(rng, 70_000)[:65_536]
    cases = {
        "IPv4 uniform random": (_public(rng, n), None),
        "IPv4 65 k sources, Zipf": (pool[rng.zipf(1.3, n) % len(pool)], None),
    }
    v6 = np.zeros((n, 2), dtype=np.uint64)
    v6[:, 0] = ((rng.integers(0x2000, 0x2C00, n, dtype=np.uint64) << np.uint64(48))
                | rng.integers(0, 2**48, n, dtype=np.uint64))
    v6[:, 1] = rng.integers(0, 2**63, n, dtype=np.uint64)
    cases["IPv6 uniform in 2000::/4"] = (np.zeros(n, dtype=np.uint64), v6)
    db.lookup(np.zeros(4, dtype=np.uint64), None)  # compiled before timing
    reader = maxminddb.open_database(str(mmdb))  # the C extension (libmaxminddb's algorithm)
    print(f"{mmdb.name}: {db.ranges} ranges, {db.records} records; {n} addresses per case")
    print(f"{'case':<28} {'mirrorflow M/s':>15} {'maxminddb M/s':>15} {'ratio':>7}")
    for name, (a4, a6) in cases.items():
        ours = _rate(lambda a4=a4, a6=a6: db.lookup(a4, a6), n)
        m = 200_000
        texts = ([str(int(x) >> 24) + "." + str(int(x) >> 16 & 255) + "." + str(int(x) >> 8 & 255) + "."
                  + str(int(x) & 255) for x in a4[:m]] if a6 is None else  # noqa: W503
                 [f"{int(h):016x}{int(lo_):016x}" for h, lo_ in a6[:m]])
        if a6 is not None:
            texts = [":".join(t[i : i + 4] for i in range(0, 32, 4)) for t in texts]
        peer = _rate(lambda texts=texts: [reader.get(t) for t in texts], m, repeat=1)
        print(f"{name:<28} {ours / 1e6:>15.1f} {peer / 1e6:>15.2f} {ours / peer:>6.0f}x")


def profile_batches(total: int, size: int = 16384, seed: int = 1, public: bool = True) -> list[FlowBatch]:
    """bench fwm's profile: 65 k random public sources (lookups meet real, scattered tables), or
    its own 65 k sources in 198.18.0.0/16 (one region of the tables, as bench fwm and bench
    objects send)."""
    rng = np.random.default_rng(seed)
    pool = _public(rng, 70_000)[:65_536] if public else (0xC6120000 + np.arange(65_536)).astype(np.uint64)
    out = []
    t0 = 1_700_000_000 * 10**9
    for start in range(0, total, size):
        n = min(size, total - start)
        cols: dict[int, np.ndarray] = {}
        cols6: dict[int, np.ndarray] = {}

        def put(name: str, arr: np.ndarray, cols: dict[int, np.ndarray] = cols,
                cols6: dict[int, np.ndarray] = cols6) -> None:
            f = REGISTRY[name]
            (cols6 if f.column6 >= 0 else cols)[f.column6 if f.column6 >= 0 else f.column] = arr.astype(np.uint64)

        ingress = rng.random(n) < 0.6
        outside = pool[rng.integers(0, len(pool), n)]
        inside = (0x0A000000 + rng.integers(0, 4096, n)).astype(np.uint64)
        put("src_addr", np.where(ingress, outside, inside))
        put("dst_addr", np.where(ingress, inside, outside))
        is6 = rng.random(n) < 0.1
        v6 = np.zeros((n, 2), dtype=np.uint64)
        v6[is6, 0] = 0x2A00145000000000 + rng.integers(0, 4096, int(is6.sum())).astype(np.uint64) * np.uint64(1 << 32)
        v6[is6, 1] = rng.integers(1, 65536, int(is6.sum()))
        put("src_addr6", v6)
        put("dst_port", rng.choice([22, 25, 53, 80, 443, 8080], n))
        put("src_port", rng.integers(1024, 65535, n))
        put("proto", rng.choice([6, 17, 1], n, p=[0.7, 0.25, 0.05]))
        put("bytes", rng.integers(40, 150000, n))
        put("packets", rng.integers(1, 100, n))
        put("recv_time_ns", np.full(n, t0 + 4 * 10**9 * start // total))
        out.append(FlowBatch(n, cols, cols6))
    return out


def objects(geoip: Path, total: int, rounds: int, public: bool) -> None:
    enricher = Enricher([geoip])
    data = profile_batches(total, public=public)
    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in OBJECTS.items():
            (Path(tmp) / rel).mkdir(parents=True)
            (Path(tmp) / rel / "mo.conf").write_text(text)
        rt = load_runtime(CollectorConfig(mo_dir=Path(tmp)))

        def run(enrich: bool) -> float:
            mon = Monitor(rt.objects, [])
            batches = [b.copy() for b in data]
            t = time.process_time()
            for b in batches:
                if enrich:
                    enricher.enrich(b)
                mon(b)
            mon.flush()
            return (time.process_time() - t) / total * 1e9

        run(True)  # compiled before timing
        plain, rich = [], []
        for _ in range(rounds):  # interleaved: both see the same machine
            plain.append(run(False))
            rich.append(run(True))
    p, r = statistics.median(plain), statistics.median(rich)
    where = "65 k random public sources" if public else "65 k sources in 198.18.0.0/16"
    print(f"fwm profile (3 objects, 6 windows, {where}), {total} flows, {rounds} rounds, "
          f"CPU ns/flow median: without {p:.0f}, with country+ASN on both addresses {r:.0f}: "
          f"+{(r / p - 1) * 100:.1f} % ({', '.join(d.path.name for d in enricher.databases)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--geoip", type=Path, help="database folder (default: the bundled data)")
    ap.add_argument("--flows", type=int, default=2_000_000)
    ap.add_argument("--lookups", type=int, default=4_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 M lookups, 500 k flows, 2 rounds")
    args = ap.parse_args()
    geoip = args.geoip or bundled_geoip()
    if geoip is None:
        print("bench enrich: no GeoIP data: run scripts/setup (scripts/fetch-geoip) or pass --geoip", file=sys.stderr)
        return 2
    if args.quick:
        args.lookups, args.flows, args.rounds = 1_000_000, 500_000, 2
    mmdbs = sorted(geoip.glob("*.mmdb")) if geoip.is_dir() else [geoip]
    if mmdbs:
        lookups(mmdbs[0], args.lookups)
    for public in (False, True):
        objects(geoip, args.flows, args.rounds, public)
    return 0


if __name__ == "__main__":
    sys.exit(main())
