"""`MovingAverages`: every ``mavg`` of every object, its levels' state machine and actions.

Per (key, level) the state machine is xenoeye's, with the value hysteresis in time:

    normal ──rate crosses the threshold──► raised: notification file written, ``ext``
      ▲                                    windows on, action script run
      │                                      │ rate back on the normal side
      │                                      ▼
      └──normal for back2norm-time──── counting down (crossing again: back to raised,
         file removed, ext windows off      no new script)
         once no other key holds them,
         back2norm script run

Crossings of overlimit levels are found by the numba kernel on every flow; underlimit
levels are checked every second (after one time constant from the start). Everything else
runs in `tick`, on the collector's thread after each batch: the clock is the packets'
time on replay and the wall clock live. Scripts and files are `actions`' business.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.collector.config.averages import LevelSpec, MavgSpec, format_key
from appliance.collector.fields.spec import KeyKind
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring.actions import (
    SCRIPT_PATH,
    ScriptRunner,
    new_report,
    notification_text,
    write_notification,
)
from appliance.collector.monitoring.mavg import MovingAverage, Raised

__all__ = ["Alert", "MovingAverages", "ReplaySlicer"]

log = logging.getLogger("mirrorflow.mavg")

_NS = 1_000_000_000
_REFRESH_NS = 3 * _NS  # notification files: rewritten with the current value
_UNDER_EVERY_NS = _NS
_REFUSED_LOG_NS = 60 * _NS
_ENDED_KEPT = 200  # ended alerts whose script results the live API still shows


@dataclass(slots=True)
class Alert:
    """One raised level for one key."""

    avg: MovingAverage
    level: LevelSpec
    index: int  # the level's index in the mavg's levels
    label: str  # the level's name in files and arguments
    key: tuple[int, ...]
    key_text: list[str]
    counter: int  # the counter that crossed first
    since_ns: int
    file: Path | None
    value: int = 0
    limit: int = 0
    normal_since: int | None = None  # counting down to back-to-normal since then
    written_ns: int = 0
    action: Any = None  # the action script's future
    ext: tuple[tuple[str, str], ...] = ()
    rates: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    #: "action" / "back2norm": the script's `actions.new_report`, updated while it runs
    scripts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ident(self) -> tuple:
        return (self.avg.mo, self.avg.spec.name, self.index, self.level.under, self.key)


def _labels(spec: MavgSpec) -> list[str]:
    """Level names for files/arguments; an underlimit sharing an overlimit's name gets ``under-``."""
    over = {lv.name for lv in spec.levels if not lv.under}
    return [f"under-{lv.name}" if lv.under and lv.name in over else lv.name for lv in spec.levels]


def _scripts(a: Alert) -> dict[str, dict[str, Any] | None]:
    """Copies: the reports change under the script's worker thread."""
    return {role: (dict(a.scripts[role]) if role in a.scripts else None) for role in ("action", "back2norm")}


class MovingAverages:
    """All moving averages of a configuration.

    Args:
        objects: monitoring objects (their ``averages``).
        set_extended: switches an extended window ``(mo, window, on)`` (`Monitor.set_extended`).
        notifications_dir: where notification files go (None: no files).
        runner: runs the scripts (default: a `ScriptRunner` with a 30 s timeout).
        clock: wall clock in ns for live use; None = the flows' time (replay).
    """

    def __init__(
        self,
        objects: list[Any],
        set_extended: Callable[[str, str, bool], None] | None = None,
        notifications_dir: Path | str | None = None,
        runner: ScriptRunner | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.set_extended = set_extended
        self.notifications_dir = Path(notifications_dir) if notifications_dir is not None else None
        self.runner = runner if runner is not None else ScriptRunner()
        self.clock = clock
        self.now = 0
        self.start: int | None = None
        self.alerts: dict[tuple, Alert] = {}
        #: alerts that ended, newest last: their back2norm script runs (and reports) afterwards
        self.ended: deque[Alert] = deque(maxlen=_ENDED_KEPT)
        self.counters = {"raised": 0, "back_to_normal": 0, "notification_errors": 0, "dumps_written": 0}
        self._raised: list[tuple[MovingAverage, list[Raised], int]] = []
        self._ext_on: dict[tuple[str, str], set[tuple]] = {}
        self._avgs: dict[tuple[str, str], MovingAverage] = {}
        self._by_mo: dict[str, list[MovingAverage]] = {}
        self._extended: set[tuple[str, str]] = set()
        self._last_under = 0
        self._last_dump: dict[tuple[str, str], int] = {}
        self._notif_error_logged = False
        self._refused_logged: dict[tuple[str, str], tuple[int, int | None]] = {}  # refused count, when
        self.replace(objects)

    # ---- configuration ---------------------------------------------------------------------

    def replace(self, objects: list[Any]) -> None:
        """Apply a new configuration: averages whose name, time, fields and mem-m did not change
        keep their rates and raised levels (thresholds, limits, scripts and ext are the new ones)."""
        self._process_raised()
        old = self._avgs
        self._avgs, self._by_mo = {}, {}
        self._extended = {(o.name, w.name) for o in objects for w in o.windows if w.extended}
        for o in objects:
            for spec in getattr(o, "averages", ()):
                avg = old.pop((o.name, spec.name), None)
                if avg is not None and avg.spec.core == spec.core:
                    avg.set_levels(spec)
                else:
                    avg = MovingAverage(spec, o.name)
                    self._refused_logged.pop((o.name, spec.name), None)
                self._avgs[(o.name, spec.name)] = avg
                self._by_mo.setdefault(o.name, []).append(avg)
        for _ident, a in list(self.alerts.items()):
            avg = self._avgs.get((a.avg.mo, a.avg.spec.name))
            names = [(lv.name, lv.under) for lv in avg.spec.levels] if avg is a.avg else []
            if (a.level.name, a.level.under) not in names:
                # the level (or its whole table) is gone: end the alert as a return to normal,
                # so whatever its action script did (a ban, a route) is undone by its
                # back2norm script rather than left in place forever
                self._end(a, run_script=True)
                continue
            a.index = names.index((a.level.name, a.level.under))
            a.level = avg.spec.levels[a.index]
            self._switch_ext(a, a.level.ext)
        for w in self._ext_on:  # a window whose definition changed restarts switched off
            self._set_ext(w, True)

    @property
    def averages(self) -> list[MovingAverage]:
        return list(self._avgs.values())

    def average(self, mo: str, name: str) -> MovingAverage:
        return self._avgs[(mo, name)]

    # ---- feeding (the Monitor's row sink, under its lock) --------------------------------

    def add(self, mo: str, batch: FlowBatch, rows: np.ndarray) -> None:
        avgs = self._by_mo.get(mo)
        if not avgs:
            return
        t = int(batch["recv_time_ns"][rows[-1]])
        for avg in avgs:
            raised = avg.add(batch, rows)
            if raised:
                self._raised.append((avg, raised, t))

    # ---- the periodic part -----------------------------------------------------------------

    def tick(self, now_ns: int | None = None) -> None:
        """Handle crossings, count down to normal, refresh files, check underlimits, dump."""
        if now_ns is None:
            now_ns = self.clock() if self.clock is not None else self.now
        self.now = max(self.now, int(now_ns))
        if self.start is None and self.now:
            self.start = self.now
        self._process_raised()
        for avg in self._avgs.values():  # a table new after a reload starts its own clock
            if avg.start_ns is None and self.now:
                avg.start_ns = self.now
        if self.now - self._last_under >= _UNDER_EVERY_NS:
            self._last_under = self.now
            for avg in self._avgs.values():
                if avg.start_ns is not None and self.now - avg.start_ns >= avg.time_ns:
                    for r in avg.scan_under(self.now):
                        self._raise(avg, r, self.now)
        for a in list(self.alerts.values()):
            self._evaluate(a)
        self._dumps()
        self._log_refused()

    def _log_refused(self) -> None:
        """New keys refused for mem-m: logged when it starts, then at most once a minute."""
        for ident, avg in self._avgs.items():
            logged, at = self._refused_logged.get(ident, (0, None))
            n = avg.refused
            if n <= logged or (at is not None and self.now - at < _REFUSED_LOG_NS):
                continue
            self._refused_logged[ident] = (n, self.now)
            log.warning("%s %s: the key table is full (mem-m %g MiB, %d keys): %d new keys refused%s; "
                        "raise mem-m or narrow the key fields", avg.mo, avg.spec.name, avg.spec.mem_m, avg.count,
                        n - logged, f" in the last {(self.now - at) / _NS:.0f} s" if at is not None else "")

    def _process_raised(self) -> None:
        pending, self._raised = self._raised, []
        for avg, raised, t in pending:
            for r in raised:
                self._raise(avg, r, max(t, self.now))

    def _raise(self, avg: MovingAverage, r: Raised, t: int) -> None:
        spec = avg.spec
        lv = spec.levels[r.level]
        label = _labels(spec)[r.level]
        ident = (avg.mo, spec.name, r.level, lv.under, r.key)
        if ident in self.alerts:
            return
        key_text = format_key(spec.keys, r.key)
        file = None
        if self.notifications_dir is not None:
            file = self.notifications_dir / "-".join([avg.mo, spec.name, label, *key_text]).replace("/", "_")
        a = Alert(avg, lv, r.level, label, r.key, key_text, r.counter, t, file)
        self.alerts[ident] = a
        self.counters["raised"] += 1
        self._measure(a)
        # the value that crossed, even when the rate already moved on
        log.warning("%s %s %s: %s %s %s/s (threshold %s/s)", avg.mo, spec.name, label, " ".join(key_text),
                    "under" if lv.under else "over", a.value, a.limit)
        self._write(a)
        self._switch_ext(a, lv.ext)
        if lv.action_script is not None:
            a.action = self._script(a, lv.action_script, "raised", "action")

    def _measure(self, a: Alert) -> bool:
        """Update the alert's rates; True when the key is (still) on the raised side."""
        rates = a.avg.rate(a.key, self.now)
        thr = a.avg.thresholds(a.key, a.index)
        a.rates, a.thresholds = [float(x) for x in rates], [float(x) for x in thr]
        a.value = int(round(rates[a.counter]))
        a.limit = int(round(thr[a.counter])) if not math.isnan(thr[a.counter]) else 0
        with np.errstate(invalid="ignore"):
            if a.level.under:
                return bool(np.any(rates < thr))
            return bool(np.any(rates >= thr))

    def _evaluate(self, a: Alert) -> None:
        if self._measure(a):
            a.normal_since = None
        elif a.normal_since is None:
            a.normal_since = self.now
        elif self.now - a.normal_since >= a.level.back2norm_s * _NS:
            self._end(a, run_script=True)
            return
        if a.file is not None and self.now - a.written_ns >= _REFRESH_NS:
            self._write(a)

    def _end(self, a: Alert, run_script: bool) -> None:
        self.alerts.pop(a.ident, None)
        a.avg.lower(a.key, a.index)
        if a.file is not None:
            try:
                a.file.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._notif_error(exc)
        self._switch_ext(a, ())
        self.ended.append(a)
        if run_script:
            self.counters["back_to_normal"] += 1
            log.warning("%s %s %s: %s back to normal after %.0f s (%s/s, threshold %s/s)", a.avg.mo,
                        a.avg.spec.name, a.label, " ".join(a.key_text), (self.now - a.since_ns) / _NS,
                        a.value, a.limit)
            if a.level.back2norm_script is not None:
                self._script(a, a.level.back2norm_script, "back2norm", "back2norm", after=a.action)

    def _switch_ext(self, a: Alert, ext: tuple[tuple[str, str], ...]) -> None:
        """The windows this alert holds on become ``ext``; a window goes off with its last holder."""
        for w in a.ext:
            holders = self._ext_on.get(w)
            if holders is not None and w not in ext:
                holders.discard(a.ident)
                if not holders:
                    del self._ext_on[w]
                    self._set_ext(w, False)
        for w in ext:
            if w not in self._extended:
                continue
            holders = self._ext_on.setdefault(w, set())
            if not holders:
                self._set_ext(w, True)
            holders.add(a.ident)
        a.ext = tuple(w for w in ext if w in self._extended)

    def _set_ext(self, w: tuple[str, str], on: bool) -> None:
        log.info("extended window %s/%s %s", w[0], w[1], "on" if on else "off")
        if self.set_extended is not None:
            try:
                self.set_extended(w[0], w[1], on)
            except KeyError:
                log.error("extended window %s/%s does not exist", *w)

    # ---- files and scripts -----------------------------------------------------------------

    def _notif_error(self, exc: OSError) -> None:
        self.counters["notification_errors"] += 1
        if not self._notif_error_logged:  # once: it is the same cause every 3 s
            self._notif_error_logged = True
            log.error("notification files in %s: %s", self.notifications_dir, exc)

    def _write(self, a: Alert) -> None:
        a.written_ns = self.now
        if a.file is None:
            return
        numeric = [f.kind in (KeyKind.NUMBER,) for f in a.avg.spec.keys]
        write_notification(a.file, notification_text(a.key_text, numeric, a.value, a.limit), self._notif_error)

    def _script(self, a: Alert, script: Path, event: str, role: str, after: Any = None) -> Any:
        spec = a.avg.spec
        file = str(a.file) if a.file is not None else ""
        argv = [str(script), a.avg.mo, spec.name, a.label, file, *a.key_text, str(a.value), str(a.limit)]
        env = {
            "PATH": SCRIPT_PATH,
            "LANG": "C.UTF-8",
            "MIRRORFLOW_EVENT": event,
            "MIRRORFLOW_DIRECTION": "under" if a.level.under else "over",
            "MIRRORFLOW_MO": a.avg.mo,
            "MIRRORFLOW_MAVG": spec.name,
            "MIRRORFLOW_LEVEL": a.label,
            "MIRRORFLOW_NOTIFICATION_FILE": file,
            "MIRRORFLOW_KEY": " ".join(a.key_text),
            "MIRRORFLOW_FIELDS": ",".join(f.column for f in spec.keys),
            "MIRRORFLOW_COUNTER": spec.counters[a.counter].column,
            "MIRRORFLOW_VALUE": str(a.value),
            "MIRRORFLOW_LIMIT": str(a.limit),
            "MIRRORFLOW_RATES": " ".join(f"{f.column}={round(r)}" for f, r in zip(spec.counters, a.rates, strict=True)),
            "MIRRORFLOW_THRESHOLDS": " ".join(f"{f.column}={'-' if math.isnan(t) else round(t)}"
                                              for f, t in zip(spec.counters, a.thresholds, strict=True)),
            "MIRRORFLOW_TIME": str(self.now // _NS),
            "MIRRORFLOW_SINCE": str(a.since_ns // _NS),
            "MIRRORFLOW_DURATION": str((self.now - a.since_ns) // _NS),
        }
        for f, text in zip(spec.keys, a.key_text, strict=True):
            env[f"MIRRORFLOW_KEY_{f.column.upper()}"] = text
        a.scripts[role] = report = new_report(argv)
        return self.runner.run(argv, env, after=after, report=report)

    def _dumps(self) -> None:
        for avg in self._avgs.values():
            spec = avg.spec
            if spec.dump <= 0:
                continue
            ident = (avg.mo, spec.name)
            if self.now - self._last_dump.get(ident, 0) < spec.dump * _NS:
                continue
            self._last_dump[ident] = self.now
            for trigger, out, mode in ((".d", ".dump", "w"), (".a", ".adump", "a")):
                if (spec.mo_dir / f"{spec.name}{trigger}").exists():
                    try:
                        with open(spec.mo_dir / f"{spec.name}{out}", mode) as f:
                            f.write(self.dump_text(avg))
                        self.counters["dumps_written"] += 1
                    except OSError as exc:
                        log.error("mavg dump %s%s: %s", spec.mo_dir / spec.name, out, exc)

    def dump_text(self, avg: MovingAverage) -> str:
        """xenoeye's dump: ctime line, memory line, one line per key with a non-zero rate."""
        spec = avg.spec
        keys, rates, limrow, _ = avg.snapshot(self.now)
        lines = [time.ctime(self.now / _NS) + "\n"]
        mb = 2**20
        lines.append(f"mem used/avail: {avg.memory_bytes // mb}M/{int(spec.mem_m)}M "
                     f"({avg.memory_bytes}/{int(spec.mem_m * mb)} bytes)\n")
        keep = np.flatnonzero(np.round(rates).max(axis=1) > 0) if len(rates) else np.zeros(0, np.int64)
        keep = keep[np.argsort(-rates[keep, 0], kind="stable")]
        numeric = [f.kind == KeyKind.NUMBER for f in spec.keys]

        def thr(row: int, levels: list[int]) -> str:
            vals = avg.thr[row][levels].ravel() if levels else []
            return "".join("- " if math.isnan(v) else f"{round(v)} " for v in vals)

        over = [i for i, lv in enumerate(spec.levels) if not lv.under]
        under = [i for i, lv in enumerate(spec.levels) if lv.under]
        for i in keep:
            text = format_key(spec.keys, keys[i])
            k = "".join(f" {t} " if num else f" '{t}' " for t, num in zip(text, numeric, strict=True))
            r = " ".join(str(round(x)) for x in rates[i])
            lines.append(f"{k} :: {r} ({thr(int(limrow[i]), over)})[{thr(int(limrow[i]), under)}]\n")
        return "".join(lines)

    # ---- the live API ----------------------------------------------------------------------

    def state(self, top: int = 20) -> list[dict[str, Any]]:
        """Per moving average: its table, its levels, the ``top`` keys by rate and every raised
        level with its rate, threshold, time over the limit and back-to-normal countdown."""
        out = []
        for avg in self._avgs.values():
            spec = avg.spec
            keys, rates, limrow, raised = avg.snapshot(self.now)
            order = np.argsort(-rates[:, 0], kind="stable")[:top] if len(rates) else []
            labels = _labels(spec)

            def levels_of(row: int, bits: int, labels: list[str] = labels, avg: MovingAverage = avg,
                          spec: MavgSpec = spec) -> list[dict[str, Any]]:
                return [{"level": labels[i], "direction": "under" if lv.under else "over",
                         "thresholds": [None if math.isnan(v) else float(v) for v in avg.thr[row, i]],
                         "raised": bool(bits >> i & 1)} for i, lv in enumerate(spec.levels)]

            out.append({
                "mo": avg.mo, "mavg": spec.name, "time": spec.time,
                "fields": [f.text for f in spec.fields],
                "counters": [f.column for f in spec.counters],
                "keys": avg.count, "capacity": avg.capacity, "memory_bytes": avg.memory_bytes,
                "mem_limit_bytes": int(spec.mem_m * 2**20), "refused_keys": avg.refused,
                "evicted_keys": avg.evicted,
                "top": [{"key": format_key(spec.keys, keys[i]), "rates": [float(x) for x in rates[i]],
                         "levels": levels_of(int(limrow[i]), int(raised[i]))} for i in order],
                "alerts": [self._alert_state(a) for a in self.alerts.values() if a.avg is avg],
                "ended": [{"level": a.label, "direction": "under" if a.level.under else "over", "key": a.key_text,
                           "since": a.since_ns / _NS, "scripts": _scripts(a)}
                          for a in self.ended if a.avg.mo == avg.mo and a.avg.spec.name == spec.name],
            })
        return out

    def _alert_state(self, a: Alert) -> dict[str, Any]:
        countdown = None
        if a.normal_since is not None:
            countdown = max(0.0, a.level.back2norm_s - (self.now - a.normal_since) / _NS)
        return {
            "level": a.label, "direction": "under" if a.level.under else "over", "key": a.key_text,
            "counter": a.avg.spec.counters[a.counter].column, "rate": a.value, "threshold": a.limit,
            "rates": a.rates, "thresholds": [None if math.isnan(t) else t for t in a.thresholds],
            "since": a.since_ns / _NS, "over_s": (self.now - a.since_ns) / _NS,
            "back2norm_in_s": countdown, "notification_file": str(a.file) if a.file else None,
            "ext": [f"{m}/{w}" for m, w in a.ext], "scripts": _scripts(a),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "mavg": len(self._avgs), "mavg_keys": sum(a.count for a in self._avgs.values()),
            "mavg_refused_keys": sum(a.refused for a in self._avgs.values()),
            "mavg_evicted_keys": sum(a.evicted for a in self._avgs.values()),
            "alerts_active": len(self.alerts), "alerts_raised": self.counters["raised"],
            "alerts_back_to_normal": self.counters["back_to_normal"],
            "notification_errors": self.counters["notification_errors"],
            **{f"scripts_{k}": v for k, v in self.runner.stats().items()},
        }

    def close(self, wait: bool = True) -> None:
        """Stop: scripts already queued finish (each bounded by its timeout); files stay (the
        alerts are still on as far as anyone knows)."""
        self._process_raised()
        self.runner.close(wait=wait)


class ReplaySlicer:
    """On replay, cut batches into slices of packet time so the alerts react as they would
    live (xenoeye's action thread runs every 100 ms): the monitor sees a slice, then the
    moving averages tick at its end.

    A slice is the packets of one step of ``slice_ns`` (steps aligned to multiples of it);
    steps without packets get no slice and no tick. The rates lose nothing by that: a key's
    sum is decayed over the whole gap in closed form when it is next read or updated (the
    level state machine, as before, only moves at ticks, i.e. where packets are). The work
    is proportional to the packets, never to the time they span: captures jump months or
    years between packets, and exporters with broken clocks stamp 0 or 2106.

    Args:
        monitor: the `Monitor` sink.
        averages: the `MovingAverages` fed by it.
        slice_ns: the longest stretch of packet time handled before a tick.
    """

    def __init__(self, monitor: Callable[[FlowBatch], None], averages: MovingAverages,
                 slice_ns: int = _NS // 10) -> None:
        self.monitor, self.averages, self.slice_ns = monitor, averages, slice_ns

    def __call__(self, batch: FlowBatch) -> None:
        if batch.n == 0:
            return
        t = batch["recv_time_ns"].astype(np.int64)
        lo, hi = int(t.min()), int(t.max())
        if hi - lo <= self.slice_ns:
            self.monitor(batch)
            self.averages.tick(hi)
            return
        order = np.argsort(t, kind="stable")
        ts = t[order]
        step = ts // self.slice_ns  # floor, also before 1970 (a uint64 beyond 2262 reads negative)
        ends = np.flatnonzero(step[1:] != step[:-1]) + 1
        start = 0
        for end in [*ends.tolist(), len(ts)]:
            self.monitor(batch.take(order[start:end]))
            self.averages.tick(int(ts[end - 1]))
            start = end


def attach(collector: Any, monitor: Any, cfg: Any, objects: list[Any], live: bool) -> MovingAverages:
    """Wire the moving averages into a collector and its `Monitor` (used by ``collect``).

    Live, they tick with the wall clock after every batch (and at least every 0.5 s); on
    replay the monitor is fed through a `ReplaySlicer` so the packets' time rules.
    """
    notif = getattr(cfg, "notifications_dir", None)
    if notif is not None and any(getattr(o, "averages", ()) for o in objects):
        try:
            Path(notif).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("notifications-dir %s: %s", notif, exc)
    avgs = MovingAverages(objects, monitor.set_extended, notif,
                          ScriptRunner(timeout_s=getattr(cfg, "script_timeout_s", 30.0)),
                          clock=time.time_ns if live else None)
    monitor.row_sinks.append(avgs.add)
    if live:
        collector.tickers.append(avgs.tick)
    elif avgs.averages and monitor in collector.sinks:
        collector.sinks[collector.sinks.index(monitor)] = ReplaySlicer(monitor, avgs)
    if hasattr(collector, "stats_sections"):
        collector.stats_sections["mavg"] = avgs.stats
    return avgs
