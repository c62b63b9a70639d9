"""The live API's pure parts: address parsing, settings, routing errors, the schemas and the
Prometheus exposition (parsed back by a tiny parser)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from appliance.collector.api import server as api
from appliance.collector.api.livestate import Snapshot
from appliance.collector.api.metrics import LABELS, render_metrics
from appliance.collector.api.schema import SCHEMAS, SchemaError, validate

# ---- a tiny Prometheus text parser (also used by the integration tests) ----------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name → {sorted label pairs → value}; checks HELP/TYPE precede samples, no duplicates."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    typed: set[str] = set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge"), line
            assert name not in typed, f"TYPE twice: {name}"
            typed.add(name)
            out[name] = {}
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        assert name in typed, f"sample before its TYPE: {line!r}"
        pairs = []
        if labels:
            pos = 0
            while pos < len(labels):
                lm = _LABEL.match(labels, pos)
                assert lm, f"bad labels in {line!r}"
                pairs.append((lm.group(1), re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(x.group(1), x.group(1)),
                                                  lm.group(2))))
                pos = lm.end()
        key = tuple(sorted(pairs))
        assert key not in out[name], f"duplicate series {line!r}"
        out[name][key] = float(value)
    return out


# ---- addresses and settings ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "want"), [
    ("127.0.0.1:8787", ("127.0.0.1", 8787)), ("8787", ("127.0.0.1", 8787)), ("[::1]:9000", ("::1", 9000)),
    ("0.0.0.0:80", ("0.0.0.0", 80)), ("off", None), ("", None), (None, None), (8787, ("127.0.0.1", 8787)),
])
def test_parse_api_address(text: object, want: object) -> None:
    assert api.parse_api_address(text) == want  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["localhost:http", "1.2.3.4:70000", "[::1", "a:b:c"])
def test_bad_api_address_says_what_to_write(text: str) -> None:
    with pytest.raises(api.ApiAddressError, match=r"api"):
        api.parse_api_address(text)


def test_settings_from_config_keys_and_overrides() -> None:
    raw = {"api": "127.0.0.1:9999", "probe-stats": "/x/stats.json", "probe-address": "10.0.0.1", "api-flows": 5}
    st = api.settings_from_config(raw)
    assert (st.address, st.probe_stats, st.probe_addresses, st.flows) == (
        ("127.0.0.1", 9999), Path("/x/stats.json"), ("10.0.0.1",), 5)
    st = api.settings_from_config(raw, api="off", probe_stats=Path("/y"))
    assert st.address is None and st.probe_stats == Path("/y")
    assert api.settings_from_config({}).address == ("127.0.0.1", 8787)
    assert api.settings_from_config({}, default_api="off").address is None
    with pytest.raises(api.ApiAddressError, match="api-flows"):
        api.settings_from_config({"api-flows": -1})


# ---- routing -----------------------------------------------------------------------------------


def empty_snapshot() -> Snapshot:
    return Snapshot(seq=3, time=1.5, objects=[{"name": "mo1", "flows": 0}])


@pytest.mark.parametrize(("path", "query", "exc", "words"), [
    ("/api/v2/status", {}, api.NotFound, "no endpoint"),
    ("/api/v1/nothing", {}, api.NotFound, "no endpoint"),
    ("/api/v1/windows/nope/w", {}, api.NotFound, "no monitoring object 'nope'"),
    ("/api/v1/windows/mo1/w", {}, api.NotFound, "has no window 'w'"),
    ("/api/v1/flows", {"object": ["nope"]}, api.NotFound, "no monitoring object"),
    ("/api/v1/flows", {"limit": ["x"]}, api.BadRequest, "integer"),
    ("/api/v1/flows", {"limit": ["0"]}, api.BadRequest, "between 1 and"),
    ("/api/v1/flows", {"obj": ["mo1"]}, api.BadRequest, "unknown parameter"),
])
def test_route_errors(path: str, query: dict, exc: type, words: str) -> None:
    with pytest.raises(exc, match=words):
        api.route(empty_snapshot(), path, query)


def test_index_lists_every_endpoint() -> None:
    doc = api.route(empty_snapshot(), "/", {})
    assert set(doc["endpoints"]) >= {"/api/v1/status", "/metrics", "/api/v1/schema"}
    assert api.route(empty_snapshot(), "/api/v1/schema", {})["schemas"] == SCHEMAS


# ---- schemas -----------------------------------------------------------------------------------


def test_validator_finds_mismatches() -> None:
    schema = SCHEMAS["/api/v1/objects"]
    good = {"api_version": 1, "snapshot": {"seq": 1, "time": 2.0}, "objects": []}
    validate(good, schema)
    for bad, words in (({**good, "api_version": 2}, "not one of"), ({**good, "extra": 1}, "unexpected key"),
                       ({k: v for k, v in good.items() if k != "objects"}, "missing key 'objects'"),
                       ({**good, "snapshot": {"seq": -1, "time": 2.0}}, r"\$\.snapshot\.seq"),
                       ({**good, "objects": [{"name": 1}]}, r"\$\.objects\[0\]")):
        with pytest.raises(SchemaError, match=words):
            validate(bad, schema)
    with pytest.raises(SchemaError, match="expected integer"):
        validate(True, {"type": "integer"})  # a bool is not a count


# ---- Prometheus --------------------------------------------------------------------------------


def test_metrics_of_an_empty_snapshot_parse_and_escape_labels() -> None:
    snap = Snapshot(seq=1, time=10.0, status={"uptime_s": 1.0, "totals": {"records": 7}},
                    objects=[{"name": 'we"ird\\name\n', "flows": 1, "bytes": 2, "packets": 3}])
    m = parse_metrics(render_metrics(snap))
    assert m["mirrorflow_up"] == {(): 1.0}
    assert m["mirrorflow_records_total"] == {(): 7.0}
    assert math.isnan(m["mirrorflow_socket_drops_total"][()])  # replay: no sockets
    assert m["mirrorflow_object_bytes_total"] == {((("object", 'we"ird\\name\n'),)): 2.0}
    assert m["mirrorflow_probe_up"] == {(): 0.0}
    for series in m.values():
        for key in series:
            assert {k for k, _ in key} <= LABELS
