"""`Monitor`: the collector sink that runs monitoring objects and their fixed windows.

Per batch: each object's filter gives a mask (a child's mask is and-ed with its parent's),
each window adds the selected rows (numba hash aggregation), and windows whose time is up
are handed to the exporters. Nothing here runs per flow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import numpy as np

from appliance.collector.config.objects import MonitoringObject
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring.windows import FixedWindow, WindowTable

__all__ = ["Monitor", "WindowExporter"]

log = logging.getLogger("mirrorflow.monitor")

WindowExporter = Callable[[WindowTable], None]
_NS = 1_000_000_000


class _Running:
    """One object with its windows and its index in the evaluation order."""

    __slots__ = ("mo", "parent", "windows", "dumper", "flows")

    def __init__(self, mo: MonitoringObject, parent: int, windows: list[FixedWindow], dumper: object) -> None:
        self.mo, self.parent, self.windows, self.dumper = mo, parent, windows, dumper
        self.flows = 0  # flows this object matched since it was (re)loaded


class Monitor:
    """Runs the objects on every batch and exports closed windows.

    Args:
        objects: from `load_objects` (parents before children).
        exporters: called with every closed window, in closing order.
        dumper_factory: makes a per-object flow dumper from a dump-flows target (or None).
    """

    def __init__(
        self,
        objects: list[MonitoringObject],
        exporters: Iterable[WindowExporter] = (),
        dumper_factory: Callable[[str], object] | None = None,
    ) -> None:
        self.exporters = list(exporters)
        self._dumper_factory = dumper_factory
        self._lock = threading.Lock()
        self.windows_exported = 0
        self.rows_exported = 0
        self.flows_matched = 0
        self.export_errors = 0
        #: called with (object name, batch, selected rows) for every object that matched
        #: flows in a batch (the moving averages); under the monitor's lock
        self.row_sinks: list[Callable[[str, FlowBatch, np.ndarray], None]] = []
        self._objs = self._build(objects, {})

    # ---- configuration -------------------------------------------------------------------

    def _build(self, objects: list[MonitoringObject], keep: dict[tuple[str, str], FixedWindow]) -> list[_Running]:
        index: dict[str, int] = {}
        out = []
        for mo in objects:
            windows = []
            for spec in mo.windows:
                old = keep.get((mo.name, spec.name))
                if old is not None and old.spec == spec:
                    del keep[(mo.name, spec.name)]  # unchanged: keep its running state
                    windows.append(old)
                else:
                    windows.append(FixedWindow(spec, mo.table(spec.name), mo.name))
            dumper = None
            if mo.dump_flows not in ("", "none") and self._dumper_factory is not None:
                dumper = self._dumper_factory(mo.dump_flows)
            out.append(_Running(mo, index.get(mo.parent, -1) if mo.parent else -1, windows, dumper))
            index[mo.name] = len(out) - 1
        return out

    def replace(self, objects: list[MonitoringObject]) -> None:
        """Swap in a new, already validated configuration (SIGHUP).

        Windows whose definition did not change keep their running state; windows that
        changed or went away are closed and exported now (a partial window).
        """
        with self._lock:
            old = {(r.mo.name, w.spec.name): w for r in self._objs for w in r.windows}
            new = self._build(objects, old)
            closed = [t for w in old.values() for t in w.close()]
            for r in self._objs:
                if r.dumper is not None and hasattr(r.dumper, "close"):
                    r.dumper.close()
            self._objs = new
        self._export(closed)

    @property
    def objects(self) -> list[MonitoringObject]:
        return [r.mo for r in self._objs]

    def window(self, mo: str, window: str) -> FixedWindow:
        for r in self._objs:
            if r.mo.name == mo:
                for w in r.windows:
                    if w.spec.name == window:
                        return w
        raise KeyError(f"no window {window!r} in monitoring object {mo!r}")

    def set_extended(self, mo: str, window: str, on: bool) -> None:
        """Switch an ``extended`` window on or off (the moving averages' hook)."""
        with self._lock:
            self.window(mo, window).set_active(on)

    # ---- the sink ------------------------------------------------------------------------

    def __call__(self, batch: FlowBatch) -> None:
        if batch.n == 0:
            return
        with self._lock:
            closed = self._process(batch)
        self._export(closed)

    def _process(self, batch: FlowBatch) -> list[WindowTable]:
        closed: list[WindowTable] = []
        t = batch["recv_time_ns"]
        wids: dict[int, np.ndarray] = {}
        masks: list[np.ndarray | None] = []
        now = int(t.max())
        for r in self._objs:
            parent = masks[r.parent] if r.parent >= 0 else None
            if parent is not None and (not parent.any() or getattr(r.mo.filter, "match_all", False)):
                masks.append(parent)
            elif parent is None and getattr(r.mo.filter, "match_all", False):
                masks.append(np.ones(batch.n, dtype=np.bool_))
            else:
                # the parent's mask tells stateful functions (mfreq) which flows the object sees
                m = np.asarray(r.mo.filter.evaluate(batch, parent), dtype=np.bool_)
                if parent is not None:
                    m = m & parent
                masks.append(m)
            mask = masks[-1]
            assert mask is not None
            rows = np.flatnonzero(mask)
            if len(rows):
                self.flows_matched += len(rows)
                r.flows += len(rows)
                if r.dumper is not None:
                    r.dumper.dump(batch.take(rows))  # type: ignore[attr-defined]
                for sink in self.row_sinks:
                    sink(r.mo.name, batch, rows)
                for w in r.windows:
                    if not w.active:
                        continue
                    wid = wids.get(w.period_ns)
                    if wid is None:
                        wid = wids[w.period_ns] = t // np.uint64(w.period_ns)
                    closed.extend(w.add(batch, rows, wid))
            for w in r.windows:
                closed.extend(w.tick(now))
        return closed

    def tick(self, now_ns: int) -> None:
        """Close every window whose time is up (the live collector calls this with the clock)."""
        with self._lock:
            closed = [t for r in self._objs for w in r.windows for t in w.tick(now_ns)]
        self._export(closed)

    def flush(self) -> None:
        """Close every window now, partial or not (end of a replay, shutdown)."""
        with self._lock:
            closed = []
            for r in self._objs:
                for w in r.windows:
                    closed.extend(w.close())
                    w.current = None
        self._export(closed)

    def close(self) -> None:
        self.flush()
        for r in self._objs:
            if r.dumper is not None and hasattr(r.dumper, "close"):
                r.dumper.close()
        for e in self.exporters:
            if hasattr(e, "close"):
                e.close()

    def _export(self, tables: list[WindowTable]) -> None:
        tables.sort(key=lambda t: t.time)
        for table in tables:
            self.windows_exported += 1
            self.rows_exported += len(table.rows)
            for exporter in self.exporters:
                try:
                    exporter(table)
                except Exception:  # an exporter bug must not stop the collector
                    self.export_errors += 1
                    log.exception("exporting window %s at %d failed", table.table, table.time)

    def stats(self) -> dict[str, object]:
        """Counters for the stats file, the log and the live API; exporters' counters merged in.

        ``object_flows`` maps each object to the flows it matched (since its last reload).
        """
        out: dict[str, object] = {
            "objects": len(self._objs),
            "windows": sum(len(r.windows) for r in self._objs),
            "flows_matched": self.flows_matched,
            "windows_exported": self.windows_exported,
            "rows_exported": self.rows_exported,
            "export_errors": self.export_errors,
            "object_flows": {r.mo.name: r.flows for r in self._objs},
        }
        for e in self.exporters:
            if hasattr(e, "stats"):
                out.update(e.stats())
        return out
