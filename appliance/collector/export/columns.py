"""Decoded flows as the flow archive's Arrow columns: one type per registry field (IPv4 as
uint32, IPv6 as 16 bytes, texts gathered from the packet buffer in numba, enrichment's text
codes as their text), built from whole batch columns."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
from numba import njit

from appliance.collector.fields import geo
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY, FieldType

__all__ = ["INTERNAL_COLUMNS", "NARROW", "Columns", "arrow_type", "ipv6_array", "batch_columns", "columns_table",
           "concat_columns", "flows_table"]

#: the collector's own bookkeeping columns, never archived
INTERNAL_COLUMNS = frozenset({"exporter_index", "template_slot", "record_offset"})
_OPTIONS_RECORD = 2


def arrow_type(name: str) -> pa.DataType:
    """The Parquet/Arrow type of a registry field in the archive."""
    if name in geo.NAMED_COLUMNS:  # enrichment's text codes are stored as their text
        return pa.string()
    f = REGISTRY[name]
    t = f.ftype
    if t == FieldType.IPV4:
        return pa.uint32()
    if t == FieldType.IPV6:
        return pa.binary(16)
    if t == FieldType.STRING:
        return pa.string()
    if t == FieldType.BYTES:
        return pa.binary()
    if t == FieldType.FLOAT:
        return pa.float64()
    if t == FieldType.SIGNED:
        return pa.int64()
    if t in (FieldType.UNSIGNED, FieldType.BOOL) and 0 < f.size <= 4 and not f.counter:
        return {1: pa.uint8(), 2: pa.uint16(), 3: pa.uint32(), 4: pa.uint32()}[f.size]
    return pa.uint64()


NARROW = {pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32}  # narrowed on write
_LIMIT = {pa.uint8(): 0xFF, pa.uint16(): 0xFFFF, pa.uint32(): 0xFFFF_FFFF}


@njit(cache=True, nogil=True)
def _gather_texts(refs, raw, offsets, strip):  # type: ignore[no-untyped-def]
    """Arrow offsets (int32[n+1], filled) and the concatenated bytes of the strings `refs` point
    to (``offset << 16 | length`` into raw, clamped to raw; trailing NULs dropped if `strip`)."""
    n = refs.shape[0]
    nraw = raw.shape[0]
    total = 0
    offsets[0] = 0
    for i in range(n):
        off = np.int64(refs[i] >> np.uint64(16))
        ln = np.int64(refs[i] & np.uint64(0xFFFF))
        if off >= nraw:
            ln = 0
        elif off + ln > nraw:
            ln = nraw - off
        while strip and ln > 0 and raw[off + ln - 1] == 0:
            ln -= 1
        total += ln
        offsets[i + 1] = total
    data = np.empty(total, dtype=np.uint8)
    pos = 0
    for i in range(n):
        off = np.int64(refs[i] >> np.uint64(16))
        ln = offsets[i + 1] - offsets[i]
        for j in range(ln):
            data[pos + j] = raw[off + j]
        pos += ln
    return data


def _texts(refs: np.ndarray, raw: np.ndarray, binary: bool) -> pa.Array:
    refs = np.ascontiguousarray(refs, dtype=np.uint64)
    offsets = np.empty(len(refs) + 1, dtype=np.int32)
    data = _gather_texts(refs, raw if len(raw) else np.zeros(1, np.uint8), offsets, not binary)
    arr = pa.Array.from_buffers(pa.binary(), len(refs), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    if binary:
        return arr
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:  # not UTF-8 (a sender's bytes): replace, on this rare path only
        return pa.array([b.decode("utf-8", "replace") for b in arr.to_pylist()], pa.string())


def ipv6_array(words: np.ndarray) -> pa.Array:
    be = np.ascontiguousarray(words, dtype=np.uint64).astype(">u8")
    return pa.Array.from_buffers(pa.binary(16), len(words), [None, pa.py_buffer(be.tobytes())])


Columns = dict[str, "np.ndarray | pa.Array"]


_NAMES: dict[tuple[tuple[int, ...], tuple[int, ...]], list[str]] = {}  # batch layout → archived names


def batch_columns(batch: FlowBatch, rows: np.ndarray | slice | None = None) -> tuple[Columns, int]:
    """Copies of the archived columns of `batch`'s flow records (options records left out):
    numpy arrays, strings already gathered into Arrow (they point into the batch's buffer)."""
    layout = batch.layout()
    names = _NAMES.get(layout)
    if names is None:
        if len(_NAMES) > 256:  # bounded: layouts change only with templates and enrichment
            _NAMES.clear()
        names = _NAMES[layout] = [n for n in batch.names() if n not in INTERNAL_COLUMNS or n == "exporter_index"]
    sel = None if rows is None else np.arange(batch.n)[rows]
    if "record_kind" in batch:
        kinds = batch["record_kind"]
        keep = kinds != _OPTIONS_RECORD if sel is None else kinds[sel] != _OPTIONS_RECORD
        if not keep.all():
            sel = np.flatnonzero(keep) if sel is None else sel[keep]
    n = batch.n if sel is None else len(sel)
    out: Columns = {}
    for name in names:
        a = batch[name]
        a = a.copy() if sel is None else a[sel]
        if REGISTRY[name].ftype in (FieldType.STRING, FieldType.BYTES):
            out[name] = _texts(a, batch.raw, REGISTRY[name].ftype == FieldType.BYTES)
        elif name in geo.NAMED_COLUMNS:  # per distinct code, then one vectorised take
            uniq, inv = np.unique(np.asarray(a, dtype=np.uint64), return_inverse=True)
            texts = pa.array([geo.code_text(name, int(c)) for c in uniq.tolist()], pa.string())
            out[name] = texts.take(pa.array(inv.reshape(-1).astype(np.int32)))
        else:
            out[name] = a
    return out, n


def _zeros(name: str, n: int) -> np.ndarray | pa.Array:
    ft = REGISTRY[name].ftype
    if ft == FieldType.STRING or name in geo.NAMED_COLUMNS:
        return pa.repeat(pa.scalar("", pa.string()), n)
    if ft == FieldType.BYTES:
        return pa.repeat(pa.scalar(b"", pa.binary()), n)
    return np.zeros((n, 2) if ft == FieldType.IPV6 else n, dtype=np.uint64)


def concat_columns(parts: list[tuple[Columns, int]]) -> tuple[Columns, int]:
    """Join buffered parts; a column some parts lack is 0 / '' there (as absent fields compare)."""
    if len(parts) == 1:
        return parts[0]
    names = list(dict.fromkeys(k for cols, _ in parts for k in cols))
    out: Columns = {}
    for name in names:
        pieces = [cols[name] if name in cols else _zeros(name, n) for cols, n in parts]
        if isinstance(pieces[0], pa.Array):
            out[name] = pa.concat_arrays(pieces)
        else:
            out[name] = np.concatenate(pieces)
    return out, sum(n for _, n in parts)


def columns_table(cols: Columns, n: int, exporter_address: Callable[[int], str]) -> pa.Table:
    """The archive's table from `batch_columns` output: ``exporter`` then every column, typed by
    `arrow_type` (numbers that do not fit their type become uint64). Vectorised: the only
    Python loop is over the distinct exporters."""
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    idx = cols.get("exporter_index")
    if idx is None:
        idx = np.zeros(n, dtype=np.uint64)
    idx = np.asarray(idx, dtype=np.int64)
    present = np.flatnonzero(np.bincount(idx)) if n else np.zeros(0, np.int64)
    code = np.zeros(int(present[-1]) + 1 if len(present) else 1, dtype=np.int32)
    code[present] = np.arange(len(present), dtype=np.int32)
    addresses = pa.array([exporter_address(int(u)) for u in present], pa.string())
    arrays.append(addresses.take(pa.array(code[idx])))
    fields.append(pa.field("exporter", pa.string(), nullable=False))
    for name, a in cols.items():
        if name in INTERNAL_COLUMNS:
            continue
        t = arrow_type(name)
        ft = REGISTRY[name].ftype
        if isinstance(a, pa.Array):
            arr = a
        elif ft == FieldType.IPV6:
            arr = ipv6_array(a)
        elif ft == FieldType.FLOAT:
            arr = pa.array(np.ascontiguousarray(a, dtype=np.uint64).view(np.float64))
        elif ft == FieldType.SIGNED:
            arr = pa.array(np.ascontiguousarray(a, dtype=np.uint64).view(np.int64))
        elif t in NARROW:
            if n and int(a.max()) > _LIMIT[t]:
                t = pa.uint64()
                arr = pa.array(a)
            else:
                arr = pa.array(a.astype(NARROW[t]))
        else:
            arr = pa.array(a)
        arrays.append(arr)
        fields.append(pa.field(name, t, nullable=False))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def flows_table(batch: FlowBatch, exporter_address: Callable[[int], str],
                rows: np.ndarray | slice | None = None) -> pa.Table:
    """The archive's columns for the flow records of `batch` (options records left out).

    Args:
        batch: decoded flows (may be a view: everything is copied).
        exporter_address: the decoder's exporter index → address text.
        rows: which rows (a slice or an index array); None = all.

    Returns:
        A table with ``exporter`` and every registry column the batch carries, typed by
        `arrow_type` (numbers that do not fit their type become uint64).
    """
    cols, n = batch_columns(batch, rows)
    return columns_table(cols, n, exporter_address)
