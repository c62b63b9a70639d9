"""The flow tail of one object (``/api/v1/flows?object=NAME``): the Enter drill-down of Objects."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from appliance.collector.fields.readable import protocol_name
from appliance.tui import units
from appliance.tui.panels import View
from appliance.tui.table import Cell, Column, Row, num

COLUMNS = [Column("time", "received"), Column("src", "source"), Column("dst", "destination"),
           Column("proto", "proto", True), Column("bytes", "bytes", True), Column("packets", "pkts", True),
           Column("exporter", "exporter")]

LIMIT = 200


def path(obj: str, limit: int = LIMIT, expr: str = "") -> str:
    """The API path of an object's tail; ``expr``: only flows matching it (the filter language)."""
    where = f"&filter={quote(expr)}" if expr.strip() else ""
    return f"/api/v1/flows?object={quote(obj)}{where}&limit={limit}"


def _endpoint(f: dict[str, Any], side: str) -> str:
    """``1.2.3.4:443``, then the country and AS the collector's enrichment gives (``DE AS3320``)."""
    addr = f.get(f"{side}_addr") or f.get(f"{side}_addr6") or f.get(f"{side}_ip") or "?"
    port = f.get(f"{side}_port")
    text = str(addr) if port is None else (f"[{addr}]:{port}" if ":" in str(addr) else f"{addr}:{port}")
    where = [w for w in (f.get(f"{side}_country"), f"AS{f[f'{side}_asn']}" if f.get(f"{side}_asn") else "") if w]
    return " ".join([text, *where])


def _proto(f: dict[str, Any]) -> str:
    """The protocol by name (``tcp``, ``icmp6``), numbers the names table does not know."""
    p = f.get("proto")
    return protocol_name(p) if isinstance(p, int) else "-"


def render(doc: dict[str, Any], view: View) -> tuple[list[Column], list[Row]]:
    rows = []
    for i, f in enumerate(reversed(doc.get("flows", []))):  # newest first
        ns = f["recv_time_ns"]
        scaled = f.get("sampling_rate", 1) > 1
        octets = f.get("bytes")
        rows.append(Row(f"{ns}-{i}", [
            Cell(time.strftime("%H:%M:%S", time.localtime(ns / 1e9)), "", ns),
            Cell(_endpoint(f, "src")), Cell(_endpoint(f, "dst")),
            num(_proto(f), f.get("proto")),
            num(units.volume(octets, True, scaled) if octets is not None else "-", octets),
            num(units.count(f.get("packets"), "", scaled), f.get("packets")),
            Cell(str(f.get("exporter", ""))),
        ]))
    return COLUMNS, rows


def title(doc: dict[str, Any]) -> str:
    if "error" in doc:
        return f"flows: {doc['error']['message'].splitlines()[0]}"
    where = f" where {doc['filter']}" if doc.get("filter") else ""
    return f"flow tail of {doc.get('object')}{where}: newest {doc.get('count')} of {doc.get('offered')} matched"


def error(doc: dict[str, Any]) -> str | None:
    """The API's whole error message (a bad filter: position and caret), None when fine."""
    return doc["error"]["message"] if "error" in doc else None
