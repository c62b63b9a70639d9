"""Names people read: protocol names against the system's /etc/protocols, ICMP types and codes
against the IANA registries, and ``decode``'s text output against its own jsonl records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.collector.fields.readable import icmp_name, protocol_name, readable
from appliance.collector.fields.table import PROTOCOLS

ETC_PROTOCOLS = Path("/etc/protocols")


@pytest.mark.skipif(not ETC_PROTOCOLS.exists(), reason="no /etc/protocols (Debian's netbase)")
def test_protocol_names_are_names_of_that_number_in_etc_protocols() -> None:
    names: dict[int, set[str]] = {}
    for line in ETC_PROTOCOLS.read_text().splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 2 and words[1].isdigit():
            names.setdefault(int(words[1]), set()).update(w.lower() for w in [words[0], *words[2:]])
    checked = 0
    for num in set(PROTOCOLS.values()):
        if num in names and num not in (58, 94):  # icmp6: tcpdump's word; 94: ours is ipip-old
            assert protocol_name(num) in names[num], num
            checked += 1
    assert checked > 20
    assert ((protocol_name(6), protocol_name(17), protocol_name(58), protocol_name(253))
            == ("tcp", "udp", "icmp6", "253"))


@pytest.mark.parametrize(("proto", "tc", "name"), [
    (1, 8 << 8, "echo-request"), (1, 0, "echo-reply"), (1, 3 << 8 | 3, "dest-unreach port"),
    (1, 3 << 8 | 4, "dest-unreach frag-needed"), (1, 11 << 8, "time-exceeded ttl"),
    (1, 3 << 8 | 99, "dest-unreach code 99"), (1, 42 << 8 | 1, "type 42 code 1"),
    (1, 8 << 8 | 5, "echo-request code 5"),
    (58, 128 << 8, "echo-request"), (58, 129 << 8, "echo-reply"), (58, 135 << 8, "neighbor-solicit"),
    (58, 1 << 8 | 4, "dest-unreach port"), (58, 2 << 8, "packet-too-big"),
])
def test_icmp_names(proto: int, tc: int, name: str) -> None:
    assert icmp_name(proto, tc) == name


def test_readable_record() -> None:
    r = readable({"proto": 1, "dst_port": 3 << 8 | 1, "bytes": 5})
    assert r == {"proto": "icmp", "dst_port": 769, "bytes": 5, "icmp": "dest-unreach host"}
    assert readable({"proto": 58, "icmp_type6": 136 << 8}) == {"proto": "icmp6", "icmp_type6": 34816,
                                                              "icmp": "neighbor-advert"}
    assert readable({"proto": 6, "dst_port": 443}) == {"proto": "tcp", "dst_port": 443}


def test_decode_text_shows_names(corpus_dir: Path) -> None:
    base = corpus_dir / "netflow" / "logstash-codec-netflow" / "pcap_single"
    captures = [str(base / f"netflow9_test_{n}.pcap") for n in ("softflowd_tpl_data", "valid01", "cisco_asa_1_data")]
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    run = [sys.executable, "-m", "appliance.cli", "decode", "--no-options"]
    text = subprocess.run([*run, *captures], capture_output=True, text=True, env=env, timeout=300, check=True)
    js = subprocess.run([*run, "--format", "jsonl", *captures], capture_output=True, text=True, env=env,
                        timeout=300, check=True)
    seen = {"icmp": 0, "other": 0}
    for line, raw in zip(text.stdout.splitlines(), js.stdout.splitlines(), strict=True):
        rec = json.loads(raw)
        proto = rec.get("proto")
        if isinstance(proto, int):
            assert f" proto={protocol_name(proto)} " in line + " "
        if proto in (1, 58):
            tc = rec.get("icmp_type") or rec.get("icmp_type6") or rec.get("dst_port", 0)
            assert line.endswith(f"icmp={icmp_name(proto, tc)}"), line
            seen["icmp"] += 1
        else:
            assert " icmp=" not in line
            seen["other"] += 1
    assert seen["icmp"] > 0 and seen["other"] > 0


def test_tui_flow_tail_shows_protocol_names_country_and_as() -> None:
    from appliance.tui.panels import flows

    doc = {"flows": [{"recv_time_ns": 1_700_000_000 * 10**9, "src_addr": "192.0.2.1", "src_port": 443,
                      "dst_addr": "2001:db8::1", "dst_port": 5000, "proto": 6, "bytes": 10, "packets": 1,
                      "src_country": "DE", "src_asn": "3320", "dst_country": "", "dst_asn": "",
                      "exporter": "192.0.2.9"},
                     {"recv_time_ns": 1_700_000_000 * 10**9, "src_addr": "10.0.0.1", "dst_addr": "10.0.0.2",
                      "proto": 1, "bytes": 84, "packets": 1, "exporter": "192.0.2.9"}]}
    _, rows = flows.render(doc, None)  # type: ignore[arg-type]
    texts = [[c.plain for c in r.cells] for r in rows]  # type: ignore[union-attr]
    assert texts[1][1:4] == ["192.0.2.1:443 DE AS3320", "[2001:db8::1]:5000", "tcp"]
    assert texts[0][1:4] == ["10.0.0.1", "10.0.0.2", "icmp"]
