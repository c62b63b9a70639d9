"""``mirrorflow warm-cache``: compile every numba kernel of the appliance into NUMBA_CACHE_DIR
at install time, by running the probe's loop and the collector in-process on synthetic traffic.

`command` is the command and its report, `workload` what it runs, `traffic` the synthetic
datagrams and captures the workload feeds the collector.
"""

from __future__ import annotations

from appliance.warmcache.command import (
    COMPONENTS,
    WarmReport,
    add_parser,
    cache_dir_problem,
    cached_dispatchers,
    check_cache_dir,
    run,
    warm,
)

__all__ = [
    "COMPONENTS",
    "WarmReport",
    "add_parser",
    "cache_dir_problem",
    "cached_dispatchers",
    "check_cache_dir",
    "run",
    "warm",
]
