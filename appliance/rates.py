"""`RateMeter`: 1 s / 1 min / 5 min rates from exact counter samples (the probe's statistics and
the collector's live API both show them)."""

from __future__ import annotations

from collections import deque

__all__ = ["WINDOWS", "RateMeter"]

WINDOWS = {"1s": 1.0, "1m": 60.0, "5m": 300.0}


class RateMeter:
    """Rates from exact counter samples: (latest - sample one window ago) / elapsed."""

    def __init__(self, horizon_s: float = 310.0) -> None:
        self._samples: deque[tuple[float, dict[str, int]]] = deque()
        self._horizon = horizon_s

    def add(self, t: float, values: dict[str, int]) -> None:
        self._samples.append((t, dict(values)))
        while self._samples and t - self._samples[0][0] > self._horizon:
            self._samples.popleft()

    def rates(self) -> dict[str, dict[str, float]]:
        if len(self._samples) < 2:
            return {w: {} for w in WINDOWS}
        t1, last = self._samples[-1]
        out: dict[str, dict[str, float]] = {}
        for name, span in WINDOWS.items():
            base = self._samples[0]
            for s in reversed(self._samples):
                if t1 - s[0] >= span:
                    base = s
                    break
            dt = t1 - base[0]
            out[name] = {
                k: round((last[k] - base[1].get(k, 0)) / dt, 3) if dt > 0 else 0.0 for k in last
            }
        return out
