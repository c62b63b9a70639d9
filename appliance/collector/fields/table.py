"""THE field table: what a field name reads, in filters, window ``fields``, SQL columns and dumps.

xenoeye's names (``host``, ``port``, ``tcp-flags``, ...) have a source and a destination
form. In a filter, a rule without ``src``/``dst`` matches either; in a window's ``fields``, a
two-sided name without prefix means ``src`` (as xenoeye does). Every registry field
(`appliance.netflow.registry`) is also usable by its registry name (``flow_label6``,
``in_if``, ``src_as``) or its xenoeye netflow.def alias (``l4_dst_port``); those read
exactly one column.

Where exporters put the same thing in different elements, a side lists several columns, in
order: a filter matches if any of them matches, a window key takes the first non-zero one.
``dst mac`` is the case that matters: routers send OUT_DST_MAC (57, xenoeye's element) and
our probe sends IN_DST_MAC (80), so ``dst mac`` reads 57, else 80.

Adding a field: one `FilterField` entry in `FILTER_FIELDS` (or a registry entry, for a
field the decoder should also read) — filters, windows, the SQL type and the dump text
follow from it.

The value-name tables (protocols, services, TCP flags, ...) are built in, so a filter means
the same on every machine whatever ``/etc/services`` holds; port names we do not know fall
back to ``getservbyname``.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import appliance.collector.fields.geo as geo
from appliance.netflow.registry import REGISTRY, FieldType, Registry

__all__ = ["ValueKind", "FilterField", "lookup_field", "PROTOCOLS", "SERVICES", "TCP_FLAGS",
           "PROTOCOL_SHORTHANDS", "UNSUPPORTED", "service_port", "FILTER_FIELDS", "ENRICHED_FIELDS",
           "code_value"]


class ValueKind(enum.Enum):
    """What values a field takes and how they match."""

    INT = "a number, a range lo-hi or a name"
    FLAGS = "TCP flag names (syn, ack+psh) or a number/range"
    IP = "an IPv4/IPv6 address or prefix, or an IP list name"
    IP4 = "an IPv4 address or prefix, or an IP list name"
    IP6 = "an IPv6 address or prefix, or an IP list name"
    MAC = "a MAC address (aa:bb:cc:dd:ee:ff)"
    TEXT = "a quoted string ('eth0')"
    CODE = "a name the enrichment adds: a country code (DE), an AS name ('Google LLC'), or ? for unknown"


# IANA protocol numbers by the names engineers write (tcpdump/iptables spellings).
PROTOCOLS: dict[str, int] = {
    "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipip": 4, "ipencap": 4, "ipv4": 4, "st": 5,
    "tcp": 6, "egp": 8, "igp": 9, "udp": 17, "dccp": 33, "ipv6": 41, "ipv6-route": 43,
    "ipv6-frag": 44, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "icmp6": 58,
    "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "eigrp": 88,
    "ospf": 89, "ospfigp": 89, "ax.25": 93, "ipip-old": 94, "etherip": 97, "encap": 98,
    "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115, "isis": 124, "sctp": 132,
    "fc": 133, "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137, "hip": 139,
    "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
}

#: Protocol names that are a whole rule on their own: ``tcp`` means ``proto tcp``.
PROTOCOL_SHORTHANDS = frozenset({"tcp", "udp", "icmp", "icmp6", "sctp", "gre", "esp"})

# Well-known ports (IANA service names; a few common aliases).
SERVICES: dict[str, int] = {
    "tcpmux": 1, "echo": 7, "discard": 9, "daytime": 13, "ftp-data": 20, "ftp": 21,
    "ssh": 22, "telnet": 23, "smtp": 25, "time": 37, "whois": 43, "tacacs": 49,
    "domain": 53, "dns": 53, "bootps": 67, "dhcp": 67, "bootpc": 68, "tftp": 69,
    "gopher": 70, "finger": 79, "http": 80, "www": 80, "kerberos": 88, "pop3": 110,
    "sunrpc": 111, "rpcbind": 111, "auth": 113, "ident": 113, "nntp": 119, "ntp": 123,
    "epmap": 135, "netbios-ns": 137, "netbios-dgm": 138, "netbios-ssn": 139, "imap": 143,
    "imap2": 143, "snmp": 161, "snmptrap": 162, "snmp-trap": 162, "xdmcp": 177, "bgp": 179,
    "irc": 194, "ldap": 389, "https": 443, "microsoft-ds": 445, "smb": 445, "kpasswd": 464,
    "isakmp": 500, "ike": 500, "rexec": 512, "exec": 512, "login": 513, "syslog": 514,
    "shell": 514, "printer": 515, "talk": 517, "ntalk": 518, "rip": 520, "route": 520,
    "ripng": 521, "submission": 587, "ipp": 631, "ldaps": 636, "ldp": 646, "rsync": 873,
    "ftps-data": 989, "ftps": 990, "telnets": 992, "imaps": 993, "pop3s": 995,
    "smtps": 465, "socks": 1080, "openvpn": 1194, "ms-sql-s": 1433, "mssql": 1433,
    "ms-sql-m": 1434, "oracle": 1521, "l2tp": 1701, "pptp": 1723, "radius": 1812,
    "radius-acct": 1813, "nfs": 2049, "netflow": 2055, "nfsd": 2049, "mysql": 3306,
    "ms-wbt-server": 3389, "rdp": 3389, "ipfix": 4739, "ipsec-nat-t": 4500,
    "sip": 5060, "sips": 5061, "xmpp-client": 5222, "xmpp-server": 5269,
    "postgresql": 5432, "postgres": 5432, "amqp": 5672, "vnc": 5900, "x11": 6000,
    "sflow": 6343, "redis": 6379, "irc-alt": 6667, "http-alt": 8080, "webcache": 8080,
    "https-alt": 8443, "memcached": 11211, "mongodb": 27017, "wireguard": 51820,
    "squid": 3128, "kerberos-adm": 749, "dhcpv6-client": 546, "dhcpv6-server": 547,
    "mdns": 5353, "llmnr": 5355, "ssdp": 1900, "git": 9418, "zabbix-agent": 10050,
    "zabbix-trapper": 10051, "prometheus": 9090, "node-exporter": 9100,
}

#: TCP flag bits by name (RFC 793/3168; ns is the 9th bit).
TCP_FLAGS: dict[str, int] = {
    "fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "push": 0x08, "ack": 0x10,
    "urg": 0x20, "ece": 0x40, "cwr": 0x80, "ns": 0x100,
}

# flowDirection and flowEndReason (IANA).
_DIRECTIONS = {"ingress": 0, "in": 0, "egress": 1, "out": 1}
_END_REASONS = {"idle": 1, "idle-timeout": 1, "active": 2, "active-timeout": 2, "end": 3,
                "end-of-flow": 3, "forced": 4, "forced-end": 4, "lack-of-resources": 5}
_FORWARDING = {"unknown": 0, "forwarded": 64, "dropped": 128, "consumed": 192}

#: xenoeye filter names we do not provide, with the reason and what to do instead.
UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(("dns-name", "dns-ips", "sni"),
                    "comes from xenoeye's sFlow payload parsing, which Mirrorflow does not do"),
    **dict.fromkeys(("class", "class0", "class1", "class2", "class3", "class4"),
                    "is xenoeye's automatic classification, which Mirrorflow does not have yet"),
    "dev-mark": "(devices.conf marks) is not supported yet; filter on dev-ip or dev-id",
    "vashost": "(vendor field 2001) is not in the field registry",
}


def service_port(name: str) -> int | None:
    """The port of a service name: the built-in table, else the system's services file."""
    port = SERVICES.get(name)
    if port is not None:
        return port
    for proto in ("tcp", "udp"):
        try:
            return socket.getservbyname(name, proto)
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class FilterField:
    """A name usable in a filter and the registry columns it reads.

    Attributes:
        name: as written in filters (lower case).
        kind: what values it takes.
        src / dst: registry names read for the source / destination form, IPv4 or number
            columns; several names are alternatives (a flow matches if any column matches).
        src6 / dst6: registry names of the IPv6 columns (IP and IP6 kinds).
        directional: whether ``src``/``dst`` select different columns.
        names: value names → numbers (protocols, services, ...).
        max_value: largest value that can occur; larger numbers are an error.
        registry: true for a registry field used by its own name.
    """

    name: str
    kind: ValueKind
    src: tuple[str, ...] = ()
    dst: tuple[str, ...] = ()
    src6: tuple[str, ...] = ()
    dst6: tuple[str, ...] = ()
    directional: bool = False
    names: Mapping[str, int] = field(default_factory=dict, repr=False)
    max_value: int = (1 << 64) - 1
    registry: bool = False

    def columns(self, direction: str | None, v6: bool = False) -> tuple[str, ...]:
        """Registry names read for a direction (None = both), de-duplicated in order."""
        s, d = (self.src6, self.dst6) if v6 else (self.src, self.dst)
        cols = s if direction == "src" else d if direction == "dst" else s + d
        return tuple(dict.fromkeys(cols))


def _pair(name: str, kind: ValueKind, src: str | tuple[str, ...], dst: str | tuple[str, ...],
          **kw: object) -> FilterField:
    s = (src,) if isinstance(src, str) else src
    d = (dst,) if isinstance(dst, str) else dst
    return FilterField(name, kind, s, d, directional=s != d, **kw)  # type: ignore[arg-type]


def _one(name: str, kind: ValueKind, col: str, **kw: object) -> FilterField:
    return FilterField(name, kind, (col,), (col,), **kw)  # type: ignore[arg-type]


_IP, _IP4, _IP6, _INT = ValueKind.IP, ValueKind.IP4, ValueKind.IP6, ValueKind.INT

FILTER_FIELDS: dict[str, FilterField] = {
    f.name: f
    for f in (
        FilterField("host", _IP, ("src_addr",), ("dst_addr",), ("src_addr6",), ("dst_addr6",), True),
        FilterField("net", _IP, ("src_addr",), ("dst_addr",), ("src_addr6",), ("dst_addr6",), True),
        FilterField("host6", _IP6, (), (), ("src_addr6",), ("dst_addr6",), True),
        FilterField("net6", _IP6, (), (), ("src_addr6",), ("dst_addr6",), True),
        _pair("port", _INT, "src_port", "dst_port", names=SERVICES, max_value=0xFFFF),
        _one("proto", _INT, "proto", names=PROTOCOLS, max_value=0xFF),
        _pair("tos", _INT, "tos", "dst_tos", max_value=0xFF),
        _one("tcp-flags", ValueKind.FLAGS, "tcp_flags", names=TCP_FLAGS, max_value=0xFFFF),
        _pair("ifidx", _INT, "in_if", "out_if", max_value=0xFFFFFFFF),
        _pair("as", _INT, "src_as", "dst_as", max_value=0xFFFFFFFF),
        _pair("vlan", _INT, "src_vlan", "dst_vlan", max_value=0xFFFF),
        # MACs: xenoeye reads 56 and 57 (post_dst_mac); the probe and many exporters send 80
        # (dst_mac) for the destination, some 81 for the source (see the module text)
        _pair("mac", ValueKind.MAC, ("src_mac", "post_src_mac"), ("post_dst_mac", "dst_mac"),
              max_value=(1 << 48) - 1),
        _one("min-ttl", _INT, "min_ttl", max_value=0xFF),
        _one("max-ttl", _INT, "max_ttl", max_value=0xFF),
        _one("frag-id", _INT, "frag_id", max_value=0xFFFFFFFF),
        _one("endreason", _INT, "flow_end_reason", names=_END_REASONS, max_value=0xFF),
        _pair("d1qvlan", _INT, "dot1q_vlan", "post_dot1q_vlan", max_value=0xFFFF),
        _pair("d1qcvlan", _INT, "dot1q_customer_vlan", "post_dot1q_customer_vlan", max_value=0xFFFF),
        FilterField("bgp-nh", _IP, ("bgp_next_hop",), ("bgp_next_hop",), ("bgp_next_hop6",), ("bgp_next_hop6",)),
        FilterField("next-hop", _IP, ("next_hop",), ("next_hop",), ("next_hop6",), ("next_hop6",)),
        _one("dir", _INT, "direction", names=_DIRECTIONS, max_value=0xFF),
        _one("fwdst", _INT, "forwarding_status", names=_FORWARDING, max_value=0xFF),
        _one("smplr", _INT, "sampler_id", max_value=0xFFFFFFFF),
        _pair("vrf", _INT, "ingress_vrf", "egress_vrf", max_value=0xFFFFFFFF),
        FilterField("dev-ip", _IP, ("dev_ip",), ("dev_ip",), ("dev_ip6",), ("dev_ip6",)),
        FilterField("dev-ip6", _IP6, (), (), ("dev_ip6",), ("dev_ip6",)),
        _one("dev-id", _INT, "dev_id"),
        # enrichment (appliance.collector.enrich): from the GeoIP/ASN databases, coded
        # numbers (appliance.collector.fields.geo); need a database that provides them
        *(_pair(name.replace("_", "-"), _INT if how == "number" else ValueKind.CODE, f"src_{name}",
                f"dst_{name}", max_value=0xFFFFFFFF if how == "number" else (1 << 32) - 1)
          for name, how in geo.ENRICHED.items()),
        # interface names from devices.conf (appliance.collector.enrich): in = src, out = dst
        _pair("if-name", ValueKind.CODE, "in_if_name", "out_if_name", max_value=(1 << 32) - 1),
    )
}

#: field-table names whose columns the enrichment stage adds (``country``, ``asn``, ``as-org``…)
ENRICHED_FIELDS = frozenset(n.replace("_", "-") for n in geo.ENRICHED)


def code_value(field: FilterField, word: str) -> int | None:
    """The code a `ValueKind.CODE` field's value means (``DE``, ``'Google LLC'``, ``?``), or None
    when the word cannot be one (a country code that is not two letters)."""
    if word == "?":
        return 0
    how = geo.ENRICHED.get(field.src[0].split("_", 1)[1], "text")
    if how == "letters":
        return geo.letters_code(word) or None
    return geo.TEXTS.code(word)

_KIND_OF_TYPE = {
    FieldType.IPV4: ValueKind.IP4,
    FieldType.IPV6: ValueKind.IP6,
    FieldType.MAC: ValueKind.MAC,
    FieldType.STRING: ValueKind.TEXT,
    FieldType.BYTES: ValueKind.TEXT,
}


def lookup_field(word: str, registry: Registry = REGISTRY) -> FilterField | None:
    """The filter field a word names (case-insensitive), or None.

    xenoeye's filter names win over registry names (``tos`` is src or dst ToS, as in
    xenoeye; the registry's ``tos`` column alone is ``src tos``). ``-`` and ``_`` are
    interchangeable in registry names (``flow-label6`` = ``flow_label6``).
    """
    key = word.lower()
    f = FILTER_FIELDS.get(key)
    if f is not None:
        return f
    reg = registry.by_name.get(key) or registry.by_name.get(key.replace("-", "_"))
    if reg is None:
        return None
    if reg.ftype == FieldType.FLOAT:
        return None
    kind = _KIND_OF_TYPE.get(reg.ftype, ValueKind.INT)
    if reg.name == "tcp_flags" or reg.name.endswith("tcp_flags"):
        kind = ValueKind.FLAGS
    names: Mapping[str, int] = {}
    max_value = (1 << 64) - 1
    if reg.name in ("proto", "next_header6"):
        names, max_value = PROTOCOLS, 0xFF
    elif reg.name.endswith("_port"):
        names, max_value = SERVICES, 0xFFFF
    elif kind is ValueKind.FLAGS:
        names, max_value = TCP_FLAGS, 0xFFFF
    elif kind is ValueKind.MAC:
        max_value = (1 << 48) - 1
    if kind is ValueKind.IP6:
        return FilterField(reg.name, kind, (), (), (reg.name,), (reg.name,), registry=True)
    return FilterField(reg.name, kind, (reg.name,), (reg.name,), names=names,
                       max_value=max_value, registry=True)
