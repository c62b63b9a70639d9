"""Benchmark: the probe vs softflowd on the same veth mirror, one run, ratios printed.

    sudo .venv/bin/python bench/bench_probe.py                  # 10 k and 1 M distinct flows
    sudo .venv/bin/python bench/bench_probe.py --flows 10000 --loops 100 --pps 200000
    sudo .venv/bin/python bench/bench_probe.py --trace ../shared/corpus/traffic/nDPI/gnutella.pcap
    sudo .venv/bin/python -m bench probe --flood [--flows 1000000] [--hooks tc,xdp]

--flood: a spoofed-source flood, every frame a new 5-tuple (no loops), replayed at top speed;
the probe runs with the appliance's settings (maxflows 2,000,000; active 2 s, inactive 1 s,
scan 0.5 s, 8960-byte datagrams; --probe-defaults: the probe's own) once on TC and
once on XDP (native, veth), each time next to softflowd and pmacctd (nfprobe plugin) on the
same frames. Accounted = packets in the decoded export / frames sent; CPU per packet = the
probe's thread CPU (drain, table, expiry, export: user + system) plus the eBPF program's run
time per packet (kernel.bpf_stats_enabled), the peers' process CPU (pmacctd: core + plugin).

Each scenario replays frames (tcpreplay, top speed by default, pcap preloaded) into a veth
pair whose far end sits in a namespace; the probe (in this process, TC ingress) and softflowd
(libpcap) both watch the near end, every timeout one day. Scenarios: N distinct UDP flows of
60-byte frames (one frame per flow, the file looped), or a capture file.

softflowd reads libpcap's TPACKET_V3 ring, which hands over a block only when it is full, so
the tail of a run can sit unprocessed; before ``expire-all`` the benchmark pushes non-IP filler
frames and a runt IPv4 frame through and waits until softflowd has counted the runt (then it
has processed everything before it). What softflowd then misses is its own loss (libpcap drops
are printed too).

Printed per scenario: frames sent and the rate reached; packets accounted ÷ packets sent for
both; the probe's cost per packet (eBPF program time from kernel.bpf_stats, plus its userspace
CPU) and softflowd's userspace CPU per packet (its kernel-side AF_PACKET copy is not in it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance import synth  # noqa: E402
from appliance.probe.attach import attach  # noqa: E402
from appliance.probe.config import ProbeSettings  # noqa: E402
from appliance.probe.kernel import KernelFlowCache  # noqa: E402
from appliance.probe.records import Counter  # noqa: E402
from appliance.probe.runner import Probe, SystemClock, build_exporter  # noqa: E402
from tests.integration.test_probe_rig import pcap_frames  # noqa: E402
from tests.integration.test_probe_support import ethernet_pcap  # noqa: E402

DAY = "86400"
SF_TIMEOUTS = ("maxlife", "general", "tcp", "tcp.rst", "tcp.fin", "udp", "icmp", "expint")


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


def flows_pcap(path: Path, n: int) -> Path:
    """n distinct UDP flows (10.x.y.z:1024 → 192.0.2.1:53), one 60-byte frame each."""
    frame = bytearray(60)
    frame[0:14] = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
    frame[14:34] = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 0, 0, 64, 17, 0, bytes(4),
                               bytes([192, 0, 2, 1]))
    frame[34:42] = struct.pack("!HHHH", 1024, 53, 26, 0)
    rec = np.zeros((n, 16 + 60), np.uint8)
    rec[:, :16] = np.frombuffer(synth.pcap_record(1_000_000_000, bytes(frame))[:16], np.uint8)
    rec[:, 16:] = np.frombuffer(bytes(frame), np.uint8)
    i = np.arange(n, dtype=np.uint32)
    rec[:, 16 + 26] = 10
    rec[:, 16 + 27] = (i >> 16) & 0xFF
    rec[:, 16 + 28] = (i >> 8) & 0xFF
    rec[:, 16 + 29] = i & 0xFF
    rec[:, 16 + 36] = 1 + (i >> 24)  # source port high byte: more than 2**24 flows
    with path.open("wb") as f:
        f.write(synth.pcap_header())
        f.write(rec.tobytes())
    return path


def filler_pcap(path: Path) -> Path:
    macs = b"\x02\0\0\0\0\x09\x02\0\0\0\0\x08"
    frames = [macs + b"\x88\xb5" + bytes(1486)] * 200 + [macs + b"\x08\x00\x45" + bytes(9)]
    return synth.write_pcap(path, ((1_000_000_000 + 1000 * i, fr) for i, fr in enumerate(frames)))


def warm_up_numba() -> None:
    """Runs the probe's whole userspace path once (drain, table, expiry, numba export) over
    a MemoryFlowCache, so that loading its compiled functions is not counted."""
    from appliance.probe.exporter import MemoryTransport
    from appliance.probe.kernel import MemoryFlowCache
    from appliance.probe.records import KEY_DTYPE, VAL_DTYPE

    for protocol in (9, 10):
        s = ProbeSettings(interfaces=["x"], destinations=["127.0.0.1:9"], protocol=protocol,
                          maxflows=16)
        clock = SystemClock()
        cache = MemoryFlowCache(16)
        probe = Probe(s, cache, build_exporter(s, clock, transports=[MemoryTransport()]), clock)
        probe.scan()  # an empty table
        for n in (1, 2):  # a drain of one flow is typed apart (contiguous field views)
            keys, vals = np.zeros(n, KEY_DTYPE), np.zeros(n, VAL_DTYPE)
            keys["ipver"], keys["sport"] = 4, np.arange(n) + 10 * n
            cache.push(keys, vals)
            probe.scan()
        probe.flush()


def sf_stat(text: str, pattern: str) -> int:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else -1


class Receiver(threading.Thread):
    """Keeps every datagram sent to it, draining its socket while the exporters flush (1 M
    flows are ~60 k datagrams in one burst: a socket read afterwards would drop most)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE (root)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.payloads: list[bytes] = []
        self.last = time.monotonic()
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.payloads.append(self.sock.recv(65535))
                self.last = time.monotonic()
            except TimeoutError:
                pass

    def quiet(self, seconds: float, limit_s: float = 300) -> None:
        end = time.monotonic() + limit_s
        while time.monotonic() - self.last < seconds and time.monotonic() < end:
            time.sleep(0.1)

    def close(self) -> None:
        self._done.set()
        self.join()
        self.sock.close()


def v9_packets(payloads: list[bytes]) -> tuple[int, int]:
    """(packets, flow records) of a NetFlow v9 export, decoded here (IN_PKTS, element 2), so
    the benchmark does not depend on the collector's decoder. Datagrams whose template has not
    arrived yet are not counted (every exporter here sends its templates first)."""
    templates: dict[int, tuple[int, int, int]] = {}  # id → (record length, offset, size)
    packets = records = 0
    for p in payloads:
        if len(p) < 20 or p[1] != 9:
            continue
        off = 20
        while off + 4 <= len(p):
            sid, length = struct.unpack_from("!HH", p, off)
            if length < 4:
                break
            body = p[off + 4 : off + length]
            if sid == 0:
                i = 0
                while i + 4 <= len(body):
                    tid, count = struct.unpack_from("!HH", body, i)
                    i += 4
                    reclen = at = size = 0
                    where = -1
                    for _ in range(count):
                        fid, flen = struct.unpack_from("!HH", body, i)
                        i += 4
                        if fid == 2 and where < 0:
                            where, size = reclen, flen
                        reclen += flen
                    templates[tid] = (reclen, where, size)
                    del at
            elif sid >= 256 and sid in templates:
                reclen, where, size = templates[sid]
                if reclen and where >= 0:
                    for r in range(0, len(body) - reclen + 1, reclen):
                        packets += int.from_bytes(body[r + where : r + where + size], "big")
                        records += 1
            off += length
    return packets, records


def exported_packets(payloads: list[bytes]) -> tuple[int, int]:
    """(packets, flow records) in an export, decoded by the collector's Decoder."""
    from appliance.collector.decode.decoder import Decoder
    from appliance.collector.receive.packets import PacketBatch

    dec = Decoder(apply_sampling=False)
    packets = records = 0
    for i in range(0, len(payloads), 4096):
        for fb in dec.decode(PacketBatch.from_payloads(payloads[i : i + 4096])):
            packets += int(fb["packets"].sum())
            records += fb.n
    return packets, records


def scenario(name: str, pcap: Path, loops: int, pps: int, maxflows: int, tmp: Path,
             ns: str, a: str, b: str) -> dict:
    frames = pcap_frames(pcap) * loops
    ctl = tmp / "sf.ctl"
    ours_c, sf_c = Receiver(), Receiver()
    sf = subprocess.Popen(
        ["softflowd", "-d", "-i", a, "-n", sf_c.address, "-v", "9", "-T", "full",
         "-m", str(maxflows), *[x for t in SF_TIMEOUTS for x in ("-t", f"{t}={DAY}")],
         "-c", str(ctl), "-p", str(tmp / "sf.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    cache = KernelFlowCache(maxflows)
    try:
        s = ProbeSettings(interfaces=[a], destinations=[ours_c.address], state_dir=tmp / "st",
                          active_timeout=86400, inactive_timeout=86400, maxflows=maxflows,
                          scan_interval=0.5, key="src,dst,proto,ports")
        clock = SystemClock()
        probe = Probe(s, cache, build_exporter(s, clock), clock)
        att = attach(a, cache.prog_fd, state_dir=tmp / "st")
        deadline = time.monotonic() + 20
        while "Packets processed" not in sh("softflowctl", "-c", str(ctl), "statistics",
                                            check=False).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("softflowd did not start")
            time.sleep(0.1)
        warm_up_numba()
        stop = threading.Event()
        loop_cpu = [0.0]

        def probe_loop() -> None:
            t = time.thread_time()
            probe.run(stop)
            loop_cpu[0] = time.thread_time() - t

        th = threading.Thread(target=probe_loop)
        th.start()
        sf_cpu0 = cpu_of(sf.pid)
        bpf0 = prog_stats(cache.prog_fd)
        speed = ["--topspeed"] if not pps else [f"--pps={pps}"]
        t0 = time.perf_counter()
        sh("ip", "netns", "exec", ns, "tcpreplay", "-q", "-K", "-i", b, *speed, f"--loop={loops}",
           str(pcap))
        elapsed = time.perf_counter() - t0
        bpf1 = prog_stats(cache.prog_fd)
        # softflowd: push its ring's last block through, then wait for the runt at the end
        filler = filler_pcap(tmp / "filler.pcap")
        while True:
            st = sh("softflowctl", "-c", str(ctl), "statistics", check=False).stdout
            if sf_stat(st, r"\((?:\d+) non-IP, (\d+) too short\)") >= 1:
                break
            if time.monotonic() > deadline + 300:
                raise RuntimeError("softflowd never caught up")
            sh("ip", "netns", "exec", ns, "tcpreplay", "-q", "-i", b, "--topspeed", str(filler))
            time.sleep(0.2)
        sf_cpu = cpu_of(sf.pid) - sf_cpu0
        stop.set()
        th.join()
        att.detach()
        t = time.thread_time()
        probe.flush()
        probe_cpu = loop_cpu[0] + time.thread_time() - t
        sh("softflowctl", "-c", str(ctl), "expire-all", check=False)
        ours_c.quiet(1.0)
        sf_c.quiet(1.0)
        k = cache.counters().sum(axis=0)
        probe.close()
    finally:
        if sf.poll() is None:
            os.killpg(sf.pid, signal.SIGTERM)
            sf.wait(30)
        cache.close()
        ours_c.close()
        sf_c.close()
    ours_pk, ours_n = exported_packets(ours_c.payloads)
    sf_pk, sf_n = exported_packets(sf_c.payloads)
    sent = frames
    ip_sent = int(k[Counter.IP_PACKETS])
    return {
        "name": name, "frames": frames, "kpps": frames / elapsed / 1e3, "ip_sent": ip_sent,
        "kernel_frames": int(k[Counter.FRAMES]), "refused": int(k[Counter.REFUSED_PACKETS]),
        "ours": ours_pk, "ours_records": ours_n, "sf": sf_pk, "sf_records": sf_n,
        "sf_pcap_drops": sf_stat(st, r"dropped by libpcap: (\d+)"),
        "bpf_ns": (bpf1[0] - bpf0[0]) / max(1, bpf1[1] - bpf0[1]),
        "user_us": 1e6 * probe_cpu / sent, "probe_cpu": probe_cpu,
        "sf_us": 1e6 * sf_cpu / sent,
    }


def report(r: dict) -> None:
    ip = max(1, r["ip_sent"])
    print(f"{r['name']}: {r['frames']} frames sent at {r['kpps']:.0f} kpps; kernel saw "
          f"{r['kernel_frames']}, {r['ip_sent']} IP packets")
    print(f"  probe:     {r['ours']} packets in {r['ours_records']} records = "
          f"{100 * r['ours'] / ip:.3f} % accounted (refused, counted: {r['refused']})")
    print(f"  softflowd: {r['sf']} packets in {r['sf_records']} records = "
          f"{100 * r['sf'] / ip:.3f} % accounted (libpcap drops reported: {r['sf_pcap_drops']})")
    print(f"  cost per packet: probe eBPF {r['bpf_ns']:.0f} ns + userspace {1e3 * r['user_us']:.0f} "
          f"ns (userspace {1e6 * r['probe_cpu'] / max(1, r['ours_records']):.1f} µs per exported "
          f"flow: drain, table, export); softflowd userspace {1e3 * r['sf_us']:.0f} ns")
    print(f"  ratios: accounted probe/softflowd {r['ours'] / max(1, r['sf']):.4f}; "
          f"softflowd userspace / probe (eBPF + userspace) "
          f"{r['sf_us'] * 1e3 / max(1e-9, r['bpf_ns'] + 1e3 * r['user_us']):.2f}")


# --- flood: every packet a new 5-tuple, probe (TC or XDP) vs softflowd vs pmacctd nfprobe ----

PMACCT_CONF = """daemonize: false
pcap_interface: {iface}
pcap_interface_wait: true
aggregate: src_host, dst_host, src_port, dst_port, proto, tos
plugins: nfprobe
nfprobe_receiver: {receiver}
nfprobe_version: 9
nfprobe_maxflows: {maxflows}
nfprobe_timeouts: tcp=86400:tcp.rst=86400:tcp.fin=86400:udp=86400:icmp=86400:general=86400:maxlife=86400:expint=60
plugin_buffer_size: 102400
plugin_pipe_size: 1024000000
"""


def group_cpu(pgid: int) -> float:
    """CPU seconds of every live process in a process group (pmacctd: core + plugin)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


#: the appliance's probe → local collector settings (ansible mirrorflow_probe_live)
APPLIANCE = {"active_timeout": 2.0, "inactive_timeout": 1.0, "scan_interval": 0.5, "mtu": 8960}


def flood(hook: str, pcap: Path, tmp: Path, ns: str, a: str, b: str, maxflows: int,
          peers: bool, settings: dict) -> dict:
    """One flood replay watched by the probe (hook "tc" or "xdp"), softflowd and pmacctd."""
    frames = pcap_frames(pcap)
    ctl = tmp / "sf.ctl"
    ours_c, sf_c, pm_c = Receiver(), Receiver(), Receiver()
    procs: dict[str, subprocess.Popen] = {}
    if peers:
        procs["softflowd"] = subprocess.Popen(
            ["softflowd", "-d", "-i", a, "-n", sf_c.address, "-v", "9", "-T", "full",
             "-m", str(maxflows), *[x for t in SF_TIMEOUTS for x in ("-t", f"{t}={DAY}")],
             "-c", str(ctl), "-p", str(tmp / "sf.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        if shutil.which("pmacctd"):
            conf = tmp / "pmacctd.conf"
            conf.write_text(PMACCT_CONF.format(iface=a, receiver=pm_c.address, maxflows=maxflows))
            procs["pmacctd"] = subprocess.Popen(
                ["pmacctd", "-f", str(conf)], stdout=subprocess.DEVNULL,
                stderr=open(tmp / "pmacctd.log", "w"), start_new_session=True,
            )
    cache = KernelFlowCache(ProbeSettings(maxflows=maxflows).kernel_map_flows(), hook=hook)
    res: dict = {"hook": hook, "frames": frames}
    try:
        s = ProbeSettings(interfaces=[a], destinations=[ours_c.address], state_dir=tmp / "st",
                          maxflows=maxflows, attach=hook, **settings)
        clock = SystemClock()
        probe = Probe(s, cache, build_exporter(s, clock), clock, warn=lambda _m: None)
        att = attach(a, cache.program_fd("native"), state_dir=tmp / "st", hook=hook,
                     xdp_mode="native")
        deadline = time.monotonic() + 20
        while peers and "Packets processed" not in sh("softflowctl", "-c", str(ctl), "statistics",
                                                      check=False).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("softflowd did not start")
            time.sleep(0.1)
        time.sleep(1.0 if "pmacctd" in procs else 0)  # pmacctd opens its pcap
        warm_up_numba()
        stop = threading.Event()
        loop_cpu = [0.0]

        def probe_loop() -> None:
            t = time.thread_time()
            probe.run(stop)
            loop_cpu[0] = time.thread_time() - t

        th = threading.Thread(target=probe_loop)
        th.start()
        cpu0 = {name: group_cpu(p.pid) for name, p in procs.items()}
        bpf0 = prog_stats(cache.program_fd("native"))
        t0 = time.perf_counter()
        sh("ip", "netns", "exec", ns, "tcpreplay", "-q", "-K", "-i", b, "--topspeed", str(pcap))
        elapsed = time.perf_counter() - t0
        bpf1 = prog_stats(cache.program_fd("native"))
        time.sleep(2.5)  # the probe's next scans; the peers' capture buffers
        if peers:
            filler = filler_pcap(tmp / "filler.pcap")
            while True:
                st = sh("softflowctl", "-c", str(ctl), "statistics", check=False).stdout
                if sf_stat(st, r"\((?:\d+) non-IP, (\d+) too short\)") >= 1:
                    break
                if time.monotonic() > deadline + 300:
                    raise RuntimeError("softflowd never caught up")
                sh("ip", "netns", "exec", ns, "tcpreplay", "-q", "-i", b, "--topspeed", str(filler))
                time.sleep(0.2)
            res["sf_pcap_drops"] = sf_stat(st, r"dropped by libpcap: (\d+)")
        cpu1 = {name: group_cpu(p.pid) for name, p in procs.items()}
        stop.set()
        th.join()
        att.detach()
        t = time.thread_time()
        probe.flush()
        probe_cpu = loop_cpu[0] + time.thread_time() - t
        if "softflowd" in procs:
            sh("softflowctl", "-c", str(ctl), "expire-all", check=False)
        if "pmacctd" in procs:  # nfprobe exports everything it holds when it stops
            os.killpg(procs["pmacctd"].pid, signal.SIGINT)
            procs["pmacctd"].wait(120)
        for c in (ours_c, sf_c, pm_c):
            c.quiet(1.5)
        k = cache.counters().sum(axis=0)
        probe.close()
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)
        cache.close()
        for c in (ours_c, sf_c, pm_c):
            c.close()
    res.update({
        "kpps": frames / elapsed / 1e3, "ip_sent": int(k[Counter.IP_PACKETS]),
        "refused": int(k[Counter.REFUSED_PACKETS]) + probe.table.stats.refused_packets,
        "probe": v9_packets(ours_c.payloads)[0],
        "bpf_ns": (bpf1[0] - bpf0[0]) / max(1, bpf1[1] - bpf0[1]),
        "user_ns": 1e9 * probe_cpu / frames,
    })
    for name, c in (("softflowd", sf_c), ("pmacctd", pm_c)):
        if name in procs:
            res[name] = v9_packets(c.payloads)[0]
            res[f"{name}_ns"] = 1e9 * (cpu1[name] - cpu0[name]) / frames
    return res


def flood_report(r: dict) -> None:
    n = r["frames"]
    probe_ns = r["bpf_ns"] + r["user_ns"]
    print(f"flood, probe on {r['hook'].upper()}: {n} frames, every one a new 5-tuple, "
          f"{r['kpps']:.0f} kpps (tcpreplay top speed)")
    print(f"  {'':<10} {'accounted':>10} {'CPU/packet':>11}")
    print(f"  {'probe':<10} {100 * r['probe'] / n:>9.3f}% {probe_ns:>8.0f} ns  (eBPF "
          f"{r['bpf_ns']:.0f} + userspace {r['user_ns']:.0f}; refused, counted: {r['refused']})")
    for name in ("softflowd", "pmacctd"):
        if name in r:
            print(f"  {name:<10} {100 * r[name] / n:>9.3f}% {r[name + '_ns']:>8.0f} ns  "
                  f"(probe's CPU per packet / {name}'s: {probe_ns / max(1e-9, r[name + '_ns']):.2f})")
    if "sf_pcap_drops" in r:
        print(f"  softflowd's libpcap drops reported: {r['sf_pcap_drops']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, action="append",
                    help="distinct flows of a synthetic scenario (repeat; default 10000 and "
                    "1000000)")
    ap.add_argument("--trace", type=Path, help="replay this capture instead")
    ap.add_argument("--loops", type=int, help="times the file is replayed (default: 50 for "
                    "10 k flows, 2 for 1 M, 200 for a trace)")
    ap.add_argument("--pps", type=int, default=0, help="0 = top speed")
    ap.add_argument("--flood", action="store_true",
                    help="spoofed-source flood: every packet a new 5-tuple (--flows of them, "
                    "default 1000000), top speed; the probe on TC then on XDP, softflowd and "
                    "pmacctd (nfprobe) on the same frames in each run")
    ap.add_argument("--hooks", default="tc,xdp", help="with --flood: probe hooks to run")
    ap.add_argument("--maxflows", type=int, default=2_000_000,
                    help="with --flood: the probe's --maxflows (default 2000000)")
    ap.add_argument("--no-peers", action="store_true", help="with --flood: the probe alone")
    ap.add_argument("--probe-defaults", action="store_true",
                    help="with --flood: the probe's own defaults (active 60 s, inactive 15 s, "
                    "1400-byte datagrams) instead of the appliance's local-collector settings "
                    "(active 2 s, inactive 1 s, scan 0.5 s, 8960-byte datagrams)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mfbench"))
    ns, a, b = f"mfb{os.getpid()}", f"mfb{os.getpid()}a", f"mfb{os.getpid()}b"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", a, "mtu", "9000", "type", "veth", "peer", "name", b, "mtu", "9000")
        sh("ip", "link", "set", b, "netns", ns)
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{b}.disable_ipv6=1")
        sh("sysctl", "-qw", f"net.ipv6.conf.{a}.disable_ipv6=1")
        sh("ip", "link", "set", a, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", b, "up")
        sh("sysctl", "-qw", "kernel.bpf_stats_enabled=1", check=False)
        if args.flood:
            n = (args.flows or [1_000_000])[0]
            pcap = flows_pcap(tmp / "flood.pcap", n)
            for hook in args.hooks.split(","):
                flood_report(flood(hook, pcap, tmp, ns, a, b, args.maxflows, not args.no_peers,
                                   {} if args.probe_defaults else APPLIANCE))
            return 0
        runs = []
        if args.trace:
            pcap = ethernet_pcap(args.trace, tmp / "t.pcap")
            runs.append((args.trace.name, pcap, args.loops or 200, 200_000))
        for n in args.flows or ([] if args.trace else [10_000, 1_000_000]):
            loops = args.loops or (50 if n <= 100_000 else 2)
            runs.append((f"{n} flows x{loops}", flows_pcap(tmp / f"f{n}.pcap", n), loops,
                         max(65536, 2 * n)))
        for name, pcap, loops, maxflows in runs:
            report(scenario(name, pcap, loops, args.pps, maxflows, tmp, ns, a, b))
    finally:
        sh("ip", "link", "del", a, check=False)
        sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
