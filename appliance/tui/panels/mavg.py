"""Moving averages: every top key's value, threshold, % of threshold and state (``/api/v1/mavg``)."""

from __future__ import annotations

from typing import Any

from appliance.tui import units
from appliance.tui.client import Snapshot
from appliance.tui.panels import View
from appliance.tui.table import Cell, Column, Row, num

# most telling first: at 80 columns a long IPv6 key pushes the last column off screen
COLUMNS = [Column("key", "key"), Column("value", "value", True), Column("threshold", "threshold", True),
           Column("pct", "%thr", True), Column("state", "state"), Column("mavg", "object/mavg")]


def fetch(snapshot: Snapshot) -> list[dict[str, Any]]:
    return list(snapshot.get("mavg").get("mavg", []))


def percent(rate: float | None, threshold: float | None) -> float | None:
    if rate is None or not threshold:
        return None
    return 100.0 * rate / threshold


def colour(pct: float | None, raised: bool, direction: str = "over") -> str:
    """red: a level is raised; yellow: within 80 % of an over-threshold; green otherwise."""
    if raised:
        return "bold red"
    if pct is not None and direction == "over" and pct >= 80.0:
        return "yellow"
    return "green"


def counter_unit(counter: str) -> str:
    return {"packets": "p/s", "octets": "B/s", "bytes": "B/s", "flows": "f/s"}.get(counter, "/s")


def key_text(key: list[Any]) -> str:
    return " ".join(str(k) for k in key)


def render(mavgs: list[dict[str, Any]], view: View) -> tuple[list[Column], list[Row]]:
    rows = []
    for m in mavgs:
        counter = (m.get("counters") or ["?"])[0]
        unit = counter_unit(counter)
        for entry in m.get("top", []):
            rate = entry["rates"][0] if entry.get("rates") else None
            # the level closest to tripping decides the threshold shown
            best: tuple[float, float | None, str, bool, str] | None = None
            for lv in entry.get("levels", []):
                thr = (lv.get("thresholds") or [None])[0]
                pct = percent(rate, thr)
                score = float("inf") if lv.get("raised") else (pct or -1.0)
                if best is None or score > best[0]:
                    best = (score, thr, lv["level"], bool(lv.get("raised")), lv.get("direction", "over"))
            thr = best[1] if best else None
            pct = percent(rate, thr)
            raised = bool(best and best[3])
            state = f"{best[2]}!" if raised and best else ("ok" if best else "-")
            style = colour(pct, raised, best[4] if best else "over")
            value = rate * 8.0 if unit == "B/s" and not view.in_bytes else rate
            shown_unit = "b/s" if unit == "B/s" and not view.in_bytes else unit
            key = key_text(entry["key"])
            rows.append(Row(f"{m['mo']}/{m['mavg']}/{key}", [
                Cell(key, "bold" if raised else "", key),
                num(units.count(value, shown_unit, view.sampled), rate, style),
                num(units.count(thr * 8.0 if thr is not None and shown_unit == "b/s" else thr, shown_unit), thr),
                num("-" if pct is None else f"{pct:.0f}%", pct, style),
                Cell(state, style, state),
                Cell(f"{m['mo']}/{m['mavg']}", "", f"{m['mo']}/{m['mavg']}"),
            ]))
    return COLUMNS, rows
