"""Fields: the names of flow fields in filters, windows, SQL, dumps and the API, and
xenoeye's functions over them."""

from __future__ import annotations

from appliance.collector.fields.spec import TEXT_FUNCTIONS, Column, FieldError, FieldSpec, KeyKind, parse_field

__all__ = ["TEXT_FUNCTIONS", "Column", "FieldError", "FieldSpec", "KeyKind", "parse_field"]
