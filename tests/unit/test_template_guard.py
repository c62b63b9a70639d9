"""The template cache against hostile senders: a per-exporter quota, ageing, eviction of
never-used templates in a full table, allowed exporters, and a bounded templates file."""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.config import load_config
from appliance.collector.decode.decoder import MAX_TEMPLATES, Decoder
from appliance.collector.receive.packets import PacketBatch
from appliance.errors import ConfigError
from appliance.netflow.header import SET_HEADER_STRUCT, V9_HEADER_STRUCT

# IPV4_SRC_ADDR, IPV4_DST_ADDR, IN_BYTES, IN_PKTS: 16-byte records
FIELDS = ((8, 4), (12, 4), (1, 4), (2, 4))
S = 10**9


def _template_set(tids: range) -> bytes:
    body = b"".join(struct.pack("!HH", t, len(FIELDS)) + b"".join(struct.pack("!HH", ie, ln) for ie, ln in FIELDS)
                    for t in tids)
    return SET_HEADER_STRUCT.pack(0, 4 + len(body)) + body


def _data_set(tid: int, records: list[tuple[int, int, int, int]]) -> bytes:
    body = b"".join(struct.pack("!IIII", *r) for r in records)
    return SET_HEADER_STRUCT.pack(tid, 4 + len(body)) + body


def _v9(sid: int, seq: int, *sets: bytes, count: int = 0) -> bytes:
    return V9_HEADER_STRUCT.pack(9, count, 1000, 1_700_000_000, seq, sid) + b"".join(sets)


def _flood(sources: int, sids: int = 25, templates: int = 60) -> tuple[list[bytes], list[str]]:
    """The issue's flood: template-only datagrams, `templates` templates each, per source and source id."""
    payloads, addrs = [], []
    for a in range(sources):
        addr = str(ipaddress.IPv4Address("198.18.0.0") + a)
        for sid in range(sids):
            payloads.append(_v9(sid, 0, _template_set(range(256, 256 + templates)), count=templates))
            addrs.append(addr)
    return payloads, addrs


def _decode(dec: Decoder, payloads: list[bytes], addrs: str | list[str], t_ns: int) -> list[dict[str, np.ndarray]]:
    out = []
    for i in range(0, len(payloads), 512):  # like the receiver: batches of datagrams
        chunk = payloads[i : i + 512]
        a = addrs[i : i + 512] if isinstance(addrs, list) else addrs
        for b in dec.decode(PacketBatch.from_payloads(chunk, exporter=a, recv_ns=t_ns)):
            out.append({k: b[k].copy() for k in ("src_addr", "bytes", "packets")})
    return out


def _legit(dec: Decoder, t_ns: int, addr: str = "192.0.2.7") -> tuple[int, int]:
    """A real exporter after the flood: template, then data; returns (records, bytes) decoded."""
    recs = [(0x0A000001 + i, 0x0A000100, 100 + i, 1 + i % 3) for i in range(50)]
    pk = [_v9(3, 1, _template_set(range(300, 301)), count=1), _v9(3, 2, _data_set(300, recs), count=len(recs))]
    got = _decode(dec, pk, addr, t_ns)
    n = sum(len(b["bytes"]) for b in got)
    return n, int(sum(int(b["bytes"].sum()) for b in got))


def _counters(dec: Decoder) -> dict[str, dict[str, int]]:
    """The exporter counters plus the template cache's (active, refused, aged, evicted)."""
    cache = dec.template_cache()
    return {e.address: {**e.counters, **{f"templates_{k}" if k != "refused_quota" else "templates_refused_quota": v
                                          for k, v in cache[e.address].items()}}
            for e in dec.exporter_stats()}


@pytest.mark.parametrize("quota", [1024, 4096])
def test_a_template_flood_cannot_refuse_a_later_exporter(quota: int) -> None:
    dec = Decoder(template_quota=quota, apply_sampling=False)
    payloads, addrs = _flood(200 if quota == 1024 else 300)
    _decode(dec, payloads, addrs, 1 * S)
    n, nbytes = _legit(dec, 2 * S)
    assert (n, nbytes) == (50, sum(100 + i for i in range(50)))
    c = _counters(dec)
    legit = c.pop("192.0.2.7")
    assert legit["err_template_table_full"] == 0 and legit["templates_active"] == 1
    received = 25 * 60
    for addr, e in c.items():
        # every template the flood sent is accounted for: kept, refused over quota or evicted
        assert e["templates"] == received, addr
        assert e["templates_active"] + e["templates_refused_quota"] + e["templates_evicted"] + \
            e["err_template_table_full"] == received, addr
        assert e["templates_active"] <= quota
    if quota == 1024:  # 200 × 1024 fit: only the quota refuses, 476 per source
        assert {e["templates_refused_quota"] for e in c.values()} == {received - quota}
        assert sum(e["templates_evicted"] for e in c.values()) == 0
    else:  # 300 × 1500 do not fit in the table: the never-used ones are evicted, oldest first
        assert sum(e["templates_evicted"] for e in c.values()) > 0
        assert sum(e["templates_active"] for e in c.values()) + 1 + 2 <= MAX_TEMPLATES


def test_quota_keeps_templates_in_use() -> None:
    dec = Decoder(template_quota=4, apply_sampling=False)
    rec = [(1, 2, 10, 1)]
    # template 256 is used by data; then 6 new templates arrive, used by nothing
    _decode(dec, [_v9(0, 0, _template_set(range(256, 257))), _v9(0, 1, _data_set(256, rec))], "192.0.2.1", S)
    _decode(dec, [_v9(0, 2, _template_set(range(257, 263)))], "192.0.2.1", 2 * S)
    (e,) = _counters(dec).values()
    assert (e["templates_active"], e["templates_refused_quota"]) == (4, 3)
    # the used one stayed: its data still decodes
    got = _decode(dec, [_v9(0, 3, _data_set(256, rec * 3))], "192.0.2.1", 3 * S)
    assert sum(len(b["bytes"]) for b in got) == 3


def test_unused_templates_age_out() -> None:
    dec = Decoder(template_max_age_s=60, apply_sampling=False)
    rec = [(1, 2, 10, 1)]
    _decode(dec, [_v9(0, 0, _template_set(range(256, 259))), _v9(0, 1, _data_set(256, rec))], "192.0.2.1", S)
    _decode(dec, [_v9(0, 2, _data_set(256, rec))], "192.0.2.1", 50 * S)  # 256 in use, 257/258 idle
    _decode(dec, [_v9(0, 3, _data_set(256, rec))], "192.0.2.1", 100 * S)
    (e,) = _counters(dec).values()
    assert (e["templates_active"], e["templates_aged"]) == (1, 2)
    # an aged template comes back when the exporter sends it again
    got = _decode(dec, [_v9(0, 4, _template_set(range(257, 258)), _data_set(257, rec))], "192.0.2.1", 101 * S)
    assert sum(len(b["bytes"]) for b in got) == 1


def test_allowed_exporters() -> None:
    dec = Decoder(allowed_exporters=["192.0.2.0/24", "2001:db8::/32"], apply_sampling=False)
    rec = [(1, 2, 10, 1)]
    pk = [_v9(0, 0, _template_set(range(256, 257)), _data_set(256, rec))] * 5
    addrs = ["192.0.2.9", "198.51.100.1", "2001:db8::5", "198.51.100.1", "2001:db9::1"]
    got = _decode(dec, pk, addrs, S)
    assert sum(len(b["bytes"]) for b in got) == 2
    assert sorted(_counters(dec)) == ["192.0.2.9", "2001:db8::5"]
    assert dec.not_allowed == {"networks": ["192.0.2.0/24", "2001:db8::/32"], "datagrams": 3,
                               "sources": {"198.51.100.1": 2, "2001:db9::1": 1}}


def test_allowed_exporters_config(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text('{"allowed-exporters": ["10.0.0.0/8"], "templates-per-exporter": 64, "template-max-age": 600}')
    cfg = load_config(conf)
    assert ((cfg.allowed_exporters, cfg.template_quota, cfg.template_max_age_s, cfg.warnings)
            == (["10.0.0.0/8"], 64, 600, []))
    conf.write_text('{\n "allowed-exporters": ["10.0.0.0/8",\n   "ten"]}')
    with pytest.raises(ConfigError, match=r"c.conf:3:4: allowed-exporters: 'ten' is not an IPv4 or IPv6 network"):
        load_config(conf)


def test_the_templates_file_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.collector.decode import decoder as mod

    monkeypatch.setattr(mod, "MAX_SAVED_TEMPLATES", 100)
    f = tmp_path / "templates.json"
    dec = Decoder(template_file=f, apply_sampling=False)
    rec = [(1, 2, 10, 1)]
    # a real exporter whose template is used, then a flood of 5 × 25 × 60 unused ones
    _decode(dec, [_v9(7, 0, _template_set(range(400, 401))), _v9(7, 1, _data_set(400, rec))], "192.0.2.7", S)
    payloads, addrs = _flood(5)
    _decode(dec, payloads, addrs, 2 * S)
    dec.save_templates()
    doc = json.loads(f.read_text())
    assert len(doc["templates"]) == 100
    # the used template is among those kept, and it survives a restart
    kept = [(doc["streams"][t["stream"]]["exporter"], t["template_id"]) for t in doc["templates"]]
    assert ("192.0.2.7", 400) in kept
    again = Decoder(template_file=f, apply_sampling=False)
    got = _decode(again, [_v9(7, 2, _data_set(400, rec * 2))], "192.0.2.7", 3 * S)
    assert sum(len(b["bytes"]) for b in got) == 2


@pytest.mark.parametrize("text", ["", "[]", '{"streams": 5}',
                                  '{"streams": [{"exporter": 1}], "templates": [{"stream": 0}]}',
                                  '{"streams": [], "templates": [{"stream": 3}]}'])
def test_a_broken_templates_file_is_skipped(tmp_path: Path, text: str) -> None:
    f = tmp_path / "templates.json"
    f.write_text(text)
    dec = Decoder(template_file=f)
    assert dec.exporter_stats() == []


def test_saving_takes_at_most_a_tenth_of_the_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.collector.decode import decoder as mod

    clock = iter([100.0, 101.0])  # the save starts at 100 s and ends at 101 s
    monkeypatch.setattr(mod.time, "monotonic", lambda: next(clock))
    dec = Decoder(template_file=tmp_path / "templates.json", apply_sampling=False)
    _decode(dec, [_v9(0, 0, _template_set(range(256, 257)))], "192.0.2.1", S)
    dec.save_templates()
    _decode(dec, [_v9(0, 1, _template_set(range(257, 258)))], "192.0.2.1", S)  # changed again
    monkeypatch.setattr(mod.time, "monotonic", lambda: 109.9)
    assert not dec.templates_changed()
    monkeypatch.setattr(mod.time, "monotonic", lambda: 110.0)
    assert dec.templates_changed()
