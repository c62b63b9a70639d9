"""Wire formats shared by the probe and the collector: the field registry, headers, encoders.

No I/O here.
"""

from __future__ import annotations

from appliance.netflow.encoder import (
    EncodeError,
    IPFIXEncoder,
    Template,
    TemplateField,
    V5Encoder,
    V9Encoder,
    ValueOverflowError,
    encode_ipfix,
    encode_v5,
    encode_v9,
    interface_template,
    options_template_for,
    sampler_template,
    statistics_template,
    template_for,
)
from appliance.netflow.registry import REGISTRY, Field, FieldType, Registry

__all__ = [
    "REGISTRY",
    "EncodeError",
    "Field",
    "FieldType",
    "IPFIXEncoder",
    "Registry",
    "Template",
    "TemplateField",
    "V5Encoder",
    "V9Encoder",
    "ValueOverflowError",
    "encode_ipfix",
    "encode_v5",
    "encode_v9",
    "interface_template",
    "options_template_for",
    "sampler_template",
    "statistics_template",
    "template_for",
]
