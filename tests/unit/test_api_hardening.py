"""The live API's HTTP server under bad requests and many connections: every error a JSON
document of one shape, bounded request logs, a connection limit and idle timeouts."""

from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.collector.api import server as api
from appliance.collector.api.livestate import API_VERSION, Snapshot
from tests.integration._live import poll


class _State:
    """What the server reads: the latest snapshot."""

    def __init__(self) -> None:
        self.snapshot = Snapshot(seq=1, time=1.0, objects=[{"name": "mo1", "flows": 0}])

    def publish(self) -> Snapshot:
        return self.snapshot


def _serve(**settings: object) -> api.LiveApi:
    live = api.LiveApi(_State(), api.ApiSettings(address=("127.0.0.1", 0), **settings))  # type: ignore[arg-type]
    live.start()
    return live


@pytest.fixture
def server() -> Iterator[api.LiveApi]:
    live = _serve()
    yield live
    live.close()


def _raw(live: api.LiveApi, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes or Content-Length says when)."""
    assert live.address is not None
    with socket.create_connection(live.address, timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body


def _error_doc(status: int, headers: dict[str, str], body: bytes) -> str:
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"api_version", "error"} and doc["api_version"] == API_VERSION
    assert set(doc["error"]) == {"status", "message"} and doc["error"]["status"] == status
    return doc["error"]["message"]


def test_every_error_is_a_json_document(server: api.LiveApi, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    def get(target: str) -> tuple[int, dict[str, str], bytes]:
        return _raw(server, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())

    status, headers, body = get("/api/v1/nothing")
    assert status == 404 and _error_doc(404, headers, body).startswith("no endpoint '/api/v1/nothing'")
    status, headers, body = get("/api/v1/flows?filter=" + "(" * 2000 + "tcp" + ")" * 2000)
    assert status == 400
    assert _error_doc(400, headers, body).startswith("bad filter: filter:1:65: '(' and 'not' nest more than 64")
    status, headers, body = get("/api/v1/flows?filter=x" + "y" * (api.MAX_URL))
    assert status == 414
    assert _error_doc(414, headers, body) == f"the request line is longer than {api.MAX_URL} characters"
    # past the stdlib's own 64 KiB limit: still JSON
    status, headers, body = get("/" + "a" * 70_000)
    assert status == 414
    assert _error_doc(414, headers, body) == f"the request line is longer than {api.MAX_URL} characters"
    status, headers, body = _raw(server,
                                 b"POST /api/v1/status HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert status == 405 and _error_doc(405, headers, body) == "POST is not supported: the API is read-only (GET)"
    status, headers, body = _raw(server, b"OPTIONS /api/v1/status HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 405
    status, headers, body = _raw(server, b"FROB / HTTP/1.1\r\n\r\n")
    assert status == 501 and _error_doc(501, headers, body) == "Unsupported method ('FROB')"
    # a one-word request line is HTTP/0.9: no status line, but the body is still the document
    with socket.create_connection(server.address, timeout=10) as s:  # type: ignore[arg-type]
        s.sendall(b"GARBAGE\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert _error_doc(400, {"content-type": "application/json"}, data) == "Bad request syntax ('GARBAGE')"

    def broken(*_args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(api, "route", broken)
    with caplog.at_level(logging.DEBUG, "mirrorflow.api"):
        status, headers, body = get("/api/v1/status?" + "q" * 5000)
    assert status == 500 and _error_doc(500, headers, body) == "internal error: ZeroDivisionError: a bug"
    # bounded request logs: no 5 KB URL in any log line
    assert caplog.records and max(len(r.getMessage()) for r in caplog.records) < 2 * api.MAX_LOG_TEXT


def test_a_bad_filter_logs_no_traceback(server: api.LiveApi, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, "mirrorflow.api"):
        status, _, _ = _raw(server, ("GET /api/v1/flows?filter=" + "(" * 4000
                                     + " HTTP/1.1\r\nConnection: close\r\n\r\n").encode())
    assert status == 400
    assert all(r.exc_info is None and r.levelno == logging.DEBUG for r in caplog.records)
    assert all(len(r.getMessage()) < 2 * api.MAX_LOG_TEXT for r in caplog.records)


def _threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def test_a_thousand_idle_connections_hold_at_most_the_limit() -> None:
    live = _serve(max_connections=16, idle_timeout_s=60.0)
    assert live.address is not None
    socks = []
    try:
        for _ in range(1000):
            s = socket.create_connection(live.address, timeout=10)
            socks.append(s)
        # every connection past the limit is answered 503 and closed by the server
        answered: dict[int, bytes] = {}
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while len(answered) < 1000 - 16 and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                s = key.fileobj
                data = b""
                while chunk := s.recv(65536):  # type: ignore[union-attr]
                    data += chunk
                answered[s.fileno()] = data  # type: ignore[union-attr]
                sel.unregister(s)
        sel.close()
        assert len(answered) == 1000 - 16
        head, _, body = next(iter(answered.values())).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert _error_doc(503, {"content-type": "application/json"}, body) == \
            "more than 16 connections at once; retry later"
        assert len(set(answered.values())) == 1
        assert _threads() == 16 and live._server is not None and live._server.refused_connections == 1000 - 16
        for s in socks:
            s.close()
        socks = []
        # the slots come back once the idle clients are gone
        assert poll(lambda: _threads() == 0, 30)
        status, _, body = _raw(live, b"GET /api/v1/status HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert status != 503
    finally:
        for s in socks:
            s.close()
        live.close()


def test_an_idle_connection_is_closed() -> None:
    live = _serve(idle_timeout_s=0.2)
    assert live.address is not None
    try:
        with socket.create_connection(live.address, timeout=30) as s:
            assert s.recv(100) == b""  # the server hangs up; the client sent nothing
        with socket.create_connection(live.address, timeout=30) as s:  # keep-alive, then silence
            s.sendall(b"GET /api/v1/objects HTTP/1.1\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 ")
        assert poll(lambda: _threads() == 0, 30)
    finally:
        live.close()


def test_database_unreachable_only_after_a_failed_attempt(tmp_path: Path) -> None:
    from appliance.collector.config import CollectorConfig, load_runtime
    from appliance.collector.export.postgres import PgExporter
    from appliance.collector.monitoring.windows import Column, WindowTable
    from appliance.collector.pipeline import Pipeline

    (tmp_path / "mo" / "all").mkdir(parents=True)
    (tmp_path / "mo" / "all" / "mo.conf").write_text('{"fwm": [{"name": "t", "fields": ["flows"]}]}')
    cfg = CollectorConfig(mo_dir=tmp_path / "mo", db=f"host={tmp_path}/nowhere dbname=x connect_timeout=1",
                          spool_dir=tmp_path / "spool")
    p = Pipeline(cfg, load_runtime(cfg), live=False, api=api.ApiSettings(address=None))
    try:
        assert p.live is not None and p.monitoring is not None
        (pg,) = [e for e in p.monitoring.monitor.exporters if isinstance(e, PgExporter)]
        status = p.live.publish().status
        assert status["health"] == "ok" and status["problems"] == []  # no attempt yet: nothing to claim
        pg(WindowTable("all_t", 60, 60, [Column("flows", "BIGINT")], [(1,)]))  # a real attempt, which fails
        assert poll(lambda: pg.db_errors, 30)
        assert "database unreachable: windows wait in the spool" in p.live.publish().status["problems"]
    finally:
        p.close()
