"""Small helpers for tests that run `mirrorflow collect` as a process and talk to it on 127.0.0.1.

Imported by test_api_collect.py, test_tui_live.py, test_mavg_live.py and test_objects_live.py
(no tests of its own).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port on 127.0.0.1 free a moment ago (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    """GET a live-API URL: the decoded JSON, or the text of any other content type."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read()
        return json.loads(body) if resp.headers["Content-Type"] == "application/json" else body.decode()


def poll(pred: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """pred's first truthy value within `timeout` s (an OSError counts as not yet), else None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_for(pred: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Like poll, but a timeout fails the test."""
    value = poll(pred, timeout, 0.1)
    if not value:
        raise AssertionError("timed out")
    return value
