"""The dashboard App: polls the live API at 1 Hz in a thread, renders the panels, keeps history."""

from __future__ import annotations

import csv
import json
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Sparkline, Static, TabbedContent, TabPane

from appliance.tui import keys
from appliance.tui.client import DEFAULT_URL, ApiClient, Snapshot
from appliance.tui.panels import View, alerts, details, exporters, header, mavg, objects, sampled, windows
from appliance.tui.screens import DetailScreen, FlowTailScreen, HelpScreen
from appliance.tui.table import Column, LiveTable, Row

__all__ = ["MirrorflowApp", "PANES"]

PANES = ("objects", "mavg", "top", "alerts", "exporters")
THEMES = ("textual-dark", "nord", "gruvbox", "tokyo-night", "textual-light")
#: client-side history for time travel: 300 ticks = the last 5 minutes at 1 Hz
HISTORY = 300
SPARK_POINTS = 120


class KeyCommands(Provider):
    """Every action of the key table in the command palette."""

    def _hits(self) -> list[tuple[str, str, str]]:
        return [(k.help, k.action, keys.key_label(k.key)) for k in keys.KEYS if k.action != "command_palette"]

    async def discover(self) -> Hits:
        for text, action, key in self._hits():
            yield DiscoveryHit(text, partial(self.app.run_action, action), help=key)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, action, key in self._hits():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self.app.run_action, action), help=key)


class MirrorflowApp(App[None]):
    """``mirrorflow tui``: the collector's live API on one screen.

    Args:
        url: the live API (``http://127.0.0.1:8787``).
        client: an :class:`ApiClient` (tests hand in one with a recorded transport).
        interval: seconds between polls; 0 polls only when :meth:`poll_now` is called.
        clock: wall clock for update ages (frozen in snapshot tests).
        export_dir: where ``e`` writes the current view.
    """

    TITLE = "mirrorflow"
    BINDINGS = keys.bindings()
    COMMANDS = App.COMMANDS | {KeyCommands}
    CSS = """
    #hdr { height: 3; background: $panel; }
    #hdr-status { height: 1; padding: 0 1; }
    #hdr-line { height: 2; }
    #hdr-rates { width: 1fr; padding: 0 1; }
    #spark { width: 24; height: 2; margin-right: 1; }
    TabbedContent { height: 1fr; }
    TabPane { padding: 0; }
    LiveTable { height: 1fr; }
    #windows { height: auto; max-height: 6; }
    .pane-title { height: 1; background: $boost; padding: 0 1; }
    #filter { dock: bottom; display: none; height: 3; }
    #filter.shown { display: block; }
    """

    def __init__(self, url: str = DEFAULT_URL, client: ApiClient | None = None, interval: float = 1.0,
                 clock: Callable[[], float] = time.time, export_dir: Path | None = None) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.client = client or ApiClient(self.url, clock=clock)
        self.interval = interval
        self.clock = clock
        self.export_dir = export_dir or Path.cwd()
        self.history: deque[Snapshot] = deque(maxlen=HISTORY)
        self.spark: deque[float] = deque(maxlen=SPARK_POINTS)
        self.frozen: Snapshot | None = None  # the display shows this one instead of the newest
        self.in_bytes = False
        self.updates = 0  # snapshots received (tests wait on it)
        self.window_key: str | None = None
        self._fetching = False

    # ---- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="hdr"):
            yield Static("connecting…", id="hdr-status")
            with Horizontal(id="hdr-line"):
                yield Static("", id="hdr-rates")
                yield Sparkline([], id="spark")
        with TabbedContent(initial="objects", id="panes"):
            with TabPane("1 Objects", id="objects"):
                yield LiveTable(id="objects-table")
            with TabPane("2 Mavg", id="mavg"):
                yield LiveTable(id="mavg-table")
            with TabPane("3 Top", id="top"):
                yield LiveTable(id="windows")
                yield Static("", id="top-title", classes="pane-title")
                yield LiveTable(id="top-table")
            with TabPane("4 Alerts", id="alerts"):
                yield LiveTable(id="alerts-table")
            with TabPane("5 Exporters", id="exporters"):
                yield Static("", id="probe-line", classes="pane-title")
                yield LiveTable(id="exporters-table")
        yield Input(placeholder="filter rows (Enter keeps it, Esc clears)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.url
        self.query_one("#objects-table", LiveTable).focus()
        self.poll_now()
        if self.interval > 0:
            self.set_interval(self.interval, self.poll_now)

    # ---- data flow: fetch in a thread, render on the event loop -------------------------------

    def extra_paths(self) -> dict[str, str]:
        extra: dict[str, str] = {}
        for screen in self.screen_stack:
            if isinstance(screen, DetailScreen):
                extra.update(screen.extra)
        return extra

    def poll_now(self) -> None:
        if self._fetching:  # a slow API: never queue requests up
            return
        self._fetching = True
        extra = self.extra_paths()
        self.run_worker(partial(self._fetch, extra), thread=True, group="poll", exit_on_error=False)

    def _fetch(self, extra: dict[str, str]) -> None:
        try:
            snapshot = self.client.fetch(extra)
        finally:
            self._fetching = False
        self.call_from_thread(self.receive, snapshot)

    def receive(self, snapshot: Snapshot) -> None:
        """A new snapshot: always kept (history, sparkline); shown unless paused."""
        if snapshot.error is None:
            self.history.append(snapshot)
            bps = (snapshot.get("status").get("status") or {}).get("rates", {}).get("1s", {}).get("bps")
            self.spark.append(float(bps or 0.0))
        self.updates += 1
        self.render_snapshot(snapshot if snapshot.error is not None and self.frozen is None else None)

    @property
    def shown(self) -> Snapshot | None:
        if self.frozen is not None:
            return self.frozen
        return self.history[-1] if self.history else None

    def view(self, snapshot: Snapshot) -> View:
        return View(in_bytes=self.in_bytes, sampled=sampled(snapshot))

    def render_snapshot(self, override: Snapshot | None = None) -> None:
        """Render the shown snapshot (``override``: an error snapshot, for the header only)."""
        snap = self.shown
        self._render_header(override or snap)
        if snap is None:
            return
        view = self.view(snap)
        with self.batch_update():
            self._sync("#objects-table", objects.render(objects.fetch(snap), view))
            self._sync("#mavg-table", mavg.render(mavg.fetch(snap), view))
            self._sync("#alerts-table", alerts.render(alerts.fetch(snap), view))
            ex = exporters.fetch(snap)
            self._sync("#exporters-table", exporters.render(ex, view))
            self.query_one("#probe-line", Static).update(exporters.probe_line(ex["probe"]))
            self._render_top(snap, view)
            for screen in self.screen_stack:
                if isinstance(screen, DetailScreen):
                    screen.show(snap, view)

    def _sync(self, selector: str, spec: tuple[list[Column], list[Row]]) -> None:
        table = self.query_one(selector, LiveTable)
        table.set_columns(spec[0])
        table.sync(spec[1])

    def _render_top(self, snap: Snapshot, view: View) -> None:
        ws = windows.fetch(snap)
        listing = self.query_one("#windows", LiveTable)
        self._sync("#windows", windows.render_list(ws, view))
        names = [windows.name(w) for w in ws]
        if self.window_key not in names:
            self.window_key = listing.cursor_key if listing.cursor_key in names else (names[0] if names else None)
        w = next((w for w in ws if windows.name(w) == self.window_key), None)
        self.query_one("#top-title", Static).update(windows.title(w))
        self._sync("#top-table", windows.render_table(w, view))

    def _render_header(self, snap: Snapshot | None) -> None:
        status = self.query_one("#hdr-status", Static)
        if snap is None:
            status.update(f"connecting to {self.url}…")
            return
        # health and update age are the connection's (newest snapshot), rates are what is shown
        newest = snap if snap.error is not None or not self.history else self.history[-1]
        paused = ""
        if self.frozen is not None:
            behind = (newest.time or 0.0) - (self.frozen.time or 0.0)
            paused = "PAUSED" + (f" -{behind:.0f}s" if behind >= 0.5 else "")
        status.update(header.render_status(header.fetch(newest, self.url), self.clock(), paused))
        data = header.fetch(snap, self.url)
        self.query_one("#hdr-rates", Static).update(header.render_rates(data, self.view(snap)))
        self.query_one("#spark", Sparkline).data = list(self.spark)

    # ---- the current table --------------------------------------------------------------------

    @property
    def pane(self) -> str:
        return self.query_one("#panes", TabbedContent).active or "objects"

    def current_table(self) -> LiveTable:
        if isinstance(self.screen, DetailScreen):
            return self.screen.table
        if self.pane == "top":
            focused = self.focused
            return focused if isinstance(focused, LiveTable) and focused.id == "windows" else self.query_one(
                "#top-table", LiveTable)
        return self.query_one(f"#{self.pane}-table", LiveTable)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.current_table().focus()
        self._restore_filter()

    # ---- actions (every one is in keys.KEYS) -------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_pane(self, name: str) -> None:
        if isinstance(self.screen, DetailScreen):
            self.pop_screen()
        self.query_one("#panes", TabbedContent).active = name
        self.current_table().focus()

    def action_sort(self) -> None:
        self.current_table().cycle_sort()

    def action_reverse(self) -> None:
        t = self.current_table()
        t.sort_by(t.sort_column, reverse=not t.sort_reverse)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.current_table().filter_text
        box.focus()

    def _restore_filter(self) -> None:
        box = self.query_one("#filter", Input)
        text = self.current_table().filter_text
        box.value = text
        box.set_class(bool(text), "shown")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.current_table().set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.remove_class("shown")
            self.current_table().focus()

    def action_expr_filter(self) -> None:
        if isinstance(self.screen, FlowTailScreen):
            self.screen.open_expr()
        else:
            self.notify("the expression filter is for flow tails: Enter on an object (1 Objects)", timeout=3)

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if isinstance(self.screen, FlowTailScreen) and self.screen.expr_open:
            self.screen.set_expr("")
            self.poll_now()
            return
        if isinstance(self.screen, DetailScreen):
            if self.screen.table.filter_text:
                self.screen.table.set_filter("")
            else:
                self.pop_screen()
            return
        if box.has_class("shown") or self.current_table().filter_text:
            box.value = ""
            self.current_table().set_filter("")
            box.remove_class("shown")
            self.current_table().focus()

    def action_pause(self) -> None:
        self.frozen = None if self.frozen is not None else self.shown
        self.render_snapshot()

    def action_travel(self, step: int) -> None:
        if not self.history:
            return
        hist = list(self.history)
        at = hist.index(self.frozen) if self.frozen in hist else len(hist) - 1
        at += step
        if at >= len(hist):  # past the newest: live again
            self.frozen = None
        else:
            self.frozen = hist[max(0, at)]
        self.render_snapshot()

    def action_toggle_bytes(self) -> None:
        self.in_bytes = not self.in_bytes
        self.render_snapshot()

    def action_next_theme(self) -> None:
        i = THEMES.index(self.theme) if self.theme in THEMES else -1
        self.theme = THEMES[(i + 1) % len(THEMES)]
        self.notify(f"theme {self.theme}", timeout=2)

    def action_next_window(self) -> None:
        listing = self.query_one("#windows", LiveTable)
        if listing.row_count:
            listing.move_cursor(row=(listing.cursor_row + 1) % listing.row_count)
            self.window_key = listing.cursor_key
            if self.shown is not None:
                self._render_top(self.shown, self.view(self.shown))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "windows" and event.row_key is not None and event.row_key.value != self.window_key:
            self.window_key = str(event.row_key.value)
            if self.shown is not None:
                self._render_top(self.shown, self.view(self.shown))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self._drill(event.data_table, str(event.row_key.value))

    def action_drill(self) -> None:
        table = self.current_table()
        if table.cursor_key is not None:
            self._drill(table, table.cursor_key)

    def _drill(self, table: DataTable[Any], key: str) -> None:
        screen = self._drill_screen(table.id or "", key)
        if screen is not None:
            self.push_screen(screen)
            if self.shown is not None:
                self.call_after_refresh(screen.show, self.shown, self.view(self.shown))
            self.poll_now()

    def _newest_extra(self, name: str) -> dict[str, Any]:
        """An extra document from the newest snapshot that has it (a drill-down opened while paused)."""
        return next((s.extra[name] for s in reversed(self.history) if name in s.extra), {})

    def _drill_screen(self, table_id: str, key: str) -> DetailScreen | None:
        if table_id == "objects-table":
            return FlowTailScreen(key, self._newest_extra)
        if table_id in ("windows", "top-table"):
            name = key if table_id == "windows" else (self.window_key or "")

            def table_of(s: Snapshot, v: View) -> tuple[str, list[Column], list[Row]]:
                w = next((w for w in windows.fetch(s) if windows.name(w) == name), None)
                return (windows.title(w).replace("  [w: next window]", ""), *windows.render_table(w, v))

            return DetailScreen(f"window {name}", table_of)

        def find(s: Snapshot) -> dict[str, Any] | None:
            if table_id == "exporters-table":
                return next((e for e in exporters.fetch(s)["exporters"] if e["address"] == key), None)
            if table_id == "alerts-table":
                a = alerts.fetch(s)
                items = [x for x in a["active"] if "A:" + alerts.alert_key(x) == key]
                items += [x for x in a["past"] if "P:" + alerts.alert_key(x) == key]
                return items[0] if items else None
            if table_id == "mavg-table":
                mo, mv, _ = key.split("/", 2)
                m = next((m for m in mavg.fetch(s) if m["mo"] == mo and m["mavg"] == mv), None)
                if m is None:
                    return None
                entry = next((t for t in m["top"] if f"{mo}/{mv}/{mavg.key_text(t['key'])}" == key), None)
                return {"key": key, **({"entry": entry} if entry else {}),
                        **{k: v for k, v in m.items() if k not in ("top", "alerts")}}
            return None

        if table_id not in ("exporters-table", "alerts-table", "mavg-table"):
            return None
        return DetailScreen(f"{table_id.removesuffix('-table')} {key}",
                            lambda s, v: (f"{table_id.removesuffix('-table')} {key}", *details.render(find(s))))

    def action_export(self) -> None:
        """Write the current table (as shown: filter and sort applied, raw values) to CSV and JSON."""
        table = self.current_table()
        rows = table.export_rows()
        name = self.screen.detail_name if isinstance(self.screen, DetailScreen) else self.pane
        stem = "mirrorflow-{}-{}".format("".join(c if c.isalnum() else "_" for c in name),
                                         time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock())))
        self.export_dir.mkdir(parents=True, exist_ok=True)
        base = self.export_dir / stem
        with open(base.with_suffix(".csv"), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([c.label for c in table.columns_spec])
            writer.writerows([list(r.values()) for r in rows])
        snap = self.shown
        doc = {"view": name, "url": self.url, "snapshot": (snap.get("status").get("snapshot") if snap else None),
               "columns": [c.label for c in table.columns_spec], "rows": rows}
        base.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
        self.last_export = base
        self.notify(f"exported {len(rows)} rows to {base}.csv/.json", timeout=4)
