"""PostgreSQL export against a real throwaway server: types, index, rows, crashes, exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.collector.config import WindowSpec
from appliance.collector.export.postgres import BOOKKEEPING_TABLE, PgExporter, PgLoader
from appliance.collector.export.spool import Spool, read_spooled
from appliance.collector.fields import Column, parse_field
from appliance.collector.monitoring import FixedWindow, WindowTable
from tests.unit.test_windows import NS, make_batch

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres


def window_table(seed: int = 1, limit: int = 5) -> WindowTable:
    rng = np.random.default_rng(seed)
    spec = WindowSpec("top", tuple(parse_field(f) for f in
                                   ["octets desc", "src host", "dst port", "src mac", "packets", "flows"]),
                      time=30, limit=limit)
    w = FixedWindow(spec, "mo_top", "mo")
    b = make_batch(rng, 2000, 1_700_000_000 * NS, span_s=1)
    w.add(b, np.arange(b.n), b["recv_time_ns"] // np.uint64(30 * NS))
    (t,) = w.close()
    return t


def small_table(i: int, table: str = "lab_flows") -> WindowTable:
    """Window i of a 1-second window with i % 5 + 1 rows."""
    rows = [(f"10.0.0.{k}", i * 100 + k) for k in range(i % 5 + 1)]
    return WindowTable(table, 1_700_000_000 + i, 1, [Column("src_host", "INET"), Column("octets", "BIGINT")], rows)


def fetch(dsn: str, query: str, *args: object) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, args).fetchall()


def test_tables_types_index_rows(postgres_db: str, tmp_path: Path) -> None:
    t = window_table()
    exp = PgExporter(postgres_db, Spool(tmp_path / "spool"), retry_min_s=0.05)
    try:
        exp(t)
        assert exp.wait_idle(20)
    finally:
        exp.close()
    types = fetch(postgres_db, "select column_name, data_type from information_schema.columns "
                  "where table_name = 'mo_top' order by ordinal_position")
    assert types == [("time", "timestamp with time zone"), ("octets", "bigint"), ("src_host", "inet"),
                     ("dst_port", "bigint"), ("src_mac", "macaddr"), ("packets", "bigint"), ("flows", "bigint")]
    idx = fetch(postgres_db, "select indexdef from pg_indexes where tablename = 'mo_top'")
    assert idx == [('CREATE INDEX mo_top_idx ON public.mo_top USING btree ("time")',)]
    got = fetch(postgres_db, "select extract(epoch from time)::bigint, octets, host(src_host), dst_port, "
                "src_mac::text, packets, flows from mo_top")
    want = [(t.time, *row) for row in t.rows]
    assert sorted(got, key=repr) == sorted(want, key=repr)
    # the remainder row: NULL keys, summed aggregates
    assert len(t.rows) == 6 and t.rows[-1][1:4] == (None, None, None)
    assert fetch(postgres_db, "select count(*) from mo_top where src_host is null") == [(1,)]


def test_no_index_when_create_index_false(postgres_db: str, tmp_path: Path) -> None:
    t = small_table(1, "noidx")
    t.create_index = False
    exp = PgExporter(postgres_db, Spool(tmp_path / "spool"), retry_min_s=0.05)
    try:
        exp(t)
        assert exp.wait_idle(20)
    finally:
        exp.close()
    assert fetch(postgres_db, "select count(*) from pg_indexes where tablename = 'noidx'") == [(0,)]
    assert fetch(postgres_db, "select count(*) from noidx") == [(2,)]


def check_exactly_once(dsn: str, n: int, table: str = "lab_flows") -> None:
    per_window = dict(fetch(dsn, f"select extract(epoch from time)::bigint - 1700000000, count(*) "
                              f"from {table} group by 1"))
    assert per_window == {i: i % 5 + 1 for i in range(n)}
    assert fetch(dsn, f"select count(*), count(distinct time) from {BOOKKEEPING_TABLE}") == [(n, n)]
    rows = fetch(dsn, f"select octets from {table}")
    assert len(rows) == len(set(rows))


def test_server_killed_mid_run_loses_nothing(postgres_server, postgres_db: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    exp = PgExporter(postgres_db, spool, retry_min_s=0.05, retry_max_s=0.5)
    try:
        for i in range(10):
            exp(small_table(i))
        assert exp.wait_idle(20)
        postgres_server.kill()
        for i in range(10, 30):  # the collector keeps closing windows while the database is dead
            exp(small_table(i))
        import time

        time.sleep(0.5)
        assert spool.files == 20 and exp.db_errors >= 1 and not exp.db_up
        postgres_server.start()
        for i in range(30, 40):
            exp(small_table(i))
        assert exp.wait_idle(30)
    finally:
        postgres_server.start()
        exp.close()
    check_exactly_once(postgres_db, 40)
    assert exp.loaded == 40 and exp.duplicates == 0


def test_crash_between_copy_and_commit(postgres_server, postgres_db: str, tmp_path: Path) -> None:
    """The server dies after COPY, before COMMIT: the window is loaded once, on the retry."""
    crashed: list[str] = []

    def die_once(w) -> None:
        if w.time == 1_700_000_003 and not crashed:
            postgres_server.kill()
            crashed.append(w.window_id)  # only now: the test restarts the server when it sees this

    spool = Spool(tmp_path / "spool")
    exp = PgExporter(postgres_db, spool, retry_min_s=0.05, retry_max_s=0.3,
                     loader=PgLoader(postgres_db, before_commit=die_once))
    try:
        for i in range(8):
            exp(small_table(i))
        import time

        deadline = time.monotonic() + 10
        while not crashed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert crashed
        postgres_server.start()
        assert exp.wait_idle(30)
    finally:
        postgres_server.start()
        exp.close()
    check_exactly_once(postgres_db, 8)


def test_crash_after_commit_before_unlink(postgres_db: str, tmp_path: Path) -> None:
    """The collector dies after COMMIT but before deleting the spool file: the retry skips it."""
    spool = Spool(tmp_path / "spool")
    for i in range(3):
        spool.put(small_table(i))
    first = spool.pending()[0]
    loader = PgLoader(postgres_db)
    assert loader.load(read_spooled(first)) == "loaded"  # ...and then the process died
    loader.close()
    exp = PgExporter(postgres_db, Spool(tmp_path / "spool"), retry_min_s=0.05)
    try:
        assert exp.wait_idle(20)
    finally:
        exp.close()
    assert (exp.loaded, exp.duplicates) == (2, 1)
    check_exactly_once(postgres_db, 3)


def test_fault_inside_transaction_is_rolled_back(postgres_db: str, tmp_path: Path) -> None:
    """Only the fault is mocked: an exception after COPY rolls everything back; the retry loads once."""
    faults = [1]

    def fault(w) -> None:
        if faults:
            faults.pop()
            raise RuntimeError("simulated crash between COPY and COMMIT")

    exp = PgExporter(postgres_db, Spool(tmp_path / "spool"), retry_min_s=0.05,
                     loader=PgLoader(postgres_db, before_commit=fault))
    try:
        for i in range(5):
            exp(small_table(i))
        assert exp.wait_idle(20)
    finally:
        exp.close()
    assert exp.db_errors == 1
    check_exactly_once(postgres_db, 5)


def test_db_load_command(postgres_db: str, tmp_path: Path) -> None:
    from appliance.cli import main

    spool = Spool(tmp_path / "spool")
    for i in range(4):
        spool.put(small_table(i))
    assert main(["db", "load", "--spool", str(tmp_path / "spool"), "--db", postgres_db]) == 0
    assert list((tmp_path / "spool").glob("*.win")) == []
    check_exactly_once(postgres_db, 4)
    assert main(["db", "load", "--spool", str(tmp_path / "spool"),
                 "--db", "host=127.0.0.1 port=1 connect_timeout=1"]) == 0
