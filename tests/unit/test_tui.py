"""The TUI's pure parts: units, the client over an in-memory transport, panels, the key table,
and LiveTable's changed-cells-only updates with the cursor kept on its row key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.app import App, ComposeResult

from appliance.collector.api.schema import SCHEMAS, validate
from appliance.tui import units
from appliance.tui.client import ApiClient, ApiUnavailable
from appliance.tui.keys import KEYS, bindings, help_rows
from appliance.tui.panels import View, exporters, header, mavg, objects, sampled, windows
from appliance.tui.table import Cell, Column, LiveTable, Row, num
from tests.unit.test_tui_docs import Recorded, T, docs


def test_units() -> None:
    assert units.rate(47224544.104) == "47.2 Mb/s"
    assert units.rate(47224544.104, in_bytes=True) == "5.90 MB/s"
    assert units.rate(0.0) == "0 b/s" and units.rate(None) == "-"
    assert units.rate(8800, sampled=True) == "~8.80 kb/s"
    assert units.pps(6829.895) == "6.83 kp/s"
    assert units.si(999.4) == "999" and units.si(999.6) == "1.00 k" and units.si(1.5e12, "b") == "1.50 Tb"
    assert units.volume(15542535) == "124 Mb" and units.volume(15542535, True) == "15.5 MB"
    assert units.duration(2.6) == "2.6s" and units.duration(412) == "6m52s" and units.duration(7300) == "2h01m"


def test_client_fetches_every_endpoint_and_keeps_the_last_on_error() -> None:
    transport = Recorded()
    client = ApiClient("http://x", transport=transport, clock=lambda: T + 1)
    snap = client.fetch({"flows:gone": "/api/v1/flows?object=gone&limit=5"})
    assert snap.error is None and snap.time == T and snap.seq == 412 and snap.fetched_at == T + 1
    assert transport.calls == [f"/api/v1/{n}" for n in ("status", "objects", "mavg", "windows", "alerts", "exporters")
                               ] + ["/api/v1/flows?object=gone&limit=5"]
    assert "no monitoring object 'gone'" in snap.extra["flows:gone"]["error"]["message"]  # a 404 stays local

    def down(path: str) -> dict[str, Any]:
        raise ApiUnavailable("http://x: connection refused")

    client.get = down
    again = client.fetch()
    assert again.error == "http://x: connection refused" and again.docs == snap.docs


def test_client_over_http_says_what_to_do() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    snap = ApiClient(f"http://127.0.0.1:{port}").fetch()
    assert snap.error is not None and "mirrorflow collect" in snap.error and snap.docs == {}


def test_panels_render_the_documents() -> None:
    snap = ApiClient("http://x", transport=Recorded()).fetch()
    view = View(sampled=sampled(snap))
    assert view.sampled  # the router samples 1:10
    _, rows = objects.render(objects.fetch(snap), view)
    assert [c.plain for c in rows[0].cells][:3] == ["in", "~639 Mb/s", "~91.3 kp/s"]
    _, rows = mavg.render(mavg.fetch(snap), view)
    assert [[c.plain for c in r.cells] for r in rows] == [
        ["10.9.9.9", "~52.0 kp/s", "50.0 kp/s", "104%", "ddos!", "in/pps"],
        ["10.1.1.1", "~42.0 kp/s", "50.0 kp/s", "84%", "ok", "in/pps"],
        ["10.2.2.2", "~900 p/s", "50.0 kp/s", "2%", "ok", "in/pps"]]
    assert [str(r.cells[4].style) for r in rows] == ["bold red", "yellow", "green"]
    _, rows = exporters.render(exporters.fetch(snap), View())
    assert [r.key for r in rows] == ["127.0.0.1", "192.0.2.1"]  # the probe first
    assert rows[1].cells[2].plain.startswith("~") and not rows[0].cells[2].plain.startswith("~")
    cols, rows = windows.render_table(windows.fetch(snap)[0], View())
    assert [c.key for c in cols] == ["octets", "src_host", "dst_host"]
    assert rows[-1].pinned and [c.plain for c in rows[-1].cells] == ["147 Mb", "(other)", ""]
    data = header.fetch(snap, "http://x")
    assert [d[0] for d in data.directions] == ["in", "out"]
    assert not header.is_stale(data, T + 1) and header.is_stale(data, T + header.STALE_AFTER_S + 0.1)


def test_a_detached_probe_interface_is_shown() -> None:
    d = docs()
    problem = "probe interface ens4 detached since 2026-12-08 02:00:00 UTC (deleted, was ifindex 7): ..."
    d["status"]["status"].update(health="degraded", problems=[problem])
    d["status"]["status"]["probe"]["detached"] = ["ens4"]
    d["exporters"]["probe"]["detached"] = ["ens4"]
    validate(d["status"], SCHEMAS["/api/v1/status"])
    validate(d["exporters"], SCHEMAS["/api/v1/exporters"])
    snap = ApiClient("http://x", transport=Recorded([d])).fetch()
    text = header.render_status(header.fetch(snap, "http://x"), T + 1)
    assert "collector degraded(1)  probe DETACHED ens4  http://x" in text.plain
    assert [str(s.style) for s in text.spans if "DETACHED" in text.plain[s.start : s.end]] == ["bold red"]
    line = exporters.probe_line(exporters.fetch(snap)["probe"])
    assert line.startswith("probe pid 4242  stats 0.8s old  DETACHED ens4  ")


def test_loss_is_in_the_header_until_the_period_ends() -> None:
    d = docs()
    last = 1_765_159_800.0  # 2025-12-08 02:10:00 UTC
    d["status"]["status"].update(health="degraded", problems=["2140 packets/flows lost to exporter sequence gaps"])
    d["status"]["status"]["loss"] = {"period_s": 3600.0,
                                     "sequence_gaps": {"total": 2140, "recent": 2140, "last_at": last},
                                     "spool_refused_windows": {"total": 3, "recent": 0, "last_at": last - 7200}}
    validate(d["status"], SCHEMAS["/api/v1/status"])
    snap = ApiClient("http://x", transport=Recorded([d])).fetch()
    text = header.render_status(header.fetch(snap, "http://x"), T + 1)
    assert "collector degraded(1)  lost 2140 @02:10  probe ok" in text.plain
    assert [str(s.style) for s in text.spans if "lost" in text.plain[s.start : s.end]] == ["bold red"]


def test_key_table_generates_bindings_and_help() -> None:
    assert [(b.key, b.action) for b in bindings()] == [(k.key, k.action) for k in KEYS]
    assert len(help_rows()) == len(KEYS)
    keys = [part for k in KEYS for part in k.key.split(",")]
    assert len(keys) == len(set(keys)), "a key bound twice"


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LiveTable(id="t")


COLS = [Column("name", "name"), Column("rate", "rate", numeric=True)]


def rows(**rates: float) -> list[Row]:
    return [Row(k, [Cell(k), num(units.rate(v), v)]) for k, v in rates.items()]


def test_live_table_updates_changed_cells_only_and_keeps_the_cursor() -> None:
    async def body() -> None:
        app = TableApp()
        async with app.run_test() as pilot:
            t = app.query_one(LiveTable)
            t.set_columns(COLS)
            t.sync(rows(a=1e6, b=2e6, c=3e6))
            calls: list[tuple[str, ...]] = []
            orig_update, orig_add = t.update_cell, t.add_row

            def update_cell(row: Any, col: Any, value: Any, **kw: Any) -> None:
                calls.append(("update", str(getattr(row, "value", row)), str(getattr(col, "value", col))))
                orig_update(row, col, value, **kw)

            def add_row(*cells: Any, key: str | None = None, **kw: Any) -> Any:
                calls.append(("add", str(key)))
                return orig_add(*cells, key=key, **kw)

            t.update_cell, t.add_row = update_cell, add_row  # type: ignore[method-assign]
            t.sync(rows(a=1e6, b=2.5e6, c=3e6))
            assert calls == [("update", "b", "rate")]
            t.sort_by("rate")  # numeric: biggest first
            assert [str(r.key.value) for r in t.ordered_rows] == ["c", "b", "a"]
            t.move_cursor(row=2)  # on "a"
            calls.clear()
            t.sync(rows(a=9e6, b=2.5e6, c=3e6, d=5e6))  # a moves to the top, d is new
            assert calls == [("update", "a", "rate"), ("add", "d")]
            assert [str(r.key.value) for r in t.ordered_rows] == ["a", "d", "c", "b"]
            assert t.cursor_key == "a" and t.cursor_row == 0
            t.set_filter("d")
            assert [str(r.key.value) for r in t.ordered_rows] == ["d"]
            t.set_filter("")
            assert t.cursor_key in {"a", "d"} and t.row_count == 4
            t.sync([*rows(b=1.0), Row("other", [Cell("(other)"), num("9", 9e9)], pinned=True), *rows(z=5.0)])
            assert [str(r.key.value) for r in t.ordered_rows] == ["z", "b", "other"]  # pinned last
            assert t.export_rows() == [{"name": "z", "rate": 5.0}, {"name": "b", "rate": 1.0},
                                       {"name": "(other)", "rate": 9e9}]
            await pilot.pause()

    asyncio.run(body())


@pytest.mark.parametrize("text", ["", "10.9", "nothing-matches"])
def test_filter_is_a_substring_of_any_cell(text: str) -> None:
    t = LiveTable()
    r = rows(alpha=1.0)[0]
    t.filter_text = text
    assert t._matches(r) == (text == "" or text in "alpha 1 b/s")
