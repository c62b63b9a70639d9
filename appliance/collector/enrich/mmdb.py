"""`GeoDatabase`: one MaxMind-format database (.mmdb) flattened into range tables at load.

GeoLite2 / GeoIP2 Country, City and ASN, DB-IP lite and IPinfo lite are all .mmdb files. The
file is opened and validated with `maxminddb` (metadata, record decoding); its search tree is
walked once by numba (`_kernels.walk`) into sorted range starts for IPv4 and IPv6, each range
carrying a small record code (1…K, 0 = no data). Every distinct record is decoded once and
reduced to the values Mirrorflow keeps (`fields.geo.ENRICHED`), one uint64 array per value,
indexed by record code. A lookup is then a binary search and an array index per address.

The database's type (metadata ``database_type``) decides what it adds: ``…ASN…`` the AS
number and organisation, ``…City…`` continent, country, state, city, zip, latitude and
longitude, ``…Country…`` continent and country; a type that names none of these (IPinfo
lite) adds what its records hold.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import maxminddb
import maxminddb.decoder
import numpy as np

import appliance.collector.enrich._kernels as K
from appliance.collector.fields import geo
from appliance.errors import MirrorflowError

__all__ = ["GeoError", "GeoDatabase", "load_database", "database_files"]

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
_CITY = ("continent", "country", "state", "city", "zip", "lat", "long")


class GeoError(MirrorflowError):
    """A GeoIP/ASN database that cannot be used; the message names the file and what to do."""


@dataclass(slots=True)
class _Table:
    """Sorted range starts (hi, lo), the bucket index over them and each range's record code."""

    hi: np.ndarray
    lo: np.ndarray
    idx: np.ndarray
    code: np.ndarray

    @classmethod
    def empty(cls) -> _Table:
        z = np.zeros(0, dtype=np.uint64)
        return cls(z, z, np.zeros((1 << K.BUCKET_BITS) + 1, dtype=np.int32), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.lo)


@dataclass(slots=True)
class GeoDatabase:
    """One loaded .mmdb file.

    Attributes:
        path: the file.
        database_type: from its metadata (``GeoLite2-Country``, ``DBIP-ASN-Lite``…).
        build_epoch: from its metadata (seconds).
        provides: what it adds (`fields.geo.ENRICHED` names: ``country``, ``asn``…).
        values: per provided name, the value of every record code (code 0: 0 = unknown).
        records: number of distinct records (K).
    """

    path: Path
    database_type: str
    build_epoch: int
    provides: tuple[str, ...]
    values: dict[str, np.ndarray]
    records: int
    v4: _Table = field(default_factory=_Table.empty)
    v6: _Table = field(default_factory=_Table.empty)
    _matrix: np.ndarray | None = None

    @property
    def ranges(self) -> int:
        return len(self.v4) + len(self.v6)

    def matrix(self) -> np.ndarray:
        """The values as one uint64[records + 1, len(provides)] array (`_kernels.lookup_values`)."""
        m = self._matrix
        if m is None:
            m = self._matrix = np.ascontiguousarray(np.stack([self.values[n] for n in self.provides], axis=1))
        return m

    def lookup(self, v4: np.ndarray, v6: np.ndarray | None) -> np.ndarray:
        """Record codes (int64) of addresses: `v4` uint64[n] and, if any, `v6` uint64[n, 2]."""
        out = np.empty(len(v4), dtype=np.int64)
        has6 = v6 is not None
        w6 = v6 if has6 else np.zeros((1, 2), dtype=np.uint64)
        a, b = self.v4, self.v6
        K.lookup(np.ascontiguousarray(v4, np.uint64), np.ascontiguousarray(w6, np.uint64), has6,
                 a.hi, a.lo, a.idx, a.code, b.hi, b.lo, b.idx, b.code, out)
        return out

    def get(self, address: str) -> dict[str, int]:
        """The values of one address (for tests and ``mirrorflow geoip``-style checks)."""
        ip = ipaddress.ip_address(address)
        if ip.version == 4:
            codes = self.lookup(np.array([int(ip)], dtype=np.uint64), None)
        else:
            v = int(ip)
            codes = self.lookup(np.zeros(1, dtype=np.uint64),
                                np.array([[v >> 64, v & (2**64 - 1)]], dtype=np.uint64))
        return {name: int(self.values[name][codes[0]]) for name in self.provides}


def database_files(path: Path) -> list[Path]:
    """The files a ``geoip`` entry names: the file, or every .mmdb and range .csv in a folder
    (sorted: .mmdb first).

    Raises:
        GeoError: a missing path, a folder without .mmdb files (xenoeye's xemkgeodb files
            are named in the message).
    """
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix in (".mmdb", ".csv") and p.is_file()),
                       key=lambda p: (p.suffix != ".mmdb", p.name))
        if not files:
            xeno = [p.name for p in path.iterdir() if p.name in ("geo4.db", "geo6.db", "as4.db", "as6.db")]
            if xeno:
                raise GeoError(f"{path}: {', '.join(sorted(xeno))} are xenoeye's xemkgeodb files, which "
                               "Mirrorflow does not read; put MaxMind-format .mmdb databases there instead "
                               "(GeoLite2-Country/City/ASN, DB-IP lite, IPinfo lite)")
            raise GeoError(f"{path}: no .mmdb files in this folder (GeoLite2-Country/City/ASN, DB-IP lite, "
                           "IPinfo lite; see docs/enrichment.md)")
        return files
    if not path.exists():
        raise GeoError(f"{path}: no such GeoIP/ASN database (a .mmdb file or a folder of them)")
    return [path]


def load_database(path: Path | str) -> GeoDatabase:
    """Open, validate and flatten one .mmdb file.

    Raises:
        GeoError: missing, unreadable or corrupt file, or one that adds nothing we use.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GeoError(f"{path}: cannot read the GeoIP/ASN database: {exc.strerror or exc}") from None
    try:
        reader = maxminddb.open_database(str(path), maxminddb.MODE_MEMORY)
        meta = reader.metadata()
        reader.close()
    except (maxminddb.InvalidDatabaseError, ValueError, TypeError, KeyError) as exc:
        raise GeoError(f"{path}: not a valid MaxMind DB (.mmdb) file: {exc}") from None
    if meta.record_size not in (24, 28, 32) or meta.ip_version not in (4, 6):
        raise GeoError(f"{path}: unsupported record size {meta.record_size} / IP version {meta.ip_version}")
    buf = np.frombuffer(data, dtype=np.uint8)
    nodes = int(meta.node_count)
    tree_size = nodes * meta.record_size // 4
    data_start = tree_size + 16
    data_end = data.rfind(_METADATA_MARKER)
    if data_end < data_start or len(data) < tree_size:
        raise GeoError(f"{path}: corrupt MaxMind DB: the search tree does not fit the file")
    limit = 4 * nodes + 16

    def walk(start: int, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = K.walk(buf, meta.record_size, nodes, start, bits, limit, _Z, _Z, _Z64, False)
        if n < 0:
            raise GeoError(f"{path}: corrupt MaxMind DB search tree ("
                           f"{'it loops' if n == K.WALK_TOO_MANY else 'a node pointer past its last bit'})")
        hi, lo, val = np.empty(n, np.uint64), np.empty(n, np.uint64), np.empty(n, np.int64)
        K.walk(buf, meta.record_size, nodes, start, bits, limit, hi, lo, val, True)
        return hi, lo, val

    if meta.ip_version == 6:
        start4 = 0
        for _ in range(96):
            if start4 >= nodes:
                break
            start4 = int(K.read_record(buf, start4, 0, meta.record_size))
        parts = [walk(start4, 32), walk(0, 128)]
    else:
        parts = [walk(0, 32)]
    pointers = np.unique(np.concatenate([p[2] for p in parts]))
    pointers = pointers[pointers > nodes]  # node_count itself: no data
    decoder = maxminddb.decoder.Decoder(data, data_start, data_end=data_end)
    records: list[Any] = []
    for ptr in pointers.tolist():
        at = ptr - nodes + tree_size
        if not data_start <= at < data_end:
            raise GeoError(f"{path}: corrupt MaxMind DB: a record points outside the data section")
        try:
            records.append(decoder.decode(at)[0])
        except (maxminddb.InvalidDatabaseError, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise GeoError(f"{path}: corrupt MaxMind DB record: {exc}") from None
    kept = [_record_values(r) for r in records]
    provides = _provides(str(meta.database_type), kept)
    if not provides:
        raise GeoError(f"{path}: database type {meta.database_type!r} holds no country, city or AS data "
                       "Mirrorflow uses")
    values = {name: _value_array(name, kept) for name in provides}

    def table(hi: np.ndarray, lo: np.ndarray, val: np.ndarray, v6: bool) -> _Table:
        code = np.searchsorted(pointers, val) + 1
        code[val <= nodes] = 0
        keep = np.ones(len(code), dtype=np.bool_)
        keep[1:] = code[1:] != code[:-1]
        hi, lo, code = hi[keep], lo[keep], code[keep].astype(np.int64)
        return _Table(hi, lo, K.bucket_index(hi, lo, v6), code)

    db = GeoDatabase(path, str(meta.database_type), int(meta.build_epoch), provides, values, len(records))
    db.v4 = table(*parts[0], False)
    if meta.ip_version == 6:
        db.v6 = table(*parts[1], True)
    return db


_Z = np.zeros(0, dtype=np.uint64)
_Z64 = np.zeros(0, dtype=np.int64)


def _get(rec: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(rec, dict):
            return None
        rec = rec.get(k)
    return rec


def _name(obj: Any) -> str | None:
    """English name of a GeoIP2 place (``{"names": {"en": …}}``)."""
    n = _get(obj, "names", "en")
    return n if isinstance(n, str) and n else None


def _record_values(rec: Any) -> dict[str, Any]:
    """What Mirrorflow keeps of one record: GeoIP2/GeoLite2/DB-IP layout, or IPinfo lite's flat one."""
    out: dict[str, Any] = {}
    if not isinstance(rec, dict):
        return out
    iso = _get(rec, "country", "iso_code") or rec.get("country_code")
    if isinstance(iso, str) and geo.letters_code(iso):
        out["country"] = iso
        name = _name(rec.get("country")) or (rec.get("country") if isinstance(rec.get("country"), str) else None)
        if name:
            out["country_name"] = name
    cont = _get(rec, "continent", "code") or rec.get("continent_code")
    if isinstance(cont, str) and geo.letters_code(cont):
        out["continent"] = cont
    asn = rec.get("autonomous_system_number", rec.get("asn"))
    if isinstance(asn, str) and asn.upper().startswith("AS") and asn[2:].isdigit():
        asn = int(asn[2:])
    if isinstance(asn, int) and not isinstance(asn, bool) and 0 < asn < 2**32:
        out["asn"] = asn
    org = rec.get("autonomous_system_organization", rec.get("as_name"))
    if isinstance(org, str) and org:
        out["as_org"] = org
    subs = rec.get("subdivisions")
    if isinstance(subs, list) and subs and _name(subs[0]):
        out["state"] = _name(subs[0])
    if _name(rec.get("city")):
        out["city"] = _name(rec.get("city"))
    postal = _get(rec, "postal", "code")
    if isinstance(postal, str) and postal:
        out["zip"] = postal
    for key, name in (("latitude", "lat"), ("longitude", "long")):
        v = _get(rec, "location", key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = str(v)
    return out


def _provides(database_type: str, kept: list[dict[str, Any]]) -> tuple[str, ...]:
    t = database_type.lower()
    names: list[str] = []
    if "city" in t:
        names += _CITY
    elif "country" in t:
        names += ["continent", "country"]
    if "asn" in t or "isp" in t:
        names += ["asn", "as_org"]
    seen = {k for r in kept for k in r}
    if not names:  # a type we do not know by name: what its records hold
        names = list(seen)
    # what the type promises and the records hold (ip-location-db's "country" has no continent)
    return tuple(n for n in geo.ENRICHED if n in names and n in seen)


def _value_array(name: str, kept: list[dict[str, Any]]) -> np.ndarray:
    """The value of every record code for one name (code 0 = no record = 0)."""
    how = geo.ENRICHED[name]
    out = np.zeros(len(kept) + 1, dtype=np.uint64)
    for i, r in enumerate(kept, 1):
        v = r.get(name)
        if v is None:
            continue
        if how == "letters":
            code = geo.letters_code(v)
            out[i] = code
            if name == "country" and "country_name" in r:
                geo.COUNTRY_NAMES.setdefault(code, r["country_name"])
        elif how == "number":
            out[i] = v
        else:
            out[i] = geo.TEXTS.code(v)
    return out
