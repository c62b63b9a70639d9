"""`LiveState`: what the live API shows, built on the collector's thread as immutable snapshots.

The decode thread counts (one numba pass per batch for the per-exporter totals, one per
object that matched), keeps the last exported table of every window and a tail of recent
flows, and about once a second publishes a `Snapshot`: plain dicts and tuples that nobody
modifies afterwards. The HTTP threads only ever read the latest snapshot, so a slow client
never holds the decode loop and a request never sees half an update.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from appliance import __version__
from appliance.collector.api.flowtail import FlowTail, TailChunk
from appliance.collector.api.loss import LossTracker
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring.windows import WindowTable
from appliance.rates import RateMeter

__all__ = ["LiveState", "Snapshot", "API_VERSION", "DECODE_ERROR_KINDS"]

log = logging.getLogger("mirrorflow.api")

API_VERSION = 1
#: decoder counters that are decode errors, by the name the API uses (the counter minus ``err_``)
DECODE_ERROR_KINDS = ("short_packet", "bad_version", "bad_length", "bad_set_length", "bad_set_id",
                      "bad_template", "truncated_record", "count_mismatch", "template_table_full",
                      "stream_table_full")
_PROBE_STALE_S = 10.0
#: interfaces of the probe's statistics looked at (the probe has one entry per -i)
_PROBE_LINKS_MAX = 64


@njit(cache=True, nogil=True)
def _count_by_exporter(idx: np.ndarray, nbytes: np.ndarray, npkts: np.ndarray, rate: np.ndarray,
                       acc: np.ndarray) -> None:
    for i in range(idx.shape[0]):
        e = idx[i]
        acc[e, 0] += 1
        acc[e, 1] += nbytes[i]
        acc[e, 2] += npkts[i]
        if rate[i] > acc[e, 3]:
            acc[e, 3] = rate[i]


@njit(cache=True, nogil=True)
def _sum_rows(nbytes: np.ndarray, npkts: np.ndarray, rows: np.ndarray) -> tuple[int, int]:
    b = np.uint64(0)
    p = np.uint64(0)
    for r in rows:
        b += nbytes[r]
        p += npkts[r]
    return b, p


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One published state: JSON-ready payloads per endpoint plus the flow tails."""

    seq: int
    time: float  # wall clock, seconds since the epoch
    status: dict[str, Any] = field(default_factory=dict)
    exporters: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    mavg: list[dict[str, Any]] = field(default_factory=list)
    alerts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"active": [], "past": []})
    probe: dict[str, Any] = field(default_factory=dict)
    flows: dict[str, tuple[TailChunk, ...]] = field(default_factory=dict)
    all_flows: tuple[TailChunk, ...] = ()
    flows_kept: int = 0  # records per tail (a filter looks at the newest this many)
    iplists: Any = None  # the IP lists filters may name (`filter.IPLists`), None: none

    @property
    def meta(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time}


def _probe_links(stats: Any) -> list[dict[str, Any]]:
    """The probe's interfaces (``links`` of its stats.json, appliance/probe/links.py)."""
    links = stats.get("links") if isinstance(stats, dict) else None
    if not isinstance(links, list):
        return []
    return [ln for ln in links[:_PROBE_LINKS_MAX] if isinstance(ln, dict) and isinstance(ln.get("name"), str)]


def _link_problems(links: list[dict[str, Any]]) -> list[str]:
    out = []
    for ln in links:
        at = ln.get("detached_at") if ln.get("state") == "detached" else ln.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if isinstance(at, (int, float)) else "?"
        if ln.get("state") == "detached":
            out.append(f"probe interface {ln['name']} detached since {when} ({ln.get('reason')}, was ifindex "
                       f"{ln.get('ifindex')}): its traffic is not seen until it comes back")
        elif ln.get("state") == "down":
            out.append(f"probe interface {ln['name']} down since {when}: no packets until it is up")
    return out


def _rate(rates: dict[str, dict[str, float]], window: str, name: str, scale: float = 1.0) -> float:
    return round(rates.get(window, {}).get(name, 0.0) * scale, 3)


def _traffic_rates(rates: dict[str, dict[str, float]], extra: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    out = {}
    for w in ("1s", "1m", "5m"):
        r = {"bps": _rate(rates, w, "bytes", 8), "pps": _rate(rates, w, "packets"),
             "flows": _rate(rates, w, "flows")}
        for name in extra:
            r[name] = _rate(rates, w, name)
        out[w] = r
    return out


def window_table(table: WindowTable, limit: int | None, exported_at: float) -> dict[str, Any]:
    """A closed window as the API shows it: top rows, then the remainder ('other') row apart."""
    rows = [list(r) for r in table.rows]
    other = None
    if limit is None:  # definition gone (reloaded): the remainder is the row with NULL keys
        if rows and None in rows[-1]:
            other = rows.pop()
    elif limit and len(rows) == limit + 1:
        other = rows.pop()
    return {
        "table": table.table,
        "start": table.time - table.period,
        "end": table.time,
        "period": table.period,
        "columns": [{"name": c.name, "type": c.sqltype} for c in table.columns],
        "rows": rows,
        "other": other,
        "flows": table.flows,
        "exported_at": exported_at,
    }


class LiveState:
    """Counts for the live API and publishes snapshots; runs entirely on the collector's thread.

    Args:
        collector: the running `Collector` (its statistics, decoder and config are read; the
            pipeline feeds `on_batch`, `on_rows`, `on_window` and `tick`).
        monitoring: `pipeline.Monitoring` when monitoring objects run, else None.
        flows_per_object: records kept in each flow tail (0: no tails).
        probe_stats: the probe's ``stats.json`` (None: no probe section).
        probe_addresses: exporter addresses that are the probe (their role is "probe").
        interval_s: publish period.
        past_alerts: ended alerts kept for ``/api/v1/alerts``.
        flows_interval_s: least time between two captures into a flow tail (see `FlowTail`).
        clock: monotonic seconds; wall: seconds since the epoch (both injectable).
    """

    def __init__(
        self,
        collector: Any,
        monitoring: Any = None,
        *,
        flows_per_object: int = 1000,
        probe_stats: Path | None = None,
        probe_addresses: tuple[str, ...] = ("127.0.0.1", "::1"),
        interval_s: float = 1.0,
        past_alerts: int = 200,
        flows_interval_s: float = 0.1,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.collector = collector
        self.monitoring = monitoring
        self.clock = clock or collector.clock
        self.wall = wall
        self.interval_s = interval_s
        self.probe_stats = probe_stats
        self.probe_addresses = frozenset(probe_addresses)
        self.flows_per_object = flows_per_object
        self.flows_interval_s = flows_interval_s
        self.started_at = wall()
        self.started_mono = self.clock()
        #: called at every publish for the moving averages' state (`alerts.MovingAverages.state`)
        self.mavg_source: Callable[[], list[dict[str, Any]]] | None = None
        averages = getattr(monitoring, "averages", None)
        if averages is not None and hasattr(averages, "state"):
            self.mavg_source = averages.state
        self.past_alerts_max = past_alerts
        self._active: dict[tuple, dict[str, Any]] = {}
        self._past: deque[dict[str, Any]] = deque(maxlen=past_alerts)
        # per exporter index: flows, bytes, packets, highest sampling rate applied
        self._by_exp = np.zeros((64, 4), dtype=np.uint64)
        self.flows = 0
        self._objects: dict[str, list[int]] = {}  # name → [flows, bytes, packets]
        self._tails: dict[str, FlowTail] = {}
        self._all_tail = FlowTail(flows_per_object, self.clock, flows_interval_s)
        self._windows: dict[tuple[str, str], dict[str, Any]] = {}
        self._meter = RateMeter()
        self._exp_meters: dict[str, RateMeter] = {}
        self._obj_meters: dict[str, RateMeter] = {}
        self._health_meter = RateMeter()
        #: lost windows and sequence gaps: health "degraded" for LOSS_PERIOD_S after each
        self.loss = LossTracker()
        self._seq = 0
        self._last_publish = -1e18
        self.snapshot = Snapshot(0, self.started_at)

    # ---- counting (decode thread) ------------------------------------------------------------

    def on_batch(self, batch: FlowBatch) -> None:
        if batch.n == 0:
            return
        idx = batch["exporter_index"]
        top = int(idx.max())
        if top >= self._by_exp.shape[0]:
            grown = np.zeros((max(top + 1, 2 * self._by_exp.shape[0]), 4), dtype=np.uint64)
            grown[: self._by_exp.shape[0]] = self._by_exp
            self._by_exp = grown
        _count_by_exporter(idx, batch["bytes"], batch["packets"], batch["sampling_rate"], self._by_exp)
        self.flows += batch.n
        self._all_tail.offer(batch, None, self.collector.decoder)

    def on_rows(self, mo: str, batch: FlowBatch, rows: np.ndarray) -> None:
        b, p = _sum_rows(batch["bytes"], batch["packets"], rows.astype(np.int64, copy=False))
        acc = self._objects.get(mo)
        if acc is None:
            acc = self._objects[mo] = [0, 0, 0]
        acc[0] += len(rows)
        acc[1] += int(b)
        acc[2] += int(p)
        tail = self._tails.get(mo)
        if tail is None:
            tail = self._tails[mo] = FlowTail(self.flows_per_object, self.clock, self.flows_interval_s)
        tail.offer(batch, rows, self.collector.decoder)

    def on_window(self, table: WindowTable) -> None:
        limit: int | None
        try:
            limit = self.monitoring.monitor.window(table.mo, table.window).spec.limit
        except KeyError:
            limit = None
        self._windows[(table.mo, table.window)] = window_table(table, limit, self.wall())

    def tick(self) -> None:
        if self.clock() - self._last_publish >= self.interval_s:
            self.publish()

    # ---- publishing (decode thread) ----------------------------------------------------------

    def publish(self) -> Snapshot:
        """Build and publish a new snapshot now (also at the end of a replay)."""
        now = self.clock()
        self._last_publish = now
        self._seq += 1
        stats = self.collector.stats()
        exporters = self._exporters(stats, now)
        probe = self._probe()
        objects = self._objects_list(now)
        mavg = self._call(self.mavg_source, [])
        alerts = self._alerts(mavg)
        status = self._status(stats, exporters, objects, probe, now)
        snap = Snapshot(
            seq=self._seq, time=self.wall(), status=status, exporters=exporters, objects=objects,
            windows=self._windows_list(), mavg=mavg, alerts=alerts, probe=probe,
            flows={name: t.chunks() for name, t in self._tails.items()}, all_flows=self._all_tail.chunks(),
            flows_kept=self.flows_per_object, iplists=getattr(self.monitoring, "iplists", None),
        )
        self.snapshot = snap  # one reference assignment: readers see the old or the new one
        return snap

    @staticmethod
    def _call(source: Callable[[], Any] | None, empty: Any) -> Any:
        if source is None:
            return empty
        try:
            return source()
        except Exception:  # the API must never stop the collector
            log.exception("live API: state source failed")
            return empty

    def _alerts(self, mavg: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Active alerts from the moving averages' state; those gone since the last publish
        become past alerts, ended when last seen active (in the alerts' own time: the packets'
        on replay), so to within the publish period."""
        active: dict[tuple, dict[str, Any]] = {}
        for m in mavg:
            for a in m.get("alerts", []):
                doc = {"mo": m["mo"], "mavg": m["mavg"], **a}
                ident = (m["mo"], m["mavg"], a["level"], a["direction"], tuple(a["key"]), a["since"])
                active[ident] = doc
        for ident, doc in self._active.items():
            if ident not in active:
                self._past.append({**doc, "ended_at": doc["since"] + doc["over_s"]})
        self._active = active
        # script results keep arriving after the end (back2norm runs then, the action may
        # still run): the moving averages report them for the alerts that ended recently
        ended = {(m["mo"], m["mavg"], e["level"], e["direction"], tuple(e["key"]), e["since"]): e["scripts"]
                 for m in mavg for e in m.get("ended", [])}
        if ended:
            for doc in self._past:
                scripts = ended.get((doc["mo"], doc["mavg"], doc["level"], doc["direction"], tuple(doc["key"]),
                                     doc["since"]))
                if scripts is not None:
                    doc["scripts"] = scripts
        return {"active": list(active.values()), "past": list(self._past)[::-1]}

    def _exporters(self, stats: dict[str, Any], now: float) -> list[dict[str, Any]]:
        sampling: dict[str, list[dict[str, Any]]] = {}
        for s in stats["sampling_rates"]:
            sampling.setdefault(s["exporter"], []).append(
                {"source_id": s["source_id"], "sampler_id": s["sampler_id"], "rate": s["rate"]})
        out = []
        cache = self.collector.decoder.template_cache()
        for i, e in enumerate(stats["exporters"]):
            c = {k: v for k, v in e.items() if k != "address"}
            addr = e["address"]
            flows, nbytes, npkts, applied = (int(x) for x in self._by_exp[i]) if i < len(self._by_exp) \
                else (0, 0, 0, 0)
            meter = self._exp_meters.setdefault(addr, RateMeter())
            errors = {k: c.get(f"err_{k}", 0) for k in DECODE_ERROR_KINDS}
            meter.add(now, {"datagrams": c["packets"], "records": c["records"], "flows": flows,
                            "bytes": nbytes, "packets": npkts, "errors": sum(errors.values())})
            rates = meter.rates()
            out.append({
                "address": addr,
                "role": "probe" if addr in self.probe_addresses else "router",
                "datagrams": c["packets"],
                "datagram_bytes": c["bytes"],
                "versions": {"v5": c["v5_packets"], "v9": c["v9_packets"], "ipfix": c["ipfix_packets"]},
                "records": c["records"],
                "options_records": c["options_records"],
                "flows": flows,
                "bytes": nbytes,
                "packets": npkts,
                "templates": c["templates"],
                "options_templates": c["options_templates"],
                "template_cache": cache.get(addr, {"active": 0, "refused_quota": 0, "aged": 0, "evicted": 0,
                                                   "table_full": 0}),
                "sequence": {"lost_packets": c["lost_packets"], "lost_flows": c["lost_flows"],
                             "resets": c["seq_resets"]},
                "pending": {"sets": c["no_template_sets"], "decoded": c["pending_decoded_sets"],
                            "expired": c["pending_expired_sets"]},
                "decode_errors": errors,
                "decode_errors_total": sum(errors.values()),
                "sampling": sampling.get(addr, []),
                "sampling_rate": max(applied, 1),
                "rates": _traffic_rates(rates, ("datagrams", "records", "errors")),
                "counters": c,
            })
        return out

    def _objects_list(self, now: float) -> list[dict[str, Any]]:
        if self.monitoring is None:
            return []
        monitor = self.monitoring.monitor
        out = []
        for mo in monitor.objects:
            flows, nbytes, npkts = self._objects.get(mo.name, (0, 0, 0))
            meter = self._obj_meters.setdefault(mo.name, RateMeter())
            meter.add(now, {"flows": flows, "bytes": nbytes, "packets": npkts})
            out.append({
                "name": mo.name,
                "parent": mo.parent,
                "filter": mo.filter_text,
                "windows": [w.name for w in mo.windows],
                "mavg": [a.name for a in mo.averages],
                "flows": flows,
                "bytes": nbytes,
                "packets": npkts,
                "rates": _traffic_rates(meter.rates()),
            })
        return out

    def _windows_list(self) -> list[dict[str, Any]]:
        if self.monitoring is None:
            return []
        monitor = self.monitoring.monitor
        out = []
        for mo in monitor.objects:
            for spec in mo.windows:
                try:
                    active = monitor.window(mo.name, spec.name).active
                except KeyError:
                    active = False
                out.append({
                    "object": mo.name,
                    "window": spec.name,
                    "table": mo.table(spec.name),
                    "time": spec.time,
                    "limit": spec.limit,
                    "extended": spec.extended,
                    "active": active,
                    "fields": [f.text for f in spec.fields],
                    "export": list(spec.export),
                    "last": self._windows.get((mo.name, spec.name)),
                })
        return out

    def _probe(self) -> dict[str, Any]:
        import json

        path = self.probe_stats
        out: dict[str, Any] = {"stats_file": str(path) if path else None, "available": False,
                               "age_s": None, "stale": None, "error": None, "stats": None,
                               "detached": []}
        if path is None:
            out["error"] = "no probe statistics configured (probe-stats / --probe-stats)"
            return out
        try:
            st = os.stat(path)
            out["stats"] = json.loads(Path(path).read_text())
        except FileNotFoundError:
            out["error"] = f"{path}: not found (is the probe running?)"
            return out
        except (OSError, ValueError) as exc:
            out["error"] = f"{path}: {exc}"
            return out
        age = max(0.0, self.wall() - st.st_mtime)
        out.update(available=True, age_s=round(age, 3), stale=age > _PROBE_STALE_S)
        out["detached"] = [ln["name"] for ln in _probe_links(out["stats"]) if ln.get("state") == "detached"]
        return out

    def _status(self, stats: dict[str, Any], exporters: list[dict[str, Any]], objects: list[dict[str, Any]],
                probe: dict[str, Any], now: float) -> dict[str, Any]:
        datagrams = sum(e["datagrams"] for e in exporters)
        drops = stats.get("socket_drops")
        self._meter.add(now, {"records": self.flows, "bytes": self.bytes_total, "packets": self.packets_total,
                              "datagrams": datagrams, "flows": self.flows})
        errors = sum(e["decode_errors_total"] for e in exporters)
        gaps = sum(e["sequence"]["lost_packets"] + e["sequence"]["lost_flows"] for e in exporters)
        self._health_meter.add(now, {"drops": drops or 0, "errors": errors, "gaps": gaps})
        recent = self._health_meter.rates().get("1m", {})
        mon = stats.get("monitoring")
        problems = []
        if recent.get("drops", 0) > 0:
            problems.append("socket drops in the last minute: raise rcvbufsize_m or add a collector")
        if recent.get("errors", 0) > 0:
            problems.append("decode errors in the last minute: see /api/v1/exporters")
        if recent.get("gaps", 0) > 0:
            problems.append("sequence gaps in the last minute: flows lost between exporter and collector")
        if isinstance(mon, dict):
            if mon.get("export_errors"):
                problems.append(f"{mon['export_errors']} window export errors: see the collector's log")
            if mon.get("db_up") == 0 and mon.get("db_errors"):  # a real attempt failed (not: none made yet)
                problems.append("database unreachable: windows wait in the spool")
        arc = stats.get("archive")
        if isinstance(arc, dict) and arc.get("failing"):
            problems.append(f"flow archive not writing ({arc.get('flows_lost', 0)} flows not archived): "
                            f"{arc.get('last_error', '')}")
        if probe.get("stale"):
            problems.append(f"probe statistics are {probe['age_s']:.0f} s old: is the probe running?")
        problems += _link_problems(_probe_links(probe.get("stats")))
        refused = int(mon.get("refused_windows", 0)) if isinstance(mon, dict) else 0
        self.loss.update(time.time(), {"spool_refused_windows": refused, "sequence_gaps": gaps})
        problems = self.loss.problems() + problems
        rates = self._meter.rates()
        generation = getattr(self.monitoring, "generation", 1) if self.monitoring is not None else 0
        return {
            "version": __version__,
            "pid": os.getpid(),
            "mode": "live" if self.collector.receiver is not None else "replay",
            "started_at": self.started_at,
            "uptime_s": round(now - self.started_mono, 3),
            "health": "degraded" if probe.get("detached") or self.loss.degraded else "warning" if problems else "ok",
            "problems": problems,
            "loss": self.loss.report(),
            "listen": stats.get("listen", []),
            "rcvbuf_granted": stats.get("rcvbuf_granted"),
            "totals": {"records": self.flows, "bytes": self.bytes_total, "packets": self.packets_total,
                       "datagrams": datagrams, "batches": stats["batches"]},
            "rates": {w: {"records": _rate(rates, w, "records"), "bps": _rate(rates, w, "bytes", 8),
                          "pps": _rate(rates, w, "packets"), "datagrams": _rate(rates, w, "datagrams")}
                      for w in ("1s", "1m", "5m")},
            "socket_drops": drops,
            "truncated_datagrams": stats.get("truncated_datagrams"),
            "pending_sets": stats["pending_sets"],
            "refused_exporter_packets": stats["refused_exporter_packets"],
            "not_allowed": self.collector.decoder.not_allowed,
            "exporters": len(exporters),
            "objects": len(objects),
            "config": {
                "generation": generation,
                "loaded_at": getattr(self.monitoring, "loaded_at", None),
                "mo_dir": str(self.collector.config.mo_dir) if self.collector.config.mo_dir else None,
            },
            "monitoring": mon if isinstance(mon, dict) else None,
            "archive": arc if isinstance(arc, dict) else None,
            "probe": {"available": probe["available"], "stale": probe["stale"], "age_s": probe["age_s"],
                      "detached": probe.get("detached", [])},
        }

    @property
    def bytes_total(self) -> int:
        return int(self._by_exp[:, 1].sum())

    @property
    def packets_total(self) -> int:
        return int(self._by_exp[:, 2].sum())
