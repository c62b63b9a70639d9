"""``mirrorflow tui`` against a real ``mirrorflow collect`` fed over UDP from a capture:
every pane and key binding through Textual's Pilot, values checked against the API's JSON."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.collector.receive.pcapfile import PcapReader
from appliance.tui import units
from appliance.tui.app import MirrorflowApp
from appliance.tui.keys import KEYS, key_label
from appliance.tui.screens import DetailScreen, HelpScreen
from appliance.tui.screentext import screen_text
from appliance.tui.table import LiveTable
from tests.integration._live import free_port, get, wait_for

CAPTURE = "ipfixcol2/example_flows.pcap"
RECORDS = 3979  # in the capture (test_api_collect checks it against decode --stats)

MO_CONF = {
    "filter": "",
    "fwm": [{"name": "pairs", "time": 1, "limit": 3, "fields": ["octets desc", "src host", "dst host"]},
            {"name": "protos", "time": 1, "limit": 2, "fields": ["packets desc", "proto"]}],
    # a low threshold and a long back2norm-time: the capture raises alerts that stay up
    "mavg": [{"name": "pps", "time": 2, "fields": ["src host", "packets"],
              "overlimit": [{"name": "ddos", "default": [100], "back2norm-time": 3600}]}],
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Iterator[str]:
    """A collector with one object (two windows, one moving average) that has seen the capture."""
    tmp = tmp_path_factory.mktemp("tui")
    (tmp / "mo" / "all").mkdir(parents=True)
    act = tmp / "act.sh"  # its result shows in the alert's drill-down
    act.write_text('#!/bin/sh\necho "banned $MIRRORFLOW_KEY"\nexit 2\n')
    act.chmod(0o755)
    conf = json.loads(json.dumps(MO_CONF))
    conf["mavg"][0]["overlimit"][0]["action-script"] = str(act)
    (tmp / "mo" / "all" / "mo.conf").write_text(json.dumps(conf))
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba"), "TZ": "UTC"}
    udp, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "collect", "--listen", f"127.0.0.1:{udp}", "--api", f"127.0.0.1:{http}",
         "--mo-dir", str(tmp / "mo"), "--notifications-dir", str(tmp / "notifications"),
         "--probe-stats", str(tmp / "probe.json"), "--stats-interval", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{http}"
    try:
        wait_for(lambda: get(base + "/api/v1/status"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, PcapReader(corpus_dir / "netflow" / CAPTURE) as rd:
            for packets in rd.batches():
                for i in range(len(packets)):
                    off, ln = int(packets.offset[i]), int(packets.length[i])
                    tx.sendto(packets.buf[off : off + ln].tobytes(), ("127.0.0.1", udp))
        wait_for(lambda: get(base + "/api/v1/status")["status"]["totals"]["records"] == RECORDS)
        wait_for(lambda: all(w["last"] for w in get(base + "/api/v1/windows")["windows"]))
        wait_for(lambda: get(base + "/api/v1/alerts")["active"])
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def sync(test: Callable[..., Any]) -> Callable[..., None]:
    """Run an async test body in its own event loop (no pytest async plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def until(pilot: Any, pred: Callable[[], Any], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out; screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def shown(table: LiveTable) -> list[list[str]]:
    """The table's cells as text, in display order."""
    return [[getattr(c, "plain", str(c)) for c in table.get_row(r.key)] for r in table.ordered_rows]


def make_app(api: str, tmp_path: Path, **kw: Any) -> MirrorflowApp:
    return MirrorflowApp(api, interval=0.25, export_dir=tmp_path, **kw)


async def started(pilot: Any) -> MirrorflowApp:
    app: MirrorflowApp = pilot.app
    await until(pilot, lambda: app.updates >= 2 and app.shown is not None)
    return app


@pytest.mark.slow
@sync
async def test_every_pane_shows_the_api(api: str, tmp_path: Path) -> None:
    app = make_app(api, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("p")  # freeze the display: compare with the snapshot it shows
        snap = app.shown
        assert snap is not None and snap.error is None
        text = screen_text(app)
        status = snap.get("status")["status"]
        assert f"collector {status['health']}" in text and "probe n/a" in text and api in text
        bps, pps = status["rates"]["1s"]["bps"], status["rates"]["1s"]["pps"]
        assert f"total {units.rate(bps)} {units.pps(pps)}" in text
        assert "PAUSED" in text

        # 1 objects: exactly the API's values
        (obj,) = snap.get("objects")["objects"]
        assert obj == get(api + "/api/v1/objects")["objects"][0] | {"rates": obj["rates"]}  # counters are final
        assert shown(app.query_one("#objects-table", LiveTable)) == [[
            "all", units.rate(obj["rates"]["1s"]["bps"]), units.pps(obj["rates"]["1s"]["pps"]),
            units.si(obj["rates"]["1s"]["flows"]), units.volume(obj["bytes"]), "pairs protos"]]

        # 2 moving averages: key, value, threshold, % of threshold, state
        await pilot.press("2")
        (m,) = snap.get("mavg")["mavg"]
        rows = shown(app.query_one("#mavg-table", LiveTable))
        assert len(rows) == len(m["top"])
        for row, top in zip(rows, m["top"]):
            rate = top["rates"][0]
            raised = top["levels"][0]["raised"]
            assert row == [" ".join(top["key"]), units.count(rate, "p/s"), "100 p/s", f"{rate:.0f}%",
                           "ddos!" if raised else "ok", "all/pps"]
        assert "ddos!" in screen_text(app)

        # 3 top talkers with the "other" row, equal to the window's last exported table
        await pilot.press("3")
        windows = {f"{w['object']}/{w['window']}": w for w in get(api + "/api/v1/windows")["windows"]}
        assert shown(app.query_one("#windows", LiveTable))[0][0] == "all/pairs"
        last = windows["all/pairs"]["last"]
        want = [[units.volume(o), s, d] for o, s, d in last["rows"]] + [[units.volume(last["other"][0]), "(other)", ""]]
        assert shown(app.query_one("#top-table", LiveTable)) == want
        text = screen_text(app)
        assert "(other)" in text and last["rows"][0][1] in text
        # w: the next window
        await pilot.press("w")
        last = windows["all/protos"]["last"]
        assert shown(app.query_one("#top-table", LiveTable))[:len(last["rows"])] == [
            [units.count(p), str(proto)] for p, proto in last["rows"]]
        assert "top talkers all/protos" in screen_text(app)

        # 4 alerts
        await pilot.press("4")
        active = snap.get("alerts")["active"]
        rows = shown(app.query_one("#alerts-table", LiveTable))
        assert len(rows) == len(active) + len(snap.get("alerts")["past"])
        assert {r[2] for r in rows if r[0] in ("ACTIVE", "ENDING")} == {" ".join(a["key"]) for a in active}

        # 5 exporters: the probe (loopback) with its counters
        await pilot.press("5")
        (e,) = get(api + "/api/v1/exporters")["exporters"]
        (row,) = shown(app.query_one("#exporters-table", LiveTable))
        assert row[:2] == ["probe", "127.0.0.1"] and row[5:] == ["1", "0", "0"]
        assert "probe: not available" in screen_text(app)
        assert e["records"] == RECORDS


@pytest.mark.slow
@sync
async def test_keys_sort_filter_drill_pause_units(api: str, tmp_path: Path) -> None:
    app = make_app(api, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        # sort: the cursor stays on the same key
        await pilot.press("2")
        table = app.query_one("#mavg-table", LiveTable)
        await pilot.press("down", "down", "down")
        key = table.cursor_key
        await pilot.press("s")  # by key (text, ascending)
        assert table.sort_column == "key" and table.cursor_key == key
        keys = [r[0] for r in shown(table)]
        assert keys == sorted(keys, key=str.lower)
        await pilot.press("S")
        assert [r[0] for r in shown(table)] == keys[::-1] and table.cursor_key == key
        await pilot.press("s")  # by value, biggest first
        values = [table.get_row(r.key)[1].value for r in table.ordered_rows]
        assert table.sort_column == "value" and values == sorted(values, reverse=True)
        assert table.cursor_key == key

        # / quick filter, Esc clears
        await pilot.press("slash", *"34.58")
        assert app.query_one("#filter").has_class("shown")
        rows = shown(table)
        assert rows and all("34.58" in " ".join(r) for r in rows) and len(rows) < len(table._rows)
        await pilot.press("enter")
        assert table.has_focus and table.filter_text == "34.58"
        await pilot.press("escape")
        assert table.filter_text == "" and len(shown(table)) == len(table._rows)

        # Enter on an object: its flow tail; Esc back
        await pilot.press("1", "enter")
        assert isinstance(app.screen, DetailScreen)
        await until(pilot, lambda: "flow tail of all: newest" in screen_text(app))
        doc = get(api + "/api/v1/flows?object=all&limit=200")
        assert f"of {doc['offered']} matched" in screen_text(app)
        rows = shown(app.screen.table)
        assert len(rows) == doc["count"] and rows[0][6] == "127.0.0.1"

        # f: an expression in the collector's filter language; the rows are the API's matches
        await pilot.press("f", *"proto udp", "enter")
        await until(pilot, lambda: "flow tail of all where proto udp:" in screen_text(app))
        doc = get(api + "/api/v1/flows?object=all&limit=200&filter=proto%20udp")
        tail = get(api + "/api/v1/flows?object=all&limit=10000")["flows"]  # all it keeps (api-flows)
        assert doc["flows"] == [f for f in tail if f["proto"] == 17][-200:] and doc["count"] > 0
        await until(pilot, lambda: len(shown(app.screen.table)) == doc["count"])
        assert {r[3] for r in shown(app.screen.table)} == {"udp"}  # protocols by name (fields.readable)
        # a bad one: the API's message with the position, no rows
        await pilot.press("f", *" and port", "enter")
        await until(pilot, lambda: "bad filter: filter:1:" in screen_text(app))
        assert "^" in screen_text(app) and shown(app.screen.table) == []
        # Esc clears the expression (the whole tail again), Esc once more goes back
        await pilot.press("escape")
        assert app.screen.expr == "" and isinstance(app.screen, DetailScreen)
        await until(pilot, lambda: len(shown(app.screen.table)) == min(200, len(tail)))
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)

        # Enter on a window: its whole table; on an exporter: every counter
        await pilot.press("3")
        app.query_one("#windows", LiveTable).focus()
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen) and "(other)" in screen_text(app)
        await pilot.press("escape", "5", "enter")
        assert isinstance(app.screen, DetailScreen)
        rows = {r[0]: r[1] for r in shown(app.screen.table)}
        assert rows["records"] == str(RECORDS) and rows["counters.records"] == str(RECORDS)
        await pilot.press("escape", "4", "enter")
        assert isinstance(app.screen, DetailScreen) and "threshold" in dict(shown(app.screen.table))
        # the action script's result: exit status, duration, output (newlines shown as ⏎)
        await until(pilot, lambda: dict(shown(app.screen.table)).get("scripts.action.status") == "exited")
        rows = dict(shown(app.screen.table))
        key = rows["key"]
        assert rows["scripts.action.exit"] == "2" and rows["scripts.action.output"] == f"banned {key} ⏎"
        assert float(rows["scripts.action.duration_s"]) < 5 and rows["scripts.back2norm"] == "null"
        await pilot.press("escape", "2", "enter")
        assert isinstance(app.screen, DetailScreen) and dict(shown(app.screen.table))["mo"] == "all"
        await pilot.press("escape")

        # b: bytes instead of bits
        await pilot.press("3")
        w = next(w for w in get(api + "/api/v1/windows")["windows"] if w["window"] == "pairs")
        assert shown(app.query_one("#top-table", LiveTable))[0][0] == units.volume(w["last"]["rows"][0][0])
        await pilot.press("b")
        assert shown(app.query_one("#top-table", LiveTable))[0][0] == units.volume(w["last"]["rows"][0][0], True)
        assert "MB" in screen_text(app)
        await pilot.press("b")

        # p: paused, data keeps arriving; [ ] travel through the history
        await pilot.press("p")
        frozen, n = app.shown, app.updates
        await until(pilot, lambda: app.updates >= n + 3)
        assert app.shown is frozen and app.history[-1] is not frozen and "PAUSED" in screen_text(app)
        await pilot.press("left_square_bracket")
        hist = list(app.history)
        assert app.shown is hist[hist.index(frozen) - 1]
        await pilot.press("p")
        assert app.frozen is None and app.shown is app.history[-1]
        await pilot.press("left_square_bracket", "left_square_bracket")
        hist = list(app.history)
        # two steps back from the newest at the first press; newer ones may arrive meanwhile
        assert app.frozen is not None and hist.index(app.frozen) <= len(hist) - 3
        for _ in range(len(app.history) + 1):
            await pilot.press("right_square_bracket")
        assert app.frozen is None and "PAUSED" not in screen_text(app)


@pytest.mark.slow
@sync
async def test_help_export_theme_palette_and_stale(api: str, tmp_path: Path) -> None:
    now = [0.0]
    app = make_app(api, tmp_path, clock=lambda: now[0] or time.time())
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        # ? lists every binding of the key table
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_table = app.screen.query_one("#help")
        keys = [str(help_table.get_row_at(i)[1]) for i in range(help_table.row_count)]
        assert keys == [key_label(k.key) for k in KEYS]
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        # e: the current view to CSV and JSON, raw values
        await pilot.press("3", "e")
        doc = json.loads(app.last_export.with_suffix(".json").read_text())
        w = next(w for w in get(api + "/api/v1/windows")["windows"] if w["window"] == "pairs")
        assert [list(r.values()) for r in doc["rows"]] == [*w["last"]["rows"], w["last"]["other"]]
        csv_lines = app.last_export.with_suffix(".csv").read_text().splitlines()
        assert csv_lines[0] == "octets,src_host,dst_host" and csv_lines[1].startswith(str(w["last"]["rows"][0][0]))

        # t: the next theme
        before = app.theme
        await pilot.press("t")
        assert app.theme != before

        # ctrl+p: the command palette runs our actions by name
        await pilot.press("ctrl+p")
        await pilot.press(*"bits/s")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.in_bytes)

        # the clock runs ahead of the collector's snapshots: STALE
        snap_time = app.history[-1].time
        assert snap_time is not None
        now[0] = snap_time + 30
        app.render_snapshot()
        assert "STALE" in screen_text(app) and "30.0s ago" in screen_text(app)


@sync
async def test_collector_down_says_so(tmp_path: Path) -> None:
    app = MirrorflowApp(f"http://127.0.0.1:{free_port(socket.SOCK_STREAM)}", interval=0.25, export_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.updates >= 1)
        text = screen_text(app)
        assert "collector DOWN" in text and "STALE" in text
        for key in ("1", "2", "3", "4", "5", "s", "b", "p", "enter", "escape"):  # nothing breaks without data
            await pilot.press(key)
