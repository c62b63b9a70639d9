"""Configuration: the collector config (xenoeye.conf keys), JSON with comments and positions,
devices.conf, monitoring objects (mo.conf) and `load_runtime`, which validates them together."""

from __future__ import annotations

from appliance.collector.config.devices import Device, load_devices, parse_devices
from appliance.collector.config.jsonc import ConfigError, load, loads
from appliance.collector.config.objects import ConfigErrors, MonitoringObject, WindowSpec, load_object, load_objects
from appliance.collector.config.runtime import Runtime, load_runtime
from appliance.collector.config.settings import CollectorConfig, load_config

__all__ = ["Device", "load_devices", "parse_devices", "ConfigError", "load", "loads", "ConfigErrors",
           "MonitoringObject", "WindowSpec", "load_object", "load_objects", "Runtime", "load_runtime",
           "CollectorConfig", "load_config"]
