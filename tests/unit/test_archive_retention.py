"""Archive retention: by age, by total size, by a floor of free space; oldest first, only this
appliance's files, empty folders removed, every removal counted per reason."""

from __future__ import annotations

import calendar
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

from appliance.collector.export.archive import ArchiveSettings, FlowArchive
from appliance.collector.export.archive_retention import ArchiveRetention
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY

T0 = calendar.timegm((2026, 12, 8, 0, 0, 0))
Usage = namedtuple("Usage", "total used free")


def make_files(root: Path, appliance: str, minutes: list[int], size: int = 1000, suffix: str = "") -> list[Path]:
    out = []
    for m in minutes:
        t = time.gmtime(T0 + 60 * m)
        d = root / f"appliance={appliance}" / time.strftime("date=%Y-%m-%d/hour=%H", t)
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"flows-{time.strftime('%Y%m%dT%H%M%SZ', t)}-1-{m}.parquet{suffix}"
        p.write_bytes(b"x" * size)
        out.append(p)
    return out


def left(root: Path, appliance: str = "a") -> list[str]:
    return sorted(p.name.split("-")[1] for p in (root / f"appliance={appliance}").rglob("flows-*"))


def test_age_removes_files_whose_every_flow_is_too_old(tmp_path: Path) -> None:
    make_files(tmp_path, "a", [0, 1, 59, 60, 61, 125])  # 00:00 … 02:05
    r = ArchiveRetention(ArchiveSettings(tmp_path, "a", rotate_s=60, max_age_h=1, min_free_pct=0),
                         clock=lambda: T0 + 2 * 3600 + 60)  # 02:01: keep what ends after 01:01
    assert r.run() == {"age": 4, "size": 0, "free_space": 0}
    assert left(tmp_path) == ["20261208T010100Z", "20261208T020500Z"]
    assert not (tmp_path / "appliance=a/date=2026-12-08/hour=00").exists()  # empty hour folder gone
    assert r.stats() == {"files_kept": 2, "bytes_kept": 2000, "removed_files": {"age": 4, "size": 0, "free_space": 0},
                         "removed_bytes": {"age": 4000, "size": 0, "free_space": 0}, "retention_errors": 0}


def test_total_size_keeps_the_newest_files_under_the_limit(tmp_path: Path) -> None:
    make_files(tmp_path, "a", [5, 1, 3, 2, 4], size=300_000)
    make_files(tmp_path, "a", [0], size=300_000, suffix=".partial")  # set aside after a crash: counts too
    make_files(tmp_path, "b", [0, 1], size=300_000)  # another appliance sharing the tree: never touched
    r = ArchiveRetention(ArchiveSettings(tmp_path, "a", max_size_mb=1, min_free_pct=0))
    assert r.run() == {"age": 0, "size": 3, "free_space": 0}
    assert left(tmp_path) == ["20261208T000300Z", "20261208T000400Z", "20261208T000500Z"]
    assert len(left(tmp_path, "b")) == 2
    assert r.removed_bytes["size"] == 900_000 and r.stats()["bytes_kept"] == 900_000


def test_free_space_floor_removes_oldest_until_the_floor_is_back(tmp_path: Path) -> None:
    make_files(tmp_path, "a", [0, 1, 2, 3], size=100)
    usage = Usage(total=10_000, used=9_750, free=250)  # 2.5 % free, the floor is 5 %: 250 more bytes
    r = ArchiveRetention(ArchiveSettings(tmp_path, "a", min_free_pct=5), disk_usage=lambda p: usage)
    assert r.run() == {"age": 0, "size": 0, "free_space": 3}
    assert left(tmp_path) == ["20261208T000300Z"]
    assert r.run() == {"age": 0, "size": 0, "free_space": 1}  # still low: the last one goes too
    assert r.run() == {"age": 0, "size": 0, "free_space": 0} and left(tmp_path) == []


def test_the_writer_reports_each_closed_file_and_replay_ages_from_the_newest_flow(tmp_path: Path) -> None:
    s = ArchiveSettings(tmp_path, "a", rotate_s=60, max_age_h=1, min_free_pct=0)
    r = ArchiveRetention(s, clock=None)
    a = FlowArchive(s, lambda i: "192.0.2.1", retention=r.run, on_closed=r.add)
    for minute in (0, 30, 61, 62, 130):
        n = 3
        cols = {REGISTRY["recv_time_ns"].column: np.full(n, (T0 + 60 * minute) * 10**9, dtype=np.uint64),
                REGISTRY["bytes"].column: np.ones(n, dtype=np.uint64)}
        a.write(FlowBatch(n, cols, {}))
    a.close()
    # the newest flow is at 02:10: files that end before 01:10 went, as they were closed
    assert left(tmp_path) == ["20261208T021000Z"]
    assert r.removed_files["age"] == 4 and r.stats()["files_kept"] == 1
