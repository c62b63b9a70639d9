"""Names people read: protocol numbers and ICMP/ICMPv6 types and codes as words.

``6`` → ``tcp``; an ICMP flow's type and code (element 32/139, else what exporters put in the
destination port: type × 256 + code) → ``echo-request``, ``dest-unreach port``. Used by
``decode``'s text output and the TUI; filters keep reading numbers and the names of
`appliance.collector.fields.table.PROTOCOLS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.collector.fields.table import PROTOCOLS

__all__ = ["protocol_name", "icmp_name", "icmp_type_code", "readable"]

#: the one name each protocol number is shown by (the first spelling of PROTOCOLS)
_PROTO_NAME: dict[int, str] = {}
for _name, _num in PROTOCOLS.items():
    _PROTO_NAME.setdefault(_num, _name)
_PROTO_NAME[58] = "icmp6"  # tcpdump's; /etc/protocols says ipv6-icmp
_PROTO_NAME[4] = "ipencap"  # as /etc/protocols (filters also take ipip, tcpdump's word)

# ICMP (RFC 792 and IANA) and ICMPv6 (RFC 4443, 4861) types, tcpdump's/iptables' spellings
_ICMP4 = {
    0: "echo-reply", 3: "dest-unreach", 4: "source-quench", 5: "redirect", 8: "echo-request",
    9: "router-advert", 10: "router-solicit", 11: "time-exceeded", 12: "param-problem",
    13: "timestamp-request", 14: "timestamp-reply", 17: "mask-request", 18: "mask-reply",
}
_ICMP4_CODES = {
    3: {0: "net", 1: "host", 2: "protocol", 3: "port", 4: "frag-needed", 5: "source-route-failed",
        6: "net-unknown", 7: "host-unknown", 9: "net-prohibited", 10: "host-prohibited",
        11: "net-tos", 12: "host-tos", 13: "admin-prohibited"},
    5: {0: "net", 1: "host", 2: "tos-net", 3: "tos-host"},
    11: {0: "ttl", 1: "reassembly"},
}
_ICMP6 = {
    1: "dest-unreach", 2: "packet-too-big", 3: "time-exceeded", 4: "param-problem",
    128: "echo-request", 129: "echo-reply", 130: "mld-query", 131: "mld-report", 132: "mld-done",
    133: "router-solicit", 134: "router-advert", 135: "neighbor-solicit", 136: "neighbor-advert",
    137: "redirect", 143: "mld2-report",
}
_ICMP6_CODES = {
    1: {0: "no-route", 1: "admin-prohibited", 2: "beyond-scope", 3: "address", 4: "port",
        5: "policy-failed", 6: "reject-route"},
    3: {0: "hop-limit", 1: "reassembly"},
}


def protocol_name(proto: int) -> str:
    """``6`` → ``tcp``; unknown numbers stay numbers (``253``)."""
    return _PROTO_NAME.get(proto, str(proto))


def icmp_name(proto: int, type_code: int) -> str:
    """An ICMP (proto 1) or ICMPv6 (58) flow's type × 256 + code as words: ``echo-request``,
    ``dest-unreach port``; unknown types as ``type 42 code 1``."""
    t, c = type_code >> 8 & 0xFF, type_code & 0xFF
    types, codes = (_ICMP6, _ICMP6_CODES) if proto == 58 else (_ICMP4, _ICMP4_CODES)
    name = types.get(t)
    if name is None:
        return f"type {t} code {c}"
    if t in codes:
        return f"{name} {codes[t].get(c, f'code {c}')}"
    return name if c == 0 else f"{name} code {c}"


def icmp_type_code(rec: Mapping[str, Any]) -> int | None:
    """The type × 256 + code of a decoded record (`decode` dicts), or None if not ICMP."""
    proto = rec.get("proto", rec.get("next_header6"))
    if proto not in (1, 58):
        return None
    for key in ("icmp_type", "icmp_type6"):
        v = rec.get(key)
        if isinstance(v, int) and v:
            return v
    t = rec.get("icmp_type4", rec.get("icmp_type6_only"))
    if isinstance(t, int):
        return t << 8 | int(rec.get("icmp_code4", rec.get("icmp_code6", 0)) or 0)
    v = rec.get("dst_port")
    return v if isinstance(v, int) else 0


def readable(rec: dict[str, Any]) -> dict[str, Any]:
    """A decoded record with the protocol as its name and an ICMP flow's type and code as
    ``icmp=echo-request`` (for the text output; jsonl keeps the numbers)."""
    proto = rec.get("proto")
    tc = icmp_type_code(rec)
    if isinstance(proto, int):
        rec["proto"] = protocol_name(proto)
    if tc is not None:
        rec["icmp"] = icmp_name(proto if isinstance(proto, int) else 1, tc)
    return rec
