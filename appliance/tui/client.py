"""Fetching the live API: one :class:`Snapshot` per tick, no rendering here.

The transport is a callable ``get(path) -> dict`` so tests can hand in recorded JSON; the
default one is stdlib urllib (the appliance has no httpx).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance import MirrorflowError

__all__ = ["ApiClient", "ApiUnavailable", "Snapshot", "TuiError", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8787"

#: the endpoints one tick reads (the panels' fetch functions pick their part)
ENDPOINTS = ("status", "objects", "mavg", "windows", "alerts", "exporters")

Transport = Callable[[str], dict[str, Any]]


class TuiError(MirrorflowError):
    """Base of the TUI's errors."""


class ApiUnavailable(TuiError):
    """The collector's API did not answer (not running, wrong --url, or an error response)."""


@dataclass(frozen=True)
class Snapshot:
    """Everything one tick fetched: the raw JSON per endpoint, unchanged.

    ``fetched_at`` is the client's clock; ``error`` is set when the collector did not answer
    (then ``docs`` is what the previous tick had, so the screen keeps the last values).
    """

    docs: dict[str, dict[str, Any]]
    fetched_at: float
    error: str | None = None
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, name: str) -> dict[str, Any]:
        return self.docs.get(name) or {}

    @property
    def time(self) -> float | None:
        """When the collector took this snapshot (``snapshot.time``), None before any."""
        meta = self.get("status").get("snapshot")
        return float(meta["time"]) if meta else None

    @property
    def seq(self) -> int | None:
        meta = self.get("status").get("snapshot")
        return int(meta["seq"]) if meta else None


def urllib_transport(base_url: str, timeout: float = 2.0) -> Transport:
    base = base_url.rstrip("/")

    def get(path: str) -> dict[str, Any]:
        url = base + path
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = str(exc)
            raise ApiUnavailable(f"{url}: HTTP {exc.code}: {message}") from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiUnavailable(f"{base}: {reason} (is `mirrorflow collect` running with --api?)") from None

    return get


class ApiClient:
    """Reads the live API at ``url``.

    Args:
        url: the API's base URL (``http://127.0.0.1:8787``).
        transport: ``get(path) -> dict``; defaults to urllib against ``url``.
        clock: wall clock, injectable for tests.
    """

    def __init__(self, url: str = DEFAULT_URL, transport: Transport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url.rstrip("/")
        self.get = transport or urllib_transport(self.url)
        self.clock = clock
        self._last: dict[str, dict[str, Any]] = {}

    def fetch(self, extra: dict[str, str] | None = None) -> Snapshot:
        """Fetch every endpoint of a tick (plus ``extra``: name -> path, e.g. a flow tail).

        Never raises for an unreachable API: the snapshot carries the error and the last docs.
        """
        docs: dict[str, dict[str, Any]] = {}
        more: dict[str, dict[str, Any]] = {}
        try:
            for name in ENDPOINTS:
                docs[name] = self.get(f"/api/v1/{name}")
            for name, path in (extra or {}).items():
                try:
                    more[name] = self.get(path)
                except ApiUnavailable as exc:  # e.g. an object removed by a reload: 404
                    more[name] = {"error": {"message": str(exc)}}
        except ApiUnavailable as exc:
            return Snapshot(dict(self._last), self.clock(), str(exc))
        self._last = docs
        return Snapshot(docs, self.clock(), None, more)
