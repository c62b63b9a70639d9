"""Templates: which fields a v9 / IPFIX exporter sends, in which order and length.

`template_for` and `options_template_for` build them from registry names; the
`sampler_template`, `statistics_template` and `interface_template` helpers build the options
templates routers send. The encoders (`encoder.py`) and the record packer (`_encode.py`)
take them; nothing here packs bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.errors import MirrorflowError
from appliance.netflow.header import MIN_DATA_SET_ID, V9, VARIABLE_LENGTH, V9Scope
from appliance.netflow.registry import REGISTRY, VIRTUAL, FieldType

__all__ = [
    "V9_SCOPE_NAMES",
    "EncodeError",
    "Template",
    "TemplateField",
    "ValueOverflowError",
    "interface_template",
    "options_template_for",
    "sampler_template",
    "statistics_template",
    "template_for",
    "wire_fields",
]


class EncodeError(MirrorflowError, ValueError):
    """Columns or templates that cannot be encoded (missing column, bad shape, bad template);
    a `ValueError` too, as callers that validate values expect."""


class ValueOverflowError(EncodeError):
    """A value does not fit the field length of the template (or a v5 32-bit counter)."""


#: v9 options-template scope "fields": their column names and scope types.
V9_SCOPE_NAMES = {
    "scope_system": V9Scope.SYSTEM,
    "scope_interface": V9Scope.INTERFACE,
    "scope_line_card": V9Scope.LINE_CARD,
    "scope_cache": V9Scope.CACHE,
    "scope_template": V9Scope.TEMPLATE,
}
_V6_TWINS = {
    "src_addr": "src_addr6",
    "dst_addr": "dst_addr6",
    "next_hop": "next_hop6",
    "bgp_next_hop": "bgp_next_hop6",
    "src_mask": "src_mask6",
    "dst_mask": "dst_mask6",
    "icmp_type": "icmp_type6",
}
_VIRTUAL_NAMES = frozenset(v[1] for v in VIRTUAL)


@dataclass(frozen=True, slots=True)
class TemplateField:
    """One field of a template.

    Attributes:
        name: the column the value comes from (a registry name, or a v9 ``scope_*`` name).
        element_id: IANA/vendor element id (v9 scope fields: the scope type).
        length: bytes on the wire; `VARIABLE_LENGTH` (65535) for IPFIX variable length.
        pen: private enterprise number (IPFIX only), 0 for IANA elements.
        ftype: how the column is turned into bytes.
    """

    name: str
    element_id: int
    length: int
    pen: int = 0
    ftype: FieldType = FieldType.UNSIGNED


@dataclass(frozen=True, slots=True)
class Template:
    """A (options) template: id, ordered fields, and how many leading fields are scope.

    Attributes:
        template_id: 256..65535.
        fields: the fields in wire order; the first `scope_count` are scope fields.
        scope_count: 0 for a data template, > 0 for an options template.
    """

    template_id: int
    fields: tuple[TemplateField, ...]
    scope_count: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if not MIN_DATA_SET_ID <= self.template_id <= 0xFFFF:
            raise EncodeError(f"template id {self.template_id} is not in 256..65535")
        if not self.fields or self.scope_count > len(self.fields):
            raise EncodeError(f"template {self.template_id}: needs fields and scope ≤ fields")
        for f in self.fields:
            if not 1 <= f.length <= 0xFFFF:
                raise EncodeError(f"template {self.template_id}: {f.name} has length {f.length}")
            if f.ftype == FieldType.IPV6 and f.length != 16:
                raise EncodeError(f"template {self.template_id}: {f.name} must be 16 bytes")
            if f.length > 8 and f.ftype not in (FieldType.IPV6, FieldType.STRING, FieldType.BYTES):
                raise EncodeError(f"template {self.template_id}: {f.name} longer than 8 bytes")

    @property
    def is_options(self) -> bool:
        return self.scope_count > 0

    @property
    def record_length(self) -> int | None:
        """Bytes per record, or None when a field has variable length."""
        if any(f.length == VARIABLE_LENGTH for f in self.fields):
            return None
        return sum(f.length for f in self.fields)


def _field(spec: str | tuple[str, int], ipv6: bool = False) -> TemplateField:
    name, length = (spec, None) if isinstance(spec, str) else spec
    if name in V9_SCOPE_NAMES:
        return TemplateField(name, V9_SCOPE_NAMES[name], length or 4)
    if ipv6:
        name = _V6_TWINS.get(name, name)
    if name not in REGISTRY:
        raise EncodeError(f"unknown field {name!r}: not in the field registry")
    f = REGISTRY[name]
    if name in _VIRTUAL_NAMES:
        raise EncodeError(f"field {name!r} is virtual (collector-side) and has no wire form")
    size = length or f.size or VARIABLE_LENGTH
    return TemplateField(f.name, f.element_id, size, f.pen, f.ftype)


def template_for(
    fields: Sequence[str | tuple[str, int]], template_id: int, ipv6: bool = False
) -> Template:
    """A data template whose field lengths come from the registry.

    Args:
        fields: registry names, or ``(name, length)`` to override the usual size
            (e.g. ``("bytes", 4)``). Variable-size registry fields get variable length.
        template_id: 256..65535.
        ipv6: replace IPv4 fields by their IPv6 twins (src_addr → src_addr6, masks,
            next hops, icmp_type → icmp_type6), so one field list serves both families.
    """
    return Template(template_id, tuple(_field(s, ipv6) for s in fields))


def options_template_for(
    scope: Sequence[str | tuple[str, int]],
    fields: Sequence[str | tuple[str, int]],
    template_id: int,
) -> Template:
    """An options template. v9 scopes are ``scope_system``, ``scope_interface``, ...;
    IPFIX scopes are ordinary elements (``selector_id``, ``observation_domain_id``)."""
    all_fields = tuple(_field(s) for s in (*scope, *fields))
    return Template(template_id, all_fields, scope_count=len(scope))


def sampler_template(template_id: int, version: int) -> Template:
    """Sampler configuration options template.

    v9 (Cisco): scope ``scope_system``; ``sampler_id`` (48), ``sampler_mode`` (49),
    ``sampler_random_interval`` (50), ``sampling_interval`` (34), ``sampling_algorithm``
    (35). IPFIX (RFC 5476): scope ``selector_id`` (302); ``selector_algorithm`` (304),
    ``sampling_packet_interval`` (305), ``sampling_packet_space`` (306).
    """
    if version == V9:
        return options_template_for(
            ["scope_system"],
            [
                "sampler_id",
                "sampler_mode",
                "sampler_random_interval",
                "sampling_interval",
                "sampling_algorithm",
            ],
            template_id,
        )
    return options_template_for(
        ["selector_id"],
        ["selector_algorithm", "sampling_packet_interval", "sampling_packet_space"],
        template_id,
    )


_STATISTICS = (
    "exported_flows",  # 42 exportedFlowRecordTotalCount
    "exported_packets",  # 41 exportedMessageTotalCount
    "exported_bytes",  # 40 exportedOctetTotalCount
    "ignored_packets_total",  # 164
    "ignored_bytes_total",  # 165
    "not_sent_flows_total",  # 166
)


def statistics_template(template_id: int, version: int) -> Template:
    """Exporting-process statistics options template (see `encode_statistics`).

    Scope is ``scope_system`` (v9) or ``observation_domain_id`` (IPFIX).
    """
    scope = "scope_system" if version == V9 else "observation_domain_id"
    return options_template_for([scope], _STATISTICS, template_id)


def interface_template(template_id: int, version: int, name_length: int = 32) -> Template:
    """Interface names options template: scope interface index, then ``if_name`` (82)
    and ``if_desc`` (83). IPFIX uses variable length; v9 pads to `name_length` bytes."""
    if version == V9:
        return options_template_for(
            ["scope_interface"], [("if_name", name_length), ("if_desc", name_length)], template_id
        )
    return options_template_for(["in_if"], ["if_name", "if_desc"], template_id)


def wire_fields(names: Iterable[str]) -> list[str]:
    """The registry names among `names` that have a wire form (not collector-side virtual ones)."""
    return [name for name in names if name in REGISTRY and name not in _VIRTUAL_NAMES]
