"""``mirrorflow warm-cache``: a fresh cache gets every numba kernel, a second run compiles nothing.

The kernels it must cover are found here independently of the command, from the source
text: every ``@njit(cache=True ...)`` / ``@nb.njit(cache=True ...)`` def under appliance/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
APPLIANCE = REPO_ROOT / "appliance"
_KERNEL = re.compile(r"^@(?:nb\.|numba\.)?njit\((?P<options>[^)]*)\)[ \t]*\n(?:@.*\n)*def (?P<name>\w+)", re.MULTILINE)


def kernels_in_source() -> tuple[set[str], set[str], set[str]]:
    """(kernels of their own, inline="always" helpers, kernels named nowhere else) as module.name."""
    sources = {p: p.read_text() for p in sorted(APPLIANCE.rglob("*.py"))}
    own, inline, dead = set(), set(), set()
    for path, text in sources.items():
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        for m in _KERNEL.finditer(text):
            options, name = m["options"].replace(" ", ""), m["name"]
            if "cache=True" not in options:
                continue
            word = re.compile(rf"\b{name}\b")
            if 'inline="always"' in options or "inline='always'" in options:
                inline.add(f"{module}.{name}")
            elif sum(len(word.findall(t)) for t in sources.values()) == 1:
                dead.add(f"{module}.{name}")  # no caller can exist: nothing compiles it
            else:
                own.add(f"{module}.{name}")
    return own, inline, dead


def warm_cache(cache: Path) -> tuple[dict, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(NUMBA_CACHE_DIR=str(cache), NUMBA_CPU_NAME="generic")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "warm-cache", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout), seconds


def test_warm_cache_compiles_every_kernel_then_loads_them_all(tmp_path: Path) -> None:
    own, inline, dead = kernels_in_source()
    assert len(own) > 30, "the source scan found too few kernels: is the decorator spelled differently?"
    cache = tmp_path / "numba"

    cold, cold_s = warm_cache(cache)
    print(
        f"\nwarm-cache, empty cache: {cold_s:.1f} s ({cold['seconds']} s inside), "
        f"{len(cold['compiled'])} compiled, cpu {cold['cpu_name']}"
    )
    assert cold["cache_dir"] == str(cache) and cold["cpu_name"] == "generic"
    assert cold["unreached"] == []
    assert cold["cached"] == []
    assert own <= set(cold["compiled"]), f"not compiled: {sorted(own - set(cold['compiled']))}"
    assert set(cold["inlined"]) == inline
    assert set(cold["unused"]) == dead
    indexes = {p.name.rsplit("-", 1)[0] for p in cache.rglob("*.nbi")}  # <module>.<function>-<line>.pyXY.nbi
    assert {".".join(name.split(".")[-2:]) for name in cold["compiled"]} <= indexes

    warm, warm_s = warm_cache(cache)
    print(f"warm-cache, warm cache: {warm_s:.1f} s ({warm['seconds']} s inside), {len(warm['cached'])} from cache")
    assert warm["compiled"] == []
    assert warm["cached"] == cold["compiled"]
    assert warm["unreached"] == []
