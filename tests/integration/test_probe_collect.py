"""The probe exporting to a live ``mirrorflow collect`` process: what the collector decodes
adds up to what the probe says it exported, and the sampling the probe announces is applied."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_probe_rig import (  # noqa: F401
    REPO,
    pcap_frames,
    rig,
    start_probe,
    wait_probe_frames,
)
from tests.integration.test_probe_support import ethernet_pcap

pytestmark = [pytest.mark.netns, pytest.mark.root]

SAMPLING = 4
LONG = ("--active-timeout", "86400", "--inactive-timeout", "86400")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector(port: int, workdir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{port}",
           "--dump-flows", str(workdir / "flows.jsonl"), "--dump-format", "jsonl",
           "--stats-file", str(workdir / "collector-stats.json"),
           "--templates", str(workdir / "templates.json"), "--stats-interval", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"collector exited: {proc.stderr.read()}")
    proc.kill()
    raise AssertionError("collector did not start listening within 60 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def wait_dumped(path: Path, n: int, limit_s: float = 10.0) -> None:
    """Waits until the collector's dump holds `n` data records (it decodes asynchronously)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if path.exists() and path.read_text().count('"record_kind":"data"') >= n:
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def gnutella(corpus_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("collect")
    return ethernet_pcap(corpus_dir / "traffic/nDPI/gnutella.pcap", d / "gnutella.pcap")


@pytest.mark.parametrize("protocol", [9, 10])
def test_live_collector_totals_equal_the_probes_export(rig, gnutella, tmp_path, protocol):  # noqa: F811
    port = free_udp_port()
    collector = start_collector(port, tmp_path)
    probe = None
    state = tmp_path / "state"
    try:
        probe = start_probe(rig.mirror, [f"127.0.0.1:{port}"], state, "--protocol", str(protocol),
                            "--sampler", f"deterministic:{SAMPLING}", *LONG)
        rig.replay(gnutella)
        wait_probe_frames(state, pcap_frames(gnutella))
        stop(probe)
        assert probe.returncode == 0
        exported = json.loads((state / "stats-final.json").read_text())["export"]["flows_exported"]
        wait_dumped(tmp_path / "flows.jsonl", exported)
    finally:
        if probe is not None and probe.poll() is None:
            probe.kill()
            probe.wait()
        stop(collector)
    final = json.loads((state / "stats-final.json").read_text())
    k, export = final["kernel"]["total"], final["export"]
    dest = export["destinations"][0]
    assert dest["errors"] == 0 and dest["flows"] == export["flows_exported"] > 0
    assert k["sampler_selected"] == k["accounted_packets"] > 0
    assert abs(k["sampler_selected"] * SAMPLING - k["ip_packets"]) <= SAMPLING * rig.cache.ncpu

    recs = [json.loads(line) for line in (tmp_path / "flows.jsonl").read_text().splitlines()]
    data = [r for r in recs if r["record_kind"] == "data"]
    assert len(data) == export["flows_exported"]
    assert {r["sampling_rate"] for r in data} == {SAMPLING}
    # the collector scales counters by the announced rate, once, at decode time
    assert sum(r["packets"] for r in data) == SAMPLING * k["accounted_packets"]
    assert sum(r["bytes"] for r in data) == SAMPLING * k["accounted_bytes"]

    cstats = json.loads((tmp_path / "collector-stats.json").read_text())
    assert cstats["records"] >= len(data)
    assert [s["rate"] for s in cstats["sampling_rates"]] == [SAMPLING]
    (exp,) = cstats["exporters"]
    assert exp["packets"] == dest["packets"]
    bad = ("err_", "lost_", "seq_resets", "no_template_sets", "pending_expired")
    assert not {name: v for name, v in exp.items() if name.startswith(bad) and v}
