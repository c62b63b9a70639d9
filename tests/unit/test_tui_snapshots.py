"""SVG snapshots of what the user sees at 80×24, on recorded documents with a frozen clock
(pytest-textual-snapshot; update with ``pytest --snapshot-update`` after a deliberate change)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pytest_textual_snapshot")

from appliance.tui.app import MirrorflowApp
from appliance.tui.client import ApiClient
from tests.unit.test_tui_docs import Recorded, T, docs

URL = "http://127.0.0.1:8787"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(tmp_path: Any) -> MirrorflowApp:
    # a sparkline's worth of ticks: the rate climbs, then the newest tick is shown 0.4 s later
    ticks = [docs(bps=1e8 * (1 + i % 7)) for i in range(12)]
    clock = lambda: T + 0.4  # noqa: E731
    client = ApiClient(URL, transport=Recorded(ticks), clock=clock)
    return MirrorflowApp(URL, client=client, interval=0, clock=clock, export_dir=tmp_path)


async def loaded(pilot: Any) -> None:
    app: MirrorflowApp = pilot.app
    while app.updates < 1:
        await pilot.pause(0.02)
    for _ in range(11):  # the rest of the ticks, synchronously
        app.receive(app.client.fetch())
    await pilot.pause()


@pytest.mark.parametrize("keys", [[], ["2"], ["3"], ["4"], ["5"], ["question_mark"], ["1", "enter"], ["b", "p"]],
                         ids=["objects", "mavg", "top", "alerts", "exporters", "help", "drill", "bytes-paused"])
def test_screens(snap_compare: Any, tmp_path: Any, keys: list[str]) -> None:
    assert snap_compare(make_app(tmp_path), press=keys, terminal_size=(80, 24), run_before=loaded)
