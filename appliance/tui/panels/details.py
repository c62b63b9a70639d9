"""Key/value drill-downs: one exporter's counters, one alert (flattened JSON, every key; an
alert's ``scripts.action`` / ``scripts.back2norm``: status, exit, duration and output tail)."""

from __future__ import annotations

from typing import Any

from appliance.tui.table import Cell, Column, Row

COLUMNS = [Column("key", "key"), Column("value", "value")]
SCRIPT_FAILED = ("timed_out", "not_started", "skipped")  # an alert script's status worth red


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(doc, dict):
        out: list[tuple[str, Any]] = []
        for k, v in doc.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(doc, list) and doc and any(isinstance(v, (dict, list)) for v in doc):
        out = []
        for i, v in enumerate(doc):
            out += flatten(v, f"{prefix}[{i}]")
        return out
    return [(prefix, doc)]


def render(doc: dict[str, Any] | None) -> tuple[list[Column], list[Row]]:
    if doc is None:
        return COLUMNS, [Row("gone", ["(gone)", "no longer in the API"])]
    rows = []
    for k, v in flatten(doc):
        text = "null" if v is None else (" ".join(map(str, v)) if isinstance(v, list) else str(v))
        text = text.replace("\n", " ⏎ ").strip()  # a script's output: one table row
        failed = (k.endswith(".exit") and v not in (0, None)) or (k.endswith(".status") and v in SCRIPT_FAILED)
        style = "red" if failed or (("err" in k or "lost" in k) and v not in (0, None, [], "")) else ""
        rows.append(Row(k, [Cell(k, "bold"), Cell(text, style, v if not isinstance(v, list) else text)]))
    return COLUMNS, rows
