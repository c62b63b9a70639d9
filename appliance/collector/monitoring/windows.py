"""Fixed windows (xenoeye's ``fwm``): group flows by key fields, sum counters, export per window.

A window definition lists ``fields`` in sort order (`appliance.collector.fields.spec`):
aggregates are summed, everything else forms the key. Windows are aligned to multiples of
``time`` seconds since the epoch on the flows' receive time (the packet time on replay), so
a capture always gives the same tables. A closed window becomes a `WindowTable`: the rows in
sort order, at most ``limit`` of them plus a remainder row (summed aggregates, NULL keys)
whenever rows ≥ limit. Text keys sort by their text.

The time column of a row is the window's end (what xenoeye writes).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field

import numpy as np

from appliance.collector.config.objects import WindowSpec
from appliance.collector.fields.spec import Column, FieldSpec, KeyKind
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring._aggregate import HashTable

__all__ = ["FixedWindow", "WindowTable"]

_NS = 1_000_000_000


@dataclass(slots=True)
class WindowTable:
    """A closed window, ready for export: rows in sort order, NULL as None."""

    table: str
    time: int  # window end, seconds since the epoch (the rows' time column)
    period: int
    columns: list[Column]
    rows: list[tuple]
    create_index: bool = True
    mo: str = ""
    window: str = ""
    flows: int = field(default=0)


def _ip4(v: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", v & 0xFFFFFFFF))


def _ip6(hi: int, lo: int) -> str:
    ip = ipaddress.IPv6Address((hi << 64) | lo)
    mapped = ip.ipv4_mapped
    return str(mapped) if mapped is not None else str(ip)


def _mac(v: int) -> str:
    return ":".join(f"{b:02x}" for b in v.to_bytes(8, "big")[2:])


class FixedWindow:
    """The running state of one window of one monitoring object.

    Args:
        spec: the window's definition.
        table: ``<mo>_<window>``.
    """

    def __init__(self, spec: WindowSpec, table: str, mo: str = "") -> None:
        self.spec = spec
        self.table = table
        self.mo = mo
        self.period_ns = spec.time * _NS
        self.active = not spec.extended
        self.current: int | None = None  # window number (time // period)
        self.flows = 0
        self._nk = sum(f.words for f in spec.keys)
        self._ht = HashTable(self._nk, len(spec.aggregates))
        # mfreq's frequency maps live as long as the window's definition (as in xenoeye)
        self._freq = {i: np.zeros(1 << 16, dtype=np.uint64) for i, f in enumerate(spec.keys) if f.func == "mfreq"}
        # text keys: (hash words) → the text, for the keys of the current window
        self._texts: dict[int, dict[tuple[int, int], str]] = {
            i: {} for i, f in enumerate(spec.keys) if f.kind == KeyKind.TEXT}

    # ---- feeding -------------------------------------------------------------------------

    def add(self, batch: FlowBatch, rows: np.ndarray, wid: np.ndarray) -> list[WindowTable]:
        """Add the batch rows selected by ``rows`` (window numbers in ``wid``, one per batch row).

        Rows of a later window close the current one first; rows of an earlier window
        (late packets) count in the current one. Returns the windows closed.
        """
        if not self.active or not len(rows):
            return []
        w = wid[rows]
        out: list[WindowTable] = []
        if self.current is None:
            self.current = int(w.min())
        hi = int(w.max())
        if hi <= self.current:
            self._add(batch, rows)
            return out
        early = w <= self.current
        if early.any():
            self._add(batch, rows[early])
        later = w[~early]
        for nw in np.unique(later):
            out.extend(self.close())
            self.current = int(nw)
            self._add(batch, rows[w == nw])
        return out

    def _add(self, batch: FlowBatch, rows: np.ndarray) -> None:
        n = batch.n
        rows = rows.astype(np.int64, copy=False)
        keycols = np.empty((self._nk, n), dtype=np.uint64)
        k = 0
        for i, f in enumerate(self.spec.keys):
            words = f.key_words(batch, rows, self._freq.get(i))
            if f.kind == KeyKind.TEXT:
                self._remember_texts(batch, f, rows, words, self._texts[i])
            for word in words:
                keycols[k] = word
                k += 1
        aggs = self.spec.aggregates
        valcols = np.empty((len(aggs), n), dtype=np.uint64)
        for a, f in enumerate(aggs):
            valcols[a] = f.values(batch)
        self._ht.add(rows, keycols, valcols)
        self.flows += len(rows)

    @staticmethod
    def _remember_texts(batch: FlowBatch, f: FieldSpec, rows: np.ndarray, words: list[np.ndarray],
                        known: dict[tuple[int, int], str]) -> None:
        """Keep one text per new key: decoded once per distinct text and batch, not per flow."""
        pairs = np.stack([words[0][rows], words[1][rows]], axis=1)
        uniq, first = np.unique(pairs, axis=0, return_index=True)
        for (a, b), j in zip(uniq.tolist(), first.tolist()):
            if (a, b) not in known:
                known[(a, b)] = batch.text(f.source, int(rows[j])).replace("\x00", "")  # type: ignore[arg-type]

    def tick(self, now_ns: int) -> list[WindowTable]:
        """Close the current window if ``now_ns`` is past its end."""
        if self.current is not None and now_ns // self.period_ns > self.current:
            out = self.close()
            self.current = None
            return out
        return []

    def set_active(self, on: bool) -> None:
        """Switch an extended window on or off (off: what it holds is exported when it closes)."""
        self.active = on

    # ---- closing -------------------------------------------------------------------------

    def close(self) -> list[WindowTable]:
        """Export the current window (nothing if it is empty) and start an empty one."""
        if self.current is None or self._ht.count == 0:
            return []
        keys, sums = self._ht.items()
        table = self.result(keys, sums, int(self.current))
        table.flows = self.flows
        self._ht.clear()
        self.flows = 0
        for known in self._texts.values():
            known.clear()
        return [table]

    def texts(self, keys: np.ndarray) -> dict[int, np.ndarray]:
        """Per text-valued field (index in `spec.fields`): the text of every key row."""
        out: dict[int, np.ndarray] = {}
        k = ki = 0
        for i, f in enumerate(self.spec.fields):
            if f.aggregate:
                continue
            if f.kind == KeyKind.CODE:
                out[i] = f.render(keys[:, k])
            elif f.kind == KeyKind.TEXT:
                known = self._texts[ki]
                out[i] = np.array([known.get((int(a), int(b)), "") for a, b in zip(keys[:, k].tolist(),
                                   keys[:, k + 1].tolist())], dtype=object)
            k += f.words
            ki += 1
        return out

    def order(self, keys: np.ndarray, sums: np.ndarray, texts: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """Row order: by the fields as listed, each ascending or descending (text by its text)."""
        if texts is None:
            texts = self.texts(keys)
        sort_keys: list[np.ndarray] = []  # most significant first
        k = a = 0
        for i, f in enumerate(self.spec.fields):
            if f.aggregate:
                cols = [sums[:, a]]
                a += 1
            elif i in texts:
                rank = np.unique(texts[i].astype(str), return_inverse=True)[1].reshape(-1)
                cols = [rank.astype(np.uint64)]
                k += f.words
            else:
                cols = [keys[:, k + j] for j in range(f.words)]
                k += f.words
            sort_keys.extend(~c if f.desc else c for c in cols)
        if not sort_keys:
            return np.arange(len(keys))
        return np.lexsort(sort_keys[::-1])

    def result(self, keys: np.ndarray, sums: np.ndarray, wid: int) -> WindowTable:
        spec = self.spec
        texts = self.texts(keys)
        idx = self.order(keys, sums, texts)
        shown = idx[: spec.limit] if spec.limit else idx
        rows = [self._row(keys[i], sums[i], {c: t[i] for c, t in texts.items()}) for i in shown]
        if spec.limit and len(idx) >= spec.limit:
            rest = sums[idx[spec.limit :]].sum(axis=0, dtype=np.uint64) if len(idx) > spec.limit \
                else np.zeros(len(spec.aggregates), dtype=np.uint64)
            rows.append(self._row(None, rest, {}))
        columns = [Column(f.column, f.sqltype) for f in spec.fields]
        end = (wid + 1) * spec.time
        return WindowTable(self.table, end, spec.time, columns, rows, spec.create_index,
                           self.mo, spec.name)

    def _row(self, key: np.ndarray | None, sums: np.ndarray, texts: dict[int, str]) -> tuple:
        out: list[object] = []
        k = a = 0
        for i, f in enumerate(self.spec.fields):
            if f.aggregate:
                out.append(int(sums[a]))
                a += 1
                continue
            if key is None:
                out.append(None)
                k += f.words
                continue
            w = int(key[k])
            if i in texts:
                out.append(texts[i])
            elif f.kind == KeyKind.NUMBER:
                out.append(w)
            elif f.kind == KeyKind.IPV4:
                out.append(_ip4(w))
            elif f.kind == KeyKind.MAC:
                out.append(_mac(w))
            else:
                out.append(_ip6(w, int(key[k + 1])))
            k += f.words
        return tuple(out)
