"""The field registry: one table that names every NetFlow v9 / IPFIX element we know.

It is the analogue of xenoeye's ``netflow.def`` + ``filter.def`` in one place. The decoder
uses it to place values into `FlowBatch` columns, the dump and ``decode`` commands use it to
name fields, and later parts (filters, window fields, SQL types) look fields up here.

Every known element gets a *column*: an index into the decoder's ``u64`` column block
(numbers, IPv4 addresses, MAC addresses, timestamps, references to strings), and IPv6
addresses additionally an index into the ``v6`` column block. Adding a field is one line
in `_ELEMENTS` (or `_ENTERPRISE`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FieldType",
    "Field",
    "REGISTRY",
    "Registry",
    "VIRTUAL",
    "COMMON_NAMES",
]


class FieldType(enum.IntEnum):
    """How a field's bytes are interpreted. The values are used inside numba code."""

    UNSIGNED = 0  # big-endian unsigned integer, 1..8 bytes (reduced-size encoding allowed)
    SIGNED = 1  # big-endian two's complement
    IPV4 = 2  # 4 bytes, stored as the integer of its big-endian value
    IPV6 = 3  # 16 bytes, stored as (hi, lo) uint64 in the v6 block
    MAC = 4  # 6 bytes, stored as integer
    STRING = 5  # text, fixed or variable length: stored as a reference (offset << 16 | length)
    BYTES = 6  # opaque octets: stored as a reference like STRING
    FLOAT = 7  # IEEE float32/float64: stored as float64 bit pattern
    BOOL = 8  # IPFIX boolean (1 = true, 2 = false)
    TIME_UPTIME_MS = 9  # v9 FIRST/LAST_SWITCHED: ms of exporter uptime
    TIME_SEC = 10  # dateTimeSeconds
    TIME_MS = 11  # dateTimeMilliseconds
    TIME_NTP_US = 12  # dateTimeMicroseconds (NTP format)
    TIME_NTP_NS = 13  # dateTimeNanoseconds (NTP format)
    TIME_DELTA_US = 14  # flowStart/EndDeltaMicroseconds (relative to export time)


#: Types whose values live as references into the packet buffer, not as numbers.
REFERENCE_TYPES = (FieldType.STRING, FieldType.BYTES)
#: Types that are IP or MAC addresses (printed as text).
ADDRESS_TYPES = (FieldType.IPV4, FieldType.IPV6, FieldType.MAC)


@dataclass(frozen=True, slots=True)
class Field:
    """One registry entry.

    Attributes:
        name: our name (snake_case), used by ``decode --format jsonl``, dumps, filters.
        element_id: IANA element id (or the vendor's id within its enterprise number).
        pen: private enterprise number; 0 for IANA and for v9 vendor ids.
        ftype: how the bytes are interpreted.
        size: the usual wire size in bytes (0 = variable).
        counter: a delta counter scaled by the sampling rate at decode time.
        column: index into the u64 column block.
        column6: index into the v6 column block, or -1.
        xenoeye: xenoeye's name for the field, if it has one.
        description: a few words for help texts.
    """

    name: str
    element_id: int
    pen: int
    ftype: FieldType
    size: int
    counter: bool
    column: int
    column6: int
    xenoeye: str
    description: str


U, S, V4, V6, MAC, STR, BYT, FLT, BOO = (
    FieldType.UNSIGNED,
    FieldType.SIGNED,
    FieldType.IPV4,
    FieldType.IPV6,
    FieldType.MAC,
    FieldType.STRING,
    FieldType.BYTES,
    FieldType.FLOAT,
    FieldType.BOOL,
)
UPT, TS, TMS, TUS, TNS, TDU = (
    FieldType.TIME_UPTIME_MS,
    FieldType.TIME_SEC,
    FieldType.TIME_MS,
    FieldType.TIME_NTP_US,
    FieldType.TIME_NTP_NS,
    FieldType.TIME_DELTA_US,
)

# (element id, name, type, size, counter, xenoeye name, description)
# Names of the common fields follow the ``decode --format jsonl`` contract (bytes, packets,
# src_addr, ...); the rest are IANA names in snake_case.
_ELEMENTS: tuple[tuple[int, str, FieldType, int, bool, str, str], ...] = (
    (1, "bytes", U, 8, True, "in_bytes", "octetDeltaCount (IN_BYTES)"),
    (2, "packets", U, 8, True, "in_pkts", "packetDeltaCount (IN_PKTS)"),
    (3, "flows", U, 8, True, "", "deltaFlowCount"),
    (4, "proto", U, 1, False, "protocol", "protocolIdentifier"),
    (5, "tos", U, 1, False, "src_tos", "ipClassOfService (SRC_TOS)"),
    (6, "tcp_flags", U, 2, False, "tcp_flags", "tcpControlBits"),
    (7, "src_port", U, 2, False, "l4_src_port", "sourceTransportPort"),
    (8, "src_addr", V4, 4, False, "ip4_src_addr", "sourceIPv4Address"),
    (9, "src_mask", U, 1, False, "src_mask", "sourceIPv4PrefixLength"),
    (10, "in_if", U, 4, False, "input_snmp", "ingressInterface (INPUT_SNMP)"),
    (11, "dst_port", U, 2, False, "l4_dst_port", "destinationTransportPort"),
    (12, "dst_addr", V4, 4, False, "ip4_dst_addr", "destinationIPv4Address"),
    (13, "dst_mask", U, 1, False, "dst_mask", "destinationIPv4PrefixLength"),
    (14, "out_if", U, 4, False, "output_snmp", "egressInterface (OUTPUT_SNMP)"),
    (15, "next_hop", V4, 4, False, "ip4_next_hop", "ipNextHopIPv4Address"),
    (16, "src_as", U, 4, False, "src_as", "bgpSourceAsNumber"),
    (17, "dst_as", U, 4, False, "dst_as", "bgpDestinationAsNumber"),
    (18, "bgp_next_hop", V4, 4, False, "bgp_next_hop", "bgpNextHopIPv4Address"),
    (19, "mul_dst_packets", U, 8, True, "", "postMCastPacketDeltaCount"),
    (20, "mul_dst_bytes", U, 8, True, "", "postMCastOctetDeltaCount"),
    (21, "last_switched", UPT, 4, False, "last_switched", "flowEndSysUpTime (ms)"),
    (22, "first_switched", UPT, 4, False, "first_switched", "flowStartSysUpTime (ms)"),
    (23, "out_bytes", U, 8, True, "", "postOctetDeltaCount (OUT_BYTES)"),
    (24, "out_packets", U, 8, True, "", "postPacketDeltaCount (OUT_PKTS)"),
    (25, "min_length", U, 2, False, "", "minimumIpTotalLength"),
    (26, "max_length", U, 2, False, "", "maximumIpTotalLength"),
    (27, "src_addr6", V6, 16, False, "ip6_src_addr", "sourceIPv6Address"),
    (28, "dst_addr6", V6, 16, False, "ip6_dst_addr", "destinationIPv6Address"),
    (29, "src_mask6", U, 1, False, "", "sourceIPv6PrefixLength"),
    (30, "dst_mask6", U, 1, False, "", "destinationIPv6PrefixLength"),
    (31, "flow_label6", U, 4, False, "", "flowLabelIPv6"),
    (32, "icmp_type", U, 2, False, "icmp_type", "icmpTypeCodeIPv4 (type*256+code)"),
    (33, "igmp_type", U, 1, False, "", "igmpType"),
    (34, "sampling_interval", U, 4, False, "", "samplingInterval"),
    (35, "sampling_algorithm", U, 1, False, "", "samplingAlgorithm"),
    (36, "flow_active_timeout", U, 2, False, "", "flowActiveTimeout"),
    (37, "flow_inactive_timeout", U, 2, False, "", "flowIdleTimeout"),
    (38, "engine_type", U, 1, False, "", "engineType"),
    (39, "engine_id", U, 1, False, "", "engineId"),
    (40, "exported_bytes", U, 8, False, "", "exportedOctetTotalCount"),
    (41, "exported_packets", U, 8, False, "", "exportedMessageTotalCount"),
    (42, "exported_flows", U, 8, False, "", "exportedFlowRecordTotalCount"),
    (43, "ipv4_router_sc", V4, 4, False, "", "ipv4RouterSc"),
    (44, "src_prefix", V4, 4, False, "", "sourceIPv4Prefix"),
    (45, "dst_prefix", V4, 4, False, "", "destinationIPv4Prefix"),
    (46, "mpls_top_label_type", U, 1, False, "", "mplsTopLabelType"),
    (47, "mpls_top_label_addr", V4, 4, False, "", "mplsTopLabelIPv4Address"),
    (48, "sampler_id", U, 1, False, "smplr", "samplerId (v9 FLOW_SAMPLER_ID)"),
    (49, "sampler_mode", U, 1, False, "", "samplerMode"),
    (50, "sampler_random_interval", U, 4, False, "", "samplerRandomInterval"),
    (51, "class_id", U, 1, False, "", "classId"),
    (52, "min_ttl", U, 1, False, "min_ttl", "minimumTTL"),
    (53, "max_ttl", U, 1, False, "max_ttl", "maximumTTL"),
    (54, "frag_id", U, 4, False, "frag_id", "fragmentIdentification"),
    (55, "dst_tos", U, 1, False, "dst_tos", "postIpClassOfService"),
    (56, "src_mac", MAC, 6, False, "src_mac", "sourceMacAddress"),
    (57, "post_dst_mac", MAC, 6, False, "dst_mac", "postDestinationMacAddress"),
    (58, "src_vlan", U, 2, False, "src_vlan", "vlanId"),
    (59, "dst_vlan", U, 2, False, "dst_vlan", "postVlanId"),
    (60, "ip_version", U, 1, False, "ip_protocol_version", "ipVersion"),
    (61, "direction", U, 1, False, "direction", "flowDirection (0 ingress, 1 egress)"),
    (62, "next_hop6", V6, 16, False, "", "ipNextHopIPv6Address"),
    (63, "bgp_next_hop6", V6, 16, False, "", "bgpNextHopIPv6Address"),
    (64, "ipv6_ext_headers", U, 4, False, "", "ipv6ExtensionHeaders"),
    (70, "mpls_label_1", U, 3, False, "", "mplsTopLabelStackSection"),
    (71, "mpls_label_2", U, 3, False, "", "mplsLabelStackSection2"),
    (72, "mpls_label_3", U, 3, False, "", "mplsLabelStackSection3"),
    (73, "mpls_label_4", U, 3, False, "", "mplsLabelStackSection4"),
    (74, "mpls_label_5", U, 3, False, "", "mplsLabelStackSection5"),
    (75, "mpls_label_6", U, 3, False, "", "mplsLabelStackSection6"),
    (76, "mpls_label_7", U, 3, False, "", "mplsLabelStackSection7"),
    (77, "mpls_label_8", U, 3, False, "", "mplsLabelStackSection8"),
    (78, "mpls_label_9", U, 3, False, "", "mplsLabelStackSection9"),
    (79, "mpls_label_10", U, 3, False, "", "mplsLabelStackSection10"),
    (80, "dst_mac", MAC, 6, False, "", "destinationMacAddress"),
    (81, "post_src_mac", MAC, 6, False, "", "postSourceMacAddress"),
    (82, "if_name", STR, 0, False, "if_name", "interfaceName"),
    (83, "if_desc", STR, 0, False, "", "interfaceDescription"),
    (84, "sampler_name", STR, 0, False, "", "samplerName"),
    (85, "bytes_total", U, 8, False, "", "octetTotalCount"),
    (86, "packets_total", U, 8, False, "", "packetTotalCount"),
    (88, "frag_offset", U, 2, False, "", "fragmentOffset"),
    (89, "forwarding_status", U, 1, False, "fwd_status", "forwardingStatus"),
    (90, "mpls_vpn_rd", BYT, 8, False, "", "mplsVpnRouteDistinguisher"),
    (91, "mpls_top_label_prefix_len", U, 1, False, "", "mplsTopLabelPrefixLength"),
    (92, "src_traffic_index", U, 4, False, "", "srcTrafficIndex"),
    (93, "dst_traffic_index", U, 4, False, "", "dstTrafficIndex"),
    (94, "app_desc", STR, 0, False, "", "applicationDescription"),
    (95, "app_id", BYT, 0, False, "", "applicationId"),
    (96, "app_name", STR, 0, False, "", "applicationName"),
    (98, "post_dscp", U, 1, False, "", "postIpDiffServCodePoint"),
    (99, "mcast_replication_factor", U, 4, False, "", "multicastReplicationFactor"),
    (128, "bgp_next_adjacent_as", U, 4, False, "", "bgpNextAdjacentAsNumber"),
    (129, "bgp_prev_adjacent_as", U, 4, False, "", "bgpPrevAdjacentAsNumber"),
    (130, "exporter_addr", V4, 4, False, "", "exporterIPv4Address"),
    (131, "exporter_addr6", V6, 16, False, "", "exporterIPv6Address"),
    (132, "dropped_bytes", U, 8, True, "", "droppedOctetDeltaCount"),
    (133, "dropped_packets", U, 8, True, "", "droppedPacketDeltaCount"),
    (134, "dropped_bytes_total", U, 8, False, "", "droppedOctetTotalCount"),
    (135, "dropped_packets_total", U, 8, False, "", "droppedPacketTotalCount"),
    (136, "flow_end_reason", U, 1, False, "endreason", "flowEndReason"),
    (137, "common_properties_id", U, 8, False, "", "commonPropertiesId"),
    (138, "observation_point_id", U, 8, False, "", "observationPointId"),
    (139, "icmp_type6", U, 2, False, "", "icmpTypeCodeIPv6 (type*256+code)"),
    (140, "mpls_top_label_addr6", V6, 16, False, "", "mplsTopLabelIPv6Address"),
    (141, "line_card_id", U, 4, False, "", "lineCardId"),
    (142, "port_id", U, 4, False, "", "portId"),
    (143, "metering_process_id", U, 4, False, "", "meteringProcessId"),
    (144, "exporting_process_id", U, 4, False, "", "exportingProcessId"),
    (145, "template_id_ie", U, 2, False, "", "templateId"),
    (146, "wlan_channel_id", U, 1, False, "", "wlanChannelId"),
    (147, "wlan_ssid", STR, 0, False, "", "wlanSSID"),
    (148, "flow_id", U, 8, False, "", "flowId"),
    (149, "observation_domain_id", U, 4, False, "", "observationDomainId"),
    (150, "flow_start_sec", TS, 4, False, "", "flowStartSeconds"),
    (151, "flow_end_sec", TS, 4, False, "", "flowEndSeconds"),
    (152, "flow_start_ms", TMS, 8, False, "flow_start_ms", "flowStartMilliseconds"),
    (153, "flow_end_ms", TMS, 8, False, "flow_end_ms", "flowEndMilliseconds"),
    (154, "flow_start_us", TUS, 8, False, "", "flowStartMicroseconds (NTP format)"),
    (155, "flow_end_us", TUS, 8, False, "", "flowEndMicroseconds (NTP format)"),
    (156, "flow_start_ns", TNS, 8, False, "", "flowStartNanoseconds (NTP format)"),
    (157, "flow_end_ns", TNS, 8, False, "", "flowEndNanoseconds (NTP format)"),
    (158, "flow_start_delta_us", TDU, 4, False, "", "flowStartDeltaMicroseconds"),
    (159, "flow_end_delta_us", TDU, 4, False, "", "flowEndDeltaMicroseconds"),
    (160, "system_init_time_ms", TMS, 8, False, "", "systemInitTimeMilliseconds"),
    (161, "flow_duration_ms", U, 4, False, "", "flowDurationMilliseconds"),
    (162, "flow_duration_us", U, 4, False, "", "flowDurationMicroseconds"),
    (163, "observed_flow_total", U, 8, False, "", "observedFlowTotalCount"),
    (164, "ignored_packets_total", U, 8, False, "", "ignoredPacketTotalCount"),
    (165, "ignored_bytes_total", U, 8, False, "", "ignoredOctetTotalCount"),
    (166, "not_sent_flows_total", U, 8, False, "", "notSentFlowTotalCount"),
    (167, "not_sent_packets_total", U, 8, False, "", "notSentPacketTotalCount"),
    (168, "not_sent_bytes_total", U, 8, False, "", "notSentOctetTotalCount"),
    (176, "icmp_type4", U, 1, False, "", "icmpTypeIPv4"),
    (177, "icmp_code4", U, 1, False, "", "icmpCodeIPv4"),
    (178, "icmp_type6_only", U, 1, False, "", "icmpTypeIPv6"),
    (179, "icmp_code6", U, 1, False, "", "icmpCodeIPv6"),
    (180, "udp_src_port", U, 2, False, "", "udpSourcePort"),
    (181, "udp_dst_port", U, 2, False, "", "udpDestinationPort"),
    (182, "tcp_src_port", U, 2, False, "", "tcpSourcePort"),
    (183, "tcp_dst_port", U, 2, False, "", "tcpDestinationPort"),
    (184, "tcp_seq", U, 4, False, "", "tcpSequenceNumber"),
    (185, "tcp_ack", U, 4, False, "", "tcpAcknowledgementNumber"),
    (186, "tcp_window", U, 2, False, "", "tcpWindowSize"),
    (189, "ip_header_length", U, 1, False, "", "ipHeaderLength"),
    (190, "ip_total_length", U, 2, False, "", "totalLengthIPv4"),
    (191, "ip_payload_length", U, 4, False, "", "payloadLengthIPv6"),
    (192, "ip_ttl", U, 1, False, "ip_ttl", "ipTTL"),
    (193, "next_header6", U, 1, False, "", "nextHeaderIPv6"),
    (194, "mpls_payload_length", U, 4, False, "", "mplsPayloadLength"),
    (195, "dscp", U, 1, False, "", "ipDiffServCodePoint"),
    (196, "ip_precedence", U, 1, False, "", "ipPrecedence"),
    (197, "fragment_flags", U, 1, False, "", "fragmentFlags"),
    (198, "bytes_squared", U, 8, False, "", "octetDeltaSumOfSquares"),
    (199, "bytes_squared_total", U, 8, False, "", "octetTotalSumOfSquares"),
    (200, "mpls_top_label_ttl", U, 1, False, "", "mplsTopLabelTTL"),
    (201, "mpls_label_stack_length", U, 4, False, "", "mplsLabelStackLength"),
    (202, "mpls_label_stack_depth", U, 4, False, "", "mplsLabelStackDepth"),
    (203, "mpls_top_label_exp", U, 1, False, "", "mplsTopLabelExp"),
    (204, "ip_payload_length4", U, 4, False, "", "ipPayloadLength"),
    (205, "udp_message_length", U, 2, False, "", "udpMessageLength"),
    (206, "is_multicast", U, 1, False, "", "isMulticast"),
    (207, "ip_header_length4", U, 1, False, "", "ipv4IHL"),
    (208, "ipv4_options", U, 4, False, "", "ipv4Options"),
    (209, "tcp_options", U, 8, False, "", "tcpOptions"),
    (210, "padding", BYT, 0, False, "", "paddingOctets"),
    (211, "collector_addr", V4, 4, False, "", "collectorIPv4Address"),
    (212, "collector_addr6", V6, 16, False, "", "collectorIPv6Address"),
    (213, "export_interface", U, 4, False, "", "exportInterface"),
    (214, "export_protocol_version", U, 1, False, "", "exportProtocolVersion"),
    (215, "export_transport_protocol", U, 1, False, "", "exportTransportProtocol"),
    (216, "collector_port", U, 2, False, "", "collectorTransportPort"),
    (217, "exporter_port", U, 2, False, "", "exporterTransportPort"),
    (218, "tcp_syn_total", U, 8, False, "", "tcpSynTotalCount"),
    (219, "tcp_fin_total", U, 8, False, "", "tcpFinTotalCount"),
    (220, "tcp_rst_total", U, 8, False, "", "tcpRstTotalCount"),
    (221, "tcp_psh_total", U, 8, False, "", "tcpPshTotalCount"),
    (222, "tcp_ack_total", U, 8, False, "", "tcpAckTotalCount"),
    (223, "tcp_urg_total", U, 8, False, "", "tcpUrgTotalCount"),
    (224, "ip_total_length_total", U, 8, False, "", "ipTotalLength"),
    (225, "post_nat_src_addr", V4, 4, False, "", "postNATSourceIPv4Address"),
    (226, "post_nat_dst_addr", V4, 4, False, "", "postNATDestinationIPv4Address"),
    (227, "post_napt_src_port", U, 2, False, "", "postNAPTSourceTransportPort"),
    (228, "post_napt_dst_port", U, 2, False, "", "postNAPTDestinationTransportPort"),
    (229, "nat_originating_address_realm", U, 1, False, "", "natOriginatingAddressRealm"),
    (230, "nat_event", U, 1, False, "", "natEvent"),
    (231, "initiator_bytes", U, 8, True, "ioctets", "initiatorOctets"),
    (232, "responder_bytes", U, 8, True, "roctets", "responderOctets"),
    (233, "firewall_event", U, 1, False, "", "firewallEvent"),
    (234, "ingress_vrf", U, 4, False, "ingrs_vrf", "ingressVRFID"),
    (235, "egress_vrf", U, 4, False, "egrs_vrf", "egressVRFID"),
    (236, "vrf_name", STR, 0, False, "", "VRFname"),
    (237, "post_mpls_top_label_exp", U, 1, False, "", "postMplsTopLabelExp"),
    (238, "tcp_window_scale", U, 2, False, "", "tcpWindowScale"),
    (239, "biflow_direction", U, 1, False, "", "biflowDirection"),
    (240, "ethernet_header_length", U, 1, False, "", "ethernetHeaderLength"),
    (241, "ethernet_payload_length", U, 2, False, "", "ethernetPayloadLength"),
    (242, "ethernet_total_length", U, 2, False, "", "ethernetTotalLength"),
    (243, "dot1q_vlan", U, 2, False, "src_dot1q_vlan", "dot1qVlanId"),
    (244, "dot1q_priority", U, 1, False, "", "dot1qPriority"),
    (245, "dot1q_customer_vlan", U, 2, False, "src_dot1q_cvlan", "dot1qCustomerVlanId"),
    (246, "dot1q_customer_priority", U, 1, False, "", "dot1qCustomerPriority"),
    (247, "metro_evc_id", STR, 0, False, "", "metroEvcId"),
    (248, "metro_evc_type", U, 1, False, "", "metroEvcType"),
    (249, "pseudo_wire_id", U, 4, False, "", "pseudoWireId"),
    (250, "pseudo_wire_type", U, 2, False, "", "pseudoWireType"),
    (251, "pseudo_wire_control_word", U, 4, False, "", "pseudoWireControlWord"),
    (252, "in_phys_if", U, 4, False, "", "ingressPhysicalInterface"),
    (253, "out_phys_if", U, 4, False, "", "egressPhysicalInterface"),
    (254, "post_dot1q_vlan", U, 2, False, "dst_dot1q_vlan", "postDot1qVlanId"),
    (255, "post_dot1q_customer_vlan", U, 2, False, "dst_dot1q_cvlan", "postDot1qCustomerVlanId"),
    (256, "ethernet_type", U, 2, False, "", "ethernetType"),
    (257, "post_ip_precedence", U, 1, False, "", "postIpPrecedence"),
    (258, "collection_time_ms", TMS, 8, False, "", "collectionTimeMilliseconds"),
    (259, "export_sctp_stream_id", U, 2, False, "", "exportSctpStreamId"),
    (260, "max_export_seconds", TS, 4, False, "", "maxExportSeconds"),
    (261, "max_flow_end_seconds", TS, 4, False, "", "maxFlowEndSeconds"),
    (262, "message_md5", BYT, 16, False, "", "messageMD5Checksum"),
    (263, "message_scope", U, 1, False, "", "messageScope"),
    (264, "min_export_seconds", TS, 4, False, "", "minExportSeconds"),
    (265, "min_flow_start_seconds", TS, 4, False, "", "minFlowStartSeconds"),
    (266, "opaque_octets", BYT, 0, False, "", "opaqueOctets"),
    (267, "session_scope", U, 1, False, "", "sessionScope"),
    (274, "collector_cert", BYT, 0, False, "", "collectorCertificate"),
    (275, "exporter_cert", BYT, 0, False, "", "exporterCertificate"),
    (276, "data_records_reliability", BOO, 1, False, "", "dataRecordsReliability"),
    (277, "observation_point_type", U, 1, False, "", "observationPointType"),
    (278, "new_connection_delta_count", U, 4, False, "", "newConnectionDeltaCount"),
    (279, "connection_sum_duration_sec", U, 8, False, "", "connectionSumDurationSeconds"),
    (280, "connection_transaction_id", U, 8, False, "", "connectionTransactionId"),
    (281, "post_nat_src_addr6", V6, 16, False, "", "postNATSourceIPv6Address"),
    (282, "post_nat_dst_addr6", V6, 16, False, "", "postNATDestinationIPv6Address"),
    (283, "nat_pool_id", U, 4, False, "", "natPoolId"),
    (284, "nat_pool_name", STR, 0, False, "", "natPoolName"),
    (285, "anonymization_flags", U, 2, False, "", "anonymizationFlags"),
    (286, "anonymization_technique", U, 2, False, "", "anonymizationTechnique"),
    (287, "information_element_index", U, 2, False, "", "informationElementIndex"),
    (288, "p2p_technology", STR, 0, False, "", "p2pTechnology"),
    (289, "tunnel_technology", STR, 0, False, "", "tunnelTechnology"),
    (290, "encrypted_technology", STR, 0, False, "", "encryptedTechnology"),
    (291, "basic_list", BYT, 0, False, "", "basicList"),
    (292, "sub_template_list", BYT, 0, False, "", "subTemplateList"),
    (293, "sub_template_multi_list", BYT, 0, False, "", "subTemplateMultiList"),
    (294, "bgp_validity_state", U, 1, False, "", "bgpValidityState"),
    (295, "ipsec_spi", U, 4, False, "", "IPSecSPI"),
    (296, "gre_key", U, 4, False, "", "greKey"),
    (297, "nat_type", U, 1, False, "", "natType"),
    (298, "initiator_packets", U, 8, True, "ipackets", "initiatorPackets"),
    (299, "responder_packets", U, 8, True, "rpackets", "responderPackets"),
    (300, "observation_domain_name", STR, 0, False, "", "observationDomainName"),
    (301, "selection_sequence_id", U, 8, False, "", "selectionSequenceId"),
    (302, "selector_id", U, 8, False, "", "selectorId"),
    (303, "information_element_id", U, 2, False, "", "informationElementId"),
    (304, "selector_algorithm", U, 2, False, "", "selectorAlgorithm"),
    (305, "sampling_packet_interval", U, 4, False, "", "samplingPacketInterval"),
    (306, "sampling_packet_space", U, 4, False, "", "samplingPacketSpace"),
    (307, "sampling_time_interval", U, 4, False, "", "samplingTimeInterval"),
    (308, "sampling_time_space", U, 4, False, "", "samplingTimeSpace"),
    (309, "sampling_size", U, 4, False, "", "samplingSize"),
    (310, "sampling_population", U, 4, False, "", "samplingPopulation"),
    (311, "sampling_probability", FLT, 8, False, "", "samplingProbability"),
    (312, "data_link_frame_size", U, 2, False, "", "dataLinkFrameSize"),
    (313, "ip_header_packet_section", BYT, 0, False, "", "ipHeaderPacketSection"),
    (314, "ip_payload_packet_section", BYT, 0, False, "", "ipPayloadPacketSection"),
    (315, "data_link_frame_section", BYT, 0, False, "", "dataLinkFrameSection"),
    (316, "mpls_label_stack_section", BYT, 0, False, "", "mplsLabelStackSection"),
    (317, "mpls_payload_packet_section", BYT, 0, False, "", "mplsPayloadPacketSection"),
    (318, "selector_id_total_packets_observed", U, 8, False, "", "selectorIdTotalPktsObserved"),
    (319, "selector_id_total_packets_selected", U, 8, False, "", "selectorIdTotalPktsSelected"),
    (320, "absolute_error", FLT, 8, False, "", "absoluteError"),
    (321, "relative_error", FLT, 8, False, "", "relativeError"),
    (322, "observation_time_sec", TS, 4, False, "", "observationTimeSeconds"),
    (323, "observation_time_ms", TMS, 8, False, "obs_time_ms", "observationTimeMilliseconds"),
    (324, "observation_time_us", TUS, 8, False, "", "observationTimeMicroseconds"),
    (325, "observation_time_ns", TNS, 8, False, "", "observationTimeNanoseconds"),
    (326, "digest_hash_value", U, 8, False, "", "digestHashValue"),
    (327, "hash_ip_payload_offset", U, 8, False, "", "hashIPPayloadOffset"),
    (328, "hash_ip_payload_size", U, 8, False, "", "hashIPPayloadSize"),
    (329, "hash_output_range_min", U, 8, False, "", "hashOutputRangeMin"),
    (330, "hash_output_range_max", U, 8, False, "", "hashOutputRangeMax"),
    (331, "hash_selected_range_min", U, 8, False, "", "hashSelectedRangeMin"),
    (332, "hash_selected_range_max", U, 8, False, "", "hashSelectedRangeMax"),
    (333, "hash_digest_output", BOO, 1, False, "", "hashDigestOutput"),
    (334, "hash_initialiser_value", U, 8, False, "", "hashInitialiserValue"),
    (335, "selector_name", STR, 0, False, "", "selectorName"),
    (336, "upper_ci_limit", FLT, 8, False, "", "upperCILimit"),
    (337, "lower_ci_limit", FLT, 8, False, "", "lowerCILimit"),
    (338, "confidence_level", FLT, 8, False, "", "confidenceLevel"),
    (339, "information_element_data_type", U, 1, False, "", "informationElementDataType"),
    (340, "information_element_description", STR, 0, False, "", "informationElementDescription"),
    (341, "information_element_name", STR, 0, False, "", "informationElementName"),
    (342, "information_element_range_begin", U, 8, False, "", "informationElementRangeBegin"),
    (343, "information_element_range_end", U, 8, False, "", "informationElementRangeEnd"),
    (344, "information_element_semantics", U, 1, False, "", "informationElementSemantics"),
    (345, "information_element_units", U, 2, False, "", "informationElementUnits"),
    (346, "private_enterprise_number", U, 4, False, "", "privateEnterpriseNumber"),
    (347, "virtual_station_interface_id", BYT, 0, False, "", "virtualStationInterfaceId"),
    (348, "virtual_station_interface_name", STR, 0, False, "", "virtualStationInterfaceName"),
    (349, "virtual_station_uuid", BYT, 0, False, "", "virtualStationUUID"),
    (350, "virtual_station_name", STR, 0, False, "", "virtualStationName"),
    (351, "layer2_segment_id", U, 8, False, "", "layer2SegmentId"),
    (352, "layer2_bytes", U, 8, True, "", "layer2OctetDeltaCount"),
    (353, "layer2_bytes_total", U, 8, False, "", "layer2OctetTotalCount"),
    (354, "ingress_unicast_packets_total", U, 8, False, "", "ingressUnicastPacketTotalCount"),
    (355, "ingress_multicast_packets_total", U, 8, False, "", "ingressMulticastPacketTotalCount"),
    (356, "ingress_broadcast_packets_total", U, 8, False, "", "ingressBroadcastPacketTotalCount"),
    (357, "egress_unicast_packets_total", U, 8, False, "", "egressUnicastPacketTotalCount"),
    (358, "egress_broadcast_packets_total", U, 8, False, "", "egressBroadcastPacketTotalCount"),
    (359, "monitoring_interval_start_ms", TMS, 8, False, "", "monitoringIntervalStartMilliSeconds"),
    (360, "monitoring_interval_end_ms", TMS, 8, False, "", "monitoringIntervalEndMilliSeconds"),
    (361, "port_range_start", U, 2, False, "", "portRangeStart"),
    (362, "port_range_end", U, 2, False, "", "portRangeEnd"),
    (363, "port_range_step_size", U, 2, False, "", "portRangeStepSize"),
    (364, "port_range_num_ports", U, 2, False, "", "portRangeNumPorts"),
    (365, "sta_mac", MAC, 6, False, "", "staMacAddress"),
    (366, "sta_addr", V4, 4, False, "", "staIPv4Address"),
    (367, "wtp_mac", MAC, 6, False, "", "wtpMacAddress"),
    (368, "ingress_interface_type", U, 4, False, "", "ingressInterfaceType"),
    (369, "egress_interface_type", U, 4, False, "", "egressInterfaceType"),
    (370, "rtp_sequence_number", U, 2, False, "", "rtpSequenceNumber"),
    (371, "user_name", STR, 0, False, "", "userName"),
    (372, "application_category_name", STR, 0, False, "", "applicationCategoryName"),
    (373, "application_sub_category_name", STR, 0, False, "", "applicationSubCategoryName"),
    (374, "application_group_name", STR, 0, False, "", "applicationGroupName"),
    (375, "original_flows_present", U, 8, False, "", "originalFlowsPresent"),
    (376, "original_flows_initiated", U, 8, False, "", "originalFlowsInitiated"),
    (377, "original_flows_completed", U, 8, False, "", "originalFlowsCompleted"),
    (378, "distinct_count_of_src_addr", U, 8, False, "", "distinctCountOfSourceIPAddress"),
    (379, "distinct_count_of_dst_addr", U, 8, False, "", "distinctCountOfDestinationIPAddress"),
    (380, "distinct_count_of_src_addr4", U, 4, False, "", "distinctCountOfSourceIPv4Address"),
    (381, "distinct_count_of_dst_addr4", U, 4, False, "", "distinctCountOfDestinationIPv4Address"),
    (382, "distinct_count_of_src_addr6", U, 8, False, "", "distinctCountOfSourceIPv6Address"),
    (383, "distinct_count_of_dst_addr6", U, 8, False, "", "distinctCountOfDestinationIPv6Address"),
    (384, "value_distribution_method", U, 1, False, "", "valueDistributionMethod"),
    (385, "rfc3550_jitter_ms", U, 4, False, "", "rfc3550JitterMilliseconds"),
    (386, "rfc3550_jitter_us", U, 4, False, "", "rfc3550JitterMicroseconds"),
    (387, "rfc3550_jitter_ns", U, 4, False, "", "rfc3550JitterNanoseconds"),
    (388, "dot1q_dei", BOO, 1, False, "", "dot1qDEI"),
    (389, "dot1q_customer_dei", BOO, 1, False, "", "dot1qCustomerDEI"),
    (390, "flow_selector_algorithm", U, 2, False, "", "flowSelectorAlgorithm"),
    (391, "flow_selected_bytes", U, 8, False, "", "flowSelectedOctetDeltaCount"),
    (392, "flow_selected_packets", U, 8, False, "", "flowSelectedPacketDeltaCount"),
    (393, "flow_selected_flows", U, 8, False, "", "flowSelectedFlowDeltaCount"),
    (394, "selector_id_total_flows_observed", U, 8, False, "", "selectorIDTotalFlowsObserved"),
    (395, "selector_id_total_flows_selected", U, 8, False, "", "selectorIDTotalFlowsSelected"),
    (396, "sampling_flow_interval", U, 8, False, "", "samplingFlowInterval"),
    (397, "sampling_flow_spacing", U, 8, False, "", "samplingFlowSpacing"),
    (398, "flow_sampling_time_interval", U, 8, False, "", "flowSamplingTimeInterval"),
    (399, "flow_sampling_time_spacing", U, 8, False, "", "flowSamplingTimeSpacing"),
    (400, "hash_flow_domain", U, 2, False, "", "hashFlowDomain"),
    (401, "transport_bytes", U, 8, True, "", "transportOctetDeltaCount"),
    (402, "transport_packets", U, 8, True, "", "transportPacketDeltaCount"),
    (403, "original_exporter_addr", V4, 4, False, "", "originalExporterIPv4Address"),
    (404, "original_exporter_addr6", V6, 16, False, "", "originalExporterIPv6Address"),
    (405, "original_observation_domain_id", U, 4, False, "", "originalObservationDomainId"),
    (406, "intermediate_process_id", U, 4, False, "", "intermediateProcessId"),
    (407, "ignored_data_record_total", U, 8, False, "", "ignoredDataRecordTotalCount"),
    (408, "data_link_frame_type", U, 2, False, "", "dataLinkFrameType"),
    (409, "section_offset", U, 2, False, "", "sectionOffset"),
    (410, "section_exported_bytes", U, 2, False, "", "sectionExportedOctets"),
    (411, "dot1q_service_instance_tag", BYT, 0, False, "", "dot1qServiceInstanceTag"),
    (412, "dot1q_service_instance_id", U, 4, False, "", "dot1qServiceInstanceId"),
    (413, "dot1q_service_instance_priority", U, 1, False, "", "dot1qServiceInstancePriority"),
    (414, "dot1q_customer_src_mac", MAC, 6, False, "", "dot1qCustomerSourceMacAddress"),
    (415, "dot1q_customer_dst_mac", MAC, 6, False, "", "dot1qCustomerDestinationMacAddress"),
    (417, "post_layer2_bytes", U, 8, True, "", "postLayer2OctetDeltaCount"),
    (418, "post_mcast_layer2_bytes", U, 8, True, "", "postMCastLayer2OctetDeltaCount"),
    (420, "post_layer2_bytes_total", U, 8, False, "", "postLayer2OctetTotalCount"),
    (421, "post_mcast_layer2_bytes_total", U, 8, False, "", "postMCastLayer2OctetTotalCount"),
    (422, "min_layer2_total_length", U, 8, False, "", "minimumLayer2TotalLength"),
    (423, "max_layer2_total_length", U, 8, False, "", "maximumLayer2TotalLength"),
    (424, "dropped_layer2_bytes", U, 8, True, "", "droppedLayer2OctetDeltaCount"),
    (425, "dropped_layer2_bytes_total", U, 8, False, "", "droppedLayer2OctetTotalCount"),
    (426, "ignored_layer2_bytes_total", U, 8, False, "", "ignoredLayer2OctetTotalCount"),
    (427, "not_sent_layer2_bytes_total", U, 8, False, "", "notSentLayer2OctetTotalCount"),
    (428, "layer2_bytes_squared", U, 8, False, "", "layer2OctetDeltaSumOfSquares"),
    (429, "layer2_bytes_squared_total", U, 8, False, "", "layer2OctetTotalSumOfSquares"),
    (430, "layer2_frame_delta_count", U, 8, True, "", "layer2FrameDeltaCount"),
    (431, "layer2_frame_total_count", U, 8, False, "", "layer2FrameTotalCount"),
    (432, "pseudo_wire_dst_addr", V4, 4, False, "", "pseudoWireDestinationIPv4Address"),
    (433, "ignored_layer2_frame_total", U, 8, False, "", "ignoredLayer2FrameTotalCount"),
    (434, "mib_object_value_integer", S, 4, False, "", "mibObjectValueInteger"),
    (456, "mib_index_indicator", U, 8, False, "", "mibIndexIndicator"),
    (458, "source_transport_ports_limit", U, 2, False, "", "sourceTransportPortsLimit"),
    (459, "http_request_method", STR, 0, False, "", "httpRequestMethod"),
    (460, "http_request_host", STR, 0, False, "vashost", "httpRequestHost"),
    (461, "http_request_target", STR, 0, False, "", "httpRequestTarget"),
    (462, "http_message_version", STR, 0, False, "", "httpMessageVersion"),
    (463, "nat_instance_id", U, 4, False, "", "natInstanceID"),
    (464, "internal_address_realm", BYT, 0, False, "", "internalAddressRealm"),
    (465, "external_address_realm", BYT, 0, False, "", "externalAddressRealm"),
    (466, "nat_quota_exceeded_event", U, 4, False, "", "natQuotaExceededEvent"),
    (467, "nat_threshold_event", U, 4, False, "", "natThresholdEvent"),
    (468, "http_user_agent", STR, 0, False, "", "httpUserAgent"),
    (469, "http_content_type", STR, 0, False, "", "httpContentType"),
    (470, "http_reason_phrase", STR, 0, False, "", "httpReasonPhrase"),
    (471, "max_session_entries", U, 4, False, "", "maxSessionEntries"),
    (472, "max_bib_entries", U, 4, False, "", "maxBIBEntries"),
    (473, "max_entries_per_user", U, 4, False, "", "maxEntriesPerUser"),
    (474, "max_subscribers", U, 4, False, "", "maxSubscribers"),
    (475, "max_fragments_pending_reassembly", U, 4, False, "", "maxFragmentsPendingReassembly"),
    (476, "address_pool_high_threshold", U, 4, False, "", "addressPoolHighThreshold"),
    (477, "address_pool_low_threshold", U, 4, False, "", "addressPoolLowThreshold"),
    (478, "address_port_mapping_high_threshold", U, 4, False, "", "addressPortMappingHighThreshold"),
    (479, "address_port_mapping_low_threshold", U, 4, False, "", "addressPortMappingLowThreshold"),
    (480, "address_port_mapping_per_user_high_threshold", U, 4, False, "", "addressPortMappingPerUserHighThreshold"),
    (481, "global_address_mapping_high_threshold", U, 4, False, "", "globalAddressMappingHighThreshold"),
    (482, "vpn_identifier", BYT, 0, False, "", "vpnIdentifier"),
    (483, "bgp_community", U, 4, False, "", "bgpCommunity"),
    (484, "bgp_source_community_list", BYT, 0, False, "", "bgpSourceCommunityList"),
    (485, "bgp_destination_community_list", BYT, 0, False, "", "bgpDestinationCommunityList"),
    (486, "bgp_extended_community", BYT, 8, False, "", "bgpExtendedCommunity"),
    (487, "bgp_source_extended_community_list", BYT, 0, False, "", "bgpSourceExtendedCommunityList"),
    (488, "bgp_destination_extended_community_list", BYT, 0, False, "", "bgpDestinationExtendedCommunityList"),
    (489, "bgp_large_community", BYT, 12, False, "", "bgpLargeCommunity"),
    (490, "bgp_source_large_community_list", BYT, 0, False, "", "bgpSourceLargeCommunityList"),
    (491, "bgp_destination_large_community_list", BYT, 0, False, "", "bgpDestinationLargeCommunityList"),
    (492, "srh_flags", U, 1, False, "", "srhFlagsIPv6"),
    (493, "srh_tag", U, 2, False, "", "srhTagIPv6"),
    (494, "srh_segment6", V6, 16, False, "", "srhSegmentIPv6"),
    (495, "srh_active_segment6", V6, 16, False, "", "srhActiveSegmentIPv6"),
    (496, "srh_segment6_basic_list", BYT, 0, False, "", "srhSegmentIPv6BasicList"),
    (497, "srh_segment6_list_section", BYT, 0, False, "", "srhSegmentIPv6ListSection"),
    (498, "srh_segments_left", U, 1, False, "", "srhSegmentsIPv6Left"),
    (499, "srh_ipv6_section", BYT, 0, False, "", "srhIPv6Section"),
    (500, "srh_ipv6_active_segment_type", U, 1, False, "", "srhIPv6ActiveSegmentType"),
    (501, "srh_segment6_locator_length", U, 1, False, "", "srhSegmentIPv6LocatorLength"),
    (502, "srh_segment6_endpoint_behavior", U, 2, False, "", "srhSegmentIPv6EndpointBehavior"),
    (505, "gtpu_flags", U, 1, False, "", "gtpuFlags"),
    (506, "gtpu_msg_type", U, 1, False, "", "gtpuMsgType"),
    (507, "gtpu_teid", U, 4, False, "", "gtpuTEid"),
    (508, "gtpu_sequence_num", U, 2, False, "", "gtpuSequenceNum"),
    (509, "gtpu_qfi", U, 1, False, "", "gtpuQFI"),
    (510, "gtpu_pdu_type", U, 1, False, "", "gtpuPduType"),
    (515, "ipv6_extension_header_type_count_list", BYT, 0, False, "", "ipv6ExtensionHeaderTypeCountList"),
    # Cisco ASA / NSEL vendor ids in the plain v9 space
    (33000, "ingress_acl_id", BYT, 12, False, "", "Cisco NSEL ingress ACL id"),
    (33001, "egress_acl_id", BYT, 12, False, "", "Cisco NSEL egress ACL id"),
    (33002, "fw_ext_event", U, 2, False, "", "Cisco NSEL extended firewall event"),
    (40000, "aaa_username", STR, 0, False, "", "Cisco NSEL AAA user name"),
    (40001, "xlate_src_addr", V4, 4, False, "", "Cisco NSEL translated source IPv4"),
    (40002, "xlate_dst_addr", V4, 4, False, "", "Cisco NSEL translated destination IPv4"),
    (40003, "xlate_src_port", U, 2, False, "", "Cisco NSEL translated source port"),
    (40004, "xlate_dst_port", U, 2, False, "", "Cisco NSEL translated destination port"),
    (40005, "fw_event", U, 1, False, "", "Cisco NSEL firewall event"),
)

# Enterprise elements we decode by name: (pen, element id, name, type, size, counter, description)
_ENTERPRISE: tuple[tuple[int, int, str, FieldType, int, bool, str], ...] = (
    # RFC 5103 reverse information elements (PEN 29305): reverse direction of IANA elements
    (29305, 1, "rev_bytes", U, 8, True, "reverse octetDeltaCount (RFC 5103)"),
    (29305, 2, "rev_packets", U, 8, True, "reverse packetDeltaCount (RFC 5103)"),
    (29305, 5, "rev_tos", U, 1, False, "reverse ipClassOfService"),
    (29305, 6, "rev_tcp_flags", U, 2, False, "reverse tcpControlBits"),
    (29305, 32, "rev_icmp_type", U, 2, False, "reverse icmpTypeCodeIPv4"),
    (29305, 58, "rev_vlan", U, 2, False, "reverse vlanId"),
    (29305, 85, "rev_bytes_total", U, 8, False, "reverse octetTotalCount"),
    (29305, 86, "rev_packets_total", U, 8, False, "reverse packetTotalCount"),
    (29305, 152, "rev_flow_start_ms", TMS, 8, False, "reverse flowStartMilliseconds"),
    (29305, 153, "rev_flow_end_ms", TMS, 8, False, "reverse flowEndMilliseconds"),
    (29305, 184, "rev_tcp_seq", U, 4, False, "reverse tcpSequenceNumber"),
    # ntop nProbe (PEN 35632)
    (35632, 118, "ntop_l7_proto", U, 2, False, "nProbe L7_PROTO"),
    (35632, 119, "ntop_l7_proto_name", STR, 0, False, "nProbe L7_PROTO_NAME"),
)

#: Virtual fields filled by the collector, not by the wire. Element ids in xenoeye's
#: virtual range so they never clash with real elements.
VIRTUAL: tuple[tuple[int, str, FieldType, str], ...] = (
    (65500, "dev_ip", V4, "exporter IPv4 address (0 for IPv6 exporters)"),
    (65501, "dev_ip6", V6, "exporter address as IPv6 (IPv4 exporters as ::ffff:a.b.c.d)"),
    (65502, "dev_id", U, "v9 source id / IPFIX observation domain / v5 engine type<<8|id"),
    (65503, "sampling_rate", U, "sampling rate applied to the counters (1 = unsampled)"),
    (65504, "recv_time_ns", U, "collector receive time (packet time on replay), ns since epoch"),
    (65505, "time_start_ms", U, "flow start, ms since epoch, from whichever time field the exporter sent"),
    (65506, "time_end_ms", U, "flow end, ms since epoch, from whichever time field the exporter sent"),
    (65507, "exporter_index", U, "collector-internal exporter number"),
    (65508, "template_id", U, "template id (0 for v5)"),
    (65509, "record_kind", U, "0 = v5 record, 1 = data record, 2 = options record"),
    (65510, "template_slot", U, "collector-internal template slot (for dumps)"),
    (65511, "record_offset", U, "offset of the record in the receive buffer (for dumps)"),
    (65512, "version", U, "NetFlow version of the packet (5, 9, 10)"),
    # filled by the enrichment stage (appliance.collector.enrich) from .mmdb databases;
    # codes: countries/continents 'D' << 8 | 'E', texts index appliance.collector.fields.geo.TEXTS
    *((65513 + 2 * i + k, f"{side}_{name}", U, f"{'source' if k == 0 else 'destination'} {desc}")
      for i, (name, desc) in enumerate((
          ("country", "country ISO code (GeoIP; code 'D'<<8|'E', 0 = unknown)"),
          ("continent", "continent code (GeoIP; code 'E'<<8|'U', 0 = unknown)"),
          ("asn", "AS number from the ASN database (0 = unknown)"),
          ("as_org", "AS organisation (ASN database; text code)"),
          ("state", "state / region (City database; text code)"),
          ("city", "city (City database; text code)"),
          ("zip", "postal code (City database; text code)"),
          ("lat", "latitude (City database; text code)"),
          ("long", "longitude (City database; text code)"),
          ("net_name", "network name (the networks file; text code)"),
          ("net_role", "network role (the networks file; text code)"),
          ("net_site", "network site (the networks file; text code)"),
      )) for k, side in enumerate(("src", "dst"))),  # ids past 65535: never on the wire
    (65537, "in_if_name", U, "input interface name (devices.conf interfaces; text code)"),
    (65538, "out_if_name", U, "output interface name (devices.conf interfaces; text code)"),
)

#: The names ``decode --format jsonl`` always uses for the common fields.
COMMON_NAMES = (
    "src_addr", "dst_addr", "src_addr6", "dst_addr6", "src_port", "dst_port", "proto",
    "bytes", "packets", "tos", "tcp_flags", "in_if", "out_if", "src_as", "dst_as",
    "src_mask", "dst_mask", "next_hop", "next_hop6", "bgp_next_hop", "first_switched",
    "last_switched", "src_vlan", "dst_vlan",
)


class Registry:
    """The field table plus the numpy lookup arrays the numba decoder needs.

    Attributes:
        fields: every field, indexed by column.
        by_name: name → field (xenoeye names are aliases).
        iana_column: int64[65536], element id (pen 0) → column, -1 if unknown.
        ent_keys / ent_columns: sorted (pen << 16 | element id) → column for enterprise fields.
        ftype / counter / column6: per column arrays for the decoder.
    """

    def __init__(self) -> None:
        fields: list[Field] = []
        n6 = 0

        def add(eid: int, pen: int, name: str, ftype: FieldType, size: int, counter: bool,
                xen: str, desc: str) -> None:
            nonlocal n6
            col6 = -1
            if ftype == FieldType.IPV6:
                col6 = n6
                n6 += 1
            fields.append(Field(name, eid, pen, ftype, size, counter, len(fields), col6, xen, desc))

        for eid, name, ftype, size, counter, xen, desc in _ELEMENTS:
            add(eid, 0, name, ftype, size, counter, xen, desc)
        for pen, eid, name, ftype, size, counter, desc in _ENTERPRISE:
            add(eid, pen, name, ftype, size, counter, "", desc)
        for eid, name, ftype, desc in VIRTUAL:
            add(eid, 0, name, ftype, 16 if ftype == FieldType.IPV6 else 8, False, "", desc)

        self.fields: tuple[Field, ...] = tuple(fields)
        self.n_columns = len(fields)
        self.n_columns6 = n6
        self.by_name: dict[str, Field] = {}
        for f in fields:
            if f.name in self.by_name:
                raise ValueError(f"duplicate field name {f.name!r} in the registry")
            self.by_name[f.name] = f
        for f in fields:
            if f.xenoeye and f.xenoeye not in self.by_name:
                self.by_name[f.xenoeye] = f

        self.iana_column = np.full(65536, -1, dtype=np.int64)
        ent = []
        for f in fields:
            if f.element_id >= 65500 and f.pen == 0 and f.name in {v[1] for v in VIRTUAL}:
                continue
            if f.pen == 0:
                self.iana_column[f.element_id] = f.column
            else:
                ent.append(((f.pen << 16) | f.element_id, f.column))
        ent.sort()
        self.ent_keys = np.array([k for k, _ in ent], dtype=np.int64)
        self.ent_columns = np.array([c for _, c in ent], dtype=np.int64)
        self.ftype = np.array([f.ftype for f in fields], dtype=np.int64)
        self.counter = np.array([f.counter for f in fields], dtype=np.bool_)
        self.column6 = np.array([f.column6 for f in fields], dtype=np.int64)

    def __getitem__(self, name: str) -> Field:
        return self.by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def column(self, name: str) -> int:
        """Column index of a field by our name or xenoeye's name."""
        return self.by_name[name].column

    def lookup(self, pen: int, element_id: int) -> Field | None:
        """The field for an element, or None if we do not know it."""
        if pen == 0:
            col = int(self.iana_column[element_id & 0xFFFF])
            return self.fields[col] if col >= 0 else None
        key = (pen << 16) | element_id
        i = int(np.searchsorted(self.ent_keys, key))
        if i < len(self.ent_keys) and self.ent_keys[i] == key:
            return self.fields[int(self.ent_columns[i])]
        return None


REGISTRY = Registry()
