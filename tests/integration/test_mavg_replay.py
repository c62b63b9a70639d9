"""End to end on a replayed capture with an attack burst: v9 export written with our encoder,
replayed by packet time through the collector with real alert scripts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.pipeline import Pipeline
from appliance.netflow.encoder import V9Encoder, template_for
from appliance.synth import udp_frame, write_pcap

T0 = 1_700_000_000
NS = 1_000_000_000
TICK_NS = NS // 10
ATTACKER = 0x0A090909  # 10.9.9.9
ATTACK = (200, 300)  # ticks of 100 ms: 20 s to 30 s


def capture(path: Path) -> None:
    """60 s: 20 sources at 1 kpps each, one flow record each per 100 ms; 10.9.9.9 at 200 kpps
    from 20 s to 30 s."""
    now = [T0 * NS]
    tpl = template_for(["src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets",
                        "flow_start_ms", "flow_end_ms"], 256)
    enc = V9Encoder([tpl], source_id=1, clock=lambda: now[0], boot_ns=(T0 - 3600) * NS)
    frames = []
    for i in range(600):
        now[0] = T0 * NS + i * TICK_NS
        src = [0x0A010000 + j for j in range(20)]
        pk = [100] * 20
        if ATTACK[0] <= i < ATTACK[1]:
            src.append(ATTACKER)
            pk.append(20_000)
        n = len(src)
        ms = now[0] // 1_000_000
        cols = {"src_addr": np.array(src, np.uint64), "dst_addr": np.full(n, 0xC0000201, np.uint64),
                "src_port": np.full(n, 40000, np.uint64), "dst_port": np.full(n, 53, np.uint64),
                "proto": np.full(n, 17, np.uint64), "packets": np.array(pk, np.uint64),
                "bytes": np.array(pk, np.uint64) * np.uint64(80),
                "flow_start_ms": np.full(n, ms - 100, np.uint64), "flow_end_ms": np.full(n, ms, np.uint64)}
        for payload in enc.encode(cols):
            frames.append((now[0], udp_frame("192.0.2.254", "127.0.0.1", 40000, 2055, payload)))
    write_pcap(path, frames)


SCRIPT = """#!/bin/sh
echo "$MIRRORFLOW_EVENT $MIRRORFLOW_TIME $*" >> {log}
if [ -f "$4" ]; then echo "file: $(cat "$4")" >> {log}; fi
"""


@pytest.fixture
def replayed(tmp_path: Path) -> dict:
    pcap = tmp_path / "attack.pcap"
    capture(pcap)
    log = tmp_path / "scripts.log"
    for name in ("act.sh", "b2n.sh"):
        (tmp_path / name).write_text(SCRIPT.format(log=log))
        (tmp_path / name).chmod(0o755)
    mo = tmp_path / "mo" / "lab"
    mo.mkdir(parents=True)
    (mo / "mo.conf").write_text(json.dumps({
        "filter": "",
        "fwm": [{"name": "attackers", "time": 1, "fields": ["packets desc", "src host"], "extended": True},
                {"name": "total", "time": 10, "fields": ["packets"]}],
        "mavg": [{"name": "pps", "time": 2, "fields": ["src host", "packets"],
                  "overlimit": [{"name": "ddos", "default": [50000], "back2norm-time": 5,
                                 "action-script": str(tmp_path / "act.sh"),
                                 "back2norm-script": str(tmp_path / "b2n.sh"), "ext": ["attackers"]}]}]}))
    cfg = CollectorConfig(mo_dir=tmp_path / "mo", export_dir=tmp_path / "exp", stats_interval_s=0,
                          notifications_dir=tmp_path / "notif")
    (tmp_path / "exp").mkdir()
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False)
    assert pipeline.monitoring is not None
    pipeline.collector.run_pcap([pcap])
    stats = pipeline.monitoring.averages.stats()
    pipeline.close()
    return {"tmp": tmp_path, "log": log.read_text().splitlines(), "stats": stats}


def test_action_script_runs_once_with_xenoeyes_arguments(replayed: dict) -> None:
    notif = replayed["tmp"] / "notif" / "lab-pps-ddos-10.9.9.9"
    raised = [line.split() for line in replayed["log"] if line.startswith("raised ")]
    assert len(raised) == 1
    # the 6th 200 kpps flow (at 20.5 s) lifts the T = 2 s average over 50 k: 20000·Σe^(−0.05j)/2
    assert raised[0][1] == str(T0 + 20)
    assert raised[0][2:7] == ["lab", "pps", "ddos", str(notif), "10.9.9.9"]
    assert int(raised[0][7]) == round(20000 * sum(np.exp(-0.05 * j) for j in range(6)) / 2)
    assert raised[0][8] == "50000"
    # the notification file existed when the script ran, in xenoeye's format
    assert re.fullmatch(r"file:  '10\.9\.9\.9'  \d+ 50000", replayed["log"][1])
    assert replayed["stats"]["alerts_raised"] == 1


def test_back2norm_after_back2norm_time_and_the_file_goes(replayed: dict) -> None:
    back = [line.split() for line in replayed["log"] if line.startswith("back2norm ")]
    assert len(back) == 1
    # last attack flow at 29.9 s: the ~205 k average falls below 50 k 2·ln(4.1) ≈ 2.8 s later, + 5 s
    assert back[0][1] == str(T0 + 37)
    assert back[0][2:7] == ["lab", "pps", "ddos", str(replayed["tmp"] / "notif" / "lab-pps-ddos-10.9.9.9"), "10.9.9.9"]
    assert int(back[0][7]) < 50000
    assert not any((replayed["tmp"] / "notif").iterdir())
    assert replayed["stats"]["scripts_started"] == 2


def test_extended_window_fills_only_while_raised(replayed: dict) -> None:
    exp = replayed["tmp"] / "exp"
    times = sorted(int(p.stem.rsplit("_", 1)[1]) for p in exp.glob("lab_attackers_*.sql"))
    assert times == list(range(T0 + 21, T0 + 39))  # on after 20.5 s, off at 37.7 s
    with_attacker = [t for t in times if "'10.9.9.9'" in (exp / f"lab_attackers_{t}.sql").read_text()]
    assert with_attacker == list(range(T0 + 21, T0 + 31))
    assert len(list(exp.glob("lab_total_*.sql"))) == 6  # the ordinary window ran all along
