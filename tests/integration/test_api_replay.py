"""The live API of an in-process collector fed by replayed captures, queried over HTTP.

Every number is checked against an independent source: ``mirrorflow decode --stats`` for the
exporters' counters, ``decode --format jsonl --apply-sampling`` recomputed in plain Python for
traffic totals, per-object counts and the flow tails, the very tables handed to the .sql
exporter for the windows, and a fake clock for the rates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from appliance.collector.api import ApiSettings, LiveApi
from appliance.collector.api.metrics import LABELS
from appliance.collector.api.schema import SCHEMAS, validate
from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.monitoring import WindowTable
from appliance.collector.pipeline import Pipeline
from tests.unit.test_api import parse_metrics

CAPTURE_A = "ipfixcol2/example_flows.pcap"  # 3979 records, exporter 192.0.2.210 (sampling 10 from devices.conf)
CAPTURE_B = "pmacct/402-IPFIXv10-BMP-IPv6-high-availability__traffic-00.pcap"  # 716 records, IPv6 exporter

OBJECTS = {
    "top": {"filter": "", "fwm": [{"name": "pairs", "time": 10, "limit": 5,
                                   "fields": ["octets desc", "src host", "dst host"]},
                                  {"name": "total", "fields": ["packets", "octets", "flows"]}]},
    "tcp": {"filter": "proto tcp", "fwm": [{"name": "ports", "fields": ["dst port", "octets desc"], "limit": 3}]},
    "udp": {"filter": "proto udp", "fwm": []},
}
FILTERS = {"top": lambda r: True, "tcp": lambda r: r.get("proto") == 6, "udp": lambda r: r.get("proto") == 17}
TAIL = 50


def _env() -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}


def decode(paths: list[Path], devices: Path) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """The records (jsonl, sampling applied) and the per-exporter statistics of ``decode``."""
    proc = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "decode", "--format", "jsonl", "--apply-sampling",
         "--no-options", "--stats", "--devices", str(devices), *map(str, paths)],
        capture_output=True, text=True, check=True, env=_env(), timeout=120,
    )
    stats = {}
    for line in proc.stderr.splitlines():
        doc = json.loads(line)
        stats[doc.pop("exporter")] = doc
    return [json.loads(x) for x in proc.stdout.splitlines()], stats


def get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        return json.loads(resp.read())


def get_error(base: str, path: str, method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(base + path, method=method)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    doc = json.loads(info.value.read())
    validate(doc, SCHEMAS["error"])
    return info.value.code, doc


def sql_rows(path: Path) -> list[tuple]:
    """The rows of an exported .sql file (xenoeye's text: ints, 'text', NULL)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.startswith("( to_timestamp("):
            continue
        cells = line.rstrip(",;").removeprefix("( ").removesuffix(" )").split(" , ")
        cells[0] = cells[0].split(", ", 1)[1]  # the time column
        out.append(tuple(None if c.strip() == "NULL" else c.strip()[1:-1] if c.strip().startswith("'")
                         else int(c) for c in cells))
    return out


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("api")
    for name, doc in OBJECTS.items():
        (tmp / "mo" / name).mkdir(parents=True)
        (tmp / "mo" / name / "mo.conf").write_text(json.dumps(doc))
    (tmp / "exp").mkdir()
    devices = tmp / "devices.conf"
    devices.write_text(json.dumps([{"ip": "192.0.2.210", "sampling-rate": 10}]))
    probe_stats = tmp / "probe" / "stats.json"
    probe_stats.parent.mkdir()
    probe_stats.write_text(json.dumps(PROBE_SNAPSHOT, indent=1, sort_keys=True))
    cfg = CollectorConfig(mo_dir=tmp / "mo", export_dir=tmp / "exp", devices_file=devices, stats_interval_s=0)
    clock = FakeClock()
    settings = ApiSettings(address=("127.0.0.1", 0), probe_stats=probe_stats, probe_addresses=("192.0.2.210",),
                           flows=TAIL, flows_interval_s=0.0)
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False, api=settings, clock=clock)
    collector, monitoring, live = pipeline.collector, pipeline.monitoring, pipeline.api
    assert monitoring is not None and live is not None
    tables: list[WindowTable] = []
    monitoring.monitor.exporters.append(tables.append)  # what the .sql writer got, in order
    live.start()  # first snapshot at t = 1000
    a, b = corpus_dir / "netflow" / CAPTURE_A, corpus_dir / "netflow" / CAPTURE_B
    collector.run_pcap([a])
    clock.t += 1.0
    live.publish()
    collector.run_pcap([b])
    clock.t += 1.0
    monitoring.monitor.flush()
    live.publish()
    recs_a, _ = decode([a], devices)
    recs, stats = decode([a, b], devices)
    yield {"url": live.url, "records": recs, "n_a": len(recs_a), "stats": stats, "tables": tables, "tmp": tmp,
           "probe_stats": probe_stats, "live": live}
    pipeline.close()


PROBE_SNAPSHOT = {
    "pid": 4242, "uptime_s": 12.5, "protocol": 9, "interfaces": ["mft0"], "attach": "tc",
    "kernel": {"total": {"frames": 1000, "accounted_packets": 990, "accounted_bytes": 123456,
                         "refused_packets": 3, "new_flows": 77}, "per_cpu": []},
    "rates": {"1s": {"accounted_packets": 10.0}, "1m": {}, "5m": {}},
    "table": {"active": 12, "peak_active": 20},
    "export": {"flows_exported": 65, "flows_unexportable": 0, "messages": 9, "destinations": []},
}


ENDPOINTS = ["/api/v1/status", "/api/v1/exporters", "/api/v1/objects", "/api/v1/windows",
             "/api/v1/windows/top/pairs", "/api/v1/flows?object=tcp&limit=10", "/api/v1/flows",
             "/api/v1/mavg", "/api/v1/alerts", "/api/v1/probe"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_matches_its_schema(served: dict, path: str) -> None:
    doc = get(served["url"], path)
    key = "/api/v1/windows/{object}/{window}" if path.count("/") == 5 else path.split("?")[0]
    validate(doc, SCHEMAS[key])
    assert doc["snapshot"]["seq"] == 3


def test_exporter_counters_equal_decode_stats(served: dict) -> None:
    exporters = get(served["url"], "/api/v1/exporters")["exporters"]
    assert {e["address"] for e in exporters} == set(served["stats"])
    for e in exporters:
        nonzero = {k: v for k, v in e["counters"].items() if v}
        assert nonzero == served["stats"][e["address"]], e["address"]
        assert e["datagrams"] == e["counters"]["packets"]
        assert e["records"] == e["counters"]["records"]
        assert e["decode_errors_total"] == sum(e["decode_errors"].values())
        assert e["sequence"]["resets"] == e["counters"]["seq_resets"]
        assert e["role"] == ("probe" if e["address"] == "192.0.2.210" else "router")
        # traffic by exporter, recomputed from the decoded records (sampling applied)
        mine = [r for r in served["records"] if r["exporter"] == e["address"]]
        assert (e["flows"], e["bytes"], e["packets"]) == (
            len(mine), sum(r.get("bytes", 0) for r in mine), sum(r.get("packets", 0) for r in mine))
        assert e["sampling_rate"] == max(r["sampling_rate"] for r in mine)
    rates = {e["address"]: e["sampling_rate"] for e in exporters}
    assert rates["192.0.2.210"] == 10  # devices.conf
    assert sorted(rates.values()) == [1, 10]


def test_status_totals_and_rates_from_the_fake_clock(served: dict) -> None:
    st = get(served["url"], "/api/v1/status")["status"]
    recs = served["records"]
    total_bytes, total_pkts = sum(r.get("bytes", 0) for r in recs), sum(r.get("packets", 0) for r in recs)
    assert st["totals"]["records"] == len(recs)
    assert (st["totals"]["bytes"], st["totals"]["packets"]) == (total_bytes, total_pkts)
    assert st["totals"]["datagrams"] == sum(s["packets"] for s in served["stats"].values())
    assert st["mode"] == "replay" and st["health"] == "ok" and st["problems"] == []
    assert st["config"]["generation"] == 1 and st["objects"] == 3 and st["exporters"] == 2
    assert st["uptime_s"] == 2.0
    # samples at t = 0 (nothing), 1 s (capture A), 2 s (A + B): 1 s rate = B; 1 min = all / 2 s
    n_b = len(recs) - served["n_a"]
    b = recs[served["n_a"]:]
    assert st["rates"]["1s"]["records"] == n_b
    assert st["rates"]["1s"]["pps"] == sum(r.get("packets", 0) for r in b)
    assert st["rates"]["1s"]["bps"] == 8 * sum(r.get("bytes", 0) for r in b)
    assert st["rates"]["1m"]["records"] == len(recs) / 2
    assert st["rates"]["1m"]["bps"] == 8 * total_bytes / 2
    assert st["socket_drops"] is None  # no sockets on replay
    assert st["probe"] == {"available": True, "stale": False, "age_s": st["probe"]["age_s"], "detached": []}


def test_objects_count_what_their_filters_select(served: dict) -> None:
    objects = {o["name"]: o for o in get(served["url"], "/api/v1/objects")["objects"]}
    assert set(objects) == set(OBJECTS)
    for name, keep in FILTERS.items():
        mine = [r for r in served["records"] if keep(r)]
        o = objects[name]
        assert (o["flows"], o["bytes"], o["packets"]) == (
            len(mine), sum(r.get("bytes", 0) for r in mine), sum(r.get("packets", 0) for r in mine)), name
        assert o["windows"] == [w["name"] for w in OBJECTS[name]["fwm"]]
    assert objects["udp"]["flows"] > 0 and objects["tcp"]["flows"] > 0
    # 1 min rate: everything over the 2 s between the first and the last sample
    assert objects["tcp"]["rates"]["1m"]["bps"] == 8 * objects["tcp"]["bytes"] / 2


def test_windows_are_the_last_exported_tables(served: dict) -> None:
    last: dict[tuple[str, str], WindowTable] = {}
    for t in served["tables"]:
        last[(t.mo, t.window)] = t
    windows = get(served["url"], "/api/v1/windows")["windows"]
    assert {(w["object"], w["window"]) for w in windows} == {(m, w["name"]) for m, d in OBJECTS.items()
                                                             for w in d["fwm"]}
    others = 0
    for w in windows:
        t = last[(w["object"], w["window"])]
        shown = w["last"]
        rows = [tuple(r) for r in shown["rows"]] + ([tuple(shown["other"])] if shown["other"] else [])
        assert rows == t.rows
        assert (shown["table"], shown["end"], shown["period"], shown["flows"]) == (t.table, t.time, t.period, t.flows)
        assert [c["name"] for c in shown["columns"]] == [c.name for c in t.columns]
        assert sql_rows(served["tmp"] / "exp" / f"{t.table}_{t.time}.sql") == rows
        if w["limit"]:
            assert len(shown["rows"]) <= w["limit"]
        others += shown["other"] is not None
        assert shown["other"] is None or all(v is None for v, c in zip(shown["other"], w["fields"], strict=True)
                                              if c.split()[0] not in ("octets", "packets", "flows"))
    assert others >= 1  # top/pairs (limit 5) has a remainder row
    one = get(served["url"], "/api/v1/windows/top/pairs")["window"]
    assert one == next(w for w in windows if (w["object"], w["window"]) == ("top", "pairs"))


def test_flow_tails_are_the_last_records_as_decode_prints_them(served: dict) -> None:
    for name, keep in FILTERS.items():
        mine = [r for r in served["records"] if keep(r)]
        doc = get(served["url"], f"/api/v1/flows?object={name}&limit={TAIL}")
        assert doc["flows"] == mine[-TAIL:], name
        assert doc["count"] == min(TAIL, len(mine)) and doc["offered"] == len(mine)
    doc = get(served["url"], "/api/v1/flows?limit=7")
    assert doc["object"] is None and doc["flows"] == served["records"][-7:]
    assert get(served["url"], "/api/v1/flows?object=tcp&limit=10000")["count"] == TAIL  # bounded


EXPRESSIONS = {
    "proto udp or dst port 80": lambda r: r.get("proto") == 17 or r.get("dst_port") == 80,
    "not tcp and src net 0.0.0.0/1": lambda r: r.get("proto") != 6 and ":" not in r.get("src_addr", "")
                                               and int(r.get("src_addr", "0.0.0.0").split(".")[0]) < 128,
    "src port 179 or dst port 2222": lambda r: r.get("src_port") == 179 or r.get("dst_port") == 2222,
}


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_flow_filter_keeps_exactly_the_matching_flows_of_the_tail(served: dict, expr: str) -> None:
    """The expression runs on the columns of the tail; the oracle is Python on decode's dicts."""
    from urllib.parse import quote

    keep = EXPRESSIONS[expr]
    matched = 0
    for name, in_object in [*FILTERS.items(), (None, lambda r: True)]:
        tail = [r for r in served["records"] if in_object(r)][-TAIL:]
        want = [r for r in tail if keep(r)]
        where = f"object={name}&" if name else ""
        doc = get(served["url"], f"/api/v1/flows?{where}filter={quote(expr)}&limit=1000")
        validate(doc, SCHEMAS["/api/v1/flows"])
        assert doc["filter"] == expr and doc["flows"] == want, (name, expr)
        assert doc["count"] == len(want)
        matched += len(want)
        if len(want) > 2:  # limit: the newest matches
            assert get(served["url"], f"/api/v1/flows?{where}filter={quote(expr)}&limit=2")["flows"] == want[-2:]
    assert matched > 0  # the expression selects something


def test_flow_filter_errors_are_400_with_the_position(served: dict) -> None:
    from urllib.parse import quote

    code, doc = get_error(served["url"], "/api/v1/flows?object=top&filter=" + quote("proto udp and dst port"))
    assert code == 400
    msg = doc["error"]["message"]
    assert msg.startswith("bad filter: filter:1:23: expected a port number") and msg.endswith("^")
    assert get_error(served["url"], "/api/v1/flows?filter=" + quote("host 10.0.0.300"))[0] == 400
    # empty: everything, as without a filter
    assert get(served["url"], "/api/v1/flows?object=top&filter=&limit=5")["flows"] == served["records"][-5:]


def test_probe_statistics_are_the_probes_own_file(served: dict) -> None:
    probe = get(served["url"], "/api/v1/probe")["probe"]
    assert probe["stats"] == PROBE_SNAPSHOT
    assert probe["available"] and probe["stats_file"] == str(served["probe_stats"])
    # ... the same dict `mirrorflow probe --stats --json` prints
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "probe", "--stats", "--json", "--state-dir",
                           str(served["probe_stats"].parent)], capture_output=True, text=True, env=_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == probe["stats"]


def test_metrics_exact_counters_and_bounded_labels(served: dict) -> None:
    with urllib.request.urlopen(served["url"] + "/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        m = parse_metrics(resp.read().decode())
    exporters = get(served["url"], "/api/v1/exporters")["exporters"]
    objects = get(served["url"], "/api/v1/objects")["objects"]
    for e in exporters:
        lab = (("exporter", e["address"]),)
        assert m["mirrorflow_exporter_records_total"][lab] == served["stats"][e["address"]]["records"]
        assert m["mirrorflow_exporter_datagrams_total"][lab] == served["stats"][e["address"]]["packets"]
        assert m["mirrorflow_exporter_bytes_total"][lab] == e["bytes"]
        assert m["mirrorflow_exporter_lost_flows_total"][lab] == e["sequence"]["lost_flows"]
        for kind, n in e["decode_errors"].items():
            assert m["mirrorflow_exporter_decode_errors_total"][(("exporter", e["address"]), ("kind", kind))] == n
    for o in objects:
        assert m["mirrorflow_object_flows_total"][(("object", o["name"]),)] == o["flows"]
        assert m["mirrorflow_object_bytes_total"][(("object", o["name"]),)] == o["bytes"]
    assert m["mirrorflow_records_total"][()] == len(served["records"])
    assert m["mirrorflow_window_rows"][(("object", "top"), ("window", "pairs"))] == 5
    assert m["mirrorflow_probe_up"][()] == 1
    assert m["mirrorflow_probe_frames_total"][()] == 1000
    assert m["mirrorflow_exporter_sampling_rate"][(("exporter", "192.0.2.210"),)] == 10
    # labels: only the bounded names; the number of series follows the configuration, not traffic
    series = 0
    for name, samples in m.items():
        for key in samples:
            assert {k for k, _ in key} <= LABELS, name
            series += 1
    n_exp, n_obj, n_win = len(exporters), len(objects), sum(len(d["fwm"]) for d in OBJECTS.values())
    assert series <= 40 + n_exp * (9 + 10) + n_obj * 3 + n_win * 3


def test_errors_are_json_with_a_message(served: dict) -> None:
    url = served["url"]
    assert get_error(url, "/api/v1/windows/nope/pairs") == (404, {"api_version": 1, "error": {
        "status": 404, "message": "no monitoring object 'nope': see /api/v1/objects"}})
    assert get_error(url, "/api/v1/windows/top/nope")[0] == 404
    assert get_error(url, "/api/v1/flows?object=nope")[0] == 404
    assert get_error(url, "/api/v1/flows?limit=zero")[0] == 400
    assert get_error(url, "/api/v3/status")[0] == 404
    assert get_error(url, "/api/v1/status", method="POST")[0] == 405


def test_handlers_never_wait_for_the_collector(served: dict) -> None:
    """Requests read the published snapshot: they answer while the collector's thread is busy."""
    live: LiveApi = served["live"]
    monitor = live.state.monitoring.monitor
    with monitor._lock:  # the decode thread holding the monitor (a long batch)
        doc = get(served["url"], "/api/v1/windows")
    assert doc["snapshot"]["seq"] == live.state.snapshot.seq
