"""The rig for the collector's end-to-end tests: `mirrorflow collect` as a subprocess, a
tshark oracle for NetFlow/IPFIX captures and a packet capture on the wire (frames and pcap
files come from `appliance.synth`).

Imported by test_collect_live.py and test_interop_exporters.py (no tests of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 25.0  # a cold numba cache compiles for ~20 s; the warm fixture avoids that
STOP_TIMEOUT_S = 5.0  # SIGTERM → exit: the receive loop wakes at once, so this is generous


def mirrorflow_argv() -> list[str]:
    exe = Path(sys.executable).parent / "mirrorflow"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mirrorflow")
    if found:
        return [found]
    return [sys.executable, "-m", "appliance.cli"]


def mirrorflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(REPO_ROOT / ".cache" / "numba"))
    env.pop("PYTHONWARNINGS", None)
    return env


@pytest.fixture(scope="session")
def warm_numba(corpus_dir: Path) -> None:
    """Decode one small capture of each version so every later subprocess loads cached code."""
    files = [
        corpus_dir / "netflow/goflow2/v5.pcap",
        corpus_dir / "netflow/python-netflow/v9_softflowd_tpl_then_3_data.pcap",
        corpus_dir / "netflow/python-netflow/ipfix_softflowd_tpl_then_data.pcap",
    ]
    proc = subprocess.run(
        [*mirrorflow_argv(), "decode", "--format", "jsonl", *map(str, files)],
        capture_output=True, text=True, timeout=180, env=mirrorflow_env(), check=False,
    )
    assert proc.returncode == 0, proc.stderr


def free_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class CollectorProcess:
    """``mirrorflow collect`` with a jsonl dump and a stats file, stopped with SIGTERM.

    Args:
        workdir: where the dump, the stats file and the log go.
        listen: --listen values.
        extra: more command-line arguments.
        prefix: argv prefix (``ip netns exec NS``) to run it inside a namespace.
        name: file name stem, so several collectors can share a workdir.
    """

    def __init__(
        self,
        workdir: Path,
        listen: Sequence[str],
        extra: Sequence[str] = (),
        prefix: Sequence[str] = (),
        name: str = "collector",
    ) -> None:
        self.stats_file = workdir / f"{name}.stats.json"
        self.dump_file = workdir / f"{name}.jsonl"
        self.log_file = workdir / f"{name}.log"
        for f in (self.stats_file, self.dump_file):
            f.unlink(missing_ok=True)
        argv = [*prefix, *mirrorflow_argv(), "collect"]
        for spec in listen:
            argv += ["--listen", spec]
        argv += ["--stats-file", str(self.stats_file), "--dump-flows", str(self.dump_file),
                 "--dump-format", "jsonl", "--stats-interval", "1", "--rcvbuf-mb", "8", *extra]
        self.argv = argv
        self.returncode: int | None = None
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=mirrorflow_env(),
                start_new_session=True,
            )
        self._wait_listening(len(listen))

    def _wait_listening(self, n: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.log().count("listening on") >= n:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"collector not listening after {START_TIMEOUT_S} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stats(self) -> dict[str, Any]:
        try:
            return json.loads(self.stats_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_stats(self, done: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> bool:
        """Poll the stats file (written every second) until `done(stats)`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done(self.stats()):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def wait_records(self, n: int, timeout_s: float = 10.0) -> bool:
        return self.wait_stats(lambda s: s.get("records", 0) >= n, timeout_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then wait at most `timeout_s` for the exit (killed and failed otherwise)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"collector still running {timeout_s} s after SIGTERM") from None
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def records(self) -> list[dict[str, Any]]:
        if not self.dump_file.exists():
            return []
        return [json.loads(line) for line in self.dump_file.read_text().splitlines() if line]

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def exporter_stats(stats: dict[str, Any], address: str) -> dict[str, Any]:
    for e in stats.get("exporters", []):
        if e["address"] == address:
            return e
    raise AssertionError(f"no exporter {address} in {[e['address'] for e in stats.get('exporters', [])]}")


# ---- tshark oracle ------------------------------------------------------------------------

# tshark field → our registry name
TSHARK_FIELDS = {
    "cflow.srcaddr": "src_addr",
    "cflow.dstaddr": "dst_addr",
    "cflow.srcaddrv6": "src_addr6",
    "cflow.dstaddrv6": "dst_addr6",
    "cflow.srcport": "src_port",
    "cflow.dstport": "dst_port",
    "cflow.protocol": "proto",
    "cflow.packets": "packets",
    "cflow.packets64": "packets",
    "cflow.octets": "bytes",
    "cflow.octets64": "bytes",
}
FLOW_KEY = ("src", "dst", "proto", "src_port", "dst_port", "packets", "bytes")


def _flows_in(node: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if any(k in node for k in ("cflow.packets", "cflow.packets64", "cflow.octets", "cflow.octets64")):
            out.append(node)
            return
        for v in node.values():
            _flows_in(v, out)
    elif isinstance(node, list):
        for v in node:
            _flows_in(v, out)


def tshark_flows(pcap: Path, port: int) -> list[dict[str, Any]]:
    """Every flow record (with packet or octet counters) tshark decodes from an export capture,
    as {registry name: value, "exporter": ip.src}."""
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-d", f"udp.port=={port},cflow", "-T", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    flows = []
    for frame in json.loads(proc.stdout or "[]"):
        layers = frame["_source"]["layers"]
        exporter = layers.get("ip", {}).get("ip.src") or layers.get("ipv6", {}).get("ipv6.src")
        cflows = layers.get("cflow")
        for cflow in cflows if isinstance(cflows, list) else [cflows]:
            found: list[dict[str, Any]] = []
            _flows_in(cflow, found)
            for rec in found:
                flow: dict[str, Any] = {"exporter": exporter}
                for tname, name in TSHARK_FIELDS.items():
                    if tname in rec:
                        value = rec[tname]
                        flow[name] = value if "addr" in name else int(value, 0)
                flows.append(flow)
    return flows


def flow_key(rec: dict[str, Any]) -> tuple:
    """(src, dst, proto, src port, dst port, packets, bytes); absent fields are None."""
    return (
        rec.get("src_addr") or rec.get("src_addr6"),
        rec.get("dst_addr") or rec.get("dst_addr6"),
        rec.get("proto"),
        rec.get("src_port"),
        rec.get("dst_port"),
        rec.get("packets"),
        rec.get("bytes"),
    )


def flow_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flow records of a jsonl dump (v5 and data records, not options)."""
    return [r for r in records if r["record_kind"] in ("v5", "data")]


def children(pid: int) -> list[int]:
    """Pids of the live children of `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def wait_gone(pids: Iterable[int], timeout_s: float = 10.0) -> bool:
    """Wait until none of `pids` runs (a zombie counts as gone: nothing may reap it here)."""
    deadline = time.monotonic() + timeout_s
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                state = "Z"
            if state == "Z":
                pending.discard(pid)
        time.sleep(0.02)
    return not pending


# ---- capture on the wire ------------------------------------------------------------------


class WireCapture:
    """tcpdump writing a pcap until stop(); started only once it listens."""

    def __init__(self, prefix: Sequence[str], iface: str, bpf: str, path: Path) -> None:
        self.path = path
        self.err = path.with_suffix(".tcpdump.log")
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [*prefix, "tcpdump", "--immediate-mode", "-i", iface, "-U", "-n", "-s", "0", "-w", str(path), bpf],
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while "listening on" not in self.err.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"tcpdump did not start: {self.err.read_text()}")
            time.sleep(0.05)

    def stop(self) -> Path:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.path
