"""`load_runtime`: IP lists, devices.conf and the mo-dir tree, validated all together.

It returns all of it or raises `ConfigErrors` with every problem found. The pipeline calls
it at start (refusing to start on errors) and on SIGHUP (keeping the running configuration
on errors); ``mirrorflow check-config`` prints the same errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.collector.config.devices import Device, load_devices
from appliance.collector.config.jsonc import ConfigError
from appliance.collector.config.objects import ConfigErrors, MonitoringObject, load_objects
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.filter import FilterError, IPLists, compile_filter

__all__ = ["Runtime", "load_runtime"]


@dataclass(slots=True)
class Runtime:
    """A complete, valid monitoring configuration."""

    objects: list[MonitoringObject] = field(default_factory=list)
    iplists: IPLists = field(default_factory=IPLists.empty)
    devices: list[Device] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_runtime(cfg: CollectorConfig) -> Runtime:
    """IP lists, devices.conf and monitoring objects, all validated.

    Raises:
        ConfigErrors: every problem found (file:line:column and what to do).
    """
    errors: list[ConfigError] = []
    rt = Runtime()
    if cfg.iplists_dir is not None:
        try:
            rt.iplists = IPLists.load(cfg.iplists_dir)
        except FilterError as exc:
            errors.append(exc)
    if cfg.devices_file is not None:
        try:
            rt.devices = load_devices(cfg.devices_file, rt.warnings)
        except ConfigError as exc:
            errors.append(exc)
        for i, dev in enumerate(rt.devices):
            for text in dev.mark:
                try:
                    compile_filter(text, rt.iplists, f"{cfg.devices_file} entry {i + 1} mark")
                except FilterError as exc:
                    errors.append(exc)
    if cfg.mo_dir is not None:
        try:
            rt.objects = load_objects(cfg.mo_dir, rt.iplists, rt.warnings)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    return rt
