"""The probe's flow table: timeouts, flowEndReason, wrap guard, table full (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.probe.flowtable import FlowTable
from appliance.probe.records import KEY_DTYPE, VAL_DTYPE, FlowEndReason

S = 10**9


def batch(flows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """flows: dicts with sport (distinguishes keys) and optional value fields."""
    keys = np.zeros(len(flows), KEY_DTYPE)
    vals = np.zeros(len(flows), VAL_DTYPE)
    for i, f in enumerate(flows):
        keys[i]["src"][:4] = [10, 0, 0, 1]
        keys[i]["dst"][:4] = [10, 0, 0, 2]
        keys[i]["sport"] = f.get("sport", 1000)
        keys[i]["dport"] = 80
        keys[i]["proto"] = f.get("proto", 6)
        keys[i]["ipver"] = 4
        vals[i]["packets"] = f.get("packets", 1)
        vals[i]["bytes"] = f.get("bytes", 100)
        vals[i]["first_ns"] = f.get("first", 0)
        vals[i]["last_ns"] = f.get("last", f.get("first", 0))
        vals[i]["tcp_flags"] = f.get("flags", 0x10)
        vals[i]["min_ttl"] = f.get("ttl", 64)
        vals[i]["max_ttl"] = f.get("ttl", 64)
    return keys, vals


def test_merge_accumulates_one_flow():
    t = FlowTable(16)
    t.merge(*batch([{"first": 1 * S, "packets": 2, "bytes": 200, "ttl": 60}]))
    t.merge(*batch([{"first": 2 * S, "packets": 3, "bytes": 300, "flags": 0x02, "ttl": 70}]))
    assert len(t) == 1
    out = t.flush()
    assert len(out) == 1
    v = out[0]["val"]
    assert (v["packets"], v["bytes"]) == (5, 500)
    assert (v["first_ns"], v["last_ns"]) == (1 * S, 2 * S)
    assert v["tcp_flags"] == 0x12
    assert (v["min_ttl"], v["max_ttl"]) == (60, 70)
    assert out[0]["end_reason"] == FlowEndReason.FORCED_END
    assert len(t) == 0


def test_inactive_timeout():
    t = FlowTable(16, inactive_timeout_ns=15 * S, active_timeout_ns=1800 * S)
    t.merge(*batch([{"sport": 1, "first": 0}, {"sport": 2, "first": 10 * S}]))
    assert len(t.expire(14 * S)) == 0
    out = t.expire(15 * S)
    assert [int(k) for k in out["key"]["sport"]] == [1]
    assert out[0]["end_reason"] == FlowEndReason.IDLE_TIMEOUT
    assert len(t) == 1


def test_active_timeout_keeps_counting_in_a_new_record():
    t = FlowTable(16, inactive_timeout_ns=15 * S, active_timeout_ns=60 * S)
    for sec in range(0, 70, 5):
        t.merge(*batch([{"first": sec * S}]))
    out = t.expire(60 * S)
    assert len(out) == 1 and out[0]["end_reason"] == FlowEndReason.ACTIVE_TIMEOUT
    assert out[0]["val"]["packets"] == 14
    t.merge(*batch([{"first": 61 * S}]))
    out = t.flush()
    assert out[0]["val"]["packets"] == 1 and out[0]["val"]["first_ns"] == 61 * S


def test_idle_after_fin_reports_end_of_flow():
    t = FlowTable(16, inactive_timeout_ns=15 * S)
    t.merge(*batch([{"first": 0, "flags": 0x11}]))
    out = t.expire(15 * S)
    assert out[0]["end_reason"] == FlowEndReason.END_OF_FLOW


@pytest.mark.parametrize("flag", [0x01, 0x04])
def test_tcp_early_export_on_fin_or_rst(flag):
    t = FlowTable(16, inactive_timeout_ns=15 * S, tcp_end_timeout_ns=2 * S)
    t.merge(*batch([{"sport": 1, "first": 0, "flags": flag | 0x10}, {"sport": 2, "first": 0}]))
    assert len(t.expire(1 * S)) == 0
    out = t.expire(2 * S)
    assert [int(x) for x in out["key"]["sport"]] == [1]
    assert out[0]["end_reason"] == FlowEndReason.END_OF_FLOW


def test_tcp_early_export_disabled_by_default():
    t = FlowTable(16, inactive_timeout_ns=15 * S)
    t.merge(*batch([{"first": 0, "flags": 0x04}]))
    assert len(t.expire(5 * S)) == 0


def test_udp_flags_never_end_a_flow_early():
    t = FlowTable(16, inactive_timeout_ns=15 * S, tcp_end_timeout_ns=0)
    t.merge(*batch([{"first": 0, "flags": 0, "proto": 17}]))
    assert len(t.expire(1 * S)) == 0


def test_counter_wrap_guard_splits_before_32_bits():
    t = FlowTable(16, counter_limit=2**32 - 1)
    t.merge(*batch([{"first": 0, "bytes": 3 * 2**30, "packets": 2_000_000}]))
    t.merge(*batch([{"first": 1 * S, "bytes": 2**30 + 1, "packets": 700_000}]))
    out = t.expire(2 * S)  # the closed record goes out at the next pass, nothing else
    assert len(out) == 1
    assert out[0]["end_reason"] == FlowEndReason.ACTIVE_TIMEOUT
    assert out[0]["val"]["bytes"] == 3 * 2**30
    rest = t.flush()
    assert rest[0]["val"]["bytes"] == 2**30 + 1
    assert t.stats.guard_splits == 1
    total = int(out["val"]["bytes"].sum() + rest["val"]["bytes"].sum())
    assert total == 4 * 2**30 + 1


def test_table_full_refuses_and_counts():
    t = FlowTable(4)
    t.merge(*batch([{"sport": i, "packets": 2, "bytes": 50} for i in range(10)]))
    assert len(t) == 4
    assert t.stats.refused_flows == 6
    assert (t.stats.refused_packets, t.stats.refused_bytes) == (12, 300)
    # an existing flow still counts when the table is full
    t.merge(*batch([{"sport": 0, "packets": 1}]))
    assert t.stats.refused_flows == 6
    assert int(t.flush()["val"]["packets"].sum()) == 9


def test_many_flows_survive_churn_and_index_rebuilds():
    rng = np.random.default_rng(1)
    t = FlowTable(1000, inactive_timeout_ns=10 * S)
    truth: dict[int, int] = {}
    exported: dict[int, int] = {}
    for step in range(60):
        ports = rng.integers(0, 3000, 400)
        k, v = batch([{"sport": int(p), "first": step * S, "packets": 1} for p in ports])
        t.merge(k, v)
        for p in ports:
            truth[int(p)] = truth.get(int(p), 0) + 1
        for rec in t.expire(step * S):
            exported[int(rec["key"]["sport"])] = exported.get(int(rec["key"]["sport"]), 0) + int(
                rec["val"]["packets"]
            )
    for rec in t.flush():
        sp = int(rec["key"]["sport"])
        exported[sp] = exported.get(sp, 0) + int(rec["val"]["packets"])
    refused = t.stats.refused_packets
    assert sum(exported.values()) + refused == sum(truth.values())
    if refused == 0:
        assert exported == truth


def test_emergency_expiry_exact_victims_and_reason():
    t = FlowTable(20, inactive_timeout_ns=100 * S, emergency_fill=0.9, emergency_target=0.5)
    lasts = {i: ((37 * i) % 19) * S for i in range(19)}
    t.merge(*batch([{"sport": i, "first": 0, "last": lasts[i]} for i in range(19)]))
    out = t.expire(20 * S)
    oldest = sorted(lasts, key=lasts.get)[:9]  # down to 50 % of 20 = 10 flows
    assert sorted(int(x) for x in out["key"]["sport"]) == sorted(oldest)
    assert set(out["end_reason"].tolist()) == {FlowEndReason.LACK_OF_RESOURCES}
    assert len(t) == 10 and t.stats.emergency_expired == 9
    assert t.stats.by_reason[FlowEndReason.LACK_OF_RESOURCES] == 9
    # below the fill level nothing more is ended early
    assert len(t.expire(21 * S)) == 0 and t.stats.emergency_passes == 1
    # flows due anyway are not counted as emergency ones
    out = t.expire(200 * S)
    assert len(out) == 10 and set(out["end_reason"].tolist()) == {FlowEndReason.IDLE_TIMEOUT}
    assert t.stats.emergency_expired == 9


def test_emergency_expiry_off_at_fill_1():
    t = FlowTable(4, emergency_fill=1.0, emergency_target=1.0)
    t.merge(*batch([{"sport": i} for i in range(6)]))
    assert len(t.expire(1 * S)) == 0 and len(t) == 4 and t.stats.refused_flows == 2


def test_expire_chunks_hand_out_the_same_flows_oldest_first():
    rng = np.random.default_rng(7)
    firsts = rng.permutation(500) * S // 1000
    tables = [FlowTable(600, inactive_timeout_ns=S) for _ in range(2)]
    for t in tables:
        t.merge(*batch([{"sport": i, "first": int(firsts[i])} for i in range(500)]))
    whole = tables[0].expire(10 * S)
    parts = list(tables[1].expire_chunks(10 * S, chunk=64))
    assert [len(p) for p in parts] == [64] * 7 + [52]
    joined = np.concatenate(parts)
    assert (joined == whole).all()
    assert (np.diff(whole["val"]["first_ns"].astype(np.int64)) >= 0).all()
    assert sorted(whole["key"]["sport"].tolist()) == list(range(500))
    assert len(tables[1]) == 0
