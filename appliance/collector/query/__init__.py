"""Queries over the flow archive (`appliance.collector.export.archive`): ``mirrorflow flows`` and
the API's ``/api/v1/archive/*``.

Public API::

    q = ArchiveQuery(Path("/var/lib/mirrorflow/archive"), IPLists.load(dir), QueryLimits(max_rows=10_000))
    table = q.flows("net 10.0.0.0/8 and dst port 22", since_ns=parse_time("-1h"))   # pyarrow, newest first
    for rec in flow_records(table): ...            # decode --format jsonl names
    top = q.top(["src host"], by="bytes", limit=10)  # rows, totals
"""

from __future__ import annotations

from appliance.collector.query._engine import MEASURES, ArchiveQuery, QueryLimits, TopResult
from appliance.collector.query._files import QueryError, archive_files, parse_time
from appliance.collector.query._render import flow_records, top_records

__all__ = ["ArchiveQuery", "QueryLimits", "TopResult", "MEASURES", "QueryError", "archive_files", "parse_time",
           "flow_records", "top_records"]
