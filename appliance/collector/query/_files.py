"""Which archive files a time range needs, from their paths alone (no file is opened).

A file ``…/date=D/hour=H/flows-YYYYmmddTHHMMSSZ-PID-SEQ.parquet`` holds flows received from
its start time to at most the end of its hour (rotation intervals divide the hour), so a
range keeps the files with ``start < until`` and ``end of hour > since``; the exact bounds
are applied to ``recv_time_ns`` in the query.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import MirrorflowError

__all__ = ["QueryError", "archive_files", "parse_time"]

_FILE = re.compile(r"^flows-(\d{8}T\d{6})Z-\d+-\d+\.parquet$")
_HOUR = re.compile(r"^hour=(\d\d)$")
_DATE = re.compile(r"^date=(\d{4}-\d\d-\d\d)$")
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class QueryError(MirrorflowError):
    """A query the user can fix: bad time, unknown --top field, missing archive directory."""


def parse_time(text: str, now: float | None = None) -> int:
    """A time as ns since the epoch: ISO 8601 (UTC unless an offset is given), a Unix time, or
    relative to now: ``-15m``, ``-1h``, ``-2d``, ``-1w``, ``now``.

    Raises:
        QueryError: the text is none of those.
    """
    t = text.strip()
    now_s = time.time() if now is None else now
    if t == "now":
        return int(now_s * 1e9)
    m = _RELATIVE.match(t)
    if m:
        return int((now_s - float(m.group(1)) * _UNIT_S[m.group(2)]) * 1e9)
    if re.fullmatch(r"\d{9,10}(\.\d+)?", t):
        return int(float(t) * 1e9)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{text!r} is not a time: write ISO 8601 (2026-12-08T02:10, UTC unless an offset "
                         "follows), a Unix time, or relative: -15m, -1h, -2d, now") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return calendar.timegm(dt.utctimetuple()) * 1_000_000_000 + dt.microsecond * 1000


def _file_start_s(name: str) -> int | None:
    m = _FILE.match(name)
    if m is None:
        return None
    return calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S"))


def archive_files(root: Path, since_ns: int | None = None, until_ns: int | None = None,
                  appliances: list[str] | None = None) -> list[Path]:
    """The complete archive files under `root` that may hold flows in [since, until).

    Args:
        root: the archive directory (the one with ``appliance=…`` folders).
        since_ns / until_ns: the range (None = open).
        appliances: only these appliances' folders (None = all).

    Raises:
        QueryError: `root` is not a directory.
    """
    if not root.is_dir():
        raise QueryError(f"{root}: no such archive directory (mirrorflow collect --archive DIR writes one)")
    since_s = None if since_ns is None else since_ns // 1_000_000_000
    until_s = None if until_ns is None else -(-until_ns // 1_000_000_000)
    out: list[Path] = []
    for app_dir in sorted(root.glob("appliance=*")):
        if appliances is not None and app_dir.name.split("=", 1)[1] not in appliances:
            continue
        for date_dir in sorted(app_dir.iterdir()):
            m = _DATE.match(date_dir.name)
            if m is None or not date_dir.is_dir():
                continue
            day = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d"))
            if (until_s is not None and day >= until_s) or (since_s is not None and day + 86400 <= since_s):
                continue
            for hour_dir in sorted(date_dir.iterdir()):
                h = _HOUR.match(hour_dir.name)
                if h is None:
                    continue
                hour = day + int(h.group(1)) * 3600
                if (until_s is not None and hour >= until_s) or (since_s is not None and hour + 3600 <= since_s):
                    continue
                for f in sorted(hour_dir.iterdir()):
                    start = _file_start_s(f.name)
                    if start is None or (until_s is not None and start >= until_s):
                        continue
                    out.append(f)
    return out

