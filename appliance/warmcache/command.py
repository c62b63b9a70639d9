"""``mirrorflow warm-cache``: compile every numba kernel of the appliance before its first start.

numba compiles a function the first time it meets new argument types; with ``cache=True`` it
saves the machine code in NUMBA_CACHE_DIR, and later processes load it in milliseconds. A
freshly installed appliance would otherwise spend a minute compiling at its first start
(6–8 minutes under QEMU TCG). Rather than listing signatures by hand, which drift from the
code, this runs the real code paths in-process on synthetic traffic, so the cache holds the
signatures the services use:

- probe: the probe's loop (`Probe.scan` over a `MemoryFlowCache`, a fake clock and memory
  transports) exporting NetFlow v9 with sampling, MPLS and direction, IPFIX and v5;
- collector: those datagrams plus router-style v9 and IPFIX ones (text fields, IPv6
  exporter), written to a pcap and a pcapng and replayed as ``collect --pcap`` does, with
  monitoring objects (filters with IP lists and functions, fixed windows, extended windows,
  moving averages with thresholds and scripts) and the live API's state and endpoints; then
  once more as a live collector restarting on the templates the replay saved.

Afterwards every numba dispatcher of the appliance with ``cache=True`` is reported as
compiled now, loaded from the cache, inlined (``inline="always"``: compiled into its callers,
no code of its own) or not reached by the workload. Everything happens in a temporary
directory; nothing is sent, and no socket is opened.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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

log = logging.getLogger("mirrorflow.warm")

#: what ``--component`` warms and reports: the packages whose numba functions count
COMPONENTS: dict[str, tuple[str, ...]] = {
    "probe": ("appliance.probe", "appliance.netflow"),
    "collector": ("appliance.collector", "appliance.netflow"),
    "all": ("appliance",),
}

EPILOG = """\
examples:
  NUMBA_CACHE_DIR=/var/cache/mirrorflow/collector/numba mirrorflow warm-cache --component collector
  NUMBA_CACHE_DIR=/var/cache/mirrorflow/probe/numba NUMBA_CPU_NAME=generic \\
      mirrorflow warm-cache --component probe --json

Runs the probe's loop and the collector (pcap replay, monitoring objects, moving averages,
live API) in-process on synthetic traffic, in a temporary directory and without network, so
numba compiles every kernel with the signatures the services use and saves it in
NUMBA_CACHE_DIR. Run it as the user and with the NUMBA_CACHE_DIR (and NUMBA_CPU_NAME) of the
unit that will load the cache. A second run loads everything and compiles nothing.

--json prints {"cache_dir", "cpu_name", "compiled", "cached", "inlined", "unreached",
"unused", "seconds"}: functions (module.name) compiled now, loaded from the cache, inlined
into their callers, not reached by the workload, and named nowhere in the code (dead: nothing
will ever compile them). Exit status: 0 every kernel compiled or loaded; 1 some kernel was
not reached (named on stderr); 2 NUMBA_CACHE_DIR unset or not writable.
"""


# ---- the command ----------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``warm-cache`` on the ``mirrorflow`` command."""
    p = sub.add_parser(
        "warm-cache",
        help="compile every numba kernel into NUMBA_CACHE_DIR (at install time, before the first start)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--component",
        choices=tuple(COMPONENTS),
        default="all",
        help="probe (appliance.probe + netflow), collector (appliance.collector + netflow) or all (default)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the workload does (stderr)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    problem = cache_dir_problem()
    if problem is not None:
        print(f"mirrorflow warm-cache: {problem}", file=sys.stderr)
        return 2
    report = warm(args.component)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(report.summary())
    if report.unreached:
        print(
            "mirrorflow warm-cache: not reached by the workload (they will compile at the first start): "
            + ", ".join(report.unreached),
            file=sys.stderr,
        )
        return 1
    return 0


def check_cache_dir(argv: list[str]) -> int | None:
    """For ``main`` before the parser is built: numba refuses to even import a ``cache=True``
    module when NUMBA_CACHE_DIR is unusable, so the check cannot wait for `run`.

    Returns:
        2 after printing why the cache directory cannot be used, None when it can (or when
        it is unset and only the help is asked for).
    """
    if {"-h", "--help"} & set(argv) and not os.environ.get("NUMBA_CACHE_DIR"):
        return None
    problem = cache_dir_problem()
    if problem is None:
        return None
    print(f"mirrorflow warm-cache: {problem}", file=sys.stderr)
    return 2


def cache_dir_problem() -> str | None:
    """Why NUMBA_CACHE_DIR cannot take the cache (None: it can; it is created if missing)."""
    path = os.environ.get("NUMBA_CACHE_DIR", "")
    if not path:
        return (
            "NUMBA_CACHE_DIR is not set: set it to the cache directory of the unit that will load the "
            "kernels, e.g. NUMBA_CACHE_DIR=/var/cache/mirrorflow/collector/numba"
        )
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return (
            f"NUMBA_CACHE_DIR={path} is not writable by this user ({exc.strerror or exc}): create it "
            "for the user the service runs as, or run warm-cache as that user"
        )
    import numba

    if os.path.realpath(numba.config.CACHE_DIR or "") != os.path.realpath(path):
        return f"numba uses {numba.config.CACHE_DIR!r}, not NUMBA_CACHE_DIR={path}: set it before starting Python"
    return None


# ---- the report -----------------------------------------------------------------------------


@dataclass(slots=True)
class WarmReport:
    """What one run did, per numba function (``module.qualname``)."""

    cache_dir: str
    cpu_name: str  # the CPU the code was compiled for (NUMBA_CPU_NAME or the host's)
    compiled: list[str] = field(default_factory=list)  # compiled now and saved
    cached: list[str] = field(default_factory=list)  # loaded from the cache
    inlined: list[str] = field(default_factory=list)  # inline="always": part of their callers
    unreached: list[str] = field(default_factory=list)  # the workload never called them
    unused: list[str] = field(default_factory=list)  # named nowhere but in their definition
    seconds: float = 0.0

    def summary(self) -> str:
        n = len(self.compiled) + len(self.cached) + len(self.inlined) + len(self.unreached) + len(self.unused)
        return (
            f"warm-cache: {n} functions: {len(self.compiled)} compiled, {len(self.cached)} from cache, "
            f"{len(self.inlined)} inlined; {len(self.unreached)} not reached"
            + (f", {len(self.unused)} unused (no caller: {', '.join(self.unused)})" if self.unused else "")
            + f"; cache {self.cache_dir}; cpu {self.cpu_name}; {self.seconds:.0f} s"
        )


def warm(component: str = "all") -> WarmReport:
    """Run the workload of `component` and report every cached numba function of its packages."""
    import numba
    from numba.core.registry import cpu_target

    from appliance.warmcache.workload import run_workload

    t0 = time.monotonic()
    packages = COMPONENTS[component]
    with tempfile.TemporaryDirectory(prefix="mirrorflow-warm-") as tmp:
        run_workload(component, Path(tmp))
    report = WarmReport(numba.config.CACHE_DIR, cpu_target.target_context.codegen().magic_tuple()[1])
    for name, disp in cached_dispatchers(packages).items():
        inline = disp.targetoptions.get("inline") == "always"
        if not inline:
            _load_cached_overloads(disp)
        stats = disp.stats
        if sum(stats.cache_misses.values()):
            report.compiled.append(name)
        elif sum(stats.cache_hits.values()):
            report.cached.append(name)
        elif inline:
            report.inlined.append(name)
        elif _named_once(disp.py_func.__name__):
            report.unused.append(name)
        else:
            report.unreached.append(name)
    report.seconds = round(time.monotonic() - t0, 1)
    return report


def cached_dispatchers(packages: Iterable[str]) -> dict[str, Any]:
    """Every numba dispatcher with ``cache=True`` defined in `packages`, by ``module.qualname``
    (every module of the packages is imported first, so none is missed)."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    packages = tuple(packages)
    for pkg in packages:
        _import_tree(pkg)
    found: dict[str, Any] = {}
    for modname, module in list(sys.modules.items()):
        if module is None or not _inside(modname, packages):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and not isinstance(value._cache, NullCache):
                func = value.py_func
                if _inside(func.__module__, packages):
                    found[f"{func.__module__}.{func.__qualname__}"] = value
    return dict(sorted(found.items()))


def _named_once(name: str) -> bool:
    """Whether `name` occurs exactly once (its ``def``) in the appliance's sources, comments
    and docstrings included: then no code can call it, and no service will compile it."""
    import re

    root = Path(importlib.import_module("appliance").__file__ or "").parent
    word = re.compile(rf"\b{re.escape(name)}\b")
    return sum(len(word.findall(p.read_text(errors="replace"))) for p in root.rglob("*.py")) == 1


def _inside(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _import_tree(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), package + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an optional dependency (bcc): its kernels, if any, count as unreached
            log.warning("cannot import %s: %s", info.name, exc)


def _load_cached_overloads(disp: Any) -> None:
    """Load what the cache holds for this CPU and this process has not used yet.

    A function called only from other numba functions is compiled into its callers; when
    those come from the cache, nothing loads it, yet its own entries (saved when the
    callers were compiled) are what a recompiling caller would need. Loading them counts
    them as cached, and proves they load. numba has no public API for the index: on any
    surprise the function is left as it is.
    """
    from numba.core import sigutils

    try:
        cache = disp._cache
        codegen = disp.targetctx.codegen()
        index = cache._cache_file._load_index()
        for key in list(index):
            sig = key[0]
            if key != cache._index_key(sig, codegen):  # another CPU, or older code
                continue
            args, _ = sigutils.normalize_signature(sig)
            if tuple(args) not in disp.overloads:
                disp.compile(sig)
    except Exception as exc:
        log.warning("cannot read the cache index of %s: %s", disp.py_func.__qualname__, exc)
