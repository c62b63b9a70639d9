"""The shared fixtures themselves: throwaway PostgreSQL and namespaces joined by veth pairs."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import psycopg
import pytest

from tests.conftest import _remove_leftovers

if TYPE_CHECKING:
    from tests.conftest import NetnsFactory, PostgresServer


def _query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.postgres
def test_postgres_answers_a_query(postgres_server: PostgresServer) -> None:
    assert _query(postgres_server.dsn, "select 1+1") == [(2,)]
    assert postgres_server.dsn_for("postgres") == postgres_server.dsn
    assert f"port={postgres_server.port}" in postgres_server.dsn


@pytest.mark.postgres
def test_postgres_keeps_committed_rows_across_kill_and_start(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (42)")

    postgres_server.kill()
    assert not postgres_server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2).close()

    postgres_server.start()
    assert postgres_server.running
    assert _query(dsn, "select 1+1") == [(2,)]
    assert _query(dsn, "select x from t") == [(42,)]


@pytest.mark.postgres
def test_postgres_stop_then_start(postgres_server: PostgresServer) -> None:
    postgres_server.stop()
    postgres_server.stop()  # stopping a stopped server is a no-op
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_server.dsn, connect_timeout=2).close()
    postgres_server.start()
    postgres_server.start()  # and so is starting a running one
    assert _query(postgres_server.dsn, "select 1+1") == [(2,)]


@pytest.mark.postgres
def test_postgres_db_is_a_fresh_database(postgres_db: str) -> None:
    assert _query(postgres_db, "select count(*) from pg_tables where schemaname = 'public'") == [
        (0,)
    ]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _link_exists(name: str, netns: str | None = None) -> bool:
    cmd = (
        ["ip", "link", "show", "dev", name]
        if netns is None
        else ["ip", "-n", netns, "link", "show", "dev", name]
    )
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def _ping(nets: NetnsFactory, netns: str | None, address: str) -> None:
    proc = nets.run(netns, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", address, timeout=15)
    assert proc.returncode == 0, f"ping {address} from {netns}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.root
@pytest.mark.netns
def test_veth_pair_joins_two_namespaces_and_cleanup_removes_it(netns_factory: NetnsFactory) -> None:
    with netns_factory.scoped() as nets:
        ns_a, ns_b = nets.namespace(), nets.namespace()
        pair = nets.veth_pair(ns_a, ns_b)
        assert (pair.a.netns, pair.b.netns) == (ns_a, ns_b)
        assert all(len(end.name) <= 15 and end.name.startswith("mft") for end in (pair.a, pair.b))
        assert _link_exists(pair.a.name, ns_a) and _link_exists(pair.b.name, ns_b)
        assert not _link_exists(pair.a.name)  # moved out of the root namespace
        for src, dst in ((pair.a, pair.b), (pair.b, pair.a)):
            _ping(nets, src.netns, dst.ipv4)
            _ping(nets, src.netns, dst.ipv6)

    assert {ns_a, ns_b}.isdisjoint(_namespaces())
    assert not _link_exists(pair.a.name) and not _link_exists(pair.b.name)


@pytest.mark.root
@pytest.mark.netns
def test_veth_end_can_stay_in_the_root_namespace(netns: NetnsFactory) -> None:
    inner = netns.namespace()
    pair = netns.veth_pair(None, inner)
    assert _link_exists(pair.a.name) and _link_exists(pair.b.name, inner)
    _ping(netns, inner, pair.a.ipv4)
    _ping(netns, None, pair.b.ipv6)


@pytest.mark.root
@pytest.mark.netns
def test_leftovers_of_a_dead_run_are_removed_and_a_live_runs_kept(
    netns_factory: NetnsFactory,
) -> None:
    dead = subprocess.Popen(["true"])  # its pid stands for a test run that crashed
    dead.wait()
    stale_ns = f"mft{dead.pid:06x}n9999"
    stale_link = f"mft{dead.pid:06x}v9999a"
    live_ns = f"mft{os.getpid():06x}n9998"
    try:
        subprocess.run(["ip", "netns", "add", stale_ns], check=True)
        subprocess.run(["ip", "netns", "add", live_ns], check=True)
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                stale_link,
                "type",
                "veth",
                "peer",
                "name",
                stale_link[:-1] + "b",
            ],
            check=True,
        )
        _remove_leftovers()
        assert stale_ns not in _namespaces()
        assert not _link_exists(stale_link)
        assert live_ns in _namespaces()
    finally:
        for name in (stale_ns, live_ns):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", stale_link], capture_output=True, check=False)
