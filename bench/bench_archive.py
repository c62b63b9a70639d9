"""The flow archive: what writing costs, bytes per flow against nfcapd, query time against nfdump.

Three parts, one run, ratios printed:

1. **write cost** — the realistic profile of `bench objects` (3 monitoring objects, 6 windows,
   65 k sources, v9 over UDP loopback) with and without ``--archive``, interleaved rate by rate:
   collector CPU per flow on lossless steps and the highest lossless rate. Target: ≤ 15 % more
   CPU per flow.
2. **disk** — the same N flows (v9 datagrams, each sent once at a pace both receivers take
   without loss; the counts are checked) to ``nfcapd`` and to ``mirrorflow collect --archive``;
   bytes per flow of the Parquet files against nfcapd's files uncompressed and recompressed
   with ``nfdump -J`` (LZO, BZ2, LZ4). Target: ≤ ⅓ of nfcapd's best.
3. **query** — on those files: ``mirrorflow flows --top 'src host' --by bytes -n 10`` against
   ``nfdump -R … -s srcip/bytes -n 10``, and a filtered listing (``dst port 22 and proto
   tcp``, every field as CSV) against ``nfdump -R … -o csv 'dst port 22 and proto tcp'``: identical
   answers (checked),
   median time of 3 runs each, ratio. Target: ≥ 3× faster.

Example:
    python -m bench archive --quick         # 1 M flows, one write rate (about two minutes)
    python -m bench archive --flows 20000000 --rates 0.5,1,1.5
"""

from __future__ import annotations

import argparse
import csv
import io
import ipaddress
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.bench_collect_vs_nfcapd import (
    _MIRRORFLOW,
    _RMEM_MAX,
    Mirrorflow,
    Nfcapd,
    _env,
    _fmt_rate,
    _free_port,
    _Sender,
    _set_rmem_max,
    run_step,
)
from bench.bench_objects_udp import MirrorflowObjects, packets

QUERY_FILTER = "dst port 22 and proto tcp"


class MirrorflowObjectsArchive(MirrorflowObjects):
    name = "mirrorflow+mo+archive"

    def command(self) -> list[str]:
        return [*super().command(), "--archive", str(self.workdir / "archive")]


class MirrorflowArchive(Mirrorflow):
    name = "mirrorflow-archive"

    def command(self) -> list[str]:
        return [*super().command(), "--archive", str(self.workdir / "archive")]


class NfcapdKeep(Nfcapd):
    name = "nfcapd"


# ---- 1. write cost -----------------------------------------------------------------------


def write_cost(rates: list[float], duration: float, records: int, rcvbuf: int, base: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    gen_cpu, rx_cpu = (cpus[0], cpus[-1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    templates, data, n = packets(records)
    per = n / len(data)
    ns: dict[str, list[float]] = {MirrorflowObjects.name: [], MirrorflowObjectsArchive.name: []}
    best: dict[str, float] = dict.fromkeys(ns, 0.0)
    print(f"1. write cost: bench objects' profile over UDP, {duration:g} s steps, with and without --archive")
    for rate in rates:
        for kind in (MirrorflowObjects, MirrorflowObjectsArchive):
            r = run_step(kind, rate * 1e6, duration, templates, data, per, rcvbuf, base, gen_cpu, rx_cpu, -10)
            per_flow = r.cpu_s / max(r.counted, 1) * 1e9
            print(f"   {kind.name:22} asked {_fmt_rate(r.asked)}/s sent {_fmt_rate(r.achieved)}/s loss {r.loss} "
                  f"CPU {r.cpu_s:.2f} s = {per_flow:.0f} ns/flow", flush=True)
            if r.loss == 0:
                ns[kind.name].append(per_flow)
                best[kind.name] = max(best[kind.name], r.achieved)
    a, b = ns[MirrorflowObjects.name], ns[MirrorflowObjectsArchive.name]
    if a and b:
        ratio = statistics.median(b) / statistics.median(a)
        print(f"   CPU per flow, median of lossless steps: without {statistics.median(a):.0f} ns, with --archive "
              f"{statistics.median(b):.0f} ns: +{100 * (ratio - 1):.1f} % (target ≤ 15 %)")
    print(f"   highest lossless rate: without {_fmt_rate(best[MirrorflowObjects.name])}/s, with --archive "
          f"{_fmt_rate(best[MirrorflowObjectsArchive.name])}/s")


# ---- 2. the same flows to both -----------------------------------------------------------


def send_once(templates: list[bytes], data: list[bytes], port: int, pps: float) -> None:
    """Templates, then every datagram exactly once at `pps` datagrams/s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for t in templates:
            s.sendto(t, ("127.0.0.1", port))
    time.sleep(0.3)
    tx = _Sender(data, port)
    start = time.perf_counter()
    i = 0
    while i < tx.n:
        due = int((time.perf_counter() - start) * pps) + 32
        if i >= due:
            time.sleep(0.0005)
            continue
        i += tx.send(i, min(32, tx.n - i, due - i))


def fill(kind: type, templates: list[bytes], data: list[bytes], n: int, rcvbuf: int, work: Path, pps: float) -> Path:
    port = _free_port()
    rx = kind(port, work, rcvbuf, 0, 0)
    rx.start()
    try:
        send_once(templates, data, port, pps)
    finally:
        rx.stop()
    got = rx.counted()
    if got != n:
        raise SystemExit(f"{kind.name} counted {got} of {n} flows: lower --pace and run again")
    return work


def du(path: Path, pattern: str) -> int:
    return sum(f.stat().st_size for f in path.rglob(pattern) if f.is_file())


def disk(n: int, nf: Path, mf: Path) -> dict[str, Path]:
    print(f"2. disk: the same {n:,} flows (v9, every datagram once, counts checked)")
    flows = nf / "flows"
    variants = {"uncompressed": flows}
    for name, level in (("LZO", 1), ("BZ2", 2), ("LZ4", 3)):
        d = nf / f"flows-{name}"
        shutil.copytree(flows, d)
        subprocess.run(["nfdump", "-R", str(d), "-J", str(level)], check=True, capture_output=True)
        variants[name] = d
    ours = du(mf / "archive", "*.parquet")
    best = None
    for name, d in variants.items():
        size = du(d, "nfcapd.*")
        best = size if best is None or size < best else best
        print(f"   nfcapd {name:12} {size / n:7.2f} bytes/flow")
    print(f"   mirrorflow Parquet zstd {ours / n:7.2f} bytes/flow = {ours / best:.2f} of nfcapd's best (target ≤ 0.33)")
    return variants


# ---- 3. queries --------------------------------------------------------------------------


def timed(cmd: list[str], runs: int = 3) -> tuple[float, str]:
    times = []
    out = ""
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_env()).stdout
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def queries(flows: Path, archive: Path) -> None:
    print("3. query (median of 3 runs each, answers compared)")
    t_nf, out = timed(["nfdump", "-R", str(flows), "-s", "srcip/bytes", "-n", "10", "-o", "csv", "-q", "-N"])
    nf_top = []
    for row in csv.reader(io.StringIO(out)):
        if len(row) > 9 and row[0][:1].isdigit():
            nf_top.append((str(ipaddress.ip_address(row[4].strip())), int(row[9])))
    t_mf, out = timed([str(_MIRRORFLOW), "flows", "-R", str(archive), "--top", "src host", "--by", "bytes", "-n", "10",
                       "--format", "jsonl"])
    mf_top = [(r["src_host"], r["bytes"]) for r in map(json.loads, out.splitlines())]
    same = "identical" if [b for _, b in nf_top] == [b for _, b in mf_top] and set(nf_top) == set(mf_top) else \
        f"DIFFERENT:\n   nfdump {nf_top}\n   ours   {mf_top}"
    print(f"   top 10 src host by bytes: nfdump {t_nf:.3f} s, mirrorflow {t_mf:.3f} s = {t_nf / t_mf:.1f}× ({same})")
    t_nf, out = timed(["nfdump", "-R", str(flows), "-o", "csv", "-q", "-N", QUERY_FILTER])
    nf_rows = sorted((r[3].strip(), r[4].strip(), int(r[5]), int(r[6]), int(r[12]))
                     for r in csv.reader(io.StringIO(out)) if len(r) > 12 and r[0][:1].isdigit())
    t_mf, out = timed([str(_MIRRORFLOW), "flows", "-R", str(archive), "-n", "0", "--format", "csv", QUERY_FILTER])
    mf_rows = sorted((r["src_addr"], r["dst_addr"], int(r["src_port"]), int(r["dst_port"]), int(r["bytes"]))
                     for r in csv.DictReader(io.StringIO(out)))
    same = "identical" if nf_rows == mf_rows else f"DIFFERENT: nfdump {len(nf_rows)} rows, ours {len(mf_rows)}"
    print(f"   listing '{QUERY_FILTER}' ({len(mf_rows):,} flows): nfdump {t_nf:.3f} s, mirrorflow {t_mf:.3f} s = "
          f"{t_nf / t_mf:.1f}× ({same})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench archive", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 M flows, one write rate of 3 s")
    ap.add_argument("--flows", type=int, help="flows for the disk and query parts (default 5 M, quick 1 M)")
    ap.add_argument("--rates", help="write-cost rates, M flows/s (default 0.5,1.0; quick 0.5)")
    ap.add_argument("--duration", type=float, help="seconds per write-cost step (default 5, quick 3)")
    ap.add_argument("--pace", type=float, default=0.4, help="M flows/s for the disk part (default 0.4)")
    ap.add_argument("--skip-write", action="store_true", help="leave out part 1")
    args = ap.parse_args(argv)
    if shutil.which("nfcapd") is None or shutil.which("nfdump") is None:
        raise SystemExit("nfcapd/nfdump not found: apt-get install nfdump")
    n = args.flows or (1_000_000 if args.quick else 5_000_000)
    rates = [float(x) for x in args.rates.split(",")] if args.rates else ([0.5] if args.quick else [0.5, 1.0])
    duration = args.duration or (3.0 if args.quick else 5.0)
    rcvbuf = 64 << 20
    old = int(_RMEM_MAX.read_text())
    raised = old < rcvbuf and os.geteuid() == 0
    if raised:
        _set_rmem_max(rcvbuf)
    base = Path(tempfile.mkdtemp(prefix="mirrorflow-bench-archive-"))
    try:
        if not args.skip_write:
            write_cost(rates, duration, 1_000_000, rcvbuf, base)
        templates, data, got = packets(n, seed=11)
        per = got / len(data)
        pps = args.pace * 1e6 / per
        nf = fill(NfcapdKeep, templates, data, got, rcvbuf, base / "nfcapd", pps)
        mf = fill(MirrorflowArchive, templates, data, got, rcvbuf, base / "mirrorflow", pps)
        variants = disk(got, nf, mf)
        queries(variants["LZ4"], mf / "archive")
    finally:
        if raised:
            _set_rmem_max(old)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
