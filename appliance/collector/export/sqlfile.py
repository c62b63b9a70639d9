"""Closed windows as text: xenoeye-compatible ``.sql`` files and PostgreSQL COPY rows.

`SqlFileWriter` is the mode for users with their own loaders (xenoeye's
``xe-dbexport-pg.sh`` works unchanged): one file ``<export-dir>/<table>_<time>.sql`` per
window with ``create table if not exists``, ``create index if not exists`` and one
``insert``. Files appear atomically (written under a dot-name, then renamed).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from appliance.collector.monitoring.windows import WindowTable

__all__ = ["SqlFileWriter", "sql_text", "create_table_sql", "copy_rows", "quote_ident"]

log = logging.getLogger("mirrorflow.export")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def create_table_sql(t: WindowTable) -> list[str]:
    """``create table if not exists`` (+ the time index unless create-index is off)."""
    cols = ", ".join(f"{quote_ident(c.name)} {c.sqltype}" for c in t.columns)
    out = [f"create table if not exists {quote_ident(t.table)} (time TIMESTAMPTZ, {cols});"]
    if t.create_index:
        out.append(f"create index if not exists {quote_ident(t.table + '_idx')} on {quote_ident(t.table)}(time);")
    return out


def sql_text(t: WindowTable) -> str:
    """The whole .sql file of one window, as xenoeye writes it (remainder row included)."""
    lines = create_table_sql(t)
    values = ",\n".join(
        f"( to_timestamp({t.time}), " + " , ".join(_literal(v) for v in row) + " )" for row in t.rows
    )
    lines.append(f"insert into {quote_ident(t.table)} values\n{values};")
    return "\n".join(lines) + "\n"


def _copy_value(v: object) -> str:
    if v is None:
        return "\\N"
    s = str(v)
    if isinstance(v, str):  # text fields may carry COPY's special characters
        s = s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return s


def copy_rows(t: WindowTable) -> Iterator[str]:
    """Rows in COPY text format: time, then the columns in `t.columns` order."""
    ts = dt.datetime.fromtimestamp(t.time, dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    for row in t.rows:
        yield ts + "\t" + "\t".join(_copy_value(v) for v in row) + "\n"


#: files of one window (a window cut by restarts is written once per part)
_MAX_PARTS = 1000


class SqlFileWriter:
    """Writes each closed window to ``<export-dir>/<table>_<time>.sql``.

    A window that spans a collector restart is written twice (the part before the stop and the
    part after the start): the second file is ``<table>_<time>.2.sql``, never over the first.
    Loaded, the parts are rows with the same time; a report that sums per time sums them right.
    """

    def __init__(self, export_dir: Path | str) -> None:
        self.dir = Path(export_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.files = 0
        self.errors = 0

    def __call__(self, t: WindowTable) -> None:
        path = self.dir / f"{t.table}_{t.time}.sql"
        n = 1
        while path.exists() and n < _MAX_PARTS:  # the same window again (cut by a restart): never overwrite
            n += 1
            path = self.dir / f"{t.table}_{t.time}.{n}.sql"
        tmp = self.dir / f".{path.name}.tmp"
        try:
            tmp.write_text(sql_text(t))
            os.replace(tmp, path)
            self.files += 1
        except OSError as exc:
            self.errors += 1
            log.error("cannot write %s: %s (window lost for the .sql export)", path, exc)

    def stats(self) -> dict[str, int]:
        return {"sql_files": self.files, "sql_file_errors": self.errors}
