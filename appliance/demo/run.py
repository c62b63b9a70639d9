"""The demo run: builds the set-up, starts every process, watches, stops and removes it all."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.collector.enrich import bundled_geoip
from appliance.demo import DemoError, PrerequisiteError
from appliance.demo.netns import Topology, build_topology, owned_names, process_alive, remove_leftovers
from appliance.demo.pg import PostgresCluster, free_tcp_port, postgres_bin_dir, stop_cluster
from appliance.demo.prereq import check
from appliance.demo.traffic import ATTACKER, VICTIM

__all__ = ["DemoOptions", "Demo", "remove_stale_runs", "corpus_traces", "tui_available"]

MO_SOURCE = Path(__file__).resolve().parent / "mo"
WORKDIR_PREFIX = "mirrorflow-demo-"
_PR_SET_PDEATHSIG = 1


class Interrupted(DemoError):
    """Ctrl-C / SIGTERM while setting up."""


@dataclass
class DemoOptions:
    duration: float = 60.0
    headless: bool = False
    db: bool = True
    probe: bool = True
    traces: bool = True
    api_port: int = 8787
    port: int = 2055
    keep: bool = False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1" if kind == socket.SOCK_STREAM else "0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def remove_stale_runs() -> list[str]:
    """Removes what crashed demo runs left: processes, PostgreSQL clusters, directories, netns."""
    removed = []
    for work in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        match = re.match(rf"{WORKDIR_PREFIX}([0-9a-f]+)-", work.name)
        if not match or process_alive(int(match.group(1), 16)):
            continue
        pids = work / "pids"
        if pids.exists():
            for line in pids.read_text().splitlines():
                pid_s, start, name = (line.split(" ", 2) + ["", ""])[:3]
                if pid_s.isdigit() and _start_time(int(pid_s)) == start:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(int(pid_s), signal.SIGKILL)
                    removed.append(f"process {pid_s} ({name})")
        if (work / "pg" / "data" / "postmaster.pid").exists():
            stop_cluster(work / "pg" / "data", postgres_bin_dir(), "postgres" if os.geteuid() == 0 else None)
            removed.append(f"PostgreSQL cluster in {work / 'pg'}")
        shutil.rmtree(work, ignore_errors=True)
        removed.append(f"directory {work}")
    return removed + remove_leftovers()


def corpus_traces(limit: int = 24, max_bytes: int = 2 << 20) -> list[Path]:
    """Ethernet pcaps of the capture corpus ($MIRRORFLOW_CORPUS or ../shared/corpus), small first."""
    configured = os.environ.get("MIRRORFLOW_CORPUS")
    root = Path(configured) if configured else Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
    found = []
    for path in sorted((root / "traffic").glob("**/*.pcap")):
        try:
            head = path.read_bytes()[:24] if path.stat().st_size <= max_bytes else b""
        except OSError:
            continue
        if len(head) == 24 and head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            if int.from_bytes(head[20:24], "little") == 1:  # LINKTYPE_ETHERNET
                found.append(path)
    return found[:limit]


def tui_available() -> bool:
    """True when the TUI can run here (Textual is installed)."""
    return importlib.util.find_spec("textual") is not None


@dataclass
class AlertLog:
    """Alerts seen through the live API while the demo runs."""

    raised: dict[tuple, dict] = field(default_factory=dict)
    ended: dict[tuple, dict] = field(default_factory=dict)
    peak: dict[tuple, float] = field(default_factory=dict)

    @staticmethod
    def _id(a: dict) -> tuple:
        return (a.get("mo"), a.get("mavg"), a.get("level"), tuple(a.get("key") or ()), a.get("since"))

    def update(self, alerts: dict) -> None:
        for a in alerts.get("active", []):
            self.raised.setdefault(self._id(a), a)
            self.peak[self._id(a)] = max(self.peak.get(self._id(a), 0.0), float(a.get("rate") or 0))
        for a in alerts.get("past", []):
            self.raised.setdefault(self._id(a), a)
            self.ended.setdefault(self._id(a), a)


class Demo:
    """One run of ``mirrorflow demo``."""

    def __init__(self, opts: DemoOptions, out=sys.stdout) -> None:
        self.opts = opts
        self.out = out
        self.stop = threading.Event()
        self.children: list[Child] = []
        self.topology: Topology | None = None
        self.pg: PostgresCluster | None = None
        self.work: Path | None = None
        self.alerts = AlertLog()
        self.api_url = ""
        self.port = 0
        self.dbname = "mirrorflow"
        self.started = 0.0
        self._lock = threading.Lock()
        self._replayer: threading.Thread | None = None

    # -- output ----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"demo: {text}", file=self.out, flush=True)

    # -- processes -------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], *, new_session: bool = True) -> Child:
        assert self.work is not None
        log = self.work / f"{name}.log"
        with self._lock:  # held through the start: teardown never misses a child started meanwhile
            if self.stop.is_set() and name != "tui":
                raise Interrupted("stopping")
            fh = log.open("ab")
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=new_session, preexec_fn=_die_with_parent)
            fh.close()
            child = Child(name, proc, log)
            self.children.append(child)
            with (self.work / "pids").open("a") as f:
                f.write(f"{proc.pid} {_start_time(proc.pid)} {name}\n")
        return child

    def _alive_or_fail(self, child: Child) -> None:
        if child.proc.poll() is not None:
            tail = "\n".join(child.log.read_text(errors="replace").splitlines()[-25:])
            raise DemoError(f"{child.name} exited with status {child.proc.returncode}; "
                            f"last lines of {child.log}:\n{tail}")

    def _wait(self, what: str, pred, timeout: float, child: Child | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if self.stop.is_set():
                raise Interrupted(f"interrupted while waiting for {what}")
            if child is not None:
                self._alive_or_fail(child)
            if time.monotonic() > deadline:
                raise DemoError(f"{what} did not happen within {timeout:.0f} s"
                                + (f" (see {child.log})" if child else ""))
            time.sleep(0.2)

    @staticmethod
    def _terminate(child: Child, timeout: float = 15) -> None:
        proc = child.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM) if child.name != "tui" else proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL) if child.name != "tui" else proc.kill()
                proc.wait(10)
        # a softflowd or tcpreplay child still in the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    # -- live API --------------------------------------------------------------------------
    def api(self, path: str, timeout: float = 3.0) -> Any:
        with urllib.request.urlopen(f"{self.api_url}{path}", timeout=timeout) as resp:
            return json.loads(resp.read())

    def _api_up(self) -> bool:
        try:
            self.api("/api/v1/status", 1.0)
        except (OSError, ValueError):
            return False
        return True

    # -- set-up ----------------------------------------------------------------------------
    def _install_mo(self, watch: str) -> Path:
        assert self.work is not None and self.topology is not None
        dest = self.work / "mo"
        shutil.copytree(MO_SOURCE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        for conf in (dest / "objects").glob("**/mo.conf"):
            text = conf.read_text()
            text = text.replace("@WATCH@", watch).replace("@ROUTER@", self.topology.router_ip)
            conf.write_text(text.replace("@DEMO_DIR@", str(dest)))
        (dest / "scripts" / "alert.sh").chmod(0o755)
        return dest

    def check_prerequisites(self) -> None:
        """Raises PrerequisiteError naming everything missing; mentions what is only optional."""
        missing = check(probe=self.opts.probe, db=self.opts.db)
        for m in missing:
            if not m.fatal:
                self.say(str(m))
        fatal = [m for m in missing if m.fatal]
        if fatal:
            raise PrerequisiteError("cannot start, missing:\n" + "\n".join(f"  {m}" for m in fatal))

    def setup(self) -> None:
        opts = self.opts
        for what in remove_stale_runs():
            self.say(f"removed a crashed run's leftover: {what}")
        self.work = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid():x}-"))
        os.chmod(self.work, 0o755)
        self.say(f"working directory {self.work}")
        self.topology = topo = build_topology()
        self.say(f"mirror port {topo.mirror_if} ← traffic namespace {topo.traffic_ns}; span copy → "
                 f"router namespace {topo.router_ns} ({topo.router_if}), exporting from {topo.router_ip}")
        mo = self._install_mo("127.0.0.1" if opts.probe else topo.router_ip)
        dsn = None
        if opts.db:
            bin_dir = postgres_bin_dir()
            assert bin_dir is not None
            self.pg = PostgresCluster(bin_dir, self.work / "pg", free_tcp_port())
            self.say(f"starting a throwaway PostgreSQL {bin_dir.parent.name} on 127.0.0.1:{self.pg.port}")
            self.pg.start()
            dsn = self.pg.create_database(self.dbname)
        self.port = opts.port if _port_free(opts.port, socket.SOCK_DGRAM) else _free_udp_port()
        api_port = opts.api_port if _port_free(opts.api_port, socket.SOCK_STREAM) else free_tcp_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        collect = [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"0.0.0.0:{self.port}",
                   "--mo-dir", str(mo / "objects"), "--iplists-dir", str(mo / "iplists"),
                   "--spool-dir", str(self.work / "spool"), "--api", f"127.0.0.1:{api_port}",
                   "--probe-stats", str(self.work / "probe" / "stats.json"),
                   "--notifications-dir", str(self.work / "notifications"),
                   "--stats-file", str(self.work / "collector-stats.json"),
                   "--templates", str(self.work / "templates.json"), "--stats-interval", "30"]
        if dsn:
            collect += ["--db", dsn]
        geoip = bundled_geoip()  # countries and AS numbers out of the box (scripts/fetch-geoip)
        if geoip is not None:
            collect += ["--geoip", str(geoip)]
        self.say(f"starting the collector on UDP {self.port}, live API {self.api_url} "
                 "(numba compiles on a first run: up to a minute)")
        collector = self.spawn("collector", collect)
        self._wait("the collector's live API answering", self._api_up, 240, collector)
        if opts.probe:
            self.say(f"starting the probe on {topo.mirror_if} (bcc compiles the eBPF program)")
            probe = self.spawn("probe", [
                sys.executable, "-m", "appliance.cli", "probe", "-i", topo.mirror_if,
                "-d", f"127.0.0.1:{self.port}", "--state-dir", str(self.work / "probe"),
                "--active-timeout", "5", "--inactive-timeout", "3", "--scan-interval", "0.5",
                "--options-interval", "10"])
            self._wait("the probe capturing", lambda: "capturing" in probe.log.read_text(errors="replace"),
                       180, probe)
        self.say(f"starting softflowd in {topo.router_ns} as a router exporting NetFlow v9")
        timeouts = ("general=5", "tcp=5", "tcp.rst=2", "tcp.fin=2", "udp=5", "icmp=5", "maxlife=10", "expint=1")
        self.spawn("softflowd", topo.command(topo.router_ns, "softflowd", "-d", "-i", topo.router_if,
                   "-n", f"{topo.collector_ip}:{self.port}", "-v", "9", "-T", "full", "-m", "65536",
                   *[x for t in timeouts for x in ("-t", t)],
                   "-c", str(self.work / "softflowd.ctl"), "-p", str(self.work / "softflowd.pid")))

    def start_traffic(self, duration: float) -> None:
        assert self.topology is not None and self.work is not None
        topo = self.topology
        self.say(f"traffic: ~2.8 k pps of mixed TCP/UDP/ICMP (IPv4 and IPv6) from ~500 hosts; "
                 f"every 40 s a 10 s flood from {ATTACKER} to {VICTIM} (first at 8 s)")
        self.spawn("traffic", topo.command(topo.traffic_ns, sys.executable, "-m", "appliance.demo.traffic",
                                           "--iface", topo.traffic_if, "--duration", f"{duration + 5:.0f}"))
        traces = corpus_traces() if self.opts.traces and shutil.which("tcpreplay") else []
        if traces:
            self.say(f"replaying {len(traces)} corpus traces with tcpreplay alongside")
            self._replayer = threading.Thread(target=self._replay, args=(traces,), daemon=True)
            self._replayer.start()

    def _replay(self, traces: list[Path]) -> None:
        assert self.topology is not None
        topo = self.topology
        while not self.stop.is_set():
            for trace in traces:
                if self.stop.is_set():
                    return
                try:
                    child = self.spawn("tcpreplay", topo.command(topo.traffic_ns, "tcpreplay", "-q",
                                       "-i", topo.traffic_if, "--pps", "200", str(trace)))
                except (Interrupted, OSError):
                    return
                try:
                    child.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self._terminate(child)
                with self._lock:
                    self.children.remove(child)
                self.stop.wait(1.0)

    # -- watching --------------------------------------------------------------------------
    def _poll_alerts(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.alerts.update(self.api("/api/v1/alerts"))

    def _progress(self) -> str:
        try:
            exporters = self.api("/api/v1/exporters")["exporters"]
            active = len(self.api("/api/v1/alerts")["active"])
        except (OSError, ValueError, KeyError):
            return "live API not answering"
        parts = [f"{e['role']} {e['address']}: {e['flows']} flows" for e in exporters]
        return "; ".join(parts) + f"; active alerts {active}"

    def watch_headless(self, duration: float) -> None:
        end = time.monotonic() + duration
        next_line = time.monotonic() + 5
        while not self.stop.wait(1.0):
            now = time.monotonic()
            self._poll_alerts()
            for name in ("collector", "probe", "softflowd", "traffic"):
                child = self._child(name)
                if child is not None and child.proc.poll() is not None and name != "traffic":
                    self._alive_or_fail(child)
            if now >= next_line:
                self.say(f"{now - self.started:4.0f} s: {self._progress()}")
                next_line += 5
            if now >= end:
                break

    def watch_tui(self) -> None:
        self.say(f"opening the TUI on {self.api_url} (quit it to stop the demo)")
        assert self.work is not None
        # attached to the terminal (same session and process group), unlike the other children
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "tui", "--url", self.api_url],
                                preexec_fn=_die_with_parent)
        self.children.append(Child("tui", proc, self.work / "tui.log"))
        while proc.poll() is None and not self.stop.wait(1.0):
            self._poll_alerts()
        self._poll_alerts()

    # -- ending ----------------------------------------------------------------------------
    def collect_summary(self) -> dict:
        """Figures from the live API (before the collector stops)."""
        summary: dict[str, Any] = {"exporters": {}, "objects": {}, "alerts": {}}
        self._poll_alerts()
        try:
            exporters = self.api("/api/v1/exporters")["exporters"]
            objects = self.api("/api/v1/objects")["objects"]
            status = self.api("/api/v1/status")["status"]
        except (OSError, ValueError, KeyError) as exc:
            summary["api_error"] = str(exc)
            return summary
        for e in exporters:
            role = e["role"]
            if self.topology is not None and e["address"] == self.topology.router_ip:
                role = "router"
            summary["exporters"].setdefault(role, {"address": e["address"], "flows": 0, "packets": 0,
                                                   "bytes": 0, "datagrams": 0, "lost_packets": 0})
            s = summary["exporters"][role]
            for k in ("flows", "packets", "bytes", "datagrams"):
                s[k] += int(e.get(k) or 0)
            s["lost_packets"] += int((e.get("sequence") or {}).get("lost_packets") or 0)
        for o in objects:
            r = (o.get("rates") or {}).get("1m") or {}
            summary["objects"][o["name"]] = {"flows": o["flows"], "packets": o["packets"], "bytes": o["bytes"],
                                             "bps_1m": round(r.get("bps") or 0.0), "pps_1m": round(r.get("pps") or 0.0)}
        summary["collector"] = {"records": status["totals"]["records"], "health": status["health"],
                                "problems": status["problems"], "socket_drops": status["socket_drops"]}
        return summary

    def _script_log(self) -> list[str]:
        if self.work is None:
            return []
        path = self.work / "mo" / "alerts.log"
        return path.read_text().splitlines() if path.exists() else []

    def teardown(self, summary: dict) -> None:
        """Stops everything in order, reads PostgreSQL, removes every trace; fills ``summary``."""
        with self._lock:
            self.stop.set()  # no child starts from here on (the corpus replay loop ends)
        order = ["tui", "tcpreplay", "traffic", "probe", "softflowd", "collector"]
        for name in order:
            for child in [c for c in self.children if c.name == name]:
                self._terminate(child)
            if name == "tcpreplay" and self._replayer is not None:
                self._replayer.join(30)
            if name == "softflowd":
                time.sleep(1.5)  # the probe's and softflowd's last exports reach the collector
                collector = self._child("collector")
                if self.api_url and collector is not None and collector.proc.poll() is None:
                    time.sleep(1.0)  # one more live-API snapshot (published about once a second)
                    summary.update(self.collect_summary())
        for child in self.children:
            self._terminate(child)
        summary["scripts"] = self._script_log()
        if self.pg is not None:
            try:
                summary["postgres"] = {"database": self.dbname, "tables": self.pg.table_rows(self.dbname)}
            except Exception as exc:
                summary["postgres"] = {"error": str(exc)}
            self.pg.destroy()
        errors = self.topology.remove() if self.topology is not None else []
        if self.work is not None and not self.opts.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        namespaces, links = owned_names()
        processes = [c.name for c in self.children if process_alive(c.proc.pid)]
        summary["leftovers"] = {"namespaces": namespaces, "links": links, "processes": processes,
                                "errors": errors}

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> int:
        handlers = {}

        def on_signal(signum: int, _frame: object) -> None:
            if not self.stop.is_set():
                print(f"\ndemo: signal {signal.Signals(signum).name}: stopping and cleaning up",
                      file=self.out, flush=True)
            self.stop.set()

        try:
            self.check_prerequisites()
        except PrerequisiteError as exc:
            print(f"mirrorflow demo: {exc}", file=sys.stderr, flush=True)
            return 2
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            handlers[sig] = signal.signal(sig, on_signal)
        summary: dict[str, Any] = {}
        status = 0
        tui = not self.opts.headless and sys.stdin.isatty() and sys.stdout.isatty() and tui_available()
        try:
            try:
                self.setup()
                self.started = time.monotonic()
                self.start_traffic(1e6 if tui else self.opts.duration)
                if tui:
                    self.watch_tui()
                else:
                    if not self.opts.headless and sys.stdout.isatty():
                        self.say("the TUI is not there yet (appliance/tui): running headless")
                    self.say(f"running for {self.opts.duration:g} s (Ctrl-C stops earlier)")
                    self.watch_headless(self.opts.duration)
            except Interrupted:
                pass
            except DemoError as exc:
                print(f"mirrorflow demo: {exc}", file=sys.stderr, flush=True)
                status = 1
        finally:
            if not isinstance(summary, dict):
                summary = {}
            self.say("stopping: traffic, probe, softflowd, collector, PostgreSQL; removing namespaces")
            self.teardown(summary)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        summary["alerts"] = self._alert_summary(summary.get("scripts", []))
        summary["duration_s"] = round(time.monotonic() - self.started, 1) if self.started else 0
        summary["status"] = "ok" if status == 0 else "failed"
        print(render(summary), file=self.out)
        print(json.dumps(summary, sort_keys=True, default=str), file=self.out, flush=True)
        return status

    def _alert_summary(self, script_lines: list[str]) -> dict:
        def row(k: tuple, a: dict) -> dict:
            return {"mo": a.get("mo"), "mavg": a.get("mavg"), "level": a.get("level"),
                    "key": a.get("key"), "counter": a.get("counter"), "threshold": a.get("threshold"),
                    "peak_rate": round(max(self.alerts.peak.get(k, 0.0), float(a.get("rate") or 0))),
                    "since": a.get("since"), "ended_at": a.get("ended_at")}

        return {"raised": len(self.alerts.raised), "back_to_normal": len(self.alerts.ended),
                "list": [row(k, self.alerts.ended.get(k, a)) for k, a in self.alerts.raised.items()],
                "scripts_raised": sum(" raised " in f" {ln} " for ln in script_lines),
                "scripts_back2norm": sum(" back2norm " in f" {ln} " for ln in script_lines)}


def _si(v: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.1f} {unit}"
    return f"{v:.0f} "


def render(s: dict) -> str:
    """The human-readable summary."""
    lines = ["", "=== mirrorflow demo summary ===", f"ran {s.get('duration_s', 0)} s, {s.get('status')}"]
    for role, e in sorted(s.get("exporters", {}).items()):
        lines.append(f"exporter {role:7} {e['address']:>15}: {e['flows']:>7} flows, {e['packets']:>9} packets, "
                     f"{_si(e['bytes'])}B, {e['datagrams']} datagrams, {e['lost_packets']} lost")
    for name, o in sorted(s.get("objects", {}).items()):
        lines.append(f"object {name:10}: {o['flows']:>7} flows, {_si(o['bps_1m'])}bit/s, "
                     f"{_si(o['pps_1m'])}pkt/s (1 min)")
    a = s.get("alerts", {})
    lines.append(f"alerts: {a.get('raised', 0)} raised, {a.get('back_to_normal', 0)} back to normal; "
                 f"scripts ran {a.get('scripts_raised', 0)} raised / {a.get('scripts_back2norm', 0)} back2norm")
    for al in a.get("list", []):
        end = "still active" if al.get("ended_at") is None else "back to normal"
        lines.append(f"  {al['mo']} {al['mavg']} {al['level']} {al['key']}: {al['counter']} peaked at "
                     f"{al['peak_rate']}/s over the threshold {al['threshold']}/s, {end}")
    pg = s.get("postgres")
    if pg:
        if "error" in pg:
            lines.append(f"PostgreSQL: {pg['error']}")
        else:
            lines.append("PostgreSQL rows: " + ", ".join(f"{t} {n}" for t, n in pg["tables"].items()))
    left = s.get("leftovers", {})
    rest = [x for k in ("namespaces", "links", "processes", "errors") for x in left.get(k, [])]
    lines.append("left behind: " + (", ".join(rest) if rest else "nothing"))
    return "\n".join(lines)
