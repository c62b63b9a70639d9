"""Queries over the flow archive with DuckDB: flow listings and top-N, bounded in rows and time.

The files come from `archive_files` (pruned by their time partitions), the filter from
`filter_to_sql` (the collector's language), the keys of ``--top`` from the windows'
field names (`parse_field`). DuckDB runs embedded, in this process; `QueryLimits` stops a
query that runs too long (``interrupt`` from a timer) and caps the rows returned.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from appliance.collector.fields import FieldError, FieldSpec, KeyKind, parse_field
from appliance.collector.filter import IPLists, filter_to_sql
from appliance.collector.query._files import QueryError, archive_files

__all__ = ["ArchiveQuery", "QueryLimits", "TopResult", "MEASURES"]

MEASURES = ("bytes", "packets", "flows")
_ZERO6 = "from_hex('" + "0" * 32 + "')"


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Bounds of one query: rows returned, seconds of run time (0 = none), DuckDB threads/memory."""

    max_rows: int = 0
    timeout_s: float = 0.0
    threads: int = 0
    memory: str = ""


@dataclass(slots=True)
class TopResult:
    """``--top``: the key columns' names, the rows (keys then bytes, packets, flows), the totals."""

    keys: list[str]
    rows: list[dict[str, Any]]
    totals: dict[str, int]
    files: int = 0
    specs: list[FieldSpec] = field(default_factory=list)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ArchiveQuery:
    """One archive directory and the IP lists filters may name.

    Args:
        root: the archive directory (``appliance=…`` folders below it).
        iplists: IP lists for filters (None = none).
        limits: row and time bounds applied to every query.
        appliances: only these appliances (None = all of the tree).
    """

    def __init__(self, root: Path, iplists: IPLists | None = None, limits: QueryLimits = QueryLimits(),
                 appliances: list[str] | None = None) -> None:
        self.root = Path(root)
        self.iplists = iplists or IPLists.empty()
        self.limits = limits
        self.appliances = appliances
        self.progress = False
        self._complete: set[str] = set()

    # ---- the two queries -----------------------------------------------------------------

    def flows(self, filter_text: str = "", since_ns: int | None = None, until_ns: int | None = None,
              limit: int = 100) -> pa.Table:
        """Matching flows, newest first (by receive time), at most `limit` (0 = all, within limits).

        Raises:
            FilterError: a bad filter (with its caret).
            QueryError: a missing archive, a query over its time limit.
        """
        files = archive_files(self.root, since_ns, until_ns, self.appliances)
        limit = self._cap(limit)
        if not files:
            return pa.table({})
        with self._connect() as con:
            source, columns = self._source(con, files, positions=True)
            columns -= {"filename", "file_row_number"}
            where = self._where(filter_text, columns, since_ns, until_ns)
            # ties in receive time (one datagram's flows) in reverse arrival order: a stable answer
            sql = (f"SELECT * EXCLUDE (filename, file_row_number) FROM {source} WHERE {where} "
                   "ORDER BY recv_time_ns DESC, filename DESC, file_row_number DESC")
            if limit:
                sql += f" LIMIT {limit}"
            return self._run(con, sql)

    def top(self, keys: Sequence[str], by: str = "bytes", filter_text: str = "", since_ns: int | None = None,
            until_ns: int | None = None, limit: int = 10) -> TopResult:
        """Bytes, packets and flows per key (window field names: ``src host``, ``dst port``…),
        the `limit` largest by `by`, plus the totals over all matching flows.

        Raises:
            QueryError: an unknown key or measure; FilterError: a bad filter.
        """
        if by not in MEASURES:
            raise QueryError(f"--by {by!r}: choose bytes, packets or flows")
        specs = [self._key_spec(k) for k in keys]
        if not specs:
            raise QueryError("--top needs at least one field, e.g. --top 'src host'")
        files = archive_files(self.root, since_ns, until_ns, self.appliances)
        limit = self._cap(limit)
        names = [s.column for s in specs]
        empty = TopResult(names, [], {"bytes": 0, "packets": 0, "flows": 0}, 0, specs)
        if not files:
            return empty
        with self._connect() as con:
            source, columns = self._source(con, files)
            where = self._where(filter_text, columns, since_ns, until_ns)
            exprs: list[str] = []
            aliases: list[str] = []
            for s in specs:
                for e in self._key_sql(s, columns):
                    exprs.append(f"{e} AS k{len(aliases)}")
                    aliases.append(f"k{len(aliases)}")
            bytes_, packets = (f"COALESCE({_ident(c)}, 0)" if c in columns else "0" for c in ("bytes", "packets"))
            grouped = (f"SELECT {', '.join(exprs)}, SUM({bytes_})::DECIMAL(38, 0) AS bytes, "
                       f"SUM({packets})::DECIMAL(38, 0) AS packets, COUNT(*) AS flows "
                       f"FROM {source} WHERE {where} GROUP BY ALL")
            order = ", ".join([f"{by} DESC"] + aliases)
            sql = (f"WITH g AS ({grouped}) SELECT *, SUM(bytes) OVER ()::DECIMAL(38, 0) AS t_bytes, "
                   f"SUM(packets) OVER ()::DECIMAL(38, 0) AS t_packets, SUM(flows) OVER () AS t_flows "
                   f"FROM g ORDER BY {order}")
            if limit:
                sql += f" LIMIT {limit}"
            table = self._run(con, sql)
        if table.num_rows == 0:
            empty.files = len(files)
            return empty
        data = table.to_pydict()
        totals = {m: int(data[f"t_{m}"][0]) for m in MEASURES}
        rows = []
        for i in range(table.num_rows):
            row: dict[str, Any] = {}
            j = 0
            for s in specs:
                n = len(self._key_sql(s, None))
                row[s.column] = [data[f"k{j + k}"][i] for k in range(n)]
                j += n
            for m in MEASURES:
                row[m] = int(data[m][i])
            rows.append(row)
        return TopResult(names, rows, totals, len(files), specs)

    # ---- pieces ----------------------------------------------------------------------------

    def _cap(self, limit: int) -> int:
        m = self.limits.max_rows
        if m and (limit <= 0 or limit > m):
            return m
        return max(0, limit)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        if self.limits.threads:
            con.execute(f"SET threads = {int(self.limits.threads)}")
        if self.limits.memory:
            con.execute("SET memory_limit = ?", [self.limits.memory])
        if self.progress:  # DuckDB's own bar, on stderr, once a query has run for a second
            con.execute("SET enable_progress_bar = true")
            con.execute("SET enable_progress_bar_print = true")
            con.execute("SET progress_bar_time = 1000")
        return con

    def _source(self, con: duckdb.DuckDBPyConnection, files: list[Path],
                positions: bool = False) -> tuple[str, set[str]]:
        """The read_parquet() of the files and the union of their columns (`positions`: with each
        row's file name and row number). Sets `_complete`: the columns every file has."""
        listing = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
        extra = ", filename = true, file_row_number = true" if positions else ""
        source = f"read_parquet({listing}, hive_partitioning = true, union_by_name = true{extra})"
        columns = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        self._complete = {r[0] for r in con.execute(
            f"SELECT name FROM parquet_schema({listing}) GROUP BY name "
            f"HAVING count(DISTINCT file_name) = {len(files)}").fetchall()}
        return source, columns

    def _where(self, filter_text: str, columns: set[str], since_ns: int | None, until_ns: int | None) -> str:
        parts = [filter_to_sql(filter_text, self.iplists, "filter", columns, self._complete)]
        if since_ns is not None:
            parts.append(f"recv_time_ns >= {int(since_ns)}")
        if until_ns is not None:
            parts.append(f"recv_time_ns < {int(until_ns)}")
        return " AND ".join(parts)

    def _run(self, con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
        timer = None
        fired = threading.Event()
        if self.limits.timeout_s:

            def stop() -> None:
                fired.set()
                con.interrupt()

            timer = threading.Timer(self.limits.timeout_s, stop)
            timer.daemon = True
            timer.start()
        try:
            return con.execute(sql).fetch_arrow_table()
        except duckdb.InterruptException:
            raise QueryError(f"the query ran longer than {self.limits.timeout_s:g} s and was stopped; "
                             "narrow the time range or the filter") from None
        except duckdb.Error as exc:
            if fired.is_set():
                raise QueryError(f"the query ran longer than {self.limits.timeout_s:g} s and was stopped; "
                                 "narrow the time range or the filter") from None
            raise QueryError(f"archive query failed: {exc}") from None
        finally:
            if timer is not None:
                timer.cancel()

    @staticmethod
    def _key_spec(text: str) -> FieldSpec:
        try:
            spec = parse_field(text)
        except FieldError as exc:
            raise QueryError(f"--top {text!r}: {exc}") from None
        if spec.aggregate:
            raise QueryError(f"--top {text!r} is a counter; sort by it with --by bytes|packets|flows")
        if spec.func is not None:
            raise QueryError(f"--top {text!r}: functions are not available in archive queries yet; "
                             "use the fields themselves")
        return spec

    @staticmethod
    def _key_sql(spec: FieldSpec, columns: set[str] | None) -> list[str]:
        """SQL values of one key; IP_ANY is two (the IPv6 column when set, else the IPv4 one)."""

        def col(name: str, zero: str = "0") -> str:
            if columns is not None and name not in columns:
                return zero
            return f"COALESCE({_ident(name)}, {zero})"

        assert spec.source is not None
        if spec.kind == KeyKind.IP_ANY:
            assert spec.source6 is not None
            v6 = col(spec.source6, _ZERO6)
            return [f"CASE WHEN {v6} <> {_ZERO6} THEN {v6} END", f"CASE WHEN {v6} <> {_ZERO6} THEN NULL "
                    f"ELSE {col(spec.source)} END"]
        if spec.kind == KeyKind.IPV6:
            return [col(spec.source, _ZERO6)]
        if spec.kind == KeyKind.TEXT:
            return [col(spec.source, "''")]
        value = col(spec.source)
        for alt in spec.alternatives:
            value = f"(CASE WHEN {value} <> 0 THEN {value} ELSE {col(alt)} END)"
        return [value]
