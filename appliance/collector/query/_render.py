"""What a query prints: records with ``decode --format jsonl``'s names, nfdump-like tables, CSV.

Output is bounded by the query's row limit, so per-row Python is fine here (it never runs in
the collector).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from appliance.collector.fields import FieldSpec, KeyKind
from appliance.netflow.registry import REGISTRY, FieldType

__all__ = ["flow_records", "flows_csv", "top_records", "human", "flows_text", "top_text", "to_csv", "to_jsonl",
           "KIND_NAMES"]

KIND_NAMES = {0: "v5", 1: "data", 2: "options"}  # as `decode --format jsonl` names them
_HEAD = ("exporter", "source_id", "template_id", "record_kind", "version")
_PARTITIONS = ("appliance", "date", "hour")
_PROTO = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMP6", 132: "SCTP"}


def _v6(value: bytes) -> str:
    ip = ipaddress.IPv6Address(value)
    return f"::ffff:{ip.ipv4_mapped}" if ip.ipv4_mapped is not None else str(ip)


def _mac(value: int) -> str:
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


def _value(name: str, v: Any) -> Any:
    f = REGISTRY.by_name.get(name)
    if f is None or v is None:
        return v
    if f.ftype == FieldType.IPV4:
        return str(ipaddress.IPv4Address(v))
    if f.ftype == FieldType.IPV6:
        if name == "dev_ip6":  # as decode prints the exporter: IPv4 exporters as plain IPv4
            ip = ipaddress.IPv6Address(v)
            return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)
        return _v6(v)
    if f.ftype == FieldType.MAC:
        return _mac(v)
    if f.ftype == FieldType.BYTES:
        return v.hex()
    return v


def _column(table: pa.Table, name: str) -> list[Any]:
    """One column as printed values: addresses converted once per distinct value."""
    col = table[name].combine_chunks() if isinstance(table[name], pa.ChunkedArray) else table[name]
    f = REGISTRY.by_name.get(name)
    if f is None or f.ftype not in (FieldType.IPV4, FieldType.IPV6, FieldType.MAC, FieldType.BYTES) or not len(col):
        return col.to_pylist()
    nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
    if f.ftype == FieldType.BYTES:
        return [None if v is None else v.hex() for v in col.to_pylist()]
    values = col.to_numpy(zero_copy_only=False)
    if f.ftype == FieldType.IPV6:
        values = np.array([b"\0" * 16 if v is None else v for v in values], dtype="S16") if nulls is not None \
            else values.astype("S16")
    elif nulls is not None:
        values = np.where(nulls, 0, values).astype(np.uint64)
    uniq, inv = np.unique(values, return_inverse=True)
    texts = np.array([_value(name, v.ljust(16, b"\0") if isinstance(v, bytes) else int(v)) for v in uniq.tolist()],
                     dtype=object)
    out = texts[inv.reshape(-1)]
    if nulls is not None:
        out[nulls] = None
    return out.tolist()


def flows_csv(table: pa.Table) -> bytes:
    """The flows as CSV with the columns of `flow_records` (written by Arrow's C++ writer: a
    listing of millions of flows does not go through Python row by row). NULL = empty cell."""
    n = table.num_rows
    have = set(table.column_names)
    out: dict[str, pa.Array] = {}

    def plain(name: str) -> pa.Array:
        f = REGISTRY.by_name.get(name)
        if f is not None and f.ftype in (FieldType.IPV4, FieldType.IPV6, FieldType.MAC, FieldType.BYTES):
            return pa.array(_column(table, name), pa.string())
        return table[name]

    out["exporter"] = plain("exporter") if "exporter" in have else pa.nulls(n, pa.string())
    out["source_id"] = plain("dev_id") if "dev_id" in have else pa.nulls(n, pa.uint64())
    kinds = table["record_kind"].combine_chunks() if "record_kind" in have else pa.array(np.ones(n, np.uint64))
    if "template_id" in have:
        out["template_id"] = pc.if_else(pc.equal(kinds, 0), pa.scalar(None, table["template_id"].type),
                                        table["template_id"])
    out["record_kind"] = pa.array(["v5", "data", "options"]).take(pc.min_element_wise(kinds, 2).cast(pa.int64()))
    if "version" in have:
        out["version"] = table["version"]
    for name in table.column_names:
        if name not in _HEAD and name not in _PARTITIONS and name != "dev_id":
            out[name] = plain(name)
    if "dev_id" in have:
        out["dev_id"] = table["dev_id"]
    if "appliance" in have:
        out["appliance"] = table["appliance"]
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(pa.table(out), sink)
    return sink.getvalue().to_pybytes()


def flow_records(table: pa.Table) -> Iterator[dict[str, Any]]:
    """One dict per archived flow, with the names and value forms of ``decode --format jsonl``:
    exporter, source_id, template_id, record_kind, version, then every field (addresses as
    text), then the appliance it came from. NULL (a column the flow's file did not have) is
    left out."""
    n = table.num_rows
    names = [c for c in table.column_names if c not in _HEAD and c not in _PARTITIONS and c != "dev_id"]
    cols = {c: _column(table, c) for c in table.column_names}
    none = [None] * n
    exporter, dev_id = cols.get("exporter", none), cols.get("dev_id", [0] * n)
    kinds, tids, versions = cols.get("record_kind", [1] * n), cols.get("template_id", none), cols.get("version", none)
    apps = cols.get("appliance")
    body = [cols[c] for c in names]
    for i in range(n):
        kind = kinds[i]
        rec: dict[str, Any] = {"exporter": exporter[i], "source_id": dev_id[i],
                               "template_id": tids[i] if kind else None,
                               "record_kind": KIND_NAMES.get(kind, str(kind)), "version": versions[i]}
        for c, values in zip(names, body):
            v = values[i]
            if v is not None:
                rec[c] = v
        if "dev_id" in cols:
            rec["dev_id"] = dev_id[i]
        if apps is not None:
            rec["appliance"] = apps[i]
        yield rec


def key_text(spec: FieldSpec, values: list[Any]) -> Any:
    """A ``--top`` key's value as printed: addresses as text, numbers as numbers."""
    if spec.kind == KeyKind.IP_ANY:
        v6, v4 = values
        return _v6(v6) if v6 is not None else str(ipaddress.IPv4Address(v4 or 0))
    v = values[0]
    if spec.kind == KeyKind.IPV4:
        return str(ipaddress.IPv4Address(v))
    if spec.kind == KeyKind.IPV6:
        return _v6(v)
    if spec.kind == KeyKind.MAC:
        return _mac(v)
    return v


def top_records(result: Any) -> list[dict[str, Any]]:
    """``--top`` rows: the key fields (window column names) then bytes, packets, flows."""
    out = []
    for row in result.rows:
        rec = {s.column: key_text(s, row[s.column]) for s in result.specs}
        rec.update(bytes=row["bytes"], packets=row["packets"], flows=row["flows"])
        out.append(rec)
    return out


def human(n: float) -> str:
    """nfdump's way: plain below a million, then 1.2 M, 3.4 G, 5.6 T (powers of 1000)."""
    for unit, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return str(int(n))


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header)] + [line(r) for r in rows]


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def flows_text(records: list[dict[str, Any]], files: int, elapsed_s: float) -> str:
    """nfdump's line format: first seen, duration, proto, src:port -> dst:port, packets, bytes."""
    rows = []
    total_b = total_p = 0
    for r in records:
        start = r.get("time_start_ms") or (r.get("recv_time_ns", 0) // 1_000_000)
        end = r.get("time_end_ms") or start
        src = r.get("src_addr6") if r.get("src_addr6", "::") != "::" else r.get("src_addr", "0.0.0.0")
        dst = r.get("dst_addr6") if r.get("dst_addr6", "::") != "::" else r.get("dst_addr", "0.0.0.0")
        b, p = int(r.get("bytes", 0)), int(r.get("packets", 0))
        total_b += b
        total_p += p
        rows.append([_when(start), f"{max(0, end - start) / 1000:.3f}",
                     _PROTO.get(r.get("proto", 0), str(r.get("proto", 0))),
                     f"{src}:{r.get('src_port', 0)}", "->", f"{dst}:{r.get('dst_port', 0)}", human(p), human(b),
                     r.get("exporter") or ""])
    head = ["Date first seen (UTC)", "Duration", "Proto", "Src IP Addr:Port", "", "Dst IP Addr:Port", "Packets",
            "Bytes", "Exporter"]
    lines = _table(head, rows, {1, 2, 6, 7})
    lines.append(f"Summary: total flows: {len(records)}, total bytes: {human(total_b)}, "
                 f"total packets: {human(total_p)}")
    lines.append(f"Files: {files}, time: {elapsed_s:.3f}s")
    return "\n".join(lines)


def top_text(result: Any, by: str, files: int, elapsed_s: float) -> str:
    """nfdump's -s format: key, then flows, packets, bytes with their share of the total."""
    t = result.totals
    names = [s.text for s in result.specs]
    rows = []
    for rec in top_records(result):
        cells = [str(rec[s.column]) for s in result.specs]
        for m in ("flows", "packets", "bytes"):
            share = 100.0 * rec[m] / t[m] if t[m] else 0.0
            cells.append(f"{human(rec[m])} ({share:5.1f})")
        rows.append(cells)
    k = len(names)
    lines = [f"Top {len(rows)} {', '.join(names)} ordered by {by}:"]
    lines += _table(names + ["Flows(%)", "Packets(%)", "Bytes(%)"], rows, {k, k + 1, k + 2})
    lines.append(f"Summary: total flows: {t['flows']}, total bytes: {human(t['bytes'])}, "
                 f"total packets: {human(t['packets'])}")
    lines.append(f"Files: {files}, time: {elapsed_s:.3f}s")
    return "\n".join(lines)


def to_jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)


def to_csv(records: list[dict[str, Any]]) -> str:
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(names), lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    return buf.getvalue()
