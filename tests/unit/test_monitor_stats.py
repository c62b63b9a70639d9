"""Monitor and exporter statistics reach Collector.stats(), the stats file and the log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.pipeline import Pipeline
from tests.unit.test_windows import NS, make_batch


def test_monitoring_counters_in_collector_stats(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mo = tmp_path / "mo"
    (mo / "all" / "tcp").mkdir(parents=True)
    (mo / "all" / "mo.conf").write_text('{"fwm": [{"name": "src", "time": 1, "fields": ["octets desc", "src host"], '
                                        '"limit": 3}]}')
    (mo / "all" / "tcp" / "mo.conf").write_text('{"filter": "proto tcp", '
                                                '"fwm": [{"name": "p", "fields": ["flows", "dst port"]}]}')
    cfg = CollectorConfig(mo_dir=mo, export_dir=tmp_path / "exp", stats_file=tmp_path / "stats.json")
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False)
    collector, monitoring = pipeline.collector, pipeline.monitoring
    assert monitoring is not None
    rng = np.random.default_rng(3)
    batches = [make_batch(rng, 500, 1_700_000_000 * NS + k * NS) for k in range(3)]
    for b in batches:
        monitoring.monitor(b)
    monitoring.close()
    tcp = sum(int((b["proto"] == 6).sum()) for b in batches)
    s = collector.stats()["monitoring"]
    assert s["object_flows"] == {"all": 1500, "all_tcp": tcp}
    assert s["flows_matched"] == 1500 + tcp
    assert s["windows_exported"] == 4 and s["sql_files"] == 4  # 3 one-second windows + 1 of 30 s
    assert s["rows_exported"] == 3 * 4 + 5  # limit 3 + remainder each; 5 dst ports
    assert s["export_errors"] == 0 and s["sql_file_errors"] == 0
    with caplog.at_level(logging.INFO, logger="mirrorflow.collector"):
        collector.log_stats(1.0)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("monitoring: "))
    assert "windows_exported=4" in line and f"object_flows[all=1500 all_tcp={tcp}]" in line
    assert json.loads((tmp_path / "stats.json").read_text())["monitoring"]["rows_exported"] == 17


def test_pg_exporter_counters_are_merged(tmp_path: Path) -> None:
    from appliance.collector.export.postgres import PgExporter
    from appliance.collector.export.spool import Spool
    from appliance.collector.monitoring.monitor import Monitor

    exp = PgExporter("dbname=none", Spool(tmp_path / "spool", max_files=1), start=False)
    mon = Monitor([], [exp])
    s = mon.stats()
    for key in ("spool_files", "spool_bytes", "spooled_windows", "refused_windows", "spool_full",
                "db_loaded_windows", "db_loaded_rows", "db_errors", "db_failed_windows", "db_up"):
        assert key in s, key
