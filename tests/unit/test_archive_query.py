"""Time ranges over the archive: the files a range needs (from their paths alone), ranges that span
rotation files, hours and days, and the times users write."""

from __future__ import annotations

import calendar
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.export.archive import ArchiveSettings, FlowArchive
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.query import ArchiveQuery, QueryError, archive_files, parse_time
from appliance.netflow.registry import REGISTRY

T0 = calendar.timegm((2026, 12, 8, 23, 58, 0))  # two minutes before midnight
NS = 10**9


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One flow every 10 s for 6 minutes across midnight (6 files of 60 s, two days)."""
    root = tmp_path_factory.mktemp("archive")
    a = FlowArchive(ArchiveSettings(root, "edge", rotate_s=60), lambda i: "192.0.2.1")
    t = np.arange(T0, T0 + 360, 10, dtype=np.uint64) * np.uint64(NS)
    n = len(t)
    a.write(FlowBatch(n, {REGISTRY["recv_time_ns"].column: t,
                          REGISTRY["bytes"].column: np.arange(1, n + 1, dtype=np.uint64),
                          REGISTRY["dst_port"].column: np.full(n, 443, dtype=np.uint64)}, {}))
    a.close()
    return root


def names(files: list[Path]) -> list[str]:
    return [f.name.split("-")[1] for f in files]


def test_the_files_of_a_range_come_from_their_paths(archive: Path) -> None:
    assert names(archive_files(archive)) == ["20261208T235800Z", "20261208T235900Z", "20261209T000000Z",
                                             "20261209T000100Z", "20261209T000200Z", "20261209T000300Z"]
    # a file may hold flows up to the end of its hour: the exact bounds are the query's
    got = archive_files(archive, (T0 + 90) * NS, (T0 + 150) * NS)
    assert names(got) == ["20261208T235800Z", "20261208T235900Z", "20261209T000000Z"]
    assert names(archive_files(archive, (T0 + 400) * NS)) == ["20261209T000000Z", "20261209T000100Z",
                                                              "20261209T000200Z", "20261209T000300Z"]
    assert archive_files(archive, None, T0 * NS) == []
    assert archive_files(archive, appliances=["other"]) == []
    with pytest.raises(QueryError, match="no such archive directory"):
        archive_files(archive / "nope")


def test_a_range_across_files_and_midnight_gives_exactly_its_flows(archive: Path) -> None:
    q = ArchiveQuery(archive)
    since, until = (T0 + 95) * NS, (T0 + 215) * NS  # 23:59:35 … 00:01:35 (exclusive)
    t = q.flows("dst port 443", since, until, 0)
    want = [T0 + s for s in range(100, 215, 10)]
    assert sorted(x // NS for x in t["recv_time_ns"].to_pylist()) == want
    top = q.top(["dst port"], "flows", "", since, until, 5)
    assert top.totals["flows"] == len(want) and top.rows[0]["flows"] == len(want)
    assert q.flows("", (T0 + 1000) * NS, None, 0).num_rows == 0


@pytest.mark.parametrize(("text", "want"), [
    ("2026-12-08T02:10", calendar.timegm((2026, 12, 8, 2, 10, 0)) * NS),
    ("2026-12-08 02:10:30Z", calendar.timegm((2026, 12, 8, 2, 10, 30)) * NS),
    ("2026-12-08T03:10:00+01:00", calendar.timegm((2026, 12, 8, 2, 10, 0)) * NS),
    ("1796000000", 1796000000 * NS),
    ("1796000000.5", 1796000000 * NS + NS // 2),
    ("-15m", (1_800_000_000 - 900) * NS),
    ("-2d", (1_800_000_000 - 2 * 86400) * NS),
    ("now", 1_800_000_000 * NS),
])
def test_times_users_write(text: str, want: int) -> None:
    assert parse_time(text, now=1_800_000_000) == want


def test_a_bad_time_says_what_to_write() -> None:
    with pytest.raises(QueryError, match="ISO 8601"):
        parse_time("yesterday")


def test_the_terminal_progress_bar_setting_is_accepted(archive: Path) -> None:
    q = ArchiveQuery(archive)
    q.progress = True  # what `mirrorflow flows` sets when stderr is a terminal
    assert q.top(["dst port"], "bytes", "", None, None, 1).totals["flows"] == 36
