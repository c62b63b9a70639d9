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

and every field of the registry by its own name (``src_addr``, ``in_if``, ``l4_dst_port``…).
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
_FUNCTIONS = ("div", "div_r", "div_l", "divr", "divl", "min", "mfreq", "tfstr", "portstr",
              "ppstr", "continent", "country_code", "country", "state", "city", "zip", "lat",
              "long", "asn", "asd")  # fmt: skip


class FieldError(ValueError):
    """A ``fields`` entry that cannot be used; the message says what to write instead."""


class KeyKind(enum.IntEnum):
    NUMBER = 0  # bigint
    IPV4 = 1  # inet, one word
    IPV6 = 2  # inet, two words
    IP_ANY = 3  # inet: the IPv6 column when set, else the IPv4 one (as ::ffff:a.b.c.d)
    MAC = 4  # macaddr


_SQL_TYPES = {KeyKind.NUMBER: "BIGINT", KeyKind.IPV4: "INET", KeyKind.IPV6: "INET",
              KeyKind.IP_ANY: "INET", KeyKind.MAC: "MACADDR"}  # fmt: skip


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
    """

    text: str
    column: str
    desc: bool
    aggregate: bool
    source: str | None
    source6: str | None = None
    multiplier: int = 1
    kind: KeyKind = KeyKind.NUMBER

    @property
    def words(self) -> int:
        return 0 if self.aggregate else (2 if self.kind in (KeyKind.IPV6, KeyKind.IP_ANY) else 1)

    @property
    def sqltype(self) -> str:
        return "BIGINT" if self.aggregate else _SQL_TYPES[self.kind]

    def key_words(self, batch: FlowBatch) -> list[np.ndarray]:
        """The key's uint64 words for every row of the batch."""
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
        name = func.group(1).lower()
        if name in _FUNCTIONS:
            raise FieldError(f"{text!r}: the function {name}() is not supported yet; "
                             "remove it from fields (or use the plain field)")
        raise FieldError(f"{text!r}: unknown function {name}()")
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
        raise FieldError(f"{text!r}: text fields cannot be window keys yet; remove it from fields")
    if reg == "dev_ip6":
        return FieldSpec(text, column, desc, False, reg, kind=KeyKind.IPV6)
    kind = {FieldType.IPV4: KeyKind.IPV4, FieldType.IPV6: KeyKind.IPV6,
            FieldType.MAC: KeyKind.MAC}.get(f.ftype, KeyKind.NUMBER)  # fmt: skip
    return FieldSpec(text, column, desc, False, reg, kind=kind)


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
        keycols = np.empty((self._nk, n), dtype=np.uint64)
        k = 0
        for f in self.spec.keys:
            for word in f.key_words(batch):
                keycols[k] = word
                k += 1
        aggs = self.spec.aggregates
        valcols = np.empty((len(aggs), n), dtype=np.uint64)
        for a, f in enumerate(aggs):
            valcols[a] = f.values(batch)
        self._ht.add(rows.astype(np.int64, copy=False), keycols, valcols)
        self.flows += len(rows)

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
        return [table]

    def order(self, keys: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """Row order: by the fields as listed, each ascending or descending."""
        sort_keys: list[np.ndarray] = []  # most significant first
        k = a = 0
        for f in self.spec.fields:
            if f.aggregate:
                cols = [sums[:, a]]
                a += 1
            else:
                cols = [keys[:, k + j] for j in range(f.words)]
                k += f.words
            sort_keys.extend(~c if f.desc else c for c in cols)
        if not sort_keys:
            return np.arange(len(keys))
        return np.lexsort(sort_keys[::-1])

    def result(self, keys: np.ndarray, sums: np.ndarray, wid: int) -> WindowTable:
        spec = self.spec
        idx = self.order(keys, sums)
        shown = idx[: spec.limit] if spec.limit else idx
        rows = [self._row(keys[i], sums[i]) for i in shown]
        if spec.limit and len(idx) >= spec.limit:
            rest = sums[idx[spec.limit :]].sum(axis=0, dtype=np.uint64) if len(idx) > spec.limit \
                else np.zeros(len(spec.aggregates), dtype=np.uint64)  # fmt: skip
            rows.append(self._row(None, rest))
        columns = [Column(f.column, f.sqltype) for f in spec.fields]
        end = (wid + 1) * spec.time
        return WindowTable(self.table, end, spec.time, columns, rows, spec.create_index,
                           self.mo, spec.name)  # fmt: skip

    def _row(self, key: np.ndarray | None, sums: np.ndarray) -> tuple:
        out: list[object] = []
        k = a = 0
        for f in self.spec.fields:
            if f.aggregate:
                out.append(int(sums[a]))
                a += 1
                continue
            if key is None:
                out.append(None)
                k += f.words
                continue
            w = int(key[k])
            if f.kind == KeyKind.NUMBER:
                out.append(w)
            elif f.kind == KeyKind.IPV4:
                out.append(_ip4(w))
            elif f.kind == KeyKind.MAC:
                out.append(_mac(w))
            else:
                out.append(_ip6(w, int(key[k + 1])))
            k += f.words
        return tuple(out)
