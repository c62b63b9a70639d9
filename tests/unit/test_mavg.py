"""Moving averages with a fake clock: step response, levels, back-to-normal, limits, underlimit."""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.config.averages import MavgSpec, format_key, parse_key
from appliance.collector.config.objects import ConfigErrors, load_objects
from appliance.collector.fields import parse_field
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring.alerts import MovingAverages
from appliance.collector.monitoring.mavg import MovingAverage
from appliance.netflow.registry import REGISTRY

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
A = int(ipaddress.IPv4Address("10.0.0.1"))
B = int(ipaddress.IPv4Address("10.0.0.2"))


def flows(times: np.ndarray, src: int | np.ndarray, packets: int | np.ndarray, dport: int = 53) -> FlowBatch:
    n = len(times)
    cols = {}
    pk = np.broadcast_to(np.asarray(packets, dtype=np.uint64), (n,))
    for name, arr in (("src_addr", src), ("packets", pk), ("bytes", pk * np.uint64(100)),
                      ("dst_port", dport), ("proto", 17), ("recv_time_ns", times)):
        cols[REGISTRY[name].column] = np.array(np.broadcast_to(np.asarray(arr, dtype=np.uint64), (n,)))
    return FlowBatch(n, cols, {})


def spec(time: float = 5.0, fields: tuple[str, ...] = ("src host", "packets")) -> MavgSpec:
    return MavgSpec("pps", time, tuple(parse_field(f) for f in fields))


def key4(ip: int) -> tuple[int, int]:
    return (0, 0xFFFF_0000_0000 | ip)


class FakeRunner:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def run(self, argv, env, after=None, report=None):
        self.calls.append((list(argv), dict(env)))

    def stats(self) -> dict[str, int]:
        return {"started": len(self.calls)}

    def close(self, wait: bool = True) -> None:
        pass


class Rig:
    """One object "lab" with the given mavg, fed at a constant rate per key, ticked every 100 ms."""

    def __init__(self, tmp: Path, mavg: str, extra_fwm: str = "") -> None:
        mo = tmp / "mo" / "lab"
        mo.mkdir(parents=True)
        (mo / "mo.conf").write_text('{"filter": "", "fwm": [{"name": "ext1", "fields": ["octets", "src host"],'
                                    f' "extended": true}}{extra_fwm}], "mavg": [{mavg}]}}')
        self.objects = load_objects(tmp / "mo")
        self.ext: list[tuple[str, str, bool]] = []
        self.runner = FakeRunner()
        self.notif = tmp / "notif"
        self.notif.mkdir()
        self.avgs = MovingAverages(self.objects, lambda m, w, on: self.ext.append((m, w, on)), self.notif, self.runner)
        self.now = T0

    def run(self, seconds: float, rates: dict[int, float], step_ms: int = 10) -> None:
        """Each key gets rates[key] packets/s, one flow per key every step_ms; tick every 100 ms."""
        end = self.now + int(seconds * NS)
        while self.now < end:
            self.now += step_ms * 1_000_000
            keys = [k for k, r in rates.items() if r > 0]
            if keys:
                b = flows(np.full(len(keys), self.now), np.array(keys),
                          np.array([round(rates[k] * step_ms / 1000) for k in keys]))
                self.avgs.add("lab", b, np.arange(b.n))
            if (self.now - T0) % (100 * 1_000_000) == 0:
                self.avgs.tick(self.now)

    def scripts(self, name: str) -> list[list[str]]:
        return [argv[1:] for argv, _ in self.runner.calls if argv[0].endswith(name)]


# ---- the average itself ---------------------------------------------------------------------


def feed_step(avg: MovingAverage, rate: float, until_s: float, first: float = 0.0, step_ns: int = 1_000_000) -> None:
    t = T0 + np.arange(0, int(until_s * NS), step_ns, dtype=np.int64)
    pk = np.full(len(t), rate * step_ns / NS)
    pk[0] += first
    avg.add(flows(t.astype(np.uint64), A, pk.round().astype(np.uint64)), np.arange(len(t)))


@pytest.mark.parametrize("t", [1, 3, 5, 7])
def test_step_response_is_the_closed_form(t: int) -> None:
    avg = MovingAverage(spec(5.0), "lab")
    feed_step(avg, 300_000, t)
    got = avg.rate(key4(A), T0 + t * NS)[0]
    assert got == pytest.approx(300_000 * (1 - math.exp(-t / 5)), rel=2e-3)


def test_xenoeyes_figures() -> None:
    """58 k, 138 k, 191 k, 227 k after 1, 3, 5, 7 s: the closed form R(1 − e^(−t/T)) gives 54 k,
    135 k, 190 k, 226 k; xenoeye's readings are that curve 75 ms later — its first flow (a new key
    starts at N = V) carried the first 75 ms of the step (22.5 k packets)."""
    for t, want in ((1, 58), (3, 138), (5, 191), (7, 227)):
        avg = MovingAverage(spec(5.0), "lab")
        feed_step(avg, 300_000, t, first=300_000 * 0.075)
        assert round(avg.rate(key4(A), T0 + t * NS)[0] / 1000) == want
        # and xenoeye's linear step N ← N − (Δt/T)·N + V reads the same with flows this dense
        n, dt = 300_000 * 0.075, 0.001
        for _ in range(int(t / dt) - 1):
            n = n - dt / 5 * n + 300_000 * dt
        assert round(n / 5 / 1000) == want


def test_exact_decay_does_not_depend_on_how_flows_are_spaced() -> None:
    """One flow then silence: the rate decays as e^(−t/T) whether read at once or after many
    updates; xenoeye's linear form would give (1 − Δt/T)^k and reset after T."""
    avg = MovingAverage(spec(5.0), "lab")
    avg.add(flows(np.array([T0], np.uint64), A, 5000), np.arange(1))
    for k in range(1, 8):  # zero-packet flows every second keep updating the key
        avg.add(flows(np.array([T0 + k * NS], np.uint64), A, 0), np.arange(1))
    assert avg.rate(key4(A), T0 + 7 * NS)[0] == pytest.approx(1000 * math.exp(-7 / 5), rel=1e-9)


def test_kernel_matches_a_plain_python_twin() -> None:
    rng = np.random.default_rng(5)
    avg = MovingAverage(spec(2.0, ("src host", "dst port", "packets", "octets")), "lab")
    oracle: dict[tuple, tuple[list[float], int]] = {}
    t = T0
    for _ in range(30):
        n = 500
        times = t + np.sort(rng.integers(0, NS // 3, n))
        t = int(times[-1])
        src = 0x0A000000 + rng.integers(0, 40, n)
        port = rng.choice([53, 80, 443], n)
        pk = rng.integers(0, 1000, n)
        b = flows(times.astype(np.uint64), src, pk)
        b._cols[REGISTRY["dst_port"].column] = port.astype(np.uint64)
        rows = np.flatnonzero(rng.random(n) < 0.7)
        avg.add(b, rows)
        for i in rows:
            k = (int(src[i]), int(port[i]))
            v = [float(pk[i]), float(pk[i] * 100)]
            if k not in oracle:
                oracle[k] = (v, int(times[i]))
            else:
                old, tp = oracle[k]
                d = math.exp(-(int(times[i]) - tp) / 2e9) if times[i] > tp else 1.0
                oracle[k] = ([o * d + x for o, x in zip(old, v)], max(tp, int(times[i])))
    assert avg.count == len(oracle)
    for (s, p), (v, tp) in oracle.items():
        d = math.exp(-(t - tp) / 2e9)
        got = avg.rate((0, 0xFFFF_0000_0000 | s, p), t)
        assert got == pytest.approx([x * d / 2 for x in v], rel=1e-9)


def test_memory_bound_evicts_idle_keys_first_then_counts_refusals() -> None:
    s = MavgSpec("pps", 1.0, spec().fields, mem_m=4096 * 41 / 2**20)  # room for 4096 slots
    avg = MovingAverage(s, "lab")
    assert avg.capacity == 3072
    old = np.arange(3000) + 0x0B000000
    avg.add(flows(np.full(3000, T0, np.uint64), old, 1), np.arange(3000))
    new = np.arange(3000) + 0x0C000000  # 2 s later: the old keys are idle for longer than T
    avg.add(flows(np.full(3000, T0 + 2 * NS, np.uint64), new, 1), np.arange(3000))
    assert avg.count == 3000 and avg.evicted == 3000 and avg.refused == 0
    more = np.arange(1000) + 0x0D000000  # nothing idle now: 72 fit, the rest is refused
    avg.add(flows(np.full(1000, T0 + 2 * NS + 1, np.uint64), more, 1), np.arange(1000))
    assert avg.count == 3072 and avg.refused == 1000 - 72
    assert avg.memory_bytes <= s.mem_m * 2**20


def test_keys_round_trip_as_text() -> None:
    fields = tuple(parse_field(f) for f in ("src host", "dst port", "src mac", "dst host6"))
    words = parse_key(fields, ["'10.1.2.3'", "443", "02:aa:bb:cc:dd:ee", "2001:db8::1"])
    assert format_key(fields, words) == ["10.1.2.3", "443", "02:aa:bb:cc:dd:ee", "2001:db8::1"]


# ---- levels, scripts, files -----------------------------------------------------------------

SCRIPT = "#!/bin/sh\nexit 0\n"


def scripts(tmp: Path) -> tuple[Path, Path]:
    act, b2n = tmp / "act.sh", tmp / "b2n.sh"
    for p in (act, b2n):
        p.write_text(SCRIPT)
        p.chmod(0o755)
    return act, b2n


def level(tmp: Path, name: str, default: str, b2n: float = 3, ext: str = '["ext1"]', under: bool = False,
          limits: str | None = None) -> str:
    act, bk = scripts(tmp)
    extra = f', "limits": "{limits}"' if limits else ""
    return (f'"{"underlimit" if under else "overlimit"}": [{{"name": "{name}", "default": {default}, '
            f'"back2norm-time": {b2n}, "action-script": "{act}", "back2norm-script": "{bk}", '
            f'"ext": {ext}{extra}}}]')


def test_raise_once_with_xenoeye_arguments_file_and_ext(tmp_path: Path) -> None:
    rig = Rig(tmp_path, '{"name": "pps", "time": 5, "fields": ["src host", "packets"], '
                        + level(tmp_path, "lvl1", "[50000]") + "}")
    rig.run(10, {A: 100_000, B: 1000})
    assert rig.scripts("act.sh") == [["lab", "pps", "lvl1", str(rig.notif / "lab-pps-lvl1-10.0.0.1"),
                                      "10.0.0.1", rig.scripts("act.sh")[0][5], "50000"]]
    value = int(rig.scripts("act.sh")[0][5])
    assert 50_000 <= value < 52_000  # the rate when it crossed
    env = rig.runner.calls[0][1]
    assert env["MIRRORFLOW_EVENT"] == "raised" and env["MIRRORFLOW_KEY_SRC_HOST"] == "10.0.0.1"
    assert set(env) - {"PATH", "LANG"} == {k for k in env if k.startswith("MIRRORFLOW_")}
    text = (rig.notif / "lab-pps-lvl1-10.0.0.1").read_text()
    assert text.startswith(" '10.0.0.1'  ") and text.endswith(" 50000\n")
    # rewritten every 3 s with the current rate: the last time at ≥ 7 s, when the average was ≥ 75 k
    assert 75_000 < int(text.split()[1]) < 86_500
    assert rig.ext == [("lab", "ext1", True)]
    st = rig.avgs.state()[0]
    assert st["alerts"][0]["key"] == ["10.0.0.1"] and st["alerts"][0]["back2norm_in_s"] is None
    assert st["top"][0]["key"] == ["10.0.0.1"] and st["top"][0]["levels"][0]["raised"]


def test_back_to_normal_after_back2norm_time(tmp_path: Path) -> None:
    rig = Rig(tmp_path, '{"name": "pps", "time": 5, "fields": ["src host", "packets"], '
                        + level(tmp_path, "lvl1", "[50000]", b2n=4) + "}")
    rig.run(20, {A: 100_000})
    stop = rig.now
    r0 = rig.avgs.average("lab", "pps").rate(key4(A), stop)[0]
    below = stop + 5 * math.log(r0 / 50_000) * NS  # the e^(−t/T) decay crosses the threshold
    while not rig.scripts("b2n.sh"):
        rig.run(0.1, {})
        if rig.now < below + 4 * NS:
            assert not rig.scripts("b2n.sh")
            assert (rig.notif / "lab-pps-lvl1-10.0.0.1").exists()
        assert rig.now < below + 5 * NS
    assert rig.now - (below + 4 * NS) <= 0.2 * NS
    assert not (rig.notif / "lab-pps-lvl1-10.0.0.1").exists()
    assert rig.ext == [("lab", "ext1", True), ("lab", "ext1", False)]
    args = rig.scripts("b2n.sh")[0]
    assert args[:5] == ["lab", "pps", "lvl1", str(rig.notif / "lab-pps-lvl1-10.0.0.1"), "10.0.0.1"]
    assert int(args[5]) < 50_000 and args[6] == "50000"
    assert rig.runner.calls[-1][1]["MIRRORFLOW_EVENT"] == "back2norm"


def test_hysteresis_dips_shorter_than_back2norm_time_change_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path, '{"name": "pps", "time": 2, "fields": ["src host", "packets"], '
                        + level(tmp_path, "lvl1", "[50000]", b2n=5) + "}")
    for _ in range(5):  # 4 s over, 3 s under: the countdown starts and is reset each time
        rig.run(4, {A: 80_000})
        rig.run(3, {A: 20_000})
        alert = rig.avgs.state()[0]["alerts"][0]
        assert alert["back2norm_in_s"] is not None and alert["back2norm_in_s"] > 0
    assert len(rig.scripts("act.sh")) == 1 and not rig.scripts("b2n.sh")
    rig.run(8, {A: 20_000})
    assert len(rig.scripts("b2n.sh")) == 1 and len(rig.scripts("act.sh")) == 1


def test_per_key_limits_file(tmp_path: Path) -> None:
    (tmp_path / "mo" / "lab").mkdir(parents=True)
    (tmp_path / "mo" / "lab" / "limits.csv").write_text("# key,threshold\n'10.0.0.1', 500000\n10.0.0.3,-\n")
    mo = tmp_path / "mo" / "lab"
    (mo / "mo.conf").write_text('{"fwm": [{"name": "ext1", "fields": ["octets"], "extended": true}], '
                                '"mavg": [{"name": "pps", '
                                '"time": 2, "fields": ["src host", "packets"], '
                                + level(tmp_path, "lvl1", "[50000]", limits="limits.csv") + "}]}")
    runner = FakeRunner()
    avgs = MovingAverages(load_objects(tmp_path / "mo"), None, None, runner)
    c = A + 2
    t = T0
    for _ in range(1000):
        t += 10_000_000
        avgs.add("lab", flows(np.full(3, t, np.uint64), np.array([A, B, c]), 1000), np.arange(3))  # 100 kpps each
        avgs.tick(t)
    raised = [argv[5] for argv, _ in runner.calls]
    assert raised == ["10.0.0.2"]  # A's own limit is 500 k; c is not checked; B has the default
    st = avgs.state()[0]
    limits = {tuple(k["key"]): k["levels"][0]["thresholds"][0] for k in st["top"]}
    assert limits == {("10.0.0.1",): 500000.0, ("10.0.0.2",): 50000.0, ("10.0.0.3",): None}


def test_several_levels(tmp_path: Path) -> None:
    act, b2n = scripts(tmp_path)
    levels = ", ".join(f'{{"name": "{n}", "default": [{v}], "back2norm-time": 2, "action-script": "{act}", '
                       f'"back2norm-script": "{b2n}"}}' for n, v in (("warn", 50000), ("crit", 150000)))
    rig = Rig(tmp_path, f'{{"name": "pps", "time": 2, "fields": ["src host", "packets"], "overlimit": [{levels}]}}')
    rig.run(10, {A: 100_000})
    assert [a[2] for a in rig.scripts("act.sh")] == ["warn"]
    rig.run(10, {A: 300_000})
    assert [a[2] for a in rig.scripts("act.sh")] == ["warn", "crit"]
    rig.run(6, {A: 100_000})
    assert [a[2] for a in rig.scripts("b2n.sh")] == ["crit"]
    rig.run(10, {})
    assert [a[2] for a in rig.scripts("b2n.sh")] == ["crit", "warn"]
    assert sorted(p.name for p in rig.notif.iterdir()) == []


def test_ext_goes_off_only_when_every_key_is_back(tmp_path: Path) -> None:
    rig = Rig(tmp_path, '{"name": "pps", "time": 1, "fields": ["src host", "packets"], '
                        + level(tmp_path, "lvl1", "[50000]", b2n=2) + "}")
    rig.run(5, {A: 100_000, B: 100_000})
    rig.run(10, {B: 100_000})  # A is back to normal, B still over
    assert len(rig.scripts("b2n.sh")) == 1 and rig.ext == [("lab", "ext1", True)]
    rig.run(10, {})
    assert rig.ext == [("lab", "ext1", True), ("lab", "ext1", False)]


def test_several_counters_each_with_its_threshold(tmp_path: Path) -> None:
    rig = Rig(tmp_path, '{"name": "rates", "time": 2, "fields": ["src host", "packets", "bits"], '
                        + level(tmp_path, "big", "[null, 8e7]") + "}")
    rig.run(5, {A: 80_000, B: 150_000})  # bits = packets × 800: A 64 Mbit/s, B 120 Mbit/s
    assert [a[4] for a in rig.scripts("act.sh")] == ["10.0.0.2"]
    env = rig.runner.calls[0][1]
    assert env["MIRRORFLOW_COUNTER"] == "bits" and env["MIRRORFLOW_LIMIT"] == "80000000"
    rates = dict(x.split("=") for x in env["MIRRORFLOW_RATES"].split())
    assert (int(rates["bits"]) == int(rates["packets"]) * 800
            or abs(int(rates["bits"]) - int(rates["packets"]) * 800) < 800)


def test_underlimit(tmp_path: Path) -> None:
    rig = Rig(tmp_path, '{"name": "pps", "time": 2, "fields": ["src host", "packets"], '
                        + level(tmp_path, "low", "[10000]", b2n=3, under=True) + "}")
    rig.run(10, {A: 50_000})
    assert not rig.scripts("act.sh")
    rig.run(2, {A: 1000})  # 50 k → 1 k: the average falls below 10 k after T·ln(49/9) ≈ 3.4 s
    assert not rig.scripts("act.sh")
    rig.run(3, {A: 1000})
    assert [a[:5] for a in rig.scripts("act.sh")] == [["lab", "pps", "low", str(rig.notif / "lab-pps-low-10.0.0.1"),
                                                        "10.0.0.1"]]
    assert (rig.notif / "lab-pps-low-10.0.0.1").exists()
    rig.run(10, {A: 50_000})
    assert len(rig.scripts("b2n.sh")) == 1 and not (rig.notif / "lab-pps-low-10.0.0.1").exists()


def test_dump_files(tmp_path: Path) -> None:
    rig = Rig(tmp_path, '{"name": "pps", "time": 2, "dump": 1, "fields": ["src host", "packets"], '
                        + level(tmp_path, "lvl1", "[50000]") + "}")
    mo = tmp_path / "mo" / "lab"
    (mo / "pps.d").touch()
    (mo / "pps.a").touch()
    rig.run(3.05, {A: 100_000, B: 1000})
    lines = (mo / "pps.dump").read_text().splitlines()
    assert lines[1].startswith("mem used/avail: ") and lines[1].endswith(" bytes)")
    assert lines[2].startswith(" '10.0.0.1'  :: ") and lines[2].endswith(" (50000 )[]")
    assert lines[3].startswith(" '10.0.0.2'  :: ")
    assert (mo / "pps.adump").read_text().count("mem used/avail") == 3


@pytest.mark.parametrize(("mavg", "message"), [
    ('{"name": "x", "fields": ["src host", "packets", "octets"], "overlimit": [{"default": [1]}]}',
     "one threshold per counter"),
    ('{"name": "x", "fields": ["src host"], "overlimit": [{"default": [1]}]}', "at least one counter"),
    ('{"name": "x", "fields": ["src host", "packets"], "overlimit": [{"default": [1], "action-script": "nope.sh"}]}',
     "not an executable file"),
    ('{"name": "x", "fields": ["src host", "packets"], "overlimit": [{"default": [1], "ext": ["other/w"]}]}',
     "no such window"),
    ('{"name": "x", "fields": ["src host", "packets"], "overlimit": [{"default": [1], "limits": "l.csv"}]}',
     "l.csv:2:1: key"),
    ('{"name": "x", "fields": ["src host", "packets"], "overlimit": [{"name": "a b", "default": 1}]}',
     "level name"),
])
def test_config_errors(tmp_path: Path, mavg: str, message: str) -> None:
    mo = tmp_path / "mo" / "lab"
    mo.mkdir(parents=True)
    (mo / "l.csv").write_text("10.0.0.1,5\nnot-an-ip,5\n")
    (mo / "mo.conf").write_text(f'{{"mavg": [{mavg}]}}')
    with pytest.raises(ConfigErrors) as exc:
        load_objects(tmp_path / "mo")
    assert message in str(exc.value)


# ---- underlimit keys listed in a limits file: tracked from the start ------------------------


def underlimit_rig(tmp: Path, listed: str = "10.0.0.1,10000\n10.0.0.3,10000\n") -> Rig:
    (tmp / "expected.csv").write_text(listed)
    return Rig(tmp, '{"name": "pps", "time": 2, "fields": ["src host", "packets"], '
                    + level(tmp, "gone", "[null]", b2n=2, under=True, limits=str(tmp / "expected.csv")) + "}")


def test_underlimit_key_that_never_shows_up_alerts_one_t_after_start(tmp_path: Path) -> None:
    rig = underlimit_rig(tmp_path)
    c = A + 2  # 10.0.0.3: listed, never sends anything
    avg = rig.avgs.average("lab", "pps")
    assert avg.count == 2 and avg.rate(key4(c), T0).tolist() == [0.0]
    rig.run(1.9, {A: 50_000, B: 1000})  # B is not listed and the default is null: never checked
    assert not rig.scripts("act.sh")
    rig.run(0.3, {A: 50_000, B: 1000})  # T = 2 s after the first tick (0.1 s)
    assert rig.scripts("act.sh") == [["lab", "pps", "gone", str(rig.notif / "lab-pps-gone-10.0.0.3"), "10.0.0.3",
                                      "0", "10000"]]
    assert rig.runner.calls[0][1]["MIRRORFLOW_DIRECTION"] == "under"
    assert (rig.notif / "lab-pps-gone-10.0.0.3").read_text() == " '10.0.0.3'  0 10000\n"
    # it shows up: back to normal after back2norm-time; the listed key that sends never alerted
    rig.run(6, {A: 50_000, c: 50_000})
    assert [a[4] for a in rig.scripts("b2n.sh")] == ["10.0.0.3"]
    assert [a[4] for a in rig.scripts("act.sh")] == ["10.0.0.3"]


def test_tracked_keys_are_never_evicted_and_follow_a_reload(tmp_path: Path) -> None:
    rig = underlimit_rig(tmp_path, "10.0.0.3,10000\n")
    avg = rig.avgs.average("lab", "pps")
    rig.run(0.5, {A: 1000, B: 1000})
    avg.evict_idle(rig.now + 10 * NS, 1.0)  # every key idle: A and B go, the listed key stays
    assert avg.count == 1 and avg.slot(key4(A + 2)) >= 0 and avg.evicted == 2
    # a reload that lists another key: it is tracked too (and the old one is no longer pinned)
    (tmp_path / "expected.csv").write_text("10.0.0.4,10000\n")
    rig.avgs.replace(load_objects(tmp_path / "mo"))
    assert rig.avgs.average("lab", "pps") is avg
    assert avg.slot(key4(A + 3)) >= 0 and avg.count == 2
    avg.evict_idle(rig.now + 10 * NS, 1.0)
    assert avg.slot(key4(A + 2)) < 0 and avg.slot(key4(A + 3)) >= 0


def test_refused_keys_are_logged_at_most_once_a_minute(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mo = tmp_path / "mo" / "lab"
    mo.mkdir(parents=True)
    (mo / "mo.conf").write_text('{"mavg": [{"name": "pps", "time": 1, "mem-m": %r, "fields": ["src host", "packets"]}]}'
                                % (4096 * 41 / 2**20))  # room for 3072 keys
    avgs = MovingAverages(load_objects(tmp_path / "mo"), None, None, FakeRunner())
    t = T0
    caplog.set_level("WARNING", logger="mirrorflow.mavg")
    for i in range(130):  # 130 s, 100 new keys a second while all 3072 stay busy
        t += NS
        busy = np.arange(3072) + 0x0B000000
        avgs.add("lab", flows(np.full(3072, t, np.uint64), busy, 1), np.arange(3072))
        new = np.arange(100) + 0x0C000000 + i * 100
        avgs.add("lab", flows(np.full(100, t, np.uint64), new, 1), np.arange(100))
        avgs.tick(t)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 3, lines  # at the first refusal, then after 60 s and 120 s
    assert lines[0].startswith("lab pps: the key table is full (mem-m 0.16")
    assert "3072 keys): 100 new keys refused;" in lines[0]
    assert "6000 new keys refused in the last 60 s" in lines[1]
    assert avgs.stats()["mavg_refused_keys"] == 13000


def test_check_config_counts_moving_averages_and_collect_takes_notifications_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from appliance.cli import main
    from appliance.collector.cli import add_collect_parser, config_from_args

    mo = tmp_path / "mo" / "lab"
    mo.mkdir(parents=True)
    (mo / "mo.conf").write_text('{"mavg": [{"name": "pps", "fields": ["src host", "packets"], "overlimit": '
                                '[{"default": [1]}, {"default": [2]}]}, {"name": "bps", "fields": ["bits"]}]}')
    assert main(["check-config", "--mo-dir", str(tmp_path / "mo")]) == 0
    assert ", 2 moving averages (2 levels)" in capsys.readouterr().out
    ap = argparse.ArgumentParser()
    add_collect_parser(ap.add_subparsers())
    args = ap.parse_args(["collect", "--notifications-dir", str(tmp_path / "n")])
    assert config_from_args(args).notifications_dir == tmp_path / "n"
    assert config_from_args(ap.parse_args(["collect"])).notifications_dir == Path("/var/lib/mirrorflow/notifications")
