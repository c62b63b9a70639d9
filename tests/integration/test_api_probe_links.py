"""The collector's live API on a probe whose interface went away: health "degraded", a problem
naming the interface, its name in /api/v1/probe and the status; back to "ok" once re-attached.

The probe's statistics are written as the probe writes them: `LinkFollower.snapshot()` of a
follower driven through a deletion and a return (tests/integration/test_probe_links.py does
the same with a real veth and a running probe)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from appliance.collector.api import ApiSettings
from appliance.collector.api.schema import SCHEMAS, validate
from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.pipeline import Pipeline
from appliance.probe.links import LinkEvent, LinkFollower
from tests.unit.test_api import parse_metrics
from tests.unit.test_probe_links import FakeAttachment


def get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as resp:
        doc = json.loads(resp.read())
    validate(doc, SCHEMAS[path])
    return doc


@pytest.fixture
def live(tmp_path: Path):
    (tmp_path / "mo").mkdir()
    (tmp_path / "exp").mkdir()
    stats = tmp_path / "probe" / "stats.json"
    stats.parent.mkdir()
    cfg = CollectorConfig(mo_dir=tmp_path / "mo", export_dir=tmp_path / "exp", stats_interval_s=0)
    settings = ApiSettings(address=("127.0.0.1", 0), probe_stats=stats)
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False, api=settings)
    assert pipeline.api is not None
    pipeline.api.start()
    try:
        yield pipeline.api, stats
    finally:
        pipeline.close()


def test_a_detached_probe_interface_degrades_health_until_it_is_back(live):
    api, stats_file = live
    links = {"ens4": LinkEvent("new", 7, "ens4", True)}
    clock = [1_765_000_000.0]
    follower = LinkFollower([FakeAttachment("ens4", 7), FakeAttachment("ens5", 8)],  # type: ignore[list-item]
                            lambda name: FakeAttachment(name, links[name].ifindex),  # type: ignore[arg-type,return-value]
                            lookup=lambda name: links.get(name) if name == "ens4" else LinkEvent("new", 8, name, True),
                            wall=lambda: clock[0])

    def publish() -> tuple[dict, dict]:
        stats_file.write_text(json.dumps({"pid": 1, "interfaces": ["ens4", "ens5"], "links": follower.snapshot()}))
        api.publish()
        return get(api.url, "/api/v1/status")["status"], get(api.url, "/api/v1/probe")["probe"]

    status, probe = publish()
    assert (status["health"], status["problems"], status["probe"]["detached"]) == ("ok", [], [])
    del links["ens4"]
    clock[0] += 60
    follower.poll([LinkEvent("del", 7, "ens4", False)])
    status, probe = publish()
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(clock[0]))
    assert status["health"] == "degraded"
    assert status["problems"] == [(f"probe interface ens4 detached since {when} (deleted, was ifindex 7): "
                                   "its traffic is not seen until it comes back")]
    assert status["probe"]["detached"] == probe["detached"] == ["ens4"]
    assert probe["stats"]["links"][0]["state"] == "detached"
    with urllib.request.urlopen(api.url + "/metrics", timeout=10) as resp:
        assert parse_metrics(resp.read().decode())["mirrorflow_probe_interfaces_detached"][()] == 1
    links["ens4"] = LinkEvent("new", 12, "ens4", True)
    follower.poll([links["ens4"]])
    status, probe = publish()
    assert (status["health"], status["problems"], probe["detached"]) == ("ok", [], [])
    assert probe["stats"]["links"][0]["reattaches"] == 1
