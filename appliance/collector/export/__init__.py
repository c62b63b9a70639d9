"""Export: closed windows to PostgreSQL (spool + COPY, exactly once) and to .sql files."""

from __future__ import annotations

from appliance.collector.export.postgres import BOOKKEEPING_TABLE, LoadResult, PgExporter, PgLoader
from appliance.collector.export.spool import DEFAULT_SPOOL, Spool, SpooledWindow, read_spooled
from appliance.collector.export.sqlfile import SqlFileWriter, copy_rows, create_table_sql, quote_ident, sql_text

__all__ = ["BOOKKEEPING_TABLE", "LoadResult", "PgExporter", "PgLoader", "DEFAULT_SPOOL", "Spool", "SpooledWindow",
           "read_spooled", "SqlFileWriter", "copy_rows", "create_table_sql", "quote_ident", "sql_text"]
