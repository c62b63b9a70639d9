"""The one table of key bindings: it generates the App's BINDINGS and the ``?`` help screen."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

__all__ = ["Key", "KEYS", "bindings", "help_rows"]


@dataclass(frozen=True)
class Key:
    key: str  # Textual key name(s), comma-separated
    action: str
    description: str  # short, for the footer
    help: str  # one line for the help screen
    group: str = "view"
    show: bool = False  # in the footer (80 columns hold about six)


KEYS: tuple[Key, ...] = (
    Key("question_mark", "help", "Help", "this help (generated from the key table)", "general", True),
    Key("q", "quit", "Quit", "quit", "general", True),
    Key("1", "pane('objects')", "Objects", "monitoring objects with their rates", "panes"),
    Key("2", "pane('mavg')", "Mavg", "moving averages: value, threshold, %, state", "panes"),
    Key("3", "pane('top')", "Top", "top talkers of every window, with the \"other\" row", "panes"),
    Key("4", "pane('alerts')", "Alerts", "active and past alerts", "panes"),
    Key("5", "pane('exporters')", "Exporters", "the probe and the routers side by side", "panes"),
    Key("enter", "drill", "Open", "drill down: flows of an object, a window, an exporter, an alert",
        "navigate"),
    Key("escape", "back", "Back", "back (close a drill-down, clear the filter)", "navigate"),
    Key("s", "sort", "Sort", "sort by the next column (or click its header)", "table", True),
    Key("S", "reverse", "Reverse", "reverse the sort order", "table"),
    Key("slash", "filter", "Filter", "quick filter: rows containing the text (Esc clears)", "table", True),
    Key("f", "expr_filter", "Expr", "flow tail: collector filter expression (Esc clears)", "table"),
    Key("w", "next_window", "Window", "top talkers: show the next window", "table"),
    Key("p,space", "pause", "Pause", "pause the display (data keeps arriving)", "view", True),
    Key("left_square_bracket", "travel(-1)", "Older", "time travel: one update back (pauses)", "view"),
    Key("right_square_bracket", "travel(1)", "Newer", "time travel: one update forward (live at the end)", "view"),
    Key("b", "toggle_bytes", "Bytes", "units: bits/s <-> bytes/s", "view", True),
    Key("e", "export", "Export", "write the current view to CSV and JSON files", "view"),
    Key("t", "next_theme", "Theme", "next colour theme", "view"),
    Key("ctrl+p", "command_palette", "Commands", "command palette (every action by name)", "general"),
)


def bindings() -> list[Binding]:
    return [Binding(k.key, k.action, k.description, show=k.show) for k in KEYS]


_NAMES = {"question_mark": "?", "slash": "/", "left_square_bracket": "[", "right_square_bracket": "]",
          "escape": "Esc", "enter": "Enter", "space": "Space", "ctrl+p": "Ctrl+P"}


def key_label(key: str) -> str:
    return " ".join(_NAMES.get(k, k) for k in key.split(","))


def help_rows() -> list[tuple[str, str, str]]:
    """``(group, keys, what)`` for every binding, in table order."""
    return [(k.group, key_label(k.key), k.help) for k in KEYS]
