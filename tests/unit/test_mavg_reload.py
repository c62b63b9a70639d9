"""SIGHUP reload of moving averages: what `mirrorflow collect`'s handler does (request, then
applied on the collector's thread) with a fake clock — unchanged definitions keep their rates
and raised levels, changed ones start afresh."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.pipeline import Pipeline
from tests.unit.test_mavg import NS, T0, A, B, FakeRunner, flows, key4, scripts


def conf(tmp: Path, time: float = 2, threshold: float = 50000, b2n: float = 3) -> None:
    act, bk = scripts(tmp)
    mo = tmp / "mo" / "lab"
    mo.mkdir(parents=True, exist_ok=True)
    (mo / "mo.conf").write_text(json.dumps({
        "fwm": [{"name": "total", "time": 10, "fields": ["packets"]}],
        "mavg": [{"name": "pps", "time": time, "fields": ["src host", "packets"],
                  "overlimit": [{"name": "lvl1", "default": [threshold], "back2norm-time": b2n,
                                 "action-script": str(act), "back2norm-script": str(bk)}]}]}))


class Live:
    def __init__(self, tmp: Path) -> None:
        conf(tmp)
        self.cfg = CollectorConfig(mo_dir=tmp / "mo", stats_interval_s=0, notifications_dir=tmp / "notif")
        (tmp / "notif").mkdir()
        self.pipeline = Pipeline(self.cfg, load_runtime(self.cfg), live=False)
        assert self.pipeline.monitoring is not None
        self.mon = self.pipeline.monitoring
        self.runner = self.mon.averages.runner = FakeRunner()
        self.now = T0

    def run(self, seconds: float, rates: dict[int, float]) -> None:
        """10 ms flows per key at rates[key] packets/s, ticks every 100 ms."""
        for _ in range(round(seconds * 100)):
            self.now += NS // 100
            keys = np.array(list(rates))
            b = flows(np.full(len(keys), self.now, np.uint64), keys, np.array([round(r / 100) for r in rates.values()]))
            self.mon.monitor(b)
            if (self.now - T0) % (NS // 10) == 0:
                self.mon.averages.tick(self.now)

    def sighup(self) -> None:
        self.pipeline.request_reload()  # the signal handler's part
        self.pipeline.tick()  # the collector's thread, after its next batch
        self.mon.averages.tick(self.now)

    def events(self) -> list[tuple[str, str]]:
        return [(argv[0].rsplit("/", 1)[1], argv[5]) for argv, _ in self.runner.calls]


def test_unchanged_mavg_keeps_rates_and_raised_levels(tmp_path: Path) -> None:
    live = Live(tmp_path)
    live.run(5, {A: 100_000, B: 1000})
    avg = live.mon.averages.average("lab", "pps")
    rates = (avg.rate(key4(A), live.now)[0], avg.rate(key4(B), live.now)[0])
    assert live.events() == [("act.sh", "10.0.0.1")]
    notif = tmp_path / "notif" / "lab-pps-lvl1-10.0.0.1"
    assert notif.exists()
    # new threshold and back2norm-time, same name, time, fields and mem-m
    conf(tmp_path, threshold=60000, b2n=1)
    live.sighup()
    assert live.mon.generation == 2
    assert live.mon.averages.average("lab", "pps") is avg
    assert (avg.rate(key4(A), live.now)[0], avg.rate(key4(B), live.now)[0]) == rates
    (alert,) = live.mon.averages.state()[0]["alerts"]
    assert alert["key"] == ["10.0.0.1"] and alert["thresholds"] == [60000.0]
    assert alert["over_s"] > 3  # raised at 1.4 s, before the reload: still the same alert
    live.run(2, {A: 100_000, B: 1000})
    assert live.events() == [("act.sh", "10.0.0.1")] and notif.exists()  # not raised again
    # the new back2norm-time applies: 1 s after the rate falls below the new threshold
    live.run(4, {B: 1000})
    assert live.events() == [("act.sh", "10.0.0.1"), ("b2n.sh", "10.0.0.1")]
    assert not notif.exists()


def test_changed_definition_starts_afresh(tmp_path: Path) -> None:
    live = Live(tmp_path)
    live.run(5, {A: 100_000, B: 1000})
    old = live.mon.averages.average("lab", "pps")
    notif = tmp_path / "notif" / "lab-pps-lvl1-10.0.0.1"
    assert notif.exists()
    conf(tmp_path, time=3)  # another time constant: the old rates mean nothing for it
    live.sighup()
    avg = live.mon.averages.average("lab", "pps")
    assert avg is not old and avg.count == 0 and avg.rate(key4(A), live.now).tolist() == [0.0]
    # the raised level ends with its table: file removed, and its back2norm script runs so
    # that what the action did is undone
    assert live.mon.averages.state()[0]["alerts"] == [] and not notif.exists()
    assert live.events() == [("act.sh", "10.0.0.1"), ("b2n.sh", "10.0.0.1")]
    live.run(5, {A: 100_000, B: 1000})  # and is raised again by the new table
    assert live.events() == [("act.sh", "10.0.0.1"), ("b2n.sh", "10.0.0.1"), ("act.sh", "10.0.0.1")]
    assert notif.exists()
