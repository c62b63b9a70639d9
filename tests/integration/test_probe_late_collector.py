"""A collector that is not listening yet loses nothing: real loopback UDP (ICMP port
unreachable, ECONNREFUSED, the error queue), and a live ``mirrorflow collect`` started 10 s
after the probe."""

from __future__ import annotations

import json
import socket
import time

import pytest

from appliance.probe.exporter import Exporter, parse_destination
from tests.integration.test_probe_collect import (
    free_udp_port,
    start_collector,
    stop,
    wait_dumped,
)
from tests.integration.test_probe_rig import (  # noqa: F401
    pcap_frames,
    rig,
    start_probe,
    wait_probe_frames,
)
from tests.integration.test_probe_support import ethernet_pcap
from tests.unit.test_probe_exporter import make_flows


def _seq(payload: bytes) -> int:
    return int.from_bytes(payload[12:16], "big")


def test_datagrams_refused_by_a_closed_port_arrive_once_it_listens():
    port = free_udp_port()
    ex = Exporter([parse_destination(f"127.0.0.1:{port}")], 9)
    flows = 0
    try:
        for _ in range(5):  # nobody listens: ICMP port unreachable for each datagram
            ex.retry()
            ex.export(make_flows(100, 0), 0)
            flows += 100
        st = ex.stats[0]
        assert st.refused + st.errors_by_cause.get("ECONNREFUSED", 0) >= 1
        assert st.held > 0 and st.flows_lost == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            rx.bind(("127.0.0.1", port))
            for _ in range(4):
                ex.retry()
            ex.export(make_flows(10, 0), 0)
            flows += 10
            rx.settimeout(1.0)
            got = []
            while True:
                try:
                    got.append(rx.recv(65535))
                except TimeoutError:
                    break
    finally:
        ex.close()
    assert sorted(_seq(p) for p in got) == list(range(ex.encoder.messages_sent))
    assert sum(ex._flows_in([p], 256)[0] for p in got) == flows
    assert (ex.stats[0].flows, ex.stats[0].flows_lost) == (flows, 0)


def wait_held_sent(state, limit_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Waits for a scan or two: the probe datagram passes, the held ones follow."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            (d,) = json.loads((state / "stats.json").read_text())["export"][
                "destinations"
            ]
            if d["held"] == 0 and d["resent"] > 0:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)


@pytest.mark.netns
@pytest.mark.root
def test_collector_started_10_s_after_the_probe_gets_every_flow(
    rig,  # noqa: F811
    corpus_dir,
    tmp_path,
):
    pcap = ethernet_pcap(corpus_dir / "traffic/nDPI/gnutella.pcap", tmp_path / "g.pcap")
    port = free_udp_port()
    state = tmp_path / "state"
    collector = None
    probe = start_probe(rig.mirror, [f"127.0.0.1:{port}"], state,
                        "--active-timeout", "1", "--inactive-timeout", "1")
    started = time.monotonic()
    try:
        rig.replay(pcap)
        wait_probe_frames(state, pcap_frames(pcap))
        time.sleep(
            max(0.0, 10 - (time.monotonic() - started))
        )  # flows expire meanwhile
        snap = json.loads((state / "stats.json").read_text())
        assert snap["export"]["flows_exported"] > 0  # exported while nobody listened
        collector = start_collector(port, tmp_path)
        wait_held_sent(state)
        stop(probe)
        assert probe.returncode == 0
        final = json.loads((state / "stats-final.json").read_text())
        wait_dumped(tmp_path / "flows.jsonl", final["export"]["flows_exported"])
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        if collector is not None:
            stop(collector)
    k, export = final["kernel"]["total"], final["export"]
    (dest,) = export["destinations"]
    assert dest["refused"] + dest["errors_by_cause"].get("ECONNREFUSED", 0) >= 1
    assert dest["flows_lost"] == 0 and dest["held"] == 0
    recs = [
        json.loads(line) for line in (tmp_path / "flows.jsonl").read_text().splitlines()
    ]
    data = [r for r in recs if r["record_kind"] == "data"]
    assert len(data) == export["flows_exported"] == dest["flows"]
    assert sum(r["packets"] for r in data) == k["accounted_packets"] > 0
    assert sum(r["bytes"] for r in data) == k["accounted_bytes"]
