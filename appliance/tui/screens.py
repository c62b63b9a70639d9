"""Screens pushed over the dashboard: the ``?`` help and the Enter drill-downs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from appliance.tui.client import Snapshot
from appliance.tui.keys import help_rows
from appliance.tui.panels import View, flows
from appliance.tui.table import Column, LiveTable, Row

__all__ = ["HelpScreen", "DetailScreen", "FlowTailScreen", "Source"]

#: what a drill-down shows for a snapshot: (title, columns, rows)
Source = Callable[[Snapshot, View], tuple[str, list[Column], list[Row]]]


class HelpScreen(ModalScreen[None]):
    """Every key binding, generated from :data:`appliance.tui.keys.KEYS`."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > DataTable { width: auto; max-width: 100%; height: auto; max-height: 100%;
                             border: round $accent; }
    """

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(id="help", cursor_type="none", show_cursor=False)
        table.add_columns("group", "keys", "what")
        for group, keys, what in help_rows():
            table.add_row(group, keys, what)
        table.border_title = "mirrorflow tui — keys (Esc closes)"
        yield table


class DetailScreen(Screen[None]):
    """A drill-down: a live table produced from every new snapshot by ``source``.

    Args:
        name: shown in the title and used by export file names.
        source: builds (title, columns, rows) from a snapshot.
        extra: API paths this screen needs fetched every tick (name -> path), e.g. a flow tail.
    """

    DEFAULT_CSS = """
    DetailScreen #detail-title { height: 1; background: $boost; padding: 0 1; }
    DetailScreen LiveTable { height: 1fr; }
    """

    def __init__(self, name: str, source: Source, extra: dict[str, str] | None = None,
                 on_select: Callable[[str], Any] | None = None) -> None:
        super().__init__()
        self.detail_name = name
        self.source = source
        self.extra = extra or {}
        self.on_select = on_select

    def compose(self) -> ComposeResult:
        yield Static(self.detail_name, id="detail-title")
        yield LiveTable(id="detail")
        yield Footer()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#detail", LiveTable)

    def show(self, snapshot: Snapshot, view: View) -> None:
        title, columns, rows = self.source(snapshot, view)
        self.query_one("#detail-title", Static).update(title)
        self.table.set_columns(columns)
        self.table.sync(rows)

    def on_mount(self) -> None:
        self.table.focus()


class FlowTailScreen(DetailScreen):
    """An object's flow tail, optionally narrowed by an expression in the collector's filter
    language (``f``); the collector evaluates it, so a bad one shows the API's message.

    Args:
        obj: the monitoring object.
        newest: the newest snapshot's extra document of a name (a drill-down opened while paused).
    """

    DEFAULT_CSS = """
    FlowTailScreen #expr { dock: bottom; display: none; height: 3; }
    FlowTailScreen #expr.shown { display: block; }
    FlowTailScreen #expr-error { height: auto; max-height: 4; color: $error; display: none; padding: 0 1; }
    FlowTailScreen #expr-error.shown { display: block; }
    """

    def __init__(self, obj: str, newest: Callable[[str], dict[str, Any]]) -> None:
        self.obj = obj
        self.expr = ""
        self.newest = newest
        super().__init__(f"flows {obj}", self._tail, {self.doc_name: flows.path(obj)})

    @property
    def doc_name(self) -> str:
        return f"flows:{self.obj}" + (f"?{self.expr}" if self.expr else "")

    def compose(self) -> ComposeResult:
        yield Static(self.detail_name, id="detail-title", markup=False)  # expressions have [ ]
        yield Static("", id="expr-error", markup=False)
        yield LiveTable(id="detail")
        yield Input(placeholder="filter expression, e.g. proto udp and dst port 53 (Enter applies, Esc clears)",
                    id="expr")
        yield Footer()

    def _tail(self, s: Snapshot, v: View) -> tuple[str, list[Column], list[Row]]:
        doc = s.extra.get(self.doc_name) or self.newest(self.doc_name)
        err = flows.error(doc) if doc else None
        box = self.query_one("#expr-error", Static)
        box.update(err or "")
        box.set_class(err is not None, "shown")
        if not doc:
            return f"flow tail of {self.obj}: loading…", *flows.render({}, v)
        return flows.title(doc), *flows.render(doc if err is None else {}, v)

    def open_expr(self) -> None:
        box = self.query_one("#expr", Input)
        box.add_class("shown")
        box.value = self.expr
        box.focus()

    def set_expr(self, text: str) -> None:
        """Ask the collector for the flows matching ``text`` from the next poll on ("": all)."""
        self.expr = text.strip()
        self.extra = {self.doc_name: flows.path(self.obj, expr=self.expr)}
        box = self.query_one("#expr", Input)
        box.value = self.expr
        box.set_class(bool(self.expr), "shown")
        self.table.focus()

    @property
    def expr_open(self) -> bool:
        return bool(self.expr) or self.query_one("#expr", Input).has_class("shown")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "expr":
            event.stop()
            self.set_expr(event.value)
            self.app.poll_now()  # type: ignore[attr-defined]
