"""The field registry: one table that names every NetFlow v9 / IPFIX element we know.

It is the analogue of xenoeye's ``netflow.def`` + ``filter.def`` in one place. The decoder
uses it to place values into `FlowBatch` columns, the dump and ``decode`` commands use it to
name fields, and later parts (filters, window fields, SQL types) look fields up here.

Every known element gets a *column*: an index into the decoder's ``u64`` column block
(numbers, IPv4 addresses, MAC addresses, timestamps, references to strings), and IPv6
addresses additionally an index into the ``v6`` column block. Adding a field is one line
in `appliance.netflow.elements` (`ELEMENTS`, or `ENTERPRISE`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.netflow.elements import COMMON_NAMES, ELEMENTS, ENTERPRISE, VIRTUAL
from appliance.netflow.fieldtype import ADDRESS_TYPES, REFERENCE_TYPES, FieldType

__all__ = [
    "ADDRESS_TYPES",
    "REFERENCE_TYPES",
    "FieldType",
    "Field",
    "REGISTRY",
    "Registry",
    "VIRTUAL",
    "COMMON_NAMES",
]


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

        for eid, name, ftype, size, counter, xen, desc in ELEMENTS:
            add(eid, 0, name, ftype, size, counter, xen, desc)
        for pen, eid, name, ftype, size, counter, desc in ENTERPRISE:
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
