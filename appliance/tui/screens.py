"""Screens pushed over the dashboard: the ``?`` help and the Enter drill-downs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Static

from appliance.tui.client import Snapshot
from appliance.tui.keys import help_rows
from appliance.tui.panels import View
from appliance.tui.table import Column, LiveTable, Row

__all__ = ["HelpScreen", "DetailScreen", "Source"]

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
                 on_select: Callable[[str], Any] | None = None) -> None:  # fmt: skip
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
