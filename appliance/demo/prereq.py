"""What the demo needs, checked before it changes anything: each missing piece with how to get it."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from appliance.demo.pg import postgres_bin_dir

__all__ = ["Missing", "check", "SETUP_HINT"]

SETUP_HINT = "run 'make setup' (scripts/setup) as root in the repository"


@dataclass(frozen=True)
class Missing:
    what: str
    how: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{'missing' if self.fatal else 'optional'}: {self.what}\n    → {self.how}"


def _bcc_importable() -> str | None:
    """None if ``import bcc`` works in a fresh interpreter (it can crash one), else why not."""
    try:
        proc = subprocess.run([sys.executable, "-c", "import bcc"], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def check(*, probe: bool = True, db: bool = True) -> list[Missing]:
    """Every prerequisite that is missing (fatal ones stop the demo; others only shrink it)."""
    out: list[Missing] = []
    if os.geteuid() != 0:
        out.append(Missing("root privileges (network namespaces, veth pairs, eBPF)",
                           "run it as root: 'sudo .venv/bin/mirrorflow demo' or 'sudo make demo'"))
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("softflowd", "softflowd")):
        if shutil.which(tool) is None:
            out.append(Missing(f"'{tool}' (from the Debian package {package})",
                               f"apt-get install {package}, or {SETUP_HINT}"))
    if shutil.which("tcpreplay") is None:
        out.append(Missing("'tcpreplay': corpus traces are not replayed (synthetic traffic only)",
                           f"apt-get install tcpreplay, or {SETUP_HINT}", fatal=False))
    if probe:
        why = _bcc_importable()
        if why is not None:
            out.append(Missing(f"the bcc Python module ('import bcc' in {sys.executable}: {why})",
                               "apt-get install python3-bpfcc bpfcc-tools and make sure the venv "
                               f"sees system site-packages ({SETUP_HINT}); or run with --no-probe"))
        build = Path("/lib/modules") / platform.release() / "build"
        if not build.exists():
            out.append(Missing(f"kernel headers for bcc: {build} does not exist",
                               f"apt-get install linux-headers-{platform.release()}, or {SETUP_HINT} "
                               "(it links the newest linux-headers-amd64 when the kernel has none); "
                               "or run with --no-probe"))
    if db:
        if postgres_bin_dir() is None:
            out.append(Missing("PostgreSQL server binaries (/usr/lib/postgresql/*/bin/pg_ctl)",
                               f"apt-get install postgresql, or {SETUP_HINT}; or run with --no-db"))
        elif os.geteuid() == 0 and shutil.which("runuser") is None:
            out.append(Missing("'runuser' (PostgreSQL refuses to run as root)",
                               "apt-get install util-linux; or run with --no-db"))
        try:
            import psycopg  # noqa: F401
        except ImportError:
            out.append(Missing("the psycopg module", f"{SETUP_HINT}; or run with --no-db"))
    return out
