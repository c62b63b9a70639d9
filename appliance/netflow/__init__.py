"""Wire formats shared by the probe and the collector: the field registry, headers, encoders.

No I/O here.
"""

from __future__ import annotations

from appliance.netflow.registry import REGISTRY, Field, FieldType, Registry

__all__ = ["REGISTRY", "Field", "FieldType", "Registry"]
