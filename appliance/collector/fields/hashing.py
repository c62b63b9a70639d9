"""The 64-bit mixing step every hash of the collector uses (keys of windows, moving averages, texts)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["mix"]


@njit(cache=True, nogil=True, inline="always")
def mix(h: np.uint64, w: np.uint64) -> np.uint64:
    """splitmix64's finaliser over ``h ^ w``: cheap and good enough for open addressing."""
    z = h ^ w
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
