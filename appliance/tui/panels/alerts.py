"""Active and past alerts (``/api/v1/alerts``)."""

from __future__ import annotations

import time
from typing import Any

from appliance.tui import units
from appliance.tui.client import Snapshot
from appliance.tui.panels import View
from appliance.tui.panels.mavg import counter_unit, key_text, percent
from appliance.tui.table import Cell, Column, Row, num

COLUMNS = [Column("state", "state"), Column("alert", "object/mavg/level"), Column("key", "key"),
           Column("rate", "rate", True), Column("pct", "%thr", True), Column("since", "since"),
           Column("for", "for", True)]


def fetch(snapshot: Snapshot) -> dict[str, list[dict[str, Any]]]:
    doc = snapshot.get("alerts")
    return {"active": list(doc.get("active", [])), "past": list(doc.get("past", []))}


def alert_key(a: dict[str, Any]) -> str:
    return f"{a['mo']}/{a['mavg']}/{a['level']}/{key_text(a['key'])}/{a['since']}"


def render(alerts: dict[str, list[dict[str, Any]]], view: View) -> tuple[list[Column], list[Row]]:
    rows = []
    for kind in ("active", "past"):
        for a in alerts[kind]:
            active = kind == "active"
            pct = percent(a.get("rate"), a.get("threshold"))
            if active and a.get("back2norm_in_s") is not None:
                state, style = "ENDING", "yellow"
            else:
                state, style = ("ACTIVE", "bold red") if active else ("ended", "dim")
            length = a["over_s"] if active or "ended_at" not in a else a["ended_at"] - a["since"]
            since = time.strftime("%H:%M:%S", time.localtime(a["since"]))
            rows.append(Row(("A:" if active else "P:") + alert_key(a), [
                Cell(state, style, state),
                Cell(f"{a['mo']}/{a['mavg']}/{a['level']}", style if active else "dim"),
                Cell(key_text(a["key"])),
                num(units.count(a.get("rate"), counter_unit(a.get("counter", "")), view.sampled), a.get("rate")),
                num("-" if pct is None else f"{pct:.0f}%", pct, style),
                Cell(since, "", a["since"]),
                num(units.duration(length), length),
            ]))
    return COLUMNS, rows
