"""A DataTable that is fed whole row sets every tick and changes only what changed.

Dolphie's rules: cells are updated in place (``update_cell`` inside ``batch_update``), rows
are identified by a stable key (an object's name, an exporter's address), and the cursor
stays on the same key after a re-sort or a filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

__all__ = ["Cell", "Column", "Row", "LiveTable"]


_TEXT = object()


class Cell(Text):
    """Rendered text plus the raw value it shows (sorting and export use the raw value;
    without one, the text is the value)."""

    def __init__(self, text: str, style: str = "", value: Any = _TEXT, justify: Any = None) -> None:
        super().__init__(text, style=style, justify=justify)
        self.value = text if value is _TEXT else value

    @property
    def signature(self) -> tuple[str, str]:
        return self.plain, str(self.style)


def num(text: str, value: Any, style: str = "") -> Cell:
    """A right-aligned number."""
    return Cell(text, style, value, justify="right")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool = False


@dataclass
class Row:
    """One entity's cells; ``pinned`` rows (the "other" remainder) stay last whatever the sort."""

    key: str
    cells: Sequence[Cell | str]
    pinned: bool = False


def _sort_value(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value).lower())


class LiveTable(DataTable[Any]):
    """Rows synced by key; sortable by any column; a substring filter over the cells' text."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.columns_spec: list[Column] = []
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.filter_text = ""
        self._rows: list[Row] = []
        self._seen: dict[str, list[tuple[str, str]]] = {}
        self._pinned: set[str] = set()
        self._order: list[str] = []

    # ---- columns and sorting -----------------------------------------------------------------

    def set_columns(self, columns: Sequence[Column]) -> None:
        if [c.key for c in columns] == [c.key for c in self.columns_spec]:
            return
        self.columns_spec = list(columns)
        self.clear(columns=True)
        self._seen.clear()
        self._order = []
        for c in columns:
            self.add_column(Text(c.label, justify="right" if c.numeric else "left"), key=c.key)
        if self.sort_column not in {c.key for c in columns}:
            self.sort_column = None

    def sort_by(self, column: str | None, reverse: bool | None = None) -> None:
        """Sort by a column (numeric columns start descending: the biggest talker first)."""
        if column == self.sort_column and reverse is None:
            self.sort_reverse = not self.sort_reverse
        else:
            spec = {c.key: c for c in self.columns_spec}.get(column or "")
            self.sort_column = column
            self.sort_reverse = bool(spec and spec.numeric) if reverse is None else reverse
        self._apply(self._rows)

    def cycle_sort(self) -> None:
        keys = [None, *(c.key for c in self.columns_spec)]
        i = keys.index(self.sort_column) if self.sort_column in keys else 0
        self.sort_by(keys[(i + 1) % len(keys)], reverse=None if i + 1 < len(keys) else False)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    # ---- rows --------------------------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:
            return None

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._apply(self._rows)

    def sync(self, rows: Iterable[Row]) -> None:
        """Make the table show ``rows``: add, remove and update cells only where they differ."""
        self._rows = list(rows)
        self._apply(self._rows)

    def visible(self) -> list[Row]:
        return [r for r in self._rows if self._matches(r)]

    def _matches(self, row: Row) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in (c.plain if isinstance(c, Text) else str(c)).lower() for c in row.cells)

    def _apply(self, rows: list[Row]) -> None:
        if not self.columns_spec:
            return
        keep = self.cursor_key
        wanted = [r for r in rows if self._matches(r)]
        wanted_keys = {r.key for r in wanted}
        columns = [c.key for c in self.columns_spec]
        with self.app.batch_update():
            for key in [k for k in self._seen if k not in wanted_keys]:
                self.remove_row(key)
                del self._seen[key]
            for row in wanted:
                cells = [c if isinstance(c, Cell) else Cell(str(c)) for c in row.cells]
                sig = [c.signature for c in cells]
                old = self._seen.get(row.key)
                if old is None:
                    self.add_row(*cells, key=row.key)
                elif old != sig:
                    for col, cell, before, after in zip(columns, cells, old, sig):
                        if before != after:
                            self.update_cell(row.key, col, cell)
                self._seen[row.key] = sig
            self._pinned = {r.key for r in wanted if r.pinned}
            self._reorder(wanted)
            if keep is not None and keep in self._seen:
                index = self.get_row_index(keep)
                if index != self.cursor_row:
                    self.move_cursor(row=index, animate=False)

    def _reorder(self, wanted: list[Row]) -> None:
        order = [r.key for r in wanted]
        if self.sort_column is not None:
            i = [c.key for c in self.columns_spec].index(self.sort_column)

            def value(r: Row) -> tuple[int, Any]:
                c = r.cells[i]
                return _sort_value(c.value if isinstance(c, Cell) else c)

            free = sorted((r for r in wanted if not r.pinned), key=value, reverse=self.sort_reverse)
            order = [r.key for r in free] + [r.key for r in wanted if r.pinned]
        current = [str(r.key.value) for r in self.ordered_rows]
        if current != order:
            position = {k: n for n, k in enumerate(order)}
            self.sort(key=lambda cells: position[cells[0].row_key], reverse=False)

    def add_row(self, *cells: Any, key: str | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        if cells and isinstance(cells[0], Cell):
            cells[0].row_key = key  # type: ignore[attr-defined]
        return super().add_row(*cells, key=key, **kwargs)

    def update_cell(self, row_key: Any, column_key: Any, value: Any, *, update_width: bool = False) -> None:
        if isinstance(value, Cell):
            value.row_key = str(getattr(row_key, "value", row_key))  # type: ignore[attr-defined]
        super().update_cell(row_key, column_key, value, update_width=update_width)

    def export_rows(self) -> list[dict[str, Any]]:
        """The visible rows in display order, raw values under the column labels."""
        by_key = {r.key: r for r in self.visible()}
        out = []
        for r in self.ordered_rows:
            row = by_key.get(str(r.key.value))
            if row is None:
                continue
            out.append({c.label: (v.value if isinstance(v, Cell) else v) for c, v in zip(self.columns_spec, row.cells)})
        return out
