"""Bounded parsers: filters and JSON-with-comments configs refuse deep nesting and huge texts
with a positioned error (never RecursionError), and any text gives a result or that error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.collector.config import ConfigErrors, load_objects
from appliance.collector.config.devices import parse_devices
from appliance.collector.config.jsonc import MAX_CONFIG_CHARS, MAX_CONFIG_DEPTH, loads
from appliance.collector.config.jsonpos import load_located
from appliance.collector.config.objects import load_object
from appliance.collector.filter import (
    MAX_FILTER_CHARS,
    MAX_FILTER_DEPTH,
    FilterError,
    IPLists,
    compile_filter,
)
from appliance.errors import ConfigError

LISTS = IPLists.from_texts({"mynets": "10.0.0.0/8\n"})


def canon(text: str) -> str:
    return str(compile_filter(text, LISTS).ast)


# ---- filters -------------------------------------------------------------------------------


def test_depth_at_the_limit_is_the_flat_filter() -> None:
    d = MAX_FILTER_DEPTH
    assert canon("(" * d + "dst port 80" + ")" * d) == canon("dst port 80") == "dst port 80"
    assert canon("not " * (d - 1) + "(tcp)") == "not (" * (d - 1) + "proto 6" + ")" * (d - 1)


def test_parentheses_beyond_the_limit() -> None:
    text = "(" * 2000 + "port 80" + ")" * 2000
    with pytest.raises(FilterError) as info:
        compile_filter(text, source="mo/x/mo.conf")
    err = info.value
    assert (err.source, err.line, err.column, err.position) == ("mo/x/mo.conf", 1, MAX_FILTER_DEPTH + 1,
                                                               MAX_FILTER_DEPTH)
    assert err.reason == ("'(' and 'not' nest more than 64 deep here; simplify the filter "
                          "(or put the addresses in an IP list)")
    head, shown, caret = str(err).split("\n")
    assert head.startswith("mo/x/mo.conf:1:65: ")
    # the shown line is clipped around the caret, the caret under the 65th '('
    assert len(shown) < 200 and shown.strip().startswith("…")
    assert shown[caret.index("^")] == "("


def test_not_beyond_the_limit_on_a_later_line() -> None:
    text = "tcp and\n" + "not " * 100 + "udp"
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    assert (info.value.line, info.value.column) == (2, 4 * MAX_FILTER_DEPTH + 1)


def test_mixed_nesting_counts_both() -> None:
    half = MAX_FILTER_DEPTH // 2
    assert canon("(not " * half + "tcp" + ")" * half) == "not (" * half + "proto 6" + ")" * half
    with pytest.raises(FilterError, match="nest more than 64"):
        compile_filter("(not " * (half + 1) + "tcp" + ")" * (half + 1))


def test_text_longer_than_the_limit() -> None:
    ok = "port 80" + " " * (MAX_FILTER_CHARS - 7)
    assert len(ok) == MAX_FILTER_CHARS and canon(ok) == "port 80"
    with pytest.raises(FilterError) as info:
        compile_filter(ok + " ")
    assert info.value.position == MAX_FILTER_CHARS
    assert info.value.reason.startswith(f"the filter is {MAX_FILTER_CHARS + 1} characters long; at most 65536")
    assert len(str(info.value)) < 400


_WORDS = ["(", ")", "not", "and", "or", "src", "dst", "port", "host", "net", "proto", "tcp", "80", "1-1024",
          "10.0.0.0/8", "::1", "mynets", "'x'", '"', "'", "/*", "*/", "//", "\n", ",", "div(", "octets",
          "tcp-flags", "syn+ack", "as", "vlan", "0x1F", "-", "mfreq(src port, dst port)", "tfstr(tcp-flags)"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(_WORDS), max_size=60).map(" ".join)))
def test_fuzz_filter_gives_a_filter_or_a_filter_error(text: str) -> None:
    try:
        compile_filter(text, LISTS)
    except FilterError as exc:
        assert exc.line >= 1 and exc.column >= 1 and "^" in str(exc)


# ---- JSON with comments --------------------------------------------------------------------


def test_json_depth_limit() -> None:
    d = MAX_CONFIG_DEPTH
    assert loads("[" * d + "]" * d) == eval("[" * d + "]" * d)
    text = '{"a": // deep\n  ' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(ConfigError) as info:
        loads(text, "mo.conf")
    assert (info.value.path, info.value.line, info.value.column) == ("mo.conf", 2, 3 + d - 1)
    assert str(info.value) == f"mo.conf:2:{2 + d}: arrays and objects nest more than 64 deep here"
    # brackets inside strings and comments do not count
    assert loads('{"f": "' + "(" * 5000 + "[" * 5000 + '"} /* ' + "{" * 100 + " */") == {"f": "(" * 5000 + "[" * 5000}


def test_json_size_limit(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"at most {MAX_CONFIG_CHARS} are accepted"):
        loads(" " * MAX_CONFIG_CHARS + "1")
    big = tmp_path / "mo.conf"
    with big.open("wb") as f:
        f.truncate(MAX_CONFIG_CHARS + 1)
    errors: list[ConfigError] = []
    assert load_object(big, "big", None, errors, []) is None
    assert [str(e) for e in errors] == [f"{big}:1:1: the file is larger than {MAX_CONFIG_CHARS} bytes; refused"]


def test_deep_filter_in_mo_conf_is_a_positioned_error(tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()
    conf = tmp_path / "deep" / "mo.conf"
    conf.write_text('{\n  "filter": "' + "(" * 2000 + "port 80" + ")" * 2000 + '"\n}\n')
    with pytest.raises(ConfigErrors) as info:
        load_objects(tmp_path)
    (err,) = info.value.errors
    # "filter" value starts at column 13 (its quote); character 64 of the text is column 13 + 1 + 64
    assert (err.path, err.line, err.column) == (str(conf), 2, 13 + 1 + MAX_FILTER_DEPTH)
    assert str(err).startswith(f"{conf}:2:78: filter: '(' and 'not' nest more than 64 deep here")
    assert "^" in str(err) and len(str(err)) < 500


def test_check_config_prints_the_error_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "mo.conf").write_text('{"filter": "' + "(" * 2000 + "tcp" + ")" * 2000 + '"}')
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "check-config", "--mo-dir", str(tmp_path)],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"{tmp_path / 'deep' / 'mo.conf'}:1:77: filter: '(' and 'not' nest more than 64 deep here; " \
                       "simplify the filter (or put the addresses in an IP list)"
    assert lines[-1] == "1 error(s): fix them, then run check-config again"


_JSON_BITS = ["{", "}", "[", "]", ",", ":", '"filter"', '"fwm"', '"mavg"', '"name"', '"fields"', '"time"',
              '"octets"', '"src host"', '"port 80"', '"(("', "1", "-1", "1e999", "null", "true", '"x"', "//c\n",
              "/*", "*/", '"overlimit"', '"default"', '"ip"', '"192.0.2.1"', '"sampling-rate"', '"\\u0000"']
_json_texts = st.one_of(st.text(max_size=300), st.lists(st.sampled_from(_JSON_BITS), max_size=80).map("".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_json_texts)
def test_fuzz_config_gives_a_document_or_a_config_error(tmp_path: Path, text: str) -> None:
    try:
        loc = load_located(text, "x.conf")
    except ConfigError:
        return
    try:
        parse_devices(loc.doc, "devices.conf", loc)
    except ConfigError:
        pass
    conf = tmp_path / "mo.conf"
    conf.write_bytes(text.encode("utf-8", "surrogatepass"))
    errors: list[ConfigError] = []
    load_object(conf, "x", LISTS, errors, [])
    assert all(isinstance(e, ConfigError) for e in errors)
