"""The spool: closed windows on disk, in order, until the database has them.

One file per window, ``<seq>.win``: a JSON header line (window id, table, columns,
time, create-index, rows) then the rows in COPY text format. A file is written under a
dot-name, fsync'ed, renamed and the directory fsync'ed, so after a crash a spool file is
either complete or absent. The window id (random, unique per spooled window) is what the
loader records in the database in the same transaction as the rows: loading a file twice
is detected and skipped, so a window is loaded exactly once.

The spool is bounded (bytes and files). When full, new windows are refused — counted and
logged as errors, never dropped silently — and the windows already spooled are kept.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from appliance.collector.export.sqlfile import copy_rows
from appliance.collector.fields.spec import Column
from appliance.collector.monitoring.windows import WindowTable

__all__ = ["DEFAULT_SPOOL", "Spool", "SpooledWindow", "read_spooled"]

log = logging.getLogger("mirrorflow.spool")

DEFAULT_SPOOL = Path("/var/lib/mirrorflow/spool")

SUFFIX = ".win"


@dataclass(slots=True)
class SpooledWindow:
    """A spool file read back: what the loader needs."""

    path: Path
    window_id: str
    table: str
    time: int
    columns: list[Column]
    create_index: bool
    rows: int
    body: bytes  # COPY text rows

    @property
    def size(self) -> int:
        return len(self.body)


def read_spooled(path: Path) -> SpooledWindow:
    """Read one spool file (raises ValueError if it is not one)."""
    data = path.read_bytes()
    nl = data.find(b"\n")
    if nl < 0:
        raise ValueError(f"{path}: no header line")
    try:
        h = json.loads(data[:nl])
        return SpooledWindow(
            path, h["id"], h["table"], int(h["time"]),
            [Column(n, t) for n, t in h["columns"]], bool(h["index"]), int(h["rows"]), data[nl + 1 :],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: bad spool header: {exc}") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A directory of spooled windows.

    Args:
        path: the spool directory (created if missing).
        max_bytes / max_files: the bound; windows beyond it are refused.
        fsync: make every file durable before `put` returns (off only in tests that don't care).
    """

    def __init__(self, path: Path | str, max_bytes: int = 1 << 30, max_files: int = 100_000,
                 fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_files, self.fsync = max_bytes, max_files, fsync
        self._lock = threading.Lock()
        for stale in self.path.glob(".*.tmp"):  # half-written by a crash: never renamed, never counted
            stale.unlink(missing_ok=True)
        files = self.pending()
        self._seq = int(files[-1].stem) + 1 if files else 1
        self.files = len(files)
        self.bytes = sum(p.stat().st_size for p in files)
        self.spooled = 0
        self.refused = 0
        self.full = False
        self._last_alarm = 0.0

    def pending(self) -> list[Path]:
        """Spooled windows, oldest first."""
        return sorted(p for p in self.path.glob("*" + SUFFIX) if p.stem.isdigit())

    def put(self, t: WindowTable) -> Path | None:
        """Spool a closed window; None if the spool is full (the window is refused and counted)."""
        header = json.dumps({
            "id": uuid.uuid4().hex, "table": t.table, "time": t.time, "period": t.period,
            "columns": [[c.name, c.sqltype] for c in t.columns], "index": t.create_index,
            "rows": len(t.rows), "mo": t.mo, "window": t.window,
        })
        data = (header + "\n" + "".join(copy_rows(t))).encode()
        with self._lock:
            if self.files + 1 > self.max_files or self.bytes + len(data) > self.max_bytes:
                self.refused += 1
                self.full = True
                now = time.monotonic()
                if now - self._last_alarm > 10:
                    self._last_alarm = now
                    log.error(
                        "ALARM: spool %s is full (%d files, %d bytes; bound %d files, %d bytes): "
                        "window %s at %d refused (%d refused so far). Is the database reachable? "
                        "Free space or raise the bound; `mirrorflow db load` loads the spool by hand.",
                        self.path, self.files, self.bytes, self.max_files, self.max_bytes,
                        t.table, t.time, self.refused,
                    )
                return None
            seq = self._seq
            self._seq += 1
            self.files += 1
            self.bytes += len(data)
        path = self.path / f"{seq:016d}{SUFFIX}"
        tmp = self.path / f".{seq:016d}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            if self.fsync:
                _fsync_dir(self.path)
        except OSError as exc:
            with self._lock:
                self.files -= 1
                self.bytes -= len(data)
                self.refused += 1
            tmp.unlink(missing_ok=True)
            log.error("ALARM: cannot write spool file %s: %s: window %s at %d refused", path, exc, t.table, t.time)
            return None
        self.spooled += 1
        return path

    def remove(self, path: Path) -> None:
        """Forget a window the database has (after its transaction committed)."""
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self.files -= 1
            self.bytes -= size
            if self.full and self.files < self.max_files and self.bytes < self.max_bytes:
                self.full = False
                log.warning("spool %s accepts windows again (%d files, %d bytes)", self.path, self.files, self.bytes)

    def stats(self) -> dict[str, int]:
        return {"spool_files": self.files, "spool_bytes": self.bytes, "spooled_windows": self.spooled,
                "refused_windows": self.refused, "spool_full": int(self.full)}
