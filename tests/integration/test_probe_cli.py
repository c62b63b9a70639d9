"""`mirrorflow probe` as a process: capture message, SIGTERM flush, --stats, kill -9 cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.probe.attach import FILTER_NAME, cleanup_leftovers
from tests.integration.test_probe_rig import (  # noqa: F401
    REPO,
    Collector,
    rig,
    start_probe,
    wait_probe_frames,
)
from tests.integration.test_probe_support import decoder_flows, ethernet_pcap, tshark_flows

pytestmark = [pytest.mark.netns, pytest.mark.root]



def tc_filters(dev: str) -> str:
    return subprocess.run(["tc", "filter", "show", "dev", dev, "ingress"], capture_output=True,
                          text=True, check=False).stdout


def promisc(dev: str) -> bool:
    return "PROMISC" in subprocess.run(["ip", "link", "show", dev], capture_output=True,
                                       text=True, check=True).stdout


@pytest.fixture(scope="module")
def test_pcap(corpus_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    return ethernet_pcap(corpus_dir / "traffic/tcpreplay/test.pcap", d / "test.pcap")


def test_sigterm_exports_every_flow_and_restores_the_interface(rig, test_pcap, tmp_path):  # noqa: F811
    collector = Collector()
    state = tmp_path / "state"
    assert not promisc(rig.mirror)
    proc = start_probe(rig.mirror, [collector.address], state)
    try:
        assert promisc(rig.mirror) and FILTER_NAME in tc_filters(rig.mirror)
        rig.replay(test_pcap)
        time.sleep(0.5)
        stats = subprocess.run(
            [sys.executable, "-m", "appliance.probe", "--stats", "--json", "--state-dir",
             str(state)], capture_output=True, text=True, timeout=30,
            env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
        )
        snap = json.loads(stats.stdout)
        assert snap["kernel"]["total"]["accounted_packets"] == 176
        text = subprocess.run(
            [sys.executable, "-m", "appliance.probe", "--stats", "--state-dir", str(state)],
            capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout
        assert "accounted 176" in text and "Per CPU" in text
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    payloads = collector.receive()
    collector.close()
    assert proc.returncode == 0, err
    flows = tshark_flows(payloads, tmp_path)
    assert sum(f["packets"] for f in flows) == 176
    assert sum(f["bytes"] for f in flows) == 64677
    assert not promisc(rig.mirror)
    assert FILTER_NAME not in tc_filters(rig.mirror)
    assert "clsact" not in subprocess.run(["tc", "qdisc", "show", "dev", rig.mirror],
                                          capture_output=True, text=True).stdout


def test_after_kill_9_the_next_start_cleans_up(rig, test_pcap, tmp_path):  # noqa: F811
    state = tmp_path / "state"
    proc = start_probe(rig.mirror, ["127.0.0.1:9"], state)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()
    # the leftovers: filter still attached, interface still promiscuous
    assert FILTER_NAME in tc_filters(rig.mirror) and promisc(rig.mirror)
    collector = Collector()
    proc = start_probe(rig.mirror, [collector.address], state)
    try:
        assert tc_filters(rig.mirror).count(FILTER_NAME) == 1
        rig.replay(test_pcap)
        wait_probe_frames(state, 176)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    flows = tshark_flows(collector.receive(), tmp_path)
    collector.close()
    assert sum(f["packets"] for f in flows) == 176  # nothing went to the orphaned program
    assert not promisc(rig.mirror) and FILTER_NAME not in tc_filters(rig.mirror)
    assert not cleanup_leftovers(rig.mirror, state)


def test_sigusr1_exports_every_flow_now_and_keeps_capturing(rig, test_pcap, tmp_path):  # noqa: F811
    """Like ipt_netflow's flush=1: everything counted so far goes out (forced end), the probe
    stays attached, and what comes later is exported by the next flush."""
    collector = Collector()
    state = tmp_path / "state"
    proc = start_probe(rig.mirror, [collector.address], state, "--active-timeout", "86400",
                       "--inactive-timeout", "86400")
    payloads: list[bytes] = []

    def flush_and_collect(expected_packets: int) -> list[dict]:
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        flows: list[dict] = []
        while time.monotonic() < deadline:
            payloads.extend(collector.receive(quiet_s=0.2, limit_s=0.5))
            flows = decoder_flows(payloads)
            if sum(f["packets"] for f in flows) >= expected_packets:
                return flows
        raise AssertionError(f"no flush within 10 s: {sum(f['packets'] for f in flows)} packets")

    try:
        rig.replay(test_pcap)
        wait_probe_frames(state, 176)
        first = flush_and_collect(176)
        assert sum(f["packets"] for f in first) == 176
        assert {f["reason"] for f in first} == {4}  # forced end
        assert FILTER_NAME in tc_filters(rig.mirror)  # still capturing
        rig.replay(test_pcap)
        wait_probe_frames(state, 2 * 176)
        both = flush_and_collect(2 * 176)
        assert sum(f["packets"] for f in both) == 2 * 176
        deadline = time.monotonic() + 5
        while json.loads((state / "stats.json").read_text())["flushes"] != 2:
            assert time.monotonic() < deadline, "the statistics do not count the flushes"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    payloads.extend(collector.receive())
    collector.close()
    assert proc.returncode == 0
    assert sum(f["packets"] for f in decoder_flows(payloads)) == 2 * 176  # nothing left over
