"""``mirrorflow demo --headless``: the README's main command end to end, as a user runs it.

One run of 45 s: both exporters (the probe and softflowd as a router) deliver flows, the attack
burst raises the moving-average alert (and its script runs), PostgreSQL holds window rows,
and nothing is left behind: no namespaces, veths, processes or working directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from appliance.demo.netns import PREFIX, list_links, list_namespaces

pytestmark = [pytest.mark.netns, pytest.mark.root, pytest.mark.postgres, pytest.mark.peers,
              pytest.mark.slow,
              pytest.mark.skipif(shutil.which("softflowd") is None, reason="softflowd not installed")]


def _ours(pid: int) -> str:
    return f"{PREFIX}{pid:06x}"


def _processes_of(pid: int) -> list[str]:
    """Processes whose parent is ``pid`` or that run in its namespaces (their cmdline names them)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = stat.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if _ours(pid) in cmd or f"mirrorflow-demo-{pid:x}-" in cmd:
            out.append(cmd)
    return out


def test_headless_demo_runs_and_leaves_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(tmp_path / "numba"))}
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "demo", "--headless", "--duration", "45",
                             "--api-port", "18787"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=60)
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    summary = json.loads(out.strip().splitlines()[-1])
    report = f"{out}\n{err}"
    exporters = summary["exporters"]
    assert exporters["probe"]["flows"] > 100, report
    assert exporters["router"]["flows"] > 100, report
    alerts = summary["alerts"]
    assert alerts["raised"] >= 1 and alerts["scripts_raised"] >= 1, report
    assert any(a["key"] == ["203.0.113.66"] and a["mo"] == "attackers" for a in alerts["list"]), report
    tables = summary["postgres"]["tables"]
    for table in ("ingress_total", "ingress_saddr", "egress_daddr", "top_talkers", "router_talkers"):
        assert tables.get(table, 0) > 0, (table, report)
    assert tables.get("attackers_victims", 0) > 0, report  # the extended window the alert switched on
    assert summary["leftovers"] == {"namespaces": [], "links": [], "processes": [], "errors": []}, report
    # and checked from outside, not only by the demo itself
    tag = _ours(proc.pid)
    assert not [n for n in list_namespaces() if n.startswith(tag)]
    assert not [n for n in list_links() if n.startswith(tag)]
    assert not _processes_of(proc.pid)
    assert not list(Path(tempfile.gettempdir()).glob(f"mirrorflow-demo-{proc.pid:x}-*"))
