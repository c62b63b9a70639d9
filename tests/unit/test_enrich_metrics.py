"""Windows exported to Prometheus with their key fields as labels (fwm "export": "prometheus"):
the /metrics samples against the very table the window closed, and the config's bounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.api.livestate import Snapshot, window_table
from appliance.collector.api.metrics import render_metrics
from appliance.collector.config import ConfigErrors, load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.enrich import Enricher
from appliance.collector.monitoring import FixedWindow
from tests.unit.test_api import parse_metrics
from tests.unit.test_enrich import _batch, dbs  # noqa: F401 - the module's databases fixture

FWM = {"name": "cc", "fields": ["src country", "asn(dst host)", "octets desc", "flows"], "limit": 4,
       "export": "prometheus"}


def _objects(tmp: Path, fwm: dict) -> CollectorConfig:
    (tmp / "mo" / "geo").mkdir(parents=True)
    (tmp / "mo" / "geo" / "mo.conf").write_text(json.dumps({"filter": "", "fwm": [fwm]}))
    return CollectorConfig(mo_dir=tmp / "mo")


def test_exported_window_rows_are_labelled_samples(tmp_path: Path, dbs) -> None:  # noqa: F811
    rt = load_runtime(_objects(tmp_path, FWM))
    spec = rt.objects[0].windows[0]
    assert spec.export == ("prometheus",)
    batch = _batch(np.random.default_rng(12), dbs.nets, 3000)
    Enricher([dbs.country, dbs.asn]).enrich(batch)
    w = FixedWindow(spec, "geo_cc")
    tables = w.add(batch, np.arange(batch.n), batch["recv_time_ns"] // np.uint64(30 * 10**9)) + w.close()
    doc = window_table(tables[0], spec.limit, 1.0)
    assert len(doc["rows"]) == 4 and doc["other"] is not None
    snap = Snapshot(seq=1, time=1.0, windows=[{"object": "geo", "window": "cc", "fields": list(FWM["fields"]),
                                              "export": ["prometheus"], "active": True, "last": doc}])
    m = parse_metrics(render_metrics(snap))
    want_octets, want_flows = {}, {}
    for row in doc["rows"]:
        key = (("asn_dst_host_", str(row[1])), ("object", "geo"), ("src_country", row[0]), ("window", "cc"))
        want_octets[key], want_flows[key] = row[2], row[3]
    other = (("asn_dst_host_", "other"), ("object", "geo"), ("src_country", "other"), ("window", "cc"))
    want_octets[other], want_flows[other] = doc["other"][2], doc["other"][3]
    assert m["mirrorflow_fwm_octets"] == want_octets
    assert m["mirrorflow_fwm_flows"] == want_flows
    # the samples add up to the window's whole traffic
    assert sum(m["mirrorflow_fwm_octets"].values()) == int(batch["bytes"].sum())


def test_window_not_exported_stays_json_only(dbs) -> None:  # noqa: F811
    snap = Snapshot(seq=1, time=1.0, windows=[{"object": "geo", "window": "cc", "fields": ["src host", "octets"],
                                              "export": [], "active": True, "last": None}])
    assert not [k for k in parse_metrics(render_metrics(snap)) if k.startswith("mirrorflow_fwm_")]


@pytest.mark.parametrize(("fwm", "words"), [
    ({**FWM, "limit": 0}, 'needs a "limit"'), ({**FWM, "export": "graphite"}, 'must be "prometheus"'),
])
def test_export_needs_a_bound(tmp_path: Path, fwm: dict, words: str) -> None:
    with pytest.raises(ConfigErrors, match=words):
        load_runtime(_objects(tmp_path, fwm))
