"""Packing flow columns into record bytes: the hot part of the encoders.

Fixed-length templates are packed column by column into a ``uint8[n, record_length]``
matrix (numba for integers, numpy for addresses and strings), so nothing runs per record
in the interpreter. Templates with IPFIX variable-length fields take a per-record path;
they are meant for options data (interface names), where records are few.

Both paths return the records back to back in one buffer plus ``offsets[n + 1]``, so the
packet builder slices datagrams the same way for either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numba import njit

from appliance.netflow.header import VARIABLE_LENGTH
from appliance.netflow.registry import FieldType
from appliance.netflow.templates import (
    EncodeError,
    Template,
    TemplateField,
    ValueOverflowError,
)

__all__ = [
    "as_uint64",
    "chunk_end",
    "pack_records",
    "record_count",
]


_STRING_TYPES = (FieldType.STRING, FieldType.BYTES)
_BLOCK_ROWS = 8192


@njit(cache=True, nogil=True)
def _put_uint(out: np.ndarray, values: np.ndarray, offset: int, length: int) -> None:
    """Write the low `length` bytes of each value big-endian at out[i, offset:]."""
    for i in range(values.shape[0]):
        v = values[i]
        for k in range(length - 1, -1, -1):
            out[i, offset + k] = np.uint8(v & np.uint64(0xFF))
            v = v >> np.uint64(8)


def record_count(columns: Mapping[str, Any]) -> int:
    """The number of records in `columns`: the common length of its non-scalar values.

    Raises:
        EncodeError: if columns disagree on their length.
    """
    lengths = {len(v) for v in columns.values() if np.ndim(v) > 0 or isinstance(v, list)}
    if len(lengths) > 1:
        sizes = {k: len(v) for k, v in columns.items() if np.ndim(v) > 0}
        raise EncodeError(f"columns have different lengths: {sizes}")
    return lengths.pop() if lengths else 1


def _column(columns: Mapping[str, Any], name: str, n: int) -> Any:
    try:
        return columns[name]
    except KeyError:
        raise EncodeError(
            f"no column {name!r} for the template; pass it (a scalar is broadcast) "
            "or remove the field from the template"
        ) from None


def as_uint64(name: str, value: Any, f: TemplateField, n: int, overflow: str) -> np.ndarray:
    """A column as uint64[n] ready for big-endian packing in `f.length` bytes."""
    arr = np.asarray(value)
    if f.ftype == FieldType.FLOAT:
        bits = np.asarray(arr, dtype=np.float64 if f.length == 8 else np.float32)
        return np.broadcast_to(bits.view(np.uint64 if f.length == 8 else np.uint32), (n,)).astype(
            np.uint64
        )
    if arr.dtype == np.bool_:
        arr = np.where(arr, 1, 2) if f.ftype == FieldType.BOOL else arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise EncodeError(f"column {name!r} must hold integers, not {arr.dtype}")
    arr = np.broadcast_to(arr, (n,))
    bits = 8 * f.length
    if f.ftype == FieldType.SIGNED:
        signed = arr.astype(np.int64)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if n and (signed.min() < lo or signed.max() > hi):
            if overflow != "clamp":
                raise ValueOverflowError(_overflow_message(name, f.length, hi))
            signed = np.clip(signed, lo, hi)
        return signed.view(np.uint64) & np.uint64((1 << bits) - 1 if bits < 64 else 2**64 - 1)
    if arr.dtype.kind == "i" and n and arr.min() < 0:
        raise EncodeError(f"column {name!r} has negative values for an unsigned field")
    out = arr.astype(np.uint64)
    if bits < 64 and f.ftype != FieldType.TIME_UPTIME_MS:
        limit = np.uint64((1 << bits) - 1)
        if n and out.max() > limit:
            if overflow != "clamp":
                raise ValueOverflowError(_overflow_message(name, f.length, int(limit)))
            out = np.minimum(out, limit)
    elif f.ftype == FieldType.TIME_UPTIME_MS:
        out = out & np.uint64(0xFFFFFFFF)  # sysUptime wraps after 49.7 days; so do we
    return out


def _overflow_message(name: str, length: int, limit: int) -> str:
    return (
        f"column {name!r} has values above {limit}, the largest that fits in {length} bytes; "
        "give the field a larger length in the template or create the encoder with "
        "overflow='clamp'"
    )


def _as_bytes(name: str, value: Any, n: int) -> list[bytes]:
    items = [value] * n if isinstance(value, (str, bytes)) else list(value)
    if len(items) != n:
        raise EncodeError(f"column {name!r} has {len(items)} values, expected {n}")
    return [v.encode() if isinstance(v, str) else bytes(v) for v in items]


def _fixed_strings(name: str, values: list[bytes], length: int, overflow: str) -> np.ndarray:
    if overflow != "clamp" and any(len(v) > length for v in values):
        raise ValueOverflowError(
            f"column {name!r} has a value longer than its {length}-byte field; give it a "
            "larger length (or variable length in IPFIX) or use overflow='clamp' to truncate"
        )
    # numpy's fixed-width bytes pad with NUL, which is what v9/IPFIX expect
    return np.array(values, dtype=f"S{length}").view(np.uint8).reshape(len(values), length)


def _pack_fixed(
    fields: Sequence[TemplateField], columns: Mapping[str, Any], n: int, overflow: str
) -> np.ndarray:
    out = np.zeros((n, sum(f.length for f in fields)), dtype=np.uint8)
    integers: list[tuple[np.ndarray, int, int]] = []  # (values, offset, length)
    offset = 0
    for f in fields:
        value = _column(columns, f.name, n)
        if f.ftype == FieldType.IPV6:
            addr = np.asarray(value, dtype=np.uint8)
            if addr.shape[-1:] != (16,):
                raise EncodeError(f"column {f.name!r} must be uint8[n, 16], not {addr.shape}")
            out[:, offset : offset + 16] = np.broadcast_to(addr, (n, 16))
        elif f.ftype in _STRING_TYPES:
            strings = _fixed_strings(f.name, _as_bytes(f.name, value, n), f.length, overflow)
            out[:, offset : offset + f.length] = strings
        else:
            integers.append((as_uint64(f.name, value, f, n, overflow), offset, f.length))
        offset += f.length
    # Row blocks that stay in cache while every field is written into them.
    for lo in range(0, n, _BLOCK_ROWS):
        hi = min(n, lo + _BLOCK_ROWS)
        for values, offset, length in integers:
            _put_uint(out[lo:hi], values[lo:hi], offset, length)
    return out


def _pack_variable(
    template: Template, columns: Mapping[str, Any], n: int, overflow: str
) -> tuple[bytes, np.ndarray]:
    """Per-record path for IPFIX variable-length fields (RFC 7011 section 7)."""
    parts: list[list[bytes]] = [[] for _ in range(n)]
    for f in template.fields:
        if f.length == VARIABLE_LENGTH:
            for i, v in enumerate(_as_bytes(f.name, _column(columns, f.name, n), n)):
                if len(v) > 0xFFFF:
                    raise ValueOverflowError(f"column {f.name!r}: value longer than 65535 bytes")
                prefix = bytes([len(v)]) if len(v) < 255 else b"\xff" + len(v).to_bytes(2, "big")
                parts[i].append(prefix + v)
        else:
            rows = _pack_fixed((f,), columns, n, overflow)
            for i in range(n):
                parts[i].append(rows[i].tobytes())
    records = [b"".join(p) for p in parts]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(r) for r in records], out=offsets[1:])
    return b"".join(records), offsets


def pack_records(
    template: Template, columns: Mapping[str, Any], overflow: str = "raise"
) -> tuple[bytes | memoryview, np.ndarray]:
    """Pack the records of `columns` for `template`.

    Args:
        template: the (options) template whose fields select and order the columns.
        columns: registry name → array (or scalar, broadcast; strings as a list).
        overflow: "raise" (default) or "clamp" for values that do not fit their field.

    Returns:
        The records back to back and ``offsets`` (int64[n + 1]) of each record in it.
    """
    n = record_count({f.name: columns[f.name] for f in template.fields if f.name in columns})
    if template.record_length is None:
        return _pack_variable(template, columns, n, overflow)
    matrix = _pack_fixed(template.fields, columns, n, overflow)
    return memoryview(matrix.reshape(-1)), np.arange(n + 1, dtype=np.int64) * template.record_length


def chunk_end(offsets: np.ndarray, start: int, budget: int) -> int:
    """The largest j such that records start..j-1 take at most `budget` bytes."""
    return int(np.searchsorted(offsets, offsets[start] + budget, side="right")) - 1
