"""Top talkers: a window's last exported table with its "other" row (``/api/v1/windows``)."""

from __future__ import annotations

import time
from typing import Any

from appliance.tui import units
from appliance.tui.client import Snapshot
from appliance.tui.panels import View
from appliance.tui.table import Cell, Column, Row, num

LIST_COLUMNS = [Column("window", "object/window"), Column("time", "period", True), Column("limit", "limit", True),
                Column("rows", "rows", True), Column("end", "closed"), Column("top", "top row")]

#: counter columns (window field names) that hold bytes: shown as bits unless bytes are asked for
BYTE_COLUMNS = {"octets", "bytes", "in_bytes", "out_bytes"}
COUNTER_COLUMNS = BYTE_COLUMNS | {"packets", "flows", "pkts"}


def fetch(snapshot: Snapshot) -> list[dict[str, Any]]:
    return list(snapshot.get("windows").get("windows", []))


def name(w: dict[str, Any]) -> str:
    return f"{w['object']}/{w['window']}"


def _cell(column: dict[str, Any], value: Any, view: View) -> Cell:
    col = column["name"]
    if value is None:
        return Cell("", "", None)
    if isinstance(value, int) and col in BYTE_COLUMNS:
        return num(units.volume(value, view.in_bytes, view.sampled), value)
    if isinstance(value, int) and col in COUNTER_COLUMNS:
        return num(units.count(value, "", view.sampled), value)
    if isinstance(value, int):
        return num(str(value), value)
    return Cell(str(value), "", value)


def render_table(w: dict[str, Any] | None, view: View) -> tuple[list[Column], list[Row]]:
    """The rows of one window (top ``limit`` rows, then the pinned "other" row)."""
    if w is None or not w.get("last"):
        return [Column("empty", "(no table yet: the window has not closed)")], []
    last = w["last"]
    columns = [Column(c["name"], c["name"], c["type"] in ("BIGINT", "INTEGER", "SMALLINT")) for c in last["columns"]]
    rows = [Row(str(i), [_cell(c, v, view) for c, v in zip(last["columns"], r)]) for i, r in enumerate(last["rows"])]
    if last.get("other") is not None:
        cells = [_cell(c, v, view) for c, v in zip(last["columns"], last["other"])]
        first_key = next((i for i, v in enumerate(last["other"]) if v is None), None)
        if first_key is not None:
            cells[first_key] = Cell("(other)", "italic dim", None)  # the .sql remainder row: NULL keys
        rows.append(Row("other", [Cell(c.plain, "italic", c.value, justify=c.justify) for c in cells], pinned=True))
    return columns, rows


def render_list(windows: list[dict[str, Any]], view: View) -> tuple[list[Column], list[Row]]:
    rows = []
    for w in windows:
        last = w.get("last")
        n = len(last["rows"]) if last else 0
        end = time.strftime("%H:%M:%S", time.localtime(last["end"])) if last else "-"
        top = " ".join(str(v) for v in last["rows"][0]) if last and last["rows"] else "-"
        style = "" if w.get("active", True) else "dim"
        rows.append(Row(name(w), [Cell(name(w), style or "bold", name(w)), num(f"{w['time']}s", w["time"]),
                                  num(str(w["limit"]), w["limit"]), num(str(n), n),
                                  Cell(end, "", last["end"] if last else None), Cell(top)]))
    return LIST_COLUMNS, rows


def title(w: dict[str, Any] | None) -> str:
    if w is None:
        return "top talkers: no windows (add fwm to a monitoring object)"
    last = w.get("last")
    when = ""
    if last:
        when = " {}-{} ({} flows)".format(time.strftime("%H:%M:%S", time.localtime(last["start"])),
                                          time.strftime("%H:%M:%S", time.localtime(last["end"])), last["flows"])
    return f"top talkers {name(w)}: {', '.join(w['fields'])}, limit {w['limit']}{when}  [w: next window]"
