"""Readable forms of decoded records: the dump-flows text and ``decode --format jsonl``.

This is a debugging path (per record Python is fine here, never in the pipeline). Every
template field is shown: known ones under their registry name, unknown ones as
``e<pen>.<id>`` / ``id<id>`` in hex; then the virtual fields.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import logging.handlers
import struct
import sys
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from appliance.collector.decode.decoder import Decoder
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import FieldType

__all__ = ["KIND_NAMES", "FlowDumper", "format_jsonl", "format_text", "records"]

KIND_NAMES = {0: "v5", 1: "data", 2: "options"}
_V9_SCOPES = {1: "scope_system", 2: "scope_interface", 3: "scope_line_card", 4: "scope_cache", 5: "scope_template"}
_VIRTUAL_SHOWN = ("dev_ip6", "dev_id", "sampling_rate", "recv_time_ns", "time_start_ms", "time_end_ms")


def _mac(v: int) -> str:
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def _value(ftype: FieldType, raw: bytes) -> Any:
    """A field's value from its wire bytes (used for fields without a column)."""
    if ftype == FieldType.IPV4 and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if ftype == FieldType.IPV6 and len(raw) == 16:
        return _v6(ipaddress.IPv6Address(raw))
    if ftype == FieldType.MAC and len(raw) == 6:
        return _mac(int.from_bytes(raw, "big"))
    if ftype == FieldType.STRING:
        return raw.rstrip(b"\x00").decode("utf-8", "replace")
    if ftype == FieldType.FLOAT and len(raw) in (4, 8):
        return struct.unpack("!f" if len(raw) == 4 else "!d", raw)[0]
    if ftype == FieldType.SIGNED and 0 < len(raw) <= 8:
        return int.from_bytes(raw, "big", signed=True)
    if ftype == FieldType.BYTES or len(raw) > 8:
        return raw.hex()
    return int.from_bytes(raw, "big")


def _walk(raw: np.ndarray, offset: int, fields: list[tuple[int, int, int, bool]]) -> list[bytes]:
    """The bytes of every field of one record (variable-length prefixes resolved)."""
    out = []
    pos = offset
    for _pen, _ie, ln, _scope in fields:
        if ln == 65535:
            ln = int(raw[pos])
            pos += 1
            if ln == 255:
                ln = int(raw[pos]) << 8 | int(raw[pos + 1])
                pos += 2
        out.append(bytes(raw[pos : pos + ln]))
        pos += ln
    return out


def records(batch: FlowBatch, decoder: Decoder, *, with_ies: bool = False) -> Iterator[dict[str, Any]]:
    """One dict per record: header facts, then every field under its name.

    Known numeric fields come from the batch's columns (scaled by sampling if the decoder
    applied it); the rest from the record's bytes.
    """
    reg = batch.registry
    slots = batch["template_slot"]
    offsets = batch["record_offset"]
    exps = batch["exporter_index"]
    kinds = batch["record_kind"]
    cache: dict[int, tuple[list, dict]] = {}
    addr_cache: dict[int, str] = {}
    for i in range(batch.n):
        slot = int(slots[i])
        if slot not in cache:
            cache[slot] = (decoder.template_fields(slot), decoder.template_info(slot))
        tfields, info = cache[slot]
        exp = int(exps[i])
        if exp not in addr_cache:
            addr_cache[exp] = decoder.exporter_address(exp)
        kind = int(kinds[i])
        rec: dict[str, Any] = {
            "exporter": addr_cache[exp],
            "source_id": int(batch["dev_id"][i]),
            "template_id": info["template_id"] if kind else None,
            "record_kind": KIND_NAMES[kind],
            "version": int(batch["version"][i]),
        }
        values = _walk(batch.raw, int(offsets[i]), tfields)
        ies = []
        repeated: set[str] = set()
        for (pen, ie, _ln, scope), raw in zip(tfields, values, strict=True):
            if pen == 0 and ie == 0 and kind == 0:
                continue  # v5 padding
            if scope and rec["version"] == 9:
                name = _V9_SCOPES.get(ie, f"scope_{ie}")
                value: Any = int.from_bytes(raw, "big") if len(raw) <= 8 else raw.hex()
            else:
                f = reg.lookup(pen, ie)
                if f is None:
                    name = f"e{pen}.{ie}" if pen else f"id{ie}"
                    value = raw.hex()
                elif f.counter and f.ftype == FieldType.UNSIGNED and len(raw) <= 8 and f.name in batch:
                    name, value = f.name, int(batch[f.name][i])
                else:
                    name, value = f.name, _value(f.ftype, raw)
            if name in rec:  # a field repeated in the template (tunnels, scopes): a list
                prev = rec[name]
                rec[name] = prev + [value] if isinstance(prev, list) and name in repeated else [prev, value]
                repeated.add(name)
            else:
                rec[name] = value
            if with_ies:
                ies.append([pen, ie, len(raw), raw.hex()])
        for vname in _VIRTUAL_SHOWN:
            v = batch[vname][i]
            rec[vname] = _v6_text(v) if vname == "dev_ip6" else int(v)
        if with_ies:
            rec["ies"] = ies
        yield rec


def _v6(ip: ipaddress.IPv6Address) -> str:
    """IPv6 text; IPv4-mapped addresses as ::ffff:a.b.c.d (as Wireshark and RFC 5952 show them)."""
    mapped = ip.ipv4_mapped
    return f"::ffff:{mapped}" if mapped is not None else str(ip)


def _v6_text(words: np.ndarray) -> str:
    """The exporter address: IPv4 exporters as plain IPv4."""
    value = (int(words[0]) << 64) | int(words[1])
    ip = ipaddress.IPv6Address(value)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)


def format_jsonl(rec: dict[str, Any]) -> str:
    return json.dumps(rec, separators=(",", ":"))


def format_text(rec: dict[str, Any]) -> str:
    """The dump-flows line: header facts, then name=value pairs."""
    head = f"{rec['exporter']} v{rec['version']} src_id={rec['source_id']}"
    if rec["template_id"] is not None:
        head += f" tid={rec['template_id']}"
    head += f" {rec['record_kind']}:"
    skip = {"exporter", "source_id", "template_id", "record_kind", "version", "ies"}
    body = " ".join(f"{k}={v}" for k, v in rec.items() if k not in skip)
    return f"{head} {body}"


class FlowDumper:
    """``debug.dump-flows``: none, syslog, stdout or a file path (appended)."""

    def __init__(self, target: str, decoder: Decoder, fmt: str = "text") -> None:
        self.target = target
        self.decoder = decoder
        self.fmt = format_jsonl if fmt == "jsonl" else format_text
        self._fh: IO[str] | None = None
        self._syslog: logging.Logger | None = None
        if target == "stdout":
            self._fh = sys.stdout
        elif target == "syslog":
            self._syslog = logging.getLogger("mirrorflow.flows")
            try:
                self._syslog.addHandler(logging.handlers.SysLogHandler(address="/dev/log"))
            except OSError:
                self._syslog.addHandler(logging.StreamHandler(sys.stderr))
            self._syslog.setLevel(logging.DEBUG)
            self._syslog.propagate = False
        elif target not in ("none", ""):
            self._fh = open(target, "a", buffering=1 << 16)

    @property
    def enabled(self) -> bool:
        return self._fh is not None or self._syslog is not None

    def dump(self, batch: FlowBatch) -> None:
        if not self.enabled:
            return
        for rec in records(batch, self.decoder):
            line = self.fmt(rec)
            if self._syslog is not None:
                self._syslog.debug(line)
            else:
                assert self._fh is not None
                self._fh.write(line + "\n")
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None and self._fh is not sys.stdout:
            self._fh.close()
        self._fh = None
