"""Fixed windows (xenoeye's ``fwm``): group flows by key fields, sum counters, export per window.

A window definition lists ``fields`` in sort order: aggregates (``octets``/``bytes``,
``packets``, ``bits``, ``flows`` and any counter of the registry) are summed, everything
else forms the key. Windows are aligned to multiples of ``time`` seconds since the epoch on
the flows' receive time (the packet time on replay), so a capture always gives the same
tables. A closed window becomes a `WindowTable`: the rows in sort order, at most ``limit``
of them plus a remainder row (summed aggregates, NULL keys) whenever rows ≥ limit.

Key fields, by xenoeye's names (``src``/``dst`` prefix; a two-sided field without prefix
means ``src``, as xenoeye does):

    host, net        IPv4 *or* IPv6 address (one inet column; xenoeye only has IPv4 here)
    host6, net6      IPv6 address
    port, tos, ifidx, as, mac, vlan, d1qvlan, d1qcvlan, vrf
    proto, tcp-flags, min-ttl, max-ttl, frag-id, endreason, bgp-nh, dir, fwdst, smplr,
    dev-ip (exporter, IPv4 or IPv6), dev-id

and every field of the registry by its own name (``src_addr``, ``in_if``, ``l4_dst_port``…),
text fields too (``if_name``, ``vrf_name``, ``http_host``…: grouped by a 128-bit hash of the
bytes in numba, exported as TEXT).

xenoeye's functions (`appliance.collector._functions`): ``div(a, b)``, ``div_r(a, b, N)``,
``div_l(a, b, N)`` (also spelled ``divr``/``divl`` as in xenoeye's docs) over aggregates,
``min(f1, f2)``, ``mfreq(f1, f2)``, and the TEXT-valued ``tfstr(tcp-flags)``,
``portstr(port)``, ``ppstr(p1, p2)``. Arguments of two-sided fields need ``src``/``dst``
(``min(src port, dst port)``), as in xenoeye. The column name is xenoeye's: the text with
every non-alphanumeric character replaced by ``_`` (``div(octets, packets)`` →
``div_octets__packets_``). Text keys sort by their text. The GeoIP and AS functions
(``country()``, ``asn()``, ``asd()``, …) need xenoeye's geo databases, which Mirrorflow does
not read: they are refused with a message saying so.

The time column of a row is the window's end (what xenoeye writes).
"""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
import struct
from dataclasses import dataclass, field

import numpy as np

from appliance.collector import _functions as fn
from appliance.collector._aggregate import HashTable
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY, FieldType

__all__ = [
    "Column",
    "FieldSpec",
    "FieldError",
    "FixedWindow",
    "KeyKind",
    "WindowSpec",
    "WindowTable",
    "parse_field",
]

_NS = 1_000_000_000

_TWO_SIDED: dict[str, tuple[str, str]] = {
    "host": ("src_addr", "dst_addr"),
    "net": ("src_addr", "dst_addr"),
    "host6": ("src_addr6", "dst_addr6"),
    "net6": ("src_addr6", "dst_addr6"),
    "port": ("src_port", "dst_port"),
    "tos": ("tos", "dst_tos"),
    "ifidx": ("in_if", "out_if"),
    "as": ("src_as", "dst_as"),
    "mac": ("src_mac", "post_dst_mac"),
    "vlan": ("src_vlan", "dst_vlan"),
    "d1qvlan": ("dot1q_vlan", "post_dot1q_vlan"),
    "d1qcvlan": ("dot1q_customer_vlan", "post_dot1q_customer_vlan"),
    "vrf": ("ingress_vrf", "egress_vrf"),
}
_ONE_SIDED: dict[str, str] = {
    "proto": "proto", "tcp-flags": "tcp_flags", "min-ttl": "min_ttl", "max-ttl": "max_ttl",
    "frag-id": "frag_id", "endreason": "flow_end_reason", "bgp-nh": "bgp_next_hop",
    "dir": "direction", "fwdst": "forwarding_status", "smplr": "sampler_id",
    "dev-ip": "dev_ip6", "dev-ip6": "dev_ip6", "dev-id": "dev_id",
}  # fmt: skip
#: ``host``/``net`` cover both address families: (v4 column, v6 column) per side
_ANY_FAMILY = {"src_addr": "src_addr6", "dst_addr": "dst_addr6"}
#: aggregate name → (registry counter, multiplier); None = count of flow records
_AGGREGATES: dict[str, tuple[str | None, int]] = {
    "octets": ("bytes", 1), "bytes": ("bytes", 1), "in_bytes": ("bytes", 1),
    "packets": ("packets", 1), "in_pkts": ("packets", 1), "bits": ("bytes", 8),
    "flows": (None, 1), "ioctets": ("initiator_bytes", 1), "roctets": ("responder_bytes", 1),
    "ipackets": ("initiator_packets", 1), "rpackets": ("responder_packets", 1),
}  # fmt: skip
#: function name as written → (canonical name, number of field arguments, takes N)
_FUNCTIONS: dict[str, tuple[str, int, bool]] = {
    "div": ("div", 2, False), "div_r": ("div_r", 2, True), "divr": ("div_r", 2, True),
    "div_l": ("div_l", 2, True), "divl": ("div_l", 2, True), "min": ("min", 2, False),
    "mfreq": ("mfreq", 2, False), "tfstr": ("tfstr", 1, False), "portstr": ("portstr", 1, False),
    "ppstr": ("ppstr", 2, False),
}  # fmt: skip
_GEO_FUNCTIONS = ("continent", "country_code", "country", "state", "city", "zip", "lat", "long", "asn", "asd")
#: functions whose value is text (computed as a code, rendered at export)
TEXT_FUNCTIONS = frozenset({"tfstr", "portstr", "ppstr"})


class FieldError(ValueError):
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
              KeyKind.CODE: "TEXT"}  # fmt: skip


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

    @property
    def words(self) -> int:
        return 0 if self.aggregate else (2 if self.kind in (KeyKind.IPV6, KeyKind.IP_ANY, KeyKind.TEXT) else 1)

    @property
    def columns_read(self) -> tuple[str, ...]:
        """Registry names this field (or function) reads."""
        if self.func is not None:
            return tuple(c for a in self.args for c in a.columns_read)
        return tuple(c for c in (self.source, self.source6) if c)

    @property
    def sqltype(self) -> str:
        return "BIGINT" if self.aggregate else _SQL_TYPES[self.kind]

    def key_words(self, batch: FlowBatch, rows: np.ndarray | None = None,
                  freq: np.ndarray | None = None) -> list[np.ndarray]:  # fmt: skip
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
        return [arr]

    def _function(self, batch: FlowBatch, rows: np.ndarray | None, freq: np.ndarray | None) -> np.ndarray:
        f = self.func
        if f in ("div", "div_r", "div_l"):
            a, b = (x.values(batch) for x in self.args)
            out = np.empty(batch.n, dtype=np.uint64)
            fn.div_values(np.ascontiguousarray(a, np.uint64), np.ascontiguousarray(b, np.uint64),
                          {"div": 0, "div_r": 1, "div_l": 2}[f], self.param, out)  # fmt: skip
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
    if name in _TWO_SIDED:
        reg = _TWO_SIDED[name][direction == "dst"]
    elif name in _ONE_SIDED:
        if direction:
            raise FieldError(f"{text!r}: {name} has no src/dst form; write \"{name}\"")
        reg = _ONE_SIDED[name]
    elif name in REGISTRY or name.replace("-", "_") in REGISTRY:
        if direction:
            raise FieldError(f"{text!r}: src/dst go only before xenoeye's names (host, port, as…); "
                             f"write \"{name}\"")
        reg = REGISTRY[name if name in REGISTRY else name.replace("-", "_")].name
    else:
        raise FieldError(f"{text!r}: unknown field {name!r}; use a xenoeye name (src host, dst port, "
                         "proto, octets, packets…) or a registry name (mirrorflow decode shows them)")
    f = REGISTRY[reg]
    if name in ("host", "net") and reg in _ANY_FAMILY:
        return FieldSpec(text, column, desc, False, reg, _ANY_FAMILY[reg], kind=KeyKind.IP_ANY)
    if f.ftype in (FieldType.STRING, FieldType.BYTES):
        return FieldSpec(text, column, desc, False, reg, kind=KeyKind.TEXT)
    if reg == "dev_ip6":
        return FieldSpec(text, column, desc, False, reg, kind=KeyKind.IPV6)
    kind = {FieldType.IPV4: KeyKind.IPV4, FieldType.IPV6: KeyKind.IPV6,
            FieldType.MAC: KeyKind.MAC}.get(f.ftype, KeyKind.NUMBER)  # fmt: skip
    return FieldSpec(text, column, desc, False, reg, kind=kind)


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
        raise FieldError(f"{text!r}: {name}() needs xenoeye's GeoIP/AS databases (geodb, built by "
                         "xemkgeodb), which Mirrorflow does not read; remove it (use 'as' for AS numbers "
                         "the exporter sends)")  # fmt: skip
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
             "portstr": "portstr(dst port)", "ppstr": "ppstr(src port, dst port)"}[canon]  # fmt: skip
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
                                 f"ioctets, …), not {a!r}: {usage}")  # fmt: skip
        else:
            if spec.aggregate:
                raise FieldError(f"{text!r}: {name}() takes key fields, not the aggregate {a!r}: {usage}")
            words = a.split()
            if len(words) == 1 and words[0].lower() in _TWO_SIDED:
                raise FieldError(f"{text!r}: {a!r} has a source and a destination: write 'src {a}' or "
                                 f"'dst {a}' ({usage})")  # fmt: skip
            if spec.kind != KeyKind.NUMBER:
                raise FieldError(f"{text!r}: {name}() works on numbers (ports, flags, vlans, …), "
                                 f"not on {a!r}")  # fmt: skip
            if canon in ("mfreq", "portstr", "ppstr") and REGISTRY[spec.source].size > 2:  # type: ignore[index]
                raise FieldError(f"{text!r}: {name}() works on 16-bit values (ports, vlans), "
                                 f"{a!r} is wider")  # fmt: skip
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


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One ``fwm`` entry of a mo.conf (validated)."""

    name: str
    fields: tuple[FieldSpec, ...]
    time: int = 30
    limit: int = 0
    extended: bool = False
    create_index: bool = True

    @property
    def keys(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.aggregate)

    @property
    def aggregates(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.aggregate)


@dataclass(slots=True)
class WindowTable:
    """A closed window, ready for export: rows in sort order, NULL as None."""

    table: str
    time: int  # window end, seconds since the epoch (the rows' time column)
    period: int
    columns: list[Column]
    rows: list[tuple]
    create_index: bool = True
    mo: str = ""
    window: str = ""
    flows: int = field(default=0)


def _ip4(v: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", v & 0xFFFFFFFF))


def _ip6(hi: int, lo: int) -> str:
    ip = ipaddress.IPv6Address((hi << 64) | lo)
    mapped = ip.ipv4_mapped
    return str(mapped) if mapped is not None else str(ip)


def _mac(v: int) -> str:
    return ":".join(f"{b:02x}" for b in v.to_bytes(8, "big")[2:])


class FixedWindow:
    """The running state of one window of one monitoring object.

    Args:
        spec: the window's definition.
        table: ``<mo>_<window>``.
    """

    def __init__(self, spec: WindowSpec, table: str, mo: str = "") -> None:
        self.spec = spec
        self.table = table
        self.mo = mo
        self.period_ns = spec.time * _NS
        self.active = not spec.extended
        self.current: int | None = None  # window number (time // period)
        self.flows = 0
        self._nk = sum(f.words for f in spec.keys)
        self._ht = HashTable(self._nk, len(spec.aggregates))
        # mfreq's frequency maps live as long as the window's definition (as in xenoeye)
        self._freq = {i: np.zeros(1 << 16, dtype=np.uint64) for i, f in enumerate(spec.keys) if f.func == "mfreq"}
        # text keys: (hash words) → the text, for the keys of the current window
        self._texts: dict[int, dict[tuple[int, int], str]] = {
            i: {} for i, f in enumerate(spec.keys) if f.kind == KeyKind.TEXT}  # fmt: skip

    # ---- feeding -------------------------------------------------------------------------

    def add(self, batch: FlowBatch, rows: np.ndarray, wid: np.ndarray) -> list[WindowTable]:
        """Add the batch rows selected by ``rows`` (window numbers in ``wid``, one per batch row).

        Rows of a later window close the current one first; rows of an earlier window
        (late packets) count in the current one. Returns the windows closed.
        """
        if not self.active or not len(rows):
            return []
        w = wid[rows]
        out: list[WindowTable] = []
        if self.current is None:
            self.current = int(w.min())
        hi = int(w.max())
        if hi <= self.current:
            self._add(batch, rows)
            return out
        early = w <= self.current
        if early.any():
            self._add(batch, rows[early])
        later = w[~early]
        for nw in np.unique(later):
            out.extend(self.close())
            self.current = int(nw)
            self._add(batch, rows[w == nw])
        return out

    def _add(self, batch: FlowBatch, rows: np.ndarray) -> None:
        n = batch.n
        rows = rows.astype(np.int64, copy=False)
        keycols = np.empty((self._nk, n), dtype=np.uint64)
        k = 0
        for i, f in enumerate(self.spec.keys):
            words = f.key_words(batch, rows, self._freq.get(i))
            if f.kind == KeyKind.TEXT:
                self._remember_texts(batch, f, rows, words, self._texts[i])
            for word in words:
                keycols[k] = word
                k += 1
        aggs = self.spec.aggregates
        valcols = np.empty((len(aggs), n), dtype=np.uint64)
        for a, f in enumerate(aggs):
            valcols[a] = f.values(batch)
        self._ht.add(rows, keycols, valcols)
        self.flows += len(rows)

    @staticmethod
    def _remember_texts(batch: FlowBatch, f: FieldSpec, rows: np.ndarray, words: list[np.ndarray],
                        known: dict[tuple[int, int], str]) -> None:  # fmt: skip
        """Keep one text per new key: decoded once per distinct text and batch, not per flow."""
        pairs = np.stack([words[0][rows], words[1][rows]], axis=1)
        uniq, first = np.unique(pairs, axis=0, return_index=True)
        for (a, b), j in zip(uniq.tolist(), first.tolist()):
            if (a, b) not in known:
                known[(a, b)] = batch.text(f.source, int(rows[j])).replace("\x00", "")  # type: ignore[arg-type]

    def tick(self, now_ns: int) -> list[WindowTable]:
        """Close the current window if ``now_ns`` is past its end."""
        if self.current is not None and now_ns // self.period_ns > self.current:
            out = self.close()
            self.current = None
            return out
        return []

    def set_active(self, on: bool) -> None:
        """Switch an extended window on or off (off: what it holds is exported when it closes)."""
        self.active = on

    # ---- closing -------------------------------------------------------------------------

    def close(self) -> list[WindowTable]:
        """Export the current window (nothing if it is empty) and start an empty one."""
        if self.current is None or self._ht.count == 0:
            return []
        keys, sums = self._ht.items()
        table = self.result(keys, sums, int(self.current))
        table.flows = self.flows
        self._ht.clear()
        self.flows = 0
        for known in self._texts.values():
            known.clear()
        return [table]

    def texts(self, keys: np.ndarray) -> dict[int, np.ndarray]:
        """Per text-valued field (index in `spec.fields`): the text of every key row."""
        out: dict[int, np.ndarray] = {}
        k = ki = 0
        for i, f in enumerate(self.spec.fields):
            if f.aggregate:
                continue
            if f.kind == KeyKind.CODE:
                out[i] = f.render(keys[:, k])
            elif f.kind == KeyKind.TEXT:
                known = self._texts[ki]
                out[i] = np.array([known.get((int(a), int(b)), "") for a, b in zip(keys[:, k].tolist(),
                                   keys[:, k + 1].tolist())], dtype=object)  # fmt: skip
            k += f.words
            ki += 1
        return out

    def order(self, keys: np.ndarray, sums: np.ndarray, texts: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """Row order: by the fields as listed, each ascending or descending (text by its text)."""
        if texts is None:
            texts = self.texts(keys)
        sort_keys: list[np.ndarray] = []  # most significant first
        k = a = 0
        for i, f in enumerate(self.spec.fields):
            if f.aggregate:
                cols = [sums[:, a]]
                a += 1
            elif i in texts:
                rank = np.unique(texts[i].astype(str), return_inverse=True)[1].reshape(-1)
                cols = [rank.astype(np.uint64)]
                k += f.words
            else:
                cols = [keys[:, k + j] for j in range(f.words)]
                k += f.words
            sort_keys.extend(~c if f.desc else c for c in cols)
        if not sort_keys:
            return np.arange(len(keys))
        return np.lexsort(sort_keys[::-1])

    def result(self, keys: np.ndarray, sums: np.ndarray, wid: int) -> WindowTable:
        spec = self.spec
        texts = self.texts(keys)
        idx = self.order(keys, sums, texts)
        shown = idx[: spec.limit] if spec.limit else idx
        rows = [self._row(keys[i], sums[i], {c: t[i] for c, t in texts.items()}) for i in shown]
        if spec.limit and len(idx) >= spec.limit:
            rest = sums[idx[spec.limit :]].sum(axis=0, dtype=np.uint64) if len(idx) > spec.limit \
                else np.zeros(len(spec.aggregates), dtype=np.uint64)  # fmt: skip
            rows.append(self._row(None, rest, {}))
        columns = [Column(f.column, f.sqltype) for f in spec.fields]
        end = (wid + 1) * spec.time
        return WindowTable(self.table, end, spec.time, columns, rows, spec.create_index,
                           self.mo, spec.name)  # fmt: skip

    def _row(self, key: np.ndarray | None, sums: np.ndarray, texts: dict[int, str]) -> tuple:
        out: list[object] = []
        k = a = 0
        for i, f in enumerate(self.spec.fields):
            if f.aggregate:
                out.append(int(sums[a]))
                a += 1
                continue
            if key is None:
                out.append(None)
                k += f.words
                continue
            w = int(key[k])
            if i in texts:
                out.append(texts[i])
            elif f.kind == KeyKind.NUMBER:
                out.append(w)
            elif f.kind == KeyKind.IPV4:
                out.append(_ip4(w))
            elif f.kind == KeyKind.MAC:
                out.append(_mac(w))
            else:
                out.append(_ip6(w, int(key[k + 1])))
            k += f.words
        return tuple(out)
