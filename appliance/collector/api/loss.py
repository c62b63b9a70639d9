"""Loss that must be seen: counters of lost data turned into events that keep health "degraded"
for `LOSS_PERIOD_S` after the last one, with how much and when.

Kinds: ``spool_refused_windows`` (closed windows refused because the spool was full: they
are gone) and ``sequence_gaps`` (packets (v9) and flows (v5, IPFIX) the exporters' sequence
numbers say never arrived, a restart's gap included since sequences persist in templates.db).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

__all__ = ["LOSS_KINDS", "LOSS_PERIOD_S", "LossTracker"]

#: how long a loss keeps health "degraded" (and counts in ``recent``)
LOSS_PERIOD_S = 3600.0
#: kind → (what was lost, what to do)
LOSS_KINDS = {
    "spool_refused_windows": ("windows refused because the spool was full (lost)",
                              "free space in spool-dir or raise spool-max-mb / spool-max-files, "
                              "and check the database"),
    "sequence_gaps": ("packets/flows lost to exporter sequence gaps (a collector restart included)",
                      "see /api/v1/exporters"),
}
_BUCKET_S = 60  # events within a minute are kept as one


class LossTracker:
    """Watches cumulative loss counters; remembers per kind when and how much was lost.

    Args:
        period_s: how long a loss counts as recent.
    """

    def __init__(self, period_s: float = LOSS_PERIOD_S) -> None:
        self.period_s = period_s
        self._total: dict[str, int] = dict.fromkeys(LOSS_KINDS, 0)
        self._seen: dict[str, int] = dict.fromkeys(LOSS_KINDS, 0)
        self._last_at: dict[str, float | None] = dict.fromkeys(LOSS_KINDS)
        self._events: dict[str, deque[list[float]]] = {k: deque() for k in LOSS_KINDS}

    def update(self, now: float, counters: dict[str, int]) -> None:
        """Feed the current value of each kind's cumulative counter (wall-clock `now`)."""
        for kind, value in counters.items():
            delta = int(value) - self._seen[kind]
            self._seen[kind] = int(value)
            if delta <= 0:  # no loss, or the counter started over (a replaced exporter)
                continue
            self._total[kind] += delta
            self._last_at[kind] = now
            ev = self._events[kind]
            if ev and int(ev[-1][0] // _BUCKET_S) == int(now // _BUCKET_S):
                ev[-1][1] += delta
            else:
                ev.append([now, delta])
        for ev in self._events.values():
            while ev and ev[0][0] < now - self.period_s:
                ev.popleft()

    def report(self) -> dict[str, Any]:
        """``{"period_s", kind: {"total", "recent", "last_at"}}`` (recent: within the period)."""
        out: dict[str, Any] = {"period_s": self.period_s}
        for kind in LOSS_KINDS:
            out[kind] = {"total": self._total[kind], "recent": int(sum(n for _, n in self._events[kind])),
                         "last_at": self._last_at[kind]}
        return out

    @property
    def degraded(self) -> bool:
        return any(self._events[k] for k in LOSS_KINDS)

    def problems(self) -> list[str]:
        """One sentence per kind with recent loss: how much, when last, what to do."""
        out = []
        for kind, (what, advice) in LOSS_KINDS.items():
            recent = int(sum(n for _, n in self._events[kind]))
            if recent:
                at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self._last_at[kind] or 0))
                out.append(f"{recent} {what} in the last {self.period_s / 60:.0f} min, last at {at}: {advice}")
        return out
