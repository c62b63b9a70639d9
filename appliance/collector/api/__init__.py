"""The live API: state counted on the collector's thread (`LiveState`), HTTP JSON and
Prometheus ``/metrics`` (`LiveApi`), flow tails, and the JSON schemas of every response."""

from __future__ import annotations

from appliance.collector.api.livestate import API_VERSION, LiveState, Snapshot
from appliance.collector.api.metrics import LABELS, render_metrics
from appliance.collector.api.schema import SCHEMAS, SchemaError, validate
from appliance.collector.api.server import ApiSettings, LiveApi, settings_from_config

__all__ = ["API_VERSION", "LiveState", "Snapshot", "LABELS", "render_metrics", "SCHEMAS", "SchemaError",
           "validate", "ApiSettings", "LiveApi", "settings_from_config"]
