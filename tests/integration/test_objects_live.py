"""Live ``mirrorflow collect`` with monitoring objects: windows closed by the clock, SIGHUP reload."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from appliance.netflow.encoder import V5Encoder
from tests.integration._live import free_port, poll


def _send(port: int, n: int) -> None:
    rng = np.random.default_rng(n)
    cols = {"src_addr": rng.integers(1, 2**32 - 1, n, dtype=np.uint64), "proto": np.full(n, 6),
            "dst_port": np.full(n, 22), "packets": np.ones(n, dtype=np.uint64), "bytes": np.full(n, 100)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for payload in V5Encoder().encode(cols):
            s.sendto(payload, ("127.0.0.1", port))


def _flows_in(exp: Path, table: str) -> int:
    total = 0
    for p in exp.glob(f"{table}_*.sql"):
        for line in p.read_text().splitlines():
            if line.startswith("( to_timestamp("):
                total += int(line.split(",")[1].strip().rstrip(";").rstrip(")").strip())
    return total


def test_live_windows_and_sighup(tmp_path: Path) -> None:
    mo, exp = tmp_path / "mo", tmp_path / "exp"
    (mo / "ssh").mkdir(parents=True)
    (mo / "ssh" / "mo.conf").write_text('{"filter": "dst port 22", '
                                        '"fwm": [{"name": "n", "time": 1, "fields": ["flows"]}]}')
    port = free_port()
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{port}", "--mo-dir", str(mo),
         "--export-dir", str(exp), "--stats-interval", "0"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert poll(lambda: exp.is_dir(), 30)
        time.sleep(0.5)
        _send(port, 50)
        # the window closes by the clock, without further traffic
        assert poll(lambda: _flows_in(exp, "ssh_n") == 50), list(exp.iterdir())
        # an invalid configuration: refused, the running one stays
        (mo / "ssh" / "mo.conf").write_text('{"filter": "dst port", "fwm": []}')
        (mo / "all").mkdir()
        (mo / "all" / "mo.conf").write_text('{"fwm": [{"name": "n", "time": 1, "fields": ["flows"]}]}')
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        _send(port, 30)
        assert poll(lambda: _flows_in(exp, "ssh_n") == 80)
        assert not list(exp.glob("all_n_*.sql"))
        # a valid one: applied as a whole
        (mo / "ssh" / "mo.conf").write_text('{"filter": "dst port 23", '
                                            '"fwm": [{"name": "n", "time": 1, "fields": ["flows"]}]}')
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        _send(port, 20)
        assert poll(lambda: _flows_in(exp, "all_n") == 20)
        time.sleep(1.5)
        assert _flows_in(exp, "ssh_n") == 80
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "reload refused, the running configuration stays: 1 error(s)" in err
    assert "reloaded: 2 monitoring objects, 2 windows" in err
