"""devices.conf: errors point at FILE:LINE:COLUMN of the offending value."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.collector.config.devices import load_devices
from appliance.collector.config.jsonc import ConfigError


@pytest.mark.parametrize(
    "text, line, column, message",
    [
        ('{"ip": "1.2.3.4"}', 1, 1, "must be a JSON array"),
        ('[\n  {"ip": "192.0.2.1"},\n  {"id": 1}\n]', 3, 3, '"ip" (the exporter address) is required'),
        ('[\n  {"ip": "192.0.2.1"},\n  {"ip":   "1.2.3"}\n]', 3, 12, "is not an IPv4 or IPv6 address"),
        ('// routers\n[{"ip": "1.2.3.4",\n  "sampling-rate": 0}]', 3, 20, "positive integer"),
        ('[{"ip": "1.2.3.4", /* id */ "id": -1}]', 1, 35, '"id" must be a source id'),
        ('[\n  "192.0.2.1"\n]', 2, 3, "must be an object"),
        ('[{"ip": "1.2.3.4", "mark": 5}]', 1, 28, '"mark" must be a list'),
        ('[{"ip": 17}]', 1, 9, '"ip" (the exporter address) is required'),
    ],
)
def test_errors_have_line_and_column(tmp_path: Path, text: str, line: int, column: int, message: str) -> None:
    path = tmp_path / "devices.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_devices(path)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert str(err).startswith(f"{path}:{line}:{column}: ")
    assert message in str(err)


def test_syntax_error_position_and_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "devices.conf"
    path.write_text('[\n  {"ip": "192.0.2.1" "sampling-rate": 10}\n]')
    with pytest.raises(ConfigError, match=r"devices.conf:2:22: invalid JSON"):
        load_devices(path)
    path.write_text('[{"ip": "192.0.2.1", "sampling-rate": 10}, // comment\n {"ip": "2001:db8::1", "id": 7}]')
    devs = load_devices(path)
    assert [(d.ip, d.source_id, d.sampling_rate) for d in devs] == [("192.0.2.1", None, 10), ("2001:db8::1", 7, 1)]
