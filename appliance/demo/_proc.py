"""Whether processes still run, read from /proc.

A zombie counts as dead: where the init of a container or build root never reaps orphans,
a killed process stays a zombie for good, and waiting for it to vanish would never end.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["process_alive", "group_alive"]


def _stat_fields(stat_path: Path) -> list[str] | None:
    """The fields of a /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        return stat_path.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as dead)."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return fields is not None and fields[0] != "Z"


def group_alive(pgid: int) -> bool:
    """True while any process of the group runs (zombies excluded)."""
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat_path)
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False
