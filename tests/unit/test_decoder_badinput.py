"""Bad input never crashes or hangs the decoder, and every bad packet is counted.

Each targeted case checks the exact per-exporter counters (every `Stat` not named must be
0) and that valid data around the bad bytes still decodes to the exact values. Then
hypothesis throws random and mutated datagrams at it and checks invariants that hold for
any input, and round-trips generated flows through the encoders.

Each bug these tests found (orphan-array overflow, IPFIX options-template withdrawal,
IPFIX message shorter than its datagram, re-announced withdrawn templates) is fixed; the
tests stay as regressions.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.collector.decode.decoder import Decoder, Stat
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.receive.packets import PacketBatch
from appliance.netflow import (
    IPFIXEncoder,
    V5Encoder,
    V9Encoder,
    interface_template,
    sampler_template,
    template_for,
)

EXPORTER = "192.0.2.1"
OTHER = "2001:db8::7"
T0_NS = 1_700_000_000 * 10**9  # whole seconds: a v9 header's export time has no fraction
T0_S = T0_NS // 1_000_000_000
BOOT_NS = T0_NS - 3_600_000_000_000

Layout = tuple[tuple[int, int], ...]  # (element id, length) of each template field

# One flow layout for hand-built v9 / IPFIX packets, 29 bytes.
FIELDS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8))
NAMES = ("src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets")
RECLEN = sum(ln for _, ln in FIELDS)

# MIRRORFLOW_FUZZ_EXAMPLES=20000 for a long local run (e.g. with NUMBA_BOUNDSCHECK=1 and a
# NUMBA_CACHE_DIR of its own: cached machine code ignores the flag)
FUZZ = settings(
    max_examples=int(os.environ.get("MIRRORFLOW_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def flow(i: int) -> tuple[int, ...]:
    """The values of flow i, in NAMES order (distinct per flow and per field)."""
    return (0x0A000000 + i, 0xC0A80000 + i, 1000 + i, 80 + i % 3, 6 + i % 2, 1500 * i + 7, i + 1)


def flows(*idx: int) -> list[tuple[int, ...]]:
    return [flow(i) for i in idx]


def columns(*idx: int) -> dict[str, np.ndarray]:
    """Encoder input for flows idx."""
    rows = np.array(flows(*idx), dtype=np.uint64).reshape(len(idx), len(NAMES))
    return {name: rows[:, k] for k, name in enumerate(NAMES)}


# ---- hand-built packets --------------------------------------------------------------------


def be(v: int, n: int) -> bytes:
    return v.to_bytes(n, "big")


def rec(i: int, fields: Layout = FIELDS) -> bytes:
    return b"".join(be(v, ln) for v, (_, ln) in zip(flow(i), fields, strict=True))


def set_(set_id: int, body: bytes, length: int | None = None) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(body) if length is None else length) + body


def template(tid: int, fields: Layout = FIELDS, count: int | None = None) -> bytes:
    """A template record (v9 and IPFIX share the layout when there are no enterprise ids)."""
    head = struct.pack("!HH", tid, len(fields) if count is None else count)
    return head + b"".join(struct.pack("!HH", ie, ln) for ie, ln in fields)


def tset(*templates: bytes, ipfix: bool) -> bytes:
    return set_(2 if ipfix else 0, b"".join(templates))


def dset(tid: int, *idx: int) -> bytes:
    return set_(tid, b"".join(rec(i) for i in idx))


def v9(*sets: bytes, seq: int = 0, sid: int = 0) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), 3_600_000, T0_S, seq, sid) + b"".join(sets)


def ipfix(*sets: bytes, seq: int = 0, domain: int = 0, length: int | None = None) -> bytes:
    body = b"".join(sets)
    mlen = 16 + len(body) if length is None else length
    return struct.pack("!HHIII", 10, mlen, T0_S, seq, domain) + body


def packet(version: int, *sets: bytes, seq: int = 0) -> bytes:
    return ipfix(*sets, seq=seq) if version == 10 else v9(*sets, seq=seq)


def v5(*idx: int, count: int | None = None, seq: int = 0, extra: bytes = b"") -> bytes:
    header = struct.pack(
        "!HHIIIIBBH", 5, len(idx) if count is None else count, 3_600_000, T0_S, 0, seq, 0, 0, 0
    )
    body = b""
    for i in idx:
        s, d, sp, dp, proto, nbytes, npkts = flow(i)
        body += struct.pack(
            "!IIIHHIIIIHHBBBBHHBBH", s, d, 0, 1, 2, npkts, nbytes, 3_599_000, 3_599_500, sp, dp,
            0, 0x10, proto, 0, 0, 0, 24, 24, 0,
        )
    return header + body + extra


# ---- a decoder with what was sent to it ----------------------------------------------------


class Feed:
    """A `Decoder` plus the packets and bytes sent per exporter, for exact counter checks."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("capacity", 256)
        kwargs.setdefault("apply_sampling", False)
        self.decoder = Decoder(**kwargs)  # type: ignore[arg-type]
        self.sent: Counter[tuple[str, str]] = Counter()
        self.batches: list[int] = []

    def __call__(self, *payloads: bytes, exporter: str | list[str] = EXPORTER,
                 recv_ns: int = T0_NS) -> FlowBatch:
        exporters = exporter if isinstance(exporter, list) else [exporter] * len(payloads)
        for p, e in zip(payloads, exporters, strict=True):
            self.sent[e, "packets"] += 1
            self.sent[e, "bytes"] += len(p)
        batch = PacketBatch.from_payloads(list(payloads), exporter=exporters, recv_ns=recv_ns)
        out = []
        for b in self.decoder.decode(batch):
            assert 0 < b.n <= self.decoder.capacity
            self.batches.append(b.n)
            out.append(b.copy())
        return FlowBatch.concat(out)

    def counters(self, exporter: str = EXPORTER) -> dict[str, int]:
        for s in self.decoder.exporter_stats():
            if s.address == exporter:
                return {k: v for k, v in s.counters.items() if v}
        return {}

    def check(self, exporter: str = EXPORTER, ignore: tuple[str, ...] = (), **want: int) -> None:
        """Every counter of the exporter but `ignore` is exactly `want` (packets and bytes
        implied, the rest 0)."""
        expected = {key: self.sent[exporter, key] for key in ("packets", "bytes")}
        expected.update(want)
        got = {k: v for k, v in self.counters(exporter).items() if k not in ignore}
        assert got == {k: v for k, v in expected.items() if v}


def rows(batch: FlowBatch, names: tuple[str, ...] = NAMES) -> list[tuple[int, ...]]:
    cols = [batch[n].tolist() for n in names]
    return [tuple(r) for r in zip(*cols, strict=True)] if cols else []


# ==== truncation: every prefix of a valid packet ============================================


def _encoder(version: int):
    clock = lambda: T0_NS  # noqa: E731
    if version == 5:
        return V5Encoder(clock=clock, boot_ns=BOOT_NS)
    tpl = template_for(NAMES, 256)
    cls = V9Encoder if version == 9 else IPFIXEncoder
    return cls([tpl], clock=clock, boot_ns=BOOT_NS, template_refresh_packets=1)


def _sets(pkt: bytes, hlen: int) -> list[tuple[int, int]]:
    """(set id, length) of every set of a valid packet."""
    out, pos = [], hlen
    while pos + 4 <= len(pkt):
        sid, slen = struct.unpack_from("!HH", pkt, pos)
        out.append((sid, slen))
        pos += slen
    return out


def _prefix_oracle(version: int, full: bytes, cut: int) -> tuple[Counter[str], int]:
    """Counters and flows expected from full[:cut], written from the RFCs' rules."""
    c: Counter[str] = Counter(packets=1, bytes=cut)
    if version == 5:
        if cut < 24:
            c["err_short_packet"] = 1
            return c, 0
        count = struct.unpack_from("!H", full, 2)[0]
        n = min(count, (cut - 24) // 48)
        c.update(v5_packets=1, records=n, err_count_mismatch=int(n != count))
        return c, n
    hlen = 16 if version == 10 else 20
    if cut < hlen:
        c["err_short_packet"] = 1
        return c, 0
    c["ipfix_packets" if version == 10 else "v9_packets"] = 1
    if version == 10 and cut < len(full):
        c["err_bad_length"] = 1
    pos, n = hlen, 0
    for sid, slen in _sets(full, hlen):
        if pos + 4 > cut:
            break
        if pos + slen > cut:
            c["err_bad_set_length"] += 1
            break
        if sid in (0, 2):
            c["templates"] += 1
        else:
            k = (slen - 4) // RECLEN
            c.update(records=k, padding_bytes=slen - 4 - k * RECLEN)
            n += k
        pos += slen
    return c, n


@pytest.mark.parametrize("version", [5, 9, 10])
def test_every_prefix_of_a_valid_packet(version: int) -> None:
    enc = _encoder(version)
    first = enc.encode(columns(0, 1, 2))[0]
    second = enc.encode(columns(3, 4))[0]
    for cut in range(len(first) + 1):
        feed = Feed()
        got = feed(first[:cut], second)
        want, n = _prefix_oracle(version, first, cut)
        good, _ = _prefix_oracle(version, second, len(second))
        want.update(good)
        want["packets"], want["bytes"] = 2, cut + len(second)
        if version == 10 and cut >= 16 and not want["err_bad_set_length"]:
            want["lost_flows"] = 3 - n  # the sequence says the missing flows were sent
        feed.check(**want)
        assert rows(got) == flows(*range(n), 3, 4), f"cut at {cut}"


# ==== sets and messages with bad lengths ====================================================


@pytest.mark.parametrize("version", [9, 10])
def test_set_length_past_the_end(version: int) -> None:
    is_ipfix = version == 10
    feed = Feed()
    bad = dset(256, 2)[:2] + be(4 + RECLEN + 100, 2) + rec(2)
    got = feed(packet(version, tset(template(256), ipfix=is_ipfix), dset(256, 0, 1), bad),
               packet(version, dset(256, 3), seq=1 if version == 9 else 2))
    assert rows(got) == flows(0, 1, 3)
    feed.check(**{"v9_packets" if version == 9 else "ipfix_packets": 2},
               templates=1, records=3, err_bad_set_length=1)


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("slen", [0, 1, 2, 3])
def test_set_length_below_4(version: int, slen: int) -> None:
    is_ipfix = version == 10
    feed = Feed()
    got = feed(packet(version, tset(template(256), ipfix=is_ipfix), dset(256, 0),
                      struct.pack("!HH", 256, slen), dset(256, 1)),
               packet(version, dset(256, 2), seq=1))
    # the walk stops at the bad set: what follows it in that packet is lost
    assert rows(got) == flows(0, 2)
    feed.check(**{"v9_packets" if version == 9 else "ipfix_packets": 2},
               templates=1, records=2, err_bad_set_length=1)


def test_ipfix_message_length_past_the_datagram() -> None:
    feed = Feed()
    sets = tset(template(256), ipfix=True) + dset(256, 0, 1)
    got = feed(ipfix(sets, length=0xFFFF), ipfix(dset(256, 2), seq=2))
    assert rows(got) == flows(0, 1, 2)  # decoded up to the datagram's end
    feed.check(ipfix_packets=2, templates=1, records=3, err_bad_length=1)


@pytest.mark.parametrize("mlen", [0, 1, 15])
def test_ipfix_message_length_below_the_header(mlen: int) -> None:
    feed = Feed()
    got = feed(ipfix(tset(template(256), ipfix=True), dset(256, 0), length=mlen),
               ipfix(tset(template(256), ipfix=True), dset(256, 1), seq=1))
    assert rows(got) == flows(1)
    feed.check(ipfix_packets=1, templates=1, records=1, err_bad_length=1)


def test_ipfix_message_length_below_the_datagram() -> None:
    feed = Feed()
    sets = tset(template(256), ipfix=True) + dset(256, 0)
    got = feed(ipfix(sets) + b"\xff" * 20)
    assert rows(got) == flows(0)
    feed.check(ipfix_packets=1, templates=1, records=1, err_bad_length=1)


@pytest.mark.parametrize("cut", range(1, 24))
def test_short_headers(cut: int) -> None:
    feed = Feed()
    got = feed(v5(0)[:cut], v9(tset(template(256), ipfix=False))[:cut],
               ipfix(tset(template(256), ipfix=True))[:cut], v5(1))
    assert rows(got) == flows(1)
    short = (cut < 24) + (cut < 20) + (cut < 16)
    feed.check(err_short_packet=short, v5_packets=1, records=1,
               v9_packets=int(cut >= 20), ipfix_packets=int(cut >= 16),
               err_bad_length=int(cut >= 16), err_bad_set_length=int(cut >= 20))


@pytest.mark.parametrize("version", [0, 2, 6, 7, 8, 11, 0x0500, 0xFFFF])
def test_unknown_version(version: int) -> None:
    feed = Feed()
    got = feed(struct.pack("!H", version) + v5(0)[2:], v5(1))
    assert rows(got) == flows(1)
    feed.check(err_bad_version=1, v5_packets=1, records=1)


# ==== templates =============================================================================


@pytest.mark.parametrize("version", [9, 10])
def test_zero_length_fields_are_legal(version: int) -> None:
    is_ipfix = version == 10
    # paddingOctets (210) and an unknown element, both of length 0, between real fields
    fields = FIELDS[:2] + ((210, 0), (999, 0)) + FIELDS[2:]
    body = b"".join(rec(i) for i in (0, 1))
    feed = Feed()
    got = feed(packet(version, tset(template(300, fields), ipfix=is_ipfix), set_(300, body)))
    assert rows(got) == flows(0, 1)
    feed.check(**{"v9_packets" if version == 9 else "ipfix_packets": 1}, templates=1, records=2)


def test_v9_template_with_no_fields_is_bad() -> None:
    feed = Feed()
    got = feed(v9(tset(template(256), template(257, ()), template(258), ipfix=False),
                  dset(256, 0), dset(258, 1)))
    # the set is abandoned at the bad template: 258 after it is never learned
    assert rows(got) == flows(0)
    feed.check(v9_packets=1, templates=1, records=1, err_bad_template=1, no_template_sets=1)
    assert feed.decoder.pending_sets == 1


def test_ipfix_template_with_no_fields_is_a_withdrawal() -> None:
    feed = Feed()
    got = feed(ipfix(tset(template(256), template(257), ipfix=True), dset(256, 0), dset(257, 1)),
               ipfix(tset(template(256, ()), ipfix=True), seq=2),
               ipfix(dset(256, 2), dset(257, 3), seq=2))
    assert rows(got) == flows(0, 1, 3)
    feed.check(ipfix_packets=3, templates=2, records=3, template_withdrawals=1, no_template_sets=1)


def test_ipfix_withdraw_all_data_templates() -> None:
    feed = Feed()
    got = feed(ipfix(tset(template(256), template(257), ipfix=True), dset(256, 0), dset(257, 1)),
               ipfix(set_(2, struct.pack("!HH", 2, 0)), seq=2),
               ipfix(dset(256, 2), dset(257, 3), seq=2))
    assert rows(got) == flows(0, 1)
    feed.check(ipfix_packets=3, templates=2, records=2, template_withdrawals=1, no_template_sets=2)
    # the same template announced again: its data (held meanwhile) decodes
    got = feed(ipfix(tset(template(256), template(257), ipfix=True), seq=2))
    assert rows(got) == flows(2, 3)
    # (templates_changed: see test_readding_a_withdrawn_template_is_not_a_change)
    feed.check(ipfix_packets=4, templates=4, records=4, template_withdrawals=1,
               no_template_sets=2, pending_decoded_sets=2,
               ignore=("templates_changed",))


_OPT = set_(3, struct.pack("!HHH", 300, 2, 1) + struct.pack("!HHHH", 149, 4, 34, 4))
_OPT_DATA = set_(300, struct.pack("!II", 7, 10))


@pytest.mark.parametrize("tid", [300, 3])
def test_ipfix_withdraw_options_template(tid: int) -> None:
    feed = Feed()
    feed(ipfix(_OPT), ipfix(set_(3, struct.pack("!HH", tid, 0))), ipfix(_OPT_DATA))
    feed.check(ipfix_packets=3, options_templates=1, template_withdrawals=1, no_template_sets=1)


def test_readding_a_withdrawn_template_is_not_a_change() -> None:
    feed = Feed()
    feed(ipfix(tset(template(256), ipfix=True)), ipfix(tset(template(256, ()), ipfix=True)),
         ipfix(tset(template(256), ipfix=True)))
    feed.check(ipfix_packets=3, templates=2, template_withdrawals=1)


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("count", [1025, 65535])
def test_template_claiming_too_many_fields(version: int, count: int) -> None:
    is_ipfix = version == 10
    feed = Feed()
    huge = template(257, FIELDS, count=count)  # claims `count`, carries 7
    got = feed(packet(version, tset(template(256), huge, ipfix=is_ipfix), dset(256, 0),
                      dset(257, 1)))
    assert rows(got) == flows(0)
    feed.check(**{"v9_packets" if version == 9 else "ipfix_packets": 1}, templates=1,
               records=1, err_bad_template=1, no_template_sets=1)


@pytest.mark.parametrize("version", [9, 10])
def test_template_running_past_its_set(version: int) -> None:
    is_ipfix = version == 10
    feed = Feed()
    cut = template(257)[:-6]  # the last field specifier and a half are missing
    got = feed(packet(version, tset(template(256), cut, ipfix=is_ipfix), dset(256, 0)))
    assert rows(got) == flows(0)
    feed.check(**{"v9_packets" if version == 9 else "ipfix_packets": 1}, templates=1,
               records=1, err_bad_template=1)


@pytest.mark.parametrize("version", [9, 10])
def test_zero_record_length_template_does_not_loop(version: int) -> None:
    is_ipfix = version == 10
    feed = Feed()
    zero = template(300, ((1, 0), (2, 0), (210, 0)))
    got = feed(packet(version, tset(zero, template(256), ipfix=is_ipfix), dset(256, 0),
                      set_(300, bytes(1000)), dset(256, 1)),
               packet(version, set_(300, bytes(8)), seq=1 if version == 9 else 2))
    assert rows(got) == flows(0, 1)
    # the definition and each data set that refers to it
    feed.check(**{"v9_packets" if version == 9 else "ipfix_packets": 2}, templates=2,
               records=2, err_bad_template=3)


def test_variable_length_field_running_past_its_set() -> None:
    # src_addr, if_name (variable), bytes
    fields = ((8, 4), (82, 0xFFFF), (1, 8))
    good = be(1, 4) + b"\x03eth" + be(100, 8)
    long_form = be(2, 4) + b"\xff\x00\x02ab" + be(200, 8)
    for bad in (be(3, 4) + b"\x09eth" + be(1, 8),  # 9 bytes claimed, 3 + 8 there
                be(3, 4) + b"\xff\x01\x00" + be(1, 8)):  # 3-byte form claiming 256
        feed = Feed()
        got = feed(ipfix(tset(template(300, fields), ipfix=True), set_(300, good + long_form + bad),
                         set_(300, good)))
        assert got["src_addr"].tolist() == [1, 2, 1]
        assert got["bytes"].tolist() == [100, 200, 100]
        assert [got.text("if_name", i) for i in range(3)] == ["eth", "ab", "eth"]
        feed.check(ipfix_packets=1, templates=1, records=3, err_truncated_record=1)


@pytest.mark.parametrize("version,set_ids", [(9, (2, 3, 100, 255)), (10, (0, 1, 4, 100, 255))])
def test_reserved_set_ids(version: int, set_ids: tuple[int, ...]) -> None:
    is_ipfix = version == 10
    feed = Feed()
    junk = [set_(i, bytes(8)) for i in set_ids]
    got = feed(packet(version, tset(template(256), ipfix=is_ipfix), *junk, dset(256, 0)))
    assert rows(got) == flows(0)
    feed.check(**{"v9_packets" if version == 9 else "ipfix_packets": 1}, templates=1,
               records=1, err_bad_set_id=len(set_ids))


@pytest.mark.parametrize("version", [9, 10])
def test_template_redefinition(version: int) -> None:
    is_ipfix = version == 10
    other = ((12, 4), (8, 4), (2, 8))  # dst_addr, src_addr, packets
    feed = Feed()
    seq = iter((0, 1, 2) if version == 9 else (0, 1, 1))  # IPFIX counts records
    got = feed(packet(version, tset(template(256), ipfix=is_ipfix), dset(256, 0), seq=next(seq)),
               packet(version, tset(template(256), ipfix=is_ipfix), seq=next(seq)),  # refresh
               packet(version, tset(template(256, other), ipfix=is_ipfix),
                      set_(256, be(5, 4) + be(6, 4) + be(7, 8)), seq=next(seq)))
    assert rows(got, ("src_addr", "dst_addr", "packets")) == [flow(0)[:2] + flow(0)[6:], (6, 5, 7)]
    assert got["bytes"].tolist() == [flow(0)[5], 0]  # not in the new layout
    feed.check(**{"v9_packets" if version == 9 else "ipfix_packets": 3}, templates=3,
               records=2, templates_changed=1)


# ==== v5 header count =======================================================================


def test_v5_count_larger_than_the_datagram() -> None:
    feed = Feed()
    got = feed(v5(0, 1, count=30), v5(2, seq=30))
    assert rows(got) == flows(0, 1, 2)
    feed.check(v5_packets=2, records=3, err_count_mismatch=1)


def test_v5_partial_record_is_not_a_record() -> None:
    feed = Feed()
    got = feed(v5(0, 1, count=3, extra=v5(2)[24:70]))
    assert rows(got) == flows(0, 1)
    feed.check(v5_packets=1, records=2, err_count_mismatch=1)


def test_v5_count_smaller_than_the_datagram() -> None:
    """v5 has no other length than the count: bytes past `count` records are not trusted
    (they may be padding or garbage); the disagreement is counted."""
    feed = Feed()
    got = feed(v5(0, 1, 2, count=1))
    feed.check(v5_packets=1, records=1, err_count_mismatch=1)
    assert rows(got) == flows(0)


# ==== data before its template ==============================================================


@pytest.mark.parametrize("version", [9, 10])
def test_data_before_template_is_held_then_decoded(version: int) -> None:
    is_ipfix = version == 10
    feed = Feed()
    vkey = "v9_packets" if version == 9 else "ipfix_packets"
    got = feed(packet(version, dset(256, 0, 1), seq=0), packet(version, dset(257, 2), seq=1))
    assert got.n == 0
    assert feed.decoder.pending_sets == 2
    feed.check(**{vkey: 2}, no_template_sets=2)
    got = feed(packet(version, tset(template(256), ipfix=is_ipfix), dset(256, 3), seq=2),
               recv_ns=T0_NS + 10**9)
    assert sorted(rows(got)) == flows(0, 1, 3)
    assert feed.decoder.pending_sets == 1
    feed.check(**{vkey: 3}, no_template_sets=2, pending_decoded_sets=1, templates=1,
               records=3)
    # held data keeps its own receive time
    assert sorted(got["recv_time_ns"].tolist()) == [T0_NS, T0_NS, T0_NS + 10**9]


@pytest.mark.parametrize("version", [9, 10])
def test_data_before_template_expires(version: int) -> None:
    is_ipfix = version == 10
    vkey = "v9_packets" if version == 9 else "ipfix_packets"
    feed = Feed(pending_max_age_s=5.0)
    feed(packet(version, dset(256, 0), seq=0))
    feed(v5(9), recv_ns=T0_NS + 5 * 10**9)  # exactly the age limit: kept
    assert feed.decoder.pending_sets == 1
    feed(v5(9, seq=1), recv_ns=T0_NS + 5 * 10**9 + 1)
    assert feed.decoder.pending_sets == 0
    got = feed(packet(version, tset(template(256), ipfix=is_ipfix), seq=1),
               recv_ns=T0_NS + 6 * 10**9)
    assert got.n == 0
    feed.check(**{vkey: 2}, v5_packets=2, records=2, no_template_sets=1, pending_expired_sets=1,
               templates=1)


def test_pending_overflow_drops_the_oldest() -> None:
    feed = Feed(pending_max_sets=3)
    feed(*[v9(dset(256, i), seq=i) for i in range(5)])
    assert feed.decoder.pending_sets == 3
    got = feed(v9(tset(template(256), ipfix=False), seq=5))
    assert rows(got) == flows(2, 3, 4)
    feed.check(v9_packets=6, no_template_sets=5, pending_expired_sets=2,
               pending_decoded_sets=3, templates=1, records=3)


_ORPHAN_FLOOD = textwrap.dedent(
    """
    import struct
    from appliance.collector.decode.decoder import Decoder
    from appliance.collector.receive.packets import PacketBatch
    sets = b"".join(struct.pack("!HH", 256 + i % 1000, 4) for i in range(5000))
    pkt = struct.pack("!HHIIII", 9, 5000, 0, 0, 0, 0) + sets
    dec = Decoder(capacity=16)
    assert list(dec.decode(PacketBatch.from_payloads([pkt]))) == []
    c = dec.exporter_stats()[0].counters
    assert dec.pending_sets == 4096, dec.pending_sets
    assert c["no_template_sets"] == 5000, c
    assert c["pending_expired_sets"] == 904, c
    print("ok")
    """
)


def test_many_orphan_sets_in_one_datagram() -> None:
    # in a child process: the overflow corrupts the heap of whoever runs it
    proc = subprocess.run([sys.executable, "-c", _ORPHAN_FLOOD], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# ==== sequence numbers ======================================================================


def _session(version: int, n_packets: int) -> list[bytes]:
    enc = _encoder(version)
    return [enc.encode(columns(*range(4 * k, 4 * k + 1 + k % 3)))[0] for k in range(n_packets)]


def test_v5_lost_flows() -> None:
    pkts = _session(5, 6)  # 1, 2, 3, 1, 2, 3 records
    feed = Feed()
    got = feed(pkts[0], pkts[1], pkts[4], pkts[5])
    assert len(rows(got)) == 1 + 2 + 2 + 3
    feed.check(v5_packets=4, records=8, lost_flows=3 + 1)
    feed(pkts[0])  # the exporter restarted
    feed.check(v5_packets=5, records=9, lost_flows=4, seq_resets=1)


def test_v9_lost_packets() -> None:
    pkts = _session(9, 6)
    feed = Feed()
    feed(pkts[0], pkts[3], pkts[5])
    feed.check(v9_packets=3, templates=3, records=1 + 1 + 3, padding_bytes=3 + 3 + 1,
               lost_packets=3)


def test_ipfix_lost_flows() -> None:
    pkts = _session(10, 6)
    feed = Feed()
    got = feed(pkts[0], pkts[3], pkts[5])
    assert got.n == 1 + 1 + 3
    feed.check(ipfix_packets=3, templates=3, records=5, lost_flows=2 + 3 + 2)


def test_sequence_per_source() -> None:
    # two v9 source ids of one exporter keep separate sequences
    feed = Feed()
    t = tset(template(256), ipfix=False)
    feed(v9(t, seq=0, sid=1), v9(t, seq=100, sid=2), v9(t, seq=1, sid=1), v9(t, seq=103, sid=2))
    feed.check(v9_packets=4, templates=4, lost_packets=2)


# ==== padding ===============================================================================


@pytest.mark.parametrize("pad", [1, 3, 4, 12, 100])
def test_v9_zero_padding_after_the_last_set(pad: int) -> None:
    feed = Feed()
    got = feed(v9(tset(template(256), ipfix=False), dset(256, 0)) + bytes(pad),
               v9(dset(256, 1), seq=1))
    assert rows(got) == flows(0, 1)
    feed.check(v9_packets=2, templates=1, records=2, padding_bytes=pad if pad >= 4 else 0)


# ==== tables growing under load =============================================================


def test_many_exporters_are_counted_apart() -> None:
    exporters = [f"10.0.{i // 256}.{i % 256}" for i in range(300)]  # > the initial 64 rows
    feed = Feed()
    got = feed(*[v5(i) if i % 3 else b"\x00\x07junk" for i in range(300)], exporter=exporters)
    assert rows(got) == flows(*(i for i in range(300) if i % 3))
    stats = {s.address: {k: v for k, v in s.counters.items() if v}
             for s in feed.decoder.exporter_stats()}
    for i, e in enumerate(exporters):
        kind = {"v5_packets": 1, "records": 1} if i % 3 else {"err_bad_version": 1}
        assert stats[e] == {"packets": 1, "bytes": feed.sent[e, "bytes"], **kind}


def test_template_tables_grow_and_compact() -> None:
    feed = Feed(template_quota=0)  # one exporter with 32,000 templates: no per-exporter quota here
    # 4 × 8000 one-field templates (past the initial template table) ...
    many = [v9(set_(0, b"".join(template(256 + i, ((8, 4),)) for i in range(8000))), sid=s)
            for s in range(4)]
    got = feed(*many, v9(set_(8255, be(7, 4)), sid=3, seq=1))
    assert got["src_addr"].tolist() == [7]
    feed.check(v9_packets=5, templates=32_000, records=1)
    # ... and 1000-field redefinitions whose old field rows must be compacted away
    feed = Feed()
    pkts = []
    for k in range(200):
        fields = tuple((1000 + (j + k % 2) % 7, 1) for j in range(999)) + ((8, 4),)
        pkts.append(v9(tset(template(256, fields), ipfix=False), set_(256, bytes(999) + be(k, 4)),
                       seq=k))
    got = FlowBatch.concat([feed(*pkts[:100]), feed(*pkts[100:])])
    assert got["src_addr"].tolist() == list(range(200))
    feed.check(v9_packets=200, templates=200, templates_changed=199, records=200)


# ==== a flood of junk =======================================================================

_VERSIONS = np.array([0, 1, 5, 9, 10, 10, 9, 5, 0xFFFF], dtype=np.int64)


def _junk(rng: np.random.Generator, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        size = int(rng.choice([rng.integers(0, 30), rng.integers(0, 1500)]))
        b = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        if size >= 2 and rng.random() < 0.8:
            b[0:2] = int(rng.choice(_VERSIONS)).to_bytes(2, "big")
        if size >= 4 and b[1] == 10 and rng.random() < 0.5:
            b[2:4] = size.to_bytes(2, "big")  # a consistent IPFIX length: sets get walked
        at = 20 if b[1:2] == b"\x09" else 16
        if size >= at + 2 and rng.random() < 0.5:  # a template or data set id first
            b[at : at + 2] = int(rng.choice([0, 1, 2, 3, 256])).to_bytes(2, "big")
        out.append(bytes(b))
    return out


def _header_oracle(payloads: list[bytes]) -> tuple[Counter[str], int]:
    """Header-level counters and v5/v1 records of datagrams, from the wire formats alone."""
    c: Counter[str] = Counter()
    v5_records = 0
    for p in payloads:
        c["packets"] += 1
        c["bytes"] += len(p)
        version = int.from_bytes(p[:2], "big") if len(p) >= 4 else -1
        hlen, rlen = {1: (16, 48), 5: (24, 48), 9: (20, 0), 10: (16, 0)}.get(version, (0, 0))
        if len(p) < 4 or len(p) < hlen:
            c["err_short_packet"] += 1
        elif not hlen:
            c["err_bad_version"] += 1
        elif rlen:
            c["v5_packets"] += 1
            v5_records += min(int.from_bytes(p[2:4], "big"), (len(p) - hlen) // rlen)
        elif version == 9:
            c["v9_packets"] += 1
        else:
            mlen = int.from_bytes(p[2:4], "big")
            c["err_bad_length"] += int(mlen != len(p))
            c["ipfix_packets"] += int(mlen >= 16)
    return c, v5_records


def _check_invariants(feed: Feed, payloads: list[bytes], decoded: list[FlowBatch]) -> None:
    """What holds for any input: header counters, records out = RECORDS, held sets conserved."""
    header, v5_records = _header_oracle(payloads)
    got = Counter(feed.counters())
    for key in ("packets", "bytes", "err_short_packet", "err_bad_version", "v5_packets",
                "v9_packets", "ipfix_packets", "err_bad_length"):
        assert got[key] == header[key], key
    n = sum(b.n for b in decoded)
    assert n == got["records"]
    assert sum(int((b["version"] <= 5).sum()) for b in decoded) == v5_records
    held = got["pending_decoded_sets"] + got["pending_expired_sets"] + feed.decoder.pending_sets
    assert held == got["no_template_sets"]
    assert all(v >= 0 for v in got.values())


def test_flood_of_junk_from_one_exporter() -> None:
    rng = np.random.default_rng(20240611)
    junk = _junk(rng, 10_000)
    feed = Feed(capacity=64)
    decoded = []
    for k in range(0, len(junk), 1000):
        decoded.append(feed(*junk[k : k + 1000], recv_ns=T0_NS + k * 10**7))
    _check_invariants(feed, junk, decoded)
    assert feed.counters()["packets"] == 10_000
    before = Counter(feed.counters())
    valid = ipfix(tset(template(4242), ipfix=True), dset(4242, 0, 1), domain=0xFEEDF00D)
    got = feed(valid)
    assert rows(got) == flows(0, 1)
    after = Counter(feed.counters())
    after.subtract(before)
    assert +after == Counter(packets=1, bytes=len(valid), ipfix_packets=1, templates=1, records=2)


# ==== property-based: random bytes with a plausible header ==================================

_SET_IDS = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 255, 256, 257, 300]), st.integers(0, 0xFFFF))
_BODY = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda t: template(t, FIELDS), st.sampled_from([256, 257, 300])),
    st.builds(lambda t, n: template(t, FIELDS, count=n), st.sampled_from([0, 2, 3, 256]),
              st.sampled_from([0, 1, 8, 1024, 0xFFFF])),
    st.builds(lambda k: b"".join(rec(i) for i in range(k)), st.integers(0, 3)),
)


@st.composite
def _set(draw: st.DrawFn) -> bytes:
    body = draw(_BODY)
    length = draw(st.one_of(st.just(4 + len(body)), st.integers(0, 0xFFFF)))
    return struct.pack("!HH", draw(_SET_IDS), length) + body


@st.composite
def plausible_datagram(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([1, 5, 9, 10]))
    if version in (1, 5):
        head = struct.pack("!HH", version, draw(st.integers(0, 40)))
        return head + draw(st.binary(max_size=300))
    hlen = 16 if version == 10 else 20
    rest = draw(st.binary(min_size=hlen - 4, max_size=hlen - 4))
    sets = b"".join(draw(st.lists(_set(), max_size=5)))
    tail = draw(st.binary(max_size=8))
    length = 16 + len(sets) if version == 10 else draw(st.integers(0, 0xFFFF))
    if version == 10 and draw(st.booleans()):
        length = draw(st.integers(0, 0xFFFF))
    out = struct.pack("!HH", version, length) + rest + sets + tail
    return out[: draw(st.integers(0, len(out)))] if draw(st.integers(0, 9)) == 0 else out


_DECODER_SHAPES = st.fixed_dictionaries({
    "capacity": st.sampled_from([1, 2, 5, 256]),
    "pending_max_sets": st.sampled_from([1, 3, 4096]),
    "emit_options": st.just(False),
})


@FUZZ
@given(
    calls=st.lists(st.lists(plausible_datagram(), min_size=1, max_size=6), min_size=1, max_size=3),
    shape=_DECODER_SHAPES,
)
def test_fuzz_plausible_headers(calls: list[list[bytes]], shape: dict) -> None:
    feed = Feed(pending_max_age_s=1.0, **shape)
    decoded = []
    for k, payloads in enumerate(calls):
        decoded.append(feed(*payloads, recv_ns=T0_NS + k * 700_000_000))
    _check_invariants(feed, [p for c in calls for p in c], decoded)


# ==== property-based: mutated encoder output ================================================


def _valid_session() -> list[bytes]:
    """A little of everything the encoders make: v5, v9 and IPFIX with options and strings."""
    clock = lambda: T0_NS  # noqa: E731
    names = NAMES + ("flow_start_ms", "flow_end_ms")
    cols = {**columns(0, 1, 2), "flow_start_ms": T0_NS // 10**6 - 500,
            "flow_end_ms": T0_NS // 10**6 - 100}
    v9e = V9Encoder([template_for(names, 256), sampler_template(257, 9)], clock=clock,
                    boot_ns=BOOT_NS, source_id=3)
    ipe = IPFIXEncoder([template_for(names, 256), template_for(names, 258, ipv6=True),
                        interface_template(259, 10), sampler_template(260, 10)],
                       clock=clock, boot_ns=BOOT_NS, observation_domain=5)
    v6 = {**cols, "src_addr6": np.arange(48, dtype=np.uint8).reshape(3, 16),
          "dst_addr6": np.ones((3, 16), dtype=np.uint8)}
    return [
        *V5Encoder(clock=clock, boot_ns=BOOT_NS, sampling_interval=10).encode(cols),
        *v9e.encode({"scope_system": 3, "sampler_id": 1, "sampler_mode": 2,
                     "sampler_random_interval": 100, "sampling_interval": 100,
                     "sampling_algorithm": 2}, 257),
        *v9e.encode({**cols, "flow_start_ms": cols["flow_start_ms"]}),
        *ipe.encode({"in_if": [1, 2], "if_name": ["eth0", "a-much-longer-interface-name"],
                     "if_desc": ["", "uplink"]}, 259),
        *ipe.encode(cols),
        *ipe.encode(v6, 258),
        *ipe.encode({"selector_id": 1, "selector_algorithm": 1, "sampling_packet_interval": 1,
                     "sampling_packet_space": 99}, 260),
    ]


SESSION = _valid_session()


def _length_offsets(pkt: bytes) -> list[int]:
    """Where the length-like fields of a valid packet are: header count/length, set lengths."""
    version = int.from_bytes(pkt[:2], "big")
    offs = [2]
    if version in (9, 10):
        hlen = 16 if version == 10 else 20
        pos = hlen
        while pos + 4 <= len(pkt):
            offs.append(pos + 2)
            slen = int.from_bytes(pkt[pos + 2 : pos + 4], "big")
            set_id = int.from_bytes(pkt[pos : pos + 2], "big")
            if set_id in ((2, 3) if version == 10 else (0, 1)):
                offs.append(pos + 6)  # the field count of the first template
            pos += max(slen, 4)
    return offs


_MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("length"), st.integers(0, 10**6),
              st.sampled_from([0, 1, 3, 4, 5, 0x7FFF, 0xFFFE, 0xFFFF])),
)


def _mutate(pkt: bytes, mutations: list[tuple]) -> bytes:
    b = bytearray(pkt)
    for m in mutations:
        if not b:
            break
        if m[0] == "flip":
            b[m[1] % len(b)] ^= 1 << m[2]
        elif m[0] == "cut":
            del b[m[1] % (len(b) + 1) :]
        elif m[0] == "insert":
            b[m[1] % (len(b) + 1) : m[1] % (len(b) + 1)] = m[2]
        else:
            offs = _length_offsets(bytes(b))
            at = offs[m[1] % len(offs)]
            if at + 2 <= len(b):
                b[at : at + 2] = m[2].to_bytes(2, "big")
    return bytes(b)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, len(SESSION) - 1), st.lists(_MUTATION, min_size=1,
                                                                          max_size=4)),
                   min_size=1, max_size=4),
    shape=_DECODER_SHAPES,
    split=st.integers(0, len(SESSION)),
)
def test_fuzz_mutated_encoder_output(edits: list[tuple[int, list[tuple]]], shape: dict,
                                     split: int) -> None:
    payloads = list(SESSION)
    for i, mutations in edits:
        payloads[i] = _mutate(payloads[i], mutations)
    feed = Feed(pending_max_age_s=1.0, **shape)
    decoded = [feed(*payloads[:split]), feed(*payloads[split:], recv_ns=T0_NS + 10**9)]
    _check_invariants(feed, payloads, decoded)


def test_valid_session_decodes_cleanly() -> None:
    """The mutation seed itself is clean, so mutations are what the fuzzer measures."""
    feed = Feed(capacity=2)
    got = feed(*SESSION)
    assert got.n == 3 * 4
    c = feed.counters()
    assert not {k for k in c if k.startswith("err_") or k in ("lost_flows", "lost_packets")}


# ==== property-based: round trip through the encoders =======================================

_WIDTH = {
    "src_addr": 32, "dst_addr": 32, "src_port": 16, "dst_port": 16, "proto": 8, "tos": 8,
    "tcp_flags": 8, "in_if": 16, "out_if": 16, "src_as": 16, "dst_as": 16, "src_mask": 5,
    "dst_mask": 5, "next_hop": 32,
}
_T0_MS = T0_NS // 10**6
_NAME_LENGTHS = (0, 1, 254, 255, 256, 300)  # around the 1-byte / 3-byte length forms


@st.composite
def flow_columns(draw: st.DrawFn, version: int) -> dict[str, list]:
    """Flows to encode. Hypothesis picks the count, a seed and how often values sit at the
    edges of their fields (0, the largest); numpy fills the columns, because drawing
    thousands of integers one by one through hypothesis would dominate the run time."""
    n = draw(st.integers(1, 70))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    edge = draw(st.sampled_from([0.0, 0.2, 0.8]))
    wide = 32 if version == 5 else 64
    cols: dict[str, list] = {}
    for name, bits in {**_WIDTH, "bytes": wide, "packets": wide}.items():
        top = np.uint64((1 << bits) - 1)
        v = rng.integers(0, top, n, dtype=np.uint64, endpoint=True)
        pick = rng.random(n)
        v = np.where(pick < edge / 2, np.uint64(0), np.where(pick < edge, top, v))
        cols[name] = [int(x) for x in v]
    starts = _T0_MS - rng.integers(0, 3_000_000, n)
    cols["flow_start_ms"] = [int(x) for x in starts]
    ends = starts + (rng.random(n) * (_T0_MS - starts)).astype(np.int64)
    cols["flow_end_ms"] = [int(x) for x in ends]
    if version == 10:
        cols["src_addr6"] = [rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for _ in range(n)]
        letters = np.array(list("ab-é€\x00"))
        cols["if_name"] = [
            "x" * int(rng.choice(_NAME_LENGTHS)) if rng.random() < edge
            else "".join(rng.choice(letters, int(rng.integers(0, 40))))
            for _ in range(n)
        ]
    return cols


def _encode(version: int, cols: dict[str, list]) -> list[bytes]:
    clock = lambda: T0_NS  # noqa: E731
    cols = {k: np.array(v, dtype=np.uint64) if k in _WIDTH or k in ("bytes", "packets") else v
            for k, v in cols.items()}
    if version == 5:
        return V5Encoder(clock=clock, boot_ns=BOOT_NS).encode(cols)
    names = [n for n in cols if n not in ("flow_start_ms", "flow_end_ms")]
    if version == 9:  # v9 times as uptime fields, converted back by the decoder
        tpl = template_for([*names, "first_switched", "last_switched"], 256)
        return V9Encoder([tpl], clock=clock, boot_ns=BOOT_NS, source_id=9).encode(cols)
    tpl = template_for([*names, "flow_start_ms", "flow_end_ms"], 256)
    enc_cols = dict(cols)
    enc_cols["src_addr6"] = np.frombuffer(b"".join(cols["src_addr6"]), np.uint8).reshape(-1, 16)
    return IPFIXEncoder([tpl], clock=clock, boot_ns=BOOT_NS, mtu=1500).encode(enc_cols)


@pytest.mark.parametrize("version", [5, 9, 10])
@FUZZ
@given(data=st.data(), capacity=st.sampled_from([1, 7, 256]))
def test_round_trip_through_the_encoders(version: int, data: st.DataObject, capacity: int) -> None:
    cols = data.draw(flow_columns(version))
    payloads = _encode(version, cols)
    feed = Feed(capacity=capacity)
    got = feed(*payloads, exporter=OTHER)
    n = len(cols["bytes"])
    assert got.n == n
    for name, want in cols.items():
        if name in ("flow_start_ms", "flow_end_ms"):
            continue  # v5 and v9 carry them as uptimes: compared as time_start/end_ms below
        if name == "src_addr6":
            pairs = [(int.from_bytes(a[:8], "big"), int.from_bytes(a[8:], "big")) for a in want]
            assert [tuple(r) for r in got[name].tolist()] == pairs
        elif name == "if_name":
            assert [got.octets(name, i).decode() for i in range(n)] == want
        else:
            assert got[name].tolist() == want, name
    assert got["time_start_ms"].tolist() == cols["flow_start_ms"]
    assert got["time_end_ms"].tolist() == cols["flow_end_ms"]
    assert set(got["version"].tolist()) == {version}
    k = {5: "v5_packets", 9: "v9_packets", 10: "ipfix_packets"}[version]
    hlen = {5: 0, 9: 20, 10: 16}[version]
    # packets that lead with a template set (the first one, and refreshes)
    templates = sum(hlen > 0 and p[hlen : hlen + 2] in (b"\0\0", b"\0\2") for p in payloads)
    feed.check(OTHER, ignore=("padding_bytes",), **{k: len(payloads)}, records=n,
               templates=templates)


def test_stat_names_cover_the_enum() -> None:
    """The counters these tests compare are exactly the Stat enum, by name."""
    feed = Feed()
    feed(v5(0))
    names = set(feed.decoder.exporter_stats()[0].counters)
    assert names == {s.name.lower() for s in Stat}
