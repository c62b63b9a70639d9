"""Benchmark: time to detect a flood, Mirrorflow (probe → collector → moving average → alert
script) vs FastNetMon (AF_PACKET mirror mode), on the same veth, same threshold, one run.

    sudo .venv/bin/python -m bench detect                     # the appliance's settings
    sudo .venv/bin/python -m bench detect --pps 5000 --threshold 1000 --seconds 30
    sudo .venv/bin/python -m bench detect --probe-args ""     # the probe's own defaults

Both watch the near end of a veth pair whose far end sits in a namespace. A flood of
`--pps` packets per second to one victim (192.0.2.1) is replayed there with tcpreplay, in
two scenarios: spoofed sources (every packet a new source address, so a new flow) and a
single flow (one 5-tuple). Measured: seconds from the flood's first packet (tcpreplay's
start) to the start of each alert script (its first line writes the time).

Mirrorflow runs as installed: `mirrorflow probe` with the appliance's settings for its local
collector (`mirrorflow_probe_live` in the Ansible role's defaults; `--probe-args` replaces
them) exporting to `mirrorflow collect` on 127.0.0.1, one monitoring object with a
moving average over `--window` seconds (`"time"`) of packets per destination host and an
overlimit at `--threshold`. FastNetMon: `average_calculation_time = --window`,
`threshold_pps = --threshold`, the victim's /24 in networks_list, ban script = alert script.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.synth import udp_frame, write_pcap

REPO = Path(__file__).resolve().parents[1]
VICTIM = bytes([192, 0, 2, 1])
SCRIPT = """#!/bin/sh
echo "$(date +%s.%N) $*" >> {log}
"""
FNM_CONF = """logging_level = info
logging_local_syslog_logging = off
enable_ban = on
enable_ban_ipv6 = off
process_incoming_traffic = on
process_outgoing_traffic = off
ban_time = 3600
unban_only_if_attack_finished = on
networks_list_path = {dir}/networks_list
white_list_path = {dir}/networks_whitelist
check_period = 1
enable_connection_tracking = off
ban_for_pps = on
ban_for_bandwidth = off
ban_for_flows = off
threshold_pps = {threshold}
threshold_mbps = 100000
threshold_flows = 1000000
mirror_afpacket = on
mirror_af_packet_custom_sampling_rate = 1
mirror_af_packet_fanout_mode = cpu
interfaces = {iface}
average_calculation_time = {window}
speed_calculation_delay = 1
notify_script_path = {dir}/fnm-alert.sh
collect_attack_pcap_dumps = off
redis_enabled = off
mongodb_enabled = off
exabgp = off
gobgp = off
monitor_local_ip_addresses = off
"""


def appliance_probe_args() -> str:
    """`mirrorflow_probe_live` of the Ansible role as command-line options."""
    text = (REPO / "ansible/roles/mirrorflow_probe/defaults/main.yml").read_text()
    try:
        import yaml

        live = yaml.safe_load(text).get("mirrorflow_probe_live") or {}
    except ImportError:  # a one-line flow mapping of plain scalars
        m = re.search(r"^mirrorflow_probe_live:\s*\{(.*)\}", text, re.MULTILINE)
        live = dict(kv.split(":", 1) for kv in m.group(1).split(",")) if m else {}
    return " ".join(f"--{k.strip()} {str(v).strip()}" for k, v in live.items())


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def flood_pcap(path: Path, n: int, spoofed: bool) -> Path:
    """n UDP frames to the victim, 1000 a second: each from a new source address, or all one 5-tuple."""
    victim = socket.inet_ntoa(VICTIM)

    def frame(i: int) -> bytes:
        if spoofed:
            return udp_frame(f"10.{(i >> 16) & 0xFF}.{(i >> 8) & 0xFF}.{i & 0xFF}", victim, 1024 + i % 50000, 53,
                             bytes(18))
        return udp_frame("198.51.100.7", victim, 4444, 53, bytes(18))

    return write_pcap(
        path, ((i // 1000 * 10**9 + i % 1000 * 1000, frame(i)) for i in range(n))
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred, limit_s: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def first_alert(log: Path) -> float | None:
    if not log.exists():
        return None
    lines = log.read_text().split()
    return float(lines[0]) if lines else None


def start(cmd: list[str], logfile: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=logfile.open("w"), stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def scenario(
    name: str, pcap: Path, args: argparse.Namespace, tmp: Path, ns: str, a: str, b: str
) -> dict[str, float | None]:
    work = tmp / name
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
    mf_log, fnm_log = work / "mirrorflow-alert.log", work / "fnm-alert.log"
    for script, log in (("mf-alert.sh", mf_log), ("fnm-alert.sh", fnm_log)):
        (work / script).write_text(SCRIPT.format(log=log))
        (work / script).chmod(0o755)
    mo = work / "mo" / "flood"
    mo.mkdir(parents=True)
    (mo / "mo.conf").write_text(json.dumps({
        "filter": "",
        "mavg": [{"name": "pps", "time": args.window, "fields": ["dst host", "packets"],
                  "overlimit": [{"name": "ddos", "default": [args.threshold],
                                 "back2norm-time": 600,
                                 "action-script": str(work / "mf-alert.sh")}]}]}))
    port = free_port()
    procs = []
    collector = start([sys.executable, "-m", "appliance.cli", "collect", "--listen",
                       f"127.0.0.1:{port}", "--mo-dir", str(mo.parent), "--notifications-dir",
                       str(work / "notif"), "--api", "off", "--stats-interval", "0",
                       "--templates", str(work / "templates.json")],
                      work / "collector.log", env)
    procs.append(collector)
    try:
        if not wait_for(
            lambda: "listening on" in (work / "collector.log").read_text(), 60
        ):
            raise RuntimeError(
                f"collector did not start: {(work / 'collector.log').read_text()}"
            )
        probe = start([sys.executable, "-m", "appliance.probe", "-i", a, "-d", f"127.0.0.1:{port}",
                       "--state-dir", str(work / "probe"), *shlex.split(args.probe_args)],
                      work / "probe.log", env)
        procs.append(probe)
        if not wait_for(lambda: "capturing" in (work / "probe.log").read_text(), 60):
            raise RuntimeError(
                f"probe did not start: {(work / 'probe.log').read_text()}"
            )
        fnm = None
        if shutil.which("fastnetmon"):
            (work / "networks_list").write_text("192.0.2.0/24\n")
            (work / "networks_whitelist").write_text("")
            (work / "fnm.conf").write_text(
                FNM_CONF.format(
                    dir=work, threshold=args.threshold, iface=a, window=args.window
                )
            )
            fnm = start(
                [
                    "fastnetmon",
                    "--configuration_file",
                    str(work / "fnm.conf"),
                    "--log_to_console",
                    "--disable_pid_logic",
                ],
                work / "fnm.log",
            )
            procs.append(fnm)
            time.sleep(3)  # it opens its AF_PACKET socket
        time.sleep(1)
        n = args.pps * args.seconds
        t0 = time.time()
        replay = subprocess.Popen(["ip", "netns", "exec", ns, "tcpreplay", "-q", "-K", "-i", b,
                                   f"--pps={args.pps}", str(pcap)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(
            lambda: (
                first_alert(mf_log) is not None
                and (fnm is None or first_alert(fnm_log) is not None)
            ),
            args.seconds,
        )
        replay.wait(args.seconds + 60)
        del n
    finally:
        for p in reversed(procs):
            stop(p)
    out: dict[str, float | None] = {}
    for who, log in (("mirrorflow", mf_log), ("fastnetmon", fnm_log)):
        t = first_alert(log)
        out[who] = None if t is None else t - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pps", type=int, default=5000, help="flood rate (default 5000)")
    ap.add_argument(
        "--threshold", type=int, default=1000, help="pps per host (default 1000)"
    )
    ap.add_argument(
        "--window", type=int, default=5, help="moving average, s (default 5)"
    )
    ap.add_argument(
        "--seconds", type=int, default=30, help="flood length, s (default 30)"
    )
    ap.add_argument(
        "--probe-args",
        default=None,
        help="`mirrorflow probe` options (default: the appliance's, from the "
        'Ansible role; "" = the probe\'s own defaults)',
    )
    ap.add_argument("--scenarios", default="spoofed,single")
    ap.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs)"
    )
    args = ap.parse_args()
    if args.probe_args is None:
        args.probe_args = appliance_probe_args()
    tmp = Path(tempfile.mkdtemp(prefix="mfdetect"))
    ns, a, b = f"mfd{os.getpid()}", f"mfd{os.getpid()}a", f"mfd{os.getpid()}b"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", b, "netns", ns)
        sh(
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            f"net.ipv6.conf.{b}.disable_ipv6=1",
        )
        sh("sysctl", "-qw", f"net.ipv6.conf.{a}.disable_ipv6=1")
        sh("ip", "link", "set", a, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", b, "up")
        print(
            f"time to detect: {args.pps} pps to one host, threshold {args.threshold} pps, "
            f"{args.window} s moving average; probe options: "
            f"{args.probe_args or 'the probe defaults'}"
        )
        for name in args.scenarios.split(","):
            pcap = flood_pcap(
                tmp / f"{name}.pcap", args.pps * args.seconds, name == "spoofed"
            )
            r = scenario(name, pcap, args, tmp, ns, a, b)
            cells = "  ".join(
                f"{who} {'never' if t is None else f'{t:.2f} s'}"
                for who, t in r.items()
            )
            print(f"  {name:<8} {cells}", flush=True)
    finally:
        sh("ip", "link", "del", a, check=False)
        sh("ip", "netns", "del", ns, check=False)
        if args.keep:
            print(f"work directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
