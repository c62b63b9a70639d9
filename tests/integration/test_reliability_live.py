"""``mirrorflow collect`` as a process against hostile configuration and API input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.integration._live import free_port, get, wait_for

DEEP = "(" * 2000 + "port 80" + ")" * 2000


def _collect(tmp_path: Path, *extra: str, udp: int = 0) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    udp, http = udp or free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{udp}", "--api",
         f"127.0.0.1:{http}", "--stats-interval", "0", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{http}"
    wait_for(lambda: get(base + "/api/v1/status"))
    return proc, base, udp


def _error(url: str) -> tuple[int, str, dict]:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())
    raise AssertionError("expected an HTTP error")


def test_deep_filter_on_sighup_and_in_the_api(tmp_path: Path) -> None:
    mo = tmp_path / "mo"
    (mo / "all").mkdir(parents=True)
    conf = mo / "all" / "mo.conf"
    conf.write_text('{"filter": "", "fwm": [{"name": "t", "fields": ["flows"]}]}')
    proc, base, _udp = _collect(tmp_path, "--mo-dir", str(mo))
    try:
        conf.write_text('{"filter": "' + DEEP + '", "fwm": [{"name": "t", "fields": ["flows"]}]}')
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        conf.write_text('{"filter": "tcp", "fwm": [{"name": "t", "fields": ["flows"]}]}')
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: get(base + "/api/v1/status")["status"]["config"]["generation"] == 2)
        assert [o["name"] for o in get(base + "/api/v1/objects")["objects"]] == ["all"]
        status, ctype, doc = _error(base + "/api/v1/flows?filter="
                                    + urllib.parse.quote("(" * 1000 + "tcp" + ")" * 1000))
        assert (status, ctype) == (400, "application/json")
        assert doc["error"]["status"] == 400
        assert doc["error"]["message"].startswith("bad filter: filter:1:65: '(' and 'not' nest more than 64 deep")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "RecursionError" not in err
    assert "reload refused, the running configuration stays: 1 error(s):" in err
    assert f"{conf}:1:77: filter: '(' and 'not' nest more than 64 deep here" in err
    assert "reloaded: 1 monitoring objects" in err


HANG = """#!/bin/sh
setsid sleep 300 &
echo "$$ $!" > {pids}
sleep 300
"""


def test_sigterm_writes_the_last_window_and_does_not_wait_for_scripts(tmp_path: Path) -> None:
    from tests.integration.test_objects_live import _flows_in, _send

    mo, exp, pids = tmp_path / "mo", tmp_path / "exp", tmp_path / "pids"
    (mo / "all").mkdir(parents=True)
    (tmp_path / "hang.sh").write_text(HANG.format(pids=pids))
    (tmp_path / "hang.sh").chmod(0o755)
    (mo / "all" / "mo.conf").write_text(json.dumps({
        "fwm": [{"name": "n", "time": 3600, "fields": ["flows"]}],
        "mavg": [{"name": "pps", "time": 1, "fields": ["src host", "packets"],
                  "overlimit": [{"name": "any", "default": [1], "action-script": str(tmp_path / "hang.sh")}]}]}))
    proc, base, udp = _collect(tmp_path, "--mo-dir", str(mo), "--export-dir", str(exp),
                               "--notifications-dir", str(tmp_path / "notif"))
    try:
        _send(udp, 40)
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
        wait_for(lambda: get(base + "/api/v1/status")["status"]["totals"]["records"] == 40)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # the open hour-long window was written at stop, with every flow
    assert _flows_in(exp, "all_n") == 40
    script, child = (int(x) for x in pids.read_text().split())
    for pid in (script, child):
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert "killed: still running when the collector stopped" in err


def test_a_restart_loses_only_what_it_counts(tmp_path: Path) -> None:
    """v5 flows sent while the collector restarts are counted as a sequence gap; every other
    flow is in the exported windows (the hour window cut by the restart is written twice)."""
    import numpy as np

    from appliance.netflow.encoder import V5Encoder
    from tests.integration.test_objects_live import _flows_in

    mo, exp = tmp_path / "mo", tmp_path / "exp"
    (mo / "all").mkdir(parents=True)
    (mo / "all" / "mo.conf").write_text('{"fwm": [{"name": "n", "time": 3600, "fields": ["flows"]}]}')
    n = 3000
    cols = {"src_addr": np.arange(1, n + 1, dtype=np.uint64), "packets": np.ones(n, np.uint64),
            "bytes": np.full(n, 100, np.uint64)}
    datagrams = V5Encoder().encode(cols)
    count = [int.from_bytes(d[2:4], "big") for d in datagrams]  # records per datagram, from the wire
    a, b = len(datagrams) // 3, 2 * len(datagrams) // 3  # [a, b) are sent while nobody listens
    udp = free_port(socket.SOCK_DGRAM)
    args = ("--mo-dir", str(mo), "--export-dir", str(exp), "--templates", str(tmp_path / "templates.json"))

    def send(part: list[bytes]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in part:
                s.sendto(d, ("127.0.0.1", udp))

    proc, base, _ = _collect(tmp_path, *args, udp=udp)
    try:
        send(datagrams[:a])
        wait_for(lambda: get(base + "/api/v1/status")["status"]["totals"]["records"] == sum(count[:a]))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    send(datagrams[a:b])  # the collector is down
    proc, base, _ = _collect(tmp_path, *args, udp=udp)
    try:
        send(datagrams[b:])
        wait_for(lambda: get(base + "/api/v1/status")["status"]["totals"]["records"] == sum(count[b:]))
        (e,) = get(base + "/api/v1/exporters")["exporters"]
        status = get(base + "/api/v1/status")["status"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lost = sum(count[a:b])
    assert e["sequence"] == {"lost_packets": 0, "lost_flows": lost, "resets": 0}
    assert status["health"] == "degraded" and status["loss"]["sequence_gaps"]["total"] == lost
    assert len(list(exp.glob("all_n_*.sql"))) == 2  # one window, cut in two parts by the restart
    assert _flows_in(exp, "all_n") == n - lost
