"""Window fields (xenoeye's ``fwm`` ``fields``): each entry resolved to the columns it reads.

A ``fields`` entry is an aggregate (``octets``/``bytes``, ``packets``, ``bits``, ``flows`` and
any counter of the registry), summed, or a key: a field name (`appliance.collector.fields.table`:
the same names as in filters, ``src``/``dst`` prefix; a two-sided name without prefix means
``src``, as xenoeye does) or one of xenoeye's functions (`appliance.collector.fields.functions`):
``div(a, b)``, ``div_r(a, b, N)``, ``div_l(a, b, N)`` (also ``divr``/``divl``) over aggregates,
``min(f1, f2)``, ``mfreq(f1, f2)``, and the TEXT-valued ``tfstr(tcp-flags)``,
``portstr(port)``, ``ppstr(p1, p2)``. Arguments of two-sided fields need ``src``/``dst``
(``min(src port, dst port)``), as in xenoeye. The column name is xenoeye's: the text with
every non-alphanumeric character replaced by ``_`` (``div(octets, packets)`` →
``div_octets__packets_``). Text fields of the registry (``if_name``, ``http_host``…) are
grouped by a 128-bit hash of their bytes and exported as TEXT. xenoeye's GeoIP and AS functions
of an address (``continent``, ``country_code``, ``country``, ``state``, ``city``, ``zip``,
``lat``, ``long``, ``asn``, ``asd`` of ``src host`` / ``dst host``) read the columns the
enrichment stage adds from .mmdb databases (`appliance.collector.fields.geo`; unknown → ``?``,
``asn`` a number, 0 unknown); so do the field names ``src country``, ``dst asn``, ``as-org``….
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np

import appliance.collector.fields.functions as fn
import appliance.collector.fields.geo as geo
from appliance.collector.fields.table import FILTER_FIELDS, ValueKind
from appliance.collector.flowbatch import FlowBatch
from appliance.errors import MirrorflowError
from appliance.netflow.registry import REGISTRY, FieldType

__all__ = ["Column", "FieldError", "FieldSpec", "KeyKind", "TEXT_FUNCTIONS", "parse_call", "parse_field"]

#: the exporter's address as a window key: one IPv6 column (IPv4 exporters v4-mapped)
_DEV_IP = frozenset({"dev-ip", "dev-ip6"})
#: aggregate name → (registry counter, multiplier); None = count of flow records
_AGGREGATES: dict[str, tuple[str | None, int]] = {
    "octets": ("bytes", 1), "bytes": ("bytes", 1), "in_bytes": ("bytes", 1),
    "packets": ("packets", 1), "in_pkts": ("packets", 1), "bits": ("bytes", 8),
    "flows": (None, 1), "ioctets": ("initiator_bytes", 1), "roctets": ("responder_bytes", 1),
    "ipackets": ("initiator_packets", 1), "rpackets": ("responder_packets", 1),
}
#: function name as written → (canonical name, number of field arguments, takes N)
_FUNCTIONS: dict[str, tuple[str, int, bool]] = {
    "div": ("div", 2, False), "div_r": ("div_r", 2, True), "divr": ("div_r", 2, True),
    "div_l": ("div_l", 2, True), "divl": ("div_l", 2, True), "min": ("min", 2, False),
    "mfreq": ("mfreq", 2, False), "tfstr": ("tfstr", 1, False), "portstr": ("portstr", 1, False),
    "ppstr": ("ppstr", 2, False),
}
_GEO_FUNCTIONS = tuple(geo.GEO_FUNCTIONS)
#: functions whose value is text (computed as a code, rendered at export)
TEXT_FUNCTIONS = frozenset({"tfstr", "portstr", "ppstr", *(f for f in _GEO_FUNCTIONS if f != "asn")})


class FieldError(MirrorflowError, ValueError):
    """A ``fields`` entry that cannot be used; the message says what to write instead."""


class KeyKind(enum.IntEnum):
    NUMBER = 0  # bigint
    IPV4 = 1  # inet, one word
    IPV6 = 2  # inet, two words
    IP_ANY = 3  # inet: the IPv6 column when set, else the IPv4 one (as ::ffff:a.b.c.d)
    MAC = 4  # macaddr
    TEXT = 5  # text field of the registry: two hash words, one representative text per key
    CODE = 6  # text function (tfstr, portstr, ppstr): one code word, rendered at export


_SQL_TYPES = {KeyKind.NUMBER: "BIGINT", KeyKind.IPV4: "INET", KeyKind.IPV6: "INET",
              KeyKind.IP_ANY: "INET", KeyKind.MAC: "MACADDR", KeyKind.TEXT: "TEXT",
              KeyKind.CODE: "TEXT"}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sqltype: str


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One ``fields`` entry, resolved against the registry.

    Attributes:
        text: as written (``"src host"``, ``"octets desc"``).
        column: SQL column name (xenoeye's: text without asc/desc, non-alnum → ``_``).
        desc: sort descending.
        aggregate: summed (else part of the key).
        source: registry field name (None for ``flows``).
        source6: for `KeyKind.IP_ANY`, the IPv6 registry field.
        alternatives: more registry fields for the same thing, read in order where ``source``
            is 0 (``dst mac``: element 57, else 80; see `appliance.collector.fields.table`).
        multiplier: for aggregates (``bits`` = bytes × 8).
        kind: for keys, how the words become an SQL value.
        func: a function's canonical name (``div_r``, ``tfstr``…), None for fields.
        args: a function's field arguments.
        param: a function's N (div_r, div_l).
    """

    text: str
    column: str
    desc: bool
    aggregate: bool
    source: str | None
    source6: str | None = None
    multiplier: int = 1
    kind: KeyKind = KeyKind.NUMBER
    func: str | None = None
    args: tuple[FieldSpec, ...] = ()
    param: int = 0
    alternatives: tuple[str, ...] = ()

    @property
    def words(self) -> int:
        return 0 if self.aggregate else (2 if self.kind in (KeyKind.IPV6, KeyKind.IP_ANY, KeyKind.TEXT) else 1)

    @property
    def columns_read(self) -> tuple[str, ...]:
        """Registry names this field (or function) reads."""
        if self.func in geo.GEO_FUNCTIONS:
            return (self.source,)  # type: ignore[return-value]
        if self.func is not None:
            return tuple(c for a in self.args for c in a.columns_read)
        return tuple(c for c in (self.source, self.source6, *self.alternatives) if c)

    @property
    def sqltype(self) -> str:
        return "BIGINT" if self.aggregate else _SQL_TYPES[self.kind]

    def key_words(self, batch: FlowBatch, rows: np.ndarray | None = None,
                  freq: np.ndarray | None = None) -> list[np.ndarray]:
        """The key's uint64 words for every row of the batch.

        Args:
            batch: the flows.
            rows: the rows that count (int64 indices, in order): only these are computed for
                text fields and ``mfreq`` (the others are 0); None = all.
            freq: ``mfreq``'s running frequency map (uint64[65536]), updated in place;
                None = a fresh one.
        """
        if self.func is not None:
            return [self._function(batch, rows, freq)]
        if self.kind == KeyKind.TEXT:
            if rows is None:
                rows = np.arange(batch.n, dtype=np.int64)
            h1 = np.zeros(batch.n, dtype=np.uint64)
            h2 = np.zeros(batch.n, dtype=np.uint64)
            refs = batch[self.source]
            fn.hash_texts(refs if refs.dtype == np.uint64 else refs.astype(np.uint64), batch.raw, rows, h1, h2)
            return [h1, h2]
        if self.kind == KeyKind.IP_ANY:
            v6 = batch[self.source6] if self.source6 in batch else None
            v4 = batch[self.source]
            hi = np.zeros(batch.n, dtype=np.uint64)
            lo = v4 | np.uint64(0xFFFF_0000_0000)
            if v6 is not None:
                is6 = (v6[:, 0] | v6[:, 1]) != 0
                hi = np.where(is6, v6[:, 0], hi)
                lo = np.where(is6, v6[:, 1], lo)
            return [hi, lo]
        arr = batch[self.source]
        if arr.ndim == 2:
            return [arr[:, 0], arr[:, 1]]
        for alt in self.alternatives:
            if alt in batch:
                arr = np.where(arr != 0, arr, batch[alt])
        return [arr]

    def _function(self, batch: FlowBatch, rows: np.ndarray | None, freq: np.ndarray | None) -> np.ndarray:
        f = self.func
        if f in geo.GEO_FUNCTIONS:
            return batch[self.source]  # type: ignore[index]
        if f in ("div", "div_r", "div_l"):
            a, b = (x.values(batch) for x in self.args)
            out = np.empty(batch.n, dtype=np.uint64)
            fn.div_values(np.ascontiguousarray(a, np.uint64), np.ascontiguousarray(b, np.uint64),
                          {"div": 0, "div_r": 1, "div_l": 2}[f], self.param, out)
            return out
        cols = [x.key_words(batch)[0].astype(np.uint64, copy=False) for x in self.args]
        if f == "min":
            return np.minimum(cols[0], cols[1])
        if f == "mfreq":
            out = np.zeros(batch.n, dtype=np.uint64)
            if rows is None:
                rows = np.arange(batch.n, dtype=np.int64)
            if freq is None:
                freq = np.zeros(1 << 16, dtype=np.uint64)
            fn.mfreq_values(cols[0], cols[1], rows.astype(np.int64, copy=False), freq, out)
            return out
        if f == "tfstr":
            return cols[0] & np.uint64(0xFF)
        if f == "portstr":
            return cols[0] & np.uint64(0xFFFF)
        assert f == "ppstr"
        return fn.pp_code(cols[0], cols[1])

    def render(self, codes: np.ndarray) -> np.ndarray:
        """Text of a CODE field's codes (an object array)."""
        if self.func is None:
            return geo.render(self.source, codes)  # type: ignore[arg-type]
        if self.func in geo.GEO_FUNCTIONS:
            return geo.function_render(self.func, codes)
        if self.func == "tfstr":
            return np.array(fn.TFSTR, dtype=object)[codes.astype(np.int64)]
        if self.func == "portstr":
            return np.array(fn.port_texts(), dtype=object)[codes.astype(np.int64)]
        uniq, inv = np.unique(codes, return_inverse=True)
        return np.array([fn.pp_text(int(c)) for c in uniq], dtype=object)[inv.reshape(-1)]

    def values(self, batch: FlowBatch) -> np.ndarray:
        """The aggregate's contribution of every row (counters are already scaled by sampling)."""
        if self.source is None:
            return np.ones(batch.n, dtype=np.uint64)
        arr = batch[self.source]
        return arr * np.uint64(self.multiplier) if self.multiplier != 1 else arr


def _column_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "_", text)


def parse_field(text: str) -> FieldSpec:
    """Resolve one ``fields`` entry (``"src host"``, ``"octets desc"``, ``"dst_port asc"``).

    Raises:
        FieldError: unknown name, function, direction on a one-sided field, text field.
    """
    if not isinstance(text, str) or not text.strip():
        raise FieldError("a field must be a non-empty string like \"src host\" or \"octets desc\"")
    words = text.split()
    desc = False
    if words[-1].lower() in ("asc", "desc"):
        desc = words.pop().lower() == "desc"
        if not words:
            raise FieldError(f"{text!r}: a field name must come before asc/desc")
    bare = " ".join(words)
    column = _column_name(bare).lower()
    func = re.match(r"\s*([A-Za-z_]+)\s*\(", bare)
    if func:
        return parse_call(text, bare, column, desc)
    direction = None
    if len(words) == 2 and words[0].lower() in ("src", "dst"):
        direction = words[0].lower()
        words = words[1:]
    if len(words) != 1:
        raise FieldError(f"{text!r}: expected [src|dst] NAME [asc|desc]")
    name = words[0].lower()
    if name in _AGGREGATES or (name in REGISTRY and REGISTRY[name].counter):
        if direction:
            raise FieldError(f"{text!r}: aggregates have no direction; write \"{name}\"")
        source, mult = _AGGREGATES.get(name, (REGISTRY[name].name if name in REGISTRY else None, 1))
        return FieldSpec(text, column, desc, True, source, multiplier=mult)
    if name in FILTER_FIELDS:
        return _named_key(text, column, desc, name, direction)
    if name in REGISTRY or name.replace("-", "_") in REGISTRY:
        if direction:
            raise FieldError(f"{text!r}: src/dst go only before xenoeye's names (host, port, as…); "
                             f"write \"{name}\"")
        reg = REGISTRY[name if name in REGISTRY else name.replace("-", "_")].name
    else:
        raise FieldError(f"{text!r}: unknown field {name!r}; use a xenoeye name (src host, dst port, "
                         "proto, octets, packets…) or a registry name (mirrorflow decode shows them)")
    f = REGISTRY[reg]
    if f.ftype in (FieldType.STRING, FieldType.BYTES):
        return FieldSpec(text, column, desc, False, reg, kind=KeyKind.TEXT)
    kind = {FieldType.IPV4: KeyKind.IPV4, FieldType.IPV6: KeyKind.IPV6,
            FieldType.MAC: KeyKind.MAC}.get(f.ftype, KeyKind.NUMBER)
    return FieldSpec(text, column, desc, False, reg, kind=kind)


def _named_key(text: str, column: str, desc: bool, name: str, direction: str | None) -> FieldSpec:
    """A key by one of the field table's names (``src host``, ``dst mac``, ``proto``)."""
    f = FILTER_FIELDS[name]
    if direction and not f.directional:
        raise FieldError(f"{text!r}: {name} has no src/dst form; write \"{name}\"")
    if name in _DEV_IP:
        return FieldSpec(text, column, desc, False, "dev_ip6", kind=KeyKind.IPV6)
    side = "dst" if direction == "dst" else "src"  # no prefix: the source, as in xenoeye
    v4, v6 = f.columns(side), f.columns(side, v6=True)
    if f.kind is ValueKind.IP and v4 and v6:
        return FieldSpec(text, column, desc, False, v4[0], v6[0], kind=KeyKind.IP_ANY)
    if f.kind in (ValueKind.IP, ValueKind.IP6):
        return FieldSpec(text, column, desc, False, v6[0], kind=KeyKind.IPV6)
    kind = {ValueKind.IP4: KeyKind.IPV4, ValueKind.MAC: KeyKind.MAC,
            ValueKind.TEXT: KeyKind.TEXT, ValueKind.CODE: KeyKind.CODE}.get(f.kind, KeyKind.NUMBER)
    return FieldSpec(text, column, desc, False, v4[0], kind=kind, alternatives=v4[1:])


def parse_call(text: str, bare: str, column: str | None = None, desc: bool = False) -> FieldSpec:
    """Resolve a function call (``div_r(octets, packets, 100)``, ``tfstr(tcp-flags)``).

    Args:
        text: the whole entry, for messages.
        bare: the call without asc/desc.

    Raises:
        FieldError: unknown function, wrong arguments, GeoIP/AS functions.
    """
    m = re.fullmatch(r"\s*([A-Za-z_]+)\s*\((.*)\)\s*", bare, re.S)
    name = re.match(r"\s*([A-Za-z_]+)", bare).group(1).lower()  # type: ignore[union-attr]
    if name in _GEO_FUNCTIONS:
        return _geo_call(text, bare, name, m, column, desc)
    if name not in _FUNCTIONS:
        known = ", ".join(sorted({v[0] for v in _FUNCTIONS.values()}))
        raise FieldError(f"{text!r}: unknown function {name}(); known: {known}")
    if m is None:
        raise FieldError(f"{text!r}: expected {name}(ARG, ...) with a closing ')'")
    canon, nargs, takes_n = _FUNCTIONS[name]
    parts = [a.strip() for a in m.group(2).split(",")]
    want = nargs + (1 if takes_n else 0)
    usage = {"div": "div(octets, packets)", "div_r": f"{name}(octets, packets, 100)",
             "div_l": f"{name}(octets, packets, 10)", "min": "min(src port, dst port)",
             "mfreq": "mfreq(src port, dst port)", "tfstr": "tfstr(tcp-flags)",
             "portstr": "portstr(dst port)", "ppstr": "ppstr(src port, dst port)"}[canon]
    if len(parts) != want or not all(parts):
        raise FieldError(f"{text!r}: {name}() takes {want} argument(s), like {usage}")
    args: list[FieldSpec] = []
    for a in parts[:nargs]:
        if re.match(r"\s*[A-Za-z_]+\s*\(", a):
            raise FieldError(f"{text!r}: function arguments are fields, not functions ({a!r})")
        try:
            spec = parse_field(a)
        except FieldError as exc:
            raise FieldError(f"{text!r}: argument {a!r}: {str(exc).split(': ', 1)[-1]}") from None
        if spec.desc or a.split()[-1].lower() in ("asc", "desc"):
            raise FieldError(f"{text!r}: asc/desc go after the whole call: {usage} desc")
        if canon.startswith("div"):
            if not spec.aggregate:
                raise FieldError(f"{text!r}: {name}() divides aggregates (octets, bits, packets, flows, "
                                 f"ioctets, …), not {a!r}: {usage}")
        else:
            if spec.aggregate:
                raise FieldError(f"{text!r}: {name}() takes key fields, not the aggregate {a!r}: {usage}")
            words = a.split()
            if len(words) == 1 and words[0].lower() in FILTER_FIELDS and FILTER_FIELDS[words[0].lower()].directional:
                raise FieldError(f"{text!r}: {a!r} has a source and a destination: write 'src {a}' or "
                                 f"'dst {a}' ({usage})")
            if spec.kind != KeyKind.NUMBER:
                raise FieldError(f"{text!r}: {name}() works on numbers (ports, flags, vlans, …), "
                                 f"not on {a!r}")
            if canon in ("mfreq", "portstr", "ppstr") and REGISTRY[spec.source].size > 2:  # type: ignore[index]
                raise FieldError(f"{text!r}: {name}() works on 16-bit values (ports, vlans), "
                                 f"{a!r} is wider")
        args.append(spec)
    param = 0
    if takes_n:
        try:
            param = int(parts[-1], 0)
        except ValueError:
            raise FieldError(f"{text!r}: the last argument of {name}() is a number: {usage}") from None
        low = 2 if canon == "div_l" else 1
        if param < low:
            raise FieldError(f"{text!r}: {name}()'s N must be ≥ {low}: {usage}")
    kind = KeyKind.CODE if canon in TEXT_FUNCTIONS else KeyKind.NUMBER
    if column is None:
        column = _column_name(bare.strip()).lower()
    return FieldSpec(text, column, desc, False, None, kind=kind, func=canon, args=tuple(args), param=param)


def _geo_call(text: str, bare: str, name: str, m: re.Match | None, column: str | None, desc: bool) -> FieldSpec:
    """``country_code(src host)``, ``asn(dst host)``…: the enriched column of that address."""
    usage = f"{name}(src host) or {name}(dst host)"
    arg = m.group(2).strip() if m is not None else ""
    try:
        spec = parse_field(arg) if arg and "," not in arg else None
    except FieldError:
        spec = None
    side = None
    if spec is not None and not spec.aggregate:
        side = {"src_addr": "src", "src_addr6": "src", "dst_addr": "dst", "dst_addr6": "dst"}.get(spec.source or "")
    if side is None or spec is None or spec.desc:
        raise FieldError(f"{text!r}: {name}() takes one address, like {usage}")
    kind = KeyKind.NUMBER if name == "asn" else KeyKind.CODE
    if column is None:
        column = _column_name(bare.strip()).lower()
    return FieldSpec(text, column, desc, False, geo.function_column(name, side), kind=kind, func=name,
                     args=(spec,))
