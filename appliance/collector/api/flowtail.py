"""`FlowTail`: a bounded ring of the most recent flow records, kept columnar.

Records stay as small self-contained `FlowBatch`es (their own copy of the bytes they point
into, their template layouts and exporter addresses frozen at capture), so the decode thread
only copies arrays; turning them into dicts (``dump.records``) happens in the API's thread,
and only when someone asks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from appliance.collector.decode.dump import records
from appliance.collector.enrich import texts
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import FieldType

__all__ = ["FlowTail", "TailChunk"]

_MAX_RECORD = 65536  # a record never spans more than one set (< 64 KiB)


class _FrozenLayouts:
    """What `dump.records` asks the decoder, answered from a copy taken at capture time."""

    __slots__ = ("fields", "info", "addresses")

    def __init__(self, fields: dict[int, list], info: dict[int, dict], addresses: dict[int, str]) -> None:
        self.fields, self.info, self.addresses = fields, info, addresses

    def template_fields(self, slot: int) -> list:
        return self.fields[slot]

    def template_info(self, slot: int) -> dict:
        return self.info[slot]

    def exporter_address(self, index: int) -> str:
        return self.addresses[index]


class TailChunk:
    """Some consecutive records of one batch, owning everything needed to print them."""

    __slots__ = ("batch", "layouts")

    def __init__(self, batch: FlowBatch, layouts: _FrozenLayouts) -> None:
        self.batch, self.layouts = batch, layouts

    def records(self) -> list[dict[str, Any]]:
        recs = list(records(self.batch, self.layouts))  # type: ignore[arg-type]
        names = texts(self.batch)  # enrichment (country, AS, names) as text, as decode prints them
        if names:
            for i, r in enumerate(recs):
                r.update((k, str(v[i])) for k, v in names.items())
        return recs


def capture(batch: FlowBatch, rows: np.ndarray, decoder: Any) -> TailChunk:
    """Copy the records ``rows`` of ``batch`` with the bytes they point into (rebased)."""
    offsets = batch["record_offset"][rows]
    lo = int(offsets.min())
    hi = min(len(batch.raw), int(offsets.max()) + _MAX_RECORD)
    raw = batch.raw[lo:hi].copy()
    base = np.uint64(lo)
    reg = batch.registry
    cols: dict[int, np.ndarray] = {}
    cols6: dict[int, np.ndarray] = {}
    for name, arr in batch.items():
        f = reg[name]
        part = arr[rows]
        if f.ftype == FieldType.IPV6 and f.column6 >= 0:
            cols6[f.column6] = part
            continue
        if name == "record_offset":
            part = part - base
        elif f.ftype in (FieldType.STRING, FieldType.BYTES):
            part = np.where(part != 0, part - (base << np.uint64(16)), part)
        cols[f.column] = part
    for name in ("record_offset", "template_slot", "exporter_index"):
        f = reg[name]
        if f.column not in cols:  # virtual columns are always there; be safe anyway
            cols[f.column] = np.zeros(len(rows), dtype=np.uint64)
    mini = FlowBatch(len(rows), cols, cols6, raw, reg)
    slots = np.unique(mini["template_slot"]).tolist()
    exps = np.unique(mini["exporter_index"]).tolist()
    layouts = _FrozenLayouts(
        {s: decoder.template_fields(s) for s in slots},
        {s: decoder.template_info(s) for s in slots},
        {e: decoder.exporter_address(e) for e in exps},
    )
    return TailChunk(mini, layouts)


class FlowTail:
    """The last ``size`` records offered to it, captured at most every ``min_interval_s``.

    Under load, capturing every batch would copy arrays for nothing (they are pushed out by
    the next batch); at most ten captures a second keep the tail recent at a fixed cost.

    Args:
        size: records kept.
        clock: monotonic seconds (injectable).
        min_interval_s: least time between two captures (0: capture every batch).
    """

    def __init__(self, size: int, clock: Callable[[], float], min_interval_s: float = 0.1) -> None:
        self.size = size
        self.clock = clock
        self.min_interval_s = min_interval_s
        self._chunks: deque[TailChunk] = deque()
        self._held = 0
        self._last = -1e18
        self.offered = 0  # records seen (captured or not)

    def offer(self, batch: FlowBatch, rows: np.ndarray | None, decoder: Any) -> None:
        n = batch.n if rows is None else len(rows)
        if n == 0 or self.size <= 0:
            return
        self.offered += n
        now = self.clock()
        if now - self._last < self.min_interval_s:
            return
        self._last = now
        if rows is None:
            rows = np.arange(max(0, batch.n - self.size), batch.n)
        else:
            rows = rows[-self.size :]
        chunk = capture(batch, rows, decoder)
        self._chunks.append(chunk)
        self._held += chunk.batch.n
        while self._chunks and self._held - self._chunks[0].batch.n >= self.size:
            self._held -= self._chunks.popleft().batch.n

    def chunks(self) -> tuple[TailChunk, ...]:
        """An immutable view for a snapshot (chunks are never modified once captured)."""
        return tuple(self._chunks)


def tail_records(chunks: tuple[TailChunk, ...], limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` records of the chunks, oldest first."""
    out: list[dict[str, Any]] = []
    need = limit
    picked = []
    for chunk in reversed(chunks):
        if need <= 0:
            break
        picked.append((chunk, need))
        need -= chunk.batch.n
    for chunk, want in reversed(picked):
        recs = chunk.records()
        out.extend(recs[-want:] if want < len(recs) else recs)
    return out


def matching_records(chunks: tuple[TailChunk, ...], limit: int, keep: Callable[[FlowBatch], np.ndarray],
                     scan: int = 0) -> list[dict[str, Any]]:
    """The newest ``limit`` records among the newest ``scan`` of the chunks for which ``keep``
    (a filter's ``evaluate``) is true, oldest first; ``scan`` 0: every record held.

    Only the records picked are turned into dicts; the mask is computed on the columns.
    """
    picked: list[tuple[TailChunk, np.ndarray]] = []
    need, budget = limit, scan if scan > 0 else sum(c.batch.n for c in chunks)
    for chunk in reversed(chunks):
        if need <= 0 or budget <= 0:
            break
        n = chunk.batch.n
        rows = np.flatnonzero(keep(chunk.batch))
        rows = rows[rows >= n - budget]  # only the newest `budget` records of this chunk
        budget -= n
        if len(rows):
            rows = rows[-need:]
            picked.append((chunk, rows))
            need -= len(rows)
    out: list[dict[str, Any]] = []
    for chunk, rows in reversed(picked):
        recs = chunk.records()
        out.extend(recs[int(i)] for i in rows)
    return out
