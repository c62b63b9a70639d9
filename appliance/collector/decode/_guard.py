"""What keeps the template table usable when senders are hostile: a per-exporter quota, ageing
of templates nobody uses, eviction of never-used templates when the table is full, and an
optional list of allowed exporter networks.

The numba kernels install templates as they come; `TemplateGuard` looks at the table between
kernel calls (`Decoder` asks it after every call and whenever a table must grow) and says which
slots to drop. So a flood of template-only datagrams from many addresses can fill the table for
a moment, but never keeps a later exporter out: its templates take the place of templates no
data record ever used.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable

import numpy as np
from numba import njit

from appliance.errors import ConfigError

__all__ = ["DEFAULT_TEMPLATE_MAX_AGE_S", "DEFAULT_TEMPLATE_QUOTA", "Drop", "ExporterFilter", "TemplateGuard"]

#: templates (data + options) one exporter address may hold, over all its source ids
DEFAULT_TEMPLATE_QUOTA = 4096
#: a template neither used by a record nor (re)defined for this long is dropped
DEFAULT_TEMPLATE_MAX_AGE_S = 3600.0


class Drop(enum.IntEnum):
    """Why templates were dropped (columns of `TemplateGuard.counts`)."""

    QUOTA = 0  # beyond the exporter's quota (refused)
    AGED = 1  # not used or redefined for max_age
    EVICTED = 2  # never used, dropped to make room in a full table


class TemplateGuard:
    """Per-slot times of the decoder's template table and the drop decisions.

    Args:
        quota: templates per exporter address (0: no quota).
        max_age_ns: age after which an unused template is dropped (0: never).
    """

    def __init__(self, quota: int = DEFAULT_TEMPLATE_QUOTA,
                 max_age_ns: int = int(DEFAULT_TEMPLATE_MAX_AGE_S * 1e9)) -> None:
        self.quota = quota
        self.max_age_ns = max_age_ns
        self.n = 0  # slots seen so far
        self.active_ns = np.zeros(0, dtype=np.int64)  # installed, redefined or last used for a record
        self.used = np.zeros(0, dtype=np.bool_)  # ever used for a record
        self.records = np.zeros(0, dtype=np.int64)  # the slot's record count when last looked at
        #: per exporter index × `Drop`
        self.counts = np.zeros((64, len(Drop)), dtype=np.int64)
        self.last_age_check_ns = 0

    def observe(self, records: np.ndarray, n: int, now_ns: int) -> None:
        """Note new slots and slots used since the last look (`records`: the slots' record counts)."""
        if records.shape[0] > self.active_ns.shape[0]:
            grow = records.shape[0] - self.active_ns.shape[0]
            self.active_ns = np.concatenate([self.active_ns, np.zeros(grow, dtype=np.int64)])
            self.used = np.concatenate([self.used, np.zeros(grow, dtype=np.bool_)])
            self.records = np.concatenate([self.records, np.zeros(grow, dtype=np.int64)])
        old = min(self.n, n)
        if n > old:
            self.active_ns[old:n] = now_ns
            self.used[old:n] = records[old:n] > 0  # data may have come in the same call
            self.records[old:n] = records[old:n]
        moved = records[:old] != self.records[:old]
        if moved.any():
            # more records: used now; fewer: the id was redefined (a new template in that slot)
            self.used[:old] |= records[:old] > self.records[:old]
            self.active_ns[:old][moved] = now_ns
            self.records[:old] = records[:old]
        self.n = n

    def choose(self, stream: np.ndarray, valid: np.ndarray, exporter_of_stream: np.ndarray, capacity: int,
               now_ns: int, need_free: int, full: bool) -> np.ndarray:
        """Which of the first `n` slots to keep; counts what is dropped and why.

        Args:
            stream: the slots' stream (-1: a built-in layout, always kept).
            valid: the slots' valid flag (withdrawn ones are dropped silently).
            exporter_of_stream: exporter index of each stream.
            capacity: slots the table can hold (it cannot grow past this when `full`).
            need_free: free slots wanted after the drop when `full`.
            full: the table is at its size cap: evict never-used templates to make room.
        """
        n = self.n
        if now_ns:  # slots restored before any packet came count as active from the first one
            unknown = self.active_ns[:n] == 0
            self.active_ns[:n][unknown] = now_ns
        stream, valid = stream[:n], valid[:n]
        builtin = stream < 0
        keep = builtin | (valid == 1)
        exp = np.where(builtin, -1, exporter_of_stream[np.maximum(stream, 0)])
        if exp.size and exp.max() >= self.counts.shape[0]:
            self.counts = np.concatenate([self.counts, np.zeros((int(exp.max()) + 64, len(Drop)), np.int64)])
        if self.max_age_ns:
            aged = keep & ~builtin & (self.active_ns[:n] < now_ns - self.max_age_ns)
            self._count(exp[aged], Drop.AGED)
            keep &= ~aged
        if self.quota:
            cand = np.flatnonzero(keep & ~builtin)
            if cand.size:
                per = np.bincount(exp[cand])
                if per.max() > self.quota:
                    # within an exporter: used ones first, then the most recently active
                    order = np.lexsort((-self.active_ns[cand], ~self.used[cand], exp[cand]))
                    ranked = cand[order]
                    e = exp[ranked]
                    start = np.searchsorted(e, e, side="left")
                    rank = np.arange(ranked.size) - start
                    over = ranked[rank >= self.quota]
                    self._count(exp[over], Drop.QUOTA)
                    keep[over] = False
        if full:
            short = need_free - (capacity - int(keep.sum()))
            if short > 0:
                cand = np.flatnonzero(keep & ~builtin & ~self.used[:n])
                victims = cand[np.argsort(self.active_ns[cand], kind="stable")[:short]]
                self._count(exp[victims], Drop.EVICTED)
                keep[victims] = False
        return keep

    def _count(self, exporters: np.ndarray, why: Drop) -> None:
        if exporters.size:
            np.add.at(self.counts[:, why], exporters, 1)

    def compact(self, keep: np.ndarray) -> None:
        """Follow the table's compaction: slot i of the kept ones moves to position i."""
        k = int(keep.sum())
        for name in ("active_ns", "used", "records"):
            arr = getattr(self, name)
            arr[:k] = arr[: self.n][keep]
            arr[k : self.n] = 0
        self.n = k

    def exporter_counts(self, exporter: int) -> dict[str, int]:
        row = self.counts[exporter] if exporter < self.counts.shape[0] else np.zeros(len(Drop), np.int64)
        return {"templates_refused_quota": int(row[Drop.QUOTA]), "templates_aged": int(row[Drop.AGED]),
                "templates_evicted": int(row[Drop.EVICTED])}


@njit(cache=True, nogil=True)
def refill_template_ids(ids, tm, n, t_stream, t_tid):
    """Rebuild the (stream << 16 | template id) → slot dictionary after a compaction."""
    ids.clear()
    for slot in range(n):
        s = tm[slot, t_stream]
        if s >= 0:
            ids[(s << 16) | tm[slot, t_tid]] = slot


class ExporterFilter:
    """The ``allowed-exporters`` networks: datagrams from elsewhere are refused before decoding.

    Args:
        networks: IPv4/IPv6 networks (``"192.0.2.0/24"``, ``"2001:db8::/32"``, an address).
        source: where they were configured, for error messages.

    Raises:
        ConfigError: an entry that is not a network.
    """

    MAX_LISTED = 256  # refused source addresses counted one by one; the rest under "other"

    def __init__(self, networks: Iterable[str], source: str = "allowed-exporters") -> None:
        his, los, mhi, mlo = [], [], [], []
        self.networks: list[str] = []
        for text in networks:
            try:
                net = ipaddress.ip_network(str(text), strict=False)
            except ValueError:
                raise ConfigError(source, 0, 0, f"allowed-exporters: {text!r} is not an IPv4 or IPv6 network "
                                                "like 192.0.2.0/24 or 2001:db8::/32") from None
            if net.version == 4:
                value = (0xFFFF << 32) | int(net.network_address)
                mask = ((1 << 128) - 1) ^ ((1 << (32 - net.prefixlen)) - 1)
            else:
                value = int(net.network_address)
                mask = ((1 << 128) - 1) ^ ((1 << (128 - net.prefixlen)) - 1)
            his.append(value >> 64)
            los.append(value & 0xFFFF_FFFF_FFFF_FFFF)
            mhi.append(mask >> 64)
            mlo.append(mask & 0xFFFF_FFFF_FFFF_FFFF)
            self.networks.append(str(net))
        self._hi, self._lo = np.array(his, np.uint64), np.array(los, np.uint64)
        self._mhi, self._mlo = np.array(mhi, np.uint64), np.array(mlo, np.uint64)
        #: refused datagrams by source address (at most MAX_LISTED addresses, then "other")
        self.refused: dict[str, int] = {}
        self.refused_total = 0

    def allowed(self, addr_hi: np.ndarray, addr_lo: np.ndarray) -> np.ndarray:
        """bool per datagram: its source is in one of the networks."""
        ok = np.zeros(addr_hi.shape[0], dtype=np.bool_)
        for i in range(self._hi.shape[0]):
            ok |= ((addr_hi & self._mhi[i]) == self._hi[i]) & ((addr_lo & self._mlo[i]) == self._lo[i])
        return ok

    def count_refused(self, address: str, datagrams: int) -> None:
        self.refused_total += datagrams
        key = address if address in self.refused or len(self.refused) < self.MAX_LISTED else "other"
        self.refused[key] = self.refused.get(key, 0) + datagrams
