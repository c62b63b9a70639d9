"""Probe statistics: exact counters next to 1 s / 1 min / 5 min rates, as a dict and as text.

The running probe writes `snapshot()` as JSON to ``<state_dir>/stats.json`` every scan;
``mirrorflow probe --stats`` reads that file (the live API will serve the same dict).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance.probe.records import Counter
from appliance.rates import RateMeter

__all__ = ["RateMeter", "counters_dict", "read_snapshot", "render", "write_snapshot"]

def counters_dict(per_cpu: np.ndarray) -> dict[str, Any]:
    """Kernel counters: totals and per CPU, by name."""
    totals = per_cpu.sum(axis=0)
    return {
        "total": {c.name.lower(): int(totals[c]) for c in Counter},
        "per_cpu": [{c.name.lower(): int(row[c]) for c in Counter} for row in per_cpu],
    }


def write_snapshot(path: Path, snapshot: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_snapshot(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _n(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def link_lines(links: list[dict[str, Any]]) -> list[str]:
    """One line per interface that is not simply attached (or was re-attached)."""
    out = []
    for ln in links:
        if ln["state"] == "detached":
            out.append(f"  {ln['name']} DETACHED since {_when(ln['detached_at'])} "
                       f"({ln['reason']}; was ifindex {ln['ifindex']}): waiting for it to come back")
        elif ln["state"] == "down":
            out.append(f"  {ln['name']} attached but DOWN since {_when(ln['since'])} "
                       f"(ifindex {ln['ifindex']})")
        elif ln["reattaches"]:
            out.append(f"  {ln['name']} re-attached {ln['reattaches']} times, last at "
                       f"{_when(ln['attached_at'])} (ifindex {ln['ifindex']})")
    return out


def render(s: dict[str, Any]) -> str:
    """The text of ``mirrorflow probe --stats`` (like /proc/net/stat/ipt_netflow, but exact)."""
    k = s["kernel"]["total"]
    r = s.get("rates", {})
    lines = [
        f"Mirrorflow probe pid {s['pid']}, up {s['uptime_s']:.0f} s, NetFlow v{s['protocol']}"
        + " (IPFIX)" * (s["protocol"] == 10) + f", flushes on request {s.get('flushes', 0)}",
        f"Interfaces: {', '.join(s['interfaces'])} ({s.get('attach', 'tc')}); timeouts active "
        f"{s['active_timeout_s']} s, "
        f"inactive {s['inactive_timeout_s']} s; maxflows {s['maxflows']}",
        *link_lines(s.get("links") or []),
        f"Sampler: {s['sampler']}  selected {k['sampler_selected']}, "
        f"discarded {k['sampler_discarded']}",
        "",
        f"Frames {k['frames']} ({k['frame_bytes']} B), IP packets {k['ip_packets']} "
        f"({k['ip_bytes']} B), accounted {k['accounted_packets']} ({k['accounted_bytes']} B)",
        f"Refused (map full) {k['refused_packets']} pkts {k['refused_bytes']} B; "
        f"refused (table full) {s['table']['refused_packets']} pkts "
        f"{s['table']['refused_bytes']} B",
        f"Non-IP {k['non_ip']}, promisc-only {k['promisc_only']}, fragments {k['fragments']}, "
        f"truncated {k['truncated']}, VLAN {k['vlan']}, MPLS {k['mpls']}, "
        f"own export ignored {k['self_export']}",
        "",
        "Rates         pps        bps     flows/s",
    ]
    for w in ("1s", "1m", "5m"):
        rw = r.get(w, {})
        lines.append(
            f"  {w:<4} {_n(rw.get('accounted_packets', 0)):>10} "
            f"{_n(8 * rw.get('accounted_bytes', 0)):>10} {_n(rw.get('flows_exported', 0)):>10}"
        )
    t = s["table"]
    lines += [
        "",
        f"Flows: active {t['active']} (peak {t['peak_active']}), map fill last drain "
        f"{s['map_fill_pct']:.1f} % (peak {s['map_fill_peak_pct']:.1f} %), "
        f"created {t['flows_created']}, expired {t['flows_expired']}, "
        f"guard splits {t['guard_splits']}, emergency expired {t.get('emergency_expired', 0)} "
        f"(in {t.get('emergency_passes', 0)} passes)",
        "End reasons: " + ", ".join(f"{k_}={v}" for k_, v in t["by_reason"].items()),
        "",
        "Per CPU:      frames   accounted     refused   new flows",
    ]
    for i, c in enumerate(s["kernel"]["per_cpu"]):
        lines.append(
            f"  cpu{i:<3} {c['frames']:>11} {c['accounted_packets']:>11} "
            f"{c['refused_packets']:>11} {c['new_flows']:>11}"
        )
    e = s["export"]
    lines += ["", f"Export: flows {e['flows_exported']}, not exportable {e['flows_unexportable']}"]
    for d in e["destinations"]:
        causes = ", ".join(f"{a}={b}" for a, b in d["errors_by_cause"].items()) or "none"
        lines.append(
            f"  {d['destination']:<28} packets {d['packets']} bytes {d['bytes']} "
            f"flows {d['flows']} errors {d['errors']} ({causes}) flows lost {d['flows_lost']}"
            f"; refused by ICMP {d.get('refused', 0)}, held {d.get('held', 0)}, "
            f"resent {d.get('resent', 0)}"
        )
    return "\n".join(lines)
