"""Benchmark: the probe vs softflowd on the same veth mirror, one run, ratios printed.

    sudo .venv/bin/python bench/bench_probe.py [--trace PCAP] [--loops N] [--pps N]

Replays a trace (tcpreplay, top speed by default) into a veth pair whose far end sits in a
namespace; the probe (in this process) and softflowd (libpcap) both watch the near end.
Prints packets sent / accounted by each, the eBPF program's ns per packet (kernel bpf_stats),
userspace CPU µs per packet for both, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.probe.attach import attach  # noqa: E402
from appliance.probe.config import ProbeSettings  # noqa: E402
from appliance.probe.kernel import KernelFlowCache  # noqa: E402
from appliance.probe.records import Counter  # noqa: E402
from appliance.probe.runner import Probe, SystemClock, build_exporter  # noqa: E402
from tests.integration.test_probe_rig import Collector, pcap_frames  # noqa: E402
from tests.integration.test_probe_support import ethernet_pcap, tshark_flows  # noqa: E402


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def prog_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program, from struct bpf_prog_info (kernel.bpf_stats)."""
    import ctypes as ct

    from bcc.libbcc import lib

    lib.bpf_obj_get_info.argtypes = [ct.c_int, ct.c_void_p, ct.POINTER(ct.c_uint32)]
    buf = (ct.c_uint8 * 256)()
    n = ct.c_uint32(256)
    if lib.bpf_obj_get_info(prog_fd, buf, ct.byref(n)) != 0:
        return 0, 0
    raw = bytes(buf)
    return int.from_bytes(raw[192:200], "little"), int.from_bytes(raw[200:208], "little")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path,
                    default=REPO.parent / "shared/corpus/traffic/nDPI/gnutella.pcap")
    ap.add_argument("--loops", type=int, default=200)
    ap.add_argument("--pps", type=int, default=0, help="0 = top speed")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mfbench"))
    ns, a, b = f"mfb{os.getpid()}", f"mfb{os.getpid()}a", f"mfb{os.getpid()}b"
    sh("ip", "netns", "add", ns)
    sf = None
    try:
        sh("ip", "link", "add", a, "mtu", "9000", "type", "veth", "peer", "name", b, "mtu", "9000")
        sh("ip", "link", "set", b, "netns", ns)
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{b}.disable_ipv6=1")
        sh("sysctl", "-qw", f"net.ipv6.conf.{a}.disable_ipv6=1")
        sh("ip", "link", "set", a, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", b, "up")
        sh("sysctl", "-qw", "kernel.bpf_stats_enabled=1", check=False)
        pcap = ethernet_pcap(args.trace, tmp / "t.pcap")
        frames = pcap_frames(pcap) * args.loops
        ours_c, sf_c = Collector(), Collector()
        sf = subprocess.Popen(
            ["softflowd", "-d", "-i", a, "-n", sf_c.address, "-v", "9", "-m", "200000",
             "-t", "maxlife=1d", "-t", "general=1d", "-t", "tcp=1d", "-t", "udp=1d",
             "-c", str(tmp / "sf.ctl")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        cache = KernelFlowCache(200_000)
        s = ProbeSettings(interfaces=[a], destinations=[ours_c.address], state_dir=tmp / "st",
                          active_timeout=86400, inactive_timeout=86400, maxflows=200_000,
                          scan_interval=0.5)
        clock = SystemClock()
        probe = Probe(s, cache, build_exporter(s, clock), clock)
        att = attach(a, cache.prog_fd, state_dir=tmp / "st")
        time.sleep(1.0)
        stop = threading.Event()
        th = threading.Thread(target=probe.run, args=(stop,))
        th.start()
        ru0 = resource.getrusage(resource.RUSAGE_THREAD if False else resource.RUSAGE_SELF)
        sf_cpu0 = cpu_of(sf.pid)
        bpf0 = prog_stats(cache.prog_fd)
        t0 = time.perf_counter()
        speed = ["--topspeed"] if not args.pps else [f"--pps={args.pps}"]
        sh("ip", "netns", "exec", ns, "tcpreplay", "-q", "-i", b, *speed, f"--loop={args.loops}",
           str(pcap))
        elapsed = time.perf_counter() - t0
        time.sleep(1.5)
        stop.set()
        th.join()
        att.detach()
        probe.flush()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        bpf1 = prog_stats(cache.prog_fd)
        sh("softflowctl", "-c", str(tmp / "sf.ctl"), "expire-all", check=False)
        time.sleep(1.0)
        sf_cpu = cpu_of(sf.pid) - sf_cpu0
        k = cache.counters().sum(axis=0)
        ours = tshark_flows(ours_c.receive(limit_s=30), tmp)
        theirs = tshark_flows(sf_c.receive(limit_s=30), tmp)
        ip_sent = int(k[Counter.IP_PACKETS])
        ours_pk = sum(f["packets"] for f in ours)
        sf_pk = sum(f["packets"] for f in theirs)
        our_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        bpf_ns = (bpf1[0] - bpf0[0]) / max(1, bpf1[1] - bpf0[1])
        print(f"trace {args.trace.name} x{args.loops}: {frames} frames sent in {elapsed:.2f} s "
              f"({frames / elapsed / 1e3:.0f} kpps)")
        print(f"probe:     kernel saw {int(k[Counter.FRAMES])} frames, accounted "
              f"{int(k[Counter.ACCOUNTED_PACKETS])} IP packets, exported {ours_pk} packets in "
              f"{len(ours)} records ({100 * ours_pk / max(1, ip_sent):.2f} % of IP packets)")
        print(f"softflowd: exported {sf_pk} packets in {len(theirs)} records "
              f"({100 * sf_pk / max(1, ip_sent):.2f} %)")
        print(f"eBPF program: {bpf_ns:.0f} ns per packet (bpf_stats); probe userspace "
              f"{1e6 * our_cpu / max(1, frames):.3f} µs CPU per packet ({our_cpu:.2f} s); softflowd "
              f"{1e6 * sf_cpu / max(1, frames):.3f} µs CPU per packet ({sf_cpu:.2f} s)")
        print(f"ratios: accounted probe/softflowd = {ours_pk / max(1, sf_pk):.3f}; "
              f"CPU per packet softflowd/probe(userspace) = {sf_cpu / max(1e-9, our_cpu):.1f}")
        probe.close()
        cache.close()
        ours_c.close()
        sf_c.close()
    finally:
        if sf is not None and sf.poll() is None:
            os.killpg(sf.pid, signal.SIGTERM)
            sf.wait(10)
        sh("ip", "link", "del", a, check=False)
        sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
