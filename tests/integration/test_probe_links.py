"""The probe follows its interface through netlink: `mirrorflow probe` on a veth that is deleted
and created again by the same name. What was counted before is exported, the statistics say
detached then re-attached, and the frames on the new interface are counted and exported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.demo.netns import add_veth
from tests.integration.test_probe_rig import (
    REPO,
    Collector,
    pcap_frames,
    start_probe,
    wait_probe_frames,
)
from tests.integration.test_probe_support import (
    decoded_records,
    ethernet_pcap,
    tshark_flows,
)

pytestmark = [pytest.mark.netns, pytest.mark.root]

#: tcpreplay/test.pcap: 176 IP packets of 64,677 bytes (test_probe_cli checks the same totals)
PACKETS, BYTES = 176, 64677


@pytest.fixture(scope="module")
def test_pcap(corpus_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("links")
    return ethernet_pcap(corpus_dir / "traffic/tcpreplay/test.pcap", d / "test.pcap")


def _ip(*argv: str, netns: str | None = None) -> None:
    cmd = ["ip", *argv] if netns is None else ["ip", "netns", "exec", netns, "ip", *argv]
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def _quiet_up(name: str, netns: str | None) -> None:
    """Up, large MTU, no IPv6 (no MLD/RS frames of its own: the counts stay exact)."""
    sysctl = ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"]
    subprocess.run(sysctl if netns is None else ["ip", "netns", "exec", netns, *sysctl],
                   check=True, capture_output=True, timeout=30)
    _ip("link", "set", name, "mtu", "65000", netns=netns)
    _ip("link", "set", name, "up", netns=netns)


def _ifindex(name: str) -> int:
    return int(Path(f"/sys/class/net/{name}/ifindex").read_text())


def _snapshot(state: Path) -> dict:
    return json.loads((state / "stats.json").read_text())


def _wait(state: Path, pred, what: str, limit_s: float = 20.0) -> dict:
    end = time.monotonic() + limit_s
    snap: dict = {}
    while time.monotonic() < end:
        try:
            snap = _snapshot(state)
            if pred(snap):
                return snap
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the probe's statistics did not show {what} within {limit_s} s: {snap}")


def _replay(netns: str, dev: str, pcap: Path) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "tcpreplay", "-q", "-i", dev, "--topspeed",
                    str(pcap)], check=True, capture_output=True, timeout=120)


def _probe_stats_text(state: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "appliance.probe", "--stats", "--state-dir", str(state)],
        capture_output=True, text=True, timeout=30, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout


@pytest.mark.parametrize("hook", ["tc", "xdp"])
def test_deleted_interface_is_detached_exported_and_reattached(netns, test_pcap, tmp_path, hook):
    ns = netns.namespace()
    pair = netns.veth_pair(None, ns)
    mirror, inject = pair.a.name, pair.b.name
    for end in (pair.a, pair.b):
        _quiet_up(end.name, end.netns)
    state = tmp_path / "state"
    collector = Collector()
    extra = ["--attach", "xdp", "--xdp-mode", "generic"] if hook == "xdp" else []
    proc = start_probe(mirror, [collector.address], state, "--inactive-timeout", "1",
                       "--active-timeout", "3600", *extra)
    try:
        old_ifindex = _ifindex(mirror)
        _replay(ns, inject, test_pcap)
        wait_probe_frames(state, pcap_frames(test_pcap))
        t0 = time.time()
        subprocess.run(["ip", "link", "del", mirror], check=True, timeout=30)
        snap = _wait(state, lambda s: s["links"][0]["state"] == "detached", "detached")
        print(f"{hook}: detached {snap['links'][0]['detached_at'] - t0:.3f} s after the deletion "
              f"(scan interval 0.2 s)")
        link = snap["links"][0]
        assert (link["name"], link["ifindex"], link["reason"], link["detaches"]) == (
            mirror, old_ifindex, "deleted", 1)
        assert link["detached_at"] is not None
        assert f"{mirror} DETACHED since" in _probe_stats_text(state)
        assert not (state / f"{mirror}.json").exists()  # the attachment's state file is gone
        # the flows counted before the deletion end by the inactive timeout and are exported
        snap = _wait(state, lambda s: s["table"]["active"] == 0
                     and s["export"]["flows_exported"] == s["table"]["flows_created"], "flows exported")
        assert snap["kernel"]["total"]["accounted_packets"] == PACKETS
        before = collector.receive(quiet_s=0.5)
        flows = tshark_flows(before, tmp_path)
        assert (sum(f["packets"] for f in flows), sum(f["bytes"] for f in flows)) == (PACKETS, BYTES)
        assert len(flows) == snap["export"]["flows_exported"]

        # the same name again: a new ifindex, attached again
        t0 = time.time()
        add_veth(mirror, None, inject, ns)
        for end in (pair.a, pair.b):
            _quiet_up(end.name, end.netns)
        new_ifindex = _ifindex(mirror)
        assert new_ifindex != old_ifindex
        snap = _wait(state, lambda s: s["links"][0]["state"] == "attached", "re-attached")
        link = snap["links"][0]
        print(f"{hook}: re-attached {link['attached_at'] - t0:.3f} s after the new veth was created")
        assert (link["ifindex"], link["reattaches"], link["reason"]) == (new_ifindex, 1, None)
        assert (state / f"{mirror}.json").exists()
        _replay(ns, inject, test_pcap)
        wait_probe_frames(state, 2 * pcap_frames(test_pcap))
        snap = _wait(state, lambda s: s["kernel"]["total"]["accounted_packets"] == 2 * PACKETS,
                     "the new frames accounted")
        assert f"{mirror} re-attached 1 times" in _probe_stats_text(state)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = collector.receive(quiet_s=0.5)
    collector.close()
    assert proc.returncode == 0, err
    # templates came before the deletion: decode everything, count what came after
    flows = [f for f in tshark_flows(before + after, tmp_path) if f["frame"] >= len(before)]
    assert (sum(f["packets"] for f in flows), sum(f["bytes"] for f in flows)) == (PACKETS, BYTES)
    # every flow after the re-attachment carries the new ifindex (our decoder reads it)
    data = [r for r in decoded_records(before + after)
            if r["record_kind"] != "options" and r["frame"] >= len(before)]
    assert {r["in_if"] for r in data} == {new_ifindex}
    assert sum(r["packets"] for r in data) == PACKETS
    assert f"{mirror} (ifindex {old_ifindex}) deleted: detached" in err
    assert f"{mirror} re-attached (ifindex {new_ifindex}, was {old_ifindex}; re-attach 1)" in err


def _tc_filters(dev: str) -> str:
    return subprocess.run(["tc", "filter", "show", "dev", dev, "ingress"], capture_output=True, text=True,
                          check=False).stdout


def _promisc(dev: str) -> bool:
    return bool(int(Path(f"/sys/class/net/{dev}/flags").read_text(), 16) & 0x100)


def test_renamed_away_is_detached_and_cleaned_renamed_back_is_reattached(netns, tmp_path):
    """A rename keeps the device (and our filter, promisc): the probe removes them, and attaches
    again when the name comes back (same ifindex)."""
    ns = netns.namespace()
    pair = netns.veth_pair(None, ns)
    mirror = pair.a.name
    ifindex = _ifindex(mirror)
    other = mirror[:-1] + "r"  # same length, still one of the test run's names
    state = tmp_path / "state"
    proc = start_probe(mirror, ["127.0.0.1:9"], state)
    try:
        assert "mirrorflow" in _tc_filters(mirror) and _promisc(mirror)
        _ip("link", "set", mirror, "down")
        _ip("link", "set", mirror, "name", other)
        snap = _wait(state, lambda s: s["links"][0]["state"] == "detached", "detached")
        assert (snap["links"][0]["reason"], snap["links"][0]["ifindex"]) == (f"renamed to {other}", ifindex)
        assert "mirrorflow" not in _tc_filters(other) and not _promisc(other)
        _ip("link", "set", other, "name", mirror)
        _ip("link", "set", mirror, "up")
        snap = _wait(state, lambda s: s["links"][0]["state"] == "attached", "re-attached")
        assert (snap["links"][0]["ifindex"], snap["links"][0]["reattaches"]) == (ifindex, 1)
        assert _tc_filters(mirror).count("mirrorflow") == 1 and _promisc(mirror)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"{mirror} (ifindex {ifindex}) renamed to {other}: detached" in err
    assert "mirrorflow" not in _tc_filters(mirror) and not _promisc(mirror)
