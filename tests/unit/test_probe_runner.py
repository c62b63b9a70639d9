"""The probe's loop over a fake kernel and fake clock: export, fill warning, stats, config."""

from __future__ import annotations

import json

import pytest

from appliance.probe.config import ProbeSettings, load_config_file, parse_key_fields, parse_sampler
from appliance.probe.errors import ProbeConfigError
from appliance.probe.exporter import MemoryTransport
from appliance.probe.kernel import MemoryFlowCache
from appliance.probe.records import Counter, KeyField, SamplerMode
from appliance.probe.runner import Probe, build_exporter
from appliance.probe.stats import render
from tests.unit.test_probe_flowtable import batch

S = 10**9


class FakeClock:
    def __init__(self) -> None:
        self.mono = 1000 * S

    def monotonic_ns(self) -> int:
        return self.mono

    def time_ns(self) -> int:
        return 1_700_000_000 * S + self.mono


def make_probe(maxflows=10, **kw):
    s = ProbeSettings(interfaces=["mirror0"], destinations=["127.0.0.1:2055"], maxflows=maxflows,
                      inactive_timeout=15, **kw)
    s.validate()
    clock = FakeClock()
    t = MemoryTransport()
    warnings: list[str] = []
    cache = MemoryFlowCache(maxflows)
    probe = Probe(s, cache, build_exporter(s, clock, transports=[t]), clock, warn=warnings.append)
    return probe, cache, clock, t, warnings


def test_scan_exports_idle_flows_with_the_fake_clock():
    probe, cache, clock, t, _ = make_probe()
    cache.push(*batch([{"sport": 1, "first": clock.mono}, {"sport": 2, "first": clock.mono}]))
    assert probe.scan() == 0
    clock.mono += 15 * S
    assert probe.scan() == 2
    assert probe.table.active == 0
    assert t.sent and probe.exporter.stats[0].flows == 2


def test_fill_warning_at_80_percent():
    probe, cache, clock, _, warnings = make_probe(maxflows=10)
    cache.push(*batch([{"sport": i, "first": clock.mono} for i in range(7)]))
    probe.scan()
    assert not warnings
    cache.push(*batch([{"sport": i, "first": clock.mono} for i in range(8)]))
    probe.scan()
    assert len(warnings) == 1 and "80 %" in warnings[0]


def test_snapshot_is_json_and_renders():
    probe, cache, clock, _, _ = make_probe()
    cache.add_counter(Counter.FRAMES, 10)
    cache.push(*batch([{"first": clock.mono, "packets": 10}]))
    probe.scan()
    clock.mono += 2 * S
    probe.scan()
    snap = json.loads(json.dumps(probe.snapshot()))
    assert snap["kernel"]["total"]["accounted_packets"] == 10
    text = render(snap)
    assert "accounted 10" in text and "127.0.0.1:2055" in text


def test_own_destinations_go_into_the_kernel_exclusion_map():
    probe, cache, *_ = make_probe()
    assert [(e.ipver, e.addr, e.dport) for e in cache.self_export] == [(4, bytes([127, 0, 0, 1]), 2055)]


def test_sampler_and_key_parsing():
    assert parse_sampler("random:100") == (SamplerMode.RANDOM, 100)
    assert parse_sampler("") == (SamplerMode.OFF, 1)
    with pytest.raises(ProbeConfigError):
        parse_sampler("often:3")
    assert parse_key_fields("src,dst,proto") == KeyField.SRC | KeyField.DST | KeyField.PROTO
    with pytest.raises(ProbeConfigError):
        parse_key_fields("src,colour")


def test_config_file_with_comments(tmp_path):
    p = tmp_path / "probe.conf"
    p.write_text('{\n // mirror port\n "interfaces": "ens4", /* two */ "destinations": '
                 '["192.0.2.1:2055", "[2001:db8::1]:4739"], "active-timeout": 300}')
    s = ProbeSettings()
    load_config_file(p, s)
    assert s.interfaces == ["ens4"] and s.active_timeout == 300 and len(s.destinations) == 2
    p.write_text('{"colour": 1}')
    with pytest.raises(ProbeConfigError, match="colour"):
        load_config_file(p, ProbeSettings())


def test_attach_hook_from_the_command_line_and_the_config_file(tmp_path):
    import argparse

    from appliance.probe.cli import add_parser, settings_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["probe", "-i", "ens4", "-d", "192.0.2.1", "--attach", "xdp",
                              "--xdp-mode", "generic"])
    s = settings_from_args(args)
    s.validate()
    assert (s.attach, s.xdp_mode) == ("xdp", "generic")
    assert ProbeSettings().attach == "tc"  # TC stays the default
    p = tmp_path / "probe.conf"
    p.write_text('{"interfaces": ["ens4"], "destinations": ["192.0.2.1"], "attach": "xdp", '
                 '"xdp-mode": "offload"}')
    s = ProbeSettings()
    load_config_file(p, s)
    with pytest.raises(ProbeConfigError, match="xdp-mode"):
        s.validate()
    s.xdp_mode, s.attach = "native", "bpfilter"
    with pytest.raises(ProbeConfigError, match="attach"):
        s.validate()


def test_direction_mac_is_checked():
    from appliance.probe.config import parse_mac

    assert parse_mac("F8:1E:DF:E5:84:3A") == bytes.fromhex("f81edfe5843a")
    s = ProbeSettings(interfaces=["ens4"], destinations=["192.0.2.1"], direction_mac="f8:1e:df")
    with pytest.raises(ProbeConfigError, match="MAC"):
        s.validate()
    s.direction_mac, s.macs = "f8-1e-df-e5-84-3a", False
    with pytest.raises(ProbeConfigError, match="no-macs"):
        s.validate()


def test_a_flush_request_exports_every_flow_and_the_loop_goes_on():
    import threading
    import time

    from tests.integration.test_probe_support import decoder_flows

    probe, cache, clock, t, _ = make_probe(scan_interval=0.01)
    cache.push(*batch([{"first": clock.mono, "packets": 3, "sport": 1},
                       {"first": clock.mono, "packets": 4, "sport": 2}]))
    stop, flush_now = threading.Event(), threading.Event()
    flush_now.set()
    loop = threading.Thread(target=probe.run, args=(stop, None, flush_now))
    loop.start()
    deadline = time.monotonic() + 5
    while probe.flushes < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    while probe.scans < 2 and time.monotonic() < deadline:  # it carries on scanning
        time.sleep(0.01)
    stop.set()
    loop.join(5)
    assert not loop.is_alive() and probe.flushes == 1 and not flush_now.is_set()
    flows = decoder_flows(t.sent)
    assert sorted(f["packets"] for f in flows) == [3, 4]
    assert {f["reason"] for f in flows} == {4}  # forced end, as ipt_netflow's flush
    assert probe.snapshot()["flushes"] == 1


def _refusal_records(payloads: list[bytes]) -> list[tuple[int, int, int, int]]:
    """(stage, packets, bytes, records) of every TEMPLATE_REFUSALS record (v9)."""
    from appliance.probe.exporter import TEMPLATE_REFUSALS

    out = []
    for p in payloads:
        off = 20
        while off + 4 <= len(p):
            sid = int.from_bytes(p[off : off + 2], "big")
            length = int.from_bytes(p[off + 2 : off + 4], "big")
            if sid == TEMPLATE_REFUSALS:
                body = p[off + 4 : off + length]
                for r in range(0, len(body) - 27, 28):  # 4-byte scope + 3 x 8 bytes
                    rec = body[r : r + 28]
                    out.append((int.from_bytes(rec[0:4], "big"),
                                *(int.from_bytes(rec[4 + 8 * i : 12 + 8 * i], "big")
                                  for i in range(3))))
            off += length
    return out


def test_refusals_are_exported_per_stage_with_exact_counts():
    probe, cache, clock, t, _ = make_probe(maxflows=4, emergency_fill=1.0)
    cache.add_counter(Counter.REFUSED_PACKETS, 7)
    cache.add_counter(Counter.REFUSED_BYTES, 700, cpu=1)
    # 6 new flows into a table of 4: 2 refused (3 packets, 250 bytes each)
    cache.push(*batch([{"sport": i, "packets": 3, "bytes": 250, "first": clock.mono}
                       for i in range(6)]))
    probe.scan()
    probe.send_options()
    recs = _refusal_records(t.sent)
    assert recs[-2:] == [(1, 7, 700, 7), (2, 6, 500, 2)]
    snap = probe.snapshot()
    assert snap["refused_by_stage"] == {
        "kernel_map": {"packets": 7, "bytes": 700, "records": 7},
        "flow_table": {"packets": 6, "bytes": 500, "records": 2},
    }


def test_emergency_expiry_keeps_new_flows_counted():
    """A table of 10 at the default 90 % fill: flows idle longest end early (reason 5) down
    to 75 %, so new flows arriving at less than the 15-point margin per scan always find
    room: nothing refused, every packet exported."""
    probe, cache, clock, t, _ = make_probe(maxflows=10)
    sent = 0
    for second in range(30):
        clock.mono += S
        cache.push(*batch([{"sport": second, "first": clock.mono}]))
        sent += 1
        probe.scan()
    probe.flush()
    st = probe.table.stats
    assert st.refused_flows == 0
    assert st.emergency_expired > 0
    assert st.by_reason[5] == st.emergency_expired
    assert probe.exporter.stats[0].flows == sent == st.flows_expired
