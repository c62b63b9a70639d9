"""check-config, SIGHUP reload (all or nothing), the spool's bound, the .sql text."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main
from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.export.spool import Spool, read_spooled
from appliance.collector.export.sqlfile import sql_text
from appliance.collector.fields import Column
from appliance.collector.monitoring import WindowTable
from appliance.collector.monitoring.monitor import Monitor
from appliance.collector.pipeline import Pipeline
from tests.unit.test_windows import NS, make_batch


def tree(tmp: Path, objects: dict[str, str], lists: dict[str, str] | None = None) -> Path:
    for rel, text in objects.items():
        (tmp / "mo" / rel).mkdir(parents=True, exist_ok=True)
        (tmp / "mo" / rel / "mo.conf").write_text(text)
    (tmp / "iplists").mkdir(exist_ok=True)
    for name, text in (lists or {}).items():
        (tmp / "iplists" / name).write_text(text)
    return tmp


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree(tmp_path, {"a": '{"filter": "dst net mynet", "fwm": [{"name": "x", "fields": ["octets"]}]}'},
         {"mynet": "10.0.0.0/8\n"})
    conf = tmp_path / "collector.conf"
    conf.write_text(json.dumps({"mo-dir": str(tmp_path / "mo"), "iplists-dir": str(tmp_path / "iplists")}))
    assert main(["check-config", "-c", str(conf)]) == 0
    assert "configuration OK: 1 monitoring objects, 1 windows, 1 IP lists, 0 devices" in capsys.readouterr().out


def test_check_config_lists_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree(tmp_path, {
        "a": '{\n  "filter": "dst net nosuch"\n}',
        "b": '{"filter": "port 80 and and", "fwm": [{"name": "x", "fields": ["srchost"]}]}',
        "c": '{"fwm": [{"name": "x" "fields": []}]}',
    }, {"bad": "10.0.0.0/8\n300.1.2.3\n"})
    devices = tmp_path / "devices.conf"
    devices.write_text('[{"ip": "not-an-ip"}]')
    rc = main(["check-config", "--mo-dir", str(tmp_path / "mo"), "--iplists-dir", str(tmp_path / "iplists"),
               "--devices", str(devices)])
    err = capsys.readouterr().err
    assert rc == 1
    mo = tmp_path / "mo"
    assert f"{tmp_path / 'iplists' / 'bad'}:2:" in err  # the IP list, with its line
    assert "not-an-ip" in err
    assert f"{mo / 'a' / 'mo.conf'}:2:" in err and "nosuch" in err
    assert f"{mo / 'b' / 'mo.conf'}:1:" in err and "srchost" in err
    assert f"{mo / 'c' / 'mo.conf'}:1:23: invalid JSON" in err
    assert "error(s): fix them" in err


def test_filter_error_points_into_mo_conf(tmp_path: Path) -> None:
    tree(tmp_path, {"a": '{\n  "filter": "port 80 and and"\n}'})
    cfg = CollectorConfig(mo_dir=tmp_path / "mo")
    with pytest.raises(Exception) as exc:
        load_runtime(cfg)
    (err,) = exc.value.errors  # type: ignore[attr-defined]
    # column of the second "and" in the file: 13 (start of the string) + 1 + 12
    assert (err.line, err.column) == (2, 26), str(err)


def test_sighup_reload_is_all_or_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree(tmp_path, {"a": '{"fwm": [{"name": "x", "fields": ["flows"]}, {"name": "y", "fields": ["octets"]}]}'})
    cfg = CollectorConfig(mo_dir=tmp_path / "mo", iplists_dir=tmp_path / "iplists")
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False)
    m = pipeline.monitoring
    assert m is not None
    set_devices: list = []
    pipeline.collector.decoder.set_devices = set_devices.append  # what a reload hands the decoder
    tables: list[WindowTable] = []
    m.monitor.exporters.append(tables.append)
    b = make_batch(np.random.default_rng(1), 100, 1_700_000_001 * NS, span_s=0.1)
    pipeline.collector.sinks[0](b)
    # an invalid new configuration: the running one stays
    (tmp_path / "mo" / "a" / "mo.conf").write_text('{"fwm": [{"name": "x", "fields": ["flow"]}]}')
    with caplog.at_level(logging.ERROR):
        pipeline.request_reload()
        pipeline.tick()
    assert "reload refused" in caplog.text
    assert [o.name for o in m.monitor.objects] == ["a"] and len(m.monitor.objects[0].windows) == 2
    # a valid one: x unchanged keeps its state, y changed is exported now, b is new
    (tmp_path / "mo" / "a" / "mo.conf").write_text(
        '{"fwm": [{"name": "x", "fields": ["flows"]}, {"name": "y", "fields": ["packets"]}]}')
    tree(tmp_path, {"b": "{}"})
    (tmp_path / "devices.conf").write_text('[{"ip": "192.0.2.1", "sampling-rate": 4}]')
    cfg.devices_file = tmp_path / "devices.conf"
    pipeline.request_reload()
    pipeline.tick()
    assert [o.name for o in m.monitor.objects] == ["a", "b"]
    assert [(t.table, t.rows) for t in tables] == [("a_y", [(int(b["bytes"].sum()),)])]
    assert set_devices[-1][0].sampling_rate == 4
    pipeline.close()
    assert [(t.table, t.rows) for t in tables[1:]] == [("a_x", [(100,)])]


def test_nested_objects_see_only_parent_matches(tmp_path: Path) -> None:
    tree(tmp_path, {"a": '{"filter": "proto 6", "fwm": [{"name": "n", "fields": ["flows"]}]}',
                    "a/b": '{"filter": "dst port 22", "fwm": [{"name": "n", "fields": ["flows"]}]}',
                    "c": '{"filter": "dst port 22", "fwm": [{"name": "n", "fields": ["flows"]}]}'})
    rt = load_runtime(CollectorConfig(mo_dir=tmp_path / "mo"))
    tables: list[WindowTable] = []
    mon = Monitor(rt.objects, [tables.append])
    b = make_batch(np.random.default_rng(2), 3000, 1_700_000_001 * NS, span_s=0.1)
    mon(b)
    mon.flush()
    got = {t.table: t.rows[0][0] for t in tables}
    tcp, ssh = b["proto"] == 6, b["dst_port"] == 22
    assert got == {"a_n": int(tcp.sum()), "a_b_n": int((tcp & ssh).sum()), "c_n": int(ssh.sum())}


def table(i: int) -> WindowTable:
    return WindowTable("t", 1_700_000_000 + i, 1, [Column("src_host", "INET"), Column("octets", "BIGINT")],
                       [("10.0.0.1", i), (None, 5)])


def test_spool_bound_refuses_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_files=3)
    with caplog.at_level(logging.ERROR):
        paths = [spool.put(table(i)) for i in range(5)]
    assert paths[3] is None and paths[4] is None and all(paths[:3])
    assert spool.stats() == {"spool_files": 3, "spool_bytes": sum(p.stat().st_size for p in paths[:3]),
                             "spooled_windows": 3, "refused_windows": 2, "spool_full": 1}
    assert "ALARM: spool" in caplog.text
    spool.remove(paths[0])
    assert spool.put(table(5)) is not None and spool.full is False
    # order survives a restart; the body is COPY text with \N for NULL
    again = Spool(tmp_path)
    assert [read_spooled(p).time for p in again.pending()] == [1_700_000_001, 1_700_000_002, 1_700_000_005]
    assert read_spooled(again.pending()[0]).body == (b"2023-11-14 22:13:21+00\t10.0.0.1\t1\n"
                                                     b"2023-11-14 22:13:21+00\t\\N\t5\n")


def test_sql_file_text_is_xenoeyes() -> None:
    assert sql_text(table(1)) == (
        'create table if not exists "t" (time TIMESTAMPTZ, "src_host" INET, "octets" BIGINT);\n'
        'create index if not exists "t_idx" on "t"(time);\n'
        'insert into "t" values\n'
        "( to_timestamp(1700000001), '10.0.0.1' , 1 ),\n"
        "( to_timestamp(1700000001), NULL , 5 );\n"
    )
