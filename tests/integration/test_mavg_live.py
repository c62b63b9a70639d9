"""Moving averages live: ``mirrorflow collect --mo-dir … --notifications-dir …`` as a subprocess
receiving NetFlow v9 over 127.0.0.1 in real time, with real alert scripts. A 2 s burst from
one source trips the threshold; the action script runs once with xenoeye's arguments, the
notification file appears, and back2norm runs back2norm-time after the rate fell back
(T = 1 s, back2norm-time 2 s: about 15 s in all)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from appliance.netflow.encoder import V9Encoder, template_for
from tests.integration._live import free_port, poll

ATTACKER = "10.9.9.9"
TICK_S = 0.05  # one datagram per tick
BACKGROUND = 20  # sources at 2 kpps each (100 packets a tick)
BURST_PK = 10_000  # the attacker: 200 kpps
THRESHOLD = 50_000
SCRIPT = """#!/bin/sh
echo "$(date +%s.%N) $MIRRORFLOW_EVENT $*" >> {log}
"""


def _datagrams(enc: V9Encoder, attack: bool) -> list[bytes]:
    src = [0x0A010000 + j for j in range(BACKGROUND)] + ([0x0A090909] if attack else [])
    pk = [100] * BACKGROUND + ([BURST_PK] if attack else [])
    n = len(src)
    ms = time.time_ns() // 1_000_000
    cols = {"src_addr": np.array(src, np.uint64), "dst_addr": np.full(n, 0xC0000201, np.uint64),
            "src_port": np.full(n, 40000, np.uint64), "dst_port": np.full(n, 53, np.uint64),
            "proto": np.full(n, 17, np.uint64), "packets": np.array(pk, np.uint64),
            "bytes": np.array(pk, np.uint64) * np.uint64(80),
            "flow_start_ms": np.full(n, ms - 50, np.uint64), "flow_end_ms": np.full(n, ms, np.uint64)}
    return enc.encode(cols)


def test_burst_over_udp_runs_the_scripts_once(tmp_path: Path) -> None:
    log, notif, mo = tmp_path / "scripts.log", tmp_path / "notif", tmp_path / "mo" / "lab"
    for name in ("act.sh", "b2n.sh"):
        (tmp_path / name).write_text(SCRIPT.format(log=log))
        (tmp_path / name).chmod(0o755)
    mo.mkdir(parents=True)
    (mo / "mo.conf").write_text(json.dumps({
        "filter": "",
        "mavg": [{"name": "pps", "time": 1, "fields": ["src host", "packets"],
                  "overlimit": [{"name": "ddos", "default": [THRESHOLD], "back2norm-time": 2,
                                 "action-script": str(tmp_path / "act.sh"),
                                 "back2norm-script": str(tmp_path / "b2n.sh")}]}]}))
    port = free_port()
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    err = open(tmp_path / "collect.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{port}", "--mo-dir", str(mo.parent),
         "--notifications-dir", str(notif), "--api", "off", "--stats-interval", "0",
         "--templates", str(tmp_path / "templates.json")],
        stderr=err, text=True, env=env,
    )
    file = notif / f"lab-pps-ddos-{ATTACKER}"
    seen_file: list[str] = []
    try:
        assert poll(lambda: "listening on" in (tmp_path / "collect.log").read_text(), 20), \
            (tmp_path / "collect.log").read_text()
        assert notif.is_dir()  # --notifications-dir, created at start
        tpl = template_for(["src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets",
                            "flow_start_ms", "flow_end_ms"], 256)
        enc = V9Encoder([tpl], source_id=1, template_refresh_packets=20)
        # 1 s of background, 2 s with the burst, then background until back2norm (bounded: 10 s)
        ticks_before, ticks_burst, ticks_max = 20, 40, 260
        burst_end = 0.0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            start = time.monotonic()
            for i in range(ticks_max):
                attack = ticks_before <= i < ticks_before + ticks_burst
                for payload in _datagrams(enc, attack):
                    s.sendto(payload, ("127.0.0.1", port))
                if i == ticks_before + ticks_burst - 1:
                    burst_end = time.time()
                if file.exists() and not seen_file:
                    seen_file.append(file.read_text())
                if i > ticks_before + ticks_burst and log.exists() and "back2norm" in log.read_text():
                    break
                time.sleep(max(0.0, start + (i + 1) * TICK_S - time.monotonic()))
    finally:
        proc.terminate()
        proc.wait(20)
        err.close()
    lines = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    assert [ln[1] for ln in lines] == ["raised", "back2norm"], (lines, (tmp_path / "collect.log").read_text())
    raised, back = lines
    assert raised[2:7] == ["lab", "pps", "ddos", str(file), ATTACKER] and raised[8] == str(THRESHOLD)
    assert THRESHOLD <= int(raised[7]) < 200_000  # the rate when it crossed, per second
    # the notification file appeared, in xenoeye's format
    assert seen_file and seen_file[0].startswith(f" '{ATTACKER}'  ") and seen_file[0].split()[-1] == str(THRESHOLD)
    # back to normal: the ~200 k average decays below 50 k in T·ln(4) ≈ 1.4 s, then 2 s more
    below = burst_end + 1.0 * math.log(200_000 / THRESHOLD)
    assert below + 2.0 - 0.3 <= float(back[0]) <= below + 2.0 + 1.5, (burst_end, back)
    assert back[2:7] == raised[2:7] and int(back[7]) < THRESHOLD
    assert not file.exists()
    # background sources at 2 kpps never alerted
    assert "10.1.0." not in log.read_text()
