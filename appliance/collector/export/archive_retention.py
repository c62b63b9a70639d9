"""Retention of the flow archive: by age, by total size and by a floor of free space.

Only this appliance's folder (``appliance=NAME``) is touched, so appliances sharing a tree
never remove each other's files. The oldest files go first (by the time in their names).
A pass runs at start and after every closed file; the list of files is kept in memory
(a full directory scan at start and then every `RESCAN_S`), so a pass costs nothing per file
on disk. What is removed, and why, is logged and counted (``removed_files`` /
``removed_bytes`` per reason: age, size, free_space), which /metrics exports.
"""

from __future__ import annotations

import calendar
import heapq
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.collector.export.archive import ArchiveSettings

__all__ = ["ArchiveRetention", "REASONS"]

log = logging.getLogger("mirrorflow.archive")

REASONS = ("age", "size", "free_space")
RESCAN_S = 3600.0
_NAME = re.compile(r"^flows-(\d{8}T\d{6})Z-\d+-\d+\.parquet(\.partial)?$")


def _start_s(name: str) -> int | None:
    m = _NAME.match(name)
    return calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S")) if m else None


class ArchiveRetention:
    """Keeps this appliance's archive under its age, size and free-space limits.

    Args:
        settings: the limits (max_age_h, max_size_mb, min_free_pct; 0 = that limit off).
        clock: wall clock in seconds (injectable); on a replay pass the capture's time, so
            age counts from the newest archived flow, not from today.
        disk_usage: `shutil.disk_usage` (injectable: tests simulate a filling disk).
    """

    def __init__(self, settings: ArchiveSettings, clock: Callable[[], float] | None = time.time,
                 disk_usage: Callable[[Path], Any] = shutil.disk_usage) -> None:
        self.settings = settings
        self.root = settings.directory / f"appliance={settings.appliance}"
        self._clock = clock
        self._disk_usage = disk_usage
        self._files: list[tuple[int, str, int]] = []  # heap of (start s, path, size)
        self._bytes = 0
        self._newest = 0
        self._scanned = -RESCAN_S
        self.removed_files = dict.fromkeys(REASONS, 0)
        self.removed_bytes = dict.fromkeys(REASONS, 0)
        self.errors = 0

    def scan(self) -> None:
        """Read the appliance's folder (every complete file and every set-aside partial one)."""
        files = []
        total = 0
        if self.root.is_dir():
            for path in self.root.glob("date=*/hour=*/flows-*"):
                start = _start_s(path.name)
                if start is None:
                    continue
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                files.append((start, str(path), size))
                total += size
        heapq.heapify(files)
        self._files, self._bytes = files, total
        self._newest = max((f[0] for f in files), default=0)
        self._scanned = time.monotonic()

    def add(self, path: Path, size: int) -> None:
        """A file the writer just closed."""
        start = _start_s(path.name)
        if start is not None:
            heapq.heappush(self._files, (start, str(path), size))
            self._bytes += size
            self._newest = max(self._newest, start)

    def __call__(self) -> None:
        self.run()

    def run(self) -> dict[str, int]:
        """One pass: age, then size, then free space. Returns files removed per reason."""
        if time.monotonic() - self._scanned >= RESCAN_S:
            self.scan()
        s = self.settings
        removed = dict.fromkeys(REASONS, 0)
        if s.max_age_h > 0:
            now = self._clock() if self._clock is not None else self._newest
            cutoff = now - s.max_age_h * 3600
            # a file holds flows up to its start + rotation: it goes when all of them are too old
            while self._files and self._files[0][0] + s.rotate_s <= cutoff:
                self._remove("age", removed)
        if s.max_size_mb > 0:
            limit = int(s.max_size_mb * 2**20)
            while self._files and self._bytes > limit:
                self._remove("size", removed)
        if s.min_free_pct > 0 and self._files:
            try:
                du = self._disk_usage(self.root)
            except OSError:
                du = None
            if du is not None and du.total:
                want = du.total * s.min_free_pct / 100.0
                free = du.free
                while self._files and free < want:
                    free += self._remove("free_space", removed)
        if any(removed.values()):
            log.info("archive retention: removed %s (now %d files, %.1f MB)",
                     ", ".join(f"{n} files for {r}" for r, n in removed.items() if n), len(self._files),
                     self._bytes / 2**20)
        return removed

    def _remove(self, reason: str, removed: dict[str, int]) -> int:
        start, path, size = heapq.heappop(self._files)
        self._bytes -= size
        try:
            os.unlink(path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            self.errors += 1
            log.error("archive retention: cannot remove %s: %s", path, exc)
            return 0
        removed[reason] += 1
        self.removed_files[reason] += 1
        self.removed_bytes[reason] += size
        for d in (Path(path).parent, Path(path).parent.parent):  # empty hour=, then date= folders
            try:
                d.rmdir()
            except OSError:
                break
        return size

    def stats(self) -> dict[str, Any]:
        return {"files_kept": len(self._files), "bytes_kept": self._bytes,
                "removed_files": dict(self.removed_files), "removed_bytes": dict(self.removed_bytes),
                "retention_errors": self.errors}
