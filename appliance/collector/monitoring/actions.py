"""What a moving-average alert does outside the process: scripts and notification files.

Scripts run on a small pool of worker threads, each in its own session with a timeout
(the whole process group is killed when it expires) and a fixed environment: PATH plus
the ``MIRRORFLOW_*`` facts of the event. Exit codes and output go to the log and to
counters; nothing here ever blocks the collector's thread: when the queue is full the
script is skipped and counted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = ["ScriptRunner", "new_report", "notification_text", "write_notification", "SCRIPT_PATH"]

log = logging.getLogger("mirrorflow.actions")

SCRIPT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_OUTPUT_MAX = 4096
REPORT_OUTPUT_MAX = 1024  # characters of output kept per script for the live API


def new_report(argv: Sequence[str]) -> dict[str, object]:
    """What the live API shows of one script run; `ScriptRunner.run` updates it in place.

    ``status``: queued, running, exited, timed_out, not_started or skipped (queue full);
    ``exit``: the exit code once exited; ``duration_s``: from start to exit or kill;
    ``output``: the tail of stdout+stderr (at most `REPORT_OUTPUT_MAX` characters).
    """
    return {"script": str(argv[0]) if argv else "", "status": "queued", "exit": None, "duration_s": None,
            "output": ""}  # fmt: skip


class ScriptRunner:
    """Runs alert scripts asynchronously.

    Args:
        timeout_s: a script still running after this is killed (with its children).
        workers: scripts that may run at the same time.
        max_queued: scripts waiting for a worker beyond which new ones are skipped.
    """

    def __init__(self, timeout_s: float = 30.0, workers: int = 4, max_queued: int = 1000) -> None:
        self.timeout_s = timeout_s
        self.max_queued = max_queued
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mf-script")
        self._lock = threading.Lock()
        self.counters = {"started": 0, "succeeded": 0, "failed": 0, "timed_out": 0, "not_started": 0,
                         "skipped_queue_full": 0}  # fmt: skip
        self._queued = 0
        #: (argv, exit code or None on timeout/error, output) of the last scripts, newest last
        self.recent: list[tuple[list[str], int | None, str]] = []

    def run(self, argv: Sequence[str], env: Mapping[str, str], after: Future | None = None,
            report: dict[str, object] | None = None) -> Future | None:  # fmt: skip
        """Queue one script; ``after``: start only once that one finished (action before back2norm);
        ``report``: a `new_report` dict updated as the script runs and ends.

        Returns:
            a future of the exit code (None: timed out or not started), or None when skipped.
        """
        with self._lock:
            if self._queued >= self.max_queued:
                self.counters["skipped_queue_full"] += 1
                log.error("script %s skipped: %d scripts already waiting", argv[0], self._queued)
                if report is not None:
                    report["status"] = "skipped"
                return None
            self._queued += 1
        argv, env = list(argv), dict(env)
        if after is None or after.done():
            return self._pool.submit(self._run, argv, env, report)
        out: Future = Future()

        def chain(_: Future) -> None:
            try:
                inner = self._pool.submit(self._run, argv, env, report)
            except RuntimeError:  # shut down meanwhile
                out.set_result(None)
                return
            inner.add_done_callback(lambda f: out.set_result(f.result()))

        after.add_done_callback(chain)
        return out

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    def _run(self, argv: list[str], env: dict[str, str], report: dict[str, object] | None = None) -> int | None:
        rep: dict[str, object] = report if report is not None else {}
        start = time.monotonic()
        rep["status"] = "running"
        try:
            return self._execute(argv, env, rep)
        finally:
            rep["duration_s"] = round(time.monotonic() - start, 3)
            with self._lock:
                self._queued -= 1

    def _execute(self, argv: list[str], env: dict[str, str], rep: dict[str, object]) -> int | None:
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd="/")  # fmt: skip
        except OSError as exc:
            self._count("not_started")
            log.error("script %s could not start: %s", argv[0], exc)
            rep.update(status="not_started", output=str(exc)[-REPORT_OUTPUT_MAX:])
            self._remember(argv, None, str(exc))
            return None
        self._count("started")
        try:
            out, _ = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a child left its own session holding the pipe
                proc.kill()
                out = b""
            self._count("timed_out")
            text = out[-_OUTPUT_MAX:].decode(errors="replace")
            log.error("script %s killed after %.0f s (timeout); output: %s", " ".join(argv), self.timeout_s, text.strip())
            rep.update(status="timed_out", output=text[-REPORT_OUTPUT_MAX:])
            self._remember(argv, None, text)
            return None
        text = out[-_OUTPUT_MAX:].decode(errors="replace")
        if proc.returncode == 0:
            self._count("succeeded")
            log.info("script %s: exit 0%s", " ".join(argv), f"; output: {text.strip()}" if text.strip() else "")
        else:
            self._count("failed")
            log.error("script %s: exit %d; output: %s", " ".join(argv), proc.returncode, text.strip())
        rep.update(status="exited", exit=proc.returncode, output=text[-REPORT_OUTPUT_MAX:])
        self._remember(argv, proc.returncode, text)
        return proc.returncode

    def _remember(self, argv: list[str], code: int | None, text: str) -> None:
        with self._lock:
            self.recent.append((argv, code, text))
            del self.recent[:-50]

    def close(self, wait: bool = True) -> None:
        """Stop taking scripts; with ``wait``, let the queued ones finish (each bounded by the timeout)."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self.counters, "queued": self._queued}


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
