"""Monitoring objects + fixed windows from memory: flows/s and ns per flow on one core.

The issue's profile without the UDP part: 3 objects (one nested), 6 windows, top-20/50
limits, 65 k distinct source addresses, 16384-record batches, IPv4 with 10 % IPv6.
Windows of 1 s over 4 s of packet time, so closing and exporting (rows built, sorted,
limited) is part of what is measured.

    python -m bench.bench_fwm [--flows 4000000] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring.monitor import Monitor
from appliance.netflow.registry import REGISTRY

OBJECTS = {
    "ingress": '{"filter": "dst net 10.0.0.0/8", "fwm": ['
               '{"name": "total", "time": 1, "fields": ["packets", "octets", "flows"]},'
               '{"name": "saddr", "time": 1, "fields": ["octets desc", "packets", "src host"], "limit": 20},'
               '{"name": "pairs", "time": 1, "fields": ["octets desc", "src host", "dst host", "dst port"], '
               '"limit": 50}]}',
    "ingress/tcp": '{"filter": "proto tcp", "fwm": ['
                   '{"name": "ports", "time": 1, "fields": ["flows desc", "dst port"], "limit": 20}]}',
    "egress": '{"filter": "src net 10.0.0.0/8", "fwm": ['
              '{"name": "daddr", "time": 1, "fields": ["bits desc", "dst host"], "limit": 20},'
              '{"name": "proto", "time": 1, "fields": ["proto", "octets desc"]}]}',
}


def batches(total: int, size: int = 16384, seed: int = 1) -> list[FlowBatch]:
    rng = np.random.default_rng(seed)
    out = []
    t0 = 1_700_000_000 * 10**9
    span = 4 * 10**9
    for start in range(0, total, size):
        n = min(size, total - start)
        cols: dict[int, np.ndarray] = {}
        cols6: dict[int, np.ndarray] = {}

        def put(name: str, arr: np.ndarray, cols: dict[int, np.ndarray] = cols,
                cols6: dict[int, np.ndarray] = cols6) -> None:
            f = REGISTRY[name]
            (cols6 if f.column6 >= 0 else cols)[f.column6 if f.column6 >= 0 else f.column] = arr.astype(np.uint64)

        ingress = rng.random(n) < 0.6
        outside = (0xC6120000 + rng.integers(0, 65536, n)).astype(np.uint64)  # 65 k sources
        inside = (0x0A000000 + rng.integers(0, 4096, n)).astype(np.uint64)
        put("src_addr", np.where(ingress, outside, inside))
        put("dst_addr", np.where(ingress, inside, outside))
        is6 = rng.random(n) < 0.1
        v6 = np.zeros((n, 2), dtype=np.uint64)
        v6[is6, 0] = 0x20010DB800000000
        v6[is6, 1] = rng.integers(1, 65536, int(is6.sum()))
        put("src_addr6", v6)
        put("dst_port", rng.choice([22, 25, 53, 80, 443, 8080], n))
        put("src_port", rng.integers(1024, 65535, n))
        put("proto", rng.choice([6, 17, 1], n, p=[0.7, 0.25, 0.05]))
        put("bytes", rng.integers(40, 150000, n))
        put("packets", rng.integers(1, 100, n))
        put("recv_time_ns", np.full(n, t0 + span * start // total))
        out.append(FlowBatch(n, cols, cols6))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=4_000_000)
    ap.add_argument("--quick", action="store_true", help="1 M flows")
    args = ap.parse_args()
    total = 1_000_000 if args.quick else args.flows
    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in OBJECTS.items():
            (Path(tmp) / rel).mkdir(parents=True)
            (Path(tmp) / rel / "mo.conf").write_text(text)
        objects = load_runtime(CollectorConfig(mo_dir=Path(tmp))).objects
    data = batches(total)
    tables: list = []
    warm = Monitor(objects, [tables.append])  # compile the kernels outside the measurement
    warm(data[0])
    warm.flush()
    tables.clear()
    mon = Monitor(objects, [tables.append])
    t = time.perf_counter()
    c = time.process_time()
    for b in data:
        mon(b)
    mon.flush()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    rows = sum(len(x.rows) for x in tables)
    print(f"{total} flows, 3 objects (1 nested), 6 windows, {len(tables)} windows exported ({rows} rows)")
    print(f"{total / wall / 1e6:.2f} M flows/s, {cpu / total * 1e9:.0f} ns CPU per flow "
          "(filters + aggregation + export)")


if __name__ == "__main__":
    main()
