"""The probe's settings: one dataclass filled from the command line and/or a config file."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from appliance.probe.attach import DEFAULT_STATE_DIR, HOOKS, XDP_MODES
from appliance.probe.errors import ProbeConfigError
from appliance.probe.records import KeyField, SamplerMode

__all__ = ["ProbeSettings", "parse_sampler", "parse_key_fields", "parse_mac", "load_config_file"]


#: Kernel map entries by default: a map is drained every scan (4x sooner when it is half
#: full), so 2**19 entries take 2 M new flows per second at a 1 s scan interval, while an
#: empty drain walks 4x fewer buckets and the map's memory is 4x smaller than at 2 M.
MAP_FLOWS_AUTO = 1 << 19


@dataclass(slots=True)
class ProbeSettings:
    """Everything `mirrorflow probe` can be told (CLI option = config key with '_' → '-')."""

    interfaces: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    protocol: int = 9
    active_timeout: float = 60.0  # ipt_netflow: 1800; 60 keeps collector averages live
    inactive_timeout: float = 15.0
    tcp_end_timeout: float | None = None  # seconds idle after FIN/RST; None: off
    maxflows: int = 2_000_000
    #: entries of each kernel flow map: what arrives between two scans (the table keeps the
    #: rest); 0 = min(maxflows, MAP_FLOWS_AUTO)
    map_flows: int = 0
    #: above this fill of the flow table the flows idle longest are ended early (reason 5)
    #: until it is 15 points lower, so new flows find room (ipt_netflow's emergency expiry)
    emergency_fill: float = 0.9
    sampler: str = ""  # "deterministic:N", "random:N", "hash:N"
    key: str = "full"  # granularity, see parse_key_fields
    mpls: bool = True
    macs: bool = True
    promisc: bool = True
    attach: str = "tc"  # "tc" (clsact ingress) or "xdp"
    xdp_mode: str = "native"  # with attach "xdp": "native" (driver) or "generic" (any NIC)
    mtu: int = 1400
    source_id: int = 0
    template_refresh_packets: int = 20
    template_refresh_seconds: float = 1800.0
    options_interval: float = 60.0
    names_interval: float = 300.0  # interface names options (ipt_netflow: every 5 minutes)
    direction_mac: str = ""  # MAC of the mirrored router/host: exports flowDirection
    scan_interval: float = 1.0
    sndbuf: int = 0
    state_dir: Path = DEFAULT_STATE_DIR

    def kernel_map_flows(self) -> int:
        """Entries of each kernel flow map."""
        return self.map_flows or min(self.maxflows, MAP_FLOWS_AUTO)

    def validate(self) -> None:
        if not self.interfaces:
            raise ProbeConfigError("no interface: give -i IFACE (or 'interfaces' in the config)")
        if not self.destinations:
            raise ProbeConfigError("no destination: give -d HOST:PORT (or 'destinations')")
        if self.attach not in HOOKS:
            raise ProbeConfigError(f"attach must be one of {', '.join(HOOKS)}, not {self.attach!r}")
        if self.xdp_mode not in XDP_MODES:
            raise ProbeConfigError(
                f"xdp-mode must be one of {', '.join(XDP_MODES)}, not {self.xdp_mode!r}"
            )
        if self.protocol not in (5, 9, 10):
            raise ProbeConfigError(f"protocol must be 5, 9 or 10, not {self.protocol}")
        if self.active_timeout <= 0 or self.inactive_timeout <= 0:
            raise ProbeConfigError("timeouts must be positive")
        if self.maxflows < 1:
            raise ProbeConfigError("maxflows must be at least 1")
        if self.map_flows < 0:
            raise ProbeConfigError("map-flows must be at least 1 (0: automatic)")
        if not 0.2 <= self.emergency_fill <= 1:
            raise ProbeConfigError("emergency-fill must be between 0.2 and 1 (1 = off)")
        if not 0.01 <= self.scan_interval <= 60:
            raise ProbeConfigError("scan-interval must be between 0.01 and 60 s")
        if not 0 <= self.source_id < 2**32:
            raise ProbeConfigError("source-id must fit 32 bits")
        parse_sampler(self.sampler)
        parse_key_fields(self.key)
        if self.direction_mac:
            parse_mac(self.direction_mac)
            if not self.macs:
                raise ProbeConfigError("direction-mac needs the MAC addresses: drop --no-macs")


def parse_sampler(text: str) -> tuple[SamplerMode, int]:
    """``MODE:N`` with MODE deterministic, random or hash (ipt_netflow's syntax); '' = off."""
    if not text or text in ("off", "none"):
        return SamplerMode.OFF, 1
    mode, _, n = text.partition(":")
    try:
        m = SamplerMode[mode.upper()]
        rate = int(n)
    except (KeyError, ValueError):
        raise ProbeConfigError(
            f"sampler {text!r}: expected deterministic:N, random:N or hash:N"
        ) from None
    if m == SamplerMode.OFF or rate < 1:
        raise ProbeConfigError(f"sampler {text!r}: N must be at least 1")
    return m, rate


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (or with '-') → 6 bytes."""
    parts = re.split(r"[:-]", text.strip())
    try:
        if len(parts) != 6:
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ProbeConfigError(f"MAC address {text!r}: expected aa:bb:cc:dd:ee:ff") from None


_KEY_PARTS = {
    "ports": KeyField.PORTS, "tos": KeyField.TOS, "vlan": KeyField.VLAN,
    "ifindex": KeyField.IFINDEX, "src": KeyField.SRC, "dst": KeyField.DST,
    "proto": KeyField.PROTO,
}


def parse_key_fields(text: str) -> KeyField:
    """'full', or a comma list of parts to keep: src,dst,proto,ports,tos,vlan,ifindex."""
    if text in ("", "full"):
        return KeyField.full()
    out = KeyField(0)
    for part in text.split(","):
        p = part.strip()
        if p not in _KEY_PARTS:
            raise ProbeConfigError(f"key part {p!r}: expected one of {', '.join(_KEY_PARTS)}")
        out |= _KEY_PARTS[p]
    return out


def load_config_file(path: Path, settings: ProbeSettings) -> None:
    """Fills `settings` from a JSON file (``//`` and ``/* */`` comments allowed).

    Keys are the long option names (``active-timeout`` or ``active_timeout``).
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProbeConfigError(f"{path}: {exc.strerror}") from None
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"(?m)^\s*//.*$", "", text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProbeConfigError(f"{path}:{exc.lineno}: {exc.msg}") from None
    section = data.get("probe", data)
    known = {f.name for f in fields(ProbeSettings)}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ProbeConfigError(f"{path}: unknown probe setting {key!r}")
        if name == "state_dir":
            value = Path(value)
        if name in ("interfaces", "destinations") and isinstance(value, str):
            value = [value]
        setattr(settings, name, value)
