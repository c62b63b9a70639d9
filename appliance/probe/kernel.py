"""The eBPF flow cache: compile and load flowcache.bpf.c with bcc, configure it, drain it.

`KernelFlowCache` is the real one; `MemoryFlowCache` has the same surface over arrays a test
fills by hand (like httpx's mock transport), so the rest of the probe is tested without root.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

import numpy as np

from appliance.probe.errors import KernelError
from appliance.probe.records import KEY_DTYPE, N_COUNTERS, VAL_DTYPE, Counter, Feature, KeyField, SamplerMode

__all__ = ["FlowCache", "KernelFlowCache", "MemoryFlowCache", "KernelSettings", "SelfExport"]

BPF_SOURCE = "flowcache.bpf.c"
#: The hooks the program can be built for, and its entry point in each.
PROGRAMS = {"tc": "mf_ingress", "xdp": "mf_xdp"}
#: The most entries one batch syscall returns; a hash bucket never holds more.
DRAIN_CHUNK = 65536
#: UDP ports of our own export the kernel checks before its self_export lookups
MAX_SELF_PORTS = 8


@dataclass(frozen=True, slots=True)
class KernelSettings:
    """Run-time settings written into the `config` map (no recompilation needed)."""

    sampler_mode: SamplerMode = SamplerMode.OFF
    sampler_n: int = 1
    key_fields: KeyField = KeyField.full()
    features: Feature = Feature.MPLS | Feature.MACS


@dataclass(frozen=True, slots=True)
class SelfExport:
    """One destination whose UDP packets are our own export traffic."""

    ipver: int
    addr: bytes  # 4 or 16 bytes
    dport: int
    sport: int = 0


class FlowCache(Protocol):
    maxflows: int

    def configure(self, settings: KernelSettings) -> None: ...

    def set_self_export(self, entries: list[SelfExport]) -> None: ...

    def drain(self) -> tuple[np.ndarray, np.ndarray]: ...

    def drain_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def counters(self) -> np.ndarray: ...

    def close(self) -> None: ...


def _source_path() -> str:
    return str(resources.files("appliance.probe").joinpath(BPF_SOURCE))


class _ProgLoadOpts(ct.Structure):
    """The head of libbpf's struct bpf_prog_load_opts (its `sz` says how much we give)."""

    _fields_ = [("sz", ct.c_size_t), ("attempts", ct.c_int), ("expected_attach_type", ct.c_int),
                ("prog_btf_fd", ct.c_uint32), ("prog_flags", ct.c_uint32)]


BPF_PROG_TYPE_XDP = 6
BPF_F_XDP_HAS_FRAGS = 1 << 5


def _load_xdp_with_frags(bpf: object, name: str) -> int:
    """Loads bcc's compiled XDP program through libbpf with BPF_F_XDP_HAS_FRAGS (the parser
    reads with bpf_xdp_load_bytes, which handles multi-buffer frames), so that native XDP
    accepts MTUs above one page (jumbo frames, veth). bcc 0.26's load_func cannot pass program
    flags. Returns the program fd, or -1 (then native XDP uses bcc's copy, without the flag)."""
    try:
        libbpf = ct.CDLL("libbpf.so.1", use_errno=True)
    except OSError:
        return -1
    from bcc.libbcc import lib

    module = bpf.module  # type: ignore[attr-defined]
    fname = name.encode()
    start = lib.bpf_function_start(module, fname)
    size = lib.bpf_function_size(module, fname)
    if not start or not size:
        return -1
    libbpf.bpf_prog_load.restype = ct.c_int
    libbpf.bpf_prog_load.argtypes = [ct.c_int, ct.c_char_p, ct.c_char_p, ct.c_void_p,
                                     ct.c_size_t, ct.POINTER(_ProgLoadOpts)]
    opts = _ProgLoadOpts(sz=ct.sizeof(_ProgLoadOpts), prog_flags=BPF_F_XDP_HAS_FRAGS)
    fd = libbpf.bpf_prog_load(BPF_PROG_TYPE_XDP, fname, lib.bpf_module_license(module), start,
                              size // 8, ct.byref(opts))
    return fd if fd >= 0 else -1


class KernelFlowCache:
    """The loaded eBPF program and its maps.

    Args:
        maxflows: entries of each flow map (the kernel refuses and counts inserts beyond it).
        hook: "tc" (clsact ingress, the default) or "xdp"; the same parser is built for either.
        cflags: extra compiler flags (tests use them for nothing else than -D overrides).
    """

    def __init__(self, maxflows: int = 2_000_000, cflags: tuple[str, ...] = (),
                 hook: str = "tc") -> None:
        try:
            import bcc
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise KernelError(
                "bcc is not importable: install python3-bpfcc and use a venv created with "
                "--system-site-packages"
            ) from exc
        if maxflows < 1:
            raise KernelError("maxflows must be at least 1")
        if hook not in PROGRAMS:
            raise KernelError(f"hook must be one of {', '.join(PROGRAMS)}, not {hook!r}")
        self.maxflows = int(maxflows)
        self.hook = hook
        self._bcc = bcc
        flags = [f"-DMF_MAXFLOWS={self.maxflows}", *(["-DMF_XDP"] if hook == "xdp" else []),
                 *cflags]
        prog_type = bcc.BPF.XDP if hook == "xdp" else bcc.BPF.SCHED_CLS
        self._native_fd = -1
        try:
            self._bpf = bcc.BPF(src_file=_source_path().encode(), cflags=flags)
            self.prog_fd: int = self._bpf.load_func(PROGRAMS[hook].encode(), prog_type).fd
            if hook == "xdp":
                self._native_fd = _load_xdp_with_frags(self._bpf, PROGRAMS[hook])
        except Exception as exc:
            raise KernelError(
                f"could not compile/load {BPF_SOURCE}: {exc}. Kernel headers must be at "
                f"/lib/modules/{os.uname().release}/build (see scripts/setup)"
            ) from exc
        self._maps = (self._bpf[b"flows_a"], self._bpf[b"flows_b"])
        self._active_map = self._bpf[b"active"]
        self._counters = self._bpf[b"counters"]
        self._config = self._bpf[b"config"]
        self._self_export = self._bpf[b"self_export"]
        self._if_macs = self._bpf[b"if_macs"]
        self._ncpu = len(self._counters.getvalue(0))
        self._self_entries: list[SelfExport] = []
        self._settings = KernelSettings()
        self._active = 0
        self._point_at(0)
        self._lock = threading.Lock()
        chunk = min(self.maxflows, DRAIN_CHUNK)
        self._keybuf = np.zeros(chunk, KEY_DTYPE)
        self._valbuf = np.zeros(chunk, VAL_DTYPE)
        self.configure(KernelSettings())

    @property
    def ncpu(self) -> int:
        return self._ncpu

    def _point_at(self, index: int) -> None:
        # The update of an array-of-maps waits for an RCU grace period in the kernel
        # (maybe_wait_bpf_programs): after it returns no program writes the other map.
        self._active_map[ct.c_int(0)] = ct.c_int(self._maps[index].map_fd)
        self._active = index

    def configure(self, settings: KernelSettings) -> None:
        if settings.sampler_mode != SamplerMode.OFF and settings.sampler_n < 1:
            raise KernelError("sampler rate must be at least 1")
        self._settings = settings
        self._write_config()

    def _write_config(self) -> None:
        settings = self._settings
        leaf = self._config.Leaf()
        leaf.sampler_mode = int(settings.sampler_mode)
        leaf.sampler_n = int(settings.sampler_n)
        leaf.key_fields = int(settings.key_fields)
        leaf.features = int(settings.features)
        ports = sorted({e.dport for e in self._self_entries})
        if len(ports) > MAX_SELF_PORTS:
            leaf.n_self_dports = MAX_SELF_PORTS + 1  # the kernel then looks every UDP packet up
        else:
            leaf.n_self_dports = len(ports)
            for i, port in enumerate(ports):
                leaf.self_dports[i] = port
        self._config[ct.c_int(0)] = leaf

    def set_self_export(self, entries: list[SelfExport]) -> None:
        self._self_export.clear()
        for e in entries:
            key = self._self_export.Key()
            addr = e.addr.ljust(16, b"\0")
            for i in range(16):
                key.addr[i] = addr[i]
            key.dport = e.dport
            key.sport = e.sport
            key.ipver = e.ipver
            self._self_export[key] = ct.c_uint8(1)
        self._self_entries = list(entries)
        self._write_config()

    def set_interface_mac(self, ifindex: int, mac: bytes) -> None:
        """The MAC of an attached interface: XDP counts frames to other MACs as promisc-only
        (TC asks the stack, skb->pkt_type)."""
        leaf = self._if_macs.Leaf()
        for i in range(6):
            leaf.addr[i] = mac[i]
        self._if_macs[ct.c_uint32(ifindex)] = leaf

    def forget_interface_mac(self, ifindex: int) -> None:
        """Drops the MAC of an interface that went away (the map holds 64)."""
        try:
            del self._if_macs[ct.c_uint32(ifindex)]
        except KeyError:
            pass

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        """Swap the maps and return everything counted into the old one (then empty it).

        Returns:
            (keys, values) arrays of KEY_DTYPE / VAL_DTYPE.
        """
        parts = [(k.copy(), v.copy()) for k, v in self.drain_chunks()]
        if not parts:
            return np.zeros(0, KEY_DTYPE), np.zeros(0, VAL_DTYPE)
        return np.concatenate([k for k, _ in parts]), np.concatenate([v for _, v in parts])

    def drain_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """`drain` in chunks of at most DRAIN_CHUNK entries: views of one reused buffer, valid
        until the next chunk is asked for (no copies, no fresh memory to fault in)."""
        with self._lock:
            old = self._active
            self._point_at(1 - old)
            yield from self._read_and_clear(self._maps[old].map_fd)

    def _read_and_clear(self, fd: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        lib = self._bcc.libbcc.lib
        chunk = len(self._keybuf)
        in_batch = ct.c_uint32(0)
        out_batch = ct.c_uint32(0)
        first = True
        while True:
            cnt = ct.c_uint32(chunk)
            ret = lib.bpf_lookup_and_delete_batch(
                fd,
                None if first else ct.byref(in_batch),
                ct.byref(out_batch),
                self._keybuf.ctypes.data,
                self._valbuf.ctypes.data,
                ct.byref(cnt),
            )
            err = -ret if ret < 0 else 0  # libbpf returns -errno
            n = cnt.value
            if n:
                yield self._keybuf[:n], self._valbuf[:n]
            if ret != 0:
                if err == errno.ENOENT:
                    break
                raise KernelError(f"draining the flow map failed: {os.strerror(err)}")
            in_batch.value = out_batch.value
            first = False

    def counters(self) -> np.ndarray:
        """Per-CPU counters, uint64[ncpu, N_COUNTERS] (one batch lookup syscall)."""
        lib = self._bcc.libbcc.lib
        keys = np.arange(N_COUNTERS, dtype=np.uint32)
        vals = np.zeros((N_COUNTERS, self._ncpu), np.uint64)
        cnt = ct.c_uint32(N_COUNTERS)
        out_batch = ct.c_uint32(0)
        ret = lib.bpf_lookup_batch(self._counters.map_fd, None, ct.byref(out_batch),
                                   keys.ctypes.data, vals.ctypes.data, ct.byref(cnt))
        if (ret != 0 and -ret != errno.ENOENT) or cnt.value != N_COUNTERS:
            return self._counters_one_by_one()
        return np.ascontiguousarray(vals.T)

    def _counters_one_by_one(self) -> np.ndarray:
        out = np.zeros((self._ncpu, N_COUNTERS), np.uint64)
        for i in range(N_COUNTERS):
            vals = self._counters.getvalue(self._counters.Key(i))
            for c, v in enumerate(vals):
                out[c, i] = v.value if hasattr(v, "value") else v
        return out

    def reset(self) -> None:
        """Empty both flow maps and the counters (tests reuse one compiled program)."""
        with self._lock:
            for m in self._maps:
                for _ in self._read_and_clear(m.map_fd):
                    pass
            self._counters.clear()
            self._bpf[b"sampler_state"].clear()

    def program_fd(self, xdp_mode: str = "native") -> int:
        """The program to attach. Native XDP gets the copy loaded with BPF_F_XDP_HAS_FRAGS
        (drivers refuse others above a one-page MTU); generic XDP the plain one, because the
        stack then linearises each frame and hands it on intact (with a frags-aware program
        in generic mode, 6.x kernels passed frames to TC without their MAC header)."""
        if self.hook == "xdp" and xdp_mode == "native" and self._native_fd >= 0:
            return self._native_fd
        return self.prog_fd

    def close(self) -> None:
        if self._native_fd >= 0:
            os.close(self._native_fd)
            self._native_fd = -1
        self._bpf.cleanup()


class MemoryFlowCache:
    """A FlowCache whose 'kernel' is a list of (keys, values) batches a test pushes."""

    def __init__(self, maxflows: int = 65536, ncpu: int = 2) -> None:
        self.maxflows = maxflows
        self.ncpu = ncpu
        self.settings = KernelSettings()
        self.self_export: list[SelfExport] = []
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._counters = np.zeros((ncpu, N_COUNTERS), np.uint64)

    def configure(self, settings: KernelSettings) -> None:
        self.settings = settings

    def set_self_export(self, entries: list[SelfExport]) -> None:
        self.self_export = list(entries)

    def push(self, keys: np.ndarray, values: np.ndarray) -> None:
        self.pending.append((keys, values))
        self._counters[0, Counter.ACCOUNTED_PACKETS] += np.uint64(values["packets"].sum())
        self._counters[0, Counter.ACCOUNTED_BYTES] += np.uint64(values["bytes"].sum())
        self._counters[0, Counter.NEW_FLOWS] += np.uint64(len(keys))

    def add_counter(self, counter: Counter, n: int, cpu: int = 0) -> None:
        self._counters[cpu, counter] += np.uint64(n)

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.pending:
            return np.zeros(0, KEY_DTYPE), np.zeros(0, VAL_DTYPE)
        keys = np.concatenate([k for k, _ in self.pending])
        vals = np.concatenate([v for _, v in self.pending])
        self.pending.clear()
        return keys, vals

    def drain_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        keys, vals = self.drain()
        if len(keys):
            yield keys, vals

    def counters(self) -> np.ndarray:
        return self._counters.copy()

    def close(self) -> None:
        pass
