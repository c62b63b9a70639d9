"""`FlowBatch`: the one columnar record type everything after decoding works on."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from appliance.netflow.registry import REGISTRY, FieldType, Registry

__all__ = ["FlowBatch"]


class FlowBatch:
    """Decoded flow records as columns, one numpy array per present field.

    Numbers, IPv4 addresses (integer of the big-endian address), MAC addresses and times
    are ``uint64`` arrays of length n; IPv6 addresses are ``uint64[n, 2]`` (hi, lo);
    strings and opaque octets are references ``offset << 16 | length`` into `raw`
    (use `text`). Virtual fields (dev_ip, dev_ip6, dev_id, sampling_rate, recv_time_ns,
    time_start_ms, time_end_ms, ...) are always present.

    Batches that come out of `Decoder.decode` are views into the decoder's buffers and
    stay valid until the generator is resumed: `copy` one to keep it.
    """

    __slots__ = ("n", "raw", "registry", "_cols", "_cols6")

    def __init__(
        self,
        n: int,
        columns: dict[int, np.ndarray],
        columns6: dict[int, np.ndarray],
        raw: np.ndarray | None = None,
        registry: Registry = REGISTRY,
    ) -> None:
        self.n = n
        self.raw = raw if raw is not None else np.zeros(0, dtype=np.uint8)
        self.registry = registry
        self._cols = columns
        self._cols6 = columns6

    def __len__(self) -> int:
        return self.n

    def __contains__(self, name: str) -> bool:
        f = self.registry.by_name.get(name)
        if f is None:
            return False
        if f.ftype == FieldType.IPV6 and f.column6 >= 0:
            return f.column6 in self._cols6
        return f.column in self._cols

    def __getitem__(self, name: str) -> np.ndarray:
        f = self.registry[name]
        if f.ftype == FieldType.IPV6 and f.column6 >= 0:
            arr6 = self._cols6.get(f.column6)
            if arr6 is None:
                return np.zeros((self.n, 2), dtype=np.uint64)
            return arr6
        arr = self._cols.get(f.column)
        if arr is None:
            return np.zeros(self.n, dtype=np.uint64)
        return arr

    def set(self, name: str, values: np.ndarray) -> None:
        """Add or replace a column (enrichment adds its columns right after decoding)."""
        f = self.registry[name]
        if f.ftype == FieldType.IPV6 and f.column6 >= 0:
            self._cols6[f.column6] = values
        else:
            self._cols[f.column] = values

    def layout(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Which columns are present, as a hashable key: cheap, for caches of `names` (which walks
        the whole registry) keyed by a batch's shape."""
        return tuple(self._cols), tuple(self._cols6)

    def names(self) -> list[str]:
        """Names of the fields present in this batch, in registry order."""
        out = []
        for f in self.registry.fields:
            if f.ftype == FieldType.IPV6 and f.column6 >= 0:
                if f.column6 in self._cols6:
                    out.append(f.name)
            elif f.column in self._cols:
                out.append(f.name)
        return out

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self.names():
            yield name, self[name]

    def text(self, name: str, i: int) -> str:
        """A string field of record i as text (NUL padding stripped)."""
        ref = int(self[name][i])
        off, ln = ref >> 16, ref & 0xFFFF
        return bytes(self.raw[off : off + ln]).rstrip(b"\x00").decode("utf-8", "replace")

    def octets(self, name: str, i: int) -> bytes:
        """An opaque/string field of record i as bytes."""
        ref = int(self[name][i])
        off, ln = ref >> 16, ref & 0xFFFF
        return bytes(self.raw[off : off + ln])

    def copy(self) -> FlowBatch:
        """A batch that owns its arrays (and its raw bytes)."""
        return FlowBatch(
            self.n,
            {c: a.copy() for c, a in self._cols.items()},
            {c: a.copy() for c, a in self._cols6.items()},
            self.raw.copy(),
            self.registry,
        )

    def take(self, index: np.ndarray) -> FlowBatch:
        """A new batch with the records selected by a boolean mask or an index array."""
        cols = {c: a[index] for c, a in self._cols.items()}
        cols6 = {c: a[index] for c, a in self._cols6.items()}
        n = len(next(iter(cols.values()))) if cols else 0
        return FlowBatch(n, cols, cols6, self.raw, self.registry)

    @classmethod
    def concat(cls, batches: list[FlowBatch]) -> FlowBatch:
        """Join batches (string references are rebased onto one raw buffer)."""
        if not batches:
            return cls(0, {}, {})
        reg = batches[0].registry
        ref_cols = {f.column for f in reg.fields if f.ftype in (FieldType.STRING, FieldType.BYTES)}
        keys = sorted(set().union(*(b._cols for b in batches)))
        keys6 = sorted(set().union(*(b._cols6 for b in batches)))
        cols: dict[int, np.ndarray] = {}
        base = 0
        parts: dict[int, list[np.ndarray]] = {c: [] for c in keys}
        for b in batches:
            for c in keys:
                a = b._cols.get(c)
                if a is None:
                    a = np.zeros(b.n, dtype=np.uint64)
                elif c in ref_cols and base:
                    a = np.where(a != 0, a + (np.uint64(base) << np.uint64(16)), a)
                parts[c].append(a)
            base += len(b.raw)
        for c in keys:
            cols[c] = np.concatenate(parts[c])
        cols6 = {
            c: np.concatenate([b._cols6.get(c, np.zeros((b.n, 2), dtype=np.uint64)) for b in batches])
            for c in keys6
        }
        raw = np.concatenate([b.raw for b in batches])
        return cls(sum(b.n for b in batches), cols, cols6, raw, reg)
