"""The numba export path (appliance.probe.wire) against the generic encoder, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.probe.exporter import Exporter, MemoryTransport, parse_destination
from appliance.probe.flowtable import FLOW_DTYPE
from appliance.probe.records import SamplerMode


def random_flows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.zeros(n, FLOW_DTYPE)
    raw = f.view(np.uint8).reshape(n, FLOW_DTYPE.itemsize)
    raw[:] = rng.integers(0, 256, raw.shape, dtype=np.uint8)
    k, v = f["key"], f["val"]
    k["ipver"] = np.where(rng.random(n) < 0.3, 6, 4)
    k["proto"] = rng.choice([1, 6, 17, 58, 47], n)
    v["first_ns"] = rng.integers(10**9, 10**13, n, dtype=np.uint64)
    v["last_ns"] = v["first_ns"] + rng.integers(0, 10**11, n, dtype=np.uint64)
    # counters of every size: small ones, ones that need clamping in narrow fields
    v["packets"] = rng.integers(0, 2**63, n, dtype=np.uint64) >> rng.integers(
        0, 63, n
    ).astype(np.uint64)
    v["mpls_depth"] = np.where(rng.random(n) < 0.2, 1, 0)
    f["end_reason"] = rng.integers(1, 5, n)
    return f


def two_exporters(protocol: int, **kw):  # type: ignore[no-untyped-def]
    out = []
    for fast in (True, False):
        t = MemoryTransport()
        ex = Exporter([parse_destination("127.0.0.1:9")], protocol, transports=[t],
                      clock=lambda: 1_790_000_000_123_456_789, boot_ns=1_789_000_000 * 10**9,
                      **kw)
        ex.fast = fast
        out.append((ex, t))
    return out


@pytest.mark.parametrize("protocol", [9, 10])
@pytest.mark.parametrize("kw", [
    {},
    {"sampler": (SamplerMode.RANDOM, 10), "direction_mac": bytes([2, 0, 0, 0, 0, 1])},
    {"mtu": 576, "template_refresh_packets": 3, "source_id": 77},
])
def test_fast_path_sends_the_generic_encoders_bytes(protocol, kw):
    (fast, tf), (slow, ts) = two_exporters(protocol, **kw)
    assert fast.plans and all(p is not None for p in fast.plans.values())
    for seed, n in ((1, 1), (2, 700), (3, 0), (4, 2500)):
        flows = random_flows(n, seed)
        if "direction_mac" in kw:
            flows["val"]["src_mac"][::3] = [2, 0, 0, 0, 0, 1]
        assert fast.export(flows, 5 * 10**17) == slow.export(flows, 5 * 10**17) == n
        fast.send_options(ignored_packets=seed, ignored_bytes=2 * seed)
        slow.send_options(ignored_packets=seed, ignored_bytes=2 * seed)
    assert len(tf.sent) == len(ts.sent) > 10
    for i, (a, b) in enumerate(zip(tf.sent, ts.sent, strict=True)):
        assert a == b, f"datagram {i} differs"
    assert fast.stats[0].flows == slow.stats[0].flows == 3201
    assert fast.encoder.messages_sent == slow.encoder.messages_sent
    assert fast.encoder.octets_sent == slow.encoder.octets_sent
