"""Replay slicing (`ReplaySlicer`) of captures whose packets span years, jump backwards or carry
crazy timestamps: the work follows the packets, never the time they span, and the moving
averages read exactly what a plain-Python recomputation over the same gaps gives."""

from __future__ import annotations

import math
import resource
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring.alerts import ReplaySlicer
from tests.unit.test_mavg import NS, T0, A, B, Rig, flows, key4, level

STEP = NS // 10  # the slicer's default slice
YEAR = 365 * 86400 * NS
# the two packets of python-netflow's ipfix_softflowd_ether_tpl_then_data.pcap: 1994 and 2020
CORPUS = [759_538_800 * NS, 1_586_170_537 * NS + 1_000_000]
Y2106 = (2**32 - 1) * NS  # the last second a 32-bit pcap header can hold


def vm_size() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


@pytest.fixture
def capped() -> Iterator[None]:
    """The address space capped 1 GiB above what this process uses: slicing by span would
    fail with MemoryError here instead of filling the machine's memory (10 years of 0.1 s
    steps are 25 GB)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm_size() + 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def rig(tmp: Path, time: float = 5.0) -> Rig:
    return Rig(tmp, f'{{"name": "pps", "time": {time}, "fields": ["src host", "packets"], '
                    + level(tmp, "lvl1", "[50000]") + "}")


def slicer(r: Rig) -> tuple[ReplaySlicer, list[tuple[list[int], int]]]:
    """A slicer feeding the rig's averages like the `Monitor` does (every row matches); records
    each slice as (its receive times, the tick that followed)."""
    seen: list[tuple[list[int], int]] = []
    pending: list[list[int]] = []

    def monitor(b: FlowBatch) -> None:
        pending.append([int(x) for x in b["recv_time_ns"]])
        r.avgs.add("lab", b, np.arange(b.n))

    tick = r.avgs.tick

    def ticked(now: int | None = None) -> None:
        seen.append((pending.pop(), int(now)))
        tick(now)

    r.avgs.tick = ticked  # type: ignore[method-assign]
    return ReplaySlicer(monitor, r.avgs), seen


def grid_slices(times: list[int], step: int) -> list[tuple[list[int], int]]:
    """The slicing as it was before: a cut at every multiple of ``step`` between the first and
    the last packet, empty slices skipped. It allocates by span: small spans only."""
    t = np.array(times, np.int64)
    lo, hi = int(t.min()), int(t.max())
    if hi - lo <= step:
        return [(times, hi)]
    order = np.argsort(t, kind="stable")
    ts = t[order]
    cuts = np.searchsorted(ts, np.arange(lo - lo % step + step, hi + 1, step), side="left")
    out, start = [], 0
    for end in [*cuts.tolist(), len(ts)]:
        if end > start:
            out.append(([times[i] for i in order[start:end]], int(ts[end - 1])))
        start = end
    return out


class Twin:
    """Plain-Python moving average (`test_mavg`'s kernel twin): per key, N ← N·e^(−Δt/T) + V;
    a flow older than the key's last update adds without decay."""

    def __init__(self, time_s: float) -> None:
        self.t_ns = time_s * NS
        self.n: dict[int, tuple[float, int]] = {}

    def add(self, times: list[int], srcs: list[int], packets: list[int]) -> None:
        for t, k, v in sorted(zip(times, srcs, packets, strict=True), key=lambda x: x[0]):
            if k not in self.n:
                self.n[k] = (float(v), t)
                continue
            n, tp = self.n[k]
            self.n[k] = (n * math.exp(-(t - tp) / self.t_ns) + v, t) if t > tp else (n + v, tp)

    def rate(self, k: int, now: int) -> float:
        n, tp = self.n[k]
        return n * math.exp(-max(now - tp, 0) / self.t_ns) / (self.t_ns / NS)


# ---- the crash: work by span --------------------------------------------------------------


@pytest.mark.parametrize("times", [
    CORPUS,                                           # 26 years apart
    [0, T0],                                          # an exporter that stamps 0
    [T0, Y2106, T0 + STEP],                           # one packet in 2106
    [T0 + YEAR, T0 + YEAR + 1, T0, T0 + 5],           # the clock jumped back a year
    [2**64 - 1, T0],                                  # garbage beyond 2262 (reads as −1 ns)
], ids=["1994-2020", "zero", "2106", "backwards", "uint64-max"])
def test_a_batch_spanning_decades_replays_within_a_memory_limit(tmp_path: Path, times: list[int]) -> None:
    """In a child whose address space is capped 1 GiB above what it uses (the grid slicing
    asked for 61.6 GiB on the corpus capture and died with MemoryError)."""
    tmp = tmp_path / "child"
    tmp.mkdir()
    code = textwrap.dedent(f"""
        import resource
        from pathlib import Path
        import numpy as np
        from appliance.collector.monitoring.alerts import ReplaySlicer
        from tests.unit.test_mavg import Rig, flows, A
        from tests.unit.test_mavg_replay_span import vm_size

        r = Rig(Path({str(tmp)!r}), '{{"name": "pps", "time": 5, "fields": ["src host", "packets"]}}')
        s = ReplaySlicer(lambda b: r.avgs.add("lab", b, np.arange(b.n)), r.avgs)
        s(flows(np.array([1, 2 * 10**8], np.uint64), A, 1))  # compiles/loads every kernel first
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        cap = vm_size() + 2**30 if hard == resource.RLIM_INFINITY else min(vm_size() + 2**30, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        s(flows(np.array({times!r}, np.uint64), A, 7))
        print("ok", r.avgs.average("lab", "pps").count)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "1"]


@pytest.mark.parametrize("span_ns", [86400 * NS, 30 * 86400 * NS])
def test_work_follows_the_packets_not_their_span(tmp_path: Path, span_ns: int, capped: None) -> None:
    """A few packets a day or a month apart: no array of the span's 0.1 s steps (864 000 of
    them a day: the grid slicing's edges and cuts peaked at 28 MB)."""
    r = rig(tmp_path)
    s, seen = slicer(r)
    s(flows(np.array([T0, T0 + STEP // 2], np.uint64), A, 1))  # compile/load before measuring
    times = [T0 + STEP, T0 + span_ns // 2, T0 + span_ns // 2 + 1, T0 + span_ns]
    tracemalloc.start()
    try:
        s(flows(np.array(times, np.uint64), A, 1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024
    assert [t for t, _ in seen[1:]] == [[T0 + STEP], times[1:3], [T0 + span_ns]]


# ---- what the slicing is ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_slices_are_the_grid_steps_that_hold_packets(tmp_path: Path, seed: int) -> None:
    """Where the grid slicing could run (spans of seconds), the slices and ticks are its own:
    same packets per slice, same tick times, empty steps skipped; unsorted batches too."""
    rng = np.random.default_rng(seed)
    r = rig(tmp_path)
    s, seen = slicer(r)
    want: list[tuple[list[int], int]] = []
    base = T0 - 7 * STEP // 3
    for _ in range(20):
        n = int(rng.integers(1, 60))
        spread = int(rng.choice([STEP // 2, STEP, 3 * NS, 40 * NS]))
        times = [int(x) for x in base + rng.integers(0, spread, n)]
        times[0] = base if rng.random() < 0.3 else times[0]  # on a step boundary
        s(flows(np.array(times, np.uint64), A, 1))
        want += grid_slices(times, STEP)
        base += int(rng.integers(0, 5 * NS))
    assert seen == want


def test_slices_of_a_batch_spanning_years(tmp_path: Path, capped: None) -> None:
    r = rig(tmp_path)
    s, seen = slicer(r)
    s(flows(np.array([1, 2 * STEP], np.uint64), A, 1))  # compile/load before the cap
    seen.clear()
    times = [T0 + YEAR + 3, 0, T0 + 1, Y2106, T0 + STEP - 1, T0 + STEP, T0 + YEAR, 0]
    s(flows(np.array(times, np.uint64), A, 1))
    assert seen == [([0, 0], 0), ([T0 + 1, T0 + STEP - 1], T0 + STEP - 1), ([T0 + STEP], T0 + STEP),
                    ([T0 + YEAR, T0 + YEAR + 3], T0 + YEAR + 3), ([Y2106], Y2106)]


# ---- the averages over the gaps -----------------------------------------------------------


def test_rates_after_long_gaps_are_the_plain_python_recomputation(tmp_path: Path, capped: None) -> None:
    """Bursts separated by 3 s (partly decayed, T = 5 s), 400 days, a jump back of a day, a
    packet in 2106 and one at 0, in batches that each span a gap: every key's rate, read after
    every batch, 4 s later and 10 years later, equals the twin's."""
    rng = np.random.default_rng(7)
    r = rig(tmp_path, time=5.0)
    s, seen = slicer(r)
    avg = r.avgs.average("lab", "pps")
    twin = Twin(5.0)
    keys = [A, B, A + 7]

    def burst(t0: int, n: int = 40) -> list[int]:
        return [int(x) for x in t0 + np.sort(rng.integers(0, 2 * NS, n))]

    t1 = T0 + 400 * 86400 * NS
    batches = [
        burst(T0) + burst(T0 + 5 * NS),        # 3 s between the bursts
        burst(t1) + burst(T0 + 9 * NS),        # 400 days on, and back
        burst(t1 - 86400 * NS),                # a day before the last update: adds, no decay
        burst(t1 + 3 * NS) + [Y2106],          # one packet in 2106
        [0] + burst(t1 + 6 * NS),              # one at 0
        burst(Y2106 - 10 * NS) + burst(Y2106 + NS),
    ]
    ticks = 0
    for times in batches:
        src = [keys[i] for i in rng.integers(0, len(keys), len(times))]
        pk = [int(x) for x in rng.integers(1, 5000, len(times))]
        s(flows(np.array(times, np.uint64), np.array(src, np.uint64), np.array(pk, np.uint64)))
        twin.add(times, src, pk)
        ticks += len({t // STEP for t in times}) if max(times) - min(times) > STEP else 1
        for now in (max(times), max(times) + 4 * NS, max(times) + 10 * YEAR):
            for k in keys:
                if k in twin.n:
                    assert avg.rate(key4(k), now)[0] == pytest.approx(twin.rate(k, now), rel=1e-12)
    assert len(seen) == ticks
    assert avg.count == len(keys)


@pytest.mark.parametrize("gap_ns", [3 * NS, 10 * YEAR, Y2106 - T0])
def test_one_flow_after_a_gap_reads_the_closed_form(tmp_path: Path, gap_ns: int, capped: None) -> None:
    """5000 packets, a gap, 1000 packets (both in one batch): N = 5000·e^(−gap/T) + 1000, which
    after years is exactly 1000 (the rate 200/s), however long the gap."""
    r = rig(tmp_path, time=5.0)
    s, seen = slicer(r)
    s(flows(np.array([T0, T0 + gap_ns], np.uint64), A, np.array([5000, 1000], np.uint64)))
    got = r.avgs.average("lab", "pps").rate(key4(A), T0 + gap_ns)[0]
    assert got == pytest.approx((5000 * math.exp(-gap_ns / 5e9) + 1000) / 5, rel=1e-12)
    if gap_ns > YEAR:
        assert got == 200.0
    assert [t for _, t in seen] == [T0, T0 + gap_ns]
