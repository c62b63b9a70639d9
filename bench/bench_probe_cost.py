"""Benchmark: where the probe's userspace time goes per flow, stage by stage, at 1 M flows.

    sudo .venv/bin/python -m bench probe-cost                 # 1 M flows, real kernel map
    .venv/bin/python -m bench probe-cost --memory             # no root: MemoryFlowCache
    sudo .venv/bin/python -m bench probe-cost --flows 200000 --rounds 3

The kernel map is filled from userspace with one batch update (the eBPF program's side is
measured by `bench probe --flood`); then one scan is timed stage by stage with the process
CPU clock (user + system, so the syscalls' kernel time counts): drain (map swap + batch
lookup-and-delete), merge into the flow table, expiry (every flow is due: one-packet flows
past the inactive timeout, as in a spoofed-source flood), encode, send (UDP to a socket on
loopback that nobody reads; the datagrams are still built and sent). Printed per flow.
"""

from __future__ import annotations

import argparse
import ctypes as ct
import socket
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.probe.config import ProbeSettings  # noqa: E402 (needs the sys.path insert above)
from appliance.probe.kernel import MemoryFlowCache  # noqa: E402 (needs the sys.path insert above)
from appliance.probe.records import KEY_DTYPE, VAL_DTYPE  # noqa: E402 (needs the sys.path insert above)
from appliance.probe.runner import Probe, build_exporter  # noqa: E402 (needs the sys.path insert above)

_S = 1_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.mono = 100 * _S

    def monotonic_ns(self) -> int:
        return self.mono

    def time_ns(self) -> int:
        return 1_790_000_000 * _S + self.mono


def flood_flows(n: int, t0_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """n one-packet UDP flows from distinct (spoofed) sources to one victim."""
    keys = np.zeros(n, KEY_DTYPE)
    vals = np.zeros(n, VAL_DTYPE)
    i = np.arange(n, dtype=np.uint32)
    keys["src"][:, 0] = 10
    keys["src"][:, 1] = (i >> 16) & 0xFF
    keys["src"][:, 2] = (i >> 8) & 0xFF
    keys["src"][:, 3] = i & 0xFF
    keys["dst"][:, :4] = [192, 0, 2, 1]
    keys["sport"] = 1024 + (i >> 24)
    keys["dport"] = 53
    keys["proto"] = 17
    keys["ipver"] = 4
    keys["ifindex"] = 2
    vals["packets"] = 1
    vals["bytes"] = 46
    vals["first_ns"] = t0_ns + i.astype(np.uint64)
    vals["last_ns"] = vals["first_ns"]
    vals["min_ttl"] = vals["max_ttl"] = 64
    vals["src_mac"][:] = [2, 0, 0, 0, 0, 1]
    vals["dst_mac"][:] = [2, 0, 0, 0, 0, 2]
    return keys, vals


def cpu() -> float:
    return time.process_time()


def fill_kernel_map(cache, keys: np.ndarray, vals: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Writes the flows into the active kernel map with batch updates."""
    from bcc.libbcc import lib

    fd = cache._maps[cache._active].map_fd
    lib.bpf_update_batch.argtypes = [
        ct.c_int,
        ct.c_void_p,
        ct.c_void_p,
        ct.POINTER(ct.c_uint32),
    ]
    step = 65536
    for s in range(0, len(keys), step):
        k = np.ascontiguousarray(keys[s : s + step])
        v = np.ascontiguousarray(vals[s : s + step])
        cnt = ct.c_uint32(len(k))
        ret = lib.bpf_update_batch(fd, k.ctypes.data, v.ctypes.data, ct.byref(cnt))
        if ret != 0:
            raise RuntimeError(f"bpf_update_batch failed: {ret}")


def run(n: int, memory: bool, protocol: int, mtu: int = 1400) -> dict[str, float]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    dest = f"127.0.0.1:{sink.getsockname()[1]}"
    clock = FakeClock()
    s = ProbeSettings(
        interfaces=["x"],
        destinations=[dest],
        maxflows=max(65536, 2 * n),
        protocol=protocol,
        active_timeout=60,
        inactive_timeout=15,
        mtu=mtu,
    )
    if memory:
        cache = MemoryFlowCache(s.maxflows)
    else:
        from appliance.probe.kernel import KernelFlowCache

        cache = KernelFlowCache(s.maxflows)
    exporter = build_exporter(s, clock)
    probe = Probe(s, cache, exporter, clock)
    # warm up the compiled functions (their first call is not what a running probe pays)
    wk, wv = flood_flows(64, clock.mono)
    probe.table.merge(wk, wv)
    probe.scan(clock.mono + 10**6 * _S)
    probe.table.flush()
    clock.mono += 10**6 * _S

    for _ in range(
        2
    ):  # the first pass faults in the table's memory; the second is timed
        t = one_pass(probe, cache, clock, n, memory)
    probe.close()
    cache.close()
    sink.close()
    return {name: 1e9 * secs / n for name, secs in t.items()}


def one_pass(probe, cache, clock, n: int, memory: bool) -> dict[str, float]:  # type: ignore[no-untyped-def]
    keys, vals = flood_flows(n, clock.mono)
    if memory:
        cache.push(keys, vals)
    else:
        fill_kernel_map(cache, keys, vals)
    t: dict[str, float] = {}
    t["drain"] = t["merge"] = 0.0
    chunks = cache.drain_chunks()
    drained = 0
    while True:
        c0 = cpu()
        kv = next(chunks, None)
        t["drain"] += cpu() - c0
        if kv is None:
            break
        drained += len(kv[0])
        c0 = cpu()
        probe.table.merge(*kv)
        t["merge"] += cpu() - c0
    assert drained == n, (drained, n)
    clock.mono += 20 * _S
    t["expire"] = t["encode"] = t["send"] = 0.0
    chunks = probe.table.expire_chunks(clock.mono)
    while True:
        c0 = cpu()
        ended = next(chunks, None)
        t["expire"] += cpu() - c0
        if ended is None:
            break
        for stage, secs in probe.exporter.timed_export(
            ended, probe.epoch_offset_ns, cpu
        ).items():
            t[stage] += secs
    assert probe.exporter.flows_exported >= n
    return t


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3, help="best of (default 3)")
    ap.add_argument("--memory", action="store_true", help="MemoryFlowCache (no root)")
    ap.add_argument("--protocol", type=int, default=9, choices=(5, 9, 10))
    ap.add_argument(
        "--mtu", type=int, default=1400, help="export payload size (default 1400)"
    )
    args = ap.parse_args()
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        r = run(args.flows, args.memory, args.protocol, args.mtu)
        for k, v in r.items():
            best[k] = min(best.get(k, v), v)
    total = sum(best.values())
    where = "MemoryFlowCache" if args.memory else "kernel map (batch syscalls)"
    print(
        f"probe userspace cost per flow, {args.flows} one-packet flows, NetFlow "
        f"v{args.protocol}, {args.mtu}-byte datagrams, {where}, best of {args.rounds} (process CPU, user + system):"
    )
    for k, v in best.items():
        print(f"  {k:<8} {v:8.0f} ns")
    print(f"  {'total':<8} {total:8.0f} ns per flow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
