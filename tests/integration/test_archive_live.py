"""``mirrorflow collect --archive`` as a process: UDP in, SIGHUP closes the open file, SIGTERM
closes the last one, the archive's counters on /api/v1/status and /metrics; on a full file
system the collector keeps running, counts what it could not store and says so."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from appliance.collector.api.schema import SCHEMAS, validate
from appliance.collector.receive.pcapfile import PcapReader
from tests.integration._live import free_port, get, wait_for
from tests.unit.test_api import parse_metrics

CAPTURE = "ipfixcol2/example_flows.pcap"
pytestmark = pytest.mark.slow


def start(archive: Path) -> tuple[subprocess.Popen[str], int, str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    udp, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{udp}",
                             "--api", f"127.0.0.1:{http}", "--archive", str(archive), "--stats-interval", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{http}"
    wait_for(lambda: get(base + "/api/v1/status"))
    return proc, udp, base


def send(capture: Path, udp: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, PcapReader(capture) as reader:
        for packets in reader.batches():
            for i in range(len(packets)):
                off, ln = int(packets.offset[i]), int(packets.length[i])
                tx.sendto(packets.buf[off : off + ln].tobytes(), ("127.0.0.1", udp))


def rows(archive: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in archive.rglob("*.parquet"))


def test_sighup_and_sigterm_close_the_open_file(tmp_path: Path, corpus_dir: Path) -> None:
    capture = corpus_dir / "netflow" / CAPTURE
    want = subprocess.run([sys.executable, "-m", "appliance.cli", "decode", "--no-options", "--format", "jsonl",
                           str(capture)], capture_output=True, text=True, check=True)
    n = len(want.stdout.splitlines())
    archive = tmp_path / "archive"
    proc, udp, base = start(archive)
    try:
        send(capture, udp)
        wait_for(lambda: get(base + "/api/v1/status")["status"]["totals"]["records"] == n)
        proc.send_signal(signal.SIGHUP)  # the open file is closed and visible
        wait_for(lambda: rows(archive) == n)
        st = wait_for(lambda: (a := get(base + "/api/v1/status")["status"]["archive"])["flows"] == n and a)
        assert (st["flows_lost"], st["failing"], st["files_kept"]) == (0, False, len(list(archive.rglob("*.parquet"))))
        m = parse_metrics(get(base + "/metrics"))
        assert m["mirrorflow_archive_flows_total"][()] == n and m["mirrorflow_archive_failing"][()] == 0
        assert m["mirrorflow_archive_removed_files_total"][(("reason", "age"),)] == 0
        flows = get(base + "/api/v1/archive/flows?limit=3&filter=proto%20tcp%20or%20udp")
        validate(flows, SCHEMAS["/api/v1/archive/flows"])
        assert flows["count"] == 3 and all(f["exporter"] == "127.0.0.1" for f in flows["flows"])
        top = get(base + "/api/v1/archive/top?top=proto&by=flows&limit=5")
        validate(top, SCHEMAS["/api/v1/archive/top"])
        assert top["totals"]["flows"] == n == sum(r["flows"] for r in top["rows"])
        send(capture, udp)
        wait_for(lambda: get(base + "/api/v1/status")["status"]["totals"]["records"] == 2 * n)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert rows(archive) == 2 * n and not list(archive.rglob("*.tmp"))


@pytest.mark.root
def test_a_full_file_system_costs_only_the_archive(tmp_path: Path, corpus_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    capture = corpus_dir / "netflow" / CAPTURE
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(tiny)], check=True)
    try:
        (tiny / "filler").write_bytes(b"\0" * 12 * 1024)  # a few KB left: not enough for a Parquet file
        proc, udp, base = start(tiny / "archive")
        try:
            for _ in range(20):
                send(capture, udp)
            wait_for(lambda: get(base + "/api/v1/status")["status"]["totals"]["records"] > 0)
            proc.send_signal(signal.SIGHUP)
            st = wait_for(lambda: (s := get(base + "/api/v1/status")["status"])["archive"]["flows_lost"] > 0 and s)
            assert st["archive"]["failing"] is True and st["archive"]["write_errors"] >= 1
            assert any(p.startswith("flow archive not writing") for p in st["problems"]) and st["health"] == "warning"
            lost = st["archive"]["flows_lost"]
            send(capture, udp)  # the collector still receives and decodes
            wait_for(lambda: get(base + "/api/v1/status")["status"]["totals"]["records"] > st["totals"]["records"])
            m = parse_metrics(get(base + "/metrics"))
            assert m["mirrorflow_archive_flows_lost_total"][()] >= lost
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "archive: cannot write under" in err
        assert not list((tiny / "archive").rglob("*.tmp"))
    finally:
        subprocess.run(["umount", "-l", str(tiny)], check=False)
