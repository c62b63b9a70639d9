"""Moving averages and alerts through the live API: the attack capture of test_mavg_replay,
fed in small slices so that snapshots are taken while the alert is up and after it ended."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from appliance.collector.api import ApiSettings
from appliance.collector.api.schema import SCHEMAS, validate
from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.pipeline import Pipeline
from appliance.collector.receive.pcapfile import PcapReader
from tests.integration.test_mavg_replay import T0, capture
from tests.unit.test_api import parse_metrics


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read()) if resp.headers["Content-Type"] == "application/json" else resp.read().decode()


def test_alert_is_active_then_past(tmp_path: Path) -> None:
    pcap = tmp_path / "attack.pcap"
    capture(pcap)
    mo = tmp_path / "mo" / "lab"
    mo.mkdir(parents=True)
    act, b2n = tmp_path / "act.sh", tmp_path / "b2n.sh"
    act.write_text("#!/bin/sh\nfor i in $(seq 1 300); do echo \"ban line $i\"; done\nsleep 0.2\nexit 3\n")
    b2n.write_text("#!/bin/sh\necho \"unban $MIRRORFLOW_KEY\"\n")
    act.chmod(0o755)
    b2n.chmod(0o755)
    (mo / "mo.conf").write_text(json.dumps({
        "filter": "",
        "fwm": [{"name": "total", "time": 10, "fields": ["packets"]}],
        "mavg": [{"name": "pps", "time": 2, "fields": ["src host", "packets"],
                  "overlimit": [{"name": "ddos", "default": [50000], "back2norm-time": 5,
                                 "action-script": str(act), "back2norm-script": str(b2n)}]}]}))
    cfg = CollectorConfig(mo_dir=tmp_path / "mo", stats_interval_s=0)
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False,
                        api=ApiSettings(address=("127.0.0.1", 0), probe_stats=None, interval_s=0))
    collector, monitoring, live = pipeline.collector, pipeline.monitoring, pipeline.api
    assert monitoring is not None and live is not None
    live.start()
    seen_active: dict[str, Any] | None = None
    try:
        with PcapReader(pcap) as reader:
            for packets in reader.batches(chunk=16):
                collector.process(packets)  # publishes (interval 0) after every batch
                if seen_active is None and live.state.snapshot.alerts["active"]:
                    seen_active = {p: get(live.url + p) for p in ("/api/v1/alerts", "/api/v1/mavg", "/metrics")}
        monitoring.monitor.flush()
        # the scripts run on their own threads: wait for both to end, then publish
        deadline = time.monotonic() + 20
        while not (monitoring.averages.ended and all(
                (r := monitoring.averages.ended[-1].scripts.get(k)) and r["status"] == "exited"
                for k in ("action", "back2norm"))):
            assert time.monotonic() < deadline, "scripts did not finish"
            time.sleep(0.05)
        live.publish()
        after = get(live.url + "/api/v1/alerts")
        mavg = get(live.url + "/api/v1/mavg")
    finally:
        pipeline.close()
    assert seen_active is not None, "no snapshot showed the alert"
    validate(seen_active["/api/v1/alerts"], SCHEMAS["/api/v1/alerts"])
    validate(seen_active["/api/v1/mavg"], SCHEMAS["/api/v1/mavg"])
    validate(after, SCHEMAS["/api/v1/alerts"])
    validate(mavg, SCHEMAS["/api/v1/mavg"])
    (alert,) = seen_active["/api/v1/alerts"]["active"]
    assert (alert["mo"], alert["mavg"], alert["level"], alert["direction"], alert["key"]) == (
        "lab", "pps", "ddos", "over", ["10.9.9.9"])
    assert alert["threshold"] == 50000 and alert["rate"] >= 50000
    assert T0 + 20 <= alert["since"] < T0 + 21  # raised at 20.5 s (see test_mavg_replay)
    (avg,) = seen_active["/api/v1/mavg"]["mavg"]
    assert avg["top"][0]["key"] == ["10.9.9.9"]
    assert avg["top"][0]["levels"][0]["raised"] is True
    m = parse_metrics(seen_active["/metrics"])
    assert m["mirrorflow_alerts_active"] == {(("level", "ddos"), ("mavg", "pps"), ("object", "lab")): 1.0}
    assert m["mirrorflow_mavg_keys"][(("mavg", "pps"), ("object", "lab"))] == avg["keys"]
    # after back2norm: nothing active, the alert is in the past list with when it ended
    assert after["active"] == []
    (past,) = after["past"]
    assert past["key"] == ["10.9.9.9"] and past["since"] == alert["since"]
    # last seen up at 37.7 s at the latest (back to normal at 37 s, test_mavg_replay), slices of 16 datagrams
    assert T0 + 36 <= past["ended_at"] <= T0 + 38
    # script results: the action's while the alert is up (it may still run), both afterwards
    assert alert["scripts"]["action"]["script"] == str(act)
    assert alert["scripts"]["action"]["status"] in ("queued", "running", "exited")
    assert alert["scripts"]["back2norm"] is None
    action, back = past["scripts"]["action"], past["scripts"]["back2norm"]
    assert (action["status"], action["exit"]) == ("exited", 3) and action["duration_s"] >= 0.2
    assert len(action["output"]) == 1024 and action["output"].endswith("ban line 299\nban line 300\n")
    assert (back["script"], back["status"], back["exit"], back["output"]) == (str(b2n), "exited", 0, "unban 10.9.9.9\n")
    assert 0 <= back["duration_s"] < 5
