"""One module per panel (Dolphie's layout): ``fetch(snapshot)`` picks the panel's data out
of the tick's API documents, ``render(data, view)`` turns it into columns and rows.
Neither does I/O nor touches widgets, so tests call them on recorded JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.tui.client import Snapshot

__all__ = ["View", "sampled"]


@dataclass(frozen=True)
class View:
    """How values are shown: bytes instead of bits, and whether counters are sampling estimates."""

    in_bytes: bool = False
    sampled: bool = False


def sampled(snapshot: Snapshot) -> bool:
    """True when some exporter's counters were scaled by a sampling rate > 1."""
    return any(e.get("sampling_rate", 1) > 1 for e in snapshot.get("exporters").get("exporters", []))


def r1(rates: dict[str, Any], name: str) -> float | None:
    """The 1-second rate ``name`` out of an API ``rates`` dict."""
    return (rates or {}).get("1s", {}).get(name)
