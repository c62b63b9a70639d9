"""devices.conf: per-exporter settings in xenoeye's format (IPv4 and IPv6 exporters).

```
[
  {"ip": "192.0.2.1", "sampling-rate": 1000},          // every source id of this exporter
  {"ip": "2001:db8::1", "id": 256, "sampling-rate": 512}, // one source id only
  {"ip": "192.0.2.2",                                   // listed without a rate: rate 1
   "interfaces": {"1": "ge-0/0/1", "2": {"name": "xe-1/0/0", "description": "uplink"}}}
]
```

Unlike xenoeye, an entry without ``sampling-rate`` means rate 1 (not 0), an entry with
``ip`` and ``id`` matches only that pair, and IPv6 exporters work. ``mark`` and
``skip-unmarked`` are kept for the monitoring objects. ``interfaces`` names the exporter's
ifIndexes (flows get ``in_if_name`` / ``out_if_name``, field ``if-name``); names are per
exporter address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from appliance.collector.config._keys import key_warnings
from appliance.collector.config.jsonc import ConfigError, read_text
from appliance.collector.config.jsonpos import Located, load_located
from appliance.collector.receive.packets import address_to_words

__all__ = ["Device", "load_devices", "parse_devices", "DEVICE_KEYS"]

#: the keys of a devices.conf entry (others get a warning)
DEVICE_KEYS = frozenset({"ip", "id", "sampling-rate", "mark", "skip-unmarked", "interfaces"})
#: most interfaces one entry may name
MAX_INTERFACES = 65536


@dataclass(frozen=True, slots=True)
class Device:
    """One devices.conf entry."""

    ip: str
    source_id: int | None = None
    sampling_rate: int = 1
    mark: tuple[str, ...] = field(default_factory=tuple)
    skip_unmarked: bool = False
    #: (ifIndex, name, description) of the exporter's interfaces
    interfaces: tuple[tuple[int, str, str], ...] = field(default_factory=tuple)

    @property
    def address_words(self) -> tuple[int, int]:
        return address_to_words(self.ip)


def parse_devices(doc: object, path: str = "devices.conf", loc: Located | None = None,
                  warnings: list[str] | None = None) -> list[Device]:
    """Validate a parsed devices.conf document.

    Args:
        doc: the parsed JSON.
        path: the file, for messages.
        loc: positions of the values (`load_devices` passes them): errors then point at
            the line and column of the offending value; without it, at 1:1.
        warnings: where a warning per unknown key goes (FILE:LINE:COLUMN: warning: ...).

    Raises:
        ConfigError: the first problem, as FILE:LINE:COLUMN: what to write instead.
    """

    def error(where: tuple, message: str) -> ConfigError:
        line, col = loc.where(where) if loc is not None else (1, 1)
        return ConfigError(path, line, col, message)

    if not isinstance(doc, list):
        raise error((), 'devices.conf must be a JSON array of objects: [{"ip": "192.0.2.1", ...}]')
    devices = []
    for i, entry in enumerate(doc):
        where = f"entry {i + 1}"
        if not isinstance(entry, dict):
            raise error((i,), f"{where}: must be an object like {{\"ip\": \"192.0.2.1\"}}")
        if warnings is not None:
            for k, message in key_warnings(entry, DEVICE_KEYS, f"{where}: devices.conf key"):
                line, col = loc.where((i, k), key=True) if loc is not None else (1, 1)
                warnings.append(f"{path}:{line}:{col}: warning: {message}")
        ip = entry.get("ip")
        if not isinstance(ip, str):
            raise error((i, "ip") if "ip" in entry else (i,),
                        f"{where}: \"ip\" (the exporter address) is required, as a string")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise error((i, "ip"), f"{where}: \"ip\": {ip!r} is not an IPv4 or IPv6 address") from None
        sid = entry.get("id")
        if sid is not None and (isinstance(sid, bool) or not isinstance(sid, int) or not 0 <= sid <= 0xFFFFFFFF):
            raise error((i, "id"), f"{where}: \"id\" must be a source id (0..4294967295)")
        rate = entry.get("sampling-rate", 1)
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
            raise error((i, "sampling-rate"), f"{where}: \"sampling-rate\" must be a positive integer")
        mark = entry.get("mark", [])
        if isinstance(mark, str):
            mark = [mark]
        if not isinstance(mark, list) or not all(isinstance(m, str) for m in mark):
            raise error((i, "mark"), f"{where}: \"mark\" must be a list of filters (strings)")
        skip = entry.get("skip-unmarked", False)
        if not isinstance(skip, bool):
            raise error((i, "skip-unmarked"), f"{where}: \"skip-unmarked\" must be true or false")
        ifs = entry.get("interfaces", {})
        if not isinstance(ifs, dict) or len(ifs) > MAX_INTERFACES:
            raise error((i, "interfaces"), f'{where}: "interfaces" must be an object like {{"1": "ge-0/0/1"}} '
                                           f"(at most {MAX_INTERFACES})")
        named = []
        for k, v in ifs.items():
            name, desc = (v, "") if isinstance(v, str) else ((v.get("name"), v.get("description", ""))
                                                            if isinstance(v, dict) else (None, None))
            if not (k.isdigit() and int(k) <= 0xFFFFFFFF) or not isinstance(name, str) or not isinstance(desc, str):
                raise error((i, "interfaces", k), f'{where}: "interfaces": {k!r} must be an ifIndex with a name or '
                                                  '{"name": ..., "description": ...}')
            named.append((int(k), name, desc))
        devices.append(Device(ip, sid, rate, tuple(mark), skip, tuple(named)))
    return devices


def load_devices(path: Path | str, warnings: list[str] | None = None) -> list[Device]:
    """Read devices.conf (errors and warnings carry its line and column)."""
    p = Path(path)
    loc = load_located(read_text(p), str(p))
    return parse_devices(loc.doc, str(p), loc, warnings)
