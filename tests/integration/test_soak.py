"""Soak: ``mirrorflow collect`` into PostgreSQL for a long while (MIRRORFLOW_SOAK_S: 120 s in the
suite, 600 s for the full soak) with PostgreSQL restarts, a collector restart, SIGHUPs, junk and
template floods interleaved.
Afterwards the database holds exactly what the generator sent minus what the collector counted
as lost, and that loss is exactly the flows sent while the collector was down.

Run: ``MIRRORFLOW_SOAK_S=600 scripts/test tests/integration/test_soak.py`` (the 10-minute soak).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from appliance.netflow.encoder import V5Encoder
from appliance.netflow.header import SET_HEADER_STRUCT, V9_HEADER_STRUCT
from tests.integration._live import free_port, get, wait_for

SOAK_S = float(os.environ.get("MIRRORFLOW_SOAK_S", "120"))
FLOWS_PER_S = 2000
DOWN_S = 3.0  # the collector restart: datagrams sent meanwhile are lost (and counted)


def _flood(k: int) -> list[bytes]:
    """The k-th template flood: one template-only v9 datagram (sequence k) per source id 100..124,
    60 templates each (from 127.0.0.2, so the v5 exporter's counters stay its own)."""
    body = b"".join(struct.pack("!HHHHHH", 256 + t, 2, 8, 4, 1, 4) for t in range(60))
    tset = SET_HEADER_STRUCT.pack(0, 4 + len(body)) + body
    return [V9_HEADER_STRUCT.pack(9, 60, 0, 0, k, 100 + sid) + tset for sid in range(25)]


def _junk(rng: np.random.Generator, n: int) -> list[bytes]:
    """Random datagrams whose first byte (0xFF) is no NetFlow version: counted, never decoded."""
    return [b"\xff" + rng.integers(0, 256, int(rng.integers(0, 1400)), dtype=np.uint8).tobytes() for _ in range(n)]


def _start(tmp_path: Path, dsn: str, udp: int, http: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    with log.open("a") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{udp}", "--api",
             f"127.0.0.1:{http}", "--mo-dir", str(tmp_path / "mo"), "--db", dsn, "--spool-dir", str(tmp_path / "spool"),
             "--templates", str(tmp_path / "templates.json"), "--stats-interval", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )
    wait_for(lambda: get(f"http://127.0.0.1:{http}/api/v1/status"), 60)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 0


@pytest.mark.slow
@pytest.mark.postgres
def test_soak(tmp_path: Path, postgres_server) -> None:
    postgres_server.start()
    dsn = postgres_server.create_database()
    (tmp_path / "mo" / "all").mkdir(parents=True)
    (tmp_path / "mo" / "all" / "mo.conf").write_text('{"fwm": [{"name": "n", "time": 5, "fields": ["flows"]}]}')
    udp, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    log = tmp_path / "collect.log"
    base = f"http://127.0.0.1:{http}"
    rng = np.random.default_rng(13)
    enc = V5Encoder()
    sent = lost_expected = sent_after = 0  # flows: all, while the collector was down, after its restart
    pg_down: list[float] = []  # when PostgreSQL was stopped (to start it again 15 s later)
    proc = _start(tmp_path, dsn, udp, http, log)
    restarted = False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hostile:  # fmt: skip
            hostile.bind(("127.0.0.2", 0))
            floods = 0
            start = time.monotonic()
            second = 0
            while (elapsed := time.monotonic() - start) < SOAK_S:
                n = FLOWS_PER_S
                cols = {"src_addr": rng.integers(1, 2**32 - 1, n, dtype=np.uint64), "packets": np.ones(n, np.uint64),
                        "bytes": np.full(n, 100, np.uint64), "dst_port": np.full(n, 443, np.uint64)}
                down = restarted is False and elapsed >= 0.7 * SOAK_S
                if down:  # the collector restart: stop, send for DOWN_S, start again
                    _stop(proc)
                    t_down = time.monotonic()
                    while time.monotonic() - t_down < DOWN_S:
                        for d in enc.encode(cols):
                            tx.sendto(d, ("127.0.0.1", udp))
                            c = int.from_bytes(d[2:4], "big")
                            sent += c
                            lost_expected += c
                        time.sleep(0.5)
                    proc = _start(tmp_path, dsn, udp, http, log)
                    restarted = True
                    continue
                for d in enc.encode(cols):
                    tx.sendto(d, ("127.0.0.1", udp))
                    c = int.from_bytes(d[2:4], "big")
                    sent += c
                    sent_after += c if restarted else 0
                if second % 20 == 7:
                    for d in _junk(rng, 500):
                        hostile.sendto(d, ("127.0.0.1", udp))
                if second % 60 == 13:
                    for d in _flood(floods):
                        hostile.sendto(d, ("127.0.0.1", udp))
                    floods += 1
                if second % 30 == 17:
                    proc.send_signal(signal.SIGHUP)
                if second in (int(0.2 * SOAK_S), int(0.5 * SOAK_S)):
                    postgres_server.stop()
                    pg_down.append(time.monotonic())
                if pg_down and time.monotonic() - pg_down[-1] >= 15 and not postgres_server.running:
                    postgres_server.start()
                second += 1
                time.sleep(max(0.0, start + second - time.monotonic()))
        if not postgres_server.running:
            postgres_server.start()
        # everything sent to the restarted collector was decoded (v5: one exporter, 127.0.0.1)
        v5 = lambda: next(x for x in get(base + "/api/v1/exporters")["exporters"] if x["address"] == "127.0.0.1")  # noqa: E731
        wait_for(lambda: v5()["records"] == sent_after, 60)
        e = v5()
        hostile_e = [x for x in get(base + "/api/v1/exporters")["exporters"] if x["address"] == "127.0.0.2"]
        st = get(base + "/api/v1/status")["status"]
    finally:
        if proc.poll() is None:
            _stop(proc)
        if not postgres_server.running:
            postgres_server.start()
    # what the collector counted as lost is exactly what was sent while it was down
    assert e["sequence"]["lost_flows"] == lost_expected and e["sequence"]["resets"] == 0
    assert st["loss"]["sequence_gaps"]["total"] == lost_expected and st["loss"]["spool_refused_windows"]["total"] == 0
    assert e["decode_errors_total"] == 0
    if hostile_e:  # junk and floods reached the restarted collector: counted on their own exporter
        assert hostile_e[0]["template_cache"]["table_full"] == 0 and hostile_e[0]["sequence"]["lost_packets"] == 0
    # windows still spooled at the stop are loaded now (each exactly once)
    subprocess.run([sys.executable, "-m", "appliance.cli", "db", "load", "--spool", str(tmp_path / "spool"),
                    "--db", dsn], check=True, capture_output=True, timeout=300)
    with psycopg.connect(dsn) as conn:
        (in_db,) = conn.execute('select coalesce(sum(flows), 0) from "all_n"').fetchone()
    assert in_db == sent - lost_expected

