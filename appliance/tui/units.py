"""Numbers as a network engineer reads them: bits/s with SI prefixes (or bytes/s), pps."""

from __future__ import annotations

__all__ = ["si", "rate", "pps", "count", "volume", "duration", "SAMPLED_MARK"]

#: prefixed to a value that was scaled by a sampling rate (an estimate, not a count)
SAMPLED_MARK = "~"

_PREFIXES = ("", "k", "M", "G", "T", "P", "E")


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """``47224544.1`` -> ``47.2 M`` + unit: three significant digits, decimal prefixes."""
    if value is None:
        return "-"
    v = float(value)
    i = 0
    while abs(v) >= 999.5 and i < len(_PREFIXES) - 1:
        v /= 1000.0
        i += 1
    if i == 0 and v == int(v):
        text = str(int(v))
    else:
        decimals = max(0, digits - len(str(int(abs(v)))))
        text = f"{v:.{decimals}f}"
    return f"{text} {_PREFIXES[i]}{unit}".rstrip()


def rate(bps: float | None, in_bytes: bool = False, sampled: bool = False) -> str:
    """A bit rate as ``47.2 Mb/s`` (``5.90 MB/s`` with ``in_bytes``), marked when sampled."""
    mark = SAMPLED_MARK if sampled else ""
    if bps is None:
        return "-"
    return mark + (si(bps / 8.0, "B/s") if in_bytes else si(bps, "b/s"))


def pps(value: float | None, sampled: bool = False) -> str:
    return (SAMPLED_MARK if sampled and value is not None else "") + si(value, "p/s")


def count(value: float | None, unit: str = "", sampled: bool = False) -> str:
    return (SAMPLED_MARK if sampled and value is not None else "") + si(value, unit)


def volume(octets: float | None, in_bytes: bool = False, sampled: bool = False) -> str:
    """A byte counter as bits (``124 Mb``) or bytes (``15.5 MB``)."""
    if octets is None:
        return "-"
    mark = SAMPLED_MARK if sampled else ""
    return mark + (si(octets, "B") if in_bytes else si(octets * 8.0, "b"))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
