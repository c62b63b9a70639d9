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

import pyarrow as pa

from appliance.collector.fields import FieldSpec, KeyKind
from appliance.netflow.registry import REGISTRY, FieldType

__all__ = ["flow_records", "top_records", "human", "flows_text", "top_text", "to_csv", "to_jsonl", "KIND_NAMES"]

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


def flow_records(table: pa.Table) -> Iterator[dict[str, Any]]:
    """One dict per archived flow, with the names and value forms of ``decode --format jsonl``:
    exporter, source_id, template_id, record_kind, version, then every field (addresses as
    text), then the appliance it came from. NULL (a column the flow's file did not have) is
    left out."""
    data = table.to_pydict()
    names = [n for n in table.column_names if n not in _HEAD and n not in _PARTITIONS and n != "dev_id"]
    for i in range(table.num_rows):
        kind = data.get("record_kind", [1] * table.num_rows)[i]
        rec: dict[str, Any] = {
            "exporter": data.get("exporter", [None] * table.num_rows)[i],
            "source_id": data.get("dev_id", [0] * table.num_rows)[i],
            "template_id": data["template_id"][i] if kind and "template_id" in data else None,
            "record_kind": KIND_NAMES.get(kind, str(kind)),
            "version": data.get("version", [None] * table.num_rows)[i],
        }
        for n in names:
            v = data[n][i]
            if v is not None:
                rec[n] = _value(n, v)
        if "dev_id" in data:
            rec["dev_id"] = data["dev_id"][i]
        if "appliance" in data:
            rec["appliance"] = data["appliance"][i]
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
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

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
                     r.get("exporter") or ""])  # fmt: skip
    head = ["Date first seen (UTC)", "Duration", "Proto", "Src IP Addr:Port", "", "Dst IP Addr:Port", "Packets",
            "Bytes", "Exporter"]  # fmt: skip
    lines = _table(head, rows, {1, 2, 6, 7})
    lines.append(f"Summary: total flows: {len(records)}, total bytes: {human(total_b)}, "
                 f"total packets: {human(total_p)}")  # fmt: skip
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
                 f"total packets: {human(t['packets'])}")  # fmt: skip
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
