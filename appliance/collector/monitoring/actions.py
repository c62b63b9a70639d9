"""What a moving-average alert does outside the process: scripts and notification files.

Scripts of one monitoring object run one after the other on that object's own worker thread
(so a hanging script of one object never delays another object's), from a bounded queue per
object. Each script runs in its own session and process group with a timeout: when it expires
the whole group is killed, and so is every process that still carries the run's
``MIRRORFLOW_RUN`` marker in its environment (children that called ``setsid`` to escape the
group). Output is read as it comes and only its tail is kept, so a script that writes 80 MB
costs 4 KiB. The environment is fixed: PATH plus the ``MIRRORFLOW_*`` facts of the event.
Nothing here ever blocks the collector's thread: when an object's queue is full the script
is skipped and counted; on stop, scripts not started yet are dropped (counted) and running
ones get `STOP_GRACE_S` seconds before they are killed.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SCRIPT_PATH", "STOP_GRACE_S", "ScriptRunner", "new_report", "notification_text", "write_notification"]

log = logging.getLogger("mirrorflow.actions")

SCRIPT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_OUTPUT_MAX = 4096  # bytes of a script's output kept (the tail), whatever it writes
REPORT_OUTPUT_MAX = 1024  # characters of output kept per script for the live API
STOP_GRACE_S = 3.0  # on stop, how long running scripts may still take before they are killed
_IDLE_S = 300.0  # an object's worker idle this long ends (objects come and go with reloads)
RUN_MARKER = "MIRRORFLOW_RUN"  # environment variable naming one script run (found in /proc to kill)


def new_report(argv: Sequence[str]) -> dict[str, object]:
    """What the live API shows of one script run; `ScriptRunner.run` updates it in place.

    ``status``: queued, running, exited, timed_out, not_started, skipped (queue full),
    dropped (not started before the collector stopped) or killed (still running at stop);
    ``exit``: the exit code once exited; ``duration_s``: from start to exit or kill;
    ``output``: the tail of stdout+stderr (at most `REPORT_OUTPUT_MAX` characters).
    """
    return {"script": str(argv[0]) if argv else "", "status": "queued", "exit": None, "duration_s": None,
            "output": ""}


@dataclass(slots=True)
class _Job:
    argv: list[str]
    env: dict[str, str]
    report: dict[str, object]
    future: Future
    after: Future | None = None


@dataclass(slots=True)
class _Group:
    """One monitoring object's scripts: a FIFO and the thread that runs it."""

    name: str = ""
    jobs: collections.deque = field(default_factory=collections.deque)
    pending: int = 0  # queued + running
    thread: threading.Thread | None = None
    proc: subprocess.Popen | None = None
    marker: str = ""


class ScriptRunner:
    """Runs alert scripts asynchronously, one queue and one worker thread per monitoring object.

    The object is the script environment's ``MIRRORFLOW_MO`` (scripts without it share one queue).

    Args:
        timeout_s: a script still running after this is killed (with its group and descendants).
        workers: unused (kept for callers of the former pool); each object has its own worker.
        max_queued: scripts of one object waiting or running beyond which new ones are skipped.
        stop_grace_s: on `close`, how long running scripts may still take.
    """

    def __init__(self, timeout_s: float = 30.0, workers: int = 4, max_queued: int = 100,
                 stop_grace_s: float = STOP_GRACE_S) -> None:
        self.timeout_s = timeout_s
        self.max_queued = max_queued
        self.stop_grace_s = stop_grace_s
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._groups: dict[str, _Group] = {}
        self._closing = False
        self.counters = {"started": 0, "succeeded": 0, "failed": 0, "timed_out": 0, "not_started": 0,
                         "skipped_queue_full": 0, "dropped_at_stop": 0, "killed_at_stop": 0}
        #: (argv, exit code or None on timeout/error, output) of the last scripts, newest last
        self.recent: list[tuple[list[str], int | None, str]] = []

    def run(self, argv: Sequence[str], env: Mapping[str, str], after: Future | None = None,
            report: dict[str, object] | None = None) -> Future | None:
        """Queue one script behind the other scripts of its object (``env["MIRRORFLOW_MO"]``);
        ``after``: start only once that one finished (action before back2norm: same object, so
        the queue's order already does it); ``report``: a `new_report` dict updated as it runs.

        Returns:
            a future of the exit code (None: timed out, killed or not started), or None when skipped.
        """
        rep: dict[str, object] = report if report is not None else {}
        name = str(env.get("MIRRORFLOW_MO", ""))
        with self._lock:
            g = self._groups.setdefault(name, _Group(name))
            if self._closing or g.pending >= self.max_queued:
                self.counters["skipped_queue_full"] += 1
                log.error("script %s skipped: %s", argv[0] if argv else "?",
                          "the collector is stopping" if self._closing else
                          f"{g.pending} scripts of object {name!r} already waiting")
                rep["status"] = "skipped"
                return None
            fut: Future = Future()
            g.jobs.append(_Job(list(argv), dict(env), rep, fut, after))
            g.pending += 1
            if g.thread is None:
                g.thread = threading.Thread(target=self._work, args=(g,), name=f"mf-script-{name}"[:15], daemon=True)
                g.thread.start()
            self._wake.notify_all()
        return fut

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    def _work(self, g: _Group) -> None:
        while True:
            with self._lock:
                while not g.jobs and not self._closing:
                    if not self._wake.wait(_IDLE_S) and not g.jobs and not g.pending:
                        del self._groups[g.name]  # idle: the next script of this object starts a new worker
                        return
                if not g.jobs:
                    return
                job = g.jobs.popleft()
            if job.after is not None and not job.after.done():
                with contextlib.suppress(Exception):  # only the order matters here, not its outcome
                    job.after.result(timeout=self.timeout_s + 10)
            start = time.monotonic()
            job.report["status"] = "running"
            code = None
            try:
                code = self._execute(g, job.argv, job.env, job.report)
            finally:
                job.report["duration_s"] = round(time.monotonic() - start, 3)
                with self._lock:
                    g.pending -= 1
                job.future.set_result(code)

    def _execute(self, g: _Group, argv: list[str], env: dict[str, str], rep: dict[str, object]) -> int | None:
        marker = uuid.uuid4().hex
        if self._closing:
            self._count("dropped_at_stop")
            rep["status"] = "dropped"
            return None
        try:
            proc = subprocess.Popen(argv, env={**env, RUN_MARKER: marker}, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd="/")
            with self._lock:
                g.proc, g.marker = proc, marker
                if self._closing:  # close() ran while it started: it gets no grace
                    proc._mf_stopped = True  # type: ignore[attr-defined]
        except OSError as exc:
            self._count("not_started")
            log.error("script %s could not start: %s", argv[0], exc)
            rep.update(status="not_started", output=str(exc)[-REPORT_OUTPUT_MAX:])
            self._remember(argv, None, str(exc))
            return None
        self._count("started")
        try:
            tail, finished = _read_tail(proc, time.monotonic() + self.timeout_s)
        finally:
            with self._lock:
                g.proc = None
        text = bytes(tail).decode(errors="replace")
        if not finished or getattr(proc, "_mf_stopped", False):
            kill_run(proc.pid, marker)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            stopped = getattr(proc, "_mf_stopped", False)
            self._count("killed_at_stop" if stopped else "timed_out")
            if stopped:
                log.error("script %s killed: still running when the collector stopped", " ".join(argv))
            else:
                log.error("script %s killed after %.0f s (timeout); output: %s", " ".join(argv), self.timeout_s,
                          text.strip())
            rep.update(status="killed" if stopped else "timed_out", output=text[-REPORT_OUTPUT_MAX:])
            self._remember(argv, None, text)
            return None
        code = proc.returncode
        if code == 0:
            self._count("succeeded")
            log.info("script %s: exit 0%s", " ".join(argv), f"; output: {text.strip()}" if text.strip() else "")
        else:
            self._count("failed")
            log.error("script %s: exit %d; output: %s", " ".join(argv), code, text.strip())
        rep.update(status="exited", exit=code, output=text[-REPORT_OUTPUT_MAX:])
        self._remember(argv, code, text)
        return code

    def _remember(self, argv: list[str], code: int | None, text: str) -> None:
        with self._lock:
            self.recent.append((argv, code, text))
            del self.recent[:-50]

    def close(self, wait: bool = True) -> None:
        """Stop: scripts not started yet are dropped (counted); running ones get `stop_grace_s`
        (0 without ``wait``), then their process groups and descendants are killed."""
        with self._lock:
            self._closing = True
            for g in self._groups.values():
                while g.jobs:
                    job = g.jobs.popleft()
                    g.pending -= 1
                    self.counters["dropped_at_stop"] += 1
                    job.report["status"] = "dropped"
                    job.future.set_result(None)
            self._wake.notify_all()
            groups = list(self._groups.values())
        deadline = time.monotonic() + (self.stop_grace_s if wait else 0.0)
        for g in groups:
            if g.thread is not None:
                g.thread.join(max(0.0, deadline - time.monotonic()))
        for g in groups:
            with self._lock:
                proc, marker = g.proc, g.marker
            if proc is not None and proc.poll() is None:
                proc._mf_stopped = True  # type: ignore[attr-defined]
                kill_run(proc.pid, marker)
        for g in groups:
            if g.thread is not None:
                g.thread.join(5.0)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self.counters, "queued": sum(g.pending for g in self._groups.values())}


def _read_tail(proc: subprocess.Popen, deadline: float) -> tuple[bytearray, bool]:
    """Read the script's output until it exits (True) or the deadline passes (False), keeping
    only the last `_OUTPUT_MAX` bytes. A background child still holding the pipe after the
    script exited does not keep us waiting."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    tail = bytearray()
    drain_until = None  # once the script exited: what is in the pipe now, then stop
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        eof = False
        while True:
            if proc.poll() is not None:
                drain_until = drain_until or time.monotonic() + 0.1
                if eof or not sel.select(0) or time.monotonic() > drain_until:
                    break
            left = deadline - time.monotonic()
            if left <= 0 or getattr(proc, "_mf_stopped", False):
                proc.stdout.close()
                return tail, False
            if eof:
                time.sleep(min(left, 0.05))
                continue
            if sel.select(min(left, 0.2)):
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    eof = True
                    continue
                tail += chunk
                del tail[:-_OUTPUT_MAX]
    proc.stdout.close()
    return tail, True


def kill_run(pid: int, marker: str) -> int:
    """SIGKILL a script's process group and every process whose environment carries its marker
    (descendants that left the group with setsid); returns how many marked processes were found."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    needle = f"{RUN_MARKER}={marker}".encode()
    found = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = fh.read(1 << 20)
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found += 1
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return found


def notification_text(key: Sequence[str], numeric: Sequence[bool], value: int, limit: int) -> str:
    """xenoeye's notification file line: `` '1.2.3.4'  6  <value> <limit>``."""
    parts = "".join(f" {k} " if num else f" '{k}' " for k, num in zip(key, numeric, strict=True))
    return f"{parts} {value} {limit}\n"


def write_notification(path: Path, text: str, on_error: Callable[[OSError], None] | None = None) -> bool:
    """Write atomically (readers never see half a file)."""
    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        if on_error is not None:
            on_error(exc)
        return False
