"""The networks file: prefixes the user names (name, role, site), as a `GeoDatabase`.

::

    # prefix          name        role       site
    10.20.0.0/16      office      internal   paris
    10.20.5.0/24      servers     dmz        paris
    2001:db8:90::/48  lab         internal   "lyon 2"
    0.0.0.0/0         internet    external

One prefix per line, then its name and optionally its role and site (words, or quoted with
spaces); ``#`` starts a comment. Nested prefixes are fine: an address takes the most specific
prefix that holds it (``10.20.5.7`` is ``servers``). Flows get ``src_net_name``,
``dst_net_name``, ``src_net_role``… (fields ``net-name``, ``net-role``, ``net-site``: ``src
net-name office``, windows keyed by ``dst net-name``).
"""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path

import numpy as np

import appliance.collector.enrich._kernels as K
from appliance.collector.enrich.mmdb import GeoDatabase, GeoError, _Table
from appliance.collector.fields import geo

__all__ = ["load_networks", "MAX_NETWORKS"]

#: most prefixes a networks file may hold
MAX_NETWORKS = 1_000_000
_M64 = (1 << 64) - 1
_NAMES = ("net_name", "net_role", "net_site")


def _ranges(nets: list[tuple[int, int, int]], top: int) -> tuple[list[int], list[int]]:
    """Range starts and codes from (first, last, code) prefixes, most specific wins.

    Prefixes either nest or do not touch, so sorted by first address (the wider first) they
    form a tree; a stack of the prefixes open at the current address gives each piece its
    innermost prefix.
    """
    starts: list[int] = [0]
    codes: list[int] = [0]

    def emit(at: int, code: int) -> None:
        if at > top:
            return
        if starts[-1] == at:
            codes[-1] = code
        else:
            starts.append(at)
            codes.append(code)

    stack: list[tuple[int, int]] = []  # (last, code) of the open prefixes, innermost last
    for first, last, code in sorted(nets, key=lambda n: (n[0], -n[1])):
        while stack and stack[-1][0] < first:  # close the prefixes that end before this one
            end, _ = stack.pop()
            emit(end + 1, stack[-1][1] if stack else 0)
        stack.append((last, code))
        emit(first, code)
    while stack:
        end, _ = stack.pop()
        emit(end + 1, stack[-1][1] if stack else 0)
    return starts, codes


def load_networks(path: Path | str) -> GeoDatabase:
    """Parse a networks file.

    Raises:
        GeoError: unreadable file, a line that is not PREFIX NAME [ROLE [SITE]], a prefix listed
            twice, more than `MAX_NETWORKS` lines.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GeoError(f"{path}: cannot read the networks file: {exc}") from None
    fams: dict[int, list[tuple[int, int, int]]] = {4: [], 6: []}
    seen: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, int] = {}
    records: list[tuple[str, str, str]] = []
    codes: dict[tuple[str, str, str], int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise GeoError(f"{path}:{n}: {exc}") from None
        if not words:
            continue
        if len(words) < 2 or len(words) > 4:
            raise GeoError(f"{path}:{n}: expected PREFIX NAME [ROLE [SITE]], like '10.20.0.0/16 office internal paris'")
        try:
            net = ipaddress.ip_network(words[0], strict=False)
        except ValueError:
            raise GeoError(f"{path}:{n}: {words[0]!r} is not an IPv4 or IPv6 prefix") from None
        if net in seen:
            raise GeoError(f"{path}:{n}: {net} is already named on line {seen[net]}")
        seen[net] = n
        if len(seen) > MAX_NETWORKS:
            raise GeoError(f"{path}: more than {MAX_NETWORKS} networks")
        rec = (words[1], words[2] if len(words) > 2 else "", words[3] if len(words) > 3 else "")
        code = codes.get(rec)
        if code is None:
            code = codes[rec] = len(records) + 1
            records.append(rec)
        fams[net.version].append((int(net.network_address), int(net.broadcast_address), code))
    values = {name: np.zeros(len(records) + 1, dtype=np.uint64) for name in _NAMES}
    for i, rec in enumerate(records, 1):
        for name, text_ in zip(_NAMES, rec, strict=True):
            values[name][i] = geo.TEXTS.code(text_) if text_ else 0
    provides = tuple(name for name in _NAMES if values[name].any()) or ("net_name",)
    db = GeoDatabase(path, "networks", int(path.stat().st_mtime), provides, values, len(records))
    for version, nets in fams.items():
        if not nets:
            continue
        starts, code_list = _ranges(nets, (1 << (32 if version == 4 else 128)) - 1)
        hi = np.array([s >> 64 for s in starts], dtype=np.uint64)
        lo = np.array([s & _M64 for s in starts], dtype=np.uint64)
        code = np.array(code_list, dtype=np.int64)
        table = _Table(hi, lo, K.bucket_index(hi, lo, version == 6), code)
        if version == 4:
            db.v4 = table
        else:
            db.v6 = table
    return db
