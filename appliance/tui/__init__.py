"""The Textual dashboard: a client of the collector's live API only (docs/api.md)."""

from __future__ import annotations

from appliance.tui.client import ApiClient, ApiUnavailable, Snapshot, TuiError

__all__ = ["ApiClient", "ApiUnavailable", "Snapshot", "TuiError"]
