"""Soak: the realistic profile for minutes, with everything that goes wrong on a real appliance.

One IPFIX exporter sends the profile's flows at a steady rate to a live ``mirrorflow collect``
loading PostgreSQL, while a schedule interleaves:

- PostgreSQL stopped cleanly, then killed (-9), each for a while (windows wait in the spool);
- SIGHUPs (reloads);
- junk datagrams and a template flood (200 source addresses x 25 source ids x 60 templates)
  from other loopback addresses;
- one collector restart (SIGTERM, a gap of a few seconds, start again).

Every record carries ``packets = 1``, and one extra object counts every flow, so the database
should end up with exactly what the generator sent, minus what the collector counted as lost
(IPFIX sequence numbers count records; the gap across the restart is counted only because the
collector keeps sequence state across restarts). Printed: sent, in the database, counted lost,
sent while no collector listened, and whether the books balance. Exit status 1 if they do not.

Needs root for nothing, but PostgreSQL's server binaries (scripts/setup installs them).

Example:
    python -m bench soak                  # 10 minutes at 20 k flows/s
    python -m bench soak --minutes 2 --rate 5000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from appliance import synth
from appliance.demo.pg import PostgresCluster, free_tcp_port, postgres_bin_dir
from appliance.netflow import IPFIXEncoder, template_for
from bench.bench_objects_udp import objects

FIELDS = ["src_addr", "dst_addr", "src_port", "dst_port", "proto", "packets", "bytes"]
TEMPLATE_FLOOD = (200, 25, 60)  # source addresses, source ids, templates each


class Generator(threading.Thread):
    """Sends the profile's flows at `rate` records/s from 127.0.0.1; counts what it sent."""

    def __init__(self, port: int, rate: float, seed: int = 11) -> None:
        super().__init__(name="soak-generator", daemon=True)
        self.port, self.rate = port, rate
        self.cols = synth.flows(200_000, seed)
        self.cols["packets"] = np.ones(len(self.cols["src_addr"]), np.uint64)
        self.enc = IPFIXEncoder([template_for(FIELDS, 256)], observation_domain=7, mtu=1400,
                                template_refresh_packets=0, template_refresh_seconds=1.0)
        self.sent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        n, pos, t0, step = len(self.cols["src_addr"]), 0, time.monotonic(), 500
        try:
            while not self.stop.is_set():
                due = int((time.monotonic() - t0) * self.rate)
                if due < self.sent + step:
                    time.sleep(0.002)
                    continue
                idx = np.arange(pos, pos + step) % n
                pos = (pos + step) % n
                for dgram in self.enc.encode({k: v[idx] for k, v in self.cols.items()}, 256):
                    sock.sendto(dgram, ("127.0.0.1", self.port))
                with self.lock:
                    self.sent += step
        finally:
            sock.close()


def junk(port: int, count: int, seed: int = 5) -> None:
    """Random datagrams from 127.0.2.1-50 (counted as decode errors of those exporters)."""
    rng = np.random.default_rng(seed)
    socks = []
    for k in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.2.{k + 1}", 0))
        socks.append(s)
    try:
        for i in range(count):
            socks[i % 50].sendto(rng.bytes(int(rng.integers(1, 1400))), ("127.0.0.1", port))
    finally:
        for s in socks:
            s.close()


def template_flood(port: int) -> int:
    """Template-only datagrams: every source address x source id announces 60 templates."""
    addrs, ids, per = TEMPLATE_FLOOD
    tpls = [template_for(FIELDS[: 2 + k % 5] + [("bytes", 4 + k % 5)], 256 + k) for k in range(per)]
    sent = 0
    for a in range(addrs):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.1.{a // 250}.{a % 250 + 1}", 0))
        try:
            for sid in range(ids):
                for dgram in IPFIXEncoder(tpls, observation_domain=sid, mtu=9000).encode_templates():
                    s.sendto(dgram, ("127.0.0.1", port))
                    sent += 1
        finally:
            s.close()
    return sent


class Collector:
    """``mirrorflow collect`` as a process; its final statistics are kept at each stop."""

    def __init__(self, work: Path, port: int, dsn: str) -> None:
        self.work, self.port, self.dsn = work, port, dsn
        self.proc: subprocess.Popen | None = None
        self.finals: list[dict] = []
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = (self.work / f"collector-{self.runs}.log").open("w")
        cmd = [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{self.port}",
               "--mo-dir", str(self.work / "mo"), "--db", self.dsn, "--spool-dir", str(self.work / "spool"),
               "--templates", str(self.work / "templates.json"), "--stats-file", str(self.work / "stats.json"),
               "--stats-interval", "1", "--api", "off"]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "listening on" not in (self.work / f"collector-{self.runs}.log").read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not start: see {log.name}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.finals.append(json.loads((self.work / "stats.json").read_text()))
        self.proc = None

    def lost(self) -> int:
        """Records the collector counted as lost (sequence gaps), over every run."""
        return sum(int(e.get("lost_flows", 0)) for s in self.finals for e in s.get("exporters", [])
                   if e.get("address") == "127.0.0.1")


def db_flows(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute('SELECT coalesce(sum(flows), 0) FROM "all_total"').fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    ap.add_argument("--rate", type=float, default=20_000, help="flows per second (default 20 000)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, spool)")
    args = ap.parse_args(argv)
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        print("bench soak: PostgreSQL server binaries not found (scripts/setup installs them)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="mirrorflow-soak-"))
    os.chmod(work, 0o755)
    mo = work / "mo"
    for rel, text in {**objects(10), "all": '{"fwm": [{"name": "total", "time": 10, "fields": ["flows"]}]}'}.items():
        (mo / rel).mkdir(parents=True, exist_ok=True)
        (mo / rel / "mo.conf").write_text(text)
    pg = PostgresCluster(bin_dir, work / "pg", free_tcp_port())
    port = free_tcp_port()
    total = args.minutes * 60
    marks: dict[str, float] = {}
    try:
        pg.start()
        dsn = pg.create_database("soak")
        col = Collector(work, port, dsn)
        col.start()
        gen = Generator(port, args.rate)
        gen.start()
        t0 = time.monotonic()

        def at(fraction: float, what: str) -> None:
            time.sleep(max(0.0, t0 + fraction * total - time.monotonic()))
            print(f"  {time.monotonic() - t0:6.1f} s  {what}", flush=True)

        at(0.08, "junk: 100 000 random datagrams from 50 addresses")
        junk(port, 100_000)
        at(0.15, "PostgreSQL stopped")
        pg.stop()
        at(0.25, "PostgreSQL started")
        pg.start()
        at(0.30, "SIGHUP x 3")
        for _ in range(3):
            col.signal(signal.SIGHUP)
            time.sleep(1)
        at(0.38, "template flood")
        print(f"           {template_flood(port)} template datagrams sent", flush=True)
        at(0.48, "collector: SIGTERM (restart)")
        with gen.lock:
            marks["stop"] = gen.sent
        col.stop()
        time.sleep(4.0)
        with gen.lock:
            marks["gap_end"] = gen.sent
        col.start()
        print(f"  {time.monotonic() - t0:6.1f} s  collector listening again", flush=True)
        at(0.58, "PostgreSQL killed (-9)")
        pg.kill()
        at(0.66, "PostgreSQL started")
        pg.start()
        at(0.72, "SIGHUP")
        col.signal(signal.SIGHUP)
        at(0.80, "junk and template flood again")
        junk(port, 50_000, seed=6)
        template_flood(port)
        at(0.88, "PostgreSQL restarted")
        pg.stop()
        time.sleep(5)
        pg.start()
        at(1.0, "generator stopped; collector SIGTERM (last windows)")
        gen.stop.set()
        gen.join()
        time.sleep(1.0)
        col.stop()
        if any((work / "spool").glob("*.copy")) or any((work / "spool").glob("*")):
            subprocess.run([sys.executable, "-m", "appliance.cli", "db", "load", "--spool", str(work / "spool"),
                            "--db", dsn], check=False)
        stored, lost = db_flows(dsn), col.lost()
        gap = marks["gap_end"] - marks["stop"]
        print(f"\nsent {gen.sent:,} flows; in PostgreSQL {stored:,}; counted lost {lost:,}; "
              f"sent while no collector listened ≈ {gap:,}")
        balanced = stored + lost == gen.sent
        only_gap = lost <= gap + 2 * 500  # the generator's step: records in flight around the stop
        print(f"books balance (stored + lost == sent): {'yes' if balanced else 'NO'}; "
              f"loss only from the restart gap: {'yes' if only_gap else 'NO'}")
        return 0 if balanced and only_gap else 1
    finally:
        pg.destroy()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
