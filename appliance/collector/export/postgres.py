"""Export to PostgreSQL: closed windows → spool → COPY, exactly once, in a background thread.

Every closed window is first written to the spool (`Spool`), then a loader thread loads
the spool files oldest first, each in one transaction:

```
BEGIN
  create table if not exists "<mo>_<window>" (time timestamptz, ...)   -- first use
  create index if not exists "<mo>_<window>_idx" on ... (time)          -- unless create-index false
  insert into mirrorflow_loaded_windows (window_id, ...) on conflict do nothing
  -- no row inserted: the window was loaded before (crash after COMMIT): skip it
  COPY "<mo>_<window>" (time, ...) FROM STDIN
COMMIT
```

and deletes the file only after COMMIT. A crash before COMMIT leaves nothing in the
database; a crash after it leaves the window id recorded, so the retry skips the file.
A dead or slow database only delays loading: the loader retries with exponential backoff
(0.5 s … 30 s) while the collector keeps spooling. Plain SQL and COPY only (works on Citus).

A window the database refuses for good (e.g. a column type changed by hand) is moved to
``<spool>/failed/`` after a few attempts, with an error; `mirrorflow db load --spool
<spool>/failed` loads it once the table is fixed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.collector.export.spool import Spool, SpooledWindow, read_spooled
from appliance.collector.monitoring.windows import WindowTable

__all__ = ["PgLoader", "PgExporter", "LoadResult", "BOOKKEEPING_TABLE"]

log = logging.getLogger("mirrorflow.export.pg")

BOOKKEEPING_TABLE = "mirrorflow_loaded_windows"
_PERMANENT_ATTEMPTS = 3


class LoadResult:
    LOADED = "loaded"
    DUPLICATE = "duplicate"


def _connect_kwargs(dsn: str) -> dict[str, object]:
    # a server that vanished without a FIN must not hang the loader forever
    kw: dict[str, object] = {}
    for key, value in (("connect_timeout", 10), ("keepalives", 1), ("keepalives_idle", 10),
                       ("keepalives_interval", 5), ("keepalives_count", 3)):
        if f"{key}=" not in dsn:
            kw[key] = value
    return kw


class PgLoader:
    """Loads spooled windows into PostgreSQL (one connection, reopened when it breaks).

    Args:
        dsn: libpq connection string.
        before_commit: called inside the transaction after COPY (tests inject faults here).
    """

    def __init__(self, dsn: str, before_commit: Callable[[SpooledWindow], None] | None = None) -> None:
        self.dsn = dsn
        self.before_commit = before_commit
        self._conn = None
        self._known: set[tuple] = set()  # (table, columns) already created/extended on this connection

    def connect(self):
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(self.dsn, autocommit=True, **_connect_kwargs(self.dsn))
            self._known.clear()
            self._conn.execute(
                f"create table if not exists {BOOKKEEPING_TABLE} ("
                "window_id text primary key, table_name text not null, time timestamptz not null, "
                "rows bigint not null, loaded_at timestamptz not null default now())"
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def load(self, w: SpooledWindow) -> str:
        """Load one window in one transaction; `LoadResult.DUPLICATE` if it was loaded before."""
        from psycopg import sql

        conn = self.connect()
        table = sql.Identifier(w.table)
        cols = [sql.Identifier(c.name) for c in w.columns]
        with conn.transaction():
            sig = (w.table, tuple((c.name, c.sqltype) for c in w.columns), w.create_index)
            if sig not in self._known:
                defs = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(i, sql.SQL(c.sqltype)) for i, c in zip(cols, w.columns, strict=True)
                )
                conn.execute(sql.SQL("create table if not exists {} (time timestamptz, {})").format(table, defs))
                for i, c in zip(cols, w.columns, strict=True):  # fields added to the window later
                    conn.execute(sql.SQL("alter table {} add column if not exists {} {}").format(
                        table, i, sql.SQL(c.sqltype)))
                if w.create_index:
                    conn.execute(sql.SQL("create index if not exists {} on {} (time)").format(
                        sql.Identifier(w.table + "_idx"), table))
            cur = conn.execute(
                sql.SQL("insert into {} (window_id, table_name, time, rows) values (%s, %s, to_timestamp(%s), %s) "
                        "on conflict (window_id) do nothing").format(sql.Identifier(BOOKKEEPING_TABLE)),
                (w.window_id, w.table, w.time, w.rows),
            )
            if cur.rowcount == 0:
                return LoadResult.DUPLICATE
            if w.body:
                copy_sql = sql.SQL("copy {} (time, {}) from stdin").format(table, sql.SQL(", ").join(cols))
                with cur.copy(copy_sql) as copy:
                    copy.write(w.body)
            if self.before_commit is not None:
                self.before_commit(w)
        self._known.add(sig)
        return LoadResult.LOADED


def _transient(exc: BaseException) -> bool:
    import psycopg
    from psycopg import errors as E

    return isinstance(exc, psycopg.OperationalError | E.UniqueViolation | E.DeadlockDetected
                      | E.SerializationFailure | E.LockNotAvailable | E.AdminShutdown)


class PgExporter:
    """The window sink for PostgreSQL: spools each window, a thread loads the spool.

    Args:
        dsn: where the tables go.
        spool: the spool (shared with ``mirrorflow db load``).
        retry_min_s / retry_max_s: backoff bounds while the database is down.
        loader: a `PgLoader` (tests inject one with faults).
    """

    def __init__(self, dsn: str, spool: Spool, retry_min_s: float = 0.5, retry_max_s: float = 30.0,
                 loader: PgLoader | None = None, start: bool = True) -> None:
        self.dsn = dsn
        self.spool = spool
        self.loader = loader or PgLoader(dsn)
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.loaded = 0
        self.loaded_rows = 0
        self.duplicates = 0
        self.db_errors = 0
        self.failed = 0
        self.db_up = False
        self.last_error = ""
        self._attempts: dict[Path, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pg-export", daemon=True)
        self._thread.start()

    def __call__(self, t: WindowTable) -> None:
        if self.spool.put(t) is not None:
            self._wake.set()

    # ---- the loader thread ---------------------------------------------------------------

    def _run(self) -> None:
        delay = self.retry_min_s
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.drain()
                delay = self.retry_min_s
                self._wake.wait(1.0)
            except Exception as exc:
                self._note_error(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
        self.loader.close()

    def _note_error(self, exc: BaseException) -> None:
        self.db_errors += 1
        msg = f"{type(exc).__name__}: {exc}".strip()
        if self.db_up or msg != self.last_error:
            log.error("PostgreSQL export: %s; windows stay in the spool %s (%d files) and are retried",
                      msg, self.spool.path, self.spool.files)
        self.db_up = False
        self.last_error = msg
        self.loader.close()

    def drain(self, stop_when_set: bool = True) -> int:
        """Load every spooled window, oldest first; returns how many. Raises on database errors."""
        n = 0
        for path in self.spool.pending():
            if stop_when_set and self._stop.is_set():
                break
            try:
                w = read_spooled(path)
            except (OSError, ValueError) as exc:
                if isinstance(exc, FileNotFoundError):
                    continue
                self._fail(path, exc)
                continue
            try:
                result = self.loader.load(w)
            except Exception as exc:
                if _transient(exc) or self._attempts.get(path, 0) + 1 < _PERMANENT_ATTEMPTS:
                    self._attempts[path] = self._attempts.get(path, 0) + 1
                    raise
                self._fail(path, exc)
                self.loader.close()
                continue
            self._attempts.pop(path, None)
            if not self.db_up:
                log.info("PostgreSQL export: database reachable, loading %d spooled windows", self.spool.files)
                self.db_up = True
            if result == "duplicate":
                self.duplicates += 1
            else:
                self.loaded += 1
                self.loaded_rows += w.rows
            self.spool.remove(path)
            n += 1
        return n

    def _fail(self, path: Path, exc: BaseException) -> None:
        failed = self.spool.path / "failed"
        failed.mkdir(exist_ok=True)
        self.failed += 1
        self._attempts.pop(path, None)
        log.error("ALARM: PostgreSQL refuses window %s: %s; moved to %s (load it with "
                  "`mirrorflow db load --spool %s` once fixed)", path.name, exc, failed, failed)
        try:
            size = path.stat().st_size
            path.rename(failed / path.name)
            with self.spool._lock:
                self.spool.files -= 1
                self.spool.bytes -= size
        except OSError as err:
            log.error("cannot move %s to %s: %s", path, failed, err)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread after one last attempt to load what is spooled (the rest stays spooled)."""
        if self._thread is None:
            return
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while self.spool.files and self.db_up and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None
        if self.spool.files:
            log.warning("%d windows stay in the spool %s for the next start (or `mirrorflow db load`)",
                        self.spool.files, self.spool.path)

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until the spool is empty (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self.spool.files and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        return self.spool.files == 0

    def stats(self) -> dict[str, object]:
        return {**self.spool.stats(), "db_loaded_windows": self.loaded, "db_loaded_rows": self.loaded_rows,
                "db_duplicate_windows": self.duplicates, "db_errors": self.db_errors,
                "db_failed_windows": self.failed, "db_up": int(self.db_up)}
