"""Decode: NetFlow v1/v5/v9 and IPFIX datagrams → `FlowBatch` columns (template cache, numba kernels),
and the text/JSON dump of decoded records."""

from __future__ import annotations

from appliance.collector.decode.decoder import Decoder, ExporterStats, Stat
from appliance.collector.decode.dump import (
    KIND_NAMES,
    FlowDumper,
    format_jsonl,
    format_text,
    records,
)

__all__ = ["KIND_NAMES", "Decoder", "ExporterStats", "FlowDumper", "Stat", "format_jsonl", "format_text", "records"]
