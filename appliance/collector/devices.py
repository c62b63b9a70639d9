"""devices.conf: per-exporter settings in xenoeye's format (IPv4 and IPv6 exporters).

```
[
  {"ip": "192.0.2.1", "sampling-rate": 1000},          // every source id of this exporter
  {"ip": "2001:db8::1", "id": 256, "sampling-rate": 512}, // one source id only
  {"ip": "192.0.2.2"}                                   // listed without a rate: rate 1
]
```

Unlike xenoeye, an entry without ``sampling-rate`` means rate 1 (not 0), an entry with
``ip`` and ``id`` matches only that pair, and IPv6 exporters work. ``mark`` and
``skip-unmarked`` are kept for the monitoring objects.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from appliance.collector.jsonc import ConfigError, load
from appliance.collector.packets import address_to_words

__all__ = ["Device", "load_devices", "parse_devices"]


@dataclass(frozen=True, slots=True)
class Device:
    """One devices.conf entry."""

    ip: str
    source_id: int | None = None
    sampling_rate: int = 1
    mark: tuple[str, ...] = field(default_factory=tuple)
    skip_unmarked: bool = False

    @property
    def address_words(self) -> tuple[int, int]:
        return address_to_words(self.ip)


def parse_devices(doc: object, path: str = "devices.conf") -> list[Device]:
    """Validate a parsed devices.conf document."""
    if not isinstance(doc, list):
        raise ConfigError(path, 1, 1, "devices.conf must be a JSON array of objects")
    devices = []
    for i, entry in enumerate(doc):
        where = f"entry {i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(path, 0, 0, f"{where}: must be an object like {{\"ip\": \"192.0.2.1\"}}")
        ip = entry.get("ip")
        if not isinstance(ip, str):
            raise ConfigError(path, 0, 0, f"{where}: \"ip\" (the exporter address) is required")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ConfigError(path, 0, 0, f"{where}: \"ip\": {ip!r} is not an IPv4 or IPv6 address") from None
        sid = entry.get("id")
        if sid is not None and (not isinstance(sid, int) or not 0 <= sid <= 0xFFFFFFFF):
            raise ConfigError(path, 0, 0, f"{where}: \"id\" must be a source id (0..4294967295)")
        rate = entry.get("sampling-rate", 1)
        if not isinstance(rate, int) or rate < 1:
            raise ConfigError(path, 0, 0, f"{where}: \"sampling-rate\" must be a positive integer")
        mark = entry.get("mark", [])
        if isinstance(mark, str):
            mark = [mark]
        devices.append(Device(ip, sid, rate, tuple(mark), bool(entry.get("skip-unmarked", False))))
    return devices


def load_devices(path: Path | str) -> list[Device]:
    """Read devices.conf."""
    return parse_devices(load(path), str(path))
