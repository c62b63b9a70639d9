"""`Decoder`: PacketBatch in, FlowBatch out, with the template cache and its statistics.

The numba kernels (`_packets.decode_packets` and the modules it calls) do the work; this
class owns their tables (`_tables`), grows them,
keeps data sets that arrived before their template (bounded, decoded when the template
comes), persists templates so a restart loses nothing, and applies devices.conf.

Hostile senders are bounded (`_guard`): at most ``template_quota`` templates per exporter
address, templates unused for ``template_max_age_s`` dropped, never-used templates evicted
when the table is full (so a template flood cannot keep a later exporter out), datagrams from
outside ``allowed_exporters`` refused before decoding; each counted per exporter. The
persisted file holds at most `MAX_SAVED_TEMPLATES` templates (used ones first).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import types
from numba.typed import Dict

import appliance.collector.decode._tables as K
from appliance.collector.config.devices import Device
from appliance.collector.decode._exporters import exporter_index, stream_index
from appliance.collector.decode._guard import (
    DEFAULT_TEMPLATE_MAX_AGE_S,
    DEFAULT_TEMPLATE_QUOTA,
    ExporterFilter,
    TemplateGuard,
    refill_template_ids,
)
from appliance.collector.decode._packets import decode_packets
from appliance.collector.decode._records import clear_rows
from appliance.collector.decode._tables import (
    Output,
    Packets,
    RegistryArrays,
    Settings,
    Stat,
    TableArrays,
)
from appliance.collector.decode._templatefile import read_document, write_document
from appliance.collector.decode._templates import field_action, finish_template
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.receive.packets import (
    PacketBatch,
    words_to_address,
)
from appliance.netflow.header import (
    IPFIX,
    IPFIX_AT_LENGTH,
    IPFIX_HEADER_SIZE,
    V9_HEADER_SIZE,
)
from appliance.netflow.registry import REGISTRY, Registry

__all__ = ["Decoder", "ExporterStats", "Stat"]

log = logging.getLogger(__name__)

_MIN_FREE_FIELDS = 16384 + 64  # one 64 KiB datagram holds at most this many field specifiers
_MIN_FREE_TEMPLATES = 8192 + 8
_ANY_SOURCE = 1 << 32
# Caps that bound memory against floods of spoofed exporters, source ids or templates
MAX_EXPORTERS = 65536
MAX_STREAMS = 1 << 20
MAX_TEMPLATES = 1 << 18
MAX_FIELD_ROWS = 1 << 22
# Bounds of the persisted template file (templates.db)
MAX_SAVED_TEMPLATES = 1 << 14
MAX_SAVED_STREAMS = 1 << 16
MAX_TEMPLATE_FILE_BYTES = 64 << 20
_AGE_CHECK_NS = 10 * 10**9  # how often (packet time) unused templates are looked for


@dataclass(frozen=True, slots=True)
class ExporterStats:
    """A snapshot of one exporter's counters (see `Stat` for their meaning)."""

    address: str
    counters: dict[str, int]


@dataclass(slots=True)
class _Pending:
    payload: bytes
    hi: int
    lo: int
    recv_ns: int
    stream: int
    template_id: int
    exporter: int


class Decoder:
    """Decodes NetFlow v5, v9 and IPFIX from any number of exporters.

    Args:
        apply_sampling: scale counters by the sampling rate (the collector does; ``decode``
            shows raw wire values unless asked).
        emit_options: also output options records (record_kind 2).
        capacity: rows per output batch.
        devices: devices.conf entries whose sampling rates override what exporters announce.
        template_file: where templates and learned sampling rates persist across restarts.
        pending_max_sets / pending_max_age_s: bound on data waiting for its template.
        template_quota: templates one exporter address may hold (0: no quota).
        template_max_age_s: templates neither used nor (re)defined this long are dropped (0: never).
        allowed_exporters: networks whose datagrams are decoded (None: every source).
    """

    def __init__(
        self,
        *,
        apply_sampling: bool = True,
        emit_options: bool = False,
        capacity: int = 16384,
        devices: list[Device] | None = None,
        template_file: Path | None = None,
        pending_max_sets: int = 4096,
        pending_max_age_s: float = 30.0,
        registry: Registry = REGISTRY,
        template_quota: int = DEFAULT_TEMPLATE_QUOTA,
        template_max_age_s: float = DEFAULT_TEMPLATE_MAX_AGE_S,
        allowed_exporters: list[str] | None = None,
    ) -> None:
        self.registry = registry
        self.apply_sampling = apply_sampling
        self.emit_options = emit_options
        self.capacity = capacity
        self.pending_max_sets = pending_max_sets
        self.pending_max_age_ns = int(pending_max_age_s * 1e9)
        self.template_file = template_file
        self._reg = RegistryArrays(
            registry.iana_column,
            registry.ent_keys,
            registry.ent_columns,
            registry.ftype,
            registry.column6,
            registry.counter,
        )
        self._exp_dict = Dict.empty(types.UniTuple(types.uint64, 2), types.int64)
        self._exp_addr = np.zeros((64, 2), dtype=np.uint64)
        self._stream_dict = Dict.empty(types.int64, types.int64)
        self._st = np.zeros((256, K.S_NCOLS), dtype=np.int64)
        self._tmpl_dict = Dict.empty(types.int64, types.int64)
        self._tm = np.zeros((_MIN_FREE_TEMPLATES * 2, K.T_NCOLS), dtype=np.int64)
        self._tf = np.zeros((_MIN_FREE_FIELDS * 4, K.F_NCOLS), dtype=np.int64)
        self._samp = Dict.empty(types.int64, types.int64)
        self._override = Dict.empty(types.int64, types.int64)
        self._meta = np.zeros(K.M_NCOLS, dtype=np.int64)
        self._stats = np.zeros((64, K.N_STATS), dtype=np.int64)
        self._out = np.zeros((registry.n_columns, capacity), dtype=np.uint64)
        self._out6 = np.zeros((registry.n_columns6, 2, capacity), dtype=np.uint64)
        self._present = np.zeros(registry.n_columns, dtype=np.uint8)
        self._orph = np.zeros((4096, 4), dtype=np.int64)
        self._output = Output(self._out, self._out6, self._present, self._orph)
        self._pending: list[_Pending] = []
        self._saved_changes = -1
        self._next_save = 0.0  # monotonic time before which templates_changed() says no
        self._guard = TemplateGuard(template_quota, int(template_max_age_s * 1e9))
        self._allowed = ExporterFilter(allowed_exporters) if allowed_exporters is not None else None
        self._now_ns = 0
        self._guarded_ntmpl = 0
        self._v5_slot = self._install_builtin(K.V5_FIELDS, 5)
        self._install_builtin(K.V1_FIELDS, 1)  # always the slot after v5
        self._virtual = [int(c) for c in K.VIRTUAL_COLUMNS]
        if template_file is not None and template_file.exists():
            self.load_templates(template_file)
        if devices:
            self.set_devices(devices)

    # ---- decoding -----------------------------------------------------------------------

    def decode(self, packets: PacketBatch) -> Iterator[FlowBatch]:
        """Decode a batch of datagrams; yields one FlowBatch per `capacity` records.

        Each yielded batch is valid until the generator is resumed.
        """
        if self._allowed is not None and len(packets):
            packets = self._only_allowed(packets)
        if len(packets):
            self._now_ns = max(self._now_ns, int(packets.recv_ns.max()))
        replay = np.zeros(len(packets), dtype=np.uint8)
        yield from self._decode(packets, replay)
        if self._pending:
            self._expire_pending(int(packets.recv_ns.max()) if len(packets) else 0)
        if (self._meta[K.M_NTMPL] != self._guarded_ntmpl
                or self._now_ns - self._guard.last_age_check_ns >= _AGE_CHECK_NS):
            self._guard.last_age_check_ns = self._now_ns
            self._enforce(0)

    def _only_allowed(self, packets: PacketBatch) -> PacketBatch:
        """The datagrams whose source is in allowed-exporters; the others are counted by address."""
        assert self._allowed is not None
        ok = self._allowed.allowed(packets.addr_hi, packets.addr_lo)
        if ok.all():
            return packets
        bad = ~ok
        pairs, counts = np.unique(np.stack([packets.addr_hi[bad], packets.addr_lo[bad]], axis=1), axis=0,
                                  return_counts=True)
        for (hi, lo), c in zip(pairs.tolist(), counts.tolist(), strict=True):
            self._allowed.count_refused(words_to_address(hi, lo), c)
        return PacketBatch(buf=packets.buf, offset=packets.offset[ok], length=packets.length[ok],
                           addr_hi=packets.addr_hi[ok], addr_lo=packets.addr_lo[ok], port=packets.port[ok],
                           recv_ns=packets.recv_ns[ok])

    @property
    def not_allowed(self) -> dict[str, object]:
        """Datagrams refused because their source is not in allowed-exporters."""
        if self._allowed is None:
            return {"networks": None, "datagrams": 0, "sources": {}}
        return {"networks": list(self._allowed.networks), "datagrams": self._allowed.refused_total,
                "sources": dict(self._allowed.refused)}

    def _enforce(self, need_free: int) -> None:
        """Drop templates over quota, aged ones and, in a full table, never-used ones; compact the table."""
        n = int(self._meta[K.M_NTMPL])
        self._guard.observe(self._tm[:, K.T_RECORDS], n, self._now_ns)
        full = self._tm.shape[0] >= MAX_TEMPLATES
        if full and need_free:  # make room for a while, not for one more datagram
            need_free = max(need_free, self._tm.shape[0] // 8)
        keep = self._guard.choose(self._tm[:, K.T_STREAM], self._tm[:, K.T_VALID], self._st[:, K.S_EXP],
                                  self._tm.shape[0], self._now_ns, need_free, full)
        if not keep.all():
            k = int(keep.sum())
            self._tm[:k] = self._tm[:n][keep]
            self._tm[k:n] = 0
            self._meta[K.M_NTMPL] = k
            self._guard.compact(keep)
            refill_template_ids(self._tmpl_dict, self._tm, k, K.T_STREAM, K.T_TID)
            self._compact_fields()
            self._meta[K.M_TMPL_CHANGES] += 1
            if self._tm.shape[0] - k >= _MIN_FREE_TEMPLATES:
                self._meta[K.M_LIMITS] &= ~K.L_TEMPLATES  # room again: the kernels may ask to grow
        self._guarded_ntmpl = int(self._meta[K.M_NTMPL])

    def _decode(self, packets: PacketBatch, replay: np.ndarray) -> Iterator[FlowBatch]:
        p, s, r = 0, 0, 0
        changes_before = int(self._meta[K.M_TMPL_CHANGES])
        n = len(packets)
        batch = Packets(packets.buf, packets.offset, packets.length, packets.addr_hi, packets.addr_lo,
                        packets.recv_ns, replay)
        settings = Settings(bool(self.emit_options), bool(self.apply_sampling), self._v5_slot,
                            _MIN_FREE_FIELDS, _MIN_FREE_TEMPLATES)
        while True:
            arrays = TableArrays(self._exp_addr, self._st, self._tm, self._tf, self._meta, self._stats)
            status, p, s, r, nrec = decode_packets(batch, (p, s, r), self._reg, arrays, self._exp_dict,
                                                   self._stream_dict, self._tmpl_dict, self._samp, self._override,
                                                   self._output, settings)
            self._guard.observe(self._tm[:, K.T_RECORDS], int(self._meta[K.M_NTMPL]), self._now_ns)
            self._take_orphans(packets, replay)
            if nrec:
                yield self._batch(nrec, packets.buf)
                clear_rows(self._output, nrec)
            if status == K.ST_GROW:
                self._grow()
            elif status == K.ST_DONE or p >= n:
                break
        if self._meta[K.M_TMPL_CHANGES] != changes_before and self._pending:
            yield from self._replay_pending()

    def _batch(self, nrec: int, buf: np.ndarray) -> FlowBatch:
        present = np.flatnonzero(self._present)
        cols = {}
        cols6 = {}
        c6 = self.registry.column6
        for c in present.tolist():
            if c6[c] >= 0:
                cols6[int(c6[c])] = self._out6[c6[c], :, :nrec].T
            else:
                cols[c] = self._out[c, :nrec]
        for c in self._virtual:
            cols[c] = self._out[c, :nrec]
        cols6[K.C_DEV_IP6] = self._out6[K.C_DEV_IP6, :, :nrec].T
        return FlowBatch(nrec, cols, cols6, buf, self.registry)

    # ---- data before its template -------------------------------------------------------

    def _take_orphans(self, packets: PacketBatch, replay: np.ndarray) -> None:
        norph = int(self._meta[K.M_NORPH])
        if not norph:
            return
        for p, pos, slen, stream in self._orph[:norph].tolist():
            if replay[p]:
                continue  # still waiting: its pending entry was kept
            base = int(packets.offset[p])
            pkt = packets.buf[base : base + int(packets.length[p])]
            version = int(pkt[0]) << 8 | int(pkt[1])
            hlen = IPFIX_HEADER_SIZE if version == IPFIX else V9_HEADER_SIZE
            header = bytearray(pkt[:hlen].tobytes())
            if version == IPFIX:
                struct.pack_into("!H", header, IPFIX_AT_LENGTH, hlen + slen)
            payload = bytes(header) + pkt[pos : pos + slen].tobytes()
            tid = int(pkt[pos]) << 8 | int(pkt[pos + 1])
            exp = int(self._st[stream, K.S_EXP])
            self._pending.append(
                _Pending(payload, int(packets.addr_hi[p]), int(packets.addr_lo[p]),
                         int(packets.recv_ns[p]), stream, tid, exp)
            )
        overflow = len(self._pending) - self.pending_max_sets
        if overflow > 0:
            for item in self._pending[:overflow]:
                self._stats[item.exporter, Stat.PENDING_EXPIRED_SETS] += 1
            del self._pending[:overflow]

    def _replay_pending(self) -> Iterator[FlowBatch]:
        ready, waiting = [], []
        for item in self._pending:
            slot = self._tmpl_dict.get((item.stream << 16) | item.template_id, -1)
            if slot >= 0 and self._tm[slot, K.T_VALID] == 1:
                ready.append(item)
            else:
                waiting.append(item)
        self._pending = waiting
        if not ready:
            return
        batch = PacketBatch.from_payloads([i.payload for i in ready], recv_ns=[i.recv_ns for i in ready])
        batch.addr_hi[:] = [i.hi for i in ready]
        batch.addr_lo[:] = [i.lo for i in ready]
        yield from self._decode(batch, np.ones(len(ready), dtype=np.uint8))

    def _expire_pending(self, now_ns: int) -> None:
        limit = now_ns - self.pending_max_age_ns
        keep = []
        for item in self._pending:
            if item.recv_ns < limit:
                self._stats[item.exporter, Stat.PENDING_EXPIRED_SETS] += 1
            else:
                keep.append(item)
        self._pending = keep

    @property
    def pending_sets(self) -> int:
        """Data sets waiting for their template."""
        return len(self._pending)

    # ---- tables -------------------------------------------------------------------------

    def _grow(self) -> None:
        """Double the tables that ran low, up to their caps (then refuse and count)."""
        m = self._meta
        if self._tm.shape[0] - m[K.M_NTMPL] < _MIN_FREE_TEMPLATES:
            self._enforce(_MIN_FREE_TEMPLATES)  # quota, age and (table at its cap) never-used ones first
        if self._tf.shape[0] - m[K.M_NFLD] < _MIN_FREE_FIELDS:
            self._compact_fields()
            if self._tf.shape[0] - m[K.M_NFLD] < _MIN_FREE_FIELDS:
                self._tf = self._capped(self._tf, MAX_FIELD_ROWS, K.L_FIELDS, "template fields")
        if self._tm.shape[0] - m[K.M_NTMPL] < _MIN_FREE_TEMPLATES:
            self._tm = self._capped(self._tm, MAX_TEMPLATES, K.L_TEMPLATES, "templates")
        if m[K.M_NSTREAM] + 1 >= self._st.shape[0]:
            self._st = self._capped(self._st, MAX_STREAMS, K.L_STREAMS, "exporter source ids")
        if m[K.M_NEXP] + 1 >= self._exp_addr.shape[0]:
            self._exp_addr = self._capped(self._exp_addr, MAX_EXPORTERS, K.L_EXPORTERS, "exporters")
            if self._stats.shape[0] < self._exp_addr.shape[0]:
                self._stats = _grown(self._stats, self._exp_addr.shape[0])

    def _capped(self, arr: np.ndarray, cap: int, bit: int, what: str) -> np.ndarray:
        if arr.shape[0] >= cap:
            self._meta[K.M_LIMITS] |= bit
            log.error("the %s table is full (%d): new ones are refused and counted", what, cap)
            return arr
        return _grown(arr, min(cap, arr.shape[0] * 2))

    def _compact_fields(self) -> None:
        """Drop field rows left behind by redefined templates."""
        ntm = int(self._meta[K.M_NTMPL])
        fs, nf = self._tm[:ntm, K.T_FS].copy(), self._tm[:ntm, K.T_NF].copy()
        starts = np.zeros(ntm, dtype=np.int64)
        if ntm > 1:
            np.cumsum(nf[:-1], out=starts[1:])
        at = int(nf.sum())
        rows = np.repeat(fs - starts, nf) + np.arange(at)  # every kept row, in slot order
        new = np.zeros_like(self._tf)
        new[:at] = self._tf[rows]
        self._tm[:ntm, K.T_FS] = starts
        self._tf = new
        self._meta[K.M_NFLD] = at

    def _install_builtin(self, layout: tuple[tuple[int, int], ...], version: int) -> int:
        """v5 and v1 records are fixed: describe them as templates the walker understands."""
        slot = int(self._meta[K.M_NTMPL])
        fs = int(self._meta[K.M_NFLD])
        for k, (ie, ln) in enumerate(layout):
            col, c6, act = field_action(self._reg, 0, ie, ln)
            counter = 1 if col >= 0 and self.registry.counter[col] else 0
            self._tf[fs + k] = (ie, 0, ln, col, c6, act, 0, counter)
        self._tm[slot, K.T_STREAM] = -1
        self._tm[slot, K.T_NF] = len(layout)
        self._tm[slot, K.T_FS] = fs
        self._tm[slot, K.T_KIND] = 1
        self._tm[slot, K.T_VALID] = 1
        self._tm[slot, K.T_VERSION] = version
        finish_template(self._tm, self._tf, slot)
        self._meta[K.M_NTMPL] = slot + 1
        self._meta[K.M_NFLD] = fs + len(layout)
        return slot

    def template_fields(self, slot: int) -> list[tuple[int, int, int, bool]]:
        """(pen, element id, length, is scope) of every field of a template slot."""
        fs, nf = int(self._tm[slot, K.T_FS]), int(self._tm[slot, K.T_NF])
        rows = self._tf[fs : fs + nf]
        return [(int(r[K.F_PEN]), int(r[K.F_IE]), int(r[K.F_LEN]), bool(r[K.F_SCOPE])) for r in rows]

    def template_info(self, slot: int) -> dict[str, int]:
        """Stream facts of a template slot: source id, version, template id, kind."""
        row = self._tm[slot]
        stream = int(row[K.T_STREAM])
        sid = int(self._st[stream, K.S_SID]) if stream >= 0 else 0
        return {
            "template_id": int(row[K.T_TID]),
            "version": int(row[K.T_VERSION]),
            "kind": int(row[K.T_KIND]),
            "source_id": sid,
        }

    # ---- devices.conf -------------------------------------------------------------------

    def set_devices(self, devices: list[Device]) -> None:
        """Replace the sampling-rate overrides from devices.conf."""
        self._override.clear()
        for dev in devices:
            hi, lo = dev.address_words
            if self._meta[K.M_NEXP] + 1 >= self._exp_addr.shape[0]:
                self._grow()
            exp = exporter_index(self._exp_dict, self._exp_addr, self._meta, np.uint64(hi), np.uint64(lo))
            sub = _ANY_SOURCE if dev.source_id is None else dev.source_id & 0xFFFFFFFF
            key = (exp << 33) | sub
            if key not in self._override:  # first matching entry wins, as in xenoeye
                self._override[key] = dev.sampling_rate

    # ---- statistics ---------------------------------------------------------------------

    def exporter_stats(self) -> list[ExporterStats]:
        """Counters of every exporter seen so far."""
        out = []
        for i in range(int(self._meta[K.M_NEXP])):
            addr = words_to_address(self._exp_addr[i, 0], self._exp_addr[i, 1])
            counters = {s.name.lower(): int(self._stats[i, s]) for s in Stat}
            out.append(ExporterStats(addr, counters))
        return out

    def template_cache(self) -> dict[str, dict[str, int]]:
        """Per exporter address: templates held (``active``) and those dropped, and why
        (``refused_quota``, ``aged``, ``evicted``; ``table_full``: refused by a full table)."""
        ntm = int(self._meta[K.M_NTMPL])
        nexp = int(self._meta[K.M_NEXP])
        streams = self._tm[:ntm, K.T_STREAM]
        live = streams[(streams >= 0) & (self._tm[:ntm, K.T_VALID] == 1)]
        active = np.bincount(self._st[live, K.S_EXP], minlength=nexp)
        out = {}
        for i in range(nexp):
            c = self._guard.exporter_counts(i)
            out[self.exporter_address(i)] = {
                "active": int(active[i]), "refused_quota": c["templates_refused_quota"], "aged": c["templates_aged"],
                "evicted": c["templates_evicted"], "table_full": int(self._stats[i, Stat.ERR_TEMPLATE_TABLE_FULL]),
            }
        return out

    @property
    def refused_exporter_packets(self) -> int:
        """Packets dropped because the exporter table reached MAX_EXPORTERS."""
        return int(self._meta[K.M_EXP_REFUSED])

    def exporter_address(self, index: int) -> str:
        return words_to_address(self._exp_addr[index, 0], self._exp_addr[index, 1])

    def sampling_rates(self) -> dict[tuple[str, int, int | None], int]:
        """Learned rates: (exporter, source id, sampler id or None) → rate."""
        out: dict[tuple[str, int, int | None], int] = {}
        for key, rate in self._samp.items():
            stream, sampler = key >> 32, key & 0xFFFFFFFF
            exp = int(self._st[stream, K.S_EXP])
            sid = int(self._st[stream, K.S_SID])
            out[(self.exporter_address(exp), sid, None if sampler == K.ANY_SAMPLER else sampler)] = rate
        for stream in range(int(self._meta[K.M_NSTREAM])):
            rate = int(self._st[stream, K.S_RATE])
            if rate > 1:
                exp = int(self._st[stream, K.S_EXP])
                out.setdefault((self.exporter_address(exp), int(self._st[stream, K.S_SID]), None), rate)
        return out

    # ---- persistence --------------------------------------------------------------------

    def templates_changed(self) -> bool:
        """Templates or learned rates changed since the last save, and saving again now keeps the
        time spent saving under a tenth of the time (a template flood changes them constantly)."""
        now = int(self._meta[K.M_TMPL_CHANGES] + self._meta[K.M_RATE_CHANGES])
        return now != self._saved_changes and time.monotonic() >= self._next_save

    def save_templates(self, path: Path | None = None, final: bool = False) -> None:
        """Write templates, stream facts and learned sampling rates (atomically).

        Bounded: at most `MAX_SAVED_TEMPLATES` templates (those used by records first, then the
        most recently active) and the streams they or a learned rate need (`MAX_SAVED_STREAMS`).
        With ``final`` (the collector stops: no datagram is decoded after this) every stream's
        next expected sequence number is saved too, so the gap of the restart is counted as loss
        when the exporter's next datagram comes; a file saved while running (or after a crash)
        holds none, as its numbers would be stale.
        """
        path = path or self.template_file
        if path is None:
            return
        started = time.monotonic()
        ntm = int(self._meta[K.M_NTMPL])
        self._guard.observe(self._tm[:, K.T_RECORDS], ntm, self._now_ns)
        tm = self._tm[:ntm]
        slots = np.flatnonzero((tm[:, K.T_STREAM] >= 0) & (tm[:, K.T_VALID] == 1))
        order = np.lexsort((-self._guard.active_ns[slots], ~self._guard.used[slots]))
        slots = np.sort(slots[order][:MAX_SAVED_TEMPLATES])
        wanted = {int(x) for x in tm[slots, K.T_STREAM]}
        nst = int(self._meta[K.M_NSTREAM])
        for s in range(nst):
            if len(wanted) >= MAX_SAVED_STREAMS:
                break
            if self._st[s, K.S_RATE] > 1 or self._st[s, K.S_INIT_MS] >= 0:
                wanted.add(s)
        for key in self._samp.keys():
            if len(wanted) >= MAX_SAVED_STREAMS:
                break
            wanted.add(int(key >> 32))
        if final:
            for s in np.flatnonzero(self._st[:nst, K.S_HAVE_SEQ] == 1).tolist():
                if len(wanted) >= MAX_SAVED_STREAMS:
                    break
                wanted.add(s)
        index: dict[int, int] = {}
        streams = []
        for s in sorted(wanted):
            row = self._st[s]
            exp = int(row[K.S_EXP])
            index[s] = len(streams)
            streams.append({
                "exporter": self.exporter_address(exp),
                "version": int(row[K.S_VER]),
                "source_id": int(row[K.S_SID]),
                "init_ms": int(row[K.S_INIT_MS]),
                "rate": int(row[K.S_RATE]),
                "next_seq": int(row[K.S_NEXT_SEQ]) if final and row[K.S_HAVE_SEQ] == 1 else None,
            })
        templates = []
        for slot in slots.tolist():
            row = self._tm[slot]
            templates.append({
                "stream": index[int(row[K.T_STREAM])],
                "template_id": int(row[K.T_TID]),
                "kind": int(row[K.T_KIND]),
                "scope_fields": int(row[K.T_NSCOPE]),
                "fields": [[pen, ie, ln] for pen, ie, ln, _ in self.template_fields(slot)],
            })
        rates = [[index[int(k >> 32)], int(k & 0xFFFFFFFF), int(v)] for k, v in self._samp.items()
                 if int(k >> 32) in index]
        write_document(path, {"format": 1, "streams": streams, "templates": templates, "sampling": rates})
        self._saved_changes = int(self._meta[K.M_TMPL_CHANGES] + self._meta[K.M_RATE_CHANGES])
        done = time.monotonic()
        self._next_save = done + 9 * (done - started)

    def load_templates(self, path: Path) -> None:
        """Restore what `save_templates` wrote, by replaying synthesized template sets.

        A file that is unreadable, malformed or larger than `MAX_TEMPLATE_FILE_BYTES` is
        skipped with a warning; beyond `MAX_SAVED_TEMPLATES` templates / `MAX_SAVED_STREAMS`
        streams the rest is ignored (a file written by an older version may hold more).
        """
        try:
            payloads, exporters, facts, sampling = read_document(path, MAX_TEMPLATE_FILE_BYTES,
                                                                 MAX_SAVED_TEMPLATES, MAX_SAVED_STREAMS)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error) as exc:
            log.warning("template file %s unreadable (%s): starting without templates", path, exc)
            return
        if payloads:
            batch = PacketBatch.from_payloads(payloads, exporter=exporters)
            for _ in self._decode(batch, np.ones(len(payloads), dtype=np.uint8)):
                pass
        index = {}
        for i, ((hi, lo), version, sid, init_ms, rate, next_seq) in enumerate(facts):
            if self._meta[K.M_NSTREAM] + 1 >= self._st.shape[0] or self._meta[K.M_NEXP] + 1 >= self._exp_addr.shape[0]:
                self._grow()
            exp = exporter_index(self._exp_dict, self._exp_addr, self._meta, np.uint64(hi), np.uint64(lo))
            st = stream_index(self._stream_dict, self._st, self._meta, exp, version, sid) if exp >= 0 else -1
            if st < 0:
                continue
            self._st[st, K.S_INIT_MS] = init_ms
            self._st[st, K.S_RATE] = rate
            if next_seq is not None:  # saved at a clean stop: the first datagram after it shows the gap
                self._st[st, K.S_HAVE_SEQ] = 1
                self._st[st, K.S_NEXT_SEQ] = next_seq
            index[i] = st
        for stream, sampler, rate in sampling:
            if stream in index:
                self._samp[(index[stream] << 32) | sampler] = rate
        self._stats[:] = 0
        self._guard.counts[:] = 0
        self._saved_changes = int(self._meta[K.M_TMPL_CHANGES] + self._meta[K.M_RATE_CHANGES])
        log.info("restored %d templates from %s", len(payloads), path)


def _grown(arr: np.ndarray, rows: int) -> np.ndarray:
    new = np.zeros((rows,) + arr.shape[1:], dtype=arr.dtype)
    new[: arr.shape[0]] = arr
    return new
