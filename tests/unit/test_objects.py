"""Monitoring objects: the mo-dir tree, names, validation errors with file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.collector.config.objects import ConfigErrors, load_objects


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel / "mo.conf"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


INGRESS = """\
{
  /* xenoeye's example */
  "filter": "",
  "debug": {"dump-flows": "none"},
  "fwm": [
    {"time": "15", "name": "total", "fields": ["packets", "octets"]},
    {"name": "saddr", "fields": ["packets desc", "octets desc", "src host"], "limit": 20},
    {"extended": true, "name": "ext", "fields": ["octets desc", "src host", "dst host", "proto"],
     "time": 5, "limit": 100, "create-index": "off"}
  ],
  "mavg": [{"name": "mavg1", "time": "10", "fields": ["dst host", "packets"],
            "overlimit": [{"name": "level1", "default": [100000]}]}]
}
"""


def test_tree_names_and_windows(tmp_path: Path) -> None:
    write(tmp_path, "mynet-ingress", INGRESS)
    write(tmp_path, "mynet-ingress/tcp", '{"filter": "", "fwm": [{"name": "syn", "fields": ["flows"]}]}')
    write(tmp_path, "mynet-ingress/tcp/syn", "{}")
    write(tmp_path, "egress", '{"filter": ""}')
    objs = load_objects(tmp_path)
    assert [o.name for o in objs] == ["egress", "mynet-ingress", "mynet-ingress_tcp", "mynet-ingress_tcp_syn"]
    ing = objs[1]
    assert [c.name for c in ing.children] == ["mynet-ingress_tcp"]
    assert objs[2].parent == "mynet-ingress"
    total, saddr, ext = ing.windows
    assert (total.time, total.limit, total.extended) == (15, 0, False)
    assert (saddr.time, saddr.limit) == (30, 20)
    assert (ext.extended, ext.create_index, ext.time) == (True, False, 5)
    assert ing.mavg[0]["name"] == "mavg1"
    assert ing.table("saddr") == "mynet-ingress_saddr"


def errors_of(tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as exc:
        load_objects(tmp_path)
    return [str(e) for e in exc.value.errors]


def test_syntax_error_has_position(tmp_path: Path) -> None:
    p = write(tmp_path, "a", '{\n  "filter": ""\n  "fwm": []\n}\n')
    (err,) = errors_of(tmp_path)
    assert err.startswith(f"{p}:3:3: invalid JSON: Expecting ',' delimiter")


def test_every_bad_window_reported_with_position(tmp_path: Path) -> None:
    p = write(tmp_path, "a", """{
  "fwm": [
    {"name": "x", "fields": ["src hots", "octets"]},
    {"name": "y", "fields": ["octets"], "time": 0},
    {"name": "x", "fields": ["octets"]},
    {"fields": ["octets"]},
    {"name": "z", "fields": ["octets", "bytes"], "limit": -1}
  ]
}""")
    errs = errors_of(tmp_path)
    assert errs[0].startswith(f"{p}:3:30: 'src hots': unknown field 'hots'")
    assert errs[1].startswith(f"{p}:4:49: \"time\" must be a positive")
    assert errs[2].startswith(f"{p}:5:14: window name 'x' is already used by fwm entry 1")
    assert errs[3].startswith(f"{p}:6:5: fwm entry needs \"name\"")
    assert errs[4].startswith(f"{p}:7:59: \"limit\" must be")
    assert len(errs) == 5


def test_duplicate_window_name(tmp_path: Path) -> None:
    p = write(tmp_path, "a", '{"fwm": [{"name": "x", "fields": ["octets"]},\n {"name": "x", "fields": ["packets"]}]}')
    (err,) = errors_of(tmp_path)
    assert err.startswith(f"{p}:2:11: ") and "already used" in err


def test_name_collision_and_long_table_name(tmp_path: Path) -> None:
    write(tmp_path, "a_b", "{}")
    write(tmp_path, "a/b", "{}")
    write(tmp_path, "a", "{}")
    write(tmp_path, "l" * 60, '{"fwm": [{"name": "window", "fields": ["octets"]}]}')
    errs = errors_of(tmp_path)
    assert any("also the name of" in e for e in errs)
    assert any("longer than PostgreSQL" in e for e in errs)


def test_not_an_object_and_wrong_types(tmp_path: Path) -> None:
    write(tmp_path, "a", "[]")
    write(tmp_path, "b", '{"filter": 5, "fwm": {}, "mavg": 3, "debug": "x"}')
    errs = errors_of(tmp_path)
    assert len(errs) == 5
    assert "must be a JSON object" in errs[0]


def test_missing_mo_dir(tmp_path: Path) -> None:
    errs = errors_of(tmp_path / "nope")
    assert "not a directory" in errs[0]


def test_warnings_for_unknown_keys(tmp_path: Path) -> None:
    write(tmp_path, "a", '{"fitler": "", "fwm": [{"name": "x", "fields": ["octets"], "tim": 5}]}')
    warnings: list[str] = []
    load_objects(tmp_path, warnings=warnings)
    assert len(warnings) == 2 and "'fitler'" in warnings[0] and "'tim'" in warnings[1]
