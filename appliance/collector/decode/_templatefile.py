"""The templates file (``templates.db``): written atomically, read back as synthesized
template packets plus the streams' facts (start time, sampling rate, next sequence number)."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

from appliance.collector.receive.packets import address_to_words
from appliance.netflow.header import (
    ENTERPRISE_BIT,
    IPFIX,
    IPFIX_HEADER_SIZE,
    IPFIX_HEADER_STRUCT,
    IPFIX_OPTIONS_TEMPLATE_SET_ID,
    IPFIX_TEMPLATE_SET_ID,
    SET_HEADER_SIZE,
    SET_HEADER_STRUCT,
    V9,
    V9_HEADER_STRUCT,
    V9_OPTIONS_TEMPLATE_SET_ID,
    V9_TEMPLATE_SET_ID,
)

__all__ = ["read_document", "template_packet", "write_document"]

#: one stream's facts: ((address hi, lo), version, source id, init ms, rate, next sequence or None)
Fact = tuple[tuple[int, int], int, int, int, int, "int | None"]


def write_document(path: Path, doc: dict[str, Any]) -> None:
    """Write `doc` as JSON next to `path`, fsync it, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_document(path: Path, max_bytes: int, max_templates: int,
                  max_streams: int) -> tuple[list[bytes], list[str], list[Fact], list[tuple[int, int, int]]]:
    """Template packets with their exporters, the streams' facts and the learned sampling rates.

    Raises:
        OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error: an
            unreadable, oversized or malformed file.
    """
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes >> 20} MiB")
    doc = json.loads(data)
    streams = doc["streams"][:max_streams]
    payloads, exporters = [], []
    for t in doc.get("templates", [])[:max_templates]:
        st_doc = streams[t["stream"]]
        payloads.append(template_packet(st_doc["version"], st_doc["source_id"], t))
        exporters.append(st_doc["exporter"])
    facts: list[Fact] = [(address_to_words(x["exporter"]), int(x["version"]), int(x["source_id"]) & 0xFFFFFFFF,
                          int(x["init_ms"]), int(x["rate"]),
                          None if x.get("next_seq") is None else int(x["next_seq"]) & 0xFFFFFFFF)
                         for x in streams]
    sampling = [(int(a), int(b) & 0xFFFFFFFF, int(c)) for a, b, c in doc.get("sampling", [])]
    return payloads, exporters, facts, sampling


def template_packet(version: int, source_id: int, t: dict) -> bytes:
    """A v9 or IPFIX packet holding one template definition (for restoring templates)."""
    fields = t["fields"]
    nscope = t["scope_fields"]
    options = t["kind"] == 2
    body = bytearray()
    if version == IPFIX:
        body += struct.pack("!HH", t["template_id"], len(fields))
        if options:
            body += struct.pack("!H", nscope)
        for pen, ie, ln in fields:
            if pen:
                body += struct.pack("!HHI", ie | ENTERPRISE_BIT, ln, pen)
            else:
                body += struct.pack("!HH", ie, ln)
        set_id = IPFIX_OPTIONS_TEMPLATE_SET_ID if options else IPFIX_TEMPLATE_SET_ID
    else:
        if options:
            body += struct.pack("!HHH", t["template_id"], nscope * 4, (len(fields) - nscope) * 4)
        else:
            body += struct.pack("!HH", t["template_id"], len(fields))
        for _pen, ie, ln in fields:
            body += struct.pack("!HH", ie, ln)
        set_id = V9_OPTIONS_TEMPLATE_SET_ID if options else V9_TEMPLATE_SET_ID
    body += b"\x00" * (-len(body) % 4)
    sets = SET_HEADER_STRUCT.pack(set_id, SET_HEADER_SIZE + len(body)) + bytes(body)
    if version == IPFIX:
        return IPFIX_HEADER_STRUCT.pack(IPFIX, IPFIX_HEADER_SIZE + len(sets), 0, 0, source_id) + sets
    return V9_HEADER_STRUCT.pack(V9, 1, 0, 0, 0, source_id) + sets
