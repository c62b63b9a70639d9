"""``mirrorflow collect`` as a process: UDP in, the live API out (curl-able), SIGHUP reload."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.collector.api.schema import SCHEMAS, validate
from appliance.collector.receive.pcapfile import PcapReader
from tests.integration._live import free_port, get, wait_for
from tests.unit.test_api import parse_metrics

CAPTURE = "ipfixcol2/example_flows.pcap"


@pytest.mark.slow
def test_collect_serves_the_api_live(tmp_path: Path, corpus_dir: Path) -> None:
    capture = corpus_dir / "netflow" / CAPTURE
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    (tmp_path / "mo" / "all").mkdir(parents=True)
    (tmp_path / "mo" / "all" / "mo.conf").write_text('{"filter": "", "fwm": [{"name": "t", "fields": ["flows"]}]}')
    probe = tmp_path / "probe-stats.json"
    probe.write_text(json.dumps({"pid": 1, "kernel": {"total": {"frames": 5}}}))
    udp, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{udp}", "--api", f"127.0.0.1:{http}",
         "--mo-dir", str(tmp_path / "mo"), "--probe-stats", str(probe), "--stats-interval", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{http}"
    try:
        wait_for(lambda: get(base + "/api/v1/status"))
        want = subprocess.run([sys.executable, "-m", "appliance.cli", "decode", "--stats", "--no-options", "--format",
                               "jsonl", str(capture)], capture_output=True, text=True, env=env, check=True)
        (stats,) = [json.loads(x) for x in want.stderr.splitlines()]
        n_records = len(want.stdout.splitlines())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, PcapReader(capture) as reader:
            for packets in reader.batches():
                for i in range(len(packets)):
                    off, ln = int(packets.offset[i]), int(packets.length[i])
                    tx.sendto(packets.buf[off : off + ln].tobytes(), ("127.0.0.1", udp))
        st = wait_for(lambda: (s := get(base + "/api/v1/status")["status"])["totals"]["records"] == n_records and s)
        validate(get(base + "/api/v1/status"), SCHEMAS["/api/v1/status"])
        assert st["mode"] == "live" and st["listen"] == [f"127.0.0.1:{udp}"]
        assert st["socket_drops"] == 0 and st["rcvbuf_granted"] > 0
        (e,) = get(base + "/api/v1/exporters")["exporters"]
        assert e["address"] == "127.0.0.1" and e["role"] == "probe"  # the probe exports over loopback
        assert {k: v for k, v in e["counters"].items() if v} == {k: v for k, v in stats.items() if k != "exporter"}
        assert get(base + "/api/v1/probe")["probe"]["stats"] == {"pid": 1, "kernel": {"total": {"frames": 5}}}
        m = parse_metrics(get(base + "/metrics"))
        assert m["mirrorflow_exporter_records_total"][(("exporter", "127.0.0.1"),)] == stats["records"]
        assert m["mirrorflow_socket_drops_total"][()] == 0
        # a curl-able flow tail of the object
        flows = get(base + "/api/v1/flows?object=all&limit=3")
        assert flows["count"] == 3 and all(f["exporter"] == "127.0.0.1" for f in flows["flows"])
        # SIGHUP: the configuration generation moves on
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: get(base + "/api/v1/status")["status"]["config"]["generation"] == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "live API on http://127.0.0.1:" in err


def test_collect_runs_without_the_api_when_its_port_is_taken(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        udp = free_port(socket.SOCK_DGRAM)
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{udp}",
                                 "--api", f"127.0.0.1:{port}", "--stats-interval", "0"],
                                env=env, stderr=subprocess.PIPE, text=True)
        try:
            line = wait_for(lambda: (l := proc.stderr.readline()) and "live API" in l and l)  # noqa: E741
            assert proc.stderr is not None
            wait_for(lambda: "listening on" in proc.stderr.readline())  # collecting all the same
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert "live API not started" in line and "or off" in line
    assert proc.returncode == 0, err
