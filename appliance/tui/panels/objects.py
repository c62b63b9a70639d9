"""Monitoring objects with their rates (``/api/v1/objects``)."""

from __future__ import annotations

from typing import Any

from appliance.tui import units
from appliance.tui.client import Snapshot
from appliance.tui.panels import View, r1
from appliance.tui.table import Cell, Column, Row, num

COLUMNS = [Column("name", "object"), Column("bps", "rate", True), Column("pps", "pps", True),
           Column("fps", "flows/s", True), Column("bytes", "volume", True), Column("windows", "windows")]


def fetch(snapshot: Snapshot) -> list[dict[str, Any]]:
    return list(snapshot.get("objects").get("objects", []))


def render(objects: list[dict[str, Any]], view: View) -> tuple[list[Column], list[Row]]:
    rows = []
    for o in objects:
        bps, pps, fps = (r1(o["rates"], n) for n in ("bps", "pps", "flows"))
        name = o["name"] if o.get("parent") is None else f"  {o['name']}"
        rows.append(Row(o["name"], [
            Cell(name, "bold", o["name"]),
            num(units.rate(bps, view.in_bytes, view.sampled), bps),
            num(units.pps(pps, view.sampled), pps),
            num(units.si(fps), fps),
            num(units.volume(o["bytes"], view.in_bytes, view.sampled), o["bytes"]),
            Cell(" ".join(o.get("windows", [])) or "-"),
        ]))
    return COLUMNS, rows
