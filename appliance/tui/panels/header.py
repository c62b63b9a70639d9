"""The header: traffic rates and a sparkline, collector and probe health, the URL, update age."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from appliance.tui import units
from appliance.tui.client import Snapshot
from appliance.tui.panels import View, r1

#: the snapshot is STALE when the collector's time is older than this (it publishes ~1 Hz)
STALE_AFTER_S = 3.0

IN_NAMES = ("in", "ingress", "inbound", "input", "download")
OUT_NAMES = ("out", "egress", "outbound", "output", "upload")


@dataclass(frozen=True)
class HeaderData:
    url: str
    error: str | None
    snapshot_time: float | None
    status: dict[str, Any]
    probe: dict[str, Any]
    directions: list[tuple[str, float | None, float | None]]  # (label, bps, pps)


def fetch(snapshot: Snapshot, url: str) -> HeaderData:
    status = snapshot.get("status").get("status") or {}
    objects = {o["name"].lower(): o for o in snapshot.get("objects").get("objects", [])}
    directions: list[tuple[str, float | None, float | None]] = []
    for label, names in (("in", IN_NAMES), ("out", OUT_NAMES)):
        o = next((objects[n] for n in names if n in objects), None)
        if o is not None:
            directions.append((label, r1(o["rates"], "bps"), r1(o["rates"], "pps")))
    if len(directions) < 2:  # no in/out objects: show the collector's total
        rates = status.get("rates") or {}
        directions = [("total", r1(rates, "bps"), r1(rates, "pps"))]
    return HeaderData(url, snapshot.error, snapshot.time, status, status.get("probe") or {}, directions)


def age(data: HeaderData, now: float) -> float | None:
    return None if data.snapshot_time is None else max(0.0, now - data.snapshot_time)


def is_stale(data: HeaderData, now: float) -> bool:
    a = age(data, now)
    return data.error is not None or a is None or a > STALE_AFTER_S


def render_rates(data: HeaderData, view: View) -> Text:
    out = Text()
    for label, bps, pps in data.directions:
        out.append(f"{label} ", "dim")
        out.append(units.rate(bps, view.in_bytes, view.sampled), "bold")
        out.append(" ")
        out.append(units.pps(pps, view.sampled), "bold")
        out.append("  ")
    out.rstrip()
    if view.sampled:  # on the second line: the rates must fit 80 columns beside the sparkline
        out.append(f"\n{units.SAMPLED_MARK} = estimated: scaled by the sampling rate", "yellow")
    return out


_LOSS_WORDS = {"sequence_gaps": "lost", "spool_refused_windows": "windows refused"}


def _recent_loss(loss: dict) -> str:
    """``lost 2140 @02:10`` for each kind of loss the collector counted recently (UTC time)."""
    parts = []
    for kind, word in _LOSS_WORDS.items():
        entry = loss.get(kind) or {}
        if entry.get("recent"):
            at = entry.get("last_at")
            when = time.strftime(" @%H:%M", time.gmtime(at)) if at else ""
            parts.append(f"{word} {entry['recent']}{when}")
    return " ".join(parts)


def render_status(data: HeaderData, now: float, paused: str = "") -> Text:
    """``collector ok · probe ok · URL · 0.4s ago`` (STALE in red when late)."""
    out = Text()
    if data.error is not None and not data.status:
        out.append("collector DOWN ", "bold white on red")
    else:
        health = data.status.get("health", "?")
        problems = data.status.get("problems") or []
        out.append("collector ", "dim")
        style = {"ok": "green", "degraded": "bold red"}.get(health, "bold yellow")
        out.append(health + (f"({len(problems)})" if problems else ""), style)
        lost = _recent_loss(data.status.get("loss") or {})
        if lost:
            out.append("  " + lost, "bold red")
    out.append("  probe ", "dim")
    detached = data.probe.get("detached") or []
    if not data.probe.get("available"):
        out.append("n/a", "dim")
    elif data.probe.get("stale"):
        out.append("STALE", "bold yellow")
    elif detached:  # an interface went away: the probe sees nothing of it (appliance/probe/links.py)
        out.append("DETACHED " + ",".join(detached[:3]) + ("…" if len(detached) > 3 else ""), "bold red")
    else:
        out.append("ok", "green")
    out.append(f"  {data.url}", "cyan")
    a = age(data, now)
    out.append("  upd ", "dim")
    out.append("-" if a is None else f"{a:.1f}s ago")
    if is_stale(data, now):
        out.append(" STALE", "bold white on red")
    if paused:
        out.append(f"  {paused}", "bold black on yellow")
    return out
