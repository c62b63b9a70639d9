"""The collector's configuration file: xenoeye.conf keys, plus Mirrorflow's own.

A xenoeye.conf works unchanged (JSON with comments). Keys the collector reads today:

```
{
  "capture": [                                   // one entry per listen address
    {"socket": {"listen-on": "0.0.0.0", "port": "2055"}},
    {"socket": {"listen-on": "::", "port": "netflow"}}   // IPv6, service names work
  ],
  "templates.db": "/var/lib/mirrorflow/templates.json",  // persisted templates
  "devices": "/etc/mirrorflow/devices.conf",              // sampling-rate overrides
  "debug.dump-flows": "none",                             // none | syslog | stdout | /path
  "rcvbufsize_m": 64,                                     // SO_RCVBUF per socket, MiB
  "stats-interval": 60,                                   // seconds between stats lines
  "stats-file": "/run/mirrorflow/collector-stats.json",   // the same statistics as JSON
  "pending-max-age": 30,                                  // seconds data waits for a template
  "mo-dir": "/var/lib/mirrorflow/mo",                     // monitoring objects (mo.conf tree)
  "iplists-dir": "/var/lib/mirrorflow/iplists",           // IP lists named in filters
  "export-dir": "/var/lib/mirrorflow/exp",                // xenoeye-style .sql files (optional)
  "db": "host=/run/postgresql dbname=mirrorflow",         // PostgreSQL DSN: COPY via the spool
  "spool-dir": "/var/lib/mirrorflow/spool",               // windows waiting for the database
  "spool-max-mb": 1024, "spool-max-files": 100000,        // the spool's bound (then: alarm)
  "notifications-dir": "/var/lib/mirrorflow/notifications", // moving-average alert files
  "script-timeout": 30,                                   // s before an alert script is killed
  "templates-per-exporter": 4096,                         // template quota of one exporter address
  "template-max-age": 3600,                               // s: unused templates are dropped
  "allowed-exporters": ["192.0.2.0/24", "2001:db8::/32"], // decode only these sources (default: all)
  "geoip": ["/var/lib/mirrorflow/geoip/dbip-country-lite.mmdb"], // .mmdb files or folders
  "geodb": "/var/lib/mirrorflow/geoip",                  // xenoeye's key: a folder of .mmdb files
  "networks": "/etc/mirrorflow/networks"                  // prefix name [role [site]] per line
}
```

Unlike xenoeye, ``listen-on`` is honoured and IPv6 works. A key Mirrorflow does not read gets a
warning with its position (``check-config`` prints it, the collector logs it at start): a typo
with the nearest known key, a xenoeye key that is not supported yet (``sflow-capture``,
``clsf-dir``, ``db-type``, ``db-export``, ``ch-codec``) named as such. ``geodb`` (xenoeye's) and
``geoip`` name .mmdb GeoIP/ASN databases or folders of them (docs/enrichment.md).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path

from appliance.collector.config._keys import XENOEYE_CONFIG_KEYS, key_warnings
from appliance.collector.config.jsonc import ConfigError, read_text
from appliance.collector.config.jsonpos import load_located

__all__ = ["CollectorConfig", "load_config", "CONFIG_KEYS"]

#: every top-level key the collector reads (the live API's keys are read by api.server)
CONFIG_KEYS = frozenset({
    "capture", "templates.db", "devices", "debug.dump-flows", "rcvbufsize_m", "stats-interval", "stats-file",
    "pending-max-age", "mo-dir", "iplists-dir", "export-dir", "db", "spool-dir", "spool-max-mb", "spool-max-files",
    "notifications-dir", "script-timeout", "api", "probe-stats", "probe-address", "api-flows",
    "templates-per-exporter", "template-max-age", "allowed-exporters",
    "geoip", "geodb", "networks",
})


@dataclass(slots=True)
class CollectorConfig:
    """What the collector needs to run (from the file, then overridden by the command line)."""

    listen: list[str] = field(default_factory=list)
    templates_file: Path | None = None
    devices_file: Path | None = None
    dump_flows: str = "none"
    dump_format: str = "text"
    rcvbuf_mb: int = 64
    stats_interval_s: float = 60.0
    pending_max_age_s: float = 30.0
    stats_file: Path | None = None
    mo_dir: Path | None = None
    iplists_dir: Path | None = None
    export_dir: Path | None = None
    db: str | None = None
    spool_dir: Path | None = None
    spool_max_mb: float = 1024.0
    spool_max_files: int = 100_000
    notifications_dir: Path | None = Path("/var/lib/mirrorflow/notifications")
    script_timeout_s: float = 30.0
    template_quota: int = 4096
    template_max_age_s: float = 3600.0
    #: networks whose datagrams are decoded; None: every source
    allowed_exporters: list[str] | None = None
    #: GeoIP/ASN .mmdb files or folders of them (appliance.collector.enrich)
    geoip: list[Path] = field(default_factory=list)
    #: the user's networks file: prefix, name, role, site (appliance.collector.enrich.networks)
    networks: Path | None = None
    raw: dict = field(default_factory=dict)
    #: FILE:LINE:COLUMN: warning: ... for keys the collector does not read
    warnings: list[str] = field(default_factory=list)


def _port(value: object, path: str) -> int:
    if isinstance(value, int):
        port = value
    elif isinstance(value, str):
        try:
            port = int(value, 0)
        except ValueError:
            try:
                port = socket.getservbyname(value, "udp")
            except OSError:
                raise ConfigError(path, 0, 0,
                                  f"capture: port {value!r} is neither a number nor a known UDP service") from None
    else:
        raise ConfigError(path, 0, 0, "capture: \"port\" must be a number or a service name")
    if not 0 < port < 65536:
        raise ConfigError(path, 0, 0, f"capture: port {port} is out of range 1..65535")
    return port


def load_config(path: Path | str) -> CollectorConfig:
    """Read a collector config file (xenoeye.conf compatible)."""
    p = str(path)
    loc = load_located(read_text(path), p)
    doc = loc.doc
    if not isinstance(doc, dict):
        raise ConfigError(p, 1, 1, "the configuration must be a JSON object")
    cfg = CollectorConfig(raw=doc)

    def warn(where: tuple, message: str) -> None:
        line, col = loc.where(where, key=True)
        cfg.warnings.append(f"{p}:{line}:{col}: warning: {message}")

    for k, message in key_warnings(doc, CONFIG_KEYS, "key", XENOEYE_CONFIG_KEYS):
        warn((k,), message)
    for i, entry in enumerate(doc.get("capture", [])):
        sock = entry.get("socket") if isinstance(entry, dict) else None
        if not isinstance(sock, dict):
            if isinstance(entry, dict) and "pcap" in entry:
                raise ConfigError(p, 0, 0, f"capture[{i}]: live pcap capture is the probe's job: "
                                           "run `mirrorflow probe -i IFACE`")
            raise ConfigError(p, 0, 0, f"capture[{i}]: expected {{\"socket\": {{\"listen-on\": ..., \"port\": ...}}}}")
        for k, message in key_warnings(entry, {"socket"}, f"capture[{i}]: key"):
            warn(("capture", i, k), message)
        for k, message in key_warnings(sock, {"listen-on", "port"}, f"capture[{i}].socket: key"):
            warn(("capture", i, "socket", k), message)
        host = sock.get("listen-on", "0.0.0.0") or "0.0.0.0"
        port = _port(sock.get("port", 2055), p)
        cfg.listen.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if "templates.db" in doc:
        cfg.templates_file = Path(doc["templates.db"])
    if "stats-file" in doc:
        cfg.stats_file = Path(doc["stats-file"])
    if "devices" in doc:
        cfg.devices_file = Path(doc["devices"])
    for key, attr in (("mo-dir", "mo_dir"), ("iplists-dir", "iplists_dir"), ("export-dir", "export_dir"),
                      ("spool-dir", "spool_dir"), ("notifications-dir", "notifications_dir")):
        if key in doc:
            if not isinstance(doc[key], str) or not doc[key]:
                raise ConfigError(p, 0, 0, f"{key} must be a directory path")
            setattr(cfg, attr, Path(doc[key]))
    if "db" in doc:
        if not isinstance(doc["db"], str):
            raise ConfigError(p, 0, 0,
                              'db must be a PostgreSQL connection string like "host=/run/postgresql dbname=mirrorflow"')
        cfg.db = doc["db"] or None
    for key in ("geoip", "geodb"):
        value = doc.get(key)
        if value is None:
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            raise ConfigError(p, 0, 0, f'{key} must be a .mmdb file or folder, or a list of them: '
                                       '["/var/lib/mirrorflow/geoip/dbip-country-lite.mmdb"]')
        cfg.geoip.extend(Path(v) for v in items)
    if "networks" in doc:
        if not isinstance(doc["networks"], str) or not doc["networks"]:
            raise ConfigError(p, 0, 0, 'networks must be the path of a networks file ("/etc/mirrorflow/networks")')
        cfg.networks = Path(doc["networks"])
    dump = doc.get("debug.dump-flows", "none")
    if not isinstance(dump, str):
        raise ConfigError(p, 0, 0, "debug.dump-flows must be \"none\", \"syslog\", \"stdout\" or a file path")
    cfg.dump_flows = dump
    for key, attr in (("rcvbufsize_m", "rcvbuf_mb"), ("stats-interval", "stats_interval_s"),
                      ("pending-max-age", "pending_max_age_s"), ("spool-max-mb", "spool_max_mb"),
                      ("spool-max-files", "spool_max_files"), ("script-timeout", "script_timeout_s"),
                      ("templates-per-exporter", "template_quota"), ("template-max-age", "template_max_age_s")):
        if key in doc:
            value = doc[key]
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(p, 0, 0, f"{key} must be a non-negative number")
            setattr(cfg, attr, value)
    if "allowed-exporters" in doc:
        nets = doc["allowed-exporters"]
        if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
            line, col = loc.where(("allowed-exporters",))
            raise ConfigError(p, line, col,
                              'allowed-exporters must be a list of networks like ["192.0.2.0/24", "2001:db8::/32"]')
        for i, n in enumerate(nets):
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                line, col = loc.where(("allowed-exporters", i))
                raise ConfigError(p, line, col, f"allowed-exporters: {n!r} is not an IPv4 or IPv6 network") from None
        cfg.allowed_exporters = list(nets)
    return cfg
