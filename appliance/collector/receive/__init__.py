"""Receive: datagrams from UDP sockets (recvmmsg) or pcap/pcapng captures, as `PacketBatch`es."""

from __future__ import annotations

from appliance.collector.receive.packets import PacketBatch, address_to_words, words_to_address
from appliance.collector.receive.pcapfile import PcapFormatError, PcapReader, PcapStats, read_pcap
from appliance.collector.receive.udp import ListenAddress, ListenSpecError, UdpReceiver, parse_listen, socket_drops

__all__ = ["PacketBatch", "address_to_words", "words_to_address", "PcapFormatError", "PcapReader", "PcapStats",
           "read_pcap", "ListenAddress", "ListenSpecError", "UdpReceiver", "parse_listen", "socket_drops"]
