"""Range CSV files (ip-location-db's format) as a `GeoDatabase`, for the AS data shipped in a
registry package (npm ``@ip-location-db/asn``, CC BY 4.0) that has no .mmdb form.

One range per line, first and last address, then the values::

    1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."      # asn: first,last,as number,as organisation
    1.0.0.0,1.0.0.255,AU                             # country: first,last,ISO code

Addresses may also be written as integers (the ``-num`` files). Addresses between ranges are
unknown. The file is parsed once into the same range tables an .mmdb gives.
"""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import numpy as np

import appliance.collector.enrich._kernels as K
from appliance.collector.enrich.mmdb import GeoDatabase, GeoError, _Table
from appliance.collector.fields import geo

__all__ = ["load_csv"]

_M64 = (1 << 64) - 1
#: longest line accepted (a corrupt file must not make one huge field)
_MAX_FIELD = 4096


def _address(text: str) -> tuple[int, int]:
    """(value, version) of an address written as text or as an integer."""
    t = text.strip()
    if t.isdigit():
        v = int(t)
        return v, 4 if v <= 0xFFFFFFFF else 6
    try:  # inet_pton: ten times faster than ipaddress on a million lines
        if ":" in t:
            return int.from_bytes(socket.inet_pton(socket.AF_INET6, t), "big"), 6
        return int.from_bytes(socket.inet_pton(socket.AF_INET, t), "big"), 4
    except OSError:
        raise ValueError(t) from None


def load_csv(path: Path | str) -> GeoDatabase:
    """Load one range CSV file (all IPv4 or all IPv6).

    Raises:
        GeoError: unreadable file, a line that is not a range with values.
    """
    path = Path(path)
    starts: list[int] = []
    ends: list[int] = []
    keys: list[tuple] = []
    version = 0
    kind = ""
    csv.field_size_limit(_MAX_FIELD)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                if not row or row[0].startswith("#"):
                    continue
                try:
                    lo, v1 = _address(row[0])
                    hi, v2 = _address(row[1])
                except (ValueError, IndexError):
                    raise GeoError(f"{path}:{n}: expected FIRST,LAST,VALUES… with two addresses, "
                                   f"got {row[:2]}") from None
                if not version:
                    version = v1
                    kind = "asn" if len(row) >= 4 else "country"
                if v1 != version or v2 != version or hi < lo:
                    raise GeoError(f"{path}:{n}: {row[0]}-{row[1]} is not a range of IPv{version} addresses "
                                   "(one file holds one address family)")
                if kind == "asn":
                    try:
                        asn = int(row[2].strip().upper().removeprefix("AS"))
                    except ValueError:
                        raise GeoError(f"{path}:{n}: {row[2]!r} is not an AS number") from None
                    keys.append((asn, row[3]))
                else:
                    keys.append((geo.letters_code(row[2]),))
                starts.append(lo)
                ends.append(hi)
    except OSError as exc:
        raise GeoError(f"{path}: cannot read the GeoIP/ASN database: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise GeoError(f"{path}: not a range CSV file: {exc}") from None
    if not starts:
        raise GeoError(f"{path}: no ranges in this file")
    order = sorted(range(len(starts)), key=starts.__getitem__)
    codes: dict[tuple, int] = {}
    rstart: list[int] = [0]  # range starts, strictly increasing; 0 = unknown up to the next
    rcode: list[int] = [0]
    top = (1 << (32 if version == 4 else 128)) - 1
    end = -1
    for i in order:
        if starts[i] <= end:  # overlaps the previous range: the first one keeps its addresses
            continue
        c = codes.setdefault(keys[i], len(codes) + 1)
        if starts[i] == rstart[-1]:
            rcode[-1] = c
        else:
            rstart.append(starts[i])
            rcode.append(c)
        end = ends[i]
        if end < top:
            rstart.append(end + 1)
            rcode.append(0)
    code = np.array(rcode, dtype=np.int64)
    hi = np.array([s >> 64 for s in rstart], dtype=np.uint64)
    lo = np.array([s & _M64 for s in rstart], dtype=np.uint64)
    keep = np.ones(len(code), dtype=np.bool_)
    keep[1:] = code[1:] != code[:-1]
    hi, lo, code = hi[keep], lo[keep], code[keep]
    provides = ("asn", "as_org") if kind == "asn" else ("country",)
    values = {name: np.zeros(len(codes) + 1, dtype=np.uint64) for name in provides}
    for key, c in codes.items():
        if kind == "asn":
            values["asn"][c] = key[0] if 0 < key[0] < 2**32 else 0
            values["as_org"][c] = geo.TEXTS.code(key[1]) if key[1] else 0
        else:
            values["country"][c] = key[0]
    table = _Table(hi, lo, K.bucket_index(hi, lo, version == 6), code)
    db = GeoDatabase(path, f"range CSV ({kind}, IPv{version})", int(path.stat().st_mtime), provides, values, len(codes))
    if version == 4:
        db.v4 = table
    else:
        db.v6 = table
    return db
