"""Live UDP on loopback: `mirrorflow collect` against nfcapd on the same datagrams and rates.

A generator process pinned to one CPU sends pre-encoded NetFlow v9 datagrams (25 records
each, appliance/synth/flows.py) with `sendmmsg` at a paced rate for a fixed time; the receiver runs
pinned to the other CPU. Each receiver is started afresh for each rate step: templates
first, a short pause, then the data; when the socket queue has drained the receiver gets
SIGTERM and its records are counted (ours: the --stats-file; nfcapd: `nfdump -I` on the
files it wrote). Loss = records sent − records counted. The table shows, per step, the rate
asked for, what the generator achieved, what each receiver got and the receiver's CPU time;
then the highest lossless rate of each and their ratio.

Both receivers ask for the same 64 MiB SO_RCVBUF. nfcapd uses plain SO_RCVBUF, which the
kernel caps at net.core.rmem_max, while ours uses SO_RCVBUFFORCE as root: so as root the
benchmark raises net.core.rmem_max to the requested size for the run and restores it
afterwards (--no-sysctl: leave it alone and give both the smaller buffer instead). What
each socket really got is read back with `ss` and printed.

Example:
    python -m bench collect --quick          # under a minute
    python -m bench collect                  # full: 5 s steps from 0.25 to 4 M records/s
    python -m bench collect --rates 1,2 --duration 3 --only mirrorflow
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance import synth

_RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
_ROOT = Path(__file__).resolve().parent.parent
_MIRRORFLOW = _ROOT / ".venv" / "bin" / "mirrorflow"
_BURST = 32  # datagrams per sendmmsg call

FULL_RATES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
QUICK_RATES = (0.5, 1.0, 2.0)


# ---- the generator ----------------------------------------------------------------------


class _Sender:
    """`sendmmsg(2)` over a connected UDP socket, every datagram's header built once."""

    _IOVEC = np.dtype({"names": ["base", "len"], "formats": ["=u8", "=u8"], "itemsize": 16})
    _MMSG = np.dtype({"names": ["iov", "iovlen", "len"], "formats": ["=u8", "=u8", "=u4"],
                      "offsets": [16, 24, 56], "itemsize": 64})

    def __init__(self, payloads: list[bytes], port: int) -> None:
        self.n = len(payloads)
        lengths = np.array([len(p) for p in payloads], np.uint64)
        self.buf = np.frombuffer(b"".join(payloads), np.uint8).copy()
        starts = np.zeros(self.n, np.uint64)
        starts[1:] = np.cumsum(lengths)[:-1]
        self.iov = np.zeros(self.n, self._IOVEC)
        self.iov["base"] = self.buf.ctypes.data + starts
        self.iov["len"] = lengths
        self.hdr = np.zeros(self.n, self._MMSG)
        self.hdr["iov"] = self.iov.ctypes.data + np.arange(self.n, dtype=np.uint64) * 16
        self.hdr["iovlen"] = 1
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.connect(("127.0.0.1", port))
        libc = ctypes.CDLL(None, use_errno=True)
        self._sendmmsg = libc.sendmmsg
        self._sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        self._sendmmsg.restype = ctypes.c_int

    def send(self, start: int, count: int) -> int:
        """Send datagrams start..start+count-1 (no wrap); returns how many went out."""
        got = self._sendmmsg(self.sock.fileno(), self.hdr.ctypes.data + start * 64, count, 0)
        return max(got, 0)


def _generate(payloads: list[bytes], port: int, pps: float, duration: float, cpu: int, nice: int,
              out) -> None:
    """Child process: send `payloads` round robin at `pps` datagrams/s for `duration` s."""
    _pin(cpu, nice)
    tx = _Sender(payloads, port)
    clock = time.perf_counter
    sent = i = 0
    start = clock()
    end = start + duration
    while True:
        now = clock()
        if now >= end:
            break
        due = int((now - start) * pps) + 1
        if sent >= due:
            continue  # busy-wait: the generator owns its CPU
        count = min(_BURST, due - sent, tx.n - i)
        got = tx.send(i, count)
        sent += got
        i = (i + got) % tx.n
    out.send((sent, clock() - start))
    out.close()


# ---- receivers --------------------------------------------------------------------------


@dataclass
class StepResult:
    receiver: str
    asked: float  # records/s
    sent: int  # records
    achieved: float  # records/s the generator reached
    counted: int
    socket_drops: int
    cpu_s: float
    rcvbuf: int  # bytes the kernel reports (twice the usable size)
    round_no: int = 1

    @property
    def loss(self) -> int:
        return self.sent - self.counted


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _udp_socket_row(port: int) -> list[str] | None:
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[1] == f"0100007F:{port:04X}":
                return cols
    return None


def _rx_queue(port: int) -> int:
    row = _udp_socket_row(port)
    return int(row[4].split(":")[1], 16) if row else 0


def _drops(port: int) -> int:
    row = _udp_socket_row(port)
    return int(row[-1]) if row else 0


def _rcvbuf(port: int) -> int:
    out = subprocess.run(["ss", "-uamn", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"rb(\d+)", out)
    return int(m.group(1)) if m else 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pin(cpu: int, nice: int, realtime: bool = False) -> None:
    os.sched_setaffinity(0, {cpu})
    if realtime:  # SCHED_FIFO: the receiver owns its CPU whenever it has work (root only)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except PermissionError:
            pass  # not root: run at normal priority


class _Receiver:
    name = ""

    def __init__(self, port: int, workdir: Path, rcvbuf: int, cpu: int, nice: int,
                 realtime: bool = False) -> None:
        self.port, self.workdir, self.rcvbuf, self.cpu, self.nice = port, workdir, rcvbuf, cpu, nice
        self.realtime = realtime
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.workdir / "log", "w")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: _pin(self.cpu, self.nice, self.realtime), env=_env())
        deadline = time.monotonic() + 60
        while _udp_socket_row(self.port) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start; see {self.workdir / 'log'}")
            time.sleep(0.05)
        time.sleep(0.2)  # the socket is bound slightly before the receive loop runs
        self.cpu_at_start = _cpu_seconds(self.proc.pid)  # leave start-up (imports, JIT) out

    def stop(self) -> tuple[float, int, int]:
        """Wait until the socket queue drained; SIGTERM. Returns (CPU s since start, drops, rcvbuf)."""
        assert self.proc is not None
        quiet = 0
        deadline = time.monotonic() + 60
        while quiet < 3 and time.monotonic() < deadline:
            quiet = quiet + 1 if _rx_queue(self.port) == 0 else 0
            time.sleep(0.1)
        cpu = _cpu_seconds(self.proc.pid) - self.cpu_at_start
        drops, rcvbuf = _drops(self.port), _rcvbuf(self.port)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return cpu, drops, rcvbuf

    def counted(self) -> int:
        raise NotImplementedError


class Mirrorflow(_Receiver):
    name = "mirrorflow"

    def command(self) -> list[str]:
        return [str(_MIRRORFLOW), "collect", "--listen", f"127.0.0.1:{self.port}",
                "--stats-interval", "0", "--stats-file", str(self.workdir / "stats.json"),
                "--rcvbuf-mb", str(self.rcvbuf >> 20)]

    def counted(self) -> int:
        return int(json.loads((self.workdir / "stats.json").read_text())["records"])


class Nfcapd(_Receiver):
    name = "nfcapd"

    def command(self) -> list[str]:
        flows = self.workdir / "flows"
        flows.mkdir(parents=True, exist_ok=True)
        return ["nfcapd", "-b", "127.0.0.1", "-p", str(self.port), "-w", str(flows),
                "-B", str(self.rcvbuf)]

    def counted(self) -> int:
        out = subprocess.run(["nfdump", "-R", str(self.workdir / "flows"), "-I"],
                             capture_output=True, text=True, check=True).stdout
        return sum(int(m) for m in re.findall(r"^Flows: (\d+)", out, re.MULTILINE))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(_ROOT / ".cache" / "numba"))
    return env


# ---- one step, the search and the report ------------------------------------------------


def run_step(kind: type[_Receiver], rate: float, duration: float, templates: list[bytes],
             data: list[bytes], per_dgram: float, rcvbuf: int, base: Path,
             gen_cpu: int, rx_cpu: int, nice: int, realtime: bool = False) -> StepResult:
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"{kind.name}-", dir=base))
    rx = kind(port, workdir, rcvbuf, rx_cpu, nice, realtime)
    rx.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for t in templates:
                s.sendto(t, ("127.0.0.1", port))
        time.sleep(0.3)
        parent, child = mp.Pipe(duplex=False)
        gen = mp.get_context("fork").Process(
            target=_generate, args=(data, port, rate / per_dgram, duration, gen_cpu, nice, child)
        )
        gen.start()
        sent_dgrams, elapsed = parent.recv()
        gen.join()
    finally:
        cpu, drops, got_rcvbuf = rx.stop()
    sent = round(sent_dgrams * per_dgram)
    result = StepResult(kind.name, rate, sent, sent / elapsed, rx.counted(), drops, cpu, got_rcvbuf)
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f} M"


def print_table(results: list[StepResult]) -> None:
    print(f"\n{'receiver':<11}{'asked/s':>9}{'sent/s':>10}{'sent':>11}{'counted':>11}{'loss':>10}"
          f"{'loss %':>8}{'sock drops':>11}{'rx CPU s':>9}{'rec/CPU-s':>11}")
    for r in results:
        per_cpu = r.counted / r.cpu_s if r.cpu_s else 0.0
        print(f"{r.receiver:<11}{_fmt_rate(r.asked):>9}{_fmt_rate(r.achieved):>10}{r.sent:>11}"
              f"{r.counted:>11}{r.loss:>10}{100 * r.loss / max(r.sent, 1):>7.2f}%{r.socket_drops:>11}"
              f"{r.cpu_s:>9.2f}{_fmt_rate(per_cpu):>11}")


def best_lossless(results: list[StepResult], name: str) -> StepResult | None:
    ok = [r for r in results if r.receiver == name and r.loss == 0]
    return max(ok, key=lambda r: r.achieved) if ok else None


def _set_rmem_max(value: int) -> None:
    _RMEM_MAX.write_text(f"{value}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench collect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"rates {QUICK_RATES} M/s, 2 s steps (< 60 s)")
    ap.add_argument("--rates", help=f"comma list of M records/s (default full: {','.join(map(str, FULL_RATES))})")
    ap.add_argument("--duration", type=float, help="seconds per step (default 5, quick 2)")
    ap.add_argument("--only", choices=("mirrorflow", "nfcapd"), help="run one receiver")
    ap.add_argument("--rcvbuf-mb", type=int, default=64, help="SO_RCVBUF both ask for (default 64)")
    ap.add_argument("--no-sysctl", action="store_true",
                    help="do not raise net.core.rmem_max; both get min(rcvbuf, rmem_max)")
    ap.add_argument("--keep-going", action="store_true",
                    help="run every rate even after a receiver lost records (default: stop it)")
    ap.add_argument("--repeat", type=int, help="rounds of the whole search (default 3, quick 1)")
    ap.add_argument("--nice", type=int, default=-10,
                    help="priority of generator and receivers (default -10 as root: the machine is shared)")
    ap.add_argument("--rt", action="store_true",
                    help="run the receivers SCHED_FIFO (root): measures them on a dedicated CPU; "
                         "starves other work on that CPU while they are busy")
    ap.add_argument("--records", type=int, default=1_000_000, help="distinct records encoded (default 1 M)")
    args = ap.parse_args(argv)
    if args.quick:
        rates = [float(x) for x in args.rates.split(",")] if args.rates else list(QUICK_RATES)
        duration = args.duration or 2.0
        args.repeat = args.repeat or 1
    else:
        rates = [float(x) for x in args.rates.split(",")] if args.rates else list(FULL_RATES)
        duration = args.duration or 5.0
        args.repeat = args.repeat or 3
    if shutil.which("nfcapd") is None and args.only != "mirrorflow":
        print("nfcapd not found (apt-get install nfdump): running mirrorflow alone", file=sys.stderr)
        args.only = "mirrorflow"
    cpus = sorted(os.sched_getaffinity(0))
    gen_cpu, rx_cpu = (cpus[0], cpus[-1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    rcvbuf = args.rcvbuf_mb << 20
    old_rmem = int(_RMEM_MAX.read_text())
    raised = False
    if old_rmem < rcvbuf:
        if not args.no_sysctl and os.geteuid() == 0:
            _set_rmem_max(rcvbuf)
            raised = True
        else:
            rcvbuf = old_rmem & ~((1 << 20) - 1)
    print(f"net.core.rmem_max = {old_rmem}" + (f" (raised to {rcvbuf} for this run)" if raised else ""))
    print(f"both receivers ask for SO_RCVBUF {rcvbuf >> 20} MiB; generator on CPU {gen_cpu}, "
          f"receiver on CPU {rx_cpu}{' (SCHED_FIFO)' if args.rt else ''}; {duration:g} s per step")
    templates, data, n = synth.v9_datagrams(args.records)
    per_dgram = n / len(data)
    print(f"v9, {len(synth.V9_FIELDS)} fields, {per_dgram:.0f} records per datagram "
          f"({len(data[0])} bytes), {len(data)} distinct datagrams")
    kinds = [k for k in (Mirrorflow, Nfcapd) if args.only in (None, k.name)]
    results: list[StepResult] = []
    base = Path(tempfile.mkdtemp(prefix="mirrorflow-bench-"))
    t0 = time.monotonic()
    try:
        for rnd in range(args.repeat):
            lossy: set[str] = set()
            for rate in rates:  # interleaved, so both see the same background load
                for kind in kinds:
                    if kind.name in lossy:
                        continue
                    r = run_step(kind, rate * 1e6, duration, templates, data, per_dgram, rcvbuf,
                                 base, gen_cpu, rx_cpu, args.nice, args.rt)
                    r.round_no = rnd + 1
                    results.append(r)
                    print(f"  round {rnd + 1} {r.receiver:<10} asked {_fmt_rate(r.asked)}/s sent "
                          f"{_fmt_rate(r.achieved)}/s loss {r.loss} ({100 * r.loss / max(r.sent, 1):.2f}%) "
                          f"rx CPU {r.cpu_s:.2f} s, rcvbuf {r.rcvbuf}", flush=True)
                    if r.loss > 0 and not args.keep_going:
                        lossy.add(kind.name)
                if len(lossy) == len(kinds):
                    break
    finally:
        if raised:
            _set_rmem_max(old_rmem)
        shutil.rmtree(base, ignore_errors=True)
    print_table(results)
    print(f"\nhighest lossless rate per round (generator's achieved rate; {time.monotonic() - t0:.0f} s total):")
    best: dict[str, list[float]] = {}
    for kind in kinds:
        per_round = []
        for rnd in range(1, args.repeat + 1):
            tried = [r for r in results if r.receiver == kind.name and r.round_no == rnd]
            b = best_lossless(tried, kind.name)
            per_round.append(b.achieved if b else 0.0)
        best[kind.name] = per_round
        bound = all(r.loss == 0 for r in results if r.receiver == kind.name)
        print(f"  {kind.name:<10} best {_fmt_rate(max(per_round))}/s, "
              f"median {_fmt_rate(statistics.median(per_round))}/s"
              f"  rounds: {', '.join(_fmt_rate(x) for x in per_round)}"
              + ("  (never lost: a lower bound, the sender limits)" if bound else ""))
    if len(best) == 2 and min(best["nfcapd"]) > 0:
        print(f"  ratio mirrorflow/nfcapd: best {max(best['mirrorflow']) / max(best['nfcapd']):.2f}, "
              f"median {statistics.median(best['mirrorflow']) / statistics.median(best['nfcapd']):.2f}")
    per_cpu = {k.name: [r.counted / r.cpu_s for r in results if r.receiver == k.name and r.cpu_s > 0.5]
               for k in kinds}
    print("records per receiver CPU-second (steps with > 0.5 CPU s; median, max):")
    for name, xs in per_cpu.items():
        if xs:
            print(f"  {name:<10} {_fmt_rate(statistics.median(xs))}, {_fmt_rate(max(xs))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
