"""The live API: HTTP JSON (``/api/v1/...``) and Prometheus ``/metrics`` from the collector.

The server runs in background threads (stdlib ``ThreadingHTTPServer``); every request reads
the latest `Snapshot` that the collector's thread published (about once a second), so
clients never slow down decoding. docs/api.md documents every endpoint with examples;
``/api/v1/schema`` serves the JSON schemas.

Bounded: every error (400, 404, 405, 414, 500, 501, 503) is a JSON error document; at most
`MAX_CONNECTIONS` connections are served at once (more get 503 and are closed without a thread);
a connection idle for `IDLE_TIMEOUT_S` is closed; request lines longer than `MAX_URL` are
refused (414); request log lines are cut to `MAX_LOG_TEXT` characters.

Example:
    >>> pipeline = Pipeline(cfg, runtime, api=ApiSettings(address=("127.0.0.1", 8787)))
    >>> pipeline.start_api()   # serves until pipeline.close()
    $ curl -s 127.0.0.1:8787/api/v1/status | jq .status.rates
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from appliance import MirrorflowError
from appliance.collector.api.archive import ARCHIVE_ENDPOINTS, ArchiveApi, ArchiveApiError
from appliance.collector.api.flowtail import matching_records, tail_records
from appliance.collector.api.livestate import API_VERSION, LiveState, Snapshot
from appliance.collector.api.metrics import CONTENT_TYPE, render_metrics
from appliance.collector.api.schema import SCHEMAS
from appliance.collector.filter import Filter, FilterError, compile_filter

__all__ = ["ApiSettings", "ApiAddressError", "LiveApi", "parse_api_address", "settings_from_config",
           "DEFAULT_API", "DEFAULT_PROBE_STATS"]

log = logging.getLogger("mirrorflow.api")

DEFAULT_API = "127.0.0.1:8787"
DEFAULT_PROBE_STATS = Path("/run/mirrorflow/probe/stats.json")
DEFAULT_FLOWS = 1000
MAX_FLOWS_LIMIT = 10_000
MAX_FILTER_TEXT = 4096
FILTER_CACHE = 64  # compiled filters kept (a TUI asks for the same one every second)
MAX_CONNECTIONS = 64  # connections served at once (each one a thread); more get 503
IDLE_TIMEOUT_S = 10.0  # a connection that sends nothing for this long is closed
MAX_URL = 8192  # longest request target (the filter in it is at most MAX_FILTER_TEXT)
MAX_LOG_TEXT = 200  # characters of a request line in the log

ENDPOINTS = {
    "/api/v1/status": "collector health, uptime, totals and rates (1 s / 1 min / 5 min)",
    "/api/v1/exporters": "every exporter (routers and the probe): rates, sampling, sequence gaps, errors",
    "/api/v1/objects": "monitoring objects with their current bps / pps / flows/s",
    "/api/v1/windows": "every fixed window with its last exported table (top-N and the 'other' row)",
    "/api/v1/windows/{object}/{window}": "one window",
    "/api/v1/flows?object=NAME&filter=EXPR&limit=N":
        "the most recent flows of an object (all flows without object), those matching EXPR if given",
    "/api/v1/mavg": "moving averages: value, threshold, level and state per key",
    "/api/v1/alerts": "active alerts and the ones that ended recently",
    "/api/v1/probe": "the probe's statistics (from its stats.json)",
    "/api/v1/schema": "JSON schemas of every response",
    "/metrics": "Prometheus text exposition",
}
ENDPOINTS.update(ARCHIVE_ENDPOINTS)  # with --archive (404 without)


class ApiAddressError(MirrorflowError):
    """An ``api`` setting that is not ``ADDR:PORT``, ``PORT`` or ``off``."""


def parse_api_address(text: str | int | None) -> tuple[str, int] | None:
    """``127.0.0.1:8787``, ``[::1]:8787``, ``8787`` (on 127.0.0.1) or ``off`` / "" (None).

    Raises:
        ApiAddressError: anything else.
    """
    if text is None:
        return None
    s = str(text).strip()
    if s.lower() in ("", "off", "none", "no", "false", "0"):
        return None
    host, port = "127.0.0.1", s
    if s.startswith("["):
        end = s.find("]:")
        if end < 0:
            raise ApiAddressError(f"api {s!r}: write [IPv6]:PORT, e.g. [::1]:8787")
        host, port = s[1:end], s[end + 2 :]
    elif ":" in s:
        host, port = s.rsplit(":", 1)
    try:
        p = int(port)
    except ValueError:
        raise ApiAddressError(f"api {s!r}: expected ADDR:PORT (127.0.0.1:8787), PORT or off") from None
    if not 0 <= p < 65536:
        raise ApiAddressError(f"api {s!r}: port {p} is out of range 0..65535")
    return host, p


@dataclass(slots=True)
class ApiSettings:
    """Where the API listens and what it serves (config keys in brackets).

    Attributes:
        address: (host, port) [``api``]; None: no HTTP server (the state is still kept).
        probe_stats: the probe's stats.json [``probe-stats``].
        probe_addresses: exporter addresses shown as the probe [``probe-address``].
        flows: records in each flow tail [``api-flows``].
        flows_interval_s: least time between two captures into a tail (0: every batch).
        interval_s: how often the collector's thread publishes a snapshot.
        max_connections: connections served at once; more are answered 503 and closed.
        idle_timeout_s: a connection silent this long is closed (keep-alive too).
    """

    address: tuple[str, int] | None = ("127.0.0.1", 8787)
    probe_stats: Path | None = DEFAULT_PROBE_STATS
    probe_addresses: tuple[str, ...] = ("127.0.0.1", "::1")
    flows: int = DEFAULT_FLOWS
    flows_interval_s: float = 0.1
    interval_s: float = 1.0
    max_connections: int = MAX_CONNECTIONS
    idle_timeout_s: float = IDLE_TIMEOUT_S


def settings_from_config(raw: dict[str, Any], api: str | None = None, probe_stats: Path | None = None,
                         default_api: str = DEFAULT_API) -> ApiSettings:
    """Settings from the collector config's keys, overridden by ``--api`` / ``--probe-stats``."""
    text = api if api is not None else raw.get("api", default_api)
    st = ApiSettings(address=parse_api_address(text))
    ps = probe_stats if probe_stats is not None else raw.get("probe-stats")
    if ps is not None:
        st.probe_stats = Path(ps) if str(ps) not in ("", "off", "none") else None
    addrs = raw.get("probe-address")
    if addrs is not None:
        st.probe_addresses = tuple([addrs] if isinstance(addrs, str) else addrs)
    if "api-flows" in raw:
        n = raw["api-flows"]
        if not isinstance(n, int) or n < 0:
            raise ApiAddressError("api-flows must be a non-negative integer (records kept per object)")
        st.flows = n
    return st


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


def _envelope(snap: Snapshot, **payload: Any) -> dict[str, Any]:
    return {"api_version": API_VERSION, "snapshot": snap.meta, **payload}


def route(snap: Snapshot, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
    """The JSON document for a GET of ``path`` (no I/O: tests call it directly).

    Raises:
        NotFound, BadRequest: with the message for the client.
    """
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    if parts in ([], ["api"], ["api", "v1"]):
        return {"api_version": API_VERSION, "endpoints": ENDPOINTS}
    if parts[:2] != ["api", "v1"] or len(parts) < 3:
        raise NotFound(f"no endpoint {path!r}: see / for the list")
    name, rest = parts[2], parts[3:]
    if name == "status" and not rest:
        return _envelope(snap, status=snap.status)
    if name == "exporters" and not rest:
        return _envelope(snap, exporters=snap.exporters, probe=snap.probe)
    if name == "objects" and not rest:
        return _envelope(snap, objects=snap.objects)
    if name == "windows" and not rest:
        return _envelope(snap, windows=snap.windows)
    if name == "windows" and len(rest) == 2:
        for w in snap.windows:
            if w["object"] == rest[0] and w["window"] == rest[1]:
                return _envelope(snap, window=w)
        if not any(o["name"] == rest[0] for o in snap.objects):
            raise NotFound(f"no monitoring object {rest[0]!r}: see /api/v1/objects")
        raise NotFound(f"monitoring object {rest[0]!r} has no window {rest[1]!r}: see /api/v1/windows")
    if name == "flows" and not rest:
        return _flows(snap, query)
    if name == "mavg" and not rest:
        return _envelope(snap, mavg=snap.mavg)
    if name == "alerts" and not rest:
        return _envelope(snap, active=snap.alerts.get("active", []), past=snap.alerts.get("past", []))
    if name == "probe" and not rest:
        return _envelope(snap, probe=snap.probe)
    if name == "schema" and not rest:
        return {"api_version": API_VERSION, "schemas": SCHEMAS}
    raise NotFound(f"no endpoint {path!r}: see / for the list")


class _FilterCache:
    """Compiled filters by text, the least recently used dropped beyond ``size``.

    Evaluation holds the lock: a compiled filter keeps per-call state (``mfreq()``'s
    frequency map, the ``within`` mask) and the server answers from several threads.
    """

    def __init__(self, size: int = FILTER_CACHE) -> None:
        self.size = size
        self.lock = threading.Lock()
        self._filters: OrderedDict[str, Filter] = OrderedDict()
        self._iplists: Any = None

    def get(self, text: str, iplists: Any) -> Filter:
        """The compiled ``text`` (raises `FilterError`); call with the lock held."""
        if iplists is not self._iplists:  # reloaded: names may mean other addresses now
            self._filters.clear()
            self._iplists = iplists
        flt = self._filters.get(text)
        if flt is None:
            flt = compile_filter(text, iplists, source="filter")
            self._filters[text] = flt
            while len(self._filters) > self.size:
                self._filters.popitem(last=False)
        else:
            self._filters.move_to_end(text)
        return flt


_filters = _FilterCache()


def _flows(snap: Snapshot, query: dict[str, list[str]]) -> dict[str, Any]:
    unknown = set(query) - {"object", "limit", "filter", "pretty"}
    if unknown:
        raise BadRequest(f"unknown parameter(s) {', '.join(sorted(unknown))}: use object=NAME&filter=EXPR&limit=N")
    obj = query.get("object", [None])[-1]
    text = query.get("filter", [None])[-1]
    try:
        limit = int(query.get("limit", ["100"])[-1])
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    if not 1 <= limit <= MAX_FLOWS_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_FLOWS_LIMIT}")
    if text is not None and len(text) > MAX_FILTER_TEXT:
        raise BadRequest(f"filter is longer than {MAX_FILTER_TEXT} characters")
    if obj is None:
        chunks = snap.all_flows
    else:
        if not any(o["name"] == obj for o in snap.objects):
            raise NotFound(f"no monitoring object {obj!r}: see /api/v1/objects")
        chunks = snap.flows.get(obj, ())
    offered = next((o["flows"] for o in snap.objects if o["name"] == obj), None) if obj else \
        snap.status.get("totals", {}).get("records", 0)
    if text is None or not text.strip():
        recs = tail_records(chunks, limit)
    else:
        with _filters.lock:
            try:
                flt = _filters.get(text, snap.iplists)
            except FilterError as exc:
                raise BadRequest(f"bad filter: {exc}") from None
            recs = matching_records(chunks, limit, flt.evaluate, snap.flows_kept)
    return _envelope(snap, object=obj, filter=text, limit=limit, count=len(recs), offered=offered or 0, flows=recs)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mirrorflow"
    protocol_version = "HTTP/1.1"

    timeout = IDLE_TIMEOUT_S  # socket timeout: an idle (or slow) client is disconnected

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout_s
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        cut = tuple(a if not isinstance(a, str) or len(a) <= MAX_LOG_TEXT else a[:MAX_LOG_TEXT] + "…" for a in args)
        log.debug("%s " + format, self.address_string(), *cut)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's errors (bad request line, 414, 501, ...) as JSON documents like ours."""
        short, _long = self.responses.get(code, ("error", ""))
        text = message or short
        if code == 414:
            text = f"the request line is longer than {MAX_URL} characters"
        self.close_connection = True
        self._error(code, text, head=getattr(self, "command", None) == "HEAD", close=True)

    def _send(self, status: int, body: bytes, ctype: str, head: bool = False, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, message: str, head: bool = False, close: bool = False) -> None:
        self._send(status, error_document(status, message), "application/json", head, close)

    def do_GET(self, head: bool = False) -> None:
        if len(self.path) > MAX_URL:
            self.send_error(414)
            return
        url = urlsplit(self.path)
        snap = self.server.state.snapshot
        try:
            if url.path.rstrip("/") == "/metrics":
                self._send(200, render_metrics(snap).encode(), CONTENT_TYPE, head)
                return
            query = parse_qs(url.query, keep_blank_values=True)
            if url.path.startswith("/api/v1/archive/"):
                if self.server.archive is None:
                    raise NotFound("no flow archive: start the collector with --archive DIR (docs/archive.md)")
                doc = self.server.archive.handle(url.path, query, snap.iplists)
            else:
                doc = route(snap, url.path, query)
        except NotFound as exc:
            self._error(404, str(exc), head)
            return
        except ArchiveApiError as exc:
            self._error(exc.status, str(exc), head)
            return
        except BadRequest as exc:
            self._error(400, str(exc), head)
            return
        except Exception as exc:  # a bug here must answer, not hang the client
            log.exception("live API: %s failed", self.path[:MAX_LOG_TEXT])
            self._error(500, f"internal error: {type(exc).__name__}: {exc}", head)
            return
        pretty = "pretty" in query
        text = json.dumps(doc, indent=1 if pretty else None, separators=None if pretty else (",", ":"))
        self._send(200, (text + "\n").encode(), "application/json", head)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def _method_not_allowed(self) -> None:
        self._error(405, f"{self.command} is not supported: the API is read-only (GET)")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _method_not_allowed  # noqa: N815


def error_document(status: int, message: str) -> bytes:
    """The body of every error the API answers: ``{"api_version", "error": {"status", "message"}}``."""
    return (json.dumps({"api_version": API_VERSION, "error": {"status": status, "message": message}}) + "\n").encode()


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
         b"Content-Length: %d\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    state: LiveState
    archive: ArchiveApi | None = None

    def __init__(self, address: tuple[str, int], state: LiveState, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.state = state
        self.idle_timeout_s = idle_timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        #: connections answered 503 because every slot was taken
        self.refused_connections = 0
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, but never more than `max_connections` at once."""
        if not self._slots.acquire(blocking=False):
            self.refused_connections += 1
            body = error_document(503, f"more than {self.max_connections} connections at once; retry later")
            try:
                request.setblocking(False)
                request.send(_BUSY % len(body) + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class LiveApi:
    """The HTTP server that serves a collector's live state.

    Args:
        state: the `LiveState` the pipeline feeds.
        settings: the address to listen on (None: no server, snapshots only).
    """

    def __init__(self, state: LiveState, settings: ApiSettings | None = None) -> None:
        self.settings = settings or ApiSettings()
        self.state = state
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: the archive endpoints (the pipeline sets it when the collector writes an archive)
        self.archive: ArchiveApi | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where it listens (the real port when 0 was asked for)."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str | None:
        a = self.address
        if a is None:
            return None
        return f"http://[{a[0]}]:{a[1]}" if ":" in a[0] else f"http://{a[0]}:{a[1]}"

    def start(self) -> None:
        """Publish a first snapshot and serve in a daemon thread.

        Raises:
            OSError: the address cannot be bound (in use, not local).
        """
        self.state.publish()
        if self.settings.address is None:
            return
        host, _port = self.settings.address
        if host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("live API on %s: it has no authentication; keep it on 127.0.0.1 and use SSH", host)
        self._server = _Server(self.settings.address, self.state, self.settings.max_connections,
                               self.settings.idle_timeout_s)
        self._server.archive = self.archive
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mirrorflow-api", daemon=True)
        self._thread.start()
        log.info("live API on %s (docs/api.md; Prometheus: %s/metrics)", self.url, self.url)

    def publish(self) -> Snapshot:
        return self.state.publish()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
