"""Prometheus text exposition (format 0.0.4) of a live-API snapshot.

Labels are bounded by configuration, never by traffic: ``exporter`` (the routers and the
probe), ``object``, ``window``, ``mavg``, ``level``, the fixed decode-error ``kind`` and the archive
retention's ``reason`` (age, size, free_space). Per-IP numbers
(top talkers) are JSON-only (``/api/v1/windows``) — unless a window asks for it with
``"export": "prometheus"`` in its fwm entry: then its last closed table is here as
``mirrorflow_fwm_<aggregate>`` with its key fields as labels (``src_country="DE"``), one
sample per row, at most its ``limit`` rows (required) plus the remainder with every key label
``"other"``; so ``sum by (src_country) (mirrorflow_fwm_octets{window="by_country"})`` works.
"""

from __future__ import annotations

import re
from typing import Any

from appliance.collector.api.livestate import Snapshot

__all__ = ["render_metrics", "LABELS"]

LABELS = frozenset({"exporter", "object", "window", "mavg", "level", "kind", "reason"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float | int | bool | None) -> str:
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def metric(self, name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], Any]],
               user_labels: bool = False) -> None:
        name = f"mirrorflow_{name}"
        assert name not in self._seen, name
        self._seen.add(name)
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            assert user_labels or set(labels) <= LABELS, labels
            lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")


def render_metrics(snap: Snapshot) -> str:
    """The whole exposition for one snapshot (ends with a newline)."""
    o = _Out()
    st = snap.status
    one = [({}, None)]
    o.metric("up", "gauge", "1 while the collector publishes snapshots", [({}, 1)])
    o.metric("snapshot_seq", "counter", "snapshots published since start", [({}, snap.seq)])
    o.metric("snapshot_timestamp_seconds", "gauge", "when the snapshot was taken", [({}, snap.time)])
    o.metric("uptime_seconds", "gauge", "seconds since the collector started", [({}, st.get("uptime_s", 0.0))])
    o.metric("config_generation", "counter", "monitoring configuration generation (+1 per applied reload)",
             [({}, st.get("config", {}).get("generation", 0))])
    tot = st.get("totals", {})
    o.metric("records_total", "counter", "flow records decoded", [({}, tot.get("records", 0))])
    o.metric("bytes_total", "counter", "bytes of the decoded flows (scaled by sampling)", [({}, tot.get("bytes", 0))])
    o.metric("packets_total", "counter", "packets of the decoded flows (scaled by sampling)",
             [({}, tot.get("packets", 0))])
    o.metric("datagrams_total", "counter", "NetFlow/IPFIX datagrams received", [({}, tot.get("datagrams", 0))])
    drops = st.get("socket_drops")
    o.metric("socket_drops_total", "counter", "datagrams the kernel dropped on the listen sockets",
             [({}, drops)] if drops is not None else one)
    o.metric("pending_sets", "gauge", "data sets waiting for their template", [({}, st.get("pending_sets", 0))])
    o.metric("health_problems", "gauge", "problems listed in /api/v1/status", [({}, len(st.get("problems", [])))])
    o.metric("health_degraded", "gauge", "1 while health is degraded (recent loss, a probe interface gone)",
             [({}, int(st.get("health") == "degraded"))])
    loss = st.get("loss") or {}
    kinds = [k for k in loss if k != "period_s"]
    o.metric("loss_total", "counter", "data lost since start, by kind (windows refused by a full spool; "
             "packets/flows of sequence gaps)", [({"kind": k}, loss[k]["total"]) for k in kinds])
    o.metric("loss_recent", "gauge", "data lost within the loss period (status loss.period_s), by kind",
             [({"kind": k}, loss[k]["recent"]) for k in kinds])
    o.metric("loss_last_timestamp_seconds", "gauge", "when data of this kind was last lost",
             [({"kind": k}, loss[k]["last_at"]) for k in kinds if loss[k]["last_at"] is not None])

    ex = snap.exporters

    def per_exporter(name: str, kind: str, help_: str, get: Any) -> None:
        o.metric(name, kind, help_, [({"exporter": e["address"]}, get(e)) for e in ex])

    per_exporter("exporter_datagrams_total", "counter", "datagrams from the exporter", lambda e: e["datagrams"])
    per_exporter("exporter_records_total", "counter", "flow records from the exporter", lambda e: e["records"])
    per_exporter("exporter_bytes_total", "counter", "flow bytes (scaled by sampling)", lambda e: e["bytes"])
    per_exporter("exporter_packets_total", "counter", "flow packets (scaled by sampling)", lambda e: e["packets"])
    per_exporter("exporter_templates_total", "counter", "template definitions received", lambda e: e["templates"])
    per_exporter("exporter_lost_packets_total", "counter", "NetFlow v9 sequence gaps (datagrams)",
                 lambda e: e["sequence"]["lost_packets"])
    per_exporter("exporter_lost_flows_total", "counter", "v5/IPFIX sequence gaps (records)",
                 lambda e: e["sequence"]["lost_flows"])
    per_exporter("exporter_sequence_resets_total", "counter", "sequence numbers that went backwards",
                 lambda e: e["sequence"]["resets"])
    per_exporter("exporter_sampling_rate", "gauge", "highest sampling rate applied to its flows (1 = unsampled)",
                 lambda e: e["sampling_rate"])
    o.metric("exporter_decode_errors_total", "counter", "malformed input by kind",
             [({"exporter": e["address"], "kind": k}, v) for e in ex for k, v in e["decode_errors"].items()])

    obs = snap.objects
    for name, key, help_ in (("object_flows_total", "flows", "flow records the object matched"),
                             ("object_bytes_total", "bytes", "bytes the object matched (scaled by sampling)"),
                             ("object_packets_total", "packets", "packets the object matched (scaled by sampling)")):
        o.metric(name, "counter", help_, [({"object": m["name"]}, m[key]) for m in obs])

    wins = snap.windows
    o.metric("window_rows", "gauge", "rows of the last exported table (the 'other' row not counted)",
             [({"object": w["object"], "window": w["window"]}, len(w["last"]["rows"]) if w["last"] else 0)
              for w in wins])
    o.metric("window_end_timestamp_seconds", "gauge", "end of the last exported table",
             [({"object": w["object"], "window": w["window"]}, w["last"]["end"] if w["last"] else None)
              for w in wins if w["last"]])
    o.metric("window_active", "gauge", "1 if the window aggregates now (extended windows switch)",
             [({"object": w["object"], "window": w["window"]}, w["active"]) for w in wins])

    _user_windows(o, wins)

    mon = st.get("monitoring") or {}
    for key in ("windows_exported", "rows_exported", "export_errors", "db_loaded_windows", "db_errors",
                "db_failed_windows"):
        if key in mon:
            o.metric(f"monitoring_{key}_total", "counter", f"monitoring counter {key}", [({}, mon[key])])
    for key in ("db_up", "spool_files", "spool_bytes"):
        if key in mon and isinstance(mon[key], (int, float)):
            o.metric(f"monitoring_{key}", "gauge", f"monitoring gauge {key}", [({}, mon[key])])

    arc = st.get("archive") or {}
    for key, help_ in (("flows", "flows written to the archive"), ("files", "archive files completed"),
                       ("bytes", "bytes of completed archive files"),
                       ("flows_lost", "flows the archive could not store (disk full, permissions)"),
                       ("write_errors", "archive write errors"),
                       ("partial_set_aside", "incomplete files of a crashed writer set aside at start"),
                       ("partial_recovered", "complete files of a crashed writer renamed at start")):
        if key in arc:
            o.metric(f"archive_{key}_total", "counter", help_, [({}, arc[key])])
    if "failing" in arc:
        o.metric("archive_failing", "gauge", "1 while archive writes fail", [({}, arc["failing"])])
        o.metric("archive_bytes_kept", "gauge", "bytes of this appliance's archive files",
                 [({}, arc.get("bytes_kept"))])
        for key, help_ in (("removed_files", "archive files removed by retention, per reason"),
                           ("removed_bytes", "archive bytes removed by retention, per reason")):
            o.metric(f"archive_{key}_total", "counter", help_,
                     [({"reason": r}, n) for r, n in (arc.get(key) or {}).items()])

    mv = snap.mavg
    o.metric("mavg_keys", "gauge", "keys in the moving-average table",
             [({"object": m["mo"], "mavg": m["mavg"]}, m["keys"]) for m in mv])
    o.metric("mavg_refused_keys_total", "counter", "new keys refused: the table was at mem-m",
             [({"object": m["mo"], "mavg": m["mavg"]}, m["refused_keys"]) for m in mv])
    active: dict[tuple[str, str, str], int] = {}
    for a in snap.alerts.get("active", []):
        k = (a["mo"], a["mavg"], a["level"])
        active[k] = active.get(k, 0) + 1
    o.metric("alerts_active", "gauge", "keys with a raised level, per level",
             [({"object": a, "mavg": b, "level": c}, n) for (a, b, c), n in sorted(active.items())])
    o.metric("alerts_past", "gauge", "ended alerts kept for /api/v1/alerts", [({}, len(snap.alerts.get("past", [])))])

    pr = snap.probe
    o.metric("probe_up", "gauge", "1 if the probe's statistics are present and fresh",
             [({}, bool(pr.get("available")) and not pr.get("stale"))])
    o.metric("probe_interfaces_detached", "gauge", "probe interfaces that went away (health degraded)",
             [({}, len(pr.get("detached") or []))])
    s = pr.get("stats") or {}
    kernel = (s.get("kernel") or {}).get("total") or {}
    for key in ("frames", "accounted_packets", "accounted_bytes", "refused_packets", "new_flows"):
        if key in kernel:
            o.metric(f"probe_{key}_total", "counter", f"probe kernel counter {key}", [({}, kernel[key])])
    exp = s.get("export") or {}
    if "flows_exported" in exp:
        o.metric("probe_flows_exported_total", "counter", "flows the probe exported", [({}, exp["flows_exported"])])
    table = s.get("table") or {}
    if "active" in table:
        o.metric("probe_active_flows", "gauge", "flows in the probe's table", [({}, table["active"])])
    return "\n".join(o.lines) + "\n"


def _label(name: str) -> str:
    """A column name as a Prometheus label name (``[a-zA-Z_][a-zA-Z0-9_]*``, not ours)."""
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    if not out or out[0].isdigit() or out in LABELS or out.startswith("__"):
        out = f"key_{out}"
    return out


def _user_windows(o: _Out, wins: list[dict[str, Any]]) -> None:
    """The windows exported with ``"export": "prometheus"``: one metric per aggregate column."""
    from appliance.collector.fields import parse_field

    samples: dict[str, list[tuple[dict[str, str], Any]]] = {}
    for w in wins:
        last = w.get("last")
        if "prometheus" not in w.get("export", ()) or not last:
            continue
        try:
            aggregate = [parse_field(f).aggregate for f in w["fields"]]
        except ValueError:
            continue
        names = [c["name"] for c in last["columns"]]
        if len(names) != len(aggregate):  # a table of an older definition (reloaded)
            continue
        keys = [(i, _label(n)) for i, n in enumerate(names) if not aggregate[i]]
        rows = [(r, False) for r in last["rows"]] + ([(last["other"], True)] if last.get("other") else [])
        for row, other in rows:
            labels = {"object": w["object"], "window": w["window"]}
            labels.update((lab, "other" if other else ("" if row[i] is None else str(row[i]))) for i, lab in keys)
            for i, n in enumerate(names):
                if aggregate[i]:
                    samples.setdefault(re.sub(r"[^a-zA-Z0-9_]", "_", n), []).append((labels, row[i] or 0))
    for col, s in samples.items():
        o.metric(f"fwm_{col}", "gauge", f"{col} of each row of the last closed table of the windows exported "
                 "to Prometheus (fwm \"export\": \"prometheus\"); labels: object, window and the key fields",
                 s, user_labels=True)
