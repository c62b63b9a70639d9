"""``mirrorflow collect`` as the user runs it: UDP on 127.0.0.1 and [::1], a jsonl dump, a
stats file, SIGTERM at the end. Packets come from `appliance.netflow.encoder`, so every
value the collector should report is known exactly.

Also: ``mirrorflow decode`` and ``mirrorflow collect --pcap`` on a capture of the same
datagrams give the same records as the live run.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.netflow.encoder import (
    IPFIXEncoder,
    V5Encoder,
    V9Encoder,
    sampler_template,
    template_for,
)
from appliance.synth import udp_frame, write_pcap
from tests.integration._interop_rig import (
    CollectorProcess,
    exporter_stats,
    mirrorflow_argv,
    mirrorflow_env,
    warm_numba,  # noqa: F401 - fixture
)

T0_NS = 1_700_000_000_000_000_000
BOOT_NS = T0_NS - 3_600_000_000_000
FIELDS = ["src_addr", "dst_addr", "src_port", "dst_port", "proto", "packets", "bytes",
          "flow_start_ms", "flow_end_ms"]
GAP_COUNTERS = ("lost_packets", "lost_flows", "seq_resets")
COMPARED = ("exporter", "version", "source_id", "record_kind", "src", "dst", "src_port",
            "dst_port", "proto", "packets", "bytes", "sampling_rate")


def _clock() -> int:
    return T0_NS


def _flows(n: int, seed: int, v6: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Encoder columns for n flows and the records they should decode to (unsampled)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 2**32 - 1, n, dtype=np.uint64)
    dst = rng.integers(1, 2**32 - 1, n, dtype=np.uint64)
    cols: dict[str, Any] = {
        "src_port": rng.integers(0, 65536, n),
        "dst_port": rng.integers(0, 65536, n),
        "proto": rng.choice([6, 17, 1], n),
        "packets": rng.integers(1, 100_000, n),
        "bytes": rng.integers(40, 2**31, n),
        "flow_start_ms": (T0_NS // 1_000_000 - 5000) + rng.integers(0, 1000, n),
    }
    cols["flow_end_ms"] = cols["flow_start_ms"] + rng.integers(0, 4000, n)
    if v6:
        a6 = np.zeros((n, 16), dtype=np.uint8)
        b6 = np.zeros((n, 16), dtype=np.uint8)
        a6[:, 0:2] = (0x20, 0x01)
        a6[:, 2:4] = (0x0D, 0xB8)
        b6[:, 0] = 0xFD
        a6[:, 12:] = src.astype(">u4").view(np.uint8).reshape(n, 4)
        b6[:, 12:] = dst.astype(">u4").view(np.uint8).reshape(n, 4)
        cols["src_addr6"], cols["dst_addr6"] = a6, b6
        texts = [(str(ipaddress.IPv6Address(bytes(a))), str(ipaddress.IPv6Address(bytes(b))))
                 for a, b in zip(a6, b6, strict=True)]
    else:
        cols["src_addr"], cols["dst_addr"] = src, dst
        texts = [(str(ipaddress.IPv4Address(int(a))), str(ipaddress.IPv4Address(int(b))))
                 for a, b in zip(src, dst, strict=True)]
    expected = [
        {"src": s, "dst": d, "src_port": int(cols["src_port"][i]), "dst_port": int(cols["dst_port"][i]),
         "proto": int(cols["proto"][i]), "packets": int(cols["packets"][i]), "bytes": int(cols["bytes"][i])}
        for i, (s, d) in enumerate(texts)
    ]
    return cols, expected


def _view(rec: dict[str, Any]) -> tuple:
    """The compared part of a dumped record."""
    r = dict(rec)
    r["src"] = rec.get("src") or rec.get("src_addr") or rec.get("src_addr6")
    r["dst"] = rec.get("dst") or rec.get("dst_addr") or rec.get("dst_addr6")
    return tuple(r.get(k) for k in COMPARED)


@dataclass
class Exporter:
    """One exporting source: where it sends from, its encoder, what it sent."""

    bind: tuple[str, int]
    encoder: Any
    version: int
    source_id: int
    datagrams: list[bytes] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)
    templates: int = 0
    options_templates: int = 0

    @property
    def address(self) -> str:
        return self.bind[0]

    def add(self, payloads: list[bytes], expected: list[dict[str, Any]], rate: int = 1) -> None:
        self.datagrams += payloads
        for e in expected:
            self.expected.append({
                **e, "packets": e["packets"] * rate, "bytes": e["bytes"] * rate,
                "exporter": self.address, "version": self.version, "source_id": self.source_id,
                "record_kind": "v5" if self.version == 5 else "data", "sampling_rate": rate,
            })


def _v5(bind: tuple[str, int], engine: int, n: int, seed: int, rate: int = 0) -> Exporter:
    """v5 from engine `engine`; `rate` > 0 announces deterministic sampling in the header."""
    enc = V5Encoder(engine_id=engine, clock=_clock, boot_ns=BOOT_NS,
                    sampling_mode=1 if rate else 0, sampling_interval=rate)
    ex = Exporter(bind, enc, 5, engine)
    cols, expected = _flows(n, seed)
    ex.add(enc.encode(cols), expected, rate=rate or 1)
    return ex


def _templated(bind: tuple[str, int], version: int, source_id: int, n: int, seed: int,
               v6: bool = False) -> Exporter:
    tpl = template_for(FIELDS, 256 + source_id % 100, ipv6=v6)
    kw = {"clock": _clock, "boot_ns": BOOT_NS, "template_refresh_packets": 10_000,
          "template_refresh_seconds": 0}
    enc = (V9Encoder([tpl], source_id=source_id, **kw) if version == 9
           else IPFIXEncoder([tpl], observation_domain=source_id, **kw))
    ex = Exporter(bind, enc, version, source_id, templates=1)
    cols, expected = _flows(n, seed, v6)
    ex.add(enc.encode(cols), expected)
    return ex


def _send(exporters: list[Exporter], dest: dict[int, tuple[str, int]]) -> None:
    """Every exporter's datagrams from its own socket (interleaved, in order per exporter)."""
    socks = []
    try:
        for ex in exporters:
            family = socket.AF_INET6 if ":" in ex.address else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.bind(ex.bind)
            socks.append(s)
        longest = max(len(ex.datagrams) for ex in exporters)
        for i in range(longest):
            for ex, s in zip(exporters, socks, strict=True):
                if i < len(ex.datagrams):
                    s.sendto(ex.datagrams[i], dest[s.family])
            time.sleep(0.001)  # well within any receive buffer, but no need to burst
    finally:
        for s in socks:
            s.close()


def _free_port_both() -> int:
    """A UDP port free on 127.0.0.1 and ::1 (and 127.0.0.3, for the listen-address test)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6, \
                        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s3:
                    s6.bind(("::1", port))
                    s3.bind(("127.0.0.3", port))
            except OSError:
                continue
            return int(port)
    raise AssertionError("no UDP port free on 127.0.0.1, 127.0.0.3 and ::1")


@pytest.fixture
def collectors(tmp_path: Path, warm_numba: None) -> Iterator[list[CollectorProcess]]:  # noqa: F811
    """Collectors a test starts are killed at its end whatever happened."""
    started: list[CollectorProcess] = []
    yield started
    for c in started:
        c.kill()


def _start(started: list[CollectorProcess], workdir: Path, listen: list[str], *extra: str,
           name: str = "collector") -> CollectorProcess:
    c = CollectorProcess(workdir, listen, extra, name=name)
    started.append(c)
    return c


def _total(exporters: list[Exporter]) -> int:
    return sum(len(ex.expected) for ex in exporters)


def _check_exporter(stats: dict[str, Any], address: str, exporters: list[Exporter]) -> None:
    mine = [ex for ex in exporters if ex.address == address]
    e = exporter_stats(stats, address)
    assert e["packets"] == sum(len(ex.datagrams) for ex in mine)
    assert e["bytes"] == sum(len(d) for ex in mine for d in ex.datagrams)
    assert e["records"] == sum(len(ex.expected) for ex in mine)
    assert e["templates"] == sum(ex.templates for ex in mine)
    assert e["options_templates"] == sum(ex.options_templates for ex in mine)
    for version, key in ((5, "v5_packets"), (9, "v9_packets"), (10, "ipfix_packets")):
        assert e[key] == sum(len(ex.datagrams) for ex in mine if ex.version == version), key
    assert {k: e[k] for k in GAP_COUNTERS} == dict.fromkeys(GAP_COUNTERS, 0)
    assert {k: v for k, v in e.items() if k.startswith("err_") and v} == {}


def _records_of_kind(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["record_kind"] in ("v5", "data")]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*mirrorflow_argv(), *argv], capture_output=True, text=True, timeout=60,
                          env=mirrorflow_env(), check=False)


# ---- tests --------------------------------------------------------------------------------


def test_live_v4_and_v6_exporters_decode_exactly_and_replays_agree(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    port = _free_port_both()
    exporters = [
        _v5(("127.0.0.1", 0), engine=3, n=65, seed=1),  # 3 datagrams
        _templated(("127.0.0.1", 0), 9, source_id=7, n=120, seed=2),
        _templated(("127.0.0.2", 0), 10, source_id=9, n=50, seed=3),
        _templated(("127.0.0.3", 0), 9, source_id=1, n=10, seed=4),
        _templated(("::1", 0), 10, source_id=11, n=80, seed=5, v6=True),
        _templated(("::1", 0), 9, source_id=12, n=30, seed=6, v6=True),
    ]
    c = _start(collectors, tmp_path, [f"127.0.0.1:{port}", f"[::1]:{port}"])
    _send(exporters, {socket.AF_INET: ("127.0.0.1", port), socket.AF_INET6: ("::1", port)})
    assert c.wait_records(_total(exporters)), c.stats()
    assert c.stop() == 0, c.log()

    live = _records_of_kind(c.records())
    expected = [e for ex in exporters for e in ex.expected]
    assert collections.Counter(map(_view, live)) == collections.Counter(map(_view, expected))
    assert len(live) == len(expected) == 355
    stats = c.stats()
    assert stats["records"] == 355 and stats["socket_drops"] == 0
    assert sorted(e["address"] for e in stats["exporters"]) == ["127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"]
    for address in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"):
        _check_exporter(stats, address, exporters)
    assert {r["dev_ip6"] for r in live if r["exporter"] == "::1"} == {"::1"}
    assert sorted(stats["listen"]) == sorted([f"127.0.0.1:{port}", f"[::1]:{port}"])

    # The same datagrams from a capture: `decode` and `collect --pcap` give the same records.
    frames, ts = [], T0_NS
    order = sorted(((i, k) for k, ex in enumerate(exporters) for i in range(len(ex.datagrams))))
    sport = {k: 40000 + k for k in range(len(exporters))}
    for i, k in order:
        ex = exporters[k]
        dst = "::1" if ":" in ex.address else "127.0.0.1"
        frames.append((ts, udp_frame(ex.address, dst, sport[k], port, ex.datagrams[i])))
        ts += 1_000_000
    pcap = tmp_path / "export.pcap"
    write_pcap(pcap, frames)

    decoded = _run(["decode", "--format", "jsonl", str(pcap)])
    assert decoded.returncode == 0, decoded.stderr
    offline = _records_of_kind([json.loads(line) for line in decoded.stdout.splitlines()])
    assert collections.Counter(map(_view, offline)) == collections.Counter(map(_view, expected))

    replay_dump = tmp_path / "replay.jsonl"
    replay = _run(["collect", "--pcap", str(pcap), "--dump-flows", str(replay_dump),
                   "--dump-format", "jsonl", "--stats-interval", "0"])
    assert replay.returncode == 0, replay.stderr
    replayed = _records_of_kind([json.loads(x) for x in replay_dump.read_text().splitlines()])

    def without_receive_time(r: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in r.items() if k != "recv_time_ns"}, sort_keys=True)

    assert collections.Counter(map(without_receive_time, replayed)) == collections.Counter(
        map(without_receive_time, live)
    )


def test_listen_address_is_honoured(tmp_path: Path, collectors: list[CollectorProcess]) -> None:
    port = _free_port_both()
    c = _start(collectors, tmp_path, [f"127.0.0.1:{port}"])
    # Bound to 127.0.0.1 only: the same port on 127.0.0.3 is still free for another socket,
    # and what is sent there reaches that socket, not the collector.
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.settimeout(5)
    try:
        other.bind(("127.0.0.3", port))
        wrong = _v5(("127.0.0.1", 0), engine=1, n=5, seed=10)
        right = _v5(("127.0.0.1", 0), engine=2, n=7, seed=11)
        _send([wrong], {socket.AF_INET: ("127.0.0.3", port)})
        assert other.recv(65535) == wrong.datagrams[0]
        _send([right], {socket.AF_INET: ("127.0.0.1", port)})
        assert c.wait_records(7), c.stats()
        time.sleep(0.3)
    finally:
        other.close()
    assert c.stop() == 0
    recs = _records_of_kind(c.records())
    assert collections.Counter(map(_view, recs)) == collections.Counter(map(_view, right.expected))
    assert exporter_stats(c.stats(), "127.0.0.1")["packets"] == 1


def test_templates_persist_across_restart(tmp_path: Path, collectors: list[CollectorProcess]) -> None:
    port = _free_port_both()
    templates = tmp_path / "templates.json"
    dest = {socket.AF_INET: ("127.0.0.1", port), socket.AF_INET6: ("::1", port)}
    listen = [f"127.0.0.1:{port}", f"[::1]:{port}"]
    v9 = _templated(("127.0.0.2", 0), 9, source_id=21, n=0, seed=0)
    ipfix = _templated(("::1", 0), 10, source_id=22, n=0, seed=0, v6=True)
    for ex in (v9, ipfix):
        ex.datagrams = ex.encoder.encode_templates()

    first = _start(collectors, tmp_path, listen, "--templates", str(templates), name="first")
    _send([v9, ipfix], dest)
    assert first.wait_stats(lambda s: sum(e.get("templates", 0) for e in s.get("exporters", [])) == 2)
    assert first.stop() == 0, first.log()
    assert templates.exists()

    second = _start(collectors, tmp_path, listen, "--templates", str(templates), name="second")
    for ex, seed, v6 in ((v9, 30, False), (ipfix, 31, True)):
        cols, expected = _flows(40, seed, v6)
        ex.datagrams, ex.expected = [], []
        ex.add(ex.encoder.encode(cols), expected)
    _send([v9, ipfix], dest)
    assert second.wait_records(80), second.stats()
    assert second.stop() == 0, second.log()
    recs = _records_of_kind(second.records())
    assert collections.Counter(map(_view, recs)) == collections.Counter(map(_view, v9.expected + ipfix.expected))
    stats = second.stats()
    assert stats["pending_sets"] == 0
    for address in ("127.0.0.2", "::1"):
        e = exporter_stats(stats, address)
        assert e["no_template_sets"] == 0 and e["templates"] == 0 and e["records"] == 40
        assert {k: e[k] for k in GAP_COUNTERS} == dict.fromkeys(GAP_COUNTERS, 0)


def test_data_before_template_is_held_and_decoded(tmp_path: Path, collectors: list[CollectorProcess]) -> None:
    port = _free_port_both()
    exporters = []
    for bind, version, sid, seed, v6 in ((("127.0.0.2", 0), 9, 41, 40, False), (("::1", 0), 10, 42, 41, True)):
        ex = _templated(bind, version, source_id=sid, n=0, seed=0, v6=v6)
        tmpl = ex.encoder.encode_templates()
        cols, expected = _flows(60, seed, v6)
        ex.add(ex.encoder.encode(cols), expected)
        ex.datagrams = ex.datagrams + tmpl  # data first, then its template
        exporters.append(ex)
    c = _start(collectors, tmp_path, [f"127.0.0.1:{port}", f"[::1]:{port}"])
    _send(exporters, {socket.AF_INET: ("127.0.0.1", port), socket.AF_INET6: ("::1", port)})
    assert c.wait_records(120), c.stats()
    assert c.stop() == 0
    recs = _records_of_kind(c.records())
    assert collections.Counter(map(_view, recs)) == collections.Counter(
        map(_view, [e for ex in exporters for e in ex.expected])
    )
    stats = c.stats()
    assert stats["pending_sets"] == 0
    for ex in exporters:
        e = exporter_stats(stats, ex.address)
        data_sets = len(ex.datagrams) - 1
        assert e["no_template_sets"] == data_sets == e["pending_decoded_sets"]
        assert e["pending_expired_sets"] == 0 and e["records"] == 60 and e["templates"] == 1


def _sampled(bind: tuple[str, int], version: int, source_id: int, seed: int, rate: int,
             applied: int, v6: bool = False) -> Exporter:
    """Options announce `rate` (sampler 3); data records name sampler 3; `applied` is expected."""
    sampler_field = "sampler_id" if version == 9 else "selector_id"
    tpl = template_for([*FIELDS, sampler_field], 300, ipv6=v6)
    opt = sampler_template(301, version)
    kw = {"clock": _clock, "boot_ns": BOOT_NS, "template_refresh_packets": 10_000,
          "template_refresh_seconds": 0}
    enc = (V9Encoder([tpl, opt], source_id=source_id, **kw) if version == 9
           else IPFIXEncoder([tpl, opt], observation_domain=source_id, **kw))
    ex = Exporter(bind, enc, version, source_id, templates=1, options_templates=1)
    if version == 9:
        options = {"scope_system": 1, "sampler_id": 3, "sampler_mode": 2,
                   "sampler_random_interval": rate, "sampling_interval": rate, "sampling_algorithm": 2}
    else:
        options = {"selector_id": 3, "selector_algorithm": 1, "sampling_packet_interval": 1,
                   "sampling_packet_space": rate - 1}
    ex.datagrams += enc.encode(options, 301)
    cols, expected = _flows(40, seed, v6)
    cols[sampler_field] = 3
    ex.add(enc.encode(cols), expected, rate=applied)
    return ex


def test_sampling_from_options_and_devices_override(tmp_path: Path, collectors: list[CollectorProcess]) -> None:
    port = _free_port_both()
    devices = tmp_path / "devices.conf"
    devices.write_text(
        '[\n  {"ip": "::1", "sampling-rate": 7},   // IPv6 exporter: beats its options (100)\n'
        '  {"ip": "127.0.0.2"}                    // listed without a rate: 1\n]\n'
    )
    exporters = [
        _sampled(("127.0.0.1", 0), 9, 51, seed=50, rate=100, applied=100),
        _sampled(("127.0.0.4", 0), 10, 52, seed=51, rate=250, applied=250),
        _sampled(("::1", 0), 10, 53, seed=52, rate=100, applied=7, v6=True),
        _sampled(("127.0.0.2", 0), 9, 54, seed=53, rate=100, applied=1),
        _v5(("127.0.0.5", 0), engine=4, n=40, seed=54, rate=10),  # rate in the v5 header
    ]
    c = _start(collectors, tmp_path, [f"127.0.0.1:{port}", f"[::1]:{port}"], "--devices", str(devices))
    _send(exporters, {socket.AF_INET: ("127.0.0.1", port), socket.AF_INET6: ("::1", port)})
    assert c.wait_records(200), c.stats()
    assert c.stop() == 0
    recs = _records_of_kind(c.records())
    assert collections.Counter(map(_view, recs)) == collections.Counter(
        map(_view, [e for ex in exporters for e in ex.expected])
    )
    stats = c.stats()
    for ex in exporters:
        e = exporter_stats(stats, ex.address)
        assert e["records"] == 40 and e["options_records"] == ex.options_templates == e["options_templates"]
    learned = {(r["exporter"], r["sampler_id"]): r["rate"] for r in stats["sampling_rates"]}
    assert learned[("127.0.0.1", 3)] == 100 and learned[("127.0.0.4", 3)] == 250


def test_sigterm_exits_zero_promptly_and_writes_final_stats(
    tmp_path: Path, collectors: list[CollectorProcess]
) -> None:
    port = _free_port_both()
    c = _start(collectors, tmp_path, [f"127.0.0.1:{port}", f"[::1]:{port}"])
    ex = _v5(("127.0.0.1", 0), engine=5, n=3, seed=60)
    _send([ex], {socket.AF_INET: ("127.0.0.1", port)})
    assert c.wait_records(3)
    c.stats_file.unlink()
    # The stop must not wait for the next statistics tick or a receive timeout.
    assert c.stop(timeout_s=3.0) == 0, c.log()
    assert c.stats()["records"] == 3
    assert len(_records_of_kind(c.records())) == 3
    assert "Traceback" not in c.log()


def test_datagrams_queued_at_sigterm_are_decoded(tmp_path: Path, collectors: list[CollectorProcess]) -> None:
    """What the kernel already accepted when SIGTERM comes is decoded, not dropped.

    SIGSTOP holds the collector while datagrams queue on its socket; SIGTERM then SIGCONT:
    its receive loop wakes with both the socket and the stop request readable.
    """
    port = _free_port_both()
    c = _start(collectors, tmp_path, [f"127.0.0.1:{port}"])
    ex = _v5(("127.0.0.1", 0), engine=6, n=90, seed=70)  # 4 datagrams
    os.kill(c.proc.pid, signal.SIGSTOP)
    try:
        _send([ex], {socket.AF_INET: ("127.0.0.1", port)})
        time.sleep(0.2)
        os.kill(c.proc.pid, signal.SIGTERM)
    finally:
        os.kill(c.proc.pid, signal.SIGCONT)
    assert c.stop() == 0, c.log()
    assert c.stats()["records"] == 90
    assert collections.Counter(map(_view, _records_of_kind(c.records()))) == collections.Counter(
        map(_view, ex.expected)
    )
