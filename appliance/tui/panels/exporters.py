"""Exporters: the probe and the routers in one table, same columns (``/api/v1/exporters``)."""

from __future__ import annotations

from typing import Any

from appliance.tui import units
from appliance.tui.client import Snapshot
from appliance.tui.panels import View, r1
from appliance.tui.table import Cell, Column, Row, num

COLUMNS = [Column("role", "role"), Column("address", "exporter"), Column("bps", "rate", True),
           Column("pps", "pps", True), Column("fps", "flows/s", True), Column("sampling", "1:N", True),
           Column("lost", "lost", True), Column("errors", "errors", True)]


def fetch(snapshot: Snapshot) -> dict[str, Any]:
    doc = snapshot.get("exporters")
    return {"exporters": list(doc.get("exporters", [])), "probe": doc.get("probe") or {}}


def render(data: dict[str, Any], view: View) -> tuple[list[Column], list[Row]]:
    rows = []
    # the probe first, then the routers: one glance compares what the mirror saw with what they report
    for e in sorted(data["exporters"], key=lambda e: (e["role"] != "probe", e["address"])):
        scaled = e.get("sampling_rate", 1) > 1
        bps, pps, fps = (r1(e["rates"], n) for n in ("bps", "pps", "flows"))
        lost = e["sequence"]["lost_packets"] + e["sequence"]["lost_flows"]
        errors = e["decode_errors_total"]
        rows.append(Row(e["address"], [
            Cell(e["role"], "cyan" if e["role"] == "probe" else ""),
            Cell(e["address"], "bold"),
            num(units.rate(bps, view.in_bytes, scaled), bps),
            num(units.pps(pps, scaled), pps),
            num(units.si(fps), fps),
            num(str(e.get("sampling_rate", 1)), e.get("sampling_rate", 1), "yellow" if scaled else ""),
            num(str(lost), lost, "red" if lost else ""),
            num(str(errors), errors, "red" if errors else ""),
        ]))
    return COLUMNS, rows


def probe_line(probe: dict[str, Any]) -> str:
    """One line on the probe's own statistics (the kernel side the exporters table cannot show)."""
    if not probe:
        return "probe: -"
    if not probe.get("available"):
        return f"probe: not available ({probe.get('error') or 'no statistics'})"
    stats = probe.get("stats") or {}
    total = (stats.get("kernel") or {}).get("total") or {}
    age = units.duration(probe.get("age_s"))
    parts = [f"probe pid {stats.get('pid', '?')}", f"stats {age} old" + (" STALE" if probe.get("stale") else "")]
    if probe.get("detached"):
        parts.append("DETACHED " + ",".join(probe["detached"]))
    parts += [f"{k} {units.si(v)}" for k, v in list(total.items())[:4] if isinstance(v, (int, float))]
    return "  ".join(parts)
