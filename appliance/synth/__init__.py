"""Synthetic traffic for the features that need it without a network: the demo's mirrored
traffic, ``mirrorflow warm-cache``'s workload, the benchmarks and the tests.

- `flows`: realistic flow records (Zipf-like hosts, service ports, heavy-tailed sizes) as
  encoder columns, and the v9 / IPFIX / v5 datagrams our encoders make of them;
- `frames`: Ethernet frames with IPv4/IPv6 and UDP, TCP or ICMP echo, checksums filled in;
- `capture`: pcap and pcapng files of such frames.
"""

from __future__ import annotations

from appliance.synth.capture import (
    LINKTYPE_ETHERNET,
    PCAP_MAGIC_MICRO,
    PCAP_MAGIC_NANO,
    enhanced_packet,
    interface_description,
    pcap_header,
    pcap_record,
    pcapng_block,
    section_header,
    write_pcap,
    write_pcapng,
)
from appliance.synth.flows import (
    BOOT_NS,
    IPFIX6_FIELDS,
    NOW_NS,
    V9_FIELDS,
    flows,
    ipfix6_datagrams,
    now_ns,
    v5_datagrams,
    v9_datagrams,
)
from appliance.synth.frames import checksum, ethernet, icmp_echo_frame, ip_frame, tcp_frame, udp_frame

__all__ = [
    "BOOT_NS",
    "IPFIX6_FIELDS",
    "LINKTYPE_ETHERNET",
    "NOW_NS",
    "PCAP_MAGIC_MICRO",
    "PCAP_MAGIC_NANO",
    "V9_FIELDS",
    "checksum",
    "enhanced_packet",
    "ethernet",
    "flows",
    "icmp_echo_frame",
    "interface_description",
    "ip_frame",
    "ipfix6_datagrams",
    "now_ns",
    "pcap_header",
    "pcap_record",
    "pcapng_block",
    "section_header",
    "tcp_frame",
    "udp_frame",
    "v5_datagrams",
    "v9_datagrams",
    "write_pcap",
    "write_pcapng",
]
