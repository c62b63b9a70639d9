"""Unknown keys in the collector config, devices.conf and mo.conf: a warning with file:line:column,
a suggestion for a near-miss, xenoeye's unsupported keys named as such."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.collector.config import (
    load_config,
    load_devices,
    load_objects,
    load_runtime,
)

CONFIG = """{
  "capture": [{"socket": {"listen_on": "127.0.0.1", "port": 2055}}],
  "sflow-capture": [{"socket": {"port": 6343}}],
  "db-type": "ch",
  "clsf-dir": "/var/lib/xenoeye/clsf/",
  "stats-intervall": 10,
  "mo-dir": "MO"
}
"""

MO_CONF = """{
  "filter": "tcp",
  "fwmm": [],
  "classification": [{"fields": ["src host"]}],
  "debug": {"dump_flows": "none"},
  "fwm": [{"name": "t", "fields": ["octets"], "limt": 10}],
  "mavg": [{"name": "pps", "fields": ["packets"], "overlimits": [],
            "overlimit": [{"default": [1], "action_script": "/bin/true"}]}]
}
"""


def _write(tmp_path: Path) -> tuple[Path, Path]:
    mo = tmp_path / "mo"
    (mo / "web").mkdir(parents=True)
    (mo / "web" / "mo.conf").write_text(MO_CONF)
    conf = tmp_path / "collector.conf"
    conf.write_text(CONFIG.replace("MO", str(mo)))
    return conf, mo


def test_collector_config_keys(tmp_path: Path) -> None:
    conf, _ = _write(tmp_path)
    cfg = load_config(conf)
    assert cfg.warnings == [
        (f"{conf}:3:3: warning: key 'sflow-capture' is xenoeye's (sFlow v5 input); Mirrorflow does not support it "
        "yet and ignores it"),
        (f"{conf}:4:3: warning: key 'db-type' is xenoeye's (ClickHouse SQL files (Mirrorflow writes PostgreSQL SQL "
        "and COPY)); Mirrorflow does not support it yet and ignores it"),
        (f"{conf}:5:3: warning: key 'clsf-dir' is xenoeye's (the classification database); Mirrorflow does not "
        "support it yet and ignores it"),
        f"{conf}:6:3: warning: key 'stats-intervall' is unknown and ignored; did you mean 'stats-interval'?",
        f"{conf}:2:27: warning: capture[0].socket: key 'listen_on' is unknown and ignored; did you mean 'listen-on'?",
    ]
    assert cfg.listen == ["0.0.0.0:2055"]  # the misspelt key is not read


def test_mo_conf_keys(tmp_path: Path) -> None:
    _, mo = _write(tmp_path)
    warnings: list[str] = []
    (obj,) = load_objects(mo, None, warnings)
    c = mo / "web" / "mo.conf"
    assert warnings == [
        f"{c}:3:3: warning: key 'fwmm' is unknown and ignored; did you mean 'fwm'?",
        (f"{c}:4:3: warning: key 'classification' is xenoeye's (automatic traffic classes (class0..class4)); "
        "Mirrorflow does not support it yet and ignores it"),
        f"{c}:5:13: warning: debug key 'dump_flows' is unknown and ignored; did you mean 'dump-flows'?",
        f"{c}:6:47: warning: fwm key 'limt' is unknown and ignored; did you mean 'limit'?",
        f"{c}:7:51: warning: mavg key 'overlimits' is unknown and ignored; did you mean 'overlimit'?",
        f"{c}:8:44: warning: overlimit key 'action_script' is unknown and ignored; did you mean 'action-script'?",
    ]
    assert obj.windows[0].limit == 0


def test_devices_keys(tmp_path: Path) -> None:
    dev = tmp_path / "devices.conf"
    dev.write_text('[\n {"ip": "192.0.2.1", "sampling_rate": 100},\n {"ip": "192.0.2.2", "colour": "red"}\n]\n')
    warnings: list[str] = []
    d1, d2 = load_devices(dev, warnings)
    assert d1.sampling_rate == 1 and d2.sampling_rate == 1
    assert warnings == [
        (f"{dev}:2:22: warning: entry 1: devices.conf key 'sampling_rate' is unknown and ignored; "
        "did you mean 'sampling-rate'?"),
        (f"{dev}:3:22: warning: entry 2: devices.conf key 'colour' is unknown and ignored "
        "(known: id, interfaces, ip, mark, sampling-rate, skip-unmarked)"),
    ]
    cfg = load_config(_write(tmp_path)[0])
    cfg.devices_file = dev
    assert load_runtime(cfg).warnings[:2] == warnings


def test_check_config_prints_the_warnings(tmp_path: Path) -> None:
    conf, mo = _write(tmp_path)
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "check-config", "-c", str(conf)],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 5 + 6
    assert lines[3] == (f"{conf}:6:3: warning: key 'stats-intervall' is unknown and ignored; "
                        "did you mean 'stats-interval'?")
    assert lines[5] == f"{mo / 'web' / 'mo.conf'}:3:3: warning: key 'fwmm' is unknown and ignored; did you mean 'fwm'?"
    assert r.stdout.startswith("configuration OK: 1 monitoring objects")


def test_the_collector_logs_the_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from appliance.collector.pipeline import Pipeline

    conf, _ = _write(tmp_path)
    cfg = load_config(conf)
    cfg.listen = []
    with caplog.at_level(logging.WARNING, "mirrorflow.collector"):
        p = Pipeline(cfg, load_runtime(cfg), live=False)
        p.close()
    logged = [r.getMessage() for r in caplog.records if "warning:" in r.getMessage()]
    assert logged == cfg.warnings + load_runtime(cfg).warnings and len(logged) == 11
