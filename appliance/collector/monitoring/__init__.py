"""Monitoring: objects' fixed windows (`Monitor`, `FixedWindow`), moving averages with
thresholds (`MovingAverages`), and the actions they run (scripts, notification files)."""

from __future__ import annotations

from appliance.collector.config.averages import MavgSpec
from appliance.collector.config.objects import WindowSpec
from appliance.collector.monitoring.actions import ScriptRunner
from appliance.collector.monitoring.alerts import Alert, MovingAverages, ReplaySlicer
from appliance.collector.monitoring.mavg import MovingAverage
from appliance.collector.monitoring.monitor import Monitor, WindowExporter
from appliance.collector.monitoring.windows import FixedWindow, WindowTable

__all__ = ["ScriptRunner", "Alert", "MovingAverages", "ReplaySlicer", "MavgSpec", "MovingAverage", "Monitor",
           "WindowExporter", "FixedWindow", "WindowSpec", "WindowTable"]
