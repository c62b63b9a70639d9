"""``/api/v1/archive/flows`` and ``/api/v1/archive/top``: the flow archive over HTTP.

The same queries as ``mirrorflow flows`` (`appliance.collector.query`), bounded: at most
`MAX_FLOWS` / `MAX_TOP` rows, `TIMEOUT_S` seconds (then 503), `CONCURRENT` queries at once
(more get 503), DuckDB on one thread with a memory limit so the collector keeps its CPU.
Filters name the running configuration's IP lists.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.collector.filter import FilterError, IPLists
from appliance.collector.query import ArchiveQuery, QueryError, QueryLimits, flow_records, parse_time, top_records

__all__ = ["ArchiveApi", "ArchiveApiError", "ARCHIVE_ENDPOINTS", "MAX_FLOWS", "MAX_TOP", "TIMEOUT_S"]

MAX_FLOWS = 10_000
MAX_TOP = 1000
TIMEOUT_S = 10.0
CONCURRENT = 2
MAX_TEXT = 4096

ARCHIVE_ENDPOINTS = {
    "/api/v1/archive/flows": "archived flows, newest first: filter=EXPR&since=T&until=T&limit=N (docs/archive.md)",
    "/api/v1/archive/top": "archived bytes/packets/flows per key: "
                           "top=FIELDS&by=bytes|packets|flows&filter&since&until&limit",
}


class ArchiveApiError(Exception):
    """A request the archive endpoints refuse; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ArchiveApi:
    """The archive endpoints of one collector.

    Args:
        root: the archive directory.
        limits: rows, run time, DuckDB threads and memory of every query.
    """

    root: Path
    limits: QueryLimits = QueryLimits(max_rows=MAX_FLOWS, timeout_s=TIMEOUT_S, threads=1, memory="512MB")
    concurrent: int = CONCURRENT
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.concurrent)

    def handle(self, path: str, query: dict[str, list[str]], iplists: IPLists | None) -> dict[str, Any]:
        """The JSON document for ``/api/v1/archive/{flows,top}``.

        Raises:
            ArchiveApiError: 400 bad parameters or filter, 404 unknown endpoint, 503 busy or too slow.
        """
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name not in ("flows", "top") or path.rstrip("/") not in ARCHIVE_ENDPOINTS:
            raise ArchiveApiError(404, f"no endpoint {path!r}: see / for the list")
        allowed = ({"filter", "since", "until", "limit", "appliance", "pretty"}
                   | ({"top", "by"} if name == "top" else set()))
        unknown = set(query) - allowed
        if unknown:
            raise ArchiveApiError(400, f"unknown parameter(s) {', '.join(sorted(unknown))}: use "
                                       f"{'&'.join(sorted(allowed - {'pretty'}))}")

        def one(key: str, default: str | None = None) -> str | None:
            v = query.get(key, [default])[-1]
            if v is not None and len(v) > MAX_TEXT:
                raise ArchiveApiError(400, f"{key} is longer than {MAX_TEXT} characters")
            return v

        text = one("filter", "") or ""
        cap = MAX_FLOWS if name == "flows" else MAX_TOP
        try:
            limit = int(one("limit", "100" if name == "flows" else "10") or "")
        except ValueError:
            raise ArchiveApiError(400, "limit must be an integer") from None
        if not 1 <= limit <= cap:
            raise ArchiveApiError(400, f"limit must be between 1 and {cap}")
        try:
            since = parse_time(s) if (s := one("since")) else None
            until = parse_time(u) if (u := one("until")) else None
        except QueryError as exc:
            raise ArchiveApiError(400, str(exc)) from None
        appliances = query.get("appliance") or None
        q = ArchiveQuery(self.root, iplists, self.limits, appliances)
        if not self._slots.acquire(blocking=False):
            raise ArchiveApiError(503, f"{self.concurrent} archive queries are running; retry later")
        t0 = time.monotonic()
        try:
            if name == "flows":
                recs = list(flow_records(q.flows(text, since, until, limit)))
                body: dict[str, Any] = {"count": len(recs), "flows": recs}
            else:
                keys = [k.strip() for k in (one("top", "") or "").split(",") if k.strip()]
                by = one("by", "bytes") or "bytes"
                result = q.top(keys, by, text, since, until, limit)
                body = {"top": keys, "by": by, "count": len(result.rows), "rows": top_records(result),
                        "totals": result.totals}
        except FilterError as exc:
            raise ArchiveApiError(400, f"bad filter: {exc}") from None
        except QueryError as exc:
            slow = "longer than" in str(exc)
            raise ArchiveApiError(503 if slow else 400, str(exc)) from None
        finally:
            self._slots.release()
        return {"api_version": 1, "filter": text, "since": since, "until": until, "limit": limit,
                "elapsed_s": round(time.monotonic() - t0, 3), **body}
