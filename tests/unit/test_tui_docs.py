"""Recorded-style API documents for the TUI's offline tests (schema-checked, so they stay honest)."""

from __future__ import annotations

import copy
from typing import Any

from appliance.collector.api.schema import SCHEMAS, validate
from appliance.tui.client import ApiUnavailable

T = 1795411313.5  # 2026-11-22 00:41:53.5 UTC


def _rates(bps: float, pps: float, flows: float, **more: float) -> dict[str, Any]:
    one = {"bps": bps, "pps": pps, "flows": flows, **more}
    return {"1s": one, "1m": dict(one), "5m": dict(one)}


def _exporter(address: str, role: str, sampling: int, bps: float, lost: int = 0) -> dict[str, Any]:
    errors = dict.fromkeys(("short_packet", "bad_version", "bad_template"), 0)
    return {
        "address": address, "role": role, "datagrams": 68, "datagram_bytes": 200032,
        "versions": {"v5": 0, "v9": 68 if role == "router" else 0, "ipfix": 0 if role == "router" else 68},
        "records": 3979, "options_records": 0, "flows": 3979, "bytes": 49001404, "packets": 56695,
        "templates": 8, "options_templates": 0,
        "sequence": {"lost_packets": lost, "lost_flows": 0, "resets": 1},
        "pending": {"sets": 0, "decoded": 0, "expired": 0},
        "decode_errors": errors, "decode_errors_total": 0,
        "sampling": [], "sampling_rate": sampling,
        "rates": _rates(bps, bps / 1000, bps / 10000, datagrams=8.0, records=400.0, errors=0.0),
        "counters": {"packets": 68, "records": 3979},
    }


def _object(name: str, bps: float, nbytes: int) -> dict[str, Any]:
    return {"name": name, "parent": None, "filter": "", "windows": ["pairs"], "mavg": ["pps"],
            "flows": 2067, "bytes": nbytes, "packets": 52191, "rates": _rates(bps, bps / 7000, bps / 100000)}


def _alert(key: str, rate: float, **more: Any) -> dict[str, Any]:
    return {"mo": "in", "mavg": "pps", "level": "ddos", "direction": "over", "key": [key], "counter": "packets",
            "rate": rate, "threshold": 50000, "rates": [rate], "thresholds": [50000.0], "since": T - 95,
            "over_s": 95.0, "back2norm_in_s": None, "notification_file": None, "ext": [], **more}


def docs(bps: float = 639075032.3) -> dict[str, dict[str, Any]]:
    """One tick's documents: two directions, a sampled router beside the probe, an alert up."""
    meta = {"seq": 412, "time": T}
    status = {
        "version": "0.1.0", "pid": 15517, "mode": "live", "started_at": T - 412, "uptime_s": 412.4,
        "health": "ok", "problems": [], "listen": ["0.0.0.0:2055"], "rcvbuf_granted": 134217728,
        "totals": {"records": 3979, "bytes": 49001404, "packets": 56695, "datagrams": 68, "batches": 40},
        "rates": {w: {"records": 9.0, "bps": bps * 1.5, "pps": 12000.0, "datagrams": 1.0} for w in ("1s", "1m", "5m")},
        "socket_drops": 0, "truncated_datagrams": 0, "pending_sets": 0, "refused_exporter_packets": 0,
        "exporters": 2, "objects": 2,
        "config": {"generation": 1, "loaded_at": T - 412, "mo_dir": "/var/lib/mirrorflow/mo"},
        "monitoring": None, "archive": None, "probe": {"available": True, "stale": False, "age_s": 0.8},
    }
    window = {
        "object": "in", "window": "pairs", "table": "in_pairs", "time": 10, "limit": 3, "extended": False,
        "active": True, "fields": ["octets desc", "src host", "dst host"],
        "last": {"table": "in_pairs", "start": int(T) - 13, "end": int(T) - 3, "period": 10,
                 "columns": [{"name": "octets", "type": "BIGINT"}, {"name": "src_host", "type": "INET"},
                             {"name": "dst_host", "type": "INET"}],
                 "rows": [[15542535, "34.58.245.46", "10.0.0.41"], [5044697, "2001:db8::13", "2001:db8:1::29"],
                          [4346121, "78.145.151.205", "10.0.0.38"]],
                 "other": [18391266, None, None], "flows": 3979, "exported_at": T - 3},
    }
    probe = {"stats_file": "/run/mirrorflow/probe/stats.json", "available": True, "age_s": 0.8, "stale": False,
             "error": None, "stats": {"pid": 4242, "uptime_s": 12.5, "kernel": {"total": {"frames": 1200000}}}}
    top = [{"key": ["10.9.9.9"], "rates": [52000.0],
            "levels": [{"level": "ddos", "direction": "over", "thresholds": [50000.0], "raised": True}]},
           {"key": ["10.1.1.1"], "rates": [42000.0],
            "levels": [{"level": "ddos", "direction": "over", "thresholds": [50000.0], "raised": False}]},
           {"key": ["10.2.2.2"], "rates": [900.0],
            "levels": [{"level": "ddos", "direction": "over", "thresholds": [50000.0], "raised": False}]}]
    out = {
        "status": {"api_version": 1, "snapshot": meta, "status": status},
        "objects": {"api_version": 1, "snapshot": meta,
                    "objects": [_object("in", bps, 46694179), _object("out", bps / 2, 2307225)]},
        "mavg": {"api_version": 1, "snapshot": meta, "mavg": [{
            "mo": "in", "mavg": "pps", "time": 2, "fields": ["src host", "packets"], "counters": ["packets"],
            "keys": 21, "capacity": 1024, "memory_bytes": 98304, "mem_limit_bytes": 268435456,
            "refused_keys": 0, "evicted_keys": 0, "top": top, "alerts": []}]},
        "windows": {"api_version": 1, "snapshot": meta, "windows": [window]},
        "alerts": {"api_version": 1, "snapshot": meta, "active": [_alert("10.9.9.9", 52000.0)],
                   "past": [_alert("10.3.3.3", 61000.0, since=T - 600, ended_at=T - 540)]},
        "exporters": {"api_version": 1, "snapshot": meta, "probe": probe,
                      "exporters": [_exporter("192.0.2.1", "router", 10, bps * 0.9, lost=3),
                                    _exporter("127.0.0.1", "probe", 1, bps)]},
        "flows": {"api_version": 1, "snapshot": meta, "object": "in", "limit": 200, "count": 2, "offered": 2067,
                  "flows": [{"exporter": "192.0.2.1", "source_id": 0, "record_kind": "data", "version": 9,
                             "recv_time_ns": int((T - 2) * 1e9), "src_addr": "10.9.9.9", "dst_addr": "10.0.0.41",
                             "src_port": 53, "dst_port": 40000, "proto": 17, "bytes": 15000, "packets": 10,
                             "sampling_rate": 10},
                            {"exporter": "127.0.0.1", "source_id": 6, "record_kind": "data", "version": 10,
                             "recv_time_ns": int((T - 1) * 1e9), "src_addr": "2001:db8::13",
                             "dst_addr": "2001:db8:1::29", "src_port": 443, "dst_port": 51000, "proto": 6,
                             "bytes": 1500, "packets": 1, "sampling_rate": 1}]},
    }
    validate(out["flows"], SCHEMAS["/api/v1/flows"])
    for name, schema in (("status", "/api/v1/status"), ("objects", "/api/v1/objects"), ("mavg", "/api/v1/mavg"),
                         ("windows", "/api/v1/windows"), ("alerts", "/api/v1/alerts"),
                         ("exporters", "/api/v1/exporters")):
        validate(out[name], SCHEMAS[schema])
    return copy.deepcopy(out)


class Recorded:
    """An in-memory transport (httpx's mock-transport idea): serves :func:`docs` by path."""

    def __init__(self, ticks: list[dict[str, dict[str, Any]]] | None = None) -> None:
        self.ticks = ticks or [docs()]
        self.calls: list[str] = []
        self.tick = 0

    def __call__(self, path: str) -> dict[str, Any]:
        self.calls.append(path)
        name = path.removeprefix("/api/v1/").split("?")[0]
        if name not in self.ticks[0] or "object=gone" in path:
            raise ApiUnavailable(f"http://x{path}: HTTP 404: no monitoring object 'gone': see /api/v1/objects")
        doc = self.ticks[min(self.tick, len(self.ticks) - 1)][name]
        if name == "exporters":  # the last endpoint of a tick
            self.tick += 1
        return doc
