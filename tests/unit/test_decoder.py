"""Decoder features: sampling (options data, v5 headers, devices.conf), times, templates."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.config.devices import Device, parse_devices
from appliance.collector.config.jsonc import ConfigError
from appliance.collector.decode.decoder import Decoder, Stat
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.receive.packets import PacketBatch
from appliance.collector.receive.pcapfile import read_pcap
from appliance.netflow import IPFIXEncoder, V5Encoder, V9Encoder, sampler_template, template_for

T0_NS = 1_700_000_000_000_000_000
BOOT_NS = T0_NS - 3_600_000_000_000  # exporter up for one hour

FIELDS = ["src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets",
          "first_switched", "last_switched", "sampler_id"]


def _columns(n: int) -> dict[str, np.ndarray]:
    i = np.arange(n, dtype=np.uint64)
    return {
        "src_addr": 0x0A000000 + i,
        "dst_addr": np.full(n, 0xC0000201, dtype=np.uint64),
        "src_port": 1000 + i,
        "dst_port": np.full(n, 443, dtype=np.uint64),
        "proto": np.full(n, 6, dtype=np.uint64),
        "bytes": 100 * (i + 1),
        "packets": i + 1,
        "first_switched": np.full(n, 3_599_000, dtype=np.uint64),  # 1 s before the header
        "last_switched": np.full(n, 3_599_500, dtype=np.uint64),
        "sampler_id": np.full(n, 7, dtype=np.uint64),
    }


def _decode(dec: Decoder, payloads: list[bytes], exporter: str = "192.0.2.1") -> FlowBatch:
    batches = [b.copy() for b in dec.decode(PacketBatch.from_payloads(payloads, exporter=exporter, recv_ns=T0_NS))]
    return FlowBatch.concat(batches)


def test_v9_sampler_options_scale_counters_once() -> None:
    enc = V9Encoder([template_for(FIELDS, 256), sampler_template(257, 9)], clock=lambda: T0_NS, boot_ns=BOOT_NS)
    opts = enc.encode({"sampler_id": 7, "sampler_mode": 2, "sampler_random_interval": 100,
                       "sampling_interval": 100, "sampling_algorithm": 2, "scope_system": 0}, 257)
    data = enc.encode(_columns(5), 256)
    raw = _decode(Decoder(apply_sampling=False), opts + data)
    scaled = _decode(Decoder(apply_sampling=True), opts + data)
    assert raw["bytes"].tolist() == [100, 200, 300, 400, 500]
    assert scaled["bytes"].tolist() == [10000, 20000, 30000, 40000, 50000]
    assert scaled["packets"].tolist() == [100, 200, 300, 400, 500]
    assert scaled["sampling_rate"].tolist() == [100] * 5
    # ports are not counters: never scaled
    assert scaled["src_port"].tolist() == [1000, 1001, 1002, 1003, 1004]


def test_rate_per_sampler_id_and_stream() -> None:
    dec = Decoder()
    enc = V9Encoder([template_for(FIELDS, 256), sampler_template(257, 9)], source_id=3,
                    clock=lambda: T0_NS, boot_ns=BOOT_NS)
    pk = enc.encode({"sampler_id": [7, 8], "sampler_mode": 2, "sampler_random_interval": [10, 1000],
                     "sampling_interval": [10, 1000], "sampling_algorithm": 2, "scope_system": 0}, 257)
    cols = _columns(2)
    cols["sampler_id"] = np.array([7, 8], dtype=np.uint64)
    b = _decode(dec, pk + enc.encode(cols, 256))
    assert b["sampling_rate"].tolist() == [10, 1000]
    assert b["bytes"].tolist() == [1000, 200000]
    # another source id of the same exporter has learned nothing: rate 1
    other = V9Encoder([template_for(FIELDS, 256)], source_id=4, clock=lambda: T0_NS, boot_ns=BOOT_NS)
    b2 = _decode(dec, other.encode(_columns(1), 256))
    assert b2["sampling_rate"].tolist() == [1]
    assert dec.sampling_rates() == {("192.0.2.1", 3, 7): 10, ("192.0.2.1", 3, 8): 1000}


def test_ipfix_packet_interval_and_space() -> None:
    fields = [f for f in FIELDS if f not in ("sampler_id", "first_switched", "last_switched")]
    fields += ["selector_id", "flow_start_ms", "flow_end_ms"]
    enc = IPFIXEncoder([template_for(fields, 300), sampler_template(301, 10)], clock=lambda: T0_NS)
    opts = enc.encode({"selector_id": 1, "selector_algorithm": 1, "sampling_packet_interval": 1,
                       "sampling_packet_space": 511}, 301)
    cols = _columns(3)
    cols["selector_id"] = np.ones(3, dtype=np.uint64)
    cols["flow_start_ms"] = np.full(3, T0_NS // 1_000_000 - 2000, dtype=np.uint64)
    cols["flow_end_ms"] = np.full(3, T0_NS // 1_000_000 - 1000, dtype=np.uint64)
    b = _decode(Decoder(), opts + enc.encode(cols, 300), exporter="2001:db8::9")
    assert b["sampling_rate"].tolist() == [512] * 3
    assert b["bytes"].tolist() == [51200, 102400, 153600]
    assert b["time_start_ms"].tolist() == [T0_NS // 1_000_000 - 2000] * 3
    assert b["dev_ip"].tolist() == [0] * 3  # IPv6 exporter: the IPv4 virtual field is empty


def test_v5_header_sampling_and_devices_override() -> None:
    enc = V5Encoder(sampling_mode=1, sampling_interval=64, clock=lambda: T0_NS, boot_ns=BOOT_NS)
    pk = enc.encode(_columns(2))
    assert _decode(Decoder(), pk)["bytes"].tolist() == [6400, 12800]
    # devices.conf wins over the header; an entry without a rate means 1, not 0
    dec = Decoder(devices=parse_devices([{"ip": "192.0.2.1"}]))
    assert _decode(dec, pk)["bytes"].tolist() == [100, 200]
    dec = Decoder(devices=[Device("192.0.2.1", sampling_rate=1000)])
    b = _decode(dec, pk)
    assert b["bytes"].tolist() == [100000, 200000]
    assert b["sampling_rate"].tolist() == [1000, 1000]


def test_devices_ipv6_and_source_id_entries() -> None:
    devices = parse_devices(
        [{"ip": "2001:db8::1", "id": 5, "sampling-rate": 10}, {"ip": "2001:db8::1", "sampling-rate": 3}]
    )
    dec = Decoder(devices=devices)
    cols = _columns(1)
    five = V9Encoder([template_for(FIELDS, 256)], source_id=5, clock=lambda: T0_NS, boot_ns=BOOT_NS)
    six = V9Encoder([template_for(FIELDS, 256)], source_id=6, clock=lambda: T0_NS, boot_ns=BOOT_NS)
    assert _decode(dec, five.encode(cols, 256), "2001:db8::1")["bytes"].tolist() == [1000]
    assert _decode(dec, six.encode(cols, 256), "2001:db8::1")["bytes"].tolist() == [300]
    other = V9Encoder([template_for(FIELDS, 256)], source_id=6, clock=lambda: T0_NS, boot_ns=BOOT_NS)
    assert _decode(dec, other.encode(cols, 256), "2001:db8::2")["bytes"].tolist() == [100]


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"ip": "1.2.3.4"}, "must be a JSON array"),
        ([{"id": 1}], '"ip" (the exporter address) is required'),
        ([{"ip": "1.2.3"}], "is not an IPv4 or IPv6 address"),
        ([{"ip": "1.2.3.4", "sampling-rate": 0}], "positive integer"),
    ],
)
def test_devices_errors_say_what_is_wrong(doc: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_devices(doc)


def test_v9_uptime_times_become_epoch_ms() -> None:
    enc = V9Encoder([template_for(FIELDS, 256)], clock=lambda: T0_NS, boot_ns=BOOT_NS)
    b = _decode(Decoder(), enc.encode(_columns(1), 256))
    t0_ms = T0_NS // 1_000_000
    assert b["first_switched"].tolist() == [3_599_000]  # raw value kept
    assert b["time_start_ms"].tolist() == [t0_ms - 1000]
    assert b["time_end_ms"].tolist() == [t0_ms - 500]
    assert b["recv_time_ns"].tolist() == [T0_NS]


def _ipfix_one_time_field(ie: int, length: int, value: int) -> bytes:
    tmpl = struct.pack("!HHHH", 2, 4 + 4 + 4, 256, 1) + struct.pack("!HH", ie, length)
    data = struct.pack("!HH", 256, 4 + length) + value.to_bytes(length, "big")
    body = tmpl + data
    return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, 0, 0) + body


@pytest.mark.parametrize(
    "ie, length, value, expected_ms",
    [
        (150, 4, 1_699_999_990, 1_699_999_990_000),  # flowStartSeconds
        (152, 8, 1_699_999_990_123, 1_699_999_990_123),  # flowStartMilliseconds
        (154, 8, ((1_699_999_990 + 2_208_988_800) << 32) | (1 << 31), 1_699_999_990_500),  # µs, NTP
        (156, 8, ((1_699_999_990 + 2_208_988_800) << 32) | (1 << 30), 1_699_999_990_250),  # ns, NTP
        (158, 4, 2_500_000, 1_699_999_997_500),  # flowStartDeltaMicroseconds before export
    ],
)
def test_ipfix_time_units(ie: int, length: int, value: int, expected_ms: int) -> None:
    b = _decode(Decoder(), [_ipfix_one_time_field(ie, length, value)])
    assert b["time_start_ms"].tolist() == [expected_ms]


def test_ipfix_uptime_times_use_system_init_time() -> None:
    init_ms = 1_699_990_000_000
    opt_t = struct.pack("!HHHHH", 3, 4 + 6 + 8, 257, 2, 1) + struct.pack("!HHHH", 149, 4, 160, 8)
    opt_d = struct.pack("!HH", 257, 4 + 12) + struct.pack("!IQ", 0, init_ms)
    tmpl = struct.pack("!HHHH", 2, 4 + 4 + 8, 256, 2) + struct.pack("!HHHH", 22, 4, 21, 4)
    data = struct.pack("!HH", 256, 4 + 8) + struct.pack("!II", 5_000, 7_000)
    body = opt_t + opt_d + tmpl + data
    pkt = struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, 0, 0) + body
    b = _decode(Decoder(), [pkt])
    assert b["time_start_ms"].tolist() == [init_ms + 5_000]
    assert b["time_end_ms"].tolist() == [init_ms + 7_000]


def test_templates_survive_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "templates.json"
    enc = V9Encoder([template_for(FIELDS, 256), sampler_template(257, 9)], source_id=9,
                    clock=lambda: T0_NS, boot_ns=BOOT_NS)
    first = Decoder(template_file=store)
    opts = enc.encode({"sampler_id": 7, "sampler_mode": 2, "sampler_random_interval": 10,
                       "sampling_interval": 10, "sampling_algorithm": 2, "scope_system": 0}, 257)
    _decode(first, opts + enc.encode(_columns(1), 256))
    assert first.templates_changed()
    first.save_templates()
    assert not first.templates_changed()

    data_only = enc.encode(_columns(3), 256)[-1:]
    cold = Decoder()
    assert _decode(cold, data_only).n == 0
    assert cold.pending_sets == 1

    warm = Decoder(template_file=store)
    b = _decode(warm, data_only)
    assert b["bytes"].tolist() == [1000, 2000, 3000]  # template and sampling rate restored
    counters = warm.exporter_stats()[0].counters
    assert counters["records"] == 3 and counters["no_template_sets"] == 0


def test_corrupt_template_file_is_ignored(tmp_path: Path) -> None:
    store = tmp_path / "templates.json"
    store.write_text("{not json")
    dec = Decoder(template_file=store)
    assert dec.exporter_stats() == []


def test_small_capacity_splits_batches_without_losing_records() -> None:
    enc = V9Encoder([template_for(FIELDS, 256)], clock=lambda: T0_NS, boot_ns=BOOT_NS)
    pk = enc.encode(_columns(1000), 256)
    dec = Decoder(capacity=64)
    sizes = []
    got = []
    for b in dec.decode(PacketBatch.from_payloads(pk)):
        sizes.append(b.n)
        got.extend(b["src_port"].tolist())
    assert max(sizes) == 64
    assert got == list(range(1000, 2000))
    assert dec.exporter_stats()[0].counters["records"] == 1000


def test_tables_grow_for_many_exporters_and_templates() -> None:
    dec = Decoder()
    payloads, exporters = [], []
    for e in range(300):
        enc = V9Encoder([template_for(FIELDS, 256 + e % 50)], clock=lambda: T0_NS, boot_ns=BOOT_NS)
        payloads += enc.encode(_columns(2), 256 + e % 50)
        exporters.append(f"10.1.{e // 256}.{e % 256}")
    exporters = [exporters[i // (len(payloads) // 300)] for i in range(len(payloads))]
    b = _decode(dec, payloads, exporter=exporters)  # type: ignore[arg-type]
    assert b.n == 600
    assert len(dec.exporter_stats()) == 300
    assert sorted(set(b["exporter_index"].tolist())) == list(range(300))


def test_sampling_rates_learned_from_real_captures(corpus_dir: Path) -> None:
    """Rates and sampler ids come from the captures' own options records (tshark's decoding)."""
    name = "netflow/akvorado/merged/multiplesamplingrates.pcap"
    expected = [json.loads(x) for x in (corpus_dir / "expected" / f"{name}.jsonl").read_text().splitlines()]
    rates = {r["fields"]["sampler_id"]: r["fields"]["sampling_interval"]
             for r in expected if r["record_kind"] == "options"}
    want = [(r["fields"]["bytes"] * rates[r["fields"]["sampler_id"]]) for r in expected if r["record_kind"] == "data"]
    dec = Decoder()
    got = []
    for packets in read_pcap(corpus_dir / name):
        for b in dec.decode(packets):
            got.extend(b["bytes"].tolist())
    assert sorted(got) == sorted(want)
    assert dec.exporter_stats()[0].counters[Stat.RECORDS.name.lower()] == len(want)


def test_exporter_table_cap_refuses_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of spoofed exporters cannot grow memory without bound."""
    import appliance.collector.decode.decoder as decoder_module

    monkeypatch.setattr(decoder_module, "MAX_EXPORTERS", 70)
    dec = Decoder()
    enc = V5Encoder(clock=lambda: T0_NS, boot_ns=BOOT_NS)
    pk = enc.encode(_columns(1))
    exporters = [f"10.2.{i // 256}.{i % 256}" for i in range(100)]
    b = _decode(dec, pk * 100, exporter=exporters)  # type: ignore[arg-type]
    assert b.n == 70
    assert len(dec.exporter_stats()) == 70
    assert dec.refused_exporter_packets == 30
    # known exporters keep working
    assert _decode(dec, pk, exporter="10.2.0.5").n == 1
